/*-------------------------------------------------------------------------
 *
 * tail.c
 *		Live tail subscribers (ws://HOST:PORT/tail): the handshake (token,
 *		filters, 401/400 before the upgrade), each subscriber's bounded
 *		queue of frames and its {"dropped": N} notices, the filters, and the
 *		fan-out of what the ingest worker committed (tail_ring.c).
 *
 * since=N: the subscriber is counted (so the ingest worker starts
 * appending to the ring) before its replay query starts, so every record
 * is either in the query's snapshot or arrives through the ring after it;
 * live records that arrive meanwhile wait in the subscriber's "held" list
 * and are sent after the replay, except those the replay already sent
 * (by id).  No gap, no duplicate.
 *
 * The handshake runs in the lws callback (no palloc, no ereport); the
 * fan-out and filters in the main loop.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/socket.h>

#include "catalog/pg_collation.h"
#include "lib/stringinfo.h"
#include "utils/builtins.h"
#include "utils/datetime.h"
#include "utils/json.h"
#include "utils/jsonb.h"
#include "utils/memutils.h"

#include "reader/reader_int.h"
#include "tail_ring.h"

#define SOCKET_SNDBUF			(256 * 1024)
/* Frames written in one WRITEABLE callback at most. */
#define FRAMES_PER_WRITE		256

int			reader_nsubs = 0;
static TailCursor cursor;
static MemoryContext round_cxt = NULL;

/* ---- frames and queues (callback-safe) ---- */

static Frame *
frame_new(const char *data, size_t len)
{
	Frame	   *f = malloc(offsetof(Frame, data) + LWS_PRE + len);

	if (f == NULL)
		return NULL;
	f->next = NULL;
	f->len = len;
	memcpy(f->data + LWS_PRE, data, len);
	return f;
}

static void
queue_push(Sub *s, Frame *f)
{
	if (s->q_tail)
		s->q_tail->next = f;
	else
		s->q_head = f;
	s->q_tail = f;
	s->q_bytes += f->len;
}

static void
frames_free(Frame *f)
{
	while (f)
	{
		Frame	   *next = f->next;

		free(f);
		f = next;
	}
}

/* The notice of what was skipped, queued where the gap is (false: no memory). */
static bool
push_dropped(Sub *s)
{
	char		buf[64];
	int			n;
	Frame	   *f;

	if (s->dropped == 0 && !s->dropped_unknown)
		return true;
	/* records lost in the ring: their sources, so their number, are unknown */
	n = snprintf(buf, sizeof(buf), "{\"dropped\": " INT64_FORMAT "}",
				 s->dropped_unknown ? (int64) -1 : s->dropped);
	if ((f = frame_new(buf, n)) == NULL)
		return false;
	queue_push(s, f);
	s->dropped = 0;
	s->dropped_unknown = false;
	return true;
}

/* Queue a record's frame, or count it dropped when the queue is full. */
static void
enqueue(Sub *s, const char *json, size_t len)
{
	Frame	   *f;

	if (s->q_bytes + len + 64 > SUB_QUEUE_BYTES)
	{
		s->dropped++;
		return;
	}
	(void) push_dropped(s);
	if ((f = frame_new(json, len)) == NULL)
	{
		s->dropped++;
		return;
	}
	queue_push(s, f);
}

static void
hold(Sub *s, const char *json, size_t len, int64 id)
{
	Frame	   *f;

	if (s->q_bytes + len > SUB_QUEUE_BYTES || (f = frame_new(json, len)) == NULL)
	{
		s->dropped++;
		return;
	}
	if (s->nheld == s->maxheld)
	{
		int			newmax = s->maxheld ? s->maxheld * 2 : 256;
		int64	   *ids = realloc(s->held_ids, newmax * sizeof(int64));

		if (ids == NULL)
		{
			free(f);
			s->dropped++;
			return;
		}
		s->held_ids = ids;
		s->maxheld = newmax;
	}
	s->held_ids[s->nheld++] = id;
	if (s->held_tail)
		s->held_tail->next = f;
	else
		s->held_head = f;
	s->held_tail = f;
	s->q_bytes += len;
}

