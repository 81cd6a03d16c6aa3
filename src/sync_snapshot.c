/*-------------------------------------------------------------------------
 *
 * sync_snapshot.c
 *		The snapshot recorded with each uploaded part, and logagg._xid8();
 *		on a Citus cluster also logagg._export_snapshot(), _system_id() and
 *		_seen_here(), which run on the node holding a (window, source).
 *
 * Part k+1 of a (window, source) holds exactly the rows that part k's
 * snapshot did not see: NOT pg_visible_in_snapshot(_xid8(xmin), snapshot
 * of part k) (docs/sync.md, "Late rows").  PostgreSQL 15 has no cast from
 * xid to xid8, hence logagg._xid8(); and pg_current_snapshot() lists only
 * top-level xids, hence sync_export_snapshot_text(), which lists the
 * subtransactions in progress too.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/subtrans.h"
#include "access/transam.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "fmgr.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/builtins.h"
#include "utils/fmgrprotos.h"
#include "utils/memutils.h"
#include "utils/snapmgr.h"
#include "utils/snapshot.h"
#include "utils/xid8.h"

#include "logagg.h"
#include "sync_cycle.h"


/*
 * The 64-bit form (xid8) of a 32-bit xid, relative to next, the next xid
 * to be assigned: the xid's epoch is next's epoch, or the one before when
 * the xid's 32 bits are above next's (the xid was assigned before next, so
 * it must have wrapped).  Exact for every xid assigned within 2^32 xids
 * before next, and for a snapshot's xmax (which may equal next).  An older xid (a frozen row more than 2^32 xids old:
 * xmin keeps the original xid after freezing) comes out 2^32 (or a
 * multiple) too *new*, never too old, so the worst it can do in the late-row
 * test is upload an old row again; it can never hide a late one.  The
 * special xids (bootstrap, frozen) map to epoch 0, i.e. older than anything.
 */
static FullTransactionId
widen_xid(FullTransactionId next, TransactionId xid)
{
	uint32		epoch = EpochFromFullTransactionId(next);

	if (!TransactionIdIsNormal(xid))
		return FullTransactionIdFromEpochAndXid(0, xid);
	if (xid > XidFromFullTransactionId(next) && epoch > 0)
		epoch--;
	return FullTransactionIdFromEpochAndXid(epoch, xid);
}

/*
 * logagg._xid8(xid) -> xid8.  PostgreSQL 15 has no cast from xid (what the
 * xmin system column is) to xid8 (what pg_visible_in_snapshot() takes).
 *
 * It runs for every row a cycle or retention scans, so the next xid is
 * cached in fn_extra (reading it takes XidGenLock).  A cached value is used
 * only for an xid that precedes it in modulo-2^32 order, i.e. lies within
 * the 2^31 xids before it; an xid assigned after the cache was filled would
 * have to be 2^31 xids newer to look like that, which wraparound protection
 * rules out while the cache lives (one query, at most one transaction).
 * Anything else re-reads the next xid, which makes the result exact.
 */
static FullTransactionId
widen_xid_cached(FunctionCallInfo fcinfo, TransactionId xid)
{
	FullTransactionId *next = (FullTransactionId *) fcinfo->flinfo->fn_extra;

	if (next == NULL)
	{
		next = MemoryContextAlloc(fcinfo->flinfo->fn_mcxt, sizeof(FullTransactionId));
		*next = ReadNextFullTransactionId();
		fcinfo->flinfo->fn_extra = next;
	}
	else if (TransactionIdIsNormal(xid) &&
			 !TransactionIdPrecedes(xid, XidFromFullTransactionId(*next)))
		*next = ReadNextFullTransactionId();
	return widen_xid(*next, xid);
}

PG_FUNCTION_INFO_V1(logagg_xid8_of_xid);
Datum
logagg_xid8_of_xid(PG_FUNCTION_ARGS)
{
	TransactionId xid = DatumGetTransactionId(PG_GETARG_DATUM(0));

	PG_RETURN_FULLTRANSACTIONID(widen_xid_cached(fcinfo, xid));
}

/*
 * On a Citus cluster (docs/scale-out.md, "Cloud sync"): a row's xmin is an
 * xid of the node that holds its shard, and a part's snapshot is that
 * node's, recorded with the node's system identifier (logagg._system_id()).
 *
 * logagg._seen_here(xmin, snapshot, system_id): did that snapshot see the
 * row?  Only a snapshot taken on this very server (same system identifier,
 * so the same xid history, a promoted standby included) can tell; one
 * from another server -- the shard was moved since, or the part was
 * uploaded before logagg.distribute() -- says nothing about this server's
 * xids, and the row counts as not seen: it is uploaded again rather than
 * lost.
 */
PG_FUNCTION_INFO_V1(logagg_seen_here);
Datum
logagg_seen_here(PG_FUNCTION_ARGS)
{
	TransactionId xid = DatumGetTransactionId(PG_GETARG_DATUM(0));
	int64		system_id = PG_GETARG_INT64(2);

	if ((uint64) system_id != GetSystemIdentifier())
		PG_RETURN_BOOL(false);
	return DirectFunctionCall2(pg_visible_in_snapshot,
							   FullTransactionIdGetDatum(widen_xid_cached(fcinfo, xid)),
							   PG_GETARG_DATUM(1));
}

/* logagg._system_id(): this server's system identifier, as a bigint. */
PG_FUNCTION_INFO_V1(logagg_system_id);
Datum
logagg_system_id(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64((int64) GetSystemIdentifier());
}

static TransactionId
next_xid(TransactionId x)
{
	TransactionIdAdvance(x);
	return x;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64		x = *(const uint64 *) a;
	uint64		y = *(const uint64 *) b;

	return (x > y) - (x < y);
}

