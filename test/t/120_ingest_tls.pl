# 120_ingest_tls.pl -- wss:// when logagg.tls_cert_file/tls_key_file are
# set: a verifying client (its CA file is the server's self-signed
# certificate) streams records exactly once, and plain ws:// to the same
# port gets nowhere.  The listener speaks TLS 1.2 and 1.3 only, with
# forward-secret AEAD ciphers, even when the system's OpenSSL configuration
# would allow more (the server runs with a permissive OPENSSL_CONF here).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run timeout);
use LogaggTest;

my $node = new_node('ingest_tls', "logagg.dispatch_workers = 0\n"
	  . "logagg.tls_cert_file = 'server.crt'\nlogagg.tls_key_file = 'server.key'\n");
my $ca = self_signed_cert($node);
# the server and the probing client may offer TLS 1.0 and weak ciphers:
# what is refused below is refused by logagg's own settings
permissive_openssl_conf();

start_with_extension($node);
my $port = $node->{logagg_port};
my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('svc-tls')");

# the worker logs this once its listener exists, which may be after the
# workers report ready: wait for it
ok(poll_until(sub { $node->log_contains(qr{listening on wss://127\.0\.0\.1:$port/ingest}) }, 60),
	'ingest listens with TLS');

sub tls_probe
{
	my ($version, $ciphers) = @_;
	my ($o, $e) = ('', '');
	run([ '/usr/bin/python3', src_dir() . '/test/clients/tls_probe.py', '127.0.0.1', $port,
			$version, defined $ciphers ? $ciphers : () ],
		'>', \$o, '2>', \$e, timeout(30));
	diag("tls_probe: $e") if $e ne '';
	chomp $o;
	return $o;
}

# the client side can offer old versions (or the checks below mean nothing)
like(tls_probe('TLSv1_1'), qr/^refused/, 'TLS 1.1 is refused');
like(tls_probe('TLSv1'), qr/^refused/, 'TLS 1.0 is refused');
like(tls_probe('TLSv1_2'), qr/^ok TLSv1\.2 ECDHE-(RSA|ECDSA)-(AES\d+-GCM-SHA\d+|CHACHA20-POLY1305)$/,
	'TLS 1.2 is accepted, with a forward-secret AEAD cipher');
like(tls_probe('TLSv1_3'), qr/^ok TLSv1\.3 TLS_/, 'TLS 1.3 is accepted');
like(tls_probe('TLSv1_2', 'AES128-SHA:AES256-GCM-SHA384'), qr/^refused/,
	'TLS 1.2 without forward secrecy is refused');
like(tls_probe('TLSv1_2', 'ECDHE-RSA-AES128-SHA:ECDHE-RSA-AES256-SHA384'), qr/^refused/,
	'TLS 1.2 with CBC ciphers is refused');

my ($out, $err) = ('', '');
run([ emitter_path(), '--url', "wss://127.0.0.1:$port/ingest", '--token', $token,
		'--cafile', $ca, '--stream', 'tls', '--count', '2000', '--batch', '10',
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
