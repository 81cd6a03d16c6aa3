# 617_long_search_retention.pl -- a long search never holds up ingest
# through retention: dropping a partition takes ACCESS EXCLUSIVE on
# logagg.logs, which waits for every transaction that read it, and every
# insert would queue behind that wait (for as long as the search, or an
# analyst's open transaction, lasts).  Retention waits at most 100 ms for
# it, keeps the partition with a WARNING (the maintenance worker tries
# again a minute later), and ingest goes on; once the search is over, the
# partitions are dropped.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use LogaggTest;

my $node = new_node('long_search_retention', qq{
logagg.dispatch_workers = 0
logagg.max_ts_past = -1
});
start_with_extension($node);
my $port = $node->{logagg_port};

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $token = sql(q{SELECT logagg.create_source('svc-http')});
# two partitions ten days old, with rows, well past a one-day retention
is(sql(q{SELECT logagg._create_partitions(now() - interval '10 days')}), '2', 'two old partitions');
sql(q{SELECT logagg.ingest(jsonb_agg(jsonb_build_object('source', 'svc', 'message', 'old ' || i,
        'ts', now() - interval '10 days')))
        FROM generate_series(1, 100) i});
my $old = q{SELECT count(*) FROM logagg.partitions WHERE NOT is_default AND range_end <= now() - interval '1 day'};
is(sql($old), '2', 'they are older than the retention');

# a search in progress: its transaction holds ACCESS SHARE on logs
my $reader = $node->background_psql('postgres');
$reader->query_safe('BEGIN');
is($reader->query_safe(q{SELECT count(*) FROM logagg.logs WHERE message LIKE 'old %'}), '100',
	'a search is in progress');

# retention (as the maintenance worker runs it) while the search runs; ingest meanwhile
my $maint = $node->background_psql('postgres');
$maint->query_until(qr/started/, qq{\\echo started\nSELECT logagg._drop_expired_partitions(86400, false, 3600);\n});
my $res = HTTP::Tiny->new(timeout => 10)->post("http://127.0.0.1:$port/ingest",
	{ headers => { Authorization => "Bearer $token" }, content => qq({"message":"posted during the search"}\n) });
is($res->{status}, 200, 'ingest stores a record while retention meets the search (POST /ingest)');
$maint->query('SELECT 1');    # the retention attempt is over (its WARNING is checked below)
is(sql(q{SELECT count(*) FROM logagg.logs WHERE message = 'posted during the search'}), '1', 'it is committed');

my ($ret, $out, $err) = $node->psql('postgres',
	q{SET statement_timeout = '10s'; SELECT logagg._drop_expired_partitions(86400, false, 3600)});
is($out, '0', 'retention drops nothing while the search runs');
like($err, qr/WARNING:  logagg: retention keeps partition \S+ for now: transactions that read logagg.logs are still open/,
	'with a WARNING per partition');
like($err, qr/HINT:  The maintenance worker tries again within a minute/, 'and a HINT');
is(sql($old), '2', 'both old partitions are still there');
is(sql(q{SELECT count(*) FROM logagg.logs WHERE message LIKE 'old %'}), '100', 'with their rows');

# the search ends: the next pass drops both, and leaves lock_timeout as it was
$reader->query_safe('COMMIT');
is(sql(q{SET lock_timeout = '7s'; SELECT logagg._drop_expired_partitions(86400, false, 3600); SHOW lock_timeout}),
	"2\n7s", 'once the search is over both partitions are dropped; lock_timeout is restored');
is(sql($old), '0', 'no partition older than the retention is left');
is(sql(q{SELECT count(*) FROM logagg.logs WHERE message = 'posted during the search'}), '1',
	'the record posted during the search is still there');

$reader->quit;
$maint->quit;
$node->stop;
done_testing();
