/*-------------------------------------------------------------------------
 *
 * auth.c
 *		Token authentication for the ingest server: a cache of the token
 *		hashes of logagg.sources, reloaded when the sources_changed trigger's
 *		relcache invalidation arrives, and the revocation of connections whose
 *		token is no longer valid.  The cache also says which tokens forward
 *		(records name their own source) and within which patterns, and which
 *		sources turned off the reading of plain-text lines (sources.detect).
 *
 * The main loop starts an empty transaction before servicing the sockets
 * when none ran in the last millisecond, so a revoked token is refused
 * from the next connection on.  Lookups (token_source, ingest_authenticate)
 * run inside lws callbacks and never raise errors.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <openssl/sha.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/hsearch.h"
#include "utils/inval.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"

#include "ingest/server_int.h"

typedef struct SourceEntry
{
	uint8		hash[LOGAGG_TOKEN_HASH_LEN];	/* key */
	char		name[INGEST_MAX_SOURCE_LEN + 1];
	bool		enabled;
	bool		forwarder;		/* records name their own source */
	char		forward_sources[INGEST_MAX_FORWARD_SOURCES_LEN + 1];	/* "" = any */
} SourceEntry;

/* a source that turned off the reading of plain-text lines */
typedef struct NoDetectEntry
{
	char		name[INGEST_MAX_SOURCE_LEN + 1];	/* key */
} NoDetectEntry;

static HTAB *sources = NULL;
static HTAB *no_detect = NULL;
static bool sources_valid = false;
static Oid	sources_relid = InvalidOid;
static TimestampTz last_xact_start = 0;

static void
sources_relcache_callback(Datum arg, Oid relid)
{
	if (relid == InvalidOid || relid == sources_relid)
		sources_valid = false;
}

/* Reload the cache.  Needs a transaction with SPI connected. */
static void
sources_load(void)
{
	HASHCTL		ctl;
	int			ret;

	if (sources)
		hash_destroy(sources);
	ctl.keysize = LOGAGG_TOKEN_HASH_LEN;
	ctl.entrysize = sizeof(SourceEntry);
	ctl.hcxt = TopMemoryContext;
	sources = hash_create("logagg ingest tokens", 64, &ctl,
						  HASH_ELEM | HASH_BLOBS | HASH_CONTEXT);
	if (no_detect)
		hash_destroy(no_detect);
	ctl.keysize = INGEST_MAX_SOURCE_LEN + 1;
	ctl.entrysize = sizeof(NoDetectEntry);
	no_detect = hash_create("logagg sources without detection", 16, &ctl,
							HASH_ELEM | HASH_STRINGS | HASH_CONTEXT);
	sources_valid = true;		/* an invalidation during the load wins */
	sources_relid = get_relname_relid("sources", get_namespace_oid(LOGAGG_SCHEMA, false));

	/*
	 * The columns 1.1 added, through to_jsonb: a 1.0 schema not yet
	 * updated (ALTER EXTENSION UPDATE) has none of them.
	 */
	ret = SPI_execute("SELECT name, token_hash, enabled, "
					  "coalesce((pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'detect')::boolean, true), "
					  "coalesce((pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'forwarder')::boolean, false), "
					  "pg_catalog.to_jsonb(s) OPERATOR(pg_catalog.->>) 'forward_sources' "
					  "FROM logagg.sources s", true, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "logagg: reading logagg.sources failed: %s", SPI_result_code_string(ret));
	for (uint64 i = 0; i < SPI_processed; i++)
	{
		HeapTuple	tup = SPI_tuptable->vals[i];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull;
		bytea	   *hash = DatumGetByteaPP(SPI_getbinval(tup, desc, 2, &isnull));
		SourceEntry *e;
		bool		found;
		bool		detect_null;
		char	   *name = SPI_getvalue(tup, desc, 1);

		if (!DatumGetBool(SPI_getbinval(tup, desc, 4, &detect_null)) && !detect_null &&
			strlen(name) <= INGEST_MAX_SOURCE_LEN)
			(void) hash_search(no_detect, name, HASH_ENTER, NULL);

		if (isnull || VARSIZE_ANY_EXHDR(hash) != LOGAGG_TOKEN_HASH_LEN)
			continue;
		e = hash_search(sources, VARDATA_ANY(hash), HASH_ENTER, &found);
		strlcpy(e->name, name, sizeof(e->name));
		e->enabled = DatumGetBool(SPI_getbinval(tup, desc, 3, &isnull));
		e->forwarder = DatumGetBool(SPI_getbinval(tup, desc, 5, &isnull)) && !isnull;
		e->forward_sources[0] = '\0';
		{
			char	   *pattern = SPI_getvalue(tup, desc, 6);

			if (pattern)
				strlcpy(e->forward_sources, pattern, sizeof(e->forward_sources));
		}
	}
}

