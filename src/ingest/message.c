/*-------------------------------------------------------------------------
 *
 * message.c
 *		A protocol message (one JSON object, a JSON array of objects, or
 *		newline-delimited objects) into IngestRecords and IngestRejects: the
 *		entry points, the split into units (lines, elements), the checks of
 *		each unit as a whole (text, depth), and the choice of parse path.
 *
 * The ingest worker calls this outside any transaction, so nothing here
 * may raise an error for bad input: every problem a client can cause
 * becomes a reject with a reason.  In particular anything COPY would
 * refuse later (invalid UTF-8, NUL characters, numbers jsonb cannot hold,
 * \u escapes the database encoding lacks) is refused here, because a COPY
 * error would abort the whole batch; and nesting is bounded before
 * PostgreSQL's recursive JSON parser sees it.
 *
 * The unit of refusal is one record: an NDJSON line, an array element,
 * or a message that cannot be split.  Each is checked and parsed on its
 * own, in scratch memory reset after it, and a reject keeps the record's
 * exact bytes.  A message of many records can be parsed over several
 * batches (ingest_parse_message_part), so that one message never makes a
 * batch, or the time between two turns of the event loop, unbounded.
 * Which path reads a unit: the fast scanner (scanner.c) when it can,
 * else PostgreSQL's JSON parser (json_path.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "ingest/parse_int.h"

/*
 * Scratch memory: parse_cxt for a message, line_cxt for one line of
 * newline-delimited input, rec_cxt for one record of the pg_parse_json
 * path.  Each is reset when its unit is done.
 */
static MemoryContext parse_cxt = NULL;
static MemoryContext line_cxt = NULL;
static MemoryContext rec_cxt = NULL;

/* What parse_unit did with a unit. */
typedef enum UnitResult
{
	UNIT_DONE,					/* its records and rejects are in the batch */
	UNIT_ARRAY,					/* a valid array: its elements are next */
	UNIT_NOT_ONE_VALUE			/* (only when trying) nothing was added */
} UnitResult;

/*
 * One JSON value, checked by pg_parse_json: an object is a record, an
 * array a list of records.  When trying (a whole message that may be
 * newline-delimited), a unit that is not exactly one valid JSON value
 * adds nothing and returns UNIT_NOT_ONE_VALUE, so that the caller can
 * split it into lines instead: a broken first line must not take the
 * lines after it down with it.  Otherwise a unit that is not valid JSON
 * is refused as a whole.
 *
 * For an array, *elems is set to its first element (or its ']'): the
 * caller walks the elements with parse_elements, which can stop when the
 * batch is full and go on later.  The caller has checked the unit's
 * encoding and nesting depth.
 */
static UnitResult
parse_unit(IngestBatch *batch, const IngestOrigin *origin, char *text, int len,
		   bool trying, char **elems)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType err;
	char	   *p;

	memset(&sem, 0, sizeof(sem));
	lex = makeJsonLexContextCstringLen(text, len, GetDatabaseEncoding(), false);
	err = pg_parse_json(lex, &sem);
	if (err != JSON_SUCCESS && trying)
		return UNIT_NOT_ONE_VALUE;
	if (err != JSON_SUCCESS)
	{
		ingest_add_reject(batch, origin, psprintf("invalid JSON: %s", json_errdetail(err, lex)),
						  text, len, false, 0);
		return UNIT_DONE;
	}
	p = skip_ws(text, text + len);
	if (*p == '[')
	{
		*elems = p + 1;
		return UNIT_ARRAY;
	}
	ingest_parse_record(batch, origin, text, len);
	return UNIT_DONE;
}

/*
 * The end of the JSON value at p, in text that pg_parse_json accepted:
 * only strings and brackets need to be followed.
 */
static char *
value_end(char *p, char *end)
{
	int			depth = 0;

	for (; p < end; p++)
	{
		char		c = *p;

		if (c == '"')
		{
			for (p++; p < end && *p != '"'; p++)
				if (*p == '\\')
					p++;
			if (depth == 0)
				return p + 1;
		}
		else if (c == '{' || c == '[')
			depth++;
		else if (c == '}' || c == ']')
		{
			if (--depth == 0)
				return p + 1;
			if (depth < 0)
				return p;		/* the end of a scalar at the array's end */
		}
		else if (depth == 0 && (c == ',' || IS_WS(c)))
			return p;
	}
	return p;
}

