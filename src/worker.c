/*-------------------------------------------------------------------------
 *
 * worker.c
 *		What every logagg background worker does the same way: signal
 *		handling, connecting to logagg.database, claiming its shared-memory
 *		slot, waiting quietly until CREATE EXTENSION logagg has run, then
 *		dropping superuser rights for good to run as logagg_owner, running
 *		a unit of work in its own transaction (an error becomes
 *		last_error), and exiting after DROP EXTENSION.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "executor/spi.h"
#include "commands/extension.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "tcop/tcopprot.h"
#include "utils/acl.h"
#include "utils/backend_status.h"
#include "utils/guc.h"
#include "utils/lsyscache.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"

#include "logagg.h"

/*
 * Set by a worker that reports "ready" in logagg.status() itself, once it
 * can serve (the ingest worker: when it listens), instead of as soon as
 * it found the extension.
 */
bool		logagg_ready_deferred = false;

/*
 * Set while a user-written regex runs (regex_limit.c): SIGTERM acts at once.
 * Cleared again when the regex returns.
 */
volatile sig_atomic_t logagg_sigterm_interrupts = false;

/* How often a worker re-checks for the extension while it is absent. */
#define EXTENSION_POLL_MS 2000

/* When the extension was last found installed; 0 = not yet. */
static TimestampTz last_extension_check = 0;

/*
 * SIGTERM: PostgreSQL's SignalHandlerForShutdownRequest() sets
 * ShutdownRequestPending and the latch, and each worker's loop stops
 * between two units of work.  A user-written regex, though, can run for
 * long between two checks of that flag; the regex engine polls
 * CHECK_FOR_INTERRUPTS(), so while one runs we also ask for the exit die()
 * would give.  PostgreSQL's handler alone cannot do that, hence this
 * wrapper.
 */
static void
logagg_sigterm(SIGNAL_ARGS)
{
	if (logagg_sigterm_interrupts)
	{
		ProcDiePending = true;
		InterruptPending = true;
	}
	SignalHandlerForShutdownRequest(postgres_signal_arg);
}

/*
 * Common start-up: signals, database connection, shared-memory slot.
 *
 * SIGTERM only sets ShutdownRequestPending: each worker's loop checks it
 * between units of work so that a batch in progress is either committed or
 * not started, never abandoned half-way inside a library callback --
 * except while a user-written regex runs, where it terminates the process
 * at once.  SIGHUP sets ConfigReloadPending, which
 * logagg_worker_process_interrupts() acts on.
 */
void
logagg_worker_setup(LogaggWorkerKind kind, int index)
{
	pqsignal(SIGHUP, SignalHandlerForConfigReload);
	pqsignal(SIGTERM, logagg_sigterm);
	BackgroundWorkerUnblockSignals();

	logagg_slot_attach(kind, index);

	BackgroundWorkerInitializeConnection(logagg_database, NULL, 0);

	/*
	 * Every name in the workers' SQL is schema-qualified or built in.  With
	 * only pg_catalog on the path, a function or operator that somebody
	 * created in public (or in a schema named like a role) can never be
	 * picked instead of a built-in one for a closer argument type, and run
	 * inside a worker.  Set above anything SQL can set.
	 */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
}

/* Re-read the configuration files after SIGHUP. */
void
logagg_worker_reload_if_needed(void)
{
	if (ConfigReloadPending)
	{
		ConfigReloadPending = false;
		ProcessConfigFile(PGC_SIGHUP);
		logagg_count(LC_RELOADS, 1);
	}
}

/*
 * What every worker does after each wake-up, like PostgreSQL's
 * HandleMainLoopInterrupts() -- except that SIGTERM does not exit here:
 * the caller's loop tests ShutdownRequestPending and stops between units
 * of work (the ingest worker still stores what it has received).
 */
void
logagg_worker_process_interrupts(void)
{
	CHECK_FOR_INTERRUPTS();
	logagg_worker_reload_if_needed();
}

/*
 * The WaitEventSetWait() timeout, in milliseconds, that wakes the caller at
 * 'deadline': 0 if it has passed, rounded up so that on waking it has
 * passed (no spinning on a sub-millisecond remainder), -1 (wait without a
 * timeout) for DT_NOEND.  Each worker takes the earliest of its deadlines
 * -- including logagg_worker_next_check() -- and converts it here once.
 */
long
logagg_timeout_until(TimestampTz deadline)
{
	if (deadline == DT_NOEND)
		return -1;
	return TimestampDifferenceMilliseconds(GetCurrentTimestamp(), deadline);
}

/*
 * Is the extension installed in this database?  Must be called inside a
 * transaction.
 */
static bool
extension_exists(void)
{
	return OidIsValid(get_extension_oid("logagg", true));
}

