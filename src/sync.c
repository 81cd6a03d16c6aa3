/*-------------------------------------------------------------------------
 *
 * sync.c
 *		The cloud-sync cycle (docs/design.md §6, docs/sync.md): find
 *		closed windows not yet synced, export each (window, source) as
 *		gzip-compressed NDJSON and hand it to the target (s3_client.c or
 *		sync_file.c), then record the outcome in logagg.sync_log.
 *
 * Streaming: rows come from a portal in chunks of EXPORT_FETCH rows,
 * are compressed as they come, and compressed bytes go straight to the
 * target (which holds at most one multipart part).  Nothing holds a whole
 * window, so memory is bounded whatever the window's size.
 *
 * Ordering of effects: a sync_log row saying "uploaded" is inserted only
 * after the target confirmed the object (S3 reply 2xx, or fsync + rename +
 * directory fsync).  If the process dies between the two, the next cycle
 * exports the same (window, source, part) again to the same deterministic
 * key, overwriting the object, so the store never holds duplicates and
 * sync_log records each part exactly once (a partial unique index backs
 * that up).
 *
 * Late rows: each part is exported under one MVCC snapshot, and that
 * snapshot is recorded with the part (sync_log.export_snapshot, a
 * pg_snapshot).  Part k+1 of a (window, source) holds exactly the rows that
 * part k's snapshot did not see: NOT pg_visible_in_snapshot(xmin, snapshot
 * of part k).  Visibility of a committed transaction only grows from one
 * snapshot to a later one, so the parts are disjoint and together hold every
 * row, whatever ids the rows got (ids come from a sequence cached per
 * session, so they say nothing about commit order).  The recorded snapshot
 * lists subtransaction ids too (see export_snapshot_text()), because a row's
 * xmin is the id of the subtransaction that inserted it.
 *
 * This file also defines the logagg.sync_* parameters and
 * logagg._xid8(), and implements logagg.sync_now().
 *
 * Who runs it: the maintenance worker, every logagg.sync_interval, one
 * transaction per object so that a failure or crash loses at most one
 * object's work; and logagg.sync_now(), synchronously in the calling
 * session inside its transaction (so its sync_log rows commit with it).
 * A session advisory lock (worker) / transaction advisory lock (sync_now)
 * keeps the two from exporting the same part at the same time.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <time.h>
#include <zlib.h>
#include <openssl/evp.h>

#include "access/subtrans.h"
#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "nodes/pg_list.h"
#include "storage/ipc.h"
#include "storage/pmsignal.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/guc.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "logagg.h"
#include "sync.h"
#include "sync_ndjson.h"

/* an arbitrary, fixed advisory-lock key: "logagg sync" */
#define SYNC_LOCK_KEY		INT64CONST(0x6c6f67616767)
#define EXPORT_FETCH		2000
#define EXPORT_CHUNK		(256 * 1024)
#define MIN_AWS_PART_SIZE	(5 * 1024 * 1024)

int			logagg_sync_grace_secs = 60;
int			logagg_sync_part_size = 64 * 1024 * 1024;
int			logagg_sync_timeout_ms = 30000;
int			logagg_sync_gzip_level = 1;
int			logagg_sync_lookback_secs = 0;

static bool sync_in_worker = false;

