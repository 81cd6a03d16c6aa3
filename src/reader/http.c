/*-------------------------------------------------------------------------
 *
 * http.c
 *		Plain HTTP on the reader port: routing (the console's files, the
 *		JSON API under /api/), the query-string parameters of the API and of
 *		/tail checked into a ReadFilter, and writing replies with the
 *		security headers every response carries.
 *
 * /api/whoami is answered at once from the token cache; the other API
 * requests are marked pending, and the main loop runs their query in a
 * background worker (query.c) and replies when it is done.  Runs inside
 * lws callbacks: no palloc, no ereport (see parse_attrs for the one
 * guarded exception).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "regex/regex.h"
#include "catalog/pg_collation.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "reader/reader_int.h"

#define CSP_HEADER "default-src 'self'; connect-src 'self' ws: wss:"

/* Content-Security-Policy and X-Content-Type-Options: on every response. */
int
reader_add_security_headers(struct lws *wsi, unsigned char **p, unsigned char *end)
{
	if (lws_add_http_header_by_name(wsi, (const unsigned char *) "Content-Security-Policy:",
									(const unsigned char *) CSP_HEADER, strlen(CSP_HEADER), p, end) ||
		lws_add_http_header_by_name(wsi, (const unsigned char *) "X-Content-Type-Options:",
									(const unsigned char *) "nosniff", 7, p, end) ||
		lws_add_http_header_by_name(wsi, (const unsigned char *) "Cache-Control:",
									(const unsigned char *) "no-store", 8, p, end))
		return 1;
	return 0;
}

int
reader_reply(RConn *c, int status, const char *type, const char *body, size_t len)
{
	c->out.len = 0;
	if (!ingest_buf_append(&c->out, body, len))
		return -1;
	c->status = status;
	c->type = type;
	if (c->wsi)
		lws_callback_on_writable(c->wsi);
	return 0;
}

/* {"error": MSG}; MSG must need no JSON escaping beyond '"' and '\'. */
int
reader_reply_error(RConn *c, int status, const char *msg)
{
	char		body[1024];
	int			n = 0;

	n += snprintf(body + n, sizeof(body) - n, "{\"error\": \"");
	for (const char *s = msg; *s && n < (int) sizeof(body) - 8; s++)
	{
		if (*s == '"' || *s == '\\')
			body[n++] = '\\';
		body[n++] = (*s >= 0 && *s < 0x20) ? ' ' : *s;
	}
	n += snprintf(body + n, sizeof(body) - n, "\"}");
	return reader_reply(c, status, "application/json", body, n);
}

/* ---- parameters ---- */

/* A source pattern: globs of [A-Za-z0-9._*-], 1 to 128 each, by commas. */
static bool
valid_pattern(const char *s)
{
	int			glob = 0;

	if (*s == '\0')
		return false;
	for (; *s; s++)
	{
		if (*s == ',')
		{
			if (glob == 0)
				return false;
			glob = 0;
			continue;
		}
		if (!(isalnum((unsigned char) *s) || *s == '.' || *s == '_' || *s == '*' || *s == '-'))
			return false;
		if (++glob > 128)
			return false;
	}
	return glob > 0;
}

/* A non-negative integer of at most 9 digits, or -1. */
static int
small_int(const char *s)
{
	int			v = 0;

	if (*s == '\0' || strlen(s) > 9)
		return -1;
	for (; *s; s++)
	{
		if (!isdigit((unsigned char) *s))
			return -1;
		v = v * 10 + (*s - '0');
	}
	return v;
}

/*
 * Does the regex compile?  pg_regcomp allocates with malloc and reports
 * errors by its return code, so it is safe in a callback.
 */
static bool
regex_compiles(const char *pattern)
{
	int			len = strlen(pattern);
	pg_wchar   *w = malloc((len + 1) * sizeof(pg_wchar));
	regex_t		re;
	int			wlen;
	int			rc;

	if (w == NULL)
		return false;
	wlen = pg_mb2wchar_with_len(pattern, w, len);
	rc = pg_regcomp(&re, w, wlen, REG_ADVANCED, DEFAULT_COLLATION_OID);
	free(w);
	if (rc != REG_OKAY)
		return false;
	pg_regfree(&re);
	return true;
}

