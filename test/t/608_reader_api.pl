# 608_reader_api.pl -- the reader's JSON API: /api/search (the same records
# as logagg.search(), each filter, limits), /api/histogram, /api/alerts
# (destination names only, no secrets), /api/status; a token for
# service-a* never sees another source in any of them; bad parameters get
# 400 with a clear message, missing tokens 401.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use LogaggTest;

my $node = new_node('reader_api', "logagg.dispatch_workers = 0\nlogagg.max_ts_past = -1\n");
start_with_extension($node);
my $http = "http://127.0.0.1:$node->{reader_port}";
my $ingest = "http://127.0.0.1:$node->{logagg_port}/ingest";

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub uri_escape
{
	my ($s) = @_;
	$s =~ s/([^A-Za-z0-9._~-])/sprintf('%%%02X', ord($1))/ge;
	return $s;
}

sub get
{
	my ($path, $token) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'curl', '-s', '-w', '\n%{http_code}', ($token ? ('-H', "Authorization: Bearer $token") : ()),
			"$http$path" ], '>', \$out, '2>', \$err, IPC::Run::timeout(60));
	my ($body, $status) = $out =~ /\A(.*)\n(\d+)\z/s;
	return ($status, $body);
}

sub post
{
	my ($token, $body) = @_;
	my $out = '';
	IPC::Run::run([ 'curl', '-s', '-H', "Authorization: Bearer $token", '--data-binary', $body, $ingest ],
		'>', \$out, IPC::Run::timeout(60));
	return $out;
}

my $ta = sql(q{SELECT logagg.create_source('service-a1')});
my $tb = sql(q{SELECT logagg.create_source('other-b')});
my $all = sql(q{SELECT logagg.create_reader_token('all')});
my $rda = sql(q{SELECT logagg.create_reader_token('only-a', 'service-a*')});
ok(poll_until(sub { (get('/api/whoami', $rda))[0] == 200 }, 10), 'the reader knows the tokens');

like(post($ta, join("\n", '{"message":"GET /users 200","level":"info","user":"alice"}',
			'{"message":"disk full on /var","level":"error","status":503}',
			'{"message":"Payment_Failed for order 7","level":"warn","user":"bob"}')), qr/"accepted": 3/, 'stored a records');
like(post($tb, join("\n", '{"message":"GET /users 500 from b","level":"error","user":"alice"}',
			'{"message":"b secret-ish text","level":"info"}')), qr/"accepted": 2/, 'stored b records');

sub search_ids
{
	my ($query, $token) = @_;
	my ($st, $body) = get("/api/search?$query", $token);
	return "status $st: $body" if $st != 200;
	return join(',', map { $_->{id} } @{ decode_json($body)->{records} });
}

sub sql_ids { return sql("SELECT coalesce(string_agg(id::text, ',' ORDER BY ts DESC, id DESC), '') FROM ($_[0]) s"); }

# the same records as logagg.search(), newest first
is(search_ids('', $all), sql_ids(q{SELECT * FROM logagg.search('')}), 'no filter: what logagg.search() returns');
is(search_ids('q=users', $all), sql_ids(q{SELECT * FROM logagg.search('users')}), 'q: a substring');
is(search_ids('q=payment_f', $all), sql_ids(q{SELECT * FROM logagg.search('payment_f')}), 'case-insensitive, _ literal');
is(search_ids('q=' . uri_escape('/GET .* 5\d\d/'), $all), sql_ids(q{SELECT * FROM logagg.search('/GET .* 5\d\d/')}),
	'q: /regex/');
is(search_ids('min_severity=critical', $all), sql_ids(q{SELECT * FROM logagg.search('', min_severity => 'critical')}),
	'min_severity');
is(search_ids('attrs=' . uri_escape('{"user":"alice"}'), $all),
	sql_ids(q{SELECT * FROM logagg.search('', attrs => '{"user":"alice"}')}), 'attrs');
