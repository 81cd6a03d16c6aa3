/*-------------------------------------------------------------------------
 *
 * dispatch_worker.c
 *		The "logagg dispatch N" background worker's main loop.
 *
 * It waits on one WaitEventSet holding its latch, postmaster death and the
 * epoll fd of its libcurl multi socket set (curl_multi.c), so SIGTERM,
 * SIGHUP, wake-ups from ingest (SetLatch after a batch with alerts
 * commits) and network progress are all seen at once.  Each wake:
 *   1. libcurl does its socket / timeout actions; finished deliveries are
 *      collected;
 *   2. when deliveries finished, or alerts may be due and a concurrency
 *      slot is free, one short transaction (dispatcher.c) records the
 *      outcomes and takes more due alerts, most severe first;
 *   3. sleep until the latch, a socket, libcurl's timer, or the next
 *      scheduled alert (summary at the end of a group window, retry).
 *
 * Dispatch worker 1 also evaluates the alert rules every
 * logagg.rule_eval_interval (alert_rules.c), in a short transaction of its
 * own between two cycles.  Here rather than in the maintenance worker,
 * whose sync cycle keeps a transaction open across an upload and could
 * delay an evaluation by minutes: a dispatcher never blocks on the
 * network, and the notifications an evaluation queues are claimed by the
 * same loop right after its commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "alert_rules.h"
#include "alerts.h"
#include "logagg.h"

/* Forget ended groups and re-check the queue this often. */
#define HOUSEKEEPING_MS 5000
/*
 * How often dispatch worker 1 takes alerts handed over by Citus worker
 * nodes; without Citus installed it only checks, rarely, whether it is
 * (no transaction a second on a server that is no cluster).
 */
#define INBOX_DRAIN_MS 1000
#define INBOX_CHECK_MS 30000
/* When due rows exist but others hold them: look again after this. */
#define BUSY_RETRY_MS 50
/*
 * Under load, finished deliveries are recorded in batches: a cycle waits up
 * to this long for more to finish while others are still in flight and
 * fewer than half the slots are done.  Fewer, larger transactions are what
 * lets a worker record thousands of outcomes a second; an idle alert is
 * recorded at once (nothing else in flight), and receipt is not delayed at
 * all (the request has already been answered).
 */
#define BATCH_WAIT_MS 5

/*
 * logagg.rule_eval_interval bounds the time from a record's COMMIT to the
 * END of the evaluation that sees it, when its notification is queued.  A
 * record committed just after an evaluation took its snapshot is seen by
 * the next one, so the next one must finish, not start, within the
 * interval: it starts early by the longest of the last EVAL_HISTORY
 * evaluations (under heavy ingest, folding a few seconds of deltas takes a
 * few hundred ms), but never more than half an interval early.
 */
#define EVAL_HISTORY 4

static long eval_ms[EVAL_HISTORY];
static int	eval_next;

/* How much earlier than the interval the next evaluation starts. */
static long
eval_lead_ms(void)
{
	long		lead = 0;

	for (int i = 0; i < EVAL_HISTORY; i++)
		lead = Max(lead, eval_ms[i]);
	return Min(lead, logagg_rule_eval_interval_ms / 2);
}

static void
eval_took(TimestampTz start)
{
	long		secs;
	int			usecs;

	TimestampDifference(start, GetCurrentTimestamp(), &secs, &usecs);
	eval_ms[eval_next] = secs * 1000 + usecs / 1000;
	eval_next = (eval_next + 1) % EVAL_HISTORY;
}

