#ifndef TUNNELD_H
#define TUNNELD_H

/*
 * tunneld: one kptunnel-compatible tunnel endpoint.  The process (struct
 * tun) accepts or dials transport connections; each runs a handshake
 * (hs_), then is attached to a session (sess_) that outlives it and carries
 * the CITIs (mux_) across reconnects.
 */

#include <sys/queue.h>
#include <stdint.h>

#include <jansson.h>
#include <uv.h>

#include "addr.h"
#include "buf.h"
#include "cli.h"
#include "conn.h"
#include "enc.h"
#include "xcipher.h"
#include "msg.h"
#include "pkt.h"
#include "proxy.h"
#include "ratelog.h"
#include "sealq.h"
#include "tbucket.h"
#include "ctlmsg.h"

#define TUN_SYNC_GROUP		30	/* PACKET_NUM_BASE */
#define TUN_WINDOW		59	/* packets beyond the last SYNC group */
/*
 * The window between two tunneld peers (docs/protocol.md, "Window
 * extension"): each side announces the one it receives with, in packets
 * beyond the last SYNC group; -window sets ours.  The largest is what
 * one stream can use under TUN_HISTORY_MAX.
 */
#define TUN_WINDOW_DEF		256	/* 16 MiB of full packets */
#define TUN_WINDOW_MAX		1024	/* 64 MiB */
/* SYNC groups one stream can have unacknowledged (a ring of their ends). */
#define TUN_MARKS		(TUN_WINDOW_MAX / TUN_SYNC_GROUP + 3)
/*
 * The peer's data waiting for slow local sockets, per session: past it
 * the transport is not read (every stream waits) until half of it is
 * written.  Bounds what a peer can make us hold when it fills the windows
 * of many streams whose local end does not read.
 */
#define TUN_RXQ_MAX		(64u * 1024 * 1024)
#define TUN_COALESCE		(128 * 1024)	/* bytes per transport write */
#define TUN_CONGEST_HIGH	(1024 * 1024)	/* unsent bytes: stop reading */
#define TUN_CONGEST_LOW		(256 * 1024)
#define TUN_HISTORY_MAX		(64u * 1024 * 1024)
/* malloc: buffers below this come from the heap (tun_malloc_tune) */
#define TUN_MMAP_MIN		(512 * 1024)
/* malloc: free heap kept while traffic flows (tun_malloc_tune) */
#define TUN_TRIM_KEEP		(16 * 1024 * 1024)
/*
 * Our CITI ids: clear of Go's (which count from 1 on both sides) and of
 * each other's when both ends are tunneld and both listen.
 */
#define TUN_CITI_CLIENT		0x80000001u	/* .. 0xbfffffff */
#define TUN_CITI_SERVER		0xc0000001u	/* .. 0xffffffff */
#define TUN_CITI_SPAN		0x3fffffffu
#define TUN_REFUSE_DELAY_MS	3000
/*
 * The AuthResult of a transient refusal: a listener the new session needs
 * is held by a session whose client is still connected.  Our client retries
 * it (for TUN_BUSY_RETRY_INTERVALS keepalive intervals, the time a server
 * takes to see a dead link); Go's client, as for any "ng", gives up.
 */
#define TUN_RESULT_BUSY		"ng: busy: "
#define TUN_BUSY_RETRY_INTERVALS 4
/*
 * A client's session is gone when the server that ran its handshake
 * answers "ng: not found session", or when dispatchers answer its resumes
 * "unknown session" (404, wsup.h's WSUP_SESSION_HDR) for this long: one
 * such answer may come from another host a balancer sent us to while the
 * host holding the session restarts (docs/operations.md, "Scaling out").
 */
#define TUN_GONE_GRACE_MS	10000
/* Without -renew, a client whose session is gone exits with this status. */
#define TUN_EXIT_GONE		3
/*
 * -renew: the delay before the first new session, doubled for each
 * renewal up to the cap; the count starts over after a quiet period.
 */
