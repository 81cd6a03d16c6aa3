/*-------------------------------------------------------------------------
 *
 * dispatcher.c
 *		Taking due alerts from logagg.alert_queue and recording outcomes.
 *
 * One "cycle" is one short transaction: first the outcomes of deliveries
 * that finished since the last cycle go to logagg.alert_log, and their
 * queue rows are deleted, rescheduled or marked dead (_finish_alerts);
 * then up to the free concurrency slots of due alerts are taken
 * (_claim_alerts: ORDER BY severity, next_attempt_at, id FOR UPDATE SKIP
 * LOCKED, which also logs and drops silenced ones) and their transfers are
 * handed to libcurl.  No transaction stays open while a request is on the
 * wire: a taken row is leased (its next_attempt_at moves past the request
 * timeout), so a dispatcher that dies mid-send leaves it to be retried
 * with the same alert_id, and a healthy one never sends it twice.
 *
 * Also here: releasing a restarted worker's claims, building the
 * notification payload and picking the dest_*.c function for the
 * destination's kind, and the periodic expiry of ended alert groups.
 * The SQL halves live in schema/20_alerts.sql; the delivery policy (which
 * failures are permanent, Retry-After) is decided in curl_multi.c.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "commands/extension.h"

#include <math.h>

#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"
#include "utils/numeric.h"
#include "utils/resowner.h"
#include "utils/timestamp.h"

#include "alerts.h"
#include "logagg.h"

/* A taken row becomes due again this long after the request timeout. */
#define LEASE_MARGIN_MS 30000

static int	my_worker_index = 0;
static SPIPlanPtr claim_plan = NULL;
static SPIPlanPtr finish_plan = NULL;
static SPIPlanPtr next_due_plan = NULL;
static bool claim_columns_checked = false;

/* deliveries handed to libcurl and not finished yet */
int			logagg_dispatch_inflight = 0;

typedef void (*DestFn) (LogaggDelivery *d);

static const struct
{
	const char *kind;
	DestFn		fn;
}			dest_kinds[] =
{
	{"webhook", logagg_dest_webhook},
	{"slack", logagg_dest_slack},
	{"email", logagg_dest_email},
	{"sms", logagg_dest_sms},
	{"pagerduty", logagg_dest_pagerduty},
	{"alertmanager", logagg_dest_alertmanager},
};

/*
 * The one-line summary used as e-mail subject, SMS text and Slack /
 * PagerDuty title: "[CRITICAL] service-a: 503 GET /api/orders ×123"; for
 * a rule alert the message is the rule's summary, and a resolved one
 * starts with "[RESOLVED] ".
 */
char *
logagg_alert_headline(LogaggAlert *a)
{
	StringInfoData s;
	char		status[16] = "";
	int			len;

	initStringInfo(&s);
	if (a->rule_status && strcmp(a->rule_status, "resolved") == 0)
		appendStringInfoString(&s, "[RESOLVED] ");
	appendStringInfoChar(&s, '[');
	for (const char *p = a->severity; *p; p++)
		appendStringInfoChar(&s, pg_toupper((unsigned char) *p));
	appendStringInfoString(&s, "] ");
	if (a->source[0])
		appendStringInfo(&s, "%s: ", a->source);
	if (a->has_status)
	{
		snprintf(status, sizeof(status), "%d", a->status);
		if (strncmp(a->message, status, strlen(status)) != 0)
			appendStringInfo(&s, "%s ", status);
	}
	/*
	 * keep subjects and SMS short, cutting at a character boundary; a
	 * group's message lists its alerts after a first summary line
	 */
	len = a->is_group ? strcspn(a->message, "\n") : strlen(a->message);
	if (len > 120)
	{
		len = pg_mbcliplen(a->message, len, 117);
		appendBinaryStringInfo(&s, a->message, len);
		appendStringInfoString(&s, "...");
	}
	else
		appendBinaryStringInfo(&s, a->message, len);
	if (a->count > 1 && a->rule_status == NULL)
		appendStringInfo(&s, " \xC3\x97" INT64_FORMAT, a->count);	/* U+00D7 × */
	if (a->is_test)
		appendStringInfoString(&s, " (test)");
	return s.data;
}

