# 441_ingest_plain_lines.pl -- plain-text lines (a message, no level,
# no status): their level, HTTP status and time are read from the line
# itself.  Real nginx access and error lines, syslog lines (RFC 3164, with
# a <PRI>, RFC 5424), Python logging lines, glog lines, logfmt and the
# issue's example, sent as Fluent Bit's http output sends them
# ({"date": epoch seconds, "log": line}): each stored with its message,
# the level and status the line shows, its own time (which wins over the
# shipper's date, kept in attrs), and the severity logagg.classify gives
# those.  Lines that show nothing stay level NULL; a structured record is
# left as it is; a line time outside the window is not used.  Detection
# is switchable per source (logagg.set_source_detection), honoured by the
# ingest worker's token cache and by logagg.ingest().
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use POSIX qw(strftime);
use LogaggTest;

my $node = new_node('plain_lines', "logagg.dispatch_workers = 0\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-plain')");
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->canonical;
sub sql { return $node->safe_psql('postgres', $_[0]); }
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");

# the lines happened an hour ago (whole seconds), the shipper read them 10 s ago
my $t = time() - 3600;
my $us = $t * 1_000_000;
my $read = time() - 10;
my @mon = qw(Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec);
my @g = gmtime($t);
my @g1 = gmtime($t + 3600);    # the same moment at +01:00
my $rfc = strftime('%Y-%m-%dT%H:%M:%S', @g);
my $clf = sprintf('%02d/%s/%04d:%s', $g[3], $mon[ $g[4] ], $g[5] + 1900, strftime('%H:%M:%S', @g));
my $clf1 = sprintf('%02d/%s/%04d:%s', $g1[3], $mon[ $g1[4] ], $g1[5] + 1900, strftime('%H:%M:%S', @g1));
my $ngx = strftime('%Y/%m/%d %H:%M:%S', @g);
my $sys = sprintf('%s %2d %s', $mon[ $g[4] ], $g[3], strftime('%H:%M:%S', @g));
my $py = strftime('%Y-%m-%d %H:%M:%S', @g);
my $glog = strftime('%m%d %H:%M:%S', @g);
my $old = strftime('%Y-%m-%dT%H:%M:%SZ', gmtime(time() - 30 * 86400));

