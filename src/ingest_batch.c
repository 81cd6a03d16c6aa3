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
 * One bad record never fails a batch: the records are stored in a
 * subtransaction, and if that fails, again in halves down to the records
 * that fail alone, which go to logagg.rejected with their error (see
 * store_records_isolated).  Also here: the ts window every record is
 * checked against while parsing (ingest_ts_in_window), and the sources a
 * SQL caller may write (check_source_grants).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/sha.h>

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
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "nodes/makefuncs.h"
#include "port/pg_bswap.h"
#include "parser/parse_node.h"
#include "parser/parse_relation.h"
#include "utils/acl.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/syscache.h"

#include "alert_rules.h"
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

	/*
	 * timestamp2tm counts years astronomically (0 is 1 BC, -1 is 2 BC);
	 * timestamptz input wants the historical year with a BC suffix, and
	 * refuses year 0.
	 */
	appendStringInfo(buf, "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ%s",
					 tm.tm_year > 0 ? tm.tm_year : 1 - tm.tm_year, tm.tm_mon, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec,
					 tm.tm_year > 0 ? "" : " BC");
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
	return logagg_severity_index(name);
}

/*
 * COPY records idx[0..n-1] of the batch into logagg.logs; ids[i] and
 * sevs[i] are record i's id and severity.  Returns rows copied.
 */
