#ifndef CTLMSG_H
#define CTLMSG_H

/*
 * The contract between the dispatcher and its tunneld workers (and the
 * zygote that forks them): one C struct per control-message body, one
 * encoder and one decoder each, the bounds and defaults of every field
 * defined here and nowhere else, and one dispatch function that runs a
 * receiver's table of {type, states, handler}, as OpenSSH's monitor.c
 * does with its mon_table.
 *
 * On the wire each message is one JSON object, {"type": N, ...}, sent as
 * one SOCK_SEQPACKET message with at most one descriptor (ctl.h).  The
 * dispatcher and workers of one build agree; workers outlive a dispatcher
 * restart only for a dispatcher of the same build, so field names do not
 * change.  No code outside ctlmsg.c reads or writes that JSON.
 */

#include <stddef.h>
#include <stdint.h>

#include "err.h"

/* Requests are even, replies odd; values never change. */
enum ctl_type {
	CTL_CONFIG	= 2,	/* d->w: tunnel parameters (secrets) */
	CTL_READY	= 3,	/* w->d: listening; pid, socket path */
	CTL_CONN	= 4,	/* d->w: a client socket + bytes already read */
	CTL_CONN_OK	= 5,	/* w->d: taken */
	CTL_STATS_REQ	= 6,	/* d->w */
	CTL_STATS	= 7,	/* w->d: counters */
	CTL_STOP	= 8,	/* d->w: end the tunnel */
	CTL_END		= 9,	/* w->d: the worker is ending; reason */
	CTL_SPAWN	= 10,	/* d->zygote: fork a worker on this fd, as uid */
	CTL_SPAWNED	= 11,	/* zygote->d: its pid */
	CTL_EXITED	= 13,	/* zygote->d: a worker's pid and status */
	/* Takeover of a tunnel's listeners by its new worker: */
	CTL_TAKEOVER	= 14,	/* w->d: a new session needs "srcs" */
	CTL_TAKEOVER_DONE = 15,	/* d->w: after the listeners; "busy" why */
	CTL_RELEASE	= 16,	/* d->w: hand the listeners over and end */
	CTL_RELEASED	= 17,	/* w->d: after them; "ended" or "busy" */
	CTL_LISTENER	= 19,	/* both ways: a listening socket, its "src" */
	CTL_AUTHED	= 21,	/* w->d: a client authenticated (once) */
	CTL_KILL	= 22,	/* d->zygote: signal a worker it forked */
	/* A stream to a join point of the worker's tenant (joinpt.h): */
	CTL_JOIN	= 24,	/* w->d: connect me to "name"; "ref" */
	CTL_JOINED	= 25	/* d->w: the connected socket, or "error" */
};

/* Bounds: a longer string or a value out of range fails the decoding. */
#define CTLMSG_MODE_LEN		16	/* "r-wsserver" */
#define CTLMSG_ID_LEN		128	/* tenant, tunnel id */
#define CTLMSG_SECRET_LEN	256	/* pass, encPass */
#define CTLMSG_SESSION_LEN	256
#define CTLMSG_SOCK_LEN		108	/* sun_path */
#define CTLMSG_FWD_LEN		512
#define CTLMSG_MAX_FWDS		64
#define CTLMSG_SRC_LEN		272	/* host:port of a listener */
#define CTLMSG_MAX_SRCS		64
#define CTLMSG_REASON_LEN	ERR_LEN
#define CTLMSG_EXTRA_MAX	48000	/* base64 of it fits in CTL_MSG_MAX */
#define CTLMSG_MAX_DESTS	64	/* destination patterns (destpat.h) */
#define CTLMSG_DEST_LEN		272
#define CTLMSG_REMOTE_LEN	64	/* a client's address */

