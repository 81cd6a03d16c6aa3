/*-------------------------------------------------------------------------
 *
 * otlp_json.c
 *		The OTLP JSON encoding read into the same protobuf-c structures the
 *		protobuf encoding unpacks to, so that both encodings share one
 *		mapping (otlp.c).
 *
 * The reader is driven by protobuf-c's descriptors and PostgreSQL's JSON
 * parser (pg_parse_json semantic callbacks, one streaming pass; no
 * intermediate jsonb).  It follows the proto3 JSON mapping with the OTLP
 * exceptions (OTLP/HTTP specification, "JSON Protobuf Encoding"):
 *  - field names in lowerCamelCase or as in the .proto (snake_case);
 *  - 64-bit integers as JSON strings or numbers;
 *  - enums as numbers (names are accepted too);
 *  - trace_id and span_id as hex strings, not base64; other bytes base64;
 *  - fields it does not know are ignored, as the specification requires
 *    of receivers (a newer client's fields must not fail a request).
 * A value of the wrong type is an error: the request is undecodable.
 *
 * Everything is allocated in the caller's memory context (the lexer's
 * de-escaped strings become the structures' strings).  Runs in the main
 * loop.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/base64.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"

#include "ingest/otlp_int.h"

typedef struct JFrame
{
	ProtobufCMessage *msg;
	const ProtobufCFieldDescriptor *field;	/* whose value comes next (NULL:
											 * a field we do not know) */
	bool		in_array;		/* that value is an array, now being read */
	char	   *start;			/* where the object's text starts */
} JFrame;

typedef struct JState
{
	JsonLexContext *lex;
	JFrame		stack[OTLP_MAX_DEPTH];
	int			sp;				/* -1: the root object is not open yet */
	int			skip;			/* > 0: inside a value that is ignored */
	char	   *error;			/* the first error */
	ProtobufCMessage *root;
	OtlpJsonSpans *spans;
} JState;

static void
jerror(JState *st, const char *fmt, const char *name)
{
	if (st->error == NULL)
		st->error = psprintf(fmt, name);
	st->skip = PG_INT32_MAX / 2;	/* ignore the rest */
}

/* The field NAME (lowerCamelCase or snake_case) of a message, or NULL. */
static const ProtobufCFieldDescriptor *
find_field(const ProtobufCMessageDescriptor *desc, const char *name)
{
	const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field_by_name(desc, name);
	char		snake[128];
	int			n = 0;

	if (f)
		return f;
	for (const char *p = name; *p && n < (int) sizeof(snake) - 2; p++)
	{
		if (*p >= 'A' && *p <= 'Z')
		{
			snake[n++] = '_';
			snake[n++] = *p - 'A' + 'a';
		}
		else
			snake[n++] = *p;
	}
	snake[n] = '\0';
	return protobuf_c_message_descriptor_get_field_by_name(desc, snake);
}

static size_t
elem_size(ProtobufCType t)
{
	switch (t)
	{
		case PROTOBUF_C_TYPE_INT32:
		case PROTOBUF_C_TYPE_SINT32:
		case PROTOBUF_C_TYPE_SFIXED32:
		case PROTOBUF_C_TYPE_UINT32:
		case PROTOBUF_C_TYPE_FIXED32:
		case PROTOBUF_C_TYPE_FLOAT:
		case PROTOBUF_C_TYPE_ENUM:
			return 4;
		case PROTOBUF_C_TYPE_INT64:
		case PROTOBUF_C_TYPE_SINT64:
		case PROTOBUF_C_TYPE_SFIXED64:
		case PROTOBUF_C_TYPE_UINT64:
		case PROTOBUF_C_TYPE_FIXED64:
		case PROTOBUF_C_TYPE_DOUBLE:
			return 8;
		case PROTOBUF_C_TYPE_BOOL:
			return sizeof(protobuf_c_boolean);
		case PROTOBUF_C_TYPE_BYTES:
			return sizeof(ProtobufCBinaryData);
		case PROTOBUF_C_TYPE_STRING:
		case PROTOBUF_C_TYPE_MESSAGE:
			return sizeof(void *);
	}
	return 8;
}

