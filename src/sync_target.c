/*-------------------------------------------------------------------------
 *
 * sync_target.c
 *		Where the sync cycle's objects go: logagg.sync_url parsed into a
 *		SyncTarget (S3 bucket and prefix with the s3_* settings, or a
 *		file:// directory), and the deterministic object key of a
 *		(window, source, part) (docs/sync.md, "Key layout").
 *
 * The URL is parsed again for every object so that a reload takes effect
 * at once; the GUC check hook (guc.c) has already refused anything but
 * s3:// and file:// URLs.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>

#include "lib/stringinfo.h"
#include "pgtime.h"
#include "utils/timestamp.h"

#include "logagg.h"
#include "sync_cycle.h"

#define MIN_AWS_PART_SIZE	(5 * 1024 * 1024)

void
sync_parse_target(SyncTarget *t)
{
	const char *url = logagg_sync_url;

	memset(t, 0, sizeof(*t));
	if (strncmp(url, "s3://", 5) == 0)
	{
		const char *b = url + 5;
		const char *slash = strchr(b, '/');
		size_t		blen = slash ? (size_t) (slash - b) : strlen(b);
		const char *p = slash ? slash + 1 : "";
		size_t		plen;

		t->is_s3 = true;
		snprintf(t->bucket, sizeof(t->bucket), "%.*s", (int) blen, b);
		while (*p == '/')
			p++;
		plen = strlen(p);
		while (plen > 0 && p[plen - 1] == '/')
			plen--;
		snprintf(t->prefix, sizeof(t->prefix), "%.*s", (int) plen, p);
		t->s3.endpoint = logagg_s3_endpoint ? logagg_s3_endpoint : "";
		t->s3.region = (logagg_s3_region && logagg_s3_region[0]) ? logagg_s3_region : "us-east-1";
		t->s3.access_key = logagg_s3_access_key_id ? logagg_s3_access_key_id : "";
		t->s3.secret_key = logagg_s3_secret_access_key ? logagg_s3_secret_access_key : "";
		t->s3.bucket = t->bucket;
		t->s3.part_size = logagg_sync_part_size;
		/* AWS refuses parts below 5 MiB; small parts are for test servers only */
		if (t->s3.endpoint[0] == '\0' && t->s3.part_size < MIN_AWS_PART_SIZE)
			t->s3.part_size = MIN_AWS_PART_SIZE;
		t->s3.timeout_ms = logagg_sync_timeout_ms;
		t->s3.interrupted = sync_interrupted;
	}
	else
	{
		/* file:///dir (the GUC check hook allows nothing else) */
		size_t		dlen;

		snprintf(t->dir, sizeof(t->dir), "%s", url + 7);
		dlen = strlen(t->dir);
		while (dlen > 1 && t->dir[dlen - 1] == '/')
			t->dir[--dlen] = '\0';
	}
}

/*
 * The source as a key component: characters other than [A-Za-z0-9._-]
 * are percent-encoded (so a "/" cannot add a path level and ".." cannot
 * climb out of a file:// directory), and a leading "." too.
 */
static void
key_escape_source(const char *src, StringInfo out)
{
	for (const unsigned char *p = (const unsigned char *) src; *p; p++)
	{
		bool		keep = (*p >= 'A' && *p <= 'Z') || (*p >= 'a' && *p <= 'z') ||
			(*p >= '0' && *p <= '9') || *p == '_' || *p == '-' ||
			(*p == '.' && p != (const unsigned char *) src);

		if (keep)
			appendStringInfoChar(out, *p);
		else
			appendStringInfo(out, "%%%02X", *p);
	}
}

/*
 * PREFIX/source=SOURCE/date=YYYY-MM-DD/hour=HH/logs-YYYYMMDDTHHMMSSZ-PPPP.ndjson.gz
 * (docs/sync.md).  Deterministic: the same window, source and part always
 * give the same key, so a retry overwrites.
 */
char *
sync_object_key(const SyncTarget *t, TimestampTz window_start, const char *source, int part)
{
	StringInfoData k;
	pg_time_t	tt = timestamptz_to_time_t(window_start);
	time_t		ct = (time_t) tt;
	struct tm	tm;

	gmtime_r(&ct, &tm);
	initStringInfo(&k);
	if (t->prefix[0])
		appendStringInfo(&k, "%s/", t->prefix);
	appendStringInfoString(&k, "source=");
	key_escape_source(source, &k);
	appendStringInfo(&k, "/date=%04d-%02d-%02d/hour=%02d/logs-%04d%02d%02dT%02d%02d%02dZ-%04d.ndjson.gz",
					 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour,
					 tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
					 tm.tm_hour, tm.tm_min, tm.tm_sec, part);
	return k.data;
}
