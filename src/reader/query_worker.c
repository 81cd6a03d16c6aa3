/*-------------------------------------------------------------------------
 *
 * query_worker.c
 *		The reader's query worker ("logagg reader query"): a dynamic
 *		background worker started for one request (query.c), which runs
 *		its SQL as logagg_owner under logagg.reader_statement_timeout and
 *		sends the answer -- JSON built by PostgreSQL -- back through the
 *		shm_mq of the request's DSM segment, then exits.
 *
 * Every query is limited to the token's source pattern, written into the
 * statement as a condition on the source column (logagg_owner is not
 * subject to row-level security, so this is the restriction).  Values go
 * in as quoted literals, as logagg.search() does, so that each statement
 * is planned for them (the trigram index needs the pattern).  Secrets
 * never leave: destinations by name only, no delivery error texts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "pgstat.h"
#include "postmaster/bgworker.h"
#include "storage/dsm.h"
#include "storage/ipc.h"
#include "storage/proc.h"
#include "storage/shm_mq.h"
#include "tcop/tcopprot.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/resowner.h"
#include "utils/snapmgr.h"
#include "utils/timeout.h"

#include "reader/query.h"

/* A record of logagg.logs l as the JSON object of the protocol. */
#define TS_JSON(col) "pg_catalog.to_char(" col " AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
#define RECORD_JSON \
	"pg_catalog.json_build_object('id', l.id, 'ts', " TS_JSON("l.ts") ", " \
	"'received_at', " TS_JSON("l.received_at") ", 'source', l.source, " \
	"'severity', l.severity, 'level', l.level, 'status', l.status, " \
	"'message', l.message, 'trace_id', l.trace_id, 'span_id', l.span_id, " \
	"'attrs', l.attrs)"

/* " AND COL matches PATTERN" (source globs); nothing for '*'. */
static void
source_cond(StringInfo sql, const char *col, const char *pattern)
{
	if (pattern[0] == '\0' || strcmp(pattern, "*") == 0)
		return;
	appendStringInfo(sql,
					 " AND %s LIKE ANY (ARRAY(SELECT logagg._glob_like(g) "
					 "FROM pg_catalog.unnest(logagg._source_globs(%s)) g))",
					 col, quote_literal_cstr(pattern));
}

/* The filters a tail and a search share (severity, attrs, source). */
static void
common_conds(StringInfo sql, const QueryRequest *req)
{
	source_cond(sql, "l.source", req->sources);
	source_cond(sql, "l.source", req->f.source);
	if (req->f.min_severity >= 0)
		appendStringInfo(sql, " AND l.severity <= %s::logagg.severity",
						 quote_literal_cstr(logagg_severity_names[req->f.min_severity]));
	if (req->f.attrs[0])
		appendStringInfo(sql, " AND l.attrs @> %s::jsonb", quote_literal_cstr(req->f.attrs));
}

/* q as logagg.search() reads it: /REGEX/, else a case-insensitive substring. */
static void
search_q_cond(StringInfo sql, const char *q)
{
	size_t		len = strlen(q);
	StringInfoData like;

	if (len == 0)
		return;
	if (len >= 2 && q[0] == '/' && q[len - 1] == '/')
	{
		appendStringInfo(sql, " AND l.message ~ %s", quote_literal_cstr(pnstrdup(q + 1, len - 2)));
		return;
	}
	initStringInfo(&like);
	appendStringInfoChar(&like, '%');
	for (const char *p = q; *p; p++)
	{
		if (*p == '\\' || *p == '%' || *p == '_')
			appendStringInfoChar(&like, '\\');
		appendStringInfoChar(&like, *p);
	}
	appendStringInfoChar(&like, '%');
	appendStringInfo(sql, " AND l.message ILIKE %s", quote_literal_cstr(like.data));
}