/*
 * palloc'd memory of closed subscribers, freed by the main loop (a
 * callback does not call pfree).  If the list cannot grow, the memory is
 * left to the process's end rather than freed in the callback.
 */
static void **to_free = NULL;
static int	nto_free = 0;
static int	maxto_free = 0;

static void
defer_pfree(void *p)
{
	if (p == NULL)
		return;
	if (nto_free == maxto_free)
	{
		int			newmax = maxto_free ? maxto_free * 2 : 16;
		void	  **n = realloc(to_free, newmax * sizeof(void *));

		if (n == NULL)
			return;
		to_free = n;
		maxto_free = newmax;
	}
	to_free[nto_free++] = p;
}

static void
free_deferred(void)
{
	for (int i = 0; i < nto_free; i++)
		pfree(to_free[i]);
	nto_free = 0;
}

/* ---- the handshake (lws callback) ---- */

/* A refusal before the upgrade: status and {"error": why}, then close. */
static int
refuse(struct lws *wsi, int status, const char *why)
{
	unsigned char buf[LWS_PRE + 2048];
	unsigned char *start = buf + LWS_PRE;
	unsigned char *p = start;
	unsigned char *end = buf + sizeof(buf) - 1;
	char		body[600];
	int			n;

	n = snprintf(body, sizeof(body), "{\"error\": \"%s\"}", why);
	if (lws_add_http_header_status(wsi, status, &p, end) ||
		lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_CONTENT_TYPE,
									 (const unsigned char *) "application/json", 16, &p, end) ||
		lws_add_http_header_content_length(wsi, n, &p, end) ||
		reader_add_security_headers(wsi, &p, end) ||
		(status == HTTP_STATUS_UNAUTHORIZED &&
		 lws_add_http_header_by_token(wsi, WSI_TOKEN_HTTP_WWW_AUTHENTICATE,
									  (const unsigned char *) "Bearer realm=\"logagg\"", 21, &p, end)) ||
		lws_finalize_http_header(wsi, &p, end))
		return -1;
	if (end - p < n)
		return -1;
	memcpy(p, body, n);
	p += n;
	(void) lws_write(wsi, start, p - start, LWS_WRITE_HTTP);
	return -1;
}

/* LWS_CALLBACK_FILTER_PROTOCOL_CONNECTION: GET /tail with an upgrade. */
int
reader_tail_filter(struct lws *wsi, ReaderSession *pss)
{
	char		uri[64];
	RConn	   *tmp;
	Sub		   *s;
	const char *why;
	int			status;
	RConn	   *c;

	if (lws_hdr_copy(wsi, uri, sizeof(uri), WSI_TOKEN_GET_URI) <= 0 ||
		strcmp(uri, "/tail") != 0)
		return refuse(wsi, HTTP_STATUS_NOT_FOUND, "the WebSocket endpoint is /tail");
	if (reader_nconns >= logagg_max_connections)
		return refuse(wsi, HTTP_STATUS_SERVICE_UNAVAILABLE, "too many connections (logagg.max_connections)");
	if ((tmp = calloc(1, sizeof(RConn))) == NULL || (s = calloc(1, sizeof(Sub))) == NULL)
	{
		free(tmp);
		return -1;
	}
	if ((status = reader_authenticate(wsi, tmp)) != 0)
		why = "missing, unknown or revoked reader token";
	else if ((why = reader_parse_filter(wsi, &s->f, true)) != NULL)
		status = HTTP_STATUS_BAD_REQUEST;
	if (why != NULL || (c = reader_conn_new(wsi)) == NULL)
	{
		free(tmp);
		free(s);
		return why ? refuse(wsi, status, why) : -1;
	}
	memcpy(c->token_hash, tmp->token_hash, sizeof(c->token_hash));
	strlcpy(c->name, tmp->name, sizeof(c->name));
	strlcpy(c->sources, tmp->sources, sizeof(c->sources));
	free(tmp);
	c->is_ws = true;
	c->sub = s;
	s->conn = c;
	s->replaying = s->f.since_n > 0;
	pss->conn = c;
	reader_nsubs++;
	/* from now on the ingest worker hands its commits to the ring */
	logagg_tail_subscribers_add(1);
	return 0;
}

