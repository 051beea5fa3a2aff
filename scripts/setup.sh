#!/usr/bin/env bash
# Installs what Latch needs beyond the Rust toolchain, gcc and python3, for one purpose:
#   scripts/setup.sh demo    cmake (pingora builds zlib-ng with it)
#   scripts/setup.sh test    + Chromium and ChromeDriver (browser tests), redis-server/redis-cli and
#                            openssl (Redis and TLS tests), the MongoDB-wire test server
#   scripts/setup.sh bench   + wrk (load generator), nginx (baseline) and valgrind (callgrind)
# Anything already present is left alone. Without root, it prints the exact command to run.
set -euo pipefail

purpose=${1:-demo}
apt_pkgs=()
need_cmd() { command -v "$1" >/dev/null 2>&1 || apt_pkgs+=("$2"); }

need_cmd cmake cmake
case "$purpose" in
  demo) ;;
  test)
    need_cmd chromium chromium
    need_cmd chromedriver chromium-driver
    need_cmd redis-server redis-server   # each Redis test starts its own on a free port
    need_cmd redis-cli redis-tools       # builds the local Redis Cluster for the cluster tests
    need_cmd openssl openssl             # makes the CA and keys for the rediss:// and JWT tests
    ;;
  bench)
    need_cmd wrk wrk
    need_cmd nginx nginx-light
    need_cmd valgrind valgrind            # instructions per request (callgrind)
    ;;
  *) echo "usage: $0 demo|test|bench" >&2; exit 2 ;;
esac

if [ ${#apt_pkgs[@]} -gt 0 ]; then
  cmd="apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ${apt_pkgs[*]}"
  if [ "$(id -u)" -eq 0 ]; then
    echo "setup: installing ${apt_pkgs[*]}"
    bash -c "$cmd" >/dev/null
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    echo "setup: installing ${apt_pkgs[*]}"
    sudo bash -c "$cmd" >/dev/null
  else
    echo "setup: missing ${apt_pkgs[*]}. Run as root:" >&2
    echo "  $cmd" >&2
    exit 1
  fi
fi

if [ "$purpose" = test ]; then
  # nx-27017: a MongoDB wire-protocol server backed by SQLite, for the control-plane tests.
  if ! python3 -c 'import importlib.util,sys; sys.exit(0 if importlib.util.find_spec("nx_27017") else 1)' 2>/dev/null; then
    echo "setup: installing nx-27017 (pip)"
    python3 -m pip install -q nx-27017 || {
      echo "setup: could not install nx-27017; run: python3 -m pip install nx-27017" >&2
      exit 1
    }
  fi
fi
