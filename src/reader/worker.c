/*-------------------------------------------------------------------------
 *
 * worker.c
 *		The "logagg reader" background worker's main loop: the live tail,
 *		the JSON API and the web console on logagg.reader_port.
 *
 * One WaitEventSet holds the latch (set by the ingest worker after each
 * commit it handed to the tail's ring, by the query workers' answers and
 * exits, and by signals), postmaster death, and the libuv backend fd under
 * the server.  Each round: reload tokens if they changed, service the
 * sockets, start the queries of new requests, collect answers that are
 * in, fan out what the ingest worker committed, and service the sockets
 * again so that what was queued is written at once.  Nothing here waits
 * for a query: they run in background workers of their own (query.c).
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

#include "reader/reader_int.h"

static void
reader_shutdown(int code, Datum arg)
{
	reader_server_stop();
}

void
logagg_reader_main(Datum arg)
{
	WaitEventSet *wes;
	MemoryContext round_cxt;

	logagg_worker_setup(LOGAGG_WORKER_READER, 0);
	/* "ready" in logagg.status() means clients can connect */
	logagg_ready_deferred = true;
	if (!logagg_wait_for_extension())
		proc_exit(1);

	reader_server_start();
	before_shmem_exit(reader_shutdown, (Datum) 0);
	logagg_my_slot()->extension_ready = true;

	wes = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, reader_server_fd(), NULL, NULL);
	/* what a round allocates and does not keep (what it keeps: malloc or TopMemoryContext) */
	round_cxt = AllocSetContextCreate(TopMemoryContext, "logagg reader round",
									  ALLOCSET_DEFAULT_SIZES);

	while (!ShutdownRequestPending)
	{
		WaitEvent	ev;
		int			nev;
		long		lws_timeout = reader_server_timeout_ms();
		TimestampTz wake = logagg_worker_next_check();

		if (lws_timeout >= 0)
			wake = Min(wake, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), lws_timeout));
		nev = WaitEventSetWait(wes, logagg_timeout_until(wake), &ev, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		logagg_worker_process_interrupts();

		/*
		 * Requests are checked against a current token cache; an idle
		 * reader (no connection, no socket activity) runs no transaction.
		 */
		if (reader_nconns > 0 || (nev > 0 && (ev.events & WL_SOCKET_READABLE)))
			reader_tokens_maybe_refresh(false);
		MemoryContextSwitchTo(round_cxt);
		reader_server_service();
		reader_queries_poll();
		reader_queries_start_pending();
		reader_tail_prepare();
		reader_tail_deliver();
		reader_server_service();
		MemoryContextSwitchTo(TopMemoryContext);
		MemoryContextReset(round_cxt);

		(void) logagg_worker_periodic_check();
	}
	proc_exit(1);
}
