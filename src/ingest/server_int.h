/*-------------------------------------------------------------------------
 *
 * server_int.h
 *		What the files of the ingest server (src/ingest/) share: the
 *		connection and stream state, the bounds on what a connection may
 *		hold, and the functions one file offers the others.
 *
 * Why a shared header and not one file: the server is one state machine
 * (a connection's queues, its stream, its uncommitted and committed
 * answers) touched from the lws callback, the HTTP handler, the token
 * cache, the parse loop and the commit.  Each of those lives in a file of
 * its own; the state they all touch is declared here, once, and only
 * what more than one file needs is non-static.  Nothing here is part of
 * the worker's interface (that is ingest.h's ingest_server_* functions).
 *
 * Two kinds of code use these declarations: lws callbacks (ws.c, http.c,
 * and the conn.c/auth.c helpers they call), which only malloc and never
 * ereport or palloc, and the main loop (input.c, commit.c, server.c),
 * which runs between uv_run() calls and may raise errors.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOGAGG_INGEST_SERVER_INT_H
#define LOGAGG_INGEST_SERVER_INT_H

#include "postgres.h"

#include <libwebsockets.h>

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
/* Token buffer: "lgt_" + 64 hex digits, with room for other token styles. */
#define MAX_TOKEN_LEN			256

typedef struct Msg
{
	struct Msg *next;
	TimestampTz received_at;
	int			len;
	IngestParsePos pos;			/* how far it was parsed (a message of many
								 * records may span batches) */
	uint8		encoding;		/* BODY_* Content-Encoding, until decoded */
	char		data[FLEXIBLE_ARRAY_MEMBER];
} Msg;

typedef struct Conn Conn;
typedef struct EsRequest EsRequest;
typedef struct LokiRequest LokiRequest;
typedef struct OtlpRequest OtlpRequest;

/* Content-Encoding of a POST body (decompress.c, in the main loop). */
#define BODY_IDENTITY	0
#define BODY_GZIP		1
#define BODY_DEFLATE	2

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
	bool		es_reply;		/* answer in Elasticsearch's shapes */
	EsRequest  *es;				/* a _bulk body: its items (es_bulk.c) */
	bool		loki_reply;		/* answer in Loki's shapes */
	LokiRequest *loki;			/* a Loki push body (loki.c) */
	OtlpRequest *otlp;			/* a POST /v1/logs body (otlp.c) */
	uint8		body_encoding;	/* BODY_* of the body being read */
	int			http_retry_after;	/* seconds for Retry-After (0: none) */
	int			http_fail_status;	/* the body as a whole was refused ... */
	const char *http_fail_reason;	/* ... for this (static) reason */
};

typedef struct SessionData
{
	Conn	   *conn;
} SessionData;

/* ---- state shared by the server's files ---- */

/* conn.c: every connection, and the streams they own */
extern Conn *ingest_conns;
extern int	ingest_nconns;
extern int	ingest_closed_since_trim;
extern size_t ingest_total_queued;
extern StreamState *ingest_streams;
/* conn.c: when the oldest uncommitted thing arrived (0: nothing waits) */
extern TimestampTz ingest_pending_since;
extern bool ingest_flush_now;
/* conn.c: when the newest queued message arrived */
extern TimestampTz ingest_latest_received;
/* server.c: the batch being filled (created at start) */
extern IngestBatch *ingest_cur_batch;

/* conn.c: buffers, connections, queues, output bounds (callback-safe) */
extern bool ingest_buf_append(Buf *b, const void *data, size_t len);
extern void ingest_buf_free(Buf *b);
extern void ingest_mark_pending(bool urgent);
extern void ingest_conn_flow(Conn *c);
extern void ingest_conn_compose(Conn *c);
extern void ingest_conn_output_ready(Conn *c);
extern StreamState *ingest_stream_find(const char *id);
extern void ingest_conn_drop_input(Conn *c);
extern void ingest_conn_release_if_done(Conn *c);
extern void ingest_conn_kill(Conn *c, int code, const char *reason);
extern Conn *ingest_conn_new(struct lws *wsi, bool is_http, const char *source);
extern void ingest_conn_queue_message(Conn *c, const char *data, size_t len);