static char *
search_sql(const QueryRequest *req)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql,
						   "SELECT '{\"records\": ' || coalesce(pg_catalog.json_agg(r.j ORDER BY r.ts DESC, r.id DESC)::text, '[]') || '}' "
						   "FROM (SELECT l.ts, l.id, " RECORD_JSON " AS j FROM logagg.logs l WHERE true");
	appendStringInfo(&sql, " AND l.ts >= %s",
					 req->f.since[0] ? psprintf("%s::timestamptz", quote_literal_cstr(req->f.since)) :
					 "pg_catalog.now() - interval '1 hour'");
	appendStringInfo(&sql, " AND l.ts < %s",
					 req->f.until[0] ? psprintf("%s::timestamptz", quote_literal_cstr(req->f.until)) :
					 "pg_catalog.now()");
	search_q_cond(&sql, req->f.q);
	common_conds(&sql, req);
	appendStringInfo(&sql, " ORDER BY l.ts DESC, l.id DESC LIMIT %d) r", req->f.limit);
	return sql.data;
}

/*
 * A tail's since=N: the last N matching records (in id order, which is the
 * order the ingest worker committed them), oldest first, as lines
 * "ID<TAB>RECORD".  q is a regex, as in the live tail.
 */
static char *
replay_sql(const QueryRequest *req)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql,
						   "SELECT coalesce(pg_catalog.string_agg(r.id::text || E'\\t' || r.j::text, E'\\n' ORDER BY r.id), '') "
						   "FROM (SELECT l.id, " RECORD_JSON " AS j FROM logagg.logs l WHERE true");
	if (req->f.q[0])
		appendStringInfo(&sql, " AND l.message ~ %s", quote_literal_cstr(req->f.q));
	common_conds(&sql, req);
	appendStringInfo(&sql, " ORDER BY l.id DESC LIMIT %d) r", req->f.since_n);
	return sql.data;
}

/* Records per severity over the last hour (1-minute buckets) or day (1 h). */
static char *
histogram_sql(const QueryRequest *req)
{
	bool		day = strcmp(req->f.range, "1d") == 0;
	int			secs = day ? 3600 : 60;
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfo(&sql,
					 "WITH b AS (SELECT t FROM pg_catalog.generate_series("
					 "pg_catalog.date_bin(interval '%d s', pg_catalog.now() - interval '%s', timestamptz 'epoch'), "
					 "pg_catalog.now(), interval '%d s') t), "
					 "c AS (SELECT pg_catalog.date_bin(interval '%d s', l.ts, timestamptz 'epoch') AS t, "
					 "pg_catalog.count(*) FILTER (WHERE l.severity = 'critical') AS critical, "
					 "pg_catalog.count(*) FILTER (WHERE l.severity = 'high') AS high, "
					 "pg_catalog.count(*) FILTER (WHERE l.severity = 'low') AS low "
					 "FROM logagg.logs l WHERE l.ts >= (SELECT pg_catalog.min(t) FROM b) AND l.ts <= pg_catalog.now()",
					 secs, day ? "1 day" : "1 hour", secs, secs);
	source_cond(&sql, "l.source", req->sources);
	appendStringInfo(&sql,
					 " GROUP BY 1) "
					 "SELECT pg_catalog.json_build_object('range', %s, 'bucket_seconds', %d, 'buckets', "
					 "coalesce(pg_catalog.json_agg(pg_catalog.json_build_object('t', "
					 "pg_catalog.to_char(b.t AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
					 "'critical', coalesce(c.critical, 0), 'high', coalesce(c.high, 0), 'low', coalesce(c.low, 0)) "
					 "ORDER BY b.t), '[]'))::text FROM b LEFT JOIN c ON c.t = b.t",
					 day ? "'1d'" : "'1h'", secs);
	return sql.data;
}

/*
 * Firing (and pending) rule alerts, the delivery queue per destination and
 * priority, the latest deliveries.  A token limited to some sources sees
 * only rows whose source (an alert's "source" label) it may read.
 */
