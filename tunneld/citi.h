#ifndef CITI_H
#define CITI_H

/*
 * The lifecycle of one CITI (a TCP stream a session carries, wire spec
 * 6.4-6.6): its states, the events that move it, and the one table that
 * says which moves are legal and what each does.  Pure: no I/O, no libuv;
 * mux.c applies the actions (mux_citi_event).  The table is drawn in
 * citi.c.
 */

#include <stdint.h>

enum citi_state {
	CITI_DIALING,		/* dialing side: resolving, connecting */
	CITI_DIAL_ABANDONED,	/* dialing; the peer closed it already */
	CITI_OPENING,		/* listening side: awaiting the answer */
	CITI_OPENING_PEER_EOF,	/* awaiting; the peer closed it already */
	CITI_OPEN,		/* data both ways */
	CITI_LOCAL_EOF,		/* we closed (zero-length packet sent) */
	CITI_PEER_EOF,		/* the peer closed; our FIN to the local
				 * socket in flight; we still send */
	CITI_PEER_EOF_SHUT,	/* the same, FIN done */
	CITI_DRAINING,		/* both closed, forgotten; waiting for the
				 * local FIN before closing the socket */
	CITI_CLOSING,		/* forgotten; the socket is being closed */
	CITI_CLOSED,		/* closed; a resolver request remains */
	CITI_FREED,		/* gone: the caller must not touch it */
	CITI_NSTATES
};

enum citi_event {
	CITI_EV_CONNECTED,	/* the dial succeeded (answer sent) */
	CITI_EV_DIAL_FAILED,	/* resolving or connecting failed */
	CITI_EV_ANSWER_OK,	/* the peer's CTRL_RESP_HEADER: success */
	CITI_EV_ANSWER_NG,	/* ... a refusal */
	CITI_EV_OPEN_TIMEOUT,	/* no answer in -openTimeout */
	CITI_EV_LOCAL_EOF,	/* the local socket read EOF */
	CITI_EV_LOCAL_ERROR,	/* a local read, write or shutdown failed */
	CITI_EV_PEER_EOF,	/* the peer's zero-length packet */
	CITI_EV_SHUT_DONE,	/* shutdown(SHUT_WR) of the local socket */
	CITI_EV_ABORT,		/* forget it without telling the peer (it
				 * never learnt of it, or cannot be told) */
	CITI_EV_SESSION_STOP,	/* the session is freed */
	CITI_EV_HANDLE_CLOSED,	/* libuv's close callback */
	CITI_EV_REQ_DONE,	/* the last libuv request's callback */
	CITI_NEVENTS
};

/*
 * What a transition does besides changing the state: queue our zero-length
 * packet; FIN the local socket once its queued writes are done.
 */
#define CITI_A_SEND_CLOSE	0x01
#define CITI_A_SHUTDOWN		0x02

/*
 * Looks up the move from state `from` on event `ev`.  Returns 0 and sets
 * *to and *act (CITI_A_* bits), or -1 if the move is illegal (the caller
 * logs it and keeps the state).  A self-move with no action is legal where
 * a late callback or a repeated cause is expected.
 */
int		 citi_next(enum citi_state from, enum citi_event ev,
		    enum citi_state *to, unsigned *act);

/* Names for logs; "?" for a value out of range. */
const char	*citi_state_name(enum citi_state st);
const char	*citi_event_name(enum citi_event ev);

/* In the session's id table (the peer's packets can reach it). */
int		 citi_in_table(enum citi_state st);
/* Waiting for the peer's answer: on the session's opening list. */
int		 citi_is_opening(enum citi_state st);
/* The local socket is read (subject to the window and congestion). */
int		 citi_reads(enum citi_state st);
/* The peer may send data on it. */
int		 citi_takes_data(enum citi_state st);
/* Being closed or gone: callbacks of its requests are late. */
int		 citi_is_gone(enum citi_state st);

#endif
