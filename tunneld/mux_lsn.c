/*
 * The listening side of a CITI (wire spec 6.4): the session's forward
 * listeners, and each accepted connection named a CITI and announced to
 * the peer with CTRL_HEADER.  Listeners can move between sessions and,
 * in worker mode, be taken over from the replaced worker.  See mux.c.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "joinpt.h"
#include "log.h"
#include "mux_int.h"
#include "tunneld.h"

/* Takes a connection off the backlog and closes it: a limit says so. */
void
mux_accept_refuse(struct sess *s, uv_stream_t *server, const char *why)
{
	uv_tcp_t *tmp;

	if ((tmp = malloc(sizeof(*tmp))) == NULL)
		return;
	uv_tcp_init(s->tun->loop, tmp);
	if (uv_accept(server, (uv_stream_t *)tmp) == 0)
		mux_peer_warn(s, "%s, local connection refused", why);
	uv_close((uv_handle_t *)tmp, (uv_close_cb)free);
}

/* The next free CITI id of our range. */
uint32_t
mux_next_id(struct sess *s)
{
	uint32_t id;

	do {
		id = s->next_citi++;
		if (s->next_citi == 0)
			s->next_citi = s->server ? TUN_CITI_SERVER :
			    TUN_CITI_CLIENT;
	} while (mux_find(s, id) != NULL);
	return id;
}

int
mux_announce(struct citi *ci, const struct hostinfo *dst, int udp)
{
	struct sess		*s = ci->s;
	struct msg_header	 m;
	char			*json;
	size_t			 len;

	ci->dst = *dst;
	ci->deadline = uv_now(s->tun->loop) +
	    (uint64_t)s->tun->o->open_timeout * 1000;
	memset(&m, 0, sizeof(m));
	m.host = *dst;
	m.citi = ci->id;
	m.udp = udp;
	if ((json = msg_header_encode(&m, &len)) == NULL ||
	    sess_send_ctrl(s, json, len) == -1) {
		free(json);
		return -1;
	}
	free(json);
	ci->hdr_seq = s->next_seq - 1;
	return 0;
}

static void
mux_accept_cb(uv_stream_t *server, int status)
{
	struct lsn		*l = server->data;
	struct sess		*s = l->s;
	struct citi		*ci;
	uint32_t		 id;
	char			 why[96];

	if (status < 0 || s->closing)
		return;
	if (s->nciti >= TUN_MAX_CITIS) {
		mux_accept_refuse(s, server, "too many open streams");
		return;
	}
	if (sess_lim_open(s, why, sizeof(why)) == -1) {
		mux_accept_refuse(s, server, why);
		return;
	}
	id = mux_next_id(s);
	if ((ci = mux_citi_new(s, id, CITI_OPENING)) == NULL)
		return;
	if (uv_accept(server, (uv_stream_t *)&ci->tcp) < 0) {
		mux_citi_event(ci, CITI_EV_ABORT);
		return;
	}
	uv_tcp_nodelay(&ci->tcp, 1);
	if (mux_announce(ci, &l->fwd.dst, 0) == -1) {
		mux_citi_event(ci, CITI_EV_ABORT);
		return;
	}
	log_debug("session %" PRId64 ": citi %08" PRIx32 ": new local "
	    "connection for port %d", s->id, id, l->fwd.dst.port);
}

static void
mux_lsn_closed(uv_handle_t *h)
{
	struct lsn	*l = h->data;
	struct sess	*s = l->s;

	if (l->fwd.udp)
		mux_ulsn_free(l);
	free(l);
	sess_unref(s);
}

/* Closes the session's listeners (mux_stop). */
void
mux_lsn_close_all(struct sess *s)
{
	struct lsn *l;

	while ((l = SLIST_FIRST(&s->lsns)) != NULL) {
		SLIST_REMOVE_HEAD(&s->lsns, link);
		if (l->fwd.udp)
			mux_ulsn_close(l);
		uv_close((uv_handle_t *)&l->tcp, mux_lsn_closed);
	}
}

/* The listener of s on f's source address, or NULL. */
struct lsn *
mux_lsn_find(struct sess *s, const struct fwd *f)
{
	struct lsn *l;

	SLIST_FOREACH(l, &s->lsns, link)
		if (l->fwd.src.port == f->src.port &&
		    !l->fwd.udp == !f->udp &&
		    strcmp(l->fwd.src.name, f->src.name) == 0)
			return l;
	return NULL;
}

void
mux_lsn_label(const struct fwd *f, char *out, size_t cap)
{
	char host[ADDR_NAME_MAX + 16];

	addr_format(&f->src, host, sizeof(host));
	snprintf(out, cap, "%s%s", f->udp ? "udp/" : "", host);
}

/*
 * Moves a listening socket to another session: the port never closes, and
 * connections waiting in its backlog are accepted by the new owner.
 */
