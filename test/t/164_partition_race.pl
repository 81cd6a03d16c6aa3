# 164_partition_race.pl -- partition creation is safe under concurrency.
#
# Right after CREATE EXTENSION the maintenance worker and a
# logagg.maintain() call both create today's partitions; two sessions may
# also create the same future partitions at once.  None of them may fail
# (the second waits for the first and finds the partitions made).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use LogaggTest;

# the test counts partitions by UTC day
clear_of_day_boundary(120);

my $node = new_node('partition_race', qq{
logagg.dispatch_workers = 0
});
$node->start;

# the worker waits for the extension and creates partitions as soon as it
# sees it; maintain() runs at the same moment (psql runs each statement in
# its own transaction)
my @errors;
for my $round (1 .. 4)
{
	my ($ret, $stdout, $stderr) = $node->psql('postgres',
		'CREATE EXTENSION logagg; SELECT logagg.maintain(); SELECT logagg.maintain();');
	push @errors, "round $round: $stderr" if $ret != 0 || $stderr ne '';
	$node->poll_query_until('postgres',
		"SELECT count(*) > 0 AND bool_and(ready) FROM logagg.status() WHERE kind = 'maintenance'")
	  or die 'maintenance worker not ready';
	$node->safe_psql('postgres', 'DROP EXTENSION logagg CASCADE') if $round < 4;
}
is(join("\n", @errors), '', 'CREATE EXTENSION then maintain() while the worker starts: never an error');
cmp_ok($node->safe_psql('postgres', 'SELECT count(*) FROM logagg.partitions WHERE NOT is_default'), '>=', 2,
	'the current and next partitions exist');

# two sessions creating the same 20 future days at once, committing each
my $loop = q{
DO $$
BEGIN
    FOR i IN 1..20 LOOP
        PERFORM logagg._create_partitions(now() + make_interval(days => 10 + i));
        PERFORM logagg.maintain();
        COMMIT;
    END LOOP;
END $$;
};
my @h;
my @out = ('', '');
my @err = ('', '');
for my $i (0, 1)
{
	push @h, IPC::Run::start([ 'psql', '-X', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $loop ],
		'>', \$out[$i], '2>', \$err[$i], IPC::Run::timeout(120));
}
my @rc = map { $_->finish ? 0 : 1 } @h;
is("@rc", '0 0', 'both sessions finished without an error');
is("$err[0]$err[1]", '', 'no error message');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM logagg.partitions
WHERE NOT is_default AND range_start >= date_trunc('day', now() + interval '11 days', 'UTC')
  AND range_start < date_trunc('day', now() + interval '32 days', 'UTC')}), '21',
	'each future day has exactly one partition');
is($node->safe_psql('postgres', q{
SELECT count(*) FROM pg_inherits i
WHERE i.inhparent = 'logagg.logs'::regclass
  AND (SELECT count(*) FROM pg_index x WHERE x.indrelid = i.inhrelid) <> 2}), '0',
	'every partition has its two indexes');
like($node->safe_psql('postgres', "SELECT coalesce(last_error, 'none') FROM logagg.status() WHERE kind = 'maintenance'"),
	qr/^none$/, 'the maintenance worker recorded no error');
done_testing();
