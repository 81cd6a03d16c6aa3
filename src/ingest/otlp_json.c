/*-------------------------------------------------------------------------
 *
 * otlp_json.c
 *		The OTLP JSON encoding of POST /v1/logs read in one pass into the
 *		door's records (with their resources' and scopes' attrs), and each
 *		record mapped to the RecState the record checks take.
 *
 * The reader walks the body once with the scanner's primitives (no
 * pg_parse_json, no protobuf-c structures): it writes each attribute
 * list's JSON text as it reads it, keeps the mapped fields of each record
 * and where its text is (for logagg.rejected).  A resource or scope may
 * come after its records in the text, so records take their resource's
 * and scope's attrs when they are mapped (otlp_json_map_record), after
 * the whole body was read.  Which fields a message has, their JSON names
 * and types come from protobuf-c's generated descriptors, so the reader
 * knows exactly the messages the protobuf encoding has.  It follows the
 * proto3 JSON mapping with the OTLP exceptions (OTLP/HTTP specification,
 * "JSON Protobuf Encoding"):
 *  - field names in lowerCamelCase or as in the .proto (snake_case);
 *  - 64-bit integers as JSON strings or numbers;
 *  - enums as numbers (names are accepted too);
 *  - trace_id and span_id as hex strings, not base64; other bytes base64;
 *  - fields it does not know are skipped, as the specification requires
 *    of receivers (a newer client's fields must not fail a request);
 *  - of a field given twice the last value counts (a repeated field's
 *    elements add up), null is the field's default (absent).
 * A value of the wrong type is an error: the request is undecodable.
 *
 * It accepts exactly the JSON PostgreSQL's parser accepts (strings with
 * their escapes de-escaped: no \u0000, no lone surrogate).  When it stops
 * at anything else, pg_parse_json reads the body once more, only to say
 * what is wrong in its words (otlp_json_read): an error path, never the
 * path of a valid body.
 *
 * Everything is allocated in the caller's memory context.  Runs in the
 * main loop.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "common/base64.h"
#include "common/jsonapi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "ingest/otlp_int.h"
#include "ingest/parse_int.h"

/*
 * Deepest nesting of JSON objects and arrays in a body: twice the
 * messages a request may nest (a message's repeated field adds an array),
 * which bounds the reader's recursion and pg_parse_json's.
 */
#define OJ_MAX_JSON_DEPTH	(2 * OTLP_MAX_DEPTH)

/* A JSON string of the body: its text between the quotes. */
typedef struct OjStr
{
	char	   *s;
	char	   *e;
	bool		esc;			/* holds escapes */
} OjStr;

/* A scalar field's value, converted as its type says. */
typedef struct OjScalar
{
	bool		set;			/* false: null (the field's default) */
	uint64		u;				/* integers, enums, bools */
	double		d;
	OjStr		str;			/* strings */
	char	   *bytes;			/* bytes: trace and span ids as lower-case
								 * hex, others as their base64 text */
	int			nbytes;			/* decoded length */
} OjScalar;

/* The JSON text of an AnyValue being written into OUT from START. */
typedef struct OjAny
{
	StringInfo	out;
	int			start;
	char		kind;			/* OTLP_JSON_NOT_SET, ... */
	OjStr		str;			/* OTLP_JSON_STRING: the string */
} OjAny;

/* A list being written (attributes "k":v,... or array values) from BASE in OUT. */
typedef struct OjKvList
{
	StringInfo	out;
	int			base;
	bool		resource;		/* a resource's: note service.name */
	struct OjRecCtx *rec;		/* a record's own: note its status attribute */
} OjKvList;

/* One KeyValue being read. */
typedef struct OjKv
{
	OjKvList   *list;
	int			start;			/* where its text starts in list->out */
	bool		has_key;
	bool		rewrite;		/* key not written before the value */
	OjStr		key;
	int			vstart;			/* where the value's text starts; -1: none yet */
	char		kind;
	OjStr		str;
} OjKv;

/* The status attribute of a record: its place in the record's attrs text. */
typedef struct OjStatusKv
{
	bool		found;
	int			start;			/* the KeyValue's text */
	int			end;
	int			vstart;			/* its value's text */
	char		kind;
	OjStr		str;
} OjStatusKv;

typedef struct OjRecCtx
{
	OtlpJsonRecord *rec;
	OjKvList	own;
	OjStatusKv	status[2];		/* http.response.status_code, http.status_code */
	OjStr		severity_text;
	OjStr		event_name;
	bool		has_severity_text;
	bool		has_event_name;
	char		body_kind;
	OjStr		body_str;
} OjRecCtx;

typedef struct OjReader
{
	char	   *text;
	char	   *end;
	int			depth;			/* JSON objects and arrays open */
	int			frames;			/* messages open, the request included */
	const char *error;			/* the first error in the request's terms */
	bool		deep;			/* nested deeper than OJ_MAX_JSON_DEPTH */
	OtlpJsonBody *body;
	int			resource;		/* the ResourceLogs being read */
	int			scope;			/* the ScopeLogs being read */
	char	   *service_name;
	OjStr		scope_name;
	OjStr		scope_version;
	bool		has_scope_name;
	bool		has_scope_version;
	StringInfoData scratch;		/* de-escaped strings */
	StringInfoData moved;		/* a value written again after its key */
	StringInfoData res;			/* the resource's attributes */
	StringInfoData scope_attrs;
	StringInfoData own;			/* the record's attributes */
	StringInfoData value;		/* the record's body */
} OjReader;

typedef char *(*OjFieldFn) (OjReader *r, char *p, const ProtobufCFieldDescriptor *f, void *arg);
typedef char *(*OjReadFn) (OjReader *r, char *p, void *arg);

/* ---- the messages' JSON names ---- */

/* A message's field names in lowerCamelCase, made once per message type. */
typedef struct OjNames
{
	const ProtobufCMessageDescriptor *desc;
	char	  **camel;
	int		   *camel_len;
	int		   *snake_len;
} OjNames;

#define OJ_MAX_MESSAGES 32
static OjNames oj_names[OJ_MAX_MESSAGES];
static int	oj_nnames = 0;