/* auth.c: the token cache */
extern void ingest_auth_init(void);
extern void ingest_auth_refresh(bool force);
extern bool ingest_auth_detects(const char *source);
extern void ingest_auth_load_if_stale(void);
extern bool ingest_auth_outdated(TimestampTz received);
extern void ingest_auth_xact_started(TimestampTz when);
extern int	ingest_authenticate(struct lws *wsi, char *source, int size,
								bool *has_token, uint8 *hash);
extern void ingest_auth_forwarding(const uint8 *hash, IngestOrigin *origin);

/* ws.c: the lws protocol (its callback serves WebSocket and HTTP) */
extern const struct lws_protocols ingest_protocols[];
extern int	ingest_url_arg(struct lws *wsi, const char *name, char *buf, int size);

/* http.c: plain HTTP requests on the same port */
extern int	ingest_http_reply(Conn *c, int status, const char *type, const char *body);
extern int	ingest_http_reply_len(Conn *c, int status, const char *type, const char *body,
								  size_t len);
extern int	ingest_http_request(struct lws *wsi, SessionData *pss, const char *uri);
extern int	ingest_http_body(Conn *c, const unsigned char *in, size_t len);
extern int	ingest_http_body_completion(Conn *c);
extern int	ingest_http_writeable(struct lws *wsi, Conn *c);

/* es_bulk.c: the Elasticsearch endpoints */
extern int	ingest_es_route(struct lws *wsi, Conn *c, const char *uri, bool is_post, bool *bulk);
extern int	ingest_es_info(Conn *c);
extern int	ingest_es_unauthorized(Conn *c);
extern void ingest_es_free(Conn *c);
extern bool ingest_es_parse_part(IngestBatch *batch, const IngestOrigin *origin, Conn *c,
								 char *data, int len, IngestParsePos *pos);
extern void ingest_es_note_accepted(Conn *c, int rec_idx);
extern void ingest_es_note_rejected(Conn *c, const char *reason);
extern void ingest_es_note_refused(Conn *c, int rec_idx, const char *reason);
extern void ingest_es_batch_done(void);
extern void ingest_es_reply(Conn *c);

/* loki.c: the Loki push endpoint */
extern int	ingest_loki_route(struct lws *wsi, Conn *c, const char *uri, bool is_post, bool *push);
extern int	ingest_loki_unauthorized(Conn *c);
extern int	ingest_loki_error(Conn *c, int status, const char *text);
extern void ingest_loki_free(Conn *c);
extern bool ingest_loki_parse_part(IngestBatch *batch, const IngestOrigin *origin, Conn *c,
								   char *data, int len, IngestParsePos *pos);
extern void ingest_loki_note_rejected(Conn *c, const char *reason);
extern void ingest_loki_reply(Conn *c);
/* otlp.c: the OpenTelemetry door (POST /v1/logs) */
extern int	ingest_otlp_route(struct lws *wsi, Conn *c, const char *uri, bool is_post);
extern int	ingest_otlp_unauthorized(Conn *c);
extern int	ingest_otlp_refuse(Conn *c, int status, const char *message);
extern void ingest_otlp_free(Conn *c);
extern bool ingest_otlp_parse_part(IngestBatch *batch, const IngestOrigin *origin, Conn *c,
								   char *data, int len, IngestParsePos *pos);
extern void ingest_otlp_note_rejected(Conn *c, const char *reason);
extern void ingest_otlp_reply(Conn *c);

/* decompress.c: Content-Encoding gzip / deflate, bounded */
extern const char *const ingest_decompress_too_large;
extern bool ingest_gunzip(const char *in, size_t inlen, size_t limit, char **out,
						  size_t *outlen, const char **why);
extern bool ingest_inflate(const char *in, size_t inlen, size_t limit, char **out,
						   size_t *outlen, const char **why);

/* metrics.c: GET /metrics */
extern bool ingest_metrics_authorized(struct lws *wsi);
extern void ingest_append_metrics(Buf *b, int64 queue_depth);
extern void ingest_metrics_observe_flush(double secs);

#endif							/* LOGAGG_INGEST_SERVER_INT_H */
