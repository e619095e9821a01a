/*
 * UDP flows (docs/protocol.md, "UDP extension"): each sender of a UDP
 * forward's listener (mux_ulsn.c), and each stream the peer opens for a
 * UDP forward we dial, is a flow with its own CITI, whose stream carries
 * the flow's datagrams framed (dgram.c).  The dialing side sends from a
 * UDP socket connected to the target, one per flow, so that the target's
 * answers come back to that flow alone.
 *
 * Nothing a flow holds grows without bound: datagrams waiting for the
 * stream (its window, the session's congestion, a rate) are dropped past
 * TUN_UDP_QUEUE and counted; the peer's datagrams go to the local socket
 * at once or are dropped and counted (UDP promises no more); a datagram
 * the peer cut short waits at most its own length.  A flow idle for
 * -udpTimeout ends, and each forward has at most -udpFlows of them.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "mux_int.h"
#include "tunneld.h"

/*
 * The buffer libuv receives each datagram into.  Its receive callback
 * consumes the datagram before the next is read, on the one loop
 * thread, so every UDP socket of the process can share it.
 */
static uint8_t	mux_udp_rbuf[DGRAM_MAX + 1];

static void	mux_udp_recv_cb(uv_udp_t *, ssize_t, const uv_buf_t *,
		    const struct sockaddr *, unsigned);

void
mux_udp_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	/* One byte more than a datagram may have: a longer one is cut. */
	*buf = uv_buf_init((char *)mux_udp_rbuf, sizeof(mux_udp_rbuf));
}

void
mux_udp_name(const struct sockaddr *sa, char *out, size_t cap)
{
	char	 ip[INET6_ADDRSTRLEN];
	int	 port;

	if (uv_ip_name(sa, ip, sizeof(ip)) != 0) {
		snprintf(out, cap, "?");
		return;
	}
	port = ntohs(sa->sa_family == AF_INET6 ?
	    ((const struct sockaddr_in6 *)sa)->sin6_port :
	    ((const struct sockaddr_in *)sa)->sin_port);
	snprintf(out, cap, sa->sa_family == AF_INET6 ? "[%s]:%d" : "%s:%d",
	    ip, port);
}

void
mux_udp_sockbuf(uv_handle_t *h)
{
	int v = TUN_UDP_SOCKBUF;

	/* Best effort: a smaller buffer only drops sooner. */
	(void)uv_recv_buffer_size(h, &v);
}

static size_t
mux_udp_salen(const struct sockaddr *sa)
{
	return sa->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) :
	    sizeof(struct sockaddr_in);
}

struct uflow *
mux_udp_flow_new(struct citi *ci, struct lsn *l, const struct sockaddr *src,
    int fidx)
{
	struct sess	*s = ci->s;
	struct uflow	*uf;

	if ((uf = calloc(1, sizeof(*uf))) == NULL)
		return NULL;
	uf->s = s;
	uf->ci = ci;
	uf->l = l;
	if (src != NULL)
		memcpy(&uf->src, src, mux_udp_salen(src));
	uf->dial = l == NULL;
	uf->fidx = fidx;
	dgram_q_init(&uf->q, TUN_UDP_QUEUE);
	uf->last = uv_now(s->tun->loop);
	ci->udp = 1;
	ci->uf = uf;
	TAILQ_INSERT_TAIL(&s->uflows, uf, slink);
	return uf;
}

int
mux_udp_dial_full(struct sess *s, int fidx)
{
	struct uflow	*uf;
	int		 n = 0;

	TAILQ_FOREACH(uf, &s->uflows, slink)
		if (uf->dial && uf->fidx == fidx)
			n++;
	return n >= s->tun->o->udp_flows;
}

int
mux_udp_connect(struct citi *ci, const struct sockaddr *sa)
{
	struct uflow	*uf = ci->uf;
	int		 rc;

	if ((rc = uv_udp_init(ci->s->tun->loop, &uf->udp)) < 0)
		return rc;
	uf->udp.data = uf;
	uf->sock = 1;
	ci->s->handles++;
	if ((rc = uv_udp_connect(&uf->udp, sa)) == 0)
		mux_udp_sockbuf((uv_handle_t *)&uf->udp);
	return rc;
}

/* The most stream bytes one packet carries (the AEAD tag rides in it). */
static size_t
mux_udp_cap(const struct sess *s)
{
	return s->aead ? PKT_MAX_PAYLOAD - AEAD_TAG_LEN : PKT_MAX_PAYLOAD;
}

