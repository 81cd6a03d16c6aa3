/*-------------------------------------------------------------------------
 *
 * alert_rules.c
 *		Counting for the alert rules of logagg.alert_rules, in the ingest
 *		path: per stored batch, every record is matched against the rules
 *		and counted per (class of rules it matches, group labels, time
 *		bucket of its ts); the batch's counts go into ONE row of
 *		logagg._alert_rule_deltas, in the batch's own (sub)transaction.
 *		Also the evaluation step that dispatch worker 1 runs every
 *		logagg.rule_eval_interval (logagg._evaluate_alert_rules(), which
 *		first folds the pending deltas into logagg._alert_rule_counts).
 *
 * Counting in the transaction of the rows is what makes the counts exact:
 * a batch that commits has its delta committed with it, one that rolls
 * back (a crash, a record refused by bisection) takes it along; the fold
 * deletes the deltas it adds to the counters in one transaction, so a
 * delta is counted exactly once.  The work per batch is one pass over the
 * records in memory (the outcome of the rules that look only at source,
 * severity, level and status is computed once per distinct combination
 * of those), then one INSERT of one row whose size is the number of
 * distinct (class, group, bucket) of the batch: not the number of
 * records, nor the number of rules.
 *
 * The rules are cached per process like logagg.rules (classify.c): a
 * statement trigger on logagg.alert_rules queues a relcache invalidation,
 * our callback marks the cache stale, the next batch reloads it.  Paused
 * rules are counted too (logagg.rule_preview shows them); only the
 * evaluator skips them.
 *
 * A rule's filter comes validated from logagg.add_alert_rule (schema/
 * 25_alert_rules.sql); nothing here may raise an error for a record's
 * content, since an error would make the batch bisect and refuse records.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "common/hashfn.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/array.h"
#include "utils/guc.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "alert_rules.h"
#include "ingest.h"

/* A label value longer than this is cut (at a character boundary). */
#define LABEL_VALUE_MAX 256
#define MAX_GROUP_BY 3

/* Unix epoch in PostgreSQL's TimestampTz (microseconds since 2000). */
#define UNIX_EPOCH_US ((int64) (POSTGRES_EPOCH_JDATE - UNIX_EPOCH_JDATE) * USECS_PER_DAY)

int			logagg_rule_eval_interval_ms = 5000;
int			logagg_absent_lookback_secs = 86400;

/* logagg.rule_eval_interval and logagg.absent_lookback (called by guc.c). */
void
logagg_define_alert_rule_gucs(void)
{
	DefineCustomIntVariable("logagg.rule_eval_interval",
							"Longest time from a record's commit to the end of the alert rule evaluation that sees it.",
							"Dispatch worker 1 evaluates about this often, starting early by the recent evaluations' duration.",
							&logagg_rule_eval_interval_ms, 5000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.absent_lookback",
							"How far back an absent alert rule looks for the groups it expects to see.",
							"A group (e.g. a source) that sent matching records within this time and none in the rule's window makes the rule fire.",
							&logagg_absent_lookback_secs, 86400, 1, 31 * 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
}

typedef enum GroupLabel
{
	GL_SOURCE, GL_LEVEL, GL_STATUS, GL_SEVERITY, GL_ATTR
} GroupLabel;

typedef struct CountRule
{
	int			id;
	bool		is_ratio;
	int64		bucket_us;
	int64		window_secs;
	char	   *source_glob;	/* NULL = any */
	int			min_severity;	/* -1 = any */
	int			nlevels;		/* 0 = any */
	char	  **levels;
	bool		has_status;
	int			status_lo;
	int			status_hi;
	text	   *message_regex;	/* NULL = any */
	Jsonb	   *attrs;			/* NULL = any */
	int			ngroup;
	GroupLabel	group[MAX_GROUP_BY];
	char	   *group_name[MAX_GROUP_BY];	/* label name, JSON-escaped */
	char	   *attr_key[MAX_GROUP_BY]; /* for GL_ATTR */
	int			spec;			/* rules with the same group_by share it */
	int			part;			/* index in cparts */
	bool		simple;			/* no message_regex, no attrs */
} CountRule;

static MemoryContext crules_cxt = NULL;
static CountRule *crules = NULL;
static int	ncrules = 0;
static int	nspecs = 0;			/* distinct group_by lists of the rules */
static bool crules_valid = false;
static bool crules_callback_registered = false;
static Oid	crules_relid = InvalidOid;
static SPIPlanPtr delta_plan = NULL;

/*
 * Rules with the same group_by and window (so bucket width) form a "part".  A record
 * is counted once per part, under the "class" of its outcome in that
 * part: which of the part's rules it matches, wholly or (ratio rules)
 * only for the denominator.  Counting per (class, labels, bucket) instead
 * of per (rule, labels, bucket) keeps the work per record and the delta
 * of a batch independent of the number of rules: a hundred rules that
 * match the same records make one entry, not a hundred.
 */
typedef struct CountPart
{
	int			spec;
	int64		bucket_us;
	int64		window_secs;
	int			nrules;
	int		   *rules;			/* indexes into crules, ascending */
} CountPart;

static CountPart *cparts = NULL;
static int	ncparts = 0;
static bool have_complex = false;	/* a rule with message_regex or attrs */

/* A rule's outcome for one record. */
#define OUT_NONE	0
#define OUT_TOTAL	1			/* a ratio rule's denominator only */
#define OUT_FULL	2

/*
 * Per batch: the outcomes of the "simple" rules (no message_regex, no
 * attrs: decided by source, severity, level and status alone) for each
 * distinct combination of those, so that they are computed once.
 */
typedef struct SigKey
{
	uint32		hash;
	const char *source;
	const char *level;			/* NULL = none */
	int			status;
	bool		has_status;
	uint8		sev;
} SigKey;

typedef struct SigEntry
{
	SigKey		key;
	uint8	   *out;			/* per rule; complex rules left OUT_NONE */
	int		   *cls;			/* per part, when no rule is complex */
} SigEntry;

/* A class: a part and its rules' outcomes, in the part's rule order. */
typedef struct ClassKey
{
	uint32		hash;
	int			part;
	const uint8 *out;
} ClassKey;

typedef struct ClassEntry
{
	ClassKey	key;
	int			id;				/* index in CountBatch.classes; -1 = counts nothing */
} ClassEntry;

/* One entry of a batch's delta: hash key and the counts. */
typedef struct CountKey
{
	int			cls;
	uint32		labels_hash;	/* hash of labels, computed once per record */
	int64		bucket;			/* TimestampTz of the bucket start */
	const char *labels;			/* JSON object text, in the batch's memory */
} CountKey;

typedef struct CountEntry
{
	CountKey	key;
	int64		n;
	TimestampTz last_ts;		/* of the latest record; 0 = none */
	int64		last_id;
} CountEntry;

/* Counting state of one batch, in its own memory context. */
typedef struct CountBatch
{
	HTAB	   *sigs;
	HTAB	   *classes;
	HTAB	   *counts;
	ClassEntry **class_list;	/* by id */
	int			nclasses;
	int			class_cap;
	uint8	   *scratch;		/* ncrules outcomes */
	uint8	   *partout;		/* outcomes of one part's rules */
	StringInfoData *lbuf;		/* per spec: the current record's labels */
} CountBatch;

static void
crules_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == crules_relid)
		crules_valid = false;
}

