-- logagg search and read access: source patterns, per-source read
-- restrictions for SQL roles (row-level security), reader tokens,
-- logagg.search() and the search indexes of the partitions of logs.
-- docs/search.md describes them.

-- ---------------------------------------------------------------------------
-- source patterns
-- ---------------------------------------------------------------------------
-- A source pattern is one glob or several separated by commas: '*' stands
-- for any run of characters (none included), every other character is
-- itself; '*' alone is every source.  Globs use the characters of source
-- names, so a pattern needs no quoting anywhere.
CREATE FUNCTION @extschema@._source_globs(pattern text) RETURNS text[]
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    globs text[] := regexp_split_to_array(btrim(pattern), '\s*,\s*');
BEGIN
    IF cardinality(globs) = 0
       OR EXISTS (SELECT 1 FROM unnest(globs) g WHERE g !~ '^[A-Za-z0-9._*-]{1,128}$') THEN
        RAISE EXCEPTION 'invalid source pattern "%"', pattern
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A source pattern is one or more globs separated by commas; a glob is 1 to 128 letters, digits, ''.'', ''_'', ''-'' and ''*'' (any run of characters).',
                  HINT = 'For example ''service-a*'', ''api,web-*'' or ''*''.';
    END IF;
    RETURN ARRAY(SELECT DISTINCT g FROM unnest(globs) g ORDER BY g);
END
$fn$;
COMMENT ON FUNCTION @extschema@._source_globs(text) IS
    'Internal: the globs of a source pattern (''service-a*'', ''api,web-*''), checked, sorted and without duplicates.';

-- The LIKE pattern of one glob: '_' is a LIKE wildcard and must be
-- escaped; '%' and '\' cannot occur in a glob.
CREATE FUNCTION @extschema@._glob_like(glob text) RETURNS text
    LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE
    SET search_path = pg_catalog, pg_temp
    RETURN replace(replace(glob, '_', '\_'), '*', '%');
COMMENT ON FUNCTION @extschema@._glob_like(text) IS
    'Internal: the LIKE pattern matching the same source names as a glob.';

