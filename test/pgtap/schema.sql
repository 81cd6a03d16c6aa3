-- pgTAP: CREATE EXTENSION logagg creates every fixed object of
-- docs/design.md §3 with the documented columns and types.
BEGIN;
SELECT plan(146);

SELECT has_schema('logagg');
SELECT has_type('logagg', 'severity', 'severity type');
SELECT enum_has_labels('logagg', 'severity', ARRAY['critical', 'high', 'low'], 'severity order: critical < high < low');

-- logs
SELECT has_table('logagg', 'logs', 'logs table');
SELECT is((SELECT relkind::text FROM pg_class WHERE oid = 'logagg.logs'::regclass), 'p', 'logs is partitioned');
SELECT is((SELECT partstrat::text FROM pg_partitioned_table WHERE partrelid = 'logagg.logs'::regclass), 'r', 'logs is range-partitioned');
SELECT is((SELECT a.attname::text FROM pg_partitioned_table p JOIN pg_attribute a
           ON a.attrelid = p.partrelid AND a.attnum = p.partattrs[0]
           WHERE p.partrelid = 'logagg.logs'::regclass), 'ts', 'partition key is ts');
SELECT ok(EXISTS (SELECT 1 FROM logagg.partitions WHERE is_default), 'logs has a DEFAULT partition');
SELECT col_type_is('logagg', 'logs', 'id', 'bigint', 'logs.id');
SELECT col_type_is('logagg', 'logs', 'ts', 'timestamp with time zone', 'logs.ts');
SELECT col_type_is('logagg', 'logs', 'received_at', 'timestamp with time zone', 'logs.received_at');
SELECT col_type_is('logagg', 'logs', 'source', 'text', 'logs.source');
SELECT col_type_is('logagg', 'logs', 'level', 'text', 'logs.level');
SELECT col_type_is('logagg', 'logs', 'severity', 'logagg', 'severity', 'logs.severity');
SELECT col_type_is('logagg', 'logs', 'status', 'integer', 'logs.status');
SELECT col_type_is('logagg', 'logs', 'message', 'text', 'logs.message');
SELECT col_type_is('logagg', 'logs', 'trace_id', 'text', 'logs.trace_id');
SELECT col_type_is('logagg', 'logs', 'span_id', 'text', 'logs.span_id');
SELECT col_type_is('logagg', 'logs', 'stream', 'text', 'logs.stream');
SELECT col_type_is('logagg', 'logs', 'seq', 'bigint', 'logs.seq');
SELECT col_type_is('logagg', 'logs', 'attrs', 'jsonb', 'logs.attrs');

-- rules
SELECT has_table('logagg', 'rules', 'rules table');
SELECT col_type_is('logagg', 'rules', 'severity', 'logagg', 'severity', 'rules.severity');
SELECT is((SELECT count(*)::int FROM logagg.rules), 6, 'six seeded rules');

-- sources, streams, rejected
SELECT has_table('logagg', 'sources', 'sources table');
SELECT col_type_is('logagg', 'sources', 'name', 'text', 'sources.name');
SELECT col_type_is('logagg', 'sources', 'token_hash', 'bytea', 'sources.token_hash');
SELECT col_type_is('logagg', 'sources', 'enabled', 'boolean', 'sources.enabled');
SELECT col_type_is('logagg', 'sources', 'created_at', 'timestamp with time zone', 'sources.created_at');
SELECT col_type_is('logagg', 'sources', 'forwarder', 'boolean', 'sources.forwarder');
SELECT col_type_is('logagg', 'sources', 'forward_sources', 'text', 'sources.forward_sources');
SELECT col_type_is('logagg', 'sources', 'detect', 'boolean', 'sources.detect');
SELECT has_table('logagg', 'streams', 'streams table');
SELECT col_type_is('logagg', 'streams', 'stream_id', 'text', 'streams.stream_id');
SELECT col_type_is('logagg', 'streams', 'source', 'text', 'streams.source');
SELECT col_type_is('logagg', 'streams', 'last_seq', 'bigint', 'streams.last_seq');
SELECT col_type_is('logagg', 'streams', 'updated_at', 'timestamp with time zone', 'streams.updated_at');
SELECT has_table('logagg', 'source_writers', 'source_writers table');
SELECT col_type_is('logagg', 'source_writers', 'role_name', 'name', 'source_writers.role_name');
SELECT col_type_is('logagg', 'source_writers', 'source', 'text', 'source_writers.source');
SELECT has_table('logagg', 'rejected', 'rejected table');
SELECT col_type_is('logagg', 'rejected', 'received_at', 'timestamp with time zone', 'rejected.received_at');
SELECT col_type_is('logagg', 'rejected', 'peer', 'text', 'rejected.peer');
SELECT col_type_is('logagg', 'rejected', 'source', 'text', 'rejected.source');
SELECT col_type_is('logagg', 'rejected', 'reason', 'text', 'rejected.reason');
SELECT col_type_is('logagg', 'rejected', 'raw', 'text', 'rejected.raw');
SELECT col_type_is('logagg', 'rejected', 'raw_bytes', 'bytea', 'rejected.raw_bytes');
SELECT col_type_is('logagg', 'rejected', 'raw_length', 'bigint', 'rejected.raw_length');
SELECT col_type_is('logagg', 'rejected', 'raw_sha256', 'bytea', 'rejected.raw_sha256');
SELECT col_type_is('logagg', 'rejected', 'stream', 'text', 'rejected.stream');
SELECT col_type_is('logagg', 'rejected', 'seq', 'bigint', 'rejected.seq');