/* LWS_CALLBACK_ESTABLISHED */
void
reader_tail_established(RConn *c)
{
	int			sndbuf = SOCKET_SNDBUF;

	/* bounds what the kernel holds for a subscriber that does not read */
	(void) setsockopt(lws_get_socket_fd(c->wsi), SOL_SOCKET, SO_SNDBUF,
					  &sndbuf, sizeof(sndbuf));
}

/* LWS_CALLBACK_SERVER_WRITEABLE: write queued frames while the socket takes them. */
int
reader_tail_writeable(struct lws *wsi, RConn *c)
{
	Sub		   *s = c->sub;
	int			n = 0;

	if (c->killed)
	{
		lws_close_reason(wsi, LWS_CLOSE_STATUS_POLICY_VIOLATION,
						 (unsigned char *) c->close_reason, strlen(c->close_reason));
		return -1;
	}
	if (s == NULL)
		return 0;
	while (n < FRAMES_PER_WRITE && !lws_send_pipe_choked(wsi))
	{
		Frame	   *f = s->q_head;

		if (f == NULL)
		{
			/* drained: the notice of what did not fit, if any */
			if (!s->replaying && (s->dropped > 0 || s->dropped_unknown) && push_dropped(s))
				continue;
			break;
		}
		if (lws_write(wsi, (unsigned char *) f->data + LWS_PRE, f->len, LWS_WRITE_TEXT) < (int) f->len)
			return -1;
		s->q_head = f->next;
		if (s->q_head == NULL)
			s->q_tail = NULL;
		s->q_bytes -= f->len;
		free(f);
		n++;
	}
	/*
	 * More to write: queued frames, or a dropped notice still owed (the loop
	 * can stop on a choked socket or the frame budget just as the queue
	 * empties, and the notice must not wait for the next matching record).
	 */
	if (s->q_head || (!s->replaying && (s->dropped > 0 || s->dropped_unknown)))
		lws_callback_on_writable(wsi);
	else if (c->close_when_sent)
	{
		lws_close_reason(wsi, LWS_CLOSE_STATUS_NORMAL,
						 (unsigned char *) c->close_reason, strlen(c->close_reason));
		return -1;
	}
	return 0;
}

/* The subscriber's connection is gone. */
void
reader_tail_closed(RConn *c)
{
	Sub		   *s = c->sub;

	if (s->query)
		reader_query_cancel(s->query);
	frames_free(s->q_head);
	frames_free(s->held_head);
	free(s->held_ids);
	free(s->replayed);
	/* regex and attrs_jsonb were palloc'd: the main loop frees them */
	defer_pfree(s->regex);
	defer_pfree(s->attrs_jsonb);
	free(s);
	c->sub = NULL;
	reader_nsubs--;
	logagg_tail_subscribers_add(-1);
}

/* ---- the main loop's side ---- */

void
reader_tail_init(void)
{
	logagg_tail_subscribers_reset();
	logagg_tail_cursor_init(&cursor);
	round_cxt = AllocSetContextCreate(TopMemoryContext, "logagg reader tail round",
									  ALLOCSET_DEFAULT_SIZES);
}

/*
 * New subscribers: their regex and attrs in PostgreSQL's forms, and the
 * replay query of since=N (when a query slot is free; live records wait
 * until then).
 */
