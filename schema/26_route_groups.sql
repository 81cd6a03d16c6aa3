-- logagg route grouping, like Alertmanager's group_by / group_wait /
-- group_interval: a route with group_by collects the rule alerts it takes
-- (schema/25_alert_rules.sql, _queue_rule_alert) into groups of equal
-- values of those labels, and sends one notification per group that
-- carries all of the group's alerts, firing and resolved.  The group's
-- queued notification (one alert_queue row, so the queue, retries,
-- signatures and the Idempotency-Key work as for any alert) is rebuilt
-- while it waits: a new group's first notification waits group_wait to
-- collect more alerts, later changes go out at most once per
-- group_interval, and an unchanged firing group is sent again after
-- repeat_interval.  docs/alerts.md, "Grouping rule alerts by labels",
-- describes the behaviour for users; src/dispatcher.c renders the payload.

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
