/*-------------------------------------------------------------------------
 *
 * es_bulk.c
 *		The Elasticsearch door on the ingest port: POST /_bulk and
 *		POST /{index}/_bulk (NDJSON action/document pairs), GET / (the
 *		cluster information an Elasticsearch 8 client or Beat checks), and
 *		the replies in Elasticsearch's shapes.
 *
 * A _bulk body is queued like any POST body and goes through the same
 * batches, COPY and commit.  Only its framing differs: input.c hands it
 * to ingest_es_parse_part, which reads the action line of each pair here
 * and gives the document line to the ordinary record parser
 * (ingest_parse_message), so that a document is stored or rejected
 * exactly as a record of POST /ingest would be.  The parse callbacks
 * note each document's outcome (ingest_es_note_*); after the COMMIT that
 * made them true, commit.c asks ingest_es_reply for the items.
 *
 * Which request a connection is serving (the EsRequest) is set up in an
 * lws callback, so it is malloc'd; everything else runs in the main loop.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/time.h>

#include "common/jsonapi.h"
#include "lib/stringinfo.h"
#include "mb/pg_wchar.h"
#include "utils/json.h"
#include "utils/memutils.h"

#include "ingest/parse_int.h"
#include "ingest/server_int.h"

/* Index name used in replies when neither the path nor the action has one. */
#define ES_DEFAULT_INDEX	"logagg"
/* Longest index name or _id echoed back (Elasticsearch's own limit: 512). */
#define ES_MAX_NAME			512

typedef enum EsOutcome
{
	ES_PENDING,					/* the document is in the batch, not stored yet */
	ES_CREATED,
	ES_FAILED
} EsOutcome;

typedef struct EsItem
{
	char		action[8];		/* index, create, delete, update */
	char	   *index;			/* malloc'd */
	char	   *id;				/* malloc'd */
	EsOutcome	outcome;
	int			status;
	const char *type;			/* error type (static) */
	char	   *reason;			/* malloc'd */
	uint64		batch_gen;		/* the batch its record is in ... */
	int			rec_idx;		/* ... and its index there (-1: none) */
} EsItem;

struct EsRequest
{
	char		index[ES_MAX_NAME + 1];	/* from the path, "" if none */
	struct timeval started;
	EsItem	   *items;
	int			nitems;
	int			maxitems;
	int			current;		/* item whose document is being parsed */
	const char *fatal;			/* the body is not NDJSON at all */
	uint64		next_id;
};

static uint64 batch_gen = 1;

/* ---- request set-up (lws callbacks: malloc only) ---- */

static void
es_free_items(EsRequest *es)
{
	for (int i = 0; i < es->nitems; i++)
	{
		free(es->items[i].index);
		free(es->items[i].id);
		free(es->items[i].reason);
	}
	free(es->items);
	es->items = NULL;
	es->nitems = es->maxitems = 0;
}

void
ingest_es_free(Conn *c)
{
	if (c->es)
	{
		es_free_items(c->es);
		free(c->es);
		c->es = NULL;
	}
}

/*
 * Is URI a _bulk path ("/_bulk" or "/{index}/_bulk")?  INDEX gets the
 * index name ("" for none).
 */
static bool
es_bulk_path(const char *uri, char *index, size_t size)
{
	size_t		n = strlen(uri);
	const char *slash;

	index[0] = '\0';
	if (strcmp(uri, "/_bulk") == 0)
		return true;
	if (n < 8 || strcmp(uri + n - 6, "/_bulk") != 0 || uri[0] != '/')
		return false;
	slash = strchr(uri + 1, '/');
	if (slash != uri + n - 6 || (size_t) (slash - uri - 1) >= size)
		return false;
	memcpy(index, uri + 1, slash - uri - 1);
	index[slash - uri - 1] = '\0';
	return true;
}

/*
 * Content types a _bulk body may have: NDJSON, JSON, and what the 8.x
 * clients send in compatibility mode (application/vnd.elasticsearch+x-ndjson).
 */
