#!/usr/bin/env bash
# bench/protocols/run.sh -- the same records over every ingest protocol, in
# one run: server CPU per row and rows/s.
#
# Starts a throwaway instance (bench/lib/instance.sh), generates N typical
# shipper records with nested attrs (gen_records.py, deterministic: SEED),
# and turns them into each protocol's request bodies with the generators
# in bodies/ (every executable there: native, es, and whatever other
# protocols this tree has; each is called as `NAME RECORDS BATCH OUTDIR`).
# Then, ROUNDS times, for WebSocket and for each generator, in turn:
# TRUNCATE logagg.logs + CHECKPOINT, send all N records, wait for every
# reply (acks and HTTP replies come after the COMMIT that stored them), and
# measure
#   server CPU/row = ingest worker's utime+stime (/proc/PID/stat) delta / rows
#   rows/s         = rows stored / (first send -> last reply)
# WebSocket is driven as bench/ingest_bench.sh drives it: WS_EMITTERS
# logagg-emit processes (--stdin, the native body lines, BATCH records per
# frame).  HTTP protocols are replayed by replay.py over CONNS keep-alive
# connections from bodies generated beforehand; its own CPU is printed to
# show the client is not the bottleneck.  Reported per protocol: the
# MEDIAN of the rounds (CPU/row and rows/s each), then the ratios
#   native POST CPU/row / WebSocket CPU/row        (target <= 1.1)
#   PROTOCOL rows/s / native POST rows/s           (target >= 0.8)
#
#   bench/protocols/run.sh                 # N=100000 BATCH=1000 CONNS=4 ROUNDS=3
#   N=300000 ROUNDS=5 PROTOCOLS="native es" bench/protocols/run.sh
#   PROTOCOLS="native otlp-json otlp-json:gzip" ...  # NAME:ENC passes ENC to the
#                                      # generator as its ENCODING argument
#   PERF=3 PERF_KEEP=/tmp/p.data bench/protocols/run.sh   # + perf profile of the
#                                      # worker during one more native POST run
#                                      # (PERF_PROTOCOL=es: of that protocol)
#
# Runs as the postgres user (initdb refuses root); needs `make install`
# done and emitters/logagg-emit built (make -C emitters).
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u postgres -- env PATH="$PATH" N="${N:-}" BATCH="${BATCH:-}" CONNS="${CONNS:-}" \
    ROUNDS="${ROUNDS:-}" SEED="${SEED:-}" WS_EMITTERS="${WS_EMITTERS:-}" \
    PROTOCOLS="${PROTOCOLS:-}" EXTRA_CONF="${EXTRA_CONF:-}" PERF="${PERF:-}" PERF_KEEP="${PERF_KEEP:-}" PERF_PROTOCOL="${PERF_PROTOCOL:-}" bash "$0" "$@"
fi
N=${N:-100000}
BATCH=${BATCH:-1000}
CONNS=${CONNS:-4}
ROUNDS=${ROUNDS:-3}
SEED=${SEED:-1}
WS_EMITTERS=${WS_EMITTERS:-2}
here=$(cd "$(dirname "$0")/../.." && pwd)
pdir=$here/bench/protocols
# shellcheck source=bench/lib/instance.sh
source "$here/bench/lib/instance.sh"
hz=$(getconf CLK_TCK)

