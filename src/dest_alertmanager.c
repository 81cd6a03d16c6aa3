/*-------------------------------------------------------------------------
 *
 * dest_alertmanager.c
 *		"alertmanager" destinations: alerts posted to a Prometheus
 *		Alertmanager's /api/v2/alerts, so that a team keeps its existing
 *		routing tree, silences and receivers.
 *
 * Config: {"url": "http://alertmanager:9093", "headers": {...} optional,
 * "generator_url": base of generatorURL, optional}.  One alert per
 * notification: labels alertname (the rule, or "logagg" for a record
 * alert), severity, source, the rule alert's group labels (names made
 * valid for Prometheus: other characters become "_") or a record alert's
 * fingerprint, status and level; annotations summary (the headline) and
 * description (the message); startsAt; endsAt when a rule alert has
 * resolved; a route group's notification posts every alert of the group.
 * Alertmanager resolves an alert it has not heard of for its
 * resolve_timeout, so a route to it should re-send firing rule alerts
 * (routes.repeat_interval) more often than that.  Credentials in headers
 * over http:// are refused unless "allow_insecure": true.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/json.h"
#include "utils/jsonb.h"

#include "alerts.h"
#include "logagg.h"

/* A Prometheus label name: [a-zA-Z_][a-zA-Z0-9_]*. */
static void
append_label_name(StringInfo b, const char *name, int len)
{
	StringInfoData n;

	initStringInfo(&n);
	for (int i = 0; i < len; i++)
	{
		char		c = name[i];
		bool		ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' ||
			(i > 0 && c >= '0' && c <= '9');

		appendStringInfoChar(&n, ok ? c : '_');
	}
	if (n.len == 0)
		appendStringInfoChar(&n, '_');
	escape_json(b, n.data);
}

static void
append_label(StringInfo b, const char *name, const char *value)
{
	if (b->data[b->len - 1] != '{')
		appendStringInfoChar(b, ',');
	append_label_name(b, name, strlen(name));
	appendStringInfoChar(b, ':');
	escape_json(b, value);
}

/* The group labels of a rule alert (its payload, or one of a group's alerts). */
static void
append_group_labels(StringInfo b, JsonbContainer *alert)
{
	JsonbValue	v;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	JsonbValue	k;

	if (getKeyJsonValueFromContainer(alert, "labels", 6, &v) == NULL ||
		v.type != jbvBinary)
		return;
	it = JsonbIteratorInit(v.val.binary.data);
	while ((tok = JsonbIteratorNext(&it, &k, false)) != WJB_DONE)
	{
		if (tok == WJB_KEY)
		{
			char	   *name = pnstrdup(k.val.string.val, k.val.string.len);
			JsonbValue	val;

			tok = JsonbIteratorNext(&it, &val, true);
			if (tok == WJB_VALUE && val.type == jbvString && val.val.string.len > 0)
				append_label(b, name, pnstrdup(val.val.string.val, val.val.string.len));
		}
	}
}

/* A string member of a JSON object, or NULL. */
static char *
get_text(JsonbContainer *obj, const char *key)
{
	JsonbValue	v;

	if (getKeyJsonValueFromContainer(obj, key, strlen(key), &v) == NULL || v.type != jbvString)
		return NULL;
	return pnstrdup(v.val.string.val, v.val.string.len);
}

/*
 * A route group's notification: every alert of the group, each with its
 * own labels and times, so that Alertmanager groups them again by its own
 * tree.
 */
static void
append_group_alerts(StringInfo b, LogaggAlert *a, Jsonb *payload, const char *gen)
{
	JsonbValue	v;
	JsonbIterator *it;
	JsonbIteratorToken tok;
	bool		first = true;

	/* the group's summary line, not its list of alerts, in each alert */
	char	   *summary = pnstrdup(a->message, strcspn(a->message, "\n"));

	appendStringInfoChar(b, '[');
	if (getKeyJsonValueFromContainer(&payload->root, "alerts", 6, &v) != NULL &&
		v.type == jbvBinary)
	{
		it = JsonbIteratorInit(v.val.binary.data);
		while ((tok = JsonbIteratorNext(&it, &v, true)) != WJB_DONE)
		{
			JsonbContainer *al;
			char	   *rule;
			char	   *sev;
			char	   *status;
			char	   *starts;
			char	   *ends;

			if (tok != WJB_ELEM || v.type != jbvBinary)
				continue;
			al = v.val.binary.data;
			rule = get_text(al, "rule");
			sev = get_text(al, "severity");
			status = get_text(al, "status");
			starts = get_text(al, "starts_at");
			ends = get_text(al, "ends_at");
			if (!first)
				appendStringInfoChar(b, ',');
			first = false;
			appendStringInfoString(b, "{\"labels\":{");
			append_label(b, "alertname", rule ? rule : "logagg");
			append_label(b, "severity", sev ? sev : a->severity);
			append_group_labels(b, al);
			appendStringInfoString(b, "},\"annotations\":{\"summary\":");
			escape_json(b, psprintf("%s %s", rule ? rule : "logagg", status ? status : "firing"));
			appendStringInfoString(b, ",\"description\":");
			escape_json(b, summary);
			appendStringInfo(b, ",\"logagg_alert_id\":\"" INT64_FORMAT "\"}", a->id);
			appendStringInfoString(b, ",\"startsAt\":");
			escape_json(b, starts ? starts : a->first_seen);
			if (status && strcmp(status, "resolved") == 0 && ends)
			{
				appendStringInfoString(b, ",\"endsAt\":");
				escape_json(b, ends);
			}
			appendStringInfoString(b, ",\"generatorURL\":");
			escape_json(b, psprintf("%s/alerts/" INT64_FORMAT, gen ? gen : "logagg:", a->id));
			appendStringInfoChar(b, '}');
		}
	}
	appendStringInfoChar(b, ']');
}

