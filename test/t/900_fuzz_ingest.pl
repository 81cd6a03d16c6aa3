# 900_fuzz_ingest.pl -- the bounded CI pass of the ingest fuzzer
# (test/fuzz/README.md): a fixed number of mutated records, from a fixed
# seed, over WebSocket (one connection on a stream) and HTTP POST into a
# live ingest worker, with the
# hostile seeds of test/fuzz/corpus sent first; once on a UTF8 database and
# once (a fifth of the inputs) on a LATIN1 one.  Each pass asserts:
#
#   - the harness itself ran as designed (connected, never sent a message
#     over the size limit, no protocol error of its own);
#   - the ingest worker never exited (same PID before and after, none seen
#     by the fuzzer's /proc watch) and the cluster never reinitialised;
#   - the worker's private memory (RssAnon) stayed under the bound;
#   - the worker never went 10 s without answering anything (a blocked
#     event loop; 10 s, not the fuzzer's 5, because CI machines are busy),
#     and no connection waited 60 s for an answer;
#   - accounting: the server answered each record exactly once, and the
#     database holds what the answers say: every answered reject is in
#     logagg.rejected, every acked record in logagg.logs, and stored +
#     rejected lie within the bounds the fuzzer computed for the bytes it
#     sent.
#
# LOGAGG_FUZZ_INPUTS, LOGAGG_FUZZ_SEED and LOGAGG_FUZZ_MEM_MB override the
# defaults; test/fuzz/run-long is the long run.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run ();
use LogaggTest;

my $inputs = $ENV{LOGAGG_FUZZ_INPUTS} // 150000;
my $seed = $ENV{LOGAGG_FUZZ_SEED} // 1;
my $mem_mb = $ENV{LOGAGG_FUZZ_MEM_MB} // 256;
my $src = src_dir();

my ($mout, $merr) = ('', '');
IPC::Run::run([ 'make', '-s', '-C', "$src/test/fuzz" ], '>', \$mout, '2>', \$merr)
  or BAIL_OUT("building test/fuzz failed: $mout$merr");

# One pass: a fresh instance, the fuzzer, the oracles.
sub fuzz_pass
{
	my ($name, $n_inputs, %init) = @_;
	my $node = new_node($name, qq{
logagg.dispatch_workers = 0
log_statement = none
}, %init);
	start_with_extension($node);
	my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('fuzz-ci')");

	# A route for every severity, so that every stored record goes through
	# the alert path as well (nothing is delivered: no dispatchers).
	$node->safe_psql('postgres', q{
SELECT logagg.add_destination('fuzz-hook', 'webhook', '{"url": "http://127.0.0.1:9/fuzz"}');
SELECT logagg.add_route('fuzz-hook', 'low', NULL, '1 min');
});
	my $pid_sql = "SELECT pid FROM logagg.status() WHERE kind = 'ingest'";
	my $pid = $node->safe_psql('postgres', $pid_sql);

	my $findings = "$PostgreSQL::Test::Utils::tmp_check/fuzz-findings-$name";
	my $t0 = time();
	my ($out, $err) = ('', '');
	my $rc = eval {
		IPC::Run::run(
			[
				"$src/test/fuzz/logagg-fuzz", '--port', $node->{logagg_port}, '--token', $token,
				'--pgdata', $node->data_dir, '--corpus', "$src/test/fuzz/corpus",
				'--inputs', $n_inputs, '--seed', $seed, '--ws', 4, '--streams', 1, '--http', 2,
				'--mem-limit-mb', $mem_mb, '--stall-ms', 10000, '--save', $findings
			],
			'>', \$out, '2>', \$err, IPC::Run::timeout(120));
		$? >> 8;
	} // 2;
	ok(!$@, "$name: the fuzzer finished within 120 s") or diag($@);
	note("$name: fuzzer (exit $rc, " . (time() - $t0) . " s):\n$err$out");
	note("$name: inputs behind findings: $findings") if -d $findings;

	my %r = $out =~ /^(\w+)\s+(\S+)$/mg;
	isnt($rc, 2, "$name: the harness ran as designed (exit status not 2)");
	is($r{harness_errors}, 0, "$name: no harness error (refused connection, oversize message, protocol error)");
	cmp_ok($r{inputs} // 0, '>=', $n_inputs, "$name: all $n_inputs inputs sent");

	is($r{worker_exits}, 0, "$name: the ingest worker never exited");
	is($r{cluster_restarts}, 0, "$name: the cluster never reinitialised");
	is($node->safe_psql('postgres', $pid_sql), $pid, "$name: the ingest worker has its PID of before the run");
	is($r{memory_over}, 0, "$name: the worker's private memory stayed under $mem_mb MB (peak $r{peak_worker_kb} kB)");
	is($r{stalls}, 0, "$name: the worker never went 10 s without answering (slowest answer $r{max_settle_ms} ms)");
	is($r{conn_drops}, 0, "$name: the server dropped no connection");
	is($r{bad_replies} + $r{http_errors}, 0, "$name: every answer was a documented one");
	is($r{accounting_errors}, 0, "$name: each record was answered once: stored or rejected");

	# What was never answered (after an exit or a stall) may or may not
	# have been committed; with everything answered the checks are exact.
	my ($stored, $rejected) = split /\|/, $node->safe_psql('postgres', q{
SELECT (SELECT count(*) FROM logagg.logs WHERE source = 'fuzz-ci'),
       (SELECT count(*) FROM logagg.rejected WHERE source = 'fuzz-ci')});
	ok($rejected >= $r{acked_rejects} && $rejected <= $r{acked_rejects} + $r{unsettled_max},
		"$name: logagg.rejected holds the $r{acked_rejects} answered rejects ($rejected)");
	cmp_ok($stored, '>=', $r{acked_rows}, "$name: every acked record is in logagg.logs");
	ok($stored + $rejected >= $r{records_min} && $stored + $rejected <= $r{records_max},
		"$name: stored $stored + rejected $rejected within the $r{records_min}..$r{records_max} records sent");
	$node->stop;
}

fuzz_pass('fuzz_utf8', $inputs);
# \u escapes that the database encoding can't hold, text that is valid
# LATIN1 but not UTF-8
fuzz_pass('fuzz_latin1', int($inputs / 5), extra => [ '--encoding=LATIN1', '--locale=C' ]);

done_testing();
