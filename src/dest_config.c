/*-------------------------------------------------------------------------
 *
 * dest_config.c
 *		Reading a destination's config (logagg.destinations.config, jsonb)
 *		for the dest_*.c request builders: strings, string lists, string
 *		maps, integers clamped to a range and booleans, each with a default.
 *
 * add_destination checks the config when it is written, but a config
 * written around it (or by an older version) must not fail the
 * dispatcher's transaction: a missing key or a value of the wrong type
 * gives the default, an out-of-range number is clamped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <math.h>

#include "nodes/pg_list.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/jsonb.h"
#include "utils/numeric.h"

#include "alerts.h"

/* The value of key in config's top-level object; false if absent. */
static bool
cfg_get(Jsonb *config, const char *key, JsonbValue *out)
{
	if (config == NULL || !JB_ROOT_IS_OBJECT(config))
		return false;
	return getKeyJsonValueFromContainer(&config->root, key, strlen(key), out) != NULL;
}

/* String value of key, palloc'd in the current context; NULL if absent. */
char *
logagg_cfg_text(Jsonb *config, const char *key)
{
	JsonbValue	v;

	if (!cfg_get(config, key, &v) || v.type != jbvString)
		return NULL;
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/*
 * Integer value of key within [min, max]; dflt if absent or not a number.
 * add_destination checks the range, but a config written around it (or by
 * an older version) must not fail the dispatcher's transaction: out of
 * range values are clamped, never cast with an error.
 */
int
logagg_cfg_int(Jsonb *config, const char *key, int dflt, int min, int max)
{
	JsonbValue	v;
	double		f;

	if (!cfg_get(config, key, &v) || v.type != jbvNumeric ||
		numeric_is_nan(v.val.numeric))
		return dflt;
	f = DatumGetFloat8(DirectFunctionCall1(numeric_float8_no_overflow,
										   NumericGetDatum(v.val.numeric)));
	if (isnan(f))
		return dflt;
	if (f <= min)
		return min;
	if (f >= max)
		return max;
	return (int) rint(f);
}

bool
logagg_cfg_bool(Jsonb *config, const char *key, bool dflt)
{
	JsonbValue	v;

	if (!cfg_get(config, key, &v) || v.type != jbvBool)
		return dflt;
	return v.val.boolean;
}

/* A string or an array of strings, as a List of char *. */
List *
logagg_cfg_text_list(Jsonb *config, const char *key)
{
	JsonbValue	v;
	List	   *out = NIL;

	if (!cfg_get(config, key, &v))
		return NIL;
	if (v.type == jbvString)
		return list_make1(pnstrdup(v.val.string.val, v.val.string.len));
	if (v.type == jbvBinary)
	{
		JsonbIterator *it = JsonbIteratorInit(v.val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;

		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			if (tok == WJB_ELEM && e.type == jbvString)
				out = lappend(out, pnstrdup(e.val.string.val, e.val.string.len));
		}
	}
	return out;
}

/* An object of string values, as a List of alternating name, value. */
List *
logagg_cfg_object_pairs(Jsonb *config, const char *key)
{
	JsonbValue	v;
	List	   *out = NIL;

	if (!cfg_get(config, key, &v) || v.type != jbvBinary)
		return NIL;
	{
		JsonbIterator *it = JsonbIteratorInit(v.val.binary.data);
		JsonbValue	e;
		JsonbIteratorToken tok;
		char	   *pending_key = NULL;

		while ((tok = JsonbIteratorNext(&it, &e, true)) != WJB_DONE)
		{
			if (tok == WJB_KEY)
				pending_key = pnstrdup(e.val.string.val, e.val.string.len);
			else if (tok == WJB_VALUE && pending_key && e.type == jbvString)
			{
				out = lappend(out, pending_key);
				out = lappend(out, pnstrdup(e.val.string.val, e.val.string.len));
				pending_key = NULL;
			}
		}
	}
	return out;
}

