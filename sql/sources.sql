-- Sources and tokens: returned once, stored hashed.
SELECT length(logagg.create_source('svc-regress')) AS token_length;
SELECT name, enabled, length(token_hash) AS hash_bytes FROM logagg.sources WHERE name = 'svc-regress';
-- the returned token is never stored: its hash is
DO $$
DECLARE t text := logagg.rotate_source_token('svc-regress');
BEGIN
    IF NOT EXISTS (SELECT 1 FROM logagg.sources
                   WHERE name = 'svc-regress' AND token_hash = sha256(convert_to(t, 'UTF8'))) THEN
        RAISE EXCEPTION 'stored hash is not SHA-256 of the token';
    END IF;
    IF EXISTS (SELECT 1 FROM logagg.sources WHERE encode(token_hash, 'escape') LIKE '%' || t || '%') THEN
        RAISE EXCEPTION 'token stored in clear';
    END IF;
END $$;
-- two tokens are never the same
SELECT logagg.rotate_source_token('svc-regress') <> logagg.rotate_source_token('svc-regress') AS distinct_tokens;
SELECT logagg.create_source('svc-regress');
SELECT logagg.create_source('bad name!');
SELECT logagg.revoke_source('svc-regress');
SELECT enabled, revoked_at IS NOT NULL AS revoked FROM logagg.sources WHERE name = 'svc-regress';
SELECT logagg.revoke_source('no-such-source');
DELETE FROM logagg.sources WHERE name = 'svc-regress';
-- forwarding tokens: records name their own source, within the globs
SELECT length(logagg.create_source('fwd-regress', forwarder => true, sources => 'team-a-*,billing')) AS token_length;
SELECT name, forwarder, forward_sources FROM logagg.sources WHERE name = 'fwd-regress';
SELECT logagg.create_source('fwd-bad', sources => 'team-*');
SELECT logagg.create_source('fwd-bad', forwarder => true, sources => 'team a');
SELECT count(*) FROM logagg.sources WHERE name = 'fwd-bad';
DELETE FROM logagg.sources WHERE name = 'fwd-regress';