is(search_ids('source=other-*', $all), sql_ids(q{SELECT * FROM logagg.search('', source => 'other-*')}), 'source');
is(search_ids('limit=2', $all), sql_ids(q{SELECT * FROM logagg.search('', lim => 2)}), 'limit');
my $mid = sql(q{SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') FROM logagg.logs ORDER BY ts, id LIMIT 1 OFFSET 2});
is(search_ids('since=' . uri_escape($mid), $all), sql_ids(qq{SELECT * FROM logagg.search('', since => '$mid')}), 'since');
is(search_ids('until=' . uri_escape($mid), $all), sql_ids(qq{SELECT * FROM logagg.search('', until => '$mid')}), 'until');
my ($st, $body) = get('/api/search?q=disk', $all);
my $rec = decode_json($body)->{records}[0];
is_deeply([ sort keys %$rec ], [ sort qw(id ts received_at source severity level status message trace_id span_id attrs) ],
	'each record has the stored columns');
is($rec->{severity} . ' ' . $rec->{status}, 'critical 503', 'with their values');

# a service-a* token: its sources only, whatever it asks for
is(search_ids('', $rda), sql_ids(q{SELECT * FROM logagg.search('', source => 'service-a*')}), 'search: only service-a*');
is(search_ids('source=other-b', $rda), '', 'source=other-b finds nothing for it');
is(search_ids('q=GET', $rda), sql_ids(q{SELECT * FROM logagg.search('GET', source => 'service-a*')}), 'q within its sources');

($st, $body) = get('/api/histogram?range=1h', $rda);
is($st, 200, 'histogram');
my $h = decode_json($body);
is($h->{range} . ' ' . $h->{bucket_seconds}, '1h 60', 'one-minute buckets over the last hour');
my %sum;
for my $b (@{ $h->{buckets} }) { $sum{$_} += $b->{$_} for qw(critical high low) }
is(join(',', map { $sum{$_} } qw(critical high low)),
	sql(q{SELECT count(*) FILTER (WHERE severity = 'critical') || ',' || count(*) FILTER (WHERE severity = 'high') || ',' ||
	             count(*) FILTER (WHERE severity = 'low') FROM logagg.logs WHERE source LIKE 'service-a%'}),
	'the histogram counts its sources only');
like($h->{buckets}[0]{t}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:00Z$/, 'buckets start on the minute, RFC 3339');
($st, $body) = get('/api/histogram?range=1d', $all);
is(decode_json($body)->{bucket_seconds}, 3600, 'range=1d: one-hour buckets');

# alerts: queue and history of other sources, a destination with a secret
sql(q{SELECT logagg.add_destination('hook', 'webhook', '{"url": "http://127.0.0.1:9/very-secret-path"}')});
sql(q{INSERT INTO logagg.alert_queue (severity, destination, fingerprint, source) VALUES
        ('critical', 'hook', 'f1', 'service-a1'), ('high', 'hook', 'f2', 'other-b'), ('high', 'hook', 'f3', 'other-b')});
sql(q{INSERT INTO logagg.alert_log (alert_id, destination, severity, source, count, outcome, http_status, error) VALUES
        (1, 'hook', 'critical', 'service-a1', 3, 'delivered', 200, NULL),
        (2, 'hook', 'high', 'other-b', 1, 'failed', 500, 'POST http://127.0.0.1:9/very-secret-path failed')});
sql(q{INSERT INTO logagg.alert_rules (name, kind, "window", threshold, group_by, bucket_secs)
        VALUES ('errors', 'count', '1 min', 1, '{source}', 1)});
sql(q{INSERT INTO logagg.alerts (rule_id, labels, state, since, value)
        SELECT id, l, 'firing', now(), 5 FROM logagg.alert_rules,
               (VALUES ('{"source": "service-a1"}'::jsonb), ('{"source": "other-b"}'), ('{}')) v(l)});
($st, $body) = get('/api/alerts', $all);
is($st, 200, 'alerts');
is(scalar @{ decode_json($body)->{firing} }, 3, 'a * token sees every firing alert');
unlike($body, qr/very-secret-path/, 'no destination secret, no delivery error text');
my $al = decode_json($body);
is(join(',', map { "$_->{destination}:$_->{priority}:$_->{depth}" } @{ $al->{queue} }), 'hook:critical:1,hook:high:2',
	'the queue per destination and priority');
is(scalar @{ $al->{history} }, 2, 'the delivery history');
($st, $body) = get('/api/alerts', $rda);
$al = decode_json($body);
is(join(',', map { "$_->{destination}:$_->{priority}:$_->{depth}" } @{ $al->{queue} }), 'hook:critical:1',
	'a service-a* token: only the queue of its sources');
is(join(',', map { $_->{status} } @{ $al->{history} }), 'delivered', 'and only their history');
unlike($body, qr/other-b/, 'other-b appears nowhere');
is(join(',', map { "$_->{rule}:" . encode_json($_->{labels}) . ":$_->{state}" } @{ $al->{firing} }),
	'errors:{"source":"service-a1"}:firing', 'firing alerts: only those labelled with its sources');
is_deeply([ sort keys %{ $al->{history}[0] } ], [qw(destination sent_at status summary)], 'history fields');

# status
sql(q{INSERT INTO logagg.sync_log (window_start, window_end, source, status, started_at, export_snapshot) VALUES
        (now() - interval '2 hours', now() - interval '1 hour', 'service-a1', 'uploaded', now(), pg_current_snapshot()),
        (now() - interval '2 hours', now() - interval '1 hour', 'other-b', 'failed', now(), NULL)});
($st, $body) = get('/api/status', $rda);
is($st, 200, 'status');
my $s = decode_json($body);
ok((grep { $_->{name} eq 'logagg reader' && $_->{state} eq 'ready' } @{ $s->{workers} }), 'lists the reader worker, ready');
ok((grep { $_->{name} eq 'logagg ingest' && $_->{pid} } @{ $s->{workers} }), 'and the ingest worker with its pid');
is(join(',', map { "$_->{source}:$_->{state}" } @{ $s->{sync} }), 'service-a1:uploaded', 'sync windows of its sources only');
ok(defined $s->{sync}[0]{uploaded_at}, 'with when they were uploaded');

# bad parameters: 400 and why
for my $case ([ 'limit=5000', qr/limit must be a number from 0 to 1000/ ],
	[ 'limit=x', qr/limit must be a number/ ],
	[ 'min_severity=urgent', qr/min_severity must be critical, high or low/ ],
	[ 'attrs=%7Bnope', qr/attrs must be a JSON object/ ],
	[ 'since=yesterday-ish', qr/invalid input syntax for type timestamp with time zone/ ],
	[ 'q=' . uri_escape('/(unclosed/'), qr/invalid regular expression/ ],
	[ 'source=' . uri_escape('a b'), qr/source must be a source name or pattern/ ])
{
	($st, $body) = get("/api/search?$case->[0]", $all);
	is($st, 400, "search?$case->[0]: 400");
	like(eval { decode_json($body)->{error} } // $body, $case->[1], "search?$case->[0]: says why");
}
($st, $body) = get('/api/histogram?range=2h', $all);
is("$st $body", '400 {"error": "range must be 1h or 1d"}', 'histogram?range=2h: 400');
for my $p (qw(search histogram alerts status))
{
	($st, $body) = get("/api/$p", undef);
	is("$st $body", '401 {"error": "missing, unknown or revoked reader token"}', "/api/$p without a token: 401");
}
($st) = get('/api/search', 'lgr_' . ('1' x 64));
is($st, 401, 'a wrong token: 401');
($st, $body) = get('/api/nothing', $all);
is($st, 404, 'an unknown endpoint: 404');

done_testing();
