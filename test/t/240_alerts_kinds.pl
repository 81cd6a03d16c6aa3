# 240_alerts_kinds.pl — every destination kind reaches a local receiver
# with its documented shape: e-mail through a real SMTP server (aiosmtpd,
# with AUTH), Slack incoming-webhook blocks, Twilio-style SMS form posts
# with basic auth, PagerDuty Events v2.  Then the secrets check: none of
# them is readable by logagg_reader, and none is in the server log.  The
# receivers are plain-text loopback servers: the destinations that send
# credentials say "allow_insecure": true.
use strict;
use warnings;
use JSON::PP;
use MIME::Base64;
use Encode qw(decode);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;
use AlertReceivers;

# receiver records hold bodies as characters already
sub dj { return JSON::PP->new->decode($_[0]); }

my $node = new_node('alerts_kinds');
start_with_extension($node);
my $http = AlertReceivers::http_receiver($node);
my %secret = (
	smtp => 'smtp-Pw-7731-secret',
	sms => 'twilio-Tok-5521-secret',
	pd => 'pd-Routing-8812-secret',
	slack => 'T000/B000/slack-Hook-4410-secret',
	webhook => 'whsec-Kinds-9901-secret');
my $smtp = AlertReceivers::smtp_receiver($node, auth => "alerts:$secret{smtp}");

$node->safe_psql('postgres', qq{
SET log_statement = 'none';
SELECT logagg.add_destination('mail', 'email', jsonb_build_object(
  'smtp_url', '$smtp->{url}', 'from', 'logagg <alerts\@example.com>',
  'to', jsonb_build_array('oncall\@example.com', 'Team <team\@example.com>'),
  'username', 'alerts', 'password', '$secret{smtp}', 'allow_insecure', true));
SELECT logagg.add_destination('slack', 'slack', jsonb_build_object(
  'webhook_url', '$http->{url}/services/$secret{slack}', 'allow_insecure', true));
SELECT logagg.add_destination('sms', 'sms', jsonb_build_object(
  'base_url', '$http->{url}/twilio/', 'account_sid', 'AC123', 'auth_token', '$secret{sms}',
  'from', '+15550001', 'to', jsonb_build_array('+15550002', '+15550003'), 'allow_insecure', true));
SELECT logagg.add_destination('pd', 'pagerduty', jsonb_build_object(
  'url', '$http->{url}/v2/enqueue', 'routing_key', '$secret{pd}', 'allow_insecure', true));
SELECT logagg.add_destination('hook', 'webhook', jsonb_build_object(
  'url', '$http->{url}/hook', 'secret', '$secret{webhook}'));
SELECT logagg.add_route(d, 'critical', 'service-a', '1 min') FROM unnest(ARRAY['mail','slack','sms','pd','hook']) d;
});

# 123 records of one fingerprint in one batch: one notification, count 123
my @recs = map { qq{{"source":"service-a","status":503,"level":"error","message":"503 GET /api/orders"}} } 1 .. 123;
$node->safe_psql('postgres', "SELECT logagg.ingest('[" . join(',', @recs) . "]')");
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 5 FROM logagg.alert_log WHERE outcome = 'delivered'"),
	'all five destinations delivered');

