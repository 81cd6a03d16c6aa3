/*-------------------------------------------------------------------------
 *
 * sync.c
 *		The cloud-sync cycle (docs/design.md §6, docs/sync.md): find
 *		closed windows not yet synced (sync_pending.c), export each
 *		(window, source) as gzip-compressed NDJSON and hand it to the target
 *		(sync_export.c, sync_target.c; s3_client.c or sync_file.c), then
 *		record the outcome in logagg.sync_log (sync_record.c).
 *
 * Late rows: each part is exported under one MVCC snapshot, and that
 * snapshot is recorded with the part (sync_log.export_snapshot, a
 * pg_snapshot).  Part k+1 of a (window, source) holds exactly the rows that
 * part k's snapshot did not see: NOT pg_visible_in_snapshot(xmin, snapshot
 * of part k).  Visibility of a committed transaction only grows from one
 * snapshot to a later one, so the parts are disjoint and together hold every
 * row, whatever ids the rows got (ids come from a sequence cached per
 * session, so they say nothing about commit order).  The recorded snapshot
 * lists subtransaction ids too (sync_snapshot.c), because a row's xmin is
 * the id of the subtransaction that inserted it.  On a Citus-distributed
 * logagg.logs the same rule runs on the node holding each (window,
 * source), with that node's snapshots (docs/scale-out.md, "Cloud sync").
 *
 * This file also defines the logagg.sync_* parameters and implements
 * logagg.sync_now().
 *
 * Who runs it: the maintenance worker, every logagg.sync_interval, one
 * transaction per object so that a failure or crash loses at most one
 * object's work; and logagg.sync_now(), synchronously in the calling
 * session inside its transaction (so its sync_log rows commit with it).
 * A session advisory lock (worker) / transaction advisory lock (sync_now)
 * keeps the two from exporting the same part at the same time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/pmsignal.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "logagg.h"
#include "sync_cycle.h"

/* an arbitrary, fixed advisory-lock key: "logagg sync" */
#define SYNC_LOCK_KEY		INT64CONST(0x6c6f67616767)

int			logagg_sync_grace_secs = 60;
int			logagg_sync_part_size = 64 * 1024 * 1024;
int			logagg_sync_timeout_ms = 30000;
int			logagg_sync_gzip_level = 1;
int			logagg_sync_lookback_secs = 0;

/* true in the maintenance worker, false in logagg.sync_now() */
bool		sync_in_worker = false;