static const OjNames *
names_of(const ProtobufCMessageDescriptor *desc)
{
	OjNames    *nm;

	for (int i = 0; i < oj_nnames; i++)
		if (oj_names[i].desc == desc)
			return &oj_names[i];
	if (oj_nnames == OJ_MAX_MESSAGES)
		elog(ERROR, "too many OTLP message types");
	nm = &oj_names[oj_nnames];
	nm->camel = MemoryContextAlloc(TopMemoryContext, desc->n_fields * sizeof(char *));
	nm->camel_len = MemoryContextAlloc(TopMemoryContext, desc->n_fields * sizeof(int));
	nm->snake_len = MemoryContextAlloc(TopMemoryContext, desc->n_fields * sizeof(int));
	for (unsigned i = 0; i < desc->n_fields; i++)
	{
		const char *s = desc->fields[i].name;
		char	   *c = MemoryContextAlloc(TopMemoryContext, strlen(s) + 1);
		int			n = 0;

		for (; *s; s++)
		{
			if (*s == '_' && s[1] >= 'a' && s[1] <= 'z')
				c[n++] = *++s - 'a' + 'A';
			else
				c[n++] = *s;
		}
		c[n] = '\0';
		nm->camel[i] = c;
		nm->camel_len[i] = n;
		nm->snake_len[i] = strlen(desc->fields[i].name);
	}
	nm->desc = desc;
	oj_nnames++;
	return nm;
}

/* ---- strings ---- */

/*
 * The \u escape at p (its backslash, within end): its code point, and in
 * *elen the escape's length (6, or 12 for a surrogate pair).  0 for what
 * PostgreSQL's lexer refuses when it de-escapes: malformed, \u0000, a
 * surrogate that is not in a pair.
 */
static pg_wchar
unicode_escape(const char *p, const char *end, int *elen)
{
	int			hi,
				lo;

	if (end - p < 6 || (hi = ingest_hex4(p + 2)) <= 0)
		return 0;
	*elen = 6;
	if (hi >= 0xDC00 && hi <= 0xDFFF)
		return 0;
	if (hi >= 0xD800 && hi <= 0xDBFF)
	{
		if (end - p < 12 || p[6] != '\\' || p[7] != 'u' ||
			(lo = ingest_hex4(p + 8)) < 0xDC00 || lo > 0xDFFF)
			return 0;
		*elen = 12;
		hi = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
	}
	return (pg_wchar) hi;
}

/* The string at p (its quote) into *str; the position after it, or NULL. */
static inline char *
read_string(char *p, char *end, OjStr *str)
{
	str->esc = false;
	str->s = ++p;
	for (; p < end; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c == '"')
		{
			str->e = p;
			return p + 1;
		}
		if (c == '\\')
		{
			int			elen;

			if (p + 1 >= end)
				return NULL;
			switch (p[1])
			{
				case '"':
				case '\\':
				case '/':
				case 'b':
				case 'f':
				case 'n':
				case 'r':
				case 't':
					p++;
					break;
				case 'u':
					if (unicode_escape(p, end, &elen) == 0)
						return NULL;
					p += elen - 1;
					break;
				default:
					return NULL;
			}
			str->esc = true;
		}
		else if (c < 0x20)
			return NULL;
	}
	return NULL;
}

/*
 * The string de-escaped, appended to BUF, as PostgreSQL's lexer
 * de-escapes it (a \u escape converted to the database encoding).
 */
static void
decode_into(const OjStr *str, StringInfo buf)
{
	const char *s = str->s;

	while (s < str->e)
	{
		const char *b = s;
		int			elen;
		pg_wchar	cp;
		char		cbuf[MAX_UNICODE_EQUIVALENT_STRING + 1];

		while (s < str->e && *s != '\\')
			s++;
		appendBinaryStringInfo(buf, b, s - b);
		if (s >= str->e)
			break;
		switch (s[1])
		{
			case 'b':
				appendStringInfoChar(buf, '\b');
				break;
			case 'f':
				appendStringInfoChar(buf, '\f');
				break;
			case 'n':
				appendStringInfoChar(buf, '\n');
				break;
			case 'r':
				appendStringInfoChar(buf, '\r');
				break;
			case 't':
				appendStringInfoChar(buf, '\t');
				break;
			case 'u':
				cp = unicode_escape(s, str->e, &elen);
				pg_unicode_to_server(cp, (unsigned char *) cbuf);
				appendStringInfoString(buf, cbuf);
				s += elen;
				continue;
			default:			/* " \ / */
				appendStringInfoChar(buf, s[1]);
				break;
		}
		s += 2;
	}
}

/* The string as a NUL-terminated palloc'd copy. */
static char *
str_dup(const OjStr *str)
{
	StringInfoData b;

	if (!str->esc)
		return pnstrdup(str->s, str->e - str->s);
	initStringInfo(&b);
	decode_into(str, &b);
	return b.data;
}

/* The string de-escaped in r->scratch (valid until the next use). */
static char *
str_scratch(OjReader *r, const OjStr *str)
{
	resetStringInfo(&r->scratch);
	if (str->esc)
		decode_into(str, &r->scratch);
	else
		appendBinaryStringInfo(&r->scratch, str->s, str->e - str->s);
	return r->scratch.data;
}

static bool
str_is(OjReader *r, const OjStr *str, const char *lit, int litlen)
{
	if (!str->esc)
		return str->e - str->s == litlen && memcmp(str->s, lit, litlen) == 0;
	return strcmp(str_scratch(r, str), lit) == 0;
}

/* The string as JSON text (what escape_json writes of its value). */
static void
put_string(OjReader *r, StringInfo out, const OjStr *str)
{
	if (!str->esc)
	{
		/* no escape: the text between the quotes is what escape_json writes */
		appendStringInfoCharMacro(out, '"');
		appendBinaryStringInfo(out, str->s, str->e - str->s);
		appendStringInfoCharMacro(out, '"');
	}
	else
		escape_json(out, str_scratch(r, str));
}

/* ---- structure ---- */

static char *
fail(OjReader *r, const char *fmt, const char *name)
{
	if (r->error == NULL)
		r->error = psprintf(fmt, name);
	return NULL;
}

static inline bool
enter(OjReader *r)
{
	if (++r->depth > OJ_MAX_JSON_DEPTH)
	{
		r->deep = true;
		return false;
	}
	return true;
}

/* Any JSON value at p, checked and skipped (a field the reader does not know). */
static char *
skip_value(OjReader *r, char *p)
{
	char	   *end = r->end;
	OjStr		s;
	JsonTokenType t;
	bool		big;

	if (p >= end)
		return NULL;
	switch (*p)
	{
		case '"':
			return read_string(p, end, &s);
		case '{':
		case '[':
			{
				char		close = *p == '{' ? '}' : ']';
				bool		obj = *p == '{';

				if (!enter(r))
					return NULL;
				p = skip_ws(p + 1, end);
				if (p < end && *p == close)
				{
					r->depth--;
					return p + 1;
				}
				for (;;)
				{
					if (obj)
					{
						if (p >= end || *p != '"' || (p = read_string(p, end, &s)) == NULL)
							return NULL;
						p = skip_ws(p, end);
						if (p >= end || *p != ':')
							return NULL;
						p = skip_ws(p + 1, end);
					}
					if ((p = skip_value(r, p)) == NULL)
						return NULL;
					p = skip_ws(p, end);
					if (p < end && *p == ',')
					{
						p = skip_ws(p + 1, end);
						continue;
					}
					if (p < end && *p == close)
					{
						r->depth--;
						return p + 1;
					}
					return NULL;
				}
			}
		case 't':
		case 'f':
		case 'n':
			return ingest_scan_literal(p, end, &t);
		default:
			return ingest_scan_number(p, end, &big);
	}
}

