/*-------------------------------------------------------------------------
 *
 * fingerprint.c
 *		Alert fingerprints: what makes two records "the same alert".
 *
 * A fingerprint is the SHA-256 (first 16 hex digits) of source, severity,
 * status and the message with its variable parts masked: every word that
 * contains a decimal digit (ids, counts, durations, UUIDs, addresses),
 * every quoted value, query strings, and path segments that hold a digit
 * or are long become '#'.  So "GET /api/orders/123 503 12ms" and
 * "GET /api/orders/456 503 9ms" group together while "GET /api/users/1
 * 503" does not.  For client errors (status 4xx) every path segment is
 * masked: the path is whatever the client asked for, and a scan of a
 * thousand paths must not become a thousand alerts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/cryptohash.h"
#include "common/sha2.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/builtins.h"

#include "logagg.h"

/* Only the start of a message takes part: long tails are mostly payload. */
#define FINGERPRINT_MESSAGE_CHARS 256

/* A character of a word token: letters, digits, "_" and "-". */
static bool
is_word(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		(c >= 'A' && c <= 'Z') || c == '_' || c == '-';
}

static bool
is_path_char(char c)
{
	return c != '/' && c != '?' && c != '#' && c != '"' && c != '\'' &&
		c != ' ' && c != '\t' && c != '\n' && c != '\r' && c != '\0';
}

static bool
has_digit(const char *s, int n)
{
	for (int k = 0; k < n; k++)
		if (s[k] >= '0' && s[k] <= '9')
			return true;
	return false;
}

/* A path segment longer than this is an id (a token, a hash, a slug). */
#define PATH_SEGMENT_MAX 32

/*
 * The masked text of message[0..len): quoted values ('...' and "...")
 * become '#' in their quotes; a path segment ("/orders") becomes "/#"
 * when it holds a digit or is longer than PATH_SEGMENT_MAX; with
 * mask_paths (client errors: the path is whatever the client asked for,
 * so a scan of 1,000 paths is one alert) a whole path becomes "/#"; a query string becomes
 * "?#"; any other word that holds a digit (numbers, hex and UUID-like
 * ids, "12ms", "u1234") becomes "#".
 */
static void
mask_text(const char *m, int len, StringInfo out, bool mask_paths)
{
	int			i = 0;

	while (i < len)
	{
		char		c = m[i];
		int			j;

		if ((c == '"' || c == '\'') && (i == 0 || !is_word(m[i - 1])))
		{
			for (j = i + 1; j < len && m[j] != c && m[j] != '\n'; j++)
				;
			if (j < len && m[j] == c && (j + 1 >= len || !is_word(m[j + 1])))
			{
				appendStringInfoChar(out, c);
				appendStringInfoChar(out, '#');
				appendStringInfoChar(out, c);
				i = j + 1;
				continue;
			}
			appendStringInfoChar(out, c);
			i++;
		}
		else if (c == '/' && mask_paths)
		{
			/* the whole path, however many segments, is one "/#" */
			for (j = i + 1; j < len && (m[j] == '/' || is_path_char(m[j])); j++)
				;
			appendStringInfoString(out, j > i + 1 ? "/#" : "/");
			i = j;
		}
		else if (c == '/' || c == '?')
		{
			for (j = i + 1; j < len && (c == '?' ? m[j] != ' ' && m[j] != '\t' : is_path_char(m[j])); j++)
				;
			appendStringInfoChar(out, c);
			if (j > i + 1 && (c == '?' || mask_paths || j - i - 1 > PATH_SEGMENT_MAX ||
							  has_digit(m + i + 1, j - i - 1)))
				appendStringInfoChar(out, '#');
			else
				appendBinaryStringInfo(out, m + i + 1, j - i - 1);
			i = j;
		}
		else if (is_word(c))
		{
			for (j = i; j < len && is_word(m[j]); j++)
				;
			if (has_digit(m + i, j - i))
				appendStringInfoChar(out, '#');
			else
				appendBinaryStringInfo(out, m + i, j - i);
			i = j;
		}
		else
			appendStringInfoChar(out, m[i++]);
	}
}

static void
mask_message(const char *message, StringInfo out, bool mask_paths)
{
	int			len;

	if (message == NULL)
		return;
	/* whole characters only: the masked text is also shown as text */
	len = strnlen(message, FINGERPRINT_MESSAGE_CHARS + MAX_MULTIBYTE_CHAR_LEN);
	len = logagg_clip_len(message, len, FINGERPRINT_MESSAGE_CHARS);
	mask_text(message, len, out, mask_paths);
}

void
logagg_mask_message(const char *message, StringInfo out)
{
	mask_message(message, out, false);
}

/* Writes 16 hex digits and a NUL into out. */
void
logagg_fingerprint(const char *source, LogaggSeverity sev, int status, bool has_status,
				   const char *message, char out[LOGAGG_FINGERPRINT_LEN + 1])
{
	StringInfoData buf;
	uint8		digest[PG_SHA256_DIGEST_LENGTH];
	pg_cryptohash_ctx *ctx;

	initStringInfo(&buf);
	appendStringInfo(&buf, "%s\x1f%s\x1f", source ? source : "", logagg_severity_names[sev]);
	if (has_status)
		appendStringInfo(&buf, "%d", status);
	appendStringInfoChar(&buf, '\x1f');
	mask_message(message, &buf, has_status && status >= 400 && status <= 499);

	ctx = pg_cryptohash_create(PG_SHA256);
	if (ctx == NULL || pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (uint8 *) buf.data, buf.len) < 0 ||
		pg_cryptohash_final(ctx, digest, sizeof(digest)) < 0)
		elog(ERROR, "logagg: could not compute fingerprint");
	pg_cryptohash_free(ctx);
	pfree(buf.data);

	hex_encode((const char *) digest, LOGAGG_FINGERPRINT_LEN / 2, out);
	out[LOGAGG_FINGERPRINT_LEN] = '\0';
}

/*
 * logagg.fingerprint(source text, severity logagg.severity, status int, message text)
 */
PG_FUNCTION_INFO_V1(logagg_fingerprint_sql);
Datum
logagg_fingerprint_sql(PG_FUNCTION_ARGS)
{
	char	   *source = PG_ARGISNULL(0) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(0));
	char	   *sevname;
	int			sevidx;
	LogaggSeverity sev = LOGAGG_SEV_LOW;
	char	   *message = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	char		fp[LOGAGG_FINGERPRINT_LEN + 1];

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("severity must not be NULL")));
	sevname = DatumGetCString(DirectFunctionCall1(enum_out, PG_GETARG_DATUM(1)));
	sevidx = logagg_severity_index(sevname);
	if (sevidx >= 0)
		sev = (LogaggSeverity) sevidx;
	logagg_fingerprint(source, sev, PG_ARGISNULL(2) ? 0 : PG_GETARG_INT32(2), !PG_ARGISNULL(2),
					   message, fp);
	PG_RETURN_TEXT_P(cstring_to_text(fp));
}

/*
 * logagg.mask_message(text): the message as the fingerprint sees it.
 */
PG_FUNCTION_INFO_V1(logagg_mask_message_sql);
Datum
logagg_mask_message_sql(PG_FUNCTION_ARGS)
{
	StringInfoData buf;

	initStringInfo(&buf);
	logagg_mask_message(text_to_cstring(PG_GETARG_TEXT_PP(0)), &buf);
	PG_RETURN_TEXT_P(cstring_to_text(buf.data));
}
