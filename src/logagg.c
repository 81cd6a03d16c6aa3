/*-------------------------------------------------------------------------
 *
 * logagg.c
 *		Library entry point: defines the logagg.* parameters and, when the
 *		library is in shared_preload_libraries, reserves shared memory and
 *		registers the background workers (ingest, dispatch 1..N,
 *		maintenance, reader).
 *
 * Loaded without preloading (e.g. only CREATE EXTENSION), the SQL functions
 * still work -- logagg.classify(), logagg.ingest(), the SQL API -- but no
 * worker runs and logagg.status() says why.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "postmaster/bgworker.h"

#include "logagg.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Seconds before a worker that exited with an error is started again. */
#define LOGAGG_RESTART_SECS 2

static void
register_worker(const char *name, const char *type, const char *function, int index)
{
	BackgroundWorker worker;

	memset(&worker, 0, sizeof(worker));
	worker.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	worker.bgw_start_time = BgWorkerStart_RecoveryFinished;
	worker.bgw_restart_time = LOGAGG_RESTART_SECS;
	strlcpy(worker.bgw_library_name, "logagg", BGW_MAXLEN);
	strlcpy(worker.bgw_function_name, function, BGW_MAXLEN);
	strlcpy(worker.bgw_name, name, BGW_MAXLEN);
	strlcpy(worker.bgw_type, type, BGW_MAXLEN);
	worker.bgw_main_arg = Int32GetDatum(index);
	worker.bgw_notify_pid = 0;
	RegisterBackgroundWorker(&worker);
}

void
_PG_init(void)
{
	logagg_define_gucs();

	if (!process_shared_preload_libraries_in_progress)
	{
		/*
		 * Loaded by a session (CREATE EXTENSION, or Citus creating it on a
		 * node): the SQL side works, but no background worker can be
		 * registered now.  Say so once per session rather than fail.
		 */
		ereport(NOTICE,
				(errmsg("logagg is not in shared_preload_libraries: its ingest, dispatch and maintenance workers do not run on this server"),
				 errhint("Tables, queries, configuration and logagg.ingest() work without it; add logagg to shared_preload_libraries and restart the server to receive logs over the network, send alerts and run partition, sync and retention maintenance.")));
		return;
	}

	logagg_shmem_init_hooks();
	logagg_install_log_redaction();

	/*
	 * backend_type in pg_stat_activity comes from bgw_type; give every
	 * worker its own so "logagg dispatch 2" is distinguishable there.
	 */
	register_worker("logagg ingest", "logagg ingest", "logagg_ingest_main", 0);
	for (int i = 1; i <= logagg_dispatch_workers; i++)
	{
		char		name[BGW_MAXLEN];

		snprintf(name, sizeof(name), "logagg dispatch %d", i);
		register_worker(name, name, "logagg_dispatch_main", i);
	}
	register_worker("logagg maintenance", "logagg maintenance",
					"logagg_maintenance_main", 0);
	if (logagg_reader_port > 0)
		register_worker("logagg reader", "logagg reader", "logagg_reader_main", 0);
}
