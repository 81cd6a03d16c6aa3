-- logagg cloud sync bookkeeping (docs/design.md §6, docs/sync.md).
--
-- A window is logagg.partition_interval (or one hour when the interval is
-- longer) aligned to the Unix epoch in UTC.  Each (window, source) becomes
-- object part 0; rows that arrive later for a window already uploaded go
-- into parts 1, 2, ... on later cycles.  Each part is exported under one
-- MVCC snapshot, recorded in export_snapshot; the next part's rows are
-- those of its window and source that this snapshot did not see
-- (NOT pg_visible_in_snapshot(_xid8(xmin), export_snapshot)).  Ids play no
-- part: they come from a sequence cached per session and say nothing about
-- commit order.

-- PostgreSQL 15 has no cast from xid (the type of the xmin system column)
-- to xid8 (what pg_visible_in_snapshot() takes).  The epoch is derived
-- from the next xid: its epoch, or the one before when the xid's 32 bits
-- are above the next xid's.  xmin keeps the inserting xid after freezing
-- (PostgreSQL >= 9.4), so this is exact for every row inserted within the
-- last 2^32 xids; an older one comes out 2^32 too new, which can only make
-- it look late (uploaded again), never hide a late row.  (src/sync_snapshot.c)
CREATE FUNCTION @extschema@._xid8(xid) RETURNS xid8
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'logagg_xid8_of_xid';
COMMENT ON FUNCTION @extschema@._xid8(xid) IS
    'Internal: the 64-bit xid8 of a 32-bit xid such as a row''s xmin (epoch derived from the next xid), for pg_visible_in_snapshot().';

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
    next_attempt_at timestamptz,
    export_snapshot pg_snapshot,
    export_system_id bigint,
    CHECK (status <> 'uploaded' OR export_snapshot IS NOT NULL)
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
COMMENT ON COLUMN @extschema@.sync_log.max_id IS 'Highest logagg.logs id in the object (informational: ids do not decide which rows a part holds).';
COMMENT ON COLUMN @extschema@.sync_log.export_snapshot IS
    'The MVCC snapshot the object''s rows were read with (subtransaction ids included); the next part of the window holds the rows of the window this snapshot did not see.';
COMMENT ON COLUMN @extschema@.sync_log.export_system_id IS
    'On a Citus cluster: the system identifier of the node whose snapshot export_snapshot is (the node holding the rows); NULL on a single server.';
COMMENT ON COLUMN @extschema@.sync_log.upload_parts IS 'S3 multipart upload parts used (0: a single PUT or a local file).';
COMMENT ON COLUMN @extschema@.sync_log.error IS 'Why a failed attempt failed (no credentials are ever included).';
COMMENT ON COLUMN @extschema@.sync_log.next_attempt_at IS 'For a failed attempt: the earliest time the maintenance worker retries it (exponential backoff); logagg.sync_now() retries at once.';

-- Work of one cycle: every (window, source) of closed windows with rows
-- that the snapshot of its latest uploaded part did not see (all its rows
-- when nothing was uploaded yet), with the part number and that snapshot
-- for the next object.  p_since limits how far back the scan looks
-- (logagg.sync_lookback).  date_bin() from the Unix epoch gives the same
-- window starts as floor(epoch / w) * w, several times faster than that
-- numeric arithmetic on every row.
CREATE FUNCTION @extschema@._sync_pending(p_window_secs int, p_closed_before timestamptz,
                                          p_since timestamptz, p_force boolean)
    RETURNS TABLE (window_start timestamptz, window_end timestamptz, source text,
                   part int, prev_snapshot pg_snapshot, new_rows bigint)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    WITH done AS (
        SELECT DISTINCT ON (s.window_start, s.source)
               s.window_start AS ws, s.source, s.part, s.export_snapshot
        FROM @extschema@.sync_log s
        WHERE s.status = 'uploaded'
        ORDER BY s.window_start, s.source, s.part DESC
    ), unsynced AS (
        SELECT p.ws, p.source, count(*) AS n
        FROM (SELECT l.source, l.xmin AS x,
                     date_bin(make_interval(secs => p_window_secs), l.ts, timestamptz '1970-01-01 00:00+00') AS ws
              FROM @extschema@.logs l
              WHERE l.ts < p_closed_before AND l.ts >= p_since) p
        LEFT JOIN done d ON d.ws = p.ws AND d.source = p.source
        WHERE d.ws IS NULL
           OR NOT pg_visible_in_snapshot(@extschema@._xid8(p.x), d.export_snapshot)
        GROUP BY 1, 2
    ), lastfail AS (
        SELECT DISTINCT ON (f.window_start, f.source)
               f.window_start AS ws, f.source, f.next_attempt_at
        FROM @extschema@.sync_log f
        WHERE f.status = 'failed'
        ORDER BY f.window_start, f.source, f.id DESC
    )
    SELECT u.ws, u.ws + make_interval(secs => p_window_secs), u.source,
           coalesce(d.part + 1, 0), d.export_snapshot, u.n
    FROM unsynced u
    LEFT JOIN done d ON d.ws = u.ws AND d.source = u.source
    LEFT JOIN lastfail f ON f.ws = u.ws AND f.source = u.source
    WHERE p_force OR f.next_attempt_at IS NULL OR f.next_attempt_at <= now()
    ORDER BY u.ws, u.source
