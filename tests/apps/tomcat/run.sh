#!/usr/bin/env bash
# Runs the servlet test app on Tomcat 10 from Debian's packages (`scripts/setup.sh test`
# installs it): run.sh PORT [BASE]. BASE (a new temporary directory if not given) becomes the
# CATALINA_BASE, with this directory's server.xml, Debian's default web.xml and the app as the
# ROOT context. Tomcat runs in the foreground as this process, so killing it stops Tomcat.
set -euo pipefail
port=${1:?usage: run.sh PORT [BASE]}
here="$(cd "$(dirname "$0")" && pwd)"
home=/usr/share/tomcat10
[ -x "$home/bin/catalina.sh" ] || { echo "tomcat10 is not installed: run scripts/setup.sh test" >&2; exit 1; }
base=${2:-$(mktemp -d)}
mkdir -p "$base/conf" "$base/logs" "$base/temp" "$base/work" "$base/webapps"
cp "$here/server.xml" "$base/conf/server.xml"
cp /etc/tomcat10/web.xml "$base/conf/web.xml"
cp -r "$here/webapp" "$base/webapps/ROOT"
export CATALINA_HOME="$home" CATALINA_BASE="$base" CATALINA_TMPDIR="$base/temp"
# A small, quickly started JVM: the app serves a few hundred requests.
export JAVA_OPTS="-Dapp.port=$port -XX:+UseSerialGC -XX:TieredStopAtLevel=1"
exec "$home/bin/catalina.sh" run
