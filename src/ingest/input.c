/*-------------------------------------------------------------------------
 *
 * input.c
 *		From queued messages to the batch: the main loop parses what the
 *		connections queued (ingest_server_process_input), one message per
 *		connection per round, and the parse callbacks account each record to
 *		its connection (seq checks, acks due, error lines).
 *
 * Runs in the main loop, outside any transaction; error lines are
 * bounded (BATCH_ERROR_BYTES) and released only by the commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/stringinfo.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "ingest/parse_int.h"
#include "ingest/server_int.h"

/* ---- parse callbacks ---- */

/*
 * On a stream, seqs must increase.  One at or below the committed seq is
 * a resend of a stored record: dropped as a duplicate, and covered by the
 * ack.  One above it but not above the highest seq accepted so far (5
 * then 3 in one frame, or 3 twice before a commit) is out of order: the
 * record is rejected with the reason, so it is neither lost silently nor
 * stored twice.
 */
static bool
cb_accept_seq(void *arg, int64 seq, const char **reason)
{
	Conn	   *c = arg;
	static char why[128];

	if (c->stream == NULL)
		return true;
	if (seq <= c->stream->committed)
	{
		logagg_count(LC_DUPLICATES, 1);
		c->ack_due = true;
		return false;
	}
	if (seq <= c->stream->accepted)
	{
		snprintf(why, sizeof(why),
				 "seq " INT64_FORMAT " is out of order: seq " INT64_FORMAT " was already sent on this stream",
				 seq, c->stream->accepted);
		*reason = why;
		return false;
	}
	c->stream->accepted = seq;
	return true;
}

static void
cb_accepted(void *arg, const IngestRecord *rec)
{
	Conn	   *c = arg;

	c->ack_due = true;
	c->http_accepted++;
	if (c->es)
		ingest_es_note_accepted(c, rec - ingest_cur_batch->records);
	if (rec->has_seq)
	{
		c->batch_max_seq = c->batch_has_seq ? Max(c->batch_max_seq, rec->seq) : rec->seq;
		c->batch_has_seq = true;
	}
	else
		c->batch_count++;
}

static void
cb_rejected(void *arg, const char *reason, bool has_seq, int64 seq)
{
	Conn	   *c = arg;
	StringInfoData s;

	c->ack_due = true;
	c->http_rejected++;
	if (c->es)
		ingest_es_note_rejected(c, reason);
	if (c->loki)
		ingest_loki_note_rejected(c, reason);
	if (c->otlp)
		ingest_otlp_note_rejected(c, reason);
	if (c->is_http)
		return;
	initStringInfo(&s);
	appendStringInfoString(&s, "{\"error\": ");
	escape_json(&s, reason);
	if (has_seq)
		appendStringInfo(&s, ", \"seq\": " INT64_FORMAT, seq);
	appendStringInfoChar(&s, '}');
	if (c->errors.len + s.len + 1 > BATCH_ERROR_BYTES)
		c->errors_dropped++;	/* reported as a count */
	else
	{
		if (c->errors.len > 0)
			ingest_buf_append(&c->errors, "\n", 1);
		ingest_buf_append(&c->errors, s.data, s.len);
	}
	pfree(s.data);
}

/*
 * A record of this connection that was accepted into the batch failed
 * while the batch was stored, and is in logagg.rejected instead: it is
 * reported like any rejected record (an error frame with its seq).
 */
static void
cb_refused(void *arg, const IngestRecord *rec, const char *reason)
{
	Conn	   *c = arg;

	c->http_accepted--;
	if (c->es)
	{
		ingest_es_note_refused(c, rec - ingest_cur_batch->records, reason);
		c->http_rejected++;
		return;
	}
	if (!rec->has_seq)
		c->batch_count--;
	cb_rejected(arg, reason, rec->has_seq, rec->seq);
}

/* The message at the head of C's queue is done: free it. */
static void
msg_done(Conn *c, Msg *m)
{
	c->inq_head = m->next;
	if (c->inq_head == NULL)
		c->inq_tail = NULL;
	c->inq_bytes -= m->len;
	ingest_total_queued -= m->len;
	free(m);
}

/*
 * Undo the Content-Encoding of the body at the head of C's queue (here in
 * the main loop, not in an lws callback: inflating takes time).  Returns
 * the decoded message in its place, or NULL when the body could not be
 * decoded: then it is rejected (its compressed bytes), gone from the
 * queue, and the request fails with 400, or 413 when it decompresses to
 * more than logagg.max_message_bytes.
 */
