# 632_tail_reconnect.pl -- logagg-tail keeps following across outages:
# when the reader worker is terminated (the postmaster starts it again)
# and when the whole server restarts, it reconnects with backoff, prints
# the records committed while it was away (the replay it asks for), and
# prints none twice.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use LogaggTest;
use TailTest;

my $node = start_reader_node('tail_reconnect');
sub sql { return $node->safe_psql('postgres', $_[0]); }

my $src = sql("SELECT logagg.create_source('svc-a')");
my $reader = reader_token($node, 'cli', '*');
sub post { post_records($node, $src, map { encode_json({ message => $_ }) } @_); }
sub count_of
{
	my ($h, $m) = @_;
	return scalar(grep { $_->{message} eq $m } map { decode_json($_) } split /\n/, $h->{out});
}

my $t = start_tail($node, { env => { LOGAGG_TOKEN => $reader } }, '--json', '--verbose');
ok(tail_wait($t, sub { $_[1] =~ /logagg-tail: connected/ }), 'connected') or diag($t->{err});
post('before 1', 'before 2');
ok(tail_wait($t, sub { $_[0] =~ /"before 2"/ }), 'live records arrive') or diag($t->{err});

# ---- the reader worker is terminated ----
my $pid = reader_pid($node);
ok($pid =~ /^\d+$/, 'the reader worker runs');
sql("SELECT pg_terminate_backend($pid)");
ok(tail_wait($t, sub { $_[1] =~ /connection lost/ }), 'the CLI notices the connection is gone')
  or diag($t->{err});
# committed while no reader runs: must come with the replay after the reconnect
post('during outage 1', 'during outage 2');
ok(poll_until(sub { my $p = reader_pid($node); $p ne '' && $p ne $pid }, 60), 'the reader worker is started again');
ok(tail_wait($t, sub { $_[1] =~ /connected to 127\.0\.0\.1/ }, 60), 'the CLI reconnects')
  or diag($t->{err});
post('after reconnect');
ok(tail_wait($t, sub { $_[0] =~ /after reconnect/ }), 'live records arrive again') or diag($t->{err});
for my $m ('before 1', 'before 2', 'during outage 1', 'during outage 2', 'after reconnect')
{
	is(count_of($t, $m), 1, "\"$m\" printed exactly once") or diag("out: $t->{out}\nerr: $t->{err}");
}
my @ids = map { decode_json($_)->{id} } split /\n/, $t->{out};
is(join(',', @ids), join(',', sort { $a <=> $b } @ids), 'in commit order');

# ---- the whole server restarts ----
$t->{err} = '';
$node->stop('fast');
ok(tail_wait($t, sub { $_[1] =~ /connection lost|cannot connect/ }), 'server down: noticed') or diag($t->{err});
$node->start;
wait_workers_ready($node);
ok(tail_wait($t, sub { $_[1] =~ /connected to 127\.0\.0\.1/ }, 60), 'server back: the CLI reconnects')
  or diag($t->{err});
post('after restart');
ok(tail_wait($t, sub { $_[0] =~ /after restart/ }), 'and prints what is committed after the restart')
  or diag($t->{err});
is(count_of($t, 'after reconnect'), 1, 'nothing printed twice across the restart');
is(scalar(split /\n/, $t->{out}), 6, 'six records in all');
is(tail_stop($t, 'TERM'), 0, 'SIGTERM: exit status 0');

done_testing();
