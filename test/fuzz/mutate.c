/*
 * mutate.c — what logagg-fuzz sends: records built field by field from the
 * protocol's known fields with hostile values, seed records from the corpus
 * mutated at the byte level (flips, inserts, truncation, splicing, deep
 * nesting, huge numbers, escapes, duplicate keys, odd Unicode), messages
 * packed from many such lines, the big hostile whole messages (depth-check
 * bypass, 1 MB of tiny lines, 90k attrs in descending order, ...), and the
 * bounds on how many records the server must answer for a message (the
 * accounting oracle).
 */
#include "mutate.h"

#include <dirent.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The last line of every multi-line message: see count_bounds(). */
#define GUARD "{\"message\":\"fuzz guard\"}"

/* ---------------------------------------------------------------- Buf */

void
buf_reserve(Buf *b, size_t extra)
{
	if (b->len + extra + 1 <= b->cap)
		return;
	b->cap = (b->len + extra + 1) * 2;
	b->data = realloc(b->data, b->cap);
	if (b->data == NULL)
	{
		perror("realloc");
		exit(2);
	}
}

void
buf_put(Buf *b, const void *p, size_t n)
{
	buf_reserve(b, n);
	if (n)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

void
buf_puts(Buf *b, const char *s)
{
	buf_put(b, s, strlen(s));
}

void
buf_printf(Buf *b, const char *fmt, ...)
{
	va_list		ap;
	char		small[256];
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < (int) sizeof(small))
	{
		buf_put(b, small, n);
		return;
	}
	buf_reserve(b, n);
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, n + 1, fmt, ap);
	va_end(ap);
	b->len += n;
}

void
buf_free(Buf *b)
{
	free(b->data);
	memset(b, 0, sizeof(*b));
}

/* ---------------------------------------------------------------- Rng */

uint64_t
rng_next(Rng *r)
{
	/* splitmix64: tiny, fast, good enough to fuzz */
	uint64_t	z = (r->s += 0x9e3779b97f4a7c15ULL);

	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

uint32_t
rng_below(Rng *r, uint32_t n)
{
	return n ? (uint32_t) (rng_next(r) % n) : 0;
}

int
rng_chance(Rng *r, int percent)
{
	return (int) rng_below(r, 100) < percent;
}

#define PICK(r, arr) ((arr)[rng_below((r), sizeof(arr) / sizeof((arr)[0]))])

/* ---------------------------------------------------------------- seeds */

static Buf *seeds;
static int	nseeds;
static Buf *hostile;
static char **hostile_names;
static int	nhostile;

static int
read_file(const char *path, Buf *out)
{
	FILE	   *f = fopen(path, "rb");
	char		chunk[65536];
	size_t		n;

	if (f == NULL)
		return -1;
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		buf_put(out, chunk, n);
	fclose(f);
	return 0;
}

static void
add_seed_lines(const Buf *file)
{
	const char *p = file->data;
	const char *end = file->data + file->len;

	while (p < end)
	{
		const char *nl = memchr(p, '\n', end - p);
		const char *lend = nl ? nl : end;

		if (lend > p)
		{
			seeds = realloc(seeds, sizeof(Buf) * (nseeds + 1));
			memset(&seeds[nseeds], 0, sizeof(Buf));
			buf_put(&seeds[nseeds++], p, lend - p);
		}
		p = lend + 1;
	}
}

static int
name_cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *) a, *(char *const *) b);
}

/* The sorted names of the regular files in dir ending in suffix. */
static int
list_dir(const char *dir, const char *suffix, char ***names)
{
	DIR		   *d = opendir(dir);
	struct dirent *e;
	int			n = 0;

	*names = NULL;
	if (d == NULL)
		return 0;
	while ((e = readdir(d)) != NULL)
	{
		size_t		l = strlen(e->d_name);

		if (e->d_name[0] == '.' || l < strlen(suffix) ||
			strcmp(e->d_name + l - strlen(suffix), suffix) != 0)
			continue;
		*names = realloc(*names, sizeof(char *) * (n + 1));
		(*names)[n++] = strdup(e->d_name);
	}
	closedir(d);
	qsort(*names, n, sizeof(char *), name_cmp);
	return n;
}