void
logagg_define_sync_gucs(void)
{
	DefineCustomIntVariable("logagg.sync_grace",
							"How long after its end a window is considered closed and synced.",
							"Rows arriving later for a synced window are uploaded as an additional part.",
							&logagg_sync_grace_secs, 60, 0, 7 * 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.sync_part_size",
							"Objects larger than this use S3 multipart upload, in parts of this size.",
							"S3 requires parts of at least 5MB except the last; values below 5MB are meant for test servers and are raised to 5MB when logagg.s3_endpoint is empty (AWS).",
							&logagg_sync_part_size, 64 * 1024 * 1024, 64 * 1024, 1024 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.sync_timeout",
							"Connect timeout, and longest stall, of one storage request.",
							NULL, &logagg_sync_timeout_ms, 30000, 100, 3600 * 1000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.sync_gzip_level",
							"gzip compression level of uploaded objects (1 fastest ... 9 smallest).",
							NULL, &logagg_sync_gzip_level, 1, 1, 9,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.sync_lookback",
							"Only windows that started within this time are checked for unsynced rows (0: all).",
							"Limits the cost of each cycle on very large tables; rows older than this that were never synced are then neither uploaded nor lost (retention keeps their partition).",
							&logagg_sync_lookback_secs, 0, 0, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
}

bool
logagg_sync_configured(void)
{
	return logagg_sync_url != NULL && logagg_sync_url[0] != '\0';
}

/* A window is the partition interval, or an hour when partitions are longer. */
int
logagg_sync_window_secs(void)
{
	return Min(logagg_partition_interval_secs, 3600);
}

/* ---------------------------------------------------------------------
 * target description, parsed from logagg.sync_url on every object so that
 * a reload takes effect at once
 * --------------------------------------------------------------------- */
typedef struct SyncTarget
{
	bool		is_s3;
	char		bucket[256];
	char		prefix[1024];	/* without leading/trailing "/" */
	char		dir[1024];		/* file:// target */
	S3Config	s3;
} SyncTarget;

static bool
sync_interrupted(void)
{
	if (sync_in_worker && ShutdownRequestPending)
		return true;
	if (QueryCancelPending || ProcDiePending)
		return true;
	return !PostmasterIsAlive();
}

static void
parse_target(SyncTarget *t)
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
static char *
object_key(const SyncTarget *t, TimestampTz window_start, const char *source, int part)
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

/* ---------------------------------------------------------------------
 * snapshots of exports (late rows)
 * --------------------------------------------------------------------- */

/*
 * The 64-bit form (xid8) of a 32-bit xid, relative to next, the next xid
 * to be assigned: the xid's epoch is next's epoch, or the one before when
 * the xid's 32 bits are above next's (the xid was assigned before next, so
 * it must have wrapped).  Exact for every xid assigned within 2^32 xids
 * before next, and for a snapshot's xmax (which may equal next).  An older xid (a frozen row more than 2^32 xids old:
 * xmin keeps the original xid after freezing) comes out 2^32 (or a
 * multiple) too *new*, never too old, so the worst it can do in the late-row
 * test is upload an old row again; it can never hide a late one.  The
 * special xids (bootstrap, frozen) map to epoch 0, i.e. older than anything.
 */
static FullTransactionId
widen_xid(FullTransactionId next, TransactionId xid)
{
	uint32		epoch = EpochFromFullTransactionId(next);

	if (!TransactionIdIsNormal(xid))
		return FullTransactionIdFromEpochAndXid(0, xid);
	if (xid > XidFromFullTransactionId(next) && epoch > 0)
		epoch--;
	return FullTransactionIdFromEpochAndXid(epoch, xid);
}

/*
 * logagg._xid8(xid) -> xid8.  PostgreSQL 15 has no cast from xid (what the
 * xmin system column is) to xid8 (what pg_visible_in_snapshot() takes).
 *
 * It runs for every row a cycle or retention scans, so the next xid is
 * cached in fn_extra (reading it takes XidGenLock).  A cached value is used
 * only for an xid that precedes it in modulo-2^32 order, i.e. lies within
 * the 2^31 xids before it; an xid assigned after the cache was filled would
 * have to be 2^31 xids newer to look like that, which wraparound protection
 * rules out while the cache lives (one query, at most one transaction).
 * Anything else re-reads the next xid, which makes the result exact.
 */
PG_FUNCTION_INFO_V1(logagg_xid8_of_xid);
Datum
logagg_xid8_of_xid(PG_FUNCTION_ARGS)
{
	TransactionId xid = DatumGetTransactionId(PG_GETARG_DATUM(0));
	FullTransactionId *next = (FullTransactionId *) fcinfo->flinfo->fn_extra;

	if (next == NULL)
	{
		next = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(FullTransactionId));
		*next = ReadNextFullTransactionId();
		fcinfo->flinfo->fn_extra = next;
	}
	else if (TransactionIdIsNormal(xid) &&
			 !TransactionIdPrecedes(xid, XidFromFullTransactionId(*next)))
		*next = ReadNextFullTransactionId();
	PG_RETURN_FULLTRANSACTIONID(widen_xid(*next, xid));
}

static TransactionId
next_xid(TransactionId x)
{
	TransactionIdAdvance(x);
	return x;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return (x > y) - (x < y);
}

static bool
xid_in_sorted(TransactionId xid, const TransactionId *xids, int n)
{
	return n > 0 && bsearch(&xid, xids, n, sizeof(TransactionId), xidComparator) != NULL;
}

