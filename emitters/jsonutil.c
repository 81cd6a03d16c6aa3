/*-------------------------------------------------------------------------
 *
 * jsonutil.c
 *	  JSON escaping and a small recursive-descent validator (RFC 8259).
 *
 * The validator also checks UTF-8, because a --stdin line with broken
 * UTF-8 that we forwarded "as is" would be rejected by the server: such
 * lines are shipped as escaped text instead.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "jsonutil.h"

/*
 * Shared with tools/logagg-tail, which builds this file too: each program
 * says which exit status means "setup failure" (logagg-emit: 3).
 */
#ifndef JSONUTIL_OOM_EXIT
#define JSONUTIL_OOM_EXIT 3
#endif

#define JSON_MAX_DEPTH 128

void
strbuf_reserve(StrBuf *sb, size_t more)
{
	if (sb->len + more + 1 > sb->cap)
	{
		size_t		cap = sb->cap ? sb->cap : 1024;

		while (cap < sb->len + more + 1)
			cap *= 2;
		sb->data = realloc(sb->data, cap);
		if (sb->data == NULL)
		{
			fputs("out of memory\n", stderr);
			exit(JSONUTIL_OOM_EXIT);
		}
		sb->cap = cap;
	}
}

void
strbuf_append(StrBuf *sb, const char *s, size_t n)
{
	strbuf_reserve(sb, n);
	memcpy(sb->data + sb->len, s, n);
	sb->len += n;
	sb->data[sb->len] = '\0';
}

void
strbuf_free(StrBuf *sb)
{
	free(sb->data);
	sb->data = NULL;
	sb->len = sb->cap = 0;
}

/* Append s percent-encoded (RFC 3986 unreserved characters kept). */
void
strbuf_append_urlencoded(StrBuf *sb, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";

	for (; *s; s++)
	{
		unsigned char c = (unsigned char) *s;

		if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
			(c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.' ||
			c == '~')
			strbuf_append(sb, (const char *) &c, 1);
		else
		{
			char		esc[3] = {'%', hex[c >> 4], hex[c & 15]};

			strbuf_append(sb, esc, 3);
		}
	}
}

/*
 * Length of the valid UTF-8 sequence at s (1-4), or 0 if invalid.
 * Rejects overlong forms, surrogates and code points above U+10FFFF.
 */
static int
utf8_seqlen(const unsigned char *s, size_t n)
{
	unsigned char c = s[0];

	if (c < 0x80)
		return 1;
	if (c >= 0xC2 && c <= 0xDF)
		return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
	if (c >= 0xE0 && c <= 0xEF)
	{
		if (n < 3 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80)
			return 0;
		if (c == 0xE0 && s[1] < 0xA0)
			return 0;
		if (c == 0xED && s[1] >= 0xA0)
			return 0;
		return 3;
	}
	if (c >= 0xF0 && c <= 0xF4)
	{
		if (n < 4 || (s[1] & 0xC0) != 0x80 || (s[2] & 0xC0) != 0x80 ||
			(s[3] & 0xC0) != 0x80)
			return 0;
		if (c == 0xF0 && s[1] < 0x90)
			return 0;
		if (c == 0xF4 && s[1] >= 0x90)
			return 0;
		return 4;
	}
	return 0;
}

void
json_append_string(StrBuf *sb, const char *s, size_t n)
{
	const unsigned char *p = (const unsigned char *) s;
	size_t		i = 0;

	/* worst case: every byte becomes \u00XX (6) or U+FFFD (3) */
	strbuf_reserve(sb, n * 6 + 2);
	sb->data[sb->len++] = '"';
	while (i < n)
	{
		unsigned char c = p[i];
		char	   *o = sb->data + sb->len;

		if (c >= 0x20 && c < 0x80 && c != '"' && c != '\\')
		{
			*o = (char) c;
			sb->len++;
			i++;
			continue;
		}
		if (c < 0x80)
		{
			switch (c)
			{
				case '"':
					memcpy(o, "\\\"", 2), sb->len += 2;
					break;
				case '\\':
					memcpy(o, "\\\\", 2), sb->len += 2;
					break;
				case '\n':
					memcpy(o, "\\n", 2), sb->len += 2;
					break;
				case '\r':
					memcpy(o, "\\r", 2), sb->len += 2;
					break;
				case '\t':
					memcpy(o, "\\t", 2), sb->len += 2;
					break;
				default:
					snprintf(o, 7, "\\u%04x", c);
					sb->len += 6;
					break;
			}
			i++;
			continue;
		}
		{
			int			l = utf8_seqlen(p + i, n - i);

			if (l == 0)
			{
				memcpy(o, "\xEF\xBF\xBD", 3);
				sb->len += 3;
				i++;
			}
			else
			{
				memcpy(o, p + i, (size_t) l);
				sb->len += (size_t) l;
				i += (size_t) l;
			}
		}
	}
	sb->data[sb->len++] = '"';
	sb->data[sb->len] = '\0';
}

