/*-------------------------------------------------------------------------
 *
 * ingest_parse.c
 *		Turns a protocol message (one JSON object, a JSON array of objects,
 *		or newline-delimited objects) into IngestRecords and IngestRejects.
 *
 * The ingest worker calls this outside any transaction, so nothing here
 * may raise an error for bad input: every problem a client can cause
 * becomes a reject with a reason.  In particular anything COPY would
 * refuse later (invalid UTF-8, NUL characters, numbers jsonb cannot hold,
 * \u escapes the database encoding lacks) is refused here, because a COPY
 * error would abort the whole batch; and nesting is bounded before
 * PostgreSQL's recursive JSON parser sees it.
 *
 * The unit of refusal is one record: an NDJSON line, an array element,
 * or a message that cannot be split.  Each is checked and parsed on its
 * own, in scratch memory reset after it, and a reject keeps the record's
 * exact bytes.  A message of many records can be parsed over several
 * batches (ingest_parse_message_part), so that one message never makes a
 * batch, or the time between two turns of the event loop, unbounded.
 *
 * A strict one-pass scanner handles what clients usually send (objects
 * and arrays of objects without \u escapes) and keeps the fields the
 * protocol does not map to columns as raw spans for attrs.  Anything it
 * is unsure of goes through PostgreSQL's JSON parser (pg_parse_json,
 * common/jsonapi.h) instead, with the same records, rejects and reasons.
 * Also here: field mapping and validation, the RFC 3339 / epoch-ms
 * timestamp parser, and attrs as jsonb built straight from the scanner's
 * text.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include <openssl/sha.h>

#include "access/xact.h"
#include "catalog/namespace.h"
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

/*
 * Scratch memory: parse_cxt for a message, line_cxt for one line of
 * newline-delimited input, rec_cxt for one record of the pg_parse_json
 * path.  Each is reset when its unit is done.
 */
static MemoryContext parse_cxt = NULL;
static MemoryContext line_cxt = NULL;
static MemoryContext rec_cxt = NULL;

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

/*
 * Deepest nesting of [ and {, outside strings; stops early past the limit.
 * A closing bracket without an opening one never lowers the count below
 * zero: JSON that pg_parse_json accepts up to some point never does that,
 * so over any text the result bounds the depth its recursion can reach
 * (stray closing brackets on one line must not hide deep opening ones on
 * the next).
 */
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
		else if ((c == ']' || c == '}') && depth > 0)
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

/*
 * A reason as it goes into logagg.rejected and the error frame: at most
 * INGEST_REJECT_REASON_BYTES, cut at a character boundary.  Reasons only
 * quote input that was checked to be valid text (a JSON error names the
 * token it stopped at), so the result is valid text too.  Consecutive
 * rejects with the same reason share one copy (a message of many equally
 * bad lines must not cost a copy per line).
 */
static const char *
reject_reason(IngestBatch *batch, const char *reason)
{
	int			len = strlen(reason);
	char	   *copy;

	if (len > INGEST_REJECT_REASON_BYTES)
		len = pg_mbcliplen(reason, len, INGEST_REJECT_REASON_BYTES);
	if (batch->nrejects > 0)
	{
		const char *prev = batch->rejects[batch->nrejects - 1].reason;

		if (strncmp(prev, reason, len) == 0 && prev[len] == '\0')
			return prev;
	}
	copy = MemoryContextAlloc(batch->cxt, len + 1);
	memcpy(copy, reason, len);
	copy[len] = '\0';
	return copy;
}

/* origin's peer or source in the batch, shared with the previous reject */
static const char *
reject_origin_string(IngestBatch *batch, const char *s, bool peer)
{
	if (s == NULL)
		return NULL;
	if (batch->nrejects > 0)
	{
		const IngestReject *prev = &batch->rejects[batch->nrejects - 1];
		const char *p = peer ? prev->peer : prev->source;

		if (p && strcmp(p, s) == 0)
			return p;
	}
	return MemoryContextStrdup(batch->cxt, s);
}

/*
 * Refuse one record: raw/rawlen are its exact bytes (an NDJSON line, an
 * array element or a whole message).  is_text tells that they were found
 * to be valid text in the database encoding (then rejected.raw gets them
 * too).  The first INGEST_REJECT_RAW_BYTES are kept; for a longer record
 * its length and SHA-256 tell what was cut.
 */
