-- logagg privileges.  Kept last so that it sees every object.
--
-- logagg_reader: read logs, queues and history, never secrets.
-- logagg_writer: ingest through SQL.
-- logagg_admin:  configure everything (and read secrets).

REVOKE ALL ON ALL FUNCTIONS IN SCHEMA @extschema@ FROM PUBLIC;

GRANT SELECT ON @extschema@.logs, @extschema@.logs_default, @extschema@.rules,
      @extschema@.streams, @extschema@.rejected, @extschema@.routes,
      @extschema@.alert_queue, @extschema@.alert_log, @extschema@.silences,
      @extschema@.sync_log, @extschema@.partitions
    TO logagg_reader;
-- column grants: token hashes and destination configs stay hidden
GRANT SELECT (name, enabled, created_at, revoked_at) ON @extschema@.sources TO logagg_reader;
GRANT SELECT (name, kind, enabled, created_at, updated_at) ON @extschema@.destinations TO logagg_reader;

GRANT logagg_reader, logagg_writer TO logagg_admin;
GRANT ALL ON ALL TABLES IN SCHEMA @extschema@ TO logagg_admin;
GRANT ALL ON ALL SEQUENCES IN SCHEMA @extschema@ TO logagg_admin;

GRANT EXECUTE ON FUNCTION @extschema@.classify(int, text, text, text),
                          @extschema@.normalize_level(text),
                          @extschema@.fingerprint(text, @extschema@.severity, int, text),
                          @extschema@.mask_message(text)
    TO PUBLIC;
GRANT EXECUTE ON FUNCTION @extschema@.status() TO logagg_reader;
GRANT EXECUTE ON FUNCTION @extschema@.create_source(text),
                          @extschema@.rotate_source_token(text),
                          @extschema@.revoke_source(text),
                          @extschema@.maintain()
    TO logagg_admin;
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
                          @extschema@._wake_dispatchers_at_commit()
    TO logagg_admin;
