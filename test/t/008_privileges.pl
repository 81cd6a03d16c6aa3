# 008_privileges.pl -- no path from logagg_admin to superuser.
#
# Every object of the extension is owned by logagg_owner, a NOLOGIN
# non-superuser role that nobody is a member of; the background workers and
# the SECURITY DEFINER functions run as it.  logagg_admin can read and write
# the tables but cannot put a trigger on any of them (the classic way to
# run code as whoever writes the table next), cannot create objects in the
# schema, and cannot become the owner.  Even code that a superuser attached
# to the tables runs, inside a worker or a definer function, as
# logagg_owner and cannot climb back to superuser.
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;

my $node = new_node('privileges', "logagg.partition_interval = '1 day'\n");
start_with_extension($node);
sub sql { return $node->safe_psql('postgres', $_[0]); }

# ---- logagg_admin: configure, yes; triggers, schema objects, owner: no ----
sql(q{CREATE ROLE attacker LOGIN IN ROLE logagg_admin});
sub as_attacker
{
	my ($query, %opts) = @_;
	my ($ret, $out, $err) = $node->psql('postgres', $query, extra_params => [ '-U', 'attacker' ], %opts);
	return ($ret, $out, $err);
}

my ($ret, $out, $err) = as_attacker(q{
SELECT logagg.add_destination('hook', 'webhook', '{"url": "http://127.0.0.1:9/h"}');
INSERT INTO logagg.rules (rule_order, message_regex, severity) VALUES (7, 'boom', 'high');
UPDATE logagg.rules SET comment = 'edited' WHERE rule_order = 7;
DELETE FROM logagg.rules WHERE rule_order = 7;
SELECT count(*) FROM logagg.logs;
});
is($ret, 0, 'logagg_admin still configures (destinations, rules) and reads logs') or diag($err);

# The attack: a trigger calling a function in pg_temp that makes the caller
# superuser, on every table the workers or the definer functions write.
my @tables = split /\n/, sql(q{
SELECT c.oid::regclass FROM pg_class c
 WHERE c.relnamespace = 'logagg'::regnamespace AND c.relkind IN ('r', 'p') ORDER BY 1});
ok(scalar(@tables) >= 12, 'tables to attack: ' . scalar(@tables));
my @created;
for my $t (@tables)
{
	($ret, $out, $err) = as_attacker(qq{
CREATE FUNCTION pg_temp.evil() RETURNS trigger LANGUAGE plpgsql AS
  \$\$BEGIN ALTER ROLE attacker SUPERUSER; RETURN NEW; END\$\$;
CREATE TRIGGER evil BEFORE INSERT OR UPDATE ON $t FOR EACH ROW EXECUTE FUNCTION pg_temp.evil();
});
	push @created, $t if $ret == 0 || $err !~ /permission denied|must be owner/;
}
is(join(', ', @created), '', 'logagg_admin can put a trigger on none of the tables');

is(sql(q{
SELECT string_agg(c.oid::regclass || ' ' || p, ', ') FROM pg_class c,
       unnest(ARRAY['TRIGGER', 'TRUNCATE', 'REFERENCES']) p
 WHERE c.relnamespace = 'logagg'::regnamespace AND c.relkind IN ('r', 'p', 'v')
   AND has_table_privilege('logagg_admin', c.oid, p)}), '',
	'logagg_admin has neither TRIGGER, TRUNCATE nor REFERENCES on any table or view');
is(sql(q{SELECT has_schema_privilege('logagg_admin', 'logagg', 'CREATE')}), 'f',
	'logagg_admin cannot create objects in schema logagg');

for my $stmt ('TRUNCATE logagg.rejected', 'TRUNCATE logagg.destinations',
	'CREATE FUNCTION logagg.f() RETURNS int LANGUAGE sql RETURN 1',
	'ALTER TABLE logagg.rules DISABLE TRIGGER rules_changed',
	'SET ROLE logagg_owner', 'SET SESSION AUTHORIZATION logagg_owner')
{
	($ret, $out, $err) = as_attacker($stmt);
	isnt($ret, 0, "logagg_admin is refused: $stmt");
	like($err, qr/permission denied|must be owner/, "... with a privilege error ($stmt)");
}

