/*-------------------------------------------------------------------------
 *
 * loki.c
 *		The Loki door on the ingest port: POST /loki/api/v1/push, as
 *		Promtail, Grafana Alloy (loki.write), Fluent Bit's loki output,
 *		Vector's loki sink and Loki client libraries send it -- a snappy
 *		compressed protobuf PushRequest (proto/loki/push.proto) or Loki's
 *		JSON -- and the replies in Loki's shapes (204, or plain text).
 *
 * A push body is queued like any POST body and goes through the same
 * batches, COPY and commit.  input.c hands it to ingest_loki_parse_part,
 * which turns its entries into records, as many per round as the batch
 * takes: each entry's labels and structured metadata become attrs, its
 * line the message, its timestamp ts, and record.c checks it like any
 * record.  A protobuf body is decompressed (snappy) and its wire format
 * checked once, then read a stream and an entry at a time (each entry
 * unpacked by protobuf-c on its own), so a push in progress holds its
 * bytes and one entry; a JSON body goes once through PostgreSQL's JSON
 * parser, whose callbacks collect its streams and entries.
 *
 * A push with some bad entries stores the good ones and answers 400
 * naming the bad ones (as Loki does); each bad entry is in
 * logagg.rejected with its reason, as a Loki JSON push of that one entry.
 * A body that cannot be decoded at all is refused whole (400, 413 for a
 * decompression bomb), with its bytes in logagg.rejected.  The reply is
 * written after the COMMIT that made it true (commit.c).
 *
 * A Content-Encoding of gzip or deflate is undone before the body gets
 * here (decompress.c, input.c).  The LokiRequest is set up in an lws
 * callback (malloc only); decoding, parsing and the reply run in the main
 * loop, where the decoded push lives in a memory context of its own.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <snappy-c.h>

#include "common/jsonapi.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "loki/push.pb-c.h"

#include "ingest/parse_int.h"
#include "ingest/server_int.h"

#define LOKI_PUSH_PATH		"/loki/api/v1/push"
/* Bad entries named in a 400 reply (all of them are in logagg.rejected). */
#define LOKI_REPLY_ENTRIES	10
/* Stream labels quoted in a reply line at most. */
#define LOKI_REPLY_LABELS	200
/* Too Many Requests (RFC 6585), not in lws's enum */
#define HTTP_STATUS_TOO_MANY	429

typedef enum LokiFormat
{
	LOKI_PROTOBUF,				/* application/x-protobuf, snappy block */
	LOKI_JSON					/* application/json */
} LokiFormat;

/* A label or structured metadata pair (not NUL-terminated: protobuf's bytes) */
typedef struct LokiLabel
{
	const char *name;
	int			nlen;
	const char *value;
	int			vlen;
} LokiLabel;

typedef struct LokiEntry
{
	const char *bad;			/* reason to reject, found while decoding */
	bool		has_ts;
	int64		sec;			/* since the Unix epoch */
	int32		nsec;
	char	   *line;			/* NUL-terminated (NULL: none) */
	const char *line_data;		/* its exact bytes, line_len of them */
	int			line_len;
	LokiLabel  *meta;			/* structured metadata */
	int			nmeta;
	int			maxmeta;
	const char *text;			/* JSON: the entry's exact text */
	int			text_len;
	bool		undecodable;	/* protobuf that does not unpack: line_data
								 * holds its bytes */
} LokiEntry;

/* JSON: where a stream's labels and an entry are in the body */
typedef struct JsonStreamRef
{
	const char *labels_text;	/* NULL: no "stream" key */
	int			labels_len;
	const char *bad;			/* (static) found when collecting */
} JsonStreamRef;

typedef struct JsonEntryRef
{
	int			stream;
	int			len;
	const char *text;
} JsonEntryRef;

typedef struct LokiStream
{
	const char *bad;			/* reason to reject all its entries */
	const char *labels_text;	/* protobuf: the labels string; JSON: the
								 * "stream" object's exact text */
	int			labels_len;
	bool		labels_valid;	/* labels_text is valid text */
	LokiLabel  *labels;
	int			nlabels;
	int			maxlabels;
	LokiEntry  *entries;
	int			nentries;
	int			maxentries;
	/* made when its first entry is turned into a record */
	bool		prepared;
	char	   *attrs_prefix;	/* "{" and the labels as JSON pairs */
	int			attrs_prefix_len;
	bool		attrs_flat;		/* attrs_prefix can be read as flat attrs */
	char	   *source;			/* service_name, job or app label */
} LokiStream;

struct LokiRequest
{
	LokiFormat	format;
	const char *preset;			/* refuse the body with 415 and this reason */
	/* from here on: set in the main loop */
	MemoryContext cxt;			/* the decoded push; deleted when done */
	/* JSON: while collecting, the streams and entries (JState) */
	LokiStream *streams;
	int			nstreams;
	int			maxstreams;
	/* JSON: then where each stream's labels and each entry are in the body */
	JsonStreamRef *jstreams;
	JsonEntryRef *jentries;
	int			njentries;
	int			jnext;			/* next entry to turn into a record */
	int			jstream;		/* which one is in "stream" (-1: none) */
	/* protobuf: the decompressed PushRequest, read an entry at a time */
	const uint8 *pb;
	size_t		pb_len;
	size_t		pb_next;		/* where to look for the next stream */
	bool		pb_in_stream;	/* "stream" is being read */
	LokiStream	stream;			/* the stream being read (JSON too) */
	const uint8 *pb_stream_end;
	const uint8 *pb_entry_next; /* where to look for its next entry */
	MemoryContext stream_cxt;	/* "stream"'s labels (reset per stream) */
	MemoryContext entry_cxt;	/* one entry's decoding (reset per entry) */
	int64		nentries;		/* entries of the push read so far */
	const LokiStream *cur_s;	/* the entry being checked (for rejected */
	const LokiEntry *cur_e;		/* notes), or NULL */
	StringInfoData attrs;		/* reused for each entry's attrs */
	/* the reply */
	int			fatal_status;	/* the body was refused whole */
	char	   *fatal;			/* malloc'd text */
	Buf			report;			/* lines naming bad entries */
	int			reported;
};

static void prepare_stream(LokiStream *s);

/* ---- request set-up (lws callbacks: malloc only) ---- */

/* The decoded push is gone (in an lws callback, there is none: cxt is NULL). */
static void
loki_release_decoded(LokiRequest *lr)
{
	lr->pb = NULL;				/* in lr->cxt, with its child contexts */
	lr->stream_cxt = lr->entry_cxt = NULL;
	lr->pb_in_stream = false;
	lr->cur_s = NULL;
	lr->cur_e = NULL;
	if (lr->cxt)
		MemoryContextDelete(lr->cxt);
	lr->cxt = NULL;
	lr->streams = NULL;
	lr->nstreams = lr->maxstreams = 0;
	lr->jstreams = NULL;
	lr->jentries = NULL;
	lr->njentries = lr->jnext = 0;
}

static void
loki_reset(LokiRequest *lr)
{
	loki_release_decoded(lr);
	free(lr->fatal);
	ingest_buf_free(&lr->report);
	memset(lr, 0, sizeof(*lr));
}

void
ingest_loki_free(Conn *c)
{
	if (c->loki)
	{
		loki_reset(c->loki);
		free(c->loki);
		c->loki = NULL;
	}
}

/* Loki answers errors in plain text. */
int
ingest_loki_error(Conn *c, int status, const char *text)
{
	return ingest_http_reply(c, status, "text/plain; charset=utf-8", text);
}

