/*-------------------------------------------------------------------------
 *
 * tail_output.c
 *	  What logagg-tail prints for each server message: records (one line
 *	  each, human or --json), {"dropped": N} and {"error": ...} notices.
 *
 * Log text is hostile input: whatever a record's message holds, the line
 * printed for it must not move the cursor, set colours, change the
 * window title or reorder text.  So the human format escapes every C0
 * and C1 control character, DEL, bidirectional-text controls and invalid
 * UTF-8, and --json re-escapes the few characters JSON allows raw (C1
 * and bidi controls), keeping the text valid JSON that decodes to the
 * same values.
 *
 * After a reconnect the server replays the last --resume records; the ids
 * printed recently are remembered so that none is printed twice.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonutil.h"
#include "tail.h"

#define COLOR_RED		"\033[31m"
#define COLOR_YELLOW	"\033[33m"
#define COLOR_RESET		"\033[0m"

/* The members of one server message that logagg-tail looks at. */
typedef struct Frame
{
	bool		has_id,
				has_dropped;
	int64_t		id,
				dropped;
	const char *ts,
			   *source,
			   *severity,
			   *status,
			   *message,
			   *error;
	size_t		ts_len,
				source_len,
				severity_len,
				status_len,
				message_len,
				error_len;
} Frame;

static StrBuf line;				/* the output line being built */
static StrBuf text;				/* one decoded JSON string */

/* Ids printed lately, oldest overwritten first: see seen_before(). */
static int64_t *recent;
static int	recent_cap;
static int	recent_len;
static int	recent_next;

static void
frame_member(void *arg, const char *key, size_t keylen, size_t member_start,
			 const char *value, size_t value_len)
{
	Frame	   *f = arg;

	(void) member_start;
#define KEY_IS(k) (keylen == sizeof(k) - 1 && memcmp(key, k, keylen) == 0)
#define TAKE(field) (f->field = value, f->field##_len = value_len)
	if (KEY_IS("id"))
		f->has_id = json_value_int64(value, value_len, &f->id);
	else if (KEY_IS("dropped"))
		f->has_dropped = json_value_int64(value, value_len, &f->dropped);
	else if (KEY_IS("ts"))
		TAKE(ts);
	else if (KEY_IS("source"))
		TAKE(source);
	else if (KEY_IS("severity"))
		TAKE(severity);
	else if (KEY_IS("status"))
		TAKE(status);
	else if (KEY_IS("message"))
		TAKE(message);
	else if (KEY_IS("error"))
		TAKE(error);
#undef TAKE
#undef KEY_IS
}

/* ---- escaping ---- */

/*
 * Decode the UTF-8 sequence at s (n bytes left): its length (1-4) and code
 * point, or 0 when it is not valid UTF-8 (overlong, surrogate, > U+10FFFF).
 */
static int
utf8_decode(const unsigned char *s, size_t n, unsigned int *cp)
{
	unsigned char c = s[0];
	int			len;
	unsigned int min;

	if (c < 0x80)
		return (*cp = c), 1;
	if (c >= 0xC2 && c <= 0xDF)
		len = 2, *cp = c & 0x1F, min = 0x80;
	else if (c >= 0xE0 && c <= 0xEF)
		len = 3, *cp = c & 0x0F, min = 0x800;
	else if (c >= 0xF0 && c <= 0xF4)
		len = 4, *cp = c & 0x07, min = 0x10000;
	else
		return 0;
	if (n < (size_t) len)
		return 0;
	for (int i = 1; i < len; i++)
	{
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		*cp = (*cp << 6) | (s[i] & 0x3F);
	}
	if (*cp < min || *cp > 0x10FFFF || (*cp >= 0xD800 && *cp <= 0xDFFF))
		return 0;
	return len;
}

/*
 * Code points above U+007F that a terminal may act on: the C1 controls
 * (U+009B is CSI on some terminals) and the invisible characters that
 * reorder or split displayed text.
 */
static bool
is_unsafe_codepoint(unsigned int cp)
{
	return (cp >= 0x80 && cp <= 0x9F) ||
		cp == 0x200E || cp == 0x200F ||
		(cp >= 0x2028 && cp <= 0x202E) ||
		(cp >= 0x2066 && cp <= 0x2069);
}

/*
 * Append text for a terminal: printable characters as they are, every
 * control character as a visible escape (\n, \t, \e, \xHH, \u{HHHH}),
 * backslash doubled so that the escapes are unambiguous.
 */
