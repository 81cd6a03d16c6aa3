#!/usr/bin/env bash
# install-deps.sh — install everything logagg needs to build, run and test on
# Debian 12.  Idempotent: re-running it installs nothing that is already there.
# Used by both README commands and by .ci/run.
set -euo pipefail

PACKAGES=(
  build-essential pkg-config
  postgresql-15 postgresql-server-dev-15 postgresql-15-pgtap
  libtap-parser-sourcehandler-pgtap-perl libipc-run-perl
  libdbd-pg-perl
  libwebsockets-dev libwebsockets-evlib-uv libuv1-dev
  libcurl4-openssl-dev zlib1g-dev libssl-dev
  python3 python3-websockets python3-aiosmtpd
  curl procps valgrind
  openssl
  prometheus-alertmanager
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
# system), pinned by test/package-lock.json; node_modules is git-ignored.
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
