# file:// sync never follows a symbolic link below the sync directory:
#  - a source directory that is a link to elsewhere,
#  - a date directory deeper down that is a link,
#  - an object's own name that is a link to an existing file;
# each upload fails with an error in sync_log naming the link, nothing is
# written where the links point, the other sources are synced, and once
# the links are gone sync_now uploads everything.  The sync directory
# itself may be a link (the admin chose it).
use strict;
use warnings;
use File::Find;
use File::Path qw(make_path);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;
use LogaggSyncTest qw(file_sync_node);

# the test reasons about which hourly windows are closed
clear_of_hour_boundary(60);

my $tmp = $PostgreSQL::Test::Utils::tmp_check;
my $real = "$tmp/export-real";
my $dir = "$tmp/export-link";	# the configured directory: a link to $real
my $elsewhere = "$tmp/elsewhere";
make_path($real, $elsewhere);
symlink($real, $dir) or die "symlink: $!";

my $node = file_sync_node('sync_symlinks', $dir, qq{
logagg.sync_interval = '1h'
});

# one past hour, four sources
$node->safe_psql('postgres', q{
INSERT INTO logagg.logs (ts, source, level, severity, message)
SELECT date_trunc('hour', now()) - interval '2 hours' + make_interval(secs => i),
       s, 'info', 'low', 'line ' || i
FROM unnest(ARRAY['alpha', 'beta', 'gamma', 'delta']) s, generate_series(1, 50) i;});
my %key = split /[|\n]/, $node->safe_psql('postgres', q{
SET TimeZone = 'UTC';
SELECT DISTINCT source, format('source=%s/date=%s/hour=%s/logs-%s-0000.ndjson.gz', source,
         to_char(w, 'YYYY-MM-DD'), to_char(w, 'HH24'), to_char(w, 'YYYYMMDD"T"HH24MISS"Z"'))
FROM (SELECT source, date_trunc('hour', ts) w FROM logagg.logs) s});
my ($date) = $key{beta} =~ m{/(date=[^/]+)/};

# alpha: the source directory is a link
symlink($elsewhere, "$real/source=alpha") or die;
# beta: the date directory one level down is a link
make_path("$real/source=beta", "$elsewhere/beta");
symlink("$elsewhere/beta", "$real/source=beta/$date") or die;
# gamma: the object's own name is a link to a file that must stay as it is
(my $gdir = "$real/$key{gamma}") =~ s{/[^/]+$}{};
make_path($gdir);
open(my $fh, '>', "$elsewhere/precious") or die;
print $fh "precious\n";
close $fh;
symlink("$elsewhere/precious", "$real/$key{gamma}") or die;

my ($ret, $out, $err) = $node->psql('postgres', 'SELECT logagg.sync_now()');
is($out, '1', 'one object uploaded (delta)');
like($err, qr/3 of 4 object upload\(s\) failed/, 'sync_now warns about the other three');

my %error = split /[|\n]/, $node->safe_psql('postgres',
	q{SELECT source, error FROM logagg.sync_log WHERE status = 'failed' ORDER BY source});
like($error{alpha} // '', qr/refusing to follow the symbolic link ".*\/source=alpha" below the sync directory/,
	'alpha: the error names the linked source directory');
like($error{beta} // '', qr/refusing to follow the symbolic link ".*\/source=beta\/\Q$date\E" below the sync directory/,
	'beta: the error names the linked date directory');
like($error{gamma} // '', qr/refusing to follow the symbolic link ".*\Q$key{gamma}\E" below the sync directory/,
	'gamma: the error names the linked object');

my @written;
find({ wanted => sub { push @written, $File::Find::name if -f $_ && $_ ne "$elsewhere/precious" }, no_chdir => 1 },
	$elsewhere);
is(join(',', @written), '', 'nothing was written where the links point');
is(slurp_file("$elsewhere/precious"), "precious\n", 'the linked file is untouched');
ok(-l "$real/$key{gamma}", 'and the link itself is left in place');
ok(-f "$real/$key{delta}", 'delta was synced into the (linked) sync directory');
is($node->safe_psql('postgres', q{SELECT string_agg(source, ',' ORDER BY source) FROM logagg.sync_log WHERE status = 'uploaded'}),
	'delta', 'sync_log: only delta uploaded');

# the links removed: everything is synced, into real directories
unlink("$real/source=alpha", "$real/source=beta/$date", "$real/$key{gamma}") or die;
is($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '3', 'after the links are gone the three are uploaded');
ok(!-l "$real/source=alpha" && -f "$real/$key{alpha}", 'alpha in a real directory');
ok(-f "$real/$key{beta}" && -f "$real/$key{gamma}" && !-l "$real/$key{gamma}", 'beta and gamma as real files');
my @tmpfiles;
find({ wanted => sub { push @tmpfiles, $_ if /\.tmp\./ }, no_chdir => 1 }, $real);
is(scalar(@tmpfiles), 0, 'no temporary file left behind');

# The library reads _sync_pending's rows by position after checking the
# result's columns by name: SQL that returns them in another order (a
# library newer than the installed SQL, say) is refused with a clear error,
# not read as other columns.  Rolled back, so the node keeps its function.
my $rc;
($rc, $out, $err) = $node->psql('postgres', q{
BEGIN;
ALTER EXTENSION logagg DROP FUNCTION logagg._sync_pending(int, timestamptz, timestamptz, boolean);
DROP FUNCTION logagg._sync_pending(int, timestamptz, timestamptz, boolean);
CREATE FUNCTION logagg._sync_pending(int, timestamptz, timestamptz, boolean)
    RETURNS TABLE (window_end timestamptz, window_start timestamptz, source text,
                   part int, prev_snapshot pg_snapshot, new_rows bigint)
    LANGUAGE sql AS $$ SELECT NULL::timestamptz, NULL::timestamptz, NULL::text, 0, NULL::pg_snapshot, 0::bigint WHERE false $$;
SELECT logagg.sync_now();
ROLLBACK;
});
like($err, qr/logagg\._sync_pending\(\) returns no column "window_start" at position 1/,
	'columns of _sync_pending in another order are refused by name');

$node->stop;
done_testing();
