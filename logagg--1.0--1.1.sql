-- logagg 1.0 -> 1.1 upgrade (ALTER EXTENSION logagg UPDATE).  Every schema
-- change of 1.1 is made both here and in schema/ (the newest version's
-- source); test/t/006_upgrade.pl checks that the two agree.

\echo Use "ALTER EXTENSION logagg UPDATE" to load this file. \quit
-- logagg.rejected keeps each refused record's exact bytes (a bytea: a
-- record that is not valid text has no text form), the whole record's
-- length and, when the kept bytes are cut, its SHA-256; and the stream
-- and seq it came with.  raw stays, for valid text only.
ALTER TABLE @extschema@.rejected
    ADD COLUMN raw_bytes   bytea,
    ADD COLUMN raw_length  bigint,
    ADD COLUMN raw_sha256  bytea,
    ADD COLUMN stream      text,
    ADD COLUMN seq         bigint;
COMMENT ON COLUMN @extschema@.rejected.raw IS
    'The refused record''s bytes as text (at most 64 kB, cut at a character boundary), when they are valid text in the database encoding; else NULL (see raw_bytes).';
COMMENT ON COLUMN @extschema@.rejected.raw_bytes IS
    'The refused record''s exact bytes (one NDJSON line, array element or message), the first 64 kB of it.';
COMMENT ON COLUMN @extschema@.rejected.raw_length IS
    'Length in bytes of the whole refused record.';
COMMENT ON COLUMN @extschema@.rejected.raw_sha256 IS
    'SHA-256 of the whole refused record when raw_bytes holds only its first 64 kB; else NULL.';
COMMENT ON COLUMN @extschema@.rejected.stream IS
    'The stream of the connection the record came on, if any.';
COMMENT ON COLUMN @extschema@.rejected.seq IS
    'The record''s seq, when it had a valid one.';
COMMENT ON TABLE @extschema@.rejected IS
    'Records refused at ingest, one row per record (NDJSON line, array element or message) with the reason and its exact bytes (raw_bytes, the first 64 kB; raw_length and raw_sha256 describe the whole); nothing is dropped silently.';
-- Ingest batches: partition creation safe under concurrency (the
-- maintenance worker and logagg.maintain() at the same time), and the
-- sources a role may write through logagg.ingest().

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
CREATE OR REPLACE FUNCTION @extschema@._ensure_partition(p_start timestamptz, p_secs int)
    RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    p_end  timestamptz := p_start + make_interval(secs => p_secs);
    p_name text;
BEGIN
    LOCK TABLE @extschema@.logs IN SHARE UPDATE EXCLUSIVE MODE;
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
EXCEPTION WHEN duplicate_table THEN
    RETURN false;
END
$fn$;
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

REVOKE ALL ON FUNCTION @extschema@.grant_source_write(name, text),
                       @extschema@.revoke_source_write(name, text)
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.grant_source_write(name, text),
                          @extschema@.revoke_source_write(name, text)
    TO logagg_admin;
GRANT ALL ON TABLE @extschema@.source_writers TO logagg_admin;
SELECT pg_catalog.pg_extension_config_dump('@extschema@.source_writers', '');
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
-- One "destination does not exist" error (schema/20_alerts.sql): the new
-- _raise_unknown_destination() replaces the four copies of the RAISE in
-- remove_destination, _set_destination_enabled, add_route and
-- test_destination (same message, errcode and hints).  Granted to
-- logagg_admin, who calls those four; 50_privileges.sql then hands it to
-- logagg_owner with every other member.

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
REVOKE ALL ON FUNCTION @extschema@._raise_unknown_destination(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@._raise_unknown_destination(text, text) TO logagg_admin;

CREATE OR REPLACE FUNCTION @extschema@.remove_destination(name text) RETURNS void
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

CREATE OR REPLACE FUNCTION @extschema@._set_destination_enabled(p_name text, p_enabled boolean) RETURNS void
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

CREATE OR REPLACE FUNCTION @extschema@.add_route(destination text, min_severity @extschema@.severity,
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

CREATE OR REPLACE FUNCTION @extschema@.test_destination(name text) RETURNS bigint
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

-- _claim_alerts() evaluates silences through _regex_match().  Only that
-- expression changes, so the definition in place (whatever earlier pieces
-- of this upgrade made of it) is edited rather than restated.
DO $patch$
DECLARE
    def  text := pg_catalog.pg_get_functiondef(
                     '@extschema@._claim_alerts(int, int, int)'::pg_catalog.regprocedure);
    v_old text := $o$s.message_regex IS NULL OR coalesce(q.payload->>'message', '') ~ s.message_regex)$o$;
    v_new text := $n$s.message_regex IS NULL OR @extschema@._regex_match(coalesce(q.payload->>'message', ''), s.message_regex))$n$;
BEGIN
    IF pg_catalog.strpos(def, v_old) = 0 THEN
        RAISE EXCEPTION 'logagg upgrade: the silence check of _claim_alerts() is not the expected one';
    END IF;
    EXECUTE pg_catalog.replace(def, v_old, v_new);
END
$patch$;
-- Partitions get the owner of logagg.logs whoever creates them
-- (schema/10_core_functions.sql).  Runs before 50_privileges.sql.

-- The indexes every partition of logagg.logs has (see schema/00_core.sql
-- for why they are not on the parent): BRIN on ts for time ranges, btree
-- on (source, ts) for one service's recent records.  The partition is first
-- given to the owner of logagg.logs (logagg_owner): a superuser calling
-- the internal functions directly would otherwise own it, and the workers,
-- which run as logagg_owner, could not drop it at retention time.
CREATE OR REPLACE FUNCTION @extschema@._index_partition(p_name text)
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
END
$fn$;
COMMENT ON FUNCTION @extschema@._index_partition(text) IS
    'Internal: gives one new logs partition to the owner of logagg.logs and creates its BRIN (ts) and btree (source, ts) indexes.';
