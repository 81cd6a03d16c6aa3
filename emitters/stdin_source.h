/*-------------------------------------------------------------------------
 *
 * stdin_source.h
 *	  The --stdin shipper: turns input lines into records.
 *
 *-------------------------------------------------------------------------
 */
#ifndef STDIN_SOURCE_H
#define STDIN_SOURCE_H

#include <stdint.h>

typedef enum StdinState
{
	STDIN_MORE,					/* more input may be readable right now */
	STDIN_IDLE,					/* nothing to read at the moment */
	STDIN_EOF					/* end of input, everything consumed */
} StdinState;

extern void stdin_source_init(void);
extern void stdin_source_cleanup(void);
extern int64_t stdin_source_fill(int64_t max, StdinState *state);

#endif							/* STDIN_SOURCE_H */
