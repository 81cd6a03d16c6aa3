# The ingest port is taken by another process: the worker says so clearly
# and keeps retrying, instead of crashing the server; once the port is
# free it serves.
use strict;
use warnings;
use IO::Socket::INET;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;

my $node = new_node('portinuse');
my $blocker = IO::Socket::INET->new(
	LocalAddr => '127.0.0.1', LocalPort => $node->{logagg_port},
	Proto => 'tcp', Listen => 5, ReuseAddr => 1)
  or die "could not occupy port $node->{logagg_port}: $!";
$node->start;
$node->safe_psql('postgres', 'CREATE EXTENSION logagg');

ok( poll_until(sub { slurp_file($node->logfile) =~ /could not listen on 127\.0\.0\.1:$node->{logagg_port}: Address already in use/ }, 30),
	'the worker reports the taken port with the reason');
my $log = slurp_file($node->logfile);
unlike($log, qr/terminated by signal|server process .* was terminated/, 'no crash of the server');
is($node->safe_psql('postgres', 'SELECT 1'), '1', 'the server keeps serving SQL');

close $blocker;
ok( poll_until(
		sub {
			my $s = IO::Socket::INET->new(PeerAddr => '127.0.0.1', PeerPort => $node->{logagg_port}, Proto => 'tcp');
			return 0 unless $s;
			print $s "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
			local $/;
			my $r = <$s> // '';
			return $r =~ m{^HTTP/1\.[01] 200};
		},
		30),
	'once the port is free the ingest worker serves /healthz');
$node->stop('fast');
done_testing();
