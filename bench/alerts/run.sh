#!/usr/bin/env bash
# bench/alerts/run.sh — alert latency and throughput benchmark on a
# throwaway cluster (PostgreSQL::Test::Cluster), as a non-root user:
#   runuser -u postgres -- bash bench/alerts/run.sh
# Knobs: N_LAT (latency probes per run, 200), N_TPUT (alerts for the
# throughput run, 20000), LOAD_RATE (records/s of background ingest, 50000).
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
bindir=$(pg_config --bindir)
pgxsroot=$(dirname "$(dirname "$(dirname "$(pg_config --pgxs)")")")
export TESTDIR=$(mktemp -d "${TMPDIR:-/tmp}/logagg-bench.XXXXXX")
export PATH="$bindir:$here/emitters:$PATH" LOGAGG_SRC="$here" PG_REGRESS="$pgxsroot/src/test/regress/pg_regress"
cd "$here"
echo "bench: logs in $TESTDIR/tmp_check/log"
exec perl -I "$pgxsroot/src/test/perl" -I "$here/test/lib" "$here/bench/alerts/alert_bench.pl"
