/*
 * The hand-over of reverse listeners between the workers of one tunnel
 * id: a new session takes them over from the detached worker that holds
 * them (worker_takeover, through the dispatcher), and a worker asked to
 * release them sends them and ends (worker_on_release).
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctl.h"
#include "ctlmsg.h"
#include "err.h"
#include "joinpt.h"
#include "log.h"
#include "worker_int.h"

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

int
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

void
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

/* Whether one of our sessions listens for f already. */
static int
worker_listens(struct worker *w, const struct fwd *f)
{
	struct sess *s;

	TAILQ_FOREACH(s, &w->tun.sessions, link)
		if (!s->closing && mux_lsn_find(s, f) != NULL)
			return 1;
	return 0;
}

/*
 * The reverse sources of eff into m (CTL_TAKEOVER); their number.  A join
 * point one of our sessions offers already moves to the new one here: the
 * dispatcher, which would make a new socket for it, is not asked.
 */
static size_t
worker_takeover_srcs(struct worker *w, const struct msg_fwdlist *eff,
    struct ctlmsg_srcs *m)
{
	size_t i;

	for (i = 0; i < eff->n && m->n < CTLMSG_MAX_SRCS; i++)
		if (eff->fwds[i].reverse &&
		    (joinpt_name(&eff->fwds[i].src) == NULL ||
		    !worker_listens(w, &eff->fwds[i])))
			mux_lsn_label(&eff->fwds[i], m->src[m->n++],
			    sizeof(m->src[0]));
	return m->n;
}

/*
 * Asks the dispatcher (CTL_TAKEOVER on fd 3) for the reverse sources of
 * eff.  Returns 1 if asked, 0 if there is nothing to ask (no reverse
 * source) or the question could not go (logged: the caller binds).
 */
static int
worker_takeover_ask(struct worker *w, const struct msg_fwdlist *eff,
    char *err)
{
	struct ctlmsg	*m;
	int		 rc;

	if ((m = malloc(sizeof(*m))) == NULL)
		return 0;
	ctlmsg_init(m, CTL_TAKEOVER);
	if (worker_takeover_srcs(w, eff, &m->u.takeover) == 0) {
		free(m);
		return 0;
	}
	rc = ctlmsg_send(WORKER_CTL_FD, m, -1, 1000, err);
	free(m);
	if (rc == -1) {
		log_warnx("takeover: %s", err);
		return 0;
	}
	return 1;
}

/*
 * Serves fd 3 (channel c) in state WS_TAKEOVER until CTL_TAKEOVER_DONE
 * (w->tk_done) or WORKER_TAKEOVER_MS.  Returns 0 when the answer came,
 * -1 with err on the deadline or when the dispatcher went away (c is
 * then closed).
 */
static int
worker_takeover_wait(struct worker *w, struct channel *c, char *err)
{
	uint64_t	 deadline, now;
	int		 rc;

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
	return 0;
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
int
worker_takeover(struct tun *t, const struct msg_fwdlist *eff, char *err)
{
	struct worker	*w = worker_of(t);
	struct channel	*c;

	if ((c = worker_ctl_channel(w)) == NULL)
		return 0;	/* a dispatcher restarted since: bind */
	if (!worker_takeover_ask(w, eff, err))
		return 0;
	if (worker_takeover_wait(w, c, err) == -1)
		return -1;
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
			mux_lsn_label(&l->fwd, host, sizeof(host));
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
			mux_lsn_label(&l->fwd, m.u.listener.src,
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
int
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

/* A listening socket of a takeover; late ones are kept for a retry. */
int
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
int
worker_on_takeover_done(void *ctx, struct ctlmsg *m, int *fdp, char *err)
{
	struct channel *c = ctx;

	c->w->tk_done = 1;
	snprintf(c->w->tk_busy, sizeof(c->w->tk_busy), "%s",
	    m->u.takeover_done.text);
	return CTLMSG_OK;
}
