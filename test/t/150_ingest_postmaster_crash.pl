# 150_ingest_postmaster_crash.pl -- exactly-once
# across a crash of the whole server.  While logagg-emit streams 300,000
# records on one durable stream as fast as acks allow, the postmaster is
# stopped with "pg_ctl -m immediate" (no shutdown checkpoint, every backend
# killed: crash recovery on the next start) and started again.  The emitter
# reconnects to the same port, resumes from the stream's committed seq and
# resends what was not acked; it must exit 0 and the stream must hold seqs
# 1..300000 exactly once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(start finish timeout);
use Time::HiRes qw(time usleep);
use LogaggTest;

my $n = 300_000;
my $stream = 'crash-S';
my $node = new_node('ingest_pm_crash', "logagg.dispatch_workers = 0\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-crash')");

sub stored
{
	return $node->safe_psql('postgres', "SELECT count(*) FROM logagg.logs WHERE stream = '$stream'");
}

my ($out, $err) = ('', '');
my $t0 = time();
# --give-up-after is left at its default (60 s): the restart takes a few
my $h = start([ emitter_path(), '--url', "ws://127.0.0.1:$port/ingest", '--token', $token,
		# 100,000 records/s: fast, yet the run lasts ~3 s, so the crash
		# below surely comes before the emitter is done (unpaced, a quiet
		# machine stores the 240,000 left in about a second)
		'--stream', $stream, '--count', $n, '--rate', '100000', '--profile', 'b' ],
	'>', \$out, '2>', \$err, timeout(180));

my $before = 0;
ok(poll_until(sub { $before = stored(); $before >= 60_000 }, 90),
	'streaming is under way before the crash');
cmp_ok($before, '<', $n - 50_000, "the crash comes mid-run ($before rows stored)");

$node->stop('immediate');
my $down = time();
usleep(500_000);    # let the emitter notice and start its reconnect backoff
$node->start;
wait_workers_ready($node);
diag(sprintf('server down and back in %.1f s', time() - $down));

my $finished = eval { finish($h); 1 };
my $rc = $finished ? $? >> 8 : -1;
diag(sprintf("emitter: %s (%.1f s wall)", $out =~ s/\n//r, time() - $t0));
is($rc, 0, 'the emitter exits 0 after the server crash and restart') or diag($@ . $err);
like($out, qr/^sent $n acked $n rejected 0 /m, 'its summary: all 300000 acked');

is($node->safe_psql('postgres',
		"SELECT count(*) || ',' || count(DISTINCT seq) || ',' || min(seq) || ',' || max(seq) FROM logagg.logs WHERE stream = '$stream'"),
	"$n,$n,1,$n", 'the stream holds exactly 300000 rows with 300000 distinct seqs 1..300000');
is($node->safe_psql('postgres', "SELECT last_seq FROM logagg.streams WHERE stream_id = '$stream'"),
	$n, 'streams.last_seq is 300000');
is($node->safe_psql('postgres', "SELECT count(*) FROM logagg.rejected"), '0', 'nothing rejected');
like(slurp_file($node->logfile), qr/database system was not properly shut down; automatic recovery in progress/,
	'the restart went through crash recovery (the stop was a real crash)');
# shared memory was re-created by the restart, so these count only what
# happened after it: the emitter reconnected and the rest of the stream
# came through the new worker
my ($conns, $rows) = split /,/, $node->safe_psql('postgres',
	"SELECT (counters->>'connections_total') || ',' || rows_stored FROM logagg.status() WHERE kind = 'ingest'");
cmp_ok($conns, '>=', 1, 'the emitter reconnected to the restarted server on the same port');
cmp_ok($rows, '>', 0, 'the rest of the stream was stored by the new ingest worker');
cmp_ok($rows, '<=', $n - $before, 'and none of the rows stored before the crash was stored again');

$node->stop;
done_testing();
