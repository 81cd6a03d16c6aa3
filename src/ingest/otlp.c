/*-------------------------------------------------------------------------
 *
 * otlp.c
 *		The OpenTelemetry door on the ingest port: POST /v1/logs (OTLP/HTTP,
 *		protobuf or JSON), each log record mapped to a logagg record and
 *		checked like every other record, and the replies the OTLP/HTTP
 *		specification asks for, in the request's encoding.
 *
 * A /v1/logs body is queued like any POST body (gzip already undone by
 * input.c) and goes through the same batches, COPY and commit.  Here it is
 * decoded as a whole -- protobuf by protobuf-c, JSON in one pass by
 * otlp_json.c into its records' mapped fields and attribute texts (no
 * protobuf-c structures) -- and its records are mapped one at a time into
 * the batch until the batch is full; the next round goes on where this
 * one stopped.  Each record becomes the RecState the JSON parsers fill,
 * so ingest_finish_record gives it the same checks and reject reasons.
 *
 * Mapping (docs/shippers.md has the table):
 *	time_unix_nano, else observed_time_unix_nano, else the receive time -> ts
 *	severity_text -> level; severity_number -> level when there is no text
 *	body: a string -> message; any other value -> its JSON text
 *	attribute http.response.status_code, else http.status_code -> status
 *	trace_id, span_id -> hex
 *	resource, scope and record attributes -> attrs, under their own names
 *	(a record's attribute wins over a scope's or resource's of the same
 *	name), with otel.scope.name, otel.scope.version and event.name
 *	resource attribute service.name -> the record's source, unless the
 *	token fixes the source (it stays in attrs)
 *
 * Which request a connection is serving (the OtlpRequest) is set up in
 * an lws callback, so it is malloc'd; decoding runs in the main loop.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/base64.h"
#include "common/shortest_dec.h"
#include "datatype/timestamp.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "ingest/otlp_int.h"
#include "ingest/parse_int.h"
#include "ingest/server_int.h"

typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceRequest ExportRequest;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsServiceResponse ExportResponse;
typedef Opentelemetry__Proto__Collector__Logs__V1__ExportLogsPartialSuccess PartialSuccess;
typedef Opentelemetry__Proto__Logs__V1__ResourceLogs ResourceLogs;
typedef Opentelemetry__Proto__Logs__V1__ScopeLogs ScopeLogs;
typedef Opentelemetry__Proto__Logs__V1__LogRecord LogRecord;
typedef Opentelemetry__Proto__Common__V1__AnyValue AnyValue;
typedef Opentelemetry__Proto__Common__V1__KeyValue KeyValue;

#define REQUEST_DESC	opentelemetry__proto__collector__logs__v1__export_logs_service_request__descriptor

/* gRPC status codes of the google.rpc.Status bodies */
#define GRPC_INVALID_ARGUMENT	3
#define GRPC_NOT_FOUND			5
#define GRPC_RESOURCE_EXHAUSTED 8
#define GRPC_UNIMPLEMENTED		12
#define GRPC_INTERNAL			13
#define GRPC_UNAVAILABLE		14
#define GRPC_UNAUTHENTICATED	16

/*
 * What protobuf-c may allocate while unpacking a body of N bytes:
 * OTLP_UNPACK_BASE + OTLP_UNPACK_FACTOR * N.  A real request unpacks to a
 * few times its size; a hostile one (millions of empty messages) is
 * refused with 413 instead of taking the worker's memory.
 */
#define OTLP_UNPACK_BASE		(64 * 1024 * 1024)
#define OTLP_UNPACK_FACTOR		16

/* Where the messages of one type (records) are in a protobuf body, in order. */
typedef struct OtlpSpans
{
	const ProtobufCMessageDescriptor *desc;
	int			n;
	int			max;
	int		   *start;
	int		   *len;
} OtlpSpans;

struct OtlpRequest
{
	bool		json;			/* application/json, else protobuf */
	/* the outcome of the request as a whole (malloc'd) */
	int			fail_status;
	char	   *fail_message;
	char	   *first_reject;	/* reason of the first rejected record */
	/* main loop only: the decoded request and where the mapping is */
	MemoryContext cxt;
	MemoryContext rec_cxt;		/* one record's mapping */
	ExportRequest *req;			/* protobuf */
	OtlpSpans	spans;			/* protobuf: each record's bytes */
	OtlpJsonBody *jbody;		/* JSON */
	int			jnext;			/* JSON: the next record to map */
	int			ri,
				si,
				li,
				nrec;
	int			res_ri;			/* resource whose attrs res_attrs holds */
	int			scope_ri,
				scope_si;		/* scope whose attrs scope_attrs holds */
	StringInfoData res_attrs;	/* "k":v,... (no braces) */
	StringInfoData scope_attrs;
	const char *res_bad;		/* the resource's strings are not valid text */
	const char *scope_bad;
	char	   *service_name;
};

