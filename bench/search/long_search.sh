#!/usr/bin/env bash
# bench/search/long_search.sh -- does a long search move ingest's batch
# commit latency?  The WebSocket load of bench/ingest_bench.sh (EMITTERS
# logagg-emit processes, COUNT profile-a records each, BATCH per frame)
# runs ROUNDS x 2 times on one instance, alternating: "quiet" (nothing
# else runs) and "search" (a psql session runs logagg.search() with a
# regex that no index helps over the SEARCH_ROWS rows preloaded, under
# statement_timeout = 10s, again and again for the whole round: each
# search reads every row and is cancelled at 10 s).  For each round it
# reports committed rows/s (first send to last ack) and, from the ingest
# worker's /metrics, the batches of that round (the difference of the
# logagg_ingest_flush_seconds histogram before and after): count, mean
# and p50 / p99 interpolated within the buckets as Prometheus'
# histogram_quantile() does (buckets 5, 10, 25, 50, 100, 250 ms ...).
#
#   bench/search/long_search.sh   # SEARCH_ROWS=5000000 EMITTERS=2 COUNT=300000 BATCH=200 ROUNDS=3
#
# Runs as the postgres user (initdb refuses root); needs `make install` done.
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u postgres -- env PATH="$PATH" SEARCH_ROWS="${SEARCH_ROWS:-}" EMITTERS="${EMITTERS:-}" \
    COUNT="${COUNT:-}" BATCH="${BATCH:-}" ROUNDS="${ROUNDS:-}" bash "$0" "$@"
fi
SEARCH_ROWS=${SEARCH_ROWS:-5000000}
EMITTERS=${EMITTERS:-2}
COUNT=${COUNT:-300000}
BATCH=${BATCH:-200}
ROUNDS=${ROUNDS:-3}
here=$(cd "$(dirname "$0")/../.." && pwd)
EXTRA_CONF="logagg.dispatch_workers = 0
shared_buffers = '512MB'"
# shellcheck source=bench/lib/instance.sh
source "$here/bench/lib/instance.sh"

# the rows the search reads: the last 24 hours, another source
chunk=1000000
for ((start = 0; start < SEARCH_ROWS; start += chunk)); do
  n=$(( SEARCH_ROWS - start < chunk ? SEARCH_ROWS - start : chunk ))
  psql -c "
INSERT INTO logagg.logs (ts, source, severity, message, attrs)
SELECT now() - make_interval(secs => (i::float8 / $SEARCH_ROWS) * 86000 + 60), 'history', 'low',
       'request ' || md5(i::text) || ' user=u' || (i % 65536) || ' took ' || (i % 1000) || 'ms',
       jsonb_build_object('shard', i % 64)
  FROM generate_series($start + 1, $start + $n) i"
done
psql -c "VACUUM ANALYZE logagg.logs"

metrics() { curl -sf "http://127.0.0.1:$wsport/metrics" | grep '^logagg_ingest_flush_seconds'; }

# prints "count mean_ms p50_ms p99_ms" of the batches between two /metrics texts
flush_stats() {
  awk '
    FNR == 1 { f++ }
    /_bucket/ { match($0, /le="[^"]*"/); le = substr($0, RSTART + 4, RLENGTH - 5)
                if (f == 1) a[le] = $2; else { b[le] = $2; if (!(le in seen)) { order[++nb] = le; seen[le] = 1 } } }
    /_sum/   { if (f == 1) s0 = $2; else s1 = $2 }
    /_count/ { if (f == 1) c0 = $2; else c1 = $2 }
    function q(p,   i, rank, prev, prevc, c, le) {
      rank = p * (c1 - c0); prev = 0; prevc = 0
      for (i = 1; i <= nb; i++) {
        le = order[i]; c = b[le] - a[le]
        if (c >= rank) {
          if (le == "+Inf") return prev * 1000
          return 1000 * (prev + (le - prev) * (c == prevc ? 1 : (rank - prevc) / (c - prevc)))
        }
        prev = le; prevc = c
      }
    }
    END { n = c1 - c0; printf "%d %.1f %.1f %.1f\n", n, n ? 1000 * (s1 - s0) / n : 0, q(0.5), q(0.99) }
  ' "$1" "$2"
}

search_loop() {
  while [ ! -e "$dir/stop" ]; do
    command psql -h "$dir" -p "$pgport" -d postgres -Xq -c "SET statement_timeout = '10s'" \
      -c "SELECT count(*) FROM logagg.search('/([a-f0-9]{2,})\1\1 took/', since => NULL)" >/dev/null 2>&1 || true
    echo >> "$dir/searches"
  done
}

round() {
  local r=$1 mode=$2 spid=
  rm -f "$dir/stop" "$dir/searches"
  if [ "$mode" = search ]; then
    search_loop & spid=$!
    # the search is under way before the first record goes out
    for _ in $(seq 100); do
      [ "$(psql -c "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%logagg.search(%' AND state = 'active' AND pid <> pg_backend_pid()")" -gt 0 ] && break
      sleep 0.1
    done
  fi
  metrics > "$dir/m0"
  local rows0 t0 t1 rows1
  rows0=$(psql -c "SELECT count(*) FROM logagg.logs WHERE source = 'bench'")
  t0=$(date +%s.%N)
  for i in $(seq "$EMITTERS"); do
    "$emit" --url "ws://127.0.0.1:$wsport/ingest" --token "$token" --profile a \
      --count "$COUNT" --batch "$BATCH" --quiet --seed "$((r * 10 + i))" > "$dir/emit.$i" &
  done
  for j in $(jobs -p); do [ "$j" = "$spid" ] || wait "$j"; done
  t1=$(date +%s.%N)
  metrics > "$dir/m1"
  local searches=0
  if [ -n "$spid" ]; then
    touch "$dir/stop"; psql -c "SELECT pg_cancel_backend(pid) FROM pg_stat_activity WHERE query LIKE '%logagg.search(%' AND pid <> pg_backend_pid()" >/dev/null
    wait "$spid"
    searches=$(wc -l < "$dir/searches")
  fi
  rows1=$(psql -c "SELECT count(*) FROM logagg.logs WHERE source = 'bench'")
  [ $((rows1 - rows0)) -eq $((EMITTERS * COUNT)) ] || { echo "expected $((EMITTERS * COUNT)) rows, got $((rows1 - rows0))" >&2; exit 1; }
  read -r n mean p50 p99 < <(flush_stats "$dir/m0" "$dir/m1")
  awk -v r="$r" -v m="$mode" -v rows="$((rows1 - rows0))" -v t0="$t0" -v t1="$t1" -v n="$n" -v mean="$mean" -v p50="$p50" -v p99="$p99" \
      -v s="$searches" -v load="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
    printf "round %d %-6s: %d rows in %.2f s = %6.0f rows/s; %d batches, flush mean %.1f ms, p50 %.1f ms, p99 %.1f ms; %d searches; load %s\n",
      r, m, rows, t1 - t0, rows / (t1 - t0), n, mean, p50, p99, s, load }'
}

echo "$(psql -c "SELECT count(*) FROM logagg.logs") rows preloaded; one search alone:"
command psql -h "$dir" -p "$pgport" -d postgres -Xq -c '\timing on' -c "SET statement_timeout = '10s'" \
  -c "SELECT count(*) FROM logagg.search('/([a-f0-9]{2,})\1\1 took/', since => NULL)" 2>&1 | grep -E 'Time|ERROR' || true
for r in $(seq "$ROUNDS"); do
  if [ $((r % 2)) -eq 1 ]; then round "$r" quiet; round "$r" search; else round "$r" search; round "$r" quiet; fi
done
