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
 * maintains indexes the way "COPY logagg.logs FROM STDIN" would.  The
 * data is COPY BINARY whose fields are record indexes, and the columns'
 * receive functions are replaced by recv_column, which returns the values
 * straight from the parsed records: no text to format and parse back.
 * That uses CopyFromState's in_functions (commands/copyfrom_internal.h,
 * installed with the server headers; its layout is fixed within a major
 * version).  Row ids
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
#include "commands/copyfrom_internal.h"
#include "commands/sequence.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "nodes/makefuncs.h"
#include "port/pg_bswap.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

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

/*
 * Columns of logagg.logs the batch fills, in the order of the COPY column
 * list.  Each one's value comes from the batch's records (see
 * recv_column), not from text.
 */
typedef enum CopyCol
{
	COL_ID, COL_TS, COL_RECEIVED_AT, COL_SOURCE, COL_LEVEL, COL_SEVERITY,
	COL_STATUS, COL_MESSAGE, COL_TRACE_ID, COL_SPAN_ID, COL_STREAM, COL_SEQ,
	COL_ATTRS, NUM_COPY_COLS
} CopyCol;

static const char *const copy_col_names[NUM_COPY_COLS] = {
	"id", "ts", "received_at", "source", "level", "severity", "status",
	"message", "trace_id", "span_id", "stream", "seq", "attrs"
};

/*
 * The COPY data source: one buffer of COPY BINARY data, handed out in
 * pieces.  Every non-NULL field in it is 4 bytes, the index of the record
 * in copy_batch; recv_column turns that into the column's Datum.
 */
static const char *copy_data;
static int	copy_len;
static int	copy_pos;

/* What recv_column reads from while CopyFrom runs. */
static IngestBatch *copy_batch;
static int64 *copy_ids;
static uint8 *copy_sevs;
static Oid	copy_sev_oids[3];

static int
copy_read_cb(void *outbuf, int minread, int maxread)
{
	int			n = Min(maxread, copy_len - copy_pos);

	memcpy(outbuf, copy_data + copy_pos, n);
	copy_pos += n;
	return n;
}

/*
 * Stands in for the columns' binary receive functions (in_functions of the
 * CopyFromState): the "binary data" of a field is the record index, and
 * the value is taken from the already parsed and checked record.  This
 * skips formatting values as text for COPY to parse back (timestamptz_in,
 * int8in, enum_in, de-escaping), and, unlike textrecv, never applies the
 * client_encoding (the record text is already in the database encoding).
 */
static Datum
recv_column(PG_FUNCTION_ARGS)
{
	StringInfo	buf = (StringInfo) PG_GETARG_POINTER(0);
	CopyCol		col = (CopyCol) (intptr_t) fcinfo->flinfo->fn_extra;
	uint32		idx;
	const IngestRecord *r;

	if (buf->len - buf->cursor != sizeof(uint32))
		elog(ERROR, "logagg: bad COPY field length");
	memcpy(&idx, buf->data + buf->cursor, sizeof(uint32));
	buf->cursor += sizeof(uint32);
	if (idx >= (uint32) copy_batch->nrecords)
		elog(ERROR, "logagg: bad record index in COPY data");
	r = &copy_batch->records[idx];

	switch (col)
	{
		case COL_ID:
			return Int64GetDatum(copy_ids[idx]);
		case COL_TS:
			return TimestampTzGetDatum(r->ts);
		case COL_RECEIVED_AT:
			return TimestampTzGetDatum(r->received_at);
		case COL_SOURCE:
			if (r->text_ready & INGEST_TEXT_SOURCE)
				return INGEST_TEXT_OF(r->source);
			return PointerGetDatum(cstring_to_text(r->source));
		case COL_LEVEL:
			return PointerGetDatum(cstring_to_text(r->level));
		case COL_SEVERITY:
			return ObjectIdGetDatum(copy_sev_oids[copy_sevs[idx]]);
		case COL_STATUS:
			return Int32GetDatum(r->status);
		case COL_MESSAGE:
			if (r->text_ready & INGEST_TEXT_MESSAGE)
				return INGEST_TEXT_OF(r->message);
			return PointerGetDatum(cstring_to_text(r->message));
		case COL_TRACE_ID:
			if (r->text_ready & INGEST_TEXT_TRACE_ID)
				return INGEST_TEXT_OF(r->trace_id);
			return PointerGetDatum(cstring_to_text(r->trace_id));
		case COL_SPAN_ID:
			if (r->text_ready & INGEST_TEXT_SPAN_ID)
				return INGEST_TEXT_OF(r->span_id);
			return PointerGetDatum(cstring_to_text(r->span_id));
		case COL_STREAM:
			return PointerGetDatum(cstring_to_text(r->stream));
		case COL_SEQ:
			return Int64GetDatum(r->seq);
		case COL_ATTRS:
			if (r->attrs_flat)
				return ingest_flat_attrs_jsonb(r->attrs);
			return DirectFunctionCall1(jsonb_in, CStringGetDatum(r->attrs));
		case NUM_COPY_COLS:
			break;
	}
	elog(ERROR, "logagg: bad COPY column %d", (int) col);
	return (Datum) 0;
}