void
logagg_dispatch_main(Datum arg)
{
	int			index = DatumGetInt32(arg);
	WaitEventSet *wes;
	dlist_head	done;
	TimestampTz next_due = 0;
	TimestampTz next_housekeeping;
	TimestampTz next_drain = 0;
	TimestampTz first_done_at = 0;
	TimestampTz last_eval = 0;	/* start of the last rule evaluation */
	bool		evaluates = (index == 1);
	bool		want_claim = true;

	logagg_worker_setup(LOGAGG_WORKER_DISPATCH, index);
	if (!logagg_wait_for_extension())
		proc_exit(1);

	/*
	 * An outcome lost in a crash only means the alert is sent again with
	 * the same alert_id (Idempotency-Key); not waiting for a WAL flush per
	 * cycle is what lets a worker record thousands of outcomes a second.
	 */
	SetConfigOption("synchronous_commit", "off", PGC_SUSET, PGC_S_OVERRIDE);

	logagg_curlm_init();
	wes = CreateWaitEventSet(TopMemoryContext, 3);
	AddWaitEventToSet(wes, WL_LATCH_SET, PGINVALID_SOCKET, MyLatch, NULL);
	AddWaitEventToSet(wes, WL_EXIT_ON_PM_DEATH, PGINVALID_SOCKET, NULL, NULL);
	AddWaitEventToSet(wes, WL_SOCKET_READABLE, logagg_curlm_fd(), NULL, NULL);

	logagg_dispatcher_start(index);
	dlist_init(&done);
	next_housekeeping = TimestampTzPlusMilliseconds(GetCurrentTimestamp(), HOUSEKEEPING_MS);

	while (!ShutdownRequestPending)
	{
		WaitEvent	evs[3];
		int			nev;
		TimestampTz wake;
		long		curl_timeout;
		int			ndone = 0;
		int			slots;
		TimestampTz now;
		dlist_iter	it;

		logagg_curlm_service(&done);
		dlist_foreach(it, &done)
			ndone++;
		slots = logagg_dispatch_concurrency - (logagg_dispatch_inflight - ndone);
		now = GetCurrentTimestamp();
		if (next_due != DT_NOEND && now >= next_due)
			want_claim = true;

		/* recomputed each pass: a reload of the interval applies at once */
		if (evaluates &&
			now >= TimestampTzPlusMilliseconds(last_eval, logagg_rule_eval_interval_ms - eval_lead_ms()))
		{
			last_eval = now;
			if (logagg_alert_rules_evaluate() > 0)
				want_claim = true;
			eval_took(now);
			continue;		/* before claiming: busy cycles never starve it */
		}

		if (ndone == 0)
			first_done_at = 0;
		else if (first_done_at == 0)
			first_done_at = now;

		if (ndone > 0 && !(slots > 0 && want_claim) &&
			ndone < logagg_dispatch_concurrency / 2 &&
			logagg_dispatch_inflight > ndone &&
			now < TimestampTzPlusMilliseconds(first_done_at, BATCH_WAIT_MS))
		{
			/* let a few more finish first; see BATCH_WAIT_MS */
		}
		else if (ndone > 0 || (slots > 0 && want_claim))
		{
			int			req = Max(slots, 0);
			int			got = logagg_dispatcher_cycle(&done, req, &next_due);

			if (req > 0)
			{
				/* a full batch: more may be due right away */
				want_claim = (got == req);
				if (got < req && next_due != DT_NOEND && next_due <= now)
					next_due = TimestampTzPlusMilliseconds(now, BUSY_RETRY_MS);
			}
			if (got > 0)
				logagg_my_slot()->last_activity = GetCurrentTimestamp();
			first_done_at = 0;
			CHECK_FOR_INTERRUPTS();
			continue;
		}

		if (index == 1 && now >= next_drain)
		{
			bool		citus;

			if (logagg_dispatcher_drain_inbox(&citus) > 0)
				want_claim = true;
			next_drain = TimestampTzPlusMilliseconds(GetCurrentTimestamp(),
													 citus ? INBOX_DRAIN_MS : INBOX_CHECK_MS);
			continue;
		}

		if (now >= next_housekeeping)
		{
			logagg_dispatcher_housekeeping();
			next_housekeeping = TimestampTzPlusMilliseconds(now, HOUSEKEEPING_MS);
			want_claim = true;	/* safety net: never trust one missed wake */
			continue;
		}

		/*
		 * One wait, until the earliest thing due: housekeeping, libcurl's
		 * timer, the next scheduled alert (only with a free slot), the end
		 * of a batching wait, the extension check.
		 */
		wake = Min(next_housekeeping, logagg_worker_next_check());
		if (index == 1)
			wake = Min(wake, next_drain);
		if (evaluates)
			wake = Min(wake, TimestampTzPlusMilliseconds(last_eval,
														 logagg_rule_eval_interval_ms - eval_lead_ms()));
		curl_timeout = logagg_curlm_timeout_ms();
		if (curl_timeout >= 0)
			wake = Min(wake, TimestampTzPlusMilliseconds(now, curl_timeout));
		if (slots > 0)
			wake = Min(wake, next_due);
		if (first_done_at != 0)
			wake = Min(wake, TimestampTzPlusMilliseconds(first_done_at, BATCH_WAIT_MS));

		nev = WaitEventSetWait(wes, logagg_timeout_until(wake), evs, lengthof(evs),
							   PG_WAIT_EXTENSION);
		for (int i = 0; i < nev; i++)
		{
			if (evs[i].events & WL_LATCH_SET)
			{
				ResetLatch(MyLatch);
				want_claim = true;
			}
		}
		logagg_worker_process_interrupts();
		logagg_worker_periodic_check();
	}
	proc_exit(1);
}
