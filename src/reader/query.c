/*-------------------------------------------------------------------------
 *
 * query.c
 *		The reader's queries, each run in a dynamic background worker of its
 *		own (query_worker.c) so that neither the reader's event loop (tail
 *		delivery) nor the ingest worker ever waits for one: the request goes
 *		into a DSM segment, the answer comes back through a shm_mq, polled
 *		without waiting from the main loop (the worker's writes and its exit
 *		set the reader's latch: bgw_notify_pid).
 *
 * At most logagg.reader_max_queries run at once; an API request beyond
 * that is answered 503 with Retry-After, a tail's replay waits its turn.
 * A query whose client went away is terminated.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "utils/memutils.h"
#include "utils/resowner.h"

#include "reader/query.h"

struct Query
{
	Query	   *prev;
	Query	   *next;
	ApiKind		kind;
	dsm_segment *seg;
	shm_mq_handle *mqh;
	BackgroundWorkerHandle *handle;
	RConn	   *conn;			/* an API request's connection, or NULL */
	Sub		   *sub;			/* a replay's subscriber, or NULL */
	bool		cancel;			/* nobody waits: terminate the worker */
};

static Query *queries = NULL;
static int	nqueries = 0;

bool
reader_query_slots_free(void)
{
	return nqueries < logagg_reader_max_queries;
}

int
reader_queries_running(void)
{
	return nqueries;
}

/*
 * Start a query in a new background worker.  Returns NULL with *why set
 * when it cannot start.  Outside any transaction: the DSM mapping lives
 * until query_finish detaches it.
 */
Query *
reader_query_launch(ApiKind kind, const ReadFilter *f, const char *sources, const char **why)
{
	MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);
	ResourceOwner oldowner = CurrentResourceOwner;
	BackgroundWorker w;
	QueryRequest *req;
	shm_mq	   *mq;
	Query	   *q;

	if (!reader_query_slots_free())
	{
		*why = "too many queries at once (logagg.reader_max_queries): retry later";
		MemoryContextSwitchTo(old);
		return NULL;
	}
	CurrentResourceOwner = NULL;	/* the mapping is ours until we detach */
	q = palloc0(sizeof(Query));
	q->kind = kind;
	q->seg = dsm_create(QUERY_DSM_BYTES, 0);
	req = dsm_segment_address(q->seg);
	memset(req, 0, sizeof(QueryRequest));
	req->kind = kind;
	req->timeout_ms = logagg_reader_statement_timeout_ms;
	strlcpy(req->sources, sources, sizeof(req->sources));
	req->f = *f;
	mq = shm_mq_create((char *) req + QUERY_MQ_OFFSET, QUERY_MQ_BYTES);
	shm_mq_set_receiver(mq, MyProc);

	memset(&w, 0, sizeof(w));
	w.bgw_flags = BGWORKER_SHMEM_ACCESS | BGWORKER_BACKEND_DATABASE_CONNECTION;
	w.bgw_start_time = BgWorkerStart_RecoveryFinished;
	w.bgw_restart_time = BGW_NEVER_RESTART;
	strlcpy(w.bgw_library_name, "logagg", BGW_MAXLEN);
	strlcpy(w.bgw_function_name, "logagg_reader_query_main", BGW_MAXLEN);
	strlcpy(w.bgw_name, "logagg reader query", BGW_MAXLEN);
	strlcpy(w.bgw_type, "logagg reader query", BGW_MAXLEN);
	w.bgw_main_arg = UInt32GetDatum(dsm_segment_handle(q->seg));
	w.bgw_notify_pid = MyProcPid;
	if (!RegisterDynamicBackgroundWorker(&w, &q->handle))
	{
		dsm_detach(q->seg);
		pfree(q);
		CurrentResourceOwner = oldowner;
		MemoryContextSwitchTo(old);
		*why = "no background worker slot is free (max_worker_processes): retry later";
		return NULL;
	}
	q->mqh = shm_mq_attach(mq, q->seg, q->handle);
	CurrentResourceOwner = oldowner;
	MemoryContextSwitchTo(old);

	q->next = queries;
	if (queries)
		queries->prev = q;
	queries = q;
	nqueries++;
	return q;
}

void
reader_query_set_sub(Query *q, Sub *s)
{
	q->sub = s;
}

/*
 * The client went away (called from a callback: flags only): the main
 * loop terminates the worker, and cleans up when it has exited.
 */
void
reader_query_cancel(Query *q)
{
	q->conn = NULL;
	q->sub = NULL;
	q->cancel = true;
}

static void
query_finish(Query *q)
{
	if (q->prev)
		q->prev->next = q->next;
	else
		queries = q->next;
	if (q->next)
		q->next->prev = q->prev;
	nqueries--;
	shm_mq_detach(q->mqh);
	dsm_detach(q->seg);
	pfree(q->handle);
	pfree(q);
}

/* The answer, to the connection or subscriber that asked (if still there). */
static void
deliver(Query *q, int status, const char *body, size_t len)
{
	if (q->conn && q->conn->wsi)
	{
		q->conn->query = NULL;
		if (status >= 300)
		{
			char	   *msg = pnstrdup(body, len);

			reader_reply_error(q->conn, status, msg);
			pfree(msg);
		}
		else
			reader_reply(q->conn, status, "application/json", body, len);
	}
	else if (q->conn)
		q->conn->query = NULL;
	if (q->sub)
		reader_tail_replay_done(q->sub, status, body, len);
}

/* Collect the answers that are in, without waiting. */
void
reader_queries_poll(void)
{
	for (Query *q = queries, *next; q; q = next)
	{
		Size		nbytes;
		void	   *data;
		shm_mq_result res;

		next = q->next;
		if (q->cancel)
		{
			TerminateBackgroundWorker(q->handle);
			q->cancel = false;
		}
		res = shm_mq_receive(q->mqh, &nbytes, &data, true);
		if (res == SHM_MQ_WOULD_BLOCK)
			continue;
		if (res == SHM_MQ_SUCCESS && nbytes >= 4)
		{
			const char *d = data;
			int			status = (d[0] - '0') * 100 + (d[1] - '0') * 10 + (d[2] - '0');

			deliver(q, status, d + 4, nbytes - 4);
		}
		else
		{
			static const char msg[] = "the query's background worker exited without an answer";

			deliver(q, 500, msg, sizeof(msg) - 1);
		}
		query_finish(q);
	}
}

/* API requests the callbacks marked pending: start their queries. */
void
reader_queries_start_pending(void)
{
	for (RConn *c = reader_conns; c; c = c->next)
	{
		const char *why = NULL;

		if (!c->api_pending || c->wsi == NULL)
			continue;
		c->api_pending = false;
		c->query = reader_query_launch(c->api, c->filter, c->sources, &why);
		if (c->query == NULL)
		{
			c->retry_after = 1;
			reader_reply_error(c, HTTP_STATUS_SERVICE_UNAVAILABLE, why);
			continue;
		}
		c->query->conn = c;
	}
}