/*
 * The text form of a pg_snapshot ("xmin:xmax:xip,...") that sees exactly
 * what snap sees, for rows in logagg.logs.  It is stored with the part
 * and is the lower boundary of the next part.
 *
 * pg_current_snapshot() is not enough: it lists only top-level xids, while
 * a row inserted in a subtransaction (SAVEPOINT, a PL/pgSQL EXCEPTION
 * block) carries the subtransaction's xid, which pg_visible_in_snapshot()
 * would then call visible although its top-level transaction was still in
 * progress -- and that row would be lost.  So:
 *  - subtransaction xids in snap->subxip are listed too;
 *  - if the snapshot's subxid list overflowed (a backend had more than 64
 *    subtransactions), every xid in [xmin, xmax) whose topmost parent is in
 *    progress is found in pg_subtrans, exactly as XidInMVCCSnapshot() would
 *    (valid: our own snapshot keeps pg_subtrans from being truncated above
 *    its xmin).  That walk costs one pg_subtrans lookup per xid in the
 *    range, and happens only with overflowed snapshots;
 *  - our own transaction's rows (logagg.sync_now() runs in the caller's
 *    transaction) are visible to the export although its xids are not in
 *    the snapshot; as one of them (the top-level xid or a subtransaction's)
 *    may be at or above xmax, xmax is moved up to the next xid and every
 *    other xid in between is listed as in progress (which is what they
 *    were to the export).
 */
static char *
export_snapshot_text(Snapshot snap)
{
	FullTransactionId next = ReadNextFullTransactionId();
	TransactionId xmin = snap->xmin;
	TransactionId xmax = snap->xmax;
	TransactionId *xip;
	uint64	   *out;
	int			nout = 0;
	int			cap;
	TransactionId own = GetTopTransactionIdIfAny();
	StringInfoData buf;

	/* top-level xids in progress, sorted for the lookups below */
	xip = palloc(sizeof(TransactionId) * Max(snap->xcnt, 1));
	memcpy(xip, snap->xip, sizeof(TransactionId) * snap->xcnt);
	qsort(xip, snap->xcnt, sizeof(TransactionId), xidComparator);

	cap = snap->xcnt + Max(snap->subxcnt, 0) + 16;
	out = palloc(sizeof(uint64) * cap);
#define ADD_XID(x) \
	do { \
		if (nout >= cap) \
		{ \
			cap *= 2; \
			out = repalloc_huge(out, sizeof(uint64) * cap); \
		} \
		out[nout++] = U64FromFullTransactionId(widen_xid(next, (x))); \
	} while (0)

	for (int i = 0; i < snap->xcnt; i++)
		ADD_XID(snap->xip[i]);

	if (!snap->suboverflowed)
	{
		for (int i = 0; i < snap->subxcnt; i++)
		{
			TransactionId x = snap->subxip[i];

			/* subxip is copied unfiltered: keep what falls inside [xmin, xmax) */
			if (TransactionIdFollowsOrEquals(x, xmin) && TransactionIdPrecedes(x, xmax))
				ADD_XID(x);
		}
	}
	else
	{
		TransactionId x = xmin;
		uint32		n = 0;

		for (; TransactionIdPrecedes(x, xmax); x = next_xid(x))
		{
			TransactionId top;

			if ((++n & 0xFFFF) == 0)
				CHECK_FOR_INTERRUPTS();
			if (xid_in_sorted(x, xip, snap->xcnt) || TransactionIdIsCurrentTransactionId(x))
				continue;
			top = SubTransGetTopmostTransaction(x);
			if (top != x && xid_in_sorted(top, xip, snap->xcnt))
				ADD_XID(x);
		}
	}

	if (TransactionIdIsValid(own))
	{
		/* see above: our own xids may lie beyond xmax */
		TransactionId newxmax = XidFromFullTransactionId(next);
		TransactionId x = xmax;

		for (; TransactionIdPrecedes(x, newxmax); x = next_xid(x))
		{
			if (!TransactionIdIsCurrentTransactionId(x))
				ADD_XID(x);
		}
		xmax = newxmax;
	}
#undef ADD_XID

	qsort(out, nout, sizeof(uint64), cmp_u64);
	initStringInfo(&buf);
	appendStringInfo(&buf, UINT64_FORMAT ":" UINT64_FORMAT ":",
					 U64FromFullTransactionId(widen_xid(next, xmin)),
					 U64FromFullTransactionId(widen_xid(next, xmax)));
	for (int i = 0; i < nout; i++)
	{
		if (i > 0 && out[i] == out[i - 1])
			continue;			/* a prepared transaction can appear twice */
		appendStringInfo(&buf, "%s" UINT64_FORMAT, i > 0 ? "," : "", out[i]);
	}
	pfree(out);
	pfree(xip);
	return buf.data;
}

