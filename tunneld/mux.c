/*
 * CITIs: the TCP streams a session carries (wire spec 6.4-6.6).  The side
 * that listens on a forward's Src accepts a local connection, names a CITI
 * id and sends CTRL_HEADER; the other side checks the target against the
 * agreed forward list, dials it and answers CTRL_RESP_HEADER.  Data then
 * flows as NORMAL packets under kptunnel's per-CITI window, and each side
 * sends one zero-length packet to close.
 *
 * A CITI's lifecycle is the table of citi.c; every change of state goes
 * through mux_citi_event(), which applies the table's actions.  This file
 * holds the CITI table, the lifecycle, data and windows; mux_dial.c the
 * side that dials, mux_lsn.c the side that listens (mux_int.h).
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
#include "mux_int.h"
#include "tunneld.h"

struct lwreq {
	uv_write_t	 req;
	struct citi	*ci;
	int64_t		 sync;		/* packNo to SYNC once written, or -1 */
	size_t		 len;
	uint8_t		 data[];
};

static void	mux_read_cb(uv_stream_t *, ssize_t, const uv_buf_t *);
static void	mux_alloc_cb(uv_handle_t *, size_t, uv_buf_t *);
static void	mux_sync_out(struct citi *, int64_t);

void
mux_init(struct sess *s)
{
	s->tabsz = 64;
	s->tab = calloc(s->tabsz, sizeof(*s->tab));
	s->next_citi = s->server ? TUN_CITI_SERVER : TUN_CITI_CLIENT;
	TAILQ_INIT(&s->opening);
	SLIST_INIT(&s->lsns);
	TAILQ_INIT(&s->uflows);
	SLIST_INIT(&s->dlsns);
	TAILQ_INIT(&s->socks_hs);
	ratelog_init(&s->peer_log, 0, 0);
}

/*
 * A warning the peer can cause at will (a refused or failed stream
 * request): rate-limited per session, so that a flood of requests does not
 * become a flood of log lines; the lines dropped are counted in the next.
 */
void
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

struct citi *
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
	return ci->sent < TUN_SYNC_GROUP * ci->syncs_rcvd + ci->s->win_peer;
}

int
mux_citi_may_send(const struct citi *ci)
{
	return citi_reads(ci->state) && !ci->s->congested &&
	    mux_can_send(ci) && sess_lim_out_ok(ci->s);
}

static void
mux_update_reading(struct citi *ci)
{
	int want = mux_citi_may_send(ci);

	if (ci->udp) {
		mux_udp_reading(ci, want);
		return;
	}
	if (want && !ci->reading) {
		if (uv_read_start((uv_stream_t *)&ci->tcp, mux_alloc_cb,
		    mux_read_cb) == 0)
			ci->reading = 1;
	} else if (!want && ci->reading) {
		uv_read_stop((uv_stream_t *)&ci->tcp);
		ci->reading = 0;
	}
}

void
mux_citi_reading(struct citi *ci)
{
	mux_update_reading(ci);
}

/* Queues a packet of this CITI, remembering where its SYNC groups end. */
static void
mux_enqueue(struct citi *ci, struct opkt *p)
{
	uint64_t idx = ci->sent++;

	p->citi = ci->id;
	sess_enqueue(ci->s, p);
	if (idx % TUN_SYNC_GROUP == TUN_SYNC_GROUP - 1)
		ci->mark[(idx / TUN_SYNC_GROUP) % TUN_MARKS] = p->seq;
}

void
mux_citi_send(struct citi *ci, struct opkt *p)
{
	struct sess	*s = ci->s;
	size_t		 n = p->len;

	mux_enqueue(ci, p);
	sess_lim_out(s, n);
	sess_lim_bytes(s, n);
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
	/* A UDP flow has no half-close: the peer's end is the flow's. */
	if (ci->udp) {
		if (mux_citi_event(ci, CITI_EV_SHUT_DONE) == CITI_PEER_EOF_SHUT)
			mux_citi_event(ci, CITI_EV_LOCAL_EOF);
		return;
	}
	if (uv_shutdown(&ci->shutdown, (uv_stream_t *)&ci->tcp,
	    mux_shutdown_cb) != 0)
		mux_citi_event(ci, CITI_EV_SHUT_DONE);
}

