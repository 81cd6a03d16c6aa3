/*-------------------------------------------------------------------------
 *
 * curl_multi.c
 *		libcurl multi-interface glue for the dispatch workers.
 *
 * One long-lived multi handle per dispatch worker keeps connections to
 * receivers alive between notifications.  libcurl tells us which sockets
 * to watch through CURLMOPT_SOCKETFUNCTION; we put them into a private
 * epoll set whose single fd sits in the worker's WaitEventSet next to its
 * latch (PG15 cannot remove one socket from a WaitEventSet, a nested epoll
 * set can).  CURLMOPT_TIMERFUNCTION gives a deadline the worker uses as
 * its wait timeout.  After each wake the worker calls logagg_curlm_service,
 * which drives curl_multi_socket_action and collects finished transfers.
 *
 * Also the part every destination kind shares: creating a transfer
 * (timeouts, allowed protocols, Idempotency-Key) and turning a finished
 * one into an outcome (which failures are permanent, Retry-After).
 *
 * Nothing here calls ereport(ERROR) from inside a libcurl callback: the
 * callbacks only copy bytes into the transfer's own buffers.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "mb/pg_wchar.h"
#include "utils/memutils.h"

#include "alerts.h"
#include "logagg.h"

static CURLM *multi = NULL;
static int	epfd = -1;
static int64 timer_deadline_ms = -1;	/* monotonic ms, -1 = none */
static int	running_transfers = 0;

static int64
mono_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64) ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* libcurl wants a socket watched (or no longer). */
static int
socket_cb(CURL *easy, curl_socket_t s, int what, void *userp, void *socketp)
{
	struct epoll_event ev;

	if (what == CURL_POLL_REMOVE)
	{
		/* may already be closed, which removed it from the set: ignore */
		(void) epoll_ctl(epfd, EPOLL_CTL_DEL, s, NULL);
		return 0;
	}
	memset(&ev, 0, sizeof(ev));
	ev.events = ((what & CURL_POLL_IN) ? EPOLLIN : 0) |
		((what & CURL_POLL_OUT) ? EPOLLOUT : 0);
	ev.data.fd = s;
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, s, &ev) != 0)
	{
		if (errno == ENOENT)
			(void) epoll_ctl(epfd, EPOLL_CTL_ADD, s, &ev);
	}
	return 0;
}

static int
timer_cb(CURLM *m, long timeout_ms, void *userp)
{
	timer_deadline_ms = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
	return 0;
}

void
logagg_curlm_init(void)
{
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK)
		ereport(ERROR,
				(errcode(ERRCODE_INTERNAL_ERROR),
				 errmsg("logagg: could not initialise libcurl")));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (epfd < 0)
		ereport(ERROR,
				(errcode_for_socket_access(),
				 errmsg("logagg: epoll_create1 failed: %m")));
	multi = curl_multi_init();
	if (multi == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("logagg: could not create a libcurl multi handle")));
	curl_multi_setopt(multi, CURLMOPT_SOCKETFUNCTION, socket_cb);
	curl_multi_setopt(multi, CURLMOPT_TIMERFUNCTION, timer_cb);
	/* keep-alive pool: enough idle connections for every receiver we use */
	curl_multi_setopt(multi, CURLMOPT_MAXCONNECTS, (long) Max(64, logagg_dispatch_concurrency * 2));
	curl_multi_setopt(multi, CURLMOPT_PIPELINING, (long) CURLPIPE_MULTIPLEX);
}

int
logagg_curlm_fd(void)
{
	return epfd;
}

int
logagg_curlm_running(void)
{
	return running_transfers;
}

/* Milliseconds until libcurl wants its timeout action, -1 if none. */
long
logagg_curlm_timeout_ms(void)
{
	int64		left;

	if (timer_deadline_ms < 0)
		return -1;
	left = timer_deadline_ms - mono_ms();
	return left < 0 ? 0 : (long) left;
}

/* ---- per-transfer callbacks: copy bytes only ---- */