/* CONFIG's numbers: range and the default when the field is absent. */
#define CTLMSG_IDLE_MIN		0	/* idleTimeout, s; 0: never */
#define CTLMSG_IDLE_MAX		2592000
#define CTLMSG_IDLE_DEF		600
#define CTLMSG_KEEPALIVE_MIN	2	/* keepalive, s (kptunnel -int) */
#define CTLMSG_KEEPALIVE_MAX	3600
#define CTLMSG_KEEPALIVE_DEF	20
#define CTLMSG_HS_MIN		1	/* handshakeTimeout, s */
#define CTLMSG_HS_MAX		3600
#define CTLMSG_HS_DEF		10
#define CTLMSG_ENC_MIN		(-1)	/* encCount: -1 all, 0 none, N */
#define CTLMSG_ENC_MAX		2147483647
#define CTLMSG_ENC_DEF		(-1)
/*
 * The per-tenant limits getTunnelInfo may set (struct ctlmsg_limits);
 * 0 is unlimited, the default of each but sessionTimeout.  Directions are
 * the tenant's: up is what its client sends (the worker reads it from the
 * websocket), down what it receives (the worker reads it from its local
 * sockets).
 */
#define CTLMSG_STREAMS_MAX	8192	/* maxStreams (TUN_MAX_CITIS) */
#define CTLMSG_RATE_MAX		(1LL << 40)	/* rateUp, rateDown: B/s */
#define CTLMSG_BYTES_MAX	(1LL << 60)	/* maxBytes, both ways */
#define CTLMSG_CONNRATE_MAX	100000	/* maxConnectRate: streams/s */
#define CTLMSG_SESSTO_MIN	1	/* sessionTimeout, s (detached) */
#define CTLMSG_SESSTO_MAX	2592000
#define CTLMSG_SESSTO_DEF	600

struct ctlmsg_limits {
	int	 max_streams;		/* concurrent streams */
	int64_t	 rate_up;		/* bytes/s the client sends */
	int64_t	 rate_down;		/* bytes/s the client receives */
	int64_t	 max_bytes;		/* per session, both ways together */
	int	 max_connect_rate;	/* new streams/s (burst: as many) */
	int	 session_timeout;	/* s a detached session waits */
};

/* CTL_CONFIG.  pass and encpass are secrets: ctlmsg_clear() wipes them. */
struct ctlmsg_config {
	char	 mode[CTLMSG_MODE_LEN];		/* required */
	char	 pass[CTLMSG_SECRET_LEN];	/* required */
	char	 encpass[CTLMSG_SECRET_LEN];	/* required */
	int	 enc_count;
	char	 forwards[CTLMSG_MAX_FWDS][CTLMSG_FWD_LEN];
	size_t	 nfwd;
	int	 oneshot;	/* connectMode "OneShot" (else "CanReconnect") */
	int	 idle_timeout;
	int	 keepalive;
	char	 tenant[CTLMSG_ID_LEN];
	char	 id[CTLMSG_ID_LEN];
	char	 session[CTLMSG_SESSION_LEN];
	char	 sock[CTLMSG_SOCK_LEN];		/* required, not empty */
	int	 verbose;
	int	 handshake_timeout;
	struct ctlmsg_limits limits;
	/* What the worker dials for a client's dynamic forwards (SOCKS5,
	 * transparent): destination patterns, checked by the worker. */
	char	 dests[CTLMSG_MAX_DESTS][CTLMSG_DEST_LEN];
	size_t	 ndest;
};

struct ctlmsg_ready {			/* CTL_READY */
	int64_t	 pid;			/* required, >= 1 */
	char	 sock[CTLMSG_SOCK_LEN];
};

struct ctlmsg_conn {			/* CTL_CONN, with the client's fd */
	uint8_t	*extra;			/* owned; NULL when nextra is 0 */
	size_t	 nextra;		/* <= CTLMSG_EXTRA_MAX */
	/* Set: the fd is a relay of one request of the HTTP transport, not
	 * an upgraded socket; its client is remote (for logs). */
	int	 http;
	char	 remote[CTLMSG_REMOTE_LEN];
};

struct ctlmsg_stats {			/* CTL_STATS */
	int64_t	 pid;			/* required, >= 1 */
	char	 tenant[CTLMSG_ID_LEN];
	char	 id[CTLMSG_ID_LEN];
	char	 session[CTLMSG_SESSION_LEN];
	char	 mode[CTLMSG_MODE_LEN];
	int64_t	 started;		/* time_t */
	int64_t	 bytes_in, bytes_out, streams, reconnects, sessions;
	int	 connected;
	int	 authed;		/* absent: 1 (older workers) */
	struct ctlmsg_limits limits;	/* as configured */
	int64_t	 rate_up_now;		/* B/s over the last second */
	int64_t	 rate_down_now;
	int64_t	 refused_streams;	/* by maxStreams, maxConnectRate */
	int64_t	 payload;		/* stream bytes, as maxBytes counts */
};