-- destinations and routes
SELECT has_table('logagg', 'destinations', 'destinations table');
SELECT col_type_is('logagg', 'destinations', 'name', 'text', 'destinations.name');
SELECT col_type_is('logagg', 'destinations', 'kind', 'text', 'destinations.kind');
SELECT col_type_is('logagg', 'destinations', 'config', 'jsonb', 'destinations.config');
SELECT col_type_is('logagg', 'destinations', 'enabled', 'boolean', 'destinations.enabled');
SELECT has_table('logagg', 'routes', 'routes table');
SELECT has_column('logagg', 'routes', 'destination', 'routes.destination');
SELECT col_type_is('logagg', 'routes', 'min_severity', 'logagg', 'severity', 'routes.min_severity');
SELECT col_type_is('logagg', 'routes', 'source', 'text', 'routes.source');
SELECT col_type_is('logagg', 'routes', 'group_window', 'interval', 'routes.group_window');

-- alert queue and history
SELECT has_table('logagg', 'alert_queue', 'alert_queue table');
SELECT col_type_is('logagg', 'alert_queue', 'id', 'bigint', 'alert_queue.id');
SELECT col_type_is('logagg', 'alert_queue', 'severity', 'logagg', 'severity', 'alert_queue.severity');
SELECT has_column('logagg', 'alert_queue', 'destination', 'alert_queue.destination');
SELECT col_type_is('logagg', 'alert_queue', 'fingerprint', 'text', 'alert_queue.fingerprint');
SELECT col_type_is('logagg', 'alert_queue', 'log_id', 'bigint', 'alert_queue.log_id');
SELECT col_type_is('logagg', 'alert_queue', 'count', 'bigint', 'alert_queue.count');
SELECT col_type_is('logagg', 'alert_queue', 'first_seen', 'timestamp with time zone', 'alert_queue.first_seen');
SELECT col_type_is('logagg', 'alert_queue', 'last_seen', 'timestamp with time zone', 'alert_queue.last_seen');
SELECT col_type_is('logagg', 'alert_queue', 'payload', 'jsonb', 'alert_queue.payload');
SELECT col_type_is('logagg', 'alert_queue', 'attempts', 'integer', 'alert_queue.attempts');
SELECT col_type_is('logagg', 'alert_queue', 'next_attempt_at', 'timestamp with time zone', 'alert_queue.next_attempt_at');
SELECT col_type_is('logagg', 'alert_queue', 'last_error', 'text', 'alert_queue.last_error');
SELECT ok(EXISTS (SELECT 1 FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                  WHERE i.indrelid = 'logagg.alert_queue'::regclass
                    AND pg_get_indexdef(i.indexrelid) LIKE '%(severity, next_attempt_at, id)%'),
          'alert_queue has an index on (severity, next_attempt_at, id)');
SELECT has_table('logagg', 'alert_log', 'alert_log table');
SELECT has_column('logagg', 'alert_log', 'outcome', 'alert_log.outcome');
SELECT has_column('logagg', 'alert_log', 'http_status', 'alert_log.http_status');
SELECT has_column('logagg', 'alert_log', 'latency_ms', 'alert_log.latency_ms');
SELECT has_column('logagg', 'alert_log', 'error', 'alert_log.error');
SELECT has_table('logagg', 'silences', 'silences table');
SELECT has_column('logagg', 'silences', 'source', 'silences.source');
SELECT has_column('logagg', 'silences', 'fingerprint', 'silences.fingerprint');
SELECT has_column('logagg', 'silences', 'comment', 'silences.comment');

