# The server side under valgrind memcheck.  The postmaster runs under
# valgrind (every worker and backend is a fork of it, so all of them are
# checked) while the whole path is exercised: WebSocket ingest with
# streams, one-record frames, garbage and bad requests, HTTP POST, _bulk,
# /v1/logs, gzip bodies, Loki pushes, /metrics, SQL ingest, alert dispatch
# to a webhook through libcurl, and a cloud-sync export to a file:// target.
# Then every process's valgrind report must be empty.
#
# PostgreSQL's Debian build has no valgrind client requests, so palloc'd
# chunks are not checked one by one; what is checked is every malloc'd
# buffer (libwebsockets, libuv, libcurl, zlib, logagg's per-connection
# queues) and every use of an uninitialised value.  test/valgrind.supp
# holds the few reports that are PostgreSQL's own and known to be benign.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run ();
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;
use AlertReceivers;
use OtlpWire;
use LogaggLines ();
use JSON::PP ();

my ($valgrind) = map { "$_/valgrind" } grep { -x "$_/valgrind" } split /:/, $ENV{PATH};
plan skip_all => 'valgrind is not installed (scripts/install-deps.sh installs it)' unless $valgrind;

my $vgdir = "$PostgreSQL::Test::Utils::tmp_check/valgrind-$$";
mkdir $vgdir;
mkdir "$vgdir/sync";
my $node = new_node('valgrind', qq{
logagg.dispatch_workers = 1
logagg.partition_interval = '1h'
logagg.sync_url = 'file://$vgdir/sync'
logagg.sync_grace = 0
logagg.sync_interval = '1h'
log_statement = 'none'
# a query worker's first statement loads its caches under valgrind
logagg.reader_statement_timeout = '180s'
});

# started by hand, under valgrind, instead of through pg_ctl
my $bindir = `pg_config --bindir`;
chomp $bindir;
my $pg = IPC::Run::start(
	[ $valgrind, '--quiet', '--error-limit=no', '--leak-check=no', '--track-origins=yes',
	  '--suppressions=' . src_dir() . '/test/valgrind.supp', "--log-file=$vgdir/vg.%p.log",
	  "$bindir/postgres", '-D', $node->data_dir ],
	'<', \undef, '>', "$vgdir/postgres.log", '2>&1');
# Until the slow start under valgrind opens the socket, psql exits at once
# and poll_query_until's write of the query to its stdin would raise
# SIGPIPE, which kills this script: wait with pg_isready (no stdin) first.
$SIG{PIPE} = 'IGNORE';
ok( poll_until(
		sub {
			IPC::Run::run([ 'pg_isready', '-q', '-h', $node->host, '-p', $node->port ],
				'>', '/dev/null', '2>', '/dev/null');
		},
		300),
	'the server accepts connections under valgrind');
ok($node->poll_query_until('postgres', 'SELECT true'), 'the server is up under valgrind');
$node->safe_psql('postgres', 'CREATE EXTENSION logagg');
wait_workers_ready($node);

my $rcv = AlertReceivers::http_receiver($node);
my $token = $node->safe_psql('postgres', q{
SELECT logagg.create_source('svc-a')});
$node->safe_psql('postgres', qq{
SELECT logagg.add_destination('hook', 'webhook', '{"url": "$rcv->{url}/alerts", "secret": "vg-secret"}');
SELECT logagg.add_route('hook', 'high', NULL, '0');
-- route groups: one notification per group of rule alerts (Alertmanager
-- gets every alert of it, Slack one message listing them)
SELECT logagg.add_destination('am', 'alertmanager', '{"url": "$rcv->{url}/am"}');
SELECT logagg.set_route_grouping(logagg.add_route('am', 'high'), ARRAY['rule'], '0 s', '1 min');
SELECT logagg.add_destination('grp', 'slack', '{"webhook_url": "$rcv->{url}/grp", "allow_insecure": true}');
SELECT logagg.set_route_grouping(logagg.add_route('grp', 'high'), ARRAY[]::text[], '0 s', '1 min');
-- alert rules: every filter part and label kind counted by the ingest
-- worker and by SQL ingest, evaluated by dispatch worker 1
SELECT logagg.add_alert_rule('vg-count', '{"source": "svc-*", "min_severity": "high", "status": [400, 599]}',
                             '1 hour', 0, 'count', ARRAY['source', 'status', 'severity']);
SELECT logagg.add_alert_rule('vg-ratio', '{"message_regex": "e", "level": ["error", "fatal"]}',
                             '1 hour', 0, 'ratio', ARRAY['level', 'attrs.deep']);
SELECT logagg.add_alert_rule('vg-attrs', '{"attrs": {"attrs": {"deep": {"er": [1]}}}}', '1 hour', 0, 'rate', ARRAY[]::text[]);
});
my $url = "ws://127.0.0.1:$node->{logagg_port}/ingest";
my $http = "http://127.0.0.1:$node->{logagg_port}";

