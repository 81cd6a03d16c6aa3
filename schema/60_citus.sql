-- Scale-out on Citus (docs/scale-out.md): logagg.distribute(), the
-- node role the workers ask for, and sync and retention of a distributed
-- logs (at the end).  Nothing here needs Citus installed:
-- Citus's functions and catalogs are only named inside function bodies
-- that run when it is.

-- 'standalone' (no Citus), 'coordinator' (Citus group 0) or 'worker'.
-- Worker nodes ingest; partitions, retention, sync and alert dispatch are
-- the coordinator's, so that nothing is created, dropped, uploaded or
-- sent twice.
CREATE FUNCTION @extschema@._node_role() RETURNS text
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN 'standalone';
    END IF;
    IF (SELECT groupid FROM pg_dist_local_group) = 0 THEN
        RETURN 'coordinator';
    END IF;
    RETURN 'worker';
END
$fn$;
COMMENT ON FUNCTION @extschema@._node_role() IS
    'Internal: standalone (no Citus), coordinator or worker: on a Citus worker node the logagg workers only ingest.';

-- Is this logagg table distributed (or replicated) by Citus?
CREATE FUNCTION @extschema@._is_distributed(p_table text) RETURNS boolean
    LANGUAGE plpgsql STABLE
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RETURN false;
    END IF;
    RETURN EXISTS (SELECT 1 FROM pg_dist_partition
                   WHERE logicalrelid = pg_catalog.format('%I.%I', '@extschema@', p_table)::regclass);
END
$fn$;
COMMENT ON FUNCTION @extschema@._is_distributed(text) IS
    'Internal: whether the logagg table of that name is a Citus distributed or reference table.';

-- Ids of logs rows come from each node's own logagg.logs_id_seq: a worker
-- node draws from a range of its own (group id * 2^48 on), as Citus does
-- for the sequences it creates, so that ids stay unique cluster-wide.
CREATE FUNCTION @extschema@._claim_id_range() RETURNS bigint
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    base bigint := (SELECT groupid FROM pg_dist_local_group)::bigint << 48;
    last bigint := (SELECT last_value FROM pg_sequences
                    WHERE schemaname = '@extschema@' AND sequencename = 'logs_id_seq');
BEGIN
    IF base > 0 AND coalesce(last, 0) < base THEN
        PERFORM setval('@extschema@.logs_id_seq', base, true);
    END IF;
    RETURN base;
END
$fn$;
COMMENT ON FUNCTION @extschema@._claim_id_range() IS
    'Internal: moves this Citus worker node''s logs_id_seq into its own range (group id * 2^48 on); returns the range''s start.';

-- A worker node's own partitions of logs (its maintenance worker made them
-- before the node learnt its role) stand in the way of Citus creating the
-- distributed partitions of the same names: they go, if empty.
CREATE FUNCTION @extschema@._drop_local_partitions() RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    p      record;
    nrows  bigint;
    n      int := 0;
BEGIN
    IF @extschema@._is_distributed('logs') THEN
        RETURN 0;
    END IF;
    SELECT count(*) INTO nrows FROM @extschema@.logs;
    IF nrows > 0 THEN
        RAISE EXCEPTION 'logagg.logs on this node holds % rows of its own', nrows
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Copy them to the coordinator (INSERT INTO logagg.logs there), delete them here, and run logagg.distribute() again.';
    END IF;
    FOR p IN
        SELECT i.inhrelid::regclass AS rel
          FROM pg_inherits i
         WHERE i.inhparent = '@extschema@.logs'::regclass
           AND NOT EXISTS (SELECT 1 FROM pg_depend d
                            WHERE d.classid = 'pg_class'::regclass AND d.objid = i.inhrelid
                              AND d.deptype = 'e')
    LOOP
        EXECUTE format('DROP TABLE %s', p.rel);
        n := n + 1;
    END LOOP;
    RETURN n;
END
$fn$;
COMMENT ON FUNCTION @extschema@._drop_local_partitions() IS
    'Internal: on a Citus worker node before logagg.distribute(), drops the node''s own (empty) partitions of logs; refuses if logs holds rows.';

