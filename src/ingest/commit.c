/*-------------------------------------------------------------------------
 *
 * commit.c
 *		Storing the ingest server's batch and telling clients what became
 *		durable: when a flush is due, the batch's one transaction, then acks,
 *		error frames, stream resume points and HTTP replies -- only after the
 *		commit made them true.
 *
 * Streams: the in-memory StreamState carries the highest seq accepted
 * into a batch (for dropping duplicates, even across connections) and
 * the highest committed (for acks and resume points).  A resume point is
 * sent only after any batch holding the stream's records has committed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/json.h"
#include "utils/timestamp.h"

#include "ingest/server_int.h"

/*
 * The last batch queued alerts and the published queue depth is behind.
 * True at start, so that /metrics has a queue depth soon.
 */
static bool depth_stale = true;
static TimestampTz last_flush = 0;

/* Rejects count: each is a row of logagg.rejected in the same transaction. */
bool
ingest_server_batch_full(void)
{
	return ingest_cur_batch->nrecords + ingest_cur_batch->nrejects >= logagg_batch_rows;
}

/* Does anything wait for a commit, and by when must it happen? */
bool
ingest_server_needs_flush(TimestampTz *deadline)
{
	if (ingest_pending_since == 0 && ingest_cur_batch->nrecords == 0 && ingest_cur_batch->nrejects == 0)
	{
		/* only the queue depth is behind: count it a little later */
		if (!depth_stale)
			return false;
		*deadline = TimestampTzPlusMilliseconds(last_flush, 100);
		return true;
	}
	if (ingest_pending_since == 0)
		ingest_pending_since = GetCurrentTimestamp();
	*deadline = (ingest_flush_now || ingest_server_batch_full()) ? 0 :
		TimestampTzPlusMilliseconds(ingest_pending_since, logagg_batch_delay_ms);
	return true;
}

/* Inside the batch's transaction. */
static void
flush_in_transaction(void *arg)
{
	IngestResult *res = arg;
	bool		empty = ingest_cur_batch->nrecords == 0 && ingest_cur_batch->nrejects == 0;

	ingest_batch_store(ingest_cur_batch, res);
	/* publish the alert queue depth for /metrics (see shmem.c) */
	if (res->alerts_queued > 0)
		depth_stale = true;
	if (depth_stale && logagg_refresh_alert_queue_depth(empty))
		depth_stale = false;
	/* resume points of streams new to this process */
	for (StreamState *s = ingest_streams; s; s = s->next)
	{
		if (!s->loaded)
		{
			char	   *owner;

			s->committed = ingest_stream_last_seq(s->id, &owner);
			s->foreign = owner && s->source[0] && strcmp(owner, s->source) != 0;
			s->accepted = Max(s->accepted, s->committed);
			s->loaded = true;
		}
	}
}

/*
 * Move the committed batch's error lines into the bounded output: those
 * that fit in OUT_ERROR_BYTES are kept, the others only counted.
 */
static void
move_errors(Conn *c)
{
	const char *p = c->errors.data;
	const char *end = p + c->errors.len;

	c->out_errors_dropped += c->errors_dropped;
	while (p < end)
	{
		const char *nl = memchr(p, '\n', end - p);
		size_t		len = (nl ? nl : end) - p;

		if (c->out_errors.len + len + 1 <= OUT_ERROR_BYTES)
		{
			if (c->out_errors.len > 0)
				ingest_buf_append(&c->out_errors, "\n", 1);
			ingest_buf_append(&c->out_errors, p, len);
		}
		else
			c->out_errors_dropped++;
		p += len + 1;
	}
	c->errors.len = 0;
	c->errors_dropped = 0;
}

/* What the commit made true for this connection, for its next frame. */
static void
send_acks(Conn *c)
{
	if (c->wsi != NULL && !c->is_http)
	{
		move_errors(c);
		if (c->stream)
		{
			c->out_ack = c->stream->committed;
			c->out_ack_due = true;
		}
		else if (c->batch_has_seq)
		{
			c->out_ack = c->batch_max_seq;
			c->out_ack_due = true;
		}
		c->out_ack_count += c->batch_count;
		ingest_conn_output_ready(c);
	}
	c->errors.len = 0;
	c->errors_dropped = 0;
	c->batch_count = 0;
	c->batch_has_seq = false;
	c->ack_due = false;
}

/*
 * A new connection's stream is loaded now: send its resume point and
 * start reading, or close it when the stream belongs to another source.
 */
static void
send_resume(Conn *c)
{
	if (c->stream->foreign)
	{
		c->stream->owner = NULL;
		c->stream = NULL;
		c->need_resume = false;
		ingest_conn_kill(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "stream belongs to another source");
	}
	else if (c->stream->loaded)
	{
		c->out_resume = c->stream->committed;
		c->out_resume_due = true;
		c->need_resume = false;
		ingest_conn_output_ready(c);
		ingest_conn_flow(c);
	}
}

/*
 * A body refused as a whole before any door parsed it (bad gzip, a
 * decompression bomb): the error in the native or Elasticsearch shape.
 */
