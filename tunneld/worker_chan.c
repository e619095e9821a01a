/*
 * The worker's control channels: fd 3 from the dispatcher that started
 * it, and the connections to its unix socket, each a uv_poll_t on a
 * SOCK_SEQPACKET fd served by ctlmsg_serve with worker_rules.
 */

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>

#include <errno.h>
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

int
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
int
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
