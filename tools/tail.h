/*-------------------------------------------------------------------------
 *
 * tail.h
 *	  Options and process-wide state shared by the logagg-tail modules.
 *
 * logagg-tail is single-threaded: everything runs from the libwebsockets
 * event loop (socket callbacks and lws_sul timers), like logagg-emit, so
 * plain globals are safe.
 *
 *-------------------------------------------------------------------------
 */
#ifndef TAIL_H
#define TAIL_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes, documented in README.md */
#define TAIL_EXIT_OK		0	/* stopped by SIGINT/SIGTERM, or --count reached */
#define TAIL_EXIT_FAILED	1	/* stdout closed, or the event loop failed */
#define TAIL_EXIT_USAGE		2	/* bad arguments, or the server rejected them (HTTP 400) */
#define TAIL_EXIT_AUTH		3	/* token refused (HTTP 401/403) */

typedef enum ColorMode
{
	COLOR_AUTO,
	COLOR_ALWAYS,
	COLOR_NEVER
} ColorMode;

typedef struct TailOptions
{
	const char *host;
	int			port;
	const char *token;			/* --token, else $LOGAGG_TOKEN */
	const char *source;
	const char *min_severity;
	const char *grep;
	const char *attrs;
	int			since;			/* -1: not given */
	int			resume;			/* records replayed after a reconnect */
	int64_t		count;			/* 0 = unlimited */
	ColorMode	color;
	bool		json;
	bool		tls;
	bool		insecure;
	const char *cafile;
	bool		quiet;
	bool		verbose;
} TailOptions;

typedef struct TailState
{
	struct lws_context *ctx;
	bool		color;			/* resolved from --color */
	int64_t		last_id;		/* newest record id printed, 0 = none yet */
	int64_t		printed;
	bool		resumed;		/* reconnected with a replay, no record yet */
	bool		done;			/* leave the event loop */
	int			exit_code;		/* set together with done */
	volatile sig_atomic_t stop_requested;
} TailState;

extern TailOptions opts;
extern TailState tail;

/* tail_main.c */
extern int64_t now_us(void);
extern void tail_log(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern void tail_debug(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern void tail_finish(int exit_code);

/* tail_client.c */
extern bool tail_client_init(void);
extern void tail_client_start(void);
extern void tail_client_cleanup(void);

/* tail_output.c */
extern void tail_handle_message(const char *data, size_t len);
extern void tail_output_cleanup(void);

#endif							/* TAIL_H */
