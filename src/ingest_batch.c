/*-------------------------------------------------------------------------
 *
 * ingest_batch.c
 *		Stores an IngestBatch in the current transaction: the records by
 *		COPY into logagg.logs, refused input into logagg.rejected, the
 *		batch's alert groups through logagg._enqueue_alerts(), and each
 *		stream's new resume point into logagg.streams.  Also
 *		logagg.ingest(jsonb), the same path for SQL callers.
 *
 * Everything a batch writes commits or rolls back together, which is
 * what makes the protocol's acks and stream resume points truthful: an
 * ack is sent only after this transaction commits, and the committed
 * last_seq is exactly the records stored.
 *
 * Rows go in through the COPY machinery (CopyFrom with a callback data
 * source) rather than INSERTs: it routes to partitions, multi-inserts and
 * fills defaults the way "COPY logagg.logs FROM STDIN" would.  Row ids
 * are drawn from logagg.logs_id_seq here so that alert groups can name a
 * sample log_id.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/table.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "commands/copy.h"
#include "commands/sequence.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "ingest.h"

/* One (fingerprint) group of alert-worthy records in a batch. */
typedef struct AlertGroup
{
	char		fingerprint[LOGAGG_FINGERPRINT_LEN + 1];	/* hash key */
	LogaggSeverity severity;
	const IngestRecord *sample;
	int64		sample_id;
	int64		count;
	TimestampTz first_seen;
	TimestampTz last_seen;
} AlertGroup;

/* The COPY data source: one buffer, handed out in pieces. */
static const char *copy_data;
static int	copy_len;
static int	copy_pos;

static int
copy_read_cb(void *outbuf, int minread, int maxread)
{
	int			n = Min(maxread, copy_len - copy_pos);

	memcpy(outbuf, copy_data + copy_pos, n);
	copy_pos += n;
	return n;
}

/* A value in COPY text format: \N for NULL, backslash escapes otherwise. */
static void
copy_text(StringInfo buf, const char *s)
{
	if (s == NULL)
	{
		appendStringInfoString(buf, "\\N");
		return;
	}
	for (; *s; s++)
	{
		switch (*s)
		{
			case '\\':
				appendBinaryStringInfo(buf, "\\\\", 2);
				break;
			case '\n':
				appendBinaryStringInfo(buf, "\\n", 2);
				break;
			case '\r':
				appendBinaryStringInfo(buf, "\\r", 2);
				break;
			case '\t':
				appendBinaryStringInfo(buf, "\\t", 2);
				break;
			default:
				appendStringInfoCharMacro(buf, *s);
		}
	}
}

/* ISO 8601 in UTC, independent of DateStyle and TimeZone. */
static void
append_timestamp(StringInfo buf, TimestampTz ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		elog(ERROR, "logagg: timestamp out of range");
	appendStringInfo(buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ",
					 tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

static Oid
logagg_relid(const char *name)
{
	Oid			nsp = get_namespace_oid(LOGAGG_SCHEMA, false);
	Oid			relid = get_relname_relid(name, nsp);

	if (!OidIsValid(relid))
		elog(ERROR, "logagg: relation logagg.%s is missing", name);
	return relid;
}

/*
 * The least urgent severity any enabled route wants, or -1 when no route
 * would take an alert: records below it need no fingerprint at all.
 */
static int
alert_threshold(void)
{
	int			ret;
	bool		isnull;
	char	   *name;

	ret = SPI_execute("SELECT max(r.min_severity)::text FROM logagg.routes r "
					  "JOIN logagg.destinations d ON d.name = r.destination AND d.enabled "
					  "WHERE r.enabled", true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "logagg: reading logagg.routes failed: %s", SPI_result_code_string(ret));
	(void) SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	if (isnull)
		return -1;
	name = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1);
	for (int i = 0; i < 3; i++)
		if (strcmp(name, logagg_severity_names[i]) == 0)
			return i;
	return -1;
}

/* COPY the text in buf into logagg.logs; returns rows copied. */
static uint64
copy_into_logs(StringInfo buf)
{
	static const char *const columns[] = {
		"id", "ts", "received_at", "source", "level", "severity", "status",
		"message", "trace_id", "span_id", "stream", "seq", "attrs"
	};
	Relation	rel;
	ParseState *pstate;
	CopyFromState cstate;
	List	   *attnames = NIL;
	uint64		processed;

	for (int i = 0; i < lengthof(columns); i++)
		attnames = lappend(attnames, makeString(pstrdup(columns[i])));

	rel = table_open(logagg_relid("logs"), RowExclusiveLock);
	pstate = make_parsestate(NULL);
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);

	copy_data = buf->data;
	copy_len = buf->len;
	copy_pos = 0;
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_read_cb, attnames, NIL);
	processed = CopyFrom(cstate);
	EndCopyFrom(cstate);
	copy_data = NULL;

	free_parsestate(pstate);
	table_close(rel, NoLock);
	return processed;
}

