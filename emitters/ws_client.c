/*-------------------------------------------------------------------------
 *
 * ws_client.c
 *	  libwebsockets client side of wire protocol v1.
 *
 * One connection at a time.  Sending follows the pattern that proved
 * reliable with lws 4.1.6: the window is the write queue, each
 * CLIENT_WRITEABLE does exactly one lws_write of one frame (up to --batch
 * records), and re-arms lws_callback_on_writable while more is unsent.
 * lws_write never blocks: what the socket doesn't take, lws keeps and
 * flushes before the next WRITEABLE.
 *
 * After a reconnect everything unsettled is sent again.  With --stream the
 * server first tells us its committed seq ("resume"), everything up to it
 * counts as acked and only the rest is resent, so storage is exactly-once;
 * without --stream delivery is at-least-once.
 *
 *-------------------------------------------------------------------------
 */
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "emit.h"
#include "jsonutil.h"
#include "producer.h"
#include "reconnect.h"
#include "window.h"
#include "ws_client.h"

#define MAX_ERRORS_SHOWN	5

typedef enum ConnState
{
	CONN_IDLE,					/* no connection, maybe a retry scheduled */
	CONN_CONNECTING,
	CONN_OPEN
} ConnState;

static struct lws *wsi;
static ConnState conn_state = CONN_IDLE;
static bool ready;				/* open, and (--stream) resume received */
static bool auth_failed;
static Backoff backoff;
static int64_t unconnected_since_us;	/* start of the current outage */
static lws_sorted_usec_list_t reconnect_sul;

static char *url_copy;			/* lws_parse_uri cuts this up */
static const char *url_address;
static int	url_port;
static bool url_tls;
static StrBuf url_path;
static StrBuf host_header;
static StrBuf auth_header;

static StrBuf rx;				/* reassembled server message */
static StrBuf tx;				/* LWS_PRE headroom + one frame */
static int64_t errors_shown;

static const lws_retry_bo_t keepalive = {
	.secs_since_valid_ping = 20,
	.secs_since_valid_hangup = 45,
};

static int	ws_callback(struct lws *w, enum lws_callback_reasons reason,
						void *user, void *in, size_t len);