/*
 * The field NAME of message DESC (lowerCamelCase, snake_case, or any
 * spelling whose capitals read as "_" and the lower-case letter), or NULL.
 */
static const ProtobufCFieldDescriptor *
find_field(OjReader *r, const ProtobufCMessageDescriptor *desc, const OjStr *key)
{
	const OjNames *nm = names_of(desc);
	const char *name = key->s;
	int			len = key->e - key->s;
	char		snake[128];
	int			n = 0;
	bool		camel = false;

	if (key->esc)
	{
		name = str_scratch(r, key);
		len = r->scratch.len;
	}
	for (unsigned i = 0; i < desc->n_fields; i++)
		if ((nm->camel_len[i] == len && nm->camel[i][0] == name[0] &&
			 memcmp(nm->camel[i], name, len) == 0) ||
			(nm->snake_len[i] == len && desc->fields[i].name[0] == name[0] &&
			 memcmp(desc->fields[i].name, name, len) == 0))
			return &desc->fields[i];
	/* other mixed spellings: capitals to "_" and lower case, then the .proto name */
	for (int i = 0; i < len && n < (int) sizeof(snake) - 2; i++)
	{
		if (name[i] >= 'A' && name[i] <= 'Z')
		{
			snake[n++] = '_';
			snake[n++] = name[i] - 'A' + 'a';
			camel = true;
		}
		else
			snake[n++] = name[i];
	}
	snake[n] = '\0';
	return camel ? protobuf_c_message_descriptor_get_field_by_name(desc, snake) : NULL;
}

/*
 * The object at p (its '{') as message DESC: each member's value goes to
 * FIELD when the message has that field, else is skipped.
 */
static char *
read_object(OjReader *r, char *p, const ProtobufCMessageDescriptor *desc, OjFieldFn field,
			void *arg)
{
	char	   *end = r->end;

	if (!enter(r))
		return NULL;
	p = skip_ws(p + 1, end);
	if (p < end && *p == '}')
	{
		r->depth--;
		return p + 1;
	}
	for (;;)
	{
		OjStr		k;
		const ProtobufCFieldDescriptor *f;

		if (p >= end || *p != '"' || (p = read_string(p, end, &k)) == NULL)
			return NULL;
		p = skip_ws(p, end);
		if (p >= end || *p != ':')
			return NULL;
		p = skip_ws(p + 1, end);
		f = find_field(r, desc, &k);
		if ((p = f ? field(r, p, f, arg) : skip_value(r, p)) == NULL)
			return NULL;
		p = skip_ws(p, end);
		if (p < end && *p == ',')
		{
			p = skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == '}')
		{
			r->depth--;
			return p + 1;
		}
		return NULL;
	}
}

/* One object of message field F, read by READ, one message deeper. */
static char *
read_sub(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, OjReadFn read, void *arg)
{
	if (r->frames >= OTLP_MAX_DEPTH)
		return fail(r, "%s", "the body is nested too deeply");
	r->frames++;
	p = read(r, p, arg);
	r->frames--;
	return p;
}

/* A null at p: the position after it, or NULL when p holds no null. */
static inline char *
read_null(OjReader *r, char *p)
{
	JsonTokenType t;
	char	   *e = ingest_scan_literal(p, r->end, &t);

	return e && t == JSON_TOKEN_NULL ? e : NULL;
}

/*
 * The value of message field F at p: each object of it (the field's one
 * object, or each element of a repeated field's array; nulls are the
 * default and skipped) read by READ.  Another shape is the field's error.
 */
static char *
read_messages(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, OjReadFn read, void *arg)
{
	char	   *end = r->end;
	bool		repeated = f->label == PROTOBUF_C_LABEL_REPEATED;
	char	   *e;

	if (p >= end)
		return NULL;
	if (*p == '{')
		return repeated ? fail(r, "field \"%s\" must be an array", f->name) :
			read_sub(r, p, f, read, arg);
	if (*p != '[')
	{
		if ((e = read_null(r, p)) != NULL)
			return e;
		return fail(r, repeated ? "field \"%s\" must be an array" :
					"field \"%s\" has a value of the wrong type", f->name);
	}
	if (!repeated)
		return fail(r, "field \"%s\" must not be an array", f->name);
	if (!enter(r))
		return NULL;
	p = skip_ws(p + 1, end);
	if (p < end && *p == ']')
	{
		r->depth--;
		return p + 1;
	}
	for (;;)
	{
		if (p >= end)
			return NULL;
		if (*p == '{')
			p = read_sub(r, p, f, read, arg);
		else if (*p == '[')
			return fail(r, "field \"%s\" must not be an array", f->name);
		else if ((p = read_null(r, p)) == NULL)
			return fail(r, "field \"%s\" has a value of the wrong type", f->name);
		if (p == NULL)
			return NULL;
		p = skip_ws(p, end);
		if (p < end && *p == ',')
		{
			p = skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == ']')
		{
			r->depth--;
			return p + 1;
		}
		return NULL;
	}
}

/* ---- scalars ---- */

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

/* OTLP's exception to proto3 JSON: trace and span ids are hex. */
static bool
is_hex_id(const ProtobufCFieldDescriptor *f)
{
	return strcmp(f->name, "trace_id") == 0 || strcmp(f->name, "span_id") == 0;
}

/* bytes: hex ids as lower-case hex, other bytes as their canonical base64 */
static bool
decode_bytes(const ProtobufCFieldDescriptor *f, const char *s, OjScalar *v)
{
	int			len = strlen(s);
	char	   *raw;
	int			n;

	if (is_hex_id(f))
	{
		if (len % 2 != 0)
			return false;
		v->bytes = palloc(len + 1);
		for (int i = 0; i < len; i++)
		{
			char		c = s[i];

			if (c >= 'A' && c <= 'F')
				c += 'a' - 'A';
			else if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
				return false;
			v->bytes[i] = c;
		}
		v->bytes[len] = '\0';
		v->nbytes = len / 2;
		return true;
	}
	raw = palloc(pg_b64_dec_len(len) + 1);
	n = pg_b64_decode(s, len, raw, pg_b64_dec_len(len));
	if (n < 0)
		return false;
	v->nbytes = n;
	v->bytes = palloc(pg_b64_enc_len(n) + 1);
	n = pg_b64_encode(raw, n, v->bytes, pg_b64_enc_len(n));
	v->bytes[Max(n, 0)] = '\0';
	return true;
}

