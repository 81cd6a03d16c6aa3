#!/usr/bin/env bash
# bench/alert_rules/run.sh -- the cost of alert rules: WebSocket ingest
# throughput with RULES alert rules of NGROUPS groups each against the
# same load without rules, and the latency from a threshold-crossing
# record's ack (after its COMMIT) to the rule's webhook notification.
#
# One instance, ROUNDS pairs of rounds alternating without and with the
# rules (so that a busy machine or a growing table weighs on both alike).
# Every round starts like bench/ingest_vs_copy.sh's: TRUNCATE logagg.logs
# and CHECKPOINT, so that no round pays for an earlier one's dirty buffers
# or a checkpoint under way (before, the round during which the first
# checkpoint ran was 20-30 % slower, with or without rules, and it fell
# on a round with rules in every run); a round is long enough (~8 s) for
# the evaluator to fold deltas during it.
# A round is like bench/ingest_bench.sh: EMITTERS logagg-emit processes,
# COUNT profile-a records each, BATCH per frame, as fast as acks allow;
# every record carries an attribute "shard" with one of NGROUPS values
# (logagg-emit --shards).  The RULES count rules group by attrs.shard and
# by nothing else, each with its own status range (so that they match
# different records: [100 + i % 50, 599]), a 5 minute window and a
# threshold no group reaches; rules are added before each round with
# rules and removed after it.  The evaluator runs every 5 s (the default
# logagg.rule_eval_interval) during these rounds.
# Prints per round rows/s, the ingest worker's CPU per row and, with
# rules, dispatch worker 1's CPU (folding and evaluating) and the groups
# counted per rule; then the ratio of the rows/s sums.
#
# Then, with the rules added again and counted by one more round, the
# latency: logagg.rule_eval_interval is set to EVAL_MS, a webhook route
# goes to test/receivers/http_receiver.py, a rule "probe" (count > 0 of
# level fatal per attrs.probe) is added, and LAT_SAMPLES times a record
# of a new probe group is POSTed to /ingest after a random pause of up
# to EVAL_MS (so records fall anywhere in the evaluation cycle); the time
# from the HTTP answer (sent after COMMIT) to the receiver's arrival of
# that group's firing notification is one sample.  LAT_RATE > 0 runs the
# emitters at that many records/s each during the latency samples.
#
#   bench/alert_rules/run.sh       # RULES=100 NGROUPS=1000 EMITTERS=2 COUNT=1000000 BATCH=200 ROUNDS=3
#                                  # EVAL_MS=1000 LAT_SAMPLES=50 LAT_RATE=0 WARMUP=1
#
# Runs as the postgres user (initdb refuses root); needs `make install` and
# the emitter built (make -C emitters).
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u postgres -- env PATH="$PATH" RULES="${RULES:-}" NGROUPS="${NGROUPS:-}" \
    EMITTERS="${EMITTERS:-}" COUNT="${COUNT:-}" BATCH="${BATCH:-}" ROUNDS="${ROUNDS:-}" \
    EVAL_MS="${EVAL_MS:-}" LAT_SAMPLES="${LAT_SAMPLES:-}" LAT_RATE="${LAT_RATE:-}" WARMUP="${WARMUP:-}" EXTRA_CONF="${EXTRA_CONF:-}" bash "$0" "$@"
fi
RULES=${RULES:-100}
NGROUPS=${NGROUPS:-1000}
EMITTERS=${EMITTERS:-2}
COUNT=${COUNT:-1000000}
BATCH=${BATCH:-200}
ROUNDS=${ROUNDS:-3}
EVAL_MS=${EVAL_MS:-1000}
LAT_SAMPLES=${LAT_SAMPLES:-50}
LAT_RATE=${LAT_RATE:-0}
WARMUP=${WARMUP:-1}
here=$(cd "$(dirname "$0")/../.." && pwd)
# no checkpoint requested by WAL volume inside a round (each starts with one)
EXTRA_CONF="max_wal_size = '4GB'
${EXTRA_CONF:-}"
# shellcheck source=bench/lib/instance.sh
source "$here/bench/lib/instance.sh"
dpid=$(psql -c "SELECT pid FROM logagg.status() WHERE kind = 'dispatch' ORDER BY worker LIMIT 1")