/*
 * One element of a valid array: a record by the scanner when it can,
 * else by pg_parse_json (the same outcome, see the fast path).
 */
static void
parse_element(IngestBatch *batch, const IngestOrigin *origin, char *s, int len,
			  MemoryContext scratch)
{
	if (*s == '{')
	{
		RecState	st;
		StringInfoData abuf;
		char	   *p = s;
		MemoryContext oldcxt = MemoryContextSwitchTo(batch->cxt);
		bool		ok;

		abuf.data = NULL;
		abuf.len = 0;
		ok = ingest_scan_record(&p, s + len, &st, &abuf, 2, scratch);
		MemoryContextSwitchTo(oldcxt);
		if (ok && p == s + len)
		{
			ingest_finish_record(batch, origin, &st, s, len);
			return;
		}
	}
	ingest_parse_record(batch, origin, s, len);
}

/*
 * The elements of a valid array from p on (an element's start, or the
 * ']', after blanks).  Each element's parse runs in rec_cxt, reset after
 * it.  Stops early, returning the next element's position, once the
 * batch holds max_units records and rejects (max_units > 0); *closed
 * tells whether the array was finished, and then the position after it
 * is returned.
 */
static char *
parse_elements(IngestBatch *batch, const IngestOrigin *origin, char *p, char *end,
			   int max_units, bool *closed)
{
	MemoryContext oldcxt = MemoryContextSwitchTo(rec_cxt);

	*closed = false;
	for (;;)
	{
		char	   *e;

		p = skip_ws(p, end);
		if (p >= end || *p == ']')
		{
			*closed = true;
			p = Min(p + 1, end);
			break;
		}
		e = value_end(p, end);
		parse_element(batch, origin, p, e - p, rec_cxt);
		MemoryContextReset(rec_cxt);
		p = skip_ws(e, end);
		if (p < end && *p == ',')
			p++;
		if (max_units > 0 && batch->nrecords + batch->nrejects >= max_units)
			break;
	}
	MemoryContextSwitchTo(oldcxt);
	return p;
}

/*
 * Is the text valid in the database encoding, without NUL?  For a record
 * that is not, the reject keeps its bytes but rejected.raw stays NULL.
 */
static bool
valid_text(const char *s, int len)
{
	return pg_verifymbstr(s, len, true);
}

static void
reject_invalid_text(IngestBatch *batch, const IngestOrigin *origin, const char *s, int len)
{
	ingest_add_reject_bytes(batch, origin,
							psprintf("not valid text in the database encoding %s (or contains a NUL byte)",
									 GetDatabaseEncodingName()),
							s, len, false, false, 0);
}

static void
reject_too_deep(IngestBatch *batch, const IngestOrigin *origin, char *s, int len)
{
	/* before pg_parse_json, whose recursion would raise an error */
	ingest_add_reject(batch, origin, "JSON nested more than 64 levels deep", s, len, false, 0);
}

/*
 * One line of newline-delimited input (without its line break), on its
 * own: checked, then parsed by the scanner, else by pg_parse_json.  A
 * blank line adds nothing.  Returns the first element of a line that is
 * an array the scanner did not take, else NULL.
 */
static char *
parse_line(IngestBatch *batch, const IngestOrigin *origin, char *s, int len,
		   bool checked_text)
{
	char	   *end = s + len;
	char	   *elems = NULL;
	bool		several;

	/* a CRLF line break leaves a \r; blanks around it are not the record's */
	while (end > s && (end[-1] == '\r' || end[-1] == ' ' || end[-1] == '\t'))
		end--;
	while (s < end && (*s == ' ' || *s == '\t' || *s == '\r'))
		s++;
	len = end - s;
	if (len == 0)
		return NULL;
	if (!checked_text && !valid_text(s, len))
		reject_invalid_text(batch, origin, s, len);
	else if (ingest_fast_unit(batch, origin, s, len, false, &several))
		;
	else if (ingest_json_nesting_depth(s, len) > INGEST_MAX_JSON_DEPTH)
		reject_too_deep(batch, origin, s, len);
	else if (parse_unit(batch, origin, s, len, false, &elems) == UNIT_ARRAY)
		return elems;
	return NULL;
}

/*
 * The whole message as one unit, if it is one: one object, or one array
 * (possibly spread over lines).  Returns false when it is to be split
 * into lines instead; a message without a line break is always one unit.
 * *elems is set when it is an array whose elements are still to be
 * parsed.
 */
