/*-------------------------------------------------------------------------
 *
 * ingest_server.c
 *		The network side of the ingest worker: a libwebsockets server on a
 *		libuv loop that the worker's WaitEventSet watches (see
 *		docs/design.md §1), speaking wire protocol v1 on
 *		ws://HOST:PORT/ingest and plain HTTP on the same port
 *		(POST /ingest, GET /healthz, GET /metrics).
 *
 * Division of labour.  lws callbacks only copy bytes and set flags: they
 * run inside uv_run(), where a PostgreSQL error would longjmp over the
 * library's frames.  Complete messages wait in per-connection queues; the
 * main loop parses them into the current IngestBatch
 * (ingest_server_process_input), stores the batch in one transaction
 * (ingest_server_flush) and only then queues the acks, error frames,
 * stream resume points and HTTP replies that the commit made true.
 *
 * Streams.  A stream (?stream=ID) is owned by one connection at a time; a
 * new connection takes it over and the old one is closed.  The in-memory
 * StreamState carries the highest seq accepted into a batch (for dropping
 * duplicates, even across connections) and the highest committed (for
 * acks and resume points).  A new connection reads nothing until its
 * resume point is known, and that is sent only after any batch holding
 * the stream's records has committed.
 *
 * Authentication.  Token hashes of logagg.sources are cached; the
 * sources_changed trigger sends a relcache invalidation on every change,
 * which the worker picks up at its next transaction start.  The main loop
 * starts an empty transaction before servicing the sockets when none ran
 * in the last millisecond, so a revoked token is refused from the next
 * connection on.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <netdb.h>
#include <sys/socket.h>
#include <unistd.h>

#include <libwebsockets.h>
#include <malloc.h>
#include <openssl/sha.h>
#include <openssl/ssl.h>
#include <uv.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"

#include "ingest.h"

/* A connection stops being read while this much input waits to be parsed. */
#define CONN_QUEUE_PAUSE_BYTES	(256 * 1024)
/* ... or while all connections together have this much waiting. */
#define TOTAL_QUEUE_PAUSE_BYTES (64 * 1024 * 1024)
/*
 * Answers the client has not read yet are bounded.  Acks are coalesced
 * (only the latest matters).  While OUT_PAUSE_BYTES of error lines wait
 * (in the batch or to be written), or lws could not hand the last frame
 * to the kernel (whose send buffer is SOCKET_SNDBUF_BYTES), the
 * connection's input is neither parsed nor read: a client that sends
 * without reading its answers stops being read, and lws's ping timeout
 * closes it.  So error lines are only ever dropped -- counted, and
 * reported as one line with the count -- when a single message makes
 * more than BATCH_ERROR_BYTES of them, or they would take more than
 * OUT_ERROR_BYTES waiting to be written.
 */
#define OUT_PAUSE_BYTES			(32 * 1024)
#define BATCH_ERROR_BYTES		(128 * 1024)
#define OUT_ERROR_BYTES			(256 * 1024)
#define SOCKET_SNDBUF_BYTES		(256 * 1024)
/*
 * With token authentication and connections open, the worker looks at
 * logagg.sources at least this often, so a revoked token's connections
 * are closed within a second even when nothing else wakes it.
 */
#define AUTH_RECHECK_MS			250
/* Receive chunk size given to lws. */
#define RX_BUFFER_SIZE			65536
/* Give freed heap back to the OS after this many connections closed. */
#define TRIM_AFTER_CLOSED		100
/* Token buffer: "lgt_" + 64 hex digits, with room for other token styles. */
#define MAX_TOKEN_LEN			256

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

typedef struct Msg
{
	struct Msg *next;
	TimestampTz received_at;
	int			len;
	IngestParsePos pos;			/* how far it was parsed (a message of many
								 * records may span batches) */
	char		data[FLEXIBLE_ARRAY_MEMBER];
} Msg;

typedef struct Conn Conn;

typedef struct StreamState
{
	struct StreamState *next;
	char		id[INGEST_MAX_STREAM_LEN + 1];
	char		source[INGEST_MAX_SOURCE_LEN + 1];	/* "" = not fixed by a token */
	bool		loaded;			/* committed/accepted read from the table */
	bool		foreign;		/* the table says another source owns it */
	int64		committed;		/* highest seq committed */
	int64		accepted;		/* highest seq accepted into a batch */
	Conn	   *owner;
} StreamState;

/* A growable malloc'd byte buffer (callbacks must not palloc). */
typedef struct Buf
{
	char	   *data;
	size_t		len;
	size_t		cap;
} Buf;

struct Conn
{
	Conn	   *prev;
	Conn	   *next;
	struct lws *wsi;			/* NULL once lws destroyed it */
	bool		is_http;
	bool		killed;			/* close it at its next WRITEABLE, with: */
	int			close_code;
	const char *close_reason;
	char		peer[64];
	char		source[INGEST_MAX_SOURCE_LEN + 1];	/* from the token; "" = trust records */
	bool		has_token;		/* authenticated with token_hash */
	uint8		token_hash[LOGAGG_TOKEN_HASH_LEN];
	StreamState *stream;
	bool		need_resume;
	bool		rx_paused;

	Buf			rx;				/* message being reassembled */
	Msg		   *inq_head;		/* complete messages, oldest first */
	Msg		   *inq_tail;
	size_t		inq_bytes;

	bool		revoked;		/* its token was revoked: read no more */

	/* what the current (uncommitted) batch holds for this connection */
	bool		ack_due;
	int64		batch_count;	/* records without seq accepted */
	bool		batch_has_seq;
	int64		batch_max_seq;
	Buf			errors;			/* error lines, released at commit */
	int64		errors_dropped; /* error lines beyond BATCH_ERROR_BYTES */

	/* committed answers not written yet, composed at WRITEABLE */
	bool		out_resume_due;
	int64		out_resume;
	Buf			out_errors;		/* at most OUT_ERROR_BYTES of error lines */
	int64		out_errors_dropped; /* error lines that did not fit */
	bool		out_ack_due;
	int64		out_ack;		/* latest {"ack": S} */
	int64		out_ack_count;	/* sum of the {"ack_count": N} deltas */
	bool		out_full;		/* not read until the client reads */

	Buf			out;			/* LWS_PRE headroom, then the next frame */

