-- logagg ingest from SQL: logagg.ingest(jsonb), the same parse, classify
-- and store path as the WebSocket server's (src/ingest_parse.c,
-- src/ingest_batch.c).

CREATE FUNCTION @extschema@.ingest(records jsonb) RETURNS bigint
    LANGUAGE c STRICT VOLATILE
    SECURITY DEFINER  -- writes logs, rejected and alert_queue as the extension owner
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'logagg_ingest_sql';
COMMENT ON FUNCTION @extschema@.ingest(jsonb) IS
    'Stores log records given as one JSON object or an array of objects (fields as in wire protocol v1), in the calling transaction. Invalid records go to logagg.rejected. Returns the number of rows stored.';