struct ctlmsg_reason {			/* CTL_END, CTL_TAKEOVER_DONE */
	char	 text[CTLMSG_REASON_LEN];	/* END: "reason", default
						 * "ended"; TAKEOVER_DONE:
						 * "busy", "" if absent */
};

/*
 * CTL_SPAWN: who the forked worker becomes and how it is confined.  uid
 * and gid -1: it keeps the zygote's (a dispatcher not run as root); the
 * zygote refuses uid or gid 0 (workers never run as root).
 */
#define CTLMSG_NOFILE_MIN	64	/* max_files, RLIMIT_NOFILE */
#define CTLMSG_NOFILE_MAX	1048576
#define CTLMSG_NOFILE_DEF	4096
#define CTLMSG_NPROC_MAX	16	/* threads: libuv's pool of 4 + main */

struct ctlmsg_spawn {
	int64_t	 uid;			/* -1 (default): unchanged */
	int64_t	 gid;			/* -1 (default): unchanged */
	int	 max_files;		/* CTLMSG_NOFILE_DEF */
	int	 sandbox;		/* default 1: rlimits, seccomp, Landlock */
	int	 nproc;			/* 1: RLIMIT_NPROC (own uid only) */
};

struct ctlmsg_spawned {			/* CTL_SPAWNED */
	int64_t	 pid;			/* required; -1: fork failed */
};

struct ctlmsg_exited {			/* CTL_EXITED */
	int64_t	 pid;			/* required, >= 1 */
	int	 code;			/* exit status, -1 if signalled */
	int	 signal;		/* 0 if exited */
};

/*
 * CTL_KILL: a dispatcher that gave up root (-user) cannot signal workers
 * of other uids; the zygote, their parent, does it for a child it has not
 * reaped yet, and only with these two signals.  No answer: the worker's
 * end comes back as CTL_EXITED.
 */
#define CTLMSG_KILL_SIG_DEF	9	/* SIGKILL; the other allowed: 15 */

struct ctlmsg_kill {
	int64_t	 pid;			/* required, >= 2 */
	int	 signal;		/* SIGKILL (default) or SIGTERM */
};

struct ctlmsg_srcs {			/* CTL_TAKEOVER, CTL_RELEASE */
	char	 src[CTLMSG_MAX_SRCS][CTLMSG_SRC_LEN];
	size_t	 n;
};

struct ctlmsg_released {		/* CTL_RELEASED */
	int	 ended;
	char	 busy[CTLMSG_REASON_LEN];	/* "" if absent */
	int	 listeners;
};

struct ctlmsg_listener {		/* CTL_LISTENER, with its fd */
	char	 src[CTLMSG_SRC_LEN];	/* required */
};

/*
 * CTL_JOIN asks the dispatcher for a stream to a join point of the
 * worker's own tenant: the tenant is the dispatcher's record of the
 * worker, never a field.  CTL_JOINED answers with the same ref: the
 * connected socket, or no descriptor and the reason.
 */
#define CTLMSG_JOIN_NAME_LEN	33	/* JOINPT_NAME_MAX + 1 */

struct ctlmsg_join {			/* CTL_JOIN */
	char	 name[CTLMSG_JOIN_NAME_LEN];	/* required, joinpt rule */
	int64_t	 ref;			/* required, >= 1 */
};

struct ctlmsg_joined {			/* CTL_JOINED, with its fd or not */
	int64_t	 ref;			/* required, >= 1 */
	char	 error[CTLMSG_REASON_LEN];	/* "" when connected */
};

