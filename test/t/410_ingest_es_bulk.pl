# 410_ingest_es_bulk.pl -- the Elasticsearch door of the ingest port.
# The official client (@elastic/elasticsearch, its bulk helper) delivers
# 10,000 documents with ECS fields, stored once each, and every mapped
# field (ts to the microsecond, level, message, status, trace and span
# ids, attrs) equals what the client was given.  Raw requests check
# GET / (an Elasticsearch 8 cluster, with X-Elastic-Product), the
# per-item statuses and errors of _bulk (delete, update, an invalid
# document, an invalid action line), a body that is not bulk NDJSON at
# all (400), the 401 of a wrong token given by HTTP Basic, Bearer or
# ?token=, HTTP Basic on /ingest too, and that the worker keeps its PID.
# Batches are small, so that one _bulk body spans several.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run timeout);
use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use LogaggTest;

# small batches: a _bulk body of the client spans several of them, and its
# reply (with each item's outcome) must wait for the last one's commit
my $node = new_node('ingest_es_bulk', "logagg.dispatch_workers = 0\nlogagg.batch_rows = 97\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $url = "http://127.0.0.1:$port";
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-es')");
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->utf8;

sub sql { return $node->safe_psql('postgres', $_[0]); }
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");

sub basic { return 'Basic ' . encode_base64("$_[0]:$_[1]", ''); }

sub bulk
{
	my ($path, $body, $auth) = @_;
	return $http->request('POST', "$url$path",
		{ headers => { 'Content-Type' => 'application/x-ndjson', %{ $auth // { Authorization => basic('elastic', $token) } } },
		  content => $body });
}

# ---- GET / ----
my $r = $http->request('GET', "$url/", { headers => { Authorization => basic('elastic', $token) } });
is($r->{status}, 200, 'GET / answers');
is($r->{headers}{'x-elastic-product'}, 'Elasticsearch', 'GET / has X-Elastic-Product');
my $info = $json->decode($r->{content});
is($info->{version}{number}, '8.11.0', 'version number of an Elasticsearch 8 cluster');
is($info->{cluster_name}, 'logagg', 'cluster name');
is($info->{tagline}, 'You Know, for Search', 'tagline');
is($info->{version}{minimum_wire_compatibility_version}, '7.17.0', 'wire compatibility');

# ---- wrong tokens: 401 in Elasticsearch's shape ----
for my $case (
	[ 'Basic', { Authorization => basic('elastic', 'lgt_wrong') }, '/_bulk' ],
	[ 'Bearer', { Authorization => 'Bearer lgt_wrong' }, '/_bulk' ],
	[ '?token=', {}, '/_bulk?token=lgt_wrong' ],
	[ 'no token', {}, '/_bulk' ])
{
	my ($name, $auth, $path) = @$case;
	$r = bulk($path, qq({"index":{}}\n{"message":"must not be stored"}\n), $auth);
	is($r->{status}, 401, "$name with a wrong token: 401");
	is($r->{headers}{'www-authenticate'}, 'Basic realm="logagg"', "$name: WWW-Authenticate Basic");
	my $e = eval { $json->decode($r->{content}) } // {};
	is($e->{error}{type}, 'security_exception', "$name: security_exception");
	is($e->{status}, 401, "$name: status in the body");
}
$r = $http->request('GET', "$url/", { headers => { Authorization => basic('x', 'lgt_wrong') } });
is($r->{status}, 401, 'GET / with a wrong token: 401');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'must not be stored'"), '0', 'nothing stored with wrong tokens');

# ---- per-item outcomes ----
my $body = join("\n",
	'{"index":{"_id":"a1"}}', '{"message":"raw ok 1","log.level":"error","@timestamp":"' . sql("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')") . '"}',
	'{"create":{"_index":"other"}}', '{"message":"raw ok 2","http.response.status_code":503}',
	'{"delete":{"_id":"x"}}',
	'{"update":{"_id":"y"}}', '{"doc":{"message":"no"}}',
	'{"index":{}}', '{"message":"broken doc", ',
	'{"index":{}}', '{"message":"bad level","log.level":9}',
	'{"index": nope}', '{"message":"doc of a broken action"}',
	'{"index":{}}', '{"message":"raw ok 3","trace.id":"0af7651916cd43dd8448eb211c80319c","span.id":"b7ad6b7169203331"}',
	'');
$r = bulk('/logs-x/_bulk?refresh=true', $body);
is($r->{status}, 200, '_bulk answers 200');
is($r->{headers}{'x-elastic-product'}, 'Elasticsearch', '_bulk reply has X-Elastic-Product');
my $res = $json->decode($r->{content});
ok($res->{errors}, 'errors is true');
ok(defined $res->{took}, 'took is there');
my @items = @{ $res->{items} };
is(scalar @items, 8, 'one item per action');
is_deeply([ map { (keys %$_)[0] } @items ], [qw(index create delete update index index index index)], 'items in order, named by action');
my @st = map { (values %$_)[0] } @items;
is_deeply([ map { $_->{status} } @st ], [ 201, 201, 400, 400, 400, 400, 400, 201 ], 'per-item statuses');
is($st[0]{_id}, 'a1', '_id from the action');
is($st[0]{_index}, 'logs-x', '_index from the path');
is($st[1]{_index}, 'other', '_index from the action');
is($st[0]{result}, 'created', 'result created');
like($st[2]{error}{reason}, qr/delete action is not supported/, 'delete: reason');
is($st[2]{error}{type}, 'illegal_argument_exception', 'delete: type');
like($st[3]{error}{reason}, qr/update action is not supported/, 'update: reason');
like($st[4]{error}{reason}, qr/invalid JSON/, 'invalid document: its reject reason');
like($st[5]{error}{reason}, qr/level must be a string/, 'invalid level: the record reject reason');
like($st[6]{error}{reason}, qr/action line is not valid JSON/, 'invalid action line: reason');
is(sql("SELECT string_agg(message || '|' || coalesce(level,'') || '|' || coalesce(status::text,'') || '|' || coalesce(trace_id,'') || '|' || coalesce(span_id,''), ',' ORDER BY message) FROM logagg.logs WHERE source = 'svc-es' AND message LIKE 'raw ok%'"),
	'raw ok 1|error|||,raw ok 2||503||,raw ok 3|||0af7651916cd43dd8448eb211c80319c|b7ad6b7169203331',
	'the accepted documents are stored with their ECS fields');
is(sql("SELECT count(*) FROM logagg.logs WHERE message IN ('no', 'broken doc', 'bad level', 'doc of a broken action')"), '0', 'nothing else stored');
is(sql(q~SELECT count(*) FROM logagg.rejected WHERE coalesce(raw, convert_from(raw_bytes, 'UTF8')) = '{"message":"broken doc",' AND reason LIKE 'invalid JSON%'~), '1', 'the invalid document is in logagg.rejected with its bytes');
is(sql(q{SELECT count(*) FROM logagg.rejected WHERE raw LIKE '%bad level%' AND reason LIKE 'log.level must%'}), '1', 'the invalid level is in logagg.rejected with its reason');

# ---- an unknown action: its name is not echoed, the pairs after it go on ----
$r = bulk('/_bulk', join("\n", '{"in\\"dex":{}}', '{"index":{}}', '{"message":"raw ok 4"}', ''));
$res = eval { $json->decode($r->{content}) } // {};
is(scalar @{ $res->{items} // [] }, 2, 'an unknown action gets an item, the next pair too');
like($res->{items}[0]{index}{error}{reason} // '', qr/unknown action/, 'unknown action: reason');
is($res->{items}[1]{index}{status}, 201, 'the pair after it is stored');

# ---- compact action lines (read without the JSON parser) and other forms: the same items ----
my @pairs = (
	[ '{"create":{"_index":"q1","_id":"id-1","pipeline":"p"}}', '{ "create" : { "_index" : "q1", "_id" : "id-1", "pipeline": "p" } }' ],
	[ '{"index":{"_id":42}}', '{"index": {"_id": 42}}' ],
	[ '{"index":{"_index":7,"_id":"x","_id":"y"}}', '{"index":{"_index":7, "_id":"x","_id":"y"}}' ],
	[ '{"index":{"_index":"q\\u0032","_id":"z"}}', '{"index":{"_index":"q2","_id":"z"}}' ],
);
$r = bulk('/p/_bulk', join("\n", (map { ($_->[0], '{"message":"pair compact"}', $_->[1], '{"message":"pair spaced"}') } @pairs),
	'{"index":{"_id":007}}', '{"message":"pair bad id"}', ''));
$res = eval { $json->decode($r->{content}) } // {};
@items = @{ $res->{items} // [] };
is(scalar @items, 2 * @pairs + 1, 'an item per action line');
for my $i (0 .. $#pairs)
{
	my ($a, $b) = map { my ($k, $v) = %{ $items[ 2 * $i + $_ ] }; "$k $v->{status} " . ($v->{_index} // '-') . ' ' . ($v->{_id} // '-') } 0, 1;
	is($a, $b, "action line $pairs[$i][0]: the same item as $pairs[$i][1]");
}
is(join(' ', map { my ($k, $v) = %$_; "$v->{_index}/" . ($v->{_id} // '') } @items[0, 2, 4, 6]), 'q1/id-1 p/42 p/y q2/z',
	'_index and _id as the action line gives them');
like($items[-1]{index}{error}{reason} // '', qr/action line is not valid JSON/, 'a number with a leading zero: the parser refuses it');
is(sql("SELECT count(*) FROM logagg.logs WHERE message LIKE 'pair %'"), 2 * @pairs, 'the documents are stored');

# ---- not bulk NDJSON at all ----
$r = bulk('/_bulk', "this is not json\nat all\n");
is($r->{status}, 400, 'a body that is not NDJSON: 400');
my $e = eval { $json->decode($r->{content}) } // {};
ok($e->{error}{type} && $e->{error}{reason} =~ /not Elasticsearch bulk NDJSON/, 'the 400 has the Elasticsearch error shape');
is(sql(q{SELECT count(*) FROM logagg.rejected WHERE raw LIKE 'this is not json%' AND reason LIKE '%bulk NDJSON%'}), '1', 'that body is in logagg.rejected');

# ---- a gzip body (not decoded) and invalid UTF-8: 400, kept as bytes ----
$r = bulk('/_bulk', "\x1f\x8b\x08\x00\xff\xfe not text\n");
is($r->{status}, 400, 'a body that is not text: 400');
is(sql(q{SELECT count(*) FROM logagg.rejected WHERE raw IS NULL AND position('\x1f8b'::bytea IN raw_bytes) = 1}), '1',
	'that body is in logagg.rejected as bytes');
$r = bulk('/_bulk', qq({"index":{}}\n{"message":"raw ok 5"}\n{"index":{}}\n\xff\xfe\n{"index":{}}\n{"message":"raw ok 6"}\n));
$res = eval { $json->decode($r->{content}) } // {};
is_deeply([ map { $_->{index}{status} } @{ $res->{items} // [] } ], [ 201, 400, 201 ],
	'a document that is not text fails alone');
is(sql("SELECT count(*) FROM logagg.logs WHERE message IN ('raw ok 5', 'raw ok 6')"), '2', 'the documents around it are stored');

# ---- Bearer and ?token= with the right token; Basic on /ingest ----
$r = bulk('/_bulk', qq({"index":{}}\n{"message":"bearer ok"}\n), { Authorization => "Bearer $token" });
is($r->{status}, 200, 'Bearer with the right token');
$r = bulk("/_bulk?token=$token", qq({"index":{}}\n{"message":"query token ok"}\n), {});
is($r->{status}, 200, '?token= with the right token');
$r = $http->request('POST', "$url/ingest",
	{ headers => { 'Content-Type' => 'application/json', Authorization => basic('anyone', $token) },
	  content => '{"message":"basic ingest ok"}' });
is($r->{status}, 200, 'HTTP Basic with the token on /ingest');
$r = $http->request('POST', "$url/ingest",
	{ headers => { 'Content-Type' => 'application/json', Authorization => basic('anyone', 'lgt_wrong') },
	  content => '{"message":"basic ingest wrong"}' });
is($r->{status}, 401, 'HTTP Basic with a wrong token on /ingest: 401');
is(sql("SELECT string_agg(message, ',' ORDER BY message) FROM logagg.logs WHERE message IN ('bearer ok', 'query token ok', 'basic ingest ok', 'basic ingest wrong')"),
	'basic ingest ok,bearer ok,query token ok', 'those are stored (the wrong one is not)');

# ---- the official client: 10,000 documents through its bulk helper ----
my $tmp = PostgreSQL::Test::Utils::tempdir;
my $expect = "$tmp/expect.json";
my ($out, $err) = ('', '');
my $ok = run([ 'node', "$ENV{LOGAGG_SRC}/test/clients/es_bulk.js", $url, $token, 10000, $expect ],
	'>', \$out, '2>', \$err, timeout(180));
ok($ok, 'the official client sent 10,000 documents without a failure') or diag("$out\n$err");
my $stats = eval { $json->decode((split /\n/, $out)[-1]) } // {};
is($stats->{stats}{successful}, 10000, 'the bulk helper counts 10,000 successes');
chmod 0644, $expect;
sql(qq{CREATE TABLE es_expect AS SELECT e.* FROM jsonb_to_recordset(pg_read_file('$expect')::jsonb)
	AS e(message text, ts timestamptz, level text, status int, trace_id text, span_id text, attrs jsonb)});
is(sql("SELECT count(*) FROM es_expect"), '10000', 'the expectation has 10,000 documents');
my ($batches) = $http->get("$url/metrics")->{content} =~ /^logagg_ingest_batches_total (\d+)/m;
cmp_ok($batches // 0, '>=', 10000 / 97, 'the documents were stored in many batches');
is(sql("SELECT count(*), count(DISTINCT message) FROM logagg.logs WHERE message LIKE 'es doc %'"), '10000|10000', 'stored once each');
is(sql(q{SELECT count(*) FROM es_expect e JOIN logagg.logs l USING (message)
	WHERE l.ts = e.ts AND l.level = e.level AND l.status = e.status AND l.trace_id = e.trace_id
	  AND l.span_id = e.span_id AND l.attrs = e.attrs AND l.source = 'svc-es'}),
	'10000', 'every mapped field equals what the client was given (ts to the microsecond)');
is(sql(q{SELECT count(*) FROM es_expect e JOIN logagg.logs l USING (message) WHERE message LIKE '%ünïcödé%' AND strpos(message, chr(92)) > 0}), '1429', 'escapes and non-ASCII are among them');

is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'the ingest worker kept its PID');
done_testing();
