# Cloud sync to a real S3-compatible server (s3rver) behind a SigV4-verifying
# proxy (test/receivers/s3_sigv4_proxy.py):
#  - after logagg.sync_now() every closed window of every source is an
#    object at the documented key, holding exactly that window's rows;
#  - a small part size sends a large window through multipart upload and the
#    object is complete;
#  - every request the extension sends passes SigV4 verification, and a
#    wrongly signed one (bad secret) is refused and recorded as failed.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA qw(sha256_hex);
use JSON::PP;
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;
use LogaggSyncTest;

# the test reasons about which hourly windows are closed
clear_of_hour_boundary(120);

my $s3 = start_s3('main', 'logs-bucket');
my $node = start_sync_node('sync_s3', sync_conf($s3, 'pfx/logagg'), q{
logagg.sync_interval = '1h'
});

# Three sources (one whose name needs escaping in a key), three past hours;
# not every source has rows in every hour.
my @sources = ('svc-a', 'svc_b', 'web api');
$node->safe_psql('postgres', q{
INSERT INTO logagg.logs (ts, source, level, severity, status, message, attrs)
SELECT date_trunc('hour', now()) - make_interval(hours => h) + make_interval(secs => i * 7),
       s, 'info', 'low', 200 + i % 3,
       format('request %s "quoted" \ back-slash é line', i),
       jsonb_build_object('i', i, 'h', h, 'nested', jsonb_build_object('k', s))
FROM unnest(ARRAY['svc-a', 'svc_b', 'web api']) AS s,
     generate_series(2, 4) AS h,
     generate_series(1, 300) AS i
WHERE NOT (s = 'svc_b' AND h = 3);
-- rows of the current (open) hour must not be synced yet
INSERT INTO logagg.logs (ts, source, level, severity, message)
VALUES (now(), 'svc-a', 'info', 'low', 'still open');
});

my $uploaded = $node->safe_psql('postgres', 'SELECT logagg.sync_now()');
is($uploaded, 8, 'sync_now uploads one object per closed (window, source): 3x3 - 1');

my $windows = $node->safe_psql('postgres', q{
SET TimeZone = 'UTC';
SELECT source, to_char(date_trunc('hour', ts), 'YYYY-MM-DD|HH24|YYYYMMDD"T"HH24MISS"Z"'), count(*)
FROM logagg.logs WHERE ts < date_trunc('hour', now())
GROUP BY 1, 2 ORDER BY 1, 2});
my %expected;
for my $line (split /\n/, $windows)
{
	my ($src, $w, $n) = split /\|/, $line, 3;
	my ($date, $hour, $stamp, $cnt) = split /\|/, "$w|$n";
	(my $esc = $src) =~ s/([^A-Za-z0-9_\-.])/sprintf('%%%02X', ord($1))/ge;
	my $key = "pfx/logagg/source=$esc/date=$date/hour=$hour/logs-$stamp-0000.ndjson.gz";
	$expected{$key} = { source => $src, rows => $cnt, date => $date, hour => $hour };
}
is(scalar(keys %expected), 8, '8 closed (window, source) pairs in the table');

my @keys = s3_list($s3, 'pfx/');
is_deeply(\@keys, [ sort keys %expected ], 'objects exist exactly at the documented keys');

