/*
 * logagg-fuzz.c — a structure-aware fuzzer that drives a LIVE logagg ingest
 * worker over its socket: WebSocket text/binary frames (fragmented or not,
 * with pings in between) and HTTP POST bodies (Content-Length or chunked),
 * each carrying many mutated NDJSON lines (mutate.c).  A hand-written
 * WebSocket client, so that it is fast and can send what a library would
 * not.
 *
 * Oracles, checked all along:
 *   - the ingest worker keeps its PID and the cluster never reinitialises
 *     (procwatch.c: /proc, no database connection needed);
 *   - the worker's private memory (RssAnon) stays under --mem-limit-mb;
 *   - the worker keeps answering: with work outstanding, some answer on
 *     some connection every --stall-ms, and every connection within 60 s;
 *   - accounting: the server answers each record exactly once, stored
 *     (ack_count / "accepted") or rejected (error frame / "rejected"), and
 *     the counts lie within the bounds count_bounds() gives for the bytes
 *     sent.  On a WebSocket a sync record (a reject with a reserved seq)
 *     marks what has been answered; see settle_sync().
 * The caller compares the printed acked_rows / acked_rejects with the
 * database (test/t/900_fuzz_ingest.pl, run-long).
 *
 * Exit status: 0 nothing found, 1 findings, 2 the harness itself failed
 * (could not connect at all, or sent something it must not, e.g. a message
 * over the size limit: that is a bug of this program, not of the server).

 *
 * Findings print on stderr as they happen, the summary ("key value" lines)
 * on stdout at the end.  test/fuzz/README.md has the details.
 */
#include "mutate.h"
#include "procwatch.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_CONNS 64
#define SYNC_BASE 9000000000000000000LL
#define SYNC_SPAN 100000000LL
#define WINDOW_BYTES (4 << 20)
#define HARD_TIMEOUT_MS 60000

/* ---------------------------------------------------------------- options */

static struct
{
	const char *host;
	int			port;
	const char *token;
	const char *pgdata;
	const char *corpus;
	const char *save_dir;
	long		inputs;
	uint64_t	seed;
	int			ws_conns;
	int			stream_conns;
	int			http_conns;
	size_t		max_message;
	long		mem_limit_kb;
	long		stall_ms;
	int			hostile_permille;
	int			quiet;
	int			no_hostile_first;
	int			nreplay;
	char	  **replay;
} opt = {
	"127.0.0.1", 7480, NULL, NULL, "test/fuzz/corpus", NULL, 100000, 1, 4, 1, 2,
	1000000, 0, 5000, 2, 0, 0, 0, NULL
};

/* ---------------------------------------------------------------- findings */

static struct
{
	long		inputs,
				messages,
				bytes;
	long		worker_exits,
				cluster_restarts,
				conn_drops,
				stalls,
				accounting,
				bad_replies,
				http_errors,
				mem_over,
				harness_errors;
	long		acked_rows,
				acked_rejects,
				unsettled_hi;
	long		lo_settled,		/* records the answered messages hold, at least */
				hi_sent;		/* records all messages sent hold, at most */
	long		peak_rss_kb,
				base_rss_kb,
				max_settle_ms,
				summaries;
} st;

/* The last time the server answered anything, on any connection. */
static long last_progress;

static long
now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1000L + ts.tv_nsec / 1000000;
}

static long t_start;

