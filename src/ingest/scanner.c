/*-------------------------------------------------------------------------
 *
 * scanner.c
 *		The fast path: a strict one-pass JSON scanner for what clients
 *		usually send (objects and arrays of objects, nested attrs and \u
 *		escapes of characters the database has included), which fills the
 *		same RecState as the generic path and keeps unmapped fields as raw
 *		spans for attrs.
 *
 * It accepts a strict subset of what PostgreSQL's JSON parser accepts;
 * whatever it is unsure of makes it give up on the whole unit before
 * anything was added, and the unit goes through json_path.c instead.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "ingest/parse_int.h"

/* ---------------------------------------------------------------------
 * Fast path: a strict one-pass scanner for what clients usually send
 * ---------------------------------------------------------------------
 *
 * pg_parse_json with callbacks allocates every field name and scalar,
 * de-escapes byte by byte, and an array frame is lexed twice (once to
 * split it, once per record): that was about a third of the ingest
 * worker's time.  The scanner below walks a unit once, keeps attrs as
 * raw spans (nested objects and arrays included: flat_attrs.c makes the
 * jsonb from them) and fills the same RecState as the callbacks do, then
 * hands it to ingest_finish_record.
 *
 * It accepts a strict subset of what PostgreSQL's JSON parser accepts
 * (so attrs can never make the jsonb fail in the batch's COPY): anything
 * it is not sure about -- a \u escape it cannot decode here (see
 * unicode_escape), an escaped field name, a syntax error, a non-object
 * array element, nesting past INGEST_MAX_JSON_DEPTH -- makes it give up
 * on the whole unit before anything was added to the batch, and the unit
 * goes through the pg_parse_json path, which yields the usual records,
 * rejects and error texts.
 */

static inline int
hex_digit(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* The four hex digits at p (p + 4 <= end checked by the caller), or -1. */
static inline int
hex4_at(const char *p)
{
	int			a = hex_digit(p[0]),
				b = hex_digit(p[1]),
				c = hex_digit(p[2]),
				d = hex_digit(p[3]);

	if ((a | b | c | d) < 0)
		return -1;
	return (a << 12) | (b << 8) | (c << 4) | d;
}

/*
 * The \u escape at p (its backslash): its code point, and in *elen the
 * escape's length (6, or 12 for a surrogate pair).  0 when the scanner
 * must leave it to PostgreSQL's lexer, which refuses or converts it with
 * its own messages: malformed, \u0000 (not text), a lone surrogate, or
 * any non-ASCII character when the database encoding is not UTF-8 (the
 * generic path checks that the encoding has the character).  So every
 * escape the scanner decodes is one the lexer, and jsonb_in, accept
 * and decode to the same character.
 */
static pg_wchar
unicode_escape(const char *p, const char *end, int *elen)
{
	int			hi,
				lo;

	if (end - p < 6 || (hi = hex4_at(p + 2)) <= 0)
		return 0;
	*elen = 6;
	if (hi >= 0xDC00 && hi <= 0xDFFF)
		return 0;
	if (hi >= 0xD800 && hi <= 0xDBFF)
	{
		if (end - p < 12 || p[6] != '\\' || p[7] != 'u' ||
			(lo = hex4_at(p + 8)) < 0xDC00 || lo > 0xDFFF)
			return 0;
		*elen = 12;
		hi = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
	}
	if (hi >= 0x80 && GetDatabaseEncoding() != PG_UTF8)
		return 0;
	return (pg_wchar) hi;
}

static inline char *
scan_string(char *p, char *end, bool *has_esc)
{
	*has_esc = false;
	for (p++; p < end; p++)
	{
		unsigned char c = (unsigned char) *p;

		if (c == '"')
			return p + 1;
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
					return NULL;	/* not JSON: the slow path says why */
			}
			*has_esc = true;
		}
		else if (c < 0x20)
			return NULL;
	}
	return NULL;
}

/*
 * The string between quotes s..e, de-escaped, NUL-terminated.  It is
 * preceded by a text varlena header (see TEXT_OF), so that the batch
 * writer can hand it to COPY as a text value without copying it again.
 */
