/*-------------------------------------------------------------------------
 *
 * tail_ring.c
 *		The live tail's hand-over in shared memory: after each batch COMMIT
 *		the ingest worker appends the batch's stored records to a bounded
 *		ring (logagg.tail_buffer), and the reader worker copies out what is
 *		new and fans it out to its subscribers (src/reader/tail.c).
 *
 * The writer never waits for the reader.  The ring is a byte stream
 * addressed by ever-growing positions (head: end of the last complete
 * entry; tail: start of the oldest one still whole).  To make room the
 * writer first moves tail past the entries it is about to overwrite
 * (write barrier), then writes, then publishes the new head.  The reader
 * reads head, copies the bytes it has not seen, and only then reads tail:
 * every byte at or after that tail was intact while it copied, and what
 * lies before it is lost -- the entries' sequence numbers say how many
 * records that was.  There is one writer, the ingest worker (one process),
 * so entries are in the order of the commits that stored them.
 *
 * With no subscriber connected (a count the reader keeps here) the
 * ingest worker skips all of this.  Records stored by logagg.ingest() in
 * SQL sessions do not pass through the ring.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "port/atomics.h"
#include "storage/shmem.h"

#include "ingest.h"
#include "tail_ring.h"

typedef struct TailRing
{
	pg_atomic_uint32 subscribers;
	pg_atomic_uint64 head;		/* end of the last complete entry */
	pg_atomic_uint64 tail;		/* start of the oldest complete entry */
	uint64		next_seq;		/* the writer's: seq of the next record */
	Size		capacity;
	char		data[FLEXIBLE_ARRAY_MEMBER];
} TailRing;

static TailRing *ring = NULL;

/* A record larger than this share of the ring is skipped (seen as lost). */
#define MAX_ENTRY_SHARE 4

Size
logagg_tail_shmem_size(void)
{
	return add_size(offsetof(TailRing, data), (Size) logagg_tail_buffer_kb * 1024);
}

/* In the shared-memory start-up hook, under AddinShmemInitLock. */
void
logagg_tail_shmem_init(void)
{
	bool		found;

	ring = ShmemInitStruct("logagg tail", logagg_tail_shmem_size(), &found);
	if (!found)
	{
		pg_atomic_init_u32(&ring->subscribers, 0);
		pg_atomic_init_u64(&ring->head, 0);
		pg_atomic_init_u64(&ring->tail, 0);
		ring->next_seq = 1;
		ring->capacity = (Size) logagg_tail_buffer_kb * 1024;
	}
}

/* The reader counts its subscribers here (delta +1 or -1). */
void
logagg_tail_subscribers_add(int delta)
{
	if (ring == NULL)
		return;
	if (delta > 0)
		pg_atomic_fetch_add_u32(&ring->subscribers, delta);
	else
		pg_atomic_fetch_sub_u32(&ring->subscribers, -delta);
	/* publish the count before whatever the caller does next */
	pg_memory_barrier();
}

/* The reader itself starts with no subscriber, whatever a crash left. */
void
logagg_tail_subscribers_reset(void)
{
	if (ring)
		pg_atomic_write_u32(&ring->subscribers, 0);
}

static void
ring_write(uint64 pos, const void *src, Size n)
{
	Size		off = pos % ring->capacity;
	Size		first = Min(n, ring->capacity - off);

	memcpy(ring->data + off, src, first);
	if (first < n)
		memcpy(ring->data, (const char *) src + first, n - first);
}

static void
ring_read(uint64 pos, void *dst, Size n)
{
	Size		off = pos % ring->capacity;
	Size		first = Min(n, ring->capacity - off);

	memcpy(dst, ring->data + off, first);
	if (first < n)
		memcpy((char *) dst + first, ring->data, n - first);
}

static uint32
str_len(const char *s)
{
	return s ? (uint32) strlen(s) : TAIL_NULL;
}

/*
 * After the COMMIT of a batch: append its stored records (ids[i] != 0;
 * sevs[i] their severity) and wake the reader.  Does nothing while no
 * subscriber is connected.  Never waits and never fails.
 */
