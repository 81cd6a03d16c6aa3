# 200_alerts_webhook.pl — end to end: a 503 record sent through the
# WebSocket (logagg-emit --stdin) reaches the local webhook receiver with
# every fixed field, the HMAC signature over timestamp.body verifies,
# alert_log says delivered.
# Also: test_destination, the SQL ingest path, custom headers, config
# validation, and the redacted destinations_public view.
use strict;
use warnings;
use Digest::SHA qw(hmac_sha256_hex);
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use LogaggTest;
use AlertReceivers;

my $node = new_node('alerts_webhook');
start_with_extension($node);
my $rcv = AlertReceivers::http_receiver($node);
my $secret = 'whsec-Ab12-very-secret-value';

# log_statement = all (the test default) would copy the call's secret into
# the server log: configuration sessions turn it off, as docs/alerts.md says.
$node->safe_psql('postgres', qq{
SET log_statement = 'none';
SELECT logagg.add_destination('hook', 'webhook',
  jsonb_build_object('url', '$rcv->{url}/alerts', 'secret', '$secret',
                     'headers', jsonb_build_object('X-Team', 'payments')));
SELECT logagg.add_route('hook', 'high', NULL, '1 min');
});

# --- 1. a 503 record through the WebSocket ---
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('service-a')");
my $line = '{"level":"error","status":503,"message":"503 GET /api/orders upstream timeout"}';
my ($out, $err) = ('', '');
my $ok = IPC::Run::run([ emitter_path(), '--url', "ws://127.0.0.1:$node->{logagg_port}/ingest",
		'--token', $token, '--stdin', '--quiet' ],
	'<', \"$line\n", '>', \$out, '2>', \$err, IPC::Run::timeout(60));
ok($ok, 'logagg-emit shipped the record') or diag("$out $err");

my @recs = AlertReceivers::wait_records($rcv, sub { grep { $_->{path} eq '/alerts' } @_ }, 30);
my ($r) = grep { $_->{path} eq '/alerts' } @recs;
ok($r, 'the webhook receiver got a notification');
$r //= { body => '{}', headers => {} };
my $p = eval { decode_json($r->{body}) } // {};
for my $f (qw(severity source fingerprint count first_seen last_seen status level message destination alert_id))
{
	ok(exists $p->{$f}, "payload has fixed field $f");
}
is($p->{severity}, 'critical', 'a 503 is critical');
is($p->{source}, 'service-a', 'source comes from the token');
is($p->{status}, 503, 'status');
is($p->{count}, 1, 'count');
is($p->{destination}, 'hook', 'destination');
is($p->{message}, '503 GET /api/orders upstream timeout', 'message sample');
is($p->{fingerprint},
	$node->safe_psql('postgres', q{SELECT logagg.fingerprint('service-a', 'critical', 503, '503 GET /api/orders upstream timeout')}),
	'fingerprint is logagg.fingerprint of the record');
is($r->{headers}{'idempotency-key'}, "$p->{alert_id}", 'Idempotency-Key header = alert_id');
my $ts = $r->{headers}{'x-logagg-timestamp'} // '';
like($ts, qr/^\d+$/, 'X-Logagg-Timestamp is Unix seconds');
cmp_ok(abs($ts - time()), '<', 300, 'and recent');
is($r->{headers}{'x-logagg-signature'}, 'v2=' . hmac_sha256_hex("$ts.$r->{body}", $secret),
	'X-Logagg-Signature verifies with the secret over timestamp.body');
isnt($r->{headers}{'x-logagg-signature'}, 'v2=' . hmac_sha256_hex("$ts.$r->{body}", 'wrong'),
	'and not with another secret');
is($r->{headers}{'x-team'}, 'payments', 'custom header sent');
like($r->{headers}{'content-type'}, qr{application/json}, 'JSON content type');

ok($node->poll_query_until('postgres',
	"SELECT outcome = 'delivered' AND http_status = 200 FROM logagg.alert_log WHERE alert_id = $p->{alert_id}"),
	'alert_log shows it delivered');
is($node->safe_psql('postgres', "SELECT count(*) FROM logagg.alert_queue WHERE id = $p->{alert_id}"),
	'0', 'and it left the queue');