/* A record alert or one rule alert: one Alertmanager alert. */
static void
append_one_alert(StringInfo b, LogaggAlert *a, Jsonb *payload, const char *gen)
{
	JsonbValue	v;
	char		num[32];

	appendStringInfoString(b, "[{\"labels\":{");
	if (a->rule_status &&
		getKeyJsonValueFromContainer(&payload->root, "rule", 4, &v) != NULL && v.type == jbvString)
		append_label(b, "alertname", pnstrdup(v.val.string.val, v.val.string.len));
	else
		append_label(b, "alertname", "logagg");
	append_label(b, "severity", a->severity);
	if (a->source[0])
		append_label(b, "source", a->source);
	if (a->rule_status)
		append_group_labels(b, &payload->root);
	else
	{
		append_label(b, "fingerprint", a->fingerprint);
		if (a->has_status)
		{
			snprintf(num, sizeof(num), "%d", a->status);
			append_label(b, "status", num);
		}
		if (a->level[0])
			append_label(b, "level", a->level);
	}
	appendStringInfoString(b, "},\"annotations\":{\"summary\":");
	escape_json(b, logagg_alert_headline(a));
	appendStringInfoString(b, ",\"description\":");
	escape_json(b, a->message);
	appendStringInfo(b, ",\"logagg_alert_id\":\"" INT64_FORMAT "\"}", a->id);

	/* a rule alert's starts_at / ends_at; a record alert's first_seen */
	appendStringInfoString(b, ",\"startsAt\":");
	if (a->rule_status &&
		getKeyJsonValueFromContainer(&payload->root, "starts_at", 9, &v) != NULL && v.type == jbvString)
		escape_json(b, pnstrdup(v.val.string.val, v.val.string.len));
	else
		escape_json(b, a->first_seen);
	if (a->rule_status && strcmp(a->rule_status, "resolved") == 0 &&
		getKeyJsonValueFromContainer(&payload->root, "ends_at", 7, &v) != NULL && v.type == jbvString)
	{
		appendStringInfoString(b, ",\"endsAt\":");
		escape_json(b, pnstrdup(v.val.string.val, v.val.string.len));
	}
	appendStringInfoString(b, ",\"generatorURL\":");
	escape_json(b, psprintf("%s/alerts/" INT64_FORMAT, gen ? gen : "logagg:", a->id));
	appendStringInfoString(b, "}]");
}

void
logagg_dest_alertmanager(LogaggDelivery *d)
{
	LogaggAlert *a = &d->alert;
	char	   *url = logagg_cfg_text(a->config, "url");
	char	   *gen = logagg_cfg_text(a->config, "generator_url");
	Jsonb	   *payload;
	List	   *headers;
	LogaggTransfer *t;
	StringInfoData b;
	char	   *endpoint;
	size_t		ulen;

	if (url == NULL)
	{
		logagg_delivery_fail(d, true, "alertmanager destination \"%s\" has no \"url\" in its config",
							 a->destination);
		return;
	}
	payload = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(a->payload)));

	initStringInfo(&b);
	if (a->is_group)
		append_group_alerts(&b, a, payload, gen);
	else
		append_one_alert(&b, a, payload, gen);

	ulen = strlen(url);
	while (ulen > 0 && url[ulen - 1] == '/')
		url[--ulen] = '\0';
	endpoint = (ulen >= 14 && strcmp(url + ulen - 14, "/api/v2/alerts") == 0) ?
		url : psprintf("%s/api/v2/alerts", url);
	t = logagg_transfer_new(d, endpoint);
	headers = logagg_cfg_object_pairs(a->config, "headers");
	for (int i = 0; i + 1 < list_length(headers); i += 2)
	{
		const char *name = list_nth(headers, i);

		logagg_transfer_add_header(t, "%s: %s", name, (char *) list_nth(headers, i + 1));
		if (logagg_url_is_cleartext(url) &&
			(pg_strcasecmp(name, "Authorization") == 0 ||
			 pg_strcasecmp(name, "Proxy-Authorization") == 0 ||
			 pg_strcasecmp(name, "Cookie") == 0))
			(void) logagg_refuse_cleartext(d, t, "an Authorization or Cookie header");
	}
	logagg_transfer_set_post(t, b.data, b.len, "application/json");
	logagg_transfer_start(t);
}