int
seeds_load(const char *corpus_dir)
{
	char	  **names;
	char		path[4096];
	int			n = list_dir(corpus_dir, ".ndjson", &names);

	for (int i = 0; i < n; i++)
	{
		Buf			file = {0};

		snprintf(path, sizeof(path), "%s/%s", corpus_dir, names[i]);
		if (read_file(path, &file) == 0)
			add_seed_lines(&file);
		buf_free(&file);
		free(names[i]);
	}
	free(names);

	snprintf(path, sizeof(path), "%s/hostile", corpus_dir);
	nhostile = list_dir(path, "", &hostile_names);
	hostile = calloc(nhostile + 1, sizeof(Buf));
	for (int i = 0; i < nhostile; i++)
	{
		char		p2[8192];

		snprintf(p2, sizeof(p2), "%s/%s", path, hostile_names[i]);
		if (read_file(p2, &hostile[i]) != 0)
			return -1;
	}
	return nseeds;
}

int
hostile_count(void)
{
	return nhostile;
}

const Buf *
hostile_get(int i, const char **name)
{
	*name = hostile_names[i];
	return &hostile[i];
}

/* ---------------------------------------------------------------- values */

static const char *const known_fields[] = {
	"ts", "source", "service", "level", "severity_text", "severity_number",
	"status", "http.status_code", "message", "msg", "body", "trace_id",
	"span_id", "seq", "attrs", "user", "path", "duration_ms",
};

static const char *const timestamps[] = {
	"\"0001-01-01T00:00:00+00:01\"", "\"0001-01-01T00:00:00Z\"",
	"\"0000-01-01T00:00:00Z\"", "\"9999-12-31T23:59:59.999999-23:59\"",
	"\"9999-12-31T23:59:59.9999999Z\"", "\"294276-01-01T00:00:00Z\"",
	"\"2024-02-30T10:00:00Z\"", "\"2024-01-01T24:00:00Z\"",
	"\"2024-12-31T23:59:60Z\"", "\"2024-01-01T00:00:00+99:99\"",
	"\"2024-01-01 00:00:00.123456789012345678901234567890+01:00\"",
	"\"2026-01-02T03:04:05.250+02:00\"", "\"2026-01-02T03:04:05\"",
	"\"infinity\"", "\"-infinity\"", "\"epoch\"", "\"now\"", "\"\"",
	"\"2026-01-02T03:04:05Z junk\"", "\"1970-01-01T00:00:00-00:01\"",
	"-9223372036854775808", "9223372036854775807", "1e20", "-62135596800001",
	"253402300800000", "1700000000123", "1700000000123.5", "-0", "0",
	"1e400", "null", "true", "[]", "{}",
};

static const char *const odd_values[] = {
	"null", "true", "false", "0", "-1", "-0", "1.5", "1e308", "-1e308",
	"1e-400", "1E+2", "9223372036854775807", "9223372036854775808",
	"-9223372036854775809", "18446744073709551616",
	"123456789012345678901234567890123456789012345678901234567890",
	"\"\"", "\"x\"", "\"500\"", "\" 500\"", "\"5xx\"", "\"ERROR\"",
	"\"warning\"", "\"CRIT\"", "\"abc123\"", "\"DEADbeef00\"", "\"not hex!\"",
	"[]", "{}", "[1,2]", "{\"a\":1}", "{\"a\":{\"b\":[null]}}",
	"\"\\u0000\"", "\"\\ud800\"", "\"\\udc00\\ud800\"", "\"\\u4e2d\\u6587\"",
	"\"\\uFFFF\"", "\"\\u00e9\"", "\"\\\\\\\"\\/\\b\\f\\n\\r\\t\"",
	"\"caf\xc3\xa9 \xe4\xb8\xad \xf0\x9f\x98\x80\"", "\"\xe2\x80\xa8\"",
	"\"\xef\xbb\xbf\"", "\"<!channel> & <x|y>\"", "\"%s%n%x\"",
};