char *
ingest_json_decode_string(const char *s, const char *e, bool has_esc)
{
	char	   *t = palloc(VARHDRSZ + e - s + 1);
	char	   *out = t + VARHDRSZ;
	char	   *o = out;

	if (!has_esc)
	{
		memcpy(out, s, e - s);
		out[e - s] = '\0';
		SET_VARSIZE(t, VARHDRSZ + e - s);
		return out;
	}
	while (s < e)
	{
		if (*s != '\\')
		{
			*o++ = *s++;
			continue;
		}
		s++;
		switch (*s)
		{
			case 'b':
				*o++ = '\b';
				break;
			case 'f':
				*o++ = '\f';
				break;
			case 'n':
				*o++ = '\n';
				break;
			case 'r':
				*o++ = '\r';
				break;
			case 't':
				*o++ = '\t';
				break;
			case 'u':
				{
					/* checked by scan_string: a character it decodes */
					int			elen = 6;
					pg_wchar	cp = unicode_escape(s - 1, e, &elen);

					if (cp < 0x80)
						*o++ = (char) cp;
					else
					{
						unicode_to_utf8(cp, (unsigned char *) o);
						o += pg_utf_mblen((unsigned char *) o);
					}
					s += elen - 2;
					break;
				}
			default:			/* " \ / */
				*o++ = *s;
				break;
		}
		s++;
	}
	*o = '\0';
	SET_VARSIZE(t, VARHDRSZ + o - out);
	return out;
}

/*
 * A JSON number at p (RFC 8259 grammar, as PostgreSQL's lexer reads it).
 * Returns its end or NULL.  *too_big is set when numeric (jsonb) could
 * not hold it, by the same rule as ingest_number_fits_numeric.
 */
static inline char *
scan_number(char *p, char *end, bool *too_big)
{
	char	   *start = p;

	if (p < end && *p == '-')
		p++;
	if (p >= end)
		return NULL;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (p < end && IS_DIGIT(*p))
			p++;
	else
		return NULL;
	if (p < end && *p == '.')
	{
		p++;
		if (p >= end || !IS_DIGIT(*p))
			return NULL;
		while (p < end && IS_DIGIT(*p))
			p++;
	}
	if (p < end && (*p == 'e' || *p == 'E'))
	{
		char	   *e = p;
		bool		neg = false;
		long		exp = 0;

		p++;
		if (p < end && (*p == '+' || *p == '-'))
			neg = *p++ == '-';
		if (p >= end || !IS_DIGIT(*p))
			return NULL;
		while (p < end && IS_DIGIT(*p))
		{
			if (exp < 100000)
				exp = exp * 10 + (*p - '0');
			p++;
		}
		if (neg)
			exp = -exp;
		if (!(exp > -1000 && exp < 1000 && (e - start) < 1000))
			*too_big = true;
	}
	else if (p - start >= 1000)
		*too_big = true;
	return p;
}

static inline char *
scan_literal(char *p, char *end, JsonTokenType *type)
{
	if (end - p >= 4 && memcmp(p, "true", 4) == 0)
	{
		*type = JSON_TOKEN_TRUE;
		return p + 4;
	}
	if (end - p >= 5 && memcmp(p, "false", 5) == 0)
	{
		*type = JSON_TOKEN_FALSE;
		return p + 5;
	}
	if (end - p >= 4 && memcmp(p, "null", 4) == 0)
	{
		*type = JSON_TOKEN_NULL;
		return p + 4;
	}
	return NULL;
}

/*
 * The primitives above for the other one-pass readers (otlp_json.c):
 * the same grammar, so that they accept what this scanner and
 * PostgreSQL's lexer accept.
 */
int
ingest_hex4(const char *p)
{
	return hex4_at(p);
}

char *
ingest_scan_number(char *p, char *end, bool *too_big)
{
	return scan_number(p, end, too_big);
}

char *
ingest_scan_literal(char *p, char *end, JsonTokenType *type)
{
	return scan_literal(p, end, type);
}

/* Any JSON value at p; returns its end or NULL. */
static char *
scan_value(char *p, char *end, int depth, bool *too_big)
{
	bool		esc;
	JsonTokenType t;

	if (p >= end)
		return NULL;
	switch (*p)
	{
		case '"':
			return scan_string(p, end, &esc);
		case '{':
		case '[':
			{
				char		close = *p == '{' ? '}' : ']';
				bool		obj = *p == '{';

				if (depth >= INGEST_MAX_JSON_DEPTH)
					return NULL;
				p = skip_ws(p + 1, end);
				if (p < end && *p == close)
					return p + 1;
				for (;;)
				{
					if (obj)
					{
						if (p >= end || *p != '"' || (p = scan_string(p, end, &esc)) == NULL)
							return NULL;
						p = skip_ws(p, end);
						if (p >= end || *p != ':')
							return NULL;
						p = skip_ws(p + 1, end);
					}
					if ((p = scan_value(p, end, depth + 1, too_big)) == NULL)
						return NULL;
					p = skip_ws(p, end);
					if (p < end && *p == ',')
					{
						p = skip_ws(p + 1, end);
						continue;
					}
					if (p < end && *p == close)
						return p + 1;
					return NULL;
				}
			}
		case 't':
		case 'f':
		case 'n':
			return scan_literal(p, end, &t);
		default:
			return scan_number(p, end, too_big);
	}
}