-- alert rules
SELECT has_table('logagg', 'alert_rules', 'alert_rules table');
SELECT has_table('logagg', 'alerts', 'alerts table');
SELECT has_table('logagg', 'alert_history', 'alert_history table');
SELECT has_view('logagg', 'firing_alerts', 'firing_alerts view');
SELECT col_type_is('logagg', 'routes', 'send_resolved', 'boolean', 'routes.send_resolved');
SELECT col_type_is('logagg', 'routes', 'repeat_interval', 'interval', 'routes.repeat_interval');
SELECT function_returns('logagg', 'add_alert_rule',
                        ARRAY['text', 'jsonb', 'interval', 'double precision', 'text', 'text[]', 'interval', 'logagg.severity', 'boolean'],
                        'integer', 'add_alert_rule(...) -> int');
SELECT has_function('logagg', 'rule_preview', ARRAY['text'], 'rule_preview(text)');
SELECT ok(has_table_privilege('logagg_reader', 'logagg.alert_history', 'SELECT')
          AND NOT has_table_privilege('logagg_reader', 'logagg.alert_rules', 'INSERT'),
          'logagg_reader reads alert history, cannot write rules');
SELECT ok(NOT has_function_privilege('logagg_reader', 'logagg.remove_alert_rule(text)', 'EXECUTE')
          AND has_function_privilege('logagg_admin', 'logagg.remove_alert_rule(text)', 'EXECUTE'),
          'only logagg_admin manages alert rules');

-- route grouping
SELECT col_type_is('logagg', 'routes', 'group_by', 'text[]', 'routes.group_by');
SELECT col_type_is('logagg', 'routes', 'group_wait', 'interval', 'routes.group_wait');
SELECT col_type_is('logagg', 'routes', 'group_interval', 'interval', 'routes.group_interval');
SELECT has_table('logagg', '_route_groups', '_route_groups table');
SELECT has_table('logagg', '_route_group_alerts', '_route_group_alerts table');
SELECT has_function('logagg', 'set_route_grouping', ARRAY['integer', 'text[]', 'interval', 'interval'],
                    'set_route_grouping(int, text[], interval, interval)');
SELECT ok(NOT has_function_privilege('logagg_reader', 'logagg.set_route_grouping(int, text[], interval, interval)', 'EXECUTE')
          AND has_function_privilege('logagg_admin', 'logagg.set_route_grouping(int, text[], interval, interval)', 'EXECUTE'),
          'only logagg_admin sets route grouping');

-- sync bookkeeping
SELECT has_table('logagg', 'sync_log', 'sync_log table');
SELECT has_column('logagg', 'sync_log', 'source', 'sync_log.source');
SELECT has_column('logagg', 'sync_log', 'object_key', 'sync_log.object_key');
SELECT has_column('logagg', 'sync_log', 'rows', 'sync_log.rows');
SELECT has_column('logagg', 'sync_log', 'bytes', 'sync_log.bytes');
SELECT has_column('logagg', 'sync_log', 'checksum', 'sync_log.checksum');
SELECT has_column('logagg', 'sync_log', 'status', 'sync_log.status');

-- roles
SELECT has_role('logagg_admin');
SELECT has_role('logagg_reader');
SELECT has_role('logagg_writer');
SELECT has_role('logagg_owner');
SELECT is((SELECT rolsuper OR rolcanlogin FROM pg_roles WHERE rolname = 'logagg_owner'), false,
          'logagg_owner is neither a superuser nor able to log in');
SELECT table_owner_is('logagg', 'logs', 'logagg_owner', 'logagg_owner owns logs');
SELECT function_owner_is('logagg', 'add_destination', ARRAY['text', 'text', 'jsonb'], 'logagg_owner',
                         'logagg_owner owns the SECURITY DEFINER functions');
SELECT is((SELECT count(*)::int FROM pg_class c, unnest(ARRAY['TRIGGER', 'TRUNCATE', 'REFERENCES']) p
           WHERE c.relnamespace = 'logagg'::regnamespace AND c.relkind IN ('r', 'p', 'v')
             AND has_table_privilege('logagg_admin', c.oid, p)), 0,
          'logagg_admin has no TRIGGER, TRUNCATE or REFERENCES on any table');

