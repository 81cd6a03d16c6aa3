# 20-emitters.sh — local-up hook (sourced by scripts/local-up.sh): one
# source per simulated service (service-a, service-b, service-c), each with
# its own token, and one logagg-emit per profile sending to $LOGAGG_URL at a
# modest rate, so logs flow as soon as the system is up.
#
# Tokens are kept in $LOCAL_DIR/tokens (mode 600; they are shown only once
# by logagg.create_source), emitter output in $LOCAL_DIR/logs/emit-X.log.
LOGAGG_EMIT_RATE=${LOGAGG_EMIT_RATE:-20}
if [ -x "$here/emitters/logagg-emit" ]; then
  emit_bin="$here/emitters/logagg-emit"
elif command -v logagg-emit >/dev/null 2>&1; then
  emit_bin=$(command -v logagg-emit)
else
  echo "20-emitters.sh: logagg-emit not found (run make)" >&2
  emit_bin=
fi

if [ -n "$emit_bin" ]; then
  : > "$LOCAL_DIR/tokens"
  chmod 600 "$LOCAL_DIR/tokens"
  for profile in a b c; do
    svc="service-$profile"
    token=$(psql -XAtq -v ON_ERROR_STOP=1 -v name="$svc" <<'SQL'
SELECT logagg.create_source(:'name')
SQL
)
    echo "$svc $token" >> "$LOCAL_DIR/tokens"
    # --give-up-after 0: keep retrying (the server may restart); --duration
    # bounds the run to a day
    nohup "$emit_bin" --profile "$profile" --token "$token" --url "$LOGAGG_URL" \
      --rate "$LOGAGG_EMIT_RATE" --duration 86400 --give-up-after 0 --quiet \
      > "$LOCAL_DIR/logs/emit-$profile.log" 2>&1 < /dev/null &
    echo $! >> "$LOCAL_DIR/pids"
  done
  unset token
  cat >> "$LOCAL_DIR/info" <<INFO
  Emitters:   logagg-emit --profile a|b|c (service-a web API, service-b auth,
              service-c background jobs), $LOGAGG_EMIT_RATE records/s each, to $LOGAGG_URL
              output: $LOCAL_DIR/logs/emit-{a,b,c}.log
              tokens: $LOCAL_DIR/tokens   (send your own: logagg-emit --stdin --token ...)
INFO
fi