# [line, level, status, ts in us (undef: the shipper's date), severity]
my @lines = (
	[ qq(203.0.113.7 - - [$clf +0000] "GET /api/orders?id=200 HTTP/1.1" 502 157 "-" "curl/8.5.0"),
	  undef, 502, $us, 'critical' ],
	[ qq(203.0.113.7 - alice [$clf1 +0100] "POST /login HTTP/1.1" 401 23 "https://shop/" "Mozilla/5.0 (X11; Linux x86_64)"),
	  undef, 401, $us, 'high' ],
	[ qq(203.0.113.8 - - [$clf +0000] "GET / HTTP/1.1" 200 612 "-" "kube-probe/1.29"),
	  undef, 200, $us, 'low' ],
	[ qq($ngx [error] 31#31: *7 connect() failed (111: Connection refused) while connecting to upstream, client: 203.0.113.7, server: shop, request: "GET /api/orders HTTP/1.1", upstream: "http://127.0.0.1:9000/api/orders", host: "shop"),
	  'error', undef, $us, 'high' ],
	[ qq($ngx [warn] 31#31: *8 an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/1/00/0000000001 while reading upstream),
	  'warn', undef, $us, 'low' ],
	[ qq($ngx [emerg] 1#1: bind() to 0.0.0.0:80 failed (98: Address already in use)),
	  'fatal', undef, $us, 'critical' ],
	[ qq($sys web1 sshd[812]: Failed password for root from 203.0.113.9 port 22 ssh2),
	  undef, undef, $us, 'low' ],
	[ qq(<11>$sys web1 app[9]: disk almost full), 'error', undef, $us, 'high' ],
	[ qq(<165>1 $rfc.003Z web1 app 77 ID47 - payment retry scheduled), 'notice', undef, $us + 3000, 'low' ],
	[ qq(<10>$rfc+00:00 web1 kernel: Out of memory: Killed process 4242 (java)), 'fatal', undef, $us, 'critical' ],
	[ qq($py,123 - payments - ERROR - payment failed order=200 status=502), 'error', 502, $us + 123000, 'critical' ],
	[ qq($py,004 - urllib3.connectionpool - WARNING - Retrying (Retry(total=2)) after connection broken),
	  'warn', undef, $us + 4000, 'low' ],
	[ qq(ERROR:root:payment failed for order 200), 'error', undef, undef, 'high' ],
	[ qq(CRITICAL:db:connection pool exhausted), 'fatal', undef, undef, 'critical' ],
	[ qq(E$glog.123456    1234 server.go:42] upstream timeout after 30s), 'error', undef, $us + 123456, 'high' ],
	[ qq(W$glog.000001    1234 cache.go:7] cache miss ratio 0.93), 'warn', undef, $us + 1, 'low' ],
	[ qq(I$glog.500000    1234 main.go:10] started), 'info', undef, $us + 500000, 'low' ],
	[ qq(time=${rfc}Z level=warn msg="slow query" duration=2.3s status=200), 'warn', 200, undef, 'low' ],
	[ qq(lvl=E msg="no such level word" status_code=503), undef, 503, undef, 'critical' ],
	[ qq([WARN] cache miss ratio high), 'warn', undef, undef, 'low' ],
	[ qq(${rfc}Z ERROR payment failed order=200 status=502), 'error', 502, $us, 'critical' ],
	[ qq(${rfc}.250+02:00 INFO request served in 12 ms), 'info', undef, $us + 250000 - 7200_000_000, 'low' ],
	[ qq({"level":"error","message":"json in a log line","status":500}), 'error', 500, undef, 'critical' ],
	# lines that show nothing: level and status stay NULL
	[ qq(just some text with no markers, error count 0, Warning ignored), undef, undef, undef, 'low' ],
	[ qq(GET /health 200 in 3ms), undef, undef, undef, 'low' ],
	[ qq(ERRORS are counted, not logged: INFORMATIONAL_ONLY), undef, undef, undef, 'low' ],
	[ qq($old ERROR too old to be this line's time), 'error', undef, undef, 'high' ],
);

# Fluent Bit's http output, Format json_lines: {"date": seconds.micros, "log": line}
my $date = sprintf('%d.%06d', $read, 654321);
my $read_us = $read * 1_000_000 + 654321;
my $jstr = JSON::PP->new->allow_nonref;
# the exact bytes: date as a number with six decimals, then the line
my $body = join('', map { qq({"date":$date,"log":) . $jstr->encode($_->[0]) . "}\n" } @lines);
my $r = $http->request('POST', "http://127.0.0.1:$port/ingest",
	{ headers => { Authorization => "Bearer $token", 'Content-Type' => 'application/json' }, content => $body });
is($r->{status}, 200, 'POST /ingest of the lines: 200');
like($r->{content}, qr/"accepted": ${\ scalar @lines}, "rejected": 0/, 'every line accepted');

sub check_lines
{
	my ($what, $where, $dated) = @_;
	my %got;
	for my $row (split /\n/, sql(qq{
		SELECT message, coalesce(level, '<null>'), coalesce(status::text, '<null>'),
		       (extract(epoch FROM ts) * 1000000)::bigint, severity,
		       logagg.classify(status, level, source, message), coalesce(attrs->>'date', '<null>'),
		       (extract(epoch FROM received_at) * 1000000)::bigint
		  FROM logagg.logs WHERE $where}))
	{
		my @v = split /\|/, $row;
		my $line = shift @v;
		$got{$line} = \@v;
	}
	for my $l (@lines)
	{
		my ($line, $level, $status, $ts, $sev) = @$l;
		my $g = $got{$line};
		ok($g, "$what: stored: $line") or next;
		my $exp_ts = $ts // ($dated ? $read_us : $g->[6]);
		is_deeply([ @$g[ 0 .. 4 ] ], [ $level // '<null>', $status // '<null>', $exp_ts, $sev, $sev ],
			"$what: level, status, ts, severity (as logagg.classify gives it): $line");
		if ($dated)
		{
			is($g->[5], defined $ts ? $date : '<null>',
				"$what: the shipper's date " . (defined $ts ? 'kept in attrs' : 'is the ts') . ": $line");
		}
	}
}
check_lines('http', "source = 'svc-plain'", 1);

# ---- a structured record is left as it is: no status read from its message ----
$r = $http->request('POST', "http://127.0.0.1:$port/ingest",
	{ headers => { Authorization => "Bearer $token" },
	  content => qq({"level":"info","message":"structured: \\"GET / HTTP/1.1\\" 502 1 ERROR"}\n{"status":200,"message":"ERROR in the text"}) });
is(sql(q{SELECT string_agg(coalesce(level, '-') || '/' || coalesce(status::text, '-'), ',' ORDER BY message DESC)
          FROM logagg.logs WHERE message LIKE 'structured:%' OR message = 'ERROR in the text'}),
	'info/-,-/200', 'a record with a level or a status: nothing read from its message');

# ---- WebSocket and logagg.ingest() read lines the same way ----
sql("TRUNCATE logagg.logs");
my $out = ws_probe("ws://127.0.0.1:$port", "open:a:/ingest:$token",
	'send:a:' . join('\n', map { my $e = $json->encode({ log => $_->[0] }); $e =~ s/\\n/ /g; $e } @lines), 'recv:a');
ok(poll_until(sub { sql("SELECT count(*) FROM logagg.logs") == @lines }), 'WebSocket: the lines stored');
check_lines('ws', "source = 'svc-plain'", 0);

sql("TRUNCATE logagg.logs");
my $arr = $json->encode([ map { { message => $_->[0], source => 'svc-sql' } } @lines ]);
$arr =~ s/'/''/g;
is(sql("SELECT logagg.ingest('$arr')"), scalar(@lines), 'logagg.ingest(): the lines stored');
check_lines('sql', "source = 'svc-sql'", 0);

# ---- switched off per source ----
my $probe = qq(${rfc}Z ERROR payment failed status=502);
sql("SELECT logagg.set_source_detection('svc-plain', false)");
is(sql("SELECT detect FROM logagg.sources WHERE name = 'svc-plain'"), 'f', 'sources.detect is off');
my $n = 0;
# the worker's cache follows the change: poll with fresh lines until one is stored undetected
ok(poll_until(sub {
	$n++;
	$http->request('POST', "http://127.0.0.1:$port/ingest",
		{ headers => { Authorization => "Bearer $token" }, content => $json->encode({ log => "$probe off-$n" }) });
	sql("SELECT level IS NULL AND status IS NULL AND ts = received_at FROM logagg.logs WHERE message = '$probe off-$n'") eq 't';
}, 30), 'detection off: the line is stored as it came (level, status NULL, ts the arrival)');
is(sql("SELECT severity FROM logagg.logs WHERE message = '$probe off-$n'"), 'low', 'detection off: severity low');

sql("SELECT logagg.create_source('svc-sql')");
sql("SELECT logagg.set_source_detection('svc-sql', false)");
sql(qq{SELECT logagg.ingest('{"source":"svc-sql","message":"$probe sql-off"}')});
is(sql("SELECT coalesce(level, '-') || '/' || coalesce(status::text, '-') FROM logagg.logs WHERE message = '$probe sql-off'"),
	'-/-', 'logagg.ingest(): detection off for svc-sql (records name their source)');
sql(qq{SELECT logagg.ingest('{"source":"svc-other","message":"$probe sql-on"}')});
is(sql("SELECT level || '/' || status FROM logagg.logs WHERE message = '$probe sql-on'"),
	'error/502', 'logagg.ingest(): another source still detects');

sql("SELECT logagg.set_source_detection('svc-plain', true)");
ok(poll_until(sub {
	$n++;
	$http->request('POST', "http://127.0.0.1:$port/ingest",
		{ headers => { Authorization => "Bearer $token" }, content => $json->encode({ log => "$probe on-$n" }) });
	sql("SELECT level = 'error' AND status = 502 AND severity = 'critical' FROM logagg.logs WHERE message = '$probe on-$n'") eq 't';
}, 30), 'detection on again: the line gets its level, status and severity');

my ($err) = $node->psql('postgres', "SELECT logagg.set_source_detection('no-such-source', true)", stderr => \my $stderr);
like($stderr, qr/source "no-such-source" does not exist/, 'set_source_detection: an unknown source is an error');
is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'the ingest worker kept its PID');

done_testing();