/* Bytes that stress a UTF-8 validator or a scanner. */
static const char *const odd_bytes[] = {
	"\xff", "\xfe", "\xc0\x80", "\xed\xa0\x80", "\xf4\x90\x80\x80",
	"\xe4\xb8", "\xf0\x9f\x98", "\x80", "\x00", "\n", "\r", "\t", "\x0b",
	"\x0c", "\"", "\\", "{", "}", "[", "]", ",", ":", "\\u", "\\u00",
	"\\ud83d\\ude00", "\\u0000", "\\x", "\xef\xbb\xbf", " ",
};

static void
put_string_value(Rng *r, Buf *out)
{
	int			kind = rng_below(r, 6);

	if (kind == 0)
	{
		/* long string */
		int			n = 1 + rng_below(r, rng_chance(r, 2) ? 60000 : 200);

		buf_reserve(out, n + 2);
		out->data[out->len++] = '"';
		memset(out->data + out->len, 'a' + rng_below(r, 26), n);
		out->len += n;
		out->data[out->len++] = '"';
		out->data[out->len] = '\0';
		return;
	}
	if (kind == 1)
	{
		buf_puts(out, "\"");
		for (int i = rng_below(r, 8); i >= 0; i--)
			buf_puts(out, PICK(r, odd_bytes));
		buf_puts(out, "\"");
		return;
	}
	if (kind == 2)
	{
		buf_printf(out, "\"GET /api/orders/%u 500 %ums\"", rng_below(r, 100000), rng_below(r, 5000));
		return;
	}
	buf_puts(out, PICK(r, odd_values));
}

static void
put_value(Rng *r, Buf *out, const char *field, int depth)
{
	int			k = rng_below(r, 10);

	if (strcmp(field, "ts") == 0 && k < 7)
		buf_puts(out, PICK(r, timestamps));
	else if ((strcmp(field, "status") == 0 || strcmp(field, "http.status_code") == 0) && k < 5)
		buf_printf(out, "%d", (int) rng_below(r, 1200) - 100);
	else if (strcmp(field, "level") == 0 && k < 5)
		buf_puts(out, PICK(r, ((const char *[]) {"\"error\"", "\"fatal\"", "\"warn\"", "\"info\"", "\"Debug\"", "\"x\""})));
	else if (strcmp(field, "seq") == 0 && k < 5)
		buf_printf(out, "%u", rng_below(r, 1000000));
	else if (k < 2 && depth < 3)
	{
		/* nested object or array */
		int			n = rng_below(r, 4);
		int			arr = rng_chance(r, 50);

		buf_puts(out, arr ? "[" : "{");
		for (int i = 0; i < n; i++)
		{
			if (i)
				buf_puts(out, ",");
			if (!arr)
				buf_printf(out, "\"k%d\":", i);
			put_value(r, out, "", depth + 1);
		}
		buf_puts(out, arr ? "]" : "}");
	}
	else if (k < 6)
		put_string_value(r, out);
	else
		buf_puts(out, PICK(r, odd_values));
}

/* A record built from known and unknown fields with hostile values. */
static void
gen_record(Rng *r, Buf *out)
{
	int			n = rng_below(r, 8);

	if (rng_chance(r, 1))
		n = 50 + rng_below(r, 2000);	/* many attrs */
	buf_puts(out, "{");
	for (int i = 0; i < n; i++)
	{
		const char *f;
		char		name[32];

		if (i)
			buf_puts(out, ",");
		if (i < 18 && rng_chance(r, 70))
			f = PICK(r, known_fields);
		else
		{
			/* descending names: the worst case of an insertion sort */
			snprintf(name, sizeof(name), "a%06d", n - i);
			f = name;
		}
		buf_printf(out, "\"%s\":", f);
		put_value(r, out, f, 0);
	}
	buf_puts(out, "}");
}

/* ---------------------------------------------------------------- mutations */

static void
insert_at(Buf *b, size_t pos, const char *p, size_t n)
{
	buf_reserve(b, n);
	memmove(b->data + pos + n, b->data + pos, b->len - pos);
	memcpy(b->data + pos, p, n);
	b->len += n;
	b->data[b->len] = '\0';
}

static void
delete_at(Buf *b, size_t pos, size_t n)
{
	if (pos + n > b->len)
		n = b->len - pos;
	memmove(b->data + pos, b->data + pos + n, b->len - pos - n);
	b->len -= n;
	b->data[b->len] = '\0';
}

