-- Scale-out on Citus (docs/scale-out.md): logagg.distribute() and the
-- node role the workers ask for.  Nothing here needs Citus installed:
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
    FOREACH t IN ARRAY ARRAY['logs', 'streams', '_alert_inbox', 'sources', 'source_writers', 'rules', '_alert_threshold'] LOOP
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
    'On a Citus coordinator: makes logagg.logs a distributed table (by source, shard_count shards), streams and the alert hand-over distributed, sources, source_writers, rules and the alert threshold reference tables, so that every node ingests into one table; idempotent (run again after adding a node). See docs/scale-out.md.';
