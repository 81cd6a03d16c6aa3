#!/usr/bin/env bash
# Builds and installs Citus from a source tarball into the PostgreSQL that
# pg_config (first on PATH) names.  Used by CI and the scale-out tests when
# Citus is not installed; users install Citus from its own packages.
#
#   CITUS_SOURCE=/path/to/citus-13.2.2.tar.gz scripts/install-citus.sh
#
# Citus 13.2 is the last line that supports PostgreSQL 15.  PostgreSQL
# 15.18 exports have_createdb_privilege(), which Citus also defines as a
# static inline in pg_version_compat.h; the definition is renamed so that
# both can be compiled.
set -euo pipefail

: "${CITUS_SOURCE:?set CITUS_SOURCE to a Citus 13.x source tarball}"
CITUS_SHA256=${CITUS_SHA256:-dd2453caec20a830e5e63f1def5c5a98cb6f57ae510407cdcd800916fcdab430}

pkglibdir=$(pg_config --pkglibdir)
if [ -f "$pkglibdir/citus.so" ] && [ -z "${CITUS_REBUILD:-}" ]; then
  echo "install-citus: citus already installed in $pkglibdir"
  exit 0
fi

echo "$CITUS_SHA256  $CITUS_SOURCE" | sha256sum -c --quiet - || {
  echo "install-citus: $CITUS_SOURCE does not have the expected SHA-256" >&2; exit 1; }

build=$(mktemp -d /tmp/citus-build.XXXXXX)
trap 'rm -rf "$build"' EXIT
tar -C "$build" -xzf "$CITUS_SOURCE"
src=$(find "$build" -mindepth 1 -maxdepth 1 -type d | head -1)

compat="$src/src/include/pg_version_compat.h"
if grep -q 'have_createdb_privilege' "$(pg_config --includedir-server)/commands/dbcommands.h" 2>/dev/null &&
   ! grep -q 'citus_have_createdb_privilege' "$compat"; then
  # the define goes just before the static inline definition
  awk '/^static inline bool$/ { held = $0; next }
       held != "" { if ($0 == "have_createdb_privilege(void)")
                      print "#define have_createdb_privilege citus_have_createdb_privilege";
                    print held; held = "" }
       { print }' "$compat" > "$compat.new" && mv "$compat.new" "$compat"
fi

cd "$src"
./configure --without-libcurl --quiet >/dev/null
make -s -j"$(nproc)" >/dev/null
make -s install >/dev/null
echo "install-citus: installed citus into $pkglibdir"
