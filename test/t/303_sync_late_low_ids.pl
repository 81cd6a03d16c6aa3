# Late rows whose ids are BELOW the ids already uploaded are not lost
# (docs/sync.md, "Late rows are not lost").  Ids come from a sequence
# cached 1,000 per session, and a transaction can still be open while its
# window is exported, so a row can commit after part 0 with an id lower
# than every id in part 0.
# Parts are delimited by the export's MVCC snapshot, not by ids; this test
# checks that every such row ends up in exactly one part:
#  - an ordinary open transaction in another session (cached low ids);
#  - a prepared transaction with rows inserted at top level and in a
#    subtransaction (a row's xmin is then the subtransaction's xid, which
#    pg_current_snapshot() alone does not list);
#  - a prepared transaction with more than 64 subtransactions (the
#    snapshot's subxid list overflows);
#  - rows inserted by the very transaction that calls logagg.sync_now(),
#    also in a subtransaction;
#  - retention keeps the window's partition while any of its rows is not
#    in an uploaded part, and drops it once all are.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;
use LogaggSyncTest qw(gunzip_bytes file_sync_node files_under);

# the test reasons about which hourly windows are closed
clear_of_hour_boundary(120);

my $dir = "$PostgreSQL::Test::Utils::tmp_check/export_low";
my $node = file_sync_node('sync_low_ids', $dir, qq{
logagg.sync_interval = '1h'
max_prepared_transactions = 5
});

# the window: three hours ago, source "low"
my $W = q{date_trunc('hour', now()) - interval '3 hours'};
$node->safe_psql('postgres', "SELECT logagg._ensure_partition($W, 3600)");

my $json = JSON::PP->new;

# every row of the window, from all its parts: id => count, plus rows per part
sub exported
{
	my (%ids, %per_part);
	for my $f (grep { m{^source=low/} } files_under($dir))
	{
		my ($part) = $f =~ /-(\d{4})\.ndjson\.gz$/;
		for my $l (gunzip_bytes(slurp_file("$dir/$f")))
		{
			$ids{ $json->decode($l)->{id} }++;
			$per_part{ $part + 0 }++;
		}
	}
	return (\%ids, \%per_part);
}

sub table_ids
{
	return split /\n/, $node->safe_psql('postgres',
		"SELECT id FROM logagg.logs WHERE source = 'low' AND ts >= $W AND ts < $W + interval '1 hour' ORDER BY id");
}

sub exactly_once
{
	my ($name) = @_;
	my ($ids) = exported();
	my @want = table_ids();
	my @missing = grep { !$ids->{$_} } @want;
	my @twice = grep { $ids->{$_} > 1 } keys %$ids;
	my %want = map { $_ => 1 } @want;
	my @extra = grep { !$want{$_} } keys %$ids;
	ok(@want > 0 && !@missing && !@twice && !@extra,
		"$name: every row of the window is in exactly one part (" . scalar(@want) . ' rows)')
	  or diag("missing: @missing; twice: @twice; not in table: @extra");
}

sub ins
{
	my ($msg, $n) = @_;
	$n //= 1;
	return "INSERT INTO logagg.logs (ts, source, level, severity, message)
SELECT $W + make_interval(secs => i), 'low', 'info', 'low', '$msg ' || i FROM generate_series(1, $n) i;";
}

# --- session A: an ordinary transaction left open, ids from A's cached range
my $a = $node->background_psql('postgres');
$a->query_safe('BEGIN');
$a->query_safe(ins('A', 3));

# --- prepared transaction P: a top-level row and one in a subtransaction
$node->safe_psql('postgres', 'BEGIN; ' . ins('P-top') . ' SAVEPOINT s1; ' . ins('P-sub')
	  . " RELEASE s1; PREPARE TRANSACTION 'p';");

# --- prepared transaction O: 70 subtransactions (the subxid cache holds 64)
$node->safe_psql('postgres', q{BEGIN;
DO $$
BEGIN
    FOR i IN 1..70 LOOP
        BEGIN
            INSERT INTO logagg.logs (ts, source, level, severity, message)
            VALUES (date_trunc('hour', now()) - interval '3 hours' + make_interval(secs => i), 'low', 'info', 'low', 'O ' || i);
        EXCEPTION WHEN division_by_zero THEN NULL;
        END;
    END LOOP;
END $$;
PREPARE TRANSACTION 'o';});

# --- session B: committed rows with higher ids (a later cached range)
$node->safe_psql('postgres', ins('B', 100));