-- ---------------------------------------------------------------------------
-- read restrictions of SQL roles
-- ---------------------------------------------------------------------------
-- A role with rows here reads only the sources they match, in logs,
-- rejected, alert_queue and alert_log (and everything built on them with
-- the caller's rights, logagg.search() included).  A role without rows
-- reads every source its table privileges allow, as in 1.0.
CREATE TABLE @extschema@.source_readers (
    role_name    name NOT NULL,
    glob         text NOT NULL CHECK (glob ~ '^[A-Za-z0-9._*-]{1,128}$'),
    like_pattern text GENERATED ALWAYS AS (replace(replace(glob, '_', '\_'), '*', '%')) STORED,
    granted_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (role_name, glob)
);
COMMENT ON TABLE @extschema@.source_readers IS
    'Per-source read restrictions: a role listed here (and every role that has its privileges) reads only the sources its globs match; managed with logagg.grant_source_read and logagg.revoke_source_read.';
COMMENT ON COLUMN @extschema@.source_readers.glob IS
    'One glob of the granted pattern: ''*'' is any run of characters.';
COMMENT ON COLUMN @extschema@.source_readers.like_pattern IS
    'The glob as a LIKE pattern, which the row-level security policies use.';

-- The policies.  Row-level security is on for the four tables that hold
-- log text or per-source rows.  Policy "unrestricted" lets every role do
-- what its table privileges allow; it is USING (true), which the planner
-- drops, so for a role without restriction nothing changes, plans and
-- index use included.  Policy "source_read" is RESTRICTIVE and applies
-- only to the roles listed in source_readers (its TO list is kept in step
-- by the trigger below; logagg_owner, never subject to row security as the
-- owner, stands in when there are none).  Its array is an uncorrelated
-- sub-select, computed once per query, not per row.  The owner (the
-- workers, the SECURITY DEFINER functions) and superusers are not subject
-- to row security, so ingest and delivery are unaffected.
ALTER TABLE @extschema@.logs ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.rejected ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.alert_queue ENABLE ROW LEVEL SECURITY;
ALTER TABLE @extschema@.alert_log ENABLE ROW LEVEL SECURITY;
CREATE POLICY unrestricted ON @extschema@.logs FOR ALL TO PUBLIC USING (true) WITH CHECK (true);
CREATE POLICY unrestricted ON @extschema@.rejected FOR ALL TO PUBLIC USING (true) WITH CHECK (true);
CREATE POLICY unrestricted ON @extschema@.alert_queue FOR ALL TO PUBLIC USING (true) WITH CHECK (true);
CREATE POLICY unrestricted ON @extschema@.alert_log FOR ALL TO PUBLIC USING (true) WITH CHECK (true);
CREATE POLICY source_read ON @extschema@.logs AS RESTRICTIVE FOR SELECT TO logagg_owner
    USING (source LIKE ANY (ARRAY(SELECT r.like_pattern FROM @extschema@.source_readers r
                                    JOIN pg_catalog.pg_roles a ON a.rolname = r.role_name
                                   WHERE pg_catalog.pg_has_role(a.oid, 'USAGE'))));
CREATE POLICY source_read ON @extschema@.rejected AS RESTRICTIVE FOR SELECT TO logagg_owner
    USING (source LIKE ANY (ARRAY(SELECT r.like_pattern FROM @extschema@.source_readers r
                                    JOIN pg_catalog.pg_roles a ON a.rolname = r.role_name
                                   WHERE pg_catalog.pg_has_role(a.oid, 'USAGE'))));
CREATE POLICY source_read ON @extschema@.alert_queue AS RESTRICTIVE FOR SELECT TO logagg_owner
    USING (source LIKE ANY (ARRAY(SELECT r.like_pattern FROM @extschema@.source_readers r
                                    JOIN pg_catalog.pg_roles a ON a.rolname = r.role_name
                                   WHERE pg_catalog.pg_has_role(a.oid, 'USAGE'))));
CREATE POLICY source_read ON @extschema@.alert_log AS RESTRICTIVE FOR SELECT TO logagg_owner
    USING (source LIKE ANY (ARRAY(SELECT r.like_pattern FROM @extschema@.source_readers r
                                    JOIN pg_catalog.pg_roles a ON a.rolname = r.role_name
                                   WHERE pg_catalog.pg_has_role(a.oid, 'USAGE'))));
COMMENT ON POLICY unrestricted ON @extschema@.logs IS
    'Every role does what its table privileges allow; policy source_read narrows what restricted roles read.';
COMMENT ON POLICY unrestricted ON @extschema@.rejected IS
    'Every role does what its table privileges allow; policy source_read narrows what restricted roles read.';
COMMENT ON POLICY unrestricted ON @extschema@.alert_queue IS
    'Every role does what its table privileges allow; policy source_read narrows what restricted roles read.';
COMMENT ON POLICY unrestricted ON @extschema@.alert_log IS
    'Every role does what its table privileges allow; policy source_read narrows what restricted roles read.';
COMMENT ON POLICY source_read ON @extschema@.logs IS
    'Roles in logagg.source_readers read only the sources their globs match (the TO list follows that table).';
COMMENT ON POLICY source_read ON @extschema@.rejected IS
    'Roles in logagg.source_readers read only the sources their globs match (the TO list follows that table); refused records without a source are hidden from them.';
COMMENT ON POLICY source_read ON @extschema@.alert_queue IS
    'Roles in logagg.source_readers read only the sources their globs match (the TO list follows that table); test notifications are hidden from them.';
COMMENT ON POLICY source_read ON @extschema@.alert_log IS
    'Roles in logagg.source_readers read only the sources their globs match (the TO list follows that table); test notifications are hidden from them.';

-- Keeps the TO list of every source_read policy equal to the roles in
-- source_readers.  SECURITY DEFINER: only the owner may alter a policy.
-- Runs after any change, a pg_dump restore's COPY included, so restored
-- restrictions take effect (roles missing from the cluster are skipped).
CREATE FUNCTION @extschema@._apply_read_restrictions() RETURNS trigger
    LANGUAGE plpgsql
    SECURITY DEFINER
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    roles text;
    t     text;
BEGIN
    SELECT string_agg(DISTINCT quote_ident(r.role_name), ', ') INTO roles
      FROM @extschema@.source_readers r
      JOIN pg_roles a ON a.rolname = r.role_name;
    FOREACH t IN ARRAY ARRAY['logs', 'rejected', 'alert_queue', 'alert_log'] LOOP
        EXECUTE format('ALTER POLICY source_read ON @extschema@.%I TO %s', t, coalesce(roles, 'logagg_owner'));
    END LOOP;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION @extschema@._apply_read_restrictions() IS
    'Internal: statement trigger of source_readers; sets the roles the source_read policies apply to.';

CREATE TRIGGER source_readers_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.source_readers
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._apply_read_restrictions();

CREATE FUNCTION @extschema@.grant_source_read(role_name name, sources text) RETURNS void
    LANGUAGE plpgsql STRICT VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r pg_roles;
BEGIN
    -- the shards' copies of the read policy would not follow the roles
    -- (schema/60_citus.sql): refuse rather than protect nothing
    IF @extschema@._is_distributed('logs') THEN
        RAISE EXCEPTION 'per-source read restrictions are not supported on a distributed logagg.logs'
            USING ERRCODE = 'feature_not_supported',
                  HINT = 'docs/scale-out.md, "Read restrictions".';
    END IF;
    SELECT * INTO r FROM pg_roles a WHERE a.rolname = grant_source_read.role_name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'role "%" does not exist', grant_source_read.role_name
            USING ERRCODE = 'undefined_object',
                  HINT = 'Create the role first, or check the spelling.';
    END IF;
    -- Such roles are not subject to the policies, or could edit source_readers:
    -- restricting them would only look like a protection.
    IF r.rolsuper OR r.rolbypassrls OR r.rolname = 'logagg_owner'
       OR pg_has_role(r.oid, 'logagg_admin', 'USAGE') THEN
        RAISE EXCEPTION 'role "%" cannot be restricted to sources', r.rolname
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'Superusers, roles with BYPASSRLS, logagg_owner and members of logagg_admin read every source.',
                  HINT = 'Restrict a role that is a member of logagg_reader only.';
    END IF;
    INSERT INTO @extschema@.source_readers (role_name, glob)
    SELECT grant_source_read.role_name, g FROM unnest(@extschema@._source_globs(sources)) g
    ON CONFLICT DO NOTHING;
END
$fn$;
COMMENT ON FUNCTION @extschema@.grant_source_read(name, text) IS
    'Restricts a role (and every role with its privileges) to reading the sources the pattern matches (''service-a*'', ''api,web-*''); further grants add sources. Applies to logs, rejected, alert_queue, alert_log and logagg.search().';

CREATE FUNCTION @extschema@.revoke_source_read(role_name name, sources text DEFAULT NULL) RETURNS int
    LANGUAGE plpgsql CALLED ON NULL INPUT VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    n int;
BEGIN
    IF sources IS NULL THEN
        DELETE FROM @extschema@.source_readers w WHERE w.role_name = revoke_source_read.role_name;
        GET DIAGNOSTICS n = ROW_COUNT;
        RETURN n;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.source_readers w
                    WHERE w.role_name = revoke_source_read.role_name
                      AND w.glob = ANY (@extschema@._source_globs(sources))) THEN
        RETURN 0;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM @extschema@.source_readers w
                    WHERE w.role_name = revoke_source_read.role_name
                      AND w.glob <> ALL (@extschema@._source_globs(sources))) THEN
        -- Fail closed: without globs left the role would read every source.
        RAISE EXCEPTION 'revoking % would leave role "%" without any source', sources, role_name
            USING ERRCODE = 'invalid_parameter_value',
                  DETAIL = 'A role without globs in logagg.source_readers is not restricted: it reads every source.',
                  HINT = 'Grant the role its new sources first, or lift the restriction with logagg.revoke_source_read(role) (all sources) or take away logagg_reader.';
    END IF;
    DELETE FROM @extschema@.source_readers w
     WHERE w.role_name = revoke_source_read.role_name
       AND w.glob = ANY (@extschema@._source_globs(sources));
    GET DIAGNOSTICS n = ROW_COUNT;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION @extschema@.revoke_source_read(name, text) IS
    'Takes globs back from a restricted role (never its last ones: it would then read every source); without a pattern, lifts the role''s restriction altogether. Returns the number of globs removed.';

