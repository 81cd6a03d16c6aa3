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
use LogaggTest;
use LogaggLines;
use POSIX ();

my $node = new_node('plain_lines', "logagg.dispatch_workers = 0\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-plain')");
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->canonical;
sub sql { return $node->safe_psql('postgres', $_[0]); }
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");

# the lines happened an hour ago (whole seconds), the shipper read them 10 s ago
my $read = time() - 10;
my @lines = plain_lines(time() - 3600);

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

check_plain_lines($node, 'http', "source = 'svc-plain'", \@lines,
	"'epoch'::timestamptz + interval '$read_us microseconds'", 'date');
my $line0 = $lines[0][0];
$line0 =~ s/'/''/g;
is(sql("SELECT attrs->>'date' FROM logagg.logs WHERE message = '$line0'"), $date,
	"the shipper's date that lost to the line's time: in attrs as it came");

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
check_plain_lines($node, 'ws', "source = 'svc-plain'", \@lines, 'received_at');

sql("TRUNCATE logagg.logs");
my $arr = $json->encode([ map { { message => $_->[0], source => 'svc-sql' } } @lines ]);
$arr =~ s/'/''/g;
is(sql("SELECT logagg.ingest('$arr')"), scalar(@lines), 'logagg.ingest(): the lines stored');
check_plain_lines($node, 'sql', "source = 'svc-sql'", \@lines, 'received_at');

# ---- switched off per source ----
my $rfc = POSIX::strftime('%Y-%m-%dT%H:%M:%SZ', gmtime(time() - 60));
my $probe = qq($rfc ERROR payment failed status=502);
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

# ---- under logagg.auth = trust (records name their source): the worker still follows the switch ----
sql("SELECT logagg.create_source('svc-trust')");
sql("SELECT logagg.set_source_detection('svc-trust', false)");
sql("ALTER SYSTEM SET logagg.auth = 'trust'");
sql("SELECT pg_reload_conf()");
sub post_trust
{
	my ($source, $line) = @_;
	return $http->request('POST', "http://127.0.0.1:$port/ingest",
		{ content => $json->encode({ source => $source, log => $line }) })->{status};
}
ok(poll_until(sub { $n++; post_trust('svc-free', "$probe trust-$n") == 200 }, 30), 'trust: no token needed');
ok(poll_until(sub {
	$n++;
	post_trust('svc-trust', "$probe t-off-$n");
	sql("SELECT level IS NULL AND status IS NULL FROM logagg.logs WHERE message = '$probe t-off-$n'") eq 't';
}, 30), 'trust: a source with detection off is stored as it came');
post_trust('svc-free', "$probe t-free");
is(sql("SELECT level || '/' || status FROM logagg.logs WHERE message = '$probe t-free'"), 'error/502',
	'trust: a source the table does not know is read');
sql("SELECT logagg.set_source_detection('svc-trust', true)");
ok(poll_until(sub {
	$n++;
	post_trust('svc-trust', "$probe t-on-$n");
	sql("SELECT level = 'error' AND status = 502 FROM logagg.logs WHERE message = '$probe t-on-$n'") eq 't';
}, 30), 'trust: switched on again, the worker reads the source\'s lines');

my ($err) = $node->psql('postgres', "SELECT logagg.set_source_detection('no-such-source', true)", stderr => \my $stderr);
like($stderr, qr/source "no-such-source" does not exist/, 'set_source_detection: an unknown source is an error');
is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'the ingest worker kept its PID');

done_testing();
