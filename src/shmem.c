/*-------------------------------------------------------------------------
 *
 * shmem.c
 *		The shared-memory registry of logagg workers: one slot per
 *		background worker holding its PID, latch, counters and last error,
 *		and logagg.status(), which shows them.
 *
 * Counters are atomics so that a worker's hot path never takes a lock to
 * count; the last-error text is the only field behind a spinlock.  Other
 * backends use the published latch pointers to wake workers (for example
 * the ingest worker wakes the dispatchers after committing alert rows).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "executor/spi.h"
#include "fmgr.h"
#include "funcapi.h"
#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/builtins.h"
#include "utils/timestamp.h"

#include "logagg.h"
#include "tail_ring.h"

LogaggShared *logagg_shared = NULL;

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

static LogaggWorkerSlot *my_slot = NULL;

static const char *const counter_names[LC_NUM_COUNTERS] = {
	"connections", "connections_total", "rows", "batches", "rejects",
	"duplicates", "alerts_queued", "alerts_sent", "alerts_failed",
	"sync_objects", "sync_bytes", "partitions_created", "partitions_dropped",
	"reloads", "regex_timeouts"
};

/*
 * The alert queue depth /metrics shows.  Counting needs a query, and the
 * ingest worker must not run a transaction per scrape, so the processes
 * that change the queue publish the count here: the ingest worker after a
 * batch that queued alerts, the dispatchers after their cycles and every
 * housekeeping round (which also catches changes made by SQL).  Inside a
 * transaction with SPI connected.  Unless forced, a process counts at
 * most every QUEUE_DEPTH_MIN_MS; returns whether it counted.
 */
#define QUEUE_DEPTH_MIN_MS 100

bool
logagg_refresh_alert_queue_depth(bool force)
{
	static TimestampTz last = 0;
	TimestampTz now = GetCurrentTimestamp();
	bool		isnull;

	if (logagg_shared == NULL)
		return true;
	if (!force && !TimestampDifferenceExceeds(last, now, QUEUE_DEPTH_MIN_MS))
		return false;
	last = now;
	/* not read_only: see what this transaction itself queued */
	if (SPI_execute("SELECT count(*) FROM logagg.alert_queue WHERE dead_at IS NULL", false, 1) == SPI_OK_SELECT &&
		SPI_processed == 1)
	{
		Datum		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);

		if (!isnull)
			pg_atomic_write_u64(&logagg_shared->alert_queue_depth, (uint64) DatumGetInt64(d));
	}
	return true;
}

/* The last published depth, or -1 when nobody has counted yet. */
int64
logagg_alert_queue_depth(void)
{
	if (logagg_shared == NULL)
		return -1;
	return (int64) pg_atomic_read_u64(&logagg_shared->alert_queue_depth);
}

/* ingest + dispatch workers + maintenance (+ reader, when it listens) */
int
logagg_slot_count(void)
{
	return 2 + logagg_dispatch_workers + (logagg_reader_port > 0 ? 1 : 0);
}

int
logagg_slot_index(LogaggWorkerKind kind, int index)
{
	switch (kind)
	{
		case LOGAGG_WORKER_INGEST:
			return 0;
		case LOGAGG_WORKER_MAINTENANCE:
			return 1;
		case LOGAGG_WORKER_DISPATCH:
			return 2 + index - 1;	/* dispatch workers are numbered from 1 */
		case LOGAGG_WORKER_READER:
			return logagg_reader_port > 0 ? 2 + logagg_dispatch_workers : -1;
	}
	return -1;
}

/*
 * The shared slot of a worker, from any process (e.g. a session running
 * logagg.sync_now() counts on the maintenance worker's slot); NULL when
 * logagg is not preloaded.
 */
LogaggWorkerSlot *
logagg_slot_of(LogaggWorkerKind kind, int index)
{
	int			i = logagg_slot_index(kind, index);

	if (logagg_shared == NULL || i < 0 || i >= logagg_shared->nslots)
		return NULL;
	return &logagg_shared->slots[i];
}

