# 700_citus_cluster.pl -- logagg on a three-node Citus cluster (a
# coordinator and two worker nodes, on this machine's sockets).
#
# - CREATE EXTENSION logagg, propagated by Citus, succeeds on a node where
#   logagg is preloaded and on one where it is not (which says what needs
#   preloading);
# - logagg.distribute() makes logagg.logs distributed (idempotent);
# - records streamed through the coordinator's and a worker node's ingest
#   ports are all in logagg.logs on the coordinator, exactly once, across a
#   SIGKILL of the worker node's ingest worker and an immediate restart of
#   that node while it streams;
# - an alert-worthy record ingested on the worker node gives exactly one
#   notification, sent by the coordinator;
# - partitions are the coordinator's: the worker nodes make none.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(start finish timeout);
use Time::HiRes qw(time usleep);
use LogaggTest;
use AlertReceivers;

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
plan skip_all => "Citus is not installed in $pkglibdir (scripts/install-citus.sh builds it)"
  unless -f "$pkglibdir/citus.so";

my $citus_conf = qq{
shared_preload_libraries = 'citus,logagg'
max_prepared_transactions = 50
citus.log_remote_commands = off
};
my $coord = new_node('citus_coord', $citus_conf . "logagg.dispatch_workers = 1\n");
my $w1 = new_node('citus_w1', $citus_conf . "logagg.dispatch_workers = 1\n");
my $w2 = new_node('citus_w2', "shared_preload_libraries = 'citus'\nmax_prepared_transactions = 50\n");
$_->start for ($coord, $w1, $w2);
$_->safe_psql('postgres', 'CREATE EXTENSION citus') for ($coord, $w1, $w2);
$coord->safe_psql('postgres', sprintf(q{
SELECT citus_set_coordinator_host('%s', %d);
SELECT citus_add_node('%s', %d);
SELECT citus_add_node('%s', %d);
}, $coord->host, $coord->port, $w1->host, $w1->port, $w2->host, $w2->port));

# --- CREATE EXTENSION on every node, preloaded or not ---
$coord->safe_psql('postgres', 'CREATE EXTENSION logagg');
is($_->safe_psql('postgres', "SELECT extversion FROM pg_extension WHERE extname = 'logagg'"),
	$coord->safe_psql('postgres', "SELECT default_version FROM pg_available_extensions WHERE name = 'logagg'"),
	$_->name . ': Citus created logagg there') for ($w1, $w2);
my ($rc, $out, $err) = $w2->psql('postgres', "SELECT logagg.normalize_level('warning')");
is($out, 'warn', 'on the node without logagg preloaded its SQL functions work');
like($err, qr/logagg is not in shared_preload_libraries: its ingest, dispatch and maintenance workers do not run on this server/,
	'and loading it there says which features need preloading');
wait_workers_ready($_) for ($coord, $w1);
is($w1->safe_psql('postgres', 'SELECT logagg._node_role()'), 'worker', 'w1 knows it is a worker node');
is($coord->safe_psql('postgres', 'SELECT logagg._node_role()'), 'coordinator', 'and the coordinator knows it too');

# --- distribute ---
like($coord->safe_psql('postgres', 'SELECT logagg.distribute(8)'),
	qr/^distributed: logagg_owner LOGIN, logs, streams, _sync_seen, _alert_inbox, sources, source_writers, rules, _alert_threshold$/,
	'logagg.distribute() distributes logs and the tables every node reads');
is($coord->safe_psql('postgres', 'SELECT logagg.distribute(8)'), 'logagg is already distributed',
	'and is idempotent');
is($coord->safe_psql('postgres',
		"SELECT partmethod::text || ',' || column_to_column_name(logicalrelid, partkey) FROM pg_dist_partition WHERE logicalrelid = 'logagg.logs'::regclass"),
	'h,source', 'logagg.logs is hash-distributed by source');
my ($rc2, undef, $err2) = $w1->psql('postgres', 'SELECT logagg.distribute()');
like($err2, qr/logagg.distribute\(\) runs on the coordinator/, 'distribute() refuses to run on a worker node');

# --- alerts: a route on the coordinator to a recording receiver ---
my $rcv = AlertReceivers::http_receiver($coord);
$coord->safe_psql('postgres', qq{
SELECT logagg.add_destination('hook', 'webhook', jsonb_build_object('url', '$rcv->{url}/alerts'));
SELECT logagg.add_route('hook', 'high', NULL, '1 min');
-- the streams below carry many alert-worthy records: no storm guard, so
-- that the probe's alert is sent on its own rather than in a digest
UPDATE logagg.routes SET max_notifications = NULL;
});
ok(poll_until(sub { $w1->safe_psql('postgres', 'SELECT min_severity FROM logagg._alert_threshold') eq 'high' }, 30),
	'the routes\' threshold reaches the worker node');

my $tok_a = $coord->safe_psql('postgres', "SELECT logagg.create_source('svc-coord')");
my $tok_b = $coord->safe_psql('postgres', "SELECT logagg.create_source('svc-worker')");

