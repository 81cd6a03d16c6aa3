/*-------------------------------------------------------------------------
 *
 * maintenance_worker.c
 *		The "logagg maintenance" background worker: creates partitions of
 *		logagg.logs ahead of time and applies logagg.retention, on start
 *		and then every minute; builds missing search indexes of existing
 *		partitions (search_index.c) whenever it wakes; runs a cloud-sync
 *		cycle (sync.c) on start and then every logagg.sync_interval.
 *
 * logagg.sync_now() does not signal this worker: it runs the same cycle
 * synchronously in the calling session (so it can return what it
 * uploaded), and an advisory lock keeps the two from overlapping.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "logagg.h"
#include "sync.h"

/*
 * Partitions for the next interval are created as soon as the current one
 * starts, so checking once a minute leaves a whole interval of slack.
 */
#define MAINTENANCE_PERIOD_MS 60000

/*
 * On a Citus worker node the coordinator maintains the distributed
 * partitions and runs sync and retention (node_role.c); this worker only
 * keeps checking, so that a node that leaves a cluster takes over again.
 */
static bool worker_node = false;

static void
maintenance_cycle(void *arg)
{
	worker_node = logagg_citus_worker_node();
	if (worker_node)
		return;
	(void) logagg_create_partitions();
	(void) logagg_run_retention();
}

/* When the sync cycle that follows one started at 'last_sync' is due. */
static TimestampTz
next_sync(TimestampTz last_sync)
{
	return TimestampTzPlusMilliseconds(last_sync, logagg_sync_interval_secs * 1000L);
}

void
logagg_maintenance_main(Datum arg)
{
	WaitEventSet *wes;
	TimestampTz next_run = 0;
	TimestampTz last_sync = 0;	/* start of the last sync cycle; 0 = none yet */

	logagg_worker_setup(LOGAGG_WORKER_MAINTENANCE, 0);
	if (!logagg_wait_for_extension())
		proc_exit(1);

	wes = CreateWaitEventSet(TopMemoryContext, 2);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);

	while (!ShutdownRequestPending)
	{
		WaitEvent	ev;
		TimestampTz wake;

		if (GetCurrentTimestamp() >= next_run)
		{
			logagg_run_or_exit(maintenance_cycle, NULL, "logagg: partition maintenance");
			next_run = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), MAINTENANCE_PERIOD_MS);
		}

		/*
		 * Search indexes of existing partitions, CONCURRENTLY, outside any
		 * transaction (search_index.c); also when logagg.maintain() woke us.
		 */
		logagg_build_search_indexes();

		/*
		 * The sync deadline is recomputed from the current GUC on every
		 * pass, so a reload that shortens logagg.sync_interval applies at
		 * once.
		 */
		if (!worker_node && logagg_sync_configured() &&
			(last_sync == 0 || GetCurrentTimestamp() >= next_sync(last_sync)))
		{
			last_sync = GetCurrentTimestamp();
			(void) logagg_sync_cycle_worker(false);
		}

		/* one wait, until the earliest thing due (autoprewarm_main's shape) */
		wake = Min(next_run, logagg_worker_next_check());
		if (!worker_node && logagg_sync_configured() && last_sync != 0)
			wake = Min(wake, next_sync(last_sync));
		(void) WaitEventSetWait(wes, logagg_timeout_until(wake), &ev, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		logagg_worker_process_interrupts();
		logagg_worker_periodic_check();
	}
	proc_exit(1);
}
