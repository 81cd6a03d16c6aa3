# pg_dump keeps what users configured and what logagg stored: a dump of a
# database with sources, streams, edited and added rules, destinations,
# routes, silences, logs in time partitions and in the DEFAULT partition,
# rejected records, queued alerts and delivery history restores without a
# single error (pg_restore --exit-on-error, psql ON_ERROR_STOP) into a
# database that holds the same rows, partitions with their indexes, and
# sequences that go on after the restored ids.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;

# timestamps from 2001, 1 BC and 9999 are stored here: no window on ts
my $node = new_node('dump', "logagg.max_ts_past = -1\nlogagg.max_ts_future = -1\n");
start_with_extension($node);
$node->poll_query_until('postgres', 'SELECT count(*) >= 2 FROM logagg.partitions WHERE NOT is_default')
  or die 'time partitions were not created';

# configuration
my $token = $node->safe_psql('postgres', q{SELECT logagg.create_source('svc-a')});
$node->safe_psql('postgres', q{
CREATE ROLE dump_writer LOGIN IN ROLE logagg_writer;
SELECT logagg.grant_source_write('dump_writer', 'svc-a');
SELECT logagg.create_source('svc-b');
SELECT logagg.revoke_source('svc-b');
INSERT INTO logagg.streams (stream_id, source, last_seq) VALUES ('svc-a-1', 'svc-a', 42);
UPDATE logagg.rules SET enabled = false WHERE status_min = 404;
UPDATE logagg.rules SET severity = 'high' WHERE levels = '{error}';
INSERT INTO logagg.rules (rule_order, message_regex, severity, comment)
    VALUES (5, 'panic', 'critical', 'added by the operator');
SELECT logagg.add_destination('hook', 'webhook',
    '{"url": "http://127.0.0.1:9/alerts", "secret": "dump-test-secret", "retry_base_ms": 60000}');
SELECT logagg.add_route('hook', 'high', NULL, '0');
SELECT logagg.silence('svc-a', NULL, '1 day', 'maintenance window', 'noisy');
});

# data: records in today's partition, one in the DEFAULT partition (year
# 2001), a rejected one, and critical ones that queue alerts
$node->safe_psql('postgres', q{
SELECT logagg.ingest('[
  {"source": "svc-a", "message": "GET /a", "status": 200, "level": "info"},
  {"source": "svc-a", "message": "GET /b", "status": 503, "attrs_user": "u1"},
  {"source": "svc-b", "message": "db down", "level": "fatal", "trace_id": "ab12"},
  {"source": "svc-b", "ts": "2001-02-03T04:05:06Z", "message": "clock skew", "status": 404},
  {"source": "svc-a", "ts": "not a time", "message": "bad"},
  {"source": "svc-b", "ts": "0001-01-01T00:00:00+00:01", "message": "poison ts", "status": 503},
  {"source": "svc-b", "ts": "9999-12-31T23:59:59Z", "message": "far future", "level": "fatal"}
]'::jsonb);
});

# bad input of every kind this server refuses or isolates, so that its
# traces (logagg.rejected rows, alerts) are in the dump too: a record a
# trigger refuses inside the batch, a trigger calling logagg.ingest()
# again, a source the SQL caller was not granted, and over WebSocket a
# binary frame with invalid UTF-8, a NUL escape and non-JSON
$node->safe_psql('postgres', q{
CREATE FUNCTION public.poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.message = 'poison' THEN RAISE EXCEPTION 'poisoned'; END IF;
    IF NEW.message = 'reenter' THEN PERFORM logagg.ingest('{"message": "inner"}'); END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER poison BEFORE INSERT ON logagg.logs FOR EACH ROW EXECUTE FUNCTION public.poison();
SELECT logagg.ingest('[{"source": "svc-a", "message": "poison"}, {"source": "svc-a", "message": "reenter"}]');
});
$node->safe_psql('postgres', q{SELECT logagg.ingest('[{"source": "svc-a", "message": "granted"}, {"source": "svc-b", "message": "not granted"}]')},
	extra_params => [ '-U', 'dump_writer' ]);
my $ws = ws_probe("ws://127.0.0.1:$node->{logagg_port}", "open:a:/ingest:$token",
	'bytes:a:7b226d657373616765223a2261fffe0062227d', 'recv:a',
	'send:a:{"message":"nul \\u0000 byte"}', 'recv:a',
	'send:a:{"message":"poison"}\n{"message":"ws good"}\nnot json at all', 'recv:a', 'recv:a:0.3');
like($ws, qr/error/, 'the bad frames were refused');
$node->safe_psql('postgres', 'DROP TRIGGER poison ON logagg.logs; DROP FUNCTION public.poison()');
is($node->safe_psql('postgres', q{SELECT count(*) FROM logagg.logs WHERE message = 'ws good'}), '1',
	'the good record next to them was stored');
