/*-------------------------------------------------------------------------
 *
 * emit.h
 *	  Options and process-wide state shared by the logagg-emit modules.
 *
 * logagg-emit is single-threaded: everything runs from the libwebsockets
 * event loop (socket callbacks and lws_sul timers), so plain globals are
 * safe and keep the modules' interfaces small.
 *
 *-------------------------------------------------------------------------
 */
#ifndef EMIT_H
#define EMIT_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Exit codes, documented in README.md */
#define EMIT_EXIT_OK		0	/* every record sent was acked */
#define EMIT_EXIT_INCOMPLETE 1	/* unacked or rejected records, or gave up */
#define EMIT_EXIT_AUTH		2	/* server refused the token (HTTP 401/403) */
#define EMIT_EXIT_USAGE		3	/* bad arguments or setup failure */

typedef struct EmitOptions
{
	const char *url;
	const char *token;
	const char *service;		/* NULL: profile default (stdin: none) */
	const char *stream;			/* NULL: no durable stream */
	const char *cafile;
	char		profile;		/* 'a', 'b' or 'c' */
	double		rate;			/* records/s, 0 = as fast as acks allow */
	int64_t		count;			/* 0 = unlimited */
	double		duration;		/* seconds, 0 = unlimited */
	int			batch;			/* records per frame */
	int			max_inflight;	/* window of unsettled records */
	size_t		max_frame_bytes;	/* soft cap on one frame's payload */
	double		give_up_after;	/* seconds without a connection */
	double		drain_timeout;	/* seconds without ack progress at the end */
	uint64_t	seed;
	bool		seed_given;
	bool		use_stdin;
	bool		quiet;
	bool		verbose;
	bool		insecure;
} EmitOptions;

typedef struct EmitState
{
	struct lws_context *ctx;
	int64_t		start_us;		/* monotonic start of the run */
	int64_t		last_progress_us;	/* last time something got settled */
	bool		have_base;		/* record ids are assigned (stream: resumed) */
	bool		done;			/* leave the event loop */
	int			exit_code;		/* set together with done */
	volatile sig_atomic_t stop_requested;	/* SIGINT/SIGTERM count */
} EmitState;

extern EmitOptions opts;
extern EmitState emit;

/* emit_main.c */
extern int64_t now_us(void);
extern void emit_log(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern void emit_debug(const char *fmt,...) __attribute__((format(printf, 1, 2)));
extern void emit_finish(int exit_code);
extern void emit_check_done(void);

#endif							/* EMIT_H */
