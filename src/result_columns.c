/*-------------------------------------------------------------------------
 *
 * result_columns.c
 *		Checking that a SQL function's result has the columns its C caller
 *		reads, by name, type and position.
 *
 * C code reads the rows of multi-column results (_claim_alerts,
 * _sync_pending) through Anum_ constants, as PostgreSQL's catalogs do.  The
 * library and the extension's SQL are installed separately, so the two can
 * disagree (a new library on a database not yet updated with ALTER
 * EXTENSION ... UPDATE): then reading by position would take one column
 * for another.  Each caller checks the result's descriptor once per process
 * and fails with a clear error instead.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/tupdesc.h"
#include "executor/spi.h"
#include "utils/builtins.h"

#include "logagg.h"

/*
 * ERROR unless desc has exactly cols[0..ncols) in that order, with those
 * types.  function names the SQL function in the message.
 */
void
logagg_check_result_columns(TupleDesc desc, const LogaggResultColumn *cols,
							int ncols, const char *function)
{
	for (int i = 0; i < ncols; i++)
	{
		int			attnum = SPI_fnumber(desc, cols[i].name);

		if (attnum != i + 1)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
					 errmsg("logagg: %s returns no column \"%s\" at position %d",
							function, cols[i].name, i + 1),
					 errhint("The logagg library and the extension's SQL objects do not match; run ALTER EXTENSION logagg UPDATE.")));
		if (TupleDescAttr(desc, i)->atttypid != cols[i].type)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
					 errmsg("logagg: column \"%s\" of %s has type %s, expected %s",
							cols[i].name, function,
							format_type_be(TupleDescAttr(desc, i)->atttypid),
							format_type_be(cols[i].type)),
					 errhint("The logagg library and the extension's SQL objects do not match; run ALTER EXTENSION logagg UPDATE.")));
	}
	if (desc->natts != ncols)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_FUNCTION_DEFINITION),
				 errmsg("logagg: %s returns %d columns, expected %d",
						function, desc->natts, ncols),
				 errhint("The logagg library and the extension's SQL objects do not match; run ALTER EXTENSION logagg UPDATE.")));
}
