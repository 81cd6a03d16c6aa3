# Credentials never reach the server log, even where PostgreSQL itself
# would print them: reload messages, log_statement, statement errors, bind
# parameters of the extended query protocol (a real driver, DBD::Pg, with
# server-side prepared statements), and JSON parse errors of a config.
use strict;
use warnings;
use DBI;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;

my $node = new_node('redact', "log_statement = 'all'\nlog_min_messages = debug1\n"
	  . "log_min_duration_statement = 0\nlog_parameter_max_length_on_error = -1\n");
start_with_extension($node);

my $s3_secret = 'S3SECRETaaaa1111bbbb2222';
my $s3_key    = 'AKIAKEYID12345678';
my $hook_secret = 'HOOKSECRETcccc3333';

$node->safe_psql('postgres', "ALTER SYSTEM SET logagg.s3_secret_access_key = '$s3_secret'");
$node->safe_psql('postgres', "ALTER SYSTEM SET logagg.s3_access_key_id = '$s3_key'");
$node->reload;
ok( poll_until(sub { slurp_file($node->logfile) =~ /logagg\.s3_secret_access_key" changed \(value hidden by logagg\)/ }, 30),
	'the reload message names the parameter but not its value');
is($node->safe_psql('postgres', 'SHOW logagg.s3_secret_access_key'), $s3_secret, 'superuser still sees the value');

# log_statement = all would print this statement with the secret in it
$node->safe_psql('postgres',
	qq{SELECT logagg.add_destination('hook', 'webhook', '{"url": "http://127.0.0.1:9/h", "secret": "$hook_secret"}')});
# an error whose statement carries the secret
my ($ret, $out, $err) = $node->psql('postgres',
	qq{SELECT logagg.add_destination('bad', 'nosuchkind', '{"secret": "$hook_secret"}')});
isnt($ret, 0, 'bad destination refused');
# a message quoting the S3 secret by value
$node->psql('postgres', "SELECT 1/0 AS \"$s3_secret\"");

# A config that is not JSON fails in the JSON parser, before the function
# runs; its error quotes the input (CONTEXT: JSON data ..., DETAIL: Token).
($ret, $out, $err) = $node->psql('postgres',
	qq~SELECT logagg.add_destination('badjson', 'webhook', '{"url": "http://127.0.0.1:9/h", "secret": "$hook_secret", oops')~);
isnt($ret, 0, 'a config that is not JSON is refused');
($ret, $out, $err) = $node->psql('postgres',
	qq~SELECT logagg.add_destination('badtoken', 'webhook', '{"secret": $hook_secret}')~);
isnt($ret, 0, 'a config with an unquoted secret is refused');

# The extended query protocol: the config travels as a bind parameter and
# PostgreSQL logs it as "DETAIL: parameters: $3 = ..." after the execute
# and duration lines, and quotes a value that fails to convert.
my $ext_secret = 'EXTSECRETdddd4444';
my $dbh = DBI->connect('dbi:Pg:dbname=postgres;host=' . $node->host . ';port=' . $node->port,
	'', '', { AutoCommit => 1, RaiseError => 0, PrintError => 0, pg_server_prepare => 1 });
ok($dbh, 'DBD::Pg connected') or diag($DBI::errstr);
my $sth = $dbh->prepare('SELECT logagg.add_destination(?, ?, ?)');
ok($sth->execute('hook-ext', 'webhook', qq({"url": "http://127.0.0.1:9/h", "secret": "$ext_secret"})),
	'add_destination through a server-side prepared statement') or diag($dbh->errstr);
ok(!$sth->execute('bad-ext', 'webhook', qq~{"url": "http://127.0.0.1:9/h", "secret": "$ext_secret", oops~),
	'a bind parameter that is not JSON is refused');
ok(!$sth->execute('bad name', 'webhook', qq({"url": "http://127.0.0.1:9/h", "secret": "$ext_secret"})),
	'add_destination raising an error on a bound config');
ok($dbh->do('SELECT logagg.add_destination($1, $2, $3)', undef, 'hook-ext2', 'webhook',
		qq({"url": "http://127.0.0.1:9/h", "secret": "$ext_secret"})),
	'add_destination through an unnamed statement (PQexecParams)') or diag($dbh->errstr);
ok($dbh->selectrow_array('SELECT count(*) FROM pg_prepared_statements WHERE NOT from_sql') >= 1,
	'the driver used server-side prepared statements (protocol-level Parse/Bind/Execute)');
$dbh->disconnect;
is($node->safe_psql('postgres', q{SELECT count(*) FROM logagg.destinations WHERE name LIKE 'hook-ext%'}),
	'2', 'the destinations were created');

$node->stop('fast');
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$s3_secret\E/, 'S3 secret absent from the server log');
unlike($log, qr/\Q$s3_key\E/, 'S3 key id absent from the server log');
unlike($log, qr/\Q$hook_secret\E/, 'webhook secret absent from the server log');
unlike($log, qr/\Q$ext_secret\E/, 'secret sent as a bind parameter absent from the server log');
like($log, qr/hidden by logagg/, 'redaction happened (the test exercised the paths)');
like($log, qr/input values hidden by logagg/, 'bind parameters and JSON excerpts were hidden');
done_testing();