static void
add_reject_bytes(IngestBatch *batch, const IngestOrigin *origin, const char *reason,
				 const char *raw, int rawlen, bool is_text, bool has_seq, int64 seq)
{
	IngestReject *r;
	const char *why;
	int			keep = Min(rawlen, INGEST_REJECT_RAW_BYTES);

	if (batch->nrejects >= batch->maxrejects)
		batch->rejects = ingest_batch_grow(batch, batch->rejects, &batch->maxrejects, sizeof(IngestReject));
	why = reject_reason(batch, reason);
	r = &batch->rejects[batch->nrejects];
	memset(r, 0, sizeof(IngestReject));
	r->received_at = origin->received_at;
	r->peer = reject_origin_string(batch, origin->peer, true);
	r->source = reject_origin_string(batch, origin->source, false);
	r->reason = why;
	r->stream = origin->stream;
	r->has_seq = has_seq;
	r->seq = seq;
	r->raw = MemoryContextAlloc(batch->cxt, keep + 1);
	memcpy(r->raw, raw, keep);
	r->raw[keep] = '\0';
	r->raw_len = keep;
	r->raw_text_len = !is_text ? -1 :
		keep < rawlen ? pg_mbcliplen(raw, rawlen, keep) : keep;
	r->raw_length = rawlen;
	if (keep < rawlen)
	{
		/*
		 * OpenSSL's one-shot digest: pg_cryptohash would need a resource
		 * owner, which the worker has none of outside a transaction.
		 */
		r->raw_sha256 = MemoryContextAlloc(batch->cxt, SHA256_DIGEST_LENGTH);
		SHA256((const unsigned char *) raw, rawlen, r->raw_sha256);
	}
	batch->nrejects++;
	if (origin->rejected)
		origin->rejected(origin->arg, why, has_seq, seq);
}

/* A record that is valid text: the usual case. */
static void
add_reject(IngestBatch *batch, const IngestOrigin *origin, const char *reason,
		   const char *raw, int rawlen, bool has_seq, int64 seq)
{
	add_reject_bytes(batch, origin, reason, raw, rawlen, true, has_seq, seq);
}

/*
 * Parse one record's text and add it to the batch as a record or a reject.
 * Returns nothing: the callbacks in origin learn the outcome.
 */
static void finish_record(IngestBatch *batch, const IngestOrigin *origin,
						  RecState *st, char *text, int len);

/*
 * Can the database encoding hold code point cp?  The JSON lexer turns a
 * \u escape into the database encoding with pg_unicode_to_server, which
 * raises an error for a character the encoding lacks; so does jsonb_in
 * for attrs in the batch's COPY.  The conversion function is looked up
 * once (in a short transaction when there is none: the worker parses
 * outside transactions) and called in its no-error mode.
 */
static bool
unicode_fits_database(pg_wchar cp)
{
	static bool looked_up = false;
	static bool have_conv = false;
	static FmgrInfo conv;
	unsigned char utf8[8];
	unsigned char out[8 * MAX_CONVERSION_GROWTH + 1];
	int			len;

	if (cp < 0x80 || GetDatabaseEncoding() == PG_UTF8)
		return true;
	if (!looked_up)
	{
		bool		own_xact = !IsTransactionState();
		Oid			proc;

		if (own_xact)
			StartTransactionCommand();
		proc = FindDefaultConversionProc(PG_UTF8, GetDatabaseEncoding());
		if (OidIsValid(proc))
		{
			fmgr_info_cxt(proc, &conv, TopMemoryContext);
			have_conv = true;
		}
		if (own_xact)
			CommitTransactionCommand();
		looked_up = true;
	}
	if (!have_conv)
		return false;
	unicode_to_utf8(cp, utf8);
	len = pg_utf_mblen(utf8);
	return DatumGetInt32(FunctionCall6(&conv,
									   Int32GetDatum(PG_UTF8),
									   Int32GetDatum(GetDatabaseEncoding()),
									   CStringGetDatum((char *) utf8),
									   CStringGetDatum((char *) out),
									   Int32GetDatum(len),
									   BoolGetDatum(true))) == len;
}