/* Entering CITI_CLOSING: stop everything and close the local socket. */
static void
mux_close_handle(struct citi *ci)
{
	if (ci->udp)
		mux_udp_close(ci);
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
	free(ci->early);
	free(ci);
	sess_unref(s);
}

/*
 * The one place a CITI changes state: looks the move up in citi.c's table,
 * refuses (logs, keeps the state) an illegal one, and applies the move's
 * actions and the bookkeeping of the states left and entered.  Returns the
 * state now; CITI_FREED means ci is gone.
 */
enum citi_state
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
struct citi *
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
	struct citi	*ci = h->data;
	size_t		 cap = sess_lim_read_cap(ci->s);

	/* The AEAD mode's tag rides in the payload: leave it room. */
	if (ci->s->aead && cap > PKT_MAX_PAYLOAD - AEAD_TAG_LEN)
		cap = PKT_MAX_PAYLOAD - AEAD_TAG_LEN;
	if (ci->rx == NULL)
		ci->rx = sess_opkt_new(PKT_MAX_PAYLOAD);
	if (ci->rx == NULL)
		*buf = uv_buf_init(NULL, 0);
	else
		*buf = uv_buf_init((char *)ci->rx->data, cap);
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
	sess_lim_out(ci->s, (size_t)nread);
	sess_lim_bytes(ci->s, (size_t)nread);
	mux_update_reading(ci);
}

static void
mux_on_resp(struct sess *s, const struct msg_resp_header *m)
{
	struct citi	*ci = mux_find(s, m->citi);
	enum citi_state	 st;

	if (ci == NULL || !citi_is_opening(ci->state)) {
		log_debug("session %" PRId64 ": answer for unknown citi %08"
		    PRIx32, s->id, m->citi);
		return;
	}
	sess_acked(s, ci->hdr_seq);
	if (!m->result)
		mux_peer_warn(s, "citi %08" PRIx32 " to port %d refused by "
		    "the peer: %s", ci->id, ci->dst.port, m->mess);
	if (!m->result && ci->udp)
		mux_udp_refused(ci);
	if (ci->socks_reply)
		socks_answered(ci, m->result, m->mess);
	st = mux_citi_event(ci, m->result ? CITI_EV_ANSWER_OK :
	    CITI_EV_ANSWER_NG);
	/* What a dynamic forward's client sent past its request. */
	if (st != CITI_FREED && citi_reads(st) && ci->early != NULL) {
		sess_lim_bytes(s, ci->early->len);
		mux_enqueue(ci, ci->early);
		ci->early = NULL;
	}
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
	if (type == MSG_CTRL_HEADER || type == MSG_CTRL_UDP_HEADER)
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

	sess_rxq(ci->s, -(ssize_t)w->len);
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
		return 0;
	}
	sess_rxq(ci->s, (ssize_t)w->len);
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
	if (ci->rcvd > TUN_SYNC_GROUP * ci->syncs_sent + s->win_own) {
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
		if (ci->udp)
			mux_udp_peer_eof(ci);
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
	sess_lim_bytes(s, n);
	if (ci->udp) {
		/* Sent or dropped at once: nothing waits, the window opens. */
		mux_udp_data(ci, p, n);
		if (citi_in_table(ci->state))
			mux_sync_out(ci, sync);
		return 0;
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
	sess_acked(s, ci->mark[(packno / TUN_SYNC_GROUP) % TUN_MARKS]);
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
		if (ci->socks_reply)
			socks_answered(ci, 0, "timed out");
		mux_citi_event(ci, CITI_EV_OPEN_TIMEOUT);
	}
	mux_udp_tick(s, now);
	mux_dyn_tick(s, now);
}

void
mux_stop(struct sess *s)
{
	struct citi	*ci;
	size_t		 i;
	unsigned long	 dropped;

	if ((dropped = ratelog_take(&s->peer_log)) > 0)
		log_warnx("session %" PRId64 ": %lu more warnings about the "
		    "peer's requests suppressed", s->id, dropped);
	mux_lsn_close_all(s);
	mux_dyn_stop(s);
	for (i = 0; s->tab != NULL && i < s->tabsz; i++)
		while ((ci = s->tab[i]) != NULL)
			mux_citi_event(ci, CITI_EV_SESSION_STOP);
}
