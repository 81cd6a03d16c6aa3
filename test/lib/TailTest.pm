# TailTest.pm — helpers for the TAP tests of the live tail and its command
# line client, logagg-tail (test/t/63*.pl).
#
# start_reader_node() gives a started node with the reader worker on a free
# port; start_tail() runs the real logagg-tail binary in the background and
# tail_wait() polls its output (never a bare sleep).
package TailTest;

use strict;
use warnings;
use Exporter 'import';
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run ();
use HTTP::Tiny;
use LogaggTest;

our @EXPORT = qw(tail_path start_reader_node reader_token start_tail tail_wait tail_stop tail_status
  post_records reader_pid);

sub tail_path
{
	my $p = src_dir() . '/tools/logagg-tail';
	return -x $p ? $p : 'logagg-tail';
}

# start_reader_node(NAME, EXTRA) -> a started node (new_node: the ingest
# and reader workers on free loopback ports, $node->{reader_port}), no
# dispatchers, no window on ts.
sub start_reader_node
{
	my ($name, $extra) = @_;
	my $node = new_node($name, qq{
logagg.dispatch_workers = 0
logagg.max_ts_past = -1
} . ($extra // ''));
	start_with_extension($node);
	return $node;
}

# reader_token($node, NAME, SOURCES) -> a new reader token, once the
# reader worker accepts it (GET /api/whoami): the worker reloads its token
# cache at most every 100 ms, so a token used at once can still be refused.
sub reader_token
{
	my ($node, $name, $sources) = @_;
	my $token = $node->safe_psql('postgres',
		"SELECT logagg.create_reader_token('$name', '" . ($sources // '*') . "')");
	my $http = HTTP::Tiny->new(timeout => 10);
	poll_until(
		sub {
			$http->get("http://127.0.0.1:$node->{reader_port}/api/whoami",
				{ headers => { Authorization => "Bearer $token" } })->{status} == 200;
		},
		30) or die "the reader worker does not accept the new token $name";
	return $token;
}

# start_tail($node, { env => {...} }, ARGS...) -> a handle: logagg-tail
# against the node's reader port, its stdout in $h->{out} and stderr in
# $h->{err} (pumped by tail_wait).  The token is passed in LOGAGG_TOKEN
# unless ARGS hold one.
sub start_tail
{
	my ($node, $opt, @args) = @_;
	my %h = (out => '', err => '');
	local %ENV = %ENV;
	delete $ENV{LOGAGG_TOKEN};
	$ENV{$_} = $opt->{env}{$_} for keys %{ $opt->{env} // {} };
	$h{run} = IPC::Run::start(
		[ tail_path(), '--port', $node->{reader_port}, @args ],
		'<', \undef, '>', \$h{out}, '2>', \$h{err},
		IPC::Run::timeout(120));
	return \%h;
}

# tail_wait($h, CODE, timeout) -> true once CODE($out, $err) is true;
# false when it is not within timeout seconds or the process ended first.
sub tail_wait
{
	my ($h, $code, $timeout) = @_;
	return poll_until(
		sub {
			$h->{run}->pump_nb if $h->{run}->pumpable;
			return 1 if $code->($h->{out}, $h->{err});
			return 0;
		},
		$timeout // 30);
}

# tail_stop($h, SIGNAL) -> exit status after SIGNAL (default INT), or
# "signal N" when the process died of one.
sub tail_stop
{
	my ($h, $signal) = @_;
	$h->{run}->signal($signal // 'INT') if $h->{run}->pumpable;
	return tail_status($h);
}

# tail_status($h) -> exit status once the process ended (see tail_stop).
sub tail_status
{
	my ($h) = @_;
	$h->{run}->finish;
	my $w = $h->{run}->full_result(0);
	return ($w & 127) ? 'signal ' . ($w & 127) : $w >> 8;
}

# post_records($node, TOKEN, RECORD_JSON...) -> the reply body; dies
# unless the ingest worker accepted every record (the reply comes after
# COMMIT).
sub post_records
{
	my ($node, $token, @records) = @_;
	my $res = HTTP::Tiny->new(timeout => 30)->post(
		"http://127.0.0.1:$node->{logagg_port}/ingest",
		{ headers => { Authorization => "Bearer $token" },
		  content => join('', map { "$_\n" } @records) });
	my $n = scalar @records;
	die "POST /ingest: $res->{status} $res->{content}"
	  unless $res->{status} == 200 && $res->{content} =~ /"accepted": $n, "rejected": 0/;
	return $res->{content};
}

# The reader worker's pid ('' while it is not running).
sub reader_pid
{
	my ($node) = @_;
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'logagg reader'");
}

1;
