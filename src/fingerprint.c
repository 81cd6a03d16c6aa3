/*-------------------------------------------------------------------------
 *
 * fingerprint.c
 *		Alert fingerprints: what makes two records "the same alert".
 *
 * A fingerprint is the SHA-256 (first 16 hex digits) of source, severity,
 * status and the message with its variable parts masked: every run of
 * hex digits and dashes that contains a decimal digit (ids, counts,
 * durations, UUIDs, addresses) becomes '#'.  So "GET /api/orders/123 503
 * 12ms" and "GET /api/orders/456 503 9ms" group together while
 * "GET /api/users/1 503" does not.
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

static bool
is_hexish(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') ||
		(c >= 'A' && c <= 'F') || c == '-';
}

void
logagg_mask_message(const char *message, StringInfo out)
{
	int			len;
	int			i = 0;

	if (message == NULL)
		return;
	/* whole characters only: the masked text is also shown as text */
	len = strnlen(message, FINGERPRINT_MESSAGE_CHARS + MAX_MULTIBYTE_CHAR_LEN);
	len = logagg_clip_len(message, len, FINGERPRINT_MESSAGE_CHARS);
	while (i < len)
	{
		if (is_hexish(message[i]))
		{
			int			j = i;
			bool		digit = false;

			while (j < len && is_hexish(message[j]))
			{
				if (message[j] >= '0' && message[j] <= '9')
					digit = true;
				j++;
			}
			if (digit)
				appendStringInfoChar(out, '#');
			else
				appendBinaryStringInfo(out, message + i, j - i);
			i = j;
		}
		else
			appendStringInfoChar(out, message[i++]);
	}
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
	logagg_mask_message(message, &buf);

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
	LogaggSeverity sev = LOGAGG_SEV_LOW;
	char	   *message = PG_ARGISNULL(3) ? NULL : text_to_cstring(PG_GETARG_TEXT_PP(3));
	char		fp[LOGAGG_FINGERPRINT_LEN + 1];

	if (PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("severity must not be NULL")));
	sevname = DatumGetCString(DirectFunctionCall1(enum_out, PG_GETARG_DATUM(1)));
	for (int i = 0; i < 3; i++)
		if (strcmp(sevname, logagg_severity_names[i]) == 0)
			sev = (LogaggSeverity) i;
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
