# 162_ingest_batch_isolation.pl -- one bad record never fails a batch.
#
# A record that fails inside the batch's transaction (a trigger on
# logagg.logs that raises, an alert insert that fails, a trigger calling
# logagg.ingest() again) is refused alone: the good records of the same
# frame, body or logagg.ingest() call are stored, the culprit is in
# logagg.rejected with the error, the sender gets an error frame with its
# seq, and the ingest worker keeps its PID.  A timestamp in 1 BC raises
# an alert like any other.  Re-entering logagg.ingest() is an error,
# never a crash of the server.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use LogaggTest;

my $node = new_node('batch_iso', qq{
logagg.dispatch_workers = 0
});
start_with_extension($node);
my $port = $node->{logagg_port};
my $base = "ws://127.0.0.1:$port";

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $token = sql("SELECT logagg.create_source('svc-iso')");
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");
my $started = sql('SELECT pg_postmaster_start_time()');

sql(q{
CREATE FUNCTION public.poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.message = 'poison' THEN
        RAISE EXCEPTION 'poisoned record refused by trigger';
    ELSIF NEW.message = 'reenter' THEN
        PERFORM logagg.ingest('{"message": "from the trigger"}');
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER poison BEFORE INSERT ON logagg.logs
    FOR EACH ROW EXECUTE FUNCTION public.poison();
});

sub worker_unchanged
{
	my ($what) = @_;
	is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, "$what: same ingest worker");
	is(sql('SELECT pg_postmaster_start_time()'), $started, "$what: the server did not restart");
}

# ---- WebSocket stream: the culprit gets an error frame with its seq ----
my $out = ws_probe($base, "open:a:/ingest?stream=iso-1:$token", 'recv:a',
	'send:a:{"seq":1,"message":"good 1"}\n{"seq":2,"message":"good 2"}\n{"seq":3,"message":"poison"}\n{"seq":4,"message":"good 4"}\n{"seq":5,"message":"good 5"}',
	'recv:a', 'recv:a:0.3');
like($out, qr/a recv \{"error": "storing the record failed: poisoned record refused by trigger", "seq": 3\}/,
	'stream: an error frame for seq 3 with the trigger\'s error');
like($out, qr/a recv .*\{"ack": 5\}/, 'stream: acked up to 5');
is(sql("SELECT string_agg(message, ',' ORDER BY seq) FROM logagg.logs WHERE stream = 'iso-1'"),
	'good 1,good 2,good 4,good 5', 'stream: the four good records are stored');
