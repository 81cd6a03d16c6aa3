-- Silences' message_regex under logagg.regex_timeout (src/regex_limit.c):
-- logagg._regex_match() and _claim_alerts() calling it (schema/20_alerts.sql).
-- Runs before 50_privileges.sql, which hands the new function to
-- logagg_owner as a fresh install does.

-- A silence's message_regex is the user's pattern: evaluated under
-- logagg.regex_timeout (src/regex_limit.c) so that no pattern can stall a
-- dispatch worker; one that runs out of time does not match (the alert is
-- sent rather than silenced) and is reported as a WARNING.
CREATE FUNCTION @extschema@._regex_match(subject text, pattern text) RETURNS boolean
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'logagg_regex_match_sql';
REVOKE ALL ON FUNCTION @extschema@._regex_match(text, text) FROM PUBLIC;
COMMENT ON FUNCTION @extschema@._regex_match(text, text) IS
    'Internal: subject ~ pattern, under logagg.regex_timeout (false when the pattern runs out of time).';

-- Take up to p_limit due alerts for dispatch worker p_worker, most severe
-- first, skipping rows another dispatcher (or an ingest transaction adding
-- to a summary) holds.  A taken row is leased: its next_attempt_at moves
-- p_lease_ms ahead, so a dispatcher that dies mid-send leaves it to be
-- retried, never lost.  Due alerts that a silence matches are logged as
-- silenced and removed in the same transaction.
CREATE OR REPLACE FUNCTION @extschema@._claim_alerts(p_limit int, p_worker int, p_lease_ms int)
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
                       AND (s.message_regex IS NULL
                            OR @extschema@._regex_match(coalesce(q.payload->>'message', ''), s.message_regex))
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
