#!/usr/bin/env bash
# bench/forwarding_bench.sh -- what a forwarding token costs the ingest
# worker: the same WebSocket load (logagg-emit, profile a, whose records
# carry "service") sent with the source "bench" as a plain token and then
# as a forwarding token limited by globs (every record then takes its
# source from its service field: one name check and one glob match per
# record).  ROUNDS alternations of the two, so that a busy machine
# disturbs both alike; prints the ingest worker's CPU per row of each.
#
#   bench/forwarding_bench.sh                  # EMITTERS=2 COUNT=50000 BATCH=200 ROUNDS=3
#
# Runs as the postgres user (initdb refuses root); needs `make install` done.
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u postgres -- env PATH="$PATH" EMITTERS="${EMITTERS:-}" COUNT="${COUNT:-}" \
    BATCH="${BATCH:-}" ROUNDS="${ROUNDS:-}" bash "$0" "$@"
fi
EMITTERS=${EMITTERS:-2}
COUNT=${COUNT:-50000}
BATCH=${BATCH:-200}
ROUNDS=${ROUNDS:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib/instance.sh
source "$here/bench/lib/instance.sh"

# one load; prints the worker's CPU microseconds per row and rows/s
run_load() {
  local before c0 t0 c1 t1 rows
  before=$(psql -c "SELECT count(*) FROM logagg.logs")
  c0=$(cpu "$wpid"); t0=$(date +%s.%N)
  for i in $(seq "$EMITTERS"); do
    "$emit" --url "ws://127.0.0.1:$wsport/ingest" --token "$token" --profile a \
      --count "$COUNT" --batch "$BATCH" --quiet --seed "$i" > /dev/null &
  done
  wait
  t1=$(date +%s.%N); c1=$(cpu "$wpid")
  rows=$(( $(psql -c "SELECT count(*) FROM logagg.logs") - before ))
  [ "$rows" -eq $((EMITTERS * COUNT)) ] || { echo "expected $((EMITTERS * COUNT)) rows, got $rows" >&2; exit 1; }
  awk -v r="$rows" -v c="$((c1 - c0))" -v s="$(echo "$t1 - $t0" | bc)" -v hz="$(getconf CLK_TCK)" \
    'BEGIN { printf "%.2f us/row, %.0f rows/s", 1e6 * c / hz / r, r / s }'
}

for round in $(seq "$ROUNDS"); do
  psql -c "UPDATE logagg.sources SET forwarder = false, forward_sources = NULL WHERE name = 'bench'"
  plain=$(run_load)
  psql -c "UPDATE logagg.sources SET forwarder = true, forward_sources = 'team-*,service-*' WHERE name = 'bench'"
  fwd=$(run_load)
  echo "round $round: plain token $plain; forwarding token $fwd"
done
echo "sources stored by the forwarding runs: $(psql -c "SELECT string_agg(DISTINCT source, ',') FROM logagg.logs")"
