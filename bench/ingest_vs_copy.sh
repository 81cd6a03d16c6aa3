#!/usr/bin/env bash
# bench/ingest_vs_copy.sh -- WebSocket ingest vs psql \copy, same records,
# same table, one invocation (results in bench/RESULTS.md).
#
# One throwaway PostgreSQL 15 instance with logagg preloaded.  Each round:
#
#   (a) EMITTERS logagg-emit processes (profile a, fixed seeds) send N
#       records in total over WebSocket, as fast as acks allow.  A record
#       counts when its ack arrives, i.e. after its batch COMMITTED, so
#       rows/s is committed throughput (first send to last ack).
#   (b) The very same N rows -- exported once after the first (a) with
#       COPY (SELECT ts, received_at, source, level, severity, status,
#       message, trace_id, span_id, stream, seq, attrs FROM logagg.logs)
#       TO FILE -- go back into logagg.logs with psql's \copy (one COPY
#       statement, one commit; id comes from the column default).
#
# Before every run: TRUNCATE logagg.logs and CHECKPOINT, so both start from
# the same empty partitions, with the same indexes, and no checkpoint debt.
# A first, unreported warm-up round (WARMUP=1, both sides) lets the new
# instance create its WAL segments and the worker its heap, which would
# otherwise be charged to whichever side runs first.
# Reports each run and the best of ROUNDS for each side, and the ratio a/b
# (best/best, and the median of the rounds' own ratios: (a) and (b) of one
# round run seconds apart, so their ratio is the least disturbed by other
# load on the machine).  Also the CPU each side's server process spent per
# row: the ingest worker's for (a), the \copy backend's for (b), with
# their minor page faults per 1 000 rows (memory handed back to the kernel
# and faulted in again shows up there).
#
#   bench/ingest_vs_copy.sh                 # N=300000 EMITTERS=2 BATCH=500 ROUNDS=3
#   N=1000000 ROUNDS=1 bench/ingest_vs_copy.sh
#
# Runs as the postgres user (initdb refuses root); needs `make install` done.
set -euo pipefail
if [ "$(id -u)" -eq 0 ]; then
  exec runuser -u postgres -- env PATH="$PATH" N="${N:-}" EMITTERS="${EMITTERS:-}" \
    BATCH="${BATCH:-}" ROUNDS="${ROUNDS:-}" WARMUP="${WARMUP:-}" PERF="${PERF:-}" EXTRA_CONF="${EXTRA_CONF:-}" \
    bash "$0" "$@"
fi
N=${N:-300000}
EMITTERS=${EMITTERS:-2}
BATCH=${BATCH:-500}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
here=$(cd "$(dirname "$0")/.." && pwd)
# shellcheck source=bench/lib/instance.sh
source "$here/bench/lib/instance.sh"
cols="ts, received_at, source, level, severity, status, message, trace_id, span_id, stream, seq, attrs"
now() { date +%s.%N; }
hz=$(getconf CLK_TCK)
# CPU seconds (user + system) of this shell's waited-for children so far
# (`times` must run in the shell itself, not in a $(...) subshell)
child_cpu() { times > "$dir/times"; awk 'NR == 2 { split($1, u, /[ms]/); split($2, s, /[ms]/); print u[1] * 60 + u[2] + s[1] * 60 + s[2] }' "$dir/times"; }

fresh() { psql -c 'TRUNCATE logagg.logs' -c 'CHECKPOINT'; }
check_rows() {
  local r; r=$(psql -c "SELECT count(*) FROM logagg.logs")
  [ "$r" -eq "$N" ] || { echo "run $1: expected $N rows, found $r" >&2; exit 1; }
}

# (a) over WebSocket; prints rows/s, seconds, worker CPU %, us/row,
# emitters' CPU %, worker page faults per 1 000 rows
run_ws() {
  local per=$((N / EMITTERS)) extra=$((N % EMITTERS)) t0 t1 c0 c1 cnt
  fresh
  f0=$(faults "$wpid"); c0=$(cpu "$wpid"); child_cpu > "$dir/e0"; e0=$(cat "$dir/e0"); t0=$(now)
  for i in $(seq "$EMITTERS"); do
    cnt=$per; [ "$i" -eq 1 ] && cnt=$((per + extra))
    "$emit" --url "ws://127.0.0.1:$wsport/ingest" --token "$token" --profile a \
      --count "$cnt" --batch "$BATCH" --quiet --seed "$i" > "$dir/emit.$i" &
  done
  [ -n "${PERF:-}" ] && { perf record -g -o "$dir/perf.data" -p "$wpid" -- sleep "$PERF" >/dev/null 2>&1 & }
  wait
  t1=$(now); c1=$(cpu "$wpid"); f1=$(faults "$wpid"); child_cpu > "$dir/e1"; e1=$(cat "$dir/e1")
  check_rows ws
  awk -v t0="$t0" -v t1="$t1" -v c="$((c1 - c0))" -v hz="$hz" -v n="$N" -v e="$(awk -v a="$e0" -v b="$e1" 'BEGIN {print b - a}')" -v f="$((f1 - f0))" 'BEGIN {
    s = t1 - t0
    printf "%.0f %.2f %.0f %.1f %.0f %.0f\n", n / s, s, 100 * c / hz / s, 1e6 * c / hz / n, 100 * e / s, 1000 * f / n }'
}

