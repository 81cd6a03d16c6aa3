/*-------------------------------------------------------------------------
 *
 * sync_ndjson.c
 *		One NDJSON line per logagg.logs row for cloud sync: the very bytes
 *		row_to_json(l)::text gives, without building a composite datum
 *		and calling an output function per column for every row.
 *
 * row_to_json of each row was most of the export's time (it forms a
 * whole-row datum, deforms it again, looks up each column's JSON category
 * and output function, and returns a text that is then copied).  Here the
 * cursor returns the columns themselves, and each is written by the same
 * routine PostgreSQL's JSON code uses for its type: integers as digits,
 * timestamps by JsonEncodeDateTime(), text with escape_json()'s escapes,
 * jsonb by JsonbToCString() (what jsonb_out prints), booleans and enum
 * labels.  Any other column type -- say one an operator added -- is
 * selected as to_json(col)::text, which is what row_to_json does for it,
 * so the output stays byte-identical whatever the table holds (the sync
 * tests compare it with row_to_json byte for byte).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/htup_details.h"
#include "access/table.h"
#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "sync_ndjson.h"

typedef enum ColumnKind
{
	COL_INT2,
	COL_INT4,
	COL_INT8,
	COL_TIMESTAMPTZ,
	COL_TIMESTAMP,
	COL_TEXT,
	COL_BOOL,
	COL_JSONB,
	COL_ENUM,
	COL_JSON_TEXT				/* selected as to_json(col)::text */
} ColumnKind;

typedef struct Column
{
	char	   *key;			/* "name": as JSON, with the separator before it */
	int			keylen;
	ColumnKind	kind;
	Oid			typid;
} Column;

/* enum labels seen, already JSON-escaped (severity has four) */
#define ENUM_CACHE 16

struct SyncRowEncoder
{
	MemoryContext cxt;			/* where the encoder lives */
	int			ncols;
	Column	   *cols;
	int			id_col;			/* index of "id", or -1 */
	char	   *select_list;
	int			nenum;
	Oid			enum_oid[ENUM_CACHE];
	char	   *enum_json[ENUM_CACHE];
	Datum	   *values;
	bool	   *nulls;
	int			nvalues;		/* room in values and nulls */
};

/*
 * escape_json() for a string of known length, appending runs of plain
 * characters at once.  The escapes are exactly escape_json()'s.
 */
static void
escape_json_len(StringInfo buf, const char *s, int len)
{
	const char *end = s + len;
	const char *run = s;

	appendStringInfoCharMacro(buf, '"');
	for (; s < end; s++)
	{
		unsigned char c = (unsigned char) *s;
		const char *esc;

		if (c >= ' ' && c != '"' && c != '\\')
			continue;
		if (s > run)
			appendBinaryStringInfo(buf, run, s - run);
		run = s + 1;
		switch (c)
		{
			case '\b':
				esc = "\\b";
				break;
			case '\f':
				esc = "\\f";
				break;
			case '\n':
				esc = "\\n";
				break;
			case '\r':
				esc = "\\r";
				break;
			case '\t':
				esc = "\\t";
				break;
			case '"':
				esc = "\\\"";
				break;
			case '\\':
				esc = "\\\\";
				break;
			default:
				appendStringInfo(buf, "\\u%04x", (int) c);
				continue;
		}
		appendBinaryStringInfo(buf, esc, 2);
	}
	if (s > run)
		appendBinaryStringInfo(buf, run, s - run);
	appendStringInfoCharMacro(buf, '"');
}

static ColumnKind
column_kind(Oid typid)
{
	switch (typid)
	{
		case INT2OID:
			return COL_INT2;
		case INT4OID:
			return COL_INT4;
		case INT8OID:
			return COL_INT8;
		case TIMESTAMPTZOID:
			return COL_TIMESTAMPTZ;
		case TIMESTAMPOID:
			return COL_TIMESTAMP;
		case TEXTOID:
		case VARCHAROID:
			return COL_TEXT;
		case BOOLOID:
			return COL_BOOL;
		case JSONBOID:
			return COL_JSONB;
		default:
			return type_is_enum(typid) ? COL_ENUM : COL_JSON_TEXT;
	}
}

