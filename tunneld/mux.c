/*
 * CITIs: the TCP streams a session carries (wire spec 6.4-6.6).  The side
 * that listens on a forward's Src accepts a local connection, names a CITI
 * id and sends CTRL_HEADER; the other side checks the target against the
 * agreed forward list, dials it and answers CTRL_RESP_HEADER.  Data then
 * flows as NORMAL packets under kptunnel's per-CITI window, and each side
 * sends one zero-length packet to close.
 *
 * Back-pressure: a CITI's local socket is read only while its window has
 * room and the session is not congested; received data is written to the
 * local socket as it comes (the peer's window bounds it) and the SYNC that
 * opens the peer's window goes out only once that write completed, so a
 * slow local reader slows its remote writer and nothing else.
 */

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "err.h"
#include "log.h"
#include "tunneld.h"

enum citi_state {
	CITI_OPENING,		/* listening side, waiting for the answer */
	CITI_DIALING,		/* dialing side, connecting */
	CITI_OPEN
};

struct citi {
	struct citi	*hnext;
	TAILQ_ENTRY(citi) olink;	/* sess->opening */
	struct sess	*s;
	uint32_t	 id;
	enum citi_state	 state;
	uv_tcp_t	 tcp;
	uv_getaddrinfo_t gai;
	uv_connect_t	 connect;
	uv_shutdown_t	 shutdown;
	struct hostinfo	 dst;
	uint64_t	 deadline;	/* CITI_OPENING */
	/* sending */
	uint64_t	 sent;		/* packets queued on this CITI */
	uint64_t	 syncs_rcvd;
	uint64_t	 mark[4];	/* seq of packets 29, 59, ... mod 4 */
	uint64_t	 hdr_seq;	/* our CTRL_HEADER / RESP, for trimming */
	int		 hdr_unacked;
	struct opkt	*rx;		/* buffer handed to libuv's read */
	/* receiving */
	uint64_t	 rcvd;
	uint64_t	 syncs_sent;
	/* flags */
	int		 in_table;
	int		 reading;
	int		 we_closed;	/* our zero-length packet is queued */
	int		 peer_closed;
	int		 handle_closing;
	int		 shut_done;	/* shutdown(SHUT_WR) issued */
	int		 shut_pending;
	int		 gai_pending;
	int		 connecting;
};

struct lwreq {
	uv_write_t	 req;
	struct citi	*ci;
	int64_t		 sync;		/* packNo to SYNC once written, or -1 */
	size_t		 len;
	uint8_t		 data[];
};

static void	mux_read_cb(uv_stream_t *, ssize_t, const uv_buf_t *);
static void	mux_send_close(struct citi *);
static void	mux_delete(struct citi *);
static void	mux_alloc_cb(uv_handle_t *, size_t, uv_buf_t *);

void
mux_init(struct sess *s)
{
	s->tabsz = 64;
	s->tab = calloc(s->tabsz, sizeof(*s->tab));
	s->next_citi = s->server ? TUN_CITI_SERVER : TUN_CITI_CLIENT;
	TAILQ_INIT(&s->opening);
	SLIST_INIT(&s->lsns);
	ratelog_init(&s->peer_log, 0, 0);
}

/*
 * A warning the peer can cause at will (a refused or failed stream
 * request): rate-limited per session, so that a flood of requests does not
 * become a flood of log lines; the lines dropped are counted in the next.
 */
static void __attribute__((format(printf, 2, 3)))
mux_peer_warn(struct sess *s, const char *fmt, ...)
{
	char		 line[512];
	unsigned long	 dropped;
	va_list		 ap;

	if (!ratelog_allow(&s->peer_log, uv_now(s->tun->loop), &dropped))
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (dropped > 0)
		log_warnx("session %" PRId64 ": %s (%lu more suppressed)",
		    s->id, line, dropped);
	else
		log_warnx("session %" PRId64 ": %s", s->id, line);
}

size_t
mux_count(const struct sess *s)
{
	return s->nciti;
}

static struct citi *
mux_find(struct sess *s, uint32_t id)
{
	struct citi *ci;

	if (s->tab == NULL)
		return NULL;
	for (ci = s->tab[id % s->tabsz]; ci != NULL; ci = ci->hnext)
		if (ci->id == id)
			return ci;
	return NULL;
}