/* A scalar token (text TOK, NUL-terminated) into V as field F's type says. */
static bool
convert(const ProtobufCFieldDescriptor *f, JsonTokenType type, const char *tok, OjScalar *v)
{
	bool		num = type == JSON_TOKEN_NUMBER;
	bool		str = type == JSON_TOKEN_STRING;
	uint64		u = 0;

	switch (f->type)
	{
		case PROTOBUF_C_TYPE_STRING:
			return str;
		case PROTOBUF_C_TYPE_BOOL:
			if (type != JSON_TOKEN_TRUE && type != JSON_TOKEN_FALSE)
				return false;
			v->u = type == JSON_TOKEN_TRUE;
			return true;
		case PROTOBUF_C_TYPE_INT32:
		case PROTOBUF_C_TYPE_SINT32:
		case PROTOBUF_C_TYPE_SFIXED32:
			return (num || str) && parse_int(tok, false, PG_INT32_MIN, PG_INT32_MAX, &v->u);
		case PROTOBUF_C_TYPE_UINT32:
		case PROTOBUF_C_TYPE_FIXED32:
			return (num || str) && parse_int(tok, true, 0, PG_UINT32_MAX, &v->u);
		case PROTOBUF_C_TYPE_INT64:
		case PROTOBUF_C_TYPE_SINT64:
		case PROTOBUF_C_TYPE_SFIXED64:
			return (num || str) && parse_int(tok, false, PG_INT64_MIN, PG_INT64_MAX, &v->u);
		case PROTOBUF_C_TYPE_UINT64:
		case PROTOBUF_C_TYPE_FIXED64:
			return (num || str) && parse_int(tok, true, 0, PG_UINT64_MAX, &v->u);
		case PROTOBUF_C_TYPE_ENUM:
			if (str)
			{
				const ProtobufCEnumValue *ev =
					protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, tok);

				/* an unknown name: the default, as for an unknown field */
				v->u = (uint64) (int64) (ev ? ev->value : 0);
				return true;
			}
			return num && parse_int(tok, false, PG_INT32_MIN, PG_INT32_MAX, &u) &&
				((v->u = u), true);
		case PROTOBUF_C_TYPE_DOUBLE:
		case PROTOBUF_C_TYPE_FLOAT:
			{
				char	   *end;

				if (str && strcmp(tok, "NaN") == 0)
					v->d = NAN;
				else if (str && strcmp(tok, "Infinity") == 0)
					v->d = INFINITY;
				else if (str && strcmp(tok, "-Infinity") == 0)
					v->d = -INFINITY;
				else if (num || str)
				{
					errno = 0;
					v->d = strtod(tok, &end);
					if (*tok == '\0' || *end != '\0' || errno != 0)
						return false;
				}
				else
					return false;
				if (f->type == PROTOBUF_C_TYPE_FLOAT)
					v->d = (float) v->d;
				return true;
			}
		case PROTOBUF_C_TYPE_BYTES:
			return str && decode_bytes(f, tok, v);
		case PROTOBUF_C_TYPE_MESSAGE:
			return false;
	}
	return false;
}

/* One scalar token of field F at p into V; the position after it, or NULL. */
static char *
read_token(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, OjScalar *v)
{
	char	   *end = r->end;
	char	   *e;
	JsonTokenType type;
	const char *tok;
	char		buf[64];
	bool		big;

	v->set = false;
	if (*p == '"')
	{
		if ((e = read_string(p, end, &v->str)) == NULL)
			return NULL;
		type = JSON_TOKEN_STRING;
		if (f->type == PROTOBUF_C_TYPE_STRING)
		{
			v->set = true;		/* kept as its text in the body */
			return e;
		}
		tok = str_scratch(r, &v->str);
	}
	else if (*p == 't' || *p == 'f' || *p == 'n')
	{
		if ((e = ingest_scan_literal(p, end, &type)) == NULL)
			return NULL;
		if (type == JSON_TOKEN_NULL)
			return e;			/* the default */
		tok = type == JSON_TOKEN_TRUE ? "true" : "false";
	}
	else
	{
		if ((e = ingest_scan_number(p, end, &big)) == NULL)
			return NULL;
		type = JSON_TOKEN_NUMBER;
		if (e - p < (int) sizeof(buf))
		{
			memcpy(buf, p, e - p);
			buf[e - p] = '\0';
			tok = buf;
		}
		else
			tok = pnstrdup(p, e - p);
	}
	if (!convert(f, type, tok, v))
		return fail(r, is_hex_id(f) ? "field \"%s\" must be a hex string" :
					"field \"%s\" has a value of the wrong type", f->name);
	v->set = true;
	return e;
}

/*
 * The value of scalar field F at p into V (v->set false: null or absent;
 * of a repeated field, the last element).
 */
static char *
read_scalar(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, OjScalar *v)
{
	char	   *end = r->end;
	char	   *e;

	v->set = false;
	if (p >= end)
		return NULL;
	if (*p == '{')
		return fail(r, "field \"%s\" must not be an object", f->name);
	if (*p != '[')
	{
		if (f->label == PROTOBUF_C_LABEL_REPEATED)
			return (e = read_null(r, p)) ? e : fail(r, "field \"%s\" must be an array", f->name);
		return read_token(r, p, f, v);
	}
	if (f->label != PROTOBUF_C_LABEL_REPEATED)
		return fail(r, "field \"%s\" must not be an array", f->name);
	if (!enter(r))
		return NULL;
	p = skip_ws(p + 1, end);
	if (p < end && *p == ']')
	{
		r->depth--;
		return p + 1;
	}
	for (;;)
	{
		if (p >= end)
			return NULL;
		if (*p == '{')
			return fail(r, "field \"%s\" must not be an object", f->name);
		if (*p == '[')
			return fail(r, "field \"%s\" must not be an array", f->name);
		if ((p = read_token(r, p, f, v)) == NULL)
			return NULL;
		p = skip_ws(p, end);
		if (p < end && *p == ',')
		{
			p = skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == ']')
		{
			r->depth--;
			return p + 1;
		}
		return NULL;
	}
}

/* ---- fields read only to be checked ---- */

static char *check_field(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, void *arg);

