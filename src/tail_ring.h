/*-------------------------------------------------------------------------
 *
 * tail_ring.h
 *		The live tail's ring in shared memory (tail_ring.c): what the ingest
 *		worker appends after each COMMIT and the reader worker copies out.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOGAGG_TAIL_RING_H
#define LOGAGG_TAIL_RING_H

#include "postgres.h"

#include "utils/timestamp.h"

/* The strings of an entry, in this order after its header. */
#define TAIL_SOURCE		0
#define TAIL_LEVEL		1
#define TAIL_MESSAGE	2
#define TAIL_TRACE_ID	3
#define TAIL_SPAN_ID	4
#define TAIL_ATTRS		5		/* JSON object text */
#define TAIL_NSTRINGS	6
#define TAIL_NULL		0xFFFFFFFFU	/* length of a NULL string */

/* One stored record in the ring (copied with memcpy: no alignment needed). */
typedef struct TailEntry
{
	uint32		len;			/* the whole entry, strings included */
	uint8		severity;		/* LogaggSeverity */
	bool		has_status;
	int32		status;
	uint64		seq;			/* 1, 2, ... in commit order */
	int64		id;
	TimestampTz ts;
	TimestampTz received_at;
	uint32		lens[TAIL_NSTRINGS];	/* TAIL_NULL: NULL */
} TailEntry;

typedef struct TailCursor
{
	uint64		pos;
	uint64		next_seq;		/* 0: not known yet */
} TailCursor;

extern Size logagg_tail_shmem_size(void);
extern void logagg_tail_shmem_init(void);
extern void logagg_tail_subscribers_add(int delta);
extern void logagg_tail_subscribers_reset(void);
extern void logagg_tail_cursor_init(TailCursor *cur);
extern bool logagg_tail_read(TailCursor *cur, char **buf, Size *len, uint64 *lost);

#endif							/* LOGAGG_TAIL_RING_H */
