# 514_route_groups_resolved.pl -- a route group's later notifications:
# resolved alerts go out in the group's next notification next to the
# ones still firing, and the last one that resolves makes a notification
# whose status is resolved; send_resolved = false sends neither;
# repeat_interval re-sends an unchanged firing group (new alert_id, same
# fingerprint; the rule's 6 s window keeps both alerts firing well past
# it); PagerDuty gets one event per group: trigger, trigger, then
# resolve with the same dedup_key; Slack gets one message per group
# notification, listing its alerts.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;
use AlertReceivers;

my $node = new_node('route_groups_resolved', "logagg.rule_eval_interval = '200ms'\n");
start_with_extension($node);
my $rcv = AlertReceivers::http_receiver($node);
my $u = $rcv->{url};

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub at
{
	my ($path) = @_;
	return map { +{ %$_, json => (eval { JSON::PP->new->decode($_->{body}) } // {}) } }
	  grep { $_->{path} eq $path } AlertReceivers::records($rcv);
}

# "source:status" of a notification's alerts, sorted
sub alerts_of
{
	my ($p) = @_;
	return join(' ', sort map { "$_->{labels}{source}:$_->{status}" } @{ $p->{alerts} // [] });
}

sub ingest
{
	my (@src) = @_;
	my $arr = join(',', map { qq({"source": "$_", "level": "info", "message": "tick"}) } @src);
	sql("SELECT logagg.ingest('[$arr]')");
}

sql(qq{
SET log_statement = 'none';
SELECT logagg.add_destination('grp', 'webhook', '{"url": "$u/grp"}');
SELECT logagg.add_destination('nores', 'webhook', '{"url": "$u/nores"}');
SELECT logagg.add_destination('rep', 'webhook', '{"url": "$u/rep"}');
SELECT logagg.add_destination('pd', 'pagerduty', '{"url": "$u/pd", "routing_key": "rk-1", "allow_insecure": true}');
SELECT logagg.add_destination('chat', 'slack', '{"webhook_url": "$u/slack", "allow_insecure": true}');
SELECT logagg.set_route_grouping(logagg.add_route(d, 'high'), ARRAY['rule'], '1 s', '2 s')
  FROM unnest(ARRAY['grp', 'nores', 'pd', 'chat']) d;
SELECT logagg.set_route_grouping(logagg.add_route('rep', 'high'), ARRAY[]::text[], '0 s', '1 s');
UPDATE logagg.routes SET repeat_interval = NULL WHERE destination <> 'rep';
UPDATE logagg.routes SET repeat_interval = '2 s', send_resolved = false WHERE destination = 'rep';
UPDATE logagg.routes SET send_resolved = false WHERE destination = 'nores';
SELECT logagg.add_alert_rule('r-win', '{"source": "r-*"}', '6 s', 0);
});

# r-1 and r-2 fire together; r-2 keeps receiving records (so it keeps
# firing) until r-1 has resolved and the group's notification saying so
# has gone out
ingest('r-1', 'r-2');
ok($node->poll_query_until('postgres', "SELECT count(*) = 2 FROM logagg.alerts WHERE state = 'firing'"),
	'two alerts fire');
ok(poll_until(sub { ingest('r-2'); grep { $_->{json}{resolved} } at('/grp') }, 60),
	'r-1 resolves while r-2 fires, and the group is notified');
is(sql("SELECT state FROM logagg.alerts WHERE labels->>'source' = 'r-2'"), 'firing', 'r-2 still fires');
my @rep = at('/rep');
# then r-2 resolves too
ok($node->poll_query_until('postgres', "SELECT count(*) = 0 FROM logagg.alerts WHERE state = 'firing'"),
	'r-2 resolves');
ok(poll_until(sub { grep { $_->{json}{status} eq 'resolved' } at('/grp') }, 30),
	'the group is notified that all its alerts resolved');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM logagg.alert_queue WHERE dead_at IS NULL'),
	'the queue is empty');
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM logagg._route_groups'),
	'the groups end with their alerts');

# --- send_resolved = true: firing, then resolved alerts in the next ones ---
my @g = at('/grp');
is_deeply([ map { alerts_of($_->{json}) } @g ],
	[ 'r-1:firing r-2:firing', 'r-1:resolved r-2:firing', 'r-2:resolved' ],
	'three notifications: both firing; r-1 resolved next to r-2 firing; r-2 resolved');
is_deeply([ map { $_->{json}{status} } @g ], [ 'firing', 'firing', 'resolved' ],
	'top-level status: firing while any alert fires');
is_deeply([ map { "$_->{json}{firing}/$_->{json}{resolved}" } @g ], [ '2/0', '1/1', '0/1' ],
	'numbers of firing and resolved alerts');
my ($r1) = grep { $_->{labels}{source} eq 'r-1' } @{ $g[1]{json}{alerts} };
like($r1->{ends_at}, qr/^\d{4}-.*Z$/, 'a resolved alert has its ends_at');
is_deeply($g[0]{json}{group_labels}, { rule => 'r-win' }, 'group_labels: the rule');
is(scalar(keys %{ { map { $_->{json}{fingerprint} => 1 } @g } }), 1, 'one fingerprint for the group');
is(scalar(keys %{ { map { $_->{key} => 1 } @g } }), 3, 'an Idempotency-Key per notification');

# --- send_resolved = false: only the first ---
my @nr = at('/nores');
is_deeply([ map { alerts_of($_->{json}) } @nr ], ['r-1:firing r-2:firing'],
	'send_resolved = false: no notification for resolutions');

# --- repeat_interval: the unchanged group again, as a new alert_id ---
cmp_ok(scalar(@rep), '>=', 2, scalar(@rep) . ' notifications on the repeating route while both fired');
is(alerts_of($rep[1]{json}), alerts_of($rep[0]{json}), 'the repeat carries the same alerts');
isnt($rep[1]{json}{alert_id}, $rep[0]{json}{alert_id}, 'as a new alert_id');
is($rep[1]{json}{fingerprint}, $rep[0]{json}{fingerprint}, 'with the same fingerprint');
cmp_ok($rep[1]{t} - $rep[0]{t}, '>=', 1.5, 'repeat_interval (2 s) after the previous one');
ok(!grep({ $_->{json}{resolved} } at('/rep')), 'send_resolved = false on it: no resolved alerts');

# --- PagerDuty: one event per group notification, same dedup_key ---
my @pd = at('/pd');
is_deeply([ map { $_->{json}{event_action} } @pd ], [ 'trigger', 'trigger', 'resolve' ],
	'PagerDuty: trigger, trigger (r-1 resolved in it), resolve when all resolved');
is(scalar(keys %{ { map { $_->{json}{dedup_key} => 1 } @pd } }), 1, 'all with one dedup_key');
like($pd[0]{json}{dedup_key}, qr/^group-[0-9a-f]{16}$/, 'the group\'s fingerprint');
is(scalar(@{ $pd[0]{json}{payload}{custom_details}{alerts} }), 2, 'custom_details lists the alerts');

# --- Slack: one message per notification, listing the alerts ---
my @sl = at('/slack');
is(scalar(@sl), 3, 'three Slack messages');
like($sl[0]{json}{text}, qr/^\[HIGH\] 2 firing, 0 resolved: r-win \{"rule": "r-win"\}$/, 'headline: the group');
my $section = $sl[0]{json}{blocks}[2]{text}{text};
like($section, qr/- r-win firing: count \d+ \{"source": "r-1"\}/, 'the message lists r-1');
like($section, qr/- r-win firing: count \d+ \{"source": "r-2"\}/, 'and r-2');
like($sl[2]{json}{text}, qr/^\[RESOLVED\] \[HIGH\] 0 firing, 1 resolved/, 'the last one is resolved');

$node->stop;
done_testing();