my $json = JSON::PP->new;
my $content_ok = 1;
my $total_rows = 0;
for my $key (sort keys %expected)
{
	my $e = $expected{$key};
	my $gz = s3_get($s3, $key);
	my @lines = gunzip_bytes($gz);
	$total_rows += @lines;
	my @objs = map { $json->decode($_) } @lines;
	@lines = map { $_->[1] } sort { $a->[0] <=> $b->[0] } map { [ $objs[$_]{id}, $lines[$_] ] } 0 .. $#lines;
	my $want = $node->safe_psql('postgres', qq{
SET TimeZone = 'UTC';
SELECT row_to_json(l)::text FROM logagg.logs l
WHERE source = '$e->{source}' AND ts >= '$e->{date} $e->{hour}:00:00+00'
  AND ts < timestamptz '$e->{date} $e->{hour}:00:00+00' + interval '1 hour'
ORDER BY id});
	my @want = split /\n/, $want;
	if (@lines != $e->{rows} || join("\n", @lines) ne join("\n", @want))
	{
		diag("content mismatch in $key: " . scalar(@lines) . " lines, want $e->{rows}");
		$content_ok = 0;
	}
	my $log = $node->safe_psql('postgres', qq{
SELECT rows, bytes, checksum, status, upload_parts FROM logagg.sync_log
WHERE object_key = '$key'});
	my $sha = sha256_hex($gz);
	my $len = length($gz);
	if ($log ne "$e->{rows}|$len|sha256:$sha|uploaded|0")
	{
		diag("sync_log for $key: '$log', want '$e->{rows}|$len|sha256:$sha|uploaded|0'");
		$content_ok = 0;
	}
}
ok($content_ok, 'each object holds exactly its window\'s rows (every column), sync_log has rows, bytes and SHA-256');
is($total_rows, 8 * 300, 'all 2400 rows of closed windows uploaded');
my $one = $json->decode((gunzip_bytes(s3_get($s3, (sort keys %expected)[0])))[0]);
is_deeply([ sort keys %$one ],
	[ sort qw(id ts received_at source level severity status message trace_id span_id stream seq attrs) ],
	'each NDJSON object carries all columns of logagg.logs');

is($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '0', 'a second sync_now uploads nothing');
is($node->safe_psql('postgres', q{SELECT count(*) FROM logagg.sync_log WHERE status = 'uploaded'}),
	'8', 'sync_log has one row per object');

# --- the NDJSON lines are byte for byte what row_to_json gives, also for
# NULLs, control characters and escapes, non-ASCII text, odd jsonb,
# extreme integers and timestamps (src/sync_ndjson.c)
$node->safe_psql('postgres', q{
INSERT INTO logagg.logs (ts, received_at, source, level, severity, status, message, trace_id, span_id, stream, seq, attrs) VALUES
 (date_trunc('hour', now()) - interval '9 hours', 'infinity', 'edge', NULL, 'critical', NULL, NULL, NULL, NULL, NULL, NULL, NULL),
 (date_trunc('hour', now()) - interval '9 hours' + interval '0.000001 s', '0044-03-15 12:00:00.5+00 BC', 'edge', 'error', 'high', 0,
  E'tab\t nl\n cr\r bs\b ff\f ctl\x01\x1f quote" backslash\\\\ slash/ \u00e9 \u65e5\u672c \U0001F600 <script>',
  'abcdef', '01', 's-1', -9223372036854775807,
  '{"a": [1, 2.50, -0.0, 1e300, "x\"y\\\\z\n", null, true, {"k": {}}], "": [], "\u00e9": "\u00e9\t"}'),
 (date_trunc('hour', now()) - interval '8 hours' - interval '0.000001 s', '-infinity', 'edge', 'info', 'low', 999,
  '', '', '', '', 9223372036854775807, '[]');
});
is($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '1', 'the edge-case window is uploaded');
my $edge_key = $node->safe_psql('postgres', q{SELECT object_key FROM logagg.sync_log WHERE source = 'edge' AND status = 'uploaded'});
my @edge = gunzip_bytes(s3_get($s3, $edge_key));
@edge = map { $_->[1] } sort { $a->[0] <=> $b->[0] } map { [ $json->decode($_)->{id}, $_ ] } @edge;
my $edge_want = $node->safe_psql('postgres', q{
SET TimeZone = 'UTC';
SELECT row_to_json(l)::text FROM logagg.logs l WHERE source = 'edge' ORDER BY id});
is(join("\n", @edge), $edge_want, 'edge-case rows: the object holds exactly row_to_json\'s bytes');