static uint64
copy_into_logs(IngestBatch *batch, const int *idx, int n, int64 *ids, uint8 *sevs)
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
	enlargeStringInfo(&buf, n * (2 + NUM_COPY_COLS * 8) + 2);
	{
		char	   *p = buf.data + buf.len;
		uint16		nfields = pg_hton16(NUM_COPY_COLS);

		for (int k = 0; k < n; k++)
		{
			const IngestRecord *r = &batch->records[idx[k]];

			i = idx[k];

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

/*
 * Queue the batch's alert groups.  On a Citus worker node the queue is
 * the coordinator's (only it dispatches): the groups go into the
 * distributed logagg._alert_inbox in this transaction, and the
 * coordinator moves them into its queue (logagg._drain_alert_inbox).
 * Returns the alerts queued here.
 */
static uint64
enqueue_alerts(HTAB *groups, bool worker_node)
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
	if (worker_node)
	{
		ret = SPI_execute_with_args("INSERT INTO logagg._alert_inbox (groups) VALUES ($1::jsonb)",
									1, argtypes, values, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "logagg: handing alerts to the coordinator failed: %s",
				 SPI_result_code_string(ret));
		return 0;
	}
	ret = SPI_execute_with_args("SELECT logagg._enqueue_alerts($1::jsonb)",
								1, argtypes, values, NULL, false, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "logagg: logagg._enqueue_alerts failed: %s", SPI_result_code_string(ret));
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	return isnull ? 0 : (uint64) DatumGetInt32(d);
}

/* Columns of logagg.rejected that store_rejects fills, in its order. */
enum
{
	RJ_RECEIVED_AT, RJ_PEER, RJ_SOURCE, RJ_REASON, RJ_RAW, RJ_RAW_BYTES,
	RJ_RAW_LENGTH, RJ_RAW_SHA256, RJ_STREAM, RJ_SEQ, RJ_NCOLS
};

static const Oid reject_col_types[RJ_NCOLS] = {
	TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID, TEXTOID,
	BYTEAOID, INT8OID, BYTEAOID, TEXTOID, INT8OID
};

/*
 * At most this many rejects, and about this many bytes of them, go into
 * one INSERT: one statement per chunk instead of one per row, while the
 * arrays (a second copy of the bytes) stay small.
 */
#define REJECTS_PER_INSERT		1000
#define REJECT_BYTES_PER_INSERT	(4 * 1024 * 1024)

static bytea *
bytes_to_bytea(const void *data, int len)
{
	bytea	   *b = palloc(VARHDRSZ + len);

	SET_VARSIZE(b, VARHDRSZ + len);
	memcpy(VARDATA(b), data, len);
	return b;
}

/* One reject's column values into slot i of the column arrays. */
static void
reject_values(const IngestReject *r, int i, Datum **v, bool **null)
{
	for (int c = 0; c < RJ_NCOLS; c++)
		null[c][i] = false;
	v[RJ_RECEIVED_AT][i] = TimestampTzGetDatum(r->received_at);
	if (r->peer)
		v[RJ_PEER][i] = CStringGetTextDatum(r->peer);
	else
		null[RJ_PEER][i] = true;
	if (r->source)
		v[RJ_SOURCE][i] = CStringGetTextDatum(r->source);
	else
		null[RJ_SOURCE][i] = true;
	v[RJ_REASON][i] = CStringGetTextDatum(r->reason);
	if (r->raw_text_len >= 0)
		v[RJ_RAW][i] = PointerGetDatum(cstring_to_text_with_len(r->raw, r->raw_text_len));
	else
		null[RJ_RAW][i] = true;
	v[RJ_RAW_BYTES][i] = PointerGetDatum(bytes_to_bytea(r->raw, r->raw_len));
	v[RJ_RAW_LENGTH][i] = Int64GetDatum(r->raw_length);
	if (r->raw_sha256)
		v[RJ_RAW_SHA256][i] = PointerGetDatum(bytes_to_bytea(r->raw_sha256, PG_SHA256_DIGEST_LENGTH));
	else
		null[RJ_RAW_SHA256][i] = true;
	if (r->stream)
		v[RJ_STREAM][i] = CStringGetTextDatum(r->stream);
	else
		null[RJ_STREAM][i] = true;
	if (r->has_seq)
		v[RJ_SEQ][i] = Int64GetDatum(r->seq);
	else
		null[RJ_SEQ][i] = true;
}

/*
 * Refused records, each with its exact bytes (raw_bytes, cut at
 * INGEST_REJECT_RAW_BYTES; raw_length and raw_sha256 tell what was cut),
 * and raw as text only when those bytes are valid text.  The rows go in
 * as arrays, unnest()ed by one INSERT per chunk, in the order of the
 * rejects (ids follow it).
 */
static void
store_rejects(IngestBatch *batch)
{
	Oid			argtypes[RJ_NCOLS];
	SPIPlanPtr	plan;
	MemoryContext chunkcxt;
	MemoryContext oldcxt;
	int			done = 0;

	for (int c = 0; c < RJ_NCOLS; c++)
		argtypes[c] = get_array_type(reject_col_types[c]);
	plan = SPI_prepare("INSERT INTO logagg.rejected (received_at, peer, source, reason, raw, "
					   "raw_bytes, raw_length, raw_sha256, stream, seq) "
					   "SELECT * FROM unnest($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
					   RJ_NCOLS, argtypes);
	if (plan == NULL)
		elog(ERROR, "logagg: preparing insert into logagg.rejected failed: %s",
			 SPI_result_code_string(SPI_result));
	chunkcxt = AllocSetContextCreate(CurrentMemoryContext, "logagg reject rows",
									 ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(chunkcxt);
	while (done < batch->nrejects)
	{
		int			n = 0;
		Size		bytes = 0;
		Datum	   *v[RJ_NCOLS];
		bool	   *null[RJ_NCOLS];
		Datum		args[RJ_NCOLS];
		int			ret;

		for (int c = 0; c < RJ_NCOLS; c++)
		{
			v[c] = palloc(sizeof(Datum) * Min(batch->nrejects - done, REJECTS_PER_INSERT));
			null[c] = palloc(sizeof(bool) * Min(batch->nrejects - done, REJECTS_PER_INSERT));
		}
		while (done + n < batch->nrejects && n < REJECTS_PER_INSERT &&
			   bytes < REJECT_BYTES_PER_INSERT)
		{
			const IngestReject *r = &batch->rejects[done + n];

			reject_values(r, n, v, null);
			bytes += r->raw_len;
			n++;
		}
		for (int c = 0; c < RJ_NCOLS; c++)
		{
			int16		typlen;
			bool		typbyval;
			char		typalign;
			int			dims[1] = {n};
			int			lbs[1] = {1};

			get_typlenbyvalalign(reject_col_types[c], &typlen, &typbyval, &typalign);
			args[c] = PointerGetDatum(construct_md_array(v[c], null[c], 1, dims, lbs,
														 reject_col_types[c],
														 typlen, typbyval, typalign));
		}
		ret = SPI_execute_plan(plan, args, NULL, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "logagg: insert into logagg.rejected failed: %s", SPI_result_code_string(ret));
		done += n;
		MemoryContextReset(chunkcxt);
	}
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(chunkcxt);
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
									"source = coalesce(excluded.source, s.source), "
									/* not now(): Citus takes only immutable
									 * functions in DO UPDATE SET */
									"updated_at = excluded.updated_at",
									3, argtypes, values, nulls, false, 0);
		if (ret != SPI_OK_INSERT)
			elog(ERROR, "logagg: updating logagg.streams failed: %s", SPI_result_code_string(ret));
	}
}