/* ---------------------------------------------------------------------
 * one object: export, compress, upload, record
 * --------------------------------------------------------------------- */
typedef struct SyncItem
{
	TimestampTz window_start;
	TimestampTz window_end;
	char	   *source;
	int			part;
	char	   *prev_snapshot;	/* text of part-1's snapshot; NULL for part 0 */
	int64		new_rows;
} SyncItem;

typedef struct Export
{
	SyncTarget *t;
	S3Upload   *s3;
	FileUpload *file;
	z_stream	zs;
	bool		zs_ready;
	EVP_MD_CTX *md;
	char	   *zout;
	int64		bytes;			/* compressed */
	int64		raw_bytes;
	int64		rows;
	int64		min_id;
	int64		max_id;
	int			upload_parts;	/* S3 multipart parts, 0 for a single PUT */
	char	   *snapshot;		/* the export's snapshot (pg_snapshot text) */
	char		checksum[80];	/* "sha256:HEX" of the stored bytes */
	bool		failed;
	bool		empty;			/* no rows after all: nothing uploaded */
	char		err[SYNC_ERR_LEN];
} Export;

static void
export_emit(Export *ex, const char *data, size_t len)
{
	bool		ok;

	if (ex->failed || len == 0)
		return;
	EVP_DigestUpdate(ex->md, data, len);
	ex->bytes += len;
	if (ex->t->is_s3)
		ok = s3_upload_write(ex->s3, data, len, ex->err, sizeof(ex->err));
	else
		ok = file_upload_write(ex->file, data, len, ex->err, sizeof(ex->err));
	if (!ok)
		ex->failed = true;
}

/* Compress in[0..len) (flush = Z_NO_FLUSH or Z_FINISH) and emit the output. */
static void
export_deflate(Export *ex, const char *in, size_t len, int flush)
{
	ex->zs.next_in = (Bytef *) in;
	ex->zs.avail_in = len;
	do
	{
		int			rc;

		ex->zs.next_out = (Bytef *) ex->zout;
		ex->zs.avail_out = EXPORT_CHUNK;
		rc = deflate(&ex->zs, flush);
		if (rc == Z_STREAM_ERROR)
		{
			ex->failed = true;
			snprintf(ex->err, sizeof(ex->err), "zlib deflate failed");
			return;
		}
		export_emit(ex, ex->zout, EXPORT_CHUNK - ex->zs.avail_out);
		if (ex->failed)
			return;
	} while (ex->zs.avail_out == 0 || (flush == Z_FINISH && ex->zs.avail_in > 0));
}

static void
export_release(Export *ex)
{
	if (ex->s3)
		s3_upload_abort(ex->s3);
	if (ex->file)
		file_upload_abort(ex->file);
	ex->s3 = NULL;
	ex->file = NULL;
	if (ex->zs_ready)
		deflateEnd(&ex->zs);
	ex->zs_ready = false;
	if (ex->md)
		EVP_MD_CTX_free(ex->md);
	ex->md = NULL;
}

/*
 * Stream the item's rows through the target.  On return ex->failed says
 * whether the object was confirmed; the writer is always released.
 */
