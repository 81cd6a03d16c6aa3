/*-------------------------------------------------------------------------
 *
 * detect.c
 *		Level, HTTP status and time read from a plain-text log line: what
 *		tail-style shippers send is a bare line in "log" or "message", and
 *		"2026-12-02T15:10:00Z ERROR payment failed status=502" must not be
 *		filed as noise.
 *
 * What it recognises (docs/shippers.md lists it with examples):
 *
 *   level, best kind first, the first of a kind in the line winning:
 *     1. key=value or JSON-ish: level=warn, lvl=E, severity: "error",
 *        "level":"error" (any case, a known level name)
 *     2. glog's line prefix: E1202 15:10:00.123456 ... (I, W, E, F)
 *     3. the syslog priority <PRI> at the start (its severity, PRI % 8)
 *     4. a level in brackets, any case: [WARN], [error] (nginx), [Info]
 *     5. a level word in capitals standing alone: ERROR, WARNING,
 *        ERROR:root: and " - ERROR - " (Python logging) ...
 *   status:
 *     1. status=502, status_code=502, http_status=502, "status":502
 *     2. an access log's status after the quoted request: "GET / HTTP/1.1" 502
 *     (100 to 599 only)
 *   time, at the start of the line (after a <PRI>, a syslog version, or an
 *   nginx access log's client, ident and user):
 *     RFC 3339 and its common variants (2026-12-02 15:10:00,123 of Python,
 *     2026/12/02 15:10:00 of nginx's error log), [02/Dec/2026:15:10:00 +0000]
 *     of access logs, syslog's Dec  2 15:10:00 and glog's 1202 15:10:00.123456
 *     (the year taken from the arrival time, the previous one when that
 *     would put the line more than a week ahead).  No zone means UTC.
 *
 * Bounded work: one pass over at most INGEST_DETECT_SCAN_BYTES of the line,
 * a fixed set of short keys and words compared at word starts, no regular
 * expressions and no backtracking.  Never raises an error.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/datetime.h"

#include "ingest/parse_int.h"

/* kinds of level evidence, best first */
typedef enum
{
	LV_KEY = 0,
	LV_GLOG,
	LV_PRI,
	LV_BRACKET,
	LV_WORD,
	LV_NONE
} LevelKind;

/* keys whose value is a level, and keys whose value is an HTTP status */
static const char *const level_keys[] = {
	"level", "lvl", "severity", "loglevel", "log.level", "levelname"
};
static const char *const status_keys[] = {
	"status", "status_code", "http_status", "statuscode", "http.status_code"
};

static const char *const month_names[] = {
	"Jan", "Feb", "Mar", "Apr", "May", "Jun",
	"Jul", "Aug", "Sep", "Oct", "Nov", "Dec"
};

#define IS_ALPHA(c) (((c) >= 'a' && (c) <= 'z') || ((c) >= 'A' && (c) <= 'Z'))
#define IS_UPPER(c) ((c) >= 'A' && (c) <= 'Z')
#define IS_WORDCH(c) (IS_ALPHA(c) || IS_DIGIT(c) || (c) == '_')

static bool
ndigits(const char *s, const char *end, int n, int *out)
{
	int			v = 0;

	if (end - s < n)
		return false;
	for (int i = 0; i < n; i++)
	{
		if (!IS_DIGIT(s[i]))
			return false;
		v = v * 10 + (s[i] - '0');
	}
	*out = v;
	return true;
}

/* The canonical level of the letters s..s+n (any case), or NULL. */
static const char *
level_word(const char *s, int n)
{
	return n > 0 && n < 16 ? logagg_normalize_level(s, n) : NULL;
}

/* A timestamp from its parts; false when they are no date. */
static bool
make_ts(int year, int mon, int day, int hour, int min, int sec, int64 usec,
		int offset_secs, TimestampTz *ts)
{
	if (year < 1 || year > 9999 || mon < 1 || mon > 12 || day < 1 ||
		day > day_tab[isleap(year)][mon - 1] || hour > 23 || min > 59 || sec > 60)
		return false;
	if (sec == 60)
	{
		sec = 59;
		usec = 999999;
	}
	*ts = ((int64) (date2j(year, mon, day) - POSTGRES_EPOCH_JDATE) * SECS_PER_DAY +
		   hour * 3600 + min * 60 + sec - offset_secs) * USECS_PER_SEC + usec;
	return true;
}

