/*-------------------------------------------------------------------------
 *
 * tail_client.c
 *	  libwebsockets client for logagg's live tail (GET /tail upgraded to a
 *	  WebSocket on the reader port): connect, receive, reconnect.
 *
 * The filters become the query string; the token goes in the
 * Authorization header (not the URL, which servers and proxies log).  The
 * server only sends: one JSON object per text frame, which
 * tail_output.c renders.  When the connection drops we reconnect with
 * exponential backoff and ask for the last --resume records again
 * (since=N); tail_output.c skips those already printed.
 *
 * HTTP 401/403 on the upgrade ends the program (exit 3): retrying a
 * refused token helps no one.  HTTP 400 (a filter the server rejects, such
 * as an invalid regex) and 404 (not a reader port) end it too (exit 2).
 *
 *-------------------------------------------------------------------------
 */
#include <libwebsockets.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "jsonutil.h"
#include "reconnect.h"
#include "tail.h"

#define MAX_MESSAGE_BYTES	(64 * 1024 * 1024)

typedef enum ConnState
{
	CONN_IDLE,					/* no connection, maybe a retry scheduled */
	CONN_CONNECTING,
	CONN_OPEN
} ConnState;

static struct lws *wsi;
static ConnState conn_state = CONN_IDLE;
static Backoff backoff;
static bool ever_connected;
static bool outage_reported;
static lws_sorted_usec_list_t reconnect_sul;

static StrBuf host_header;
static StrBuf auth_header;
static StrBuf path;				/* rebuilt for every connection (since=) */
static StrBuf rx;				/* reassembled server message */
static bool rx_overflow;

static const lws_retry_bo_t keepalive = {
	.secs_since_valid_ping = 20,
	.secs_since_valid_hangup = 45,
};

static int	tail_callback(struct lws *w, enum lws_callback_reasons reason,
						  void *user, void *in, size_t len);

