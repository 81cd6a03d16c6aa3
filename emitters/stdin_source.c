/*-------------------------------------------------------------------------
 *
 * stdin_source.c
 *	  The --stdin shipper: one record per input line.
 *
 * A line that is a valid JSON object is shipped as it is, except that a
 * top-level "seq" of its own is dropped (the server must see only the
 * emitter's numbering); with --stream our "seq" is put first.  Any other non-blank line is
 * shipped as {"message": LINE} (plus "service" when --service is given).
 *
 * stdin is never read when it would block: poll() with a zero timeout
 * says whether read() will return at once.  That works for pipes, files
 * and terminals without changing the descriptor's flags (which are shared
 * with whoever else holds it).  Input is only consumed while the window
 * has room, so a slow server throttles the reader instead of growing
 * memory.
 *
 *-------------------------------------------------------------------------
 */
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "emit.h"
#include "jsonutil.h"
#include "stdin_source.h"
#include "window.h"

#define READ_CHUNK	(256 * 1024)

static StrBuf inbuf;			/* unconsumed input */
static size_t inpos;			/* start of unconsumed data in inbuf */
static bool at_eof;
static StrBuf service_json;		/* "service":"..." member, or empty */
static StrBuf scratch;

/* members of the line's object, to drop a "seq" of its own */
typedef struct MemberSpan
{
	size_t		start;
	size_t		end;
	bool		is_seq;
} MemberSpan;

static MemberSpan *spans;
static int	nspans;
static int	maxspans;
static bool has_seq;

void
stdin_source_init(void)
{
	if (opts.service)
	{
		strbuf_append(&service_json, ",\"service\":", 11);
		json_append_string(&service_json, opts.service, strlen(opts.service));
	}
	else
		strbuf_append(&service_json, "", 0);
}

void
stdin_source_cleanup(void)
{
	strbuf_free(&inbuf);
	strbuf_free(&service_json);
	strbuf_free(&scratch);
	free(spans);
	spans = NULL;
}

static void
member_cb(void *arg, const char *key, size_t keylen, size_t member_start,
		  const char *value, size_t value_len)
{
	const char *base = arg;

	if (nspans == maxspans)
	{
		maxspans = maxspans ? maxspans * 2 : 32;
		spans = realloc(spans, sizeof(MemberSpan) * (size_t) maxspans);
		if (spans == NULL)
		{
			fprintf(stderr, "logagg-emit: out of memory\n");
			exit(EMIT_EXIT_USAGE);
		}
	}
	spans[nspans].start = member_start;
	spans[nspans].end = (size_t) (value + value_len - base);
	spans[nspans].is_seq = (keylen == 3 && memcmp(key, "seq", 3) == 0);
	if (spans[nspans].is_seq)
		has_seq = true;
	nspans++;
}

/* Is the whole (trimmed) line one JSON object?  Fills spans. */
static bool
line_is_object(const char *line, size_t len)
{
	long		used;

	nspans = 0;
	has_seq = false;
	if (len == 0 || line[0] != '{')
		return false;
	used = json_scan_object(line, len, member_cb, (void *) line);
	return used == (long) len;
}

