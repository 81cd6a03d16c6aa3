/*-------------------------------------------------------------------------
 *
 * record.c
 *		One record's fields: the protocol's field names mapped to columns,
 *		one validator per field (each returns a reject reason or NULL), and
 *		ingest_finish_record, which turns what a parse collected into a record in the
 *		batch or a reject.
 *
 * Shared by both parse paths (scanner.c, json_path.c), so a record gets
 * the same outcome and reason whichever path read it.  Reasons are part
 * of the protocol: clients and tests match them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "ingest/parse_int.h"

/*
 * Fields of the protocol mapped to columns, with their other names: the
 * names shippers and logging libraries use (Fluent Bit, Vector, Filebeat,
 * syslog-ng, journald, OpenTelemetry, Elastic Common Schema, Python).
 * Each field's names are listed in their order of precedence: when a
 * record holds several names of one field, the one listed first wins,
 * wherever it stands in the record, and the others are kept in attrs
 * (docs/shippers.md has this table).  A name's rank is its place in this
 * list, plus one.
 */
static const struct
{
	const char *name;
	RecField	field;
}			field_names[] = {
	{"ts", F_TS}, {"timestamp", F_TS}, {"@timestamp", F_TS}, {"time", F_TS}, {"date", F_TS},
	{"source", F_SOURCE}, {"service", F_SOURCE},
	{"level", F_LEVEL}, {"severity", F_LEVEL}, {"log.level", F_LEVEL},
	{"severity_text", F_LEVEL}, {"levelname", F_LEVEL},
	{"severity_number", F_SEVERITY_NUMBER},
	{"status", F_STATUS}, {"status_code", F_STATUS}, {"http.status_code", F_STATUS},
	{"http.response.status_code", F_STATUS},
	{"message", F_MESSAGE}, {"msg", F_MESSAGE}, {"log", F_MESSAGE}, {"body", F_MESSAGE},
	{"MESSAGE", F_MESSAGE},
	{"trace_id", F_TRACE_ID}, {"trace.id", F_TRACE_ID},
	{"span_id", F_SPAN_ID}, {"span.id", F_SPAN_ID},
	{"seq", F_SEQ},
};

/* The column field NAME maps to (F_ATTR: none, it goes into attrs), and its rank. */
RecField
ingest_field_of(const char *name, int *rank)
{
	for (int i = 0; i < lengthof(field_names); i++)
		if (strcmp(name, field_names[i].name) == 0)
		{
			*rank = i + 1;
			return field_names[i].field;
		}
	*rank = 0;
	return F_ATTR;
}

/* ingest_field_of for a name that is not NUL-terminated (lengths first) */
RecField
ingest_field_of_len(const char *name, int len, int *rank)
{
	static uint8 lens[lengthof(field_names)];

	if (lens[0] == 0)
		for (int i = 0; i < lengthof(field_names); i++)
			lens[i] = (uint8) strlen(field_names[i].name);
	for (int i = 0; i < lengthof(field_names); i++)
		if (lens[i] == len && memcmp(name, field_names[i].name, len) == 0)
		{
			*rank = i + 1;
			return field_names[i].field;
		}
	*rank = 0;
	return F_ATTR;
}

/*
 * The rank of field F's first listed name: the name a door that decodes
 * records itself (OTLP, Loki), and so sets val[] without a rank, is
 * reported under.
 */
static int
first_rank(RecField f)
{
	for (int i = 0; i < lengthof(field_names); i++)
		if (field_names[i].field == f)
			return i + 1;
	return 0;
}

/* The name of rank RANK (as ingest_field_of gave it) */
const char *
ingest_field_name(int rank)
{
	Assert(rank >= 1 && rank <= lengthof(field_names));
	return field_names[rank - 1].name;
}

