/*-------------------------------------------------------------------------
 *
 * ingest_parse.c
 *		Turns a protocol message (one JSON object, a JSON array of objects,
 *		or newline-delimited objects) into IngestRecords and IngestRejects.
 *
 * The ingest worker calls this outside any transaction, so nothing here
 * may raise an error for bad input: every problem a client can cause
 * becomes a reject with a reason.  In particular anything COPY would
 * refuse later (invalid UTF-8, NUL characters, numbers jsonb cannot hold)
 * is refused here, because a COPY error would abort the whole batch.
 *
 * Parsing uses PostgreSQL's own JSON lexer (common/jsonapi.h).  Fields
 * the protocol does not map to columns are copied, as their raw JSON
 * text, into the attrs object.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"
#include "utils/memutils.h"

#include "ingest.h"

/* Fields of wire protocol v1 that map to columns. */
typedef enum RecField
{
	F_ATTR = 0,					/* anything else: kept in attrs */
	F_TS,
	F_SOURCE,
	F_LEVEL,
	F_SEVERITY_NUMBER,
	F_STATUS,
	F_MESSAGE,
	F_TRACE_ID,
	F_SPAN_ID,
	F_SEQ,
	F_NUM_FIELDS
} RecField;

static const struct
{
	const char *name;
	RecField	field;
}			field_names[] = {
	{"ts", F_TS},
	{"source", F_SOURCE}, {"service", F_SOURCE},
	{"level", F_LEVEL}, {"severity_text", F_LEVEL},
	{"severity_number", F_SEVERITY_NUMBER},
	{"status", F_STATUS}, {"http.status_code", F_STATUS},
	{"message", F_MESSAGE}, {"msg", F_MESSAGE}, {"body", F_MESSAGE},
	{"trace_id", F_TRACE_ID}, {"span_id", F_SPAN_ID},
	{"seq", F_SEQ},
};

static const char *const field_display[F_NUM_FIELDS] = {
	"", "ts", "source", "level", "severity_number", "status", "message",
	"trace_id", "span_id", "seq"
};

/*
 * Both parse passes track nesting the same way: their states start with
 * this, so the same depth callbacks serve both.
 */
typedef struct DepthState
{
	JsonLexContext *lex;
	int			depth;			/* open objects and arrays */
} DepthState;

/* What one record's parse collects. */
typedef struct RecState
{
	DepthState	d;
	RecField	cur;			/* field whose value is being parsed */
	char	   *cur_start;		/* start of that value's text */
	bool		cur_scalar;		/* value was a scalar */
	char	   *val[F_NUM_FIELDS];	/* scalar token text (NULL = absent) */
	JsonTokenType type[F_NUM_FIELDS];
	bool		nonscalar[F_NUM_FIELDS];
	char	   *raw_message;	/* message given as an object/array */
	StringInfoData attrs;
	bool		attrs_flat;		/* attrs made by the scanner, scalars only */
	char	   *attrs_text;		/* scanner: final attrs text, in the batch */
	bool		in_batch;		/* scanner: val[], raw_message, attrs_text are
								 * already in the batch's memory */
	const char *bad;			/* reason to reject, found while parsing */
} RecState;

/* Split state for a frame that is an array of records. */
typedef struct FrameState
{
	DepthState	d;
	char	   *elem_start;
	int			nelems;
	int			maxelems;
	char	  **elem_starts;
	int		   *elem_lens;
} FrameState;

static MemoryContext parse_cxt = NULL;

IngestBatch *
ingest_batch_create(MemoryContext parent)
{
	/* the struct lives in parent: resetting cxt must not free it */
	IngestBatch *batch = MemoryContextAllocZero(parent, sizeof(IngestBatch));

	batch->cxt = AllocSetContextCreate(parent, "logagg ingest batch",
									   ALLOCSET_DEFAULT_SIZES);
	return batch;
}

/* Forget every record; the memory is reused by the next batch. */
void
ingest_batch_reset(IngestBatch *batch)
{
	MemoryContext cxt = batch->cxt;

	MemoryContextReset(cxt);
	memset(batch, 0, sizeof(IngestBatch));
	batch->cxt = cxt;
}

/* Grow an array kept in the batch context. */
static void *
grow(IngestBatch *batch, void *array, int *max, Size elemsize)
{
	int			newmax = *max ? *max * 2 : 64;
	void	   *res;

	if (array == NULL)
		res = MemoryContextAlloc(batch->cxt, newmax * elemsize);
	else
		res = repalloc(array, newmax * elemsize);
	*max = newmax;
	return res;
}

void
ingest_batch_add_stream(IngestBatch *batch, const char *stream,
						const char *source, int64 last_seq)
{
	IngestStreamUpdate *u;

	for (int i = 0; i < batch->nstreams; i++)
	{
		if (strcmp(batch->streams[i].stream, stream) == 0)
		{
			batch->streams[i].last_seq = Max(batch->streams[i].last_seq, last_seq);
			return;
		}
	}
	if (batch->nstreams >= batch->maxstreams)
		batch->streams = grow(batch, batch->streams, &batch->maxstreams,
							  sizeof(IngestStreamUpdate));
	u = &batch->streams[batch->nstreams++];
	u->stream = MemoryContextStrdup(batch->cxt, stream);
	u->source = source ? MemoryContextStrdup(batch->cxt, source) : NULL;
	u->last_seq = last_seq;
}

/* ---------------------------------------------------------------------
 * Timestamps
 * ---------------------------------------------------------------------
 */
