# 180_ingest_metrics.pl -- GET /metrics is valid
# Prometheus text format (0.0.4), checked by a strict parser below, and
# after a run its counters equal what the tables hold: records accepted =
# rows in logagg.logs, rejected = rows in logagg.rejected, duplicates =
# the resent stream records, batches = flush histogram count, alert queue
# depth = pending rows of logagg.alert_queue (published in shared memory:
# a scrape runs no query).  With logagg.metrics_token set, /metrics needs
# it as a bearer token (401 without it or with a wrong one), and the
# setting is hidden from roles that are not superusers.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run timeout);
use HTTP::Tiny;
use LogaggTest;

my $node = new_node('ingest_metrics', "logagg.dispatch_workers = 0\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $base = "ws://127.0.0.1:$port";
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-m')");
my $http = HTTP::Tiny->new(timeout => 10);

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub probe
{
	return ws_probe($base, @_);
}

# ---------------------------------------------------------------------
# A strict parser of the Prometheus text exposition format 0.0.4.
# Returns (families, errors): families{name} = {type, help, samples =>
# [[sample name, {labels}, value]]}.
# ---------------------------------------------------------------------
my $NAME = qr/[a-zA-Z_:][a-zA-Z0-9_:]*/;
my $LNAME = qr/[a-zA-Z_][a-zA-Z0-9_]*/;
my $FLOAT = qr/[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|Inf|NaN)/;

sub prom_value { my $v = shift; return $v =~ /Inf$/ ? ($v =~ /^-/ ? -9**9**9 : 9**9**9) : $v eq 'NaN' ? 'nan' : 0 + $v; }

sub parse_prometheus
{
	my ($text) = @_;
	my (%fam, @err, %seen_sample, %closed);
	my $current;
	push @err, 'body does not end with a newline' unless $text =~ /\n\z/;
	my $ln = 0;
	for my $line (split /\n/, $text)
	{
		$ln++;
		next if $line eq '';
		if ($line =~ /^#\s*(HELP|TYPE)\s+(\S+)(?:\s(.*))?$/)
		{
			my ($kw, $name, $rest) = ($1, $2, $3 // '');
			push @err, "line $ln: bad metric name '$name'" unless $name =~ /^$NAME$/;
			my $f = $fam{$name} //= { samples => [] };
			if ($kw eq 'HELP')
			{
				push @err, "line $ln: second HELP for $name" if defined $f->{help};
				push @err, "line $ln: bad escape in HELP" if $rest =~ /\\[^\\n]/;
				$f->{help} = $rest;
			}
			else
			{
				push @err, "line $ln: second TYPE for $name" if defined $f->{type};
				push @err, "line $ln: TYPE for $name after its samples" if @{ $f->{samples} };
				push @err, "line $ln: unknown type '$rest'"
				  unless $rest =~ /^(counter|gauge|histogram|summary|untyped)$/;
				$f->{type} = $rest;
			}
			next;
		}
		next if $line =~ /^#/;    # other comments are allowed
		unless ($line =~ /^($NAME)(\{(.*)\})?[ \t]+(\S+)(?:[ \t]+(-?\d+))?[ \t]*$/)
		{
			push @err, "line $ln: not a sample line: $line";
			next;
		}
		my ($sname, $lbl, $value) = ($1, $3, $4);
		push @err, "line $ln: bad value '$value'" unless $value =~ /^$FLOAT$/;
		my %labels;
		if (defined $lbl)
		{
			my $l = $lbl;
			while ($l =~ s/^\s*($LNAME)="((?:[^"\\\n]|\\[\\"n])*)"\s*(,|$)//)
			{
				push @err, "line $ln: label $1 twice" if exists $labels{$1};
				$labels{$1} = $2;
				last if $3 eq '';
			}
			push @err, "line $ln: bad labels '{$lbl}'" if $l ne '';
		}
		# the family a sample belongs to (histogram/summary suffixes)
		my $fname = $sname;
		for my $suffix (qw(_bucket _sum _count))
		{
			my $b = $sname =~ s/\Q$suffix\E$//r;
			if ($b ne $sname && $fam{$b} && ($fam{$b}{type} // '') =~ /^(histogram|summary)$/)
			{
				$fname = $b;
				last;
			}
		}
		my $key = $sname . '{' . join(',', map { "$_=$labels{$_}" } sort keys %labels) . '}';
		push @err, "line $ln: duplicate sample $key" if $seen_sample{$key}++;
		if (defined $current && $current ne $fname) { $closed{$current} = 1; }
		push @err, "line $ln: family $fname is not contiguous" if $closed{$fname};
		$current = $fname;
		my $f = $fam{$fname} //= { samples => [] };
		push @{ $f->{samples} }, [ $sname, \%labels, prom_value($value) ];
	}

	# per-type rules
	for my $name (sort keys %fam)
	{
		my $f = $fam{$name};
		my $type = $f->{type} // 'untyped';
		push @err, "$name: HELP or TYPE without samples" unless @{ $f->{samples} };
		if ($type eq 'counter' || $type eq 'gauge' || $type eq 'untyped')
		{
			for my $s (@{ $f->{samples} })
			{
				push @err, "$name: sample $s->[0] has another name" if $s->[0] ne $name;
				push @err, "$name: counter is negative" if $type eq 'counter' && $s->[2] < 0;
			}
		}
		if ($type eq 'histogram')
		{
			my (@buckets, $sum, $count);
			for my $s (@{ $f->{samples} })
			{
				my ($sn, $l, $v) = @$s;
				if ($sn eq "${name}_bucket")
				{
					if (!defined $l->{le} || $l->{le} !~ /^$FLOAT$/) { push @err, "$name: bucket without a valid le"; next; }
					push @buckets, [ prom_value($l->{le}), $v ];
				}
				elsif ($sn eq "${name}_sum") { $sum = $v; }
				elsif ($sn eq "${name}_count") { $count = $v; }
				else { push @err, "$name: unexpected sample $sn in a histogram"; }
			}
			push @err, "$name: no _sum" unless defined $sum;
			push @err, "$name: no _count" unless defined $count;
			push @err, "$name: no buckets" unless @buckets;
			for my $i (1 .. $#buckets)
			{
				push @err, "$name: le not increasing" unless $buckets[$i][0] > $buckets[ $i - 1 ][0];
				push @err, "$name: buckets not cumulative" unless $buckets[$i][1] >= $buckets[ $i - 1 ][1];
			}
			if (@buckets)
			{
				push @err, "$name: last bucket is not le=\"+Inf\"" unless $buckets[-1][0] == 9**9**9;
				push @err, "$name: +Inf bucket ($buckets[-1][1]) != _count (" . ($count // 'none') . ")"
				  unless defined $count && $buckets[-1][1] == $count;
			}
			push @err, "$name: negative _sum" if defined $sum && $sum < 0;
			push @err, "$name: _count is not an integer" if defined $count && $count != int($count);
		}
	}
	return (\%fam, \@err);
}

sub value_of
{
	my ($fam, $name, $sample) = @_;
	$sample //= $name;
	my $f = $fam->{$name} or return undef;
	for my $s (@{ $f->{samples} }) { return $s->[2] if $s->[0] eq $sample && !%{ $s->[1] }; }
	return undef;
}

# ---- the parser itself refuses broken input (so its passes mean something) ----
for my $bad (
	[ "x 1", 'no trailing newline' ],
	[ "# TYPE x counter\nx{a=\"1\" 1\n", 'unclosed labels' ],
	[ "# TYPE x counter\nx one\n", 'non-numeric value' ],
	[ "# TYPE 9x counter\n9x 1\n", 'bad name' ],
	[ "# TYPE h histogram\nh_bucket{le=\"1\"} 3\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 2\n", 'non-cumulative buckets' ],
	[ "# TYPE h histogram\nh_bucket{le=\"+Inf\"} 2\nh_sum 1\nh_count 3\n", '+Inf != count' ],
	[ "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\na 2\n", 'family not contiguous' ],
	[ "a 1\n# TYPE a gauge\n", 'TYPE after samples' ])
{
	my (undef, $errs) = parse_prometheus($bad->[0]);
	ok(@$errs > 0, "the parser refuses: $bad->[1]");
}

# ---- a run with accepted, rejected, duplicate and alert-worthy records ----
sql("INSERT INTO logagg.destinations (name, kind, config) VALUES ('hook', 'webhook', '{\"url\": \"http://127.0.0.1:9/\"}')");
# no storm guard: every alert-worthy record here must queue its own alert
sql("INSERT INTO logagg.routes (destination, min_severity, max_notifications) VALUES ('hook', 'critical', NULL)");

my ($out, $err) = ('', '');
run([ emitter_path(), '--url', "$base/ingest", '--token', $token, '--profile', 'a',
		'--count', '20000', '--batch', '50', '--give-up-after', '20' ],
	'>', \$out, '2>', \$err, timeout(120));
is($? >> 8, 0, 'emitter run: every record acked') or diag($err);
run([ emitter_path(), '--url', "$base/ingest", '--token', $token, '--profile', 'b',
		'--stream', 'm1', '--count', '3000', '--batch', '10', '--give-up-after', '20' ],
	'>', \$out, '2>', \$err, timeout(120));
is($? >> 8, 0, 'stream run: every record acked') or diag($err);
# resend seqs 2999..3001 on the stream: two duplicates, one new record
$out = probe("open:a:/ingest?stream=m1:$token", "recv:a",
	'send:a:[{"seq":2999,"message":"dup"},{"seq":3000,"message":"dup"},{"seq":3001,"message":"new"}]', "recv:a");
like($out, qr/"ack": 3001/, 'stream resend: acked through 3001');
$out = probe("open:a:/ingest:$token",
	'send:a:{"message":"ok"}\n{"ts":"never"}\n[1]\n{"status":"x"}\nnot json', "recv:a", "recv:a:0.3");
is(scalar(() = $out =~ /"error"/g), 4, 'four rejected records');
my $res = $http->post("http://127.0.0.1:$port/ingest",
	{ headers => { Authorization => "Bearer $token" }, content => qq({"message":"h1"}\n{"ts":false}\n) });
like($res->{content}, qr/"accepted": 1, "rejected": 1/, 'POST /ingest: one accepted, one rejected');

# ---- scrape and parse ----
$res = $http->get("http://127.0.0.1:$port/metrics");
is($res->{status}, 200, 'GET /metrics: 200');
like($res->{headers}{'content-type'}, qr{^text/plain; version=0\.0\.4}, 'content type of text format 0.0.4');
my ($fam, $errs) = parse_prometheus($res->{content});
is_deeply($errs, [], '/metrics parses as Prometheus text format') or diag($res->{content});

for my $m (
	[ 'logagg_ingest_rows_total', 'counter' ], [ 'logagg_ingest_rejects_total', 'counter' ],
	[ 'logagg_ingest_duplicates_total', 'counter' ], [ 'logagg_ingest_batches_total', 'counter' ],
	[ 'logagg_ingest_connections', 'gauge' ], [ 'logagg_ingest_connections_total', 'counter' ],
	[ 'logagg_ingest_alerts_queued_total', 'counter' ], [ 'logagg_alert_queue_depth', 'gauge' ],
	[ 'logagg_ingest_flush_seconds', 'histogram' ])
{
	is($fam->{ $m->[0] }{type}, $m->[1], "$m->[0] is a $m->[1] with HELP")
	  and ok(($fam->{ $m->[0] }{help} // '') ne '', "$m->[0] has a HELP text");
}

# ---- counters against the tables ----
my $logs = sql("SELECT count(*) FROM logagg.logs");
is($logs, 20000 + 3000 + 1 + 1 + 1, 'logs: the emitter runs, the new stream record, the ok line and the POST');
is(value_of($fam, 'logagg_ingest_rows_total'), $logs, "records accepted ($logs) = count(*) of logagg.logs");
is(value_of($fam, 'logagg_ingest_rejects_total'), sql("SELECT count(*) FROM logagg.rejected"),
	'records rejected = count(*) of logagg.rejected');
is(value_of($fam, 'logagg_ingest_rejects_total'), 5, 'which is the 5 refused records');
is(value_of($fam, 'logagg_ingest_duplicates_total'), 2, 'duplicates = the two resent stream records');
my $batches = value_of($fam, 'logagg_ingest_batches_total');
cmp_ok($batches, '>', 0, "batches counted ($batches)");
cmp_ok($batches, '<=', $logs, 'no more batches than rows');
is(value_of($fam, 'logagg_ingest_flush_seconds', 'logagg_ingest_flush_seconds_count'), $batches,
	'flush latency histogram: one observation per committed batch');
cmp_ok(value_of($fam, 'logagg_ingest_flush_seconds', 'logagg_ingest_flush_seconds_sum'), '>', 0,
	'flush latency histogram: the time adds up to something');
my $depth = sql("SELECT count(*) FROM logagg.alert_queue WHERE dead_at IS NULL");
cmp_ok($depth, '>', 0, "5xx/404 records queued alerts ($depth pending, no dispatcher running)");
is(value_of($fam, 'logagg_alert_queue_depth'), $depth, 'queue depth = pending rows of logagg.alert_queue');
cmp_ok(value_of($fam, 'logagg_ingest_alerts_queued_total'), '>=', $depth, 'alerts queued counter covers them');
cmp_ok(value_of($fam, 'logagg_ingest_connections_total'), '>=', 5, 'connections counted');
cmp_ok(value_of($fam, 'logagg_ingest_connections'), '>=', 1, 'open connections: at least the scrape itself');

# counters and status() agree
is(sql("SELECT rows_stored || ',' || batches || ',' || rejects FROM logagg.status() WHERE kind = 'ingest'"),
	join(',', $logs, $batches, 5), 'logagg.status() shows the same rows, batches and rejects');

# ---- the queue depth follows changes made in SQL too (dispatcher-less
# here: the ingest worker publishes it after the batches that queue alerts) ----
$out = probe("open:a:/ingest:$token", 'send:a:{"status": 503, "message": "more alerts", "path": "/other"}', "recv:a");
like($out, qr/"ack_count": 1/, 'one more alert-worthy record');
ok(poll_until(sub {
	my $m = $http->get("http://127.0.0.1:$port/metrics");
	my ($f) = parse_prometheus($m->{content});
	my ($got, $want) = (value_of($f, 'logagg_alert_queue_depth') // -1,
		sql("SELECT count(*) FROM logagg.alert_queue WHERE dead_at IS NULL"));
	note("queue depth: published $got, table $want");
	return $got == $want && $want > $depth;
}, 10), 'the published queue depth follows the new alert');

# ---- logagg.metrics_token ----
my $mtoken = 'm3trics-' . ('s' x 24);
sql("ALTER SYSTEM SET logagg.metrics_token = '$mtoken'");
sql("SELECT pg_reload_conf()");
ok(poll_until(sub { $http->get("http://127.0.0.1:$port/metrics")->{status} == 401 }, 30),
	'after a reload with logagg.metrics_token set, /metrics without a token: 401');
$res = $http->get("http://127.0.0.1:$port/metrics");
like($res->{headers}{'www-authenticate'} // '', qr/^Bearer/, 'the 401 asks for a bearer token');
unlike($res->{content}, qr/logagg_ingest/, 'and carries no metrics');
for my $wrong ('wrong', substr($mtoken, 0, -1), $mtoken . 'x', lc($mtoken) . 'X', '')
{
	$res = $http->get("http://127.0.0.1:$port/metrics", { headers => { Authorization => "Bearer $wrong" } });
	is($res->{status}, 401, "a wrong token ('$wrong'): 401");
}
$res = $http->get("http://127.0.0.1:$port/metrics?token=$mtoken");
is($res->{status}, 401, 'the token in the URL is not accepted (it would end up in access logs)');
$res = $http->get("http://127.0.0.1:$port/metrics", { headers => { Authorization => "Bearer $mtoken" } });
is($res->{status}, 200, 'the right token: 200');
($fam, $errs) = parse_prometheus($res->{content});
is_deeply($errs, [], 'and the body still parses');
is(value_of($fam, 'logagg_ingest_rows_total'), sql("SELECT count(*) FROM logagg.logs"), 'with the right counters');
is($http->get("http://127.0.0.1:$port/healthz")->{status}, 200, '/healthz stays open');
sql("CREATE ROLE metrics_nobody");
is(sql("SET ROLE metrics_nobody; SELECT count(*) FROM pg_settings WHERE name = 'logagg.metrics_token'"), 0,
	'the setting is hidden from other roles');
sql("ALTER SYSTEM RESET logagg.metrics_token");
sql("SELECT pg_reload_conf()");
ok(poll_until(sub { $http->get("http://127.0.0.1:$port/metrics")->{status} == 200 }, 30),
	'reset: /metrics is open again');

$node->stop;
done_testing();
