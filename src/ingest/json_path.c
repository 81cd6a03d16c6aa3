/*-------------------------------------------------------------------------
 *
 * json_path.c
 *		The generic parse of one record through PostgreSQL's JSON parser
 *		(pg_parse_json, common/jsonapi.h): what the fast scanner (scanner.c)
 *		leaves to it -- \u escapes it does not decode, escaped names, syntax
 *		errors -- with the same records, rejects and reasons.
 *
 * Before the parser sees a record, \u escapes the database encoding
 * cannot hold are refused here (the lexer would raise an error).  The
 * callbacks collect the same RecState as the scanner; record.c checks it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "ingest/parse_int.h"

static void
depth_inc(void *state)
{
	((DepthState *) state)->depth++;
}

static void
depth_dec(void *state)
{
	((DepthState *) state)->depth--;
}

/* The first character of JSON text that parsed: '{', '[', '"', digit... */
static char
first_char(const char *text, int len)
{
	int			i = 0;

	while (i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r'))
		i++;
	return i < len ? text[i] : '\0';
}

static void
rec_field_start(void *state, char *fname, bool isnull)
{
	RecState   *st = state;
	int			rank;

	if (st->d.depth != 1)
		return;
	st->cur = ingest_field_of(fname, &rank);
	switch (ingest_field_claim(st, st->cur, rank, isnull))
	{
		case FIELD_TAKE:
			break;
		case FIELD_LOSE:
			st->cur = F_ATTR;
			break;
		case FIELD_DISPLACE:
			/* a name listed before the holder's (or a null holder): the holder goes to attrs */
			appendStringInfoChar(&st->attrs, st->attrs.len == 0 ? '{' : ',');
			escape_json(&st->attrs, ingest_field_name(st->rank[st->cur]));
			appendStringInfoChar(&st->attrs, ':');
			appendBinaryStringInfo(&st->attrs, st->held[st->cur], st->heldlen[st->cur]);
			break;
	}
	if (st->cur != F_ATTR)
		st->rank[st->cur] = rank;
	st->cur_start = st->d.lex->token_start;
	st->cur_scalar = false;
}

static void
rec_field_end(void *state, char *fname, bool isnull)
{
	RecState   *st = state;
	char	   *end = st->d.lex->prev_token_terminator;

	if (st->d.depth != 1)
		return;
	if (st->cur != F_ATTR)
	{
		st->held[st->cur] = st->cur_start;
		st->heldlen[st->cur] = end - st->cur_start;
	}
	if (st->cur == F_ATTR)
	{
		/* keep the field as it came: name re-escaped, value's raw text */
		appendStringInfoChar(&st->attrs, st->attrs.len == 0 ? '{' : ',');
		escape_json(&st->attrs, fname);
		appendStringInfoChar(&st->attrs, ':');
		appendBinaryStringInfo(&st->attrs, st->cur_start, end - st->cur_start);
	}
	else if (!st->cur_scalar)
	{
		st->nonscalar[st->cur] = true;
		st->val[st->cur] = NULL;
		if (st->cur == F_MESSAGE)
			st->raw_message = pnstrdup(st->cur_start, end - st->cur_start);
	}
}

static void
rec_scalar(void *state, char *token, JsonTokenType tokentype)
{
	RecState   *st = state;

	if (tokentype == JSON_TOKEN_NUMBER && !ingest_number_fits_numeric(token))
		st->bad = "a number is too large";
	if (st->d.depth != 1)
		return;
	st->cur_scalar = true;
	if (st->cur != F_ATTR)
	{
		st->nonscalar[st->cur] = false;
		st->raw_message = st->cur == F_MESSAGE ? NULL : st->raw_message;
		st->val[st->cur] = tokentype == JSON_TOKEN_NULL ? NULL : token;
		st->type[st->cur] = tokentype;
	}
}

/*
 * Can the database encoding hold code point cp?  The JSON lexer turns a
 * \u escape into the database encoding with pg_unicode_to_server, which
 * raises an error for a character the encoding lacks; so does jsonb_in
 * for attrs in the batch's COPY.  The conversion function is looked up
 * once (in a short transaction when there is none: the worker parses
 * outside transactions) and called in its no-error mode.
 */
static bool
unicode_fits_database(pg_wchar cp)
{
	static bool looked_up = false;
	static bool have_conv = false;
	static FmgrInfo conv;
	unsigned char utf8[8];
	unsigned char out[8 * MAX_CONVERSION_GROWTH + 1];
	int			len;

	if (cp < 0x80 || GetDatabaseEncoding() == PG_UTF8)
		return true;
	if (!looked_up)
	{
		bool		own_xact = !IsTransactionState();
		Oid			proc;

		if (own_xact)
			StartTransactionCommand();
		proc = FindDefaultConversionProc(PG_UTF8, GetDatabaseEncoding());
		if (OidIsValid(proc))
		{
			fmgr_info_cxt(proc, &conv, TopMemoryContext);
			have_conv = true;
		}
		if (own_xact)
			CommitTransactionCommand();
		looked_up = true;
	}
	if (!have_conv)
		return false;
	unicode_to_utf8(cp, utf8);
	len = pg_utf_mblen(utf8);
	return DatumGetInt32(FunctionCall6(&conv,
									   Int32GetDatum(PG_UTF8),
									   Int32GetDatum(GetDatabaseEncoding()),
									   CStringGetDatum((char *) utf8),
									   CStringGetDatum((char *) out),
									   Int32GetDatum(len),
									   BoolGetDatum(true))) == len;
}

static int
hex4(const char *s, const char *end)
{
	int			v = 0;

	if (end - s < 4)
		return -1;
	for (int i = 0; i < 4; i++)
	{
		char		c = s[i];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= c - '0';
		else if (c >= 'a' && c <= 'f')
			v |= c - 'a' + 10;
		else if (c >= 'A' && c <= 'F')
			v |= c - 'A' + 10;
		else
			return -1;
	}
	return v;
}

/*
 * The first \u escape in text whose character the database encoding
 * cannot hold, as a code point, or 0.  Malformed escapes and lone
 * surrogates are left to the lexer, which reports them without raising.
 */
static pg_wchar
unconvertible_escape(const char *text, int len)
{
	const char *end = text + len;

	if (GetDatabaseEncoding() == PG_UTF8)
		return 0;
	for (const char *p = text; p < end; p++)
	{
		int			hi,
					lo;
		pg_wchar	cp;

		if (*p != '\\')
			continue;
		if (p + 1 < end && p[1] != 'u')
		{
			p++;				/* \\, \" ...: the next character is not an escape */
			continue;
		}
		if ((hi = hex4(p + 2, end)) < 0)
			continue;
		p += 5;
		cp = hi;
		if (hi >= 0xD800 && hi <= 0xDBFF)
		{
			if (p + 2 < end && p[1] == '\\' && p[2] == 'u' &&
				(lo = hex4(p + 3, end)) >= 0xDC00 && lo <= 0xDFFF)
			{
				cp = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
				p += 6;
			}
			else
				continue;
		}
		else if (hi >= 0xDC00 && hi <= 0xDFFF)
			continue;
		if (!unicode_fits_database(cp))
			return cp;
	}
	return 0;
}

/*
 * One record's text through pg_parse_json into the batch, as a record
 * (checked by ingest_finish_record) or a reject: invalid JSON, not an
 * object, or a \u escape the database encoding cannot hold.
 */
void
ingest_parse_record(IngestBatch *batch, const IngestOrigin *origin, char *text, int len)
{
	RecState	st;
	JsonSemAction sem;
	JsonParseErrorType err;
	pg_wchar	cp;

	if ((cp = unconvertible_escape(text, len)) != 0)
	{
		ingest_add_reject(batch, origin,
						  psprintf("character U+%04X (a \\u escape) has no equivalent in the database encoding %s",
								   cp, GetDatabaseEncodingName()),
						  text, len, false, 0);
		return;
	}
	memset(&st, 0, sizeof(st));
	memset(&sem, 0, sizeof(sem));
	initStringInfo(&st.attrs);
	st.d.lex = makeJsonLexContextCstringLen(text, len, GetDatabaseEncoding(), true);
	sem.semstate = &st;
	sem.object_start = depth_inc;
	sem.object_end = depth_dec;
	sem.array_start = depth_inc;
	sem.array_end = depth_dec;
	sem.object_field_start = rec_field_start;
	sem.object_field_end = rec_field_end;
	sem.scalar = rec_scalar;

	err = pg_parse_json(st.d.lex, &sem);
	if (err != JSON_SUCCESS)
	{
		ingest_add_reject(batch, origin, psprintf("invalid JSON: %s", json_errdetail(err, st.d.lex)),
						  text, len, false, 0);
		return;
	}
	if (first_char(text, len) != '{')
	{
		ingest_add_reject(batch, origin, "a record must be a JSON object", text, len, false, 0);
		return;
	}
	ingest_finish_record(batch, origin, &st, text, len);
}


/*
 * For a door that runs pg_parse_json over a whole body (loki.c): the
 * first \u escape the database encoding cannot hold, or 0.
 */
pg_wchar
ingest_unconvertible_escape(const char *text, int len)
{
	return unconvertible_escape(text, len);
}