-- ---------------------------------------------------------------------------
-- reader tokens
-- ---------------------------------------------------------------------------
CREATE TABLE @extschema@.reader_tokens (
    name        text PRIMARY KEY CHECK (name ~ '^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$'),
    token_hash  bytea NOT NULL UNIQUE,
    sources     text NOT NULL CHECK (length(sources) <= 1000 AND sources ~ '^[A-Za-z0-9._*-]{1,128}(,[A-Za-z0-9._*-]{1,128})*$'),
    created_at  timestamptz NOT NULL DEFAULT now(),
    revoked_at  timestamptz
);
COMMENT ON TABLE @extschema@.reader_tokens IS
    'Tokens for reading logs over the network (live tail, console): the SHA-256 of each (the token is shown once by logagg.create_reader_token) and the source pattern it may read.';
COMMENT ON COLUMN @extschema@.reader_tokens.sources IS
    'Source pattern the token may read: globs separated by commas, ''*'' any run of characters.';
COMMENT ON COLUMN @extschema@.reader_tokens.revoked_at IS
    'When logagg.revoke_reader_token disabled it (NULL: valid).';

CREATE TRIGGER reader_tokens_changed AFTER INSERT OR UPDATE OR DELETE OR TRUNCATE ON @extschema@.reader_tokens
    FOR EACH STATEMENT EXECUTE FUNCTION @extschema@._invalidate_cache();

