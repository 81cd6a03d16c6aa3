/*-------------------------------------------------------------------------
 *
 * sources.c
 *		Log sources and their ingest tokens: logagg.create_source(),
 *		rotate_source_token(), revoke_source(), and the hashing and
 *		constant-time comparison the ingest worker uses to check tokens,
 *		and the glob match of forwarding tokens' source patterns.
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
 * (when hash is not NULL), $3 = forwarder and $4 = forward_sources (when
 * nargs is 4); returns the number of rows it touched.
 */
static uint64
sources_execute_args(const char *sql, int expected, int nargs, const char *name,
					 bytea *hash, bool forwarder, const char *pattern)
{
	Oid			argtypes[4] = {TEXTOID, BYTEAOID, BOOLOID, TEXTOID};
	Datum		values[4];
	char		nulls[4] = {' ', ' ', ' ', pattern ? ' ' : 'n'};
	int			ret;
	uint64		processed;

	values[0] = CStringGetTextDatum(name);
	values[1] = PointerGetDatum(hash);
	values[2] = BoolGetDatum(forwarder);
	values[3] = pattern ? CStringGetTextDatum(pattern) : (Datum) 0;
	SPI_connect();
	ret = SPI_execute_with_args(sql, nargs, argtypes, values, nulls, false, 0);
	if (ret != expected)
		elog(ERROR, "logagg: writing logagg.sources failed: %s", SPI_result_code_string(ret));
	processed = SPI_processed;
	SPI_finish();
	return processed;
}

static uint64
sources_execute(const char *sql, int expected, const char *name, bytea *hash)
{
	return sources_execute_args(sql, expected, hash ? 2 : 1, name, hash, false, NULL);
}

/*
 * Does the comma-separated list of globs PATTERNS match NAME?  '*' matches
 * any run of characters (none included), '?' exactly one; everything else
 * itself, case-sensitively (source names are).  Linear backtracking on the
 * last '*' only, so no pattern costs more than length(glob) x length(name)
 * steps.  Used per record for forwarding tokens (src/ingest/record.c).
 */
bool
logagg_source_pattern_match(const char *patterns, const char *name)
{
	const char *g = patterns;

	for (;;)
	{
		const char *p = g,
				   *n = name,
				   *star = NULL,
				   *retry = NULL;
		bool		matched;

		for (;;)
		{
			if (*p == '*')
			{
				star = ++p;
				retry = n;
			}
			else if (*n != '\0' && (*p == '?' || *p == *n) && *p != ',' && *p != '\0')
			{
				p++;
				n++;
			}
			else if (*n == '\0' && (*p == ',' || *p == '\0'))
			{
				matched = true;
				break;
			}
			else if (star && *retry != '\0')
			{
				p = star;
				n = ++retry;
			}
			else
			{
				matched = false;
				break;
			}
		}
		if (matched)
			return true;
		g = strchr(g, ',');
		if (g == NULL)
			return false;
		g++;
	}
}

/*
 * Is PATTERN a valid forward_sources value: comma-separated globs, each
 * 1-128 of the characters of source names plus '*' and '?', starting with
 * a letter, a digit or a wildcard, at most 256 characters in all (as the
 * table's check says)?
 */
static bool
valid_source_pattern(const char *pattern)
{
	size_t		len = strlen(pattern);
	int			elem = 0;

	if (len < 1 || len > 256)
		return false;
	for (size_t i = 0; i <= len; i++)
	{
		char		c = pattern[i];

		if (c == ',' || c == '\0')
		{
			if (elem == 0 || elem > 128)
				return false;
			elem = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
			  c == '*' || c == '?' || (elem > 0 && (c == '.' || c == '_' || c == '-'))))
			return false;
		elem++;
	}
	return true;
}

/*
 * create_source(name [, forwarder [, sources]]).  The C function also
 * serves the one-argument SQL definition of version 1.0.
 */
PG_FUNCTION_INFO_V1(logagg_create_source);
Datum
logagg_create_source(PG_FUNCTION_ARGS)
{
	char	   *name;
	bool		forwarder = false;
	char	   *pattern = NULL;
	bytea	   *hash;
	char	   *token;

	if (PG_ARGISNULL(0))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("source name must not be NULL")));
	name = text_to_cstring(PG_GETARG_TEXT_PP(0));
	check_source_name(name);
	if (PG_NARGS() > 1)
	{
		if (PG_ARGISNULL(1))
			ereport(ERROR,
					(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
					 errmsg("forwarder must be true or false, not NULL")));
		forwarder = PG_GETARG_BOOL(1);
	}
	if (PG_NARGS() > 2 && !PG_ARGISNULL(2))
	{
		pattern = text_to_cstring(PG_GETARG_TEXT_PP(2));
		if (!forwarder)
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("sources applies only to a forwarding token"),
					 errhint("Call logagg.create_source('%s', forwarder => true, sources => '%s').",
							 name, pattern)));
		if (!valid_source_pattern(pattern))
			ereport(ERROR,
					(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
					 errmsg("invalid sources pattern \"%s\"", pattern),
					 errdetail("sources is a comma-separated list of globs: each 1 to 128 letters, digits, '.', '_', '-', '*' (any run of characters) or '?' (one character), starting with a letter, a digit or a wildcard; at most 256 characters in all."),
					 errhint("For example: sources => 'team-a-*,billing'.")));
	}
	token = new_token(&hash);
	/* version 1.0's table has no forwarding columns: its one-argument call */
	if ((PG_NARGS() == 1 ?
		 sources_execute("INSERT INTO logagg.sources (name, token_hash) VALUES ($1, $2) "
						 "ON CONFLICT (name) DO NOTHING",
						 SPI_OK_INSERT, name, hash) :
		 sources_execute_args("INSERT INTO logagg.sources (name, token_hash, forwarder, forward_sources) "
							  "VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO NOTHING",
							  SPI_OK_INSERT, 4, name, hash, forwarder, pattern)) == 0)
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
