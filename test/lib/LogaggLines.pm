# LogaggLines.pm -- real plain-text log lines (nginx access and error,
# syslog with and without <PRI>, RFC 5424, Python logging, glog, logfmt)
# with the level, HTTP status, time and severity logagg must read from
# each, and the check that the stored rows say so.  Shared by the tests
# of plain-text lines and of the shippers that tail files.
package LogaggLines;

use strict;
use warnings;
use POSIX qw(strftime);
use Test::More;
use Exporter 'import';

our @EXPORT = qw(plain_lines check_plain_lines);

# plain_lines(T): the lines, as if they happened at epoch second T:
# [line, level, status, ts in us since the epoch (undef: the line has no
# time of its own), severity]
sub plain_lines
{
	my ($t) = @_;
	my $us = $t * 1_000_000;
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

	return (
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
		[ qq([WARN] quota near limit level=unknown), 'warn', undef, undef, 'low' ],
		[ qq(${rfc}Z ERROR payment failed order=200 status=502), 'error', 502, $us, 'critical' ],
		[ qq(${rfc}.250+02:00 INFO request served in 12 ms), 'info', undef, $us + 250000 - 7200_000_000, 'low' ],
		[ qq({"level":"error","message":"json in a log line","status":500}), 'error', 500, undef, 'critical' ],
		# lines that show nothing: level and status stay NULL
		[ qq(just some text with no markers, error count 0, Warning ignored), undef, undef, undef, 'low' ],
		[ qq(GET /health 200 in 3ms), undef, undef, undef, 'low' ],
		[ qq(ERRORS are counted, not logged: INFORMATIONAL_ONLY), undef, undef, undef, 'low' ],
		# a time 30 days old is outside the window: not the line's ts
		[ qq($old ERROR too old to be this line's time), 'error', undef, undef, 'high' ],
	);
}

# check_plain_lines(NODE, WHAT, WHERE, LINES, SHIPPER_TS, LOST_KEY): the rows
# matching WHERE hold every line of LINES with its level, status and
# severity (= logagg.classify of those); the line's own time as ts, or else
# SHIPPER_TS (an SQL expression over the row: the time the shipper gave,
# received_at when none); when the line's time won and LOST_KEY is given,
# the shipper's time is kept in attrs under LOST_KEY.
sub check_plain_lines
{
	my ($node, $what, $where, $lines, $shipper_ts, $lost_key) = @_;
	my $lost = defined $lost_key ? "attrs ? '$lost_key'" : 'true';
	my %got;
	for my $row (split /\n/, $node->safe_psql('postgres', qq{
		SELECT message, coalesce(level, '<null>'), coalesce(status::text, '<null>'),
		       (extract(epoch FROM ts) * 1000000)::bigint, severity,
		       logagg.classify(status, level, source, message), (ts = $shipper_ts)::text, ($lost)::text
		  FROM logagg.logs WHERE $where}))
	{
		my @v = split /\|/, $row;
		my $line = shift @v;
		$got{$line} = \@v;
	}
	is(scalar(keys %got), scalar(@$lines), "$what: one row per line");
	for my $l (@$lines)
	{
		my ($line, $level, $status, $ts, $sev) = @$l;
		my $g = $got{$line};
		ok($g, "$what: stored with its message: $line") or next;
		is_deeply([ @$g[ 0, 1, 3, 4 ] ], [ $level // '<null>', $status // '<null>', $sev, $sev ],
			"$what: level, status, severity (as logagg.classify gives them): $line");
		if (defined $ts)
		{
			is($g->[2], $ts, "$what: ts is the line's own time: $line");
			is($g->[6], 'true', "$what: the shipper's time kept in attrs as $lost_key: $line")
			  if defined $lost_key;
		}
		else
		{
			is($g->[5], 'true', "$what: ts is the shipper's time: $line");
		}
	}
}

1;
