/*-------------------------------------------------------------------------
 *
 * input_checks.c
 *		Checks on input text that protect the batch's COPY and PostgreSQL's
 *		JSON parser: nesting depth, numbers that numeric can hold, hex ids and
 *		int64 values.
 *
 * Each is a pure function of its text; none raises an error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/numeric.h"

#include "ingest/parse_int.h"

/*
 * Deepest nesting of [ and {, outside strings; stops early past the limit.
 * A closing bracket without an opening one never lowers the count below
 * zero: JSON that pg_parse_json accepts up to some point never does that,
 * so over any text the result bounds the depth its recursion can reach
 * (stray closing brackets on one line must not hide deep opening ones on
 * the next).
 */
int
ingest_json_nesting_depth(const char *s, int len)
{
	return ingest_json_nesting_depth_limit(s, len, INGEST_MAX_JSON_DEPTH);
}

/* The same, stopping past LIMIT instead of INGEST_MAX_JSON_DEPTH. */
int
ingest_json_nesting_depth_limit(const char *s, int len, int limit)
{
	int			depth = 0,
				max = 0;
	bool		in_string = false;

	for (int i = 0; i < len; i++)
	{
		char		c = s[i];

		if (in_string)
		{
			if (c == '\\')
				i++;
			else if (c == '"')
				in_string = false;
		}
		else if (c == '"')
			in_string = true;
		else if (c == '[' || c == '{')
		{
			if (++depth > max)
				max = depth;
			if (max > limit)
				return max;
		}
		else if ((c == ']' || c == '}') && depth > 0)
			depth--;
	}
	return max;
}

/*
 * jsonb stores numbers as numeric, which refuses huge exponents; a record
 * with one would fail the COPY of the whole batch, so refuse it up front.
 */
bool
ingest_number_fits_numeric(const char *token)
{
	const char *e = strpbrk(token, "eE");
	long		exp;

	if (e == NULL)
		return strlen(token) < 1000;
	exp = strtol(e + 1, NULL, 10);
	return exp > -1000 && exp < 1000 && (e - token) < 1000;
}

/* 1 for the bytes that are hex digits */
static const uint8 hex_digit_byte[256] = {
	['0'] = 1, ['1'] = 1, ['2'] = 1, ['3'] = 1, ['4'] = 1,
	['5'] = 1, ['6'] = 1, ['7'] = 1, ['8'] = 1, ['9'] = 1,
	['a'] = 1, ['b'] = 1, ['c'] = 1, ['d'] = 1, ['e'] = 1, ['f'] = 1,
	['A'] = 1, ['B'] = 1, ['C'] = 1, ['D'] = 1, ['E'] = 1, ['F'] = 1,
};

/*
 * A non-empty string of hex digits?  By table: every record's trace and
 * span ids go through here, and three range tests per byte were ~3 % of
 * the worker.
 */
bool
ingest_is_hex(const char *s)
{
	const unsigned char *p = (const unsigned char *) s;

	if (*p == '\0')
		return false;
	while (hex_digit_byte[*p])
		p++;
	return *p == '\0';
}

bool
ingest_parse_int64(const char *s, int64 *out)
{
	char	   *end;
	long long	v;

	if (*s == '\0')
		return false;
	errno = 0;
	v = strtoll(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return false;
	*out = (int64) v;
	return true;
}