/*
 * Only the start of a receiver's answer is kept (for alert_log.error); the
 * rest is read and dropped up to RESPONSE_READ_MAX, after which the
 * transfer is cut short: its status line has long been seen, and a
 * receiver streaming an endless body must not hold a concurrency slot
 * until the timeout.
 */
#define RESPONSE_READ_MAX (64 * 1024)

static size_t
write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	LogaggTransfer *t = (LogaggTransfer *) userdata;
	size_t		n = size * nmemb;
	size_t		room = sizeof(t->response) - 1 - t->response_len;

	if (room > 0)
	{
		size_t		c = Min(room, n);

		memcpy(t->response + t->response_len, ptr, c);
		t->response_len += c;
		t->response[t->response_len] = '\0';
	}
	t->response_read += n;
	if (t->response_read > RESPONSE_READ_MAX)
	{
		t->response_capped = true;
		return 0;				/* CURLE_WRITE_ERROR: see finish_transfer */
	}
	return n;
}

/*
 * Retry-After (RFC 9110 10.2.3): delay-seconds (1*DIGIT) or an HTTP-date.
 * Anything else ("inf", "-1", "1e308", "1.5", garbage) is ignored, so the
 * usual backoff applies; a value beyond LOGAGG_RETRY_AFTER_MAX_S is
 * clamped to it, a date in the past means "now".  Returns seconds, or -1.
 */
