# 423_ingest_otlp_backpressure.pl -- under backpressure an OTLP client is
# told to come back later, as OTLP/HTTP asks: while 64 MB of input from
# all connections wait to be parsed (the point where every connection
# stops being read), POST /v1/logs gets 503 with Retry-After and a
# google.rpc.Status at once, instead of waiting unread.  Set up: a session
# holds a SHARE lock on logagg.logs, a 70 MB POST /ingest body is queued
# and its first batch waits on the lock; an OTLP request sent then is
# answered right after that batch commits.  Once the input is parsed, the
# same request is stored; the worker keeps its PID.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(start finish timeout);
use HTTP::Tiny;
use LogaggTest;
use OtlpWire qw(any_str log_record request);

my $node = new_node('ingest_otlp_bp',
	"logagg.dispatch_workers = 0\nlogagg.batch_rows = 100\nlogagg.max_message_bytes = 100MB\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $url = "http://127.0.0.1:$port";
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-otlp-bp')");
sub sql { return $node->safe_psql('postgres', $_[0]); }
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");
my $tmp = PostgreSQL::Test::Utils::tempdir;

# 1,100 records of 64 kB: 70 MB, stored 100 per batch
my $line = '{"message": "big ' . ('x' x 65000) . '"}' . "\n";
open(my $fh, '>', "$tmp/big.ndjson") or die;
print $fh $line for 1 .. 1100;
close $fh;
open($fh, '>:raw', "$tmp/otlp.pb") or die;
print $fh request([], [ log_record(body => any_str('otlp under backpressure')) ]);
close $fh;

sql("CREATE TABLE release_lock (x int)");
my ($lock_out, $lock_err) = ('', '');
my $locker = start([ 'psql', '-X', '-d', $node->connstr('postgres'), '-c', q{
BEGIN;
LOCK TABLE logagg.logs IN SHARE MODE;
DO $$ BEGIN
  FOR i IN 1..2400 LOOP
    EXIT WHEN EXISTS (SELECT FROM release_lock);
    PERFORM pg_sleep(0.05);
  END LOOP;
END $$;
COMMIT;} ], '>', \$lock_out, '2>', \$lock_err, timeout(180));
ok(poll_until(sub { sql("SELECT count(*) FROM pg_locks WHERE relation = 'logagg.logs'::regclass AND mode = 'ShareLock' AND granted") > 0 }, 60),
	'the table is locked');

my ($big_out, $big_err) = ('', '');
my $big = start([ 'curl', '-s', '-S', '-o', '-', '-w', '\n%{http_code}', '-H', "Authorization: Bearer $token",
		'-H', 'Content-Type: application/x-ndjson', '--data-binary', "\@$tmp/big.ndjson", "$url/ingest" ],
	'>', \$big_out, '2>', \$big_err, timeout(180));
ok(poll_until(sub { sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'logagg ingest' AND wait_event_type = 'Lock'") > 0 }, 60),
	'the first batch of the big body waits on the lock');

my ($otlp_out, $otlp_err) = ('', '');
my $otlp = start([ 'curl', '-s', '-S', '-D', "$tmp/otlp.headers", '-o', "$tmp/otlp.body", '-w', '%{http_code}',
		'-H', "Authorization: Bearer $token", '-H', 'Content-Type: application/x-protobuf',
		'--data-binary', "\@$tmp/otlp.pb", "$url/v1/logs" ],
	'>', \$otlp_out, '2>', \$otlp_err, timeout(180));
# the request is in the kernel's queue (connected, sent) before the lock goes
ok(poll_until(sub { (() = `ss -tnH state established '( dport = :$port )'` =~ /\n/g) >= 2 }, 60),
	'the OTLP request is connected while the worker waits');
ok(poll_until(sub { `ss -tnH state established '( sport = :$port )'` =~ /^\s*[1-9]\d*\s/m }, 60),
	'its bytes wait in the server socket');
is(sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'logagg ingest' AND wait_event_type = 'Lock'"), '1',
	'the worker still waits on the lock');
sql("INSERT INTO release_lock VALUES (1)");
finish($locker);
finish($otlp);
is($otlp_out, '503', 'POST /v1/logs under backpressure: 503');
my $headers = slurp_file("$tmp/otlp.headers");
like($headers, qr/^Retry-After: 1\r?$/mi, 'with Retry-After');
my $body = slurp_file("$tmp/otlp.body");
like($body, qr/^\x08\x0e\x12.*server is busy.*Retry-After/s, 'and a google.rpc.Status (UNAVAILABLE) saying to retry');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'otlp under backpressure'"), '0', 'that request was not stored');

finish($big);
like($big_out, qr/\n200$/, 'the big body is stored in the end');
is(sql("SELECT count(*) FROM logagg.logs WHERE message LIKE 'big %'"), '1100', 'all of it');

my $r = HTTP::Tiny->new(timeout => 30)->request('POST', "$url/v1/logs",
	{ headers => { 'Content-Type' => 'application/x-protobuf', Authorization => "Bearer $token" },
	  content => slurp_file("$tmp/otlp.pb") });
is($r->{status}, 200, 'the same request once the input is parsed: 200');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'otlp under backpressure'"), '1', 'and stored');
is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'the ingest worker kept its PID');
done_testing();
