# 422_ingest_gzip.pl -- Content-Encoding on every POST endpoint of the
# ingest port (POST /ingest, POST /_bulk, POST /v1/logs): gzip, x-gzip and
# deflate bodies are stored like plain ones (chunked too); a body that is
# not valid gzip gets 400, one that decompresses to more than
# logagg.max_message_bytes gets 413, each with its reason in the
# endpoint's format and its compressed bytes in logagg.rejected; the
# worker keeps its PID.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use JSON::PP;
use IO::Compress::Gzip qw(gzip $GzipError);
use IO::Compress::Deflate qw(deflate $DeflateError);
use LogaggTest;
use OtlpWire qw(any_str log_record request);

my $node = new_node('ingest_gzip', "logagg.dispatch_workers = 0\nlogagg.max_message_bytes = 65536\n");
start_with_extension($node);
my $port = $node->{logagg_port};
my $url = "http://127.0.0.1:$port";
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-gz')");
my $http = HTTP::Tiny->new(timeout => 30);
my $json = JSON::PP->new->utf8;

sub sql { return $node->safe_psql('postgres', $_[0]); }
my $pid = sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'");
sub gz { my ($in) = @_; my $out; gzip(\$in => \$out) or die $GzipError; return $out; }
sub zl { my ($in) = @_; my $out; deflate(\$in => \$out) or die $DeflateError; return $out; }

my %ep = (
	'/ingest' => [ 'application/json', sub { qq({"message": "$_[0]"}) } ],
	'/_bulk' => [ 'application/x-ndjson', sub { qq({"index": {}}\n{"message": "$_[0]"}\n) } ],
	'/v1/logs' => [ 'application/x-protobuf', sub { request([], [ log_record(body => any_str($_[0])) ]) } ],
);

for my $path (sort keys %ep)
{
	my ($type, $make) = @{ $ep{$path} };
	my %h = ('Content-Type' => $type, Authorization => "Bearer $token");
	for my $enc ([ 'gzip', \&gz ], [ 'x-gzip', \&gz ], [ 'deflate', \&zl ])
	{
		my ($name, $f) = @$enc;
		my $msg = "gz $path $name";
		my $r = $http->request('POST', "$url$path", { headers => { %h, 'Content-Encoding' => $name }, content => $f->($make->($msg)) });
		is($r->{status}, 200, "$path, Content-Encoding $name: 200");
		is(sql("SELECT count(*) FROM logagg.logs WHERE message = '$msg'"), '1', "$path, $name: stored");
	}
	# chunked and gzip
	my $body = gz($make->("gz $path chunked"));
	my @parts = ($body =~ /(.{1,7})/sg);
	my $r = $http->request('POST', "$url$path", { headers => { %h, 'Content-Encoding' => 'gzip' },
		content => sub { shift @parts } });
	is($r->{status}, 200, "$path, gzip and chunked: 200");
	is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'gz $path chunked'"), '1', "$path, gzip and chunked: stored");

	# not gzip: 400
	$r = $http->request('POST', "$url$path", { headers => { %h, 'Content-Encoding' => 'gzip' }, content => "\x1f\x8b not really $path" });
	is($r->{status}, 400, "$path, bad gzip: 400");
	like($r->{content}, qr/not valid gzip/, "$path, bad gzip: the reason in the reply");
	is(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE '%not valid gzip%' AND raw IS NULL AND raw_bytes = '\\x1f8b206e6f74207265616c6c7920'::bytea || convert_to('$path', 'UTF8')"), '1',
		"$path, bad gzip: its bytes in logagg.rejected");

	# a bomb: 64 kB is the limit, this inflates to 10 MB
	my $big = ('{"message": "bomb"}' . (' ' x 1000)) x 10000;
	my $bomb = gz($big);
	$r = $http->request('POST', "$url$path", { headers => { %h, 'Content-Encoding' => 'gzip' }, content => $bomb });
	is($r->{status}, 413, "$path, decompression bomb: 413");
	like($r->{content}, qr/decompresses to more than logagg.max_message_bytes/, "$path, bomb: the reason in the reply");
	is(sql("SELECT count(*) FROM logagg.rejected WHERE reason LIKE '%decompresses to more than%' AND raw_length = " . length($bomb)), '1',
		"$path, bomb: in logagg.rejected");
	sql("DELETE FROM logagg.rejected WHERE reason LIKE '%decompresses to more than%'");

	# the connection goes on: a plain request after
	$r = $http->request('POST', "$url$path", { headers => \%h, content => $make->("plain after $path") });
	is($r->{status}, 200, "$path: a plain request after");
	is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'plain after $path'"), '1', "$path: stored");
}
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'bomb'"), '0', 'nothing of the bombs stored');
is(sql("SELECT pid FROM logagg.status() WHERE kind = 'ingest'"), $pid, 'the ingest worker kept its PID');
done_testing();
