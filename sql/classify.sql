-- Classification: the seeded rules, then a rule change taking effect at once.
SELECT s AS status, l AS level, logagg.classify(s, l, NULL, NULL) AS severity
FROM (VALUES (503, NULL), (500, NULL), (404, NULL), (400, NULL), (401, NULL),
             (403, NULL), (429, NULL), (NULL, 'error'), (NULL, 'fatal'),
             (NULL, 'info'), (NULL, 'debug'), (200, 'info'), (200, 'ERROR'),
             (NULL, 'CRITICAL'), (NULL, 'warning'), (302, NULL), (599, NULL),
             (600, NULL), (NULL, NULL)) AS v(s, l);

-- level spellings are normalised before matching
SELECT l, logagg.normalize_level(l) FROM unnest(ARRAY['WARNING', 'Err', 'crit', 'information', 'custom']) AS l;

-- a new rule is used by the very next call, no restart
INSERT INTO logagg.rules (rule_order, source, message_regex, severity, comment)
VALUES (5, 'payments', 'timeout', 'critical', 'payment timeouts page someone');
SELECT logagg.classify(200, 'info', 'payments', 'gateway timeout after 30s') AS payments_timeout,
       logagg.classify(200, 'info', 'payments', 'ok') AS payments_ok,
       logagg.classify(200, 'info', 'search', 'gateway timeout') AS other_source;
UPDATE logagg.rules SET enabled = false WHERE comment = 'payment timeouts page someone';
SELECT logagg.classify(200, 'info', 'payments', 'gateway timeout after 30s') AS after_disable;
-- a change rolled back is never seen
BEGIN;
UPDATE logagg.rules SET severity = 'critical' WHERE comment = 'error log lines';
SELECT logagg.classify(NULL, 'error', NULL, NULL) AS inside_txn;
ROLLBACK;
SELECT logagg.classify(NULL, 'error', NULL, NULL) AS after_rollback;
DELETE FROM logagg.rules WHERE comment = 'payment timeouts page someone';

-- bad rules are refused when written, not at ingest
INSERT INTO logagg.rules (rule_order, message_regex, severity) VALUES (1, '(unclosed', 'high');
INSERT INTO logagg.rules (rule_order, status_min, status_max, severity) VALUES (1, 500, 400, 'high');

-- fingerprints mask ids and numbers
SELECT logagg.mask_message('GET /api/orders/12345 503 in 12ms req=9f1c2d3e-aaaa-4bbb-8ccc-123456789abc');
-- only the first 256 bytes count, cut at a character boundary: 255 x 'x'
-- then a two-byte character keeps 255 bytes, never half of the character
SELECT octet_length(logagg.mask_message(repeat('x', 255) || U&'\00e9' || 'tail')) AS masked_bytes,
       right(logagg.mask_message(repeat('x', 254) || U&'\00e9' || 'tail'), 2) AS ends_with;
SELECT logagg.fingerprint('service-a', 'critical', 503, 'GET /api/orders/1 503')
     = logagg.fingerprint('service-a', 'critical', 503, 'GET /api/orders/2 503') AS same_group,
       logagg.fingerprint('service-a', 'critical', 503, 'GET /api/orders/1 503')
     = logagg.fingerprint('service-b', 'critical', 503, 'GET /api/orders/1 503') AS other_source;
-- quoted values, ids of letters and digits, long path segments, query strings
SELECT logagg.mask_message('user "alice" not found: key=''k-77'' id u1234 at /api/users/0b1f/x?token=abc def');
SELECT logagg.mask_message('GET /assets/' || repeat('a', 40) || ' 200');
-- a client error's path is the client's choice: a scan of paths is one alert
SELECT logagg.fingerprint('web', 'critical', 404, 'GET /aaaa 404')
     = logagg.fingerprint('web', 'critical', 404, 'GET /bbbb/cc 404') AS scan_is_one_group,
       logagg.fingerprint('web', 'critical', 503, 'GET /aaaa 503')
     = logagg.fingerprint('web', 'critical', 503, 'GET /bbbb 503') AS server_errors_keep_paths;
