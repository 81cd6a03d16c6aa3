/*
 * procwatch.h — the process oracles of logagg-fuzz, read from /proc: the
 * ingest worker's PID (it must never change), the checkpointer's PID (it
 * changes when the postmaster reinitialises after a backend crash), and the
 * worker's private memory (RssAnon).
 */
#ifndef FUZZ_PROCWATCH_H
#define FUZZ_PROCWATCH_H

#include <sys/types.h>

typedef struct ProcState
{
	pid_t		postmaster;		/* 0 when postmaster.pid is unreadable or dead */
	pid_t		ingest;			/* 0 when not running */
	pid_t		checkpointer;
} ProcState;

/* Read pgdata/postmaster.pid and find the postmaster's children. */
void		proc_scan(const char *pgdata, ProcState *st);

/* True when pid is still a live process (not gone, not a zombie). */
int			proc_alive(pid_t pid);

/* RssAnon of pid in kB, or -1. */
long		proc_rss_anon_kb(pid_t pid);

#endif