/*
 * Is the text a JSON object?  The one place a callback calls into
 * PostgreSQL's JSON parser, which pallocs and reports errors with
 * ereport: in a memory context of its own, inside PG_TRY, so that no
 * error can leave this function (let alone cross lws's frames).
 */
static bool
json_object_ok(const char *s)
{
	static MemoryContext cxt = NULL;
	MemoryContext old;
	volatile bool ok = false;

	if (cxt == NULL)
		cxt = AllocSetContextCreate(TopMemoryContext, "logagg reader parameters",
									ALLOCSET_SMALL_SIZES);
	old = MemoryContextSwitchTo(cxt);
	PG_TRY();
	{
		Datum		j = DirectFunctionCall1(jsonb_in, CStringGetDatum(s));

		ok = JB_ROOT_IS_OBJECT(DatumGetJsonbP(j));
	}
	PG_CATCH();
	{
		MemoryContextSwitchTo(cxt);
		FlushErrorState();
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(old);
	MemoryContextReset(cxt);
	return ok;
}

/* One parameter into buf: NULL when fine (absent leaves buf ""), else why. */
static const char *
arg(struct lws *wsi, const char *name, char *buf, int size, const char *toolong)
{
	int			n = reader_url_arg(wsi, name, buf, size);

	if (n == -2)
		return toolong;
	if (n < 0)
		buf[0] = '\0';
	else if (strlen(buf) != (size_t) n)
		return "parameters must not contain NUL bytes";
	return NULL;
}

/*
 * The query-string filters of /tail (tail) or of the API into f.  Returns
 * NULL, or the message of a 400.
 */
const char *
reader_parse_filter(struct lws *wsi, ReadFilter *f, bool tail)
{
	char		num[32];
	const char *why;

	memset(f, 0, sizeof(*f));
	f->min_severity = -1;
	f->limit = 100;
	if ((why = arg(wsi, "source=", f->source, sizeof(f->source), "source is too long")) != NULL)
		return why;
	if (f->source[0] && !valid_pattern(f->source))
		return "source must be a source name or pattern: globs of letters, digits, '.', '_', '-' and '*', separated by commas";
	if ((why = arg(wsi, "min_severity=", num, sizeof(num), "min_severity must be critical, high or low")) != NULL)
		return why;
	if (num[0] && (f->min_severity = logagg_severity_index(num)) < 0)
		return "min_severity must be critical, high or low";
	if ((why = arg(wsi, "q=", f->q, sizeof(f->q), "q is longer than 4096 bytes")) != NULL)
		return why;
	if (f->q[0] && !pg_verify_mbstr(GetDatabaseEncoding(), f->q, strlen(f->q), true))
		return "q is not valid text";
	if ((why = arg(wsi, "attrs=", f->attrs, sizeof(f->attrs), "attrs is longer than 4096 bytes")) != NULL)
		return why;
	if (f->attrs[0] && !json_object_ok(f->attrs))
		return "attrs must be a JSON object, e.g. {\"user\": \"alice\"}";
	if (tail)
	{
		if (f->q[0] && !regex_compiles(f->q))
			return "q is not a valid regular expression";
		if ((why = arg(wsi, "since=", num, sizeof(num), "since must be a number of records from 0 to 10000")) != NULL)
			return why;
		if (num[0] && ((f->since_n = small_int(num)) < 0 || f->since_n > TAIL_SINCE_MAX))
			return "since must be a number of records from 0 to 10000";
		return NULL;
	}
	if ((why = arg(wsi, "since=", f->since, sizeof(f->since), "since must be an RFC 3339 timestamp")) != NULL)
		return why;
	if ((why = arg(wsi, "until=", f->until, sizeof(f->until), "until must be an RFC 3339 timestamp")) != NULL)
		return why;
	if ((why = arg(wsi, "limit=", num, sizeof(num), "limit must be a number from 0 to 1000")) != NULL)
		return why;
	if (num[0] && ((f->limit = small_int(num)) < 0 || f->limit > 1000))
		return "limit must be a number from 0 to 1000";
	if ((why = arg(wsi, "range=", f->range, sizeof(f->range), "range must be 1h or 1d")) != NULL)
		return why;
	if (f->range[0] && strcmp(f->range, "1h") != 0 && strcmp(f->range, "1d") != 0)
		return "range must be 1h or 1d";
	return NULL;
}

/* ---- routing ---- */

static int
whoami(RConn *c)
{
	char		body[2048];
	int			n;

	/* name and pattern are checked by the table: [A-Za-z0-9._*,-] only */
	n = snprintf(body, sizeof(body), "{\"name\": \"%s\", \"sources\": \"%s\"}", c->name, c->sources);
	return reader_reply(c, HTTP_STATUS_OK, "application/json", body, Min(n, (int) sizeof(body) - 1));
}

static ApiKind
api_kind(const char *path)
{
	if (strcmp(path, "search") == 0)
		return API_SEARCH;
	if (strcmp(path, "histogram") == 0)
		return API_HISTOGRAM;
	if (strcmp(path, "alerts") == 0)
		return API_ALERTS;
	if (strcmp(path, "status") == 0)
		return API_STATUS;
	return API_NONE;
}

static int
api_request(struct lws *wsi, RConn *c, const char *path)
{
	ApiKind		kind = api_kind(path);
	const char *why;

	if (kind == API_NONE && strcmp(path, "whoami") != 0)
		return reader_reply_error(c, HTTP_STATUS_NOT_FOUND,
								  "not found: the API is /api/whoami, /api/search, /api/histogram, /api/alerts and /api/status");
	if (reader_authenticate(wsi, c) != 0)
		return reader_reply_error(c, HTTP_STATUS_UNAUTHORIZED, "missing, unknown or revoked reader token");
	if (kind == API_NONE)
		return whoami(c);
	if (c->filter == NULL && (c->filter = malloc(sizeof(ReadFilter))) == NULL)
		return -1;
	if ((why = reader_parse_filter(wsi, c->filter, false)) != NULL)
		return reader_reply_error(c, HTTP_STATUS_BAD_REQUEST, why);
	c->api = kind;
	c->api_pending = true;		/* the main loop starts its query */
	return 0;
}

/* LWS_CALLBACK_HTTP: a plain HTTP request. */
int
reader_http_request(struct lws *wsi, ReaderSession *pss, const char *uri)
{
	RConn	   *c = pss->conn;

	c->status = 0;
	c->retry_after = 0;
	c->api = API_NONE;
	if (lws_hdr_total_length(wsi, WSI_TOKEN_GET_URI) <= 0)
		return reader_reply_error(c, HTTP_STATUS_METHOD_NOT_ALLOWED, "only GET is supported");
	if (strncmp(uri, "/api/", 5) == 0)
		return api_request(wsi, c, uri + 5);
	if (strcmp(uri, "/tail") == 0)
		return reader_reply_error(c, HTTP_STATUS_BAD_REQUEST, "/tail is a WebSocket endpoint: send an upgrade request");
	return reader_static_file(c, uri);
}

int
reader_http_writeable(struct lws *wsi, RConn *c)
{
	unsigned char hdr[LWS_PRE + 1024];
	unsigned char *start = hdr + LWS_PRE;
	unsigned char *p = start;
	unsigned char *end = hdr + sizeof(hdr) - 1;
	Buf			body = {0};

	if (c->status == 0)
		return 0;
	if (lws_add_http_common_headers(wsi, c->status, c->type, c->out.len, &p, end) ||
		reader_add_security_headers(wsi, &p, end))
		return -1;
	if (c->status == HTTP_STATUS_UNAUTHORIZED &&
		lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_WWW_AUTHENTICATE,
									 (const unsigned char *) "Bearer realm=\"logagg\"", 21, &p, end))
		return -1;
	if (c->retry_after > 0)
	{
		char		secs[16];
		int			n = snprintf(secs, sizeof(secs), "%d", c->retry_after);

		if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_RETRY_AFTER,
										 (const unsigned char *) secs, n, &p, end))
			return -1;
	}
	if (lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	if (!ingest_buf_append(&body, hdr, LWS_PRE) || !ingest_buf_append(&body, c->out.data, c->out.len))
	{
		ingest_buf_free(&body);
		return -1;
	}
	if (lws_write(wsi, (unsigned char *) body.data + LWS_PRE, c->out.len,
				  LWS_WRITE_HTTP_FINAL) != (int) c->out.len)
	{
		ingest_buf_free(&body);
		return -1;
	}
	ingest_buf_free(&body);
	c->out.len = 0;
	c->status = 0;
	if (lws_http_transaction_completed(wsi))
		return -1;
	return 0;
}
