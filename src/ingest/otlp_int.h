/*-------------------------------------------------------------------------
 *
 * otlp_int.h
 *		What the files of the OpenTelemetry door share (otlp.c, otlp_json.c):
 *		the generated protobuf-c types and the JSON reader's interface.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOGAGG_INGEST_OTLP_INT_H
#define LOGAGG_INGEST_OTLP_INT_H

#include "postgres.h"

#include <protobuf-c/protobuf-c.h>

#include "opentelemetry/proto/collector/logs/v1/logs_service.pb-c.h"
#include "google/rpc/status.pb-c.h"

/*
 * Deepest nesting of messages (protobuf) or objects (JSON) a request may
 * have.  A log record sits 4 levels down; each level of a nested
 * attribute value (AnyValue -> KeyValueList -> KeyValue) takes 3 more.
 * Bounded because unpacking and printing recurse.
 */
#define OTLP_MAX_DEPTH			100

/* Where the objects of one message type are in a JSON text, in order. */
typedef struct OtlpJsonSpans
{
	const ProtobufCMessageDescriptor *desc;
	int			n;
	int			max;
	int		   *start;
	int		   *len;
} OtlpJsonSpans;

extern ProtobufCMessage *otlp_message_from_json(const ProtobufCMessageDescriptor *desc,
												char *text, int len, OtlpJsonSpans *spans,
												const char **why);

#endif							/* LOGAGG_INGEST_OTLP_INT_H */
