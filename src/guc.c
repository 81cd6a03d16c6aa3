/*-------------------------------------------------------------------------
 *
 * guc.c
 *		The logagg.* configuration parameters (docs/design.md §4), with
 *		their context, unit and validation.  The logagg.sync_* ones are
 *		defined in sync.c (logagg_define_sync_gucs, called from here).
 *
 * Parameters that shape shared memory or sockets (listen address, port,
 * number of dispatch workers...) are PGC_POSTMASTER; everything a running
 * worker can pick up on SIGHUP is PGC_SIGHUP.  S3 credentials are
 * GUC_SUPERUSER_ONLY so that SHOW and pg_settings hide them from ordinary
 * roles.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <ctype.h>
#include <limits.h>

#include "miscadmin.h"
#include "utils/guc.h"

#include "alert_rules.h"
#include "logagg.h"
#include "sync.h"

char	   *logagg_database = NULL;
char	   *logagg_listen_address = NULL;
int			logagg_port = 7480;
int			logagg_auth = LOGAGG_AUTH_TOKEN;
char	   *logagg_tls_cert_file = NULL;
char	   *logagg_tls_key_file = NULL;
char	   *logagg_metrics_token = NULL;
int			logagg_max_connections = 1000;
int			logagg_max_message_bytes = 1024 * 1024;
int			logagg_batch_rows = 5000;
int			logagg_batch_delay_ms = 10;
int			logagg_dispatch_workers = 2;
int			logagg_dispatch_concurrency = 32;
int			logagg_alert_timeout_ms = 10000;
int			logagg_alert_max_attempts = 8;
int			logagg_partition_interval_secs = 86400;
int			logagg_retention_secs = 0;
int			logagg_max_ts_past_secs = 7 * 86400;
int			logagg_max_ts_future_secs = 3600;
char	   *logagg_sync_url = NULL;
int			logagg_sync_interval_secs = 300;
char	   *logagg_s3_endpoint = NULL;
char	   *logagg_s3_region = NULL;
char	   *logagg_s3_access_key_id = NULL;
char	   *logagg_s3_secret_access_key = NULL;
int			logagg_reader_port = 7481;
int			logagg_reader_statement_timeout_ms = 10000;
int			logagg_reader_max_queries = 4;
int			logagg_tail_buffer_kb = 4096;

static char *partition_interval_string = NULL;
static char *retention_string = NULL;

static const struct config_enum_entry auth_options[] = {
	{"token", LOGAGG_AUTH_TOKEN, false},
	{"trust", LOGAGG_AUTH_TRUST, false},
	{NULL, 0, false}
};

/* GUC "extra" data must be malloc'd: the GUC machinery frees it with free(). */
static bool
set_int_extra(void **extra, int value)
{
	int		   *e = malloc(sizeof(int));

	if (e == NULL)
		return false;
	*e = value;
	*extra = e;
	return true;
}

/*
 * Parse a duration such as "1 day", "6h", "90 minutes", "2 weeks" or "0"
 * into seconds.  We accept PostgreSQL's own unit spellings (s, min, h, d)
 * and the spelled-out words an interval literal would use, because the
 * documented default is "1 day" but people write "1d" in postgresql.conf.
 * Months and years are refused: they have no fixed length, and partitions
 * and sync windows must tile time exactly.
 */