static uint64
enqueue_alerts(HTAB *groups)
{
	HASH_SEQ_STATUS hs;
	AlertGroup *g;
	StringInfoData js;
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	int			ret;
	bool		isnull;
	Datum		d;

	initStringInfo(&js);
	appendStringInfoChar(&js, '[');
	hash_seq_init(&hs, groups);
	while ((g = hash_seq_search(&hs)) != NULL)
	{
		const IngestRecord *r = g->sample;

		if (js.len > 1)
			appendStringInfoChar(&js, ',');
		appendStringInfo(&js, "{\"severity\":\"%s\",\"source\":", logagg_severity_names[g->severity]);
		escape_json(&js, r->source);
		appendStringInfo(&js, ",\"fingerprint\":\"%s\",\"status\":", g->fingerprint);
		if (r->has_status)
			appendStringInfo(&js, "%d", r->status);
		else
			appendStringInfoString(&js, "null");
		appendStringInfoString(&js, ",\"level\":");
		if (r->level)
			escape_json(&js, r->level);
		else
			appendStringInfoString(&js, "null");
		appendStringInfoString(&js, ",\"message\":");
		if (r->message)
			escape_json(&js, r->message);
		else
			appendStringInfoString(&js, "null");
		appendStringInfo(&js, ",\"log_id\":" INT64_FORMAT ",\"count\":" INT64_FORMAT
						 ",\"first_seen\":\"", g->sample_id, g->count);
		append_timestamp(&js, g->first_seen);
		appendStringInfoString(&js, "\",\"last_seen\":\"");
		append_timestamp(&js, g->last_seen);
		appendStringInfoString(&js, "\"}");
	}
	appendStringInfoChar(&js, ']');

	values[0] = CStringGetTextDatum(js.data);
	ret = SPI_execute_with_args("SELECT logagg._enqueue_alerts($1::jsonb)",
								1, argtypes, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "logagg: logagg._enqueue_alerts failed: %s", SPI_result_code_string(ret));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : (uint64) DatumGetInt32(d);
}

static void
store_rejects(IngestBatch *batch)
{
	Oid			argtypes[5] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID};
	SPIPlanPtr	plan;

	plan = SPI_prepare("INSERT INTO logagg.rejected (received_at, peer, source, reason, raw) "
					   "VALUES ($1, $2, $3, $4, $5)", 5, argtypes);
	if (plan == NULL)
		elog(ERROR, "logagg: preparing insert into logagg.rejected failed: %s",
			 SPI_result_code_string(SPI_result));
	for (int i = 0; i < batch->nrejects; i++)
	{
		IngestReject *r = &batch->rejects[i];
		Datum		values[5];
		char		nulls[5] = "     ";
		int			ret;

		values[0] = TimestampTzGetDatum(r->received_at);
		values[1] = r->peer ? CStringGetTextDatum(r->peer) : (nulls[1] = 'n', (Datum) 0);
		values[2] = r->source ? CStringGetTextDatum(r->source) : (nulls[2] = 'n', (Datum) 0);
		values[3] = CStringGetTextDatum(r->reason);
		values[4] = CStringGetTextDatum(r->raw);
		ret = SPI_execute_plan(plan, values, nulls, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "logagg: insert into logagg.rejected failed: %s", SPI_result_code_string(ret));
	}
	SPI_freeplan(plan);
}

static void
store_streams(IngestBatch *batch)
{
	Oid			argtypes[3] = {TEXTOID, TEXTOID, INT8OID};

	for (int i = 0; i < batch->nstreams; i++)
	{
		IngestStreamUpdate *u = &batch->streams[i];
		Datum		values[3];
		char		nulls[3] = "   ";
		int			ret;

		values[0] = CStringGetTextDatum(u->stream);
		values[1] = u->source ? CStringGetTextDatum(u->source) : (nulls[1] = 'n', (Datum) 0);
		values[2] = Int64GetDatum(u->last_seq);
		ret = SPI_execute_with_args("INSERT INTO logagg.streams AS s (stream_id, source, last_seq, updated_at) "
									"VALUES ($1, $2, $3, now()) "
									"ON CONFLICT (stream_id) DO UPDATE SET "
									"last_seq = greatest(s.last_seq, excluded.last_seq), "
									"source = coalesce(excluded.source, s.source), updated_at = now()",
									3, argtypes, values, nulls, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "logagg: updating logagg.streams failed: %s", SPI_result_code_string(ret));
	}
}

/*
 * Store the batch.  Needs a transaction with SPI connected and a snapshot;
 * errors propagate (the caller's transaction then rolls back whole).
 */
