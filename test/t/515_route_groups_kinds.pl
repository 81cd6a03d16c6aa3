# 515_route_groups_kinds.pl -- route grouping with the other group_by
# forms and the per-route guards, to the recording receiver:
#   * group_by '{}' (one group for the route) to an alertmanager
#     destination: one POST to /api/v2/alerts carrying every alert of the
#     group, each with its own labels;
#   * group_by '{...}' (all labels): a group per alert, group_labels = all
#     of its labels;
#   * the storm guard counts group notifications: max_notifications = 1
#     gives one notification and a digest of the other groups' alerts;
#   * mute time intervals mute a group notification (logged as silenced);
#   * a group of 205 alerts is one notification whose list holds 200 of
#     them (count has all), and fits a Slack section.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;
use AlertReceivers;

my $node = new_node('route_groups_kinds', "logagg.rule_eval_interval = '200ms'\n");
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

sql(qq{
SET log_statement = 'none';
SELECT logagg.add_destination('am', 'alertmanager', '{"url": "$u/am"}');
SELECT logagg.add_destination('all', 'webhook', '{"url": "$u/all"}');
SELECT logagg.add_destination('storm', 'webhook', '{"url": "$u/storm"}');
SELECT logagg.add_destination('muted', 'webhook', '{"url": "$u/muted"}');
SELECT logagg.set_route_grouping(logagg.add_route('am', 'high'), ARRAY[]::text[], '1 s', '1 min');
SELECT logagg.set_route_grouping(logagg.add_route('all', 'high'), ARRAY['...'], '1 s', '1 min');
SELECT logagg.set_route_grouping(logagg.add_route('storm', 'high', NULL, '3 s'), ARRAY['source'], '0 s', '1 min');
SELECT logagg.set_route_grouping(logagg.add_route('muted', 'high'), ARRAY['rule'], '0 s', '1 min');
UPDATE logagg.routes SET repeat_interval = NULL;
UPDATE logagg.routes SET max_notifications = 1 WHERE destination = 'storm';
SELECT logagg.set_route_mute_times(id, '[{"times": [{"start_time": "00:00", "end_time": "24:00"}]}]')
  FROM logagg.routes WHERE destination = 'muted';
SELECT logagg.add_alert_rule('m-rule', '{"source": "m-*"}', '1 min', 0, severity => 'critical');
});
sql(q{SELECT logagg.ingest('[{"source": "m-1", "level": "info", "message": "x"},
                             {"source": "m-2", "level": "info", "message": "x"},
                             {"source": "m-3", "level": "info", "message": "x"}]')});
ok($node->poll_query_until('postgres', "SELECT count(*) = 3 FROM logagg.alerts WHERE state = 'firing'"),
	'three alerts fire');

# --- '{}' to Alertmanager: one POST with the three alerts ---
ok(poll_until(sub { scalar(at('/am/api/v2/alerts')) >= 1 }, 30), 'Alertmanager got a post');
my @am = at('/am/api/v2/alerts');
is(scalar(@am), 1, 'one post for the one group of the route');
my @alerts = sort { $a->{labels}{source} cmp $b->{labels}{source} } @{ $am[0]{json} };
is_deeply([ map { $_->{labels}{source} } @alerts ], [ 'm-1', 'm-2', 'm-3' ], 'carrying every alert of the group');
is($alerts[0]{labels}{alertname}, 'm-rule', 'alertname is the rule');
is($alerts[0]{labels}{severity}, 'critical', 'severity label');
like($alerts[0]{startsAt}, qr/^\d{4}-\d\d-\d\dT/, 'startsAt set');
ok(!exists $alerts[0]{endsAt}, 'no endsAt while firing');
like($alerts[0]{generatorURL}, qr{^logagg:/alerts/\d+$}, 'generatorURL names the notification');

# --- '{...}': a group per alert, labelled with all its labels ---
ok(poll_until(sub { scalar(at('/all')) >= 3 }, 30), 'three notifications with group_by {...}');
my @all = sort { $a->{json}{group_labels}{source} cmp $b->{json}{group_labels}{source} } at('/all');
is(scalar(@all), 3, 'exactly three');
is_deeply($all[0]{json}{group_labels}, { rule => 'm-rule', source => 'm-1', severity => 'critical' },
	'group_labels: every label of the alert');
is(scalar(@{ $all[0]{json}{alerts} }), 1, 'one alert each');

# --- storm guard: one group notification, then a digest of the rest ---
ok(poll_until(sub { scalar(at('/storm')) >= 2 }, 30), 'the storm-guarded route sent a notification and a digest');
my @st = at('/storm');
is(scalar(@st), 2, 'two requests for three groups (max_notifications = 1)');
is(scalar(@{ $st[0]{json}{alerts} // [] }), 1, 'the first is a group notification');
ok($st[1]{json}{digest}, 'the second is the digest');
is($st[1]{json}{count}, 2, 'counting the alerts of the other two groups');
is($st[1]{json}{message}, 'and 2 more alerts from 2 fingerprints', 'with its message');

# --- mute time intervals: the group notification is muted ---
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM logagg.alert_log WHERE destination = 'muted' AND outcome = 'silenced'"),
	'the muted route logged its group notification as silenced');
is(sql("SELECT count || ' ' || error FROM logagg.alert_log WHERE destination = 'muted'"),
	'3 muted by the mute_time_intervals of route 4', 'one notification of three alerts, muted');
is(scalar(at('/muted')), 0, 'and sent nothing');

# --- a group of 205 alerts: one notification, its list bounded ---
sql(qq{
SET log_statement = 'none';
SELECT logagg.add_destination('big', 'webhook', '{"url": "$u/big"}');
SELECT logagg.add_destination('bigchat', 'slack', '{"webhook_url": "$u/bigchat", "allow_insecure": true}');
SELECT logagg.set_route_grouping(r, ARRAY['rule'], '1 s', '1 min'),
       logagg.set_route_matchers(r, '["rule=\\"big-rule\\""]')
  FROM (SELECT logagg.add_route(d, 'low') AS r FROM unnest(ARRAY['big', 'bigchat']) d) x;
UPDATE logagg.routes SET repeat_interval = NULL;
SELECT logagg.add_alert_rule('big-rule', '{"source": "big-*"}', '1 min', 0, severity => 'low');
});
sql(q{SELECT logagg.ingest((SELECT jsonb_agg(jsonb_build_object('source', 'big-' || i, 'level', 'info', 'message', 'x'))
                            FROM generate_series(1, 205) i))});
ok(poll_until(sub { scalar(at('/big')) >= 1 && scalar(at('/bigchat')) >= 1 }, 60), 'the big group was notified');
my ($big) = at('/big');
is(scalar(at('/big')), 1, 'once');
is($big->{json}{count}, 205, 'count: all 205 alerts');
is($big->{json}{firing}, 205, 'all firing');
is(scalar(@{ $big->{json}{alerts} }), 200, 'the list holds 200 of them');
like($big->{json}{message}, qr/\n\(and 5 more\)\z/, 'the message says how many more');
my ($chat) = at('/bigchat');
cmp_ok(length($chat->{json}{blocks}[2]{text}{text}), '<=', 3000, 'Slack: the list fits a section (3000 characters)');
like($chat->{json}{text}, qr/^\[LOW\] 205 firing, 0 resolved: big-rule/, 'Slack headline: the group');

$node->stop;
done_testing();
