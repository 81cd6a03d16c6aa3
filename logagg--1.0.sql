-- logagg core schema: roles, severity, logs, classification rules, sources,
-- streams, rejected records, status.  (Concatenated with the other
-- schema/*.sql files, in name order, into logagg--1.0.sql by the Makefile.)

\echo Use "CREATE EXTENSION logagg" to load this file. \quit

-- Roles are cluster-wide, so a second database's CREATE EXTENSION finds them.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'logagg_admin') THEN
        CREATE ROLE logagg_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'logagg_reader') THEN
        CREATE ROLE logagg_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'logagg_writer') THEN
        CREATE ROLE logagg_writer NOLOGIN;
    END IF;
END
$roles$;

GRANT USAGE ON SCHEMA @extschema@ TO logagg_admin, logagg_reader, logagg_writer;

CREATE TYPE @extschema@.severity AS ENUM ('critical', 'high', 'low');
COMMENT ON TYPE @extschema@.severity IS
    'Alert severity; declared most urgent first so ORDER BY severity puts critical first.';

-- ---------------------------------------------------------------------------
-- logs
-- ---------------------------------------------------------------------------
CREATE SEQUENCE @extschema@.logs_id_seq AS bigint CACHE 1000;
COMMENT ON SEQUENCE @extschema@.logs_id_seq IS 'Row ids of logagg.logs (cached per session for fast ingest).';

CREATE TABLE @extschema@.logs (
    id          bigint      NOT NULL DEFAULT nextval('@extschema@.logs_id_seq'),
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    source      text        NOT NULL,
    level       text,
    severity    @extschema@.severity NOT NULL,
    status      int,
    message     text,
    trace_id    text,
    span_id     text,
    stream      text,
    seq         bigint,
    attrs       jsonb
) PARTITION BY RANGE (ts);
ALTER SEQUENCE @extschema@.logs_id_seq OWNED BY @extschema@.logs.id;

COMMENT ON TABLE @extschema@.logs IS
    'Every accepted log record, range-partitioned on ts (logagg.partition_interval); logs_default catches timestamps outside every partition.';
COMMENT ON COLUMN @extschema@.logs.ts IS 'Event time (record ts, or receive time when absent).';
COMMENT ON COLUMN @extschema@.logs.received_at IS 'When the server received the record.';
COMMENT ON COLUMN @extschema@.logs.source IS 'Emitting service; fixed by the token when token auth is on.';
COMMENT ON COLUMN @extschema@.logs.level IS 'Normalised level: trace, debug, info, notice, warn, error, fatal.';
COMMENT ON COLUMN @extschema@.logs.severity IS 'Verdict of logagg.rules at ingest time.';
COMMENT ON COLUMN @extschema@.logs.status IS 'HTTP status of the request the record describes.';
COMMENT ON COLUMN @extschema@.logs.stream IS 'Durable stream id of the protocol (?stream=), NULL when not given.';
COMMENT ON COLUMN @extschema@.logs.seq IS 'Per-stream sequence number, NULL when not given.';
COMMENT ON COLUMN @extschema@.logs.attrs IS 'Every record field logagg does not map to a column.';

CREATE TABLE @extschema@.logs_default PARTITION OF @extschema@.logs DEFAULT;
COMMENT ON TABLE @extschema@.logs_default IS
    'Default partition: records whose ts falls outside every time partition are stored here, never refused.';

-- Indexes are made per partition (here and in _ensure_partition), not on
-- the parent: a partitioned index owned by the extension would make
-- pg_dump's output fail on restore ("relation ... already exists"), since
-- ATTACH PARTITION would create each partition's index before the dump's
-- own CREATE INDEX for it.  Queries on logagg.logs use them all the same.
CREATE INDEX logs_default_ts_brin ON @extschema@.logs_default USING brin (ts);
CREATE INDEX logs_default_source_ts ON @extschema@.logs_default (source, ts);

-- ---------------------------------------------------------------------------
-- classification rules
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.rules (
    id            serial PRIMARY KEY,
    rule_order    int  NOT NULL,
    status_min    int,
    status_max    int,
    levels        text[],
    source        text,
    message_regex text,
    severity      @extschema@.severity NOT NULL,
    enabled       boolean NOT NULL DEFAULT true,
    comment       text,
    CONSTRAINT rules_status_range CHECK (status_min IS NULL OR status_max IS NULL OR status_min <= status_max),
    -- compiling the pattern here makes a bad regex fail at INSERT, not at ingest
    CONSTRAINT rules_regex_valid CHECK (message_regex IS NULL OR ('' ~ message_regex) IS NOT NULL)
);
CREATE INDEX rules_order ON @extschema@.rules (rule_order, id);
COMMENT ON TABLE @extschema@.rules IS
    'Ordered classification rules: the enabled rule with the lowest rule_order whose non-NULL matchers all match gives the severity; no match gives low. Changes apply to ingest at once, without a restart.';
COMMENT ON COLUMN @extschema@.rules.status_min IS 'Lowest HTTP status matched (with status_max); records without status never match a status rule.';
COMMENT ON COLUMN @extschema@.rules.levels IS 'Normalised levels matched (fatal, error, warn, ...).';
COMMENT ON COLUMN @extschema@.rules.source IS 'Source matched exactly.';
COMMENT ON COLUMN @extschema@.rules.message_regex IS 'POSIX regular expression matched against the message.';

INSERT INTO @extschema@.rules (rule_order, status_min, status_max, levels, severity, comment) VALUES
    (10, 500, 599, NULL, 'critical', 'server errors'),
    (20, 404, 404, NULL, 'critical', 'not found'),
    (30, 400, 499, NULL, 'high', 'other client errors (400, 401, 403, 429, ...)'),
    (40, NULL, NULL, '{fatal,critical}', 'critical', 'fatal log lines'),
    (50, NULL, NULL, '{error}', 'high', 'error log lines'),
    (1000, NULL, NULL, NULL, 'low', 'everything else');

-- ---------------------------------------------------------------------------
-- sources, streams, rejected records
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.sources (
    name        text PRIMARY KEY
                CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    token_hash  bytea NOT NULL UNIQUE,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
COMMENT ON TABLE @extschema@.sources IS
    'Log sources and the SHA-256 of their ingest token (the token itself is shown once by logagg.create_source and never stored).';

CREATE TABLE @extschema@.streams (
    stream_id   text PRIMARY KEY CHECK (length(stream_id) BETWEEN 1 AND 128),
    source      text,
    last_seq    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.streams IS
    'Durable ingest streams: last_seq is the highest sequence number committed, updated in the same transaction as the rows.';

CREATE TABLE @extschema@.rejected (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    peer        text,
    source      text,
    reason      text NOT NULL,
    raw         text
);
CREATE INDEX rejected_received_at ON @extschema@.rejected (received_at);
COMMENT ON TABLE @extschema@.rejected IS
    'Records refused at ingest, with the reason and the raw input (truncated); nothing is dropped silently.';
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

CREATE FUNCTION @extschema@.create_source(name text) RETURNS text
    LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'logagg_create_source';
COMMENT ON FUNCTION @extschema@.create_source(text) IS
    'Creates a log source and returns its ingest token. The token is shown only this once; only its SHA-256 is stored.';

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
-- on (source, ts) for one service's recent records.
CREATE FUNCTION @extschema@._index_partition(p_name text)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    EXECUTE format('CREATE INDEX %I ON @extschema@.%I USING brin (ts)', p_name || '_ts_brin', p_name);
    EXECUTE format('CREATE INDEX %I ON @extschema@.%I (source, ts)', p_name || '_source_ts', p_name);
END
$fn$;
COMMENT ON FUNCTION @extschema@._index_partition(text) IS
    'Internal: creates the BRIN (ts) and btree (source, ts) indexes of one logs partition.';

-- Create the partition [start, start + interval) unless an existing one
-- already overlaps it.  Rows that landed in the DEFAULT partition for that
-- range are moved in, because PostgreSQL refuses a new partition whose range
-- the default partition already holds rows for.
CREATE FUNCTION @extschema@._ensure_partition(p_start timestamptz, p_secs int)
    RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    p_end  timestamptz := p_start + make_interval(secs => p_secs);
    p_name text;
BEGIN
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
    PERFORM @extschema@._create_partitions(now());
    PERFORM @extschema@._run_retention();  -- schema/30_sync.sql
END
$fn$;
COMMENT ON FUNCTION @extschema@.maintain() IS
    'Runs partition maintenance now (partitions for the current and next interval, then retention); the maintenance worker does the same periodically.';

CREATE FUNCTION @extschema@.fingerprint(source text, severity @extschema@.severity, status int, message text)
    RETURNS text
    LANGUAGE c IMMUTABLE PARALLEL SAFE AS 'MODULE_PATHNAME', 'logagg_fingerprint_sql';
COMMENT ON FUNCTION @extschema@.fingerprint(text, @extschema@.severity, int, text) IS
    'Alert fingerprint: records with the same source, severity, status and message (numbers and ids masked) group into one alert.';

CREATE FUNCTION @extschema@.mask_message(message text) RETURNS text
    LANGUAGE c IMMUTABLE STRICT PARALLEL SAFE AS 'MODULE_PATHNAME', 'logagg_mask_message_sql';
COMMENT ON FUNCTION @extschema@.mask_message(text) IS
    'The message as fingerprinting sees it: runs of digits, hex and dashes that contain a digit become #.';
-- logagg alert engine, SQL side: destinations, routes, the priority queue,
-- delivery history, silences, the grouping state, and the functions the
-- ingest path (_enqueue_alerts), the dispatch workers (_claim_alerts,
-- _finish_alerts) and operators (add_destination, add_route, silence, ...)
-- call.  The C side is src/dispatcher.c, src/dest_*.c and src/alert_sql.c;
-- docs/alerts.md describes the behaviour for users.

CREATE TABLE @extschema@.destinations (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    kind        text NOT NULL CHECK (kind IN ('webhook', 'slack', 'email', 'sms', 'pagerduty')),
    config      jsonb NOT NULL DEFAULT '{}',
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.destinations IS
    'Where alerts go. config holds URLs and credentials and is readable only by superusers and logagg_admin (others use logagg.destinations_public). enabled = false pauses delivery: alerts wait in the queue.';
COMMENT ON COLUMN @extschema@.destinations.config IS
    'Kind-specific settings, secrets included (webhook: url, secret, headers; slack: webhook_url; email: smtp_url, from, to, username, password; sms: base_url, account_sid, auth_token, from, to; pagerduty: url, routing_key). Every kind also takes retry_base_ms, retry_max_ms and timeout_ms.';

CREATE TABLE @extschema@.routes (
    id           serial PRIMARY KEY,
    destination  text NOT NULL REFERENCES @extschema@.destinations (name) ON DELETE CASCADE ON UPDATE CASCADE,
    min_severity @extschema@.severity NOT NULL,
    source       text,
    group_window interval NOT NULL DEFAULT '1 min' CHECK (group_window >= '0'),
    enabled      boolean NOT NULL DEFAULT true,
    created_at   timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.routes IS
    'Which alerts go to which destination: severity at least min_severity (critical is the most severe) and source (NULL = any), grouped per fingerprint over group_window.';

CREATE TABLE @extschema@.alert_queue (
    id              bigserial PRIMARY KEY,
    severity        @extschema@.severity NOT NULL,
    route_id        int REFERENCES @extschema@.routes (id) ON DELETE CASCADE,
    destination     text NOT NULL REFERENCES @extschema@.destinations (name) ON DELETE CASCADE ON UPDATE CASCADE,
    fingerprint     text NOT NULL,
    source          text,
    log_id          bigint,
    count           bigint NOT NULL DEFAULT 1,
    first_seen      timestamptz NOT NULL DEFAULT now(),
    last_seen       timestamptz NOT NULL DEFAULT now(),
    payload         jsonb NOT NULL DEFAULT '{}',
    attempts        int NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    claimed_by      int,
    claimed_at      timestamptz,
    dead_at         timestamptz
);
CREATE INDEX alert_queue_pending ON @extschema@.alert_queue (severity, next_attempt_at, id)
    WHERE dead_at IS NULL;
CREATE INDEX alert_queue_destination ON @extschema@.alert_queue (destination);
CREATE INDEX alert_queue_route ON @extschema@.alert_queue (route_id);
COMMENT ON TABLE @extschema@.alert_queue IS
    'Alerts waiting for delivery; dispatchers take them most severe first with FOR UPDATE SKIP LOCKED. A row leaves only in the transaction that records its outcome in logagg.alert_log. Dead alerts (dead_at set) stay here until logagg.retry_alert or logagg.purge_dead.';
COMMENT ON COLUMN @extschema@.alert_queue.id IS
    'Also the notification''s alert_id and Idempotency-Key: the same on every retry.';
COMMENT ON COLUMN @extschema@.alert_queue.next_attempt_at IS
    'When the alert is due: now for a new group, the end of the group window for a summary, the backoff for a retry, or the lease end while a dispatcher is sending it.';
COMMENT ON COLUMN @extschema@.alert_queue.claimed_by IS
    'Dispatch worker number sending it now (NULL when waiting).';
COMMENT ON COLUMN @extschema@.alert_queue.dead_at IS
    'Set when delivery gave up (logagg.alert_max_attempts reached or a permanent error).';

CREATE TABLE @extschema@.alert_log (
    id           bigserial PRIMARY KEY,
    alert_id     bigint NOT NULL,
    at           timestamptz NOT NULL DEFAULT now(),
    destination  text,
    route_id     int,
    severity     @extschema@.severity,
    fingerprint  text,
    source       text,
    count        bigint,
    attempt      int,
    outcome      text NOT NULL CHECK (outcome IN ('delivered', 'failed', 'dead', 'silenced')),
    http_status  int,
    latency_ms   double precision,
    error        text,
    next_attempt_at timestamptz
);
CREATE INDEX alert_log_at ON @extschema@.alert_log (at);
CREATE INDEX alert_log_alert ON @extschema@.alert_log (alert_id);
COMMENT ON TABLE @extschema@.alert_log IS
    'Every delivery attempt''s outcome: delivered, failed (will retry at next_attempt_at), dead (gave up) or silenced.';

CREATE TABLE @extschema@.silences (
    id            serial PRIMARY KEY,
    source        text,
    fingerprint   text,
    message_regex text CHECK (message_regex IS NULL OR ('' ~ message_regex) IS NOT NULL),
    starts_at     timestamptz NOT NULL DEFAULT now(),
    ends_at       timestamptz NOT NULL,
    comment       text,
    created_by    text NOT NULL DEFAULT current_user,
    CHECK (ends_at > starts_at)
);
COMMENT ON TABLE @extschema@.silences IS
    'Mutes: alerts matching every non-NULL matcher between starts_at and ends_at are not sent (logged as silenced).';

-- Grouping state, one row per (route, fingerprint) seen recently.
CREATE TABLE @extschema@._alert_groups (
    route_id         int NOT NULL REFERENCES @extschema@.routes (id) ON DELETE CASCADE,
    fingerprint      text NOT NULL,
    notified_at      timestamptz NOT NULL,  -- due time of the latest notification
    last_record_at   timestamptz NOT NULL,  -- when the group last received records
    pending_alert_id bigint,                -- summary still collecting records, if any
    PRIMARY KEY (route_id, fingerprint)
);
COMMENT ON TABLE @extschema@._alert_groups IS
    'Internal: grouping state per (route, fingerprint): when the group was last notified and which queued summary still collects records.';

-- The dispatch workers are woken at COMMIT of any transaction that queued
-- alerts (SQL ingest, test_destination), so alerts leave within ms.
CREATE FUNCTION @extschema@._wake_dispatchers() RETURNS trigger
    LANGUAGE c AS 'MODULE_PATHNAME', 'logagg_wake_dispatchers_trigger';
COMMENT ON FUNCTION @extschema@._wake_dispatchers() IS
    'Internal: statement trigger that wakes the dispatch workers when the transaction commits.';
CREATE TRIGGER alert_queue_wake AFTER INSERT ON @extschema@.alert_queue
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._wake_dispatchers();

-- ---------------------------------------------------------------------------
-- ingest entry point
-- ---------------------------------------------------------------------------

-- Entry point from ingest (the batch writer and logagg.ingest()): called
-- once per batch, inside the batch's transaction, with one element per
-- (severity, fingerprint) group of alert-worthy records in the batch:
--   [{"severity": "critical", "source": "...", "fingerprint": "...",
--     "status": 503, "level": "error", "message": "sample",
--     "log_id": 123, "count": 42,
--     "first_seen": "2026-...Z", "last_seen": "2026-...Z"}, ...]
-- Returns the number of alert_queue rows written or updated.
--
-- Grouping timeline per (route, fingerprint), docs/design.md §5: the first records
-- of a group are queued due now; while records keep arriving, they are
-- added to one pending summary due group_window after the previous
-- notification; a group without records for a whole window ends.  Every
-- record is counted in exactly one queue row per route.
CREATE FUNCTION @extschema@._enqueue_alerts(groups jsonb) RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    g        record;
    r        record;
    st       record;
    n        int := 0;
    v_now    timestamptz := now();
    v_due    timestamptz;
    v_id     bigint;
    v_sample jsonb;
BEGIN
    IF groups IS NULL OR jsonb_typeof(groups) <> 'array' THEN
        RETURN 0;
    END IF;
    FOR g IN
        SELECT (e->>'severity')::@extschema@.severity AS severity,
               e->>'source' AS source,
               e->>'fingerprint' AS fingerprint,
               e->'status' AS status, e->'level' AS level, e->'message' AS message,
               (e->>'log_id')::bigint AS log_id,
               greatest(coalesce((e->>'count')::bigint, 1), 1) AS cnt,
               coalesce((e->>'first_seen')::timestamptz, v_now) AS first_seen,
               coalesce((e->>'last_seen')::timestamptz, (e->>'first_seen')::timestamptz, v_now) AS last_seen
        FROM jsonb_array_elements(groups) e
        WHERE e->>'severity' IS NOT NULL AND e->>'fingerprint' IS NOT NULL
    LOOP
        v_sample := jsonb_build_object('status', g.status, 'level', g.level, 'message', g.message);
        FOR r IN
            SELECT rt.id, rt.destination, rt.group_window
            FROM @extschema@.routes rt
            JOIN @extschema@.destinations d ON d.name = rt.destination AND d.enabled
            WHERE rt.enabled
              AND g.severity <= rt.min_severity
              AND (rt.source IS NULL OR rt.source = g.source)
            ORDER BY rt.id
        LOOP
            -- creates or locks the group's state row (xmax = 0: just inserted)
            INSERT INTO @extschema@._alert_groups AS s
                (route_id, fingerprint, notified_at, last_record_at)
            VALUES (r.id, g.fingerprint, v_now, v_now)
            ON CONFLICT (route_id, fingerprint)
                DO UPDATE SET route_id = s.route_id
            RETURNING s.notified_at, s.last_record_at, s.pending_alert_id,
                      (s.xmax = 0) AS inserted
            INTO st;

            IF st.inserted OR st.last_record_at < v_now - r.group_window THEN
                -- a new group (or one that ended): notify at once
                INSERT INTO @extschema@.alert_queue
                    (severity, route_id, destination, fingerprint, source, log_id,
                     count, first_seen, last_seen, payload, next_attempt_at)
                VALUES (g.severity, r.id, r.destination, g.fingerprint, g.source, g.log_id,
                        g.cnt, g.first_seen, g.last_seen, v_sample, v_now);
                UPDATE @extschema@._alert_groups
                   SET notified_at = v_now, last_record_at = v_now, pending_alert_id = NULL
                 WHERE route_id = r.id AND fingerprint = g.fingerprint;
            ELSE
                -- an active group: add to the pending summary while no
                -- dispatcher has started sending it, else schedule the next
                UPDATE @extschema@.alert_queue
                   SET count = count + g.cnt,
                       first_seen = least(first_seen, g.first_seen),
                       last_seen = greatest(last_seen, g.last_seen),
                       log_id = coalesce(g.log_id, log_id),
                       payload = v_sample
                 WHERE id = st.pending_alert_id AND attempts = 0 AND claimed_by IS NULL
                       AND dead_at IS NULL;
                IF FOUND THEN
                    UPDATE @extschema@._alert_groups SET last_record_at = v_now
                     WHERE route_id = r.id AND fingerprint = g.fingerprint;
                ELSE
                    v_due := greatest(v_now, st.notified_at + r.group_window);
                    INSERT INTO @extschema@.alert_queue
                        (severity, route_id, destination, fingerprint, source, log_id,
                         count, first_seen, last_seen, payload, next_attempt_at)
                    VALUES (g.severity, r.id, r.destination, g.fingerprint, g.source, g.log_id,
                            g.cnt, g.first_seen, g.last_seen, v_sample, v_due)
                    RETURNING id INTO v_id;
                    UPDATE @extschema@._alert_groups
                       SET notified_at = v_due, last_record_at = v_now, pending_alert_id = v_id
                     WHERE route_id = r.id AND fingerprint = g.fingerprint;
                END IF;
            END IF;
            n := n + 1;
        END LOOP;
    END LOOP;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION @extschema@._enqueue_alerts(jsonb) IS
    'Internal: called once per ingest batch with its alert groups; routes them, applies the group_window timeline and queues notifications. Returns the number of queue rows written or updated.';

-- ---------------------------------------------------------------------------
-- dispatch worker side
-- ---------------------------------------------------------------------------

-- ISO 8601 UTC text, the same whatever the session's TimeZone.
CREATE FUNCTION @extschema@._utc(t timestamptz) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    RETURN to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"');
COMMENT ON FUNCTION @extschema@._utc(timestamptz) IS
    'Internal: timestamp as ISO 8601 UTC text, as used in notification payloads.';

-- Take up to p_limit due alerts for dispatch worker p_worker, most severe
-- first, skipping rows another dispatcher (or an ingest transaction adding
-- to a summary) holds.  A taken row is leased: its next_attempt_at moves
-- p_lease_ms ahead, so a dispatcher that dies mid-send leaves it to be
-- retried, never lost.  Due alerts that a silence matches are logged as
-- silenced and removed in the same transaction.
CREATE FUNCTION @extschema@._claim_alerts(p_limit int, p_worker int, p_lease_ms int)
    RETURNS TABLE (id bigint, severity text, source text, fingerprint text,
                   count bigint, first_seen timestamptz, last_seen timestamptz, status int,
                   level text, message text, destination text, kind text,
                   config jsonb, attempts int, is_test boolean, payload jsonb)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    -- Every access to alert_queue here has an index path (alert_queue_pending
    -- for taking, the pkey for "id = ANY"); after a burst or a DELETE the
    -- statistics can make a seq scan of a bloated queue look cheaper, and
    -- that plan is then cached (measured: a seq scan per cycle held a
    -- 20,000-alert burst to ~1,600/s after the ingest-load phase).
    SET enable_seqscan = off
    -- enable_seqscan = off adds its disable cost to plans that still need a
    -- seq scan (silences, a tiny table): never JIT-compile these statements
    -- for that (measured: LLVM on every cycle, 400 alerts/s)
    SET jit = off
AS $fn$
#variable_conflict use_column
BEGIN
    IF EXISTS (SELECT 1 FROM @extschema@.silences s
               WHERE now() >= s.starts_at AND now() < s.ends_at) THEN
        WITH muted AS (
            SELECT q.id AS qid,
                   (SELECT s.id FROM @extschema@.silences s
                     WHERE now() >= s.starts_at AND now() < s.ends_at
                       AND (s.source IS NULL OR s.source = q.source)
                       AND (s.fingerprint IS NULL OR s.fingerprint = q.fingerprint)
                       AND (s.message_regex IS NULL OR coalesce(q.payload->>'message', '') ~ s.message_regex)
                     ORDER BY s.id LIMIT 1) AS silence_id
            FROM @extschema@.alert_queue q
            WHERE q.dead_at IS NULL AND q.next_attempt_at <= now()
              AND NOT coalesce((q.payload->>'test')::boolean, false)
            ORDER BY q.severity, q.next_attempt_at, q.id
            FOR UPDATE OF q SKIP LOCKED
            LIMIT 1000
        ), gone AS (
            DELETE FROM @extschema@.alert_queue q
             USING muted m
             WHERE q.id = m.qid AND m.silence_id IS NOT NULL
            RETURNING q.*, m.silence_id
        )
        INSERT INTO @extschema@.alert_log
            (alert_id, destination, route_id, severity, fingerprint, source, count,
             attempt, outcome, error)
        SELECT gone.id, gone.destination, gone.route_id, gone.severity, gone.fingerprint,
               gone.source, gone.count, gone.attempts, 'silenced',
               'silenced by silence ' || gone.silence_id
        FROM gone;
    END IF;

    RETURN QUERY
    WITH due AS (
        SELECT q.id AS qid, q.next_attempt_at AS due_at
        FROM @extschema@.alert_queue q
        WHERE q.dead_at IS NULL AND q.next_attempt_at <= now()
          AND EXISTS (SELECT 1 FROM @extschema@.destinations d
                      WHERE d.name = q.destination AND d.enabled)
        ORDER BY q.severity, q.next_attempt_at, q.id
        FOR UPDATE OF q SKIP LOCKED
        LIMIT p_limit
    ), taken AS (
        -- "id = ANY (ids)", not "FROM due WHERE q.id = due.qid": this plan
        -- is cached while the queue is nearly empty, and for a join the
        -- planner then reads the whole queue (hash or nested loop over
        -- alert_queue_pkey) on every claim once a burst has filled it
        -- (measured: ~1,400 claims/s instead of 5,000 for the first seconds
        -- of a 20,000-alert burst, until autoanalyze replanned).  An array
        -- condition is one pkey probe per id whatever the statistics say.
        UPDATE @extschema@.alert_queue q
           SET attempts = q.attempts + 1,
               claimed_by = p_worker,
               claimed_at = clock_timestamp(),
               next_attempt_at = now() + make_interval(secs => p_lease_ms / 1000.0)
         WHERE q.id = ANY (ARRAY(SELECT due.qid FROM due))
        RETURNING q.*
    )
    -- the notification body (fixed fields, docs/alerts.md) is built by the
    -- worker from these columns (dispatcher.c: build_payload); building it
    -- here cost a jsonb_build_object and four _utc() calls per alert
    SELECT t.id, t.severity::text, t.source, t.fingerprint, t.count,
           t.first_seen, t.last_seen,
           CASE WHEN jsonb_typeof(t.payload->'status') = 'number'
                THEN (t.payload->>'status')::numeric::int END,
           t.payload->>'level', t.payload->>'message', t.destination, d.kind, d.config,
           t.attempts, coalesce((t.payload->>'test')::boolean, false),
           t.payload
    FROM taken t
    JOIN due ON due.qid = t.id
    JOIN @extschema@.destinations d ON d.name = t.destination
    ORDER BY t.severity, due.due_at, t.id;
END
$fn$;
COMMENT ON FUNCTION @extschema@._claim_alerts(int, int, int) IS
    'Internal: dispatch worker p_worker takes up to p_limit due alerts (ORDER BY severity, next_attempt_at, id FOR UPDATE SKIP LOCKED), leased for p_lease_ms; silenced ones are logged and removed.';

-- Backoff before retry number `attempts + 1`: exponential from the
-- destination's retry_base_ms (default 1 s) up to retry_max_ms (default
-- 5 min), with jitter in [50 %, 100 %] so that a receiver recovering from
-- an outage is not hit by every retry at the same instant.
CREATE FUNCTION @extschema@._backoff(attempts int, config jsonb) RETURNS interval
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
    RETURN make_interval(secs =>
        least(coalesce((config->>'retry_max_ms')::float8, 300000),
              coalesce((config->>'retry_base_ms')::float8, 1000)
                * power(2, least(greatest(attempts, 1) - 1, 30)))
        * (0.5 + random() * 0.5) / 1000.0);
COMMENT ON FUNCTION @extschema@._backoff(int, jsonb) IS
    'Internal: retry delay after the given number of attempts: exponential with jitter, bounded by the destination''s retry_base_ms / retry_max_ms.';

-- Record the outcomes of finished deliveries, one transaction per call:
-- each outcome goes to alert_log and its queue row is deleted (delivered),
-- marked dead, or rescheduled, together.  results: [{"id", "ok",
-- "permanent", "http_status", "latency_ms", "error", "retry_after"}].
CREATE FUNCTION @extschema@._finish_alerts(results jsonb, max_attempts int)
    RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    -- Every access to alert_queue here has an index path (alert_queue_pending
    -- for taking, the pkey for "id = ANY"); after a burst or a DELETE the
    -- statistics can make a seq scan of a bloated queue look cheaper, and
    -- that plan is then cached (measured: a seq scan per cycle held a
    -- 20,000-alert burst to ~1,600/s after the ingest-load phase).
    SET enable_seqscan = off
    -- enable_seqscan = off adds its disable cost to plans that still need a
    -- seq scan (silences, a tiny table): never JIT-compile these statements
    -- for that (measured: LLVM on every cycle, 400 alerts/s)
    SET jit = off
AS $fn$
DECLARE
    e      record;
    a      record;
    n      int;
    v_next timestamptz;
BEGIN
    WITH r AS (
        SELECT * FROM jsonb_to_recordset(results)
            AS x(id bigint, ok boolean, http_status int, latency_ms float8)
        WHERE x.ok
    ), gone AS (
        -- an array condition, not a join with r: see _claim_alerts
        DELETE FROM @extschema@.alert_queue q
         WHERE q.id = ANY (ARRAY(SELECT r.id FROM r))
        RETURNING q.*
    )
    INSERT INTO @extschema@.alert_log
        (alert_id, destination, route_id, severity, fingerprint, source, count,
         attempt, outcome, http_status, latency_ms)
    SELECT gone.id, gone.destination, gone.route_id, gone.severity, gone.fingerprint,
           gone.source, gone.count, gone.attempts, 'delivered', r.http_status, r.latency_ms
    FROM gone JOIN r ON r.id = gone.id;
    GET DIAGNOSTICS n = ROW_COUNT;

    FOR e IN
        SELECT * FROM jsonb_to_recordset(results)
            AS x(id bigint, ok boolean, permanent boolean, http_status int,
                 latency_ms float8, error text, retry_after float8)
        WHERE NOT x.ok
    LOOP
        SELECT q.*, d.config INTO a
          FROM @extschema@.alert_queue q
          LEFT JOIN @extschema@.destinations d ON d.name = q.destination
         WHERE q.id = e.id
           FOR UPDATE OF q;
        CONTINUE WHEN NOT FOUND;    -- removed meanwhile (destination deleted)
        IF coalesce(e.permanent, false) OR a.attempts >= max_attempts THEN
            UPDATE @extschema@.alert_queue
               SET dead_at = now(), claimed_by = NULL, last_error = e.error
             WHERE id = e.id;
            INSERT INTO @extschema@.alert_log
                (alert_id, destination, route_id, severity, fingerprint, source, count,
                 attempt, outcome, http_status, latency_ms, error)
            VALUES (a.id, a.destination, a.route_id, a.severity, a.fingerprint, a.source,
                    a.count, a.attempts, 'dead', e.http_status, e.latency_ms, e.error);
        ELSE
            v_next := now() + CASE WHEN e.retry_after IS NOT NULL
                                   THEN make_interval(secs => least(greatest(e.retry_after, 0), 86400))
                                   ELSE @extschema@._backoff(a.attempts, a.config) END;
            UPDATE @extschema@.alert_queue
               SET next_attempt_at = v_next, claimed_by = NULL, last_error = e.error
             WHERE id = e.id;
            INSERT INTO @extschema@.alert_log
                (alert_id, destination, route_id, severity, fingerprint, source, count,
                 attempt, outcome, http_status, latency_ms, error, next_attempt_at)
            VALUES (a.id, a.destination, a.route_id, a.severity, a.fingerprint, a.source,
                    a.count, a.attempts, 'failed', e.http_status, e.latency_ms, e.error, v_next);
        END IF;
        n := n + 1;
    END LOOP;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION @extschema@._finish_alerts(jsonb, int) IS
    'Internal: writes delivery outcomes to alert_log and deletes, reschedules (backoff with jitter or Retry-After) or marks dead the queue rows, in one transaction.';

-- Called by a dispatch worker at start: alerts it had taken before it
-- restarted are due again at once (their lease would otherwise delay them).
CREATE FUNCTION @extschema@._release_claims(p_worker int) RETURNS int
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH r AS (
        UPDATE @extschema@.alert_queue
           SET claimed_by = NULL, next_attempt_at = now()
         WHERE claimed_by = p_worker AND dead_at IS NULL
        RETURNING 1)
    SELECT count(*)::int FROM r;
END;
COMMENT ON FUNCTION @extschema@._release_claims(int) IS
    'Internal: makes the alerts a restarted dispatch worker had taken due again.';

-- When the next alert falls due: the dispatch workers sleep until then.
CREATE FUNCTION @extschema@._next_due() RETURNS timestamptz
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT min(n) FROM (
        SELECT (SELECT q.next_attempt_at FROM @extschema@.alert_queue q
                 WHERE q.severity = sev AND q.dead_at IS NULL
                   AND EXISTS (SELECT 1 FROM @extschema@.destinations d
                               WHERE d.name = q.destination AND d.enabled)
                 ORDER BY q.next_attempt_at LIMIT 1) AS n
        FROM unnest(enum_range(NULL::@extschema@.severity)) AS sev) x;
END;
COMMENT ON FUNCTION @extschema@._next_due() IS
    'Internal: the earliest next_attempt_at of live queue rows of enabled destinations (one index probe per severity).';

-- Forget groups that have ended (no records for a whole window).
CREATE FUNCTION @extschema@._expire_groups() RETURNS int
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH d AS (
        DELETE FROM @extschema@._alert_groups g
         USING @extschema@.routes r
         WHERE r.id = g.route_id
           AND g.last_record_at < now() - r.group_window - interval '1 min'
           AND g.notified_at < now()
        RETURNING 1)
    SELECT count(*)::int FROM d;
END;
COMMENT ON FUNCTION @extschema@._expire_groups() IS
    'Internal: removes grouping state of groups that have ended.';

-- ---------------------------------------------------------------------------
-- SQL API for operators
-- ---------------------------------------------------------------------------

-- Check a destination config; raises with the offending key's name (never
-- its value: the values may be secrets).
CREATE FUNCTION @extschema@._validate_destination(kind text, config jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    allowed  text[];
    required text[];
    k        text;
    v        jsonb;
    common   text[] := ARRAY['retry_base_ms', 'retry_max_ms', 'timeout_ms'];
BEGIN
    IF config IS NULL OR jsonb_typeof(config) <> 'object' THEN
        RAISE EXCEPTION 'destination config must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    CASE kind
        WHEN 'webhook' THEN
            required := ARRAY['url'];
            allowed := ARRAY['url', 'secret', 'headers'];
        WHEN 'slack' THEN
            required := ARRAY['webhook_url'];
            allowed := ARRAY['webhook_url', 'channel', 'username'];
        WHEN 'email' THEN
            required := ARRAY['smtp_url', 'from', 'to'];
            allowed := ARRAY['smtp_url', 'from', 'to', 'username', 'password', 'starttls', 'insecure_tls'];
        WHEN 'sms' THEN
            required := ARRAY['account_sid', 'auth_token', 'from', 'to'];
            allowed := ARRAY['base_url', 'account_sid', 'auth_token', 'from', 'to'];
        WHEN 'pagerduty' THEN
            required := ARRAY['routing_key'];
            allowed := ARRAY['url', 'routing_key'];
        ELSE
            RAISE EXCEPTION 'unknown destination kind "%"', kind
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use one of webhook, slack, email, sms, pagerduty.';
    END CASE;
    allowed := allowed || common;

    FOREACH k IN ARRAY required LOOP
        IF NOT config ? k OR jsonb_typeof(config->k) = 'null' THEN
            RAISE EXCEPTION '% destination config lacks "%"', kind, k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('A %s destination needs: %s.', kind, array_to_string(required, ', '));
        END IF;
    END LOOP;

    FOR k, v IN SELECT * FROM jsonb_each(config) LOOP
        IF NOT k = ANY (allowed) THEN
            RAISE EXCEPTION 'unknown key "%" in % destination config', k, kind
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Allowed keys: %s.', array_to_string(allowed, ', '));
        END IF;
        IF k IN ('to') THEN
            IF NOT (jsonb_typeof(v) = 'string'
                    OR (jsonb_typeof(v) = 'array' AND jsonb_array_length(v) > 0
                        AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v) x
                                        WHERE jsonb_typeof(x) <> 'string'))) THEN
                RAISE EXCEPTION '"to" in % destination config must be a non-empty array of strings', kind
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF k = 'headers' THEN
            IF jsonb_typeof(v) <> 'object' OR EXISTS (SELECT 1 FROM jsonb_each(v) h
                                                      WHERE jsonb_typeof(h.value) <> 'string'
                                                         OR h.key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$') THEN
                RAISE EXCEPTION '"headers" in webhook destination config must be an object of header names to string values'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF k IN ('retry_base_ms', 'retry_max_ms', 'timeout_ms') THEN
            IF jsonb_typeof(v) <> 'number' OR (v::text)::numeric < 1 THEN
                RAISE EXCEPTION '"%" in destination config must be a positive number of milliseconds', k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF k IN ('starttls', 'insecure_tls') THEN
            IF jsonb_typeof(v) <> 'boolean' THEN
                RAISE EXCEPTION '"%" in email destination config must be true or false', k
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF jsonb_typeof(v) <> 'string' OR v #>> '{}' = '' THEN
            RAISE EXCEPTION '"%" in % destination config must be a non-empty string', k, kind
                USING ERRCODE = 'invalid_parameter_value';
        ELSIF k IN ('url', 'webhook_url', 'base_url') AND v #>> '{}' !~* '^https?://[^/?#]+' THEN
            RAISE EXCEPTION '"%" in % destination config must be an http:// or https:// URL', k, kind
                USING ERRCODE = 'invalid_parameter_value';
        ELSIF k = 'smtp_url' AND v #>> '{}' !~* '^smtps?://[^/?#]+' THEN
            RAISE EXCEPTION '"smtp_url" in email destination config must be an smtp:// or smtps:// URL'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use smtp://host:587 with "starttls": true, smtps://host:465, or smtp://host:25.';
        END IF;
    END LOOP;
END
$fn$;
COMMENT ON FUNCTION @extschema@._validate_destination(text, jsonb) IS
    'Internal: checks a destination config for its kind; errors name the key, never the value.';

-- SECURITY DEFINER so that log_min_error_statement can be raised for the
-- call: a rejected call must not copy its config (secrets) into the server
-- log as the failing STATEMENT.
CREATE FUNCTION @extschema@.add_destination(name text, kind text, config jsonb)
    RETURNS void
    LANGUAGE plpgsql SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
    SET log_min_error_statement = panic
AS $fn$
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' THEN
        RAISE EXCEPTION 'invalid destination name "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 1-128 letters, digits, ".", "_" or "-", starting with a letter or digit.';
    END IF;
    PERFORM @extschema@._validate_destination(kind, config);
    INSERT INTO @extschema@.destinations AS d (name, kind, config)
    VALUES (add_destination.name, add_destination.kind, add_destination.config)
    ON CONFLICT ON CONSTRAINT destinations_pkey
        DO UPDATE SET kind = EXCLUDED.kind, config = EXCLUDED.config, updated_at = now();
END
$fn$;
COMMENT ON FUNCTION @extschema@.add_destination(text, text, jsonb) IS
    'Creates or replaces a destination (webhook, slack, email, sms, pagerduty); the config is checked for the kind. See docs/alerts.md for the keys.';

CREATE FUNCTION @extschema@.remove_destination(name text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    DELETE FROM @extschema@.destinations d WHERE d.name = remove_destination.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'destination "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT name FROM logagg.destinations_public lists them.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@.remove_destination(text) IS
    'Deletes a destination with its routes and its queued alerts (their history stays in alert_log).';

CREATE FUNCTION @extschema@._set_destination_enabled(p_name text, p_enabled boolean) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE @extschema@.destinations SET enabled = p_enabled, updated_at = now()
     WHERE name = p_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'destination "%" does not exist', p_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT name FROM logagg.destinations_public lists them.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@._set_destination_enabled(text, boolean) IS
    'Internal: pause_destination / resume_destination.';

CREATE FUNCTION @extschema@.pause_destination(name text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM @extschema@._set_destination_enabled(name, false);
END
$fn$;
COMMENT ON FUNCTION @extschema@.pause_destination(text) IS
    'Stops delivery to a destination: nothing new is queued for it and queued alerts wait until logagg.resume_destination.';

CREATE FUNCTION @extschema@.resume_destination(name text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM @extschema@._set_destination_enabled(name, true);
    PERFORM @extschema@._wake_dispatchers_at_commit();
END
$fn$;
COMMENT ON FUNCTION @extschema@.resume_destination(text) IS
    'Resumes delivery to a paused destination; its queued alerts are sent at once.';

CREATE FUNCTION @extschema@.add_route(destination text, min_severity @extschema@.severity,
                                      source text DEFAULT NULL,
                                      group_window interval DEFAULT '1 min')
    RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_id int;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.destinations d WHERE d.name = add_route.destination) THEN
        RAISE EXCEPTION 'destination "%" does not exist', destination
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create it first with logagg.add_destination(name, kind, config).';
    END IF;
    IF min_severity IS NULL THEN
        RAISE EXCEPTION 'min_severity must not be NULL'
            USING ERRCODE = 'null_value_not_allowed',
                  HINT = 'critical routes only critical alerts, high routes critical and high, low routes all.';
    END IF;
    IF group_window IS NULL OR group_window < '0' THEN
        RAISE EXCEPTION 'group_window must be zero or positive'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    INSERT INTO @extschema@.routes (destination, min_severity, source, group_window)
    VALUES (add_route.destination, add_route.min_severity, add_route.source, add_route.group_window)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$fn$;
COMMENT ON FUNCTION @extschema@.add_route(text, @extschema@.severity, text, interval) IS
    'Routes alerts of at least min_severity (and of source, NULL = any) to a destination, grouped per fingerprint over group_window. Returns the route id.';

CREATE FUNCTION @extschema@.remove_route(id int) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    DELETE FROM @extschema@.routes r WHERE r.id = remove_route.id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'route % does not exist', id
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT * FROM logagg.routes lists them.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@.remove_route(int) IS
    'Deletes a route and its queued alerts.';

CREATE FUNCTION @extschema@.silence(source text, fingerprint text, duration interval,
                                    comment text, message_regex text)
    RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_id int;
BEGIN
    IF duration IS NULL OR duration <= '0' THEN
        RAISE EXCEPTION 'silence duration must be positive'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example logagg.silence(''service-a'', NULL, ''2 hours'', ''deploy'').';
    END IF;
    INSERT INTO @extschema@.silences (source, fingerprint, message_regex, starts_at, ends_at, comment)
    VALUES (silence.source, silence.fingerprint, silence.message_regex, now(), now() + duration, silence.comment)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$fn$;
COMMENT ON FUNCTION @extschema@.silence(text, text, interval, text, text) IS
    'Mutes alerts matching source, fingerprint and message_regex (NULL = any) for duration; muted alerts are logged as silenced. Returns the silence id.';

-- The fixed four-argument form (docs/design.md §3).  A separate function rather
-- than a DEFAULT on the five-argument one, so both signatures exist.
CREATE FUNCTION @extschema@.silence(source text, fingerprint text, duration interval, comment text)
    RETURNS int
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT @extschema@.silence(source, fingerprint, duration, comment, NULL::text)
$fn$;
COMMENT ON FUNCTION @extschema@.silence(text, text, interval, text) IS
    'Mutes alerts matching source and fingerprint (NULL = any) for duration; muted alerts are logged as silenced. Returns the silence id.';

CREATE FUNCTION @extschema@.unsilence(id int) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE @extschema@.silences s SET ends_at = greatest(now(), s.starts_at + interval '1 microsecond')
     WHERE s.id = unsilence.id AND s.ends_at > now();
    IF NOT FOUND THEN
        RAISE EXCEPTION 'silence % does not exist or has already ended', id
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT * FROM logagg.silences WHERE ends_at > now() lists the active ones.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@.unsilence(int) IS
    'Ends a silence now (it stays in logagg.silences as history).';

CREATE FUNCTION @extschema@.test_destination(name text) RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_id bigint;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM @extschema@.destinations d WHERE d.name = test_destination.name) THEN
        RAISE EXCEPTION 'destination "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT name FROM logagg.destinations_public lists them.';
    END IF;
    INSERT INTO @extschema@.alert_queue
        (severity, destination, fingerprint, source, count, payload)
    VALUES ('critical', test_destination.name, 'test', 'logagg', 1,
            jsonb_build_object('test', true, 'level', 'info', 'status', NULL,
                               'message', 'logagg test notification for destination ' || test_destination.name))
    RETURNING id INTO v_id;
    RETURN v_id;
END
$fn$;
COMMENT ON FUNCTION @extschema@.test_destination(text) IS
    'Queues a test notification to the destination now (sent within milliseconds after COMMIT, silences do not apply). Returns its alert_id; SELECT * FROM logagg.alert_log WHERE alert_id = ... shows the outcome.';

CREATE FUNCTION @extschema@.retry_alert(id bigint) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE @extschema@.alert_queue q
       SET dead_at = NULL, attempts = 0, next_attempt_at = now(), claimed_by = NULL
     WHERE q.id = retry_alert.id AND q.claimed_by IS NULL;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'alert % is not waiting in the queue', id
            USING ERRCODE = 'undefined_object',
                  HINT = 'It was delivered, silenced, or is being sent now; see logagg.alert_log.';
    END IF;
    PERFORM @extschema@._wake_dispatchers_at_commit();
END
$fn$;
COMMENT ON FUNCTION @extschema@.retry_alert(bigint) IS
    'Sends a dead (or waiting) alert again now, with a fresh attempt budget and the same alert_id.';

CREATE FUNCTION @extschema@.purge_dead(older_than interval DEFAULT '0') RETURNS int
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH d AS (
        DELETE FROM @extschema@.alert_queue
         WHERE dead_at IS NOT NULL AND dead_at <= now() - older_than
        RETURNING 1)
    SELECT count(*)::int FROM d;
END;
COMMENT ON FUNCTION @extschema@.purge_dead(interval) IS
    'Deletes dead alerts from the queue (their history stays in alert_log). Returns how many.';

CREATE FUNCTION @extschema@._wake_dispatchers_at_commit() RETURNS void
    LANGUAGE c AS 'MODULE_PATHNAME', 'logagg_wake_dispatchers_at_commit';
COMMENT ON FUNCTION @extschema@._wake_dispatchers_at_commit() IS
    'Internal: wakes the dispatch workers when the current transaction commits.';

-- Config with secrets replaced, for logagg_reader and dashboards.
CREATE FUNCTION @extschema@._redact_config(config jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    RETURN (
        SELECT coalesce(jsonb_object_agg(k,
            CASE
                WHEN k IN ('secret', 'password', 'auth_token', 'routing_key', 'webhook_url')
                    THEN to_jsonb('********'::text)
                WHEN k = 'headers' AND jsonb_typeof(v) = 'object'
                    THEN (SELECT coalesce(jsonb_object_agg(h.key, '********'), '{}') FROM jsonb_each(v) h)
                WHEN jsonb_typeof(v) = 'string' AND k IN ('url', 'base_url', 'smtp_url')
                    -- user:password@ in a URL
                    THEN to_jsonb(regexp_replace(v #>> '{}', '^([a-z]+://)[^/@]*@', '\1********@', 'i'))
                ELSE v
            END), '{}')
        FROM jsonb_each(config) AS e(k, v));
COMMENT ON FUNCTION @extschema@._redact_config(jsonb) IS
    'Internal: a destination config with secrets, header values and URL credentials replaced by ********.';

CREATE VIEW @extschema@.destinations_public AS
SELECT d.name, d.kind, @extschema@._redact_config(d.config) AS config, d.enabled,
       d.created_at, d.updated_at,
       (SELECT count(*) FROM @extschema@.routes r WHERE r.destination = d.name) AS routes,
       (SELECT count(*) FROM @extschema@.alert_queue q
         WHERE q.destination = d.name AND q.dead_at IS NULL) AS queued,
       (SELECT count(*) FROM @extschema@.alert_queue q
         WHERE q.destination = d.name AND q.dead_at IS NOT NULL) AS dead
FROM @extschema@.destinations d;
COMMENT ON VIEW @extschema@.destinations_public IS
    'Destinations with secrets redacted, their number of routes, and queued / dead alerts: what logagg_reader may see.';

CREATE VIEW @extschema@.alert_summary AS
SELECT q.destination, q.severity,
       count(*) FILTER (WHERE q.dead_at IS NULL AND q.claimed_by IS NULL AND q.next_attempt_at <= now()) AS due,
       count(*) FILTER (WHERE q.dead_at IS NULL AND q.claimed_by IS NULL AND q.next_attempt_at > now()) AS scheduled,
       count(*) FILTER (WHERE q.dead_at IS NULL AND q.claimed_by IS NOT NULL) AS sending,
       count(*) FILTER (WHERE q.dead_at IS NOT NULL) AS dead,
       min(q.created_at) FILTER (WHERE q.dead_at IS NULL) AS oldest
FROM @extschema@.alert_queue q
GROUP BY q.destination, q.severity;
COMMENT ON VIEW @extschema@.alert_summary IS
    'Queue at a glance per destination and severity: due now, scheduled (summaries, retries), being sent, dead.';
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
-- it look late (uploaded again), never hide a late row.  (src/sync.c)
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
-- What pg_dump keeps of logagg (docs/operations.md, "Backups").
--
-- pg_dump writes an extension as one CREATE EXTENSION: the objects of
-- this script are re-created, but rows in its tables are dumped only for
-- tables (and sequences) marked here.  Marked: the configuration users
-- build (sources and their token hashes, streams with their last_seq,
-- rules, destinations, routes, silences) and the data logagg accepted or
-- produced (the DEFAULT partition of logs, rejected records, the alert
-- queue and history), with the sequences that number them, so that a
-- restored database goes on where the dumped one stopped.  The time
-- partitions of logs are created at run time, are not members of the
-- extension, and are dumped like any table.
--
-- Not marked: sync_log (its export snapshots are transaction ids of the
-- dumped cluster and mean nothing in another; after a restore, sync
-- uploads every window again under the same object keys) and
-- _alert_groups (grouping state that expires within a group window).

SELECT pg_catalog.pg_extension_config_dump('@extschema@.sources', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.streams', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.rules', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.rules_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.destinations', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.routes', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.routes_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.silences', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.silences_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.logs_default', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.logs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.rejected', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.rejected_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_queue', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_queue_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_log', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_log_id_seq', '');

-- CREATE EXTENSION seeds rules 1-6 before pg_dump's data for rules is
-- restored, and the dump holds those rows too (perhaps edited: a rule
-- disabled, a severity changed).  A restored row whose id is already
-- there replaces that row instead of failing the whole COPY.  Only the
-- six seeded ids are concerned; inserts take new ids from rules_id_seq.
CREATE FUNCTION @extschema@._rules_restore_replace() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE @extschema@.rules
       SET rule_order = NEW.rule_order, status_min = NEW.status_min,
           status_max = NEW.status_max, levels = NEW.levels, source = NEW.source,
           message_regex = NEW.message_regex, severity = NEW.severity,
           enabled = NEW.enabled, comment = NEW.comment
     WHERE id = NEW.id;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION @extschema@._rules_restore_replace() IS
    'Internal: lets a pg_dump restore replace the seeded rules (same id) instead of failing on their primary key.';
CREATE TRIGGER rules_restore_replace BEFORE INSERT ON @extschema@.rules
    FOR EACH ROW WHEN (NEW.id <= 6) EXECUTE FUNCTION @extschema@._rules_restore_replace();
-- logagg privileges.  Kept last so that it sees every object.
--
-- logagg_reader: read logs, queues and history, never secrets.
-- logagg_writer: ingest through SQL.
-- logagg_admin:  configure everything (and read secrets).

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;

GRANT SELECT ON @extschema@.logs, @extschema@.logs_default, @extschema@.rules,
      @extschema@.streams, @extschema@.rejected, @extschema@.routes,
      @extschema@.alert_queue, @extschema@.alert_log, @extschema@.silences,
      @extschema@.sync_log, @extschema@.partitions
    TO logagg_reader;
-- column grants: token hashes and destination configs stay hidden
GRANT SELECT (name, enabled, created_at, revoked_at) ON @extschema@.sources TO logagg_reader;
GRANT SELECT (name, kind, enabled, created_at, updated_at) ON @extschema@.destinations TO logagg_reader;

GRANT logagg_reader, logagg_writer TO logagg_admin;
GRANT ALL ON ALL TABLES IN SCHEMA @extschema@ TO logagg_admin;
GRANT ALL ON ALL SEQUENCES IN SCHEMA @extschema@ TO logagg_admin;

GRANT EXECUTE ON FUNCTION @extschema@.classify(int, text, text, text),
                          @extschema@.normalize_level(text),
                          @extschema@.fingerprint(text, @extschema@.severity, int, text),
                          @extschema@.mask_message(text)
    TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.status() TO logagg_reader;
GRANT EXECUTE ON FUNCTION @extschema@.create_source(text),
                          @extschema@.rotate_source_token(text),
                          @extschema@.revoke_source(text),
                          @extschema@.maintain()
    TO logagg_admin;
GRANT EXECUTE ON FUNCTION @extschema@.ingest(jsonb) TO logagg_writer;
-- cloud sync (schema/30_sync.sql)
GRANT EXECUTE ON FUNCTION @extschema@.sync_now() TO logagg_admin;
-- alerts (schema/20_alerts.sql): admin configures; reader sees the queue,
-- history, silences and the redacted destinations, never configs.
GRANT SELECT ON @extschema@.destinations_public, @extschema@.alert_summary TO logagg_reader;
GRANT EXECUTE ON FUNCTION @extschema@._redact_config(jsonb) TO logagg_reader;
GRANT EXECUTE ON FUNCTION @extschema@.add_destination(text, text, jsonb),
                          @extschema@.remove_destination(text),
                          @extschema@.pause_destination(text),
                          @extschema@.resume_destination(text),
                          @extschema@.add_route(text, @extschema@.severity, text, interval),
                          @extschema@.remove_route(int),
                          @extschema@.silence(text, text, interval, text, text),
                          @extschema@.silence(text, text, interval, text),
                          @extschema@.unsilence(int),
                          @extschema@.test_destination(text),
                          @extschema@.retry_alert(bigint),
                          @extschema@.purge_dead(interval),
                          @extschema@._set_destination_enabled(text, boolean),
                          @extschema@._wake_dispatchers_at_commit()
    TO logagg_admin;