-- ---- forwarding tokens ----
-- A forwarding token (a collector's) lets each record name its own source,
-- optionally limited to the names matching forward_sources (globs).
-- create_source gains the two optional arguments; the one-argument call
-- works as before.
ALTER TABLE @extschema@.sources
    ADD COLUMN forwarder boolean NOT NULL DEFAULT false,
    ADD COLUMN forward_sources text,
    ADD CONSTRAINT sources_forward_sources_check CHECK (forward_sources IS NULL OR (forwarder AND length(forward_sources) <= 256
        AND forward_sources ~ '^[A-Za-z0-9*?][A-Za-z0-9*?._-]{0,127}(,[A-Za-z0-9*?][A-Za-z0-9*?._-]{0,127})*$'));
COMMENT ON COLUMN @extschema@.sources.forwarder IS
    'A forwarding token (a collector''s): each record names its own source (source, service.name, Loki service_name/job/app), else the token''s name is used.';
COMMENT ON COLUMN @extschema@.sources.forward_sources IS
    'For a forwarder: the source names its records may take, as comma-separated globs (* any run, ? one character); NULL = any valid name.';
GRANT SELECT (forwarder, forward_sources) ON @extschema@.sources TO logagg_reader;

DROP FUNCTION @extschema@.create_source(text);
CREATE FUNCTION @extschema@.create_source(name text, forwarder boolean DEFAULT false,
                                          sources text DEFAULT NULL) RETURNS text
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'logagg_create_source';
COMMENT ON FUNCTION @extschema@.create_source(text, boolean, text) IS
    'Creates a log source and returns its ingest token. The token is shown only this once; only its SHA-256 is stored. forwarder => true: the token''s records name their own source (sources => ''team-a-*,billing'' limits which, as globs).';
REVOKE ALL ON FUNCTION @extschema@.create_source(text, boolean, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.create_source(text, boolean, text) TO logagg_admin;
-- ---- plain-text lines: level, status and time read from the line ----
-- A source may turn off reading its plain-text lines' level, HTTP status
-- and time from the line itself (schema/00_core.sql,
-- schema/10_core_functions.sql; docs/shippers.md).
ALTER TABLE @extschema@.sources ADD COLUMN detect boolean NOT NULL DEFAULT true;
COMMENT ON COLUMN @extschema@.sources.detect IS
    'Read the level, HTTP status and time of this source''s plain-text lines from the line itself (docs/shippers.md); set with logagg.set_source_detection.';

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
REVOKE ALL ON FUNCTION @extschema@.set_source_detection(text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.set_source_detection(text, boolean) TO logagg_admin;
GRANT SELECT (detect) ON @extschema@.sources TO logagg_reader;

-- ---- search and read access ----
-- logagg.search(), per-source read restrictions of SQL roles (row-level
-- security on logs, rejected, alert_queue, alert_log), reader tokens, and
-- the search indexes of the partitions (schema/60_search.sql;
-- _index_partition and maintain() in schema/10_core_functions.sql).
-- docs/search.md describes them.

-- The source_read policies name logagg_owner until a role is restricted;
-- a 1.0 database may not have that role yet (the privileges section below
-- checks it as well).
DO $owner_role$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'logagg_owner') THEN
        CREATE ROLE logagg_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
END
$owner_role$;

-- ---------------------------------------------------------------------------
-- source patterns
-- ---------------------------------------------------------------------------
-- A source pattern is one glob or several separated by commas: '*' stands
-- for any run of characters (none included), every other character is
-- itself; '*' alone is every source.  Globs use the characters of source
-- names, so a pattern needs no quoting anywhere.
CREATE FUNCTION @extschema@._source_globs(pattern text) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    globs text[] := regexp_split_to_array(btrim(pattern), '\s*,\s*');
BEGIN
    IF cardinality(globs) = 0
       OR EXISTS (SELECT 1 FROM unnest(globs) g WHERE g !~ '^[A-Za-z0-9._*-]{1,128}$') THEN
        RAISE EXCEPTION 'invalid source pattern "%"', pattern
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A source pattern is one or more globs separated by commas; a glob is 1 to 128 letters, digits, ''.'', ''_'', ''-'' and ''*'' (any run of characters).',
                  HINT = 'For example ''service-a*'', ''api,web-*'' or ''*''.';
    END IF;
    RETURN ARRAY(SELECT DISTINCT g FROM unnest(globs) g ORDER BY g);
END
$fn$;
COMMENT ON FUNCTION @extschema@._source_globs(text) IS
    'Internal: the globs of a source pattern (''service-a*'', ''api,web-*''), checked, sorted and without duplicates.';

-- The LIKE pattern of one glob: '_' is a LIKE wildcard and must be
-- escaped; '%' and '\' cannot occur in a glob.
CREATE FUNCTION @extschema@._glob_like(glob text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN replace(replace(glob, '_', '\_'), '*', '%');
COMMENT ON FUNCTION @extschema@._glob_like(text) IS
    'Internal: the LIKE pattern matching the same source names as a glob.';

-- ---------------------------------------------------------------------------
-- read restrictions of SQL roles
-- ---------------------------------------------------------------------------
-- A role with rows here reads only the sources they match, in logs,
-- rejected, alert_queue and alert_log (and everything built on them with
-- the caller's rights, logagg.search() included).  A role without rows
-- reads every source its table privileges allow, as in 1.0.
CREATE TABLE @extschema@.source_readers (
    role_name    name NOT NULL,
    glob         text NOT NULL CHECK (glob ~ '^[A-Za-z0-9._*-]{1,128}$'),
    like_pattern text GENERATED ALWAYS AS (replace(replace(glob, '_', '\_'), '*', '%')) STORED,
    granted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role_name, glob)
);
COMMENT ON TABLE @extschema@.source_readers IS
    'Per-source read restrictions: a role listed here (and every role that has its privileges) reads only the sources its globs match; managed with logagg.grant_source_read and logagg.revoke_source_read.';
COMMENT ON COLUMN @extschema@.source_readers.glob IS
    'One glob of the granted pattern: ''*'' is any run of characters.';
COMMENT ON COLUMN @extschema@.source_readers.like_pattern IS
    'The glob as a LIKE pattern, which the row-level security policies use.';

-- The policies.  Row-level security is on for the four tables that hold
-- log text or per-source rows.  Policy "unrestricted" lets every role do
-- what its table privileges allow; it is USING (true), which the planner
-- drops, so for a role without restriction nothing changes, plans and
-- index use included.  Policy "source_read" is RESTRICTIVE and applies
-- only to the roles listed in source_readers (its TO list is kept in step
-- by the trigger below; logagg_owner, never subject to row security as the
-- owner, stands in when there are none).  Its array is an uncorrelated
-- sub-select, computed once per query, not per row.  The owner (the
-- workers, the SECURITY DEFINER functions) and superusers are not subject
-- to row security, so ingest and delivery are unaffected.
ALTER TABLE @extschema@.logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.rejected ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.alert_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.alert_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY unrestricted ON @extschema@.logs FOR ALL TO PUBLIC USING (true) WITH CHECK (true);
CREATE POLICY unrestricted ON @extschema@.rejected FOR ALL TO PUBLIC USING (true) WITH CHECK (true);
CREATE POLICY unrestricted ON @extschema@.alert_queue FOR ALL TO PUBLIC USING (true) WITH CHECK (true);
CREATE POLICY unrestricted ON @extschema@.alert_log FOR ALL TO PUBLIC USING (true) WITH CHECK (true);
CREATE POLICY source_read ON @extschema@.logs AS RESTRICTIVE FOR SELECT TO logagg_owner
    USING (source LIKE ANY (ARRAY(SELECT r.like_pattern FROM @extschema@.source_readers r
                                    JOIN pg_catalog.pg_roles a ON a.rolname = r.role_name
                                   WHERE pg_catalog.pg_has_role(a.oid, 'USAGE'))));
CREATE POLICY source_read ON @extschema@.rejected AS RESTRICTIVE FOR SELECT TO logagg_owner
    USING (source LIKE ANY (ARRAY(SELECT r.like_pattern FROM @extschema@.source_readers r
                                    JOIN pg_catalog.pg_roles a ON a.rolname = r.role_name
                                   WHERE pg_catalog.pg_has_role(a.oid, 'USAGE'))));
CREATE POLICY source_read ON @extschema@.alert_queue AS RESTRICTIVE FOR SELECT TO logagg_owner
    USING (source LIKE ANY (ARRAY(SELECT r.like_pattern FROM @extschema@.source_readers r
                                    JOIN pg_catalog.pg_roles a ON a.rolname = r.role_name
                                   WHERE pg_catalog.pg_has_role(a.oid, 'USAGE'))));
CREATE POLICY source_read ON @extschema@.alert_log AS RESTRICTIVE FOR SELECT TO logagg_owner
    USING (source LIKE ANY (ARRAY(SELECT r.like_pattern FROM @extschema@.source_readers r
                                    JOIN pg_catalog.pg_roles a ON a.rolname = r.role_name
                                   WHERE pg_catalog.pg_has_role(a.oid, 'USAGE'))));
COMMENT ON POLICY unrestricted ON @extschema@.logs IS
    'Every role does what its table privileges allow; policy source_read narrows what restricted roles read.';
COMMENT ON POLICY unrestricted ON @extschema@.rejected IS
    'Every role does what its table privileges allow; policy source_read narrows what restricted roles read.';
COMMENT ON POLICY unrestricted ON @extschema@.alert_queue IS
    'Every role does what its table privileges allow; policy source_read narrows what restricted roles read.';
COMMENT ON POLICY unrestricted ON @extschema@.alert_log IS
    'Every role does what its table privileges allow; policy source_read narrows what restricted roles read.';
COMMENT ON POLICY source_read ON @extschema@.logs IS
    'Roles in logagg.source_readers read only the sources their globs match (the TO list follows that table).';
COMMENT ON POLICY source_read ON @extschema@.rejected IS
    'Roles in logagg.source_readers read only the sources their globs match (the TO list follows that table); refused records without a source are hidden from them.';
COMMENT ON POLICY source_read ON @extschema@.alert_queue IS
    'Roles in logagg.source_readers read only the sources their globs match (the TO list follows that table); test notifications are hidden from them.';
COMMENT ON POLICY source_read ON @extschema@.alert_log IS
    'Roles in logagg.source_readers read only the sources their globs match (the TO list follows that table); test notifications are hidden from them.';

-- Keeps the TO list of every source_read policy equal to the roles in
-- source_readers.  SECURITY DEFINER: only the owner may alter a policy.
-- Runs after any change, a pg_dump restore's COPY included, so restored
-- restrictions take effect (roles missing from the cluster are skipped).
CREATE FUNCTION @extschema@._apply_read_restrictions() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    roles text;
    t     text;
BEGIN
    SELECT string_agg(DISTINCT quote_ident(r.role_name), ', ') INTO roles
      FROM @extschema@.source_readers r
      JOIN pg_roles a ON a.rolname = r.role_name;
    FOREACH t IN ARRAY ARRAY['logs', 'rejected', 'alert_queue', 'alert_log'] LOOP
        EXECUTE format('ALTER POLICY source_read ON @extschema@.%I TO %s', t, coalesce(roles, 'logagg_owner'));
    END LOOP;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION @extschema@._apply_read_restrictions() IS
    'Internal: statement trigger of source_readers; sets the roles the source_read policies apply to.';

CREATE TRIGGER source_readers_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.source_readers
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._apply_read_restrictions();

CREATE FUNCTION @extschema@.grant_source_read(role_name name, sources text) RETURNS void
    LANGUAGE plpgsql STRICT VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r pg_roles;
BEGIN
    -- the shards' copies of the read policy would not follow the roles
    -- (schema/60_citus.sql): refuse rather than protect nothing
    IF @extschema@._is_distributed('logs') THEN
        RAISE EXCEPTION 'per-source read restrictions are not supported on a distributed logagg.logs'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'docs/scale-out.md, "Read restrictions".';
    END IF;
    SELECT * INTO r FROM pg_roles a WHERE a.rolname = grant_source_read.role_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role "%" does not exist', grant_source_read.role_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create the role first, or check the spelling.';
    END IF;
    -- Such roles are not subject to the policies, or could edit source_readers:
    -- restricting them would only look like a protection.
    IF r.rolsuper OR r.rolbypassrls OR r.rolname = 'logagg_owner'
       OR pg_has_role(r.oid, 'logagg_admin', 'USAGE') THEN
        RAISE EXCEPTION 'role "%" cannot be restricted to sources', r.rolname
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Superusers, roles with BYPASSRLS, logagg_owner and members of logagg_admin read every source.',
                  HINT = 'Restrict a role that is a member of logagg_reader only.';
    END IF;
    INSERT INTO @extschema@.source_readers (role_name, glob)
    SELECT grant_source_read.role_name, g FROM unnest(@extschema@._source_globs(sources)) g
    ON CONFLICT DO NOTHING;
END
$fn$;
COMMENT ON FUNCTION @extschema@.grant_source_read(name, text) IS
    'Restricts a role (and every role with its privileges) to reading the sources the pattern matches (''service-a*'', ''api,web-*''); further grants add sources. Applies to logs, rejected, alert_queue, alert_log and logagg.search().';

CREATE FUNCTION @extschema@.revoke_source_read(role_name name, sources text DEFAULT NULL) RETURNS int
    LANGUAGE plpgsql CALLED ON NULL INPUT VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n int;
BEGIN
    IF sources IS NULL THEN
        DELETE FROM @extschema@.source_readers w WHERE w.role_name = revoke_source_read.role_name;
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.source_readers w
                    WHERE w.role_name = revoke_source_read.role_name
                      AND w.glob = ANY (@extschema@._source_globs(sources))) THEN
        RETURN 0;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.source_readers w
                    WHERE w.role_name = revoke_source_read.role_name
                      AND w.glob <> ALL (@extschema@._source_globs(sources))) THEN
        -- Fail closed: without globs left the role would read every source.
        RAISE EXCEPTION 'revoking % would leave role "%" without any source', sources, role_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A role without globs in logagg.source_readers is not restricted: it reads every source.',
                  HINT = 'Grant the role its new sources first, or lift the restriction with logagg.revoke_source_read(role) (all sources) or take away logagg_reader.';
    END IF;
    DELETE FROM @extschema@.source_readers w
     WHERE w.role_name = revoke_source_read.role_name
       AND w.glob = ANY (@extschema@._source_globs(sources));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION @extschema@.revoke_source_read(name, text) IS
    'Takes globs back from a restricted role (never its last ones: it would then read every source); without a pattern, lifts the role''s restriction altogether. Returns the number of globs removed.';

-- ---------------------------------------------------------------------------
-- reader tokens
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.reader_tokens (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    token_hash  bytea NOT NULL UNIQUE,
    sources     text NOT NULL CHECK (length(sources) <= 1000 AND sources ~ '^[A-Za-z0-9._*-]{1,128}(,[A-Za-z0-9._*-]{1,128})*$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
COMMENT ON TABLE @extschema@.reader_tokens IS
    'Tokens for reading logs over the network (live tail, console): the SHA-256 of each (the token is shown once by logagg.create_reader_token) and the source pattern it may read.';
COMMENT ON COLUMN @extschema@.reader_tokens.sources IS
    'Source pattern the token may read: globs separated by commas, ''*'' any run of characters.';
COMMENT ON COLUMN @extschema@.reader_tokens.revoked_at IS
    'When logagg.revoke_reader_token disabled it (NULL: valid).';

CREATE TRIGGER reader_tokens_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.reader_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._invalidate_cache();

CREATE FUNCTION @extschema@.create_reader_token(name text, sources text DEFAULT '*') RETURNS text
    LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'logagg_create_reader_token';
COMMENT ON FUNCTION @extschema@.create_reader_token(text, text) IS
    'Creates a reader token for the sources the pattern matches (''service-a*'', ''api,web-*'', ''*'') and returns it. The token is shown only this once; only its SHA-256 is stored.';

CREATE FUNCTION @extschema@.revoke_reader_token(name text) RETURNS void
    LANGUAGE plpgsql STRICT VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE @extschema@.reader_tokens t SET revoked_at = coalesce(t.revoked_at, now())
     WHERE t.name = revoke_reader_token.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'reader token "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT name FROM logagg.reader_token_list lists them.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@.revoke_reader_token(text) IS
    'Disables a reader token at once; it stays listed with its revoked_at.';

CREATE VIEW @extschema@.reader_token_list AS
SELECT t.name, t.sources, t.revoked_at IS NULL AS enabled, t.created_at, t.revoked_at
  FROM @extschema@.reader_tokens t;
COMMENT ON VIEW @extschema@.reader_token_list IS
    'Reader tokens without their hashes: name, source pattern, whether enabled.';

CREATE FUNCTION @extschema@._reader_token_sources(token text) RETURNS text
    LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'logagg_reader_token_sources_sql';
COMMENT ON FUNCTION @extschema@._reader_token_sources(text) IS
    'Internal: the source pattern of a valid reader token, NULL for an unknown or revoked one (the same cached, constant-time check the network endpoints use).';

-- ---------------------------------------------------------------------------
-- search
-- ---------------------------------------------------------------------------
-- One search statement: rows of logs with since <= ts < until (NULL: no
-- bound) that pass filters and matches, newest first, at most lim.
CREATE FUNCTION @extschema@._search_sql(since timestamptz, until timestamptz, filters text, matches text, lim bigint)
    RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN format('SELECT l.* FROM @extschema@.logs l WHERE %s%s%s%s ORDER BY l.ts DESC, l.id DESC LIMIT %s',
                  filters,
                  ' AND l.ts >= ' || quote_literal(since) || '::timestamptz',
                  ' AND l.ts < ' || quote_literal(until) || '::timestamptz',
                  ' AND ' || matches, lim);
COMMENT ON FUNCTION @extschema@._search_sql(timestamptz, timestamptz, text, text, bigint) IS
    'Internal: one statement of logagg.search(): the rows of logs in [since, until) that pass the given conditions, newest first, at most lim.';

-- The words of an ASCII q with a digit (3 or more letters and digits) as
-- ILIKE conditions the trigram index serves, AND-ed; NULL when there are
-- none.  A word with fewer than 3 distinct
-- trigrams ('777777' has one) keeps the characters around it in q, so
-- that the trigrams padded at its ends (' 77', '77 ') narrow it down.
CREATE FUNCTION @extschema@._search_probe(q text)
    RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT string_agg(format('l.message ILIKE %L',
                                     '%' || replace(replace(replace(CASE WHEN w.trigrams >= 3 THEN w.word ELSE w.around END,
                                                                    '\', '\\'), '%', '\%'), '_', '\_') || '%'),
                              ' AND ')
              FROM (SELECT m.around, m.word,
                           (SELECT count(DISTINCT substr(lower(m.word), i, 3))
                              FROM generate_series(1, length(m.word) - 2) i) AS trigrams
                      FROM (SELECT r[1] AS around, substring(r[1] FROM '[A-Za-z0-9]+') AS word
                              FROM regexp_matches(q, '[^A-Za-z0-9]?[A-Za-z0-9]{3,}[^A-Za-z0-9]?', 'g') r) m) w
             WHERE w.word ~ '[0-9]');
COMMENT ON FUNCTION @extschema@._search_probe(text) IS
    'Internal: the words with a digit of an ASCII search text as ILIKE conditions for the trigram index; logagg.search() checks the whole text on the rows they find.';

-- SECURITY INVOKER (the default): the caller's privileges and row-level
-- security apply, so a restricted role finds only its sources.  Values go
-- into the statements as literals, so that each is planned for them (the
-- trigram index needs the pattern to choose its trigrams).
--
-- How a search with q runs (docs/search.md, "How a search runs"):
--  * q names something rare (a word with a digit: an id, a number, a
--    hash): one statement over [since, until), through the trigram index
--    asked for those words only (_search_probe), q checked on its rows;
--  * otherwise newest first, reading and filtering rows (BRIN on ts), in
--    windows back from until: the last minute, the 3 before; then, while
--    nothing is found, doubling windows for 10 ms and up to an hour wide; once matches
--    came, a window sized by their rate to hold what is still missing,
--    as long as that would take under 100 ms at the rate so far; finally
--    the rest of [since, until) in one statement through the trigram
--    index.  Dense matches are found in the newest rows at
--    once; rare ones by the index after a few ms of reading.
-- The windows do not overlap and come newest first, each ordered by
-- ts DESC, id DESC: together they return exactly the rows and order of
-- one query over [since, until).
CREATE FUNCTION @extschema@.search(q text,
                                   since timestamptz DEFAULT now() - interval '1 hour',
                                   until timestamptz DEFAULT now(),
                                   source text DEFAULT NULL,
                                   min_severity @extschema@.severity DEFAULT NULL,
                                   attrs jsonb DEFAULT NULL,
                                   lim int DEFAULT 100)
    RETURNS SETOF @extschema@.logs
    LANGUAGE plpgsql STABLE CALLED ON NULL INPUT
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    filters   text := 'true';  -- source, min_severity, attrs
    matches   text;            -- q as a condition of message the trigram index serves
    scanned   text;            -- the same condition in a form no index serves
    probe     text;            -- rare words of q for the index, q checked on its rows
    selective boolean := false;
    anchor    timestamptz;     -- the windows reach back from here
    hi        timestamptz := until;  -- upper end (exclusive) of what is left; NULL: none
    lo        timestamptz;
    width     interval := interval '1 minute';
    started   timestamptz := clock_timestamp();
    spent     interval;
    found     bigint := 0;
    n         bigint;
BEGIN
    IF lim IS NULL OR lim < 0 THEN
        RAISE EXCEPTION 'lim must be 0 or more, not %', coalesce(lim::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF source IS NOT NULL THEN
        IF source ~ '[*,]' THEN
            filters := filters || format(' AND l.source LIKE ANY (%L::text[])',
                                         ARRAY(SELECT @extschema@._glob_like(g)
                                                 FROM unnest(@extschema@._source_globs(source)) g));
        ELSE
            filters := filters || format(' AND l.source = %L', source);
        END IF;
    END IF;
    IF min_severity IS NOT NULL THEN
        filters := filters || format(' AND l.severity <= %L::@extschema@.severity', min_severity);
    END IF;
    IF attrs IS NOT NULL THEN
        filters := filters || format(' AND l.attrs @> %L::jsonb', attrs);
    END IF;

    IF q LIKE '/%/' THEN
        matches := format('l.message ~ %L', substr(q, 2, length(q) - 2));
        scanned := format('(%s) IS TRUE', matches);
        selective := EXISTS (SELECT 1 FROM regexp_matches(substr(q, 2, length(q) - 2), '[A-Za-z0-9]{3,}', 'g') w
                              WHERE w[1] ~ '[0-9]');
    ELSIF q <> '' THEN
        matches := format('l.message ILIKE %L',
                          '%' || replace(replace(replace(q, '\', '\\'), '%', '\%'), '_', '\_') || '%');
        -- Read in windows, the same test without a pattern: ILIKE in a
        -- multibyte database is lower() of both sides then LIKE, so this
        -- finds the same rows at under half the cost per row.
        scanned := format('(strpos(lower(l.message), %L) > 0) IS TRUE', lower(q));
        -- Words with a digit (ids, numbers, hashes) are rare in logs, words
        -- without one common; and the long posting lists of common
        -- trigrams (a common word's, or those padded at a word's ends:
        -- 'id ', ' us') are what costs an index scan its time.  So the
        -- index is asked for q's words with a digit only and q is checked
        -- on the rows it returns.  Only for ASCII q: lower() then maps
        -- each character on its own, so a row that matches q contains
        -- each of its words.
        IF q !~ '[^\x01-\x7f]' THEN
            probe := @extschema@._search_probe(q);
            selective := probe IS NOT NULL;
        END IF;
    ELSE
        selective := true;     -- no q: one query, as the planner sees fit
    END IF;
    IF probe IS NOT NULL THEN
        matches := probe || ' AND ' || scanned;
    END IF;

    IF selective OR lim = 0 THEN
        RETURN QUERY EXECUTE @extschema@._search_sql(since, until, filters, matches, lim);
        RETURN;
    END IF;

    -- newest first, a window at a time
    anchor := CASE WHEN isfinite(until) THEN until ELSE now() END;
    IF until < anchor THEN
        RETURN;                -- until is -infinity
    END IF;
    LOOP
        lo := anchor - width;
        IF lo <= since THEN
            lo := since;
        END IF;
        RETURN QUERY EXECUTE @extschema@._search_sql(lo, hi, filters, scanned, lim - found);
        GET DIAGNOSTICS n = ROW_COUNT;
        found := found + n;
        IF found >= lim OR lo = since THEN
            RETURN;
        END IF;
        hi := lo;
        EXIT WHEN width >= interval '30 days';
        spent := clock_timestamp() - started;
        IF width < interval '4 minutes' THEN
            width := width * 4;    -- the first 4 minutes are always read
        ELSIF found = 0 THEN
            -- Nothing yet: twice as wide (the newest rows may be minutes
            -- old; doubling, a window costs no more than all before it)
            -- for 10 ms and up to windows of an hour; after that the text
            -- is rare, and the index finds it sooner.
            EXIT WHEN spent >= interval '10 ms' OR width >= interval '1 hour';
            width := width * 2;
        ELSE
            -- Read on while the rest would take less than 100 ms at the
            -- rate so far (spent * still / found), in a window that should
            -- hold it.
            EXIT WHEN spent * (1 + (lim - found)::float8 / found) > interval '100 ms';
            width := width * (1 + 1.25 * (lim - found)::float8 / found);
        END IF;
    END LOOP;
    -- the rest, through the index
    RETURN QUERY EXECUTE @extschema@._search_sql(since, hi, filters, matches, lim - found);
END
$fn$;

COMMENT ON FUNCTION @extschema@.search(text, timestamptz, timestamptz, text, @extschema@.severity, jsonb, int) IS
    'Log records with since <= ts < until, newest first, at most lim: q is a case-insensitive substring of message, or /REGEX/ (case-sensitive; (?i) for not); source a name or pattern (''svc-*''); min_severity the least severe kept; attrs a jsonb the record''s attrs contain. NULL or '''' skips a filter. Runs with the caller''s rights: restricted roles see their sources only. Bounded by the caller''s statement_timeout.';

-- ---------------------------------------------------------------------------
-- search indexes of the partitions
-- ---------------------------------------------------------------------------
-- With logagg.index_messages = on, each partition gets a trigram GIN index
-- on message (for ILIKE and regex searches; needs pg_trgm in the
-- database); with logagg.index_attrs = on, a jsonb_path_ops GIN index on
-- attrs (for @>).  A new partition gets them when it is made (it is empty
-- then: no cost).  Existing partitions get them from the maintenance
-- worker with CREATE INDEX CONCURRENTLY, which never blocks ingest; it
-- cannot run inside a function, hence the list below, which the worker
-- works through.

-- The DDL of one search index of a partition ('message' or 'attrs'), or
-- NULL when it is not wanted (setting off, or pg_trgm missing).
CREATE FUNCTION @extschema@._search_index_ddl(p_name text, p_kind text, p_concurrently boolean)
    RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    trgm_schema name;
BEGIN
    IF p_kind = 'message' AND current_setting('logagg.index_messages', true) = 'on' THEN
        SELECT n.nspname INTO trgm_schema
          FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'pg_trgm';
        IF trgm_schema IS NULL THEN
            RETURN NULL;
        END IF;
        RETURN format('CREATE INDEX %s %I ON @extschema@.%I USING gin (message %I.gin_trgm_ops)',
                      CASE WHEN p_concurrently THEN 'CONCURRENTLY' ELSE '' END,
                      p_name || '_message_trgm', p_name, trgm_schema);
    ELSIF p_kind = 'attrs' AND current_setting('logagg.index_attrs', true) = 'on' THEN
        RETURN format('CREATE INDEX %s %I ON @extschema@.%I USING gin (attrs jsonb_path_ops)',
                      CASE WHEN p_concurrently THEN 'CONCURRENTLY' ELSE '' END,
                      p_name || '_attrs_gin', p_name);
    END IF;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION @extschema@._search_index_ddl(text, text, boolean) IS
    'Internal: CREATE INDEX statement of a partition''s trigram (message) or jsonb_path_ops (attrs) index, NULL when logagg.index_messages / index_attrs is off or pg_trgm is missing.';

-- Called by _index_partition() for every new partition.
CREATE FUNCTION @extschema@._index_partition_search(p_name text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    ddl text;
BEGIN
    FOREACH ddl IN ARRAY ARRAY[@extschema@._search_index_ddl(p_name, 'message', false),
                               @extschema@._search_index_ddl(p_name, 'attrs', false)] LOOP
        IF ddl IS NOT NULL THEN
            EXECUTE ddl;
        END IF;
    END LOOP;
    IF current_setting('logagg.index_messages', true) = 'on'
       AND NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        RAISE WARNING 'logagg.index_messages is on but extension pg_trgm is not installed: partition "%" gets no message index', p_name
            USING HINT = 'Run CREATE EXTENSION pg_trgm in this database; the maintenance worker then indexes every partition.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@._index_partition_search(text) IS
    'Internal: gives a new partition the search indexes that logagg.index_messages and logagg.index_attrs ask for.';

-- Search indexes still to build: one row per missing (or invalid, left by
-- an interrupted build) index, with the statements that build it without
-- blocking writes.  Newest partitions first: they are the ones searched.
CREATE FUNCTION @extschema@._search_index_todo()
    RETURNS TABLE (index_name text, statements text[])
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT i.index_name,
           CASE WHEN x.oid IS NULL THEN ARRAY[i.ddl]
                ELSE ARRAY[format('DROP INDEX CONCURRENTLY IF EXISTS @extschema@.%I', i.index_name), i.ddl] END
      FROM @extschema@.partitions p
     CROSS JOIN LATERAL (VALUES ('message', '_message_trgm'), ('attrs', '_attrs_gin')) AS k(kind, suffix)
     CROSS JOIN LATERAL (SELECT c.relname::text || k.suffix AS index_name,
                                @extschema@._search_index_ddl(c.relname, k.kind, true) AS ddl
                           FROM pg_class c WHERE c.oid = p.partition) i
      LEFT JOIN pg_class x ON x.relname = i.index_name
                          AND x.relnamespace = '@extschema@'::regnamespace
      LEFT JOIN pg_index xi ON xi.indexrelid = x.oid
     WHERE i.ddl IS NOT NULL AND (x.oid IS NULL OR NOT xi.indisvalid)
     ORDER BY p.range_start DESC NULLS LAST, i.index_name;
$fn$;
COMMENT ON FUNCTION @extschema@._search_index_todo() IS
    'Internal: search indexes the partitions lack (or have invalid), with the CONCURRENTLY statements the maintenance worker runs to build them.';

CREATE FUNCTION @extschema@._wake_maintenance() RETURNS boolean
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'logagg_wake_maintenance_sql';
COMMENT ON FUNCTION @extschema@._wake_maintenance() IS
    'Internal: wakes the maintenance worker (it then builds missing search indexes); false when it is not running.';

-- pg_dump keeps the read restrictions (a restore's COPY fires
-- source_readers_changed, which sets the policies' roles) and the reader
-- token hashes, as it keeps sources (schema/85_dump.sql).
SELECT pg_catalog.pg_extension_config_dump('@extschema@.source_readers', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.reader_tokens', '');

CREATE OR REPLACE FUNCTION @extschema@._index_partition(p_name text)
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

CREATE OR REPLACE FUNCTION @extschema@.maintain() RETURNS void
    LANGUAGE plpgsql
    SECURITY DEFINER  -- creating partitions needs the owner of logagg.logs
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    PERFORM @extschema@._create_partitions(now());
    PERFORM @extschema@._run_retention();  -- schema/30_sync.sql
    -- search indexes of existing partitions: built CONCURRENTLY by the
    -- worker, which a function cannot do (schema/60_search.sql)
    PERFORM @extschema@._wake_maintenance();
END
$fn$;
COMMENT ON FUNCTION @extschema@.maintain() IS
    'Runs partition maintenance now (partitions for the current and next interval, then retention) and wakes the maintenance worker to build missing search indexes; the worker does the same periodically.';

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
CREATE OR REPLACE FUNCTION @extschema@._ensure_partition(p_start timestamptz, p_secs int)
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

-- Partitions are read through logs, where the read restrictions apply;
-- 1.0 let readers select logs_default directly.
REVOKE SELECT ON @extschema@.logs_default FROM logagg_reader;
REVOKE ALL ON FUNCTION @extschema@._source_globs(text),
                       @extschema@._glob_like(text),
                       @extschema@._apply_read_restrictions(),
                       @extschema@.grant_source_read(name, text),
                       @extschema@.revoke_source_read(name, text),
                       @extschema@.create_reader_token(text, text),
                       @extschema@.revoke_reader_token(text),
                       @extschema@._reader_token_sources(text),
                       @extschema@.search(text, timestamptz, timestamptz, text, @extschema@.severity, jsonb, int),
                       @extschema@._search_sql(timestamptz, timestamptz, text, text, bigint),
                       @extschema@._search_probe(text),
                       @extschema@._search_index_ddl(text, text, boolean),
                       @extschema@._index_partition_search(text),
                       @extschema@._search_index_todo(),
                       @extschema@._wake_maintenance()
    FROM PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.search(text, timestamptz, timestamptz, text, @extschema@.severity, jsonb, int),
                          @extschema@._search_sql(timestamptz, timestamptz, text, text, bigint),
                          @extschema@._search_probe(text),
                          @extschema@._source_globs(text),
                          @extschema@._glob_like(text)
    TO logagg_reader;
GRANT EXECUTE ON FUNCTION @extschema@.grant_source_read(name, text),
                          @extschema@.revoke_source_read(name, text),
                          @extschema@.create_reader_token(text, text),
                          @extschema@.revoke_reader_token(text)
    TO logagg_admin;
-- admin first: the ACL then reads as a fresh install's
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.source_readers, @extschema@.reader_tokens,
                                        @extschema@.reader_token_list
    TO logagg_admin;
GRANT SELECT ON @extschema@.source_readers TO logagg_reader;
-- ---- retention waits at most 100 ms for readers of logagg.logs ----
-- (as partition creation does: a DROP waiting behind a long search held
-- up every insert of ingest)
CREATE OR REPLACE FUNCTION @extschema@._drop_expired_partitions(p_retention_secs int, p_check_sync boolean,
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

-- ---- alert rules over time windows ----
-- (schema/25_alert_rules.sql; from schema/20_alerts.sql _enqueue_alerts
-- with the storm guard and route matchers, _claim_alerts with route mute
-- times; grants from schema/90_privileges.sql)

-- logagg alert rules over time windows: the rules (logagg.alert_rules),
-- their exact per-(rule, group, time bucket) counters (one delta row per
-- ingest batch, written in the batch's own transaction by
-- src/alert_rules.c, folded into the counters by the evaluator), the
-- alert lifecycle (logagg.alerts, logagg.alert_history) advanced by the
-- evaluator that dispatch worker 1 runs every logagg.rule_eval_interval
-- (_evaluate_alert_rules), and the firing / resolved notifications it
-- queues through the routes of schema/20_alerts.sql.  docs/alerts.md,
-- "Alert rules", describes the behaviour for users.

-- Per route: resolved notifications and re-sends of firing rule alerts.
ALTER TABLE @extschema@.routes
    ADD COLUMN send_resolved boolean NOT NULL DEFAULT true,
    ADD COLUMN repeat_interval interval DEFAULT '4 hours'
        CHECK (repeat_interval IS NULL OR repeat_interval > '0');
COMMENT ON COLUMN @extschema@.routes.send_resolved IS
    'Whether a rule alert that this route notified as firing is also notified when it resolves.';
COMMENT ON COLUMN @extschema@.routes.repeat_interval IS
    'A rule alert still firing is notified again this long after its previous notification on this route; NULL never repeats.';

-- ---------------------------------------------------------------------------
-- route label matchers and continue, like Alertmanager's
-- ---------------------------------------------------------------------------
ALTER TABLE @extschema@.routes
    ADD COLUMN matchers jsonb NOT NULL DEFAULT '[]' CHECK (jsonb_typeof(matchers) = 'array'),
    ADD COLUMN "continue" boolean NOT NULL DEFAULT true;
COMMENT ON COLUMN @extschema@.routes.matchers IS
    'Label matchers that must all hold for the route to take an alert: [{"label", "op" (=, !=, =~, !~), "value"}], set with logagg.set_route_matchers. Labels: source, severity, status, level, fingerprint of record alerts; rule, severity and the group labels of rule alerts. A missing label is the empty string; regexes match the whole value.';
COMMENT ON COLUMN @extschema@.routes."continue" IS
    'Routes are tried in id order; an alert taken by a route with continue = false is not offered to the routes after it.';

-- Alertmanager-style matcher strings ('severity="critical"', 'source=~svc-.*')
-- or objects, checked and stored as [{"label", "op", "value"}].
CREATE FUNCTION @extschema@._parse_matchers(p_matchers jsonb) RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    e      jsonb;
    m      text[];
    v_op   text;
    v_lbl  text;
    v_val  text;
    result jsonb := '[]';
BEGIN
    IF p_matchers IS NULL OR jsonb_typeof(p_matchers) <> 'array' THEN
        RAISE EXCEPTION 'route matchers must be a JSON array'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example ''["severity=\"critical\"", "source=~\"svc-.*\""]''.';
    END IF;
    FOR e IN SELECT * FROM jsonb_array_elements(p_matchers) LOOP
        IF jsonb_typeof(e) = 'string' THEN
            m := regexp_match(e #>> '{}', '^\s*([A-Za-z_][A-Za-z0-9_.]*)\s*(=~|!~|!=|=)\s*(.*?)\s*$');
            IF m IS NULL THEN
                RAISE EXCEPTION 'invalid route matcher "%"', e #>> '{}'
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'A matcher is LABEL OP VALUE with OP one of =, !=, =~, !~: severity="critical".';
            END IF;
            v_lbl := m[1];
            v_op := m[2];
            v_val := m[3];
            IF v_val ~ '^".*"$' THEN
                v_val := substr(v_val, 2, length(v_val) - 2);
            END IF;
        ELSIF jsonb_typeof(e) = 'object' THEN
            v_lbl := e->>'label';
            v_op := e->>'op';
            v_val := e->>'value';
        ELSE
            v_lbl := NULL;
        END IF;
        IF v_lbl IS NULL OR v_lbl !~ '^[A-Za-z_][A-Za-z0-9_.]*$' OR v_op IS NULL
           OR v_op NOT IN ('=', '!=', '=~', '!~') OR v_val IS NULL THEN
            RAISE EXCEPTION 'invalid route matcher %', e
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use strings like severity="critical" or objects {"label": ..., "op": "=", "value": ...}.';
        END IF;
        IF v_op IN ('=~', '!~') THEN
            BEGIN
                PERFORM '' ~ v_val;
            EXCEPTION WHEN invalid_regular_expression THEN
                RAISE EXCEPTION 'route matcher on "%" has an invalid regular expression: %', v_lbl, SQLERRM
                    USING ERRCODE = 'invalid_parameter_value';
            END;
        END IF;
        result := result || jsonb_build_array(jsonb_build_object('label', v_lbl, 'op', v_op, 'value', v_val));
    END LOOP;
    RETURN result;
END
$fn$;
COMMENT ON FUNCTION @extschema@._parse_matchers(jsonb) IS
    'Internal: checks route matchers (Alertmanager-style strings or objects) and returns them as [{"label", "op", "value"}].';

-- Do all matchers hold for these labels?  A missing label is ''; a
-- regex matches the whole value, under logagg.regex_timeout.
CREATE FUNCTION @extschema@._route_matches(p_matchers jsonb, p_labels jsonb) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    m   jsonb;
    v   text;
    ok  boolean;
BEGIN
    FOR m IN SELECT * FROM jsonb_array_elements(p_matchers) LOOP
        v := coalesce(p_labels->>(m->>'label'), '');
        ok := CASE m->>'op'
                WHEN '=' THEN v = m->>'value'
                WHEN '!=' THEN v <> m->>'value'
                WHEN '=~' THEN @extschema@._regex_match(v, '^(?:' || (m->>'value') || ')$')
                WHEN '!~' THEN NOT @extschema@._regex_match(v, '^(?:' || (m->>'value') || ')$')
              END;
        IF NOT coalesce(ok, false) THEN
            RETURN false;
        END IF;
    END LOOP;
    RETURN true;
END
$fn$;
COMMENT ON FUNCTION @extschema@._route_matches(jsonb, jsonb) IS
    'Internal: true when every route matcher holds for the alert''s labels.';

CREATE FUNCTION @extschema@.set_route_matchers(id int, matchers jsonb, "continue" boolean DEFAULT true)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE @extschema@.routes r
       SET matchers = @extschema@._parse_matchers(set_route_matchers.matchers),
           "continue" = coalesce(set_route_matchers."continue", true)
     WHERE r.id = set_route_matchers.id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'route % does not exist', id
            USING ERRCODE = 'undefined_object', HINT = 'SELECT * FROM logagg.routes lists them.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@.set_route_matchers(int, jsonb, boolean) IS
    'Sets a route''s label matchers (all must hold: ["severity=\"critical\"", "source=~\"svc-.*\"", "rule!=noisy"]) and whether alerts it takes go on to the later routes ("continue", default true).';

-- ---------------------------------------------------------------------------
-- silences that start later, and mute time intervals on routes
-- ---------------------------------------------------------------------------
CREATE FUNCTION @extschema@.schedule_silence(source text, fingerprint text,
                                             starts_at timestamptz, ends_at timestamptz,
                                             comment text, message_regex text DEFAULT NULL)
    RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_id int;
BEGIN
    IF starts_at IS NULL OR ends_at IS NULL OR ends_at <= starts_at OR ends_at <= now() THEN
        RAISE EXCEPTION 'a silence must end after it starts, and in the future'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'For example logagg.schedule_silence(''db'', NULL, ''2026-01-03 02:00Z'', ''2026-01-03 04:00Z'', ''maintenance'').';
    END IF;
    INSERT INTO @extschema@.silences (source, fingerprint, message_regex, starts_at, ends_at, comment)
    VALUES (schedule_silence.source, schedule_silence.fingerprint, schedule_silence.message_regex,
            schedule_silence.starts_at, schedule_silence.ends_at, schedule_silence.comment)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$fn$;
COMMENT ON FUNCTION @extschema@.schedule_silence(text, text, timestamptz, timestamptz, text, text) IS
    'Mutes alerts matching source, fingerprint and message_regex (NULL = any) from starts_at (possibly in the future) to ends_at; muted alerts are logged as silenced. Returns the silence id.';

ALTER TABLE @extschema@.routes
    ADD COLUMN mute_time_intervals jsonb NOT NULL DEFAULT '[]'
        CHECK (jsonb_typeof(mute_time_intervals) = 'array');
COMMENT ON COLUMN @extschema@.routes.mute_time_intervals IS
    'When the route sends nothing (like Alertmanager''s mute_time_intervals): [{"weekdays": ["monday:friday", "sunday"], "times": [{"start_time": "22:00", "end_time": "24:00"}], "location": "Europe/Berlin"}]; an interval matches when every part it has matches. Set with logagg.set_route_mute_times; alerts due while muted are logged as silenced.';

-- Is t inside one of the intervals?  Weekdays and times are read in the
-- interval's location (default UTC).
CREATE FUNCTION @extschema@._route_muted(p_intervals jsonb, p_at timestamptz) RETURNS boolean
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN EXISTS (
        SELECT 1
        FROM jsonb_array_elements(p_intervals) i,
             LATERAL (SELECT p_at AT TIME ZONE coalesce(i->>'location', 'UTC') AS lt) l
        WHERE (NOT i ? 'weekdays' OR EXISTS (
                  SELECT 1 FROM jsonb_array_elements_text(i->'weekdays') w,
                       LATERAL (SELECT array_position(ARRAY['sunday', 'monday', 'tuesday', 'wednesday',
                                                            'thursday', 'friday', 'saturday'],
                                                      split_part(w, ':', 1)) - 1 AS a,
                                       array_position(ARRAY['sunday', 'monday', 'tuesday', 'wednesday',
                                                            'thursday', 'friday', 'saturday'],
                                                      coalesce(nullif(split_part(w, ':', 2), ''), split_part(w, ':', 1))) - 1 AS b) d
                  WHERE extract(dow FROM l.lt) BETWEEN d.a AND d.b))
          AND (NOT i ? 'times' OR EXISTS (
                  SELECT 1 FROM jsonb_array_elements(i->'times') t
                  WHERE l.lt::time >= (t->>'start_time')::time
                    AND (t->>'end_time' = '24:00' OR l.lt::time < (t->>'end_time')::time))));
COMMENT ON FUNCTION @extschema@._route_muted(jsonb, timestamptz) IS
    'Internal: whether a route''s mute_time_intervals cover the given moment.';

CREATE FUNCTION @extschema@.set_route_mute_times(id int, intervals jsonb) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    i jsonb;
    w text;
    t jsonb;
    days text[] := ARRAY['sunday', 'monday', 'tuesday', 'wednesday', 'thursday', 'friday', 'saturday'];
    hint text := 'For example ''[{"weekdays": ["saturday:sunday"], "times": [{"start_time": "00:00", "end_time": "24:00"}], "location": "Europe/Berlin"}]''.';
BEGIN
    IF intervals IS NULL OR jsonb_typeof(intervals) <> 'array' THEN
        RAISE EXCEPTION 'mute time intervals must be a JSON array' USING ERRCODE = 'invalid_parameter_value', HINT = hint;
    END IF;
    FOR i IN SELECT * FROM jsonb_array_elements(intervals) LOOP
        IF jsonb_typeof(i) <> 'object' OR EXISTS (SELECT 1 FROM jsonb_object_keys(i) k
                                                  WHERE k NOT IN ('weekdays', 'times', 'location')) THEN
            RAISE EXCEPTION 'a mute time interval is an object of weekdays, times and location'
                USING ERRCODE = 'invalid_parameter_value', HINT = hint;
        END IF;
        IF i ? 'weekdays' THEN
            IF jsonb_typeof(i->'weekdays') <> 'array' THEN
                RAISE EXCEPTION '"weekdays" must be an array' USING ERRCODE = 'invalid_parameter_value', HINT = hint;
            END IF;
            FOR w IN SELECT * FROM jsonb_array_elements_text(i->'weekdays') LOOP
                IF NOT (split_part(w, ':', 1) = ANY (days))
                   OR (w LIKE '%:%' AND NOT (split_part(w, ':', 2) = ANY (days)))
                   OR array_position(days, split_part(w, ':', 1))
                      > array_position(days, coalesce(nullif(split_part(w, ':', 2), ''), split_part(w, ':', 1))) THEN
                    RAISE EXCEPTION 'invalid weekday or range "%"', w
                        USING ERRCODE = 'invalid_parameter_value',
                              HINT = 'Lower-case day names, or ranges from sunday to saturday such as "monday:friday".';
                END IF;
            END LOOP;
        END IF;
        IF i ? 'times' THEN
            IF jsonb_typeof(i->'times') <> 'array' THEN
                RAISE EXCEPTION '"times" must be an array' USING ERRCODE = 'invalid_parameter_value', HINT = hint;
            END IF;
            FOR t IN SELECT * FROM jsonb_array_elements(i->'times') LOOP
                IF t->>'start_time' !~ '^([01][0-9]|2[0-3]):[0-5][0-9]$'
                   OR t->>'end_time' !~ '^(([01][0-9]|2[0-3]):[0-5][0-9]|24:00)$'
                   OR (t->>'end_time' <> '24:00' AND (t->>'end_time')::time <= (t->>'start_time')::time) THEN
                    RAISE EXCEPTION 'invalid time range %', t
                        USING ERRCODE = 'invalid_parameter_value',
                              HINT = '{"start_time": "HH:MM", "end_time": "HH:MM"} with end after start (24:00 for the end of the day).';
                END IF;
            END LOOP;
        END IF;
        IF i ? 'location' AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_timezone_names z WHERE z.name = i->>'location') THEN
            RAISE EXCEPTION 'unknown time zone "%"', i->>'location'
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Use an IANA name such as Europe/Berlin (pg_timezone_names).';
        END IF;
    END LOOP;
    UPDATE @extschema@.routes r SET mute_time_intervals = intervals WHERE r.id = set_route_mute_times.id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'route % does not exist', id
            USING ERRCODE = 'undefined_object', HINT = 'SELECT * FROM logagg.routes lists them.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@.set_route_mute_times(int, jsonb) IS
    'Sets when a route sends nothing (weekdays, times of day, time zone); alerts that fall due then are logged as silenced.';

-- ---------------------------------------------------------------------------
-- storm guard (per route): at most max_notifications new notifications per
-- group_window, then one digest per window (schema/20_alerts.sql,
-- _enqueue_alerts, calls these)
-- ---------------------------------------------------------------------------
ALTER TABLE @extschema@.routes
    ADD COLUMN max_notifications int DEFAULT 10
        CHECK (max_notifications IS NULL OR max_notifications >= 1);
COMMENT ON COLUMN @extschema@.routes.max_notifications IS
    'Storm guard: at most this many new record-alert notifications per group_window on this route; the alerts beyond go into one digest per window ("and N more alerts from M fingerprints"). NULL = no limit.';

CREATE TABLE @extschema@._route_storm (
    route_id        int PRIMARY KEY REFERENCES @extschema@.routes (id) ON DELETE CASCADE,
    window_start    timestamptz NOT NULL,
    sent            int NOT NULL DEFAULT 0,
    digest_alert_id bigint
);
COMMENT ON TABLE @extschema@._route_storm IS
    'Internal: storm guard state per route: the current window, notifications queued in it, and its digest still collecting alerts.';

-- May route p_route queue one more notification in its current window?
-- Counts it when yes.  A window starts with the first notification after
-- the previous one ended.
CREATE FUNCTION @extschema@._route_admit(p_route int, p_window interval, p_max int) RETURNS boolean
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_sent int;
BEGIN
    IF p_max IS NULL THEN
        RETURN true;
    END IF;
    INSERT INTO @extschema@._route_storm AS s (route_id, window_start, sent)
    VALUES (p_route, now(), 0)
    ON CONFLICT (route_id) DO UPDATE
        SET window_start = CASE WHEN s.window_start + p_window <= now() THEN now() ELSE s.window_start END,
            sent = CASE WHEN s.window_start + p_window <= now() THEN 0 ELSE s.sent END,
            digest_alert_id = CASE WHEN s.window_start + p_window <= now() THEN NULL ELSE s.digest_alert_id END
    RETURNING s.sent INTO v_sent;
    IF v_sent < p_max THEN
        UPDATE @extschema@._route_storm SET sent = sent + 1 WHERE route_id = p_route;
        RETURN true;
    END IF;
    RETURN false;
END
$fn$;
COMMENT ON FUNCTION @extschema@._route_admit(int, interval, int) IS
    'Internal: storm guard; true (and counted) when the route may queue another notification in its current group_window.';

-- Add p_count records of one more fingerprint to the route's digest of
-- the current window (a new digest, due at the window's end, when there
-- is none or it is already being sent).  Returns the digest's alert id.
CREATE FUNCTION @extschema@._add_to_digest(p_route int, p_destination text, p_window interval,
                                           p_severity @extschema@.severity, p_count bigint,
                                           p_first timestamptz, p_last timestamptz)
    RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    st   record;
    v_id bigint;
BEGIN
    SELECT * INTO st FROM @extschema@._route_storm WHERE route_id = p_route;
    UPDATE @extschema@.alert_queue q
       SET count = q.count + p_count,
           severity = least(q.severity, p_severity),
           first_seen = least(q.first_seen, p_first),
           last_seen = greatest(q.last_seen, p_last),
           payload = q.payload
               || jsonb_build_object('fingerprints', (q.payload->>'fingerprints')::int + 1,
                                     'message', format('and %s more alerts from %s fingerprints',
                                                       q.count + p_count, (q.payload->>'fingerprints')::int + 1))
     WHERE q.id = st.digest_alert_id AND q.attempts = 0 AND q.claimed_by IS NULL AND q.dead_at IS NULL
    RETURNING q.id INTO v_id;
    IF v_id IS NULL THEN
        INSERT INTO @extschema@.alert_queue
            (severity, route_id, destination, fingerprint, source, count, first_seen, last_seen,
             payload, next_attempt_at)
        VALUES (p_severity, p_route, p_destination, 'digest-' || p_route, NULL, p_count, p_first, p_last,
                jsonb_build_object('digest', true, 'fingerprints', 1, 'level', NULL, 'status', NULL,
                                   'message', format('and %s more alerts from 1 fingerprints', p_count)),
                greatest(now(), st.window_start + p_window))
        RETURNING id INTO v_id;
        UPDATE @extschema@._route_storm SET digest_alert_id = v_id WHERE route_id = p_route;
    END IF;
    RETURN v_id;
END
$fn$;
COMMENT ON FUNCTION @extschema@._add_to_digest(int, text, interval, @extschema@.severity, bigint, timestamptz, timestamptz) IS
    'Internal: storm guard; adds one more fingerprint''s records to the route''s digest of the current window and returns the digest''s alert id.';

CREATE TABLE @extschema@.alert_rules (
    id           serial PRIMARY KEY,
    name         text NOT NULL UNIQUE CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    kind         text NOT NULL CHECK (kind IN ('count', 'rate', 'ratio', 'absent')),
    filter       jsonb NOT NULL DEFAULT '{}',
    "window"     interval NOT NULL,
    threshold    float8 NOT NULL,
    group_by     text[] NOT NULL,
    for_duration interval NOT NULL DEFAULT '0',
    severity     @extschema@.severity NOT NULL DEFAULT 'high',
    enabled      boolean NOT NULL DEFAULT true,
    bucket_secs  int NOT NULL CHECK (bucket_secs >= 1),
    created_at   timestamptz NOT NULL DEFAULT now(),
    evaluated_at timestamptz
);
COMMENT ON TABLE @extschema@.alert_rules IS
    'Alert rules over time windows (count, rate, ratio, absent per group), made with logagg.add_alert_rule. Ingest counts every rule, paused or not, in the transaction of the rows; the evaluator fires and resolves the enabled ones.';
COMMENT ON COLUMN @extschema@.alert_rules.filter IS
    'Which records count: source (glob, * and ?), min_severity, level (one or a list), status (a number or [lo, hi]), message_regex, attrs (containment); every key optional.';
COMMENT ON COLUMN @extschema@.alert_rules."window" IS
    'Time span over record time (ts) the rule counts, in 60 buckets of bucket_secs.';
COMMENT ON COLUMN @extschema@.alert_rules.threshold IS
    'count: fires when the count in the window is above it; rate: count per second; ratio: matching / all of the group; absent: unused.';
COMMENT ON COLUMN @extschema@.alert_rules.group_by IS
    'Labels the rule is evaluated per: up to three of source, level, status, severity, attrs.KEY.';
COMMENT ON COLUMN @extschema@.alert_rules.for_duration IS
    'How long the condition must hold (pending) before the alert fires.';
COMMENT ON COLUMN @extschema@.alert_rules.enabled IS
    'false: paused (still counted, logagg.rule_preview works, nothing fires).';
COMMENT ON COLUMN @extschema@.alert_rules.bucket_secs IS
    'Width of one counter bucket: the window / 60, at least one second.';
COMMENT ON COLUMN @extschema@.alert_rules.evaluated_at IS
    'Start of the evaluation that last looked at this enabled rule; NULL after it is created, resumed or changed (the next evaluation looks at all its groups).';

-- Ingest caches the rules (src/alert_rules.c); a change of what it reads
-- (not pause / resume / evaluated_at) tells it to reload.
CREATE TRIGGER alert_rules_changed
    AFTER INSERT OR DELETE OR TRUNCATE OR UPDATE OF kind, filter, "window", group_by, bucket_secs
    ON @extschema@.alert_rules
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._invalidate_cache();

-- The evaluator looks only at the groups of a count or rate rule whose
-- counts changed, unless the rule's evaluated_at is NULL: a rule that is
-- resumed, or whose condition changes, is looked at over all its groups
-- once (_evaluate_alert_rules).
CREATE FUNCTION @extschema@._alert_rule_reevaluate() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NEW.enabled AND (NOT OLD.enabled OR NEW.kind IS DISTINCT FROM OLD.kind
                        OR NEW.threshold IS DISTINCT FROM OLD.threshold
                        OR NEW."window" IS DISTINCT FROM OLD."window"
                        OR NEW.filter IS DISTINCT FROM OLD.filter
                        OR NEW.group_by IS DISTINCT FROM OLD.group_by
                        OR NEW.for_duration IS DISTINCT FROM OLD.for_duration) THEN
        NEW.evaluated_at := NULL;
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION @extschema@._alert_rule_reevaluate() IS
    'Internal: trigger; a rule resumed or changed gets evaluated_at NULL, so that the next evaluation looks at all its groups.';

CREATE TRIGGER alert_rules_reevaluate
    BEFORE UPDATE OF enabled, kind, threshold, "window", filter, group_by, for_duration
    ON @extschema@.alert_rules
    FOR EACH ROW EXECUTE FUNCTION @extschema@._alert_rule_reevaluate();

-- Counting is per "class": the rules of one part (same group_by and
-- window) that a record matched, wholly or (ratio rules) for the
-- denominator only.  A hundred rules matching the same records make one
-- class, so counters and deltas do not grow with the number of rules; a
-- rule's count is the sum over the classes it belongs to.  Classes are
-- numbered by the fold the first time a delta names them.  No foreign
-- key to alert_rules: ingest must never fail a batch because a rule was
-- removed meanwhile (the removed rule's memberships are skipped, and
-- pruned later).
CREATE TABLE @extschema@._alert_rule_classes (
    id           serial PRIMARY KEY,
    key          text NOT NULL,
    window_secs  int NOT NULL,
    bucket_secs  int NOT NULL
);
-- by hash: the key of a class of a thousand rules is too long for a btree
CREATE UNIQUE INDEX _alert_rule_classes_key ON @extschema@._alert_rule_classes (md5(key));
COMMENT ON TABLE @extschema@._alert_rule_classes IS
    'Internal: the classes alert rule counts are kept per: key = "window_secs:bucket_secs:rule ids" as ingest names it ("300:5:3,-4,7"; a negative id counts in a ratio''s denominator only).';

CREATE TABLE @extschema@._alert_rule_class_rules (
    rule_id   int NOT NULL,
    class_id  int NOT NULL REFERENCES @extschema@._alert_rule_classes (id) ON DELETE CASCADE,
    "full"    boolean NOT NULL,
    PRIMARY KEY (rule_id, class_id)
);
CREATE INDEX _alert_rule_class_rules_class ON @extschema@._alert_rule_class_rules (class_id);
COMMENT ON TABLE @extschema@._alert_rule_class_rules IS
    'Internal: the rules of each class; full = its records match the rule''s whole filter (else only a ratio rule''s denominator).';

CREATE TABLE @extschema@._alert_rule_counts (
    class_id     int NOT NULL,
    labels       jsonb NOT NULL,
    bucket       timestamptz NOT NULL,
    n            bigint NOT NULL,
    last_ts      timestamptz NOT NULL,
    last_log_id  bigint NOT NULL,
    PRIMARY KEY (class_id, labels, bucket)
) WITH (fillfactor = 50);   -- room for HOT updates: every fold updates its counters
COMMENT ON TABLE @extschema@._alert_rule_counts IS
    'Internal: records counted per (class, group labels, time bucket of ts), folded from _alert_rule_deltas by the evaluator: n records, last_ts / last_log_id the latest of them. A rule''s matched count is the sum of n over its classes with full, its ratio denominator the sum over all its classes.';

-- One row per ingest batch that counted something, written in the batch's
-- transaction (src/alert_rules.c): what the batch adds to the counters,
-- per "class" (the rules a record matched) instead of per rule, so that
-- its size does not grow with the number of rules.  The evaluator folds
-- and deletes the rows in one transaction (_fold_alert_rule_deltas): a
-- committed batch is counted exactly once, a rolled-back one never.
CREATE TABLE @extschema@._alert_rule_deltas (
    classes      text[] NOT NULL,
    class        int[] NOT NULL,
    labels       text[] NOT NULL,
    bucket       timestamptz[] NOT NULL,
    n            bigint[] NOT NULL,
    last_ts      timestamptz[] NOT NULL,
    last_log_id  bigint[] NOT NULL
);
-- Stored out of line uncompressed: compressing tens of kB per batch cost
-- the ingest worker more than all the counting; the rows live seconds.
ALTER TABLE @extschema@._alert_rule_deltas
    ALTER COLUMN classes SET STORAGE EXTERNAL,
    ALTER COLUMN class SET STORAGE EXTERNAL,
    ALTER COLUMN labels SET STORAGE EXTERNAL,
    ALTER COLUMN bucket SET STORAGE EXTERNAL,
    ALTER COLUMN n SET STORAGE EXTERNAL,
    ALTER COLUMN last_ts SET STORAGE EXTERNAL,
    ALTER COLUMN last_log_id SET STORAGE EXTERNAL;
COMMENT ON TABLE @extschema@._alert_rule_deltas IS
    'Internal: alert rule counts of ingest batches not yet folded into _alert_rule_counts. classes: the keys of the batch''s classes (see _alert_rule_classes); per entry i: class[i] (index in classes), labels[i] (JSON text), bucket[i], n[i] records, last_ts[i] / last_log_id[i] of its latest record.';

-- A rule's counts still in _alert_rule_deltas, as counter rows (not summed).
CREATE FUNCTION @extschema@._alert_rule_pending(p_rule_id int)
    RETURNS TABLE (labels jsonb, bucket timestamptz, matched bigint, total bigint,
                   last_ts timestamptz, last_log_id bigint)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT x.labels::jsonb, x.bucket,
           CASE WHEN k.r > 0 THEN x.n ELSE 0 END, x.n,
           CASE WHEN k.r > 0 THEN x.last_ts END, CASE WHEN k.r > 0 THEN x.last_log_id END
    FROM @extschema@._alert_rule_deltas d
    CROSS JOIN LATERAL unnest(d.class, d.labels, d.bucket, d.n, d.last_ts, d.last_log_id)
        AS x(cls, labels, bucket, n, last_ts, last_log_id)
    CROSS JOIN LATERAL unnest(string_to_array(split_part(d.classes[x.cls], ':', 3), ',')::int[]) AS k(r)
    WHERE abs(k.r) = p_rule_id;
END;
COMMENT ON FUNCTION @extschema@._alert_rule_pending(int) IS
    'Internal: a rule''s counts in ingest deltas not yet folded into _alert_rule_counts, one row per delta entry.';

-- Fold every committed delta into the counters and delete it (in the
-- caller's transaction, so exactly once): entries are summed per (class,
-- labels, bucket) over all pending deltas, classes seen for the first
-- time are numbered (with their rules that still exist), and the counters
-- get one upsert of one row per (class, group, bucket).  Returns the
-- (class, labels) whose counters changed.
CREATE FUNCTION @extschema@._fold_alert_rule_deltas()
    RETURNS TABLE (class_id int, labels jsonb)
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET jit = off
AS $fn$
DECLARE
    v_key    text[];
    v_labels text[];
    v_bucket timestamptz[];
    v_n      bigint[];
    v_ts     timestamptz[];
    v_id     bigint[];
BEGIN
    WITH d AS (
        DELETE FROM @extschema@._alert_rule_deltas RETURNING *
    ), e AS (
        -- the latest record: max of [ts, id] (no ordered aggregate, so hashable)
        SELECT d.classes[x.cls] AS key, x.labels, x.bucket, sum(x.n)::bigint AS n,
               max(x.last_ts) AS last_ts,
               (max(ARRAY[extract(epoch FROM x.last_ts), x.last_log_id]))[2]::bigint AS last_log_id
        FROM d
        CROSS JOIN LATERAL unnest(d.class, d.labels, d.bucket, d.n, d.last_ts, d.last_log_id)
            AS x(cls, labels, bucket, n, last_ts, last_log_id)
        GROUP BY 1, 2, 3
    )
    SELECT array_agg(e.key), array_agg(e.labels), array_agg(e.bucket), array_agg(e.n),
           array_agg(e.last_ts), array_agg(e.last_log_id)
      INTO v_key, v_labels, v_bucket, v_n, v_ts, v_id
      FROM e;
    IF v_key IS NULL THEN
        RETURN;
    END IF;

    WITH k AS (
        INSERT INTO @extschema@._alert_rule_classes AS c (key, window_secs, bucket_secs)
        SELECT DISTINCT u.key, split_part(u.key, ':', 1)::int, split_part(u.key, ':', 2)::int
        FROM unnest(v_key) AS u(key)
        ON CONFLICT ((md5(key))) DO NOTHING
        RETURNING c.id, c.key
    )
    INSERT INTO @extschema@._alert_rule_class_rules (rule_id, class_id, "full")
    SELECT abs(r.r), k.id, r.r > 0
    FROM k CROSS JOIN LATERAL unnest(string_to_array(split_part(k.key, ':', 3), ',')::int[]) AS r(r)
    WHERE EXISTS (SELECT 1 FROM @extschema@.alert_rules ar WHERE ar.id = abs(r.r));

    RETURN QUERY
    INSERT INTO @extschema@._alert_rule_counts AS c (class_id, labels, bucket, n, last_ts, last_log_id)
    SELECT k.id, u.labels::jsonb, u.bucket, u.n, u.last_ts, u.last_log_id
    FROM unnest(v_key, v_labels, v_bucket, v_n, v_ts, v_id) AS u(key, labels, bucket, n, last_ts, last_log_id)
    JOIN @extschema@._alert_rule_classes k ON md5(k.key) = md5(u.key) AND k.key = u.key
    ON CONFLICT ON CONSTRAINT _alert_rule_counts_pkey DO UPDATE SET
        n = c.n + excluded.n,
        last_log_id = CASE WHEN excluded.last_ts >= c.last_ts THEN excluded.last_log_id ELSE c.last_log_id END,
        last_ts = greatest(c.last_ts, excluded.last_ts)
    RETURNING c.class_id, c.labels;
END
$fn$;
COMMENT ON FUNCTION @extschema@._fold_alert_rule_deltas() IS
    'Internal: adds the committed ingest deltas to _alert_rule_counts and deletes them (exactly once); returns the (class, labels) whose counters changed.';

CREATE TABLE @extschema@.alerts (
    id            bigserial PRIMARY KEY,
    rule_id       int NOT NULL REFERENCES @extschema@.alert_rules (id) ON DELETE CASCADE,
    labels        jsonb NOT NULL,
    state         text NOT NULL CHECK (state IN ('inactive', 'pending', 'firing', 'resolved')),
    since         timestamptz NOT NULL,
    value         float8,
    sample_log_id bigint,
    sample_ts     timestamptz,
    fired_at      timestamptz,
    resolved_at   timestamptz,
    evaluated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (rule_id, labels)
);
COMMENT ON TABLE @extschema@.alerts IS
    'Current state of every (rule, group) that has met its condition: pending (waiting for for_duration), firing, resolved, or inactive (was pending, condition cleared).';
COMMENT ON COLUMN @extschema@.alerts.since IS 'When the alert entered its current state.';
COMMENT ON COLUMN @extschema@.alerts.value IS 'The rule''s value for the group at the latest evaluation (count, rate, ratio; 0 for absent).';
COMMENT ON COLUMN @extschema@.alerts.sample_log_id IS 'id in logagg.logs of the latest record that matched the filter (NULL for absent).';
COMMENT ON COLUMN @extschema@.alerts.fired_at IS 'When it last started firing (starts_at of its notifications).';
COMMENT ON COLUMN @extschema@.alerts.resolved_at IS 'When it last resolved (ends_at of the resolved notification).';

CREATE TABLE @extschema@.alert_history (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    alert_id    bigint NOT NULL,
    rule_id     int NOT NULL,
    rule        text NOT NULL,
    labels      jsonb NOT NULL,
    from_state  text NOT NULL,
    to_state    text NOT NULL,
    value       float8
);
CREATE INDEX alert_history_at ON @extschema@.alert_history (at);
COMMENT ON TABLE @extschema@.alert_history IS
    'Every state change of a rule alert (inactive -> pending -> firing -> resolved), with the value at that moment.';

-- Per (alert, route): when the route was last notified of the firing alert
-- (for repeat_interval, and so that resolved goes where firing went).
CREATE TABLE @extschema@._alert_route_sends (
    alert_id  bigint NOT NULL REFERENCES @extschema@.alerts (id) ON DELETE CASCADE,
    route_id  int NOT NULL REFERENCES @extschema@.routes (id) ON DELETE CASCADE,
    sent_at   timestamptz NOT NULL,
    PRIMARY KEY (alert_id, route_id)
);
COMMENT ON TABLE @extschema@._alert_route_sends IS
    'Internal: routes a firing rule alert was queued to, and when last (repeat_interval; resolved goes to the same routes).';

CREATE VIEW @extschema@.firing_alerts AS
SELECT a.id, r.name AS rule, r.kind, r.severity, a.labels, a.value, r.threshold,
       a.fired_at AS starts_at, a.sample_log_id, a.evaluated_at
FROM @extschema@.alerts a
JOIN @extschema@.alert_rules r ON r.id = a.rule_id
WHERE a.state = 'firing';
COMMENT ON VIEW @extschema@.firing_alerts IS
    'Rule alerts firing now, with their rule, labels, value and since when.';

-- ---------------------------------------------------------------------------
-- windows and values
-- ---------------------------------------------------------------------------

CREATE FUNCTION @extschema@._alert_bucket_secs(w interval) RETURNS int
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN greatest(1, floor(extract(epoch FROM w) / 60))::int;
COMMENT ON FUNCTION @extschema@._alert_bucket_secs(interval) IS
    'Internal: counter bucket width of a window: window / 60, whole seconds, at least 1.';

-- The window at time t is the bucket holding t and the buckets before it,
-- ceil(window / bucket) in all (buckets are aligned to the Unix epoch, as
-- src/alert_rules.c computes them): between window - bucket and window long.
CREATE FUNCTION @extschema@._alert_window_start(t timestamptz, w interval, bucket_secs int)
    RETURNS timestamptz
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN to_timestamp((floor(extract(epoch FROM t) / bucket_secs)
                         - (ceil(extract(epoch FROM w) / bucket_secs) - 1)) * bucket_secs);
COMMENT ON FUNCTION @extschema@._alert_window_start(timestamptz, interval, int) IS
    'Internal: first ts counted in a rule''s window at time t.';

-- Every group of a rule known from its counters (seen within lookback),
-- with the rule's value at p_now and whether its condition holds.
CREATE FUNCTION @extschema@._alert_rule_values(p_rule_id int, p_now timestamptz, p_lookback interval)
    RETURNS TABLE (labels jsonb, value float8, matched bigint, total bigint,
                   cond boolean, sample_log_id bigint, sample_ts timestamptz)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    WITH r AS (
        SELECT ar.*, @extschema@._alert_window_start(p_now, ar."window", ar.bucket_secs) AS ws
        FROM @extschema@.alert_rules ar WHERE ar.id = p_rule_id
    ), g AS (
        SELECT c.labels,
               coalesce(sum(c.matched) FILTER (WHERE c.bucket >= r.ws), 0)::bigint AS matched,
               coalesce(sum(c.total) FILTER (WHERE c.bucket >= r.ws), 0)::bigint AS total,
               (array_agg(c.last_log_id ORDER BY c.last_ts DESC NULLS LAST)
                   FILTER (WHERE c.bucket >= r.ws AND c.last_ts IS NOT NULL))[1] AS sample_log_id,
               max(c.last_ts) FILTER (WHERE c.bucket >= r.ws) AS sample_ts,
               bool_or(c.matched > 0) AS seen
        FROM (SELECT x.labels, x.bucket, CASE WHEN m."full" THEN x.n ELSE 0 END AS matched, x.n AS total,
                     CASE WHEN m."full" THEN x.last_ts END AS last_ts,
                     CASE WHEN m."full" THEN x.last_log_id END AS last_log_id
                FROM @extschema@._alert_rule_class_rules m
                JOIN @extschema@._alert_rule_counts x ON x.class_id = m.class_id
                WHERE m.rule_id = p_rule_id
              UNION ALL
              SELECT * FROM @extschema@._alert_rule_pending(p_rule_id)) c, r
        WHERE c.bucket >= least(r.ws, p_now - p_lookback)
        GROUP BY c.labels
    ), v AS (
        SELECT g.*,
               CASE r.kind
                   WHEN 'count' THEN g.matched::float8
                   WHEN 'rate' THEN g.matched / greatest(extract(epoch FROM r."window")::float8, 1)
                   WHEN 'ratio' THEN CASE WHEN g.total > 0 THEN g.matched::float8 / g.total END
                   ELSE g.matched::float8
               END AS value,
               r.kind, r.threshold
        FROM g, r
    )
    SELECT v.labels, v.value, v.matched, v.total,
           CASE v.kind WHEN 'absent' THEN v.seen AND v.matched = 0
                       ELSE coalesce(v.value > v.threshold, false) END,
           v.sample_log_id, v.sample_ts
    FROM v;
END;
COMMENT ON FUNCTION @extschema@._alert_rule_values(int, timestamptz, interval) IS
    'Internal: per group of a rule, its value in the window at p_now (counters and deltas not yet folded) and whether the condition holds (absent: groups that matched within p_lookback).';

CREATE FUNCTION @extschema@._absent_lookback() RETURNS interval
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN make_interval(secs => coalesce(
        (SELECT s.setting::float8 FROM pg_catalog.pg_settings s WHERE s.name = 'logagg.absent_lookback'),
        86400));
COMMENT ON FUNCTION @extschema@._absent_lookback() IS
    'Internal: logagg.absent_lookback as an interval (1 day when logagg is not preloaded).';

-- ---------------------------------------------------------------------------
-- rule management
-- ---------------------------------------------------------------------------

-- Check a rule's parts; returns the filter as stored (levels normalised).
CREATE FUNCTION @extschema@._validate_alert_rule(p_filter jsonb, p_window interval, p_threshold float8,
                                                 p_kind text, p_group_by text[], p_for interval)
    RETURNS jsonb
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    k text;
    v jsonb;
    g text;
    v_levels text[];
    allowed text[] := ARRAY['source', 'min_severity', 'level', 'status', 'message_regex', 'attrs'];
    example text := 'For example ''{"source": "svc-*", "status": [500, 599]}''.';
BEGIN
    IF p_filter IS NULL OR jsonb_typeof(p_filter) <> 'object' THEN
        RAISE EXCEPTION 'alert rule filter must be a JSON object'
            USING ERRCODE = 'invalid_parameter_value', HINT = example;
    END IF;
    FOR k, v IN SELECT * FROM jsonb_each(p_filter) LOOP
        IF NOT k = ANY (allowed) THEN
            RAISE EXCEPTION 'unknown key "%" in alert rule filter', k
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = format('Allowed keys: %s.', array_to_string(allowed, ', '));
        END IF;
        IF k = 'source' AND (jsonb_typeof(v) <> 'string' OR length(v #>> '{}') NOT BETWEEN 1 AND 256) THEN
            RAISE EXCEPTION '"source" in alert rule filter must be a source name or glob'
                USING ERRCODE = 'invalid_parameter_value', HINT = '"*" matches any run of characters, "?" one: "svc-*".';
        ELSIF k = 'min_severity' AND (jsonb_typeof(v) <> 'string' OR v #>> '{}' NOT IN ('critical', 'high', 'low')) THEN
            RAISE EXCEPTION '"min_severity" in alert rule filter must be critical, high or low'
                USING ERRCODE = 'invalid_parameter_value';
        ELSIF k = 'level' THEN
            IF NOT (jsonb_typeof(v) = 'string'
                    OR (jsonb_typeof(v) = 'array' AND jsonb_array_length(v) > 0
                        AND NOT EXISTS (SELECT 1 FROM jsonb_array_elements(v) x WHERE jsonb_typeof(x) <> 'string'))) THEN
                RAISE EXCEPTION '"level" in alert rule filter must be a level or a non-empty array of levels'
                    USING ERRCODE = 'invalid_parameter_value', HINT = 'For example "error" or ["error", "fatal"].';
            END IF;
        ELSIF k = 'status' THEN
            IF NOT ((jsonb_typeof(v) = 'number' AND v::numeric = trunc(v::numeric) AND v::numeric BETWEEN 0 AND 999)
                    OR (jsonb_typeof(v) = 'array' AND jsonb_array_length(v) = 2
                        AND jsonb_typeof(v->0) = 'number' AND jsonb_typeof(v->1) = 'number'
                        AND (v->>0)::numeric = trunc((v->>0)::numeric) AND (v->>1)::numeric = trunc((v->>1)::numeric)
                        AND (v->>0)::numeric BETWEEN 0 AND 999 AND (v->>1)::numeric BETWEEN 0 AND 999
                        AND (v->>0)::numeric <= (v->>1)::numeric)) THEN
                RAISE EXCEPTION '"status" in alert rule filter must be a status or a range [lo, hi] (0-999)'
                    USING ERRCODE = 'invalid_parameter_value', HINT = 'For example 404 or [500, 599].';
            END IF;
        ELSIF k = 'message_regex' THEN
            IF jsonb_typeof(v) <> 'string' OR v #>> '{}' = '' THEN
                RAISE EXCEPTION '"message_regex" in alert rule filter must be a non-empty string'
                    USING ERRCODE = 'invalid_parameter_value';
            END IF;
            BEGIN
                PERFORM '' ~ (v #>> '{}');
            EXCEPTION WHEN invalid_regular_expression THEN
                RAISE EXCEPTION '"message_regex" in alert rule filter is not a valid regular expression: %', SQLERRM
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'POSIX regular expressions as for the ~ operator; each record gets logagg.regex_timeout.';
            END;
        ELSIF k = 'attrs' AND jsonb_typeof(v) <> 'object' THEN
            RAISE EXCEPTION '"attrs" in alert rule filter must be a JSON object'
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Records match when their attrs contain it: {"region": "eu"}.';
        END IF;
    END LOOP;
    IF p_filter ? 'level' THEN
        SELECT array_agg(@extschema@.normalize_level(x)) INTO v_levels
          FROM jsonb_array_elements_text(CASE jsonb_typeof(p_filter->'level')
                                             WHEN 'array' THEN p_filter->'level'
                                             ELSE jsonb_build_array(p_filter->'level') END) x;
        p_filter := jsonb_set(p_filter, '{level}', to_jsonb(v_levels));
    END IF;

    IF p_kind IS NULL OR p_kind NOT IN ('count', 'rate', 'ratio', 'absent') THEN
        RAISE EXCEPTION 'unknown alert rule kind "%"', p_kind
            USING ERRCODE = 'invalid_parameter_value', HINT = 'Use one of count, rate, ratio, absent.';
    END IF;
    IF p_kind = 'ratio' AND NOT (p_filter ?| ARRAY['level', 'status', 'message_regex']) THEN
        RAISE EXCEPTION 'a ratio rule needs a level, status or message_regex in its filter'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'The ratio is records matching the whole filter / records matching only its source, min_severity and attrs.';
    END IF;
    IF p_window IS NULL OR extract(epoch FROM p_window) < 1 OR extract(epoch FROM p_window) > 31 * 86400
       OR extract(month FROM p_window) <> 0 OR extract(year FROM p_window) <> 0 THEN
        RAISE EXCEPTION 'alert rule window must be from 1 second to 31 days'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ''5 minutes''; months are not a fixed length.';
    END IF;
    IF p_threshold IS NULL OR p_threshold = 'NaN' OR p_threshold < 0 OR p_threshold = 'Infinity' THEN
        RAISE EXCEPTION 'alert rule threshold must be a finite number >= 0'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_for IS NULL OR p_for < '0' OR extract(month FROM p_for) <> 0 OR extract(year FROM p_for) <> 0 THEN
        RAISE EXCEPTION 'for_duration must be zero or positive (and without months)'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF p_group_by IS NULL OR cardinality(p_group_by) > 3
       OR (SELECT count(DISTINCT x) FROM unnest(p_group_by) x) <> cardinality(p_group_by) THEN
        RAISE EXCEPTION 'group_by must be at most three distinct labels'
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Labels: source, level, status, severity, attrs.KEY; ARRAY[]::text[] for one group.';
    END IF;
    FOREACH g IN ARRAY p_group_by LOOP
        IF g IS NULL OR NOT (g IN ('source', 'level', 'status', 'severity') OR g ~ '^attrs\.[A-Za-z0-9_.-]{1,64}$') THEN
            RAISE EXCEPTION 'unknown group_by label "%"', g
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Labels: source, level, status, severity, attrs.KEY (KEY: 1-64 letters, digits, "_", "." or "-").';
        END IF;
    END LOOP;
    RETURN p_filter;
END
$fn$;
COMMENT ON FUNCTION @extschema@._validate_alert_rule(jsonb, interval, float8, text, text[], interval) IS
    'Internal: checks an alert rule (filter keys and types, kind, window, threshold, group_by, for_duration) with errors that name the part; returns the filter with its levels normalised.';

CREATE FUNCTION @extschema@.add_alert_rule(name text, filter jsonb, "window" interval, threshold float8,
                                           kind text DEFAULT 'count',
                                           group_by text[] DEFAULT ARRAY['source'],
                                           for_duration interval DEFAULT '0',
                                           severity @extschema@.severity DEFAULT 'high',
                                           paused boolean DEFAULT false)
    RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_filter jsonb;
    v_id     int;
BEGIN
    IF name IS NULL OR name !~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$' THEN
        RAISE EXCEPTION 'invalid alert rule name "%"', name
            USING ERRCODE = 'invalid_parameter_value',
                  HINT = 'Use 1-128 letters, digits, ".", "_" or "-", starting with a letter or digit.';
    END IF;
    IF EXISTS (SELECT 1 FROM @extschema@.alert_rules r WHERE r.name = add_alert_rule.name) THEN
        RAISE EXCEPTION 'alert rule "%" already exists', name
            USING ERRCODE = 'duplicate_object',
                  HINT = 'Counts belong to a rule as it was defined: remove it with logagg.remove_alert_rule first, or choose another name.';
    END IF;
    IF severity IS NULL THEN
        RAISE EXCEPTION 'alert rule severity must not be NULL' USING ERRCODE = 'null_value_not_allowed';
    END IF;
    v_filter := @extschema@._validate_alert_rule(filter, "window", threshold, kind, group_by, for_duration);
    INSERT INTO @extschema@.alert_rules (name, kind, filter, "window", threshold, group_by,
                                         for_duration, severity, enabled, bucket_secs)
    VALUES (add_alert_rule.name, add_alert_rule.kind, v_filter, add_alert_rule."window",
            add_alert_rule.threshold, add_alert_rule.group_by, add_alert_rule.for_duration,
            add_alert_rule.severity, NOT coalesce(paused, false),
            @extschema@._alert_bucket_secs(add_alert_rule."window"))
    RETURNING id INTO v_id;
    RETURN v_id;
END
$fn$;
COMMENT ON FUNCTION @extschema@.add_alert_rule(text, jsonb, interval, float8, text, text[], interval, @extschema@.severity, boolean) IS
    'Creates an alert rule (kind count, rate, ratio or absent over window, per group_by labels, pending for for_duration before firing); applies to ingest from its next batch, without a restart. paused = true creates it paused (see logagg.rule_preview). Returns the rule id.';

CREATE FUNCTION @extschema@._alert_rule_id(p_name text) RETURNS int
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_id int;
BEGIN
    SELECT r.id INTO v_id FROM @extschema@.alert_rules r WHERE r.name = p_name;
    IF v_id IS NULL THEN
        RAISE EXCEPTION 'alert rule "%" does not exist', p_name
            USING ERRCODE = 'undefined_object', HINT = 'SELECT name FROM logagg.alert_rules lists them.';
    END IF;
    RETURN v_id;
END
$fn$;
COMMENT ON FUNCTION @extschema@._alert_rule_id(text) IS
    'Internal: the id of the named alert rule, or an undefined_object error.';

CREATE FUNCTION @extschema@.remove_alert_rule(name text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_id int := @extschema@._alert_rule_id(name);
BEGIN
    DELETE FROM @extschema@.alert_rules WHERE id = v_id;
    -- its counts: classes left without rules are pruned with their counters
    DELETE FROM @extschema@._alert_rule_class_rules WHERE rule_id = v_id;
END
$fn$;
COMMENT ON FUNCTION @extschema@.remove_alert_rule(text) IS
    'Deletes an alert rule with its counters and alert states (alert_history and sent notifications stay); nothing is notified.';

CREATE FUNCTION @extschema@.pause_alert_rule(name text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE @extschema@.alert_rules r SET enabled = false
     WHERE r.id = @extschema@._alert_rule_id(pause_alert_rule.name);
END
$fn$;
COMMENT ON FUNCTION @extschema@.pause_alert_rule(text) IS
    'Pauses an alert rule: it is still counted, but not evaluated; its alerts keep their state until it is resumed.';

CREATE FUNCTION @extschema@.resume_alert_rule(name text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE @extschema@.alert_rules r SET enabled = true
     WHERE r.id = @extschema@._alert_rule_id(resume_alert_rule.name);
END
$fn$;
COMMENT ON FUNCTION @extschema@.resume_alert_rule(text) IS
    'Resumes a paused alert rule: evaluated again from the next evaluation.';

CREATE FUNCTION @extschema@.rule_preview(name text)
    RETURNS TABLE (labels jsonb, value float8, matched bigint, total bigint,
                   would_fire boolean, state text, window_start timestamptz)
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT v.labels, v.value, v.matched, v.total, v.cond, coalesce(a.state, 'inactive'),
           @extschema@._alert_window_start(now(), r."window", r.bucket_secs)
    FROM @extschema@.alert_rules r
    CROSS JOIN LATERAL @extschema@._alert_rule_values(r.id, now(), @extschema@._absent_lookback()) v
    LEFT JOIN @extschema@.alerts a ON a.rule_id = r.id AND a.labels = v.labels
    WHERE r.id = @extschema@._alert_rule_id(rule_preview.name)
    ORDER BY v.cond DESC, v.value DESC NULLS LAST, v.labels;
END;
COMMENT ON FUNCTION @extschema@.rule_preview(text) IS
    'Per group of an alert rule (paused or not): its value now, whether its condition holds (would_fire, before for_duration) and its alert state. Counting starts when the rule is created.';

-- ---------------------------------------------------------------------------
-- evaluation (dispatch worker 1, every logagg.rule_eval_interval)
-- ---------------------------------------------------------------------------

-- Queue a rule alert's notification to its routes: p_status firing (first
-- notification, or a repeat when p_repeat) or resolved.  Returns rows queued.
CREATE FUNCTION @extschema@._queue_rule_alert(p_alert_id bigint, p_status text, p_repeat boolean)
    RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    a       record;
    v_fp    text;
    v_msg   text;
    v_payload jsonb;
    n       int;
    v_grouped int[];
BEGIN
    SELECT al.*, r.name, r.kind, r.threshold, r."window", r.severity, r.id AS rid
      INTO a
      FROM @extschema@.alerts al JOIN @extschema@.alert_rules r ON r.id = al.rule_id
     WHERE al.id = p_alert_id;
    v_fp := 'rule-' || left(md5(a.rid::text || ':' || a.labels::text), 16);
    -- e.g. "errors firing: count 51 (threshold 50, window 00:05:00) {"source": "svc-a"}"
    v_msg := format('%s %s: %s (%s, window %s)%s', a.name, p_status,
                    CASE a.kind WHEN 'absent' THEN 'no records'
                         ELSE a.kind || ' ' || coalesce(trim_scale(round(a.value::numeric, 4))::text, '-') END,
                    CASE a.kind WHEN 'absent' THEN 'absent' ELSE 'threshold ' || a.threshold END,
                    a."window",
                    CASE WHEN a.labels = '{}' THEN '' ELSE ' ' || a.labels::text END);
    v_payload := jsonb_build_object(
        'rule', a.name, 'status', p_status, 'value', a.value, 'labels', a.labels,
        'starts_at', @extschema@._utc(a.fired_at),
        'ends_at', CASE WHEN p_status = 'resolved' THEN @extschema@._utc(a.resolved_at) END,
        'kind', a.kind, 'threshold', a.threshold, 'level', NULL, 'message', v_msg);

    WITH cand AS (
        SELECT rt.id, rt.destination, rt."continue", rt.group_by
        FROM @extschema@.routes rt
        JOIN @extschema@.destinations d ON d.name = rt.destination AND d.enabled
        LEFT JOIN @extschema@._alert_route_sends s ON s.alert_id = p_alert_id AND s.route_id = rt.id
        WHERE rt.enabled
          AND CASE
                WHEN p_status = 'resolved' THEN s.route_id IS NOT NULL AND rt.send_resolved
                WHEN p_repeat THEN s.route_id IS NOT NULL AND rt.repeat_interval IS NOT NULL
                                   AND s.sent_at + rt.repeat_interval <= now()
                ELSE a.severity <= rt.min_severity
                     AND (rt.source IS NULL OR rt.source = a.labels->>'source')
                     AND (rt.matchers = '[]' OR @extschema@._route_matches(rt.matchers,
                            a.labels || jsonb_build_object('rule', a.name, 'severity', a.severity)))
              END
    ), rt AS (
        -- routes in id order, up to the first that does not continue
        SELECT cand.id, cand.destination, cand.group_by FROM cand
        WHERE p_status <> 'firing' OR p_repeat
           OR cand.id <= coalesce((SELECT min(c2.id) FROM cand c2 WHERE NOT c2."continue"), cand.id)
    ), q AS (
        INSERT INTO @extschema@.alert_queue
            (severity, route_id, destination, fingerprint, source, log_id, count,
             first_seen, last_seen, payload, next_attempt_at)
        SELECT a.severity, rt.id, rt.destination, v_fp, a.labels->>'source', a.sample_log_id,
               greatest(0, round(coalesce(a.value, 0)))::bigint,
               coalesce(a.fired_at, now()), coalesce(a.resolved_at, now()), v_payload, now()
        FROM rt
        WHERE rt.group_by IS NULL
        RETURNING route_id
    ), s AS (
        INSERT INTO @extschema@._alert_route_sends AS s (alert_id, route_id, sent_at)
        SELECT p_alert_id, q.route_id, now() FROM q WHERE p_status = 'firing'
        ON CONFLICT (alert_id, route_id) DO UPDATE SET sent_at = excluded.sent_at
    )
    SELECT count(*), (SELECT array_agg(rt.id) FROM rt WHERE rt.group_by IS NOT NULL)
      INTO n, v_grouped FROM q;
    IF p_status = 'resolved' THEN
        DELETE FROM @extschema@._alert_route_sends WHERE alert_id = p_alert_id;
    END IF;
    -- routes with group_by notify per group (schema/26_route_groups.sql)
    RETURN n + @extschema@._route_groups_take(p_alert_id, p_status, p_repeat, v_grouped);
END
$fn$;
COMMENT ON FUNCTION @extschema@._queue_rule_alert(bigint, text, boolean) IS
    'Internal: queues a rule alert''s firing (new or repeated) or resolved notification to its routes (routes with group_by take it into their groups, schema/26_route_groups.sql); returns the number of queue rows.';

-- Move a rule alert to a new state, with its history row.
CREATE FUNCTION @extschema@._set_alert_state(p_alert_id bigint, p_state text, p_value float8)
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    WITH old AS (
        SELECT a.id, a.state FROM @extschema@.alerts a WHERE a.id = p_alert_id FOR UPDATE
    ), upd AS (
        UPDATE @extschema@.alerts a
           SET state = p_state, since = now(), value = p_value, evaluated_at = now(),
               fired_at = CASE WHEN p_state = 'firing' THEN now() ELSE a.fired_at END,
               resolved_at = CASE WHEN p_state = 'resolved' THEN now()
                                  WHEN p_state = 'firing' THEN NULL ELSE a.resolved_at END
          FROM old WHERE a.id = old.id
        RETURNING a.*, old.state AS old_state
    )
    INSERT INTO @extschema@.alert_history (alert_id, rule_id, rule, labels, from_state, to_state, value)
    SELECT upd.id, upd.rule_id, r.name, upd.labels, upd.old_state, upd.state, upd.value
    FROM upd JOIN @extschema@.alert_rules r ON r.id = upd.rule_id;
END
$fn$;
COMMENT ON FUNCTION @extschema@._set_alert_state(bigint, text, float8) IS
    'Internal: moves a rule alert to a state (since = now) and records the change in alert_history.';

-- One evaluation of every enabled rule at now(): the lifecycle
-- inactive -> pending (for_duration) -> firing -> resolved per group, and
-- the notifications that go with it.  Returns the queue rows written.
--
-- First the pending ingest deltas are folded into the counters (in this
-- transaction).  Then, so that an evaluation costs what changed rather
-- than rules x groups x buckets: a count or rate rule's value only rises
-- when its group gets records, so for those rules only the groups the
-- fold touched (all groups of a rule the previous evaluation did not
-- cover: new, resumed or changed, evaluated_at NULL) and the groups with
-- a pending or firing alert are looked at, and a touched group only when
-- all its classes together hold more records than the rule's threshold
-- (else the condition cannot hold).  Every group is looked at for ratio
-- (the denominator leaving the window can raise the ratio) and absent
-- rules (a group falls silent without a record).  Window sums are taken
-- once per (class, group), then added up per rule.
CREATE FUNCTION @extschema@._evaluate_alert_rules() RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
    SET jit = off
AS $fn$
DECLARE
    g          record;
    n          int := 0;
    v_id       bigint;
    v_now      timestamptz := now();
    v_lookback interval := @extschema@._absent_lookback();
    v_prev     timestamptz;
    v_cls      int[];
    v_labels   jsonb[];
    v_ids      int[];
    v_evs      timestamptz[];
BEGIN
    -- the start of the latest evaluation that committed, and what each
    -- enabled rule's evaluated_at is now
    SELECT max(ar.evaluated_at), array_agg(ar.id), array_agg(ar.evaluated_at)
      INTO v_prev, v_ids, v_evs
      FROM @extschema@.alert_rules ar WHERE ar.enabled;
    SELECT array_agg(f.class_id), array_agg(f.labels) INTO v_cls, v_labels
      FROM @extschema@._fold_alert_rule_deltas() f;
    FOR g IN
        WITH rr AS (
            SELECT ar.id, ar.kind, ar.threshold, ar."window", ar.for_duration,
                   (ar.evaluated_at IS NULL OR ar.evaluated_at < v_prev) AS every_group
            FROM @extschema@.alert_rules ar
            WHERE ar.enabled
        ), kc AS (
            SELECT k.id, @extschema@._alert_window_start(v_now, make_interval(secs => k.window_secs),
                                                          k.bucket_secs) AS ws
            FROM @extschema@._alert_rule_classes k
        ), touched AS (
            -- groups whose counts the fold changed; all groups of a count
            -- or rate rule the previous evaluation did not cover
            SELECT t.class_id, t.labels FROM unnest(v_cls, v_labels) AS t(class_id, labels)
            UNION
            SELECT c.class_id, c.labels
            FROM rr
            JOIN @extschema@._alert_rule_class_rules m ON m.rule_id = rr.id
            JOIN kc ON kc.id = m.class_id
            JOIN @extschema@._alert_rule_counts c ON c.class_id = m.class_id AND c.bucket >= kc.ws
            WHERE rr.every_group AND rr.kind IN ('count', 'rate')
        ), ext AS (
            -- groups looked at whatever the fold touched: those with a
            -- pending or firing alert, every group of ratio and absent rules
            SELECT a.rule_id, a.labels
            FROM @extschema@.alerts a JOIN rr ON rr.id = a.rule_id
            WHERE a.state IN ('pending', 'firing')
            UNION
            SELECT m.rule_id, c.labels
            FROM rr
            JOIN @extschema@._alert_rule_class_rules m ON m.rule_id = rr.id
            JOIN kc ON kc.id = m.class_id
            JOIN @extschema@._alert_rule_counts c
              ON c.class_id = m.class_id
             AND c.bucket >= CASE WHEN rr.kind = 'absent' THEN least(kc.ws, v_now - v_lookback) ELSE kc.ws END
            WHERE rr.kind IN ('ratio', 'absent')
        ), nb AS (
            -- classes that share a rule
            SELECT DISTINCT m1.class_id AS c1, m2.class_id AS c2
            FROM @extschema@._alert_rule_class_rules m1
            JOIN @extschema@._alert_rule_class_rules m2 ON m2.rule_id = m1.rule_id
        ), need AS (
            -- every (class, group) a value of a looked-at (rule, group) sums
            SELECT nb.c2 AS class_id, t.labels, false AS lookback
            FROM touched t JOIN nb ON nb.c1 = t.class_id
            UNION
            SELECT m.class_id, e.labels, rr.kind = 'absent'
            FROM ext e JOIN rr ON rr.id = e.rule_id
            JOIN @extschema@._alert_rule_class_rules m ON m.rule_id = e.rule_id
        ), cw AS (
            SELECT nd.class_id, nd.labels,
                   coalesce(sum(c.n) FILTER (WHERE c.bucket >= kc.ws), 0)::bigint AS n,
                   sum(c.n)::bigint AS n_lookback,
                   max(c.last_ts) FILTER (WHERE c.bucket >= kc.ws) AS last_ts,
                   (max(ARRAY[extract(epoch FROM c.last_ts), c.last_log_id])
                       FILTER (WHERE c.bucket >= kc.ws))[2]::bigint AS last_log_id
            FROM (SELECT need.class_id, need.labels, bool_or(need.lookback) AS lookback
                  FROM need GROUP BY need.class_id, need.labels) nd
            JOIN kc ON kc.id = nd.class_id
            JOIN @extschema@._alert_rule_counts c
              ON c.class_id = nd.class_id AND c.labels = nd.labels
             AND c.bucket >= CASE WHEN nd.lookback THEN least(kc.ws, v_now - v_lookback) ELSE kc.ws END
            GROUP BY nd.class_id, nd.labels
        ), bound AS (
            -- no rule counts more records of a group than all its classes hold
            SELECT cw.labels, sum(cw.n) AS n FROM cw GROUP BY cw.labels
        ), limits AS (
            -- per count or rate rule, the records its condition needs
            SELECT rr.id, CASE rr.kind WHEN 'rate' THEN rr.threshold * greatest(extract(epoch FROM rr."window"), 1)
                                       ELSE rr.threshold END AS need
            FROM rr WHERE rr.kind IN ('count', 'rate')
        ), class_need AS (
            SELECT m.class_id, min(l.need) AS need
            FROM @extschema@._alert_rule_class_rules m JOIN limits l ON l.id = m.rule_id
            GROUP BY m.class_id
        ), hot AS MATERIALIZED (
            -- touched groups some rule of the class might fire on, found
            -- before spreading over the class's rules
            SELECT t.class_id, t.labels, b.n
            FROM touched t
            JOIN class_need cn ON cn.class_id = t.class_id
            JOIN bound b ON b.labels = t.labels AND b.n > cn.need
        ), cand AS (
            SELECT m.rule_id, h.labels
            FROM hot h
            JOIN @extschema@._alert_rule_class_rules m ON m.class_id = h.class_id
            JOIN limits l ON l.id = m.rule_id AND h.n > l.need
            UNION
            SELECT e.rule_id, e.labels FROM ext e
        ), gv AS (
            SELECT d.rule_id, d.labels,
                   coalesce(sum(cw.n) FILTER (WHERE m."full"), 0)::bigint AS matched,
                   coalesce(sum(cw.n), 0)::bigint AS total,
                   (max(ARRAY[extract(epoch FROM cw.last_ts), cw.last_log_id])
                       FILTER (WHERE m."full" AND cw.last_ts IS NOT NULL))[2]::bigint AS sample_log_id,
                   max(cw.last_ts) FILTER (WHERE m."full") AS sample_ts,
                   coalesce(bool_or(m."full" AND cw.n_lookback > 0), false) AS seen
            FROM cand d
            JOIN @extschema@._alert_rule_class_rules m ON m.rule_id = d.rule_id
            JOIN cw ON cw.class_id = m.class_id AND cw.labels = d.labels
            GROUP BY d.rule_id, d.labels
        ), v AS (
            SELECT gv.*,
                   CASE rr.kind
                       WHEN 'count' THEN gv.matched::float8
                       WHEN 'rate' THEN gv.matched / greatest(extract(epoch FROM rr."window")::float8, 1)
                       WHEN 'ratio' THEN CASE WHEN gv.total > 0 THEN gv.matched::float8 / gv.total END
                       ELSE gv.matched::float8
                   END AS value,
                   rr.kind, rr.threshold
            FROM gv JOIN rr ON rr.id = gv.rule_id
        ), vc AS (
            SELECT v.*,
                   CASE v.kind WHEN 'absent' THEN v.seen AND v.matched = 0
                               ELSE coalesce(v.value > v.threshold, false) END AS cond
            FROM v
        )
        SELECT rr.id AS rule_id, rr.for_duration,
               coalesce(vc.labels, a.labels) AS labels, coalesce(vc.cond, false) AS cond,
               coalesce(vc.value, CASE WHEN rr.kind = 'ratio' THEN NULL ELSE 0 END) AS value,
               vc.sample_log_id, vc.sample_ts,
               a.id AS alert_id, a.state, a.since
        FROM vc
        FULL JOIN (SELECT x.* FROM @extschema@.alerts x WHERE x.state IN ('pending', 'firing')) a
               ON a.rule_id = vc.rule_id AND a.labels = vc.labels
        JOIN rr ON rr.id = coalesce(vc.rule_id, a.rule_id)
        WHERE coalesce(vc.cond, false) OR a.state IN ('pending', 'firing')
        ORDER BY rr.id, a.id NULLS LAST
    LOOP
        IF g.cond THEN
            IF g.state IS NULL THEN
                INSERT INTO @extschema@.alerts AS x (rule_id, labels, state, since, value,
                                                   sample_log_id, sample_ts)
                VALUES (g.rule_id, g.labels, 'inactive', now(), g.value, g.sample_log_id, g.sample_ts)
                ON CONFLICT (rule_id, labels) DO UPDATE
                    SET sample_log_id = coalesce(excluded.sample_log_id, x.sample_log_id),
                        sample_ts = coalesce(excluded.sample_ts, x.sample_ts)
                RETURNING x.id INTO v_id;
                IF g.for_duration > '0' THEN
                    PERFORM @extschema@._set_alert_state(v_id, 'pending', g.value);
                ELSE
                    PERFORM @extschema@._set_alert_state(v_id, 'firing', g.value);
                    n := n + @extschema@._queue_rule_alert(v_id, 'firing', false);
                END IF;
            ELSIF g.state = 'pending' AND g.since + g.for_duration <= now() THEN
                UPDATE @extschema@.alerts
                   SET sample_log_id = coalesce(g.sample_log_id, sample_log_id),
                       sample_ts = coalesce(g.sample_ts, sample_ts)
                 WHERE id = g.alert_id;
                PERFORM @extschema@._set_alert_state(g.alert_id, 'firing', g.value);
                n := n + @extschema@._queue_rule_alert(g.alert_id, 'firing', false);
            ELSE
                UPDATE @extschema@.alerts
                   SET value = g.value, evaluated_at = now(),
                       sample_log_id = coalesce(g.sample_log_id, sample_log_id),
                       sample_ts = coalesce(g.sample_ts, sample_ts)
                 WHERE id = g.alert_id;
                IF g.state = 'firing' THEN
                    n := n + @extschema@._queue_rule_alert(g.alert_id, 'firing', true);
                END IF;
            END IF;
        ELSIF g.state = 'pending' THEN
            PERFORM @extschema@._set_alert_state(g.alert_id, 'inactive', g.value);
        ELSE
            PERFORM @extschema@._set_alert_state(g.alert_id, 'resolved', g.value);
            n := n + @extschema@._queue_rule_alert(g.alert_id, 'resolved', false);
        END IF;
    END LOOP;
    -- routes with group_by: one notification per changed group (schema/26_route_groups.sql)
    n := n + @extschema@._route_groups_flush_due();
    -- not a rule resumed or changed meanwhile (evaluated_at NULL): the
    -- next evaluation must look at all its groups
    UPDATE @extschema@.alert_rules ar SET evaluated_at = now()
      FROM unnest(v_ids, v_evs) AS u(id, ev)
     WHERE ar.id = u.id AND ar.enabled AND ar.evaluated_at IS NOT DISTINCT FROM u.ev;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION @extschema@._evaluate_alert_rules() IS
    'Internal: folds the pending ingest deltas into the counters, evaluates every enabled alert rule now (the groups whose value can have changed), moves its alerts through pending / firing / resolved and queues their notifications. Returns the number of queue rows written.';

-- Counters older than every window that needs them: per (class, group)
-- the newest bucket is kept for logagg.absent_lookback (an absent rule
-- must know the group was seen), everything else once it left the
-- window; memberships of removed rules, and classes left without rules
-- with their counters.
CREATE FUNCTION @extschema@._prune_alert_rule_counts() RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n int;
    m int;
    v_lookback interval := @extschema@._absent_lookback();
BEGIN
    DELETE FROM @extschema@._alert_rule_class_rules m
     WHERE NOT EXISTS (SELECT 1 FROM @extschema@.alert_rules r WHERE r.id = m.rule_id);
    DELETE FROM @extschema@._alert_rule_counts c
     WHERE NOT EXISTS (SELECT 1 FROM @extschema@._alert_rule_class_rules m WHERE m.class_id = c.class_id);
    GET DIAGNOSTICS n = ROW_COUNT;
    -- a pending delta that names a deleted class numbers it again
    DELETE FROM @extschema@._alert_rule_classes k
     WHERE NOT EXISTS (SELECT 1 FROM @extschema@._alert_rule_class_rules m WHERE m.class_id = k.id);
    DELETE FROM @extschema@._alert_rule_counts c
     USING @extschema@._alert_rule_classes k
     WHERE k.id = c.class_id
       AND c.bucket < @extschema@._alert_window_start(now(), make_interval(secs => k.window_secs), k.bucket_secs)
       AND (c.bucket < now() - v_lookback
            OR EXISTS (SELECT 1 FROM @extschema@._alert_rule_counts c2
                        WHERE c2.class_id = c.class_id AND c2.labels = c.labels
                          AND c2.bucket > c.bucket));
    GET DIAGNOSTICS m = ROW_COUNT;
    -- alerts that are over and whose group is gone
    DELETE FROM @extschema@.alerts a
     WHERE a.state IN ('inactive', 'resolved') AND a.since < now() - v_lookback;
    RETURN n + m;
END
$fn$;
COMMENT ON FUNCTION @extschema@._prune_alert_rule_counts() IS
    'Internal: deletes alert rule counters no window needs any more, the memberships of removed rules and classes left without rules (with their counters), and inactive / resolved alerts older than logagg.absent_lookback. Returns counter rows deleted.';

-- ---------------------------------------------------------------------------
-- inhibition, like Alertmanager's inhibit_rules
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.inhibit_rules (
    id               serial PRIMARY KEY,
    source_matchers  jsonb NOT NULL,
    target_matchers  jsonb NOT NULL,
    equal            text[] NOT NULL DEFAULT '{}',
    created_at       timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.inhibit_rules IS
    'While a rule alert matching source_matchers fires, alerts matching target_matchers whose labels listed in equal have the same values are not sent (logged as silenced). Made with logagg.add_inhibit_rule.';

CREATE FUNCTION @extschema@.add_inhibit_rule(source_matchers jsonb, target_matchers jsonb,
                                             equal text[] DEFAULT '{}')
    RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_id int;
BEGIN
    IF equal IS NULL OR EXISTS (SELECT 1 FROM unnest(equal) e WHERE e IS NULL OR e !~ '^[A-Za-z_][A-Za-z0-9_.]*$') THEN
        RAISE EXCEPTION 'equal must be a list of label names'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ARRAY[''source''].';
    END IF;
    INSERT INTO @extschema@.inhibit_rules (source_matchers, target_matchers, equal)
    VALUES (@extschema@._parse_matchers(source_matchers), @extschema@._parse_matchers(target_matchers),
            add_inhibit_rule.equal)
    RETURNING id INTO v_id;
    RETURN v_id;
END
$fn$;
COMMENT ON FUNCTION @extschema@.add_inhibit_rule(jsonb, jsonb, text[]) IS
    'Adds an inhibition rule (Alertmanager semantics): while a firing rule alert matches source_matchers, alerts matching target_matchers with equal values of the labels in equal are not sent. Returns its id.';

CREATE FUNCTION @extschema@.remove_inhibit_rule(id int) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    DELETE FROM @extschema@.inhibit_rules i WHERE i.id = remove_inhibit_rule.id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'inhibit rule % does not exist', id
            USING ERRCODE = 'undefined_object', HINT = 'SELECT * FROM logagg.inhibit_rules lists them.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@.remove_inhibit_rule(int) IS
    'Deletes an inhibition rule.';

-- The labels an alert of the queue is matched on: source, severity,
-- status, level, fingerprint; a rule alert's rule and group labels.
CREATE FUNCTION @extschema@._queued_alert_labels(q @extschema@.alert_queue) RETURNS jsonb
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN jsonb_typeof(q.payload->'labels') = 'object' THEN q.payload->'labels' ELSE '{}' END
           || jsonb_strip_nulls(jsonb_build_object('source', q.source, 'severity', q.severity,
                                                  'status', q.payload->>'status', 'level', q.payload->>'level',
                                                  'fingerprint', q.fingerprint, 'rule', q.payload->>'rule'));
COMMENT ON FUNCTION @extschema@._queued_alert_labels(@extschema@.alert_queue) IS
    'Internal: the labels route matchers and inhibition rules see for a queued alert.';

-- The inhibition rule that mutes this queued alert now, if any.
CREATE FUNCTION @extschema@._inhibited_by(q @extschema@.alert_queue) RETURNS int
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT ir.id
    FROM @extschema@.inhibit_rules ir
    CROSS JOIN LATERAL (SELECT @extschema@._queued_alert_labels(q) AS labels) t
    WHERE @extschema@._route_matches(ir.target_matchers, t.labels)
      AND EXISTS (
          SELECT 1
          FROM @extschema@.alerts a
          JOIN @extschema@.alert_rules r ON r.id = a.rule_id
          CROSS JOIN LATERAL (SELECT a.labels || jsonb_build_object('rule', r.name, 'severity', r.severity) AS labels) s
          WHERE a.state = 'firing'
            -- an alert never inhibits itself
            AND NOT (coalesce(q.payload->>'rule', '') = r.name AND q.payload->'labels' = a.labels)
            AND @extschema@._route_matches(ir.source_matchers, s.labels)
            AND NOT EXISTS (SELECT 1 FROM unnest(ir.equal) e
                            WHERE coalesce(t.labels->>e, '') <> coalesce(s.labels->>e, '')))
    ORDER BY ir.id
    LIMIT 1;
END;
COMMENT ON FUNCTION @extschema@._inhibited_by(@extschema@.alert_queue) IS
    'Internal: the id of an inhibition rule that mutes the queued alert now (a firing rule alert matches its source side), or NULL.';

SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_rules', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_rules_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_history', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_history_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.inhibit_rules', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.inhibit_rules_id_seq', '');

CREATE OR REPLACE FUNCTION @extschema@._enqueue_alerts(groups jsonb) RETURNS int
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

-- _claim_alerts(): due alerts of a route inside its mute time intervals,
-- and inhibited alerts, are logged as silenced.  Only those blocks are new, so the definition in
-- place is edited (as the silence regex patch above does) rather than
-- restated.
DO $mute$
DECLARE
    def      text := pg_catalog.pg_get_functiondef(
                         '@extschema@._claim_alerts(int, int, int)'::pg_catalog.regprocedure);
    v_anchor text := $a$    RETURN QUERY
    WITH due AS ($a$;
BEGIN
    IF pg_catalog.strpos(def, v_anchor) = 0 THEN
        RAISE EXCEPTION 'logagg upgrade: _claim_alerts() is not the expected one';
    END IF;
    EXECUTE pg_catalog.replace(def, v_anchor, $m$    -- routes in one of their mute time intervals send nothing: their due
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

$m$ || v_anchor);
END
$mute$;

-- The alertmanager destination kind: the kind check and
-- _validate_destination() (schema/20_alerts.sql) gain it.  Only those
-- expressions change, so the definition in place is edited.
ALTER TABLE @extschema@.destinations DROP CONSTRAINT destinations_kind_check;
ALTER TABLE @extschema@.destinations ADD CONSTRAINT destinations_kind_check
    CHECK (kind IN ('webhook', 'slack', 'email', 'sms', 'pagerduty', 'alertmanager'));
DO $am$
DECLARE
    def text := pg_catalog.pg_get_functiondef(
                    '@extschema@._validate_destination(text, jsonb)'::pg_catalog.regprocedure);
    v_old1 text := $o1$        ELSE
            RAISE EXCEPTION 'unknown destination kind "%"', kind
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use one of webhook, slack, email, sms, pagerduty.';$o1$;
    v_new1 text := $n1$        WHEN 'alertmanager' THEN
            required := ARRAY['url'];
            allowed := ARRAY['url', 'headers', 'generator_url'];
        ELSE
            RAISE EXCEPTION 'unknown destination kind "%"', kind
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'Use one of webhook, slack, email, sms, pagerduty, alertmanager.';$n1$;
    v_old2 text := $o2$            WHEN kind = 'webhook' AND config->>'url' ~* '^http://'$o2$;
    v_new2 text := $n2$            WHEN kind IN ('webhook', 'alertmanager') AND config->>'url' ~* '^http://'$n2$;
BEGIN
    IF pg_catalog.strpos(def, v_old1) = 0 OR pg_catalog.strpos(def, v_old2) = 0 THEN
        RAISE EXCEPTION 'logagg upgrade: _validate_destination() is not the expected one';
    END IF;
    EXECUTE pg_catalog.replace(pg_catalog.replace(def, v_old1, v_new1), v_old2, v_new2);
END
$am$;

REVOKE ALL ON FUNCTION @extschema@._parse_matchers(jsonb),
                       @extschema@._route_matches(jsonb, jsonb),
                       @extschema@.set_route_matchers(int, jsonb, boolean),
                       @extschema@.schedule_silence(text, text, timestamptz, timestamptz, text, text),
                       @extschema@._route_muted(jsonb, timestamptz),
                       @extschema@.set_route_mute_times(int, jsonb),
                       @extschema@._route_admit(int, interval, int),
                       @extschema@._add_to_digest(int, text, interval, @extschema@.severity, bigint, timestamptz, timestamptz),
                       @extschema@._alert_bucket_secs(interval),
                       @extschema@._alert_window_start(timestamptz, interval, int),
                       @extschema@._alert_rule_values(int, timestamptz, interval),
                       @extschema@._alert_rule_pending(int),
                       @extschema@._fold_alert_rule_deltas(),
                       @extschema@._alert_rule_reevaluate(),
                       @extschema@._absent_lookback(),
                       @extschema@._validate_alert_rule(jsonb, interval, float8, text, text[], interval),
                       @extschema@.add_alert_rule(text, jsonb, interval, float8, text, text[], interval, @extschema@.severity, boolean),
                       @extschema@._alert_rule_id(text),
                       @extschema@.remove_alert_rule(text),
                       @extschema@.pause_alert_rule(text),
                       @extschema@.resume_alert_rule(text),
                       @extschema@.rule_preview(text),
                       @extschema@._queue_rule_alert(bigint, text, boolean),
                       @extschema@._set_alert_state(bigint, text, float8),
                       @extschema@._evaluate_alert_rules(),
                       @extschema@._prune_alert_rule_counts(),
                       @extschema@.add_inhibit_rule(jsonb, jsonb, text[]),
                       @extschema@.remove_inhibit_rule(int),
                       @extschema@._queued_alert_labels(@extschema@.alert_queue),
                       @extschema@._inhibited_by(@extschema@.alert_queue)
    FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@.alert_rules, @extschema@._alert_rule_counts,
      @extschema@._alert_rule_deltas, @extschema@._alert_rule_classes, @extschema@._alert_rule_class_rules,
      @extschema@.alerts, @extschema@.alert_history, @extschema@._alert_route_sends,
      @extschema@._route_storm, @extschema@.firing_alerts, @extschema@.inhibit_rules
    TO logagg_admin;
GRANT USAGE, SELECT, UPDATE ON SEQUENCE @extschema@.alert_rules_id_seq, @extschema@.alerts_id_seq,
      @extschema@.alert_history_id_seq, @extschema@.inhibit_rules_id_seq,
      @extschema@._alert_rule_classes_id_seq
    TO logagg_admin;
-- admin manages the rules; reader
-- sees them, the alert states and their history.
GRANT SELECT ON @extschema@.alert_rules, @extschema@.alerts, @extschema@.alert_history,
      @extschema@.firing_alerts, @extschema@._alert_rule_counts, @extschema@._alert_rule_deltas,
      @extschema@._alert_rule_classes, @extschema@._alert_rule_class_rules, @extschema@.inhibit_rules
    TO logagg_reader;
GRANT EXECUTE ON FUNCTION @extschema@.rule_preview(text),
                          @extschema@._alert_rule_id(text),
                          @extschema@._alert_rule_values(int, timestamptz, interval),
                          @extschema@._alert_rule_pending(int),
                          @extschema@._alert_window_start(timestamptz, interval, int),
                          @extschema@._absent_lookback()
    TO logagg_reader;
GRANT EXECUTE ON FUNCTION @extschema@.add_alert_rule(text, jsonb, interval, float8, text, text[], interval, @extschema@.severity, boolean),
                          @extschema@.remove_alert_rule(text),
                          @extschema@.pause_alert_rule(text),
                          @extschema@.resume_alert_rule(text),
                          @extschema@.set_route_matchers(int, jsonb, boolean),
                          @extschema@.set_route_mute_times(int, jsonb),
                          @extschema@.add_inhibit_rule(jsonb, jsonb, text[]),
                          @extschema@.remove_inhibit_rule(int),
                          @extschema@.schedule_silence(text, text, timestamptz, timestamptz, text, text),
                          @extschema@._parse_matchers(jsonb),
                          @extschema@._validate_alert_rule(jsonb, interval, float8, text, text[], interval),
                          @extschema@._alert_bucket_secs(interval)
    TO logagg_admin;

-- ---- scale-out on Citus ----
-- logagg.distribute(), the node role, the alert hand-over from worker
-- nodes and cloud sync and retention of a distributed logs
-- (schema/60_citus.sql), and maintain() doing nothing on a Citus
-- worker node (schema/10_core_functions.sql).  Runs before the privileges
-- section, which hands the new objects to logagg_owner.


-- sync_log says which node a part's snapshot is of (schema/30_sync.sql)
ALTER TABLE @extschema@.sync_log ADD COLUMN export_system_id bigint;
COMMENT ON COLUMN @extschema@.sync_log.export_system_id IS
    'On a Citus cluster: the system identifier of the node whose snapshot export_snapshot is (the node holding the rows); NULL on a single server.';

-- 'standalone' (no Citus), 'coordinator' (Citus group 0) or 'worker'.
-- Worker nodes ingest; partitions, retention, sync and alert dispatch are
-- the coordinator's, so that nothing is created, dropped, uploaded or
-- sent twice.
CREATE FUNCTION @extschema@._node_role() RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN 'standalone';
    END IF;
    IF (SELECT groupid FROM pg_dist_local_group) = 0 THEN
        RETURN 'coordinator';
    END IF;
    RETURN 'worker';
END
$fn$;
COMMENT ON FUNCTION @extschema@._node_role() IS
    'Internal: standalone (no Citus), coordinator or worker: on a Citus worker node the logagg workers only ingest.';

-- Is this logagg table distributed (or replicated) by Citus?
CREATE FUNCTION @extschema@._is_distributed(p_table text) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN false;
    END IF;
    RETURN EXISTS (SELECT 1 FROM pg_dist_partition
                   WHERE logicalrelid = pg_catalog.format('%I.%I', '@extschema@', p_table)::regclass);
END
$fn$;
COMMENT ON FUNCTION @extschema@._is_distributed(text) IS
    'Internal: whether the logagg table of that name is a Citus distributed or reference table.';

-- Ids of logs rows come from each node's own logagg.logs_id_seq: a worker
-- node draws from a range of its own (group id * 2^48 on), as Citus does
-- for the sequences it creates, so that ids stay unique cluster-wide.
CREATE FUNCTION @extschema@._claim_id_range() RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    base bigint := (SELECT groupid FROM pg_dist_local_group)::bigint << 48;
    last bigint := (SELECT last_value FROM pg_sequences
                    WHERE schemaname = '@extschema@' AND sequencename = 'logs_id_seq');
BEGIN
    IF base > 0 AND coalesce(last, 0) < base THEN
        PERFORM setval('@extschema@.logs_id_seq', base, true);
    END IF;
    RETURN base;
END
$fn$;
COMMENT ON FUNCTION @extschema@._claim_id_range() IS
    'Internal: moves this Citus worker node''s logs_id_seq into its own range (group id * 2^48 on); returns the range''s start.';

-- A worker node's own partitions of logs (its maintenance worker made them
-- before the node learnt its role) stand in the way of Citus creating the
-- distributed partitions of the same names: they go, if empty.
CREATE FUNCTION @extschema@._drop_local_partitions() RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    p      record;
    nrows  bigint;
    n      int := 0;
BEGIN
    IF @extschema@._is_distributed('logs') THEN
        RETURN 0;
    END IF;
    SELECT count(*) INTO nrows FROM @extschema@.logs;
    IF nrows > 0 THEN
        RAISE EXCEPTION 'logagg.logs on this node holds % rows of its own', nrows
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Copy them to the coordinator (INSERT INTO logagg.logs there), delete them here, and run logagg.distribute() again.';
    END IF;
    FOR p IN
        SELECT i.inhrelid::regclass AS rel
          FROM pg_inherits i
         WHERE i.inhparent = '@extschema@.logs'::regclass
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.classid = 'pg_class'::regclass AND d.objid = i.inhrelid
                              AND d.deptype = 'e')
    LOOP
        EXECUTE format('DROP TABLE %s', p.rel);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION @extschema@._drop_local_partitions() IS
    'Internal: on a Citus worker node before logagg.distribute(), drops the node''s own (empty) partitions of logs; refuses if logs holds rows.';

-- Alerts from worker nodes.  Only the coordinator dispatches, and its
-- queue, routes and destinations are its own tables; a worker node's
-- ingest writes the batch's alert groups here instead, in the batch's
-- transaction (logagg.distribute() distributes this table), and the
-- coordinator's first dispatch worker moves them into its queue every
-- second (_drain_alert_inbox).  Exactly once: a hand-over commits with
-- its rows, and is taken in the transaction that queues it.
CREATE TABLE @extschema@._alert_inbox (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    groups      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@._alert_inbox IS
    'Internal: alert groups a Citus worker node''s ingest hands to the coordinator, which queues them (logagg._drain_alert_inbox).';

-- The least urgent severity any route wants, for worker nodes' ingest
-- (a reference table after logagg.distribute(); kept by the coordinator).
CREATE TABLE @extschema@._alert_threshold (
    only_row      boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    min_severity  @extschema@.severity
);
INSERT INTO @extschema@._alert_threshold (only_row, min_severity) VALUES (true, NULL);
COMMENT ON TABLE @extschema@._alert_threshold IS
    'Internal: the least urgent severity any enabled route of the coordinator takes (NULL: none), read by Citus worker nodes'' ingest.';

CREATE FUNCTION @extschema@._drain_alert_inbox() RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    want    @extschema@.severity;
    g       jsonb;
    queued  int := 0;
BEGIN
    -- only the coordinator's routes and queue are the cluster's: a worker
    -- node taking hand-overs would queue them nowhere
    IF @extschema@._node_role() <> 'coordinator' OR NOT @extschema@._is_distributed('_alert_inbox') THEN
        RETURN 0;
    END IF;
    SELECT max(r.min_severity) INTO want
      FROM @extschema@.routes r
      JOIN @extschema@.destinations d ON d.name = r.destination AND d.enabled
     WHERE r.enabled;
    IF (SELECT t.min_severity FROM @extschema@._alert_threshold t) IS DISTINCT FROM want THEN
        UPDATE @extschema@._alert_threshold SET min_severity = want;
    END IF;
    FOR g IN
        WITH taken AS (DELETE FROM @extschema@._alert_inbox RETURNING groups, created_at)
        SELECT groups FROM taken ORDER BY created_at
    LOOP
        queued := queued + @extschema@._enqueue_alerts(g);
    END LOOP;
    RETURN queued;
END
$fn$;
COMMENT ON FUNCTION @extschema@._drain_alert_inbox() IS
    'Internal: on a Citus coordinator, queues the alert groups worker nodes handed over and publishes the routes'' severity threshold to them; returns the alerts queued.';

CREATE FUNCTION @extschema@.distribute(shard_count int DEFAULT 32) RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r        record;
    changed  text[] := '{}';
    t        text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'Citus is not installed in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Install Citus, preload it first (shared_preload_libraries = ''citus,logagg''), CREATE EXTENSION citus, add the worker nodes, then run logagg.distribute() on the coordinator.';
    END IF;
    IF @extschema@._node_role() <> 'coordinator' THEN
        RAISE EXCEPTION 'logagg.distribute() runs on the coordinator'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Connect to the coordinator (Citus group 0).';
    END IF;
    IF shard_count < 1 OR shard_count > 64000 THEN
        RAISE EXCEPTION 'shard_count must be between 1 and 64000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The workers run as logagg_owner, and Citus opens the connections to
    -- other nodes as the current user: it has to be able to log in there
    -- (pg_hba.conf and, with passwords, pg_dist_authinfo: docs/scale-out.md).
    -- Citus propagates the ALTER ROLE to every node.
    IF NOT (SELECT rolcanlogin FROM pg_roles WHERE rolname = 'logagg_owner') THEN
        ALTER ROLE logagg_owner LOGIN;
        changed := changed || 'logagg_owner LOGIN'::text;
    END IF;

    FOR r IN SELECT * FROM run_command_on_workers('SELECT @extschema@._drop_local_partitions()') LOOP
        IF NOT r.success THEN
            RAISE EXCEPTION 'worker node %:% cannot join: %', r.nodename, r.nodeport, r.result
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Every node needs logagg at the coordinator''s version and no rows of its own in logagg.logs.';
        END IF;
    END LOOP;

    -- The cache triggers on sources and rules only queue invalidations:
    -- safe on shards, which is what this setting asks to confirm.
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);

    -- logs by source: one source's time range is one shard (and one node),
    -- its rows in (source, ts) order together; see docs/scale-out.md.
    IF NOT @extschema@._is_distributed('logs') THEN
        -- Citus refuses the read policy's subquery on a distributed table,
        -- and the shards' copies of a policy would not follow its roles:
        -- per-source read restrictions stay a single-server feature
        IF EXISTS (SELECT 1 FROM @extschema@.source_readers) THEN
            RAISE EXCEPTION 'logagg.logs cannot be distributed while roles have per-source read restrictions'
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Lift them with logagg.revoke_source_read(role) first; docs/scale-out.md, "Read restrictions".';
        END IF;
        -- no subquery, and no restricted role could read anything
        ALTER POLICY source_read ON @extschema@.logs USING (false);
        PERFORM create_distributed_table('@extschema@.logs', 'source', shard_count => shard_count);
        changed := changed || 'logs'::text;
    END IF;
    -- resume points, read and written by whichever node a stream is on
    IF NOT @extschema@._is_distributed('streams') THEN
        PERFORM create_distributed_table('@extschema@.streams', 'stream_id',
                                         shard_count => shard_count, colocate_with => 'none');
        changed := changed || 'streams'::text;
    END IF;
    -- cloud sync's latest part per (window, source), next to its rows
    -- (see _sync_pending_cluster)
    IF NOT @extschema@._is_distributed('_sync_seen') THEN
        PERFORM create_distributed_table('@extschema@._sync_seen', 'source',
                                         colocate_with => '@extschema@.logs');
        changed := changed || '_sync_seen'::text;
    END IF;
    -- alert groups from worker nodes' ingest, for the coordinator
    IF NOT @extschema@._is_distributed('_alert_inbox') THEN
        PERFORM create_distributed_table('@extschema@._alert_inbox', 'id',
                                         shard_count => shard_count, colocate_with => 'none');
        changed := changed || '_alert_inbox'::text;
    END IF;
    -- what every node's ingest worker reads: tokens, SQL write grants,
    -- classification rules and the alert threshold, the same everywhere
    FOREACH t IN ARRAY ARRAY['sources', 'source_writers', 'rules', '_alert_threshold'] LOOP
        IF NOT @extschema@._is_distributed(t) THEN
            -- the restore trigger of rules reads rules: not while copying
            IF t = 'rules' THEN
                ALTER TABLE @extschema@.rules DISABLE TRIGGER rules_restore_replace;
            END IF;
            PERFORM create_reference_table(format('%I.%I', '@extschema@', t));
            IF t = 'rules' THEN
                ALTER TABLE @extschema@.rules ENABLE TRIGGER rules_restore_replace;
            END IF;
            changed := changed || t;
        END IF;
    END LOOP;

    FOR r IN SELECT * FROM run_command_on_workers('SELECT @extschema@._claim_id_range()') LOOP
        IF NOT r.success THEN
            RAISE EXCEPTION 'worker node %:% could not take its range of log ids: %', r.nodename, r.nodeport, r.result
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END LOOP;

    -- what was copied into the shards stays on disk in the local tables
    -- until truncated (Citus's own advice after distributing a table)
    FOREACH t IN ARRAY ARRAY['logs', '_sync_seen', 'streams', '_alert_inbox', 'sources', 'source_writers', 'rules', '_alert_threshold'] LOOP
        IF t = ANY (changed) THEN
            PERFORM truncate_local_data_after_distributing_table(format('%I.%I', '@extschema@', t));
        END IF;
    END LOOP;

    IF cardinality(changed) = 0 THEN
        RETURN 'logagg is already distributed';
    END IF;
    RETURN 'distributed: ' || array_to_string(changed, ', ');
END
$fn$;
COMMENT ON FUNCTION @extschema@.distribute(int) IS
    'On a Citus coordinator: makes logagg.logs a distributed table (by source, shard_count shards), streams, the alert hand-over and cloud sync''s _sync_seen distributed, sources, source_writers, rules and the alert threshold reference tables, so that every node ingests into one table; idempotent (run again after adding a node). See docs/scale-out.md.';

-- ---------------------------------------------------------------------------
-- Cloud sync and retention of a distributed logs (docs/scale-out.md,
-- "Cloud sync").  On one server a part's rows are told from later ones by
-- their xmin against the part's snapshot (schema/30_sync.sql).  On a
-- cluster a row's xmin is an xid of the node holding its shard, and only
-- that node's snapshots order it.  logs is distributed by source, so the
-- rows of one (window, source) are in one shard on one node: the export
-- reads them with one router query that also returns that node's snapshot
-- and system identifier (src/sync_export.c), and _sync_seen keeps them,
-- colocated with the rows, so the late-row test of the next cycle and of
-- retention runs on that node against that node's snapshot
-- (logagg._seen_here, src/sync_snapshot.c).
-- ---------------------------------------------------------------------------

-- The latest uploaded part of each (window, source) on a cluster, with the
-- snapshot it was read with and the node (system identifier) that snapshot
-- is of.  Distributed by source, colocated with logs, by
-- logagg.distribute(); written with the part's sync_log row, in its
-- transaction.  Unused (empty) on a single server.
CREATE TABLE @extschema@._sync_seen (
    source            text NOT NULL,
    window_start      timestamptz NOT NULL,
    part              int NOT NULL,
    export_snapshot   pg_snapshot NOT NULL,
    export_system_id  bigint NOT NULL,
    PRIMARY KEY (source, window_start)
);
COMMENT ON TABLE @extschema@._sync_seen IS
    'Internal: on a Citus cluster, the latest uploaded part of each (window, source), its snapshot and the system identifier of the node the snapshot is of, colocated with the rows of logagg.logs.';

CREATE FUNCTION @extschema@._system_id() RETURNS bigint
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'logagg_system_id';
COMMENT ON FUNCTION @extschema@._system_id() IS
    'Internal: this server''s system identifier (pg_control), naming whose transaction ids a snapshot orders.';

CREATE FUNCTION @extschema@._export_snapshot() RETURNS text
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'logagg_export_snapshot';
COMMENT ON FUNCTION @extschema@._export_snapshot() IS
    'Internal: the snapshot the calling statement reads with, as pg_snapshot text with in-progress subtransactions listed (what cloud sync records with a part).';

CREATE FUNCTION @extschema@._seen_here(xid, pg_snapshot, bigint) RETURNS boolean
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'logagg_seen_here';
COMMENT ON FUNCTION @extschema@._seen_here(xid, pg_snapshot, bigint) IS
    'Internal: whether a row with this xmin was seen by a snapshot taken on the server of that system identifier; false for a snapshot of another server.';

-- Record a part uploaded on a cluster (src/sync_record.c).
CREATE FUNCTION @extschema@._sync_seen_record(p_source text, p_window_start timestamptz, p_part int,
                                              p_snapshot pg_snapshot, p_system_id bigint)
    RETURNS void
    LANGUAGE plpgsql  -- Citus plans no parameters of SQL functions
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    INSERT INTO @extschema@._sync_seen AS s (source, window_start, part, export_snapshot, export_system_id)
    VALUES (p_source, p_window_start, p_part, p_snapshot, p_system_id)
    ON CONFLICT (source, window_start) DO UPDATE
       SET part = excluded.part, export_snapshot = excluded.export_snapshot,
           export_system_id = excluded.export_system_id;
    -- the coordinator's record says so too: until the row above is
    -- committed on its node, _sync_pending_cluster holds the window back
    UPDATE @extschema@.sync_log l SET export_system_id = p_system_id
     WHERE l.window_start = p_window_start AND l.source = p_source AND l.part = p_part
       AND l.status = 'uploaded';
END
$fn$;
COMMENT ON FUNCTION @extschema@._sync_seen_record(text, timestamptz, int, pg_snapshot, bigint) IS
    'Internal: on a Citus cluster, records the snapshot (and its node) of the latest uploaded part of a (window, source) in _sync_seen.';

-- _sync_pending for a distributed logs: the rows not seen by the latest
-- part's snapshot are counted on the nodes holding them (a colocated join
-- of logs and _sync_seen on source, which Citus runs on each shard); part
-- numbers and backoff come from the coordinator's sync_log.  A (window,
-- source) with uploads in sync_log but none in _sync_seen (uploaded before
-- logagg.distribute(), so with no export_system_id) has every row
-- counted, and its next part holds them all again.  One whose latest part
-- is in sync_log but not yet in _sync_seen waits for Citus to commit it.
CREATE FUNCTION @extschema@._sync_pending_cluster(p_window_secs int, p_closed_before timestamptz,
                                                  p_since timestamptz, p_force boolean)
    RETURNS TABLE (window_start timestamptz, window_end timestamptz, source text,
                   part int, prev_snapshot pg_snapshot, new_rows bigint, prev_system_id bigint)
    LANGUAGE plpgsql STABLE  -- Citus plans no parameters of SQL functions
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN QUERY
    WITH unsynced AS MATERIALIZED (
        -- pg_snapshot has no equality: grouped by its text (one per group)
        SELECT p.ws, p.source, count(*) AS n, p.snap, p.system_id, p.seen_part
        FROM (SELECT date_bin(make_interval(secs => p_window_secs), l.ts, timestamptz '1970-01-01 00:00+00') AS ws,
                     l.source, s.export_snapshot::text AS snap, s.export_system_id AS system_id,
                     s.part AS seen_part
              FROM @extschema@.logs l
              LEFT JOIN @extschema@._sync_seen s
                ON s.source = l.source
               AND s.window_start = date_bin(make_interval(secs => p_window_secs), l.ts, timestamptz '1970-01-01 00:00+00')
              WHERE l.ts < p_closed_before AND l.ts >= p_since
                AND (s.source IS NULL
                     OR NOT @extschema@._seen_here(l.xmin, s.export_snapshot, s.export_system_id))) p
        GROUP BY p.ws, p.source, p.snap, p.system_id, p.seen_part
    ), done AS (
        SELECT DISTINCT ON (d.window_start, d.source)
               d.window_start AS ws, d.source, d.part, d.export_system_id
        FROM @extschema@.sync_log d
        WHERE d.status = 'uploaded'
        ORDER BY d.window_start, d.source, d.part DESC
    ), lastfail AS (
        SELECT DISTINCT ON (f.window_start, f.source)
               f.window_start AS ws, f.source, f.next_attempt_at
        FROM @extschema@.sync_log f
        WHERE f.status = 'failed'
        ORDER BY f.window_start, f.source, f.id DESC
    )
    SELECT u.ws, u.ws + make_interval(secs => p_window_secs), u.source,
           coalesce(d.part + 1, 0), u.snap::pg_snapshot, u.n, u.system_id
    FROM unsynced u
    LEFT JOIN done d ON d.ws = u.ws AND d.source = u.source
    LEFT JOIN lastfail f ON f.ws = u.ws AND f.source = u.source
    WHERE (p_force OR f.next_attempt_at IS NULL OR f.next_attempt_at <= now())
      -- the latest part was recorded on the cluster, but its _sync_seen row
      -- is not visible yet: Citus has still to commit it on its node
      -- (two-phase commit interrupted); comparing with the part before
      -- would upload its rows again
      AND (d.export_system_id IS NULL OR u.seen_part IS NOT DISTINCT FROM d.part)
    ORDER BY u.ws, u.source;
END
$fn$;
COMMENT ON FUNCTION @extschema@._sync_pending_cluster(int, timestamptz, timestamptz, boolean) IS
    'Internal: _sync_pending for a Citus-distributed logagg.logs: rows are compared on the nodes holding them with the snapshot that node took for the latest uploaded part (_sync_seen); also returns that node''s system identifier.';

-- _drop_expired_partitions for a distributed logs.  The same rule -- a
-- partition goes only when every row in it is in an uploaded part -- with
-- what a cluster adds:
--  - LOCK TABLE on the coordinator is taken by Citus on every node, where
--    every write through Citus holds ROW EXCLUSIVE on the partitions until
--    that node commits, so no new row can come in;
--  - but Citus commits the shards of other nodes after that, with COMMIT
--    PREPARED: a write still prepared on some node holds a lock on a shard
--    of the partition there and its rows are not visible yet, so the
--    partition is kept for a later run (as it is when a node does not
--    answer);
--  - rows are compared on their node with _sync_seen (_seen_here).
CREATE FUNCTION @extschema@._drop_expired_partitions_cluster(p_retention_secs int, p_check_sync boolean,
                                                             p_window_secs int, p_now timestamptz DEFAULT now())
    RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r         record;
    shards    text[];
    in_doubt  boolean;
    unsynced  boolean;
    name      text;
    dropped   int := 0;
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
            -- at most 100 ms for the locks, as on one server
            -- (_drop_expired_partitions): ingest queues behind a waiting DROP
            PERFORM set_config('lock_timeout', '100ms', true);
            IF p_check_sync THEN
                EXECUTE format('LOCK TABLE %s IN SHARE MODE', r.partition);
                -- (shard_name() gives the quoted, schema-qualified name)
                SELECT array_agg(shard_name(d.logicalrelid, d.shardid)) INTO shards
                  FROM pg_dist_shard d
                 WHERE d.logicalrelid = r.partition;
                SELECT bool_or(NOT x.success OR x.result <> '0') INTO in_doubt
                  FROM run_command_on_all_nodes(format(
                       $c$SELECT count(*) FROM pg_catalog.pg_locks k
                           WHERE k.pid IS NULL AND k.locktype = 'relation'
                             AND k.relation IN (SELECT pg_catalog.to_regclass(s) FROM pg_catalog.unnest(%L::text[]) s)$c$,
                       coalesce(shards, '{}'))) x;
                IF in_doubt THEN
                    PERFORM set_config('lock_timeout', old_timeout, true);
                    RAISE LOG 'logagg: retention keeps partition % for now (a write to it is still being committed on a node, or a node did not answer)', r.partition;
                    CONTINUE;
                END IF;
                EXECUTE format($q$
                    SELECT EXISTS (
                        SELECT 1
                        FROM %s l
                        LEFT JOIN @extschema@._sync_seen s
                          ON s.source = l.source
                         AND s.window_start = date_bin(make_interval(secs => $1), l.ts, timestamptz '1970-01-01 00:00+00')
                        WHERE s.source IS NULL
                           OR NOT @extschema@._seen_here(l.xmin, s.export_snapshot, s.export_system_id))$q$,
                    r.partition)
                    INTO unsynced USING p_window_secs;
                IF unsynced THEN
                    PERFORM set_config('lock_timeout', old_timeout, true);
                    RAISE LOG 'logagg: retention keeps partition % (older than retention, but not every window in it is synced)', r.partition;
                    CONTINUE;
                END IF;
            END IF;
            name := r.partition::text;  -- a dropped regclass prints as its oid
            EXECUTE format('DROP TABLE %s', name);
            PERFORM set_config('lock_timeout', old_timeout, true);
            RAISE LOG 'logagg: retention dropped partition % (% to %)', name, r.range_start, r.range_end;
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
COMMENT ON FUNCTION @extschema@._drop_expired_partitions_cluster(int, boolean, int, timestamptz) IS
    'Internal: _drop_expired_partitions for a Citus-distributed logagg.logs: keeps a partition with rows not in an uploaded part, or with a write to it still being committed on some node.';

CREATE OR REPLACE FUNCTION @extschema@.maintain() RETURNS void
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

-- as schema/90_privileges.sql leaves them in a fresh install
REVOKE ALL ON FUNCTION @extschema@._node_role(), @extschema@._is_distributed(text),
    @extschema@._claim_id_range(), @extschema@._drop_local_partitions(),
    @extschema@._drain_alert_inbox(), @extschema@.distribute(int),
    @extschema@._system_id(), @extschema@._export_snapshot(),
    @extschema@._seen_here(xid, pg_snapshot, bigint),
    @extschema@._sync_seen_record(text, timestamptz, int, pg_snapshot, bigint),
    @extschema@._sync_pending_cluster(int, timestamptz, timestamptz, boolean),
    @extschema@._drop_expired_partitions_cluster(int, boolean, int, timestamptz) FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@._alert_inbox, @extschema@._alert_threshold,
    @extschema@._sync_seen
    TO logagg_admin;
GRANT EXECUTE ON FUNCTION @extschema@._is_distributed(text) TO logagg_admin;

-- ---- route grouping ----
-- Routes gain group_by / group_wait / group_interval for rule alerts, like
-- Alertmanager: one notification per group of alerts with equal group_by
-- labels (schema/26_route_groups.sql; _queue_rule_alert and
-- _evaluate_alert_rules hand grouped routes to it).

ALTER TABLE @extschema@.routes
    ADD COLUMN group_by text[]
        CHECK (group_by IS NULL OR (cardinality(group_by) <= 16 AND array_position(group_by, NULL) IS NULL)),
    ADD COLUMN group_wait interval NOT NULL DEFAULT '30 s' CHECK (group_wait >= '0'),
    ADD COLUMN group_interval interval NOT NULL DEFAULT '5 min' CHECK (group_interval > '0');
COMMENT ON COLUMN @extschema@.routes.group_by IS
    'Rule alerts of the route are grouped by these labels (rule, severity, source, the rules'' group labels) and each group is notified as one: NULL = one notification per alert; ''{...}'' = by all labels; ''{}'' = one group for the route. Set with logagg.set_route_grouping; record alerts keep their per-fingerprint grouping over group_window.';
COMMENT ON COLUMN @extschema@.routes.group_wait IS
    'With group_by: how long a new group''s first notification waits to collect more alerts.';
COMMENT ON COLUMN @extschema@.routes.group_interval IS
    'With group_by: after a group''s notification, its changes (alerts that fire or resolve) are notified at most once per group_interval.';

CREATE TABLE @extschema@._route_groups (
    id               bigserial PRIMARY KEY,
    route_id         int NOT NULL REFERENCES @extschema@.routes (id) ON DELETE CASCADE,
    group_labels     jsonb NOT NULL,
    created_at       timestamptz NOT NULL DEFAULT now(),
    notified_at      timestamptz,   -- due time of the latest notification queued
    pending_alert_id bigint,        -- that notification, while it may still change
    dirty            boolean NOT NULL DEFAULT false,  -- changed since the last flush
    UNIQUE (route_id, group_labels)
);
COMMENT ON TABLE @extschema@._route_groups IS
    'Internal: one row per (route with group_by, group label values) that holds alerts: when its latest notification was due, which queued one still collects changes, and whether alerts joined or resolved since the group was last brought up to date.';

CREATE TABLE @extschema@._route_group_alerts (
    group_id        bigint NOT NULL REFERENCES @extschema@._route_groups (id) ON DELETE CASCADE,
    alert_id        bigint NOT NULL REFERENCES @extschema@.alerts (id) ON DELETE CASCADE,
    resolved        boolean NOT NULL DEFAULT false,
    sent            boolean NOT NULL DEFAULT false,
    queued_in       bigint,
    queued_resolved boolean,
    PRIMARY KEY (group_id, alert_id)
);
CREATE INDEX _route_group_alerts_alert ON @extschema@._route_group_alerts (alert_id);
COMMENT ON TABLE @extschema@._route_group_alerts IS
    'Internal: the rule alerts of each route group: resolved or firing, whether a notification that left the queue carried it (sent), and the latest queued notification that carries it (queued_in) with the state it had there.';

-- A route's group of an alert: the alert's labels (its rule's group labels
-- plus rule and severity) restricted to group_by; '...' keeps them all.
-- A label the alert lacks is left out, as Alertmanager does.
CREATE FUNCTION @extschema@._route_group_labels(p_group_by text[], p_labels jsonb) RETURNS jsonb
    LANGUAGE sql IMMUTABLE
    SET search_path = pg_catalog, pg_temp
    RETURN CASE WHEN '...' = ANY (p_group_by) THEN p_labels
                ELSE (SELECT coalesce(jsonb_object_agg(k, p_labels->k), '{}')
                        FROM unnest(p_group_by) k WHERE p_labels ? k) END;
COMMENT ON FUNCTION @extschema@._route_group_labels(text[], jsonb) IS
    'Internal: the group labels of an alert on a route with group_by (''{...}'' = all of its labels).';

-- The queue row of a group notification: the group's firing alerts and
-- (with send_resolved) the resolved ones the receiver was told were
-- firing.  Returns NULL when there is nothing to tell.
CREATE FUNCTION @extschema@._route_group_row(p_group_id bigint)
    RETURNS @extschema@.alert_queue
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    g   record;
    res @extschema@.alert_queue;
    v   record;
BEGIN
    SELECT rg.*, rt.destination, rt.send_resolved INTO g
      FROM @extschema@._route_groups rg JOIN @extschema@.routes rt ON rt.id = rg.route_id
     WHERE rg.id = p_group_id;
    WITH m AS (
        SELECT ga.resolved, a.*, r.name, r.kind, r.threshold, r.severity, r.id AS rid
        FROM @extschema@._route_group_alerts ga
        JOIN @extschema@.alerts a ON a.id = ga.alert_id
        JOIN @extschema@.alert_rules r ON r.id = a.rule_id
        WHERE ga.group_id = p_group_id
          AND (NOT ga.resolved OR (ga.sent AND g.send_resolved))
    ), l AS (
        -- at most 200 alerts in one notification (count has them all),
        -- firing first, then by when they started
        SELECT m.*, row_number() OVER (ORDER BY m.resolved, m.fired_at, m.id) AS n
        FROM m
    )
    SELECT count(*) AS total,
           count(*) FILTER (WHERE NOT l.resolved) AS firing,
           min(l.severity) AS severity,
           min(l.fired_at) AS first_seen,
           string_agg(DISTINCT l.name, ', ') AS rules,
           jsonb_agg(jsonb_build_object(
               'rule', l.name,
               'status', CASE WHEN l.resolved THEN 'resolved' ELSE 'firing' END,
               'value', l.value, 'labels', l.labels, 'severity', l.severity,
               'kind', l.kind, 'threshold', l.threshold,
               'fingerprint', 'rule-' || left(md5(l.rid::text || ':' || l.labels::text), 16),
               'starts_at', @extschema@._utc(l.fired_at),
               'ends_at', CASE WHEN l.resolved THEN @extschema@._utc(l.resolved_at) END)
               ORDER BY l.n) FILTER (WHERE l.n <= 200) AS alerts,
           string_agg(format('- %s %s: %s %s', l.name,
                             CASE WHEN l.resolved THEN 'resolved' ELSE 'firing' END,
                             CASE l.kind WHEN 'absent' THEN 'no records'
                                  ELSE l.kind || ' ' || coalesce(trim_scale(round(l.value::numeric, 4))::text, '-') END,
                             l.labels::text), E'\n' ORDER BY l.n) FILTER (WHERE l.n <= 200) AS lines
      INTO v
      FROM l;
    IF v.total = 0 THEN
        RETURN NULL;
    END IF;
    res.severity := v.severity;
    res.route_id := g.route_id;
    res.destination := g.destination;
    -- the same for every notification of the group (PagerDuty's dedup_key)
    res.fingerprint := 'group-' || left(md5(g.route_id::text || ':' || g.group_labels::text), 16);
    res.source := g.group_labels->>'source';
    res.count := v.total;
    res.first_seen := coalesce(v.first_seen, now());
    res.last_seen := now();
    -- e.g. "2 firing, 1 resolved: svc-5xx {"source": "svc-a"}", then a line per alert
    -- labels: what silences' and inhibition rules' matchers see of it
    res.payload := jsonb_build_object(
        'group_labels', g.group_labels, 'labels', g.group_labels,
        'status', CASE WHEN v.firing > 0 THEN 'firing' ELSE 'resolved' END,
        'firing', v.firing, 'resolved', v.total - v.firing,
        'alerts', v.alerts, 'level', NULL,
        'message', format('%s firing, %s resolved: %s%s', v.firing, v.total - v.firing, v.rules,
                          CASE WHEN g.group_labels = '{}' THEN '' ELSE ' ' || g.group_labels::text END)
                   || E'\n' || v.lines
                   || CASE WHEN v.total > 200 THEN format(E'\n(and %s more)', v.total - 200) ELSE '' END);
    RETURN res;
END
$fn$;
COMMENT ON FUNCTION @extschema@._route_group_row(bigint) IS
    'Internal: the alert_queue row (payload: status, group_labels, firing, resolved, alerts, message) of a group notification now, or NULL when the group has nothing to tell.';

-- Bring a group's queued notification up to date after a change (an
-- alert joined, fired again or resolved; p_repeat: a firing alert of the
-- group was evaluated, and repeat_interval may be due).  Returns the
-- queue rows written.
--
--   * While the latest notification has not been taken by a dispatcher, it
--     is rebuilt with the group as it is now (its due time stays).
--   * Else what it carried counts as told (resolved alerts it carried
--     leave the group); a new one is queued when the group changed: due
--     group_wait from now when the receiver knows none of its alerts (a
--     new group), else group_interval after the previous one, and never
--     before now.  An unchanged group with firing alerts is sent again
--     repeat_interval after the previous one.
--   * The storm guard counts each new notification; one beyond it goes
--     into the route's digest (its alerts count as told).
CREATE FUNCTION @extschema@._route_group_flush(p_group_id bigint, p_repeat boolean)
    RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    g         record;
    v_pending bigint;
    v_row     @extschema@.alert_queue;
    v_due     timestamptz;
    v_id      bigint;
    v_known   boolean;
    v_changed boolean;
    v_firing  boolean;
BEGIN
    SELECT rg.*, rt.destination, rt.send_resolved, rt.group_wait, rt.group_interval,
           rt.repeat_interval, rt.group_window, rt.max_notifications
      INTO g
      FROM @extschema@._route_groups rg JOIN @extschema@.routes rt ON rt.id = rg.route_id
     WHERE rg.id = p_group_id
       FOR UPDATE OF rg;
    IF NOT FOUND THEN
        RETURN 0;
    END IF;
    -- still waiting, and no dispatcher has it (one that is taking it now
    -- holds the row: we wait, and then see attempts > 0)
    SELECT q.id INTO v_pending
      FROM @extschema@.alert_queue q
     WHERE q.id = g.pending_alert_id AND q.attempts = 0 AND q.claimed_by IS NULL AND q.dead_at IS NULL
       FOR UPDATE;

    IF v_pending IS NULL THEN
        -- what earlier notifications carried has been told
        DELETE FROM @extschema@._route_group_alerts
         WHERE group_id = p_group_id AND queued_in IS NOT NULL AND queued_resolved;
        UPDATE @extschema@._route_group_alerts
           SET sent = true, queued_in = NULL, queued_resolved = NULL
         WHERE group_id = p_group_id AND queued_in IS NOT NULL;
    END IF;
    -- resolved alerts the receiver never heard of, or is not to hear of
    DELETE FROM @extschema@._route_group_alerts
     WHERE group_id = p_group_id AND resolved AND (NOT sent OR NOT g.send_resolved);

    IF NOT EXISTS (SELECT 1 FROM @extschema@._route_group_alerts WHERE group_id = p_group_id) THEN
        -- every alert of the group has resolved and been told (or never
        -- was): the group ends, and a waiting notification with it
        DELETE FROM @extschema@.alert_queue WHERE id = v_pending;
        DELETE FROM @extschema@._route_groups WHERE id = p_group_id;
        RETURN 0;
    END IF;
    UPDATE @extschema@._route_groups SET dirty = false WHERE id = p_group_id AND dirty;
    IF v_pending IS NOT NULL THEN
        v_row := @extschema@._route_group_row(p_group_id);
        UPDATE @extschema@.alert_queue q
           SET severity = v_row.severity, source = v_row.source, count = v_row.count,
               first_seen = v_row.first_seen, last_seen = v_row.last_seen, payload = v_row.payload
         WHERE q.id = v_pending;
        UPDATE @extschema@._route_group_alerts
           SET queued_in = v_pending, queued_resolved = resolved
         WHERE group_id = p_group_id;
        RETURN 1;
    END IF;
    SELECT bool_or(sent), bool_or(NOT sent OR resolved), bool_or(NOT resolved)
      INTO v_known, v_changed, v_firing
      FROM @extschema@._route_group_alerts WHERE group_id = p_group_id;
    IF v_changed THEN
        v_due := CASE WHEN v_known THEN greatest(now(), g.notified_at + g.group_interval)
                      ELSE now() + g.group_wait END;
    ELSIF p_repeat AND v_firing AND g.repeat_interval IS NOT NULL
          AND g.notified_at + g.repeat_interval <= now() THEN
        v_due := now();
    ELSE
        RETURN 0;
    END IF;
    v_row := @extschema@._route_group_row(p_group_id);

    IF @extschema@._route_admit(g.route_id, g.group_window, g.max_notifications) THEN
        INSERT INTO @extschema@.alert_queue
            (severity, route_id, destination, fingerprint, source, count,
             first_seen, last_seen, payload, next_attempt_at)
        VALUES (v_row.severity, g.route_id, g.destination, v_row.fingerprint, v_row.source, v_row.count,
                v_row.first_seen, v_row.last_seen, v_row.payload, v_due)
        RETURNING id INTO v_id;
        UPDATE @extschema@._route_groups SET notified_at = v_due, pending_alert_id = v_id
         WHERE id = p_group_id;
    ELSE
        v_id := @extschema@._add_to_digest(g.route_id, g.destination, g.group_window, v_row.severity,
                                           v_row.count, v_row.first_seen, v_row.last_seen);
        UPDATE @extschema@._route_groups SET notified_at = v_due, pending_alert_id = NULL
         WHERE id = p_group_id;
    END IF;
    UPDATE @extschema@._route_group_alerts
       SET queued_in = v_id, queued_resolved = resolved
     WHERE group_id = p_group_id;
    RETURN 1;
END
$fn$;
COMMENT ON FUNCTION @extschema@._route_group_flush(bigint, boolean) IS
    'Internal: after a change in a route group, rebuilds its waiting notification or queues the next one (group_wait for a new group, group_interval after the previous one, repeat_interval for an unchanged firing group; storm guard); returns the queue rows written.';

-- Called by _queue_rule_alert for every notification of a rule alert:
-- p_status firing (p_repeat false: it starts firing, and p_routes are the
-- routes with group_by that take it; p_repeat true: it is still firing,
-- nothing to do here) or resolved.  Only records the change: the groups
-- it touched are brought up to date once per evaluation, by
-- _route_groups_flush_due, so that a thousand alerts firing at once into
-- one group build its notification once.  Returns 0.
CREATE FUNCTION @extschema@._route_groups_take(p_alert_id bigint, p_status text, p_repeat boolean,
                                               p_routes int[])
    RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_labels jsonb;
    r        record;
BEGIN
    -- a group is marked dirty once (WHERE NOT dirty): rewriting its row
    -- for each of a thousand alerts of one evaluation would leave a
    -- thousand row versions for every later lookup to walk
    IF p_status = 'firing' AND NOT p_repeat AND p_routes IS NOT NULL THEN
        SELECT a.labels || jsonb_build_object('rule', r2.name, 'severity', r2.severity) INTO v_labels
          FROM @extschema@.alerts a JOIN @extschema@.alert_rules r2 ON r2.id = a.rule_id
         WHERE a.id = p_alert_id;
        FOR r IN
            SELECT rt.id, @extschema@._route_group_labels(rt.group_by, v_labels) AS labels
              FROM @extschema@.routes rt
             WHERE rt.id = ANY (p_routes) AND rt.group_by IS NOT NULL
        LOOP
            INSERT INTO @extschema@._route_groups AS rg (route_id, group_labels, dirty)
            VALUES (r.id, r.labels, true)
            ON CONFLICT (route_id, group_labels) DO UPDATE SET dirty = true WHERE NOT rg.dirty;
            -- firing again after it resolved: a change to tell
            INSERT INTO @extschema@._route_group_alerts AS ga (group_id, alert_id)
            SELECT rg.id, p_alert_id FROM @extschema@._route_groups rg
             WHERE rg.route_id = r.id AND rg.group_labels = r.labels
            ON CONFLICT (group_id, alert_id)
                DO UPDATE SET resolved = false, sent = false, queued_in = NULL, queued_resolved = NULL;
        END LOOP;
    ELSIF p_status = 'resolved' THEN
        WITH m AS (
            UPDATE @extschema@._route_group_alerts ga SET resolved = true
             WHERE ga.alert_id = p_alert_id AND NOT ga.resolved
            RETURNING ga.group_id
        )
        UPDATE @extschema@._route_groups rg SET dirty = true
          FROM m WHERE rg.id = m.group_id AND NOT rg.dirty;
    END IF;
    RETURN 0;
END
$fn$;
COMMENT ON FUNCTION @extschema@._route_groups_take(bigint, text, boolean, int[]) IS
    'Internal: puts a rule alert that starts firing into its groups on the routes with group_by that take it, or marks it resolved in its groups; the groups are flushed at the end of the evaluation (_route_groups_flush_due).';

-- End of every evaluation (_evaluate_alert_rules): bring each group that
-- changed up to date, and re-send unchanged firing groups whose
-- repeat_interval has passed.  Returns the queue rows written.
CREATE FUNCTION @extschema@._route_groups_flush_due() RETURNS int
    LANGUAGE sql
    SET search_path = pg_catalog, pg_temp
BEGIN ATOMIC
    SELECT coalesce(sum(@extschema@._route_group_flush(x.id, true)), 0)::int
      FROM (SELECT rg.id
              FROM @extschema@._route_groups rg
              JOIN @extschema@.routes rt ON rt.id = rg.route_id
             WHERE rg.dirty
                OR (rt.repeat_interval IS NOT NULL AND rg.notified_at + rt.repeat_interval <= now()
                    AND NOT EXISTS (SELECT 1 FROM @extschema@.alert_queue q
                                     WHERE q.id = rg.pending_alert_id AND q.attempts = 0
                                       AND q.claimed_by IS NULL AND q.dead_at IS NULL))
             ORDER BY rg.id) x;
END;
COMMENT ON FUNCTION @extschema@._route_groups_flush_due() IS
    'Internal: at the end of an evaluation, flushes the route groups that changed and those due for repeat_interval; returns the queue rows written.';

-- Groups without firing alerts, whose latest notification has left the
-- queue: what they still hold is brought up to date (told resolved
-- alerts leave; an empty group ends).  Dispatch housekeeping calls it
-- every few seconds (src/dispatcher.c): it takes only groups no one else
-- holds (SKIP LOCKED: never waiting for the evaluator, so never a
-- deadlock with it), and a group that fails is a WARNING, not an error
-- that would make the dispatcher exit.
CREATE FUNCTION @extschema@._route_groups_expire() RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    gid bigint;
    n   int := 0;
BEGIN
    FOR gid IN
        SELECT g.id
          FROM @extschema@._route_groups g
         WHERE NOT EXISTS (SELECT 1 FROM @extschema@._route_group_alerts ga
                            WHERE ga.group_id = g.id AND NOT ga.resolved)
           AND NOT EXISTS (SELECT 1 FROM @extschema@.alert_queue q
                            WHERE q.id = g.pending_alert_id AND q.attempts = 0
                              AND q.claimed_by IS NULL AND q.dead_at IS NULL)
         ORDER BY g.id
           FOR UPDATE OF g SKIP LOCKED
    LOOP
        BEGIN
            n := n + @extschema@._route_group_flush(gid, false);
        EXCEPTION WHEN OTHERS THEN
            RAISE WARNING 'logagg: could not bring route group % up to date: %', gid, SQLERRM;
        END;
    END LOOP;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION @extschema@._route_groups_expire() IS
    'Internal: brings route groups without firing alerts up to date once their latest notification has left the queue (an empty group ends); returns the queue rows written.';

CREATE FUNCTION @extschema@.set_route_grouping(id int, group_by text[],
                                               group_wait interval DEFAULT '30 s',
                                               group_interval interval DEFAULT '5 min')
    RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    v_label text;
BEGIN
    IF group_by IS NOT NULL THEN
        IF cardinality(group_by) > 16
           OR (SELECT count(DISTINCT x) FROM unnest(group_by) x) <> cardinality(group_by) THEN
            RAISE EXCEPTION 'group_by must be at most 16 distinct label names'
                USING ERRCODE = 'invalid_parameter_value',
                      HINT = 'For example ARRAY[''rule'', ''source'']; ARRAY[''...''] groups by all labels, ARRAY[]::text[] makes one group.';
        END IF;
        FOREACH v_label IN ARRAY group_by LOOP
            IF v_label IS NULL OR NOT (v_label = '...' OR v_label ~ '^[A-Za-z_][A-Za-z0-9_.]{0,127}$') THEN
                RAISE EXCEPTION 'invalid group_by label "%"', v_label
                    USING ERRCODE = 'invalid_parameter_value',
                          HINT = 'Label names such as rule, severity, source, attrs.region; ''...'' alone for all labels.';
            END IF;
        END LOOP;
        IF '...' = ANY (group_by) AND cardinality(group_by) > 1 THEN
            RAISE EXCEPTION '"..." in group_by stands for all labels and must be alone'
                USING ERRCODE = 'invalid_parameter_value', HINT = 'Use ARRAY[''...''].';
        END IF;
    END IF;
    IF group_wait IS NULL OR group_wait < '0' OR group_wait > '1 day'
       OR extract(month FROM group_wait) <> 0 OR extract(year FROM group_wait) <> 0 THEN
        RAISE EXCEPTION 'group_wait must be from 0 to 1 day'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ''30 s''.';
    END IF;
    IF group_interval IS NULL OR group_interval < '1 s' OR group_interval > '7 days'
       OR extract(month FROM group_interval) <> 0 OR extract(year FROM group_interval) <> 0 THEN
        RAISE EXCEPTION 'group_interval must be from 1 second to 7 days'
            USING ERRCODE = 'invalid_parameter_value', HINT = 'For example ''5 min''.';
    END IF;
    UPDATE @extschema@.routes r
       SET group_by = set_route_grouping.group_by,
           group_wait = set_route_grouping.group_wait,
           group_interval = set_route_grouping.group_interval
     WHERE r.id = set_route_grouping.id;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'route % does not exist', id
            USING ERRCODE = 'undefined_object', HINT = 'SELECT * FROM logagg.routes lists them.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@.set_route_grouping(int, text[], interval, interval) IS
    'Groups a route''s rule alerts like Alertmanager: one notification per group of equal group_by label values (NULL: one per alert, ''{...}'': all labels, ''{}'': one group), the first after group_wait, changes at most once per group_interval, an unchanged firing group again after repeat_interval. Applies to alerts that start firing from now on.';

REVOKE ALL ON FUNCTION @extschema@._route_group_labels(text[], jsonb),
                       @extschema@._route_group_row(bigint),
                       @extschema@._route_group_flush(bigint, boolean),
                       @extschema@._route_groups_take(bigint, text, boolean, int[]),
                       @extschema@._route_groups_flush_due(),
                       @extschema@._route_groups_expire(),
                       @extschema@.set_route_grouping(int, text[], interval, interval)
    FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON @extschema@._route_groups, @extschema@._route_group_alerts
    TO logagg_admin;
GRANT USAGE, SELECT, UPDATE ON SEQUENCE @extschema@._route_groups_id_seq TO logagg_admin;
GRANT EXECUTE ON FUNCTION @extschema@.set_route_grouping(int, text[], interval, interval) TO logagg_admin;

-- Privileges (schema/00_core.sql, schema/90_privileges.sql): a dedicated
-- non-superuser role, logagg_owner, owns every object and is the role the
-- background workers and the SECURITY DEFINER functions run as; logagg_admin
-- loses TRIGGER, TRUNCATE and REFERENCES, with which it could run code as
-- the workers.  docs/security.md describes the model.

DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'logagg_owner') THEN
        CREATE ROLE logagg_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'logagg_owner'
                  AND (r.rolsuper OR r.rolcreaterole OR r.rolbypassrls
                       OR EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = r.oid))) THEN
        RAISE EXCEPTION 'role "logagg_owner" is a superuser, can create roles, bypasses row security or is granted to other roles'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'logagg runs its workers as logagg_owner: make it NOSUPERUSER NOCREATEROLE NOBYPASSRLS and revoke it from every role.';
    END IF;
END
$roles$;

-- Members and the partitions of logs created under 1.0 go to logagg_owner
-- (identical to the block in schema/90_privileges.sql).
DO $owner$
DECLARE
    m record;
BEGIN
    FOR m IN
        SELECT d.classid, d.objid, c.relkind
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
          LEFT JOIN pg_catalog.pg_class c
                 ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = d.objid
         WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.deptype = 'e' AND e.extname = 'logagg'
        UNION ALL
        SELECT 'pg_catalog.pg_class'::pg_catalog.regclass, i.inhrelid, 'r'
          FROM pg_catalog.pg_inherits i
         WHERE i.inhparent = '@extschema@.logs'::pg_catalog.regclass
           AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_depend d
                            WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                              AND d.objid = i.inhrelid AND d.deptype = 'e')
        ORDER BY 1, 2
    LOOP
        IF m.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass THEN
            EXECUTE pg_catalog.format('ALTER ROUTINE %s OWNER TO logagg_owner',
                                      m.objid::pg_catalog.regprocedure);
        ELSIF m.classid = 'pg_catalog.pg_type'::pg_catalog.regclass THEN
            EXECUTE pg_catalog.format('ALTER TYPE %s OWNER TO logagg_owner',
                                      m.objid::pg_catalog.regtype);
        ELSIF m.relkind IN ('r', 'p') THEN
            EXECUTE pg_catalog.format('ALTER TABLE %s OWNER TO logagg_owner',
                                      m.objid::pg_catalog.regclass);
        ELSIF m.relkind = 'v' THEN
            EXECUTE pg_catalog.format('ALTER VIEW %s OWNER TO logagg_owner',
                                      m.objid::pg_catalog.regclass);
        ELSIF m.relkind = 'S' AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_depend d
                 WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                   AND d.objid = m.objid AND d.deptype IN ('a', 'i')
                   AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass) THEN
            EXECUTE pg_catalog.format('ALTER SEQUENCE %s OWNER TO logagg_owner',
                                      m.objid::pg_catalog.regclass);
        END IF;
    END LOOP;
END
$owner$;

GRANT USAGE, CREATE ON SCHEMA @extschema@ TO logagg_owner;
GRANT SET ON PARAMETER log_min_error_statement TO logagg_owner;

-- 1.0 gave logagg_admin ALL on every table.  Every member with privileges
-- is touched after the owner change (a GRANT to the owner changes nothing
-- else) so that pg_init_privs, which pg_dump compares against, records
-- the new grantor as a fresh install does.
DO $grants$
DECLARE
    m record;
BEGIN
    FOR m IN
        SELECT c.oid::pg_catalog.regclass AS rel, c.relkind
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
          JOIN pg_catalog.pg_class c ON c.oid = d.objid
         WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
           AND d.deptype = 'e' AND e.extname = 'logagg'
           AND c.relkind IN ('r', 'p', 'v', 'S') AND c.relacl IS NOT NULL
         ORDER BY c.oid
    LOOP
        IF m.relkind = 'S' THEN
            EXECUTE pg_catalog.format('GRANT ALL ON SEQUENCE %s TO logagg_owner', m.rel);
        ELSE
            EXECUTE pg_catalog.format('REVOKE TRUNCATE, REFERENCES, TRIGGER ON %s FROM logagg_admin', m.rel);
        END IF;
    END LOOP;
    FOR m IN
        SELECT p.oid::pg_catalog.regprocedure AS fn
          FROM pg_catalog.pg_depend d
          JOIN pg_catalog.pg_extension e ON e.oid = d.refobjid
          JOIN pg_catalog.pg_proc p ON p.oid = d.objid
         WHERE d.refclassid = 'pg_catalog.pg_extension'::pg_catalog.regclass
           AND d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
           AND d.deptype = 'e' AND e.extname = 'logagg' AND p.proacl IS NOT NULL
         ORDER BY p.oid
    LOOP
        EXECUTE pg_catalog.format('GRANT EXECUTE ON FUNCTION %s TO logagg_owner', m.fn);
    END LOOP;
END
$grants$;
