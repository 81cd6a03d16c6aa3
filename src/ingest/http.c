/*-------------------------------------------------------------------------
 *
 * http.c
 *		Plain HTTP on the ingest port: POST /ingest (Content-Length or
 *		chunked bodies, decoded here because lws 4.1 does not), GET /healthz,
 *		GET /metrics (rendered by metrics.c), the Elasticsearch endpoints
 *		(routed to es_bulk.c), the Loki push endpoint (routed to loki.c),
 *		and writing the replies.
 *
 * A POST body is queued like a WebSocket message; its reply
 * ({"accepted": N, "rejected": M}) is written after the commit that
 * stored it (commit.c).  Runs inside lws callbacks: no palloc, no ereport.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "ingest/server_int.h"

int
ingest_http_reply(Conn *c, int status, const char *type, const char *body)
{
	return ingest_http_reply_len(c, status, type, body, strlen(body));
}

/* A reply whose body may hold NUL bytes (protobuf). */
int
ingest_http_reply_len(Conn *c, int status, const char *type, const char *body, size_t len)
{
	c->out.len = 0;
	if (!ingest_buf_append(&c->out, body, len))
		return -1;
	c->http_status = status;
	c->http_type = type;
	lws_callback_on_writable(c->wsi);
	return 0;
}

/* ---- chunked request bodies ---- */

enum
{
	CK_SIZE,					/* hex digits of a chunk size */
	CK_EXT,						/* ";ext" after the size, ignored */
	CK_SIZE_LF,
	CK_DATA,
	CK_DATA_CR,
	CK_DATA_LF,
	CK_TRAILER_START,			/* after the last chunk: a trailer or CRLF */
	CK_TRAILER_LINE,
	CK_FINAL_LF,
	CK_DONE
};

static int
hex_value(unsigned char ch)
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
 * Decode part of a "Transfer-Encoding: chunked" body (RFC 9112 7.1) into
 * c->rx.  lws 4.1 does not decode chunked requests: it hands the raw
 * stream to HTTP_BODY and waits for a body of 100 MB, so without this a
 * chunked POST would get no answer until lws's timeout.  Returns 0 while
 * more is expected, 1 once the last chunk and the trailers are in, or the
 * HTTP status to refuse the body with.
 */
static int
dechunk(Conn *c, const unsigned char *in, size_t len)
{
	for (size_t i = 0; i < len; i++)
	{
		unsigned char ch = in[i];
		int			h;

		switch (c->ck_state)
		{
			case CK_SIZE:
				if ((h = hex_value(ch)) >= 0)
				{
					c->ck_remain = c->ck_remain * 16 + h;
					c->ck_digits++;
					if (c->rx.len + c->ck_remain > (size_t) logagg_max_message_bytes)
						return HTTP_STATUS_REQ_ENTITY_TOO_LARGE;
				}
				else if (c->ck_digits > 0 && (ch == ';' || ch == ' ' || ch == '\t'))
					c->ck_state = CK_EXT;
				else if (c->ck_digits > 0 && ch == '\r')
					c->ck_state = CK_SIZE_LF;
				else
					return HTTP_STATUS_BAD_REQUEST;
				break;
			case CK_EXT:
				if (ch == '\r')
					c->ck_state = CK_SIZE_LF;
				break;
			case CK_SIZE_LF:
				if (ch != '\n')
					return HTTP_STATUS_BAD_REQUEST;
				c->ck_state = c->ck_remain == 0 ? CK_TRAILER_START : CK_DATA;
				break;
			case CK_DATA:
				{
					size_t		n = Min(len - i, (size_t) c->ck_remain);

					if (!ingest_buf_append(&c->rx, in + i, n))
						return HTTP_STATUS_INTERNAL_SERVER_ERROR;
					c->ck_remain -= n;
					i += n - 1;
					if (c->ck_remain == 0)
						c->ck_state = CK_DATA_CR;
				}
				break;
			case CK_DATA_CR:
				if (ch != '\r')
					return HTTP_STATUS_BAD_REQUEST;
				c->ck_state = CK_DATA_LF;
				break;
			case CK_DATA_LF:
				if (ch != '\n')
					return HTTP_STATUS_BAD_REQUEST;
				c->ck_state = CK_SIZE;
				c->ck_digits = 0;
				c->ck_remain = 0;
				break;
			case CK_TRAILER_START:
				c->ck_state = ch == '\r' ? CK_FINAL_LF : CK_TRAILER_LINE;
				break;
			case CK_TRAILER_LINE:
				if (ch == '\n')
					c->ck_state = CK_TRAILER_START;
				break;
			case CK_FINAL_LF:
				if (ch != '\n')
					return HTTP_STATUS_BAD_REQUEST;
				c->ck_state = CK_DONE;
				return 1;
			case CK_DONE:
				return 1;
		}
	}
	return 0;
}

