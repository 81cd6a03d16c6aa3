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
