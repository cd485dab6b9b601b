# Contributors' shortcuts; the README's commands work without `just`.

# List the recipes
default:
    @just --list

# The fast inner loop: format, lint, unit tests (no processes, no browsers)
check:
    cargo fmt --all
    cargo clippy --workspace --all-targets -- -D warnings
    cargo test --workspace --lib --bins

# Run the local stack (ice-config, signaling, gateway, embedded TURN)
run *ARGS:
    bash scripts/run.sh {{ARGS}}

# Every check and test, installing what the tests need
test:
    bash scripts/test.sh

# Format and lint
lint:
    cargo fmt --all
    cargo clippy --workspace --all-targets -- -D warnings

# Regenerate the gRPC code (build.rs does it on every build; this forces it)
generate:
    touch proto/build.rs && cargo build -p stunner-proto

# Load benchmark (release build); prints figures
bench *ARGS:
    cargo build --release --workspace --bins
    ./target/release/bench {{ARGS}}

# Render a Kubernetes overlay (minimal, production, observability, legacy-configmap)
render overlay="minimal":
    kubectl kustomize k8s/overlays/{{overlay}}

# Build one service's image (needs a container engine): just image gateway REGISTRY/gateway:TAG
image service tag:
    docker build --target {{service}} -t {{tag}} .
