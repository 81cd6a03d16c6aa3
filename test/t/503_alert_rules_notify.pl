# 503_alert_rules_notify.pl -- firing and resolved notifications of an
# alert rule through the existing routes, to the recording receiver:
# PagerDuty gets "trigger" and then "resolve" with the same dedup_key;
# Slack gets a firing and a "[RESOLVED]" message; a route with
# send_resolved = false gets the firing notification only; a route with
# repeat_interval = 1 s gets the firing notification again while the
# alert fires (same fingerprint, new alert_id); per-record alerts of the
# same route still work.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;
use AlertReceivers;

my $node = new_node('alert_rules_notify', "logagg.rule_eval_interval = '200ms'\n");
start_with_extension($node);
my $rcv = AlertReceivers::http_receiver($node);
my $u = $rcv->{url};
$node->safe_psql('postgres', qq{
SET log_statement = 'none';
SELECT logagg.add_destination('pd', 'pagerduty', '{"url": "$u/pd", "routing_key": "rk-1", "allow_insecure": true}');
SELECT logagg.add_destination('chat', 'slack', '{"webhook_url": "$u/slack", "allow_insecure": true}');
SELECT logagg.add_destination('nores', 'webhook', '{"url": "$u/nores"}');
SELECT logagg.add_destination('again', 'webhook', '{"url": "$u/again"}');
SELECT logagg.add_route('pd', 'high');
SELECT logagg.add_route('chat', 'high');
SELECT logagg.add_route('nores', 'high');
SELECT logagg.add_route('again', 'high');
UPDATE logagg.routes SET send_resolved = false WHERE destination = 'nores';
UPDATE logagg.routes SET repeat_interval = '1 s' WHERE destination = 'again';
SELECT logagg.add_alert_rule('n-errors', '{"source": "n-src"}', '5 s', 0, severity => 'critical');
});

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub at
{
	my ($path) = @_;
	# bodies are already characters (the receiver's lines were decoded)
	return map { +{ %$_, json => (eval { JSON::PP->new->decode($_->{body}) } // {}) } }
	  grep { $_->{path} eq $path } AlertReceivers::records($rcv);
}

sql(q{SELECT logagg.ingest('{"source": "n-src", "level": "info", "message": "first"}')});

# --- PagerDuty: trigger, then resolve with the same dedup_key ---
ok(poll_until(sub { grep { $_->{json}{event_action} eq 'resolve' } at('/pd') }, 40),
	'PagerDuty got a resolve');
my @pd = at('/pd');
is_deeply([ map { $_->{json}{event_action} } @pd ], [ 'trigger', 'resolve' ], 'trigger, then resolve');
is($pd[1]{json}{dedup_key}, $pd[0]{json}{dedup_key}, 'resolve carries the dedup_key of the trigger');
like($pd[0]{json}{dedup_key}, qr/^rule-/, 'dedup_key from the rule and its labels');
is($pd[0]{json}{payload}{severity}, 'critical', 'PagerDuty severity of the rule');
is($pd[0]{json}{payload}{custom_details}{rule}, 'n-errors', 'custom_details has the rule');
is($pd[1]{json}{payload}{custom_details}{status}, 'resolved', 'and the status');

# --- Slack: firing, then a resolved message ---
ok(poll_until(sub { scalar(at('/slack')) >= 2 }, 30), 'Slack got two messages');
my @sl = at('/slack');
unlike($sl[0]{json}{text}, qr/RESOLVED/, 'the first is the firing one');
like($sl[0]{json}{text}, qr/^\[CRITICAL\] n-src: n-errors firing: count 1 /, 'naming the rule and its value');
like($sl[1]{json}{text}, qr/^\[RESOLVED\] \[CRITICAL\] n-src: n-errors resolved/, 'the second says resolved');
is($sl[1]{json}{metadata}{event_payload}{status}, 'resolved', 'metadata payload: resolved');

# --- send_resolved = false: the firing notification only ---
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM logagg.alert_queue WHERE dead_at IS NULL'),
	'the queue is empty');
my @nr = at('/nores');
is_deeply([ map { $_->{json}{status} } @nr ], ['firing'], 'send_resolved = false: no resolved notification');

# --- repeat_interval = 1 s: re-sent while firing ---
my @ag = at('/again');
my @firing = grep { $_->{json}{status} eq 'firing' } @ag;
cmp_ok(scalar(@firing), '>=', 2, scalar(@firing) . ' firing notifications while it fired (repeats)');
is(scalar(grep { $_->{json}{status} eq 'resolved' } @ag), 1, 'and one resolved');
is(scalar(keys %{ { map { $_->{json}{fingerprint} => 1 } @ag } }), 1, 'all with one fingerprint');
is(scalar(keys %{ { map { $_->{json}{alert_id} => 1 } @ag } }), scalar(@ag), 'each its own alert_id');
is(scalar(grep { ($_->{json}{metadata}{event_payload}{status} // '') eq 'firing' } at('/slack')), 1,
	'the default repeat_interval (4 hours) sent no repeat to the other routes');

# --- per-record alerts on the same routes still work ---
sql(q{SELECT logagg.ingest('{"source": "other", "status": 503, "message": "503 upstream"}')});
ok(poll_until(sub { grep { ($_->{json}{message} // '') eq '503 upstream' } at('/nores') }, 30),
	'a per-record alert still goes out');
my ($rec) = grep { ($_->{json}{message} // '') eq '503 upstream' } at('/nores');
is($rec->{json}{status}, 503, 'with its HTTP status');
ok(!exists $rec->{json}{rule}, 'and no rule fields');

$node->stop;
done_testing();