/*
 * Store records idx[0..n-1]: draw their ids, classify them, COPY them
 * into logagg.logs, count them for the alert rules and queue their alert
 * groups.  ids and sevs have room
 * for every record of the batch.
 */
static void
store_records(IngestBatch *batch, const int *idx, int n, int64 *ids, uint8 *sevs,
			  IngestResult *result)
{
	Oid			seqid = logagg_relid("logs_id_seq");
	bool		distributed = logagg_logs_distributed();
	bool		worker_node = distributed && logagg_citus_worker_node();
	int			threshold = worker_node ? logagg_cluster_alert_threshold() : alert_threshold();
	HTAB	   *groups = NULL;

	if (threshold >= 0)
	{
		HASHCTL		ctl;

		ctl.keysize = LOGAGG_FINGERPRINT_LEN + 1;
		ctl.entrysize = sizeof(AlertGroup);
		ctl.hcxt = CurrentMemoryContext;
		groups = hash_create("logagg alert groups", 64, &ctl,
							 HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	}

	for (int k = 0; k < n; k++)
	{
		int			i = idx[k];
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
	if (distributed)
		result->rows += logagg_insert_logs_distributed(batch, idx, n, ids, sevs);
	else
		result->rows += copy_into_logs(batch, idx, n, ids, sevs);

	/* alert rule counters, committed (or rolled back) with these rows */
	logagg_alert_rules_count(batch, idx, n, ids, sevs);

	if (groups && hash_get_num_entries(groups) > 0)
		result->alerts_queued += enqueue_alerts(groups, worker_node);
}

/*
 * Could this error be caused by the records being stored (a trigger that
 * raises, a cast, a constraint, an alert insert), so that storing them
 * again without some of them may succeed?  Errors of the system (out of
 * memory or disk, I/O, a cancel or shutdown, a deadlock or serialization
 * failure, a lock timeout, a Citus node that cannot be reached) are not:
 * retrying would only reject good records, so those fail the batch as a
 * whole.
 */
static bool
error_may_come_from_a_record(int sqlerrcode)
{
	switch (ERRCODE_TO_CATEGORY(sqlerrcode))
	{
		case ERRCODE_CONNECTION_EXCEPTION:	/* a Citus node out of reach */
		case ERRCODE_TRANSACTION_ROLLBACK:
		case ERRCODE_INSUFFICIENT_RESOURCES:
		case ERRCODE_OPERATOR_INTERVENTION:
		case ERRCODE_SYSTEM_ERROR:
		case ERRCODE_CONFIG_FILE_ERROR:
			return false;
		default:
			break;
	}
	if (sqlerrcode == ERRCODE_LOCK_NOT_AVAILABLE ||
		sqlerrcode == ERRCODE_DATA_CORRUPTED ||
		sqlerrcode == ERRCODE_INDEX_CORRUPTED)
		return false;
	return true;
}

static void add_record_reject(IngestBatch *batch, const IngestRecord *r, char *reason);

/* What an attempt to store part of the batch shares with the next one. */
typedef struct StoreState
{
	IngestBatch *batch;
	int64	   *ids;			/* per record of the batch */
	uint8	   *sevs;
	IngestResult *result;
	int			nrefused;
} StoreState;

/*
 * Store records idx[0..n-1] in a subtransaction.  Returns true when they
 * are stored.  When that fails with an error a record may cause, the
 * subtransaction is rolled back (nothing of the attempt stays) and false
 * is returned with the error in *error; any other error is re-thrown.
 */
static bool
try_store(StoreState *st, const int *idx, int n, ErrorData **error)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	MemoryContext attempt;
	IngestResult part;
	volatile bool ok = false;

	memset(&part, 0, sizeof(part));
	attempt = AllocSetContextCreate(oldcxt, "logagg store attempt", ALLOCSET_DEFAULT_SIZES);
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(attempt);
	PG_TRY();
	{
		store_records(st->batch, idx, n, st->ids, st->sevs, &part);
		ReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		ok = true;
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		if (!error_may_come_from_a_record(edata->sqlerrcode))
		{
			FreeErrorData(edata);
			PG_RE_THROW();
		}
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		MemoryContextSwitchTo(oldcxt);
		CurrentResourceOwner = oldowner;
		copy_data = NULL;
		copy_batch = NULL;
		*error = edata;
	}
	PG_END_TRY();
	MemoryContextDelete(attempt);
	if (ok)
	{
		st->result->rows += part.rows;
		st->result->alerts_queued += part.alerts_queued;
	}
	return ok;
}

/*
 * The record as JSON in the protocol's shape, for logagg.rejected.raw of
 * a record refused after parsing (its input text is gone by then): the
 * fields as they were parsed, its attrs as top-level fields again.
 */
static char *
record_as_json(const IngestRecord *r)
{
	StringInfoData js;

	initStringInfo(&js);
	appendStringInfoString(&js, "{\"ts\":\"");
	append_timestamp(&js, r->ts);
	appendStringInfoString(&js, "\",\"source\":");
	escape_json(&js, r->source);
	if (r->level)
	{
		appendStringInfoString(&js, ",\"level\":");
		escape_json(&js, r->level);
	}
	if (r->has_status)
		appendStringInfo(&js, ",\"status\":%d", r->status);
	if (r->message)
	{
		appendStringInfoString(&js, ",\"message\":");
		escape_json(&js, r->message);
	}
	if (r->trace_id)
	{
		appendStringInfoString(&js, ",\"trace_id\":");
		escape_json(&js, r->trace_id);
	}
	if (r->span_id)
	{
		appendStringInfoString(&js, ",\"span_id\":");
		escape_json(&js, r->span_id);
	}
	if (r->has_seq)
		appendStringInfo(&js, ",\"seq\":" INT64_FORMAT, r->seq);
	if (r->attrs)
	{
		/* a JSON object's text: its members go in after ours */
		const char *open = strchr(r->attrs, '{');
		const char *close = strrchr(r->attrs, '}');

		if (open && close && close > open + 1)
		{
			appendStringInfoChar(&js, ',');
			appendBinaryStringInfo(&js, open + 1, close - open - 1);
		}
	}
	appendStringInfoChar(&js, '}');
	return js.data;
}

/*
 * Record i could not be stored: it goes to logagg.rejected with the error,
 * and its connection hears about it (an error frame with its seq).
 */
static void
refuse_record(StoreState *st, int i, const ErrorData *error)
{
	IngestBatch *batch = st->batch;
	IngestRecord *r = &batch->records[i];
	char	   *reason = MemoryContextStrdup(batch->cxt,
											 psprintf("storing the record failed: %s", error->message));

	add_record_reject(batch, r, reason);
	st->ids[i] = 0;				/* not stored */
	st->nrefused++;
	if (r->refused)
		r->refused(r->origin_arg, r, reason);
}

/*
 * Put a parsed record into the batch's rejects (reason must live in the
 * batch's memory).  The caller reports it to the record's origin.
 */
static void
add_record_reject(IngestBatch *batch, const IngestRecord *r, char *reason)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(batch->cxt);
	char	   *raw = record_as_json(r);
	IngestReject *rej;
	int			len = strlen(raw);

	if (batch->nrejects >= batch->maxrejects)
	{
		int			newmax = batch->maxrejects ? batch->maxrejects * 2 : 64;

		batch->rejects = batch->rejects ?
			repalloc(batch->rejects, newmax * sizeof(IngestReject)) :
			palloc(newmax * sizeof(IngestReject));
		batch->maxrejects = newmax;
	}
	rej = &batch->rejects[batch->nrejects++];
	/* every field of IngestReject is set here (a new one must be too) */
	memset(rej, 0, sizeof(*rej));
	rej->received_at = r->received_at;
	rej->peer = r->peer ? pstrdup(r->peer) : NULL;
	rej->source = pstrdup(r->source);
	rej->stream = r->stream ? pstrdup(r->stream) : NULL;
	rej->has_seq = r->has_seq;
	rej->seq = r->seq;
	rej->reason = reason;
	/* the record as parsed, re-written as JSON: valid text */
	rej->raw_length = len;
	if (len > INGEST_REJECT_RAW_BYTES)
	{
		rej->raw_sha256 = palloc(SHA256_DIGEST_LENGTH);
		SHA256((const unsigned char *) raw, len, rej->raw_sha256);
		len = pg_mbcliplen(raw, len, INGEST_REJECT_RAW_BYTES);
		raw[len] = '\0';
	}
	rej->raw = raw;
	rej->raw_len = len;
	rej->raw_text_len = len;
	MemoryContextSwitchTo(oldcxt);
}