add_rules() {
  psql -c "SELECT count(logagg.add_alert_rule('bench-' || i,
             jsonb_build_object('status', jsonb_build_array(100 + i % 50, 599)),
             '5 min', 1000000000, 'count', ARRAY['attrs.shard']))
           FROM generate_series(1, $RULES) i" >/dev/null
}
remove_rules() {
  psql -c "SELECT count(logagg.remove_alert_rule(name)) FROM logagg.alert_rules WHERE name LIKE 'bench-%'" >/dev/null
}
# wait until the evaluator has folded every delta (at most a few intervals)
wait_folded() {
  for _ in $(seq 600); do
    [ "$(psql -c "SELECT count(*) FROM logagg._alert_rule_deltas")" = 0 ] && return
    sleep 0.1
  done
  echo "deltas not folded" >&2; exit 1
}

# WAL written, full-page images and checkpoints so far: "bytes fpi ckpts"
walstat() {
  psql -c "SELECT pg_current_wal_lsn() - '0/0', w.wal_fpi, b.checkpoints_timed + b.checkpoints_req
           FROM pg_stat_wal w, pg_stat_bgwriter b" | tr '|' ' '
}

# one load: prints "rows seconds worker_ticks dispatch_ticks wal_MB fpi ckpts"
load() {
  local n0 n1 c0 c1 d0 d1 t0 t1 w0 f0 k0 w1 f1 k1
  # every round starts from the same table and no checkpoint under way
  psql -c 'TRUNCATE logagg.logs' -c 'CHECKPOINT'
  n0=$(psql -c "SELECT count(*) FROM logagg.logs")
  read -r w0 f0 k0 < <(walstat)
  c0=$(cpu "$wpid"); d0=$(cpu "$dpid"); t0=$(date +%s.%N)
  for i in $(seq "$EMITTERS"); do
    "$emit" --url "ws://127.0.0.1:$wsport/ingest" --token "$token" --profile a --shards "$NGROUPS" \
      --count "$COUNT" --batch "$BATCH" --quiet --seed "$RANDOM" > "$dir/emit.$i" &
  done
  wait
  t1=$(date +%s.%N); c1=$(cpu "$wpid"); d1=$(cpu "$dpid")
  n1=$(psql -c "SELECT count(*) FROM logagg.logs")
  read -r w1 f1 k1 < <(walstat)
  echo "$((n1 - n0)) $(awk -v a="$t0" -v b="$t1" 'BEGIN { print b - a }') $((c1 - c0)) $((d1 - d0)) $(( (w1 - w0) >> 20 )) $((f1 - f0)) $((k1 - k0))"
}

hz=$(getconf CLK_TCK)
echo "machine: $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg) at start"
# a first round on a fresh instance is slower than the next ones (by 5-10 %
# in every run): one load before the rounds, not counted
if [ "$WARMUP" -gt 0 ]; then
  read -r rows secs _ < <(load)
  awk -v r="$rows" -v s="$secs" 'BEGIN { printf "warm-up, no rules:   %d rows in %.2f s = %.0f rows/s (not counted)\n", r, s, r / s }'
fi
sum_a=0; sum_b=0
for round in $(seq "$ROUNDS"); do
  read -r rows secs wt _ wal fpi ck < <(load)
  awk -v r="$rows" -v s="$secs" -v c="$wt" -v hz="$hz" -v k="$round" -v w="$wal" -v f="$fpi" -v ck="$ck" 'BEGIN {
    printf "round %d, no rules:   %d rows in %.2f s = %.0f rows/s; ingest worker %.2f us/row; WAL %d MB, %d full-page images, %d checkpoints\n", k, r, s, r / s, 1e6 * c / hz / r, w, f, ck }'
  sum_a=$(awk -v a="$sum_a" -v r="$rows" -v s="$secs" 'BEGIN { print a + r / s }')

  add_rules
  read -r rows secs wt dt wal fpi ck < <(load)
  t_fold=$(date +%s.%N)
  wait_folded
  t_folded=$(date +%s.%N)
  groups=$(psql -c "SELECT coalesce(round(avg(n)), 0) FROM (SELECT count(DISTINCT c.labels) AS n
                     FROM logagg._alert_rule_class_rules m
                     JOIN logagg._alert_rule_counts c ON c.class_id = m.class_id GROUP BY m.rule_id) g")
  counters=$(psql -c "SELECT count(*) FROM logagg._alert_rule_counts")
  awk -v r="$rows" -v s="$secs" -v c="$wt" -v d="$dt" -v hz="$hz" -v k="$round" -v n="$RULES" \
      -v g="$groups" -v cn="$counters" -v w="$wal" -v fp="$fpi" -v ck="$ck" -v f="$(awk -v a="$t_fold" -v b="$t_folded" 'BEGIN { print b - a }')" 'BEGIN {
    printf "round %d, %d rules: %d rows in %.2f s = %.0f rows/s; ingest worker %.2f us/row; dispatch worker 1 %.0f%% of a core; %d groups per rule, %d counter rows (per class, group, bucket); last deltas folded %.1f s after the load; WAL %d MB, %d full-page images, %d checkpoints\n",
      k, n, r, s, r / s, 1e6 * c / hz / r, 100 * d / hz / s, g, cn, f, w, fp, ck }'
  sum_b=$(awk -v a="$sum_b" -v r="$rows" -v s="$secs" 'BEGIN { print a + r / s }')
  [ "$round" -lt "$ROUNDS" ] && remove_rules
