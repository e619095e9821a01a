/*
 * CITIs: the TCP streams a session carries (wire spec 6.4-6.6).  The side
 * that listens on a forward's Src accepts a local connection, names a CITI
 * id and sends CTRL_HEADER; the other side checks the target against the
 * agreed forward list, dials it and answers CTRL_RESP_HEADER.  Data then
 * flows as NORMAL packets under kptunnel's per-CITI window, and each side
 * sends one zero-length packet to close.
 *
 * A CITI's lifecycle is the table of citi.c; every change of state goes
 * through mux_citi_event(), which applies the table's actions.
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

#include "citi.h"
#include "err.h"
#include "log.h"
#include "tunneld.h"

/*
 * Besides its lifecycle state, a CITI keeps two fields that are not
 * lifecycle and change independently of it: `reading` mirrors whether
 * libuv reads the local socket, which flow control (the window, the
 * session's congestion) switches on and off many times in one state; and
 * `gai_pending` says a resolver request still holds a pointer to the CITI,
 * which only decides when its memory may go (CITI_CLOSED).
 */
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
	/* not lifecycle: see above */
	int		 reading;
	int		 gai_pending;
};

struct lwreq {
	uv_write_t	 req;
	struct citi	*ci;
	int64_t		 sync;		/* packNo to SYNC once written, or -1 */
	size_t		 len;
	uint8_t		 data[];
};

static void	mux_read_cb(uv_stream_t *, ssize_t, const uv_buf_t *);
static void	mux_alloc_cb(uv_handle_t *, size_t, uv_buf_t *);
static enum citi_state mux_citi_event(struct citi *, enum citi_event);
static void	mux_sync_out(struct citi *, int64_t);

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

