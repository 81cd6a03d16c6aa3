-- logagg ingest from SQL: logagg.ingest(jsonb), the same parse, classify
-- and store path as the WebSocket server's (src/ingest_parse.c,
-- src/ingest_batch.c).

CREATE FUNCTION @extschema@.ingest(records jsonb) RETURNS bigint
    LANGUAGE c STRICT VOLATILE
    SECURITY DEFINER  -- writes logs, rejected and alert_queue as the extension owner
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'logagg_ingest_sql';
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
