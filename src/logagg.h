/*-------------------------------------------------------------------------
 *
 * logagg.h
 *		Declarations shared by every part of the logagg extension: GUC
 *		variables, the shared-memory worker registry, and the entry points
 *		each responsibility exports to the others.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOGAGG_H
#define LOGAGG_H

#include "postgres.h"

#include "access/tupdesc.h"
#include "port/atomics.h"
#include "postmaster/bgworker.h"
#include "postmaster/interrupt.h"
#include "storage/latch.h"
#include "storage/spin.h"
#include "utils/timestamp.h"

#define LOGAGG_SCHEMA			"logagg"
/* Owns the extension's objects; the background workers run as it. */
#define LOGAGG_OWNER_ROLE		"logagg_owner"
#define LOGAGG_MAX_DISPATCH		64

/* ---- GUC variables (guc.c) ---- */
extern char *logagg_database;
extern char *logagg_listen_address;
extern int	logagg_port;
extern int	logagg_auth;			/* LOGAGG_AUTH_* */
extern char *logagg_tls_cert_file;
extern char *logagg_tls_key_file;
extern char *logagg_metrics_token;
extern int	logagg_max_connections;
extern int	logagg_max_message_bytes;	/* bytes */
extern int	logagg_batch_rows;
extern int	logagg_batch_delay_ms;
extern int	logagg_dispatch_workers;
extern int	logagg_dispatch_concurrency;
extern int	logagg_alert_timeout_ms;
extern int	logagg_alert_max_attempts;
extern int	logagg_partition_interval_secs;	/* parsed from the string GUC */
extern int	logagg_retention_secs;		/* 0 = keep forever */
extern int	logagg_max_ts_past_secs;	/* -1 = no limit */
extern int	logagg_max_ts_future_secs;	/* -1 = no limit */
extern char *logagg_sync_url;
extern int	logagg_sync_interval_secs;
extern char *logagg_s3_endpoint;
extern char *logagg_s3_region;
extern char *logagg_s3_access_key_id;
extern char *logagg_s3_secret_access_key;
extern int	logagg_reader_port;		/* 0 = no reader worker */
extern int	logagg_reader_statement_timeout_ms;
extern int	logagg_reader_max_queries;
extern int	logagg_tail_buffer_kb;

#define LOGAGG_AUTH_TOKEN	0
#define LOGAGG_AUTH_TRUST	1

extern void logagg_define_gucs(void);

/* ---- keeping credentials out of the server log (log_redact.c) ---- */
extern void logagg_install_log_redaction(void);

/* ---- shared memory worker registry (shmem.c) ---- */
typedef enum LogaggWorkerKind
{
	LOGAGG_WORKER_INGEST = 0,
	LOGAGG_WORKER_DISPATCH,
	LOGAGG_WORKER_MAINTENANCE,
	LOGAGG_WORKER_READER
} LogaggWorkerKind;

/* Counters each worker publishes; logagg.status() shows them all. */
typedef enum LogaggCounter
{
	LC_CONNECTIONS = 0,			/* currently open connections (gauge) */
	LC_CONNECTIONS_TOTAL,		/* accepted since start */
	LC_ROWS,					/* rows stored */
	LC_BATCHES,					/* transactions committed */
	LC_REJECTS,					/* invalid records */
	LC_DUPLICATES,				/* records dropped as already committed */
	LC_ALERTS_QUEUED,			/* alert_queue rows written */
	LC_ALERTS_SENT,
	LC_ALERTS_FAILED,
	LC_SYNC_OBJECTS,
	LC_SYNC_BYTES,
	LC_PARTITIONS_CREATED,
	LC_PARTITIONS_DROPPED,
	LC_RELOADS,					/* SIGHUPs processed */
	LC_REGEX_TIMEOUTS,			/* rule/silence regexes out of time */
	LC_NUM_COUNTERS
} LogaggCounter;

typedef struct LogaggWorkerSlot
{
	char		name[BGW_MAXLEN];
	LogaggWorkerKind kind;
	int			index;			/* dispatch worker number, else 0 */
	pid_t		pid;			/* 0 while not running */
	Latch	   *latch;			/* the worker's MyLatch, valid while pid != 0 */
	bool		extension_ready;	/* found the extension in its database */
	TimestampTz started_at;
	TimestampTz last_activity;
	TimestampTz last_sync;
	pg_atomic_uint64 counters[LC_NUM_COUNTERS];
	slock_t		mutex;			/* protects last_error */
	char		last_error[256];
	TimestampTz last_error_at;
} LogaggWorkerSlot;

typedef struct LogaggShared
{
	int			nslots;
	pg_atomic_uint32 rules_generation;	/* bumped on any rules change */
	/* pending (not dead) rows of logagg.alert_queue, for /metrics; -1 unknown */
	pg_atomic_uint64 alert_queue_depth;
	LogaggWorkerSlot slots[FLEXIBLE_ARRAY_MEMBER];
} LogaggShared;

extern LogaggShared *logagg_shared;

