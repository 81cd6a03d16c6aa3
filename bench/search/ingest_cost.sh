#!/usr/bin/env bash
# bench/search/ingest_cost.sh -- what the search indexes cost ingest:
# the WebSocket ingest benchmark (bench/ingest_bench.sh's load: EMITTERS
# logagg-emit processes, COUNT profile-a records each, BATCH per frame,
# rows/s counted from first send to last ack) run ROUNDS times for each
# of MODES, alternating, on fresh instances, in one run: off (no search
# index), messages (logagg.index_messages = on), attrs
# (logagg.index_attrs = on), both.  The partitions have their indexes
# before the first record is sent.  BENCH_CONF: more postgresql.conf lines.
#
#   bench/search/ingest_cost.sh   # EMITTERS=2 COUNT=100000 BATCH=200 ROUNDS=2 MODES="off messages attrs both"
#
# Runs as the postgres user (initdb refuses root); needs `make install` done.
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u postgres -- env PATH="$PATH" EMITTERS="${EMITTERS:-}" COUNT="${COUNT:-}" \
    BATCH="${BATCH:-}" ROUNDS="${ROUNDS:-}" MODES="${MODES:-}" BENCH_CONF="${BENCH_CONF:-}" bash "$0" "$@"
fi
EMITTERS=${EMITTERS:-2}
COUNT=${COUNT:-100000}
BATCH=${BATCH:-200}
ROUNDS=${ROUNDS:-2}
MODES=${MODES:-off messages attrs both}
here=$(cd "$(dirname "$0")/../.." && pwd)

one_run() {
  local mode=$1
  (
    m=off; a=off
    case $mode in messages) m=on ;; attrs) a=on ;; both) m=on; a=on ;; esac
    EXTRA_CONF="logagg.index_messages = $m
logagg.index_attrs = $a
${BENCH_CONF:-}"
    # shellcheck source=bench/lib/instance.sh
    source "$here/bench/lib/instance.sh"
    psql -c "CREATE EXTENSION pg_trgm" -c "SELECT logagg.maintain()" >/dev/null
    until [ "$(psql -c "SELECT count(*) FROM logagg._search_index_todo()")" = 0 ]; do sleep 0.2; done
    idx=$(psql -c "SELECT count(*) FROM pg_indexes WHERE schemaname = 'logagg' AND indexname ~ '_(message_trgm|attrs_gin)$'")
    t0=$(date +%s.%N)
    for i in $(seq "$EMITTERS"); do
      "$emit" --url "ws://127.0.0.1:$wsport/ingest" --token "$token" --profile a \
        --count "$COUNT" --batch "$BATCH" --quiet --seed "$i" > "$dir/emit.$i" &
    done
    wait
    t1=$(date +%s.%N)
    rows=$(psql -c "SELECT count(*) FROM logagg.logs")
    [ "$rows" -eq $((EMITTERS * COUNT)) ] || { echo "expected $((EMITTERS * COUNT)) rows, got $rows" >&2; exit 1; }
    awk -v m="$mode" -v r="$rows" -v t0="$t0" -v t1="$t1" -v i="$idx" 'BEGIN {
      printf "indexes %-8s (%d search indexes): %d rows in %.2f s = %.0f rows/s committed\n", m, i, r, t1 - t0, r / (t1 - t0) }'
  )
}

for r in $(seq "$ROUNDS"); do
  for mode in $MODES; do one_run "$mode"; done
done
