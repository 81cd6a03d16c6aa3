# AlertReceivers.pm — start the loopback receivers of test/receivers/ from
# logagg's TAP tests (test/t/2xx_*.pl) and read what they recorded.
#
#   my $r = AlertReceivers::http_receiver($node);   # {port, control_port, url, out}
#   my $v = AlertReceivers::http_receiver($node, undef, verify_secret => 's');
#   AlertReceivers::control($r, 'fail?n=3');
#   my @reqs = AlertReceivers::records($r);          # decoded JSON lines
#   my $m = AlertReceivers::smtp_receiver($node, auth => 'u:p');
package AlertReceivers;

use strict;
use warnings;
use HTTP::Tiny;
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Time::HiRes qw(usleep time);

my @procs;
my $seq = 0;

# tmp_check is shared by every test file of one prove run: give each test
# process its own folder, so receivers never see another file's records or
# stale ready files.
sub _dir
{
	my $d = "$PostgreSQL::Test::Utils::tmp_check/receivers-$$";
	mkdir $d unless -d $d;
	return $d;
}

sub _start
{
	my ($name, $cmd, $ready) = @_;
	my ($out, $err) = ('', '');
	my $log = _dir() . "/$name.log";
	unlink $ready;
	my $h = IPC::Run::start($cmd, '>', $log, '2>&1');
	push @procs, $h;
	my $deadline = time() + 20;
	while (!-e $ready)
	{
		die "$name did not start (see $log)" if time() > $deadline || !$h->pumpable;
		usleep(50_000);
	}
	return $h;
}

# An HTTP receiver on free loopback ports.
sub http_receiver
{
	my ($node, $name, %opt) = @_;
	$name //= 'http_receiver' . ++$seq;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $cport = PostgreSQL::Test::Cluster::get_free_port();
	my $out = _dir() . "/$name.jsonl";
	my $ready = _dir() . "/$name.ready";
	my $src = $ENV{LOGAGG_SRC} // '.';
	my $h = _start($name,
		[ '/usr/bin/python3', "$src/test/receivers/http_receiver.py",
		  '--port', $port, '--control-port', $cport, '--out', $out,
		  '--ready-file', $ready,
		  ($opt{verify_secret} ? ('--verify-secret', $opt{verify_secret}) : ()) ], $ready);
	return { name => $name, port => $port, control_port => $cport,
		url => "http://127.0.0.1:$port", out => $out, handle => $h };
}

sub smtp_receiver
{
	my ($node, %opt) = @_;
	my $name = 'smtp_receiver' . ++$seq;
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my $out = _dir() . "/$name.jsonl";
	my $ready = _dir() . "/$name.ready";
	my $src = $ENV{LOGAGG_SRC} // '.';
	my @cmd = ('/usr/bin/python3', "$src/test/receivers/smtp_receiver.py",
		'--port', $port, '--out', $out, '--ready-file', $ready);
	push @cmd, '--auth', $opt{auth} if $opt{auth};
	my $h = _start($name, \@cmd, $ready);
	return { name => $name, port => $port, url => "smtp://127.0.0.1:$port",
		out => $out, handle => $h };
}

# control($r, 'fail?n=3') -> decoded stats
sub control
{
	my ($r, $cmd) = @_;
	my $res = HTTP::Tiny->new(timeout => 10)
	  ->get("http://127.0.0.1:$r->{control_port}/$cmd");
	die "receiver control $cmd failed: $res->{status} $res->{content}"
	  unless $res->{success};
	return decode_json($res->{content});
}

sub records
{
	my ($r) = @_;
	my @recs;
	open(my $fh, '<', $r->{out}) or return ();
	while (my $line = <$fh>)
	{
		next unless $line =~ /\}\s*$/;	# a line still being written
		push @recs, decode_json($line);
	}
	close $fh;
	return @recs;
}

# wait until CODE->(@records) is true; returns the records
sub wait_records
{
	my ($r, $code, $timeout) = @_;
	$timeout //= 60;
	my $deadline = time() + $timeout;
	my @recs;
	while (time() < $deadline)
	{
		@recs = records($r);
		return @recs if $code->(@recs);
		usleep(50_000);
	}
	return @recs;
}

sub stop_all
{
	for my $h (@procs)
	{
		eval { $h->signal('TERM'); $h->finish; };
	}
	@procs = ();
}

END { local $?; stop_all(); }

1;