static void
send_http_failure(Conn *c)
{
	StringInfoData s;

	initStringInfo(&s);
	if (c->loki_reply)
	{
		/* Loki answers in plain text */
		appendStringInfo(&s, "%s\n", c->http_fail_reason);
		ingest_loki_error(c, c->http_fail_status, s.data);
		pfree(s.data);
		c->http_fail_status = 0;
		return;
	}
	appendStringInfoString(&s, c->es_reply ? "{\"error\": {\"type\": \"parse_exception\", \"reason\": " :
						   "{\"error\": ");
	escape_json(&s, c->http_fail_reason);
	if (c->es_reply)
		appendStringInfo(&s, "}, \"status\": %d", c->http_fail_status);
	appendStringInfoChar(&s, '}');
	ingest_http_reply(c, c->http_fail_status, "application/json", s.data);
	pfree(s.data);
	c->http_fail_status = 0;
}

/* A POST body is stored: its reply counts what was accepted and rejected. */
static void
send_http_reply(Conn *c)
{
	char		body[96];

	snprintf(body, sizeof(body), "{\"accepted\": " INT64_FORMAT ", \"rejected\": " INT64_FORMAT "}",
			 c->http_accepted, c->http_rejected);
	c->http_waiting = false;
	if (c->otlp)
	{
		if (c->wsi)
			ingest_otlp_reply(c);
		return;
	}
	if (c->http_fail_status)
	{
		if (c->wsi)
			send_http_failure(c);
		return;
	}
	if (c->es)
	{
		if (c->wsi)
			ingest_es_reply(c);
		return;
	}
	if (c->loki)
	{
		if (c->wsi)
			ingest_loki_reply(c);
		return;
	}
	if (c->wsi)
		ingest_http_reply(c, HTTP_STATUS_OK, "application/json", body);
}

/* What the commit made true for each connection. */
static void
answer_connections(void)
{
	for (Conn *c = ingest_conns, *next; c; c = next)
	{
		next = c->next;
		if (c->need_resume && c->stream)
			send_resume(c);
		if (c->ack_due)
			send_acks(c);
		if (c->is_http && c->http_waiting && c->inq_head == NULL)
			send_http_reply(c);
		ingest_conn_release_if_done(c);
	}
}

/* Forget streams nobody owns any more: their state is in the table. */
static void
forget_unowned_streams(void)
{
	StreamState **sp = &ingest_streams;

	while (*sp)
	{
		StreamState *s = *sp;

		if (s->owner == NULL && s->accepted <= s->committed)
		{
			*sp = s->next;
			for (Conn *c = ingest_conns; c; c = c->next)
				if (c->stream == s)
					c->stream = NULL;
			free(s);
		}
		else
			sp = &s->next;
	}
}

/* The stored batch in the counters of /metrics; dispatchers woken. */
static void
count_flush(const IngestResult *res)
{
	if (ingest_cur_batch->nrecords > 0 || ingest_cur_batch->nrejects > 0)
	{
		logagg_count(LC_BATCHES, 1);
		ingest_metrics_observe_flush((GetCurrentTimestamp() - last_flush) / 1000000.0);
	}
	logagg_count(LC_ROWS, res->rows);
	logagg_count(LC_REJECTS, res->rejects);
	if (res->alerts_queued > 0)
	{
		logagg_count(LC_ALERTS_QUEUED, res->alerts_queued);
		logagg_wake_workers(LOGAGG_WORKER_DISPATCH);
	}
}

/*
 * Store the batch in one transaction, then tell every client what became
 * durable.  An error propagates (the worker restarts and clients resend
 * what was not acked).
 */
void
ingest_server_flush(void)
{
	IngestResult res;

	/* streams whose resume point the batch advances */
	for (StreamState *s = ingest_streams; s; s = s->next)
		if (s->loaded && s->accepted > s->committed)
			ingest_batch_add_stream(ingest_cur_batch, s->id, s->source[0] ? s->source : NULL, s->accepted);

	memset(&res, 0, sizeof(res));
	last_flush = GetCurrentTimestamp();
	ingest_auth_xact_started(last_flush);
	logagg_run_or_exit(flush_in_transaction, &res, "logagg ingest: storing a batch");

	count_flush(&res);
	/* committed: to the live tail's subscribers, if any (tail_ring.c) */
	logagg_tail_publish(ingest_cur_batch, ingest_cur_batch->stored_ids,
						ingest_cur_batch->stored_sevs);
	ingest_es_batch_done();
	for (StreamState *s = ingest_streams; s; s = s->next)
		s->committed = Max(s->committed, s->accepted);
	answer_connections();
	forget_unowned_streams();

	ingest_batch_reset(ingest_cur_batch);
	ingest_pending_since = 0;
	ingest_flush_now = false;
	/*
	 * Input still queued (the batch was full) needs another round -- not
	 * that of a client that first has to read its answers.
	 */
	for (Conn *c = ingest_conns; c; c = c->next)
		if (c->inq_head && !c->out_full)
			ingest_mark_pending(false);
}
