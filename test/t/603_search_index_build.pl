# 603_search_index_build.pl -- the maintenance worker builds the search
# index of a partition that holds rows without blocking ingest: while its
# CREATE INDEX CONCURRENTLY waits for an open transaction, records are still
# stored (SQL ingest and the ingest worker's POST /ingest) at once.  A
# build that is cancelled leaves an invalid index, which the next pass
# drops and builds again.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use LogaggTest;

my $node = new_node('search_index_build', qq{
logagg.dispatch_workers = 0
});
start_with_extension($node);
my $port = $node->{logagg_port};

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{
CREATE EXTENSION pg_trgm;
SELECT logagg.maintain();
SELECT logagg.ingest(jsonb_agg(jsonb_build_object('source', 'svc', 'message', 'existing record ' || i)))
  FROM generate_series(1, 2000) i;
});
my $token = sql(q{SELECT logagg.create_source('svc-http')});
my $part = sql(q{SELECT partition FROM logagg.partitions WHERE NOT is_default AND range_start <= now() AND range_end > now()});
# the worker builds newest partitions first: give tomorrow's (empty) its
# index now, so that the build under test is the one of the partition
# being written
my $next = sql(q{SELECT partition FROM logagg.partitions WHERE range_start > now() ORDER BY range_start LIMIT 1});
sql(qq{CREATE INDEX ${\ ($next =~ s/^logagg\.//r)}_message_trgm ON $next USING gin (message public.gin_trgm_ops)});

# a writer that has not committed yet (a long ingest batch, say): the
# concurrent build waits for it; a plain CREATE INDEX's SHARE lock would
# queue behind it and make every later insert queue behind itself
my $old = $node->background_psql('postgres');
$old->query_safe('BEGIN ISOLATION LEVEL REPEATABLE READ');
$old->query_safe(q{INSERT INTO logagg.logs (ts, source, severity, message) VALUES (now(), 'svc', 'low', 'uncommitted')});

$node->append_conf('postgresql.conf', "logagg.index_messages = on\n");
$node->reload;
$node->poll_query_until('postgres', q{SELECT current_setting('logagg.index_messages') = 'on'})
  or die 'setting not reloaded';
sql('SELECT logagg.maintain()');
ok( $node->poll_query_until('postgres', q{
SELECT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p
                WHERE p.command = 'CREATE INDEX CONCURRENTLY' AND p.phase LIKE 'waiting for %')}),
	"the worker's concurrent build waits for the open transaction");
is(sql(q{SELECT relid::regclass FROM pg_stat_progress_create_index}), $part, "it is the current partition, $part");
my $index = ($part =~ s/^logagg\.//r) . '_message_trgm';

# ingest goes on meanwhile, without waiting
is(sql(q{SET statement_timeout = '5s';
         SELECT logagg.ingest('{"source": "svc", "message": "stored during the build"}')}),
	'1', 'SQL ingest stores a record during the build');
my $res = HTTP::Tiny->new(timeout => 10)->post("http://127.0.0.1:$port/ingest",
	{ headers => { Authorization => "Bearer $token" }, content => qq({"message":"posted during the build"}\n) });
is($res->{status}, 200, 'the ingest worker stores records during the build (POST /ingest)');
is(sql(qq{SELECT count(*) FROM $part WHERE message IN ('stored during the build', 'posted during the build')}),
	'2', 'both are committed, into the partition being indexed');
is(sql(qq{SELECT indisvalid FROM pg_index WHERE indexrelid = 'logagg.$index'::regclass}), 'f',
	'the index is not valid yet');

# cancel the build: an invalid index stays behind
my $wpid = sql(q{SELECT pid FROM logagg.status() WHERE kind = 'maintenance'});
sql("SELECT pg_cancel_backend($wpid)");
ok( $node->poll_query_until('postgres', q{
SELECT last_error LIKE '%canceling statement%' FROM logagg.status() WHERE kind = 'maintenance'}),
	'the cancelled build stopped (the worker reports the error and restarts)');
is(sql(qq{SELECT indisvalid FROM pg_index WHERE indexrelid = 'logagg.$index'::regclass}), 'f',
	'and left an invalid index');
is(sql(qq{SELECT statements[1] FROM logagg._search_index_todo() WHERE index_name = '$index'}),
	"DROP INDEX CONCURRENTLY IF EXISTS logagg.$index", 'which the next pass drops first');

# the open transaction ends; the next pass rebuilds the index
$old->query_safe('COMMIT');
$old->quit;
sql('SELECT logagg.maintain()');
ok( $node->poll_query_until('postgres', qq{
SELECT count(*) = 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
 WHERE c.relname = '$index' AND i.indisvalid}),
	'the index is rebuilt and valid');
is(sql(q{SELECT count(*) FROM logagg._search_index_todo()}), '0', 'nothing left to build');
is(sql(q{SELECT count(*) FROM logagg.search('during the build')}), '2', 'search finds the records');

$node->stop;
done_testing();
