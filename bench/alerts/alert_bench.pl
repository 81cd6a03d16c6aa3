# alert_bench.pl — alert engine benchmarks (run with bench/alerts/run.sh).
#  1. latency from ingest commit to receipt at the webhook receiver, idle:
#     one critical record at a time through logagg.ingest(), each with its
#     own fingerprint; commit time = clock_timestamp() at the end of the
#     ingesting statement (autocommit), receipt = receiver's clock.
#  2. the same under ingest load: logagg-emit processes streaming profile-a
#     records through the WebSocket meanwhile (target 50k records/s).
#  3. delivery throughput: N alerts with distinct fingerprints queued in one
#     transaction; notifications/s until alert_log has them all delivered.
use strict;
use warnings;
use JSON::PP;
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(time usleep);
use LogaggTest;

# PostgreSQL::Test::Utils sends STDOUT to the regress log; results also go
# to the terminal through this handle
open(my $tty, '>&', \*STDERR) or die;
BEGIN { open(our $REAL_STDOUT, '>&', \*STDOUT) or die; }
sub say_result { my $l = sprintf(shift, @_); print $l; print {$main::REAL_STDOUT} $l; }
use AlertReceivers;

my $N_LAT = $ENV{N_LAT} // 200;
my $N_TPUT = $ENV{N_TPUT} // 20000;
my $LOAD_RATE = $ENV{LOAD_RATE} // 50000;
# TPUT_RUNS: throughput runs (reported one by one); PERF=1: perf record -g
# the dispatch workers during the first throughput run (perf-dispatch.data
# in the bench's TESTDIR); SKIP_LAT=1: throughput only
my $TPUT_RUNS = $ENV{TPUT_RUNS} // 1;
my $PERF = $ENV{PERF} // 0;
my $SKIP_LAT = $ENV{SKIP_LAT} // 0;

