/*-------------------------------------------------------------------------
 *
 * sync_export.c
 *		The export of one object: the rows of a (window, source, part) read
 *		from a portal under one registered snapshot, encoded as NDJSON
 *		(sync_ndjson.c), gzip-compressed, hashed (sha256) and streamed to
 *		the target's writer (s3_client.c or sync_file.c).
 *
 * Streaming: rows come from a portal in chunks of EXPORT_FETCH rows,
 * are compressed as they come, and compressed bytes go straight to the
 * target (which holds at most one multipart part).  Nothing holds a whole
 * window, so memory is bounded whatever the window's size.  (On a Citus
 * cluster the shard's rows reach this node first: Citus keeps a remote
 * query's result in a tuplestore, which spills to disk past work_mem.)
 *
 * The writer is always released when sync_export_rows() returns or throws
 * (a multipart upload is aborted), and the outcome is left in the Export
 * for sync_record.c to record.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"

#include "logagg.h"
#include "sync_cycle.h"
#include "sync_ndjson.h"

#define EXPORT_FETCH		2000
#define EXPORT_CHUNK		(256 * 1024)

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
 * On a cluster: the snapshot and system identifier of the node that read
 * the rows, from the last two columns of the export query (the same on
 * every row: one statement).  They replace the local snapshot taken for
 * the portal, which says nothing about that node's xids.
 */
static void
export_node_snapshot(Export *ex, HeapTuple tup, TupleDesc desc, MemoryContext cxt)
{
	bool		isnull;
	char	   *snap = SPI_getvalue(tup, desc, desc->natts - 1);
	Datum		d = SPI_getbinval(tup, desc, desc->natts, &isnull);

	if (snap == NULL || isnull)
		elog(ERROR, "logagg: the export query returned no snapshot");
	ex->snapshot = MemoryContextStrdup(cxt, snap);
	ex->system_id = DatumGetInt64(d);
}

/*
 * Stream the item's rows through the target.  On return ex->failed says
 * whether the object was confirmed; the writer is always released.
 */
void
sync_export_rows(Export *ex, SyncItem *it, const char *key)
{
	Oid			argtypes[5] = {TEXTOID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, INT8OID};
	Datum		values[5];
	int			nargs;
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
	if (!it->cluster)
	{
		appendStringInfo(&query, "SELECT %s FROM logagg.logs l "
						 "WHERE l.source = $1 AND l.ts >= $2 AND l.ts < $3",
						 sync_row_encoder_select_list(enc));
		if (it->prev_snapshot)
			appendStringInfoString(&query, " AND NOT pg_catalog.pg_visible_in_snapshot("
								   "logagg._xid8(l.xmin), $4::pg_catalog.pg_snapshot)");
	}
	else
	{
		/*
		 * A distributed logs (docs/scale-out.md, "Cloud sync"): the rows of
		 * one source are in one shard on one node, and carry that node's
		 * xids.  This router query runs there as one statement, which also
		 * returns that statement's snapshot and the node's system
		 * identifier (after logs' columns, which the encoder skips), so
		 * the snapshot recorded is the one the rows were read with.
		 */
		appendStringInfo(&query, "SELECT %s, x.snap, x.system_id "
						 "FROM (SELECT logagg._export_snapshot() AS snap, "
						 "logagg._system_id() AS system_id OFFSET 0) x, logagg.logs l "
						 "WHERE l.source = $1 AND l.ts >= $2 AND l.ts < $3",
						 sync_row_encoder_select_list(enc));
		if (it->prev_snapshot)
			appendStringInfoString(&query, " AND NOT logagg._seen_here("
								   "l.xmin, $4::pg_catalog.pg_snapshot, $5)");
	}
	/* what encoding a fetched chunk allocates (detoasted values) goes here */
	rows_cxt = AllocSetContextCreate(CurrentMemoryContext, "logagg sync rows",
									 ALLOCSET_DEFAULT_SIZES);

	values[0] = CStringGetTextDatum(it->source);
	values[1] = TimestampTzGetDatum(it->window_start);
	values[2] = TimestampTzGetDatum(it->window_end);
	values[3] = it->prev_snapshot ? CStringGetTextDatum(it->prev_snapshot) : (Datum) 0;
	values[4] = Int64GetDatum(it->prev_system_id);
	nargs = !it->prev_snapshot ? 3 : it->cluster ? 5 : 4;

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
		ex->snapshot = sync_export_snapshot_text(snap);
		PushActiveSnapshot(snap);
		portal = SPI_cursor_open_with_args(NULL, query.data,
										   nargs, argtypes, values, NULL,
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

				if (it->cluster && ex->rows == 0)
					export_node_snapshot(ex, SPI_tuptable->vals[i], SPI_tuptable->tupdesc, oldcxt);
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