#define TUN_RENEW_FIRST_MS	1000
#define TUN_RENEW_MAX_MS	60000
#define TUN_RENEW_QUIET_MS	(10 * 60 * 1000)
#define TUN_MAX_CITIS		8192	/* open streams per session */
/*
 * A UDP flow's datagrams waiting for its stream (its window, the
 * session's congestion, a rate): past this many bytes they are dropped
 * and counted, never queued without bound.
 */
#define TUN_UDP_QUEUE		(256 * 1024)
/*
 * The receive buffer asked for each UDP socket (the kernel caps it at
 * net.core.rmem_max): what arrives while the loop is busy elsewhere waits
 * there instead of being dropped.  It costs memory only while full.
 */
#define TUN_UDP_SOCKBUF		(2 * 1024 * 1024)
#define TUN_INBUF_MAX		(PKT_NORMAL_HDR + PKT_MAX_PAYLOAD + 65536)
/*
 * Answers to the peer's stream requests (CTRL_RESP_HEADER) kept for resend
 * without proof that the peer read them.  A refusal is never proven read
 * by a Go peer unless later traffic proves it, so a peer that floods
 * refused requests would grow the history without end: past this many,
 * its connection is dropped (a resume proves what it read and trims).
 */
#define TUN_REPLY_BACKLOG	16384

struct sess;
struct citi;
struct tun;
struct uflow;
struct ulsn;

/*
 * What the process that embeds a tunnel (worker mode) learns from it and
 * decides for it, set once by tun_init (as relayd's proc_run takes its
 * init and shutdown callbacks).  A standalone tunneld has none: the core
 * calls them only through the tun_* wrappers of tun.c, which give each
 * its standalone answer when hooks (or the one hook) are NULL.  Every hook
 * gets the tun; arg is the embedder's own, for it to find its state.
 */
struct tun_hooks {
	/* A server session was freed (it is off t->sessions already). */
	void	(*session_ended)(struct tun *t, const char *why);
	/* A client passed the challenge (a session was created or resumed). */
	void	(*authed)(struct tun *t);
	/* Whether a session ends with its transport (no resume). */
	int	(*is_oneshot)(const struct tun *t);
	/* tun_stop began: the embedder closes its own handles. */
	void	(*stopping)(struct tun *t);
	/*
	 * A new session needs the reverse listeners of eff: 0 when it may
	 * open them, -1 with err when they are held elsewhere.
	 */
	int	(*takeover)(struct tun *t, const struct msg_fwdlist *eff,
		    char *err);
	/* A listening fd handed over for src ("host:port"), or -1. */
	int	(*listener_take)(struct tun *t, const char *src);
	/* Closes the handed-over listening fds nobody took. */
	void	(*listeners_drop)(struct tun *t);
	/*
	 * CITI citi of session sid is to join point name (joinpt.h): the
	 * embedder asks for it and answers later with mux_join_done.
	 * Returns the request's ref (>= 1), or -1 with err.
	 */
	int64_t	(*join_dial)(struct tun *t, int64_t sid, uint32_t citi,
		    const char *name, char *err);
	void	*arg;
};

/* The process. */
struct tun {
	uv_loop_t		*loop;
	struct cli_opts		*o;
	const struct tun_hooks	*hooks;		/* NULL: standalone */
	uint8_t			 magic[32];
	int			 exit_code;
	int			 stopping;
	int			 worker;	/* hooks set: run by the dispatcher */
	char			 stop_reason[64];	/* "signal 15", or "" */
	TAILQ_HEAD(, hs)	 handshakes;	/* in progress, either role */
	/* server */
	uv_tcp_t		 listener;
	TAILQ_HEAD(, sess)	 sessions;
	int64_t			 next_session_id;
	/* client */
	struct sess		*csess;		/* the one session */
	void			*ssl_ctx;	/* SSL_CTX for -tls */
	struct proxy		 proxy;
	int			 use_proxy;
	uv_timer_t		 retry_timer;
	int			 attempts;
	uint64_t		 proven_at;	/* ms: attempts last reset */
	uint64_t		 busy_since;	/* first busy refusal, ms; 0 */
	uint64_t		 unknown_since;	/* first "unknown session", ms; 0 */
	int			 renewals;	/* -renew: recent new sessions */
	uint64_t		 renewed_at;	/* the last one, ms */
	int64_t			 renewed_from;	/* id of the session it replaced */
	int			 http_now;	/* -transport auto: HTTP next */
	int			 http_proven;	/* an HTTP transport opened */
	uv_signal_t		 sigint, sigterm;
};

