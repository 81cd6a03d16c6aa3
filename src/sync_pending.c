/*-------------------------------------------------------------------------
 *
 * sync_pending.c
 *		Finding the work of a cycle: the closed windows (window end +
 *		logagg.sync_grace in the past, within logagg.sync_lookback) and
 *		sources with rows not yet in an uploaded part, as SyncItems, from
 *		logagg._sync_pending() (schema/30_sync.sql), which also applies the
 *		backoff of failed parts unless forced; on a distributed logagg.logs
 *		from logagg._sync_pending_cluster() (schema/60_citus.sql).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "pgtime.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "logagg.h"
#include "sync_cycle.h"

/*
 * The columns of logagg._sync_pending() (schema/30_sync.sql), in the
 * order of its RETURNS TABLE.
 */
#define Anum_pending_window_start	1
#define Anum_pending_window_end		2
#define Anum_pending_source			3
#define Anum_pending_part			4
#define Anum_pending_prev_snapshot	5
#define Anum_pending_new_rows		6
#define Natts_pending				6
/* logagg._sync_pending_cluster() (schema/60_citus.sql) adds one */
#define Anum_pending_prev_system_id	7
#define Natts_pending_cluster		7

static const LogaggResultColumn pending_columns[Natts_pending_cluster] = {
	[Anum_pending_window_start - 1] = {"window_start", TIMESTAMPTZOID},
	[Anum_pending_window_end - 1] = {"window_end", TIMESTAMPTZOID},
	[Anum_pending_source - 1] = {"source", TEXTOID},
	[Anum_pending_part - 1] = {"part", INT4OID},
	[Anum_pending_prev_snapshot - 1] = {"prev_snapshot", PG_SNAPSHOTOID},
	[Anum_pending_new_rows - 1] = {"new_rows", INT8OID},
	[Anum_pending_prev_system_id - 1] = {"prev_system_id", INT8OID},
};

/* One row of _sync_pending as a SyncItem, allocated in the current context. */
static SyncItem *
decode_pending_row(HeapTuple tup, TupleDesc td, bool cluster)
{
	SyncItem   *it = palloc0(sizeof(SyncItem));
	bool		isnull;

	it->window_start = DatumGetTimestampTz(SPI_getbinval(tup, td, Anum_pending_window_start, &isnull));
	it->window_end = DatumGetTimestampTz(SPI_getbinval(tup, td, Anum_pending_window_end, &isnull));
	it->source = SPI_getvalue(tup, td, Anum_pending_source);
	it->part = DatumGetInt32(SPI_getbinval(tup, td, Anum_pending_part, &isnull));
	/* the previous part's snapshot, as text (NULL for part 0) */
	it->prev_snapshot = SPI_getvalue(tup, td, Anum_pending_prev_snapshot);
	it->new_rows = DatumGetInt64(SPI_getbinval(tup, td, Anum_pending_new_rows, &isnull));
	it->cluster = cluster;
	if (cluster)
	{
		Datum		d = SPI_getbinval(tup, td, Anum_pending_prev_system_id, &isnull);

		it->prev_system_id = isnull ? 0 : DatumGetInt64(d);
	}
	return it;
}

List *
sync_fetch_pending(bool force, MemoryContext cxt)
{
	int			w = logagg_sync_window_secs();
	pg_time_t	now = timestamptz_to_time_t(GetCurrentTimestamp());
	pg_time_t	closed = ((now - logagg_sync_grace_secs) / w) * w;
	TimestampTz closed_before = time_t_to_timestamptz(closed);
	TimestampTz since;
	Oid			argtypes[4] = {INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID, BOOLOID};
	Datum		values[4];
	List	   *items = NIL;
	int			ret;
	bool		cluster;

	/*
	 * On a distributed logs the rows' xmins are the xids of the nodes
	 * holding their shards: logagg._sync_pending_cluster() compares them
	 * there, with the snapshots those nodes took (schema/60_citus.sql).
	 */
	cluster = logagg_logs_distributed();
	if (logagg_sync_lookback_secs > 0)
		since = time_t_to_timestamptz(((closed - logagg_sync_lookback_secs) / w) * w);
	else
		TIMESTAMP_NOBEGIN(since);
	values[0] = Int32GetDatum(w);
	values[1] = TimestampTzGetDatum(closed_before);
	values[2] = TimestampTzGetDatum(since);
	values[3] = BoolGetDatum(force);
	ret = SPI_execute_with_args(cluster
								? "SELECT * FROM logagg._sync_pending_cluster($1, $2, $3, $4)"
								: "SELECT * FROM logagg._sync_pending($1, $2, $3, $4)",
								4, argtypes, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: finding windows to sync failed: %s", SPI_result_code_string(ret));
	/* the rows are read by position below: check the columns (once a cycle) */
	logagg_check_result_columns(SPI_tuptable->tupdesc, pending_columns,
								cluster ? Natts_pending_cluster : Natts_pending,
								cluster ? "logagg._sync_pending_cluster()" : "logagg._sync_pending()");
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		MemoryContext old = MemoryContextSwitchTo(cxt);

		items = lappend(items, decode_pending_row(SPI_tuptable->vals[i],
												  SPI_tuptable->tupdesc, cluster));
		MemoryContextSwitchTo(old);
	}
	SPI_freetuptable(SPI_tuptable);
	return items;
}