done
awk -v a="$sum_a" -v b="$sum_b" -v n="$RULES" -v g="$NGROUPS" 'BEGIN {
  printf "with %d rules x %d groups / without: %.2f (mean rows/s %.0f / %.0f)\n", n, g, b / a, b / '"$ROUNDS"', a / '"$ROUNDS"' }'
echo "machine: load $(cut -d' ' -f1-3 /proc/loadavg) after the rounds"

[ "$LAT_SAMPLES" -gt 0 ] || exit 0

# ---- latency: threshold-crossing record's ack -> webhook arrival ----
rport=$(free_port); cport=$(free_port)
/usr/bin/python3 "$here/test/receivers/http_receiver.py" --port "$rport" --control-port "$cport" \
  --out "$dir/received.jsonl" --ready-file "$dir/receiver.ready" &
rpid=$!
lpids=()
trap 'kill "$rpid" "${lpids[@]}" 2>/dev/null || true; cleanup' EXIT
for _ in $(seq 100); do [ -e "$dir/receiver.ready" ] && break; sleep 0.1; done
psql -c "ALTER SYSTEM SET logagg.rule_eval_interval = '${EVAL_MS}ms'" -c "SELECT pg_reload_conf()" >/dev/null
psql -c "SELECT logagg.add_destination('lat', 'webhook', '{\"url\": \"http://127.0.0.1:$rport/lat\"}')" \
     -c "SELECT logagg.add_route('lat', 'high')" \
     -c "SELECT logagg.add_alert_rule('probe', '{\"level\": \"fatal\"}', '1 min', 0, 'count', ARRAY['attrs.probe'])" >/dev/null
if [ "$LAT_RATE" -gt 0 ]; then
  for i in $(seq "$EMITTERS"); do
    "$emit" --url "ws://127.0.0.1:$wsport/ingest" --token "$token" --profile a --shards "$NGROUPS" \
      --rate "$LAT_RATE" --duration 100000 --batch "$BATCH" --quiet --seed "$RANDOM" > "$dir/lat-emit.$i" &
    lpids+=($!)
  done
fi
/usr/bin/python3 - "$wsport" "$token" "$dir/received.jsonl" "$LAT_SAMPLES" "$EVAL_MS" <<'PY'
import json, random, sys, time, urllib.request
port, token, out, samples, eval_ms = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
random.seed(1)
lat = []
seen = 0
for i in range(samples):
    time.sleep(random.uniform(0, eval_ms / 1000.0))
    probe = "p%d-%d" % (i, random.randrange(1 << 30))
    body = json.dumps({"level": "fatal", "message": "probe " + probe, "probe": probe}).encode()
    req = urllib.request.Request("http://127.0.0.1:%s/ingest" % port, data=body, method="POST",
                                 headers={"Authorization": "Bearer " + token,
                                          "Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=30) as r:
        r.read()
    acked = time.time()
    deadline = acked + 30 + 3 * eval_ms / 1000.0
    got = None
    while got is None and time.time() < deadline:
        with open(out) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:      # the receiver is still writing it
                    break
                if probe in rec.get("body", "") and '"firing"' in rec.get("body", ""):
                    got = rec["t_recv"]
                    break
        if got is None:
            time.sleep(0.002)
    if got is None:
        sys.exit("no notification for %s" % probe)
    lat.append((got - acked) * 1000)
lat.sort()
def pct(p):
    return lat[min(len(lat) - 1, int(round(p / 100.0 * len(lat) + 0.5)) - 1)]
print("latency ack -> webhook over %d samples, rule_eval_interval %d ms: p50 %.0f ms, p90 %.0f ms, p99 %.0f ms, max %.0f ms (p99 - interval = %.0f ms)"
      % (len(lat), eval_ms, pct(50), pct(90), pct(99), lat[-1], pct(99) - eval_ms))
PY
for p in "${lpids[@]}"; do kill "$p" 2>/dev/null || true; done
echo "machine: load $(cut -d' ' -f1-3 /proc/loadavg) after the latency samples"