	/* HTTP */
	bool		http_chunked;	/* the body is chunked: decoded by dechunk() */
	bool		http_close;		/* close after the reply (see http_request) */
	bool		http_body_done; /* the whole body is in: ignore what follows */
	int			ck_state;		/* dechunk() */
	int			ck_digits;
	int64		ck_remain;
	bool		http_waiting;	/* body queued, reply after commit */
	int64		http_accepted;
	int64		http_rejected;
	int			http_status;	/* reply ready when non-zero */
	const char *http_type;
};

typedef struct SessionData
{
	Conn	   *conn;
} SessionData;

typedef struct SourceEntry
{
	uint8		hash[LOGAGG_TOKEN_HASH_LEN];	/* key */
	char		name[INGEST_MAX_SOURCE_LEN + 1];
	bool		enabled;
} SourceEntry;

static uv_loop_t loop;
static bool loop_initialised = false;
static struct lws_context *context = NULL;
static IngestBatch *batch = NULL;

static Conn *conns = NULL;
static int	nconns = 0;
static int	closed_since_trim = 0;
static size_t total_queued = 0;
static StreamState *streams = NULL;

/* when the oldest uncommitted thing arrived (0: nothing waits) */
static TimestampTz pending_since = 0;
static bool flush_now = false;
/* when the newest queued message arrived */
static TimestampTz latest_received = 0;

/*
 * Flush latency histogram for /metrics (this process's batches; upper
 * bounds in seconds, Prometheus' default buckets).
 */
static const double flush_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static uint64 flush_buckets[lengthof(flush_bounds)];	/* not cumulative */
static uint64 flush_count = 0;
static double flush_sum = 0;
/* the last batch queued alerts and the published queue depth is behind */
static bool depth_stale = false;
static TimestampTz last_flush = 0;

static HTAB *sources = NULL;
static bool sources_valid = false;
static Oid	sources_relid = InvalidOid;
static TimestampTz last_xact_start = 0;

static int	ws_callback(struct lws *wsi, enum lws_callback_reasons reason,
						void *user, void *in, size_t len);
static int	http_reply(Conn *c, int status, const char *type, const char *body);
static void append_metrics(Buf *b, int64 queue_depth);

static const struct lws_protocols protocols[] = {
	{"logagg", ws_callback, sizeof(SessionData), RX_BUFFER_SIZE, 0, NULL, 0},
	{NULL, NULL, 0, 0, 0, NULL, 0}
};

static const lws_retry_bo_t idle_policy = {
	.secs_since_valid_ping = 30,
	.secs_since_valid_hangup = 60,
};

/* ---------------------------------------------------------------------
 * Small helpers usable inside callbacks (malloc, no ereport)
 * ---------------------------------------------------------------------
 */
static bool
buf_append(Buf *b, const void *data, size_t len)
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

static void
buf_free(Buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}

static void
mark_pending(bool urgent)
{
	if (pending_since == 0)
		pending_since = GetCurrentTimestamp();
	if (urgent)
		flush_now = true;
}

/*
 * Read from the connection or not: not while its stream's resume point is
 * unknown, while its answers wait unread (out_full), after a revoke, or
 * while too much of its (or everyone's) input waits to be parsed -- with
 * hysteresis, so that reading resumes only once that is half drained.
 * Backpressure is flow control: stop reading, never drop.
 */
static void
conn_flow(Conn *c)
{
	bool		pause;

	if (c->wsi == NULL)
		return;
	if (c->need_resume || c->out_full || c->revoked)
		pause = true;
	else if (c->rx_paused)
		pause = c->inq_bytes >= CONN_QUEUE_PAUSE_BYTES / 2 ||
			total_queued >= TOTAL_QUEUE_PAUSE_BYTES / 2;
	else
		pause = c->inq_bytes >= CONN_QUEUE_PAUSE_BYTES ||
			total_queued >= TOTAL_QUEUE_PAUSE_BYTES;
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
		buf_append(frame, "\n", 1);
	buf_append(frame, text, len);
}

/*
 * Compose the answers waiting for a WebSocket client into c->out (LWS_PRE
 * headroom, then one frame of lines): the resume point first, then error
 * lines, then the latest ack and the ack_count delta.
 */
static void
conn_compose(Conn *c)
{
	char		line[256];
	int			n;

	c->out.len = 0;
	{
		char		pre[LWS_PRE];

		memset(pre, 0, sizeof(pre));
		buf_append(&c->out, pre, LWS_PRE);
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
static void
conn_output_ready(Conn *c)
{
	if (c->wsi == NULL || c->is_http)
		return;
	lws_callback_on_writable(c->wsi);
	if (c->out_errors.len >= OUT_PAUSE_BYTES || c->out_errors_dropped > 0)
	{
		/* the client is not keeping up with its answers: stop reading */
		c->out_full = true;
		conn_flow(c);
	}
}

static StreamState *
stream_find(const char *id)
{
	for (StreamState *s = streams; s; s = s->next)
		if (strcmp(s->id, id) == 0)
			return s;
	return NULL;
}

/* Forget input that was received but not parsed yet. */
static void
conn_drop_input(Conn *c)
{
	Msg		   *m = c->inq_head;

	while (m)
	{
		Msg		   *next = m->next;

		total_queued -= m->len;
		free(m);
		m = next;
	}
	c->inq_head = c->inq_tail = NULL;
	c->inq_bytes = 0;
}

static void
conn_free(Conn *c)
{
	conn_drop_input(c);
	if (c->stream && c->stream->owner == c)
		c->stream->owner = NULL;
	buf_free(&c->rx);
	buf_free(&c->errors);
	buf_free(&c->out_errors);
	buf_free(&c->out);
	closed_since_trim++;
	if (c->prev)
		c->prev->next = c->next;
	else
		conns = c->next;
	if (c->next)
		c->next->prev = c->prev;
	free(c);
}

/* Free a gone connection once nothing of it is left to store or report. */
static void
conn_release_if_done(Conn *c)
{
	if (c->wsi == NULL && c->inq_head == NULL && !c->ack_due && !c->http_waiting)
		conn_free(c);
}

/*
 * Close a connection from its next WRITEABLE callback.  (lws 4.1.6 does not
 * get the close frame out from there -- the socket closes on lws's
 * close-send timeout, seen as 1006 -- but the connection does close.)
 */
static void
conn_kill(Conn *c, int code, const char *reason)
{
	c->killed = true;
	c->close_code = code;
	c->close_reason = reason;
	if (c->wsi)
		lws_callback_on_writable(c->wsi);
}

/* ---------------------------------------------------------------------
 * Token cache
 * ---------------------------------------------------------------------
 */
static void
sources_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == sources_relid)
		sources_valid = false;
}

