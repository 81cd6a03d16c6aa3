# 602_reader_tokens.pl -- reader tokens: created with a source pattern,
# shown once, stored only as a SHA-256, listed without secrets, checked
# through the same cached constant-time lookup the network endpoints use,
# and refused at once after logagg.revoke_reader_token.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Digest::SHA qw(sha256_hex);
use LogaggTest;

my $node = new_node('reader_tokens', qq{
logagg.dispatch_workers = 0
log_statement = 'none'
});
start_with_extension($node);

sub sql { return $node->safe_psql('postgres', $_[0]); }

sql(q{CREATE ROLE adm LOGIN IN ROLE logagg_admin; CREATE ROLE rd LOGIN IN ROLE logagg_reader;});
my $token = $node->safe_psql('postgres', q{SELECT logagg.create_reader_token('console-a', 'service-a*, api')},
	extra_params => [ '-U', 'adm' ]);
like($token, qr/^lgr_[0-9a-f]{64}$/, 'an admin creates a reader token (lgr_ and 64 hex digits)');
is(sql(q{SELECT encode(token_hash, 'hex') FROM logagg.reader_tokens WHERE name = 'console-a'}),
	sha256_hex($token), 'only its SHA-256 is stored');
is(sql(qq{SELECT count(*) FROM logagg.reader_tokens t
          WHERE position('$token' IN t::text) > 0 OR position(substr('$token', 5) IN t::text) > 0}),
	'0', 'the token itself is nowhere in the table');
is(sql(q{SELECT name || ' ' || sources || ' ' || enabled FROM logagg.reader_token_list}),
	'console-a api,service-a* true', 'listed with its normalised pattern, without the hash');
is(sql(q{SELECT string_agg(column_name, ',' ORDER BY ordinal_position) FROM information_schema.columns
         WHERE table_schema = 'logagg' AND table_name = 'reader_token_list'}),
	'name,sources,enabled,created_at,revoked_at', 'the list has no hash column');
unlike(slurp_file($node->logfile), qr/\Q$token\E/, 'the token is not in the server log');

# the check the endpoints use
is(sql(qq{SELECT logagg._reader_token_sources('$token')}), 'api,service-a*', 'the token is valid for its pattern');
is(sql(qq{SELECT logagg._reader_token_sources('${token}0') IS NULL}), 't', 'a longer string is refused');
is(sql(qq{SELECT logagg._reader_token_sources(substr('$token', 1, 60)) IS NULL}), 't', 'a prefix is refused');
is(sql(q{SELECT logagg._reader_token_sources('') IS NULL}), 't', 'an empty token is refused');

my $all = sql(q{SELECT logagg.create_reader_token('console-all')});
is(sql(qq{SELECT logagg._reader_token_sources('$all')}), '*', 'the default pattern is every source');
isnt($all, $token, 'each token is new');

# errors
my ($ret, $out, $err) = $node->psql('postgres', q{SELECT logagg.create_reader_token('console-a', '*')});
like($err, qr/reader token "console-a" already exists/, 'names are unique');
($ret, $out, $err) = $node->psql('postgres', q{SELECT logagg.create_reader_token('x', 'svc a')});
like($err, qr/invalid source pattern "svc a"/, 'a bad pattern is refused');
($ret, $out, $err) = $node->psql('postgres', q{SELECT logagg.create_reader_token('bad name', '*')});
like($err, qr/reader_tokens_name_check/, 'a bad name is refused');
($ret, $out, $err) = $node->psql('postgres', q{SELECT logagg.create_reader_token('r', '*')}, extra_params => [ '-U', 'rd' ]);
like($err, qr/permission denied for function create_reader_token/, 'a reader cannot create tokens');
($ret, $out, $err) = $node->psql('postgres', q{SELECT * FROM logagg.reader_tokens}, extra_params => [ '-U', 'rd' ]);
like($err, qr/permission denied/, 'nor read the hashes');

# revocation takes effect at once, also in a session that has the cache loaded
my $session = $node->background_psql('postgres');
is($session->query_safe(qq{SELECT logagg._reader_token_sources('$token')}), 'api,service-a*', 'cached in a session');
$node->safe_psql('postgres', q{SELECT logagg.revoke_reader_token('console-a')}, extra_params => [ '-U', 'adm' ]);
is($session->query_safe(qq{SELECT logagg._reader_token_sources('$token') IS NULL}), 't',
	'refused in that session right after the revocation committed');
is($session->query_safe(qq{SELECT logagg._reader_token_sources('$all')}), '*', 'other tokens still valid');
$session->quit;
is(sql(q{SELECT enabled::text || ' ' || (revoked_at IS NOT NULL)::text FROM logagg.reader_token_list WHERE name = 'console-a'}),
	'false true', 'listed as revoked');
($ret, $out, $err) = $node->psql('postgres', q{SELECT logagg.revoke_reader_token('nope')});
like($err, qr/reader token "nope" does not exist/, 'revoking an unknown token is an error');

$node->stop;
done_testing();