/*
 * How the body of POST /ingest is framed.  Returns 0 when it can be read
 * (Content-Length, or chunked: then decoded here), else the HTTP status to
 * refuse it with at once.
 */
static int
body_framing(struct lws *wsi, Conn *c, const char **why)
{
	char		te[64];
	bool		has_length = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) > 0;
	char	   *v;
	int			n;

	if (lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_TRANSFER_ENCODING) <= 0)
	{
		if (has_length)
			return 0;
		*why = "a POST needs Content-Length or Transfer-Encoding: chunked";
		return HTTP_STATUS_LENGTH_REQUIRED;
	}
	if (has_length)
	{
		/* two lengths that may disagree: the way to smuggle requests */
		c->http_close = true;
		*why = "Content-Length and Transfer-Encoding must not both be set";
		return HTTP_STATUS_BAD_REQUEST;
	}
	n = lws_hdr_copy(wsi, te, sizeof(te), WSI_TOKEN_HTTP_TRANSFER_ENCODING);
	v = te;
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		v[--n] = '\0';
	while (*v == ' ' || *v == '\t')
		v++;
	if (n <= 0 || pg_strcasecmp(v, "chunked") != 0)
	{
		*why = "only Transfer-Encoding: chunked is supported";
		return HTTP_STATUS_NOT_IMPLEMENTED;
	}
	c->http_chunked = true;
	c->ck_state = CK_SIZE;
	c->ck_digits = 0;
	c->ck_remain = 0;
	return 0;
}

/* The whole body is in: queue it for the main loop, or refuse it. */
static int
http_body_complete(Conn *c)
{
	c->http_body_done = true;
	if (c->revoked)
	{
		c->rx.len = 0;
		if (c->loki_reply)
			return ingest_loki_unauthorized(c);
		return ingest_http_reply(c, HTTP_STATUS_UNAUTHORIZED, "application/json",
								 "{\"error\": \"token revoked\"}");
	}
	ingest_conn_queue_message(c, c->rx.data ? c->rx.data : "", c->rx.len);
	c->rx.len = 0;
	c->http_waiting = true;
	ingest_mark_pending(false);
	return 0;
}

static int refuse(Conn *c, int status, const char *why);

/* The whole body is larger than logagg.max_message_bytes: refuse it. */
static int
body_too_large(Conn *c)
{
	c->rx.len = 0;
	c->http_body_done = true;
	return refuse(c, HTTP_STATUS_REQ_ENTITY_TOO_LARGE, "body larger than logagg.max_message_bytes");
}

/* LWS_CALLBACK_HTTP_BODY: part of a POST body that is still awaited. */
int
ingest_http_body(Conn *c, const unsigned char *in, size_t len)
{
	if (c->http_chunked)
	{
		int			r = dechunk(c, in, len);

		if (r == 1)
			return http_body_complete(c);
		if (r == HTTP_STATUS_REQ_ENTITY_TOO_LARGE)
			return body_too_large(c);
		if (r != 0)
		{
			c->rx.len = 0;
			c->http_body_done = true;
			return ingest_http_reply(c, r, "application/json",
									 "{\"error\": \"malformed chunked body\"}");
		}
		return 0;
	}
	if (c->rx.len + len > (size_t) logagg_max_message_bytes)
		return body_too_large(c);
	if (!ingest_buf_append(&c->rx, in, len))
		return -1;
	return 0;
}

