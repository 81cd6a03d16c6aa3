/*-------------------------------------------------------------------------
 *
 * dispatch_worker.c
 *		The "logagg dispatch N" background worker's main loop.
 *
 * It waits on one WaitEventSet holding its latch and postmaster death (the
 * libcurl multi handle's epoll fd joins it when delivery is added), so
 * SIGTERM, SIGHUP and wake-ups from the ingest worker are seen promptly.
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

#include "logagg.h"

/* How often an idle worker checks that the extension still exists. */
#define IDLE_CHECK_MS 3000

void
logagg_dispatch_main(Datum arg)
{
	WaitEventSet *wes;

	logagg_worker_setup(LOGAGG_WORKER_DISPATCH, DatumGetInt32(arg));
	if (!logagg_wait_for_extension())
		proc_exit(1);

	wes = CreateWaitEventSet(TopMemoryContext, 2);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);

	while (!logagg_got_sigterm)
	{
		WaitEvent	ev;

		(void) WaitEventSetWait(wes, IDLE_CHECK_MS, &ev, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
		logagg_worker_reload_if_needed();
		logagg_worker_periodic_check();
	}
	proc_exit(1);
}
