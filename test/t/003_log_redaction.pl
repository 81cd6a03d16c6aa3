# Credentials never reach the server log, even where PostgreSQL itself
# would print them: reload messages, log_statement, statement errors.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;

my $node = new_node('redact', "log_statement = 'all'\nlog_min_messages = debug1\n");
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

$node->stop('fast');
my $log = slurp_file($node->logfile);
unlike($log, qr/\Q$s3_secret\E/, 'S3 secret absent from the server log');
unlike($log, qr/\Q$s3_key\E/, 'S3 key id absent from the server log');
unlike($log, qr/\Q$hook_secret\E/, 'webhook secret absent from the server log');
like($log, qr/hidden by logagg/, 'redaction happened (the test exercised the paths)');
done_testing();
