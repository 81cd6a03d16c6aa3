/*-------------------------------------------------------------------------
 *
 * sources.c
 *		Log sources and their ingest tokens: logagg.create_source(),
 *		rotate_source_token(), revoke_source(), and the hashing and
 *		constant-time comparison the ingest worker uses to check tokens.
 *
 * A token is 32 bytes from pg_strong_random(), shown once in hex with a
 * "lgt_" prefix (so it is recognisable in a leaked config file).  Only its
 * SHA-256 is stored: a stolen database does not yield working tokens.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "common/cryptohash.h"
#include "common/sha2.h"
#include "executor/spi.h"
#include "fmgr.h"
#include "utils/builtins.h"

#include "logagg.h"

#define TOKEN_RANDOM_BYTES 32
#define TOKEN_PREFIX "lgt_"

void
logagg_token_hash(const char *token, size_t len, uint8 out[LOGAGG_TOKEN_HASH_LEN])
{
	pg_cryptohash_ctx *ctx = pg_cryptohash_create(PG_SHA256);

	if (ctx == NULL ||
		pg_cryptohash_init(ctx) < 0 ||
		pg_cryptohash_update(ctx, (const uint8 *) token, len) < 0 ||
		pg_cryptohash_final(ctx, out, LOGAGG_TOKEN_HASH_LEN) < 0)
		elog(ERROR, "logagg: could not compute SHA-256 of token");
	pg_cryptohash_free(ctx);
}

/* Compare without an early exit, so timing says nothing about where they differ. */
bool
logagg_timingsafe_equal(const uint8 *a, const uint8 *b, size_t len)
{
	volatile uint8 diff = 0;

	for (size_t i = 0; i < len; i++)
		diff |= a[i] ^ b[i];
	return diff == 0;
}

bool
logagg_valid_source_name(const char *name)
{
	size_t		len = strlen(name);

	if (len < 1 || len > 128)
		return false;
	for (size_t i = 0; i < len; i++)
	{
		char		c = name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  (i > 0 && (c == '.' || c == '_' || c == '-'))))
			return false;
	}
	return true;
}

static void
check_source_name(const char *name)
{
	if (!logagg_valid_source_name(name))
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("invalid source name \"%s\"", name),
				 errdetail("A source name is 1 to 128 characters: letters, digits, '.', '_' and '-', starting with a letter or digit."),
				 errhint("Source names appear in object keys of the cloud sync, so they are kept simple.")));
}

/*
 * A fresh token with the given prefix ("lgt_" for sources, "lgr_" for
 * readers); its hash goes into *hash_out as a bytea.
 */
char *
logagg_new_token(const char *prefix, bytea **hash_out)
{
	uint8		rnd[TOKEN_RANDOM_BYTES];
	char	   *token;
	bytea	   *hash;

	if (!pg_strong_random(rnd, sizeof(rnd)))
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("could not generate a random token")));
	token = palloc(strlen(prefix) + 2 * TOKEN_RANDOM_BYTES + 1);
	strcpy(token, prefix);
	hex_encode((const char *) rnd, sizeof(rnd), token + strlen(prefix));
	token[strlen(prefix) + 2 * TOKEN_RANDOM_BYTES] = '\0';
	explicit_bzero(rnd, sizeof(rnd));

	hash = palloc(VARHDRSZ + LOGAGG_TOKEN_HASH_LEN);
	SET_VARSIZE(hash, VARHDRSZ + LOGAGG_TOKEN_HASH_LEN);
	logagg_token_hash(token, strlen(token), (uint8 *) VARDATA(hash));
	*hash_out = hash;
	return token;
}

static char *
new_token(bytea **hash_out)
{
	return logagg_new_token(TOKEN_PREFIX, hash_out);
}

/*
 * Run one statement over logagg.sources with $1 = name, $2 = token hash
 * (when hash is not NULL); returns the number of rows it touched.
 */
static uint64
sources_execute(const char *sql, int expected, const char *name, bytea *hash)
{
	Oid			argtypes[2] = {TEXTOID, BYTEAOID};
	Datum		values[2];
	int			ret;
	uint64		processed;

	values[0] = CStringGetTextDatum(name);
	values[1] = PointerGetDatum(hash);
	SPI_connect();
	ret = SPI_execute_with_args(sql, hash ? 2 : 1, argtypes, values, NULL, false, 0);
	if (ret != expected)
		elog(ERROR, "logagg: writing logagg.sources failed: %s", SPI_result_code_string(ret));
	processed = SPI_processed;
	SPI_finish();
	return processed;
}

PG_FUNCTION_INFO_V1(logagg_create_source);
Datum
logagg_create_source(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bytea	   *hash;
	char	   *token;

	check_source_name(name);
	token = new_token(&hash);
	if (sources_execute("INSERT INTO logagg.sources (name, token_hash) VALUES ($1, $2) "
						"ON CONFLICT (name) DO NOTHING",
						SPI_OK_INSERT, name, hash) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_DUPLICATE_OBJECT),
				 errmsg("source \"%s\" already exists", name),
				 errhint("Use logagg.rotate_source_token('%s') to issue a new token for it.", name)));
	PG_RETURN_TEXT_P(cstring_to_text(token));
}

PG_FUNCTION_INFO_V1(logagg_rotate_source_token);
Datum
logagg_rotate_source_token(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	bytea	   *hash;
	char	   *token;

	token = new_token(&hash);
	if (sources_execute("UPDATE logagg.sources SET token_hash = $2, enabled = true, revoked_at = NULL "
						"WHERE name = $1",
						SPI_OK_UPDATE, name, hash) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("source \"%s\" does not exist", name),
				 errhint("Create it with logagg.create_source('%s').", name)));
	PG_RETURN_TEXT_P(cstring_to_text(token));
}

PG_FUNCTION_INFO_V1(logagg_revoke_source);
Datum
logagg_revoke_source(PG_FUNCTION_ARGS)
{
	char	   *name = text_to_cstring(PG_GETARG_TEXT_PP(0));

	if (sources_execute("UPDATE logagg.sources SET enabled = false, "
						"revoked_at = coalesce(revoked_at, now()) WHERE name = $1",
						SPI_OK_UPDATE, name, NULL) == 0)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("source \"%s\" does not exist", name),
				 errhint("SELECT name FROM logagg.sources lists the sources.")));
	PG_RETURN_VOID();
}
