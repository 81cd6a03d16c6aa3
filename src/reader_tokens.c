/*-------------------------------------------------------------------------
 *
 * reader_tokens.c
 *		Reader tokens: logagg.create_reader_token(), and the per-process
 *		cache that network endpoints serving log records use to check a
 *		reader token and learn which sources it may read.
 *
 * Tokens are made like source tokens (sources.c: 32 random bytes in hex,
 * prefix "lgr_", only the SHA-256 stored).  The cache mirrors the ingest
 * worker's token cache (ingest/auth.c): a hash table keyed by the token's
 * SHA-256, reloaded when the reader_tokens_changed trigger's relcache
 * invalidation arrives; a lookup hashes the presented token, finds the
 * entry and compares again in constant time, and raises no error, so it
 * may run outside a transaction or inside a library callback.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/sha.h>

#include "catalog/namespace.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "logagg.h"

#define READER_TOKEN_PREFIX "lgr_"
#define READER_SOURCES_MAX 1024

typedef struct ReaderEntry
{
	uint8		hash[LOGAGG_TOKEN_HASH_LEN];	/* key */
	bool		enabled;
	char		name[129];
	char		sources[READER_SOURCES_MAX];
} ReaderEntry;

static HTAB *readers = NULL;
static bool readers_valid = false;
static bool callback_registered = false;
static Oid	readers_relid = InvalidOid;

static void
readers_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == readers_relid)
		readers_valid = false;
}

/*
 * Make the cache current: (re)load it when an invalidation (delivered at
 * transaction start and at each command) said the table changed.  Needs a
 * transaction; connects SPI itself.
 */
void
logagg_reader_tokens_refresh(void)
{
	HASHCTL		ctl;
	int			ret;

	if (!callback_registered)
	{
		CacheRegisterRelcacheCallback(readers_relcache_callback, (Datum) 0);
		callback_registered = true;
	}
	AcceptInvalidationMessages();
	if (readers_valid && readers != NULL)
		return;

	if (readers)
		hash_destroy(readers);
	readers = NULL;
	ctl.keysize = LOGAGG_TOKEN_HASH_LEN;
	ctl.entrysize = sizeof(ReaderEntry);
	ctl.hcxt = TopMemoryContext;
	readers_valid = true;		/* an invalidation during the load wins */
	readers_relid = get_relname_relid("reader_tokens", get_namespace_oid(LOGAGG_SCHEMA, false));

	SPI_connect();
	ret = SPI_execute("SELECT token_hash, revoked_at IS NULL, sources, name FROM logagg.reader_tokens", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: reading logagg.reader_tokens failed: %s", SPI_result_code_string(ret));
	readers = hash_create("logagg reader tokens", 64, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		Datum		d = SPI_getbinval(tup, desc, 1, &isnull);
		bytea	   *hash;
		ReaderEntry *e;

		if (isnull)
			continue;
		hash = DatumGetByteaPP(d);
		if (VARSIZE_ANY_EXHDR(hash) != LOGAGG_TOKEN_HASH_LEN)
			continue;
		e = hash_search(readers, VARDATA_ANY(hash), HASH_ENTER, NULL);
		e->enabled = DatumGetBool(SPI_getbinval(tup, desc, 2, &isnull));
		strlcpy(e->sources, SPI_getvalue(tup, desc, 3), sizeof(e->sources));
		strlcpy(e->name, SPI_getvalue(tup, desc, 4), sizeof(e->name));
	}
	SPI_finish();
}

/*
 * Is TOKEN a valid (known, not revoked) reader token?  If so, its source
 * pattern is copied into SOURCES.  Never raises an error.
 */
bool
logagg_reader_token_sources(const char *token, char *sources, int size)
{
	uint8		hash[LOGAGG_TOKEN_HASH_LEN];
	char		name[129];
	bool		ok;

	ok = logagg_reader_token_lookup(token, hash, name, sizeof(name), sources, size);
	explicit_bzero(hash, sizeof(hash));
	return ok;
}

/*
 * The same check, also giving the token's SHA-256 (kept by a connection,
 * to notice a revocation later: logagg_reader_hash_valid) and its name.
 * Never raises an error.
 */
bool
logagg_reader_token_lookup(const char *token, uint8 *hash, char *name, int namesize,
						   char *sources, int size)
{
	ReaderEntry *e;
	bool		ok;

	if (readers == NULL || token == NULL || token[0] == '\0')
		return false;
	/* OpenSSL, not pg_cryptohash: no resource owner is needed (auth.c) */
	SHA256((const unsigned char *) token, strlen(token), hash);
	e = hash_search(readers, hash, HASH_FIND, NULL);
	/* the hash table compared the key; compare again in constant time */
	ok = e != NULL && e->enabled && logagg_timingsafe_equal(e->hash, hash, LOGAGG_TOKEN_HASH_LEN);
	if (ok)
	{
		strlcpy(sources, e->sources, size);
		strlcpy(name, e->name, namesize);
	}
	return ok;
}

/* Is the token with this SHA-256 still known and not revoked? */
bool
logagg_reader_hash_valid(const uint8 *hash)
{
	ReaderEntry *e;

	if (readers == NULL)
		return false;
	e = hash_search(readers, hash, HASH_FIND, NULL);
	return e != NULL && e->enabled;
}

PG_FUNCTION_INFO_V1(logagg_create_reader_token);
Datum
logagg_create_reader_token(PG_FUNCTION_ARGS)
{
	text	   *name = PG_GETARG_TEXT_PP(0);
	text	   *sources = PG_GETARG_TEXT_PP(1);
	Oid			argtypes[3] = {TEXTOID, BYTEAOID, TEXTOID};
	Datum		values[3];
	bytea	   *hash;
	char	   *token;
	int			ret;

	token = logagg_new_token(READER_TOKEN_PREFIX, &hash);
	values[0] = PointerGetDatum(name);
	values[1] = PointerGetDatum(hash);
	values[2] = PointerGetDatum(sources);
	SPI_connect();

	/*
	 * The pattern is checked and normalised by the same SQL function that
	 * grant_source_read uses, so both accept the same patterns.
	 */
	ret = SPI_execute_with_args("INSERT INTO logagg.reader_tokens (name, token_hash, sources) "
								"VALUES ($1, $2, pg_catalog.array_to_string(logagg._source_globs($3), ',')) "
								"ON CONFLICT (name) DO NOTHING",
								3, argtypes, values, NULL, false, 0);
	if (ret != SPI_OK_INSERT)
		elog(ERROR, "logagg: writing logagg.reader_tokens failed: %s", SPI_result_code_string(ret));
	if (SPI_processed == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("reader token \"%s\" already exists", text_to_cstring(name)),
				 errhint("Revoke it with logagg.revoke_reader_token() and create one under another name.")));
	SPI_finish();
	PG_RETURN_TEXT_P(cstring_to_text(token));
}

/*
 * logagg._reader_token_sources(token): the pattern of a valid token, else
 * NULL -- through the cache, as the network endpoints look tokens up.
 */
PG_FUNCTION_INFO_V1(logagg_reader_token_sources_sql);
Datum
logagg_reader_token_sources_sql(PG_FUNCTION_ARGS)
{
	char	   *token = text_to_cstring(PG_GETARG_TEXT_PP(0));
	char		sources[READER_SOURCES_MAX];
	bool		ok;

	logagg_reader_tokens_refresh();
	ok = logagg_reader_token_sources(token, sources, sizeof(sources));
	explicit_bzero(token, strlen(token));
	if (!ok)
		PG_RETURN_NULL();
	PG_RETURN_TEXT_P(cstring_to_text(sources));
}
