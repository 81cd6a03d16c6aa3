# 230_alerts_priority.pl — most severe first: with critical and high alerts
# queued while the receiver is paused, the critical ones are delivered
# first.  One dispatch worker with one request in flight makes the order
# of delivery exactly the order in which alerts are taken from the queue.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use LogaggTest;
use AlertReceivers;

my $node = new_node('alerts_priority', "logagg.dispatch_workers = 1\nlogagg.dispatch_concurrency = 1\n");
start_with_extension($node);
my $r = AlertReceivers::http_receiver($node);
$node->safe_psql('postgres', qq{
SELECT logagg.add_destination('hook', 'webhook', '{"url": "$r->{url}/hook"}');
SELECT logagg.add_route('hook', 'high', NULL, '1 min');
-- every distinct alert is counted here: no storm guard (504 tests it)
UPDATE logagg.routes SET max_notifications = NULL;
});

AlertReceivers::control($r, 'pause');
# the blocker takes the only slot and hangs in the paused receiver
my $blocker = $node->safe_psql('postgres', "SELECT logagg.test_destination('hook')");
ok($node->poll_query_until('postgres', "SELECT claimed_by IS NOT NULL FROM logagg.alert_queue WHERE id = $blocker"),
	'the first alert is in flight');

# high ones first (lower ids), then critical ones: 401 -> high, 500 -> critical
my @high = map { qq{{"source":"hi-$_","status":401,"message":"unauthorised"}} } 1 .. 10;
my @crit = map { qq{{"source":"cr-$_","status":500,"message":"server error"}} } 1 .. 10;
$node->safe_psql('postgres', "SELECT logagg.ingest('[" . join(',', @high) . "]')");
$node->safe_psql('postgres', "SELECT logagg.ingest('[" . join(',', @crit) . "]')");
is($node->safe_psql('postgres', "SELECT string_agg(DISTINCT severity::text, ',') FROM logagg.alert_queue WHERE id <> $blocker"),
	'critical,high', 'critical and high alerts queued');

AlertReceivers::control($r, 'resume');
my @recs = AlertReceivers::wait_records($r, sub { @_ >= 21 }, 60);
is(scalar(@recs), 21, 'all delivered');
my @order = map { decode_json($_->{body})->{severity} } @recs[ 1 .. $#recs ];
is(join(',', @order), join(',', ('critical') x 10, ('high') x 10),
	'every critical alert before every high one, though queued later');
my @ids = map { decode_json($_->{body})->{alert_id} } @recs[ 1 .. 10 ];
is(join(',', @ids), join(',', sort { $a <=> $b } @ids), 'within a severity: oldest first');

done_testing();
