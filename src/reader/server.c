/*-------------------------------------------------------------------------
 *
 * server.c
 *		The reader worker's server: a libwebsockets server on a libuv loop
 *		(as the ingest worker's, src/ingest/server.c) on logagg.reader_port,
 *		its one lws callback (WebSocket /tail, plain HTTP for the JSON API and
 *		the console's files), connections, and reader-token authentication.
 *
 * Callbacks only copy bytes and set flags (malloc, no palloc, no ereport):
 * they run inside uv_run().  Queries, tail filters and the token cache's
 * reloads run in the main loop (worker.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <malloc.h>
#include <openssl/sha.h>
#include <uv.h>

#include "miscadmin.h"
#include "utils/memutils.h"

#include "reader/reader_int.h"

/* The token cache is made current at most this often (revocation delay). */
#define TOKEN_REFRESH_MS	100

RConn	   *reader_conns = NULL;
int			reader_nconns = 0;
char		reader_console_dir[MAXPGPATH];

static uv_loop_t loop;
static bool loop_initialised = false;
static struct lws_context *context = NULL;
static TimestampTz last_token_refresh = 0;

static const lws_retry_bo_t idle_policy = {
	.secs_since_valid_ping = 30,
	.secs_since_valid_hangup = 60,
};

static void
lws_log_to_server_log(int level, const char *line)
{
	int			len = strlen(line);

	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	if (strstr(line, "User code denied connection"))
		return;
	ereport(LOG, (errmsg("logagg reader: libwebsockets: %.*s", len, line)));
}

/* ---- reader tokens ---- */

static void
tokens_refresh_cb(void *arg)
{
	logagg_reader_tokens_refresh();
}

/*
 * Make the token cache current (a short transaction delivers the
 * invalidations; the cache reloads only after a change), at most every
 * TOKEN_REFRESH_MS unless forced, and close the tails of revoked tokens.
 */
void
reader_tokens_maybe_refresh(bool force)
{
	TimestampTz now = GetCurrentTimestamp();

	if (!force && !TimestampDifferenceExceeds(last_token_refresh, now, TOKEN_REFRESH_MS))
		return;
	last_token_refresh = now;
	logagg_run_or_exit(tokens_refresh_cb, NULL, "logagg reader: loading reader tokens");
	for (RConn *c = reader_conns; c; c = c->next)
		if (c->wsi && c->sub && !logagg_reader_hash_valid(c->token_hash))
			reader_tail_fail(c, "token revoked");
}

/*
 * The value of URL argument NAME (with its '='), as ingest_url_arg: its
 * length, -1 when absent, -2 when longer than size - 1.
 */
int
reader_url_arg(struct lws *wsi, const char *name, char *buf, int size)
{
	return ingest_url_arg(wsi, name, buf, size);
}

/*
 * Authenticate a request: "Authorization: Bearer TOKEN" or ?token=TOKEN.
 * Returns 0 and fills c's name, sources and token hash, or 401.
 */
int
reader_authenticate(struct lws *wsi, RConn *c)
{
	char		buf[MAX_TOKEN_LEN + 16];
	const char *t = NULL;
	bool		ok;

	if (lws_hdr_copy(wsi, buf, sizeof(buf), WSI_TOKEN_HTTP_AUTHORIZATION) > 0 &&
		pg_strncasecmp(buf, "Bearer ", 7) == 0)
	{
		for (t = buf + 7; *t == ' '; t++)
			;
	}
	else if (reader_url_arg(wsi, "token=", buf, sizeof(buf)) > 0)
		t = buf;
	ok = t != NULL &&
		logagg_reader_token_lookup(t, c->token_hash, c->name, sizeof(c->name),
								   c->sources, sizeof(c->sources));
	explicit_bzero(buf, sizeof(buf));
	return ok ? 0 : HTTP_STATUS_UNAUTHORIZED;
}

/* ---- connections ---- */

RConn *
reader_conn_new(struct lws *wsi)
{
	RConn	   *c = calloc(1, sizeof(RConn));

	if (c == NULL)
		return NULL;
	c->wsi = wsi;
	if (lws_get_peer_simple(wsi, c->peer, sizeof(c->peer)) == NULL)
		strlcpy(c->peer, "unknown", sizeof(c->peer));
	c->next = reader_conns;
	if (reader_conns)
		reader_conns->prev = c;
	reader_conns = c;
	reader_nconns++;
	logagg_count(LC_CONNECTIONS, 1);
	logagg_count(LC_CONNECTIONS_TOTAL, 1);
	return c;
}

