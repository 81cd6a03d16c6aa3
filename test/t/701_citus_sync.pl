# 701_citus_sync.pl -- cloud sync and retention of a distributed
# logagg.logs on a three-node Citus cluster (a coordinator and two worker
# nodes on this machine's sockets), with a file:// target:
#
# - rows ingested through the coordinator's and a worker node's ingest
#   ports, for four sources over three closed windows, are uploaded by the
#   coordinator's maintenance worker as one object per (window, source),
#   each with exactly the rows SELECT on the coordinator gives;
# - each part's snapshot is the one of the node holding its shard;
# - late rows (through a worker node's port and through SQL on the
#   coordinator, and one committed on a worker node after a retention
#   check) are uploaded once, as the next part, and only they;
# - a window whose latest part is not yet committed in _sync_seen on its
#   node waits instead of being uploaded again;
# - retention drops the distributed partition only once every row in it is
#   uploaded: not while late rows wait, not while a write to it is still
#   prepared on a node (Citus's two-phase commit), and then it does.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use LogaggTest;
use LogaggSyncTest qw(gunzip_bytes files_under);

my $pkglibdir = `pg_config --pkglibdir`;
chomp $pkglibdir;
plan skip_all => "Citus is not installed in $pkglibdir (scripts/install-citus.sh builds it)"
  unless -f "$pkglibdir/citus.so";

# the test reasons about which hourly windows are closed
clear_of_hour_boundary(240);

my $dir = "$PostgreSQL::Test::Utils::tmp_check/export_citus";
mkdir $dir or die "mkdir $dir: $!";
my $blocker = "$PostgreSQL::Test::Utils::tmp_check/not-a-directory_citus";
open(my $fh, '>', $blocker) or die;
close $fh;

my $conf = q{
shared_preload_libraries = 'citus,logagg'
max_prepared_transactions = 50
logagg.dispatch_workers = 1
logagg.partition_interval = '1h'
logagg.sync_grace = 0
};
my $coord = new_node('cs_coord', $conf);
# w1 has a sync target too: as a worker node it must not use it
my $w1 = new_node('cs_w1', $conf . "logagg.sync_url = 'file://$dir'\n");
my $w2 = new_node('cs_w2', "shared_preload_libraries = 'citus'\nmax_prepared_transactions = 50\n");
$_->start for ($coord, $w1, $w2);
$_->safe_psql('postgres', 'CREATE EXTENSION citus') for ($coord, $w1, $w2);
$coord->safe_psql('postgres', sprintf(q{
SELECT citus_set_coordinator_host('%s', %d);
SELECT citus_add_node('%s', %d);
SELECT citus_add_node('%s', %d);
CREATE EXTENSION logagg;
}, $coord->host, $coord->port, $w1->host, $w1->port, $w2->host, $w2->port));
wait_workers_ready($_) for ($coord, $w1);
like($coord->safe_psql('postgres', 'SELECT logagg.distribute(8)'), qr/_sync_seen/,
	'logagg.distribute() distributes logs and _sync_seen');
my %node_at = map { $_->port => $_ } ($coord, $w1, $w2);

sub csql { return $coord->safe_psql('postgres', $_[0]); }
# a DROP waiting for a prepared write would wait for ever: fail instead
my $maintain = q{SET lock_timeout = '60s'; SELECT logagg.maintain()};

# hour starts of the windows used: W2 and W3 hours ago (in logs_default),
# A 12 hours ago in a partition of its own
my ($h2, $h3, $ha) = split /\|/, csql(q{SET TimeZone = 'UTC';
SELECT to_char(date_trunc('hour', now()) - interval '2 hours', 'YYYY-MM-DD"T"HH24:00:00"Z"') || '|' ||
       to_char(date_trunc('hour', now()) - interval '3 hours', 'YYYY-MM-DD"T"HH24:00:00"Z"') || '|' ||
       to_char(date_trunc('hour', now()) - interval '12 hours', 'YYYY-MM-DD"T"HH24:00:00"Z"')});
ok(csql(qq{SELECT logagg._ensure_partition('$ha', 3600)}) eq 't', 'partition A (12 hours ago) created through Citus');
my $part_a = csql(qq{SELECT partition FROM logagg.partitions WHERE range_start = '$ha'});
is(csql(qq{SELECT count(*) FROM pg_dist_partition WHERE logicalrelid = '$part_a'::regclass}), '1',
	"$part_a is distributed");

