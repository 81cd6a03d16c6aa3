# 432_ingest_loki_backpressure.pl -- under backpressure a Loki client is
# told to come back later: while 64 MB of input from all connections wait
# to be parsed (the point where every connection stops being read), a
# push gets 429 with Retry-After at once, in plain text, instead of
# waiting unread (Promtail, Alloy and the Loki clients retry a 429).  Set
# up: a session holds a SHARE lock on logagg.logs, a 70 MB POST /ingest
# body is queued and its first batch waits on the lock; a push sent then
# is answered right after that batch commits.  Once the input is parsed,
# the same push is stored; the worker keeps its PID.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run start finish timeout);
use HTTP::Tiny;
use LogaggTest;

my $node = new_node('ingest_loki_bp',
	"logagg.dispatch_workers = 0\nlogagg.batch_rows = 100\nlogagg.max_message_bytes = 100MB\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $url = "http://127.0.0.1:$port";
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-loki-bp')");
sub sql { return $node->safe_psql('postgres', $_[0]); }
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");
my $tmp = PostgreSQL::Test::Utils::tempdir;

# 1,100 records of 64 kB: 70 MB, stored 100 per batch
my $line = '{"message": "big ' . ('x' x 65000) . '"}' . "\n";
open(my $fh, '>', "$tmp/big.ndjson") or die;
print $fh $line for 1 .. 1100;
close $fh;

# a protobuf push of one entry, snappy compressed
sub varint
{
	my $n = shift;
	my $s = '';
	while ($n >= 0x80) { $s .= chr(($n & 0x7f) | 0x80); $n >>= 7; }
	return $s . chr($n);
}
sub ld { my ($f, $b) = @_; return varint(($f << 3) | 2) . varint(length $b) . $b; }
my $pb = ld(1, ld(1, '{job="bp"}') . ld(2, ld(1, varint(8) . varint(time())) . ld(2, 'loki under backpressure')));
my $push = '';
run([ '/usr/bin/python3', '-c', 'import sys, snappy; sys.stdout.buffer.write(snappy.compress(sys.stdin.buffer.read()))' ],
	'<', \$pb, '>', \$push) or die 'snappy failed';
open($fh, '>:raw', "$tmp/push.pb") or die;
print $fh $push;
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

my ($push_out, $push_err) = ('', '');
my $pusher = start([ 'curl', '-s', '-S', '-D', "$tmp/push.headers", '-o', "$tmp/push.body", '-w', '%{http_code}',
		'-u', "loki:$token", '-H', 'Content-Type: application/x-protobuf',
		'--data-binary', "\@$tmp/push.pb", "$url/loki/api/v1/push" ],
	'>', \$push_out, '2>', \$push_err, timeout(180));
# the push is in the kernel's queue (connected, sent) before the lock goes
ok(poll_until(sub { (() = `ss -tnH state established '( dport = :$port )'` =~ /\n/g) >= 2 }, 60),
	'the push is connected while the worker waits');
ok(poll_until(sub { `ss -tnH state established '( sport = :$port )'` =~ /^\s*[1-9]\d*\s/m }, 60),
	'its bytes wait in the server socket');
is(sql("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'logagg ingest' AND wait_event_type = 'Lock'"), '1',
	'the worker still waits on the lock');
sql("INSERT INTO release_lock VALUES (1)");
finish($locker);
finish($pusher);
is($push_out, '429', 'a Loki push under backpressure: 429');
like(slurp_file("$tmp/push.headers"), qr/^Retry-After: 1\r?$/mi, 'with Retry-After');
like(slurp_file("$tmp/push.body"), qr/^logagg is busy storing earlier pushes: retry after the Retry-After delay$/m,
	'and a plain-text reason');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'loki under backpressure'"), '0', 'that push was not stored');

finish($big);
like($big_out, qr/\n200$/, 'the big body is stored in the end');
is(sql("SELECT count(*) FROM logagg.logs WHERE message LIKE 'big %'"), '1100', 'all of it');

my $r = HTTP::Tiny->new(timeout => 30)->request('POST', "$url/loki/api/v1/push",
	{ headers => { 'Content-Type' => 'application/x-protobuf', Authorization => "Bearer $token" },
	  content => $push });
is($r->{status}, 204, 'the same push once the input is parsed: 204');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'loki under backpressure'"), '1', 'and stored');
is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'the ingest worker kept its PID');
done_testing();
