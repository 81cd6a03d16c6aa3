/*-------------------------------------------------------------------------
 *
 * parse_int.h
 *		What the files of the ingest parser (src/ingest/) share: the state
 *		one record's parse collects, and the functions one file offers the
 *		others.
 *
 * Why a shared header: a message goes through several steps in files of
 * their own -- split into units (message.c), each unit read by the fast
 * scanner (scanner.c) or PostgreSQL's JSON parser (json_path.c), the
 * collected fields checked (record.c), records and rejects added to the
 * batch (record.c, reject.c).  Both parse paths fill the same RecState,
 * so that a record gets the same outcome whichever path read it; that
 * state is declared here, once.  The parser's interface to the rest of
 * logagg is ingest.h.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOGAGG_INGEST_PARSE_INT_H
#define LOGAGG_INGEST_PARSE_INT_H

#include "postgres.h"

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"

#include "ingest.h"

/* Fields of wire protocol v1 that map to columns. */
typedef enum RecField
{
	F_ATTR = 0,					/* anything else: kept in attrs */
	F_TS,
	F_SOURCE,
	F_LEVEL,
	F_SEVERITY_NUMBER,
	F_STATUS,
	F_MESSAGE,
	F_TRACE_ID,
	F_SPAN_ID,
	F_SEQ,
	F_NUM_FIELDS
} RecField;

/*
 * Both parse passes track nesting the same way: their states start with
 * this, so the same depth callbacks serve both.
 */
typedef struct DepthState
{
	JsonLexContext *lex;
	int			depth;			/* open objects and arrays */
} DepthState;

/* What one record's parse collects. */
typedef struct RecState
{
	DepthState	d;
	RecField	cur;			/* field whose value is being parsed */
	char	   *cur_start;		/* start of that value's text */
	bool		cur_scalar;		/* value was a scalar */
	char	   *val[F_NUM_FIELDS];	/* scalar token text (NULL = absent) */
	JsonTokenType type[F_NUM_FIELDS];
	bool		nonscalar[F_NUM_FIELDS];
	char	   *raw_message;	/* message given as an object/array */
	StringInfoData attrs;
	bool		attrs_flat;		/* attrs made by the scanner from checked text
								 * (nested values too): see
								 * ingest_flat_attrs_jsonb */
	char	   *attrs_text;		/* scanner: final attrs text, in the batch */
	bool		in_batch;		/* scanner: val[], raw_message, attrs_text are
								 * already in the batch's memory */
	const char *bad;			/* reason to reject, found while parsing */
	/* which of a field's names holds it (ingest_field_claim) */
	uint8		rank[F_NUM_FIELDS];	/* its rank; 0 = none */
	const char *held[F_NUM_FIELDS];	/* its value's raw JSON text, in the unit */
	int			heldlen[F_NUM_FIELDS];
} RecState;

/* ingest_field_claim: who keeps a field a record names more than once */
typedef enum FieldClaim
{
	FIELD_TAKE,					/* the new name */
	FIELD_LOSE,					/* the holder; the new name goes to attrs */
	FIELD_DISPLACE				/* the new name; the holder goes to attrs */
} FieldClaim;

/* JSON whitespace and digits, as both parse paths and the framing see them */
#define IS_WS(c) ((c) == ' ' || (c) == '\t' || (c) == '\n' || (c) == '\r')
#define IS_DIGIT(c) ((c) >= '0' && (c) <= '9')

/* The first non-blank at or after p (or end). */
static inline char *
skip_ws(char *p, char *end)
{
	while (p < end && IS_WS(*p))
		p++;
	return p;
}

/*
 * The string whose opening quote is at p: returns the position after its
 * closing quote, or NULL (give up).  *has_esc tells whether it holds
 * (simple, one-character) escapes.
 */
/* timestamp.c */
extern bool ingest_parse_timestamp(const char *s, int len, TimestampTz *result);
extern bool ingest_epoch_to_timestamp(const char *token, TimestampTz *result);

/* detect.c */
typedef struct DetectResult
{
	const char *level;			/* canonical level name, or NULL */
	bool		has_status;
	int			status;
	bool		has_ts;
	TimestampTz ts;
} DetectResult;
extern void ingest_detect_line(const char *line, int len, TimestampTz received_at,
							   DetectResult *out);

/* input_checks.c */
extern int	ingest_json_nesting_depth(const char *s, int len);
extern int	ingest_json_nesting_depth_limit(const char *s, int len, int limit);
extern bool ingest_number_fits_numeric(const char *token);
extern bool ingest_is_hex(const char *s);
extern bool ingest_parse_int64(const char *s, int64 *out);

/* record.c */
extern RecField ingest_field_of(const char *name, int *rank);
extern RecField ingest_field_of_len(const char *name, int len, int *rank);
extern const char *ingest_field_name(int rank);
extern FieldClaim ingest_field_claim(const RecState *st, RecField f, int rank,
									  bool is_null);
extern void ingest_finish_record(IngestBatch *batch, const IngestOrigin *origin,
								 RecState *st, char *text, int len);
/* writes a decoded record's text (for logagg.rejected) into buf */
typedef void (*IngestRawFn) (void *arg, StringInfo buf);
extern void ingest_finish_decoded_record(IngestBatch *batch, const IngestOrigin *origin,
										 RecState *st, TimestampTz ts,
										 IngestRawFn raw_fn, void *raw_arg, int len);
extern void ingest_finish_record_raw(IngestBatch *batch, const IngestOrigin *origin,
									 RecState *st, char *text, int len, bool is_text);

/* forward.c */
extern const char *ingest_forward_check_source(const IngestOrigin *origin, const char *v,
											   JsonTokenType t, char *buf, int buflen);
extern const char *ingest_forward_attr_source(const IngestOrigin *origin, const RecState *st,
											  char **source, char *buf, int buflen);

/* reject.c */
extern void ingest_add_reject_bytes(IngestBatch *batch, const IngestOrigin *origin,
									const char *reason, const char *raw, int rawlen,
									bool is_text, bool has_seq, int64 seq);
extern void ingest_add_reject(IngestBatch *batch, const IngestOrigin *origin,
							  const char *reason, const char *raw, int rawlen,
							  bool has_seq, int64 seq);

/* json_path.c */
extern void ingest_parse_record(IngestBatch *batch, const IngestOrigin *origin,
								char *text, int len);
extern pg_wchar ingest_unconvertible_escape(const char *text, int len);

/* scanner.c */
extern bool ingest_fast_unit(IngestBatch *batch, const IngestOrigin *origin,
							 char *text, int len, bool may_be_several, bool *several);
extern bool ingest_scan_record(char **pp, char *end, RecState *st, StringInfo abuf,
							   int depth, MemoryContext scratch);
extern char *ingest_json_decode_string(const char *s, const char *e, bool has_esc);
extern int	ingest_hex4(const char *p);
extern char *ingest_scan_number(char *p, char *end, bool *too_big);
extern char *ingest_scan_literal(char *p, char *end, JsonTokenType *type);

#endif							/* LOGAGG_INGEST_PARSE_INT_H */
