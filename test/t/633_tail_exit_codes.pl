# 633_tail_exit_codes.pl -- logagg-tail's exit status and messages: a
# refused token (wrong, revoked, or revoked while following) ends it with
# 3 and "token refused" instead of retrying; usage errors and requests
# the server rejects (an invalid regex) with 2; SIGINT with 0.  A token
# given in LOGAGG_TOKEN is not on the command line; --tls verifies the
# server with --cafile; a port without /tail (404) is a usage error.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run qw(run timeout);
use HTTP::Tiny;
use LogaggTest;
use TailTest;

my $node = start_reader_node('tail_exit');
sub sql { return $node->safe_psql('postgres', $_[0]); }
my $reader = reader_token($node, 'cli', '*');
my $port = $node->{reader_port};

# run logagg-tail to its end: (exit status, stdout, stderr)
sub tail_run
{
	my ($env, @args) = @_;
	my ($out, $err) = ('', '');
	local %ENV = %ENV;
	delete $ENV{LOGAGG_TOKEN};
	$ENV{$_} = $env->{$_} for keys %$env;
	run([ tail_path(), '--port', $port, @args ], '<', \undef, '>', \$out, '2>', \$err, timeout(60));
	return ($? >> 8, $out, $err);
}

# ---- refused tokens ----
my ($rc, $out, $err) = tail_run({}, '--token', 'lgr_' . ('0' x 64));
is($rc, 3, 'a wrong token: exit status 3');
like($err, qr/token refused \(HTTP 401\)/, '... with "token refused"');
($rc, $out, $err) = tail_run({ LOGAGG_TOKEN => 'nonsense' });
is($rc, 3, 'a wrong token in LOGAGG_TOKEN: exit status 3');
my $revoked = reader_token($node, 'gone', '*');
sql("SELECT logagg.revoke_reader_token('gone')");
my $http = HTTP::Tiny->new(timeout => 10);
ok(poll_until(sub { $http->get("http://127.0.0.1:$port/api/whoami",
		{ headers => { Authorization => "Bearer $revoked" } })->{status} == 401 }),
	'the reader worker refuses the revoked token');
($rc, $out, $err) = tail_run({ LOGAGG_TOKEN => $revoked });
is($rc, 3, 'a revoked token: exit status 3');
like($err, qr/token refused/, '... with "token refused"');

# ---- a token revoked while the tail runs: the server ends the tail, the
# reconnect is refused, so the CLI stops with 3 instead of retrying ----
my $later = reader_token($node, 'later', '*');
my $t = start_tail($node, { env => { LOGAGG_TOKEN => $later } }, '--verbose');
ok(tail_wait($t, sub { $_[1] =~ /logagg-tail: connected/ }), 'connected before the revocation')
  or diag($t->{err});
sql("SELECT logagg.revoke_reader_token('later')");
ok(tail_wait($t, sub { !$t->{run}->pumpable }, 30), 'revoked while following: the CLI ends')
  or diag($t->{err});
is(tail_status($t), 3, '... with exit status 3');
like($t->{err}, qr/server error: token revoked.*token refused \(HTTP 401\)/s,
	'... after printing the server\'s error and "token refused"');

# ---- usage errors ----
for my $case (
	[ 'no token', [] ],
	[ 'bad severity', [ '--token', 'x', '--min-severity', 'urgent' ] ],
	[ 'since out of range', [ '--token', 'x', '--since', '10001' ] ],
	[ 'attrs not an object', [ '--token', 'x', '--attrs', '["env"]' ] ],
	[ 'attrs not JSON', [ '--token', 'x', '--attrs', '{env:1}' ] ],
	[ 'bad colour', [ '--token', 'x', '--color', 'sometimes' ] ],
	[ 'unknown flag', [ '--token', 'x', '--follow' ] ],
	[ 'stray argument', [ '--token', 'x', 'svc-a' ] ],
	[ 'bad port', [ '--token', 'x', '--port', '70000' ] ])
{
	my ($name, $args) = @$case;
	($rc, $out, $err) = tail_run({}, @$args);
	is($rc, 2, "usage error ($name): exit status 2");
	like($err, qr/logagg-tail: /, "usage error ($name): says why") if $name ne 'unknown flag';
}
($rc, $out, $err) = tail_run({}, '--help');
is($rc, 0, '--help: exit status 0');
like($out, qr/--min-severity/, '--help lists the flags');

# ---- the server rejects an invalid regex before the upgrade ----
($rc, $out, $err) = tail_run({ LOGAGG_TOKEN => $reader }, '-q', 'broken(');
is($rc, 2, 'an invalid regex (HTTP 400): exit status 2');
like($err, qr/rejected the request \(HTTP 400\)/, '... saying the server rejected the request');

# ---- interrupted: 0; the token from LOGAGG_TOKEN is not in argv ----
$t = start_tail($node, { env => { LOGAGG_TOKEN => $reader } }, '--verbose');
ok(tail_wait($t, sub { $_[1] =~ /logagg-tail: connected/ }), 'connected with the token from LOGAGG_TOKEN')
  or diag($t->{err});
my ($pid) = $t->{run}{KIDS}[0]{PID};
my $cmdline = slurp_file("/proc/$pid/cmdline");
unlike($cmdline, qr/\Q$reader\E/, 'the token is not on the command line (ps)');
is(tail_stop($t, 'INT'), 0, 'SIGINT: exit status 0');

# ---- --tls: a verifying TLS connection; the ingest port has no /tail ----
my $tls = new_node('tail_tls', "logagg.dispatch_workers = 0\n"
	  . "logagg.tls_cert_file = 'server.crt'\nlogagg.tls_key_file = 'server.key'\n");
my $ca = self_signed_cert($tls);
start_with_extension($tls);
$port = $tls->{logagg_port};
($rc, $out, $err) = tail_run({ LOGAGG_TOKEN => $reader }, '--tls', '--cafile', $ca);
is($rc, 2, '--tls to the TLS ingest port: exit status 2');
like($err, qr/has no \/tail \(HTTP 404\)/, '... the TLS handshake succeeded, and the CLI says the port has no /tail');
($rc, $out, $err) = tail_run({ LOGAGG_TOKEN => $reader }, '--insecure');
is($rc, 2, '--insecure without --tls: usage error');

done_testing();