/* ---- start of a worker ---- */

static void
release_claims(void *arg)
{
	Datum		args[1] = {Int32GetDatum(my_worker_index)};
	Oid			types[1] = {INT4OID};

	if (SPI_execute_with_args("SELECT logagg._release_claims($1)", 1, types, args,
							  NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "logagg: _release_claims failed");
}

void
logagg_dispatcher_start(int worker_index)
{
	my_worker_index = worker_index;
	logagg_run_or_exit(release_claims, NULL, "logagg: releasing alerts");
}

static SPIPlanPtr
keep_plan(const char *sql, int nargs, Oid *types)
{
	SPIPlanPtr	p = SPI_prepare(sql, nargs, types);

	if (p == NULL)
		elog(ERROR, "logagg: SPI_prepare failed for \"%s\": %s", sql,
			 SPI_result_code_string(SPI_result));
	SPI_keepplan(p);
	return p;
}

/* ---- one cycle ---- */

typedef struct CycleArgs
{
	dlist_head *done;
	int			slots;
	int			started;
	TimestampTz next_due;
	dlist_head	failed_at_start;
} CycleArgs;

/*
 * One outcome as _finish_alerts takes it.  Every number is finite and in
 * range whatever the receiver said, and the error is valid text
 * (logagg_delivery_fail cleaned it).  minimal leaves out everything the
 * receiver supplied: the fallback when recording the full outcome failed.
 */
static void
append_outcome(StringInfo js, LogaggDelivery *d, bool minimal)
{
	double		latency = d->latency_ms;

	if (isnan(latency) || latency < 0)
		latency = 0;
	latency = Min(latency, 1e9);
	appendStringInfo(js, "{\"id\":" INT64_FORMAT ",\"ok\":%s,\"latency_ms\":%.3f",
					 d->alert.id, d->failed ? "false" : "true", latency);
	if (d->http_status > 0 && d->http_status < 1000)
		appendStringInfo(js, ",\"http_status\":%ld", d->http_status);
	if (d->failed)
	{
		appendStringInfo(js, ",\"permanent\":%s,\"error\":",
						 d->permanent ? "true" : "false");
		escape_json(js, minimal ? "delivery failed (its details could not be recorded)" : d->error);
		if (!minimal && d->retry_after >= 0 && !isnan(d->retry_after))
			appendStringInfo(js, ",\"retry_after\":%.3f",
							 Min(d->retry_after, (double) LOGAGG_RETRY_AFTER_MAX_S));
	}
	appendStringInfoChar(js, '}');
}

static void
run_finish(const char *json)
{
	Datum		args[2];

	args[0] = CStringGetTextDatum(json);
	args[1] = Int32GetDatum(logagg_alert_max_attempts);
	if (SPI_execute_plan(finish_plan, args, NULL, false, 1) != SPI_OK_SELECT)
		elog(ERROR, "logagg: _finish_alerts failed");
}

/*
 * _finish_alerts in a subtransaction: true if it worked.  On an error the
 * subtransaction is rolled back and the error logged, and the cycle goes
 * on: no receiver's answer may make the dispatcher exit (which would
 * resend every alert in flight).
 */
static bool
finish_in_subxact(const char *json)
{
	MemoryContext oldcxt = CurrentMemoryContext;
	ResourceOwner oldowner = CurrentResourceOwner;
	volatile bool ok = true;

	BeginInternalSubTransaction(NULL);
	MemoryContextSwitchTo(oldcxt);
	PG_TRY();
	{
		run_finish(json);
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
				(errmsg("logagg: could not record delivery outcomes: %s", edata->message)));
		FreeErrorData(edata);
		ok = false;
	}
	PG_END_TRY();
	MemoryContextSwitchTo(oldcxt);
	CurrentResourceOwner = oldowner;
	return ok;
}

