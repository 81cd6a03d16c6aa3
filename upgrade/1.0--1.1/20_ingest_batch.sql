-- Ingest batches: partition creation safe under concurrency (the
-- maintenance worker and logagg.maintain() at the same time), and the
-- sources a role may write through logagg.ingest().

-- Create the partition [start, start + interval) unless an existing one
-- already overlaps it.  Rows that landed in the DEFAULT partition for that
-- range are moved in, because PostgreSQL refuses a new partition whose range
-- the default partition already holds rows for.
--
-- The maintenance worker and logagg.maintain() may do this at the same
-- time.  SHARE UPDATE EXCLUSIVE on logagg.logs conflicts with itself but
-- not with ingest's inserts: the second caller waits until the first
-- commits, and then (a new snapshot per statement) finds its partitions.
-- A caller whose snapshot is older (REPEATABLE READ) can still miss them
-- and finds the name taken: that partition exists, which is all it wanted.
CREATE OR REPLACE FUNCTION @extschema@._ensure_partition(p_start timestamptz, p_secs int)
    RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    p_end  timestamptz := p_start + make_interval(secs => p_secs);
    p_name text;
BEGIN
    LOCK TABLE @extschema@.logs IN SHARE UPDATE EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM @extschema@.partitions
               WHERE NOT is_default AND range_start < p_end AND range_end > p_start) THEN
        RETURN false;
    END IF;
    p_name := 'logs_' || to_char(p_start AT TIME ZONE 'UTC',
                                 CASE WHEN p_secs % 86400 = 0 THEN 'YYYYMMDD' ELSE 'YYYYMMDD_HH24MI' END);
    IF EXISTS (SELECT 1 FROM @extschema@.logs_default WHERE ts >= p_start AND ts < p_end) THEN
        EXECUTE format('CREATE TABLE @extschema@.%I (LIKE @extschema@.logs INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', p_name);
        EXECUTE format('WITH moved AS (DELETE FROM @extschema@.logs_default WHERE ts >= $1 AND ts < $2 RETURNING *)
                        INSERT INTO @extschema@.%I SELECT * FROM moved', p_name) USING p_start, p_end;
        PERFORM @extschema@._index_partition(p_name);
        EXECUTE format('ALTER TABLE @extschema@.logs ATTACH PARTITION @extschema@.%I FOR VALUES FROM (%L) TO (%L)',
                       p_name, p_start, p_end);
    ELSE
        EXECUTE format('CREATE TABLE @extschema@.%I PARTITION OF @extschema@.logs FOR VALUES FROM (%L) TO (%L)',
                       p_name, p_start, p_end);
        PERFORM @extschema@._index_partition(p_name);
    END IF;
    RETURN true;
EXCEPTION WHEN duplicate_table THEN
    RETURN false;
END
$fn$;
COMMENT ON FUNCTION @extschema@.ingest(jsonb) IS
    'Stores log records given as one JSON object or an array of objects (fields as in wire protocol v1), in the calling transaction. Invalid records, and records of a source the calling role was not granted (logagg.grant_source_write), go to logagg.rejected. Returns the number of rows stored.';

-- Which roles may write which sources through logagg.ingest().  A token
-- fixes the source of a socket connection; a SQL caller has no token, so
-- without this any logagg_writer could write under any source.
-- Superusers and members of logagg_admin write any source.
CREATE TABLE @extschema@.source_writers (
    role_name   name NOT NULL,
    source      text NOT NULL CHECK (source ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    granted_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role_name, source)
);
COMMENT ON TABLE @extschema@.source_writers IS
    'Sources a role (and the roles that have its privileges) may write through logagg.ingest(); managed with logagg.grant_source_write and logagg.revoke_source_write.';

CREATE FUNCTION @extschema@.grant_source_write(role_name name, source text) RETURNS void
    LANGUAGE plpgsql STRICT VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = grant_source_write.role_name) THEN
        RAISE EXCEPTION 'role "%" does not exist', grant_source_write.role_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create the role first, or check the spelling.';
    END IF;
    INSERT INTO @extschema@.source_writers (role_name, source)
    VALUES (grant_source_write.role_name, grant_source_write.source)
    ON CONFLICT DO NOTHING;
END
$fn$;
COMMENT ON FUNCTION @extschema@.grant_source_write(name, text) IS
    'Lets a role (and every role with its privileges) write records of the given source through logagg.ingest().';

CREATE FUNCTION @extschema@.revoke_source_write(role_name name, source text) RETURNS boolean
    LANGUAGE sql STRICT VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    WITH gone AS (
        DELETE FROM @extschema@.source_writers w
        WHERE w.role_name = revoke_source_write.role_name
          AND w.source = revoke_source_write.source
        RETURNING 1)
    SELECT count(*) > 0 FROM gone;
$fn$;
COMMENT ON FUNCTION @extschema@.revoke_source_write(name, text) IS
    'Takes back logagg.grant_source_write; returns whether there was such a grant.';

REVOKE ALL ON FUNCTION @extschema@.grant_source_write(name, text),
                       @extschema@.revoke_source_write(name, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.grant_source_write(name, text),
                          @extschema@.revoke_source_write(name, text)
    TO logagg_admin;
GRANT ALL ON TABLE @extschema@.source_writers TO logagg_admin;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.source_writers', '');