/* Contexts of connections freed in a callback, deleted by the main loop. */
static MemoryContext *dead_cxts = NULL;
static int	ndead = 0,
			maxdead = 0;

/* ---- replies (callback-safe: no palloc) ---- */

static int
grpc_code(int status)
{
	switch (status)
	{
		case HTTP_STATUS_UNAUTHORIZED:
			return GRPC_UNAUTHENTICATED;
		case HTTP_STATUS_NOT_FOUND:
			return GRPC_NOT_FOUND;
		case HTTP_STATUS_METHOD_NOT_ALLOWED:
			return GRPC_UNIMPLEMENTED;
		case HTTP_STATUS_REQ_ENTITY_TOO_LARGE:
		case 429:
			return GRPC_RESOURCE_EXHAUSTED;
		case HTTP_STATUS_SERVICE_UNAVAILABLE:
			return GRPC_UNAVAILABLE;
		case HTTP_STATUS_INTERNAL_SERVER_ERROR:
			return GRPC_INTERNAL;
		default:
			return GRPC_INVALID_ARGUMENT;
	}
}

/* MESSAGE as a JSON string into DST (at most SIZE bytes, cut between characters). */
static void
json_string(char *dst, size_t size, const char *message)
{
	size_t		n = 0;

	dst[n++] = '"';
	for (const unsigned char *p = (const unsigned char *) message; *p && n + 8 < size; p++)
	{
		if (*p == '"' || *p == '\\')
		{
			dst[n++] = '\\';
			dst[n++] = *p;
		}
		else if (*p < 0x20)
			n += snprintf(dst + n, size - n, "\\u%04x", *p);
		else if (*p >= 0x80 && n + 8 + pg_utf_mblen(p) >= size)
			break;
		else
			dst[n++] = *p;
	}
	dst[n++] = '"';
	dst[n] = '\0';
}

/*
 * A google.rpc.Status reply (the OTLP/HTTP error body) in the request's
 * encoding.  Callback-safe: packing protobuf-c into a buffer allocates
 * nothing.
 */
static int
status_reply(Conn *c, int status, const char *message)
{
	Google__Rpc__Status s = GOOGLE__RPC__STATUS__INIT;
	char		buf[2048];
	char		msg[1024];

	if (c->otlp == NULL || c->otlp->json)
	{
		char		quoted[1800];

		json_string(quoted, sizeof(quoted), message);
		snprintf(buf, sizeof(buf), "{\"code\": %d, \"message\": %s}", grpc_code(status), quoted);
		return ingest_http_reply(c, status, "application/json", buf);
	}
	/* cut between characters, to fit the buffer */
	strlcpy(msg, message, sizeof(msg));
	if (strlen(message) >= sizeof(msg))
		msg[pg_mbcliplen(msg, strlen(msg), sizeof(msg) - 8)] = '\0';
	s.code = grpc_code(status);
	s.message = msg;
	return ingest_http_reply_len(c, status, "application/x-protobuf", buf,
								 protobuf_c_message_pack(&s.base, (uint8_t *) buf));
}

/* A refusal of the whole request, made in a callback (411, 413, 415, 503...). */
int
ingest_otlp_refuse(Conn *c, int status, const char *message)
{
	return status_reply(c, status, message);
}

int
ingest_otlp_unauthorized(Conn *c)
{
	return status_reply(c, HTTP_STATUS_UNAUTHORIZED,
						"missing, unknown or revoked token: send \"Authorization: Bearer TOKEN\", HTTP Basic with the token as password, or ?token=");
}

static void
request_reset(OtlpRequest *o)
{
	free(o->fail_message);
	free(o->first_reject);
	o->fail_message = o->first_reject = NULL;
	o->fail_status = 0;
}

void
ingest_otlp_free(Conn *c)
{
	OtlpRequest *o = c->otlp;

	if (o == NULL)
		return;
	request_reset(o);
	if (o->cxt)
	{
		/* deleted by the main loop (this may run in a callback) */
		if (ndead + 2 > maxdead)
		{
			int			n = maxdead ? maxdead * 2 : 16;
			MemoryContext *p = realloc(dead_cxts, n * sizeof(MemoryContext));

			if (p != NULL)
			{
				dead_cxts = p;
				maxdead = n;
			}
		}
		if (ndead + 2 <= maxdead)
		{
			dead_cxts[ndead++] = o->cxt;
			dead_cxts[ndead++] = o->rec_cxt;
		}
	}
	free(o);
	c->otlp = NULL;
}