void
reader_tail_prepare(void)
{
	free_deferred();
	for (RConn *c = reader_conns; c; c = c->next)
	{
		Sub		   *s = c->sub;

		if (s == NULL || c->wsi == NULL)
			continue;
		if (!s->prepared)
		{
			MemoryContext old = MemoryContextSwitchTo(TopMemoryContext);

			if (s->f.q[0])
				s->regex = cstring_to_text(s->f.q);
			if (s->f.attrs[0])
				s->attrs_jsonb = DatumGetPointer(DirectFunctionCall1(jsonb_in, CStringGetDatum(s->f.attrs)));
			MemoryContextSwitchTo(old);
			s->prepared = true;
		}
		if (s->replaying && !s->replay_started && reader_query_slots_free())
		{
			const char *why = NULL;

			s->query = reader_query_launch(API_REPLAY, &s->f, c->sources, &why);
			if (s->query)
			{
				reader_query_set_sub(s->query, s);
				s->replay_started = true;
			}
		}
	}
}

/* ---- records ---- */

typedef struct Rec
{
	TailEntry	e;
	char	   *str[TAIL_NSTRINGS];	/* NUL-terminated, or NULL */
	Jsonb	   *attrs;			/* made on demand */
	bool		attrs_done;
	char	   *json;			/* made on demand */
	int			json_len;
} Rec;

static void
append_ts(StringInfo b, TimestampTz t)
{
	struct pg_tm tm;
	fsec_t		fsec;

	if (timestamp2tm(t, NULL, &tm, &fsec, NULL, NULL) != 0)
	{
		appendStringInfoString(b, "null");
		return;
	}
	appendStringInfo(b, "\"%04d-%02d-%02dT%02d:%02d:%02d.%06dZ\"",
					 tm.tm_year, tm.tm_mon, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
					 (int) fsec);
}

static void
append_str(StringInfo b, const char *key, const char *v)
{
	appendStringInfo(b, ", \"%s\": ", key);
	if (v)
		escape_json(b, v);
	else
		appendStringInfoString(b, "null");
}

static Jsonb *
rec_attrs(Rec *r)
{
	if (!r->attrs_done)
	{
		r->attrs_done = true;
		if (r->str[TAIL_ATTRS])
			r->attrs = DatumGetJsonbP(DirectFunctionCall1(jsonb_in, CStringGetDatum(r->str[TAIL_ATTRS])));
	}
	return r->attrs;
}

/*
 * A lower bound of rec_json()'s length: its fixed part plus every string
 * but attrs (escaping only lengthens them; attrs is re-printed by jsonb,
 * which may shorten it).
 */
static size_t
rec_json_min_len(const Rec *r)
{
	size_t		n = 100;

	for (int k = 0; k < TAIL_NSTRINGS; k++)
		if (k != TAIL_ATTRS && r->e.lens[k] != TAIL_NULL)
			n += r->e.lens[k];
	return n;
}

/* The record as the JSON object of the protocol (the stored columns). */
static void
rec_json(Rec *r)
{
	StringInfoData b;
	Jsonb	   *attrs;

	if (r->json)
		return;
	initStringInfo(&b);
	appendStringInfo(&b, "{\"id\": " INT64_FORMAT ", \"ts\": ", r->e.id);
	append_ts(&b, r->e.ts);
	appendStringInfoString(&b, ", \"received_at\": ");
	append_ts(&b, r->e.received_at);
	append_str(&b, "source", r->str[TAIL_SOURCE]);
	append_str(&b, "severity", logagg_severity_names[r->e.severity]);
	append_str(&b, "level", r->str[TAIL_LEVEL]);
	if (r->e.has_status)
		appendStringInfo(&b, ", \"status\": %d", r->e.status);
	else
		appendStringInfoString(&b, ", \"status\": null");
	append_str(&b, "message", r->str[TAIL_MESSAGE]);
	append_str(&b, "trace_id", r->str[TAIL_TRACE_ID]);
	append_str(&b, "span_id", r->str[TAIL_SPAN_ID]);
	appendStringInfoString(&b, ", \"attrs\": ");
	attrs = rec_attrs(r);
	if (attrs)
		(void) JsonbToCString(&b, &attrs->root, VARSIZE(attrs));
	else
		appendStringInfoString(&b, "null");
	appendStringInfoChar(&b, '}');
	r->json = b.data;
	r->json_len = b.len;
}