static uint32
count_key_hash(const void *key, Size keysize)
{
	const CountKey *k = key;
	uint32		h = k->labels_hash;

	h = hash_combine(h, hash_bytes_uint32((uint32) k->cls));
	h = hash_combine(h, hash_bytes_uint32((uint32) (k->bucket ^ (k->bucket >> 32))));
	return h;
}

static int
count_key_match(const void *a, const void *b, Size keysize)
{
	const CountKey *x = a;
	const CountKey *y = b;

	if (x->cls != y->cls || x->bucket != y->bucket ||
		x->labels_hash != y->labels_hash)
		return 1;
	return x->labels == y->labels ? 0 : strcmp(x->labels, y->labels);
}

/* SigKey and ClassKey carry their hash, computed by the caller. */
static uint32
sig_key_hash(const void *key, Size keysize)
{
	return ((const SigKey *) key)->hash;
}

static int
sig_key_match(const void *a, const void *b, Size keysize)
{
	const SigKey *x = a;
	const SigKey *y = b;

	if (x->hash != y->hash || x->status != y->status || x->has_status != y->has_status ||
		x->sev != y->sev || (x->level == NULL) != (y->level == NULL))
		return 1;
	if (x->level && x->level != y->level && strcmp(x->level, y->level) != 0)
		return 1;
	return x->source == y->source ? 0 : strcmp(x->source, y->source);
}

static uint32
class_key_hash(const void *key, Size keysize)
{
	return ((const ClassKey *) key)->hash;
}

static int
class_key_match(const void *a, const void *b, Size keysize)
{
	const ClassKey *x = a;
	const ClassKey *y = b;

	if (x->hash != y->hash || x->part != y->part)
		return 1;
	return memcmp(x->out, y->out, cparts[x->part].nrules);
}

static char *
json_quoted(const char *s)
{
	StringInfoData b;

	initStringInfo(&b);
	escape_json(&b, s);
	return b.data;
}

/* Reads one rule row of the load query into *r (in crules_cxt). */
static void
load_rule(HeapTuple tup, TupleDesc desc, CountRule *r)
{
	bool		isnull;
	Datum		d;
	char	   *s;

	memset(r, 0, sizeof(*r));
	r->id = DatumGetInt32(SPI_getbinval(tup, desc, 1, &isnull));
	s = SPI_getvalue(tup, desc, 2);
	r->is_ratio = (s && strcmp(s, "ratio") == 0);
	r->bucket_us = (int64) DatumGetInt32(SPI_getbinval(tup, desc, 3, &isnull)) * USECS_PER_SEC;
	if (r->bucket_us <= 0)
		r->bucket_us = USECS_PER_SEC;
	r->window_secs = DatumGetInt64(SPI_getbinval(tup, desc, 12, &isnull));
	r->source_glob = SPI_getvalue(tup, desc, 4);
	r->min_severity = logagg_severity_index(SPI_getvalue(tup, desc, 5));
	d = SPI_getbinval(tup, desc, 6, &isnull);
	if (!isnull)
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
		r->levels = palloc(sizeof(char *) * Max(n, 1));
		for (int j = 0; j < n; j++)
			if (!nulls[j])
				r->levels[r->nlevels++] = TextDatumGetCString(elems[j]);
		if (r->nlevels == 0)
			r->nlevels = -1;	/* an empty list matches nothing */
	}
	d = SPI_getbinval(tup, desc, 7, &isnull);
	if (!isnull)
	{
		r->has_status = true;
		r->status_lo = DatumGetInt32(d);
		r->status_hi = DatumGetInt32(SPI_getbinval(tup, desc, 8, &isnull));
	}
	d = SPI_getbinval(tup, desc, 9, &isnull);
	if (!isnull)
		r->message_regex = DatumGetTextPCopy(d);
	d = SPI_getbinval(tup, desc, 10, &isnull);
	if (!isnull)
		r->attrs = DatumGetJsonbPCopy(d);
	d = SPI_getbinval(tup, desc, 11, &isnull);
	if (!isnull)
	{
		Datum	   *elems;
		bool	   *nulls;
		int			n;

		deconstruct_array(DatumGetArrayTypeP(d), TEXTOID, -1, false, TYPALIGN_INT,
						  &elems, &nulls, &n);
		for (int j = 0; j < n && r->ngroup < MAX_GROUP_BY; j++)
		{
			char	   *g;
			int			k = r->ngroup;

			if (nulls[j])
				continue;
			g = TextDatumGetCString(elems[j]);
			r->group_name[k] = json_quoted(g);
			if (strcmp(g, "source") == 0)
				r->group[k] = GL_SOURCE;
			else if (strcmp(g, "level") == 0)
				r->group[k] = GL_LEVEL;
			else if (strcmp(g, "status") == 0)
				r->group[k] = GL_STATUS;
			else if (strcmp(g, "severity") == 0)
				r->group[k] = GL_SEVERITY;
			else if (strncmp(g, "attrs.", 6) == 0)
			{
				r->group[k] = GL_ATTR;
				r->attr_key[k] = g + 6;
			}
			else
				continue;
			r->ngroup++;
		}
	}
}