/* Reload the cache.  Needs a transaction with SPI connected. */
static void
sources_load(void)
{
	HASHCTL		ctl;
	int			ret;

	if (sources)
		hash_destroy(sources);
	ctl.keysize = LOGAGG_TOKEN_HASH_LEN;
	ctl.entrysize = sizeof(SourceEntry);
	ctl.hcxt = TopMemoryContext;
	sources = hash_create("logagg ingest tokens", 64, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	sources_valid = true;		/* an invalidation during the load wins */
	sources_relid = get_relname_relid("sources", get_namespace_oid(LOGAGG_SCHEMA, false));

	ret = SPI_execute("SELECT name, token_hash, enabled FROM logagg.sources", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: reading logagg.sources failed: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bytea	   *hash = DatumGetByteaPP(SPI_getbinval(tup, desc, 2, &isnull));
		SourceEntry *e;
		bool		found;

		if (isnull || VARSIZE_ANY_EXHDR(hash) != LOGAGG_TOKEN_HASH_LEN)
			continue;
		e = hash_search(sources, VARDATA_ANY(hash), HASH_ENTER, &found);
		strlcpy(e->name, SPI_getvalue(tup, desc, 1), sizeof(e->name));
		e->enabled = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
	}
}

static void
sources_load_cb(void *arg)
{
	sources_load();
}

/*
 * Stop taking records from connections whose token is no longer valid
 * (revoked, deleted, or now naming another source): their unparsed input
 * is dropped, WebSocket connections are closed (1008), and a waiting
 * POST gets 401.  What was parsed before stays in the batch: it arrived
 * before the revocation.
 */
static void
close_revoked(void)
{
	for (Conn *c = conns, *next; c; c = next)
	{
		SourceEntry *e;

		next = c->next;
		if (!c->has_token || c->revoked)
			continue;
		e = hash_search(sources, c->token_hash, HASH_FIND, NULL);
		if (e && e->enabled && strcmp(e->name, c->source) == 0)
			continue;
		c->revoked = true;
		conn_drop_input(c);
		c->rx.len = 0;
		if (!c->is_http)
			conn_kill(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "token revoked");
		else if (c->wsi && (c->http_waiting || (!c->http_body_done && c->http_status == 0)))
		{
			/* a body queued or still arriving: refuse it now, then close */
			c->http_waiting = false;
			c->http_body_done = true;
			c->http_close = true;
			http_reply(c, HTTP_STATUS_UNAUTHORIZED, "application/json",
					   "{\"error\": \"token revoked\"}");
		}
		conn_flow(c);
		conn_release_if_done(c);
	}
}

/*
 * Pick up committed changes to logagg.sources: a transaction start
 * delivers pending invalidations.  Unless forced, at most once a
 * millisecond (before new connections are authenticated).
 */
static void
refresh_auth_cache(bool force)
{
	TimestampTz now = GetCurrentTimestamp();

	if (sources_valid && !force && now - last_xact_start < 1000)
		return;
	last_xact_start = now;
	if (sources_valid)
	{
		StartTransactionCommand();
		CommitTransactionCommand();
	}
	if (!sources_valid)
	{
		logagg_run_or_exit(sources_load_cb, NULL, "logagg ingest: loading tokens");
		close_revoked();
	}
}

/*
 * The source a token belongs to, or NULL when it is unknown or revoked.
 * Callable from callbacks: the hash lookup and SHA-256 don't raise errors
 * for any input.
 */
static const char *
token_source(const char *token, uint8 *hash)
{
	SourceEntry *e;

	if (sources == NULL || token[0] == '\0')
		return NULL;

	/*
	 * OpenSSL directly, not logagg_token_hash(): pg_cryptohash needs a
	 * resource owner, and we are outside any transaction here.  Both
	 * compute plain SHA-256.
	 */
	SHA256((const unsigned char *) token, strlen(token), hash);
	e = hash_search(sources, hash, HASH_FIND, NULL);
	/* the hash table compared the key; compare again in constant time */
	if (e == NULL || !e->enabled || !logagg_timingsafe_equal(e->hash, hash, LOGAGG_TOKEN_HASH_LEN))
		return NULL;
	return e->name;
}

/* Token from "Authorization: Bearer TOKEN", else from ?token=. */
static void
request_token(struct lws *wsi, char *token, int size)
{
	char		hdr[MAX_TOKEN_LEN + 16];
	const char *arg;

	token[0] = '\0';
	if (lws_hdr_copy(wsi, hdr, sizeof(hdr), WSI_TOKEN_HTTP_AUTHORIZATION) > 0 &&
		pg_strncasecmp(hdr, "Bearer ", 7) == 0)
	{
		const char *t = hdr + 7;

		while (*t == ' ')
			t++;
		strlcpy(token, t, size);
		return;
	}
	arg = lws_get_urlarg_by_name(wsi, "token=", hdr, sizeof(hdr));
	if (arg)
		strlcpy(token, arg, size);
}

/*
 * Check the request's credentials.  Returns 0 if allowed (source filled
 * in, "" under trust; *has_token and hash say which token it was), else
 * the HTTP status to refuse with.
 */
static int
authenticate(struct lws *wsi, char *source, int size, bool *has_token, uint8 *hash)
{
	char		token[MAX_TOKEN_LEN];
	const char *name;

	source[0] = '\0';
	*has_token = false;
	if (logagg_auth == LOGAGG_AUTH_TRUST)
		return 0;
	request_token(wsi, token, sizeof(token));
	name = token_source(token, hash);
	explicit_bzero(token, sizeof(token));
	if (name == NULL)
		return HTTP_STATUS_UNAUTHORIZED;
	strlcpy(source, name, size);
	*has_token = true;
	return 0;
}

/* ---------------------------------------------------------------------
 * The lws callback
 * ---------------------------------------------------------------------
 */
static Conn *
conn_new(struct lws *wsi, bool is_http, const char *source)
{
	Conn	   *c = calloc(1, sizeof(Conn));

	if (c == NULL)
		return NULL;
	c->wsi = wsi;
	c->is_http = is_http;
	strlcpy(c->source, source, sizeof(c->source));
	if (lws_get_peer_simple(wsi, c->peer, sizeof(c->peer)) == NULL)
		strlcpy(c->peer, "unknown", sizeof(c->peer));
	c->next = conns;
	if (conns)
		conns->prev = c;
	conns = c;
	nconns++;
	logagg_count(LC_CONNECTIONS, 1);
	logagg_count(LC_CONNECTIONS_TOTAL, 1);
	return c;
}

/* A complete message: queue it for the main loop, pause reading if needed. */
static void
conn_queue_message(Conn *c, const char *data, size_t len)
{
	Msg		   *m = malloc(offsetof(Msg, data) + len + 1);

	if (m == NULL)
		return;
	m->next = NULL;
	m->received_at = GetCurrentTimestamp();
	m->len = (int) len;
	memset(&m->pos, 0, sizeof(m->pos));
	memcpy(m->data, data, len);
	m->data[len] = '\0';
	if (c->inq_tail)
		c->inq_tail->next = m;
	else
		c->inq_head = m;
	c->inq_tail = m;
	c->inq_bytes += len;
	total_queued += len;
	if (m->received_at > latest_received)
		latest_received = m->received_at;
	conn_flow(c);
}

/*
 * The value of URL argument NAME (e.g. "stream=") into buf: its length,
 * -1 when absent, -2 when longer than size - 1.  (lws_get_urlarg_by_name
 * can't tell "absent" from "too long", and stops at the first argument
 * longer than its buffer.)  lws has URL-decoded the arguments; a decoded
 * NUL makes the value look longer than its strlen().
 */
static int
url_arg(struct lws *wsi, const char *name, char *buf, int size)
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
	int			n = url_arg(wsi, "stream=", buf, size);

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
	if ((status = authenticate(wsi, source, sizeof(source), &has_token, hash)) != 0)
	{
		lws_return_http_status(wsi, status, "missing, unknown or revoked token");
		return -1;
	}
	if (nconns >= logagg_max_connections)
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
	if (stream && (s = stream_find(stream)) != NULL &&
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
		s->next = streams;
		streams = s;
	}
	if ((c = conn_new(wsi, false, source)) == NULL)
		return -1;
	c->has_token = has_token;
	memcpy(c->token_hash, hash, sizeof(c->token_hash));
	pss->conn = c;
	if (s)
	{
		if (s->owner)
		{
			/* a reconnecting client must not wait for the old socket's timeout */
			conn_kill(s->owner, LWS_CLOSE_STATUS_GOINGAWAY, "stream taken over by a new connection");
			s->owner->stream = NULL;
		}
		s->owner = c;
		c->stream = s;
		c->need_resume = true;
	}
	return 0;
}

