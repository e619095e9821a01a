#ifndef MUX_INT_H
#define MUX_INT_H

/*
 * What the files of the mux module share, and nobody else sees: mux.c
 * (the CITI table and lifecycle, data, windows), mux_dial.c (the side that
 * dials: the peer's CTRL_HEADER to our answer) and mux_lsn.c (the side
 * that listens: forward listeners, accepted connections).
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
	/* CITI_DIALING to a join point: the answer it waits for, else 0 */
	int64_t		 join_ref;
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
/* Queues our CTRL_RESP_HEADER for CITI id: 0 or -1. */
int		 mux_send_resp(struct sess *s, uint32_t id, int ok,
		    const char *mess);
/* A dial failed: tells the peer (unless it gave up) and ends the CITI. */
void		 mux_dial_failed(struct citi *ci, const char *why);
/* ci's socket is connected: answers the peer, the CITI opens. */
void		 mux_dial_connected(struct citi *ci);

/* mux_join.c */

/* Whether the forward list lets this side reach join point h. */
int		 mux_join_allowed(const struct sess *s,
		    const struct hostinfo *h);
/* Dials ci (CITI_DIALING, its dst a join point) through the embedder. */
void		 mux_join_dial(struct citi *ci);

/* mux_lsn.c */

/* Closes the session's listeners (mux_stop). */
void		 mux_lsn_close_all(struct sess *s);

#endif
