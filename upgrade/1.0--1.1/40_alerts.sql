-- Alert delivery hardening (schema/20_alerts.sql): a queued payload or a
-- stored config can no longer fail the dispatcher's transaction, and a
-- destination's own timeout_ms is covered by its lease (_claim_alerts,
-- _backoff); add_destination checks ranges, control characters,
-- credentials over cleartext and signature_version (_validate_destination);
-- destinations_public shows URLs cut to scheme://host[:port]
-- (_redact_config); webhooks with a secret from 1.0 keep their signature.

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
                       AND (s.message_regex IS NULL OR coalesce(q.payload->>'message', '') ~ s.message_regex)
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

CREATE OR REPLACE FUNCTION @extschema@._backoff(attempts int, config jsonb) RETURNS interval
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

CREATE OR REPLACE FUNCTION @extschema@._validate_destination(kind text, config jsonb) RETURNS void
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
            WHEN kind = 'webhook' AND config->>'url' ~* '^http://'
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

CREATE OR REPLACE FUNCTION @extschema@._redact_config(config jsonb) RETURNS jsonb
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

COMMENT ON COLUMN @extschema@.destinations.config IS
    'Kind-specific settings, secrets included (webhook: url, secret, signature_version, headers; slack: webhook_url; email: smtp_url, from, to, username, password, starttls, insecure_tls; sms: base_url, account_sid, auth_token, from, to; pagerduty: url, routing_key). Every kind also takes retry_base_ms, retry_max_ms, timeout_ms and allow_insecure.';

-- Webhook signatures now cover a timestamp (signature_version 2, the
-- default).  Webhook destinations created before this version keep the
-- body-only signature their receivers verify today, until an admin
-- switches them to 2 (docs/alerts.md "Verifying signatures").
UPDATE @extschema@.destinations
   SET config = config || '{"signature_version": 1}'
 WHERE kind = 'webhook' AND config ? 'secret' AND NOT config ? 'signature_version';