static int
http_reply(Conn *c, int status, const char *type, const char *body)
{
	c->out.len = 0;
	if (!buf_append(&c->out, body, strlen(body)))
		return -1;
	c->http_status = status;
	c->http_type = type;
	lws_callback_on_writable(c->wsi);
	return 0;
}


/*
 * GET /metrics is open while logagg.metrics_token is empty; otherwise it
 * needs "Authorization: Bearer TOKEN".  Both sides are hashed first, so
 * the comparison takes the same time whatever the lengths and contents.
 */
static bool
metrics_authorized(struct lws *wsi)
{
	char		hdr[MAX_TOKEN_LEN + 16];
	const char *t;
	uint8		want[SHA256_DIGEST_LENGTH];
	uint8		got[SHA256_DIGEST_LENGTH];
	bool		ok;

	if (logagg_metrics_token == NULL || logagg_metrics_token[0] == '\0')
		return true;
	if (lws_hdr_copy(wsi, hdr, sizeof(hdr), WSI_TOKEN_HTTP_AUTHORIZATION) <= 0 ||
		pg_strncasecmp(hdr, "Bearer ", 7) != 0)
		return false;
	for (t = hdr + 7; *t == ' '; t++)
		;
	SHA256((const unsigned char *) logagg_metrics_token, strlen(logagg_metrics_token), want);
	SHA256((const unsigned char *) t, strlen(t), got);
	ok = logagg_timingsafe_equal(want, got, sizeof(want));
	explicit_bzero(hdr, sizeof(hdr));
	return ok;
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

					if (!buf_append(&c->rx, in + i, n))
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
		*why = "{\"error\": \"POST /ingest needs Content-Length or Transfer-Encoding: chunked\"}";
		return HTTP_STATUS_LENGTH_REQUIRED;
	}
	if (has_length)
	{
		/* two lengths that may disagree: the way to smuggle requests */
		c->http_close = true;
		*why = "{\"error\": \"Content-Length and Transfer-Encoding must not both be set\"}";
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
		*why = "{\"error\": \"only Transfer-Encoding: chunked is supported\"}";
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
		return http_reply(c, HTTP_STATUS_UNAUTHORIZED, "application/json",
						  "{\"error\": \"token revoked\"}");
	}
	conn_queue_message(c, c->rx.data ? c->rx.data : "", c->rx.len);
	c->rx.len = 0;
	c->http_waiting = true;
	mark_pending(false);
	return 0;
}