-- Alerts from worker nodes.  Only the coordinator dispatches, and its
-- queue, routes and destinations are its own tables; a worker node's
-- ingest writes the batch's alert groups here instead, in the batch's
-- transaction (logagg.distribute() distributes this table), and the
-- coordinator's first dispatch worker moves them into its queue every
-- second (_drain_alert_inbox).  Exactly once: a hand-over commits with
-- its rows, and is taken in the transaction that queues it.
CREATE TABLE @extschema@._alert_inbox (
    id          uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    groups      jsonb NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE @extschema@._alert_inbox IS
    'Internal: alert groups a Citus worker node''s ingest hands to the coordinator, which queues them (logagg._drain_alert_inbox).';

-- The least urgent severity any route wants, for worker nodes' ingest
-- (a reference table after logagg.distribute(); kept by the coordinator).
CREATE TABLE @extschema@._alert_threshold (
    only_row      boolean PRIMARY KEY DEFAULT true CHECK (only_row),
    min_severity  @extschema@.severity
);
INSERT INTO @extschema@._alert_threshold (only_row, min_severity) VALUES (true, NULL);
COMMENT ON TABLE @extschema@._alert_threshold IS
    'Internal: the least urgent severity any enabled route of the coordinator takes (NULL: none), read by Citus worker nodes'' ingest.';

CREATE FUNCTION @extschema@._drain_alert_inbox() RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    want    @extschema@.severity;
    g       jsonb;
    queued  int := 0;
BEGIN
    -- only the coordinator's routes and queue are the cluster's: a worker
    -- node taking hand-overs would queue them nowhere
    IF @extschema@._node_role() <> 'coordinator' OR NOT @extschema@._is_distributed('_alert_inbox') THEN
        RETURN 0;
    END IF;
    SELECT max(r.min_severity) INTO want
      FROM @extschema@.routes r
      JOIN @extschema@.destinations d ON d.name = r.destination AND d.enabled
     WHERE r.enabled;
    IF (SELECT t.min_severity FROM @extschema@._alert_threshold t) IS DISTINCT FROM want THEN
        UPDATE @extschema@._alert_threshold SET min_severity = want;
    END IF;
    FOR g IN
        WITH taken AS (DELETE FROM @extschema@._alert_inbox RETURNING groups, created_at)
        SELECT groups FROM taken ORDER BY created_at
    LOOP
        queued := queued + @extschema@._enqueue_alerts(g);
    END LOOP;
    RETURN queued;
END
$fn$;
COMMENT ON FUNCTION @extschema@._drain_alert_inbox() IS
    'Internal: on a Citus coordinator, queues the alert groups worker nodes handed over and publishes the routes'' severity threshold to them; returns the alerts queued.';

CREATE FUNCTION @extschema@.distribute(shard_count int DEFAULT 32) RETURNS text
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r        record;
    changed  text[] := '{}';
    t        text;
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_extension WHERE extname = 'citus') THEN
        RAISE EXCEPTION 'Citus is not installed in this database'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Install Citus, preload it first (shared_preload_libraries = ''citus,logagg''), CREATE EXTENSION citus, add the worker nodes, then run logagg.distribute() on the coordinator.';
    END IF;
    IF @extschema@._node_role() <> 'coordinator' THEN
        RAISE EXCEPTION 'logagg.distribute() runs on the coordinator'
            USING ERRCODE = 'object_not_in_prerequisite_state',
                  HINT = 'Connect to the coordinator (Citus group 0).';
    END IF;
    IF shard_count < 1 OR shard_count > 64000 THEN
        RAISE EXCEPTION 'shard_count must be between 1 and 64000'
            USING ERRCODE = 'invalid_parameter_value';
    END IF;

    -- The workers run as logagg_owner, and Citus opens the connections to
    -- other nodes as the current user: it has to be able to log in there
    -- (pg_hba.conf and, with passwords, pg_dist_authinfo: docs/scale-out.md).
    -- Citus propagates the ALTER ROLE to every node.
    IF NOT (SELECT rolcanlogin FROM pg_roles WHERE rolname = 'logagg_owner') THEN
        ALTER ROLE logagg_owner LOGIN;
        changed := changed || 'logagg_owner LOGIN'::text;
    END IF;

    FOR r IN SELECT * FROM run_command_on_workers('SELECT @extschema@._drop_local_partitions()') LOOP
        IF NOT r.success THEN
            RAISE EXCEPTION 'worker node %:% cannot join: %', r.nodename, r.nodeport, r.result
                USING ERRCODE = 'object_not_in_prerequisite_state',
                      HINT = 'Every node needs logagg at the coordinator''s version and no rows of its own in logagg.logs.';
        END IF;
    END LOOP;

    -- The cache triggers on sources and rules only queue invalidations:
    -- safe on shards, which is what this setting asks to confirm.
    PERFORM set_config('citus.enable_unsafe_triggers', 'on', true);

    -- logs by source: one source's time range is one shard (and one node),
    -- its rows in (source, ts) order together; see docs/scale-out.md.
    IF NOT @extschema@._is_distributed('logs') THEN
        -- Citus refuses the read policy's subquery on a distributed table,
        -- and the shards' copies of a policy would not follow its roles:
        -- per-source read restrictions stay a single-server feature
        IF EXISTS (SELECT 1 FROM @extschema@.source_readers) THEN
            RAISE EXCEPTION 'logagg.logs cannot be distributed while roles have per-source read restrictions'
                USING ERRCODE = 'feature_not_supported',
                      HINT = 'Lift them with logagg.revoke_source_read(role) first; docs/scale-out.md, "Read restrictions".';
        END IF;
        -- no subquery, and no restricted role could read anything
        ALTER POLICY source_read ON @extschema@.logs USING (false);
        PERFORM create_distributed_table('@extschema@.logs', 'source', shard_count => shard_count);
        changed := changed || 'logs'::text;
    END IF;
    -- resume points, read and written by whichever node a stream is on
    IF NOT @extschema@._is_distributed('streams') THEN
        PERFORM create_distributed_table('@extschema@.streams', 'stream_id',
                                         shard_count => shard_count, colocate_with => 'none');
        changed := changed || 'streams'::text;
    END IF;
    -- cloud sync's latest part per (window, source), next to its rows
    -- (see _sync_pending_cluster)
    IF NOT @extschema@._is_distributed('_sync_seen') THEN
        PERFORM create_distributed_table('@extschema@._sync_seen', 'source',
                                         colocate_with => '@extschema@.logs');
        changed := changed || '_sync_seen'::text;
    END IF;
    -- alert groups from worker nodes' ingest, for the coordinator
    IF NOT @extschema@._is_distributed('_alert_inbox') THEN
        PERFORM create_distributed_table('@extschema@._alert_inbox', 'id',
                                         shard_count => shard_count, colocate_with => 'none');
        changed := changed || '_alert_inbox'::text;
    END IF;
    -- what every node's ingest worker reads: tokens, SQL write grants,
    -- classification rules and the alert threshold, the same everywhere
    FOREACH t IN ARRAY ARRAY['sources', 'source_writers', 'rules', '_alert_threshold'] LOOP
        IF NOT @extschema@._is_distributed(t) THEN
            -- the restore trigger of rules reads rules: not while copying
            IF t = 'rules' THEN
                ALTER TABLE @extschema@.rules DISABLE TRIGGER rules_restore_replace;
            END IF;
            PERFORM create_reference_table(format('%I.%I', '@extschema@', t));
            IF t = 'rules' THEN
                ALTER TABLE @extschema@.rules ENABLE TRIGGER rules_restore_replace;
            END IF;
            changed := changed || t;
        END IF;
    END LOOP;

    FOR r IN SELECT * FROM run_command_on_workers('SELECT @extschema@._claim_id_range()') LOOP
        IF NOT r.success THEN
            RAISE EXCEPTION 'worker node %:% could not take its range of log ids: %', r.nodename, r.nodeport, r.result
                USING ERRCODE = 'object_not_in_prerequisite_state';
        END IF;
    END LOOP;

    -- what was copied into the shards stays on disk in the local tables
    -- until truncated (Citus's own advice after distributing a table)
    FOREACH t IN ARRAY ARRAY['logs', '_sync_seen', 'streams', '_alert_inbox', 'sources', 'source_writers', 'rules', '_alert_threshold'] LOOP
        IF t = ANY (changed) THEN
            PERFORM truncate_local_data_after_distributing_table(format('%I.%I', '@extschema@', t));
        END IF;
    END LOOP;

    IF cardinality(changed) = 0 THEN
        RETURN 'logagg is already distributed';
    END IF;
    RETURN 'distributed: ' || array_to_string(changed, ', ');
END
$fn$;
COMMENT ON FUNCTION @extschema@.distribute(int) IS
    'On a Citus coordinator: makes logagg.logs a distributed table (by source, shard_count shards), streams, the alert hand-over and cloud sync''s _sync_seen distributed, sources, source_writers, rules and the alert threshold reference tables, so that every node ingests into one table; idempotent (run again after adding a node). See docs/scale-out.md.';

-- ---------------------------------------------------------------------------
-- Cloud sync and retention of a distributed logs (docs/scale-out.md,
-- "Cloud sync").  On one server a part's rows are told from later ones by
-- their xmin against the part's snapshot (schema/30_sync.sql).  On a
-- cluster a row's xmin is an xid of the node holding its shard, and only
-- that node's snapshots order it.  logs is distributed by source, so the
-- rows of one (window, source) are in one shard on one node: the export
-- reads them with one router query that also returns that node's snapshot
-- and system identifier (src/sync_export.c), and _sync_seen keeps them,
-- colocated with the rows, so the late-row test of the next cycle and of
-- retention runs on that node against that node's snapshot
-- (logagg._seen_here, src/sync_snapshot.c).
-- ---------------------------------------------------------------------------

-- The latest uploaded part of each (window, source) on a cluster, with the
-- snapshot it was read with and the node (system identifier) that snapshot
-- is of.  Distributed by source, colocated with logs, by
-- logagg.distribute(); written with the part's sync_log row, in its
-- transaction.  Unused (empty) on a single server.
CREATE TABLE @extschema@._sync_seen (
    source            text NOT NULL,
    window_start      timestamptz NOT NULL,
    part              int NOT NULL,
    export_snapshot   pg_snapshot NOT NULL,
    export_system_id  bigint NOT NULL,
    PRIMARY KEY (source, window_start)
);
COMMENT ON TABLE @extschema@._sync_seen IS
    'Internal: on a Citus cluster, the latest uploaded part of each (window, source), its snapshot and the system identifier of the node the snapshot is of, colocated with the rows of logagg.logs.';

CREATE FUNCTION @extschema@._system_id() RETURNS bigint
    LANGUAGE c STABLE PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'logagg_system_id';
COMMENT ON FUNCTION @extschema@._system_id() IS
    'Internal: this server''s system identifier (pg_control), naming whose transaction ids a snapshot orders.';

CREATE FUNCTION @extschema@._export_snapshot() RETURNS text
    LANGUAGE c STABLE
    AS 'MODULE_PATHNAME', 'logagg_export_snapshot';
COMMENT ON FUNCTION @extschema@._export_snapshot() IS
    'Internal: the snapshot the calling statement reads with, as pg_snapshot text with in-progress subtransactions listed (what cloud sync records with a part).';

CREATE FUNCTION @extschema@._seen_here(xid, pg_snapshot, bigint) RETURNS boolean
    LANGUAGE c STABLE STRICT PARALLEL SAFE
    AS 'MODULE_PATHNAME', 'logagg_seen_here';
COMMENT ON FUNCTION @extschema@._seen_here(xid, pg_snapshot, bigint) IS
    'Internal: whether a row with this xmin was seen by a snapshot taken on the server of that system identifier; false for a snapshot of another server.';

-- Record a part uploaded on a cluster (src/sync_record.c).
CREATE FUNCTION @extschema@._sync_seen_record(p_source text, p_window_start timestamptz, p_part int,
                                              p_snapshot pg_snapshot, p_system_id bigint)
    RETURNS void
    LANGUAGE plpgsql  -- Citus plans no parameters of SQL functions
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    INSERT INTO @extschema@._sync_seen AS s (source, window_start, part, export_snapshot, export_system_id)
    VALUES (p_source, p_window_start, p_part, p_snapshot, p_system_id)
    ON CONFLICT (source, window_start) DO UPDATE
       SET part = excluded.part, export_snapshot = excluded.export_snapshot,
           export_system_id = excluded.export_system_id;
    -- the coordinator's record says so too: until the row above is
    -- committed on its node, _sync_pending_cluster holds the window back
    UPDATE @extschema@.sync_log l SET export_system_id = p_system_id
     WHERE l.window_start = p_window_start AND l.source = p_source AND l.part = p_part
       AND l.status = 'uploaded';
END
$fn$;
COMMENT ON FUNCTION @extschema@._sync_seen_record(text, timestamptz, int, pg_snapshot, bigint) IS
    'Internal: on a Citus cluster, records the snapshot (and its node) of the latest uploaded part of a (window, source) in _sync_seen.';

-- _sync_pending for a distributed logs: the rows not seen by the latest
-- part's snapshot are counted on the nodes holding them (a colocated join
-- of logs and _sync_seen on source, which Citus runs on each shard); part
-- numbers and backoff come from the coordinator's sync_log.  A (window,
-- source) with uploads in sync_log but none in _sync_seen (uploaded before
-- logagg.distribute(), so with no export_system_id) has every row
-- counted, and its next part holds them all again.  One whose latest part
-- is in sync_log but not yet in _sync_seen waits for Citus to commit it.
CREATE FUNCTION @extschema@._sync_pending_cluster(p_window_secs int, p_closed_before timestamptz,
                                                  p_since timestamptz, p_force boolean)
    RETURNS TABLE (window_start timestamptz, window_end timestamptz, source text,
                   part int, prev_snapshot pg_snapshot, new_rows bigint, prev_system_id bigint)
    LANGUAGE plpgsql STABLE  -- Citus plans no parameters of SQL functions
    SET search_path = pg_catalog, pg_temp
