/*-------------------------------------------------------------------------
 *
 * profiles.c
 *	  Record generators for services A, B and C.
 *
 * Records are formatted with snprintf straight into the window slot: no
 * JSON library, no allocation.  All generated strings are plain ASCII
 * without quotes or backslashes, so they need no escaping (--service is
 * the exception and is escaped once at startup).  The PRNG is xorshift64*:
 * fast, and reproducible with --seed.
 *
 *-------------------------------------------------------------------------
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "jsonutil.h"
#include "profiles.h"

static uint64_t prng_state = 0x9E3779B97F4A7C15ULL;

uint32_t	profile_shards = 0;

void
prng_seed(uint64_t seed)
{
	/* splitmix64 step so that small or similar seeds diverge quickly */
	uint64_t	z = seed + 0x9E3779B97F4A7C15ULL;

	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
	z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
	z ^= z >> 31;
	prng_state = z ? z : 1;
}

uint64_t
prng_next(void)
{
	uint64_t	x = prng_state;

	x ^= x >> 12;
	x ^= x << 25;
	x ^= x >> 27;
	prng_state = x;
	return x * 0x2545F4914F6CDD1DULL;
}

/* uniform in [0, n) */
static uint32_t
rnd(uint32_t n)
{
	return (uint32_t) (((prng_next() >> 32) * (uint64_t) n) >> 32);
}

/* exponential with the given mean, for latencies */
static int
rnd_exp(double mean)
{
	double		u = ((double) (prng_next() >> 11) + 1.0) / 9007199254740993.0;

	return (int) (-log(u) * mean);
}

#define PICK(arr) (arr[rnd(sizeof(arr) / sizeof(arr[0]))])

const char *
profile_default_service(char profile)
{
	switch (profile)
	{
		case 'b':
			return "service-b";
		case 'c':
			return "service-c";
		default:
			return "service-a";
	}
}

/*
 * RFC 3339 UTC timestamp with milliseconds.  gmtime is only called when
 * the second changes.
 */
static const char *
timestamp_now(void)
{
	static time_t cached_sec = -1;
	static char prefix[32];
	static char out[64];
	struct timespec ts;

	clock_gettime(CLOCK_REALTIME, &ts);
	if (ts.tv_sec != cached_sec)
	{
		struct tm	tm;

		gmtime_r(&ts.tv_sec, &tm);
		strftime(prefix, sizeof(prefix), "%Y-%m-%dT%H:%M:%S", &tm);
		cached_sec = ts.tv_sec;
	}
	snprintf(out, sizeof(out), "%s.%03dZ", prefix, (int) (ts.tv_nsec / 1000000) % 1000);
	return out;
}

static const char *
level_for_status(int status)
{
	if (status >= 500)
		return "error";
	if (status >= 400)
		return "warn";
	return "info";
}

/* Common prefix: {"seq":N,"ts":...,"service":...,"level":...[,"shard":"sK"] */
static int
format_head(char *buf, size_t size, int64_t seq, const char *service,
			const char *level)
{
	int			n;

	if (seq > 0)
		n = snprintf(buf, size,
					 "{\"seq\":%lld,\"ts\":\"%s\",\"service\":%s,\"level\":\"%s\"",
					 (long long) seq, timestamp_now(), service, level);
	else
		n = snprintf(buf, size, "{\"ts\":\"%s\",\"service\":%s,\"level\":\"%s\"",
					 timestamp_now(), service, level);
	if (profile_shards > 0)
		n += snprintf(buf + n, size - n, ",\"shard\":\"s%u\"", rnd(profile_shards));
	return n;
}

static int
format_trace(char *buf, size_t size)
{
	return snprintf(buf, size, ",\"trace_id\":\"%016llx%016llx\",\"span_id\":\"%016llx\"",
					(unsigned long long) prng_next(),
					(unsigned long long) prng_next(),
					(unsigned long long) prng_next());
}

/* ---- A: public web API ---- */

static const char *const a_resources[] = {
	"orders", "orders", "products", "products", "products", "cart",
	"users", "search", "reviews", "inventory"
};

