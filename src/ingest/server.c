/*-------------------------------------------------------------------------
 *
 * server.c
 *		The ingest server's life cycle: a libwebsockets server on a libuv loop
 *		that the worker's WaitEventSet watches, speaking wire protocol v1 on
 *		ws://HOST:PORT/ingest and plain HTTP on the same port (POST /ingest,
 *		GET /healthz, GET /metrics): start (bind check, TLS), the loop's fd and
 *		timeout, servicing the sockets, stop.
 *
 * Division of labour.  lws callbacks (ws.c, http.c) only copy bytes and
 * set flags: they run inside uv_run(), where a PostgreSQL error would
 * longjmp over the library's frames.  Complete messages wait in
 * per-connection queues (conn.c); the main loop parses them into the
 * current IngestBatch (input.c), stores the batch in one transaction and
 * only then queues the answers the commit made true (commit.c).  Tokens
 * are checked against a cache of logagg.sources (auth.c).  See
 * src/ingest/README.md.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>
#include <malloc.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "utils/memutils.h"

#include "ingest/server_int.h"

/*
 * With token authentication and connections open, the worker looks at
 * logagg.sources at least this often, so a revoked token's connections
 * are closed within a second even when nothing else wakes it.
 */
#define AUTH_RECHECK_MS			250
/* Give freed heap back to the OS after this many connections closed. */
#define TRIM_AFTER_CLOSED		100

/*
 * The wss:// listener's ciphers (docs/configuration.md): forward-secret
 * AEAD suites only -- Mozilla's "intermediate" list for TLS 1.2, and every
 * TLS 1.3 suite.
 */
#define TLS12_CIPHERS \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:" \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:" \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_CIPHERS \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"

static uv_loop_t loop;
static bool loop_initialised = false;
static struct lws_context *context = NULL;

IngestBatch *ingest_cur_batch = NULL;

static const lws_retry_bo_t idle_policy = {
	.secs_since_valid_ping = 30,
	.secs_since_valid_hangup = 60,
};

static void
lws_log_to_server_log(int level, const char *line)
{
	int			len = strlen(line);

	/* lws lines end with a newline; the server log adds its own */
	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		len--;
	/* every refused handshake (401, 403, 503) says this: the client saw why */
	if (strstr(line, "User code denied connection"))
		return;
	ereport(LOG, (errmsg("logagg ingest: libwebsockets: %.*s", len, line)));
}

/*
 * Where a listener binds, checked and in the form libwebsockets 4.1 needs.
 *
 * lws logs a failed bind but still returns a context whose listener is
 * dead (the worker then fails later, far from the cause).  So try the bind
 * ourselves first and report the real reason.
 *
 * And lws opens an IPv6 socket unless LWS_SERVER_OPTION_DISABLE_IPV6 is
 * set; given an IPv4 address it parses it into the wrong fields of that
 * socket's address and binds "::", every interface of both families.  So
 * the address is resolved here (names too, as PostgreSQL's
 * listen_addresses does), returned in numeric form, and *ipv4 tells the
 * caller to disable IPv6.  NULL (for "" or "*") means every interface.
 * The reader worker calls this for its own port.
 */
const char *
ingest_listen_address(int port, const char *who, const char *port_guc, bool *ipv4)
{
	static char numeric[NI_MAXHOST];
	const char *addr = logagg_listen_address;
	bool		any = (addr == NULL || addr[0] == '\0' || strcmp(addr, "*") == 0);
	struct addrinfo hints;
	struct addrinfo *res = NULL;
	char		portstr[16];
	int			rc;
	int			fd;
	int			one = 1;
	int			save_errno;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(portstr, sizeof(portstr), "%d", port);
	rc = getaddrinfo(any ? NULL : addr, portstr, &hints, &res);
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s: could not resolve logagg.listen_address \"%s\": %s",
						who, addr, gai_strerror(rc)),
				 errhint("Set logagg.listen_address to a local address such as 127.0.0.1.")));
	fd = socket(res->ai_family, SOCK_STREAM, 0);
	if (fd < 0 ||
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
		bind(fd, res->ai_addr, res->ai_addrlen) < 0)
	{
		save_errno = errno;
		if (fd >= 0)
			close(fd);
		freeaddrinfo(res);
		errno = save_errno;
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("%s: could not listen on %s:%d: %m",
						who, addr, port),
				 errhint("Another process may be using the port: choose a free %s (restart required).",
						 port_guc)));
	}
	close(fd);
	*ipv4 = (res->ai_family == AF_INET);
	rc = getnameinfo(res->ai_addr, res->ai_addrlen, numeric, sizeof(numeric),
					 NULL, 0, NI_NUMERICHOST);
	freeaddrinfo(res);
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("%s: could not read logagg.listen_address \"%s\" back: %s",
						who, addr, gai_strerror(rc))));
	if (any)
	{
		*ipv4 = false;			/* both families */
		return NULL;
	}
	return numeric;
}