static int
hex4(const char *s, const char *end)
{
	int			v = 0;

	if (end - s < 4)
		return -1;
	for (int i = 0; i < 4; i++)
	{
		char		c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/*
 * The first \u escape in text whose character the database encoding
 * cannot hold, as a code point, or 0.  Malformed escapes and lone
 * surrogates are left to the lexer, which reports them without raising.
 */
static pg_wchar
unconvertible_escape(const char *text, int len)
{
	const char *end = text + len;

	if (GetDatabaseEncoding() == PG_UTF8)
		return 0;
	for (const char *p = text; p < end; p++)
	{
		int			hi,
					lo;
		pg_wchar	cp;

		if (*p != '\\')
			continue;
		if (p + 1 < end && p[1] != 'u')
		{
			p++;				/* \\, \" ...: the next character is not an escape */
			continue;
		}
		if ((hi = hex4(p + 2, end)) < 0)
			continue;
		p += 5;
		cp = hi;
		if (hi >= 0xD800 && hi <= 0xDBFF)
		{
			if (p + 2 < end && p[1] == '\\' && p[2] == 'u' &&
				(lo = hex4(p + 3, end)) >= 0xDC00 && lo <= 0xDFFF)
			{
				cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
				p += 6;
			}
			else
				continue;
		}
		else if (hi >= 0xDC00 && hi <= 0xDFFF)
			continue;
		if (!unicode_fits_database(cp))
			return cp;
	}
	return 0;
}

static void
parse_record(IngestBatch *batch, const IngestOrigin *origin, char *text, int len)
{
	RecState	st;
	JsonSemAction sem;
	JsonParseErrorType err;
	pg_wchar	cp;

	if ((cp = unconvertible_escape(text, len)) != 0)
	{
		add_reject(batch, origin,
				   psprintf("character U+%04X (a \\u escape) has no equivalent in the database encoding %s",
							cp, GetDatabaseEncodingName()),
				   text, len, false, 0);
		return;
	}
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
		add_reject(batch, origin, psprintf("invalid JSON: %s", json_errdetail(err, st.d.lex)),
				   text, len, false, 0);
		return;
	}
	if (first_char(text, len) != '{')
	{
		add_reject(batch, origin, "a record must be a JSON object", text, len, false, 0);
		return;
	}
	finish_record(batch, origin, &st, text, len);
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
		!parse_int64(st->val[F_SEQ], seq) || *seq < 0)
		return "seq must be a non-negative integer";
	*has_seq = true;
	return NULL;
}

/* ts: RFC 3339 text or epoch milliseconds, within the accepted window */
static const char *
check_ts(const char *v, JsonTokenType t, TimestampTz received_at,
		 TimestampTz *ts, char *buf, int buflen)
{
	if (!(t == JSON_TOKEN_STRING ? ingest_parse_timestamp(v, strlen(v), ts) :
		  t == JSON_TOKEN_NUMBER ? epoch_ms_to_timestamp(v, ts) : false))
		return "ts must be an RFC 3339 timestamp or epoch milliseconds";
	if (!ingest_ts_in_window(*ts, received_at, buf, buflen))
		return buf;
	return NULL;
}

/* source: a valid name, unless the token fixes the source anyway */
static const char *
check_source(const char *v, JsonTokenType t, bool token_source, char **source)
{
	if (t != JSON_TOKEN_STRING || (!token_source && !logagg_valid_source_name(v)))
		return "source must be 1-128 letters, digits, '.', '_' or '-'";
	*source = (char *) v;
	return NULL;
}

/* level: a short string, normalised (lower case, canonical names) */
static const char *
check_level(IngestBatch *batch, const char *v, JsonTokenType t, char **level)
{
	const char *canon;

	if (t != JSON_TOKEN_STRING || strlen(v) > 32)
		return "level must be a string of at most 32 characters";
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

	if (t != JSON_TOKEN_NUMBER || !parse_int64(v, &n) || n < 1 || n > 24)
		return "severity_number must be an integer from 1 to 24";
	if (!has_level)
		*level = (char *) logagg_level_from_severity_number((int) n);
	return NULL;
}