extern void logagg_shmem_init_hooks(void);
extern int	logagg_slot_count(void);
extern int	logagg_slot_index(LogaggWorkerKind kind, int index);
extern LogaggWorkerSlot *logagg_slot_of(LogaggWorkerKind kind, int index);
extern LogaggWorkerSlot *logagg_my_slot(void);
extern void logagg_slot_attach(LogaggWorkerKind kind, int index);
extern void logagg_count(LogaggCounter c, uint64 n);
extern void logagg_set_last_error(const char *msg);
extern void logagg_wake_workers(LogaggWorkerKind kind);
extern bool logagg_refresh_alert_queue_depth(bool force);
extern int64 logagg_alert_queue_depth(void);

/*
 * ---- common worker machinery (worker.c) ----
 * SIGTERM sets PostgreSQL's ShutdownRequestPending, SIGHUP its
 * ConfigReloadPending (postmaster/interrupt.h).
 */
extern volatile sig_atomic_t logagg_sigterm_interrupts;
extern void logagg_worker_setup(LogaggWorkerKind kind, int index);
extern bool logagg_wait_for_extension(void);
extern bool logagg_worker_become_owner(void);
extern bool logagg_ready_deferred;
extern void logagg_worker_reload_if_needed(void);
extern void logagg_worker_process_interrupts(void);
extern long logagg_timeout_until(TimestampTz deadline);
extern bool logagg_run_in_transaction(void (*fn) (void *arg), void *arg,
									  const char *what);
extern void logagg_run_or_exit(void (*fn) (void *arg), void *arg,
							   const char *what);
extern void logagg_exit_extension_dropped(void);
extern bool logagg_worker_periodic_check(void);
extern TimestampTz logagg_worker_next_check(void);

/* per-kind main functions */
extern PGDLLEXPORT void logagg_ingest_main(Datum arg);
extern PGDLLEXPORT void logagg_dispatch_main(Datum arg);
extern PGDLLEXPORT void logagg_maintenance_main(Datum arg);
extern PGDLLEXPORT void logagg_reader_main(Datum arg);
extern PGDLLEXPORT void logagg_reader_query_main(Datum arg);

/* ---- classification (classify.c) ---- */
typedef enum LogaggSeverity
{
	LOGAGG_SEV_CRITICAL = 0,	/* same order as the SQL enum */
	LOGAGG_SEV_HIGH,
	LOGAGG_SEV_LOW
} LogaggSeverity;

extern const char *const logagg_severity_names[];
/* the LogaggSeverity of a severity name, or -1 (NULL or unknown) */
extern int	logagg_severity_index(const char *name);
extern const char *logagg_normalize_level(const char *level, int len);
extern const char *logagg_level_from_severity_number(int n);
extern LogaggSeverity logagg_classify_record(int status, bool has_status,
											 const char *level,
											 const char *source,
											 const char *message);
extern void logagg_rules_ensure_loaded(void);

/* regex_limit.c */
extern int	logagg_regex_timeout_ms;
extern bool logagg_regex_match(text *pattern, const char *subject, int len,
							   Oid collation, const char *what);
extern void logagg_regex_budget_end(void);

/* ---- alert fingerprints (fingerprint.c) ---- */
#define LOGAGG_FINGERPRINT_LEN 16
struct StringInfoData;
extern void logagg_mask_message(const char *message, struct StringInfoData *out);
extern void logagg_fingerprint(const char *source, LogaggSeverity sev, int status,
							   bool has_status, const char *message,
							   char out[LOGAGG_FINGERPRINT_LEN + 1]);

/* ---- text from outside, repaired before it is stored (valid_text.c) ---- */
extern void logagg_make_valid_text(char *s);
extern int	logagg_clip_len(const char *s, int len, int limit);

/* ---- partitions (partitions.c) ---- */
extern int	logagg_create_partitions(void);

/* ---- sources and tokens (sources.c) ---- */
#define LOGAGG_TOKEN_HASH_LEN 32
extern void logagg_token_hash(const char *token, size_t len,
							  uint8 out[LOGAGG_TOKEN_HASH_LEN]);
extern bool logagg_timingsafe_equal(const uint8 *a, const uint8 *b, size_t len);
extern bool logagg_valid_source_name(const char *name);
extern bool logagg_source_pattern_match(const char *patterns, const char *name);
extern char *logagg_new_token(const char *prefix, bytea **hash_out);

/* ---- reader tokens (reader_tokens.c) and search indexes (search_index.c) ---- */
extern bool logagg_index_messages;
extern bool logagg_index_attrs;
extern void logagg_reader_tokens_refresh(void);
extern bool logagg_reader_token_sources(const char *token, char *sources, int size);
extern bool logagg_reader_token_lookup(const char *token, uint8 *hash, char *name,
									   int namesize, char *sources, int size);
extern bool logagg_reader_hash_valid(const uint8 *hash);
extern void logagg_build_search_indexes(void);

/* ---- rows of SQL functions' results, decoded by name (result_columns.c) ---- */

/*
 * One column a C caller expects at a fixed position of a SQL function's
 * result.  A caller keeps an array indexed by its Anum_ constants minus 1,
 * so that the names, the types and the positions are written in one place.
 */
typedef struct LogaggResultColumn
{
	const char *name;
	Oid			type;
} LogaggResultColumn;

extern void logagg_check_result_columns(TupleDesc desc, const LogaggResultColumn *cols,
										int ncols, const char *function);

/* node_role.c */
extern bool logagg_citus_worker_node(void);
extern bool logagg_logs_distributed(void);
extern int	logagg_cluster_alert_threshold(void);

#endif							/* LOGAGG_H */
