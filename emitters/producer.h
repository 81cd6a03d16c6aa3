/*-------------------------------------------------------------------------
 *
 * producer.h
 *	  Feeds the record window: from a profile generator or from stdin,
 *	  paced by --rate and bounded by --count, --duration and the window.
 *
 *-------------------------------------------------------------------------
 */
#ifndef PRODUCER_H
#define PRODUCER_H

#include <stdbool.h>

extern void producer_init(void);
extern void producer_cleanup(void);
extern void producer_kick(void);
extern void producer_stop(const char *why);
extern bool producer_finished(void);

#endif							/* PRODUCER_H */