static void
sources_load_cb(void *arg)
{
	sources_load();
}

/*
 * Stop taking records from connections whose token is no longer valid
 * (revoked, deleted, or now naming another source): their unparsed input
 * is dropped, WebSocket connections are closed (1008), and a waiting
 * POST gets 401.  What was parsed before stays in the batch: it arrived
 * before the revocation.
 */
static void
close_revoked(void)
{
	for (Conn *c = ingest_conns, *next; c; c = next)
	{
		SourceEntry *e;

		next = c->next;
		if (!c->has_token || c->revoked)
			continue;
		e = hash_search(sources, c->token_hash, HASH_FIND, NULL);
		if (e && e->enabled && strcmp(e->name, c->source) == 0)
			continue;
		c->revoked = true;
		ingest_conn_drop_input(c);
		c->rx.len = 0;
		if (!c->is_http)
			ingest_conn_kill(c, LWS_CLOSE_STATUS_POLICY_VIOLATION, "token revoked");
		else if (c->wsi && (c->http_waiting || (!c->http_body_done && c->http_status == 0)))
		{
			/* a body queued or still arriving: refuse it now, then close */
			c->http_waiting = false;
			c->http_body_done = true;
			c->http_close = true;
			ingest_http_reply(c, HTTP_STATUS_UNAUTHORIZED, "application/json",
							  "{\"error\": \"token revoked\"}");
		}
		ingest_conn_flow(c);
		ingest_conn_release_if_done(c);
	}
}

/*
 * Pick up committed changes to logagg.sources: a transaction start
 * delivers pending invalidations.  Unless forced, at most once a
 * millisecond (before new connections are authenticated).
 */
void
ingest_auth_refresh(bool force)
{
	TimestampTz now = GetCurrentTimestamp();

	if (sources_valid && !force && now - last_xact_start < 1000)
		return;
	last_xact_start = now;
	if (sources_valid)
	{
		StartTransactionCommand();
		CommitTransactionCommand();
	}
	if (!sources_valid)
	{
		logagg_run_or_exit(sources_load_cb, NULL, "logagg ingest: loading tokens");
		close_revoked();
	}
}

/*
 * Under trust no token is checked, but the cache still says which sources
 * read plain-text lines: load it when a change made it stale (the batches'
 * transactions deliver the invalidations).
 */
void
ingest_auth_load_if_stale(void)
{
	if (!sources_valid)
	{
		last_xact_start = GetCurrentTimestamp();
		logagg_run_or_exit(sources_load_cb, NULL, "logagg ingest: loading sources");
	}
}

/*
 * The source a token belongs to, or NULL when it is unknown or revoked.
 * Callable from callbacks: the hash lookup and SHA-256 don't raise errors
 * for any input.
 */
static const char *
token_source(const char *token, uint8 *hash)
{
	SourceEntry *e;

	if (sources == NULL || token[0] == '\0')
		return NULL;

	/*
	 * OpenSSL directly, not logagg_token_hash(): pg_cryptohash needs a
	 * resource owner, and we are outside any transaction here.  Both
	 * compute plain SHA-256.
	 */
	SHA256((const unsigned char *) token, strlen(token), hash);
	e = hash_search(sources, hash, HASH_FIND, NULL);
	/* the hash table compared the key; compare again in constant time */
	if (e == NULL || !e->enabled || !logagg_timingsafe_equal(e->hash, hash, LOGAGG_TOKEN_HASH_LEN))
		return NULL;
	return e->name;
}

