/*
 * The dialing side of a CITI (wire spec 6.4): the peer's CTRL_HEADER names
 * a target; it is checked against the agreed forward list (or, on a
 * server, its destination patterns: the target of a client's dynamic
 * forward), resolved and dialed, and answered with CTRL_RESP_HEADER.
 * See mux.c.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "destpat.h"
#include "joinpt.h"
#include "log.h"
#include "mux_int.h"
#include "tunneld.h"

int
mux_send_resp(struct sess *s, uint32_t id, int ok, const char *mess)
{
	struct msg_resp_header	 r;
	char			*json;
	size_t			 len;
	int			 rc;

	memset(&r, 0, sizeof(r));
	r.result = ok;
	r.citi = id;
	snprintf(r.mess, sizeof(r.mess), "%s", mess);
	if ((json = msg_resp_header_encode(&r, &len)) == NULL)
		return -1;
	rc = sess_send_reply(s, json, len);
	free(json);
	return rc;
}

void
mux_dial_failed(struct citi *ci, const char *why)
{
	char host[ADDR_NAME_MAX + 16], mess[ADDR_NAME_MAX + MSG_STR_MAX];

	addr_format(&ci->dst, host, sizeof(host));
	snprintf(mess, sizeof(mess), "dial %s %s: %s", ci->udp ? "udp" : "tcp",
	    host, why);
	mux_peer_warn(ci->s, "citi %08" PRIx32 ": %s", ci->id, mess);
	if (ci->state == CITI_DIALING)	/* else the peer gave up on it */
		mux_send_resp(ci->s, ci->id, 0, mess);
	mux_citi_event(ci, CITI_EV_DIAL_FAILED);
}

/* The dial succeeded: the answer, and the CITI opens. */
void
mux_dial_connected(struct citi *ci)
{
	struct sess *s = ci->s;

	log_debug("session %" PRId64 ": citi %08" PRIx32 " connected",
	    s->id, ci->id);
	if (mux_send_resp(s, ci->id, 1, "<nil>") == -1) {
		mux_citi_event(ci, CITI_EV_ABORT);
		return;
	}
	ci->hdr_seq = s->next_seq - 1;
	ci->hdr_unacked = 1;
	/* Open, or closed at once if the peer gave up waiting. */
	mux_citi_event(ci, CITI_EV_CONNECTED);
}

/* What a server answers for a target outside its forwards and patterns
 * (a client maps "refused..." to SOCKS5's "not allowed"). */
#define MUX_NOT_ALLOWED	"refused: destination not allowed"

/*
 * The first of res a dynamic target may be dialed at (every address a
 * name resolves to is checked against the patterns), or NULL.
 */
static struct addrinfo *
mux_allowed_addr(struct citi *ci, struct addrinfo *res)
{
	const struct destpat_list	*l = &ci->s->tun->o->dests;

	if (!ci->by_pattern)
		return res;
	for (; res != NULL; res = res->ai_next)
		if (destpat_check_addr(l, ci->dst.name, res->ai_addr,
		    ci->dst.port) == DESTPAT_ALLOW)
			return res;
	return NULL;
}

static void
mux_connect_cb(uv_connect_t *req, int status)
{
	struct citi *ci = req->data;

	if (citi_is_gone(ci->state))
		return;		/* cancelled by the close */
	if (status < 0) {
		mux_dial_failed(ci, uv_strerror(status));
		return;
	}
	uv_tcp_nodelay(&ci->tcp, 1);
	mux_dial_connected(ci);
}

static void
mux_gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct citi	*ci = req->data;
	struct addrinfo	*ai;
	char		 host[ADDR_NAME_MAX + 16];
	int		 rc;

	ci->gai_pending = 0;
	if (ci->state == CITI_CLOSED) {
		uv_freeaddrinfo(res);
		mux_citi_event(ci, CITI_EV_REQ_DONE);
		return;
	}
	if (citi_is_gone(ci->state)) {
		uv_freeaddrinfo(res);	/* the close callback frees it */
		return;
	}
	if (status < 0) {
		mux_dial_failed(ci, uv_strerror(status));
		return;
	}
	if (ci->udp) {
		/* A connected UDP socket: no answer to wait for. */
		rc = mux_udp_connect(ci, res->ai_addr);
		uv_freeaddrinfo(res);
		if (rc < 0)
			mux_dial_failed(ci, uv_strerror(rc));
		else
			mux_dial_connected(ci);
		return;
	}
	if ((ai = mux_allowed_addr(ci, res)) == NULL) {
		uv_freeaddrinfo(res);
		addr_format(&ci->dst, host, sizeof(host));
		mux_peer_warn(ci->s, "refused to dial %s: it resolves to "
		    "addresses the destination patterns refuse", host);
		mux_send_resp(ci->s, ci->id, 0, MUX_NOT_ALLOWED);
		mux_citi_event(ci, CITI_EV_DIAL_FAILED);
		return;
	}
	rc = uv_tcp_connect(&ci->connect, &ci->tcp, ai->ai_addr,
	    mux_connect_cb);
	uv_freeaddrinfo(res);
	if (rc < 0) {
		mux_dial_failed(ci, uv_strerror(rc));
		return;
	}
}

