#!/usr/bin/env bash
# run.sh -- build logagg-emit and test it against test/fake_server.py on
# 127.0.0.1.  Every scenario is bounded in records and time.  The last line
# is "N passed, M failed"; the exit status is non-zero when anything failed.
#
#   emitters/test/run.sh            all scenarios (valgrind one if installed)
#   NO_VALGRIND=1 emitters/test/run.sh
set -u

HERE=$(cd "$(dirname "$0")" && pwd)
EMITDIR=$(dirname "$HERE")
OUT=$HERE/out
PY=/usr/bin/python3			# Debian's, which sees python3-websockets
EMIT=$EMITDIR/logagg-emit
TOKEN=test-token-123

passed=0
failed=0
SPID=
PORT=

mkdir -p "$OUT"
rm -f "$OUT"/*

make -s -C "$EMITDIR" >/dev/null || { echo "build failed"; echo "0 passed, 1 failed"; exit 1; }

T0=$(date +%s.%N)
elapsed() { awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN { printf "t=%.1fs", b - a }'; }
ok()   { passed=$((passed + 1)); echo "ok   - $1 ($(elapsed))"; }
fail() { failed=$((failed + 1)); echo "FAIL - $1 ($(elapsed))"; [ -n "${2:-}" ] && [ -f "$2" ] && sed 's/^/       /' "$2" | tail -20; }

# start_server NAME [fake_server args...]: sets SPID and PORT
start_server() {
	local name=$1; shift
	rm -f "$OUT/$name.port" "$OUT/$name.report"
	"$PY" "$HERE/fake_server.py" --port-file "$OUT/$name.port" \
		--report "$OUT/$name.report" "$@" 2>"$OUT/$name.server.log" &
	SPID=$!
	for _ in $(seq 1 100); do
		[ -s "$OUT/$name.port" ] && break
		sleep 0.05
	done
	PORT=$(cat "$OUT/$name.port" 2>/dev/null)
	[ -n "$PORT" ] || { echo "fake server did not start"; cat "$OUT/$name.server.log"; }
}

# stop_server NAME: stops it and waits for the report
stop_server() {
	kill -TERM "$SPID" 2>/dev/null
	wait "$SPID" 2>/dev/null
	SPID=
}

# report NAME PYTHON-EXPR: evaluates an expression over the report (r)
report() {
	"$PY" -c 'import json,sys; r=json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' \
		"$OUT/$1.report" "$2"
}

# summary field from the emitter's stdout: field FILE sent|acked|rejected
field() {
	sed -n 's/^sent \([0-9]*\) acked \([0-9]*\) rejected \([0-9]*\) seconds .*/\1 \2 \3/p' "$1" |
		awk -v f="$2" '{ if (f=="sent") print $1; else if (f=="acked") print $2; else print $3 }'
}

# check NAME COND: records pass/fail with the emitter output as context
check() {
	if eval "$2"; then ok "$1"; else fail "$1: $2" "$OUT/$1.err"; cat "$OUT/$1.out" 2>/dev/null | sed 's/^/       /'; fi
}

run_emit() {	# run_emit NAME TIMEOUT args...  -> sets RC
	local name=$1 t=$2; shift 2
	timeout -s KILL "$t" "$EMIT" --url "ws://127.0.0.1:$PORT/ingest" "$@" \
		>"$OUT/$name.out" 2>"$OUT/$name.err"
	RC=$?
}

trap '[ -n "$SPID" ] && kill $SPID 2>/dev/null' EXIT

# 1. plain profile A, count, ack_count path
start_server basic --token $TOKEN
run_emit a_count 60 --token $TOKEN --profile a --count 20000 --quiet
check a_count '[ $RC = 0 ] && [ "$(field $OUT/a_count.out acked)" = 20000 ] && [ "$(field $OUT/a_count.out sent)" = 20000 ]'
check a_summary_format 'grep -Eq "^sent [0-9]+ acked [0-9]+ rejected [0-9]+ seconds [0-9.]+ rate [0-9]+/s$" $OUT/a_count.out && [ $(wc -l <$OUT/a_count.out) = 1 ]'

# 2. profile B, batched, durable stream
run_emit b_stream 60 --token $TOKEN --profile b --batch 100 --stream sB --count 20000
check b_stream '[ $RC = 0 ] && [ "$(field $OUT/b_stream.out acked)" = 20000 ]'

# 3. the same stream again continues after the resume point
run_emit b_stream_again 60 --token $TOKEN --profile b --batch 7 --stream sB --count 100
check b_stream_again '[ $RC = 0 ] && [ "$(field $OUT/b_stream_again.out acked)" = 100 ]'

# 4. profile C, rate limited for a duration
run_emit c_rate 60 --token $TOKEN --profile c --rate 2000 --duration 2 --batch 20
n=$(field $OUT/c_rate.out acked)
check c_rate '[ $RC = 0 ] && [ "${n:-0}" -ge 3000 ] && [ "${n:-0}" -le 4500 ]'

