# ALTER EXTENSION logagg UPDATE: a database that installed the released 1.0,
# with configuration and data in it, ends up with exactly the objects of a
# fresh install of the newest version (every member's definition, comment and
# privileges), keeps its rows, and goes on working (its source token still
# ingests over the socket).
use strict;
use warnings;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use lib "$ENV{LOGAGG_SRC}/test/lib";
use LogaggTest;

my $newest = do
{
	open(my $fh, '<', src_dir() . '/logagg.control') or die "logagg.control: $!";
	my ($v) = map { /^default_version\s*=\s*'([^']+)'/ ? $1 : () } <$fh>;
	$v;
};
ok(defined $newest, "newest version from logagg.control: $newest");
# PGXN's META.json must carry a copy of it (semantic version: x.y.0)
{
	open(my $fh, '<', src_dir() . '/META.json') or die "META.json: $!";
	my $meta = join('', <$fh>);
	my @v = $meta =~ /"version"\s*:\s*"([^"]+)"/g;
	is_deeply([ grep { $_ ne '1.0.0' } @v ], [ "$newest.0", "$newest.0" ],
		'META.json names the same version as logagg.control');
}

my $node = new_node('upgrade');
$node->start;
$node->safe_psql('postgres', q{CREATE EXTENSION logagg VERSION '1.0'});
wait_workers_ready($node);
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'logagg'}),
	'1.0', 'installed 1.0');

my $token = $node->safe_psql('postgres', q{SELECT logagg.create_source('svc-up')});
$node->safe_psql('postgres', q{
SELECT logagg.add_destination('hook', 'webhook', '{"url": "http://127.0.0.1:9/a", "secret": "s"}');
SELECT logagg.add_route('hook', 'high', NULL, '0');
INSERT INTO logagg.rules (rule_order, message_regex, severity, comment)
    VALUES (5, 'panic', 'critical', 'added before the upgrade');
SELECT logagg.ingest('[{"source": "svc-up", "message": "before", "status": 200}]'::jsonb);
});

# the new library's ingest worker reads 1.0's sources table (no forwarding columns)
my $base = "ws://127.0.0.1:$node->{logagg_port}";
like(ws_probe($base, "open:c:/ingest:$token", 'send:c:{"source":"other","message":"under 1.0"}', 'recv:c'),
	qr/^c recv \{"ack_count": 1\}/m, 'under 1.0, a source token ingests over the socket');
ok( poll_until(sub {
		$node->safe_psql('postgres', q{SELECT source FROM logagg.logs WHERE message = 'under 1.0'}) eq 'svc-up';
	}, 30),
	'under 1.0, the token fixes the source');

$node->safe_psql('postgres', 'ALTER EXTENSION logagg UPDATE');
is($node->safe_psql('postgres', q{SELECT extversion FROM pg_extension WHERE extname = 'logagg'}),
	$newest, "updated to $newest");

# A description of every member of the extension: what pg_dump would write
# for it if it were not an extension member, plus comments, ACLs and the
# initial privileges pg_dump compares them with.
my $describe = q{
WITH m AS (
  SELECT d.classid, d.objid, d.objsubid
    FROM pg_depend d JOIN pg_extension e ON d.refobjid = e.oid
   WHERE d.refclassid = 'pg_extension'::regclass AND e.extname = 'logagg' AND d.deptype = 'e'
)
SELECT string_agg(line, E'\n' ORDER BY line) FROM (
  SELECT pg_describe_object(classid, objid, objsubid)
         || ' :: ' || coalesce(obj_description(objid, classid::regclass::text), '') AS line FROM m
  UNION ALL
  SELECT 'function ' || p.oid::regprocedure || E'\n' || pg_get_functiondef(p.oid)
         || ' acl=' || coalesce(p.proacl::text, '')
    FROM m JOIN pg_proc p ON m.classid = 'pg_proc'::regclass AND p.oid = m.objid
   WHERE p.prokind <> 'a'
  UNION ALL
  SELECT 'relation ' || c.oid::regclass || ' kind=' || c.relkind::text || ' acl=' || coalesce(c.relacl::text, '')
         || ' owner=' || c.relowner::regrole
         || coalesce(' part=' || pg_get_partkeydef(c.oid), '')
         || coalesce(E'\n' || pg_get_viewdef(c.oid), '')
    FROM m JOIN pg_class c ON m.classid = 'pg_class'::regclass AND c.oid = m.objid
  UNION ALL
  SELECT 'column ' || a.attrelid::regclass || '.' || a.attnum || ' ' || a.attname || ' '
         || format_type(a.atttypid, a.atttypmod) || CASE WHEN a.attnotnull THEN ' not null' ELSE '' END
         || coalesce(' default ' || pg_get_expr(ad.adbin, ad.adrelid), '')
         || coalesce(' gen=' || nullif(a.attgenerated::text, ''), '')
         || ' acl=' || coalesce(a.attacl::text, '')
         || ' :: ' || coalesce(col_description(a.attrelid, a.attnum), '')
    FROM m JOIN pg_attribute a ON m.classid = 'pg_class'::regclass AND a.attrelid = m.objid
    LEFT JOIN pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
   WHERE a.attnum > 0 AND NOT a.attisdropped
  UNION ALL
  SELECT 'constraint ' || co.conrelid::regclass || ' ' || co.conname || ' ' || pg_get_constraintdef(co.oid)
    FROM m JOIN pg_constraint co ON m.classid = 'pg_class'::regclass AND co.conrelid = m.objid
  UNION ALL
  SELECT 'index ' || pg_get_indexdef(i.indexrelid)
    FROM m JOIN pg_index i ON m.classid = 'pg_class'::regclass AND i.indrelid = m.objid
  UNION ALL
  SELECT 'trigger ' || pg_get_triggerdef(t.oid)
    FROM m JOIN pg_trigger t ON m.classid = 'pg_class'::regclass AND t.tgrelid = m.objid
   WHERE NOT t.tgisinternal
  UNION ALL
  SELECT 'policy ' || po.polname || ' on ' || po.polrelid::regclass || ' ' || po.polcmd::text
         || ' ' || coalesce(pg_get_expr(po.polqual, po.polrelid), '')
         || ' ' || coalesce(pg_get_expr(po.polwithcheck, po.polrelid), '')
    FROM m JOIN pg_policy po ON m.classid = 'pg_class'::regclass AND po.polrelid = m.objid
  UNION ALL
  SELECT 'enum ' || t.oid::regtype || ' ' || string_agg(e.enumlabel, ',' ORDER BY e.enumsortorder)
    FROM m JOIN pg_type t ON m.classid = 'pg_type'::regclass AND t.oid = m.objid
    JOIN pg_enum e ON e.enumtypid = t.oid
   GROUP BY t.oid
  UNION ALL
  -- what pg_dump compares ACLs against: the privileges the script left
  SELECT 'init privs ' || pg_describe_object(ip.classoid, ip.objoid, ip.objsubid) || ' '
         || ip.privtype::text || ' ' || ip.initprivs::text
    FROM m JOIN pg_init_privs ip ON ip.classoid = m.classid AND ip.objoid = m.objid
  UNION ALL
  SELECT 'schema acl ' || coalesce(n.nspacl::text, '') FROM pg_namespace n WHERE n.nspname = 'logagg'
  UNION ALL
  SELECT 'config dump ' || c.cfg::regclass || ' ' || coalesce(c.cond, '')
    FROM pg_extension e, unnest(e.extconfig, e.extcondition) AS c(cfg, cond)
   WHERE e.extname = 'logagg'
) lines;
};

