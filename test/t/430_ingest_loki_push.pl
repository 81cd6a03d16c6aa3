# 430_ingest_loki_push.pl -- the Loki door of the ingest port
# (POST /loki/api/v1/push), with raw requests: a protobuf push (snappy
# compressed) and a JSON push map labels, structured metadata, level,
# line and timestamp (to the microsecond); a push spans several batches
# and is answered once, 204, after its commit; a push with some bad
# entries stores the good ones and answers 400 naming the bad; and every
# kind of bad input -- wrong content type or encoding, bad snappy, a
# decompression bomb, truncated or invalid protobuf, invalid JSON or
# UTF-8, malformed labels -- gets its documented status and a body a
# person can act on, a row in logagg.rejected with the reason and the
# bytes, the worker keeps its PID, and a valid push right after is
# stored.  Unknown protobuf fields and unknown JSON keys are ignored.
# JSON may come gzip compressed (and bad gzip, or a gzip bomb, is refused).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run timeout);
use HTTP::Tiny;
use MIME::Base64 qw(encode_base64);
use IO::Compress::Gzip qw(gzip $GzipError);
use LogaggTest;

# small batches: a push of 50 entries spans several of them
my $node = new_node('ingest_loki', "logagg.dispatch_workers = 0\nlogagg.batch_rows = 7\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $url = "http://127.0.0.1:$port/loki/api/v1/push";
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-loki')");
my $http = HTTP::Tiny->new(timeout => 30);

sub sql { return $node->safe_psql('postgres', $_[0]); }
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");

# ---- a protobuf encoder for PushRequest (field numbers of push.proto) ----
sub varint
{
	my $n = shift;
	my $s = '';
	while ($n >= 0x80) { $s .= chr(($n & 0x7f) | 0x80); $n >>= 7; }
	return $s . chr($n);
}
sub ld { my ($f, $b) = @_; return varint(($f << 3) | 2) . varint(length $b) . $b; }
sub vi { my ($f, $v) = @_; return varint($f << 3) . varint($v); }
sub bytes_of { my $s = shift; utf8::encode($s) if utf8::is_utf8($s); return $s; }

# entry: [ns, line, {meta}] (the line as bytes as given)
sub pb_entry
{
	my ($ns, $line, $meta, $extra) = @_;
	my $nsec = $ns % 1_000_000_000;
	my $e = ld(1, vi(1, ($ns - $nsec) / 1_000_000_000) . vi(2, $nsec)) . ld(2, bytes_of($line));
	$e .= ld(3, ld(1, $_) . ld(2, bytes_of($meta->{$_}))) for sort keys %{ $meta // {} };
	return $e . ($extra // '');
}
sub pb_push
{
	my @streams = @_;			# [labels, [entries]]
	return join('', map { ld(1, ld(1, bytes_of($_->[0])) . join('', map { ld(2, $_) } @{ $_->[1] })) } @streams);
}
sub snappy
{
	my ($in, $out) = (shift, '');
	run([ '/usr/bin/python3', '-c',
		'import sys, snappy; sys.stdout.buffer.write(snappy.compress(sys.stdin.buffer.read()))' ],
		'<', \$in, '>', \$out) or die 'snappy failed';
	return $out;
}
sub basic { return 'Basic ' . encode_base64("$_[0]:$_[1]", ''); }

sub push_req
{
	my ($body, %h) = @_;
	my $path = delete $h{path} // '';
	my %headers = ('Content-Type' => 'application/x-protobuf', Authorization => basic('loki', $token), %h);
	delete $headers{$_} for grep { !defined $headers{$_} } keys %headers;
	return $http->request('POST', "$url$path", { headers => \%headers, content => $body });
}

my $now_ns = sql("SELECT (extract(epoch FROM date_trunc('second', now())) * 1000000)::bigint") * 1000;
my $us = sub { my $ns = shift; return sql("SELECT to_char(to_timestamp(" . (($ns - $ns % 1000) / 1000) . " / 1e6::numeric) AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US')"); };

# ---- protobuf: the mapping ----
my $ts1 = $now_ns - 5_000_000_000 + 123_456_789;
my $r = push_req(snappy(pb_push(
	[ '{service_name="checkout", job="shop/api", level="info", quote="a \"b\" c\\\\d\nz"}',
	  [ pb_entry($ts1, 'pb line one ünï', { trace_id => 'abc', level => 'error' }),
		pb_entry($ts1 + 1000, 'pb line two') ] ])));
is($r->{status}, 204, 'a protobuf push: 204') or diag($r->{content});
is($r->{content} // '', '', '204 has no body');
is(sql("SELECT string_agg(message || '|' || level || '|' || source || '|' || to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US'), ',' ORDER BY ts) FROM logagg.logs WHERE message LIKE 'pb line%'"),
	'pb line one ünï|error|svc-loki|' . $us->($ts1) . ',pb line two|info|svc-loki|' . $us->($ts1 + 1000),
	'line, level (metadata over label), the token\'s source, ts to the microsecond');
is(sql("SELECT attrs FROM logagg.logs WHERE message = 'pb line one ünï'"),
	'{"job": "shop/api", "level": "error", "quote": "a \"b\" c\\\\d\\nz", "trace_id": "abc", "service_name": "checkout"}',
	'labels (escapes decoded) and structured metadata in attrs');

# attrs that need \u escapes or escaped names (read by jsonb_in, not the flat reader)
$r = push_req(snappy(pb_push([ '{"odd\\"name"="v", job="ctl"}', [ pb_entry($ts1, 'pb control chars', { ctl => "a\x01b\x1fc" }) ] ])));
is($r->{status}, 204, 'labels with a quoted name, metadata with control characters: 204') or diag($r->{content});
is(sql("SELECT attrs FROM logagg.logs WHERE message = 'pb control chars'"),
	'{"ctl": "a\\u0001b\\u001fc", "job": "ctl", "odd\\"name": "v"}', 'their attrs are exact');

# ---- JSON: the mapping, unknown keys ignored ----
my $ts2 = $now_ns - 3_000_000_000 + 987_654_321;
$r = push_req(qq({"streams": [{"stream": {"app": "web", "detected_level": "WARN"}, "extra": [1, {"x": 2}],
	"values": [["$ts2", "json line one", {"user": "u1"}], ["@{[ $ts2 + 1000 ]}", "json line two"]]}], "format": "loki"}),
	'Content-Type' => 'application/json');
is($r->{status}, 204, 'a JSON push with unknown keys: 204') or diag($r->{content});
is(sql("SELECT string_agg(message || '|' || level || '|' || to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.US') || '|' || attrs::text, ',' ORDER BY ts) FROM logagg.logs WHERE message LIKE 'json line%'"),
	'json line one|warn|' . $us->($ts2) . '|{"app": "web", "user": "u1", "detected_level": "WARN"},'
	. 'json line two|warn|' . $us->($ts2 + 1000) . '|{"app": "web", "detected_level": "WARN"}',
	'JSON: line, detected_level, ts, labels and metadata');

# ---- JSON, gzip compressed ----
my $json_body = qq({"streams": [{"stream": {"job": "gz"}, "values": [["$now_ns", "gzip json line"]]}]});
gzip(\$json_body => \my $gz) or die $GzipError;
$r = push_req($gz, 'Content-Type' => 'application/json', 'Content-Encoding' => 'gzip');
is($r->{status}, 204, 'a gzip-compressed JSON push: 204') or diag($r->{content});
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'gzip json line'"), '1', 'the gzip JSON push is stored');
$r = push_req(snappy(pb_push([ '{job="snappy-header"}', [ pb_entry($now_ns, 'content-encoding snappy') ] ])), 'Content-Encoding' => 'snappy');
is($r->{status}, 204, 'protobuf with Content-Encoding: snappy (as some clients say): 204');

# ---- a push over several batches: one reply after the last commit ----
my @many = map { pb_entry($now_ns - 1_000_000_000 + $_ * 1000, "batch entry $_") } 1 .. 50;
$r = push_req(snappy(pb_push([ '{job="many"}', [ @many[0 .. 24] ] ], [ '{job="many", part="2"}', [ @many[25 .. 49] ] ])));
is($r->{status}, 204, 'a push of 50 entries over batches of 7: 204');
is(sql("SELECT count(*), count(DISTINCT message) FROM logagg.logs WHERE message LIKE 'batch entry %'"), '50|50', 'all 50 stored once');

# ---- some bad entries: the good ones are stored, 400 names the bad ----
$r = push_req(snappy(pb_push(
	[ '{job="mixed"}', [ pb_entry($now_ns, 'mixed good 1'), pb_entry($now_ns, 'mixed bad level', { level => 'x' x 40 }),
		pb_entry($now_ns, "mixed bad utf8 \xff\xfe"), pb_entry(1_000_000_000, 'mixed too old'), pb_entry($now_ns, 'mixed good 2') ] ],
	[ '{job="mixed", broken', [ pb_entry($now_ns, 'mixed bad labels') ] ])));
is($r->{status}, 400, 'a push with bad entries: 400');
like($r->{content}, qr/level must be a string of at most 32 characters/, 'the reply names the bad level');
like($r->{content}, qr/line is not valid UTF-8/, 'the reply names the invalid UTF-8');
like($r->{content}, qr/malformed stream labels/, 'the reply names the malformed labels');
like($r->{content}, qr/total ignored: 4 out of 6/, 'the reply counts them as Loki does');
like($r->{headers}{'content-type'}, qr{^text/plain}, 'in plain text');
is(sql("SELECT string_agg(message, ',' ORDER BY message) FROM logagg.logs WHERE message LIKE 'mixed%'"),
	'mixed good 1,mixed good 2', 'the good entries are stored');
is(sql(q~SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'level must be%' AND raw LIKE '{"streams":[{"stream":{"job":"mixed"},"values":[[%mixed bad level%'~),
	'1', 'the bad level is in logagg.rejected, as a JSON push of that entry');
is(sql(q{SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'the line is not valid UTF-8%' AND raw IS NULL AND position('\xfffe'::bytea IN raw_bytes) > 0}),
	'1', 'the invalid UTF-8 entry is in logagg.rejected as bytes');
is(sql(q{SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'ts is more than%' OR (reason LIKE '%ts%' AND raw LIKE '%mixed too old%')}),
	'1', 'the entry out of the time window is in logagg.rejected');
is(sql(q~SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'malformed stream labels%' AND strpos(raw, '{"streams":[{"labels":"{job=\"mixed\", broken"') = 1~),
	'1', 'the entry of the malformed labels is in logagg.rejected with the labels as sent');

# a NUL byte in a line: refused, the reject shows the whole line
$r = push_req(snappy(pb_push([ '{job="nul"}', [ pb_entry($now_ns, "nul\0byte and after") ] ])));
is($r->{status}, 400, 'a line with a NUL byte: 400');
is(sql(q~SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'the line is not valid UTF-8 (or contains a NUL byte)' AND strpos(raw, '"nul\u0000byte and after"') > 0~),
	'1', 'its reject holds the whole line, the NUL escaped');
$r = push_req(snappy(pb_push([ '{job="nul"}', [ pb_entry($now_ns, "meta not utf8", { bad => "x\xffy" }) ] ])));
is(sql(q~SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'structured metadata is not valid UTF-8%' AND raw IS NULL AND position('\x78ff79'::bytea IN raw_bytes) > 0~),
	'1', 'metadata that is not UTF-8: refused, its bytes in the reject');

# an entry that is not a valid EntryAdapter: refused alone, its bytes kept
$r = push_req(snappy(pb_push([ '{job="badentry"}', [ pb_entry($now_ns, 'entry before'), "\x12\x05ab", pb_entry($now_ns, 'entry after') ] ])));
is($r->{status}, 400, 'an entry that does not unpack: 400');
like($r->{content}, qr/not a valid EntryAdapter protobuf/, 'the reply says so');
is(sql("SELECT string_agg(message, ',' ORDER BY message) FROM logagg.logs WHERE attrs->>'job' = 'badentry'"),
	'entry after,entry before', 'the entries around it are stored');
is(sql(q~SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'the entry is not a valid EntryAdapter%' AND raw_bytes = '\x120561'::bytea || 'b'::bytea~),
	'1', 'its bytes are in logagg.rejected');

# ---- malformed labels, one by one ----
for my $l ('job="x"', '{job=x}', '{job="x}', '{1job="x"}', '{job="x" app="y"}', '{job="x"} trailing',
	'{job="\q"}', '{job="x", job="y"}')
{
	$r = push_req(snappy(pb_push([ $l, [ pb_entry($now_ns, "labels case $l") ] ])));
	is($r->{status}, 400, "labels $l: 400");
	like($r->{content}, qr/malformed stream labels/, "labels $l: the reason");
}
is(sql("SELECT count(*) FROM logagg.logs WHERE message LIKE 'labels case%'"), '0', 'none of them stored');
is(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'malformed stream labels%' AND raw LIKE '%labels case%'"), '8', 'all of them in logagg.rejected');

# ---- an unknown protobuf field in an entry, a stream and the request: ignored ----
$r = push_req(snappy(pb_push([ '{job="unknown"}', [ pb_entry($now_ns, 'unknown fields ok', {}, vi(15, 7) . ld(16, 'xyz')) ] ])
	. vi(9, 1)));
is($r->{status}, 204, 'unknown protobuf fields: 204');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'unknown fields ok'"), '1', 'the entry with unknown fields is stored');

# ---- bad bodies: refused whole, kept in logagg.rejected ----
my $valid = 0;
my $big = snappy("\0" x (2 * 1024 * 1024));
my $good_pb = pb_push([ '{job="x"}', [ pb_entry($now_ns, 'line') ] ]);
my $zeros = '{"streams": []}' . (' ' x (2 * 1024 * 1024));
gzip(\$zeros => \my $gz_bomb) or die $GzipError;
my @bad = (
	[ 'wrong content type', 'text/plain body', { 'Content-Type' => 'text/plain' }, 415, qr/unsupported Content-Type/, 'unsupported Content-Type%' ],
	[ 'unsupported encoding', snappy($good_pb), { 'Content-Encoding' => 'br' }, 415, qr/unsupported Content-Encoding/, 'unsupported Content-Encoding%' ],
	[ 'bad gzip', substr($gz, 0, length($gz) - 8) . 'xxxx', { 'Content-Type' => 'application/json', 'Content-Encoding' => 'gzip' }, 400, qr/not valid gzip/, 'the body is not valid gzip%' ],
	[ 'gzip bomb', $gz_bomb, { 'Content-Type' => 'application/json', 'Content-Encoding' => 'gzip' }, 413, qr/decompresses to more than logagg.max_message_bytes/, 'the body decompresses to more than%' ],
	[ 'not snappy', "\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff garbage", {}, 400, qr/not snappy compressed/, 'the body is not snappy compressed%' ],
	[ 'bad snappy', "\x20\x00\x01\x02garbage", {}, 400, qr/not valid snappy/, 'the body is not valid snappy%' ],
	[ 'decompression bomb', $big, {}, 413, qr/would decompress to 2097152 bytes, more than logagg.max_message_bytes/, 'the body would decompress to 2097152 bytes%' ],
	[ 'truncated protobuf', snappy(substr($good_pb, 0, length($good_pb) - 3)), {}, 400, qr/not a valid Loki PushRequest protobuf/, 'the body is not a valid Loki PushRequest%' ],
	[ 'invalid protobuf', snappy("\x0f\xff\xff garbage"), {}, 400, qr/not a valid Loki PushRequest protobuf/, 'the body is not a valid Loki PushRequest%' ],
	[ 'invalid JSON', '{"streams": [', { 'Content-Type' => 'application/json' }, 400, qr/not valid JSON/, 'the body is not valid JSON%' ],
	[ 'JSON of another shape', '[1, 2]', { 'Content-Type' => 'application/json' }, 400, qr/must be Loki push JSON/, 'the body must be Loki push JSON%' ],
	[ 'JSON, invalid UTF-8', qq({"streams": [{"stream": {"job": "x"}, "values": [["$now_ns", "bad \xff"]]}]}), { 'Content-Type' => 'application/json' }, 400, qr/not valid UTF-8/, 'the body is not valid UTF-8%' ],
);
for my $case (@bad)
{
	my ($name, $body, $h, $status, $re, $reason) = @$case;
	$r = push_req($body, %$h);
	is($r->{status}, $status, "$name: $status");
	like($r->{content}, $re, "$name: a reason a person can act on");
	like($r->{headers}{'content-type'} // '', qr{^text/plain}, "$name: plain text");
	is(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE '$reason' AND raw_length = " . length($body)
		. " AND raw_bytes = substr(decode('" . unpack('H*', $body) . "', 'hex'), 1, 65536)"),
		'1', "$name: the body is in logagg.rejected with the reason");
	$valid++;
	$r = push_req(snappy(pb_push([ '{job="after"}', [ pb_entry($now_ns, "valid after $valid") ] ])));
	is($r->{status}, 204, "$name: a valid push right after is stored");
	is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, "$name: the worker kept its PID");
}
is(sql("SELECT count(*) FROM logagg.logs WHERE message LIKE 'valid after %'"), scalar(@bad), 'every valid push after a bad one is stored');

# ---- JSON entries of the wrong shape: rejected one by one ----
$r = push_req(qq({"streams": [{"stream": {"job": "jshape"}, "values": [["$now_ns", "jshape good"], [$now_ns, 5], ["x", "jshape bad ts"], {"a": 1}, ["$now_ns"], ["$now_ns", "jshape meta", {"k": 1}]]}]}),
	'Content-Type' => 'application/json');
is($r->{status}, 400, 'JSON entries of the wrong shape: 400');
like($r->{content}, qr/total ignored: 5 out of 6/, 'five of six ignored');
is(sql("SELECT string_agg(message, ',') FROM logagg.logs WHERE attrs->>'job' = 'jshape'"), 'jshape good', 'the good one is stored');
is(sql("SELECT count(*) FROM logagg.rejected WHERE raw LIKE '{\"streams\":[{\"stream\":{\"job\": \"jshape\"}%'"), '5', 'each bad one in logagg.rejected with its text');

# ---- odd JSON shapes: each gets 204 or 400, never more ----
for my $body ('{}', '{"streams": null}', '{"streams": []}', '{"streams": [{}]}',
	qq({"streams": [{"values": [["$now_ns", "values before stream"]], "stream": {"job": "odd"}}]}),
	qq({"streams": [{"stream": {"job": "a"}, "stream": {"job": "b"}, "values": [["$now_ns", "stream twice"]]}]}),
	qq({"streams": [{"stream": {"job": {"x": [1]}}, "values": [["$now_ns", "nested label"]]}]}),
	qq({"streams": [{"stream": {"job": "n"}, "values": [["$now_ns", "nested meta", {"a": [[{"b": 1}]]}], [[["$now_ns"]]], 7, null, "x"]}]}),
	'{"streams": [[]]}', '{"streams": {"a": 1}}', '{"streams": [{"stream": [], "values": []}]}',
	'{"streams": [{"stream": {}, "values": {}}]}', '"just a string"', '', ' ')
{
	$r = push_req($body, 'Content-Type' => 'application/json');
	ok($r->{status} == 204 || $r->{status} == 400, "odd JSON $body: 204 or 400 ($r->{status})");
}
is(sql("SELECT string_agg(message || ':' || coalesce(attrs->>'job', ''), ',' ORDER BY message) FROM logagg.logs WHERE message IN ('values before stream', 'stream twice', 'nested label', 'nested meta')"),
	'values before stream:odd', 'the entry whose labels come after its values is stored with them; the others are refused');
is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'odd JSON: the worker kept its PID');

# ---- auth: 401 in Loki's shape, Basic, Bearer, ?token= ----
for my $case ([ 'Basic', { Authorization => basic('loki', 'lgt_wrong') } ], [ 'Bearer', { Authorization => 'Bearer lgt_wrong' } ],
	[ '?token=', { Authorization => undef, path => '?token=lgt_wrong' } ], [ 'no token', { Authorization => undef } ])
{
	my ($name, $h) = @$case;
	$r = push_req(snappy(pb_push([ '{job="x"}', [ pb_entry($now_ns, 'must not be stored') ] ])), %$h);
	is($r->{status}, 401, "$name with a wrong token: 401");
	like($r->{content}, qr/^unauthorized: .*HTTP Basic/, "$name: Loki-style text");
	is($r->{headers}{'www-authenticate'}, 'Basic realm="logagg"', "$name: WWW-Authenticate Basic");
}
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'must not be stored'"), '0', 'nothing stored with wrong tokens');
$r = push_req(snappy(pb_push([ '{job="x"}', [ pb_entry($now_ns, 'bearer ok') ] ])), Authorization => "Bearer $token");
is($r->{status}, 204, 'Bearer with the right token');
$r = push_req(snappy(pb_push([ '{job="x"}', [ pb_entry($now_ns, 'query token ok') ] ])), Authorization => undef, path => "?token=$token");
is($r->{status}, 204, '?token= with the right token');
$r = $http->request('GET', $url, { headers => { Authorization => basic('loki', $token) } });
is($r->{status}, 405, 'GET: 405');

# ---- the benchmark's body generator makes pushes the door stores ----
my $bt = PostgreSQL::Test::Utils::tempdir;
my $now_iso = sql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')");
open(my $rf, '>', "$bt/records.ndjson") or die;
print $rf qq({"ts": "$now_iso", "source": "svc-b", "level": "error", "status": 502, "message": "bench record $_", "trace_id": "0af7651916cd43dd8448eb211c80319c", "span_id": "b7ad6b7169203331", "attrs": {"http": {"method": "GET"}, "n": $_}}\n) for 1 .. 5;
close $rf;
my $gerr = "";
ok(run([ "$ENV{LOGAGG_SRC}/bench/protocols/bodies/loki", "$bt/records.ndjson", 3, "$bt/out" ], '2>', \$gerr), 'the bench body generator runs') or diag($gerr);
for my $n (0, 1)
{
	open(my $bf, '<:raw', "$bt/out/body.$n") or die;
	local $/;
	$r = push_req(scalar <$bf>);
	is($r->{status}, 204, "bench body $n: 204");
}
is(sql("SELECT count(*) FROM logagg.logs WHERE message LIKE 'bench record %' AND level = 'error' AND attrs->>'status' = '502' AND attrs->>'http.method' = 'GET' AND attrs->>'trace_id' = '0af7651916cd43dd8448eb211c80319c' AND to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') = '$now_iso'"),
	'5', 'the bench bodies are stored with their fields');

# ---- a forwarding candidate under trust: the source comes from the labels ----
$node->append_conf('postgresql.conf', "logagg.auth = 'trust'\n");
$node->reload;
ok(poll_until(sub {
	my $x = push_req(snappy(pb_push([ '{service_name="trusted-svc", job="j"}', [ pb_entry($now_ns, 'trust probe') ] ])), Authorization => undef);
	$x->{status} == 204 }, 30), 'under trust a push needs no token');
is(sql("SELECT string_agg(DISTINCT source, ',') FROM logagg.logs WHERE message = 'trust probe'"), 'trusted-svc', 'service_name gives the source');
$r = push_req(snappy(pb_push([ '{job="a/b"}', [ pb_entry($now_ns, 'bad source name') ] ])), Authorization => undef);
is($r->{status}, 400, 'a source that breaks the name rules: 400');
like($r->{content}, qr/source must be/, 'with the reason');
$r = push_req(snappy(pb_push([ '{app="app-only"}', [ pb_entry($now_ns, 'app source') ] ])), Authorization => undef);
is(sql("SELECT source FROM logagg.logs WHERE message = 'app source'"), 'app-only', 'app gives the source without service_name or job');

is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'the ingest worker kept its PID');
done_testing();