/*
 * A name of field f with rank RANK turned up in a record (IS_NULL: its
 * value is null, which counts as absent): who keeps the field?
 * FIELD_TAKE: this name (the field was free, or held by the same name,
 * which a repeated name overwrites as in jsonb); FIELD_LOSE: the name
 * that holds it comes first in the list, or this value is null, so this
 * one goes to attrs; FIELD_DISPLACE: this one comes first, or the
 * holder's value is null, so the holder (st->rank[f], st->held[f]) goes
 * to attrs and this one takes the field.
 */
FieldClaim
ingest_field_claim(const RecState *st, RecField f, int rank, bool is_null)
{
	if (f == F_ATTR || st->rank[f] == 0 || st->rank[f] == rank)
		return FIELD_TAKE;
	if (is_null)
		return FIELD_LOSE;
	if (st->held[f][0] == 'n')
		return FIELD_DISPLACE;
	return st->rank[f] < rank ? FIELD_LOSE : FIELD_DISPLACE;
}

/* ---- one validator per field: each returns a reject reason or NULL ---- */

/* seq: a non-negative integer (checked first: error frames carry it) */
static const char *
check_seq(const RecState *st, bool *has_seq, int64 *seq)
{
	*has_seq = false;
	*seq = 0;
	if (st->val[F_SEQ] == NULL && !st->nonscalar[F_SEQ])
		return NULL;
	if (st->nonscalar[F_SEQ] || st->type[F_SEQ] != JSON_TOKEN_NUMBER ||
		!ingest_parse_int64(st->val[F_SEQ], seq) || *seq < 0)
		return "seq must be a non-negative integer";
	*has_seq = true;
	return NULL;
}

/*
 * ts: RFC 3339 text, or an epoch time as a number (or a string of one):
 * seconds, milliseconds, microseconds or nanoseconds, told apart by
 * magnitude (ingest_epoch_to_timestamp); within the accepted window.
 */
static const char *
check_ts(const char *name, const char *v, JsonTokenType t, TimestampTz received_at,
		 TimestampTz *ts, char *buf, int buflen)
{
	if (!(t == JSON_TOKEN_STRING ? (ingest_parse_timestamp(v, strlen(v), ts) ||
									ingest_epoch_to_timestamp(v, ts)) :
		  t == JSON_TOKEN_NUMBER ? ingest_epoch_to_timestamp(v, ts) : false))
	{
		snprintf(buf, buflen, "%s must be an RFC 3339 timestamp or epoch seconds, milliseconds, microseconds or nanoseconds",
				 name);
		return buf;
	}
	if (!ingest_ts_in_window(*ts, received_at, buf, buflen))
		return buf;
	return NULL;
}

/*
 * source: a valid name, unless a plain token fixes the source anyway; a
 * forwarding token's records may name theirs within its patterns
 * (forward.c)
 */
static const char *
check_source(const IngestOrigin *origin, const char *v, JsonTokenType t, char **source,
			 char *buf, int buflen)
{
	*source = (char *) v;
	if (origin->forwarder)
		return ingest_forward_check_source(origin, v, t, buf, buflen);
	if (t != JSON_TOKEN_STRING || (origin->source == NULL && !logagg_valid_source_name(v)))
		return "source must be 1-128 letters, digits, '.', '_' or '-'";
	return NULL;
}

/*
 * A level given as a number: a syslog severity (0 emerg .. 7 debug), or
 * the levels of pino and bunyan (10 trace, 20 debug ... 60 fatal), which
 * cannot be mistaken for one.  NULL when it is neither.
 */
static const char *
level_of_number(int64 n)
{
	static const char *const syslog_names[] = {
		"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"
	};
	static const char *const pino_names[] = {
		"trace", "debug", "info", "warn", "error", "fatal"
	};
	const char *name = NULL;

	if (n >= 0 && n <= 7)
		name = syslog_names[n];
	else if (n >= 10 && n <= 60 && n % 10 == 0)
		name = pino_names[n / 10 - 1];
	return name ? logagg_normalize_level(name, strlen(name)) : NULL;
}

/*
 * level: a short string, normalised (lower case, canonical names); a
 * number, or a string of one digit, as level_of_number reads it
 */