void
ingest_batch_store(IngestBatch *batch, IngestResult *result)
{
	memset(result, 0, sizeof(*result));

	if (batch->nrecords > 0)
	{
		Oid			seqid = logagg_relid("logs_id_seq");
		int			threshold = alert_threshold();
		HTAB	   *groups = NULL;
		StringInfoData buf;

		if (threshold >= 0)
		{
			HASHCTL		ctl;

			ctl.keysize = LOGAGG_FINGERPRINT_LEN + 1;
			ctl.entrysize = sizeof(AlertGroup);
			ctl.hcxt = CurrentMemoryContext;
			groups = hash_create("logagg alert groups", 64, &ctl,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		}

		initStringInfo(&buf);
		for (int i = 0; i < batch->nrecords; i++)
		{
			IngestRecord *r = &batch->records[i];
			LogaggSeverity sev = logagg_classify_record(r->status, r->has_status, r->level,
														r->source, r->message);
			int64		id = nextval_internal(seqid, false);

			appendStringInfo(&buf, INT64_FORMAT "\t", id);
			append_timestamp(&buf, r->ts);
			appendStringInfoChar(&buf, '\t');
			append_timestamp(&buf, r->received_at);
			appendStringInfoChar(&buf, '\t');
			copy_text(&buf, r->source);
			appendStringInfoChar(&buf, '\t');
			copy_text(&buf, r->level);
			appendStringInfo(&buf, "\t%s\t", logagg_severity_names[sev]);
			if (r->has_status)
				appendStringInfo(&buf, "%d", r->status);
			else
				appendStringInfoString(&buf, "\\N");
			appendStringInfoChar(&buf, '\t');
			copy_text(&buf, r->message);
			appendStringInfoChar(&buf, '\t');
			copy_text(&buf, r->trace_id);
			appendStringInfoChar(&buf, '\t');
			copy_text(&buf, r->span_id);
			appendStringInfoChar(&buf, '\t');
			copy_text(&buf, r->stream);
			appendStringInfoChar(&buf, '\t');
			if (r->has_seq)
				appendStringInfo(&buf, INT64_FORMAT, r->seq);
			else
				appendStringInfoString(&buf, "\\N");
			appendStringInfoChar(&buf, '\t');
			copy_text(&buf, r->attrs);
			appendStringInfoChar(&buf, '\n');

			if (groups && (int) sev <= threshold)
			{
				char		fp[LOGAGG_FINGERPRINT_LEN + 1];
				AlertGroup *g;
				bool		found;

				logagg_fingerprint(r->source, sev, r->status, r->has_status, r->message, fp);
				g = hash_search(groups, fp, HASH_ENTER, &found);
				if (!found)
				{
					g->severity = sev;
					g->sample = r;
					g->sample_id = id;
					g->count = 0;
					g->first_seen = g->last_seen = r->ts;
				}
				g->count++;
				g->first_seen = Min(g->first_seen, r->ts);
				g->last_seen = Max(g->last_seen, r->ts);
			}
		}
		result->rows = copy_into_logs(&buf);
		pfree(buf.data);

		if (groups && hash_get_num_entries(groups) > 0)
			result->alerts_queued = enqueue_alerts(groups);
	}
	if (batch->nrejects > 0)
	{
		store_rejects(batch);
		result->rejects = batch->nrejects;
	}
	store_streams(batch);
}

/*
 * Committed last_seq of a stream (0 if new), and the source it was
 * written under (*source, NULL if none).  Needs a transaction with SPI
 * connected.
 */
int64
ingest_stream_last_seq(const char *stream, char **source)
{
	Oid			argtypes[1] = {TEXTOID};
	Datum		values[1];
	int			ret;
	bool		isnull;
	Datum		d;

	values[0] = CStringGetTextDatum(stream);
	*source = NULL;
	ret = SPI_execute_with_args("SELECT last_seq, source FROM logagg.streams WHERE stream_id = $1",
								1, argtypes, values, NULL, true, 1);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: reading logagg.streams failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		return 0;
	*source = SPI_getvalue(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 2);
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : DatumGetInt64(d);
}

/* ---------------------------------------------------------------------
 * logagg.ingest(records jsonb)
 * ---------------------------------------------------------------------
 */
static bool wake_dispatch_at_commit = false;
static bool xact_callback_registered = false;

/* Dispatchers can only see the queued alerts once we commit: wake them then. */
static void
ingest_xact_callback(XactEvent event, void *arg)
{
	if (event == XACT_EVENT_COMMIT && wake_dispatch_at_commit)
		logagg_wake_workers(LOGAGG_WORKER_DISPATCH);
	if (event == XACT_EVENT_COMMIT || event == XACT_EVENT_ABORT)
		wake_dispatch_at_commit = false;
}

PG_FUNCTION_INFO_V1(logagg_ingest_sql);
Datum
logagg_ingest_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *j = PG_GETARG_JSONB_P(0);
	char	   *text = JsonbToCString(NULL, &j->root, VARSIZE(j));
	IngestBatch *batch = ingest_batch_create(CurrentMemoryContext);
	IngestOrigin origin;
	IngestResult res;

	memset(&origin, 0, sizeof(origin));
	origin.peer = "sql";
	origin.received_at = GetCurrentTimestamp();
	ingest_parse_message(batch, &origin, text, strlen(text));

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "logagg: SPI_connect failed");
	ingest_batch_store(batch, &res);
	SPI_finish();

	if (res.alerts_queued > 0)
	{
		if (!xact_callback_registered)
		{
			RegisterXactCallback(ingest_xact_callback, NULL);
			xact_callback_registered = true;
		}
		wake_dispatch_at_commit = true;
	}
	MemoryContextDelete(batch->cxt);
	pfree(batch);
	PG_RETURN_INT64((int64) res.rows);
}
