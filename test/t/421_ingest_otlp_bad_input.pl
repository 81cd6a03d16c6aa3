# 421_ingest_otlp_bad_input.pl -- hostile and broken input on POST /v1/logs.
# Each case gets its documented status and a google.rpc.Status body that
# says what is wrong (or, for a bad record, a partial_success naming it),
# a bounded copy of what came in logagg.rejected with the reason, and the
# worker keeps its PID and stores a valid request sent right after:
# wrong content type, truncated and invalid protobuf, protobuf nested
# thousands deep, a NUL byte in a string, bad gzip, a decompression bomb, invalid UTF-8 in a string
# field (protobuf) and in a JSON body, invalid JSON, a JSON value of the
# wrong type, a trace id that is not hex.  Unknown fields (protobuf and
# JSON) are ignored as the OTLP specification requires: the record is
# stored.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use IO::Compress::Gzip qw(gzip $GzipError);
use LogaggTest;
use OtlpWire qw(pb_varint pb_len pb_fixed64 pb_str any_str any_int kv log_record request);

my $node = new_node('ingest_otlp_bad', "logagg.dispatch_workers = 0\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $url = "http://127.0.0.1:$port";
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-otlp-bad')");
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->utf8;

sub sql { return $node->safe_psql('postgres', $_[0]); }
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");

sub post
{
	my ($body, $type, %h) = @_;
	return $http->request('POST', "$url/v1/logs",
		{ headers => { 'Content-Type' => $type, Authorization => "Bearer $token", %h }, content => $body });
}

sub gz { my ($in) = @_; my $out; gzip(\$in => \$out) or die $GzipError; return $out; }

# the google.rpc.Status of a reply, JSON or protobuf: (code, message)
sub status_of
{
	my ($r) = @_;
	if (($r->{headers}{'content-type'} // '') eq 'application/json')
	{
		my $s = eval { $json->decode($r->{content}) } // {};
		return ($s->{code} // -1, $s->{message} // '');
	}
	my $c = $r->{content};
	my ($code) = $c =~ /^\x08(.)/s ? (ord $1) : (-1);
	my ($msg) = $c =~ /\x12(?:[\x80-\xff]*.)(.*)$/s;
	return ($code, $msg // '');
}

my $good = 0;
# a valid request right after each case is stored
sub valid_after
{
	my ($case) = @_;
	$good++;
	my $r = post(request([], [ log_record(body => any_str("valid after $good")) ]), 'application/x-protobuf');
	is($r->{status}, 200, "$case: a valid request right after: 200");
	is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'valid after $good'"), '1', "$case: ... and stored");
	is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, "$case: the worker kept its PID");
}

my $record = log_record(body => any_str('a record'), severity_text => 'info');
my $valid_pb = request([ kv('service.name', any_str('x')) ], [ $record ]);
my $deep = any_str('leaf');
# AnyValue{kvlist{KeyValue{value AnyValue...}}}, thousands of levels in 300 kB
for (1 .. 20000) { $deep = pb_len(6, pb_len(1, pb_str(1, 'k') . pb_len(2, $deep))); last if length($deep) > 300000; }
my $bomb = gz("\0" x (3 * 1024 * 1024));

my @cases = (
	# name, body, content type, extra headers, status, grpc code, message re, rejected reason re, raw is text
	[ 'wrong content type', '{"resourceLogs": []}', 'text/plain', {}, 415, 3, qr/Content-Type must be application\/x-protobuf or application\/json/, qr/^Content-Type must be/, 1 ],
	[ 'truncated protobuf', substr($valid_pb, 0, length($valid_pb) - 5), 'application/x-protobuf', {}, 400, 3, qr/not a valid protobuf ExportLogsServiceRequest/, qr/not a valid protobuf/, 0 ],
	[ 'not protobuf', "this is not protobuf at all \xff\xff\xff\xff", 'application/x-protobuf', {}, 400, 3, qr/not a valid protobuf/, qr/not a valid protobuf/, 0 ],
	[ 'protobuf nested too deeply', request([], [ log_record(body => $deep) ]), 'application/x-protobuf', {}, 400, 3, qr/nested too deeply/, qr/nested too deeply/, 0 ],
	[ 'NUL byte in a string', request([], [ log_record(body => any_str("before\0after")) ]), 'application/x-protobuf', {}, 400, 3, qr/NUL byte/, qr/NUL byte/, 0 ],
	[ 'bad gzip', "\x1f\x8b\x08\x00garbage that is not deflate", 'application/x-protobuf', { 'Content-Encoding' => 'gzip' }, 400, 3, qr/not valid gzip/, qr/not valid gzip/, 0 ],
	[ 'truncated gzip', substr(gz($valid_pb), 0, 20), 'application/x-protobuf', { 'Content-Encoding' => 'gzip' }, 400, 3, qr/not valid gzip.*truncated/, qr/not valid gzip/, 0 ],
	[ 'decompression bomb', $bomb, 'application/x-protobuf', { 'Content-Encoding' => 'gzip' }, 413, 8, qr/decompresses to more than logagg.max_message_bytes/, qr/decompresses to more than/, 0 ],
	[ 'unknown Content-Encoding', $valid_pb, 'application/x-protobuf', { 'Content-Encoding' => 'br' }, 415, 3, qr/unsupported Content-Encoding/, undef, 0 ],
	[ 'invalid JSON', '{"resourceLogs": [{"scopeLogs": [}', 'application/json', {}, 400, 3, qr/not valid JSON/, qr/not valid JSON/, 1 ],
	[ 'invalid UTF-8 in JSON', qq({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "bad \xc3\x28 text"}}]}]}]}), 'application/json', {}, 400, 3, qr/not valid UTF-8/, qr/not valid UTF-8/, 0 ],
	[ 'JSON of the wrong type', '{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"timeUnixNano": "soon"}]}]}]}', 'application/json', {}, 400, 3, qr/time_unix_nano.*wrong type/, qr/wrong type/, 1 ],
	[ 'JSON that is not an object', '[1, 2, 3]', 'application/json', {}, 400, 3, qr/must be a JSON object/, qr/must be a JSON object/, 1 ],
	[ 'trace id not hex', '{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"traceId": "zz"}]}]}]}', 'application/json', {}, 400, 3, qr/trace_id.*hex/, qr/hex/, 1 ],
);