CREATE FUNCTION @extschema@.create_reader_token(name text, sources text DEFAULT '*') RETURNS text
    LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'logagg_create_reader_token';
COMMENT ON FUNCTION @extschema@.create_reader_token(text, text) IS
    'Creates a reader token for the sources the pattern matches (''service-a*'', ''api,web-*'', ''*'') and returns it. The token is shown only this once; only its SHA-256 is stored.';

CREATE FUNCTION @extschema@.revoke_reader_token(name text) RETURNS void
    LANGUAGE plpgsql STRICT VOLATILE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    UPDATE @extschema@.reader_tokens t SET revoked_at = coalesce(t.revoked_at, now())
     WHERE t.name = revoke_reader_token.name;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'reader token "%" does not exist', name
            USING ERRCODE = 'undefined_object',
                  HINT = 'SELECT name FROM logagg.reader_token_list lists them.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@.revoke_reader_token(text) IS
    'Disables a reader token at once; it stays listed with its revoked_at.';

CREATE VIEW @extschema@.reader_token_list AS
SELECT t.name, t.sources, t.revoked_at IS NULL AS enabled, t.created_at, t.revoked_at
  FROM @extschema@.reader_tokens t;
COMMENT ON VIEW @extschema@.reader_token_list IS
    'Reader tokens without their hashes: name, source pattern, whether enabled.';

CREATE FUNCTION @extschema@._reader_token_sources(token text) RETURNS text
    LANGUAGE c STRICT VOLATILE AS 'MODULE_PATHNAME', 'logagg_reader_token_sources_sql';