static char *
alerts_sql(const QueryRequest *req)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql,
						   "SELECT pg_catalog.json_build_object("
						   "'firing', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object("
						   "'rule', r.name, 'labels', a.labels, 'state', a.state, "
						   "'since', " TS_JSON("a.since") ", 'value', a.value) ORDER BY a.since DESC), '[]') "
						   "FROM logagg.alerts a JOIN logagg.alert_rules r ON r.id = a.rule_id "
						   "WHERE a.state IN ('firing', 'pending')");
	source_cond(&sql, "(a.labels OPERATOR(pg_catalog.->>) 'source')", req->sources);
	appendStringInfoString(&sql,
						   "), 'queue', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object("
						   "'destination', x.destination, 'priority', x.severity, 'depth', x.depth) "
						   "ORDER BY x.destination, x.severity), '[]') FROM (SELECT q.destination, q.severity, "
						   "pg_catalog.count(*) AS depth FROM logagg.alert_queue q WHERE q.dead_at IS NULL");
	source_cond(&sql, "q.source", req->sources);
	appendStringInfoString(&sql,
						   " GROUP BY 1, 2) x), 'history', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object("
						   "'sent_at', " TS_JSON("h.at") ", 'destination', h.destination, 'status', h.outcome, "
						   "'summary', pg_catalog.concat_ws(' ', h.severity::text, coalesce(h.source, '-'), "
						   "'x' || h.count::text, 'HTTP ' || h.http_status::text)) ORDER BY h.at DESC), '[]') "
						   "FROM (SELECT * FROM logagg.alert_log h WHERE true");
	source_cond(&sql, "h.source", req->sources);
	appendStringInfoString(&sql, " ORDER BY h.at DESC LIMIT 50) h))::text");
	return sql.data;
}

/* The workers (logagg.status()) and the latest sync windows. */
static char *
status_sql(const QueryRequest *req)
{
	StringInfoData sql;

	initStringInfo(&sql);
	appendStringInfoString(&sql,
						   "SELECT pg_catalog.json_build_object("
						   "'workers', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object("
						   "'name', s.worker, 'pid', s.pid, "
						   "'state', CASE WHEN s.pid IS NULL THEN 'stopped' WHEN s.ready THEN 'ready' ELSE 'starting' END, "
						   "'last_error', s.last_error) ORDER BY s.worker), '[]') FROM logagg.status() s), "
						   "'sync', (SELECT coalesce(pg_catalog.json_agg(pg_catalog.json_build_object("
						   "'window', " TS_JSON("y.window_start") ", 'source', y.source, 'state', y.status, "
						   "'uploaded_at', CASE WHEN y.status = 'uploaded' THEN " TS_JSON("y.finished_at") " END) "
						   "ORDER BY y.finished_at DESC), '[]') FROM (SELECT * FROM logagg.sync_log y WHERE true");
	source_cond(&sql, "y.source", req->sources);
	appendStringInfoString(&sql, " ORDER BY y.finished_at DESC LIMIT 50) y))::text");
	return sql.data;
}

static char *
request_sql(const QueryRequest *req)
{
	switch (req->kind)
	{
		case API_SEARCH:
			return search_sql(req);
		case API_REPLAY:
			return replay_sql(req);
		case API_HISTOGRAM:
			return histogram_sql(req);
		case API_ALERTS:
			return alerts_sql(req);
		case API_STATUS:
			return status_sql(req);
		default:
			elog(ERROR, "logagg reader query: unknown request kind %d", (int) req->kind);
	}
	return NULL;
}

/* The HTTP status of a failed query, and its message for the client. */
static int
error_status(ErrorData *e, const QueryRequest *req, StringInfo msg)
{
	if (e->sqlerrcode == ERRCODE_QUERY_CANCELED)
	{
		appendStringInfo(msg,
						 "the query ran longer than logagg.reader_statement_timeout (%d ms) and was cancelled: narrow it (a shorter time range, a source, a simpler q)",
						 req->timeout_ms);
		return 504;
	}
	appendStringInfoString(msg, e->message);
	switch (ERRCODE_TO_CATEGORY(e->sqlerrcode))
	{
		case ERRCODE_DATA_EXCEPTION:	/* bad timestamp, regex, JSON */
		case ERRCODE_SYNTAX_ERROR_OR_ACCESS_RULE_VIOLATION:
			return 400;
		default:
			return 500;
	}
}

