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
#define WORKER_NRULES		7
#define WORKER_SPAWN_MS		5000	/* an exec'd worker's CTL_SPAWN */

/* One control channel: fd 3, or a connection to the worker's socket. */
struct channel {
	uv_poll_t	 poll;
	int		 fd;
	int		 configured;	/* fd 3 only: CONFIG accepted once */
	struct worker	*w;
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

/* worker_idle.c */
/* Starts the idle timer (w->idle, initialised by worker_main) afresh. */
void	 worker_idle_start(struct worker *w);

#endif
