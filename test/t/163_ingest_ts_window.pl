# 163_ingest_ts_window.pl -- a record's ts must lie within
# logagg.max_ts_past before and logagg.max_ts_future after its arrival
# (defaults 7 days and 1 hour; -1 = no limit; reloadable).  Records
# outside are rejected while parsing, before COPY, with a reason that
# states the window, over WebSocket and through logagg.ingest().
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;

my $node = new_node('ts_window', qq{
logagg.dispatch_workers = 0
});
start_with_extension($node);
my $base = "ws://127.0.0.1:$node->{logagg_port}";

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $token = sql("SELECT logagg.create_source('svc-ts')");
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");

# A record that reached COPY with message 'trap' would be refused by this
# trigger ("storing the record failed"): the window's rejects must not.
sql(q{
CREATE FUNCTION public.trap() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.message = 'trap' THEN RAISE EXCEPTION 'trap reached COPY'; END IF;
    RETURN NEW;
END $$;
CREATE TRIGGER trap BEFORE INSERT ON logagg.logs FOR EACH ROW EXECUTE FUNCTION public.trap();
});

# RFC 3339 UTC text of now() + OFFSET
sub at
{
	my ($offset) = @_;
	return sql("SELECT to_char((now() + interval '$offset') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')");
}

my $window = 'ts must be from 7 days before to 1 hour after arrival \(logagg.max_ts_past, logagg.max_ts_future\)';
my ($past8, $past6, $fut2h, $fut30) = (at('-8 days'), at('-6 days'), at('2 hours'), at('30 minutes'));
my $old_ms = (time() - 10 * 86400) * 1000;
my $out = ws_probe($base, "open:a:/ingest?stream=ts-1:$token", 'recv:a',
	'send:a:' . join('\n',
		qq({"seq":1,"ts":"$past8","message":"trap"}),
		qq({"seq":2,"ts":"$past6","message":"six days ago"}),
		qq({"seq":3,"ts":"$fut2h","message":"trap"}),
		qq({"seq":4,"ts":"$fut30","message":"in half an hour"}),
		qq({"seq":5,"ts":"0001-01-01T00:00:00+00:01","message":"trap"}),
		qq({"seq":6,"ts":"9999-12-31T23:59:59Z","message":"trap"}),
		qq({"seq":7,"ts":$old_ms,"message":"trap"}),
		qq({"seq":8,"message":"now"})),
	'recv:a', 'recv:a:0.3');
for my $seq (1, 3, 5, 6, 7)
{
	like($out, qr/\{"error": "$window", "seq": $seq\}/, "seq $seq: rejected, the reason states the window");
}
like($out, qr/\{"ack": 8\}/, 'acked up to 8');
is(sql("SELECT string_agg(message, ',' ORDER BY seq) FROM logagg.logs WHERE stream = 'ts-1'"),
	'six days ago,in half an hour,now', 'the records within the window are stored');
is(sql("SELECT count(*) FROM logagg.rejected WHERE reason ~ '^$window\$' AND source = 'svc-ts'"), '5',
	'the five records outside the window are in logagg.rejected with the reason');
is(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE '%trap reached COPY%'"), '0',
	'none of them reached COPY');

# through logagg.ingest()
is(sql(qq{SELECT logagg.ingest('[{"ts":"$past8","message":"trap"},{"ts":"$past6","message":"sql six days"}]')}), '1',
	'logagg.ingest(): the record within the window is stored');
is(sql("SELECT count(*) FROM logagg.rejected WHERE reason ~ '^$window\$' AND peer = 'sql'"), '1',
	'logagg.ingest(): the other one is rejected with the window');

# a reload widens the past and closes the future
$node->append_conf('postgresql.conf', "logagg.max_ts_past = '30d'\nlogagg.max_ts_future = 0\n");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('logagg.max_ts_past') = '30d'") or die 'reload';
# the worker reloads on its next wake-up: poll until it uses the new window
my $got = '';
ok( poll_until(sub {
		$got = ws_probe($base, "open:b:/ingest:$token",
			'send:b:' . qq({"ts":"$past8","message":"eight days ago"}\\n{"ts":"$fut30","message":"trap"}),
			'recv:b', 'recv:b:0.3');
		return $got =~ /from 30 days before to 0 s after/;
	}, 30),
	'after a reload the reason states the new window');
like($got, qr/\{"error": "ts must be from 30 days before to 0 s after arrival \(logagg.max_ts_past, logagg.max_ts_future\)"\}/,
	'a ts in the future is rejected now');
like($got, qr/\{"ack_count": 1\}/, 'eight days ago is accepted now');
is(sql("SELECT count(*) >= 1 FROM logagg.logs WHERE message = 'eight days ago'"), 't', 'and stored');

# -1: no limit
$node->append_conf('postgresql.conf', "logagg.max_ts_past = -1\nlogagg.max_ts_future = -1\n");
$node->reload;
$node->poll_query_until('postgres', "SELECT current_setting('logagg.max_ts_past') = '-1'") or die 'reload';
is(sql(q{SELECT logagg.ingest('[{"ts":"0001-01-01T00:00:00+00:01","message":"ancient"},{"ts":"9999-12-31T00:00:00Z","message":"far"}]')}),
	'2', '-1: any timestamp is accepted');

($_, my $stdout, my $stderr) = $node->psql('postgres', "SET logagg.max_ts_past = -1");
like($stderr, qr/cannot be changed now/, 'a session cannot widen the window for itself');
is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'same ingest worker');
done_testing();