static const char *
check_level(IngestBatch *batch, const char *name, const char *v, JsonTokenType t,
			char **level, char *buf, int buflen)
{
	const char *canon;
	int64		n;

	if (t == JSON_TOKEN_NUMBER ||
		(t == JSON_TOKEN_STRING && v[0] >= '0' && v[0] <= '7' && v[1] == '\0'))
	{
		if (!ingest_parse_int64(v, &n) || (canon = level_of_number(n)) == NULL)
		{
			snprintf(buf, buflen, "%s must be a string of at most 32 characters, a syslog severity from 0 to 7 or a pino level",
					 name);
			return buf;
		}
		*level = (char *) canon;
		return NULL;
	}
	if (t != JSON_TOKEN_STRING || strlen(v) > 32)
	{
		snprintf(buf, buflen, "%s must be a string of at most 32 characters", name);
		return buf;
	}
	canon = logagg_normalize_level(v, strlen(v));
	/* canonical names are static strings: no copy */
	if (canon)
		*level = (char *) canon;
	else
	{
		*level = MemoryContextStrdup(batch->cxt, v);
		for (char *p = *level; *p; p++)
			*p = pg_ascii_tolower((unsigned char) *p);
	}
	return NULL;
}

/* severity_number: 1 to 24; gives the level when no level is given */
static const char *
check_severity_number(const char *v, JsonTokenType t, bool has_level, char **level)
{
	int64		n;

	if (t != JSON_TOKEN_NUMBER || !ingest_parse_int64(v, &n) || n < 1 || n > 24)
		return "severity_number must be an integer from 1 to 24";
	if (!has_level)
		*level = (char *) logagg_level_from_severity_number((int) n);
	return NULL;
}

/* status: 0 to 999 */
static const char *
check_status(const char *name, const char *v, JsonTokenType t, IngestRecord *rec,
			 char *buf, int buflen)
{
	int64		n;

	/* "503" is common enough from string-typed loggers */
	if ((t != JSON_TOKEN_NUMBER && t != JSON_TOKEN_STRING) ||
		!ingest_parse_int64(v, &n) || n < 0 || n > 999)
	{
		snprintf(buf, buflen, "%s must be an integer from 0 to 999", name);
		return buf;
	}
	rec->has_status = true;
	rec->status = (int) n;
	return NULL;
}

/* message: any scalar's text (an object or array is kept as raw JSON) */
static const char *
check_message(const char *v, char **message)
{
	*message = (char *) v;
	return NULL;
}

/* trace_id, span_id: hex strings of at most 64 digits */
static const char *
check_hex_id(const char *name, const char *v, JsonTokenType t, char **id,
			 char *buf, int buflen)
{
	if (t != JSON_TOKEN_STRING || !ingest_is_hex(v) || strlen(v) > 64)
	{
		snprintf(buf, buflen, "%s must be a hex string", name);
		return buf;
	}
	*id = (char *) v;
	return NULL;
}

/*
 * Check the mapped fields in protocol order and fill rec from them.
 * Returns the first field's reject reason (buf may hold it), or NULL.
 */
