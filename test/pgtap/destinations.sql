-- pgTAP: every function that names a missing destination fails the same
-- way (SQLSTATE undefined_object, the message and the hint), also when
-- logagg_admin, who configures alerts, calls it.
BEGIN;
SELECT plan(6);

CREATE FUNCTION pg_temp.error_of(cmd text) RETURNS text
    LANGUAGE plpgsql AS $fn$
DECLARE
    st text;
    msg text;
    hint text;
BEGIN
    EXECUTE cmd;
    RETURN 'no error';
EXCEPTION WHEN OTHERS THEN
    GET STACKED DIAGNOSTICS st = RETURNED_SQLSTATE, msg = MESSAGE_TEXT, hint = PG_EXCEPTION_HINT;
    RETURN st || ' ' || msg || ' / ' || hint;
END
$fn$;

SET LOCAL ROLE logagg_admin;
SELECT is(pg_temp.error_of($$SELECT logagg.remove_destination('nope')$$),
          '42704 destination "nope" does not exist / SELECT name FROM logagg.destinations_public lists them.',
          'remove_destination of a missing destination');
SELECT is(pg_temp.error_of($$SELECT logagg.pause_destination('nope')$$),
          '42704 destination "nope" does not exist / SELECT name FROM logagg.destinations_public lists them.',
          'pause_destination of a missing destination');
SELECT is(pg_temp.error_of($$SELECT logagg.resume_destination('nope')$$),
          '42704 destination "nope" does not exist / SELECT name FROM logagg.destinations_public lists them.',
          'resume_destination of a missing destination');
SELECT is(pg_temp.error_of($$SELECT logagg.test_destination('nope')$$),
          '42704 destination "nope" does not exist / SELECT name FROM logagg.destinations_public lists them.',
          'test_destination of a missing destination');
SELECT is(pg_temp.error_of($$SELECT logagg.add_route('nope', 'high')$$),
          '42704 destination "nope" does not exist / Create it first with logagg.add_destination(name, kind, config).',
          'add_route to a missing destination');
RESET ROLE;
SELECT ok(NOT has_function_privilege('logagg_reader', 'logagg._raise_unknown_destination(text, text)', 'EXECUTE'),
          'the internal error helper is not granted beyond logagg_admin');

SELECT * FROM finish();
ROLLBACK;
