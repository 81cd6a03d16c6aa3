/*-------------------------------------------------------------------------
 *
 * ingest.h
 *		Declarations shared by the ingest path: record parsing
 *		(src/ingest/message.c and the parser files beside it), the batch
 *		writer (ingest_batch.c) and the WebSocket/HTTP server of the ingest
 *		worker (src/ingest/server.c and beside it, ingest_worker.c).  See
 *		src/ingest/README.md.
 *
 * The parts meet in one data structure, the IngestBatch: the server and
 * logagg.ingest() parse messages into it (outside any transaction for the
 * worker), and the batch writer stores it in one transaction.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOGAGG_INGEST_H
#define LOGAGG_INGEST_H

#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/timestamp.h"

#include "logagg.h"

/* Longest stream id of the protocol (?stream=ID). */
#define INGEST_MAX_STREAM_LEN	128
/* Longest source name (logagg_valid_source_name, the sources.name check). */
#define INGEST_MAX_SOURCE_LEN	128
/* Longest forward_sources pattern list (the sources table's check). */
#define INGEST_MAX_FORWARD_SOURCES_LEN	256
/*
 * How many bytes of a rejected record logagg.rejected keeps (raw_bytes;
 * raw_length and raw_sha256 describe the whole record when it is cut).
 */
#define INGEST_REJECT_RAW_BYTES	(64 * 1024)
/* Longest reject reason (cut at a character boundary). */
#define INGEST_REJECT_REASON_BYTES	256
/* How much of a plain-text line's start is read for its level, status and time */
#define INGEST_DETECT_SCAN_BYTES	1024
/* Deepest JSON nesting accepted (deeper frames are refused, not parsed). */
#define INGEST_MAX_JSON_DEPTH	64

/* One accepted record, ready to be classified and stored. */
typedef struct IngestRecord
{
	TimestampTz ts;
	TimestampTz received_at;
	char	   *source;
	char	   *level;			/* normalised, or NULL */
	bool		has_status;
	int			status;
	char	   *message;
	char	   *trace_id;
	char	   *span_id;
	const char *stream;			/* NULL when the connection has none */
	bool		has_seq;
	int64		seq;
	char	   *attrs;			/* JSON object text, or NULL */
	bool		attrs_flat;		/* attrs is text the scanner checked: see
								 * ingest_flat_attrs_jsonb */
	uint8		text_ready;		/* INGEST_TEXT_* bits: that string is the data
								 * of a text varlena (header just before it) */
	const char *peer;			/* the origin's peer (lives through the store) */
	/* the origin's refused callback and its arg (see IngestOrigin) */
	void		(*refused) (void *arg, const struct IngestRecord *rec, const char *reason);
	void	   *origin_arg;
} IngestRecord;

#define INGEST_TEXT_SOURCE		0x01
#define INGEST_TEXT_MESSAGE		0x02
#define INGEST_TEXT_TRACE_ID	0x04
#define INGEST_TEXT_SPAN_ID		0x08
/* The text datum whose data a text_ready string is. */
#define INGEST_TEXT_OF(str)		PointerGetDatum((str) - VARHDRSZ)

/*
 * One refused record (an NDJSON line, an array element, or a whole
 * message), for logagg.rejected.
 */
typedef struct IngestReject
{
	TimestampTz received_at;
	const char *peer;			/* may be shared with other rejects */
	const char *source;			/* may be shared with other rejects */
	const char *stream;			/* NULL when the connection has none */
	const char *reason;			/* valid text, may be shared */
	bool		has_seq;
	int64		seq;
	char	   *raw;			/* the first raw_len bytes of the record */
	int			raw_len;		/* at most INGEST_REJECT_RAW_BYTES */
	int			raw_text_len;	/* raw[0..raw_text_len) is valid text in the
								 * database encoding (the rejected.raw
								 * column); -1: it is not text (NULL) */
	int64		raw_length;		/* length of the whole record */
	uint8	   *raw_sha256;		/* SHA-256 of the whole record when cut,
								 * else NULL */
} IngestReject;

/* A stream whose last_seq the batch advances. */
typedef struct IngestStreamUpdate
{
	const char *stream;
	const char *source;
	int64		last_seq;
} IngestStreamUpdate;

typedef struct IngestBatch
{
	MemoryContext cxt;			/* everything below lives here */
	IngestRecord *records;
	int			nrecords;
	int			maxrecords;
	IngestReject *rejects;
	int			nrejects;
	int			maxrejects;
	IngestStreamUpdate *streams;
	int			nstreams;
	int			maxstreams;
	Size		bytes;			/* input bytes of the records held */
	/* once stored: each record's id (0: refused) and severity, for the tail */
	int64	   *stored_ids;
	uint8	   *stored_sevs;
	char	   *last_source;	/* batch copy of the last token source */
} IngestBatch;