$fn$;
COMMENT ON FUNCTION @extschema@._sync_pending(int, timestamptz, timestamptz, boolean) IS
    'Internal: (window, source) pairs of closed windows with rows not yet uploaded (not seen by the snapshot of the latest uploaded part), with the next part number and that snapshot; p_force ignores retry backoff.';

-- Record one attempt.  p_error NULL = the store confirmed the object.
CREATE FUNCTION @extschema@._sync_record(
    p_window_start timestamptz, p_window_end timestamptz, p_source text, p_part int,
    p_key text, p_rows bigint, p_bytes bigint, p_raw_bytes bigint, p_checksum text,
    p_min_id bigint, p_max_id bigint, p_upload_parts int, p_started timestamptz,
    p_error text, p_backoff_secs int, p_snapshot pg_snapshot)
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
                                          min_id, max_id, upload_parts, finished_at, export_snapshot)
        VALUES (p_window_start, p_window_end, p_source, p_key, p_part, p_rows,
                p_bytes, p_raw_bytes, p_checksum, 'uploaded', p_started,
                p_min_id, p_max_id, p_upload_parts, clock_timestamp(), p_snapshot);
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
COMMENT ON FUNCTION @extschema@._sync_record(timestamptz, timestamptz, text, int, text, bigint, bigint, bigint, text, bigint, bigint, int, timestamptz, text, int, pg_snapshot) IS
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
-- target (p_check_sync) a partition goes only when every row in it was
-- seen by the snapshot of the latest uploaded part of its (window, source),
-- i.e. is in an uploaded object; the partition is locked first so no row
-- can slip in between the check and the DROP.  The check must read rows
-- committed up to the lock, so it needs READ COMMITTED (a REPEATABLE READ
-- snapshot taken before the lock could miss some).
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
    old_timeout text := current_setting('lock_timeout');
BEGIN
    IF p_retention_secs <= 0 THEN
        RETURN 0;
    END IF;
    IF p_check_sync AND current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE WARNING 'logagg: retention skipped: it must run in a READ COMMITTED transaction'
            USING DETAIL = 'Whether a partition is fully synced is checked after locking it, which needs a fresh snapshot.',
                  HINT = 'Run logagg.maintain() outside a REPEATABLE READ or SERIALIZABLE transaction.';
        RETURN 0;
    END IF;
    FOR r IN SELECT p.partition, p.range_start, p.range_end
             FROM @extschema@.partitions p
             WHERE NOT p.is_default
               AND p.range_end <= p_now - make_interval(secs => p_retention_secs)
             ORDER BY p.range_start
    LOOP
        BEGIN
            -- Dropping a partition takes ACCESS EXCLUSIVE on logs, which
            -- waits for every transaction that read it (a long search, an
            -- open psql session) while every insert of ingest queues
            -- behind the wait.  So wait at most 100 ms and keep the
            -- partition until the next pass, a minute later.  lock_timeout
            -- is restored after the DROP, or by the rollback of this block.
            PERFORM set_config('lock_timeout', '100ms', true);
            IF p_check_sync THEN
                EXECUTE format('LOCK TABLE %s IN SHARE MODE', r.partition);
                EXECUTE format($q$
                    SELECT EXISTS (
                        SELECT 1
                        FROM %s l
                        LEFT JOIN (SELECT DISTINCT ON (window_start, source)
                                          window_start AS ws, source, export_snapshot
                                   FROM @extschema@.sync_log WHERE status = 'uploaded'
                                   ORDER BY window_start, source, part DESC) s
                          ON s.source = l.source
                         AND s.ws = date_bin(make_interval(secs => $1), l.ts, timestamptz '1970-01-01 00:00+00')
                        WHERE s.ws IS NULL
                           OR NOT pg_visible_in_snapshot(@extschema@._xid8(l.xmin), s.export_snapshot))$q$,
                    r.partition)
                    INTO unsynced USING p_window_secs;
                IF unsynced THEN
                    PERFORM set_config('lock_timeout', old_timeout, true);
                    RAISE LOG 'logagg: retention keeps partition % (older than retention, but not every window in it is synced)', r.partition;
                    CONTINUE;
                END IF;
            END IF;
            EXECUTE format('DROP TABLE %s', r.partition);
            PERFORM set_config('lock_timeout', old_timeout, true);
            RAISE LOG 'logagg: retention dropped partition % (% to %)', r.partition, r.range_start, r.range_end;
            dropped := dropped + 1;
        EXCEPTION
            WHEN lock_not_available THEN
                RAISE WARNING 'logagg: retention keeps partition % for now: transactions that read logagg.logs are still open', r.partition
                    USING DETAIL = 'Dropping a partition waits for every open transaction that read logagg.logs (a long search), and ingest would wait behind it; it waited 100 ms.',
                          HINT = 'The maintenance worker tries again within a minute; logagg.maintain() tries now.';
        END;
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