-- fixed SQL API signatures
SELECT function_returns('logagg', 'classify', ARRAY['integer', 'text', 'text', 'text'], 'logagg.severity', 'classify(int, text, text, text) -> severity');
SELECT function_returns('logagg', 'create_source', ARRAY['text', 'boolean', 'text'], 'text', 'create_source(text, boolean, text) -> text');
SELECT has_function('logagg', 'revoke_source', ARRAY['text'], 'revoke_source(text)');
SELECT has_function('logagg', 'set_source_detection', ARRAY['text', 'boolean'], 'set_source_detection(text, boolean)');
SELECT has_function('logagg', 'status', ARRAY[]::text[], 'status()');
SELECT has_function('logagg', 'maintain', ARRAY[]::text[], 'maintain()');
SELECT function_returns('logagg', 'ingest', ARRAY['jsonb'], 'bigint', 'ingest(jsonb) -> bigint');
SELECT function_returns('logagg', 'grant_source_write', ARRAY['name', 'text'], 'void', 'grant_source_write(name, text)');
SELECT function_returns('logagg', 'revoke_source_write', ARRAY['name', 'text'], 'boolean', 'revoke_source_write(name, text) -> boolean');
SELECT ok(NOT has_function_privilege('logagg_writer', 'logagg.grant_source_write(name, text)', 'EXECUTE'),
          'logagg_writer cannot grant itself sources');
SELECT has_function('logagg', 'add_destination', ARRAY['text', 'text', 'jsonb'], 'add_destination(text, text, jsonb)');
SELECT function_returns('logagg', 'add_route', ARRAY['text', 'logagg.severity', 'text', 'interval'], 'integer', 'add_route(text, severity, text, interval) -> int');
SELECT function_returns('logagg', 'silence', ARRAY['text', 'text', 'interval', 'text'], 'integer', 'silence(text, text, interval, text) -> int');
SELECT has_function('logagg', 'test_destination', ARRAY['text'], 'test_destination(text)');
SELECT has_function('logagg', 'sync_now', ARRAY[]::text[], 'sync_now()');

-- search and read access (schema/60_search.sql)
SELECT has_table('logagg', 'source_readers', 'source_readers table');
SELECT has_table('logagg', 'reader_tokens', 'reader_tokens table');
SELECT col_type_is('logagg', 'reader_tokens', 'token_hash', 'bytea', 'reader_tokens.token_hash');
SELECT hasnt_column('logagg', 'reader_token_list', 'token_hash', 'reader_token_list has no hash');
SELECT function_returns('logagg', 'search', ARRAY['text', 'timestamp with time zone', 'timestamp with time zone', 'text', 'logagg.severity', 'jsonb', 'integer'],
                        'setof logagg.logs', 'search(...) -> setof logs');
SELECT ok(NOT (SELECT prosecdef FROM pg_proc WHERE oid = 'logagg.search(text, timestamptz, timestamptz, text, logagg.severity, jsonb, int)'::regprocedure),
          'search runs with the caller''s rights');
SELECT function_returns('logagg', 'create_reader_token', ARRAY['text', 'text'], 'text', 'create_reader_token(text, text) -> text');
SELECT has_function('logagg', 'grant_source_read', ARRAY['name', 'text'], 'grant_source_read(name, text)');
SELECT has_function('logagg', 'revoke_source_read', ARRAY['name', 'text'], 'revoke_source_read(name, text)');
SELECT is((SELECT string_agg(c.relname, ',' ORDER BY c.relname) FROM pg_class c
            WHERE c.relnamespace = 'logagg'::regnamespace AND c.relrowsecurity),
          'alert_log,alert_queue,logs,rejected', 'row-level security on the tables holding per-source rows');
SELECT is((SELECT count(*)::int FROM pg_policy WHERE polname = 'source_read' AND NOT polpermissive), 4,
          'a restrictive source_read policy on each');
SELECT ok(NOT has_table_privilege('logagg_reader', 'logagg.logs_default', 'SELECT'),
          'readers cannot read a partition directly');
SELECT ok(NOT has_function_privilege('logagg_reader', 'logagg.grant_source_read(name, text)', 'EXECUTE'),
          'logagg_reader cannot change read restrictions');

-- every public table and function is documented
SELECT is((SELECT count(*)::int FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
           WHERE n.nspname = 'logagg' AND c.relkind IN ('r', 'p', 'v') AND c.relname NOT LIKE '\_%'
             AND c.relname NOT LIKE 'logs\_2%' AND obj_description(c.oid, 'pg_class') IS NULL), 0,
          'every public table and view has a COMMENT');
SELECT is((SELECT string_agg(p.proname, ', ') FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
           WHERE n.nspname = 'logagg' AND p.proname NOT LIKE '\_%' AND obj_description(p.oid, 'pg_proc') IS NULL),
          NULL, 'every public function has a COMMENT');

SELECT * FROM finish();
ROLLBACK;