static void
note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void
note(const char *fmt, ...)
{
	va_list		ap;

	if (opt.quiet)
		return;
	fprintf(stderr, "fuzz %7.1fs: ", (now_ms() - t_start) / 1000.0);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

/*
 * Save a message that may have caused a finding, for --replay: what was in
 * flight when the worker exited (all of it), and the first few of every
 * other kind.
 */
static void
save_input(const char *kind, const char *data, size_t len)
{
	static const char *kinds[16];
	static long counts[16];
	char		path[4096];
	FILE	   *f;
	int			k;

	if (opt.save_dir == NULL)
		return;
	for (k = 0; k < 15 && kinds[k] && strcmp(kinds[k], kind) != 0; k++)
		;
	kinds[k] = kind;
	if (counts[k] >= (strcmp(kind, "exit") == 0 ? 1000 : 40))
		return;
	mkdir(opt.save_dir, 0755);
	snprintf(path, sizeof(path), "%s/%s-%04ld.bin", opt.save_dir, kind, counts[k]++);
	if ((f = fopen(path, "wb")) == NULL)
		return;
	fwrite(data, 1, len, f);
	fclose(f);
}

/* ---------------------------------------------------------------- connections */

typedef struct Msg
{
	Buf			bytes;			/* freed once settled */
	int64_t		lo,
				hi;
	long		sync;			/* sync number, 0 for a fuzz message */
	int64_t		lo_counted;		/* lo without records a client can't count */
	/* a sync's: */
	int64_t		lo_upto;		/* lo_counted of it and everything before */
	int64_t		need;			/* answered by the time its answer arrives */
	long		need_sync;		/* the sync that need is the lo_upto of */
	int			answered;
	long		sent_at;
} Msg;

typedef enum
{
	C_FREE, C_CONNECTING, C_HANDSHAKE, C_OPEN, C_DONE
} CState;

typedef struct Conn
{
	int			id;
	int			http;
	int			stream;			/* a WebSocket with ?stream= */
	int			generation;		/* a new stream id on every reconnect */
	int			fd;
	CState		state;
	Rng			rng;
	Buf			out;
	size_t		out_off;
	Buf			in;
	Buf			frag;			/* a fragmented server message */
	long		opened_at;

	/* WebSocket accounting */
	Msg		   *msgs;
	int			nmsgs;
	size_t		unsettled_bytes;
	int64_t		lo_sent,		/* sum of lo_counted */
				hi_sent,
				received;		/* ack_count + error frames on this conn */
	long		next_sync;
	int			syncs_out;		/* syncs sent, not answered, not given up */
	long		sync_sent_at;	/* of the newest sync */
	int64_t		resolved_lo;	/* lo_upto of the newest answered sync */
	long		resolved_sync;
	int			finishing,
				all_answered;
	int64_t		max_deficit;

	/* HTTP: one request per connection */
	Msg			req;
	int			req_chunked;
} Conn;

static Conn conns[MAX_CONNS];
static int	nconns;
static ProcState ps;
/* Messages every run sends first, once over WebSocket and once by POST. */
typedef struct Queue
{
	Buf			items[256];
	int			n,
				next;
} Queue;
static Queue forced_ws,
			forced_http;
static int	stop_generating;
static long syncs_total;

static int64_t
sync_seq(Conn *c, long n)
{
	return SYNC_BASE + (int64_t) c->id * SYNC_SPAN + n;
}

static void
conn_close(Conn *c)
{
	if (c->fd >= 0)
		close(c->fd);
	c->fd = -1;
	c->state = C_FREE;
	c->out.len = c->out_off = 0;
	c->in.len = 0;
	c->frag.len = 0;
	for (int i = 0; i < c->nmsgs; i++)
		buf_free(&c->msgs[i].bytes);
	free(c->msgs);
	c->msgs = NULL;
	c->nmsgs = 0;
	c->unsettled_bytes = 0;
	c->lo_sent = c->hi_sent = c->received = 0;
	c->syncs_out = 0;
	c->resolved_lo = c->resolved_sync = 0;
	c->all_answered = 0;
	c->max_deficit = 0;
	buf_free(&c->req.bytes);
}

static int
conn_start(Conn *c)
{
	struct sockaddr_in sa;
	int			one = 1;

	c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
	if (c->fd < 0)
		return -1;
	setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons(opt.port);
	inet_pton(AF_INET, opt.host, &sa.sin_addr);
	if (connect(c->fd, (struct sockaddr *) &sa, sizeof(sa)) < 0 && errno != EINPROGRESS)
	{
		close(c->fd);
		c->fd = -1;
		return -1;
	}
	c->state = C_CONNECTING;
	c->opened_at = now_ms();
	return 0;
}

/* ---------------------------------------------------------------- WebSocket */

static void
ws_frame(Conn *c, int opcode, int fin, const char *p, size_t n)
{
	unsigned char h[14];
	size_t		hl = 2;
	uint32_t	mask = (uint32_t) rng_next(&c->rng);
	unsigned char *m = (unsigned char *) &mask;

	h[0] = (fin ? 0x80 : 0) | opcode;
	if (n < 126)
		h[1] = 0x80 | n;
	else if (n < 65536)
	{
		h[1] = 0x80 | 126;
		h[2] = n >> 8;
		h[3] = n & 0xff;
		hl = 4;
	}
	else
	{
		h[1] = 0x80 | 127;
		for (int i = 0; i < 8; i++)
			h[2 + i] = (uint64_t) n >> (56 - 8 * i);
		hl = 10;
	}
	memcpy(h + hl, m, 4);
	hl += 4;
	buf_put(&c->out, h, hl);
	buf_reserve(&c->out, n);
	for (size_t i = 0; i < n; i++)
		c->out.data[c->out.len + i] = p[i] ^ m[i & 3];
	c->out.len += n;
}

/* Send a message as one frame, or in fragments with pings between them. */
static void
ws_send_message(Conn *c, const char *p, size_t n, int binary)
{
	int			opcode = binary ? 2 : 1;

	if (n > 8 && rng_chance(&c->rng, 15))
	{
		size_t		off = 0;
		int			parts = 2 + rng_below(&c->rng, 3);

		for (int i = 0; i < parts; i++)
		{
			size_t		len = i == parts - 1 ? n - off : rng_below(&c->rng, n - off + 1);

			ws_frame(c, i == 0 ? opcode : 0, i == parts - 1, p + off, len);
			off += len;
			if (i < parts - 1 && rng_chance(&c->rng, 30))
				ws_frame(c, 9, 1, "fz", 2);
		}
	}
	else
		ws_frame(c, opcode, 1, p, n);
}

static Msg *
push_msg(Conn *c)
{
	c->msgs = realloc(c->msgs, sizeof(Msg) * (c->nmsgs + 1));
	memset(&c->msgs[c->nmsgs], 0, sizeof(Msg));
	return &c->msgs[c->nmsgs++];
}

/*
 * A sync record: refused (its status is not a number) with a seq reserved
 * for this connection, so its error line says exactly where the server's
 * answers are.  It is sent when no sync is outstanding, and at once after
 * a summary line (error lines the server dropped and only counted, which
 * may include an outstanding sync's).
 */
static void
ws_send_sync(Conn *c)
{
	char		rec[96];
	int			n;
	Msg		   *m;
	long		k = ++c->next_sync;

	syncs_total++;
	n = snprintf(rec, sizeof(rec), "{\"seq\":%lld,\"status\":\"fuzz-sync\"}",
				 (long long) sync_seq(c, k));
	ws_frame(c, 1, 1, rec, n);
	c->lo_sent++;
	c->hi_sent++;
	m = push_msg(c);
	m->lo = m->hi = m->lo_counted = 1;
	st.hi_sent++;
	m->sync = k;
	m->lo_upto = c->lo_sent;
	m->need = c->resolved_lo;
	m->need_sync = c->resolved_sync;
	m->sent_at = c->sync_sent_at = now_ms();
	c->syncs_out++;
}

/*
 * On a stream, a record accepted with a seq at or above the syncs' would
 * make every later sync a duplicate (dropped, no error line).  Such seqs
 * need 19 digits or an exponent of 18 or more: make those smaller.
 */
static void
keep_seqs_below_syncs(char *p, size_t len)
{
	size_t		i = 0;

	while (i < len)
	{
		size_t		j = i;

		while (j < len && p[j] >= '0' && p[j] <= '9')
			j++;
		if (j - i >= 19)
			p[i] = '1';
		if (j > i && j + 2 < len && (p[j] == 'e' || p[j] == 'E'))
		{
			size_t		k = j + 1 + (p[j + 1] == '+' || p[j + 1] == '-');

			if (k < len && p[k] >= '1' && p[k] <= '9')
				p[k] = '0';		/* e18 -> e08, e9 -> e0 */
			j = k;
		}
		i = j > i ? j : i + 1;
	}
}

/* The next message to send: a forced one (hostile seeds) first. */
static int
next_message(Conn *c, Buf *b, int *binary)
{
	Queue	   *q = c->http ? &forced_http : &forced_ws;

	*binary = 0;
	if (q->next < q->n)
	{
		b->len = 0;
		buf_put(b, q->items[q->next].data, q->items[q->next].len);
		q->next++;
		return 1;
	}
	if (stop_generating || st.inputs >= opt.inputs)
		return -1;
	*binary = rng_chance(&c->rng, 1);
	return gen_message(&c->rng, b, opt.max_message, opt.hostile_permille);
}

static void
ws_fill(Conn *c)
{
	while (c->state == C_OPEN && !c->finishing &&
		   c->unsettled_bytes < WINDOW_BYTES && c->out.len - c->out_off < (256 << 10))
	{
		Buf			b = {0};
		int			binary;
		int			n = next_message(c, &b, &binary);
		Msg		   *m;

		if (n < 0)
		{
			buf_free(&b);
			c->finishing = 1;
			break;
		}
		if (c->stream)
			keep_seqs_below_syncs(b.data, b.len);
		ws_send_message(c, b.data ? b.data : "", b.len, binary);
		m = push_msg(c);
		count_bounds(b.data, b.len, &m->lo, &m->hi, &m->lo_counted);
		if (binary)
		{
			/* whether a binary frame is one reject or its lines is open */
			m->lo = m->lo < 1 ? m->lo : 1;
			m->lo_counted = m->lo_counted < 1 ? m->lo_counted : 1;
			m->hi = m->hi > 1 ? m->hi : 1;
		}
		if (c->stream)
		{
			/* duplicates are dropped and acked: only the upper bound holds */
			m->lo = m->lo_counted = 0;
		}
		m->bytes = b;
		m->sent_at = now_ms();
		c->lo_sent += m->lo_counted;
		c->hi_sent += m->hi;
		st.hi_sent += m->hi;
		c->unsettled_bytes += b.len;
		st.inputs += n;
		st.messages++;
		st.bytes += b.len;
	}
	if (c->state == C_OPEN && c->syncs_out == 0)
	{
		if (!c->all_answered)
			ws_send_sync(c);
		else
		{
			/* everything answered: the totals must fit the bounds */
			if (c->received < c->lo_sent || c->received > c->hi_sent)
			{
				st.accounting++;
				note("conn %d: %lld records answered, expected %lld..%lld",
					 c->id, (long long) c->received, (long long) c->lo_sent, (long long) c->hi_sent);
			}
			for (int i = 0; i < c->nmsgs; i++)
				st.lo_settled += c->msgs[i].lo;
			conn_close(c);
			c->state = C_DONE;
		}
	}
}

/*
 * Sync k has been answered.  The server answers in order per connection,
 * and a batch's error lines before its ack_count.  Sync k was sent after
 * the answer to sync need_sync had arrived, so k is in a later batch, and
 * by now every answer to what was sent up to need_sync has arrived: at
 * least m->need records.  Those messages are settled.
 */
static void
settle_sync(Conn *c, long k)
{
	Msg		   *m = NULL;
	int			mi = 0,
				cut = 0;
	long		latency;

	for (int i = 0; i < c->nmsgs && m == NULL; i++)
		if (c->msgs[i].sync == k)
		{
			m = &c->msgs[i];
			mi = i;
		}
	if (m == NULL)
		return;					/* older than what is settled already */
	if (m->answered)
	{
		st.bad_replies++;
		note("conn %d: sync %ld answered twice", c->id, k);
		return;
	}
	m->answered = 1;
	latency = now_ms() - m->sent_at;
	if (latency > st.max_settle_ms)
		st.max_settle_ms = latency;
	if (c->syncs_out > 0)
		c->syncs_out--;
	if (c->received > c->hi_sent)
	{
		st.accounting++;
		note("conn %d: %lld records answered, but at most %lld sent",
			 c->id, (long long) c->received, (long long) c->hi_sent);
	}
	if (m->need - c->received > c->max_deficit)
	{
		st.accounting++;
		if (st.accounting <= 20)
			note("conn %d: only %lld records answered by sync %ld, at least %lld expected",
				 c->id, (long long) c->received, k, (long long) m->need);
		c->max_deficit = m->need - c->received;
		for (int i = 0; i < c->nmsgs && c->msgs[i].sync != m->need_sync; i++)
			if (c->msgs[i].bytes.len)
				save_input("accounting", c->msgs[i].bytes.data, c->msgs[i].bytes.len);
	}
	/* the last thing sent, right after a sync answered before it was sent */
	if (c->finishing && mi == c->nmsgs - 1 &&
		(mi == 0 || (c->msgs[mi - 1].sync != 0 && c->msgs[mi - 1].sync == m->need_sync)))
		c->all_answered = 1;
	if (m->lo_upto > c->resolved_lo)
	{
		c->resolved_lo = m->lo_upto;
		c->resolved_sync = k;
	}
	/* settle everything up to and including sync need_sync */
	if (m->need_sync)
		for (int i = 0; i < c->nmsgs; i++)
			if (c->msgs[i].sync == m->need_sync)
				cut = i + 1;
	for (int i = 0; i < cut; i++)
	{
		st.lo_settled += c->msgs[i].lo;
		c->unsettled_bytes -= c->msgs[i].bytes.len;
		buf_free(&c->msgs[i].bytes);
	}
	memmove(c->msgs, c->msgs + cut, sizeof(Msg) * (c->nmsgs - cut));
	c->nmsgs -= cut;
}

/* One line of a server answer: {"ack_count": N}, {"ack": S}, {"error": ...}. */
static void
ws_answer_line(Conn *c, const char *p, size_t n)
{
	char		line[512];
	const char *seqp;
	long long	v;

	if (n == 0)
		return;
	last_progress = now_ms();
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	memcpy(line, p, n);
	line[n] = '\0';
	if (sscanf(line, "{\"ack_count\": %lld}", &v) == 1)
	{
		c->received += v;
		st.acked_rows += v;
	}
	else if (strncmp(line, "{\"ack\": ", 8) == 0)
		;
	else if (c->stream && strncmp(line, "{\"resume\": ", 11) == 0)
		;
	else if (strncmp(line, "{\"error\": \"", 11) == 0)
	{
		c->received++;
		st.acked_rejects++;
		if ((seqp = strstr(line, ", \"count\": ")) != NULL &&
			sscanf(seqp, ", \"count\": %lld}", &v) == 1 && v > 0)
		{
			/*
			 * Error lines the server dropped and only counted: an
			 * outstanding sync may be among them.  Give up waiting for
			 * them, and sync again from here.
			 */
			c->received += v - 1;
			st.acked_rejects += v - 1;
			st.summaries++;
			c->syncs_out = 0;
			if (c->state == C_OPEN)
				ws_send_sync(c);
		}
		else if ((seqp = strstr(line, ", \"seq\": ")) != NULL &&
				 sscanf(seqp, ", \"seq\": %lld", &v) == 1 &&
				 v > sync_seq(c, 0) && v < sync_seq(c, SYNC_SPAN))
		{
			if (v > sync_seq(c, c->next_sync))
			{
				st.bad_replies++;
				note("conn %d: answer to sync %lld, never sent", c->id, v - sync_seq(c, 0));
			}
			else
				settle_sync(c, v - sync_seq(c, 0));
		}
	}
	else
	{
		st.bad_replies++;
		note("conn %d: unexpected answer: %s", c->id, line);
	}
}

static void
ws_answer(Conn *c, const char *p, size_t n)
{
	const char *end = p + n;

	while (p < end)
	{
		const char *nl = memchr(p, '\n', end - p);
		const char *lend = nl ? nl : end;

		ws_answer_line(c, p, lend - p);
		p = lend + 1;
	}
}

/* Parse the server's frames in c->in; returns -1 on a close frame. */
static int
ws_read_frames(Conn *c)
{
	size_t		off = 0;
	int			rc = 0;

	while (c->in.len - off >= 2)
	{
		unsigned char *h = (unsigned char *) c->in.data + off;
		int			opcode = h[0] & 0x0f;
		int			fin = h[0] & 0x80;
		uint64_t	len = h[1] & 0x7f;
		size_t		hl = 2;

		if (len == 126)
		{
			if (c->in.len - off < 4)
				break;
			len = (h[2] << 8) | h[3];
			hl = 4;
		}
		else if (len == 127)
		{
			if (c->in.len - off < 10)
				break;
			len = 0;
			for (int i = 0; i < 8; i++)
				len = (len << 8) | h[2 + i];
			hl = 10;
		}
		if (c->in.len - off < hl + len)
			break;
		if (opcode == 1 || opcode == 0)
		{
			buf_put(&c->frag, c->in.data + off + hl, len);
			if (fin)
			{
				ws_answer(c, c->frag.data, c->frag.len);
				c->frag.len = 0;
			}
		}
		else if (opcode == 8)
		{
			int			code = len >= 2 ? (h[hl] << 8) | h[hl + 1] : 0;

			note("conn %d: server closed the WebSocket with %d", c->id, code);
			if (code == 1009 || code == 1002)
			{
				/* too big or a protocol error: the harness sent it */
				st.harness_errors++;
			}
			rc = -1;
			off += hl + len;
			break;
		}
		else if (opcode == 9)
			ws_frame(c, 10, 1, c->in.data + off + hl, len);
		off += hl + len;
	}
	memmove(c->in.data, c->in.data + off, c->in.len - off);
	c->in.len -= off;
	return rc;
}

static void
ws_handshake(Conn *c)
{
	char		query[96] = "";

	/* a stream id of its own: two connections on one stream take over */
	if (c->stream)
		snprintf(query, sizeof(query), "?stream=fuzz-%d-%ld-%d-%d",
				 (int) getpid(), (long) time(NULL), c->id, ++c->generation);
	c->out.len = c->out_off = 0;
	buf_printf(&c->out,
			   "GET /ingest%s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\n"
			   "Connection: Upgrade\r\nSec-WebSocket-Key: bG9nYWdnLWZ1enotMDAwMA==\r\n"
			   "Sec-WebSocket-Version: 13\r\n%s%s%s\r\n",
			   query, opt.host, opt.port, opt.token ? "Authorization: Bearer " : "",
			   opt.token ? opt.token : "", opt.token ? "\r\n" : "");
}

/* ---------------------------------------------------------------- HTTP */

static void conn_lost(Conn *c, const char *what);

static void
http_request(Conn *c)
{
	Buf			b = {0};
	int			binary;
	int			n = next_message(c, &b, &binary);

	if (n < 0)
	{
		buf_free(&b);
		c->state = C_DONE;
		return;
	}
	c->req.bytes = b;
	count_bounds(b.data, b.len, &c->req.lo, &c->req.hi, &c->req.lo_counted);
	st.hi_sent += c->req.hi;
	c->req_chunked = rng_chance(&c->rng, 20);
	c->out.len = c->out_off = 0;
	buf_printf(&c->out, "POST /ingest HTTP/1.1\r\nHost: %s:%d\r\n%s%s%s"
			   "Content-Type: application/x-ndjson\r\nConnection: close\r\n",
			   opt.host, opt.port, opt.token ? "Authorization: Bearer " : "",
			   opt.token ? opt.token : "", opt.token ? "\r\n" : "");
	if (!c->req_chunked)
	{
		buf_printf(&c->out, "Content-Length: %zu\r\n\r\n", b.len);
		buf_put(&c->out, b.data ? b.data : "", b.len);
	}
	else
	{
		size_t		off = 0;

		buf_puts(&c->out, "Transfer-Encoding: chunked\r\n\r\n");
		while (off < b.len)
		{
			size_t		len = 1 + rng_below(&c->rng, b.len - off < 70000 ? b.len - off : 70000);

			buf_printf(&c->out, "%zx\r\n", len);
			buf_put(&c->out, b.data + off, len);
			buf_puts(&c->out, "\r\n");
			off += len;
		}
		buf_puts(&c->out, "0\r\n\r\n");
	}
	c->req.sent_at = now_ms();
	st.inputs += n;
	st.messages++;
	st.bytes += b.len;
}

/* A complete HTTP answer is in c->in (or the server closed): check it. */
static int
http_answer(Conn *c, int eof)
{
	char	   *hdr_end = c->in.len ? strstr(c->in.data, "\r\n\r\n") : NULL;
	char	   *cl;
	int			code = 0;
	long long	acc,
				rej;
	long		latency = now_ms() - c->req.sent_at;

	if (hdr_end == NULL && !eof)
		return 0;
	last_progress = now_ms();
	if (hdr_end && (cl = strcasestr(c->in.data, "\r\nContent-Length: ")) != NULL && cl < hdr_end &&
		!eof && c->in.len < (size_t) (hdr_end + 4 - c->in.data) + atol(cl + 18))
		return 0;
	if (c->in.len)
		sscanf(c->in.data, "HTTP/1.%*d %d", &code);
	if (latency > st.max_settle_ms)
		st.max_settle_ms = latency;
	if (code == 0 && eof)
	{
		/* did the worker die? */
		conn_lost(c, "closed without an answer");
		return 1;
	}
	if (code == 200 && hdr_end &&
		sscanf(hdr_end + 4, "{\"accepted\": %lld, \"rejected\": %lld}", &acc, &rej) == 2)
	{
		st.acked_rows += acc;
		st.acked_rejects += rej;
		st.lo_settled += c->req.lo;
		if (acc + rej < c->req.lo || acc + rej > c->req.hi)
		{
			st.accounting++;
			note("http %d: accepted %lld + rejected %lld, expected %lld..%lld (%s, %zu bytes)",
				 c->id, acc, rej, (long long) c->req.lo, (long long) c->req.hi,
				 c->req_chunked ? "chunked" : "plain", c->req.bytes.len);
			save_input("http-accounting", c->req.bytes.data, c->req.bytes.len);
		}
	}
	else
	{
		if (code == 413)
			st.harness_errors++;
		else
		{
			st.http_errors++;
			save_input("http-error", c->req.bytes.data, c->req.bytes.len);
		}
		st.unsettled_hi += c->req.hi;
		note("http %d: answer %d (%s, %zu bytes, %ld ms): %.80s", c->id, code,
			 c->req_chunked ? "chunked" : "plain", c->req.bytes.len, latency,
			 hdr_end ? hdr_end + 4 : "(no answer)");
	}
	conn_close(c);
	return 1;
}

/* ---------------------------------------------------------------- oracles */

/* What a dropped connection had sent but not seen settled. */
static void
abandon(Conn *c, const char *why)
{
	if (c->http)
	{
		if (c->req.bytes.data)
		{
			st.unsettled_hi += c->req.hi;
			save_input(why, c->req.bytes.data, c->req.bytes.len);
		}
	}
	else
		for (int i = 0; i < c->nmsgs; i++)
		{
			st.unsettled_hi += c->msgs[i].hi;
			if (c->msgs[i].bytes.len)
				save_input(why, c->msgs[i].bytes.data, c->msgs[i].bytes.len);
		}
	conn_close(c);
}

/* Wait for the postmaster to start a new ingest worker. */
static void
wait_new_worker(pid_t old)
{
	long		deadline = now_ms() + 60000;

	while (now_ms() < deadline)
	{
		proc_scan(opt.pgdata, &ps);
		if (ps.postmaster == 0)
			break;
		if (ps.ingest && ps.ingest != old)
			return;
		usleep(50000);
	}
	note("no new ingest worker within 60 s");
	st.harness_errors += ps.postmaster ? 0 : 1;
	stop_generating = 1;
}

static void
worker_exited(void)
{
	pid_t		old = ps.ingest;

	st.worker_exits++;
	note("WORKER EXIT: ingest worker %d is gone; saving what was in flight", (int) old);
	for (int i = 0; i < nconns; i++)
		if (conns[i].state != C_DONE)
			abandon(&conns[i], "exit");
	wait_new_worker(old);
	last_progress = now_ms();
	note("new ingest worker %d", (int) ps.ingest);
}

/* Sample the process oracles (every 100 ms, and after a dropped socket). */
static void
oracle_tick(void)
{
	long		kb;

	if (opt.pgdata == NULL)
		return;
	if (!proc_alive(ps.checkpointer) || !proc_alive(ps.ingest))
	{
		pid_t		ckpt = ps.checkpointer;
		pid_t		ingest = ps.ingest;

		proc_scan(opt.pgdata, &ps);
		if (ps.postmaster == 0)
		{
			note("the postmaster is gone");
			st.cluster_restarts++;
			stop_generating = 1;
			return;
		}
		if (ps.checkpointer != ckpt)
		{
			st.cluster_restarts++;
			note("CLUSTER RESTART: checkpointer %d -> %d", (int) ckpt, (int) ps.checkpointer);
		}
		if (ps.ingest != ingest)
		{
			ps.ingest = ingest;
			worker_exited();
		}
	}
	kb = proc_rss_anon_kb(ps.ingest);
	if (kb > st.peak_rss_kb)
		st.peak_rss_kb = kb;
	if (opt.mem_limit_kb && kb > opt.mem_limit_kb)
	{
		static long over_since;

		if (!over_since)
		{
			st.mem_over++;
			note("MEMORY: ingest worker at %ld kB, bound %ld kB", kb, opt.mem_limit_kb);
		}
		over_since = kb > opt.mem_limit_kb ? now_ms() : 0;
	}
}

/* A socket closed under us: worker exit, or a connection the server dropped? */
static void
conn_lost(Conn *c, const char *what)
{
	long		deadline = now_ms() + 2000;

	while (opt.pgdata && now_ms() < deadline && proc_alive(ps.ingest))
		usleep(20000);
	if (opt.pgdata && !proc_alive(ps.ingest))
	{
		oracle_tick();
		return;
	}
	st.conn_drops++;
	note("conn %d (%s): %s; the worker is still %d", c->id, c->http ? "http" : "ws", what, (int) ps.ingest);
	abandon(c, "drop");
}

/* ---------------------------------------------------------------- the loop */

static void
conn_io(Conn *c, short revents)
{
	char		rbuf[65536];
	ssize_t		n;

	if (c->state == C_CONNECTING && (revents & (POLLOUT | POLLERR | POLLHUP)))
	{
		int			err = 0;
		socklen_t	l = sizeof(err);

		getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &l);
		if (err)
		{
			/* the listener is not up (yet): retry later */
			conn_close(c);
			return;
		}
		if (c->http)
		{
			http_request(c);
			if (c->state == C_DONE)
			{
				close(c->fd);
				c->fd = -1;
				return;
			}
			c->state = C_OPEN;
		}
		else
		{
			ws_handshake(c);
			c->state = C_HANDSHAKE;
		}
	}
	if ((revents & POLLOUT) && c->out.len > c->out_off)
	{
		n = send(c->fd, c->out.data + c->out_off, c->out.len - c->out_off, MSG_NOSIGNAL);
		if (n > 0)
			c->out_off += n;
		else if (n < 0 && errno != EAGAIN && errno != EINTR)
		{
			if (c->http)
				http_answer(c, 1);
			else
				conn_lost(c, strerror(errno));
			return;
		}
		if (c->out_off == c->out.len)
			c->out.len = c->out_off = 0;
	}
	if (revents & (POLLIN | POLLHUP | POLLERR))
	{
		n = recv(c->fd, rbuf, sizeof(rbuf), 0);
		if (n < 0 && (errno == EAGAIN || errno == EINTR))
			return;
		if (n <= 0)
		{
			if (c->http)
				http_answer(c, 1);
			else
				conn_lost(c, n == 0 ? "closed by the server" : strerror(errno));
			return;
		}
		buf_put(&c->in, rbuf, n);
		if (c->http)
			http_answer(c, 0);
		else if (c->state == C_HANDSHAKE)
		{
			char	   *e = strstr(c->in.data, "\r\n\r\n");

			if (e == NULL)
				return;
			if (strncmp(c->in.data, "HTTP/1.1 101", 12) != 0)
			{
				note("conn %d: upgrade refused: %.40s", c->id, c->in.data);
				st.harness_errors++;
				stop_generating = 1;
				conn_close(c);
				c->state = C_DONE;
				return;
			}
			e += 4;
			memmove(c->in.data, e, c->in.len - (e - c->in.data));
			c->in.len -= e - c->in.data;
			c->state = C_OPEN;
			if (ws_read_frames(c) < 0)
				conn_lost(c, "close frame");
		}
		else if (ws_read_frames(c) < 0)
			conn_lost(c, "close frame");
	}
}