is($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '1', 'part 0 uploaded while A, P and O are open');
my (undef, $pp) = exported();
is($pp->{0}, 100, 'part 0 holds the 100 committed rows');
my $max0 = $node->safe_psql('postgres', q{SELECT max_id FROM logagg.sync_log WHERE source = 'low' AND part = 0 AND status = 'uploaded'});
like($node->safe_psql('postgres', q{SELECT export_snapshot::text FROM logagg.sync_log WHERE source = 'low' AND part = 0}),
	qr/^\d+:\d+:\d+(,\d+)*$/, 'part 0 records its export snapshot');

$a->query_safe('COMMIT');
$a->quit;
$node->safe_psql('postgres', "COMMIT PREPARED 'p'; COMMIT PREPARED 'o';");
my $low = $node->safe_psql('postgres', qq{SELECT count(*) FROM logagg.logs
  WHERE source = 'low' AND message !~ '^B ' AND id < $max0});
ok($low >= 3, "the late rows include $low with ids below part 0's highest id $max0 (the old failure)");

# retention keeps the partition while those rows are not uploaded
$node->safe_psql('postgres', q{ALTER SYSTEM SET logagg.retention = '2h'; SELECT pg_reload_conf();});
$node->safe_psql('postgres', 'SELECT logagg.maintain()');
my $part_sql = "SELECT count(*) FROM logagg.partitions WHERE range_start = $W";
is($node->safe_psql('postgres', $part_sql), '1', 'retention keeps the partition: late rows not uploaded yet');
$node->safe_psql('postgres', q{ALTER SYSTEM SET logagg.retention = 0; SELECT pg_reload_conf();});

is($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '1', 'the next cycle uploads part 1');
(undef, $pp) = exported();
is($pp->{1}, 3 + 2 + 70, 'part 1 holds the 75 late rows (A, P top + sub, O x 70)');
is($node->safe_psql('postgres', q{SELECT count(*) FROM logagg.sync_log WHERE status = 'failed'}), '0',
	'no failed attempt recorded');
exactly_once('after part 1');
is($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '0', 'nothing more to upload');

# --- rows inserted by the transaction that calls sync_now(): its own xid is
# not in its snapshot; they must not be uploaded a second time
$node->safe_psql('postgres', 'BEGIN; ' . ins('own', 2) . ' SELECT logagg.sync_now(); COMMIT;');
(undef, $pp) = exported();
is($pp->{2}, 2, 'part 2 holds the 2 rows of the calling transaction');
is($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '0', 'and they are not uploaded again');
exactly_once('after part 2');

# the same with the caller's rows in a subtransaction whose xid is newer
# than anything completed when sync_now() takes its snapshot: the top-level
# xid is older than a transaction another session commits in between, the
# subtransaction's xid newer
my $c = $node->background_psql('postgres');
$c->query_safe('BEGIN');
$c->query_safe(ins('own-top', 1));
$node->safe_psql('postgres', q{INSERT INTO logagg.logs (ts, source, level, severity, message) VALUES (now(), 'elsewhere', 'info', 'low', 'x')});
$c->query_safe('SAVEPOINT s');
$c->query_safe(ins('own-sub', 2));
$c->query_safe('RELEASE s');
is($c->query_safe('SELECT logagg.sync_now()'), '1', 'sync_now() in a transaction with a subtransaction uploads part 3');
$c->query_safe('COMMIT');
$c->quit;
(undef, $pp) = exported();
is($pp->{3}, 3, 'part 3 holds its 3 rows');
is($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '0', 'and they are not uploaded again either');
exactly_once('after part 3');

# --- retention drops the partition once everything is uploaded
$node->safe_psql('postgres', ins('last', 1));
$node->safe_psql('postgres', q{ALTER SYSTEM SET logagg.retention = '2h'; SELECT pg_reload_conf();});
my ($ret, $out, $err) = $node->psql('postgres',
	'BEGIN ISOLATION LEVEL REPEATABLE READ; SELECT logagg.maintain(); COMMIT;');
like($err, qr/retention skipped/, 'retention refuses to check under REPEATABLE READ');
$node->safe_psql('postgres', 'SELECT logagg.maintain()');
is($node->safe_psql('postgres', $part_sql), '1', 'retention keeps the partition while a committed row is not uploaded');
is($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '1', 'part 4 uploaded');
exactly_once('after part 4');
my @before = table_ids();
$node->safe_psql('postgres', 'SELECT logagg.maintain()');
is($node->safe_psql('postgres', $part_sql), '0', 'then retention drops the partition');
my ($ids) = exported();
is(scalar(keys %$ids), scalar(@before), 'the store still holds every one of its rows');

$node->stop;
done_testing();
