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
			if (max > INGEST_MAX_JSON_DEPTH)
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

bool
ingest_is_hex(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s; s++)
		if (!((*s >= '0' && *s <= '9') || (*s >= 'a' && *s <= 'f') || (*s >= 'A' && *s <= 'F')))
			return false;
	return true;
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

