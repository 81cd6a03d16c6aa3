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
