# Worker lifecycle: the workers start with the server, wait quietly for
# CREATE EXTENSION, pick it up without a restart, reload on SIGHUP, come
# back after SIGKILL, return to waiting after DROP EXTENSION, and let a
# fast shutdown finish promptly.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;

my $node = new_node('workers', "logagg.dispatch_workers = 3\n");
$node->start;

my $workers_sql = q{SELECT string_agg(backend_type, ',' ORDER BY backend_type)
  FROM pg_stat_activity WHERE backend_type LIKE 'logagg%'};
my $expected = 'logagg dispatch 1,logagg dispatch 2,logagg dispatch 3,logagg ingest,logagg maintenance';

ok($node->poll_query_until('postgres', $workers_sql, $expected),
	'ingest, 3 dispatch and maintenance workers run before the extension exists');

# Waiting: one LOG line each, then quiet; no partitions anywhere yet.
ok( poll_until(sub { slurp_file($node->logfile) =~ /logagg ingest: waiting for extension "logagg"/ }, 30),
	'ingest worker says once what it waits for');
sleep 3;
my $log = slurp_file($node->logfile);
my $waits = () = $log =~ /logagg ingest: waiting for extension/g;
is($waits, 1, 'waiting is logged once, not every poll');
unlike($log, qr/ERROR|FATAL/, 'no errors while waiting for the extension');

# Created late: picked up without restart.
$node->safe_psql('postgres', 'CREATE EXTENSION logagg');
wait_workers_ready($node);
ok($node->poll_query_until('postgres',
		"SELECT count(*) >= 2 FROM logagg.partitions WHERE NOT is_default"),
	'maintenance worker created partitions after CREATE EXTENSION');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM logagg.status() WHERE pid IS NOT NULL AND ready"),
	'6', 'logagg.status() shows all six workers running and ready');

# SIGHUP: every worker processes the reload.
my $reloads_sql = q{SELECT string_agg((counters->>'reloads'), ',' ORDER BY worker) FROM logagg.status()};
my $before = $node->safe_psql('postgres', $reloads_sql);
$node->safe_psql('postgres', "ALTER SYSTEM SET logagg.batch_rows = 1234");
$node->reload;
ok( $node->poll_query_until('postgres',
		q{SELECT bool_and((counters->>'reloads')::int >= 1) FROM logagg.status()}),
	'every worker processed SIGHUP');
is($node->safe_psql('postgres', 'SHOW logagg.batch_rows'), '1234', 'new value visible');

# SIGKILL: the postmaster restarts the worker (via crash recovery).
my $old_pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'logagg ingest'");
ok($old_pid > 0, "ingest worker pid $old_pid");
kill 'KILL', $old_pid;
ok( poll_until(
		sub {
			my ($ret, $pid) = $node->psql('postgres',
				"SELECT pid FROM pg_stat_activity WHERE backend_type = 'logagg ingest'");
			return $ret == 0 && defined $pid && $pid =~ /^\d+$/ && $pid != $old_pid;
		},
		60),
	'ingest worker came back with a new pid after SIGKILL');
wait_workers_ready($node);

# A dispatch worker killed with SIGTERM (pg_terminate_backend) comes back too.
my $d_pid = $node->safe_psql('postgres',
	"SELECT pid FROM pg_stat_activity WHERE backend_type = 'logagg dispatch 2'");
$node->safe_psql('postgres', "SELECT pg_terminate_backend($d_pid)");
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'logagg dispatch 2' AND pid <> $d_pid"),
	'dispatch worker restarted after pg_terminate_backend');

# DROP EXTENSION: workers go back to waiting; CREATE again: ready again.
$node->safe_psql('postgres', 'DROP EXTENSION logagg CASCADE');
ok( poll_until(sub { slurp_file($node->logfile) =~ /was dropped in database/ }, 30),
	'a worker noticed DROP EXTENSION');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 5 FROM pg_stat_activity WHERE backend_type LIKE 'logagg%' AND wait_event = 'Extension'"),
	'all workers wait again');
$node->safe_psql('postgres', 'CREATE EXTENSION logagg');
wait_workers_ready($node);
pass('workers ready after re-creating the extension');

# Fast shutdown completes promptly.
my $t0 = time();
$node->stop('fast');
my $elapsed = time() - $t0;
cmp_ok($elapsed, '<', 5, sprintf('fast shutdown took %.2f s', $elapsed));

done_testing();