static void
export_rows(Export *ex, SyncItem *it, const char *key)
{
	Oid			argtypes[4] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID};
	Datum		values[4];
	Portal		portal;
	Snapshot	snap;
	StringInfoData in;
	StringInfoData query;
	SyncRowEncoder *enc;
	MemoryContext rows_cxt;
	MemoryContext oldcxt;
	int			nparts = 0;

	if (ex->t->is_s3)
		ex->s3 = s3_upload_begin(&ex->t->s3, key, ex->err, sizeof(ex->err));
	else
		ex->file = file_upload_begin(ex->t->dir, key, ex->err, sizeof(ex->err));
	if (ex->s3 == NULL && ex->file == NULL)
	{
		ex->failed = true;
		return;
	}
	ex->md = EVP_MD_CTX_new();
	EVP_DigestInit_ex(ex->md, EVP_sha256(), NULL);
	ex->zout = palloc(EXPORT_CHUNK);
	memset(&ex->zs, 0, sizeof(ex->zs));
	if (deflateInit2(&ex->zs, logagg_sync_gzip_level, Z_DEFLATED, 15 + 16, 8,
					 Z_DEFAULT_STRATEGY) != Z_OK)
	{
		ex->failed = true;
		snprintf(ex->err, sizeof(ex->err), "zlib deflateInit2 failed");
		export_release(ex);
		return;
	}
	ex->zs_ready = true;
	initStringInfo(&in);

	/*
	 * Each line is what row_to_json(l)::text gives (sync_ndjson.c); the
	 * late part's rows are those the previous part's snapshot did not see
	 * (schema/30_sync.sql: _xid8).
	 */
	enc = sync_row_encoder_create();
	initStringInfo(&query);
	appendStringInfo(&query, "SELECT %s FROM logagg.logs l "
					 "WHERE l.source = $1 AND l.ts >= $2 AND l.ts < $3",
					 sync_row_encoder_select_list(enc));
	if (it->prev_snapshot)
		appendStringInfoString(&query, " AND NOT pg_catalog.pg_visible_in_snapshot("
							   "logagg._xid8(l.xmin), $4::pg_catalog.pg_snapshot)");
	/* what encoding a fetched chunk allocates (detoasted values) goes here */
	rows_cxt = AllocSetContextCreate(CurrentMemoryContext, "logagg sync rows",
									 ALLOCSET_DEFAULT_SIZES);

	values[0] = CStringGetTextDatum(it->source);
	values[1] = TimestampTzGetDatum(it->window_start);
	values[2] = TimestampTzGetDatum(it->window_end);
	values[3] = it->prev_snapshot ? CStringGetTextDatum(it->prev_snapshot) : (Datum) 0;

	/*
	 * The export runs under a snapshot taken here and recorded with the
	 * part: with read_only = true, SPI starts the portal with the active
	 * snapshot, which is this one, and the portal keeps it until closed.
	 * (A fresh snapshot in READ COMMITTED; the transaction's in REPEATABLE
	 * READ -- either way the one the rows are read with.)
	 */
	PG_TRY();
	{
		snap = RegisterSnapshot(GetTransactionSnapshot());
		ex->snapshot = export_snapshot_text(snap);
		PushActiveSnapshot(snap);
		portal = SPI_cursor_open_with_args(NULL, query.data,
										   it->prev_snapshot ? 4 : 3, argtypes, values, NULL,
										   true, CURSOR_OPT_NO_SCROLL);
		PopActiveSnapshot();
		for (;;)
		{
			SPI_cursor_fetch(portal, true, EXPORT_FETCH);
			if (SPI_processed == 0)
				break;
			oldcxt = MemoryContextSwitchTo(rows_cxt);
			for (uint64 i = 0; i < SPI_processed; i++)
			{
				int64		id = 0;

				sync_row_encode(enc, SPI_tuptable->vals[i], SPI_tuptable->tupdesc, &in, &id);
				appendStringInfoChar(&in, '\n');
				if (ex->rows == 0 || id < ex->min_id)
					ex->min_id = id;
				if (ex->rows == 0 || id > ex->max_id)
					ex->max_id = id;
				ex->rows++;
			}
			MemoryContextSwitchTo(oldcxt);
			MemoryContextReset(rows_cxt);
			SPI_freetuptable(SPI_tuptable);
			if (in.len >= EXPORT_CHUNK)
			{
				ex->raw_bytes += in.len;
				export_deflate(ex, in.data, in.len, Z_NO_FLUSH);
				resetStringInfo(&in);
			}
			if (ex->failed)
				break;
			if (sync_interrupted())
			{
				ex->failed = true;
				snprintf(ex->err, sizeof(ex->err), "export interrupted (shutdown or cancel)");
				break;
			}
		}
		SPI_cursor_close(portal);
		UnregisterSnapshot(snap);
	}
	PG_CATCH();
	{
		/* an ERROR (cancel, SQL failure): give back the part buffer, abort multipart */
		export_release(ex);
		PG_RE_THROW();
	}
	PG_END_TRY();

	if (!ex->failed)
	{
		ex->raw_bytes += in.len;
		export_deflate(ex, in.data, in.len, Z_FINISH);
	}
	pfree(in.data);
	pfree(query.data);
	MemoryContextDelete(rows_cxt);
	if (!ex->failed && ex->rows == 0)
	{
		/*
		 * The rows the cycle found are gone (their partition was dropped
		 * in between): there is nothing to upload, and nothing to record.
		 * The writer is aborted below (no object is created).
		 */
		ex->empty = true;
	}
	if (!ex->failed && !ex->empty)
	{
		bool		ok;

		if (ex->t->is_s3)
			ok = s3_upload_finish(ex->s3, &nparts, ex->err, sizeof(ex->err));
		else
			ok = file_upload_finish(ex->file, ex->err, sizeof(ex->err));
		if (ok)
		{
			/* finish() freed the writer */
			ex->s3 = NULL;
			ex->file = NULL;
		}
		else
			ex->failed = true;
		ex->upload_parts = nparts;
	}
	if (ex->md)
	{
		unsigned char md[EVP_MAX_MD_SIZE];
		unsigned int mdlen = 0;

		EVP_DigestFinal_ex(ex->md, md, &mdlen);
		strcpy(ex->checksum, "sha256:");
		for (unsigned int i = 0; i < mdlen; i++)
			snprintf(ex->checksum + 7 + 2 * i, 3, "%02x", md[i]);
	}
	export_release(ex);
	/* sync_now() runs every object in one memory context: give this back */
	pfree(ex->zout);
	ex->zout = NULL;
}

