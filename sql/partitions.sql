-- Partitions: current and next interval exist; any timestamp is stored.
SELECT logagg.maintain();
SELECT count(*) >= 2 AS has_partitions
FROM logagg.partitions
WHERE NOT is_default
  AND range_start <= now() + logagg._partition_interval_secs() * interval '1 second'
  AND range_end > now();
SELECT EXISTS (SELECT 1 FROM logagg.partitions WHERE NOT is_default
               AND now() >= range_start AND now() < range_end) AS current_exists,
       EXISTS (SELECT 1 FROM logagg.partitions WHERE NOT is_default
               AND now() + logagg._partition_interval_secs() * interval '1 second' >= range_start
               AND now() + logagg._partition_interval_secs() * interval '1 second' < range_end) AS next_exists;

INSERT INTO logagg.logs (ts, source, level, severity, message) VALUES
    ('1970-01-01 00:00:01+00', 'regress', 'info', 'low', 'epoch'),
    ('2200-06-01 12:00:00+00', 'regress', 'info', 'low', 'far future'),
    (now(), 'regress', 'info', 'low', 'now');
SELECT l.message, p.is_default
FROM logagg.logs l JOIN logagg.partitions p ON p.partition = l.tableoid::regclass
WHERE l.source = 'regress' ORDER BY l.ts;

-- creating a partition for a range that already has rows in the default
-- partition moves them in
SELECT logagg._ensure_partition('2200-06-01 00:00:00+00', 86400) AS created;
SELECT l.message, p.is_default
FROM logagg.logs l JOIN logagg.partitions p ON p.partition = l.tableoid::regclass
WHERE l.source = 'regress' AND l.message = 'far future';
-- an overlapping partition is not created twice
SELECT logagg._ensure_partition('2200-06-01 00:00:00+00', 86400) AS created_again;
-- every partition, the moved-into one included, has its own BRIN (ts) and
-- btree (source, ts) index (the parent has none: docs/architecture.md)
SELECT count(*) AS partitions_without_both_indexes
FROM logagg.partitions p
WHERE (SELECT count(*) FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
       JOIN pg_am a ON a.oid = c.relam
       WHERE i.indrelid = p.partition
         AND ((a.amname = 'brin' AND pg_get_indexdef(i.indexrelid) LIKE '%(ts)')
           OR (a.amname = 'btree' AND pg_get_indexdef(i.indexrelid) LIKE '%(source, ts)'))) <> 2;
SELECT count(*) AS parent_indexes FROM pg_index WHERE indrelid = 'logagg.logs'::regclass;
DELETE FROM logagg.logs WHERE source = 'regress';