static void
mutate_once(Rng *r, Buf *b)
{
	size_t		pos = b->len ? rng_below(r, b->len + 1) : 0;
	char		tmp[64];

	switch (rng_below(r, 12))
	{
		case 0:					/* bit flip */
			if (b->len)
				b->data[rng_below(r, b->len)] ^= (char) (1 << rng_below(r, 8));
			break;
		case 1:					/* random byte */
			tmp[0] = (char) rng_below(r, 256);
			insert_at(b, pos, tmp, 1);
			break;
		case 2:					/* odd bytes or escapes */
			{
				const char *s = PICK(r, odd_bytes);

				insert_at(b, pos, s, s[0] ? strlen(s) : 1);
				break;
			}
		case 3:					/* delete a range */
			delete_at(b, pos, 1 + rng_below(r, 16));
			break;
		case 4:					/* truncate */
			b->len = pos;
			if (b->data)
				b->data[b->len] = '\0';
			break;
		case 5:					/* splice another seed or record in */
			if (nseeds)
			{
				const Buf  *s = &seeds[rng_below(r, nseeds)];
				size_t		from = rng_below(r, s->len);

				insert_at(b, pos, s->data + from, rng_below(r, s->len - from + 1));
			}
			break;
		case 6:					/* deep nesting, balanced or not */
			{
				int			d = 1 + rng_below(r, rng_chance(r, 5) ? 3000 : 80);
				Buf			n = {0};
				int			obj = rng_chance(r, 50);

				for (int i = 0; i < d; i++)
					buf_puts(&n, obj ? "{\"a\":" : "[");
				buf_puts(&n, "1");
				if (rng_chance(r, 70))
					for (int i = 0; i < d; i++)
						buf_puts(&n, obj ? "}" : "]");
				insert_at(b, pos, n.data, n.len);
				buf_free(&n);
				break;
			}
		case 7:					/* a huge or odd number */
			{
				const char *v = PICK(r, odd_values);

				if (rng_chance(r, 30))
				{
					Buf			n = {0};
					int			digits = 1 + rng_below(r, rng_chance(r, 10) ? 2000 : 400);

					buf_reserve(&n, digits);
					memset(n.data, '9', digits);
					n.len = digits;
					insert_at(b, pos, n.data, n.len);
					buf_free(&n);
				}
				else
					insert_at(b, pos, v, strlen(v));
				break;
			}
		case 8:					/* duplicate or retyped known field */
		case 9:
			{
				Buf			f = {0};
				const char *name = PICK(r, known_fields);
				char	   *close = b->len ? memchr(b->data, '}', b->len) : NULL;

				buf_printf(&f, "\"%s\":", name);
				put_value(r, &f, name, 0);
				if (close && rng_chance(r, 80))
				{
					/* before the first '}' ... */
					size_t		at = close - b->data;

					insert_at(b, at, ",", 1);
					insert_at(b, at, f.data, f.len);
				}
				else if (b->len > 1 && b->data[0] == '{')
				{
					/* ... or first, so that a later copy wins */
					insert_at(b, 1, ",", 1);
					insert_at(b, 1, f.data, f.len);
				}
				buf_free(&f);
				break;
			}
		case 10:				/* duplicate a range */
			if (b->len)
			{
				size_t		from = rng_below(r, b->len);
				size_t		n = 1 + rng_below(r, b->len - from);
				Buf			c = {0};

				buf_put(&c, b->data + from, n);
				insert_at(b, pos > b->len ? b->len : pos, c.data, c.len);
				buf_free(&c);
			}
			break;
		case 11:				/* a timestamp */
			{
				const char *t = PICK(r, timestamps);

				insert_at(b, pos, t, strlen(t));
				break;
			}
	}
}

/* Length of the valid UTF-8 sequence at p (not NUL), or 0. */
static int
utf8_len(const unsigned char *p, const unsigned char *end)
{
	int			n = *p < 0x80 ? 1 : *p >= 0xc2 && *p <= 0xdf ? 2 : *p >= 0xe0 && *p <= 0xef ? 3 :
		*p >= 0xf0 && *p <= 0xf4 ? 4 : 0;

	if (n == 0 || *p == 0 || end - p < n)
		return 0;
	for (int i = 1; i < n; i++)
		if ((p[i] & 0xc0) != 0x80)
			return 0;
	if ((p[0] == 0xe0 && p[1] < 0xa0) || (p[0] == 0xed && p[1] >= 0xa0) ||
		(p[0] == 0xf0 && p[1] < 0x90) || (p[0] == 0xf4 && p[1] >= 0x90))
		return 0;
	return n;
}

