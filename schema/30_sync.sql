-- logagg cloud sync bookkeeping (DESIGN §6, docs/sync.md).
--
-- A window is logagg.partition_interval (or one hour when the interval is
-- longer) aligned to the Unix epoch in UTC.  Each (window, source) becomes
-- object part 0; rows that arrive later for a window already uploaded go
-- into parts 1, 2, ... on later cycles.  A part's rows are those of its
-- window and source with id above the highest id of the earlier parts.

CREATE TABLE @extschema@.sync_log (
    id           bigserial PRIMARY KEY,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    source       text NOT NULL,
    object_key   text,
    part         int NOT NULL DEFAULT 0,
    rows         bigint,
    bytes        bigint,
    checksum     text,
    status       text NOT NULL CHECK (status IN ('uploaded', 'failed')),
    error        text,
    started_at   timestamptz NOT NULL,
    finished_at  timestamptz NOT NULL DEFAULT now(),
    raw_bytes    bigint,
    min_id       bigint,
    max_id       bigint,
    upload_parts int,
    next_attempt_at timestamptz
);
CREATE INDEX sync_log_window ON @extschema@.sync_log (window_start, source);
-- A part is recorded as uploaded once, whatever retries happened before.
CREATE UNIQUE INDEX sync_log_uploaded_once ON @extschema@.sync_log (window_start, source, part)
    WHERE status = 'uploaded';
COMMENT ON TABLE @extschema@.sync_log IS
    'One row per cloud-sync upload attempt: the window, source, object key, rows, bytes and checksum, written only after the store confirmed the object.';
COMMENT ON COLUMN @extschema@.sync_log.part IS 'Object part of the window: 0 for the first upload, 1, 2, ... for rows that arrived after it.';
COMMENT ON COLUMN @extschema@.sync_log.rows IS 'Rows (NDJSON lines) in the object.';
COMMENT ON COLUMN @extschema@.sync_log.bytes IS 'Size of the object as stored (gzip-compressed NDJSON).';
COMMENT ON COLUMN @extschema@.sync_log.raw_bytes IS 'Size of the NDJSON before compression.';
COMMENT ON COLUMN @extschema@.sync_log.checksum IS '"sha256:" and the hex SHA-256 of the stored object''s bytes.';
COMMENT ON COLUMN @extschema@.sync_log.min_id IS 'Lowest logagg.logs id in the object.';
COMMENT ON COLUMN @extschema@.sync_log.max_id IS 'Highest logagg.logs id in the object; the next part of the window starts above it.';
COMMENT ON COLUMN @extschema@.sync_log.upload_parts IS 'S3 multipart upload parts used (0: a single PUT or a local file).';
COMMENT ON COLUMN @extschema@.sync_log.error IS 'Why a failed attempt failed (no credentials are ever included).';
COMMENT ON COLUMN @extschema@.sync_log.next_attempt_at IS 'For a failed attempt: the earliest time the maintenance worker retries it (exponential backoff); logagg.sync_now() retries at once.';

-- Work of one cycle: every (window, source) with rows in closed windows
-- that sync_log does not account for yet.  Windows are counted rather than
-- compared by id so that a window whose rows were all uploaded costs no
-- export; p_since limits how far back the scan looks (logagg.sync_lookback).
CREATE FUNCTION @extschema@._sync_pending(p_window_secs int, p_closed_before timestamptz,
                                          p_since timestamptz, p_force boolean)
    RETURNS TABLE (window_start timestamptz, window_end timestamptz, source text,
                   part int, after_id bigint, new_rows bigint)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    WITH present AS (
        SELECT l.source,
               to_timestamp(floor(extract(epoch FROM l.ts) / p_window_secs) * p_window_secs) AS ws,
               count(*) AS n
        FROM @extschema@.logs l
        WHERE l.ts < p_closed_before AND l.ts >= p_since
        GROUP BY 1, 2
    ), done AS (
        SELECT s.window_start AS ws, s.source, sum(s.rows) AS rows,
               max(s.max_id) AS max_id, max(s.part) AS part
        FROM @extschema@.sync_log s
        WHERE s.status = 'uploaded'
        GROUP BY 1, 2
    ), lastfail AS (
        SELECT DISTINCT ON (f.window_start, f.source)
               f.window_start AS ws, f.source, f.next_attempt_at
        FROM @extschema@.sync_log f
        WHERE f.status = 'failed'
        ORDER BY f.window_start, f.source, f.id DESC
    )
    SELECT p.ws, p.ws + make_interval(secs => p_window_secs), p.source,
           coalesce(d.part + 1, 0), coalesce(d.max_id, 0), p.n - coalesce(d.rows, 0)
    FROM present p
    LEFT JOIN done d ON d.ws = p.ws AND d.source = p.source
    LEFT JOIN lastfail f ON f.ws = p.ws AND f.source = p.source
    WHERE p.n > coalesce(d.rows, 0)
      AND (p_force OR f.next_attempt_at IS NULL OR f.next_attempt_at <= now())
    ORDER BY p.ws, p.source
$fn$;
COMMENT ON FUNCTION @extschema@._sync_pending(int, timestamptz, timestamptz, boolean) IS
    'Internal: (window, source) pairs of closed windows with rows not yet uploaded, with the part number and id watermark of the next object; p_force ignores retry backoff.';