static double
parse_retry_after(const char *v)
{
	static const char *const days[] = {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
	bool		is_date = false;

	if (*v >= '0' && *v <= '9')
	{
		double		secs = 0;

		for (; *v >= '0' && *v <= '9'; v++)
			secs = Min(secs * 10 + (*v - '0'), (double) LOGAGG_RETRY_AFTER_MAX_S);
		return *v == '\0' ? secs : -1;
	}
	/* every HTTP-date form (IMF-fixdate, RFC 850, asctime) starts with a day */
	for (int i = 0; i < lengthof(days); i++)
		if (pg_strncasecmp(v, days[i], 3) == 0)
			is_date = true;
	if (is_date)
	{
		time_t		when = curl_getdate(v, NULL);

		if (when != (time_t) -1)
		{
			double		secs = difftime(when, time(NULL));

			return Min(Max(secs, 0), (double) LOGAGG_RETRY_AFTER_MAX_S);
		}
	}
	return -1;
}

static size_t
header_cb(char *buf, size_t size, size_t nitems, void *userdata)
{
	LogaggTransfer *t = (LogaggTransfer *) userdata;
	size_t		n = size * nitems;
	static const char name[] = "retry-after:";

	if (n > sizeof(name) - 1 && pg_strncasecmp(buf, name, sizeof(name) - 1) == 0)
	{
		char		val[128];
		size_t		vlen = Min(n - (sizeof(name) - 1), sizeof(val) - 1);
		char	   *p;
		char	   *end;

		memcpy(val, buf + sizeof(name) - 1, vlen);
		val[vlen] = '\0';
		p = val;
		while (*p == ' ' || *p == '\t')
			p++;
		for (end = p + strlen(p); end > p && (end[-1] == '\r' || end[-1] == '\n' ||
											  end[-1] == ' ' || end[-1] == '\t'); end--)
			*(end - 1) = '\0';
		t->retry_after = parse_retry_after(p);
	}
	return n;
}

static size_t
read_cb(char *buffer, size_t size, size_t nitems, void *userdata)
{
	LogaggTransfer *t = (LogaggTransfer *) userdata;
	size_t		room = size * nitems;
	size_t		left = t->body_len - t->read_off;
	size_t		c = Min(room, left);

	memcpy(buffer, t->body + t->read_off, c);
	t->read_off += c;
	return c;
}

/*
 * Copy src (srclen bytes, not necessarily terminated) into dst as text the
 * database can store: in a UTF8 database every well-formed character is
 * kept and every malformed byte becomes U+FFFD; in any other encoding only
 * printable ASCII is kept and other bytes become '?'.  Control characters
 * become spaces.  The copy ends at a character boundary: a character that
 * does not fit in dst (or a sequence that src itself cuts short at its end)
 * is left out whole, never cut.
 */
void
logagg_clean_text(char *dst, size_t dstsize, const char *src, size_t srclen)
{
	const unsigned char *s = (const unsigned char *) src;
	const unsigned char *end = s + srclen;
	bool		utf8 = GetDatabaseEncoding() == PG_UTF8;
	size_t		o = 0;

	if (dstsize == 0)
		return;
	while (s < end && *s != '\0')
	{
		const char *out;
		int			inlen;
		int			outlen;
		char		one;

		if (*s < 0x80)
		{
			one = (*s < 0x20 || *s == 0x7f) ? ' ' : (char) *s;
			out = &one;
			inlen = outlen = 1;
		}
		else if (utf8)
		{
			inlen = pg_utf_mblen(s);
			if (end - s < inlen)
				break;			/* cut off by whoever gave us src */
			if (pg_utf8_islegal(s, inlen))
			{
				out = (const char *) s;
				outlen = inlen;
			}
			else
			{
				out = "\xEF\xBF\xBD";	/* U+FFFD */
				outlen = 3;
				inlen = 1;
			}
		}
		else
		{
			one = '?';
			out = &one;
			inlen = outlen = 1;
		}
		if (o + outlen >= dstsize)
			break;
		memcpy(dst + o, out, outlen);
		o += outlen;
		s += inlen;
	}
	dst[o] = '\0';
}

/* Record a failure of the delivery; the first message is kept. */
void
logagg_delivery_fail(LogaggDelivery *d, bool permanent, const char *fmt,...)
{
	if (!d->failed)
	{
		char		buf[1024];
		va_list		ap;

		va_start(ap, fmt);
		vsnprintf(buf, sizeof(buf), fmt, ap);
		va_end(ap);
		/* receivers' answers and libcurl messages: keep them valid text */
		logagg_clean_text(d->error, sizeof(d->error), buf, strlen(buf));
	}
	d->failed = true;
	if (permanent)
		d->permanent = true;
}

/* http:// or smtp://: nothing on the connection is encrypted (no STARTTLS asked) */
bool
logagg_url_is_cleartext(const char *url)
{
	return pg_strncasecmp(url, "http://", 7) == 0 || pg_strncasecmp(url, "smtp://", 7) == 0;
}

/* user:password@ in the URL's authority */
static bool
url_has_userinfo(const char *url)
{
	const char *p = strstr(url, "://");
	size_t		auth;

	if (p == NULL)
		return false;
	p += 3;
	auth = strcspn(p, "/?#");
	return memchr(p, '@', auth) != NULL;
}

/*
 * Credentials (what) must not cross a cleartext connection unless the
 * destination's config says "allow_insecure": true.  add_destination
 * refuses such configs; this is the same rule at send time, for a config
 * written around it.  Returns true when refused: the delivery has failed
 * permanently and t (if given) will not be started.
 */
bool
logagg_refuse_cleartext(LogaggDelivery *d, LogaggTransfer *t, const char *what)
{
	if (logagg_cfg_bool(d->alert.config, "allow_insecure", false))
		return false;
	logagg_delivery_fail(d, true,
						 "refusing to send %s over a cleartext connection: use https:// (or smtps://, or STARTTLS), or set \"allow_insecure\": true",
						 what);
	if (t)
		t->refused = true;
	return true;
}

/*
 * A new transfer for delivery d to url, with what every kind shares:
 * timeouts, no signals, no redirects, only http(s)/smtp(s), the
 * Idempotency-Key header, response capture.
 */
LogaggTransfer *
logagg_transfer_new(LogaggDelivery *d, const char *url)
{
	LogaggTransfer *t = MemoryContextAllocZero(d->cxt, sizeof(LogaggTransfer));
	int			timeout = logagg_cfg_int(d->alert.config, "timeout_ms", logagg_alert_timeout_ms,
										 1, LOGAGG_TIMEOUT_MS_MAX);

	t->delivery = d;
	t->retry_after = -1;
	t->easy = curl_easy_init();
	if (t->easy == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_OUT_OF_MEMORY),
				 errmsg("logagg: could not create a libcurl handle")));
	t->is_smtp = pg_strncasecmp(url, "smtp", 4) == 0;
	if (logagg_url_is_cleartext(url) && url_has_userinfo(url))
		(void) logagg_refuse_cleartext(d, t, "the user:password of its URL");
	curl_easy_setopt(t->easy, CURLOPT_URL, url);
	curl_easy_setopt(t->easy, CURLOPT_PRIVATE, t);
	curl_easy_setopt(t->easy, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(t->easy, CURLOPT_TIMEOUT_MS, (long) timeout);
	curl_easy_setopt(t->easy, CURLOPT_CONNECTTIMEOUT_MS, (long) Min(timeout, 10000));
	curl_easy_setopt(t->easy, CURLOPT_PROTOCOLS_STR, "http,https,smtp,smtps");
	curl_easy_setopt(t->easy, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(t->easy, CURLOPT_ERRORBUFFER, t->errbuf);
	curl_easy_setopt(t->easy, CURLOPT_WRITEFUNCTION, write_cb);
	curl_easy_setopt(t->easy, CURLOPT_WRITEDATA, t);
	curl_easy_setopt(t->easy, CURLOPT_HEADERFUNCTION, header_cb);
	curl_easy_setopt(t->easy, CURLOPT_HEADERDATA, t);
	curl_easy_setopt(t->easy, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(t->easy, CURLOPT_USERAGENT, "logagg/" LOGAGG_VERSION);
	if (!t->is_smtp)
	{
		logagg_transfer_add_header(t, "Idempotency-Key: " INT64_FORMAT, d->alert.id);
		/* no "Expect: 100-continue" round trip for larger bodies */
		logagg_transfer_add_header(t, "Expect:");
	}
	return t;
}

/*
 * Add one request header.  A line break in it would end the header early
 * and start another one of the sender's choosing (add_destination refuses
 * such values; this catches a config written around it): the transfer is
 * then refused and the delivery fails permanently.
 */
void
logagg_transfer_add_header(LogaggTransfer *t, const char *fmt,...)
{
	char		buf[8192];
	va_list		ap;
	int			n;

	va_start(ap, fmt);
	n = vsnprintf(buf, sizeof(buf), fmt, ap);
	va_end(ap);
	if (n < 0 || n >= (int) sizeof(buf) || strpbrk(buf, "\r\n") != NULL)
	{
		const char *colon = strchr(buf, ':');

		logagg_delivery_fail(t->delivery, true,
							 "refusing to send header \"%.*s\": its value is too long or contains a line break",
							 colon ? (int) Min(colon - buf, 64) : 0, buf);
		t->refused = true;
		return;
	}
	t->headers = curl_slist_append(t->headers, buf);
}

/* body must live in the delivery's context until the transfer ends. */
void
logagg_transfer_set_post(LogaggTransfer *t, char *body, size_t len,
						 const char *content_type)
{
	t->body = body;
	t->body_len = len;
	curl_easy_setopt(t->easy, CURLOPT_POST, 1L);
	curl_easy_setopt(t->easy, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(t->easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
	logagg_transfer_add_header(t, "Content-Type: %s", content_type);
}

void
logagg_transfer_start(LogaggTransfer *t)
{
	CURLMcode	rc;

	if (t->refused)
	{
		/* the delivery has failed already; nothing goes on the wire */
		curl_slist_free_all(t->headers);
		curl_slist_free_all(t->recipients);
		curl_easy_cleanup(t->easy);
		return;
	}
	if (t->is_smtp)
	{
		curl_easy_setopt(t->easy, CURLOPT_READFUNCTION, read_cb);
		curl_easy_setopt(t->easy, CURLOPT_READDATA, t);
		curl_easy_setopt(t->easy, CURLOPT_UPLOAD, 1L);
		curl_easy_setopt(t->easy, CURLOPT_INFILESIZE_LARGE, (curl_off_t) t->body_len);
		if (t->recipients)
			curl_easy_setopt(t->easy, CURLOPT_MAIL_RCPT, t->recipients);
	}
	if (t->headers)
		curl_easy_setopt(t->easy, CURLOPT_HTTPHEADER, t->headers);
	rc = curl_multi_add_handle(multi, t->easy);
	if (rc != CURLM_OK)
	{
		logagg_delivery_fail(t->delivery, false, "curl_multi_add_handle: %s",
							 curl_multi_strerror(rc));
		curl_slist_free_all(t->headers);
		curl_slist_free_all(t->recipients);
		curl_easy_cleanup(t->easy);
		return;
	}
	t->delivery->transfers++;
	running_transfers++;
}

static void
finish_transfer(CURL *easy, CURLcode res, dlist_head *done)
{
	LogaggTransfer *t = NULL;
	LogaggDelivery *d;
	long		code = 0;

	curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **) &t);
	d = t->delivery;
	curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &code);
	if (code != 0)
		d->http_status = code;

	/* we cut an overlong answer short: the response itself was complete */
	if (res == CURLE_WRITE_ERROR && t->response_capped && code != 0)
		res = CURLE_OK;

	if (res != CURLE_OK)
	{
		/*
		 * errbuf names host and port at most, never credentials.  A server
		 * without STARTTLS where credentials require it stays so.
		 */
		bool		permanent = (res == CURLE_UNSUPPORTED_PROTOCOL ||
								 res == CURLE_URL_MALFORMAT ||
								 res == CURLE_LOGIN_DENIED ||
								 res == CURLE_USE_SSL_FAILED);

		logagg_delivery_fail(d, permanent, "%s%s%s", curl_easy_strerror(res),
							 t->errbuf[0] ? ": " : "", t->errbuf);
	}
	else if (!t->is_smtp && (code < 200 || code > 299))
	{
		/*
		 * 4xx means the request itself is wrong (bad URL, key, payload):
		 * retrying will not help, except for timeouts, conflicts and rate
		 * limits.
		 */
		bool		permanent = code >= 400 && code < 500 &&
			code != 408 && code != 409 && code != 425 && code != 429;

		logagg_delivery_fail(d, permanent, "HTTP %ld%s%s", code,
							 t->response_len ? ": " : "", t->response);
		if ((code == 429 || code == 503) && t->retry_after >= 0)
			d->retry_after = t->retry_after;
	}

	curl_multi_remove_handle(multi, easy);
	curl_easy_cleanup(easy);
	curl_slist_free_all(t->headers);
	curl_slist_free_all(t->recipients);
	t->headers = NULL;
	t->recipients = NULL;
	running_transfers--;

	if (--d->transfers == 0)
	{
		instr_time	now;

		INSTR_TIME_SET_CURRENT(now);
		INSTR_TIME_SUBTRACT(now, d->started);
		d->latency_ms = INSTR_TIME_GET_MILLISEC(now);
		dlist_push_tail(done, &d->node);
	}
}

/*
 * Drive libcurl: socket actions for every ready socket in our epoll set,
 * the timeout action when its deadline has passed; deliveries whose last
 * transfer finished are appended to *done.
 */
void
logagg_curlm_service(dlist_head *done)
{
	struct epoll_event evs[64];
	int			n;
	int			still;
	CURLMsg    *msg;
	int			left;

	do
	{
		n = epoll_wait(epfd, evs, lengthof(evs), 0);
		for (int i = 0; i < n; i++)
		{
			int			flags = 0;

			if (evs[i].events & EPOLLIN)
				flags |= CURL_CSELECT_IN;
			if (evs[i].events & EPOLLOUT)
				flags |= CURL_CSELECT_OUT;
			if (evs[i].events & (EPOLLERR | EPOLLHUP))
				flags |= CURL_CSELECT_ERR;
			curl_multi_socket_action(multi, evs[i].data.fd, flags, &still);
		}
	} while (n == lengthof(evs));

	if (timer_deadline_ms >= 0 && mono_ms() >= timer_deadline_ms)
	{
		timer_deadline_ms = -1;
		curl_multi_socket_action(multi, CURL_SOCKET_TIMEOUT, 0, &still);
	}

	while ((msg = curl_multi_info_read(multi, &left)) != NULL)
	{
		if (msg->msg == CURLMSG_DONE)
			finish_transfer(msg->easy_handle, msg->data.result, done);
	}
}
