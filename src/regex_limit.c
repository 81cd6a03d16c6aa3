/*-------------------------------------------------------------------------
 *
 * regex_limit.c
 *		User-written regular expressions (logagg.rules.message_regex,
 *		logagg.silences.message_regex) evaluated under a time limit.
 *
 * PostgreSQL's regex engine backtracks for back-references: a pattern
 * like (a*)*\1\1b\1 on 30 kB of "a" and a "b" was still running after
 * minutes.  In a client backend statement_timeout bounds that; the
 * background workers have no statement timeout and ignore SIGTERM until
 * their loop looks.
 * Here every evaluation for one record (all the rules it reaches) or one
 * alert (one silence) gets at most logagg.regex_timeout: a timer of our
 * own raises a query-cancel interrupt, which the regex engine polls; it
 * unwinds cleanly (freeing its own memory) and the error it then raises is
 * caught right here, so a regex that runs out of time counts as "no
 * match" -- the record is still stored (classified by the next rules),
 * the alert is still sent -- with a rate-limited WARNING and the
 * regex_timeouts counter in logagg.status().  The worker never exits for
 * it.  While a regex runs, a worker's SIGTERM acts at once (see worker.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "regex/regex.h"
#include "storage/latch.h"
#include "utils/builtins.h"
#include "utils/timeout.h"
#include "utils/timestamp.h"

#include "logagg.h"

int			logagg_regex_timeout_ms = 100;

/* Seconds between two WARNINGs about timed-out regexes, per process. */
#define REGEX_WARNING_INTERVAL_MS 10000

static TimeoutId regex_timeout_id = MAX_TIMEOUTS;	/* not registered */
static volatile sig_atomic_t regex_timer_fired = false;
static bool regex_timer_on = false;

/* Timed-out evaluations: in all, since the last WARNING, and when that was. */
static uint64 timeouts_total = 0;
static uint64 timeouts_unreported = 0;
static TimestampTz last_warning_at = 0;

/* SIGALRM context: only flags and the latch. */
static void
regex_timeout_handler(void)
{
	regex_timer_fired = true;
	QueryCancelPending = true;
	InterruptPending = true;
	SetLatch(MyLatch);
}

/*
 * Start the time budget of one record or alert (once; later calls while it
 * runs do nothing).  Returns false when there is no budget left: the
 * timer already fired for this record.
 */
static bool
budget_start(void)
{
	if (regex_timer_on)
		return !regex_timer_fired;
	if (logagg_regex_timeout_ms <= 0)
		return true;
	if (regex_timeout_id == MAX_TIMEOUTS)
		regex_timeout_id = RegisterTimeout(USER_TIMEOUT, regex_timeout_handler);
	regex_timer_fired = false;
	enable_timeout_after(regex_timeout_id, logagg_regex_timeout_ms);
	regex_timer_on = true;
	return true;
}

/*
 * End the budget.  A timer that fired after the last regex returned
 * leaves a query-cancel request behind that no regex consumed: withdraw it,
 * or the next CHECK_FOR_INTERRUPTS anywhere would cancel unrelated work.
 */
void
logagg_regex_budget_end(void)
{
	if (!regex_timer_on)
		return;
	disable_timeout(regex_timeout_id, false);
	regex_timer_on = false;
	if (regex_timer_fired)
	{
		QueryCancelPending = false;
		regex_timer_fired = false;
	}
}

static void
report_timeout(const char *what)
{
	TimestampTz now = GetCurrentTimestamp();

	logagg_count(LC_REGEX_TIMEOUTS, 1);
	timeouts_total++;
	timeouts_unreported++;
	if (last_warning_at != 0 &&
		!TimestampDifferenceExceeds(last_warning_at, now, REGEX_WARNING_INTERVAL_MS))
		return;
	ereport(WARNING,
			(errcode(ERRCODE_QUERY_CANCELED),
			 errmsg("logagg: a message_regex of %s ran out of time (logagg.regex_timeout = %d ms) and counted as not matching",
					what, logagg_regex_timeout_ms),
			 errdetail("%llu evaluation(s) timed out since the last report.",
					   (unsigned long long) timeouts_unreported),
			 errhint("Simplify the pattern (back-references such as \\1 can take exponential time) or raise logagg.regex_timeout.")));
	timeouts_unreported = 0;
	last_warning_at = now;
}