/* Set once this process runs as logagg_owner. */
static bool running_as_owner = false;

/*
 * Does logagg_owner own logagg.logs?  True from version 1.1 on; a database
 * still at 1.0 (its objects owned by the superuser that installed it)
 * keeps the workers running as superuser until ALTER EXTENSION UPDATE.
 * Needs a transaction.
 */
static bool
owner_role_in_charge(void)
{
	Oid			owner = get_role_oid(LOGAGG_OWNER_ROLE, true);
	Oid			nsp = get_namespace_oid(LOGAGG_SCHEMA, true);
	Oid			logs;
	HeapTuple	tup;
	bool		result;

	if (!OidIsValid(owner) || !OidIsValid(nsp))
		return false;
	logs = get_relname_relid("logs", nsp);
	if (!OidIsValid(logs))
		return false;
	tup = SearchSysCache1(RELOID, ObjectIdGetDatum(logs));
	if (!HeapTupleIsValid(tup))
		return false;
	result = ((Form_pg_class) GETSTRUCT(tup))->relowner == owner;
	ReleaseSysCache(tup);
	return result;
}

/*
 * Become logagg_owner for the rest of the process's life.
 *
 * Everything a worker does after this runs with the rights of the role that
 * owns the extension's objects and nothing more: a trigger or function that
 * somebody managed to attach to a table the worker writes runs as that
 * non-superuser role, never as a superuser.  PostgreSQL 15 lets a
 * background worker connect only as a role with LOGIN, and logagg_owner has
 * none (nobody should log in as it), so the worker connects as the
 * bootstrap superuser -- used only to wait for the extension -- and then
 * takes on logagg_owner the way SET SESSION AUTHORIZATION does.  It then
 * marks the user id as locally changed, as a SECURITY DEFINER function call
 * does: PostgreSQL refuses SET SESSION AUTHORIZATION and SET ROLE there, so
 * no statement run later in this process can switch back to the superuser
 * it connected as.  pg_stat_activity shows the new role.  Needs a
 * transaction (the role is looked up in the catalogs); every later
 * transaction starts, and after an abort resumes, with this identity.
 */
static void
become_owner_role(void)
{
	static bool warned = false;

	if (running_as_owner)
		return;
	if (!owner_role_in_charge())
	{
		if (!warned)
			ereport(WARNING,
					(errmsg("%s: running as superuser: the objects of extension \"logagg\" are not owned by role \"%s\"",
							MyBgworkerEntry->bgw_name, LOGAGG_OWNER_ROLE),
					 errhint("Run ALTER EXTENSION logagg UPDATE; in database \"%s\".",
							 logagg_database)));
		warned = true;
		return;
	}
	SetConfigOption("session_authorization", LOGAGG_OWNER_ROLE,
					PGC_SUSET, PGC_S_OVERRIDE);
	SetUserIdAndSecContext(GetSessionUserId(), SECURITY_LOCAL_USERID_CHANGE);
	running_as_owner = true;
	if (MyBEEntry != NULL)
	{
		volatile PgBackendStatus *beentry = MyBEEntry;

		PGSTAT_BEGIN_WRITE_ACTIVITY(beentry);
		beentry->st_userid = GetSessionUserId();
		PGSTAT_END_WRITE_ACTIVITY(beentry);
	}
	if (superuser())
		ereport(WARNING,
				(errmsg("%s: role \"%s\" is a superuser",
						MyBgworkerEntry->bgw_name, LOGAGG_OWNER_ROLE),
				 errhint("Run ALTER ROLE %s NOSUPERUSER;", LOGAGG_OWNER_ROLE)));
}

/*
 * Does the extension exist?  When it does, the worker also becomes
 * logagg_owner if it is not yet (right after CREATE EXTENSION, or after
 * ALTER EXTENSION UPDATE from 1.0 in a running server).
 */
static bool
check_extension_in_transaction(void)
{
	bool		exists;

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	PushActiveSnapshot(GetTransactionSnapshot());
	exists = extension_exists();
	if (exists)
		become_owner_role();
	PopActiveSnapshot();
	CommitTransactionCommand();
	return exists;
}

/*
 * For a process that has no slot and no loop of its own (the reader's
 * query workers): in a short transaction, check that the extension exists
 * and become logagg_owner.
 */
bool
logagg_worker_become_owner(void)
{
	return check_extension_in_transaction();
}

/*
 * Wait, without filling the log, until the extension exists in our
 * database (and become logagg_owner).  Returns false if SIGTERM arrived
 * first.  One LOG line says
 * what we are waiting for, so an operator who preloaded the library but
 * forgot CREATE EXTENSION can tell why nothing happens.
 */