/* The media type of the request, without parameters: 1 JSON, 0 protobuf, -1 other. */
static int
content_type(struct lws *wsi)
{
	char		ct[128];
	int			n = lws_hdr_copy(wsi, ct, sizeof(ct), WSI_TOKEN_HTTP_CONTENT_TYPE);
	char	   *semi;

	if (n <= 0)
		return -1;
	if ((semi = strchr(ct, ';')) != NULL)
		*semi = '\0';
	for (n = strlen(ct); n > 0 && (ct[n - 1] == ' ' || ct[n - 1] == '\t'); n--)
		ct[n - 1] = '\0';
	if (pg_strcasecmp(ct, "application/x-protobuf") == 0 ||
		pg_strcasecmp(ct, "application/protobuf") == 0)
		return 0;
	if (pg_strcasecmp(ct, "application/json") == 0)
		return 1;
	return -1;
}

/*
 * Route an OTLP request.  Returns 1 when URI is not /v1/logs, else what
 * the lws callback returns (c->http_status set: refused at once; else the
 * caller checks the token and reads the body).
 */
int
ingest_otlp_route(struct lws *wsi, Conn *c, const char *uri, bool is_post)
{
	int			ct;

	if (strcmp(uri, "/v1/logs") != 0)
		return 1;
	if (c->otlp == NULL && (c->otlp = calloc(1, sizeof(OtlpRequest))) == NULL)
		return -1;
	request_reset(c->otlp);
	ct = content_type(wsi);
	c->otlp->json = ct != 0;
	if (!is_post)
		return status_reply(c, HTTP_STATUS_METHOD_NOT_ALLOWED,
							"/v1/logs takes POST requests (OTLP/HTTP logs)");
	if (ct < 0)
	{
		/* read and keep the body all the same: logagg.rejected shows what came */
		c->otlp->fail_status = HTTP_STATUS_UNSUPPORTED_MEDIA_TYPE;
		c->otlp->fail_message = strdup("Content-Type must be application/x-protobuf or application/json (OTLP/HTTP)");
		if (c->otlp->fail_message == NULL)
			return -1;
	}
	return 0;
}

/* ---- mapping one record (main loop) ---- */

static const char *const not_text = "a string of the record, its scope or its resource is not valid UTF-8";

