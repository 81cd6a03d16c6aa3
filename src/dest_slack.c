/*-------------------------------------------------------------------------
 *
 * dest_slack.c
 *		"slack" destinations: a Slack incoming-webhook message with blocks.
 *
 * Config: {"webhook_url": "https://hooks.slack.com/services/...",
 *          "channel": optional override, "username": optional}.
 * Message: "text" (the headline, used by notifications), "blocks" (header;
 * severity, source, count, status fields; the sample message; the time
 * range and fingerprint), and "metadata" {"event_type": "logagg_alert",
 * "event_payload": <the fixed fields>} so that bots get the same fields
 * as webhook receivers.  A route group's notification is one message
 * listing its alerts (its message has a line per alert).  Log text
 * (source, level, message, the headline made of them) is escaped for
 * Slack wherever it is rendered.  An http:// webhook_url is refused
 * unless "allow_insecure": true.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"
#include "utils/json.h"

#include "alerts.h"
#include "logagg.h"

/*
 * Log text in a Slack message: Slack reads "<...>" as a link or mention
 * (<!channel>, <https://evil|click here>) and "&..." as an entity, so
 * &, < and > become &amp; &lt; &gt; in every text field, mrkdwn or not,
 * as Slack's formatting rules ask.  A backquote becomes ' so that the
 * sample's code block stays closed.  At most maxchars characters of output
 * (-1: no limit), cut between characters and never inside an entity.  The
 * result is then JSON-escaped.
 */
static char *
slack_escape_max(const char *s, int maxchars)
{
	StringInfoData b;
	int			chars = 0;

	initStringInfo(&b);
	while (*s)
	{
		const char *rep = NULL;
		int			inlen = 1;
		int			outchars = 1;

		if (*s == '&')
			rep = "&amp;";
		else if (*s == '<')
			rep = "&lt;";
		else if (*s == '>')
			rep = "&gt;";
		else if (*s == '`')
			rep = "'";
		else
			inlen = pg_mblen(s);
		if (rep)
			outchars = strlen(rep);
		if (maxchars >= 0 && chars + outchars > maxchars)
			break;
		if (rep)
			appendStringInfoString(&b, rep);
		else
		{
			/* a sequence cut short by the end of s is left out */
			if ((int) strnlen(s, inlen) < inlen)
				break;
			appendBinaryStringInfo(&b, s, inlen);
		}
		chars += outchars;
		s += inlen;
	}
	return b.data;
}

static char *
slack_escape(const char *s)
{
	return slack_escape_max(s, -1);
}

static void
field(StringInfo b, const char *title, const char *value, bool comma)
{
	StringInfoData t;

	initStringInfo(&t);
	appendStringInfo(&t, "*%s*\n%s", title, value);
	appendStringInfoString(b, "{\"type\":\"mrkdwn\",\"text\":");
	escape_json(b, t.data);
	appendStringInfoChar(b, '}');
	if (comma)
		appendStringInfoChar(b, ',');
}

void
logagg_dest_slack(LogaggDelivery *d)
{
	LogaggAlert *a = &d->alert;
	char	   *url = logagg_cfg_text(a->config, "webhook_url");
	char	   *channel = logagg_cfg_text(a->config, "channel");
	char	   *username = logagg_cfg_text(a->config, "username");
	char	   *headline = logagg_alert_headline(a);
	char	   *header;
	StringInfoData b;
	StringInfoData tmp;
	char		num[32];
	LogaggTransfer *t;

	if (url == NULL)
	{
		logagg_delivery_fail(d, true, "slack destination \"%s\" has no \"webhook_url\" in its config",
							 a->destination);
		return;
	}

	/* header blocks take plain text of at most 150 characters */
	header = slack_escape_max(headline, 150);

	initStringInfo(&b);
	appendStringInfoString(&b, "{\"text\":");
	escape_json(&b, slack_escape(headline));
	if (channel)
	{
		appendStringInfoString(&b, ",\"channel\":");
		escape_json(&b, channel);
	}
	if (username)
	{
		appendStringInfoString(&b, ",\"username\":");
		escape_json(&b, username);
	}
	appendStringInfoString(&b, ",\"blocks\":[{\"type\":\"header\",\"text\":{\"type\":\"plain_text\",\"text\":");
	escape_json(&b, header);
	appendStringInfoString(&b, "}},{\"type\":\"section\",\"fields\":[");
	field(&b, "Severity", slack_escape(a->severity), true);
	field(&b, "Source", slack_escape(a->source), true);
	snprintf(num, sizeof(num), INT64_FORMAT, a->count);
	field(&b, a->is_group ? "Alerts" : "Count", num, true);
	if (a->rule_status)
		strlcpy(num, a->rule_status, sizeof(num));	/* firing / resolved */
	else if (a->has_status)
		snprintf(num, sizeof(num), "%d", a->status);
	else
		strlcpy(num, "-", sizeof(num));
	field(&b, "Status", num, false);
	appendStringInfoString(&b, "]},{\"type\":\"section\",\"text\":{\"type\":\"mrkdwn\",\"text\":");
	initStringInfo(&tmp);
	if (a->is_group)
	{
		/* a section's text takes at most 3000 characters: a long list is cut */
		appendStringInfo(&tmp, "*Alerts*\n```%s```", slack_escape_max(a->message, 2900));
	}
	else
		appendStringInfo(&tmp, "*Sample* (%s)\n```%s```",
						 a->level[0] ? slack_escape(a->level) : "no level",
						 slack_escape(a->message));
	escape_json(&b, tmp.data);
	appendStringInfoString(&b, "}},{\"type\":\"context\",\"elements\":[{\"type\":\"mrkdwn\",\"text\":");
	resetStringInfo(&tmp);
	appendStringInfo(&tmp, "%s \xE2\x86\x92 %s \xC2\xB7 fingerprint %s \xC2\xB7 alert %lld",
					 a->first_seen, a->last_seen, slack_escape(a->fingerprint), (long long) a->id);
	escape_json(&b, tmp.data);
	appendStringInfoString(&b, "}]}],\"metadata\":{\"event_type\":\"logagg_alert\",\"event_payload\":");
	appendStringInfoString(&b, a->payload);
	appendStringInfoString(&b, "}}");

	if (logagg_url_is_cleartext(url) &&
		logagg_refuse_cleartext(d, NULL, "the Slack webhook URL (its path is the secret)"))
		return;
	t = logagg_transfer_new(d, url);
	logagg_transfer_set_post(t, b.data, b.len, "application/json");
	logagg_transfer_start(t);
}