bool
logagg_wait_for_extension(void)
{
	bool		logged = false;
	LogaggWorkerSlot *slot = logagg_my_slot();

	pgstat_report_activity(STATE_IDLE, "waiting for CREATE EXTENSION logagg");
	for (;;)
	{
		if (ShutdownRequestPending)
			return false;
		logagg_worker_reload_if_needed();

		if (check_extension_in_transaction())
			break;

		if (!logged)
		{
			ereport(LOG,
					(errmsg("%s: waiting for extension \"logagg\" in database \"%s\"",
							MyBgworkerEntry->bgw_name, logagg_database),
					 errhint("Run CREATE EXTENSION logagg; in database \"%s\".",
							 logagg_database)));
			logged = true;
		}
		(void) WaitLatch(MyLatch,
						 WL_LATCH_SET | WL_TIMEOUT | WL_EXIT_ON_PM_DEATH,
						 EXTENSION_POLL_MS, PG_WAIT_EXTENSION);
		ResetLatch(MyLatch);
		CHECK_FOR_INTERRUPTS();
	}
	if (logged)
		ereport(LOG,
				(errmsg("%s: extension \"logagg\" found, starting",
						MyBgworkerEntry->bgw_name)));
	if (slot && !logagg_ready_deferred)
		slot->extension_ready = true;
	/* just confirmed: logagg_worker_periodic_check() can wait a while */
	last_extension_check = GetCurrentTimestamp();
	pgstat_report_activity(STATE_IDLE, "");
	return true;
}

/*
 * Run fn(arg) in its own transaction with SPI connected and a snapshot
 * pushed.  An error is recorded as the worker's last_error (visible in
 * logagg.status() after the restart) and re-thrown: a worker that fails
 * exits and the postmaster starts it again after bgw_restart_time, which
 * leaves no half-done state behind.  Returns false if the extension is
 * no longer installed (fn is not called then).
 */
bool
logagg_run_in_transaction(void (*fn) (void *arg), void *arg, const char *what)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	bool		exists;

	/*
	 * Still the superuser (a database at 1.0): become logagg_owner as soon
	 * as ALTER EXTENSION UPDATE has handed it the objects.  In a committed
	 * transaction of its own, so that fn's failing cannot undo it.
	 */
	if (!running_as_owner)
		(void) check_extension_in_transaction();

	PG_TRY();
	{
		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		pgstat_report_activity(STATE_RUNNING, what);
		exists = extension_exists();
		if (exists)
		{
			if (SPI_connect() != SPI_OK_CONNECT)
				elog(ERROR, "logagg: SPI_connect failed");
			fn(arg);
			SPI_finish();
		}
		PopActiveSnapshot();
		CommitTransactionCommand();
		pgstat_report_stat(true);
		pgstat_report_activity(STATE_IDLE, "");
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		logagg_set_last_error(edata->message);
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
	return exists;
}

/*
 * Called when a worker finds the extension gone (DROP EXTENSION): exit so
 * the postmaster restarts us, and the new process waits for it again.
 */
void
logagg_exit_extension_dropped(void)
{
	ereport(LOG,
			(errmsg("%s: extension \"logagg\" was dropped in database \"%s\"; restarting to wait for it",
					MyBgworkerEntry->bgw_name, logagg_database)));
	proc_exit(1);
}

/*
 * Like logagg_run_in_transaction(), for the callers that have nothing to
 * do when the extension is gone but exit (to be restarted and wait for it
 * again).
 */
void
logagg_run_or_exit(void (*fn) (void *arg), void *arg, const char *what)
{
	if (!logagg_run_in_transaction(fn, arg, what))
		logagg_exit_extension_dropped();
}

/* How often a running worker confirms the extension still exists. */
#define EXTENSION_RECHECK_MS 3000

/*
 * The one "extension dropped?" check of a running worker.  Cheap to call on
 * every wake-up of its loop: at most every EXTENSION_RECHECK_MS it checks,
 * in a short transaction, that the extension is still installed (and
 * becomes logagg_owner after ALTER EXTENSION UPDATE from 1.0), and exits
 * (to be restarted and wait again) after DROP EXTENSION.  Without it an
 * idle worker would hold on to a dropped extension's state until its next
 * unit of work failed.  Returns true when it checked this time.
 */
bool
logagg_worker_periodic_check(void)
{
	if (GetCurrentTimestamp() < logagg_worker_next_check())
		return false;
	last_extension_check = GetCurrentTimestamp();
	if (!check_extension_in_transaction())
		logagg_exit_extension_dropped();
	return true;
}

/*
 * When logagg_worker_periodic_check() wants to run next: a deadline each
 * worker's wait includes, so that an idle worker wakes up for it.
 */
TimestampTz
logagg_worker_next_check(void)
{
	if (last_extension_check == 0)
		return 0;
	return TimestampTzPlusMilliseconds(last_extension_check, EXTENSION_RECHECK_MS);
}
