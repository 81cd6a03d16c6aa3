# 607_reader_slow_subscribers.pl -- subscribers that never read: each gets
# a bounded queue, the records that do not fit are counted and reported as
# {"dropped": N} once it reads again, and ingest acks keep flowing all the
# while (the ingest worker never waits for the reader).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use Time::HiRes qw(time);
use LogaggTest;

my $node = new_node('reader_slow', "logagg.dispatch_workers = 0\nlogagg.max_ts_past = -1\n");
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

my $ta = sql(q{SELECT logagg.create_source('service-a1')});
my $all = sql(q{SELECT logagg.create_reader_token('all')});
ok(poll_until(sub { client("upgrade:x:$tail?token=$all") =~ /status 101/ }, 10), 'the reader knows the token');

# 10 subscribers that do not read; 12 posts of 500 records of 600 bytes:
# about 3.6 MB each, well beyond a subscriber's 1 MB queue
my $pad = 'x' x 560;
my $dir = PostgreSQL::Test::Utils::tempdir();
my @posts = map {
	my $p = $_;
	open(my $fh, '>', "$dir/p$p") or die;
	print $fh join("\n", map { qq({"message":"p$p-r$_ $pad"}) } 1 .. 500);
	close $fh;
	"postfile:${ingest}::$ta:$dir/p$p"
} 1 .. 12;
my $t0 = time();
my $base = client(@posts);
my $base_secs = time() - $t0;
is(scalar(() = $base =~ /^post 200 /mg), 12, 'without subscribers: every post acked');
note(sprintf('without subscribers: 12 x 500 records acked in %.2f s', $base_secs));
# the subscribers in a process of their own, which reads only once told to
my ($hout, $herr) = ('', '');
my $holder = IPC::Run::start([ '/usr/bin/python3', $client, (map { "hold:h$_:$tail?token=$all" } 1 .. 10),
		"waitfile:$dir/go", 'until:h1:60:"last"' ], '>', \$hout, '2>', \$herr, IPC::Run::timeout(180));
ok(poll_until(sub { $holder->pump_nb; (() = $hout =~ /^h\d+ open/mg) == 10 }, 30), '10 subscribers are connected');
$t0 = time();
my $out = client(@posts, 'post:' . $ingest . "::$ta:" . '{"message":"last"}');
my $secs = time() - $t0;
is(scalar(() = $out =~ /^post 200 \{"accepted": 500, "rejected": 0\}/mg), 12,
	'every post was acked while 10 subscribers did not read');
note(sprintf('with 10 stalled subscribers: 12 x 500 records acked in %.2f s', $secs));
ok($secs < 10 * $base_secs + 5, 'ingest was not held up by the subscribers');
open(my $go, '>', "$dir/go") or die;
close $go;
$holder->finish;
diag("holder stderr: $herr") if $herr ne '';
like($hout, qr/^h1 frame \S+ \{"dropped": [1-9]\d*\}/m, 'the stalled subscriber is told how many records it missed');
my $n = 0;
$n += $_ for ($hout =~ /^h1 frame \S+ \{"dropped": (\d+)\}/mg);
my @recs = ($hout =~ /^h1 frame \S+ \{"id"/mg);
note("h1 got " . scalar(@recs) . " records and notices of $n dropped");
is(scalar(@recs) + $n, 6001, 'what it got and what it was told it missed add up to everything');
like($hout, qr/"last"/, 'and it gets the records that came after, once it reads');
is(sql(q{SELECT count(*) FROM logagg.logs}), '12001', 'everything was stored');
is(sql(q{SELECT last_error IS NULL FROM logagg.status() WHERE kind = 'reader'}), 't', 'the reader had no error');

done_testing();