static void
copy_int16(StringInfo buf, int16 v)
{
	uint16		n = pg_hton16((uint16) v);

	appendBinaryStringInfo(buf, (char *) &n, sizeof(n));
}

static void
copy_int32(StringInfo buf, int32 v)
{
	uint32		n = pg_hton32((uint32) v);

	appendBinaryStringInfo(buf, (char *) &n, sizeof(n));
}

/*
 * One field of the row at *p: the record index, or NULL.  Written
 * directly into a buffer sized beforehand (an appendBinaryStringInfo per
 * 4-byte value was ~5 % of the worker).
 */
static inline char *
copy_field(char *p, bool present, uint32 idx)
{
	static const uint32 null_len = 0xFFFFFFFF;	/* -1 in any byte order */
	uint32		len = pg_hton32((uint32) sizeof(uint32));

	if (!present)
	{
		memcpy(p, &null_len, sizeof(uint32));
		return p + sizeof(uint32);
	}
	memcpy(p, &len, sizeof(uint32));
	memcpy(p + sizeof(uint32), &idx, sizeof(uint32));
	return p + 2 * sizeof(uint32);
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

	/* planned once per process: parsing and planning it per batch was ~1 % */
	static SPIPlanPtr plan = NULL;

	if (plan == NULL)
	{
		plan = SPI_prepare("SELECT max(r.min_severity)::text FROM logagg.routes r "
						   "JOIN logagg.destinations d ON d.name = r.destination AND d.enabled "
						   "WHERE r.enabled", 0, NULL);
		if (plan == NULL || SPI_keepplan(plan) != 0)
			elog(ERROR, "logagg: preparing the query of logagg.routes failed: %s",
				 SPI_result_code_string(SPI_result));
	}
	ret = SPI_execute_plan(plan, NULL, NULL, true, 1);
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

/*
 * COPY the batch's records into logagg.logs; ids[i] and sevs[i] are
 * record i's id and severity.  Returns rows copied.
 */
static uint64
copy_into_logs(IngestBatch *batch, int64 *ids, uint8 *sevs)
{
	static const char binary_header[] = "PGCOPY\n\377\r\n";	/* + its NUL */
	Relation	rel;
	ParseState *pstate;
	CopyFromState cstate;
	List	   *attnames = NIL;
	List	   *options;
	StringInfoData buf;
	Oid			sevtype;
	ListCell   *lc;
	int			i;
	uint64		processed;

	for (i = 0; i < NUM_COPY_COLS; i++)
		attnames = lappend(attnames, makeString(pstrdup(copy_col_names[i])));
	options = list_make1(makeDefElem("format", (Node *) makeString("binary"), -1));

	/* the stream: header, one 13-field row per record, trailer */
	initStringInfo(&buf);
	appendBinaryStringInfo(&buf, binary_header, sizeof(binary_header));	/* with NUL */
	copy_int32(&buf, 0);		/* flags */
	copy_int32(&buf, 0);		/* header extension length */
	enlargeStringInfo(&buf, batch->nrecords * (2 + NUM_COPY_COLS * 8) + 2);
	{
		char	   *p = buf.data + buf.len;
		uint16		nfields = pg_hton16(NUM_COPY_COLS);

		for (i = 0; i < batch->nrecords; i++)
		{
			const IngestRecord *r = &batch->records[i];

			memcpy(p, &nfields, sizeof(uint16));
			p += sizeof(uint16);
			p = copy_field(p, true, i);	/* id */
			p = copy_field(p, true, i);	/* ts */
			p = copy_field(p, true, i);	/* received_at */
			p = copy_field(p, true, i);	/* source */
			p = copy_field(p, r->level != NULL, i);
			p = copy_field(p, true, i);	/* severity */
			p = copy_field(p, r->has_status, i);
			p = copy_field(p, r->message != NULL, i);
			p = copy_field(p, r->trace_id != NULL, i);
			p = copy_field(p, r->span_id != NULL, i);
			p = copy_field(p, r->stream != NULL, i);
			p = copy_field(p, r->has_seq, i);
			p = copy_field(p, r->attrs != NULL, i);
		}
		buf.len = p - buf.data;
	}
	copy_int16(&buf, -1);

	sevtype = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid, CStringGetDatum("severity"),
							  ObjectIdGetDatum(get_namespace_oid(LOGAGG_SCHEMA, false)));
	if (!OidIsValid(sevtype))
		elog(ERROR, "logagg: type logagg.severity is missing");
	for (i = 0; i < 3; i++)
		copy_sev_oids[i] = DatumGetObjectId(DirectFunctionCall2(enum_in,
																CStringGetDatum(logagg_severity_names[i]),
																ObjectIdGetDatum(sevtype)));

	rel = table_open(logagg_relid("logs"), RowExclusiveLock);
	pstate = make_parsestate(NULL);
	(void) addRangeTableEntryForRelation(pstate, rel, RowExclusiveLock, NULL, false, false);

	copy_data = buf.data;
	copy_len = buf.len;
	copy_pos = 0;
	copy_batch = batch;
	copy_ids = ids;
	copy_sevs = sevs;
	cstate = BeginCopyFrom(pstate, rel, NULL, NULL, false, copy_read_cb, attnames, options);

	/*
	 * CopyFrom flushes its multi-insert buffer at 1000 rows or once the
	 * rows' input lines add up to 64 kB, and creates one tuple slot per
	 * buffered row of each CopyFrom (the slots of one buffer are reused
	 * after a flush, not across CopyFroms).  Lines are counted by
	 * line_buf.len, which binary COPY never sets (it does not use
	 * line_buf), so our rows always waited for 1000: 1000 slots made and
	 * dropped per batch, each pinning the tuple descriptor in the
	 * resource owner (whose hash degrades with 1000 pins of one
	 * pointer): 8-10 % of the worker.  Giving line_buf.len the records'
	 * average input size makes the buffer flush where text COPY of the
	 * same rows (psql \copy) flushes, after ~64 kB, and cuts the slots
	 * per batch to ~250.
	 */
	cstate->line_buf.len = (int) Max(batch->bytes / Max(batch->nrecords, 1), 66);

	/* every column's "receive function" reads the record (recv_column) */
	i = 0;
	foreach(lc, cstate->attnumlist)
	{
		FmgrInfo   *f = &cstate->in_functions[lfirst_int(lc) - 1];

		memset(f, 0, sizeof(FmgrInfo));
		f->fn_addr = recv_column;
		f->fn_oid = InvalidOid;
		f->fn_nargs = 3;
		f->fn_strict = true;
		f->fn_mcxt = CurrentMemoryContext;
		f->fn_extra = (void *) (intptr_t) i;
		i++;
	}

	processed = CopyFrom(cstate);
	EndCopyFrom(cstate);
	copy_data = NULL;
	copy_batch = NULL;

	free_parsestate(pstate);
	table_close(rel, NoLock);
	pfree(buf.data);
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

/*
 * Refused records, each with its exact bytes (raw_bytes, cut at
 * INGEST_REJECT_RAW_BYTES; raw_length and raw_sha256 tell what was cut),
 * and raw as text only when those bytes are valid text.
 */
static void
store_rejects(IngestBatch *batch)
{
	Oid			argtypes[10] = {TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	BYTEAOID, INT8OID, BYTEAOID, TEXTOID, INT8OID};
	SPIPlanPtr	plan;
	MemoryContext rowcxt;
	MemoryContext oldcxt;

	plan = SPI_prepare("INSERT INTO logagg.rejected (received_at, peer, source, reason, raw, "
					   "raw_bytes, raw_length, raw_sha256, stream, seq) "
					   "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)", 10, argtypes);
	if (plan == NULL)
		elog(ERROR, "logagg: preparing insert into logagg.rejected failed: %s",
			 SPI_result_code_string(SPI_result));
	/* a message of many bad lines gives many rows: nothing kept per row */
	rowcxt = AllocSetContextCreate(CurrentMemoryContext, "logagg reject row",
								   ALLOCSET_SMALL_SIZES);
	oldcxt = MemoryContextSwitchTo(rowcxt);
	for (int i = 0; i < batch->nrejects; i++)
	{
		IngestReject *r = &batch->rejects[i];
		Datum		values[10];
		char		nulls[10];
		bytea	   *bytes;
		int			ret;

		memset(nulls, ' ', sizeof(nulls));
		values[0] = TimestampTzGetDatum(r->received_at);
		values[1] = r->peer ? CStringGetTextDatum(r->peer) : (nulls[1] = 'n', (Datum) 0);
		values[2] = r->source ? CStringGetTextDatum(r->source) : (nulls[2] = 'n', (Datum) 0);
		values[3] = CStringGetTextDatum(r->reason);
		values[4] = r->raw_text_len >= 0 ?
			PointerGetDatum(cstring_to_text_with_len(r->raw, r->raw_text_len)) :
			(nulls[4] = 'n', (Datum) 0);
		bytes = palloc(VARHDRSZ + r->raw_len);
		SET_VARSIZE(bytes, VARHDRSZ + r->raw_len);
		memcpy(VARDATA(bytes), r->raw, r->raw_len);
		values[5] = PointerGetDatum(bytes);
		values[6] = Int64GetDatum(r->raw_length);
		if (r->raw_sha256)
		{
			bytea	   *h = palloc(VARHDRSZ + PG_SHA256_DIGEST_LENGTH);

			SET_VARSIZE(h, VARHDRSZ + PG_SHA256_DIGEST_LENGTH);
			memcpy(VARDATA(h), r->raw_sha256, PG_SHA256_DIGEST_LENGTH);
			values[7] = PointerGetDatum(h);
		}
		else
			nulls[7] = 'n';
		values[8] = r->stream ? CStringGetTextDatum(r->stream) : (nulls[8] = 'n', (Datum) 0);
		values[9] = r->has_seq ? Int64GetDatum(r->seq) : (nulls[9] = 'n', (Datum) 0);
		ret = SPI_execute_plan(plan, values, nulls, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "logagg: insert into logagg.rejected failed: %s", SPI_result_code_string(ret));
		MemoryContextReset(rowcxt);
	}
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(rowcxt);
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
		int64	   *ids;
		uint8	   *sevs;

		if (threshold >= 0)
		{
			HASHCTL		ctl;

			ctl.keysize = LOGAGG_FINGERPRINT_LEN + 1;
			ctl.entrysize = sizeof(AlertGroup);
			ctl.hcxt = CurrentMemoryContext;
			groups = hash_create("logagg alert groups", 64, &ctl,
								 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		}

		ids = palloc(batch->nrecords * sizeof(int64));
		sevs = palloc(batch->nrecords * sizeof(uint8));
		for (int i = 0; i < batch->nrecords; i++)
		{
			IngestRecord *r = &batch->records[i];
			LogaggSeverity sev = logagg_classify_record(r->status, r->has_status, r->level,
														r->source, r->message);
			int64		id = nextval_internal(seqid, false);

			ids[i] = id;
			sevs[i] = (uint8) sev;

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
		result->rows = copy_into_logs(batch, ids, sevs);
		pfree(ids);
		pfree(sevs);

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