static const struct lws_protocols protocols[] = {
	{"logagg-emit", ws_callback, 0, 65536, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

bool
ws_client_init(void)
{
	struct lws_context_creation_info info;
	const char *prot;
	const char *path;
	char		portbuf[16];

	url_copy = strdup(opts.url);
	if (url_copy == NULL ||
		lws_parse_uri(url_copy, &prot, &url_address, &url_port, &path) != 0)
	{
		fprintf(stderr, "logagg-emit: cannot parse --url \"%s\"\n", opts.url);
		return false;
	}
	if (strcmp(prot, "wss") == 0 || strcmp(prot, "https") == 0)
		url_tls = true;
	else if (strcmp(prot, "ws") != 0 && strcmp(prot, "http") != 0)
	{
		fprintf(stderr, "logagg-emit: --url must start with ws:// or wss://\n");
		return false;
	}

	/* lws_parse_uri drops the leading '/' */
	strbuf_append(&url_path, "/", 1);
	strbuf_append(&url_path, path, strlen(path));
	if (opts.stream)
	{
		strbuf_append(&url_path, strchr(path, '?') ? "&stream=" : "?stream=", 8);
		strbuf_append_urlencoded(&url_path, opts.stream);
	}
	strbuf_append(&host_header, url_address, strlen(url_address));
	snprintf(portbuf, sizeof(portbuf), ":%d", url_port);
	strbuf_append(&host_header, portbuf, strlen(portbuf));
	if (opts.token)
	{
		strbuf_append(&auth_header, "Bearer ", 7);
		strbuf_append(&auth_header, opts.token, strlen(opts.token));
	}

	memset(&info, 0, sizeof(info));
	info.port = CONTEXT_PORT_NO_LISTEN;
	info.protocols = protocols;
	info.gid = -1;
	info.uid = -1;
	info.fd_limit_per_thread = 16;	/* one connection; keeps lws' tables small */
	if (url_tls)
	{
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.client_ssl_ca_filepath = opts.cafile;
	}
	emit.ctx = lws_create_context(&info);
	if (emit.ctx == NULL)
	{
		fprintf(stderr, "logagg-emit: lws_create_context failed\n");
		return false;
	}
	backoff_init(&backoff, now_us());
	unconnected_since_us = now_us();
	return true;
}

/*
 * Destroys the lws context too: its callbacks may still run for the open
 * connection, so the buffers are freed only afterwards.
 */
void
ws_client_cleanup(void)
{
	lws_sul_cancel(&reconnect_sul);
	if (emit.ctx)
		lws_context_destroy(emit.ctx);
	emit.ctx = NULL;
	free(url_copy);
	strbuf_free(&url_path);
	strbuf_free(&host_header);
	strbuf_free(&auth_header);
	strbuf_free(&rx);
	strbuf_free(&tx);
}

static void
connect_now(lws_sorted_usec_list_t *sul)
{
	struct lws_client_connect_info ci;

	(void) sul;
	if (emit.done || conn_state != CONN_IDLE)
		return;

	reconnect_connect_info(&ci, emit.ctx, url_address, url_port, url_path.data, host_header.data,
						   protocols[0].name, &keepalive, &wsi, url_tls, opts.insecure);
	emit_debug("connecting to %s:%d%s", url_address, url_port, url_path.data);
	conn_state = CONN_CONNECTING;
	if (lws_client_connect_via_info(&ci) == NULL && conn_state == CONN_CONNECTING)
	{
		/* failed synchronously without a CONNECTION_ERROR callback */
		conn_state = CONN_IDLE;
		wsi = NULL;
		lws_sul_schedule(emit.ctx, 0, &reconnect_sul, connect_now,
						 BACKOFF_MIN_MS * LWS_US_PER_MS);
	}
}

void
ws_client_start(void)
{
	lws_sul_schedule(emit.ctx, 0, &reconnect_sul, connect_now, 1);
}

/* The next attempt after a pause (reconnect.h: exponential, with jitter). */
static void
schedule_reconnect(void)
{
	int64_t		ms = backoff_next_ms(&backoff);

	emit_debug("reconnecting in %lld ms", (long long) ms);
	lws_sul_schedule(emit.ctx, 0, &reconnect_sul, connect_now, ms * LWS_US_PER_MS);
}

static void
connection_lost(const char *why)
{
	bool		was_open = (conn_state == CONN_OPEN);

	if (conn_state == CONN_IDLE)
		return;
	conn_state = CONN_IDLE;
	wsi = NULL;
	ready = false;
	window_rewind();
	if (was_open)
	{
		unconnected_since_us = now_us();
		if (!emit.done)
			emit_log("connection closed (%s), %lld records unacked",
					 why, (long long) (win.next_id - win.head_id));
	}
	else
		emit_debug("connect failed: %s", why);

	if (emit.done)
		return;
	if (auth_failed)
	{
		emit_finish(EMIT_EXIT_AUTH);
		return;
	}
	if (producer_finished() && window_empty())
	{
		emit_check_done();
		return;
	}
	schedule_reconnect();
}

void
ws_client_kick_write(void)
{
	if (ready && wsi && window_has_unsent())
		lws_callback_on_writable(wsi);
}

/*
 * Called periodically from the main housekeeping timer.
 */
void
ws_client_housekeeping(void)
{
	if (conn_state != CONN_OPEN && opts.give_up_after > 0 &&
		now_us() - unconnected_since_us > (int64_t) (opts.give_up_after * 1e6))
	{
		emit_log("giving up: no connection to %s for %g s",
				 opts.url, opts.give_up_after);
		emit_finish(EMIT_EXIT_INCOMPLETE);
	}
}

/* ---- frames out ---- */

static int
write_frame(struct lws *w)
{
	int			n = 0;
	size_t		payload;
	int			m;

	if (!ready)
		return 0;

	tx.len = 0;
	strbuf_reserve(&tx, LWS_PRE);
	tx.len = LWS_PRE;
	if (opts.batch > 1)
		strbuf_append(&tx, "[", 1);

	while (n < opts.batch && win.send_id < win.next_id)
	{
		EmitRecord *r = window_slot(win.send_id);

		if (r->rejected)
		{
			/* settled by an error frame: never resent */
			win.send_id++;
			continue;
		}
		if (n > 0 && tx.len - LWS_PRE + r->len + 2 > opts.max_frame_bytes)
			break;
		if (n > 0)
			strbuf_append(&tx, ",", 1);
		strbuf_append(&tx, r->text, r->len);
		if (!r->sent)
		{
			r->sent = true;
			win.nsent++;
		}
		win.send_id++;
		n++;
	}
	if (n == 0)
		return 0;
	if (opts.batch > 1)
		strbuf_append(&tx, "]", 1);

	payload = tx.len - LWS_PRE;
	m = lws_write(w, (unsigned char *) tx.data + LWS_PRE, payload, LWS_WRITE_TEXT);
	if (m < (int) payload)
	{
		emit_debug("lws_write failed (%d)", m);
		return -1;
	}
	if (window_has_unsent())
		lws_callback_on_writable(w);
	return 0;
}

/* ---- messages in ---- */

typedef struct ServerMsg
{
	bool		has_resume,
				has_ack,
				has_ack_count,
				has_error,
				has_seq,
				has_count;
	int64_t		resume,
				ack,
				ack_count,
				seq,
				count;
	const char *error;
	size_t		errorlen;
} ServerMsg;

static void
msg_member(void *arg, const char *key, size_t keylen, size_t member_start,
		   const char *value, size_t value_len)
{
	ServerMsg  *m = arg;

	(void) member_start;
#define KEY_IS(k) (keylen == sizeof(k) - 1 && memcmp(key, k, keylen) == 0)
	if (KEY_IS("resume"))
		m->has_resume = json_value_int64(value, value_len, &m->resume);
	else if (KEY_IS("ack"))
		m->has_ack = json_value_int64(value, value_len, &m->ack);
	else if (KEY_IS("ack_count"))
		m->has_ack_count = json_value_int64(value, value_len, &m->ack_count);
	else if (KEY_IS("seq"))
		m->has_seq = json_value_int64(value, value_len, &m->seq);
	else if (KEY_IS("count"))
		m->has_count = json_value_int64(value, value_len, &m->count);
	else if (KEY_IS("error"))
	{
		m->has_error = true;
		m->error = value;
		m->errorlen = value_len;
	}
#undef KEY_IS
}

static void
apply_message(const ServerMsg *m)
{
	int64_t		before = win.nacked + win.nrejected;

	if (m->has_resume)
	{
		if (!opts.stream)
			emit_debug("ignoring resume without --stream");
		else if (!emit.have_base)
		{
			/* first contact: continue numbering after the committed seq */
			window_set_base(m->resume + 1);
			emit.have_base = true;
			emit_debug("stream %s resumes after seq %lld", opts.stream,
					   (long long) m->resume);
			producer_kick();
		}
		else
		{
			if (m->resume < win.head_id - 1)
				emit_log("warning: server resumes stream at %lld, below acked seq %lld",
						 (long long) m->resume, (long long) (win.head_id - 1));
			window_settle_upto(m->resume);
		}
		ready = true;
		backoff.retries = 0;
		/* resending starts now, whether or not the resume settled anything */
		ws_client_kick_write();
	}
	if (m->has_ack)
	{
		if (opts.stream)
			window_settle_upto(m->ack);
		else
			emit_debug("ignoring seq ack without --stream");
		backoff.retries = 0;
	}

	/*
	 * ack_count N means: N more records (sent without seq) were stored since
	 * the previous ack_count on this connection.  They are settled oldest
	 * first.  Rejected records are not part of it: each error frame settles
	 * one.  Counts beyond what is outstanding are ignored, so a server that
	 * sends running totals instead can make us stop early but never report
	 * more acks than records sent.
	 */
	if (m->has_ack_count && m->ack_count > 0)
	{
		if (!opts.stream)
			window_settle_count(m->ack_count, false);
		else
			emit_debug("ignoring ack_count on a --stream connection");
		backoff.retries = 0;
	}
	if (m->has_error)
	{
		if (errors_shown++ < MAX_ERRORS_SHOWN || opts.verbose)
		{
			char		seqbuf[32] = "";

			if (m->has_seq)
				snprintf(seqbuf, sizeof(seqbuf), " (seq %lld)", (long long) m->seq);
			emit_log("server rejected a record%s: %.*s", seqbuf,
					 (int) m->errorlen, m->error);
		}
		/* "count": N rejected records whose own error lines were dropped */
		int64_t		n = m->has_count && m->count > 0 ? m->count : 1;

		if (opts.stream)
		{
			if (m->has_seq)
				window_reject_seq(m->seq);
			else if (!m->has_count)
				emit_log("warning: error frame without seq on a --stream connection");
		}
		else
			window_settle_count(n, true);
	}

	if (win.nacked + win.nrejected != before)
	{
		emit.last_progress_us = now_us();
		producer_kick();
		ws_client_kick_write();
		emit_check_done();
	}
}

static void
handle_message(const char *data, size_t len)
{
	const char *p = data;
	const char *end = data + len;

	/* one object, or several separated by whitespace/newlines */
	while (p < end)
	{
		ServerMsg	m;
		long		used;

		while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
			p++;
		if (p >= end)
			break;
		memset(&m, 0, sizeof(m));
		used = json_scan_object(p, (size_t) (end - p), msg_member, &m);
		if (used < 0)
		{
			emit_log("unparsable server message: %.*s",
					 (int) ((end - p) > 200 ? 200 : (end - p)), p);
			return;
		}
		apply_message(&m);
		p += used;
	}
}

/* ---- the lws callback ---- */

static int
ws_callback(struct lws *w, enum lws_callback_reasons reason,
			void *user, void *in, size_t len)
{
	(void) user;

	switch (reason)
	{
		case LWS_CALLBACK_CLIENT_APPEND_HANDSHAKE_HEADER:
			if (opts.token)
			{
				unsigned char **p = (unsigned char **) in;
				unsigned char *end = (*p) + len;

				if (lws_add_http_header_by_token(w, WSI_TOKEN_HTTP_AUTHORIZATION,
												 (unsigned char *) auth_header.data,
												 (int) auth_header.len, p, end))
					return -1;
			}
			break;

		case LWS_CALLBACK_CLIENT_CONNECTION_ERROR:
			{
				const char *why = in ? (const char *) in : "connection error";
				unsigned int status = lws_http_client_http_response(w);

				if (status == 401 || status == 403 || strstr(why, "unauthorized"))
				{
					emit_log("server refused the token (HTTP %u): check --token",
							 status ? status : 401);
					auth_failed = true;
				}
				connection_lost(why);
			}
			break;

		case LWS_CALLBACK_CLIENT_ESTABLISHED:
			conn_state = CONN_OPEN;
			rx.len = 0;
			window_rewind();
			emit_debug("connected");
			if (!opts.stream)
			{
				ready = true;
				backoff.retries = 0;
				ws_client_kick_write();
			}
			break;

		case LWS_CALLBACK_CLIENT_RECEIVE:
			if (lws_is_first_fragment(w))
				rx.len = 0;
			strbuf_append(&rx, in, len);
			if (lws_is_final_fragment(w) && lws_remaining_packet_payload(w) == 0)
			{
				handle_message(rx.data, rx.len);
				rx.len = 0;
				if (emit.done)
					return -1;
			}
			break;

		case LWS_CALLBACK_CLIENT_WRITEABLE:
			if (emit.done)
				return -1;
			return write_frame(w);

		case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
			if (len >= 2)
			{
				const unsigned char *c = in;
				int			code = (c[0] << 8) | c[1];

				emit_debug("server closed with code %d: %.*s", code,
						   (int) (len - 2), (const char *) in + 2);
				if (code == LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE)
				{
					if (opts.batch > 1 || opts.max_frame_bytes > 4096)
					{
						/* frames too big for the server: send smaller ones */
						opts.batch = opts.batch > 1 ? opts.batch / 2 : 1;
						opts.max_frame_bytes /= 2;
						emit_log("server says message too big: batch now %d, frames <= %zu bytes",
								 opts.batch, opts.max_frame_bytes);
					}
					else
					{
						emit_log("server says message too big even for a single record");
						emit_finish(EMIT_EXIT_INCOMPLETE);
					}
				}
			}
			break;

		case LWS_CALLBACK_CLIENT_CLOSED:
			connection_lost("closed by peer");
			break;

		case LWS_CALLBACK_WSI_DESTROY:
			if (conn_state != CONN_IDLE && (wsi == NULL || w == wsi))
				connection_lost("connection destroyed");
			break;

		default:
			break;
	}
	return 0;
}
