/*-------------------------------------------------------------------------
 *
 * query.h
 *		What the reader worker (query.c) and the query workers it starts
 *		(query_worker.c) share: the request in the DSM segment, followed by
 *		the shm_mq the answer comes back through.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOGAGG_READER_QUERY_H
#define LOGAGG_READER_QUERY_H

#include "reader/reader_int.h"

/* The answer's queue; a larger answer goes through it in pieces. */
#define QUERY_MQ_BYTES		(256 * 1024)

typedef struct QueryRequest
{
	ApiKind		kind;
	int			timeout_ms;		/* logagg.reader_statement_timeout */
	char		sources[READER_SOURCES_LEN];	/* the token's pattern */
	ReadFilter	f;
} QueryRequest;

#define QUERY_MQ_OFFSET		MAXALIGN(sizeof(QueryRequest))
#define QUERY_DSM_BYTES		(QUERY_MQ_OFFSET + QUERY_MQ_BYTES)

/*
 * The answer is one message: the HTTP status as three digits and a space,
 * then the body (JSON; for API_REPLAY, lines "ID<TAB>RECORD" oldest first;
 * for an error, the message text).
 */

#endif							/* LOGAGG_READER_QUERY_H */
