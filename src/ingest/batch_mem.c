/*-------------------------------------------------------------------------
 *
 * batch_mem.c
 *		The IngestBatch's memory: creating and resetting a batch, growing
 *		its arrays, copying strings into it, and the streams whose last_seq
 *		it advances.
 *
 * A batch's records, rejects and their strings all live in one memory
 * context, reset after the batch is stored (ingest_batch.c) so that the
 * next batch reuses the memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/memutils.h"

#include "ingest.h"

/* A new, empty batch whose memory is a child of PARENT. */
IngestBatch *
ingest_batch_create(MemoryContext parent)
{
	/* the struct lives in parent: resetting cxt must not free it */
	IngestBatch *batch = MemoryContextAllocZero(parent, sizeof(IngestBatch));

	batch->cxt = AllocSetContextCreate(parent, "logagg ingest batch",
									   ALLOCSET_DEFAULT_SIZES);
	return batch;
}

/* Forget every record; the memory is reused by the next batch. */
void
ingest_batch_reset(IngestBatch *batch)
{
	MemoryContext cxt = batch->cxt;

	MemoryContextReset(cxt);
	memset(batch, 0, sizeof(IngestBatch));
	batch->cxt = cxt;
}

/* Grow an array kept in the batch context (doubling; 64 to start). */
void *
ingest_batch_grow(IngestBatch *batch, void *array, int *max, Size elemsize)
{
	int			newmax = *max ? *max * 2 : 64;
	void	   *res;

	if (array == NULL)
		res = MemoryContextAlloc(batch->cxt, newmax * elemsize);
	else
		res = repalloc(array, newmax * elemsize);
	*max = newmax;
	return res;
}

/* The batch advances STREAM's last_seq to at least LAST_SEQ. */
void
ingest_batch_add_stream(IngestBatch *batch, const char *stream,
						const char *source, int64 last_seq)
{
	IngestStreamUpdate *u;

	for (int i = 0; i < batch->nstreams; i++)
	{
		if (strcmp(batch->streams[i].stream, stream) == 0)
		{
			batch->streams[i].last_seq = Max(batch->streams[i].last_seq, last_seq);
			return;
		}
	}
	if (batch->nstreams >= batch->maxstreams)
		batch->streams = ingest_batch_grow(batch, batch->streams, &batch->maxstreams,
										   sizeof(IngestStreamUpdate));
	u = &batch->streams[batch->nstreams++];
	u->stream = MemoryContextStrdup(batch->cxt, stream);
	u->source = source ? MemoryContextStrdup(batch->cxt, source) : NULL;
	u->last_seq = last_seq;
}

/* A copy of S in the batch's memory (NULL stays NULL). */
char *
ingest_batch_strdup(IngestBatch *batch, const char *s)
{
	return s ? MemoryContextStrdup(batch->cxt, s) : NULL;
}
