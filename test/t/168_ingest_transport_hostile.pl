# 168_ingest_transport_hostile.pl -- the ingest server's transport against
# clients that misbehave or are cut off:
#   - a client that sends and never reads its answers: the worker's memory
#     stays bounded, it stops reading that client, and when the client
#     finally reads, every record is accounted for (error lines, one
#     line with a count for the error lines that did not fit, acks);
#   - POST /ingest with Transfer-Encoding: chunked (curl, python's
#     http.client) is stored and answered at once; bodies without a length,
#     with two lengths, or with broken chunks get a clear error at once;
#   - ?stream= ids that are too long, empty, invalid UTF-8 or contain
#     control characters are refused with HTTP 400; a 128-byte id and a
#     UTF-8 one work;
#   - on a stream, a seq lower than one already sent in the same batch is
#     rejected with an error line, not silently dropped; a resend of a
#     committed seq is still acked as a duplicate;
#   - revoking a source closes its open connections within a second, and
#     nothing sent after the revoke is stored.
# The ingest worker keeps its PID throughout.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run start pump finish timeout);
use HTTP::Tiny;
use Time::HiRes qw(time);
use JSON::PP;
use LogaggTest;

# batch_delay = 1ms: small batches, so that what the worker holds is the
# output it owes, not input waiting for a commit
my $node = new_node('transport_hostile', "logagg.dispatch_workers = 0\nlogagg.batch_delay = 1\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $base = "ws://127.0.0.1:$port";
my $http = HTTP::Tiny->new(timeout => 20);

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub probe { return ws_probe($base, @_); }
sub ingest_pid { return sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"); }

my $pid = ingest_pid();
my $token = sql("SELECT logagg.create_source('svc-hostile')");

# without dispatchers and before any alert, /metrics still has a queue depth
ok(poll_until(sub { ($http->get("http://127.0.0.1:$port/metrics")->{content} // '') =~ /^logagg_alert_queue_depth 0$/m }, 10),
	'/metrics shows the alert queue depth from the start');

# ---------------------------------------------------------------------
# A client that sends without reading: bounded memory, every record
# accounted for once it reads.
# ---------------------------------------------------------------------
my ($out, $err) = ('', '');
my $lines = 100;
run([ '/usr/bin/python3', src_dir() . '/test/clients/slow_reader.py', '127.0.0.1', $port,
		$token, $pid, 20000, $lines, 8 ],
	'>', \$out, '2>', \$err, timeout(120));
diag("slow_reader: $err") if $err ne '';
my $r = eval { decode_json($out) } // {};
note("slow reader: $out");
my $growth_mb = (($r->{rss_max_kb} // 0) - ($r->{rss_start_kb} // 0)) / 1024;
ok($r->{stalled}, "the server stopped reading a client that does not read ($r->{frames} frames sent)");
cmp_ok($growth_mb, '<', 32, sprintf('worker memory stayed bounded (grew %.1f MB)', $growth_mb));
my $rejected = sql("SELECT count(*) FROM logagg.rejected WHERE source = 'svc-hostile'");
my $stored = sql("SELECT count(*) FROM logagg.logs WHERE source = 'svc-hostile'");
is($rejected, $r->{frames} * $lines, 'every bad line of the frames sent was rejected');
is($stored, $r->{frames}, 'every good record was stored');
is(($r->{error_lines} // 0) + ($r->{error_count} // 0), $rejected,
	"error lines ($r->{error_lines}) + counted errors ($r->{error_count}) = rejected records");
is($r->{ack_count}, $stored, 'ack_count adds up to the stored records');
is(ingest_pid(), $pid, 'ingest worker kept its PID');

# One message with more error lines than a batch keeps for a connection
# (128 kB, about 2000 here): the rest are one line with their count.  The
# message stays under logagg.batch_rows (5000), so that it is parsed in one
# batch and answered in one WebSocket message.
my $many = 3000;
$out = probe("open:a:/ingest:$token",
	'send:a:{"message": "first"}' . ('\n{"status": "x", "n": 1}' x $many), "recv:a:10");
my @lines = split / \| /, ($out =~ /^a recv (.*)$/m)[0] // '';
my $single = grep { /^\{"error": "status must be/ } @lines;
my ($counted) = map { /"count": (\d+)/ ? $1 : () } @lines;
note(sprintf('%d error lines, count line: %s', $single, $counted // 'none'));
cmp_ok($single, '>', 1000, "most rejects of the message got their own error line ($single)");
ok(defined $counted && $single + $counted == $many, 'the rest were reported as one line with their count');
like($out, qr/"ack_count": 1/, 'and the good record was acked');

# ---------------------------------------------------------------------
# Chunked POST
# ---------------------------------------------------------------------
my $dir = PostgreSQL::Test::Utils::tempdir();
open(my $fh, '>', "$dir/body.ndjson") or die;
print $fh qq({"message": "chunked $_", "level": "info"}\n) for 1 .. 500;
print $fh qq({"ts": "never"}\n);
close $fh;
my $t0 = time();
($out, $err) = ('', '');
run([ 'curl', '-sS', '--max-time', '20', '-H', "Authorization: Bearer $token",
		'-H', 'Transfer-Encoding: chunked', '--data-binary', "\@$dir/body.ndjson",
		'-w', '\n%{http_code}', "http://127.0.0.1:$port/ingest" ],
	'>', \$out, '2>', \$err, timeout(60));
my $secs = time() - $t0;
like($out, qr/^\{"accepted": 500, "rejected": 1\}\n200$/, 'curl chunked POST: 200 with the counts') or diag($err);
cmp_ok($secs, '<', 5, sprintf('answered at once (%.2f s)', $secs));
is(sql("SELECT count(*) FROM logagg.logs WHERE message LIKE 'chunked %'"), 500, 'the chunked body was stored');

my $py_chunked = <<'PY';
import http.client, sys
port, token, mode = int(sys.argv[1]), sys.argv[2], sys.argv[3]
c = http.client.HTTPConnection("127.0.0.1", port, timeout=20)
hdrs = {"Authorization": "Bearer " + token}
if mode == "chunked":
    body = iter([b'{"message": "py chunk 1"}\n{"message": "py ', b'chunk 2"}\n', b'{"message": "py chunk 3"}'])
    c.request("POST", "/ingest", body=body, headers=hdrs, encode_chunked=True)
else:
    c.putrequest("POST", "/ingest", skip_accept_encoding=True)
    for k, v in hdrs.items():
        c.putheader(k, v)
    if mode == "both":
        c.putheader("Content-Length", "5")
        c.putheader("Transfer-Encoding", "chunked")
    elif mode == "gzip":
        c.putheader("Transfer-Encoding", "gzip")
    elif mode == "badchunk":
        c.putheader("Transfer-Encoding", "chunked")
    c.endheaders()
    if mode == "badchunk":
        c.sock.sendall(b"zz\r\nhello\r\n0\r\n\r\n")
r = c.getresponse()
print(r.status, r.read().decode().strip())
PY
sub py_post
{
	my ($mode) = @_;
	my ($o, $e) = ('', '');
	my $t = time();
	run([ '/usr/bin/python3', '-c', $py_chunked, $port, $token, $mode ], '>', \$o, '2>', \$e, timeout(60));
	diag("python: $e") if $e ne '';
	chomp $o;
	return ($o, time() - $t);
}
my ($ans, $took) = py_post('chunked');
is($ans, '200 {"accepted": 3, "rejected": 0}', 'http.client chunked POST (chunks split inside records): 200');
is(sql("SELECT string_agg(message, ',' ORDER BY message) FROM logagg.logs WHERE message LIKE 'py chunk %'"),
	'py chunk 1,py chunk 2,py chunk 3', 'its records were reassembled across chunks');
($ans, $took) = py_post('nolength');
like($ans, qr/^411 .*Content-Length or Transfer-Encoding: chunked/, 'POST without a length: 411 with the reason');
cmp_ok($took, '<', 5, sprintf('at once (%.2f s)', $took));
($ans) = py_post('both');
like($ans, qr/^400 .*must not both be set/, 'Content-Length and Transfer-Encoding together: 400');
($ans) = py_post('gzip');
like($ans, qr/^501 .*only Transfer-Encoding: chunked/, 'another transfer coding: 501');
($ans, $took) = py_post('badchunk');
like($ans, qr/^400 .*malformed chunked body/, 'a broken chunk size: 400');
cmp_ok($took, '<', 5, sprintf('at once (%.2f s)', $took));

# a chunked body over logagg.max_message_bytes: 413
open($fh, '>', "$dir/big.ndjson") or die;
print $fh ('{"message": "' . ('y' x 1000) . qq("}\n)) x 1100;
close $fh;
($out, $err) = ('', '');
run([ 'curl', '-sS', '--max-time', '20', '-H', "Authorization: Bearer $token",
		'-H', 'Transfer-Encoding: chunked', '--data-binary', "\@$dir/big.ndjson",
		'-o', '/dev/null', '-w', '%{http_code}', "http://127.0.0.1:$port/ingest" ],
	'>', \$out, '2>', \$err, timeout(60));
like($out, qr/^(413|000)$/, 'chunked body over logagg.max_message_bytes: 413 (or cut off)');
is(sql("SELECT count(*) FROM logagg.logs WHERE length(message) = 1000"), 0, 'nothing of it stored');

# keep-alive still works for ordinary requests after all that
my $res = $http->post("http://127.0.0.1:$port/ingest",
	{ headers => { Authorization => "Bearer $token" }, content => qq({"message": "plain post"}\n) });
is($res->{status}, 200, 'a plain POST still works');
is(ingest_pid(), $pid, 'ingest worker kept its PID');

# ---------------------------------------------------------------------
# Stream ids
# ---------------------------------------------------------------------
my $s128 = 'a' x 128;
$out = probe("upgrade:a:/ingest?stream=" . ('a' x 129) . ":$token",
	"upgrade:b:/ingest?stream=" . ('b' x 200) . ":$token",
	"upgrade:c:/ingest?stream=%FF%FE:$token",
	"upgrade:d:/ingest?stream=:$token",
	"upgrade:e:/ingest?stream=ab%01cd:$token",
	"upgrade:f:/ingest?x=1&stream=" . ('f' x 300) . "&y=2:$token",
	"upgrade:g:/ingest?stream=ok%00hidden:$token");
like($out, qr/^a status 400$/m, '129-byte stream id: 400');
like($out, qr/^b status 400$/m, '200-byte stream id: 400');
like($out, qr/^c status 400$/m, 'stream id of invalid UTF-8: 400');
like($out, qr/^d status 400$/m, 'empty stream id: 400');
like($out, qr/^e status 400$/m, 'stream id with a control character: 400');
like($out, qr/^f status 400$/m, 'long stream id among other arguments: 400');
like($out, qr/^g status (400|none)$/m, 'stream id with a NUL: refused');
$out = probe("open:a:/ingest?stream=$s128:$token", "recv:a",
	'send:a:{"seq": 1, "message": "long id"}', "recv:a",
	"open:b:/ingest?stream=caf%C3%A9-%E2%9C%93:$token", "recv:b",
	'send:b:{"seq": 1, "message": "utf8 id"}', "recv:b");
like($out, qr/^a recv \{"resume": 0\} *\na recv \{"ack": 1\}/m, '128-byte stream id: accepted');
like($out, qr/^b recv \{"resume": 0\} *\nb recv \{"ack": 1\}/m, 'UTF-8 stream id: accepted');
is(sql("SELECT stream FROM logagg.logs WHERE message = 'long id'"), $s128, 'the 128-byte id is stored whole');
is(sql("SELECT stream FROM logagg.logs WHERE message = 'utf8 id'"), "caf\xc3\xa9-\xe2\x9c\x93",
	'the UTF-8 id is stored as sent');

# ---------------------------------------------------------------------
# Out-of-order seqs on a stream
# ---------------------------------------------------------------------
$out = probe("open:a:/ingest?stream=order:$token", "recv:a",
	'send:a:{"seq": 5, "message": "five"}\n{"seq": 3, "message": "three"}\n{"seq": 5, "message": "five again"}\n{"seq": 6, "message": "six"}',
	"recv:a",
	'send:a:[{"seq": 2, "message": "resent two"}, {"seq": 7, "message": "seven"}]', "recv:a");
like($out, qr/\{"error": "seq 3 is out of order: seq 5 was already sent on this stream", "seq": 3\}/,
	'seq 3 after 5 in one frame: an error line with the seq');
like($out, qr/\{"error": "seq 5 is out of order[^"]*", "seq": 5\}/, 'seq 5 twice before a commit: an error line');
like($out, qr/\{"ack": 6\}/, 'the others are acked through 6');
like($out, qr/a recv \{"ack": 7\}/, 'a resend of committed seq 2 is a duplicate: acked without an error');
unlike($out, qr/"seq": 2\}/, 'no error for the duplicate');
is(sql("SELECT string_agg(seq::text, ',' ORDER BY seq) FROM logagg.logs WHERE stream = 'order'"), '5,6,7',
	'stored: 5, 6 and 7 once each');
is(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'seq % is out of order%'"), 2,
	'the two out-of-order records are in logagg.rejected');
like(sql("SELECT raw FROM logagg.rejected WHERE reason LIKE 'seq 3 is out of order%'"), qr/three/,
	'with their text');
is(ingest_pid(), $pid, 'ingest worker kept its PID');

# ---------------------------------------------------------------------
# Revoking a source closes its connections
# ---------------------------------------------------------------------
sub revoke_run
{
	my ($name, $mode) = @_;
	my $tok = sql("SELECT logagg.create_source('$name')");
	my ($in, $o, $e) = ('', '', '');
	my $h = start([ '/usr/bin/python3', src_dir() . '/test/clients/revoke_probe.py',
			"$base/ingest?stream=$name", $tok, $mode ],
		'<', \$in, '>', \$o, '2>', \$e, timeout(60));
	pump $h until $o =~ /ready/;
	sql("SELECT logagg.revoke_source('$name')");
	$in .= "go\n";
	pump $h until $o =~ /(closed|open) [\d.]+ \d+/;
	finish $h;
	diag("revoke_probe: $e") if $e ne '';
	my ($state, $secs, $last) = $o =~ /(closed|open) ([\d.]+) (\d+)/;
	return ($state // 'none', $secs // 99, $last // 0);
}
my ($state, $secs_closed, $last) = revoke_run('svc-revoked-send', 'send');
is($state, 'closed', 'a sending connection is closed after its source is revoked');
cmp_ok($secs_closed, '<', 1, "within a second ($secs_closed s)");
cmp_ok($last, '>=', 2, "the client sent records after the revoke (up to seq $last)");
is(sql("SELECT string_agg(seq::text, ',') FROM logagg.logs WHERE source = 'svc-revoked-send'"), '1',
	'nothing sent after the revoke was stored');
($state, $secs_closed) = revoke_run('svc-revoked-idle', 'idle');
is($state, 'closed', 'an idle connection is closed after its source is revoked');
cmp_ok($secs_closed, '<', 1, "within a second ($secs_closed s)");
is(ingest_pid(), $pid, 'ingest worker kept its PID');

$node->stop;
done_testing();
