# 601_read_access.pl -- a role granted 'service-a*' with
# logagg.grant_source_read never sees another source: not in logagg.logs,
# not in a partition queried directly, not through logagg.search(), not in
# rejected, alert_queue or alert_log.  A reader without grants sees every
# source, with unchanged plans; the policy keeps (source, ts) queries on
# the index; ingest (the worker, logagg.ingest()) and admin writes are
# unaffected; restrictions survive pg_dump and restore.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use LogaggTest;

my $node = new_node('read_access', qq{
logagg.dispatch_workers = 0
});
start_with_extension($node);
my $port = $node->{logagg_port};

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub as
{
	my ($role, $query) = @_;
	my ($ret, $stdout, $stderr) = $node->psql('postgres', $query, extra_params => [ '-U', $role ]);
	return wantarray ? ($stdout, $stderr) : $stdout;
}

sql(q{
CREATE ROLE ra LOGIN IN ROLE logagg_reader;
CREATE ROLE rall LOGIN IN ROLE logagg_reader;
CREATE ROLE team NOLOGIN;
CREATE ROLE m LOGIN IN ROLE logagg_reader, team;
CREATE ROLE adm LOGIN IN ROLE logagg_admin;
SELECT logagg.maintain();
SELECT logagg.add_destination('hook', 'webhook', '{"url": "http://127.0.0.1:9/hook"}');
SELECT logagg.add_route('hook', 'high', NULL, interval '0');
SELECT logagg.ingest(jsonb_agg(jsonb_build_object(
           'source', (ARRAY['service-a', 'service-ab', 'service-b', 'web'])[1 + i % 4],
           'level', CASE WHEN i % 3 = 0 THEN 'error' ELSE 'info' END,
           'message', 'record ' || i || ' of ' || (ARRAY['service-a', 'service-ab', 'service-b', 'web'])[1 + i % 4],
           'attrs', jsonb_build_object('i', i))))
  FROM generate_series(1, 400) i;
-- a record far in the past lands in the DEFAULT partition
SELECT logagg.ingest('{"source": "service-b", "ts": "2001-01-01T00:00:00Z", "message": "old secret of service-b"}');
INSERT INTO logagg.rejected (source, reason, raw) VALUES
    ('service-a', 'bad', 'raw of service-a'), ('service-b', 'bad', 'raw of service-b'), (NULL, 'bad', 'raw of nobody');
INSERT INTO logagg.alert_log (alert_id, destination, source, outcome) VALUES
    (1, 'hook', 'service-a', 'delivered'), (2, 'hook', 'service-b', 'delivered'), (3, 'hook', NULL, 'delivered');
SELECT logagg.grant_source_read('ra', 'service-a*');
SELECT logagg.grant_source_read('team', 'web');
});
my $part = sql(q{SELECT partition FROM logagg.partitions WHERE NOT is_default AND range_start <= now() AND range_end > now()});
ok($part ne '', "the current partition is $part");
is(sql(q{SELECT count(DISTINCT source) FROM logagg.alert_queue}), '4', 'alerts are queued for the four sources');

my %tables = (
	'logagg.logs'        => 'service-a,service-ab',
	'logagg.rejected'    => 'service-a',
	'logagg.alert_queue' => 'service-a,service-ab',
	'logagg.alert_log'   => 'service-a',
);
for my $t (sort keys %tables)
{
	is(as('ra', qq{SELECT string_agg(DISTINCT coalesce(source, '(null)'), ',') FROM $t}),
		$tables{$t}, "ra reads only service-a* in $t");
}
is(as('ra', q{SELECT count(*) FROM logagg.logs WHERE message LIKE '%of service-b' OR message LIKE '%of web'}),
	'0', 'ra finds no other source by content');
is(as('ra', q{SELECT string_agg(DISTINCT source, ',') FROM logagg.search(NULL, since => NULL, until => NULL, lim => 100000)}),
	'service-a,service-ab', 'ra: search returns service-a* only');
is(as('ra', q{SELECT count(*) FROM logagg.search('secret', since => NULL, until => NULL, source => 'service-b')}),
	'0', 'ra: search for another source finds nothing');
is(as('ra', q{SELECT count(*) FROM logagg.search('of service-a', since => NULL, until => NULL, lim => 1000)}),
	'200', 'ra: search finds its own records');

for my $p ('logagg.logs_default', $part)
{
	my ($out, $err) = as('ra', "SELECT count(*) FROM $p");
	like($err, qr/permission denied for table/, "ra cannot read the partition $p directly");
	($out, $err) = as('rall', "SELECT count(*) FROM $p");
	like($err, qr/permission denied for table/, "nor can an unrestricted reader ($p): partitions are read through logs");
}

# the views over these tables show counts, no log text
is(as('ra', q{SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns
              WHERE table_schema = 'logagg' AND table_name = 'alert_summary'}),
	'destination,severity,due,scheduled,sending,dead,oldest', 'alert_summary has counts only');
is(as('ra', q{SELECT sum(due + scheduled) FROM logagg.alert_summary}),
	sql(q{SELECT count(*) FROM logagg.alert_queue}), 'alert_summary counts every source (no text, documented)');