/* Append code point cp (<= U+10FFFF, not a surrogate) as UTF-8. */
static void
append_utf8(StrBuf *sb, unsigned int cp)
{
	char		b[4];
	size_t		n;

	if (cp < 0x80)
		b[0] = (char) cp, n = 1;
	else if (cp < 0x800)
		b[0] = (char) (0xC0 | (cp >> 6)), b[1] = (char) (0x80 | (cp & 0x3F)), n = 2;
	else if (cp < 0x10000)
		b[0] = (char) (0xE0 | (cp >> 12)), b[1] = (char) (0x80 | ((cp >> 6) & 0x3F)),
			b[2] = (char) (0x80 | (cp & 0x3F)), n = 3;
	else
		b[0] = (char) (0xF0 | (cp >> 18)), b[1] = (char) (0x80 | ((cp >> 12) & 0x3F)),
			b[2] = (char) (0x80 | ((cp >> 6) & 0x3F)), b[3] = (char) (0x80 | (cp & 0x3F)), n = 4;
	strbuf_append(sb, b, n);
}

static int
hex4(const char *p, const char *end, unsigned int *out)
{
	unsigned int v = 0;

	if (end - p < 4)
		return 0;
	for (int k = 0; k < 4; k++)
	{
		char		c = p[k];

		v <<= 4;
		if (c >= '0' && c <= '9')
			v |= (unsigned int) (c - '0');
		else if (c >= 'a' && c <= 'f')
			v |= (unsigned int) (c - 'a' + 10);
		else if (c >= 'A' && c <= 'F')
			v |= (unsigned int) (c - 'A' + 10);
		else
			return 0;
	}
	*out = v;
	return 1;
}

bool
json_decode_string(const char *v, size_t len, StrBuf *out)
{
	const char *p = v + 1;
	const char *end = v + len - 1;

	if (len < 2 || v[0] != '"' || v[len - 1] != '"')
		return false;
	strbuf_reserve(out, len);
	while (p < end)
	{
		const char *bs = memchr(p, '\\', (size_t) (end - p));
		unsigned int cp;

		if (bs == NULL)
			bs = end;
		strbuf_append(out, p, (size_t) (bs - p));
		p = bs;
		if (p >= end)
			break;
		if (p + 1 >= end)
			return false;
		p += 2;
		switch (p[-1])
		{
			case '"':
			case '\\':
			case '/':
				strbuf_append(out, p - 1, 1);
				continue;
			case 'b':
				strbuf_append(out, "\b", 1);
				continue;
			case 'f':
				strbuf_append(out, "\f", 1);
				continue;
			case 'n':
				strbuf_append(out, "\n", 1);
				continue;
			case 'r':
				strbuf_append(out, "\r", 1);
				continue;
			case 't':
				strbuf_append(out, "\t", 1);
				continue;
			case 'u':
				break;
			default:
				return false;
		}
		if (!hex4(p, end, &cp))
			return false;
		p += 4;
		if (cp >= 0xD800 && cp <= 0xDBFF)
		{
			unsigned int lo;

			/* a high surrogate counts only with its low half */
			if (end - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
				hex4(p + 2, end, &lo) && lo >= 0xDC00 && lo <= 0xDFFF)
			{
				cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
				p += 6;
			}
			else
				cp = 0xFFFD;
		}
		else if (cp >= 0xDC00 && cp <= 0xDFFF)
			cp = 0xFFFD;
		append_utf8(out, cp);
	}
	return true;
}

/* ---- validator ---- */

typedef struct JsonScan
{
	const char *base;
	const char *p;
	const char *end;
} JsonScan;

static bool scan_value(JsonScan *js, int depth);

static void
skip_ws(JsonScan *js)
{
	while (js->p < js->end &&
		   (*js->p == ' ' || *js->p == '\t' || *js->p == '\n' || *js->p == '\r'))
		js->p++;
}

static bool
scan_string(JsonScan *js)
{
	if (js->p >= js->end || *js->p != '"')
		return false;
	js->p++;
	while (js->p < js->end)
	{
		unsigned char c = (unsigned char) *js->p;

		if (c == '"')
		{
			js->p++;
			return true;
		}
		if (c < 0x20)
			return false;
		if (c == '\\')
		{
			js->p++;
			if (js->p >= js->end)
				return false;
			switch (*js->p)
			{
				case '"':
				case '\\':
				case '/':
				case 'b':
				case 'f':
				case 'n':
				case 'r':
				case 't':
					js->p++;
					break;
				case 'u':
					js->p++;
					for (int k = 0; k < 4; k++, js->p++)
					{
						if (js->p >= js->end ||
							!((*js->p >= '0' && *js->p <= '9') ||
							  (*js->p >= 'a' && *js->p <= 'f') ||
							  (*js->p >= 'A' && *js->p <= 'F')))
							return false;
					}
					break;
				default:
					return false;
			}
			continue;
		}
		if (c < 0x80)
		{
			js->p++;
			continue;
		}
		{
			int			l = utf8_seqlen((const unsigned char *) js->p,
										(size_t) (js->end - js->p));

			if (l == 0)
				return false;
			js->p += l;
		}
	}
	return false;
}

