# 100_ingest_ws.pl -- the ingest worker end to end over real sockets:
# WebSocket ingest with logagg-emit and a scripted client, token auth and
# revocation, record parsing (aliases, timestamps, attrs), rejects with
# error frames, limits (1009, 503), classification by the current rules,
# alert groups handed to alert_queue, plain HTTP (POST /ingest, /healthz,
# /metrics) and logagg.ingest() from SQL.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run timeout);
use HTTP::Tiny;
use LogaggTest;

# queued alerts stay in alert_queue; timestamps from past years are parsed
my ($node, $base, $token) = start_ingest_node('ingest_ws', 'svc-a', qq{
logagg.max_message_bytes = 64kB
});
my $port = $node->{logagg_port};
like($token, qr/^lgt_[0-9a-f]{64}$/, 'create_source returns a token');

sub sql { return $node->safe_psql('postgres', $_[0]); }

# Run the scripted client; returns its output lines joined by newlines.
sub probe
{
	return ws_probe($base, @_);
}

sub emit
{
	my @args = @_;
	my ($out, $err) = ('', '');
	run([ emitter_path(), '--url', "$base/ingest", '--give-up-after', '20', @args ],
		'>', \$out, '2>', \$err, timeout(120));
	return ($? >> 8, $out, $err);
}

# ---- bulk ingest with the emitter; the token fixes the source ----
my ($rc, $out, $err) = emit('--token', $token, '--profile', 'a', '--count', '3000', '--batch', '20');
is($rc, 0, 'emitter profile a: every record acked') or diag($err);
like($out, qr/acked 3000 rejected 0/, 'emitter reports 3000 acked');
($rc, $out, $err) = emit('--token', $token, '--profile', 'c', '--count', '1000');
is($rc, 0, 'emitter profile c: every record acked') or diag($err);

is(sql("SELECT count(*) FROM logagg.logs"), '4000', 'all 4000 records stored');
is(sql("SELECT string_agg(DISTINCT source, ',') FROM logagg.logs"), 'svc-a',
	'records are stored under the token\'s source, not the one they claim');
is(sql("SELECT count(*) FROM logagg.logs WHERE severity <> logagg.classify(status, level, source, message)"),
	'0', 'stored severity is what logagg.classify() says for every row');
ok(sql("SELECT count(*) FROM logagg.logs WHERE severity = 'critical' AND status BETWEEN 500 AND 599") > 0,
	'5xx records are critical');
is(sql("SELECT count(*) FROM logagg.logs WHERE status BETWEEN 500 AND 599 AND severity <> 'critical'"), '0',
	'no 5xx record is anything but critical');
is(sql("SELECT count(*) FROM logagg.logs WHERE id IS NULL OR received_at IS NULL OR ts IS NULL"), '0',
	'id, ts and received_at are filled');
is(sql("SELECT count(DISTINCT id) FROM logagg.logs"), '4000', 'ids are unique');

# ---- authentication and routing of the upgrade ----
$out = probe("upgrade:a:/ingest:wrong", "upgrade:b:/ingest", "upgrade:c:/other:$token",
	"upgrade:d:/ingest:$token", "upgrade:e:/ingest?token=$token",
	"upgrade:f:/ingest?stream=:$token");
like($out, qr/^a status 401$/m, 'unknown token: HTTP 401 before the upgrade');
like($out, qr/^b status 401$/m, 'missing token: HTTP 401');
like($out, qr/^c status 404$/m, 'other paths: 404');
like($out, qr/^d status 101$/m, 'valid Bearer token: upgrade');
like($out, qr/^e status 101$/m, 'valid ?token=: upgrade');
like($out, qr/^f status 400$/m, 'empty stream id: 400');

# ---- record parsing, rejects and error frames ----
my $frame = join('\n',
	'{"message":"ok1","user":{"id":5},"tags":["x","y"]}',
	'{"seq":7,"ts":"yesterday","message":"bad ts"}',
	'{"msg":"alias","service":"ignored","severity_text":"ERROR","http.status_code":503,"trace_id":"abc123"}',
	'{"message":"tsz","ts":"2026-01-02T03:04:05.250+02:00"}',
	'{"message":"tsms","ts":1700000000123}',
	'{"message":"otel","severity_number":21}',
	'not json at all');
