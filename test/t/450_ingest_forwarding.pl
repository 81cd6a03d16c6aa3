# 450_ingest_forwarding.pl -- forwarding tokens: one token (a collector's)
# carries many services, each record stored under the source it names
# (source / service, or service.name), within the token's globs, checked
# by the name rules, else under the token's own name; over POST /ingest,
# WebSocket and Elasticsearch _bulk.  A plain token still fixes the source
# whatever the record says.  Also: who sees forwarding in logagg.sources,
# create_source's argument checks, revoking and deleting a forwarding
# token closes its connections, logagg.ingest() is unaffected, and the
# worker keeps its PID.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(start pump finish timeout);
use HTTP::Tiny;
use JSON::PP;
use MIME::Base64 qw(encode_base64);
use LogaggTest;

my $node = new_node('ingest_forwarding', "logagg.dispatch_workers = 0\nlogagg.max_ts_past = -1\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $url = "http://127.0.0.1:$port";
my $base = "ws://127.0.0.1:$port";
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->utf8;

sub sql { return $node->safe_psql('postgres', $_[0]); }
sub sources_of
{
	my ($like) = @_;
	return sql("SELECT string_agg(message || '=' || source, ',' ORDER BY message) FROM logagg.logs WHERE message LIKE '$like'");
}
sub post
{
	my ($tok, $body) = @_;
	return $http->post("$url/ingest", { headers => { Authorization => "Bearer $tok" }, content => $body });
}

my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");
my $collector = sql("SELECT logagg.create_source('collector', forwarder => true)");
my $team_a = sql("SELECT logagg.create_source('team-a-fwd', forwarder => true, sources => 'team-a-*,billing')");
my $plain = sql("SELECT logagg.create_source('plain-svc')");

# ---- create_source: arguments and what the listing shows ----
is(sql("SELECT string_agg(name || ':' || forwarder || ':' || coalesce(forward_sources, '-'), ',' ORDER BY name) FROM logagg.sources"),
	'collector:true:-,plain-svc:false:-,team-a-fwd:true:team-a-*,billing',
	'logagg.sources records forwarding and the patterns');
sql("CREATE ROLE rdr LOGIN IN ROLE logagg_reader");
is($node->safe_psql('postgres', "SELECT forwarder, forward_sources FROM logagg.sources WHERE name = 'team-a-fwd'",
		extra_params => [ '-U', 'rdr' ]),
	't|team-a-*,billing', 'logagg_reader sees whether a source forwards, and its patterns');
my ($rc, $out, $err) = $node->psql('postgres', 'SELECT token_hash FROM logagg.sources', extra_params => [ '-U', 'rdr' ]);
like($err, qr/permission denied/, 'logagg_reader still cannot read token hashes');
($rc, $out, $err) = $node->psql('postgres', "SELECT logagg.create_source('x1', sources => 'team-*')");
like($err, qr/sources applies only to a forwarding token/, 'sources without forwarder => true is refused');
($rc, $out, $err) = $node->psql('postgres', "SELECT logagg.create_source('x2', forwarder => true, sources => 'team a')");
like($err, qr/invalid sources pattern "team a"/, 'an invalid pattern is refused');
($rc, $out, $err) = $node->psql('postgres', "SELECT logagg.create_source('x3', forwarder => true, sources => 'a,,b')");
like($err, qr/invalid sources pattern/, 'an empty glob in the list is refused');
($rc, $out, $err) = $node->psql('postgres', "SELECT logagg.create_source('x4', NULL)");
like($err, qr/forwarder must be true or false/, 'forwarder NULL is refused');
($rc, $out, $err) = $node->psql('postgres', "UPDATE logagg.sources SET forward_sources = 'a b' WHERE name = 'collector'");
like($err, qr/sources_forward_sources_check/, 'the table refuses an invalid pattern too');
($rc, $out, $err) = $node->psql('postgres', "UPDATE logagg.sources SET forward_sources = 'a*' WHERE name = 'plain-svc'");
like($err, qr/sources_forward_sources_check/, 'and patterns on a plain token');
is(sql("SELECT count(*) FROM logagg.sources WHERE name LIKE 'x_'"), '0', 'no source created by a refused call');

# ---- POST /ingest with a forwarding token (both parse paths) ----
my $res = post($collector, join("\n",
	'{"source":"checkout","message":"p1"}',
	'{"service":"cart","message":"p2"}',
	'{"service.name":"search","message":"p3","k":{"service.name":"nested-ignored"}}',
	'{"message":"p4"}',
	'{"source":"bad name!","message":"p5"}',
	'{"service.name":"x/y","message":"p6"}',
	'{"service.name":"search-slow","message":"p7","x":"\u00e9"}',
	'{"k":"v","service.name":42,"message":"p8"}',
	'{"source":"checkout","service.name":"ignored","message":"p9"}',
	'{"source":"collector","message":"pa"}') . "\n");
is($res->{status}, 200, 'forwarder POST /ingest: 200');
like($res->{content}, qr/"accepted": 7, "rejected": 3/, 'forwarder POST: 7 stored, 3 rejected');
is(sources_of('p_%'), "p1=checkout,p2=cart,p3=search,p4=collector,p7=search-slow,p9=checkout,pa=collector",
	'each record stored under the source it names (source, service, service.name), else the token\'s name');
is(sql("SELECT attrs->>'service.name' FROM logagg.logs WHERE message = 'p3'"), 'search', 'service.name also stays in attrs');
is(sql("SELECT string_agg(reason, ' | ' ORDER BY id) FROM logagg.rejected WHERE source = 'collector'"),
	"source must be 1-128 letters, digits, '.', '_' or '-' | service.name must be 1-128 letters, digits, '.', '_' or '-' | "
	. "service.name must be 1-128 letters, digits, '.', '_' or '-'",
	'names breaking the rules are rejected with the reason');
ok(sql("SELECT bool_and(raw LIKE '%p5%' OR raw LIKE '%p6%' OR raw LIKE '%p8%') FROM logagg.rejected WHERE source = 'collector'") eq 't',
	'the rejected records are kept with their text');

# ---- WebSocket with a forwarding token limited by globs ----
$out = ws_probe($base, "open:a:/ingest?stream=fwd-a:$team_a",
	'recv:a',
	'send:a:{"seq":1,"source":"team-a-web","message":"w1"}\n'
	. '{"seq":2,"source":"team-b-web","message":"w2"}\n'
	. '{"seq":3,"service.name":"billing","message":"w3"}\n'
	. '{"seq":4,"message":"w4"}\n'
	. '{"seq":5,"service.name":"billing-x","message":"w5"}\n'
	. '{"seq":6,"source":"team-a-fwd","message":"w6"}',
	'until:a:10:"ack": 6');
like($out, qr/"error": "source \\"team-b-web\\" is not among the sources this token may write", "seq": 2/,
	'a source outside the patterns: error frame with the reason and seq');
like($out, qr/"error": "source \\"billing-x\\" is not among the sources this token may write", "seq": 5/,
	'service.name outside the patterns: error frame');
is(sources_of('w_'), 'w1=team-a-web,w3=billing,w4=team-a-fwd,w6=team-a-fwd',
	'WebSocket: names within the patterns, and the token\'s own name');
is(sql("SELECT source || ':' || last_seq FROM logagg.streams WHERE stream_id = 'fwd-a'"), 'team-a-fwd:6',
	'the stream stays the connection\'s (the token\'s source)');
is(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE '%is not among the sources this token may write' AND source = 'team-a-fwd'"),
	'2', 'refused names are in logagg.rejected');

# ---- Elasticsearch _bulk (ECS service.name) ----
sub bulk
{
	my ($tok, @docs) = @_;
	my $r = $http->request('POST', "$url/_bulk",
		{ headers => { 'Content-Type' => 'application/x-ndjson', Authorization => 'Basic ' . encode_base64("elastic:$tok", '') },
		  content => join('', map { qq({"index":{}}\n$_\n) } @docs) });
	return ($r->{status}, eval { $json->decode($r->{content}) } // {});
}
my ($st, $reply) = bulk($collector,
	'{"@timestamp":"2026-01-02T03:04:05.123456Z","service.name":"orders","message":"e1"}',
	'{"service.name":"Payments.v2","message":"e2","log.level":"error"}',
	'{"service.name":"Team B!","message":"e3"}',
	'{"message":"e4"}');
is($st, 200, '_bulk with a forwarding token: 200');
is_deeply([ map { $_->{index}{status} } @{ $reply->{items} // [] } ], [ 201, 201, 400, 201 ], '_bulk: per-item statuses');
like($reply->{items}[2]{index}{error}{reason} // '', qr/^service\.name must be 1-128 letters/, '_bulk: the invalid name\'s reason');
is(sources_of('e_'), 'e1=orders,e2=Payments.v2,e4=collector', '_bulk: stored under each document\'s service.name');

# ---- a plain token never writes another source ----
$res = post($plain, qq({"source":"checkout","message":"n1"}\n{"service":"cart","message":"n2"}\n{"service.name":"search","message":"n3"}\n));
like($res->{content}, qr/"accepted": 3, "rejected": 0/, 'plain token: records naming other sources are accepted ...');
($st, $reply) = bulk($plain, '{"service.name":"orders","message":"n4"}');
is($reply->{items}[0]{index}{status}, 201, 'plain token _bulk: accepted ...');
$out = ws_probe($base, "open:p:/ingest:$plain", 'send:p:{"source":"team-a-web","message":"n5"}', 'until:p:10:ack');
is(sources_of('n_'), 'n1=plain-svc,n2=plain-svc,n3=plain-svc,n4=plain-svc,n5=plain-svc',
	'... and stored under the token\'s own source');
is(sql("SELECT attrs->>'service.name' FROM logagg.logs WHERE message = 'n3'"), 'search', 'plain token: service.name kept in attrs');

# ---- changing a token's patterns applies to its next message ----
sql("UPDATE logagg.sources SET forward_sources = 'team-b-*' WHERE name = 'team-a-fwd'");
$out = ws_probe($base, "open:b:/ingest:$team_a",
	'send:b:{"source":"team-b-web","message":"u1"}\n{"source":"team-a-web","message":"u2"}', 'until:b:10:ack');
like($out, qr/team-a-web\\" is not among/, 'narrowed patterns refuse the old names');
is(sources_of('u_'), 'u1=team-b-web', 'and allow the new ones');
sql("UPDATE logagg.sources SET forwarder = false, forward_sources = NULL WHERE name = 'team-a-fwd'");
$out = ws_probe($base, "open:b:/ingest:$team_a", 'send:b:{"source":"team-b-web","message":"u3"}', 'until:b:10:ack');
is(sources_of('u3'), 'u3=team-a-fwd', 'a token made plain again fixes its source');

# ---- logagg.ingest() over SQL is unaffected ----
sql("CREATE ROLE w LOGIN IN ROLE logagg_writer; SELECT logagg.grant_source_write('w', 'sql-svc')");
is($node->safe_psql('postgres',
		q{SELECT logagg.ingest('[{"source":"sql-svc","service.name":"other","message":"s1"},{"source":"collector","message":"s2"}]')},
		extra_params => [ '-U', 'w' ]), '1', 'logagg.ingest(): the granted source stored, the other refused');
is(sources_of('s_'), 's1=sql-svc', 'logagg.ingest() takes the source field, not service.name');

# ---- revoking or deleting a forwarding token closes its connections ----
sub revoke_run
{
	my ($name, $tok, $how) = @_;
	my ($in, $o, $e) = ('', '', '');
	my $h = start([ '/usr/bin/python3', src_dir() . '/test/clients/revoke_probe.py',
			"$base/ingest?stream=$name", $tok, 'send' ],
		'<', \$in, '>', \$o, '2>', \$e, timeout(60));
	pump $h until $o =~ /ready/;
	sql($how);
	$in .= "go\n";
	pump $h until $o =~ /(closed|open) [\d.]+ \d+/;
	finish $h;
	diag("revoke_probe: $e") if $e ne '';
	my ($state) = $o =~ /(closed|open) [\d.]+ \d+/;
	return $state // 'none';
}
is(revoke_run('collector', $collector, "SELECT logagg.revoke_source('collector')"), 'closed',
	'revoke_source closes a forwarding token\'s connection');
$res = post($collector, '{"source":"checkout","message":"r1"}');
is($res->{status}, 401, 'the revoked forwarding token gets 401');
my $gone = sql("SELECT logagg.create_source('gone-fwd', forwarder => true)");
is(revoke_run('gone-fwd', $gone, "DELETE FROM logagg.sources WHERE name = 'gone-fwd'"), 'closed',
	'deleting a forwarding token closes its connection');

is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'the ingest worker kept its PID');

$node->stop;
done_testing();