void
otlp_append_double(StringInfo buf, double d)
{
	char		s[DOUBLE_SHORTEST_DECIMAL_LEN];

	if (isnan(d))
		appendStringInfoString(buf, "\"NaN\"");
	else if (isinf(d))
		appendStringInfoString(buf, d > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	else
	{
		double_to_shortest_decimal_buf(d, s);
		appendStringInfoString(buf, s);
	}
}

static bool
valid_text(const char *s)
{
	return s == NULL || pg_verifymbstr(s, strlen(s), true);
}

static bool append_kvs(StringInfo buf, KeyValue **kvs, size_t n, const KeyValue *skip);

/* An AnyValue as JSON; false if one of its strings is not valid text. */
static bool
append_any(StringInfo buf, const AnyValue *v)
{
	switch (v ? v->value_case : OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE__NOT_SET)
	{
		case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
			if (!valid_text(v->string_value))
				return false;
			escape_json(buf, v->string_value ? v->string_value : "");
			return true;
		case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
			appendStringInfoString(buf, v->bool_value ? "true" : "false");
			return true;
		case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
			appendStringInfo(buf, INT64_FORMAT, (int64) v->int_value);
			return true;
		case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
			otlp_append_double(buf, v->double_value);
			return true;
		case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_ARRAY_VALUE:
			appendStringInfoChar(buf, '[');
			for (size_t i = 0; v->array_value && i < v->array_value->n_values; i++)
			{
				if (i > 0)
					appendStringInfoChar(buf, ',');
				if (!append_any(buf, v->array_value->values[i]))
					return false;
			}
			appendStringInfoChar(buf, ']');
			return true;
		case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_KVLIST_VALUE:
			{
				StringInfoData sub;
				bool		ok;

				initStringInfo(&sub);
				ok = v->kvlist_value == NULL ||
					append_kvs(&sub, v->kvlist_value->values, v->kvlist_value->n_values, NULL);
				appendStringInfoChar(buf, '{');
				appendBinaryStringInfo(buf, sub.data, sub.len);
				appendStringInfoChar(buf, '}');
				pfree(sub.data);
				return ok;
			}
		case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BYTES_VALUE:
			{
				int			n = pg_b64_enc_len(v->bytes_value.len);
				char	   *s = palloc(n + 1);

				n = pg_b64_encode((const char *) v->bytes_value.data, v->bytes_value.len, s, n);
				s[Max(n, 0)] = '\0';
				escape_json(buf, s);
				return true;
			}
		default:
			/* empty, or a profiles-only string table index */
			appendStringInfoString(buf, "null");
			return true;
	}
}

/* key/value pairs as "k":v,... appended to BUF (comma first if needed) */
static bool
append_kvs(StringInfo buf, KeyValue **kvs, size_t n, const KeyValue *skip)
{
	bool		ok = true;

	for (size_t i = 0; i < n; i++)
	{
		if (kvs[i] == skip)
			continue;
		if (buf->len > 0)
			appendStringInfoChar(buf, ',');
		if (!valid_text(kvs[i]->key))
			ok = false;
		escape_json(buf, kvs[i]->key ? kvs[i]->key : "");
		appendStringInfoChar(buf, ':');
		if (!append_any(buf, kvs[i]->value))
			ok = false;
	}
	return ok;
}

static void
append_named_string(StringInfo buf, const char *name, const char *value)
{
	if (value == NULL || value[0] == '\0')
		return;
	if (buf->len > 0)
		appendStringInfoChar(buf, ',');
	escape_json(buf, name);
	appendStringInfoChar(buf, ':');
	escape_json(buf, value);
}

/* The resource's attrs (and service.name) for its records. */
static void
enter_resource(OtlpRequest *o, const ResourceLogs *rl)
{
	MemoryContext old = MemoryContextSwitchTo(o->cxt);
	const Opentelemetry__Proto__Resource__V1__Resource *r = rl->resource;

	if (o->res_attrs.data == NULL)
		initStringInfo(&o->res_attrs);
	resetStringInfo(&o->res_attrs);
	o->service_name = NULL;
	o->res_bad = NULL;
	if (r && !append_kvs(&o->res_attrs, r->attributes, r->n_attributes, NULL))
		o->res_bad = not_text;
	for (size_t i = 0; r && i < r->n_attributes; i++)
	{
		const AnyValue *v = r->attributes[i]->value;

		if (r->attributes[i]->key && strcmp(r->attributes[i]->key, "service.name") == 0 && v &&
			v->value_case == OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE)
			o->service_name = v->string_value;
	}
	o->res_ri = o->ri;
	MemoryContextSwitchTo(old);
}

/* The scope's name, version and attrs for its records. */
static void
enter_scope(OtlpRequest *o, const ScopeLogs *sl)
{
	MemoryContext old = MemoryContextSwitchTo(o->cxt);
	const Opentelemetry__Proto__Common__V1__InstrumentationScope *s = sl->scope;

	if (o->scope_attrs.data == NULL)
		initStringInfo(&o->scope_attrs);
	resetStringInfo(&o->scope_attrs);
	o->scope_bad = NULL;
	if (s)
	{
		if (!valid_text(s->name) || !valid_text(s->version) ||
			!append_kvs(&o->scope_attrs, s->attributes, s->n_attributes, NULL))
			o->scope_bad = not_text;
		else
		{
			append_named_string(&o->scope_attrs, "otel.scope.name", s->name);
			append_named_string(&o->scope_attrs, "otel.scope.version", s->version);
		}
	}
	o->scope_ri = o->ri;
	o->scope_si = o->si;
	MemoryContextSwitchTo(old);
}

/* The next record of the request, or NULL; resource and scope entered. */
static LogRecord *
next_record(OtlpRequest *o)
{
	ExportRequest *req = o->req;

	while (o->ri < (int) req->n_resource_logs)
	{
		ResourceLogs *rl = req->resource_logs[o->ri];

		if (o->res_ri != o->ri)
			enter_resource(o, rl);
		while (o->si < (int) rl->n_scope_logs)
		{
			ScopeLogs  *sl = rl->scope_logs[o->si];

			if (o->scope_ri != o->ri || o->scope_si != o->si)
				enter_scope(o, sl);
			if (o->li < (int) sl->n_log_records)
				return sl->log_records[o->li++];
			o->si++;
			o->li = 0;
		}
		o->ri++;
		o->si = o->li = 0;
	}
	return NULL;
}

/* nanoseconds since the epoch as RFC 3339 text, to the microsecond */
char *
otlp_ns_to_rfc3339(uint64 ns)
{
	TimestampTz ts = (TimestampTz) (ns / 1000) -
		(TimestampTz) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY;
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(ts, NULL, &tm, &fsec, NULL, NULL) != 0)
		return NULL;
	return psprintf("%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", tm.tm_year, tm.tm_mon,
					tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec, (int) fsec);
}

