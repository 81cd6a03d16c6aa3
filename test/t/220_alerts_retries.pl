# 220_alerts_retries.pl — delivery failures: a receiver refusing
# connections, answering 500, answering 429 with Retry-After, or answering
# too slowly is retried with backoff; once it recovers every alert is
# delivered and each idempotency key is acted on once by the receiver;
# after logagg.alert_max_attempts an alert is dead (kept, visible, and
# retry_alert sends it again).
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use LogaggTest;
use AlertReceivers;

my $node = new_node('alerts_retries', "logagg.alert_max_attempts = 5\n");
start_with_extension($node);
my $r = AlertReceivers::http_receiver($node);
my $dead_port = PostgreSQL::Test::Cluster::get_free_port();

$node->safe_psql('postgres', qq{
SELECT logagg.add_destination('hook', 'webhook',
  '{"url": "$r->{url}/hook", "retry_base_ms": 200, "retry_max_ms": 1000, "timeout_ms": 1000}');
SELECT logagg.add_route('hook', 'high', NULL, '1 min');
SELECT logagg.add_destination('nowhere', 'webhook',
  '{"url": "http://127.0.0.1:$dead_port/x", "retry_base_ms": 100, "retry_max_ms": 300}');
SELECT logagg.add_route('nowhere', 'critical', 'doomed-1', '1 min');
-- every distinct alert is counted here: no storm guard (504 tests it)
UPDATE logagg.routes SET max_notifications = NULL;
});

my $batch = 0;
# queue N alerts with distinct fingerprints (one source each)
sub queue_alerts
{
	my ($n, $tag) = @_;
	$batch++;
	my @recs = map { qq{{"source":"$tag-$_","status":500,"message":"failure in $tag"}} } 1 .. $n;
	$node->safe_psql('postgres', "SELECT logagg.ingest('[" . join(',', @recs) . "]')");
}

sub check_all_delivered
{
	my ($tag, $n, $what) = @_;
	ok($node->poll_query_until('postgres',
		"SELECT count(*) = $n FROM logagg.alert_log WHERE source LIKE '$tag-%' AND outcome = 'delivered'"),
		"$what: every alert delivered after recovery");
	my @recs = grep { $_->{body} =~ /failure in $tag"/ } AlertReceivers::records($r);
	my %acted;
	$acted{ $_->{key} }++ for grep { $_->{acted} } @recs;
	is(scalar(keys %acted), $n, "$what: $n idempotency keys acted on");
	ok(!(grep { $_ != 1 } values %acted), "$what: each exactly once");
	my %alert_ids = map { decode_json($_->{body})->{alert_id} => $_->{key} } @recs;
	ok(!(grep { $alert_ids{$_} ne $_ } keys %alert_ids), "$what: Idempotency-Key = alert_id on every attempt");
	return @recs;
}

# ---- refused connections ----
AlertReceivers::control($r, 'refuse');
queue_alerts(10, 'refuse');
ok($node->poll_query_until('postgres',
	"SELECT count(DISTINCT alert_id) = 10 FROM logagg.alert_log WHERE source LIKE 'refuse-%' AND outcome = 'failed' AND error ~ 'onnect'"),
	'refused: attempts logged as failed with the connection error');
AlertReceivers::control($r, 'accept');
check_all_delivered('refuse', 10, 'refused');

# ---- 500s ----
AlertReceivers::control($r, 'fail?n=25&status=500');
queue_alerts(10, 'fivehundred');
check_all_delivered('fivehundred', 10, '500');
my $retries = $node->safe_psql('postgres',
	"SELECT count(*) FROM logagg.alert_log WHERE source LIKE 'fivehundred-%' AND outcome = 'failed' AND http_status = 500");
cmp_ok($retries, '>=', 20, "500: failures logged with http_status 500 ($retries)");
# backoff grows: over the ten alerts, the mean wait before attempt 3 is
# clearly longer than before attempt 2 (2x expected; jitter is 50-100 %)
my $gaps = $node->safe_psql('postgres', q{
SELECT avg(g3) > avg(g2) * 1.3 FROM (
  SELECT alert_id,
         extract(epoch FROM max(next_attempt_at - at) FILTER (WHERE attempt = 1)) AS g2,
         extract(epoch FROM max(next_attempt_at - at) FILTER (WHERE attempt = 2)) AS g3
  FROM logagg.alert_log WHERE source LIKE 'fivehundred-%' AND outcome = 'failed'
  GROUP BY alert_id) x WHERE g2 IS NOT NULL AND g3 IS NOT NULL});
is($gaps, 't', 'backoff grows between attempts');
my $jit = $node->safe_psql('postgres', q{
SELECT count(DISTINCT round(extract(epoch FROM next_attempt_at - at) * 1000 / 10))
FROM logagg.alert_log WHERE source LIKE 'fivehundred-%' AND outcome = 'failed' AND attempt = 1});
cmp_ok($jit, '>', 1, "retries are jittered ($jit distinct first delays)");

# ---- 429 with Retry-After ----
AlertReceivers::control($r, 'ratelimit?n=1&retry_after=2');
queue_alerts(1, 'ratelimited');
my @recs = check_all_delivered('ratelimited', 1, '429');
my @att = sort { $a->{t} <=> $b->{t} } @recs;
is($att[0]{status}, 429, '429: first attempt rate limited');
cmp_ok($att[1]{t_recv} - $att[0]{t}, '>=', 1.9,
	sprintf('429: retried after Retry-After (%.2f s)', $att[1]{t_recv} - $att[0]{t}));
is($node->safe_psql('postgres',
	"SELECT round(extract(epoch FROM next_attempt_at - at)) FROM logagg.alert_log WHERE source = 'ratelimited-1' AND outcome = 'failed'"),
	'2', '429: alert_log shows the retry scheduled by Retry-After');

# ---- too slow (timeout 1 s) ----
AlertReceivers::control($r, 'slow?ms=1500');
queue_alerts(3, 'slow');
ok($node->poll_query_until('postgres',
	"SELECT count(*) >= 3 FROM logagg.alert_log WHERE source LIKE 'slow-%' AND outcome = 'failed' AND error ~* 'timeout|timed out'"),
	'slow: timeouts logged as failures');
AlertReceivers::control($r, 'slow?ms=0');
@recs = check_all_delivered('slow', 3, 'slow');
my $dups = grep { $_->{duplicate} } @recs;
note("slow: $dups late duplicate deliveries recognised by their Idempotency-Key");

# ---- dead after max attempts ----
queue_alerts(1, 'doomed');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM logagg.alert_log WHERE destination = 'nowhere' AND outcome = 'dead'"),
	'dead after max attempts');