/*
 * Rules with the same group_by give a record the same labels: they share
 * a "spec", so the labels are built once per record and spec.
 */
static void
assign_spec(CountRule *r, int n_before)
{
	for (int i = 0; i < n_before; i++)
	{
		const CountRule *o = &crules[i];
		bool		same = (o->ngroup == r->ngroup);

		for (int k = 0; same && k < r->ngroup; k++)
			same = (strcmp(o->group_name[k], r->group_name[k]) == 0);
		if (same)
		{
			r->spec = o->spec;
			return;
		}
	}
	r->spec = nspecs++;
}

/*
 * Group the loaded rules into parts (same spec and window), in
 * crules_cxt; marks the rules that need each record (message_regex,
 * attrs) as not simple.
 */
static void
build_parts(void)
{
	cparts = palloc0(sizeof(CountPart) * Max(ncrules, 1));
	ncparts = 0;
	have_complex = false;
	for (int i = 0; i < ncrules; i++)
	{
		CountRule  *r = &crules[i];
		int			p;

		r->simple = (r->message_regex == NULL && r->attrs == NULL);
		have_complex |= !r->simple;
		for (p = 0; p < ncparts; p++)
			if (cparts[p].spec == r->spec && cparts[p].bucket_us == r->bucket_us &&
				cparts[p].window_secs == r->window_secs)
				break;
		if (p == ncparts)
		{
			cparts[p].spec = r->spec;
			cparts[p].bucket_us = r->bucket_us;
			cparts[p].window_secs = r->window_secs;
			cparts[p].rules = palloc(sizeof(int) * ncrules);
			ncparts++;
		}
		r->part = p;
		cparts[p].rules[cparts[p].nrules++] = i;
	}
}

/* (Re)load the rules if a change invalidated them.  Needs SPI. */
static void
crules_ensure_loaded(void)
{
	MemoryContext oldcxt;
	int			ret;
	Oid			nsp;

	if (!crules_callback_registered)
	{
		CacheRegisterRelcacheCallback(crules_relcache_callback, (Datum) 0);
		crules_callback_registered = true;
	}
	if (crules_valid)
		return;

	if (crules_cxt == NULL)
		crules_cxt = AllocSetContextCreate(TopMemoryContext, "logagg alert rules",
										   ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(crules_cxt);
	crules = NULL;
	ncrules = 0;
	cparts = NULL;
	ncparts = 0;

	/* mark valid before reading: an invalidation during the load wins */
	crules_valid = true;
	nsp = get_namespace_oid(LOGAGG_SCHEMA, false);
	crules_relid = get_relname_relid("alert_rules", nsp);
	if (!OidIsValid(crules_relid))
		return;					/* a 1.0 schema: no rules */

	PG_TRY();
	{
		ret = SPI_execute("SELECT id, kind, bucket_secs, filter->>'source', filter->>'min_severity', "
						  "CASE WHEN filter ? 'level' THEN "
						  "  ARRAY(SELECT jsonb_array_elements_text(filter->'level')) END, "
						  "CASE jsonb_typeof(filter->'status') WHEN 'number' THEN (filter->>'status')::int "
						  "     WHEN 'array' THEN (filter->'status'->>0)::int END, "
						  "CASE jsonb_typeof(filter->'status') WHEN 'number' THEN (filter->>'status')::int "
						  "     WHEN 'array' THEN (filter->'status'->>1)::int END, "
						  "filter->>'message_regex', filter->'attrs', group_by, "
						  "extract(epoch FROM \"window\")::int8 "
						  "FROM logagg.alert_rules ORDER BY id", true, 0);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "logagg: reading logagg.alert_rules failed: %s", SPI_result_code_string(ret));
		oldcxt = MemoryContextSwitchTo(crules_cxt);
		crules = palloc0(sizeof(CountRule) * Max(SPI_processed, 1));
		nspecs = 0;
		for (uint64 i = 0; i < SPI_processed; i++)
		{
			CountRule  *r = &crules[ncrules++];

			load_rule(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, r);
			assign_spec(r, ncrules - 1);
		}
		build_parts();
		MemoryContextSwitchTo(oldcxt);
	}
	PG_CATCH();
	{
		crules_valid = false;
		ncrules = 0;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

/* Shell-style glob: "*" any run of characters, "?" one byte. */
static bool
glob_match(const char *p, const char *s)
{
	const char *star = NULL;
	const char *retry = NULL;

	while (*s)
	{
		if (*p == '*')
		{
			star = p++;
			retry = s;
		}
		else if (*p == '?' || *p == *s)
		{
			p++;
			s++;
		}
		else if (star)
		{
			p = star + 1;
			s = ++retry;
		}
		else
			return false;
	}
	while (*p == '*')
		p++;
	return *p == '\0';
}

/* What one record offers the matchers; attrs made on first use. */
typedef struct RecordView
{
	const IngestRecord *r;
	LogaggSeverity sev;
	Jsonb	   *attrs;
	bool		attrs_made;
	char	  **labels;			/* per spec, built on first use (NULL) */
	uint32	   *labels_hash;	/* per spec, with labels */
} RecordView;

static Jsonb *
record_attrs(RecordView *v)
{
	if (!v->attrs_made)
	{
		v->attrs_made = true;
		if (v->r->attrs == NULL)
			v->attrs = NULL;
		else if (v->r->attrs_flat)
			v->attrs = DatumGetJsonbP(ingest_flat_attrs_jsonb(v->r->attrs));
		else
			v->attrs = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(v->r->attrs)));
	}
	return v->attrs;
}