/* status: 0 to 999 */
static const char *
check_status(const char *v, JsonTokenType t, IngestRecord *rec)
{
	int64		n;

	/* "503" is common enough from string-typed loggers */
	if ((t != JSON_TOKEN_NUMBER && t != JSON_TOKEN_STRING) ||
		!parse_int64(v, &n) || n < 0 || n > 999)
		return "status must be an integer from 0 to 999";
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
check_hex_id(RecField f, const char *v, JsonTokenType t, char **id,
			 char *buf, int buflen)
{
	if (t != JSON_TOKEN_STRING || !is_hex(v) || strlen(v) > 64)
	{
		snprintf(buf, buflen, "%s must be a hex string", field_display[f]);
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

		if (st->nonscalar[f] && f != F_MESSAGE)
		{
			snprintf(buf, buflen, "%s must not be an object or array", field_display[f]);
			return buf;
		}
		if (v == NULL)
			continue;
		switch ((RecField) f)
		{
			case F_TS:
				reason = check_ts(v, t, origin->received_at, &rec->ts, buf, buflen);
				break;
			case F_SOURCE:
				reason = check_source(v, t, origin->source != NULL, &rec->source);
				break;
			case F_LEVEL:
				reason = check_level(batch, v, t, &rec->level);
				break;
			case F_SEVERITY_NUMBER:
				reason = check_severity_number(v, t, st->val[F_LEVEL] != NULL, &rec->level);
				break;
			case F_STATUS:
				reason = check_status(v, t, rec);
				break;
			case F_MESSAGE:
				reason = check_message(v, &rec->message);
				break;
			case F_TRACE_ID:
				reason = check_hex_id(F_TRACE_ID, v, t, &rec->trace_id, buf, buflen);
				break;
			case F_SPAN_ID:
				reason = check_hex_id(F_SPAN_ID, v, t, &rec->span_id, buf, buflen);
				break;
			case F_SEQ:			/* check_seq */
			case F_ATTR:
			case F_NUM_FIELDS:
				break;
		}
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
			 char *text, int len)
{
	const char *seq_reason = NULL;

	if (origin->accept_seq == NULL || origin->accept_seq(origin->arg, seq, &seq_reason))
		return true;
	if (seq_reason)
		add_reject(batch, origin, seq_reason, text, len, true, seq);
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
		rec->source = batch_token_source(batch, origin->source);
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
	}
}

/* Add a checked record to the batch and tell the origin. */
static void
keep_record(IngestBatch *batch, const IngestOrigin *origin, RecState *st,
			IngestRecord *rec, int len)
{
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
static void
finish_record(IngestBatch *batch, const IngestOrigin *origin, RecState *st,
			  char *text, int len)
{
	IngestRecord rec;
	char		reasonbuf[128];
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
		add_reject(batch, origin, reason, text, len, has_seq, seq);
		return;
	}
	if (has_seq && !seq_accepted(batch, origin, seq, text, len))
		return;
	rec.has_seq = has_seq;
	rec.seq = seq;
	keep_record(batch, origin, st, &rec, len);
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
scan_record(char **pp, char *end, RecState *st, StringInfo abuf, int depth,
			MemoryContext scratch)
{
	char	   *p = *pp;
	bool		too_big = false;

	memset(st, 0, sizeof(RecState));
	st->attrs_flat = true;
	st->in_batch = true;
	if (abuf->data)
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
			if (abuf->data == NULL)
			{
				/* scratch, not the batch's memory (the current context) */
				MemoryContext old = MemoryContextSwitchTo(scratch);

				initStringInfo(abuf);
				MemoryContextSwitchTo(old);
			}
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
	if (abuf->data && abuf->len > 0)
	{
		appendStringInfoChar(abuf, '}');
		st->attrs_text = palloc(abuf->len + 1);
		memcpy(st->attrs_text, abuf->data, abuf->len + 1);
	}
	*pp = p + 1;
	return true;
}

/*
 * Longest array the scanner takes in one go.  Its records are added all
 * at once (or none, when it gives up), so a longer array goes through
 * parse_elements instead, which can spread it over batches.
 */
#define FAST_ARRAY_MAX	1000

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
	abuf.data = NULL;			/* made when a record has attrs */
	abuf.len = 0;
	if (*p == '{')
	{
		RecState	st;

		oldcxt = MemoryContextSwitchTo(batch->cxt);
		ok = scan_record(&p, end, &st, &abuf, 1, oldcxt);
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

	max = 8;
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

			if (p >= end || *p != '{' || n >= FAST_ARRAY_MAX)
				return false;
			if (n >= max)
			{
				max *= 2;
				recs = repalloc(recs, max * sizeof(RecState));
				starts = repalloc(starts, max * sizeof(char *));
				lens = repalloc(lens, max * sizeof(int));
			}
			oldcxt = MemoryContextSwitchTo(batch->cxt);
			ok = scan_record(&p, end, &recs[n], &abuf, 2, oldcxt);
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

/* jsonb's key order (length, then bytes), then the order given */
static int
flat_pair_cmp(const void *a, const void *b)
{
	const JsonbPair *pa = a;
	const JsonbPair *pb = b;
	int			la = pa->key.val.string.len;
	int			lb = pb->key.val.string.len;
	int			c;

	if (la != lb)
		return la > lb ? 1 : -1;
	c = memcmp(pa->key.val.string.val, pb->key.val.string.val, la);
	if (c != 0)
		return c;
	return pa->order > pb->order ? 1 : (pa->order < pb->order ? -1 : 0);
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
	 * once (the last one given wins).  qsort, with the original order
	 * breaking ties so that equal keys stay in the order given: a record
	 * with many attrs costs O(n log n) whatever their order.
	 */
	if (n > 1)
		qsort(pairs, n, sizeof(JsonbPair), flat_pair_cmp);
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

/* What parse_unit did with a unit. */
typedef enum UnitResult
{
	UNIT_DONE,					/* its records and rejects are in the batch */
	UNIT_ARRAY,					/* a valid array: its elements are next */
	UNIT_NOT_ONE_VALUE			/* (only when trying) nothing was added */
} UnitResult;

/*
 * One JSON value, checked by pg_parse_json: an object is a record, an
 * array a list of records.  When trying (a whole message that may be
 * newline-delimited), a unit that is not exactly one valid JSON value
 * adds nothing and returns UNIT_NOT_ONE_VALUE, so that the caller can
 * split it into lines instead: a broken first line must not take the
 * lines after it down with it.  Otherwise a unit that is not valid JSON
 * is refused as a whole.
 *
 * For an array, *elems is set to its first element (or its ']'): the
 * caller walks the elements with parse_elements, which can stop when the
 * batch is full and go on later.  The caller has checked the unit's
 * encoding and nesting depth.
 */
static UnitResult
parse_unit(IngestBatch *batch, const IngestOrigin *origin, char *text, int len,
		   bool trying, char **elems)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType err;
	char	   *p;

	memset(&sem, 0, sizeof(sem));
	lex = makeJsonLexContextCstringLen(text, len, GetDatabaseEncoding(), false);
	err = pg_parse_json(lex, &sem);
	if (err != JSON_SUCCESS && trying)
		return UNIT_NOT_ONE_VALUE;
	if (err != JSON_SUCCESS)
	{
		add_reject(batch, origin, psprintf("invalid JSON: %s", json_errdetail(err, lex)),
				   text, len, false, 0);
		return UNIT_DONE;
	}
	p = skip_ws(text, text + len);
	if (*p == '[')
	{
		*elems = p + 1;
		return UNIT_ARRAY;
	}
	parse_record(batch, origin, text, len);
	return UNIT_DONE;
}

/*
 * The end of the JSON value at p, in text that pg_parse_json accepted:
 * only strings and brackets need to be followed.
 */
static char *
value_end(char *p, char *end)
{
	int			depth = 0;

	for (; p < end; p++)
	{
		char		c = *p;

		if (c == '"')
		{
			for (p++; p < end && *p != '"'; p++)
				if (*p == '\\')
					p++;
			if (depth == 0)
				return p + 1;
		}
		else if (c == '{' || c == '[')
			depth++;
		else if (c == '}' || c == ']')
		{
			if (--depth == 0)
				return p + 1;
			if (depth < 0)
				return p;		/* the end of a scalar at the array's end */
		}
		else if (depth == 0 && (c == ',' || IS_WS(c)))
			return p;
	}
	return p;
}

/*
 * One element of a valid array: a record by the scanner when it can,
 * else by pg_parse_json (the same outcome, see the fast path).
 */
static void
parse_element(IngestBatch *batch, const IngestOrigin *origin, char *s, int len,
			  MemoryContext scratch)
{
	if (*s == '{')
	{
		RecState	st;
		StringInfoData abuf;
		char	   *p = s;
		MemoryContext oldcxt = MemoryContextSwitchTo(batch->cxt);
		bool		ok;

		abuf.data = NULL;
		abuf.len = 0;
		ok = scan_record(&p, s + len, &st, &abuf, 2, scratch);
		MemoryContextSwitchTo(oldcxt);
		if (ok && p == s + len)
		{
			finish_record(batch, origin, &st, s, len);
			return;
		}
	}
	parse_record(batch, origin, s, len);
}

/*
 * The elements of a valid array from p on (an element's start, or the
 * ']', after blanks).  Each element's parse runs in rec_cxt, reset after
 * it.  Stops early, returning the next element's position, once the
 * batch holds max_units records and rejects (max_units > 0); *closed
 * tells whether the array was finished, and then the position after it
 * is returned.
 */
static char *
parse_elements(IngestBatch *batch, const IngestOrigin *origin, char *p, char *end,
			   int max_units, bool *closed)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(rec_cxt);

	*closed = false;
	for (;;)
	{
		char	   *e;

		p = skip_ws(p, end);
		if (p >= end || *p == ']')
		{
			*closed = true;
			p = Min(p + 1, end);
			break;
		}
		e = value_end(p, end);
		parse_element(batch, origin, p, e - p, rec_cxt);
		MemoryContextReset(rec_cxt);
		p = skip_ws(e, end);
		if (p < end && *p == ',')
			p++;
		if (max_units > 0 && batch->nrecords + batch->nrejects >= max_units)
			break;
	}
	MemoryContextSwitchTo(oldcxt);
	return p;
}

/*
 * Is the text valid in the database encoding, without NUL?  For a record
 * that is not, the reject keeps its bytes but rejected.raw stays NULL.
 */
static bool
valid_text(const char *s, int len)
{
	return pg_verifymbstr(s, len, true);
}

static void
reject_invalid_text(IngestBatch *batch, const IngestOrigin *origin, const char *s, int len)
{
	add_reject_bytes(batch, origin,
					 psprintf("not valid text in the database encoding %s (or contains a NUL byte)",
							  GetDatabaseEncodingName()),
					 s, len, false, false, 0);
}

static void
reject_too_deep(IngestBatch *batch, const IngestOrigin *origin, char *s, int len)
{
	/* before pg_parse_json, whose recursion would raise an error */
	add_reject(batch, origin, "JSON nested more than 64 levels deep", s, len, false, 0);
}

/*
 * One line of newline-delimited input (without its line break), on its
 * own: checked, then parsed by the scanner, else by pg_parse_json.  A
 * blank line adds nothing.  Returns the first element of a line that is
 * an array the scanner did not take, else NULL.
 */
static char *
parse_line(IngestBatch *batch, const IngestOrigin *origin, char *s, int len,
		   bool checked_text)
{
	char	   *end = s + len;
	char	   *elems = NULL;
	bool		several;

	/* a CRLF line break leaves a \r; blanks around it are not the record's */
	while (end > s && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
		s++;
	len = end - s;
	if (len == 0)
		return NULL;
	if (!checked_text && !valid_text(s, len))
		reject_invalid_text(batch, origin, s, len);
	else if (fast_unit(batch, origin, s, len, false, &several))
		;
	else if (nesting_depth(s, len) > INGEST_MAX_JSON_DEPTH)
		reject_too_deep(batch, origin, s, len);
	else if (parse_unit(batch, origin, s, len, false, &elems) == UNIT_ARRAY)
		return elems;
	return NULL;
}

/*
 * The whole message as one unit, if it is one: one object, or one array
 * (possibly spread over lines).  Returns false when it is to be split
 * into lines instead; a message without a line break is always one unit.
 * *elems is set when it is an array whose elements are still to be
 * parsed.
 */
static bool
parse_whole(IngestBatch *batch, const IngestOrigin *origin, char *data, int len,
			bool *checked_text, char **elems)
{
	bool		has_nl = memchr(data, '\n', len) != NULL;
	bool		several;

	*checked_text = false;
	*elems = NULL;
	if (!valid_text(data, len))
	{
		if (has_nl)
			return false;
		reject_invalid_text(batch, origin, data, len);
		return true;
	}
	*checked_text = true;
	if (fast_unit(batch, origin, data, len, true, &several))
		return true;			/* the usual case: done in one pass */
	if (several)
		return false;
	if (nesting_depth(data, len) > INGEST_MAX_JSON_DEPTH)
	{
		if (has_nl)
			return false;
		reject_too_deep(batch, origin, data, len);
		return true;
	}
	return parse_unit(batch, origin, data, len, has_nl, elems) != UNIT_NOT_ONE_VALUE;
}

static bool
batch_has(IngestBatch *batch, int max_units)
{
	return max_units > 0 && batch->nrecords + batch->nrejects >= max_units;
}

/*
 * Parse a message into the batch, from *pos on (zeroed for a new
 * message), and advance *pos.  When max_units > 0 the call stops
 * between records once the batch holds max_units records and rejects,
 * so that the caller can store the batch and call again: a message of
 * many lines, or a long array, is spread over batches (a message the
 * scanner takes in one pass, at most FAST_ARRAY_MAX records, is not cut).
 * Returns true when the message is finished.  data must stay valid and
 * writable until then (the lexer needs no terminator; len bounds it).
 *
 * Scratch memory is per unit: a line's in line_cxt, an array element's
 * in rec_cxt, each reset after it.  What a unit leaves behind is only
 * what the batch keeps (its record or its reject).
 */
bool
ingest_parse_message_part(IngestBatch *batch, const IngestOrigin *origin,
						  char *data, int len, IngestParsePos *pos, int max_units)
{
	MemoryContext oldcxt;
	char	   *p;
	char	   *end = data + len;
	char	   *elems = NULL;

	if (parse_cxt == NULL)
	{
		parse_cxt = AllocSetContextCreate(TopMemoryContext, "logagg ingest parse",
										  ALLOCSET_DEFAULT_SIZES);
		line_cxt = AllocSetContextCreate(TopMemoryContext, "logagg ingest line",
										 ALLOCSET_DEFAULT_SIZES);
		rec_cxt = AllocSetContextCreate(TopMemoryContext, "logagg ingest record",
										ALLOCSET_DEFAULT_SIZES);
	}
	oldcxt = MemoryContextSwitchTo(parse_cxt);

	p = data + pos->offset;
	if (!pos->started)
	{
		pos->started = true;
		/* blank messages carry no record: nothing to store or refuse */
		if (skip_ws(data, end) == end)
			p = end;
		else if (parse_whole(batch, origin, data, len, &pos->text_checked, &elems))
			p = elems ? elems : end;
		pos->in_array = elems != NULL;
		MemoryContextReset(parse_cxt);
	}
	while (p < end)
	{
		if (pos->in_array)
		{
			bool		closed;

			p = parse_elements(batch, origin, p, end, max_units, &closed);
			if (!closed)
				break;
			/* the rest of the array's line is blank: lines go on after it */
			pos->in_array = false;
			continue;
		}
		else
		{
			char	   *nl = memchr(p, '\n', end - p);
			char	   *lend = nl ? nl : end;

			MemoryContextSwitchTo(line_cxt);
			elems = parse_line(batch, origin, p, lend - p, pos->text_checked);
			MemoryContextSwitchTo(parse_cxt);
			MemoryContextReset(line_cxt);
			if (elems)
			{
				p = elems;
				pos->in_array = true;
				continue;
			}
			p = nl ? nl + 1 : end;
		}
		if (batch_has(batch, max_units))
			break;
	}
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(parse_cxt);
	pos->offset = p - data;
	return p >= end;
}

/* Parse a whole message into the batch (logagg.ingest()). */
void
ingest_parse_message(IngestBatch *batch, const IngestOrigin *origin, char *data, int len)
{
	IngestParsePos pos;

	memset(&pos, 0, sizeof(pos));
	(void) ingest_parse_message_part(batch, origin, data, len, &pos, 0);
}