/* LWS_CALLBACK_HTTP: a plain HTTP request (not an upgrade). */
static int
http_request(struct lws *wsi, SessionData *pss, const char *uri)
{
	bool		is_post = lws_hdr_total_length(wsi, WSI_TOKEN_POST_URI) > 0;
	Conn	   *c = pss->conn;
	char		source[sizeof(((Conn *) NULL)->source)];
	int			status = 0;
	const char *why;

	if (c == NULL)
	{
		if (nconns >= logagg_max_connections)
		{
			lws_return_http_status(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE,
								   "too many connections (logagg.max_connections)");
			return -1;
		}
		c = pss->conn = conn_new(wsi, true, "");
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
		return http_reply(c, HTTP_STATUS_OK, "text/plain", "ok\n");
	if (strcmp(uri, "/metrics") == 0 && !is_post)
	{
		if (!metrics_authorized(wsi))
			return http_reply(c, HTTP_STATUS_UNAUTHORIZED, "text/plain",
							  "/metrics needs \"Authorization: Bearer\" with logagg.metrics_token\n");
		/* shared-memory counters only: no transaction per scrape */
		c->out.len = 0;
		append_metrics(&c->out, logagg_alert_queue_depth());
		c->http_status = HTTP_STATUS_OK;
		c->http_type = "text/plain; version=0.0.4";
		lws_callback_on_writable(c->wsi);
		return 0;
	}
	if (strcmp(uri, "/ingest") != 0)
		return http_reply(c, HTTP_STATUS_NOT_FOUND, "application/json",
						  "{\"error\": \"not found: use POST /ingest, GET /healthz or GET /metrics\"}");
	if (!is_post)
		return http_reply(c, HTTP_STATUS_METHOD_NOT_ALLOWED, "application/json",
						  "{\"error\": \"use POST /ingest, or a WebSocket upgrade\"}");
	if ((status = authenticate(wsi, source, sizeof(source), &c->has_token, c->token_hash)) != 0)
		return http_reply(c, status, "application/json",
						  "{\"error\": \"missing, unknown or revoked token\"}");
	strlcpy(c->source, source, sizeof(c->source));
	c->revoked = false;
	if ((status = body_framing(wsi, c, &why)) != 0)
		return http_reply(c, status, "application/json", why);
	c->http_waiting = false;
	c->http_status = 0;
	return 0;					/* the body follows */
}

static int
http_writeable(struct lws *wsi, Conn *c)
{
	unsigned char hdr[LWS_PRE + 512];
	unsigned char *start = hdr + LWS_PRE;
	unsigned char *p = start;
	unsigned char *end = hdr + sizeof(hdr) - 1;
	Buf			body = {0};

	if (c->http_status == 0)
		return 0;
	if (lws_add_http_common_headers(wsi, c->http_status, c->http_type,
									c->out.len, &p, end))
		return -1;
	if (c->http_status == HTTP_STATUS_UNAUTHORIZED &&
		lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_WWW_AUTHENTICATE,
									 (const unsigned char *) "Bearer realm=\"logagg\"", 21, &p, end))
		return -1;
	if (c->http_close &&
		lws_add_http_header_by_token(wsi, WSI_TOKEN_CONNECTION,
									 (const unsigned char *) "close", 5, &p, end))
		return -1;
	if (lws_finalize_write_http_header(wsi, start, &p, end))
		return -1;
	/* lws_write needs LWS_PRE bytes of headroom before the body */
	if (!buf_append(&body, hdr, LWS_PRE) || !buf_append(&body, c->out.data, c->out.len))
	{
		buf_free(&body);
		return -1;
	}
	if (lws_write(wsi, (unsigned char *) body.data + LWS_PRE, c->out.len,
				  LWS_WRITE_HTTP_FINAL) != (int) c->out.len)
	{
		buf_free(&body);
		return -1;
	}
	buf_free(&body);
	c->out.len = 0;
	c->http_status = 0;
	/* lws would take whatever follows for the rest of the body: close */
	if (c->http_close)
		return -1;
	if (lws_http_transaction_completed(wsi))
		return -1;
	return 0;
}

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
			if (c == NULL)
				return -1;
			{
				/*
				 * Answers are small; a fixed send buffer also bounds what
				 * the kernel holds for a client that does not read them
				 * (autotuning would let it grow to megabytes).
				 */
				int			sndbuf = SOCKET_SNDBUF_BYTES;

				(void) setsockopt(lws_get_socket_fd(wsi), SOL_SOCKET, SO_SNDBUF,
								  &sndbuf, sizeof(sndbuf));
			}
			if (c->need_resume)
			{
				/* read nothing until the resume point is sent */
				conn_flow(c);
				mark_pending(true);
			}
			break;

		case LWS_CALLBACK_RECEIVE:
			if (c == NULL)
				return -1;
			if (c->killed)
				break;			/* closing: the client resends elsewhere */
			if (lws_is_first_fragment(wsi))
				c->rx.len = 0;
			if (c->rx.len + len > (size_t) logagg_max_message_bytes)
			{
				static const char why[] = "message larger than logagg.max_message_bytes";

				lws_close_reason(wsi, LWS_CLOSE_STATUS_MESSAGE_TOO_LARGE,
								 (unsigned char *) why, sizeof(why) - 1);
				return -1;
			}
			if (!buf_append(&c->rx, in, len))
				return -1;
			if (lws_is_final_fragment(wsi) && lws_remaining_packet_payload(wsi) == 0)
			{
				conn_queue_message(c, c->rx.data, c->rx.len);
				c->rx.len = 0;
			}
			break;

		case LWS_CALLBACK_SERVER_WRITEABLE:
			if (c == NULL)
				return -1;
			if (c->killed)
			{
				lws_close_reason(wsi, c->close_code, (unsigned char *) c->close_reason,
								 strlen(c->close_reason));
				return -1;
			}
			conn_compose(c);
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
				 * Read again once lws has got everything out; until then
				 * (it keeps what the socket did not take) ask again.
				 */
				if (lws_send_pipe_choked(wsi))
					lws_callback_on_writable(wsi);
				else
				{
					c->out_full = false;
					conn_flow(c);
				}
			}
			break;

		case LWS_CALLBACK_HTTP:
			return pss ? http_request(wsi, pss, (const char *) in) : -1;

		case LWS_CALLBACK_HTTP_BODY:
			if (c == NULL || c->http_status != 0 || c->http_body_done)
				break;			/* already answered (e.g. 401): ignore the body */
			if (c->http_chunked)
			{
				int			r = dechunk(c, in, len);

				if (r == 1)
					return http_body_complete(c);
				if (r == HTTP_STATUS_REQ_ENTITY_TOO_LARGE)
					goto too_large;
				if (r != 0)
				{
					c->rx.len = 0;
					c->http_body_done = true;
					return http_reply(c, r, "application/json",
									  "{\"error\": \"malformed chunked body\"}");
				}
				break;
			}
			if (c->rx.len + len > (size_t) logagg_max_message_bytes)
				goto too_large;
			if (!buf_append(&c->rx, in, len))
				return -1;
			break;
	too_large:
			c->rx.len = 0;
			c->http_body_done = true;
			return http_reply(c, HTTP_STATUS_REQ_ENTITY_TOO_LARGE, "application/json",
							  "{\"error\": \"body larger than logagg.max_message_bytes\"}");

		case LWS_CALLBACK_HTTP_BODY_COMPLETION:
			if (c == NULL || c->http_status != 0 || c->http_body_done)
				break;
			if (c->http_chunked)
			{
				/* lws's 100 MB end came before the last chunk */
				c->http_body_done = true;
				return http_reply(c, HTTP_STATUS_BAD_REQUEST, "application/json",
								  "{\"error\": \"chunked body without its last chunk\"}");
			}
			return http_body_complete(c);

		case LWS_CALLBACK_HTTP_WRITEABLE:
			if (c == NULL)
				return -1;
			return http_writeable(wsi, c);

		case LWS_CALLBACK_CLOSED:
		case LWS_CALLBACK_CLOSED_HTTP:
		case LWS_CALLBACK_HTTP_DROP_PROTOCOL:	/* end of an HTTP transaction */
		case LWS_CALLBACK_WSI_DESTROY:
			/* whichever comes first with our session data; then never again */
			if (c)
			{
				pss->conn = NULL;
				c->wsi = NULL;
				nconns--;
				logagg_count(LC_CONNECTIONS, (uint64) -1);
				conn_release_if_done(c);
			}
			break;

		default:
			break;
	}
	return 0;
}