# --- 2. SQL ingest path and test_destination leave at once ---
my $t0 = time();
$node->safe_psql('postgres',
	q{SELECT logagg.ingest('{"source":"service-b","status":500,"message":"boom in checkout"}')});
@recs = AlertReceivers::wait_records($rcv,
	sub { grep { $_->{body} =~ /boom in checkout/ } @_ }, 30);
ok((grep { $_->{body} =~ /boom in checkout/ } @recs), 'logagg.ingest() alert delivered');

my $tid = $node->safe_psql('postgres', "SELECT logagg.test_destination('hook')");
@recs = AlertReceivers::wait_records($rcv, sub { grep { ($_->{key} // '') eq $tid } @_ }, 30);
my ($tr) = grep { ($_->{key} // '') eq $tid } @recs;
ok($tr, 'test notification received');
my $tp = $tr ? decode_json($tr->{body}) : {};
ok($tp->{test}, 'test notification is marked test');
ok($node->poll_query_until('postgres',
	"SELECT outcome = 'delivered' FROM logagg.alert_log WHERE alert_id = $tid"),
	'test notification logged delivered');

# low severity does not match a "high" route
$node->safe_psql('postgres',
	q{SELECT logagg.ingest('{"source":"service-b","status":200,"message":"all good"}')});
$tid = $node->safe_psql('postgres', "SELECT logagg.test_destination('hook')");
AlertReceivers::wait_records($rcv, sub { grep { ($_->{key} // '') eq $tid } @_ }, 30);
ok(!(grep { $_->{body} =~ /all good/ } AlertReceivers::records($rcv)),
	'a low record is not routed to a high route');

# --- 3. config validation errors name the key, not the value ---
my ($ret, $o, $e) = $node->psql('postgres',
	q{SELECT logagg.add_destination('bad', 'webhook', '{"secret": "x"}')});
like($e, qr/webhook destination config lacks "url"/, 'missing url rejected');
($ret, $o, $e) = $node->psql('postgres',
	q{SELECT logagg.add_destination('bad', 'email', '{"smtp_url": "http://x", "from": "a@b", "to": ["c@d"]}')});
like($e, qr/smtp_url.*must be an smtp/, 'bad smtp_url rejected');
($ret, $o, $e) = $node->psql('postgres',
	q{SELECT logagg.add_destination('bad', 'slack', '{"webhook_url": "https://x", "colour": "red"}')});
like($e, qr/unknown key "colour"/, 'unknown key rejected');
($ret, $o, $e) = $node->psql('postgres',
	q{SELECT logagg.add_destination('bad', 'fax', '{}')});
like($e, qr/unknown destination kind "fax"/, 'unknown kind rejected');
($ret, $o, $e) = $node->psql('postgres', q{SELECT logagg.add_route('nope', 'high')});
like($e, qr/destination "nope" does not exist/, 'route to a missing destination rejected');

my $pub = $node->safe_psql('postgres',
	q{SELECT config::text FROM logagg.destinations_public WHERE name = 'hook'});
unlike($pub, qr/\Q$secret\E/, 'destinations_public hides the secret');
like($pub, qr/"secret": "\*+"/, 'and shows that there is one');

# --- 4. pause / resume ---
$node->safe_psql('postgres', "SELECT logagg.pause_destination('hook')");
$tid = $node->safe_psql('postgres', "SELECT logagg.test_destination('hook')");
sleep 1;
ok(!(grep { ($_->{key} // '') eq $tid } AlertReceivers::records($rcv)), 'paused destination: nothing sent');
is($node->safe_psql('postgres', "SELECT count(*) FROM logagg.alert_queue WHERE id = $tid AND dead_at IS NULL"),
	'1', 'the alert waits in the queue');
$node->safe_psql('postgres', "SELECT logagg.resume_destination('hook')");
ok(scalar(AlertReceivers::wait_records($rcv, sub { grep { ($_->{key} // '') eq $tid } @_ }, 30)),
	'resumed destination: sent');

$node->stop;
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$secret\E/, 'secret never in the server log');
done_testing();
