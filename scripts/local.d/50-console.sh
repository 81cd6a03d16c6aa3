# 50-console.sh — local-up hook: a reader token for the web console and
# logagg-tail (the reader worker listens on logagg.reader_port, 7481 by
# default). Sourced by scripts/local-up.sh with LOCAL_DIR, PGHOST, PGPORT set.
reader_port=$(psql -qAtX -c "SHOW logagg.reader_port")
reader_token=$(psql -qAtX -c "SELECT logagg.create_reader_token('local-console', '*')")
cat >> "$LOCAL_DIR/info" <<INFO
  Console:    http://127.0.0.1:$reader_port/  (sign in with the reader token below)
  Live tail:  LOGAGG_TOKEN=$reader_token tools/logagg-tail --port $reader_port
  Reader token (every source): $reader_token
INFO