static int
mux_insert(struct sess *s, struct citi *ci)
{
	struct citi	**ntab, *c, *next;
	size_t		  i, nsz;

	if (s->tab == NULL)
		return -1;
	if (s->nciti >= s->tabsz * 2) {
		nsz = s->tabsz * 4;
		if ((ntab = calloc(nsz, sizeof(*ntab))) != NULL) {
			for (i = 0; i < s->tabsz; i++)
				for (c = s->tab[i]; c != NULL; c = next) {
					next = c->hnext;
					c->hnext = ntab[c->id % nsz];
					ntab[c->id % nsz] = c;
				}
			free(s->tab);
			s->tab = ntab;
			s->tabsz = nsz;
		}
	}
	ci->hnext = s->tab[ci->id % s->tabsz];
	s->tab[ci->id % s->tabsz] = ci;
	ci->in_table = 1;
	s->nciti++;
	return 0;
}

static void
mux_remove(struct citi *ci)
{
	struct sess	 *s = ci->s;
	struct citi	**pp;

	if (ci->state == CITI_OPENING)
		TAILQ_REMOVE(&s->opening, ci, olink);
	ci->state = CITI_OPEN;
	if (!ci->in_table)
		return;
	for (pp = &s->tab[ci->id % s->tabsz]; *pp != NULL;
	    pp = &(*pp)->hnext)
		if (*pp == ci) {
			*pp = ci->hnext;
			break;
		}
	ci->in_table = 0;
	s->nciti--;
}

static void
mux_citi_free(struct citi *ci)
{
	struct sess *s = ci->s;

	free(ci->rx);
	free(ci);
	sess_unref(s);
}

static void
mux_handle_closed(uv_handle_t *h)
{
	struct citi *ci = h->data;

	ci->handle_closing = 2;
	if (!ci->gai_pending)
		mux_citi_free(ci);
}

static void
mux_close_handle(struct citi *ci)
{
	mux_remove(ci);		/* freed with the handle: never left listed */
	if (ci->handle_closing)
		return;
	ci->handle_closing = 1;
	uv_close((uv_handle_t *)&ci->tcp, mux_handle_closed);
}

static void
mux_shutdown_cb(uv_shutdown_t *req, int status)
{
	struct citi *ci = req->data;

	ci->shut_pending = 0;
	if (status < 0 && ci->in_table) {
		mux_send_close(ci);	/* the local socket is broken */
		mux_delete(ci);
	} else if (!ci->in_table)
		mux_close_handle(ci);
}

/* Forgets the CITI now and closes its local socket. */
static void
mux_delete(struct citi *ci)
{
	mux_remove(ci);
	if (ci->reading) {
		uv_read_stop((uv_stream_t *)&ci->tcp);
		ci->reading = 0;
	}
	if (ci->gai_pending)
		uv_cancel((uv_req_t *)&ci->gai);
	mux_close_handle(ci);
}

/*
 * A zero-length packet closes one direction, like a TCP FIN: the local
 * socket is shut down for writing once the data before it is written, and
 * the CITI is forgotten when both directions are closed.  A Go peer closes
 * both at once, which this handles as well.
 */
static void
mux_finish(struct citi *ci)
{
	if (ci->peer_closed && !ci->shut_done && !ci->handle_closing &&
	    ci->state == CITI_OPEN) {
		ci->shut_done = 1;
		if (uv_shutdown(&ci->shutdown, (uv_stream_t *)&ci->tcp,
		    mux_shutdown_cb) == 0)
			ci->shut_pending = 1;
	}
	if (!ci->we_closed || !ci->peer_closed)
		return;
	mux_remove(ci);
	if (!ci->shut_pending)
		mux_close_handle(ci);
}

static struct citi *
mux_citi_new(struct sess *s, uint32_t id, enum citi_state state)
{
	struct citi *ci;

	if ((ci = calloc(1, sizeof(*ci))) == NULL)
		return NULL;
	ci->s = s;
	ci->id = id;
	ci->state = state;
	uv_tcp_init(s->tun->loop, &ci->tcp);
	ci->tcp.data = ci;
	ci->gai.data = ci;
	ci->connect.data = ci;
	ci->shutdown.data = ci;
	s->handles++;
	if (mux_insert(s, ci) == -1) {
		ci->handle_closing = 1;
		uv_close((uv_handle_t *)&ci->tcp, mux_handle_closed);
		return NULL;
	}
	if (state == CITI_OPENING)
		TAILQ_INSERT_TAIL(&s->opening, ci, olink);
	return ci;
}