static bool
es_content_type_ok(struct lws *wsi)
{
	static const char *const ok[] = {
		"application/x-ndjson", "application/json",
		"application/vnd.elasticsearch+x-ndjson", "application/vnd.elasticsearch+json"
	};
	char		ct[128];

	if (lws_hdr_copy(wsi, ct, sizeof(ct), WSI_TOKEN_HTTP_CONTENT_TYPE) <= 0)
		return true;			/* curl -d without -H: accept, as ES does */

	for (int i = 0; i < lengthof(ok); i++)
	{
		size_t		n = strlen(ok[i]);

		if (pg_strncasecmp(ct, ok[i], n) == 0 && (ct[n] == '\0' || ct[n] == ';' || ct[n] == ' '))
			return true;
	}
	return false;
}

/* The Elasticsearch error shape, for a refusal made in a callback. */
static int
es_error_reply(Conn *c, int status, const char *type, const char *reason)
{
	char		body[512];

	snprintf(body, sizeof(body),
			 "{\"error\": {\"root_cause\": [{\"type\": \"%s\", \"reason\": \"%s\"}], "
			 "\"type\": \"%s\", \"reason\": \"%s\"}, \"status\": %d}",
			 type, reason, type, reason, status);
	return ingest_http_reply(c, status, "application/json", body);
}

/* GET /: what an Elasticsearch 8 cluster answers. */
static int
es_info_reply(Conn *c)
{
	return ingest_http_reply(c, HTTP_STATUS_OK, "application/json",
							 "{\"name\": \"logagg\", \"cluster_name\": \"logagg\", "
							 "\"cluster_uuid\": \"bG9nYWdnLWxvZ2FnZy1sb2dh\", "
							 "\"version\": {\"number\": \"8.11.0\", \"build_flavor\": \"default\", "
							 "\"build_type\": \"logagg\", \"build_hash\": \"logagg\", "
							 "\"build_date\": \"2023-11-04T10:04:57.184859352Z\", "
							 "\"build_snapshot\": false, \"lucene_version\": \"9.8.0\", "
							 "\"minimum_wire_compatibility_version\": \"7.17.0\", "
							 "\"minimum_index_compatibility_version\": \"7.0.0\"}, "
							 "\"tagline\": \"You Know, for Search\"}");
}

/*
 * Route an Elasticsearch request (called for every plain HTTP request
 * before the native routes).  Returns 1 when URI is not one of ours,
 * else what the lws callback returns.  *bulk is set when a _bulk body
 * follows (the caller checks the token and the framing).
 */
int
ingest_es_route(struct lws *wsi, Conn *c, const char *uri, bool is_post, bool *bulk)
{
	char		index[ES_MAX_NAME + 1];

	*bulk = false;
	if (strcmp(uri, "/") == 0 && !is_post)
	{
		c->es_reply = true;
		return 0;				/* after the token check: es_info */
	}
	if (!es_bulk_path(uri, index, sizeof(index)))
		return 1;
	c->es_reply = true;
	if (!is_post)
		return es_error_reply(c, HTTP_STATUS_METHOD_NOT_ALLOWED, "illegal_argument_exception",
							  "the _bulk endpoint takes POST requests");
	if (!es_content_type_ok(wsi))
		return es_error_reply(c, HTTP_STATUS_NOT_ACCEPTABLE, "media_type_header_exception",
							  "Content-Type must be application/x-ndjson or application/json");
	if (c->es == NULL && (c->es = calloc(1, sizeof(EsRequest))) == NULL)
		return -1;
	es_free_items(c->es);
	strlcpy(c->es->index, index, sizeof(c->es->index));
	gettimeofday(&c->es->started, NULL);
	c->es->fatal = NULL;
	c->es->current = -1;
	*bulk = true;
	return 0;
}

/* After the token check: answer GET /. */
int
ingest_es_info(Conn *c)
{
	return es_info_reply(c);
}

/* The 401 of the Elasticsearch endpoints. */
int
ingest_es_unauthorized(Conn *c)
{
	return es_error_reply(c, HTTP_STATUS_UNAUTHORIZED, "security_exception",
						  "missing, unknown or revoked token: use HTTP Basic with the token as password, Bearer, or ?token=");
}

/* ---- parsing a _bulk body (main loop) ---- */

static char *
es_strdup(const char *s)
{
	char	   *r = strdup(s ? s : "");

	if (r == NULL)
		elog(ERROR, "logagg ingest: out of memory");
	return r;
}

