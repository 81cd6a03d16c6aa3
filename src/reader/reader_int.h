/*-------------------------------------------------------------------------
 *
 * reader_int.h
 *		What the files of the reader worker (src/reader/) share: the
 *		connection state, the tail subscribers, the queries run in
 *		background workers, and the functions one file offers the others.
 *
 * As in the ingest server, lws callbacks (server.c, http.c, static.c and
 * the tail.c helpers they call) copy bytes and set flags with malloc, and
 * never palloc or ereport; the main loop (worker.c calling tail.c and
 * query.c) runs between two uv_run() calls and may.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOGAGG_READER_INT_H
#define LOGAGG_READER_INT_H

#include "postgres.h"

#include <libwebsockets.h>

#include "ingest/server_int.h"	/* Buf, ingest_buf_append/free */
#include "logagg.h"

#define READER_NAME_MAX		129
#define READER_SOURCES_LEN	1024
/* Longest q, attrs or source parameter accepted. */
#define READER_ARG_MAX		4096
/* Frames a tail subscriber may have waiting before records are dropped. */
#define SUB_QUEUE_BYTES		(1024 * 1024)
/* since=N at most */
#define TAIL_SINCE_MAX		10000

typedef enum ApiKind
{
	API_NONE = 0,
	API_SEARCH,
	API_HISTOGRAM,
	API_ALERTS,
	API_STATUS,
	API_REPLAY					/* a tail's since=N */
} ApiKind;

/* The filters of a tail or a search (the query string, checked). */
typedef struct ReadFilter
{
	char		source[READER_ARG_MAX + 1];	/* "" = any */
	int			min_severity;	/* -1 = any */
	char		q[READER_ARG_MAX + 1];	/* "" = none */
	char		attrs[READER_ARG_MAX + 1];	/* JSON object text, "" = none */
	int			since_n;		/* tail: records to replay */
	/* search */
	char		since[64];
	char		until[64];
	int			limit;
	char		range[8];		/* histogram */
} ReadFilter;

typedef struct Frame
{
	struct Frame *next;
	size_t		len;
	char		data[FLEXIBLE_ARRAY_MEMBER];	/* LWS_PRE, then the text */
} Frame;

typedef struct Query Query;
typedef struct Sub Sub;

typedef struct RConn
{
	struct RConn *prev;
	struct RConn *next;
	struct lws *wsi;			/* NULL once lws destroyed it */
	bool		is_ws;
	char		peer[64];
	uint8		token_hash[LOGAGG_TOKEN_HASH_LEN];
	char		name[READER_NAME_MAX];
	char		sources[READER_SOURCES_LEN];

	/* HTTP: the reply, written at HTTP_WRITEABLE */
	int			status;			/* reply ready when non-zero */
	const char *type;
	Buf			out;
	int			retry_after;
	/* HTTP: an API request waiting for its query */
	ApiKind		api;
	ReadFilter *filter;			/* malloc'd */
	bool		api_pending;	/* not started yet */
	Query	   *query;

	/* WebSocket: a tail subscriber */
	Sub		   *sub;
	bool		killed;			/* close at the next WRITEABLE ... */
	bool		close_when_sent;	/* ... or once the queue is written */
	const char *close_reason;
} RConn;

typedef struct ReaderSession
{
	RConn	   *conn;
} ReaderSession;

struct Sub
{
	RConn	   *conn;
	ReadFilter	f;
	void	   *regex;			/* text * of f.q (main loop), or NULL */
	void	   *attrs_jsonb;	/* Jsonb * of f.attrs (main loop), or NULL */
	bool		prepared;		/* regex and attrs made by the main loop */
	bool		replaying;		/* since=N: live records wait in held */
	bool		replay_started;
	int64	   *replayed;		/* sorted ids sent by the replay */
	int			nreplayed;
	Frame	   *held_head;		/* live records behind the replay */
	Frame	   *held_tail;
	int64	   *held_ids;
	int			nheld;
	int			maxheld;
	Frame	   *q_head;			/* frames to write */
	Frame	   *q_tail;
	size_t		q_bytes;
	int64		dropped;		/* not sent yet: {"dropped": N} */
	bool		dropped_unknown;	/* lost in the ring, count unknowable */
	Query	   *query;
};

/* server.c: connections, lws life cycle */
extern RConn *reader_conns;
extern int	reader_nconns;
extern char reader_console_dir[MAXPGPATH];
extern void reader_server_start(void);
extern int	reader_server_fd(void);
extern long reader_server_timeout_ms(void);
extern void reader_server_service(void);
extern void reader_server_stop(void);
extern void reader_tokens_maybe_refresh(bool force);
extern int	reader_url_arg(struct lws *wsi, const char *name, char *buf, int size);
extern int	reader_authenticate(struct lws *wsi, RConn *c);
extern void reader_conn_free(RConn *c);
extern RConn *reader_conn_new(struct lws *wsi);

/* http.c: plain HTTP */
extern int	reader_http_request(struct lws *wsi, ReaderSession *pss, const char *uri);
extern int	reader_http_writeable(struct lws *wsi, RConn *c);
extern int	reader_reply(RConn *c, int status, const char *type, const char *body, size_t len);
extern int	reader_reply_error(RConn *c, int status, const char *msg);
extern int	reader_add_security_headers(struct lws *wsi, unsigned char **p, unsigned char *end);
extern const char *reader_parse_filter(struct lws *wsi, ReadFilter *f, bool tail);

/* static.c: the console's files */
extern int	reader_static_file(RConn *c, const char *uri);

/* tail.c: subscribers */
extern int	reader_nsubs;
extern int	reader_tail_filter(struct lws *wsi, ReaderSession *pss);
extern void reader_tail_established(RConn *c);
extern int	reader_tail_writeable(struct lws *wsi, RConn *c);
extern void reader_tail_closed(RConn *c);
extern void reader_tail_init(void);
extern void reader_tail_prepare(void);
extern void reader_tail_deliver(void);
extern void reader_tail_replay_done(Sub *s, int status, const char *data, size_t len);
extern void reader_tail_fail(RConn *c, const char *msg);

/* query.c: queries in background workers (the reader's side) */
extern void reader_queries_start_pending(void);
extern void reader_queries_poll(void);
extern bool reader_query_slots_free(void);
extern Query *reader_query_launch(ApiKind kind, const ReadFilter *f, const char *sources,
								  const char **why);
extern void reader_query_cancel(Query *q);
extern void reader_query_set_sub(Query *q, Sub *s);
extern int	reader_queries_running(void);

#endif							/* LOGAGG_READER_INT_H */
