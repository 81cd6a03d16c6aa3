# 510_alert_rules_eval_scope.pl -- the evaluator looks only at the groups
# of a count or rate rule whose counts changed (and those with a pending
# or firing alert), so it must still fire when a rule's condition starts
# to hold without a new record: a paused rule resumed over a group already
# above its threshold, or a threshold lowered by UPDATE.  And a group
# that crosses its threshold in a later batch fires while a quiet group
# of the same rule stays quiet.  Records come through logagg.ingest().
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;

my $node = new_node('alert_rules_eval_scope', "logagg.rule_eval_interval = '200ms'\n");
start_with_extension($node);

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub ingest
{
	my ($source, $n) = @_;
	my $recs = join(',', map { qq{{"source":"$source","level":"error","message":"m $_"}} } 1 .. $n);
	return sql("SELECT logagg.ingest('[$recs]')");
}

# two evaluations that started after now have finished (the first may
# have begun before the caller's commit)
sub wait_evaluations
{
	for (1 .. 2)
	{
		my $t = sql('SELECT clock_timestamp()');
		$node->poll_query_until('postgres',
			"SELECT evaluated_at > '$t' FROM logagg.alert_rules WHERE name = 'e-clock'")
		  or die 'no evaluation';
	}
}

sub state_of
{
	my ($rule, $source) = @_;
	return sql(qq{SELECT coalesce((SELECT a.state FROM logagg.alerts a JOIN logagg.alert_rules r ON r.id = a.rule_id
		WHERE r.name = '$rule' AND a.labels->>'source' = '$source'), 'none')});
}

# a rule that never fires, whose evaluated_at tells when an evaluation ran
sql(q{SELECT logagg.add_alert_rule('e-clock', '{"source": "nothing-here"}', '1 hour', 1000)});
sql(q{SELECT logagg.add_alert_rule('e-resume', '{"source": "e-r"}', '1 hour', 3)});
sql(q{SELECT logagg.add_alert_rule('e-thr', '{"source": "e-t"}', '1 hour', 100)});
sql(q{SELECT logagg.add_alert_rule('e-rate', '{"source": "e-t"}', '1 hour', 1, 'rate')});

# --- resumed over a group already above the threshold ---
sql(q{SELECT logagg.pause_alert_rule('e-resume')});
ingest('e-r', 5);
wait_evaluations();
is(sql(q{SELECT count(*) FROM logagg._alert_rule_deltas}), '0', 'the deltas were folded');
is(state_of('e-resume', 'e-r'), 'none', 'paused: 5 > 3 does not fire');
wait_evaluations();
sql(q{SELECT logagg.resume_alert_rule('e-resume')});
ok($node->poll_query_until('postgres', q{SELECT state = 'firing' FROM logagg.alerts a
	JOIN logagg.alert_rules r ON r.id = a.rule_id WHERE r.name = 'e-resume'}),
	'resumed: fires without a new record');

# --- threshold lowered ---
ingest('e-t', 4);
wait_evaluations();
is(state_of('e-thr', 'e-t'), 'none', '4 records, threshold 100: quiet');
is(state_of('e-rate', 'e-t'), 'none', 'rate 4/3600 s: quiet');
wait_evaluations();
sql(q{UPDATE logagg.alert_rules SET threshold = 3 WHERE name = 'e-thr'});
ok($node->poll_query_until('postgres', q{SELECT state = 'firing' FROM logagg.alerts a
	JOIN logagg.alert_rules r ON r.id = a.rule_id WHERE r.name = 'e-thr'}),
	'threshold lowered to 3: fires without a new record');
is(sql(q{SELECT value FROM logagg.alerts a JOIN logagg.alert_rules r ON r.id = a.rule_id WHERE r.name = 'e-thr'}),
	'4', 'with the count as value');
is(state_of('e-rate', 'e-t'), 'none', 'the rate rule over the same records stays quiet');

# --- a group crossing in a later batch, next to a quiet one ---
sql(q{SELECT logagg.add_alert_rule('e-later', '{"source": "e-l*"}', '1 hour', 2)});
ingest('e-l1', 2);
ingest('e-l2', 1);
wait_evaluations();
is(state_of('e-later', 'e-l1') . ',' . state_of('e-later', 'e-l2'), 'none,none', '2 and 1 records: quiet');
wait_evaluations();
ingest('e-l1', 1);
ok($node->poll_query_until('postgres', q{SELECT state = 'firing' FROM logagg.alerts a
	JOIN logagg.alert_rules r ON r.id = a.rule_id WHERE r.name = 'e-later' AND a.labels->>'source' = 'e-l1'}),
	'the 3rd record of e-l1, in a later batch, fires');
wait_evaluations();
is(state_of('e-later', 'e-l2'), 'none', 'e-l2 stays quiet');
is(sql(q{SELECT string_agg((labels->>'source') || '=' || matched, ',' ORDER BY labels->>'source')
	FROM logagg.rule_preview('e-later')}), 'e-l1=3,e-l2=1', 'rule_preview agrees');

done_testing();
