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
# The table goes to target/bench/results.md unless the arguments name another file.
out=(--out "$target/bench/results.md")
for arg in "$@"; do
  case "$arg" in
    --out | --out=*) out=() ;;
  esac
done
mkdir -p "$target/bench"
exec "$target/release/latch-bench" "${out[@]}" "$@"