/* An authenticated transport connection and its per-connection state. */
struct xport {
	struct conn	*conn;
	struct xcipher	*enc;		/* what we send */
	struct xcipher	*dec;		/* what we receive */
	struct sealq	*sq;		/* sealing off the loop, or NULL */
	struct buf	 in;		/* de-framed bytes not yet parsed */
	int		 proven;	/* the peer sent a packet on it */
};

/* A connection during its handshake. */
struct hs {
	TAILQ_ENTRY(hs)	 link;
	struct tun	*tun;
	struct xport	 x;
	int		 phase;		/* enum hs_phase (hs.h) */
	uv_timer_t	 timer;
	char		 challenge[MSG_STR_MAX];
	char		 hint[MSG_STR_MAX];	/* the AuthResponse's */
	int		 aead;		/* both offered: AEAD after "ok" */
	/* The windows announced: [0] the client's, [1] the server's
	 * (TUN_WINDOW unless both run the AEAD mode). */
	uint32_t	 win[2];
};

/* A counted packet kept for sending and, once sent, for resend. */
struct opkt {
	TAILQ_ENTRY(opkt) link;
	uint64_t	 seq;		/* session packet number */
	uint32_t	 citi;
	uint8_t		 kind;		/* PKT_NORMAL or PKT_SYNC */
	uint8_t		 reply;		/* counted in sess->hist_replies */
	int64_t		 packno;	/* SYNC */
	uint32_t	 len;
	uint32_t	 cap;
	uint8_t		 data[];
};
TAILQ_HEAD(opkt_list, opkt);

/*
 * A forward's listening socket: TCP, or UDP for a UDP forward (fwd.udp),
 * whose flows (one per sender) it keeps in u.  Both handles start the
 * same, so that closing and handing over need not tell them apart.
 */
struct lsn {
	SLIST_ENTRY(lsn) link;
	union {
		uv_tcp_t tcp;
		uv_udp_t udp;
	};
	struct sess	*s;
	struct fwd	 fwd;
	struct ulsn	*u;		/* UDP: the flow table (mux_ulsn.c) */
};

/*
 * A session's share of the per-tenant limits (cli_opts.lim, sess_lim.c).
 * "in" is what the transport brings (a server's: the tenant's up), "out"
 * what the local sockets give (a server's: the tenant's down).
 */
struct sess_lim {
	struct tbucket	 in_tb, out_tb;	/* rateUp / rateDown */
	struct tbucket	 open_tb;	/* maxConnectRate */
	uv_timer_t	 timer;		/* refills; the end at a limit */
	int		 in_held;	/* the transport is not read */
	int		 out_held;	/* local sockets are not read */
	size_t		 rr;		/* the table slot resumed first next */
	uint64_t	 bytes;		/* stream payload, both ways */
	uint64_t	 refused;	/* opens refused by a limit */
	uint64_t	 mark_in, mark_out;	/* bytes_in/out a second ago */
	int64_t		 in_now, out_now;	/* bytes over the last second */
	char		 end[96];	/* set: the session ends, this why */
};

