#!/usr/bin/env bash
# Runs every test: installs the test prerequisites, builds the latch binary the end-to-end
# tests drive, then runs the whole workspace's tests.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh test
cargo build -p latch
cargo test --workspace "$@"