void
logagg_define_sync_gucs(void)
{
	DefineCustomIntVariable("logagg.sync_grace",
							"How long after its end a window is considered closed and synced.",
							"Rows arriving later for a synced window are uploaded as an additional part.",
							&logagg_sync_grace_secs, 60, 0, 7 * 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.sync_part_size",
							"Objects larger than this use S3 multipart upload, in parts of this size.",
							"S3 requires parts of at least 5MB except the last; values below 5MB are meant for test servers and are raised to 5MB when logagg.s3_endpoint is empty (AWS).",
							&logagg_sync_part_size, 64 * 1024 * 1024, 64 * 1024, 1024 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.sync_timeout",
							"Connect timeout, and longest stall, of one storage request.",
							NULL, &logagg_sync_timeout_ms, 30000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.sync_gzip_level",
							"gzip compression level of uploaded objects (1 fastest ... 9 smallest).",
							NULL, &logagg_sync_gzip_level, 1, 1, 9,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.sync_lookback",
							"Only windows that started within this time are checked for unsynced rows (0: all).",
							"Limits the cost of each cycle on very large tables; rows older than this that were never synced are then neither uploaded nor lost (retention keeps their partition).",
							&logagg_sync_lookback_secs, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
}

bool
logagg_sync_configured(void)
{
	return logagg_sync_url != NULL && logagg_sync_url[0] != '\0';
}

/* A window is the partition interval, or an hour when partitions are longer. */
int
logagg_sync_window_secs(void)
{
	return Min(logagg_partition_interval_secs, 3600);
}

/* Should a transfer or an export stop now (shutdown, cancel, postmaster gone)? */
bool
sync_interrupted(void)
{
	if (sync_in_worker && ShutdownRequestPending)
		return true;
	if (QueryCancelPending || ProcDiePending)
		return true;
	return !PostmasterIsAlive();
}

/* What a cycle did, for its log line or WARNING. */
typedef struct SyncTally
{
	int			uploaded;
	int			failed;
} SyncTally;

/*
 * Run "SELECT <advisory-lock function>($1)" on the sync lock key; returns
 * the boolean the function returns (false for the void ones).
 */
static bool
sync_lock_query(const char *query)
{
	Datum		key = Int64GetDatum(SYNC_LOCK_KEY);
	Oid			argtype = INT8OID;
	bool		isnull;

	if (SPI_execute_with_args(query, 1, &argtype, &key, NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "logagg: %s failed", query);
	return DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
}

/*
 * Export and upload one (window, source, part) and record the outcome,
 * counted in *tally unless the rows were gone (nothing uploaded or
 * recorded).  Caller: inside a transaction with SPI connected.
 */
static void
sync_one(SyncItem *it, SyncTally *tally)
{
	SyncTarget	t;
	Export		ex;
	char	   *key;
	TimestampTz started = GetCurrentTimestamp();

	sync_parse_target(&t);
	key = sync_object_key(&t, it->window_start, it->source, it->part);
	memset(&ex, 0, sizeof(ex));
	ex.t = &t;

	/* timestamps in the NDJSON are written in UTC whatever the session's TimeZone */
	(void) set_config_option("TimeZone", "UTC", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	sync_export_rows(&ex, it, key);
	if (ex.empty && !ex.failed)
		return;
	if (sync_record_outcome(it, key, &ex, started))
		tally->uploaded++;
	else
		tally->failed++;
}

/* ---------------------------------------------------------------------
 * maintenance worker entry: one transaction per object
 * --------------------------------------------------------------------- */
typedef struct WorkerCycle
{
	MemoryContext cxt;
	List	   *items;
	bool		locked;
	SyncItem   *current;
	SyncTally	tally;
} WorkerCycle;

static void
cycle_start_txn(void *arg)
{
	WorkerCycle *c = arg;

	/* session lock: held across the per-object transactions below */
	c->locked = sync_lock_query("SELECT pg_try_advisory_lock($1)");
	if (c->locked)
		c->items = sync_fetch_pending(false, c->cxt);
}

static void
cycle_item_txn(void *arg)
{
	WorkerCycle *c = arg;

	sync_one(c->current, &c->tally);
}

static void
cycle_end_txn(void *arg)
{
	(void) sync_lock_query("SELECT pg_advisory_unlock($1)");
}

/*
 * Run a cycle from the maintenance worker.  Returns the number of objects
 * uploaded.  Transactions are the worker's own (logagg_run_in_transaction),
 * so an ERROR exits the worker, which releases the advisory lock.
 */
int
logagg_sync_cycle_worker(bool force)
{
	WorkerCycle c;
	ListCell   *lc;

	if (!logagg_sync_configured())
		return 0;
	memset(&c, 0, sizeof(c));
	c.cxt = AllocSetContextCreate(TopMemoryContext, "logagg sync cycle", ALLOCSET_DEFAULT_SIZES);
	sync_in_worker = true;

	logagg_run_or_exit(cycle_start_txn, &c, "logagg: sync cycle");
	if (!c.locked)
	{
		/* logagg.sync_now() is running a cycle in some session right now */
		MemoryContextDelete(c.cxt);
		return 0;
	}
	foreach(lc, c.items)
	{
		if (ShutdownRequestPending)
			break;
		c.current = lfirst(lc);
		logagg_run_or_exit(cycle_item_txn, &c, "logagg: sync upload");
		logagg_worker_reload_if_needed();
	}
	(void) logagg_run_in_transaction(cycle_end_txn, &c, "logagg: sync cycle end");
	if (c.tally.uploaded > 0 || c.tally.failed > 0)
		ereport(LOG,
				(errmsg("logagg: sync cycle uploaded %d object(s), %d failed",
						c.tally.uploaded, c.tally.failed)));
	sync_note_last_sync();
	MemoryContextDelete(c.cxt);
	return c.tally.uploaded;
}

/* ---------------------------------------------------------------------
 * logagg.sync_now(): the same cycle, synchronously in this session
 * --------------------------------------------------------------------- */
PG_FUNCTION_INFO_V1(logagg_sync_now);
Datum
logagg_sync_now(PG_FUNCTION_ARGS)
{
	List	   *items;
	ListCell   *lc;
	SyncTally	tally = {0, 0};

	if (!logagg_sync_configured())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cloud sync is not configured"),
				 errhint("Set logagg.sync_url to s3://BUCKET/PREFIX or file:///DIRECTORY and reload.")));

	sync_in_worker = false;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "logagg: SPI_connect failed");
	/* sync_log is the coordinator's: a worker node's would upload again */
	if (logagg_citus_worker_node())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("logagg.sync_now() runs on the Citus coordinator"),
				 errhint("Connect to the coordinator (Citus group 0): it uploads every node's rows.")));
	/* wait for a cycle the maintenance worker may be running */
	(void) sync_lock_query("SELECT pg_advisory_xact_lock($1)");
	items = sync_fetch_pending(true, CurrentMemoryContext);
	foreach(lc, items)
	{
		CHECK_FOR_INTERRUPTS();
		sync_one(lfirst(lc), &tally);
	}
	SPI_finish();
	sync_note_last_sync();
	if (tally.failed > 0)
		ereport(WARNING,
				(errmsg("logagg: %d of %d object upload(s) failed",
						tally.failed, tally.failed + tally.uploaded),
				 errdetail("Each failure is recorded with its error in logagg.sync_log."),
				 errhint("The maintenance worker retries them with backoff; run logagg.sync_now() again to retry now.")));
	PG_RETURN_INT32(tally.uploaded);
}