/* The filter's source, min_severity and attrs parts (a ratio's denominator). */
static bool
base_matches(const CountRule *rule, RecordView *v)
{
	if (rule->source_glob && !glob_match(rule->source_glob, v->r->source))
		return false;
	if (rule->min_severity >= 0 && (int) v->sev > rule->min_severity)
		return false;
	if (rule->attrs)
	{
		Jsonb	   *a = record_attrs(v);

		if (a == NULL || !JB_ROOT_IS_OBJECT(a))
			return false;
		if (!DatumGetBool(DirectFunctionCall2(jsonb_contains, JsonbPGetDatum(a),
											  JsonbPGetDatum(rule->attrs))))
			return false;
	}
	return true;
}

/* The filter's level, status and message parts. */
static bool
rest_matches(const CountRule *rule, RecordView *v)
{
	const IngestRecord *r = v->r;

	if (rule->nlevels != 0)
	{
		bool		found = false;

		if (r->level == NULL || rule->nlevels < 0)
			return false;
		for (int i = 0; i < rule->nlevels && !found; i++)
			found = (strcmp(r->level, rule->levels[i]) == 0);
		if (!found)
			return false;
	}
	if (rule->has_status &&
		(!r->has_status || r->status < rule->status_lo || r->status > rule->status_hi))
		return false;
	if (rule->message_regex)
	{
		if (r->message == NULL ||
			!logagg_regex_match(rule->message_regex, r->message, strlen(r->message),
								C_COLLATION_OID, "logagg.alert_rules"))
			return false;
	}
	return true;
}

static void
append_label_value(StringInfo b, const char *s, int len)
{
	char	   *v;
	int			i;

	if (len > LABEL_VALUE_MAX)
		len = pg_mbcliplen(s, len, LABEL_VALUE_MAX);
	/* most values need no escape: copy them as escape_json would */
	for (i = 0; i < len; i++)
	{
		unsigned char c = (unsigned char) s[i];

		if (c < 0x20 || c == '"' || c == '\\')
			break;
	}
	if (i == len)
	{
		appendStringInfoChar(b, '"');
		appendBinaryStringInfo(b, s, len);
		appendStringInfoChar(b, '"');
		return;
	}
	v = pnstrdup(s, len);
	escape_json(b, v);
	pfree(v);
}

/* Skip JSON whitespace. */
static const char *
json_ws(const char *s)
{
	while (*s == ' ' || *s == '\t' || *s == '\n' || *s == '\r')
		s++;
	return s;
}

/* End of the JSON string at s (its opening quote); *esc when it has a backslash. */
static const char *
json_string_end(const char *s, bool *esc)
{
	for (s++; *s && *s != '"'; s++)
	{
		if (*s == '\\')
		{
			*esc = true;
			if (*++s == '\0')
				return NULL;
		}
	}
	return *s ? s + 1 : NULL;
}

/* End of the JSON value at s, or NULL if it is not one. */
static const char *
json_value_end(const char *s)
{
	bool		esc = false;
	int			depth = 0;

	if (*s == '"')
		return json_string_end(s, &esc);
	if (*s != '{' && *s != '[')
	{
		while (*s && *s != ',' && *s != '}' && *s != ']' &&
			   *s != ' ' && *s != '\t' && *s != '\n' && *s != '\r')
			s++;
		return s;
	}
	while (*s)
	{
		if (*s == '"')
		{
			if ((s = json_string_end(s, &esc)) == NULL)
				return NULL;
			continue;
		}
		if (*s == '{' || *s == '[')
			depth++;
		else if ((*s == '}' || *s == ']') && --depth == 0)
			return s + 1;
		s++;
	}
	return NULL;
}

/* "0" or a plain integer of at most 15 digits: numeric_out gives it back as is. */
static bool
plain_integer(const char *s, int len)
{
	int			i = (len > 0 && s[0] == '-') ? 1 : 0;

	if (len - i < 1 || len - i > 15 || (s[i] == '0' && len - i > 1) || (i == 1 && s[1] == '0'))
		return false;
	for (; i < len; i++)
		if (s[i] < '0' || s[i] > '9')
			return false;
	return true;
}

/*
 * The fast way to the LAST top-level member KEY of attrs text s (at its
 * '{'), for an object with nothing nested: no '{' or '[' after the first
 * byte (a string may hold one too: then the walk decides).  In valid JSON
 * an unescaped quote followed by KEY's characters opens a string (a
 * closing quote is followed by a delimiter, never a letter); when that
 * string is exactly "KEY" and a ':' follows, it is a key, and with nothing
 * nested every key is top-level.  So one memmem pass finds the members,
 * instead of walking every string of the record byte by byte.  Sets
 * vs/ve to the value's span (NULL: no such member).
 */
