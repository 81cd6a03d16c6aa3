/*
 * reconnect.h -- what logagg-emit and logagg-tail (tools/) share about
 * (re)connecting to a logagg server: the backoff between attempts and the
 * settings of a client connection.
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

struct lws_client_connect_info;
struct lws_context;
struct lws;
typedef struct lws_retry_bo lws_retry_bo_t;

/*
 * Fills ci for a WebSocket to host:port/path (Host: host_header, no
 * subprotocol: the server's default one) over local protocol
 * protocol_name; wss:// when tls, without certificate checks when
 * insecure (tests only).
 */
extern void reconnect_connect_info(struct lws_client_connect_info *ci, struct lws_context *ctx,
								   const char *host, int port, const char *path,
								   const char *host_header, const char *protocol_name,
								   const lws_retry_bo_t *policy, struct lws **pwsi,
								   bool tls, bool insecure);

#endif
