#!/usr/bin/env bash
# bench/search/run.sh -- logagg.search() latency on ROWS log records
# (default 10 million) spread over DAYS daily partitions, with the trigram
# index on message off and then on.
#
# Rows are generated in the server (INSERT ... SELECT generate_series, in
# chunks of 1M, so memory stays bounded), messages built from a fixed
# vocabulary plus ids, so trigrams behave as in real logs.  Each query is
# run REPS times; the p50 and p95 of the wall time of the whole
# logagg.search() call (client side, psql \timing) are reported.  Then the
# maintenance worker builds the trigram index on every partition (CREATE
# INDEX CONCURRENTLY; its duration is reported) and the queries run again.
#
#   bench/search/run.sh                  # ROWS=10000000 DAYS=4 REPS=15 PHASES="noindex trigram"
#   ROWS=2000000 bench/search/run.sh
#   PHASES=trigram bench/search/run.sh   # only with the index (skips the slow scans)
#
# Runs as the postgres user (initdb refuses root); needs `make install` done.
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u postgres -- env PATH="$PATH" ROWS="${ROWS:-}" DAYS="${DAYS:-}" REPS="${REPS:-}" PHASES="${PHASES:-}" bash "$0" "$@"
fi
ROWS=${ROWS:-10000000}
DAYS=${DAYS:-4}
REPS=${REPS:-15}
PHASES=${PHASES:-noindex trigram}
here=$(cd "$(dirname "$0")/../.." && pwd)
EXTRA_CONF="logagg.dispatch_workers = 0
maintenance_work_mem = '512MB'
shared_buffers = '512MB'
max_parallel_maintenance_workers = 0"
# shellcheck source=bench/lib/instance.sh
source "$here/bench/lib/instance.sh"

psql -c "CREATE EXTENSION pg_trgm"
# partitions for the last DAYS days (the worker made today's and tomorrow's)
psql -c "SELECT logagg._ensure_partition(date_trunc('day', now() AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' - make_interval(days => d), 86400)
           FROM generate_series(1, $DAYS - 1) d" >/dev/null

t0=$(date +%s)
chunk=1000000
for ((start = 0; start < ROWS; start += chunk)); do
  n=$(( ROWS - start < chunk ? ROWS - start : chunk ))
  psql -c "
INSERT INTO logagg.logs (ts, source, level, severity, status, message, attrs)
SELECT now() - make_interval(secs => (i::float8 / $ROWS) * 86400 * $DAYS - 1),
       'service-' || (i % 20),
       CASE WHEN i % 50 = 0 THEN 'error' ELSE 'info' END,
       CASE WHEN i % 50 = 0 THEN 'high' ELSE 'low' END::logagg.severity,
       CASE WHEN i % 97 = 0 THEN 500 ELSE 200 END,
       w[1 + (h & 31)] || ' ' || w[1 + ((h >> 5) & 31)] || ' ' || w[1 + ((h >> 10) & 31)]
         || ' request id=' || (i % 1000003) || ' user=u' || ((h >> 15) & 65535)
         || ' took ' || ((h >> 8) & 1023) || 'ms',
       jsonb_build_object('region', CASE WHEN i % 3 = 0 THEN 'eu' ELSE 'us' END, 'shard', i % 64)
  FROM generate_series($start + 1, $start + $n) i,
       LATERAL (SELECT hashint4(i) & 2147483647 AS h) hh,
       (SELECT ARRAY['GET', 'POST', 'PUT', 'DELETE', 'payment', 'accepted', 'declined', 'timeout',
                     'connection', 'reset', 'upstream', 'cache', 'miss', 'hit', 'login', 'logout',
                     'session', 'expired', 'order', 'shipped', 'invoice', 'created', 'retry', 'queue',
                     'worker', 'started', 'stopped', 'disk', 'quota', 'exceeded', 'token', 'refreshed'] AS w) ww"
done
t1=$(date +%s)
psql -c "VACUUM ANALYZE logagg.logs"
t2=$(date +%s)
echo "generated $(psql -c 'SELECT count(*) FROM logagg.logs') rows in $((t1 - t0)) s (+ $((t2 - t1)) s VACUUM ANALYZE); $(psql -c "SELECT pg_size_pretty(sum(pg_total_relation_size(partition))) FROM logagg.partitions")"

# name|search arguments
queries=(
  "rare id, last hour|'id=777777 '"
  "rare id, 24 h|'id=777777 ', since => now() - interval '1 day'"
  "rare id, all data|'id=777777 ', since => NULL"
  "user, last hour|'user=u31337 '"
  "two words, last hour|'payment declined'"
  "word, last hour, 100 newest|'timeout'"
  "regex, last hour|'/declined.*id=12345[0-9] /'"
  "absent text, all data|'no such words here', since => NULL"
)

run_queries() {
  local label=$1
  for q in "${queries[@]}"; do
    local name=${q%%|*} args=${q#*|}
    {
      echo '\timing on'
      for _ in $(seq "$REPS"); do echo "SELECT count(*) FROM logagg.search($args);"; done
    } | command psql -h "$dir" -p "$pgport" -d postgres -Xq 2>&1 | sed -n 's/^Time: \([0-9.]*\) ms.*/\1/p' | sort -n |
      awk -v label="$label" -v name="$name" '{ t[NR] = $1 } END {
        printf "%-10s %-32s p50 %9.1f ms  p95 %9.1f ms  (%d runs)\n", label, name, t[int((NR + 1) / 2)], t[int(NR * 0.95 + 0.5)], NR }'
  done
  echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
}

case " $PHASES " in *" noindex "*) run_queries "no index" ;; esac

psql -c "ALTER SYSTEM SET logagg.index_messages = on" -c "SELECT pg_reload_conf()" >/dev/null
sleep 1
t3=$(date +%s)
psql -c "SELECT logagg.maintain()" >/dev/null
until [ "$(psql -c "SELECT count(*) FROM logagg._search_index_todo()")" = 0 ]; do sleep 2; done
t4=$(date +%s)
echo "trigram index built CONCURRENTLY on $(psql -c "SELECT count(*) FROM logagg.partitions") partitions in $((t4 - t3)) s; $(psql -c "SELECT pg_size_pretty(sum(pg_relation_size(indexrelid))) FROM pg_index WHERE indexrelid::regclass::text LIKE '%message_trgm'")"
psql -c "ANALYZE logagg.logs"
case " $PHASES " in *" trigram "*) run_queries "trigram" ;; esac