$out = probe("open:a:/ingest:$token", "send:a:$frame", "recv:a", "recv:a");
like($out, qr/"error": "ts must be[^"]*", "seq": 7/, 'invalid record: error frame carries its seq');
like($out, qr/"error": "invalid JSON/, 'unparsable line: error frame');
like($out, qr/"ack_count": 5/, 'the five valid records of the frame are acked by count');

is(sql("SELECT attrs->'user'->>'id' || ',' || (attrs->'tags'->>1) FROM logagg.logs WHERE message = 'ok1'"),
	'5,y', 'unmapped fields are kept in attrs as JSON');
is(sql("SELECT level || ',' || status || ',' || severity || ',' || source || ',' || trace_id FROM logagg.logs WHERE message = 'alias'"),
	'error,503,critical,svc-a,abc123', 'aliases msg/severity_text/http.status_code are mapped');
is(sql("SELECT ts = '2026-01-02 01:04:05.25+00' FROM logagg.logs WHERE message = 'tsz'"), 't',
	'RFC 3339 ts with offset and fraction');
is(sql("SELECT ts = to_timestamp(1700000000.123) FROM logagg.logs WHERE message = 'tsms'"), 't',
	'epoch-millisecond ts');
is(sql("SELECT level || ',' || severity FROM logagg.logs WHERE message = 'otel'"), 'fatal,critical',
	'severity_number 21 maps to fatal');
is(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'ts must%' AND raw LIKE '%yesterday%' AND source = 'svc-a'"),
	'1', 'invalid record stored in logagg.rejected with reason and raw text');
is(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'invalid JSON%' AND raw = 'not json at all'"),
	'1', 'unparsable line stored in logagg.rejected');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'bad ts'"), '0', 'the invalid record is not in logs');

# an array element or line that is not an object is refused on its own
$out = probe("open:a:/ingest:$token", 'send:a:[1, {"message":"in array"}, "s"]', "recv:a");
is(scalar(() = $out =~ /a record must be a JSON object/g), 2, 'non-object array elements: one error each');
like($out, qr/"ack_count": 1/, 'the object in the same array is acked');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'in array'"), '1', 'and stored');

# invalid UTF-8 (sent as a binary frame: a text frame could not carry it)
$out = probe("open:a:/ingest:$token", "bytes:a:" . unpack('H*', qq({"message":"caf\xe9"})), "recv:a");
like($out, qr/"error": "not valid text in the database encoding UTF8/, 'invalid UTF-8: error frame, connection stays open');
is(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'not valid text in the database encoding UTF8%'"
	  . " AND raw IS NULL AND raw_bytes = '\\x" . unpack('H*', qq({"message":"caf\xe9"})) . "'"), '1',
	'invalid UTF-8 is stored in logagg.rejected with its exact bytes (raw, the text column, is NULL)');

# ---- limits ----
$out = probe("open:a:/ingest:$token", "big:a:100000", "recv:a");
like($out, qr/^a closed 1009/m, 'frame over logagg.max_message_bytes closes with 1009');

$out = probe(map({ "open:c$_:/ingest:$token" } 1 .. 4), "upgrade:e:/ingest:$token");
is(scalar(() = $out =~ /^c\d open$/mg), 4, 'four connections open (logagg.max_connections = 4)');
like($out, qr/^e status 503$/m, 'the fifth gets HTTP 503');

# ---- rules change without restart; alert groups reach alert_queue ----
sql("INSERT INTO logagg.rules (rule_order, message_regex, severity) VALUES (1, '^PAYMENT', 'critical')");
sql("INSERT INTO logagg.destinations (name, kind, config) VALUES ('hook', 'webhook', '{\"url\": \"http://127.0.0.1:9/\"}')");
sql("INSERT INTO logagg.routes (destination, min_severity) VALUES ('hook', 'high')");
$frame = '[{"message":"PAYMENT failed order 1","level":"info"},'
  . '{"message":"PAYMENT failed order 22","level":"info"},'
  . '{"message":"PAYMENT failed order 333","level":"info"},'
  . '{"message":"all fine","level":"info"}]';
$out = probe("open:a:/ingest:$token", "send:a:$frame", "recv:a");
like($out, qr/"ack_count": 4/, 'array frame acked');
is(sql("SELECT string_agg(severity::text, ',' ORDER BY message COLLATE \"C\") FROM logagg.logs WHERE message LIKE 'PAYMENT%' OR message = 'all fine'"),
	'critical,critical,critical,low', 'a new rule applies to the next batch without a restart');
my $fp = sql("SELECT logagg.fingerprint('svc-a', 'critical', NULL, 'PAYMENT failed order 1')");
is(sql("SELECT coalesce(sum(count), 0) FROM logagg.alert_queue WHERE fingerprint = '$fp' AND destination = 'hook'"),
	'3', 'the three matching records are one alert group with count 3');
is(sql("SELECT count(*) FROM logagg.alert_queue WHERE payload->>'message' = 'all fine'"), '0',
	'low records are not queued for a route with min_severity high');

# ---- plain HTTP on the same port ----
my $http = HTTP::Tiny->new(timeout => 10);
my $res = $http->post("http://127.0.0.1:$port/ingest",
	{ headers => { Authorization => "Bearer $token" },
	  content => qq({"message":"via http 1"}\n{"message":"via http 2"}\n{"ts":"nope"}\n) });
is($res->{status}, 200, 'POST /ingest: 200');
like($res->{content}, qr/"accepted": 2, "rejected": 1/, 'POST /ingest replies with accepted and rejected counts');
is(sql("SELECT count(*) FROM logagg.logs WHERE message LIKE 'via http %'"), '2',
	'POST /ingest rows are committed when the reply arrives');
$res = $http->post("http://127.0.0.1:$port/ingest", { content => '{"message":"x"}' });
is($res->{status}, 401, 'POST /ingest without token: 401');
$res = $http->get("http://127.0.0.1:$port/healthz");
is($res->{status}, 200, 'GET /healthz: 200');
$res = $http->get("http://127.0.0.1:$port/metrics");
like($res->{content}, qr/^logagg_ingest_rows_total (\d+)$/m, 'GET /metrics has the rows counter');
my ($metric_rows) = $res->{content} =~ /^logagg_ingest_rows_total (\d+)$/m;

# ---- logagg.ingest() from SQL ----
sql("CREATE ROLE w LOGIN IN ROLE logagg_writer; CREATE ROLE nobody LOGIN; SELECT logagg.grant_source_write('w', 'svc-sql')");
is($node->safe_psql('postgres', q{SELECT logagg.ingest('[{"message":"sql1","source":"svc-sql","status":404},{"ts":"bad"}]')},
		extra_params => [ '-U', 'w' ]),
	'1', 'logagg.ingest() as logagg_writer stores the valid record');
is(sql("SELECT severity || ',' || source FROM logagg.logs WHERE message = 'sql1'"), 'critical,svc-sql',
	'logagg.ingest() classifies like the socket path');
is(sql("SELECT count(*) FROM logagg.rejected WHERE peer = 'sql'"), '1', 'logagg.ingest() rejects go to logagg.rejected');
my ($ret, $stdout, $stderr) = $node->psql('postgres', q{SELECT logagg.ingest('{"message":"x"}')},
	extra_params => [ '-U', 'nobody' ]);
like($stderr, qr/permission denied/, 'logagg.ingest() needs logagg_writer');

# ---- counters ----
my $ws_rows = sql("SELECT count(*) FROM logagg.logs WHERE source <> 'svc-sql'");
is(sql("SELECT rows_stored FROM logagg.status() WHERE kind = 'ingest'"), $ws_rows,
	'status() rows_stored equals the rows the worker stored');
is($metric_rows, $ws_rows - 0, '/metrics agrees (all socket rows were stored before it was read)');
is(sql("SELECT last_error IS NULL FROM logagg.status() WHERE kind = 'ingest'"), 't', 'no ingest error recorded');

# ---- logagg.auth = trust, switched by a reload ----
sql("ALTER SYSTEM SET logagg.auth = 'trust'");
$node->reload;
ok(poll_until(sub { probe("upgrade:a:/ingest") =~ /^a status 101$/m }, 30),
	'after SIGHUP with logagg.auth = trust, no token is needed');
$out = probe("open:a:/ingest", 'send:a:{"message":"trusted","source":"svc-trust"}\n{"message":"anon"}\n{"message":"x","source":"bad name!"}', "recv:a");
like($out, qr/"ack_count": 2/, 'trust: valid records acked');
like($out, qr/"error": "source must be/, 'trust: an invalid source name is refused');
is(sql("SELECT string_agg(source, ',' ORDER BY message) FROM logagg.logs WHERE message IN ('trusted', 'anon')"),
	'unknown,svc-trust', 'trust: the record names its source (unknown when it does not)');
sql("ALTER SYSTEM RESET logagg.auth");
$node->reload;
ok(poll_until(sub { probe("upgrade:a:/ingest") =~ /^a status 401$/m }, 30),
	'back to token auth after the next reload');

# ---- revocation takes effect for the next connection ----
sql("SELECT logagg.revoke_source('svc-a')");
$out = probe("upgrade:a:/ingest:$token");
like($out, qr/^a status 401$/m, 'revoked token: 401 right after revoke_source()');

$node->stop;
done_testing();
