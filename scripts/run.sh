#!/usr/bin/env bash
# Starts the stack locally on 127.0.0.1 and prints where to reach it.
# Today that is ice-config, fed from examples/stunnerd.conf (edit it while it runs: changes
# take effect within a second).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release --quiet --bin ice-config
exec ./target/release/ice-config \
    --grpc-addr "${GRPC_ADDR:-127.0.0.1:50051}" \
    --http-addr "${HTTP_ADDR:-127.0.0.1:8088}" \
    --stunner-config "${STUNNER_CONFIG_FILENAME:-examples/stunnerd.conf}"
