/*-------------------------------------------------------------------------
 *
 * conn.c
 *		The ingest server's connections: their malloc'd buffers, the queue of
 *		complete messages waiting to be parsed, flow control (stop reading,
 *		never drop) and the bounded answers composed for the next frame.
 *
 * Everything here may run inside lws callbacks: malloc only, no palloc,
 * no ereport.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "ingest/server_int.h"

Conn	   *ingest_conns = NULL;
int			ingest_nconns = 0;
int			ingest_closed_since_trim = 0;
size_t		ingest_total_queued = 0;
StreamState *ingest_streams = NULL;
TimestampTz ingest_pending_since = 0;
bool		ingest_flush_now = false;
TimestampTz ingest_latest_received = 0;

bool
ingest_buf_append(Buf *b, const void *data, size_t len)
{
	if (b->len + len > b->cap)
	{
		size_t		newcap = Max(b->cap * 2, b->len + len + 256);
		char	   *p = realloc(b->data, newcap);

		if (p == NULL)
			return false;
		b->data = p;
		b->cap = newcap;
	}
	memcpy(b->data + b->len, data, len);
	b->len += len;
	return true;
}

void
ingest_buf_free(Buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

void
ingest_mark_pending(bool urgent)
{
	if (ingest_pending_since == 0)
		ingest_pending_since = GetCurrentTimestamp();
	if (urgent)
		ingest_flush_now = true;
}

/*
 * Read from the connection or not: not while its stream's resume point is
 * unknown, while its answers wait unread (out_full), after a revoke, or
 * while too much of its (or everyone's) input waits to be parsed -- with
 * hysteresis, so that reading resumes only once that is half drained.
 * Backpressure is flow control: stop reading, never drop.
 */
void
ingest_conn_flow(Conn *c)
{
	bool		pause;

	if (c->wsi == NULL)
		return;
	if (c->need_resume || c->out_full || c->revoked)
		pause = true;
	else if (c->rx_paused)
		pause = c->inq_bytes >= CONN_QUEUE_PAUSE_BYTES / 2 ||
			ingest_total_queued >= TOTAL_QUEUE_PAUSE_BYTES / 2;
	else
		pause = c->inq_bytes >= CONN_QUEUE_PAUSE_BYTES ||
			ingest_total_queued >= TOTAL_QUEUE_PAUSE_BYTES;
	if (pause != c->rx_paused)
	{
		lws_rx_flow_control(c->wsi, pause ? 0 : 1);
		c->rx_paused = pause;
	}
}

/* Append one line of text to a frame being composed. */
static void
frame_line(Buf *frame, const char *text, size_t len)
{
	if (frame->len > LWS_PRE)
		ingest_buf_append(frame, "\n", 1);
	ingest_buf_append(frame, text, len);
}

/*
 * Compose the answers waiting for a WebSocket client into c->out (LWS_PRE
 * headroom, then one frame of lines): the resume point first, then error
 * lines, then the latest ack and the ack_count delta.
 */
void
ingest_conn_compose(Conn *c)
{
	char		line[256];
	int			n;

	c->out.len = 0;
	{
		char		pre[LWS_PRE];

		memset(pre, 0, sizeof(pre));
		ingest_buf_append(&c->out, pre, LWS_PRE);
	}
	if (c->out_resume_due)
	{
		n = snprintf(line, sizeof(line), "{\"resume\": " INT64_FORMAT "}", c->out_resume);
		frame_line(&c->out, line, n);
		c->out_resume_due = false;
	}
	if (c->out_errors.len > 0)
	{
		frame_line(&c->out, c->out_errors.data, c->out_errors.len);
		c->out_errors.len = 0;
	}
	if (c->out_errors_dropped > 0)
	{
		n = snprintf(line, sizeof(line),
					 "{\"error\": \"" INT64_FORMAT " more records were rejected; their error lines were dropped because the client was not reading its answers\", \"count\": " INT64_FORMAT "}",
					 c->out_errors_dropped, c->out_errors_dropped);
		frame_line(&c->out, line, n);
		c->out_errors_dropped = 0;
	}
	if (c->out_ack_due)
	{
		n = snprintf(line, sizeof(line), "{\"ack\": " INT64_FORMAT "}", c->out_ack);
		frame_line(&c->out, line, n);
		c->out_ack_due = false;
	}
	if (c->out_ack_count > 0)
	{
		n = snprintf(line, sizeof(line), "{\"ack_count\": " INT64_FORMAT "}", c->out_ack_count);
		frame_line(&c->out, line, n);
		c->out_ack_count = 0;
	}
}

