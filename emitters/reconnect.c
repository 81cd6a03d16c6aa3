/*
 * reconnect.c -- backoff and TLS flags shared by logagg-emit and
 * logagg-tail (see reconnect.h).
 */
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

int
reconnect_tls_flags(bool insecure)
{
	int			flags = LCCSCF_USE_SSL;

	if (insecure)
		flags |= LCCSCF_ALLOW_SELFSIGNED | LCCSCF_SKIP_SERVER_CERT_HOSTNAME_CHECK |
			LCCSCF_ALLOW_EXPIRED | LCCSCF_ALLOW_INSECURE;
	return flags;
}