/*
 * Records idx[0..n-1] failed together with *error: store them in halves,
 * each in its own subtransaction, down to the single records that fail by
 * themselves, which are refused.  A batch with one bad record costs about
 * 2 log2(n) more attempts; only this slow path pays for them.
 */
static void
store_bisect(StoreState *st, int *idx, int n, ErrorData *error)
{
	int			half = n / 2;
	ErrorData  *e = NULL;

	if (n == 1)
	{
		refuse_record(st, idx[0], error);
		return;
	}
	FreeErrorData(error);
	if (!try_store(st, idx, half, &e))
		store_bisect(st, idx, half, e);
	if (!try_store(st, idx + half, n - half, &e))
		store_bisect(st, idx + half, n - half, e);
}

/*
 * Store the batch's records so that one bad record cannot fail the rest.
 * Everything checkable per record was checked while parsing; what can
 * still fail is inside the transaction (a trigger on logagg.logs, a
 * constraint, the alert insert).  The whole batch is tried in one
 * subtransaction, the fast path; if it fails, the batch is stored again
 * in halves and the records that fail alone are refused with their error.
 */
static void
store_records_isolated(IngestBatch *batch, IngestResult *result)
{
	StoreState	st;
	int		   *idx;
	ErrorData  *error = NULL;

	st.batch = batch;
	/* in the batch's memory: the live tail reads them after the commit */
	st.ids = MemoryContextAllocZero(batch->cxt, batch->nrecords * sizeof(int64));
	st.sevs = MemoryContextAlloc(batch->cxt, batch->nrecords * sizeof(uint8));
	batch->stored_ids = st.ids;
	batch->stored_sevs = st.sevs;
	st.result = result;
	st.nrefused = 0;
	idx = palloc(batch->nrecords * sizeof(int));
	for (int i = 0; i < batch->nrecords; i++)
		idx[i] = i;

	if (!try_store(&st, idx, batch->nrecords, &error))
	{
		ereport(LOG,
				(errmsg("logagg: storing a batch of %d records failed: %s",
						batch->nrecords, error->message),
				 errdetail("The batch is stored again without the records that fail; those go to logagg.rejected.")));
		store_bisect(&st, idx, batch->nrecords, error);
		ereport(LOG,
				(errmsg("logagg: %d of %d records of the batch were refused and stored in logagg.rejected",
						st.nrefused, batch->nrecords)));
	}
	pfree(idx);
}