/* Does header TOKEN hold media type TYPE (case-insensitive, parameters allowed)? */
static bool
header_is(const char *value, const char *type)
{
	size_t		n = strlen(type);

	while (*value == ' ' || *value == '\t')
		value++;
	return pg_strncasecmp(value, type, n) == 0 &&
		(value[n] == '\0' || value[n] == ';' || value[n] == ' ' || value[n] == '\t');
}

/*
 * Route a Loki request (called for every plain HTTP request before the
 * native routes).  Returns 1 when URI is not ours, else what the lws
 * callback returns; *push is set when a push body follows (the caller
 * checks the token and the framing).
 */
int
ingest_loki_route(struct lws *wsi, Conn *c, const char *uri, bool is_post, bool *push)
{
	char		ct[128] = "";
	char		ce[64] = "";

	*push = false;
	if (strcmp(uri, LOKI_PUSH_PATH) != 0)
		return 1;
	c->loki_reply = true;
	if (!is_post)
		return ingest_loki_error(c, HTTP_STATUS_METHOD_NOT_ALLOWED,
								 "method not allowed: push with POST " LOKI_PUSH_PATH "\n");
	/* too much input waits already: the client retries later (backpressure) */
	if (ingest_total_queued >= TOTAL_QUEUE_PAUSE_BYTES)
	{
		c->http_retry_after = 1;
		return ingest_loki_error(c, HTTP_STATUS_TOO_MANY,
								 "logagg is busy storing earlier pushes: retry after the Retry-After delay\n");
	}
	if (c->loki == NULL && (c->loki = calloc(1, sizeof(LokiRequest))) == NULL)
		return -1;
	loki_reset(c->loki);
	*push = true;

	/*
	 * A body of the wrong type or encoding is read all the same, to be
	 * kept in logagg.rejected (parse_part), and refused after the commit.
	 */
	(void) lws_hdr_copy(wsi, ct, sizeof(ct), WSI_TOKEN_HTTP_CONTENT_TYPE);
	(void) lws_hdr_copy(wsi, ce, sizeof(ce), WSI_TOKEN_HTTP_CONTENT_ENCODING);
	/* as Loki: no Content-Type means protobuf */
	if (ct[0] == '\0' || header_is(ct, "application/x-protobuf"))
		c->loki->format = LOKI_PROTOBUF;
	else if (header_is(ct, "application/json"))
		c->loki->format = LOKI_JSON;
	else
		c->loki->preset = "unsupported Content-Type: push application/x-protobuf (snappy compressed) or application/json";
	/*
	 * gzip and deflate are undone for every POST (decompress.c); snappy is
	 * what protobuf bodies are anyway, and some clients say so
	 */
	if (!c->loki->preset &&
		!(ce[0] == '\0' || header_is(ce, "identity") || header_is(ce, "gzip") ||
		  header_is(ce, "x-gzip") || header_is(ce, "deflate") ||
		  (c->loki->format == LOKI_PROTOBUF && header_is(ce, "snappy"))))
		c->loki->preset = "unsupported Content-Encoding: use gzip, deflate or none (protobuf: snappy compressed in the body)";
	return 0;
}

/* The 401 of the Loki endpoint. */
int
ingest_loki_unauthorized(Conn *c)
{
	return ingest_loki_error(c, HTTP_STATUS_UNAUTHORIZED,
							 "unauthorized: missing, unknown or revoked token; send the token as the password of HTTP Basic auth (any user name), as Authorization: Bearer, or as ?token=\n");
}

/* ---- decoding (main loop) ---- */

static void
loki_set_fatal(LokiRequest *lr, int status, const char *text)
{
	lr->fatal_status = status;
	free(lr->fatal);
	if ((lr->fatal = strdup(text)) == NULL)
		elog(ERROR, "logagg ingest: out of memory");
}

static LokiStream *
add_stream(LokiRequest *lr)
{
	if (lr->nstreams == lr->maxstreams)
	{
		lr->maxstreams = lr->maxstreams ? lr->maxstreams * 2 : 8;
		lr->streams = lr->streams ?
			repalloc(lr->streams, lr->maxstreams * sizeof(LokiStream)) :
			palloc(lr->maxstreams * sizeof(LokiStream));
	}
	memset(&lr->streams[lr->nstreams], 0, sizeof(LokiStream));
	return &lr->streams[lr->nstreams++];
}

static LokiEntry *
add_entry(LokiRequest *lr, LokiStream *s)
{
	if (s->nentries == s->maxentries)
	{
		s->maxentries = s->maxentries ? s->maxentries * 2 : 16;
		s->entries = s->entries ?
			repalloc_huge(s->entries, s->maxentries * sizeof(LokiEntry)) :
			palloc(s->maxentries * sizeof(LokiEntry));
	}
	memset(&s->entries[s->nentries], 0, sizeof(LokiEntry));
	return &s->entries[s->nentries++];
}

static void
add_label(LokiLabel **arr, int *n, int *max, const char *name, int nlen,
		  const char *value, int vlen)
{
	if (*n == *max)
	{
		*max = *max ? *max * 2 : 8;
		*arr = *arr ? repalloc(*arr, *max * sizeof(LokiLabel)) : palloc(*max * sizeof(LokiLabel));
	}
	(*arr)[*n].name = name;
	(*arr)[*n].nlen = nlen;
	(*arr)[*n].value = value;
	(*arr)[*n].vlen = vlen;
	(*n)++;
}

/* ---- stream labels in Prometheus syntax: {job="x", app="y"} ---- */

static bool
is_name_start(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || ch == '_';
}

static bool
is_name_char(char ch)
{
	return is_name_start(ch) || IS_DIGIT(ch);
}

