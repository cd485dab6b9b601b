#!/usr/bin/env bash
# Runs every check and every test of the workspace. On a fresh machine it first installs what the
# tests need from Debian's packages: coturn (the real TURN server credentials are checked on),
# Chromium with its WebDriver and Firefox ESR (real calls between real pages; geckodriver is
# built with cargo install), redis-server (the store several
# signaling replicas share, standalone and as a cluster), iproute2 (network namespaces standing
# in for the pod network), and from PyPI kubernetes-validate (the manifests' schemas).
# kubectl (for `kubectl kustomize`) must already be installed; the manifest and netns tests need
# root.
# protoc needs no install: the build uses the one vendored by the protoc-bin-vendored crate.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v turnserver >/dev/null 2>&1 || missing+=(coturn)
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v chromedriver >/dev/null 2>&1 || missing+=(chromium-driver)
[ -x /usr/bin/firefox-esr ] || missing+=(firefox-esr)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v ip >/dev/null 2>&1 || missing+=(iproute2)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
sudo=""
[ "$(id -u)" = 0 ] || sudo="sudo"
if ((${#missing[@]})); then
    echo "==> installing ${missing[*]}"
    $sudo apt-get update -qq
    # The packages' own services (redis-server on 6379, coturn) are not started: tests start
    # their own servers on free ports.
    policy=/usr/sbin/policy-rc.d
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
        $sudo chmod +x "$policy"
        trap '$sudo rm -f "$policy"' EXIT
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Firefox's WebDriver is published on crates.io (pinned; built once).
if ! command -v geckodriver >/dev/null 2>&1 && [ ! -x "${CARGO_HOME:-$HOME/.cargo}/bin/geckodriver" ]; then
    echo "==> installing geckodriver"
    cargo install --quiet --locked geckodriver --version 0.36.0
fi

# Python test tools live in a virtualenv under the build directory (PEP 668).
venv=target/test-venv
scripts/python-tools.sh "$venv"
export TEST_PYTHON="$PWD/$venv/bin/python3"
command -v kubectl >/dev/null 2>&1 || { echo "kubectl is needed (kubectl kustomize renders k8s/)" >&2; exit 1; }

echo "==> cargo fmt --check"
cargo fmt --all --check
echo "==> cargo clippy"
cargo clippy --workspace --all-targets --quiet -- -D warnings
echo "==> cargo build (the binaries the cross-process tests start)"
cargo build --workspace --bins --quiet
echo "==> tests"
if cargo nextest --version >/dev/null 2>&1; then
    cargo nextest run --workspace --no-fail-fast
else
    cargo test --workspace --no-fail-fast
fi

# Fuzzing, bounded: the browser protocol decoder and the STUNner config parser, each from its
# committed corpus (fuzz/corpus/<target>, read only; what the run finds goes to a scratch
# directory). cargo-fuzz is built once (pinned) with the stable toolchain; the targets need the
# nightly one, which rustup installs if it is missing. FUZZ_SECONDS=0 skips this.
fuzz_seconds=${FUZZ_SECONDS:-60}
if [ "$fuzz_seconds" != 0 ]; then
    if ! cargo fuzz --version >/dev/null 2>&1; then
        echo "==> installing cargo-fuzz"
        cargo install --quiet --locked cargo-fuzz --version 0.13.2
    fi
    rustup toolchain list | grep -q '^nightly' || rustup toolchain install --profile minimal nightly
    for target in browser_protocol stunner_config; do
        echo "==> fuzzing $target for ${fuzz_seconds}s"
        scratch=$(mktemp -d)
        log=$(mktemp)
        if ! (cd fuzz && cargo +nightly fuzz run "$target" "$scratch" "corpus/$target" -- \
            -max_total_time="$fuzz_seconds" -rss_limit_mb=2048 -print_final_stats=1) >"$log" 2>&1; then
            tail -n 60 "$log"
            echo "fuzzing $target failed: the input is in fuzz/artifacts/$target" >&2
            exit 1
        fi
        grep -E '^stat::(number_of_executed_units|average_exec_per_sec|new_units_added)' "$log"
        rm -rf "$scratch" "$log"
    done
fi