static int
mux_can_send(const struct citi *ci)
{
	return ci->sent < TUN_SYNC_GROUP * ci->syncs_rcvd + TUN_WINDOW;
}

static void
mux_update_reading(struct citi *ci)
{
	int want = ci->state == CITI_OPEN && ci->in_table && !ci->we_closed &&
	    !ci->handle_closing && !ci->s->congested && mux_can_send(ci);

	if (want && !ci->reading) {
		if (uv_read_start((uv_stream_t *)&ci->tcp, mux_alloc_cb,
		    mux_read_cb) == 0)
			ci->reading = 1;
	} else if (!want && ci->reading) {
		uv_read_stop((uv_stream_t *)&ci->tcp);
		ci->reading = 0;
	}
}

/* Queues a packet of this CITI, remembering where its SYNC groups end. */
static void
mux_enqueue(struct citi *ci, struct opkt *p)
{
	uint64_t idx = ci->sent++;

	p->citi = ci->id;
	sess_enqueue(ci->s, p);
	if (idx % TUN_SYNC_GROUP == TUN_SYNC_GROUP - 1)
		ci->mark[(idx / TUN_SYNC_GROUP) % 4] = p->seq;
}

static void
mux_send_close(struct citi *ci)
{
	struct opkt *p;

	if (ci->we_closed)
		return;
	ci->we_closed = 1;
	mux_update_reading(ci);
	if ((p = sess_opkt_new(0)) != NULL)
		mux_enqueue(ci, p);
}

static void
mux_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct citi *ci = h->data;

	if (ci->rx == NULL)
		ci->rx = sess_opkt_new(PKT_MAX_PAYLOAD);
	if (ci->rx == NULL)
		*buf = uv_buf_init(NULL, 0);
	else
		*buf = uv_buf_init((char *)ci->rx->data, PKT_MAX_PAYLOAD);
}

static void
mux_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct citi	*ci = st->data;
	struct opkt	*p = ci->rx, *np;

	if (nread == 0)
		return;
	if (nread < 0) {
		free(ci->rx);
		ci->rx = NULL;
		log_debug("citi %08" PRIx32 ": local side %s", ci->id,
		    nread == UV_EOF ? "closed" : uv_strerror(nread));
		mux_send_close(ci);
		if (nread == UV_EOF)
			mux_finish(ci);
		else
			mux_delete(ci);
		return;
	}
	ci->rx = NULL;
	/* Most reads are short: do not keep 64 KiB for each in history. */
	if (nread < PKT_MAX_PAYLOAD / 2 &&
	    (np = realloc(p, sizeof(*p) + nread)) != NULL)
		p = np;
	p->len = nread;
	p->cap = nread;
	mux_enqueue(ci, p);
	mux_update_reading(ci);
}

static int
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

static void
mux_dial_failed(struct citi *ci, const char *why)
{
	char host[ADDR_NAME_MAX + 16], mess[ADDR_NAME_MAX + MSG_STR_MAX];

	addr_format(&ci->dst, host, sizeof(host));
	snprintf(mess, sizeof(mess), "dial tcp %s: %s", host, why);
	mux_peer_warn(ci->s, "citi %08" PRIx32 ": %s", ci->id, mess);
	if (!ci->peer_closed)
		mux_send_resp(ci->s, ci->id, 0, mess);
	mux_delete(ci);
}

static void
mux_connect_cb(uv_connect_t *req, int status)
{
	struct citi	*ci = req->data;
	struct sess	*s = ci->s;

	ci->connecting = 0;
	if (ci->handle_closing || !ci->in_table) {
		mux_close_handle(ci);
		return;
	}
	if (status < 0) {
		mux_dial_failed(ci, uv_strerror(status));
		return;
	}
	uv_tcp_nodelay(&ci->tcp, 1);
	ci->state = CITI_OPEN;
	log_debug("session %" PRId64 ": citi %08" PRIx32 " connected",
	    s->id, ci->id);
	if (mux_send_resp(s, ci->id, 1, "<nil>") == -1) {
		mux_delete(ci);
		return;
	}
	ci->hdr_seq = s->next_seq - 1;
	ci->hdr_unacked = 1;
	if (ci->peer_closed) {
		/* The peer gave up waiting (open timeout). */
		mux_send_close(ci);
		mux_delete(ci);
		return;
	}
	mux_update_reading(ci);
}

