# 160_ingest_bad_input.pl -- every kind of bad input
# gets its documented answer, and after EACH one the same ingest worker
# still serves a fresh client (a valid record is acked and stored).
#
#   malformed JSON, non-object elements, wrongly typed fields, unparseable
#   timestamps   -> {"error": ..., "seq": ...} frame per record, the record in
#                   logagg.rejected, the valid records of the frame stored
#   oversize frame -> close 1009 (HTTP body: 413)
#   missing / wrong / revoked token -> HTTP 401 (WebSocket and POST /ingest)
#   unknown path -> HTTP 404
#   too many connections -> HTTP 503
#
# (100_ingest_ws.pl covers parsing and aliases in depth; this file is the
# checklist of refusals.)
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run timeout);
use HTTP::Tiny;
use LogaggTest;

# the good timestamp below is a fixed date: no window on ts here
my ($node, $base, $token) = start_ingest_node('ingest_bad', 'svc-bad', qq{
logagg.max_message_bytes = 32kB
});
my $port = $node->{logagg_port};
my $pid = $node->safe_psql('postgres', "SELECT pid FROM logagg.status() WHERE kind = 'ingest'");
my $http = HTTP::Tiny->new(timeout => 10);

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub probe
{
	return ws_probe($base, @_);
}

# Send one frame on a new connection; return everything the server
# answered within a few seconds (all messages, joined).
sub send_frame
{
	my ($frame) = @_;
	return probe("open:a:/ingest:$token", "send:a:$frame", "recv:a", "recv:a:0.3");
}

my $alive = 0;
# The worker keeps serving: a new client's valid record is acked and
# stored, by the same worker process, with no error recorded.
sub still_serving
{
	my ($after) = @_;
	$alive++;
	my $out = '';
	my $ok = poll_until(sub {
		$out = probe("open:z:/ingest:$token", "send:z:{\"message\":\"alive $alive\"}", "recv:z");
		$out =~ /^z recv \{"ack_count": 1\}$/m;
	}, 20);
	ok($ok && sql("SELECT count(*) FROM logagg.logs WHERE message = 'alive $alive'") eq '1'
		  && sql("SELECT pid || ',' || coalesce(last_error, '') FROM logagg.status() WHERE kind = 'ingest'") eq "$pid,",
		"after $after: the same worker still acks and stores a valid record")
	  or diag($out);
}

sub rejected_count
{
	my ($reason_like) = @_;
	return sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE '$reason_like' AND source = 'svc-bad'");
}

still_serving('startup');