AS $fn$
BEGIN
    RETURN QUERY
    WITH unsynced AS MATERIALIZED (
        -- pg_snapshot has no equality: grouped by its text (one per group)
        SELECT p.ws, p.source, count(*) AS n, p.snap, p.system_id, p.seen_part
        FROM (SELECT date_bin(make_interval(secs => p_window_secs), l.ts, timestamptz '1970-01-01 00:00+00') AS ws,
                     l.source, s.export_snapshot::text AS snap, s.export_system_id AS system_id,
                     s.part AS seen_part
              FROM @extschema@.logs l
              LEFT JOIN @extschema@._sync_seen s
                ON s.source = l.source
               AND s.window_start = date_bin(make_interval(secs => p_window_secs), l.ts, timestamptz '1970-01-01 00:00+00')
              WHERE l.ts < p_closed_before AND l.ts >= p_since
                AND (s.source IS NULL
                     OR NOT @extschema@._seen_here(l.xmin, s.export_snapshot, s.export_system_id))) p
        GROUP BY p.ws, p.source, p.snap, p.system_id, p.seen_part
    ), done AS (
        SELECT DISTINCT ON (d.window_start, d.source)
               d.window_start AS ws, d.source, d.part, d.export_system_id
        FROM @extschema@.sync_log d
        WHERE d.status = 'uploaded'
        ORDER BY d.window_start, d.source, d.part DESC
    ), lastfail AS (
        SELECT DISTINCT ON (f.window_start, f.source)
               f.window_start AS ws, f.source, f.next_attempt_at
        FROM @extschema@.sync_log f
        WHERE f.status = 'failed'
        ORDER BY f.window_start, f.source, f.id DESC
    )
    SELECT u.ws, u.ws + make_interval(secs => p_window_secs), u.source,
           coalesce(d.part + 1, 0), u.snap::pg_snapshot, u.n, u.system_id
    FROM unsynced u
    LEFT JOIN done d ON d.ws = u.ws AND d.source = u.source
    LEFT JOIN lastfail f ON f.ws = u.ws AND f.source = u.source
    WHERE (p_force OR f.next_attempt_at IS NULL OR f.next_attempt_at <= now())
      -- the latest part was recorded on the cluster, but its _sync_seen row
      -- is not visible yet: Citus has still to commit it on its node
      -- (two-phase commit interrupted); comparing with the part before
      -- would upload its rows again
      AND (d.export_system_id IS NULL OR u.seen_part IS NOT DISTINCT FROM d.part)
    ORDER BY u.ws, u.source;
