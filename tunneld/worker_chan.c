/*
 * The worker's control channels: fd 3 from the dispatcher that started
 * it, and the connections to its unix socket, each a uv_poll_t on a
 * SOCK_SEQPACKET fd served by ctlmsg_serve with worker_rules.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
#include <stddef.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "ctlmsg.h"
#include "err.h"
#include "log.h"
#include "worker_int.h"

static void	worker_channel_cb(uv_poll_t *, int, int);

/* Whether c is still one of w's open channels. */
static int
worker_channel_live(const struct worker *w, const struct channel *c)
{
	size_t i;

	for (i = 0; i < WORKER_MAX_CHANNELS; i++)
		if (w->ch[i] == c)
			return 1;
	return 0;
}

/* The dispatcher broke the contract: the caller closes the channel. */
void
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

void
worker_channel_close(struct channel *c)
{
	size_t i;

	for (i = 0; i < WORKER_MAX_CHANNELS; i++)
		if (c->w->ch[i] == c)
			c->w->ch[i] = NULL;
	uv_poll_stop(&c->poll);
	uv_close((uv_handle_t *)&c->poll, worker_channel_closed);
}

int
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
	c->seq = ++w->chan_seq;
	uv_poll_init(w->tun.loop, &c->poll, fd);
	c->poll.data = c;
	uv_poll_start(&c->poll, UV_READABLE, worker_channel_cb);
	w->ch[i] = c;
	return 0;
}

void
worker_reply(struct channel *c, const struct ctlmsg *m)
{
	char err[ERR_LEN];

	if (ctlmsg_send(c->fd, m, -1, 1000, err) == -1)
		log_warnx("control reply: %s", err);
}

void
worker_reply_type(struct channel *c, int type)
{
	char err[ERR_LEN];

	if (ctlmsg_send_type(c->fd, type, 1000, err) == -1)
		log_warnx("control reply: %s", err);
}

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
			 * idle pooled worker has none and goes too.  Stopping
			 * closes every channel (worker_stop), this one too:
			 * closing it twice would stop a closing handle. */
			if (!c->configured && c->fd == WORKER_CTL_FD)
				tun_stop(&w->tun, 0);
			if (worker_channel_live(w, c))
				worker_channel_close(c);
			return;
		}
		if (rc == CTLMSG_STOP || w->tun.stopping)
			return;
	}
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

		/* Only our dispatcher (the uid that started us, not ours
		 * when we run as a uid of our own) may hand us clients or
		 * stop us: the directory is its, but check the peer too.
		 * Root too, who could trace us anyway: a dispatcher with
		 * -user adopts us at its start, before it gives root up. */
		if (ctl_check_peer(fd, w->ctl_uid, err) == -1 &&
		    ctl_check_peer(fd, 0, err) == -1) {
			log_warnx("control connection refused: %s", err);
			close(fd);
			continue;
		}
		worker_channel_add(w, fd, 1);
	}
}

/* fd: is it a unix SOCK_SEQPACKET socket, bound, not listening yet? */
static int
worker_sock_check(int fd, char *err)
{
	struct sockaddr_un	sun;
	socklen_t		len = sizeof(sun);
	int			v;
	socklen_t		vl = sizeof(v);

	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &v, &vl) == -1 ||
	    v != SOCK_SEQPACKET || getsockname(fd, (struct sockaddr *)&sun,
	    &len) == -1 || sun.sun_family != AF_UNIX ||
	    len <= offsetof(struct sockaddr_un, sun_path)) {
		err_set(err, "config: the descriptor is not a bound unix "
		    "socket");
		return -1;
	}
	return 0;
}

/* No descriptor came with CONFIG: the path is bound here as it is. */
static int
worker_bind_path(struct worker *w, char *err)
{
	struct sockaddr_un	sun;
	int			fd;

	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", w->cfg.sock_path);
	if ((fd = socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0)) == -1) {
		err_set(err, "socket: %s", strerror(errno));
		return -1;
	}
	unlink(sun.sun_path);
	if (bind(fd, (struct sockaddr *)&sun, sizeof(sun)) == -1 ||
	    chmod(sun.sun_path, 0600) == -1) {
		err_set(err, "%s: %s", sun.sun_path, strerror(errno));
		close(fd);
		return -1;
	}
	return fd;
}

int
worker_listen(struct worker *w, int fd, char *err)
{
	int own = fd < 0;	/* else the caller's until this succeeds */

	if (!own && worker_sock_check(fd, err) == -1)
		return -1;
	if (own && (fd = worker_bind_path(w, err)) == -1)
		return -1;
	fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
	if (listen(fd, 16) == -1) {
		err_set(err, "%s: listen: %s", w->cfg.sock_path,
		    strerror(errno));
		if (own)
			close(fd);
		return -1;
	}
	w->lfd = fd;
	uv_poll_init(w->tun.loop, &w->lpoll, w->lfd);
	w->lpoll.data = w;
	uv_poll_start(&w->lpoll, UV_READABLE, worker_accept_cb);
	return 0;
}