/* Add "name":value (raw JSON texts) to the attrs being built in abuf. */
static void
attrs_append(StringInfo abuf, MemoryContext scratch, const char *name, int namelen,
			 bool quote, const char *val, int vallen)
{
	if (abuf->data == NULL)
	{
		/* scratch, not the batch's memory (the current context) */
		MemoryContext old = MemoryContextSwitchTo(scratch);

		initStringInfo(abuf);
		MemoryContextSwitchTo(old);
	}
	appendStringInfoChar(abuf, abuf->len == 0 ? '{' : ',');
	if (quote)
		appendStringInfoChar(abuf, '"');
	appendBinaryStringInfo(abuf, name, namelen);
	if (quote)
		appendStringInfoChar(abuf, '"');
	appendStringInfoChar(abuf, ':');
	appendBinaryStringInfo(abuf, val, vallen);
}

/*
 * One record object at *pp (its '{'): fills st like the pg_parse_json
 * callbacks would, advances *pp past the '}'.  false = give up.
 *
 * The field values it keeps, and the final attrs text, are allocated in
 * the current memory context, which ingest_fast_unit makes the batch's, so that
 * ingest_finish_record need not copy them again (a record given up on leaves
 * them there until the batch is reset; at most the message's size).
 * abuf is scratch space for building attrs, shared by a unit's records.
 * depth is the record's own nesting level (2 inside an array), so that
 * values nested deeper than INGEST_MAX_JSON_DEPTH in all make it give up.
 */
bool
ingest_scan_record(char **pp, char *end, RecState *st, StringInfo abuf, int depth,
				   MemoryContext scratch)
{
	char	   *p = *pp;
	bool		too_big = false;

	memset(st, 0, sizeof(RecState));
	st->attrs_flat = true;
	st->in_batch = true;
	if (abuf->data)
		resetStringInfo(abuf);
	p = skip_ws(p + 1, end);
	if (p < end && *p == '}')
	{
		*pp = p + 1;
		return true;
	}
	for (;;)
	{
		char	   *ks,
				   *ke,
				   *vs,
				   *ve;
		bool		esc;
		RecField	f;
		int			rank;
		FieldClaim	claim;

		if (p >= end || *p != '"')
			return false;
		ks = p;
		if ((ke = scan_string(p, end, &esc)) == NULL || esc)
			return false;
		f = ingest_field_of_len(ks + 1, ke - ks - 2, &rank);
		p = skip_ws(ke, end);
		if (p >= end || *p != ':')
			return false;
		vs = p = skip_ws(p + 1, end);
		if (p >= end)
			return false;
		claim = ingest_field_claim(st, f, rank, *vs == 'n');
		if (claim == FIELD_LOSE)
			f = F_ATTR;

		if (f == F_ATTR)
		{
			if ((ve = scan_value(vs, end, depth, &too_big)) == NULL)
				return false;
			attrs_append(abuf, scratch, ks, ke - ks, false, vs, ve - vs);	/* name as it came */
		}
		else if (*vs == '{' || *vs == '[')
		{
			if ((ve = scan_value(vs, end, depth, &too_big)) == NULL)
				return false;
			st->nonscalar[f] = true;
			st->val[f] = NULL;
			if (f == F_MESSAGE)
				st->raw_message = pnstrdup(vs, ve - vs);
		}
		else
		{
			JsonTokenType t;
			char	   *v;

			if (*vs == '"')
			{
				if ((ve = scan_string(vs, end, &esc)) == NULL)
					return false;
				t = JSON_TOKEN_STRING;
				v = ingest_json_decode_string(vs + 1, ve - 1, esc);
			}
			else if (*vs == 't' || *vs == 'f' || *vs == 'n')
			{
				if ((ve = scan_literal(vs, end, &t)) == NULL)
					return false;
				v = t == JSON_TOKEN_NULL ? NULL : pnstrdup(vs, ve - vs);
			}
			else
			{
				if ((ve = scan_number(vs, end, &too_big)) == NULL)
					return false;
				t = JSON_TOKEN_NUMBER;
				v = pnstrdup(vs, ve - vs);
			}
			st->nonscalar[f] = false;
			if (f == F_MESSAGE)
				st->raw_message = NULL;
			st->val[f] = v;
			st->type[f] = t;
		}
		if (f != F_ATTR)
		{
			if (claim == FIELD_DISPLACE)
			{
				/* a name listed before the holder's (or a null holder): the holder goes to attrs */
				const char *name = ingest_field_name(st->rank[f]);

				if (st->held[f][0] == '{' || st->held[f][0] == '[')
					st->attrs_flat = false;
				attrs_append(abuf, scratch, name, strlen(name), true,
							 st->held[f], st->heldlen[f]);
			}
			st->rank[f] = rank;
			st->held[f] = vs;
			st->heldlen[f] = ve - vs;
		}
		p = skip_ws(ve, end);
		if (p < end && *p == ',')
		{
			p = skip_ws(p + 1, end);
			continue;
		}
		if (p < end && *p == '}')
			break;
		return false;
	}
	if (too_big)
		st->bad = "a number is too large";
	if (abuf->data && abuf->len > 0)
	{
		appendStringInfoChar(abuf, '}');
		st->attrs_text = palloc(abuf->len + 1);
		memcpy(st->attrs_text, abuf->data, abuf->len + 1);
	}
	*pp = p + 1;
	return true;
}

