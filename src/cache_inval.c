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
 * On a Citus cluster the replicated tables (logagg.distribute() makes
 * sources and rules reference tables) are written through their shards,
 * named TABLE_SHARDID, whose copies of the trigger fire instead; the
 * caches watch TABLE, so its invalidation is queued too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/trigger.h"
#include "fmgr.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

/* The table a Citus shard (TABLE_SHARDID) belongs to, or InvalidOid. */
static Oid
shard_parent(Relation rel)
{
	const char *name = RelationGetRelationName(rel);
	const char *us = strrchr(name, '_');
	char		parent[NAMEDATALEN];

	if (us == NULL || us == name || us[1] == '\0' ||
		strspn(us + 1, "0123456789") != strlen(us + 1))
		return InvalidOid;
	strlcpy(parent, name, Min(us - name + 1, NAMEDATALEN));
	return get_relname_relid(parent, RelationGetNamespace(rel));
}

PG_FUNCTION_INFO_V1(logagg_invalidate_cache);
Datum
logagg_invalidate_cache(PG_FUNCTION_ARGS)
{
	TriggerData *trigdata = (TriggerData *) fcinfo->context;
	Oid			parent;

	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("logagg._invalidate_cache() must be called as a trigger")));
	CacheInvalidateRelcache(trigdata->tg_relation);
	parent = shard_parent(trigdata->tg_relation);
	if (OidIsValid(parent))
		CacheInvalidateRelcacheByRelid(parent);
	return PointerGetDatum(NULL);
}
