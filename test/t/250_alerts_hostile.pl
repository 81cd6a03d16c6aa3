# 250_alerts_hostile.pl — no receiver's answer and no stored destination
# config can make a dispatch worker exit or fail its transaction:
#  - 429 with Retry-After "inf", "nan", "-1", "1e308", garbage, a huge
#    number or an HTTP-date: strictly parsed, clamped to a day, else ignored;
#  - answers with invalid UTF-8 (cut mid-character at the kept length) and
#    huge bodies: alert_log.error and last_error stay valid text;
#  - add_destination refuses out-of-range numbers (timeout_ms 1e10), and a
#    config written around it (UPDATE as superuser) is clamped at send time;
#  - a queued payload with an out-of-range status does not break the claim;
#  - an outcome that still fails to record is recorded without the
#    receiver's details, the rest of its batch normally.
# Throughout, the dispatchers keep their PIDs and a second, healthy
# destination gets each of its alerts exactly once.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;
use AlertReceivers;

my $node = new_node('alerts_hostile', "logagg.alert_max_attempts = 20\n");
start_with_extension($node);
my $bad = AlertReceivers::http_receiver($node, 'hostile');
my $good = AlertReceivers::http_receiver($node, 'healthy');

$node->safe_psql('postgres', qq{
SELECT logagg.add_destination('hostile', 'webhook',
  '{"url": "$bad->{url}/h", "retry_base_ms": 100, "retry_max_ms": 200, "timeout_ms": 5000}');
SELECT logagg.add_destination('healthy', 'webhook', '{"url": "$good->{url}/g"}');
});

sub dispatcher_pids
{
	return $node->safe_psql('postgres',
		q{SELECT string_agg(pid::text, ',' ORDER BY backend_type) FROM pg_stat_activity
		  WHERE backend_type LIKE 'logagg dispatch %'});
}
my $pids = dispatcher_pids();
like($pids, qr/^\d+,\d+$/, "two dispatchers running ($pids)");

