/*-------------------------------------------------------------------------
 *
 * maintenance_worker.c
 *		The "logagg maintenance" background worker: creates partitions of
 *		logagg.logs ahead of time, on start and then periodically.
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

/*
 * Partitions for the next interval are created as soon as the current one
 * starts, so checking once a minute leaves a whole interval of slack.
 */
#define MAINTENANCE_PERIOD_MS 60000

static void
maintenance_cycle(void *arg)
{
	(void) logagg_create_partitions();
}

void
logagg_maintenance_main(Datum arg)
{
	WaitEventSet *wes;
	TimestampTz next_run = 0;

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

		/* wake at least every few seconds for logagg_worker_periodic_check() */
		timeout = Min(TimestampDifferenceMilliseconds(GetCurrentTimestamp(), next_run), 3000);
		(void) WaitEventSetWait(wes, timeout, &ev, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		logagg_worker_reload_if_needed();
		logagg_worker_periodic_check();
	}
	proc_exit(1);
}
