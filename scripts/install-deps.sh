#!/usr/bin/env bash
# install-deps.sh — install everything logagg needs to build, run and test on
# Debian 12.  Idempotent: re-running it installs nothing that is already there.
# Used by both README commands and by .ci/run.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config
  postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap
  libtap-parser-sourcehandler-pgtap-perl libipc-run-perl libio-pty-perl
  libdbd-pg-perl
  libwebsockets-dev libwebsockets-evlib-uv libuv1-dev
  libcurl4-openssl-dev zlib1g-dev libssl-dev
  libprotobuf-c-dev protobuf-c-compiler python3-protobuf libsnappy-dev python3-snappy
  python3 python3-websockets python3-aiosmtpd
  curl procps valgrind
  openssl
  syslog-ng-core syslog-ng-mod-http syslog-ng-scl
  libestr0 libfastjson4 liblognorm5
  prometheus-alertmanager
  chromium
)

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo"
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "install-deps: all Debian packages present"
fi

# The Debian postgresql package starts a system cluster on 5432; logagg's
# scripts never use it, so leave it alone.

# Test receivers from npm (s3rver for the cloud-sync tests and the local
# system; puppeteer-core drives Debian's chromium in the console browser
# test), pinned by test/package-lock.json; node_modules is git-ignored.
(
  cd "$(dirname "$0")/.."
  if [ -f test/package-lock.json ] && ! command -v npm >/dev/null 2>&1; then
    # Node.js comes with this machine image; fall back to Debian's if absent.
    echo "install-deps: installing nodejs npm"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
  fi
  # again whenever the lock file changed since the last install (npm keeps
  # its own copy, node_modules/.package-lock.json, from that install)
  if [ -f test/package-lock.json ] && { [ ! -x test/node_modules/.bin/s3rver ] ||
       [ test/package-lock.json -nt test/node_modules/.package-lock.json ]; }; then
    echo "install-deps: npm ci in test/"
    (cd test && npm ci --no-audit --no-fund --silent)
  fi
)

# Citus for the scale-out tests (test/t/700_citus_cluster.pl), built from a
# source tarball when CITUS_SOURCE names one (.ci/run does); users install
# Citus from its own packages.  Its build needs these -dev packages.
if [ -n "${CITUS_SOURCE:-}" ] &&
   [ ! -f "$(pg_config --pkglibdir)/citus.so" ]; then
  CITUS_BUILD_DEPS=(liblz4-dev libzstd-dev libkrb5-dev libselinux1-dev libxslt1-dev libpam0g-dev libreadline-dev)
  echo "install-deps: building Citus from $CITUS_SOURCE"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${CITUS_BUILD_DEPS[@]}" >/dev/null
  $SUDO env PATH="$PATH" CITUS_SOURCE="$CITUS_SOURCE" bash "$(dirname "$0")/install-citus.sh"
fi

# rsyslog (its omelasticsearch output, for the shipper tests) conflicts with
# syslog-ng-core as a Debian package (both provide system-log-daemon), so it
# is unpacked, not installed, into a private directory: the tests run its
# rsyslogd with -M pointing at its modules.  Its libraries (libestr0,
# libfastjson4, liblognorm5, libcurl4 ...) are in PACKAGES above.
RSYSLOG_DIR=${LOGAGG_RSYSLOG_DIR:-/opt/logagg-rsyslog}
if [ ! -x "$RSYSLOG_DIR/usr/sbin/rsyslogd" ] || [ ! -f "$RSYSLOG_DIR/usr/lib/x86_64-linux-gnu/rsyslog/omelasticsearch.so" ]; then
  echo "install-deps: unpacking rsyslog and rsyslog-elasticsearch into $RSYSLOG_DIR"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download rsyslog rsyslog-elasticsearch >/dev/null 2>&1) || {
    $SUDO apt-get update -qq
    (cd "$tmp" && apt-get download rsyslog rsyslog-elasticsearch >/dev/null)
  }
  $SUDO mkdir -p "$RSYSLOG_DIR"
  for deb in "$tmp"/*.deb; do
    $SUDO dpkg -x "$deb" "$RSYSLOG_DIR"
  done
  rm -rf "$tmp"
fi