static Msg *
decode_body(Conn *c, Msg *m, const IngestOrigin *origin)
{
	char	   *out;
	size_t		outlen;
	const char *why;
	bool		ok;
	Msg		   *d;

	ok = m->encoding == BODY_GZIP ?
		ingest_gunzip(m->data, m->len, logagg_max_message_bytes, &out, &outlen, &why) :
		ingest_inflate(m->data, m->len, logagg_max_message_bytes, &out, &outlen, &why);
	if (ok && (d = malloc(offsetof(Msg, data) + outlen + 1)) == NULL)
	{
		free(out);
		ok = false;
		why = "out of memory while decompressing the body";
	}
	if (!ok)
	{
		ingest_add_reject_bytes(ingest_cur_batch, origin, why, m->data, m->len, false, false, 0);
		c->http_fail_status = why == ingest_decompress_too_large ?
			HTTP_STATUS_REQ_ENTITY_TOO_LARGE : HTTP_STATUS_BAD_REQUEST;
		c->http_fail_reason = why;
		msg_done(c, m);
		return NULL;
	}
	*d = *m;
	d->encoding = BODY_IDENTITY;
	d->len = (int) outlen;
	memcpy(d->data, out, outlen);
	d->data[outlen] = '\0';
	free(out);
	if (c->inq_tail == m)
		c->inq_tail = d;
	c->inq_head = d;
	c->inq_bytes += d->len - m->len;
	ingest_total_queued += d->len - m->len;
	free(m);
	return d;
}

/*
 * Parse queued messages into the batch, one message per connection per
 * round so that a busy connection cannot starve the others, until the
 * batch is full or nothing is left.
 */
void
ingest_server_process_input(void)
{
	bool		progress = true;

	/*
	 * A token revoked before a message arrived must not let it in: look at
	 * logagg.sources from a transaction that started after the newest one.
	 */
	if (logagg_auth == LOGAGG_AUTH_TOKEN && ingest_conns != NULL)
		ingest_auth_refresh(ingest_auth_outdated(ingest_latest_received));
	/* under trust too: the cache says which sources read plain-text lines */
	else if (ingest_conns != NULL)
		ingest_auth_load_if_stale();

	while (progress && !ingest_server_batch_full())
	{
		progress = false;
		for (Conn *c = ingest_conns, *next; c; c = next)
		{
			Msg		   *m = c->inq_head;
			IngestOrigin origin;

			next = c->next;
			if (c->killed && m)
			{
				/* taken over: the client resends this on its new connection */
				for (; m; m = c->inq_head)
				{
					c->inq_head = m->next;
					ingest_total_queued -= m->len;
					free(m);
				}
				c->inq_tail = NULL;
				c->inq_bytes = 0;
				ingest_conn_release_if_done(c);
				continue;
			}
			/* answers pile up: parse more once the client has read them */
			if (m == NULL || c->need_resume || c->out_full ||
				c->errors.len >= OUT_PAUSE_BYTES)
				continue;

			memset(&origin, 0, sizeof(origin));
			origin.peer = c->peer;
			origin.source = c->source[0] ? c->source : NULL;
			if (c->has_token)
				ingest_auth_forwarding(c->token_hash, &origin);
			origin.stream = c->stream ? MemoryContextStrdup(ingest_cur_batch->cxt, c->stream->id) : NULL;
			origin.received_at = m->received_at;
			origin.arg = c;
			origin.accept_seq = cb_accept_seq;
			origin.accepted = cb_accepted;
			origin.rejected = cb_rejected;
			origin.refused = cb_refused;
			origin.detects = ingest_auth_detects;
			if (m->encoding != BODY_IDENTITY)
				m = decode_body(c, m, &origin);
			/* a message of many records stops when the batch is full */
			if (m == NULL)
				;				/* refused as a whole */
			else if (c->otlp ? ingest_otlp_parse_part(ingest_cur_batch, &origin, c, m->data, m->len, &m->pos) :
					 c->es ? ingest_es_parse_part(ingest_cur_batch, &origin, c, m->data, m->len, &m->pos) :
					 c->loki ? ingest_loki_parse_part(ingest_cur_batch, &origin, c, m->data, m->len, &m->pos) :
					 ingest_parse_message_part(ingest_cur_batch, &origin, m->data, m->len, &m->pos,
											   logagg_batch_rows))
				msg_done(c, m);
			ingest_mark_pending(false);
			progress = true;

			ingest_conn_flow(c);
			if (ingest_server_batch_full())
				break;
		}
	}
}