/*
 * Where the next value of field F of MSG goes: a new element of a
 * repeated field (the array grows by doubling), or the field itself (a
 * oneof's case or an optional's has_ flag set).
 */
static void *
field_slot(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f)
{
	char	   *base = (char *) msg;
	size_t		sz = elem_size(f->type);

	if (f->label == PROTOBUF_C_LABEL_REPEATED)
	{
		size_t	   *n = (size_t *) (base + f->quantifier_offset);
		char	  **arr = (char **) (base + f->offset);

		if (*n == 0)
			*arr = palloc0(4 * sz);
		else if (*n >= 4 && (*n & (*n - 1)) == 0)
			*arr = repalloc(*arr, *n * 2 * sz);
		return *arr + (*n)++ * sz;
	}
	if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF)
		*(uint32 *) (base + f->quantifier_offset) = f->id;
	else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->quantifier_offset)
		*(protobuf_c_boolean *) (base + f->quantifier_offset) = 1;
	return base + f->offset;
}

static bool
parse_int(const char *s, bool is_unsigned, int64 min, uint64 max, uint64 *out)
{
	char	   *end;

	errno = 0;
	if (*s == '\0' || *s == ' ')
		return false;
	if (is_unsigned)
	{
		if (*s == '-')
			return false;
		*out = strtoull(s, &end, 10);
		return errno == 0 && *end == '\0' && *out <= max;
	}
	else
	{
		long long	v = strtoll(s, &end, 10);

		*out = (uint64) v;
		return errno == 0 && *end == '\0' && v >= min && (v < 0 || (uint64) v <= max);
	}
}

static int
hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 :
		c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
}

/* OTLP's exception to proto3 JSON: trace and span ids are hex. */
static bool
is_hex_id(const ProtobufCFieldDescriptor *f)
{
	return strcmp(f->name, "trace_id") == 0 || strcmp(f->name, "span_id") == 0;
}

static bool
decode_bytes(const ProtobufCFieldDescriptor *f, const char *s, ProtobufCBinaryData *b)
{
	int			len = strlen(s);

	if (is_hex_id(f))
	{
		if (len % 2 != 0)
			return false;
		b->data = palloc(len / 2 + 1);
		b->len = len / 2;
		for (int i = 0; i < len / 2; i++)
		{
			int			hi = hexval(s[2 * i]),
						lo = hexval(s[2 * i + 1]);

			if (hi < 0 || lo < 0)
				return false;
			b->data[i] = (uint8) (hi << 4 | lo);
		}
		return true;
	}
	b->data = palloc(pg_b64_dec_len(len) + 1);
	b->len = pg_b64_decode(s, len, (char *) b->data, pg_b64_dec_len(len));
	return (int) b->len >= 0;
}