/*
 * A stall: work outstanding and no answer at all, on any connection, for
 * --stall-ms (a blocked event loop, a hung transaction).  A connection
 * without any answer to its newest sync or request for 60 s is dropped.
 */
static void
check_stall(void)
{
	static int	stalled;
	long		now = now_ms();
	int			busy = 0;

	for (int i = 0; i < nconns; i++)
	{
		Conn	   *c = &conns[i];

		if (c->state != C_OPEN)
			continue;
		busy |= c->http || c->syncs_out > 0;
		if (c->http && now - c->req.sent_at > HARD_TIMEOUT_MS)
		{
			st.stalls++;
			note("STALL: http %d: no answer in %d ms (%s, %zu bytes)", c->id, HARD_TIMEOUT_MS,
				 c->req_chunked ? "chunked" : "plain", c->req.bytes.len);
			abandon(c, "stall");
		}
		else if (!c->http && c->syncs_out > 0 && now - c->sync_sent_at > HARD_TIMEOUT_MS)
			conn_lost(c, "no answer for 60 s");
	}
	if (!busy || now - last_progress <= opt.stall_ms)
	{
		stalled = 0;
		return;
	}
	if (stalled)
		return;
	stalled = 1;
	st.stalls++;
	note("STALL: no answer on any connection for %ld ms", now - last_progress);
	for (int i = 0; i < nconns; i++)
	{
		Conn	   *c = &conns[i];

		if (c->state != C_OPEN)
			continue;
		if (c->http)
			save_input("stall", c->req.bytes.data, c->req.bytes.len);
		for (int k = 0; !c->http && k < c->nmsgs && k < 8; k++)
			if (c->msgs[k].bytes.len)
				save_input("stall", c->msgs[k].bytes.data, c->msgs[k].bytes.len);
	}
}