typedef enum FlatSearch
{
	FLAT_DONE,					/* vs/ve set */
	FLAT_NESTED,				/* the text has nesting: walk it */
	FLAT_UNREADABLE				/* not text this understands */
} FlatSearch;

static FlatSearch
flat_key_search(const char *s, const char *key, size_t klen,
				const char **vs, const char **ve)
{
	char		needle[64 + 2];
	size_t		len;
	const char *h;
	const char *end;
	const char *p;

	if (klen + 2 > sizeof(needle))
		return FLAT_NESTED;
	len = 1 + strcspn(s + 1, "{[");	/* and the length, in one pass */
	if (s[len] != '\0')
		return FLAT_NESTED;
	needle[0] = '"';
	memcpy(needle + 1, key, klen);
	needle[klen + 1] = '"';
	end = s + len;
	*vs = *ve = NULL;
	for (h = s; (p = memmem(h, end - h, needle, klen + 2)) != NULL; h = p + 1)
	{
		int			nbs = 0;
		const char *q;
		const char *e;

		while (p - nbs > s && p[-nbs - 1] == '\\')
			nbs++;
		if (nbs % 2 != 0)
			continue;			/* an escaped quote inside a string */
		q = json_ws(p + klen + 2);
		if (*q != ':')
			continue;			/* a string value "KEY" */
		q = json_ws(q + 1);
		e = json_value_end(q);
		if (e == NULL || e == q)
			return FLAT_UNREADABLE;
		*vs = q;
		*ve = e;
	}
	return FLAT_DONE;
}

/*
 * The walk over every member of attrs text s (at its '{'), for text with
 * nesting: sets vs/ve to the LAST top-level member KEY's value (NULL:
 * none); false for text it does not understand.
 */
static bool
flat_key_walk(const char *s, const char *key, size_t klen,
			  const char **vs, const char **ve)
{
	*vs = *ve = NULL;
	s = json_ws(s + 1);
	while (*s != '}')
	{
		bool		esc = false;
		const char *ks = s;
		const char *ke;
		const char *e;

		if (*s != '"' || (ke = json_string_end(s, &esc)) == NULL)
			break;
		s = json_ws(ke);
		if (*s != ':')
			break;
		s = json_ws(s + 1);
		e = json_value_end(s);
		if (e == NULL || e == s)
			break;
		if (!esc && (size_t) (ke - ks - 2) == klen && memcmp(ks + 1, key, klen) == 0)
		{
			*vs = s;
			*ve = e;
		}
		s = json_ws(e);
		if (*s == ',')
			s = json_ws(s + 1);
		else if (*s != '}')
			break;
	}
	return *s == '}';
}

/*
 * The label text of the value at vs..ve (vs NULL: no member), when it is
 * a string without escapes, a plain integer, true, false or null; false
 * for anything else.
 */
static bool
append_flat_value(StringInfo b, const char *vs, const char *ve)
{
	if (vs == NULL || (ve - vs == 4 && memcmp(vs, "null", 4) == 0) ||
		(ve - vs == 5 && memcmp(vs, "false", 5) == 0))
	{
		appendStringInfoString(b, vs && *vs == 'f' ? "\"false\"" : "\"\"");
		return true;
	}
	if (ve - vs == 4 && memcmp(vs, "true", 4) == 0)
	{
		appendStringInfoString(b, "\"true\"");
		return true;
	}
	if (*vs == '"')
	{
		bool		esc = false;

		(void) json_string_end(vs, &esc);
		if (esc)
			return false;
		append_label_value(b, vs + 1, (int) (ve - vs - 2));
		return true;
	}
	if (plain_integer(vs, (int) (ve - vs)))
	{
		append_label_value(b, vs, (int) (ve - vs));
		return true;
	}
	return false;
}

/*
 * append_attr_label without building the record's attrs jsonb, for attrs
 * text the scanner checked (attrs_flat): the LAST top-level member named
 * key (jsonb keeps the last of duplicates) whose value is a string without
 * escapes, a plain integer, true, false or null gives the same label text
 * the jsonb path gives.  Anything else returns false, appending nothing,
 * and the caller takes the jsonb path.  A key with escapes is never KEY
 * (group_by keys are letters, digits, "_", "." and "-", and the text has
 * no \u escapes).
 */
static bool
flat_attr_label(StringInfo b, const char *s, const char *key)
{
	size_t		klen = strlen(key);
	const char *vs = NULL;
	const char *ve = NULL;

	s = json_ws(s);
	if (*s != '{')
		return false;
	switch (flat_key_search(s, key, klen, &vs, &ve))
	{
		case FLAT_DONE:
			break;
		case FLAT_NESTED:
			if (!flat_key_walk(s, key, klen, &vs, &ve))
				return false;
			break;
		case FLAT_UNREADABLE:
			return false;
	}
	return append_flat_value(b, vs, ve);
}

/* A top-level attrs value as label text ("" when absent or null). */
static void
append_attr_label(StringInfo b, RecordView *v, const char *key)
{
	Jsonb	   *a;
	JsonbValue	jv;

	if (v->r->attrs && v->r->attrs_flat && !v->attrs_made &&
		flat_attr_label(b, v->r->attrs, key))
		return;
	a = record_attrs(v);

	if (a == NULL || !JB_ROOT_IS_OBJECT(a) ||
		getKeyJsonValueFromContainer(&a->root, key, strlen(key), &jv) == NULL)
	{
		appendStringInfoString(b, "\"\"");
		return;
	}
	switch (jv.type)
	{
		case jbvString:
			append_label_value(b, jv.val.string.val, jv.val.string.len);
			break;
		case jbvNumeric:
			{
				char	   *n = DatumGetCString(DirectFunctionCall1(numeric_out,
																	NumericGetDatum(jv.val.numeric)));

				append_label_value(b, n, strlen(n));
			}
			break;
		case jbvBool:
			appendStringInfoString(b, jv.val.boolean ? "\"true\"" : "\"false\"");
			break;
		case jbvBinary:
			{
				char	   *t = JsonbToCString(NULL, jv.val.binary.data, jv.val.binary.len);

				append_label_value(b, t, strlen(t));
			}
			break;
		default:
			appendStringInfoString(b, "\"\"");
			break;
	}
}

