/*
 * The listening side of UDP forwards: one UDP socket per forward, and its
 * flow table, which gives each sender address its flow (mux_udp.c).  A
 * datagram of a sender without one opens a flow (and its CITI, announced
 * with MSG_CTRL_UDP_HEADER) unless the forward has -udpFlows already, the
 * session its most streams, or the tenant's limits refuse it: then it is
 * dropped and counted.  The answers go back from the same socket to the
 * flow's sender.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "mux_int.h"
#include "tunneld.h"

#define ULSN_BUCKETS	256

struct ulsn {
	struct uflow	*tab[ULSN_BUCKETS];	/* by sender, chained */
	TAILQ_HEAD(, uflow) flows;	/* every flow that has our socket */
	TAILQ_HEAD(, uflow) dirty;	/* flows with datagrams to flush */
	int		 batch;		/* datagrams read since a flush */
	size_t		 nflows;	/* counted against -udpFlows */
	uint64_t	 refused;	/* datagrams of senders refused */
	uint64_t	 hold_until;	/* ms: no new flow before (the peer
					 * refused one) */
	uint64_t	 cut;		/* datagrams longer than DGRAM_MAX */
};

/* A sender's address: family, port and address (and v6 scope). */
static int
ulsn_same(const struct sockaddr_storage *a, const struct sockaddr *b)
{
	const struct sockaddr_in	*a4, *b4;
	const struct sockaddr_in6	*a6, *b6;

	if (a->ss_family != b->sa_family)
		return 0;
	if (b->sa_family == AF_INET) {
		a4 = (const struct sockaddr_in *)a;
		b4 = (const struct sockaddr_in *)b;
		return a4->sin_port == b4->sin_port &&
		    a4->sin_addr.s_addr == b4->sin_addr.s_addr;
	}
	a6 = (const struct sockaddr_in6 *)a;
	b6 = (const struct sockaddr_in6 *)b;
	return a6->sin6_port == b6->sin6_port &&
	    a6->sin6_scope_id == b6->sin6_scope_id &&
	    memcmp(&a6->sin6_addr, &b6->sin6_addr, 16) == 0;
}

/* FNV-1a over the port and address. */
static size_t
ulsn_hash(const struct sockaddr *sa)
{
	const uint8_t	*p;
	size_t		 n, i;
	uint32_t	 h = 2166136261u;

	if (sa->sa_family == AF_INET6) {
		p = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->
		    sin6_addr;
		n = 16;
		h = (h ^ ((const struct sockaddr_in6 *)sa)->sin6_port) *
		    16777619u;
	} else {
		p = (const uint8_t *)&((const struct sockaddr_in *)sa)->
		    sin_addr;
		n = 4;
		h = (h ^ ((const struct sockaddr_in *)sa)->sin_port) *
		    16777619u;
	}
	for (i = 0; i < n; i++)
		h = (h ^ p[i]) * 16777619u;
	return h % ULSN_BUCKETS;
}

static struct uflow *
ulsn_find(struct lsn *l, const struct sockaddr *sa)
{
	struct uflow *uf;

	for (uf = l->u->tab[ulsn_hash(sa)]; uf != NULL; uf = uf->hnext)
		if (ulsn_same(&uf->src, sa))
			return uf;
	return NULL;
}

void
mux_ulsn_unhash(struct uflow *uf)
{
	struct uflow **pp;

	if (!uf->hashed)
		return;
	pp = &uf->l->u->tab[ulsn_hash((const struct sockaddr *)&uf->src)];
	for (; *pp != NULL; pp = &(*pp)->hnext)
		if (*pp == uf) {
			*pp = uf->hnext;
			break;
		}
	uf->hashed = 0;
}

void
mux_ulsn_forget(struct uflow *uf)
{
	struct lsn *l = uf->l;

	mux_ulsn_unhash(uf);
	if (uf->dirty) {
		TAILQ_REMOVE(&l->u->dirty, uf, dlink);
		uf->dirty = 0;
	}
	TAILQ_REMOVE(&l->u->flows, uf, llink);
	l->u->nflows--;
	uf->l = NULL;
}

/* Why a new sender is refused: logged at most at the session's rate. */
static void
ulsn_refuse(struct lsn *l, const struct sockaddr *sa, const char *why)
{
	char	 who[64], host[ADDR_NAME_MAX + 16];

	l->u->refused++;
	mux_udp_name(sa, who, sizeof(who));
	addr_format(&l->fwd.src, host, sizeof(host));
	mux_peer_warn(l->s, "udp listener %s: %s, datagram of %s dropped "
	    "(%" PRIu64 " so far)", host, why, who, l->u->refused);
}

/* A new sender's flow, its CITI announced; NULL when refused. */
static struct uflow *
ulsn_open(struct lsn *l, const struct sockaddr *sa)
{
	struct sess	*s = l->s;
	struct citi	*ci;
	struct uflow	*uf;
	size_t		 b;
	char		 why[96];

	if (uv_now(s->tun->loop) < l->u->hold_until) {
		ulsn_refuse(l, sa, "the peer refused a flow just now");
		return NULL;
	}
	if (l->u->nflows >= (size_t)s->tun->o->udp_flows) {
		snprintf(why, sizeof(why), "%zu flows (-udpFlows)",
		    l->u->nflows);
		ulsn_refuse(l, sa, why);
		return NULL;
	}
	if (s->nciti >= TUN_MAX_CITIS) {
		ulsn_refuse(l, sa, "too many open streams");
		return NULL;
	}
	if (sess_lim_open(s, why, sizeof(why)) == -1) {
		ulsn_refuse(l, sa, why);
		return NULL;
	}
	if ((ci = mux_citi_new(s, mux_next_id(s), CITI_OPENING)) == NULL)
		return NULL;
	if ((uf = mux_udp_flow_new(ci, l, sa, -1)) == NULL) {
		mux_citi_event(ci, CITI_EV_ABORT);
		return NULL;
	}
	b = ulsn_hash(sa);
	uf->hnext = l->u->tab[b];
	l->u->tab[b] = uf;
	uf->hashed = 1;
	TAILQ_INSERT_TAIL(&l->u->flows, uf, llink);
	l->u->nflows++;
	if (mux_announce(ci, &l->fwd.dst, 1) == -1) {
		mux_citi_event(ci, CITI_EV_ABORT);	/* frees uf */
		return NULL;
	}
	log_debug("session %" PRId64 ": citi %08" PRIx32 ": new udp flow "
	    "for port %d", s->id, ci->id, l->fwd.dst.port);
	return uf;
}

