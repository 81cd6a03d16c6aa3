# 431_ingest_loki_clients.pl -- real Loki clients nobody here wrote deliver
# to logagg's Loki door: winston-loki (protobuf, snappy compressed: its
# default) and pino-loki (Loki JSON), from npm, each sending 10,000
# records (test/clients/loki_clients.js).  Each record is stored once,
# and every mapped field -- ts (to the microsecond where the library
# carries it: pino-loki; to the millisecond winston-loki keeps), level,
# message, and the labels and structured metadata in attrs -- equals what
# the client was given.  Batches are small, so that a push spans several.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run timeout);
use HTTP::Tiny;
use JSON::PP;
use LogaggTest;

my $node = new_node('ingest_loki_clients', "logagg.dispatch_workers = 0\nlogagg.batch_rows = 97\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $url = "http://127.0.0.1:$port";
my $json = JSON::PP->new->utf8;

sub sql { return $node->safe_psql('postgres', $_[0]); }
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");
my $tmp = PostgreSQL::Test::Utils::tempdir;

for my $lib ('winston', 'pino')
{
	my $token = sql("SELECT logagg.create_source('svc-$lib')");
	my $expect = "$tmp/$lib.json";
	my ($out, $err) = ('', '');
	my $ok = run([ 'node', "$ENV{LOGAGG_SRC}/test/clients/loki_clients.js", $lib, $url, $token, 10000, $expect ],
		'>', \$out, '2>', \$err, timeout(180));
	ok($ok, "$lib: 10,000 records sent without a failure") or diag("$out\n$err");
	is($err, '', "$lib: the library reported no error");
	my $stats = eval { $json->decode((split /\n/, $out)[-1]) } // {};
	is($stats->{sent}, 10000, "$lib: the script sent 10,000");
	is($stats->{content_type}, $lib eq 'winston' ? 'application/x-protobuf' : 'application/json',
		"$lib: posted as $stats->{content_type}");
	chmod 0644, $expect;
	sql(qq{CREATE TABLE ${lib}_expect AS SELECT e.* FROM jsonb_to_recordset(pg_read_file('$expect')::jsonb)
		AS e(message text, ts timestamptz, level text, attrs jsonb)});
	ok(poll_until(sub { sql("SELECT count(*) FROM logagg.logs WHERE source = 'svc-$lib'") >= 10000 }, 60),
		"$lib: the records arrived");
	is(sql("SELECT count(*), count(DISTINCT message) FROM logagg.logs WHERE source = 'svc-$lib'"), '10000|10000',
		"$lib: stored once each");
	is(sql(qq{SELECT count(*) FROM ${lib}_expect e JOIN logagg.logs l USING (message)
		WHERE l.source = 'svc-$lib' AND l.ts = e.ts AND l.level = e.level AND l.attrs = e.attrs}),
		'10000', "$lib: every mapped field equals what the client was given");
	is(sql(qq{SELECT count(*) FROM ${lib}_expect e JOIN logagg.logs l USING (message)
		WHERE l.source = 'svc-$lib' AND message LIKE '%ünïcödé%'}), '1666', "$lib: non-ASCII lines among them");
	is(sql("SELECT count(*) FROM logagg.rejected WHERE source = 'svc-$lib'"), '0', "$lib: nothing rejected");
}
is(sql("SELECT count(DISTINCT extract(microseconds FROM ts)::int % 1000) > 100 FROM logagg.logs WHERE source = 'svc-pino'"),
	't', 'pino: microseconds are kept');

my ($batches) = HTTP::Tiny->new->get("$url/metrics")->{content} =~ /^logagg_ingest_batches_total (\d+)/m;
cmp_ok($batches // 0, '>=', 20000 / 97, 'the records were stored in many batches');
is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'the ingest worker kept its PID');
done_testing();
