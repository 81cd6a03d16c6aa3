/*-------------------------------------------------------------------------
 *
 * ws.c
 *		The libwebsockets callback of the ingest server: the WebSocket
 *		handshake (/ingest, token, ?stream=ID and stream ownership), message
 *		reassembly, and writing the answers composed by conn.c.  Plain HTTP
 *		requests arriving on the same callback are handed to http.c.
 *
 * A stream (?stream=ID) is owned by one connection at a time; a new
 * connection takes it over and the old one is closed.  A new connection
 * reads nothing until its resume point is known (see commit.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "mb/pg_wchar.h"

#include "ingest/server_int.h"

/* Receive chunk size given to lws. */
#define RX_BUFFER_SIZE			65536

/*
 * The value of URL argument NAME (e.g. "stream=") into buf: its length,
 * -1 when absent, -2 when longer than size - 1.  (lws_get_urlarg_by_name
 * can't tell "absent" from "too long", and stops at the first argument
 * longer than its buffer.)  lws has URL-decoded the arguments; a decoded
 * NUL makes the value look longer than its strlen().
 */
int
ingest_url_arg(struct lws *wsi, const char *name, char *buf, int size)
{
	int			total = lws_hdr_total_length(wsi, WSI_TOKEN_HTTP_URI_ARGS);
	size_t		nlen = strlen(name);
	char	   *frag;
	int			result = -1;

	if (total <= 0 || (frag = malloc(total + 1)) == NULL)
		return -1;
	for (int i = 0;; i++)
	{
		int			n = lws_hdr_copy_fragment(wsi, frag, total + 1, WSI_TOKEN_HTTP_URI_ARGS, i);

		if (n < 0)
			break;
		if ((size_t) n >= nlen && strncmp(frag, name, nlen) == 0)
		{
			n -= nlen;
			if (n >= size)
				result = -2;
			else
			{
				memcpy(buf, frag + nlen, n);
				buf[n] = '\0';
				result = n;
			}
			break;
		}
	}
	free(frag);
	return result;
}

/*
 * ?stream=ID: *stream is set to it (NULL when absent).  Returns NULL, or
 * why the id is refused: the id goes into text columns, so it must be 1
 * to INGEST_MAX_STREAM_LEN bytes of valid UTF-8 without control
 * characters (ASCII in a database that is not UTF-8).
 */
static const char *
stream_arg(struct lws *wsi, char *buf, int size, const char **stream)
{
	int			n = ingest_url_arg(wsi, "stream=", buf, size);

	*stream = NULL;
	if (n == -1)
		return NULL;
	if (n == -2 || n == 0)
		return "stream id must be 1 to 128 bytes";
	for (int i = 0; i < n; i++)
	{
		unsigned char ch = (unsigned char) buf[i];

		if (ch < 0x20 || ch == 0x7f)
			return "stream id must not contain control characters";
		if (ch >= 0x80 && GetDatabaseEncoding() != PG_UTF8)
			return "stream id must be ASCII (the database is not UTF-8)";
	}
	if (!pg_verify_mbstr(PG_UTF8, buf, n, true))
		return "stream id must be valid UTF-8";
	*stream = buf;
	return NULL;
}

/* Validate ?stream=ID and attach the connection to the stream. */
static int
ws_filter(struct lws *wsi, SessionData *pss)
{
	char		uri[256];
	char		source[sizeof(((Conn *) NULL)->source)];
	char		sbuf[INGEST_MAX_STREAM_LEN + 1];
	const char *stream = NULL;
	const char *bad_stream;
	StreamState *s = NULL;
	int			status;
	bool		has_token;
	uint8		hash[LOGAGG_TOKEN_HASH_LEN];
	Conn	   *c;

	if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 ||
		strcmp(uri, "/ingest") != 0)
	{
		lws_return_http_status(wsi, HTTP_STATUS_NOT_FOUND, "WebSocket endpoint is /ingest");
		return -1;
	}
	if ((status = ingest_authenticate(wsi, source, sizeof(source), &has_token, hash)) != 0)
	{
		lws_return_http_status(wsi, status, "missing, unknown or revoked token");
		return -1;
	}
	if (ingest_nconns >= logagg_max_connections)
	{
		lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
							   "too many connections (logagg.max_connections)");
		return -1;
	}
	if ((bad_stream = stream_arg(wsi, sbuf, sizeof(sbuf), &stream)) != NULL)
	{
		lws_return_http_status(wsi, HTTP_STATUS_BAD_REQUEST, bad_stream);
		return -1;
	}
	if (stream && (s = ingest_stream_find(stream)) != NULL &&
		s->source[0] && strcmp(s->source, source) != 0)
	{
		/* one source's token must not read or advance another's stream */
		lws_return_http_status(wsi, HTTP_STATUS_FORBIDDEN, "stream belongs to another source");
		return -1;
	}
	if (stream && s == NULL)
	{
		if ((s = calloc(1, sizeof(StreamState))) == NULL)
			return -1;
		strlcpy(s->id, stream, sizeof(s->id));
		strlcpy(s->source, source, sizeof(s->source));
		s->next = ingest_streams;
		ingest_streams = s;
	}
	if ((c = ingest_conn_new(wsi, false, source)) == NULL)
		return -1;
	c->has_token = has_token;
	memcpy(c->token_hash, hash, sizeof(c->token_hash));
	pss->conn = c;
	if (s)
	{
		if (s->owner)
		{
			/* a reconnecting client must not wait for the old socket's timeout */
			ingest_conn_kill(s->owner, LWS_CLOSE_STATUS_GOINGAWAY, "stream taken over by a new connection");
			s->owner->stream = NULL;
		}
		s->owner = c;
		c->stream = s;
		c->need_resume = true;
	}
	return 0;
}

