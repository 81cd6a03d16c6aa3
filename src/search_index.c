/*-------------------------------------------------------------------------
 *
 * search_index.c
 *		Search indexes of existing partitions of logagg.logs, built by the
 *		maintenance worker with CREATE INDEX CONCURRENTLY; and
 *		logagg._wake_maintenance(), with which logagg.maintain() asks for
 *		that to happen now.
 *
 * A new partition gets its trigram (message) and jsonb_path_ops (attrs)
 * indexes in SQL when it is created (schema/60_search.sql), empty, at no
 * cost.  A partition that already holds rows -- the current one, when
 * logagg.index_messages is turned on -- must not be locked against ingest
 * for the minutes a GIN build takes, so it is indexed CONCURRENTLY.  That
 * cannot run inside a transaction block or a function: the worker runs each
 * statement as a top-level command of its own, between its transactions,
 * the way exec_simple_query() would.  A build that fails (or a worker
 * stopped during one) leaves an invalid index; the next cycle finds it in
 * logagg._search_index_todo() and drops it (also CONCURRENTLY) before
 * building it again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/plannodes.h"
#include "pgstat.h"
#include "tcop/dest.h"
#include "tcop/tcopprot.h"
#include "tcop/utility.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "logagg.h"

bool		logagg_index_messages = false;
bool		logagg_index_attrs = false;

/* Indexes built at most per maintenance cycle (the rest waits a minute). */
#define MAX_BUILDS_PER_CYCLE 8

typedef struct TodoList
{
	MemoryContext cxt;
	List	   *statements;		/* of char *, in order */
} TodoList;

/* In a worker transaction with SPI: collect the statements to run. */
static void
collect_todo(void *arg)
{
	TodoList   *todo = (TodoList *) arg;
	int			ret;
	bool		isnull;

	/* a database still at 1.0 has no search indexes to build */
	ret = SPI_execute("SELECT pg_catalog.to_regprocedure('logagg._search_index_todo()') IS NOT NULL", true, 0);
	if (ret != SPI_OK_SELECT || SPI_processed != 1 ||
		!DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
		return;
	ret = SPI_execute("SELECT unnest(statements) FROM logagg._search_index_todo()", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: listing missing search indexes failed: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *sql = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);
		MemoryContext old = MemoryContextSwitchTo(todo->cxt);

		todo->statements = lappend(todo->statements, pstrdup(sql));
		MemoryContextSwitchTo(old);
	}
}

/*
 * Run one utility statement as a top-level command in transactions of its
 * own (CREATE/DROP INDEX CONCURRENTLY commit and start transactions
 * themselves).  An error propagates: the worker records it and restarts.
 */
static void
run_toplevel(const char *sql)
{
	RawStmt    *raw;
	PlannedStmt *pstmt;
	MemoryContext oldcxt = CurrentMemoryContext;
	MemoryContext savedportal = PortalContext;

	/*
	 * The parse tree must outlive the transactions the command commits, as
	 * exec_simple_query()'s MessageContext does; PortalContext too.
	 */
	MemoryContext stmtcxt = AllocSetContextCreate(TopMemoryContext, "logagg utility statement",
												  ALLOCSET_DEFAULT_SIZES);

	SetCurrentStatementStartTimestamp();
	StartTransactionCommand();
	pgstat_report_activity(STATE_RUNNING, sql);
	PushActiveSnapshot(GetTransactionSnapshot());
	PG_TRY();
	{
		MemoryContextSwitchTo(stmtcxt);
		raw = linitial_node(RawStmt, pg_parse_query(sql));
		pstmt = makeNode(PlannedStmt);
		pstmt->commandType = CMD_UTILITY;
		pstmt->canSetTag = true;
		pstmt->utilityStmt = raw->stmt;
		pstmt->stmt_location = raw->stmt_location;
		pstmt->stmt_len = raw->stmt_len;
		PortalContext = stmtcxt;

		/* a build can wait long for old snapshots: let SIGTERM end it */
		logagg_sigterm_interrupts = true;
		ProcessUtility(pstmt, sql, false, PROCESS_UTILITY_TOPLEVEL, NULL, NULL,
					   None_Receiver, NULL);
		logagg_sigterm_interrupts = false;
		PortalContext = savedportal;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		logagg_sigterm_interrupts = false;
		PortalContext = savedportal;
		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		logagg_set_last_error(edata->message);
		FreeErrorData(edata);
		PG_RE_THROW();
	}
	PG_END_TRY();
	/* the concurrent build pops the snapshot it was given */
	if (ActiveSnapshotSet())
		PopActiveSnapshot();
	CommitTransactionCommand();
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(stmtcxt);
	pgstat_report_activity(STATE_IDLE, "");
}

/*
 * Build the search indexes the partitions lack.  Called by the maintenance
 * worker outside any transaction.
 */
void
logagg_build_search_indexes(void)
{
	TodoList	todo;
	ListCell   *lc;
	int			built = 0;

	if (!logagg_index_messages && !logagg_index_attrs)
		return;
	todo.cxt = AllocSetContextCreate(TopMemoryContext, "logagg search indexes",
									 ALLOCSET_SMALL_SIZES);
	todo.statements = NIL;
	logagg_run_or_exit(collect_todo, &todo, "logagg: listing missing search indexes");
	foreach(lc, todo.statements)
	{
		const char *sql = (const char *) lfirst(lc);

		if (ShutdownRequestPending)
			break;
		run_toplevel(sql);
		if (strncmp(sql, "CREATE", 6) == 0)
		{
			ereport(LOG, (errmsg("logagg: built search index: %s", sql)));
			if (++built >= MAX_BUILDS_PER_CYCLE)
				break;
		}
	}
	MemoryContextDelete(todo.cxt);
}

/* logagg._wake_maintenance(): set the maintenance worker's latch. */
PG_FUNCTION_INFO_V1(logagg_wake_maintenance_sql);
Datum
logagg_wake_maintenance_sql(PG_FUNCTION_ARGS)
{
	LogaggWorkerSlot *slot;

	if (logagg_shared == NULL)
		PG_RETURN_BOOL(false);
	slot = logagg_slot_of(LOGAGG_WORKER_MAINTENANCE, 0);
	if (slot == NULL || slot->pid == 0)
		PG_RETURN_BOOL(false);
	logagg_wake_workers(LOGAGG_WORKER_MAINTENANCE);
	PG_RETURN_BOOL(true);
}
