# 502_alert_rules_kinds.pl -- the rate, ratio and absent kinds of alert
# rules fire and resolve, seen by the recording webhook receiver:
#   rate:   more than 1 record/s over 4 s from rate-src;
#   ratio:  more than half of ratio-src's records are errors over 6 s
#           (1 error in 4 fires nothing, 4 in 7 fires);
#   absent: abs-b, seen before, sends nothing for 3 s while abs-a keeps
#           sending: fires for abs-b only; resolves when abs-b sends again.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use LogaggTest;
use AlertReceivers;

my $node = new_node('alert_rules_kinds', "logagg.rule_eval_interval = '200ms'\n");
start_with_extension($node);
my $rcv = AlertReceivers::http_receiver($node);
$node->safe_psql('postgres', qq{
SELECT logagg.add_destination('hook', 'webhook', '{"url": "$rcv->{url}/rules"}');
SELECT logagg.add_route('hook', 'high', NULL, '1 min');
SELECT logagg.add_alert_rule('fast', '{"source": "rate-src"}', '4 s', 1.0, 'rate');
SELECT logagg.add_alert_rule('errors', '{"source": "ratio-src", "level": "error"}', '6 s', 0.5, 'ratio');
SELECT logagg.add_alert_rule('silent', '{"source": "abs-*"}', '3 s', 0, 'absent');
});

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub notes
{
	my ($rule, $status) = @_;
	return grep { ($_->{rule} // '') eq $rule && (!$status || $_->{status} eq $status) }
	  map { eval { decode_json($_->{body}) } // {} } AlertReceivers::records($rcv);
}

sub ingest
{
	my ($source, $level, $n) = @_;
	my $recs = join(',', map { qq{{"source":"$source","level":"$level","message":"m $_"}} } 1 .. $n);
	return sql("SELECT logagg.ingest('[$recs]')");
}

sub wait_evaluation
{
	my $t = sql("SELECT clock_timestamp()");
	return $node->poll_query_until('postgres',
		"SELECT bool_and(evaluated_at > '$t') FROM logagg.alert_rules");
}

# --- rate ---
ingest('rate-src', 'info', 6);
ok(poll_until(sub { notes('fast', 'firing') }, 30), 'rate: 6 records in 4 s (1.5/s > 1/s) fire');
my ($f) = notes('fast', 'firing');
is($f->{value}, 1.5, 'rate value is records per second');
ok(poll_until(sub { notes('fast', 'resolved') }, 30), 'rate: resolves when the window empties');

# --- ratio ---
ingest('ratio-src', 'info', 3);
ingest('ratio-src', 'error', 1);
ok(wait_evaluation(), 'evaluated');
is(scalar(notes('errors')), 0, 'ratio 1/4 = 0.25: nothing fires');
is(sql(q{SELECT matched || '/' || total FROM logagg.rule_preview('errors')}), '1/4', 'preview: 1 of 4');
ingest('ratio-src', 'error', 3);
ok(poll_until(sub { notes('errors', 'firing') }, 30), 'ratio 4/7 > 0.5 fires');
($f) = notes('errors', 'firing');
cmp_ok(abs(($f->{value} // 0) - 4 / 7), '<', 1e-9, 'ratio value 4/7');
is_deeply($f->{labels}, { source => 'ratio-src' }, 'per source');
ok(poll_until(sub { notes('errors', 'resolved') }, 30), 'ratio: resolves when the window empties');

# --- absent ---
ingest('abs-a', 'info', 1);
ingest('abs-b', 'info', 1);
my $deadline = time() + 40;
my $fired = 0;
while (time() < $deadline)
{
	ingest('abs-a', 'info', 1);    # abs-a keeps sending, abs-b stopped
	if (notes('silent', 'firing')) { $fired = 1; last; }
	usleep(300_000);
}
ok($fired, 'absent: fires for a source that stopped sending');
my @fired = notes('silent', 'firing');
is_deeply([ map { $_->{labels}{source} } @fired ], ['abs-b'], 'for abs-b only, not for abs-a which keeps sending');
is($fired[0]{value}, 0, 'value 0');
is(sql(q{SELECT string_agg(labels->>'source', ',') FROM logagg.firing_alerts WHERE rule = 'silent'}), 'abs-b',
	'firing_alerts: abs-b');
ingest('abs-b', 'info', 1);
ok(poll_until(sub { notes('silent', 'resolved') }, 30), 'absent: resolves when the source sends again');
is(sql("SELECT count(*) FROM logagg.rejected"), '0', 'nothing rejected');

$node->stop;
done_testing();
