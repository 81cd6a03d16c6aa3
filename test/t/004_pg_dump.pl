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

my $node = new_node('dump');
start_with_extension($node);
$node->poll_query_until('postgres', 'SELECT count(*) >= 2 FROM logagg.partitions WHERE NOT is_default')
  or die 'time partitions were not created';

# configuration
$node->safe_psql('postgres', q{
SELECT logagg.create_source('svc-a');
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
  {"source": "svc-a", "ts": "not a time", "message": "bad"}
]'::jsonb);
});
# every queued alert tried once and back in the queue (next try in 60 s),
# so nothing changes while the dumps are taken
ok( $node->poll_query_until('postgres',
		'SELECT count(*) > 0 AND bool_and(attempts > 0 AND claimed_by IS NULL) FROM logagg.alert_queue'),
	'the queued alerts were tried once (closed port)');
isnt($node->safe_psql('postgres', "SELECT count(*) FROM logagg.alert_log WHERE outcome = 'failed'"), '0',
	'the failed attempts are in the history');
$node->safe_psql('postgres', "SELECT logagg.pause_destination('hook')");

my %tables = map { $_ => "SELECT md5(coalesce(string_agg(t::text, '|' ORDER BY t::text), '')) FROM logagg.$_ t" }
  qw(sources streams rules destinations routes silences logs logs_default rejected alert_queue alert_log);
my %before = map { $_ => $node->safe_psql('postgres', $tables{$_}) } keys %tables;
is($node->safe_psql('postgres', 'SELECT count(*) FROM logagg.logs_default'), '1', 'one row in the DEFAULT partition');
is($node->safe_psql('postgres', 'SELECT count(*) FROM logagg.rejected'), '1', 'one rejected record');
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
