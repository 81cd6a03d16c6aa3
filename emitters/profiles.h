/*-------------------------------------------------------------------------
 *
 * profiles.h
 *	  Synthetic log records for the three simulated services.
 *
 *	  a: public web API     (mostly 2xx, some 3xx/404/other 4xx/5xx)
 *	  b: auth service       (many 401/403, some 400/429/5xx)
 *	  c: background worker  (no HTTP status; info/debug, rare error/fatal)
 *
 *-------------------------------------------------------------------------
 */
#ifndef PROFILES_H
#define PROFILES_H

#include <stddef.h>
#include <stdint.h>

extern void prng_seed(uint64_t seed);
extern uint64_t prng_next(void);

extern const char *profile_default_service(char profile);

/* > 0: every record gets "shard":"sK", K uniform in [0, profile_shards) */
extern uint32_t profile_shards;

/*
 * Format one record of the given profile into buf as a JSON object.
 * seq > 0 adds a "seq" member (--stream).  Returns the length, which is
 * always < PROFILE_MAX_RECORD.
 */
#define PROFILE_MAX_RECORD 1024
extern size_t profile_format(char profile, const char *service, int64_t seq,
							 char *buf);

#endif							/* PROFILES_H */