static char *
hex_of(const ProtobufCBinaryData *b)
{
	static const char digits[] = "0123456789abcdef";
	char	   *s;

	if (b->len == 0)
		return NULL;
	s = palloc(b->len * 2 + 1);
	for (size_t i = 0; i < b->len; i++)
	{
		s[2 * i] = digits[b->data[i] >> 4];
		s[2 * i + 1] = digits[b->data[i] & 15];
	}
	s[b->len * 2] = '\0';
	return s;
}

/* The status attribute: http.response.status_code, else http.status_code. */
static const KeyValue *
status_attribute(const LogRecord *lr)
{
	const KeyValue *old = NULL;

	for (size_t i = 0; i < lr->n_attributes; i++)
	{
		const char *k = lr->attributes[i]->key;

		if (k && strcmp(k, "http.response.status_code") == 0)
			return lr->attributes[i];
		if (k && strcmp(k, "http.status_code") == 0 && old == NULL)
			old = lr->attributes[i];
	}
	return old;
}

/* A scalar AnyValue as a field's token (what the JSON parsers collect). */
static void
set_field(RecState *st, RecField f, const AnyValue *v)
{
	StringInfoData s;

	switch (v ? v->value_case : OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE__NOT_SET)
	{
		case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_STRING_VALUE:
			st->val[f] = v->string_value;
			st->type[f] = JSON_TOKEN_STRING;
			return;
		case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_INT_VALUE:
			st->val[f] = psprintf(INT64_FORMAT, (int64) v->int_value);
			st->type[f] = JSON_TOKEN_NUMBER;
			return;
		case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_BOOL_VALUE:
			st->val[f] = v->bool_value ? "true" : "false";
			st->type[f] = v->bool_value ? JSON_TOKEN_TRUE : JSON_TOKEN_FALSE;
			return;
		case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE_DOUBLE_VALUE:
			initStringInfo(&s);
			otlp_append_double(&s, v->double_value);
			st->val[f] = s.data;
			st->type[f] = s.data[0] == '"' ? JSON_TOKEN_STRING : JSON_TOKEN_NUMBER;
			return;
		case OPENTELEMETRY__PROTO__COMMON__V1__ANY_VALUE__VALUE__NOT_SET:
			return;
		default:
			/* an array, a kvlist or bytes: its JSON text */
			initStringInfo(&s);
			append_any(&s, v);
			st->nonscalar[f] = true;
			if (f == F_MESSAGE)
				st->raw_message = s.data;
			return;
	}
}

/*
 * A record's attrs: its resource's, then its scope's, then its own (which
 * win: the last of a name counts), each "k":v,... or empty.
 *
 * Text written by the door from checked values (escape_json, integers,
 * shortest-form doubles, nesting bounded by OTLP_MAX_DEPTH): without an
 * escape it is what the flat attrs reader takes (flat_attrs.c), so no
 * jsonb_in per record.  (Text that is not valid text is rejected.)
 */
void
otlp_compose_attrs(RecState *st, const char *res, int reslen, const char *scope, int scopelen,
				   const char *own, int ownlen)
{
	StringInfo	a = &st->attrs;

	appendStringInfoChar(a, '{');
	appendBinaryStringInfo(a, res, reslen);
	if (scopelen > 0)
	{
		if (a->len > 1)
			appendStringInfoChar(a, ',');
		appendBinaryStringInfo(a, scope, scopelen);
	}
	if (ownlen > 0 && a->len > 1)
		appendStringInfoChar(a, ',');
	appendBinaryStringInfo(a, own, ownlen);
	if (a->len == 1)
		resetStringInfo(a);		/* no attrs */
	st->attrs_flat = a->len > 0 && memchr(a->data, '\\', a->len) == NULL;
}