static EsItem *
es_add_item(EsRequest *es, const char *action, const char *index, const char *id)
{
	EsItem	   *it;

	if (es->nitems == es->maxitems)
	{
		int			n = es->maxitems ? es->maxitems * 2 : 64;
		EsItem	   *p = realloc(es->items, n * sizeof(EsItem));

		if (p == NULL)
			elog(ERROR, "logagg ingest: out of memory");
		es->items = p;
		es->maxitems = n;
	}
	it = &es->items[es->nitems++];
	memset(it, 0, sizeof(*it));
	strlcpy(it->action, action, sizeof(it->action));
	it->index = es_strdup(index && index[0] ? index : (es->index[0] ? es->index : ES_DEFAULT_INDEX));
	if (id)
		it->id = es_strdup(id);
	else
	{
		char		buf[40];

		/* an _id of our own, unique enough to tell the items apart */
		snprintf(buf, sizeof(buf), "lg%lx%06lx-" UINT64_FORMAT,
				 (long) es->started.tv_sec, (long) es->started.tv_usec, ++es->next_id);
		it->id = es_strdup(buf);
	}
	it->outcome = ES_PENDING;
	it->rec_idx = -1;
	return it;
}

static void
es_fail(EsItem *it, int status, const char *type, const char *reason)
{
	it->outcome = ES_FAILED;
	it->status = status;
	it->type = type;
	free(it->reason);
	it->reason = es_strdup(reason);
}

/* What an action line holds (pg_parse_json's semantic actions). */
typedef struct ActionState
{
	int			depth;
	char	   *action;
	int			nactions;
	char	   *field;
	char	   *index;
	char	   *id;
	bool		action_not_object;
} ActionState;

static void
act_object_start(void *arg)
{
	((ActionState *) arg)->depth++;
}

static void
act_object_end(void *arg)
{
	((ActionState *) arg)->depth--;
}

static void
act_array_start(void *arg)
{
	ActionState *st = arg;

	if (st->depth == 1)
		st->action_not_object = true;
}

static void
act_field_start(void *arg, char *fname, bool isnull)
{
	ActionState *st = arg;

	if (st->depth == 1)
	{
		st->nactions++;
		if (st->action == NULL)
			st->action = fname;
	}
	else if (st->depth == 2)
		st->field = fname;
}

static void
act_scalar(void *arg, char *token, JsonTokenType type)
{
	ActionState *st = arg;

	if (st->depth == 1)
		st->action_not_object = true;
	else if (st->depth == 2 && st->field && st->nactions == 1)
	{
		if (strcmp(st->field, "_index") == 0 && type == JSON_TOKEN_STRING)
			st->index = token;
		else if (strcmp(st->field, "_id") == 0 &&
				 (type == JSON_TOKEN_STRING || type == JSON_TOKEN_NUMBER))
			st->id = token;
	}
}

static const char *es_check_action(ActionState *st);

/* A name of lower-case letters and '_' from p on: returns its end. */
static inline char *
es_plain_name_end(char *p, char *end)
{
	while (p < end && ((*p >= 'a' && *p <= 'z') || *p == '_'))
		p++;
	return p;
}

/*
 * The action lines clients usually send, read without the JSON parser
 * (which was most of what a document costs beyond a POST /ingest
 * record): {"ACTION":{}} or {"ACTION":{"FIELD":VALUE,...}}, written
 * without blanks, names of lower-case letters and '_', values that are
 * printable ASCII strings without escapes or unsigned integers.  Fills
 * st as the parser's callbacks would (the last _index or _id given
 * wins; _index only as a string) and returns true.  Anything else
 * returns false with st untouched, and the line goes through the
 * parser, which reads every other form and words every error.
 */
