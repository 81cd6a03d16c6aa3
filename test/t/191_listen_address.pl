# The ingest and reader ports listen on logagg.listen_address and nowhere
# else.  libwebsockets 4.1 opens an IPv6 socket by default, and an IPv4
# address given to it left that socket bound to "::" -- every interface,
# IPv4 and IPv6: a server configured for 127.0.0.1 took logs (and served
# the console) on all its addresses.  Checked on loopback alone: all of
# 127.0.0.0/8 reaches this host, so a listener bound to 127.0.0.1 must
# refuse 127.0.0.2, and one bound to "::1" must refuse 127.0.0.1.
use strict;
use warnings;
use IO::Socket::IP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;

# HTTP status line of GET PATH on HOST:PORT, or '' when the connection is refused.
sub get_status
{
	my ($host, $port, $path) = @_;
	my $s = IO::Socket::IP->new(PeerHost => $host, PeerPort => $port, Proto => 'tcp', Timeout => 5)
	  or return '';
	print $s "GET $path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
	local $/;
	my $r = <$s> // '';
	close $s;
	return $r =~ m{^(HTTP/1\.[01] \d+)} ? $1 : "no HTTP answer";
}

sub listeners_of
{
	my ($node, $addr) = @_;
	$node->stop('fast') if $node->{_pid};
	$node->append_conf('postgresql.conf', "logagg.listen_address = '$addr'\n");
	$node->start;
	wait_workers_ready($node);
	# the reader's worker reports ready before it listens: wait for it
	poll_until(sub { get_status(($addr eq '::1' ? '::1' : '127.0.0.1'), $node->{reader_port}, '/healthz') ne '' }, 30);
}

my $have_v6 = IO::Socket::IP->new(Listen => 1, LocalHost => '::1', LocalPort => 0, Proto => 'tcp') ? 1 : 0;

my $node = new_node('listen');
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION logagg');
wait_workers_ready($node);
my ($wp, $rp) = ($node->{logagg_port}, $node->{reader_port});

# 127.0.0.1 (the default): both ports answer there and nowhere else
listeners_of($node, '127.0.0.1');
like(get_status('127.0.0.1', $wp, '/healthz'), qr/ 200$/, '127.0.0.1: ingest answers on 127.0.0.1');
like(get_status('127.0.0.1', $rp, '/healthz'), qr/^HTTP/, '127.0.0.1: the reader answers on 127.0.0.1');
is(get_status('127.0.0.2', $wp, '/healthz'), '', '127.0.0.1: ingest refuses a connection to 127.0.0.2');
is(get_status('127.0.0.2', $rp, '/healthz'), '', '127.0.0.1: the reader refuses a connection to 127.0.0.2');
SKIP:
{
	skip 'no IPv6 on loopback', 2 unless $have_v6;
	is(get_status('::1', $wp, '/healthz'), '', '127.0.0.1: ingest refuses IPv6 (::1)');
	is(get_status('::1', $rp, '/healthz'), '', '127.0.0.1: the reader refuses IPv6 (::1)');
}

# an IPv6 address: there and nowhere else
SKIP:
{
	skip 'no IPv6 on loopback', 4 unless $have_v6;
	listeners_of($node, '::1');
	like(get_status('::1', $wp, '/healthz'), qr/ 200$/, '::1: ingest answers on ::1');
	like(get_status('::1', $rp, '/healthz'), qr/^HTTP/, '::1: the reader answers on ::1');
	is(get_status('127.0.0.1', $wp, '/healthz'), '', '::1: ingest refuses 127.0.0.1');
	is(get_status('127.0.0.1', $rp, '/healthz'), '', '::1: the reader refuses 127.0.0.1');
}

# a name is resolved, like listen_addresses
listeners_of($node, 'localhost');
my $lh = get_status('127.0.0.1', $wp, '/healthz') || get_status('::1', $wp, '/healthz');
like($lh, qr/ 200$/, 'localhost: ingest answers on a loopback address');
is(get_status('127.0.0.2', $wp, '/healthz'), '', 'localhost: ingest refuses 127.0.0.2');

# "*": every interface, as documented
listeners_of($node, '*');
like(get_status('127.0.0.2', $wp, '/healthz'), qr/ 200$/, '*: ingest answers on 127.0.0.2');
like(get_status('127.0.0.2', $rp, '/healthz'), qr/^HTTP/, '*: the reader answers on 127.0.0.2');

my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal/, 'no worker crashed');
$node->stop('fast');
done_testing();