/* Does the record pass the subscriber's token pattern and filters? */
static bool
rec_matches(Sub *s, Rec *r)
{
	const char *source = r->str[TAIL_SOURCE];

	if (source == NULL || !logagg_source_pattern_match(s->conn->sources, source))
		return false;
	if (s->f.source[0] && !logagg_source_pattern_match(s->f.source, source))
		return false;
	if (s->f.min_severity >= 0 && r->e.severity > s->f.min_severity)
		return false;
	if (s->attrs_jsonb)
	{
		Jsonb	   *a = rec_attrs(r);

		if (a == NULL ||
			!DatumGetBool(DirectFunctionCall2(jsonb_contains, JsonbPGetDatum(a),
											  PointerGetDatum(s->attrs_jsonb))))
			return false;
	}
	if (s->regex)
	{
		const char *m = r->str[TAIL_MESSAGE];

		/* within logagg.regex_timeout per subscriber and round */
		if (m == NULL ||
			!logagg_regex_match((text *) s->regex, m, strlen(m), DEFAULT_COLLATION_OID,
								"a live tail's q"))
			return false;
	}
	return true;
}

/*
 * End a subscription: {"error": MSG} after what is queued, then the close.
 * (lws 4.1 does not get a close frame out from a WRITEABLE callback -- the
 * client sees 1006 -- so the error frame is what tells the client why.)
 */
void
reader_tail_fail(RConn *c, const char *msg)
{
	Sub		   *s = c->sub;
	StringInfoData b;
	Frame	   *f;

	if (s == NULL || c->close_when_sent)
		return;
	initStringInfo(&b);
	appendStringInfoString(&b, "{\"error\": ");
	escape_json(&b, msg);
	appendStringInfoChar(&b, '}');
	if ((f = frame_new(b.data, b.len)) != NULL)
		queue_push(s, f);
	pfree(b.data);
	c->close_when_sent = true;
	c->close_reason = "";
	s->replaying = false;
	if (c->wsi)
		lws_callback_on_writable(c->wsi);
}

static int
cmp_id(const void *a, const void *b)
{
	int64		x = *(const int64 *) a;
	int64		y = *(const int64 *) b;

	return x < y ? -1 : (x > y ? 1 : 0);
}

/* The entries of a ring copy as records. */
static Rec *
parse_entries(char *buf, Size len, int *n)
{
	int			max = 64;
	Rec		   *recs = palloc(max * sizeof(Rec));
	Size		off = 0;

	*n = 0;
	while (off < len)
	{
		Rec		   *r;
		char	   *p;

		if (*n == max)
		{
			max *= 2;
			recs = repalloc(recs, max * sizeof(Rec));
		}
		r = &recs[(*n)++];
		memset(r, 0, sizeof(*r));
		memcpy(&r->e, buf + off, sizeof(TailEntry));
		p = buf + off + sizeof(TailEntry);
		for (int k = 0; k < TAIL_NSTRINGS; k++)
		{
			if (r->e.lens[k] == TAIL_NULL)
				continue;
			r->str[k] = pnstrdup(p, r->e.lens[k]);
			p += r->e.lens[k];
		}
		off += r->e.len;
	}
	return recs;
}

/*
 * What the ingest worker committed since the last round, to every
 * subscriber it matches.
 */
