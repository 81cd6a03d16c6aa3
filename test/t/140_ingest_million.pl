# 140_ingest_million.pl -- one logagg-emit run of
# 1,000,000 records as fast as acks allow (--rate 0, 500 records a frame)
# exits 0, and logagg.logs then holds exactly 1,000,000 rows, each with
# the severity logagg.classify() gives for its status and level.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run timeout);
use Time::HiRes qw(time);
use LogaggTest;

my $n = 1_000_000;
my $node = new_node('ingest_million', "logagg.dispatch_workers = 0\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('service-a')");

my ($out, $err) = ('', '');
my $t0 = time();
# bounded: a run that hangs or crawls is killed after 150 s and fails below
my $ok = eval {
	run([ emitter_path(), '--url', "ws://127.0.0.1:$port/ingest", '--token', $token,
			'--profile', 'a', '--count', $n, '--rate', '0', '--batch', '500',
			'--give-up-after', '30' ],
		'>', \$out, '2>', \$err, timeout(150));
	1;
};
my $rc = $ok ? $? >> 8 : -1;
my $secs = time() - $t0;
diag(sprintf("emitter: %s (%.1f s wall)", $out =~ s/\n//r, $secs));
is($rc, 0, 'logagg-emit --count 1000000 --rate 0 --batch 500 exits 0') or diag($@ . $err);
like($out, qr/^sent $n acked $n rejected 0 /m, 'its summary: every record sent was acked');

# one pass over the table: the row count and per-row classification
is($node->safe_psql('postgres', q{
SELECT count(*) || ',' ||
       count(*) FILTER (WHERE severity IS DISTINCT FROM logagg.classify(status, level, source, message))
  FROM logagg.logs}),
	"$n,0", 'logagg.logs holds exactly 1,000,000 rows, each with the severity logagg.classify() gives');

# the classification check is not vacuous: the profile mixes severities
my %sev = split /[|\n]/, $node->safe_psql('postgres',
	"SELECT severity, count(*) FROM logagg.logs GROUP BY 1");
ok(($sev{critical} // 0) > 10000 && ($sev{high} // 0) > 1000 && ($sev{low} // 0) > 500000,
	'profile a yields critical, high and low rows')
  or diag(explain \%sev);
is($node->safe_psql('postgres', "SELECT count(*) FROM logagg.rejected"), '0', 'nothing rejected');
is($node->safe_psql('postgres',
		"SELECT rows_stored || ',' || coalesce(last_error, '') FROM logagg.status() WHERE kind = 'ingest'"),
	"$n,", 'status(): the ingest worker counted 1,000,000 rows and no error');

$node->stop;
done_testing();