/* One message; u holds the body of type (none for the empty ones). */
struct ctlmsg {
	int	 type;
	union {
		struct ctlmsg_config	config;
		struct ctlmsg_ready	ready;
		struct ctlmsg_conn	conn;
		struct ctlmsg_stats	stats;
		struct ctlmsg_reason	end;
		struct ctlmsg_spawn	spawn;
		struct ctlmsg_spawned	spawned;
		struct ctlmsg_exited	exited;
		struct ctlmsg_srcs	takeover;
		struct ctlmsg_reason	takeover_done;
		struct ctlmsg_srcs	release;
		struct ctlmsg_released	released;
		struct ctlmsg_listener	listener;
		struct ctlmsg_kill	kill;
		struct ctlmsg_join	join;
		struct ctlmsg_joined	joined;
	} u;
};

/* Name of a type, for logs; "unknown" otherwise. */
const char	*ctlmsg_name(int type);

/*
 * Makes *m an empty message of type with every field at its default.
 * Returns 0, or -1 if type is not one of enum ctl_type.
 */
int	 ctlmsg_init(struct ctlmsg *m, int type);

/* Frees what m owns and wipes it (CONFIG's secrets); m stays valid. */
void	 ctlmsg_clear(struct ctlmsg *m);

/*
 * Encodes m into buf (cap bytes; CTL_MSG_MAX is always enough for a
 * message within the bounds above).  Returns its length, or -1 with err
 * when a field is out of its bounds or it does not fit.  buf may hold
 * secrets: the caller wipes it.
 */
int	 ctlmsg_encode(const struct ctlmsg *m, char *buf, size_t cap,
	    char *err);

/*
 * Decodes n bytes into *m, checking every field against its bounds.
 * Returns 0, or -1 with err (unknown type, not JSON, a required field
 * missing, a field of the wrong type, out of range or too long); *m is
 * then cleared.  On success the caller ctlmsg_clear()s m.
 */
int	 ctlmsg_decode(const void *buf, size_t n, struct ctlmsg *m, char *err);

/* Encodes and sends m with fd (-1: none) as ctl_send does.  0 or -1. */
int	 ctlmsg_send(int sock, const struct ctlmsg *m, int fd, int timeout_ms,
	    char *err);

/* Sends a message of an empty body (or the defaults of its fields). */
int	 ctlmsg_send_type(int sock, int type, int timeout_ms, char *err);

/*
 * Receives and decodes one message: returns 1 (*m to ctlmsg_clear, *fd
 * the descriptor or -1), 0 on EOF, -2 if nothing is there yet, -1 with err
 * if it is malformed (no descriptor is left open).
 */
int	 ctlmsg_recv(int sock, struct ctlmsg *m, int *fd, char *err);

/*
 * A receiver's table: the types it accepts, in which of its states (a
 * bit mask of the receiver's own state bits), and the handler.  A
 * handler takes over *fd by setting it to -1 (ctlmsg_dispatch closes it
 * otherwise) and returns CTLMSG_OK to read on, CTLMSG_STOP when the
 * channel must not be read any more (it ended or changed hands), or
 * CTLMSG_REFUSED with err when the message does not make sense after all.
 */
#define CTLMSG_REFUSED	(-1)
#define CTLMSG_OK	1
#define CTLMSG_STOP	2

struct ctlmsg_rule {
	int		 type;
	unsigned	 states;
	int		(*fn)(void *ctx, struct ctlmsg *m, int *fd, char *err);
};

/*
 * Runs m's handler from tab (n rules) in state.  Returns the handler's
 * result, or CTLMSG_REFUSED with err if m's type is not in tab or not
 * permitted in state.  fd is closed unless the handler took it.
 */
int	 ctlmsg_dispatch(const struct ctlmsg_rule *tab, size_t n,
	    unsigned state, void *ctx, struct ctlmsg *m, int fd, char *err);

/*
 * The one read step of every receiver: receives a message on sock and
 * dispatches it.  Returns ctlmsg_dispatch's result, -2 if nothing is
 * there yet, 0 on EOF, CTLMSG_REFUSED with err (malformed, undecodable,
 * unexpected or refused).  The one rule for a refusal: the caller logs
 * err and closes the channel (the dispatcher: it treats that worker as
 * broken).
 */
int	 ctlmsg_serve(int sock, const struct ctlmsg_rule *tab, size_t n,
	    unsigned state, void *ctx, char *err);

#endif