/* Set while a batch is being stored, to refuse re-entry. */
static bool store_active = false;

/*
 * Store the batch.  Needs a transaction with SPI connected and a snapshot.
 * A record that fails inside the transaction is refused (see
 * store_records_isolated); other errors propagate (the caller's
 * transaction then rolls back whole).
 */
/*
 * The COPY state is per process: a store started while one runs (a trigger
 * on logagg.logs calling logagg.ingest()) would overwrite it under the
 * running COPY.
 */
static void
refuse_reentry(void)
{
	if (store_active)
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("logagg.ingest() cannot be called while logagg is storing log records"),
				 errdetail("It was called from inside the storing of a batch, for example by a trigger on logagg.logs."),
				 errhint("Do not call logagg.ingest() from triggers or functions that run while records are stored; store what they need in a table of their own.")));
}

void
ingest_batch_store(IngestBatch *batch, IngestResult *result)
{
	refuse_reentry();
	memset(result, 0, sizeof(*result));
	store_active = true;
	PG_TRY();
	{
		if (batch->nrecords > 0)
			store_records_isolated(batch, result);
		if (batch->nrejects > 0)
		{
			store_rejects(batch);
			result->rejects = batch->nrejects;
		}
		store_streams(batch);
	}
	PG_FINALLY();
	{
		store_active = false;
	}
	PG_END_TRY();
}