/* Run until every connection is done; returns the number of findings. */
static long
run(void)
{
	long		last_tick = 0,
				last_report = now_ms();
	long		giveup = now_ms() + 30000;

	while (1)
	{
		struct pollfd pfd[MAX_CONNS];
		int			active = 0;

		for (int i = 0; i < nconns; i++)
		{
			Conn	   *c = &conns[i];

			if (c->state == C_FREE)
			{
				Queue	   *q = c->http ? &forced_http : &forced_ws;

				if ((stop_generating || st.inputs >= opt.inputs) && q->next >= q->n)
				{
					c->state = C_DONE;
					continue;
				}
				c->finishing = 0;
				if (conn_start(c) < 0)
					continue;
			}
			if (c->state == C_OPEN && !c->http)
				ws_fill(c);
			if (c->state == C_DONE || c->fd < 0)
				continue;
			pfd[i].fd = c->fd;
			pfd[i].events = POLLIN | (c->state == C_CONNECTING || c->out.len > c->out_off ? POLLOUT : 0);
			pfd[i].revents = 0;
			active++;
		}
		for (int i = 0; i < nconns; i++)
			if (conns[i].state == C_DONE || conns[i].fd < 0)
				pfd[i].fd = -1;
		if (active == 0)
		{
			int			done = 1;

			for (int i = 0; i < nconns; i++)
				done &= conns[i].state == C_DONE;
			if (done)
				break;
			if (now_ms() > giveup)
			{
				note("cannot connect to %s:%d", opt.host, opt.port);
				st.harness_errors++;
				break;
			}
			usleep(100000);
			continue;
		}
		giveup = now_ms() + 30000;
		poll(pfd, nconns, 50);
		for (int i = 0; i < nconns; i++)
		{
			/* a worker exit may have closed (and reopened) any of them */
			if (pfd[i].fd >= 0 && pfd[i].revents && pfd[i].fd == conns[i].fd)
				conn_io(&conns[i], pfd[i].revents);
		}
		check_stall();
		if (now_ms() - last_tick >= 100)
		{
			oracle_tick();
			last_tick = now_ms();
		}
		if (now_ms() - last_report >= 10000)
		{
			last_report = now_ms();
			note("%ld inputs, %ld messages, %.1f MB, %.0f inputs/s, worker %d at %ld kB",
				 st.inputs, st.messages, st.bytes / 1e6,
				 st.inputs * 1000.0 / (now_ms() - t_start + 1), (int) ps.ingest,
				 proc_rss_anon_kb(ps.ingest));
		}
	}
	oracle_tick();
	return st.worker_exits + st.cluster_restarts + st.conn_drops + st.stalls +
		st.accounting + st.bad_replies + st.http_errors + st.mem_over;
}