static bool
es_quick_action(char *s, int len, ActionState *st)
{
	char	   *end = s + len;
	char	   *name = s + 2;
	char	   *p = es_plain_name_end(name, end);
	char	   *name_end = p;
	char	   *index = NULL;
	char	   *id = NULL;

	if (len < 7 || s[0] != '{' || s[1] != '"' || p == name ||
		end - p < 3 || p[0] != '"' || p[1] != ':' || p[2] != '{')
		return false;
	p += 3;
	if (*p == '}')
		p++;
	else
		for (;;)
		{
			char	   *f = p + 1;
			char	   *fe,
					   *v;
			bool		is_string;

			if (p >= end || *p != '"')
				return false;
			fe = p = es_plain_name_end(f, end);
			if (p == f || end - p < 3 || p[0] != '"' || p[1] != ':')
				return false;
			v = p += 2;
			if ((is_string = (*p == '"')))
			{
				for (v = ++p; p < end && *p >= 0x20 && *p < 0x7f && *p != '"' && *p != '\\'; p++)
					;
				if (p >= end || *p != '"')
					return false;
			}
			else
			{
				while (p < end && IS_DIGIT(*p))
					p++;
				if (p == v || (*v == '0' && p - v > 1))
					return false;
			}
			if (fe - f == 6 && memcmp(f, "_index", 6) == 0 && is_string)
				index = pnstrdup(v, p - v);
			else if (fe - f == 3 && memcmp(f, "_id", 3) == 0)
				id = pnstrdup(v, p - v);
			p += is_string;
			if (p < end && *p == ',')
			{
				p++;
				continue;
			}
			if (p < end && *p == '}')
			{
				p++;
				break;
			}
			return false;
		}
	if (end - p != 1 || *p != '}')
		return false;
	st->action = pnstrdup(name, name_end - name);
	st->nactions = 1;
	st->index = index;
	st->id = id;
	return true;
}

/*
 * Read an action line.  Returns NULL and fills *st, or the reason it is
 * not an action.
 */
static const char *
es_read_action(char *s, int len, ActionState *st)
{
	JsonLexContext *lex;
	JsonSemAction sem;
	JsonParseErrorType err;

	memset(st, 0, sizeof(*st));
	if (es_quick_action(s, len, st))
		return es_check_action(st);
	if (!pg_verifymbstr(s, len, true))
		return "the action line is not valid text (or contains a NUL byte)";
	if (ingest_json_nesting_depth(s, len) > INGEST_MAX_JSON_DEPTH)
		return "the action line is nested too deeply";
	if (*s != '{')
		return "an action line must be a JSON object such as {\"index\": {}}";
	memset(&sem, 0, sizeof(sem));
	sem.semstate = st;
	sem.object_start = act_object_start;
	sem.object_end = act_object_end;
	sem.array_start = act_array_start;
	sem.object_field_start = act_field_start;
	sem.scalar = act_scalar;
	lex = makeJsonLexContextCstringLen(s, len, GetDatabaseEncoding(), true);
	err = pg_parse_json(lex, &sem);
	if (err != JSON_SUCCESS)
		return psprintf("the action line is not valid JSON: %s", json_errdetail(err, lex));
	return es_check_action(st);
}

/* What an action line read must hold: NULL, or the reason it is refused */
static const char *
es_check_action(ActionState *st)
{
	if (st->nactions != 1 || st->action_not_object)
		return "an action line must be a JSON object with one action, such as {\"index\": {}}";
	if (st->index && strlen(st->index) > ES_MAX_NAME)
		st->index = NULL;
	if (st->id && strlen(st->id) > ES_MAX_NAME)
		return "_id is longer than 512 bytes";
	return NULL;
}

static bool
es_known_action(const char *a)
{
	return strcmp(a, "index") == 0 || strcmp(a, "create") == 0 ||
		strcmp(a, "delete") == 0 || strcmp(a, "update") == 0;
}

/* The next line of the body from *p (without line break or blanks); false at the end. */
static bool
es_next_line(char **p, char *end, char **line, int *len)
{
	while (*p < end)
	{
		char	   *s = *p;
		char	   *nl = memchr(s, '\n', end - s);
		char	   *e = nl ? nl : end;

		*p = nl ? nl + 1 : end;
		while (e > s && (e[-1] == '\r' || e[-1] == ' ' || e[-1] == '\t'))
			e--;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		if (e > s)
		{
			*line = s;
			*len = e - s;
			return true;
		}
	}
	return false;
}

/*
 * Reject bytes of the body: as text only when they are valid text in the
 * database encoding (else a COPY of the raw column would fail the batch).
 */
