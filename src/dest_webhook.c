/*-------------------------------------------------------------------------
 *
 * dest_webhook.c
 *		"webhook" destinations: the notification's fixed-field JSON object
 *		POSTed to config.url.
 *
 * Config: {"url": "https://...", "secret": "...", "signature_version": 2,
 * "headers": {"Name": "value"}}.  Every request carries X-Logagg-Timestamp
 * (Unix seconds when it was sent) and Idempotency-Key: <alert_id>, the
 * same on each retry.  With a secret, X-Logagg-Signature:
 * v2=<hex HMAC-SHA256(secret, timestamp "." body)> lets the receiver check
 * that the body came from us unaltered and recently, so a captured
 * request cannot be replayed later (the receiver refuses old timestamps).
 * signature_version 1 sends the older sha256=<hex HMAC-SHA256(secret,
 * body)> instead, for receivers not yet updated (docs/alerts.md).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "alerts.h"
#include "logagg.h"

/*
 * hex HMAC-SHA256(secret, prefix || body) into hex (2 * 32 + 1 bytes);
 * false if OpenSSL failed.
 */
static bool
sign(const char *secret, const char *prefix, const char *body, size_t body_len,
	 char *hex)
{
	size_t		plen = strlen(prefix);
	char	   *msg = palloc(plen + body_len);
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	bool		ok;

	memcpy(msg, prefix, plen);
	memcpy(msg + plen, body, body_len);
	ok = HMAC(EVP_sha256(), secret, (int) strlen(secret),
			  (const unsigned char *) msg, plen + body_len, mac, &maclen) != NULL &&
		maclen == 32;
	pfree(msg);
	if (ok)
		for (unsigned int i = 0; i < maclen; i++)
			snprintf(hex + 2 * i, 3, "%02x", mac[i]);
	return ok;
}

void
logagg_dest_webhook(LogaggDelivery *d)
{
	LogaggAlert *a = &d->alert;
	char	   *url = logagg_cfg_text(a->config, "url");
	char	   *secret;
	List	   *headers;
	LogaggTransfer *t;
	size_t		body_len = strlen(a->payload);
	char		ts[32];

	if (url == NULL)
	{
		logagg_delivery_fail(d, true, "webhook destination \"%s\" has no \"url\" in its config",
							 a->destination);
		return;
	}
	t = logagg_transfer_new(d, url);

	/* every attempt is signed afresh, with the time it is sent */
	snprintf(ts, sizeof(ts), "%lld", (long long) time(NULL));
	logagg_transfer_add_header(t, "X-Logagg-Timestamp: %s", ts);
	secret = logagg_cfg_text(a->config, "secret");
	if (secret != NULL)
	{
		char		hex[2 * 32 + 1];
		bool		v1 = logagg_cfg_int(a->config, "signature_version", 2, 1, 2) == 1;
		char	   *prefix = v1 ? "" : psprintf("%s.", ts);

		if (!sign(secret, prefix, a->payload, body_len, hex))
		{
			explicit_bzero(secret, strlen(secret));
			logagg_delivery_fail(d, false, "could not compute the HMAC-SHA256 signature");
			t->refused = true;
			logagg_transfer_start(t);	/* only frees it */
			return;
		}
		explicit_bzero(secret, strlen(secret));
		logagg_transfer_add_header(t, "X-Logagg-Signature: %s=%s", v1 ? "sha256" : "v2", hex);
	}

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
	logagg_transfer_add_header(t, "X-Logagg-Alert-Id: " INT64_FORMAT, a->id);

	logagg_transfer_set_post(t, a->payload, body_len, "application/json");
	logagg_transfer_start(t);
}