/* Moves waiting datagrams into packets while the stream may take them. */
static void
mux_udp_drain(struct uflow *uf)
{
	struct opkt	*p;
	size_t		 n;

	while (uf->ci != NULL && dgram_q_bytes(&uf->q) > 0 &&
	    mux_citi_may_send(uf->ci)) {
		n = dgram_q_bytes(&uf->q);
		if (n > mux_udp_cap(uf->s))
			n = mux_udp_cap(uf->s);
		if ((p = sess_opkt_new(n)) == NULL)
			return;
		p->len = dgram_q_take(&uf->q, p->data, n);
		mux_citi_send(uf->ci, p);
	}
}

/*
 * Reads the dialing side's socket while its stream takes datagrams or
 * its queue has room: past half of it, the kernel's buffer waits for us.
 */
static void
mux_udp_recv_set(struct uflow *uf)
{
	int want;

	if (!uf->sock)
		return;
	want = uf->ci != NULL && citi_reads(uf->ci->state) &&
	    dgram_q_bytes(&uf->q) < TUN_UDP_QUEUE / 2;
	if (want && !uf->recving) {
		if (uv_udp_recv_start(&uf->udp, mux_udp_alloc_cb,
		    mux_udp_recv_cb) == 0)
			uf->recving = 1;
	} else if (!want && uf->recving) {
		uv_udp_recv_stop(&uf->udp);
		uf->recving = 0;
	}
}

void
mux_udp_reading(struct citi *ci, int may_send)
{
	struct uflow *uf = ci->uf;

	if (uf == NULL)
		return;
	if (may_send)
		mux_udp_drain(uf);
	mux_udp_recv_set(uf);
}

/*
 * Datagrams wait for the end of the reader's batch, so that those read
 * in one turn of the loop share packets (and transport writes): one
 * packet per datagram costs a write each.  A full packet's worth goes
 * at once.
 */
int
mux_udp_local(struct uflow *uf, const uint8_t *p, size_t n)
{
	if (uf->ci == NULL)
		return 0;
	uf->last = uv_now(uf->s->tun->loop);
	if (dgram_q_push(&uf->q, p, n) == -1) {
		uf->dropped++;
		return 0;
	}
	uf->n_up++;
	if (dgram_q_bytes(&uf->q) >= mux_udp_cap(uf->s))
		mux_udp_drain(uf);
	return 1;
}

void
mux_udp_flush(struct uflow *uf)
{
	mux_udp_drain(uf);
	mux_udp_recv_set(uf);
}

/* The dialing side's socket: the target's answers. */
static void
mux_udp_recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
    const struct sockaddr *addr, unsigned flags)
{
	struct uflow *uf = h->data;

	if (nread < 0) {
		/* ICMP errors of earlier sends come back here: not fatal. */
		log_debug("session %" PRId64 ": udp flow: %s", uf->s->id,
		    uv_strerror((int)nread));
		return;
	}
	if (addr == NULL) {
		/* Nothing more to read now: the batch is over. */
		uf->batch = 0;
		mux_udp_flush(uf);
		return;
	}
	if (flags & UV_UDP_PARTIAL)
		uf->dropped++;
	else
		mux_udp_local(uf, (const uint8_t *)buf->base, (size_t)nread);
	if (++uf->batch >= MUX_UDP_BATCH) {
		uf->batch = 0;
		mux_udp_flush(uf);
	}
}

/* One datagram of the peer's, to the local side at once. */
static void
mux_udp_deliver(void *arg, const uint8_t *p, size_t n)
{
	struct uflow	*uf = arg;
	uv_buf_t	 b = uv_buf_init((char *)(uintptr_t)p, n);
	int		 rc;

	uf->n_down++;
	if (uf->sock)
		rc = uv_udp_try_send(&uf->udp, &b, 1, NULL);
	else if (uf->l != NULL)
		rc = uv_udp_try_send(&uf->l->udp, &b, 1,
		    (const struct sockaddr *)&uf->src);
	else
		rc = UV_EBADF;
	if (rc < 0)
		uf->undelivered++;
}