static const char *
check_fields(IngestBatch *batch, const IngestOrigin *origin, const RecState *st,
			 IngestRecord *rec, char *buf, int buflen)
{
	for (int f = F_TS; f < F_NUM_FIELDS; f++)
	{
		const char *v = st->val[f];
		JsonTokenType t = st->type[f];
		const char *reason = NULL;
		const char *name;

		if (st->rank[f] == 0 && v == NULL && !st->nonscalar[f])
			continue;
		/* the name the record gave the field: reasons use it */
		name = ingest_field_name(st->rank[f] ? st->rank[f] : first_rank((RecField) f));
		if (st->nonscalar[f] && f != F_MESSAGE)
		{
			snprintf(buf, buflen, "%s must not be an object or array", name);
			return buf;
		}
		if (v == NULL)
			continue;
		switch ((RecField) f)
		{
			case F_TS:
				reason = check_ts(name, v, t, origin->received_at, &rec->ts, buf, buflen);
				break;
			case F_SOURCE:
				reason = check_source(origin, v, t, &rec->source, buf, buflen);
				break;
			case F_LEVEL:
				reason = check_level(batch, name, v, t, &rec->level, buf, buflen);
				break;
			case F_SEVERITY_NUMBER:
				reason = check_severity_number(v, t, st->val[F_LEVEL] != NULL, &rec->level);
				break;
			case F_STATUS:
				reason = check_status(name, v, t, rec, buf, buflen);
				break;
			case F_MESSAGE:
				reason = check_message(v, &rec->message);
				break;
			case F_TRACE_ID:
				reason = check_hex_id(name, v, t, &rec->trace_id, buf, buflen);
				break;
			case F_SPAN_ID:
				reason = check_hex_id(name, v, t, &rec->span_id, buf, buflen);
				break;
			case F_SEQ:			/* check_seq */
			case F_ATTR:
			case F_NUM_FIELDS:
				break;
		}
		if (reason)
			return reason;
	}
	/* a forwarder's record without a source field: service.name, if any */
	if (origin->forwarder && st->val[F_SOURCE] == NULL)
	{
		const char *reason = ingest_forward_attr_source(origin, st, &rec->source, buf, buflen);

		if (reason)
			return reason;
	}
	/* a message given as an object or array: its JSON text */
	if (rec->message == NULL && st->raw_message)
		rec->message = st->raw_message;
	return NULL;
}

/*
 * A record with a seq on a stream: may it be kept?  A refused seq is
 * rejected with the origin's reason; a duplicate is only dropped (the
 * caller counts and acks it).
 */
static bool
seq_accepted(IngestBatch *batch, const IngestOrigin *origin, int64 seq,
			 char *text, int len, bool is_text)
{
	const char *seq_reason = NULL;

	if (origin->accept_seq == NULL || origin->accept_seq(origin->arg, seq, &seq_reason))
		return true;
	if (seq_reason)
		ingest_add_reject_bytes(batch, origin, seq_reason, text, len, is_text, true, seq);
	return false;
}

/*
 * The token's source is the same for every record of a connection: one
 * copy (a text datum) per batch while it does not change.
 */
static char *
batch_token_source(IngestBatch *batch, const char *source)
{
	if (batch->last_source == NULL || strcmp(batch->last_source, source) != 0)
	{
		Size		n = strlen(source);
		char	   *t = MemoryContextAlloc(batch->cxt, VARHDRSZ + n + 1);

		SET_VARSIZE(t, VARHDRSZ + n);
		memcpy(t + VARHDRSZ, source, n + 1);
		batch->last_source = t + VARHDRSZ;
	}
	return batch->last_source;
}

/*
 * A kept record's strings must live in the batch's memory.  The scanner
 * put them there already (in_batch); the pg_parse_json path's are
 * copied.  level is a static canonical name or a batch copy.
 */
static void
strings_into_batch(IngestBatch *batch, const IngestOrigin *origin,
				   const RecState *st, IngestRecord *rec)
{
	if (origin->source)
	{
		/* a forwarder's record may name its own (checked), else the token's */
		rec->source = batch_token_source(batch, origin->forwarder && rec->source ?
										 rec->source : origin->source);
		rec->text_ready |= INGEST_TEXT_SOURCE;
	}
	else if (rec->source == NULL)
		rec->source = "unknown";
	else if (!st->in_batch)
		rec->source = ingest_batch_strdup(batch, rec->source);
	else
		rec->text_ready |= INGEST_TEXT_SOURCE;
	if (!st->in_batch)
	{
		rec->message = ingest_batch_strdup(batch, rec->message);
		rec->trace_id = ingest_batch_strdup(batch, rec->trace_id);
		rec->span_id = ingest_batch_strdup(batch, rec->span_id);
	}
	else
	{
		/* JSON strings the scanner decoded carry a text header */
		if (rec->message && rec->message == st->val[F_MESSAGE] &&
			st->type[F_MESSAGE] == JSON_TOKEN_STRING)
			rec->text_ready |= INGEST_TEXT_MESSAGE;
		if (rec->trace_id)
			rec->text_ready |= INGEST_TEXT_TRACE_ID;
		if (rec->span_id)
			rec->text_ready |= INGEST_TEXT_SPAN_ID;
	}
}