# ---- e-mail ----
my @mail = AlertReceivers::wait_records($smtp, sub { @_ >= 1 }, 30);
is(scalar(@mail), 1, 'one mail');
my $m = $mail[0] // {};
is($m->{mail_from}, 'alerts@example.com', 'MAIL FROM is the bare address');
is_deeply([ sort @{ $m->{rcpt_tos} // [] } ], [ 'oncall@example.com', 'team@example.com' ], 'RCPT TO each recipient');
is($m->{auth_user}, 'alerts', 'authenticated with the configured user');
my ($subj) = ($m->{data} // '') =~ /^Subject: (.*?)\r?$/m;
my $decoded = $subj // '';
$decoded =~ s/=\?UTF-8\?B\?(.*?)\?=/decode('UTF-8', decode_base64($1))/ge;
is($decoded, "[CRITICAL] service-a: 503 GET /api/orders \x{d7}123", 'readable subject');
like($m->{data}, qr/^count:\s+123\r?$/m, 'body has the count');
like($m->{data}, qr/^message \(sample\):\r?\n503 GET \/api\/orders/m, 'body has the sample');
for my $f (qw(severity source status level first_seen last_seen fingerprint destination alert_id))
{
	like($m->{data}, qr/^$f:\s+\S/m, "body has $f");
}

# ---- Slack ----
my @h = AlertReceivers::records($http);
my ($sl) = grep { $_->{path} =~ m{^/services/} } @h;
ok($sl, 'slack request received');
my $sb = $sl ? dj($sl->{body}) : {};
like($sb->{text}, qr/^\[CRITICAL\] service-a: 503 GET \/api\/orders/, 'slack text is the headline');
my @types = map { $_->{type} } @{ $sb->{blocks} // [] };
is(join(',', @types), 'header,section,section,context', 'slack blocks');
my $fields = join(' ', map { $_->{text} } @{ $sb->{blocks}[1]{fields} // [] });
like($fields, qr/\*Severity\*\ncritical/, 'severity field');
like($fields, qr/\*Source\*\nservice-a/, 'source field');
like($fields, qr/\*Count\*\n123/, 'count field');
like($sb->{blocks}[2]{text}{text}, qr/503 GET \/api\/orders/, 'sample block');
like($sb->{blocks}[3]{elements}[0]{text}, qr/\d{4}-\d\d-\d\dT.*\x{2192}/, 'time range block');
is($sb->{metadata}{event_type}, 'logagg_alert', 'metadata event type');
is($sb->{metadata}{event_payload}{count}, 123, 'metadata carries the fixed fields');

# ---- SMS ----
my @sms = grep { $_->{path} =~ m{^/twilio/} } @h;
is(scalar(@sms), 2, 'one SMS request per recipient');
is($sms[0]{path}, '/twilio/2010-04-01/Accounts/AC123/Messages.json', 'Twilio Messages path');
like($sms[0]{headers}{'content-type'}, qr{application/x-www-form-urlencoded}, 'form post');
is($sms[0]{headers}{authorization}, 'Basic ' . encode_base64("AC123:$secret{sms}", ''), 'basic auth sid:token');
my %form = map { my ($k, $v) = split /=/, $_, 2; $v =~ tr/+/ /; $v =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge; ($k => $v) } split /&/, $sms[0]{body};
is($form{From}, '+15550001', 'From');
like(join(',', sort map { /To=([^&]+)/ ? $1 : () } map { $_->{body} } @sms), qr/%2B15550002,%2B15550003/, 'To each recipient');
like(decode('UTF-8', $form{Body}), qr/^\[CRITICAL\] service-a: 503 GET \/api\/orders \x{d7}123$/, 'short text');

# ---- PagerDuty ----
my ($pd) = grep { $_->{path} eq '/v2/enqueue' } @h;
ok($pd, 'pagerduty request received');
my $pb = $pd ? dj($pd->{body}) : {};
is($pb->{event_action}, 'trigger', 'trigger event');
is($pb->{routing_key}, $secret{pd}, 'routing key');
is($pb->{dedup_key}, dj((grep { $_->{path} eq '/hook' } @h)[0]{body})->{fingerprint}, 'dedup_key = fingerprint');
is($pb->{payload}{severity}, 'critical', 'PD severity');
is($pb->{payload}{source}, 'service-a', 'PD source');
like($pb->{payload}{summary}, qr/^\[CRITICAL\] service-a/, 'PD summary');
for my $f (qw(severity source fingerprint count first_seen last_seen status level message destination alert_id))
{
	ok(exists $pb->{payload}{custom_details}{$f}, "PD custom_details has $f");
}
ok(!(grep { !defined $_->{key} || $_->{key} !~ /^\d+$/ } @h), 'every HTTP kind sends Idempotency-Key');

# ---- secrets ----
$node->safe_psql('postgres', q{CREATE ROLE reader LOGIN IN ROLE logagg_reader; CREATE ROLE admin LOGIN IN ROLE logagg_admin; ALTER ROLE admin SET log_statement = 'none';});
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT config FROM logagg.destinations', extra_params => [ '-U', 'reader' ]);
like($err, qr/permission denied/, 'logagg_reader cannot read destinations.config');
($ret, $out, $err) = $node->psql('postgres', 'SELECT * FROM logagg.destinations', extra_params => [ '-U', 'reader' ]);
like($err, qr/permission denied/, 'nor SELECT * from destinations');
$out = $node->safe_psql('postgres', 'SELECT name, kind, enabled FROM logagg.destinations ORDER BY 1', extra_params => [ '-U', 'reader' ]);
like($out, qr/mail\|email/, 'but can list destinations without config');
$out = $node->safe_psql('postgres', 'SELECT * FROM logagg.destinations_public', extra_params => [ '-U', 'reader' ]);
like($out, qr/slack/, 'and read destinations_public');
$out .= $node->safe_psql('postgres', 'SELECT * FROM logagg.alert_queue; SELECT * FROM logagg.alert_log; SELECT * FROM logagg.alert_summary',
	extra_params => [ '-U', 'reader' ]);
for my $k (sort keys %secret)
{
	unlike($out, qr/\Q$secret{$k}\E/, "reader never sees the $k secret");
}
($ret, $out, $err) = $node->psql('postgres', q{SELECT logagg.add_destination('x', 'webhook', '{"url":"http://127.0.0.1:1/"}')},
	extra_params => [ '-U', 'reader' ]);
like($err, qr/permission denied/, 'reader cannot configure');
$out = $node->safe_psql('postgres', q{SELECT config->>'password' FROM logagg.destinations WHERE name = 'mail'},
	extra_params => [ '-U', 'admin' ]);
is($out, $secret{smtp}, 'logagg_admin can read configs');
# a failing call as admin must not copy the config into the log as STATEMENT
($ret, $out, $err) = $node->psql('postgres',
	qq{SELECT logagg.add_destination('y', 'webhook', '{"url": "ftp://x", "secret": "$secret{webhook}"}')},
	extra_params => [ '-U', 'admin' ]);
like($err, qr/must be an http/, 'admin gets a clear error');
unlike($err, qr/\Q$secret{webhook}\E/, 'that does not echo the secret');

$node->stop;
my $log = slurp_file($node->logfile);
for my $k (sort keys %secret)
{
	unlike($log, qr/\Q$secret{$k}\E/, "the $k secret is not in the server log");
}
done_testing();