struct sess {
	TAILQ_ENTRY(sess) link;
	struct tun	*tun;
	int		 server;
	int64_t		 id;
	char		 token[MSG_STR_MAX];
	struct xport	*x;		/* NULL while detached */
	/*
	 * Set by its first transport: every transport runs the AEAD mode,
	 * or none does (a resume may not change it, and a payload read for
	 * it leaves room for the tag).
	 */
	int		 aead;
	/*
	 * Flow-control windows (packets beyond the last SYNC group), set by
	 * the first transport and kept by every resume: ours bounds what the
	 * peer may send on a stream, the peer's what we send.
	 */
	unsigned	 win_own, win_peer;
	struct msg_fwdlist eff;		/* effective forward list */
	/* sending */
	struct opkt_list out;		/* unacknowledged, sent or not */
	struct opkt	*cursor;	/* first packet not yet sent */
	uint64_t	 next_seq;	/* seq of the next packet queued */
	uint64_t	 write_no;	/* packets handed to the transport */
	uint64_t	 hist_floor;	/* lowest seq still kept */
	size_t		 hist_bytes;	/* payload bytes kept */
	size_t		 hist_replies;	/* opkts with reply set kept */
	size_t		 unsent_bytes;
	int		 dummy_due;
	int		 congested;
	/* receiving */
	uint64_t	 read_no;
	size_t		 rxq_bytes;	/* peer data queued to local sockets */
	int		 rxq_held;	/* past TUN_RXQ_MAX: transport not read */
	/* CITIs */
	struct citi	**tab;
	size_t		 tabsz;
	size_t		 nciti;
	uint32_t	 next_citi;
	TAILQ_HEAD(, citi) opening;	/* waiting for CTRL_RESP_HEADER */
	SLIST_HEAD(, lsn) lsns;
	TAILQ_HEAD(, uflow) uflows;	/* UDP CITIs' flows (idle timer) */
	/* A client's -socks and -transparent listeners (mux_dyn.c) and its
	 * SOCKS5 handshakes in progress (socks.c). */
	SLIST_HEAD(, dlsn) dlsns;
	TAILQ_HEAD(, socks_hs) socks_hs;
	size_t		 nsocks_hs;
	/* timing */
	uv_timer_t	 tick;
	uint64_t	 last_rx;	/* ms, loop time */
	uint64_t	 last_ka;
	uint64_t	 detached_at;
	int		 closing;
	int		 started;	/* listeners opened */
	int		 handles;	/* open libuv handles owned */
	/* counters for logs */
	uint64_t	 bytes_in, bytes_out;
	uint64_t	 bytes_at_tick;	/* activity seen by the last tick */
	int		 trimmed;
	int		 reconnects;
	struct ratelog	 peer_log;	/* warnings the peer can cause */
	struct sess_lim	 lim;
};

/*
 * hs.c: the handshake of one transport connection (hs.h has its phases).
 * Each takes ownership of c: whatever happens, c ends attached to a
 * session or closed, and nothing else in t changes unless the handshake
 * succeeds (a session is created or resumed) or is a stop request.
 */
/* Server side: sends the lack pattern as soon as c is open, then reads. */
void	 hs_start(struct tun *t, struct conn *c);
/* Client side (t->csess, if any, is resumed); a failure calls
 * client_connection_lost, a definitive refusal client_fatal. */
void	 hs_client(struct tun *t, struct conn *c);
/* Fails every handshake in progress, a client's too (tun_stop). */
void	 hs_close_all(struct tun *t);

/*
 * sess.c: a session outlives its transport connections.  It is owned by
 * t->sessions (server) or t->csess (client) and freed in its last handle's
 * close callback, so that a pointer to it stays valid until the loop runs
 * the callbacks of sess_free.
 */
/* A new session (server: numbered, with a fresh token, on t->sessions),
 * detached; NULL when out of memory. */
struct sess *sess_new(struct tun *t, int server);
/* Gives x (malloc'd, its conn open) to s, replacing any connection s
 * had, and resends from peer_read_no, which sess_can_resume accepted.
 * s owns x from now on.  On a first attach the listeners open; if they
 * cannot, s is freed. */
void	 sess_attach(struct sess *s, struct xport *x, uint64_t peer_read_no);
/* The transport was lost: s waits for a resume (a OneShot tunnel's
 * session ends); a client dials again.  No-op when detached or closing. */
void	 sess_detach(struct sess *s, const char *why);
/* Ends s and its CITIs and listeners; tells server_session_ended or
 * client_session_ended.  Idempotent; the memory goes once its handles
 * are closed (sess_unref). */
void	 sess_free(struct sess *s, const char *why);
/* A handle s owned is closed: the last one frees s. */
void	 sess_unref(struct sess *s);
/* 0 when the peer's counters of a resume fit what s kept (it can resend
 * every packet from peer_read_no), -1 with err otherwise. */