static Size
logagg_shmem_size(void)
{
	return add_size(offsetof(LogaggShared, slots),
					mul_size(logagg_slot_count(), sizeof(LogaggWorkerSlot)));
}

static void
logagg_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	RequestAddinShmemSpace(logagg_shmem_size());
	RequestAddinShmemSpace(logagg_tail_shmem_size());
}

static void
logagg_shmem_startup(void)
{
	bool		found;

	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	logagg_shared = ShmemInitStruct("logagg", logagg_shmem_size(), &found);
	if (!found)
	{
		int			n = logagg_slot_count();

		memset(logagg_shared, 0, logagg_shmem_size());
		logagg_shared->nslots = n;
		pg_atomic_init_u32(&logagg_shared->rules_generation, 0);
		pg_atomic_init_u64(&logagg_shared->alert_queue_depth, (uint64) -1);
		for (int i = 0; i < n; i++)
		{
			LogaggWorkerSlot *s = &logagg_shared->slots[i];

			if (i == 0)
			{
				s->kind = LOGAGG_WORKER_INGEST;
				strlcpy(s->name, "logagg ingest", sizeof(s->name));
			}
			else if (i == 1)
			{
				s->kind = LOGAGG_WORKER_MAINTENANCE;
				strlcpy(s->name, "logagg maintenance", sizeof(s->name));
			}
			else if (i == 2 + logagg_dispatch_workers)
			{
				s->kind = LOGAGG_WORKER_READER;
				strlcpy(s->name, "logagg reader", sizeof(s->name));
			}
			else
			{
				s->kind = LOGAGG_WORKER_DISPATCH;
				s->index = i - 1;
				snprintf(s->name, sizeof(s->name), "logagg dispatch %d", i - 1);
			}
			SpinLockInit(&s->mutex);
			for (int c = 0; c < LC_NUM_COUNTERS; c++)
				pg_atomic_init_u64(&s->counters[c], 0);
		}
	}
	logagg_tail_shmem_init();
	LWLockRelease(AddinShmemInitLock);
}

void
logagg_shmem_init_hooks(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = logagg_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = logagg_shmem_startup;
}

static void
slot_detach(int code, Datum arg)
{
	if (my_slot)
	{
		my_slot->latch = NULL;
		pg_write_barrier();
		my_slot->pid = 0;
		pg_atomic_write_u64(&my_slot->counters[LC_CONNECTIONS], 0);
		my_slot = NULL;
	}
}

/*
 * Claim this worker's slot.  Counters survive worker restarts (they count
 * since server start), except gauges, which describe the running process.
 */
void
logagg_slot_attach(LogaggWorkerKind kind, int index)
{
	int			i = logagg_slot_index(kind, index);

	if (logagg_shared == NULL || i < 0 || i >= logagg_shared->nslots)
		elog(FATAL, "logagg: no shared memory slot for worker kind %d index %d",
			 (int) kind, index);
	my_slot = &logagg_shared->slots[i];
	my_slot->started_at = GetCurrentTimestamp();
	my_slot->extension_ready = false;
	pg_atomic_write_u64(&my_slot->counters[LC_CONNECTIONS], 0);
	my_slot->latch = MyLatch;
	pg_write_barrier();
	my_slot->pid = MyProcPid;
	on_shmem_exit(slot_detach, (Datum) 0);
}

LogaggWorkerSlot *
logagg_my_slot(void)
{
	return my_slot;
}

void
logagg_count(LogaggCounter c, uint64 n)
{
	if (my_slot)
		pg_atomic_fetch_add_u64(&my_slot->counters[c], n);
}

void
logagg_set_last_error(const char *msg)
{
	char		copy[sizeof(my_slot->last_error)];

	if (my_slot == NULL)
		return;
	/* cut to the slot's size, then repaired: status() shows it as text */
	strlcpy(copy, msg, sizeof(copy));
	logagg_make_valid_text(copy);
	SpinLockAcquire(&my_slot->mutex);
	memcpy(my_slot->last_error, copy, sizeof(copy));
	my_slot->last_error_at = GetCurrentTimestamp();
	SpinLockRelease(&my_slot->mutex);
}