/*
 * Replace bytes that are not valid UTF-8 text (and NUL) with '?': most
 * messages are valid text, so that their records reach the rest of the
 * pipeline instead of stopping at the UTF-8 check.
 */
static void
make_text(Buf *b, size_t from)
{
	unsigned char *p = (unsigned char *) b->data + from;
	unsigned char *end = (unsigned char *) b->data + b->len;

	while (p < end)
	{
		int			n = utf8_len(p, end);

		if (n == 0)
		{
			*p = '?';
			n = 1;
		}
		p += n;
	}
}

static int	text_only;

void
gen_line(Rng *r, Buf *out)
{
	size_t		start = out->len;
	Buf			b = {0};
	int			muts;

	if (nseeds && rng_chance(r, 50))
	{
		const Buf  *s = &seeds[rng_below(r, nseeds)];

		buf_put(&b, s->data, s->len);
		muts = rng_below(r, 4);
	}
	else
	{
		gen_record(r, &b);
		muts = rng_chance(r, 60) ? 0 : 1 + rng_below(r, 3);
	}
	for (int i = 0; i < muts; i++)
		mutate_once(r, &b);
	buf_put(out, b.data ? b.data : "", b.len);
	buf_free(&b);
	if (text_only)
		make_text(out, start);
}

/* ---------------------------------------------------------------- specials */

static const char *const special_names[] = {
	"depth-bypass", "ones-1mb", "attrs-descending-90k", "tiny-lines-1mb",
	"deep-array-line", "wide-array",
};

int
special_count(void)
{
	return (int) (sizeof(special_names) / sizeof(special_names[0]));
}

static void
put_repeat(Buf *b, const char *s, size_t times)
{
	size_t		l = strlen(s);

	buf_reserve(b, l * times);
	for (size_t i = 0; i < times; i++)
	{
		memcpy(b->data + b->len, s, l);
		b->len += l;
	}
	b->data[b->len] = '\0';
}

/* Build hostile message i, at most max_bytes (the guard line included). */
const char *
special_build(int i, Buf *out, size_t max_bytes)
{
	size_t		room = max_bytes - sizeof(GUARD) - 16;

	out->len = 0;
	switch (i)
	{
		case 0:
			/* the depth pre-check goes negative, then each line recurses */
			buf_puts(out, "{}\n");
			put_repeat(out, "]", 20000);
			buf_puts(out, "\n");
			put_repeat(out, "[", 20000);
			break;
		case 1:
			put_repeat(out, "\"1\"\n", room / 4);
			break;
		case 2:
			{
				int			n = (int) (room / 12) - 1;

				if (n > 90000)
					n = 90000;
				buf_puts(out, "{");
				for (int k = n; k > 0; k--)
					buf_printf(out, "\"k%06d\":1%s", k, k > 1 ? "," : "");
				buf_puts(out, "}");
				break;
			}
		case 3:
			put_repeat(out, "1\n", room / 2);
			break;
		case 4:
			put_repeat(out, "[", room / 2 - 8);
			break;
		case 5:
			buf_puts(out, "[");
			put_repeat(out, "{},", room / 3 - 2);
			buf_puts(out, "{}]");
			break;
	}
	if (i != 2 && i != 5)
		buf_puts(out, "\n" GUARD);
	return special_names[i];
}

/* ---------------------------------------------------------------- messages */