static void
mux_gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct citi	*ci = req->data;
	int		 rc;

	ci->gai_pending = 0;
	if (ci->handle_closing == 2) {
		uv_freeaddrinfo(res);
		mux_citi_free(ci);
		return;
	}
	if (ci->handle_closing || !ci->in_table) {
		uv_freeaddrinfo(res);
		mux_close_handle(ci);
		return;
	}
	if (status < 0) {
		mux_dial_failed(ci, uv_strerror(status));
		return;
	}
	rc = uv_tcp_connect(&ci->connect, &ci->tcp, res->ai_addr,
	    mux_connect_cb);
	uv_freeaddrinfo(res);
	if (rc < 0) {
		mux_dial_failed(ci, uv_strerror(rc));
		return;
	}
	ci->connecting = 1;
}

/* May this side dial h?  Only a Dst of a forward the peer listens for. */
static int
mux_dial_allowed(const struct sess *s, const struct hostinfo *h)
{
	size_t			 i;
	const struct fwd	*f;

	for (i = 0; i < s->eff.n; i++) {
		f = &s->eff.fwds[i];
		if (f->reverse != !s->server)
			continue;
		if (f->dst.port == h->port &&
		    strcasecmp(f->dst.name, h->name) == 0)
			return 1;
	}
	return 0;
}

