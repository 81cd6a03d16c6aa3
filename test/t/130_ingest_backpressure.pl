# 130_ingest_backpressure.pl -- a stalled database must slow clients down,
# never lose or duplicate their records.  While logagg-emit streams as fast
# as acks allow, a session holds a SHARE lock on logagg.logs for 3 s: the
# ingest worker waits on the lock inside its batch, stops reading sockets
# (flow control), and afterwards every record is stored exactly once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(start finish timeout);
use LogaggTest;

my $node = new_node('ingest_bp', "logagg.dispatch_workers = 0\nlogagg.batch_rows = 500\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-bp')");
my $pid = $node->safe_psql('postgres', "SELECT pid FROM logagg.status() WHERE kind = 'ingest'");
my $n = 40000;

my ($out, $err) = ('', '');
my $h = start([ emitter_path(), '--url', "ws://127.0.0.1:$port/ingest", '--token', $token,
		'--stream', 'bp', '--count', $n, '--batch', '50', '--give-up-after', '30',
		# paced to last ~10 s: unpaced, a quiet machine stores all 40,000
		# before the lock is taken, and there is no stream left to stall
		'--rate', '4000' ],
	'>', \$out, '2>', \$err, timeout(150));
ok(poll_until(sub { $node->safe_psql('postgres', "SELECT count(*) FROM logagg.logs") > 1000 }, 60),
	'streaming started');

my $stall = $node->safe_psql('postgres', q{
BEGIN;
LOCK TABLE logagg.logs IN SHARE MODE;
-- wait (bounded) until the worker's next batch blocks on the lock: a fixed
-- sleep is not enough on a busy machine
DO $$
BEGIN
    FOR i IN 1..600 LOOP
        PERFORM pg_stat_clear_snapshot();
        EXIT WHEN EXISTS (SELECT FROM pg_stat_activity
                          WHERE backend_type = 'logagg ingest' AND wait_event_type = 'Lock');
        PERFORM pg_sleep(0.05);
    END LOOP;
END $$;
SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'logagg ingest' AND wait_event_type = 'Lock';
SELECT count(*) FROM logagg.logs;
SELECT pg_sleep(2);
SELECT count(*) FROM logagg.logs;
COMMIT;
});
my ($waiting, $before, undef, $after) = split /\n/, $stall;
is($waiting, '1', 'the ingest worker was waiting on the lock (the stall was real)');
is($before, $after, 'nothing was stored while the table was locked');
cmp_ok($after, '<', $n, 'the stall happened mid-stream');

finish($h);
is($? >> 8, 0, 'after the stall the emitter got every record acked') or diag($err);
is($node->safe_psql('postgres',
		"SELECT count(*) || ',' || count(DISTINCT seq) || ',' || max(seq) FROM logagg.logs WHERE stream = 'bp'"),
	"$n,$n,$n", 'every record stored exactly once');
is($node->safe_psql('postgres', "SELECT pid || ',' || coalesce(last_error, '') FROM logagg.status() WHERE kind = 'ingest'"),
	"$pid,", 'the same ingest worker, no error');
is($node->safe_psql('postgres', "SELECT count(*) FROM logagg.rejected"), '0', 'nothing rejected');

$node->stop;
done_testing();
