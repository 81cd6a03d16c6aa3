/*-------------------------------------------------------------------------
 *
 * flat_attrs.c
 *		attrs as jsonb built straight from the scanner's flat text, instead
 *		of by jsonb_in: the same jsonb, for a tenth of the ingest worker's time.
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

/* jsonb's key order (length, then bytes), then the order given */
static int
flat_pair_cmp(const void *a, const void *b)
{
	const JsonbPair *pa = a;
	const JsonbPair *pb = b;
	int			la = pa->key.val.string.len;
	int			lb = pb->key.val.string.len;
	int			c;

	if (la != lb)
		return la > lb ? 1 : -1;
	c = memcmp(pa->key.val.string.val, pb->key.val.string.val, la);
	if (c != 0)
		return c;
	return pa->order > pb->order ? 1 : (pa->order < pb->order ? -1 : 0);
}

/*
 * The attrs jsonb of a record whose attrs_flat is set, built straight
 * from its text instead of by jsonb_in (which lexes it again, allocates
 * every token and goes through the generic parser's callbacks: ~10 % of
 * the ingest worker's time).  Such text was written by ingest_scan_record from
 * spans it had checked: '{', then "name":value pairs separated by ',',
 * then '}', with no whitespace, names without escapes, and values that
 * are strings without \u escapes, numbers that numeric can hold, true,
 * false or null.  So this walk need not check anything.  The result is
 * the same jsonb that jsonb_in gives: keys sorted the way jsonb keeps
 * them, and of duplicate keys the last one kept.  Called in the
 * batch's transaction (numeric_in may allocate; errors are not expected).
 */
Datum
ingest_flat_attrs_jsonb(const char *s)
{
	JsonbPair	pairbuf[16];
	JsonbPair  *pairs = pairbuf;
	int			maxpairs = lengthof(pairbuf);
	int			n = 0;
	JsonbValue	obj;

	Assert(*s == '{');
	s++;
	while (*s == '"')
	{
		const char *ks = ++s;
		JsonbValue *v;

		if (n >= maxpairs)
		{
			JsonbPair  *bigger = palloc(2 * maxpairs * sizeof(JsonbPair));

			memcpy(bigger, pairs, n * sizeof(JsonbPair));
			pairs = bigger;
			maxpairs *= 2;
		}
		s = strchr(s, '"');
		pairs[n].key.type = jbvString;
		pairs[n].key.val.string.val = (char *) ks;
		pairs[n].key.val.string.len = s - ks;
		pairs[n].order = n;
		v = &pairs[n].value;
		s += 2;					/* the quote and the ':' */
		switch (*s)
		{
			case '"':
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
					v->val.string.val = esc ? ingest_json_decode_string(vs, s, true) : (char *) vs;
					v->val.string.len = esc ? strlen(v->val.string.val) : s - vs;
					s++;
					break;
				}
			case 't':
				v->type = jbvBool;
				v->val.boolean = true;
				s += 4;
				break;
			case 'f':
				v->type = jbvBool;
				v->val.boolean = false;
				s += 5;
				break;
			case 'n':
				v->type = jbvNull;
				s += 4;
				break;
			default:
				{
					const char *ns = s;
					bool		plain = true;	/* -?digits only */
					char		buf[24];

					if (*s == '-')
						s++;
					while (IS_DIGIT(*s))
						s++;
					while (*s != ',' && *s != '}')
					{
						plain = false;
						s++;
					}
					v->type = jbvNumeric;
					if (plain && s - ns <= 18)
					{
						/* same numeric as numeric_in gives, without its parsing */
						memcpy(buf, ns, s - ns);
						buf[s - ns] = '\0';
						v->val.numeric = int64_to_numeric(strtoll(buf, NULL, 10));
					}
					else
						v->val.numeric = DatumGetNumeric(DirectFunctionCall3(numeric_in,
																			 CStringGetDatum(pnstrdup(ns, s - ns)),
																			 ObjectIdGetDatum(InvalidOid),
																			 Int32GetDatum(-1)));
					break;
				}
		}
		n++;
		if (*s == ',')
			s++;
	}
	Assert(*s == '}');

	/*
	 * jsonb keeps an object's keys sorted by length, then bytes, each key
	 * once (the last one given wins).  qsort, with the original order
	 * breaking ties so that equal keys stay in the order given: a record
	 * with many attrs costs O(n log n) whatever their order.
	 */
	if (n > 1)
		qsort(pairs, n, sizeof(JsonbPair), flat_pair_cmp);
	if (n > 1)
	{
		int			out = 0;

		for (int i = 0; i < n; i++)
		{
			if (i + 1 < n &&
				pairs[i].key.val.string.len == pairs[i + 1].key.val.string.len &&
				memcmp(pairs[i].key.val.string.val, pairs[i + 1].key.val.string.val,
					   pairs[i].key.val.string.len) == 0)
				continue;		/* a later duplicate follows: it wins */
			pairs[out++] = pairs[i];
		}
		n = out;
	}

	obj.type = jbvObject;
	obj.val.object.nPairs = n;
	obj.val.object.pairs = pairs;
	return JsonbPGetDatum(JsonbValueToJsonb(&obj));
}