/* One log record as the RecState the record checks take. */
static void
map_record(OtlpRequest *o, const LogRecord *lr, RecState *st)
{
	const KeyValue *status = status_attribute(lr);
	uint64		ns = lr->time_unix_nano ? lr->time_unix_nano : lr->observed_time_unix_nano;

	memset(st, 0, sizeof(*st));
	initStringInfo(&st->attrs);
	if (ns != 0)
	{
		st->val[F_TS] = otlp_ns_to_rfc3339(ns);
		st->type[F_TS] = JSON_TOKEN_STRING;
		if (st->val[F_TS] == NULL)
			st->bad = "time_unix_nano is out of range";
	}
	if (o->service_name)
	{
		st->val[F_SOURCE] = o->service_name;
		st->type[F_SOURCE] = JSON_TOKEN_STRING;
	}
	if (lr->severity_text && lr->severity_text[0])
	{
		st->val[F_LEVEL] = lr->severity_text;
		st->type[F_LEVEL] = JSON_TOKEN_STRING;
	}
	if (lr->severity_number != 0)
	{
		st->val[F_SEVERITY_NUMBER] = psprintf("%d", (int) lr->severity_number);
		st->type[F_SEVERITY_NUMBER] = JSON_TOKEN_NUMBER;
	}
	set_field(st, F_MESSAGE, lr->body);
	if (status)
		set_field(st, F_STATUS, status->value);
	if ((st->val[F_TRACE_ID] = hex_of(&lr->trace_id)) != NULL)
		st->type[F_TRACE_ID] = JSON_TOKEN_STRING;
	if ((st->val[F_SPAN_ID] = hex_of(&lr->span_id)) != NULL)
		st->type[F_SPAN_ID] = JSON_TOKEN_STRING;

	{
		StringInfoData own;

		initStringInfo(&own);
		if (!append_kvs(&own, lr->attributes, lr->n_attributes, status))
			st->bad = not_text;
		append_named_string(&own, "event.name", lr->event_name);
		otlp_compose_attrs(st, o->res_attrs.data, o->res_attrs.len,
						   o->scope_attrs.data, o->scope_attrs.len, own.data, own.len);
	}
	if (!valid_text(lr->severity_text) || !valid_text(lr->event_name) ||
		(st->val[F_MESSAGE] && !valid_text(st->val[F_MESSAGE])) ||
		(st->val[F_STATUS] && !valid_text(st->val[F_STATUS])) ||
		(st->raw_message && !valid_text(st->raw_message)) || o->res_bad || o->scope_bad)
		st->bad = not_text;
	if (st->bad == not_text)
		st->val[F_SOURCE] = NULL;	/* not to be checked as a name */
}

/* ---- decoding a request (main loop) ---- */

typedef struct PbBudget
{
	MemoryContext cxt;
	Size		used;
	Size		limit;
	bool		over;
} PbBudget;