int	 sess_can_resume(const struct sess *s, uint64_t peer_read_no,
	    uint64_t peer_write_no, char *err);
/* An opkt with room for cap payload bytes (kind NORMAL), or NULL. */
struct opkt *sess_opkt_new(size_t cap);
/* Numbers p, queues it (s owns it from now on) and sends what it can. */
void	 sess_enqueue(struct sess *s, struct opkt *p);
/* Queues a control message on CITI 0 (copied): 0, or -1 out of memory. */
int	 sess_send_ctrl(struct sess *s, const char *p, size_t n);
/* As sess_send_ctrl for an answer to the peer's request: 0, or -1 when
 * it was not queued (past TUN_REPLY_BACKLOG the connection is dropped:
 * check s->x). */
int	 sess_send_reply(struct sess *s, const char *p, size_t n);
/* Queues a SYNC opening citi's window to packno (dropped when out of
 * memory: the peer waits, and a resume resends). */
void	 sess_send_sync(struct sess *s, uint32_t citi, int64_t packno);
/* The peer proved it read every packet up to seq: they leave the
 * history. */
void	 sess_acked(struct sess *s, uint64_t seq);
/* The peer's bytes (de-framed).  A protocol error detaches or frees s:
 * the caller must not use s afterwards without checking s->closing. */
void	 sess_on_data(struct sess *s, uint8_t *p, size_t n);
/* Writes queued packets while the transport takes them. */
void	 sess_flush(struct sess *s);
/*
 * Reads the transport, or holds it, as the inbound rate limit
 * (lim.in_held) and the peer's data waiting for local sockets (rxq_held)
 * say; called whenever either changes and when a transport attaches.
 */
void	 sess_rx_hold(struct sess *s);
/* The peer's data queued to (delta > 0) or written by (< 0) local
 * sockets: holds the transport past TUN_RXQ_MAX, reads it again below
 * half of it. */
void	 sess_rxq(struct sess *s, ssize_t delta);
/* Frees what x owns (not x, not its conn). */
void	 xport_free(struct xport *x);

/*
 * mux.c: the CITIs (streams) of a session and its forward listeners.
 * The err of each int function names the peer's protocol error: -1 means
 * the caller drops the connection (the session stays, for a resume).
 */
void	 mux_init(struct sess *s);
/* Opens the listeners of s->eff that are on this side: 0, or -1 when one
 * cannot be opened (logged). */
int	 mux_start(struct sess *s);
/* Closes every CITI and listener of s (each close unrefs s). */
void	 mux_stop(struct sess *s);
/* A control message on CITI 0: 0, or -1 with err. */
int	 mux_ctrl(struct sess *s, uint8_t *p, size_t n, char *err);
/* A data packet for CITI id (n == 0: the peer closed it): 0, or -1. */
int	 mux_data(struct sess *s, uint32_t id, uint8_t *p, size_t n,
	    char *err);
/* The peer opened id's window to packno: 0, or -1 with err. */
int	 mux_sync(struct sess *s, uint32_t id, int64_t packno, char *err);
/* The session's output passed its high mark (1) or fell below the low
 * one (0): local sockets stop or resume being read. */
void	 mux_congestion(struct sess *s, int congested);
/* Once a second: ends CITIs whose open timed out. */
void	 mux_tick(struct sess *s, uint64_t now);
/* The listener of s on f's source address, or NULL. */
struct lsn *mux_lsn_find(struct sess *s, const struct fwd *f);
/* Moves a listener to another session; the port never closes. */
void	 mux_lsn_move(struct lsn *l, struct sess *to);
/*
 * The name a listener of f goes by when handed over between workers:
 * "host:port", or "udp/host:port" for a UDP forward.
 */
void	 mux_lsn_label(const struct fwd *f, char *out, size_t cap);
/* Open CITIs of s. */
size_t	 mux_count(const struct sess *s);
/*
 * The answer to the join dial ref of CITI citi of session sid
 * (tun_hooks.join_dial): fd, a connected stream socket now ours, or -1
 * and why.  An answer for a CITI that is gone, or that waits for another
 * ref, is dropped (fd closed).
 */
