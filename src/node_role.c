/*-------------------------------------------------------------------------
 *
 * node_role.c
 *		Which part of the work this server does on a Citus cluster.
 *
 * Every node of a cluster ingests; partition maintenance, retention,
 * cloud sync and alert dispatch are the coordinator's alone, so that
 * nothing is created, dropped, uploaded or sent twice.  The role is
 * logagg._node_role() (schema/60_citus.sql), asked once per cycle of the
 * worker concerned: adding a node to a cluster takes effect without a
 * restart.  Without Citus installed it costs one catalog lookup.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/extension.h"
#include "executor/spi.h"

#include "logagg.h"

/* Is this a Citus worker node?  Needs a transaction and SPI. */
bool
logagg_citus_worker_node(void)
{
	int			ret;
	bool		isnull;
	Datum		d;

	if (!OidIsValid(get_extension_oid("citus", true)))
		return false;
	ret = SPI_execute("SELECT " LOGAGG_SCHEMA "._node_role() = 'worker'", true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "logagg: reading the node's role failed: %s", SPI_result_code_string(ret));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return !isnull && DatumGetBool(d);
}

/*
 * Is logagg.logs distributed by Citus?  Asked once per batch: a catalog
 * lookup when Citus is not installed, one indexed query when it is, so
 * that logagg.distribute() takes effect at the next batch without a
 * restart.
 */
bool
logagg_logs_distributed(void)
{
	int			ret;

	if (!OidIsValid(get_extension_oid("citus", true)))
		return false;
	ret = SPI_execute("SELECT 1 FROM pg_catalog.pg_dist_partition "
					  "WHERE logicalrelid = '" LOGAGG_SCHEMA ".logs'::pg_catalog.regclass",
					  true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: reading pg_dist_partition failed: %s",
			 SPI_result_code_string(ret));
	return SPI_processed == 1;
}

/*
 * On a Citus worker node: the least urgent severity any route of the
 * coordinator wants (as alert_threshold() in ingest_batch.c reads it
 * from logagg.routes there), or -1 for none.  The coordinator keeps it
 * in the reference table logagg._alert_threshold
 * (logagg._drain_alert_inbox), so a change of routes reaches the worker
 * nodes within a drain interval.
 */
int
logagg_cluster_alert_threshold(void)
{
	int			ret;
	char	   *name;

	ret = SPI_execute("SELECT min_severity::text FROM " LOGAGG_SCHEMA "._alert_threshold", true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: reading logagg._alert_threshold failed: %s", SPI_result_code_string(ret));
	if (SPI_processed != 1)
		return -1;
	name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	return logagg_severity_index(name);
}
