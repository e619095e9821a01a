#ifndef WORKER_INT_H
#define WORKER_INT_H

/*
 * What the worker's files (worker.c, worker_chan.c, worker_ctl.c,
 * worker_lsn.c, worker_idle.c) share, and only they: the worker, its
 * control channels, and the functions one file calls in another.
 */

#include <stdint.h>
#include <time.h>

#include <uv.h>

#include "ctlmsg.h"
#include "err.h"
#include "tunneld.h"

#define WORKER_CTL_FD		3
#define WORKER_MAX_CHANNELS	16
#define WORKER_IDLE_MS		30000	/* without any client at all */
#define WORKER_TAKEOVER_MS	3000	/* the dispatcher's takeover answer */
#define WORKER_NRULES		8
#define WORKER_SPAWN_MS		5000	/* an exec'd worker's CTL_SPAWN */
/*
 * Join dials: at most WORKER_JOIN_WINDOW asked and not answered, which the
 * control socket's buffers hold both ways (so that neither side ever has
 * to drop one); the others wait their turn, up to WORKER_JOIN_MAX (a
 * browser opens dozens of streams at once).
 */
#define WORKER_JOIN_WINDOW	64
#define WORKER_JOIN_MAX		8192
#define WORKER_JOIN_MS		5000	/* the dispatcher's answer to one */

/* One control channel: fd 3, or a connection to the worker's socket. */
struct channel {
	uv_poll_t	 poll;
	int		 fd;
	int		 configured;	/* fd 3 only: CONFIG accepted once */
	uint64_t	 seq;		/* opened after those of lower seq */
	struct worker	*w;
};

/* A join dial waiting for the dispatcher's CTL_JOINED (worker_join.c). */
struct worker_join {
	int64_t		 ref;
	int64_t		 sid;		/* the session, by id */
	uint32_t	 citi;
	int		 asked;		/* CTL_JOIN sent */
	uint64_t	 deadline;	/* ms, loop time */
	char		 name[CTLMSG_JOIN_NAME_LEN];
};

struct worker {
	struct tun	 tun;
	struct tun_hooks hooks;		/* tun.hooks */
	struct cli_opts	 opts;
	struct worker_config cfg;
	int		 lfd;
	uid_t		 ctl_uid;	/* the dispatcher's: its connections */
	uv_poll_t	 lpoll;
	struct channel	*ch[WORKER_MAX_CHANNELS];
	uint64_t	 chan_seq;	/* the last channel's seq */
	time_t		 started;
	int		 had_session;
	int		 authed;	/* a client authenticated once */
	char		 end_reason[ERR_LEN];
	uv_timer_t	 idle;
	uint64_t	 idle_since;
	/* idleTimeout: traffic counters at the last change, and its time */
	uint64_t	 traffic_mark;
	uint64_t	 traffic_at;
	/* worker_takeover()'s answer */
	int		 tk_done;
	char		 tk_busy[CTLMSG_REASON_LEN];
	/* listening sockets handed over from the worker this one replaces */
	int		 lst_fd[MSG_MAX_FWDS];
	char		 lst_src[MSG_MAX_FWDS][ADDR_NAME_MAX + 16];
	int		 nlst;
	/* join dials waiting for the dispatcher, oldest first (grown as
	 * needed: most workers never dial one) */
	struct worker_join *joins;
	size_t		 njoins, joins_cap;
	size_t		 joins_asked;	/* of them, CTL_JOIN sent */
	int64_t		 join_next;	/* the last ref given */
	uv_timer_t	 join_timer;
};

/* worker.c */
/* The worker whose tunnel calls a hook (hooks.arg). */
struct worker	*worker_of(const struct tun *t);

/* worker_chan.c */
/* Logs a contract breach of the dispatcher; the caller closes c. */
void	 worker_refused(const char *why);
/*
 * Serves fd (now owned by w) as a control channel, configured or not
 * (WS_READY or WS_IDLE).  Returns 0, or -1 with fd closed (no room).
 */
int	 worker_channel_add(struct worker *w, int fd, int configured);
/* Stops serving c; its fd and memory go in the close callback. */
void	 worker_channel_close(struct channel *c);
/* Replies on c; a failure is logged, the channel stays. */
void	 worker_reply(struct channel *c, const struct ctlmsg *m);
void	 worker_reply_type(struct channel *c, int type);
/*
 * Serves the worker's unix socket: fd, a unix socket the dispatcher bound
 * in its state directory (CONFIG's descriptor), on which the worker calls
 * listen() (so that SO_PEERCRED names the worker); fd -1: binds
 * w->cfg.sock_path itself.  Returns 0 (fd is then the worker's), or -1
 * with err.
 */
int	 worker_listen(struct worker *w, int fd, char *err);

/* worker_lsn.c: the tun_hooks of the listener hand-over, and the
 * handlers of its messages (worker_rules). */
int	 worker_listener_take(struct tun *t, const char *src);
void	 worker_listeners_drop(struct tun *t);
int	 worker_takeover(struct tun *t, const struct msg_fwdlist *eff,
	    char *err);
int	 worker_on_release(void *ctx, struct ctlmsg *m, int *fdp, char *err);
int	 worker_on_listener(void *ctx, struct ctlmsg *m, int *fdp, char *err);
int	 worker_on_takeover_done(void *ctx, struct ctlmsg *m, int *fdp,
	    char *err);

/* worker_join.c: the tun_hooks of join dials, the handler of their
 * answers (worker_rules), the timer worker_main sets up. */
int64_t	 worker_join_dial(struct tun *t, int64_t sid, uint32_t citi,
	    const char *name, char *err);
int	 worker_on_joined(void *ctx, struct ctlmsg *m, int *fdp, char *err);
void	 worker_join_init(struct worker *w);
void	 worker_join_close(struct worker *w);

/* worker_idle.c */
/* Starts the idle timer (w->idle, initialised by worker_main) afresh. */
void	 worker_idle_start(struct worker *w);

#endif
