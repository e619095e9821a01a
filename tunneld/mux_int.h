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
#include "dgram.h"
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
	/* A UDP flow's stream (mux_udp.c): the flow, until CITI_CLOSING.
	 * Its tcp handle is then never opened: it only closes. */
	int		 udp;
	struct uflow	*uf;
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

/*
 * One UDP flow: the datagrams of one sender of a UDP forward's listener
 * (listening side), or of the connected socket dialed for the peer's
 * stream (dialing side), and its CITI.  It goes with its CITI, when
 * that closes (mux_udp_close).
 */
struct uflow {
	TAILQ_ENTRY(uflow) slink;	/* sess->uflows */
	TAILQ_ENTRY(uflow) llink;	/* its listener's flows */
	TAILQ_ENTRY(uflow) dlink;	/* its listener's, datagrams waiting */
	struct uflow	*hnext;		/* its listener's bucket, if hashed */
	int		 hashed;
	int		 dirty;		/* on dlink */
	int		 batch;		/* dialing side: reads since a flush */
	struct sess	*s;
	struct citi	*ci;		/* NULL once the CITI closes */
	struct lsn	*l;		/* listening side; NULL once closed */
	struct sockaddr_storage src;	/* listening side: the sender */
	int		 dial;		/* dialing side */
	int		 fidx;		/* dialing side: its forward in s->eff */
	uv_udp_t	 udp;		/* dialing side: the connected socket */
	int		 sock;		/* udp initialised (closed with it) */
	int		 recving;
	struct dgram_q	 q;		/* local datagrams for the stream */
	struct dgram_rx	 rx;		/* the peer's stream */
	uint64_t	 last;		/* ms: the last datagram either way */
	uint64_t	 n_up, n_down;	/* datagrams to the peer, from it */
	uint64_t	 dropped;	/* local ones not sent: past
					 * TUN_UDP_QUEUE, or queued when the
					 * flow ended */
	uint64_t	 undelivered;	/* the peer's the local socket refused */
	uint64_t	 truncated;	/* the peer's stream ended in one */
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

/* Whether ci may queue a packet now: its state, window, the session's
 * congestion and rate limit (what reading its local socket waits for). */
int		 mux_citi_may_send(const struct citi *ci);

/* Queues p (ci's data, p->len set) and counts it against the limits. */
void		 mux_citi_send(struct citi *ci, struct opkt *p);

/* A rate-limited warning about something the peer did (or asked). */
void		 mux_peer_warn(struct sess *s, const char *fmt, ...)
		    __attribute__((format(printf, 2, 3)));

/* mux_dial.c */

/* The peer asks for a stream (a UDP one when m->udp): check, dial,
 * answer (CTRL_RESP_HEADER). */
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

/* The next free CITI id of our range. */
uint32_t	 mux_next_id(struct sess *s);

/* The address to bind f's Src to, of socktype (freed by the caller);
 * NULL when it does not resolve (logged). */
struct addrinfo	*mux_listen_addr(struct sess *s, const struct fwd *f,
		    const char *host, int socktype);

/* mux_udp.c: the flows of UDP forwards, both sides. */

/* A flow for ci (ci->udp set, listed on the session): of l's sender src,
 * or (l NULL) dialed for the peer's stream of forward fidx.  NULL if
 * out of memory. */
struct uflow	*mux_udp_flow_new(struct citi *ci, struct lsn *l,
		    const struct sockaddr *src, int fidx);
/* Whether forward fidx has -udpFlows streams dialed already. */
int		 mux_udp_dial_full(struct sess *s, int fidx);
/* Opens ci's connected socket to sa: 0, or a negative UV_E* code. */
int		 mux_udp_connect(struct citi *ci, const struct sockaddr *sa);
/*
 * A datagram from the local socket, for the peer: queued (or dropped
 * and counted); it goes out at the latest on the next mux_udp_flush,
 * which the reader calls once a batch of reads is over.  Returns 1 when
 * it was queued.
 */
int		 mux_udp_local(struct uflow *uf, const uint8_t *p, size_t n);
/* Moves the queued datagrams into packets, as far as the stream may
 * take them now. */
void		 mux_udp_flush(struct uflow *uf);
/* Datagrams read in a row before a flush whatever comes next (libuv
 * reads at most 32 a turn). */
#define MUX_UDP_BATCH	32
/* Moves waiting datagrams to the stream and reads the connected socket,
 * as far as may_send (mux_citi_may_send) and the queue allow. */
void		 mux_udp_reading(struct citi *ci, int may_send);
/* The peer's stream bytes: its datagrams go out at once (or are
 * dropped and counted); a malformed stream ends the CITI. */
void		 mux_udp_data(struct citi *ci, const uint8_t *p, size_t n);
/* The peer refused the flow's stream: its listener opens no flow for a
 * while (each datagram of a refused sender would ask again). */
void		 mux_udp_refused(struct citi *ci);
/* The peer closed its stream: a datagram it cut is dropped, counted. */
void		 mux_udp_peer_eof(struct citi *ci);
/* ci enters CITI_CLOSING: its flow ends (counters logged). */
void		 mux_udp_close(struct citi *ci);
/* Once a second: idle flows end (-udpTimeout). */
void		 mux_udp_tick(struct sess *s, uint64_t now);
/* Asks for TUN_UDP_SOCKBUF of receive buffer on an open UDP socket. */
void		 mux_udp_sockbuf(uv_handle_t *h);
/* "addr:port" ("[v6]:port") of sa, for logs. */
void		 mux_udp_name(const struct sockaddr *sa, char *out, size_t cap);
/* libuv's buffer for a datagram (one receive at a time: shared). */
void		 mux_udp_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf);

/* mux_ulsn.c: UDP forwards' listeners and their flow tables. */

/* Listens on f's Src for the session (mux_start): 0, or -1 (logged). */
int		 mux_ulsn_listen(struct sess *s, const struct fwd *f);
/* l is closing: its flows stay with their CITIs but lose their socket. */
void		 mux_ulsn_close(struct lsn *l);
/* Frees l's table (its close callback). */
void		 mux_ulsn_free(struct lsn *l);
/* The flow no longer takes new datagrams of its sender (a new one
 * will); it stays counted until mux_ulsn_forget. */
void		 mux_ulsn_unhash(struct uflow *uf);
/* The flow ended: off its listener. */
void		 mux_ulsn_forget(struct uflow *uf);
/* The peer refused a flow of l: new senders wait MUX_ULSN_HOLD_MS. */
void		 mux_ulsn_hold(struct lsn *l);
#define MUX_ULSN_HOLD_MS	1000
/* Takes a connection off server's backlog and closes it (why: a limit). */
void		 mux_accept_refuse(struct sess *s, uv_stream_t *server,
		    const char *why);

/*
 * Asks the peer to open ci (CITI_OPENING, its local socket connected, or
 * a UDP flow's) to dst: CTRL_HEADER, or MSG_CTRL_UDP_HEADER for udp, and
 * the -openTimeout deadline.  Returns 0, or -1 if out of memory (the
 * caller aborts ci).
 */
int		 mux_announce(struct citi *ci, const struct hostinfo *dst,
		    int udp);

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