/* ---------------------------------------------------------------------
 * /metrics
 * ---------------------------------------------------------------------
 */
static void
append_metric(Buf *b, const char *name, const char *type, const char *help,
			  const char *value)
{
	char		line[512];
	int			n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n%s %s\n",
							 name, help, name, type, name, value);

	buf_append(b, line, Min(n, (int) sizeof(line) - 1));
}

/* Prometheus text format 0.0.4. */
static void
append_metrics(Buf *b, int64 queue_depth)
{
	static const struct
	{
		LogaggCounter c;
		const char *name;
		const char *type;
		const char *help;
	}			metrics[] = {
		{LC_CONNECTIONS, "logagg_ingest_connections", "gauge", "Open ingest connections (WebSocket and HTTP)."},
		{LC_CONNECTIONS_TOTAL, "logagg_ingest_connections_total", "counter", "Ingest connections accepted since server start."},
		{LC_ROWS, "logagg_ingest_rows_total", "counter", "Log records stored in logagg.logs by the ingest worker (records accepted)."},
		{LC_BATCHES, "logagg_ingest_batches_total", "counter", "Ingest transactions committed."},
		{LC_REJECTS, "logagg_ingest_rejects_total", "counter", "Invalid records stored in logagg.rejected by the ingest worker."},
		{LC_DUPLICATES, "logagg_ingest_duplicates_total", "counter", "Stream records dropped because their seq was already accepted."},
		{LC_ALERTS_QUEUED, "logagg_ingest_alerts_queued_total", "counter", "Alert groups handed to logagg.alert_queue by the ingest worker."},
	};
	LogaggWorkerSlot *slot = logagg_my_slot();
	char		value[64];
	char		line[256];
	uint64		cum = 0;
	int			n;

	for (int i = 0; i < lengthof(metrics); i++)
	{
		uint64		v = slot ? pg_atomic_read_u64(&slot->counters[metrics[i].c]) : 0;

		snprintf(value, sizeof(value), UINT64_FORMAT, v);
		append_metric(b, metrics[i].name, metrics[i].type, metrics[i].help, value);
	}

	if (queue_depth >= 0)
	{
		snprintf(value, sizeof(value), INT64_FORMAT, queue_depth);
		append_metric(b, "logagg_alert_queue_depth", "gauge",
					  "Alerts in logagg.alert_queue waiting for delivery (not dead).", value);
	}

	n = snprintf(line, sizeof(line),
				 "# HELP logagg_ingest_flush_seconds Time to store one batch (its whole transaction), since the worker started.\n"
				 "# TYPE logagg_ingest_flush_seconds histogram\n");
	buf_append(b, line, n);
	for (int i = 0; i < lengthof(flush_bounds); i++)
	{
		cum += flush_buckets[i];
		n = snprintf(line, sizeof(line), "logagg_ingest_flush_seconds_bucket{le=\"%g\"} " UINT64_FORMAT "\n",
					 flush_bounds[i], cum);
		buf_append(b, line, n);
	}
	n = snprintf(line, sizeof(line),
				 "logagg_ingest_flush_seconds_bucket{le=\"+Inf\"} " UINT64_FORMAT "\n"
				 "logagg_ingest_flush_seconds_sum %.6f\n"
				 "logagg_ingest_flush_seconds_count " UINT64_FORMAT "\n",
				 flush_count, flush_sum, flush_count);
	buf_append(b, line, n);
}

/* ---------------------------------------------------------------------
 * Main-loop side
 * ---------------------------------------------------------------------
 */
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
 * libwebsockets 4.1 logs a failed bind but still returns a context whose
 * listener is dead (the worker then fails later, far from the cause).  So
 * try the bind ourselves first and report the real reason.
 */
static void
check_listen_address(void)
{
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
	snprintf(portstr, sizeof(portstr), "%d", logagg_port);
	rc = getaddrinfo(logagg_listen_address[0] ? logagg_listen_address : NULL, portstr, &hints, &res);
	if (rc != 0)
		ereport(ERROR,
				(errcode(ERRCODE_CONFIG_FILE_ERROR),
				 errmsg("logagg ingest: could not resolve logagg.listen_address \"%s\": %s",
						logagg_listen_address, gai_strerror(rc)),
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
				 errmsg("logagg ingest: could not listen on %s:%d: %m",
						logagg_listen_address, logagg_port),
				 errhint("Another process may be using the port: choose a free logagg.port (restart required).")));
	}
	close(fd);
	freeaddrinfo(res);
}

void
ingest_server_start(void)
{
	struct lws_context_creation_info info;
	void	   *foreign_loops[1];
	bool		tls = logagg_tls_cert_file && logagg_tls_cert_file[0];

	batch = ingest_batch_create(TopMemoryContext);
	CacheRegisterRelcacheCallback(sources_relcache_callback, (Datum) 0);
	/* publish a queue depth soon, so that /metrics has one from the start */
	depth_stale = true;

	if (uv_loop_init(&loop) != 0)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("logagg ingest: could not initialise the event loop")));
	loop_initialised = true;

	lws_set_log_level(LLL_ERR | LLL_WARN, lws_log_to_server_log);
	check_listen_address();

	memset(&info, 0, sizeof(info));
	info.port = logagg_port;
	info.iface = logagg_listen_address;
	info.protocols = protocols;
	/*
	 * No LWS_SERVER_OPTION_VALIDATE_UTF8: lws would close the connection
	 * (1007) on bad UTF-8 and the input would be lost; ingest_parse.c
	 * checks it and stores the message in logagg.rejected instead.
	 */
	info.options = LWS_SERVER_OPTION_LIBUV;
	foreign_loops[0] = &loop;
	info.foreign_loops = foreign_loops;
	info.retry_and_idle_policy = &idle_policy;
	info.timeout_secs = 30;
	if (tls)
	{
		info.options |= LWS_SERVER_OPTION_DO_SSL_GLOBAL_INIT;
		info.ssl_cert_filepath = logagg_tls_cert_file;
		info.ssl_private_key_filepath = logagg_tls_key_file;
		/* TLS 1.2 at least, whatever the system's OpenSSL configuration allows */
		info.ssl_options_set = SSL_OP_NO_SSLv2 | SSL_OP_NO_SSLv3 |
			SSL_OP_NO_TLSv1 | SSL_OP_NO_TLSv1_1 | SSL_OP_CIPHER_SERVER_PREFERENCE;
		info.ssl_cipher_list = TLS12_CIPHERS;
		info.tls1_3_plus_cipher_list = TLS13_CIPHERS;
	}

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

	if (logagg_auth == LOGAGG_AUTH_TOKEN && nconns > 0 && (t < 0 || t > AUTH_RECHECK_MS))
		t = AUTH_RECHECK_MS;
	return t;
}

