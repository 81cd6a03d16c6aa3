/*-------------------------------------------------------------------------
 *
 * dest_email.c
 *		"email" destinations: a plain-text mail over SMTP, SMTPS or SMTP with
 *		STARTTLS, sent by libcurl.
 *
 * Config: {"smtp_url": "smtp://host:25" | "smtp://host:587" (with
 * "starttls": true) | "smtps://host:465", "from": "Alerts <a@x>",
 * "to": ["b@x", ...], "username", "password", "insecure_tls": false,
 * "allow_insecure": false}.  Credentials over smtp:// always ask for
 * STARTTLS unless allow_insecure is true.
 * Subject: "[CRITICAL] service-a: 503 GET /api/orders ×123" (RFC 2047
 * encoded when not ASCII); the body lists every fixed field.  The
 * Message-ID is derived from alert_id, so a mail resent after a lost
 * reply is recognisable as the same one.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "common/base64.h"

#include "alerts.h"
#include "logagg.h"

/* The address part of "Name <addr>", or the whole string. */
static char *
bare_address(const char *s)
{
	const char *lt = strrchr(s, '<');
	const char *gt;

	if (lt && (gt = strchr(lt, '>')) != NULL)
		return pnstrdup(lt + 1, gt - lt - 1);
	return pstrdup(s);
}

static bool
has_line_break(const char *s)
{
	return strpbrk(s, "\r\n") != NULL;
}

/* Header lines must not be broken by CR/LF in user data. */
static char *
one_line(const char *s)
{
	char	   *r = pstrdup(s);

	for (char *p = r; *p; p++)
		if (*p == '\r' || *p == '\n')
			*p = ' ';
	return r;
}

static void
append_subject(StringInfo m, const char *subject)
{
	bool		ascii = true;

	for (const char *p = subject; *p; p++)
		if ((unsigned char) *p >= 0x80)
			ascii = false;
	if (ascii)
	{
		appendStringInfo(m, "Subject: %s\r\n", subject);
		return;
	}
	else
	{
		int			len = strlen(subject);
		int			enclen = pg_b64_enc_len(len);
		char	   *enc = palloc(enclen + 1);
		int			n = pg_b64_encode(subject, len, enc, enclen);

		if (n < 0)
			n = 0;
		enc[n] = '\0';
		appendStringInfo(m, "Subject: =?UTF-8?B?%s?=\r\n", enc);
	}
}

/* Body text: CRLF line ends, as SMTP wants them. */
static void
append_crlf(StringInfo m, const char *s)
{
	for (; *s; s++)
	{
		if (*s == '\r')
			continue;
		if (*s == '\n')
			appendStringInfoString(m, "\r\n");
		else
			appendStringInfoChar(m, *s);
	}
}

