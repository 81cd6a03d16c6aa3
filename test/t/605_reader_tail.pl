# 605_reader_tail.pl -- the live tail: records acked by POST /ingest reach a
# /tail subscriber with the stored columns, in commit order, soon after the
# commit; a token for service-a* never sees another source; each filter
# (source, min_severity, q, attrs); refusals before the upgrade (401, 400).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use LogaggTest;

my $node = new_node('reader_tail', "logagg.dispatch_workers = 0\nlogagg.max_ts_past = -1\n");
start_with_extension($node);
my $ingest = "http://127.0.0.1:$node->{logagg_port}/ingest";
my $tail = "ws://127.0.0.1:$node->{reader_port}/tail";

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub client
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ '/usr/bin/python3', src_dir() . '/test/clients/tail_client.py', @_ ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(90));
	diag("tail_client stderr: $err") if $err ne '';
	return $out;
}

sub frames
{
	my ($out, $name) = @_;
	return map { decode_json($_) } ($out =~ /^$name frame \S+ (.*)$/mg);
}

my $ta = sql(q{SELECT logagg.create_source('service-a1')});
my $tb = sql(q{SELECT logagg.create_source('other-b')});
my $all = sql(q{SELECT logagg.create_reader_token('all')});
my $rda = sql(q{SELECT logagg.create_reader_token('only-a', 'service-a*')});
ok(poll_until(sub { client("upgrade:x:$tail?token=$rda") =~ /status 101/ }, 10), 'the reader knows the new tokens');

# refusals before the upgrade
like(client("upgrade:x:$tail"), qr/^x status 401 \{"error": "missing, unknown or revoked reader token"\}/m,
	'no token: 401 with a JSON error, before the upgrade');
like(client("upgrade:x:$tail?token=lgr_nope"), qr/^x status 401 /m, 'a wrong token: 401');
like(client("upgrade:x:$tail?token=$all&min_severity=urgent"),
	qr/^x status 400 \{"error": "min_severity must be critical, high or low"\}/m, 'a bad min_severity: 400');
like(client("upgrade:x:$tail?token=$all&q=(unclosed"),
	qr/^x status 400 \{"error": "q is not a valid regular expression"\}/m, 'an invalid regex: 400');
like(client("upgrade:x:$tail?token=$all&attrs=%5B1%5D"),
	qr/^x status 400 \{"error": "attrs must be a JSON object/m, 'attrs not an object: 400');
like(client("upgrade:x:$tail?token=$all&since=10001"),
	qr/^x status 400 \{"error": "since must be a number of records from 0 to 10000"\}/m, 'since too large: 400');
like(client("upgrade:x:$tail?token=$all&source=a%20b"), qr/^x status 400 /m, 'a bad source pattern: 400');
like(client('upgrade:x:' . ("$tail?token=$all" =~ s{/tail}{/nope}r)), qr/^x status 404 /m, 'another path: 404');

# records arrive with the stored columns, in commit order
my $out = client("tail:all:$tail?token=$all", "tail:a:$tail?token=$rda",
	"post:${ingest}::$tb:" . '{"message":"b-one","level":"info"}',
	"post:${ingest}::$ta:" . '{"message":"a-one","level":"error","status":502,"trace_id":"abc","user":{"id":7}}\n{"message":"a-two","level":"info"}',
	"recv:all:3:20", "recv:a:2:20");
like($out, qr/^post 200 \{"accepted": 2, "rejected": 0\}/m, 'the records were acked');
my @all = frames($out, 'all');
my @a = frames($out, 'a');
is(join(',', map { $_->{message} } @all), 'b-one,a-one,a-two', 'a * token gets every record, in commit order');
is(join(',', map { $_->{message} } @a), 'a-one,a-two', 'a service-a* token gets only its records');
my $row = sql(q{SELECT id || '|' || to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '|' ||
                to_char(received_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || '|' || severity
                FROM logagg.logs WHERE message = 'a-one'});
my $r = $a[0];
is(join('|', $r->{id}, $r->{ts}, $r->{received_at}, $r->{severity}), $row, 'id, ts, received_at and severity are the stored ones');
is(join('|', $r->{source}, $r->{level}, $r->{status}, $r->{trace_id}, defined $r->{span_id} ? 'x' : 'null',
		encode_json($r->{attrs})), 'service-a1|error|502|abc|null|{"user":{"id":7}}', 'the other columns too');
is_deeply([ sort keys %$r ],
	[ sort qw(id ts received_at source severity level status message trace_id span_id attrs) ], 'exactly the stored columns');
my ($ms) = $out =~ /^a frame (\S+) /m;
note("first record on the tail $ms ms after the POST's reply");
ok($ms < 2000, "delivered soon after the commit ($ms ms after the ack)");

# filters; each subscriber ends on a record it must get, so what it got
# before that is all it got
$out = client("tail:src:$tail?token=$all&source=other-*", "tail:sev:$tail?token=$all&min_severity=high",
	"tail:q:$tail?token=$all&q=^a-%5B0-9%5D%2B%24", "tail:attrs:$tail?token=$all&attrs=%7B%22k%22%3A%22v%22%7D",
	"tail:inter:$tail?token=$rda&source=other-b",
	"post:${ingest}::$ta:" . '{"message":"a-1","level":"info","k":"v"}\n{"message":"x-2","level":"error"}\n{"message":"a-33","level":"info","k":"w"}',
	"post:${ingest}::$tb:" . '{"message":"end","level":"fatal","k":"v"}',
	"until:src:20:end", "until:sev:20:end", "until:q:20:a-33", "until:attrs:20:end", "recv:inter:1:1");
is(join(',', map { $_->{message} } frames($out, 'src')), 'end', 'source= keeps that source');
is(join(',', map { $_->{message} } frames($out, 'sev')), 'x-2,end', 'min_severity=high keeps high and critical');
is(join(',', map { $_->{message} } frames($out, 'q')), 'a-1,a-33', 'q is a regex on message');
is(join(',', map { $_->{message} } frames($out, 'attrs')), 'a-1,end', 'attrs keeps records whose attrs contain it');
like($out, qr/^inter timeout/m, 'source= cannot widen a token: other-b is not service-a*');

# revoking a token closes its tails
my ($cout, $cerr) = ('', '');
my $h = IPC::Run::start([ '/usr/bin/python3', src_dir() . '/test/clients/tail_client.py',
		"tail:a:$tail?token=$rda", 'until:a:60:never-sent' ], '>', \$cout, '2>', \$cerr);
ok(poll_until(sub { $h->pump_nb; $cout =~ /^a open/m }, 20), 'a tail of a valid token is open');
sql(q{SELECT logagg.revoke_reader_token('only-a')});
ok(poll_until(sub { $h->pump_nb; $cout =~ /^a closed/m }, 20), 'revoking the token closes its tail');
$h->finish;
like($cout, qr/^a frame \S+ \{"error": "token revoked"\}\na closed/m, 'after a last frame that says why');

done_testing();