void	 mux_join_done(struct tun *t, int64_t sid, uint32_t citi,
	    int64_t ref, int fd, const char *why);

/*
 * sess_lim.c: the per-tenant limits of a session (cli_opts.lim): rates
 * applied by not reading, streams and their opening rate refused, a byte
 * budget that ends the session.
 */
/* Sets the limits up (sess_new); the timer counts as one of s's handles. */
void	 sess_lim_init(struct sess *s);
/* Closes the timer (sess_free). */
void	 sess_lim_close(struct sess *s);
/* n bytes came from the transport (rateUp of a server). */
void	 sess_lim_in(struct sess *s, size_t n);
/* n bytes were read from a local socket (rateDown of a server). */
void	 sess_lim_out(struct sess *s, size_t n);
/* n stream payload bytes moved, either way (maxBytes). */
void	 sess_lim_bytes(struct sess *s, size_t n);
/* May a stream open now (maxStreams, maxConnectRate)?  0, or -1 with
 * the refusal's text in why (counted). */
int	 sess_lim_open(struct sess *s, char *why, size_t len);
/* Whether local sockets may be read; how much at most in one read. */
int	 sess_lim_out_ok(const struct sess *s);
size_t	 sess_lim_read_cap(const struct sess *s);
/* Once a second: the current rates. */
void	 sess_lim_tick(struct sess *s);

/* server.c */
/* Binds and listens on -server's address: 0, or -1 with err. */
int	 server_start(struct tun *t, char *err);
/* A session s was freed: off t->sessions; the embedder is told. */
void	 server_session_ended(struct tun *t, struct sess *s, const char *why);
/* The live session of token (compared in constant time), or NULL. */
struct sess *server_find(struct tun *t, const char *token);
/* May a new session open eff's reverse listeners?  0, or -1 with err when
 * a connected session (or, in worker mode, another worker's connected
 * client) holds one. */
int	 server_claim_listeners(struct tun *t, const struct msg_fwdlist *eff,
	    char *err);
/* Moves to s the listeners it needs from detached sessions, and ends
 * those sessions. */
void	 server_take_listeners(struct tun *t, struct sess *s);

/* client.c */
/* The server said TUN_RESULT_BUSY: retried, or client_fatal once a dead
 * link would have been seen. */
void	 client_refused_busy(struct tun *t, const char *result);
/* Reads -proxy and -tls and dials: 0, or -1 with err. */
int	 client_start(struct tun *t, char *err);
/* Frees what client_start built (t itself is the caller's). */
void	 client_free(struct tun *t);
/* The connection or its handshake failed: dial again with backoff
 * (nothing while stopping). */
void	 client_connection_lost(struct tun *t, const char *why);
/* The server sent a packet: the backoff starts over. */
void	 client_transport_proven(struct tun *t);
/* s was freed: the client ends with its session (not one -renew gave
 * up: a new one follows). */
void	 client_session_ended(struct tun *t, struct sess *s);
/* A new session s was established: the backoffs start over. */
void	 client_session_started(struct tun *t, struct sess *s);
/* The websocket upgrade succeeded: a dispatcher routed us to a worker. */
void	 client_upgraded(struct tun *t);
/* A dispatcher answered "unknown session" (the retry is scheduled): the
 * session is gone once that lasted TUN_GONE_GRACE_MS. */
void	 client_session_unknown(struct tun *t, const char *why);
/* The session is gone (why says how we know): the client ends with
 * TUN_EXIT_GONE, or with -renew starts a new session after a backoff. */
void	 client_session_gone(struct tun *t, const char *why);
/* Logs a definitive failure and stops the process with code 1. */
void	 client_fatal(struct tun *t, const char *fmt, ...)
	    __attribute__((format(printf, 2, 3)));

/* client_http.c: -transport.  Whether the next dial takes the HTTP
 * transport. */
int	 client_use_http(const struct tun *t);
/* c closed in its handshake: a refused upgrade or CONNECT turns auto to
 * the HTTP transport, a refused HTTP transport (never opened) back. */