static int
hexval(char ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/*
 * A double-quoted string at *pp (Go's escapes, as Prometheus and Loki
 * write label values: \\ \" \n \t \r \a \b \f \v \' \xHH \NNN \uHHHH
 * \UHHHHHHHH) into out.  Returns NULL or what is wrong.
 */
static const char *
parse_quoted(const char **pp, const char *end, StringInfo out)
{
	const char *p = *pp;

	if (p >= end || *p != '"')
		return "a label value must be a double-quoted string";
	p++;
	while (p < end && *p != '"')
	{
		char		ch = *p++;
		int			digits,
					base;
		pg_wchar	cp = 0;

		if (ch != '\\')
		{
			appendStringInfoChar(out, ch);
			continue;
		}
		if (p >= end)
			break;
		ch = *p++;
		switch (ch)
		{
			case '\\':
			case '"':
			case '\'':
				appendStringInfoChar(out, ch);
				continue;
			case 'n':
				appendStringInfoChar(out, '\n');
				continue;
			case 't':
				appendStringInfoChar(out, '\t');
				continue;
			case 'r':
				appendStringInfoChar(out, '\r');
				continue;
			case 'a':
				appendStringInfoChar(out, '\a');
				continue;
			case 'b':
				appendStringInfoChar(out, '\b');
				continue;
			case 'f':
				appendStringInfoChar(out, '\f');
				continue;
			case 'v':
				appendStringInfoChar(out, '\v');
				continue;
			case 'x':
				digits = 2, base = 16;
				break;
			case 'u':
				digits = 4, base = 16;
				break;
			case 'U':
				digits = 8, base = 16;
				break;
			default:
				if (ch < '0' || ch > '7')
					return "a label value has an unknown escape";
				digits = 2, base = 8;
				cp = ch - '0';
				break;
		}
		for (int i = 0; i < digits; i++)
		{
			int			v = p < end ? hexval(*p) : -1;

			if (v < 0 || v >= base)
				return "a label value has a malformed escape";
			cp = cp * base + v;
			p++;
		}
		if (ch == 'x' || (ch >= '0' && ch <= '7'))
		{
			if (cp > 255)
				return "a label value has a malformed escape";
			appendStringInfoChar(out, (char) cp);	/* a byte, as in Go */
		}
		else
		{
			unsigned char utf8[8];

			if (cp == 0 || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
				return "a label value escapes an invalid character";
			unicode_to_utf8(cp, utf8);
			appendBinaryStringInfo(out, (char *) utf8, pg_utf_mblen(utf8));
		}
	}
	if (p >= end)
		return "a label value is not terminated by a double quote";
	*pp = p + 1;
	return NULL;
}

/*
 * Parse a stream's labels into S (palloc'd copies).  Returns NULL or the
 * reason the labels are malformed.  Names are Prometheus names
 * ([a-zA-Z_][a-zA-Z0-9_]*) or double-quoted; "{}" has no labels.
 */
static const char *
parse_labels(LokiStream *s, const char *text, int len)
{
	const char *p = text;
	const char *end = text + len;
	StringInfoData buf;
	const char *why;

	if (!pg_verifymbstr(text, len, true))
		return "the stream labels are not valid UTF-8 (or contain a NUL byte)";
	initStringInfo(&buf);
	while (p < end && IS_WS(*p))
		p++;
	if (p >= end || *p != '{')
		return "malformed stream labels: they must look like {name=\"value\", ...}";
	p++;
	for (;;)
	{
		char	   *name;

		while (p < end && IS_WS(*p))
			p++;
		if (p < end && *p == '}' && s->nlabels == 0)
			break;
		resetStringInfo(&buf);
		if (p < end && *p == '"')
		{
			if ((why = parse_quoted(&p, end, &buf)) != NULL)
				return psprintf("malformed stream labels: %s", why);
		}
		else
		{
			if (p >= end || !is_name_start(*p))
				return "malformed stream labels: a label name must match [a-zA-Z_][a-zA-Z0-9_]*";
			while (p < end && is_name_char(*p))
				appendStringInfoChar(&buf, *p++);
		}
		name = pstrdup(buf.data);
		while (p < end && IS_WS(*p))
			p++;
		if (p >= end || *p != '=')
			return "malformed stream labels: expected = after a label name";
		p++;
		while (p < end && IS_WS(*p))
			p++;
		resetStringInfo(&buf);
		if ((why = parse_quoted(&p, end, &buf)) != NULL)
			return psprintf("malformed stream labels: %s", why);
		if (memchr(buf.data, '\0', buf.len) || !pg_verifymbstr(buf.data, buf.len, true))
			return "malformed stream labels: a label value escapes bytes that are not valid UTF-8";
		for (int i = 0; i < s->nlabels; i++)
			if (strcmp(s->labels[i].name, name) == 0)
				return "malformed stream labels: a label name appears twice";
		add_label(&s->labels, &s->nlabels, &s->maxlabels, name, strlen(name),
				  pstrdup(buf.data), buf.len);
		while (p < end && IS_WS(*p))
			p++;
		if (p < end && *p == ',')
		{
			p++;
			continue;
		}
		if (p < end && *p == '}')
			break;
		return "malformed stream labels: expected , or } after a label";
	}
	p++;
	while (p < end && IS_WS(*p))
		p++;
	if (p != end)
		return "malformed stream labels: text after the closing }";
	return NULL;
}

/* ---- the protobuf body ---- */

/* Is protobuf's bytes field valid text, without NUL? */
static bool
pb_text(const ProtobufCBinaryData *b)
{
	return pg_verifymbstr((const char *) b->data, b->len, true);
}

/*
 * protobuf-c allocates the decoded message in the request's memory
 * context (freed with it, all at once): no palloc that could raise an
 * error inside the library -- out of memory is a NULL it reports.
 */
static void *
pb_alloc(void *cxt, size_t size)
{
	return MemoryContextAllocExtended((MemoryContext) cxt, Max(size, 1),
									  MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

static void
pb_free(void *cxt, void *ptr)
{
	/* the context goes all at once */
}

/* An unpacked EntryAdapter as a LokiEntry (pointing into it). */
static void
pb_entry(LokiEntry *le, const Logproto__EntryAdapter *e)
{
	memset(le, 0, sizeof(*le));
	if (e->timestamp)
	{
		le->has_ts = true;
		le->sec = e->timestamp->seconds;
		le->nsec = e->timestamp->nanos;
		if (le->nsec < 0 || le->nsec > 999999999)
			le->bad = "the entry's timestamp has nanos out of range";
	}
	le->line_len = e->line.len;
	le->line_data = (const char *) e->line.data;
	le->line = pnstrdup((const char *) e->line.data, e->line.len);
	if (!pb_text(&e->line))
		le->bad = "the line is not valid UTF-8 (or contains a NUL byte)";
	for (size_t i = 0; i < e->n_structuredmetadata; i++)
	{
		const ProtobufCBinaryData *name = &e->structuredmetadata[i]->name;
		const ProtobufCBinaryData *value = &e->structuredmetadata[i]->value;

		/* kept all the same: the reject shows it */
		if ((!pb_text(name) || !pb_text(value)) && le->bad == NULL)
			le->bad = "structured metadata is not valid UTF-8 (or contains a NUL byte)";
		add_label(&le->meta, &le->nmeta, &le->maxmeta, (const char *) name->data, name->len,
				  (const char *) value->data, value->len);
	}
}

/*
 * The protobuf wire format, read just deep enough to find the streams
 * of a PushRequest and the entries of a stream: each entry is then
 * unpacked on its own (protobuf-c), when its turn comes.  So a push in
 * progress holds its decompressed bytes and one entry, not the whole
 * decoded message (whose many small allocations would take tens of
 * times the body's size).
 */
static bool
wire_varint(const uint8 **p, const uint8 *end, uint64 *v)
{
	*v = 0;
	for (int shift = 0; shift < 64; shift += 7)
	{
		if (*p >= end)
			return false;
		*v |= (uint64) (**p & 0x7f) << shift;
		if ((*(*p)++ & 0x80) == 0)
			return true;
	}
	return false;
}

/*
 * The field at *p: its number, wire type and (length-delimited) value.
 * Returns false when it is malformed or runs past END; a group (a wire
 * type proto3 has no use for) is malformed too.
 */
static bool
wire_field(const uint8 **p, const uint8 *end, uint64 *field, int *wt,
		   const uint8 **val, size_t *vlen)
{
	uint64		tag,
				n;

	if (!wire_varint(p, end, &tag))
		return false;
	*field = tag >> 3;
	*wt = tag & 7;
	*val = NULL;
	*vlen = 0;
	switch (*wt)
	{
		case 0:
			return *field > 0 && wire_varint(p, end, &n);
		case 1:
			if (end - *p < 8)
				return false;
			*p += 8;
			return *field > 0;
		case 2:
			if (!wire_varint(p, end, &n) || n > (uint64) (end - *p))
				return false;
			*val = *p;
			*vlen = n;
			*p += n;
			return *field > 0;
		case 5:
			if (end - *p < 4)
				return false;
			*p += 4;
			return *field > 0;
		default:
			return false;
	}
}

/*
 * Is the whole body well-formed down to the entries, with the wire
 * types push.proto gives its fields?  (An entry itself is checked when it
 * is unpacked.)  Unknown fields are skipped, as protobuf requires.
 */
static bool
wire_check(const uint8 *p, const uint8 *end)
{
	while (p < end)
	{
		uint64		f;
		int			wt;
		const uint8 *v;
		size_t		n;

		if (!wire_field(&p, end, &f, &wt, &v, &n))
			return false;
		if ((f == 1 || f == 2) && wt != 2)
			return false;		/* streams, format */
		if (f == 1)
		{
			const uint8 *q = v;

			while (q < v + n)
			{
				uint64		sf;
				int			swt;
				const uint8 *sv;
				size_t		sn;

				if (!wire_field(&q, v + n, &sf, &swt, &sv, &sn))
					return false;
				if (((sf == 1 || sf == 2) && swt != 2) || (sf == 3 && swt != 0))
					return false;	/* labels, entries, hash */
			}
		}
	}
	return true;
}

/* Decompress a snappy PushRequest and check it.  Returns false (fatal set) if it is not one. */
static bool
decode_protobuf(LokiRequest *lr, const char *data, int len)
{
	size_t		rawlen;
	char	   *raw;
	char		msg[256];

	if (snappy_uncompressed_length(data, len, &rawlen) != SNAPPY_OK)
	{
		loki_set_fatal(lr, HTTP_STATUS_BAD_REQUEST,
					   "the body is not snappy compressed (block format): a protobuf push must be");
		return false;
	}
	/* the size is in the header: a bomb is refused before it is inflated */
	if (rawlen > (size_t) logagg_max_message_bytes)
	{
		snprintf(msg, sizeof(msg),
				 "the body would decompress to %zu bytes, more than logagg.max_message_bytes (%d): send smaller pushes",
				 rawlen, logagg_max_message_bytes);
		loki_set_fatal(lr, HTTP_STATUS_REQ_ENTITY_TOO_LARGE, msg);
		return false;
	}
	raw = palloc(Max(rawlen, 1));
	if (snappy_uncompress(data, len, raw, &rawlen) != SNAPPY_OK)
	{
		loki_set_fatal(lr, HTTP_STATUS_BAD_REQUEST, "the body is not valid snappy compressed data");
		return false;
	}
	if (!wire_check((const uint8 *) raw, (const uint8 *) raw + rawlen))
	{
		loki_set_fatal(lr, HTTP_STATUS_BAD_REQUEST,
					   "the body is not a valid Loki PushRequest protobuf (truncated or malformed)");
		return false;
	}
	lr->pb = (const uint8 *) raw;
	lr->pb_len = rawlen;
	lr->pb_next = 0;
	lr->pb_in_stream = false;
	lr->stream_cxt = AllocSetContextCreate(lr->cxt, "logagg ingest loki stream",
										   ALLOCSET_SMALL_SIZES);
	lr->entry_cxt = AllocSetContextCreate(lr->cxt, "logagg ingest loki entry",
										  ALLOCSET_DEFAULT_SIZES);
	return true;
}

/* The next stream of the protobuf push, its labels parsed; false at the end. */
static bool
pb_next_stream(LokiRequest *lr)
{
	const uint8 *p = lr->pb + lr->pb_next;
	const uint8 *end = lr->pb + lr->pb_len;
	uint64		f;
	int			wt;
	const uint8 *v;
	size_t		n;

	while (p < end && wire_field(&p, end, &f, &wt, &v, &n))
	{
		const uint8 *q = v;
		LokiStream *s = &lr->stream;
		MemoryContext old;

		if (f != 1)
			continue;
		lr->pb_next = p - lr->pb;
		MemoryContextReset(lr->stream_cxt);
		memset(s, 0, sizeof(*s));
		s->labels_text = "";
		/* its labels: the last labels field, wherever it is */
		while (q < v + n)
		{
			uint64		sf;
			int			swt;
			const uint8 *sv;
			size_t		sn;

			(void) wire_field(&q, v + n, &sf, &swt, &sv, &sn);
			if (sf == 1)
			{
				s->labels_text = (const char *) sv;
				s->labels_len = sn;
			}
		}
		s->labels_valid = pg_verifymbstr(s->labels_text, s->labels_len, true);
		old = MemoryContextSwitchTo(lr->stream_cxt);
		s->bad = parse_labels(s, s->labels_text, s->labels_len);
		prepare_stream(s);
		MemoryContextSwitchTo(old);
		lr->pb_entry_next = v;
		lr->pb_stream_end = v + n;
		lr->pb_in_stream = true;
		return true;
	}
	lr->pb_next = lr->pb_len;
	return false;
}

/*
 * The next entry of the current protobuf stream, unpacked into E (in
 * entry_cxt, reset before); false at the stream's end.  *why is set for
 * an entry that does not unpack (it is still an entry, refused alone).
 */
static bool
pb_next_entry(LokiRequest *lr, LokiEntry *e, const char **why)
{
	const uint8 *p = lr->pb_entry_next;
	uint64		f;
	int			wt;
	const uint8 *v;
	size_t		n;

	*why = NULL;
	while (p < lr->pb_stream_end &&
		   wire_field(&p, lr->pb_stream_end, &f, &wt, &v, &n))
	{
		ProtobufCAllocator allocator;
		Logproto__EntryAdapter *ea;
		MemoryContext old;

		if (f != 2)
			continue;
		lr->pb_entry_next = p;
		MemoryContextReset(lr->entry_cxt);
		allocator.alloc = pb_alloc;
		allocator.free = pb_free;
		allocator.allocator_data = lr->entry_cxt;
		ea = logproto__entry_adapter__unpack(&allocator, n, v);
		if (ea == NULL)
		{
			memset(e, 0, sizeof(*e));
			e->undecodable = true;
			e->line_data = (const char *) v;	/* the bytes, for the reject */
			e->line_len = n;
			*why = "the entry is not a valid EntryAdapter protobuf (truncated or malformed)";
			return true;
		}
		old = MemoryContextSwitchTo(lr->entry_cxt);
		pb_entry(e, ea);
		MemoryContextSwitchTo(old);
		return true;
	}
	lr->pb_entry_next = lr->pb_stream_end;
	return false;
}

/* ---- the JSON body: {"streams": [{"stream": {...}, "values": [[ts, line, {meta}?], ...]}]} ---- */

typedef struct JState
{
	LokiRequest *lr;
	JsonLexContext *lex;
	int			depth;			/* open objects and arrays */
	int			skip;			/* ignoring the value of an unknown key at
								 * this depth (0: none) */
	bool		in_streams;		/* in the "streams" array */
	bool		in_labels;		/* in a stream's "stream" object */
	bool		in_values;		/* in a stream's "values" array */
	bool		in_meta;		/* in an entry's structured metadata */
	const char *key3;			/* key of the stream field being read */
	char	   *meta_key;
	int			elem;			/* index of the entry element being read */
	const char *start;			/* where the current entry or labels began */
	const char *fatal;
} JState;

static const char *const loki_json_shape =
"the body must be Loki push JSON: {\"streams\": [{\"stream\": {\"label\": \"value\"}, \"values\": [[\"<nanoseconds since the epoch>\", \"<line>\"]]}]}";

static LokiStream *
cur_stream(JState *st)
{
	return &st->lr->streams[st->lr->nstreams - 1];
}

static LokiEntry *
cur_entry(JState *st)
{
	LokiStream *s = cur_stream(st);

	return &s->entries[s->nentries - 1];
}

static void
entry_bad(JState *st, const char *why)
{
	LokiEntry  *e = cur_entry(st);

	if (e->bad == NULL)
		e->bad = why;
}

/* a new element of a "values" array that is not an array: a bad entry */
static void
bad_value_start(JState *st)
{
	LokiEntry  *e = add_entry(st->lr, cur_stream(st));

	e->bad = "an entry must be an array [\"<nanoseconds since the epoch>\", \"<line>\"] with an optional object of structured metadata";
	e->text = st->lex->token_start;
	st->elem = 99;				/* what it holds only makes it worse */
}

static void
j_object_start(void *arg)
{
	JState	   *st = arg;
	int			d = st->depth++;

	if (st->fatal || (st->skip && d >= st->skip))
		return;
	if (d == 0)
		return;					/* the body */
	if (d == 1)
		st->fatal = "\"streams\" must be an array of streams";
	else if (d == 2 && st->in_streams)
		add_stream(st->lr)->labels_text = NULL;
	else if (d == 3 && strcmp(st->key3, "stream") == 0)
	{
		st->in_labels = true;
		st->start = st->lex->token_start;
	}
	else if (d == 3)
		st->fatal = "\"values\" must be an array of entries";
	else if (d == 4 && st->in_labels)
		cur_stream(st)->bad = "stream label values must be strings";
	else if (d == 4 && st->in_values)
		bad_value_start(st);
	else if (d == 5 && st->in_values && st->elem == 2)
		st->in_meta = true;
	else if (d == 5 && st->in_values)
		entry_bad(st, "the timestamp and the line of an entry must be strings");
	else if (d == 6 && st->in_meta)
		entry_bad(st, "structured metadata values must be strings");
}

static void
j_object_end(void *arg)
{
	JState	   *st = arg;
	int			d = --st->depth;

	if (st->skip && d < st->skip)
		st->skip = 0;
	if (st->fatal || (st->skip && d >= st->skip))
		return;
	if (d == 3 && st->in_labels)
	{
		LokiStream *s = cur_stream(st);

		st->in_labels = false;
		s->labels_text = st->start;
		s->labels_len = st->lex->prev_token_terminator - st->start;
		s->labels_valid = true;
	}
	else if (d == 4 && st->in_values)
	{
		LokiEntry  *e = cur_entry(st);

		e->text_len = st->lex->prev_token_terminator - e->text;
	}
	else if (d == 5 && st->in_meta)
		st->in_meta = false;
}

static void
j_array_start(void *arg)
{
	JState	   *st = arg;
	int			d = st->depth++;

	if (st->fatal || (st->skip && d >= st->skip))
		return;
	if (d == 0)
		st->fatal = loki_json_shape;
	else if (d == 1)
		st->in_streams = true;
	else if (d == 2)
		st->fatal = "each element of \"streams\" must be an object";
	else if (d == 3 && strcmp(st->key3, "values") == 0)
		st->in_values = true;
	else if (d == 3)
		st->fatal = "\"stream\" must be an object of labels";
	else if (d == 4 && st->in_labels)
		cur_stream(st)->bad = "stream label values must be strings";
	else if (d == 4 && st->in_values)
	{
		LokiEntry  *e = add_entry(st->lr, cur_stream(st));

		e->text = st->lex->token_start;
		st->elem = -1;
	}
	else if (d == 5 && st->in_values)
		entry_bad(st, "the elements of an entry must be strings, and structured metadata an object");
	else if (d == 6 && st->in_meta)
		entry_bad(st, "structured metadata values must be strings");
}

static void
j_array_end(void *arg)
{
	JState	   *st = arg;
	int			d = --st->depth;

	if (st->skip && d < st->skip)
		st->skip = 0;
	if (st->fatal || (st->skip && d >= st->skip))
		return;
	if (d == 1)
		st->in_streams = false;
	else if (d == 3 && st->in_values)
		st->in_values = false;
	else if (d == 4 && st->in_values)
	{
		LokiEntry  *e = cur_entry(st);

		e->text_len = st->lex->prev_token_terminator - e->text;
		if (st->elem < 1)
			entry_bad(st, "an entry must have a timestamp and a line: [\"<nanoseconds since the epoch>\", \"<line>\"]");
	}
}

static void
j_field_start(void *arg, char *fname, bool isnull)
{
	JState	   *st = arg;
	int			d = st->depth;

	if (st->skip && d == st->skip)
		st->skip = 0;
	if (st->fatal || (st->skip && d >= st->skip))
		return;
	/* unknown keys are ignored, as protobuf ignores unknown fields */
	if (d == 1 && strcmp(fname, "streams") != 0)
		st->skip = 1;
	else if (d == 3 && strcmp(fname, "stream") != 0 && strcmp(fname, "values") != 0)
		st->skip = 3;
	else if (d == 3)
		st->key3 = strcmp(fname, "stream") == 0 ? "stream" : "values";
	else if ((d == 4 && st->in_labels) || (d == 6 && st->in_meta))
		st->meta_key = fname;
}

static void
j_element_start(void *arg, bool isnull)
{
	JState	   *st = arg;

	if (st->fatal || (st->skip && st->depth >= st->skip))
		return;
	if (st->depth == 5 && st->in_values)
		st->elem++;
}

/* nanoseconds since the epoch, as Loki's JSON gives them (a string, or a number) */
static bool
parse_ns(const char *token, LokiEntry *e)
{
	int64		ns;

	if (!ingest_parse_int64(token, &ns))
		return false;
	e->has_ts = true;
	e->sec = ns / 1000000000;
	e->nsec = ns % 1000000000;
	if (e->nsec < 0)
	{
		e->sec--;
		e->nsec += 1000000000;
	}
	return true;
}

static void
j_scalar(void *arg, char *token, JsonTokenType type)
{
	JState	   *st = arg;
	int			d = st->depth;

	if (st->fatal || (st->skip && d >= st->skip))
		return;
	if (d == 0)
		st->fatal = loki_json_shape;
	else if (d == 1 && type != JSON_TOKEN_NULL)
		st->fatal = "\"streams\" must be an array of streams";
	else if (d == 2)
		st->fatal = "each element of \"streams\" must be an object";
	else if (d == 3 && type != JSON_TOKEN_NULL)
		st->fatal = strcmp(st->key3, "stream") == 0 ? "\"stream\" must be an object of labels" :
			"\"values\" must be an array of entries";
	else if (d == 4 && st->in_labels)
	{
		if (type != JSON_TOKEN_STRING)
			cur_stream(st)->bad = "stream label values must be strings";
		else
		{
			LokiStream *s = cur_stream(st);

			for (int i = 0; i < s->nlabels; i++)
				if (strcmp(s->labels[i].name, st->meta_key) == 0)
					s->bad = "a stream label name appears twice";
			add_label(&s->labels, &s->nlabels, &s->maxlabels, st->meta_key, strlen(st->meta_key),
					  token, strlen(token));
		}
	}
	else if (d == 4 && st->in_values)
	{
		bad_value_start(st);
		cur_entry(st)->text_len = st->lex->prev_token_terminator - cur_entry(st)->text;
	}
	else if (d == 5 && st->in_values)
	{
		LokiEntry  *e = cur_entry(st);

		if (st->elem == 0 && (type == JSON_TOKEN_STRING || type == JSON_TOKEN_NUMBER))
		{
			if (!parse_ns(token, e))
				entry_bad(st, "the timestamp must be a string of nanoseconds since the epoch, such as \"1700000000123456789\"");
		}
		else if (st->elem == 0)
			entry_bad(st, "the timestamp must be a string of nanoseconds since the epoch, such as \"1700000000123456789\"");
		else if (st->elem == 1 && type == JSON_TOKEN_STRING)
		{
			e->line = token;
			e->line_data = token;
			e->line_len = strlen(token);
		}
		else if (st->elem == 1)
			entry_bad(st, "the line of an entry must be a string");
		else
			entry_bad(st, "an entry has at most three elements: timestamp, line, structured metadata");
	}
	else if (d == 6 && st->in_meta)
	{
		LokiEntry  *e = cur_entry(st);

		if (type != JSON_TOKEN_STRING)
			entry_bad(st, "structured metadata values must be strings");
		else
			add_label(&e->meta, &e->nmeta, &e->maxmeta, st->meta_key, strlen(st->meta_key),
					  token, strlen(token));
	}
}

/*
 * Collect what DATA (Loki push JSON) holds into LR's streams and entries,
 * with pg_parse_json's callbacks.  Returns NULL, or why DATA is not such
 * JSON.
 */
static const char *
json_collect(LokiRequest *lr, char *data, int len)
{
	JState		st;
	JsonSemAction sem;
	JsonParseErrorType err;

	memset(&st, 0, sizeof(st));
	memset(&sem, 0, sizeof(sem));
	st.lr = lr;
	st.key3 = "";
	st.lex = makeJsonLexContextCstringLen(data, len, GetDatabaseEncoding(), true);
	sem.semstate = &st;
	sem.object_start = j_object_start;
	sem.object_end = j_object_end;
	sem.array_start = j_array_start;
	sem.array_end = j_array_end;
	sem.object_field_start = j_field_start;
	sem.array_element_start = j_element_start;
	sem.scalar = j_scalar;
	err = pg_parse_json(st.lex, &sem);
	if (err != JSON_SUCCESS)
		return psprintf("the body is not valid JSON: %s", json_errdetail(err, st.lex));
	return st.fatal;
}

/*
 * Decode a JSON push.  Returns false (fatal set) if it is not one.  What
 * the parse collects (every token, tens of times the body's size for a
 * body of tiny entries) is dropped at once: only where each stream's
 * labels and each entry are in the body is kept, and each is read again
 * when its turn comes (json_emit), so a push in progress holds its body
 * and a few words per entry.
 */
static bool
decode_json(LokiRequest *lr, char *data, int len)
{
	pg_wchar	cp;
	const char *why;
	MemoryContext pass;
	MemoryContext old;
	int			n = 0;

	if (!pg_verifymbstr(data, len, true))
	{
		loki_set_fatal(lr, HTTP_STATUS_BAD_REQUEST, "the body is not valid UTF-8 (or contains a NUL byte)");
		return false;
	}
	if (ingest_json_nesting_depth(data, len) > INGEST_MAX_JSON_DEPTH)
	{
		loki_set_fatal(lr, HTTP_STATUS_BAD_REQUEST, "the body's JSON is nested too deeply");
		return false;
	}
	/* the lexer would raise an error for such an escape: refuse it first */
	if ((cp = ingest_unconvertible_escape(data, len)) != 0)
	{
		loki_set_fatal(lr, HTTP_STATUS_BAD_REQUEST,
					   psprintf("character U+%04X (a \\u escape) has no equivalent in the database encoding %s",
								cp, GetDatabaseEncodingName()));
		return false;
	}
	pass = AllocSetContextCreate(CurrentMemoryContext, "logagg ingest loki json",
								 ALLOCSET_DEFAULT_SIZES);
	old = MemoryContextSwitchTo(pass);
	why = json_collect(lr, data, len);
	MemoryContextSwitchTo(old);
	if (why)
	{
		loki_set_fatal(lr, HTTP_STATUS_BAD_REQUEST, why);
		MemoryContextDelete(pass);
		lr->streams = NULL;
		lr->nstreams = 0;
		return false;
	}
	for (int i = 0; i < lr->nstreams; i++)
		n += lr->streams[i].nentries;
	lr->jstreams = palloc(Max(lr->nstreams, 1) * sizeof(JsonStreamRef));
	lr->jentries = palloc_extended(Max(n, 1) * sizeof(JsonEntryRef), MCXT_ALLOC_HUGE);
	for (int i = 0; i < lr->nstreams; i++)
	{
		LokiStream *s = &lr->streams[i];

		lr->jstreams[i].labels_text = s->labels_text;
		lr->jstreams[i].labels_len = s->labels_len;
		lr->jstreams[i].bad = s->bad;
		for (int j = 0; j < s->nentries; j++)
		{
			JsonEntryRef *r = &lr->jentries[lr->njentries++];

			r->stream = i;
			r->text = s->entries[j].text;
			r->len = s->entries[j].text_len;
		}
	}
	MemoryContextDelete(pass);
	lr->streams = NULL;
	lr->nstreams = lr->maxstreams = 0;
	lr->jnext = 0;
	lr->jstream = -1;
	lr->stream_cxt = AllocSetContextCreate(lr->cxt, "logagg ingest loki stream",
										   ALLOCSET_SMALL_SIZES);
	lr->entry_cxt = AllocSetContextCreate(lr->cxt, "logagg ingest loki entry",
										  ALLOCSET_DEFAULT_SIZES);
	return true;
}

/* ---- entries into records ---- */

static const LokiLabel *
find_label(const LokiLabel *labels, int n, const char *name)
{
	int			len = strlen(name);

	for (int i = 0; i < n; i++)
		if (labels[i].nlen == len && memcmp(labels[i].name, name, len) == 0)
			return &labels[i];
	return NULL;
}

/*
 * S (LEN bytes of valid text) as a JSON string.  The common case -- no
 * character to escape -- is one copy.  *flat is cleared when the result
 * holds a \u escape (or, for a name, any escape), which the flat attrs
 * reader (flat_attrs.c) does not take.
 */
static void
append_json_text(StringInfo out, const char *s, int len, bool name, bool *flat)
{
	bool		plain = true;

	for (int i = 0; i < len; i++)
	{
		unsigned char ch = s[i];

		if (ch < 0x20 || ch == '"' || ch == '\\')
		{
			plain = false;
			if (name || (ch < 0x20 && ch != '\b' && ch != '\f' && ch != '\n' &&
						 ch != '\r' && ch != '\t'))
				*flat = false;
		}
	}
	if (plain)
	{
		enlargeStringInfo(out, len + 2);
		out->data[out->len++] = '"';
		memcpy(out->data + out->len, s, len);
		out->len += len;
		out->data[out->len++] = '"';
		out->data[out->len] = '\0';
	}
	else
	{
		/* as escape_json, for bytes that may hold a NUL (a reject's) */
		appendStringInfoChar(out, '"');
		for (int i = 0; i < len; i++)
		{
			unsigned char ch = s[i];

			switch (ch)
			{
				case '\b':
					appendStringInfoString(out, "\\b");
					break;
				case '\f':
					appendStringInfoString(out, "\\f");
					break;
				case '\n':
					appendStringInfoString(out, "\\n");
					break;
				case '\r':
					appendStringInfoString(out, "\\r");
					break;
				case '\t':
					appendStringInfoString(out, "\\t");
					break;
				case '"':
					appendStringInfoString(out, "\\\"");
					break;
				case '\\':
					appendStringInfoString(out, "\\\\");
					break;
				default:
					if (ch < 0x20)
						appendStringInfo(out, "\\u%04x", ch);
					else
						appendStringInfoCharMacro(out, ch);
			}
		}
		appendStringInfoChar(out, '"');
	}
}

/* Pairs as JSON object members, opening the object if S is empty. */
static void
append_pairs(StringInfo s, const LokiLabel *labels, int n, bool *flat)
{
	for (int i = 0; i < n; i++)
	{
		appendStringInfoChar(s, s->len == 0 ? '{' : ',');
		append_json_text(s, labels[i].name, labels[i].nlen, true, flat);
		appendStringInfoChar(s, ':');
		append_json_text(s, labels[i].value, labels[i].vlen, false, flat);
	}
}

static char *
label_value(const LokiLabel *l)
{
	return l ? pnstrdup(l->value, l->vlen) : NULL;
}

/* What every entry of a stream shares: its labels as attrs, its source. */
static void
prepare_stream(LokiStream *s)
{
	StringInfoData buf;
	const LokiLabel *l;

	s->prepared = true;
	if (s->bad)
		return;
	initStringInfo(&buf);
	s->attrs_flat = true;
	append_pairs(&buf, s->labels, s->nlabels, &s->attrs_flat);
	s->attrs_prefix = buf.data;
	s->attrs_prefix_len = buf.len;
	if ((l = find_label(s->labels, s->nlabels, "service_name")) == NULL &&
		(l = find_label(s->labels, s->nlabels, "job")) == NULL)
		l = find_label(s->labels, s->nlabels, "app");
	s->source = label_value(l);
}

/* The level: level, detected_level, severity -- structured metadata first. */
static const LokiLabel *
entry_level(const LokiStream *s, const LokiEntry *e)
{
	static const char *const names[] = {"level", "detected_level", "severity"};
	const LokiLabel *l;

	for (int i = 0; i < lengthof(names); i++)
		if ((l = find_label(e->meta, e->nmeta, names[i])) != NULL ||
			(l = find_label(s->labels, s->nlabels, names[i])) != NULL)
			return l;
	return NULL;
}

typedef struct RawArg
{
	const LokiStream *s;
	const LokiEntry *e;
} RawArg;

/*
 * A rejected entry's text for logagg.rejected: a Loki JSON push of that
 * one entry (the JSON door: its exact text), so that it can be read, and
 * sent again once fixed.
 */
static void
entry_raw(void *arg, StringInfo buf)
{
	const LokiStream *s = ((RawArg *) arg)->s;
	const LokiEntry *e = ((RawArg *) arg)->e;
	bool		flat;

	if (e->undecodable)
	{
		/* the entry's protobuf bytes as they came */
		appendBinaryStringInfo(buf, e->line_data, e->line_len);
		return;
	}

	appendStringInfoString(buf, "{\"streams\":[{");
	if (e->text)
	{
		/* JSON: the stream's labels object as it came */
		appendStringInfoString(buf, "\"stream\":");
		if (s->labels_text)
			appendBinaryStringInfo(buf, s->labels_text, s->labels_len);
		else
			appendStringInfoString(buf, "{}");
	}
	else if (s->bad == NULL)
	{
		StringInfoData l;

		initStringInfo(&l);
		append_pairs(&l, s->labels, s->nlabels, &flat);
		appendStringInfoString(buf, "\"stream\":");
		appendStringInfoString(buf, l.len ? l.data : "{");
		appendStringInfoChar(buf, '}');
		pfree(l.data);
	}
	else
	{
		/* protobuf labels that do not parse: the string as it came */
		char	   *t = pnstrdup(s->labels_text, s->labels_len);

		appendStringInfoString(buf, "\"labels\":");
		escape_json(buf, t);
		pfree(t);
	}
	appendStringInfoString(buf, ",\"values\":[");
	if (e->text)
		appendBinaryStringInfo(buf, e->text, e->text_len);
	else
	{
		if (e->sec >= 0 && e->sec < INT64CONST(9000000000))
			appendStringInfo(buf, "[\"" INT64_FORMAT "%09d\",", e->sec, e->nsec);
		else
			appendStringInfo(buf, "[\"" INT64_FORMAT ".%09d\",", e->sec, e->nsec);
		append_json_text(buf, e->line_data ? e->line_data : "", e->line_len, false, &flat);
		if (e->nmeta > 0)
		{
			StringInfoData m;

			initStringInfo(&m);
			append_pairs(&m, e->meta, e->nmeta, &flat);
			appendStringInfoChar(&m, '}');
			appendStringInfoChar(buf, ',');
			appendBinaryStringInfo(buf, m.data, m.len);
			pfree(m.data);
		}
		appendStringInfoChar(buf, ']');
	}
	appendStringInfoString(buf, "]}]}");
}

/* ts from seconds and nanoseconds since the Unix epoch (microseconds kept) */
static TimestampTz
entry_ts(const LokiEntry *e)
{
	int64		sec = e->sec;

	/* beyond any window: clamp, so that the window check rejects it */
	sec = Max(sec, -INT64CONST(100000000000));
	sec = Min(sec, INT64CONST(100000000000));
	return (sec - (int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * SECS_PER_DAY) * USECS_PER_SEC +
		e->nsec / 1000;
}

static void
emit_entry(IngestBatch *batch, const IngestOrigin *origin, LokiRequest *lr,
		   LokiStream *s, LokiEntry *e)
{
	RecState	st;
	RawArg		raw = {s, e};
	const char *reason = s->bad ? s->bad : e->bad;

	lr->nentries++;
	lr->cur_s = s;
	lr->cur_e = e;

	if (reason == NULL && !e->has_ts)
		reason = "the entry has no timestamp";
	if (reason == NULL && e->line == NULL)
		reason = "the entry has no line";
	memset(&st, 0, sizeof(st));
	st.bad = reason;
	if (reason == NULL)
	{
		const LokiLabel *level = entry_level(s, e);
		bool		flat = s->attrs_flat;

		/* attrs: the stream's labels, then the entry's metadata */
		resetStringInfo(&lr->attrs);
		appendBinaryStringInfo(&lr->attrs, s->attrs_prefix, s->attrs_prefix_len);
		append_pairs(&lr->attrs, e->meta, e->nmeta, &flat);
		if (lr->attrs.len > 0)
		{
			/* flat text is read without jsonb_in (flat_attrs.c) */
			appendStringInfoChar(&lr->attrs, '}');
			st.attrs_text = ingest_batch_strdup(batch, lr->attrs.data);
			st.attrs_flat = flat;
		}
		st.val[F_MESSAGE] = e->line;
		st.type[F_MESSAGE] = JSON_TOKEN_STRING;
		if (level)
		{
			st.val[F_LEVEL] = label_value(level);
			st.type[F_LEVEL] = JSON_TOKEN_STRING;
		}
		/* the source the record names (a plain token's own source wins) */
		if (s->source)
		{
			st.val[F_SOURCE] = s->source;
			st.type[F_SOURCE] = JSON_TOKEN_STRING;
		}
	}
	ingest_finish_decoded_record(batch, origin, &st, entry_ts(e), entry_raw, &raw,
								 e->line_len + 64);
	if (st.val[F_LEVEL])
		pfree(st.val[F_LEVEL]);
	lr->cur_s = NULL;
	lr->cur_e = NULL;
}

/* Protobuf entries into the batch until it is full; true when all are done. */
static bool
pb_emit(IngestBatch *batch, const IngestOrigin *origin, LokiRequest *lr)
{
	while (!ingest_server_batch_full())
	{
		LokiEntry	e;
		const char *why;

		if (!lr->pb_in_stream && !pb_next_stream(lr))
			return true;
		if (!pb_next_entry(lr, &e, &why))
		{
			lr->pb_in_stream = false;
			continue;
		}
		if (why)
			e.bad = why;
		emit_entry(batch, origin, lr, &lr->stream, &e);
	}
	return false;
}

/*
 * One piece of the body read again as a push of its own (in the current
 * memory context): what it holds is the only stream of TMP.
 */
static LokiStream *
json_reread(LokiRequest *tmp, const char *prefix, const char *text, int len, const char *suffix)
{
	char	   *w = psprintf("%s%.*s%s", prefix, len, text, suffix);

	memset(tmp, 0, sizeof(*tmp));
	if (json_collect(tmp, w, strlen(w)) != NULL || tmp->nstreams != 1)
		return NULL;			/* not expected: it was read once already */
	return &tmp->streams[0];
}

/* JSON entries into the batch until it is full; true when all are done. */
static bool
json_emit(IngestBatch *batch, const IngestOrigin *origin, LokiRequest *lr)
{
	while (lr->jnext < lr->njentries && !ingest_server_batch_full())
	{
		const JsonEntryRef *r = &lr->jentries[lr->jnext];
		LokiRequest tmp;
		LokiStream *one;
		LokiEntry	e;
		MemoryContext old;

		if (r->stream != lr->jstream)
		{
			const JsonStreamRef *sr = &lr->jstreams[r->stream];

			MemoryContextReset(lr->stream_cxt);
			old = MemoryContextSwitchTo(lr->stream_cxt);
			one = sr->labels_text ?
				json_reread(&tmp, "{\"streams\":[{\"stream\":", sr->labels_text, sr->labels_len, "}]}") :
				json_reread(&tmp, "{\"streams\":[{", "", 0, "}]}");
			memset(&lr->stream, 0, sizeof(LokiStream));
			if (one)
				lr->stream = *one;
			else
				lr->stream.bad = "the stream's labels could not be read";
			if (sr->bad)
				lr->stream.bad = sr->bad;
			lr->stream.prepared = false;
			prepare_stream(&lr->stream);
			MemoryContextSwitchTo(old);
			lr->jstream = r->stream;
		}
		MemoryContextReset(lr->entry_cxt);
		old = MemoryContextSwitchTo(lr->entry_cxt);
		one = json_reread(&tmp, "{\"streams\":[{\"values\":[", r->text, r->len, "]}]}");
		if (one && one->nentries == 1)
			e = one->entries[0];
		else
		{
			memset(&e, 0, sizeof(e));
			e.text = r->text;
			e.text_len = r->len;
			e.bad = "the entry could not be read";
		}
		emit_entry(batch, origin, lr, &lr->stream, &e);
		MemoryContextSwitchTo(old);
		lr->jnext++;
	}
	return lr->jnext >= lr->njentries;
}

/*
 * Parse a push body into the batch: decode it first, then turn its
 * entries into records from where the last round stopped until the
 * batch is full.  Returns true when the body is done.
 */
bool
ingest_loki_parse_part(IngestBatch *batch, const IngestOrigin *origin, Conn *c, char *data,
					   int len, IngestParsePos *pos)
{
	LokiRequest *lr = c->loki;
	MemoryContext oldcxt;
	bool		ok;
	bool		done;

	if (!pos->started && lr->preset)
	{
		pos->started = true;
		loki_set_fatal(lr, HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE, lr->preset);
		ingest_add_reject_bytes(batch, origin, lr->fatal, data, len,
								pg_verifymbstr(data, len, true), false, 0);
		return true;
	}
	if (!pos->started)
	{
		pos->started = true;
		lr->cxt = AllocSetContextCreate(TopMemoryContext, "logagg ingest loki push",
										ALLOCSET_DEFAULT_SIZES);
		oldcxt = MemoryContextSwitchTo(lr->cxt);
		ok = lr->format == LOKI_PROTOBUF ? decode_protobuf(lr, data, len) :
			decode_json(lr, data, len);
		if (ok)
			initStringInfo(&lr->attrs);
		MemoryContextSwitchTo(oldcxt);
		if (!ok)
		{
			/* the body is refused whole, its bytes kept */
			ingest_add_reject_bytes(batch, origin, lr->fatal, data, len,
									pg_verifymbstr(data, len, true), false, 0);
			loki_release_decoded(lr);
			return true;
		}
	}
	oldcxt = MemoryContextSwitchTo(lr->cxt);
	if (lr->format == LOKI_PROTOBUF)
		done = pb_emit(batch, origin, lr);
	else
		done = json_emit(batch, origin, lr);
	MemoryContextSwitchTo(oldcxt);
	if (done)
		loki_release_decoded(lr);
	return done;
}

/* ---- outcomes and the reply ---- */

/*
 * An entry was rejected (while parsing: the entry being emitted; while
 * stored: an entry of this push).  The first LOKI_REPLY_ENTRIES are named
 * in the reply, in Loki's words.
 */
void
ingest_loki_note_rejected(Conn *c, const char *reason)
{
	LokiRequest *lr = c->loki;
	StringInfoData s;

	if (lr == NULL || lr->fatal_status != 0)
		return;
	if (++lr->reported > LOKI_REPLY_ENTRIES)
		return;
	initStringInfo(&s);
	if (lr->cur_e)
	{
		const LokiStream *st = lr->cur_s;
		const LokiEntry *e = lr->cur_e;

		if (e->has_ts)
			appendStringInfo(&s, "entry with timestamp " INT64_FORMAT ".%09d", e->sec, e->nsec);
		else
			appendStringInfoString(&s, "entry without timestamp");
		appendStringInfo(&s, " ignored, reason: '%s' for stream: ", reason);
		if (st->labels_text && st->labels_valid)
		{
			int			n = Min(st->labels_len, LOKI_REPLY_LABELS);

			n = pg_mbcliplen(st->labels_text, st->labels_len, n);
			appendBinaryStringInfo(&s, st->labels_text, n);
			if (n < st->labels_len)
				appendStringInfoString(&s, "...");
		}
		else
			appendStringInfoString(&s, "(labels that are not valid text)");
	}
	else
		appendStringInfo(&s, "an entry was not stored, reason: '%s'", reason);
	appendStringInfoString(&s, ",\n");
	ingest_buf_append(&lr->report, s.data, s.len);
	pfree(s.data);
}

/* After the COMMIT: 204, or what was wrong. */
void
ingest_loki_reply(Conn *c)
{
	LokiRequest *lr = c->loki;
	StringInfoData s;

	if (lr->fatal_status)
	{
		initStringInfo(&s);
		appendStringInfo(&s, "%s\n", lr->fatal);
		ingest_loki_error(c, lr->fatal_status, s.data);
		pfree(s.data);
		loki_reset(lr);
		return;
	}
	if (c->http_rejected == 0)
	{
		ingest_http_reply(c, HTTP_STATUS_NO_CONTENT, "text/plain", "");
		loki_reset(lr);
		return;
	}
	initStringInfo(&s);
	if (lr->report.len > 0)
		appendBinaryStringInfo(&s, lr->report.data, lr->report.len);
	if (lr->reported > LOKI_REPLY_ENTRIES)
		appendStringInfo(&s, "(and %d more)\n", lr->reported - LOKI_REPLY_ENTRIES);
	appendStringInfo(&s, "total ignored: " INT64_FORMAT " out of " INT64_FORMAT
					 " (the others are stored; the ignored are in logagg.rejected with their reasons)\n",
					 c->http_rejected, lr->nentries);
	ingest_loki_error(c, HTTP_STATUS_BAD_REQUEST, s.data);
	pfree(s.data);
	loki_reset(lr);
}
