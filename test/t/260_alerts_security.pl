# 260_alerts_security.pl — what an alert carries and what a reader sees:
#  - destinations_public shows URLs as scheme://host[:port] only (Slack-
#    and Teams-style tokens in the path, query tokens, user:password@);
#  - webhook signatures cover a timestamp: a receiver checking them as
#    docs/alerts.md says (Python hmac, test/receivers/http_receiver.py)
#    accepts the real request and refuses a replay or a forged timestamp;
#    signature_version 1 keeps the older body-only signature;
#  - log text in Slack messages cannot mention, link or format: &, <, >
#    are escaped wherever it is rendered;
#  - CR/LF in header values and e-mail addresses is refused by
#    add_destination, and by the dispatcher for a config written around it;
#  - credentials never cross a cleartext connection without
#    "allow_insecure": true, at add_destination and at send time.
use strict;
use warnings;
use Digest::SHA qw(hmac_sha256_hex);
use HTTP::Tiny;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;
use AlertReceivers;

my $node = new_node('alerts_security');
start_with_extension($node);
my $secret = 'whsec-Replay-4242';
my $plain = AlertReceivers::http_receiver($node);
my $verify = AlertReceivers::http_receiver($node, undef, verify_secret => $secret);
my $smtp = AlertReceivers::smtp_receiver($node, auth => 'alerts:smtp-Pw-1');