/*
 * Is ts within logagg.max_ts_past / logagg.max_ts_future of received_at?
 * If not, *reason says what the window is.  Records outside it are
 * refused while parsing, before anything is written: each late or early
 * hour of a source becomes its own partition range and sync object, so
 * the window bounds how much one client can make the server write.
 */
/* A window bound for a reason text: "7 days", "1 hour", "90 s", "no limit". */
static void
format_bound(char *buf, int buflen, int secs)
{
	if (secs < 0)
		snprintf(buf, buflen, "no limit");
	else if (secs > 0 && secs % 86400 == 0)
		snprintf(buf, buflen, "%d day%s", secs / 86400, secs == 86400 ? "" : "s");
	else if (secs > 0 && secs % 3600 == 0)
		snprintf(buf, buflen, "%d hour%s", secs / 3600, secs == 3600 ? "" : "s");
	else if (secs > 0 && secs % 60 == 0)
		snprintf(buf, buflen, "%d min", secs / 60);
	else
		snprintf(buf, buflen, "%d s", secs);
}

bool
ingest_ts_in_window(TimestampTz ts, TimestampTz received_at, char *reason, int reasonlen)
{
	char		past[32];
	char		future[32];

	if ((logagg_max_ts_past_secs < 0 ||
		 ts >= received_at - (TimestampTz) logagg_max_ts_past_secs * USECS_PER_SEC) &&
		(logagg_max_ts_future_secs < 0 ||
		 ts <= received_at + (TimestampTz) logagg_max_ts_future_secs * USECS_PER_SEC))
		return true;

	format_bound(past, sizeof(past), logagg_max_ts_past_secs);
	format_bound(future, sizeof(future), logagg_max_ts_future_secs);
	snprintf(reason, reasonlen,
			 "ts must be from %s before to %s after arrival (logagg.max_ts_past, logagg.max_ts_future)",
			 past, future);
	return false;
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

/*
 * logagg.ingest() runs as the extension's owner (SECURITY DEFINER), so the
 * role to check is the one outside every SECURITY DEFINER function: the
 * session's role (after SET ROLE).  Superusers and members of
 * logagg_admin write any source; other roles the sources granted in
 * logagg.source_writers to a role whose privileges they have.  A caller
 * with no grant at all gets an error; records of a source it was not
 * granted are rejected one by one, like any invalid record.  Needs SPI.
 */
static void
check_source_grants(IngestBatch *batch)
{
	Oid			caller = GetOuterUserId();
	Oid			admin = get_role_oid("logagg_admin", true);
	char	   *caller_name;
	Oid			argtypes[1] = {OIDOID};
	Datum		values[1];
	int			ret;
	HASHCTL		ctl;
	HTAB	   *allowed;
	int			kept = 0;

	if (superuser_arg(caller) || (OidIsValid(admin) && has_privs_of_role(caller, admin)))
		return;

	caller_name = GetUserNameFromId(caller, false);
	values[0] = ObjectIdGetDatum(caller);
	ret = SPI_execute_with_args("SELECT DISTINCT w.source FROM logagg.source_writers w "
								"JOIN pg_catalog.pg_roles r ON r.rolname = w.role_name "
								"WHERE pg_catalog.pg_has_role($1, r.oid, 'USAGE')",
								1, argtypes, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: reading logagg.source_writers failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_INSUFFICIENT_PRIVILEGE),
				 errmsg("role \"%s\" may not write any log source through logagg.ingest()", caller_name),
				 errhint("An administrator allows a source with SELECT logagg.grant_source_write('%s', 'SOURCE');",
						 caller_name)));

	ctl.keysize = INGEST_MAX_SOURCE_LEN + 1;
	ctl.entrysize = INGEST_MAX_SOURCE_LEN + 1;
	ctl.hcxt = CurrentMemoryContext;
	allowed = hash_create("logagg granted sources", Max(SPI_processed, 16), &ctl,
						  HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		char	   *src = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

		if (src && strlen(src) <= INGEST_MAX_SOURCE_LEN)
			(void) hash_search(allowed, src, HASH_ENTER, NULL);
	}

	for (int i = 0; i < batch->nrecords; i++)
	{
		IngestRecord *r = &batch->records[i];

		if (strlen(r->source) <= INGEST_MAX_SOURCE_LEN &&
			hash_search(allowed, r->source, HASH_FIND, NULL) != NULL)
		{
			batch->records[kept++] = *r;
			continue;
		}
		add_record_reject(batch, r,
						  MemoryContextStrdup(batch->cxt,
											  psprintf("role \"%s\" may not write source \"%s\" (logagg.grant_source_write)",
													   caller_name, r->source)));
	}
	batch->nrecords = kept;
	hash_destroy(allowed);
}

