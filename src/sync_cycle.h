/*-------------------------------------------------------------------------
 *
 * sync_cycle.h
 *		Declarations shared by the files of the sync cycle (they need
 *		postgres.h, unlike sync.h, which the libcurl/POSIX writers include):
 *		sync.c (GUCs, the cycle, logagg.sync_now()), sync_target.c
 *		(logagg.sync_url and object keys), sync_pending.c (finding the
 *		work), sync_snapshot.c (snapshots recorded with each part),
 *		sync_export.c (streaming gzip NDJSON to the target) and
 *		sync_record.c (the outcome in logagg.sync_log).  docs/sync.md,
 *		"Source files", says which file does what.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOGAGG_SYNC_CYCLE_H
#define LOGAGG_SYNC_CYCLE_H

#include <zlib.h>
#include <openssl/evp.h>

#include "nodes/pg_list.h"
#include "utils/snapshot.h"
#include "utils/timestamp.h"

#include "logagg.h"
#include "sync.h"

/* ---- where the objects go (sync_target.c) ---- */

/* parsed from logagg.sync_url on every object, so a reload takes effect at once */
typedef struct SyncTarget
{
	bool		is_s3;
	char		bucket[256];
	char		prefix[1024];	/* without leading/trailing "/" */
	char		dir[1024];		/* file:// target */
	S3Config	s3;
} SyncTarget;

extern void sync_parse_target(SyncTarget *t);
extern char *sync_object_key(const SyncTarget *t, TimestampTz window_start,
							 const char *source, int part);

/* ---- one object's worth of work (sync_pending.c) ---- */
typedef struct SyncItem
{
	TimestampTz window_start;
	TimestampTz window_end;
	char	   *source;
	int			part;
	char	   *prev_snapshot;	/* text of part-1's snapshot; NULL for part 0 */
	int64		new_rows;
	/* logagg.logs is distributed by Citus (docs/scale-out.md, "Cloud sync") */
	bool		cluster;
	/* cluster: system identifier of the node prev_snapshot was taken on */
	int64		prev_system_id;
} SyncItem;

extern List *sync_fetch_pending(bool force, MemoryContext cxt);

/* ---- the export of one object (sync_export.c) ---- */
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
	int64		system_id;		/* cluster: the node the snapshot is of */
	char		checksum[80];	/* "sha256:HEX" of the stored bytes */
	bool		failed;
	bool		empty;			/* no rows after all: nothing uploaded */
	char		err[SYNC_ERR_LEN];
} Export;

extern void sync_export_rows(Export *ex, SyncItem *it, const char *key);

/* ---- the snapshot recorded with a part (sync_snapshot.c) ---- */
extern char *sync_export_snapshot_text(Snapshot snap);

/* ---- the outcome in logagg.sync_log (sync_record.c) ---- */
extern bool sync_record_outcome(SyncItem *it, const char *key, Export *ex,
								TimestampTz started);
extern void sync_count_in_maintenance_slot(LogaggCounter c, uint64 n);
extern void sync_note_last_sync(void);

/* ---- the cycle (sync.c) ---- */
extern bool sync_in_worker;
extern bool sync_interrupted(void);

#endif							/* LOGAGG_SYNC_CYCLE_H */
