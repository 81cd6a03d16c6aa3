/*-------------------------------------------------------------------------
 *
 * classify.c
 *		Severity classification: logagg.rules evaluated in order, first
 *		match wins.  The ingest path and logagg.classify() call the same
 *		function, so what SQL says is what ingest does.  Also level
 *		normalisation (logagg.normalize_level(), OpenTelemetry
 *		severity_number).
 *
 * The rules are cached per process.  A statement trigger on logagg.rules
 * sends a relcache invalidation for the table (see cache_inval.c); our
 * relcache callback marks the cache stale, and the next classification
 * reloads it.  Invalidations are delivered at transaction start, so the
 * ingest worker sees a rule change from its next batch on, without a
 * restart and without polling the table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>

#include "catalog/namespace.h"
#include "catalog/pg_collation.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/syscache.h"

#include "logagg.h"

const char *const logagg_severity_names[] = {"critical", "high", "low"};

typedef struct ClassifyRule
{
	bool		has_status;
	int			status_min;
	int			status_max;
	int			nlevels;		/* 0 = any level */
	char	  **levels;			/* normalised */
	char	   *source;			/* NULL = any */
	text	   *message_regex;	/* NULL = any */
	LogaggSeverity severity;
} ClassifyRule;

static MemoryContext rules_cxt = NULL;
static ClassifyRule *rules = NULL;
static int	nrules = 0;
static bool rules_valid = false;
static bool callback_registered = false;
static Oid	rules_relid = InvalidOid;

/*
 * Canonical level names.  Aliases cover syslog, OpenTelemetry and common
 * logging-library spellings; anything else is kept, lower-cased.
 */
static const struct
{
	const char *alias;
	const char *canonical;
}			level_aliases[] = {
	{"trace", "trace"}, {"verbose", "trace"},
	{"debug", "debug"}, {"dbg", "debug"},
	{"info", "info"}, {"information", "info"}, {"informational", "info"},
	{"notice", "notice"},
	{"warn", "warn"}, {"warning", "warn"},
	{"error", "error"}, {"err", "error"},
	{"fatal", "fatal"}, {"critical", "fatal"}, {"crit", "fatal"},
	{"alert", "fatal"}, {"emerg", "fatal"}, {"emergency", "fatal"},
	{"panic", "fatal"},
};

/*
 * Returns the canonical spelling of a level, or NULL when the level is not
 * a known one (callers then keep their lower-cased copy).
 */
const char *
logagg_normalize_level(const char *level, int len)
{
	char		buf[16];

	if (len <= 0 || len >= (int) sizeof(buf))
		return NULL;
	for (int i = 0; i < len; i++)
		buf[i] = pg_ascii_tolower((unsigned char) level[i]);
	buf[len] = '\0';
	for (int i = 0; i < lengthof(level_aliases); i++)
		if (strcmp(buf, level_aliases[i].alias) == 0)
			return level_aliases[i].canonical;
	return NULL;
}

/* OpenTelemetry severity_number (1-24) to a canonical level. */
const char *
logagg_level_from_severity_number(int n)
{
	if (n < 1 || n > 24)
		return NULL;
	if (n <= 4)
		return "trace";
	if (n <= 8)
		return "debug";
	if (n <= 12)
		return "info";
	if (n <= 16)
		return "warn";
	if (n <= 20)
		return "error";
	return "fatal";
}

/* Normalised copy in the given memory context: canonical, else lower-case. */
static char *
normalized_copy(const char *level, int len)
{
	const char *canon = logagg_normalize_level(level, len);
	char	   *res;

	if (canon)
		return pstrdup(canon);
	res = pnstrdup(level, len);
	for (char *p = res; *p; p++)
		*p = pg_ascii_tolower((unsigned char) *p);
	return res;
}

static void
rules_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == rules_relid)
		rules_valid = false;
}

int
logagg_severity_index(const char *name)
{
	for (int i = 0; name && i < 3; i++)
		if (strcmp(name, logagg_severity_names[i]) == 0)
			return i;
	return -1;
}

static LogaggSeverity
severity_from_name(const char *name)
{
	int			i = logagg_severity_index(name);

	if (i < 0)
		elog(ERROR, "logagg: unknown severity \"%s\"", name);
	return (LogaggSeverity) i;
}

/*
 * (Re)load the rules if a change invalidated them.  Needs a transaction.
 */
