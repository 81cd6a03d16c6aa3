# 440_ingest_field_names.pl -- the field names of shippers and logging
# libraries on every path: WebSocket, POST /ingest, POST /_bulk and
# logagg.ingest(), each record both through the fast scanner and through
# the generic JSON path (a \u escape sends it there).  Time in ts,
# timestamp, @timestamp, time, date (RFC 3339 and its variants, epoch
# seconds with a fraction, integer seconds, ms, us and ns told apart by
# magnitude, at the thresholds); message in message, msg, log, body,
# MESSAGE; level in level, severity, log.level, severity_text, levelname
# and as numbers (syslog 0-7, pino 10-60); status in status, status_code,
# http.status_code, http.response.status_code.  The name listed first
# wins wherever it stands in the record; the others are kept in attrs.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use Time::Local qw(timegm);
use LogaggTest;

# no time window: the magnitude thresholds are years 1973 and 5138
my $node = new_node('field_names', qq{
logagg.dispatch_workers = 0
logagg.max_ts_past = -1
logagg.max_ts_future = -1
});
start_with_extension($node);
my $port = $node->{logagg_port};
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-names')");
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->canonical;
sub sql { return $node->safe_psql('postgres', $_[0]); }
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");

my $t0 = timegm(0, 10, 15, 2, 11, 2026);    # 2026-12-02T15:10:00Z
my $us0 = $t0 * 1_000_000;

