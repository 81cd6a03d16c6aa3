-- Configuration parameters: defaults, units and validation.
SELECT name, setting, unit, context
FROM pg_settings
WHERE name IN ('logagg.listen_address', 'logagg.auth', 'logagg.tls_cert_file',
               'logagg.max_connections', 'logagg.max_message_bytes', 'logagg.batch_rows',
               'logagg.batch_delay', 'logagg.dispatch_concurrency', 'logagg.alert_timeout',
               'logagg.alert_max_attempts', 'logagg.partition_interval', 'logagg.retention',
               'logagg.sync_url', 'logagg.sync_interval', 'logagg.s3_endpoint',
               'logagg.s3_region', 'logagg.s3_access_key_id',
               'logagg.max_ts_past', 'logagg.max_ts_future')
ORDER BY name;
SHOW logagg.batch_delay;
SHOW logagg.max_message_bytes;
-- postmaster parameters cannot change at run time
SET logagg.port = 9999;
-- sighup parameters cannot be SET in a session either
SET logagg.batch_rows = 10;
-- validation happens when the value is given, e.g. with ALTER SYSTEM
ALTER SYSTEM SET logagg.partition_interval = '7 hours';
ALTER SYSTEM SET logagg.partition_interval = '1 month';
ALTER SYSTEM SET logagg.sync_url = 'http://example/bucket';
ALTER SYSTEM SET logagg.retention = 'forever';
ALTER SYSTEM SET logagg.auth = 'password';