/* LWS_CALLBACK_HTTP_BODY_COMPLETION: lws's end of a body still awaited. */
int
ingest_http_body_completion(Conn *c)
{
	if (c->http_chunked)
	{
		/* lws's 100 MB end came before the last chunk */
		c->http_body_done = true;
		return ingest_http_reply(c, HTTP_STATUS_BAD_REQUEST, "application/json",
								 "{\"error\": \"chunked body without its last chunk\"}");
	}
	return http_body_complete(c);
}

/* A request refused before its body is read, in the door's format. */
static int
refuse(Conn *c, int status, const char *why)
{
	char		body[256];

	if (c->otlp)
		return ingest_otlp_refuse(c, status, why);
	if (c->loki_reply)
	{
		snprintf(body, sizeof(body), "%s\n", why);
		return ingest_loki_error(c, status, body);
	}
	snprintf(body, sizeof(body), "{\"error\": \"%s\"}", why);
	return ingest_http_reply(c, status, "application/json", body);
}

/*
 * The Content-Encoding of the body: none, gzip (x-gzip) or deflate, undone
 * in the main loop (input.c).  Returns false for another one.
 */
static bool
body_encoding(struct lws *wsi, Conn *c)
{
	char		ce[64];
	int			n = lws_hdr_copy(wsi, ce, sizeof(ce), WSI_TOKEN_HTTP_CONTENT_ENCODING);
	char	   *v = ce;

	c->body_encoding = BODY_IDENTITY;
	if (n <= 0)
		return n == 0 || lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_ENCODING) <= 0;
	while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t'))
		v[--n] = '\0';
	while (*v == ' ' || *v == '\t')
		v++;
	if (pg_strcasecmp(v, "gzip") == 0 || pg_strcasecmp(v, "x-gzip") == 0)
		c->body_encoding = BODY_GZIP;
	else if (pg_strcasecmp(v, "deflate") == 0)
		c->body_encoding = BODY_DEFLATE;
	else if (pg_strcasecmp(v, "identity") != 0 && *v != '\0')
		return false;
	return true;
}

/* An authenticated POST whose body is to be read (source from its token). */
static int
expect_body(struct lws *wsi, Conn *c, const char *source)
{
	const char *why;
	int			status;

	strlcpy(c->source, source, sizeof(c->source));
	c->revoked = false;
	if ((status = body_framing(wsi, c, &why)) != 0)
		return refuse(c, status, why);
	/*
	 * The Loki door reads a body of another encoding as it is: snappy is
	 * what its protobuf bodies are, and any other is refused by loki.c
	 * after the body is kept in logagg.rejected.
	 */
	if (!body_encoding(wsi, c) && !c->loki_reply)
	{
		c->http_close = true;	/* its body is not read */
		return refuse(c, HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE,
					  "unsupported Content-Encoding: use gzip, deflate or none");
	}
	c->http_waiting = false;
	c->http_status = 0;
	return 0;					/* the body follows */
}

#define NOT_ES	(-2)
#define NOT_LOKI	(-2)

/*
 * The Loki push endpoint (loki.c).  Returns NOT_LOKI for other paths,
 * else what the lws callback returns.  A body refused before it is read
 * closes the connection after the answer, as for _bulk.
 */
static int
loki_request(struct lws *wsi, Conn *c, const char *uri, bool is_post)
{
	char		source[sizeof(((Conn *) NULL)->source)];
	bool		push;
	int			r = ingest_loki_route(wsi, c, uri, is_post, &push);

	if (r == 1)
		return NOT_LOKI;
	if (r != 0 || c->http_status != 0)
	{
		c->http_close |= is_post;
		return r;				/* refused at once (method, content type, busy) */
	}
	if (ingest_authenticate(wsi, source, sizeof(source), &c->has_token, c->token_hash) != 0)
	{
		c->http_close |= is_post;
		return ingest_loki_unauthorized(c);
	}
	if (c->es)
		ingest_es_free(c);		/* a push after a _bulk request */
	if (c->otlp)
		ingest_otlp_free(c);	/* a push after an OTLP request */
	return expect_body(wsi, c, source);
}