static bool
xid_in_sorted(TransactionId xid, const TransactionId *xids, int n)
{
	return n > 0 && bsearch(&xid, xids, n, sizeof(TransactionId), xidComparator) != NULL;
}

/*
 * The text form of a pg_snapshot ("xmin:xmax:xip,...") that sees exactly
 * what snap sees, for rows in logagg.logs.  It is stored with the part
 * and is the lower boundary of the next part.
 *
 * pg_current_snapshot() is not enough: it lists only top-level xids, while
 * a row inserted in a subtransaction (SAVEPOINT, a PL/pgSQL EXCEPTION
 * block) carries the subtransaction's xid, which pg_visible_in_snapshot()
 * would then call visible although its top-level transaction was still in
 * progress -- and that row would be lost.  So:
 *  - subtransaction xids in snap->subxip are listed too;
 *  - if the snapshot's subxid list overflowed (a backend had more than 64
 *    subtransactions), every xid in [xmin, xmax) whose topmost parent is in
 *    progress is found in pg_subtrans, exactly as XidInMVCCSnapshot() would
 *    (valid: our own snapshot keeps pg_subtrans from being truncated above
 *    its xmin).  That walk costs one pg_subtrans lookup per xid in the
 *    range, and happens only with overflowed snapshots;
 *  - our own transaction's rows (logagg.sync_now() runs in the caller's
 *    transaction) are visible to the export although its xids are not in
 *    the snapshot; as one of them (the top-level xid or a subtransaction's)
 *    may be at or above xmax, xmax is moved up to the next xid and every
 *    other xid in between is listed as in progress (which is what they
 *    were to the export).
 */
char *
sync_export_snapshot_text(Snapshot snap)
{
	FullTransactionId next = ReadNextFullTransactionId();
	TransactionId xmin = snap->xmin;
	TransactionId xmax = snap->xmax;
	TransactionId *xip;
	uint64	   *out;
	int			nout = 0;
	int			cap;
	TransactionId own = GetTopTransactionIdIfAny();
	StringInfoData buf;

	/* top-level xids in progress, sorted for the lookups below */
	xip = palloc(sizeof(TransactionId) * Max(snap->xcnt, 1));
	memcpy(xip, snap->xip, sizeof(TransactionId) * snap->xcnt);
	qsort(xip, snap->xcnt, sizeof(TransactionId), xidComparator);

	cap = snap->xcnt + Max(snap->subxcnt, 0) + 16;
	out = palloc(sizeof(uint64) * cap);
#define ADD_XID(x) \
	do { \
		if (nout >= cap) \
		{ \
			cap *= 2; \
			out = repalloc_huge(out, sizeof(uint64) * cap); \
		} \
		out[nout++] = U64FromFullTransactionId(widen_xid(next, (x))); \
	} while (0)

	for (int i = 0; i < snap->xcnt; i++)
		ADD_XID(snap->xip[i]);

	if (!snap->suboverflowed)
	{
		for (int i = 0; i < snap->subxcnt; i++)
		{
			TransactionId x = snap->subxip[i];

			/* subxip is copied unfiltered: keep what falls inside [xmin, xmax) */
			if (TransactionIdFollowsOrEquals(x, xmin) && TransactionIdPrecedes(x, xmax))
				ADD_XID(x);
		}
	}
	else
	{
		TransactionId x = xmin;
		uint32		n = 0;

		for (; TransactionIdPrecedes(x, xmax); x = next_xid(x))
		{
			TransactionId top;

			if ((++n & 0xFFFF) == 0)
				CHECK_FOR_INTERRUPTS();
			if (xid_in_sorted(x, xip, snap->xcnt) || TransactionIdIsCurrentTransactionId(x))
				continue;
			top = SubTransGetTopmostTransaction(x);
			if (top != x && xid_in_sorted(top, xip, snap->xcnt))
				ADD_XID(x);
		}
	}

	if (TransactionIdIsValid(own))
	{
		/* see above: our own xids may lie beyond xmax */
		TransactionId newxmax = XidFromFullTransactionId(next);
		TransactionId x = xmax;

		for (; TransactionIdPrecedes(x, newxmax); x = next_xid(x))
		{
			if (!TransactionIdIsCurrentTransactionId(x))
				ADD_XID(x);
		}
		xmax = newxmax;
	}
#undef ADD_XID

	qsort(out, nout, sizeof(uint64), cmp_u64);
	initStringInfo(&buf);
	appendStringInfo(&buf, UINT64_FORMAT ":" UINT64_FORMAT ":",
					 U64FromFullTransactionId(widen_xid(next, xmin)),
					 U64FromFullTransactionId(widen_xid(next, xmax)));
	for (int i = 0; i < nout; i++)
	{
		if (i > 0 && out[i] == out[i - 1])
			continue;			/* a prepared transaction can appear twice */
		appendStringInfo(&buf, "%s" UINT64_FORMAT, i > 0 ? "," : "", out[i]);
	}
	pfree(out);
	pfree(xip);
	return buf.data;
}

/*
 * logagg._export_snapshot(): the text of sync_export_snapshot_text() for
 * the snapshot the calling statement reads with.  On a cluster the export
 * of a (window, source) is one router query that selects this next to the
 * rows (sync_export.c), so Citus runs both on the node holding the shard,
 * in one statement: the snapshot recorded is the one the rows were read
 * with, on the node whose xids they carry.
 */
PG_FUNCTION_INFO_V1(logagg_export_snapshot);
Datum
logagg_export_snapshot(PG_FUNCTION_ARGS)
{
	if (!ActiveSnapshotSet())
		elog(ERROR, "logagg: no active snapshot");
	PG_RETURN_TEXT_P(cstring_to_text(sync_export_snapshot_text(GetActiveSnapshot())));
}