void
mux_lsn_move(struct lsn *l, struct sess *to)
{
	struct sess *from = l->s;

	SLIST_REMOVE(&from->lsns, l, lsn, link);
	l->s = to;
	to->handles++;
	SLIST_INSERT_HEAD(&to->lsns, l, link);
	sess_unref(from);	/* its tick handle keeps it alive */
}

/*
 * f's Src is a join point: the worker was handed its socket (a unix one,
 * bound by the dispatcher in its own directory) with its listeners.  It
 * is listened on as a TCP listener would be: libuv's handle takes any
 * stream socket.  0, or -1 (logged).
 */
static int
mux_listen_join(struct sess *s, const struct fwd *f, const char *host)
{
	struct lsn	*l;
	int		 fd, rc;

	if ((fd = tun_listener_take(s->tun, host)) == -1) {
		log_err("forward listener %s: no socket for this join point "
		    "(only a dispatcher's worker offers one)", host);
		return -1;
	}
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		close(fd);
		return -1;
	}
	l->s = s;
	l->fwd = *f;
	uv_tcp_init(s->tun->loop, &l->tcp);
	l->tcp.data = l;
	s->handles++;
	SLIST_INSERT_HEAD(&s->lsns, l, link);
	if ((rc = uv_tcp_open(&l->tcp, fd)) < 0)
		close(fd);
	else
		rc = uv_listen((uv_stream_t *)&l->tcp, 128, mux_accept_cb);
	if (rc < 0) {
		log_err("forward listener %s: %s", host, uv_strerror(rc));
		return -1;
	}
	log_info("forward: offering %s for %s:%d", host,
	    f->dst.name[0] ? f->dst.name : "localhost", f->dst.port);
	return 0;
}

struct addrinfo *
mux_listen_addr(struct sess *s, const struct fwd *f, const char *host,
    int socktype)
{
	struct addrinfo	 hints;
	uv_getaddrinfo_t req;
	char		 port[16];
	int		 rc;

	if (f->src.name[0] == '\0')
		log_warnx("forward listener %s: empty host, listening on all "
		    "interfaces (write 127.0.0.1%s for local only)", host, host);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = socktype;
	hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", f->src.port);
	rc = uv_getaddrinfo(s->tun->loop, &req, NULL,
	    f->src.name[0] ? f->src.name : "::", port, &hints);
	if (rc < 0) {
		log_err("forward listener %s: %s", host, uv_strerror(rc));
		return NULL;
	}
	return req.addrinfo;
}

static int
mux_listen(struct sess *s, const struct fwd *f)
{
	struct lsn	*l;
	struct addrinfo	*res;
	char		 host[ADDR_NAME_MAX + 16];
	int		 rc, fd;

	if (f->udp)
		return mux_ulsn_listen(s, f);
	addr_format(&f->src, host, sizeof(host));
	/* A join point's socket comes from the dispatcher, or nowhere. */
	if (joinpt_name(&f->src) != NULL)
		return mux_listen_join(s, f, host);
	if ((res = mux_listen_addr(s, f, host, SOCK_STREAM)) == NULL)
		return -1;
	if ((l = calloc(1, sizeof(*l))) == NULL) {
		uv_freeaddrinfo(res);
		return -1;
	}
	l->s = s;
	l->fwd = *f;
	uv_tcp_init(s->tun->loop, &l->tcp);
	l->tcp.data = l;
	s->handles++;
	SLIST_INSERT_HEAD(&s->lsns, l, link);
	/* A worker may have been handed the socket of the one it replaced. */
	if ((fd = tun_listener_take(s->tun, host)) != -1) {
		if ((rc = uv_tcp_open(&l->tcp, fd)) < 0)
			close(fd);
		else
			log_info("forward listener %s: taken over from the "
			    "replaced worker", host);
	} else
		rc = uv_tcp_bind(&l->tcp, res->ai_addr, 0);
	uv_freeaddrinfo(res);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&l->tcp, 128, mux_accept_cb);
	if (rc < 0) {
		log_err("forward listener %s: %s", host, uv_strerror(rc));
		return -1;
	}
	if (joinpt_name(&f->dst) != NULL)
		log_info("forward: listening on %s for %s", host, f->dst.name);
	else
		log_info("forward: listening on %s for %s:%d", host,
		    f->dst.name[0] ? f->dst.name : "localhost", f->dst.port);
	return 0;
}

int
mux_start(struct sess *s)
{
	size_t i;

	for (i = 0; i < s->eff.n; i++) {
		/* t forwards listen on the client, r forwards on the server. */
		if (s->eff.fwds[i].reverse != s->server)
			continue;
		/* Taken over from a replaced session (server_take_listeners). */
		if (mux_lsn_find(s, &s->eff.fwds[i]) != NULL)
			continue;
		if (mux_listen(s, &s->eff.fwds[i]) == -1)
			return -1;
	}
	tun_listeners_drop(s->tun);
	return s->server ? 0 : mux_dyn_start(s);
}