/* A scalar JSON value into field F of MSG; false: wrong type for the field. */
static bool
set_scalar(ProtobufCMessage *msg, const ProtobufCFieldDescriptor *f, char *token,
		   JsonTokenType type)
{
	bool		num = type == JSON_TOKEN_NUMBER;
	bool		str = type == JSON_TOKEN_STRING;
	uint64		u = 0;
	void	   *dst;

	switch (f->type)
	{
		case PROTOBUF_C_TYPE_STRING:
			if (!str)
				return false;
			*(char **) field_slot(msg, f) = token;
			return true;
		case PROTOBUF_C_TYPE_BOOL:
			if (type != JSON_TOKEN_TRUE && type != JSON_TOKEN_FALSE)
				return false;
			*(protobuf_c_boolean *) field_slot(msg, f) = type == JSON_TOKEN_TRUE;
			return true;
		case PROTOBUF_C_TYPE_INT32:
		case PROTOBUF_C_TYPE_SINT32:
		case PROTOBUF_C_TYPE_SFIXED32:
			if (!(num || str) || !parse_int(token, false, PG_INT32_MIN, PG_INT32_MAX, &u))
				return false;
			*(int32 *) field_slot(msg, f) = (int32) (int64) u;
			return true;
		case PROTOBUF_C_TYPE_UINT32:
		case PROTOBUF_C_TYPE_FIXED32:
			if (!(num || str) || !parse_int(token, true, 0, PG_UINT32_MAX, &u))
				return false;
			*(uint32 *) field_slot(msg, f) = (uint32) u;
			return true;
		case PROTOBUF_C_TYPE_INT64:
		case PROTOBUF_C_TYPE_SINT64:
		case PROTOBUF_C_TYPE_SFIXED64:
			if (!(num || str) || !parse_int(token, false, PG_INT64_MIN, PG_INT64_MAX, &u))
				return false;
			*(int64 *) field_slot(msg, f) = (int64) u;
			return true;
		case PROTOBUF_C_TYPE_UINT64:
		case PROTOBUF_C_TYPE_FIXED64:
			if (!(num || str) || !parse_int(token, true, 0, PG_UINT64_MAX, &u))
				return false;
			*(uint64 *) field_slot(msg, f) = u;
			return true;
		case PROTOBUF_C_TYPE_ENUM:
			if (str)
			{
				const ProtobufCEnumValue *v =
					protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, token);

				/* an unknown name: the default, as for an unknown field */
				*(int32 *) field_slot(msg, f) = v ? v->value : 0;
				return true;
			}
			if (!num || !parse_int(token, false, PG_INT32_MIN, PG_INT32_MAX, &u))
				return false;
			*(int32 *) field_slot(msg, f) = (int32) (int64) u;
			return true;
		case PROTOBUF_C_TYPE_DOUBLE:
		case PROTOBUF_C_TYPE_FLOAT:
			{
				double		d;
				char	   *end;

				if (str && strcmp(token, "NaN") == 0)
					d = NAN;
				else if (str && strcmp(token, "Infinity") == 0)
					d = INFINITY;
				else if (str && strcmp(token, "-Infinity") == 0)
					d = -INFINITY;
				else if (num || str)
				{
					errno = 0;
					d = strtod(token, &end);
					if (*token == '\0' || *end != '\0' || errno != 0)
						return false;
				}
				else
					return false;
				dst = field_slot(msg, f);
				if (f->type == PROTOBUF_C_TYPE_DOUBLE)
					*(double *) dst = d;
				else
					*(float *) dst = (float) d;
				return true;
			}
		case PROTOBUF_C_TYPE_BYTES:
			if (!str)
				return false;
			return decode_bytes(f, token, (ProtobufCBinaryData *) field_slot(msg, f));
		case PROTOBUF_C_TYPE_MESSAGE:
			return false;
	}
	return false;
}

/* ---- pg_parse_json callbacks ---- */

static void
j_object_start(void *arg)
{
	JState	   *st = arg;
	JFrame	   *top;
	const ProtobufCFieldDescriptor *f;
	ProtobufCMessage *sub;

	if (st->skip > 0)
	{
		st->skip++;
		return;
	}
	if (st->sp < 0)
	{
		st->stack[++st->sp] = (JFrame) {st->root, NULL, false, st->lex->token_start};
		return;
	}
	top = &st->stack[st->sp];
	f = top->field;
	if (f == NULL)
	{
		st->skip = 1;			/* the value of a field we do not know */
		return;
	}
	if (f->type != PROTOBUF_C_TYPE_MESSAGE)
		return jerror(st, "field \"%s\" must not be an object", f->name);
	if (f->label == PROTOBUF_C_LABEL_REPEATED && !top->in_array)
		return jerror(st, "field \"%s\" must be an array", f->name);
	if (st->sp + 1 >= OTLP_MAX_DEPTH)
		return jerror(st, "%s", "the body is nested too deeply");
	sub = palloc(((const ProtobufCMessageDescriptor *) f->descriptor)->sizeof_message);
	((const ProtobufCMessageDescriptor *) f->descriptor)->message_init(sub);
	*(ProtobufCMessage **) field_slot(top->msg, f) = sub;
	st->stack[++st->sp] = (JFrame) {sub, NULL, false, st->lex->token_start};
}

