/*-------------------------------------------------------------------------
 *
 * window.c
 *	  Ring of unsettled records: what may be resent after a reconnect and
 *	  what acks, ack_counts and error frames settle.
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>

#include "emit.h"
#include "window.h"

RecordWindow win;

static void *
xrealloc(void *p, size_t size)
{
	void	   *r = realloc(p, size);

	if (r == NULL)
	{
		fprintf(stderr, "logagg-emit: out of memory\n");
		exit(EMIT_EXIT_USAGE);
	}
	return r;
}

void
window_init(int64_t capacity)
{
	win.slots = calloc((size_t) capacity, sizeof(EmitRecord));
	if (win.slots == NULL)
	{
		fprintf(stderr, "logagg-emit: out of memory\n");
		exit(EMIT_EXIT_USAGE);
	}
	win.capacity = capacity;
	window_set_base(1);
}

void
window_free(void)
{
	for (int64_t i = 0; i < win.capacity; i++)
		free(win.slots[i].text);
	free(win.slots);
	win.slots = NULL;
}

/*
 * Set the id of the first record.  Only valid before anything is produced;
 * --stream uses it to continue numbering after the server's resume point.
 */
void
window_set_base(int64_t first_id)
{
	win.first_id = win.head_id = win.send_id = win.next_id = first_id;
}

int64_t
window_space(void)
{
	return win.capacity - (win.next_id - win.head_id);
}

EmitRecord *
window_slot(int64_t id)
{
	return &win.slots[id % win.capacity];
}

/*
 * Slot for the next record, with room for at least "need" bytes plus a
 * terminating NUL.  Caller checked window_space() > 0.
 */
EmitRecord *
window_reserve(size_t need)
{
	EmitRecord *r = window_slot(win.next_id);

	if (r->cap < need + 1)
	{
		size_t		cap = r->cap ? r->cap : 512;

		while (cap < need + 1)
			cap *= 2;
		r->text = xrealloc(r->text, cap);
		r->cap = cap;
	}
	r->len = 0;
	r->sent = false;
	r->rejected = false;
	return r;
}

void
window_commit(void)
{
	win.next_id++;
}

/*
 * After a reconnect everything unsettled is sent again.
 */
void
window_rewind(void)
{
	win.send_id = win.head_id;
}

/*
 * Records at the head that were rejected are settled already (counted when
 * the error frame arrived): step over them so that a rejected last record
 * does not keep the window open waiting for an ack that never covers it.
 */
static void
window_skip_rejected(void)
{
	while (win.head_id < win.next_id && window_slot(win.head_id)->rejected)
	{
		win.head_id++;
		if (win.send_id < win.head_id)
			win.send_id = win.head_id;
	}
}

/*
 * Settle the oldest n records sent on this connection, in order.  Used
 * without --stream, where the server acks by count.  n is clamped to what
 * was actually sent, so a misbehaving (or cumulative-counting) server can
 * never make "acked" exceed "sent".  Returns the number settled.
 */
int64_t
window_settle_count(int64_t n, bool rejected)
{
	int64_t		done = 0;

	while (done < n && win.head_id < win.send_id)
	{
		EmitRecord *r = window_slot(win.head_id);

		if (!r->rejected)
		{
			if (rejected)
			{
				r->rejected = true;
				win.nrejected++;
			}
			else
				win.nacked++;
			done++;
		}
		win.head_id++;
	}
	if (done < n)
		emit_debug("ack for %lld more records than outstanding, ignored",
				   (long long) (n - done));
	window_skip_rejected();
	return done;
}

/*
 * Settle every record with id <= seq (--stream acks and resume points).
 */
int64_t
window_settle_upto(int64_t seq)
{
	int64_t		done = 0;

	if (seq >= win.next_id)
	{
		emit_debug("ack/resume %lld beyond last produced seq %lld",
				   (long long) seq, (long long) (win.next_id - 1));
		seq = win.next_id - 1;
	}
	while (win.head_id <= seq)
	{
		EmitRecord *r = window_slot(win.head_id);

		if (!r->rejected)
		{
			win.nacked++;
			done++;
		}
		win.head_id++;
	}
	if (win.send_id < win.head_id)
		win.send_id = win.head_id;
	window_skip_rejected();
	return done;
}

/*
 * Error frame for one seq (--stream).  The record is settled and never
 * resent.  If an ack already covered it (the server acked, then reported),
 * move it from acked to rejected so that the totals stay right.
 */
void
window_reject_seq(int64_t seq)
{
	if (seq < win.first_id || seq >= win.next_id)
	{
		emit_debug("error frame for unknown seq %lld", (long long) seq);
		return;
	}
	if (seq < win.head_id)
	{
		/*
		 * The slot still describes this seq unless it has been reused; a
		 * repeated error frame for an already rejected record changes
		 * nothing.
		 */
		if (seq >= win.next_id - win.capacity && window_slot(seq)->rejected)
			return;
		window_slot(seq)->rejected = (seq >= win.next_id - win.capacity);
		if (win.nacked > 0)
		{
			win.nacked--;
			win.nrejected++;
		}
		return;
	}
	if (!window_slot(seq)->rejected)
	{
		window_slot(seq)->rejected = true;
		win.nrejected++;
	}
	window_skip_rejected();
}