static size_t
format_a(const char *service, int64_t seq, char *buf)
{
	uint32_t	r = rnd(1000);
	const char *res = PICK(a_resources);
	const char *method;
	char		path[96];
	int			status;
	int			dur;
	int			n;

	/* status mix: 90% 2xx, 3% 3xx, 4% 404, 1% other 4xx, 2% 5xx */
	if (r < 900)
		status = 200;
	else if (r < 930)
		status = (r < 915) ? 304 : (r < 925 ? 302 : 301);
	else if (r < 970)
		status = 404;
	else if (r < 980)
	{
		static const int other4[] = {400, 401, 403, 409, 422};

		status = PICK(other4);
	}
	else
	{
		static const int fives[] = {500, 500, 502, 503, 504};

		status = PICK(fives);
	}

	/* method and path */
	r = rnd(100);
	if (strcmp(res, "search") == 0)
	{
		static const char *const terms[] = {"shoes", "laptop", "coffee", "desk", "phone", "lamp"};

		method = "GET";
		snprintf(path, sizeof(path), "/api/search?q=%s&page=%u", PICK(terms), rnd(5) + 1);
	}
	else if (r < 70)
	{
		method = "GET";
		if (rnd(4) == 0)
			snprintf(path, sizeof(path), "/api/%s?page=%u", res, rnd(20) + 1);
		else
			snprintf(path, sizeof(path), "/api/%s/%u", res, rnd(100000) + 1);
	}
	else if (r < 88)
	{
		method = "POST";
		snprintf(path, sizeof(path), "/api/%s", res);
		if (status == 200)
			status = 201;
	}
	else if (r < 96)
	{
		method = rnd(2) ? "PUT" : "PATCH";
		snprintf(path, sizeof(path), "/api/%s/%u", res, rnd(100000) + 1);
	}
	else
	{
		method = "DELETE";
		snprintf(path, sizeof(path), "/api/%s/%u", res, rnd(100000) + 1);
		if (status == 200)
			status = 204;
	}

	if (status >= 500)
		dur = (rnd(4) == 0) ? 30000 : 50 + rnd_exp(400);
	else if (status >= 300 && status < 400)
		dur = 1 + rnd_exp(3);
	else
		dur = 2 + rnd_exp(25);

	n = format_head(buf, PROFILE_MAX_RECORD, seq, service, level_for_status(status));
	n += snprintf(buf + n, PROFILE_MAX_RECORD - n,
				  ",\"status\":%d,\"method\":\"%s\",\"path\":\"%s\",\"duration_ms\":%d"
				  ",\"message\":\"%s %s %d %dms\",\"client_ip\":\"203.0.%u.%u\",\"bytes\":%u",
				  status, method, path, dur, method, path, status, dur,
				  rnd(256), rnd(254) + 1,
				  status == 204 || status == 304 ? 0 : 200 + rnd(20000));
	n += format_trace(buf + n, PROFILE_MAX_RECORD - n);
	n += snprintf(buf + n, PROFILE_MAX_RECORD - n, "}");
	return (size_t) n;
}

/* ---- B: auth service ---- */

static size_t
format_b(const char *service, int64_t seq, char *buf)
{
	uint32_t	r = rnd(1000);
	uint32_t	user = rnd(50000) + 1;
	char		msg[160];
	const char *path = "/auth/login";
	const char *method = "POST";
	int			status;
	int			dur = 5 + rnd_exp(40);
	int			n;

	/* 63% 200, 15% 401, 9% 403, 5% 400, 4% 429, 4% 5xx */
	if (r < 630)
	{
		static const char *const ok[] = {"login succeeded for user u%u",
			"token refreshed for user u%u", "logout for user u%u",
		"mfa challenge passed for user u%u"};
		uint32_t	k = rnd(4);

		status = 200;
		snprintf(msg, sizeof(msg), ok[k], user);
		if (k == 1)
			path = "/auth/token/refresh";
		else if (k == 2)
			path = "/auth/logout";
		else if (k == 3)
			path = "/auth/mfa/verify";
	}
	else if (r < 780)
	{
		static const char *const why[] = {"bad password", "bad password",
		"unknown user", "expired token", "invalid mfa code"};

		status = 401;
		snprintf(msg, sizeof(msg), "login failed for user u%u: %s", user, PICK(why));
	}
	else if (r < 870)
	{
		static const char *const scopes[] = {"admin", "billing:write", "users:read", "reports"};
		static const char *const paths[] = {"/admin/users", "/billing/invoices", "/users/export", "/reports/daily"};
		uint32_t	k = rnd(4);

		status = 403;
		method = "GET";
		path = "/auth/authorize";
		snprintf(msg, sizeof(msg), "access denied for user u%u to %s: missing scope %s",
				 user, paths[k], scopes[k]);
	}
	else if (r < 920)
	{
		static const char *const fields[] = {"password", "username", "grant_type", "client_id"};

		status = 400;
		snprintf(msg, sizeof(msg), "malformed login request: missing field %s", PICK(fields));
	}
	else if (r < 960)
	{
		status = 429;
		snprintf(msg, sizeof(msg), "rate limit exceeded for ip 198.51.%u.%u: %u attempts in 60s",
				 rnd(256), rnd(254) + 1, 20 + rnd(200));
	}
	else
	{
		static const int fives[] = {500, 502, 503, 504};

		status = PICK(fives);
		dur = (status == 504) ? 3000 : 20 + rnd_exp(200);
		if (status == 504)
			snprintf(msg, sizeof(msg), "identity provider timeout after %dms for user u%u", dur, user);
		else if (status == 503)
			snprintf(msg, sizeof(msg), "session store unavailable: connection refused to redis-%u:6379", rnd(3) + 1);
		else
			snprintf(msg, sizeof(msg), "internal error while issuing token for user u%u", user);
	}

	n = format_head(buf, PROFILE_MAX_RECORD, seq, service, level_for_status(status));
	n += snprintf(buf + n, PROFILE_MAX_RECORD - n,
				  ",\"status\":%d,\"method\":\"%s\",\"path\":\"%s\",\"duration_ms\":%d"
				  ",\"message\":\"%s\",\"user\":\"u%u\",\"client_ip\":\"198.51.%u.%u\"",
				  status, method, path, dur, msg, user, rnd(256), rnd(254) + 1);
	n += format_trace(buf + n, PROFILE_MAX_RECORD - n);
	n += snprintf(buf + n, PROFILE_MAX_RECORD - n, "}");
	return (size_t) n;
}