/* Grows the id table when its chains get long; keeps it on failure. */
static void
mux_grow(struct sess *s)
{
	struct citi	**ntab, *c, *next;
	size_t		  i, nsz;

	nsz = s->tabsz * 4;
	if ((ntab = calloc(nsz, sizeof(*ntab))) == NULL)
		return;
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

static void
mux_insert(struct sess *s, struct citi *ci)
{
	if (s->nciti >= s->tabsz * 2)
		mux_grow(s);
	ci->hnext = s->tab[ci->id % s->tabsz];
	s->tab[ci->id % s->tabsz] = ci;
	s->nciti++;
}

static void
mux_remove(struct citi *ci)
{
	struct sess	 *s = ci->s;
	struct citi	**pp;

	for (pp = &s->tab[ci->id % s->tabsz]; *pp != NULL;
	    pp = &(*pp)->hnext)
		if (*pp == ci) {
			*pp = ci->hnext;
			break;
		}
	s->nciti--;
}

static void
mux_handle_closed(uv_handle_t *h)
{
	mux_citi_event(h->data, CITI_EV_HANDLE_CLOSED);
}

static void
mux_shutdown_cb(uv_shutdown_t *req, int status)
{
	mux_citi_event(req->data, status < 0 ? CITI_EV_LOCAL_ERROR :
	    CITI_EV_SHUT_DONE);
}

static int
mux_can_send(const struct citi *ci)
{
	return ci->sent < TUN_SYNC_GROUP * ci->syncs_rcvd + TUN_WINDOW;
}

static void
mux_update_reading(struct citi *ci)
{
	int want = citi_reads(ci->state) && !ci->s->congested &&
	    mux_can_send(ci);

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

/* Our zero-length packet: this side sends nothing more (wire spec 6.6). */
static void
mux_send_close(struct citi *ci)
{
	struct opkt *p;

	if ((p = sess_opkt_new(0)) != NULL)
		mux_enqueue(ci, p);
}

/* FIN to the local socket once its queued writes are done. */
static void
mux_shutdown(struct citi *ci)
{
	if (uv_shutdown(&ci->shutdown, (uv_stream_t *)&ci->tcp,
	    mux_shutdown_cb) != 0)
		mux_citi_event(ci, CITI_EV_SHUT_DONE);
}

/* Entering CITI_CLOSING: stop everything and close the local socket. */
static void
mux_close_handle(struct citi *ci)
{
	if (ci->reading) {
		uv_read_stop((uv_stream_t *)&ci->tcp);
		ci->reading = 0;
	}
	if (ci->gai_pending)
		uv_cancel((uv_req_t *)&ci->gai);
	uv_close((uv_handle_t *)&ci->tcp, mux_handle_closed);
}

static void
mux_citi_free(struct citi *ci)
{
	struct sess *s = ci->s;

	free(ci->rx);
	free(ci);
	sess_unref(s);
}

/*
 * The one place a CITI changes state: looks the move up in citi.c's table,
 * refuses (logs, keeps the state) an illegal one, and applies the move's
 * actions and the bookkeeping of the states left and entered.  Returns the
 * state now; CITI_FREED means ci is gone.
 */
static enum citi_state
mux_citi_event(struct citi *ci, enum citi_event ev)
{
	enum citi_state	from = ci->state, to;
	unsigned	act;

	if (citi_next(from, ev, &to, &act) == -1) {
		mux_peer_warn(ci->s, "citi %08" PRIx32 ": %s when %s: ignored",
		    ci->id, citi_event_name(ev), citi_state_name(from));
		return from;
	}
	ci->state = to;
	if (citi_is_opening(from) && !citi_is_opening(to))
		TAILQ_REMOVE(&ci->s->opening, ci, olink);
	if (citi_in_table(from) && !citi_in_table(to))
		mux_remove(ci);
	if (act & CITI_A_SEND_CLOSE)
		mux_send_close(ci);
	if (to == CITI_FREED) {
		mux_citi_free(ci);
		return CITI_FREED;
	}
	if (to == CITI_CLOSED)
		return ci->gai_pending ? to :
		    mux_citi_event(ci, CITI_EV_REQ_DONE);
	if (to == CITI_CLOSING && from != CITI_CLOSING)
		mux_close_handle(ci);
	else if (!citi_is_gone(to))
		mux_update_reading(ci);
	if (act & CITI_A_SHUTDOWN)
		mux_shutdown(ci);
	return ci->state;
}

/*
 * A new CITI in state st (CITI_DIALING or CITI_OPENING), listed in the
 * session's table; NULL if out of memory.
 */
static struct citi *
mux_citi_new(struct sess *s, uint32_t id, enum citi_state st)
{
	struct citi *ci;

	if (s->tab == NULL || (ci = calloc(1, sizeof(*ci))) == NULL)
		return NULL;
	ci->s = s;
	ci->id = id;
	ci->state = st;
	uv_tcp_init(s->tun->loop, &ci->tcp);
	ci->tcp.data = ci;
	ci->gai.data = ci;
	ci->connect.data = ci;
	ci->shutdown.data = ci;
	s->handles++;
	mux_insert(s, ci);
	if (citi_is_opening(st))
		TAILQ_INSERT_TAIL(&s->opening, ci, olink);
	return ci;
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
		mux_citi_event(ci, nread == UV_EOF ? CITI_EV_LOCAL_EOF :
		    CITI_EV_LOCAL_ERROR);
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
	if (ci->state == CITI_DIALING)	/* else the peer gave up on it */
		mux_send_resp(ci->s, ci->id, 0, mess);
	mux_citi_event(ci, CITI_EV_DIAL_FAILED);
}

static void
mux_connect_cb(uv_connect_t *req, int status)
{
	struct citi	*ci = req->data;
	struct sess	*s = ci->s;

	if (citi_is_gone(ci->state))
		return;		/* cancelled by the close */
	if (status < 0) {
		mux_dial_failed(ci, uv_strerror(status));
		return;
	}
	uv_tcp_nodelay(&ci->tcp, 1);
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

static void
mux_gai_cb(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct citi	*ci = req->data;
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
	rc = uv_tcp_connect(&ci->connect, &ci->tcp, res->ai_addr,
	    mux_connect_cb);
	uv_freeaddrinfo(res);
	if (rc < 0) {
		mux_dial_failed(ci, uv_strerror(rc));
		return;
	}
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

	if (ci == NULL || !citi_is_opening(ci->state)) {
		log_debug("session %" PRId64 ": answer for unknown citi %08"
		    PRIx32, s->id, m->citi);
		return;
	}
	sess_acked(s, ci->hdr_seq);
	if (!m->result)
		mux_peer_warn(s, "citi %08" PRIx32 " to port %d refused by "
		    "the peer: %s", ci->id, ci->dst.port, m->mess);
	mux_citi_event(ci, m->result ? CITI_EV_ANSWER_OK : CITI_EV_ANSWER_NG);
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
	if (citi_is_gone(ci->state))
		return;
	if (status < 0) {
		log_debug("citi %08" PRIx32 ": local write: %s", ci->id,
		    uv_strerror(status));
		mux_citi_event(ci, CITI_EV_LOCAL_ERROR);
		return;
	}
	if (citi_in_table(ci->state))
		mux_sync_out(ci, sync);
}

/* Our SYNC for the peer's packet number sync, if that ends a group. */
static void
mux_sync_out(struct citi *ci, int64_t sync)
{
	if (sync < 0)
		return;
	ci->syncs_sent++;
	sess_send_sync(ci->s, ci->id, sync);
}

/*
 * Writes the peer's data to the local socket: at once what the kernel
 * takes, the rest through a request whose callback sends the SYNC (so that
 * a slow local reader holds the peer's window shut).  Returns 0, or -1 if
 * out of memory (a local failure ends the CITI, not the session).
 */
static int
mux_write_local(struct citi *ci, uint8_t *p, size_t n, int64_t sync,
    char *err)
{
	struct lwreq	*w;
	ssize_t		 done = 0;
	uv_buf_t	 b;

	if (uv_stream_get_write_queue_size((uv_stream_t *)&ci->tcp) == 0) {
		b = uv_buf_init((char *)p, n);
		done = uv_try_write((uv_stream_t *)&ci->tcp, &b, 1);
		if (done < 0 && done != UV_EAGAIN) {
			mux_citi_event(ci, CITI_EV_LOCAL_ERROR);
			return 0;
		}
		if (done < 0)
			done = 0;
		if ((size_t)done == n) {
			mux_sync_out(ci, sync);
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
		mux_citi_event(ci, CITI_EV_LOCAL_ERROR);
	}
	return 0;
}

int
mux_data(struct sess *s, uint32_t id, uint8_t *p, size_t n, char *err)
{
	struct citi	*ci = mux_find(s, id);
	uint64_t	 idx;
	int64_t		 sync;

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
		mux_sync_out(ci, sync);
		mux_citi_event(ci, CITI_EV_PEER_EOF);
		return 0;
	}
	if (!citi_takes_data(ci->state)) {
		err_set(err, "citi %08" PRIx32 ": data %s", id,
		    ci->state == CITI_DIALING || ci->state == CITI_OPENING ?
		    "before it was open" : "after its close");
		return -1;
	}
	return mux_write_local(ci, p, n, sync, err);
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
		mux_citi_event(ci, CITI_EV_OPEN_TIMEOUT);
	}
}

/* Takes a connection off the backlog and closes it: too many streams. */
static void
mux_accept_refuse(struct sess *s, uv_stream_t *server)
{
	uv_tcp_t *tmp;

	if ((tmp = malloc(sizeof(*tmp))) == NULL)
		return;
	uv_tcp_init(s->tun->loop, tmp);
	if (uv_accept(server, (uv_stream_t *)tmp) == 0)
		log_warnx("session %" PRId64 ": too many open streams, "
		    "local connection refused", s->id);
	uv_close((uv_handle_t *)tmp, (uv_close_cb)free);
}

/* The next free CITI id of our range. */
static uint32_t
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
		mux_accept_refuse(s, server);
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
	ci->dst = l->fwd.dst;
	ci->deadline = uv_now(s->tun->loop) +
	    (uint64_t)s->tun->o->open_timeout * 1000;
	memset(&m, 0, sizeof(m));
	m.host = l->fwd.dst;
	m.citi = id;
	if ((json = msg_header_encode(&m, &len)) == NULL ||
	    sess_send_ctrl(s, json, len) == -1) {
		free(json);
		mux_citi_event(ci, CITI_EV_ABORT);
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

/* The address to bind f's Src to (freed by the caller), or NULL. */
static struct addrinfo *
mux_listen_addr(struct sess *s, const struct fwd *f, const char *host)
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
	hints.ai_socktype = SOCK_STREAM;
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

	addr_format(&f->src, host, sizeof(host));
	if ((res = mux_listen_addr(s, f, host)) == NULL)
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
	if ((fd = worker_listener_take(s->tun, host)) != -1) {
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
	worker_listeners_drop(s->tun);
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
		while ((ci = s->tab[i]) != NULL)
			mux_citi_event(ci, CITI_EV_SESSION_STOP);
}
