#!/usr/bin/env bash
# bench/plain_lines_bench.sh -- what reading plain-text lines costs the
# ingest worker: the same lines (nginx access and error, syslog, Python
# logging, glog, logfmt, as in test/lib/LogaggLines.pm, times an hour ago)
# shipped as {"message": LINE} over WebSocket by logagg-emit --stdin, with
# the source's detection on, then off (logagg.set_source_detection), in
# ROUNDS alternating rounds.  Reports rows/s committed and the ingest
# worker's CPU per row for each.
#
#   bench/plain_lines_bench.sh              # COUNT=200000 BATCH=200 ROUNDS=3
#
# Runs as the postgres user (initdb refuses root); needs `make install` done.
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u postgres -- env PATH="$PATH" COUNT="${COUNT:-}" BATCH="${BATCH:-}" \
    ROUNDS="${ROUNDS:-}" bash "$0" "$@"
fi
COUNT=${COUNT:-200000}
BATCH=${BATCH:-200}
ROUNDS=${ROUNDS:-3}
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib/instance.sh
source "$here/bench/lib/instance.sh"

perl -I"$here/test/lib" -MLogaggLines -e '
  my @l = map { $_->[0] } plain_lines(time() - 3600);
  print $l[$_ % @l], "\n" for 0 .. $ARGV[0] - 1;' "$COUNT" > "$dir/lines"

run() {
  local mode=$1
  psql -c "TRUNCATE logagg.logs" -c "SELECT logagg.set_source_detection('bench', $mode)" >/dev/null
  sleep 0.5
  local c0 t0 t1 c1 rows
  c0=$(cpu "$wpid"); t0=$(date +%s.%N)
  "$emit" --url "ws://127.0.0.1:$wsport/ingest" --token "$token" --stdin --batch "$BATCH" \
    --quiet < "$dir/lines" > "$dir/emit.out"
  t1=$(date +%s.%N); c1=$(cpu "$wpid")
  rows=$(psql -c "SELECT count(*) FROM logagg.logs")
  [ "$rows" -eq "$COUNT" ] || { echo "expected $COUNT rows, got $rows" >&2; exit 1; }
  awk -v m="$mode" -v r="$rows" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    s = t1 - t0
    printf "detection %-5s %d plain lines in %.2f s = %.0f rows/s committed; ingest worker %.1f us/row\n",
      (m == "true" ? "on" : "off"), r, s, r / s, 1e6 * c / hz / r
  }'
}
for _ in $(seq "$ROUNDS"); do
  run true
  run false
done
psql -c "SELECT logagg.set_source_detection('bench', true)" >/dev/null
run true >/dev/null
echo "levels read in the last run: $(psql -c "SELECT string_agg(coalesce(level, 'NULL') || ' ' || n, ', ' ORDER BY level) FROM (SELECT level, count(*) n FROM logagg.logs GROUP BY level) s")"
