# 161_ingest_hostile_parse.pl -- hostile input to the ingest parser, on a
# live instance: each input gets its exact outcome (which records are
# stored, which are in logagg.rejected with their exact bytes), and the
# ingest worker keeps its PID and records no error.
#
#   nesting that closes before it opens, across lines
#   a broken first line of an NDJSON frame / POST body
#   invalid UTF-8 and NUL bytes in one line; records over the kept-bytes bound
#   empty and blank frames and bodies
#   \u escapes a LATIN1 database cannot hold
#   nested attrs: the same jsonb whichever path reads them (escapes,
#   duplicate keys, deep nesting, big numbers, empty objects and arrays)
#   a record with 90,000 attrs in descending key order
#   messages of up to logagg.max_message_bytes of the worst kinds: the
#   worker's memory stays under a bound and its CPU time is linear
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HTTP::Tiny;
use Digest::SHA qw(sha256_hex);
use POSIX ();
use Time::HiRes ();
use IPC::Run ();
use LogaggTest;

# What the worker may use beyond its resting state while it handles one
# message of up to logagg.max_message_bytes (docs/ingest.md).
my $MEM_BOUND_KB = 64 * 1024;
# CPU the worker may spend per MB of a message that parses to (almost)
# nothing stored: the event loop is blocked at most this long per MB.
my $CPU_MS_PER_MB = 100;

my $node = new_node('hostile', qq{
logagg.dispatch_workers = 0
});
start_with_extension($node);
my $port = $node->{logagg_port};
my $base = "ws://127.0.0.1:$port";
my $http = HTTP::Tiny->new(timeout => 60);
my $tmp = PostgreSQL::Test::Utils::tempdir();