/* ---------------------------------------------------------------- main */

static void
usage(FILE *f)
{
	fprintf(f,
			"Usage: logagg-fuzz --port PORT --pgdata DIR [options]\n"
			"  --host ADDR          ingest listener (default 127.0.0.1)\n"
			"  --port PORT          ingest port (default 7480)\n"
			"  --token TOKEN        bearer token; its source holds everything sent\n"
			"  --pgdata DIR         data directory: finds the ingest worker by /proc\n"
			"  --corpus DIR         seeds: *.ndjson lines, hostile/ whole messages\n"
			"                       (default test/fuzz/corpus)\n"
			"  --inputs N           stop after N inputs (records/lines; default 100000)\n"
			"  --seed N             PRNG seed (default 1)\n"
			"  --ws N               WebSocket connections (default 4)\n"
			"  --streams N          WebSocket connections with ?stream= (default 1)\n"
			"  --http N             concurrent POST requests (default 2)\n"
			"  --max-message BYTES  never send more (default 1000000)\n"
			"  --mem-limit-mb MB    bound on the worker's RssAnon (default: report only)\n"
			"  --stall-ms MS        no answer on any connection for this long, with work\n"
			"                       outstanding, is a stall (default 5000)\n"
			"  --hostile-permille N hostile whole messages per 1000 (default 2)\n"
			"  --no-hostile-first   don't send every hostile message first\n"
			"  --save DIR           save inputs behind findings here\n"
			"  --replay             send each FILE argument as one message, report each\n"
			"  --write-specials DIR write the hostile messages built in code as files\n"
			"  --quiet              no progress on stderr\n");
}