static bool
parse_duration_secs(const char *str, int *secs)
{
	const char *p = str;
	long		total = 0;
	bool		any = false;

	while (*p)
	{
		long		n = 0;
		char		unit[16];
		int			ulen = 0;
		long		mult;

		while (isspace((unsigned char) *p))
			p++;
		if (*p == '\0')
			break;
		if (!isdigit((unsigned char) *p))
			return false;
		while (isdigit((unsigned char) *p))
		{
			n = n * 10 + (*p - '0');
			if (n > INT_MAX)
				return false;
			p++;
		}
		while (isspace((unsigned char) *p))
			p++;
		while (isalpha((unsigned char) *p) && ulen < (int) sizeof(unit) - 1)
			unit[ulen++] = tolower((unsigned char) *p++);
		unit[ulen] = '\0';
		if (isalpha((unsigned char) *p))
			return false;

		if (ulen == 0)
		{
			/* a bare number: only "0" makes sense (means "off") */
			if (n != 0 || any)
				return false;
			mult = 1;
		}
		else if (strcmp(unit, "s") == 0 || strcmp(unit, "sec") == 0 ||
				 strcmp(unit, "secs") == 0 || strcmp(unit, "second") == 0 ||
				 strcmp(unit, "seconds") == 0)
			mult = 1;
		else if (strcmp(unit, "min") == 0 || strcmp(unit, "mins") == 0 ||
				 strcmp(unit, "minute") == 0 || strcmp(unit, "minutes") == 0)
			mult = 60;
		else if (strcmp(unit, "h") == 0 || strcmp(unit, "hour") == 0 ||
				 strcmp(unit, "hours") == 0)
			mult = 3600;
		else if (strcmp(unit, "d") == 0 || strcmp(unit, "day") == 0 ||
				 strcmp(unit, "days") == 0)
			mult = 86400;
		else if (strcmp(unit, "w") == 0 || strcmp(unit, "week") == 0 ||
				 strcmp(unit, "weeks") == 0)
			mult = 7 * 86400;
		else
			return false;

		total += n * mult;
		if (total > INT_MAX)
			return false;
		any = true;
	}
	if (!any)
		return false;
	*secs = (int) total;
	return true;
}

/*
 * The parse-and-report part of the duration parameters' check hooks: true
 * with *secs set when newval is a duration of at least min_secs; else false
 * with the GUC error set to '"VALUE" is not WHAT.' and the hint.
 */
static bool
check_duration(const char *newval, int min_secs, const char *what,
			   const char *hint, int *secs)
{
	if (parse_duration_secs(newval, secs) && *secs >= min_secs)
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errdetail("\"%s\" is not %s.", newval, what);
	GUC_check_errhint("%s", hint);
	return false;
}

static bool
check_partition_interval(char **newval, void **extra, GucSource source)
{
	int			secs;

	if (!check_duration(*newval, 60, "a duration of at least one minute",
						"Use a fixed-length duration such as \"1 day\", \"6h\" or \"15min\"; months are not supported.",
						&secs))
		return false;
	/* partitions must tile days exactly, or a day exactly */
	if (secs < 86400 ? (86400 % secs) != 0 : (secs % 86400) != 0)
	{
		GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
		GUC_check_errdetail("A partition interval must divide a day evenly or be a whole number of days.");
		GUC_check_errhint("Use for example \"1h\", \"6h\", \"1 day\" or \"7 days\".");
		return false;
	}
	return set_int_extra(extra, secs);
}

static void
assign_partition_interval(const char *newval, void *extra)
{
	logagg_partition_interval_secs = *(int *) extra;
}

static bool
check_retention(char **newval, void **extra, GucSource source)
{
	int			secs;

	if (!check_duration(*newval, 0, "a duration",
						"Use 0 to keep logs forever, or a duration such as \"30 days\".",
						&secs))
		return false;
	return set_int_extra(extra, secs);
}

static void
assign_retention(const char *newval, void *extra)
{
	logagg_retention_secs = *(int *) extra;
}

static bool
check_sync_url(char **newval, void **extra, GucSource source)
{
	const char *v = *newval;

	if (v == NULL || v[0] == '\0')
		return true;
	if (strncmp(v, "s3://", 5) == 0 && strlen(v) > 5 && v[5] != '/')
		return true;
	if (strncmp(v, "file:///", 8) == 0)
		return true;
	GUC_check_errcode(ERRCODE_INVALID_PARAMETER_VALUE);
	GUC_check_errdetail("logagg.sync_url must be empty, s3://BUCKET[/PREFIX] or file:///DIRECTORY.");
	return false;
}

