# bench/lib/instance.sh — sourced by the ingest benchmarks: a throwaway
# PostgreSQL 15 instance with logagg preloaded on free loopback ports,
# the extension created, a source "bench" and the ingest worker's pid.
#
# Needs: $here (repository root).  Honours $EXTRA_CONF (postgresql.conf
# lines).  Sets: bindir emit dir pgport wsport token wpid, and defines
# psql(), cpu PID (utime + stime ticks) and faults PID (minor page
# faults); removes the instance on exit.
bindir=$(pg_config --bindir)
emit=$here/emitters/logagg-emit
[ -x "$emit" ] || emit=logagg-emit
dir=$(mktemp -d /tmp/logagg-bench.XXXXXX)
chmod 755 "$dir"
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
${EXTRA_CONF:-}
CONF
"$bindir/pg_ctl" -D "$dir/data" -l "$dir/log" start -w >/dev/null
psql() { command psql -h "$dir" -p "$pgport" -d postgres -XAtq "$@"; }
psql -c 'CREATE EXTENSION logagg'
for _ in $(seq 100); do
  [ "$(psql -c "SELECT ready FROM logagg.status() WHERE kind = 'ingest'")" = t ] && break
  sleep 0.1
done
token=$(psql -c "SELECT logagg.create_source('bench')")
wpid=$(psql -c "SELECT pid FROM logagg.status() WHERE kind = 'ingest'")
cpu() { awk '{print $14 + $15}' "/proc/$1/stat"; }
faults() { awk '{print $10}' "/proc/$1/stat"; }   # minor page faults