/* LWS_CALLBACK_ESTABLISHED: a WebSocket connection is open. */
static int
ws_established(struct lws *wsi, Conn *c)
{
	/*
	 * Answers are small; a fixed send buffer also bounds what the kernel
	 * holds for a client that does not read them (autotuning would let it
	 * grow to megabytes).
	 */
	int			sndbuf = SOCKET_SNDBUF_BYTES;

	(void) setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET, SO_SNDBUF,
					  &sndbuf, sizeof(sndbuf));
	if (c->need_resume)
	{
		/* read nothing until the resume point is sent */
		ingest_conn_flow(c);
		ingest_mark_pending(true);
	}
	return 0;
}

/* LWS_CALLBACK_RECEIVE: part of a message; queue it once it is whole. */
static int
ws_receive(struct lws *wsi, Conn *c, const void *in, size_t len)
{
	if (c->killed)
		return 0;				/* closing: the client resends elsewhere */
	if (lws_is_first_fragment(wsi))
		c->rx.len = 0;
	if (c->rx.len + len > (size_t) logagg_max_message_bytes)
	{
		static const char why[] = "message larger than logagg.max_message_bytes";

		lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
						 (unsigned char *) why, sizeof(why) - 1);
		return -1;
	}
	if (!ingest_buf_append(&c->rx, in, len))
		return -1;
	if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0)
	{
		ingest_conn_queue_message(c, c->rx.data, c->rx.len);
		c->rx.len = 0;
	}
	return 0;
}

/*
 * LWS_CALLBACK_SERVER_WRITEABLE: write the answers composed so far as one
 * frame, or close a killed connection.
 */
static int
ws_writeable(struct lws *wsi, Conn *c)
{
	if (c->killed)
	{
		lws_close_reason(wsi, c->close_code, (unsigned char *) c->close_reason,
						 strlen(c->close_reason));
		return -1;
	}
	ingest_conn_compose(c);
	if (c->out.len > LWS_PRE)
	{
		size_t		n = c->out.len - LWS_PRE;

		/* what the socket does not take, lws keeps (one frame) */
		if (lws_write(wsi, (unsigned char *) c->out.data + LWS_PRE, n,
					  LWS_WRITE_TEXT) < (int) n)
			return -1;
		c->out.len = 0;
	}
	if (c->out_full)
	{
		/*
		 * Read again once lws has got everything out; until then (it keeps
		 * what the socket did not take) ask again.
		 */
		if (lws_send_pipe_choked(wsi))
			lws_callback_on_writable(wsi);
		else
		{
			c->out_full = false;
			ingest_conn_flow(c);
		}
	}
	return 0;
}

/* The connection is gone: forget it once nothing of it is left. */
static void
ws_closed(SessionData *pss, Conn *c)
{
	pss->conn = NULL;
	c->wsi = NULL;
	ingest_nconns--;
	logagg_count(LC_CONNECTIONS, (uint64) -1);
	ingest_conn_release_if_done(c);
}

/*
 * The one lws callback of the "logagg" protocol, for WebSocket and plain
 * HTTP alike.  lws calls it from inside uv_run(), so it only copies bytes
 * and sets flags (see conn.c).
 */
static int
ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
			void *user, void *in, size_t len)
{
	SessionData *pss = (SessionData *) user;
	Conn	   *c = pss ? pss->conn : NULL;

	switch (reason)
	{
		case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
			return pss ? ws_filter(wsi, pss) : -1;

		case LWS_CALLBACK_ESTABLISHED:
			return c ? ws_established(wsi, c) : -1;

		case LWS_CALLBACK_RECEIVE:
			return c ? ws_receive(wsi, c, in, len) : -1;

		case LWS_CALLBACK_SERVER_WRITEABLE:
			return c ? ws_writeable(wsi, c) : -1;

		case LWS_CALLBACK_HTTP:
			return pss ? ingest_http_request(wsi, pss, (const char *) in) : -1;

		case LWS_CALLBACK_HTTP_BODY:
			if (c == NULL || c->http_status != 0 || c->http_body_done)
				break;			/* already answered (e.g. 401): ignore the body */
			return ingest_http_body(c, in, len);

		case LWS_CALLBACK_HTTP_BODY_COMPLETION:
			if (c == NULL || c->http_status != 0 || c->http_body_done)
				break;
			return ingest_http_body_completion(c);

		case LWS_CALLBACK_HTTP_WRITEABLE:
			return c ? ingest_http_writeable(wsi, c) : -1;

		case LWS_CALLBACK_CLOSED:
		case LWS_CALLBACK_CLOSED_HTTP:
		case LWS_CALLBACK_HTTP_DROP_PROTOCOL:	/* end of an HTTP transaction */
		case LWS_CALLBACK_WSI_DESTROY:
			/* whichever comes first with our session data; then never again */
			if (c)
				ws_closed(pss, c);
			break;

		default:
			break;
	}
	return 0;
}

const struct lws_protocols ingest_protocols[] = {
	{"logagg", ws_callback, sizeof(SessionData), RX_BUFFER_SIZE, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};
