-- logagg alert tables: destinations, routes, the priority queue, delivery
-- history and silences.

CREATE TABLE @extschema@.destinations (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    kind        text NOT NULL CHECK (kind IN ('webhook', 'slack', 'email', 'sms', 'pagerduty')),
    config      jsonb NOT NULL DEFAULT '{}',
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.destinations IS
    'Where alerts go. config holds URLs and credentials and is readable only by superusers and logagg_admin.';
COMMENT ON COLUMN @extschema@.destinations.config IS
    'Kind-specific settings, secrets included (webhook: url, secret, headers; slack: webhook_url; email: smtp_url, from, to, username, password; sms: base_url, account_sid, auth_token, from, to; pagerduty: url, routing_key).';

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
    destination     text NOT NULL,
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
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX alert_queue_pending ON @extschema@.alert_queue (severity, next_attempt_at, id);
COMMENT ON TABLE @extschema@.alert_queue IS
    'Alerts waiting for delivery; dispatchers take them most severe first with FOR UPDATE SKIP LOCKED. A row leaves only in the transaction that records its outcome in logagg.alert_log.';

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
    error        text
);
CREATE INDEX alert_log_at ON @extschema@.alert_log (at);
CREATE INDEX alert_log_alert ON @extschema@.alert_log (alert_id);
COMMENT ON TABLE @extschema@.alert_log IS
    'Every delivery attempt''s outcome: delivered, failed (will retry), dead (gave up) or silenced.';

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

-- Entry point from ingest (the batch writer and logagg.ingest()): called
-- once per batch, inside the batch's transaction, with one element per
-- (severity, fingerprint) group of alert-worthy records in the batch:
--   [{"severity": "critical", "source": "...", "fingerprint": "...",
--     "status": 503, "level": "error", "message": "sample",
--     "log_id": 123, "count": 42,
--     "first_seen": "2026-...Z", "last_seen": "2026-...Z"}, ...]
-- Returns the number of alert_queue rows written or updated.
CREATE FUNCTION @extschema@._enqueue_alerts(groups jsonb) RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n int;
BEGIN
    INSERT INTO @extschema@.alert_queue
        (severity, route_id, destination, fingerprint, source, log_id, count,
         first_seen, last_seen, payload)
    SELECT (g->>'severity')::@extschema@.severity, r.id, r.destination, g->>'fingerprint',
           g->>'source', (g->>'log_id')::bigint, (g->>'count')::bigint,
           (g->>'first_seen')::timestamptz, (g->>'last_seen')::timestamptz, g
    FROM jsonb_array_elements(groups) g
    JOIN @extschema@.routes r
      ON r.enabled
     AND (g->>'severity')::@extschema@.severity <= r.min_severity
     AND (r.source IS NULL OR r.source = g->>'source')
    JOIN @extschema@.destinations d ON d.name = r.destination AND d.enabled;
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION @extschema@._enqueue_alerts(jsonb) IS
    'Internal: turns a batch''s alert groups into alert_queue rows for every matching route.';
