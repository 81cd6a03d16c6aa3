/*-------------------------------------------------------------------------
 *
 * ws_client.h
 *	  The libwebsockets client connection: connect, reconnect with backoff,
 *	  send frames from the record window, apply the server's acks.
 *
 *-------------------------------------------------------------------------
 */
#ifndef WS_CLIENT_H
#define WS_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

extern bool ws_client_init(void);
extern void ws_client_start(void);
extern void ws_client_cleanup(void);
extern void ws_client_kick_write(void);
extern void ws_client_housekeeping(void);

#endif							/* WS_CLIENT_H */