# 5. wrong token: HTTP 401 is fatal, exit 2, no retry loop
run_emit bad_token 20 --token wrong --count 10
check bad_token '[ $RC = 2 ] && grep -q "refused the token" $OUT/bad_token.err'
run_emit no_token 20 --count 10
check no_token '[ $RC = 2 ]'

# 6. SIGINT: stop producing, drain, summary, exit 0.  The signal goes to
# timeout(1), which passes it on twice (to the emitter and to its process
# group): that is one request to stop, not two.
timeout -s KILL 30 "$EMIT" --url "ws://127.0.0.1:$PORT/ingest" --token $TOKEN \
	--rate 1000 >"$OUT/sigint.out" 2>"$OUT/sigint.err" &
EPID=$!
sleep 1.5
kill -INT $EPID
wait $EPID
RC=$?
check sigint '[ $RC = 0 ] && [ "$(field $OUT/sigint.out acked)" -ge 500 ]'
stop_server basic
check basic_server_totals '[ "$(report basic "r[\"stored\"]")" -ge 41100 ] && [ "$(report basic "r[\"streams\"][\"sB\"][\"distinct\"]")" = 20100 ] && [ "$(report basic "r[\"streams\"][\"sB\"][\"stored\"]")" = 20100 ] && [ "$(report basic "r[\"streams\"][\"sB\"][\"max\"]")" = 20100 ] && [ "$(report basic "r[\"refused\"]")" = 2 ]'

# 7. stream through dropped connections: exactly-once storage
start_server drops --drop-after 3000 --max-drops 6
run_emit stream_drops 60 --profile a --batch 10 --stream sD --count 20000
check stream_drops '[ $RC = 0 ] && [ "$(field $OUT/stream_drops.out acked)" = 20000 ] && [ "$(field $OUT/stream_drops.out sent)" = 20000 ]'
stop_server drops
check stream_drops_exactly_once '[ "$(report drops "r[\"drops\"]")" = 6 ] && [ "$(report drops "(r[\"streams\"][\"sD\"][\"distinct\"], r[\"streams\"][\"sD\"][\"stored\"], r[\"streams\"][\"sD\"][\"min\"], r[\"streams\"][\"sD\"][\"max\"])")" = "(20000, 20000, 1, 20000)" ]'

# 8. no stream through dropped connections: at-least-once, all acked
start_server drops2 --drop-after 2500 --max-drops 4
run_emit nostream_drops 60 --profile c --batch 5 --count 10000
check nostream_drops '[ $RC = 0 ] && [ "$(field $OUT/nostream_drops.out acked)" = 10000 ]'
stop_server drops2
check nostream_drops_stored '[ "$(report drops2 "r[\"stored\"]")" -ge 10000 ]'

# 9. --stdin: JSON lines as they are, text lines as {"message": ...}
printf '%s\n' \
	'{"message":"json line","level":"warn","status":503,"nested":{"a":[1,2]}}' \
	'plain text with "quotes" and \backslash' \
	'' \
	'   ' \
	'{"message":"has own seq","seq":999}' \
	'{ not json' \
	'tab	and unicode é ✓' >"$OUT/stdin.txt"
printf 'bad utf8 \xff\xfe end\r\n' >>"$OUT/stdin.txt"
printf 'last line without newline' >>"$OUT/stdin.txt"
start_server stdin --dump "$OUT/stdin.dump"
run_emit stdin 30 --stdin --stream sS --service shipper <"$OUT/stdin.txt"
check stdin '[ $RC = 0 ] && [ "$(field $OUT/stdin.out acked)" = 7 ]'
stop_server stdin
cat >"$OUT/stdin_check.py" <<'PYEOF'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert len(recs) == 7, len(recs)
assert [r["seq"] for r in recs] == list(range(1, 8)), recs
assert recs[0]["status"] == 503 and recs[0]["nested"] == {"a": [1, 2]}
assert recs[1] == {"seq": 2, "message": 'plain text with "quotes" and \\backslash', "service": "shipper"}, recs[1]
assert recs[2]["message"] == "has own seq" and recs[2]["seq"] == 3
assert recs[3]["message"] == "{ not json"
assert recs[4]["message"] == "tab\tand unicode \u00e9 \u2713", recs[4]
assert recs[5]["message"] == "bad utf8 \ufffd\ufffd end", recs[5]
assert recs[6]["message"] == "last line without newline"
PYEOF
check stdin_content '"$PY" "$OUT/stdin_check.py" "$OUT/stdin.dump" 2>"$OUT/stdin_content.err"'

# 9b. --stdin without --stream: a line's own "seq" is dropped (acked by count)
start_server stdin2 --dump "$OUT/stdin2.dump"
printf '%s\n' '{"message":"own seq","seq":42}' '{"seq":1,"message":"x","a":[1]}' '{"message":"none"}' |
	timeout -s KILL 30 "$EMIT" --url "ws://127.0.0.1:$PORT/ingest" --stdin \
	>"$OUT/stdin2.out" 2>"$OUT/stdin2.err"
