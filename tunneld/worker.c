/*
 * tunneld worker: one tenant's tunnel server, started by the dispatcher.
 * It gets its parameters over the control socket on fd 3 (never argv or the
 * environment), then upgraded client sockets with CTL_CONN, on fd 3 or on a
 * unix socket in the dispatcher's state directory through which a restarted
 * dispatcher finds it again.  Unlike relayd's children, a worker outlives
 * its dispatcher: it ends when its session does, or on CTL_STOP.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "crypto.h"
#include "ctl.h"
#include "ctlmsg.h"
#include "err.h"
#include "log.h"
#include "tunneld.h"

#define WORKER_CTL_FD		3
#define WORKER_MAX_CHANNELS	16
#define WORKER_IDLE_MS		30000	/* without any client at all */
#define WORKER_TAKEOVER_MS	3000	/* the dispatcher's takeover answer */

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
	int		 dir_fd;	/* the state directory, or -1 */
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

static void	worker_channel_cb(uv_poll_t *, int, int);
static void	worker_idle_cb(uv_timer_t *);
#define WORKER_NRULES	7

/* The worker whose tunnel calls a hook: set by worker_main (hooks.arg). */
static struct worker *
worker_of(const struct tun *t)
{
	return t->hooks->arg;
}

/* The dispatcher broke the contract: the caller closes the channel. */
static void
worker_refused(const char *why)
{
	log_warnx("dispatcher: %s, closing the control channel", why);
}

static void
worker_channel_closed(uv_handle_t *h)
{
	struct channel *c = h->data;

	close(c->fd);
	free(c);
}

static void
worker_channel_close(struct channel *c)
{
	size_t i;

	for (i = 0; i < WORKER_MAX_CHANNELS; i++)
		if (c->w->ch[i] == c)
			c->w->ch[i] = NULL;
	uv_poll_stop(&c->poll);
	uv_close((uv_handle_t *)&c->poll, worker_channel_closed);
}

static int
worker_channel_add(struct worker *w, int fd, int configured)
{
	struct channel	*c;
	size_t		 i;

	for (i = 0; i < WORKER_MAX_CHANNELS && w->ch[i] != NULL; i++)
		;
	if (i == WORKER_MAX_CHANNELS || (c = calloc(1, sizeof(*c))) == NULL) {
		close(fd);
		return -1;
	}
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	c->fd = fd;
	c->w = w;
	c->configured = configured;
	uv_poll_init(w->tun.loop, &c->poll, fd);
	c->poll.data = c;
	uv_poll_start(&c->poll, UV_READABLE, worker_channel_cb);
	w->ch[i] = c;
	return 0;
}

static void
worker_reply(struct channel *c, const struct ctlmsg *m)
{
	char err[ERR_LEN];

	if (ctlmsg_send(c->fd, m, -1, 1000, err) == -1)
		log_warnx("control reply: %s", err);
}

static void
worker_reply_type(struct channel *c, int type)
{
	char err[ERR_LEN];

	if (ctlmsg_send_type(c->fd, type, 1000, err) == -1)
		log_warnx("control reply: %s", err);
}

static void
worker_stats(struct worker *w, struct ctlmsg_stats *st)
{
	struct sess *s;

	st->pid = getpid();
	snprintf(st->tenant, sizeof(st->tenant), "%s", w->cfg.tenant);
	snprintf(st->id, sizeof(st->id), "%s", w->cfg.id);
	snprintf(st->session, sizeof(st->session), "%s", w->cfg.session);
	snprintf(st->mode, sizeof(st->mode), "%s",
	    cli_mode_name(w->opts.mode));
	st->started = w->started;
	st->authed = w->authed;
	TAILQ_FOREACH(s, &w->tun.sessions, link) {
		st->bytes_in += s->bytes_in;
		st->bytes_out += s->bytes_out;
		st->streams += mux_count(s);
		st->reconnects += s->reconnects;
		st->connected |= s->x != NULL;
		st->sessions++;
	}
}

/*
 * Parameters from the dispatcher (CTL_CONFIG, already checked against the
 * contract's bounds), checked like a command line.  o must hold the
 * defaults; pass and encpass are replaced.  Returns 0, or -1 with err.
 */
