/*-------------------------------------------------------------------------
 *
 * sync_ndjson.h
 *		NDJSON lines for cloud sync, byte-identical to row_to_json(l)::text
 *		(sync_ndjson.c).
 *
 * Usage: create an encoder (it reads logagg.logs' columns), select
 * sync_row_encoder_select_list() FROM logagg.logs l, and pass each
 * returned tuple to sync_row_encode().
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOGAGG_SYNC_NDJSON_H
#define LOGAGG_SYNC_NDJSON_H

#include "access/htup.h"
#include "access/tupdesc.h"
#include "lib/stringinfo.h"

typedef struct SyncRowEncoder SyncRowEncoder;

extern SyncRowEncoder *sync_row_encoder_create(void);
extern const char *sync_row_encoder_select_list(SyncRowEncoder *enc);
/*
 * Appends the row's JSON object (no newline); *id gets logs.id.  Call it
 * in a memory context that is reset now and then (detoasted values).
 */
extern void sync_row_encode(SyncRowEncoder *enc, HeapTuple tup, TupleDesc desc,
							StringInfo out, int64 *id);

#endif							/* LOGAGG_SYNC_NDJSON_H */