sub emit
{
	my ($in, @args) = @_;
	my ($out, $err) = ('', '');
	# under valgrind a batch can take seconds: wait for acks as long as the run may
	my @cmd = (emitter_path(), '--url', $url, '--token', $token, '--quiet', '--drain-timeout', 240, @args);
	IPC::Run::run(\@cmd, '<', \$in, '>', \$out, '2>', \$err, IPC::Run::timeout(300));
	return $out;
}

like(emit('', '--profile', 'a', '--count', 4000, '--rate', 0, '--batch', 200, '--stream', 'vg-1'),
	qr/acked 4000 /, 'profile a: 4000 records in frames of 200 on a stream, all acked');
like(emit('', '--profile', 'b', '--count', 500, '--rate', 0, '--batch', 1),
	qr/acked 500 /, 'profile b: 500 one-record frames, all acked');
like(emit('', '--profile', 'a', '--count', 4000, '--rate', 0, '--batch', 200, '--stream', 'vg-1'),
	qr/acked 4000 /, 'the stream resumed: 4000 more acked');
my $garbage = join("\n",
	'{"message": "fine", "status": 503, "attrs": {"a": [1, {"b": null}], "c": "\u00e9"}}',
	'{"ts": "not a time"}', '{"status": "five"}', '[1, 2, {"level": "error"}]',
	'{"message": "\ud800 lone surrogate"}', '{"trace_id": "xyz"}', '{"unterminated": ') . "\n";