static void *
pb_alloc(void *data, size_t size)
{
	PbBudget   *b = data;

	if (b->used + size > b->limit)
	{
		b->over = true;
		return NULL;
	}
	b->used += size;
	return MemoryContextAllocExtended(b->cxt, Max(size, 1), MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
}

static void
pb_free(void *data, void *ptr)
{
	/* released with the request's memory context */
}

static bool
read_varint(const uint8 **p, const uint8 *end, uint64 *v)
{
	*v = 0;
	for (int shift = 0; shift < 64 && *p < end; shift += 7)
	{
		uint8		b = *(*p)++;

		*v |= (uint64) (b & 0x7f) << shift;
		if (!(b & 0x80))
			return true;
	}
	return false;
}

/* The bytes of one more record of the request. */
static void
otlp_add_span(OtlpSpans *sp, int start, int len)
{
	if (sp->n == sp->max)
	{
		sp->max = sp->max ? sp->max * 2 : 64;
		sp->start = sp->start ? repalloc(sp->start, sp->max * sizeof(int)) : palloc(sp->max * sizeof(int));
		sp->len = sp->len ? repalloc(sp->len, sp->max * sizeof(int)) : palloc(sp->max * sizeof(int));
	}
	sp->start[sp->n] = start;
	sp->len[sp->n] = len;
	sp->n++;
}

/*
 * Walk the protobuf wire format of a DESC message without unpacking it:
 * every length within its parent, no groups, nesting at most
 * OTLP_MAX_DEPTH (protobuf-c unpacks nested messages by recursion, so a
 * small body nested a million times deep must not reach it), and no NUL
 * byte in a string (protobuf-c's C strings would silently end there).
 */
static const char *
wire_check(const uint8 *data, size_t len, const ProtobufCMessageDescriptor *desc,
		   OtlpSpans *spans)
{
	struct
	{
		const uint8 *end;
		const ProtobufCMessageDescriptor *desc;
	}			stack[OTLP_MAX_DEPTH];
	int			sp = 0;
	const uint8 *p = data;
	static const char *const bad = "the body is not a valid protobuf ExportLogsServiceRequest (truncated, or not protobuf)";

	stack[0].end = data + len;
	stack[0].desc = desc;
	while (sp >= 0)
	{
		uint64		tag,
					n;
		const ProtobufCFieldDescriptor *f;

		if (p == stack[sp].end)
		{
			sp--;
			continue;
		}
		if (!read_varint(&p, stack[sp].end, &tag) || (tag >> 3) == 0 || (tag >> 3) > PG_INT32_MAX)
			return bad;
		switch (tag & 7)
		{
			case 0:
				if (!read_varint(&p, stack[sp].end, &n))
					return bad;
				break;
			case 1:
			case 5:
				n = (tag & 7) == 1 ? 8 : 4;
				if ((size_t) (stack[sp].end - p) < n)
					return bad;
				p += n;
				break;
			case 2:
				if (!read_varint(&p, stack[sp].end, &n) || (uint64) (stack[sp].end - p) < n)
					return bad;
				f = stack[sp].desc ? protobuf_c_message_descriptor_get_field(stack[sp].desc, (unsigned) (tag >> 3)) : NULL;
				if (f && f->type == PROTOBUF_C_TYPE_MESSAGE)
				{
					if (sp + 1 >= OTLP_MAX_DEPTH)
						return "the body is nested too deeply";
					sp++;
					stack[sp].end = p + n;
					stack[sp].desc = f->descriptor;
					if (f->descriptor == spans->desc)
						otlp_add_span(spans, p - data, n);
				}
				else if (f && f->type == PROTOBUF_C_TYPE_STRING && memchr(p, '\0', n) != NULL)
					return "a string field of the body holds a NUL byte";	/* C strings would cut it */
				else
					p += n;
				break;
			default:
				return bad;
		}
	}
	return NULL;
}

static void
request_fail(OtlpRequest *o, int status, const char *message)
{
	if (o->fail_status)
		return;
	o->fail_status = status;
	o->fail_message = strdup(message);
}

/*
 * Decode the body into o->req.  A body that cannot be decoded is
 * rejected as a whole (its first bytes in logagg.rejected) and the
 * request fails with 400 (or 413).
 */
static bool
decode_request(IngestBatch *batch, const IngestOrigin *origin, OtlpRequest *o,
			   char *data, int len)
{
	MemoryContext old = MemoryContextSwitchTo(o->cxt);
	const char *why = NULL;
	int			status = HTTP_STATUS_BAD_REQUEST;
	bool		is_text = false;

	o->req = NULL;
	o->jbody = NULL;
	memset(&o->spans, 0, sizeof(o->spans));
	o->spans.desc = &opentelemetry__proto__logs__v1__log_record__descriptor;
	if (o->json)
	{
		is_text = pg_verifymbstr(data, len, true);
		if (!is_text)
			why = "the body is not valid UTF-8 text (OTLP JSON is UTF-8), or it holds a NUL byte";
		else
			o->jbody = otlp_json_read(data, len, &why);
	}
	else if ((why = wire_check((const uint8 *) data, len, &REQUEST_DESC, &o->spans)) == NULL)
	{
		PbBudget	budget = {o->cxt, 0, OTLP_UNPACK_BASE + (Size) OTLP_UNPACK_FACTOR * len, false};
		ProtobufCAllocator alloc = {pb_alloc, pb_free, &budget};

		o->req = (ExportRequest *) protobuf_c_message_unpack(&REQUEST_DESC, &alloc, len, (const uint8 *) data);
		if (o->req == NULL && budget.over)
		{
			why = "the body takes too much memory once decoded (millions of empty records?): send smaller requests";
			status = HTTP_STATUS_REQ_ENTITY_TOO_LARGE;
		}
		else if (o->req == NULL)
			why = "the body is not a valid protobuf ExportLogsServiceRequest (truncated, or not protobuf)";
	}
	MemoryContextSwitchTo(old);
	if (o->req == NULL && o->jbody == NULL)
	{
		ingest_add_reject_bytes(batch, origin, why, data, len, is_text, false, 0);
		request_fail(o, status, why);
		return false;
	}
	o->jnext = 0;
	o->ri = o->si = o->li = o->nrec = 0;
	o->res_ri = o->scope_ri = o->scope_si = -1;
	return true;
}

/* Delete the contexts of connections that are gone. */
static void
free_dead(void)
{
	while (ndead > 0)
		MemoryContextDelete(dead_cxts[--ndead]);
}

/*
 * Map the records of a /v1/logs body into the batch from where the last
 * round stopped, until the batch is full.  Returns true when the body is
 * done.
 */
bool
ingest_otlp_parse_part(IngestBatch *batch, const IngestOrigin *origin, Conn *c, char *data,
					   int len, IngestParsePos *pos)
{
	OtlpRequest *o = c->otlp;
	LogRecord  *lr;
	MemoryContext old;
	bool		done;

	free_dead();
	if (o->cxt == NULL)
	{
		o->cxt = AllocSetContextCreate(TopMemoryContext, "logagg ingest otlp request",
									   ALLOCSET_DEFAULT_SIZES);
		o->rec_cxt = AllocSetContextCreate(TopMemoryContext, "logagg ingest otlp record",
										   ALLOCSET_DEFAULT_SIZES);
	}
	if (!pos->started)
	{
		pos->started = true;
		MemoryContextReset(o->cxt);
		o->res_attrs.data = o->scope_attrs.data = NULL;
		if (o->fail_status != 0)
		{
			/* refused before it was read (the content type): keep what came */
			ingest_add_reject_bytes(batch, origin, o->fail_message, data, len,
									pg_verifymbstr(data, len, true), false, 0);
			return true;
		}
		if (c->http_fail_status != 0 || !decode_request(batch, origin, o, data, len))
		{
			MemoryContextReset(o->cxt);
			return true;
		}
	}
	old = MemoryContextSwitchTo(o->rec_cxt);
	while (o->jbody && !ingest_server_batch_full() && o->jnext < o->jbody->nrecords)
	{
		const OtlpJsonRecord *jr = &o->jbody->records[o->jnext];
		RecState	st;

		otlp_json_map_record(o->jbody, o->jnext++, &st);
		/* what a reject keeps: the record's own text in the body */
		ingest_finish_record_raw(batch, origin, &st, data + jr->start, jr->len, true);
		MemoryContextReset(o->rec_cxt);
	}
	while (o->req && !ingest_server_batch_full() && (lr = next_record(o)) != NULL)
	{
		RecState	st;
		int			k = o->nrec++;

		map_record(o, lr, &st);
		/* what a reject keeps: the record's own text or bytes in the body */
		if (o->spans.n > k)
			ingest_finish_record_raw(batch, origin, &st, data + o->spans.start[k], o->spans.len[k], o->json);
		else
		{
			size_t		n = protobuf_c_message_get_packed_size(&lr->base);
			char	   *raw = palloc(n + 1);

			protobuf_c_message_pack(&lr->base, (uint8_t *) raw);
			ingest_finish_record_raw(batch, origin, &st, raw, n, false);
		}
		MemoryContextReset(o->rec_cxt);
	}
	MemoryContextSwitchTo(old);
	done = o->jbody ? o->jnext >= o->jbody->nrecords : o->ri >= (int) o->req->n_resource_logs;
	if (done)
	{
		MemoryContextReset(o->cxt);
		o->req = NULL;
		o->jbody = NULL;
		o->res_attrs.data = o->scope_attrs.data = NULL;
	}
	return done;
}

/* A record of this request was rejected: the first reason goes into the reply. */
void
ingest_otlp_note_rejected(Conn *c, const char *reason)
{
	if (c->otlp && c->otlp->first_reject == NULL)
		c->otlp->first_reject = strdup(reason);
}

/*
 * After the COMMIT: 200 with an ExportLogsServiceResponse (partial_success
 * when records were rejected), or the Status of a request refused as a
 * whole.
 */
void
ingest_otlp_reply(Conn *c)
{
	OtlpRequest *o = c->otlp;
	ExportResponse resp = OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_SERVICE_RESPONSE__INIT;
	PartialSuccess ps = OPENTELEMETRY__PROTO__COLLECTOR__LOGS__V1__EXPORT_LOGS_PARTIAL_SUCCESS__INIT;
	char	   *message = NULL;

	if (c->http_fail_status)
		request_fail(o, c->http_fail_status, c->http_fail_reason);
	if (o->fail_status)
	{
		status_reply(c, o->fail_status, o->fail_message ? o->fail_message : "the request was refused");
		request_reset(o);
		return;
	}
	if (c->http_rejected > 0)
	{
		message = psprintf(INT64_FORMAT " of " INT64_FORMAT " log records were rejected (see logagg.rejected); the first because: %s",
						   c->http_rejected, c->http_rejected + c->http_accepted,
						   o->first_reject ? o->first_reject : "?");
		ps.rejected_log_records = c->http_rejected;
		ps.error_message = message;
		resp.partial_success = &ps;
	}
	if (o->json)
	{
		StringInfoData s;

		initStringInfo(&s);
		if (message)
		{
			appendStringInfo(&s, "{\"partialSuccess\": {\"rejectedLogRecords\": \"" INT64_FORMAT "\", \"errorMessage\": ",
							 c->http_rejected);
			escape_json(&s, message);
			appendStringInfoString(&s, "}}");
		}
		else
			appendStringInfoString(&s, "{}");
		ingest_http_reply(c, HTTP_STATUS_OK, "application/json", s.data);
		pfree(s.data);
	}
	else
	{
		size_t		n = protobuf_c_message_get_packed_size(&resp.base);
		char	   *buf = palloc(n + 1);

		protobuf_c_message_pack(&resp.base, (uint8_t *) buf);
		ingest_http_reply_len(c, HTTP_STATUS_OK, "application/x-protobuf", buf, n);
		pfree(buf);
	}
	if (message)
		pfree(message);
	request_reset(o);
}
