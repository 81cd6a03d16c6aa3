/*-------------------------------------------------------------------------
 *
 * dest_sms.c
 *		"sms" destinations: Twilio-compatible REST API, one form POST per
 *		recipient.
 *
 * Config: {"base_url": default https://api.twilio.com, "account_sid",
 * "auth_token", "from": "+1555...", "to": ["+1555...", ...]}.  An http://
 * base_url is refused (basic auth in clear) unless "allow_insecure": true.
 * Request: POST {base_url}/2010-04-01/Accounts/{account_sid}/Messages.json
 * with HTTP basic auth account_sid:auth_token and the form fields To, From
 * and Body (the headline, at most 320 characters).  The alert counts as
 * delivered when every recipient's request succeeded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "alerts.h"
#include "logagg.h"

#define SMS_DEFAULT_BASE_URL "https://api.twilio.com"
#define SMS_MAX_CHARS 320

static void
append_form(StringInfo b, CURL *easy, const char *name, const char *value)
{
	char	   *esc = curl_easy_escape(easy, value, 0);

	if (b->len > 0)
		appendStringInfoChar(b, '&');
	appendStringInfo(b, "%s=%s", name, esc ? esc : "");
	curl_free(esc);
}

void
logagg_dest_sms(LogaggDelivery *d)
{
	LogaggAlert *a = &d->alert;
	char	   *base = logagg_cfg_text(a->config, "base_url");
	char	   *sid = logagg_cfg_text(a->config, "account_sid");
	char	   *token = logagg_cfg_text(a->config, "auth_token");
	char	   *from = logagg_cfg_text(a->config, "from");
	List	   *to = logagg_cfg_text_list(a->config, "to");
	char	   *text = logagg_alert_headline(a);
	char	   *url;
	char	   *sid_esc;
	int			len;
	int			blen;
	ListCell   *lc;
	CURL	   *tmp;

	if (sid == NULL || token == NULL || from == NULL || to == NIL)
	{
		logagg_delivery_fail(d, true, "sms destination \"%s\" needs \"account_sid\", \"auth_token\", \"from\" and \"to\" in its config",
							 a->destination);
		return;
	}
	if (base == NULL)
		base = pstrdup(SMS_DEFAULT_BASE_URL);
	if (logagg_url_is_cleartext(base) &&
		logagg_refuse_cleartext(d, NULL, "the SMS auth_token (basic auth)"))
	{
		explicit_bzero(token, strlen(token));
		return;
	}
	blen = strlen(base);
	while (blen > 0 && base[blen - 1] == '/')
		base[--blen] = '\0';

	len = strlen(text);
	if (len > 0 && pg_mbstrlen(text) > SMS_MAX_CHARS)
		text[pg_mbcharcliplen(text, len, SMS_MAX_CHARS)] = '\0';

	tmp = curl_easy_init();
	sid_esc = curl_easy_escape(tmp, sid, 0);
	url = psprintf("%s/2010-04-01/Accounts/%s/Messages.json", base, sid_esc ? sid_esc : "");
	curl_free(sid_esc);
	curl_easy_cleanup(tmp);

	foreach(lc, to)
	{
		LogaggTransfer *t = logagg_transfer_new(d, url);
		StringInfoData form;

		initStringInfo(&form);
		append_form(&form, t->easy, "To", (char *) lfirst(lc));
		append_form(&form, t->easy, "From", from);
		append_form(&form, t->easy, "Body", text);
		curl_easy_setopt(t->easy, CURLOPT_HTTPAUTH, (long) CURLAUTH_BASIC);
		curl_easy_setopt(t->easy, CURLOPT_USERNAME, sid);
		curl_easy_setopt(t->easy, CURLOPT_PASSWORD, token);
		logagg_transfer_set_post(t, form.data, form.len, "application/x-www-form-urlencoded");
		logagg_transfer_start(t);
	}
	explicit_bzero(token, strlen(token));
}
