# 500_alert_rules_count.pl -- alert rules of kind count: "more than 3
# timeouts from svc-* in 8 s per source" fires exactly when the 4th
# matching record of a source commits (an evaluation that saw 3 fired
# nothing), carries rule, value, labels and the latest record; resolves
# once the window has emptied; for_duration keeps an alert pending first;
# a paused rule is counted and previewed but never fires; rule validation
# errors name the part.  Records come through logagg.ingest() and the
# WebSocket, notifications go to the recording webhook receiver.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time);
use LogaggTest;
use AlertReceivers;

my $node = new_node('alert_rules_count', "logagg.rule_eval_interval = '200ms'\n");
start_with_extension($node);
my $rcv = AlertReceivers::http_receiver($node);
$node->safe_psql('postgres', qq{
SELECT logagg.add_destination('hook', 'webhook', '{"url": "$rcv->{url}/rules"}');
SELECT logagg.add_route('hook', 'high', NULL, '1 min');
});

sub sql { return $node->safe_psql('postgres', $_[0]); }

# rule notifications of one rule, as decoded payloads
sub rule_notes
{
	my ($rule) = @_;
	return map { my $p = eval { decode_json($_->{body}) } // {}; ($p->{rule} // '') eq $rule ? $p : () }
	  AlertReceivers::records($rcv);
}

sub ingest
{
	my ($source, $msg, $n) = @_;
	my $recs = join(',', map { qq{{"source":"$source","level":"warn","message":"$msg $_"}} } 1 .. $n);
	return sql("SELECT logagg.ingest('[$recs]')");
}

# an evaluation that started after now has finished
sub wait_evaluation
{
	my $t = sql("SELECT clock_timestamp()");
	ok($node->poll_query_until('postgres',
		"SELECT evaluated_at > '$t' FROM logagg.alert_rules WHERE name = 'timeouts'"),
		'an evaluation ran after the commit');
}

# --- validation ---
for my $bad (
	[ q{'{"colour": "red"}', '1 min', 1}, qr/unknown key "colour" in alert rule filter/ ],
	[ q{'{"status": [599, 500]}', '1 min', 1}, qr/"status" in alert rule filter must be a status or a range/ ],
	[ q{'{"message_regex": "("}', '1 min', 1}, qr/"message_regex" in alert rule filter is not a valid regular expression/ ],
	[ q{'{}', '1 min', 1, 'count', ARRAY['host']}, qr/unknown group_by label "host"/ ],
	[ q{'{}', '1 min', 1, 'ratio'}, qr/a ratio rule needs a level, status or message_regex/ ],
	[ q{'{}', '1 month', 1}, qr/window must be from 1 second to 31 days/ ],
	[ q{'{}', '1 min', 1, 'median'}, qr/unknown alert rule kind "median"/ ])
{
	my ($ret, $o, $e) = $node->psql('postgres', "SELECT logagg.add_alert_rule('bad', $bad->[0])");
	like($e, $bad->[1], "refused: $bad->[0]");
	like($e, qr/HINT|must be|not a valid|needs/, 'with a reason') if $ret;
}

# --- count > 3 in 8 s per source ---
my $id = sql(q{SELECT logagg.add_alert_rule('timeouts',
	'{"source": "svc-*", "message_regex": "timeout", "level": "WARNING"}', '8 s', 3)});
like($id, qr/^\d+$/, 'add_alert_rule returns the rule id');
is(sql("SELECT filter->>'level' FROM logagg.alert_rules WHERE id = $id"), '["warn"]',
	'levels are stored normalised');
my ($ret, $o, $e) = $node->psql('postgres', q{SELECT logagg.add_alert_rule('timeouts', '{}', '1 min', 1)});
like($e, qr/alert rule "timeouts" already exists/, 'names are unique');

ingest('svc-a', 'upstream timeout', 3);
ingest('web', 'upstream timeout', 5);       # source does not match the glob
ingest('svc-a', 'all fine', 4);             # message does not match
ingest('svc-b', 'db timeout', 1);
wait_evaluation();
is(sql("SELECT count(*) FROM logagg.alerts WHERE rule_id = $id"), '0',
	'3 matching records of svc-a: nothing fires (count 3 is not > 3)');
is(sql(q{SELECT string_agg((labels->>'source') || '=' || matched, ',' ORDER BY labels->>'source') FROM logagg.rule_preview('timeouts')}),
	'svc-a=3,svc-b=1', 'rule_preview counts per source, only matching records');

# the 4th, through the WebSocket; its id is the alert's sample
my $token = sql("SELECT logagg.create_source('svc-a')");
my ($out, $err) = ('', '');
my $t_commit_before = time();
IPC::Run::run([ emitter_path(), '--url', "ws://127.0.0.1:$node->{logagg_port}/ingest",
		'--token', $token, '--stdin', '--quiet' ],
	'<', \qq{{"level":"warn","message":"upstream timeout 4"}\n}, '>', \$out, '2>', \$err,
	IPC::Run::timeout(60)) or diag("$out $err");
my $last_id = sql(q{SELECT max(id) FROM logagg.logs WHERE source = 'svc-a' AND message = 'upstream timeout 4'});

ok(poll_until(sub { scalar(rule_notes('timeouts')) >= 1 }, 30), 'the 4th record fires the rule');
my $t_fired = time() - $t_commit_before;
my ($p) = rule_notes('timeouts');
$p //= {};
is($p->{status}, 'firing', 'status firing');
is($p->{value}, 4, 'value is the count, 4');
is_deeply($p->{labels}, { source => 'svc-a' }, 'labels: the group');
is($p->{source}, 'svc-a', 'source is the group source');
is($p->{severity}, 'high', 'severity of the rule');
is($p->{kind}, 'count', 'kind');
like($p->{starts_at} // '', qr/^\d{4}-\d\d-\d\dT/, 'starts_at');
ok(exists $p->{ends_at} && !defined $p->{ends_at}, 'ends_at null while firing');
like($p->{fingerprint} // '', qr/^rule-[0-9a-f]{16}$/, 'fingerprint from rule and labels');
cmp_ok($t_fired, '<', 10, sprintf('notified %.1f s after the commit', $t_fired));
is(sql("SELECT state || ',' || value || ',' || sample_log_id FROM logagg.alerts WHERE rule_id = $id AND labels->>'source' = 'svc-a'"),
	"firing,4,$last_id", 'logagg.alerts: firing, value 4, sample = the 4th record');
is(sql("SELECT rule || ',' || (labels->>'source') FROM logagg.firing_alerts"), 'timeouts,svc-a',
	'firing_alerts view lists it');
is(scalar(grep { ($_->{labels}{source} // '') eq 'svc-b' } rule_notes('timeouts')), 0, 'svc-b (1 record) did not fire');

# --- resolves once the window has emptied ---
ok(poll_until(sub { grep { $_->{status} eq 'resolved' } rule_notes('timeouts') }, 40),
	'resolved after the window emptied');
my ($res) = grep { $_->{status} eq 'resolved' } rule_notes('timeouts');
$res //= {};
is($res->{fingerprint}, $p->{fingerprint}, 'resolved carries the same fingerprint');
like($res->{ends_at} // '', qr/^\d{4}-/, 'resolved has ends_at');
is(sql("SELECT string_agg(from_state || '>' || to_state, ' ' ORDER BY id) FROM logagg.alert_history WHERE rule = 'timeouts'"),
	'inactive>firing firing>resolved', 'alert_history has the lifecycle');
is(scalar(rule_notes('timeouts')), 2, 'one firing and one resolved notification, no repeats');

# --- for_duration: pending first ---
sql(q{SELECT logagg.add_alert_rule('slow', '{"source": "svc-c"}', '30 s', 1, for_duration => '2 s')});
my $t0 = time();
ingest('svc-c', 'x', 2);
ok($node->poll_query_until('postgres',
	"SELECT state = 'pending' FROM logagg.alerts a JOIN logagg.alert_rules r ON r.id = a.rule_id WHERE r.name = 'slow'"),
	'condition met: pending');
is(scalar(rule_notes('slow')), 0, 'nothing notified while pending');
ok(poll_until(sub { scalar(rule_notes('slow')) >= 1 }, 30), 'fires after for_duration');
cmp_ok(time() - $t0, '>=', 2, 'not before for_duration');
is(sql(q{SELECT extract(epoch FROM max(at) FILTER (WHERE to_state = 'firing') - max(at) FILTER (WHERE to_state = 'pending')) >= 2
	FROM logagg.alert_history WHERE rule = 'slow'}), 't', 'history: firing at least 2 s after pending');

# --- paused rules are counted and previewed, never fired ---
sql(q{SELECT logagg.add_alert_rule('quiet', '{"source": "svc-d"}', '1 min', 0, paused => true)});
ingest('svc-d', 'y', 2);
my $t = sql("SELECT clock_timestamp()");
ok($node->poll_query_until('postgres',
	"SELECT evaluated_at > '$t' FROM logagg.alert_rules WHERE name = 'timeouts'"), 'evaluated since');
is(sql(q{SELECT value || ',' || would_fire || ',' || state FROM logagg.rule_preview('quiet')}), '2,true,inactive',
	'rule_preview of the paused rule: would fire');
is(sql(q{SELECT count(*) FROM logagg.alerts a JOIN logagg.alert_rules r ON r.id = a.rule_id WHERE r.name = 'quiet'}),
	'0', 'but a paused rule does not fire');
sql(q{SELECT logagg.resume_alert_rule('quiet')});
ok(poll_until(sub { scalar(rule_notes('quiet')) >= 1 }, 30), 'resumed: it fires');

# --- remove ---
sql(q{SELECT logagg.remove_alert_rule('quiet')});
is(sql(q{SELECT count(*) FROM logagg._alert_rule_class_rules m WHERE NOT EXISTS (SELECT 1 FROM logagg.alert_rules r WHERE r.id = m.rule_id)}),
	'0', 'removing a rule removes its counts');
($ret, $o, $e) = $node->psql('postgres', q{SELECT logagg.pause_alert_rule('quiet')});
like($e, qr/alert rule "quiet" does not exist/, 'unknown rule: clear error');
is(sql("SELECT count(*) FROM logagg.rejected"), '0', 'nothing rejected along the way');

$node->stop;
done_testing();
