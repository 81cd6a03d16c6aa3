# 631_tail_filters.pl -- logagg-tail's filter flags (--source,
# --min-severity, --grep, --attrs, --since, and the reader token's own
# source pattern) print exactly the records that the equivalent SQL on
# logagg.logs selects, in commit order.  Each tail is told when it has
# seen everything by a last "marker" record that matches its filters:
# records arrive in commit order, so nothing can come after it.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use LogaggTest;
use TailTest;

my $node = start_reader_node('tail_filters');
sub sql { return $node->safe_psql('postgres', $_[0]); }

my %src = map { $_ => sql("SELECT logagg.create_source('$_')") } qw(svc-a svc-b api);
my $all = reader_token($node, 'all', '*');
my $only_a = reader_token($node, 'only-a', 'svc-a*');

# name => [token, flags, SQL condition equivalent to the filters]
my %cases = (
	source => [ $all, [ '--source', 'svc-b' ], q{source = 'svc-b'} ],
	pattern => [ $all, [ '--source', 'svc-*' ], q{source LIKE 'svc-%'} ],
	severity => [ $all, [ '--min-severity', 'high' ], q{severity IN ('critical', 'high')} ],
	grep => [ $all, [ '-q', 'disk (full|fail)' ], q{message ~ 'disk (full|fail)'} ],
	grep_i => [ $all, [ '--grep', '(?i)TIMEOUT' ], q{message ~* 'timeout'} ],
	attrs => [ $all, [ '--attrs', '{"env":"prod"}' ], q{attrs @> '{"env":"prod"}'} ],
	combined => [ $all, [ '--source', 'svc-*', '--min-severity', 'critical', '-q', 'full', '--attrs', '{"env":"prod","zone":{"id":2}}' ],
		q{source LIKE 'svc-%' AND severity = 'critical' AND message ~ 'full' AND attrs @> '{"env":"prod","zone":{"id":2}}'} ],
	token => [ $only_a, [], q{source LIKE 'svc-a%'} ],
);

my %tails;
for my $name (sort keys %cases)
{
	my ($token, $flags) = @{ $cases{$name} };
	$tails{$name} = start_tail($node, { env => { LOGAGG_TOKEN => $token } }, '--json', '--verbose', @$flags);
}
for my $name (sort keys %cases)
{
	ok(tail_wait($tails{$name}, sub { $_[1] =~ /logagg-tail: connected/ }), "$name: connected")
	  or diag($tails{$name}{err});
}

# A mix over sources, statuses, messages and attrs; the marker posted last
# (from svc-a, then one from svc-b for the tails that only see svc-b)
# matches every filter.
# (fields other than the known ones are stored in attrs)
my @mix = (
	[ 'svc-a', { message => 'disk full on /var', status => 500, env => 'prod', zone => { id => 2 } } ],
	[ 'svc-a', { message => 'all good', status => 200, env => 'prod' } ],
	[ 'svc-b', { message => 'upstream Timeout after 3s', status => 504, env => 'dev' } ],
	[ 'svc-b', { message => 'disk failing soon', level => 'warn' } ],
	[ 'api', { message => 'disk full elsewhere', status => 503, env => 'prod', zone => { id => 2 } } ],
	[ 'svc-b', { message => 'not found', status => 404, env => 'prod', zone => { id => 3 } } ],
	[ 'svc-a', { message => 'timeout talking to db', level => 'error', env => 'prod' } ],
	[ 'svc-b', { message => 'disk full (svc-b)', status => 502, env => 'prod', zone => { id => 2 }, extra => 1 } ],
);
for my $r (@mix)
{
	post_records($node, $src{ $r->[0] }, encode_json($r->[1]));
}
my %marker = (message => 'marker disk full timeout', status => 500, env => 'prod', zone => { id => 2 });
post_records($node, $src{'svc-b'}, encode_json({ %marker, message => 'marker-b disk full timeout' }));
post_records($node, $src{'svc-a'}, encode_json({ %marker, message => 'marker-a disk full timeout' }));

for my $name (sort keys %cases)
{
	my ($token, $flags, $cond) = @{ $cases{$name} };
	my $t = $tails{$name};
	my $last = sql("SELECT message FROM logagg.logs WHERE message LIKE 'marker%' AND ($cond) ORDER BY id DESC LIMIT 1");
	ok(tail_wait($t, sub { $_[0] =~ /"\Q$last\E"/ }), "$name: the marker ($last) arrives")
	  or diag("out: $t->{out}\nerr: $t->{err}");
	ok(sql("SELECT count(*) FROM logagg.logs WHERE $cond") > 0, "$name: some records match");
	my @got = map { decode_json($_)->{message} } split /\n/, $t->{out};
	my $want = sql("SELECT string_agg(message, '|' ORDER BY id) FROM logagg.logs WHERE $cond");
	is(join('|', @got), $want, "$name (@$flags): exactly the records SQL selects, in commit order");
	is(tail_stop($t), 0, "$name: exit status 0");
}
is(scalar(() = $tails{token}{out} =~ /"source"\s*:\s*"svc-b"/g), 0, 'a token for svc-a* never shows svc-b');

# ---- --since N with filters: the last N matching records, oldest first ----
my $t = start_tail($node, { env => { LOGAGG_TOKEN => $all } }, '--json', '--since', '3',
	'--min-severity', 'critical', '--count', '3');
ok(tail_wait($t, sub { !$t->{run}->pumpable }, 30), '--since 3 --count 3 ends') or diag($t->{err});
is(tail_status($t), 0, 'exit status 0');
is(join('|', map { decode_json($_)->{message} } split /\n/, $t->{out}),
	sql(q{SELECT string_agg(message, '|' ORDER BY id) FROM
	      (SELECT id, message FROM logagg.logs WHERE severity = 'critical' ORDER BY id DESC LIMIT 3) s}),
	'--since 3 --min-severity critical: the last three critical records, oldest first');

done_testing();
