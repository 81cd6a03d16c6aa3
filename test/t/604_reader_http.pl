# 604_reader_http.pl -- the reader worker's plain HTTP: reader-token
# authentication (header or ?token=, 401 with JSON for missing, wrong and
# revoked tokens), GET /api/whoami, the console's static files with their
# security headers, and 404 for everything else.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use File::Path qw(make_path);
use LogaggTest;

my $node = new_node('reader_http', "logagg.dispatch_workers = 0\n");
start_with_extension($node);
my $http = "http://127.0.0.1:$node->{reader_port}";

sub sql { return $node->safe_psql('postgres', $_[0]); }

# curl(PATH, HEADERS...) -> (status, headers text, body)
sub curl
{
	my ($path, @h) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'curl', '-s', '-D', '-', map({ ('-H', $_) } @h), "$http$path" ],
		'>', \$out, '2>', \$err, IPC::Run::timeout(30));
	my ($head, $body) = split(/\r\n\r\n/, $out, 2);
	my ($status) = $head =~ m{^HTTP/\S+ (\d+)};
	return ($status, $head, $body // '');
}

is(sql(q{SELECT count(*) FROM logagg.status() WHERE kind = 'reader' AND ready}), '1',
	'logagg.status() shows the reader worker ready');

my $token = sql(q{SELECT logagg.create_reader_token('console-a', 'service-a*')});

# a new token is usable once the reader's cache has seen it (0.1 s)
ok(poll_until(sub { (curl('/api/whoami', "Authorization: Bearer $token"))[0] == 200 }, 10),
	'whoami with a Bearer token');
my ($st, $head, $body) = curl('/api/whoami', "Authorization: Bearer $token");
is($body, '{"name": "console-a", "sources": "service-a*"}', 'whoami names the token and its pattern');
like($head, qr/^Content-Type: application\/json/mi, 'as JSON');
like($head, qr/^Content-Security-Policy: default-src 'self'; connect-src 'self' ws: wss:\r$/mi, 'with the CSP header');
like($head, qr/^X-Content-Type-Options: nosniff\r$/mi, 'and nosniff');

($st, $head, $body) = curl("/api/whoami?token=$token");
is($st, 200, 'whoami with ?token=');

($st, $head, $body) = curl('/api/whoami');
is($st, 401, 'no token: 401');
is($body, '{"error": "missing, unknown or revoked reader token"}', 'with a JSON error');
like($head, qr/^WWW-Authenticate: Bearer/mi, 'and WWW-Authenticate');
($st) = curl('/api/whoami', 'Authorization: Bearer lgr_' . ('0' x 64));
is($st, 401, 'a wrong token: 401');
($st) = curl('/api/search', 'Authorization: Bearer ' . substr($token, 0, 40));
is($st, 401, 'a prefix of a token: 401 on the API too');

sql(q{SELECT logagg.revoke_reader_token('console-a')});
ok(poll_until(sub { (curl('/api/whoami', "Authorization: Bearer $token"))[0] == 401 }, 10),
	'a revoked token is refused');

# static files: a plain 404 until the console is installed, then served
my $sharedir = `pg_config --sharedir`;
chomp $sharedir;
my $dir = "$sharedir/extension/logagg_console";
my $installed = -e "$dir/index.html";
($st, $head, $body) = curl('/');
if ($installed)
{
	is($st, 200, '/ serves the installed console');
	like($head, qr/^Content-Security-Policy:/mi, 'with the security headers');
}
else
{
	is($st, 404, '/ without an installed console: 404');
	like($head, qr/^Content-Security-Policy:/mi, 'a 404 has the security headers too');
}
SKIP:
{
	skip 'the console is installed: not touching it', 3 if $installed || !-w "$sharedir/extension";
	make_path($dir);
	open(my $fh, '>', "$dir/index.html") or die;
	print $fh "<!doctype html><title>logagg</title>\n";
	close $fh;
	open($fh, '>', "$dir/app.js") or die;
	print $fh "'use strict';\n";
	close $fh;
	($st, $head, $body) = curl('/');
	is($st, 200, '/ serves index.html');
	like($head, qr{^Content-Type: text/html; charset=utf-8}mi, 'as HTML');
	($st, $head) = curl('/console/app.js');
	like($head, qr{^Content-Type: text/javascript}mi, '/console/app.js as JavaScript');
	unlink("$dir/index.html", "$dir/app.js");
	rmdir($dir);
}
if ($installed)
{
	($st, $head) = curl('/console/app.js');
	like($head, qr{^Content-Type: text/javascript}mi, '/console/app.js as JavaScript');
}
($st) = curl('/console/..%2Flogagg.control');
is($st, 404, 'a name outside the folder: 404');
($st) = curl('/console/%2e%2e/logagg.control');
is($st, 404, 'an encoded dot-dot: 404');
($st) = curl('/console/.hidden');
is($st, 404, 'a dot file: 404');
($st, $head, $body) = curl('/nothing');
is($st, 404, 'an unknown path: 404');

done_testing();