/*
 * Does pattern match subject[0..len)?  Runs within the current budget
 * (starting one if none runs: the caller ends it with
 * logagg_regex_budget_end() once the record or alert is decided).  'what'
 * names the table for the WARNING.  Errors other than our own time limit
 * (an invalid pattern, a real cancel) end the budget and propagate.
 */
bool
logagg_regex_match(text *pattern, const char *subject, int len, Oid collation,
				   const char *what)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	volatile bool matched = false;
	volatile bool timed_out = false;

	if (!budget_start())
	{
		report_timeout(what);
		return false;
	}
	logagg_sigterm_interrupts = true;
	PG_TRY();
	{
		matched = RE_compile_and_execute(pattern, (char *) subject, len,
										 REG_ADVANCED, collation, 0, NULL);
	}
	PG_CATCH();
	{
		int			code = geterrcode();

		logagg_sigterm_interrupts = false;

		/*
		 * Ours when the timer fired and the error is the cancel, or the
		 * engine's "operation cancelled" when interrupts were held off.
		 */
		if (!regex_timer_fired ||
			(code != ERRCODE_QUERY_CANCELED && code != ERRCODE_INVALID_REGULAR_EXPRESSION))
		{
			logagg_regex_budget_end();
			PG_RE_THROW();
		}
		/*
		 * Our own cancel: the engine has already freed its state; only the
		 * error remains to be discarded.  No lock, buffer or subtransaction
		 * is involved in evaluating a regex.
		 */
		MemoryContextSwitchTo(oldcxt);
		FlushErrorState();
		timed_out = true;
	}
	PG_END_TRY();
	logagg_sigterm_interrupts = false;
	if (timed_out)
	{
		report_timeout(what);
		return false;
	}
	return matched;
}

/*
 * Patterns that ran out of time at one call site of logagg._regex_match()
 * during one query (fn_extra).  One claim of the dispatch worker checks up
 * to 1000 alerts against every silence: a pattern that keeps running out
 * of time is skipped (no match) after MAX_TIMEOUTS_PER_PATTERN, so that a
 * claim costs at most that many budgets per silence, not one per alert.
 */
#define MAX_TIMEOUTS_PER_PATTERN 2
#define MAX_TRACKED_PATTERNS 32

typedef struct SlowPatterns
{
	int			n;
	uint32		hash[MAX_TRACKED_PATTERNS];
	int			timeouts[MAX_TRACKED_PATTERNS];
} SlowPatterns;

static int *
slow_pattern_count(FunctionCallInfo fcinfo, text *pattern)
{
	SlowPatterns *sp = (SlowPatterns *) fcinfo->flinfo->fn_extra;
	uint32		h = hash_bytes((const unsigned char *) VARDATA_ANY(pattern),
							   VARSIZE_ANY_EXHDR(pattern));

	if (sp == NULL)
		sp = fcinfo->flinfo->fn_extra =
			MemoryContextAllocZero(fcinfo->flinfo->fn_mcxt, sizeof(SlowPatterns));
	for (int i = 0; i < sp->n; i++)
		if (sp->hash[i] == h)
			return &sp->timeouts[i];
	if (sp->n == MAX_TRACKED_PATTERNS)
		return NULL;
	sp->hash[sp->n] = h;
	return &sp->timeouts[sp->n++];
}

/*
 * logagg._regex_match(subject text, pattern text) -> boolean: subject ~
 * pattern, under logagg.regex_timeout (false when it runs out).  Used for
 * silences' message_regex in logagg._claim_alerts().
 */
PG_FUNCTION_INFO_V1(logagg_regex_match_sql);
Datum
logagg_regex_match_sql(PG_FUNCTION_ARGS)
{
	text	   *subject = PG_GETARG_TEXT_PP(0);
	text	   *pattern = PG_GETARG_TEXT_PP(1);
	int		   *timeouts = slow_pattern_count(fcinfo, pattern);
	uint64		before = timeouts_total;
	bool		result;

	if (timeouts != NULL && *timeouts >= MAX_TIMEOUTS_PER_PATTERN)
		PG_RETURN_BOOL(false);
	result = logagg_regex_match(pattern, VARDATA_ANY(subject),
								VARSIZE_ANY_EXHDR(subject),
								PG_GET_COLLATION(), "logagg.silences");
	logagg_regex_budget_end();
	if (timeouts != NULL && timeouts_total != before)
		(*timeouts)++;
	PG_RETURN_BOOL(result);
}