sub sql { my ($n, $q) = @_ > 1 ? @_ : ($node, $_[0]); return $n->safe_psql('postgres', $q); }
sub worker_pid { return sql($_[0] // $node, "SELECT pid FROM logagg.status() WHERE kind = 'ingest'"); }

my $token = sql("SELECT logagg.create_source('svc-hostile')");
my $pid = worker_pid();

sub cpu_ms
{
	open(my $fh, '<', "/proc/$pid/stat") or die $!;
	my @f = split(/ /, (split(/\) /, scalar(<$fh>)))[1]);
	return ($f[11] + $f[12]) * 1000 / POSIX::sysconf(POSIX::_SC_CLK_TCK);
}

sub mem_kb
{
	my %m;
	open(my $fh, '<', "/proc/$pid/status") or die $!;
	while (<$fh>) { $m{$1} = $2 if /^(\w+):\s+(\d+) kB/; }
	return \%m;
}

# the worker's private memory before any input: what the bound is above
my $start_anon = mem_kb()->{RssAnon};
note("ingest worker private memory at start: $start_anon kB");


# The worker kept its PID and has no error: nothing made it exit.
sub same_worker
{
	my ($what, $n, $p) = @_;
	$n //= $node;
	$p //= $pid;
	is(sql($n, "SELECT pid || ',' || coalesce(last_error, '') FROM logagg.status() WHERE kind = 'ingest'"),
		"$p,", "$what: the ingest worker kept its PID, no error");
}

# Send BYTES as one binary frame on a new connection (PATH may carry
# ?stream=); return everything answered until a quiet half second.
sub ws_send
{
	my ($bytes, $path, $b) = @_;
	$path //= '/ingest';
	my $f = "$tmp/frame";
	open(my $fh, '>:raw', $f) or die $!;
	print $fh $bytes;
	close($fh);
	my @recv = map { "recv:a:$_" } (5, 1, 1, 1);
	return ws_probe($b // $base, "open:a:$path:$token", "file:a:$f", @recv);
}

sub post
{
	my ($body, $p, $t) = @_;
	my $res = $http->post("http://127.0.0.1:" . ($p // $port) . "/ingest",
		{ headers => { Authorization => "Bearer " . ($t // $token) }, content => $body });
	return "$res->{status} $res->{content}";
}

sub hex_of { return unpack('H*', $_[0]); }

# ---- nesting that closes before it opens ----
my $deep = qq({"message":"deep ok"}\n) . (']' x 20000) . "\n" . ('[' x 20000);
my $out = ws_send($deep);
like($out, qr/\{"error": "invalid JSON: Expected JSON value, but found \\"\]\\"\."\}/,
	'stray closing brackets: their line is refused');
like($out, qr/\{"error": "JSON nested more than 64 levels deep"\}/, 'deep opening brackets: their line is refused');
like($out, qr/\{"ack_count": 1\}/, 'the valid first line is acked');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'deep ok'"), '1', 'and stored');
is(sql("SELECT string_agg(reason || ':' || raw_length || ':' || (raw_bytes = convert_to(repeat(b, 20000), 'UTF8'))::text, ',' ORDER BY id)"
	  . " FROM logagg.rejected, (VALUES (']'), ('[')) v(b) WHERE raw_bytes = convert_to(repeat(b, 20000), 'UTF8')"),
	'invalid JSON: Expected JSON value, but found "]".:20000:true,JSON nested more than 64 levels deep:20000:true',
	'both lines are in logagg.rejected with their exact bytes');
is(post($deep), '200 {"accepted": 1, "rejected": 2}', 'the same over POST /ingest');
same_worker('deep nesting after stray closing brackets');

# ---- a broken first line loses nothing after it ----
$out = ws_send(qq({"seq":1,"message":"b8 broken"\n{"seq":2,"message":"b8 one"}\n{"seq":3,"message":"b8 two"}),
	'/ingest?stream=s8');
like($out, qr/^a recv \{"resume": 0\}$/m, 'stream: resume point');
like($out, qr/\{"error": "invalid JSON[^"]*"\} \| \{"ack": 3\}/,
	'broken first line: one error frame (no seq: none was readable), the later lines acked');
is(sql("SELECT count(*) FROM logagg.logs WHERE message IN ('b8 one', 'b8 two')"), '2', 'the lines after it are stored');
is(sql("SELECT stream || ',' || coalesce(seq::text, 'null') || ',' || raw FROM logagg.rejected WHERE raw LIKE '%b8 broken%'"),
	's8,null,{"seq":1,"message":"b8 broken"', 'the broken line is in logagg.rejected with its stream');
$out = ws_send(qq({"message":"\\u00e9 b8"}\n{"seq":4,"status":"x","message":"b8 bad"}\n{"seq":5,"message":"b8 three"}),
	'/ingest?stream=s8');
like($out, qr/\{"error": "status must be[^"]*", "seq": 4\}/, 'a refused line with a seq: its error frame carries it');
like($out, qr/\{"ack": 5\}/, 'and the stream is acked past it');
is(sql("SELECT stream || ',' || seq FROM logagg.rejected WHERE raw LIKE '%b8 bad%'"), 's8,4',
	'the reject keeps stream and seq');
is(sql("SELECT count(*) FROM logagg.logs WHERE message IN (chr(233) || ' b8', 'b8 three')"), '2',
	'lines around it stored (the \\u escape line through the slow path)');
is(post(qq({"message": tru\n{"message":"b8 post 1"}\n\n{"message":"b8 post 2"}\n)),
	'200 {"accepted": 2, "rejected": 1}', 'POST body with a broken first line: the other lines are accepted');
is(sql("SELECT count(*) FROM logagg.logs WHERE message LIKE 'b8 post %'"), '2', 'and stored');
same_worker('broken first lines');

# ---- invalid UTF-8 and NUL: a per-line problem, exact bytes kept ----
my @bad = (qq({"message":"caf\xe9"}), qq({"message":"nul\x00byte"}), "\xff\xfe");
$out = ws_send(join("\n", qq({"message":"u9 one"}), $bad[0], qq({"message":"u9 two"}), $bad[1], $bad[2]));
is(scalar(() = $out =~ /"error": "not valid text in the database encoding UTF8 \(or contains a NUL byte\)"/g), 3,
	'three bad lines: three error frames');
like($out, qr/\{"ack_count": 2\}/, 'the valid lines of the same frame are acked');
is(sql("SELECT count(*) FROM logagg.logs WHERE message LIKE 'u9 %'"), '2', 'and stored');
for my $b (@bad)
{
	is(sql("SELECT (raw IS NULL) || ',' || raw_length || ',' || (raw_sha256 IS NULL) FROM logagg.rejected WHERE raw_bytes = '\\x"
		  . hex_of($b) . "'"), 'true,' . length($b) . ',true', 'bad line ' . hex_of($b) . ': exact bytes kept, raw NULL');
}
# a binary frame that is one invalid record, longer than the bytes kept
my $long = qq({"message": ") . ("\xe9" x 99986) . '"}';
is(post("$long\n" . qq({"message":"u9 after long"})), '200 {"accepted": 1, "rejected": 1}',
	'a 100 kB invalid line and a valid one over POST');
is(sql("SELECT raw IS NULL, raw_length, octet_length(raw_bytes), raw_bytes = '\\x" . hex_of(substr($long, 0, 65536))
	  . "', encode(raw_sha256, 'hex') FROM logagg.rejected WHERE raw_length = " . length($long)),
	't|' . length($long) . '|65536|t|' . sha256_hex($long),
	'cut at 64 kB: first 65536 bytes, whole length and SHA-256');
# valid text over the bound: raw (text) cut at a character boundary
my $longtext = qq({"message": ") . ("\x{e9}" x 40000);	# 13 + 80,000 bytes, no closing quote
utf8::encode($longtext);
is(post($longtext), '200 {"accepted": 0, "rejected": 1}', 'an 80 kB broken record of two-byte characters');
is(sql("SELECT octet_length(convert_to(raw, 'UTF8')) || ',' || octet_length(raw_bytes) || ','"
	  . " || (substr(raw_bytes, 1, 65535) = convert_to(raw, 'UTF8')) || ',' || raw_length"
	  . " || ',' || encode(raw_sha256, 'hex') FROM logagg.rejected WHERE raw_length = " . length($longtext)),
	'65535,65536,true,' . length($longtext) . ',' . sha256_hex($longtext),
	'raw is cut before the character the 64 kB bound splits; raw_bytes is exact');
# a reject reason that quotes a long token of two-byte characters is cut
# at a character boundary
my $token_line = qq({"message": x) . ("\x{e9}" x 300) . '}';
utf8::encode($token_line);
is(post($token_line), '200 {"accepted": 0, "rejected": 1}', 'a long invalid token of two-byte characters');
is(sql("SELECT octet_length(reason) <= 256, reason LIKE 'invalid JSON: Token \"x' || chr(233) || '%',"
	  . " convert_from(convert_to(reason, 'UTF8'), 'UTF8') = reason"
	  . " FROM logagg.rejected WHERE raw_length = " . length($token_line)),
	't|t|t', 'its reason is at most 256 bytes and valid UTF-8');
same_worker('invalid UTF-8 and NUL bytes');

# ---- empty and blank frames and bodies are skipped ----
my $rejects_before = sql('SELECT count(*) FROM logagg.rejected');
$out = ws_probe($base, "open:a:/ingest:$token", 'send:a:', "send:a: \\n\t\\n\\n", 'send:a:{"message":"b12"}',
	'recv:a', 'recv:a:1');
is($out, "a open\na recv {\"ack_count\": 1}\na timeout\n",
	'empty and blank frames: no error, the next record is acked alone');
is(post(''), '200 {"accepted": 0, "rejected": 0}', 'empty POST body: accepted 0, rejected 0');
is(post(" \r\n\n\t "), '200 {"accepted": 0, "rejected": 0}', 'blank POST body: accepted 0, rejected 0');
is(sql('SELECT count(*) FROM logagg.rejected'), $rejects_before, 'nothing rejected');
same_worker('empty and blank input');

# ---- a message of more records than a batch holds ----
# (logagg.batch_rows is 5000: the message is parsed over several batches;
# rejects count toward the batch)
my @lines = map { $_ % 1000 == 500 ? qq({"seq":$_,"message":) : qq({"seq":$_,"message":"span $_"}) } 1 .. 12000;
$out = ws_probe($base, "open:a:/ingest?stream=s12:$token", 'recv:a', 'file:a:' . do {
		my $f = "$tmp/span";
		open(my $fh, '>:raw', $f) or die $!;
		print $fh join("\n", @lines);
		close($fh);
		$f;
	}, 'until:a:60:"ack": 12000');
like($out, qr/\{"ack": 12000\}/, '12,000 lines on a stream: acked to the last seq');
is(scalar(() = $out =~ /"error": "invalid JSON/g), 12, 'one error frame per broken line');
is(sql("SELECT count(*) || ',' || count(DISTINCT seq) FROM logagg.logs WHERE message LIKE 'span %'"), '11988,11988',
	'every other line stored once');
is(sql("SELECT count(*) FROM logagg.rejected WHERE stream = 's12'"), '12', 'the broken lines rejected');
is(sql("SELECT last_seq FROM logagg.streams WHERE stream_id = 's12'"), '12000', 'the stream is at 12000');
cmp_ok(sql("SELECT count(DISTINCT (received_at, xmin::text)) FROM logagg.logs WHERE message LIKE 'span %'"), '>=', 3,
	'stored by at least three transactions');
# an array longer than the scanner takes at once, with non-objects in it
my @elems = map { $_ % 500 == 0 ? $_ : qq({"message":"elem $_"}) } 1 .. 12000;
is(post('[' . join(',', @elems) . ']'), '200 {"accepted": 11976, "rejected": 24}',
	'an array of 12,000 elements over POST');
is(sql("SELECT count(*) FROM logagg.logs WHERE message LIKE 'elem %'"), '11976', 'its objects are stored');
same_worker('messages spread over batches');

# ---- nested attrs: the fast path stores what the generic path stores ----
# Each case goes once as it is (the scanner reads it) and once with an
# escaped field name in front (the scanner gives up on those: PostgreSQL's
# JSON parser reads it), over POST and over WebSocket; the stored attrs
# of both must be the jsonb that jsonb_in makes of the same members.
my @nested = (
	'"e":{"k\\"q":"line\\nbreak \\\\ \\/ \\t\\b\\f\\r","b\\\\":["x\\"y","\\/"]}',	# escapes
	'"d":{"b":1,"b":2,"c":{"dd":1,"dd":{"e":3}},"b":{"z":[1]}},"d2":[{"a":1,"a":2}]',	# duplicate keys
	'"t":{"x":1},"t":[2,{"y":{"z":3}}]',	# a duplicate top-level attr, nested both times
	'"n":[12345678901234567890123,-0,0,0.1e-5,1E+2,1.50,-123456789012345678,123456789012345678901,1e-999]',
	'"z":{},"y":[],"x":[{}],"w":[[]],"v":{"a":{},"b":[[],{}]}',	# empty objects and arrays
	qq("s" : { "b" : [ 1 , 2 , true , false , null ] ,\t"c" : { } , "d":\r\t"x" } ),	# blanks everywhere
	'"u":{"caf' . "\xc3\xa9" . '":"' . "\xe2\x82\xac" . '","' . "\xf0\x9f\x98\x80" . '":["' . "\xc3\xa9" . '"]}',	# UTF-8
	'"m":{' . join(',', map { sprintf('"k%02d":%d', 40 - $_, $_) } 0 .. 40) . ',"k05":"last"}',	# many keys, descending
	'"q":{"\\u00e9t\\u00e9":"\\ud83d\\ude00 \\u20AC \\u0041","a":["\\u0022q\\u005c","\\u001f"]}',	# \u escapes
	'"deep":' . ('{"a":' x 62) . '1' . ('}' x 62),	# the record nested 63 deep
	'"deep":' . ('[' x 63) . '1' . (']' x 63),	# 64 deep: the limit
);
my (@fast, @slow);
for my $i (0 .. $#nested)
{
	push(@fast, qq({"message":"nest$i fast",$nested[$i]}));
	push(@slow, qq({"message":"nest$i slow","\\u005f":0,$nested[$i]}));
}
is(post(join("\n", @fast, @slow)), '200 {"accepted": ' . (2 * @nested) . ', "rejected": 0}',
	'nested attrs over POST: each case read by both paths');
# over WebSocket as one array (records one level deeper: not the 64-deep case)
my @in_array = grep { !/"nest$#nested / } @fast, @slow;
$out = ws_send('[' . join(',', map { s/"nest(\d+) (\w+)"/"nest$1 $2 ws"/r } @in_array) . ']');
like($out, qr/\{"ack_count": ${\(scalar @in_array)}\}/, 'and over WebSocket, as one array');
for my $i (0 .. $#nested)
{
	my $ref = $nested[$i] =~ s/'/''/gr;
	is(sql("SELECT string_agg(l.message || '=' || ((CASE WHEN l.message LIKE '% slow%' THEN l.attrs - '_' ELSE l.attrs END)::text"
		  . "  = ('{$ref}'::jsonb)::text), ',' ORDER BY l.message)"
		  . " FROM logagg.logs l WHERE l.message LIKE 'nest$i %'"),
		$i == $#nested ? "nest$i fast=true,nest$i slow=true"
		: "nest$i fast=true,nest$i fast ws=true,nest$i slow=true,nest$i slow ws=true",
		"nested case $i: both paths store what jsonb_in makes of it");
}
is(sql("SELECT attrs::text FROM logagg.logs WHERE message = 'nest1 fast'"),
	'{"d": {"b": {"z": [1]}, "c": {"dd": {"e": 3}}}, "d2": [{"a": 2}]}', 'nested duplicate keys: the last one wins');
is(sql("SELECT attrs->'n'->>1 || ',' || (attrs->'n'->>5) || ',' || (attrs->'n'->>8) FROM logagg.logs WHERE message = 'nest3 fast'"),
	'0,1.50,' . ('0.' . ('0' x 998) . '1'), 'numbers as numeric_in reads them');
# random nested records (seeded: the same every run), read by both paths
srand(161);
my @atoms = ('0', '-0', '7', '-12', '3.25', '1.50', '1e3', '-2.5E-7', '123456789012345678901234', 'true', 'false',
	'null', '""', '"plain"', '"a\\"b"', '"\\\\"', '"\\/\\b\\f\\n\\r\\t"', '"\\u00e9\\u20ac"',
	'"\\ud83d\\ude00"', '"\\u0041\\u007f"', qq("caf\xc3\xa9"));
my @keys = ('a', 'b', 'k', 'a', 'long_key_name', '', 'x\\"y', '\\u00e9', 'b\\n');
sub rand_value
{
	my ($d) = @_;
	my $r = int(rand(10));
	return $atoms[ int(rand(@atoms)) ] if $d > 5 || $r < 5;
	my $n = int(rand(5));
	my $sp = rand() < 0.3 ? ' ' : '';
	return '[' . join(",$sp", map { rand_value($d + 1) } 1 .. $n) . ']' if $r < 7;
	return "{$sp" . join(",$sp", map { qq("$keys[int(rand(@keys))]"$sp:$sp) . rand_value($d + 1) } 1 .. $n) . "$sp}";
}
my @rand_fast = map { my $v = rand_value(0); qq({"message":"rnd$_","r":$v,"s":) . rand_value(0) . '}' } 1 .. 300;
my @rand_slow = map { s/"message":"rnd(\d+)"/"message":"rnd$1 slow","\\u005f":0/r } @rand_fast;
is(post(join("\n", @rand_fast, @rand_slow)), '200 {"accepted": 600, "rejected": 0}', '300 random nested records, both paths');
is(sql("SELECT count(*) FROM logagg.logs f JOIN logagg.logs s ON s.message = f.message || ' slow'"
	  . " WHERE f.message ~ '^rnd[0-9]+\$' AND f.attrs::text = (s.attrs - '_')::text"), '300',
	'each stored the same attrs by both paths');

# \u escapes in mapped fields: the same text whichever path reads them
my $uesc = '"message":"uesc \\u00e9\\ud83d\\ude00\\u0041\\u0022","level":"\\u0057ARN"';
is(post(qq({$uesc,"k":1}\n{$uesc,"\\u005f":0,"k":1})), '200 {"accepted": 2, "rejected": 0}', '\\u escapes in a message');
is(sql("SELECT count(*) || ',' || count(DISTINCT message) || ',' || (min(message) = 'uesc ' || chr(233) || chr(128512) || 'A\"')"
	  . " || ',' || min(level) FROM logagg.logs WHERE message LIKE 'uesc %'"), '2,1,true,warn', 'decoded alike by both paths');
# \u escapes the lexer refuses: the same rejects as before
is(post(join("\n", '{"message":"u0 \\u0000"}', '{"message":"u1 \\ud800"}', '{"message":"u2 \\udc00 x"}',
			'{"message":"u3","a":{"b":"\\u12"}}', '{"message":"u4","a":["\\ud83d\\u0041"]}')),
	'200 {"accepted": 0, "rejected": 5}', 'malformed and unconvertible \\u escapes: rejected');
is(sql("SELECT count(*) FROM logagg.rejected WHERE raw ~ '^\\{\"message\":\"u[0-4]' AND reason LIKE 'invalid JSON: %'"), '5',
	'as invalid JSON, by the lexer');
# what neither path stores: too deep, a number numeric cannot hold
my @bad_nested = ('"deep":' . ('[' x 64) . '1' . (']' x 64), '"big":{"a":[1,{"b":1e1000}]}', '"big":[-1' . ('0' x 1000) . ']');
is(post(join("\n", map { qq({"message":"nest bad $_",$bad_nested[$_]}) } 0 .. $#bad_nested)),
	'200 {"accepted": 0, "rejected": 3}', 'nested too deep or too large: rejected');
is(sql("SELECT string_agg(reason, ',' ORDER BY id) FROM logagg.rejected WHERE raw LIKE '{\"message\":\"nest bad %'"),
	'JSON nested more than 64 levels deep,a number is too large,a number is too large', 'with their reasons');
same_worker('nested attrs');

# ---- a record with 90,000 attrs in descending key order ----
my $attrs = '{"message":"a6",' . join(',', map { sprintf('"k%05d":1', 89999 - $_) } 0 .. 89999) . '}';
my $cpu0 = cpu_ms();
is(post($attrs), '200 {"accepted": 1, "rejected": 0}', 'a ' . int(length($attrs) / 1024) . ' kB record with 90,000 attrs');
my $cpu = cpu_ms() - $cpu0;
ok($cpu < 1000, "90,000 attrs in descending order: $cpu ms of worker CPU (under 1 s)");
is(sql("SELECT count(*) || ',' || min(k) || ',' || max(k) FROM logagg.logs, jsonb_object_keys(attrs) k WHERE message = 'a6'"),
	'90000,k00000,k89999', 'all 90,000 attrs stored');
is(post('{"message":"a6 dup","b":1,"a":2,"b":3,"c":0,"a":4}'), '200 {"accepted": 1, "rejected": 0}', 'duplicate attrs');
is(sql("SELECT attrs::text FROM logagg.logs WHERE message = 'a6 dup'"), '{"a": 4, "b": 3, "c": 0}',
	'duplicate keys: the last one given wins');
same_worker('90,000 attrs');

# ---- the worst messages of up to logagg.max_message_bytes ----
# For each: the reply, the worker's CPU time, and the highest private
# (anonymous) memory seen while the worker handled it, sampled every
# few milliseconds by the test while curl waits for the reply, above
# what it was before the first message.
sub post_sampled
{
	my ($body) = @_;
	my $f = "$tmp/body";
	open(my $fh, '>:raw', $f) or die $!;
	print $fh $body;
	close($fh);
	my ($reply, $peak) = ('', 0);
	my $h = IPC::Run::start([ 'curl', '-s', '-w', ' %{http_code}', '-H', "Authorization: Bearer $token",
		'--data-binary', "\@$f", "http://127.0.0.1:$port/ingest" ], '>', \$reply, IPC::Run::timeout(120));
	while ($h->pumpable)
	{
		my $m = mem_kb()->{RssAnon};
		$peak = $m if $m > $peak;
		$h->pump_nb;
		Time::HiRes::usleep(2000);
	}
	$h->finish;
	my ($content, $status) = $reply =~ /^(.*) (\d+)$/s;
	return ("$status $content", $peak);
}

my $max = 1024 * 1024 - 1;
my @worst = (
	[ 'empty arrays', "[]\n" x int($max / 3), '200 {"accepted": 0, "rejected": 0}', 1 ],
	[ 'blank lines', " \n" x int($max / 2), '200 {"accepted": 0, "rejected": 0}', 1 ],
	[ 'closing then opening brackets', "{}\n" . (']' x 500000) . "\n" . ('[' x 500000),
		'200 {"accepted": 1, "rejected": 2}', 1 ],
	[ 'one line of brackets', ('[' x ($max - 1)), '200 {"accepted": 0, "rejected": 1}', 1 ],
	[ 'attrs in descending order', $attrs, '200 {"accepted": 1, "rejected": 0}', 1 ],
	[ 'scalar lines', "1\n" x int($max / 2), '200 {"accepted": 0, "rejected": ' . int($max / 2) . '}', 0 ],
	[ 'invalid UTF-8 lines', "\xff\n" x int($max / 2), '200 {"accepted": 0, "rejected": ' . int($max / 2) . '}', 0 ],
	[ 'one array of scalars', '[' . join(',', (1) x int($max / 2 - 1)) . ']',
		'200 {"accepted": 0, "rejected": ' . int($max / 2 - 1) . '}', 0 ],
);
for my $w (@worst)
{
	my ($what, $body, $reply, $cpu_checked) = @$w;
	my $mb = length($body) / (1024 * 1024);
	$cpu0 = cpu_ms();
	my ($got, $peak) = post_sampled($body);
	is($got, $reply, sprintf('%s (%.2f MB): reply', $what, $mb));
	$cpu = cpu_ms() - $cpu0;
	my $grew = $peak - $start_anon;
	ok($grew < $MEM_BOUND_KB,
		"$what: the worker's private memory peaked at $peak kB, $grew kB above its start (bound $MEM_BOUND_KB kB)");
	if ($cpu_checked)
	{
		# generous: 3 x the target, since the test machine is shared
		ok($cpu <= 3 * $CPU_MS_PER_MB * $mb + 30, sprintf("%s: %d ms of worker CPU for %.2f MB", $what, $cpu, $mb));
	}
	else
	{
		# one row of logagg.rejected per record: stored over many batches
		note(sprintf("%s: %d ms of worker CPU for %.2f MB (one reject row per record)", $what, $cpu, $mb));
	}
}
same_worker('the worst messages');

# ---- a dump of all this restores ----
# (every text column holds valid text: COPY of a plain dump checks it)
my $rows = "SELECT count(*) || ',' || md5(string_agg(r::text, '|' ORDER BY id)) FROM logagg.rejected r";
my $before = sql($rows);
command_ok([ 'pg_dump', '-Fp', '-f', "$tmp/dump.sql", '-d', $node->connstr('postgres') ], 'pg_dump');
sql('CREATE DATABASE restored');
command_ok([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-f', "$tmp/dump.sql", '-d', $node->connstr('restored') ],
	'the plain dump restores without an error');
is($node->safe_psql('restored', $rows), $before, 'logagg.rejected restored row for row');

# ---- \u escapes a LATIN1 database cannot hold ----
my $latin = new_node('latin1', qq{
logagg.dispatch_workers = 0
}, extra => [ '--encoding=LATIN1', '--locale=C' ]);
start_with_extension($latin);
is(sql($latin, 'SELECT getdatabaseencoding()'), 'LATIN1', 'a LATIN1 database');
my $lport = $latin->{logagg_port};
my $ltoken = sql($latin, "SELECT logagg.create_source('svc-latin')");
my $lpid = worker_pid($latin);
my $lbase = "ws://127.0.0.1:$lport";
my $frame = join("\n", '{"message":"l3 \u4e2d"}', '{"message":"l3 caf\u00e9","k\u00e9":"\u00e9"}',
	'{"message":"l3 attr","a":{"b":"\ud83d\ude00"}}', '{"message":"l3 plain"}');
$out = ws_probe($lbase, "open:a:/ingest:$ltoken", "send:a:$frame", 'recv:a', 'recv:a:1');
is(scalar(() = $out =~ /"error": "character U\+(4E2D|1F600) \(a \\\\u escape\) has no equivalent in the database encoding LATIN1"/g),
	2, 'two lines with characters LATIN1 lacks: two error frames') or diag($out);
like($out, qr/\{"ack_count": 2\}/, 'the other two lines acked');
is(sql($latin, "SELECT string_agg(message, ',' ORDER BY message) FROM logagg.logs"),
	'l3 caf' . "\xe9" . ',l3 plain', 'stored: a convertible escape as its LATIN1 character');
is(sql($latin, "SELECT attrs->>('k' || chr(233)) = chr(233) FROM logagg.logs WHERE message LIKE 'l3 caf%'"), 't',
	'and in attrs names and values');
is(sql($latin, "SELECT count(*) FROM logagg.rejected WHERE reason LIKE 'character U+%' AND raw LIKE '%l3 %'"),
	'2', 'both refused lines are in logagg.rejected');
$out = ws_probe($lbase, "open:a:/ingest:$ltoken", 'send:a:{"message":"\u4e2d alone"}',
	'send:a:[{"message":"\u4e2d in array"},{"message":"l3 array ok"}]', 'recv:a', 'recv:a:1', 'recv:a:1');
is(scalar(() = $out =~ /"error": "character U\+4E2D/g), 2, 'a whole frame and an array element: refused');
is(post('{"message":"l3 post \u4e2d"}' . "\n" . '{"message":"l3 post ok"}', $lport, $ltoken),
	'200 {"accepted": 1, "rejected": 1}', 'the same over POST /ingest');
is(sql($latin, "SELECT count(*) FROM logagg.logs WHERE message IN ('l3 array ok', 'l3 post ok')"), '2',
	'their valid neighbours are stored');
same_worker('\u escapes in a LATIN1 database', $latin, $lpid);
$latin->stop;

$node->stop;
done_testing();