static void
write_specials(const char *dir)
{
	Buf			b = {0};

	mkdir(dir, 0755);
	for (int i = 0; i < special_count(); i++)
	{
		char		path[4096];
		const char *name = special_build(i, &b, opt.max_message);
		FILE	   *f;

		snprintf(path, sizeof(path), "%s/%s.bin", dir, name);
		if ((f = fopen(path, "wb")) == NULL || fwrite(b.data, 1, b.len, f) != b.len || fclose(f) != 0)
		{
			perror(path);
			exit(2);
		}
	}
	buf_free(&b);
}

static void
parse_args(int argc, char **argv)
{
	static struct option lo[] = {
		{"host", 1, 0, 'H'}, {"port", 1, 0, 'p'}, {"token", 1, 0, 't'},
		{"pgdata", 1, 0, 'D'}, {"corpus", 1, 0, 'c'}, {"inputs", 1, 0, 'n'},
		{"seed", 1, 0, 's'}, {"ws", 1, 0, 'w'}, {"http", 1, 0, 'h'}, {"streams", 1, 0, 'T'},
		{"max-message", 1, 0, 'm'}, {"mem-limit-mb", 1, 0, 'M'},
		{"stall-ms", 1, 0, 'S'}, {"hostile-permille", 1, 0, 'x'},
		{"save", 1, 0, 'o'}, {"replay", 0, 0, 'r'}, {"quiet", 0, 0, 'q'},
		{"write-specials", 1, 0, 'W'}, {"no-hostile-first", 0, 0, 'N'},
		{"help", 0, 0, '?'}, {0, 0, 0, 0}
	};
	int			ch;
	int			replay = 0;

	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1)
		switch (ch)
		{
			case 'H': opt.host = optarg; break;
			case 'p': opt.port = atoi(optarg); break;
			case 't': opt.token = optarg; break;
			case 'D': opt.pgdata = optarg; break;
			case 'c': opt.corpus = optarg; break;
			case 'n': opt.inputs = atol(optarg); break;
			case 's': opt.seed = strtoull(optarg, NULL, 10); break;
			case 'w': opt.ws_conns = atoi(optarg); break;
			case 'T': opt.stream_conns = atoi(optarg); break;
			case 'h': opt.http_conns = atoi(optarg); break;
			case 'm': opt.max_message = atol(optarg); break;
			case 'M': opt.mem_limit_kb = atol(optarg) * 1024; break;
			case 'S': opt.stall_ms = atol(optarg); break;
			case 'x': opt.hostile_permille = atoi(optarg); break;
			case 'o': opt.save_dir = optarg; break;
			case 'r': replay = 1; break;
			case 'q': opt.quiet = 1; break;
			case 'N': opt.no_hostile_first = 1; break;
			case 'W': write_specials(optarg); exit(0);
			default: usage(ch == '?' && optopt == 0 ? stdout : stderr); exit(ch == '?' && optopt == 0 ? 0 : 2);
		}
	if (replay)
	{
		opt.nreplay = argc - optind;
		opt.replay = argv + optind;
	}
	if (opt.ws_conns + opt.stream_conns + opt.http_conns > MAX_CONNS ||
		opt.ws_conns + opt.stream_conns + opt.http_conns < 1 ||
		opt.max_message < 1024)
	{
		usage(stderr);
		exit(2);
	}
}