my @sources = qw(s1 s2 s3 s4);
my %token = map { $_ => csql("SELECT logagg.create_source('$_')") } @sources;
my $http = HTTP::Tiny->new(timeout => 20);

# POST n records for a source with ts = hour start + offset seconds
sub ingest
{
	my ($node, $src, $hour, $from, $n, $what) = @_;
	my ($d, $hh) = $hour =~ /^(.*)T(\d\d)/;
	my $body = join("\n", map {
		sprintf('{"ts":"%sT%s:%02d:%02dZ","level":"info","message":"%s %d"}', $d, $hh, int($_ / 60), $_ % 60, $what, $_)
	} ($from .. $from + $n - 1)) . "\n";
	my $r = $http->post("http://127.0.0.1:$node->{logagg_port}/ingest",
		{ headers => { Authorization => "Bearer $token{$src}", 'Content-Type' => 'application/x-ndjson' },
		  content => $body });
	return $r->{success} && $r->{content} =~ /"accepted":\s*$n\b/;
}

# --- rows for 3 windows x 4 sources, through the coordinator and w1 (sync off) ---
my $ok = 1;
for my $hour ($h2, $h3, $ha)
{
	$ok &&= ingest($coord, $_, $hour, 1, 20, 'first') for qw(s1 s2);
	$ok &&= ingest($w1, $_, $hour, 1, 20, 'first') for qw(s3 s4);
}
ok($ok, 'every record accepted through the coordinator\'s and w1\'s ports');
is(csql('SELECT count(*) FROM logagg.logs'), '240', 'all 240 rows on the coordinator');

# which node holds a source's shard (of logs, and of a partition)
sub node_of
{
	my ($rel, $src) = @_;
	my $port = csql(qq{SELECT n.nodeport FROM pg_dist_placement p JOIN pg_dist_node n USING (groupid)
	  WHERE p.shardid = get_shard_id_for_distribution_column('$rel', '$src')});
	return $node_at{$port};
}
my %holder = map { $_ => node_of('logagg.logs', $_) } @sources;
my %holders = map { $_->name => 1 } values %holder;
note(join(', ', map { "$_ on " . $holder{$_}->name } @sources));

# --- the maintenance worker uploads each (window, source) once ---
csql(qq{ALTER SYSTEM SET logagg.sync_url = 'file://$dir'; ALTER SYSTEM SET logagg.sync_interval = '1s';
SELECT pg_reload_conf();});
ok($coord->poll_query_until('postgres',
		q{SELECT count(*) FROM logagg.sync_log WHERE status = 'uploaded'}, '12'),
	'the coordinator\'s maintenance worker uploads 12 objects');