my $node = new_node('alert_bench', "logagg.dispatch_workers = 2\nlogagg.dispatch_concurrency = 32\nlog_statement = none\n" . ($ENV{EXTRA_CONF} // ''));
start_with_extension($node);
my $r = AlertReceivers::http_receiver($node);
$node->safe_psql('postgres', qq{
SELECT logagg.add_destination('hook', 'webhook', '{"url": "$r->{url}/hook", "secret": "bench"}');
SELECT logagg.add_route('hook', 'critical', NULL, '1 min');
UPDATE logagg.routes SET max_notifications = NULL;  -- every distinct alert is measured
});

sub pct
{
	my ($p, @v) = @_;
	@v = sort { $a <=> $b } @v;
	return $v[ int($p / 100 * $#v + 0.5) ];
}

# a psql session we feed one statement at a time
my ($in, $out, $err) = ('', '', '');
my $psql = IPC::Run::start([ 'psql', '-XAtq', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err);

sub latency_run
{
	my ($label, $n) = @_;
	my @lat;
	for my $i (1 .. $n)
	{
		(my $tag = $label) =~ s/\W+/-/g;
		my $src = "lat-$tag-$i";
		$out = '';
		$in .= qq{SELECT logagg.ingest('{"source":"$src","status":500,"message":"probe"}'), extract(epoch FROM clock_timestamp());\n};
		$psql->pump until $out =~ /\n/;
		my (undef, $commit) = split /\|/, (split /\n/, $out)[0];
		my @recs = AlertReceivers::wait_records($r, sub { grep { $_->{body} =~ /"$src"/ } @_ }, 30);
		my ($rec) = grep { $_->{body} =~ /"$src"/ } @recs;
		die "probe $src not received" unless $rec;
		push @lat, ($rec->{t_recv} - $commit) * 1000;
		usleep(20_000);
	}
	say_result "%-28s n=%d p50=%.1f ms p99=%.1f ms max=%.1f ms\n", $label, $n,
	  pct(50, @lat), pct(99, @lat), pct(100, @lat);
	return (pct(50, @lat), pct(99, @lat));
}

unless ($SKIP_LAT) {
latency_run('latency idle', $N_LAT);

# ---- under ingest load ----
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('service-a')");
my @emit;
my $per = int($LOAD_RATE / 2);
for my $k (1 .. 2)
{
	my ($o, $e) = ('', '');
	push @emit, [ IPC::Run::start([ emitter_path(), '--url', "ws://127.0.0.1:$node->{logagg_port}/ingest",
		'--token', $token, '--profile', 'a', '--rate', $per, '--batch', '200',
		'--duration', 3600, '--quiet' ], '>', \$o, '2>', \$e), \$o ];
}
sleep 3;
my $rows0 = $node->safe_psql('postgres', 'SELECT count(*) FROM logagg.logs');
my $t0 = time();
latency_run('latency under ingest load', $N_LAT);
my $rows1 = $node->safe_psql('postgres', 'SELECT count(*) FROM logagg.logs');
my $rate = ($rows1 - $rows0) / (time() - $t0);
say_result "%-28s %.0f records/s stored during the probes (target %d)\n", 'ingest load', $rate, $LOAD_RATE;
for my $e (@emit) { $e->[0]->signal('INT'); eval { $e->[0]->finish; }; }
}

# ---- delivery throughput, distinct fingerprints ----
$node->safe_psql('postgres', q{DELETE FROM logagg.routes; DELETE FROM logagg.alert_queue;});
$node->safe_psql('postgres', q{SELECT logagg.add_route('hook', 'critical', 'tput', '1 min');
	UPDATE logagg.routes SET max_notifications = NULL});
for my $run (1 .. $TPUT_RUNS)
{
	my $before = $node->safe_psql('postgres', "SELECT count(*) FROM logagg.alert_log WHERE outcome = 'delivered'");
	my $perf;
	if ($PERF && $run == 1)
	{
		my $pids = $node->safe_psql('postgres',
			"SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE backend_type LIKE 'logagg dispatch%'");
		my ($po, $pe) = ('', '');
		$perf = IPC::Run::start([ 'perf', 'record', '-g', '-o', "$ENV{TESTDIR}/perf-dispatch.data", '-p', $pids ],
			'>', \$po, '2>', \$pe);
		sleep 1;
	}
	my $ts = time();
	$node->safe_psql('postgres', qq{
SELECT logagg._enqueue_alerts(jsonb_agg(jsonb_build_object(
  'severity', 'critical', 'source', 'tput', 'fingerprint', 'fp$run-' || i, 'status', 500,
  'level', 'error', 'message', 'throughput $run ' || i, 'count', 1)))
FROM generate_series(1, $N_TPUT) i});
	$node->safe_psql('postgres', 'ANALYZE logagg.alert_queue') if $ENV{ANALYZE_QUEUE};
	my $tq = time();
	if ($ENV{PROGRESS})
	{
		my @p;
		while (1)
		{
			my ($c, $av) = split /\|/, $node->safe_psql('postgres',
				"SELECT (SELECT count(*) FROM logagg.alert_log WHERE outcome = 'delivered'), "
				. "(SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'autovacuum worker')");
			$c -= $before;
			push @p, sprintf("%.1f:%d%s", time() - $tq, $c, $av ? "(av$av)" : '');
			last if $c >= $N_TPUT;
			usleep(500_000);
		}
		say_result "progress #$run: @p\n";
	}
	$node->poll_query_until('postgres',
		"SELECT count(*) >= $before + $N_TPUT FROM logagg.alert_log WHERE outcome = 'delivered'")
	  or die "throughput run did not finish";
	my $te = time();
	if ($perf) { $perf->signal('INT'); eval { $perf->finish; }; }
	my @recs = grep { $_->{body} =~ /"throughput $run / } AlertReceivers::records($r);
	say_result "%-28s %d notifications in %.2f s = %.0f notifications/s (queueing took %.2f s; receiver got %d)\n",
	  "delivery throughput #$run", $N_TPUT, $te - $tq, $N_TPUT / ($te - $tq), $tq - $ts, scalar(@recs);
}

$in .= "\\q\n";
$psql->finish;
$node->stop;