/*
 * logagg.ingest(): the sources that turned off the reading of plain-text
 * lines (sources.detect), looked up once per call; the parser asks
 * sql_detects.
 */
static HTAB *sql_no_detect = NULL;

static bool
sql_detects(const char *source)
{
	return sql_no_detect == NULL || strlen(source) > INGEST_MAX_SOURCE_LEN ||
		hash_search(sql_no_detect, source, HASH_FIND, NULL) == NULL;
}

static void
load_no_detect(void)
{
	HASHCTL		ctl;
	MemoryContext caller = CurrentMemoryContext;	/* SPI_finish frees its own */

	sql_no_detect = NULL;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "logagg: SPI_connect failed");
	/* detect through to_jsonb: a 1.0 schema not yet updated has no such column */
	if (SPI_execute("SELECT name FROM logagg.sources s "
					"WHERE NOT coalesce((pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'detect')::boolean, true)",
					true, 0) != SPI_OK_SELECT)
		elog(ERROR, "logagg: reading logagg.sources failed");
	if (SPI_processed > 0)
	{
		ctl.keysize = INGEST_MAX_SOURCE_LEN + 1;
		ctl.entrysize = INGEST_MAX_SOURCE_LEN + 1;
		ctl.hcxt = caller;
		sql_no_detect = hash_create("logagg sources without detection", 16, &ctl,
									HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			char	   *src = SPI_getvalue(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, 1);

			if (src && strlen(src) <= INGEST_MAX_SOURCE_LEN)
				(void) hash_search(sql_no_detect, src, HASH_ENTER, NULL);
		}
	}
	SPI_finish();
}

PG_FUNCTION_INFO_V1(logagg_ingest_sql);
Datum
logagg_ingest_sql(PG_FUNCTION_ARGS)
{
	Jsonb	   *j = PG_GETARG_JSONB_P(0);
	char	   *text;
	IngestBatch *batch;
	IngestOrigin origin;
	IngestResult res;

	/* before anything else: re-entry is refused whoever the caller is */
	refuse_reentry();
	text = JsonbToCString(NULL, &j->root, VARSIZE(j));
	batch = ingest_batch_create(CurrentMemoryContext);
	memset(&origin, 0, sizeof(origin));
	origin.peer = "sql";
	origin.received_at = GetCurrentTimestamp();
	origin.detects = sql_detects;
	load_no_detect();
	ingest_parse_message(batch, &origin, text, strlen(text));
	sql_no_detect = NULL;

	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "logagg: SPI_connect failed");
	check_source_grants(batch);
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
