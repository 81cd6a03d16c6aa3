/*-------------------------------------------------------------------------
 *
 * sync.h
 *		Cloud sync (docs/design.md §6): declarations shared by the sync
 *		cycle (sync.c and the sync_*.c files it uses, which share
 *		sync_cycle.h too), s3_client.c (S3 uploads signed with SigV4),
 *		sync_file.c (file:// target), retention.c and the maintenance
 *		worker.
 *
 * The two targets offer the same streaming "object writer" interface:
 * begin(key) -> write(bytes)* -> finish() or abort().  Memory held by a
 * writer is bounded (one part buffer for S3, nothing for files), so a
 * window of any size can be exported.
 *
 * s3_client.c and sync_file.c do not call into PostgreSQL (no palloc, no
 * ereport): errors come back as text in a caller-supplied buffer, so a
 * failed upload is recorded in logagg.sync_log instead of aborting the
 * transaction, and nothing longjmps out of a libcurl callback.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOGAGG_SYNC_H
#define LOGAGG_SYNC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define SYNC_ERR_LEN 512

/* ---- GUCs of the sync subsystem (sync.c) ---- */
extern int	logagg_sync_grace_secs;
extern int	logagg_sync_part_size;		/* bytes */
extern int	logagg_sync_timeout_ms;
extern int	logagg_sync_gzip_level;
extern int	logagg_sync_lookback_secs;	/* 0 = every window */
extern void logagg_define_sync_gucs(void);

/* ---- S3 (s3_client.c) ---- */
typedef struct S3Config
{
	const char *endpoint;		/* "" = AWS (virtual-hosted style) */
	const char *region;
	const char *access_key;
	const char *secret_key;
	const char *bucket;
	size_t		part_size;		/* multipart above this many bytes */
	long		timeout_ms;		/* stall / connect timeout */
	bool		(*interrupted) (void);	/* polled during transfers */
} S3Config;

typedef struct S3Upload S3Upload;

extern S3Upload *s3_upload_begin(const S3Config *cfg, const char *key,
								 char *err, size_t errlen);
extern bool s3_upload_write(S3Upload *u, const void *data, size_t len,
							char *err, size_t errlen);
extern bool s3_upload_finish(S3Upload *u, int *nparts, char *err, size_t errlen);
extern void s3_upload_abort(S3Upload *u);
extern void s3_uri_encode(const char *in, bool keep_slash, char *out, size_t outlen);
extern void s3_client_cleanup(void);

/* ---- local directory (sync_file.c) ---- */
typedef struct FileUpload FileUpload;

extern FileUpload *file_upload_begin(const char *dir, const char *key,
									 char *err, size_t errlen);
extern bool file_upload_write(FileUpload *u, const void *data, size_t len,
							  char *err, size_t errlen);
extern bool file_upload_finish(FileUpload *u, char *err, size_t errlen);
extern void file_upload_abort(FileUpload *u);

/* ---- the cycle (sync.c) and retention (retention.c) ---- */
extern bool logagg_sync_configured(void);
extern int	logagg_sync_window_secs(void);
extern int	logagg_sync_cycle_worker(bool force);
extern int	logagg_run_retention(void);

#endif							/* LOGAGG_SYNC_H */
