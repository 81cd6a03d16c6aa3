# 420_ingest_otlp.pl -- the OpenTelemetry door of the ingest port.
# The OpenTelemetry JS SDK (@opentelemetry/sdk-logs with its OTLP/HTTP
# exporters) delivers 10,000 log records over protobuf and 10,000 over
# JSON, stored once each, and every mapped field (ts to the microsecond,
# level, message, status, trace and span ids, attrs) equals what the SDK
# was given.  Raw requests check the replies (ExportLogsServiceResponse,
# partial_success with the first reason), snake_case JSON names, unknown
# fields (ignored, the record stored), service.name as the source of a
# token-less request, the 401 of a wrong token given by Bearer, HTTP
# Basic or ?token= (a google.rpc.Status in the request's encoding), 405,
# and that the worker keeps its PID.  Batches are small, so that one
# request spans several.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run timeout);
use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use LogaggTest;
use OtlpWire qw(pb_varint pb_len pb_fixed64 pb_str any_str any_int kv log_record request);

my $node = new_node('ingest_otlp', "logagg.dispatch_workers = 0\nlogagg.batch_rows = 97\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $url = "http://127.0.0.1:$port";
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-otlp')");
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->utf8->canonical;

sub sql { return $node->safe_psql('postgres', $_[0]); }
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");
my $now_us = sql("SELECT (extract(epoch FROM now()) * 1000000)::bigint");
my $now_ns = $now_us * 1000;	# integers: exact in Perl's 64-bit IVs

sub post
{
	my ($body, $type, %h) = @_;
	my $path = delete $h{path} // '/v1/logs';
	return $http->request('POST', "$url$path",
		{ headers => { 'Content-Type' => $type, Authorization => "Bearer $token", %h }, content => $body });
}

# ---- the protobuf reply of a good request is an empty ExportLogsServiceResponse ----
my $pb = request([ kv('service.name', any_str('wire-svc')) ],
	[ log_record(time => $now_ns + 123456789, severity_text => 'Warning', body => any_str('wire ok 1'),
		attrs => [ kv('http.response.status_code', any_int(503)), kv('k', any_str('v')) ],
		trace_id => pack('H*', '0af7651916cd43dd8448eb211c80319c'), span_id => pack('H*', 'b7ad6b7169203331')) ]);
my $r = post($pb, 'application/x-protobuf');
is($r->{status}, 200, 'protobuf request: 200');
is($r->{headers}{'content-type'}, 'application/x-protobuf', 'protobuf reply');
is($r->{content}, '', 'an empty ExportLogsServiceResponse: nothing rejected');
my $us1 = $now_us + 123456;	# 123456789 ns: the 789 are cut
is(sql("SELECT source || '|' || level || '|' || status || '|' || message || '|' || trace_id || '|' || span_id || '|' || attrs::text || '|' || (ts = to_timestamp(0) + $us1 * interval '1 microsecond')::text FROM logagg.logs WHERE message = 'wire ok 1'"),
	'svc-otlp|warn|503|wire ok 1|0af7651916cd43dd8448eb211c80319c|b7ad6b7169203331|{"k": "v", "service.name": "wire-svc", "otel.scope.name": "wire-test"}|true',
	'every field of a protobuf record mapped (the token fixes the source, service.name stays in attrs)');

# ---- JSON: snake_case names, unknown fields, partial success ----
my ($t1, $t2, $t3) = ($now_ns + 1000, $now_ns + 2000, $now_ns + 3000);
my $js = <<"EOJ";
{"resource_logs": [{"resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "json-svc"}}], "futureField": {"x": [1, {"y": 2}]}},
  "scopeLogs": [{"scope": {"name": "sc", "version": "9"}, "log_records": [
    {"time_unix_nano": "$t1", "severityNumber": 17, "body": {"stringValue": "json ok 1"}, "traceId": "5b8efff798038103d269b633813fc60c", "span_id": "eee19b7ec3c1b174", "unknownScalar": 5, "unknownObject": {"a": {"b": []}}},
    {"timeUnixNano": $t2, "severityText": "this level is far too long to be a level name", "body": {"stringValue": "json bad level"}},
    {"observedTimeUnixNano": "$t3", "body": {"kvlistValue": {"values": [{"key": "a", "value": {"intValue": "7"}}, {"key": "b", "value": {"arrayValue": {"values": [{"boolValue": true}, {"doubleValue": 1.5}]}}}]}},
     "attributes": [{"key": "http.status_code", "value": {"stringValue": "404"}}]}
  ]}]}]}
EOJ
$r = post($js, 'application/json');
is($r->{status}, 200, 'JSON request with one bad record: 200 (partial success)');
is($r->{headers}{'content-type'}, 'application/json', 'JSON reply');
my $resp = eval { $json->decode($r->{content}) } // {};
is($resp->{partialSuccess}{rejectedLogRecords}, '1', 'rejectedLogRecords counts the bad record (int64 as a string)');
like($resp->{partialSuccess}{errorMessage} // '', qr/level must be a string of at most 32 characters/, 'errorMessage has the record check\'s reason');
is(sql("SELECT level || '|' || message || '|' || trace_id || '|' || span_id || '|' || (attrs->>'otel.scope.version') FROM logagg.logs WHERE message = 'json ok 1'"),
	'error|json ok 1|5b8efff798038103d269b633813fc60c|eee19b7ec3c1b174|9',
	'snake_case and camelCase names read; unknown fields ignored, the record stored');
is(sql(q~SELECT status || '|' || message FROM logagg.logs WHERE message LIKE '{"a"%'~),
	'404|{"a":7,"b":[true,1.5]}', 'a kvlist body is its JSON text; http.status_code as a string gives the status');
is(sql(q{SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'level must%' AND raw LIKE '%json bad level%'}), '1',
	'the bad record is in logagg.rejected with its JSON text');

# ---- a token-less request: service.name is the source (trust mode off: here a token is needed) ----
# ---- wrong tokens: 401 as a google.rpc.Status ----
for my $case (
	[ 'Bearer', { Authorization => 'Bearer lgt_wrong' }, '/v1/logs' ],
	[ 'Basic', { Authorization => 'Basic ' . encode_base64('otel:lgt_wrong', '') }, '/v1/logs' ],
	[ '?token=', { Authorization => '' }, '/v1/logs?token=lgt_wrong' ],
	[ 'no token', { Authorization => '' }, '/v1/logs' ])
{
	my ($name, $auth, $path) = @$case;
	$r = post('{"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "must not be stored"}}]}]}]}',
		'application/json', %$auth, path => $path);
	is($r->{status}, 401, "$name with a wrong token: 401");
	my $e = eval { $json->decode($r->{content}) } // {};
	is($e->{code}, 16, "$name: a JSON google.rpc.Status, UNAUTHENTICATED");
	like($e->{message} // '', qr/token/, "$name: the message says what to send");
}
$r = post($pb, 'application/x-protobuf', Authorization => 'Bearer lgt_wrong');
is($r->{status}, 401, 'protobuf with a wrong token: 401');
is($r->{headers}{'content-type'}, 'application/x-protobuf', 'its Status is protobuf');
like($r->{content}, qr/^\x08\x10\x12.+token/s, 'a protobuf google.rpc.Status (code 16, a message)');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'must not be stored'"), '0', 'nothing stored with wrong tokens');
for my $case ([ 'Basic', { Authorization => 'Basic ' . encode_base64("otel:$token", '') }, '/v1/logs', 'basic ok' ],
	[ '?token=', { Authorization => '' }, "/v1/logs?token=$token", 'query ok' ])
{
	my ($name, $auth, $path, $msg) = @$case;
	$r = post(qq({"resourceLogs": [{"scopeLogs": [{"logRecords": [{"body": {"stringValue": "$msg"}}]}]}]}),
		'application/json', %$auth, path => $path);
	is($r->{status}, 200, "$name with the right token: 200");
}
is(sql("SELECT string_agg(message, ',' ORDER BY message) FROM logagg.logs WHERE message IN ('basic ok', 'query ok')"),
	'basic ok,query ok', 'those are stored');
$r = $http->request('GET', "$url/v1/logs", { headers => { Authorization => "Bearer $token" } });
is($r->{status}, 405, 'GET /v1/logs: 405');

# ---- the SDK: 10,000 records over protobuf, 10,000 over JSON ----
my $tmp = PostgreSQL::Test::Utils::tempdir;
for my $enc (qw(proto json))
{
	my $expect = "$tmp/expect-$enc.json";
	my ($out, $err) = ('', '');
	my $ok = run([ 'node', "$ENV{LOGAGG_SRC}/test/clients/otlp_sdk.js", $url, $token, 10000, $expect, $enc ],
		'>', \$out, '2>', \$err, timeout(180));
	ok($ok, "the SDK exported 10,000 records over $enc without a failure") or diag("$out\n$err");
	chmod 0644, $expect;
	sql(qq{CREATE TABLE otlp_expect_$enc AS SELECT e.* FROM jsonb_to_recordset(pg_read_file('$expect')::jsonb)
		AS e(message text, ts timestamptz, level text, status int, trace_id text, span_id text, attrs jsonb)});
	is(sql("SELECT count(*) FROM otlp_expect_$enc"), '10000', "$enc: the expectation has 10,000 records");
	is(sql("SELECT count(*), count(DISTINCT message) FROM logagg.logs WHERE attrs->>'service.name' = 'svc-otel-$enc'"),
		'10000|10000', "$enc: stored once each");
	is(sql(qq{SELECT count(*) FROM otlp_expect_$enc e JOIN logagg.logs l USING (message)
		WHERE l.ts = e.ts AND l.level = e.level AND l.status IS NOT DISTINCT FROM e.status AND l.trace_id = e.trace_id
		  AND l.span_id = e.span_id AND l.attrs = e.attrs AND l.source = 'svc-otlp'}),
		'10000', "$enc: every mapped field equals what the SDK was given (ts to the microsecond)");
	my $diff = sql(qq{SELECT e.message || ' | ' || l.ts || ' vs ' || e.ts || ' | ' || coalesce(l.level,'-') || ' vs ' || e.level
		|| ' | ' || coalesce(l.status::text,'-') || ' vs ' || coalesce(e.status::text,'-') || ' | ' || l.attrs::text || ' vs ' || e.attrs::text
		FROM otlp_expect_$enc e JOIN logagg.logs l USING (message)
		WHERE NOT (l.ts = e.ts AND l.level = e.level AND l.status IS NOT DISTINCT FROM e.status AND l.attrs = e.attrs) LIMIT 2});
	diag($diff) if $diff ne '';
	is(sql(qq{SELECT count(*) FROM otlp_expect_$enc WHERE message LIKE '%ünïcödé%' AND strpos(message, chr(92)) > 0}), '1143',
		"$enc: escapes and non-ASCII are among them");
	is(sql(qq~SELECT count(*) FROM otlp_expect_$enc WHERE message LIKE '{%'~), '2000', "$enc: 2,000 kvlist bodies among them");
}
my ($batches) = $http->get("$url/metrics")->{content} =~ /^logagg_ingest_batches_total (\d+)/m;
cmp_ok($batches // 0, '>=', 20000 / 97, 'the records were stored in many batches');

is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'the ingest worker kept its PID');
done_testing();