RC=$?
check stdin_own_seq '[ $RC = 0 ] && [ "$(field $OUT/stdin2.out acked)" = 3 ]'
stop_server stdin2
check stdin_own_seq_content '"$PY" -c "import json,sys; r=[json.loads(l) for l in open(sys.argv[1])]; sys.exit(r != [{\"message\": \"own seq\"}, {\"message\": \"x\", \"a\": [1]}, {\"message\": \"none\"}])" "$OUT/stdin2.dump"'

# 10. rejected record: error frame settles it, counted, exit 1
start_server reject
printf '%s\n' '{"message":"ok 1"}' '{"level":"info"}' '{"message":"ok 2"}' |
	timeout -s KILL 30 "$EMIT" --url "ws://127.0.0.1:$PORT/ingest" --stdin \
	>"$OUT/reject.out" 2>"$OUT/reject.err"
RC=$?
check reject '[ $RC = 1 ] && [ "$(field $OUT/reject.out acked)" = 2 ] && [ "$(field $OUT/reject.out rejected)" = 1 ]'
printf '%s\n' '{"message":"ok 1"}' '{"level":"info"}' '{"message":"ok 2"}' |
	timeout -s KILL 30 "$EMIT" --url "ws://127.0.0.1:$PORT/ingest" --stdin --stream sR \
	>"$OUT/reject_stream.out" 2>"$OUT/reject_stream.err"
RC=$?
check reject_stream '[ $RC = 1 ] && [ "$(field $OUT/reject_stream.out acked)" = 2 ] && [ "$(field $OUT/reject_stream.out rejected)" = 1 ]'
stop_server reject

# 11. frames too large for the server (1009): the emitter halves its batch
start_server small --max-size 20000
run_emit too_big 60 --batch 500 --count 5000
check too_big '[ $RC = 0 ] && [ "$(field $OUT/too_big.out acked)" = 5000 ] && grep -q "message too big" $OUT/too_big.err'
stop_server small

# 11b. wss:// with a self-signed certificate
if command -v openssl >/dev/null; then
	openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost \
		-keyout "$OUT/tls.key" -out "$OUT/tls.crt" >/dev/null 2>&1
	start_server tls --tls-cert "$OUT/tls.crt" --tls-key "$OUT/tls.key" --token $TOKEN
	timeout -s KILL 30 "$EMIT" --url "wss://127.0.0.1:$PORT/ingest" --token $TOKEN --insecure \
		--stream sT --batch 50 --count 5000 >"$OUT/wss.out" 2>"$OUT/wss.err"
	RC=$?
	check wss_insecure '[ $RC = 0 ] && [ "$(field $OUT/wss.out acked)" = 5000 ]'
	# without --insecure the self-signed certificate must be refused
	timeout -s KILL 30 "$EMIT" --url "wss://127.0.0.1:$PORT/ingest" --token $TOKEN \
		--count 10 --give-up-after 1 >"$OUT/wss_verify.out" 2>"$OUT/wss_verify.err"
	RC=$?
	check wss_verify '[ $RC = 1 ] && [ "$(field $OUT/wss_verify.out sent)" = 0 ]'
	stop_server tls
fi

# 12. nobody listening: reconnect with backoff, then give up
PORT=$(cat "$OUT/small.port")
run_emit give_up 30 --count 10 --give-up-after 1.5
check give_up '[ $RC = 1 ] && grep -q "giving up" $OUT/give_up.err'

# 13. valgrind: leaks and memory errors through reconnects
if command -v valgrind >/dev/null && [ -z "${NO_VALGRIND:-}" ]; then
	start_server vg --drop-after 400 --max-drops 2
	timeout -s KILL 120 valgrind -q --error-exitcode=99 --leak-check=full \
		--errors-for-leak-kinds=definite,indirect \
		"$EMIT" --url "ws://127.0.0.1:$PORT/ingest" --stream sV --batch 3 \
		--count 2000 >"$OUT/valgrind.out" 2>"$OUT/valgrind.err"
	RC=$?
	printf '%s\n' '{"message":"x"}' 'plain' | timeout -s KILL 60 valgrind -q --error-exitcode=99 \
		--leak-check=full --errors-for-leak-kinds=definite,indirect \
		"$EMIT" --url "ws://127.0.0.1:$PORT/ingest" --stdin >>"$OUT/valgrind.out" 2>>"$OUT/valgrind.err"
	RC2=$?
	stop_server vg
	check valgrind '[ $RC = 0 ] && [ $RC2 = 0 ] && [ "$(field $OUT/valgrind.out acked | head -1)" = 2000 ]'
fi

echo "$passed passed, $failed failed"
[ "$failed" = 0 ]