# --- exactly once through both nodes, across a kill and a restart of w1 ---
my $n = 30_000;
sub emitter
{
	my ($node, $token, $stream, $out) = @_;
	return start([ emitter_path(), '--url', "ws://127.0.0.1:$node->{logagg_port}/ingest", '--token', $token,
			'--stream', $stream, '--count', $n, '--rate', '5000', '--profile', 'c' ],
		'>', $out, '2>', \my $err, timeout(240));
}
sub stored
{
	my ($stream) = @_;
	# fails while w1 restarts (its shards are out of reach): not yet
	my ($rc, $out) = $coord->psql('postgres', "SELECT count(*) FROM logagg.logs WHERE stream = '$stream'");
	return $rc == 0 ? $out : -1;
}
my ($out_a, $out_b) = ('', '');
my $ha = emitter($coord, $tok_a, 'cl-coord', \$out_a);
my $hb = emitter($w1, $tok_b, 'cl-worker', \$out_b);

ok(poll_until(sub { stored('cl-worker') >= 5_000 }, 120), 'the worker node is storing its stream');
my $pid = $w1->safe_psql('postgres', "SELECT pid FROM logagg.status() WHERE kind = 'ingest'");
ok(kill('KILL', $pid), "SIGKILL to w1's ingest worker (pid $pid)");
ok(poll_until(sub { stored('cl-worker') >= 15_000 }, 120), 'the stream goes on after the kill');
$w1->stop('immediate');
usleep(300_000);
$w1->start;
wait_workers_ready($w1);

for ([ $ha, \$out_a, 'coordinator' ], [ $hb, \$out_b, 'worker node' ])
{
	my ($h, $o, $what) = @$_;
	my $ok = eval { finish($h); 1 };
	is($ok && ($? >> 8), 0, "the emitter through the $what exits 0") or diag($@);
	like($$o, qr/^sent $n acked $n rejected 0 /m, "all $n records acked through the $what");
}
for my $s ('cl-coord', 'cl-worker')
{
	is($coord->safe_psql('postgres',
			"SELECT count(*) || ',' || count(DISTINCT seq) || ',' || min(seq) || ',' || max(seq) FROM logagg.logs WHERE stream = '$s'"),
		"$n,$n,1,$n", "stream $s: $n rows on the coordinator, seqs 1..$n once each");
}
is($coord->safe_psql('postgres', 'SELECT count(*) = count(DISTINCT id) FROM logagg.logs'), 't',
	'row ids are unique across the nodes');
is($coord->safe_psql('postgres', "SELECT last_seq FROM logagg.streams WHERE stream_id = 'cl-worker'"), $n,
	"the worker node's stream resume point is visible on the coordinator");
is($w1->safe_psql('postgres', 'SELECT count(*) FROM logagg.rejected'), '0', 'nothing rejected on the worker node');
like(slurp_file($w1->logfile), qr/terminated by signal 9: Killed/, "w1's postmaster saw the ingest worker killed");

# --- per-source read restrictions stay a single-server feature ---
$coord->safe_psql('postgres', q{CREATE ROLE reader_a LOGIN; GRANT logagg_reader TO reader_a;});
my (undef, undef, $gerr) = $coord->psql('postgres', q{SELECT logagg.grant_source_read('reader_a', 'svc-coord')});
like($gerr, qr/per-source read restrictions are not supported on a distributed logagg.logs/,
	'grant_source_read is refused on a distributed logs rather than protecting nothing');

# --- one alert from the worker node, one notification ---
my $line = '{"level":"error","status":503,"message":"503 GET /pay cluster-alert-probe"}';
my $ack = `printf '%s' '$line' | curl -s -H 'Authorization: Bearer $tok_b' --data-binary \@- http://127.0.0.1:$w1->{logagg_port}/ingest`;
like($ack, qr/"accepted": 1/, 'a 503 record stored through the worker node');
ok(scalar(AlertReceivers::wait_records($rcv, sub { grep { ($_->{body} // '') =~ /cluster-alert-probe/ } @_ }, 30)),
	'a notification arrives');
ok(poll_until(sub {
	$coord->safe_psql('postgres', q{SELECT (SELECT count(*) FROM logagg._alert_inbox)
	  + (SELECT count(*) FROM logagg.alert_queue WHERE payload->>'message' LIKE '%cluster-alert-probe%')}) eq '0'
}, 30), 'nothing is left to send for it');
my @probe = grep { ($_->{body} // '') =~ /cluster-alert-probe/ } AlertReceivers::records($rcv);
is(scalar(@probe), 1, 'exactly one notification for it');
like($probe[0]{body} // '', qr/"source":\s*"svc-worker"/, 'naming the worker node\'s source');

# --- partitions are the coordinator's ---
is($w1->safe_psql('postgres', q{
	SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
	 WHERE i.inhparent = 'logagg.logs'::regclass AND c.relname !~ '_[0-9]+$'
	   AND NOT EXISTS (SELECT 1 FROM pg_dist_partition p WHERE p.logicalrelid = c.oid)}),
	'0', 'the worker node has no partitions of its own');
is($coord->safe_psql('postgres', q{
	SELECT logagg._create_partitions(now() + interval '3 days');
	SELECT count(*) FROM logagg.partitions p JOIN pg_dist_partition d ON d.logicalrelid = p.partition
	 WHERE p.range_start >= date_trunc('day', now() + interval '3 days', 'UTC')}),
	"2\n2", 'partitions the coordinator creates later are distributed too');
my ($mrc, undef, $merr) = $w1->psql('postgres', 'SELECT logagg.maintain()');
is($mrc, 0, 'maintain() on a worker node succeeds');
like($merr, qr/nothing to maintain on a Citus worker node/, 'and says the coordinator maintains');

$_->stop for ($w1, $w2, $coord);
done_testing();