my @healthy;
sub healthy_alert
{
	push @healthy, $node->safe_psql('postgres', "SELECT logagg.test_destination('healthy')");
}

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# wait until alert $id has an outcome matching $cond in alert_log
sub wait_outcome
{
	my ($id, $cond, $what) = @_;
	ok($node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM logagg.alert_log WHERE alert_id = $id AND ($cond)"), $what);
}

# ---- Retry-After ----
for my $case (
	[ 'inf', 'backoff' ], [ 'nan', 'backoff' ], [ '-1', 'backoff' ], [ '1e308', 'backoff' ],
	[ '1.5', 'backoff' ], [ 'soon, please', 'backoff' ], [ 'Wed, 21 Oct 2015 07:28:00 GMT', 'now' ],
	[ '99999999999999999999999', 'day' ])
{
	my ($v, $expect) = @$case;
	(my $q = $v) =~ s/([^A-Za-z0-9.-])/sprintf('%%%02X', ord($1))/ge;
	AlertReceivers::control($bad, "answer?n=1&status=429&retry_after=$q");
	my $id = q1("SELECT logagg.test_destination('hostile')");
	healthy_alert();
	wait_outcome($id, "outcome = 'failed' AND http_status = 429", "Retry-After: $v: the 429 is recorded");
	my $delay = q1("SELECT extract(epoch FROM next_attempt_at - at) FROM logagg.alert_log
	                WHERE alert_id = $id AND outcome = 'failed'");
	if ($expect eq 'day')
	{
		cmp_ok(abs($delay - 86400), '<', 5, "Retry-After: $v: clamped to a day ($delay s)");
		q1("DELETE FROM logagg.alert_queue WHERE id = $id");
		next;
	}
	cmp_ok($delay, '<=', $expect eq 'now' ? 1 : 0.25,
		"Retry-After: $v: " . ($expect eq 'now' ? 'a past date means now' : 'ignored, backoff applies') . " ($delay s)");
	wait_outcome($id, "outcome = 'delivered'", "Retry-After: $v: delivered on the next attempt");
}
is(dispatcher_pids(), $pids, 'dispatchers kept their PIDs through every Retry-After');

# ---- invalid UTF-8, cut mid-character at the kept length ----
my $body = "bad \xff\xfe bytes \xc3( ";
$body .= 'a' x (199 - length($body));
$body .= "\xe4\xb8\xad tail";	# U+4E2D across byte 200
my $hex = unpack('H*', $body);
AlertReceivers::control($bad, "answer?n=1&status=400&body_hex=$hex");
my $id = q1("SELECT logagg.test_destination('hostile')");
healthy_alert();
wait_outcome($id, "outcome = 'dead' AND http_status = 400", 'invalid UTF-8: a 400 is dead at once');
my ($ret, $out, $err) = $node->psql('postgres',
	"SELECT convert_from(convert_to(error, 'UTF8'), 'UTF8') FROM logagg.alert_log WHERE alert_id = $id
	 UNION ALL SELECT convert_from(convert_to(last_error, 'UTF8'), 'UTF8') FROM logagg.alert_queue WHERE id = $id");
is($err, '', 'alert_log.error and last_error are valid text');
utf8::decode($out);
like($out, qr/^HTTP 400: bad \x{fffd}\x{fffd} bytes \x{fffd}\( a+$/m,
	'invalid bytes became U+FFFD; the character cut at the end was left out whole');
q1("DELETE FROM logagg.alert_queue WHERE id = $id");

# ---- huge bodies ----
AlertReceivers::control($bad, 'answer?n=1&status=503&body_hex=41&repeat=1000000&retry_after=0');
$id = q1("SELECT logagg.test_destination('hostile')");
healthy_alert();
wait_outcome($id, "outcome = 'failed' AND http_status = 503 AND octet_length(error) < 256",
	'a 1 MB error answer: failed, error kept short');
wait_outcome($id, "outcome = 'delivered'", 'then delivered');
AlertReceivers::control($bad, 'answer?n=1&status=200&body_hex=78&repeat=30000000');
$id = q1("SELECT logagg.test_destination('hostile')");
healthy_alert();
wait_outcome($id, "outcome = 'delivered' AND http_status = 200 AND latency_ms < 4000",
	'a 30 MB success answer: delivered without reading it all');

# ---- an outcome that cannot be recorded ----
# (a superuser's trigger stands in for any error recording one outcome
# could still raise: the others of the batch are recorded, this one
# without the receiver's details, and the dispatcher carries on)
q1(q{CREATE FUNCTION public.poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.error LIKE '%poison%' THEN RAISE EXCEPTION 'poisoned outcome'; END IF;
    RETURN NEW;
END$$;
CREATE TRIGGER poison BEFORE INSERT ON logagg.alert_log
    FOR EACH ROW EXECUTE FUNCTION public.poison();});
AlertReceivers::control($bad, 'answer?n=1&status=400&body_hex=' . unpack('H*', 'poison'));
$id = q1("SELECT logagg.test_destination('hostile')");
healthy_alert();
wait_outcome($id, "outcome = 'dead' AND http_status = 400 AND error = 'delivery failed (its details could not be recorded)'",
	'an outcome that fails to record is recorded without the receiver\'s details');
is(q1("SELECT last_error FROM logagg.alert_queue WHERE id = $id"),
	'delivery failed (its details could not be recorded)', 'and so is last_error');
q1("DROP TRIGGER poison ON logagg.alert_log; DROP FUNCTION public.poison(); DELETE FROM logagg.alert_queue WHERE id = $id");

# ---- a destination timeout longer than logagg.alert_timeout ----
# the lease covers it: no other dispatcher takes the alert while it waits
q1(qq{SELECT logagg.add_destination('patient', 'webhook', '{"url": "$bad->{url}/p", "timeout_ms": 120000}')});
AlertReceivers::control($bad, 'pause');
$id = q1("SELECT logagg.test_destination('patient')");
ok($node->poll_query_until('postgres', "SELECT claimed_by IS NOT NULL FROM logagg.alert_queue WHERE id = $id"),
	'patient: being sent');
cmp_ok(q1("SELECT extract(epoch FROM next_attempt_at - claimed_at) FROM logagg.alert_queue WHERE id = $id"),
	'>=', 120, 'its lease outlasts its own 120 s timeout');
AlertReceivers::control($bad, 'resume');
wait_outcome($id, "outcome = 'delivered'", 'patient: delivered once the receiver answers');

# ---- numeric config ranges ----
for my $cfg ('"timeout_ms": 1e10', '"timeout_ms": 0', '"retry_base_ms": 1e300',
	'"retry_max_ms": -5', '"retry_base_ms": 1.5', '"timeout_ms": "100"')
{
	($ret, $out, $err) = $node->psql('postgres',
		qq{SELECT logagg.add_destination('x', 'webhook', '{"url": "http://127.0.0.1:9/", $cfg}')});
	like($err, qr/must be a whole number of milliseconds from 1 to \d+/, "add_destination refuses $cfg");
}
like($err, qr/HINT:.*600000/, 'the hint gives the limits');

# a config written around add_destination is clamped, not an error
q1(q{UPDATE logagg.destinations
        SET config = config || '{"timeout_ms": 1e10, "retry_base_ms": 1e300, "retry_max_ms": 1e300}'
      WHERE name = 'hostile'});
AlertReceivers::control($bad, 'answer?n=1&status=500');
$id = q1("SELECT logagg.test_destination('hostile')");
healthy_alert();
wait_outcome($id, "outcome = 'failed' AND next_attempt_at - at BETWEEN '11 hours' AND '24 hours 1 minute'",
	'out-of-range stored config: sent, retry delay clamped to at most a day');
q1("DELETE FROM logagg.alert_queue WHERE id = $id");

# a queued payload whose status is beyond int
$id = q1(q{INSERT INTO logagg.alert_queue (severity, destination, fingerprint, source, payload)
           VALUES ('critical', 'healthy', 'fp-huge-status', 'svc', '{"status": 99999999999, "message": "m"}')
           RETURNING id});
push @healthy, $id;
wait_outcome($id, "outcome = 'delivered'", 'an out-of-range status in a payload does not break the claim');

# ---- the healthy destination and the dispatchers ----
my $ids = join(',', @healthy);
ok($node->poll_query_until('postgres',
	"SELECT count(DISTINCT alert_id) = " . scalar(@healthy)
	  . " FROM logagg.alert_log WHERE alert_id IN ($ids) AND outcome = 'delivered'"),
	'every healthy alert delivered');
my %seen;
$seen{ $_->{key} }++ for AlertReceivers::records($good);
is(scalar(grep { ($seen{$_} // 0) == 1 } @healthy), scalar(@healthy),
	'the healthy receiver got each of its ' . scalar(@healthy) . ' alerts exactly once');
is(scalar(keys %seen), scalar(@healthy), 'and nothing else');
is(dispatcher_pids(), $pids, 'dispatchers kept their PIDs');

# (before shutdown, when every worker exits with code 1)
my $log = slurp_file($node->logfile);
unlike($log, qr/logagg dispatch \d+.*exited with exit code/, 'no dispatcher exit in the server log');
like($log, qr/WARNING:  logagg: could not record delivery outcomes: poisoned outcome/,
	'the poisoned outcome was logged');
unlike($log, qr/could not record delivery outcomes: (?!poisoned outcome)/,
	'every other outcome was recorded at the first try');
$node->stop;
done_testing();