is(sql("SELECT last_seq FROM logagg.streams WHERE stream_id = 'iso-1'"), '5', 'stream: resume point 5');
like(sql("SELECT source || ' ' || reason || ' ' || raw FROM logagg.rejected WHERE raw LIKE '%\"seq\":3%'"),
	qr/^svc-iso storing the record failed: poisoned record refused by trigger \{.*"message":"poison"/,
	'stream: the culprit is in logagg.rejected with the error and its fields');
like(sql("SELECT peer FROM logagg.rejected WHERE raw LIKE '%\"seq\":3%'"),
	qr/127\.0\.0\.1$/, 'stream: with the peer it came from');
worker_unchanged('stream');

# ---- WebSocket without seq: ack_count counts only stored records ----
$out = ws_probe($base, "open:b:/ingest:$token",
	'send:b:[{"message":"plain 1"},{"message":"poison"},{"message":"plain 2"}]', 'recv:b', 'recv:b:0.3');
like($out, qr/b recv \{"error": "storing the record failed: poisoned record refused by trigger"\}/,
	'no stream: an error frame for the culprit');
like($out, qr/b recv .*\{"ack_count": 2\}/, 'no stream: ack_count 2');
is(sql("SELECT count(*) FROM logagg.logs WHERE message IN ('plain 1', 'plain 2')"), '2', 'no stream: both good records stored');
worker_unchanged('no stream');

# ---- HTTP POST: the reply counts the culprit as rejected ----
my $http = HTTP::Tiny->new(timeout => 30);
my $res = $http->post("http://127.0.0.1:$port/ingest",
	{ headers => { Authorization => "Bearer $token" },
	  content => qq({"message":"post 1"}\n{"message":"poison"}\n{"message":"post 2"}\n) });
is($res->{status}, 200, 'POST: 200');
is($res->{content}, '{"accepted": 2, "rejected": 1}', 'POST: 2 accepted, 1 rejected');
is(sql("SELECT count(*) FROM logagg.logs WHERE message IN ('post 1', 'post 2')"), '2', 'POST: both good records stored');
worker_unchanged('POST');

# ---- logagg.ingest() ----
is(sql(q{SELECT logagg.ingest('[{"message":"sql 1"},{"message":"poison"},{"message":"sql 2"}]')}), '2',
	'logagg.ingest(): two rows stored');
is(sql("SELECT count(*) FROM logagg.logs WHERE message IN ('sql 1', 'sql 2')"), '2', 'logagg.ingest(): both good records stored');
is(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE '%poisoned record%'"), '4',
	'every culprit so far is in logagg.rejected');

# ---- a failing alert insert ----
sql(q{
SELECT logagg.add_destination('hook', 'webhook', '{"url": "http://127.0.0.1:9/"}');
SELECT logagg.add_route('hook', 'high', NULL, '0');
CREATE FUNCTION public.alert_poison() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.payload->>'message' = 'alert poison' THEN
        RAISE EXCEPTION 'alert refused by trigger';
    END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER alert_poison BEFORE INSERT ON logagg.alert_queue
    FOR EACH ROW EXECUTE FUNCTION public.alert_poison();
});
$out = ws_probe($base, "open:c:/ingest?stream=iso-2:$token", 'recv:c',
	'send:c:{"seq":1,"message":"down 1","status":503}\n{"seq":2,"message":"alert poison","status":500,"level":"fatal"}\n{"seq":3,"message":"fine","status":200}',
	'recv:c', 'recv:c:0.3');
like($out, qr/c recv \{"error": "storing the record failed: alert refused by trigger", "seq": 2\}/,
	'alert insert: an error frame for seq 2');
like($out, qr/c recv .*\{"ack": 3\}/, 'alert insert: acked up to 3');
is(sql("SELECT string_agg(message, ',' ORDER BY seq) FROM logagg.logs WHERE stream = 'iso-2'"), 'down 1,fine',
	'alert insert: the good records are stored');
is(sql("SELECT count(*) FROM logagg.alert_queue WHERE payload->>'message' = 'down 1'"), '1',
	'alert insert: the good record\'s alert is queued');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'alert poison'"), '0', 'alert insert: the culprit is not in logs');
worker_unchanged('alert insert');

# ---- a timestamp in 1 BC raises an alert ----
$node->append_conf('postgresql.conf', "logagg.max_ts_past = -1\n");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('logagg.max_ts_past') = '-1'") or die 'reload';
$out = ws_probe($base, "open:d:/ingest?stream=iso-3:$token", 'recv:d',
	'send:d:{"seq":1,"ts":"0001-01-01T00:00:00+00:01","message":"ancient","status":503}\n{"seq":2,"message":"after it"}',
	'recv:d', 'recv:d:0.3');
like($out, qr/d recv .*\{"ack": 2\}/, '1 BC: acked');
unlike($out, qr/error/, '1 BC: no error frame');
is(sql("SELECT to_char(first_seen AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI BC') FROM logagg.alert_queue WHERE payload->>'message' = 'ancient'"),
	'0001-12-31 23:59 BC', '1 BC: the alert is queued with its first_seen in 1 BC');
is(sql(q{SELECT logagg.ingest('{"ts":"0001-01-01T00:00:00+00:01","message":"ancient sql","status":503}')}), '1',
	'1 BC through logagg.ingest(): stored');
worker_unchanged('1 BC');

# ---- re-entry: a trigger calling logagg.ingest() ----
is(sql(q{SELECT logagg.ingest('[{"message":"around 1"},{"message":"reenter"},{"message":"around 2"}]')}), '2',
	're-entry from SQL: the other records are stored');
like(sql("SELECT reason FROM logagg.rejected WHERE raw LIKE '%\"reenter\"%' ORDER BY id LIMIT 1"),
	qr/logagg\.ingest\(\) cannot be called while logagg is storing log records/,
	're-entry from SQL: refused with an error, the record in logagg.rejected');
my ($ret, $stdout, $stderr) = $node->psql('postgres', q{
CREATE FUNCTION public.reenter_direct() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM logagg.ingest('{"message": "inner"}');
    RETURN NEW;
END $$;
CREATE TRIGGER zz_reenter BEFORE INSERT ON logagg.rejected
    FOR EACH ROW EXECUTE FUNCTION public.reenter_direct();
SELECT logagg.ingest('{"ts": "bad"}');
});
like($stderr, qr/cannot be called while logagg is storing log records.*\n(.*\n)*HINT:/,
	're-entry outside the records: an error with a hint');
sql('DROP TRIGGER zz_reenter ON logagg.rejected');
$out = ws_probe($base, "open:e:/ingest?stream=iso-4:$token", 'recv:e',
	'send:e:{"seq":1,"message":"reenter"}\n{"seq":2,"message":"ws after"}', 'recv:e', 'recv:e:0.3');
like($out, qr/e recv \{"error": "storing the record failed: logagg.ingest\(\) cannot be called while logagg is storing log records", "seq": 1\}/,
	're-entry from the worker: an error frame');
is(sql("SELECT message FROM logagg.logs WHERE stream = 'iso-4'"), 'ws after', 're-entry from the worker: the other record is stored');
worker_unchanged('re-entry');

is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'from the trigger'"), '0', 'no record of a re-entrant call was stored');
is(sql("SELECT last_error IS NULL FROM logagg.status() WHERE kind = 'ingest'"), 't', 'no ingest error recorded');
done_testing();