SyncRowEncoder *
sync_row_encoder_create(void)
{
	SyncRowEncoder *enc = palloc0(sizeof(SyncRowEncoder));
	Oid			nsp = get_namespace_oid("logagg", false);
	Oid			relid = get_relname_relid("logs", nsp);
	Relation	rel;
	TupleDesc	desc;
	StringInfoData sel;
	StringInfoData key;

	if (!OidIsValid(relid))
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_TABLE),
				 errmsg("logagg: table logagg.logs does not exist"),
				 errhint("Run CREATE EXTENSION logagg in the database named by logagg.database.")));
	rel = table_open(relid, AccessShareLock);
	desc = RelationGetDescr(rel);
	enc->cxt = CurrentMemoryContext;
	enc->cols = palloc0(desc->natts * sizeof(Column));
	enc->id_col = -1;
	initStringInfo(&sel);
	for (int i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);
		const char *name = NameStr(att->attname);
		const char *qname = quote_identifier(name);
		Column	   *col = &enc->cols[enc->ncols];

		if (att->attisdropped)
			continue;
		col->typid = att->atttypid;
		col->kind = column_kind(att->atttypid);
		if (strcmp(name, "id") == 0 && col->kind == COL_INT8)
			enc->id_col = enc->ncols;
		if (sel.len > 0)
			appendStringInfoString(&sel, ", ");
		if (col->kind == COL_JSON_TEXT)
			appendStringInfo(&sel, "pg_catalog.to_json(l.%s)::text", qname);
		else
			appendStringInfo(&sel, "l.%s", qname);
		/* row_to_json: '{' or ',' then the escaped name and ':' */
		initStringInfo(&key);
		appendStringInfoChar(&key, enc->ncols == 0 ? '{' : ',');
		escape_json(&key, name);
		appendStringInfoChar(&key, ':');
		col->key = key.data;
		col->keylen = key.len;
		enc->ncols++;
	}
	table_close(rel, AccessShareLock);
	enc->select_list = sel.data;
	enc->nvalues = Max(enc->ncols, 1);
	enc->values = palloc(enc->nvalues * sizeof(Datum));
	enc->nulls = palloc(enc->nvalues * sizeof(bool));
	return enc;
}

const char *
sync_row_encoder_select_list(SyncRowEncoder *enc)
{
	return enc->select_list;
}

static void
append_enum(SyncRowEncoder *enc, StringInfo out, Column *col, Datum d)
{
	Oid			label = DatumGetObjectId(d);
	StringInfoData s;
	Oid			outfn;
	bool		varlena;

	for (int i = 0; i < enc->nenum; i++)
		if (enc->enum_oid[i] == label)
		{
			appendStringInfoString(out, enc->enum_json[i]);
			return;
		}
	getTypeOutputInfo(col->typid, &outfn, &varlena);
	initStringInfo(&s);
	escape_json(&s, OidOutputFunctionCall(outfn, d));
	appendStringInfoString(out, s.data);
	if (enc->nenum < ENUM_CACHE)
	{
		/* kept for the encoder's life, not the row's */
		enc->enum_oid[enc->nenum] = label;
		enc->enum_json[enc->nenum] = MemoryContextStrdup(enc->cxt, s.data);
		enc->nenum++;
	}
	pfree(s.data);
}

/*
 * Values detoasted here are not freed one by one: the caller runs this in
 * a memory context it resets after each fetched chunk of rows.
 */
void
sync_row_encode(SyncRowEncoder *enc, HeapTuple tup, TupleDesc desc,
				StringInfo out, int64 *id)
{
	char		buf[MAXDATELEN + 1];

	/* columns after logs' own (sync_export.c adds some on a cluster) are not encoded */
	Assert(desc->natts >= enc->ncols);
	if (desc->natts > enc->nvalues)
	{
		enc->values = repalloc(enc->values, desc->natts * sizeof(Datum));
		enc->nulls = repalloc(enc->nulls, desc->natts * sizeof(bool));
		enc->nvalues = desc->natts;
	}
	heap_deform_tuple(tup, desc, enc->values, enc->nulls);
	if (enc->ncols == 0)
		appendStringInfoChar(out, '{');
	for (int i = 0; i < enc->ncols; i++)
	{
		Column	   *col = &enc->cols[i];
		Datum		d = enc->values[i];

		appendBinaryStringInfo(out, col->key, col->keylen);
		if (enc->nulls[i])
		{
			appendBinaryStringInfo(out, "null", 4);
			continue;
		}
		switch (col->kind)
		{
			case COL_INT2:
				appendBinaryStringInfo(out, buf, pg_itoa(DatumGetInt16(d), buf));
				break;
			case COL_INT4:
				appendBinaryStringInfo(out, buf, pg_ltoa(DatumGetInt32(d), buf));
				break;
			case COL_INT8:
				appendBinaryStringInfo(out, buf, pg_lltoa(DatumGetInt64(d), buf));
				if (i == enc->id_col)
					*id = DatumGetInt64(d);
				break;
			case COL_TIMESTAMPTZ:
			case COL_TIMESTAMP:
				JsonEncodeDateTime(buf, d, col->kind == COL_TIMESTAMPTZ ? TIMESTAMPTZOID : TIMESTAMPOID, NULL);
				appendStringInfoCharMacro(out, '"');
				appendStringInfoString(out, buf);
				appendStringInfoCharMacro(out, '"');
				break;
			case COL_TEXT:
				{
					text	   *t = DatumGetTextPP(d);

					escape_json_len(out, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
				}
				break;
			case COL_BOOL:
				appendStringInfoString(out, DatumGetBool(d) ? "true" : "false");
				break;
			case COL_JSONB:
				{
					Jsonb	   *jb = DatumGetJsonbP(d);

					(void) JsonbToCString(out, &jb->root, VARSIZE(jb));
				}
				break;
			case COL_ENUM:
				append_enum(enc, out, col, d);
				break;
			case COL_JSON_TEXT:
				{
					text	   *t = DatumGetTextPP(d);

					appendBinaryStringInfo(out, VARDATA_ANY(t), VARSIZE_ANY_EXHDR(t));
				}
				break;
		}
	}
	appendStringInfoChar(out, '}');
}