# every queued alert tried once and back in the queue (next try in 60 s),
# so nothing changes while the dumps are taken
ok( $node->poll_query_until('postgres',
		'SELECT count(*) > 0 AND bool_and(attempts > 0 AND claimed_by IS NULL) FROM logagg.alert_queue'),
	'the queued alerts were tried once (closed port)');
isnt($node->safe_psql('postgres', "SELECT count(*) FROM logagg.alert_log WHERE outcome = 'failed'"), '0',
	'the failed attempts are in the history');
$node->safe_psql('postgres', "SELECT logagg.pause_destination('hook')");

my %tables = map { $_ => "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM logagg.$_ t" }
  qw(sources streams rules destinations routes silences logs logs_default rejected alert_queue alert_log source_writers);
my %before = map { $_ => $node->safe_psql('postgres', $tables{$_}) } keys %tables;
is($node->safe_psql('postgres', 'SELECT count(*) FROM logagg.logs_default'), '3', 'rows from 2001, 1 BC and 9999 in the DEFAULT partition');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM logagg.rejected'), '>=', 6, 'rejected records of every kind');
is($node->safe_psql('postgres', q{SELECT count(*) FROM logagg.alert_queue WHERE first_seen < '0001-01-01 00:00+00'}), '1',
	'an alert whose first_seen is in 1 BC');
isnt($node->safe_psql('postgres', 'SELECT count(*) FROM logagg.alert_queue'), '0', 'alerts are queued');

my $tmp = PostgreSQL::Test::Utils::tempdir;
my $connstr = $node->connstr('postgres');

sub check_restored
{
	my ($db, $how) = @_;
	for my $t (sort keys %tables)
	{
		is($node->safe_psql($db, $tables{$t}), $before{$t}, "$how: logagg.$t has the same rows");
	}
	is( $node->safe_psql($db, 'SELECT string_agg(relname, \',\' ORDER BY relname) FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid WHERE i.inhparent = \'logagg.logs\'::regclass'),
		$node->safe_psql('postgres', 'SELECT string_agg(relname, \',\' ORDER BY relname) FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid WHERE i.inhparent = \'logagg.logs\'::regclass'),
		"$how: the same partitions");
	is( $node->safe_psql($db, q{
SELECT count(*) FROM pg_inherits i
WHERE i.inhparent = 'logagg.logs'::regclass
  AND (SELECT count(*) FROM pg_index x WHERE x.indrelid = i.inhrelid) <> 2}),
		'0', "$how: every partition has its two indexes, once");
	is($node->safe_psql($db, 'SELECT count(*) FROM logagg.rules'), '7', "$how: six seeded rules and the added one, no duplicates");
	is($node->safe_psql($db, 'SELECT enabled FROM logagg.rules WHERE status_min = 404'), 'f', "$how: the disabled seeded rule stays disabled");
	is($node->safe_psql($db, "SELECT logagg.classify(404, NULL, 'x', 'GET /gone')"), 'high',
		"$how: classification follows the restored rules (404 now only 'other client errors')");
	ok($node->safe_psql($db, "SELECT nextval('logagg.logs_id_seq') > (SELECT max(id) FROM logagg.logs)"),
		"$how: new log ids come after the restored ones");
	$node->safe_psql($db, "INSERT INTO logagg.rules (rule_order, severity) VALUES (900, 'low')");
	is($node->safe_psql($db, 'SELECT count(*) FROM logagg.rules'), '8', "$how: a new rule gets a new id");
	ok($node->safe_psql($db, "SELECT nextval('logagg.alert_queue_id_seq') > (SELECT max(id) FROM logagg.alert_queue)"),
		"$how: new alert ids come after the restored ones");
}

# custom format, pg_restore stopping at the first error
command_ok([ 'pg_dump', '-Fc', '-f', "$tmp/logagg.dump", '-d', $connstr ], 'pg_dump -Fc');
$node->safe_psql('postgres', 'CREATE DATABASE restored_fc');
my ($stdout, $stderr) = run_command(
	[ 'pg_restore', '--exit-on-error', '-d', $node->connstr('restored_fc'), "$tmp/logagg.dump" ]);
is($stderr, '', 'pg_restore --exit-on-error: no error, no warning');
check_restored('restored_fc', 'pg_restore');

# plain format, psql with ON_ERROR_STOP
command_ok([ 'pg_dump', '-f', "$tmp/logagg.sql", '-d', $connstr ], 'pg_dump (plain)');
$node->safe_psql('postgres', 'CREATE DATABASE restored_sql');
command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('restored_sql'), '-f', "$tmp/logagg.sql" ],
	'psql -v ON_ERROR_STOP=1 -f dump.sql');
check_restored('restored_sql', 'psql');

# the source's token is the same one: its hash came along
like(slurp_file("$tmp/logagg.sql"), qr/COPY logagg\.sources/, 'the plain dump holds the sources');
done_testing();
