# 424_ingest_otlp_mutations.pl -- POST /v1/logs fed 300 mutations (seeded,
# so reproducible) of valid protobuf and JSON requests: flipped bytes,
# cut bodies, spliced bodies, repeated fields, random lengths.  Every
# request gets 200 or 400, never kills or stalls the worker (same PID), and
# what was refused as a whole is in logagg.rejected; a valid request after
# them all is stored.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use LogaggTest;
use OtlpWire qw(pb_varint pb_len pb_fixed64 pb_str any_str any_int kv log_record request);

my $node = new_node("ingest_otlp_mut", "logagg.dispatch_workers = 0\nlogagg.batch_rows = 50\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $url = "http://127.0.0.1:$port";
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-otlp-mut')");
my $http = HTTP::Tiny->new(timeout => 30);
sub sql { return $node->safe_psql('postgres', $_[0]); }
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");
srand(20261203);

my $now_ns = sql("SELECT (extract(epoch FROM now()) * 1000000)::bigint") * 1000;	# an integer
my $kvlist = pb_len(6, pb_len(1, pb_str(1, 'a') . pb_len(2, any_int(5))) . pb_len(1, pb_str(1, 'b') . pb_len(2, pb_len(5, pb_len(1, any_str('x'))))));
my @records = map { log_record(time => $now_ns + $_, severity_number => 1 + $_ % 24, severity_text => "lvl$_",
		body => $_ % 2 ? any_str("mut $_") : $kvlist, attrs => [ kv('http.response.status_code', any_int(200 + $_)), kv('k', $kvlist) ],
		trace_id => pack('H*', sprintf('%032x', $_)), span_id => pack('H*', sprintf('%016x', $_))) } 1 .. 5;
my $pb = request([ kv('service.name', any_str('m')), kv('r', $kvlist) ], \@records);
my $js = '{"resourceLogs":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"m"}}]},"scopeLogs":[{"scope":{"name":"s"},"logRecords":['
	. join(',', map { sprintf('{"timeUnixNano":"%d","severityNumber":9,"body":{"kvlistValue":{"values":[{"key":"a","value":{"arrayValue":{"values":[{"intValue":"%d"}]}}}]}},"traceId":"0af7651916cd43dd8448eb211c80319c","attributes":[{"key":"http.status_code","value":{"intValue":503}}]}', $now_ns + $_, $_) } 1 .. 5)
	. ']}]}]}';

sub mutate
{
	my ($s) = @_;
	my $kind = int(rand(5));
	my $len = length $s;
	if ($kind == 0) { substr($s, int(rand($len)), 1) = chr(int(rand(256))) for 1 .. 1 + int(rand(4)); }
	elsif ($kind == 1) { $s = substr($s, 0, int(rand($len))); }
	elsif ($kind == 2) { my $at = int(rand($len)); $s = substr($s, 0, $at) . substr($s, int(rand($len))); }
	elsif ($kind == 3) { my $at = int(rand($len)); my $n = 1 + int(rand(40)); $s = substr($s, 0, $at) . substr($s, $at, $n) x (1 + int(rand(50))) . substr($s, $at); }
	else { substr($s, int(rand($len)), 0) = join('', map { chr(int(rand(256))) } 1 .. 1 + int(rand(8))); }
	return $s;
}

my %statuses;
my $bad = 0;
my $refused = 0;
for my $i (1 .. 300)
{
	my $json = $i % 3 == 0;
	my $body = mutate($json ? $js : $pb);
	my $r = $http->request('POST', "$url/v1/logs",
		{ headers => { 'Content-Type' => $json ? 'application/json' : 'application/x-protobuf', Authorization => "Bearer $token" },
		  content => $body });
	$statuses{ $r->{status} }++;
	$refused++ if $r->{status} == 400;
	if ($r->{status} != 200 && $r->{status} != 400)
	{
		$bad++;
		diag("mutation $i: $r->{status} $r->{content}") if $bad < 5;
	}
}
diag(join(', ', map { "$_: $statuses{$_}" } sort keys %statuses));
is($bad, 0, 'every mutation got 200 or 400');
cmp_ok($statuses{200} // 0, '>', 0, 'some mutations were still valid requests');
cmp_ok($refused, '>', 0, 'some were refused as a whole');
cmp_ok(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'the body%' OR reason LIKE 'a string field of the body holds a NUL byte'"), '>=', $refused,
	'each request refused as a whole is in logagg.rejected');
my $r = $http->request('POST', "$url/v1/logs", { headers => { 'Content-Type' => 'application/x-protobuf', Authorization => "Bearer $token" },
	content => request([], [ log_record(body => any_str('valid after the mutations')) ]) });
is($r->{status}, 200, 'a valid request after them');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'valid after the mutations'"), '1', 'is stored');
is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'the ingest worker kept its PID');
done_testing();
