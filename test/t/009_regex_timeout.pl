# 009_regex_timeout.pl -- user-written regexes cannot stall a worker.
#
# A rule or silence whose message_regex backtracks exponentially
# ((a*)*\1\1b\1 on 30 kB of "a" and a "b" runs for hours) is cut off after
# logagg.regex_timeout: the record is still stored (the pattern counts as
# not matching, so the next rules classify it), the alert is still sent,
# the worker keeps its PID and reports the timeout.  With no limit set,
# SIGTERM still ends a worker stuck in such a regex at once, and the
# worker comes back.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time);
use IPC::Run ();
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;

my $node = new_node('regex_timeout', "logagg.dispatch_workers = 1\nlogagg.regex_timeout = '200ms'\n");
start_with_extension($node);
sub sql { return $node->safe_psql('postgres', $_[0]); }
my $base = "ws://127.0.0.1:$node->{logagg_port}";
my $token = sql(q{SELECT logagg.create_source('svc')});
my $evil = '(a*)*\1\1b\1';
my $long = ('a' x 30000) . 'b';   # the 'b' makes the engine backtrack

sub worker_pid
{
	my ($kind) = @_;
	return sql(qq{SELECT pid FROM logagg.status() WHERE kind = '$kind'});
}

sql(qq{INSERT INTO logagg.rules (rule_order, message_regex, severity, comment)
       VALUES (1, '$evil', 'high', 'catastrophic backtracking')});

# ---- SQL: logagg.classify() is bounded too ----
my $t0 = time();
is(sql(qq{SELECT logagg.classify(200, 'info', 'svc', '$long')}), 'low',
	'logagg.classify(): the timed-out rule does not match, the next rules decide');
my $sql_secs = time() - $t0;
ok($sql_secs < 5, sprintf('logagg.classify() returned in %.2f s', $sql_secs));
is(sql(q{SELECT logagg.classify(200, 'info', 'svc', 'aab')}), 'high',
	'the same rule still matches a message it can decide in time');

# ---- the ingest worker ----
my $ingest_pid = worker_pid('ingest');
$t0 = time();
my $out = ws_probe($base, "open:c:/ingest:$token",
	qq(send:c:{"message":"$long","status":200}\\n{"message":"after","status":200}), 'recv:c:60');
my $secs = time() - $t0;
like($out, qr/^c recv \{"ack_count": 2\}/m, 'both records of the frame are acked');
ok($secs < 10, sprintf('acked in %.2f s (the regex alone would run for minutes)', $secs));
is(sql(qq{SELECT severity FROM logagg.logs WHERE message = '$long'}), 'low',
	'the 30 kB record is stored, classified by the rules after the timed-out one');
is(sql(q{SELECT count(*) FROM logagg.logs WHERE message = 'after'}), '1', 'the record after it too');
is(worker_pid('ingest'), $ingest_pid, 'the ingest worker kept its PID');
ok(sql(q{SELECT (counters->>'regex_timeouts')::int FROM logagg.status() WHERE kind = 'ingest'}) >= 1,
	'logagg.status() counts the timeout');
ok(poll_until(sub { slurp_file($node->logfile) =~ /message_regex of logagg\.rules ran out of time/ }, 10),
	'a WARNING names the table and the limit');

# ---- a silence's regex in the dispatch worker ----
sql(q{DELETE FROM logagg.rules WHERE rule_order = 1});
sql(q{SELECT logagg.add_destination('hook', 'webhook', '{"url": "http://127.0.0.1:9/h"}')});
sql(q{SELECT logagg.add_route('hook', 'critical', NULL, '0')});
sql(qq{SELECT logagg.silence(NULL, NULL, '1 hour', 'evil', '$evil')});
my $dispatch_pid = worker_pid('dispatch');
# six alerts (six statuses, six fingerprints) due in the same claim
sql(qq{SELECT logagg.ingest(jsonb_agg(jsonb_build_object('source', 'svc', 'message', '$long', 'status', s)))
       FROM generate_series(500, 505) s});
ok( poll_until(sub { sql(q{SELECT count(DISTINCT alert_id) FROM logagg.alert_log WHERE outcome <> 'silenced'}) == 6 }, 60),
	'the alerts whose silence regex ran out of time are sent (not silenced)');
is(sql(q{SELECT count(*) FROM logagg.alert_log WHERE outcome = 'silenced'}), '0', 'nothing was silenced');
is(worker_pid('dispatch'), $dispatch_pid, 'the dispatch worker kept its PID');
my $dispatch_timeouts = sql(q{SELECT (counters->>'regex_timeouts')::int FROM logagg.status() WHERE kind = 'dispatch'});
ok($dispatch_timeouts >= 1 && $dispatch_timeouts < 6,
	"a claim gives up on a silence pattern that keeps running out of time ($dispatch_timeouts timeouts for 6 alerts)");

# ---- no limit: SIGTERM still ends a worker stuck in a regex ----
sql(q{DELETE FROM logagg.silences});
sql(qq{INSERT INTO logagg.rules (rule_order, message_regex, severity) VALUES (1, '$evil', 'high')});
sql(q{ALTER SYSTEM SET logagg.regex_timeout = 0});
$node->reload;
ok($node->poll_query_until('postgres',
		q{SELECT (counters->>'reloads')::int >= 1 FROM logagg.status() WHERE kind = 'ingest'}),
	'the ingest worker took the new setting');
$ingest_pid = worker_pid('ingest');
my ($pout, $perr) = ('', '');
my $probe = IPC::Run::start(
	[ '/usr/bin/python3', "$ENV{LOGAGG_SRC}/test/clients/ws_probe.py", $base,
	  "open:c:/ingest:$token", qq(send:c:{"message":"$long","status":200}), 'recv:c:120' ],
	'>', \$pout, '2>', \$perr);
ok( $node->poll_query_until('postgres', qq{
SELECT state = 'active' AND query LIKE '%storing a batch%' FROM pg_stat_activity WHERE pid = $ingest_pid}),
	'the ingest worker is inside the batch with the slow regex');
$t0 = time();
kill 'TERM', $ingest_pid;
ok(poll_until(sub { !kill(0, $ingest_pid) }, 10), 'SIGTERM ends the worker stuck in the regex');
my $exit_secs = time() - $t0;
ok($exit_secs < 5, sprintf('it exited %.2f s after SIGTERM', $exit_secs));
$probe->kill_kill;
sql(q{ALTER SYSTEM RESET logagg.regex_timeout});
sql(q{DELETE FROM logagg.rules WHERE rule_order = 1});
$node->reload;
ok( $node->poll_query_until('postgres', qq{
SELECT pid IS NOT NULL AND pid <> $ingest_pid AND ready FROM logagg.status() WHERE kind = 'ingest'}),
	'the ingest worker is restarted');
$out = ws_probe($base, "open:c:/ingest:$token", 'send:c:{"message":"back","status":200}', 'recv:c:30');
like($out, qr/^c recv \{"ack_count": 1\}/m, 'and ingests again');

$node->stop;
done_testing();