for my $c (@cases)
{
	my ($name, $body, $type, $hdr, $status, $code, $msg_re, $reason_re, $is_text) = @$c;
	my $before = sql("SELECT count(*) FROM logagg.rejected");
	my $r = post($body, $type, %$hdr);
	is($r->{status}, $status, "$name: $status");
	my ($got_code, $got_msg) = status_of($r);
	is($got_code, $code, "$name: a google.rpc.Status with code $code");
	like($got_msg, $msg_re, "$name: its message says what is wrong");
	if (defined $reason_re)
	{
		my $rej = sql("SELECT reason || '|' || (raw IS NOT NULL) || '|' || raw_length || '|' || length(raw_bytes) FROM logagg.rejected ORDER BY id DESC LIMIT 1");
		my ($reason, $text, $rawlen, $kept) = split /\|/, $rej;
		is(sql("SELECT count(*) FROM logagg.rejected") - $before, 1, "$name: one row in logagg.rejected");
		like($reason, $reason_re, "$name: with the reason");
		is($rawlen, length($body), "$name: raw_length is the body's length");
		cmp_ok($kept, '<=', 64 * 1024, "$name: a bounded copy of the body");
		is($text, $is_text ? 'true' : 'false', "$name: kept as " . ($is_text ? 'text' : 'bytes'));
	}
	valid_after($name);
}

# ---- invalid UTF-8 in a protobuf string field: that record only ----
my $bad_utf8 = request([], [ log_record(body => any_str('fine one')), log_record(body => pb_len(1, "bad \xc3\x28 bytes")),
	log_record(body => any_str('fine two'), attrs => [ kv("bad\xff key", any_str('v')) ]) ]);
my $r = post($bad_utf8, 'application/x-protobuf');
is($r->{status}, 200, 'invalid UTF-8 in string fields: 200 with partial success');
like($r->{content}, qr/^\x0a.+?\x08\x02\x12.*2 of 3 log records were rejected.*not valid UTF-8/s,
	'the ExportLogsServiceResponse counts 2 rejected records and says why');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'fine one'"), '1', 'the valid record of that request is stored');
is(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'a string of the record%not valid UTF-8%' AND raw IS NULL AND position('\\xc328'::bytea IN raw_bytes) > 0"), '1',
	'the record with an invalid body is in logagg.rejected as bytes');
valid_after('invalid UTF-8 in string fields');

# ---- unknown fields are ignored (protobuf and JSON) ----
my $unknown = request([ kv('service.name', any_str('u')) ],
	[ log_record(body => any_str('unknown fields pb'), extra => pb_varint(99, 1) . pb_len(100, 'future') . pb_fixed64(101, 7)) ],
	pb_len(77, pb_len(1, 'unknown in ResourceLogs')));
$r = post($unknown, 'application/x-protobuf');
is($r->{status}, 200, 'protobuf with unknown fields: 200');
is($r->{content}, '', 'nothing rejected');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'unknown fields pb'"), '1', 'the record with unknown fields is stored');
$r = post('{"resourceLogs": [{"newThing": [1, {"a": null}], "scopeLogs": [{"logRecords": [{"body": {"stringValue": "unknown fields json", "futureValue": 1}, "eventName": "e", "somethingNew": {"x": [[]]}}]}]}], "extra": true}',
	'application/json');
is($r->{status}, 200, 'JSON with unknown fields: 200');
is($r->{content}, '{}', 'nothing rejected');
is(sql("SELECT attrs->>'event.name' FROM logagg.logs WHERE message = 'unknown fields json'"), 'e', 'the record with unknown fields is stored');
valid_after('unknown fields');

# ---- a body larger than logagg.max_message_bytes: 413 before it is read ----
$r = post('x' x (1024 * 1024 + 10), 'application/x-protobuf');
is($r->{status}, 413, 'a body larger than logagg.max_message_bytes: 413');
my ($code, $msg) = status_of($r);
like($msg, qr/larger than logagg.max_message_bytes/, 'its Status says so');
valid_after('body too large');

done_testing();
