-- logagg alert engine, SQL side: destinations, routes, the priority queue,
-- delivery history, silences, the grouping state, and the functions the
-- ingest path (_enqueue_alerts), the dispatch workers (_claim_alerts,
-- _finish_alerts) and operators (add_destination, add_route, silence, ...)
-- call.  The C side is src/dispatcher.c, src/dest_*.c and src/alert_sql.c;
-- docs/alerts.md describes the behaviour for users.

CREATE TABLE @extschema@.destinations (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    kind        text NOT NULL CHECK (kind IN ('webhook', 'slack', 'email', 'sms', 'pagerduty', 'alertmanager')),
    config      jsonb NOT NULL DEFAULT '{}',
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.destinations IS
    'Where alerts go. config holds URLs and credentials and is readable only by superusers and logagg_admin (others use logagg.destinations_public). enabled = false pauses delivery: alerts wait in the queue.';
COMMENT ON COLUMN @extschema@.destinations.config IS
    'Kind-specific settings, secrets included (webhook: url, secret, signature_version, headers; slack: webhook_url; email: smtp_url, from, to, username, password, starttls, insecure_tls; sms: base_url, account_sid, auth_token, from, to; pagerduty: url, routing_key). Every kind also takes retry_base_ms, retry_max_ms, timeout_ms and allow_insecure.';

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
-- Grouping timeline per (route, fingerprint), docs/design.md §5: the
-- first records of a group are queued due now; while records keep
-- arriving, they are added to one pending summary due group_window after
-- the previous notification; a group without records for a whole window
-- ends.  Every record is counted in exactly one queue row per route.
-- Storm guard: a route queues at most max_notifications new notifications
-- per group_window; the groups beyond go into one digest per window
-- (_route_admit, _add_to_digest in schema/25_alert_rules.sql), whose
-- count still adds up to their records.  Routes are taken in id order;
-- their label matchers (source, severity, status, level, fingerprint)
-- must all hold, and one with "continue" = false ends the list.
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
    v_labels jsonb;
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
        v_labels := jsonb_build_object('source', g.source, 'severity', g.severity,
                                       'status', g.status #>> '{}', 'level', g.level #>> '{}',
                                       'fingerprint', g.fingerprint);
        FOR r IN
            SELECT rt.id, rt.destination, rt.group_window, rt.max_notifications, rt."continue"
            FROM @extschema@.routes rt
            JOIN @extschema@.destinations d ON d.name = rt.destination AND d.enabled
            WHERE rt.enabled
              AND g.severity <= rt.min_severity
              AND (rt.source IS NULL OR rt.source = g.source)
              AND (rt.matchers = '[]' OR @extschema@._route_matches(rt.matchers, v_labels))
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
                -- a new group (or one that ended): notify at once, unless
                -- the route's storm guard is spent: then into its digest
                IF @extschema@._route_admit(r.id, r.group_window, r.max_notifications) THEN
                    INSERT INTO @extschema@.alert_queue
                        (severity, route_id, destination, fingerprint, source, log_id,
                         count, first_seen, last_seen, payload, next_attempt_at)
                    VALUES (g.severity, r.id, r.destination, g.fingerprint, g.source, g.log_id,
                            g.cnt, g.first_seen, g.last_seen, v_sample, v_now);
                    v_id := NULL;
                ELSE
                    v_id := @extschema@._add_to_digest(r.id, r.destination, r.group_window, g.severity,
                                                       g.cnt, g.first_seen, g.last_seen);
                END IF;
                UPDATE @extschema@._alert_groups
                   SET notified_at = v_now, last_record_at = v_now, pending_alert_id = v_id
                 WHERE route_id = r.id AND fingerprint = g.fingerprint;
            ELSE
                -- an active group: add to the pending summary while no
                -- dispatcher has started sending it, else schedule the next
                UPDATE @extschema@.alert_queue q
                   SET count = q.count + g.cnt,
                       first_seen = least(q.first_seen, g.first_seen),
                       last_seen = greatest(q.last_seen, g.last_seen),
                       log_id = CASE WHEN q.payload ? 'digest' THEN q.log_id ELSE coalesce(g.log_id, q.log_id) END,
                       -- a digest keeps its own text, with the new count
                       payload = CASE WHEN q.payload ? 'digest'
                                      THEN q.payload || jsonb_build_object('message',
                                               format('and %s more alerts from %s fingerprints',
                                                      q.count + g.cnt, q.payload->>'fingerprints'))
                                      ELSE v_sample END
                 WHERE q.id = st.pending_alert_id AND q.attempts = 0 AND q.claimed_by IS NULL
                       AND q.dead_at IS NULL;
                IF FOUND THEN
                    UPDATE @extschema@._alert_groups SET last_record_at = v_now
                     WHERE route_id = r.id AND fingerprint = g.fingerprint;
                ELSE
                    v_due := greatest(v_now, st.notified_at + r.group_window);
                    IF @extschema@._route_admit(r.id, r.group_window, r.max_notifications) THEN
                        INSERT INTO @extschema@.alert_queue
                            (severity, route_id, destination, fingerprint, source, log_id,
                             count, first_seen, last_seen, payload, next_attempt_at)
                        VALUES (g.severity, r.id, r.destination, g.fingerprint, g.source, g.log_id,
                                g.cnt, g.first_seen, g.last_seen, v_sample, v_due)
                        RETURNING id INTO v_id;
                    ELSE
                        v_id := @extschema@._add_to_digest(r.id, r.destination, r.group_window, g.severity,
                                                           g.cnt, g.first_seen, g.last_seen);
                    END IF;
                    UPDATE @extschema@._alert_groups
                       SET notified_at = v_due, last_record_at = v_now, pending_alert_id = v_id
                     WHERE route_id = r.id AND fingerprint = g.fingerprint;
                END IF;
            END IF;
            n := n + 1;
            -- a route with "continue" = false is the last one the alert takes
            EXIT WHEN NOT r."continue";
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

-- A silence's message_regex is the user's pattern: evaluated under
-- logagg.regex_timeout (src/regex_limit.c) so that no pattern can stall a
-- dispatch worker; one that runs out of time does not match (the alert is
-- sent rather than silenced) and is reported as a WARNING.
CREATE FUNCTION @extschema@._regex_match(subject text, pattern text) RETURNS boolean
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'logagg_regex_match_sql';
COMMENT ON FUNCTION @extschema@._regex_match(text, text) IS
    'Internal: subject ~ pattern, under logagg.regex_timeout (false when the pattern runs out of time).';

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
                       AND (s.message_regex IS NULL OR @extschema@._regex_match(coalesce(q.payload->>'message', ''), s.message_regex))
                     ORDER BY s.id LIMIT 1) AS silence_id
            FROM @extschema@.alert_queue q
            WHERE q.dead_at IS NULL AND q.next_attempt_at <= now()
              AND NOT coalesce(q.payload->'test' = 'true'::jsonb, false)
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

    -- routes in one of their mute time intervals send nothing: their due
    -- alerts are logged as silenced, like Alertmanager drops them
    IF EXISTS (SELECT 1 FROM @extschema@.routes rt
               WHERE rt.mute_time_intervals <> '[]'
                 AND @extschema@._route_muted(rt.mute_time_intervals, now())) THEN
        WITH gone AS (
            DELETE FROM @extschema@.alert_queue q
             WHERE q.id = ANY (ARRAY(
                SELECT q2.id
                FROM @extschema@.alert_queue q2
                JOIN @extschema@.routes rt ON rt.id = q2.route_id
                WHERE q2.dead_at IS NULL AND q2.next_attempt_at <= now()
                  AND NOT coalesce(q2.payload->'test' = 'true'::jsonb, false)
                  AND rt.mute_time_intervals <> '[]'
                  AND @extschema@._route_muted(rt.mute_time_intervals, now())
                ORDER BY q2.severity, q2.next_attempt_at, q2.id
                FOR UPDATE OF q2 SKIP LOCKED
                LIMIT 1000))
            RETURNING q.*
        )
        INSERT INTO @extschema@.alert_log
            (alert_id, destination, route_id, severity, fingerprint, source, count,
             attempt, outcome, error)
        SELECT gone.id, gone.destination, gone.route_id, gone.severity, gone.fingerprint,
               gone.source, gone.count, gone.attempts, 'silenced',
               'muted by the mute_time_intervals of route ' || gone.route_id
        FROM gone;
    END IF;

    -- inhibition: while a matching rule alert fires, targets are not sent
    IF EXISTS (SELECT 1 FROM @extschema@.inhibit_rules)
       AND EXISTS (SELECT 1 FROM @extschema@.alerts a WHERE a.state = 'firing') THEN
        WITH cand AS (
            SELECT q.id AS qid, @extschema@._inhibited_by(q) AS rule_id
            FROM @extschema@.alert_queue q
            WHERE q.dead_at IS NULL AND q.next_attempt_at <= now()
              AND NOT coalesce(q.payload->'test' = 'true'::jsonb, false)
            ORDER BY q.severity, q.next_attempt_at, q.id
            FOR UPDATE OF q SKIP LOCKED
            LIMIT 1000
        ), gone AS (
            DELETE FROM @extschema@.alert_queue q
             USING cand c
             WHERE q.id = c.qid AND c.rule_id IS NOT NULL
            RETURNING q.*, c.rule_id
        )
        INSERT INTO @extschema@.alert_log
            (alert_id, destination, route_id, severity, fingerprint, source, count,
             attempt, outcome, error)
        SELECT gone.id, gone.destination, gone.route_id, gone.severity, gone.fingerprint,
               gone.source, gone.count, gone.attempts, 'silenced',
               'inhibited by inhibit rule ' || gone.rule_id
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
               -- a destination's own timeout_ms may be longer than the
               -- dispatcher's lease: then the lease covers it (plus the
               -- dispatcher's 30 s margin), else a second dispatcher would
               -- take and send the alert while the first still waits
               next_attempt_at = now() + make_interval(secs => greatest(p_lease_ms,
                   (SELECT least(greatest((d.config->'timeout_ms')::numeric, 1), 600000) + 30000
                      FROM @extschema@.destinations d
                     WHERE d.name = q.destination
                       AND jsonb_typeof(d.config->'timeout_ms') = 'number')) / 1000.0)
         WHERE q.id = ANY (ARRAY(SELECT due.qid FROM due))
        RETURNING q.*
    )
    -- the notification body (fixed fields, docs/alerts.md) is built by the
    -- worker from these columns (dispatcher.c: build_payload); building it
    -- here cost a jsonb_build_object and four _utc() calls per alert
    SELECT t.id, t.severity::text, t.source, t.fingerprint, t.count,
           t.first_seen, t.last_seen,
           -- nothing in a payload may fail the claim (and with it every
           -- other alert of the cycle): out-of-range values are dropped
           CASE WHEN jsonb_typeof(t.payload->'status') = 'number'
                     AND (t.payload->'status')::numeric BETWEEN -2147483648 AND 2147483647
                THEN (t.payload->'status')::numeric::int END,
           t.payload->>'level', t.payload->>'message', t.destination, d.kind, d.config,
           t.attempts, coalesce(t.payload->'test' = 'true'::jsonb, false),
           t.payload
    FROM taken t
    JOIN due ON due.qid = t.id
    JOIN @extschema@.destinations d ON d.name = t.destination
    ORDER BY t.severity, due.due_at, t.id;