void
logagg_rules_ensure_loaded(void)
{
	MemoryContext oldcxt;
	int			ret;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(rules_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	if (rules_valid)
		return;

	if (rules_cxt == NULL)
		rules_cxt = AllocSetContextCreate(TopMemoryContext, "logagg rules",
										  ALLOCSET_SMALL_SIZES);
	else
		MemoryContextReset(rules_cxt);
	rules = NULL;
	nrules = 0;

	/* Mark valid before reading: an invalidation during the load wins. */
	rules_valid = true;
	rules_relid = get_relname_relid("rules", get_namespace_oid(LOGAGG_SCHEMA, false));

	PG_TRY();
	{
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "logagg: SPI_connect failed");
	ret = SPI_execute("SELECT status_min, status_max, levels, source, message_regex, severity::text "
					  "FROM logagg.rules WHERE enabled ORDER BY rule_order, id",
					  true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: reading logagg.rules failed: %s", SPI_result_code_string(ret));

	oldcxt = MemoryContextSwitchTo(rules_cxt);
	rules = palloc0(sizeof(ClassifyRule) * Max(SPI_processed, 1));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		ClassifyRule *r = &rules[nrules++];
		bool		isnull_min,
					isnull_max,
					isnull;
		Datum		d;
		char	   *sev;

		d = SPI_getbinval(tup, desc, 1, &isnull_min);
		r->status_min = isnull_min ? INT_MIN : DatumGetInt32(d);
		d = SPI_getbinval(tup, desc, 2, &isnull_max);
		r->status_max = isnull_max ? INT_MAX : DatumGetInt32(d);
		r->has_status = !(isnull_min && isnull_max);

		d = SPI_getbinval(tup, desc, 3, &isnull);
		if (!isnull)
		{
			ArrayType  *arr = DatumGetArrayTypeP(d);
			Datum	   *elems;
			bool	   *nulls;
			int			n;

			deconstruct_array(arr, TEXTOID, -1, false, TYPALIGN_INT, &elems, &nulls, &n);
			r->levels = palloc(sizeof(char *) * Max(n, 1));
			for (int j = 0; j < n; j++)
			{
				if (nulls[j])
					continue;
				r->levels[r->nlevels++] = normalized_copy(VARDATA_ANY(DatumGetTextPP(elems[j])),
														  VARSIZE_ANY_EXHDR(DatumGetTextPP(elems[j])));
			}
			/* an empty level list matches nothing, not everything */
			if (r->nlevels == 0)
				r->nlevels = -1;
		}
		d = SPI_getbinval(tup, desc, 4, &isnull);
		if (!isnull)
			r->source = TextDatumGetCString(d);
		d = SPI_getbinval(tup, desc, 5, &isnull);
		if (!isnull)
			r->message_regex = DatumGetTextPCopy(d);
		sev = SPI_getvalue(tup, desc, 6);
		r->severity = severity_from_name(sev);
	}
	MemoryContextSwitchTo(oldcxt);
	SPI_finish();
	}
	PG_CATCH();
	{
		/* a half-loaded rule list must never be used */
		rules_valid = false;
		nrules = 0;
		PG_RE_THROW();
	}
	PG_END_TRY();
}

static bool
rule_matches(const ClassifyRule *r, int status, bool has_status,
			 const char *level, const char *source, const char *message)
{
	if (r->has_status)
	{
		if (!has_status || status < r->status_min || status > r->status_max)
			return false;
	}
	if (r->nlevels != 0)
	{
		bool		found = false;

		if (level == NULL || r->nlevels < 0)
			return false;
		for (int i = 0; i < r->nlevels && !found; i++)
			found = (strcmp(level, r->levels[i]) == 0);
		if (!found)
			return false;
	}
	if (r->source)
	{
		if (source == NULL || strcmp(source, r->source) != 0)
			return false;
	}
	if (r->message_regex)
	{
		/* under logagg.regex_timeout for the whole record (regex_limit.c) */
		if (message == NULL ||
			!logagg_regex_match(r->message_regex, message, strlen(message),
								C_COLLATION_OID, "logagg.rules"))
			return false;
	}
	return true;
}

/*
 * The verdict for one record.  'level' must already be normalised (the
 * ingest path normalises once per record; logagg.classify() does it for
 * its caller).  Needs a transaction when the rules must be (re)loaded.
 */
LogaggSeverity
logagg_classify_record(int status, bool has_status, const char *level,
					   const char *source, const char *message)
{
	LogaggSeverity result = LOGAGG_SEV_LOW;

	logagg_rules_ensure_loaded();
	for (int i = 0; i < nrules; i++)
		if (rule_matches(&rules[i], status, has_status, level, source, message))
		{
			result = rules[i].severity;
			break;
		}
	logagg_regex_budget_end();
	return result;
}

static Datum
severity_datum(LogaggSeverity sev)
{
	Oid			enumtype;
	Oid			nsp = get_namespace_oid(LOGAGG_SCHEMA, false);

	enumtype = GetSysCacheOid2(TYPENAMENSP, Anum_pg_type_oid,
							   CStringGetDatum("severity"), ObjectIdGetDatum(nsp));
	return DirectFunctionCall2(enum_in, CStringGetDatum(logagg_severity_names[sev]),
							   ObjectIdGetDatum(enumtype));
}

/*
 * logagg.classify(status int, level text, source text, message text)
 */
PG_FUNCTION_INFO_V1(logagg_classify);
Datum
logagg_classify(PG_FUNCTION_ARGS)
{
	bool		has_status = !PG_ARGISNULL(0);
	int			status = has_status ? PG_GETARG_INT32(0) : 0;
	char	   *level = NULL;
	char	   *source = PG_ARGISNULL(2) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(2));
	char	   *message = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));

	if (!PG_ARGISNULL(1))
	{
		text	   *t = PG_GETARG_TEXT_PP(1);

		level = normalized_copy(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
	}
	PG_RETURN_DATUM(severity_datum(logagg_classify_record(status, has_status, level,
														  source, message)));
}

/*
 * logagg.normalize_level(text)
 */
PG_FUNCTION_INFO_V1(logagg_normalize_level_sql);
Datum
logagg_normalize_level_sql(PG_FUNCTION_ARGS)
{
	text	   *t = PG_GETARG_TEXT_PP(0);

	PG_RETURN_TEXT_P(cstring_to_text(normalized_copy(VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t))));
}