/* The end of a batch of reads: every flow's datagrams go. */
static void
ulsn_flush(struct lsn *l)
{
	struct uflow *uf;

	l->u->batch = 0;
	while ((uf = TAILQ_FIRST(&l->u->dirty)) != NULL) {
		TAILQ_REMOVE(&l->u->dirty, uf, dlink);
		uf->dirty = 0;
		mux_udp_flush(uf);
	}
}

/* One datagram of a sender, for its flow (a new one if need be). */
static void
ulsn_datagram(struct lsn *l, const struct sockaddr *addr, const uv_buf_t *buf,
    ssize_t nread, unsigned flags)
{
	struct uflow *uf;

	if (flags & UV_UDP_PARTIAL) {
		l->u->cut++;
		return;
	}
	if ((uf = ulsn_find(l, addr)) == NULL &&
	    (uf = ulsn_open(l, addr)) == NULL)
		return;
	if (mux_udp_local(uf, (const uint8_t *)buf->base, (size_t)nread) &&
	    !uf->dirty) {
		TAILQ_INSERT_TAIL(&l->u->dirty, uf, dlink);
		uf->dirty = 1;
	}
}

static void
ulsn_recv_cb(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
    const struct sockaddr *addr, unsigned flags)
{
	struct lsn *l = h->data;

	if (nread < 0) {
		log_debug("session %" PRId64 ": udp listener: %s", l->s->id,
		    uv_strerror((int)nread));
		return;
	}
	if (addr == NULL) {
		/* Nothing more to read now: the batch is over. */
		ulsn_flush(l);
		return;
	}
	if (!l->s->closing)
		ulsn_datagram(l, addr, buf, nread, flags);
	if (++l->u->batch >= MUX_UDP_BATCH)
		ulsn_flush(l);
}

int
mux_ulsn_listen(struct sess *s, const struct fwd *f)
{
	struct lsn	*l;
	struct addrinfo	*res;
	char		 host[ADDR_NAME_MAX + 16], label[ADDR_NAME_MAX + 24];
	int		 rc, fd;

	addr_format(&f->src, host, sizeof(host));
	mux_lsn_label(f, label, sizeof(label));
	if ((res = mux_listen_addr(s, f, host, SOCK_DGRAM)) == NULL)
		return -1;
	if ((l = calloc(1, sizeof(*l))) == NULL ||
	    (l->u = calloc(1, sizeof(*l->u))) == NULL) {
		free(l);
		uv_freeaddrinfo(res);
		return -1;
	}
	TAILQ_INIT(&l->u->flows);
	TAILQ_INIT(&l->u->dirty);
	l->s = s;
	l->fwd = *f;
	uv_udp_init(s->tun->loop, &l->udp);
	l->udp.data = l;
	s->handles++;
	SLIST_INSERT_HEAD(&s->lsns, l, link);
	/* A worker may have been handed the socket of the one it replaced. */
	if ((fd = tun_listener_take(s->tun, label)) != -1) {
		if ((rc = uv_udp_open(&l->udp, fd)) < 0)
			close(fd);
		else
			log_info("forward listener %s: taken over from the "
			    "replaced worker", label);
	} else
		rc = uv_udp_bind(&l->udp, res->ai_addr, 0);
	uv_freeaddrinfo(res);
	if (rc == 0) {
		mux_udp_sockbuf((uv_handle_t *)&l->udp);
		rc = uv_udp_recv_start(&l->udp, mux_udp_alloc_cb, ulsn_recv_cb);
	}
	if (rc < 0) {
		log_err("forward listener %s: %s", label, uv_strerror(rc));
		return -1;
	}
	log_info("forward: listening on %s for udp %s:%d", label,
	    f->dst.name[0] ? f->dst.name : "localhost", f->dst.port);
	return 0;
}

void
mux_ulsn_hold(struct lsn *l)
{
	l->u->hold_until = uv_now(l->s->tun->loop) + MUX_ULSN_HOLD_MS;
}

void
mux_ulsn_close(struct lsn *l)
{
	struct uflow	*uf;
	char		 host[ADDR_NAME_MAX + 16];

	uv_udp_recv_stop(&l->udp);
	while ((uf = TAILQ_FIRST(&l->u->flows)) != NULL)
		mux_ulsn_forget(uf);
	if (l->u->refused == 0 && l->u->cut == 0)
		return;
	addr_format(&l->fwd.src, host, sizeof(host));
	log_info("session %" PRId64 ": udp listener %s: %" PRIu64
	    " datagrams of senders refused, %" PRIu64 " longer than %d bytes",
	    l->s->id, host, l->u->refused, l->u->cut, DGRAM_MAX);
}

void
mux_ulsn_free(struct lsn *l)
{
	free(l->u);
	l->u = NULL;
}