# The calls that used to run the attacker's trigger as superuser, each in
# the session that tried to create the trigger (its pg_temp function lives
# only as long as the session).
my $token = sql(q{SELECT logagg.create_source('svc')});
for my $call (q{SELECT logagg.add_destination('hook2', 'webhook', '{"url": "http://127.0.0.1:9/h"}');},
	q{SELECT logagg.maintain();}, q{SELECT logagg.sync_now();})
{
	as_attacker(q{
CREATE FUNCTION pg_temp.evil() RETURNS trigger LANGUAGE plpgsql AS
  $$BEGIN ALTER ROLE attacker SUPERUSER; RETURN NEW; END$$;
CREATE TRIGGER evil BEFORE INSERT ON logagg.destinations FOR EACH ROW EXECUTE FUNCTION pg_temp.evil();
CREATE TRIGGER evil BEFORE INSERT ON logagg.logs FOR EACH ROW EXECUTE FUNCTION pg_temp.evil();
CREATE TRIGGER evil BEFORE INSERT ON logagg.sync_log FOR EACH ROW EXECUTE FUNCTION pg_temp.evil();
} . $call, on_error_stop => 0);
}
my $base = "ws://127.0.0.1:$node->{logagg_port}";
ws_probe($base, "open:c:/ingest:$token", 'send:c:this is not json', 'recv:c');
is(sql(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'attacker'}), 'f',
	'after add_destination, maintain, sync_now and an invalid record, logagg_admin is not a superuser');

# ---- defense in depth: code a superuser attached runs as logagg_owner ----
# A probe trigger records who runs it and tries to climb: ALTER ROLE ...
# SUPERUSER, and SET SESSION AUTHORIZATION back to the bootstrap superuser.
my $su = sql(q{SELECT rolname FROM pg_roles WHERE oid = 10});
sql(qq{
CREATE TABLE public.probe (via text, cur text, sess text, super text, climbed boolean, sess_after text,
                           path text);
GRANT INSERT ON public.probe TO PUBLIC;
CREATE FUNCTION public.probe() RETURNS trigger LANGUAGE plpgsql AS \$\$
DECLARE
    climbed boolean := true;
    sess_after text;
BEGIN
    BEGIN
        ALTER ROLE attacker SUPERUSER;
    EXCEPTION WHEN OTHERS THEN
        climbed := false;
    END;
    BEGIN
        SET SESSION AUTHORIZATION "$su";
    EXCEPTION WHEN OTHERS THEN
        NULL;
    END;
    sess_after := session_user;
    INSERT INTO public.probe VALUES (TG_ARGV[0], current_user, session_user,
                                     current_setting('is_superuser'), climbed, sess_after,
                                     current_setting('search_path'));
    RETURN NEW;
END
\$\$;
CREATE TRIGGER probe AFTER INSERT ON logagg.rejected FOR EACH ROW EXECUTE FUNCTION public.probe('rejected');
CREATE TRIGGER probe AFTER INSERT ON logagg.destinations FOR EACH ROW EXECUTE FUNCTION public.probe('destinations');
});
$out = ws_probe($base, "open:c:/ingest:$token", 'send:c:still not json', 'recv:c');
like($out, qr/^c recv .*error/m, 'the invalid record got its error frame');
ok(poll_until(sub { sql(q{SELECT count(*) FROM public.probe WHERE via = 'rejected'}) eq '1' }, 30),
	'the ingest worker ran the probe trigger');
is(sql(q{SELECT cur, sess, super, climbed, sess_after FROM public.probe WHERE via = 'rejected'}),
	'logagg_owner|logagg_owner|off|f|logagg_owner',
	'in the ingest worker the trigger runs as logagg_owner, cannot ALTER ROLE, cannot switch back to superuser');
is(sql(q{SELECT path FROM public.probe WHERE via = 'rejected'}), 'pg_catalog, pg_temp',
	'the worker resolves names in pg_catalog only (nothing in public can stand in for a built-in)');

($ret, $out, $err) = as_attacker(q{SELECT logagg.add_destination('hook3', 'webhook', '{"url": "http://127.0.0.1:9/h"}')});
is($ret, 0, 'add_destination as logagg_admin') or diag($err);
is(sql(q{SELECT cur, super, climbed FROM public.probe WHERE via = 'destinations'}),
	'logagg_owner|off|f', 'inside add_destination (SECURITY DEFINER) the trigger runs as logagg_owner and cannot climb');

