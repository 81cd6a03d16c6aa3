# 610_reader_tls.pl -- with logagg.tls_cert_file / tls_key_file set, the
# reader port speaks TLS like the ingest port: reader tokens and log text
# never cross the network in clear.  A verifying client (its CA file is
# the server's self-signed certificate) gets /api/whoami over https://,
# logagg-tail --tls receives a record posted over https:// as it is
# committed, plain http:// to the port gets no answer, and the listener
# refuses TLS 1.1 even where the system's OpenSSL configuration allows it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run timeout);
use LogaggTest;
use TailTest;

my $node = new_node('reader_tls', "logagg.dispatch_workers = 0\nlogagg.max_ts_past = -1\n"
	  . "logagg.tls_cert_file = 'server.crt'\nlogagg.tls_key_file = 'server.key'\n");
my $ca = self_signed_cert($node);
# what is refused below is refused by logagg's own settings
permissive_openssl_conf();

start_with_extension($node);
my ($wport, $rport) = ($node->{logagg_port}, $node->{reader_port});
sub sql { return $node->safe_psql('postgres', $_[0]); }

ok(poll_until(sub { $node->log_contains(qr{logagg reader: listening on https://127\.0\.0\.1:$rport/ \(console, /api, wss /tail\)}) }, 60),
	'the reader listens with TLS');

# curl(URL, ARGS...) -> (exit code, HTTP status, body)
sub curl
{
	my ($url, @args) = @_;
	my ($out, $err) = ('', '');
	run([ 'curl', '-s', '-o', '-', '-w', '\n%{http_code}', '--max-time', '10', @args, $url ],
		'>', \$out, '2>', \$err, timeout(30));
	my $rc = $? >> 8;
	my ($body, $code) = $out =~ /^(.*)\n(\d+)$/s ? ($1, $2) : ($out, 0);
	return ($rc, $code, $body);
}

my $reader = sql(q{SELECT logagg.create_reader_token('tls-reader', '*')});
ok( poll_until(
		sub { (curl("https://127.0.0.1:$rport/api/whoami", '--cacert', $ca, '-H', "Authorization: Bearer $reader"))[1] == 200 },
		30),
	'https:// with a verifying client: whoami answers 200');
my (undef, $code, $body) = curl("https://127.0.0.1:$rport/api/whoami", '--cacert', $ca, '-H', "Authorization: Bearer $reader");
is($body, '{"name": "tls-reader", "sources": "*"}', 'and names the token');

(my $rc, $code) = curl("http://127.0.0.1:$rport/api/whoami", '-H', "Authorization: Bearer $reader");
isnt($code, 200, 'plain http:// to the reader port gets no answer');

sub tls_probe
{
	my ($version) = @_;
	my ($o, $e) = ('', '');
	run([ '/usr/bin/python3', src_dir() . '/test/clients/tls_probe.py', '127.0.0.1', $rport, $version ],
		'>', \$o, '2>', \$e, timeout(30));
	return $o;
}
like(tls_probe('TLSv1_1'), qr/^refused/, 'TLS 1.1 is refused');
like(tls_probe('TLSv1_2'), qr/^ok TLSv1\.2 ECDHE-/, 'TLS 1.2 with a forward-secret cipher is agreed');

# the live tail over wss://, fed by a POST over https:// to the ingest port
my $src = sql(q{SELECT logagg.create_source('svc-tls')});
my $t = start_tail($node, { env => { LOGAGG_TOKEN => $reader } }, '--tls', '--cafile', $ca, '--verbose');
ok(tail_wait($t, sub { $_[1] =~ /logagg-tail: connected/ }), 'logagg-tail --tls connects with certificate checks')
  or diag($t->{err});
($rc, $code, $body) = curl("https://127.0.0.1:$wport/ingest", '--cacert', $ca,
	'-H', "Authorization: Bearer $src", '--data-binary', '{"message":"over tls","status":503}');
is($code, 200, 'a record POSTed over https:// is acked');
ok(tail_wait($t, sub { $_[0] =~ /svc-tls critical 503 over tls$/m }), 'and arrives on the wss:// tail')
  or diag("out: $t->{out}\nerr: $t->{err}");
is(tail_stop($t), 0, 'logagg-tail exits 0 on SIGINT');

my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$reader\E/, 'the reader token is not in the server log');
unlike($log, qr/terminated by signal/, 'no worker crashed');
$node->stop('fast');
done_testing();