static void
count_in_maintenance_slot(LogaggCounter c, uint64 n)
{
	int			i = logagg_slot_index(LOGAGG_WORKER_MAINTENANCE, 0);

	if (logagg_shared == NULL || i < 0 || i >= logagg_shared->nslots)
		return;
	pg_atomic_fetch_add_u64(&logagg_shared->slots[i].counters[c], n);
}

static void
note_last_sync(void)
{
	int			i = logagg_slot_index(LOGAGG_WORKER_MAINTENANCE, 0);

	if (logagg_shared == NULL || i < 0 || i >= logagg_shared->nslots)
		return;
	logagg_shared->slots[i].last_sync = GetCurrentTimestamp();
}

typedef enum SyncOutcome
{
	SYNC_FAILED,
	SYNC_NOTHING,				/* the rows were gone: nothing uploaded or recorded */
	SYNC_UPLOADED
} SyncOutcome;

/*
 * Export and upload one (window, source, part) and record the outcome.
 * Caller: inside a transaction with SPI connected.
 */
static SyncOutcome
sync_one(SyncItem *it)
{
	SyncTarget	t;
	Export		ex;
	char	   *key;
	TimestampTz started = GetCurrentTimestamp();
	Oid			argtypes[16] = {TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, INT4OID,
		TEXTOID, INT8OID, INT8OID, INT8OID, TEXTOID,
	INT8OID, INT8OID, INT4OID, TIMESTAMPTZOID, TEXTOID, INT4OID, TEXTOID};
	Datum		v[16];
	char		n[16];
	int			ret;

	parse_target(&t);
	key = object_key(&t, it->window_start, it->source, it->part);
	memset(&ex, 0, sizeof(ex));
	ex.t = &t;

	/* timestamps in the NDJSON are written in UTC whatever the session's TimeZone */
	(void) set_config_option("TimeZone", "UTC", PGC_USERSET, PGC_S_SESSION,
							 GUC_ACTION_LOCAL, true, 0, false);
	export_rows(&ex, it, key);
	if (ex.empty && !ex.failed)
		return SYNC_NOTHING;

	memset(n, ' ', sizeof(n));
	v[0] = TimestampTzGetDatum(it->window_start);
	v[1] = TimestampTzGetDatum(it->window_end);
	v[2] = CStringGetTextDatum(it->source);
	v[3] = Int32GetDatum(it->part);
	v[4] = CStringGetTextDatum(key);
	v[5] = Int64GetDatum(ex.rows);
	v[6] = Int64GetDatum(ex.bytes);
	v[7] = Int64GetDatum(ex.raw_bytes);
	v[8] = CStringGetTextDatum(ex.checksum);
	v[9] = Int64GetDatum(ex.min_id);
	v[10] = Int64GetDatum(ex.max_id);
	v[11] = Int32GetDatum(ex.upload_parts);
	v[12] = TimestampTzGetDatum(started);
	/* S3 servers and libcurl say what they like, cut to SYNC_ERR_LEN */
	logagg_make_valid_text(ex.err);
	v[13] = ex.failed ? CStringGetTextDatum(ex.err) : (Datum) 0;
	v[14] = Int32GetDatum(logagg_sync_interval_secs);
	v[15] = ex.snapshot ? CStringGetTextDatum(ex.snapshot) : (Datum) 0;
	if (!ex.failed)
		n[13] = 'n';
	else
	{
		for (int i = 5; i <= 11; i++)
			n[i] = 'n';
		n[15] = 'n';
	}
	ret = SPI_execute_with_args("SELECT logagg._sync_record($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16::pg_catalog.pg_snapshot)",
								16, argtypes, v, n, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: recording a sync attempt failed: %s", SPI_result_code_string(ret));

	if (ex.failed)
	{
		ereport(LOG,
				(errmsg("logagg: sync of window %s source \"%s\" part %d failed",
						timestamptz_to_str(it->window_start), it->source, it->part),
				 errdetail("%s", ex.err),
				 errhint("The upload is retried on a later cycle; see logagg.sync_log.")));
		if (sync_in_worker)
			logagg_set_last_error(ex.err);
		return SYNC_FAILED;
	}
	count_in_maintenance_slot(LC_SYNC_OBJECTS, 1);
	count_in_maintenance_slot(LC_SYNC_BYTES, ex.bytes);
	return SYNC_UPLOADED;
}

/* ---------------------------------------------------------------------
 * finding the work of a cycle
 * --------------------------------------------------------------------- */
static List *
fetch_pending(bool force, MemoryContext cxt)
{
	int			w = logagg_sync_window_secs();
	pg_time_t	now = timestamptz_to_time_t(GetCurrentTimestamp());
	pg_time_t	closed = ((now - logagg_sync_grace_secs) / w) * w;
	TimestampTz closed_before = time_t_to_timestamptz(closed);
	TimestampTz since;
	Oid			argtypes[4] = {INT4OID, TIMESTAMPTZOID, TIMESTAMPTZOID, BOOLOID};
	Datum		values[4];
	List	   *items = NIL;
	int			ret;

	if (logagg_sync_lookback_secs > 0)
		since = time_t_to_timestamptz(((closed - logagg_sync_lookback_secs) / w) * w);
	else
		TIMESTAMP_NOBEGIN(since);
	values[0] = Int32GetDatum(w);
	values[1] = TimestampTzGetDatum(closed_before);
	values[2] = TimestampTzGetDatum(since);
	values[3] = BoolGetDatum(force);
	ret = SPI_execute_with_args("SELECT * FROM logagg._sync_pending($1, $2, $3, $4)",
								4, argtypes, values, NULL, true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: finding windows to sync failed: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	td = SPI_tuptable->tupdesc;
		bool		isnull;
		MemoryContext old = MemoryContextSwitchTo(cxt);
		SyncItem   *it = palloc0(sizeof(SyncItem));

		it->window_start = DatumGetTimestampTz(SPI_getbinval(tup, td, 1, &isnull));
		it->window_end = DatumGetTimestampTz(SPI_getbinval(tup, td, 2, &isnull));
		it->source = SPI_getvalue(tup, td, 3);
		it->part = DatumGetInt32(SPI_getbinval(tup, td, 4, &isnull));
		/* the previous part's snapshot, as text (NULL for part 0) */
		it->prev_snapshot = SPI_getvalue(tup, td, 5);
		it->new_rows = DatumGetInt64(SPI_getbinval(tup, td, 6, &isnull));
		items = lappend(items, it);
		MemoryContextSwitchTo(old);
	}
	SPI_freetuptable(SPI_tuptable);
	return items;
}

/* ---------------------------------------------------------------------
 * maintenance worker entry: one transaction per object
 * --------------------------------------------------------------------- */
typedef struct WorkerCycle
{
	MemoryContext cxt;
	List	   *items;
	bool		locked;
	SyncItem   *current;
	int			uploaded;
	int			failed;
} WorkerCycle;

static void
cycle_start_txn(void *arg)
{
	WorkerCycle *c = arg;
	Datum		key = Int64GetDatum(SYNC_LOCK_KEY);
	Oid			argtype = INT8OID;
	bool		isnull;

	/* session lock: held across the per-object transactions below */
	if (SPI_execute_with_args("SELECT pg_try_advisory_lock($1)", 1, &argtype, &key,
							  NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "logagg: pg_try_advisory_lock failed");
	c->locked = DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull));
	if (c->locked)
		c->items = fetch_pending(false, c->cxt);
}

