/*-------------------------------------------------------------------------
 *
 * flat_attrs.c
 *		attrs as jsonb built straight from the text the scanner checked,
 *		nested objects and arrays included, instead of by jsonb_in: the
 *		same jsonb without lexing the text a second time.
 *
 * Called in the batch's transaction by ingest_batch.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "ingest/parse_int.h"

/*
 * Objects up to this many keys are sorted by insertion (a typical
 * record's objects have a handful); larger ones by qsort, so that an
 * object of many keys costs O(n log n) whatever their order.
 */
#define INSERTION_SORT_MAX	16

static const char *build_value(const char *s, JsonbValue *v);

static inline const char *
ws(const char *s)
{
	while (IS_WS(*s))
		s++;
	return s;
}

/* jsonb's key order: length, then bytes */
static inline int
key_cmp(const JsonbPair *a, const JsonbPair *b)
{
	int			la = a->key.val.string.len;
	int			lb = b->key.val.string.len;

	if (la != lb)
		return la > lb ? 1 : -1;
	return memcmp(a->key.val.string.val, b->key.val.string.val, la);
}

/* jsonb's key order, then the order given */
static int
pair_cmp(const void *a, const void *b)
{
	const JsonbPair *pa = a;
	const JsonbPair *pb = b;
	int			c = key_cmp(pa, pb);

	if (c != 0)
		return c;
	return pa->order > pb->order ? 1 : (pa->order < pb->order ? -1 : 0);
}

/*
 * Sort an object's pairs the way jsonb keeps them (by key length, then
 * bytes), each key once: of duplicate keys the last one given wins, as
 * with jsonb_in.  Both sorts keep equal keys in the order given.
 * Returns the number of pairs left.
 */
static int
sort_pairs(JsonbPair *pairs, int n)
{
	int			out = 0;

	if (n <= 1)
		return n;
	if (n <= INSERTION_SORT_MAX)
	{
		for (int i = 1; i < n; i++)
		{
			JsonbPair	p = pairs[i];
			int			j = i;

			while (j > 0 && key_cmp(&pairs[j - 1], &p) > 0)
			{
				pairs[j] = pairs[j - 1];
				j--;
			}
			pairs[j] = p;
		}
	}
	else
		qsort(pairs, n, sizeof(JsonbPair), pair_cmp);
	for (int i = 0; i < n; i++)
	{
		if (i + 1 < n && key_cmp(&pairs[i], &pairs[i + 1]) == 0)
			continue;			/* a later duplicate follows: it wins */
		pairs[out++] = pairs[i];
	}
	return out;
}

/* The string whose opening quote is at s, into v; returns its end. */
static const char *
build_string(const char *s, JsonbValue *v)
{
	const char *vs = ++s;
	bool		esc = false;

	while (*s != '"')
	{
		if (*s == '\\')
		{
			esc = true;
			s++;
		}
		s++;
	}
	v->type = jbvString;
	if (esc)
	{
		v->val.string.val = ingest_json_decode_string(vs, s, true);
		v->val.string.len = VARSIZE(v->val.string.val - VARHDRSZ) - VARHDRSZ;
	}
	else
	{
		v->val.string.val = (char *) vs;
		v->val.string.len = s - vs;
	}
	return s + 1;
}

/* The number at s, into v: the numeric numeric_in gives for its text */
static const char *
build_number(const char *s, JsonbValue *v)
{
	const char *ns = s;
	bool		plain = true;	/* -?digits only */

	if (*s == '-')
		s++;
	while (IS_DIGIT(*s))
		s++;
	while (IS_DIGIT(*s) || *s == '.' || *s == 'e' || *s == 'E' || *s == '+' || *s == '-')
	{
		plain = false;
		s++;
	}
	v->type = jbvNumeric;
	if (plain && s - ns <= 18)
	{
		/* same numeric as numeric_in gives, without its parsing */
		const char *d = ns + (*ns == '-');
		int64		n = 0;

		while (d < s)
			n = n * 10 + (*d++ - '0');	/* at most 18 digits: no overflow */
		v->val.numeric = int64_to_numeric(*ns == '-' ? -n : n);
	}
	else
		v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
															 CStringGetDatum(pnstrdup(ns, s - ns)),
															 ObjectIdGetDatum(InvalidOid),
															 Int32GetDatum(-1)));
	return s;
}