static bool
parse_whole(IngestBatch *batch, const IngestOrigin *origin, char *data, int len,
			bool *checked_text, char **elems)
{
	bool		has_nl = memchr(data, '\n', len) != NULL;
	bool		several;

	*checked_text = false;
	*elems = NULL;
	if (!valid_text(data, len))
	{
		if (has_nl)
			return false;
		reject_invalid_text(batch, origin, data, len);
		return true;
	}
	*checked_text = true;
	if (ingest_fast_unit(batch, origin, data, len, true, &several))
		return true;			/* the usual case: done in one pass */
	if (several)
		return false;
	if (ingest_json_nesting_depth(data, len) > INGEST_MAX_JSON_DEPTH)
	{
		if (has_nl)
			return false;
		reject_too_deep(batch, origin, data, len);
		return true;
	}
	return parse_unit(batch, origin, data, len, has_nl, elems) != UNIT_NOT_ONE_VALUE;
}

static bool
batch_has(IngestBatch *batch, int max_units)
{
	return max_units > 0 && batch->nrecords + batch->nrejects >= max_units;
}

/*
 * Parse a message into the batch, from *pos on (zeroed for a new
 * message), and advance *pos.  When max_units > 0 the call stops
 * between records once the batch holds max_units records and rejects,
 * so that the caller can store the batch and call again: a message of
 * many lines, or a long array, is spread over batches (a message the
 * scanner takes in one pass, at most FAST_ARRAY_MAX records, is not cut).
 * Returns true when the message is finished.  data must stay valid and
 * writable until then (the lexer needs no terminator; len bounds it).
 *
 * Scratch memory is per unit: a line's in line_cxt, an array element's
 * in rec_cxt, each reset after it.  What a unit leaves behind is only
 * what the batch keeps (its record or its reject).
 */
bool
ingest_parse_message_part(IngestBatch *batch, const IngestOrigin *origin,
						  char *data, int len, IngestParsePos *pos, int max_units)
{
	MemoryContext oldcxt;
	char	   *p;
	char	   *end = data + len;
	char	   *elems = NULL;

	if (parse_cxt == NULL)
	{
		parse_cxt = AllocSetContextCreate(TopMemoryContext, "logagg ingest parse",
										  ALLOCSET_DEFAULT_SIZES);
		line_cxt = AllocSetContextCreate(TopMemoryContext, "logagg ingest line",
										 ALLOCSET_DEFAULT_SIZES);
		rec_cxt = AllocSetContextCreate(TopMemoryContext, "logagg ingest record",
										ALLOCSET_DEFAULT_SIZES);
	}
	oldcxt = MemoryContextSwitchTo(parse_cxt);

	p = data + pos->offset;
	if (!pos->started)
	{
		pos->started = true;
		/* blank messages carry no record: nothing to store or refuse */
		if (skip_ws(data, end) == end)
			p = end;
		else if (parse_whole(batch, origin, data, len, &pos->text_checked, &elems))
			p = elems ? elems : end;
		pos->in_array = elems != NULL;
		MemoryContextReset(parse_cxt);
	}
	while (p < end)
	{
		if (pos->in_array)
		{
			bool		closed;

			p = parse_elements(batch, origin, p, end, max_units, &closed);
			if (!closed)
				break;
			/* the rest of the array's line is blank: lines go on after it */
			pos->in_array = false;
			continue;
		}
		else
		{
			char	   *nl = memchr(p, '\n', end - p);
			char	   *lend = nl ? nl : end;

			MemoryContextSwitchTo(line_cxt);
			elems = parse_line(batch, origin, p, lend - p, pos->text_checked);
			MemoryContextSwitchTo(parse_cxt);
			MemoryContextReset(line_cxt);
			if (elems)
			{
				p = elems;
				pos->in_array = true;
				continue;
			}
			p = nl ? nl + 1 : end;
		}
		if (batch_has(batch, max_units))
			break;
	}
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(parse_cxt);
	pos->offset = p - data;
	return p >= end;
}

/* Parse a whole message into the batch (logagg.ingest()). */
void
ingest_parse_message(IngestBatch *batch, const IngestOrigin *origin, char *data, int len)
{
	IngestParsePos pos;

	memset(&pos, 0, sizeof(pos));
	(void) ingest_parse_message_part(batch, origin, data, len, &pos, 0);
}
