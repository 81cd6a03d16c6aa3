/*-------------------------------------------------------------------------
 *
 * partitions.c
 *		Partition maintenance for logagg.logs: calls
 *		logagg._create_partitions() (which lives in SQL, where DDL is
 *		easiest to read) and counts what it created, and gives SQL the
 *		parsed logagg.partition_interval (_partition_interval_secs()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"

#include "logagg.h"

/*
 * Ensure partitions for the current and next interval exist; returns how
 * many were created.  Caller has SPI connected inside a transaction.
 */
int
logagg_create_partitions(void)
{
	int			ret;
	bool		isnull;
	int			created;

	ret = SPI_execute("SELECT logagg._create_partitions(now())", false, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "logagg: partition maintenance failed: %s", SPI_result_code_string(ret));
	created = DatumGetInt32(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (created > 0)
	{
		logagg_count(LC_PARTITIONS_CREATED, created);
		ereport(LOG,
				(errmsg("logagg: created %d partition(s) of logagg.logs", created)));
	}
	return created;
}

PG_FUNCTION_INFO_V1(logagg_partition_interval_secs_sql);
Datum
logagg_partition_interval_secs_sql(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT32(logagg_partition_interval_secs);
}