static char *
check_message(OjReader *r, char *p, void *arg)
{
	return read_object(r, p, arg, check_field, NULL);
}

/* A field the mapping does not use: checked like the others, then forgotten. */
static char *
check_field(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, void *arg)
{
	OjScalar	v;

	if (f->type == PROTOBUF_C_TYPE_MESSAGE)
		return read_messages(r, p, f, check_message, (void *) f->descriptor);
	return read_scalar(r, p, f, &v);
}

/* ---- AnyValue and KeyValue: their JSON text ---- */

static char *read_any(OjReader *r, char *p, void *arg);
static char *read_kv(OjReader *r, char *p, void *arg);

static void
any_restart(OjAny *a, char kind)
{
	a->out->len = a->start;
	a->out->data[a->start] = '\0';
	a->kind = kind;
}

/* an ArrayValue's or a KeyValueList's "values" */
static char *
values_field(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, void *arg)
{
	if (f->id != 1)
		return check_field(r, p, f, arg);
	return read_messages(r, p, f,
						 f->descriptor == &opentelemetry__proto__common__v1__key_value__descriptor ?
						 read_kv : read_any, arg);
}

/* An ArrayValue or KeyValueList as the AnyValue's text. */
static char *
read_composite(OjReader *r, char *p, OjAny *a, bool kvlist)
{
	OjKvList	list = {0};

	any_restart(a, OTLP_JSON_COMPOSITE);
	appendStringInfoChar(a->out, kvlist ? '{' : '[');
	list.out = a->out;
	list.base = a->out->len;
	p = read_object(r, p, kvlist ? &opentelemetry__proto__common__v1__key_value_list__descriptor :
					&opentelemetry__proto__common__v1__array_value__descriptor, values_field, &list);
	appendStringInfoChar(a->out, kvlist ? '}' : ']');
	return p;
}

static char *
read_array_value(OjReader *r, char *p, void *arg)
{
	return read_composite(r, p, arg, false);
}

static char *
read_kvlist_value(OjReader *r, char *p, void *arg)
{
	return read_composite(r, p, arg, true);
}

static char *
any_field(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, void *arg)
{
	OjAny	   *a = arg;
	OjScalar	v;
	char		buf[MAXINT8LEN + 1];

	switch (f->id)
	{
		case 5:
			return read_messages(r, p, f, read_array_value, a);
		case 6:
			return read_messages(r, p, f, read_kvlist_value, a);
		case 1:
		case 2:
		case 3:
		case 4:
		case 7:
		case 8:
			break;
		default:
			return check_field(r, p, f, arg);
	}
	if ((p = read_scalar(r, p, f, &v)) == NULL || !v.set)
		return p;
	switch (f->id)
	{
		case 1:				/* string_value */
			any_restart(a, OTLP_JSON_STRING);
			put_string(r, a->out, &v.str);
			a->str = v.str;
			break;
		case 2:				/* bool_value */
			any_restart(a, OTLP_JSON_BOOL);
			appendStringInfoString(a->out, v.u ? "true" : "false");
			break;
		case 3:				/* int_value */
			any_restart(a, OTLP_JSON_NUMBER);
			appendBinaryStringInfo(a->out, buf, pg_lltoa((int64) v.u, buf));
			break;
		case 4:				/* double_value */
			any_restart(a, OTLP_JSON_NUMBER);
			otlp_append_double(a->out, v.d);
			break;
		case 7:				/* bytes_value: base64 */
			any_restart(a, OTLP_JSON_COMPOSITE);
			escape_json(a->out, v.bytes);
			break;
		case 8:				/* string_value_strindex (profiles only) */
			any_restart(a, OTLP_JSON_COMPOSITE);
			appendStringInfoString(a->out, "null");
			break;
	}
	return p;
}

/* An AnyValue at p: its JSON text appended to a->out (null when empty). */
static char *
read_any(OjReader *r, char *p, void *arg)
{
	OjAny		a;
	OjKvList   *list = arg;

	/* an ArrayValue's element: comma first */
	if (list->out->len > list->base)
		appendStringInfoCharMacro(list->out, ',');
	a.out = list->out;
	a.start = list->out->len;
	a.kind = OTLP_JSON_NOT_SET;
	p = read_object(r, p, &opentelemetry__proto__common__v1__any_value__descriptor, any_field, &a);
	if (a.kind == OTLP_JSON_NOT_SET)
		appendStringInfoString(a.out, "null");
	return p;
}

/* a KeyValue's value (the last one given counts) */
static char *
read_kv_value(OjReader *r, char *p, void *arg)
{
	OjKv	   *kv = arg;
	OjAny		a;

	if (kv->vstart >= 0)
	{
		kv->list->out->len = kv->vstart;
		kv->list->out->data[kv->vstart] = '\0';
	}
	else
		kv->vstart = kv->list->out->len;
	a.out = kv->list->out;
	a.start = kv->vstart;
	a.kind = OTLP_JSON_NOT_SET;
	p = read_object(r, p, &opentelemetry__proto__common__v1__any_value__descriptor, any_field, &a);
	if (a.kind == OTLP_JSON_NOT_SET)
		appendStringInfoString(a.out, "null");
	kv->kind = a.kind;
	kv->str = a.str;
	return p;
}

static char *
kv_field(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, void *arg)
{
	OjKv	   *kv = arg;
	OjScalar	v;

	if (f->id == 2)
		return read_messages(r, p, f, read_kv_value, kv);
	if (f->id != 1)
		return check_field(r, p, f, arg);
	if ((p = read_scalar(r, p, f, &v)) == NULL || !v.set)
		return p;
	if (!kv->has_key && kv->vstart < 0)
	{
		/* the usual order: the key first, written at once */
		put_string(r, kv->list->out, &v.str);
		appendStringInfoCharMacro(kv->list->out, ':');
	}
	else
		kv->rewrite = true;
	kv->has_key = true;
	kv->key = v.str;
	return p;
}

/* a record's status attribute: the first of each name */
static void
note_status(OjReader *r, OjKv *kv, int vlen)
{
	OjRecCtx   *rc = kv->list->rec;
	int			i;

	if (!kv->has_key)
		return;
	if (str_is(r, &kv->key, "http.response.status_code", 25))
		i = 0;
	else if (str_is(r, &kv->key, "http.status_code", 16))
		i = 1;
	else
		return;
	if (rc->status[i].found)
		return;
	rc->status[i].found = true;
	rc->status[i].start = kv->start;
	rc->status[i].end = kv->list->out->len;
	rc->status[i].vstart = kv->list->out->len - vlen;
	rc->status[i].kind = kv->kind;
	rc->status[i].str = kv->str;
}

