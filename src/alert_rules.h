/*-------------------------------------------------------------------------
 *
 * alert_rules.h
 *		Alert rules over time windows (alert_rules.c): counting in the
 *		ingest path, evaluation in dispatch worker 1, their settings.
 *
 *-------------------------------------------------------------------------
 */
#ifndef LOGAGG_ALERT_RULES_H
#define LOGAGG_ALERT_RULES_H

#include "postgres.h"

struct IngestBatch;

extern int	logagg_rule_eval_interval_ms;
extern int	logagg_absent_lookback_secs;

extern void logagg_define_alert_rule_gucs(void);
extern void logagg_alert_rules_count(struct IngestBatch *batch, const int *idx, int n,
									 const int64 *ids, const uint8 *sevs);
extern int	logagg_alert_rules_evaluate(void);

#endif							/* LOGAGG_ALERT_RULES_H */
