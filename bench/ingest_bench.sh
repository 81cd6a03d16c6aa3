#!/usr/bin/env bash
# bench/ingest_bench.sh -- WebSocket ingest throughput of the ingest worker.
#
# Starts a throwaway PostgreSQL 15 instance with logagg preloaded (on free
# local ports), runs EMITTERS logagg-emit processes in parallel, each
# sending COUNT profile-a records in frames of BATCH records as fast as
# acks allow, and reports rows/s (wall clock, first send to last ack) and
# the ingest worker's CPU use.  Every record is acked only after its batch
# committed, so rows/s is committed throughput.
#
#   bench/ingest_bench.sh                       # EMITTERS=2 COUNT=150000 BATCH=200
#   EMITTERS=4 COUNT=100000 BATCH=100 bench/ingest_bench.sh
#
# Runs as the postgres user (initdb refuses root); needs `make install` done.
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u postgres -- env PATH="$PATH" EMITTERS="${EMITTERS:-}" COUNT="${COUNT:-}" \
    BATCH="${BATCH:-}" PROFILE="${PROFILE:-}" bash "$0" "$@"
fi
EMITTERS=${EMITTERS:-2}
COUNT=${COUNT:-150000}
BATCH=${BATCH:-200}
PROFILE=${PROFILE:-a}
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib/instance.sh
source "$here/bench/lib/instance.sh"

c0=$(cpu "$wpid"); t0=$(date +%s.%N)
for i in $(seq "$EMITTERS"); do
  "$emit" --url "ws://127.0.0.1:$wsport/ingest" --token "$token" --profile "$PROFILE" \
    --count "$COUNT" --batch "$BATCH" --quiet --seed "$i" > "$dir/emit.$i" &
done
wait
t1=$(date +%s.%N); c1=$(cpu "$wpid")
cat "$dir"/emit.*
rows=$(psql -c "SELECT count(*) FROM logagg.logs")
batches=$(psql -c "SELECT batches FROM logagg.status() WHERE kind = 'ingest'")
awk -v r="$rows" -v b="$batches" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" \
    -v e="$EMITTERS" -v n="$COUNT" -v bs="$BATCH" -v hz="$(getconf CLK_TCK)" 'BEGIN {
  s = t1 - t0
  printf "emitters %d x %d records, %d per frame: %d rows in %.2f s = %.0f rows/s committed; %d batches (%.0f rows each); ingest worker CPU %.0f%% of one core (%.1f us/row)\n",
    e, n, bs, r, s, r / s, b, r / b, 100 * c / hz / s, 1e6 * c / hz / r
}'
[ "$rows" -eq $((EMITTERS * COUNT)) ] || { echo "expected $((EMITTERS * COUNT)) rows" >&2; exit 1; }