/* HH:MM:SS[.,fraction] at p; returns the end or NULL */
static const char *
clock_time(const char *p, const char *end, int *h, int *m, int *sec, int64 *usec)
{
	if (!ndigits(p, end, 2, h) || end - p < 8 || p[2] != ':' ||
		!ndigits(p + 3, end, 2, m) || p[5] != ':' || !ndigits(p + 6, end, 2, sec))
		return NULL;
	p += 8;
	*usec = 0;
	if (p + 1 < end && (*p == '.' || *p == ',') && IS_DIGIT(p[1]))
	{
		int64		scale = 100000;

		for (p++; p < end && IS_DIGIT(*p); p++)
		{
			*usec += (*p - '0') * scale;
			scale /= 10;
		}
	}
	return p;
}

/* Z, +HH:MM, +HHMM or nothing at p; returns the end */
static const char *
zone_offset(const char *p, const char *end, int *offset_secs)
{
	int			oh,
				om;

	*offset_secs = 0;
	if (p < end && (*p == 'Z' || *p == 'z'))
		return p + 1;
	if (p < end && (*p == '+' || *p == '-') && ndigits(p + 1, end, 2, &oh) && oh < 24)
	{
		int			sign = *p == '-' ? -1 : 1;

		if (end - p >= 6 && p[3] == ':' && ndigits(p + 4, end, 2, &om) && om < 60)
		{
			*offset_secs = sign * (oh * 3600 + om * 60);
			return p + 6;
		}
		if (ndigits(p + 3, end, 2, &om) && om < 60)
		{
			*offset_secs = sign * (oh * 3600 + om * 60);
			return p + 5;
		}
	}
	return p;
}

/* Does a timestamp end at p (end of line, or not in the middle of a word)? */
static bool
ts_ends(const char *p, const char *end)
{
	return p >= end || !IS_WORDCH(*p);
}

/* YYYY-MM-DD[T ]HH:MM:SS[.frac][zone], or with '/' (nginx's error log) */
static bool
iso_time(const char *p, const char *end, TimestampTz *ts)
{
	int			y,
				mo,
				d,
				h,
				mi,
				s,
				off;
	int64		us;
	char		sep;

	if (!ndigits(p, end, 4, &y) || end - p < 19)
		return false;
	sep = p[4];
	if ((sep != '-' && sep != '/') || !ndigits(p + 5, end, 2, &mo) || p[7] != sep ||
		!ndigits(p + 8, end, 2, &d) || (p[10] != 'T' && p[10] != ' ' && p[10] != 't'))
		return false;
	if ((p = clock_time(p + 11, end, &h, &mi, &s, &us)) == NULL)
		return false;
	p = zone_offset(p, end, &off);
	return ts_ends(p, end) && make_ts(y, mo, d, h, mi, s, us, off, ts);
}

static int
month_of(const char *p, const char *end)
{
	if (end - p < 3)
		return 0;
	for (int i = 0; i < 12; i++)
		if (memcmp(p, month_names[i], 3) == 0)
			return i + 1;
	return 0;
}

/*
 * A date without a year (syslog, glog): the arrival's year, or the one
 * before when that puts it more than a week after the arrival (a line of
 * Dec 31 read on Jan 1).
 */
static bool
yearless_time(int mo, int d, int h, int mi, int s, int64 us,
			  TimestampTz received_at, TimestampTz *ts)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(received_at, NULL, &tm, &fsec, NULL, NULL) != 0)
		return false;
	if (!make_ts(tm.tm_year, mo, d, h, mi, s, us, 0, ts))
		return false;
	if (*ts > received_at + 7 * USECS_PER_DAY)
		return make_ts(tm.tm_year - 1, mo, d, h, mi, s, us, 0, ts);
	return true;
}