$node->safe_psql('postgres', 'CREATE DATABASE fresh');
$node->safe_psql('fresh', 'CREATE EXTENSION logagg');
my $upgraded = $node->safe_psql('postgres', $describe);
my $fresh    = $node->safe_psql('fresh', $describe);
ok(length($fresh) > 10_000, 'the description covers the schema (' . length($fresh) . ' bytes)');

if ($upgraded eq $fresh)
{
	pass('upgraded schema equals a fresh install of the newest version');
}
else
{
	my %u = map { $_ => 1 } split /\n/, $upgraded;
	my %f = map { $_ => 1 } split /\n/, $fresh;
	my @only_u = grep { !$f{$_} } sort keys %u;
	my @only_f = grep { !$u{$_} } sort keys %f;
	diag("only after UPDATE:\n  " . join("\n  ", @only_u[0 .. ($#only_u < 40 ? $#only_u : 40)])) if @only_u;
	diag("only in a fresh install:\n  " . join("\n  ", @only_f[0 .. ($#only_f < 40 ? $#only_f : 40)])) if @only_f;
	fail('upgraded schema equals a fresh install of the newest version');
}

# the workers, superuser while the objects were the installer's, now run as
# the role that owns them
ok( $node->poll_query_until('postgres', q{
SELECT count(*) >= 4 AND bool_and(usename = 'logagg_owner')
  FROM pg_stat_activity WHERE backend_type LIKE 'logagg%'}),
	'after the update every worker runs as logagg_owner');

# data and configuration survived, and the workers carry on with them
is($node->safe_psql('postgres', q{SELECT count(*) FROM logagg.logs WHERE source = 'svc-up'}),
	'2', 'rows written under 1.0 are there');
is($node->safe_psql('postgres', q{SELECT count(*) FROM logagg.rules WHERE comment = 'added before the upgrade'}),
	'1', 'a rule added under 1.0 is there');
is($node->safe_psql('postgres', q{SELECT config->'signature_version' FROM logagg.destinations WHERE name = 'hook'}),
	'1', 'a 1.0 webhook with a secret keeps its body-only signature (signature_version 1)');
wait_workers_ready($node);
my $out = ws_probe($base, "open:c:/ingest:$token",
	'send:c:{"message":"after","status":200}', 'recv:c');
like($out, qr/^c recv \{"ack_count": 1\}/m, 'a 1.0 source token ingests after the update');
ok( poll_until(sub {
		$node->safe_psql('postgres', q{SELECT count(*) FROM logagg.logs WHERE source = 'svc-up'}) eq '3';
	}, 30),
	'the record sent after the update is stored');
# forwarding tokens, new in 1.1, work in the updated database
my $fwd = $node->safe_psql('postgres', q{SELECT logagg.create_source('collector-up', forwarder => true, sources => 'team-*')});
like(ws_probe($base, "open:f:/ingest:$fwd", 'send:f:{"source":"team-x","message":"forwarded"}', 'recv:f'),
	qr/^f recv \{"ack_count": 1\}/m, 'a forwarding token created after the update ingests');
ok( poll_until(sub {
		$node->safe_psql('postgres', q{SELECT source FROM logagg.logs WHERE message = 'forwarded'}) eq 'team-x';
	}, 30),
	'its record is stored under the source it names');

$node->stop;
done_testing();