void
logagg_tail_publish(IngestBatch *batch, const int64 *ids, const uint8 *sevs)
{
	uint64		head;
	uint64		tail;
	bool		any = false;

	if (ring == NULL || ids == NULL || pg_atomic_read_u32(&ring->subscribers) == 0)
		return;
	head = pg_atomic_read_u64(&ring->head);
	tail = pg_atomic_read_u64(&ring->tail);
	for (int i = 0; i < batch->nrecords; i++)
	{
		IngestRecord *r = &batch->records[i];
		TailEntry	e;
		const char *strs[TAIL_NSTRINGS];
		Size		len = sizeof(TailEntry);

		if (ids[i] == 0)
			continue;			/* refused inside the transaction */
		memset(&e, 0, sizeof(e));
		e.seq = ring->next_seq++;
		e.id = ids[i];
		e.ts = r->ts;
		e.received_at = r->received_at;
		e.severity = sevs[i];
		e.has_status = r->has_status;
		e.status = r->status;
		strs[TAIL_SOURCE] = r->source;
		strs[TAIL_LEVEL] = r->level;
		strs[TAIL_MESSAGE] = r->message;
		strs[TAIL_TRACE_ID] = r->trace_id;
		strs[TAIL_SPAN_ID] = r->span_id;
		strs[TAIL_ATTRS] = r->attrs;
		for (int k = 0; k < TAIL_NSTRINGS; k++)
		{
			e.lens[k] = str_len(strs[k]);
			if (e.lens[k] != TAIL_NULL)
				len += e.lens[k];
		}
		if (len > ring->capacity / MAX_ENTRY_SHARE)
			continue;			/* its seq is skipped: readers count it lost */
		e.len = (uint32) len;

		/* make room: entries about to be overwritten are given up first */
		while (head + len - tail > ring->capacity)
		{
			uint32		old;

			ring_read(tail, &old, sizeof(old));
			tail += old;
		}
		pg_atomic_write_u64(&ring->tail, tail);
		pg_write_barrier();

		ring_write(head, &e, sizeof(e));
		head += sizeof(e);
		for (int k = 0; k < TAIL_NSTRINGS; k++)
		{
			if (e.lens[k] == TAIL_NULL)
				continue;
			ring_write(head, strs[k], e.lens[k]);
			head += e.lens[k];
		}
		any = true;
	}
	if (!any)
		return;
	pg_write_barrier();
	pg_atomic_write_u64(&ring->head, head);
	logagg_wake_workers(LOGAGG_WORKER_READER);
}

/* Where a reader that starts now begins: nothing already there is new. */
void
logagg_tail_cursor_init(TailCursor *cur)
{
	cur->pos = ring ? pg_atomic_read_u64(&ring->head) : 0;
	cur->next_seq = 0;			/* unknown until the first entry */
}

/*
 * Copy the complete entries appended since CUR into *buf (palloc'd in the
 * current memory context; *len bytes, whole TailEntry records), and
 * advance CUR.  *lost is set to the records the writer overwrote before
 * they could be copied (0 when none, or when it cannot be known yet).
 * Returns false when nothing is new.
 */
bool
logagg_tail_read(TailCursor *cur, char **buf, Size *len, uint64 *lost)
{
	uint64		head;
	uint64		start;
	uint64		tail;
	uint64		valid;
	char	   *copy;
	TailEntry	first;

	*lost = 0;
	*buf = NULL;
	*len = 0;
	if (ring == NULL)
		return false;
	head = pg_atomic_read_u64(&ring->head);
	pg_read_barrier();
	if (head == cur->pos)
		return false;
	start = Max(cur->pos, head > ring->capacity ? head - ring->capacity : 0);
	copy = palloc(head - start);
	ring_read(start, copy, head - start);
	pg_read_barrier();
	tail = pg_atomic_read_u64(&ring->tail);
	valid = Max(cur->pos, tail);
	if (valid >= head)
	{
		/* all of it was overwritten while we copied: go on from tail */
		pfree(copy);
		cur->pos = tail;
		return false;
	}
	memcpy(&first, copy + (valid - start), sizeof(first));
	if (cur->next_seq != 0 && first.seq > cur->next_seq)
		*lost = first.seq - cur->next_seq;
	*buf = copy + (valid - start);
	*len = head - valid;
	cur->pos = head;
	/* the last entry's seq + 1, from the entries themselves */
	{
		Size		off = 0;
		TailEntry	e;

		while (off < *len)
		{
			memcpy(&e, *buf + off, sizeof(e));
			off += e.len;
		}
		cur->next_seq = e.seq + 1;
	}
	return true;
}
