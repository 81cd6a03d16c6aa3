/*-------------------------------------------------------------------------
 *
 * ingest_worker.c
 *		The "logagg ingest" background worker's main loop.
 *
 * It waits on one WaitEventSet holding its latch, postmaster death and
 * the libuv backend fd under the WebSocket server (src/ingest/server.c), so
 * SIGTERM, SIGHUP, wake-ups from other backends and network input are
 * all seen promptly.  Each round: service the sockets without blocking,
 * parse what arrived into the batch, and commit the batch when it is full
 * or its oldest record has waited logagg.batch_delay.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>
#include <sys/resource.h>

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/memutils.h"

#include "ingest.h"

/*
 * Every connection is a file descriptor, and the default soft limit (often
 * 1024) is below logagg.max_connections' default.  Raise the soft limit to
 * the hard limit before libwebsockets sizes its fd table from it.  Only
 * this process is affected; PostgreSQL's own fd accounting (max_safe_fds)
 * was computed by the postmaster and stays as it is.
 */
static void
raise_fd_limit(void)
{
	struct rlimit rl;
	rlim_t		want;

	if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
		return;
	want = rl.rlim_max == RLIM_INFINITY ? 1048576 : rl.rlim_max;
	if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < want)
	{
		struct rlimit newrl = rl;

		newrl.rlim_cur = want;
		if (setrlimit(RLIMIT_NOFILE, &newrl) == 0)
			rl = newrl;
	}
	if (rl.rlim_cur != RLIM_INFINITY &&
		rl.rlim_cur < (rlim_t) logagg_max_connections + 64)
		ereport(WARNING,
				(errmsg("logagg ingest: open file limit %lu is below logagg.max_connections (%d)",
						(unsigned long) rl.rlim_cur, logagg_max_connections),
				 errdetail("Connections beyond the limit will be refused by the operating system."),
				 errhint("Raise the server's hard limit on open files (ulimit -Hn, LimitNOFILE= in the systemd unit) or lower logagg.max_connections.")));
}

/*
 * Each batch allocates a few megabytes (records, decoded strings, the
 * COPY stream) and frees them at commit.  With glibc's default, sliding
 * thresholds those blocks are often handed back to the kernel and faulted
 * in again, zeroed, for the next batch: tens of thousands of page faults
 * per second under load.  Fixed thresholds keep them in the heap for the
 * next batch.  Memory still goes back to the kernel by malloc_trim(),
 * which ignores these thresholds: src/ingest/server.c calls it as connections
 * close, and the main loop when an interval between two extension checks
 * (logagg_worker_periodic_check) passed without a batch.
 */
static void
keep_batch_memory(void)
{
	mallopt(M_MMAP_THRESHOLD, 32 * 1024 * 1024);
	mallopt(M_TRIM_THRESHOLD, 128 * 1024 * 1024);
}

static void
ingest_shutdown(int code, Datum arg)
{
	ingest_server_stop();
}

void
logagg_ingest_main(Datum arg)
{
	WaitEventSet *wes;
	bool		stored_since_check = false;

	logagg_worker_setup(LOGAGG_WORKER_INGEST, 0);
	/* "ready" in logagg.status() means clients can connect */
	logagg_ready_deferred = true;
	if (!logagg_wait_for_extension())
		proc_exit(1);

	raise_fd_limit();
	keep_batch_memory();
	ingest_server_start();
	logagg_my_slot()->extension_ready = true;
	before_shmem_exit(ingest_shutdown, (Datum) 0);

	wes = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, ingest_server_fd(), NULL, NULL);

	while (!ShutdownRequestPending)
	{
		WaitEvent	ev;
		long		lws_timeout = ingest_server_timeout_ms();
		TimestampTz wake = logagg_worker_next_check();
		TimestampTz deadline;

		/* one wait, until libwebsockets' timer, a batch or the check is due */
		if (lws_timeout >= 0)
			wake = Min(wake, TimestampTzPlusMilliseconds(GetCurrentTimestamp(), lws_timeout));
		if (ingest_server_needs_flush(&deadline))
			wake = Min(wake, deadline);

		(void) WaitEventSetWait(wes, logagg_timeout_until(wake), &ev, 1, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		logagg_worker_process_interrupts();

		ingest_server_service();
		ingest_server_process_input();

		/*
		 * A full batch is stored at once, and input that waited behind it is
		 * parsed into the next one before sleeping again.
		 */
		while (!ShutdownRequestPending && ingest_server_needs_flush(&deadline) &&
			   deadline <= GetCurrentTimestamp())
		{
			CHECK_FOR_INTERRUPTS();
			ingest_server_flush();
			stored_since_check = true;
			ingest_server_service();
			ingest_server_process_input();
		}

		/* DROP EXTENSION must be noticed even when no batch is written */
		if (logagg_worker_periodic_check())
		{
			/* idle: give the batches' heap memory back */
			if (!stored_since_check)
				malloc_trim(0);
			stored_since_check = false;
		}
	}

	/* store what was received before stopping, so its acks are truthful */
	ingest_server_process_input();
	{
		TimestampTz deadline;

		if (ingest_server_needs_flush(&deadline))
			ingest_server_flush();
	}
	ingest_server_service();
	proc_exit(1);
}