END
$fn$;
COMMENT ON FUNCTION @extschema@._sync_pending_cluster(int, timestamptz, timestamptz, boolean) IS
    'Internal: _sync_pending for a Citus-distributed logagg.logs: rows are compared on the nodes holding them with the snapshot that node took for the latest uploaded part (_sync_seen); also returns that node''s system identifier.';

-- _drop_expired_partitions for a distributed logs.  The same rule -- a
-- partition goes only when every row in it is in an uploaded part -- with
-- what a cluster adds:
--  - LOCK TABLE on the coordinator is taken by Citus on every node, where
--    every write through Citus holds ROW EXCLUSIVE on the partitions until
--    that node commits, so no new row can come in;
--  - but Citus commits the shards of other nodes after that, with COMMIT
--    PREPARED: a write still prepared on some node holds a lock on a shard
--    of the partition there and its rows are not visible yet, so the
--    partition is kept for a later run (as it is when a node does not
--    answer);
--  - rows are compared on their node with _sync_seen (_seen_here).
CREATE FUNCTION @extschema@._drop_expired_partitions_cluster(p_retention_secs int, p_check_sync boolean,
                                                             p_window_secs int, p_now timestamptz DEFAULT now())
    RETURNS int
    LANGUAGE plpgsql
    SET search_path = pg_catalog, pg_temp
