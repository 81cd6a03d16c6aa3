# Runs the pgTAP suites in test/pgtap/*.sql with pg_prove against a fresh
# node with logagg preloaded and the extension created.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;

my $node = new_node('pgtap');
start_with_extension($node);
$node->safe_psql('postgres', 'CREATE EXTENSION pgtap');

my @files = sort glob(src_dir() . '/test/pgtap/*.sql');
ok(@files > 0, 'found pgTAP files');
for my $f (@files)
{
	my ($stdout, $stderr);
	my $ok = IPC::Run::run(
		[ 'pg_prove', '--verbose', '-h', $node->host, '-p', $node->port, '-d', 'postgres', $f ],
		'>', \$stdout, '2>', \$stderr);
	note($stdout);
	diag($stderr) if $stderr;
	ok($ok, "pg_prove $f");
}
$node->stop('fast');
done_testing();