/* syslog (RFC 3164): "Dec  2 15:10:00" */
static bool
syslog_time(const char *p, const char *end, TimestampTz received_at, TimestampTz *ts)
{
	int			mo = month_of(p, end),
				d,
				h,
				mi,
				s;
	int64		us;

	if (mo == 0 || end - p < 15 || p[3] != ' ')
		return false;
	p += 4;
	if (*p == ' ' && IS_DIGIT(p[1]))
		d = p[1] - '0';
	else if (!ndigits(p, end, 2, &d))
		return false;
	if (p[2] != ' ' || (p = clock_time(p + 3, end, &h, &mi, &s, &us)) == NULL ||
		!ts_ends(p, end))
		return false;
	return yearless_time(mo, d, h, mi, s, us, received_at, ts);
}

/* access logs: "[02/Dec/2026:15:10:00 +0000]" at p */
static bool
clf_time(const char *p, const char *end, TimestampTz *ts)
{
	int			d,
				mo,
				y,
				h,
				mi,
				s,
				off;
	int64		us;
	const char *q;

	if (end - p < 22 || *p != '[' || !ndigits(p + 1, end, 2, &d) || p[3] != '/' ||
		(mo = month_of(p + 4, end)) == 0 || p[7] != '/' || !ndigits(p + 8, end, 4, &y) ||
		p[12] != ':' || (q = clock_time(p + 13, end, &h, &mi, &s, &us)) == NULL)
		return false;
	if (q < end && *q == ' ')
		q = zone_offset(q + 1, end, &off);
	else
		off = 0;
	return q < end && *q == ']' && make_ts(y, mo, d, h, mi, s, us, off, ts);
}

/* glog: "E1202 15:10:00.123456 ..." -- its level and its time */
static bool
glog_prefix(const char *p, const char *end, TimestampTz received_at,
			const char **level, TimestampTz *ts, bool *has_ts)
{
	static const char *const names[] = {"info", "warn", "error", "fatal"};
	const char *letters = "IWEF";
	const char *l;
	int			mo,
				d,
				h,
				mi,
				s;
	int64		us;
	const char *q;

	if (end - p < 6 || *p == '\0' || (l = strchr(letters, *p)) == NULL ||
		!ndigits(p + 1, end, 2, &mo) ||
		!ndigits(p + 3, end, 2, &d) || p[5] != ' ' ||
		(q = clock_time(p + 6, end, &h, &mi, &s, &us)) == NULL || !ts_ends(q, end))
		return false;
	*level = logagg_normalize_level(names[l - letters], strlen(names[l - letters]));
	*has_ts = yearless_time(mo, d, h, mi, s, us, received_at, ts);
	return true;
}

/*
 * The start of the line: a <PRI> (its severity), a syslog version, then a
 * timestamp in one of the forms above, or glog's prefix.  p is the line's
 * start; the level found here is of kind LV_PRI or LV_GLOG.
 */
static void
line_start(const char *p, const char *end, TimestampTz received_at, DetectResult *out,
		   const char **level, LevelKind *kind)
{
	static const char *const syslog_names[] = {
		"emerg", "alert", "crit", "err", "warning", "notice", "info", "debug"
	};
	const char *q;

	/* <PRI>: facility * 8 + severity, 0 .. 191 */
	if (p < end && *p == '<')
	{
		int			pri = 0;

		for (q = p + 1; q < end && q < p + 4 && IS_DIGIT(*q); q++)
			pri = pri * 10 + (*q - '0');
		if (q > p + 1 && q < end && *q == '>' && pri <= 191)
		{
			const char *name = syslog_names[pri % 8];

			*level = logagg_normalize_level(name, strlen(name));
			*kind = LV_PRI;
			p = q + 1;
			/* RFC 5424: a version, then the time */
			if (end - p >= 2 && IS_DIGIT(p[0]) && p[1] == ' ')
				p += 2;
		}
	}
	if (iso_time(p, end, &out->ts) || syslog_time(p, end, received_at, &out->ts))
	{
		out->has_ts = true;
		return;
	}
	if (*kind == LV_NONE &&
		glog_prefix(p, end, received_at, level, &out->ts, &out->has_ts))
	{
		*kind = LV_GLOG;
		return;
	}
	/* an access log: client, ident and user, then [time] */
	for (int field = 0; field < 3; field++)
	{
		while (p < end && *p != ' ')
			p++;
		if (p >= end || *p != ' ')
			return;
		p++;
	}
	if (clf_time(p, end, &out->ts))
		out->has_ts = true;
}

