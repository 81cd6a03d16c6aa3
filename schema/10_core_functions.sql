-- logagg core functions: classification, sources, status, partitions.

CREATE FUNCTION @extschema@._invalidate_cache() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'logagg_invalidate_cache';
COMMENT ON FUNCTION @extschema@._invalidate_cache() IS
    'Internal: statement trigger that tells every logagg process (ingest worker included) to reload its cached copy of the table at its next transaction.';

CREATE TRIGGER rules_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.rules
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._invalidate_cache();
CREATE TRIGGER sources_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.sources
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._invalidate_cache();

CREATE FUNCTION @extschema@.classify(status int, level text, source text, message text)
    RETURNS @extschema@.severity
    LANGUAGE c STABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'logagg_classify';
COMMENT ON FUNCTION @extschema@.classify(int, text, text, text) IS
    'Severity that logagg.rules give a record with this status, level, source and message (the same C code the ingest worker runs).';

CREATE FUNCTION @extschema@.normalize_level(level text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'logagg_normalize_level_sql';
COMMENT ON FUNCTION @extschema@.normalize_level(text) IS
    'Canonical level name as stored in logagg.logs.level (warning -> warn, critical -> fatal, ...).';

CREATE FUNCTION @extschema@.create_source(name text, forwarder boolean DEFAULT false,
                                          sources text DEFAULT NULL) RETURNS text
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'logagg_create_source';
COMMENT ON FUNCTION @extschema@.create_source(text, boolean, text) IS
    'Creates a log source and returns its ingest token. The token is shown only this once; only its SHA-256 is stored. forwarder => true: the token''s records name their own source (sources => ''team-a-*,billing'' limits which, as globs).';

CREATE FUNCTION @extschema@.set_source_detection(name text, detect boolean) RETURNS void
    LANGUAGE plpgsql STRICT VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE @extschema@.sources s SET detect = set_source_detection.detect
     WHERE s.name = set_source_detection.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'source "%" does not exist', set_source_detection.name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT name FROM logagg.sources lists the sources.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@.set_source_detection(text, boolean) IS
    'Turns on or off reading the level, HTTP status and time of a source''s plain-text lines from the line itself (logagg.sources.detect; on for new sources).';

CREATE FUNCTION @extschema@.rotate_source_token(name text) RETURNS text
    LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'logagg_rotate_source_token';
COMMENT ON FUNCTION @extschema@.rotate_source_token(text) IS
    'Gives a source a new token (returned once), invalidates the old one and re-enables the source.';

CREATE FUNCTION @extschema@.revoke_source(name text) RETURNS void
    LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'logagg_revoke_source';
COMMENT ON FUNCTION @extschema@.revoke_source(text) IS
    'Disables a source''s token: new connections with it get HTTP 401.';

CREATE FUNCTION @extschema@.status(
    OUT worker text, OUT kind text, OUT pid int, OUT ready boolean,
    OUT started_at timestamptz, OUT connections bigint, OUT rows_stored bigint,
    OUT batches bigint, OUT rejects bigint, OUT counters jsonb,
    OUT last_error text, OUT last_error_at timestamptz)
    RETURNS SETOF record
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'logagg_status';
COMMENT ON FUNCTION @extschema@.status() IS
    'One row per logagg background worker: PID (NULL when not running), whether it found the extension, and its counters since server start.';

-- ---------------------------------------------------------------------------
-- partitions
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@._partition_interval_secs() RETURNS int
    LANGUAGE c STABLE AS 'MODULE_PATHNAME', 'logagg_partition_interval_secs_sql';
COMMENT ON FUNCTION @extschema@._partition_interval_secs() IS
    'Internal: logagg.partition_interval in seconds, as parsed by the extension.';

CREATE VIEW @extschema@.partitions AS
SELECT c.oid::regclass AS partition,
       CASE WHEN b.bound = 'DEFAULT' THEN NULL
            ELSE (regexp_match(b.bound, 'FROM \(''([^'']+)''\)'))[1]::timestamptz END AS range_start,
       CASE WHEN b.bound = 'DEFAULT' THEN NULL
            ELSE (regexp_match(b.bound, 'TO \(''([^'']+)''\)'))[1]::timestamptz END AS range_end,
       b.bound = 'DEFAULT' AS is_default
FROM pg_inherits i
JOIN pg_class c ON c.oid = i.inhrelid
CROSS JOIN LATERAL (SELECT pg_get_expr(c.relpartbound, c.oid) AS bound) b
WHERE i.inhparent = '@extschema@.logs'::regclass;
COMMENT ON VIEW @extschema@.partitions IS
    'Partitions of logagg.logs with their time ranges (the DEFAULT partition has none).';

-- The indexes every partition of logagg.logs has (see schema/00_core.sql
-- for why they are not on the parent): BRIN on ts for time ranges, btree
-- on (source, ts) for one service's recent records.  The partition is first
-- given to the owner of logagg.logs (logagg_owner): a superuser calling
-- the internal functions directly would otherwise own it, and the workers,
-- which run as logagg_owner, could not drop it at retention time.
CREATE FUNCTION @extschema@._index_partition(p_name text)
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
    PERFORM @extschema@._index_partition_search(p_name);  -- schema/60_search.sql
END
$fn$;
COMMENT ON FUNCTION @extschema@._index_partition(text) IS
    'Internal: gives one new logs partition to the owner of logagg.logs and creates its BRIN (ts) and btree (source, ts) indexes, and the search indexes logagg.index_messages and logagg.index_attrs ask for.';

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
-- ONLY the parent is locked: LOCK TABLE would also lock every partition,
-- and wait for a CREATE INDEX CONCURRENTLY of the maintenance worker
-- (schema/60_search.sql) that itself waits for this transaction to end.
CREATE FUNCTION @extschema@._ensure_partition(p_start timestamptz, p_secs int)
    RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    p_end  timestamptz := p_start + make_interval(secs => p_secs);
    p_name text;
    old_timeout text := current_setting('lock_timeout');
BEGIN
    LOCK TABLE ONLY @extschema@.logs IN SHARE UPDATE EXCLUSIVE MODE;
    IF EXISTS (SELECT 1 FROM @extschema@.partitions
               WHERE NOT is_default AND range_start < p_end AND range_end > p_start) THEN
        RETURN false;
    END IF;
    p_name := 'logs_' || to_char(p_start AT TIME ZONE 'UTC',
                                 CASE WHEN p_secs % 86400 = 0 THEN 'YYYYMMDD' ELSE 'YYYYMMDD_HH24MI' END);
    -- Creating or attaching a partition takes ACCESS EXCLUSIVE on logs (or
    -- logs_default), which waits for every transaction that read it -- a
    -- search that runs for seconds -- and meanwhile makes every insert of
    -- ingest wait behind it.  So wait at most 100 ms: the maintenance
    -- worker tries again on its next pass, a minute later (partitions are
    -- made a whole interval ahead).  lock_timeout is restored after the
    -- DDL, or by the rollback of this block.
    PERFORM set_config('lock_timeout', '100ms', true);
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
    PERFORM set_config('lock_timeout', old_timeout, true);
    RETURN true;
EXCEPTION
    WHEN duplicate_table THEN
        RETURN false;
    WHEN lock_not_available THEN
        RAISE WARNING 'partition % of logagg.logs not created now: transactions that read logagg.logs are still open', coalesce(p_name, p_start::text)
            USING DETAIL = 'Creating a partition waits for every open transaction that read logagg.logs (a long search), and ingest would wait behind it; it waited 100 ms.',
                  HINT = 'The maintenance worker tries again within a minute; logagg.maintain() tries now.';
        RETURN false;
END
$fn$;
COMMENT ON FUNCTION @extschema@._ensure_partition(timestamptz, int) IS
    'Internal: creates one logs partition, moving rows for its range out of the default partition.';

-- Partitions for the interval holding p_now and the next one, aligned to the
-- Unix epoch in UTC so that every process computes the same boundaries.
CREATE FUNCTION @extschema@._create_partitions(p_now timestamptz DEFAULT now())
    RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    secs    int := @extschema@._partition_interval_secs();
    start   timestamptz := to_timestamp(floor(extract(epoch FROM p_now) / secs) * secs);
    created int := 0;
BEGIN
    FOR i IN 0..1 LOOP
        IF @extschema@._ensure_partition(start + make_interval(secs => secs * i), secs) THEN
            created := created + 1;
        END IF;
    END LOOP;
    RETURN created;
END
$fn$;
COMMENT ON FUNCTION @extschema@._create_partitions(timestamptz) IS
    'Internal: ensures partitions for the current and next partition intervals; returns how many it created.';

CREATE FUNCTION @extschema@.maintain() RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER  -- creating partitions needs the owner of logagg.logs
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF @extschema@._node_role() = 'worker' THEN  -- schema/60_citus.sql
        RAISE NOTICE 'nothing to maintain on a Citus worker node'
            USING DETAIL = 'Partitions and retention of the distributed logagg.logs are run by the coordinator.';
        RETURN;
    END IF;
    PERFORM @extschema@._create_partitions(now());
    PERFORM @extschema@._run_retention();  -- schema/30_sync.sql
    -- search indexes of existing partitions: built CONCURRENTLY by the
    -- worker, which a function cannot do (schema/60_search.sql)
    PERFORM @extschema@._wake_maintenance();
END
$fn$;
COMMENT ON FUNCTION @extschema@.maintain() IS
    'Runs partition maintenance now (partitions for the current and next interval, then retention) and wakes the maintenance worker to build missing search indexes; the worker does the same periodically.';

CREATE FUNCTION @extschema@.fingerprint(source text, severity @extschema@.severity, status int, message text)
    RETURNS text
    LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'logagg_fingerprint_sql';
COMMENT ON FUNCTION @extschema@.fingerprint(text, @extschema@.severity, int, text) IS
    'Alert fingerprint: records with the same source, severity, status and message (numbers and ids masked) group into one alert.';

CREATE FUNCTION @extschema@.mask_message(message text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'logagg_mask_message_sql';
COMMENT ON FUNCTION @extschema@.mask_message(text) IS
    'The message as fingerprinting sees it: runs of digits, hex and dashes that contain a digit become #.';
