/*-------------------------------------------------------------------------
 *
 * alert_sql.c
 *		Waking the dispatch workers from SQL: logagg._wake_dispatchers()
 *		and logagg._wake_dispatchers_at_commit().
 *
 * A statement trigger on logagg.alert_queue (and
 * _wake_dispatchers_at_commit(), called by functions that make queued
 * alerts due again) registers a transaction
 * callback that sets the dispatchers' latches when the transaction
 * COMMITS.  Not before: a dispatcher woken earlier would not yet see the
 * rows and would go back to sleep; and not on abort, when there is nothing
 * to send.  This is what lets logagg.ingest() and test_destination()
 * alerts leave within milliseconds rather than on a polling tick.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "commands/trigger.h"
#include "fmgr.h"

#include "alerts.h"
#include "logagg.h"

static bool xact_callback_registered = false;
static bool wake_pending = false;

static void
wake_xact_callback(XactEvent event, void *arg)
{
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			if (wake_pending)
			{
				wake_pending = false;
				logagg_wake_workers(LOGAGG_WORKER_DISPATCH);
			}
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
		case XACT_EVENT_PREPARE:
			wake_pending = false;
			break;
		default:
			break;
	}
}

static void
wake_dispatchers_at_commit(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(wake_xact_callback, NULL);
		xact_callback_registered = true;
	}
	wake_pending = true;
}

PG_FUNCTION_INFO_V1(logagg_wake_dispatchers_trigger);
Datum
logagg_wake_dispatchers_trigger(PG_FUNCTION_ARGS)
{
	if (!CALLED_AS_TRIGGER(fcinfo))
		ereport(ERROR,
				(errcode(ERRCODE_E_R_I_E_TRIGGER_PROTOCOL_VIOLATED),
				 errmsg("logagg._wake_dispatchers() must be called as a trigger")));
	wake_dispatchers_at_commit();
	return PointerGetDatum(NULL);
}

PG_FUNCTION_INFO_V1(logagg_wake_dispatchers_at_commit);
Datum
logagg_wake_dispatchers_at_commit(PG_FUNCTION_ARGS)
{
	wake_dispatchers_at_commit();
	PG_RETURN_VOID();
}