/*
 * Token from "Authorization: Bearer TOKEN", or the password of
 * "Authorization: Basic", else from ?token=.
 */
static void
request_token(struct lws *wsi, char *token, int size)
{
	char		hdr[MAX_TOKEN_LEN + 16];
	const char *arg;

	token[0] = '\0';
	if (lws_hdr_copy(wsi, hdr, sizeof(hdr), WSI_TOKEN_HTTP_AUTHORIZATION) > 0 &&
		pg_strncasecmp(hdr, "Bearer ", 7) == 0)
	{
		const char *t = hdr + 7;

		while (*t == ' ')
			t++;
		strlcpy(token, t, size);
		return;
	}
	if (pg_strncasecmp(hdr, "Basic ", 6) == 0)
	{
		/* HTTP Basic (what Elasticsearch and Loki clients send): any user, the token as password */
		char		dec[MAX_TOKEN_LEN + 16];
		const char *t = hdr + 6;
		char	   *colon;
		int			n;

		while (*t == ' ')
			t++;
		n = lws_b64_decode_string(t, dec, sizeof(dec));
		if (n > 0 && (colon = memchr(dec, ':', n)) != NULL)
		{
			dec[n] = '\0';
			strlcpy(token, colon + 1, size);
		}
		explicit_bzero(dec, sizeof(dec));
		explicit_bzero(hdr, sizeof(hdr));
		return;
	}
	arg = lws_get_urlarg_by_name(wsi, "token=", hdr, sizeof(hdr));
	if (arg)
		strlcpy(token, arg, size);
}

/*
 * Check the request's credentials.  Returns 0 if allowed (source filled
 * in, "" under trust; *has_token and hash say which token it was), else
 * the HTTP status to refuse with.
 */
int
ingest_authenticate(struct lws *wsi, char *source, int size, bool *has_token, uint8 *hash)
{
	char		token[MAX_TOKEN_LEN];
	const char *name;

	source[0] = '\0';
	*has_token = false;
	if (logagg_auth == LOGAGG_AUTH_TRUST)
		return 0;
	request_token(wsi, token, sizeof(token));
	name = token_source(token, hash);
	explicit_bzero(token, sizeof(token));
	if (name == NULL)
		return HTTP_STATUS_UNAUTHORIZED;
	strlcpy(source, name, size);
	*has_token = true;
	return 0;
}

/*
 * Whether the token with this hash forwards, and its patterns, into
 * ORIGIN (whose source is the token's name).  Called from the main loop
 * for every message before it is parsed, so a change of the token's
 * forwarding applies from the next message on; a token no longer in the
 * cache (revoked) leaves the origin as it is: close_revoked has dropped
 * its input.  The pattern points into the cache, which is only reloaded
 * between parses.
 */
void
ingest_auth_forwarding(const uint8 *hash, IngestOrigin *origin)
{
	SourceEntry *e;

	if (sources == NULL)
		return;
	e = hash_search(sources, hash, HASH_FIND, NULL);
	if (e == NULL || !e->enabled || !e->forwarder)
		return;
	origin->forwarder = true;
	origin->forward_sources = e->forward_sources[0] ? e->forward_sources : NULL;
}

/*
 * Does SOURCE want its plain-text lines read (sources.detect)?  A source
 * the table does not know does (a name a record gave under trust).
 * Called while parsing, outside transactions: a hash lookup only.
 */
bool
ingest_auth_detects(const char *source)
{
	return no_detect == NULL || strlen(source) > INGEST_MAX_SOURCE_LEN ||
		hash_search(no_detect, source, HASH_FIND, NULL) == NULL;
}

/* Register for invalidations of logagg.sources (once, at server start). */
void
ingest_auth_init(void)
{
	CacheRegisterRelcacheCallback(sources_relcache_callback, (Datum) 0);
}

/*
 * Is the cache possibly older than a message received at RECEIVED: not
 * loaded, or no transaction has started since (so an invalidation may be
 * pending)?
 */
bool
ingest_auth_outdated(TimestampTz received)
{
	return !sources_valid || received >= last_xact_start;
}

/* A transaction started at WHEN (it delivered pending invalidations). */
void
ingest_auth_xact_started(TimestampTz when)
{
	last_xact_start = when;
}
