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

struct channel {
	uv_poll_t	 poll;
	int		 fd;
	int		 configured;	/* fd 3 only: CONFIG accepted once */
	struct worker	*w;
};

struct worker {
	struct tun	 tun;
	struct cli_opts	 opts;
	struct worker_config cfg;
	int		 lfd;
	uv_poll_t	 lpoll;
	struct channel	*ch[WORKER_MAX_CHANNELS];
	time_t		 started;
	int		 had_session;
	char		 end_reason[ERR_LEN];
	uv_timer_t	 idle;
	uint64_t	 idle_since;
};

static struct worker *worker_self;

static void	worker_channel_cb(uv_poll_t *, int, int);
static void	worker_idle_cb(uv_timer_t *);

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
	while ((fd = accept4(w->lfd, NULL, NULL, SOCK_CLOEXEC)) >= 0)
		worker_channel_add(w, fd, 1);
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
		    worker_listen(w, err) == -1) {
			json_t *end = ctl_new(CTL_END);

			log_err("%s", err);
			json_object_set_new(end, "reason", json_string(err));
			worker_reply(c, end);
			tun_stop(&w->tun, 1);
			break;
		}
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
void
worker_session_ended(struct tun *t, const char *why)
{
	struct worker *w = worker_self;

	if (w == NULL || t != &w->tun)
		return;
	w->had_session = 1;
	if (TAILQ_EMPTY(&t->sessions)) {
		snprintf(w->end_reason, sizeof(w->end_reason), "%s", why);
		tun_stop(t, 0);
	}
}

int
worker_is_oneshot(const struct tun *t)
{
	return worker_self != NULL && t == &worker_self->tun &&
	    worker_self->cfg.oneshot;
}

void
worker_stop(struct tun *t)
{
	struct worker	*w = worker_self;
	json_t		*end;
	size_t		 i;

	if (w == NULL || t != &w->tun)
		return;
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
 * covers the time before there is one.
 */
static void
worker_idle_cb(uv_timer_t *timer)
{
	struct worker	*w = timer->data;
	struct tun	*t = &w->tun;
	uint64_t	 now = uv_now(t->loop);

	if (!TAILQ_EMPTY(&t->sessions) || !TAILQ_EMPTY(&t->handshakes)) {
		w->idle_since = now;
		return;
	}
	/* A OneShot tunnel whose one connection is gone has nothing left. */
	if (now - w->idle_since >= (w->cfg.oneshot ? 1000 : WORKER_IDLE_MS)) {
		snprintf(w->end_reason, sizeof(w->end_reason),
		    "no client for %d s", w->cfg.oneshot ? 1 :
		    WORKER_IDLE_MS / 1000);
		log_info("%s", w->end_reason);
		tun_stop(t, 0);
	}
}

static void
worker_signal(uv_signal_t *sig, int signum)
{
	snprintf(worker_self->end_reason, sizeof(worker_self->end_reason),
	    "signal %d", signum);
	tun_stop(sig->data, 0);
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
	worker_self = w;
	w->lfd = -1;
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
	t->loop = uv_default_loop();
	t->o = &w->opts;
	t->worker = 1;
	TAILQ_INIT(&t->sessions);
	TAILQ_INIT(&t->handshakes);
	uv_signal_init(t->loop, &t->sigint);
	uv_signal_init(t->loop, &t->sigterm);
	t->sigint.data = t->sigterm.data = t;
	uv_signal_start(&t->sigint, worker_signal, SIGINT);
	uv_signal_start(&t->sigterm, worker_signal, SIGTERM);
	uv_tcp_init(t->loop, &t->listener);	/* unused: closed at stop */
	uv_timer_init(t->loop, &w->idle);
	w->idle.data = w;
	worker_channel_add(w, WORKER_CTL_FD, 0);
	uv_run(t->loop, UV_RUN_DEFAULT);
	uv_loop_close(t->loop);
	rc = t->exit_code;
	if (w->lfd != -1)
		close(w->lfd);
	cli_free(&w->opts);
	free(w);
	return rc;
}
