# file:///dir target, late records, the maintenance worker's own cycle, and
# retention:
#  - file:// gives the same key layout and content as S3, written atomically
#    (no temporary files left behind);
#  - the maintenance worker syncs on its own every logagg.sync_interval;
#  - rows arriving for an already-synced window become part 0001 on a later
#    cycle: the parts together hold every row exactly once;
#  - retention drops an old synced partition, keeps an old unsynced one until
#    it is synced, and drops anything old when no sync target is configured.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use JSON::PP;
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;
use LogaggSyncTest qw(gunzip_bytes file_sync_node files_under);

# the test reasons about which hourly windows are closed
clear_of_hour_boundary(120);

my $dir = "$PostgreSQL::Test::Utils::tmp_check/export";
my $node = file_sync_node('sync_file', $dir, qq{
logagg.sync_interval = '2s'
});

sub file_lines
{
	my ($rel) = @_;
	return gunzip_bytes(slurp_file("$dir/$rel"));
}

# --- the worker syncs by itself
$node->safe_psql('postgres', q{
INSERT INTO logagg.logs (ts, source, level, severity, status, message, attrs)
SELECT date_trunc('hour', now()) - make_interval(hours => h) + make_interval(secs => i),
       s, 'error', 'high', 500, 'boom ' || i, '{"k": [1, 2]}'
FROM unnest(ARRAY['one', 'two']) s, generate_series(2, 3) h, generate_series(1, 100) i;});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) FROM logagg.sync_log WHERE status = 'uploaded'}, '4'),
	'the maintenance worker uploads the 4 closed windows on its own');

my $expect_keys = $node->safe_psql('postgres', q{
SET TimeZone = 'UTC';
SELECT string_agg(format('source=%s/date=%s/hour=%s/logs-%s-0000.ndjson.gz', source,
         to_char(w, 'YYYY-MM-DD'), to_char(w, 'HH24'), to_char(w, 'YYYYMMDD"T"HH24MISS"Z"')), ',' ORDER BY 1)
FROM (SELECT DISTINCT source, date_trunc('hour', ts) w FROM logagg.logs) s});
my @files = files_under($dir);
is(join(',', @files), join(',', sort split /,/, $expect_keys), 'files at the documented keys, no temporary files left');

my $json = JSON::PP->new;
my $ok = 1;
for my $f (@files)
{
	my ($src) = $f =~ m{^source=([^/]+)/};
	my ($d, $h) = $f =~ m{date=([\d-]+)/hour=(\d\d)};
	my @got = sort { $json->decode($a)->{id} <=> $json->decode($b)->{id} } file_lines($f);
	my $want = $node->safe_psql('postgres', qq{
SET TimeZone = 'UTC';
SELECT row_to_json(l)::text FROM logagg.logs l
WHERE source = '$src' AND ts >= '$d $h:00+00' AND ts < timestamptz '$d $h:00+00' + interval '1 hour' ORDER BY id});
	$ok = 0 unless join("\n", @got) eq $want && @got == 100;
}
ok($ok, 'each file holds exactly its window\'s rows, every column');
is($node->safe_psql('postgres', q{SELECT count(*) FROM logagg.sync_log WHERE status = 'uploaded' AND checksum ~ '^sha256:[0-9a-f]{64}$' AND upload_parts = 0}),
	'4', 'sync_log records a checksum for each file');

# --- late rows for an already synced window
$node->safe_psql('postgres', q{
INSERT INTO logagg.logs (ts, source, level, severity, message)
SELECT date_trunc('hour', now()) - interval '3 hours' + make_interval(secs => 3000 + i),
       'one', 'info', 'low', 'late ' || i
FROM generate_series(1, 5) i;});
ok($node->poll_query_until('postgres',
		q{SELECT count(*) FROM logagg.sync_log WHERE status = 'uploaded' AND part = 1}, '1'),
	'the late rows are uploaded on a later cycle');
my ($late_key) = grep { /^source=one\/.*-0001\.ndjson\.gz$/ } files_under($dir);
ok(defined $late_key, 'as part 0001 of the same window');
my @late = file_lines($late_key);
is(scalar(@late), 5, 'part 0001 holds the 5 late rows');
ok(!(grep { $json->decode($_)->{message} !~ /^late / } @late), 'and only them');
(my $p0 = $late_key) =~ s/-0001\.ndjson\.gz$/-0000.ndjson.gz/;
my %ids;
$ids{ $json->decode($_)->{id} }++ for (file_lines($p0), @late);
is($node->safe_psql('postgres', q{
SELECT count(*) FROM logagg.logs WHERE source = 'one'
  AND ts >= date_trunc('hour', now()) - interval '3 hours' AND ts < date_trunc('hour', now()) - interval '2 hours'}),
	scalar(keys %ids), 'the parts together hold every row of the window');
