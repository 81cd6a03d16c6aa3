# 40-sync.sh — local-up hook: a local S3-compatible server (npm s3rver,
# pinned in test/package.json) with cloud sync pointed at it.
# Sourced by scripts/local-up.sh with LOCAL_DIR, PGHOST, PGPORT set.
s3_port=${LOGAGG_S3_PORT:-4569}
s3_bucket=logagg
s3rver_bin="$here/test/node_modules/.bin/s3rver"
if [ ! -x "$s3rver_bin" ]; then
  (cd "$here/test" && npm ci --no-audit --no-fund --silent)
fi
mkdir -p "$LOCAL_DIR/s3"
chown "$RUN_USER" "$LOCAL_DIR/s3" 2>/dev/null || true
node "$s3rver_bin" -d "$LOCAL_DIR/s3" -a 127.0.0.1 -p "$s3_port" -s \
  --configure-bucket "$s3_bucket" > "$LOCAL_DIR/logs/s3rver.log" 2>&1 &
echo $! >> "$LOCAL_DIR/pids"
for _ in $(seq 1 50); do
  curl -s -o /dev/null "http://127.0.0.1:$s3_port/" && break
  sleep 0.2
done
# s3rver's built-in credentials are S3RVER / S3RVER; windows close after a
# short grace so objects appear within a couple of minutes of each hour.
psql -qX >/dev/null <<SQL
ALTER SYSTEM SET logagg.sync_url = 's3://$s3_bucket/logs';
ALTER SYSTEM SET logagg.s3_endpoint = 'http://127.0.0.1:$s3_port';
ALTER SYSTEM SET logagg.s3_region = 'us-east-1';
ALTER SYSTEM SET logagg.s3_access_key_id = 'S3RVER';
ALTER SYSTEM SET logagg.s3_secret_access_key = 'S3RVER';
ALTER SYSTEM SET logagg.sync_interval = '30s';
ALTER SYSTEM SET logagg.sync_grace = '10s';
SELECT pg_reload_conf();
SQL
cat >> "$LOCAL_DIR/info" <<INFO
  Cloud sync: s3rver on http://127.0.0.1:$s3_port, bucket "$s3_bucket", every 30 s;
              closed hourly windows appear as objects under $LOCAL_DIR/s3/$s3_bucket/logs/
              (list: curl 'http://127.0.0.1:$s3_port/$s3_bucket?list-type=2';
               history: SELECT * FROM logagg.sync_log ORDER BY id DESC;)
INFO