# [name, record fields (JSON text without braces), expected message,
#  level, status, ts in us since the epoch (undef: arrival), attrs (JSON)]
my @cases = (
	# time, each name alone and in each form
	[ 'ts-rfc3339', '"ts":"2026-12-02T15:10:00.123456Z","msg":"m"', 'm', undef, undef, $us0 + 123456, '{}' ],
	[ 'timestamp-offset', '"timestamp":"2026-12-02T16:10:00.5+01:00","msg":"m"', 'm', undef, undef, $us0 + 500000, '{}' ],
	[ 'timestamp-python', '"timestamp":"2026-12-02 15:10:00,123","msg":"m"', 'm', undef, undef, $us0 + 123000, '{}' ],
	[ 'timestamp-hhmm', '"timestamp":"2026-12-02T15:10:00-0130","msg":"m"', 'm', undef, undef, $us0 + 5400_000_000, '{}' ],
	[ 'at-timestamp', '"@timestamp":"2026-12-02T15:10:00.000001Z","msg":"m"', 'm', undef, undef, $us0 + 1, '{}' ],
	[ 'time-seconds-fraction', qq("time":$t0.123456,"msg":"m"), 'm', undef, undef, $us0 + 123456, '{}' ],
	[ 'date-fluent-bit', qq("date":$t0.654321,"log":"m"), 'm', undef, undef, $us0 + 654321, '{}' ],
	[ 'ts-seconds', qq("ts":$t0,"msg":"m"), 'm', undef, undef, $us0, '{}' ],
	[ 'ts-ms', qq("ts":${t0}123,"msg":"m"), 'm', undef, undef, $us0 + 123000, '{}' ],
	[ 'ts-ms-fraction', qq("ts":${t0}123.456,"msg":"m"), 'm', undef, undef, $us0 + 123456, '{}' ],
	[ 'ts-us', qq("ts":${t0}123456,"msg":"m"), 'm', undef, undef, $us0 + 123456, '{}' ],
	[ 'ts-ns', qq("ts":${t0}123456789,"msg":"m"), 'm', undef, undef, $us0 + 123457, '{}' ],
	[ 'time-ms-string', qq("time":"${t0}250","msg":"m"), 'm', undef, undef, $us0 + 250000, '{}' ],
	[ 'ts-exponent', qq("ts":1.7962242001e9,"msg":"m"), 'm', undef, undef, $us0 + 100000, '{}' ],
	# the thresholds: below 1e11 seconds, below 1e14 ms, below 1e17 us, else ns
	[ 'below-1e11', '"ts":99999999999,"msg":"m"', 'm', undef, undef, '99999999999000000', '{}' ],
	[ 'at-1e11', '"ts":100000000000,"msg":"m"', 'm', undef, undef, '100000000000000', '{}' ],
	[ 'below-1e14', '"ts":99999999999999,"msg":"m"', 'm', undef, undef, '99999999999999000', '{}' ],
	[ 'at-1e14', '"ts":100000000000000,"msg":"m"', 'm', undef, undef, '100000000000000', '{}' ],
	[ 'below-1e17', '"ts":99999999999999999,"msg":"m"', 'm', undef, undef, '99999999999999999', '{}' ],
	[ 'at-1e17', '"ts":100000000000000000,"msg":"m"', 'm', undef, undef, '100000000000000', '{}' ],
	# message
	[ 'message', '"message":"m1"', 'm1', undef, undef, undef, '{}' ],
	[ 'msg', '"msg":"m2"', 'm2', undef, undef, undef, '{}' ],
	[ 'log', '"log":"m3"', 'm3', undef, undef, undef, '{}' ],
	[ 'body', '"body":"m4"', 'm4', undef, undef, undef, '{}' ],
	[ 'MESSAGE', '"MESSAGE":"m5"', 'm5', undef, undef, undef, '{}' ],
	# level, and levels given as numbers
	[ 'level', '"level":"WARNING","msg":"m"', 'm', 'warn', undef, undef, '{}' ],
	[ 'severity', '"severity":"ERROR","msg":"m"', 'm', 'error', undef, undef, '{}' ],
	[ 'log.level', '"log.level":"info","msg":"m"', 'm', 'info', undef, undef, '{}' ],
	[ 'severity_text', '"severity_text":"Debug","msg":"m"', 'm', 'debug', undef, undef, '{}' ],
	[ 'levelname', '"levelname":"CRITICAL","msg":"m"', 'm', 'fatal', undef, undef, '{}' ],
	[ 'syslog-0', '"level":0,"msg":"m"', 'm', 'fatal', undef, undef, '{}' ],
	[ 'syslog-3', '"severity":3,"msg":"m"', 'm', 'error', undef, undef, '{}' ],
	[ 'syslog-4-text', '"level":"4","msg":"m"', 'm', 'warn', undef, undef, '{}' ],
	[ 'syslog-5', '"level":5,"msg":"m"', 'm', 'notice', undef, undef, '{}' ],
	[ 'syslog-7', '"level":7,"msg":"m"', 'm', 'debug', undef, undef, '{}' ],
	[ 'pino-50', '"level":50,"msg":"m"', 'm', 'error', undef, undef, '{}' ],
	[ 'pino-30', '"level":30,"msg":"m"', 'm', 'info', undef, undef, '{}' ],
	[ 'otel-number', '"severity_number":17,"msg":"m"', 'm', 'error', undef, undef, '{}' ],
	[ 'level-beats-number', '"severity_number":17,"level":"info","msg":"m"', 'm', 'info', undef, undef, '{}' ],
	# status
	[ 'status', '"status":200,"msg":"m"', 'm', undef, 200, undef, '{}' ],
	[ 'status_code', '"status_code":"503","msg":"m"', 'm', undef, 503, undef, '{}' ],
	[ 'http.status_code', '"http.status_code":404,"msg":"m"', 'm', undef, 404, undef, '{}' ],
	[ 'http.response.status_code', '"http.response.status_code":502,"msg":"m"', 'm', undef, 502, undef, '{}' ],
	# precedence: the first listed name wins wherever it stands; the rest in attrs
	[ 'time-reversed', qq("date":$t0.5,"time":"x","\@timestamp":"2026-12-02T15:10:03Z","timestamp":"2026-12-02T15:10:02Z","ts":"2026-12-02T15:10:01Z","msg":"m"),
	  'm', undef, undef, $us0 + 1_000_000,
	  qq({"date":$t0.5,"time":"x","\@timestamp":"2026-12-02T15:10:03Z","timestamp":"2026-12-02T15:10:02Z"}) ],
	[ 'time-in-order', qq("timestamp":"2026-12-02T15:10:02Z","date":$t0.5,"msg":"m"),
	  'm', undef, undef, $us0 + 2_000_000, qq({"date":$t0.5}) ],
	[ 'message-reversed', '"MESSAGE":"m5","body":"m4","log":"m3","msg":"m2","message":"m1"',
	  'm1', undef, undef, undef, '{"MESSAGE":"m5","body":"m4","log":"m3","msg":"m2"}' ],
	[ 'message-in-order', '"msg":"m2","log":"m3","MESSAGE":"m5"',
	  'm2', undef, undef, undef, '{"log":"m3","MESSAGE":"m5"}' ],
	[ 'level-reversed', '"levelname":"ERROR","severity_text":"WARN","log.level":"info","severity":"debug","level":"fatal","msg":"m"',
	  'm', 'fatal', undef, undef, '{"levelname":"ERROR","severity_text":"WARN","log.level":"info","severity":"debug"}' ],
	[ 'status-reversed', '"http.response.status_code":500,"http.status_code":404,"status_code":201,"status":200,"msg":"m"',
	  'm', undef, 200, undef, '{"http.response.status_code":500,"http.status_code":404,"status_code":201}' ],
	[ 'status-code-over-ecs', '"http.response.status_code":500,"status_code":201,"msg":"m"',
	  'm', undef, 201, undef, '{"http.response.status_code":500}' ],
	# null counts as absent: the next name takes the field
	[ 'null-level', '"level":null,"severity":"error","msg":"m"', 'm', 'error', undef, undef, '{"level":null}' ],
	[ 'level-then-null', '"severity":"error","level":null,"msg":"m"', 'm', 'error', undef, undef, '{"level":null}' ],
	# Filebeat: message, and log as an object of its own
	[ 'filebeat-log-object', '"@timestamp":"2026-12-02T15:10:00Z","message":"line","log":{"offset":3,"file":{"path":"/var/log/a.log"}}',
	  'line', undef, undef, $us0, '{"log":{"offset":3,"file":{"path":"/var/log/a.log"}}}' ],
);