static void
emit_line(const char *line, size_t len)
{
	EmitRecord *r;
	char		seqbuf[40] = "";
	size_t		seqlen = 0;

	/* trim surrounding whitespace (and the \r of CRLF input) */
	while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' ' ||
					   line[len - 1] == '\t'))
		len--;
	while (len > 0 && (line[0] == ' ' || line[0] == '\t'))
		line++, len--;

	if (opts.stream)
		seqlen = (size_t) snprintf(seqbuf, sizeof(seqbuf), "\"seq\":%lld",
								   (long long) win.next_id);

	scratch.len = 0;
	if (line_is_object(line, len))
	{
		if (has_seq)
		{
			/*
			 * Rebuild from the members, leaving out the line's own seq: the
			 * server acks records carrying a seq by seq, so one we did not
			 * assign would break the accounting (without --stream the
			 * records are acked by count and must carry no seq at all).
			 */
			bool		first = true;

			strbuf_append(&scratch, "{", 1);
			if (seqlen)
			{
				strbuf_append(&scratch, seqbuf, seqlen);
				first = false;
			}
			for (int i = 0; i < nspans; i++)
			{
				if (spans[i].is_seq)
					continue;
				if (!first)
					strbuf_append(&scratch, ",", 1);
				strbuf_append(&scratch, line + spans[i].start,
							  spans[i].end - spans[i].start);
				first = false;
			}
			strbuf_append(&scratch, "}", 1);
		}
		else if (seqlen)
		{
			/* {"seq":N, + the rest of the object after its '{' */
			strbuf_append(&scratch, "{", 1);
			strbuf_append(&scratch, seqbuf, seqlen);
			if (nspans > 0)
				strbuf_append(&scratch, ",", 1);
			strbuf_append(&scratch, line + 1, len - 1);
		}
		else
			strbuf_append(&scratch, line, len);
	}
	else
	{
		strbuf_append(&scratch, "{", 1);
		if (seqlen)
		{
			strbuf_append(&scratch, seqbuf, seqlen);
			strbuf_append(&scratch, ",", 1);
		}
		strbuf_append(&scratch, "\"message\":", 10);
		json_append_string(&scratch, line, len);
		strbuf_append(&scratch, service_json.data, service_json.len);
		strbuf_append(&scratch, "}", 1);
	}

	r = window_reserve(scratch.len);
	memcpy(r->text, scratch.data, scratch.len);
	r->len = scratch.len;
	r->text[r->len] = '\0';
	window_commit();
}

/* Is a line blank (only whitespace)? */
static bool
is_blank(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] != ' ' && s[i] != '\t' && s[i] != '\r')
			return false;
	return true;
}

/*
 * Turn complete buffered lines into records, at most max.  At EOF the last
 * line counts even without a newline.
 */
static int64_t
consume_lines(int64_t max)
{
	int64_t		n = 0;

	while (n < max && inpos < inbuf.len)
	{
		char	   *start = inbuf.data + inpos;
		size_t		avail = inbuf.len - inpos;
		char	   *nl = memchr(start, '\n', avail);
		size_t		linelen;

		if (nl == NULL)
		{
			if (!at_eof)
				break;
			linelen = avail;
			inpos = inbuf.len;
		}
		else
		{
			linelen = (size_t) (nl - start);
			inpos += linelen + 1;
		}
		if (is_blank(start, linelen))
			continue;
		emit_line(start, linelen);
		n++;
	}
	return n;
}

int64_t
stdin_source_fill(int64_t max, StdinState *state)
{
	int64_t		n = consume_lines(max);

	while (n < max && !at_eof)
	{
		struct pollfd pfd = {.fd = STDIN_FILENO, .events = POLLIN};
		ssize_t		got;

		if (poll(&pfd, 1, 0) <= 0)
		{
			*state = STDIN_IDLE;
			return n;
		}

		/* compact, then read a chunk */
		if (inpos > 0)
		{
			memmove(inbuf.data, inbuf.data + inpos, inbuf.len - inpos);
			inbuf.len -= inpos;
			inpos = 0;
		}
		strbuf_reserve(&inbuf, READ_CHUNK);
		got = read(STDIN_FILENO, inbuf.data + inbuf.len, READ_CHUNK);
		if (got < 0)
		{
			if (errno == EINTR || errno == EAGAIN)
			{
				*state = STDIN_IDLE;
				return n;
			}
			emit_log("reading stdin: %s", strerror(errno));
			at_eof = true;
		}
		else if (got == 0)
			at_eof = true;
		else
			inbuf.len += (size_t) got;
		n += consume_lines(max - n);
	}

	if (at_eof && inpos >= inbuf.len)
		*state = STDIN_EOF;
	else
		*state = STDIN_MORE;
	return n;
}
