# 442_ingest_shippers.pl -- shippers that tail a file of plain-text lines
# (nginx, syslog, Python logging, glog ..., then 10,000 more made of them:
# each stored once and compared in one query), unchanged but for a URL and a
# token: syslog-ng (http() to POST /ingest, elasticsearch-http() to
# /_bulk) and rsyslog (imfile, omelasticsearch to /_bulk), both started
# here on loopback with their own config and state in a temporary
# directory; and requests shaped byte for byte as Fluent Bit's http output
# sends them (Format json_lines, and its default json), on one keep-alive
# connection.  Every line is stored with its message, the level and status
# the line shows, its own time where the line has one (else the
# shipper's), and the severity logagg.classify gives those.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IO::Socket::INET;
use IPC::Run qw(start);
use LogaggTest;
use LogaggLines;

my $node = new_node('shippers', "logagg.dispatch_workers = 0\n");
start_with_extension($node);
my $port = $node->{logagg_port};
sub sql { return $node->safe_psql('postgres', $_[0]); }
my %token = map { $_ => sql("SELECT logagg.create_source('$_')") }
  qw(fb-lines fb-json syslog-ng syslog-ng-es rsyslog);
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");
my $dir = PostgreSQL::Test::Utils::tempdir();

my @lines = plain_lines(time() - 3600);

