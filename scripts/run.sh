#!/usr/bin/env bash
# Starts the whole stack locally — ice-config, signaling, gateway and an embedded TURN server, all
# on 127.0.0.1 — and prints where to open it. Two browser tabs on that URL can call each other,
# relay-only, with no Kubernetes. Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin local-stack
exec ./target/release/local-stack "$@"