/*
 * Field f, which lost to what the line itself says (detect_plain_line),
 * goes to attrs under the name the record gave it.
 */
static void
attrs_add_held(IngestBatch *batch, RecState *st, RecField f)
{
	const char *name = ingest_field_name(st->rank[f]);

	if (st->in_batch)
	{
		/* the scanner's attrs are final text in the batch (or none) */
		MemoryContext old = MemoryContextSwitchTo(batch->cxt);
		StringInfoData b;

		initStringInfo(&b);
		if (st->attrs_text)
		{
			appendBinaryStringInfo(&b, st->attrs_text, strlen(st->attrs_text) - 1);
			appendStringInfoChar(&b, ',');
		}
		else
			appendStringInfoChar(&b, '{');
		appendStringInfo(&b, "\"%s\":", name);
		appendBinaryStringInfo(&b, st->held[f], st->heldlen[f]);
		appendStringInfoChar(&b, '}');
		st->attrs_text = b.data;
		MemoryContextSwitchTo(old);
	}
	else
	{
		appendStringInfoChar(&st->attrs, st->attrs.len == 0 ? '{' : ',');
		escape_json(&st->attrs, name);
		appendStringInfoChar(&st->attrs, ':');
		appendBinaryStringInfo(&st->attrs, st->held[f], st->heldlen[f]);
	}
}

/*
 * A plain-text line is a record with a string message and no level,
 * status or severity_number: what tail-style inputs send.  Unless its
 * source turned detection off, read its level, HTTP status and time from
 * the line itself (detect.c).  The line's own time wins over a time field
 * (for a tailed file the shipper's time is when it read the line, the
 * line's is when it happened); that field then stays in attrs.  A time
 * outside the accepted window is not used.
 */
static void
detect_plain_line(IngestBatch *batch, const IngestOrigin *origin, RecState *st,
				  IngestRecord *rec)
{
	DetectResult d;
	char		buf[INGEST_REJECT_REASON_BYTES];

	if (rec->message == NULL || rec->message != st->val[F_MESSAGE] ||
		st->type[F_MESSAGE] != JSON_TOKEN_STRING ||
		rec->level != NULL || rec->has_status ||
		(origin->detects &&
		 !origin->detects(origin->source && !origin->forwarder ? origin->source :
						  rec->source ? rec->source :
						  origin->source ? origin->source : "unknown")))
		return;
	ingest_detect_line(rec->message, strnlen(rec->message, INGEST_DETECT_SCAN_BYTES + 1),
					   origin->received_at, &d);
	rec->level = (char *) d.level;
	rec->has_status = d.has_status;
	rec->status = d.status;
	if (d.has_ts && ingest_ts_in_window(d.ts, origin->received_at, buf, sizeof(buf)))
	{
		rec->ts = d.ts;
		if (st->rank[F_TS] != 0 && st->val[F_TS] != NULL)
			attrs_add_held(batch, st, F_TS);
	}
}

/* attrs: the fields not mapped to columns, as one JSON object's text */
static void
take_attrs(IngestBatch *batch, RecState *st, IngestRecord *rec)
{
	if (st->attrs_text)
	{
		rec->attrs = st->attrs_text;
		rec->attrs_flat = st->attrs_flat;
	}
	else if (st->attrs.len > 0)
	{
		appendStringInfoChar(&st->attrs, '}');
		rec->attrs = ingest_batch_strdup(batch, st->attrs.data);
		rec->attrs_flat = st->attrs_flat;	/* a door vouches for its text */
	}
}

