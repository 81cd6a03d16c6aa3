/*-------------------------------------------------------------------------
 *
 * valid_text.c
 *		Make byte strings from the outside safe to store as text.
 *
 * Error texts from S3 servers and libcurl, and anything cut to fit a
 * fixed-size buffer, may hold bytes that are not valid in the database
 * encoding or end in the middle of a multibyte character.  Such a value in
 * a text column makes COPY of a dump, upper(), regexes and client
 * conversions fail later, far from where it came in, so every such string
 * is repaired where it becomes text: an invalid byte becomes '?', and a
 * character cut at the end is dropped.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "mb/pg_wchar.h"

#include "logagg.h"

/*
 * Repair s (NUL-terminated) in place.  Never allocates or raises, so it may
 * be used under a spinlock's caller or on a shared-memory copy.
 */
void
logagg_make_valid_text(char *s)
{
	int			enc = GetDatabaseEncoding();
	int			len = strlen(s);
	int			i = 0;

	while (i < len)
	{
		int			l;

		if (!IS_HIGHBIT_SET(s[i]))
		{
			i++;
			continue;
		}
		l = pg_encoding_verifymbchar(enc, s + i, len - i);
		if (l > 0)
		{
			i += l;
			continue;
		}
		/* a character the end of the buffer cut in two: drop its start */
		if (pg_encoding_mblen(enc, s + i) > len - i)
		{
			s[i] = '\0';
			return;
		}
		s[i++] = '?';
	}
}

/*
 * The length in bytes of the longest prefix of s (len bytes, valid text)
 * that has at most limit bytes and ends on a character boundary.
 */
int
logagg_clip_len(const char *s, int len, int limit)
{
	if (len <= limit)
		return len;
	return pg_mbcliplen(s, len, limit);
}