#define NOT_OTLP (-2)

/*
 * POST /v1/logs (otlp.c).  Returns NOT_OTLP for other paths, else what
 * the lws callback returns.  Under backpressure (the queued input of all
 * connections is at TOTAL_QUEUE_PAUSE_BYTES, where every connection stops
 * being read) a request is answered 503 with Retry-After at once, as
 * OTLP/HTTP asks, instead of waiting unread.
 */
static int
otlp_request(struct lws *wsi, Conn *c, const char *uri, bool is_post)
{
	char		source[sizeof(((Conn *) NULL)->source)];
	int			r = ingest_otlp_route(wsi, c, uri, is_post);

	if (r == 1)
		return NOT_OTLP;
	if (r != 0 || c->http_status != 0)
	{
		c->http_close |= is_post;
		return r;				/* refused at once (method, content type) */
	}
	if (ingest_authenticate(wsi, source, sizeof(source), &c->has_token, c->token_hash) != 0)
	{
		c->http_close = true;
		return ingest_otlp_unauthorized(c);
	}
	if (ingest_total_queued >= TOTAL_QUEUE_PAUSE_BYTES)
	{
		c->http_close = true;
		c->http_retry_after = 1;
		return ingest_otlp_refuse(c, HTTP_STATUS_SERVICE_UNAVAILABLE,
								  "the server is busy storing what it received: retry after the delay in Retry-After");
	}
	if (c->es)
		ingest_es_free(c);		/* an OTLP request after a _bulk one */
	return expect_body(wsi, c, source);
}

/*
 * The Elasticsearch endpoints (es_bulk.c): GET /, POST /_bulk and
 * /{index}/_bulk.  Returns NOT_ES for other paths, else what the lws
 * callback returns.  A body refused before it is read is not read at
 * all: the connection closes after the answer, so that the body is not
 * taken for the next request.
 */
static int
es_request(struct lws *wsi, Conn *c, const char *uri, bool is_post)
{
	char		source[sizeof(((Conn *) NULL)->source)];
	bool		bulk;
	int			r = ingest_es_route(wsi, c, uri, is_post, &bulk);

	if (r == 1)
		return NOT_ES;
	if (r != 0 || c->http_status != 0)
	{
		c->http_close |= is_post;
		return r;				/* refused at once (method, content type) */
	}
	if (ingest_authenticate(wsi, source, sizeof(source), &c->has_token, c->token_hash) != 0)
	{
		c->http_close |= is_post;
		return ingest_es_unauthorized(c);
	}
	if (!bulk)
		return ingest_es_info(c);
	return expect_body(wsi, c, source);
}