void	 client_transport_refused(struct tun *t, const struct conn *c);
/* c opened (upgraded, or the HTTP transport's open answered). */
void	 client_transport_opened(struct tun *t, const struct conn *c);

/*
 * tun.c: the one start-up path of a standalone tunneld and a worker.
 * tun_init, then tun_start (standalone) or the embedder's own input, then
 * tun_run, then tun_free.
 */
/* Initialises t (zeroed first) on loop for o, which the caller owns and
 * keeps until tun_free: lists, magic, SIGINT/SIGTERM, and the listener
 * (server modes) or the retry timer (client modes) that tun_stop closes.
 * hooks (NULL: standalone) stays the caller's and must outlive t. */
void	 tun_init(struct tun *t, uv_loop_t *loop, struct cli_opts *o,
	    const struct tun_hooks *hooks);
/* Listens (server modes) or dials (client modes): 0, or -1 with err; the
 * caller then calls tun_stop(t, 1) and still runs the loop. */
int	 tun_start(struct tun *t, char *err);
/* Runs the loop until tun_stop closed every handle; closes the loop.
 * Returns the exit code tun_stop was given. */
int	 tun_run(struct tun *t);
/* Frees what t built (not t, not o). */
void	 tun_free(struct tun *t);
/* Starts an orderly stop with exit code code: handshakes, sessions,
 * listener and signals close, the embedder's stopping hook runs.
 * Idempotent (the first code wins). */
void	 tun_stop(struct tun *t, int code);
/* The hooks' callers, with a standalone tunneld's answer when unset:
 * nothing, nothing, 0, 0 (free to bind), -1 (no fd: bind), nothing, -1. */
void	 tun_session_ended(struct tun *t, const char *why);
void	 tun_authed(struct tun *t);
int	 tun_is_oneshot(const struct tun *t);
int	 tun_takeover(struct tun *t, const struct msg_fwdlist *eff,
	    char *err);
int	 tun_listener_take(struct tun *t, const char *src);
void	 tun_listeners_drop(struct tun *t);
/* -1 with err standalone: join points are a dispatcher's. */
int64_t	 tun_join_dial(struct tun *t, int64_t sid, uint32_t citi,
	    const char *name, char *err);

/* worker*.c (worker_int.h is theirs alone) */
struct worker_config {			/* what CTL_CONFIG names */
	char	sock_path[108];
	char	tenant[128];
	char	id[128];
	char	session[256];
	int	oneshot;
	int	idle_timeout;		/* s without traffic; 0: never */
};

/* "tunneld worker": serves the dispatcher on fd 3 until its tunnel ends;
 * returns the exit code (2 without fd 3). */
int	 worker_main(int argc, char **argv);
/* A worker forked by the zygote, already confined: its dispatcher runs as
 * ctl_uid (the only uid its control connections may have). */
int	 worker_run(uid_t ctl_uid);
/* "tunneld zygote": forks workers for the dispatcher; returns the exit
 * code. */
int	 zygote_main(int argc, char **argv);
/*
 * What a worker accepts from its dispatcher (ctlmsg_dispatch), in which
 * of a control channel's states: WS_IDLE (fd 3 before CONFIG, a pooled
 * worker), WS_READY (configured), WS_TAKEOVER (fd 3 while a takeover
 * waits for the dispatcher's answer).  A handler's ctx is the channel.
 */
#define WS_IDLE		0x1
#define WS_READY	0x2
#define WS_TAKEOVER	0x4
extern const struct ctlmsg_rule worker_rules[];
extern const size_t worker_nrules;
/* The zygote's: CTL_SPAWN in its one state, ZS_RUN. */
#define ZS_RUN		0x1
extern const struct ctlmsg_rule zygote_rules[];
extern const size_t zygote_nrules;

/*
 * Applies a decoded CONFIG to o (the worker's options) and wc.  Returns 0,
 * or -1 with err (a mode a worker does not run, a forward that does not
 * parse); o may then hold part of it and is freed by the caller.
 */
struct ctlmsg_config;
int	 worker_apply_config(const struct ctlmsg_config *c,
	    struct cli_opts *o, struct worker_config *wc, char *err);

#endif