void
mux_udp_data(struct citi *ci, const uint8_t *p, size_t n)
{
	struct uflow	*uf = ci->uf;
	char		 why[ERR_LEN];

	if (uf == NULL)
		return;
	uf->last = uv_now(uf->s->tun->loop);
	if (dgram_feed(&uf->rx, p, n, mux_udp_deliver, uf, why) == 0)
		return;
	mux_peer_warn(ci->s, "citi %08" PRIx32 ": the peer's UDP stream: %s: "
	    "closed", ci->id, why);
	mux_citi_event(ci, CITI_EV_LOCAL_ERROR);
}

void
mux_udp_refused(struct citi *ci)
{
	if (ci->uf != NULL && ci->uf->l != NULL)
		mux_ulsn_hold(ci->uf->l);
}

void
mux_udp_peer_eof(struct citi *ci)
{
	struct uflow	*uf = ci->uf;
	size_t		 n;

	if (uf == NULL || (n = dgram_rx_pending(&uf->rx)) == 0)
		return;
	uf->truncated++;
	mux_peer_warn(ci->s, "citi %08" PRIx32 ": the peer's UDP stream ended "
	    "inside a datagram: its %zu bytes dropped", ci->id, n);
	dgram_rx_free(&uf->rx);
}

static void
mux_udp_closed(uv_handle_t *h)
{
	struct uflow	*uf = h->data;
	struct sess	*s = uf->s;

	free(uf);
	sess_unref(s);
}

/* The flow's counters, when it ends: a warning if it lost datagrams. */
static void
mux_udp_report(const struct uflow *uf, const struct citi *ci)
{
	char	 who[ADDR_NAME_MAX + 32];
	int	 lost = uf->dropped || uf->undelivered || uf->truncated;

	if (uf->dial)
		addr_format(&ci->dst, who, sizeof(who));
	else
		mux_udp_name((const struct sockaddr *)&uf->src, who,
		    sizeof(who));
	if (!lost && !log_verbose())
		return;
	log_msg(lost ? LOG_LVL_INFO : LOG_LVL_DEBUG, "session %" PRId64
	    ": udp flow citi %08"
	    PRIx32 " (%s %s) ended: %" PRIu64 " datagrams to the peer, %"
	    PRIu64 " from it; dropped: %" PRIu64 " (not sent), %" PRIu64
	    " (local socket refused), %" PRIu64 " (cut by the peer)",
	    uf->s->id, ci->id, uf->dial ? "to" : "from", who, uf->n_up,
	    uf->n_down, uf->dropped, uf->undelivered, uf->truncated);
}

void
mux_udp_close(struct citi *ci)
{
	struct uflow *uf = ci->uf;

	if (uf == NULL)
		return;
	/* What never reached the stream is lost with the flow. */
	uf->dropped += dgram_q_count(&uf->q);
	mux_udp_report(uf, ci);
	ci->uf = NULL;
	uf->ci = NULL;
	TAILQ_REMOVE(&uf->s->uflows, uf, slink);
	if (uf->l != NULL)
		mux_ulsn_forget(uf);
	dgram_q_free(&uf->q);
	dgram_rx_free(&uf->rx);
	if (!uf->sock) {
		free(uf);
		return;
	}
	if (uf->recving)
		uv_udp_recv_stop(&uf->udp);
	uv_close((uv_handle_t *)&uf->udp, mux_udp_closed);
}

/*
 * An idle flow ends as a stream does (our zero-length packet); its
 * listener's sender then starts a new one.  A peer that never answers
 * the close has its CITI forgotten after as long again.
 */
void
mux_udp_tick(struct sess *s, uint64_t now)
{
	struct uflow	*uf, *next;
	struct citi	*ci;
	uint64_t	 tmo = (uint64_t)s->tun->o->udp_timeout * 1000;

	for (uf = TAILQ_FIRST(&s->uflows); uf != NULL; uf = next) {
		next = TAILQ_NEXT(uf, slink);
		ci = uf->ci;
		if (now - uf->last < tmo)
			continue;
		if (citi_reads(ci->state)) {
			log_debug("session %" PRId64 ": udp flow citi %08"
			    PRIx32 ": idle, closed", s->id, ci->id);
			if (uf->l != NULL)
				mux_ulsn_unhash(uf);
			mux_citi_event(ci, CITI_EV_LOCAL_EOF);
		} else if (ci->state == CITI_LOCAL_EOF && now - uf->last >=
		    2 * tmo)
			mux_citi_event(ci, CITI_EV_ABORT);
	}
}
