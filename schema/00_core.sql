-- logagg core schema: roles, severity, logs, classification rules, sources,
-- streams, rejected records.  (Concatenated with the other
-- schema/*.sql files, in name order, into the newest version's install
-- script, logagg--<version>.sql, by the Makefile.)

\echo Use "CREATE EXTENSION logagg" to load this file. \quit

-- Roles are cluster-wide, so a second database's CREATE EXTENSION finds them.
-- logagg_owner owns every object of the extension; the background workers
-- and the SECURITY DEFINER functions run as it (docs/security.md).  It must
-- never be a superuser nor granted to any role: whoever could act as it
-- could run code inside the workers.
DO $roles$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'logagg_owner') THEN
        CREATE ROLE logagg_owner NOLOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS;
    END IF;
    IF EXISTS (SELECT 1 FROM pg_roles r WHERE r.rolname = 'logagg_owner'
                  AND (r.rolsuper OR r.rolcreaterole OR r.rolbypassrls
                       OR EXISTS (SELECT 1 FROM pg_auth_members m WHERE m.roleid = r.oid))) THEN
        RAISE EXCEPTION 'role "logagg_owner" is a superuser, can create roles, bypasses row security or is granted to other roles'
            USING ERRCODE = 'insufficient_privilege',
                  HINT = 'logagg runs its workers as logagg_owner: make it NOSUPERUSER NOCREATEROLE NOBYPASSRLS and revoke it from every role.';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'logagg_admin') THEN
        CREATE ROLE logagg_admin NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'logagg_reader') THEN
        CREATE ROLE logagg_reader NOLOGIN;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'logagg_writer') THEN
        CREATE ROLE logagg_writer NOLOGIN;
    END IF;
END
$roles$;

GRANT USAGE ON SCHEMA @extschema@ TO logagg_admin, logagg_reader, logagg_writer;

CREATE TYPE @extschema@.severity AS ENUM ('critical', 'high', 'low');
COMMENT ON TYPE @extschema@.severity IS
    'Alert severity; declared most urgent first so ORDER BY severity puts critical first.';

-- ---------------------------------------------------------------------------
-- logs
-- ---------------------------------------------------------------------------
CREATE SEQUENCE @extschema@.logs_id_seq AS bigint CACHE 1000;
COMMENT ON SEQUENCE @extschema@.logs_id_seq IS 'Row ids of logagg.logs (cached per session for fast ingest).';

CREATE TABLE @extschema@.logs (
    id          bigint      NOT NULL DEFAULT nextval('@extschema@.logs_id_seq'),
    ts          timestamptz NOT NULL,
    received_at timestamptz NOT NULL DEFAULT now(),
    source      text        NOT NULL,
    level       text,
    severity    @extschema@.severity NOT NULL,
    status      int,
    message     text,
    trace_id    text,
    span_id     text,
    stream      text,
    seq         bigint,
    attrs       jsonb
) PARTITION BY RANGE (ts);
ALTER SEQUENCE @extschema@.logs_id_seq OWNED BY @extschema@.logs.id;

COMMENT ON TABLE @extschema@.logs IS
    'Every accepted log record, range-partitioned on ts (logagg.partition_interval); logs_default catches timestamps outside every partition.';
COMMENT ON COLUMN @extschema@.logs.ts IS 'Event time (record ts, or receive time when absent).';
COMMENT ON COLUMN @extschema@.logs.received_at IS 'When the server received the record.';
COMMENT ON COLUMN @extschema@.logs.source IS 'Emitting service; fixed by the token when token auth is on.';
COMMENT ON COLUMN @extschema@.logs.level IS 'Normalised level: trace, debug, info, notice, warn, error, fatal.';
COMMENT ON COLUMN @extschema@.logs.severity IS 'Verdict of logagg.rules at ingest time.';
COMMENT ON COLUMN @extschema@.logs.status IS 'HTTP status of the request the record describes.';
COMMENT ON COLUMN @extschema@.logs.stream IS 'Durable stream id of the protocol (?stream=), NULL when not given.';
COMMENT ON COLUMN @extschema@.logs.seq IS 'Per-stream sequence number, NULL when not given.';
COMMENT ON COLUMN @extschema@.logs.attrs IS 'Every record field logagg does not map to a column.';

CREATE TABLE @extschema@.logs_default PARTITION OF @extschema@.logs DEFAULT;
COMMENT ON TABLE @extschema@.logs_default IS
    'Default partition: records whose ts falls outside every time partition are stored here, never refused.';

-- Indexes are made per partition (here and in _ensure_partition), not on
-- the parent: a partitioned index owned by the extension would make
-- pg_dump's output fail on restore ("relation ... already exists"), since
-- ATTACH PARTITION would create each partition's index before the dump's
-- own CREATE INDEX for it.  Queries on logagg.logs use them all the same.
CREATE INDEX logs_default_ts_brin ON @extschema@.logs_default USING brin (ts);
CREATE INDEX logs_default_source_ts ON @extschema@.logs_default (source, ts);

-- ---------------------------------------------------------------------------
-- classification rules
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.rules (
    id            serial PRIMARY KEY,
    rule_order    int  NOT NULL,
    status_min    int,
    status_max    int,
    levels        text[],
    source        text,
    message_regex text,
    severity      @extschema@.severity NOT NULL,
    enabled       boolean NOT NULL DEFAULT true,
    comment       text,
    CONSTRAINT rules_status_range CHECK (status_min IS NULL OR status_max IS NULL OR status_min <= status_max),
    -- compiling the pattern here makes a bad regex fail at INSERT, not at ingest
    CONSTRAINT rules_regex_valid CHECK (message_regex IS NULL OR ('' ~ message_regex) IS NOT NULL)
);
CREATE INDEX rules_order ON @extschema@.rules (rule_order, id);
COMMENT ON TABLE @extschema@.rules IS
    'Ordered classification rules: the enabled rule with the lowest rule_order whose non-NULL matchers all match gives the severity; no match gives low. Changes apply to ingest at once, without a restart.';
COMMENT ON COLUMN @extschema@.rules.status_min IS 'Lowest HTTP status matched (with status_max); records without status never match a status rule.';
COMMENT ON COLUMN @extschema@.rules.levels IS 'Normalised levels matched (fatal, error, warn, ...).';
COMMENT ON COLUMN @extschema@.rules.source IS 'Source matched exactly.';
COMMENT ON COLUMN @extschema@.rules.message_regex IS 'POSIX regular expression matched against the message.';

INSERT INTO @extschema@.rules (rule_order, status_min, status_max, levels, severity, comment) VALUES
    (10, 500, 599, NULL, 'critical', 'server errors'),
    (20, 404, 404, NULL, 'critical', 'not found'),
    (30, 400, 499, NULL, 'high', 'other client errors (400, 401, 403, 429, ...)'),
    (40, NULL, NULL, '{fatal,critical}', 'critical', 'fatal log lines'),
    (50, NULL, NULL, '{error}', 'high', 'error log lines'),
    (1000, NULL, NULL, NULL, 'low', 'everything else');

-- ---------------------------------------------------------------------------
-- sources, streams, rejected records
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.sources (
    name        text PRIMARY KEY
                CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    token_hash  bytea NOT NULL UNIQUE,
    enabled     boolean NOT NULL DEFAULT true,
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz,
    forwarder   boolean NOT NULL DEFAULT false,
    forward_sources text,
    CONSTRAINT sources_forward_sources_check CHECK (forward_sources IS NULL OR (forwarder AND length(forward_sources) <= 256
        AND forward_sources ~ '^[A-Za-z0-9*?][A-Za-z0-9*?._-]{0,127}(,[A-Za-z0-9*?][A-Za-z0-9*?._-]{0,127})*$')),
    detect      boolean NOT NULL DEFAULT true
);
COMMENT ON TABLE @extschema@.sources IS
    'Log sources and the SHA-256 of their ingest token (the token itself is shown once by logagg.create_source and never stored).';
COMMENT ON COLUMN @extschema@.sources.forwarder IS
    'A forwarding token (a collector''s): each record names its own source (source, service.name, Loki service_name/job/app), else the token''s name is used.';
COMMENT ON COLUMN @extschema@.sources.forward_sources IS
    'For a forwarder: the source names its records may take, as comma-separated globs (* any run, ? one character); NULL = any valid name.';
COMMENT ON COLUMN @extschema@.sources.detect IS
    'Read the level, HTTP status and time of this source''s plain-text lines from the line itself (docs/shippers.md); set with logagg.set_source_detection.';

CREATE TABLE @extschema@.streams (
    stream_id   text PRIMARY KEY CHECK (length(stream_id) BETWEEN 1 AND 128),
    source      text,
    last_seq    bigint NOT NULL DEFAULT 0,
    updated_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@.streams IS
    'Durable ingest streams: last_seq is the highest sequence number committed, updated in the same transaction as the rows.';

CREATE TABLE @extschema@.rejected (
    id          bigserial PRIMARY KEY,
    received_at timestamptz NOT NULL DEFAULT now(),
    peer        text,
    source      text,
    reason      text NOT NULL,
    raw         text,
    raw_bytes   bytea,
    raw_length  bigint,
    raw_sha256  bytea,
    stream      text,
    seq         bigint
);
CREATE INDEX rejected_received_at ON @extschema@.rejected (received_at);
COMMENT ON TABLE @extschema@.rejected IS
    'Records refused at ingest, one row per record (NDJSON line, array element or message) with the reason and its exact bytes (raw_bytes, the first 64 kB; raw_length and raw_sha256 describe the whole); nothing is dropped silently.';
COMMENT ON COLUMN @extschema@.rejected.raw IS
    'The refused record''s bytes as text (at most 64 kB, cut at a character boundary), when they are valid text in the database encoding; else NULL (see raw_bytes).';
COMMENT ON COLUMN @extschema@.rejected.raw_bytes IS
    'The refused record''s exact bytes (one NDJSON line, array element or message), the first 64 kB of it.';
COMMENT ON COLUMN @extschema@.rejected.raw_length IS
    'Length in bytes of the whole refused record.';
COMMENT ON COLUMN @extschema@.rejected.raw_sha256 IS
    'SHA-256 of the whole refused record when raw_bytes holds only its first 64 kB; else NULL.';
COMMENT ON COLUMN @extschema@.rejected.stream IS
    'The stream of the connection the record came on, if any.';
COMMENT ON COLUMN @extschema@.rejected.seq IS
    'The record''s seq, when it had a valid one.';