static const struct lws_protocols protocols[] = {
	{"logagg-tail", tail_callback, 0, 65536, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

static void
add_param(StrBuf *sb, const char *name, const char *value)
{
	strbuf_append(sb, strchr(sb->data, '?') ? "&" : "?", 1);
	strbuf_append(sb, name, strlen(name));
	strbuf_append(sb, "=", 1);
	strbuf_append_urlencoded(sb, value);
}

/*
 * The request path.  The first connection replays --since records; a
 * reconnect after something was printed replays --resume, to fill the gap.
 */
static void
build_path(void)
{
	int			since = opts.since > 0 ? opts.since : 0;
	char		num[16];

	if (tail.printed > 0)
		since = opts.resume;
	path.len = 0;
	strbuf_append(&path, "/tail", 5);
	if (opts.source)
		add_param(&path, "source", opts.source);
	if (opts.min_severity)
		add_param(&path, "min_severity", opts.min_severity);
	if (opts.grep)
		add_param(&path, "q", opts.grep);
	if (opts.attrs)
		add_param(&path, "attrs", opts.attrs);
	if (since > 0)
	{
		snprintf(num, sizeof(num), "%d", since);
		add_param(&path, "since", num);
	}
	tail.resumed = (tail.printed > 0 && since > 0);
}

bool
tail_client_init(void)
{
	struct lws_context_creation_info info;
	char		portbuf[16];

	strbuf_append(&host_header, opts.host, strlen(opts.host));
	snprintf(portbuf, sizeof(portbuf), ":%d", opts.port);
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
	if (opts.tls)
	{
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.client_ssl_ca_filepath = opts.cafile;
	}
	tail.ctx = lws_create_context(&info);
	if (tail.ctx == NULL)
	{
		tail_log("lws_create_context failed");
		return false;
	}
	backoff_init(&backoff, now_us());
	return true;
}

/*
 * Destroys the lws context too: its callbacks may still run for the open
 * connection, so the buffers are freed only afterwards.
 */
void
tail_client_cleanup(void)
{
	lws_sul_cancel(&reconnect_sul);
	if (tail.ctx)
		lws_context_destroy(tail.ctx);
	tail.ctx = NULL;
	strbuf_free(&host_header);
	strbuf_free(&auth_header);
	strbuf_free(&path);
	strbuf_free(&rx);
}

static void
connect_now(lws_sorted_usec_list_t *sul)
{
	struct lws_client_connect_info ci;

	(void) sul;
	if (tail.done || conn_state != CONN_IDLE)
		return;

	build_path();
	reconnect_connect_info(&ci, tail.ctx, opts.host, opts.port, path.data, host_header.data,
						   protocols[0].name, &keepalive, &wsi, opts.tls, opts.insecure);
	tail_debug("connecting to %s:%d%s", opts.host, opts.port, path.data);
	conn_state = CONN_CONNECTING;
	if (lws_client_connect_via_info(&ci) == NULL && conn_state == CONN_CONNECTING)
	{
		/* failed synchronously without a CONNECTION_ERROR callback */
		conn_state = CONN_IDLE;
		wsi = NULL;
		lws_sul_schedule(tail.ctx, 0, &reconnect_sul, connect_now,
						 BACKOFF_MIN_MS * LWS_US_PER_MS);
	}
}

void
tail_client_start(void)
{
	lws_sul_schedule(tail.ctx, 0, &reconnect_sul, connect_now, 1);
}

/* The next attempt after a pause (reconnect.h: exponential, with jitter). */
static void
schedule_reconnect(void)
{
	int64_t		ms = backoff_next_ms(&backoff);

	tail_debug("reconnecting in %lld ms", (long long) ms);
	lws_sul_schedule(tail.ctx, 0, &reconnect_sul, connect_now, ms * LWS_US_PER_MS);
}

static void
connection_lost(const char *why)
{
	bool		was_open = (conn_state == CONN_OPEN);

	if (conn_state == CONN_IDLE)
		return;
	conn_state = CONN_IDLE;
	wsi = NULL;
	if (tail.done)
		return;
	if (was_open)
		tail_log("connection lost (%s), reconnecting", why);
	else if (!outage_reported)
		tail_log("cannot connect to %s:%d (%s), retrying", opts.host, opts.port, why);
	else
		tail_debug("connect failed: %s", why);
	outage_reported = true;
	schedule_reconnect();
}

/*
 * A failed upgrade: some answers are final, the rest (connection refused,
 * 5xx while the server restarts) are retried.
 */
static void
connection_error(struct lws *w, const char *why)
{
	unsigned int status = w ? lws_http_client_http_response(w) : 0;

	if (status == 401 || status == 403 ||
		(status == 0 && strstr(why, "unauthorized")))
	{
		tail_log("token refused (HTTP %u): check --token or LOGAGG_TOKEN",
				 status ? status : 401);
		tail_finish(TAIL_EXIT_AUTH);
	}
	else if (status == 400)
	{
		tail_log("the server rejected the request (HTTP 400): check --grep (a POSIX regex), --attrs (a JSON object), --source, --min-severity and --since");
		tail_finish(TAIL_EXIT_USAGE);
	}
	else if (status == 404)
	{
		tail_log("%s:%d has no /tail (HTTP 404): is it logagg's reader port (logagg.reader_port)?",
				 opts.host, opts.port);
		tail_finish(TAIL_EXIT_USAGE);
	}
	else if (status != 0)
	{
		char		buf[64];

		snprintf(buf, sizeof(buf), "HTTP %u", status);
		connection_lost(buf);
		return;
	}
	connection_lost(why);
}

static int
tail_callback(struct lws *w, enum lws_callback_reasons reason,
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
			connection_error(w, in ? (const char *) in : "connection error");
			break;

		case LWS_CALLBACK_CLIENT_ESTABLISHED:
			conn_state = CONN_OPEN;
			rx.len = 0;
			rx_overflow = false;
			backoff.retries = 0;
			if (ever_connected || outage_reported)
				tail_log("connected to %s:%d%s", opts.host, opts.port,
						 tail.printed > 0 && opts.resume == 0 ?
						 " (records committed while disconnected are not shown: --resume 0)" : "");
			else
				tail_debug("connected");
			ever_connected = true;
			outage_reported = false;
			break;

		case LWS_CALLBACK_CLIENT_RECEIVE:
			if (lws_is_first_fragment(w))
			{
				rx.len = 0;
				rx_overflow = false;
			}
			if (rx.len + len > MAX_MESSAGE_BYTES)
				rx_overflow = true;
			else
				strbuf_append(&rx, in, len);
			if (lws_is_final_fragment(w) && lws_remaining_packet_payload(w) == 0)
			{
				if (rx_overflow)
					tail_log("skipped a message of more than %d bytes", MAX_MESSAGE_BYTES);
				else if (rx.len > 0)
					tail_handle_message(rx.data, rx.len);
				rx.len = 0;
				rx_overflow = false;
				if (tail.done)
					return -1;
			}
			break;

		case LWS_CALLBACK_WS_PEER_INITIATED_CLOSE:
			if (len >= 2)
			{
				const unsigned char *c = in;

				tail_debug("server closed with code %d", (c[0] << 8) | c[1]);
			}
			break;

		case LWS_CALLBACK_CLIENT_CLOSED:
			connection_lost("closed by the server");
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
