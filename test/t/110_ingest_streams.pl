# 110_ingest_streams.pl -- durable streams: resume points, exactly-once
# storage when the client resends after a reconnect, duplicates dropped,
# takeover of a stream by a new connection, and exactly-once across a
# crash (SIGKILL) and a restart (SIGTERM) of the ingest worker while
# logagg-emit is streaming.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run start finish timeout);
use LogaggTest;

my $node = new_node('ingest_streams', "logagg.dispatch_workers = 0\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $base = "ws://127.0.0.1:$port";
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-s')");

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub probe
{
	return ws_probe($base, @_);
}

sub emit_cmd
{
	return [ emitter_path(), '--url', "$base/ingest", '--token', $token,
		'--give-up-after', '60', @_ ];
}

sub stream_check
{
	my ($stream, $n, $what) = @_;
	is(sql("SELECT count(*) || ',' || count(DISTINCT seq) || ',' || min(seq) || ',' || max(seq) FROM logagg.logs WHERE stream = '$stream'"),
		"$n,$n,1,$n", "$what: seqs 1..$n stored exactly once");
	is(sql("SELECT last_seq FROM logagg.streams WHERE stream_id = '$stream'"), $n,
		"$what: streams.last_seq is $n");
}

# ---- resume across runs ----
for my $run (1, 2)
{
	my ($out, $err) = ('', '');
	run(emit_cmd('--stream', 's1', '--count', '1500', '--batch', '10'), '>', \$out, '2>', \$err, timeout(120));
	is($? >> 8, 0, "stream run $run: every record acked") or diag($err);
}
stream_check('s1', 3000, 'two runs of one stream');

# ---- duplicates and takeover, by hand ----
my $out = probe("open:a:/ingest?stream=t:$token", "recv:a",
	'send:a:[{"seq":1,"message":"a1"},{"seq":2,"message":"a2"}]', "recv:a",
	"open:b:/ingest?stream=t:$token", "recv:b", "recv:a:3",
	'send:b:[{"seq":2,"message":"dup"},{"seq":3,"message":"b3"}]', "recv:b",
	'send:b:{"seq":3,"message":"dup again"}', "recv:b");
like($out, qr/^a recv \{"resume": 0\}$/m, 'new stream resumes at 0');
like($out, qr/^a recv \{"ack": 2\}$/m, 'acked up to seq 2');
like($out, qr/^b recv \{"resume": 2\}$/m, 'a second connection for the stream resumes at 2');
like($out, qr/^a closed/m, 'the first connection is closed when the stream is taken over');
like($out, qr/^b recv \{"ack": 3\}$/m, 'resent seq 2 dropped, seq 3 acked');
is(sql("SELECT string_agg(message, ',' ORDER BY seq) FROM logagg.logs WHERE stream = 't'"), 'a1,a2,b3',
	'duplicates are not stored');
ok(sql("SELECT (counters->>'duplicates')::int FROM logagg.status() WHERE kind = 'ingest'") >= 2,
	'duplicates are counted');

# ---- a stream belongs to its source ----
my $other = sql("SELECT logagg.create_source('svc-other')");
$out = probe("open:a:/ingest?stream=t:$token", "recv:a",
	"upgrade:x:/ingest?stream=t:$other",
	"open:y:/ingest?stream=s1:$other", "recv:y");
like($out, qr/^x status 403$/m, 'another source cannot take over an open stream: 403');
# (lws 4.1.6 loses the 1008 close frame: the socket just closes)
like($out, qr/^y closed/m, 'another source cannot resume a stored stream: closed');
unlike($out, qr/^y recv \{"resume"/m, 'and it is not told the stream\'s resume point');
is(sql("SELECT last_seq || ',' || source FROM logagg.streams WHERE stream_id = 's1'"), '3000,svc-s',
	'the stream is untouched');

# ---- exactly-once across a worker crash and a worker restart ----
sub ingest_pid
{
	my $pid;
	$node->poll_query_until('postgres',
		"SELECT pid IS NOT NULL AND ready FROM logagg.status() WHERE kind = 'ingest'")
	  or die 'ingest worker did not come back';
	return sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");
}

for my $fault ('KILL', 'TERM')
{
	my $stream = "fault-$fault";
	my $n = 12000;
	my ($eout, $eerr) = ('', '');
	my $h = start(emit_cmd('--stream', $stream, '--count', $n, '--rate', '3000', '--batch', '5'),
		'>', \$eout, '2>', \$eerr, timeout(150));
	ok(poll_until(sub { sql("SELECT count(*) FROM logagg.logs WHERE stream = '$stream'") > 2000 }, 60),
		"$fault: streaming started");
	my $pid = ingest_pid();
	kill $fault, $pid;
	ok(poll_until(sub {
		my $p = eval { $node->safe_psql('postgres',
			"SELECT pid FROM logagg.status() WHERE kind = 'ingest' AND ready") };
		defined $p && $p ne '' && $p ne $pid;
	}, 60), "$fault: a new ingest worker took over");
	finish($h);
	is($? >> 8, 0, "$fault: the emitter got every record acked after reconnecting") or diag($eerr);
	like($eerr . $eout, qr/acked $n /, "$fault: emitter summary says $n acked");
	stream_check($stream, $n, "SIG$fault of the ingest worker");
}

$node->stop;
done_testing();