ok(!(grep { $_ != 1 } values %ids), 'and none twice');

# --- retention
# Stop the worker's periodic sync so that "unsynced" stays unsynced until we say so.
$node->safe_psql('postgres', q{ALTER SYSTEM SET logagg.sync_interval = '1h'; SELECT pg_reload_conf();});
sleep 3;		# let a cycle that may be in flight finish
$node->safe_psql('postgres', q{
SELECT logagg._ensure_partition(date_trunc('hour', now()) - interval '12 hours', 3600);
SELECT logagg._ensure_partition(date_trunc('hour', now()) - interval '11 hours', 3600);
INSERT INTO logagg.logs (ts, source, level, severity, message)
SELECT date_trunc('hour', now()) - interval '12 hours' + make_interval(secs => i), 'one', 'info', 'low', 'old ' || i
FROM generate_series(1, 50) i;});
is($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '1', 'the old partition A is synced');
$node->safe_psql('postgres', q{
INSERT INTO logagg.logs (ts, source, level, severity, message)
SELECT date_trunc('hour', now()) - interval '11 hours' + make_interval(secs => i), 'two', 'info', 'low', 'old ' || i
FROM generate_series(1, 50) i;});
my $parts_sql = q{SELECT count(*) FROM logagg.partitions
  WHERE range_start IN (date_trunc('hour', now()) - interval '12 hours', date_trunc('hour', now()) - interval '11 hours')};
is($node->safe_psql('postgres', $parts_sql), '2', 'two old partitions exist (A synced, B not)');
$node->safe_psql('postgres', q{ALTER SYSTEM SET logagg.retention = '4h'; SELECT pg_reload_conf();});
$node->safe_psql('postgres', 'SELECT logagg.maintain()');
is($node->safe_psql('postgres', q{SELECT string_agg(to_char(range_start AT TIME ZONE 'UTC', 'HH24'), ',') FROM logagg.partitions
  WHERE range_start IN (date_trunc('hour', now()) - interval '12 hours', date_trunc('hour', now()) - interval '11 hours')}),
	$node->safe_psql('postgres', q{SELECT to_char((date_trunc('hour', now()) - interval '11 hours') AT TIME ZONE 'UTC', 'HH24')}),
	'maintain(): the synced partition A is dropped, the unsynced B survives');
is($node->safe_psql('postgres', q{SELECT count(*) FROM logagg.logs WHERE message LIKE 'old %' AND source = 'two'}),
	'50', 'B\'s rows are still there');
is($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '1', 'B is synced');
$node->safe_psql('postgres', 'SELECT logagg.maintain()');
is($node->safe_psql('postgres', $parts_sql), '0', 'once synced, B is dropped too');
my $bstamp = $node->safe_psql('postgres',
	q{SELECT to_char((date_trunc('hour', now()) - interval '11 hours') AT TIME ZONE 'UTC', 'YYYYMMDD"T"HH24MISS"Z"')});
my ($bfile) = grep { /^source=two\/.*logs-$bstamp-0000\.ndjson\.gz$/ } files_under($dir);
ok(defined $bfile && scalar(file_lines($bfile)) == 50, 'B\'s 50 rows are in the export directory');

# without a sync target, old partitions go regardless
$node->safe_psql('postgres', q{
ALTER SYSTEM SET logagg.sync_url = ''; SELECT pg_reload_conf();});
$node->safe_psql('postgres', q{
SELECT logagg._ensure_partition(date_trunc('hour', now()) - interval '10 hours', 3600);
INSERT INTO logagg.logs (ts, source, level, severity, message)
VALUES (date_trunc('hour', now()) - interval '10 hours', 'three', 'info', 'low', 'never synced');});
$node->safe_psql('postgres', 'SELECT logagg.maintain()');
is($node->safe_psql('postgres', q{SELECT count(*) FROM logagg.partitions WHERE range_start = date_trunc('hour', now()) - interval '10 hours'}),
	'0', 'with no sync target an old partition is dropped even though unsynced');
is($node->safe_psql('postgres', q{SELECT (counters->>'partitions_dropped')::int FROM logagg.status() WHERE kind = 'maintenance'}),
	'3', 'logagg.status() counts the 3 dropped partitions');

$node->stop;
done_testing();