static void
append_safe_text(StrBuf *sb, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;
	char		esc[16];

	while (i < n)
	{
		unsigned char c = p[i];
		unsigned int cp;
		int			l;

		if (c >= 0x20 && c < 0x7F && c != '\\')
		{
			size_t		j = i + 1;

			while (j < n && p[j] >= 0x20 && p[j] < 0x7F && p[j] != '\\')
				j++;
			strbuf_append(sb, s + i, j - i);
			i = j;
			continue;
		}
		if (c < 0x80)
		{
			switch (c)
			{
				case '\\':
					strbuf_append(sb, "\\\\", 2);
					break;
				case '\n':
					strbuf_append(sb, "\\n", 2);
					break;
				case '\r':
					strbuf_append(sb, "\\r", 2);
					break;
				case '\t':
					strbuf_append(sb, "\\t", 2);
					break;
				case 0x1B:
					strbuf_append(sb, "\\e", 2);
					break;
				default:
					snprintf(esc, sizeof(esc), "\\x%02X", c);
					strbuf_append(sb, esc, 4);
					break;
			}
			i++;
			continue;
		}
		l = utf8_decode(p + i, n - i, &cp);
		if (l == 0)
		{
			snprintf(esc, sizeof(esc), "\\x%02X", c);
			strbuf_append(sb, esc, 4);
			i++;
		}
		else if (is_unsafe_codepoint(cp))
		{
			snprintf(esc, sizeof(esc), "\\u{%04X}", cp);
			strbuf_append(sb, esc, strlen(esc));
			i += (size_t) l;
		}
		else
		{
			strbuf_append(sb, s + i, (size_t) l);
			i += (size_t) l;
		}
	}
}

/*
 * Append a JSON value for a terminal: a string decoded then escaped, any
 * other value (number, null) as its text, escaped all the same.
 */
static void
append_safe_value(StrBuf *sb, const char *v, size_t len)
{
	if (len > 0 && v[0] == '"')
	{
		text.len = 0;
		if (json_decode_string(v, len, &text))
		{
			append_safe_text(sb, text.data ? text.data : "", text.len);
			return;
		}
	}
	append_safe_text(sb, v, len);
}

/*
 * The server's JSON text made safe for a terminal and kept one line: the
 * validator accepted it, so raw bytes below 0x20 are whitespace between
 * tokens (printed as spaces), and C1 or bidi controls can only be inside
 * strings, where \uXXXX means the same.
 */
static void
append_safe_json(StrBuf *sb, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;
	char		esc[8];

	while (i < n)
	{
		size_t		j = i;
		unsigned int cp;
		int			l;

		while (j < n && p[j] >= 0x20 && p[j] < 0x80)
			j++;
		strbuf_append(sb, s + i, j - i);
		i = j;
		if (i >= n)
			break;
		if (p[i] < 0x20)
		{
			strbuf_append(sb, " ", 1);
			i++;
			continue;
		}
		l = utf8_decode(p + i, n - i, &cp);
		if (l == 0)
			l = 1, cp = 0xFFFD;	/* cannot happen: validated */
		if (is_unsafe_codepoint(cp) || cp == 0xFFFD)
		{
			snprintf(esc, sizeof(esc), "\\u%04X", cp);
			strbuf_append(sb, esc, 6);
		}
		else
			strbuf_append(sb, s + i, (size_t) l);
		i += (size_t) l;
	}
}

/* ---- duplicates after a reconnect ---- */

static bool
seen_before(int64_t id)
{
	for (int i = 0; i < recent_len; i++)
		if (recent[i] == id)
			return true;
	return false;
}

static void
remember(int64_t id)
{
	if (recent == NULL)
	{
		recent_cap = opts.resume + 1024;
		recent = malloc(sizeof(int64_t) * (size_t) recent_cap);
		if (recent == NULL)
		{
			fputs("logagg-tail: out of memory\n", stderr);
			exit(TAIL_EXIT_FAILED);
		}
	}
	recent[recent_next] = id;
	recent_next = (recent_next + 1) % recent_cap;
	if (recent_len < recent_cap)
		recent_len++;
}

/* ---- output ---- */

static void
write_line(void)
{
	strbuf_append(&line, "\n", 1);
	if (fwrite(line.data, 1, line.len, stdout) != line.len || fflush(stdout) != 0)
	{
		/* a reader that went away (| head) is a normal end */
		if (errno != EPIPE)
			tail_log("cannot write to standard output: %s", strerror(errno));
		tail_finish(errno == EPIPE ? TAIL_EXIT_OK : TAIL_EXIT_FAILED);
	}
}