COMMENT ON FUNCTION @extschema@._reader_token_sources(text) IS
    'Internal: the source pattern of a valid reader token, NULL for an unknown or revoked one (the same cached, constant-time check the network endpoints use).';

-- ---------------------------------------------------------------------------
-- search
-- ---------------------------------------------------------------------------
-- One search statement: rows of logs with since <= ts < until (NULL: no
-- bound) that pass filters and matches, newest first, at most lim.
CREATE FUNCTION @extschema@._search_sql(since timestamptz, until timestamptz, filters text, matches text, lim bigint)
    RETURNS text
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
    RETURN format('SELECT l.* FROM @extschema@.logs l WHERE %s%s%s%s ORDER BY l.ts DESC, l.id DESC LIMIT %s',
                  filters,
                  ' AND l.ts >= ' || quote_literal(since) || '::timestamptz',
                  ' AND l.ts < ' || quote_literal(until) || '::timestamptz',
                  ' AND ' || matches, lim);
COMMENT ON FUNCTION @extschema@._search_sql(timestamptz, timestamptz, text, text, bigint) IS
    'Internal: one statement of logagg.search(): the rows of logs in [since, until) that pass the given conditions, newest first, at most lim.';

-- The words of an ASCII q with a digit (3 or more letters and digits) as
-- ILIKE conditions the trigram index serves, AND-ed; NULL when there are
-- none.  A word with fewer than 3 distinct
-- trigrams ('777777' has one) keeps the characters around it in q, so
-- that the trigrams padded at its ends (' 77', '77 ') narrow it down.
CREATE FUNCTION @extschema@._search_probe(q text)
    RETURNS text
    LANGUAGE sql IMMUTABLE STRICT
    SET search_path = pg_catalog, pg_temp
    RETURN (SELECT string_agg(format('l.message ILIKE %L',
                                     '%' || replace(replace(replace(CASE WHEN w.trigrams >= 3 THEN w.word ELSE w.around END,
                                                                    '\', '\\'), '%', '\%'), '_', '\_') || '%'),
                              ' AND ')
              FROM (SELECT m.around, m.word,
                           (SELECT count(DISTINCT substr(lower(m.word), i, 3))
                              FROM generate_series(1, length(m.word) - 2) i) AS trigrams
                      FROM (SELECT r[1] AS around, substring(r[1] FROM '[A-Za-z0-9]+') AS word
                              FROM regexp_matches(q, '[^A-Za-z0-9]?[A-Za-z0-9]{3,}[^A-Za-z0-9]?', 'g') r) m) w
             WHERE w.word ~ '[0-9]');
COMMENT ON FUNCTION @extschema@._search_probe(text) IS
    'Internal: the words with a digit of an ASCII search text as ILIKE conditions for the trigram index; logagg.search() checks the whole text on the rows they find.';

-- SECURITY INVOKER (the default): the caller's privileges and row-level
-- security apply, so a restricted role finds only its sources.  Values go
-- into the statements as literals, so that each is planned for them (the
-- trigram index needs the pattern to choose its trigrams).
--
-- How a search with q runs (docs/search.md, "How a search runs"):
--  * q names something rare (a word with a digit: an id, a number, a
--    hash): one statement over [since, until), through the trigram index
--    asked for those words only (_search_probe), q checked on its rows;
--  * otherwise newest first, reading and filtering rows (BRIN on ts), in
--    windows back from until: the last minute, the 3 before; then, while
--    nothing is found, doubling windows for 10 ms and up to an hour wide; once matches
--    came, a window sized by their rate to hold what is still missing,
--    as long as that would take under 100 ms at the rate so far; finally
--    the rest of [since, until) in one statement through the trigram
--    index.  Dense matches are found in the newest rows at
--    once; rare ones by the index after a few ms of reading.
-- The windows do not overlap and come newest first, each ordered by
-- ts DESC, id DESC: together they return exactly the rows and order of
-- one query over [since, until).
CREATE FUNCTION @extschema@.search(q text,
                                   since timestamptz DEFAULT now() - interval '1 hour',
                                   until timestamptz DEFAULT now(),
                                   source text DEFAULT NULL,
                                   min_severity @extschema@.severity DEFAULT NULL,
                                   attrs jsonb DEFAULT NULL,
                                   lim int DEFAULT 100)
    RETURNS SETOF @extschema@.logs
    LANGUAGE plpgsql STABLE CALLED ON NULL INPUT
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    filters   text := 'true';  -- source, min_severity, attrs
    matches   text;            -- q as a condition of message the trigram index serves
    scanned   text;            -- the same condition in a form no index serves
    probe     text;            -- rare words of q for the index, q checked on its rows
    selective boolean := false;
    anchor    timestamptz;     -- the windows reach back from here
    hi        timestamptz := until;  -- upper end (exclusive) of what is left; NULL: none
    lo        timestamptz;
    width     interval := interval '1 minute';
    started   timestamptz := clock_timestamp();
    spent     interval;
    found     bigint := 0;
    n         bigint;
BEGIN
    IF lim IS NULL OR lim < 0 THEN
        RAISE EXCEPTION 'lim must be 0 or more, not %', coalesce(lim::text, 'NULL')
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF source IS NOT NULL THEN
        IF source ~ '[*,]' THEN
            filters := filters || format(' AND l.source LIKE ANY (%L::text[])',
                                         ARRAY(SELECT @extschema@._glob_like(g)
                                                 FROM unnest(@extschema@._source_globs(source)) g));
        ELSE
            filters := filters || format(' AND l.source = %L', source);
        END IF;
    END IF;
    IF min_severity IS NOT NULL THEN
        filters := filters || format(' AND l.severity <= %L::@extschema@.severity', min_severity);
    END IF;
    IF attrs IS NOT NULL THEN
        filters := filters || format(' AND l.attrs @> %L::jsonb', attrs);
    END IF;

    IF q LIKE '/%/' THEN
        matches := format('l.message ~ %L', substr(q, 2, length(q) - 2));
        scanned := format('(%s) IS TRUE', matches);
        selective := EXISTS (SELECT 1 FROM regexp_matches(substr(q, 2, length(q) - 2), '[A-Za-z0-9]{3,}', 'g') w
                              WHERE w[1] ~ '[0-9]');
    ELSIF q <> '' THEN
        matches := format('l.message ILIKE %L',
                          '%' || replace(replace(replace(q, '\', '\\'), '%', '\%'), '_', '\_') || '%');
        -- Read in windows, the same test without a pattern: ILIKE in a
        -- multibyte database is lower() of both sides then LIKE, so this
        -- finds the same rows at under half the cost per row.
        scanned := format('(strpos(lower(l.message), %L) > 0) IS TRUE', lower(q));
        -- Words with a digit (ids, numbers, hashes) are rare in logs, words
        -- without one common; and the long posting lists of common
        -- trigrams (a common word's, or those padded at a word's ends:
        -- 'id ', ' us') are what costs an index scan its time.  So the
        -- index is asked for q's words with a digit only and q is checked
        -- on the rows it returns.  Only for ASCII q: lower() then maps
        -- each character on its own, so a row that matches q contains
        -- each of its words.
        IF q !~ '[^\x01-\x7f]' THEN
            probe := @extschema@._search_probe(q);
            selective := probe IS NOT NULL;
        END IF;
    ELSE
        selective := true;     -- no q: one query, as the planner sees fit
    END IF;
    IF probe IS NOT NULL THEN
        matches := probe || ' AND ' || scanned;
    END IF;

    IF selective OR lim = 0 THEN
        RETURN QUERY EXECUTE @extschema@._search_sql(since, until, filters, matches, lim);
        RETURN;
    END IF;

    -- newest first, a window at a time
    anchor := CASE WHEN isfinite(until) THEN until ELSE now() END;
    IF until < anchor THEN
        RETURN;                -- until is -infinity
    END IF;
    LOOP
        lo := anchor - width;
        IF lo <= since THEN
            lo := since;
        END IF;
        RETURN QUERY EXECUTE @extschema@._search_sql(lo, hi, filters, scanned, lim - found);
        GET DIAGNOSTICS n = ROW_COUNT;
        found := found + n;
        IF found >= lim OR lo = since THEN
            RETURN;
        END IF;
        hi := lo;
        EXIT WHEN width >= interval '30 days';
        spent := clock_timestamp() - started;
        IF width < interval '4 minutes' THEN
            width := width * 4;    -- the first 4 minutes are always read
        ELSIF found = 0 THEN
            -- Nothing yet: twice as wide (the newest rows may be minutes
            -- old; doubling, a window costs no more than all before it)
            -- for 10 ms and up to windows of an hour; after that the text
            -- is rare, and the index finds it sooner.
            EXIT WHEN spent >= interval '10 ms' OR width >= interval '1 hour';
            width := width * 2;
        ELSE
            -- Read on while the rest would take less than 100 ms at the
            -- rate so far (spent * still / found), in a window that should
            -- hold it.
            EXIT WHEN spent * (1 + (lim - found)::float8 / found) > interval '100 ms';
            width := width * (1 + 1.25 * (lim - found)::float8 / found);
        END IF;
    END LOOP;
    -- the rest, through the index
    RETURN QUERY EXECUTE @extschema@._search_sql(since, hi, filters, matches, lim - found);
END
$fn$;

COMMENT ON FUNCTION @extschema@.search(text, timestamptz, timestamptz, text, @extschema@.severity, jsonb, int) IS
    'Log records with since <= ts < until, newest first, at most lim: q is a case-insensitive substring of message, or /REGEX/ (case-sensitive; (?i) for not); source a name or pattern (''svc-*''); min_severity the least severe kept; attrs a jsonb the record''s attrs contain. NULL or '''' skips a filter. Runs with the caller''s rights: restricted roles see their sources only. Bounded by the caller''s statement_timeout.';

-- ---------------------------------------------------------------------------
-- search indexes of the partitions
-- ---------------------------------------------------------------------------
-- With logagg.index_messages = on, each partition gets a trigram GIN index
-- on message (for ILIKE and regex searches; needs pg_trgm in the
-- database); with logagg.index_attrs = on, a jsonb_path_ops GIN index on
-- attrs (for @>).  A new partition gets them when it is made (it is empty
-- then: no cost).  Existing partitions get them from the maintenance
-- worker with CREATE INDEX CONCURRENTLY, which never blocks ingest; it
-- cannot run inside a function, hence the list below, which the worker
-- works through.

-- The DDL of one search index of a partition ('message' or 'attrs'), or
-- NULL when it is not wanted (setting off, or pg_trgm missing).
CREATE FUNCTION @extschema@._search_index_ddl(p_name text, p_kind text, p_concurrently boolean)
    RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    trgm_schema name;
BEGIN
    IF p_kind = 'message' AND current_setting('logagg.index_messages', true) = 'on' THEN
        SELECT n.nspname INTO trgm_schema
          FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace
         WHERE e.extname = 'pg_trgm';
        IF trgm_schema IS NULL THEN
            RETURN NULL;
        END IF;
        RETURN format('CREATE INDEX %s %I ON @extschema@.%I USING gin (message %I.gin_trgm_ops)',
                      CASE WHEN p_concurrently THEN 'CONCURRENTLY' ELSE '' END,
                      p_name || '_message_trgm', p_name, trgm_schema);
    ELSIF p_kind = 'attrs' AND current_setting('logagg.index_attrs', true) = 'on' THEN
        RETURN format('CREATE INDEX %s %I ON @extschema@.%I USING gin (attrs jsonb_path_ops)',
                      CASE WHEN p_concurrently THEN 'CONCURRENTLY' ELSE '' END,
                      p_name || '_attrs_gin', p_name);
    END IF;
    RETURN NULL;
END
$fn$;
COMMENT ON FUNCTION @extschema@._search_index_ddl(text, text, boolean) IS
    'Internal: CREATE INDEX statement of a partition''s trigram (message) or jsonb_path_ops (attrs) index, NULL when logagg.index_messages / index_attrs is off or pg_trgm is missing.';

-- Called by _index_partition() for every new partition.
CREATE FUNCTION @extschema@._index_partition_search(p_name text) RETURNS void
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    ddl text;
BEGIN
    FOREACH ddl IN ARRAY ARRAY[@extschema@._search_index_ddl(p_name, 'message', false),
                               @extschema@._search_index_ddl(p_name, 'attrs', false)] LOOP
        IF ddl IS NOT NULL THEN
            EXECUTE ddl;
        END IF;
    END LOOP;
    IF current_setting('logagg.index_messages', true) = 'on'
       AND NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'pg_trgm') THEN
        RAISE WARNING 'logagg.index_messages is on but extension pg_trgm is not installed: partition "%" gets no message index', p_name
            USING HINT = 'Run CREATE EXTENSION pg_trgm in this database; the maintenance worker then indexes every partition.';
    END IF;
END
$fn$;
COMMENT ON FUNCTION @extschema@._index_partition_search(text) IS
    'Internal: gives a new partition the search indexes that logagg.index_messages and logagg.index_attrs ask for.';

-- Search indexes still to build: one row per missing (or invalid, left by
-- an interrupted build) index, with the statements that build it without
-- blocking writes.  Newest partitions first: they are the ones searched.
CREATE FUNCTION @extschema@._search_index_todo()
    RETURNS TABLE (index_name text, statements text[])
    LANGUAGE sql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
    SELECT i.index_name,
           CASE WHEN x.oid IS NULL THEN ARRAY[i.ddl]
                ELSE ARRAY[format('DROP INDEX CONCURRENTLY IF EXISTS @extschema@.%I', i.index_name), i.ddl] END
      FROM @extschema@.partitions p
     CROSS JOIN LATERAL (VALUES ('message', '_message_trgm'), ('attrs', '_attrs_gin')) AS k(kind, suffix)
     CROSS JOIN LATERAL (SELECT c.relname::text || k.suffix AS index_name,
                                @extschema@._search_index_ddl(c.relname, k.kind, true) AS ddl
                           FROM pg_class c WHERE c.oid = p.partition) i
      LEFT JOIN pg_class x ON x.relname = i.index_name
                          AND x.relnamespace = '@extschema@'::regnamespace
      LEFT JOIN pg_index xi ON xi.indexrelid = x.oid
     WHERE i.ddl IS NOT NULL AND (x.oid IS NULL OR NOT xi.indisvalid)
     ORDER BY p.range_start DESC NULLS LAST, i.index_name;
$fn$;
COMMENT ON FUNCTION @extschema@._search_index_todo() IS
    'Internal: search indexes the partitions lack (or have invalid), with the CONCURRENTLY statements the maintenance worker runs to build them.';

CREATE FUNCTION @extschema@._wake_maintenance() RETURNS boolean
    LANGUAGE c VOLATILE AS 'MODULE_PATHNAME', 'logagg_wake_maintenance_sql';
COMMENT ON FUNCTION @extschema@._wake_maintenance() IS
    'Internal: wakes the maintenance worker (it then builds missing search indexes); false when it is not running.';

-- pg_dump keeps the read restrictions (a restore's COPY fires
-- source_readers_changed, which sets the policies' roles) and the reader
-- token hashes, as it keeps sources (schema/85_dump.sql).
SELECT pg_catalog.pg_extension_config_dump('@extschema@.source_readers', '');
SELECT pg_catalog.pg_extension_config_dump('@extschema@.reader_tokens', '');