# (b) psql \copy of the same rows; prints rows/s, seconds, backend CPU %,
# us/row, psql CPU %, page faults per 1 000 rows
run_copy() {
  local t0 t1 e0 e1
  fresh
  child_cpu > "$dir/e0"; e0=$(cat "$dir/e0"); t0=$(now)
  psql <<SQL
SELECT pg_backend_pid() AS pid \\gset
\\setenv BPID :pid
\\! awk '{print \$14 + \$15, \$10}' /proc/\$BPID/stat > $dir/copycpu0
\\copy logagg.logs ($cols) FROM '$dir/rows.tsv'
\\! awk '{print \$14 + \$15, \$10}' /proc/\$BPID/stat > $dir/copycpu1
SQL
  t1=$(now); child_cpu > "$dir/e1"; e1=$(cat "$dir/e1")
  check_rows copy
  read -r c0 f0 < "$dir/copycpu0"; read -r c1 f1 < "$dir/copycpu1"
  awk -v t0="$t0" -v t1="$t1" -v n="$N" -v hz="$hz" -v c="$((c1 - c0))" -v f="$((f1 - f0))" -v e="$(awk -v a="$e0" -v b="$e1" 'BEGIN {print b - a}')" 'BEGIN {
    s = t1 - t0
    printf "%.0f %.2f %.0f %.1f %.0f %.0f\n", n / s, s, 100 * c / hz / s, 1e6 * c / hz / n, 100 * e / s, 1000 * f / n }'
}

echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(. /etc/os-release; echo "$PRETTY_NAME"), $(command psql --version | awk '{print $3}'), load before: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "N=$N records (profile a), $EMITTERS emitters x $BATCH records/frame, $ROUNDS rounds after $WARMUP warm-up"
batches() { psql -c "SELECT batches FROM logagg.status() WHERE kind = 'ingest'"; }
best_a=0; best_b=0; ratios=""; us_a=""; us_b=""; exported=false
for r in $(seq $((1 - WARMUP)) "$ROUNDS"); do   # round 0: the warm-up
  b0=$(batches)
  read -r ra sa cpua usa clia fa < <(run_ws) || true
  [ -n "${ra:-}" ] || { echo "websocket run failed" >&2; exit 1; }
  b1=$(batches)
  if ! $exported; then
    psql -c "COPY (SELECT $cols FROM logagg.logs ORDER BY id) TO '$dir/rows.tsv'"
    bytes=$(stat -c %s "$dir/rows.tsv")
    echo "exported $N rows for (b): $bytes bytes of COPY text ($((bytes / N)) bytes/row)"
    exported=true
  fi
  read -r rb sb cpub usb clib fb < <(run_copy) || true
  [ -n "${rb:-}" ] || { echo "copy run failed" >&2; exit 1; }
  if [ "$r" -eq 0 ]; then
    echo "warm-up (not counted): (a) websocket $ra rows/s, (b) \\copy $rb rows/s"
    continue
  fi
  ratio=$(awk -v a="$ra" -v b="$rb" 'BEGIN {printf "%.3f", a / b}')
  ratios="$ratios $ratio"; us_a="$us_a $usa"; us_b="$us_b $usb"
  printf 'round %d: (a) websocket %7d rows/s (%5.2f s, worker CPU %3d%%, %.1f us/row, %d faults/1k rows, %d rows/batch, emitters CPU %3d%%)   (b) \\copy %7d rows/s (%5.2f s, backend CPU %3d%%, %.1f us/row, %d faults/1k rows, psql CPU %3d%%)   a/b %.2f\n' \
    "$r" "$ra" "$sa" "$cpua" "$usa" "$fa" "$((N / (b1 - b0)))" "$clia" "$rb" "$sb" "$cpub" "$usb" "$fb" "$clib" "$ratio"
  [ "$ra" -gt "$best_a" ] && best_a=$ra
  [ "$rb" -gt "$best_b" ] && best_b=$rb
done
awk -v a="$best_a" -v b="$best_b" 'BEGIN {
  printf "best: (a) websocket %d rows/s, (b) \\copy %d rows/s, ratio a/b = %.2f\n", a, b, a / b }'
median() { tr ' ' '\n' | grep . | sort -g | awk '{v[NR] = $1} END {print (NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
echo "median of the rounds' ratios a/b: $(echo "$ratios" | median)" \
  " (server CPU per row, median: ingest worker $(echo "$us_a" | median) us, \\copy backend $(echo "$us_b" | median) us)"
[ -n "${PERF:-}" ] && [ -f "$dir/perf.data" ] && cp "$dir/perf.data" "/tmp/logagg-ingest-perf.data" && echo "perf data: /tmp/logagg-ingest-perf.data"
exit 0