static void
finish_deliveries(dlist_head *done)
{
	StringInfoData js;
	dlist_mutable_iter it;
	Oid			types[2] = {TEXTOID, INT4OID};
	int			nsent = 0,
				nfailed = 0;
	bool		first = true;

	if (finish_plan == NULL)
		finish_plan = keep_plan("SELECT logagg._finish_alerts($1::jsonb, $2)", 2, types);

	initStringInfo(&js);
	appendStringInfoChar(&js, '[');
	dlist_foreach_modify(it, done)
	{
		LogaggDelivery *d = dlist_container(LogaggDelivery, node, it.cur);

		if (!first)
			appendStringInfoChar(&js, ',');
		first = false;
		append_outcome(&js, d, false);
		if (d->failed)
			nfailed++;
		else
			nsent++;
	}
	appendStringInfoChar(&js, ']');

	if (!finish_in_subxact(js.data))
	{
		/*
		 * Something in one outcome broke the batch: record them one by one,
		 * an outcome that still fails without the receiver's details is left
		 * leased (its row is retried after the lease, same alert_id).
		 */
		dlist_foreach_modify(it, done)
		{
			LogaggDelivery *d = dlist_container(LogaggDelivery, node, it.cur);

			resetStringInfo(&js);
			appendStringInfoChar(&js, '[');
			append_outcome(&js, d, false);
			appendStringInfoChar(&js, ']');
			if (finish_in_subxact(js.data))
				continue;
			resetStringInfo(&js);
			appendStringInfoChar(&js, '[');
			append_outcome(&js, d, true);
			appendStringInfoChar(&js, ']');
			(void) finish_in_subxact(js.data);
		}
	}

	/* the outcomes are in this transaction now; free the deliveries */
	dlist_foreach_modify(it, done)
	{
		LogaggDelivery *d = dlist_container(LogaggDelivery, node, it.cur);

		dlist_delete(&d->node);
		MemoryContextDelete(d->cxt);
	}
	if (nsent)
		logagg_count(LC_ALERTS_SENT, nsent);
	if (nfailed)
		logagg_count(LC_ALERTS_FAILED, nfailed);
}

static char *
col_text(HeapTuple tup, TupleDesc desc, int col, MemoryContext cxt)
{
	char	   *v = SPI_getvalue(tup, desc, col);

	return MemoryContextStrdup(cxt, v ? v : "");
}

/*
 * ISO 8601 UTC with milliseconds, as _utc() in SQL formats it
 * (to_char(t AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')), without
 * a SQL function call per timestamp.
 */