/*
 * TLS for a listener when logagg.tls_cert_file and logagg.tls_key_file
 * are set (the ingest and reader ports share them): TLS 1.2 at least and
 * the ciphers above, whatever the system's OpenSSL configuration allows.
 * Returns whether TLS is on.
 */
bool
ingest_tls_options(struct lws_context_creation_info *info)
{
	if (logagg_tls_cert_file == NULL || logagg_tls_cert_file[0] == '\0')
		return false;
	info->options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
	info->ssl_cert_filepath = logagg_tls_cert_file;
	info->ssl_private_key_filepath = logagg_tls_key_file;
	info->ssl_options_set = SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 |
		SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 | SSL_OP_CIPHER_SERVER_PREFERENCE;
	info->ssl_cipher_list = TLS12_CIPHERS;
	info->tls1_3_plus_cipher_list = TLS13_CIPHERS;
	return true;
}

void
ingest_server_start(void)
{
	struct lws_context_creation_info info;
	void	   *foreign_loops[1];
	bool		tls = logagg_tls_cert_file && logagg_tls_cert_file[0];
	const char *iface;
	bool		ipv4;

	ingest_cur_batch = ingest_batch_create(TopMemoryContext);
	ingest_auth_init();

	if (uv_loop_init(&loop) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("logagg ingest: could not initialise the event loop")));
	loop_initialised = true;

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_to_server_log);
	iface = ingest_listen_address(logagg_port, "logagg ingest", "logagg.port", &ipv4);

	memset(&info, 0, sizeof(info));
	info.port = logagg_port;
	info.iface = iface;
	info.protocols = ingest_protocols;
	/*
	 * No LWS_SERVER_OPTION_VALIDATE_UTF8: lws would close the connection
	 * (1007) on bad UTF-8 and the input would be lost; the parser (message.c)
	 * checks it and stores the message in logagg.rejected instead.
	 */
	info.options = LWS_SERVER_OPTION_LIBUV;
	if (ipv4)
		info.options |= LWS_SERVER_OPTION_DISABLE_IPV6;
	foreign_loops[0] = &loop;
	info.foreign_loops = foreign_loops;
	info.retry_and_idle_policy = &idle_policy;
	info.timeout_secs = 30;
	ingest_tls_options(&info);

	context = lws_create_context(&info);
	if (context == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("logagg ingest: could not listen on %s:%d",
						logagg_listen_address, logagg_port),
				 errdetail("The WebSocket server could not be created; the libwebsockets lines above say why."),
				 errhint("Check that logagg.listen_address and logagg.port name a free local address%s.",
						 tls ? ", and that logagg.tls_cert_file and logagg.tls_key_file are readable" : "")));
	ereport(LOG,
			(errmsg("logagg ingest: listening on %s://%s:%d/ingest",
					tls ? "wss" : "ws", logagg_listen_address, logagg_port)));
}

int
ingest_server_fd(void)
{
	return uv_backend_fd(&loop);
}

/* Milliseconds until lws/libuv timers need service (-1: none). */
long
ingest_server_timeout_ms(void)
{
	long		t = uv_backend_timeout(&loop);

	if (logagg_auth == LOGAGG_AUTH_TOKEN && ingest_nconns > 0 && (t < 0 || t > AUTH_RECHECK_MS))
		t = AUTH_RECHECK_MS;
	return t;
}

/* Run whatever socket work and timers are ready, without blocking. */
void
ingest_server_service(void)
{
	if (logagg_auth == LOGAGG_AUTH_TOKEN)
		ingest_auth_refresh(false);
	(void) uv_run(&loop, UV_RUN_NOWAIT);

	/*
	 * Each connection holds lws's receive buffer and our queues, all
	 * malloc'd.  After a wave of connections has gone, hand the freed
	 * memory back, so that RSS follows the connections (a thousand idle
	 * clients leaving should not pin tens of megabytes).
	 */
	if (ingest_closed_since_trim >= TRIM_AFTER_CLOSED)
	{
		ingest_closed_since_trim = 0;
		malloc_trim(0);
	}
}

void
ingest_server_stop(void)
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
