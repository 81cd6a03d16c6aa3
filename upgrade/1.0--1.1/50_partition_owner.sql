-- Partitions get the owner of logagg.logs whoever creates them
-- (schema/10_core_functions.sql).  Runs before 50_privileges.sql.

-- The indexes every partition of logagg.logs has (see schema/00_core.sql
-- for why they are not on the parent): BRIN on ts for time ranges, btree
-- on (source, ts) for one service's recent records.  The partition is first
-- given to the owner of logagg.logs (logagg_owner): a superuser calling
-- the internal functions directly would otherwise own it, and the workers,
-- which run as logagg_owner, could not drop it at retention time.
CREATE OR REPLACE FUNCTION @extschema@._index_partition(p_name text)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    EXECUTE format('ALTER TABLE @extschema@.%I OWNER TO %s', p_name,
                   (SELECT c.relowner::regrole FROM pg_class c
                     WHERE c.oid = '@extschema@.logs'::regclass));
    EXECUTE format('CREATE INDEX %I ON @extschema@.%I USING brin (ts)', p_name || '_ts_brin', p_name);
    EXECUTE format('CREATE INDEX %I ON @extschema@.%I (source, ts)', p_name || '_source_ts', p_name);
END
$fn$;
COMMENT ON FUNCTION @extschema@._index_partition(text) IS
    'Internal: gives one new logs partition to the owner of logagg.logs and creates its BRIN (ts) and btree (source, ts) indexes.';
