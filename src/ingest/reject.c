/*-------------------------------------------------------------------------
 *
 * reject.c
 *		Rejected records into the batch: the reason (bounded, cut at a
 *		character boundary, shared by equal neighbours) and the record's exact
 *		bytes -- the first INGEST_REJECT_RAW_BYTES, with the length and SHA-256
 *		of a longer one.
 *
 * Every reject is reported to the origin (an error frame, an HTTP
 * count) through its rejected callback.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/sha.h>

#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "ingest/parse_int.h"

/*
 * A reason as it goes into logagg.rejected and the error frame: at most
 * INGEST_REJECT_REASON_BYTES, cut at a character boundary.  Reasons only
 * quote input that was checked to be valid text (a JSON error names the
 * token it stopped at), so the result is valid text too.  Consecutive
 * rejects with the same reason share one copy (a message of many equally
 * bad lines must not cost a copy per line).
 */
static const char *
reject_reason(IngestBatch *batch, const char *reason)
{
	int			len = strlen(reason);
	char	   *copy;

	if (len > INGEST_REJECT_REASON_BYTES)
		len = pg_mbcliplen(reason, len, INGEST_REJECT_REASON_BYTES);
	if (batch->nrejects > 0)
	{
		const char *prev = batch->rejects[batch->nrejects - 1].reason;

		if (strncmp(prev, reason, len) == 0 && prev[len] == '\0')
			return prev;
	}
	copy = MemoryContextAlloc(batch->cxt, len + 1);
	memcpy(copy, reason, len);
	copy[len] = '\0';
	return copy;
}

/* origin's peer or source in the batch, shared with the previous reject */
static const char *
reject_origin_string(IngestBatch *batch, const char *s, bool peer)
{
	if (s == NULL)
		return NULL;
	if (batch->nrejects > 0)
	{
		const IngestReject *prev = &batch->rejects[batch->nrejects - 1];
		const char *p = peer ? prev->peer : prev->source;

		if (p && strcmp(p, s) == 0)
			return p;
	}
	return MemoryContextStrdup(batch->cxt, s);
}

/*
 * Refuse one record: raw/rawlen are its exact bytes (an NDJSON line, an
 * array element or a whole message).  is_text tells that they were found
 * to be valid text in the database encoding (then rejected.raw gets them
 * too).  The first INGEST_REJECT_RAW_BYTES are kept; for a longer record
 * its length and SHA-256 tell what was cut.
 */
void
ingest_add_reject_bytes(IngestBatch *batch, const IngestOrigin *origin, const char *reason,
						const char *raw, int rawlen, bool is_text, bool has_seq, int64 seq)
{
	IngestReject *r;
	const char *why;
	int			keep = Min(rawlen, INGEST_REJECT_RAW_BYTES);

	if (batch->nrejects >= batch->maxrejects)
		batch->rejects = ingest_batch_grow(batch, batch->rejects, &batch->maxrejects, sizeof(IngestReject));
	why = reject_reason(batch, reason);
	r = &batch->rejects[batch->nrejects];
	memset(r, 0, sizeof(IngestReject));
	r->received_at = origin->received_at;
	r->peer = reject_origin_string(batch, origin->peer, true);
	r->source = reject_origin_string(batch, origin->source, false);
	r->reason = why;
	r->stream = origin->stream;
	r->has_seq = has_seq;
	r->seq = seq;
	r->raw = MemoryContextAlloc(batch->cxt, keep + 1);
	memcpy(r->raw, raw, keep);
	r->raw[keep] = '\0';
	r->raw_len = keep;
	r->raw_text_len = !is_text ? -1 :
		keep < rawlen ? pg_mbcliplen(raw, rawlen, keep) : keep;
	r->raw_length = rawlen;
	if (keep < rawlen)
	{
		/*
		 * OpenSSL's one-shot digest: pg_cryptohash would need a resource
		 * owner, which the worker has none of outside a transaction.
		 */
		r->raw_sha256 = MemoryContextAlloc(batch->cxt, SHA256_DIGEST_LENGTH);
		SHA256((const unsigned char *) raw, rawlen, r->raw_sha256);
	}
	batch->nrejects++;
	if (origin->rejected)
		origin->rejected(origin->arg, why, has_seq, seq);
}

/* A record that is valid text: the usual case. */
void
ingest_add_reject(IngestBatch *batch, const IngestOrigin *origin, const char *reason,
				  const char *raw, int rawlen, bool has_seq, int64 seq)
{
	ingest_add_reject_bytes(batch, origin, reason, raw, rawlen, true, has_seq, seq);
}