sub q1 { return $node->safe_psql('postgres', $_[0]); }
sub fails { my ($ret, $out, $err) = $node->psql('postgres', $_[0]); return $err; }
sub wait_outcome
{
	my ($id, $cond, $what) = @_;
	ok($node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM logagg.alert_log WHERE alert_id = $id AND ($cond)"), $what);
}

# ---- destinations_public as logagg_reader ----
q1(q{SET log_statement = 'none';
SELECT logagg.add_destination('slackish', 'slack',
  '{"webhook_url": "https://hooks.slack.example/services/T000/B000/SlackPathSecret1"}');
SELECT logagg.add_destination('teamsish', 'webhook',
  '{"url": "https://org.webhook.office.example/webhookb2/TeamsPath@Secret2/IncomingWebhook/x?token=QuerySecret3#frag"}');
SELECT logagg.add_destination('userinfo', 'webhook',
  '{"url": "https://bob:UserPwSecret4@hooks.example:8443/in?sig=QuerySecret5"}');
SELECT logagg.add_destination('bare', 'pagerduty', '{"url": "https://events.example/", "routing_key": "PdKey6"}');
CREATE ROLE reader LOGIN IN ROLE logagg_reader;});
my %pub = split /[|\n]/, $node->safe_psql('postgres',
	q{SELECT name, coalesce(config->>'url', config->>'webhook_url') FROM logagg.destinations_public ORDER BY 1},
	extra_params => [ '-U', 'reader' ]);
is($pub{slackish}, 'https://hooks.slack.example/********', 'Slack URL: token path replaced');
is($pub{teamsish}, 'https://org.webhook.office.example/********', 'Teams-style URL: path, query and fragment replaced');
is($pub{userinfo}, 'https://********@hooks.example:8443/********', 'user:password@ and query replaced, port kept');
is($pub{bare}, 'https://events.example/', 'a URL without path is shown as is');
my $all = $node->safe_psql('postgres', 'SELECT * FROM logagg.destinations_public', extra_params => [ '-U', 'reader' ]);
unlike($all, qr/Secret\d|PdKey/, 'no token of any URL is visible to logagg_reader');

# ---- signature over timestamp.body; replay refused ----
q1(qq{SET log_statement = 'none';
SELECT logagg.add_destination('signed', 'webhook', '{"url": "$verify->{url}/signed", "secret": "$secret"}');
SELECT logagg.add_destination('legacy', 'webhook',
  '{"url": "$plain->{url}/legacy", "secret": "$secret", "signature_version": 1}');});
my $id = q1("SELECT logagg.test_destination('signed')");
wait_outcome($id, "outcome = 'delivered'", 'signed notification accepted by a verifying receiver');
my ($req) = grep { ($_->{key} // '') eq $id } AlertReceivers::records($verify);
ok($req && $req->{verified}, 'the receiver verified X-Logagg-Signature over X-Logagg-Timestamp.body');
$req //= { headers => {}, body => '' };

sub replay
{
	my (%h) = @_;
	my $res = HTTP::Tiny->new(timeout => 10)->post("$verify->{url}/signed",
		{ headers => { 'content-type' => 'application/json', %h }, content => $req->{body} });
	return $res;
}
my %sig = ('x-logagg-timestamp' => $req->{headers}{'x-logagg-timestamp'},
	'x-logagg-signature' => $req->{headers}{'x-logagg-signature'});
AlertReceivers::control($verify, 'clock?offset=600');
my $res = replay(%sig);
is($res->{status}, 401, 'the captured request replayed 10 minutes later is refused');
like($res->{content}, qr/timestamp too old/, 'because of its timestamp');
AlertReceivers::control($verify, 'clock?offset=0');
$res = replay(%sig, 'x-logagg-timestamp' => $sig{'x-logagg-timestamp'} + 1);
is($res->{status}, 401, 'with a fresh timestamp and the old signature it is refused too');
like($res->{content}, qr/bad signature/, 'because the signature covers the timestamp');

$id = q1("SELECT logagg.test_destination('legacy')");
my @l = AlertReceivers::wait_records($plain, sub { grep { ($_->{key} // '') eq $id } @_ }, 30);
my ($lr) = grep { ($_->{key} // '') eq $id } @l;
is($lr->{headers}{'x-logagg-signature'}, 'sha256=' . hmac_sha256_hex($lr->{body}, $secret),
	'signature_version 1: the older body-only signature');
like(fails(q{SELECT logagg.add_destination('x', 'webhook', '{"url": "https://h.example", "secret": "s", "signature_version": 3}')}),
	qr/"signature_version" in webhook destination config must be 1 or 2/, 'signature_version is checked');

# ---- Slack escaping ----
q1(qq{SELECT logagg.add_destination('slack', 'slack',
  '{"webhook_url": "$plain->{url}/services/x", "allow_insecure": true}');
SELECT logagg.add_route('slack', 'critical', 'svc-slack', '0');});
my $evil = '<!channel> <https://evil.example|click to re-auth> & *bold* `code`';
my $rec = encode_json({ source => 'svc-slack', status => 503, message => $evil });
$rec =~ s/'/''/g;
q1("SELECT logagg.ingest('$rec')");
my @s = AlertReceivers::wait_records($plain, sub { grep { $_->{path} eq '/services/x' } @_ }, 30);
my ($sl) = grep { $_->{path} eq '/services/x' } @s;
my $sb = $sl ? JSON::PP->new->decode($sl->{body}) : {};
my @texts;
my $walk;
$walk = sub {
	my ($v) = @_;
	if (ref $v eq 'HASH') { $walk->($v->{$_}) for keys %$v; }
	elsif (ref $v eq 'ARRAY') { $walk->($_) for @$v; }
	elsif (defined $v) { push @texts, $v; }
};
$walk->({ text => $sb->{text}, blocks => $sb->{blocks} });
ok(scalar(@texts) > 5, 'Slack message received with its blocks');
is(scalar(grep { /[<>]/ } @texts), 0, 'no < or > in any rendered Slack text');
like($sb->{text}, qr/&lt;!channel&gt; &lt;https:\/\/evil\.example\|click to re-auth&gt; &amp; /,
	'top-level text escaped');
like(join("\n", @texts), qr/```&lt;!channel&gt; .* &amp; \*bold\* 'code'```/, 'sample block escaped');
like($sb->{blocks}[0]{text}{text}, qr/&lt;!channel&gt;/, 'header escaped');
is($sb->{metadata}{event_payload}{message}, $evil, 'metadata keeps the raw message as data');

# ---- CR/LF in header values and addresses ----
like(fails(q{SELECT logagg.add_destination('x', 'webhook', '{"url": "https://h.example", "headers": {"X-A": "ok\r\nX-Injected: yes"}}')}),
	qr/a header value in webhook destination config contains a line break/, 'CR/LF in a header value refused');
like(fails(q{SELECT logagg.add_destination('x', 'email', '{"smtp_url": "smtps://h.example", "from": "a@x.example\r\nBcc: evil@x.example", "to": "b@x.example"}')}),
	qr/"from" in email destination config contains a line break/, 'CR/LF in from refused');
like(fails(q{SELECT logagg.add_destination('x', 'email', '{"smtp_url": "smtps://h.example", "from": "a@x.example", "to": ["b@x.example", "c@x.example\nBcc: evil@x.example"]}')}),
	qr/"to" in email destination config must not contain .*line breaks/, 'LF in a to address refused');
like(fails(q{SELECT logagg.add_destination('x', 'email', '{"smtp_url": "smtps://h.example", "from": "a@x.example", "to": "b@x.example", "timeout_ms": 1000}')}),
	qr/^$/, 'a clean email config is accepted');

# written around add_destination: the dispatcher refuses to send
q1(qq{SELECT logagg.add_destination('inject', 'webhook', '{"url": "$plain->{url}/inject"}');
UPDATE logagg.destinations SET config = config || '{"headers": {"X-A": "ok\\r\\nX-Injected: yes"}}' WHERE name = 'inject';});
$id = q1("SELECT logagg.test_destination('inject')");
wait_outcome($id, q{outcome = 'dead' AND error ~ 'refusing to send header "X-A"'}, 'stored header with CR/LF: dead, not sent');
q1(qq{SELECT logagg.add_destination('mailinject', 'email', jsonb_build_object(
  'smtp_url', '$smtp->{url}', 'from', 'a\@x.example', 'to', 'b\@x.example',
  'username', 'alerts', 'password', 'smtp-Pw-1', 'allow_insecure', true));
UPDATE logagg.destinations SET config = config || jsonb_build_object('from', E'a\@x.example\\r\\nBcc: evil\@x.example')
 WHERE name = 'mailinject';});
$id = q1("SELECT logagg.test_destination('mailinject')");
wait_outcome($id, q{outcome = 'dead' AND error ~ '"from" of email destination "mailinject" contains a line break'},
	'stored from with CR/LF: dead, not sent');
ok(!(grep { ($_->{path} // '') eq '/inject' } AlertReceivers::records($plain)), 'the receiver got no request from it');

# ---- credentials over cleartext ----
like(fails(qq{SELECT logagg.add_destination('x', 'email', '{"smtp_url": "$smtp->{url}", "from": "a\@x.example", "to": "b\@x.example", "username": "u", "password": "p"}')}),
	qr/would send its SMTP credentials unencrypted over smtp:\/\/ without STARTTLS.*\n.*HINT:.*allow_insecure/,
	'smtp:// with credentials and no STARTTLS refused, with a hint');
for my $c (
	[ 'sms', qq{{"base_url": "$plain->{url}/", "account_sid": "AC1", "auth_token": "t", "from": "+1", "to": "+2"}}, '"auth_token"' ],
	[ 'pagerduty', qq{{"url": "$plain->{url}/pd", "routing_key": "k"}}, '"routing_key"' ],
	[ 'slack', qq{{"webhook_url": "$plain->{url}/s"}}, '"webhook_url"' ],
	[ 'webhook', qq{{"url": "$plain->{url}/w", "headers": {"Authorization": "Bearer t"}}}, '"headers"' ],
	[ 'webhook', qq{{"url": "http://u:p\@127.0.0.1:9/w"}}, 'user:password@ of its URL' ])
{
	my ($kind, $cfg, $what) = @$c;
	like(fails("SELECT logagg.add_destination('x', '$kind', '$cfg')"),
		qr/\Q$kind\E destination config would send \Q$what\E unencrypted over a cleartext URL/,
		"$kind over http:// sending $what refused");
}
for my $cfg (qq{{"smtp_url": "$smtp->{url}", "from": "a\@x.example", "to": "b\@x.example", "username": "u", "password": "p", "starttls": true}},
	qq{{"smtp_url": "smtps://127.0.0.1:9", "from": "a\@x.example", "to": "b\@x.example", "username": "u", "password": "p"}},
	qq{{"smtp_url": "$smtp->{url}", "from": "a\@x.example", "to": "b\@x.example", "username": "u", "password": "p", "allow_insecure": true}})
{
	is(fails("SELECT logagg.add_destination('x', 'email', '$cfg')"), '', "accepted: $cfg");
}

# at send time: configs written around add_destination
q1(qq{SELECT logagg.add_destination('mail', 'email', jsonb_build_object(
  'smtp_url', '$smtp->{url}', 'from', 'a\@x.example', 'to', 'b\@x.example',
  'username', 'alerts', 'password', 'smtp-Pw-1', 'allow_insecure', true));
SELECT logagg.add_destination('sms', 'sms', jsonb_build_object(
  'base_url', '$plain->{url}/twilio', 'account_sid', 'AC1', 'auth_token', 'tok-Clear-7',
  'from', '+1', 'to', '+2', 'allow_insecure', true));});
$id = q1("SELECT logagg.test_destination('mail')");
wait_outcome($id, "outcome = 'delivered'", 'with allow_insecure the loopback mail goes out');
is(scalar(AlertReceivers::wait_records($smtp, sub { @_ >= 1 }, 30)), 1, 'one mail received');
q1(q{UPDATE logagg.destinations SET config = config - 'allow_insecure' WHERE name IN ('mail', 'sms')});
$id = q1("SELECT logagg.test_destination('mail')");
wait_outcome($id, q{outcome = 'dead' AND error ~* 'SSL|TLS'}, 'without it: STARTTLS required, the server has none: dead');
$id = q1("SELECT logagg.test_destination('sms')");
wait_outcome($id, q{outcome = 'dead' AND error ~ 'refusing to send the SMS auth_token .*over a cleartext connection'},
	'an http:// SMS base_url without allow_insecure: dead before sending');
is(scalar(AlertReceivers::records($smtp)), 1, 'no further mail (no AUTH in clear)');
ok(!(grep { $_->{path} =~ m{^/twilio} } AlertReceivers::records($plain)), 'no SMS request (no basic auth in clear)');

$node->stop;
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$secret\E/, 'the webhook secret is not in the server log');
done_testing();