/* Run whatever socket work and timers are ready, without blocking. */
void
ingest_server_service(void)
{
	if (logagg_auth == LOGAGG_AUTH_TOKEN)
		refresh_auth_cache(false);
	(void) uv_run(&loop, UV_RUN_NOWAIT);

	/*
	 * Each connection holds lws's receive buffer and our queues, all
	 * malloc'd.  After a wave of connections has gone, hand the freed
	 * memory back, so that RSS follows the connections (a thousand idle
	 * clients leaving should not pin tens of megabytes).
	 */
	if (closed_since_trim >= TRIM_AFTER_CLOSED)
	{
		closed_since_trim = 0;
		malloc_trim(0);
	}
}

/* Rejects count: each is a row of logagg.rejected in the same transaction. */
bool
ingest_server_batch_full(void)
{
	return batch->nrecords + batch->nrejects >= logagg_batch_rows;
}

/* Does anything wait for a commit, and by when must it happen? */
bool
ingest_server_needs_flush(TimestampTz *deadline)
{
	if (pending_since == 0 && batch->nrecords == 0 && batch->nrejects == 0)
	{
		/* only the queue depth is behind: count it a little later */
		if (!depth_stale)
			return false;
		*deadline = TimestampTzPlusMilliseconds(last_flush, 100);
		return true;
	}
	if (pending_since == 0)
		pending_since = GetCurrentTimestamp();
	*deadline = (flush_now || ingest_server_batch_full()) ? 0 :
		TimestampTzPlusMilliseconds(pending_since, logagg_batch_delay_ms);
	return true;
}

/* ---- parse callbacks ---- */

/*
 * On a stream, seqs must increase.  One at or below the committed seq is
 * a resend of a stored record: dropped as a duplicate, and covered by the
 * ack.  One above it but not above the highest seq accepted so far (5
 * then 3 in one frame, or 3 twice before a commit) is out of order: the
 * record is rejected with the reason, so it is neither lost silently nor
 * stored twice.
 */
static bool
cb_accept_seq(void *arg, int64 seq, const char **reason)
{
	Conn	   *c = arg;
	static char why[128];

	if (c->stream == NULL)
		return true;
	if (seq <= c->stream->committed)
	{
		logagg_count(LC_DUPLICATES, 1);
		c->ack_due = true;
		return false;
	}
	if (seq <= c->stream->accepted)
	{
		snprintf(why, sizeof(why),
				 "seq " INT64_FORMAT " is out of order: seq " INT64_FORMAT " was already sent on this stream",
				 seq, c->stream->accepted);
		*reason = why;
		return false;
	}
	c->stream->accepted = seq;
	return true;
}

static void
cb_accepted(void *arg, const IngestRecord *rec)
{
	Conn	   *c = arg;

	c->ack_due = true;
	c->http_accepted++;
	if (rec->has_seq)
	{
		c->batch_max_seq = c->batch_has_seq ? Max(c->batch_max_seq, rec->seq) : rec->seq;
		c->batch_has_seq = true;
	}
	else
		c->batch_count++;
}

static void
cb_rejected(void *arg, const char *reason, bool has_seq, int64 seq)
{
	Conn	   *c = arg;
	StringInfoData s;

	c->ack_due = true;
	c->http_rejected++;
	if (c->is_http)
		return;
	initStringInfo(&s);
	appendStringInfoString(&s, "{\"error\": ");
	escape_json(&s, reason);
	if (has_seq)
		appendStringInfo(&s, ", \"seq\": " INT64_FORMAT, seq);
	appendStringInfoChar(&s, '}');
	if (c->errors.len + s.len + 1 > BATCH_ERROR_BYTES)
		c->errors_dropped++;	/* reported as a count */
	else
	{
		if (c->errors.len > 0)
			buf_append(&c->errors, "\n", 1);
		buf_append(&c->errors, s.data, s.len);
	}
	pfree(s.data);
}

/*
 * A record of this connection that was accepted into the batch failed
 * while the batch was stored, and is in logagg.rejected instead: it is
 * reported like any rejected record (an error frame with its seq).
 */
static void
cb_refused(void *arg, const IngestRecord *rec, const char *reason)
{
	Conn	   *c = arg;

	c->http_accepted--;
	if (!rec->has_seq)
		c->batch_count--;
	cb_rejected(arg, reason, rec->has_seq, rec->seq);
}

/*
 * Parse queued messages into the batch, one message per connection per
 * round so that a busy connection cannot starve the others, until the
 * batch is full or nothing is left.
 */
void
ingest_server_process_input(void)
{
	bool		progress = true;

	/*
	 * A token revoked before a message arrived must not let it in: look at
	 * logagg.sources from a transaction that started after the newest one.
	 */
	if (logagg_auth == LOGAGG_AUTH_TOKEN && conns != NULL)
		refresh_auth_cache(!sources_valid || latest_received >= last_xact_start);

	while (progress && !ingest_server_batch_full())
	{
		progress = false;
		for (Conn *c = conns, *next; c; c = next)
		{
			Msg		   *m = c->inq_head;
			IngestOrigin origin;

			next = c->next;
			if (c->killed && m)
			{
				/* taken over: the client resends this on its new connection */
				for (; m; m = c->inq_head)
				{
					c->inq_head = m->next;
					total_queued -= m->len;
					free(m);
				}
				c->inq_tail = NULL;
				c->inq_bytes = 0;
				conn_release_if_done(c);
				continue;
			}
			/* answers pile up: parse more once the client has read them */
			if (m == NULL || c->need_resume || c->out_full ||
				c->errors.len >= OUT_PAUSE_BYTES)
				continue;

			memset(&origin, 0, sizeof(origin));
			origin.peer = c->peer;
			origin.source = c->source[0] ? c->source : NULL;
			origin.stream = c->stream ? MemoryContextStrdup(batch->cxt, c->stream->id) : NULL;
			origin.received_at = m->received_at;
			origin.arg = c;
			origin.accept_seq = cb_accept_seq;
			origin.accepted = cb_accepted;
			origin.rejected = cb_rejected;
			origin.refused = cb_refused;
			/* a message of many records stops when the batch is full */
			if (ingest_parse_message_part(batch, &origin, m->data, m->len, &m->pos,
										  logagg_batch_rows))
			{
				c->inq_head = m->next;
				if (c->inq_head == NULL)
					c->inq_tail = NULL;
				c->inq_bytes -= m->len;
				total_queued -= m->len;
				free(m);
			}
			mark_pending(false);
			progress = true;

			conn_flow(c);
			if (ingest_server_batch_full())
				break;
		}
	}
}

