# 630_tail_cli.pl -- logagg-tail, the real binary against a real reader
# worker: records acked over /ingest are printed as they are committed
# (TS SOURCE SEVERITY [STATUS] MESSAGE), --json prints the server's
# records with every field equal to the stored row, --since replays,
# control characters in log text are escaped, colour follows severity.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use JSON::PP;
use IPC::Run ();
use LogaggTest;
use TailTest;

my $node = start_reader_node('tail_cli');
sub sql { return $node->safe_psql('postgres', $_[0]); }

my $src = sql("SELECT logagg.create_source('svc-a')");
my $reader = reader_token($node, 'cli', '*');
my %env = (env => { LOGAGG_TOKEN => $reader });

# ---- live: started before the records exist; stdout is a pipe, so no colour ----
my $t = start_tail($node, \%env, '--verbose');
ok(tail_wait($t, sub { $_[1] =~ /logagg-tail: connected/ }), 'logagg-tail connects')
  or diag($t->{err});

my $hostile = "hostile \e]0;owned\a\e[2J\x{9b}31m \x{202e}gnp.exe\nsecond line\ttab \\ back";
post_records($node, $src,
	'{"message":"plain one","status":200}',
	'{"message":"server broke","status":503,"trace_id":"0af7651916cd43dd8448eb211c80319c"}',
	encode_json({ message => $hostile, level => 'warn', attrs => { k => "v\e" } }));

ok(tail_wait($t, sub { ($_[0] =~ tr/\n//) >= 3 }), 'the three acked records are printed')
  or diag("out: $t->{out}\nerr: $t->{err}");
my @lines = split /\n/, $t->{out};
is(scalar @lines, 3, 'one line per record');

my @expected = split /\n/, sql(q{
	SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') || ' ' || source || ' ' ||
	       severity || coalesce(' ' || status, '') || ' ' || message
	FROM logagg.logs WHERE message NOT LIKE 'hostile%' ORDER BY id});
is($lines[0], $expected[0], 'a record: TS SOURCE SEVERITY STATUS MESSAGE, equal to the stored row');
is($lines[1], $expected[1], 'the next one, in commit order');
like($lines[1], qr/ svc-a critical 503 server broke$/, 'a 5xx record is critical');
my $sev = sql(q{SELECT severity FROM logagg.logs WHERE message LIKE 'hostile%'});
like($lines[2],
	qr/^\S+ svc-a \Q$sev\E hostile \\e\]0;owned\\x07\\e\[2J\\u\{009B\}31m \\u\{202E\}gnp\.exe\\nsecond line\\ttab \\\\ back$/,
	'control characters, C1 and bidi controls in log text are printed escaped (no status: none shown)');
unlike($t->{out}, qr/[\x00-\x09\x0b-\x1f\x7f]/, 'no raw control character reaches the terminal');
unlike($t->{out}, qr/\xc2[\x80-\x9f]|\xe2\x80[\xa8-\xae]|\xe2\x81[\xa6-\xa9]/, 'nor a raw C1 or bidi control');
is(tail_stop($t), 0, 'SIGINT: exit status 0');

# ---- --json --since: the last 3 records replayed, fields as stored ----
$t = start_tail($node, \%env, '--json', '--since', '3', '--count', '3');
ok(tail_wait($t, sub { !$t->{run}->pumpable }, 30), '--count 3 ends after three records')
  or diag($t->{err});
is(tail_status($t), 0, '--count reached: exit status 0');
@lines = split /\n/, $t->{out};
is(scalar @lines, 3, '--since 3 replays three records');
my @keys = sort qw(id ts received_at source severity level status message trace_id span_id attrs);
my $prev_id = 0;
for my $i (0 .. $#lines)
{
	my $rec = eval { decode_json($lines[$i]) };
	ok($rec, "--json line $i is JSON") or next;
	is(join(',', sort keys %$rec), join(',', @keys), "--json line $i has the record's stored columns");
	ok($rec->{id} > $prev_id, "--json line $i: oldest first");
	$prev_id = $rec->{id};
	(my $json = $lines[$i]) =~ s/'/''/g;
	is(sql(qq{SELECT jsonb_populate_record(l, '$json'::jsonb) IS NOT DISTINCT FROM l
	          FROM logagg.logs l WHERE id = $rec->{id}}),
		't', "--json line $i: every field equals the stored row");
}
is(decode_json($lines[2])->{message}, $hostile, '--json keeps the hostile message intact (escaped as JSON)');
unlike($t->{out}, qr/[\x00-\x09\x0b-\x1f\x7f]|\xc2[\x80-\x9f]|\xe2\x80[\xa8-\xae]/,
	'--json output has no raw control character either');

# ---- colour by severity ----
$t = start_tail($node, \%env, '--since', '3', '--count', '3', '--color=always');
ok(tail_wait($t, sub { !$t->{run}->pumpable }, 30), '--color=always run ends') or diag($t->{err});
is(tail_status($t), 0, 'exit status 0');
@lines = split /\n/, $t->{out};
my %color = (critical => "\e[31m", high => "\e[33m");
for my $l (@lines)
{
	my ($s) = $l =~ /^(?:\e\[\d+m)?\S+ svc-a (\w+)/;
	if ($color{$s})
	{
		like($l, qr/^\Q$color{$s}\E.*\e\[0m$/, "$s: coloured");
	}
	else
	{
		unlike($l, qr/\e/, "$s: default colour");
	}
}
is(scalar(grep { /\e\[31m.*server broke/ } @lines), 1, 'the critical record is red');

# --color=auto (the default): colour on a terminal, unless TERM=dumb or NO_COLOR
for my $case ([ 'a terminal', { TERM => 'xterm' }, 1 ],
	[ 'a terminal with NO_COLOR', { TERM => 'xterm', NO_COLOR => '1' }, 0 ],
	[ 'a dumb terminal', { TERM => 'dumb' }, 0 ])
{
	my ($name, $vars, $want) = @$case;
	my $out = '';
	local %ENV = (%ENV, LOGAGG_TOKEN => $reader, %$vars);
	delete $ENV{NO_COLOR} unless exists $vars->{NO_COLOR};
	IPC::Run::run([ tail_path(), '--port', $node->{reader_port}, '--since', '3', '--count', '3' ],
		'<', \undef, '>pty>', \$out, IPC::Run::timeout(30));
	like($out, qr/server broke/, "--color=auto on $name: the records are printed");
	is(scalar(() = $out =~ /\e\[31m/g), $want, "--color=auto on $name: " . ($want ? 'coloured' : 'no colour'));
}

done_testing();