static void
queue_add(Queue *q, const char *p, size_t n)
{
	if (q->n < (int) (sizeof(q->items) / sizeof(q->items[0])))
	{
		q->items[q->n].len = 0;
		buf_put(&q->items[q->n++], p, n);
	}
}

/* Every hostile seed once over each transport, first thing. */
static void
queue_hostile(void)
{
	Buf			b = {0};

	for (int i = 0; i < hostile_count(); i++)
	{
		const char *name;
		const Buf  *h = hostile_get(i, &name);
		size_t		n = h->len < opt.max_message ? h->len : opt.max_message;

		queue_add(&forced_ws, h->data, n);
		queue_add(&forced_http, h->data, n);
	}
	for (int i = 0; i < special_count(); i++)
	{
		special_build(i, &b, opt.max_message);
		queue_add(&forced_ws, b.data, b.len);
		queue_add(&forced_http, b.data, b.len);
	}
	buf_free(&b);
}

static void
setup_conns(int ws, int streams, int http)
{
	nconns = ws + streams + http;
	for (int i = 0; i < nconns; i++)
	{
		memset(&conns[i], 0, sizeof(Conn));
		conns[i].id = i;
		conns[i].fd = -1;
		conns[i].stream = i >= ws && i < ws + streams;
		conns[i].http = i >= ws + streams;
		conns[i].rng.s = opt.seed * 1000003 + i;
	}
}

