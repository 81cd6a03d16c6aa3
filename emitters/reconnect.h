/*
 * reconnect.h -- what logagg-emit and logagg-tail (tools/) share about
 * reconnecting to a logagg server: the backoff between attempts and the
 * TLS flags of a client connection.
 */
#ifndef LOGAGG_RECONNECT_H
#define LOGAGG_RECONNECT_H

#include <stdbool.h>
#include <stdint.h>

#define BACKOFF_MIN_MS		100
#define BACKOFF_MAX_MS		5000

typedef struct Backoff
{
	int			retries;		/* failed attempts since the last success */
	uint64_t	state;			/* xorshift state of the jitter */
} Backoff;

/* Seeds the jitter from the clock and the pid: processes started together differ. */
extern void backoff_init(Backoff *b, int64_t now_us);

/*
 * The delay before the next attempt, and counts it: 100 ms doubling to
 * 5 s, with +-25 % jitter so that many clients of a restarted server don't
 * reconnect in lockstep.
 */
extern int64_t backoff_next_ms(Backoff *b);

/* lws client ssl_connection flags for wss://; insecure: no certificate checks (tests). */
extern int	reconnect_tls_flags(bool insecure);

#endif