static char *
utc_text(TimestampTz t, MemoryContext cxt)
{
	struct pg_tm tm;
	fsec_t		fsec;
	char		buf[64];

	if (TIMESTAMP_NOT_FINITE(t) || timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
		return MemoryContextStrdup(cxt, "");
	snprintf(buf, sizeof(buf), "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ",
			 tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
			 (int) (fsec / 1000));
	return MemoryContextStrdup(cxt, buf);
}

/* A JSON value of the queue row's payload as JSON text ("null" if absent). */
static void
append_payload_value(StringInfo s, Jsonb *payload, const char *key)
{
	JsonbValue	v;

	if (payload == NULL || !JB_ROOT_IS_OBJECT(payload) ||
		getKeyJsonValueFromContainer(&payload->root, key, strlen(key), &v) == NULL)
	{
		appendStringInfoString(s, "null");
		return;
	}
	switch (v.type)
	{
		case jbvNull:
			appendStringInfoString(s, "null");
			break;
		case jbvString:
			{
				char	   *str = pnstrdup(v.val.string.val, v.val.string.len);

				escape_json(s, str);
				pfree(str);
			}
			break;
		case jbvNumeric:
			appendStringInfoString(s, DatumGetCString(DirectFunctionCall1(numeric_out,
																		  NumericGetDatum(v.val.numeric))));
			break;
		case jbvBool:
			appendStringInfoString(s, v.val.boolean ? "true" : "false");
			break;
		default:
			/* containers: jsonb's own text form */
			appendStringInfoString(s, JsonbToCString(NULL, v.val.binary.data, v.val.binary.len));
			break;
	}
}

/*
 * The notification body of docs/alerts.md "Payload": byte for byte what
 * jsonb_build_object(...)::text produced when SQL built it (keys in jsonb's
 * order: by length, then bytewise; ": " and ", " separators), so receivers
 * and signatures see the same bodies as before.  A rule alert's (payload
 * with a "rule" key) adds rule, kind, value, labels, threshold, starts_at
 * and ends_at after them; its status is "firing" or "resolved".  A storm
 * guard digest adds "digest": true and its number of fingerprints.  A
 * route group's notification (schema/26_route_groups.sql) adds
 * group_labels, its numbers of firing and resolved alerts, and alerts:
 * [{rule, status, value, labels, starts_at, ends_at, ...}].
 */
static char *
build_payload(LogaggAlert *a, bool source_null, Jsonb *payload, MemoryContext cxt)
{
	StringInfoData s;
	JsonbValue	dv;
	MemoryContext old = MemoryContextSwitchTo(cxt);

	initStringInfo(&s);
	appendStringInfoChar(&s, '{');
	if (a->is_test)
		appendStringInfoString(&s, "\"test\": true, ");
	appendStringInfo(&s, "\"count\": " INT64_FORMAT ", \"level\": ", a->count);
	append_payload_value(&s, payload, "level");
	appendStringInfoString(&s, ", \"source\": ");
	if (source_null)
		appendStringInfoString(&s, "null");
	else
		escape_json(&s, a->source);
	appendStringInfoString(&s, ", \"status\": ");
	append_payload_value(&s, payload, "status");
	appendStringInfo(&s, ", \"attempt\": %d, \"message\": ", a->attempts);
	append_payload_value(&s, payload, "message");
	appendStringInfo(&s, ", \"alert_id\": " INT64_FORMAT ", \"severity\": ", a->id);
	escape_json(&s, a->severity);
	appendStringInfoString(&s, ", \"last_seen\": ");
	escape_json(&s, a->last_seen);
	appendStringInfoString(&s, ", \"first_seen\": ");
	escape_json(&s, a->first_seen);
	appendStringInfoString(&s, ", \"destination\": ");
	escape_json(&s, a->destination);
	appendStringInfoString(&s, ", \"fingerprint\": ");
	escape_json(&s, a->fingerprint);
	if (payload != NULL && JB_ROOT_IS_OBJECT(payload) &&
		getKeyJsonValueFromContainer(&payload->root, "digest", 6, &dv) != NULL)
	{
		/* a storm guard digest: how many fingerprints it stands for */
		appendStringInfoString(&s, ", \"digest\": true, \"fingerprints\": ");
		append_payload_value(&s, payload, "fingerprints");
	}
	if (a->is_group)
	{
		/* a route group's notification: its labels and all its alerts */
		static const char *const group_keys[] = {"group_labels", "firing", "resolved", "alerts"};

		for (int i = 0; i < lengthof(group_keys); i++)
		{
			appendStringInfo(&s, ", \"%s\": ", group_keys[i]);
			append_payload_value(&s, payload, group_keys[i]);
		}
	}
	else if (a->rule_status)
	{
		/* an alert rule's notification: what fired, on which labels, when */
		static const char *const rule_keys[] = {"rule", "kind", "value", "labels",
		"threshold", "starts_at", "ends_at"};

		for (int i = 0; i < lengthof(rule_keys); i++)
		{
			appendStringInfo(&s, ", \"%s\": ", rule_keys[i]);
			append_payload_value(&s, payload, rule_keys[i]);
		}
	}
	appendStringInfoChar(&s, '}');
	MemoryContextSwitchTo(old);
	return s.data;
}

/* Is the payload a route group's notification (it has "group_labels")? */
static bool
is_group_payload(Jsonb *payload)
{
	JsonbValue	v;

	return payload != NULL && JB_ROOT_IS_OBJECT(payload) &&
		getKeyJsonValueFromContainer(&payload->root, "group_labels", 12, &v) != NULL;
}

/*
 * "firing" or "resolved" when the payload is an alert rule's (it has a
 * "rule" key) or a route group's, else NULL.
 */
static char *
rule_status_of(Jsonb *payload, MemoryContext cxt)
{
	JsonbValue	v;

	if (payload == NULL || !JB_ROOT_IS_OBJECT(payload) ||
		(getKeyJsonValueFromContainer(&payload->root, "rule", 4, &v) == NULL &&
		 !is_group_payload(payload)))
		return NULL;
	if (getKeyJsonValueFromContainer(&payload->root, "status", 6, &v) != NULL &&
		v.type == jbvString && v.val.string.len == 8 &&
		memcmp(v.val.string.val, "resolved", 8) == 0)
		return MemoryContextStrdup(cxt, "resolved");
	return MemoryContextStrdup(cxt, "firing");
}

/*
 * The columns of logagg._claim_alerts() (schema/20_alerts.sql), in the
 * order of its RETURNS TABLE; claim_columns names them for the check that
 * the installed SQL returns them so.
 */
#define Anum_claim_id			1
#define Anum_claim_severity		2
#define Anum_claim_source		3
#define Anum_claim_fingerprint	4
#define Anum_claim_count		5
#define Anum_claim_first_seen	6
#define Anum_claim_last_seen	7
#define Anum_claim_status		8
#define Anum_claim_level		9
#define Anum_claim_message		10
#define Anum_claim_destination	11
#define Anum_claim_kind			12
#define Anum_claim_config		13
#define Anum_claim_attempts		14
#define Anum_claim_is_test		15
#define Anum_claim_payload		16
#define Natts_claim				16

static const LogaggResultColumn claim_columns[Natts_claim] = {
	[Anum_claim_id - 1] = {"id", INT8OID},
	[Anum_claim_severity - 1] = {"severity", TEXTOID},
	[Anum_claim_source - 1] = {"source", TEXTOID},
	[Anum_claim_fingerprint - 1] = {"fingerprint", TEXTOID},
	[Anum_claim_count - 1] = {"count", INT8OID},
	[Anum_claim_first_seen - 1] = {"first_seen", TIMESTAMPTZOID},
	[Anum_claim_last_seen - 1] = {"last_seen", TIMESTAMPTZOID},
	[Anum_claim_status - 1] = {"status", INT4OID},
	[Anum_claim_level - 1] = {"level", TEXTOID},
	[Anum_claim_message - 1] = {"message", TEXTOID},
	[Anum_claim_destination - 1] = {"destination", TEXTOID},
	[Anum_claim_kind - 1] = {"kind", TEXTOID},
	[Anum_claim_config - 1] = {"config", JSONBOID},
	[Anum_claim_attempts - 1] = {"attempts", INT4OID},
	[Anum_claim_is_test - 1] = {"is_test", BOOLOID},
	[Anum_claim_payload - 1] = {"payload", JSONBOID},
};

/*
 * One row of _claim_alerts, decoded into *a: everything copied into cxt
 * (the delivery's context, which outlives the transaction), timestamps as
 * ISO 8601 text, and the notification body built from the fixed fields
 * and the row's payload.
 */
static void
decode_claim_row(HeapTuple tup, TupleDesc desc, LogaggAlert *a, MemoryContext cxt)
{
	bool		isnull;
	bool		source_null;
	Datum		v;
	Jsonb	   *payload;
	MemoryContext old;

	a->id = DatumGetInt64(SPI_getbinval(tup, desc, Anum_claim_id, &isnull));
	a->severity = col_text(tup, desc, Anum_claim_severity, cxt);
	a->source = col_text(tup, desc, Anum_claim_source, cxt);
	(void) SPI_getbinval(tup, desc, Anum_claim_source, &source_null);
	a->fingerprint = col_text(tup, desc, Anum_claim_fingerprint, cxt);
	a->count = DatumGetInt64(SPI_getbinval(tup, desc, Anum_claim_count, &isnull));
	v = SPI_getbinval(tup, desc, Anum_claim_first_seen, &isnull);
	a->first_seen = isnull ? MemoryContextStrdup(cxt, "") : utc_text(DatumGetTimestampTz(v), cxt);
	v = SPI_getbinval(tup, desc, Anum_claim_last_seen, &isnull);
	a->last_seen = isnull ? MemoryContextStrdup(cxt, "") : utc_text(DatumGetTimestampTz(v), cxt);
	v = SPI_getbinval(tup, desc, Anum_claim_status, &isnull);
	a->has_status = !isnull;
	a->status = isnull ? 0 : DatumGetInt32(v);
	a->level = col_text(tup, desc, Anum_claim_level, cxt);
	a->message = col_text(tup, desc, Anum_claim_message, cxt);
	a->destination = col_text(tup, desc, Anum_claim_destination, cxt);
	a->kind = col_text(tup, desc, Anum_claim_kind, cxt);
	v = SPI_getbinval(tup, desc, Anum_claim_config, &isnull);
	old = MemoryContextSwitchTo(cxt);
	a->config = isnull ? NULL : DatumGetJsonbPCopy(v);
	MemoryContextSwitchTo(old);
	a->attempts = DatumGetInt32(SPI_getbinval(tup, desc, Anum_claim_attempts, &isnull));
	a->is_test = DatumGetBool(SPI_getbinval(tup, desc, Anum_claim_is_test, &isnull));
	v = SPI_getbinval(tup, desc, Anum_claim_payload, &isnull);
	payload = isnull ? NULL : DatumGetJsonbP(v);
	a->rule_status = rule_status_of(payload, cxt);
	a->is_group = is_group_payload(payload);
	a->payload = build_payload(a, source_null, payload, cxt);
}

static void
start_delivery(HeapTuple tup, TupleDesc desc, CycleArgs *ca)
{
	MemoryContext cxt;
	MemoryContext old;
	LogaggDelivery *d;
	LogaggAlert *a;
	bool		known = false;

	cxt = AllocSetContextCreate(TopMemoryContext, "logagg delivery",
								ALLOCSET_SMALL_SIZES);
	d = MemoryContextAllocZero(cxt, sizeof(LogaggDelivery));
	d->cxt = cxt;
	d->retry_after = -1;
	a = &d->alert;
	decode_claim_row(tup, desc, a, cxt);

	INSTR_TIME_SET_CURRENT(d->started);

	/* the destination code allocates in the delivery's context */
	old = MemoryContextSwitchTo(cxt);
	for (int i = 0; i < lengthof(dest_kinds); i++)
	{
		if (strcmp(a->kind, dest_kinds[i].kind) == 0)
		{
			dest_kinds[i].fn(d);
			known = true;
			break;
		}
	}
	MemoryContextSwitchTo(old);
	if (!known)
		logagg_delivery_fail(d, true, "unknown destination kind \"%s\"", a->kind);

	logagg_dispatch_inflight++;
	if (d->transfers == 0)
	{
		/* nothing went on the wire (bad config): its outcome is known */
		if (!d->failed)
			logagg_delivery_fail(d, true, "destination produced no request");
		dlist_push_tail(&ca->failed_at_start, &d->node);
	}
	ca->started++;
}

static void
cycle_in_transaction(void *arg)
{
	CycleArgs  *ca = (CycleArgs *) arg;

	if (!dlist_is_empty(ca->done))
	{
		int			n = 0;
		dlist_iter	it;

		dlist_foreach(it, ca->done)
			n++;
		finish_deliveries(ca->done);
		logagg_dispatch_inflight -= n;
		/* the outcomes took rows off the queue: /metrics shows the count */
		logagg_refresh_alert_queue_depth(false);
	}

	if (ca->slots > 0)
	{
		Datum		args[3];
		Oid			types[3] = {INT4OID, INT4OID, INT4OID};
		uint64		n;

		if (claim_plan == NULL)
			claim_plan = keep_plan("SELECT * FROM logagg._claim_alerts($1, $2, $3)", 3, types);
		args[0] = Int32GetDatum(ca->slots);
		args[1] = Int32GetDatum(my_worker_index);
		args[2] = Int32GetDatum(logagg_alert_timeout_ms + LEASE_MARGIN_MS);
		if (SPI_execute_plan(claim_plan, args, NULL, false, 0) != SPI_OK_SELECT)
			elog(ERROR, "logagg: _claim_alerts failed");
		n = SPI_processed;
		if (!claim_columns_checked)
		{
			/* once per process: the installed SQL returns what we decode */
			logagg_check_result_columns(SPI_tuptable->tupdesc, claim_columns,
										Natts_claim, "logagg._claim_alerts()");
			claim_columns_checked = true;
		}
		for (uint64 i = 0; i < n; i++)
			start_delivery(SPI_tuptable->vals[i], SPI_tuptable->tupdesc, ca);

		if (n < (uint64) ca->slots)
		{
			bool		isnull;
			Datum		d;

			if (next_due_plan == NULL)
				next_due_plan = keep_plan("SELECT logagg._next_due()", 0, NULL);
			if (SPI_execute_plan(next_due_plan, NULL, NULL, true, 1) != SPI_OK_SELECT)
				elog(ERROR, "logagg: _next_due failed");
			d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
			ca->next_due = isnull ? DT_NOEND : DatumGetTimestampTz(d);
		}
		else
			ca->next_due = 0;	/* maybe more due right now */
	}
}

/*
 * Record finished deliveries (*done, emptied) and take up to `slots` due
 * alerts.  Returns how many were taken; *next_due is when the next alert
 * falls due (0: maybe at once, DT_NOEND: none queued).  Deliveries that
 * failed before sending (bad config) come back in *done for the next cycle.
 */
int
logagg_dispatcher_cycle(dlist_head *done, int slots, TimestampTz *next_due)
{
	CycleArgs	ca;

	ca.done = done;
	ca.slots = slots;
	ca.started = 0;
	ca.next_due = *next_due;
	dlist_init(&ca.failed_at_start);

	logagg_run_or_exit(cycle_in_transaction, &ca, "logagg: dispatching alerts");

	while (!dlist_is_empty(&ca.failed_at_start))
		dlist_push_tail(done, dlist_pop_head_node(&ca.failed_at_start));
	if (slots > 0)
		*next_due = ca.next_due;
	return ca.started;
}

static void
housekeeping_in_transaction(void *arg)
{
	if (SPI_execute("SELECT logagg._expire_groups()", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "logagg: _expire_groups failed");
	/* route groups whose alerts have all resolved (and been told) end */
	if (SPI_execute("SELECT logagg._route_groups_expire()", false, 1) != SPI_OK_SELECT)
		elog(ERROR, "logagg: _route_groups_expire failed");
	logagg_refresh_alert_queue_depth(true);
}

/*
 * On a Citus coordinator: move the alert groups worker nodes' ingest
 * handed over (logagg._alert_inbox) into this node's queue, where they
 * are grouped and routed like local ones.  Without Citus: a catalog
 * lookup.
 */
typedef struct DrainResult
{
	int			queued;
	bool		citus;			/* Citus is installed: keep draining often */
} DrainResult;

static void
drain_in_transaction(void *arg)
{
	DrainResult *r = arg;
	bool		isnull;
	Datum		d;

	r->queued = 0;
	r->citus = OidIsValid(get_extension_oid("citus", true));
	if (!r->citus)
		return;
	if (SPI_execute("SELECT logagg._drain_alert_inbox()", false, 1) != SPI_OK_SELECT ||
		SPI_processed != 1)
		elog(ERROR, "logagg: _drain_alert_inbox failed");
	d = SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull);
	r->queued = isnull ? 0 : DatumGetInt32(d);
}

/*
 * Returns the alerts queued from worker nodes' hand-overs; *citus tells
 * whether Citus is installed at all (if not, there is nothing to take
 * and the caller asks again only rarely).
 */
int
logagg_dispatcher_drain_inbox(bool *citus)
{
	DrainResult r = {0, false};

	logagg_run_or_exit(drain_in_transaction, &r, "logagg: taking alerts from worker nodes");
	*citus = r.citus;
	return r.queued;
}

/* Forget ended groups (record alerts' and routes'); cheap, run every few seconds. */
void
logagg_dispatcher_housekeeping(void)
{
	logagg_run_or_exit(housekeeping_in_transaction, NULL, "logagg: expiring alert groups");
}
