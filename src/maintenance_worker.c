/*-------------------------------------------------------------------------
 *
 * maintenance_worker.c
 *		The "logagg maintenance" background worker: creates partitions of
 *		logagg.logs ahead of time and applies logagg.retention, on start
 *		and then every minute; runs a cloud-sync cycle (sync.c) on start
 *		and then every logagg.sync_interval.
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

static void
maintenance_cycle(void *arg)
{
	(void) logagg_create_partitions();
	(void) logagg_run_retention();
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

	while (!logagg_got_sigterm)
	{
		WaitEvent	ev;
		TimestampTz now = GetCurrentTimestamp();
		long		timeout;

		if (now >= next_run)
		{
			if (!logagg_run_in_transaction(maintenance_cycle, NULL, "logagg: partition maintenance"))
				logagg_exit_extension_dropped();
			next_run = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), MAINTENANCE_PERIOD_MS);
		}

		/*
		 * The sync deadline is recomputed from the current GUC on every
		 * pass, so a reload that shortens logagg.sync_interval applies at
		 * once.
		 */
		if (logagg_sync_configured() &&
			(last_sync == 0 ||
			 GetCurrentTimestamp() >= TimestampTzPlusMilliseconds(last_sync, logagg_sync_interval_secs * 1000L)))
		{
			last_sync = GetCurrentTimestamp();
			(void) logagg_sync_cycle_worker(false);
		}

		/* wake at least every few seconds for logagg_worker_periodic_check() */
		timeout = Min(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_run), 3000);
		if (logagg_sync_configured() && last_sync != 0)
			timeout = Min(timeout,
						  TimestampDifferenceMilliseconds(GetCurrentTimestamp(),
														  TimestampTzPlusMilliseconds(last_sync, logagg_sync_interval_secs * 1000L)));
		(void) WaitEventSetWait(wes, timeout, &ev, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		logagg_worker_reload_if_needed();
		logagg_worker_periodic_check();
	}
	proc_exit(1);
}
