#ifndef FRONT_H
#define FRONT_H

/*
 * The public port's own modules, internal to it (disp.h has what the rest
 * of the dispatcher calls): front.c runs the libmicrohttpd daemon,
 * admit.c takes a request through admission, reply.c answers (at once or
 * after the refusal delay), iplimit.c counts requests per address
 * (-perIp), fhead.c bounds incomplete request heads (-headPerIp,
 * -headTimeout) and srate.c new workers per address (-spawnRate).
 *
 * Threads: everything here runs on libmicrohttpd's pool threads, except
 * what says "loop thread"; the tables are shared under disp.lock, which
 * each function takes itself unless it says "under d->lock".
 */

#include <sys/socket.h>
#include <sys/queue.h>

#include <stdint.h>

#include <microhttpd.h>

#include "disp.h"
#include "httpt.h"

/*
 * One request of the public port, libmicrohttpd's req_cls: allocated at
 * its first call to front_access(), freed when it completes.
 */
struct freq {
	struct disp	*d;
	int		 counted;	/* holds a -perIp slot */
	int		 status;	/* != 0: refused, waiting out the delay */
	char		 body[1024];	/* the refusal's body */
	int		 unknown;	/* the refusal is reply_unknown_session's */
	struct dworker	*w;		/* hand-over target (+ref) */
	enum disp_route	 route;		/* ... a new worker, or its session's */
	uint64_t	 t0_us;		/* its head complete (disp_now_us) */
	char		 remote[64];
	struct hrelay	*relay;		/* a request of the HTTP transport */
	int		 relay_refused;	/* its body is not collected */
	int		 ht_unknown;	/* the refusal: no such transport */
};

/* Requests in progress (-perIp) or incomplete heads (-headPerIp) of one
 * address. */
struct ipslot {
	struct ipslot	*next;
	int		 n;
	char		 ip[64];
};

/* New workers started for one address (-spawnRate): a token bucket. */
struct rateslot {
	struct rateslot	*next;
	uint64_t	 at;		/* ms of the last refill */
	uint64_t	 mtokens;	/* thousandths of a spawn */
	char		 ip[64];
};

/* A public connection whose request head is not complete yet. */
struct fconn {
	TAILQ_ENTRY(fconn) link;	/* d->heads, by deadline */
	int		 listed;	/* in d->heads */
	int		 counted;	/* in d->headslots */
	int		 fd;		/* our dup, to shut it down */
	uint64_t	 deadline;	/* ms, CLOCK_MONOTONIC */
	char		 ip[64];	/* iplimit_key() */
};

/* A request waiting out the refusal delay. */
struct delayed {
	TAILQ_ENTRY(delayed) link;
	struct MHD_Connection *conn;
	uint64_t	 due;		/* ms, CLOCK_MONOTONIC */
};

/*
 * admit.c: admission.  admit_request() takes a request whose head is
 * complete through path and -ip, headers, canAccept (and ?reqinfo), the
 * websocket checks, then to the worker of a known session or, for a new
 * one, -spawnRate, getTunnelInfo and a new worker.  It returns what to give
 * libmicrohttpd: MHD_YES once a response is queued (or the connection
 * suspended for a delayed refusal), MHD_NO to close the connection.  On
 * an upgrade r->w holds the target worker (+ref, dropped by
 * front_completed()).
 */
enum MHD_Result admit_request(struct MHD_Connection *c, struct freq *r,
	    const char *url, const char *method);
/* c's client address as text into out ("?" if unknown) and, for AF_INET
 * or AF_INET6, as a sockaddr into ss (zeroed otherwise). */
void	 admit_remote(struct MHD_Connection *c, char *out, size_t cap,
	    struct sockaddr_storage *ss);

/*
 * reply.c: answers.  reply_now() queues status and body (copied), with
 * "Connection: close", and counts it in the admission metrics: MHD_YES,
 * or MHD_NO if no response could be made (the connection closes).
 */
enum MHD_Result reply_now(struct MHD_Connection *c, struct disp *d,
	    int status, const char *body);
/*
 * The answer to a Reconnect or Disconnect of a session no worker here
 * holds: 404 "unknown session" after -refuseDelay, marked with wsup.h's
 * WSUP_SESSION_HDR so that a client tells it from another 404 (a
 * policy's, a proxy's) and, once it lasts, knows its session is gone.
 */
enum MHD_Result reply_unknown_session(struct MHD_Connection *c,
	    struct freq *r);
