# 30-alerts.sh — local-up hook (sourced by scripts/local-up.sh): a local
# webhook receiver on 127.0.0.1 as an alert destination, so the emitters'
# critical and high alerts are visible.  Each notification is one JSON line
# in $LOCAL_DIR/logs/alerts.jsonl.
LOGAGG_ALERT_PORT=${LOGAGG_ALERT_PORT:-7483}   # 7481 is the reader (console) port
LOGAGG_ALERT_CONTROL_PORT=${LOGAGG_ALERT_CONTROL_PORT:-7482}
alerts_file="$LOCAL_DIR/logs/alerts.jsonl"
: > "$alerts_file"
/usr/bin/python3 "$here/test/receivers/http_receiver.py" \
  --port "$LOGAGG_ALERT_PORT" --control-port "$LOGAGG_ALERT_CONTROL_PORT" \
  --out "$alerts_file" --ready-file "$LOCAL_DIR/run/alerts.ready" \
  > "$LOCAL_DIR/logs/alert-receiver.log" 2>&1 &
echo $! >> "$LOCAL_DIR/pids"
for _ in $(seq 1 100); do [ -e "$LOCAL_DIR/run/alerts.ready" ] && break; sleep 0.1; done
psql -qX -v ON_ERROR_STOP=1 >/dev/null <<SQL
SET log_statement = 'none';
SELECT logagg.add_destination('local-webhook', 'webhook',
  jsonb_build_object('url', 'http://127.0.0.1:$LOGAGG_ALERT_PORT/alerts',
                     'secret', md5(random()::text)));
SELECT logagg.add_route('local-webhook', 'high', NULL, '1 min');
SQL
cat >> "$LOCAL_DIR/info" <<INFO
  Alerts:     high and critical alerts go to a local webhook receiver
              (127.0.0.1:$LOGAGG_ALERT_PORT); each notification is a line in
              $alerts_file   (tail -f it)
              history: SELECT * FROM logagg.alert_log ORDER BY id DESC LIMIT 20;
              test:    SELECT logagg.test_destination('local-webhook');
INFO
