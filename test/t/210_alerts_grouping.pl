# 210_alerts_grouping.pl — grouping timeline and silences.
# 100,000 records with one fingerprint, sent through the WebSocket within
# one group window, give at most 3 notifications per route whose counts add
# up to 100,000; a group that saw no records for a window ends and its next
# record is notified at once; silenced alerts are not sent and are logged
# as silenced.
use strict;
use warnings;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(time usleep);
use LogaggTest;
use AlertReceivers;

my $node = new_node('alerts_grouping');
start_with_extension($node);
my $r1 = AlertReceivers::http_receiver($node);
my $r2 = AlertReceivers::http_receiver($node);
my $r3 = AlertReceivers::http_receiver($node);

$node->safe_psql('postgres', qq{
SET log_statement = 'none';
SELECT logagg.add_destination('one', 'webhook', '{"url": "$r1->{url}/one"}');
SELECT logagg.add_destination('two', 'webhook', '{"url": "$r2->{url}/two"}');
SELECT logagg.add_destination('three', 'webhook', '{"url": "$r3->{url}/three"}');
SELECT logagg.add_route('one', 'critical', 'storm', '20 s');
SELECT logagg.add_route('two', 'high', NULL, '20 s');
SELECT logagg.add_route('three', 'critical', 'service-g', '2 s');
SELECT logagg.add_route('three', 'critical', 'service-s', '2 s');
});

# ---- 100,000 records of one fingerprint through the WebSocket ----
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('storm')");
my $input = '{"status":503,"message":"503 GET /api/orders upstream timeout"}' . "\n";
$input x= 100_000;
my $t0 = time();
my ($out, $err) = ('', '');
my $ok = IPC::Run::run([ emitter_path(), '--url', "ws://127.0.0.1:$node->{logagg_port}/ingest",
		'--token', $token, '--stdin', '--batch', '500', '--quiet' ],
	'<', \$input, '>', \$out, '2>', \$err, IPC::Run::timeout(120));
my $took = time() - $t0;
ok($ok, "100,000 records shipped in ${\ sprintf('%.1f', $took)} s") or diag("$out $err");
cmp_ok($took, '<', 20, 'all within one group window (20 s)');
is($node->safe_psql('postgres', "SELECT count(*) FROM logagg.logs WHERE source = 'storm'"),
	'100000', 'all stored');

# the summary is due 20 s after the first notification
for my $r ($r1, $r2)
{
	my $sum = sub { my $s = 0; $s += decode_json($_->{body})->{count} for @_; $s };
	my @recs = AlertReceivers::wait_records($r, sub { $sum->(@_) >= 100_000 }, 60);
	my $n = scalar @recs;
	cmp_ok($n, '>=', 1, "$r->{name}: notified");
	cmp_ok($n, '<=', 3, "$r->{name}: at most 3 notifications ($n)");
	is($sum->(@recs), 100_000, "$r->{name}: counts add up to 100,000");
	my %fp = map { decode_json($_->{body})->{fingerprint} => 1 } @recs;
	is(scalar keys %fp, 1, "$r->{name}: one fingerprint");
	my %keys = map { $_->{key} => 1 } @recs;
	is(scalar keys %keys, $n, "$r->{name}: each notification its own alert_id");
}
my @one = AlertReceivers::records($r1);
if (@one >= 2)
{
	my $gap = $one[1]{t} - $one[0]{t};
	cmp_ok($gap, '>=', 19, sprintf('summary came one window after the first (%.1f s)', $gap));
}
# the first notification went out at once, not after the window
cmp_ok($one[0]{t} - $t0, '<', 10, 'first notification at once');
is($node->safe_psql('postgres', "SELECT sum(count) FROM logagg.alert_log WHERE destination = 'one' AND outcome = 'delivered'"),
	'100000', 'alert_log counts add up too');

# ---- a group ends after a quiet window; its next record is notified at once ----
my $rec = q{SELECT logagg.ingest('{"source":"service-g","status":500,"message":"db down"}')};
$node->safe_psql('postgres', $rec);
$node->safe_psql('postgres', $rec);
$node->safe_psql('postgres', $rec);
my @g = AlertReceivers::wait_records($r3, sub { my $s = 0; $s += decode_json($_->{body})->{count} for @_; $s >= 3 }, 30);
is(scalar(@g), 2, 'three records in one window: first at once + one summary');
is(decode_json($g[0]{body})->{count}, 1, 'first notification counts the first record');
is(decode_json($g[1]{body})->{count}, 2, 'the summary counts the other two');
cmp_ok($g[1]{t} - $g[0]{t}, '>=', 1.8, 'summary one window after the first');
sleep 5;    # more than a whole window without records: the group ends
my $t1 = time();
$node->safe_psql('postgres', $rec);
@g = AlertReceivers::wait_records($r3, sub { @_ >= 3 }, 30);
is(scalar(@g), 3, 'record after the group ended notified');
cmp_ok($g[2]{t} - $t1, '<', 1.5, 'at once, not after a window');
is(decode_json($g[2]{body})->{count}, 1, 'with count 1');

# ---- silences ----
my $sid = $node->safe_psql('postgres',
	"SELECT logagg.silence('service-s', NULL, '1 hour', 'maintenance window')");
$node->safe_psql('postgres', q{SELECT logagg.ingest('{"source":"service-s","status":502,"message":"bad gateway"}')});
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM logagg.alert_log WHERE source = 'service-s' AND destination = 'three' AND outcome = 'silenced'"),
	'silenced alert logged as silenced');
is($node->safe_psql('postgres', "SELECT count(*) FROM logagg.alert_queue WHERE source = 'service-s'"),
	'0', 'and removed from the queue');
is($node->safe_psql('postgres', "SELECT count(*) FROM logagg.alert_log WHERE source = 'service-s' AND outcome <> 'silenced'"),
	'0', 'on every route (the "two" route too)');
ok(!(grep { $_->{body} =~ /bad gateway/ } AlertReceivers::records($r3)), 'silenced alert not sent');
like($node->safe_psql('postgres', "SELECT error FROM logagg.alert_log WHERE source = 'service-s' AND destination = 'three'"),
	qr/silence $sid/, 'alert_log names the silence');

# a message_regex silence mutes only what it matches
$node->safe_psql('postgres', "SELECT logagg.unsilence($sid)");
$node->safe_psql('postgres', "SELECT logagg.silence(NULL, NULL, '1 hour', 'known issue', 'cache miss')");
$node->safe_psql('postgres', q{SELECT logagg.ingest('[{"source":"service-s","status":500,"message":"cache miss storm"},{"source":"service-s","status":500,"message":"disk full"}]')});
my @s = AlertReceivers::wait_records($r3, sub { grep { $_->{body} =~ /disk full/ } @_ }, 30);
ok((grep { $_->{body} =~ /disk full/ } @s), 'non-matching alert delivered after unsilence');
ok($node->poll_query_until('postgres',
	"SELECT count(*) = 1 FROM logagg.alert_log a JOIN logagg.silences s ON a.error = 'silenced by silence ' || s.id WHERE s.comment = 'known issue' AND a.destination = 'three'"),
	'matching one silenced by the regex silence');
ok(!(grep { $_->{body} =~ /cache miss/ } AlertReceivers::records($r3)), 'and not sent');

done_testing();