/*
 * The record's group labels under the rule, as a JSON object's text, in
 * buf (reset first: one buffer per spec serves the whole batch).
 */
static char *
group_labels(StringInfo buf, const CountRule *rule, RecordView *v)
{
	StringInfo	b = buf;
	const IngestRecord *r = v->r;

	resetStringInfo(b);
	appendStringInfoChar(b, '{');
	for (int k = 0; k < rule->ngroup; k++)
	{
		char		num[16];

		if (k > 0)
			appendStringInfoString(b, ", ");
		appendStringInfoString(b, rule->group_name[k]);
		appendStringInfoString(b, ": ");
		switch (rule->group[k])
		{
			case GL_SOURCE:
				append_label_value(b, r->source, strlen(r->source));
				break;
			case GL_LEVEL:
				append_label_value(b, r->level ? r->level : "", r->level ? strlen(r->level) : 0);
				break;
			case GL_STATUS:
				if (r->has_status)
					snprintf(num, sizeof(num), "%d", r->status);
				else
					num[0] = '\0';
				append_label_value(b, num, strlen(num));
				break;
			case GL_SEVERITY:
				appendStringInfo(b, "\"%s\"", logagg_severity_names[v->sev]);
				break;
			case GL_ATTR:
				append_attr_label(b, v, rule->attr_key[k]);
				break;
		}
	}
	appendStringInfoChar(b, '}');
	return b->data;
}

/* Start of the bucket holding ts, aligned to the Unix epoch. */
static int64
bucket_of(TimestampTz ts, int64 width)
{
	int64		u = ts + UNIX_EPOCH_US;
	int64		q = u / width;

	if (u % width < 0)
		q--;
	return q * width - UNIX_EPOCH_US;
}

/* Outcome of rule i for the record. */
static uint8
rule_outcome(const CountRule *rule, RecordView *v)
{
	if (!base_matches(rule, v))
		return OUT_NONE;
	if (rest_matches(rule, v))
		return OUT_FULL;
	return rule->is_ratio ? OUT_TOTAL : OUT_NONE;
}