# ---- Fluent Bit's http output, byte for byte ----
# (plugins/out_http/http.c and src/flb_pack.c of Fluent Bit: each record
# is {"date": <the tail's read time as a double, printed %.16g, or %.1f
# when whole>, "log": <the line>}; json_lines puts one per line with
# Content-Type application/x-ndjson, the default json one array with
# application/json; headers Host, Content-Length, Content-Type,
# User-Agent: Fluent-Bit, the configured Header, Connection: keep-alive)
sub fb_str
{
	my ($s) = @_;
	my %esc = ('"' => '\\"', '\\' => '\\\\', "\n" => '\\n', "\r" => '\\r', "\t" => '\\t',
		"\b" => '\\b', "\f" => '\\f');
	$s =~ s/(["\\\n\r\t\b\f])/$esc{$1}/g;
	$s =~ s/([\x00-\x1f\x7f])/sprintf('\\u%04x', ord($1))/ge;
	return qq("$s");
}

sub fb_request
{
	my ($tok, $ctype, $body) = @_;
	return "POST /ingest HTTP/1.1\r\n"
	  . "Host: 127.0.0.1:$port\r\n"
	  . 'Content-Length: ' . length($body) . "\r\n"
	  . "Content-Type: $ctype\r\n"
	  . "User-Agent: Fluent-Bit\r\n"
	  . "Authorization: Bearer $tok\r\n"
	  . "Connection: keep-alive\r\n\r\n"
	  . $body;
}

# one response on a keep-alive connection: status and body
sub read_response
{
	my ($sock) = @_;
	my $buf = '';
	while ($buf !~ /\r\n\r\n/)
	{
		my $n = sysread($sock, $buf, 65536, length $buf) or return (0, '');
	}
	my ($head, $rest) = split /\r\n\r\n/, $buf, 2;
	my ($len) = $head =~ /content-length:\s*(\d+)/i;
	while (length($rest) < ($len // 0))
	{
		sysread($sock, $rest, 65536, length $rest) or last;
	}
	my ($status) = $head =~ m{^HTTP/1\.1 (\d+)};
	return ($status, $rest);
}

my $read = time() - 10;
my $date_lines = sprintf('%.16g', $read + 0.123456);
my $date_json = sprintf('%.1f', $read);    # a whole second: %.1f
my $sock = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $port, Proto => 'tcp', Timeout => 30)
  or die "connect: $!";
print $sock fb_request($token{'fb-lines'}, 'application/x-ndjson',
	join('', map { qq({"date":$date_lines,"log":) . fb_str($_->[0]) . "}\n" } @lines));
my ($status, $body) = read_response($sock);
is($status, 200, 'Fluent Bit json_lines: 200');
like($body, qr/"accepted": ${\ scalar @lines}, "rejected": 0/, 'Fluent Bit json_lines: every line accepted');
print $sock fb_request($token{'fb-json'}, 'application/json',
	'[' . join(',', map { qq({"date":$date_json,"log":) . fb_str($_->[0]) . '}' } @lines) . ']');
($status, $body) = read_response($sock);
is($status, 200, 'Fluent Bit json (its default format), on the same keep-alive connection: 200');
close $sock;
check_plain_lines($node, 'Fluent Bit json_lines', "source = 'fb-lines'", \@lines,
	"'epoch'::timestamptz + interval '${\ ($read * 1000000 + 123456)} microseconds'", 'date');
check_plain_lines($node, 'Fluent Bit json', "source = 'fb-json'", \@lines,
	"'epoch'::timestamptz + interval '$read seconds'", 'date');

# ---- the file the shippers tail: the lines above, then 10,000 more made
# of them (each with " bulk=N" added, which reads as nothing) ----
my $bulk = 10_000;
my @bulk = map { my $l = $lines[ $_ % @lines ]; [ "$l->[0] bulk=$_", @$l[ 1 .. 4 ] ] } 1 .. $bulk;
my $log = "$dir/app.log";
open(my $fh, '>', $log) or die "$log: $!";
print $fh map { "$_->[0]\n" } @lines, @bulk;
close $fh;
my $not_bulk = "message NOT LIKE '% bulk=%'";

# what the 10,000 must be stored as, in a table to compare in one query
sub lit { my $v = shift; return defined $v ? "'" . ($v =~ s/'/''/gr) . "'" : 'NULL'; }
sql('CREATE TABLE bulk_expect (line text PRIMARY KEY, level text, status int, ts_us bigint, severity text)');
for (my $i = 0; $i < @bulk; $i += 1000)
{
	my $end = $i + 999 < $#bulk ? $i + 999 : $#bulk;
	sql('INSERT INTO bulk_expect VALUES '
		  . join(',', map { '(' . join(',', lit($_->[0]), lit($_->[1]), $_->[2] // 'NULL', $_->[3] // 'NULL', lit($_->[4])) . ')' }
			  @bulk[ $i .. $end ]));
}

sub wait_rows
{
	my ($source, $what) = @_;
	ok(poll_until(sub { sql("SELECT count(*) FROM logagg.logs WHERE source = '$source'") >= @lines + $bulk }, 180),
		"$what: every line arrived")
	  or diag(sql("SELECT count(*) FROM logagg.logs WHERE source = '$source'"));
}

# the 10,000: each stored once, with the level, status, own time and
# severity its line shows
sub check_bulk
{
	my ($source, $what) = @_;
	is(sql("SELECT count(*) || ',' || count(DISTINCT message) FROM logagg.logs WHERE source = '$source' AND NOT ($not_bulk)"),
		"$bulk,$bulk", "$what: the 10,000 lines stored once each");
	is(sql(qq{SELECT count(*) FROM bulk_expect e LEFT JOIN logagg.logs l ON l.source = '$source' AND l.message = e.line
		WHERE l.id IS NULL OR l.level IS DISTINCT FROM e.level OR l.status IS DISTINCT FROM e.status
		   OR l.severity::text <> e.severity OR l.severity <> logagg.classify(l.status, l.level, l.source, l.message)
		   OR (e.ts_us IS NOT NULL AND (extract(epoch FROM l.ts) * 1000000)::bigint <> e.ts_us)}),
		'0', "$what: every one of the 10,000 has its line's level, status, time and severity");
}

# ---- syslog-ng: http() to POST /ingest, elasticsearch-http() to /_bulk ----
SKIP:
{
	skip 'syslog-ng is not installed', 1 unless -x '/usr/sbin/syslog-ng';
	my $conf = "$dir/syslog-ng.conf";
	open(my $c, '>', $conf) or die;
	print $c <<"EOF";
\@version: 3.38
\@include "scl.conf"
options { use-dns(no); stats-freq(0); frac-digits(6); keep-timestamp(no); };
source s_app { file("$log" flags(no-parse) follow-freq(0.1) log-fetch-limit(1000) log-iw-size(20000)); };
destination d_ingest {
    http(url("http://127.0.0.1:$port/ingest")
         method("POST")
         headers("Authorization: Bearer $token{'syslog-ng'}", "Content-Type: application/x-ndjson")
         body("\$(format-json --scope none message=\${MESSAGE} time=\${ISODATE} ISODATE=\${ISODATE} host=\${HOST})")
         batch-lines(500) batch-timeout(100));
};
destination d_es {
    elasticsearch-http(url("http://127.0.0.1:$port/_bulk") index("logs") type("")
                       user("syslog-ng") password("$token{'syslog-ng-es'}")
                       batch-lines(500) timeout(10) workers(1));
};
log { source(s_app); destination(d_ingest); destination(d_es); };
EOF
	close $c;
	my ($out, $err) = ('', '');
	my $h = start([ '/usr/sbin/syslog-ng', '-F', '-f', $conf, "--persist-file=$dir/syslog-ng.persist",
			"--pidfile=$dir/syslog-ng.pid", "--control=$dir/syslog-ng.ctl", '--no-caps' ],
		'>', \$out, '2>', \$err);
	wait_rows('syslog-ng', 'syslog-ng http()');
	wait_rows('syslog-ng-es', 'syslog-ng elasticsearch-http()');
	$h->signal('TERM');
	$h->finish;
	diag("syslog-ng: $err") if sql("SELECT count(*) FROM logagg.logs WHERE source LIKE 'syslog-ng%'") < 2 * (@lines + $bulk);
	check_bulk('syslog-ng', 'syslog-ng http()');
	check_bulk('syslog-ng-es', 'syslog-ng elasticsearch-http()');
	check_plain_lines($node, 'syslog-ng http()', "source = 'syslog-ng' AND $not_bulk", \@lines,
		"(attrs->>'ISODATE')::timestamptz", 'time');
	check_plain_lines($node, 'syslog-ng elasticsearch-http()', "source = 'syslog-ng-es' AND $not_bulk", \@lines,
		"(attrs->>'ISODATE')::timestamptz", '@timestamp');
}

# ---- rsyslog: imfile, omelasticsearch to /_bulk ----
my $rs = $ENV{LOGAGG_RSYSLOG_DIR} // '/opt/logagg-rsyslog';
SKIP:
{
	skip "rsyslog is not unpacked in $rs (scripts/install-deps.sh)", 1 unless -x "$rs/usr/sbin/rsyslogd";
	mkdir "$dir/rsyslog";
	my $conf = "$dir/rsyslog.conf";
	open(my $c, '>', $conf) or die;
	print $c <<"EOF";
global(workDirectory="$dir/rsyslog")
module(load="imfile")
module(load="omelasticsearch")
template(name="logagg" type="list" option.jsonf="on") {
    property(outname="message" name="msg" format="jsonf")
    property(outname="\@timestamp" name="timereported" dateFormat="rfc3339" format="jsonf")
    property(outname="read_at" name="timereported" dateFormat="rfc3339" format="jsonf")
    property(outname="host" name="hostname" format="jsonf")
}
ruleset(name="tailed") {
    action(type="omelasticsearch" server="127.0.0.1" serverport="$port"
           searchIndex="logs" template="logagg" bulkmode="on" esVersion.major="8"
           uid="rsyslog" pwd="$token{'rsyslog'}")
}
input(type="imfile" File="$log" Tag="app" ruleset="tailed")
EOF
	close $c;
	my ($out, $err) = ('', '');
	my $h = start([ "$rs/usr/sbin/rsyslogd", '-n', '-f', $conf, '-i', "$dir/rsyslog.pid",
			'-M', "$rs/usr/lib/x86_64-linux-gnu/rsyslog" ],
		'>', \$out, '2>', \$err);
	wait_rows('rsyslog', 'rsyslog omelasticsearch');
	$h->signal('TERM');
	$h->finish;
	diag("rsyslog: $err") if sql("SELECT count(*) FROM logagg.logs WHERE source = 'rsyslog'") < @lines + $bulk;
	check_bulk('rsyslog', 'rsyslog omelasticsearch');
	check_plain_lines($node, 'rsyslog omelasticsearch', "source = 'rsyslog' AND $not_bulk", \@lines,
		"(attrs->>'read_at')::timestamptz", '@timestamp');
}

is(sql("SELECT count(*) FROM logagg.rejected"), '0', 'nothing rejected');
is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'the ingest worker kept its PID');

done_testing();