# --- multipart: 64kB parts, a window of ~40k rows of poorly compressible text
$node->safe_psql('postgres', q{
ALTER SYSTEM SET logagg.sync_part_size = '64kB';
SELECT pg_reload_conf();});
$node->safe_psql('postgres', q{
INSERT INTO logagg.logs (ts, source, level, severity, message)
SELECT date_trunc('hour', now()) - interval '6 hours' + make_interval(secs => i % 3600),
       'bulk', 'info', 'low', md5(i::text) || md5((i * 7)::text)
FROM generate_series(1, 40000) i;});
is($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '1', 'the large window is uploaded');
my ($mp_key, $mp_rows, $mp_parts, $mp_bytes) = split /\|/, $node->safe_psql('postgres', q{
SELECT object_key, rows, upload_parts, bytes FROM logagg.sync_log WHERE source = 'bulk' AND status = 'uploaded'});
cmp_ok($mp_parts, '>', 5, "multipart upload used $mp_parts parts for $mp_bytes bytes");
my @plog = proxy_log_lines($s3);
ok((grep { /^PASS POST .*\?uploads= / } @plog), 'CreateMultipartUpload was sent');
my $nparts = grep { /^PASS PUT .*\?partNumber=\d+&uploadId=/ } @plog;
is($nparts, $mp_parts, 'one UploadPart request per part');
my $mp_gz = s3_get($s3, $mp_key);
my @mp_lines = gunzip_bytes($mp_gz);
is(scalar(@mp_lines), 40000, 'the multipart object decompresses to all 40000 rows');
my %ids = map { ($json->decode($_)->{id} => 1) } @mp_lines;
is($node->safe_psql('postgres', q{SELECT count(*) FROM logagg.logs WHERE source = 'bulk'}),
	scalar(keys %ids), 'every row id appears exactly once in the object');
is(length($mp_gz), $mp_bytes, 'object size equals sync_log.bytes');

# --- signing: every request so far passed the verifier
@plog = proxy_log_lines($s3);
cmp_ok(scalar(@plog), '>=', 9 + $nparts, 'the verifier saw every request');
is(scalar(grep { !/^PASS / } @plog), 0, 'every request was correctly signed (SigV4 + x-amz-content-sha256)');

# a wrongly signed request is refused and recorded as failed
my $badsecret = 'wrong-secret-7f3a9c';
$node->safe_psql('postgres', qq{
ALTER SYSTEM SET logagg.s3_secret_access_key = '$badsecret';
SELECT pg_reload_conf();});
$node->safe_psql('postgres', q{
INSERT INTO logagg.logs (ts, source, level, severity, message)
VALUES (date_trunc('hour', now()) - interval '7 hours', 'svc-a', 'info', 'low', 'signed badly');});
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT logagg.sync_now()');
is($out, '0', 'nothing uploaded with a wrong secret');
like($err, qr/1 of 1 object upload\(s\) failed/, 'sync_now warns about the failure');
@plog = proxy_log_lines($s3);
like($plog[-1], qr/^FAIL PUT .* signature mismatch/, 'the verifier refused the wrongly signed request');
my $ferr = $node->safe_psql('postgres', q{SELECT error FROM logagg.sync_log WHERE status = 'failed'});
like($ferr, qr/HTTP 403 SignatureDoesNotMatch/, 'the failure is recorded with the store\'s error');
# (PostgreSQL itself logs the ALTER SYSTEM statement under log_statement=all
# and "parameter ... changed to" on reload; see docs/sync.md.  Every other
# line, logagg's included, must not carry the secret.)
my @leaks = grep { /$badsecret/ && !/statement: ALTER SYSTEM|parameter "logagg.s3_secret_access_key" changed to/ }
  split /\n/, slurp_file($node->logfile);
unlike($ferr, qr/$badsecret/, 'the secret does not appear in sync_log.error');
is(scalar(@leaks), 0, 'no logagg message in the server log carries the secret') or diag(join("\n", @leaks));

$node->safe_psql('postgres', q{
ALTER SYSTEM SET logagg.s3_secret_access_key = 'S3RVER';
SELECT pg_reload_conf();});
is($node->safe_psql('postgres', 'SELECT logagg.sync_now()'), '1', 'after fixing the secret the window is uploaded');
is(scalar(grep { !/^PASS / } proxy_log_lines($s3)), 1, 'only the deliberately bad request failed verification');

# secrets stay hidden from non-superusers
$node->safe_psql('postgres', 'CREATE ROLE plain LOGIN');
($ret, $out, $err) = $node->psql('postgres', 'SHOW logagg.s3_secret_access_key', extra_params => [ '-U', 'plain' ]);
isnt($ret, 0, 'a non-superuser cannot SHOW the S3 secret');
is($node->safe_psql('postgres', q{SELECT (counters->>'sync_objects')::int >= 10 FROM logagg.status() WHERE kind = 'maintenance'}),
	't', 'logagg.status() counts synced objects on the maintenance worker');

$node->stop;
stop_s3($s3);
done_testing();