void
logagg_dest_email(LogaggDelivery *d)
{
	LogaggAlert *a = &d->alert;
	char	   *url = logagg_cfg_text(a->config, "smtp_url");
	char	   *from = logagg_cfg_text(a->config, "from");
	List	   *to = logagg_cfg_text_list(a->config, "to");
	char	   *username = logagg_cfg_text(a->config, "username");
	char	   *password = logagg_cfg_text(a->config, "password");
	StringInfoData m;
	StringInfoData body;
	LogaggTransfer *t;
	ListCell   *lc;
	char		date[64];
	time_t		now = time(NULL);
	struct tm	tm;
	bool		first = true;

	if (url == NULL || from == NULL || to == NIL)
	{
		logagg_delivery_fail(d, true, "email destination \"%s\" needs \"smtp_url\", \"from\" and \"to\" in its config",
							 a->destination);
		return;
	}
	/* a line break would add headers (or SMTP commands) of its own */
	if (has_line_break(from))
	{
		logagg_delivery_fail(d, true, "refusing to send: \"from\" of email destination \"%s\" contains a line break",
							 a->destination);
		return;
	}
	foreach(lc, to)
	{
		if (has_line_break((char *) lfirst(lc)))
		{
			logagg_delivery_fail(d, true, "refusing to send: \"to\" of email destination \"%s\" contains a line break",
								 a->destination);
			return;
		}
	}

	gmtime_r(&now, &tm);
	strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm);

	initStringInfo(&m);
	appendStringInfo(&m, "Date: %s\r\n", date);
	appendStringInfo(&m, "From: %s\r\n", one_line(from));
	appendStringInfoString(&m, "To: ");
	foreach(lc, to)
	{
		appendStringInfo(&m, "%s%s", first ? "" : ", ", one_line((char *) lfirst(lc)));
		first = false;
	}
	appendStringInfoString(&m, "\r\n");
	append_subject(&m, one_line(logagg_alert_headline(a)));
	appendStringInfo(&m, "Message-ID: <logagg-alert-" INT64_FORMAT "@logagg>\r\n", a->id);
	appendStringInfo(&m, "X-Logagg-Alert-Id: " INT64_FORMAT "\r\n", a->id);
	appendStringInfo(&m, "X-Logagg-Severity: %s\r\n", a->severity);
	appendStringInfoString(&m, "MIME-Version: 1.0\r\n"
						   "Content-Type: text/plain; charset=UTF-8\r\n"
						   "Content-Transfer-Encoding: 8bit\r\n\r\n");

	initStringInfo(&body);
	appendStringInfo(&body, "%s%s alert from %s: " INT64_FORMAT " %s%s\n\n",
					 a->is_test ? "TEST: " : "", a->severity, a->source, a->count,
					 a->is_group ? "alert" : "record", a->count == 1 ? "" : "s");
	appendStringInfo(&body, "severity:    %s\n", a->severity);
	appendStringInfo(&body, "source:      %s\n", a->source);
	if (a->has_status)
		appendStringInfo(&body, "status:      %d\n", a->status);
	else
		appendStringInfoString(&body, "status:      -\n");
	appendStringInfo(&body, "level:       %s\n", a->level[0] ? a->level : "-");
	appendStringInfo(&body, "count:       " INT64_FORMAT "\n", a->count);
	appendStringInfo(&body, "first_seen:  %s\n", a->first_seen);
	appendStringInfo(&body, "last_seen:   %s\n", a->last_seen);
	appendStringInfo(&body, "fingerprint: %s\n", a->fingerprint);
	appendStringInfo(&body, "destination: %s\n", a->destination);
	appendStringInfo(&body, "alert_id:    " INT64_FORMAT "\n\n", a->id);
	appendStringInfo(&body, "message (sample):\n%s\n", a->message);
	append_crlf(&m, body.data);

	t = logagg_transfer_new(d, url);
	curl_easy_setopt(t->easy, CURLOPT_MAIL_FROM, bare_address(from));
	foreach(lc, to)
		t->recipients = curl_slist_append(t->recipients, bare_address((char *) lfirst(lc)));
	if (username)
		curl_easy_setopt(t->easy, CURLOPT_USERNAME, username);
	if (password)
	{
		curl_easy_setopt(t->easy, CURLOPT_PASSWORD, password);
		explicit_bzero(password, strlen(password));	/* curl copied it */
	}
	/*
	 * STARTTLS when asked for, and always when credentials would otherwise
	 * cross smtp:// in clear (unless allow_insecure): the transfer then fails
	 * on a server that does not offer it, before AUTH.
	 */
	if (logagg_cfg_bool(a->config, "starttls", false) ||
		((username || password) && logagg_url_is_cleartext(url) &&
		 !logagg_cfg_bool(a->config, "allow_insecure", false)))
		curl_easy_setopt(t->easy, CURLOPT_USE_SSL, (long) CURLUSESSL_ALL);
	/*
	 * A fresh session for every mail: a pooled connection may have been
	 * opened under another config (without STARTTLS, as another user), and
	 * reusing it would skip the TLS upgrade asked for above.
	 */
	curl_easy_setopt(t->easy, CURLOPT_FRESH_CONNECT, 1L);
	curl_easy_setopt(t->easy, CURLOPT_FORBID_REUSE, 1L);
	if (logagg_cfg_bool(a->config, "insecure_tls", false))
	{
		curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYPEER, 0L);
		curl_easy_setopt(t->easy, CURLOPT_SSL_VERIFYHOST, 0L);
	}
	t->body = m.data;
	t->body_len = m.len;
	logagg_transfer_start(t);
}