void
logagg_define_gucs(void)
{
	/*
	 * PostgreSQL refuses PGC_POSTMASTER variables defined after start-up,
	 * which is when a server without logagg in shared_preload_libraries
	 * loads it (CREATE EXTENSION, or Citus creating the extension on
	 * every node).  There no worker runs, so these settings have nothing
	 * to configure: define them as reloadable rather than fail.
	 */
	GucContext	pm = process_shared_preload_libraries_in_progress ? PGC_POSTMASTER : PGC_SIGHUP;

	DefineCustomStringVariable("logagg.database",
							   "Database the logagg workers connect to.",
							   "CREATE EXTENSION logagg must be run in this database.",
							   &logagg_database, "postgres",
							   pm, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("logagg.listen_address",
							   "Address the ingest worker listens on.",
							   NULL, &logagg_listen_address, "127.0.0.1",
							   pm, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.port",
							"TCP port for WebSocket and HTTP ingest.",
							NULL, &logagg_port, 7480, 1, 65535,
							pm, 0, NULL, NULL, NULL);
	DefineCustomEnumVariable("logagg.auth",
							 "Client authentication: token (bearer tokens from logagg.create_source) or trust.",
							 NULL, &logagg_auth, LOGAGG_AUTH_TOKEN, auth_options,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("logagg.tls_cert_file",
							   "TLS certificate for wss:// (empty: plain ws://).",
							   NULL, &logagg_tls_cert_file, "",
							   pm, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("logagg.tls_key_file",
							   "TLS private key for wss://.",
							   NULL, &logagg_tls_key_file, "",
							   pm, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("logagg.metrics_token",
							   "Bearer token GET /metrics requires (empty: /metrics is open).",
							   NULL, &logagg_metrics_token, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.max_connections",
							"Maximum concurrent ingest connections; more get HTTP 503.",
							NULL, &logagg_max_connections, 1000, 1, 100000,
							pm, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.max_message_bytes",
							"Largest WebSocket message or HTTP body accepted; larger frames close with 1009.",
							NULL, &logagg_max_message_bytes, 1024 * 1024, 1024, 256 * 1024 * 1024,
							PGC_SIGHUP, GUC_UNIT_BYTE, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.batch_rows",
							"Rows per ingest transaction at most.",
							NULL, &logagg_batch_rows, 5000, 1, 1000000,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.batch_delay",
							"Longest a received record waits before its batch is committed.",
							NULL, &logagg_batch_delay_ms, 10, 0, 10000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.max_ts_past",
							"How far before its arrival a record's ts may lie; older records are rejected (-1: no limit).",
							"Each late hour of a source becomes its own partition range and sync object, so the window bounds what one client can make the server write.",
							&logagg_max_ts_past_secs, 7 * 86400, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.max_ts_future",
							"How far after its arrival a record's ts may lie; later records are rejected (-1: no limit).",
							NULL, &logagg_max_ts_future_secs, 3600, -1, INT_MAX,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.dispatch_workers",
							"Number of alert dispatch workers.",
							NULL, &logagg_dispatch_workers, 2, 0, LOGAGG_MAX_DISPATCH,
							pm, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.dispatch_concurrency",
							"In-flight notification requests per dispatch worker.",
							NULL, &logagg_dispatch_concurrency, 32, 1, 1024,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.alert_timeout",
							"Timeout of one notification request.",
							NULL, &logagg_alert_timeout_ms, 10000, 100, 600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.alert_max_attempts",
							"Delivery attempts before an alert is marked dead.",
							NULL, &logagg_alert_max_attempts, 8, 1, 100,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("logagg.partition_interval",
							   "Time span of one logagg.logs partition (and of one sync window).",
							   "A fixed duration that divides a day, or whole days: \"1 day\", \"1h\", \"7 days\".",
							   &partition_interval_string, "1 day",
							   PGC_SIGHUP, 0,
							   check_partition_interval, assign_partition_interval, NULL);
	DefineCustomStringVariable("logagg.retention",
							   "Drop log partitions older than this (0 keeps logs forever).",
							   "Partitions are dropped only once every window in them is synced, when a sync target is configured.",
							   &retention_string, "0",
							   PGC_SIGHUP, 0, check_retention, assign_retention, NULL);
	DefineCustomStringVariable("logagg.sync_url",
							   "Cloud sync target: s3://bucket/prefix or file:///dir; empty disables sync.",
							   NULL, &logagg_sync_url, "",
							   PGC_SIGHUP, 0, check_sync_url, NULL, NULL);
	DefineCustomIntVariable("logagg.sync_interval",
							"Time between cloud sync cycles.",
							NULL, &logagg_sync_interval_secs, 300, 1, 7 * 86400,
							PGC_SIGHUP, GUC_UNIT_S, NULL, NULL, NULL);
	DefineCustomStringVariable("logagg.s3_endpoint",
							   "S3-compatible endpoint URL (empty: AWS S3).",
							   NULL, &logagg_s3_endpoint, "",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("logagg.s3_region",
							   "Region used in SigV4 signatures.",
							   NULL, &logagg_s3_region, "us-east-1",
							   PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomStringVariable("logagg.s3_access_key_id",
							   "S3 access key id.",
							   NULL, &logagg_s3_access_key_id, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY, NULL, NULL, NULL);
	DefineCustomStringVariable("logagg.s3_secret_access_key",
							   "S3 secret access key.",
							   NULL, &logagg_s3_secret_access_key, "",
							   PGC_SIGHUP, GUC_SUPERUSER_ONLY | GUC_NO_SHOW_ALL, NULL, NULL, NULL);

	DefineCustomIntVariable("logagg.regex_timeout",
							"Longest the message_regex patterns of logagg.rules may run on one record (and a silence's on one alert); 0 = no limit.",
							"A pattern that runs out of time counts as not matching; the record is stored all the same.",
							&logagg_regex_timeout_ms, 100, 0, 60000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);

	DefineCustomBoolVariable("logagg.index_messages",
							 "Give each partition of logagg.logs a trigram GIN index on message, for logagg.search() (needs pg_trgm).",
							 "New partitions get it when created; existing ones from the maintenance worker, with CREATE INDEX CONCURRENTLY.",
							 &logagg_index_messages, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomBoolVariable("logagg.index_attrs",
							 "Give each partition of logagg.logs a jsonb_path_ops GIN index on attrs, for attrs containment (@>).",
							 "New partitions get it when created; existing ones from the maintenance worker, with CREATE INDEX CONCURRENTLY.",
							 &logagg_index_attrs, false,
							 PGC_SIGHUP, 0, NULL, NULL, NULL);

	DefineCustomIntVariable("logagg.reader_port",
							"TCP port of the reader worker (live tail, JSON API, web console); 0 = no reader worker.",
							"It listens on logagg.listen_address, like the ingest worker.",
							&logagg_reader_port, 7481, 0, 65535,
							pm, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.reader_statement_timeout",
							"Longest a query of the reader's JSON API (or a tail's since=N replay) may run.",
							NULL, &logagg_reader_statement_timeout_ms, 10000, 100, 3600000,
							PGC_SIGHUP, GUC_UNIT_MS, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.reader_max_queries",
							"Queries the reader runs at once (each in a background worker of its own); more get HTTP 503.",
							"Each one takes a slot of max_worker_processes while it runs.",
							&logagg_reader_max_queries, 4, 1, 64,
							PGC_SIGHUP, 0, NULL, NULL, NULL);
	DefineCustomIntVariable("logagg.tail_buffer",
							"Shared memory the ingest worker hands committed records to live tail subscribers through.",
							"The oldest records are overwritten when the reader falls behind; subscribers are then told how many they missed.",
							&logagg_tail_buffer_kb, 4096, 64, 1024 * 1024,
							pm, GUC_UNIT_KB, NULL, NULL, NULL);

	logagg_define_sync_gucs();	/* sync.c: sync_grace, sync_part_size, ... */
	logagg_define_alert_rule_gucs();	/* alert_rules.c */

	MarkGUCPrefixReserved("logagg");
}