END
$fn$;
COMMENT ON FUNCTION @extschema@._claim_alerts(int, int, int) IS
    'Internal: dispatch worker p_worker takes up to p_limit due alerts (ORDER BY severity, next_attempt_at, id FOR UPDATE SKIP LOCKED), leased for p_lease_ms (longer when the destination''s timeout_ms needs it); silenced ones are logged and removed.';

-- Backoff before retry number `attempts + 1`: exponential from the
-- destination's retry_base_ms (default 1 s) up to retry_max_ms (default
-- 5 min), with jitter in [50 %, 100 %] so that a receiver recovering from
-- an outage is not hit by every retry at the same instant.  The config
-- values are clamped to the range add_destination allows (1 ms to a day),
-- so that no stored config can make this fail inside _finish_alerts.
CREATE FUNCTION @extschema@._backoff(attempts int, config jsonb) RETURNS interval
    LANGUAGE sql VOLATILE
    SET search_path = pg_catalog, pg_temp
    RETURN make_interval(secs =>
        least(CASE WHEN jsonb_typeof(config->'retry_max_ms') = 'number'
                   THEN least(greatest((config->'retry_max_ms')::numeric, 1), 86400000)::float8
                   ELSE 300000 END,
              CASE WHEN jsonb_typeof(config->'retry_base_ms') = 'number'
                   THEN least(greatest((config->'retry_base_ms')::numeric, 1), 86400000)::float8
                   ELSE 1000 END
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
-- its value: the values may be secrets).  Besides keys and types it checks
-- what the dispatcher relies on: numbers within the range it applies
-- (docs/alerts.md "Limits"), no control characters in any string (a line
-- break in a header value or an e-mail address would start a header of the
-- sender's choosing), and no credential sent over a cleartext connection
-- unless the admin says so with "allow_insecure": true.
CREATE FUNCTION @extschema@._validate_destination(kind text, config jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    allowed  text[];
    required text[];
    k        text;
    v        jsonb;
    v_max    numeric;
    v_clear  text;
    common   text[] := ARRAY['retry_base_ms', 'retry_max_ms', 'timeout_ms', 'allow_insecure'];
BEGIN
    IF config IS NULL OR jsonb_typeof(config) <> 'object' THEN
        RAISE EXCEPTION 'destination config must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    CASE kind
        WHEN 'webhook' THEN
            required := ARRAY['url'];
            allowed := ARRAY['url', 'secret', 'signature_version', 'headers'];
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
        WHEN 'alertmanager' THEN
            required := ARRAY['url'];
            allowed := ARRAY['url', 'headers', 'generator_url'];
        ELSE
            RAISE EXCEPTION 'unknown destination kind "%"', kind
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use one of webhook, slack, email, sms, pagerduty, alertmanager.';
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
            IF EXISTS (SELECT 1 FROM jsonb_array_elements_text(
                           CASE jsonb_typeof(v) WHEN 'array' THEN v ELSE jsonb_build_array(v) END) x
                       WHERE x = '' OR x ~ '[\x01-\x1f\x7f]') THEN
                RAISE EXCEPTION '"to" in % destination config must not contain empty strings, line breaks or other control characters', kind
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Give one address (or phone number) per array element.';
            END IF;
        ELSIF k = 'headers' THEN
            IF jsonb_typeof(v) <> 'object' OR EXISTS (SELECT 1 FROM jsonb_each(v) h
                                                      WHERE jsonb_typeof(h.value) <> 'string'
                                                         OR h.key !~ '^[A-Za-z0-9!#$%&''*+.^_`|~-]+$') THEN
                RAISE EXCEPTION '"headers" in webhook destination config must be an object of header names to string values'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            -- a tab is allowed in a field value (RFC 9110), no other control character
            IF EXISTS (SELECT 1 FROM jsonb_each_text(v) h WHERE h.value ~ '[\x01-\x08\x0a-\x1f\x7f]') THEN
                RAISE EXCEPTION 'a header value in webhook destination config contains a line break or another control character'
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Header values are single lines: remove CR, LF and other control characters.';
            END IF;
        ELSIF k IN ('retry_base_ms', 'retry_max_ms', 'timeout_ms') THEN
            v_max := CASE k WHEN 'timeout_ms' THEN 600000 ELSE 86400000 END;
            IF jsonb_typeof(v) <> 'number' OR v::numeric < 1 OR v::numeric > v_max
               OR v::numeric <> trunc(v::numeric) THEN
                RAISE EXCEPTION '"%" in destination config must be a whole number of milliseconds from 1 to %', k, v_max
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'timeout_ms takes at most 600000 (10 minutes); retry_base_ms and retry_max_ms at most 86400000 (a day).';
            END IF;
        ELSIF k IN ('starttls', 'insecure_tls', 'allow_insecure') THEN
            IF jsonb_typeof(v) <> 'boolean' THEN
                RAISE EXCEPTION '"%" in % destination config must be true or false', k, kind
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
        ELSIF k = 'signature_version' THEN
            IF v NOT IN ('1', '2') THEN
                RAISE EXCEPTION '"signature_version" in webhook destination config must be 1 or 2'
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = '2 (the default) signs the timestamp with the body; 1 is the older body-only signature.';
            END IF;
        ELSIF jsonb_typeof(v) <> 'string' OR v #>> '{}' = '' THEN
            RAISE EXCEPTION '"%" in % destination config must be a non-empty string', k, kind
                USING ERRCODE = 'invalid_parameter_value';
        ELSIF v #>> '{}' ~ '[\x01-\x1f\x7f]' THEN
            RAISE EXCEPTION '"%" in % destination config contains a line break or another control character', k, kind
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

    -- credentials only over TLS, unless the admin allows otherwise
    IF NOT coalesce(config->'allow_insecure' = 'true'::jsonb, false) THEN
        IF kind = 'email' AND (config ? 'username' OR config ? 'password')
           AND config->>'smtp_url' ~* '^smtp://'
           AND NOT coalesce(config->'starttls' = 'true'::jsonb, false) THEN
            RAISE EXCEPTION 'email destination config would send its SMTP credentials unencrypted over smtp:// without STARTTLS'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use smtps://, or set "starttls": true, or set "allow_insecure": true if the network path is trusted.';
        END IF;
        v_clear := CASE
            WHEN kind = 'sms' AND config->>'base_url' ~* '^http://' THEN 'auth_token'
            WHEN kind = 'pagerduty' AND config->>'url' ~* '^http://' THEN 'routing_key'
            WHEN kind = 'slack' AND config->>'webhook_url' ~* '^http://' THEN 'webhook_url'
            WHEN kind IN ('webhook', 'alertmanager') AND config->>'url' ~* '^http://'
                 AND EXISTS (SELECT 1 FROM jsonb_object_keys(
                                 CASE jsonb_typeof(config->'headers') WHEN 'object' THEN config->'headers' ELSE '{}' END) h
                             WHERE lower(h) IN ('authorization', 'proxy-authorization', 'cookie')) THEN 'headers'
            WHEN EXISTS (SELECT 1 FROM jsonb_each_text(config) e
                         WHERE e.key IN ('url', 'webhook_url', 'base_url', 'smtp_url')
                           AND e.value ~* '^(http|smtp)://[^/?#]*@') THEN 'user:password@ of its URL'
        END;
        IF v_clear IS NOT NULL THEN
            RAISE EXCEPTION '% destination config would send % unencrypted over a cleartext URL',
                kind, CASE WHEN v_clear LIKE '%@%' THEN v_clear ELSE '"' || v_clear || '"' END
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use an https:// (or smtps://) URL, or set "allow_insecure": true if the network path is trusted.';
        END IF;
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@._validate_destination(text, jsonb) IS
    'Internal: checks a destination config for its kind (keys, types, ranges, no control characters, no credentials over cleartext without allow_insecure); errors name the key, never the value.';

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

-- The error of every function that names a destination that is not there.
CREATE FUNCTION @extschema@._raise_unknown_destination(
        p_name text,
        p_hint text DEFAULT 'SELECT name FROM logagg.destinations_public lists them.')
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RAISE EXCEPTION 'destination "%" does not exist', p_name
        USING ERRCODE = 'undefined_object', HINT = p_hint;
END
$fn$;
COMMENT ON FUNCTION @extschema@._raise_unknown_destination(text, text) IS
    'Internal: raises "destination does not exist" (undefined_object) with the given hint.';

CREATE FUNCTION @extschema@.remove_destination(name text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    DELETE FROM @extschema@.destinations d WHERE d.name = remove_destination.name;
    IF NOT FOUND THEN
        PERFORM @extschema@._raise_unknown_destination(name);
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
        PERFORM @extschema@._raise_unknown_destination(p_name);
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
        PERFORM @extschema@._raise_unknown_destination(
            destination, 'Create it first with logagg.add_destination(name, kind, config).');
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

-- The fixed four-argument form (docs/alerts.md, "Silences").  A separate
-- function rather than a DEFAULT on the five-argument one, so both
-- signatures exist.
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
        PERFORM @extschema@._raise_unknown_destination(name);
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

-- Config with secrets replaced, for logagg_reader and dashboards.  URLs
-- keep only scheme://host[:port]: user:password@ becomes ********@ and any
-- path, query or fragment becomes /******** (Slack, Teams and many other
-- incoming webhooks carry their token in the path, others in the query).
CREATE FUNCTION @extschema@._redact_config(config jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    RETURN (
        SELECT coalesce(jsonb_object_agg(k,
            CASE
                WHEN k IN ('secret', 'password', 'auth_token', 'routing_key')
                    THEN to_jsonb('********'::text)
                WHEN k = 'headers' AND jsonb_typeof(v) = 'object'
                    THEN (SELECT coalesce(jsonb_object_agg(h.key, '********'), '{}') FROM jsonb_each(v) h)
                WHEN k IN ('url', 'webhook_url', 'base_url', 'smtp_url')
                    THEN to_jsonb(coalesce(
                        (SELECT m[1] || CASE WHEN m[2] <> '' THEN '********@' ELSE '' END || m[3]
                                || CASE WHEN m[4] IN ('', '/') THEN m[4] ELSE '/********' END
                           FROM regexp_match(v #>> '{}',
                                             '^([A-Za-z][A-Za-z0-9+.-]*://)([^/?#]*@)?([^/?#]*)(.*)$') AS m),
                        '********'))
                ELSE v
            END), '{}')
        FROM jsonb_each(config) AS e(k, v));
COMMENT ON FUNCTION @extschema@._redact_config(jsonb) IS
    'Internal: a destination config with secrets and header values replaced by ********, and URLs cut to scheme://host[:port] (credentials, path and query replaced).';

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