static bool
is_null(const char *v, size_t len)
{
	return len == 4 && memcmp(v, "null", 4) == 0;
}

static void
print_record(const Frame *f, const char *raw, size_t raw_len)
{
	const char *color = NULL;

	line.len = 0;
	if (opts.json)
	{
		append_safe_json(&line, raw, raw_len);
		write_line();
		return;
	}
	if (tail.color && f->severity)
	{
		text.len = 0;
		if (json_decode_string(f->severity, f->severity_len, &text) && text.data)
		{
			if (strcmp(text.data, "critical") == 0)
				color = COLOR_RED;
			else if (strcmp(text.data, "high") == 0)
				color = COLOR_YELLOW;
		}
	}
	if (color)
		strbuf_append(&line, color, strlen(color));
	append_safe_value(&line, f->ts ? f->ts : "-", f->ts ? f->ts_len : 1);
	strbuf_append(&line, " ", 1);
	append_safe_value(&line, f->source ? f->source : "-", f->source ? f->source_len : 1);
	strbuf_append(&line, " ", 1);
	append_safe_value(&line, f->severity ? f->severity : "-", f->severity ? f->severity_len : 1);
	if (f->status && !is_null(f->status, f->status_len))
	{
		strbuf_append(&line, " ", 1);
		append_safe_value(&line, f->status, f->status_len);
	}
	strbuf_append(&line, " ", 1);
	if (f->message && !is_null(f->message, f->message_len))
		append_safe_value(&line, f->message, f->message_len);
	if (color)
		strbuf_append(&line, COLOR_RESET, strlen(COLOR_RESET));
	write_line();
}

static void
handle_frame(const Frame *f, const char *raw, size_t raw_len)
{
	if (f->has_dropped)
	{
		/* a negative count: the server lost track of how many */
		if (f->dropped < 0)
			tail_log("the server skipped records (how many is unknown): this client did not read fast enough");
		else
			tail_log("the server skipped %lld records: this client did not read fast enough",
					 (long long) f->dropped);
		return;
	}
	if (f->error)
	{
		line.len = 0;
		append_safe_value(&line, f->error, f->error_len);
		tail_log("server error: %s", line.data);
		return;
	}
	if (!f->has_id)
	{
		tail_debug("ignoring a message that is neither a record nor a notice");
		return;
	}

	if (tail.resumed)
	{
		/*
		 * The first record after a reconnect: when even the oldest record
		 * replayed is newer than all we printed, more than --resume
		 * records arrived while we were away.
		 */
		tail.resumed = false;
		if (tail.last_id > 0 && f->id > tail.last_id)
			tail_log("more than %d records arrived while disconnected: some are not shown",
					 opts.resume);
	}

	/*
	 * Ids grow with commit order, so a record newer than any printed is
	 * new; an older one is new unless it was printed lately (the replay
	 * after a reconnect).  Out-of-order commits still get printed.
	 */
	if (f->id <= tail.last_id && seen_before(f->id))
		return;
	remember(f->id);
	if (f->id > tail.last_id)
		tail.last_id = f->id;
	print_record(f, raw, raw_len);
	tail.printed++;
	if (opts.count > 0 && tail.printed >= opts.count)
		tail_finish(TAIL_EXIT_OK);
}

void
tail_handle_message(const char *data, size_t len)
{
	const char *p = data;
	const char *end = data + len;

	/* one object per frame; several separated by whitespace also work */
	while (p < end && !tail.done)
	{
		Frame		f;
		long		used;

		while (p < end && (*p == ' ' || *p == '\n' || *p == '\r' || *p == '\t'))
			p++;
		if (p >= end)
			break;
		memset(&f, 0, sizeof(f));
		used = json_scan_object(p, (size_t) (end - p), frame_member, &f);
		if (used < 0)
		{
			line.len = 0;
			append_safe_text(&line, p, (end - p) > 200 ? 200 : (size_t) (end - p));
			tail_log("unparsable message from the server: %s", line.data);
			return;
		}
		handle_frame(&f, p, (size_t) used);
		p += used;
	}
}

void
tail_output_cleanup(void)
{
	strbuf_free(&line);
	strbuf_free(&text);
	free(recent);
	recent = NULL;
}