static CountBatch *
count_batch_create(MemoryContext cxt)
{
	CountBatch *cb = palloc0(sizeof(CountBatch));
	HASHCTL		ctl;

	ctl.hcxt = cxt;
	ctl.keysize = sizeof(SigKey);
	ctl.entrysize = sizeof(SigEntry);
	ctl.hash = sig_key_hash;
	ctl.match = sig_key_match;
	cb->sigs = hash_create("logagg alert rule signatures", 64, &ctl,
						   HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	ctl.keysize = sizeof(ClassKey);
	ctl.entrysize = sizeof(ClassEntry);
	ctl.hash = class_key_hash;
	ctl.match = class_key_match;
	cb->classes = hash_create("logagg alert rule classes", 64, &ctl,
							  HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	ctl.keysize = sizeof(CountKey);
	ctl.entrysize = sizeof(CountEntry);
	ctl.hash = count_key_hash;
	ctl.match = count_key_match;
	cb->counts = hash_create("logagg alert rule counts", 256, &ctl,
							 HASH_ELEM | HASH_FUNCTION | HASH_COMPARE | HASH_CONTEXT);
	cb->class_cap = 16;
	cb->class_list = palloc(sizeof(ClassEntry *) * cb->class_cap);
	cb->scratch = palloc(Max(ncrules, 1));
	cb->partout = palloc(Max(ncrules, 1));
	cb->lbuf = palloc(sizeof(StringInfoData) * Max(nspecs, 1));
	for (int i = 0; i < nspecs; i++)
		initStringInfo(&cb->lbuf[i]);
	return cb;
}

/* The class of outcomes out[] (per rule) in part p: -1 when none counts. */
static int
class_of(CountBatch *cb, int p, const uint8 *out)
{
	const CountPart *part = &cparts[p];
	bool		any = false;
	ClassKey	key;
	ClassEntry *e;
	bool		found;

	for (int j = 0; j < part->nrules; j++)
	{
		cb->partout[j] = out[part->rules[j]];
		any |= (cb->partout[j] != OUT_NONE);
	}
	if (!any)
		return -1;
	key.part = p;
	key.out = cb->partout;
	key.hash = hash_combine(hash_bytes(cb->partout, part->nrules), (uint32) p);
	e = hash_search(cb->classes, &key, HASH_ENTER, &found);
	if (!found)
	{
		uint8	   *copy = palloc(part->nrules);

		memcpy(copy, cb->partout, part->nrules);
		e->key.out = copy;
		if (cb->nclasses == cb->class_cap)
		{
			cb->class_cap *= 2;
			cb->class_list = repalloc(cb->class_list, sizeof(ClassEntry *) * cb->class_cap);
		}
		e->id = cb->nclasses;
		cb->class_list[cb->nclasses++] = e;
	}
	return e->id;
}

/* The outcomes of the simple rules for the record's source, severity, level, status. */
static SigEntry *
sig_of(CountBatch *cb, RecordView *v)
{
	const IngestRecord *r = v->r;
	SigKey		key;
	SigEntry   *e;
	bool		found;
	uint32		h;

	h = hash_bytes((const unsigned char *) r->source, strlen(r->source));
	if (r->level)
		h = hash_combine(h, hash_bytes((const unsigned char *) r->level, strlen(r->level)));
	h = hash_combine(h, hash_bytes_uint32((uint32) (r->has_status ? r->status : -1)));
	h = hash_combine(h, (uint32) v->sev);
	key.hash = h;
	key.source = r->source;
	key.level = r->level;
	key.status = r->has_status ? r->status : 0;
	key.has_status = r->has_status;
	key.sev = (uint8) v->sev;
	e = hash_search(cb->sigs, &key, HASH_ENTER, &found);
	if (!found)
	{
		e->out = palloc0(Max(ncrules, 1));
		for (int i = 0; i < ncrules; i++)
			if (crules[i].simple)
				e->out[i] = rule_outcome(&crules[i], v);
		e->cls = NULL;
		if (!have_complex)
		{
			e->cls = palloc(sizeof(int) * Max(ncparts, 1));
			for (int p = 0; p < ncparts; p++)
				e->cls[p] = class_of(cb, p, e->out);
		}
	}
	return e;
}

/* Count the record once in class cls of part p. */
static void
count_in_class(CountBatch *cb, RecordView *v, int p, int cls, int64 id)
{
	const CountPart *part = &cparts[p];
	const CountRule *first = &crules[part->rules[0]];
	CountKey	key;
	CountEntry *e;
	bool		found;

	if (v->labels[part->spec] == NULL)
	{
		char	   *l = group_labels(&cb->lbuf[part->spec], first, v);

		v->labels[part->spec] = l;
		v->labels_hash[part->spec] = hash_bytes((const unsigned char *) l, strlen(l));
	}
	key.cls = cls;
	key.labels_hash = v->labels_hash[part->spec];
	key.bucket = bucket_of(v->r->ts, part->bucket_us);
	key.labels = v->labels[part->spec];
	e = hash_search(cb->counts, &key, HASH_ENTER, &found);
	if (!found)
	{
		/* the key's labels live in the reused buffer: keep a copy */
		e->key.labels = pstrdup(key.labels);
		e->n = 0;
		e->last_ts = 0;
		e->last_id = 0;
	}
	e->n++;
	if (e->last_ts == 0 || v->r->ts >= e->last_ts)
	{
		e->last_ts = v->r->ts;
		e->last_id = id;
	}
}

static void
count_record(CountBatch *cb, RecordView *v, int64 id)
{
	SigEntry   *sig = sig_of(cb, v);

	if (sig->cls)
	{
		for (int p = 0; p < ncparts; p++)
			if (sig->cls[p] >= 0)
				count_in_class(cb, v, p, sig->cls[p], id);
		return;
	}

	/* rules that look at the message or attrs: each record on its own */
	memcpy(cb->scratch, sig->out, ncrules);
	for (int i = 0; i < ncrules; i++)
		if (!crules[i].simple)
			cb->scratch[i] = rule_outcome(&crules[i], v);
	logagg_regex_budget_end();
	for (int p = 0; p < ncparts; p++)
	{
		int			cls = class_of(cb, p, cb->scratch);

		if (cls >= 0)
			count_in_class(cb, v, p, cls, id);
	}
}

/*
 * A class as text for the delta: the window and bucket width in seconds
 * of its part, then its rules' ids, comma-separated, a negative id for a
 * rule counted in the denominator only ("300:5:3,-4,7").
 */
static char *
class_text(const ClassEntry *c)
{
	const CountPart *part = &cparts[c->key.part];
	StringInfoData b;
	bool		first = true;

	initStringInfo(&b);
	appendStringInfo(&b, INT64_FORMAT ":" INT64_FORMAT ":", part->window_secs,
					 part->bucket_us / USECS_PER_SEC);
	for (int j = 0; j < part->nrules; j++)
	{
		int			id = crules[part->rules[j]].id;

		if (c->key.out[j] == OUT_NONE)
			continue;
		if (!first)
			appendStringInfoChar(&b, ',');
		first = false;
		appendStringInfo(&b, "%d", c->key.out[j] == OUT_FULL ? id : -id);
	}
	return b.data;
}

static ArrayType *
make_array(Datum *values, bool *nulls, int n, Oid type)
{
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			dims[1] = {n};
	int			lbs[1] = {1};

	get_typlenbyvalalign(type, &typlen, &typbyval, &typalign);
	return construct_md_array(values, nulls, 1, dims, lbs, type, typlen, typbyval, typalign);
}

#define DELTA_COLS 7

/*
 * The batch's counts as ONE row of logagg._alert_rule_deltas: its classes
 * and, per (class, labels, bucket), the number of records and the latest
 * one.  The evaluator folds it into the counters (_fold_alert_rule_deltas).
 */
static void
write_delta(CountBatch *cb)
{
	long		n = hash_get_num_entries(cb->counts);
	static const Oid types[DELTA_COLS] = {TEXTOID, INT4OID, TEXTOID, TIMESTAMPTZOID, INT8OID,
	TIMESTAMPTZOID, INT8OID};
	Datum	   *v[DELTA_COLS];
	Datum		args[DELTA_COLS];
	Datum	   *classes;
	HASH_SEQ_STATUS hs;
	CountEntry *e;
	int			i = 0;
	int			ret;

	if (delta_plan == NULL)
	{
		Oid			argtypes[DELTA_COLS];
		SPIPlanPtr	p;

		for (int c = 0; c < DELTA_COLS; c++)
			argtypes[c] = get_array_type(types[c]);
		p = SPI_prepare("INSERT INTO logagg._alert_rule_deltas "
						"(classes, class, labels, bucket, n, last_ts, last_log_id) "
						"VALUES ($1, $2, $3, $4, $5, $6, $7)", DELTA_COLS, argtypes);
		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "logagg: preparing the alert rule delta insert failed: %s",
				 SPI_result_code_string(SPI_result));
		delta_plan = p;
	}

	classes = palloc(sizeof(Datum) * cb->nclasses);
	for (int c = 0; c < cb->nclasses; c++)
		classes[c] = CStringGetTextDatum(class_text(cb->class_list[c]));
	args[0] = PointerGetDatum(make_array(classes, NULL, cb->nclasses, TEXTOID));

	for (int c = 1; c < DELTA_COLS; c++)
		v[c] = palloc(sizeof(Datum) * n);
	hash_seq_init(&hs, cb->counts);
	while ((e = hash_seq_search(&hs)) != NULL)
	{
		v[1][i] = Int32GetDatum(e->key.cls + 1);	/* SQL arrays start at 1 */
		v[2][i] = CStringGetTextDatum(e->key.labels);
		v[3][i] = TimestampTzGetDatum(e->key.bucket);
		v[4][i] = Int64GetDatum(e->n);
		v[5][i] = TimestampTzGetDatum(e->last_ts);
		v[6][i] = Int64GetDatum(e->last_id);
		i++;
	}
	for (int c = 1; c < DELTA_COLS; c++)
		args[c] = PointerGetDatum(make_array(v[c], NULL, i, types[c]));
	ret = SPI_execute_plan(delta_plan, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "logagg: counting for alert rules failed: %s", SPI_result_code_string(ret));
}

/*
 * Count records idx[0..n-1] of the batch (ids[i], sevs[i] are record i's
 * id and severity) for every alert rule, in the current transaction.
 * Needs SPI.  Called by ingest_batch.c right after the rows are copied.
 */
void
logagg_alert_rules_count(IngestBatch *batch, const int *idx, int n,
						 const int64 *ids, const uint8 *sevs)
{
	MemoryContext cxt;
	MemoryContext oldcxt;
	CountBatch *cb;
	char	  **labels;
	uint32	   *hashes;

	crules_ensure_loaded();
	if (ncrules == 0 || n == 0)
		return;

	cxt = AllocSetContextCreate(CurrentMemoryContext, "logagg alert rule counts",
								ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(cxt);
	cb = count_batch_create(cxt);
	labels = palloc(sizeof(char *) * Max(nspecs, 1));
	hashes = palloc(sizeof(uint32) * Max(nspecs, 1));
	for (int k = 0; k < n; k++)
	{
		RecordView	v;
		int			i = idx[k];

		v.r = &batch->records[i];
		v.sev = (LogaggSeverity) sevs[i];
		v.attrs = NULL;
		v.attrs_made = false;
		memset(labels, 0, sizeof(char *) * Max(nspecs, 1));
		v.labels = labels;
		v.labels_hash = hashes;
		count_record(cb, &v, ids[i]);
	}
	if (hash_get_num_entries(cb->counts) > 0)
		write_delta(cb);
	MemoryContextSwitchTo(oldcxt);
	MemoryContextDelete(cxt);
}

/* ---------------------------------------------------------------------
 * Evaluation (dispatch worker 1)
 * ---------------------------------------------------------------------
 */

/* Counters are pruned this often. */
#define PRUNE_INTERVAL_MS 60000

static SPIPlanPtr eval_plan = NULL;
static TimestampTz last_prune = 0;

static void
evaluate_in_transaction(void *arg)
{
	int		   *queued = (int *) arg;
	bool		isnull;
	Datum		d;

	if (eval_plan == NULL)
	{
		SPIPlanPtr	p = SPI_prepare("SELECT logagg._evaluate_alert_rules()", 0, NULL);

		if (p == NULL || SPI_keepplan(p) != 0)
			elog(ERROR, "logagg: preparing the alert rule evaluation failed");
		eval_plan = p;
	}
	if (SPI_execute_plan(eval_plan, NULL, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "logagg: _evaluate_alert_rules failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	*queued = isnull ? 0 : DatumGetInt32(d);

	if (last_prune == 0 ||
		TimestampDifferenceExceeds(last_prune, GetCurrentTimestamp(), PRUNE_INTERVAL_MS))
	{
		if (SPI_execute("SELECT logagg._prune_alert_rule_counts()", false, 1) != SPI_OK_SELECT)
			elog(ERROR, "logagg: _prune_alert_rule_counts failed");
		last_prune = GetCurrentTimestamp();
	}
}

static bool
rules_table_exists(void)
{
	Oid			nsp = get_namespace_oid(LOGAGG_SCHEMA, true);

	return OidIsValid(nsp) && OidIsValid(get_relname_relid("alert_rules", nsp));
}

static void
evaluate_guarded(void *arg)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;

	if (!rules_table_exists())
		return;

	/*
	 * In a subtransaction: a failing evaluation (a bug, a lock timeout) is
	 * logged and tried again next time; it must never make the dispatcher
	 * exit, which would resend every alert it has in flight.
	 */
	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		evaluate_in_transaction(arg);
		ReleaseCurrentSubTransaction();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(oldcxt);
		edata = CopyErrorData();
		FlushErrorState();
		RollbackAndReleaseCurrentSubTransaction();
		ereport(WARNING,
				(errmsg("logagg: evaluating alert rules failed: %s", edata->message)));
		FreeErrorData(edata);
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
}

/*
 * One evaluation of the enabled rules, in a short transaction of its own
 * (no network I/O in it).  Returns the number of notifications queued.
 */
int
logagg_alert_rules_evaluate(void)
{
	int			queued = 0;

	logagg_run_or_exit(evaluate_guarded, &queued, "logagg: evaluating alert rules");
	return queued;
}
