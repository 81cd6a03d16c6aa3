# 609_reader_slow_query.pl -- queries never hold up the live tail or
# ingest: while searches run for seconds in their query workers, a
# committed record still reaches a tail subscriber at once and ingest acks
# come as fast; a query that runs out of logagg.reader_statement_timeout
# gets a clear 504; beyond logagg.reader_max_queries at once, 503 with
# Retry-After.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use LogaggTest;

my $node = new_node('reader_slow_query', qq{
logagg.dispatch_workers = 0
logagg.max_ts_past = -1
logagg.reader_statement_timeout = '4s'
logagg.reader_max_queries = 2
});
start_with_extension($node);
my $http = "http://127.0.0.1:$node->{reader_port}";
my $ingest = "http://127.0.0.1:$node->{logagg_port}/ingest";
my $tail = "ws://127.0.0.1:$node->{reader_port}/tail";
my $client = src_dir() . '/test/clients/tail_client.py';

sub sql { return $node->safe_psql('postgres', $_[0]); }

my $ta = sql(q{SELECT logagg.create_source('service-a1')});
my $rd = sql(q{SELECT logagg.create_reader_token('all')});

sub get_cmd
{
	my ($path) = @_;
	return [ 'curl', '-s', '-D', '-', '-H', "Authorization: Bearer $rd", "$http$path" ];
}

sub get
{
	my $out = '';
	IPC::Run::run(get_cmd($_[0]), '>', \$out, IPC::Run::timeout(60));
	return $out;
}
ok(poll_until(sub { get('/api/whoami') =~ /^HTTP\/1.1 200/ }, 10), 'the reader knows the token');

# a message on which a back-reference regex backtracks for minutes
sql(q{INSERT INTO logagg.logs (ts, source, severity, message) VALUES (now(), 'service-a1', 'low', repeat('a', 30000) || 'b')});
my $slow = '/api/search?q=%2F(a*)*%5C1%5C1b%5C1%2F';

my @slow;
for my $i (0, 1)
{
	my $out = '';
	push @slow, [ IPC::Run::start(get_cmd($slow), '>', \$out, IPC::Run::timeout(60)), \$out ];
}
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 2 FROM pg_stat_activity WHERE backend_type = 'logagg reader query' AND state = 'active'}),
	'two searches run in query workers');
my $t0 = time();

my $busy = get('/api/search?q=x');
like($busy, qr/^HTTP\/1.1 503/, 'a third query at once: 503');
like($busy, qr/^Retry-After: 1\r$/mi, 'with Retry-After');
like($busy, qr/\{"error": "too many queries at once \(logagg.reader_max_queries\): retry later"\}/, 'and why');

# the tail and ingest do not wait for them
my $out = '';
my ($cerr) = '';
IPC::Run::run([ '/usr/bin/python3', $client, "tail:t:$tail?token=$rd",
		"post:${ingest}::$ta:" . '{"message":"during the search"}', 'recv:t:1:10' ],
	'>', \$out, '2>', \$cerr, IPC::Run::timeout(60));
like($out, qr/^post 200 \{"accepted": 1/m, 'ingest acks while the searches run');
my ($ms) = $out =~ /^t frame (\S+) .*during the search/m;
ok(defined $ms, 'the record reaches the tail while the searches run');
note("delivered $ms ms after the ack, during two running searches");
ok(defined $ms && $ms < 1000, 'without waiting for them');
ok(time() - $t0 < 4, 'all of that before the searches ended');

for my $s (@slow)
{
	$s->[0]->finish;
}
my $t = ${ $slow[0][1] };
like($t, qr/^HTTP\/1.1 504/, 'a search beyond the statement timeout: 504');
like($t, qr/\{"error": "the query ran longer than logagg.reader_statement_timeout \(4000 ms\) and was cancelled: narrow it/,
	'with a clear message');
ok($node->poll_query_until('postgres',
		q{SELECT count(*) = 0 FROM pg_stat_activity WHERE backend_type = 'logagg reader query'}),
	'the query workers are gone');
like(get('/api/search?q=during'), qr/^HTTP\/1.1 200.*"during the search"/ms, 'and the next query runs');

# a tail's replay that runs out of time: an error frame, then the close
$out = '';
IPC::Run::run([ '/usr/bin/python3', $client, "tail:t:$tail?token=$rd&since=5&q=(a*)*%5C1%5C1b%5C1",
		'recv:t:1:0.5', 'until:t:30:error' ], '>', \$out, '2>', \$cerr, IPC::Run::timeout(60));
diag("tail_client stderr: $cerr") if $cerr ne '';
like($out, qr/^t timeout\nt frame \S+ \{"error": "the query ran longer than logagg.reader_statement_timeout \(4000 ms\)/m,
	'a replay beyond the statement timeout ends the tail with an error frame');

done_testing();
