/*
 * procwatch.c — find logagg's ingest worker and the checkpointer among the
 * postmaster's children through /proc, and read the worker's private
 * memory.  Needs no database connection, so it keeps working while the
 * server is in trouble, which is exactly when it matters.
 */
#include "procwatch.h"

#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ppid and state from /proc/PID/stat ("pid (comm) S ppid ..."). */
static int
read_stat(pid_t pid, pid_t *ppid, char *state)
{
	char		path[64],
				buf[1024];
	FILE	   *f;
	size_t		n;
	char	   *p;

	snprintf(path, sizeof(path), "/proc/%d/stat", (int) pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	/* comm may hold spaces and parentheses: the last ')' ends it */
	if ((p = strrchr(buf, ')')) == NULL)
		return -1;
	if (sscanf(p + 1, " %c %d", state, ppid) != 2)
		return -1;
	return 0;
}

int
proc_alive(pid_t pid)
{
	pid_t		ppid;
	char		state;

	return pid > 0 && read_stat(pid, &ppid, &state) == 0 && state != 'Z' && state != 'X';
}

static int
cmdline_has(pid_t pid, const char *what)
{
	char		path[64],
				buf[512];
	FILE	   *f;
	size_t		n;

	snprintf(path, sizeof(path), "/proc/%d/cmdline", (int) pid);
	if ((f = fopen(path, "r")) == NULL)
		return 0;
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	for (size_t i = 0; i < n; i++)
		if (buf[i] == '\0')
			buf[i] = ' ';
	buf[n] = '\0';
	return strstr(buf, what) != NULL;
}

void
proc_scan(const char *pgdata, ProcState *st)
{
	char		path[4096];
	FILE	   *f;
	DIR		   *d;
	struct dirent *e;
	int			pm = 0;

	memset(st, 0, sizeof(*st));
	snprintf(path, sizeof(path), "%s/postmaster.pid", pgdata);
	if ((f = fopen(path, "r")) == NULL)
		return;
	if (fscanf(f, "%d", &pm) != 1)
		pm = 0;
	fclose(f);
	if (!proc_alive(pm))
		return;
	st->postmaster = pm;
	if ((d = opendir("/proc")) == NULL)
		return;
	while ((e = readdir(d)) != NULL)
	{
		pid_t		pid,
					ppid;
		char		state;

		if (!isdigit((unsigned char) e->d_name[0]))
			continue;
		pid = atoi(e->d_name);
		if (read_stat(pid, &ppid, &state) != 0 || ppid != pm || state == 'Z')
			continue;
		if (cmdline_has(pid, "logagg ingest"))
			st->ingest = pid;
		else if (cmdline_has(pid, "checkpointer"))
			st->checkpointer = pid;
	}
	closedir(d);
}

long
proc_rss_anon_kb(pid_t pid)
{
	char		path[64],
				line[256];
	FILE	   *f;
	long		kb = -1;

	snprintf(path, sizeof(path), "/proc/%d/status", (int) pid);
	if ((f = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %ld", &kb) == 1)
			break;
	fclose(f);
	return kb;
}
