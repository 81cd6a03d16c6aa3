# 513_route_groups.pl -- routes with group_by / group_wait / group_interval
# (like Alertmanager), to the recording webhook receiver:
#   * three rule alerts of two groups (attrs.team a and b) under one route
#     give one notification per group, not before group_wait after they
#     fired, each carrying exactly its group's alerts;
#   * two more alerts joining group a within group_interval give one more
#     notification for it, at group_interval after the previous one and
#     not before, carrying all four alerts;
#   * a route without group_by (NULL) still gets one notification per
#     alert, with the payload of a single rule alert;
#   * set_route_grouping checks its arguments.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;
use AlertReceivers;

my $node = new_node('route_groups', "logagg.rule_eval_interval = '200ms'\n");
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

sub team { my ($r) = @_; return $r->{json}{group_labels}{'attrs.team'} // ''; }

sub ingest
{
	my (@recs) = @_;
	my $arr = join(',', map { qq({"source": "$_->[0]", "level": "info", "message": "boom", "team": "$_->[1]"}) } @recs);
	sql("SELECT logagg.ingest('[$arr]')");
}

my $grp_route = sql(qq{
SET log_statement = 'none';
SELECT logagg.add_destination('grp', 'webhook', '{"url": "$u/grp"}');
SELECT logagg.add_destination('flat', 'webhook', '{"url": "$u/flat"}');
SELECT logagg.add_route('flat', 'high');
SELECT logagg.add_route('grp', 'high');
});
($grp_route) = $grp_route =~ /(\d+)\s*\z/;
sql(qq{
UPDATE logagg.routes SET repeat_interval = NULL;
SELECT logagg.set_route_grouping($grp_route, ARRAY['attrs.team'], '2 s', '6 s');
SELECT logagg.add_alert_rule('team-errors', '{"source": "g-*"}', '1 min', 0,
                             group_by => ARRAY['source', 'attrs.team']);
});
is(sql("SELECT group_by::text || ' ' || group_wait || ' ' || group_interval FROM logagg.routes WHERE id = $grp_route"),
	'{attrs.team} 00:00:02 00:00:06', 'set_route_grouping stored the grouping');

# --- two groups, one notification each after group_wait ---
ingest([ 'g-1', 'a' ], [ 'g-2', 'a' ], [ 'g-3', 'b' ]);
ok($node->poll_query_until('postgres', "SELECT count(*) = 3 FROM logagg.alerts WHERE state = 'firing'"),
	'three alerts fire');
my $fired1 = sql("SELECT extract(epoch FROM max(fired_at)) FROM logagg.alerts");
ok(poll_until(sub { scalar(at('/grp')) >= 2 }, 30), 'the grouped route got its notifications');
ok(poll_until(sub { scalar(at('/flat')) >= 3 }, 30), 'the route without group_by got its notifications');
my @g = sort { team($a) cmp team($b) } at('/grp');
is(scalar(@g), 2, 'one notification per group, not one per alert');
is_deeply([ map { team($_) } @g ], [ 'a', 'b' ], 'groups a and b');
is_deeply([ sort map { $_->{labels}{source} } @{ $g[0]{json}{alerts} } ], [ 'g-1', 'g-2' ],
	'group a carries the alerts of g-1 and g-2');
is_deeply([ map { $_->{labels}{source} } @{ $g[1]{json}{alerts} } ], ['g-3'], 'group b carries g-3');
cmp_ok($_->{t}, '>=', $fired1 + 2, 'sent group_wait (2 s) after the alerts fired, not before') for @g;
my $n = $g[0]{json};
is($n->{status}, 'firing', 'top-level status firing');
is($n->{count}, 2, 'count = alerts in the notification');
is($n->{firing}, 2, 'two firing');
is($n->{resolved}, 0, 'none resolved');
is($n->{alerts}[0]{rule}, 'team-errors', 'each alert names its rule');
is($n->{alerts}[0]{status}, 'firing', 'and its status');
is($n->{alerts}[0]{value}, 1, 'and its value');
like($n->{alerts}[0]{starts_at}, qr/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/, 'and when it started');
ok(exists $n->{alerts}[0]{ends_at} && !defined $n->{alerts}[0]{ends_at}, 'ends_at null while firing');
like($n->{fingerprint}, qr/^group-[0-9a-f]{16}$/, 'a fingerprint per group');
isnt($g[0]{json}{fingerprint}, $g[1]{json}{fingerprint}, 'different for each group');
is($g[0]{key}, $n->{alert_id}, 'Idempotency-Key = the group notification\'s alert_id');
like($n->{message}, qr/^2 firing, 0 resolved: team-errors \{"attrs.team": "a"\}\n- team-errors firing: count 1 /,
	'message: a summary line, then a line per alert');

my @f = at('/flat');
is(scalar(@f), 3, 'group_by NULL: one notification per alert');
is_deeply([ sort map { $_->{json}{labels}{source} } @f ], [ 'g-1', 'g-2', 'g-3' ], 'for each of the three');
ok(!exists $f[0]{json}{alerts}, 'with the payload of a single rule alert');

# --- group a changes within group_interval: one more notification, at
#     group_interval after the previous one, with all four alerts ---
ingest([ 'g-4', 'a' ]);
ok($node->poll_query_until('postgres', "SELECT state = 'firing' FROM logagg.alerts WHERE labels->>'source' = 'g-4'"),
	'a third alert of group a fires');
ingest([ 'g-5', 'a' ]);
ok($node->poll_query_until('postgres', "SELECT state = 'firing' FROM logagg.alerts WHERE labels->>'source' = 'g-5'"),
	'and a fourth');
my @a = grep { team($_) eq 'a' } at('/grp');
is(scalar(@a), 1, 'nothing more sent for group a yet (group_interval 6 s)');
ok(poll_until(sub { scalar(grep { team($_) eq 'a' } at('/grp')) >= 2 }, 30), 'then one more notification');
@a = grep { team($_) eq 'a' } at('/grp');
cmp_ok($a[1]{t}, '>=', $fired1 + 2 + 6, 'at group_interval after the previous one, not before');
is_deeply([ sort map { $_->{labels}{source} } @{ $a[1]{json}{alerts} } ], [ 'g-1', 'g-2', 'g-4', 'g-5' ],
	'carrying the whole group: the two new alerts and the two it had');
isnt($a[1]{json}{alert_id}, $a[0]{json}{alert_id}, 'as a new alert_id');
is($a[1]{json}{fingerprint}, $a[0]{json}{fingerprint}, 'with the group\'s fingerprint');
is(scalar(grep { team($_) eq 'b' } at('/grp')), 1, 'group b, unchanged, got nothing more');
ok(poll_until(sub { scalar(at('/flat')) == 5 }, 30), 'the route without group_by sent the two new alerts on their own');

# --- set_route_grouping checks ---
my ($rc, $out, $err) = $node->psql('postgres', "SELECT logagg.set_route_grouping($grp_route, ARRAY['...', 'source'])");
like($err, qr/must be alone/, '"..." only on its own');
($rc, $out, $err) = $node->psql('postgres', "SELECT logagg.set_route_grouping($grp_route, ARRAY['bad label'])");
like($err, qr/invalid group_by label "bad label"/, 'label names are checked');
($rc, $out, $err) = $node->psql('postgres', "SELECT logagg.set_route_grouping($grp_route, ARRAY['rule'], '-1 s')");
like($err, qr/group_wait must be from 0 to 1 day/, 'group_wait is checked');
($rc, $out, $err) = $node->psql('postgres', "SELECT logagg.set_route_grouping($grp_route, ARRAY['rule'], '1 s', '0 s')");
like($err, qr/group_interval must be from 1 second/, 'group_interval is checked');
($rc, $out, $err) = $node->psql('postgres', "SELECT logagg.set_route_grouping(99999, ARRAY['rule'])");
like($err, qr/route 99999 does not exist/, 'an unknown route is an error');
sql("SELECT logagg.set_route_grouping($grp_route, NULL)");
is(sql("SELECT group_by IS NULL FROM logagg.routes WHERE id = $grp_route"), 't', 'NULL turns grouping off');

$node->stop;
done_testing();
