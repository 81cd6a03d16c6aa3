-- What pg_dump keeps of logagg (docs/operations.md, "Backups").
--
-- pg_dump writes an extension as one CREATE EXTENSION: the objects of
-- this script are re-created, but rows in its tables are dumped only for
-- tables (and sequences) marked here.  Marked: the configuration users
-- build (sources and their token hashes, streams with their last_seq,
-- rules, destinations, routes, silences, the roles allowed to write each
-- source through SQL) and the data logagg accepted or
-- produced (the DEFAULT partition of logs, rejected records, the alert
-- queue and history), with the sequences that number them, so that a
-- restored database goes on where the dumped one stopped.  The time
-- partitions of logs are created at run time, are not members of the
-- extension, and are dumped like any table.
--
-- Not marked: sync_log (its export snapshots are transaction ids of the
-- dumped cluster and mean nothing in another; after a restore, sync
-- uploads every window again under the same object keys),
-- _alert_groups (grouping state that expires within a group window) and
-- the route groups of rule alerts (_route_groups, _route_group_alerts:
-- state of the alerts, which are not dumped either; the routes' group_by,
-- group_wait and group_interval are, with the routes).

SELECT pg_catalog.pg_extension_config_dump('@extschema@.sources', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.streams', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.rules', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.rules_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.destinations', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.routes', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.routes_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.silences', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.silences_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.logs_default', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.logs_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.rejected', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.rejected_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_queue', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_queue_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_log', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.alert_log_id_seq', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.source_writers', '');

-- CREATE EXTENSION seeds rules 1-6 before pg_dump's data for rules is
-- restored, and the dump holds those rows too (perhaps edited: a rule
-- disabled, a severity changed).  A restored row whose id is already
-- there replaces that row instead of failing the whole COPY.  Only the
-- six seeded ids are concerned; inserts take new ids from rules_id_seq.
CREATE FUNCTION @extschema@._rules_restore_replace() RETURNS trigger
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE @extschema@.rules
       SET rule_order = NEW.rule_order, status_min = NEW.status_min,
           status_max = NEW.status_max, levels = NEW.levels, source = NEW.source,
           message_regex = NEW.message_regex, severity = NEW.severity,
           enabled = NEW.enabled, comment = NEW.comment
     WHERE id = NEW.id;
    IF FOUND THEN
        RETURN NULL;
    END IF;
    RETURN NEW;
END
$fn$;
COMMENT ON FUNCTION @extschema@._rules_restore_replace() IS
    'Internal: lets a pg_dump restore replace the seeded rules (same id) instead of failing on their primary key.';
CREATE TRIGGER rules_restore_replace BEFORE INSERT ON @extschema@.rules
    FOR EACH ROW WHEN (NEW.id <= 6) EXECUTE FUNCTION @extschema@._rules_restore_replace();