void
reader_tail_deliver(void)
{
	MemoryContext old;
	char	   *buf;
	Size		len;
	uint64		lost;
	Rec		   *recs;
	int			n;

	old = MemoryContextSwitchTo(round_cxt);
	if (!logagg_tail_read(&cursor, &buf, &len, &lost) && lost == 0)
	{
		MemoryContextSwitchTo(old);
		MemoryContextReset(round_cxt);
		return;
	}
	recs = buf ? parse_entries(buf, len, &n) : NULL;
	if (recs == NULL)
		n = 0;
	for (RConn *c = reader_conns; c; c = c->next)
	{
		Sub		   *s = c->sub;

		if (s == NULL || c->wsi == NULL || !s->prepared || c->killed || c->close_when_sent)
			continue;
		if (lost > 0)
		{
			/* exact only for a token that may read every source */
			if (strcmp(c->sources, "*") == 0)
				s->dropped += lost;
			else
				s->dropped_unknown = true;
		}
		for (int i = 0; i < n; i++)
		{
			if (!rec_matches(s, &recs[i]))
				continue;
			/* a commit that raced the replay's snapshot: already sent */
			if (s->replayed &&
				bsearch(&recs[i].e.id, s->replayed, s->nreplayed, sizeof(int64), cmp_id) != NULL)
				continue;
			/*
			 * A queue that cannot take even the record's shortest JSON:
			 * count it dropped without formatting it, so subscribers that
			 * do not read cost the reader next to nothing.
			 */
			if (!s->replaying &&
				s->q_bytes + rec_json_min_len(&recs[i]) + 64 > SUB_QUEUE_BYTES)
			{
				s->dropped++;
				continue;
			}
			rec_json(&recs[i]);
			if (s->replaying)
				hold(s, recs[i].json, recs[i].json_len, recs[i].e.id);
			else
				enqueue(s, recs[i].json, recs[i].json_len);
		}
		logagg_regex_budget_end();
		if (s->q_head || s->dropped > 0 || s->dropped_unknown)
			lws_callback_on_writable(c->wsi);
	}
	MemoryContextSwitchTo(old);
	MemoryContextReset(round_cxt);
}

/*
 * The replay query of since=N finished: DATA is lines "ID<TAB>JSON",
 * oldest first (status 200), or an error message.  Send them, then the
 * live records held meanwhile that the replay did not already send.
 */
void
reader_tail_replay_done(Sub *s, int status, const char *data, size_t len)
{
	RConn	   *c = s->conn;
	const char *p = data;
	const char *end = data + len;
	Frame	   *h;
	int			k = 0;

	s->query = NULL;
	if (status != 200)
	{
		reader_tail_fail(c, pnstrdup(data, len));
		return;
	}
	s->replayed = malloc(Max(s->f.since_n, 1) * sizeof(int64));
	while (p < end)
	{
		const char *nl = memchr(p, '\n', end - p);
		const char *tab = memchr(p, '\t', (nl ? nl : end) - p);
		Frame	   *f;

		if (nl == NULL)
			nl = end;
		if (tab && s->replayed && s->nreplayed < Max(s->f.since_n, 1))
			s->replayed[s->nreplayed++] = strtoll(p, NULL, 10);
		/* the replay is sent whole: it is at most since=N records */
		if (tab && (f = frame_new(tab + 1, nl - tab - 1)) != NULL)
			queue_push(s, f);
		p = nl + 1;
	}
	if (s->replayed)
		qsort(s->replayed, s->nreplayed, sizeof(int64), cmp_id);
	/* then what arrived live meanwhile, without what the replay sent */
	h = s->held_head;
	s->held_head = s->held_tail = NULL;
	while (h)
	{
		Frame	   *next = h->next;
		int64		id = s->held_ids[k++];

		h->next = NULL;
		s->q_bytes -= h->len;
		if (s->replayed &&
			bsearch(&id, s->replayed, s->nreplayed, sizeof(int64), cmp_id) != NULL)
			free(h);
		else
			queue_push(s, h);	/* bounded when it was held */
		h = next;
	}
	s->nheld = 0;
	s->replaying = false;
	(void) push_dropped(s);
	if (c->wsi)
		lws_callback_on_writable(c->wsi);
}
