#!/usr/bin/env bash
# bench/tail/run.sh -- the live tail: COMMIT-to-subscriber latency, and
# ingest rows/s with 10 subscribers that never read vs without them.
#
# Starts a throwaway PostgreSQL 15 instance with logagg preloaded (ingest
# and reader ports free on loopback), then runs bench/tail/tail_bench.py:
#   latency  COUNT records at RATE/s over WebSocket /ingest, received by a
#            WebSocket subscriber and by logagg-tail --json; p50/p99 of
#            arrival - ack (a lower bound of arrival - COMMIT) and of
#            arrival - send (an upper bound)
#   stall    PAIRS x (without, with, with, without) rounds of EMITTERS
#            logagg-emit processes sending PER_EMITTER records each; "with"
#            rounds have SUBSCRIBERS /tail connections that never read
# Prints both results as JSON lines and the machine's load average.
#
#   bench/tail/run.sh                       # COUNT=3000 RATE=200 PAIRS=2 PER_EMITTER=300000
#   COUNT=5000 RATE=500 PAIRS=3 PER_EMITTER=150000 bench/tail/run.sh
#   MODE=latency bench/tail/run.sh          # one part only (latency|stall)
#
# Runs as the postgres user (initdb refuses root); needs `make install` or
# `make` done (it uses tools/logagg-tail and emitters/logagg-emit).
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u postgres -- env PATH="$PATH" COUNT="${COUNT:-}" RATE="${RATE:-}" \
    PAIRS="${PAIRS:-}" EMITTERS="${EMITTERS:-}" PER_EMITTER="${PER_EMITTER:-}" \
    SUBSCRIBERS="${SUBSCRIBERS:-}" MODE="${MODE:-}" bash "$0" "$@"
fi
COUNT=${COUNT:-3000}
RATE=${RATE:-200}
PAIRS=${PAIRS:-2}
EMITTERS=${EMITTERS:-2}
PER_EMITTER=${PER_EMITTER:-300000}
SUBSCRIBERS=${SUBSCRIBERS:-10}
MODE=${MODE:-both}
here=$(cd "$(dirname "$0")/../.." && pwd)
cli=$here/tools/logagg-tail
[ -x "$cli" ] || cli=logagg-tail
rport=$(/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
EXTRA_CONF="logagg.reader_port = $rport"
# shellcheck source=bench/lib/instance.sh
source "$here/bench/lib/instance.sh"
for _ in $(seq 100); do
  [ "$(psql -c "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'logagg reader'")" = 1 ] && break
  sleep 0.1
done
reader=$(psql -c "SELECT logagg.create_reader_token('bench', '*')")
rpid=$(psql -c "SELECT pid FROM pg_stat_activity WHERE backend_type = 'logagg reader'")

bench() {
  /usr/bin/python3 "$here/bench/tail/tail_bench.py" "$@" --ingest-port "$wsport" \
    --reader-port "$rport" --source-token "$token" --reader-token "$reader" \
    --cli "$cli" --emit "$emit"
}
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$MODE" = both ] || [ "$MODE" = latency ]; then
  bench latency --count "$COUNT" --rate "$RATE"
  echo "load after latency: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
if [ "$MODE" = both ] || [ "$MODE" = stall ]; then
  bench stall --subscribers "$SUBSCRIBERS" --pairs "$PAIRS" --emitters "$EMITTERS" \
    --per-emitter "$PER_EMITTER" --ingest-pid "$wpid" --reader-pid "$rpid"
  echo "load after stall: $(cut -d' ' -f1-3 /proc/loadavg)"
fi
echo "rows stored: $(psql -c 'SELECT count(*) FROM logagg.logs')"