/*
 * May this side dial h (over UDP when udp)?  Only a Dst of a forward of
 * that kind the peer listens for.  Returns its index in s->eff, or -1.
 */
static int
mux_dial_allowed(const struct sess *s, const struct hostinfo *h, int udp)
{
	size_t			 i;
	const struct fwd	*f;

	for (i = 0; i < s->eff.n; i++) {
		f = &s->eff.fwds[i];
		/* A join point is dialled by mux_join_dial, by its name. */
		if (f->reverse != !s->server || !f->udp != !udp ||
		    joinpt_name(&f->dst) != NULL)
			continue;
		if (f->dst.port == h->port &&
		    strcasecmp(f->dst.name, h->name) == 0)
			return (int)i;
	}
	return -1;
}

void
mux_on_header(struct sess *s, const struct msg_header *m)
{
	struct citi	*ci;
	struct addrinfo	 hints;
	char		 host[ADDR_NAME_MAX + 16], port[16], why[96];
	int		 rc, fidx, dyn, join;

	addr_format(&m->host, host, sizeof(host));
	if (m->citi == PKT_CITI_CTRL || mux_find(s, m->citi) != NULL) {
		mux_peer_warn(s, "citi %08" PRIx32 " for %s: id already in "
		    "use, refused", m->citi, host);
		mux_send_resp(s, m->citi, 0, "citi id in use");
		return;
	}
	if (s->nciti >= TUN_MAX_CITIS) {
		mux_peer_warn(s, "citi %08" PRIx32 " for %s: too many open "
		    "streams, refused", m->citi, host);
		mux_send_resp(s, m->citi, 0, "too many streams");
		return;
	}
	/* A join point's name is matched exactly, never as a host name. */
	join = joinpt_is(m->host.name, strlen(m->host.name));
	if (join)
		fidx = !m->udp && mux_join_allowed(s, &m->host) ? 0 : -1;
	else
		fidx = mux_dial_allowed(s, &m->host, m->udp);
	/* Else a TCP stream may go where the destination patterns allow. */
	dyn = fidx == -1 && !join && !m->udp;
	if (fidx == -1 && (!dyn || !s->server || s->tun->o->dests.n == 0)) {
		mux_peer_warn(s, "refused to dial %s%s: not a target of the "
		    "forward list", m->udp ? "udp " : "", host);
		mux_send_resp(s, m->citi, 0,
		    "refused: not in the forward list");
		return;
	}
	if (m->udp && mux_udp_dial_full(s, fidx)) {
		mux_peer_warn(s, "citi %08" PRIx32 " for udp %s: %d flows "
		    "already (-udpFlows), refused", m->citi, host,
		    s->tun->o->udp_flows);
		mux_send_resp(s, m->citi, 0, "too many UDP flows");
		return;
	}
	if (dyn && destpat_check_name(&s->tun->o->dests, m->host.name,
	    m->host.port) == DESTPAT_REFUSE) {
		mux_peer_warn(s, "refused to dial %s: not a target of the "
		    "forward list nor allowed by the destination patterns",
		    host);
		mux_send_resp(s, m->citi, 0, MUX_NOT_ALLOWED);
		return;
	}
	if (sess_lim_open(s, why, sizeof(why)) == -1) {
		mux_peer_warn(s, "citi %08" PRIx32 " for %s: %s, refused",
		    m->citi, host, why);
		mux_send_resp(s, m->citi, 0, why);
		return;
	}
	if ((ci = mux_citi_new(s, m->citi, CITI_DIALING)) == NULL) {
		mux_send_resp(s, m->citi, 0, "out of memory");
		return;
	}
	ci->dst = m->host;
	ci->by_pattern = dyn;
	if (joinpt_name(&m->host) != NULL) {
		mux_join_dial(ci);
		return;
	}
	if (m->udp && mux_udp_flow_new(ci, NULL, NULL, fidx) == NULL) {
		mux_dial_failed(ci, "out of memory");
		return;
	}
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = m->udp ? SOCK_DGRAM : SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", m->host.port);
	rc = uv_getaddrinfo(s->tun->loop, &ci->gai, mux_gai_cb,
	    m->host.name[0] ? m->host.name : "localhost", port, &hints);
	if (rc < 0) {
		mux_dial_failed(ci, uv_strerror(rc));
		return;
	}
	ci->gai_pending = 1;
	log_debug("session %" PRId64 ": citi %08" PRIx32 ": dialing %s",
	    s->id, ci->id, host);
}
