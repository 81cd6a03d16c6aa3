/*-------------------------------------------------------------------------
 *
 * alerts.h
 *		Declarations shared by the alert engine's files: the dispatch loop
 *		(dispatch_worker.c), taking and finishing alerts (dispatcher.c),
 *		the libcurl multi glue (curl_multi.c) and one file per destination
 *		kind (dest_*.c).
 *
 * A "delivery" is one claimed alert_queue row on its way to one
 * destination; it owns a memory context holding everything its transfers
 * need, so nothing of it lives in a transaction's memory.  A delivery has
 * one or more "transfers" (libcurl easy handles): one for most kinds, one
 * per recipient for SMS.  Its outcome is known when the last transfer
 * finishes.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOGAGG_ALERTS_H
#define LOGAGG_ALERTS_H

#include "postgres.h"

#include <curl/curl.h>

#include "lib/ilist.h"
#include "lib/stringinfo.h"
#include "nodes/pg_list.h"
#include "portability/instr_time.h"
#include "datatype/timestamp.h"
#include "utils/jsonb.h"

/* One claimed alert, as _claim_alerts returns it (strings never NULL). */
typedef struct LogaggAlert
{
	int64		id;				/* alert_id, also the Idempotency-Key */
	char	   *severity;
	char	   *source;
	char	   *fingerprint;
	int64		count;
	char	   *first_seen;		/* ISO 8601 UTC */
	char	   *last_seen;
	bool		has_status;
	int			status;
	char	   *level;
	char	   *message;
	char	   *destination;
	char	   *kind;
	Jsonb	   *config;
	int			attempts;		/* including this one */
	bool		is_test;
	char	   *payload;		/* the fixed-field JSON object (webhook body) */
	char	   *rule_status;	/* alert of an alert rule, or a route
								 * group's notification: "firing" or
								 * "resolved"; NULL for a record alert */
	bool		is_group;		/* a route group's notification: the payload
								 * has group_labels and alerts [...] */
} LogaggAlert;

typedef struct LogaggDelivery
{
	dlist_node	node;			/* in the in-flight or done list */
	MemoryContext cxt;			/* owns this struct and everything below */
	LogaggAlert alert;
	int			transfers;		/* started and not finished yet */
	instr_time	started;
	/* outcome */
	bool		failed;
	bool		permanent;		/* failure that retrying cannot fix */
	long		http_status;	/* last protocol response code (HTTP/SMTP) */
	double		retry_after;	/* seconds, < 0 if the receiver gave none */
	double		latency_ms;
	char		error[256];
} LogaggDelivery;

typedef struct LogaggTransfer
{
	CURL	   *easy;
	LogaggDelivery *delivery;
	struct curl_slist *headers;
	struct curl_slist *recipients;	/* SMTP RCPT TO */
	char	   *body;			/* request body (POST data or mail message) */
	size_t		body_len;
	size_t		read_off;		/* upload position for SMTP */
	bool		is_smtp;
	double		retry_after;
	char		response[201];	/* start of the response body, for errors */
	size_t		response_len;
	size_t		response_read;	/* body bytes received in all */
	bool		response_capped;	/* we stopped reading an overlong body */
	bool		refused;		/* a header was refused: never start it */
	char		errbuf[CURL_ERROR_SIZE];
} LogaggTransfer;

/*
 * Limits applied to what destinations' configs and receivers' answers say
 * (docs/alerts.md "Limits"); add_destination enforces the same ranges.
 */
#define LOGAGG_RETRY_AFTER_MAX_S 86400	/* Retry-After honoured up to a day */
#define LOGAGG_TIMEOUT_MS_MAX 600000	/* timeout_ms: at most 10 minutes */
#define LOGAGG_RETRY_MS_MAX 86400000	/* retry_base_ms, retry_max_ms: a day */

/* ---- curl_multi.c ---- */
extern void logagg_curlm_init(void);
extern int	logagg_curlm_fd(void);
extern long logagg_curlm_timeout_ms(void);
extern void logagg_curlm_service(dlist_head *done);
extern int	logagg_curlm_running(void);
extern LogaggTransfer *logagg_transfer_new(LogaggDelivery *d, const char *url);
extern void logagg_transfer_add_header(LogaggTransfer *t, const char *fmt,...) pg_attribute_printf(2, 3);
extern void logagg_transfer_set_post(LogaggTransfer *t, char *body, size_t len,
									 const char *content_type);
extern void logagg_transfer_start(LogaggTransfer *t);
extern void logagg_delivery_fail(LogaggDelivery *d, bool permanent, const char *fmt,...) pg_attribute_printf(3, 4);
extern bool logagg_url_is_cleartext(const char *url);
extern bool logagg_refuse_cleartext(LogaggDelivery *d, LogaggTransfer *t, const char *what);
extern void logagg_clean_text(char *dst, size_t dstsize, const char *src, size_t srclen);

/* ---- dispatcher.c ---- */
extern int	logagg_dispatch_inflight;
extern void logagg_dispatcher_start(int worker_index);
extern int	logagg_dispatcher_cycle(dlist_head *done, int slots, TimestampTz *next_due);
extern void logagg_dispatcher_housekeeping(void);
extern int	logagg_dispatcher_drain_inbox(bool *citus);
extern char *logagg_alert_headline(LogaggAlert *a);

/* ---- dest_config.c: a destination's config (jsonb), with defaults ---- */
extern char *logagg_cfg_text(Jsonb *config, const char *key);
extern List *logagg_cfg_text_list(Jsonb *config, const char *key);
extern List *logagg_cfg_object_pairs(Jsonb *config, const char *key);
extern int	logagg_cfg_int(Jsonb *config, const char *key, int dflt, int min, int max);
extern bool logagg_cfg_bool(Jsonb *config, const char *key, bool dflt);

/* ---- one file per destination kind: start the transfers, or fail ---- */
extern void logagg_dest_webhook(LogaggDelivery *d);
extern void logagg_dest_slack(LogaggDelivery *d);
extern void logagg_dest_email(LogaggDelivery *d);
extern void logagg_dest_sms(LogaggDelivery *d);
extern void logagg_dest_pagerduty(LogaggDelivery *d);
extern void logagg_dest_alertmanager(LogaggDelivery *d);

#endif							/* LOGAGG_ALERTS_H */
