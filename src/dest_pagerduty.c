/*-------------------------------------------------------------------------
 *
 * dest_pagerduty.c
 *		"pagerduty" destinations: PagerDuty Events API v2 "trigger" events,
 *		and "resolve" events for resolved alert-rule alerts.
 *
 * Config: {"routing_key": "...", "url": default
 * https://events.pagerduty.com/v2/enqueue}; an http:// url is refused (the
 * routing key in clear) unless "allow_insecure": true.  dedup_key is the alert's
 * fingerprint, so PagerDuty folds every notification of one group into one
 * incident (a rule alert's fingerprint is its rule and labels, so its
 * resolve carries the dedup_key of its trigger); the fixed fields travel in
 * payload.custom_details.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/json.h"

#include "alerts.h"
#include "logagg.h"

#define PAGERDUTY_DEFAULT_URL "https://events.pagerduty.com/v2/enqueue"

void
logagg_dest_pagerduty(LogaggDelivery *d)
{
	LogaggAlert *a = &d->alert;
	char	   *url = logagg_cfg_text(a->config, "url");
	char	   *key = logagg_cfg_text(a->config, "routing_key");
	char	   *summary = logagg_alert_headline(a);
	const char *pd_severity;
	StringInfoData b;
	LogaggTransfer *t;
	int			len;

	if (key == NULL)
	{
		logagg_delivery_fail(d, true, "pagerduty destination \"%s\" has no \"routing_key\" in its config",
							 a->destination);
		return;
	}
	if (url == NULL)
		url = PAGERDUTY_DEFAULT_URL;
	if (logagg_url_is_cleartext(url) &&
		logagg_refuse_cleartext(d, NULL, "the PagerDuty routing_key"))
	{
		explicit_bzero(key, strlen(key));
		return;
	}

	/* PagerDuty knows critical, error, warning, info */
	if (strcmp(a->severity, "critical") == 0)
		pd_severity = "critical";
	else if (strcmp(a->severity, "high") == 0)
		pd_severity = "error";
	else
		pd_severity = "warning";

	len = strlen(summary);
	if (len > 1024)
		summary[pg_mbcliplen(summary, len, 1024)] = '\0';

	initStringInfo(&b);
	appendStringInfoString(&b, "{\"routing_key\":");
	escape_json(&b, key);
	explicit_bzero(key, strlen(key));
	/* a resolved rule alert resolves the incident its trigger opened */
	appendStringInfo(&b, ",\"event_action\":\"%s\",\"dedup_key\":",
					 a->rule_status && strcmp(a->rule_status, "resolved") == 0 ? "resolve" : "trigger");
	escape_json(&b, a->fingerprint);
	appendStringInfoString(&b, ",\"client\":\"logagg\",\"payload\":{\"summary\":");
	escape_json(&b, summary);
	appendStringInfoString(&b, ",\"source\":");
	escape_json(&b, a->source);
	appendStringInfo(&b, ",\"severity\":\"%s\",\"timestamp\":", pd_severity);
	escape_json(&b, a->last_seen);
	appendStringInfoString(&b, ",\"component\":");
	escape_json(&b, a->source);
	appendStringInfoString(&b, ",\"class\":");
	escape_json(&b, a->level);
	appendStringInfoString(&b, ",\"custom_details\":");
	appendStringInfoString(&b, a->payload);
	appendStringInfoString(&b, "}}");

	t = logagg_transfer_new(d, url);
	logagg_transfer_set_post(t, b.data, b.len, "application/json");
	logagg_transfer_start(t);
}
