/*-------------------------------------------------------------------------
 *
 * dest_webhook.c
 *		"webhook" destinations: the notification's fixed-field JSON object
 *		POSTed to config.url.
 *
 * Config: {"url": "https://...", "secret": "...", "headers": {"Name": "value"}}.
 * With a secret, X-Logagg-Signature: sha256=<hex HMAC-SHA256(secret, body)>
 * lets the receiver check that the body came from us unaltered.  Every
 * request carries Idempotency-Key: <alert_id>, the same on each retry.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "alerts.h"
#include "logagg.h"

void
logagg_dest_webhook(LogaggDelivery *d)
{
	LogaggAlert *a = &d->alert;
	char	   *url = logagg_cfg_text(a->config, "url");
	char	   *secret;
	List	   *headers;
	LogaggTransfer *t;
	size_t		body_len = strlen(a->payload);

	if (url == NULL)
	{
		logagg_delivery_fail(d, true, "webhook destination \"%s\" has no \"url\" in its config",
							 a->destination);
		return;
	}
	t = logagg_transfer_new(d, url);

	secret = logagg_cfg_text(a->config, "secret");
	if (secret != NULL)
	{
		unsigned char mac[EVP_MAX_MD_SIZE];
		unsigned int maclen = 0;
		char		hex[EVP_MAX_MD_SIZE * 2 + 1];

		if (HMAC(EVP_sha256(), secret, (int) strlen(secret),
				 (const unsigned char *) a->payload, body_len, mac, &maclen) == NULL)
		{
			logagg_delivery_fail(d, false, "could not compute the HMAC-SHA256 signature");
			curl_slist_free_all(t->headers);
			curl_easy_cleanup(t->easy);
			return;
		}
		for (unsigned int i = 0; i < maclen; i++)
			snprintf(hex + 2 * i, 3, "%02x", mac[i]);
		logagg_transfer_add_header(t, "X-Logagg-Signature: sha256=%s", hex);
		explicit_bzero(secret, strlen(secret));
	}

	headers = logagg_cfg_object_pairs(a->config, "headers");
	for (int i = 0; i + 1 < list_length(headers); i += 2)
		logagg_transfer_add_header(t, "%s: %s", (char *) list_nth(headers, i),
								   (char *) list_nth(headers, i + 1));
	logagg_transfer_add_header(t, "X-Logagg-Alert-Id: " INT64_FORMAT, a->id);

	logagg_transfer_set_post(t, a->payload, body_len, "application/json");
	logagg_transfer_start(t);
}
