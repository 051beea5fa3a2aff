#!/usr/bin/env bash
# Installs what Latch needs beyond the Rust toolchain, gcc and python3, for one purpose:
#   scripts/setup.sh demo    cmake (pingora builds zlib-ng with it)
#   scripts/setup.sh test    + Chromium and ChromeDriver (browser tests), redis-server/redis-cli and
#                            openssl (Redis and TLS tests), curl and wrk (TLS tests), nginx
#                            (TLS upstreams and pools), the MongoDB-wire test server, the
#                            Flask, Django, Express and Tomcat apps of the enforcement
#                            differential test, the test identity provider (oidc-provider),
#                            and schemathesis, openapi-spec-validator and Redocly's linter
#                            (the API contract test)
#   scripts/setup.sh bench   + wrk (load generator), nginx (baseline), valgrind (callgrind), h2load (HTTP/2)
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
    need_cmd openssl openssl             # makes the CA and keys for the rediss://, TLS and JWT tests
    need_cmd curl curl                   # HTTP/2 over TLS (tests/tests/tls.rs)
    need_cmd wrk wrk                     # certificate reload under load (tests/tests/tls.rs)
    # The HTTPS upstreams and the servers of the pool tests (Debian puts it in /usr/sbin).
    command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || apt_pkgs+=(nginx-light)
    need_cmd node nodejs                 # runs the Express app (tests/apps/express)
    need_cmd npm npm
    # The API contract checkers get a virtual environment of their own (tests/tools/venv).
    python3 -c 'import venv, ensurepip' 2>/dev/null || apt_pkgs+=(python3-venv)
    # The servlet app (tests/apps/tomcat) runs on Debian's Tomcat 10, which brings a Java runtime.
    [ -x /usr/share/tomcat10/bin/catalina.sh ] || apt_pkgs+=(tomcat10)
    ;;
  bench)
    need_cmd wrk wrk
    need_cmd nginx nginx-light
    need_cmd valgrind valgrind            # instructions per request (callgrind)
    need_cmd h2load nghttp2-client        # HTTP/2 load (wrk speaks only HTTP/1.1)
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

# `npm ci` in $1 (shown as $2) at the versions its package-lock.json pins; installed again only
# when the lock file changes. $3 says what it installs.
npm_ci() {
  local dir="$1" shown="$2" what="$3"
  if ! cmp -s "$dir/package-lock.json" "$dir/node_modules/.latch-package-lock.json"; then
    echo "setup: installing $what (npm ci, $shown)"
    (cd "$dir" && npm ci --no-audit --no-fund --silent) || {
      echo "setup: could not install them; run: (cd $shown && npm ci)" >&2
      exit 1
    }
    cp "$dir/package-lock.json" "$dir/node_modules/.latch-package-lock.json"
  fi
}

if [ "$purpose" = test ]; then
  # The real apps the enforcement differential test puts behind Latch (tests/apps/), at the
  # versions pinned there: the Python ones into tests/apps/pydeps/ (the apps import from it
  # first, so a Flask or Django installed elsewhere does not matter), Express into
  # tests/apps/express/node_modules/. Each is installed again when its pins change.
  apps="$(cd "$(dirname "$0")/.." && pwd)/tests/apps"
  if ! cmp -s "$apps/requirements.txt" "$apps/pydeps/.requirements.txt"; then
    echo "setup: installing the Python test apps' packages (pip, tests/apps/requirements.txt)"
    rm -rf "$apps/pydeps"
    python3 -m pip install -q --disable-pip-version-check --root-user-action=ignore --no-deps \
      --target "$apps/pydeps" -r "$apps/requirements.txt" || {
      echo "setup: could not install them; run: python3 -m pip install --no-deps --target tests/apps/pydeps -r tests/apps/requirements.txt" >&2
      exit 1
    }
    cp "$apps/requirements.txt" "$apps/pydeps/.requirements.txt"
  fi
  npm_ci "$apps/express" tests/apps/express "the Express test app's packages"
fi

if [ "$purpose" = test ]; then
  # The identity provider of the key-fetching and trusted-proxy tests (oidc-provider, pinned
  # in tests/apps/idp/package-lock.json), installed again when its pins change.
  npm_ci "$(cd "$(dirname "$0")/.." && pwd)/tests/apps/idp" tests/apps/idp \
    "the test identity provider's packages"
  # The API contract checkers (tests/tools/): schemathesis and openapi-spec-validator at the
  # versions pinned in tests/tools/requirements.txt,
  # in a virtual environment of their own, so their many dependencies meet nothing else.
  tools="$(cd "$(dirname "$0")/.." && pwd)/tests/tools"
  if ! cmp -s "$tools/requirements.txt" "$tools/venv/.requirements.txt"; then
    echo "setup: installing the API contract checkers (pip, tests/tools/requirements.txt)"
    rm -rf "$tools/venv"
    { python3 -m venv "$tools/venv" &&
      "$tools/venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps \
        -r "$tools/requirements.txt"; } || {
      echo "setup: could not install them; run: python3 -m venv tests/tools/venv && tests/tools/venv/bin/pip install --no-deps -r tests/tools/requirements.txt" >&2
      exit 1
    }
    cp "$tools/requirements.txt" "$tools/venv/.requirements.txt"
  fi
  # Redocly's OpenAPI linter, at the version locked in tests/tools/package-lock.json.
  npm_ci "$tools" tests/tools "Redocly's OpenAPI linter"
fi
