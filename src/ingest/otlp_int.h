/*-------------------------------------------------------------------------
 *
 * otlp_int.h
 *		What the files of the OpenTelemetry door share (otlp.c, otlp_json.c):
 *		the generated protobuf-c types, what the JSON reader makes of a body,
 *		and the pieces of the mapping both encodings use.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOGAGG_INGEST_OTLP_INT_H
#define LOGAGG_INGEST_OTLP_INT_H

#include "postgres.h"

#include <protobuf-c/protobuf-c.h>

#include "lib/stringinfo.h"

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"
#include "google/rpc/status.pb-c.h"

/*
 * Deepest nesting of messages (protobuf) or objects (JSON) a request may
 * have.  A log record sits 4 levels down; each level of a nested
 * attribute value (AnyValue -> KeyValueList -> KeyValue) takes 3 more.
 * Bounded because unpacking and printing recurse.
 */
#define OTLP_MAX_DEPTH			100

/* What a JSON AnyValue was (a record's body, its status attribute). */
#define OTLP_JSON_NOT_SET	0
#define OTLP_JSON_STRING	's'
#define OTLP_JSON_NUMBER	'n'	/* an integer or a double */
#define OTLP_JSON_BOOL		'b'
#define OTLP_JSON_COMPOSITE 'j'	/* an array, a kvlist, bytes: JSON text */

typedef struct OtlpJsonValue
{
	char		kind;
	char	   *text;			/* a string's value, or the value's JSON text */
} OtlpJsonValue;

/* A log record of a JSON body, as otlp_json.c read it. */
typedef struct OtlpJsonRecord
{
	int			start;			/* its text in the body */
	int			len;
	int			scope;			/* its ScopeLogs in OtlpJsonBody.scopes */
	uint64		time_ns;
	uint64		observed_ns;
	int32		severity_number;
	char	   *severity_text;
	OtlpJsonValue body;
	bool		has_status;		/* it has a status attribute */
	OtlpJsonValue status;		/* ... whose value this is */
	char	   *trace_id;		/* lower-case hex, or NULL */
	char	   *span_id;
	char	   *attrs;			/* its attributes (the status one left out)
								 * and event.name, as "k":v,... */
	int			attrs_len;
} OtlpJsonRecord;

typedef struct OtlpJsonScope
{
	int			resource;		/* its ResourceLogs in OtlpJsonBody.resources */
	char	   *attrs;			/* attributes, otel.scope.name and .version */
	int			attrs_len;
} OtlpJsonScope;

typedef struct OtlpJsonResource
{
	char	   *attrs;
	int			attrs_len;
	char	   *service_name;	/* a string service.name attribute, or NULL */
} OtlpJsonResource;

/* An ExportLogsServiceRequest of the JSON encoding, read. */
typedef struct OtlpJsonBody
{
	OtlpJsonRecord *records;
	int			nrecords;
	int			maxrecords;
	OtlpJsonScope *scopes;
	int			nscopes;
	int			maxscopes;
	OtlpJsonResource *resources;
	int			nresources;
	int			maxresources;
} OtlpJsonBody;

struct RecState;

/* otlp_json.c */
extern OtlpJsonBody *otlp_json_read(char *text, int len, const char **why);
extern void otlp_json_map_record(const OtlpJsonBody *b, int k, struct RecState *st);

/* otlp.c: what both encodings' mappings use */
extern char *otlp_ns_to_rfc3339(uint64 ns);
extern void otlp_append_double(StringInfo buf, double d);
extern void otlp_compose_attrs(struct RecState *st, const char *res, int reslen,
							   const char *scope, int scopelen, const char *own, int ownlen);

#endif							/* LOGAGG_INGEST_OTLP_INT_H */
