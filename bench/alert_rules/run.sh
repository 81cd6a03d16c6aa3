#!/usr/bin/env bash
# bench/alert_rules/run.sh -- WebSocket ingest throughput with RULES alert
# rules counted in the ingest path, against the same run without rules.
#
# Like bench/ingest_bench.sh (EMITTERS logagg-emit processes, COUNT
# profile-a records each, BATCH per frame, as fast as acks allow), once
# with no alert rule and once with RULES rules (default 100), each
# matching most records and grouped by the record's method and status
# (a few dozen groups per rule; a group_by with a value per record, such
# as profile a's paths, which hold ids, makes one counter row per record
# and rule: the cost is bounded by groups, so choose group labels with
# few values).
# Prints rows/s of both runs, their ratio, and the groups counted.
#
#   bench/alert_rules/run.sh                      # RULES=100 EMITTERS=2 COUNT=100000 BATCH=200
#
# Runs as the postgres user (initdb refuses root); needs `make install` done.
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u postgres -- env PATH="$PATH" RULES="${RULES:-}" EMITTERS="${EMITTERS:-}" \
    COUNT="${COUNT:-}" BATCH="${BATCH:-}" bash "$0" "$@"
fi
RULES=${RULES:-100}
EMITTERS=${EMITTERS:-2}
COUNT=${COUNT:-100000}
BATCH=${BATCH:-200}
here=$(cd "$(dirname "$0")/../.." && pwd)

one_run() {
  local nrules=$1
  (
    # shellcheck source=bench/lib/instance.sh
    source "$here/bench/lib/instance.sh"
    if [ "$nrules" -gt 0 ]; then
      psql -c "SELECT count(logagg.add_alert_rule('bench-' || i,
                 jsonb_build_object('status', jsonb_build_array(100 + i % 5, 599)),
                 '5 min', 1000000, 'count', ARRAY['attrs.method', 'status']))
               FROM generate_series(1, $nrules) i" >/dev/null
    fi
    c0=$(cpu "$wpid"); t0=$(date +%s.%N)
    for i in $(seq "$EMITTERS"); do
      "$emit" --url "ws://127.0.0.1:$wsport/ingest" --token "$token" --profile a \
        --count "$COUNT" --batch "$BATCH" --quiet --seed "$i" > "$dir/emit.$i" &
    done
    wait
    t1=$(date +%s.%N); c1=$(cpu "$wpid")
    rows=$(psql -c "SELECT count(*) FROM logagg.logs")
    groups=$(psql -c "SELECT coalesce(round(avg(n)), 0) FROM (SELECT count(DISTINCT labels) AS n FROM logagg._alert_rule_counts GROUP BY rule_id) g")
    counters=$(psql -c "SELECT count(*) FROM logagg._alert_rule_counts")
    awk -v r="$rows" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v n="$nrules" -v g="$groups" \
        -v k="$counters" -v hz="$(getconf CLK_TCK)" 'BEGIN {
      s = t1 - t0
      printf "rules %d: %d rows in %.2f s = %.0f rows/s; worker %.1f us/row; %d groups per rule, %d counter rows\n",
        n, r, s, r / s, 1e6 * c / hz / r, g, k
    }'
  )
}
a=$(one_run 0); echo "$a"
b=$(one_run "$RULES"); echo "$b"
awk -v a="$a" -v b="$b" 'BEGIN {
  split(a, x, " = "); split(x[2], xa, " "); split(b, y, " = "); split(y[2], yb, " ")
  printf "with %s rules / without: %.2f\n", "'"$RULES"'", yb[1] / xa[1]
}'
