# LogaggTest.pm — helpers shared by logagg's TAP tests (test/t/*.pl).
#
# new_node() gives a PostgreSQL::Test::Cluster with logagg preloaded on its
# own free ports (PostgreSQL, the ingest and the reader listeners), ready
# to start.
package LogaggTest;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use IPC::Run ();

our @EXPORT = qw(new_node start_with_extension wait_workers_ready src_dir self_signed_cert
  permissive_openssl_conf
  poll_until emitter_path ws_probe start_ingest_node
  clear_of_hour_boundary clear_of_day_boundary);

sub src_dir { return $ENV{LOGAGG_SRC} // '.'; }

sub emitter_path
{
	my $p = src_dir() . '/emitters/logagg-emit';
	return -x $p ? $p : 'logagg-emit';
}

# new_node(NAME, extra postgresql.conf text, init options) -> node;
# $node->{logagg_port}.  Init options go to PostgreSQL::Test::Cluster::init
# (e.g. allows_streaming => 1); $node->{reader_port} is the reader's.
sub new_node
{
	my ($name, $extra, %init) = @_;
	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%init);
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $rport = PostgreSQL::Test::Cluster::get_free_port();
	$node->append_conf('postgresql.conf', qq{
shared_preload_libraries = 'logagg'
logagg.database = 'postgres'
logagg.listen_address = '127.0.0.1'
logagg.port = $port
logagg.reader_port = $rport
logagg.dispatch_workers = 2
max_worker_processes = 16
log_min_messages = info
restart_after_crash = on
});
	$node->append_conf('postgresql.conf', $extra) if defined $extra;
	$node->{logagg_port} = $port;
	$node->{reader_port} = $rport;
	return $node;
}

sub start_with_extension
{
	my ($node) = @_;
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION logagg');
	wait_workers_ready($node);
	return $node;
}

# Wait until every logagg worker has found the extension.
sub wait_workers_ready
{
	my ($node) = @_;
	$node->poll_query_until('postgres',
		"SELECT count(*) > 0 AND bool_and(ready) FROM logagg.status()")
	  or die "logagg workers did not become ready";
}

# start_ingest_node(NAME, SOURCE, EXTRA postgresql.conf) -> ($node, $base,
# $token): a started node for the ingest worker's end-to-end tests.  No
# dispatch workers (queued alerts stay in alert_queue to be inspected), no
# window on ts (the records carry fixed dates; 163_ingest_ts_window.pl
# tests the window), four connections at most (a test can reach the
# limit), plus EXTRA.  $base is the listener's ws:// URL, $token that of a
# new source named SOURCE.
sub start_ingest_node
{
	my ($name, $source, $extra) = @_;
	my $node = new_node($name, qq{
logagg.dispatch_workers = 0
logagg.max_ts_past = -1
logagg.max_connections = 4
} . ($extra // ''));
	start_with_extension($node);
	my $base = "ws://127.0.0.1:$node->{logagg_port}";
	my $token = $node->safe_psql('postgres', "SELECT logagg.create_source('$source')");
	return ($node, $base, $token);
}

# ws_probe(BASE URL, STEPS...): run test/clients/ws_probe.py against
# BASE (ws://host:port) with the given steps; returns what it printed.
sub ws_probe
{
	my ($base, @steps) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ '/usr/bin/python3', src_dir() . '/test/clients/ws_probe.py', $base, @steps ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(60));
	diag("ws_probe stderr: $err") if $err ne '';
	return $out;
}

# self_signed_cert($node) -> path of a new self-signed certificate for
# 127.0.0.1 in the node's data directory, with its key server.key next to
# it (for logagg.tls_cert_file = 'server.crt', tls_key_file = 'server.key');
# a verifying client uses the certificate as its CA file.
sub self_signed_cert
{
	my ($node) = @_;
	my $dir = $node->data_dir;
	my ($o, $e) = ('', '');
	IPC::Run::run([ 'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
			'-keyout', "$dir/server.key", '-out', "$dir/server.crt",
			'-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1' ],
		'>', \$o, '2>', \$e, IPC::Run::timeout(60))
	  or die "openssl failed: $e";
	chmod 0600, "$dir/server.key";
	return "$dir/server.crt";
}

# permissive_openssl_conf(): points OPENSSL_CONF (for the server started
# after it and for probing clients) to a configuration that allows TLS 1.0
# and weak ciphers, so that what a test sees refused is refused by logagg's
# own settings.
sub permissive_openssl_conf
{
	my $path = PostgreSQL::Test::Utils::tempdir() . '/openssl-permissive.cnf';
	open(my $fh, '>', $path) or die "$path: $!";
	print $fh <<'EOF';
openssl_conf = openssl_init
[openssl_init]
ssl_conf = ssl_sect
[ssl_sect]
system_default = system_default_sect
[system_default_sect]
MinProtocol = TLSv1
CipherString = DEFAULT@SECLEVEL=0
EOF
	close $fh;
	$ENV{OPENSSL_CONF} = $path;
	return $path;
}

# poll_until(CODE, timeout seconds): call CODE every 50 ms until it returns true.
sub poll_until
{
	my ($code, $timeout) = @_;
	$timeout //= 60;
	my $deadline = time() + $timeout;
	while (time() < $deadline)
	{
		return 1 if $code->();
		usleep(50_000);
	}
	return 0;
}

# clear_of_hour_boundary(SECONDS), clear_of_day_boundary(SECONDS): tests
# that reason about closed and open hourly windows, or about which days
# have partitions (date_trunc(...) over several statements), must not see
# the hour or the UTC day turn half-way; when fewer than SECONDS are left,
# wait for the next hour or day to begin.
sub clear_of_hour_boundary { _clear_of_boundary(3600, @_); }
sub clear_of_day_boundary  { _clear_of_boundary(86400, @_); }

sub _clear_of_boundary
{
	my ($period, $need) = @_;
	my $left = $period - (int(time()) % $period);
	return if $left > $need;
	note("waiting ${left} s for the next period to begin, so that none ends during the test");
	usleep(($left + 1) * 1_000_000);
	return;
}

1;
