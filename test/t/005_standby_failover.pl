# A streaming standby of a logagg server, and a failover to it.  On the
# standby the workers do not run (they start once recovery is finished:
# nothing may be written there, and the ingest port is the primary's job),
# while the logs replicate.  When the primary dies and the standby is
# promoted, the workers start on it, and a durable stream resumes there
# exactly where the old primary committed it; with synchronous replication
# every acked record is there: no record lost, none twice.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run ();
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;

my $primary = new_node('failover_primary', "logagg.dispatch_workers = 1\n", allows_streaming => 1);
start_with_extension($primary);
my $token = $primary->safe_psql('postgres', "SELECT logagg.create_source('svc-f')");

sub emit
{
	my ($node, $count) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ emitter_path(), '--url', "ws://127.0.0.1:$node->{logagg_port}/ingest", '--token', $token,
			'--stream', 'fo-1', '--count', $count, '--rate', 0, '--batch', 100, '--profile', 'c' ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(120));
	return $out;
}
like(emit($primary, 3000), qr/acked 3000 /, 'the primary took 3000 records on stream fo-1');

$primary->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('failover_standby');
$standby->init_from_backup($primary, 'b', has_streaming => 1);
# its own ingest and reader ports: both servers run on this machine
$standby->{logagg_port} = PostgreSQL::Test::Cluster::get_free_port();
$standby->{reader_port} = PostgreSQL::Test::Cluster::get_free_port();
$standby->append_conf('postgresql.conf',
	"logagg.port = $standby->{logagg_port}\nlogagg.reader_port = $standby->{reader_port}\n");
$standby->start;
$primary->wait_for_catchup($standby);

is($standby->safe_psql('postgres', "SELECT count(*) FROM logagg.logs WHERE stream = 'fo-1'"), '3000',
	'the logs replicate to the standby');
is($standby->safe_psql('postgres', 'SELECT count(*) FROM logagg.status() WHERE pid IS NOT NULL'), '0',
	'no logagg worker runs on the standby');
my ($out, $err) = ('', '');
IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', "http://127.0.0.1:$standby->{logagg_port}/healthz" ],
	'>', \$out, '2>', \$err, IPC::Run::timeout(30));
is($out, '000', 'the standby does not listen for ingest');
unlike(slurp_file($standby->logfile), qr/logagg.*(ERROR|FATAL)|read-only transaction/,
	'no logagg error in the standby\'s log');

# synchronous replication: an ack now also means "on the standby"
$primary->append_conf('postgresql.conf', "synchronous_standby_names = '*'\n");
$primary->reload;
ok($primary->poll_query_until('postgres', "SELECT sync_state = 'sync' FROM pg_stat_replication"),
	'the standby is synchronous');
like(emit($primary, 2000), qr/acked 2000 /, 'the primary took 2000 more, acked after the standby had them');

# the primary dies at once (no waiting for the standby); the standby takes over
$primary->stop('immediate');
$standby->promote;
is($standby->safe_psql('postgres', "SELECT count(*) FROM logagg.logs WHERE stream = 'fo-1'"), '5000',
	'every acked record is on the promoted standby');
wait_workers_ready($standby);
like(emit($standby, 2000), qr/acked 2000 /, 'after the promotion the stream goes on at the new primary');
is( $standby->safe_psql('postgres',
		"SELECT count(*) || ' ' || count(DISTINCT seq) || ' ' || min(seq) || ' ' || max(seq) FROM logagg.logs WHERE stream = 'fo-1'"),
	'7000 7000 1 7000', 'the stream holds seq 1..7000, each once');
is($standby->safe_psql('postgres', "SELECT last_seq FROM logagg.streams WHERE stream_id = 'fo-1'"), '7000',
	'its resume point is 7000');
done_testing();