/* The answer r kept while its connection waited out the delay. */
enum MHD_Result reply_delayed(struct MHD_Connection *c, struct freq *r);
/* Counts status in d->m.admissions (an upgrade counts 101). */
void	 reply_count(struct disp *d, int status);
/*
 * Answers status and body after -refuseDelay, with c suspended so that no
 * pool thread sleeps: MHD_YES.  r keeps the answer, which front_access()
 * gives once reply_tick() resumed c.  Without a delay (or memory) it
 * answers at once, as reply_now().
 */
enum MHD_Result reply_later(struct MHD_Connection *c, struct freq *r,
	    int status, const char *body);
/* Loop thread: resumes the refused requests whose delay is over at now. */
void	 reply_tick(struct disp *d, uint64_t now);
/* Resumes every waiting request, as libmicrohttpd requires before its
 * daemon stops; they then get their answer at once. */
void	 reply_resume_all(struct disp *d);

/*
 * iplimit.c: per-address tables.  Keys are iplimit_key()'s text.
 * iplimit_slot: under d->lock, the slot of ip in tab, created (n = 0) when
 * create and memory allows; NULL if none.
 */
struct ipslot *iplimit_slot(struct ipslot **tab, const char *ip, int create);
/* Under d->lock: one less for ip in tab; a slot at 0 is freed. */
void	 iplimit_slot_put(struct ipslot **tab, const char *ip);
/* Frees every slot of tab (the daemon stopped). */
void	 iplimit_slots_free(struct ipslot **tab);
/* The unit of the per-address limits as text (see peerkey.h); sa may be
 * NULL. */
void	 iplimit_key(const struct sockaddr *sa, char *out, size_t cap);
/*
 * -perIp: counts a request in progress for r's address (r->remote) and
 * sets r->counted: 1, or 0 if the address already has -perIp of them.
 */
int	 iplimit_take(struct disp *d, struct freq *r);
/* Gives r's count back, once: a no-op if r holds none. */
void	 iplimit_release(struct disp *d, struct freq *r);

/*
 * fhead.c: incomplete request heads.  fhead_accept is libmicrohttpd's
 * accept policy: MHD_NO (closed at once) for an address with -headPerIp
 * incomplete heads, else MHD_YES.
 */
enum MHD_Result fhead_accept(void *cls, const struct sockaddr *sa,
	    socklen_t len);
/* libmicrohttpd's connection notifier: a new connection is counted for
 * its address and given its -headTimeout deadline (its socket context, a
 * struct fconn, freed when it closes). */
void	 fhead_notify(void *cls, struct MHD_Connection *c,
	    void **socket_context, enum MHD_ConnectionNotificationCode toe);
/* c's request head is complete: off the count and the deadline list. */
void	 fhead_done(struct disp *d, struct MHD_Connection *c);
/* Loop thread: shuts down the connections past their deadline at now. */
void	 fhead_sweep(struct disp *d, uint64_t now);

/*
 * hrelay.c: requests of the HTTP transport, relayed to their worker.
 * hrelay_kind: the ht= of c's query (HTTPT_NONE: none).
 */
enum httpt_kind hrelay_kind(struct MHD_Connection *c);
/* A push without a Content-Length, or one above HTTPT_BODY_MAX: refused
 * before its body is read. */
int	 hrelay_too_long(struct MHD_Connection *c);
/* A body arrives: a push's (Content-Length within bounds) is collected
 * into r->relay from now on, anything else dropped. */
void	 hrelay_begin(struct MHD_Connection *c, struct freq *r);
void	 hrelay_body(struct freq *r, const char *data, size_t n);
/* Admitted for worker r->w: relayed, with c suspended until the answer
 * (MHD_YES), or refused at once. */
enum MHD_Result hrelay_start(struct MHD_Connection *c, struct freq *r,
	    const char *method);
/* 1 once r's relay started: the next call answers (hrelay_answer). */
int	 hrelay_started(const struct freq *r);
enum MHD_Result hrelay_answer(struct MHD_Connection *c, struct freq *r);
/* The request is over: its part of the relay goes. */
void	 hrelay_release(struct freq *r);

/*
 * srate.c: -spawnRate.  srate_take takes one token from the bucket of
 * ss's address (-spawnRate a second, -spawnBurst at most) and writes the
 * bucket's key into ip (64 bytes), for srate_refund(): 1, or 0 if the
 * bucket is empty or DISP_RATE_SLOTS addresses are tracked already.
 */
int	 srate_take(struct disp *d, const struct sockaddr_storage *ss,
	    char *ip);
/* Loop thread: forgets the addresses whose bucket is full again at now. */
void	 srate_sweep(struct disp *d, uint64_t now);
/* Frees every bucket (the daemon stopped). */
void	 srate_free(struct disp *d);

#endif