my $json = JSON::PP->new;
sub stamp { my ($h) = @_; (my $s = $h) =~ s/[-:]//g; return $s; }
sub key_of
{
	my ($src, $hour, $part) = @_;
	my ($d, $hh) = $hour =~ /^(.*)T(\d\d)/;
	return sprintf('source=%s/date=%s/hour=%s/logs-%s-%04d.ndjson.gz', $src, $d, $hh, stamp($hour), $part);
}
sub lines_of { return gunzip_bytes(slurp_file("$dir/$_[0]")); }
sub by_id { return sort { $json->decode($a)->{id} <=> $json->decode($b)->{id} } @_; }
# the window's rows as the coordinator reads them, in the NDJSON form
sub rows_of
{
	my ($src, $hour) = @_;
	return split /\n/, csql(qq{SET TimeZone = 'UTC';
WITH r AS MATERIALIZED (SELECT * FROM logagg.logs
                        WHERE source = '$src' AND ts >= '$hour' AND ts < timestamptz '$hour' + interval '1 hour')
SELECT row_to_json(r)::text FROM r ORDER BY id});
}

my @want_keys = sort map { my $s = $_; map { key_of($s, $_, 0) } ($h2, $h3, $ha) } @sources;
is(join(',', files_under($dir)), join(',', @want_keys), 'one file per (window, source), no temporary files');
$ok = 1;
for my $src (@sources)
{
	for my $hour ($h2, $h3, $ha)
	{
		my @got = by_id(lines_of(key_of($src, $hour, 0)));
		my @want = rows_of($src, $hour);
		$ok = 0, diag("$src $hour differs") unless @want == 20 && join("\n", @got) eq join("\n", @want);
	}
}
ok($ok, 'each object holds exactly its window\'s 20 rows as SELECT on the coordinator gives them');
is(csql(q{SELECT count(*) || ',' || count(DISTINCT (window_start, source)) FROM logagg.sync_log}), '12,12',
	'sync_log: 12 uploads, no failure, no (window, source) twice');

# each part's snapshot is the one of the node that holds the rows
my %sysid = map { $_->name => $_->safe_psql('postgres', 'SELECT logagg._system_id()') } ($coord, $w1, $w2);
$ok = 1;
for my $src (@sources)
{
	my $got = csql(qq{SELECT string_agg(DISTINCT export_system_id::text, ',') FROM logagg._sync_seen WHERE source = '$src'});
	$ok = 0, diag("$src: $got") unless $got eq $sysid{ $holder{$src}->name };
}
ok($ok, 'each (window, source) is recorded with the snapshot of the node holding its shard');

# --- late rows, while the target fails, and retention meanwhile ---
csql(qq{ALTER SYSTEM SET logagg.sync_url = 'file://$blocker'; SELECT pg_reload_conf();});
# the worker has the failing target once a new window's upload fails
csql(qq{INSERT INTO logagg.logs (ts, source, level, severity, message)
        VALUES (timestamptz '$h3' + interval '59 minutes', 'probe', 'info', 'low', 'probe')});
ok($coord->poll_query_until('postgres',
		q{SELECT count(*) > 0 FROM logagg.sync_log WHERE source = 'probe' AND status = 'failed'}),
	'with the target unreachable, uploads fail');

ok(ingest($w1, 's3', $h3, 100, 5, 'late'), '5 late rows for (W3, s3) through w1');
ok(ingest($w1, 's1', $ha, 100, 3, 'late'), '3 late rows for (A, s1) through w1');
csql(qq{INSERT INTO logagg.logs (ts, source, level, severity, message)
        SELECT timestamptz '$h2' + make_interval(secs => 200 + i), 's2', 'info', 'low', 'late ' || i
        FROM generate_series(1, 4) i});

csql(q{ALTER SYSTEM SET logagg.retention = '6h'; SELECT pg_reload_conf();});
my $log_at = -s $coord->logfile;
csql($maintain);
is(csql(qq{SELECT count(*) FROM logagg.partitions WHERE partition = '$part_a'::regclass}), '1',
	'retention keeps partition A: 3 of its rows are not uploaded');
is(csql(qq{SELECT count(*) FROM $part_a}), '83', 'and all its rows');

# a write to A's shard of s4, prepared on its node (as Citus's two-phase
# commit leaves it between PREPARE and COMMIT PREPARED)
my $a_node = node_of($part_a, 's4');
my $a_shard = csql(qq{SELECT shard_name('$part_a'::regclass, get_shard_id_for_distribution_column('$part_a', 's4'))});
$a_node->safe_psql('postgres', qq{
BEGIN;
SET LOCAL citus.enable_manual_changes_to_shards = on;
INSERT INTO $a_shard (id, ts, source, level, severity, message)
VALUES (9000000001, timestamptz '$ha' + interval '30 minutes', 's4', 'info', 'low', 'late prepared');
PREPARE TRANSACTION 'late_s4';});

# --- the target back: the late rows go up once, as part 0001 ---
csql(qq{ALTER SYSTEM SET logagg.sync_url = 'file://$dir'; SELECT pg_reload_conf();});
# now, rather than after the failed attempts' backoff (the worker may
# take some of them first: either way each goes up once)
csql('SELECT logagg.sync_now()');
ok($coord->poll_query_until('postgres',
		q{SELECT count(*) FROM logagg.sync_log WHERE status = 'uploaded' AND part = 1}, '3'),
	'the three windows with late rows get a part 0001');
ok($coord->poll_query_until('postgres',
		q{SELECT count(*) FROM logagg.sync_log WHERE status = 'uploaded' AND source = 'probe'}, '1'),
	'and the new window its part 0000');
for ([ 's3', $h3, 5 ], [ 's1', $ha, 3 ], [ 's2', $h2, 4 ])
{
	my ($src, $hour, $n) = @$_;
	my @late = lines_of(key_of($src, $hour, 1));
	is(scalar(@late), $n, "($src, $hour) part 0001: its $n late rows");
	ok(!(grep { $json->decode($_)->{message} !~ /^late/ } @late), '  and only late rows');
	is(join("\n", by_id(lines_of(key_of($src, $hour, 0)), @late)), join("\n", rows_of($src, $hour)),
		'  parts 0000 and 0001 together: every row of the window once');
}

# A: every row but the prepared one is uploaded; that one keeps it
csql($maintain);
is(csql(qq{SELECT count(*) FROM logagg.partitions WHERE partition = '$part_a'::regclass}), '1',
	'retention keeps partition A while a write to it is prepared on ' . $a_node->name);
ok($coord->log_contains(qr/retention keeps partition \S+ for now \(a write to it is still being committed on a node/, $log_at),
	'and says why');

$a_node->safe_psql('postgres', q{COMMIT PREPARED 'late_s4'});
ok($coord->poll_query_until('postgres',
		q{SELECT count(*) FROM logagg.sync_log WHERE status = 'uploaded' AND source = 's4' AND part = 1}, '1'),
	'the row committed on the node afterwards is uploaded, as part 0001 of (A, s4)');
my @late = lines_of(key_of('s4', $ha, 1));
ok(@late == 1 && $json->decode($late[0])->{message} eq 'late prepared', '  holding only that row');
my %a_rows = map { $_ => [ rows_of($_, $ha) ] } @sources;

csql($maintain);
is(csql(qq{SELECT count(*) FROM logagg.partitions WHERE range_start = '$ha'}), '0',
	'once every row is uploaded, retention drops partition A');
is($a_node->safe_psql('postgres', qq{SELECT to_regclass('$a_shard') IS NULL}), 't',
	'with its shards on the nodes');
$ok = 1;
for my $src (@sources)
{
	my @files = grep { m{^source=$src/.*logs-@{[stamp($ha)]}-\d{4}\.ndjson\.gz$} } files_under($dir);
	my @got = by_id(map { lines_of($_) } @files);
	$ok = 0, diag("A, $src: " . scalar(@got) . ' lines') unless join("\n", @got) eq join("\n", @{ $a_rows{$src} });
}
ok($ok, 'every row A held is in the export, once');

# --- a part in sync_log whose _sync_seen row its node has not committed
# yet (as when Citus's COMMIT PREPARED there was interrupted): the window
# waits, rather than compare with the part before and upload rows again
my ($sp, $ssnap, $ssys) = split /\|/, csql(qq{SELECT part || '|' || export_snapshot || '|' || export_system_id
  FROM logagg._sync_seen WHERE source = 's3' AND window_start = '$h3'});
is($sp, '1', '(W3, s3): _sync_seen holds part 1');
csql(qq{DELETE FROM logagg._sync_seen WHERE source = 's3' AND window_start = '$h3'});
ok(ingest($w1, 's3', $h3, 200, 2, 'later'), '2 more late rows for (W3, s3)');
csql('SELECT logagg.sync_now()');
is(csql(qq{SELECT count(*) FROM logagg.sync_log WHERE source = 's3' AND window_start = '$h3' AND status = 'uploaded'}), '2',
	'while its part 1 is not in _sync_seen, (W3, s3) is not uploaded again');
csql(qq{INSERT INTO logagg._sync_seen VALUES ('s3', '$h3', $sp, '$ssnap', $ssys)});
csql('SELECT logagg.sync_now()');
my @later = lines_of(key_of('s3', $h3, 2));
ok(@later == 2 && !(grep { $json->decode($_)->{message} !~ /^later / } @later),
	'once it is, part 0002 holds the 2 new rows and only them');

is(csql(q{SELECT count(*) FROM logagg.sync_log WHERE status = 'uploaded'}), '18',
	'18 uploads in all: 12 windows, 5 late parts, the probe\'s window');
is(csql(q{SELECT count(*) FROM logagg.sync_log WHERE status = 'uploaded' AND export_system_id IS NULL}), '0',
	'sync_log names the node of every part\'s snapshot');
is(csql(q{SELECT count(*) FROM logagg.sync_log f WHERE f.status = 'failed'
  AND NOT EXISTS (SELECT 1 FROM logagg.sync_log u WHERE u.status = 'uploaded' AND u.window_start = f.window_start
                    AND u.source = f.source AND u.part = f.part)}), '0',
	'every part that failed against the broken target was uploaded later');

# sync_log is the coordinator's: a worker node does not sync
is($w1->safe_psql('postgres', 'SELECT count(*) FROM logagg.sync_log'), '0',
	'w1, with a sync target of its own, uploaded nothing');
my (undef, undef, $err) = $w1->psql('postgres', 'SELECT logagg.sync_now()');
like($err // '', qr/logagg.sync_now\(\) runs on the Citus coordinator/, 'and sync_now() refuses to run there');

$_->stop for ($w1, $w2, $coord);
done_testing();