static void
es_reject(IngestBatch *batch, const IngestOrigin *origin, const char *reason,
		  const char *s, int len, bool has_seq, int64 seq)
{
	ingest_add_reject_bytes(batch, origin, reason, s, len,
							pg_verifymbstr(s, len, true), has_seq, seq);
}

/*
 * One document line: stored or rejected by the ordinary parser, whose
 * callbacks note the outcome on the current item.
 */
static void
es_parse_document(IngestBatch *batch, const IngestOrigin *origin, EsRequest *es,
				  char *s, int len)
{
	if (*s != '{')
	{
		/* an array would be many records, a scalar none: not a document */
		es_reject(batch, origin, "an Elasticsearch document must be a JSON object",
						  s, len, false, 0);
		return;
	}
	ingest_parse_message(batch, origin, s, len);
}

/*
 * Parse a _bulk body into the batch from m->pos.offset on, one pair at a
 * time, until the batch is full.  Returns true when the body is done.
 */
bool
ingest_es_parse_part(IngestBatch *batch, const IngestOrigin *origin, Conn *c, char *data,
					 int len, IngestParsePos *pos)
{
	static MemoryContext scratch = NULL;
	EsRequest  *es = c->es;
	char	   *p = data + pos->offset;
	char	   *end = data + len;
	char	   *line;
	int			llen;
	MemoryContext oldcxt;

	/* what reading an action line allocates lives until the next pair */
	if (scratch == NULL)
		scratch = AllocSetContextCreate(TopMemoryContext, "logagg ingest es_bulk",
										ALLOCSET_DEFAULT_SIZES);
	oldcxt = MemoryContextSwitchTo(scratch);
	while (!ingest_server_batch_full() && es_next_line(&p, end, &line, &llen))
	{
		ActionState st;
		const char *why;
		EsItem	   *it;
		char	   *doc;
		int			dlen;
		bool		first = !pos->started;

		pos->started = true;
		MemoryContextReset(scratch);
		why = es_read_action(line, llen, &st);
		if (why && first)
		{
			/* not NDJSON action/document pairs at all: refuse the body */
			es->fatal = "the body is not Elasticsearch bulk NDJSON: its first line is not an action such as {\"index\": {}}";
			es_reject(batch, origin, es->fatal, data, len, false, 0);
			p = end;
			break;
		}
		if (why)
		{
			/* its document (if any) cannot be told: the next line is taken as it */
			it = es_add_item(es, "index", NULL, NULL);
			es_fail(it, 400, "action_request_validation_exception", why);
			es->current = it - es->items;
			es_reject(batch, origin, why, line, llen, false, 0);
			if (es_next_line(&p, end, &doc, &dlen))
				es_reject(batch, origin, "the document of an invalid action line",
								  doc, dlen, false, 0);
			es->current = -1;
			continue;
		}
		/* the item is named by the action: only known names are echoed */
		it = es_add_item(es, es_known_action(st.action) ? st.action : "index", st.index, st.id);
		if (strcmp(st.action, "delete") == 0)
		{
			es_fail(it, 400, "illegal_argument_exception",
					"logagg stores logs: the delete action is not supported");
			continue;
		}
		if (strcmp(st.action, "index") != 0 && strcmp(st.action, "create") != 0)
		{
			bool		update = strcmp(st.action, "update") == 0;

			es_fail(it, 400, "illegal_argument_exception", update ?
					"logagg stores logs: the update action is not supported, use index or create" :
					"unknown action: use index or create");
			/* update has a document line: skip it (an unknown action: who knows) */
			if (update)
				(void) es_next_line(&p, end, &doc, &dlen);
			continue;
		}
		if (!es_next_line(&p, end, &doc, &dlen))
		{
			es_fail(it, 400, "action_request_validation_exception",
					"the action has no document line after it");
			break;
		}
		es->current = it - es->items;
		es_parse_document(batch, origin, es, doc, dlen);
		es->current = -1;
		if (it->outcome == ES_PENDING && it->rec_idx < 0)
			es_fail(it, 400, "mapper_parsing_exception", "the document was not stored");
	}
	MemoryContextSwitchTo(oldcxt);
	MemoryContextReset(scratch);
	pos->offset = p - data;
	return p >= end;
}

/* ---- outcomes, from the parse and store callbacks ---- */