# membership: m has team's restriction
is(as('m', q{SELECT string_agg(DISTINCT source, ',') FROM logagg.logs}), 'web', 'a member of a restricted role inherits it');

# unrestricted reader: everything, and plans without the policy
is(as('rall', q{SELECT string_agg(DISTINCT source, ',') FROM logagg.logs}), 'service-a,service-ab,service-b,web',
	'a reader without grants reads every source');
unlike(as('rall', q{EXPLAIN SELECT * FROM logagg.logs WHERE message ILIKE '%x%'}), qr/InitPlan|~~ ANY/,
	'no policy condition in an unrestricted reader\'s plan');

# the policy keeps a (source, ts) query on its index
my $plan = as('ra', q{SET enable_seqscan = off; SET enable_bitmapscan = off;
EXPLAIN SELECT * FROM logagg.logs WHERE source = 'service-a' AND ts > now() - interval '1 hour'});
like($plan, qr/Index Scan using \w+_source_ts on \w+.*\n\s+Index Cond: \(\(source = 'service-a'::text\) AND \(ts > /,
	'ra: (source, ts) query uses the index');
like($plan, qr/InitPlan 1 \(returns \$(\d)\)(.*\n)*.*Filter: \(source ~~ ANY \(\$\1\)\)/, 'the policy is a filter on an InitPlan computed once');
unlike($plan, qr/SubPlan/, 'no per-row sub-query');

# union of grants; revoke; fail closed
sql(q{SELECT logagg.grant_source_read('ra', 'web')});
is(as('ra', q{SELECT string_agg(DISTINCT source, ',') FROM logagg.logs}), 'service-a,service-ab,web', 'grants add up');
is(sql(q{SELECT logagg.revoke_source_read('ra', 'web')}), '1', 'revoke one glob');
is(as('ra', q{SELECT string_agg(DISTINCT source, ',') FROM logagg.logs}), 'service-a,service-ab', 'back to service-a*');
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT logagg.revoke_source_read('ra', 'service-a*')});
like($err, qr/would leave role "ra" without any source/, 'the last glob cannot be revoked (that would open everything)');
($out, $err) = as('adm', q{SELECT logagg.grant_source_read('adm', 'x')});
like($err, qr/role "adm" cannot be restricted/, 'an admin cannot be restricted (it could lift it)');
($ret, $out, $err) = $node->psql('postgres', q{SELECT logagg.grant_source_read('postgres', 'x')});
like($err, qr/role "postgres" cannot be restricted/, 'nor a superuser');
($out, $err) = as('ra', q{SELECT logagg.grant_source_read('ra', '*')});
like($err, qr/permission denied for function grant_source_read/, 'a reader cannot grant itself');
($out, $err) = as('ra', q{DELETE FROM logagg.source_readers});
like($err, qr/permission denied for table source_readers/, 'nor edit the restrictions');

# writes: the ingest worker, logagg.ingest(), admin DELETE
my ($token) = sql(q{SELECT logagg.create_source('service-b')});
my $res = HTTP::Tiny->new(timeout => 10)->post("http://127.0.0.1:$port/ingest",
	{ headers => { Authorization => "Bearer $token" }, content => qq({"message":"over http"}\n) });
is($res->{status}, 200, 'the ingest worker stores records (POST /ingest)');
is(sql(q{SELECT count(*) FROM logagg.logs WHERE message = 'over http'}), '1', 'and they are there');
is(as('ra', q{SELECT count(*) FROM logagg.logs WHERE message = 'over http'}), '0', 'ra does not see them');
is(as('adm', q{WITH d AS (DELETE FROM logagg.logs WHERE message = 'over http' RETURNING 1) SELECT count(*) FROM d}),
	'1', 'an admin still deletes rows');

# lifting the restriction
is(sql(q{SELECT logagg.revoke_source_read('ra')}), '1', 'revoke_source_read(role) lifts the restriction');
is(as('ra', q{SELECT count(DISTINCT source) FROM logagg.logs}), '4', 'ra now reads every source');
sql(q{SELECT logagg.grant_source_read('ra', 'service-a*')});

# pg_dump and restore keep the restriction
my $dump = $node->basedir . '/read.dump';
$node->command_ok([ 'pg_dump', '-Fc', '-f', $dump, '-d', $node->connstr('postgres') ], 'pg_dump');
sql('CREATE DATABASE restored');
$node->command_ok([ 'pg_restore', '-d', $node->connstr('restored'), $dump ], 'pg_restore');
is($node->safe_psql('restored', q{SELECT string_agg(r::regrole::text, ',' ORDER BY r::regrole::text)
                                    FROM pg_policy p, unnest(p.polroles) r
                                   WHERE p.polname = 'source_read' AND p.polrelid = 'logagg.logs'::regclass}),
	'ra,team', 'the restored policies name the restricted roles');
my ($rs, $ro, $re) = $node->psql('restored', q{SELECT string_agg(DISTINCT source, ',') FROM logagg.logs},
	extra_params => [ '-U', 'ra' ]);
is($ro, 'service-a,service-ab', 'ra reads service-a* only in the restored database');

$node->stop;
done_testing();