/*
 * A KeyValue of the usual shape, as SDKs and collectors write it, read
 * straight: {"key":"K","value":{"stringValue":V}} (or intValue,
 * boolValue, doubleValue), without blanks, K without escapes.  Writes
 * "K":V and returns the position after it; *usual false when the text at
 * p is of another shape (then nothing was written or consumed, and the
 * generic reader reads it).  What it reads is checked and converted by
 * the same functions, with the same nesting bounds, as the generic
 * reader's.
 */
static char *
read_kv_usual(OjReader *r, char *p, OjKv *kv, bool *usual)
{
	char	   *end = r->end;
	StringInfo	out = kv->list->out;
	OjStr		key,
				member;
	char	   *q,
			   *e;
	const ProtobufCFieldDescriptor *f;
	OjAny		a;

	*usual = false;
	/* the KeyValue and its AnyValue: two messages and two objects deeper */
	if (r->frames >= OTLP_MAX_DEPTH || r->depth + 2 > OJ_MAX_JSON_DEPTH ||
		end - p < 8 || memcmp(p, "{\"key\":\"", 8) != 0 ||
		(q = read_string(p + 7, end, &key)) == NULL || key.esc ||
		end - q < 11 || memcmp(q, ",\"value\":{\"", 11) != 0 ||
		(e = read_string(q + 10, end, &member)) == NULL || member.esc ||
		e >= end || *e != ':' ||
		(f = find_field(r, &opentelemetry__proto__common__v1__any_value__descriptor, &member)) == NULL ||
		f->id < 1 || f->id > 4)
		return NULL;
	*usual = true;
	put_string(r, out, &key);
	appendStringInfoCharMacro(out, ':');
	kv->has_key = true;
	kv->key = key;
	kv->vstart = out->len;
	a.out = out;
	a.start = out->len;
	a.kind = OTLP_JSON_NOT_SET;
	if ((e = any_field(r, skip_ws(e + 1, end), f, &a)) == NULL)
		return NULL;
	if (end - e < 2 || e[0] != '}' || e[1] != '}')
	{
		/* more members, or blanks: not the usual shape after all */
		out->len = kv->start;
		out->data[out->len] = '\0';
		kv->has_key = false;
		kv->vstart = -1;
		*usual = false;
		return NULL;
	}
	if (a.kind == OTLP_JSON_NOT_SET)
		appendStringInfoString(out, "null");
	kv->kind = a.kind;
	kv->str = a.str;
	return e + 2;
}

/* A KeyValue at p: "key":value appended to the list (comma first). */
static char *
read_kv(OjReader *r, char *p, void *arg)
{
	OjKvList   *list = arg;
	StringInfo	out = list->out;
	OjKv		kv = {0};
	int			vlen;
	bool		usual;
	char	   *q;

	if (out->len > list->base)
		appendStringInfoCharMacro(out, ',');
	kv.list = list;
	kv.start = out->len;
	kv.vstart = -1;
	kv.kind = OTLP_JSON_NOT_SET;
	q = read_kv_usual(r, p, &kv, &usual);
	if (usual && q == NULL)
		return NULL;
	if (!usual &&
		(q = read_object(r, p, &opentelemetry__proto__common__v1__key_value__descriptor, kv_field, &kv)) == NULL)
		return NULL;
	p = q;
	vlen = kv.vstart >= 0 ? out->len - kv.vstart : 0;
	if (kv.rewrite || !kv.has_key)
	{
		/* the key came after the value, twice, or not at all: "key":value again */
		resetStringInfo(&r->moved);
		appendBinaryStringInfo(&r->moved, out->data + out->len - vlen, vlen);
		out->len = kv.start;
		if (kv.has_key)
			put_string(r, out, &kv.key);
		else
			appendStringInfoString(out, "\"\"");
		appendStringInfoChar(out, ':');
		appendBinaryStringInfo(out, r->moved.data, r->moved.len);
	}
	if (kv.vstart < 0)
	{
		appendStringInfoString(out, "null");
		vlen = 4;
	}
	if (list->rec)
		note_status(r, &kv, vlen);
	else if (list->resource && kv.has_key && kv.kind == OTLP_JSON_STRING &&
			 str_is(r, &kv.key, "service.name", 12))
		r->service_name = str_dup(&kv.str);	/* the last one counts */
	return p;
}

/* ---- the request's messages ---- */

static OtlpJsonRecord *
new_record(OtlpJsonBody *b)
{
	if (b->nrecords == b->maxrecords)
	{
		b->maxrecords = b->maxrecords ? b->maxrecords * 2 : 64;
		b->records = b->records ? repalloc_huge(b->records, b->maxrecords * sizeof(OtlpJsonRecord)) :
			palloc(b->maxrecords * sizeof(OtlpJsonRecord));
	}
	memset(&b->records[b->nrecords], 0, sizeof(OtlpJsonRecord));
	return &b->records[b->nrecords++];
}

/* the record's body (the last one given counts) */
static char *
read_body(OjReader *r, char *p, void *arg)
{
	OjRecCtx   *rc = arg;
	OjAny		a;

	resetStringInfo(&r->value);
	a.out = &r->value;
	a.start = 0;
	a.kind = OTLP_JSON_NOT_SET;
	p = read_object(r, p, &opentelemetry__proto__common__v1__any_value__descriptor, any_field, &a);
	rc->body_kind = a.kind;
	rc->body_str = a.str;
	return p;
}

static char *
record_field(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, void *arg)
{
	OjRecCtx   *rc = arg;
	OtlpJsonRecord *rec = rc->rec;
	OjScalar	v;

	switch (f->id)
	{
		case 5:
			return read_messages(r, p, f, read_body, rc);
		case 6:
			return read_messages(r, p, f, read_kv, &rc->own);
		case 1:
		case 11:
		case 2:
		case 3:
		case 9:
		case 10:
		case 12:
			break;
		default:
			return check_field(r, p, f, arg);
	}
	if ((p = read_scalar(r, p, f, &v)) == NULL || !v.set)
		return p;
	switch (f->id)
	{
		case 1:
			rec->time_ns = v.u;
			break;
		case 11:
			rec->observed_ns = v.u;
			break;
		case 2:
			rec->severity_number = (int32) (int64) v.u;
			break;
		case 3:
			rc->severity_text = v.str;
			rc->has_severity_text = true;
			break;
		case 9:
			rec->trace_id = v.nbytes > 0 ? v.bytes : NULL;
			break;
		case 10:
			rec->span_id = v.nbytes > 0 ? v.bytes : NULL;
			break;
		case 12:
			rc->event_name = v.str;
			rc->has_event_name = true;
			break;
	}
	return p;
}

