/*-------------------------------------------------------------------------
 *
 * sync_pending.c
 *		Finding the work of a cycle: the closed windows (window end +
 *		logagg.sync_grace in the past, within logagg.sync_lookback) and
 *		sources with rows not yet in an uploaded part, as SyncItems, from
 *		logagg._sync_pending() (schema/30_sync.sql), which also applies the
 *		backoff of failed parts unless forced.
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

	if (logagg_sync_lookback_secs > 0)
		since = time_t_to_timestamptz(((closed - logagg_sync_lookback_secs) / w) * w);
	else
		TIMESTAMP_NOBEGIN(since);
	values[0] = Int32GetDatum(w);
	values[1] = TimestampTzGetDatum(closed_before);
	values[2] = TimestampTzGetDatum(since);
	values[3] = BoolGetDatum(force);
	ret = SPI_execute_with_args("SELECT * FROM logagg._sync_pending($1, $2, $3, $4)",
								4, argtypes, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: finding windows to sync failed: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		SyncItem   *it = palloc0(sizeof(SyncItem));

		it->window_start = DatumGetTimestampTz(SPI_getbinval(tup, td, 1, &isnull));
		it->window_end = DatumGetTimestampTz(SPI_getbinval(tup, td, 2, &isnull));
		it->source = SPI_getvalue(tup, td, 3);
		it->part = DatumGetInt32(SPI_getbinval(tup, td, 4, &isnull));
		/* the previous part's snapshot, as text (NULL for part 0) */
		it->prev_snapshot = SPI_getvalue(tup, td, 5);
		it->new_rows = DatumGetInt64(SPI_getbinval(tup, td, 6, &isnull));
		items = lappend(items, it);
		MemoryContextSwitchTo(old);
	}
	SPI_freetuptable(SPI_tuptable);
	return items;
}
