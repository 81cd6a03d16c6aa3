/*-------------------------------------------------------------------------
 *
 * tail_main.c
 *	  logagg-tail: command line, event loop and exit status.
 *
 * logagg-tail follows what a logagg server stores, like tail -f: it
 * subscribes to the live tail (GET /tail on the reader port, a
 * WebSocket) with the filters given as flags and prints each record as it
 * is committed, until SIGINT/SIGTERM.
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

#include "jsonutil.h"
#include "tail.h"

#define HOUSEKEEPING_US		(100 * LWS_US_PER_MS)

TailOptions opts;
TailState	tail;

static lws_sorted_usec_list_t housekeeping_sul;

int64_t
now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t) ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* Diagnostics go to stderr, so stdout carries only records. */
void
tail_log(const char *fmt,...)
{
	va_list		ap;

	if (opts.quiet)
		return;
	fputs("logagg-tail: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void
tail_debug(const char *fmt,...)
{
	va_list		ap;

	if (!opts.verbose)
		return;
	fputs("logagg-tail: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void
tail_finish(int exit_code)
{
	if (tail.done)
		return;
	tail.done = true;
	tail.exit_code = exit_code;
	/* wake lws_service() so that the main loop notices */
	if (tail.ctx)
		lws_cancel_service(tail.ctx);
}

/* Notices the signal flag even if it was set just before poll() began. */
static void
housekeeping(lws_sorted_usec_list_t *sul)
{
	(void) sul;
	if (tail.stop_requested)
		tail_finish(TAIL_EXIT_OK);
	if (!tail.done)
		lws_sul_schedule(tail.ctx, 0, &housekeeping_sul, housekeeping,
						 HOUSEKEEPING_US);
}

static void
handle_signal(int signo)
{
	(void) signo;
	tail.stop_requested = 1;
}

static void
usage(FILE *f)
{
	fprintf(f,
			"Usage: logagg-tail [options]\n"
			"\n"
			"Prints the records a logagg server stores, as they are committed.\n"
			"\n"
			"  --host HOST             server (default 127.0.0.1)\n"
			"  --port PORT             reader port, logagg.reader_port (default 7481)\n"
			"  --token TOKEN           reader token; better: the LOGAGG_TOKEN environment\n"
			"                          variable (a command line is visible to every user)\n"
			"  --source PATTERN        only these sources ('svc-a', 'svc-*')\n"
			"  --min-severity LEVEL    critical, high or low\n"
			"  -q, --grep REGEX        only messages matching this POSIX regex ((?i) first:\n"
			"                          case-insensitive)\n"
			"  --attrs JSON            only records whose attrs contain this JSON object\n"
			"  --since N               first print the last N matching records (0-10000)\n"
			"  --json                  print each record as the server's JSON, one per line\n"
			"  --color WHEN            auto (default: on a terminal), always or never\n"
			"  --resume N              after a reconnect, fetch the last N records again\n"
			"                          so that none is missed (default 1000, 0 = don't)\n"
			"  --count N               exit after N records\n"
			"  --tls                   wss:// (TLS)\n"
			"  --cafile FILE           CA certificates for --tls\n"
			"  --insecure              --tls without certificate checks (tests only)\n"
			"  --quiet                 no diagnostics on stderr\n"
			"  --verbose               more diagnostics, including libwebsockets' own\n"
			"  --help                  this text\n"
			"\n"
			"Lines: TS SOURCE SEVERITY [STATUS] MESSAGE, control characters escaped.\n"
			"Exit status: 0 interrupted (SIGINT/SIGTERM) or --count reached,\n"
			"1 failure (e.g. standard output unwritable), 2 usage error or request\n"
			"rejected by the server, 3 token refused (HTTP 401/403).\n");
}

static void
bad_arg(const char *opt, const char *val, const char *why)
{
	fprintf(stderr, "logagg-tail: invalid value for --%s: \"%s\"%s%s\n",
			opt, val, why ? ": " : "", why ? why : "");
	exit(TAIL_EXIT_USAGE);
}

static int64_t
parse_int(const char *opt, const char *val, int64_t min, int64_t max)
{
	char	   *end;
	long long	v = strtoll(val, &end, 10);

	if (*val == '\0' || *end != '\0' || v < min || v > max)
	{
		char		why[64];

		snprintf(why, sizeof(why), "an integer from %lld to %lld is expected",
				 (long long) min, (long long) max);
		bad_arg(opt, val, why);
	}
	return v;
}

static void
parse_args(int argc, char **argv)
{
	enum
	{
		OPT_HOST = 256, OPT_PORT, OPT_TOKEN, OPT_SOURCE, OPT_MIN_SEVERITY,
		OPT_ATTRS, OPT_SINCE, OPT_JSON, OPT_COLOR, OPT_RESUME, OPT_COUNT,
		OPT_TLS, OPT_CAFILE, OPT_INSECURE, OPT_QUIET, OPT_VERBOSE, OPT_HELP
	};
	static const struct option longopts[] = {
		{"host", required_argument, NULL, OPT_HOST},
		{"port", required_argument, NULL, OPT_PORT},
		{"token", required_argument, NULL, OPT_TOKEN},
		{"source", required_argument, NULL, OPT_SOURCE},
		{"min-severity", required_argument, NULL, OPT_MIN_SEVERITY},
		{"grep", required_argument, NULL, 'q'},
		{"attrs", required_argument, NULL, OPT_ATTRS},
		{"since", required_argument, NULL, OPT_SINCE},
		{"json", no_argument, NULL, OPT_JSON},
		{"color", required_argument, NULL, OPT_COLOR},
		{"colour", required_argument, NULL, OPT_COLOR},
		{"resume", required_argument, NULL, OPT_RESUME},
		{"count", required_argument, NULL, OPT_COUNT},
		{"tls", no_argument, NULL, OPT_TLS},
		{"cafile", required_argument, NULL, OPT_CAFILE},
		{"insecure", no_argument, NULL, OPT_INSECURE},
		{"quiet", no_argument, NULL, OPT_QUIET},
		{"verbose", no_argument, NULL, OPT_VERBOSE},
		{"help", no_argument, NULL, OPT_HELP},
		{NULL, 0, NULL, 0}
	};
	int			c;
	const char *color = "auto";

	opts.host = "127.0.0.1";
	opts.port = 7481;
	opts.since = -1;
	opts.resume = 1000;

	while ((c = getopt_long(argc, argv, "q:", longopts, NULL)) != -1)
	{
		switch (c)
		{
			case OPT_HOST:
				if (optarg[0] == '\0')
					bad_arg("host", optarg, NULL);
				opts.host = optarg;
				break;
			case OPT_PORT:
				opts.port = (int) parse_int("port", optarg, 1, 65535);
				break;
			case OPT_TOKEN:
				opts.token = optarg;
				break;
			case OPT_SOURCE:
				if (optarg[0] == '\0')
					bad_arg("source", optarg, NULL);
				opts.source = optarg;
				break;
			case OPT_MIN_SEVERITY:
				if (strcmp(optarg, "critical") != 0 && strcmp(optarg, "high") != 0 &&
					strcmp(optarg, "low") != 0)
					bad_arg("min-severity", optarg, "critical, high or low is expected");
				opts.min_severity = optarg;
				break;
			case 'q':
				if (optarg[0] == '\0')
					bad_arg("grep", optarg, NULL);
				opts.grep = optarg;
				break;
			case OPT_ATTRS:
				{
					long		used = json_scan_object(optarg, strlen(optarg), NULL, NULL);

					/* one object and nothing after it but blanks */
					if (used < 0 || optarg[used + strspn(optarg + used, " \t\r\n")] != '\0')
						bad_arg("attrs", optarg, "a JSON object is expected, e.g. '{\"env\":\"prod\"}'");
					opts.attrs = optarg;
				}
				break;
			case OPT_SINCE:
				opts.since = (int) parse_int("since", optarg, 0, 10000);
				break;
			case OPT_JSON:
				opts.json = true;
				break;
			case OPT_COLOR:
				color = optarg;
				if (strcmp(color, "auto") == 0)
					opts.color = COLOR_AUTO;
				else if (strcmp(color, "always") == 0)
					opts.color = COLOR_ALWAYS;
				else if (strcmp(color, "never") == 0)
					opts.color = COLOR_NEVER;
				else
					bad_arg("color", optarg, "auto, always or never is expected");
				break;
			case OPT_RESUME:
				opts.resume = (int) parse_int("resume", optarg, 0, 10000);
				break;
			case OPT_COUNT:
				opts.count = parse_int("count", optarg, 1, INT64_MAX / 2);
				break;
			case OPT_TLS:
				opts.tls = true;
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
			case OPT_VERBOSE:
				opts.verbose = true;
				break;
			case OPT_HELP:
				usage(stdout);
				exit(TAIL_EXIT_OK);
			default:
				usage(stderr);
				exit(TAIL_EXIT_USAGE);
		}
	}
	if (optind < argc)
	{
		fprintf(stderr, "logagg-tail: unexpected argument \"%s\" (try --help)\n", argv[optind]);
		exit(TAIL_EXIT_USAGE);
	}
	if ((opts.cafile || opts.insecure) && !opts.tls)
	{
		fprintf(stderr, "logagg-tail: --cafile and --insecure need --tls\n");
		exit(TAIL_EXIT_USAGE);
	}
	if (opts.token == NULL)
	{
		const char *env = getenv("LOGAGG_TOKEN");

		if (env && env[0] != '\0')
			opts.token = env;
	}
	if (opts.token == NULL)
	{
		fprintf(stderr, "logagg-tail: a reader token is needed: set LOGAGG_TOKEN or give --token\n");
		exit(TAIL_EXIT_USAGE);
	}
	if (strpbrk(opts.token, "\r\n") != NULL)
		bad_arg("token", "...", "the token holds a line break");
}

/* Colour on a terminal that can show it, unless NO_COLOR is set. */
static bool
want_color(void)
{
	const char *term = getenv("TERM");
	const char *no_color = getenv("NO_COLOR");

	if (opts.json || opts.color == COLOR_NEVER)
		return false;
	if (opts.color == COLOR_ALWAYS)
		return true;
	return isatty(STDOUT_FILENO) && term && strcmp(term, "dumb") != 0 &&
		!(no_color && no_color[0] != '\0');
}

int
main(int argc, char **argv)
{
	struct sigaction sa;

	parse_args(argc, argv);
	tail.color = want_color();

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

	if (!tail_client_init())
		exit(TAIL_EXIT_FAILED);
	tail_client_start();
	lws_sul_schedule(tail.ctx, 0, &housekeeping_sul, housekeeping, HOUSEKEEPING_US);

	while (!tail.done)
	{
		if (lws_service(tail.ctx, 0) < 0)
		{
			tail_log("event loop failed");
			tail_finish(TAIL_EXIT_FAILED);
		}
		if (tail.stop_requested)
			tail_finish(TAIL_EXIT_OK);
	}

	/* timers must leave lws' lists before the context goes away */
	lws_sul_cancel(&housekeeping_sul);
	tail_client_cleanup();
	tail_output_cleanup();
	return tail.exit_code;
}
