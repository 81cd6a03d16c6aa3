/*-------------------------------------------------------------------------
 *
 * producer.c
 *	  Decides when and how many records enter the window.
 *
 * Everything is driven by one lws_sul timer, never by blocking: the
 * producer runs when its timer fires or when acks free window space
 * (producer_kick).  With --rate 0 it fills the window completely, so the
 * sender pipelines up to --max-inflight unacked records; with --rate N a
 * credit of N records per second accumulates (at most 0.1 s of burst, so
 * a stall is not followed by a flood).
 *
 *-------------------------------------------------------------------------
 */
#include <libwebsockets.h>
#include <string.h>

#include "emit.h"
#include "jsonutil.h"
#include "producer.h"
#include "profiles.h"
#include "stdin_source.h"
#include "window.h"
#include "ws_client.h"

/* one run produces at most this many records, to keep the loop responsive */
#define PRODUCE_CHUNK		4096
#define STDIN_IDLE_MIN_US	1000
#define STDIN_IDLE_MAX_US	20000

static lws_sorted_usec_list_t producer_sul;
static bool finished = false;
static StrBuf service_json;

/* rate pacing */
static int64_t rate_origin_us;
static int64_t rate_count;
static int64_t stdin_idle_us = STDIN_IDLE_MIN_US;

static void producer_run(lws_sorted_usec_list_t *sul);

void
producer_init(void)
{
	const char *svc = opts.service ? opts.service :
		profile_default_service(opts.profile);

	json_append_string(&service_json, svc, strlen(svc));
	rate_origin_us = now_us();
	rate_count = 0;
	if (opts.use_stdin)
		stdin_source_init();
	producer_kick();
}

void
producer_cleanup(void)
{
	lws_sul_cancel(&producer_sul);
	strbuf_free(&service_json);
	if (opts.use_stdin)
		stdin_source_cleanup();
}

bool
producer_finished(void)
{
	return finished;
}

void
producer_kick(void)
{
	if (!finished)
		lws_sul_schedule(emit.ctx, 0, &producer_sul, producer_run, 1);
}

void
producer_stop(const char *why)
{
	if (finished)
		return;
	finished = true;
	lws_sul_cancel(&producer_sul);
	emit_debug("producer finished (%s) after %lld records", why,
			   (long long) window_produced());
	emit_check_done();
}

static int64_t
produce_profile(int64_t max)
{
	int64_t		n;

	for (n = 0; n < max; n++)
	{
		EmitRecord *r = window_reserve(PROFILE_MAX_RECORD);
		int64_t		seq = opts.stream ? win.next_id : 0;

		r->len = profile_format(opts.profile, service_json.data, seq, r->text);
		window_commit();
	}
	return n;
}

static void
producer_run(lws_sorted_usec_list_t *sul)
{
	int64_t		now = now_us();
	int64_t		budget;
	int64_t		produced;
	int64_t		next_us = -1;	/* -1: wait for a kick */

	(void) sul;
	if (finished)
		return;

	/* --stream: ids are seqs, unknown until the server said "resume" */
	if (!emit.have_base)
		return;

	if (emit.stop_requested)
	{
		producer_stop("signal");
		return;
	}
	if (opts.duration > 0 && now - emit.start_us >= (int64_t) (opts.duration * 1e6))
	{
		producer_stop("duration");
		return;
	}
	if (opts.count > 0 && window_produced() >= opts.count)
	{
		producer_stop("count");
		return;
	}

	budget = window_space();
	if (opts.count > 0 && budget > opts.count - window_produced())
		budget = opts.count - window_produced();

	if (opts.rate > 0)
	{
		int64_t		expected = (int64_t) ((double) (now - rate_origin_us) * opts.rate / 1e6);
		int64_t		burst = (int64_t) (opts.rate / 10);

		if (burst < opts.batch)
			burst = opts.batch;
		if (expected - rate_count > burst)
			rate_count = expected - burst;
		if (budget > expected - rate_count)
			budget = expected - rate_count;
	}
	if (budget > PRODUCE_CHUNK)
		budget = PRODUCE_CHUNK;
	if (budget < 0)
		budget = 0;

	if (opts.use_stdin)
	{
		StdinState	st = STDIN_MORE;

		produced = budget > 0 ? stdin_source_fill(budget, &st) : 0;
		if (st == STDIN_EOF)
		{
			if (produced > 0)
				ws_client_kick_write();
			producer_stop("end of input");
			return;
		}
		if (st == STDIN_IDLE)
		{
			/* poll stdin again later, backing off while it stays quiet */
			next_us = stdin_idle_us;
			if (stdin_idle_us < STDIN_IDLE_MAX_US)
				stdin_idle_us *= 2;
		}
		else
			stdin_idle_us = STDIN_IDLE_MIN_US;
	}
	else
		produced = produce_profile(budget);

	rate_count += produced;
	if (produced > 0)
		ws_client_kick_write();

	if (opts.count > 0 && window_produced() >= opts.count)
	{
		producer_stop("count");
		return;
	}

	if (next_us < 0)
	{
		if (window_space() == 0)
			next_us = -1;		/* an ack will kick us */
		else if (opts.rate > 0)
		{
			/* wake when a frame's worth of credit (or 1 record) accrued */
			double		want = opts.batch;
			double		us = want * 1e6 / opts.rate;

			next_us = (int64_t) (us < 1000 ? 1000 : (us > 1000000 ? 1000000 : us));
		}
		else
			next_us = 1;		/* chunk limit hit: continue right away */
	}
	if (next_us > 0)
		lws_sul_schedule(emit.ctx, 0, &producer_sul, producer_run, next_us);
}