if [ -z "${PROTOCOLS:-}" ]; then
  PROTOCOLS="ws"
  for g in "$pdir"/bodies/*; do [ -x "$g" ] && PROTOCOLS="$PROTOCOLS $(basename "$g")"; done
fi

echo "generating $N records (seed $SEED), $BATCH per body/frame"
/usr/bin/python3 "$pdir/gen_records.py" "$N" "$SEED" > "$dir/records.ndjson"
for p in $PROTOCOLS; do
  [ "$p" = ws ] && continue
  # NAME or NAME:ENCODING (passed to the generator, e.g. otlp-json:gzip)
  enc=(); [[ $p == *:* ]] && enc=("${p#*:}")
  "$pdir/bodies/${p%%:*}" "$dir/records.ndjson" "$BATCH" "$dir/bodies.$p" "${enc[@]}"
done
# WebSocket: the native lines, split over the emitters
if [[ " $PROTOCOLS " == *" ws "* ]]; then
  [ -d "$dir/bodies.native" ] || "$pdir/bodies/native" "$dir/records.ndjson" "$BATCH" "$dir/bodies.native"
  cat "$dir"/bodies.native/body.* > "$dir/ws.ndjson"
  split -n "l/$WS_EMITTERS" -d "$dir/ws.ndjson" "$dir/ws.part."
fi

fresh() { psql -c 'TRUNCATE logagg.logs' -c 'CHECKPOINT'; }

# run_one PROTOCOL -> "rows seconds cpu_ticks client_cpu_seconds"
run_one() {
  local p=$1 c0 c1 t0 t1 out rows secs ccpu
  fresh
  c0=$(cpu "$wpid")
  if [ "$p" = ws ]; then
    t0=$(date +%s.%N)
    local pids=() i=0
    for part in "$dir"/ws.part.*; do
      i=$((i + 1))
      "$emit" --url "ws://127.0.0.1:$wsport/ingest" --token "$token" --stdin \
        --batch "$BATCH" --quiet < "$part" > "$dir/emit.$i" &
      pids+=($!)
    done
    local ok=0
    for pid in "${pids[@]}"; do wait "$pid" || ok=1; done
    t1=$(date +%s.%N)
    secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.4f", b - a }')
    ccpu=na
    [ $ok -eq 0 ] || { echo "logagg-emit failed:" >&2; cat "$dir"/emit.* >&2; exit 1; }
  else
    out=$(/usr/bin/python3 "$pdir/replay.py" --port "$wsport" --token "$token" --conns "$CONNS" "$dir/bodies.$p") ||
      { echo "$p: $out" >&2; exit 1; }
    secs=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["seconds"])' "$out")
    ccpu=$(/usr/bin/python3 -c 'import json,sys; print(json.loads(sys.argv[1])["client_cpu"])' "$out")
  fi
  c1=$(cpu "$wpid")
  rows=$(psql -c 'SELECT count(*) FROM logagg.logs')
  [ "$rows" -eq "$N" ] || { echo "$p: stored $rows rows, expected $N" >&2; exit 1; }
  echo "$rows $secs $((c1 - c0)) $ccpu"
}

echo "protocols: $PROTOCOLS; $ROUNDS rounds (after one warm-up round), WebSocket $WS_EMITTERS emitters, HTTP $CONNS connections"
: > "$dir/results"
for r in $(seq 0 "$ROUNDS"); do
  for p in $PROTOCOLS; do
    read -r rows secs ticks ccpu < <(run_one "$p")
    line=$(awk -v p="$p" -v r="$rows" -v s="$secs" -v t="$ticks" -v hz="$hz" -v cc="$ccpu" 'BEGIN {
      printf "%-8s %8d rows %7.3f s %9.0f rows/s  server %6.2f us/row (%3.0f%% of a core)  client cpu %s s\n",
        p, r, s, r / s, 1e6 * t / hz / r, 100 * t / hz / s, cc }')
    if [ "$r" -eq 0 ]; then echo "warm-up: $line"; continue; fi
    echo "round $r: $line"
    echo "$p $rows $secs $ticks" >> "$dir/results"
  done
done

echo
echo "median of $ROUNDS rounds per protocol:"
awk -v hz="$hz" '
  { n[$1]++; rps[$1, n[$1]] = $2 / $3; us[$1, n[$1]] = 1e6 * $4 / hz / $2; if (!($1 in seen)) { seen[$1] = 1; order[++np] = $1 } }
  function median(arr, p, k,   i, j, t, v) {
    for (i = 1; i <= k; i++) v[i] = arr[p, i]
    for (i = 1; i <= k; i++) for (j = i + 1; j <= k; j++) if (v[j] < v[i]) { t = v[i]; v[i] = v[j]; v[j] = t }
    return k % 2 ? v[(k + 1) / 2] : (v[k / 2] + v[k / 2 + 1]) / 2
  }
  END {
    for (i = 1; i <= np; i++) { p = order[i]; R[p] = median(rps, p, n[p]); U[p] = median(us, p, n[p])
      printf "  %-8s %9.0f rows/s  server %6.2f us/row\n", p, R[p], U[p] }
    print ""
    if (("native" in R) && ("ws" in R))
      printf "native POST CPU/row / WebSocket CPU/row = %.2f (target <= 1.1)\n", U["native"] / U["ws"]
    for (i = 1; i <= np; i++) { p = order[i]; if (p == "native" || p == "ws" || !("native" in R)) continue
      printf "%s rows/s / native POST rows/s = %.2f (target >= 0.8); CPU/row %.2f x native\n", p, R[p] / R["native"], U[p] / U["native"] }
  }' "$dir/results"
if [ -n "${PERF:-}" ]; then
  echo "perf: recording the ingest worker during one more ${PERF_PROTOCOL:-native} run ($PERF s)"
  perf record -g -p "$wpid" -o "$dir/perf.data" -- sleep "$PERF" >/dev/null 2>&1 &
  sleep 0.5; run_one "${PERF_PROTOCOL:-native}" >/dev/null; wait
  perf report -i "$dir/perf.data" --no-children --sort symbol -g none --percent-limit 0.7 --stdio 2>/dev/null | grep -E "^ +[0-9]" | head -40
  [ -z "${PERF_KEEP:-}" ] || cp "$dir/perf.data" "$PERF_KEEP"
fi
