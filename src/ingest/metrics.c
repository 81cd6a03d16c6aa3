/*-------------------------------------------------------------------------
 *
 * metrics.c
 *		GET /metrics of the ingest server: the bearer-token check and the
 *		Prometheus text (shared-memory counters, the alert queue depth, and
 *		this process's batch flush latency histogram).
 *
 * Rendered inside the lws callback from shared memory only: no
 * transaction per scrape, no palloc.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/sha.h>

#include "port/atomics.h"

#include "ingest/server_int.h"

/*
 * Flush latency histogram (this process's batches; upper bounds in
 * seconds, Prometheus' default buckets).
 */
static const double flush_bounds[] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
static uint64 flush_buckets[lengthof(flush_bounds)];	/* not cumulative */
static uint64 flush_count = 0;
static double flush_sum = 0;

/*
 * GET /metrics is open while logagg.metrics_token is empty; otherwise it
 * needs "Authorization: Bearer TOKEN".  Both sides are hashed first, so
 * the comparison takes the same time whatever the lengths and contents.
 */
bool
ingest_metrics_authorized(struct lws *wsi)
{
	char		hdr[MAX_TOKEN_LEN + 16];
	const char *t;
	uint8		want[SHA256_DIGEST_LENGTH];
	uint8		got[SHA256_DIGEST_LENGTH];
	bool		ok;

	if (logagg_metrics_token == NULL || logagg_metrics_token[0] == '\0')
		return true;
	if (lws_hdr_copy(wsi, hdr, sizeof(hdr), WSI_TOKEN_HTTP_AUTHORIZATION) <= 0 ||
		pg_strncasecmp(hdr, "Bearer ", 7) != 0)
		return false;
	for (t = hdr + 7; *t == ' '; t++)
		;
	SHA256((const unsigned char *) logagg_metrics_token, strlen(logagg_metrics_token), want);
	SHA256((const unsigned char *) t, strlen(t), got);
	ok = logagg_timingsafe_equal(want, got, sizeof(want));
	explicit_bzero(hdr, sizeof(hdr));
	return ok;
}

static void
append_metric(Buf *b, const char *name, const char *type, const char *help,
			  const char *value)
{
	char		line[512];
	int			n = snprintf(line, sizeof(line), "# HELP %s %s\n# TYPE %s %s\n%s %s\n",
							 name, help, name, type, name, value);

	ingest_buf_append(b, line, Min(n, (int) sizeof(line) - 1));
}

/* The metrics in Prometheus text format 0.0.4. */
void
ingest_append_metrics(Buf *b, int64 queue_depth)
{
	static const struct
	{
		LogaggCounter c;
		const char *name;
		const char *type;
		const char *help;
	}			metrics[] = {
		{LC_CONNECTIONS, "logagg_ingest_connections", "gauge", "Open ingest connections (WebSocket and HTTP)."},
		{LC_CONNECTIONS_TOTAL, "logagg_ingest_connections_total", "counter", "Ingest connections accepted since server start."},
		{LC_ROWS, "logagg_ingest_rows_total", "counter", "Log records stored in logagg.logs by the ingest worker (records accepted)."},
		{LC_BATCHES, "logagg_ingest_batches_total", "counter", "Ingest transactions committed."},
		{LC_REJECTS, "logagg_ingest_rejects_total", "counter", "Invalid records stored in logagg.rejected by the ingest worker."},
		{LC_DUPLICATES, "logagg_ingest_duplicates_total", "counter", "Stream records dropped because their seq was already accepted."},
		{LC_ALERTS_QUEUED, "logagg_ingest_alerts_queued_total", "counter", "Alert groups handed to logagg.alert_queue by the ingest worker."},
	};
	LogaggWorkerSlot *slot = logagg_my_slot();
	char		value[64];
	char		line[256];
	uint64		cum = 0;
	int			n;

	for (int i = 0; i < lengthof(metrics); i++)
	{
		uint64		v = slot ? pg_atomic_read_u64(&slot->counters[metrics[i].c]) : 0;

		snprintf(value, sizeof(value), UINT64_FORMAT, v);
		append_metric(b, metrics[i].name, metrics[i].type, metrics[i].help, value);
	}

	if (queue_depth >= 0)
	{
		snprintf(value, sizeof(value), INT64_FORMAT, queue_depth);
		append_metric(b, "logagg_alert_queue_depth", "gauge",
					  "Alerts in logagg.alert_queue waiting for delivery (not dead).", value);
	}

	n = snprintf(line, sizeof(line),
				 "# HELP logagg_ingest_flush_seconds Time to store one batch (its whole transaction), since the worker started.\n"
				 "# TYPE logagg_ingest_flush_seconds histogram\n");
	ingest_buf_append(b, line, n);
	for (int i = 0; i < lengthof(flush_bounds); i++)
	{
		cum += flush_buckets[i];
		n = snprintf(line, sizeof(line), "logagg_ingest_flush_seconds_bucket{le=\"%g\"} " UINT64_FORMAT "\n",
					 flush_bounds[i], cum);
		ingest_buf_append(b, line, n);
	}
	n = snprintf(line, sizeof(line),
				 "logagg_ingest_flush_seconds_bucket{le=\"+Inf\"} " UINT64_FORMAT "\n"
				 "logagg_ingest_flush_seconds_sum %.6f\n"
				 "logagg_ingest_flush_seconds_count " UINT64_FORMAT "\n",
				 flush_count, flush_sum, flush_count);
	ingest_buf_append(b, line, n);
}

/* One stored batch took SECS seconds (its whole transaction). */
void
ingest_metrics_observe_flush(double secs)
{
	int			i;

	for (i = 0; i < lengthof(flush_bounds) && secs > flush_bounds[i]; i++)
		;
	if (i < lengthof(flush_bounds))
		flush_buckets[i]++;
	flush_count++;
	flush_sum += secs;
}
