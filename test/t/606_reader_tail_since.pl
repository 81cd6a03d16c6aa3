# 606_reader_tail_since.pl -- since=N: the last N matching records first,
# oldest first, then live ones, with neither a gap nor a duplicate even
# while records are being committed as the subscriber connects; a token
# for service-a* replays only its sources.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use LogaggTest;

my $node = new_node('reader_since', "logagg.dispatch_workers = 0\nlogagg.max_ts_past = -1\n");
start_with_extension($node);
my $ingest = "http://127.0.0.1:$node->{logagg_port}/ingest";
my $tail = "ws://127.0.0.1:$node->{reader_port}/tail";
my $client = src_dir() . '/test/clients/tail_client.py';

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub client
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ '/usr/bin/python3', $client, @_ ], '>', \$out, '2>', \$err, IPC::Run::timeout(120));
	diag("tail_client stderr: $err") if $err ne '';
	return $out;
}

sub messages
{
	my ($out, $name) = @_;
	return map { decode_json($_)->{message} // 'notice' } ($out =~ /^$name frame \S+ (.*)$/mg);
}

my $ta = sql(q{SELECT logagg.create_source('service-a1')});
my $tb = sql(q{SELECT logagg.create_source('other-b')});
my $all = sql(q{SELECT logagg.create_reader_token('all')});
my $rda = sql(q{SELECT logagg.create_reader_token('only-a', 'service-a*')});
ok(poll_until(sub { client("upgrade:x:$tail?token=$rda") =~ /status 101/ }, 10), 'the reader knows the tokens');

client(map { ("post:${ingest}::$ta:" . qq({"message":"a-$_"}), "post:${ingest}::$tb:" . qq({"message":"b-$_"})) } 1 .. 5);
my $out = client("tail:a:$tail?token=$rda&since=3", "recv:a:3:20",
	"post:${ingest}::$tb:" . '{"message":"b-live"}', "post:${ingest}::$ta:" . '{"message":"a-live"}', "recv:a:1:20");
is(join(',', messages($out, 'a')), 'a-3,a-4,a-5,a-live',
	'since=3: the last three of its sources, oldest first, then live ones');

$out = client("tail:all:$tail?token=$all&since=10000&source=other-*", "until:all:20:b-5");
is(join(',', messages($out, 'all')), 'b-1,b-2,b-3,b-4,b-5', 'since with a filter replays matching records only');

# no gap and no duplicate while records are committed during the replay
my ($pout, $perr) = ('', '');
my $poster = IPC::Run::start([ '/usr/bin/python3', $client,
		map { "post:${ingest}::$ta:" . qq({"message":"n-$_"}) } 1 .. 300 ],
	'>', \$pout, '2>', \$perr, IPC::Run::timeout(120));
ok(poll_until(sub { sql(q{SELECT count(*) FROM logagg.logs WHERE message LIKE 'n-%'}) >= 30 }, 60),
	'records are being committed');
$out = client("tail:r:$tail?token=$rda&since=10000", "until:r:90:^\\{.*\"n-300\"");
$poster->finish;
is(scalar(() = $pout =~ /^post 200/mg), 300, 'every post was acked');
my @got = grep { /^n-/ } messages($out, 'r');
my %seen;
my @dups = grep { $seen{$_}++ } @got;
is(scalar(@dups), 0, 'no record arrived twice') or diag("duplicates: @dups");
is(join(',', @got), join(',', map { "n-$_" } 1 .. 300), 'every record, in commit order: no gap');
unlike($out, qr/dropped/, 'nothing was dropped');

done_testing();