int
worker_apply_config(const struct ctlmsg_config *c, struct cli_opts *o,
    struct worker_config *wc, char *err)
{
	size_t	i;
	int	k, found = 0;

	for (k = MODE_WSSERVER; k <= MODE_R_SERVER; k++)
		if (strcmp(c->mode, cli_mode_name(k)) == 0) {
			o->mode = k;
			found = 1;
		}
	if (!found) {
		err_set(err, "config: mode '%s' is not a server mode",
		    c->mode);
		return -1;
	}
	free(o->pass);
	free(o->encpass);
	if ((o->pass = strdup(c->pass)) == NULL ||
	    (o->encpass = strdup(c->encpass)) == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	o->enc_count = c->enc_count;
	o->interval = c->keepalive;
	o->handshake_timeout = c->handshake_timeout;
	o->verbose |= c->verbose;
	wc->oneshot = c->oneshot;
	wc->idle_timeout = c->idle_timeout;
	snprintf(wc->tenant, sizeof(wc->tenant), "%s", c->tenant);
	snprintf(wc->id, sizeof(wc->id), "%s", c->id);
	snprintf(wc->session, sizeof(wc->session), "%s", c->session);
	snprintf(wc->sock_path, sizeof(wc->sock_path), "%s", c->sock);
	o->fwds.n = 0;
	for (i = 0; i < c->nfwd && i < MSG_MAX_FWDS; i++) {
		if (fwd_parse(c->forwards[i], cli_mode_is_reverse(o->mode),
		    &o->fwds.fwds[o->fwds.n], err) == -1)
			return -1;
		o->fwds.n++;
	}
	return 0;
}

static void
worker_accept_cb(uv_poll_t *p, int status, int events)
{
	struct worker	*w = p->data;
	int		 fd;

	if (status < 0)
		return;
	while ((fd = accept4(w->lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0) {
		char err[ERR_LEN];

		/* Only our dispatcher (our uid) may hand us clients or
		 * stop us: the directory is its, but check the peer too. */
		if (ctl_check_peer(fd, geteuid(), err) == -1) {
			log_warnx("control connection refused: %s", err);
			close(fd);
			continue;
		}
		worker_channel_add(w, fd, 1);
	}
}

static int
worker_listen(struct worker *w, char *err)
{
	struct sockaddr_un	sun;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", w->cfg.sock_path);
	w->lfd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK,
	    0);
	if (w->lfd == -1) {
		err_set(err, "socket: %s", strerror(errno));
		return -1;
	}
	/* The dispatcher picked the name for us: a leftover is stale. */
	unlink(sun.sun_path);
	if (bind(w->lfd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    chmod(sun.sun_path, 0600) == -1 || listen(w->lfd, 16) == -1) {
		err_set(err, "%s: %s", sun.sun_path, strerror(errno));
		close(w->lfd);
		w->lfd = -1;
		return -1;
	}
	uv_poll_init(w->tun.loop, &w->lpoll, w->lfd);
	w->lpoll.data = w;
	uv_poll_start(&w->lpoll, UV_READABLE, worker_accept_cb);
	return 0;
}

/*
 * The dispatcher attaches its checked state directory to CTL_CONFIG: the
 * socket is bound in that directory (through /proc/self/fd), never in
 * whatever the path names by now.  Without one the path is used as is.
 */
static int
worker_sock_in_dir(struct worker *w, int dfd, char *err)
{
	char name[sizeof(w->cfg.sock_path)];

	if (dfd < 0)
		return 0;
	snprintf(name, sizeof(name), "%s", w->cfg.sock_path);
	if (strchr(name, '/') != NULL || name[0] == '.' ||
	    (size_t)snprintf(w->cfg.sock_path, sizeof(w->cfg.sock_path),
	    "/proc/self/fd/%d/%s", dfd, name) >= sizeof(w->cfg.sock_path)) {
		err_set(err, "config: bad socket name");
		return -1;
	}
	w->dir_fd = dfd;
	return 0;
}

static void
worker_take_conn(struct worker *w, struct channel *c,
    const struct ctlmsg_conn *m, int fd)
{
	uv_tcp_t	*tcp;
	struct conn	*conn;
	char		 err[ERR_LEN];

	if ((tcp = malloc(sizeof(*tcp))) == NULL) {
		close(fd);
		return;
	}
	uv_tcp_init(w->tun.loop, tcp);
	if (uv_tcp_open(tcp, fd) != 0) {
		close(fd);
		uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
		return;
	}
	conn = conn_adopt(w->tun.loop, tcp, m->extra, m->nextra, err);
	worker_reply_type(c, CTL_CONN_OK);
	if (conn == NULL) {
		log_warnx("control: %s", err);
		return;
	}
	log_info("%s: connection handed over", conn_peer(conn));
	hs_start(&w->tun, conn);
}

/* Keeps a listening socket handed over by the dispatcher (CTL_LISTENER). */
static void
worker_listener_keep(struct worker *w, const char *src, int fd)
{
	if (w->nlst == MSG_MAX_FWDS) {
		close(fd);
		return;
	}
	snprintf(w->lst_src[w->nlst], sizeof(w->lst_src[0]), "%s", src);
	w->lst_fd[w->nlst++] = fd;
}

static int
worker_listener_take(struct tun *t, const char *src)
{
	struct worker	*w = worker_of(t);
	int		 i, fd;

	for (i = 0; i < w->nlst; i++)
		if (strcmp(w->lst_src[i], src) == 0) {
			fd = w->lst_fd[i];
			w->lst_fd[i] = w->lst_fd[--w->nlst];
			memcpy(w->lst_src[i], w->lst_src[w->nlst],
			    sizeof(w->lst_src[0]));
			return fd;
		}
	return -1;
}

static void
worker_listeners_drop(struct tun *t)
{
	struct worker *w = worker_of(t);

	while (w->nlst > 0)
		close(w->lst_fd[--w->nlst]);
}

/* Whether fd 3, the channel of the dispatcher that started us, is open. */
static struct channel *
worker_ctl_channel(struct worker *w)
{
	size_t i;

	for (i = 0; i < WORKER_MAX_CHANNELS; i++)
		if (w->ch[i] != NULL && w->ch[i]->fd == WORKER_CTL_FD)
			return w->ch[i];
	return NULL;
}

/* The reverse sources of eff into m (CTL_TAKEOVER); their number. */
static size_t
worker_takeover_srcs(const struct msg_fwdlist *eff, struct ctlmsg_srcs *m)
{
	size_t i;

	for (i = 0; i < eff->n && m->n < CTLMSG_MAX_SRCS; i++)
		if (eff->fwds[i].reverse)
			addr_format(&eff->fwds[i].src, m->src[m->n++],
			    sizeof(m->src[0]));
	return m->n;
}

/*
 * A new session needs the reverse listeners of eff: asks the dispatcher to
 * end the detached workers of the same tunnel id and hand their listening
 * sockets over (kept for mux_listen).  Blocks up to WORKER_TAKEOVER_MS: a
 * worker serves one tenant, and the answer is one round trip; meanwhile
 * fd 3 is served in state WS_TAKEOVER.  Returns -1 with err when another
 * worker's client is connected (or no answer came), 0 otherwise, also
 * without a dispatcher to ask.
 */
static int
worker_takeover(struct tun *t, const struct msg_fwdlist *eff, char *err)
{
	struct worker	*w = worker_of(t);
	struct channel	*c;
	struct ctlmsg	*m;
	uint64_t	 deadline, now;
	int		 rc;

	if ((c = worker_ctl_channel(w)) == NULL)
		return 0;	/* a dispatcher restarted since: bind */
	if ((m = malloc(sizeof(*m))) == NULL)
		return 0;
	ctlmsg_init(m, CTL_TAKEOVER);
	if (worker_takeover_srcs(eff, &m->u.takeover) == 0) {
		free(m);
		return 0;
	}
	rc = ctlmsg_send(WORKER_CTL_FD, m, -1, 1000, err);
	free(m);
	if (rc == -1) {
		log_warnx("takeover: %s", err);
		return 0;
	}
	w->tk_done = 0;
	w->tk_busy[0] = '\0';
	deadline = uv_hrtime() / 1000000 + WORKER_TAKEOVER_MS;
	while (!w->tk_done) {
		now = uv_hrtime() / 1000000;
		if (now >= deadline) {
			err_set(err, "the dispatcher did not answer the "
			    "takeover in %d ms", WORKER_TAKEOVER_MS);
			return -1;
		}
		if (!ctl_wait(WORKER_CTL_FD, (int)(deadline - now)))
			continue;
		rc = ctlmsg_serve(WORKER_CTL_FD, worker_rules, WORKER_NRULES,
		    WS_TAKEOVER, c, err);
		if (rc == CTLMSG_REFUSED)
			worker_refused(err);
		if (rc == 0 || rc == CTLMSG_REFUSED) {
			worker_channel_close(c);
			err_set(err, "the dispatcher went away");
			return -1;
		}
	}
	if (w->tk_busy[0] != '\0') {
		err_set(err, "%s", w->tk_busy);
		return -1;
	}
	return 0;
}

/* Whether one of our listeners is on a source address of srcs. */
static int
worker_holds(struct worker *w, const struct ctlmsg_srcs *srcs)
{
	struct sess	*s;
	struct lsn	*l;
	char		 host[CTLMSG_SRC_LEN];
	size_t		 i;

	TAILQ_FOREACH(s, &w->tun.sessions, link)
		SLIST_FOREACH(l, &s->lsns, link) {
			addr_format(&l->fwd.src, host, sizeof(host));
			for (i = 0; i < srcs->n; i++)
				if (strcmp(srcs->src[i], host) == 0)
					return 1;
		}
	return 0;
}

/* Sends each listening socket (CTL_LISTENER); how many went. */
static int
worker_send_listeners(struct worker *w, struct channel *c)
{
	struct sess	*s;
	struct lsn	*l;
	struct ctlmsg	 m;
	char		 err[ERR_LEN];
	int		 fd, n = 0;

	TAILQ_FOREACH(s, &w->tun.sessions, link)
		SLIST_FOREACH(l, &s->lsns, link) {
			if (s->closing ||
			    uv_fileno((uv_handle_t *)&l->tcp, &fd) != 0)
				continue;
			ctlmsg_init(&m, CTL_LISTENER);
			addr_format(&l->fwd.src, m.u.listener.src,
			    sizeof(m.u.listener.src));
			if (ctlmsg_send(c->fd, &m, fd, 1000, err) == -1)
				log_warnx("takeover: %s", err);
			else
				n++;
		}
	return n;
}

/*
 * The dispatcher asks for our listeners (CTL_RELEASE): a new worker of
 * this tunnel has an authenticated client that needs one of them.  Unless
 * our own client is connected, each listening socket goes over
 * (CTL_LISTENER, the port stays open and its backlog waits for the new
 * owner) and the tunnel ends, "replaced".
 */
static int
worker_on_release(void *ctx, struct ctlmsg *req, int *fdp, char *e)
{
	struct channel	*c = ctx;
	struct worker	*w = c->w;
	struct tun	*t = &w->tun;
	struct sess	*s;
	struct ctlmsg	 m;
	int		 n;

	ctlmsg_init(&m, CTL_RELEASED);
	/* Another tunnel under the same id, on other ports: not ours. */
	if (!worker_holds(w, &req->u.release)) {
		worker_reply(c, &m);
		return CTLMSG_OK;
	}
	TAILQ_FOREACH(s, &t->sessions, link)
		if (!s->closing && s->x != NULL) {
			log_info("takeover refused: our client is connected");
			snprintf(m.u.released.busy, sizeof(m.u.released.busy),
			    "the tunnel's client is connected to another "
			    "worker");
			worker_reply(c, &m);
			return CTLMSG_OK;
		}
	n = worker_send_listeners(w, c);
	m.u.released.ended = !TAILQ_EMPTY(&t->sessions);
	m.u.released.listeners = n;
	worker_reply(c, &m);
	if (!m.u.released.ended)
		return CTLMSG_OK;
	log_info("replaced by a new worker of tunnel '%s': %d listener%s "
	    "handed over", w->cfg.id, n, n == 1 ? "" : "s");
	while ((s = TAILQ_FIRST(&t->sessions)) != NULL)
		sess_free(s, "replaced");
	return t->stopping ? CTLMSG_STOP : CTLMSG_OK;
}

/* CONFIG went wrong: say why (CTL_END) and go. */
static int
worker_config_failed(struct worker *w, struct channel *c, const char *why)
{
	struct ctlmsg m;

	log_err("%s", why);
	ctlmsg_init(&m, CTL_END);
	snprintf(m.u.end.text, sizeof(m.u.end.text), "%s", why);
	worker_reply(c, &m);
	w->dir_fd = -1;		/* the fd is closed by ctlmsg_dispatch */
	tun_stop(&w->tun, 1);
	return CTLMSG_STOP;
}

static int
worker_on_config(void *ctx, struct ctlmsg *m, int *fdp, char *e)
{
	struct channel	*c = ctx;
	struct worker	*w = c->w;
	struct ctlmsg	 r;
	char		 err[ERR_LEN];

	c->configured = 1;
	if (worker_apply_config(&m->u.config, &w->opts, &w->cfg, err) == -1 ||
	    worker_sock_in_dir(w, *fdp, err) == -1 ||
	    worker_listen(w, err) == -1)
		return worker_config_failed(w, c, err);
	*fdp = -1;	/* kept as w->dir_fd */
	log_init("tunneld", w->opts.verbose);
	/* The policy's secrets: weak ones are named in the log. */
	cli_check_secrets(&w->opts);
	crypto_magic(w->opts.pass, w->opts.encpass, w->tun.magic);
	ctlmsg_init(&r, CTL_READY);
	r.u.ready.pid = getpid();
	snprintf(r.u.ready.sock, sizeof(r.u.ready.sock), "%s",
	    w->cfg.sock_path);
	worker_reply(c, &r);
	/* A pooled worker may have waited long for its config. */
	w->idle_since = w->traffic_at = uv_now(w->tun.loop);
	uv_timer_start(&w->idle, worker_idle_cb, 1000, 1000);
	log_info("worker ready for tenant '%s' (%s), %zu forwards",
	    w->cfg.tenant, cli_mode_name(w->opts.mode), w->opts.fwds.n);
	return CTLMSG_OK;
}

static int
worker_on_conn(void *ctx, struct ctlmsg *m, int *fdp, char *err)
{
	struct channel *c = ctx;

	if (*fdp < 0 || c->w->lfd == -1) {
		err_set(err, "a connection without its socket");
		return CTLMSG_REFUSED;
	}
	worker_take_conn(c->w, c, &m->u.conn, *fdp);
	*fdp = -1;
	return CTLMSG_OK;
}

static int
worker_on_stats_req(void *ctx, struct ctlmsg *m, int *fdp, char *err)
{
	struct channel	*c = ctx;
	struct ctlmsg	*r;

	if ((r = malloc(sizeof(*r))) == NULL)
		return CTLMSG_OK;
	ctlmsg_init(r, CTL_STATS);
	worker_stats(c->w, &r->u.stats);
	worker_reply(c, r);
	free(r);
	return CTLMSG_OK;
}

/* A listening socket of a takeover; late ones are kept for a retry. */
static int
worker_on_listener(void *ctx, struct ctlmsg *m, int *fdp, char *err)
{
	struct channel *c = ctx;

	if (*fdp < 0) {
		err_set(err, "a listener without its socket");
		return CTLMSG_REFUSED;
	}
	worker_listener_keep(c->w, m->u.listener.src, *fdp);
	*fdp = -1;
	return CTLMSG_OK;
}

/* The end of a takeover; a late one (after our deadline) is ignored. */
static int
worker_on_takeover_done(void *ctx, struct ctlmsg *m, int *fdp, char *err)
{
	struct channel *c = ctx;

	c->w->tk_done = 1;
	snprintf(c->w->tk_busy, sizeof(c->w->tk_busy), "%s",
	    m->u.takeover_done.text);
	return CTLMSG_OK;
}

static int
worker_on_stop(void *ctx, struct ctlmsg *m, int *fdp, char *err)
{
	struct channel *c = ctx;

	log_info("stop requested by the dispatcher");
	snprintf(c->w->end_reason, sizeof(c->w->end_reason), "stopped");
	tun_stop(&c->w->tun, 0);
	return CTLMSG_STOP;
}

/* What a worker accepts, from the dispatcher on fd 3 or its socket. */
const struct ctlmsg_rule worker_rules[WORKER_NRULES] = {
	{ CTL_CONFIG,		WS_IDLE,	worker_on_config },
	{ CTL_CONN,		WS_READY,	worker_on_conn },
	{ CTL_STATS_REQ,	WS_READY,	worker_on_stats_req },
	{ CTL_RELEASE,		WS_READY,	worker_on_release },
	{ CTL_LISTENER,		WS_READY | WS_TAKEOVER, worker_on_listener },
	{ CTL_TAKEOVER_DONE,	WS_READY | WS_TAKEOVER,
	    worker_on_takeover_done },
	{ CTL_STOP,		WS_READY,	worker_on_stop },
};
const size_t worker_nrules = WORKER_NRULES;

static void
worker_channel_cb(uv_poll_t *p, int status, int events)
{
	struct channel	*c = p->data;
	struct worker	*w = c->w;
	char		 err[ERR_LEN];
	int		 rc;

	for (;;) {
		rc = ctlmsg_serve(c->fd, worker_rules, WORKER_NRULES,
		    c->configured ? WS_READY : WS_IDLE, c, err);
		if (rc == -2)
			return;
		if (rc == CTLMSG_REFUSED)
			worker_refused(err);
		if (rc == 0 || rc == CTLMSG_REFUSED) {
			/* A dispatcher going away does not end the tunnel; an
			 * idle pooled worker has none and goes too. */
			if (!c->configured && c->fd == WORKER_CTL_FD)
				tun_stop(&w->tun, 0);
			worker_channel_close(c);
			return;
		}
		if (rc == CTLMSG_STOP || w->tun.stopping)
			return;
	}
}

/* The tunnel is over: tell every dispatcher listening, then go. */
static void
worker_session_ended(struct tun *t, const char *why)
{
	struct worker *w = worker_of(t);

	w->had_session = 1;
	if (TAILQ_EMPTY(&t->sessions)) {
		snprintf(w->end_reason, sizeof(w->end_reason), "%s", why);
		tun_stop(t, 0);
	}
}

/*
 * A client passed the challenge: tell every dispatcher listening, once.
 * Until then the dispatcher counts this worker as pending, not as a
 * tunnel (it may be an attacker's, who never knew the password).
 */
static void
worker_session_authed(struct tun *t)
{
	struct worker	*w = worker_of(t);
	char		 err[ERR_LEN];
	size_t		 i;

	if (w->authed)
		return;
	w->authed = 1;
	for (i = 0; i < WORKER_MAX_CHANNELS; i++)
		if (w->ch[i] != NULL && w->ch[i]->configured &&
		    ctlmsg_send_type(w->ch[i]->fd, CTL_AUTHED, 200, err) == -1)
			/* Short-lived channels may be gone already. */
			log_debug("control: %s", err);
}

static int
worker_is_oneshot(const struct tun *t)
{
	return worker_of(t)->cfg.oneshot;
}

/* tun_stop began: every dispatcher listening learns why, then we go. */
static void
worker_stop(struct tun *t)
{
	struct worker	*w = worker_of(t);
	struct ctlmsg	 end;
	char		 err[ERR_LEN];
	size_t		 i;

	/* A signal names itself in tun_signal. */
	if (t->stop_reason[0] != '\0')
		snprintf(w->end_reason, sizeof(w->end_reason), "%s",
		    t->stop_reason);
	ctlmsg_init(&end, CTL_END);
	snprintf(end.u.end.text, sizeof(end.u.end.text), "%s",
	    w->end_reason[0] ? w->end_reason : "stopped");
	for (i = 0; i < WORKER_MAX_CHANNELS; i++)
		if (w->ch[i] != NULL) {
			ctlmsg_send(w->ch[i]->fd, &end, -1, 200, err);
			worker_channel_close(w->ch[i]);
		}
	if (w->lfd != -1) {
		uv_poll_stop(&w->lpoll);
		uv_close((uv_handle_t *)&w->lpoll, NULL);
		unlink(w->cfg.sock_path);
	}
	uv_close((uv_handle_t *)&w->idle, NULL);
}

/* Counted packets of every session, both ways: payload and stream
 * openings and closings, not keepalives. */
static uint64_t
worker_traffic(struct worker *w)
{
	struct sess	*s;
	uint64_t	 n = 0;

	TAILQ_FOREACH(s, &w->tun.sessions, link)
		n += s->next_seq + s->read_no;
	return n;
}

/*
 * The policy's idleTimeout: a tunnel that carried no traffic (see
 * worker_traffic) for that many seconds ends; 0 is never.  Returns 1 if
 * it ended.
 */
static int
worker_idle_traffic(struct worker *w, uint64_t now)
{
	uint64_t mark = worker_traffic(w);

	if (mark != w->traffic_mark || !w->authed) {
		w->traffic_mark = mark;
		w->traffic_at = now;
		return 0;
	}
	if (w->cfg.idle_timeout == 0 ||
	    now - w->traffic_at < (uint64_t)w->cfg.idle_timeout * 1000)
		return 0;
	snprintf(w->end_reason, sizeof(w->end_reason), "no traffic for %d s "
	    "(idleTimeout)", w->cfg.idle_timeout);
	log_info("%s", w->end_reason);
	tun_stop(&w->tun, 0);
	return 1;
}

/*
 * A worker whose client never authenticated (wrong password, a dead
 * client) has nothing to wait for: sessions time out by themselves, this
 * covers the time before there is one.  Before any authentication the
 * wait is the handshake timeout, so that password-less upgrades do not
 * keep workers around: a handshake lasts -handshakeTimeout at most, and
 * the worker goes -handshakeTimeout after the last connection (a client
 * that lost its first one may come back in that time).
 */
static void
worker_idle_cb(uv_timer_t *timer)
{
	struct worker	*w = timer->data;
	struct tun	*t = &w->tun;
	uint64_t	 now = uv_now(t->loop), wait;

	if (worker_idle_traffic(w, now))
		return;
	if (!TAILQ_EMPTY(&t->sessions) || !TAILQ_EMPTY(&t->handshakes)) {
		w->idle_since = now;
		return;
	}
	/* A OneShot tunnel whose one connection is gone has nothing left. */
	if (w->cfg.oneshot)
		wait = 1000;
	else if (!w->authed)
		wait = (uint64_t)w->opts.handshake_timeout * 1000;
	else
		wait = WORKER_IDLE_MS;
	if (now - w->idle_since >= wait) {
		snprintf(w->end_reason, sizeof(w->end_reason),
		    "%s for %d s", w->authed ? "no client" :
		    "no authenticated client", (int)(wait / 1000));
		log_info("%s", w->end_reason);
		tun_stop(t, 0);
	}
}

int
worker_main(int argc, char **argv)
{
	struct worker	*w;
	struct tun	*t;
	int		 rc;

	if (fcntl(WORKER_CTL_FD, F_GETFD) == -1) {
		fprintf(stderr, "tunneld worker: started by the dispatcher "
		    "only (no control socket on fd 3)\n");
		return 2;
	}
	if ((w = calloc(1, sizeof(*w))) == NULL)
		return 1;
	w->hooks = (struct tun_hooks){
		.session_ended = worker_session_ended,
		.authed = worker_session_authed,
		.is_oneshot = worker_is_oneshot,
		.stopping = worker_stop,
		.takeover = worker_takeover,
		.listener_take = worker_listener_take,
		.listeners_drop = worker_listeners_drop,
		.arg = w,
	};
	w->lfd = w->dir_fd = -1;
	w->started = time(NULL);
	/* Defaults of a command line without options. */
	w->opts.enc_count = -1;
	w->opts.interval = 20;
	w->opts.handshake_timeout = 10;
	w->opts.open_timeout = 30;
	w->opts.session_timeout = 600;
	w->opts.pass = strdup("");
	w->opts.encpass = strdup("");
	w->opts.mode = MODE_SERVER;
	log_init("tunneld", 0);
	log_set_prefix("worker: ");
	signal(SIGPIPE, SIG_IGN);
	t = &w->tun;
	/* Its listener stays unused (clients come over the control socket). */
	tun_init(t, uv_default_loop(), &w->opts, &w->hooks);
	uv_timer_init(t->loop, &w->idle);
	w->idle.data = w;
	worker_channel_add(w, WORKER_CTL_FD, 0);
	rc = tun_run(t);
	tun_free(t);
	if (w->lfd != -1)
		close(w->lfd);
	if (w->dir_fd != -1)
		close(w->dir_fd);
	cli_free(&w->opts);
	free(w);
	return rc;
}