/*
 * The key at p (start of a word, maybe after a quote) is one of KEYS,
 * followed by an optional quote, then '=' or ':', optional blanks and an
 * optional quote: returns where its value starts, else NULL.
 */
static const char *
key_value(const char *p, const char *end, const char *const *keys, int nkeys)
{
	for (int i = 0; i < nkeys; i++)
	{
		int			n = strlen(keys[i]);
		const char *q = p + n;

		if (end - p <= n || pg_strncasecmp(p, keys[i], n) != 0)
			continue;
		if (q < end && *q == '"')
			q++;
		if (q >= end || (*q != '=' && *q != ':'))
			continue;
		q++;
		while (q < end && *q == ' ')
			q++;
		if (q < end && (*q == '"' || *q == '\''))
			q++;
		return q;
	}
	return NULL;
}

/* A status of 100 to 599: three digits at p, not followed by another one. */
static bool
http_status(const char *p, const char *end, int *status)
{
	return ndigits(p, end, 3, status) && (p + 3 >= end || !IS_DIGIT(p[3])) &&
		*status >= 100 && *status <= 599;
}

/*
 * Read the level, HTTP status and time of a plain-text line (see the
 * top of this file).  len may exceed INGEST_DETECT_SCAN_BYTES (only that
 * much is read).
 */
void
ingest_detect_line(const char *line, int len, TimestampTz received_at, DetectResult *out)
{
	const char *end = line + Min(len, INGEST_DETECT_SCAN_BYTES);
	const char *level = NULL;
	LevelKind	kind = LV_NONE;
	bool		status_by_key = false;

	memset(out, 0, sizeof(*out));
	line_start(line, end, received_at, out, &level, &kind);

	for (const char *p = line; p < end; p++)
	{
		const char *v;
		int			n;
		char		c;

		/* only at the start of a word */
		if (!IS_ALPHA(*p) || (p > line && (IS_WORDCH(p[-1]) || p[-1] == '.')))
		{
			/* access log: the status after the quoted request */
			if (*p == '"' && !out->has_status && p + 1 < end && p[1] == ' ' &&
				http_status(p + 2, end, &out->status) &&
				(p + 5 >= end || p[5] == ' '))
				out->has_status = true;
			continue;
		}
		/* the keys start with l, s or h: most words are none */
		c = pg_ascii_tolower((unsigned char) *p);
		if (kind > LV_KEY && (c == 'l' || c == 's') &&
			(v = key_value(p, end, level_keys, lengthof(level_keys))) != NULL)
		{
			const char *w;

			for (n = 0; v + n < end && IS_ALPHA(v[n]); n++)
				;
			if ((w = level_word(v, n)) != NULL)
			{
				level = w;
				kind = LV_KEY;
			}
		}
		if (!status_by_key && (c == 's' || c == 'h') &&
			(v = key_value(p, end, status_keys, lengthof(status_keys))) != NULL &&
			http_status(v, end, &out->status))
		{
			out->has_status = true;
			status_by_key = true;
		}
		for (n = 0; p + n < end && IS_WORDCH(p[n]); n++)
			;
		if (kind > LV_BRACKET && p > line && p[-1] == '[' && p + n < end && p[n] == ']' &&
			level_word(p, n) != NULL)
		{
			level = level_word(p, n);
			kind = LV_BRACKET;
		}
		else if (kind > LV_WORD && n >= 3)
		{
			bool		upper = true;

			for (int i = 0; i < n && upper; i++)
				upper = IS_UPPER(p[i]);
			if (upper && level_word(p, n) != NULL)
			{
				level = level_word(p, n);
				kind = LV_WORD;
			}
		}
		p += n - 1;				/* the rest of the word */
	}
	out->level = kind == LV_NONE ? NULL : level;
}