AS $fn$
DECLARE
    r         record;
    shards    text[];
    in_doubt  boolean;
    unsynced  boolean;
    name      text;
    dropped   int := 0;
    old_timeout text := current_setting('lock_timeout');
BEGIN
    IF p_retention_secs <= 0 THEN
        RETURN 0;
    END IF;
    IF p_check_sync AND current_setting('transaction_isolation') <> 'read committed' THEN
        RAISE WARNING 'logagg: retention skipped: it must run in a READ COMMITTED transaction'
            USING DETAIL = 'Whether a partition is fully synced is checked after locking it, which needs a fresh snapshot.',
                  HINT = 'Run logagg.maintain() outside a REPEATABLE READ or SERIALIZABLE transaction.';
        RETURN 0;
    END IF;
    FOR r IN SELECT p.partition, p.range_start, p.range_end
             FROM @extschema@.partitions p
             WHERE NOT p.is_default
               AND p.range_end <= p_now - make_interval(secs => p_retention_secs)
             ORDER BY p.range_start
    LOOP
        BEGIN
            -- at most 100 ms for the locks, as on one server
            -- (_drop_expired_partitions): ingest queues behind a waiting DROP
            PERFORM set_config('lock_timeout', '100ms', true);
            IF p_check_sync THEN
                EXECUTE format('LOCK TABLE %s IN SHARE MODE', r.partition);
                -- (shard_name() gives the quoted, schema-qualified name)
                SELECT array_agg(shard_name(d.logicalrelid, d.shardid)) INTO shards
                  FROM pg_dist_shard d
                 WHERE d.logicalrelid = r.partition;
                SELECT bool_or(NOT x.success OR x.result <> '0') INTO in_doubt
                  FROM run_command_on_all_nodes(format(
                       $c$SELECT count(*) FROM pg_catalog.pg_locks k
                           WHERE k.pid IS NULL AND k.locktype = 'relation'
                             AND k.relation IN (SELECT pg_catalog.to_regclass(s) FROM pg_catalog.unnest(%L::text[]) s)$c$,
                       coalesce(shards, '{}'))) x;
                IF in_doubt THEN
                    PERFORM set_config('lock_timeout', old_timeout, true);
                    RAISE LOG 'logagg: retention keeps partition % for now (a write to it is still being committed on a node, or a node did not answer)', r.partition;
                    CONTINUE;
                END IF;
                EXECUTE format($q$
                    SELECT EXISTS (
                        SELECT 1
                        FROM %s l
                        LEFT JOIN @extschema@._sync_seen s
                          ON s.source = l.source
                         AND s.window_start = date_bin(make_interval(secs => $1), l.ts, timestamptz '1970-01-01 00:00+00')
                        WHERE s.source IS NULL
                           OR NOT @extschema@._seen_here(l.xmin, s.export_snapshot, s.export_system_id))$q$,
                    r.partition)
                    INTO unsynced USING p_window_secs;
                IF unsynced THEN
                    PERFORM set_config('lock_timeout', old_timeout, true);
                    RAISE LOG 'logagg: retention keeps partition % (older than retention, but not every window in it is synced)', r.partition;
                    CONTINUE;
                END IF;
            END IF;
            name := r.partition::text;  -- a dropped regclass prints as its oid
            EXECUTE format('DROP TABLE %s', name);
            PERFORM set_config('lock_timeout', old_timeout, true);
            RAISE LOG 'logagg: retention dropped partition % (% to %)', name, r.range_start, r.range_end;
            dropped := dropped + 1;
        EXCEPTION
            WHEN lock_not_available THEN
                RAISE WARNING 'logagg: retention keeps partition % for now: transactions that read logagg.logs are still open', r.partition
                    USING DETAIL = 'Dropping a partition waits for every open transaction that read logagg.logs (a long search), and ingest would wait behind it; it waited 100 ms.',
                          HINT = 'The maintenance worker tries again within a minute; logagg.maintain() tries now.';
        END;
    END LOOP;
    RETURN dropped;
END
$fn$;
COMMENT ON FUNCTION @extschema@._drop_expired_partitions_cluster(int, boolean, int, timestamptz) IS
    'Internal: _drop_expired_partitions for a Citus-distributed logagg.logs: keeps a partition with rows not in an uploaded part, or with a write to it still being committed on some node.';
