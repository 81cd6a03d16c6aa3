/*-------------------------------------------------------------------------
 *
 * window.h
 *	  The window of records produced but not yet settled (acked or rejected).
 *
 * Records get consecutive ids.  In --stream mode the id is the record's
 * protocol seq; otherwise it is only an internal number.  The window is a
 * ring of reusable slots, so the steady state does no allocation.
 *
 *	 head_id <= send_id <= next_id,	next_id - head_id <= capacity
 *
 *	 [head_id, send_id)	sent on the current connection, not settled
 *	 [send_id, next_id)	produced, not yet sent on the current connection
 *
 *-------------------------------------------------------------------------
 */
#ifndef WINDOW_H
#define WINDOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct EmitRecord
{
	char	   *text;			/* one JSON object, no trailing newline */
	size_t		len;
	size_t		cap;
	bool		sent;			/* sent at least once (distinct "sent") */
	bool		rejected;		/* server sent an error frame for it */
} EmitRecord;

typedef struct RecordWindow
{
	EmitRecord *slots;
	int64_t		capacity;
	int64_t		first_id;		/* id of the first record of the run */
	int64_t		head_id;
	int64_t		send_id;
	int64_t		next_id;
	/* counters for the summary line */
	int64_t		nsent;
	int64_t		nacked;
	int64_t		nrejected;
} RecordWindow;

extern RecordWindow win;

extern void window_init(int64_t capacity);
extern void window_free(void);
extern void window_set_base(int64_t first_id);
extern int64_t window_space(void);
extern EmitRecord *window_reserve(size_t need);
extern void window_commit(void);
extern EmitRecord *window_slot(int64_t id);
extern void window_rewind(void);
extern int64_t window_settle_count(int64_t n, bool rejected);
extern int64_t window_settle_upto(int64_t seq);
extern void window_reject_seq(int64_t seq);

static inline int64_t
window_produced(void)
{
	return win.next_id - win.first_id;
}

static inline bool
window_empty(void)
{
	return win.head_id == win.next_id;
}

static inline bool
window_has_unsent(void)
{
	return win.send_id < win.next_id;
}

#endif							/* WINDOW_H */
