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