/* Results of storing a batch. */
typedef struct IngestResult
{
	uint64		rows;
	uint64		rejects;
	uint64		alerts_queued;
} IngestResult;

/*
 * What parsing a message needs to know about where it came from.  The
 * per-record outcome is reported through the callbacks, so the server can
 * account acks and error frames per connection.
 */
typedef struct IngestOrigin
{
	const char *peer;
	const char *source;			/* fixed by the token; NULL = trust the record */
	bool		forwarder;		/* a forwarding token: records name their own
								 * source (else source), see record.c */
	const char *forward_sources;	/* forwarder: the globs those names must
									 * match (sources.forward_sources); NULL:
									 * any valid name */
	const char *stream;			/* batch-lifetime copy, or NULL */
	TimestampTz received_at;
	void	   *arg;			/* for the callbacks */
	/*
	 * seq accepted?  Return false to drop the record: as a duplicate, or,
	 * with *reason set, as a rejected record.
	 */
	bool		(*accept_seq) (void *arg, int64 seq, const char **reason);
	void		(*accepted) (void *arg, const IngestRecord *rec);
	void		(*rejected) (void *arg, const char *reason, bool has_seq, int64 seq);

	/*
	 * A record that accepted() reported could not be stored after all (it
	 * failed inside the batch's transaction, see ingest_batch_store) and
	 * went to logagg.rejected instead.  Called inside that transaction,
	 * before it commits.
	 */
	void		(*refused) (void *arg, const IngestRecord *rec, const char *reason);

	/*
	 * Does the record's source want plain-text lines read for their level,
	 * status and time (logagg.sources.detect)?  NULL: yes.
	 */
	bool		(*detects) (const char *source);
} IngestOrigin;

/*
 * How far parsing a message got: a message of many records may be spread
 * over batches (ingest_parse_message_part).  Zeroed for a new message.
 */
typedef struct IngestParsePos
{
	int			offset;			/* where to go on */
	bool		started;		/* the message was looked at as a whole */
	bool		text_checked;	/* all of it is valid text */
	bool		in_array;		/* offset is in an array's elements */
} IngestParsePos;

/* tail_ring.c: the stored records of a committed batch, to the live tail */
extern void logagg_tail_publish(IngestBatch *batch, const int64 *ids, const uint8 *sevs);

/* ingest/batch_mem.c */
extern IngestBatch *ingest_batch_create(MemoryContext parent);
extern void ingest_batch_reset(IngestBatch *batch);
extern void *ingest_batch_grow(IngestBatch *batch, void *array, int *max, Size elemsize);
extern char *ingest_batch_strdup(IngestBatch *batch, const char *s);
extern void ingest_batch_add_stream(IngestBatch *batch, const char *stream,
									const char *source, int64 last_seq);

/* ingest/message.c */
extern void ingest_parse_message(IngestBatch *batch, const IngestOrigin *origin,
								 char *data, int len);
extern bool ingest_parse_message_part(IngestBatch *batch, const IngestOrigin *origin,
									  char *data, int len, IngestParsePos *pos,
									  int max_units);

/* ingest/flat_attrs.c */
extern Datum ingest_flat_attrs_jsonb(const char *attrs);

/* ingest_citus.c: when logagg.logs is a Citus distributed table */
extern uint64 logagg_insert_logs_distributed(IngestBatch *batch, const int *idx, int n,
											 const int64 *ids, const uint8 *sevs);

/* ingest_batch.c */
extern void ingest_batch_store(IngestBatch *batch, IngestResult *result);
extern int64 ingest_stream_last_seq(const char *stream, char **source);
extern bool ingest_ts_in_window(TimestampTz ts, TimestampTz received_at,
								char *reason, int reasonlen);

/* ingest/server.c, input.c, commit.c (the worker's side of the server) */
extern void ingest_server_start(void);
extern const char *ingest_listen_address(int port, const char *who, const char *port_guc,
										 bool *ipv4);
struct lws_context_creation_info;
extern bool ingest_tls_options(struct lws_context_creation_info *info);
extern int	ingest_server_fd(void);
extern long ingest_server_timeout_ms(void);
extern void ingest_server_service(void);
extern void ingest_server_stop(void);
extern bool ingest_server_needs_flush(TimestampTz *deadline);
extern void ingest_server_flush(void);
extern void ingest_server_process_input(void);
extern bool ingest_server_batch_full(void);

#endif							/* LOGAGG_INGEST_H */
