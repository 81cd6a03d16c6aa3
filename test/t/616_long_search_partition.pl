# 616_long_search_partition.pl -- a long search never holds up ingest
# through partition maintenance: creating a partition takes ACCESS
# EXCLUSIVE on logagg.logs, which waits for every transaction that read
# it (a search running for seconds), and every insert would queue behind
# that wait.  Partition creation waits at most 100 ms for it, gives up
# with a WARNING (the maintenance worker tries again a minute later), and
# ingest goes on; once the search is over, the partition is made.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use LogaggTest;

my $node = new_node('long_search_partition', qq{
logagg.dispatch_workers = 0
});
start_with_extension($node);
my $port = $node->{logagg_port};

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $token = sql(q{SELECT logagg.create_source('svc-http')});
sql(q{SELECT logagg.ingest(jsonb_agg(jsonb_build_object('source', 'svc', 'message', 'record ' || i)))
        FROM generate_series(1, 200) i});
my $future = q{now() + interval '5 days'};
my $before = sql('SELECT count(*) FROM logagg.partitions');

# a search in progress: its transaction holds ACCESS SHARE on logs
my $reader = $node->background_psql('postgres');
$reader->query_safe('BEGIN');
is($reader->query_safe(q{SELECT count(*) FROM logagg.search('record', since => NULL, lim => 1000)}), '200',
	'a search is in progress');

# partition creation (as the maintenance worker does it at the start of
# an interval) while the search runs; ingest meanwhile
my $maint = $node->background_psql('postgres');
$maint->query_until(qr/started/, qq{\\echo started\nSELECT logagg._create_partitions($future);\n});
my $res = HTTP::Tiny->new(timeout => 10)->post("http://127.0.0.1:$port/ingest",
	{ headers => { Authorization => "Bearer $token" }, content => qq({"message":"posted during the search"}\n) });
is($res->{status}, 200, 'ingest stores a record while partition creation meets the search (POST /ingest)');
$maint->query('SELECT 1');    # the creation attempt is over (its WARNING is checked below)
is(sql(q{SELECT count(*) FROM logagg.logs WHERE message = 'posted during the search'}), '1', 'it is committed');

my ($ret, $out, $err) = $node->psql('postgres',
	qq{SET statement_timeout = '10s'; SELECT logagg._create_partitions($future)});
is($out, '0', 'partition creation gives up while the search runs');
like($err, qr/WARNING:  partition \S+ of logagg.logs not created now: transactions that read logagg.logs are still open/,
	'with a WARNING');
like($err, qr/HINT:  The maintenance worker tries again within a minute/, 'and a HINT');
is(sql('SELECT count(*) FROM logagg.partitions'), $before, 'no partition was made');
is(sql(q{SHOW lock_timeout}), '0', 'lock_timeout of the session is untouched');

# the search ends: the next attempt makes both partitions, and leaves
# lock_timeout as it was
$reader->query_safe('COMMIT');
is(sql(qq{SET lock_timeout = '7s'; SELECT logagg._create_partitions($future); SHOW lock_timeout}), "2\n7s",
	'once the search is over the partitions are made; lock_timeout is restored');
is(sql('SELECT count(*) FROM logagg.partitions'), $before + 2, 'two more partitions');

$reader->quit;
$maint->quit;
$node->stop;
done_testing();
