# 170_ingest_concurrent.pl -- 1,000 concurrent
# WebSocket connections, all open at once, all sending at the same moment,
# are all served and acked; the ingest worker's memory stays bounded and
# goes back down when they leave.
#
# Memory is read from /proc/PID/status of the ingest worker: VmRSS/VmHWM
# (which also count shared_buffers pages the process has touched, so they
# grow with every row written until shared_buffers is covered) and RssAnon
# (the process's private memory: connections, queues, batches), on which
# the bounds are asserted.  Two rounds show that nothing accumulates per
# connection.  The figures go to the test log (diag) and bench/RESULTS.md.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(start pump finish timeout run);
use LogaggTest;

my $nconn = 1000;
my ($frames, $per_frame) = (5, 20);
my $per_round = $nconn * $frames * $per_frame;

# 1,000 clients + room for our own probes; the worker raises its open-file
# soft limit itself (the postmaster's is often 1024)
my $node = new_node('ingest_many', "logagg.dispatch_workers = 0\nlogagg.max_connections = 1100\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-many')");
my $pid = $node->safe_psql('postgres', "SELECT pid FROM logagg.status() WHERE kind = 'ingest'");

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub mem
{
	my %m;
	open my $fh, '<', "/proc/$pid/status" or die "cannot read /proc/$pid/status: $!";
	while (<$fh>) { $m{$1} = $2 if /^(VmRSS|VmHWM|RssAnon|RssShmem):\s+(\d+) kB/; }
	close $fh;
	return \%m;
}
sub fmt { my $m = shift; return sprintf('VmRSS %d kB, VmHWM %d kB, RssAnon %d kB, RssShmem %d kB', @$m{qw(VmRSS VmHWM RssAnon RssShmem)}); }

my ($fd_soft) = slurp_file("/proc/$pid/limits") =~ /^Max open files\s+(\d+)/m;
cmp_ok($fd_soft, '>=', 1100, "the ingest worker's open-file soft limit ($fd_soft) fits 1,000 connections");

# warm up caches, tokens and the batch path with one small run
my ($eo, $ee) = ('', '');
run([ emitter_path(), '--url', "ws://127.0.0.1:$port/ingest", '--token', $token, '--count', '2000',
		'--batch', '20', '--give-up-after', '20' ], '>', \$eo, '2>', \$ee, timeout(60));
is($? >> 8, 0, 'warm-up run acked') or diag($ee);
my $base = mem();
diag('baseline: ' . fmt($base));

my @after;
for my $round (1, 2)
{
	my ($in, $out, $err) = ('', '', '');
	my $h = start([ '/usr/bin/python3', src_dir() . '/test/clients/ws_many.py',
			"ws://127.0.0.1:$port/ingest", $token, $nconn, $frames, $per_frame ],
		'<', \$in, '>', \$out, '2>', \$err, timeout(120));
	eval { pump $h until $out =~ /^acked .*\n/m; 1 } or diag("ws_many: $@ $out $err");
	like($out, qr/^opened $nconn failed 0 /m, "round $round: $nconn connections open at once");
	like($out, qr/^acked $nconn records $per_round errors 0 /m,
		"round $round: all $nconn sent at once and every record was acked") or diag($err);
	is(sql("SELECT connections FROM logagg.status() WHERE kind = 'ingest'"), $nconn,
		"round $round: status() shows $nconn open connections");
	my $peak = mem();
	diag("round $round, $nconn connections open: " . fmt($peak));
	my ($open_s) = $out =~ /^opened \d+ failed \d+ ([\d.]+)/m;
	my ($ack_s) = $out =~ /^acked .* ([\d.]+)$/m;
	diag("round $round: opened in $open_s s, $per_round records acked in $ack_s s");

	$in .= "close\n";
	eval { pump $h until $out =~ /^closed/m; finish($h); 1 } or diag("ws_many: $@ $err");
	ok(poll_until(sub { sql("SELECT connections FROM logagg.status() WHERE kind = 'ingest'") eq '0' }, 30),
		"round $round: all connections gone");
	# let the worker run a loop round after the last close (it trims the heap then)
	run([ '/usr/bin/python3', src_dir() . '/test/clients/ws_probe.py', "ws://127.0.0.1:$port",
			"upgrade:x:/ingest:$token" ], '>', \my $po, timeout(30));
	my $post = mem();
	push @after, $post;
	diag("round $round, after close: " . fmt($post));

	cmp_ok($peak->{RssAnon} - $base->{RssAnon}, '<', 200 * 1024,
		"round $round: private memory with $nconn connections stays under baseline + 200 MB");
	cmp_ok($post->{RssAnon} - $base->{RssAnon}, '<', 16 * 1024,
		"round $round: private memory returns to within 16 MB of baseline after they close");
}
cmp_ok($after[1]{RssAnon} - $after[0]{RssAnon}, '<', 4 * 1024,
	'no growth from round 1 to round 2 (nothing kept per connection)');

is(sql("SELECT count(*) || ',' || count(DISTINCT attrs->>'conn') FROM logagg.logs WHERE attrs ? 'conn'"),
	(2 * $per_round) . ",$nconn", "every record of every connection is stored ($per_round per round)");
is(sql("SELECT pid || ',' || coalesce(last_error, '') FROM logagg.status() WHERE kind = 'ingest'"), "$pid,",
	'the same worker throughout, no error');

$node->stop;
done_testing();