# [name, record fields, reason]: a bad value of the winning name rejects the record, naming it
my @bad = (
	[ 'bad-date', '"date":"yesterday","msg":"m"', 'date must be an RFC 3339 timestamp or epoch seconds, milliseconds, microseconds or nanoseconds' ],
	[ 'bad-level-number', '"level":8,"msg":"m"', 'level must be a string of at most 32 characters, a syslog severity from 0 to 7 or a pino level' ],
	[ 'bad-status_code', '"status_code":"ok","msg":"m"', 'status_code must be an integer from 0 to 999' ],
	[ 'bad-severity-object', '"severity":{"x":1},"msg":"m"', 'severity must not be an object or array' ],
);

# one record of a case for a path: k names it, z (a \u escape) sends it
# through the generic JSON path
sub record
{
	my ($path, $slow, $fields) = @_;
	my $k = qq("k":"$path");
	return $slow ? qq({$k,$fields,"z":"\\u00e9"}) : qq({$fields,$k});
}

my @paths = qw(ws post bulk sql);
my $expect_rows = 0;
for my $path (@paths)
{
	for my $slow (0, 1)
	{
		my @recs;
		for my $c (@cases, @bad)
		{
			push @recs, record("$path-$slow-$c->[0]", $slow, $c->[1]);
		}
		if ($path eq 'ws')
		{
			my $out = ws_probe("ws://127.0.0.1:$port", "open:a:/ingest:$token",
				'send:a:' . join('\n', @recs), 'recv:a');
		}
		elsif ($path eq 'post')
		{
			my $r = $http->request('POST', "http://127.0.0.1:$port/ingest",
				{ headers => { Authorization => "Bearer $token", 'Content-Type' => 'application/x-ndjson' },
				  content => join("\n", @recs) . "\n" });
			is($r->{status}, 200, "POST /ingest ($slow): 200");
		}
		elsif ($path eq 'bulk')
		{
			my $r = $http->request('POST', "http://127.0.0.1:$port/_bulk",
				{ headers => { Authorization => "Bearer $token", 'Content-Type' => 'application/x-ndjson' },
				  content => join('', map { qq({"create":{"_index":"logs"}}\n$_\n) } @recs) });
			is($r->{status}, 200, "_bulk ($slow): 200");
		}
		else
		{
			my $arr = '[' . join(',', @recs) . ']';
			$arr =~ s/'/''/g;
			sql("SELECT logagg.ingest('$arr')");
		}
		$expect_rows += @cases;
	}
}
ok(poll_until(sub { sql("SELECT count(*) FROM logagg.logs") == $expect_rows }, 60),
	"all $expect_rows records stored")
  or diag(sql("SELECT count(*) FROM logagg.logs"));

my %got;
for my $row (split /\n/, sql(q{
	SELECT attrs->>'k', coalesce(message, '<null>'), coalesce(level, '<null>'),
	       coalesce(status::text, '<null>'),
	       CASE WHEN ts = received_at THEN 'arrival'
	            ELSE (extract(epoch FROM ts) * 1000000)::bigint::text END,
	       (attrs - 'k' - 'z')::text
	  FROM logagg.logs}))
{
	my ($k, @v) = split /\|/, $row, 6;
	$got{$k} = \@v;
}
for my $path (@paths)
{
	for my $slow (0, 1)
	{
		for my $c (@cases)
		{
			my ($name, $fields, $msg, $level, $status, $us, $attrs) = @$c;
			my $k = "$path-$slow-$name";
			my $exp_attrs = sql("SELECT '$attrs'::jsonb::text");
			is_deeply($got{$k},
				[ $msg, $level // '<null>', $status // '<null>', $us // 'arrival', $exp_attrs ],
				"$k: message, level, status, ts, attrs");
		}
	}
}

# the rejects name the field as the record gave it
for my $c (@bad)
{
	my ($name, $fields, $reason) = @$c;
	is(sql("SELECT count(*) FROM logagg.rejected WHERE raw LIKE '%-$name\"%' AND reason = '$reason'"),
		scalar(@paths) * 2, "$name: rejected on every path and parse with '$reason'");
}
is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'the ingest worker kept its PID');

done_testing();
