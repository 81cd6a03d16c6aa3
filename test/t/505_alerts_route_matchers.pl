# 505_alerts_route_matchers.pl -- routes with Alertmanager-style label
# matchers (=, !=, =~, !~) and "continue", tried in id order:
#   /r     rule="errs", continue = false
#   /crit  severity="critical", source!="web", continue = false
#   /svc   source=~"svc-.*", status!~"4.."
#   /all   no matchers
# Each alert below must reach exactly the expected receivers.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;
use AlertReceivers;

my $node = new_node('alerts_route_matchers', "logagg.rule_eval_interval = '200ms'\n");
start_with_extension($node);
my $rcv = AlertReceivers::http_receiver($node);
my $u = $rcv->{url};
sub sql { return $node->safe_psql('postgres', $_[0]); }

for my $d (qw(r crit svc all))
{
	sql(qq{SELECT logagg.add_destination('$d', 'webhook', '{"url": "$u/$d"}');
	       SELECT logagg.add_route('$d', 'high', NULL, '1 min')});
}
sql(q{SELECT logagg.set_route_matchers((SELECT id FROM logagg.routes WHERE destination = 'r'),
                                       '["rule=\"errs\""]', false)});
sql(q{SELECT logagg.set_route_matchers((SELECT id FROM logagg.routes WHERE destination = 'crit'),
                                       '["severity=\"critical\"", "source!=web"]', false)});
sql(q{SELECT logagg.set_route_matchers((SELECT id FROM logagg.routes WHERE destination = 'svc'),
                                       '["source=~\"svc-.*\"", {"label": "status", "op": "!~", "value": "4.."}]')});
is(sql(q{SELECT matchers::text FROM logagg.routes WHERE destination = 'crit'}),
	'[{"op": "=", "label": "severity", "value": "critical"}, {"op": "!=", "label": "source", "value": "web"}]',
	'matchers are stored as objects');

my ($ret, $o, $e) = $node->psql('postgres', q{SELECT logagg.set_route_matchers(1, '["severity ~ critical"]')});
like($e, qr/invalid route matcher "severity ~ critical"/, 'a bad matcher is refused');
($ret, $o, $e) = $node->psql('postgres', q{SELECT logagg.set_route_matchers(1, '["source=~(svc"]')});
like($e, qr/invalid regular expression/, 'a bad regex is refused');

# where did the alert whose message (or rule) is $tag go?
sub seen
{
	my ($tag) = @_;
	my %at;
	for my $r (AlertReceivers::records($rcv))
	{
		my $p = eval { JSON::PP->new->decode($r->{body}) } // {};
		$at{ substr($r->{path}, 1) } = 1 if ($p->{message} // '') =~ /\Q$tag\E/;
	}
	return join(',', sort keys %at);
}

my @cases = (
	[ 'c1', '{"source":"svc-x","status":503,"message":"c1 boom"}', 'crit', 'critical svc-x: /crit, which does not continue' ],
	[ 'c2', '{"source":"svc-x","status":401,"message":"c2 denied"}', 'all', 'high svc-x with status 401: status!~4.. fails, /all only' ],
	[ 'c3', '{"source":"svc-x","level":"error","message":"c3 oops"}', 'all,svc', 'high svc-x without status: /svc and /all' ],
	[ 'c4', '{"source":"web","status":500,"message":"c4 down"}', 'all', 'critical web: source!=web fails, regex is anchored: /all' ],
);
for my $c (@cases)
{
	sql("SELECT logagg.ingest('$c->[1]')");
}
# every route's queue rows of an alert commit together with its record
ok(poll_until(sub { my $n = 0; for my $c (@cases) { $n++ if seen($c->[0]) eq $c->[2] } $n == @cases }, 30),
	'every record alert reached its receivers');
is(seen($_->[0]), $_->[2], $_->[3]) for @cases;

# a rule alert: rule="errs" takes it, and stops
sql(q{SELECT logagg.add_alert_rule('errs', '{"source": "svc-r"}', '1 min', 0)});
sql(q{SELECT logagg.ingest('{"source":"svc-r","level":"info","message":"routine"}')});
ok(poll_until(sub { seen('errs firing') ne '' }, 30), 'the rule alert fired');
sql(q{SELECT logagg.add_alert_rule('other', '{"source": "svc-q"}', '1 min', 0)});
sql(q{SELECT logagg.ingest('{"source":"svc-q","level":"info","message":"routine"}')});
ok(poll_until(sub { seen('other firing') ne '' }, 30), 'a second rule alert fired');
is(seen('errs firing'), 'r', 'rule errs: only /r (continue = false)');
is(seen('other firing'), 'all,svc', 'rule other: /svc (its source label matches) and /all');

$node->stop;
done_testing();