static void
j_object_end(void *arg)
{
	JState	   *st = arg;
	JFrame	   *top;

	if (st->skip > 0)
	{
		st->skip--;
		return;
	}
	top = &st->stack[st->sp--];
	if (st->spans && top->msg->descriptor == st->spans->desc)
	{
		OtlpJsonSpans *sp = st->spans;

		if (sp->n == sp->max)
		{
			sp->max = sp->max ? sp->max * 2 : 64;
			sp->start = sp->start ? repalloc(sp->start, sp->max * sizeof(int)) : palloc(sp->max * sizeof(int));
			sp->len = sp->len ? repalloc(sp->len, sp->max * sizeof(int)) : palloc(sp->max * sizeof(int));
		}
		sp->start[sp->n] = top->start - st->lex->input;
		sp->len[sp->n] = st->lex->prev_token_terminator - top->start;
		sp->n++;
	}
}

static void
j_array_start(void *arg)
{
	JState	   *st = arg;
	JFrame	   *top;

	if (st->skip > 0)
	{
		st->skip++;
		return;
	}
	if (st->sp < 0)
		return jerror(st, "%s", "the body must be a JSON object (an ExportLogsServiceRequest)");
	top = &st->stack[st->sp];
	if (top->field == NULL)
	{
		st->skip = 1;
		return;
	}
	if (top->field->label != PROTOBUF_C_LABEL_REPEATED || top->in_array)
		return jerror(st, "field \"%s\" must not be an array", top->field->name);
	top->in_array = true;
}

static void
j_array_end(void *arg)
{
	JState	   *st = arg;

	if (st->skip > 0)
	{
		st->skip--;
		return;
	}
	st->stack[st->sp].in_array = false;
}

static void
j_field_start(void *arg, char *fname, bool isnull)
{
	JState	   *st = arg;

	if (st->skip > 0)
		return;
	st->stack[st->sp].field = find_field(st->stack[st->sp].msg->descriptor, fname);
}

static void
j_field_end(void *arg, char *fname, bool isnull)
{
	JState	   *st = arg;

	if (st->skip == 0)
		st->stack[st->sp].field = NULL;
}

static void
j_scalar(void *arg, char *token, JsonTokenType type)
{
	JState	   *st = arg;
	JFrame	   *top;
	const ProtobufCFieldDescriptor *f;

	if (st->skip > 0)
		return;
	if (st->sp < 0)
		return jerror(st, "%s", "the body must be a JSON object (an ExportLogsServiceRequest)");
	top = &st->stack[st->sp];
	f = top->field;
	if (f == NULL || type == JSON_TOKEN_NULL)
		return;					/* an unknown field, or the default */
	if (f->label == PROTOBUF_C_LABEL_REPEATED && !top->in_array)
		return jerror(st, "field \"%s\" must be an array", f->name);
	if (!set_scalar(top->msg, f, token, type))
		jerror(st, is_hex_id(f) ? "field \"%s\" must be a hex string" :
			   "field \"%s\" has a value of the wrong type", f->name);
}

/*
 * Read the JSON text (valid UTF-8, checked by the caller) as a message of
 * type DESC, allocated in the current memory context.  Returns it, or
 * NULL with *why set.  SPANS, if not NULL, gets the text of every object
 * of type SPANS->desc, in order.
 */
ProtobufCMessage *
otlp_message_from_json(const ProtobufCMessageDescriptor *desc, char *text, int len,
					   OtlpJsonSpans *spans, const char **why)
{
	JState		st;
	JsonSemAction sem;
	JsonParseErrorType err;

	memset(&st, 0, sizeof(st));
	st.sp = -1;
	st.spans = spans;
	st.root = palloc(desc->sizeof_message);
	desc->message_init(st.root);
	st.lex = makeJsonLexContextCstringLen(text, len, PG_UTF8, true);
	memset(&sem, 0, sizeof(sem));
	sem.semstate = &st;
	sem.object_start = j_object_start;
	sem.object_end = j_object_end;
	sem.array_start = j_array_start;
	sem.array_end = j_array_end;
	sem.object_field_start = j_field_start;
	sem.object_field_end = j_field_end;
	sem.scalar = j_scalar;
	err = pg_parse_json(st.lex, &sem);
	if (err != JSON_SUCCESS)
	{
		*why = psprintf("the body is not valid JSON: %s", json_errdetail(err, st.lex));
		return NULL;
	}
	if (st.error)
	{
		*why = psprintf("the body is not an OTLP JSON ExportLogsServiceRequest: %s", st.error);
		return NULL;
	}
	return st.root;
}
