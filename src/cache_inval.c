/*-------------------------------------------------------------------------
 *
 * cache_inval.c
 *		logagg._invalidate_cache(): the statement trigger on tables that
 *		logagg processes cache (rules, sources).
 *
 * It queues a relcache invalidation for the changed table.  PostgreSQL
 * delivers it to every backend and background worker when the change
 * commits (and discards it on rollback), which is exactly when a cached
 * copy stops being right.  Each cache registers a relcache callback that
 * marks itself stale.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/inval.h"
#include "utils/rel.h"

PG_FUNCTION_INFO_V1(logagg_invalidate_cache);
Datum
logagg_invalidate_cache(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("logagg._invalidate_cache() must be called as a trigger")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	return PointerGetDatum(NULL);
}
