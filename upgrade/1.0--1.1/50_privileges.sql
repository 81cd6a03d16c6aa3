-- Privileges (schema/00_core.sql, schema/90_privileges.sql): a dedicated
-- non-superuser role, logagg_owner, owns every object and is the role the
-- background workers and the SECURITY DEFINER functions run as; logagg_admin
-- loses TRIGGER, TRUNCATE and REFERENCES, with which it could run code as
-- the workers.  docs/security.md describes the model.

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'logagg_owner') THEN
        CREATE ROLE logagg_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'logagg_owner'
                  AND (r.rolsuper OR r.rolcreaterole OR r.rolbypassrls
                       OR EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = r.oid))) THEN
        RAISE EXCEPTION 'role "logagg_owner" is a superuser, can create roles, bypasses row security or is granted to other roles'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'logagg runs its workers as logagg_owner: make it NOSUPERUSER NOCREATEROLE NOBYPASSRLS and revoke it from every role.';
    END IF;
END
$roles$;

-- Members and the partitions of logs created under 1.0 go to logagg_owner
-- (identical to the block in schema/90_privileges.sql).
DO $owner$
DECLARE
    m record;
BEGIN
    FOR m IN
        SELECT d.classid, d.objid, c.relkind
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
          LEFT JOIN pg_catalog.pg_class c
                 ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = d.objid
         WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.deptype = 'e' AND e.extname = 'logagg'
        UNION ALL
        SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, i.inhrelid, 'r'
          FROM pg_catalog.pg_inherits i
         WHERE i.inhparent = '@extschema@.logs'::pg_catalog.regclass
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                            WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                              AND d.objid = i.inhrelid AND d.deptype = 'e')
        ORDER BY 1, 2
    LOOP
        IF m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass THEN
            EXECUTE pg_catalog.format('ALTER ROUTINE %s OWNER TO logagg_owner',
                                      m.objid::pg_catalog.regprocedure);
        ELSIF m.classid = 'pg_catalog.pg_type'::pg_catalog.regclass THEN
            EXECUTE pg_catalog.format('ALTER TYPE %s OWNER TO logagg_owner',
                                      m.objid::pg_catalog.regtype);
        ELSIF m.relkind IN ('r', 'p') THEN
            EXECUTE pg_catalog.format('ALTER TABLE %s OWNER TO logagg_owner',
                                      m.objid::pg_catalog.regclass);
        ELSIF m.relkind = 'v' THEN
            EXECUTE pg_catalog.format('ALTER VIEW %s OWNER TO logagg_owner',
                                      m.objid::pg_catalog.regclass);
        ELSIF m.relkind = 'S' AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_depend d
                 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                   AND d.objid = m.objid AND d.deptype IN ('a', 'i')
                   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass) THEN
            EXECUTE pg_catalog.format('ALTER SEQUENCE %s OWNER TO logagg_owner',
                                      m.objid::pg_catalog.regclass);
        END IF;
    END LOOP;
END
$owner$;

GRANT USAGE, CREATE ON SCHEMA @extschema@ TO logagg_owner;
GRANT SET ON PARAMETER log_min_error_statement TO logagg_owner;

-- 1.0 gave logagg_admin ALL on every table.  Every member with privileges
-- is touched after the owner change (a GRANT to the owner changes nothing
-- else) so that pg_init_privs, which pg_dump compares against, records
-- the new grantor as a fresh install does.
DO $grants$
DECLARE
    m record;
BEGIN
    FOR m IN
        SELECT c.oid::pg_catalog.regclass AS rel, c.relkind
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
          JOIN pg_catalog.pg_class c ON c.oid = d.objid
         WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.deptype = 'e' AND e.extname = 'logagg'
           AND c.relkind IN ('r', 'p', 'v', 'S') AND c.relacl IS NOT NULL
         ORDER BY c.oid
    LOOP
        IF m.relkind = 'S' THEN
            EXECUTE pg_catalog.format('GRANT ALL ON SEQUENCE %s TO logagg_owner', m.rel);
        ELSE
            EXECUTE pg_catalog.format('REVOKE TRUNCATE, REFERENCES, TRIGGER ON %s FROM logagg_admin', m.rel);
        END IF;
    END LOOP;
    FOR m IN
        SELECT p.oid::pg_catalog.regprocedure AS fn
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
          JOIN pg_catalog.pg_proc p ON p.oid = d.objid
         WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.deptype = 'e' AND e.extname = 'logagg' AND p.proacl IS NOT NULL
         ORDER BY p.oid
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO logagg_owner', m.fn);
    END LOOP;
END
$grants$;