/* The object whose '{' is at s, into v (pairs sorted); returns its end. */
static const char *
build_object(const char *s, JsonbValue *v)
{
	JsonbPair  *pairs = NULL;
	int			max = 0;
	int			n = 0;

	s = ws(s + 1);
	while (*s == '"')
	{
		if (n >= max)
		{
			max = max ? max * 2 : 8;
			pairs = pairs ? repalloc(pairs, max * sizeof(JsonbPair)) :
				palloc(max * sizeof(JsonbPair));
		}
		s = build_string(s, &pairs[n].key);
		pairs[n].order = n;
		s = ws(ws(s) + 1);		/* the ':' */
		s = ws(build_value(s, &pairs[n].value));
		n++;
		if (*s == ',')
			s = ws(s + 1);
	}
	Assert(*s == '}');
	v->type = jbvObject;
	v->val.object.nPairs = sort_pairs(pairs, n);
	v->val.object.pairs = pairs;
	return s + 1;
}

/* The array whose '[' is at s, into v; returns its end. */
static const char *
build_array(const char *s, JsonbValue *v)
{
	JsonbValue *elems = NULL;
	int			max = 0;
	int			n = 0;

	s = ws(s + 1);
	while (*s != ']')
	{
		if (n >= max)
		{
			max = max ? max * 2 : 8;
			elems = elems ? repalloc(elems, max * sizeof(JsonbValue)) :
				palloc(max * sizeof(JsonbValue));
		}
		s = ws(build_value(s, &elems[n++]));
		if (*s == ',')
			s = ws(s + 1);
	}
	v->type = jbvArray;
	v->val.array.nElems = n;
	v->val.array.elems = elems;
	v->val.array.rawScalar = false;
	return s + 1;
}

/* Any value at s (not blank), into v; returns its end. */
static const char *
build_value(const char *s, JsonbValue *v)
{
	switch (*s)
	{
		case '"':
			return build_string(s, v);
		case '{':
			return build_object(s, v);
		case '[':
			return build_array(s, v);
		case 't':
			v->type = jbvBool;
			v->val.boolean = true;
			return s + 4;
		case 'f':
			v->type = jbvBool;
			v->val.boolean = false;
			return s + 5;
		case 'n':
			v->type = jbvNull;
			return s + 4;
		default:
			return build_number(s, v);
	}
}

/*
 * The attrs jsonb of a record whose attrs_flat is set, built straight
 * from its text instead of by jsonb_in, which would lex it again,
 * allocate every token, go through the generic parser's callbacks and
 * sort every object with qsort_arg: the largest part of the worker's
 * parse cost for records with nested attrs.  Such text was written by
 * ingest_scan_record from spans it had checked: one JSON object whose
 * strings hold no \u escapes or control characters, whose numbers
 * numeric can hold, nested no deeper than INGEST_MAX_JSON_DEPTH.  So
 * this walk need not check anything.  The result is the same jsonb that
 * jsonb_in gives: every object's keys sorted the way jsonb keeps them,
 * of duplicate keys the last one kept, strings de-escaped, numbers as
 * numeric_in reads them.  Called in the batch's transaction (numeric_in
 * may allocate; errors are not expected).
 */
Datum
ingest_flat_attrs_jsonb(const char *s)
{
	JsonbValue	obj;

	s = ws(s);
	Assert(*s == '{');
	(void) build_object(s, &obj);
	return JsonbPGetDatum(JsonbValueToJsonb(&obj));
}