# ---- malformed JSON ----
my $out = send_frame('{"message": "cut off", ');
like($out, qr/\{"error": "invalid JSON: [^"]+"\}/, 'malformed JSON frame: error frame');
is(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'invalid JSON%' AND raw = '{\"message\": \"cut off\", '"),
	'1', 'malformed JSON: in logagg.rejected with its raw text');
$out = send_frame('{"message":"mj good 1"}\n{"message": tru\n{"message":"mj good 2"}');
like($out, qr/"error": "invalid JSON/, 'malformed NDJSON line: error frame');
like($out, qr/"ack_count": 2/, 'malformed NDJSON line: its two valid neighbours acked');
is(sql("SELECT count(*) FROM logagg.logs WHERE message LIKE 'mj good %'"), '2', 'and stored');
is(rejected_count('invalid JSON%'), '2', 'both malformed inputs are in logagg.rejected');
still_serving('malformed JSON');

# ---- non-object elements ----
$out = send_frame('[1, "s", null, [2], true, {"message":"no good"}, {"message":"elem ok"}]');
is(scalar(() = $out =~ /"error": "a record must be a JSON object"/g), 5,
	'array with five non-object elements: five error frames');
like($out, qr/"ack_count": 2\b/, 'non-object elements: the two objects of the array are acked')
  or diag($out);
$out = send_frame('42');
like($out, qr/"error": "a record must be a JSON object"/, 'a bare scalar frame: error frame');
is(rejected_count('a record must be a JSON object'), '6', 'non-object elements are in logagg.rejected');
is(sql("SELECT count(*) FROM logagg.logs WHERE message IN ('no good', 'elem ok')"), '2',
	'the objects in the same array are stored');
still_serving('non-object elements');

# ---- wrongly typed fields (each record carries a seq: the error frame names it) ----
my @wrong = (
	[ '{"seq":101,"status":"abc","message":"w"}', 'status must be' ],
	[ '{"seq":102,"status":true,"message":"w"}', 'status must be' ],
	[ '{"seq":103,"status":1000,"message":"w"}', 'status must be' ],
	[ '{"seq":104,"level":8,"message":"w"}', 'level must be' ],
	[ '{"seq":105,"level":["error"],"message":"w"}', 'level must not be an object or array' ],
	[ '{"seq":106,"severity_number":99,"message":"w"}', 'severity_number must be' ],
	[ '{"seq":107,"severity_number":"high","message":"w"}', 'severity_number must be' ],
	[ '{"seq":108,"trace_id":"not hex!","message":"w"}', 'trace_id must be a hex string' ],
	[ '{"seq":109,"span_id":12,"message":"w"}', 'span_id must be a hex string' ],
	[ '{"seq":110,"source":{"x":1},"message":"w"}', 'source must not be an object or array' ],
	[ '{"seq":111,"http.status_code":"5xx","message":"w"}', 'http.status_code must be' ],
);
$out = send_frame('[' . join(',', map { $_->[0] } @wrong) . ',{"seq":112,"message":"typed ok","status":"404"}]');
for my $w (@wrong)
{
	my ($seq) = $w->[0] =~ /"seq":(\d+)/;
	like($out, qr/\{"error": "\Q$w->[1]\E[^"]*", "seq": $seq\}/, "wrong type $w->[0]: error frame with seq $seq");
}
like($out, qr/"ack": 112\b/, 'wrong types: the valid record of the frame is acked by its seq');
is(sql("SELECT count(*) FROM logagg.rejected WHERE raw LIKE '{\"seq\":1__,%' AND reason LIKE '% must %'"),
	scalar(@wrong), 'every wrongly typed record is in logagg.rejected');
is(sql("SELECT status || ',' || severity FROM logagg.logs WHERE message = 'typed ok'"), '404,critical',
	'the valid record (status as a numeric string) is stored and classified');
$out = send_frame('{"seq":"7","message":"w"}\n{"seq":-1,"message":"w"}');
is(scalar(() = $out =~ /"error": "seq must be a non-negative integer"/g), 2, 'seq of the wrong type or negative: refused');
still_serving('wrongly typed fields');

# ---- unparseable timestamps ----
my @badts = ('"yesterday"', '"2026-13-45T00:00:00Z"', '"2026-01-02T25:00:00Z"', '""', 'true',
	'"2026-01-02T03:04:05+99:00"', '1e400', '{"t":1}');
$out = send_frame('[' . join(',', map { qq({"ts":$badts[$_],"seq":@{[200 + $_]},"message":"bad ts"}) } 0 .. $#badts)
	  . ',{"ts":"2026-01-02T03:04:05Z","seq":300,"message":"good ts"}]');
for my $i (0 .. $#badts)
{
	my $seq = 200 + $i;
	like($out, qr/\{"error": "ts must [^"]*", "seq": $seq\}/, "ts $badts[$i]: error frame");
}
like($out, qr/"ack": 300\b/, 'bad timestamps: the valid record of the frame is acked');
is(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'ts must%' AND raw LIKE '%bad ts%'"),
	scalar(@badts), 'every unparseable timestamp is in logagg.rejected');
is(sql("SELECT ts = '2026-01-02 03:04:05+00' FROM logagg.logs WHERE message = 'good ts'"), 't',
	'the good timestamp in the same frame is stored');
still_serving('unparseable timestamps');

# ---- oversize frames ----
$out = probe("open:a:/ingest:$token", "big:a:40000", "recv:a");
like($out, qr/^a closed 1009/m, 'frame over logagg.max_message_bytes (32kB): close 1009');
# a large frame under the limit is fine; fragments count together
$out = probe("open:a:/ingest:$token", 'send:a:{"message":"' . ('y' x 30000) . '"}', "recv:a");
like($out, qr/"ack_count": 1/, 'a 30 kB frame (under the limit) is accepted');
my $res = $http->post("http://127.0.0.1:$port/ingest",
	{ headers => { Authorization => "Bearer $token" }, content => '{"message":"' . ('z' x 40000) . '"}' });
is($res->{status}, 413, 'POST /ingest body over the limit: 413');
still_serving('oversize frames');

# ---- tokens: missing, wrong, revoked ----
$out = probe("upgrade:m:/ingest", "upgrade:w:/ingest:lgt_" . ('0' x 64), "upgrade:q:/ingest?token=nope");
like($out, qr/^m status 401$/m, 'missing token: 401');
like($out, qr/^w status 401$/m, 'wrong token: 401');
like($out, qr/^q status 401$/m, 'wrong ?token=: 401');
$res = $http->post("http://127.0.0.1:$port/ingest", { content => '{"message":"x"}' });
is($res->{status}, 401, 'POST /ingest without a token: 401');
$res = $http->post("http://127.0.0.1:$port/ingest",
	{ headers => { Authorization => 'Bearer wrong' }, content => '{"message":"x"}' });
is($res->{status}, 401, 'POST /ingest with a wrong token: 401');
still_serving('missing and wrong tokens');

my $doomed = sql("SELECT logagg.create_source('svc-doomed')");
like(probe("upgrade:d:/ingest:$doomed"), qr/^d status 101$/m, 'a new source\'s token is accepted');
sql("SELECT logagg.revoke_source('svc-doomed')");
like(probe("upgrade:d:/ingest:$doomed"), qr/^d status 401$/m, 'revoked token: 401 at once');
$res = $http->post("http://127.0.0.1:$port/ingest?token=$doomed", { content => '{"message":"x"}' });
is($res->{status}, 401, 'POST /ingest with a revoked token: 401');
still_serving('a revoked token (other sources unaffected)');

# ---- unknown path ----
$out = probe("upgrade:p:/nope:$token", "upgrade:r:/:$token", "upgrade:s:/ingest/x:$token");
like($out, qr/^p status 404$/m, 'WebSocket upgrade on /nope: 404');
like($out, qr/^r status 404$/m, 'WebSocket upgrade on /: 404');
like($out, qr/^s status 404$/m, 'WebSocket upgrade on /ingest/x: 404');
$res = $http->get("http://127.0.0.1:$port/nope");
is($res->{status}, 404, 'GET /nope: 404');
still_serving('unknown paths');

# ---- too many connections ----
$out = probe(map({ "open:c$_:/ingest:$token" } 1 .. 4), "upgrade:e:/ingest:$token",
	'send:c1:{"message":"held 1"}', "recv:c1");
is(scalar(() = $out =~ /^c\d open$/mg), 4, 'four connections open (logagg.max_connections = 4)');
like($out, qr/^e status 503$/m, 'the fifth WebSocket upgrade: 503');
like($out, qr/^c1 recv \{"ack_count": 1\}$/m, 'the open connections are still served meanwhile');
still_serving('too many connections (once the four closed)');

# ---- totals ----
my $rejects = sql("SELECT count(*) FROM logagg.rejected");
is(sql("SELECT (counters->>'rejects') FROM logagg.status() WHERE kind = 'ingest'"), $rejects,
	"status() counts the $rejects rejects that logagg.rejected holds");
is(sql("SELECT count(*) FROM logagg.rejected WHERE peer IS NULL OR reason IS NULL OR raw IS NULL OR received_at IS NULL"),
	'0', 'every reject has peer, reason, raw and received_at');

$node->stop;
done_testing();
