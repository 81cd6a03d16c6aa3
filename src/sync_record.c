/*-------------------------------------------------------------------------
 *
 * sync_record.c
 *		The outcome of one export, recorded: a row in logagg.sync_log
 *		through logagg._sync_record() (schema/30_sync.sql), and the
 *		maintenance worker's counters and last_sync in shared memory.
 *
 * Ordering of effects: a sync_log row saying "uploaded" is inserted only
 * after the target confirmed the object (S3 reply 2xx, or fsync + rename +
 * directory fsync).  If the process dies between the two, the next cycle
 * exports the same (window, source, part) again to the same deterministic
 * key, overwriting the object, so the store never holds duplicates and
 * sync_log records each part exactly once (a partial unique index backs
 * that up).  On a Citus cluster the part's snapshot also goes into
 * logagg._sync_seen, in the same transaction.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "logagg.h"
#include "sync_cycle.h"

/*
 * On a distributed logs: the part's snapshot and the node it was taken on,
 * in logagg._sync_seen next to the window's rows (schema/60_citus.sql),
 * where the next cycle's late-row test and retention read it.  In the
 * transaction of the sync_log row: Citus commits the two together.
 */
static void
record_seen_on_node(SyncItem *it, Export *ex)
{
	Oid			argtypes[5] = {TEXTOID, TIMESTAMPTZOID, INT4OID, TEXTOID, INT8OID};
	Datum		v[5];
	int			ret;

	v[0] = CStringGetTextDatum(it->source);
	v[1] = TimestampTzGetDatum(it->window_start);
	v[2] = Int32GetDatum(it->part);
	v[3] = CStringGetTextDatum(ex->snapshot);
	v[4] = Int64GetDatum(ex->system_id);
	ret = SPI_execute_with_args("SELECT logagg._sync_seen_record($1, $2, $3, $4::pg_catalog.pg_snapshot, $5)",
								5, argtypes, v, NULL, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: recording a synced part's snapshot failed: %s", SPI_result_code_string(ret));
}

/*
 * Insert the sync_log row of an attempt: the export's figures and
 * snapshot when it was uploaded, the error when it failed (which is also
 * logged, and shown as the worker's last error).  Returns whether the
 * object was uploaded.  Caller: inside a transaction with SPI connected.
 */
bool
sync_record_outcome(SyncItem *it, const char *key, Export *ex, TimestampTz started)
{
	Oid			argtypes[16] = {TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, INT4OID,
		TEXTOID, INT8OID, INT8OID, INT8OID, TEXTOID,
	INT8OID, INT8OID, INT4OID, TIMESTAMPTZOID, TEXTOID, INT4OID, TEXTOID};
	Datum		v[16];
	char		n[16];
	int			ret;

	memset(n, ' ', sizeof(n));
	v[0] = TimestampTzGetDatum(it->window_start);
	v[1] = TimestampTzGetDatum(it->window_end);
	v[2] = CStringGetTextDatum(it->source);
	v[3] = Int32GetDatum(it->part);
	v[4] = CStringGetTextDatum(key);
	v[5] = Int64GetDatum(ex->rows);
	v[6] = Int64GetDatum(ex->bytes);
	v[7] = Int64GetDatum(ex->raw_bytes);
	v[8] = CStringGetTextDatum(ex->checksum);
	v[9] = Int64GetDatum(ex->min_id);
	v[10] = Int64GetDatum(ex->max_id);
	v[11] = Int32GetDatum(ex->upload_parts);
	v[12] = TimestampTzGetDatum(started);
	/* S3 servers and libcurl say what they like, cut to SYNC_ERR_LEN */
	logagg_make_valid_text(ex->err);
	v[13] = ex->failed ? CStringGetTextDatum(ex->err) : (Datum) 0;
	v[14] = Int32GetDatum(logagg_sync_interval_secs);
	v[15] = ex->snapshot ? CStringGetTextDatum(ex->snapshot) : (Datum) 0;
	if (!ex->failed)
		n[13] = 'n';
	else
	{
		for (int i = 5; i <= 11; i++)
			n[i] = 'n';
		n[15] = 'n';
	}
	ret = SPI_execute_with_args("SELECT logagg._sync_record($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16::pg_catalog.pg_snapshot)",
								16, argtypes, v, n, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: recording a sync attempt failed: %s", SPI_result_code_string(ret));

	if (ex->failed)
	{
		ereport(LOG,
				(errmsg("logagg: sync of window %s source \"%s\" part %d failed",
						timestamptz_to_str(it->window_start), it->source, it->part),
				 errdetail("%s", ex->err),
				 errhint("The upload is retried on a later cycle; see logagg.sync_log.")));
		if (sync_in_worker)
			logagg_set_last_error(ex->err);
		return false;
	}
	if (it->cluster)
		record_seen_on_node(it, ex);
	sync_count_in_maintenance_slot(LC_SYNC_OBJECTS, 1);
	sync_count_in_maintenance_slot(LC_SYNC_BYTES, ex->bytes);
	return true;
}

/* counted on the maintenance worker's row of logagg.status(), whoever ran it */
void
sync_count_in_maintenance_slot(LogaggCounter c, uint64 n)
{
	LogaggWorkerSlot *slot = logagg_slot_of(LOGAGG_WORKER_MAINTENANCE, 0);

	if (slot != NULL)
		pg_atomic_fetch_add_u64(&slot->counters[c], n);
}

void
sync_note_last_sync(void)
{
	LogaggWorkerSlot *slot = logagg_slot_of(LOGAGG_WORKER_MAINTENANCE, 0);

	if (slot != NULL)
		slot->last_sync = GetCurrentTimestamp();
}

