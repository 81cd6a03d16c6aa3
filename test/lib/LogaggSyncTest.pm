# LogaggSyncTest.pm -- helpers for logagg's cloud-sync TAP tests (test/t/3xx).
#
# start_s3() runs a real S3-compatible server (npm s3rver, pinned in
# test/package.json) on a free loopback port, and in front of it the
# SigV4-verifying proxy test/receivers/s3_sigv4_proxy.py, which checks every
# request's signature and x-amz-content-sha256 before forwarding it.  The
# extension is pointed at the proxy; tests read objects back from s3rver
# directly (it accepts anonymous reads).
package LogaggSyncTest;

use strict;
use warnings;
use Exporter 'import';
use Compress::Zlib ();
use HTTP::Tiny;
use IO::Uncompress::Gunzip qw(gunzip $GunzipError);
use File::Find ();
use IPC::Run ();
use LogaggTest;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep time);

our @EXPORT = qw(start_s3 stop_s3 s3_list s3_get gunzip_bytes s3_keyenc
  proxy_log_lines set_proxy_mode sync_conf start_sync_node file_sync_node files_under);

our $ACCESS_KEY = 'S3RVER';		# s3rver's built-in credentials: it checks them too
our $SECRET_KEY = 'S3RVER';

sub _wait_port
{
	my ($port) = @_;
	my $deadline = time() + 30;
	while (time() < $deadline)
	{
		my $r = HTTP::Tiny->new(timeout => 2)->get("http://127.0.0.1:$port/");
		return 1 if $r->{status} != 599;
		usleep(100_000);
	}
	die "nothing answers on 127.0.0.1:$port";
}

my @started;					# every start_s3() result, for the END block

# start_s3(NAME, BUCKET) -> hashref {s3_port, proxy_port, endpoint, log, mode_file, ...}
sub start_s3
{
	my ($name, $bucket) = @_;
	my $src = $ENV{LOGAGG_SRC} // '.';
	my $dir = "$PostgreSQL::Test::Utils::tmp_check/s3_$name";
	mkdir $dir;
	my %s3 = (dir => $dir, bucket => $bucket);
	$s3{s3_port} = PostgreSQL::Test::Cluster::get_free_port();
	$s3{proxy_port} = PostgreSQL::Test::Cluster::get_free_port();
	$s3{log} = "$dir/proxy.log";
	$s3{mode_file} = "$dir/mode";
	open(my $fh, '>', $s3{log}) or die;
	close $fh;
	set_proxy_mode(\%s3, 'ok');

	my $s3rver = "$src/test/node_modules/.bin/s3rver";
	die "s3rver not installed: run npm ci in test/" unless -x $s3rver;
	$s3{s3rver} = IPC::Run::start(
		[ 'node', $s3rver, '-d', "$dir/data", '-a', '127.0.0.1', '-p', $s3{s3_port}, '-s',
		  '--configure-bucket', $bucket ],
		'<', \undef, '>', "$dir/s3rver.out", '2>&1');
	_wait_port($s3{s3_port});
	$s3{proxy} = IPC::Run::start(
		[ '/usr/bin/python3', "$src/test/receivers/s3_sigv4_proxy.py",
		  '--port', $s3{proxy_port}, '--upstream', "127.0.0.1:$s3{s3_port}",
		  '--access-key', $ACCESS_KEY, '--secret-key', $SECRET_KEY,
		  '--log', $s3{log}, '--mode-file', $s3{mode_file} ],
		'<', \undef, '>', "$dir/proxy.out", '2>&1');
	_wait_port($s3{proxy_port});
	# the probes above are unsigned: forget them
	open($fh, '>', $s3{log}) or die;
	close $fh;
	$s3{endpoint} = "http://127.0.0.1:$s3{proxy_port}";
	push @started, \%s3;
	return \%s3;
}

sub stop_s3
{
	my ($s3) = @_;
	for my $h (grep { defined } @{$s3}{qw(proxy s3rver)})
	{
		next unless $h->pumpable;
		$h->signal('TERM');
		eval { $h->finish; };
	}
}

# A test that dies half-way never reaches its stop_s3(): stop what is
# still running when the test process exits, as AlertReceivers.pm does.
END { local $?; stop_s3($_) for @started; }