sql(q{DROP TRIGGER probe ON logagg.destinations});
sql(q{INSERT INTO public.probe (via) VALUES ('x'); DELETE FROM public.probe});
($ret, $out, $err) = as_attacker(
	q{SELECT logagg.ingest('[{"source": "svc", "message": "x", "ts": "not a time"}]')});
is($ret, 0, 'logagg.ingest() as logagg_admin (a member of logagg_writer)') or diag($err);
is(sql(q{SELECT cur, super, climbed FROM public.probe WHERE via = 'rejected'}),
	'logagg_owner|off|f', 'inside logagg.ingest() (SECURITY DEFINER) the trigger runs as logagg_owner and cannot climb');
is(sql(q{SELECT rolsuper FROM pg_roles WHERE rolname = 'attacker'}), 'f', 'attacker is still not a superuser');
sql(q{DROP TRIGGER probe ON logagg.rejected});

# ---- the owner role ----
is(sql(q{SELECT rolsuper, rolcanlogin, rolcreaterole, rolbypassrls FROM pg_roles WHERE rolname = 'logagg_owner'}),
	'f|f|f|f', 'logagg_owner exists: not a superuser, NOLOGIN, cannot create roles, no BYPASSRLS');
is(sql(q{SELECT count(*) FROM pg_auth_members WHERE roleid = 'logagg_owner'::regrole}),
	'0', 'no role is a member of logagg_owner');
is(sql(q{SELECT pg_has_role('logagg_admin', 'logagg_owner', 'USAGE')}), 'f',
	'logagg_admin does not have the rights of logagg_owner');

sql(q{SELECT logagg.maintain()});
is(sql(q{
SELECT string_agg(what, ', ' ORDER BY what) FROM (
  SELECT pg_describe_object(d.classid, d.objid, 0) AS what,
         CASE WHEN d.classid = 'pg_class'::regclass THEN (SELECT relowner FROM pg_class WHERE oid = d.objid)
              WHEN d.classid = 'pg_proc'::regclass THEN (SELECT proowner FROM pg_proc WHERE oid = d.objid)
              WHEN d.classid = 'pg_type'::regclass THEN (SELECT typowner FROM pg_type WHERE oid = d.objid) END AS owner
    FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
   WHERE d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e' AND e.extname = 'logagg'
  UNION ALL
  SELECT 'partition ' || inhrelid::regclass, (SELECT relowner FROM pg_class WHERE oid = inhrelid)
    FROM pg_inherits WHERE inhparent = 'logagg.logs'::regclass) o
WHERE owner IS DISTINCT FROM 'logagg_owner'::regrole}), '',
	'every member of the extension and every partition of logs is owned by logagg_owner');
ok(sql(q{SELECT count(*) FROM logagg.partitions WHERE NOT is_default}) >= 2,
	'maintain() (SECURITY DEFINER) created time partitions');

# ---- the workers run as logagg_owner ----
ok( $node->poll_query_until('postgres', q{
SELECT count(*) >= 4 AND bool_and(usename = 'logagg_owner')
  FROM pg_stat_activity WHERE backend_type LIKE 'logagg%'}),
	'every logagg worker backend runs as logagg_owner (pg_stat_activity.usename)');

# ---- and the workers still do their work as logagg_owner ----
$out = ws_probe($base, "open:c:/ingest:$token", 'send:c:{"message":"hello","status":200}', 'recv:c');
like($out, qr/^c recv \{"ack_count": 1\}/m, 'a valid record is acked');
is(sql(q{SELECT count(*) FROM logagg.logs WHERE message = 'hello'}), '1', 'and stored');

# A second database: CREATE EXTENSION finds the roles and makes no new one.
sql(q{CREATE DATABASE second});
$node->safe_psql('second', 'CREATE EXTENSION logagg');
is($node->safe_psql('second', q{SELECT relowner::regrole FROM pg_class WHERE oid = 'logagg.logs'::regclass}),
	'logagg_owner', 'a second database installs with the same owner role');

# A pre-existing logagg_owner that someone else can act as is refused.
$node->safe_psql('second', 'DROP EXTENSION logagg');
sql(q{GRANT logagg_owner TO attacker});
($ret, $out, $err) = $node->psql('second', 'CREATE EXTENSION logagg');
isnt($ret, 0, 'CREATE EXTENSION refuses a logagg_owner granted to another role');
like($err, qr/role "logagg_owner" is .*granted to other roles/, '... and says why');
sql(q{REVOKE logagg_owner FROM attacker});

$node->stop;
done_testing();
