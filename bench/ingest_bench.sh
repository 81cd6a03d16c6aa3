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
bindir=$(pg_config --bindir)
emit=$here/emitters/logagg-emit
[ -x "$emit" ] || emit=logagg-emit
dir=$(mktemp -d /tmp/logagg-bench.XXXXXX)
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
pgport=$(free_port); wsport=$(free_port)
cleanup() { "$bindir/pg_ctl" -D "$dir/data" stop -m fast >/dev/null 2>&1 || true; rm -rf "$dir"; }
trap cleanup EXIT

"$bindir/initdb" -D "$dir/data" -A trust >/dev/null
cat >> "$dir/data/postgresql.conf" <<CONF
port = $pgport
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = 'logagg'
logagg.port = $wsport
logagg.dispatch_workers = 1
max_worker_processes = 16
CONF
"$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" start -w >/dev/null
psql() { command psql -h "$dir" -p "$pgport" -d postgres -XAtq "$@"; }
psql -c 'CREATE EXTENSION logagg'
for _ in $(seq 50); do
  [ "$(psql -c "SELECT ready FROM logagg.status() WHERE kind = 'ingest'")" = t ] && break
  sleep 0.1
done
token=$(psql -c "SELECT logagg.create_source('bench')")
wpid=$(psql -c "SELECT pid FROM logagg.status() WHERE kind = 'ingest'")
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }

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