/*
 * Longest array the scanner takes in one go.  Its records are added all
 * at once (or none, when it gives up), so a longer array goes through
 * parse_elements instead, which can spread it over batches.
 */
#define FAST_ARRAY_MAX	1000

/*
 * One unit (an object, or an array of objects) by the fast scanner.
 * Returns true when it was handled.  false: nothing was added, and
 * *several tells that a valid first value was followed by more text
 * (newline-delimited input, when may_be_several).
 */
bool
ingest_fast_unit(IngestBatch *batch, const IngestOrigin *origin, char *text, int len,
				 bool may_be_several, bool *several)
{
	char	   *end = text + len;
	char	   *p = skip_ws(text, end);
	RecState   *recs;
	char	  **starts;
	int		   *lens;
	int			n = 0,
				max;
	StringInfoData abuf;
	MemoryContext oldcxt;
	bool		ok;

	*several = false;
	if (p >= end)
		return false;
	abuf.data = NULL;			/* made when a record has attrs */
	abuf.len = 0;
	if (*p == '{')
	{
		RecState	st;

		oldcxt = MemoryContextSwitchTo(batch->cxt);
		ok = ingest_scan_record(&p, end, &st, &abuf, 1, oldcxt);
		MemoryContextSwitchTo(oldcxt);
		if (!ok)
			return false;
		if (skip_ws(p, end) < end)
		{
			*several = may_be_several;
			return false;
		}
		ingest_finish_record(batch, origin, &st, text, len);
		return true;
	}
	if (*p != '[')
		return false;

	max = 8;
	recs = palloc(max * sizeof(RecState));
	starts = palloc(max * sizeof(char *));
	lens = palloc(max * sizeof(int));
	p = skip_ws(p + 1, end);
	if (p < end && *p == ']')
		p++;
	else
	{
		for (;;)
		{
			char	   *s = p;

			if (p >= end || *p != '{' || n >= FAST_ARRAY_MAX)
				return false;
			if (n >= max)
			{
				max *= 2;
				recs = repalloc(recs, max * sizeof(RecState));
				starts = repalloc(starts, max * sizeof(char *));
				lens = repalloc(lens, max * sizeof(int));
			}
			oldcxt = MemoryContextSwitchTo(batch->cxt);
			ok = ingest_scan_record(&p, end, &recs[n], &abuf, 2, oldcxt);
			MemoryContextSwitchTo(oldcxt);
			if (!ok)
				return false;
			starts[n] = s;
			lens[n] = p - s;
			n++;
			p = skip_ws(p, end);
			if (p < end && *p == ',')
			{
				p = skip_ws(p + 1, end);
				continue;
			}
			if (p < end && *p == ']')
			{
				p++;
				break;
			}
			return false;
		}
	}
	if (skip_ws(p, end) < end)
	{
		*several = may_be_several;
		return false;
	}
	for (int i = 0; i < n; i++)
		ingest_finish_record(batch, origin, &recs[i], starts[i], lens[i]);
	return true;
}