/* Run the request's statement: the answer's status and body into out. */
static void
run_request(const QueryRequest *req, StringInfo out)
{
	MemoryContext cxt = CurrentMemoryContext;
	ResourceOwner owner = CurrentResourceOwner;

	PG_TRY();
	{
		char	   *sql;
		bool		isnull;
		Datum		d;

		SetCurrentStatementStartTimestamp();
		StartTransactionCommand();
		PushActiveSnapshot(GetTransactionSnapshot());
		sql = request_sql(req);
		pgstat_report_activity(STATE_RUNNING, sql);
		if (SPI_connect() != SPI_OK_CONNECT)
			elog(ERROR, "logagg reader query: SPI_connect failed");
		enable_timeout_after(STATEMENT_TIMEOUT, req->timeout_ms);
		if (SPI_execute(sql, true, 1) != SPI_OK_SELECT || SPI_processed != 1)
			elog(ERROR, "logagg reader query: the statement returned no row");
		disable_timeout(STATEMENT_TIMEOUT, false);
		d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
		MemoryContextSwitchTo(cxt);
		appendStringInfoString(out, "200 ");
		if (!isnull)
			appendStringInfoString(out, TextDatumGetCString(d));
		SPI_finish();
		PopActiveSnapshot();
		CommitTransactionCommand();
	}
	PG_CATCH();
	{
		ErrorData  *e;
		StringInfoData msg;
		int			status;

		disable_timeout(STATEMENT_TIMEOUT, false);
		MemoryContextSwitchTo(cxt);
		e = CopyErrorData();
		FlushErrorState();
		AbortCurrentTransaction();
		CurrentResourceOwner = owner;
		MemoryContextSwitchTo(cxt);
		initStringInfo(&msg);
		status = error_status(e, req, &msg);
		resetStringInfo(out);
		appendStringInfo(out, "%03d %s", status, msg.data);
		/* the server log keeps the cause of what was not the client's fault */
		if (status >= 500)
			ereport(LOG,
					(errmsg("logagg reader query: %s", e->message)));
		FreeErrorData(e);
	}
	PG_END_TRY();
	pgstat_report_activity(STATE_IDLE, NULL);
}

void
logagg_reader_query_main(Datum arg)
{
	dsm_segment *seg;
	QueryRequest *req;
	shm_mq	   *mq;
	shm_mq_handle *mqh;
	StringInfoData out;

	pqsignal(SIGTERM, die);
	BackgroundWorkerUnblockSignals();
	CurrentResourceOwner = ResourceOwnerCreate(NULL, "logagg reader query");
	seg = dsm_attach(DatumGetUInt32(arg));
	if (seg == NULL)
		proc_exit(0);			/* the reader gave up on it already */
	req = dsm_segment_address(seg);
	mq = (shm_mq *) ((char *) req + QUERY_MQ_OFFSET);
	shm_mq_set_sender(mq, MyProc);
	mqh = shm_mq_attach(mq, seg, NULL);

	BackgroundWorkerInitializeConnection(logagg_database, NULL, 0);
	/* as every logagg worker: only pg_catalog, and the rights of logagg_owner */
	SetConfigOption("search_path", "pg_catalog, pg_temp", PGC_SUSET, PGC_S_OVERRIDE);
	initStringInfo(&out);
	if (!logagg_worker_become_owner())
		appendStringInfoString(&out, "503 extension logagg is not installed");
	else
		run_request(req, &out);
	(void) shm_mq_send(mqh, out.len, out.data, false, true);
	proc_exit(0);
}