/* a scalar AnyValue (or a composite's text) as a record's value */
static void
keep_value(OjReader *r, OtlpJsonValue *out, char kind, const OjStr *str,
		   const char *text, int len)
{
	out->kind = kind;
	if (kind == OTLP_JSON_STRING)
		out->text = str_dup(str);
	else if (kind != OTLP_JSON_NOT_SET)
		out->text = pnstrdup(text, len);
}

/* The record's status attribute out of its attrs text, as the status. */
static void
take_status(OjReader *r, OjRecCtx *rc)
{
	OjStatusKv *s = rc->status[0].found ? &rc->status[0] : &rc->status[1];
	StringInfo	own = &r->own;
	int			from = s->start,
				to = s->end;

	if (!s->found)
		return;
	rc->rec->has_status = true;
	keep_value(r, &rc->rec->status, s->kind, &s->str, own->data + s->vstart, s->end - s->vstart);
	/* the comma before it, or else the one after it */
	if (from > 0)
		from--;
	else if (to < own->len)
		to++;
	memmove(own->data + from, own->data + to, own->len - to + 1);
	own->len -= to - from;
}

static char *
read_record(OjReader *r, char *p, void *arg)
{
	OjRecCtx	rc;
	OtlpJsonRecord *rec = new_record(r->body);
	char	   *start = p;

	memset(&rc, 0, sizeof(rc));
	rc.rec = rec;
	rec->scope = r->scope;
	rec->start = p - r->text;
	resetStringInfo(&r->own);
	rc.own.out = &r->own;
	rc.own.rec = &rc;
	if ((p = read_object(r, p, &opentelemetry__proto__logs__v1__log_record__descriptor, record_field, &rc)) == NULL)
		return NULL;
	rec->len = p - start;
	take_status(r, &rc);
	if (rc.has_event_name && rc.event_name.e > rc.event_name.s)
	{
		if (r->own.len > 0)
			appendStringInfoChar(&r->own, ',');
		appendStringInfoString(&r->own, "\"event.name\":");
		put_string(r, &r->own, &rc.event_name);
	}
	if (r->own.len > 0)
	{
		rec->attrs = pnstrdup(r->own.data, r->own.len);
		rec->attrs_len = r->own.len;
	}
	if (rc.has_severity_text)
		rec->severity_text = str_dup(&rc.severity_text);
	keep_value(r, &rec->body, rc.body_kind, &rc.body_str, r->value.data, r->value.len);
	return p;
}

static char *
scope_field(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, void *arg)
{
	OjScalar	v;

	if (f->id == 3)
		return read_messages(r, p, f, read_kv, arg);
	if (f->id != 1 && f->id != 2)
		return check_field(r, p, f, arg);
	if ((p = read_scalar(r, p, f, &v)) == NULL || !v.set)
		return p;
	if (f->id == 1)
	{
		r->scope_name = v.str;
		r->has_scope_name = true;
	}
	else
	{
		r->scope_version = v.str;
		r->has_scope_version = true;
	}
	return p;
}

/* an InstrumentationScope (the last one given counts) */
static char *
read_scope(OjReader *r, char *p, void *arg)
{
	OjKvList	list = {&r->scope_attrs, 0, false, NULL};

	resetStringInfo(&r->scope_attrs);
	r->has_scope_name = r->has_scope_version = false;
	p = read_object(r, p, &opentelemetry__proto__common__v1__instrumentation_scope__descriptor,
					scope_field, &list);
	return p;
}

/* the scope's name and version after its attributes */
static void
named_string(OjReader *r, StringInfo buf, const char *name, bool has, const OjStr *value)
{
	if (!has || value->e == value->s)
		return;
	if (buf->len > 0)
		appendStringInfoChar(buf, ',');
	escape_json(buf, name);
	appendStringInfoChar(buf, ':');
	put_string(r, buf, value);
}

static char *
scope_logs_field(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, void *arg)
{
	if (f->id == 1)
		return read_messages(r, p, f, read_scope, NULL);
	if (f->id == 2)
		return read_messages(r, p, f, read_record, NULL);
	return check_field(r, p, f, arg);
}

static char *
read_scope_logs(OjReader *r, char *p, void *arg)
{
	OtlpJsonBody *b = r->body;
	OtlpJsonScope *s;

	if (b->nscopes == b->maxscopes)
	{
		b->maxscopes = b->maxscopes ? b->maxscopes * 2 : 8;
		b->scopes = b->scopes ? repalloc_huge(b->scopes, b->maxscopes * sizeof(OtlpJsonScope)) :
			palloc(b->maxscopes * sizeof(OtlpJsonScope));
	}
	r->scope = b->nscopes++;
	resetStringInfo(&r->scope_attrs);
	r->has_scope_name = r->has_scope_version = false;
	if ((p = read_object(r, p, &opentelemetry__proto__logs__v1__scope_logs__descriptor,
						 scope_logs_field, NULL)) == NULL)
		return NULL;
	named_string(r, &r->scope_attrs, "otel.scope.name", r->has_scope_name, &r->scope_name);
	named_string(r, &r->scope_attrs, "otel.scope.version", r->has_scope_version, &r->scope_version);
	s = &b->scopes[r->scope];
	s->resource = r->resource;
	s->attrs = pnstrdup(r->scope_attrs.data, r->scope_attrs.len);
	s->attrs_len = r->scope_attrs.len;
	return p;
}

static char *
resource_field(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, void *arg)
{
	if (f->id == 1)
		return read_messages(r, p, f, read_kv, arg);
	return check_field(r, p, f, arg);
}

/* a Resource (the last one given counts) */
static char *
read_resource(OjReader *r, char *p, void *arg)
{
	OjKvList	list = {&r->res, 0, true, NULL};

	resetStringInfo(&r->res);
	r->service_name = NULL;
	return read_object(r, p, &opentelemetry__proto__resource__v1__resource__descriptor,
					   resource_field, &list);
}

static char *
resource_logs_field(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, void *arg)
{
	if (f->id == 1)
		return read_messages(r, p, f, read_resource, NULL);
	if (f->id == 2)
		return read_messages(r, p, f, read_scope_logs, NULL);
	return check_field(r, p, f, arg);
}

