#!/usr/bin/env bash
# test/tap.sh — run PostgreSQL::Test::Cluster TAP tests (test/t/*.pl, or the
# files given) against the installed PostgreSQL and logagg.
#
# Unlike PGXS's "make installcheck", it gives each run its own TESTDIR, so
# runs never delete each other's tmp_check.  Must run as a non-root user
# (initdb refuses root): test/run takes care of that.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bindir=$(pg_config --bindir)
pgxsroot=$(dirname "$(dirname "$(dirname "$(pg_config --pgxs)")")")
tests=("$@")
if [ ${#tests[@]} -eq 0 ]; then
  mapfile -t tests < <(ls "$here"/test/t/*.pl | sort)
fi
testdir=$(mktemp -d "${TMPDIR:-/tmp}/logagg-tap.XXXXXX")
cd "$here"
export TESTDIR="$testdir" PATH="$bindir:$here/emitters:$here/tools:$PATH" PG_REGRESS="$pgxsroot/src/test/regress/pg_regress"
export LOGAGG_SRC="$here"
echo "tap: logs in $testdir/tmp_check/log"
exec prove ${PROVE_FLAGS:-} -I "$pgxsroot/src/test/perl" -I "$here/test/lib" "${tests[@]}"