-- Record one attempt.  p_error NULL = the store confirmed the object.
CREATE FUNCTION @extschema@._sync_record(
    p_window_start timestamptz, p_window_end timestamptz, p_source text, p_part int,
    p_key text, p_rows bigint, p_bytes bigint, p_raw_bytes bigint, p_checksum text,
    p_min_id bigint, p_max_id bigint, p_upload_parts int, p_started timestamptz,
    p_error text, p_backoff_secs int)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    failures int;
BEGIN
    IF p_error IS NULL THEN
        INSERT INTO @extschema@.sync_log (window_start, window_end, source, object_key, part, rows,
                                          bytes, raw_bytes, checksum, status, started_at,
                                          min_id, max_id, upload_parts, finished_at)
        VALUES (p_window_start, p_window_end, p_source, p_key, p_part, p_rows,
                p_bytes, p_raw_bytes, p_checksum, 'uploaded', p_started,
                p_min_id, p_max_id, p_upload_parts, clock_timestamp());
    ELSE
        SELECT count(*) INTO failures FROM @extschema@.sync_log
        WHERE window_start = p_window_start AND source = p_source AND part = p_part
          AND status = 'failed';
        INSERT INTO @extschema@.sync_log (window_start, window_end, source, object_key, part,
                                          status, error, started_at, finished_at, next_attempt_at)
        VALUES (p_window_start, p_window_end, p_source, p_key, p_part, 'failed', p_error, p_started,
                clock_timestamp(), clock_timestamp() + make_interval(secs => least(greatest(3600.0, 16.0 * p_backoff_secs),
                                                    p_backoff_secs * power(2, least(failures, 12)))));
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@._sync_record(timestamptz, timestamptz, text, int, text, bigint, bigint, bigint, text, bigint, bigint, int, timestamptz, text, int) IS
    'Internal: writes one sync_log row; a failed attempt gets next_attempt_at = now + logagg.sync_interval doubled per earlier failure of that part (at most an hour, or 16 intervals if longer).';

CREATE FUNCTION @extschema@.sync_now() RETURNS int
    LANGUAGE c VOLATILE SECURITY DEFINER  -- reads logagg.logs, writes sync_log as the extension owner
    SET search_path = pg_catalog, pg_temp
    AS 'MODULE_PATHNAME', 'logagg_sync_now';
COMMENT ON FUNCTION @extschema@.sync_now() IS
    'Runs a cloud-sync cycle now, in this session (waiting for a cycle the maintenance worker is running): uploads every closed window not yet synced, retrying failed ones at once. Returns the number of objects uploaded; failures are in logagg.sync_log and reported as a WARNING.';

-- ---------------------------------------------------------------------------
-- retention
-- ---------------------------------------------------------------------------
-- Drop partitions that ended more than p_retention_secs ago.  With a sync
-- target (p_check_sync) a partition goes only when sync_log accounts for
-- every row of every (window, source) in it; the partition is locked first
-- so no row can slip in between the check and the DROP.
CREATE FUNCTION @extschema@._drop_expired_partitions(p_retention_secs int, p_check_sync boolean,
                                                     p_window_secs int, p_now timestamptz DEFAULT now())
    RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r        record;
    unsynced boolean;
    dropped  int := 0;
BEGIN
    IF p_retention_secs <= 0 THEN
        RETURN 0;
    END IF;
    FOR r IN SELECT p.partition, p.range_start, p.range_end
             FROM @extschema@.partitions p
             WHERE NOT p.is_default
               AND p.range_end <= p_now - make_interval(secs => p_retention_secs)
             ORDER BY p.range_start
    LOOP
        IF p_check_sync THEN
            EXECUTE format('LOCK TABLE %s IN SHARE MODE', r.partition);
            EXECUTE format($q$
                SELECT EXISTS (
                    SELECT 1
                    FROM (SELECT source,
                                 to_timestamp(floor(extract(epoch FROM ts) / $1) * $1) AS ws,
                                 count(*) AS n
                          FROM %s GROUP BY 1, 2) c
                    LEFT JOIN (SELECT source, window_start AS ws, sum(rows) AS rows
                               FROM @extschema@.sync_log WHERE status = 'uploaded'
                               GROUP BY 1, 2) s ON s.source = c.source AND s.ws = c.ws
                    WHERE c.n > coalesce(s.rows, 0))$q$, r.partition)
                INTO unsynced USING p_window_secs;
            IF unsynced THEN
                RAISE LOG 'logagg: retention keeps partition % (older than retention, but not every window in it is synced)', r.partition;
                CONTINUE;
            END IF;
        END IF;
        EXECUTE format('DROP TABLE %s', r.partition);
        RAISE LOG 'logagg: retention dropped partition % (% to %)', r.partition, r.range_start, r.range_end;
        dropped := dropped + 1;
    END LOOP;
    RETURN dropped;
END
$fn$;
COMMENT ON FUNCTION @extschema@._drop_expired_partitions(int, boolean, int, timestamptz) IS
    'Internal: drops logs partitions older than the retention, keeping any with rows not yet synced when p_check_sync.';

CREATE FUNCTION @extschema@._run_retention() RETURNS int
    LANGUAGE c VOLATILE
    AS 'MODULE_PATHNAME', 'logagg_run_retention_sql';
COMMENT ON FUNCTION @extschema@._run_retention() IS
    'Internal: applies logagg.retention now (called by logagg.maintain()); returns the number of partitions dropped.';