static bool
digits(const char *s, int n, int *out)
{
	int			v = 0;

	for (int i = 0; i < n; i++)
	{
		if (s[i] < '0' || s[i] > '9')
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/*
 * RFC 3339: YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM).  A space may
 * stand for the T, and a bare date-time without zone is taken as UTC
 * (both are common in practice).  Parsed by hand, not with timestamptz_in,
 * because that one raises errors and depends on DateStyle and TimeZone.
 */
static bool
ingest_parse_timestamp(const char *s, int len, TimestampTz *result)
{
	int			year,
				mon,
				day,
				hour,
				min,
				sec;
	int64		usec = 0;
	int			offset_secs = 0;
	int			i;
	int			date;

	if (len < 19 ||
		!digits(s, 4, &year) || s[4] != '-' ||
		!digits(s + 5, 2, &mon) || s[7] != '-' ||
		!digits(s + 8, 2, &day) ||
		(s[10] != 'T' && s[10] != 't' && s[10] != ' ') ||
		!digits(s + 11, 2, &hour) || s[13] != ':' ||
		!digits(s + 14, 2, &min) || s[16] != ':' ||
		!digits(s + 17, 2, &sec))
		return false;
	i = 19;
	if (i < len && s[i] == '.')
	{
		int64		scale = 100000;

		i++;
		if (i >= len || s[i] < '0' || s[i] > '9')
			return false;
		for (; i < len && s[i] >= '0' && s[i] <= '9'; i++)
		{
			usec += (s[i] - '0') * scale;
			scale /= 10;
		}
	}
	if (i < len)
	{
		int			oh,
					om;

		if ((s[i] == 'Z' || s[i] == 'z') && i + 1 == len)
			i++;
		else if ((s[i] == '+' || s[i] == '-') && i + 6 == len &&
				 digits(s + i + 1, 2, &oh) && s[i + 3] == ':' &&
				 digits(s + i + 4, 2, &om) && oh < 24 && om < 60)
		{
			offset_secs = (oh * 3600 + om * 60) * (s[i] == '-' ? -1 : 1);
			i += 6;
		}
		else
			return false;
	}
	if (year < 1 || mon < 1 || mon > 12 || day < 1 ||
		day > day_tab[isleap(year)][mon - 1] ||
		hour > 23 || min > 59 || sec > 60)
		return false;
	if (sec == 60)				/* leap second: the last moment of the minute */
	{
		sec = 59;
		usec = 999999;
	}
	date = date2j(year, mon, day) - POSTGRES_EPOCH_JDATE;
	*result = ((int64) date * SECS_PER_DAY + hour * 3600 + min * 60 + sec - offset_secs)
		* USECS_PER_SEC + usec;
	return true;
}

/* Epoch milliseconds (a JSON number) to a timestamp. */
static bool
epoch_ms_to_timestamp(const char *token, TimestampTz *result)
{
	char	   *end;
	double		ms = strtod(token, &end);

	/* year 1 .. 9999 */
	if (*end != '\0' || isnan(ms) || ms < -62135596800000.0 || ms > 253402300799000.0)
		return false;
	*result = (TimestampTz) llround(ms * 1000.0) -
		((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY);
	return true;
}

/* ---------------------------------------------------------------------
 * Input checks that protect the batch's COPY
 * ---------------------------------------------------------------------
 */

/* Deepest nesting of [ and {, outside strings; stops early past the limit. */
static int
nesting_depth(const char *s, int len)
{
	int			depth = 0,
				max = 0;
	bool		in_string = false;

	for (int i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
		{
			if (++depth > max)
				max = depth;
			if (max > INGEST_MAX_JSON_DEPTH)
				return max;
		}
		else if (c == ']' || c == '}')
			depth--;
	}
	return max;
}

/*
 * jsonb stores numbers as numeric, which refuses huge exponents; a record
 * with one would fail the COPY of the whole batch, so refuse it up front.
 */
static bool
number_fits_numeric(const char *token)
{
	const char *e = strpbrk(token, "eE");
	long		exp;

	if (e == NULL)
		return strlen(token) < 1000;
	exp = strtol(e + 1, NULL, 10);
	return exp > -1000 && exp < 1000 && (e - token) < 1000;
}

static bool
is_hex(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F')))
			return false;
	return true;
}

static bool
parse_int64(const char *s, int64 *out)
{
	char	   *end;
	long long	v;

	if (*s == '\0')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = (int64) v;
	return true;
}

/* ---------------------------------------------------------------------
 * One record
 * ---------------------------------------------------------------------
 */
static RecField
field_of(const char *name)
{
	for (int i = 0; i < lengthof(field_names); i++)
		if (strcmp(name, field_names[i].name) == 0)
			return field_names[i].field;
	return F_ATTR;
}

static void
depth_inc(void *state)
{
	((DepthState *) state)->depth++;
}

static void
depth_dec(void *state)
{
	((DepthState *) state)->depth--;
}

/* The first character of JSON text that parsed: '{', '[', '"', digit... */
static char
first_char(const char *text, int len)
{
	int			i = 0;

	while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
		i++;
	return i < len ? text[i] : '\0';
}

static void
rec_field_start(void *state, char *fname, bool isnull)
{
	RecState   *st = state;

	if (st->d.depth != 1)
		return;
	st->cur = field_of(fname);
	st->cur_start = st->d.lex->token_start;
	st->cur_scalar = false;
}

static void
rec_field_end(void *state, char *fname, bool isnull)
{
	RecState   *st = state;
	char	   *end = st->d.lex->prev_token_terminator;

	if (st->d.depth != 1)
		return;
	if (st->cur == F_ATTR)
	{
		/* keep the field as it came: name re-escaped, value's raw text */
		appendStringInfoChar(&st->attrs, st->attrs.len == 0 ? '{' : ',');
		escape_json(&st->attrs, fname);
		appendStringInfoChar(&st->attrs, ':');
		appendBinaryStringInfo(&st->attrs, st->cur_start, end - st->cur_start);
	}
	else if (!st->cur_scalar)
	{
		st->nonscalar[st->cur] = true;
		st->val[st->cur] = NULL;
		if (st->cur == F_MESSAGE)
			st->raw_message = pnstrdup(st->cur_start, end - st->cur_start);
	}
}

static void
rec_scalar(void *state, char *token, JsonTokenType tokentype)
{
	RecState   *st = state;

	if (tokentype == JSON_TOKEN_NUMBER && !number_fits_numeric(token))
		st->bad = "a number is too large";
	if (st->d.depth != 1)
		return;
	st->cur_scalar = true;
	if (st->cur != F_ATTR)
	{
		st->nonscalar[st->cur] = false;
		st->raw_message = st->cur == F_MESSAGE ? NULL : st->raw_message;
		st->val[st->cur] = tokentype == JSON_TOKEN_NULL ? NULL : token;
		st->type[st->cur] = tokentype;
	}
}

static char *
truncated_copy(MemoryContext cxt, const char *s, int len)
{
	if (len > INGEST_REJECT_RAW_BYTES)
		len = pg_mbcliplen(s, len, INGEST_REJECT_RAW_BYTES);
	return MemoryContextStrdup(cxt, pnstrdup(s, len));
}

static void
add_reject(IngestBatch *batch, const IngestOrigin *origin, const char *reason,
		   const char *raw, int rawlen, bool has_seq, int64 seq)
{
	IngestReject *r;

	if (batch->nrejects >= batch->maxrejects)
		batch->rejects = grow(batch, batch->rejects, &batch->maxrejects, sizeof(IngestReject));
	r = &batch->rejects[batch->nrejects++];
	r->received_at = origin->received_at;
	r->peer = origin->peer ? MemoryContextStrdup(batch->cxt, origin->peer) : NULL;
	r->source = origin->source ? MemoryContextStrdup(batch->cxt, origin->source) : NULL;
	r->reason = MemoryContextStrdup(batch->cxt, reason);
	r->raw = truncated_copy(batch->cxt, raw, rawlen);
	if (origin->rejected)
		origin->rejected(origin->arg, reason, has_seq, seq);
}

static char *
batch_strdup(IngestBatch *batch, const char *s)
{
	return s ? MemoryContextStrdup(batch->cxt, s) : NULL;
}

/*
 * Parse one record's text and add it to the batch as a record or a reject.
 * Returns nothing: the callbacks in origin learn the outcome.
 */
static void finish_record(IngestBatch *batch, const IngestOrigin *origin,
						  RecState *stp, char *text, int len);

static void
parse_record(IngestBatch *batch, const IngestOrigin *origin, char *text, int len)
{
	RecState	st;
	JsonSemAction sem;
	JsonParseErrorType err;
	char		reasonbuf[128];

	memset(&st, 0, sizeof(st));
	memset(&sem, 0, sizeof(sem));
	initStringInfo(&st.attrs);
	st.d.lex = makeJsonLexContextCstringLen(text, len, GetDatabaseEncoding(), true);
	sem.semstate = &st;
	sem.object_start = depth_inc;
	sem.object_end = depth_dec;
	sem.array_start = depth_inc;
	sem.array_end = depth_dec;
	sem.object_field_start = rec_field_start;
	sem.object_field_end = rec_field_end;
	sem.scalar = rec_scalar;

	err = pg_parse_json(st.d.lex, &sem);
	if (err != JSON_SUCCESS)
	{
		snprintf(reasonbuf, sizeof(reasonbuf), "invalid JSON: %s", json_errdetail(err, st.d.lex));
		add_reject(batch, origin, reasonbuf, text, len, false, 0);
		return;
	}
	if (first_char(text, len) != '{')
	{
		add_reject(batch, origin, "a record must be a JSON object", text, len, false, 0);
		return;
	}
	finish_record(batch, origin, &st, text, len);
}

/*
 * Check a record's collected fields and add it to the batch as a record
 * or a reject.  Shared by the fast scanner and the pg_parse_json path.
 */
static void
finish_record(IngestBatch *batch, const IngestOrigin *origin, RecState *stp,
			  char *text, int len)
{
#define st (*stp)
	IngestRecord rec;
	const char *reason = NULL;
	char		reasonbuf[128];
	bool		has_seq = false;
	int64		seq = 0;

	/* seq first: every later error frame should carry it */
	if (st.val[F_SEQ] || st.nonscalar[F_SEQ])
	{
		if (st.nonscalar[F_SEQ] || st.type[F_SEQ] != JSON_TOKEN_NUMBER ||
			!parse_int64(st.val[F_SEQ], &seq) || seq < 0)
			reason = "seq must be a non-negative integer";
		else
			has_seq = true;
	}

	memset(&rec, 0, sizeof(rec));
	rec.received_at = origin->received_at;
	rec.ts = origin->received_at;
	if (reason == NULL && st.bad)
		reason = st.bad;
	for (int f = F_TS; reason == NULL && f < F_NUM_FIELDS; f++)
	{
		const char *v = st.val[f];
		JsonTokenType t = st.type[f];

		if (st.nonscalar[f] && f != F_MESSAGE)
		{
			snprintf(reasonbuf, sizeof(reasonbuf), "%s must not be an object or array",
					 field_display[f]);
			reason = reasonbuf;
			break;
		}
		if (v == NULL)
			continue;
		switch ((RecField) f)
		{
			case F_TS:
				if (!(t == JSON_TOKEN_STRING ? ingest_parse_timestamp(v, strlen(v), &rec.ts) :
					  t == JSON_TOKEN_NUMBER ? epoch_ms_to_timestamp(v, &rec.ts) : false))
					reason = "ts must be an RFC 3339 timestamp or epoch milliseconds";
				break;
			case F_SOURCE:
				if (t != JSON_TOKEN_STRING || (origin->source == NULL && !logagg_valid_source_name(v)))
					reason = "source must be 1-128 letters, digits, '.', '_' or '-'";
				else
					rec.source = (char *) v;
				break;
			case F_LEVEL:
				if (t != JSON_TOKEN_STRING || strlen(v) > 32)
					reason = "level must be a string of at most 32 characters";
				else
				{
					const char *canon = logagg_normalize_level(v, strlen(v));

					/* canonical names are static strings: no copy */
					if (canon)
						rec.level = (char *) canon;
					else
					{
						rec.level = MemoryContextStrdup(batch->cxt, v);
						for (char *p = rec.level; *p; p++)
							*p = pg_ascii_tolower((unsigned char) *p);
					}
				}
				break;
			case F_SEVERITY_NUMBER:
				{
					int64		n;

					if (t != JSON_TOKEN_NUMBER || !parse_int64(v, &n) || n < 1 || n > 24)
						reason = "severity_number must be an integer from 1 to 24";
					else if (st.val[F_LEVEL] == NULL)
						rec.level = (char *) logagg_level_from_severity_number((int) n);
				}
				break;
			case F_STATUS:
				{
					int64		n;

					/* "503" is common enough from string-typed loggers */
					if ((t != JSON_TOKEN_NUMBER && t != JSON_TOKEN_STRING) ||
						!parse_int64(v, &n) || n < 0 || n > 999)
						reason = "status must be an integer from 0 to 999";
					else
					{
						rec.has_status = true;
						rec.status = (int) n;
					}
				}
				break;
			case F_MESSAGE:
				rec.message = (char *) v;
				break;
			case F_TRACE_ID:
			case F_SPAN_ID:
				if (t != JSON_TOKEN_STRING || !is_hex(v) || strlen(v) > 64)
				{
					snprintf(reasonbuf, sizeof(reasonbuf), "%s must be a hex string",
							 field_display[f]);
					reason = reasonbuf;
				}
				else if (f == F_TRACE_ID)
					rec.trace_id = (char *) v;
				else
					rec.span_id = (char *) v;
				break;
			case F_SEQ:
			case F_ATTR:
			case F_NUM_FIELDS:
				break;
		}
	}
	if (reason == NULL && rec.message == NULL && st.raw_message)
		rec.message = st.raw_message;

	if (reason != NULL)
	{
		add_reject(batch, origin, reason, text, len, has_seq, seq);
		return;
	}
	if (has_seq && origin->accept_seq)
	{
		const char *seq_reason = NULL;

		if (!origin->accept_seq(origin->arg, seq, &seq_reason))
		{
			if (seq_reason)
				add_reject(batch, origin, seq_reason, text, len, has_seq, seq);
			return;				/* a duplicate is counted and acked by the caller */
		}
	}

	/*
	 * Keep it: its strings must live in the batch's memory.  The scanner
	 * put them there already (in_batch); the pg_parse_json path's are
	 * copied.  level is a static canonical name or a batch copy.  The
	 * token's source is the same for every record of a connection: one
	 * copy per batch while it does not change.
	 */
	if (origin->source)
	{
		if (batch->last_source == NULL || strcmp(batch->last_source, origin->source) != 0)
		{
			Size		n = strlen(origin->source);
			char	   *t = MemoryContextAlloc(batch->cxt, VARHDRSZ + n + 1);

			SET_VARSIZE(t, VARHDRSZ + n);
			memcpy(t + VARHDRSZ, origin->source, n + 1);
			batch->last_source = t + VARHDRSZ;
		}
		rec.source = batch->last_source;
		rec.text_ready |= INGEST_TEXT_SOURCE;
	}
	else if (rec.source == NULL)
		rec.source = "unknown";
	else if (!st.in_batch)
		rec.source = batch_strdup(batch, rec.source);
	else
		rec.text_ready |= INGEST_TEXT_SOURCE;
	if (!st.in_batch)
	{
		rec.message = batch_strdup(batch, rec.message);
		rec.trace_id = batch_strdup(batch, rec.trace_id);
		rec.span_id = batch_strdup(batch, rec.span_id);
	}
	else
	{
		/* JSON strings the scanner decoded carry a text header */
		if (rec.message && rec.message == st.val[F_MESSAGE] &&
			st.type[F_MESSAGE] == JSON_TOKEN_STRING)
			rec.text_ready |= INGEST_TEXT_MESSAGE;
		if (rec.trace_id)
			rec.text_ready |= INGEST_TEXT_TRACE_ID;
		if (rec.span_id)
			rec.text_ready |= INGEST_TEXT_SPAN_ID;
	}
	rec.stream = origin->stream;
	rec.has_seq = has_seq;
	rec.seq = seq;
	if (st.attrs_text)
	{
		rec.attrs = st.attrs_text;
		rec.attrs_flat = st.attrs_flat;
	}
	else if (st.attrs.len > 0)
	{
		appendStringInfoChar(&st.attrs, '}');
		rec.attrs = batch_strdup(batch, st.attrs.data);
	}
	if (batch->nrecords >= batch->maxrecords)
		batch->records = grow(batch, batch->records, &batch->maxrecords, sizeof(IngestRecord));
	batch->records[batch->nrecords++] = rec;
	batch->bytes += len;
	if (origin->accepted)
		origin->accepted(origin->arg, &batch->records[batch->nrecords - 1]);
#undef st
}

/* ---------------------------------------------------------------------
 * Fast path: a strict one-pass scanner for what clients usually send
 * ---------------------------------------------------------------------
 *
 * pg_parse_json with callbacks allocates every field name and scalar,
 * de-escapes byte by byte, and an array frame is lexed twice (once to
 * split it, once per record): that was about a third of the ingest
 * worker's time.  The scanner below walks a unit once, keeps attrs as
 * raw spans and fills the same RecState as the callbacks do, then hands
 * it to finish_record.
 *
 * It accepts a strict subset of what PostgreSQL's JSON parser accepts
 * (so attrs can never make jsonb_in fail in the batch's COPY): anything
 * it is not sure about -- a \u escape, an escaped field name, a syntax
 * error, a non-object array element -- makes it give up on the whole
 * unit before anything was added to the batch, and the unit goes through
 * the pg_parse_json path, which yields the usual records, rejects and
 * error texts.
 */
#define IS_WS(c) ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

static inline char *
skip_ws(char *p, char *end)
{
	while (p < end && IS_WS(*p))
		p++;
	return p;
}

/*
 * The string whose opening quote is at p: returns the position after its
 * closing quote, or NULL (give up).  *has_esc tells whether it holds
 * (simple, one-character) escapes.
 */
static inline char *
scan_string(char *p, char *end, bool *has_esc)
{
	*has_esc = false;
	for (p++; p < end; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c == '"')
			return p + 1;
		if (c == '\\')
		{
			if (p + 1 >= end)
				return NULL;
			switch (p[1])
			{
				case '"':
				case '\\':
				case '/':
				case 'b':
				case 'f':
				case 'n':
				case 'r':
				case 't':
					break;
				default:
					return NULL;	/* \u and anything else: slow path */
			}
			*has_esc = true;
			p++;
		}
		else if (c < 0x20)
			return NULL;
	}
	return NULL;
}

/*
 * The string between quotes s..e, de-escaped, NUL-terminated.  It is
 * preceded by a text varlena header (see TEXT_OF), so that the batch
 * writer can hand it to COPY as a text value without copying it again.
 */
static char *
decode_string(const char *s, const char *e, bool has_esc)
{
	char	   *t = palloc(VARHDRSZ + e - s + 1);
	char	   *out = t + VARHDRSZ;
	char	   *o = out;

	if (!has_esc)
	{
		memcpy(out, s, e - s);
		out[e - s] = '\0';
		SET_VARSIZE(t, VARHDRSZ + e - s);
		return out;
	}
	while (s < e)
	{
		if (*s != '\\')
		{
			*o++ = *s++;
			continue;
		}
		s++;
		switch (*s)
		{
			case 'b':
				*o++ = '\b';
				break;
			case 'f':
				*o++ = '\f';
				break;
			case 'n':
				*o++ = '\n';
				break;
			case 'r':
				*o++ = '\r';
				break;
			case 't':
				*o++ = '\t';
				break;
			default:			/* " \ / */
				*o++ = *s;
				break;
		}
		s++;
	}
	*o = '\0';
	SET_VARSIZE(t, VARHDRSZ + o - out);
	return out;
}

/*
 * A JSON number at p (RFC 8259 grammar, as PostgreSQL's lexer reads it).
 * Returns its end or NULL.  *too_big is set when numeric (jsonb) could
 * not hold it, by the same rule as number_fits_numeric.
 */
static inline char *
scan_number(char *p, char *end, bool *too_big)
{
	char	   *start = p;

	if (p < end && *p == '-')
		p++;
	if (p >= end)
		return NULL;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (p < end && IS_DIGIT(*p))
			p++;
	else
		return NULL;
	if (p < end && *p == '.')
	{
		p++;
		if (p >= end || !IS_DIGIT(*p))
			return NULL;
		while (p < end && IS_DIGIT(*p))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E'))
	{
		char	   *e = p;
		bool		neg = false;
		long		exp = 0;

		p++;
		if (p < end && (*p == '+' || *p == '-'))
			neg = *p++ == '-';
		if (p >= end || !IS_DIGIT(*p))
			return NULL;
		while (p < end && IS_DIGIT(*p))
		{
			if (exp < 100000)
				exp = exp * 10 + (*p - '0');
			p++;
		}
		if (neg)
			exp = -exp;
		if (!(exp > -1000 && exp < 1000 && (e - start) < 1000))
			*too_big = true;
	}
	else if (p - start >= 1000)
		*too_big = true;
	return p;
}

static inline char *
scan_literal(char *p, char *end, JsonTokenType *type)
{
	if (end - p >= 4 && memcmp(p, "true", 4) == 0)
	{
		*type = JSON_TOKEN_TRUE;
		return p + 4;
	}
	if (end - p >= 5 && memcmp(p, "false", 5) == 0)
	{
		*type = JSON_TOKEN_FALSE;
		return p + 5;
	}
	if (end - p >= 4 && memcmp(p, "null", 4) == 0)
	{
		*type = JSON_TOKEN_NULL;
		return p + 4;
	}
	return NULL;
}

/* Any JSON value at p; returns its end or NULL. */
static char *
scan_value(char *p, char *end, int depth, bool *too_big)
{
	bool		esc;
	JsonTokenType t;

	if (p >= end)
		return NULL;
	switch (*p)
	{
		case '"':
			return scan_string(p, end, &esc);
		case '{':
		case '[':
			{
				char		close = *p == '{' ? '}' : ']';
				bool		obj = *p == '{';

				if (depth >= INGEST_MAX_JSON_DEPTH)
					return NULL;
				p = skip_ws(p + 1, end);
				if (p < end && *p == close)
					return p + 1;
				for (;;)
				{
					if (obj)
					{
						if (p >= end || *p != '"' || (p = scan_string(p, end, &esc)) == NULL)
							return NULL;
						p = skip_ws(p, end);
						if (p >= end || *p != ':')
							return NULL;
						p = skip_ws(p + 1, end);
					}
					if ((p = scan_value(p, end, depth + 1, too_big)) == NULL)
						return NULL;
					p = skip_ws(p, end);
					if (p < end && *p == ',')
					{
						p = skip_ws(p + 1, end);
						continue;
					}
					if (p < end && *p == close)
						return p + 1;
					return NULL;
				}
			}
		case 't':
		case 'f':
		case 'n':
			return scan_literal(p, end, &t);
		default:
			return scan_number(p, end, too_big);
	}
}

/* field_of for a name that is not NUL-terminated (lengths compared first) */
static RecField
field_of_len(const char *name, int len)
{
	static uint8 lens[lengthof(field_names)];

	if (lens[0] == 0)
		for (int i = 0; i < lengthof(field_names); i++)
			lens[i] = (uint8) strlen(field_names[i].name);
	for (int i = 0; i < lengthof(field_names); i++)
		if (lens[i] == len && memcmp(name, field_names[i].name, len) == 0)
			return field_names[i].field;
	return F_ATTR;
}

/*
 * One record object at *pp (its '{'): fills st like the pg_parse_json
 * callbacks would, advances *pp past the '}'.  false = give up.
 *
 * The field values it keeps, and the final attrs text, are allocated in
 * the current memory context, which fast_unit makes the batch's, so that
 * finish_record need not copy them again (a record given up on leaves
 * them there until the batch is reset; at most the message's size).
 * abuf is scratch space for building attrs, shared by a unit's records.
 * depth is the record's own nesting level (2 inside an array), so that
 * values nested deeper than INGEST_MAX_JSON_DEPTH in all make it give up.
 */
static bool
scan_record(char **pp, char *end, RecState *st, StringInfo abuf, int depth)
{
	char	   *p = *pp;
	bool		too_big = false;

	memset(st, 0, sizeof(RecState));
	st->attrs_flat = true;
	st->in_batch = true;
	resetStringInfo(abuf);
	p = skip_ws(p + 1, end);
	if (p < end && *p == '}')
	{
		*pp = p + 1;
		return true;
	}
	for (;;)
	{
		char	   *ks,
				   *ke,
				   *vs,
				   *ve;
		bool		esc;
		RecField	f;

		if (p >= end || *p != '"')
			return false;
		ks = p;
		if ((ke = scan_string(p, end, &esc)) == NULL || esc)
			return false;
		f = field_of_len(ks + 1, ke - ks - 2);
		p = skip_ws(ke, end);
		if (p >= end || *p != ':')
			return false;
		vs = p = skip_ws(p + 1, end);
		if (p >= end)
			return false;

		if (f == F_ATTR)
		{
			if ((ve = scan_value(vs, end, depth, &too_big)) == NULL)
				return false;
			if (*vs == '{' || *vs == '[')
				st->attrs_flat = false;
			appendStringInfoChar(abuf, abuf->len == 0 ? '{' : ',');
			appendBinaryStringInfo(abuf, ks, ke - ks);	/* name as it came */
			appendStringInfoChar(abuf, ':');
			appendBinaryStringInfo(abuf, vs, ve - vs);
		}
		else if (*vs == '{' || *vs == '[')
		{
			if ((ve = scan_value(vs, end, depth, &too_big)) == NULL)
				return false;
			st->nonscalar[f] = true;
			st->val[f] = NULL;
			if (f == F_MESSAGE)
				st->raw_message = pnstrdup(vs, ve - vs);
		}
		else
		{
			JsonTokenType t;
			char	   *v;

			if (*vs == '"')
			{
				if ((ve = scan_string(vs, end, &esc)) == NULL)
					return false;
				t = JSON_TOKEN_STRING;
				v = decode_string(vs + 1, ve - 1, esc);
			}
			else if (*vs == 't' || *vs == 'f' || *vs == 'n')
			{
				if ((ve = scan_literal(vs, end, &t)) == NULL)
					return false;
				v = t == JSON_TOKEN_NULL ? NULL : pnstrdup(vs, ve - vs);
			}
			else
			{
				if ((ve = scan_number(vs, end, &too_big)) == NULL)
					return false;
				t = JSON_TOKEN_NUMBER;
				v = pnstrdup(vs, ve - vs);
			}
			st->nonscalar[f] = false;
			if (f == F_MESSAGE)
				st->raw_message = NULL;
			st->val[f] = v;
			st->type[f] = t;
		}
		p = skip_ws(ve, end);
		if (p < end && *p == ',')
		{
			p = skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == '}')
			break;
		return false;
	}
	if (too_big)
		st->bad = "a number is too large";
	if (abuf->len > 0)
	{
		appendStringInfoChar(abuf, '}');
		st->attrs_text = palloc(abuf->len + 1);
		memcpy(st->attrs_text, abuf->data, abuf->len + 1);
	}
	*pp = p + 1;
	return true;
}

/*
 * One unit (an object, or an array of objects) by the fast scanner.
 * Returns true when it was handled.  false: nothing was added, and
 * *several tells that a valid first value was followed by more text
 * (newline-delimited input, when may_be_several).
 */
static bool
fast_unit(IngestBatch *batch, const IngestOrigin *origin, char *text, int len,
		  bool may_be_several, bool *several)
{
	char	   *end = text + len;
	char	   *p = skip_ws(text, end);
	RecState   *recs;
	char	  **starts;
	int		   *lens;
	int			n = 0,
				max;
	StringInfoData abuf;
	MemoryContext oldcxt;
	bool		ok;

	*several = false;
	if (p >= end)
		return false;
	initStringInfo(&abuf);
	if (*p == '{')
	{
		RecState	st;

		oldcxt = MemoryContextSwitchTo(batch->cxt);
		ok = scan_record(&p, end, &st, &abuf, 1);
		MemoryContextSwitchTo(oldcxt);
		if (!ok)
			return false;
		if (skip_ws(p, end) < end)
		{
			*several = may_be_several;
			return false;
		}
		finish_record(batch, origin, &st, text, len);
		return true;
	}
	if (*p != '[')
		return false;

	max = 64;
	recs = palloc(max * sizeof(RecState));
	starts = palloc(max * sizeof(char *));
	lens = palloc(max * sizeof(int));
	p = skip_ws(p + 1, end);
	if (p < end && *p == ']')
		p++;
	else
	{
		for (;;)
		{
			char	   *s = p;

			if (p >= end || *p != '{')
				return false;
			if (n >= max)
			{
				max *= 2;
				recs = repalloc(recs, max * sizeof(RecState));
				starts = repalloc(starts, max * sizeof(char *));
				lens = repalloc(lens, max * sizeof(int));
			}
			oldcxt = MemoryContextSwitchTo(batch->cxt);
			ok = scan_record(&p, end, &recs[n], &abuf, 2);
			MemoryContextSwitchTo(oldcxt);
			if (!ok)
				return false;
			starts[n] = s;
			lens[n] = p - s;
			n++;
			p = skip_ws(p, end);
			if (p < end && *p == ',')
			{
				p = skip_ws(p + 1, end);
				continue;
			}
			if (p < end && *p == ']')
			{
				p++;
				break;
			}
			return false;
		}
	}
	if (skip_ws(p, end) < end)
	{
		*several = may_be_several;
		return false;
	}
	for (int i = 0; i < n; i++)
		finish_record(batch, origin, &recs[i], starts[i], lens[i]);
	return true;
}

/*
 * The attrs jsonb of a record whose attrs_flat is set, built straight
 * from its text instead of by jsonb_in (which lexes it again, allocates
 * every token and goes through the generic parser's callbacks: ~10 % of
 * the ingest worker's time).  Such text was written by scan_record from
 * spans it had checked: '{', then "name":value pairs separated by ',',
 * then '}', with no whitespace, names without escapes, and values that
 * are strings without \u escapes, numbers that numeric can hold, true,
 * false or null.  So this walk need not check anything.  The result is
 * the same jsonb that jsonb_in gives: keys sorted the way jsonb keeps
 * them, and of duplicate keys the last one kept.  Called in the
 * batch's transaction (numeric_in may allocate; errors are not expected).
 */
Datum
ingest_flat_attrs_jsonb(const char *s)
{
	JsonbPair	pairbuf[16];
	JsonbPair  *pairs = pairbuf;
	int			maxpairs = lengthof(pairbuf);
	int			n = 0;
	JsonbValue	obj;

	Assert(*s == '{');
	s++;
	while (*s == '"')
	{
		const char *ks = ++s;
		JsonbValue *v;

		if (n >= maxpairs)
		{
			JsonbPair  *bigger = palloc(2 * maxpairs * sizeof(JsonbPair));

			memcpy(bigger, pairs, n * sizeof(JsonbPair));
			pairs = bigger;
			maxpairs *= 2;
		}
		s = strchr(s, '"');
		pairs[n].key.type = jbvString;
		pairs[n].key.val.string.val = (char *) ks;
		pairs[n].key.val.string.len = s - ks;
		pairs[n].order = n;
		v = &pairs[n].value;
		s += 2;					/* the quote and the ':' */
		switch (*s)
		{
			case '"':
				{
					const char *vs = ++s;
					bool		esc = false;

					while (*s != '"')
					{
						if (*s == '\\')
						{
							esc = true;
							s++;
						}
						s++;
					}
					v->type = jbvString;
					v->val.string.val = esc ? decode_string(vs, s, true) : (char *) vs;
					v->val.string.len = esc ? strlen(v->val.string.val) : s - vs;
					s++;
					break;
				}
			case 't':
				v->type = jbvBool;
				v->val.boolean = true;
				s += 4;
				break;
			case 'f':
				v->type = jbvBool;
				v->val.boolean = false;
				s += 5;
				break;
			case 'n':
				v->type = jbvNull;
				s += 4;
				break;
			default:
				{
					const char *ns = s;
					bool		plain = true;	/* -?digits only */
					char		buf[24];

					if (*s == '-')
						s++;
					while (IS_DIGIT(*s))
						s++;
					while (*s != ',' && *s != '}')
					{
						plain = false;
						s++;
					}
					v->type = jbvNumeric;
					if (plain && s - ns <= 18)
					{
						/* same numeric as numeric_in gives, without its parsing */
						memcpy(buf, ns, s - ns);
						buf[s - ns] = '\0';
						v->val.numeric = int64_to_numeric(strtoll(buf, NULL, 10));
					}
					else
						v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																			 CStringGetDatum(pnstrdup(ns, s - ns)),
																			 ObjectIdGetDatum(InvalidOid),
																			 Int32GetDatum(-1)));
					break;
				}
		}
		n++;
		if (*s == ',')
			s++;
	}
	Assert(*s == '}');

	/*
	 * jsonb keeps an object's keys sorted by length, then bytes, each key
	 * once (the last one given wins).  A stable insertion sort: records
	 * have a handful of attrs, often already in order.
	 */
	for (int i = 1; i < n; i++)
	{
		JsonbPair	p = pairs[i];
		int			j = i;

		while (j > 0)
		{
			const JsonbValue *a = &pairs[j - 1].key;
			int			c = a->val.string.len != p.key.val.string.len ?
				(a->val.string.len > p.key.val.string.len ? 1 : -1) :
				memcmp(a->val.string.val, p.key.val.string.val, p.key.val.string.len);

			if (c <= 0)
				break;
			pairs[j] = pairs[j - 1];
			j--;
		}
		pairs[j] = p;
	}
	if (n > 1)
	{
		int			out = 0;

		for (int i = 0; i < n; i++)
		{
			if (i + 1 < n &&
				pairs[i].key.val.string.len == pairs[i + 1].key.val.string.len &&
				memcmp(pairs[i].key.val.string.val, pairs[i + 1].key.val.string.val,
					   pairs[i].key.val.string.len) == 0)
				continue;		/* a later duplicate follows: it wins */
			pairs[out++] = pairs[i];
		}
		n = out;
	}

	obj.type = jbvObject;
	obj.val.object.nPairs = n;
	obj.val.object.pairs = pairs;
	return JsonbPGetDatum(JsonbValueToJsonb(&obj));
}

/* ---------------------------------------------------------------------
 * Framing: object, array of objects, or newline-delimited objects
 * ---------------------------------------------------------------------
 */
static void
frame_elem_start(void *state, bool isnull)
{
	FrameState *st = state;

	if (st->d.depth == 1)
		st->elem_start = st->d.lex->token_start;
}

static void
frame_elem_end(void *state, bool isnull)
{
	FrameState *st = state;

	if (st->d.depth != 1)
		return;
	if (st->nelems >= st->maxelems)
	{
		st->maxelems = st->maxelems ? st->maxelems * 2 : 64;
		st->elem_starts = st->elem_starts ?
			repalloc(st->elem_starts, st->maxelems * sizeof(char *)) :
			palloc(st->maxelems * sizeof(char *));
		st->elem_lens = st->elem_lens ?
			repalloc(st->elem_lens, st->maxelems * sizeof(int)) :
			palloc(st->maxelems * sizeof(int));
	}
	st->elem_starts[st->nelems] = st->elem_start;
	st->elem_lens[st->nelems] = st->d.lex->prev_token_terminator - st->elem_start;
	st->nelems++;
}

/*
 * One JSON value: an object is a record, an array is a list of records.
 * Returns false (having done nothing) if text holds more than one value,
 * so the caller can split it into lines.
 */
static bool
parse_unit(IngestBatch *batch, const IngestOrigin *origin, char *text, int len,
		   bool may_be_several)
{
	FrameState	st;
	JsonSemAction sem;
	JsonParseErrorType err;
	char		reasonbuf[160];

	memset(&st, 0, sizeof(st));
	memset(&sem, 0, sizeof(sem));
	st.d.lex = makeJsonLexContextCstringLen(text, len, GetDatabaseEncoding(), false);
	sem.semstate = &st;
	sem.object_start = depth_inc;
	sem.object_end = depth_dec;
	sem.array_start = depth_inc;
	sem.array_end = depth_dec;
	sem.array_element_start = frame_elem_start;
	sem.array_element_end = frame_elem_end;

	err = pg_parse_json(st.d.lex, &sem);
	if (err == JSON_EXPECTED_END && may_be_several)
		return false;
	if (err != JSON_SUCCESS)
	{
		snprintf(reasonbuf, sizeof(reasonbuf), "invalid JSON: %s", json_errdetail(err, st.d.lex));
		add_reject(batch, origin, reasonbuf, text, len, false, 0);
		return true;
	}
	if (first_char(text, len) != '[')
	{
		parse_record(batch, origin, text, len);
		return true;
	}
	for (int i = 0; i < st.nelems; i++)
		parse_record(batch, origin, st.elem_starts[i], st.elem_lens[i]);
	return true;
}

/*
 * Parse one complete message into the batch.  data must stay valid and
 * writable during the call (the lexer needs no terminator; len bounds it).
 */
void
ingest_parse_message(IngestBatch *batch, const IngestOrigin *origin, char *data, int len)
{
	MemoryContext oldcxt;
	bool		several;

	if (parse_cxt == NULL)
		parse_cxt = AllocSetContextCreate(TopMemoryContext, "logagg ingest parse",
										  ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(parse_cxt);

	if (!pg_verifymbstr(data, len, true))
		add_reject(batch, origin, "message is not valid UTF-8 text (or contains a NUL byte)",
				   "", 0, false, 0);
	else if (fast_unit(batch, origin, data, len, true, &several))
		;						/* the usual case: done in one pass */
	else if (nesting_depth(data, len) > INGEST_MAX_JSON_DEPTH)
	{
		/* before pg_parse_json, whose recursion would raise an error */
		add_reject(batch, origin, "JSON nested more than 64 levels deep", data, len, false, 0);
	}
	else if (several || !parse_unit(batch, origin, data, len, true))
	{
		/* newline-delimited: each non-blank line is one unit */
		char	   *p = data;
		char	   *end = data + len;

		while (p < end)
		{
			char	   *nl = memchr(p, '\n', end - p);
			char	   *lend = nl ? nl : end;
			char	   *s = p;

			while (s < lend && (*s == ' ' || *s == '\t' || *s == '\r'))
				s++;
			if (s < lend && !fast_unit(batch, origin, s, lend - s, false, &several))
				(void) parse_unit(batch, origin, s, lend - s, false);
			p = lend + 1;
		}
	}
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(parse_cxt);
}
