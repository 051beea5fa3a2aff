#!/usr/bin/env bash
# Builds release binaries and runs Latch's benchmark suite: Latch against bare pingora, nginx
# and the upstream itself, alternating round by round, and prints the table (README
# "Performance"). Arguments go to latch-bench, for example:
#   scripts/bench.sh --rounds 3 --seconds 3 --only small,html
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh bench
cargo build --release -p latch -p bench

# The idle-socket scenario holds 10,000 banner sockets: as many descriptors in the proxy and
# in the client.
hard=$(ulimit -Hn)
if [ "$hard" = unlimited ] || [ "$hard" -ge 65536 ]; then
  ulimit -n 65536
else
  ulimit -n "$hard"
fi

target=${CARGO_TARGET_DIR:-target}
mkdir -p "$target/bench"
exec "$target/release/latch-bench" --out "$target/bench/results.md" "$@"