/* Inside the batch's transaction. */
static void
flush_in_transaction(void *arg)
{
	IngestResult *res = arg;
	bool		empty = batch->nrecords == 0 && batch->nrejects == 0;

	ingest_batch_store(batch, res);
	/* publish the alert queue depth for /metrics (see shmem.c) */
	if (res->alerts_queued > 0)
		depth_stale = true;
	if (depth_stale && logagg_refresh_alert_queue_depth(empty))
		depth_stale = false;
	/* resume points of streams new to this process */
	for (StreamState *s = streams; s; s = s->next)
	{
		if (!s->loaded)
		{
			char	   *owner;

			s->committed = ingest_stream_last_seq(s->id, &owner);
			s->foreign = owner && s->source[0] && strcmp(owner, s->source) != 0;
			s->accepted = Max(s->accepted, s->committed);
			s->loaded = true;
		}
	}
}

/*
 * Move the committed batch's error lines into the bounded output: those
 * that fit in OUT_ERROR_BYTES are kept, the others only counted.
 */
static void
move_errors(Conn *c)
{
	const char *p = c->errors.data;
	const char *end = p + c->errors.len;

	c->out_errors_dropped += c->errors_dropped;
	while (p < end)
	{
		const char *nl = memchr(p, '\n', end - p);
		size_t		len = (nl ? nl : end) - p;

		if (c->out_errors.len + len + 1 <= OUT_ERROR_BYTES)
		{
			if (c->out_errors.len > 0)
				buf_append(&c->out_errors, "\n", 1);
			buf_append(&c->out_errors, p, len);
		}
		else
			c->out_errors_dropped++;
		p += len + 1;
	}
	c->errors.len = 0;
	c->errors_dropped = 0;
}

/* What the commit made true for this connection, for its next frame. */
static void
send_acks(Conn *c)
{
	if (c->wsi != NULL && !c->is_http)
	{
		move_errors(c);
		if (c->stream)
		{
			c->out_ack = c->stream->committed;
			c->out_ack_due = true;
		}
		else if (c->batch_has_seq)
		{
			c->out_ack = c->batch_max_seq;
			c->out_ack_due = true;
		}
		c->out_ack_count += c->batch_count;
		conn_output_ready(c);
	}
	c->errors.len = 0;
	c->errors_dropped = 0;
	c->batch_count = 0;
	c->batch_has_seq = false;
	c->ack_due = false;
}

/*
 * Store the batch in one transaction, then tell every client what became
 * durable.  An error propagates (the worker restarts and clients resend
 * what was not acked).
 */
void
ingest_server_flush(void)
{
	IngestResult res;
	StreamState **sp;

	/* streams whose resume point the batch advances */
	for (StreamState *s = streams; s; s = s->next)
		if (s->loaded && s->accepted > s->committed)
			ingest_batch_add_stream(batch, s->id, s->source[0] ? s->source : NULL, s->accepted);

	memset(&res, 0, sizeof(res));
	last_xact_start = last_flush = GetCurrentTimestamp();
	logagg_run_or_exit(flush_in_transaction, &res, "logagg ingest: storing a batch");

	if (batch->nrecords > 0 || batch->nrejects > 0)
	{
		double		secs = (GetCurrentTimestamp() - last_xact_start) / 1000000.0;
		int			i;

		logagg_count(LC_BATCHES, 1);
		for (i = 0; i < lengthof(flush_bounds) && secs > flush_bounds[i]; i++)
			;
		if (i < lengthof(flush_bounds))
			flush_buckets[i]++;
		flush_count++;
		flush_sum += secs;
	}
	logagg_count(LC_ROWS, res.rows);
	logagg_count(LC_REJECTS, res.rejects);
	if (res.alerts_queued > 0)
	{
		logagg_count(LC_ALERTS_QUEUED, res.alerts_queued);
		logagg_wake_workers(LOGAGG_WORKER_DISPATCH);
	}
	for (StreamState *s = streams; s; s = s->next)
		s->committed = Max(s->committed, s->accepted);

	for (Conn *c = conns, *next; c; c = next)
	{
		next = c->next;
		if (c->need_resume && c->stream && c->stream->foreign)
		{
			c->stream->owner = NULL;
			c->stream = NULL;
			c->need_resume = false;
			conn_kill(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "stream belongs to another source");
		}
		else if (c->need_resume && c->stream && c->stream->loaded)
		{
			c->out_resume = c->stream->committed;
			c->out_resume_due = true;
			c->need_resume = false;
			conn_output_ready(c);
			conn_flow(c);
		}
		if (c->ack_due)
			send_acks(c);
		if (c->is_http && c->http_waiting && c->inq_head == NULL)
		{
			char		body[96];

			snprintf(body, sizeof(body), "{\"accepted\": " INT64_FORMAT ", \"rejected\": " INT64_FORMAT "}",
					 c->http_accepted, c->http_rejected);
			c->http_waiting = false;
			if (c->wsi)
				http_reply(c, HTTP_STATUS_OK, "application/json", body);
		}
		conn_release_if_done(c);
	}

	/* forget streams nobody owns any more: their state is in the table */
	sp = &streams;
	while (*sp)
	{
		StreamState *s = *sp;

		if (s->owner == NULL && s->accepted <= s->committed)
		{
			*sp = s->next;
			for (Conn *c = conns; c; c = c->next)
				if (c->stream == s)
					c->stream = NULL;
			free(s);
		}
		else
			sp = &s->next;
	}

	ingest_batch_reset(batch);
	pending_since = 0;
	flush_now = false;
	/*
	 * Input still queued (the batch was full) needs another round -- not
	 * that of a client that first has to read its answers.
	 */
	for (Conn *c = conns; c; c = c->next)
		if (c->inq_head && !c->out_full)
			mark_pending(false);
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
