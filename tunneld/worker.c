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

#include <openssl/evp.h>

#include "crypto.h"
#include "ctl.h"
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
	/* listening sockets handed over from the worker this one replaces */
	int		 lst_fd[MSG_MAX_FWDS];
	char		 lst_src[MSG_MAX_FWDS][ADDR_NAME_MAX + 16];
	int		 nlst;
};

static void	worker_channel_cb(uv_poll_t *, int, int);
static void	worker_idle_cb(uv_timer_t *);

/* The worker whose tunnel calls a hook: set by worker_main (hooks.arg). */
static struct worker *
worker_of(const struct tun *t)
{
	return t->hooks->arg;
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
worker_reply(struct channel *c, json_t *m)
{
	char err[ERR_LEN];

	if (m != NULL && ctl_send(c->fd, m, -1, 1000, err) == -1)
		log_warnx("control reply: %s", err);
	json_decref(m);
}

static json_t *
worker_stats(struct worker *w)
{
	struct sess	*s;
	json_t		*m = ctl_new(CTL_STATS);
	uint64_t	 in = 0, out = 0;
	size_t		 streams = 0;
	int		 reconnects = 0, connected = 0, sessions = 0;

	TAILQ_FOREACH(s, &w->tun.sessions, link) {
		in += s->bytes_in;
		out += s->bytes_out;
		streams += mux_count(s);
		reconnects += s->reconnects;
		connected |= s->x != NULL;
		sessions++;
	}
	json_object_set_new(m, "pid", json_integer(getpid()));
	json_object_set_new(m, "tenant", json_string(w->cfg.tenant));
	json_object_set_new(m, "id", json_string(w->cfg.id));
	json_object_set_new(m, "session", json_string(w->cfg.session));
	json_object_set_new(m, "mode", json_string(cli_mode_name(w->opts.mode)));
	json_object_set_new(m, "started", json_integer(w->started));
	json_object_set_new(m, "bytes_in", json_integer(in));
	json_object_set_new(m, "bytes_out", json_integer(out));
	json_object_set_new(m, "streams", json_integer(streams));
	json_object_set_new(m, "reconnects", json_integer(reconnects));
	json_object_set_new(m, "connected", json_boolean(connected));
	json_object_set_new(m, "sessions", json_integer(sessions));
	json_object_set_new(m, "authed", json_boolean(w->authed));
	return m;
}

/*
 * Parameters from the dispatcher (CTL_CONFIG), checked like a command
 * line.  o must hold the defaults; pass and encpass are replaced.
 */
int
worker_parse_config(const json_t *m, struct cli_opts *o,
    struct worker_config *wc, char *err)
{
	const char	*mode, *pass, *encpass, *str;
	json_t		*fwds, *v;
	size_t		 i;
	int		 k, found = 0;

	mode = json_string_value(json_object_get(m, "mode"));
	pass = json_string_value(json_object_get(m, "pass"));
	encpass = json_string_value(json_object_get(m, "encPass"));
	if (mode == NULL || pass == NULL || encpass == NULL) {
		err_set(err, "config: mode, pass and encPass are required");
		return -1;
	}
	for (k = MODE_WSSERVER; k <= MODE_R_SERVER; k++)
		if (strcmp(mode, cli_mode_name(k)) == 0) {
			o->mode = k;
			found = 1;
		}
	if (!found) {
		err_set(err, "config: mode '%s' is not a server mode", mode);
		return -1;
	}
	free(o->pass);
	free(o->encpass);
	if ((o->pass = strdup(pass)) == NULL ||
	    (o->encpass = strdup(encpass)) == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	if (json_is_integer(v = json_object_get(m, "encCount")))
		o->enc_count = json_integer_value(v);
	if (json_is_integer(v = json_object_get(m, "keepalive")) &&
	    json_integer_value(v) >= 2 && json_integer_value(v) <= 3600)
		o->interval = json_integer_value(v);
	if (json_is_integer(v = json_object_get(m, "idleTimeout")) &&
	    json_integer_value(v) >= 1 && json_integer_value(v) <= 86400 * 30)
		o->session_timeout = json_integer_value(v);
	if (json_is_integer(v = json_object_get(m, "handshakeTimeout")) &&
	    json_integer_value(v) >= 1 && json_integer_value(v) <= 3600)
		o->handshake_timeout = json_integer_value(v);
	if (json_is_true(json_object_get(m, "verbose")))
		o->verbose = 1;
	if ((str = json_string_value(json_object_get(m, "connectMode"))) &&
	    strcmp(str, "OneShot") == 0)
		wc->oneshot = 1;
	if ((str = json_string_value(json_object_get(m, "tenant"))) != NULL)
		snprintf(wc->tenant, sizeof(wc->tenant), "%s", str);
	if ((str = json_string_value(json_object_get(m, "id"))) != NULL)
		snprintf(wc->id, sizeof(wc->id), "%s", str);
	if ((str = json_string_value(json_object_get(m, "session"))) != NULL)
		snprintf(wc->session, sizeof(wc->session), "%s", str);
	if ((str = json_string_value(json_object_get(m, "sock"))) == NULL ||
	    str[0] == '\0' ||
	    strlen(str) >= sizeof(wc->sock_path)) {
		err_set(err, "config: a socket path is required");
		return -1;
	}
	snprintf(wc->sock_path, sizeof(wc->sock_path), "%s", str);
	o->fwds.n = 0;
	fwds = json_object_get(m, "forwards");
	if (fwds != NULL && !json_is_array(fwds)) {
		err_set(err, "config: forwards must be a list");
		return -1;
	}
	json_array_foreach(fwds, i, v) {
		if (o->fwds.n >= MSG_MAX_FWDS || !json_is_string(v)) {
			err_set(err, "config: bad forward list");
			return -1;
		}
		if (fwd_parse(json_string_value(v),
		    cli_mode_is_reverse(o->mode),
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
worker_take_conn(struct worker *w, struct channel *c, json_t *m, int fd)
{
	const char	*pre64;
	unsigned char	*pre = NULL;
	uv_tcp_t	*tcp;
	struct conn	*conn;
	char		 err[ERR_LEN];
	int		 n = 0;

	if ((pre64 = json_string_value(json_object_get(m, "extra"))) != NULL &&
	    *pre64 != '\0') {
		size_t len = strlen(pre64);

		if ((pre = malloc(len)) == NULL ||
		    (n = EVP_DecodeBlock(pre, (const unsigned char *)pre64,
		    (int)len)) < 0) {
			log_warnx("control: bad extra bytes");
			free(pre);
			close(fd);
			return;
		}
		/* EVP_DecodeBlock counts padding as data. */
		if (len >= 2 && pre64[len - 1] == '=')
			n -= pre64[len - 2] == '=' ? 2 : 1;
	}
	if ((tcp = malloc(sizeof(*tcp))) == NULL) {
		free(pre);
		close(fd);
		return;
	}
	uv_tcp_init(w->tun.loop, tcp);
	if (uv_tcp_open(tcp, fd) != 0) {
		free(pre);
		close(fd);
		uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
		return;
	}
	conn = conn_adopt(w->tun.loop, tcp, pre, n, err);
	free(pre);
	worker_reply(c, ctl_new(CTL_CONN_OK));
	if (conn == NULL) {
		log_warnx("control: %s", err);
		return;
	}
	log_info("%s: connection handed over", conn_peer(conn));
	hs_start(&w->tun, conn);
}

/* Keeps a listening socket handed over by the dispatcher (CTL_LISTENER). */
static void
worker_listener_keep(struct worker *w, const json_t *m, int fd)
{
	const char *src = json_string_value(json_object_get(m, "src"));

	if (fd < 0)
		return;
	if (src == NULL || w->nlst == MSG_MAX_FWDS) {
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

/*
 * A new session needs the reverse listeners of eff: asks the dispatcher to
 * end the detached workers of the same tunnel id and hand their listening
 * sockets over (kept for mux_listen).  Blocks up to WORKER_TAKEOVER_MS: a
 * worker serves one tenant, and the answer is one round trip.  Returns -1
 * with err when another worker's client is connected (or no answer came),
 * 0 otherwise, also without a dispatcher to ask.
 */
static int
worker_takeover(struct tun *t, const struct msg_fwdlist *eff, char *err)
{
	struct worker	*w = worker_of(t);
	json_t		*m, *srcs;
	const char	*busy;
	char		 host[ADDR_NAME_MAX + 16];
	uint64_t	 deadline;
	size_t		 i;
	int		 fd, rc, type, found = 0;

	for (i = 0; i < WORKER_MAX_CHANNELS; i++)
		found |= w->ch[i] != NULL && w->ch[i]->fd == WORKER_CTL_FD;
	if (!found)
		return 0;	/* a dispatcher restarted since: bind */
	srcs = json_array();
	for (i = 0; i < eff->n; i++)
		if (eff->fwds[i].reverse) {
			addr_format(&eff->fwds[i].src, host, sizeof(host));
			json_array_append_new(srcs, json_string(host));
		}
	if (json_array_size(srcs) == 0) {
		json_decref(srcs);
		return 0;
	}
	m = ctl_new(CTL_TAKEOVER);
	json_object_set_new(m, "srcs", srcs);
	rc = ctl_send(WORKER_CTL_FD, m, -1, 1000, err);
	json_decref(m);
	if (rc == -1) {
		log_warnx("takeover: %s", err);
		return 0;
	}
	deadline = uv_hrtime() / 1000000 + WORKER_TAKEOVER_MS;
	for (;;) {
		uint64_t now = uv_hrtime() / 1000000;

		if (now >= deadline) {
			err_set(err, "the dispatcher did not answer the "
			    "takeover in %d ms", WORKER_TAKEOVER_MS);
			return -1;
		}
		if (!ctl_wait(WORKER_CTL_FD, (int)(deadline - now)))
			continue;
		rc = ctl_recv(WORKER_CTL_FD, &m, &fd, err);
		if (rc == -2)
			continue;
		if (rc <= 0) {
			if (rc == 0)
				err_set(err, "the dispatcher went away");
			return -1;
		}
		type = ctl_type(m);
		if (type == CTL_LISTENER) {
			worker_listener_keep(w, m, fd);
		} else if (type == CTL_TAKEOVER_DONE) {
			busy = json_string_value(json_object_get(m, "busy"));
			if (busy != NULL)
				err_set(err, "%s", busy);
			json_decref(m);
			return busy != NULL ? -1 : 0;
		} else {
			log_warnx("takeover: unexpected message %s",
			    ctl_type_name(type));
			if (fd >= 0)
				close(fd);
		}
		json_decref(m);
	}
}

/*
 * The dispatcher asks for our listeners: a new worker of this tunnel has an
 * authenticated client that needs one of them ("srcs").  Unless our own
 * client is connected, each listening
 * socket goes over (CTL_LISTENER, the port stays open and its backlog
 * waits for the new owner) and the tunnel ends, "replaced".
 */
/* Whether one of our listeners is on a source address of srcs. */
static int
worker_holds(struct worker *w, const json_t *srcs)
{
	struct sess	*s;
	struct lsn	*l;
	json_t		*v;
	char		 host[ADDR_NAME_MAX + 16];
	size_t		 i;

	TAILQ_FOREACH(s, &w->tun.sessions, link)
		SLIST_FOREACH(l, &s->lsns, link) {
			addr_format(&l->fwd.src, host, sizeof(host));
			json_array_foreach(srcs, i, v)
				if (json_is_string(v) &&
				    strcmp(json_string_value(v), host) == 0)
					return 1;
		}
	return 0;
}

static void
worker_release(struct worker *w, struct channel *c, const json_t *req)
{
	struct tun	*t = &w->tun;
	struct sess	*s;
	struct lsn	*l;
	json_t		*m;
	char		 host[ADDR_NAME_MAX + 16], err[ERR_LEN];
	int		 fd, n = 0, ended;

	/* Another tunnel under the same id, on other ports: not ours. */
	if (!worker_holds(w, json_object_get(req, "srcs"))) {
		m = ctl_new(CTL_RELEASED);
		json_object_set_new(m, "ended", json_false());
		worker_reply(c, m);
		return;
	}
	TAILQ_FOREACH(s, &t->sessions, link)
		if (!s->closing && s->x != NULL) {
			log_info("takeover refused: our client is connected");
			m = ctl_new(CTL_RELEASED);
			json_object_set_new(m, "busy", json_string("the "
			    "tunnel's client is connected to another worker"));
			worker_reply(c, m);
			return;
		}
	TAILQ_FOREACH(s, &t->sessions, link)
		SLIST_FOREACH(l, &s->lsns, link) {
			if (s->closing ||
			    uv_fileno((uv_handle_t *)&l->tcp, &fd) != 0)
				continue;
			addr_format(&l->fwd.src, host, sizeof(host));
			m = ctl_new(CTL_LISTENER);
			json_object_set_new(m, "src", json_string(host));
			if (ctl_send(c->fd, m, fd, 1000, err) == -1)
				log_warnx("takeover: %s", err);
			else
				n++;
			json_decref(m);
		}
	ended = !TAILQ_EMPTY(&t->sessions);
	m = ctl_new(CTL_RELEASED);
	json_object_set_new(m, "ended", json_boolean(ended));
	json_object_set_new(m, "listeners", json_integer(n));
	worker_reply(c, m);
	if (!ended)
		return;
	log_info("replaced by a new worker of tunnel '%s': %d listener%s "
	    "handed over", w->cfg.id, n, n == 1 ? "" : "s");
	while ((s = TAILQ_FIRST(&t->sessions)) != NULL)
		sess_free(s, "replaced");
}

static void
worker_dispatch(struct worker *w, struct channel *c, json_t *m, int fd)
{
	char	err[ERR_LEN];
	int	type = ctl_type(m);

	switch (type) {
	case CTL_CONFIG:
		if (c->configured) {
			log_warnx("control: unexpected config");
			break;
		}
		c->configured = 1;
		if (worker_parse_config(m, &w->opts, &w->cfg, err) == -1 ||
		    worker_sock_in_dir(w, fd, err) == -1 ||
		    worker_listen(w, err) == -1) {
			json_t *end = ctl_new(CTL_END);

			log_err("%s", err);
			json_object_set_new(end, "reason", json_string(err));
			worker_reply(c, end);
			w->dir_fd = -1;		/* fd is closed below */
			tun_stop(&w->tun, 1);
			break;
		}
		fd = -1;	/* kept as w->dir_fd */
		log_init("tunneld", w->opts.verbose);
		/* The policy's secrets: weak ones are named in the log. */
		cli_check_secrets(&w->opts);
		crypto_magic(w->opts.pass, w->opts.encpass, w->tun.magic);
		{
			json_t *r = ctl_new(CTL_READY);

			json_object_set_new(r, "pid", json_integer(getpid()));
			json_object_set_new(r, "sock",
			    json_string(w->cfg.sock_path));
			worker_reply(c, r);
		}
		/* A pooled worker may have waited long for its config. */
		w->idle_since = uv_now(w->tun.loop);
		uv_timer_start(&w->idle, worker_idle_cb, 1000, 1000);
		log_info("worker ready for tenant '%s' (%s), %zu forwards",
		    w->cfg.tenant, cli_mode_name(w->opts.mode), w->opts.fwds.n);
		break;
	case CTL_CONN:
		if (!c->configured || w->lfd == -1 || fd < 0) {
			log_warnx("control: connection before config");
			break;
		}
		worker_take_conn(w, c, m, fd);
		fd = -1;
		break;
	case CTL_STATS_REQ:
		worker_reply(c, worker_stats(w));
		break;
	case CTL_RELEASE:
		worker_release(w, c, m);
		break;
	case CTL_LISTENER:
		/* Late for a takeover that timed out: kept for a retry. */
		worker_listener_keep(w, m, fd);
		fd = -1;
		break;
	case CTL_TAKEOVER_DONE:
		break;
	case CTL_STOP:
		log_info("stop requested by the dispatcher");
		snprintf(w->end_reason, sizeof(w->end_reason), "stopped");
		tun_stop(&w->tun, 0);
		break;
	default:
		log_warnx("control: unexpected message %s",
		    ctl_type_name(type));
		worker_channel_close(c);
		break;
	}
	if (fd >= 0)
		close(fd);
}

static void
worker_channel_cb(uv_poll_t *p, int status, int events)
{
	struct channel	*c = p->data;
	json_t		*m;
	char		 err[ERR_LEN];
	int		 fd, rc;

	for (;;) {
		rc = ctl_recv(c->fd, &m, &fd, err);
		if (rc == -2)
			return;
		if (rc <= 0) {
			if (rc < 0)
				log_warnx("control: %s", err);
			/* A dispatcher going away does not end the tunnel; an
			 * idle pooled worker has none and goes too. */
			if (!c->configured && c->fd == WORKER_CTL_FD) {
				worker_channel_close(c);
				tun_stop(&c->w->tun, 0);
				return;
			}
			worker_channel_close(c);
			return;
		}
		worker_dispatch(c->w, c, m, fd);
		json_decref(m);
		if (c->w->tun.stopping)
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
	json_t		*m;
	size_t		 i;

	if (w->authed)
		return;
	w->authed = 1;
	m = ctl_new(CTL_AUTHED);
	for (i = 0; i < WORKER_MAX_CHANNELS; i++)
		if (w->ch[i] != NULL && w->ch[i]->configured) {
			char err[ERR_LEN];

			/* Short-lived channels may be gone already. */
			if (ctl_send(w->ch[i]->fd, m, -1, 200, err) == -1)
				log_debug("control: %s", err);
		}
	json_decref(m);
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
	json_t		*end;
	size_t		 i;

	/* A signal names itself in tun_signal. */
	if (t->stop_reason[0] != '\0')
		snprintf(w->end_reason, sizeof(w->end_reason), "%s",
		    t->stop_reason);
	end = ctl_new(CTL_END);
	json_object_set_new(end, "reason", json_string(w->end_reason[0] ?
	    w->end_reason : "stopped"));
	for (i = 0; i < WORKER_MAX_CHANNELS; i++)
		if (w->ch[i] != NULL) {
			char err[ERR_LEN];

			ctl_send(w->ch[i]->fd, end, -1, 200, err);
			worker_channel_close(w->ch[i]);
		}
	json_decref(end);
	if (w->lfd != -1) {
		uv_poll_stop(&w->lpoll);
		uv_close((uv_handle_t *)&w->lpoll, NULL);
		unlink(w->cfg.sock_path);
	}
	uv_close((uv_handle_t *)&w->idle, NULL);
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