/* ---- C: background worker ---- */

static size_t
format_c(const char *service, int64_t seq, char *buf)
{
	static const char *const queues[] = {"emails", "emails", "thumbnails", "invoices", "exports", "webhooks"};
	uint32_t	r = rnd(10000);
	uint32_t	job = rnd(1000000) + 1;
	const char *queue = PICK(queues);
	uint32_t	worker = rnd(8) + 1;
	const char *level;
	char		msg[200];
	int			dur = 10 + rnd_exp(150);
	int			n;

	/* info 60%, debug 30%, warn 8%, error 1.8%, fatal 0.2% */
	if (r < 6000)
	{
		level = "info";
		if (rnd(5) == 0)
			snprintf(msg, sizeof(msg), "job %u enqueued on %s", job, queue);
		else
			snprintf(msg, sizeof(msg), "job %u processed in %dms", job, dur);
	}
	else if (r < 9000)
	{
		level = "debug";
		if (rnd(2))
			snprintf(msg, sizeof(msg), "polling queue %s: %u jobs ready", queue, rnd(50));
		else
			snprintf(msg, sizeof(msg), "heartbeat from worker-%u, %u jobs in flight", worker, rnd(16));
	}
	else if (r < 9800)
	{
		level = "warn";
		if (rnd(2))
			snprintf(msg, sizeof(msg), "job %u retry %u/5 after timeout", job, rnd(4) + 1);
		else
			snprintf(msg, sizeof(msg), "queue %s backlog %u exceeds threshold 1000", queue, 1000 + rnd(9000));
	}
	else if (r < 9980)
	{
		static const char *const errs[] = {"connection refused to db-2:5432",
			"smtp 550 mailbox unavailable", "s3 PutObject: SlowDown",
		"template render failed: missing variable name"};

		level = "error";
		snprintf(msg, sizeof(msg), "job %u failed: %s", job, PICK(errs));
	}
	else
	{
		level = "fatal";
		if (rnd(2))
			snprintf(msg, sizeof(msg), "worker-%u out of memory, exiting", worker);
		else
			snprintf(msg, sizeof(msg), "worker-%u lost database connection permanently, exiting", worker);
	}

	n = format_head(buf, PROFILE_MAX_RECORD, seq, service, level);
	n += snprintf(buf + n, PROFILE_MAX_RECORD - n,
				  ",\"message\":\"%s\",\"job_id\":%u,\"queue\":\"%s\",\"worker\":\"worker-%u\"",
				  msg, job, queue, worker);
	if (strcmp(level, "debug") != 0)
		n += snprintf(buf + n, PROFILE_MAX_RECORD - n, ",\"duration_ms\":%d", dur);
	n += snprintf(buf + n, PROFILE_MAX_RECORD - n, "}");
	return (size_t) n;
}

/*
 * service is an already quoted and escaped JSON string.
 */
size_t
profile_format(char profile, const char *service, int64_t seq, char *buf)
{
	switch (profile)
	{
		case 'b':
			return format_b(service, seq, buf);
		case 'c':
			return format_c(service, seq, buf);
		default:
			return format_a(service, seq, buf);
	}
}