int
gen_message(Rng *r, Buf *out, size_t max_bytes, int hostile_permille)
{
	int			kind = rng_below(r, 100);
	int			n;
	size_t		cap = max_bytes - sizeof(GUARD) - 8;

	out->len = 0;
	text_only = rng_chance(r, 70);
	if ((int) rng_below(r, 1000) < hostile_permille)
	{
		/* a hostile whole message, mutated a little */
		int			h = rng_below(r, hostile_count() + special_count());

		if (h < hostile_count())
		{
			const char *name;
			const Buf  *hb = hostile_get(h, &name);

			buf_put(out, hb->data, hb->len < cap ? hb->len : cap);
		}
		else
			special_build(h - hostile_count(), out, max_bytes);
		if (rng_chance(r, 50))
			for (int i = rng_below(r, 3); i >= 0 && out->len > 0 && out->len < cap - 64; i--)
				mutate_once(r, out);
		if (out->len > max_bytes)
			out->len = max_bytes;
		return 1;
	}
	if (kind < 10)
	{
		/* one record, alone in its frame */
		gen_line(r, out);
		n = 1;
	}
	else if (kind < 20)
	{
		/* an array of records */
		int			want = 1 + rng_below(r, 200);

		buf_puts(out, "[");
		for (n = 0; n < want && out->len < cap / 2; n++)
		{
			if (n)
				buf_puts(out, rng_chance(r, 2) ? ",," : ",");
			gen_line(r, out);
		}
		buf_puts(out, rng_chance(r, 3) ? "" : "]");
	}
	else
	{
		/* NDJSON, blank lines, CRLF and whitespace between records */
		int			want = 1 + rng_below(r, rng_chance(r, 5) ? 5000 : 300);

		for (n = 0; n < want && out->len < cap / 2; n++)
		{
			if (n)
				buf_puts(out, rng_chance(r, 5) ? "\r\n" : "\n");
			if (rng_chance(r, 3))
				buf_puts(out, PICK(r, ((const char *[]) {"", " ", "\t\r", "\n", "  \n\n"})));
			gen_line(r, out);
		}
		if (n > 1 || rng_chance(r, 50))
			buf_puts(out, "\n" GUARD);
	}
	if (out->len > cap)
	{
		/* a line was huge: cut it, the guard keeps the count exact */
		out->len = cap;
		buf_puts(out, "\n" GUARD);
	}
	return n;
}

/* ---------------------------------------------------------------- bounds */

static int64_t
count_commas(const char *p, size_t len)
{
	int64_t		n = 0;

	for (size_t i = 0; i < len; i++)
		n += p[i] == ',';
	return n;
}

/*
 * The server splits a message into lines only when it is not one JSON
 * value.  A message whose last line is GUARD (a complete object) and that
 * has any other non-blank line can't be one value: a raw newline can't be
 * inside a string, so the text before the guard would have to be a complete
 * value itself.  Then every non-blank line counts once, except a line that
 * may be an array: 0 up to its elements.  A message with one non-blank line
 * is that line.  Without a guard, a multi-line message may be one value,
 * and the bounds are loose.
 */
static int
may_have_seq(const char *p, size_t len)
{
	return memmem(p, len, "seq", 3) != NULL || memmem(p, len, "\\u", 2) != NULL;
}

void
count_bounds(const char *p, size_t len, int64_t *lo, int64_t *hi, int64_t *lo_counted)
{
	const char *end = p + len;
	const char *s = p;
	int64_t		l = 0,
				h = 0,
				lc = 0,
				lines = 0;
	int			guarded = len >= sizeof(GUARD) &&
		memcmp(end - (sizeof(GUARD) - 1), GUARD, sizeof(GUARD) - 1) == 0 &&
		(len == sizeof(GUARD) - 1 || end[-(int) sizeof(GUARD)] == '\n');
	char		first = 0;

	while (s < end)
	{
		const char *nl = memchr(s, '\n', end - s);
		const char *lend = nl ? nl : end;
		const char *t = s;

		while (t < lend && (*t == ' ' || *t == '\t' || *t == '\r'))
			t++;
		if (t < lend)
		{
			if (!lines)
				first = *t;
			lines++;
			if (*t == '[')
				h += 1 + count_commas(t, lend - t);
			else
			{
				l++;
				h++;
				lc += !may_have_seq(t, lend - t);
			}
		}
		s = lend + 1;
	}
	if (lines > 1 && !guarded)
	{
		int64_t		whole = 1 + count_commas(p, len);

		l = first == '[' ? 0 : (l < 1 ? l : 1);
		lc = lc < l ? lc : l;
		h = h > whole ? h : whole;
	}
	*lo_counted = lc;
	*lo = l;
	*hi = h;
}
