#ifndef MUX_INT_H
#define MUX_INT_H

/*
 * What the files of the mux module share, and nobody else sees: mux.c
 * (the CITI table and lifecycle, data, windows), mux_dial.c (the side that
 * dials: the peer's CTRL_HEADER to our answer) and mux_lsn.c (the side
 * that listens: forward listeners, accepted connections); and those of
 * dynamic forwards, whose connections name their own destination:
 * mux_dyn.c (a client's -socks and -transparent listeners), socks.c (the
 * SOCKS5 handshake) and tproxy.c (the original destination of a
 * redirected connection).
 */

#include <sys/queue.h>
#include <stdint.h>

#include <uv.h>

#include "addr.h"
#include "citi.h"
#include "msg.h"
#include "tunneld.h"

struct sess;
struct opkt;

/*
 * Besides its lifecycle state, a CITI keeps two fields that are not
 * lifecycle and change independently of it: `reading` mirrors whether
 * libuv reads the local socket, which flow control (the window, the
 * session's congestion) switches on and off many times in one state; and
 * `gai_pending` says a resolver request still holds a pointer to the CITI,
 * which only decides when its memory may go (CITI_CLOSED).
 */
struct citi {
	struct citi	*hnext;
	TAILQ_ENTRY(citi) olink;	/* sess->opening */
	struct sess	*s;
	uint32_t	 id;
	enum citi_state	 state;
	uv_tcp_t	 tcp;
	uv_getaddrinfo_t gai;
	uv_connect_t	 connect;
	uv_shutdown_t	 shutdown;
	struct hostinfo	 dst;
	uint64_t	 deadline;	/* CITI_OPENING */
	/* sending */
	uint64_t	 sent;		/* packets queued on this CITI */
	uint64_t	 syncs_rcvd;
	uint64_t	 mark[TUN_MARKS];	/* seq of packets 29, 59, ... */
	uint64_t	 hdr_seq;	/* our CTRL_HEADER / RESP, for trimming */
	int		 hdr_unacked;
	struct opkt	*rx;		/* buffer handed to libuv's read */
	/* receiving */
	uint64_t	 rcvd;
	uint64_t	 syncs_sent;
	/* not lifecycle: see above */
	int		 reading;
	int		 gai_pending;
	/*
	 * Dynamic forwards: a SOCKS5 reply is owed to the local client
	 * once the peer answers (socks_answered); bytes it sent past its
	 * request, queued once the stream is open; and, on the dialing
	 * side, a target allowed by the destination patterns, whose
	 * addresses are checked once resolved.
	 */
	int		 socks_reply;
	struct opkt	*early;
	int		 by_pattern;
};

/* mux.c */

/*
 * The one place a CITI changes state (see citi.c's table).  Returns the
 * state now; CITI_FREED means ci is gone.
 */
enum citi_state	 mux_citi_event(struct citi *ci, enum citi_event ev);

/*
 * A new CITI in state st (CITI_DIALING or CITI_OPENING), listed in the
 * session's table; NULL if out of memory.
 */
struct citi	*mux_citi_new(struct sess *s, uint32_t id, enum citi_state st);

/* Reads ci's local socket or not, as its window, the session's
 * congestion and its rate limit say. */
void		 mux_citi_reading(struct citi *ci);

/* The CITI with this id in the session's table, or NULL. */
struct citi	*mux_find(struct sess *s, uint32_t id);

/* A rate-limited warning about something the peer did (or asked). */
void		 mux_peer_warn(struct sess *s, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3)));

/* mux_dial.c */

/* The peer asks for a stream: check, dial, answer (CTRL_RESP_HEADER). */
void		 mux_on_header(struct sess *s, const struct msg_header *m);

/* mux_lsn.c */

/* Closes the session's listeners (mux_stop). */
void		 mux_lsn_close_all(struct sess *s);

/* The next free CITI id of our range. */
uint32_t	 mux_next_id(struct sess *s);

/* Takes a connection off server's backlog and closes it (why: a limit). */
void		 mux_accept_refuse(struct sess *s, uv_stream_t *server,
		    const char *why);

/*
 * Asks the peer to open ci (CITI_OPENING, its local socket connected) to
 * dst: CTRL_HEADER, and the -openTimeout deadline.  Returns 0, or -1 if
 * out of memory (the caller aborts ci).
 */
int		 mux_announce(struct citi *ci, const struct hostinfo *dst);

/* mux_dyn.c */

/* A client's -socks and -transparent listeners: 0, or -1 (logged). */
int		 mux_dyn_start(struct sess *s);
/* Closes them and the SOCKS5 handshakes in progress (mux_stop). */
void		 mux_dyn_stop(struct sess *s);
/* Once a second: ends SOCKS5 handshakes past -handshakeTimeout. */
void		 mux_dyn_tick(struct sess *s, uint64_t now);

/* socks.c */

/* A connection on a -socks listener: its handshake starts. */
void		 socks_accept(struct sess *s, uv_stream_t *server);
/* Ends the handshakes past their deadline. */
void		 socks_tick(struct sess *s, uint64_t now);
/* Ends every handshake in progress. */
void		 socks_stop(struct sess *s);
/*
 * The peer answered ci's CTRL_HEADER (ok, or its refusal's text in
 * mess), or did not in time: the local client's reply, once.
 */
void		 socks_answered(struct citi *ci, int ok, const char *mess);

/* tproxy.c */

/* A connection on a -transparent listener: to its original destination. */
void		 tproxy_accept(struct sess *s, uv_stream_t *server);

#endif