my ($stdin_acked, $stdin_rejected) = emit($garbage, '--stdin') =~ /acked (\d+) rejected (\d+)/;
is(($stdin_acked // 0) + ($stdin_rejected // 0), 7, 'stdin: every line answered, stored or rejected');
cmp_ok($stdin_rejected // 0, '>=', 3, 'stdin: bad timestamp, status and trace id rejected');

my ($out, $err);
IPC::Run::run([ 'curl', '-s', '-X', 'POST', '--data-binary', qq({"message":"post"}\n{bad\n[{"status":404}]),
		"$http/ingest?token=$token" ], '>', \$out, '2>', \$err, IPC::Run::timeout(60));
like($out, qr/"accepted": 2, "rejected": 1/, 'POST /ingest: two stored, one rejected');
# plain-text lines (their level, status and time read from the line) and
# field names that lose to one listed first (kept in attrs)
my @plain = LogaggLines::plain_lines(time() - 3600);
my $plain = join("\n", (map { JSON::PP->new->encode({ date => time() - 5, log => $_->[0] }) } @plain),
	qq({"msg":"m2","message":"m1","time":"x","ts":${\ (time() * 1000)},"severity":"warn","level":null}));
my $before = $node->safe_psql('postgres', 'SELECT coalesce(max(id), 0) FROM logagg.logs');
IPC::Run::run([ 'curl', '-s', '-X', 'POST', '--data-binary', $plain, "$http/ingest?token=$token" ],
	'>', \$out, '2>', \$err, IPC::Run::timeout(120));
like($out, qr/"accepted": ${\ (@plain + 1)}, "rejected": 0/, 'POST /ingest: plain-text lines and field names, all stored');
is($node->safe_psql('postgres', qq{SELECT count(level) || ',' || count(status) FROM logagg.logs WHERE id > $before}),
	scalar(grep { defined $_->[1] } @plain) + 1 . ',' . scalar(grep { defined $_->[2] } @plain),
	'the levels and statuses read from the lines');
is($node->safe_psql('postgres', qq{SELECT message || ' ' || level || ' ' || (attrs - 'date')::text FROM logagg.logs WHERE id > $before AND message = 'm1'}),
	'm1 warn {"msg": "m2", "time": "x", "level": null}', 'the names listed first won, the others are in attrs');
# out of the counts and sync windows below (their times are an hour and more ago)
$node->safe_psql('postgres', "DELETE FROM logagg.logs WHERE id > $before");
for my $req ([ 'POST', "$http/ingest", '401' ], [ 'GET', "$http/nowhere?token=$token", '404' ],
	[ 'GET', "$http/healthz", '200' ])
{
	IPC::Run::run([ 'curl', '-s', '-X', $req->[0], '-o', '/dev/null', '-w', '%{http_code}', $req->[1] ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(60));
	is($out, $req->[2], "$req->[0] $req->[1] answers $req->[2]");
}
# a record a trigger refuses inside the batch's transaction: the batch is
# stored again without it (subtransactions), the others commit
$node->safe_psql('postgres', q{
CREATE FUNCTION public.poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.message = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER poison BEFORE INSERT ON logagg.logs FOR EACH ROW EXECUTE FUNCTION public.poison();
});
IPC::Run::run([ 'curl', '-s', '-X', 'POST', '--data-binary', qq({"message":"p1"}\n{"message":"poison","status":503}\n{"message":"p2","status":500}),
		"$http/ingest?token=$token" ], '>', \$out, '2>', \$err, IPC::Run::timeout(60));
like($out, qr/"accepted": 2, "rejected": 1/, 'POST /ingest: a record a trigger refuses is rejected, the others stored');
# the Elasticsearch door: a refused document gets its own item error
IPC::Run::run([ 'curl', '-s', '-u', "elastic:$token", '-H', 'Content-Type: application/x-ndjson', '--data-binary',
		qq({"index":{}}\n{"message":"e1"}\n{"create":{}}\n{"message":"poison"}\n{"delete":{}}\n{"index": x}\n{"a":1}\n{"index":{}}\n{bad\n),
		"$http/logs/_bulk" ], '>', \$out, '2>', \$err, IPC::Run::timeout(60));
like($out, qr/^\{"took": \d+, "errors": true, "items": \[\{"index": \{"_index": "logs", [^\]]*"status": 201\}\}, \{"create": \{[^{]*"status": 400, "error": \{[^}]*storing the record failed: poisoned"\}\}\}, \{"delete"/,
	'POST /logs/_bulk: per-item outcomes, the refused document too');
is(scalar(() = $out =~ /"status": 400/g), 4, 'POST /logs/_bulk: four items refused');
# the OpenTelemetry door (protobuf with a record the trigger refuses, JSON,
# undecodable) and gzip bodies
{
	my $pb = OtlpWire::request([ OtlpWire::kv('service.name', OtlpWire::any_str('vg')) ],
		[ OtlpWire::log_record(body => OtlpWire::any_str('o1'), severity_number => 17),
		  OtlpWire::log_record(body => OtlpWire::any_str('poison')) ]);
	my $f = "$vgdir/otlp.pb";
	open(my $fh, '>:raw', $f) or die;
	print $fh $pb;
	close $fh;
	IPC::Run::run([ 'curl', '-s', '-H', "Authorization: Bearer $token", '-H', 'Content-Type: application/x-protobuf',
			'--data-binary', "\@$f", "$http/v1/logs" ], '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	like($out, qr/1 of 2 log records were rejected.*poisoned/s, 'POST /v1/logs: partial success, the refused record named');
	IPC::Run::run([ 'curl', '-s', '-H', "Authorization: Bearer $token", '-H', 'Content-Type: application/json', '--data-binary',
			'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"kvlistValue":{"values":[{"key":"a","value":{"intValue":"1"}}]}},"traceId":"0af7651916cd43dd8448eb211c80319c","x":[1]}]}]}]}',
			"$http/v1/logs" ], '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	is($out, '{}', 'POST /v1/logs (JSON): stored');
	IPC::Run::run([ 'curl', '-s', '-H', "Authorization: Bearer $token", '-H', 'Content-Type: application/json', '--data-binary',
			'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"caf\\u00e9 \\ud83d\\ude00"},"attributes":[{"value":{"arrayValue":{"values":[{"doubleValue":"NaN"},{"bytesValue":"aGk="}]}},"key":"k\\n"},{"key":"http.status_code","value":{"intValue":503}}]}]}]}]}',
			"$http/v1/logs" ], '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	is($out, '{}', 'POST /v1/logs (JSON with escapes, a key after its value): stored');
	IPC::Run::run([ 'curl', '-s', '-H', "Authorization: Bearer $token", '-H', 'Content-Type: application/json', '--data-binary',
			'{"resourceLogs":[{"scopeLogs":[{"logRecords":[{"body":{"stringValue":"fine"}},{"flags":"x"}]}]}]}',
			"$http/v1/logs" ], '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	like($out, qr/field \\"flags\\" has a value of the wrong type/, 'POST /v1/logs (JSON) with a value of the wrong type: refused');
	IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', "Authorization: Bearer $token",
			'-H', 'Content-Type: application/x-protobuf', '--data-binary', substr($pb, 0, 9), "$http/v1/logs" ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(60));
	is($out, '400', 'POST /v1/logs with a truncated body: 400');
	my $gz = "$vgdir/body.gz";
	IPC::Run::run([ 'gzip', '-c' ], '<', \qq({"message":"gz1"}\n{"message":"gz2"}), '>', $gz);
	IPC::Run::run([ 'curl', '-s', '-H', 'Content-Encoding: gzip', '--data-binary', "\@$gz", "$http/ingest?token=$token" ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(60));
	like($out, qr/"accepted": 2/, 'POST /ingest with a gzip body: stored');
	IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', 'Content-Encoding: gzip',
			'--data-binary', 'not gzip', "$http/ingest?token=$token" ], '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	is($out, '400', 'POST /ingest with a body that is not gzip: 400');
}
for my $req ([ "$http/", 'elastic:lgt_wrong', '401' ], [ "$http/", "elastic:$token", '200' ])
{
	IPC::Run::run([ 'curl', '-s', '-u', $req->[1], '-o', '/dev/null', '-w', '%{http_code}', $req->[0] ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(60));
	is($out, $req->[2], "GET / with $req->[1] answers $req->[2]");
}
IPC::Run::run([ 'curl', '-s', '-u', "elastic:$token", '-H', 'Content-Type: application/json', '--data-binary', 'not ndjson', "$http/_bulk" ],
	'>', \$out, '2>', \$err, IPC::Run::timeout(60));
like($out, qr/"status": 400/, 'POST /_bulk with a body that is not NDJSON: 400');
$node->safe_psql('postgres', 'DROP TRIGGER poison ON logagg.logs');
# a forwarding token: each record's own source, within its globs
my $fwd = $node->safe_psql('postgres', q{SELECT logagg.create_source('fwd', forwarder => true, sources => 'svc-*')});
IPC::Run::run([ 'curl', '-s', '-X', 'POST', '--data-binary',
		qq({"source":"svc-f1","message":"f1"}\n{"service.name":"svc-f2","message":"f2","x":"\\u00e9"}\n{"message":"f3"}\n{"source":"other","message":"f4"}\n{"service.name":"bad name","message":"f5"}),
		"$http/ingest?token=$fwd" ], '>', \$out, '2>', \$err, IPC::Run::timeout(60));
like($out, qr/"accepted": 3, "rejected": 2/, 'POST /ingest with a forwarding token: three stored, two names refused');
IPC::Run::run([ 'curl', '-s', "$http/metrics" ], '>', \$out, '2>', \$err, IPC::Run::timeout(60));
like($out, qr/^logagg_ingest_rows_total \d+/m, '/metrics answers');
$node->safe_psql('postgres', q{
SELECT logagg.ingest('[{"message": "from sql", "level": "fatal", "attrs": {"deep": {"er": [1, 2.5, "x"]}}}]')});

ok( $node->poll_query_until('postgres', q{SELECT count(*) > 0 FROM logagg.alert_log WHERE outcome = 'delivered'}),
	'alerts were delivered to the webhook');
ok( $node->poll_query_until('postgres', q{SELECT count(DISTINCT rule_id) = 3 FROM logagg.alerts WHERE state = 'firing'}),
	'the three alert rules fired');
ok( $node->poll_query_until('postgres', q{SELECT count(DISTINCT destination) = 2 FROM logagg.alert_log
                                           WHERE outcome = 'delivered' AND destination IN ('am', 'grp')}),
	'group notifications were delivered (alertmanager, slack)');
my $stored = $node->safe_psql('postgres', 'SELECT count(*) FROM logagg.logs');
# (the last + 1s: the OTLP JSON record with escapes, stored, and the OTLP
# JSON body with a value of the wrong type, rejected)
is($stored, 8000 + 500 + ($stdin_acked // 0) + 2 + 2 + 1 + 3 + 1 + 2 + 2 + 1, 'every acked record is stored once');
is($node->safe_psql('postgres', 'SELECT count(*) FROM logagg.rejected'), 1 + 1 + 5 + 2 + 3 + 1 + ($stdin_rejected // 0),
	'every rejected record is in logagg.rejected');

# the Loki door: protobuf + snappy (good, and bad in every way), JSON
# (with gzip, unknown keys, entries of the wrong shape), partial pushes
{
	sub pbv { my $n = shift; my $s = ''; while ($n >= 0x80) { $s .= chr(($n & 0x7f) | 0x80); $n >>= 7; } return $s . chr($n); }
	sub pbld { my ($f, $b) = @_; return pbv(($f << 3) | 2) . pbv(length $b) . $b; }
	my $sec = time();
	my $entry = sub { my ($line, %meta) = @_; return pbld(2, pbld(1, pbv(8) . pbv($sec) . pbv(16) . pbv(123456789)) . pbld(2, $line)
		. join('', map { pbld(3, pbld(1, $_) . pbld(2, $meta{$_})) } sort keys %meta) . pbv(15 << 3) . pbv(7)); };
	my @bodies = (
		pbld(1, pbld(1, '{job="vg", level="warn", q="a\"b\\\\c\n"}') . $entry->('loki 1', trace_id => 'x', ctl => "a\x01b")
			. $entry->('loki 2', level => 'x' x 40) . $entry->("bad \xff utf8") . $entry->("nul \0 byte")),
		pbld(1, pbld(1, '{job="vg", broken') . $entry->('loki bad labels')),
		pbld(1, pbld(1, '{job="vg"}') . $entry->('loki 3')) . "\x0a\xff",
		"\x0f\xff\xff garbage");
	my $i = 0;
	for my $pb (@bodies)
	{
		my $sn = '';
		IPC::Run::run([ '/usr/bin/python3', '-c', 'import sys, snappy; sys.stdout.buffer.write(snappy.compress(sys.stdin.buffer.read()))' ],
			'<', \$pb, '>', \$sn);
		IPC::Run::run([ 'curl', '-s', '-u', "loki:$token", '-H', 'Content-Type: application/x-protobuf', '--data-binary', '@-',
				'-o', '/dev/null', '-w', '%{http_code}', "$http/loki/api/v1/push" ], '<', \$sn, '>', \$out, '2>', \$err, IPC::Run::timeout(60));
		like($out, qr/^(204|400)$/, 'Loki protobuf push ' . $i++ . ": $out");
	}
	my $ns = $sec . '000000000';
	for my $req ([ "\xff\x00\x01 not snappy", 'application/x-protobuf', '400' ],
		[ "\x80\x80\x80\x40 bomb", 'application/x-protobuf', '413' ],
		[ qq({"streams": [{"stream": {"job": "vgj"}, "x": [1], "values": [["$ns", "loki json", {"m": "v"}], [1, 2], {"a": 1}, ["$ns"]]}], "y": {}}), 'application/json', '400' ],
		[ '{"streams": [', 'application/json', '400' ], [ 'text', 'text/plain', '415' ])
	{
		IPC::Run::run([ 'curl', '-s', '-u', "loki:$token", '-H', "Content-Type: $req->[1]", '--data-binary', '@-',
				'-o', '/dev/null', '-w', '%{http_code}', "$http/loki/api/v1/push" ], '<', \$req->[0], '>', \$out, '2>', \$err, IPC::Run::timeout(60));
		is($out, $req->[2], "Loki push ($req->[1]) answers $req->[2]");
	}
}

# a rule regex that runs out of time (logagg.regex_timeout), in the ingest
# worker and in a backend: no match, the record stored, nothing leaked
$node->safe_psql('postgres', q{
INSERT INTO logagg.rules (rule_order, message_regex, severity) VALUES (2, '(a*)*\1\1b\1', 'high')});
my $long = ('a' x 3000) . 'b';
like(ws_probe("ws://127.0.0.1:$node->{logagg_port}", "open:c:/ingest:$token",
		qq(send:c:{"message":"$long","status":200}), 'recv:c:120'),
	qr/ack_count": 1/, 'a record whose rule regex runs out of time is acked');
is($node->safe_psql('postgres', qq{SELECT logagg.classify(200, NULL, NULL, '$long')}), 'low',
	'logagg.classify(): the timed-out rule does not match');
ok($node->safe_psql('postgres', q{SELECT (counters->>'regex_timeouts')::int FROM logagg.status() WHERE kind = 'ingest'}) >= 1,
	'the ingest worker counted the timeout');
$node->safe_psql('postgres', q{DELETE FROM logagg.rules WHERE rule_order = 2});

# the reader worker: a live tail with filters and since=N (a query worker
# for the replay), the JSON API in query workers, a refused token
{
	my $rd = $node->safe_psql('postgres', q{SELECT logagg.create_reader_token('vg')});
	my $rhttp = "http://127.0.0.1:$node->{reader_port}";
	my $whoami = sub {
		IPC::Run::run([ 'curl', '-s', '-H', "Authorization: Bearer $rd", "$rhttp/api/whoami" ],
			'>', \$out, '2>', \$err, IPC::Run::timeout(60));
		return $out =~ /"vg"/;
	};
	ok(poll_until($whoami, 60), 'the reader knows the token');
	IPC::Run::run([ '/usr/bin/python3', src_dir() . '/test/clients/tail_client.py',
			"tail:t:ws://127.0.0.1:$node->{reader_port}/tail?token=$rd&since=2&q=tail&attrs=%7B%22k%22%3A1%7D",
			'recv:t:1:0.5',
			"post:$http/ingest::$token:" . '{"message":"tail me","k":1}\n{"message":"not me","k":1}',
			'until:t:240:tail me' ], '>', \$out, '2>', \$err, IPC::Run::timeout(300));
	like($out, qr/^t frame \S+ \{"id".*"tail me"/m, 'a record reaches a tail subscriber')
	  or diag("tail_client stderr: $err");
	for my $path ('/api/search?q=tail', '/api/histogram', '/api/alerts', '/api/status')
	{
		IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-H', "Authorization: Bearer $rd",
				"$rhttp$path" ], '>', \$out, '2>', \$err, IPC::Run::timeout(240));
		is($out, '200', "$path answers 200");
	}
	IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', "$rhttp/api/search" ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(60));
	is($out, '401', 'the API without a token: 401');
}

# cloud sync of a closed window, in this backend
$node->safe_psql('postgres', q{
INSERT INTO logagg.logs (ts, source, level, severity, status, message, attrs)
SELECT date_trunc('hour', now()) - interval '2 hours' + make_interval(secs => i), 'old', 'info', 'low', 200,
       E'line\t' || i, jsonb_build_object('i', i)
FROM generate_series(1, 500) i});
# (records of this test's own hour close too when the hour turns while
# it runs: count what was uploaded for 'old' only)
cmp_ok($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '>=', 1, 'sync_now exported');
is($node->safe_psql('postgres', q{SELECT count(*) FROM logagg.sync_log WHERE source = 'old' AND status = 'uploaded'}),
	'1', 'the closed window of source old, once');

# stop, and read what valgrind says about every process
IPC::Run::run([ "$bindir/pg_ctl", '-D', $node->data_dir, '-m', 'fast', '-t', '180', 'stop' ],
	'>', \$out, '2>', \$err);
$pg->finish;
my @logs = glob("$vgdir/vg.*.log");
cmp_ok(scalar(@logs), '>=', 6, scalar(@logs) . ' processes ran under valgrind');
my @dirty = grep { -s $_ } @logs;
is(scalar(@dirty), 0, 'valgrind reported nothing for any process')
  or diag(join("\n", map { "--- $_\n" . slurp_file($_) } @dirty[0 .. ($#dirty < 2 ? $#dirty : 2)]));
done_testing();
