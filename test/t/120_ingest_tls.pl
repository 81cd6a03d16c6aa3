# 120_ingest_tls.pl -- wss:// when logagg.tls_cert_file/tls_key_file are
# set: a verifying client (its CA file is the server's self-signed
# certificate) streams records exactly once, and plain ws:// to the same
# port gets nowhere.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run timeout);
use LogaggTest;

my $node = new_node('ingest_tls', "logagg.dispatch_workers = 0\n"
	  . "logagg.tls_cert_file = 'server.crt'\nlogagg.tls_key_file = 'server.key'\n");
my $dir = $node->data_dir;
my ($o, $e) = ('', '');
run([ 'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
		'-keyout', "$dir/server.key", '-out', "$dir/server.crt",
		'-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1' ],
	'>', \$o, '2>', \$e, timeout(60))
  or die "openssl failed: $e";
chmod 0600, "$dir/server.key";
start_with_extension($node);
my $port = $node->{logagg_port};
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-tls')");

ok($node->log_contains(qr{listening on wss://127\.0\.0\.1:$port/ingest}), 'ingest listens with TLS');

my ($out, $err) = ('', '');
run([ emitter_path(), '--url', "wss://127.0.0.1:$port/ingest", '--token', $token,
		'--cafile', "$dir/server.crt", '--stream', 'tls', '--count', '2000', '--batch', '10',
		'--give-up-after', '20' ],
	'>', \$out, '2>', \$err, timeout(120));
is($? >> 8, 0, 'wss:// with certificate verification: every record acked') or diag($err);
is($node->safe_psql('postgres',
		"SELECT count(*) || ',' || count(DISTINCT seq) || ',' || max(seq) FROM logagg.logs WHERE stream = 'tls' AND source = 'svc-tls'"),
	'2000,2000,2000', 'records arrived over TLS exactly once');

($out, $err) = ('', '');
run([ emitter_path(), '--url', "ws://127.0.0.1:$port/ingest", '--token', $token,
		'--count', '10', '--give-up-after', '3', '--drain-timeout', '3' ],
	'>', \$out, '2>', \$err, timeout(60));
isnt($? >> 8, 0, 'plain ws:// to the TLS port does not get records in');
is($node->safe_psql('postgres', "SELECT count(*) FROM logagg.logs"), '2000', 'nothing else was stored');

$node->stop;
done_testing();
