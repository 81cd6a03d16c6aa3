/*-------------------------------------------------------------------------
 *
 * emit_main.c
 *	  logagg-emit: command line, event loop, summary line and exit status.
 *
 * logagg-emit simulates services A/B/C or ships stdin to a logagg server
 * over WebSocket (wire protocol v1, see docs/protocol.md).  The run
 * ends when the producer is finished (--count, --duration, end of stdin,
 * SIGINT/SIGTERM) and every record is settled, or when settling stalls for
 * --drain-timeout seconds.
 *
 *-------------------------------------------------------------------------
 */
#include <getopt.h>
#include <libwebsockets.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "emit.h"
#include "producer.h"
#include "profiles.h"
#include "window.h"
#include "ws_client.h"

#define HOUSEKEEPING_US		(100 * LWS_US_PER_MS)
#define SIGNAL_REPEAT_US	(500 * LWS_US_PER_MS)

EmitOptions opts;
EmitState	emit;

static lws_sorted_usec_list_t housekeeping_sul;

int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Diagnostics go to stderr, so stdout carries only the summary line. */
void
emit_log(const char *fmt,...)
{
	va_list		ap;

	if (opts.quiet)
		return;
	fputs("logagg-emit: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void
emit_debug(const char *fmt,...)
{
	va_list		ap;

	if (!opts.verbose)
		return;
	fputs("logagg-emit: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void
emit_finish(int exit_code)
{
	if (emit.done)
		return;
	emit.done = true;
	emit.exit_code = exit_code;
	/* wake lws_service() so that the main loop notices */
	if (emit.ctx)
		lws_cancel_service(emit.ctx);
}

/*
 * Finished when the producer is done and the window is empty; or, if acks
 * stop coming, after --drain-timeout seconds without progress.
 */
void
emit_check_done(void)
{
	if (emit.done || !producer_finished())
		return;
	if (opts.stream && !emit.have_base)
	{
		emit_log("stopped before the server sent the stream's resume point");
		emit_finish(EMIT_EXIT_INCOMPLETE);
		return;
	}
	if (window_empty())
	{
		emit_finish(win.nrejected > 0 ? EMIT_EXIT_INCOMPLETE : EMIT_EXIT_OK);
		return;
	}
	if (now_us() - emit.last_progress_us > (int64_t) (opts.drain_timeout * 1e6))
	{
		emit_log("%lld records still unacked after %.0f s without progress",
				 (long long) (win.next_id - win.head_id), opts.drain_timeout);
		emit_finish(EMIT_EXIT_INCOMPLETE);
	}
}

static void
housekeeping(lws_sorted_usec_list_t *sul)
{
	(void) sul;
	if (emit.stop_requested >= 2)
	{
		emit_finish(EMIT_EXIT_INCOMPLETE);
		return;
	}
	if (emit.stop_requested && !producer_finished())
		producer_stop("signal");
	if (opts.duration > 0 && !producer_finished() &&
		now_us() - emit.start_us >= (int64_t) (opts.duration * 1e6))
		producer_stop("duration");
	ws_client_housekeeping();
	emit_check_done();
	if (!emit.done)
		lws_sul_schedule(emit.ctx, 0, &housekeeping_sul, housekeeping,
						 HOUSEKEEPING_US);
}

/*
 * First signal: stop producing and drain; a second one: leave now.  A
 * repeat within SIGNAL_REPEAT_US of the first is the same request
 * delivered twice, not a second one: timeout(1) and a terminal's ^C send
 * it both to the process and to its process group.
 */
static void
handle_signal(int signo)
{
	static int64_t first_us;
	int64_t		now = now_us();	/* clock_gettime is async-signal-safe */

	(void) signo;
	if (emit.stop_requested == 0)
	{
		first_us = now;
		emit.stop_requested = 1;
	}
	else if (now - first_us > SIGNAL_REPEAT_US)
		emit.stop_requested = 2;
}

static void
usage(FILE *f)
{
	fprintf(f,
			"Usage: logagg-emit --url ws://HOST:PORT/ingest [options]\n"
			"\n"
			"Sends simulated service logs (or stdin) to a logagg server.\n"
			"\n"
			"  --url URL             ws:// or wss:// endpoint (required)\n"
			"  --token TOKEN         bearer token (Authorization header)\n"
			"  --profile a|b|c       a: web API, b: auth service, c: background worker (default a)\n"
			"  --service NAME        source name (default service-a/-b/-c; with --stdin:\n"
			"                        added to plain-text lines only)\n"
			"  --rate N              records per second, 0 = as fast as acks allow (default 0)\n"
			"  --count N             stop after N records are acked\n"
			"  --duration SECONDS    stop producing after SECONDS\n"
			"  --batch N             records per frame (JSON array when N > 1, default 1)\n"
			"  --stream ID           durable stream: exactly-once via seq and resume\n"
			"  --stdin               ship standard input, one record per line\n"
			"  --max-inflight N      most records sent or queued but not yet acked (default 20000)\n"
			"  --max-frame-bytes N   soft limit on a frame's size (default 1000000)\n"
			"  --give-up-after SECS  exit when no connection for SECS (default 60, 0 = never)\n"
			"  --drain-timeout SECS  at the end, wait at most SECS without ack progress (default 10)\n"
			"  --seed N              PRNG seed for reproducible records\n"
			"  --shards N            add an attribute \"shard\" with one of N values\n"
			"                        (s0 .. sN-1, uniform) to every generated record\n"
			"  --cafile FILE         CA certificates for wss://\n"
			"  --insecure            wss:// without certificate checks (tests only)\n"
			"  --quiet               no diagnostics on stderr\n"
			"  --verbose             more diagnostics, including libwebsockets' own\n"
			"  --help                this text\n"
			"\n"
			"Prints one line: sent N acked N rejected N seconds S rate R/s\n"
			"Exit status: 0 all acked, 1 unacked/rejected records or gave up,\n"
			"2 token refused (HTTP 401/403), 3 usage error.\n");
}

static void
bad_arg(const char *opt, const char *val)
{
	fprintf(stderr, "logagg-emit: invalid value for --%s: \"%s\"\n", opt, val);
	exit(EMIT_EXIT_USAGE);
}

static int64_t
parse_int(const char *opt, const char *val, int64_t min, int64_t max)
{
	char	   *end;
	long long	v = strtoll(val, &end, 10);

	if (*val == '\0' || *end != '\0' || v < min || v > max)
		bad_arg(opt, val);
	return v;
}

static double
parse_double(const char *opt, const char *val, double min)
{
	char	   *end;
	double		v = strtod(val, &end);

	if (*val == '\0' || *end != '\0' || !(v >= min) || v > 1e12)
		bad_arg(opt, val);
	return v;
}

static void
parse_args(int argc, char **argv)
{
	enum
	{
		OPT_URL = 256, OPT_TOKEN, OPT_PROFILE, OPT_SERVICE, OPT_RATE, OPT_COUNT,
		OPT_DURATION, OPT_BATCH, OPT_STREAM, OPT_STDIN, OPT_MAX_INFLIGHT,
		OPT_MAX_FRAME, OPT_GIVE_UP, OPT_DRAIN, OPT_SEED, OPT_CAFILE,
		OPT_INSECURE, OPT_QUIET, OPT_VERBOSE, OPT_HELP, OPT_SHARDS
	};
	static const struct option longopts[] = {
		{"url", required_argument, NULL, OPT_URL},
		{"token", required_argument, NULL, OPT_TOKEN},
		{"profile", required_argument, NULL, OPT_PROFILE},
		{"service", required_argument, NULL, OPT_SERVICE},
		{"rate", required_argument, NULL, OPT_RATE},
		{"count", required_argument, NULL, OPT_COUNT},
		{"duration", required_argument, NULL, OPT_DURATION},
		{"batch", required_argument, NULL, OPT_BATCH},
		{"stream", required_argument, NULL, OPT_STREAM},
		{"stdin", no_argument, NULL, OPT_STDIN},
		{"max-inflight", required_argument, NULL, OPT_MAX_INFLIGHT},
		{"max-frame-bytes", required_argument, NULL, OPT_MAX_FRAME},
		{"give-up-after", required_argument, NULL, OPT_GIVE_UP},
		{"drain-timeout", required_argument, NULL, OPT_DRAIN},
		{"seed", required_argument, NULL, OPT_SEED},
		{"cafile", required_argument, NULL, OPT_CAFILE},
		{"insecure", no_argument, NULL, OPT_INSECURE},
		{"quiet", no_argument, NULL, OPT_QUIET},
		{"shards", required_argument, NULL, OPT_SHARDS},
		{"verbose", no_argument, NULL, OPT_VERBOSE},
		{"help", no_argument, NULL, OPT_HELP},
		{NULL, 0, NULL, 0}
	};
	int			c;

	opts.profile = 'a';
	opts.batch = 1;
	opts.max_inflight = 20000;
	opts.max_frame_bytes = 1000000;
	opts.give_up_after = 60;
	opts.drain_timeout = 10;

	while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case OPT_URL:
				opts.url = optarg;
				break;
			case OPT_TOKEN:
				opts.token = optarg;
				break;
			case OPT_PROFILE:
				if (strlen(optarg) != 1 || !strchr("abcABC", optarg[0]))
					bad_arg("profile", optarg);
				opts.profile = (char) (optarg[0] | 0x20);
				break;
			case OPT_SERVICE:
				if (optarg[0] == '\0' || strlen(optarg) > 128)
					bad_arg("service", optarg);
				opts.service = optarg;
				break;
			case OPT_RATE:
				opts.rate = parse_double("rate", optarg, 0);
				break;
			case OPT_COUNT:
				opts.count = parse_int("count", optarg, 0, INT64_MAX / 2);
				break;
			case OPT_DURATION:
				opts.duration = parse_double("duration", optarg, 0);
				break;
			case OPT_BATCH:
				opts.batch = (int) parse_int("batch", optarg, 1, 100000);
				break;
			case OPT_STREAM:
				if (optarg[0] == '\0' || strlen(optarg) > 128)
					bad_arg("stream", optarg);
				opts.stream = optarg;
				break;
			case OPT_STDIN:
				opts.use_stdin = true;
				break;
			case OPT_MAX_INFLIGHT:
				opts.max_inflight = (int) parse_int("max-inflight", optarg, 1, 10000000);
				break;
			case OPT_MAX_FRAME:
				opts.max_frame_bytes = (size_t) parse_int("max-frame-bytes", optarg, 1024, INT32_MAX);
				break;
			case OPT_GIVE_UP:
				opts.give_up_after = parse_double("give-up-after", optarg, 0);
				break;
			case OPT_DRAIN:
				opts.drain_timeout = parse_double("drain-timeout", optarg, 0);
				break;
			case OPT_SEED:
				opts.seed = (uint64_t) parse_int("seed", optarg, INT64_MIN, INT64_MAX);
				opts.seed_given = true;
				break;
			case OPT_CAFILE:
				opts.cafile = optarg;
				break;
			case OPT_INSECURE:
				opts.insecure = true;
				break;
			case OPT_QUIET:
				opts.quiet = true;
				break;
			case OPT_SHARDS:
				profile_shards = (uint32_t) parse_int("shards", optarg, 0, 1000000);
				break;
			case OPT_VERBOSE:
				opts.verbose = true;
				break;
			case OPT_HELP:
				usage(stdout);
				exit(EMIT_EXIT_OK);
			default:
				usage(stderr);
				exit(EMIT_EXIT_USAGE);
		}
	}
	if (optind < argc)
	{
		fprintf(stderr, "logagg-emit: unexpected argument \"%s\"\n", argv[optind]);
		exit(EMIT_EXIT_USAGE);
	}
	if (opts.url == NULL)
	{
		fprintf(stderr, "logagg-emit: --url is required (try --help)\n");
		exit(EMIT_EXIT_USAGE);
	}
}

int
main(int argc, char **argv)
{
	struct sigaction sa;
	double		seconds;

	parse_args(argc, argv);

	if (opts.quiet)
		lws_set_log_level(0, NULL);
	else if (opts.verbose)
		lws_set_log_level(LLL_ERR | LLL_WARN | LLL_NOTICE, NULL);
	else
		lws_set_log_level(LLL_ERR, NULL);

	/* no SA_RESTART: the signal must interrupt lws' poll() */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = handle_signal;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);

	prng_seed(opts.seed_given ? opts.seed :
			  ((uint64_t) time(NULL) << 20) ^ (uint64_t) getpid() ^ (uint64_t) now_us());

	emit.start_us = emit.last_progress_us = now_us();
	window_init(opts.max_inflight);
	/* without --stream record ids are internal and start at 1 right away */
	emit.have_base = (opts.stream == NULL);

	if (!ws_client_init())
		exit(EMIT_EXIT_USAGE);
	producer_init();
	ws_client_start();
	lws_sul_schedule(emit.ctx, 0, &housekeeping_sul, housekeeping, HOUSEKEEPING_US);

	while (!emit.done)
	{
		if (lws_service(emit.ctx, 0) < 0)
		{
			emit_log("event loop failed");
			emit_finish(EMIT_EXIT_INCOMPLETE);
		}
		if (emit.stop_requested >= 2)
			emit_finish(EMIT_EXIT_INCOMPLETE);
	}

	seconds = (double) (now_us() - emit.start_us) / 1e6;

	/* timers must leave lws' lists before the context goes away */
	lws_sul_cancel(&housekeeping_sul);
	producer_cleanup();
	ws_client_cleanup();

	printf("sent %lld acked %lld rejected %lld seconds %.3f rate %.0f/s\n",
		   (long long) win.nsent, (long long) win.nacked,
		   (long long) win.nrejected, seconds,
		   seconds > 0 ? (double) win.nacked / seconds : 0.0);
	fflush(stdout);
	window_free();

	/* every record sent must be settled, even if we stopped early */
	if (emit.exit_code == EMIT_EXIT_OK &&
		(win.nacked + win.nrejected < win.nsent || win.nrejected > 0))
		emit.exit_code = EMIT_EXIT_INCOMPLETE;
	return emit.exit_code;
}