/* Free a connection lws is done with (and whose query, if any, is stopped). */
void
reader_conn_free(RConn *c)
{
	if (c->query)
		reader_query_cancel(c->query);
	ingest_buf_free(&c->out);
	free(c->filter);
	if (c->prev)
		c->prev->next = c->next;
	else
		reader_conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

static void
conn_closed(ReaderSession *pss, RConn *c)
{
	pss->conn = NULL;
	c->wsi = NULL;
	reader_nconns--;
	logagg_count(LC_CONNECTIONS, (uint64) -1);
	if (c->sub)
		reader_tail_closed(c);
	reader_conn_free(c);
}

/*
 * The one lws callback, for WebSocket (/tail) and plain HTTP alike.  It
 * runs inside uv_run(): bytes and flags only.
 */
static int
reader_callback(struct lws *wsi, enum lws_callback_reasons reason,
				void *user, void *in, size_t len)
{
	ReaderSession *pss = (ReaderSession *) user;
	RConn	   *c = pss ? pss->conn : NULL;

	switch (reason)
	{
		case LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION:
			return pss ? reader_tail_filter(wsi, pss) : -1;

		case LWS_CALLBACK_ESTABLISHED:
			if (c)
				reader_tail_established(c);
			return c ? 0 : -1;

		case LWS_CALLBACK_RECEIVE:
			return 0;			/* clients send nothing; ignored */

		case LWS_CALLBACK_SERVER_WRITEABLE:
			return c ? reader_tail_writeable(wsi, c) : -1;

		case LWS_CALLBACK_HTTP:
			if (pss == NULL)
				return -1;
			if (pss->conn == NULL)
			{
				if (reader_nconns >= logagg_max_connections)
				{
					lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
										   "too many connections (logagg.max_connections)");
					return -1;
				}
				if ((pss->conn = reader_conn_new(wsi)) == NULL)
					return -1;
			}
			return reader_http_request(wsi, pss, (const char *) in);

		case LWS_CALLBACK_HTTP_BODY:
		case LWS_CALLBACK_HTTP_BODY_COMPLETION:
			return 0;			/* GET only: a body is ignored */

		case LWS_CALLBACK_HTTP_WRITEABLE:
			return c ? reader_http_writeable(wsi, c) : -1;

		case LWS_CALLBACK_CLOSED:
		case LWS_CALLBACK_CLOSED_HTTP:
		case LWS_CALLBACK_HTTP_DROP_PROTOCOL:
		case LWS_CALLBACK_WSI_DESTROY:
			if (c)
				conn_closed(pss, c);
			break;

		default:
			break;
	}
	return 0;
}

static const struct lws_protocols reader_protocols[] = {
	{"logagg-reader", reader_callback, sizeof(ReaderSession), 16384, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

void
reader_server_start(void)
{
	struct lws_context_creation_info info;
	void	   *foreign_loops[1];
	char		share[MAXPGPATH];
	const char *iface;
	bool		ipv4;
	bool		tls;

	get_share_path(my_exec_path, share);
	snprintf(reader_console_dir, sizeof(reader_console_dir), "%s/extension/logagg_console", share);

	reader_tokens_maybe_refresh(true);
	reader_tail_init();

	if (uv_loop_init(&loop) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("logagg reader: could not initialise the event loop")));
	loop_initialised = true;
	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_to_server_log);
	iface = ingest_listen_address(logagg_reader_port, "logagg reader", "logagg.reader_port", &ipv4);

	memset(&info, 0, sizeof(info));
	info.port = logagg_reader_port;
	info.iface = iface;
	info.protocols = reader_protocols;
	info.options = LWS_SERVER_OPTION_LIBUV;
	if (ipv4)
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;	/* see ingest_listen_address() */
	foreign_loops[0] = &loop;
	info.foreign_loops = foreign_loops;
	info.retry_and_idle_policy = &idle_policy;
	info.timeout_secs = 30;
	/* reader tokens and log text: as private as what ingest receives */
	tls = ingest_tls_options(&info);
	context = lws_create_context(&info);
	if (context == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("logagg reader: could not listen on %s:%d",
						logagg_listen_address, logagg_reader_port),
				 errdetail("The server could not be created; the libwebsockets lines above say why."),
				 errhint("Check that logagg.listen_address and logagg.reader_port name a free local address%s.",
						 tls ? ", and that logagg.tls_cert_file and logagg.tls_key_file are readable" : "")));
	ereport(LOG,
			(errmsg("logagg reader: listening on %s://%s:%d/ (console, /api, %s /tail)",
					tls ? "https" : "http", logagg_listen_address, logagg_reader_port,
					tls ? "wss" : "ws")));
}

int
reader_server_fd(void)
{
	return uv_backend_fd(&loop);
}

/* Milliseconds until lws/libuv timers need service (-1: none). */
long
reader_server_timeout_ms(void)
{
	long		t = uv_backend_timeout(&loop);

	/* revoked tokens' tails are closed within a second */
	if (reader_nsubs > 0 && (t < 0 || t > 1000))
		t = 1000;
	return t;
}

void
reader_server_service(void)
{
	(void) uv_run(&loop, UV_RUN_NOWAIT);
}

void
reader_server_stop(void)
{
	if (context)
	{
		lws_context_destroy(context);
		context = NULL;
	}
	if (loop_initialised)
	{
		for (int i = 0; i < 1000 && uv_run(&loop, UV_RUN_NOWAIT) != 0; i++)
			;
		(void) uv_loop_close(&loop);
		loop_initialised = false;
	}
}