# postgresql.conf lines pointing sync at the proxy
sub sync_conf
{
	my ($s3, $prefix) = @_;
	return qq{
logagg.sync_url = 's3://$s3->{bucket}/$prefix'
logagg.s3_endpoint = '$s3->{endpoint}'
logagg.s3_region = 'us-east-1'
logagg.s3_access_key_id = '$ACCESS_KEY'
logagg.s3_secret_access_key = '$SECRET_KEY'
};
}

# start_sync_node(NAME, TARGET postgresql.conf, EXTRA postgresql.conf) ->
# started node syncing to TARGET (sync_conf() or a file:// logagg.sync_url):
# hourly partitions, no grace (a closed hour is synced at once), plus EXTRA
# (logagg.sync_interval and whatever else the test needs).
sub start_sync_node
{
	my ($name, $target, $extra) = @_;
	my $node = new_node($name, $target . q{
logagg.partition_interval = '1h'
logagg.sync_grace = 0
} . ($extra // ''));
	return start_with_extension($node);
}

# file_sync_node(NAME, DIR, EXTRA): start_sync_node() to file://DIR.
sub file_sync_node
{
	my ($name, $dir, $extra) = @_;
	return start_sync_node($name, qq{
logagg.sync_url = 'file://$dir'
}, $extra);
}

# files_under(DIR): the files below DIR, as sorted paths relative to it.
sub files_under
{
	my ($dir) = @_;
	my @f;
	return () unless -d $dir;
	File::Find::find({ wanted => sub { push @f, substr($File::Find::name, length($dir) + 1) if -f $_ },
			no_chdir => 1 }, $dir);
	return sort @f;
}

sub set_proxy_mode
{
	my ($s3, $mode) = @_;
	open(my $fh, '>', $s3->{mode_file}) or die;
	print $fh $mode;
	close $fh;
}

sub proxy_log_lines
{
	my ($s3) = @_;
	open(my $fh, '<', $s3->{log}) or return ();
	my @l = <$fh>;
	close $fh;
	chomp @l;
	return @l;
}

# RFC 3986 encoding of a key, "/" kept (what a client must put in the path)
sub s3_keyenc
{
	my ($k) = @_;
	$k =~ s/([^A-Za-z0-9\-._~\/])/sprintf('%%%02X', ord($1))/ge;
	return $k;
}

# every key under PREFIX, straight from s3rver
sub s3_list
{
	my ($s3, $prefix) = @_;
	my @keys;
	my $token;
	for (1 .. 100)
	{
		my $url = "http://127.0.0.1:$s3->{s3_port}/$s3->{bucket}?list-type=2&prefix="
		  . s3_keyenc($prefix)
		  . (defined $token ? '&continuation-token=' . s3_keyenc($token) : '');
		my $r = HTTP::Tiny->new(timeout => 30)->get($url);
		die "list failed: $r->{status} $r->{content}" unless $r->{success};
		while ($r->{content} =~ m{<Key>([^<]*)</Key>}g)
		{
			my $k = $1;
			$k =~ s/&amp;/&/g; $k =~ s/&lt;/</g; $k =~ s/&gt;/>/g; $k =~ s/&quot;/"/g; $k =~ s/&apos;/'/g;
			push @keys, $k;
		}
		last unless $r->{content} =~ m{<IsTruncated>true</IsTruncated>};
		($token) = $r->{content} =~ m{<NextContinuationToken>([^<]*)</NextContinuationToken>};
	}
	@keys = sort @keys;
	return wantarray ? @keys : scalar(@keys);
}

sub s3_get
{
	my ($s3, $key) = @_;
	my $r = HTTP::Tiny->new(timeout => 60)
	  ->get("http://127.0.0.1:$s3->{s3_port}/$s3->{bucket}/" . s3_keyenc($key));
	die "GET $key failed: $r->{status}" unless $r->{success};
	return $r->{content};
}

# gzip bytes -> list of NDJSON lines
sub gunzip_bytes
{
	my ($gz) = @_;
	my $out;
	gunzip(\$gz => \$out, MultiStream => 1) or die "gunzip failed: $GunzipError";
	my @lines = split /\n/, $out;
	return @lines;
}

1;
