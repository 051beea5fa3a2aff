#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time; a crash fails the run.
#   scripts/fuzz.sh [seconds per target]      (default 60)
# Installs cargo-fuzz (pinned) if it is missing. cargo-fuzz needs nightly compiler features;
# RUSTC_BOOTSTRAP=1 unlocks them on the stable toolchain, so no other toolchain is needed.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
cargo_fuzz_version=0.13.2

if ! cargo fuzz --version 2>/dev/null | grep -q "$cargo_fuzz_version"; then
  echo "fuzz: installing cargo-fuzz $cargo_fuzz_version"
  cargo install --quiet --locked cargo-fuzz --version "$cargo_fuzz_version"
fi

export RUSTC_BOOTSTRAP=1
# The request target and path parser see every request; the rule parser sees what admins write.
for target in target normalize parse_rules; do
  mkdir -p "fuzz/corpus/$target"
  echo "fuzz: $target for ${seconds}s"
  log="fuzz/corpus/$target.log"
  if ! cargo fuzz run --fuzz-dir fuzz "$target" "fuzz/corpus/$target" "fuzz/seeds/$target" -- \
    -max_total_time="$seconds" >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $target failed; its input is in fuzz/artifacts/$target/" >&2
    exit 1
  fi
  grep -E "^(#[0-9]+|Done)" "$log" | tail -n 1 || true
done
echo "fuzz: every target ran ${seconds}s without a crash"
