/*-------------------------------------------------------------------------
 *
 * retention.c
 *		logagg.retention: drop partitions of logagg.logs that ended more
 *		than the retention ago, but never one holding rows that cloud sync
 *		has not uploaded yet (when a sync target is configured).
 *
 * The decision itself is SQL (logagg._drop_expired_partitions in
 * schema/30_sync.sql, or logagg._drop_expired_partitions_cluster in
 * schema/60_citus.sql when logagg.logs is distributed by Citus), where
 * the partition list and sync_log are at hand; this file passes it the
 * parsed GUCs and counts what was dropped.  The
 * maintenance worker runs it every minute; logagg.maintain() on demand.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"

#include "logagg.h"
#include "sync.h"

/*
 * Apply the retention now.  Caller: inside a transaction, SPI connected.
 * Returns the number of partitions dropped.
 */
int
logagg_run_retention(void)
{
	Oid			argtypes[3] = {INT4OID, BOOLOID, INT4OID};
	Datum		values[3];
	bool		isnull;
	int			ret;
	int			dropped;
	LogaggWorkerSlot *slot;

	if (logagg_retention_secs <= 0)
		return 0;
	values[0] = Int32GetDatum(logagg_retention_secs);
	values[1] = BoolGetDatum(logagg_sync_configured());
	values[2] = Int32GetDatum(logagg_sync_window_secs());
	/* a distributed logs: schema/60_citus.sql, docs/scale-out.md */
	ret = SPI_execute_with_args(logagg_logs_distributed()
								? "SELECT logagg._drop_expired_partitions_cluster($1, $2, $3)"
								: "SELECT logagg._drop_expired_partitions($1, $2, $3)",
								3, argtypes, values, NULL, false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "logagg: retention failed: %s", SPI_result_code_string(ret));
	dropped = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	SPI_freetuptable(SPI_tuptable);

	/* counted on the maintenance worker's row of logagg.status(), whoever ran it */
	slot = logagg_slot_of(LOGAGG_WORKER_MAINTENANCE, 0);
	if (dropped > 0 && slot != NULL)
		pg_atomic_fetch_add_u64(&slot->counters[LC_PARTITIONS_DROPPED], dropped);
	return dropped;
}

PG_FUNCTION_INFO_V1(logagg_run_retention_sql);
Datum
logagg_run_retention_sql(PG_FUNCTION_ARGS)
{
	int			dropped;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "logagg: SPI_connect failed");
	dropped = logagg_run_retention();
	SPI_finish();
	PG_RETURN_INT32(dropped);
}
