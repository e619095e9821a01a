#ifndef MODE_H
#define MODE_H

/*
 * kptunnel's eight modes (wire spec 8.1) and what each is: a server or a
 * client, over websocket or raw TCP, forward or reverse.  The one list of
 * them; tunneld's enum cli_mode numbers its modes in this table's order.
 */

#define MODE_F_SERVER	0x1	/* listens for the other side */
#define MODE_F_WS	0x2	/* speaks websocket */
#define MODE_F_REVERSE	0x4	/* r-*: forwards listen on the client side */

#define MODE_COUNT	8

/*
 * The index of the mode named name (0..MODE_COUNT-1, the order of
 * tunneld's enum cli_mode), or -1 if name is no mode.
 */
int		 mode_lookup(const char *name);

/* The name of mode index m, or "unknown". */
const char	*mode_name(int m);

/* MODE_F_* of mode index m, 0 if m is no mode. */
int		 mode_flags(int m);

/*
 * True if name is a server mode (server, r-server, wsserver, r-wsserver):
 * what a tunnel the dispatcher starts may be.
 */
int		 mode_name_is_server(const char *name);

/* True if name is a reverse server mode (r-server, r-wsserver). */
int		 mode_name_is_reverse_server(const char *name);

#endif