static void
mux_on_header(struct sess *s, const struct msg_header *m)
{
	struct citi	*ci;
	struct addrinfo	 hints;
	char		 host[ADDR_NAME_MAX + 16], port[16];
	int		 rc;

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
	if (!mux_dial_allowed(s, &m->host)) {
		mux_peer_warn(s, "refused to dial %s: not a target of the "
		    "forward list", host);
		mux_send_resp(s, m->citi, 0,
		    "refused: not in the forward list");
		return;
	}
	if ((ci = mux_citi_new(s, m->citi, CITI_DIALING)) == NULL) {
		mux_send_resp(s, m->citi, 0, "out of memory");
		return;
	}
	ci->dst = m->host;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
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

static void
mux_on_resp(struct sess *s, const struct msg_resp_header *m)
{
	struct citi *ci = mux_find(s, m->citi);

	if (ci == NULL || ci->state != CITI_OPENING) {
		log_debug("session %" PRId64 ": answer for unknown citi %08"
		    PRIx32, s->id, m->citi);
		return;
	}
	sess_acked(s, ci->hdr_seq);
	TAILQ_REMOVE(&s->opening, ci, olink);
	ci->state = CITI_OPEN;
	if (!m->result) {
		mux_peer_warn(s, "citi %08" PRIx32 " to port %d refused by "
		    "the peer: %s", ci->id, ci->dst.port, m->mess);
		/* Lets a peer that registers failed CITIs forget this one. */
		mux_send_close(ci);
		mux_delete(ci);
		return;
	}
	mux_update_reading(ci);
}

int
mux_ctrl(struct sess *s, uint8_t *p, size_t n, char *err)
{
	struct msg_header	h;
	struct msg_resp_header	r;
	int			type;

	type = msg_ctrl_decode(p, n, &h, &r, err);
	if (type < 0)
		return -1;
	if (type == MSG_CTRL_HEADER)
		mux_on_header(s, &h);
	else if (type == MSG_CTRL_RESP_HEADER)
		mux_on_resp(s, &r);
	return 0;
}

static void
mux_write_cb(uv_write_t *req, int status)
{
	struct lwreq	*w = (struct lwreq *)req;
	struct citi	*ci = w->ci;
	int64_t		 sync = w->sync;

	free(w);
	if (ci->handle_closing)
		return;
	if (status < 0) {
		log_debug("citi %08" PRIx32 ": local write: %s", ci->id,
		    uv_strerror(status));
		mux_send_close(ci);
		mux_delete(ci);
		return;
	}
	if (sync >= 0 && ci->in_table) {
		ci->syncs_sent++;
		sess_send_sync(ci->s, ci->id, sync);
	}
}

int
mux_data(struct sess *s, uint32_t id, uint8_t *p, size_t n, char *err)
{
	struct citi	*ci = mux_find(s, id);
	struct lwreq	*w;
	uint64_t	 idx;
	int64_t		 sync;
	ssize_t		 done = 0;
	uv_buf_t	 b;

	if (ci == NULL)
		return 0;	/* a CITI already closed here: discard */
	idx = ci->rcvd++;
	if (ci->rcvd > TUN_SYNC_GROUP * ci->syncs_sent + TUN_WINDOW) {
		err_set(err, "citi %08" PRIx32 ": the peer ignores the flow "
		    "control window", id);
		return -1;
	}
	if (ci->hdr_unacked && n > 0) {
		/* The peer sends data only after reading our answer. */
		ci->hdr_unacked = 0;
		sess_acked(s, ci->hdr_seq);
	}
	sync = idx % TUN_SYNC_GROUP == TUN_SYNC_GROUP - 1 ? (int64_t)idx : -1;
	if (n == 0) {
		ci->peer_closed = 1;
		if (sync >= 0) {
			ci->syncs_sent++;
			sess_send_sync(s, id, sync);
		}
		if (ci->state == CITI_OPEN)
			mux_finish(ci);
		return 0;
	}
	if (ci->state != CITI_OPEN || ci->peer_closed) {
		err_set(err, "citi %08" PRIx32 ": data %s", id,
		    ci->peer_closed ? "after its close" : "before it was open");
		return -1;
	}
	if (ci->handle_closing)
		return 0;
	if (uv_stream_get_write_queue_size((uv_stream_t *)&ci->tcp) == 0) {
		b = uv_buf_init((char *)p, n);
		done = uv_try_write((uv_stream_t *)&ci->tcp, &b, 1);
		if (done < 0 && done != UV_EAGAIN) {
			mux_send_close(ci);
			mux_delete(ci);
			return 0;
		}
		if (done < 0)
			done = 0;
		if ((size_t)done == n) {
			if (sync >= 0) {
				ci->syncs_sent++;
				sess_send_sync(s, id, sync);
			}
			return 0;
		}
	}
	if ((w = malloc(sizeof(*w) + n - done)) == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	w->ci = ci;
	w->sync = sync;
	w->len = n - done;
	memcpy(w->data, p + done, w->len);
	b = uv_buf_init((char *)w->data, w->len);
	if (uv_write(&w->req, (uv_stream_t *)&ci->tcp, &b, 1,
	    mux_write_cb) < 0) {
		free(w);
		mux_send_close(ci);
		mux_delete(ci);
	}
	return 0;
}

int
mux_sync(struct sess *s, uint32_t id, int64_t packno, char *err)
{
	struct citi *ci = mux_find(s, id);

	if (ci == NULL)
		return 0;
	if (packno < 0 || (uint64_t)packno >= ci->sent ||
	    (uint64_t)packno != TUN_SYNC_GROUP * (ci->syncs_rcvd + 1) - 1) {
		err_set(err, "citi %08" PRIx32 ": SYNC for packet %" PRId64
		    " does not match the %" PRIu64 " sent", id, packno,
		    ci->sent);
		return -1;
	}
	ci->syncs_rcvd++;
	sess_acked(s, ci->mark[(packno / TUN_SYNC_GROUP) % 4]);
	mux_update_reading(ci);
	return 0;
}

void
mux_congestion(struct sess *s, int congested)
{
	struct citi	*ci;
	size_t		 i;

	for (i = 0; s->tab != NULL && i < s->tabsz; i++)
		for (ci = s->tab[i]; ci != NULL; ci = ci->hnext)
			mux_update_reading(ci);
}

void
mux_tick(struct sess *s, uint64_t now)
{
	struct citi *ci;

	while ((ci = TAILQ_FIRST(&s->opening)) != NULL && now >= ci->deadline) {
		log_warnx("session %" PRId64 ": citi %08" PRIx32 ": no answer "
		    "from the peer in %d s", s->id, ci->id,
		    s->tun->o->open_timeout);
		TAILQ_REMOVE(&s->opening, ci, olink);
		ci->state = CITI_OPEN;
		mux_send_close(ci);
		mux_delete(ci);
	}
}

static void
mux_accept_cb(uv_stream_t *server, int status)
{
	struct lsn		*l = server->data;
	struct sess		*s = l->s;
	struct citi		*ci;
	struct msg_header	 m;
	char			*json;
	size_t			 len;
	uint32_t		 id;

	if (status < 0 || s->closing)
		return;
	if (s->nciti >= TUN_MAX_CITIS) {
		uv_tcp_t *tmp = malloc(sizeof(*tmp));

		/* Take the connection off the backlog and close it. */
		if (tmp == NULL)
			return;
		uv_tcp_init(s->tun->loop, tmp);
		if (uv_accept(server, (uv_stream_t *)tmp) == 0)
			log_warnx("session %" PRId64 ": too many open streams, "
			    "local connection refused", s->id);
		uv_close((uv_handle_t *)tmp, (uv_close_cb)free);
		return;
	}
	do {
		id = s->next_citi++;
		if (s->next_citi == 0)
			s->next_citi = s->server ? TUN_CITI_SERVER : TUN_CITI_CLIENT;
	} while (mux_find(s, id) != NULL);
	if ((ci = mux_citi_new(s, id, CITI_OPENING)) == NULL)
		return;
	if (uv_accept(server, (uv_stream_t *)&ci->tcp) < 0) {
		mux_delete(ci);
		return;
	}
	uv_tcp_nodelay(&ci->tcp, 1);
	ci->dst = l->fwd.dst;
	ci->deadline = uv_now(s->tun->loop) +
	    (uint64_t)s->tun->o->open_timeout * 1000;
	memset(&m, 0, sizeof(m));
	m.host = l->fwd.dst;
	m.citi = id;
	if ((json = msg_header_encode(&m, &len)) == NULL ||
	    sess_send_ctrl(s, json, len) == -1) {
		free(json);
		mux_delete(ci);
		return;
	}
	free(json);
	ci->hdr_seq = s->next_seq - 1;
	log_debug("session %" PRId64 ": citi %08" PRIx32 ": new local "
	    "connection for port %d", s->id, id, l->fwd.dst.port);
}

static void
mux_lsn_closed(uv_handle_t *h)
{
	struct lsn	*l = h->data;
	struct sess	*s = l->s;

	free(l);
	sess_unref(s);
}

/* The listener of s on f's source address, or NULL. */
struct lsn *
mux_lsn_find(struct sess *s, const struct fwd *f)
{
	struct lsn *l;

	SLIST_FOREACH(l, &s->lsns, link)
		if (l->fwd.src.port == f->src.port &&
		    strcmp(l->fwd.src.name, f->src.name) == 0)
			return l;
	return NULL;
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

static int
mux_listen(struct sess *s, const struct fwd *f)
{
	struct lsn	*l;
	struct addrinfo	 hints, *res = NULL;
	uv_getaddrinfo_t req;
	char		 port[16], host[ADDR_NAME_MAX + 16];
	int		 rc, fd;

	addr_format(&f->src, host, sizeof(host));
	if (f->src.name[0] == '\0')
		log_warnx("forward listener %s: empty host, listening on all "
		    "interfaces (write 127.0.0.1%s for local only)", host, host);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", f->src.port);
	rc = uv_getaddrinfo(s->tun->loop, &req, NULL,
	    f->src.name[0] ? f->src.name : "::", port, &hints);
	if (rc < 0) {
		log_err("forward listener %s: %s", host, uv_strerror(rc));
		return -1;
	}
	res = req.addrinfo;
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
	return 0;
}

void
mux_stop(struct sess *s)
{
	struct lsn	*l;
	struct citi	*ci;
	size_t		 i;
	unsigned long	 dropped;

	if ((dropped = ratelog_take(&s->peer_log)) > 0)
		log_warnx("session %" PRId64 ": %lu more warnings about the "
		    "peer's requests suppressed", s->id, dropped);
	while ((l = SLIST_FIRST(&s->lsns)) != NULL) {
		SLIST_REMOVE_HEAD(&s->lsns, link);
		uv_close((uv_handle_t *)&l->tcp, mux_lsn_closed);
	}
	for (i = 0; s->tab != NULL && i < s->tabsz; i++)
		while ((ci = s->tab[i]) != NULL) {
			ci->we_closed = ci->peer_closed = 1;
			mux_delete(ci);
		}
}
