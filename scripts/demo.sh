#!/usr/bin/env bash
# Builds and starts `latch demo`, installing cmake first if it is missing.
# Extra arguments go to `latch demo`, e.g. scripts/demo.sh --port 9000
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh demo
cargo run --release -p latch -- demo "$@"
