#!/usr/bin/env bash
# bench/sync/run.sh — cloud-sync throughput and maintenance-worker memory.
#
# Builds a throwaway cluster with logagg, fills ONE closed hourly window of
# one source with ROWS rows (default 2.6M, ~1 GB of NDJSON), lets the
# maintenance worker export + gzip + upload it to a local s3rver (multipart,
# default 64 MiB parts), and reports:
#   - source MB/s: NDJSON bytes exported / (finished_at - started_at)
#   - the same bytes (raw NDJSON, and the gzip object) sent with `curl -T`
#     to the same s3rver, and the ratio logagg / curl
#   - the maintenance worker's VmHWM / peak VmRSS (from /proc/PID/status)
#     sampled during the export
# Run as root (uses runuser -u postgres) from the repo root after make install:
#   bash bench/sync/run.sh [ROWS]
set -euo pipefail
here=$(cd "$(dirname "$0")/../.." && pwd)
ROWS=${1:-2600000}
bindir=$(pg_config --bindir)
work=$(mktemp -d /tmp/logagg-bench-sync.XXXXXX)
chown postgres "$work"
pgport=$((20000 + RANDOM % 20000)); s3port=$((pgport + 1)); lport=$((pgport + 2))
as_pg() { runuser -u postgres -- "$@"; }
cleanup() {
  as_pg "$bindir/pg_ctl" -D "$work/data" -m fast -w stop >/dev/null 2>&1 || true
  [ -n "${s3pid:-}" ] && kill "$s3pid" 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

node "$here/test/node_modules/.bin/s3rver" -d "$work/s3" -a 127.0.0.1 -p "$s3port" -s \
  --configure-bucket bench > "$work/s3rver.log" 2>&1 &
s3pid=$!
as_pg "$bindir/initdb" -D "$work/data" -A trust -U postgres >/dev/null
cat >> "$work/data/postgresql.conf" <<CONF
listen_addresses = ''
port = $pgport
unix_socket_directories = '$work'
shared_preload_libraries = 'logagg'
logagg.port = $lport
logagg.partition_interval = '1h'
logagg.sync_url = 's3://bench/b'
logagg.s3_endpoint = 'http://127.0.0.1:$s3port'
logagg.s3_access_key_id = 'S3RVER'
logagg.s3_secret_access_key = 'S3RVER'
logagg.sync_grace = 0
logagg.sync_interval = '1h'
shared_buffers = '256MB'
max_wal_size = '4GB'
CONF
as_pg "$bindir/pg_ctl" -D "$work/data" -l "$work/pg.log" -w start >/dev/null
psqlb() { as_pg psql -qAtX -h "$work" -p "$pgport" -d postgres "$@"; }
psqlb -c "CREATE EXTENSION logagg"
echo "filling one window with $ROWS rows..."
psqlb -c "
INSERT INTO logagg.logs (ts, source, level, severity, status, message, trace_id, span_id, attrs)
SELECT date_trunc('hour', now()) - interval '2 hours' + make_interval(secs => (i % 3600)),
       'bench', 'info', 'low', 200,
       'GET /api/v1/items/' || i || ' completed in ' || (i % 977) || ' ms user=' || md5(i::text),
       md5((i * 3)::text), left(md5((i * 5)::text), 16),
       jsonb_build_object('route', '/api/v1/items/:id', 'bytes', i % 65536, 'region', 'eu-west-1')
FROM generate_series(1, $ROWS) i;" >/dev/null
psqlb -c "VACUUM ANALYZE logagg.logs" >/dev/null

wpid=$(psqlb -c "SELECT pid FROM logagg.status() WHERE kind = 'maintenance'")
echo "maintenance worker pid $wpid; baseline $(grep -E 'VmHWM|VmRSS' /proc/$wpid/status | tr -s ' \n' ' ')"
base_hwm=$(awk '/VmHWM/ {print $2}' /proc/$wpid/status)
# make the worker run a cycle now: a short interval, reloaded
psqlb -c "ALTER SYSTEM SET logagg.sync_interval = '1s'" -c "SELECT pg_reload_conf()" >/dev/null
peak=0; peak_anon=0
for _ in $(seq 1 3000); do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$wpid/status 2>/dev/null || echo 0)
  anon=$(awk '/RssAnon/ {print $2}' /proc/$wpid/status 2>/dev/null || echo 0)
  [ "$rss" -gt "$peak" ] && peak=$rss
  [ "$anon" -gt "$peak_anon" ] && peak_anon=$anon
  done_=$(psqlb -c "SELECT count(*) FROM logagg.sync_log WHERE status = 'uploaded'")
  [ "$done_" -ge 1 ] && break
  sleep 0.2
done
hwm=$(awk '/VmHWM/ {print $2}' /proc/$wpid/status)
read -r raw bytes secs parts key < <(psqlb -F ' ' -c "
SELECT raw_bytes, bytes, extract(epoch FROM finished_at - started_at), upload_parts, object_key
FROM logagg.sync_log WHERE status = 'uploaded'")
echo "logagg: rows=$ROWS ndjson=${raw}B gzip=${bytes}B parts=$parts in ${secs}s"

# the same bytes with curl -T to the same server
obj="$work/obj.ndjson.gz"
curl -s -o "$obj" "http://127.0.0.1:$s3port/bench/$(python3 -c 'import sys,urllib.parse;print(urllib.parse.quote(sys.argv[1]))' "$key")"
gunzip -c "$obj" > "$work/obj.ndjson"
t_gz=$(curl -s -o /dev/null -w '%{time_total}' -T "$obj" "http://127.0.0.1:$s3port/bench/curl-gz")
t_raw=$(curl -s -o /dev/null -w '%{time_total}' -T "$work/obj.ndjson" "http://127.0.0.1:$s3port/bench/curl-raw")
python3 - "$raw" "$bytes" "$secs" "$t_gz" "$t_raw" "$base_hwm" "$hwm" "$peak" "$peak_anon" <<'PY'
import sys
raw, gz, secs, tgz, traw, base, hwm, peak, anon = map(float, sys.argv[1:])
mb = 1e6
print("source MB/s (logagg export+gzip+upload): %.1f  (%.0f MB NDJSON -> %.0f MB gzip in %.1f s)" % (raw/mb/secs, raw/mb, gz/mb, secs))
print("curl -T raw NDJSON (same bytes):  %.1f MB/s in %.1f s   ratio logagg/curl = %.2f" % (raw/mb/traw, traw, (raw/secs)/(raw/traw)))
print("curl -T gzip object (same upload): %.1f MB/s in %.1f s  ratio (wall time curl/logagg) = %.2f" % (gz/mb/tgz, tgz, tgz/secs))
print("maintenance worker memory: VmHWM %.0f MB after (baseline %.0f MB), peak sampled VmRSS %.0f MB, peak RssAnon (private) %.0f MB" % (hwm/1024, base/1024, peak/1024, anon/1024))
print("(VmRSS includes the shared_buffers pages the worker touched while reading the table; RssAnon is its own memory)")
PY