void
ingest_es_note_accepted(Conn *c, int rec_idx)
{
	EsItem	   *it;

	if (c->es == NULL || c->es->current < 0)
		return;
	it = &c->es->items[c->es->current];
	it->batch_gen = batch_gen;
	it->rec_idx = rec_idx;
}

void
ingest_es_note_rejected(Conn *c, const char *reason)
{
	if (c->es == NULL || c->es->current < 0)
		return;
	if (c->es->items[c->es->current].outcome != ES_FAILED)
		es_fail(&c->es->items[c->es->current], 400, "mapper_parsing_exception", reason);
}

/* A record accepted into the batch was refused while it was stored. */
void
ingest_es_note_refused(Conn *c, int rec_idx, const char *reason)
{
	if (c->es == NULL)
		return;
	for (int i = c->es->nitems - 1; i >= 0; i--)
	{
		EsItem	   *it = &c->es->items[i];

		if (it->batch_gen == batch_gen && it->rec_idx == rec_idx)
		{
			es_fail(it, 400, "mapper_parsing_exception", reason);
			return;
		}
	}
}

/* A batch was committed: its records' items are created. */
void
ingest_es_batch_done(void)
{
	for (Conn *c = ingest_conns; c; c = c->next)
	{
		if (c->es == NULL)
			continue;
		for (int i = 0; i < c->es->nitems; i++)
		{
			EsItem	   *it = &c->es->items[i];

			if (it->outcome == ES_PENDING && it->batch_gen == batch_gen)
			{
				it->outcome = ES_CREATED;
				it->status = 201;
			}
		}
	}
	batch_gen++;
}

static void
append_kv(StringInfo s, const char *key, const char *val)
{
	appendStringInfo(s, "\"%s\": ", key);
	escape_json(s, val);
}

/* After the COMMIT: the reply with one item per action, in order. */
void
ingest_es_reply(Conn *c)
{
	EsRequest  *es = c->es;
	StringInfoData s;
	struct timeval now;
	bool		errors = false;
	long		took;

	if (es->fatal)
	{
		StringInfoData e;

		initStringInfo(&e);
		appendStringInfoString(&e, "{\"error\": {\"type\": \"illegal_argument_exception\", ");
		append_kv(&e, "reason", es->fatal);
		appendStringInfoString(&e, "}, \"status\": 400}");
		ingest_http_reply(c, HTTP_STATUS_BAD_REQUEST, "application/json", e.data);
		pfree(e.data);
		es_free_items(es);
		return;
	}
	gettimeofday(&now, NULL);
	took = (now.tv_sec - es->started.tv_sec) * 1000L + (now.tv_usec - es->started.tv_usec) / 1000;
	for (int i = 0; i < es->nitems; i++)
		if (es->items[i].outcome != ES_CREATED)
			errors = true;
	initStringInfo(&s);
	appendStringInfo(&s, "{\"took\": %ld, \"errors\": %s, \"items\": [", Max(took, 0L),
					 errors ? "true" : "false");
	for (int i = 0; i < es->nitems; i++)
	{
		EsItem	   *it = &es->items[i];

		appendStringInfo(&s, "%s{\"%s\": {", i ? ", " : "", it->action);
		append_kv(&s, "_index", it->index);
		appendStringInfoString(&s, ", ");
		append_kv(&s, "_id", it->id);
		if (it->outcome == ES_CREATED)
			appendStringInfoString(&s, ", \"_version\": 1, \"result\": \"created\", "
								   "\"_shards\": {\"total\": 1, \"successful\": 1, \"failed\": 0}, "
								   "\"_seq_no\": 0, \"_primary_term\": 1, \"status\": 201}}");
		else
		{
			appendStringInfo(&s, ", \"status\": %d, \"error\": {", it->status ? it->status : 500);
			append_kv(&s, "type", it->type ? it->type : "exception");
			appendStringInfoString(&s, ", ");
			append_kv(&s, "reason", it->reason ? it->reason : "not stored");
			appendStringInfoString(&s, "}}}");
		}
	}
	appendStringInfoString(&s, "]}");
	ingest_http_reply(c, HTTP_STATUS_OK, "application/json", s.data);
	pfree(s.data);
	es_free_items(es);
}