is($node->safe_psql('postgres',
	"SELECT count(*) FROM logagg.alert_log WHERE destination = 'nowhere' AND outcome = 'failed'"),
	'4', 'four failed attempts before it');
is($node->safe_psql('postgres',
	"SELECT attempt FROM logagg.alert_log WHERE destination = 'nowhere' AND outcome = 'dead'"),
	'5', 'the fifth attempt was the last (logagg.alert_max_attempts = 5)');
my $dead_id = $node->safe_psql('postgres',
	"SELECT id FROM logagg.alert_queue WHERE destination = 'nowhere' AND dead_at IS NOT NULL");
ok($dead_id, 'dead alert kept in the queue, visible');
is($node->safe_psql('postgres', "SELECT dead FROM logagg.destinations_public WHERE name = 'nowhere'"),
	'1', 'destinations_public counts it');
# point the destination at the receiver and retry it
$node->safe_psql('postgres', qq{
SELECT logagg.add_destination('nowhere', 'webhook', '{"url": "$r->{url}/revived"}');
SELECT logagg.retry_alert($dead_id);
});
ok(scalar(AlertReceivers::wait_records($r, sub { grep { $_->{path} eq '/revived' && $_->{key} eq $dead_id } @_ }, 30)),
	'retry_alert sends it again with the same alert_id');
ok($node->poll_query_until('postgres',
	"SELECT outcome = 'delivered' FROM logagg.alert_log WHERE alert_id = $dead_id ORDER BY id DESC LIMIT 1"),
	'and it is logged delivered');

# a permanent 4xx is dead at once
AlertReceivers::control($r, 'fail?n=1&status=404');
queue_alerts(1, 'notfound');
ok($node->poll_query_until('postgres',
	"SELECT outcome = 'dead' AND http_status = 404 AND attempt = 1 FROM logagg.alert_log WHERE source = 'notfound-1'"),
	'HTTP 404 is permanent: dead after one attempt');

done_testing();