/* Set the latch of every running worker of a kind (e.g. all dispatchers). */
void
logagg_wake_workers(LogaggWorkerKind kind)
{
	if (logagg_shared == NULL)
		return;
	for (int i = 0; i < logagg_shared->nslots; i++)
	{
		LogaggWorkerSlot *s = &logagg_shared->slots[i];
		Latch	   *latch;

		if (s->kind != kind || s->pid == 0)
			continue;
		pg_read_barrier();
		latch = s->latch;
		if (latch)
			SetLatch(latch);
	}
}

/*
 * logagg.status(): one row per worker slot.
 */
PG_FUNCTION_INFO_V1(logagg_status);
Datum
logagg_status(PG_FUNCTION_ARGS)
{
	ReturnSetInfo *rsinfo = (ReturnSetInfo *) fcinfo->resultinfo;

	if (logagg_shared == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("logagg workers are not running in this server"),
				 errdetail("The logagg library was not loaded at server start."),
				 errhint("Add logagg to shared_preload_libraries in postgresql.conf and restart the server.")));

	InitMaterializedSRF(fcinfo, 0);

	for (int i = 0; i < logagg_shared->nslots; i++)
	{
		LogaggWorkerSlot *s = &logagg_shared->slots[i];
		Datum		values[12];
		bool		nulls[12] = {0};
		char		errbuf[256];
		TimestampTz errat;
		StringInfoData counters;
		int			pid = s->pid;

		SpinLockAcquire(&s->mutex);
		strlcpy(errbuf, s->last_error, sizeof(errbuf));
		errat = s->last_error_at;
		SpinLockRelease(&s->mutex);

		values[0] = CStringGetTextDatum(s->name);
		values[1] = CStringGetTextDatum(s->kind == LOGAGG_WORKER_INGEST ? "ingest" :
										s->kind == LOGAGG_WORKER_DISPATCH ? "dispatch" :
										s->kind == LOGAGG_WORKER_READER ? "reader" :
										"maintenance");
		if (pid != 0)
			values[2] = Int32GetDatum(pid);
		else
			nulls[2] = true;
		values[3] = BoolGetDatum(pid != 0 && s->extension_ready);
		if (pid != 0 && s->started_at != 0)
			values[4] = TimestampTzGetDatum(s->started_at);
		else
			nulls[4] = true;
		values[5] = Int64GetDatum((int64) pg_atomic_read_u64(&s->counters[LC_CONNECTIONS]));
		values[6] = Int64GetDatum((int64) pg_atomic_read_u64(&s->counters[LC_ROWS]));
		values[7] = Int64GetDatum((int64) pg_atomic_read_u64(&s->counters[LC_BATCHES]));
		values[8] = Int64GetDatum((int64) pg_atomic_read_u64(&s->counters[LC_REJECTS]));

		/* all counters, for forward compatibility, as jsonb text */
		initStringInfo(&counters);
		appendStringInfoChar(&counters, '{');
		for (int c = 0; c < LC_NUM_COUNTERS; c++)
			appendStringInfo(&counters, "%s\"%s\": " UINT64_FORMAT,
							 c ? ", " : "", counter_names[c],
							 pg_atomic_read_u64(&s->counters[c]));
		appendStringInfoChar(&counters, '}');
		values[9] = DirectFunctionCall1(jsonb_in, CStringGetDatum(counters.data));

		if (errbuf[0])
		{
			values[10] = CStringGetTextDatum(errbuf);
			values[11] = TimestampTzGetDatum(errat);
		}
		else
		{
			nulls[10] = true;
			nulls[11] = true;
		}
		tuplestore_putvalues(rsinfo->setResult, rsinfo->setDesc, values, nulls);
	}
	return (Datum) 0;
}
