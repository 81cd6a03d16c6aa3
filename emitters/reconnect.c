/*
 * reconnect.c -- backoff and connection settings shared by logagg-emit and
 * logagg-tail (see reconnect.h).
 */
#include <string.h>
#include <unistd.h>

#include <libwebsockets.h>

#include "reconnect.h"

void
backoff_init(Backoff *b, int64_t now_us)
{
	b->retries = 0;
	b->state = (uint64_t) now_us ^ ((uint64_t) getpid() << 32) ^ 0x5DEECE66DULL;
}

int64_t
backoff_next_ms(Backoff *b)
{
	int64_t		ms = BACKOFF_MIN_MS;
	int64_t		jitter;

	for (int i = 0; i < b->retries && ms < BACKOFF_MAX_MS; i++)
		ms *= 2;
	if (ms > BACKOFF_MAX_MS)
		ms = BACKOFF_MAX_MS;
	b->state ^= b->state << 13;
	b->state ^= b->state >> 7;
	b->state ^= b->state << 17;
	jitter = (int64_t) (b->state % (uint64_t) (ms / 2 + 1)) - ms / 4;
	b->retries++;
	return ms + jitter;
}

void
reconnect_connect_info(struct lws_client_connect_info *ci, struct lws_context *ctx,
					   const char *host, int port, const char *path,
					   const char *host_header, const char *protocol_name,
					   const lws_retry_bo_t *policy, struct lws **pwsi,
					   bool tls, bool insecure)
{
	memset(ci, 0, sizeof(*ci));
	ci->context = ctx;
	ci->address = host;
	ci->port = port;
	ci->path = path;
	ci->host = host_header;
	ci->origin = host;
	ci->protocol = NULL;
	ci->local_protocol_name = protocol_name;
	ci->retry_and_idle_policy = policy;
	ci->pwsi = pwsi;
	if (tls)
		ci->ssl_connection = LCCSCF_USE_SSL;
	if (tls && insecure)
		ci->ssl_connection |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
			LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
}