/* Add a checked record to the batch and tell the origin. */
static void
keep_record(IngestBatch *batch, const IngestOrigin *origin, RecState *st,
			IngestRecord *rec, int len)
{
	detect_plain_line(batch, origin, st, rec);
	strings_into_batch(batch, origin, st, rec);
	rec->stream = origin->stream;
	rec->peer = origin->peer;
	rec->refused = origin->refused;
	rec->origin_arg = origin->arg;
	take_attrs(batch, st, rec);
	if (batch->nrecords >= batch->maxrecords)
		batch->records = ingest_batch_grow(batch, batch->records, &batch->maxrecords, sizeof(IngestRecord));
	batch->records[batch->nrecords++] = *rec;
	batch->bytes += len;
	if (origin->accepted)
		origin->accepted(origin->arg, &batch->records[batch->nrecords - 1]);
}

/*
 * Check a record's collected fields and add it to the batch as a record
 * or a reject.  Shared by the fast scanner and the pg_parse_json path.
 */
void
ingest_finish_record(IngestBatch *batch, const IngestOrigin *origin, RecState *st,
					 char *text, int len)
{
	ingest_finish_record_raw(batch, origin, st, text, len, true);
}

/*
 * The same for a door whose records are not JSON text (OTLP protobuf):
 * RAW is what a reject keeps, text or not (IS_TEXT).
 */
void
ingest_finish_record_raw(IngestBatch *batch, const IngestOrigin *origin, RecState *st,
						 char *text, int len, bool is_text)
{
	IngestRecord rec;
	char		reasonbuf[INGEST_REJECT_REASON_BYTES];
	const char *reason;
	bool		has_seq;
	int64		seq;

	memset(&rec, 0, sizeof(rec));
	rec.received_at = origin->received_at;
	rec.ts = origin->received_at;
	reason = check_seq(st, &has_seq, &seq);
	if (reason == NULL)
		reason = st->bad;
	if (reason == NULL)
		reason = check_fields(batch, origin, st, &rec, reasonbuf, sizeof(reasonbuf));
	if (reason != NULL)
	{
		ingest_add_reject_bytes(batch, origin, reason, text, len, is_text, has_seq, seq);
		return;
	}
	if (has_seq && !seq_accepted(batch, origin, seq, text, len, is_text))
		return;
	rec.has_seq = has_seq;
	rec.seq = seq;
	keep_record(batch, origin, st, &rec, len);
}


/*
 * A record that a door decoded itself (a Loki push entry): its ts is
 * already a value, it has no seq, and its text -- needed only when it is
 * rejected -- is made by RAW_FN.  The fields in ST go through the same
 * checks as every record's; LEN counts towards the batch's bytes.
 */
void
ingest_finish_decoded_record(IngestBatch *batch, const IngestOrigin *origin, RecState *st,
							 TimestampTz ts, IngestRawFn raw_fn, void *raw_arg, int len)
{
	IngestRecord rec;
	char		reasonbuf[128];
	const char *reason = st->bad;

	Assert(st->val[F_TS] == NULL && st->val[F_SEQ] == NULL);
	memset(&rec, 0, sizeof(rec));
	rec.received_at = origin->received_at;
	rec.ts = ts;
	if (reason == NULL && !ingest_ts_in_window(ts, origin->received_at, reasonbuf, sizeof(reasonbuf)))
		reason = reasonbuf;
	if (reason == NULL)
		reason = check_fields(batch, origin, st, &rec, reasonbuf, sizeof(reasonbuf));
	if (reason != NULL)
	{
		StringInfoData raw;

		initStringInfo(&raw);
		raw_fn(raw_arg, &raw);
		ingest_add_reject_bytes(batch, origin, reason, raw.data, raw.len,
								pg_verifymbstr(raw.data, raw.len, true), false, 0);
		pfree(raw.data);
		return;
	}
	keep_record(batch, origin, st, &rec, len);
}