/* --replay: each file alone, with the worker checked after each. */
static int
replay_files(void)
{
	int			bad = 0;

	for (int f = 0; f < opt.nreplay; f++)
	{
		FILE	   *fp = fopen(opt.replay[f], "rb");
		Buf			b = {0};
		char		chunk[65536];
		size_t		n;
		long		rows = st.acked_rows,
					rej = st.acked_rejects,
					syncs = syncs_total,
					exits = st.worker_exits,
					t0 = now_ms();
		int64_t		lo,
					hi,
					lc;

		if (fp == NULL)
		{
			perror(opt.replay[f]);
			return 2;
		}
		while ((n = fread(chunk, 1, sizeof(chunk), fp)) > 0)
			buf_put(&b, chunk, n);
		fclose(fp);
		count_bounds(b.data, b.len, &lo, &hi, &lc);
		forced_ws.n = forced_ws.next = 0;
		queue_add(&forced_ws, b.data ? b.data : "", b.len);
		stop_generating = 1;
		setup_conns(1, 0, 0);
		run();
		rej = st.acked_rejects - rej - (syncs_total - syncs);
		rows = st.acked_rows - rows;
		if (st.worker_exits > exits)
			printf("%s: WORKER EXIT, %ld ms\n", opt.replay[f], now_ms() - t0);
		else
			printf("%s: %ld stored without seq, %ld rejected (expected %lld..%lld), %ld ms%s\n",
				   opt.replay[f], rows, rej, (long long) lc, (long long) hi, now_ms() - t0,
				   rows + rej < lc || rows + rej > hi ? ", ACCOUNTING" : "");
		bad |= st.worker_exits > exits || rows + rej < lc || rows + rej > hi;
		buf_free(&b);
	}
	return bad;
}

int
main(int argc, char **argv)
{
	long		findings;
	double		secs;

	parse_args(argc, argv);
	signal(SIGPIPE, SIG_IGN);
	t_start = last_progress = now_ms();
	if (seeds_load(opt.corpus) < 0)
	{
		fprintf(stderr, "logagg-fuzz: cannot read the corpus in %s\n", opt.corpus);
		return 2;
	}
	if (opt.pgdata)
	{
		proc_scan(opt.pgdata, &ps);
		if (ps.ingest == 0)
		{
			fprintf(stderr, "logagg-fuzz: no ingest worker under %s\n", opt.pgdata);
			return 2;
		}
		st.base_rss_kb = st.peak_rss_kb = proc_rss_anon_kb(ps.ingest);
	}
	if (opt.nreplay)
		return replay_files();

	if (!opt.no_hostile_first)
		queue_hostile();
	setup_conns(opt.ws_conns, opt.stream_conns, opt.http_conns);
	findings = run();
	secs = (now_ms() - t_start) / 1000.0;

	printf("inputs            %ld\n", st.inputs);
	printf("messages          %ld\n", st.messages);
	printf("megabytes         %.1f\n", st.bytes / 1e6);
	printf("seconds           %.1f\n", secs);
	printf("inputs_per_sec    %.0f\n", st.inputs / secs);
	printf("worker_exits      %ld\n", st.worker_exits);
	printf("cluster_restarts  %ld\n", st.cluster_restarts);
	printf("conn_drops        %ld\n", st.conn_drops);
	printf("stalls            %ld\n", st.stalls);
	printf("accounting_errors %ld\n", st.accounting);
	printf("bad_replies       %ld\n", st.bad_replies);
	printf("http_errors       %ld\n", st.http_errors);
	printf("memory_over       %ld\n", st.mem_over);
	printf("harness_errors    %ld\n", st.harness_errors);
	printf("base_worker_kb    %ld\n", st.base_rss_kb);
	printf("peak_worker_kb    %ld\n", st.peak_rss_kb);
	printf("max_settle_ms     %ld\n", st.max_settle_ms);
	printf("error_summaries   %ld\n", st.summaries);
	printf("acked_rows        %ld\n", st.acked_rows);
	printf("acked_rejects     %ld\n", st.acked_rejects);
	printf("unsettled_max     %ld\n", st.unsettled_hi);
	printf("records_min       %ld\n", st.lo_settled);
	printf("records_max       %ld\n", st.hi_sent);
	if (st.harness_errors)
		return 2;
	return findings ? 1 : 0;
}
