-- logagg privileges.  Kept last so that it sees every object.
--
-- logagg_owner:  owns every object below; the background workers and the
--                SECURITY DEFINER functions run as it.  Not a superuser,
--                NOLOGIN, granted to nobody (schema/00_core.sql).
-- logagg_reader: read logs, queues and history, never secrets.
-- logagg_writer: ingest through SQL.
-- logagg_admin:  configure everything (and read secrets): read and write
--                the tables, never TRIGGER, TRUNCATE or REFERENCES, which
--                would let it run code as (or lock out) the workers.
-- docs/security.md describes the model.

-- Every member of the extension (and every partition of logs) goes to
-- logagg_owner before any GRANT, so that the grants are recorded with it
-- as grantor (pg_init_privs, what pg_dump compares against, included).
-- Indexes and the sequences owned by a column follow their table.
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

-- The workers create and drop partitions of logs at run time.
GRANT USAGE, CREATE ON SCHEMA @extschema@ TO logagg_owner;
-- add_destination sets log_min_error_statement (a superuser parameter)
-- for its call, as its owner.
GRANT SET ON PARAMETER log_min_error_statement TO logagg_owner;

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;
-- grant_source_read, run by logagg_admin, asks it (schema/60_citus.sql)
GRANT EXECUTE ON FUNCTION @extschema@._is_distributed(text) TO logagg_admin;

-- Not logs_default: partitions are read through logs, where the read
-- restrictions of schema/60_search.sql apply (row-level security is not
-- applied to a partition queried on its own).
GRANT SELECT ON @extschema@.logs, @extschema@.rules,
      @extschema@.streams, @extschema@.rejected, @extschema@.routes,
      @extschema@.alert_queue, @extschema@.alert_log, @extschema@.silences,
      @extschema@.sync_log, @extschema@.partitions
    TO logagg_reader;
-- column grants: token hashes and destination configs stay hidden
GRANT SELECT (name, enabled, created_at, revoked_at, forwarder, forward_sources, detect) ON @extschema@.sources TO logagg_reader;
GRANT SELECT (name, kind, enabled, created_at, updated_at) ON @extschema@.destinations TO logagg_reader;

GRANT logagg_reader, logagg_writer TO logagg_admin;
GRANT SELECT, INSERT, UPDATE, DELETE ON ALL TABLES IN SCHEMA @extschema@ TO logagg_admin;
GRANT USAGE, SELECT, UPDATE ON ALL SEQUENCES IN SCHEMA @extschema@ TO logagg_admin;

GRANT EXECUTE ON FUNCTION @extschema@.classify(int, text, text, text),
                          @extschema@.normalize_level(text),
                          @extschema@.fingerprint(text, @extschema@.severity, int, text),
                          @extschema@.mask_message(text)
    TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.status() TO logagg_reader;
GRANT EXECUTE ON FUNCTION @extschema@.create_source(text, boolean, text),
                          @extschema@.rotate_source_token(text),
                          @extschema@.revoke_source(text),
                          @extschema@.maintain()
    TO logagg_admin;
GRANT EXECUTE ON FUNCTION @extschema@.set_source_detection(text, boolean) TO logagg_admin;
GRANT EXECUTE ON FUNCTION @extschema@.ingest(jsonb) TO logagg_writer;
GRANT EXECUTE ON FUNCTION @extschema@.grant_source_write(name, text),
                          @extschema@.revoke_source_write(name, text)
    TO logagg_admin;
-- cloud sync (schema/30_sync.sql)
GRANT EXECUTE ON FUNCTION @extschema@.sync_now() TO logagg_admin;
-- alerts (schema/20_alerts.sql): admin configures; reader sees the queue,
-- history, silences and the redacted destinations, never configs.
GRANT SELECT ON @extschema@.destinations_public, @extschema@.alert_summary TO logagg_reader;
GRANT EXECUTE ON FUNCTION @extschema@._redact_config(jsonb) TO logagg_reader;
GRANT EXECUTE ON FUNCTION @extschema@.add_destination(text, text, jsonb),
                          @extschema@.remove_destination(text),
                          @extschema@.pause_destination(text),
                          @extschema@.resume_destination(text),
                          @extschema@.add_route(text, @extschema@.severity, text, interval),
                          @extschema@.remove_route(int),
                          @extschema@.silence(text, text, interval, text, text),
                          @extschema@.silence(text, text, interval, text),
                          @extschema@.unsilence(int),
                          @extschema@.test_destination(text),
                          @extschema@.retry_alert(bigint),
                          @extschema@.purge_dead(interval),
                          @extschema@._set_destination_enabled(text, boolean),
                          @extschema@._raise_unknown_destination(text, text),
                          @extschema@._wake_dispatchers_at_commit()
    TO logagg_admin;
-- search and read access (schema/60_search.sql): readers search, and read
-- the restrictions (the policies look them up as the reading role);
-- admin restricts roles and issues reader tokens.
GRANT SELECT ON @extschema@.source_readers TO logagg_reader;
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
-- alert rules (schema/25_alert_rules.sql): admin manages the rules; reader
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
-- route grouping (schema/26_route_groups.sql): admin sets it per route.
GRANT EXECUTE ON FUNCTION @extschema@.set_route_grouping(int, text[], interval, interval) TO logagg_admin;
