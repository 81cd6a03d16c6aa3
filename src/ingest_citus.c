/*-------------------------------------------------------------------------
 *
 * ingest_citus.c
 *		Storing a batch's records when logagg.logs is a Citus distributed
 *		table (logagg.distribute()).
 *
 * The ordinary path (ingest_batch.c) runs CopyFrom on the table's
 * relation.  On a distributed table that writes into the local shell
 * table, which Citus never reads: rows acked and invisible.  Citus routes
 * only what goes through its planner or its COPY utility hook, and a
 * background worker has no client to COPY FROM STDIN from.  So the
 * records go in as one INSERT ... SELECT FROM unnest() of thirteen
 * arrays: Citus plans it as an INSERT ... SELECT whose source is not
 * distributed, evaluates the unnest() here and sends the rows to their
 * shards over COPY, within the batch's transaction (two-phase commit when
 * several nodes are written).  The stream's resume point and the alert
 * groups stay in that same transaction, so acks after COMMIT keep their
 * meaning.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"

#include "ingest.h"
#include "logagg.h"

/* Columns in the order of the INSERT below. */
#define NCOLS 13

static const Oid col_types[NCOLS] = {
	INT8ARRAYOID, TIMESTAMPTZARRAYOID, TIMESTAMPTZARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, INT4ARRAYOID, TEXTARRAYOID, TEXTARRAYOID,
	TEXTARRAYOID, TEXTARRAYOID, INT8ARRAYOID, JSONBARRAYOID
};

static const Oid elem_types[NCOLS] = {
	INT8OID, TIMESTAMPTZOID, TIMESTAMPTZOID, TEXTOID, TEXTOID, TEXTOID,
	INT4OID, TEXTOID, TEXTOID, TEXTOID, TEXTOID, INT8OID, JSONBOID
};

static Datum
text_or_header(const char *s, bool ready)
{
	if (ready)
		return INGEST_TEXT_OF(s);
	return PointerGetDatum(cstring_to_text(s));
}

/*
 * INSERT records idx[0..n-1] of the batch into the distributed
 * logagg.logs; ids[i] and sevs[i] are record i's id and severity.
 * Returns the rows inserted.
 */
uint64
logagg_insert_logs_distributed(IngestBatch *batch, const int *idx, int n,
							   const int64 *ids, const uint8 *sevs)
{
	static const char *sql =
		"INSERT INTO " LOGAGG_SCHEMA ".logs (id, ts, received_at, source, level, "
		"severity, status, message, trace_id, span_id, stream, seq, attrs) "
		"SELECT id, ts, received_at, source, level, severity::" LOGAGG_SCHEMA ".severity, "
		"status, message, trace_id, span_id, stream, seq, attrs FROM ROWS FROM ("
		"pg_catalog.unnest($1), pg_catalog.unnest($2), pg_catalog.unnest($3), "
		"pg_catalog.unnest($4), pg_catalog.unnest($5), pg_catalog.unnest($6), "
		"pg_catalog.unnest($7), pg_catalog.unnest($8), pg_catalog.unnest($9), "
		"pg_catalog.unnest($10), pg_catalog.unnest($11), pg_catalog.unnest($12), "
		"pg_catalog.unnest($13)) AS r(id, ts, received_at, "
		"source, level, severity, status, message, trace_id, span_id, stream, seq, attrs)";
	Datum	   *vals[NCOLS];
	bool	   *nulls[NCOLS];
	Datum		args[NCOLS];
	int16		typlen[NCOLS];
	bool		typbyval[NCOLS];
	char		typalign[NCOLS];
	int			ret;

	for (int c = 0; c < NCOLS; c++)
	{
		vals[c] = palloc(sizeof(Datum) * Max(n, 1));
		nulls[c] = palloc0(sizeof(bool) * Max(n, 1));
		get_typlenbyvalalign(elem_types[c], &typlen[c], &typbyval[c], &typalign[c]);
	}
	for (int k = 0; k < n; k++)
	{
		const IngestRecord *r = &batch->records[idx[k]];

		vals[0][k] = Int64GetDatum(ids[idx[k]]);
		vals[1][k] = TimestampTzGetDatum(r->ts);
		vals[2][k] = TimestampTzGetDatum(r->received_at);
		vals[3][k] = text_or_header(r->source, r->text_ready & INGEST_TEXT_SOURCE);
		if (r->level)
			vals[4][k] = PointerGetDatum(cstring_to_text(r->level));
		else
			nulls[4][k] = true;
		vals[5][k] = PointerGetDatum(cstring_to_text(logagg_severity_names[sevs[idx[k]]]));
		if (r->has_status)
			vals[6][k] = Int32GetDatum(r->status);
		else
			nulls[6][k] = true;
		if (r->message)
			vals[7][k] = text_or_header(r->message, r->text_ready & INGEST_TEXT_MESSAGE);
		else
			nulls[7][k] = true;
		if (r->trace_id)
			vals[8][k] = text_or_header(r->trace_id, r->text_ready & INGEST_TEXT_TRACE_ID);
		else
			nulls[8][k] = true;
		if (r->span_id)
			vals[9][k] = text_or_header(r->span_id, r->text_ready & INGEST_TEXT_SPAN_ID);
		else
			nulls[9][k] = true;
		if (r->stream)
			vals[10][k] = PointerGetDatum(cstring_to_text(r->stream));
		else
			nulls[10][k] = true;
		if (r->has_seq)
			vals[11][k] = Int64GetDatum(r->seq);
		else
			nulls[11][k] = true;
		if (r->attrs == NULL)
			nulls[12][k] = true;
		else if (r->attrs_flat)
			vals[12][k] = ingest_flat_attrs_jsonb(r->attrs);
		else
			vals[12][k] = DirectFunctionCall1(jsonb_in, CStringGetDatum(r->attrs));
	}
	for (int c = 0; c < NCOLS; c++)
	{
		int			dims[1] = {n};
		int			lbs[1] = {1};

		args[c] = PointerGetDatum(construct_md_array(vals[c], nulls[c], 1, dims, lbs,
													 elem_types[c], typlen[c],
													 typbyval[c], typalign[c]));
	}
	ret = SPI_execute_with_args(sql, NCOLS, (Oid *) col_types, args, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "logagg: INSERT into the distributed logagg.logs failed: %s",
			 SPI_result_code_string(ret));
	return SPI_processed;
}