static char *
read_resource_logs(OjReader *r, char *p, void *arg)
{
	OtlpJsonBody *b = r->body;
	OtlpJsonResource *res;

	if (b->nresources == b->maxresources)
	{
		b->maxresources = b->maxresources ? b->maxresources * 2 : 8;
		b->resources = b->resources ? repalloc_huge(b->resources, b->maxresources * sizeof(OtlpJsonResource)) :
			palloc(b->maxresources * sizeof(OtlpJsonResource));
	}
	r->resource = b->nresources++;
	resetStringInfo(&r->res);
	r->service_name = NULL;
	if ((p = read_object(r, p, &opentelemetry__proto__logs__v1__resource_logs__descriptor,
						 resource_logs_field, NULL)) == NULL)
		return NULL;
	res = &b->resources[r->resource];
	res->attrs = pnstrdup(r->res.data, r->res.len);
	res->attrs_len = r->res.len;
	res->service_name = r->service_name;
	return p;
}

static char *
request_field(OjReader *r, char *p, const ProtobufCFieldDescriptor *f, void *arg)
{
	if (f->id == 1)
		return read_messages(r, p, f, read_resource_logs, NULL);
	return check_field(r, p, f, arg);
}

/* ---- the body ---- */

/*
 * Why a body the reader stopped at is refused, in the order the checks
 * of a body go: nesting, then JSON syntax (PostgreSQL's parser says
 * what is wrong, with escapes de-escaped as the reader does), then the
 * first value that does not fit the request's messages.
 */
static const char *
why_refused(OjReader *r, char *text, int len)
{
	JsonLexContext *lex;
	JsonParseErrorType err;

	if (r->deep || ingest_json_nesting_depth_limit(text, len, OJ_MAX_JSON_DEPTH) > OJ_MAX_JSON_DEPTH)
		return "the body is nested too deeply";
	lex = makeJsonLexContextCstringLen(text, len, PG_UTF8, true);
	err = pg_parse_json(lex, &nullSemAction);
	if (err != JSON_SUCCESS)
		return psprintf("the body is not valid JSON: %s", json_errdetail(err, lex));
	if (r->error)
		return psprintf("the body is not an OTLP JSON ExportLogsServiceRequest: %s", r->error);
	/* not reached: the reader takes every JSON text PostgreSQL's parser takes */
	return "the body is not an OTLP JSON ExportLogsServiceRequest";
}

/*
 * Read the JSON text (valid text, without NUL, checked by the caller) as
 * an ExportLogsServiceRequest, allocated in the current memory context.
 * Returns it, or NULL with *why set.
 */
OtlpJsonBody *
otlp_json_read(char *text, int len, const char **why)
{
	OjReader	r;
	char	   *p;

	memset(&r, 0, sizeof(r));
	r.text = text;
	r.end = text + len;
	r.body = palloc0(sizeof(OtlpJsonBody));
	initStringInfo(&r.scratch);
	initStringInfo(&r.moved);
	initStringInfo(&r.res);
	initStringInfo(&r.scope_attrs);
	initStringInfo(&r.own);
	initStringInfo(&r.value);
	p = skip_ws(text, r.end);
	if (p < r.end && *p != '{')
		fail(&r, "%s", "the body must be a JSON object (an ExportLogsServiceRequest)");
	else if (p < r.end)
	{
		r.frames = 1;
		p = read_object(&r, p, &opentelemetry__proto__collector__logs__v1__export_logs_service_request__descriptor,
						request_field, NULL);
		if (p != NULL && skip_ws(p, r.end) == r.end)
			return r.body;
	}
	*why = why_refused(&r, text, len);
	return NULL;
}

/* ---- one record as the RecState the record checks take ---- */

static void
set_value(RecState *st, RecField f, const OtlpJsonValue *v)
{
	switch (v->kind)
	{
		case OTLP_JSON_STRING:
			st->val[f] = v->text;
			st->type[f] = JSON_TOKEN_STRING;
			break;
		case OTLP_JSON_NUMBER:
			/* an integer, or a double ("NaN" and the infinities quoted) */
			st->val[f] = v->text;
			st->type[f] = v->text[0] == '"' ? JSON_TOKEN_STRING : JSON_TOKEN_NUMBER;
			break;
		case OTLP_JSON_BOOL:
			st->val[f] = v->text;
			st->type[f] = v->text[0] == 't' ? JSON_TOKEN_TRUE : JSON_TOKEN_FALSE;
			break;
		case OTLP_JSON_COMPOSITE:
			/* an array, a kvlist or bytes: its JSON text */
			st->nonscalar[f] = true;
			if (f == F_MESSAGE)
				st->raw_message = v->text;
			break;
		default:
			break;
	}
}

/*
 * Record K of the body as the RecState the record checks take: the same
 * mapping as a protobuf record's (otlp.c).  Every string of a JSON body
 * is valid text (the body was checked as a whole, and the \u escapes
 * the reader takes are characters), so none is rejected as not text.
 */
void
otlp_json_map_record(const OtlpJsonBody *b, int k, RecState *st)
{
	const OtlpJsonRecord *rec = &b->records[k];
	const OtlpJsonScope *scope = &b->scopes[rec->scope];
	const OtlpJsonResource *res = &b->resources[scope->resource];
	uint64		ns = rec->time_ns ? rec->time_ns : rec->observed_ns;

	memset(st, 0, sizeof(*st));
	initStringInfo(&st->attrs);
	if (ns != 0)
	{
		st->val[F_TS] = otlp_ns_to_rfc3339(ns);
		st->type[F_TS] = JSON_TOKEN_STRING;
		if (st->val[F_TS] == NULL)
			st->bad = "time_unix_nano is out of range";
	}
	if (res->service_name)
	{
		st->val[F_SOURCE] = res->service_name;
		st->type[F_SOURCE] = JSON_TOKEN_STRING;
	}
	if (rec->severity_text && rec->severity_text[0])
	{
		st->val[F_LEVEL] = rec->severity_text;
		st->type[F_LEVEL] = JSON_TOKEN_STRING;
	}
	if (rec->severity_number != 0)
	{
		st->val[F_SEVERITY_NUMBER] = psprintf("%d", (int) rec->severity_number);
		st->type[F_SEVERITY_NUMBER] = JSON_TOKEN_NUMBER;
	}
	set_value(st, F_MESSAGE, &rec->body);
	if (rec->has_status)
		set_value(st, F_STATUS, &rec->status);
	if (rec->trace_id)
	{
		st->val[F_TRACE_ID] = rec->trace_id;
		st->type[F_TRACE_ID] = JSON_TOKEN_STRING;
	}
	if (rec->span_id)
	{
		st->val[F_SPAN_ID] = rec->span_id;
		st->type[F_SPAN_ID] = JSON_TOKEN_STRING;
	}
	otlp_compose_attrs(st, res->attrs, res->attrs_len, scope->attrs, scope->attrs_len,
					   rec->attrs, rec->attrs_len);
}
