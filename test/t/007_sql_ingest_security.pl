# 007_sql_ingest_security.pl -- logagg.ingest() writes only the sources
# granted to the calling role.
#
# A socket connection's source is fixed by its token; a SQL caller has
# none, so logagg.grant_source_write(role, source) says which sources a
# role (and the roles that have its privileges) may write.  Records of
# other sources are rejected one by one into logagg.rejected; a role with
# no grant at all gets an error.  Superusers and logagg_admin members
# write any source.  The role checked is the session's (after SET ROLE),
# also when logagg.ingest() is called from a SECURITY DEFINER function.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use LogaggTest;

my $node = new_node('sql_ingest_sec', qq{
logagg.dispatch_workers = 0
});
start_with_extension($node);

sub sql { return $node->safe_psql('postgres', $_[0]); }

sub as
{
	my ($role, $query) = @_;
	my ($ret, $stdout, $stderr) = $node->psql('postgres', $query, extra_params => [ '-U', $role ]);
	return ($stdout, $stderr);
}

sql(q{
CREATE ROLE w LOGIN IN ROLE logagg_writer;
CREATE ROLE nogrant LOGIN IN ROLE logagg_writer;
CREATE ROLE team NOLOGIN;
CREATE ROLE member LOGIN IN ROLE logagg_writer, team;
CREATE ROLE adm LOGIN IN ROLE logagg_admin;
SELECT logagg.grant_source_write('w', 'svc-a');
SELECT logagg.grant_source_write('team', 'svc-team');
});
is(sql("SELECT string_agg(role_name || ':' || source, ',' ORDER BY role_name) FROM logagg.source_writers"),
	'team:svc-team,w:svc-a', 'grants are stored');

# a granted source is stored, others are rejected per record
my ($out, $err) = as('w', q{SELECT logagg.ingest('[{"source":"svc-a","message":"mine"},{"source":"svc-b","message":"forged"},{"message":"no source"}]')});
is($out, '1', 'w: only the record of its source is stored');
is($err, '', 'w: no error');
is(sql("SELECT string_agg(source || ':' || message, ',') FROM logagg.logs"), 'svc-a:mine', 'w: logs hold only svc-a');
is(sql("SELECT string_agg(reason, ',' ORDER BY id) FROM logagg.rejected"),
	'role "w" may not write source "svc-b" (logagg.grant_source_write),role "w" may not write source "unknown" (logagg.grant_source_write)',
	'w: the others are in logagg.rejected with the reason');
like(sql("SELECT raw FROM logagg.rejected WHERE source = 'svc-b'"), qr/"message":"forged"/, 'w: with the record');

# no grant at all: an error, nothing stored
($out, $err) = as('nogrant', q{SELECT logagg.ingest('{"source":"svc-a","message":"sneaky"}')});
like($err, qr/ERROR:  role "nogrant" may not write any log source through logagg.ingest\(\)/, 'no grant: an error');
like($err, qr/HINT:  An administrator allows a source with SELECT logagg.grant_source_write\('nogrant', 'SOURCE'\);/,
	'no grant: the hint says how to grant');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'sneaky'"), '0', 'no grant: nothing stored');

# through role membership
($out, $err) = as('member', q{SELECT logagg.ingest('[{"source":"svc-team","message":"team"},{"source":"svc-a","message":"not team"}]')});
is($out, '1', 'a member of a granted role writes its source, and only that');

# admins and superusers write anything
($out, $err) = as('adm', q{SELECT logagg.ingest('[{"source":"any-1","message":"adm"},{"message":"adm unknown"}]')});
is($out, '2', 'logagg_admin writes any source');
is(sql(q{SELECT logagg.ingest('{"source":"any-2","message":"su"}')}), '1', 'a superuser writes any source');

# SET ROLE and SECURITY DEFINER wrappers: the session's role is checked
is(sql(q{SET ROLE w; SELECT logagg.ingest('[{"source":"svc-a","message":"set role ok"},{"source":"any-3","message":"set role forged"}]')}),
	'1', 'after SET ROLE the role set is checked');
sql(q{
CREATE FUNCTION public.ingest_wrapper(j jsonb) RETURNS bigint LANGUAGE sql SECURITY DEFINER
    SET search_path = pg_catalog AS $$ SELECT logagg.ingest(j) $$;
GRANT EXECUTE ON FUNCTION public.ingest_wrapper(jsonb) TO w;
});
($out, $err) = as('w', q{SELECT public.ingest_wrapper('{"source":"any-4","message":"laundered"}')});
is($out, '0', 'a superuser-owned SECURITY DEFINER wrapper does not lend its rights');
is(sql("SELECT count(*) FROM logagg.logs WHERE message IN ('set role forged', 'laundered')"), '0', 'neither forged record stored');

# managing grants is for admins
($out, $err) = as('w', q{SELECT logagg.grant_source_write('w', 'svc-b')});
like($err, qr/permission denied for function grant_source_write/, 'a writer cannot grant itself a source');
($out, $err) = as('adm', q{SELECT logagg.grant_source_write('nobody-here', 'svc-b')});
like($err, qr/role "nobody-here" does not exist/, 'granting to a missing role is an error');
($out, $err) = as('adm', q{SELECT logagg.grant_source_write('w', 'bad source!')});
like($err, qr/violates check constraint/, 'an invalid source name is refused');
($out, $err) = as('adm', q{SELECT logagg.revoke_source_write('w', 'svc-a'), logagg.revoke_source_write('w', 'svc-a')});
is($out, 't|f', 'revoke_source_write says whether there was a grant');
($out, $err) = as('w', q{SELECT logagg.ingest('{"source":"svc-a","message":"after revoke"}')});
like($err, qr/role "w" may not write any log source/, 'after the revoke w may not write');
is(sql("SELECT count(*) FROM logagg.logs WHERE message = 'after revoke'"), '0', 'nothing stored after the revoke');
done_testing();
