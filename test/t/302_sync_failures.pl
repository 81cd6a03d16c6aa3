# Store unavailable during a cycle: connection refused, HTTP 500, a server
# that never answers (timeout), and a multipart upload whose parts fail
# (must be aborted).  Nothing may be marked synced while the store fails;
# failures are recorded with their error and a growing backoff; after
# recovery every (window, source) is uploaded exactly once in sync_log.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;
use LogaggSyncTest;

# the test reasons about which hourly windows are closed
clear_of_hour_boundary(120);

my $s3 = start_s3('fail', 'fail-bucket');
my $node = start_sync_node('sync_fail', sync_conf($s3, 'x'), q{
logagg.sync_interval = '1h'
logagg.sync_timeout = '1s'
});

# 2 sources x 3 past hours = 6 objects
$node->safe_psql('postgres', q{
INSERT INTO logagg.logs (ts, source, level, severity, message)
SELECT date_trunc('hour', now()) - make_interval(hours => h) + make_interval(secs => i),
       s, 'warn', 'low', 'line ' || i
FROM unnest(ARRAY['alpha', 'beta']) s, generate_series(2, 4) h, generate_series(1, 200) i;});

sub sync_now_warn
{
	my ($ret, $out, $err) = $node->psql('postgres', 'SELECT logagg.sync_now()');
	return ($out, $err);
}

sub nothing_synced
{
	return $node->safe_psql('postgres',
		q{SELECT count(*) FROM logagg.sync_log WHERE status = 'uploaded'}) eq '0'
	  && scalar(s3_list($s3, 'x/')) == 0;
}

# --- refused: nothing listens on the endpoint's port
my $dead = PostgreSQL::Test::Cluster::get_free_port();
$node->safe_psql('postgres', qq{
ALTER SYSTEM SET logagg.s3_endpoint = 'http://127.0.0.1:$dead';
SELECT pg_reload_conf();});
my ($out, $err) = sync_now_warn();
is($out, '0', 'connection refused: nothing uploaded');
like($err, qr/6 of 6 object upload\(s\) failed/, 'sync_now warns about 6 failures');
like($node->safe_psql('postgres', q{SELECT error FROM logagg.sync_log WHERE status = 'failed' ORDER BY id LIMIT 1}),
	qr/Couldn't connect|Connection refused|Failed to connect/i, 'the error says the connection was refused');
ok(nothing_synced(), 'nothing marked synced, no object in the store');

# --- HTTP 500
$node->safe_psql('postgres', qq{
ALTER SYSTEM SET logagg.s3_endpoint = '$s3->{endpoint}';
SELECT pg_reload_conf();});
set_proxy_mode($s3, '500');
($out, $err) = sync_now_warn();
is($out, '0', 'HTTP 500: nothing uploaded');
like($node->safe_psql('postgres', q{SELECT error FROM logagg.sync_log WHERE status = 'failed' ORDER BY id DESC LIMIT 1}),
	qr/HTTP 500 InternalError/, 'the error carries the status and S3 error code');
ok(nothing_synced(), 'nothing marked synced after 500s');

# --- timeout: the store accepts the request but never answers
set_proxy_mode($s3, 'hang');
my $t0 = time();
($out, $err) = sync_now_warn();
my $took = time() - $t0;
is($out, '0', 'store not answering: nothing uploaded');
cmp_ok($took, '<', 30, sprintf('six stalled uploads gave up after logagg.sync_timeout (%.1f s)', $took));
like($node->safe_psql('postgres', q{SELECT error FROM logagg.sync_log WHERE status = 'failed' ORDER BY id DESC LIMIT 1}),
	qr/timed out|Operation too slow/i, 'the error says the request timed out');
ok(nothing_synced(), 'nothing marked synced after timeouts');

# backoff grows with each failure of the same object
my $backoffs = $node->safe_psql('postgres', q{
SELECT string_agg(round(extract(epoch FROM next_attempt_at - finished_at))::text, ',' ORDER BY id)
FROM logagg.sync_log WHERE source = 'alpha' AND status = 'failed'
  AND window_start = date_trunc('hour', now()) - interval '2 hours'});
my @b = split /,/, $backoffs;
ok(@b == 3 && $b[0] < $b[1] && $b[1] < $b[2], "retry backoff grows per failure ($backoffs s)");

# --- an error text of invalid UTF-8, longer than any buffer: stored as valid text
set_proxy_mode($s3, '500-garbage');
($out, $err) = sync_now_warn();
is($out, '0', 'HTTP 500 with a garbage message: nothing uploaded');
my ($rc, $e) = $node->psql('postgres', q{
SELECT convert_from(convert_to(error, 'UTF8'), 'UTF8') FROM logagg.sync_log
 WHERE status = 'failed' ORDER BY id DESC LIMIT 1});
is($rc, 0, 'the recorded error is valid text (convert_from verifies it)');
like($e, qr/^PUT .*HTTP 500 InternalError: \?\?bad (\x{e9}|\xc3\xa9)+$/s,
	'invalid bytes became "?" and the cut left whole characters');

# --- multipart upload whose parts fail is aborted
$node->safe_psql('postgres', q{
ALTER SYSTEM SET logagg.sync_part_size = '64kB';
SELECT pg_reload_conf();
INSERT INTO logagg.logs (ts, source, level, severity, message)
SELECT date_trunc('hour', now()) - interval '5 hours' + make_interval(secs => i % 3600),
       'gamma', 'info', 'low', md5(i::text) || md5((i + 1)::text)
FROM generate_series(1, 20000) i;});
set_proxy_mode($s3, '500-parts');
($out, $err) = sync_now_warn();
is($out, '6', 'failing parts: the six small objects (single PUT) go through, the large one does not');
my @plog = proxy_log_lines($s3);
ok((grep { /^PASS POST .*gamma.*\?uploads= / } @plog), 'a multipart upload was started');
ok((grep { /^PASS DELETE .*gamma.*\?uploadId=/ } @plog), 'and aborted after its part failed');
is($node->safe_psql('postgres', q{SELECT count(*) FROM logagg.sync_log WHERE source = 'gamma' AND status = 'uploaded'}),
	'0', 'the aborted multipart object is not marked synced');
is(scalar(s3_list($s3, 'x/source=gamma/')), 0, 'and not in the store');

# --- recovery: every window exactly once
set_proxy_mode($s3, 'ok');
($out, $err) = sync_now_warn();
is($out, '1', 'after recovery the remaining object is uploaded');
is($err, '', 'without warnings');
is($node->safe_psql('postgres', q{
SELECT count(*) FILTER (WHERE n <> 1) || '/' || count(*) FROM (
  SELECT window_start, source, count(*) n FROM logagg.sync_log WHERE status = 'uploaded' GROUP BY 1, 2) s}),
	'0/7', 'each (window, source) is uploaded exactly once in sync_log');
is(scalar(s3_list($s3, 'x/')), 7, '7 objects in the store');
is($node->safe_psql('postgres', q{SELECT sum(rows) FROM logagg.sync_log WHERE status = 'uploaded'}),
	'21200', 'sync_log accounts for every row');
is($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '0', 'and a further cycle has nothing to do');
is(scalar(grep { !/^PASS / } proxy_log_lines($s3)), 0, 'every request was correctly signed');

$node->stop;
stop_s3($s3);
done_testing();
