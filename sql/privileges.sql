-- Roles: readers see logs and history but never secrets.
CREATE ROLE regress_logagg_reader LOGIN IN ROLE logagg_reader;
CREATE ROLE regress_logagg_nobody LOGIN;
CREATE ROLE regress_logagg_admin LOGIN IN ROLE logagg_admin;
INSERT INTO logagg.destinations (name, kind, config)
VALUES ('regress-hook', 'webhook', '{"url": "http://127.0.0.1:9/hook", "secret": "s3cr3t"}');
SELECT logagg.create_source('regress-src') IS NOT NULL AS created;

SET ROLE regress_logagg_reader;
SELECT count(*) >= 0 AS can_read_logs FROM logagg.logs;
SELECT name, kind, enabled FROM logagg.destinations;
SELECT config FROM logagg.destinations;
SELECT token_hash FROM logagg.sources;
SELECT name, enabled FROM logagg.sources WHERE name = 'regress-src';
SELECT * FROM logagg.destinations;
SHOW logagg.s3_secret_access_key;
SHOW logagg.s3_access_key_id;
SELECT count(*) AS visible_secret_settings FROM pg_settings
WHERE name IN ('logagg.s3_secret_access_key', 'logagg.s3_access_key_id');
SELECT logagg.create_source('sneaky');
INSERT INTO logagg.rules (rule_order, severity) VALUES (1, 'low');
RESET ROLE;

SET ROLE regress_logagg_nobody;
SELECT count(*) FROM logagg.logs;
RESET ROLE;

SET ROLE regress_logagg_admin;
SELECT config->>'secret' AS admin_sees_secret FROM logagg.destinations WHERE name = 'regress-hook';
SELECT logagg.create_source('regress-admin-src') IS NOT NULL AS admin_can_create;
SELECT logagg.maintain();
RESET ROLE;

-- logagg_owner owns everything and is no superuser; logagg_admin can
-- neither attach code to the tables nor act as the owner.
SELECT rolsuper, rolcanlogin, rolcreaterole FROM pg_roles WHERE rolname = 'logagg_owner';
SELECT count(*) AS members_of_owner FROM pg_auth_members WHERE roleid = 'logagg_owner'::regrole;
SELECT relowner::regrole AS logs_owner FROM pg_class WHERE oid = 'logagg.logs'::regclass;
SELECT proowner::regrole AS add_destination_owner, prosecdef
FROM pg_proc WHERE oid = 'logagg.add_destination(text, text, jsonb)'::regprocedure;
SET ROLE regress_logagg_admin;
CREATE FUNCTION pg_temp.t() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN RETURN NEW; END$$;
CREATE TRIGGER t BEFORE INSERT ON logagg.destinations FOR EACH ROW EXECUTE FUNCTION pg_temp.t();
CREATE TRIGGER t BEFORE INSERT ON logagg.rejected FOR EACH ROW EXECUTE FUNCTION pg_temp.t();
TRUNCATE logagg.rejected;
CREATE FUNCTION logagg.mine() RETURNS int LANGUAGE sql RETURN 1;
DROP FUNCTION pg_temp.t();
RESET ROLE;

DELETE FROM logagg.destinations WHERE name = 'regress-hook';
DELETE FROM logagg.sources WHERE name IN ('regress-src', 'regress-admin-src');
DROP ROLE regress_logagg_reader, regress_logagg_nobody, regress_logagg_admin;