static bool
scan_number(JsonScan *js)
{
	const char *p = js->p;
	const char *e = js->end;

	if (p < e && *p == '-')
		p++;
	if (p >= e)
		return false;
	if (*p == '0')
		p++;
	else if (*p >= '1' && *p <= '9')
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	else
		return false;
	if (p < e && *p == '.')
	{
		p++;
		if (p >= e || *p < '0' || *p > '9')
			return false;
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < e && (*p == 'e' || *p == 'E'))
	{
		p++;
		if (p < e && (*p == '+' || *p == '-'))
			p++;
		if (p >= e || *p < '0' || *p > '9')
			return false;
		while (p < e && *p >= '0' && *p <= '9')
			p++;
	}
	js->p = p;
	return true;
}

static bool
scan_literal(JsonScan *js, const char *lit)
{
	size_t		l = strlen(lit);

	if ((size_t) (js->end - js->p) < l || memcmp(js->p, lit, l) != 0)
		return false;
	js->p += l;
	return true;
}

static bool
scan_object(JsonScan *js, int depth, JsonMemberCb cb, void *arg)
{
	if (depth > JSON_MAX_DEPTH)
		return false;
	js->p++;					/* '{' */
	skip_ws(js);
	if (js->p < js->end && *js->p == '}')
	{
		js->p++;
		return true;
	}
	for (;;)
	{
		const char *key;
		const char *val;
		size_t		member_start;

		skip_ws(js);
		member_start = (size_t) (js->p - js->base);
		key = js->p;
		if (!scan_string(js))
			return false;
		{
			size_t		keylen = (size_t) (js->p - key) - 2;

			skip_ws(js);
			if (js->p >= js->end || *js->p != ':')
				return false;
			js->p++;
			skip_ws(js);
			val = js->p;
			if (!scan_value(js, depth + 1))
				return false;
			if (cb)
				cb(arg, key + 1, keylen, member_start, val,
				   (size_t) (js->p - val));
		}
		skip_ws(js);
		if (js->p >= js->end)
			return false;
		if (*js->p == '}')
		{
			js->p++;
			return true;
		}
		if (*js->p != ',')
			return false;
		js->p++;
	}
}

static bool
scan_array(JsonScan *js, int depth)
{
	if (depth > JSON_MAX_DEPTH)
		return false;
	js->p++;					/* '[' */
	skip_ws(js);
	if (js->p < js->end && *js->p == ']')
	{
		js->p++;
		return true;
	}
	for (;;)
	{
		skip_ws(js);
		if (!scan_value(js, depth + 1))
			return false;
		skip_ws(js);
		if (js->p >= js->end)
			return false;
		if (*js->p == ']')
		{
			js->p++;
			return true;
		}
		if (*js->p != ',')
			return false;
		js->p++;
	}
}

static bool
scan_value(JsonScan *js, int depth)
{
	if (js->p >= js->end)
		return false;
	switch (*js->p)
	{
		case '{':
			return scan_object(js, depth, NULL, NULL);
		case '[':
			return scan_array(js, depth);
		case '"':
			return scan_string(js);
		case 't':
			return scan_literal(js, "true");
		case 'f':
			return scan_literal(js, "false");
		case 'n':
			return scan_literal(js, "null");
		default:
			return scan_number(js);
	}
}

long
json_scan_object(const char *p, size_t len, JsonMemberCb cb, void *arg)
{
	JsonScan	js;

	js.base = p;
	js.p = p;
	js.end = p + len;
	skip_ws(&js);
	if (js.p >= js.end || *js.p != '{')
		return -1;
	if (!scan_object(&js, 0, cb, arg))
		return -1;
	return (long) (js.p - p);
}

bool
json_value_int64(const char *v, size_t len, int64_t *out)
{
	char		buf[32];
	char	   *end;

	if (len == 0 || len >= sizeof(buf))
		return false;
	memcpy(buf, v, len);
	buf[len] = '\0';
	if (!((buf[0] >= '0' && buf[0] <= '9') || buf[0] == '-'))
		return false;
	*out = strtoll(buf, &end, 10);
	return *end == '\0';
}