/* LWS_CALLBACK_HTTP: a plain HTTP request (not an upgrade). */
int
ingest_http_request(struct lws *wsi, SessionData *pss, const char *uri)
{
	bool		is_post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
	Conn	   *c = pss->conn;
	char		source[sizeof(((Conn *) NULL)->source)];
	int			status = 0;

	if (c == NULL)
	{
		if (ingest_nconns >= logagg_max_connections)
		{
			lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
								   "too many connections (logagg.max_connections)");
			return -1;
		}
		c = pss->conn = ingest_conn_new(wsi, true, "");
		if (c == NULL)
			return -1;
	}
	c->http_accepted = c->http_rejected = 0;
	c->rx.len = 0;
	c->has_token = false;		/* until this request authenticates */
	c->http_chunked = false;
	c->http_body_done = false;

	/*
	 * lws 4.1 takes a POST without Content-Length to have a body of up to
	 * 100 MB, and would read what follows ours as part of it: whatever the
	 * answer, such a connection closes after it.
	 */
	c->http_close = is_post && lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_CONTENT_LENGTH) <= 0;

	if (strcmp(uri, "/healthz") == 0 && !is_post)
		return ingest_http_reply(c, HTTP_STATUS_OK, "text/plain", "ok\n");
	if (strcmp(uri, "/metrics") == 0 && !is_post)
	{
		if (!ingest_metrics_authorized(wsi))
			return ingest_http_reply(c, HTTP_STATUS_UNAUTHORIZED, "text/plain",
									 "/metrics needs \"Authorization: Bearer\" with logagg.metrics_token\n");
		/* shared-memory counters only: no transaction per scrape */
		c->out.len = 0;
		ingest_append_metrics(&c->out, logagg_alert_queue_depth());
		c->http_status = HTTP_STATUS_OK;
		c->http_type = "text/plain; version=0.0.4";
		lws_callback_on_writable(c->wsi);
		return 0;
	}
	c->es_reply = false;
	c->loki_reply = false;
	c->http_fail_status = 0;
	c->http_fail_reason = NULL;
	c->body_encoding = BODY_IDENTITY;
	c->http_retry_after = 0;
	if ((status = loki_request(wsi, c, uri, is_post)) != NOT_LOKI)
		return status;
	if (c->loki)
		ingest_loki_free(c);	/* another request after a push */
	if ((status = otlp_request(wsi, c, uri, is_post)) != NOT_OTLP)
		return status;
	if (c->otlp)
		ingest_otlp_free(c);	/* another request after an OTLP one */
	if ((status = es_request(wsi, c, uri, is_post)) != NOT_ES)
		return status;
	if (c->es)
		ingest_es_free(c);		/* a native request after a _bulk one */
	if (strcmp(uri, "/ingest") != 0)
		return ingest_http_reply(c, HTTP_STATUS_NOT_FOUND, "application/json",
								 "{\"error\": \"not found: use POST /ingest, GET /healthz or GET /metrics\"}");
	if (!is_post)
		return ingest_http_reply(c, HTTP_STATUS_METHOD_NOT_ALLOWED, "application/json",
								 "{\"error\": \"use POST /ingest, or a WebSocket upgrade\"}");
	if ((status = ingest_authenticate(wsi, source, sizeof(source), &c->has_token, c->token_hash)) != 0)
	{
		c->http_close = true;	/* its body is not read: close after the answer */
		return ingest_http_reply(c, status, "application/json",
								 "{\"error\": \"missing, unknown or revoked token\"}");
	}
	return expect_body(wsi, c, source);
}

int
ingest_http_writeable(struct lws *wsi, Conn *c)
{
	unsigned char hdr[LWS_PRE + 512];
	unsigned char *start = hdr + LWS_PRE;
	unsigned char *p = start;
	unsigned char *end = hdr + sizeof(hdr) - 1;
	Buf			body = {0};
	bool		basic = c->es_reply || c->loki_reply;

	if (c->http_status == 0)
		return 0;
	/* a 204 has neither a body nor a Content-Length (RFC 9110 8.6) */
	if (c->http_status == HTTP_STATUS_NO_CONTENT ?
		lws_add_http_header_status(wsi, c->http_status, &p, end) :
		lws_add_http_common_headers(wsi, c->http_status, c->http_type,
									c->out.len, &p, end))
		return -1;
	if (c->http_status == HTTP_STATUS_UNAUTHORIZED &&
		lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_WWW_AUTHENTICATE,
									 (const unsigned char *) (basic ? "Basic realm=\"logagg\"" : "Bearer realm=\"logagg\""),
									 basic ? 20 : 21, &p, end))
		return -1;
	/* the official Elasticsearch clients refuse a server without it */
	if (c->es_reply &&
		lws_add_http_header_by_name(wsi, (const unsigned char *) "X-Elastic-Product:",
									(const unsigned char *) "Elasticsearch", 13, &p, end))
		return -1;
	if (c->http_retry_after > 0)
	{
		char		secs[16];
		int			n = snprintf(secs, sizeof(secs), "%d", c->http_retry_after);

		if (lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_RETRY_AFTER,
										 (const unsigned char *) secs, n, &p, end))
			return -1;
		c->http_retry_after = 0;
	}
	if (c->http_close &&
		lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
									 (const unsigned char *) "close", 5, &p, end))
		return -1;
	if (lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	/* lws_write needs LWS_PRE bytes of headroom before the body */
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
	c->http_status = 0;
	/* lws would take whatever follows for the rest of the body: close */
	if (c->http_close)
		return -1;
	if (lws_http_transaction_completed(wsi))
		return -1;
	return 0;
}