static void
cycle_item_txn(void *arg)
{
	WorkerCycle *c = arg;

	switch (sync_one(c->current))
	{
		case SYNC_UPLOADED:
			c->uploaded++;
			break;
		case SYNC_FAILED:
			c->failed++;
			break;
		case SYNC_NOTHING:
			break;
	}
}

static void
cycle_end_txn(void *arg)
{
	Datum		key = Int64GetDatum(SYNC_LOCK_KEY);
	Oid			argtype = INT8OID;

	(void) SPI_execute_with_args("SELECT pg_advisory_unlock($1)", 1, &argtype, &key,
								 NULL, false, 0);
}

/*
 * Run a cycle from the maintenance worker.  Returns the number of objects
 * uploaded.  Transactions are the worker's own (logagg_run_in_transaction),
 * so an ERROR exits the worker, which releases the advisory lock.
 */
int
logagg_sync_cycle_worker(bool force)
{
	WorkerCycle c;
	ListCell   *lc;

	if (!logagg_sync_configured())
		return 0;
	memset(&c, 0, sizeof(c));
	c.cxt = AllocSetContextCreate(TopMemoryContext, "logagg sync cycle", ALLOCSET_DEFAULT_SIZES);
	sync_in_worker = true;

	logagg_run_or_exit(cycle_start_txn, &c, "logagg: sync cycle");
	if (!c.locked)
	{
		/* logagg.sync_now() is running a cycle in some session right now */
		MemoryContextDelete(c.cxt);
		return 0;
	}
	foreach(lc, c.items)
	{
		if (ShutdownRequestPending)
			break;
		c.current = lfirst(lc);
		logagg_run_or_exit(cycle_item_txn, &c, "logagg: sync upload");
		logagg_worker_reload_if_needed();
	}
	(void) logagg_run_in_transaction(cycle_end_txn, &c, "logagg: sync cycle end");
	if (c.uploaded > 0 || c.failed > 0)
		ereport(LOG,
				(errmsg("logagg: sync cycle uploaded %d object(s), %d failed", c.uploaded, c.failed)));
	note_last_sync();
	MemoryContextDelete(c.cxt);
	return c.uploaded;
}

