#!/usr/bin/env bash
# bench/citus/citus_bench.sh -- ingest on one node (local logagg.logs) vs a
# three-node Citus cluster (logagg.distribute()), on this machine, in one run.
#
# Both set-ups get the same load: EMITTERS logagg-emit processes in all,
# each sending COUNT profile-a records over WebSocket as fast as acks
# allow.  On one node they all go to its port; on the cluster they are
# spread over the coordinator's and the worker nodes' ingest ports, and
# every node is also a Citus node holding shards.  Reported per set-up:
# rows/s (first send to last ack, every row committed) and the CPU of all
# server processes of the set-up (utime + stime of the postmasters'
# children, before and after) per row.
#
#   bench/citus/citus_bench.sh           # EMITTERS=3 COUNT=100000 SHARDS=8
#
# Needs Citus installed (scripts/install-citus.sh) and `make install` done;
# runs as the postgres user (initdb refuses root).
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u postgres -- env PATH="$PATH" EMITTERS="${EMITTERS:-}" COUNT="${COUNT:-}" \
    SHARDS="${SHARDS:-}" bash "$0" "$@"
fi
EMITTERS=${EMITTERS:-3}
COUNT=${COUNT:-100000}
SHARDS=${SHARDS:-8}
here=$(cd "$(dirname "$0")/../.." && pwd)
bindir=$(pg_config --bindir)
emit=$here/emitters/logagg-emit
[ -x "$emit" ] || emit=logagg-emit
[ -f "$(pg_config --pkglibdir)/citus.so" ] || { echo "Citus is not installed (scripts/install-citus.sh)" >&2; exit 1; }
dir=$(mktemp -d /tmp/logagg-citus-bench.XXXXXX)
chmod 755 "$dir"
free_port() { /usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
nodes=()
cleanup() {
  for n in "${nodes[@]}"; do "$bindir/pg_ctl" -D "$dir/$n" stop -m fast >/dev/null 2>&1 || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

declare -A pgport wsport
# start_node NAME PRELOAD
start_node() {
  local n=$1 preload=$2
  pgport[$n]=$(free_port); wsport[$n]=$(free_port)
  "$bindir/initdb" -D "$dir/$n" -A trust >/dev/null
  cat >> "$dir/$n/postgresql.conf" <<CONF
port = ${pgport[$n]}
listen_addresses = ''
unix_socket_directories = '$dir'
shared_preload_libraries = '$preload'
max_prepared_transactions = 50
logagg.port = ${wsport[$n]}
logagg.dispatch_workers = 1
max_worker_processes = 16
CONF
  "$bindir/pg_ctl" -D "$dir/$n" -l "$dir/$n.log" start -w >/dev/null
  nodes+=("$n")
}
sql() { local n=$1; shift; command psql -h "$dir" -p "${pgport[$n]}" -d postgres -XAtq "$@"; }
wait_ready() {
  for _ in $(seq 200); do
    [ "$(sql "$1" -c "SELECT bool_and(ready) FROM logagg.status()")" = t ] && return
    sleep 0.1
  done
  echo "workers of $1 not ready" >&2; exit 1
}
# CPU ticks of every process of the given nodes' postmasters
server_cpu() {
  local total=0 pm
  for n in "$@"; do
    pm=$(head -1 "$dir/$n/postmaster.pid")
    for p in $pm $(pgrep -P "$pm"); do
      [ -r "/proc/$p/stat" ] && total=$((total + $(awk '{print $14 + $15}' "/proc/$p/stat" 2>/dev/null || echo 0)))
    done
  done
  echo "$total"
}
# run LABEL "NODE..." : EMITTERS emitters spread over the nodes' ports
run() {
  local label=$1; shift
  local -a ns=("$@")
  local token c0 c1 t0 t1 rows i n
  token=$(sql "${ns[0]}" -c "SELECT logagg.create_source('bench-$label')")
  sleep 1   # the token reaches every node's cache (reference table)
  c0=$(server_cpu "${ns[@]}"); t0=$(date +%s.%N)
  for i in $(seq "$EMITTERS"); do
    n=${ns[$(( (i - 1) % ${#ns[@]} ))]}
    "$emit" --url "ws://127.0.0.1:${wsport[$n]}/ingest" --token "$token" --profile a \
      --count "$COUNT" --batch 200 --quiet --seed "$i" > "$dir/emit.$label.$i" &
  done
  wait
  t1=$(date +%s.%N); c1=$(server_cpu "${ns[@]}")
  rows=$(sql "${ns[0]}" -c "SELECT count(*) FROM logagg.logs WHERE source = 'bench-$label'")
  [ "$rows" -eq $((EMITTERS * COUNT)) ] || { echo "$label: expected $((EMITTERS * COUNT)) rows, found $rows" >&2; exit 1; }
  awk -v l="$label" -v r="$rows" -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v hz="$(getconf CLK_TCK)" 'BEGIN {
    s = t1 - t0
    printf "%-28s %8d rows in %6.2f s = %7.0f rows/s; server CPU %5.1f us/row\n", l, r, s, r / s, 1e6 * c / hz / r
  }' | tee -a "$dir/results"
}

# one node, local table
start_node single logagg
sql single -c 'CREATE EXTENSION logagg'
wait_ready single

# three nodes: coordinator c0, workers w1 w2, every one ingesting
for n in c0 w1 w2; do start_node "$n" 'citus,logagg'; sql "$n" -c 'CREATE EXTENSION citus'; done
sql c0 -c "SELECT citus_set_coordinator_host('$dir', ${pgport[c0]})" >/dev/null
sql c0 -c "SELECT citus_add_node('$dir', ${pgport[w1]})" >/dev/null
sql c0 -c "SELECT citus_add_node('$dir', ${pgport[w2]})" >/dev/null
sql c0 -c 'CREATE EXTENSION logagg'
for n in c0 w1 w2; do wait_ready "$n"; done
sql c0 -c "SELECT logagg.distribute($SHARDS)" >/dev/null

echo "$EMITTERS emitters x $COUNT profile-a records, 200 per frame; $(nproc) cores"
run single single
run distributed-3-nodes c0 w1 w2
awk 'NR == 1 { r1 = $(NF-5); c1 = $(NF-1) } NR == 2 { r2 = $(NF-5); c2 = $(NF-1) }
     END { printf "cluster / single: rows/s %.2fx, server CPU per row %.2fx\n", r2 / r1, c2 / c1 }' "$dir/results"