/* Something is ready for the client: have lws call us when it can take it. */
void
ingest_conn_output_ready(Conn *c)
{
	if (c->wsi == NULL || c->is_http)
		return;
	lws_callback_on_writable(c->wsi);
	if (c->out_errors.len >= OUT_PAUSE_BYTES || c->out_errors_dropped > 0)
	{
		/* the client is not keeping up with its answers: stop reading */
		c->out_full = true;
		ingest_conn_flow(c);
	}
}

StreamState *
ingest_stream_find(const char *id)
{
	for (StreamState *s = ingest_streams; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

/* Forget input that was received but not parsed yet. */
void
ingest_conn_drop_input(Conn *c)
{
	Msg		   *m = c->inq_head;

	while (m)
	{
		Msg		   *next = m->next;

		ingest_total_queued -= m->len;
		free(m);
		m = next;
	}
	c->inq_head = c->inq_tail = NULL;
	c->inq_bytes = 0;
}

static void
conn_free(Conn *c)
{
	ingest_conn_drop_input(c);
	if (c->stream && c->stream->owner == c)
		c->stream->owner = NULL;
	ingest_buf_free(&c->rx);
	ingest_buf_free(&c->errors);
	ingest_buf_free(&c->out_errors);
	ingest_buf_free(&c->out);
	ingest_es_free(c);
	ingest_loki_free(c);
	ingest_otlp_free(c);
	ingest_closed_since_trim++;
	if (c->prev)
		c->prev->next = c->next;
	else
		ingest_conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

/* Free a gone connection once nothing of it is left to store or report. */
void
ingest_conn_release_if_done(Conn *c)
{
	if (c->wsi == NULL && c->inq_head == NULL && !c->ack_due && !c->http_waiting)
		conn_free(c);
}

/*
 * Close a connection from its next WRITEABLE callback.  (lws 4.1.6 does not
 * get the close frame out from there -- the socket closes on lws's
 * close-send timeout, seen as 1006 -- but the connection does close.)
 */
void
ingest_conn_kill(Conn *c, int code, const char *reason)
{
	c->killed = true;
	c->close_code = code;
	c->close_reason = reason;
	if (c->wsi)
		lws_callback_on_writable(c->wsi);
}

Conn *
ingest_conn_new(struct lws *wsi, bool is_http, const char *source)
{
	Conn	   *c = calloc(1, sizeof(Conn));

	if (c == NULL)
		return NULL;
	c->wsi = wsi;
	c->is_http = is_http;
	strlcpy(c->source, source, sizeof(c->source));
	if (lws_get_peer_simple(wsi, c->peer, sizeof(c->peer)) == NULL)
		strlcpy(c->peer, "unknown", sizeof(c->peer));
	c->next = ingest_conns;
	if (ingest_conns)
		ingest_conns->prev = c;
	ingest_conns = c;
	ingest_nconns++;
	logagg_count(LC_CONNECTIONS, 1);
	logagg_count(LC_CONNECTIONS_TOTAL, 1);
	return c;
}

/* A complete message: queue it for the main loop, pause reading if needed. */
void
ingest_conn_queue_message(Conn *c, const char *data, size_t len)
{
	Msg		   *m = malloc(offsetof(Msg, data) + len + 1);

	if (m == NULL)
		return;
	m->next = NULL;
	m->received_at = GetCurrentTimestamp();
	m->len = (int) len;
	memset(&m->pos, 0, sizeof(m->pos));
	m->encoding = c->is_http ? c->body_encoding : BODY_IDENTITY;
	memcpy(m->data, data, len);
	m->data[len] = '\0';
	if (c->inq_tail)
		c->inq_tail->next = m;
	else
		c->inq_head = m;
	c->inq_tail = m;
	c->inq_bytes += len;
	ingest_total_queued += len;
	if (m->received_at > ingest_latest_received)
		ingest_latest_received = m->received_at;
	ingest_conn_flow(c);
}