/* ---------------------------------------------------------------------
 * logagg.sync_now(): the same cycle, synchronously in this session
 * --------------------------------------------------------------------- */
PG_FUNCTION_INFO_V1(logagg_sync_now);
Datum
logagg_sync_now(PG_FUNCTION_ARGS)
{
	List	   *items;
	ListCell   *lc;
	int			uploaded = 0;
	int			failed = 0;
	Datum		key = Int64GetDatum(SYNC_LOCK_KEY);
	Oid			argtype = INT8OID;

	if (!logagg_sync_configured())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("cloud sync is not configured"),
				 errhint("Set logagg.sync_url to s3://BUCKET/PREFIX or file:///DIRECTORY and reload.")));

	sync_in_worker = false;
	if (SPI_connect() != SPI_OK_CONNECT)
		elog(ERROR, "logagg: SPI_connect failed");
	/* wait for a cycle the maintenance worker may be running */
	if (SPI_execute_with_args("SELECT pg_advisory_xact_lock($1)", 1, &argtype, &key,
							  NULL, false, 0) != SPI_OK_SELECT)
		elog(ERROR, "logagg: pg_advisory_xact_lock failed");
	items = fetch_pending(true, CurrentMemoryContext);
	foreach(lc, items)
	{
		CHECK_FOR_INTERRUPTS();
		switch (sync_one(lfirst(lc)))
		{
			case SYNC_UPLOADED:
				uploaded++;
				break;
			case SYNC_FAILED:
				failed++;
				break;
			case SYNC_NOTHING:
				break;
		}
	}
	SPI_finish();
	note_last_sync();
	if (failed > 0)
		ereport(WARNING,
				(errmsg("logagg: %d of %d object upload(s) failed", failed, failed + uploaded),
				 errdetail("Each failure is recorded with its error in logagg.sync_log."),
				 errhint("The maintenance worker retries them with backoff; run logagg.sync_now() again to retry now.")));
	PG_RETURN_INT32(uploaded);
}
