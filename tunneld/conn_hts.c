/*
 * The server side of the HTTP transport (docs/protocol.md, "HTTP
 * transport"): a conn that is no socket but a transport id, fed by
 * requests that each arrive on a connection of their own (a carrier).
 *
 * An accepted connection starts as a websocket server conn; when its head
 * turns out to be a request of the HTTP transport, conn_ws_upgrade() gives
 * it to conn_hts_take().  An open turns that very conn into a transport
 * (its owner, the handshake, keeps it: the conn is open now), its socket
 * becoming the carrier of the answer.  Any other request belongs to a
 * transport that exists already: the socket moves to a carrier attached
 * to that transport, and the conn it came in ends (CONN_WHY_HANDED).
 *
 * Bounds: a transport holds one poll (a newer one answers the older at
 * once, empty) and one push (a newer one supersedes the older, which is
 * answered 409); a push's body is at most HTTPT_BODY_MAX and must arrive
 * within HTS_BODY_MS; a transport without a request for HTS_IDLE_MS ends;
 * what we queue for the client is bounded by the session's own output
 * bound (conn_pending counts what the client has not acknowledged).
 */

#include <sys/queue.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "conn.h"
#include "conn_int.h"
#include "crypto.h"
#include "err.h"
#include "http.h"
#include "httpt.h"

#define HTS_IDLE_MS	45000	/* no request: the client is gone */
#define HTS_BODY_MS	30000	/* a request's body, an answer's writing */
#define HTS_CLOSE_MS	2000	/* an answered carrier drains the peer */
#define HTS_DELIVER	65536	/* bytes given to the owner at once */
/* What we hold for the client beyond the session's own bound (it stops
 * at TUN_COALESCE pending): only a broken owner reaches it. */
#define HTS_DOWN_MAX	(8u * 1024 * 1024)

enum hts_req_state {
	HR_BODY,		/* reading a push's body */
	HR_HELD,		/* attached: a poll waiting, a push delivering */
	HR_ANSWER,		/* answer written, draining, closing */
	HR_CLOSED
};

struct hts;

/* One request on its own connection. */
struct hts_req {
	uv_tcp_t		*tcp;
	uv_timer_t		 timer;	/* the body's deadline, a poll's hold */
	struct hts		*t;	/* attached to, or NULL */
	enum hts_req_state	 state;
	struct httpt_req	 r;
	uint8_t			*body;	/* a push's clen bytes */
	size_t			 have;	/* read of them */
	size_t			 given;	/* delivered of them */
	uv_shutdown_t		 sd;
	int			 handles;	/* open: tcp, timer */
};

/* A server transport: c->hts. */
struct hts {
	LIST_ENTRY(hts)	 link;
	struct conn	*c;
	char		 id[HTTPT_ID_LEN + 1];
	uv_timer_t	*timer;		/* the conn's handle: idle, linger */
	uv_timer_t	*kick;		/* a held poll is answered next turn */
	struct buf	 down;		/* our bytes from down_base */
	uint64_t	 down_base;	/* the client acknowledged all below */
	uint64_t	 down_sent;	/* answers carried all below */
	uint64_t	 up;		/* the client's bytes delivered */
	struct hts_req	*poll;
	struct hts_req	*push;
	int		 lingering;	/* closing: what is left, then 410 */
	int		 finished;	/* off the list, handles closing */
};

static LIST_HEAD(, hts) hts_all = LIST_HEAD_INITIALIZER(hts_all);
static int		hts_on = 1;

static void	hts_req_read_cb(uv_stream_t *, ssize_t, const uv_buf_t *);
static void	hts_req_answer(struct hts_req *, int, const char *, int64_t,
		    const void *, size_t, int);
static void	hts_req_reply(struct hts_req *, int, const char *, int64_t,
		    const void *, size_t, int, const char *);
static void	hts_finish(struct hts *);
static void	hts_push_go(struct hts *);

void
conn_hts_allow(int on)
{
	hts_on = on;
}

static struct hts *
hts_find(const char *id)
{
	struct hts *t;

	LIST_FOREACH(t, &hts_all, link)
		if (crypto_streq(t->id, id))
			return t;
	return NULL;
}

/* A carrier's handles are closed: the last one frees it. */
static void
hts_req_closed(uv_handle_t *h)
{
	struct hts_req *q = h->data;

	if (h == (uv_handle_t *)q->tcp)
		free(q->tcp);
	if (--q->handles > 0)
		return;
	free(q->body);
	free(q);
}

static void
hts_req_close(struct hts_req *q)
{
	if (q->state == HR_CLOSED)
		return;
	q->state = HR_CLOSED;
	uv_timer_stop(&q->timer);
	uv_close((uv_handle_t *)q->tcp, hts_req_closed);
	uv_close((uv_handle_t *)&q->timer, hts_req_closed);
}

/* Off its transport's slots. */
static void
hts_req_detach(struct hts_req *q)
{
	struct hts *t = q->t;

	if (t == NULL)
		return;
	if (t->poll == q)
		t->poll = NULL;
	if (t->push == q)
		t->push = NULL;
	q->t = NULL;
}

static void
hts_req_timeout(uv_timer_t *timer)
{
	struct hts_req *q = timer->data;

	switch (q->state) {
	case HR_HELD:
		/* A poll held long enough is answered empty. */
		if (q->t != NULL && q->t->poll == q) {
			hts_req_answer(q, 200, NULL, (int64_t)q->r.off, NULL,
			    0, 0);
			return;
		}
		/* FALLTHROUGH */
	default:
		hts_req_detach(q);
		hts_req_close(q);
	}
}

static void
hts_req_drain_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char discard[4096];

	*buf = uv_buf_init(discard, sizeof(discard));
}

/* After the answer: what the peer still sends is dropped until it closes. */
static void
hts_req_drain_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	if (nread < 0)
		hts_req_close(s->data);
}

static void
hts_req_shut_cb(uv_shutdown_t *sd, int status)
{
	struct hts_req *q = sd->data;

	if (q->state == HR_CLOSED)
		return;
	if (status < 0 || uv_read_start((uv_stream_t *)q->tcp,
	    hts_req_drain_alloc, hts_req_drain_read) != 0) {
		hts_req_close(q);
		return;
	}
	uv_timer_start(&q->timer, hts_req_timeout, HTS_CLOSE_MS, 0);
}

static void
hts_req_write_cb(uv_write_t *w, int status)
{
	struct hts_req *q = w->data;

	free(w);
	if (q->state == HR_CLOSED)
		return;
	if (status < 0 || uv_shutdown(&q->sd, (uv_stream_t *)q->tcp,
	    hts_req_shut_cb) != 0)
		hts_req_close(q);
}

/*
 * Answers q (detached) and closes its connection once written: status,
 * the id header, the offset header (off >= 0), blen bytes of body, the
 * reason its transport closed (or NULL).
 */
static void
hts_req_reply(struct hts_req *q, int status, const char *id, int64_t off,
    const void *body, size_t blen, int text, const char *closed)
{
	uv_write_t	*w;
	uv_buf_t	 b;
	char		 head[512];
	int		 n;

	if (q->state == HR_CLOSED || q->state == HR_ANSWER)
		return;
	hts_req_detach(q);
	q->state = HR_ANSWER;
	uv_read_stop((uv_stream_t *)q->tcp);
	uv_timer_stop(&q->timer);
	n = httpt_response(head, sizeof(head), status, id, off, blen, text,
	    closed);
	if (n < 0 || (w = malloc(sizeof(*w) + n + blen)) == NULL) {
		hts_req_close(q);
		return;
	}
	memcpy((char *)(w + 1), head, n);
	if (blen > 0)
		memcpy((char *)(w + 1) + n, body, blen);
	w->data = q;
	b = uv_buf_init((char *)(w + 1), n + blen);
	if (uv_write(w, (uv_stream_t *)q->tcp, &b, 1, hts_req_write_cb) != 0) {
		free(w);
		hts_req_close(q);
		return;
	}
	uv_timer_start(&q->timer, hts_req_timeout, HTS_BODY_MS, 0);
}

static void
hts_req_answer(struct hts_req *q, int status, const char *id, int64_t off,
    const void *body, size_t blen, int text)
{
	hts_req_reply(q, status, id, off, body, blen, text, NULL);
}

static void
hts_req_text(struct hts_req *q, int status, const char *text)
{
	hts_req_answer(q, status, NULL, -1, text, strlen(text), 1);
}

/* The answer to a request for a transport that is not (or no longer). */
static void
hts_req_unknown(struct hts_req *q)
{
	static const char text[] = "unknown transport";

	hts_req_answer(q, 404, HTTPT_UNKNOWN, -1, text, sizeof(text) - 1, 1);
}

/*
 * A poll of t answered with what t holds from its ack, up to the bound.
 * Closing, the answer that takes the last bytes says why: the process may
 * be gone before another poll (a worker whose tunnel ended).
 */
static void
hts_poll_answer(struct hts *t, struct hts_req *q)
{
	size_t		 n = buf_unread(&t->down) -
			    (size_t)(q->r.off - t->down_base);
	const char	*closed = NULL;

	if (n > HTTPT_BODY_MAX)
		n = HTTPT_BODY_MAX;
	else if (t->lingering)
		closed = t->c->reason[0] ? t->c->reason : "transport closed";
	t->down_sent = q->r.off + n;
	hts_req_reply(q, 200, NULL, (int64_t)q->r.off,
	    buf_head(&t->down) + (q->r.off - t->down_base), n, 0, closed);
}

static void
hts_kick_cb(uv_timer_t *timer)
{
	struct hts	*t = timer->data;
	struct hts_req	*q = t->poll;

	if (q == NULL || q->r.off - t->down_base >= buf_unread(&t->down))
		return;
	hts_req_detach(q);
	hts_poll_answer(t, q);
}

/* Schedules the held poll's answer, so that one turn's sends share it. */
static void
hts_kick(struct hts *t)
{
	if (t->poll != NULL && !uv_is_active((uv_handle_t *)t->kick))
		uv_timer_start(t->kick, hts_kick_cb, 0, 0);
}

static void
hts_idle_cb(uv_timer_t *timer)
{
	struct hts *t = timer->data;

	if (t->lingering) {
		hts_finish(t);
		return;
	}
	/* A held poll is answered long before: nobody is polling. */
	conn_end(t->c, CONN_WHY_PEER_EOF, "HTTP transport idle: no request "
	    "for 45 s");
}

/* A request of t arrived: the client is there. */
static void
hts_seen(struct hts *t)
{
	if (!t->lingering)
		uv_timer_start(t->timer, hts_idle_cb, HTS_IDLE_MS, 0);
}

static void
hts_poll(struct hts *t, struct hts_req *q)
{
	struct conn	*c = t->c;
	uint64_t	 ack = q->r.off;
	size_t		 drop;

	if (ack < t->down_base || ack > t->down_sent) {
		hts_req_text(q, 409, "acknowledged offset out of range");
		return;
	}
	/* A newer poll is the one the client waits on. */
	if (t->poll != NULL)
		hts_req_answer(t->poll, 200, NULL, (int64_t)t->poll->r.off,
		    NULL, 0, 0);
	drop = (size_t)(ack - t->down_base);
	buf_consume(&t->down, drop);
	if (buf_unread(&t->down) == 0)
		buf_free(&t->down);
	t->down_base = ack;
	/* What was sent past the ack did not arrive: it goes again. */
	t->down_sent = ack;
	if (buf_unread(&t->down) > 0) {
		hts_poll_answer(t, q);
	} else if (t->lingering) {
		hts_req_text(q, 410, c->reason[0] ? c->reason :
		    "transport closed");
	} else {
		q->t = t;
		q->state = HR_HELD;
		t->poll = q;
		uv_timer_start(&q->timer, hts_req_timeout, q->r.hold_ms, 0);
	}
	if (drop > 0 && !t->lingering && c->cbs != NULL &&
	    c->cbs->on_drain != NULL)
		c->cbs->on_drain(c, c->arg);
}

/* A push whose body is all here: delivered while the owner takes it. */
static void
hts_push_go(struct hts *t)
{
	struct conn	*c = t->c;
	struct hts_req	*q = t->push;
	size_t		 n;

	while (q != NULL && t->push == q && c->state == CONN_OPEN &&
	    !conn_held(c) && q->given < q->have) {
		n = q->have - q->given;
		if (n > HTS_DELIVER)
			n = HTS_DELIVER;
		q->given += n;
		t->up += n;
		c->cbs->on_data(c, c->arg, q->body + q->given - n, n);
	}
	if (q == NULL || t->push != q || q->given < q->have)
		return;
	hts_req_detach(q);
	hts_req_answer(q, 200, NULL, (int64_t)t->up, NULL, 0, 0);
}

/* q's body is complete: what the transport does not hold yet goes on. */
static void
hts_push_ready(struct hts *t, struct hts_req *q)
{
	uint64_t	skip;

	if (q->r.off > t->up) {
		hts_req_detach(q);
		hts_req_text(q, 409, "push past the bytes received");
		return;
	}
	skip = t->up - q->r.off;
	q->given = skip < q->have ? (size_t)skip : q->have;
	hts_push_go(t);
}

/* q (a push) got more of its body: at its end it is delivered. */
static void
hts_push_more(struct hts_req *q)
{
	if (q->have < q->r.clen)
		return;
	/* Delivered while the owner reads, which it may not for long. */
	uv_timer_start(&q->timer, hts_req_timeout, HTS_BODY_MS, 0);
	q->state = HR_HELD;
	if (q->t == NULL || q->t->push != q) {
		hts_req_close(q);
		return;
	}
	hts_push_ready(q->t, q);
}

static void
hts_req_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct hts_req	*q = h->data;
	static char	 probe[1];

	/* Past the body: a byte, to see EOF (or a pipelined request). */
	if (q->state != HR_BODY || q->have >= q->r.clen) {
		*buf = uv_buf_init(probe, sizeof(probe));
		return;
	}
	*buf = uv_buf_init((char *)q->body + q->have, q->r.clen - q->have);
}

static void
hts_req_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct hts_req *q = s->data;

	if (nread == 0 || q->state == HR_CLOSED || q->state == HR_ANSWER)
		return;
	if (nread < 0 || q->state != HR_BODY) {
		/* Gone, or sent more than its request: nobody to answer. */
		hts_req_detach(q);
		hts_req_close(q);
		return;
	}
	q->have += nread;
	hts_push_more(q);
}

/*
 * The transport of a poll, push or close: q goes to it, or is answered
 * at once.
 */
static void
hts_dispatch(struct hts_req *q)
{
	struct hts *t;

	if ((t = hts_find(q->r.id)) == NULL) {
		hts_req_unknown(q);
		return;
	}
	hts_seen(t);
	switch (q->r.kind) {
	case HTTPT_POLL:
		hts_poll(t, q);
		return;
	case HTTPT_PUSH:
		if (t->lingering) {
			hts_req_text(q, 410, t->c->reason[0] ? t->c->reason :
			    "transport closed");
			return;
		}
		if (t->push != NULL)
			hts_req_text(t->push, 409, "superseded by a newer push");
		q->t = t;
		t->push = q;
		if (q->have == q->r.clen)
			hts_push_more(q);
		else
			uv_timer_start(&q->timer, hts_req_timeout, HTS_BODY_MS,
			    0);
		return;
	case HTTPT_CLOSE:
		hts_req_answer(q, 200, NULL, -1, NULL, 0, 0);
		if (!t->lingering)
			conn_end(t->c, CONN_WHY_PEER_EOF,
			    "the client closed the HTTP transport");
		return;
	default:
		hts_req_text(q, 400, "not a request of the HTTP transport");
	}
}

/*
 * A carrier for c's socket and the request whose head is c->rbuf[0..hlen)
 * (the bytes after it are the body's start).  c keeps no socket.  NULL
 * when out of memory (the socket is then closed).
 */
static struct hts_req *
hts_req_new(struct conn *c, const struct httpt_req *r, size_t hlen)
{
	struct hts_req	*q;
	size_t		 extra = c->rlen - hlen;

	if (c->reading) {
		uv_read_stop((uv_stream_t *)c->tcp);
		c->reading = 0;
	}
	if ((q = calloc(1, sizeof(*q))) == NULL || (r->clen > 0 &&
	    (q->body = malloc(r->clen)) == NULL)) {
		free(q);
		uv_close((uv_handle_t *)c->tcp, (uv_close_cb)free);
		c->tcp = NULL;
		return NULL;
	}
	q->r = *r;
	q->tcp = c->tcp;
	q->tcp->data = q;
	c->tcp = NULL;
	q->handles = 2;
	q->sd.data = q;
	uv_timer_init(q->tcp->loop, &q->timer);
	q->timer.data = q;
	/* Bytes past the body would be a pipelined request: not read. */
	if (extra > r->clen)
		extra = r->clen;
	if (extra > 0)
		memcpy(q->body, c->rbuf + hlen, extra);
	q->have = extra;
	c->rlen = 0;
	q->state = HR_BODY;
	uv_read_start((uv_stream_t *)q->tcp, hts_req_alloc, hts_req_read_cb);
	return q;
}

/* The conn a request came in on is done with: its owner lets it go. */
static void
hts_release(struct conn *c, const char *why)
{
	uv_timer_t *h;

	c->state = CONN_CLOSING;
	c->why = CONN_WHY_HANDED;
	snprintf(c->reason, sizeof(c->reason), "%s", why);
	/* conn_close_cb runs from a handle's close: a timer stands in. */
	if ((h = malloc(sizeof(*h))) == NULL) {
		/* Its owner then never hears: a handshake times out. */
		return;
	}
	uv_timer_init(c->loop, h);
	h->data = c;
	uv_close((uv_handle_t *)h, conn_close_cb);
}

/* An open: c becomes the transport; q answers with its id. */
static int
hts_open(struct conn *c, struct hts_req *q)
{
	struct hts	*t;
	char		 err[ERR_LEN];

	if ((t = calloc(1, sizeof(*t))) == NULL ||
	    (t->timer = malloc(sizeof(*t->timer))) == NULL ||
	    (t->kick = malloc(sizeof(*t->kick))) == NULL ||
	    httpt_new_id(t->id, err) == -1) {
		if (t != NULL) {
			free(t->timer);
			free(t->kick);
		}
		free(t);
		hts_req_text(q, 503, "out of resources");
		hts_release(c, "cannot open an HTTP transport");
		return -1;
	}
	t->c = c;
	uv_timer_init(c->loop, t->timer);
	uv_timer_init(c->loop, t->kick);
	t->timer->data = t;
	t->kick->data = t;
	LIST_INSERT_HEAD(&hts_all, t, link);
	snprintf(c->http.target, sizeof(c->http.target), "%s", q->r.target);
	c->kind = CONN_HTTP_SERVER;
	c->hts = t;
	hts_req_answer(q, 200, t->id, -1, NULL, 0, 0);
	hts_seen(t);
	c->state = CONN_OPEN;
	if (c->cbs != NULL && c->cbs->on_open != NULL)
		c->cbs->on_open(c, c->arg);
	return c->state == CONN_CLOSING ? -1 : 0;
}

/* A refusal on the conn the request came in on (it closes next). */
static void
hts_conn_reply(struct conn *c, int status, const char *text)
{
	char	head[512];
	int	n;

	n = httpt_response(head, sizeof(head), status, NULL, -1, strlen(text),
	    1, NULL);
	if (n > 0 && conn_send_raw(c, head, n) == 0)
		conn_send_raw(c, text, strlen(text));
}

int
conn_hts_take(struct conn *c, size_t hlen)
{
	struct httpt_req r;
	struct hts_req	*q;
	char		 err[ERR_LEN];
	const char	*line, *sp1, *sp2;
	size_t		 ll;
	int		 status;

	if (http_start_line((char *)c->rbuf, hlen, &line, &ll, NULL) == -1 ||
	    (sp1 = memchr(line, ' ', ll)) == NULL ||
	    (sp2 = memchr(sp1 + 1, ' ', line + ll - sp1 - 1)) == NULL ||
	    httpt_kind_of(sp1 + 1, sp2 - sp1 - 1) == HTTPT_NONE)
		return 0;
	if (!hts_on) {
		hts_conn_reply(c, 400, "the HTTP transport is off");
		conn_end(c, CONN_WHY_PROTOCOL, "HTTP transport request, but "
		    "-transport ws");
		return -1;
	}
	if (httpt_parse_request((char *)c->rbuf, hlen, &r, &status, err) ==
	    -1) {
		hts_conn_reply(c, status, err);
		conn_end(c, CONN_WHY_PROTOCOL, err);
		return -1;
	}
	if ((q = hts_req_new(c, &r, hlen)) == NULL) {
		hts_release(c, "out of memory");
		return -1;
	}
	if (r.kind == HTTPT_OPEN)
		return hts_open(c, q);
	hts_release(c, "a request of an HTTP transport");
	hts_dispatch(q);
	return -1;
}

int
conn_hts_send(struct conn *c, struct obuf *b)
{
	struct hts *t = c->hts;

	if (c->state != CONN_OPEN || buf_append(&t->down, b->mem +
	    CONN_HEADROOM, b->len, HTS_DOWN_MAX) == -1) {
		free(b);
		if (c->state == CONN_OPEN)
			conn_end(c, CONN_WHY_BACKLOG, "the client does not "
			    "poll what it is sent");
		return -1;
	}
	free(b);
	hts_kick(t);
	return 0;
}

size_t
conn_hts_pending(const struct conn *c)
{
	return buf_unread(&c->hts->down);
}

void
conn_hts_resume(struct conn *c)
{
	if (c->hts->push != NULL && c->hts->push->state == HR_HELD)
		hts_push_go(c->hts);
}

static void
hts_handle_free(uv_handle_t *h)
{
	free(h);
}

/* The end: held requests answered, off the list, the conn's handle closed. */
static void
hts_finish(struct hts *t)
{
	struct conn	*c = t->c;
	const char	*why = c->reason[0] ? c->reason : "transport closed";

	if (t->finished)
		return;
	if (t->poll != NULL)
		hts_req_text(t->poll, 410, why);
	if (t->push != NULL)
		hts_req_text(t->push, 410, why);
	LIST_REMOVE(t, link);
	t->finished = 1;
	memset(t->id, 0, sizeof(t->id));
	uv_close((uv_handle_t *)t->kick, hts_handle_free);
	/* t itself goes with c (conn_hts_free): a caller up the stack may
	 * still look at it. */
	t->timer->data = c;
	uv_close((uv_handle_t *)t->timer, conn_close_cb);
}

void
conn_hts_free(struct conn *c)
{
	if (c->hts == NULL)
		return;
	buf_free(&c->hts->down);
	free(c->hts);
	c->hts = NULL;
}

/*
 * conn_end's part (c is CLOSING, its why and reason set): the owner's
 * close lingers while the client polls what is left and learns why
 * (410); any other end is at once.
 */
void
conn_hts_end(struct conn *c)
{
	struct hts *t = c->hts;

	if (c->why != CONN_WHY_OWNER || t->lingering) {
		hts_finish(t);
		return;
	}
	t->lingering = 1;
	if (t->push != NULL)
		hts_req_text(t->push, 410, c->reason[0] ? c->reason :
		    "transport closed");
	if (t->poll != NULL) {
		struct hts_req *q = t->poll;

		hts_req_detach(q);
		if (buf_unread(&t->down) > q->r.off - t->down_base)
			hts_poll_answer(t, q);
		else
			hts_req_text(q, 410, c->reason[0] ? c->reason :
			    "transport closed");
	}
	uv_timer_start(t->timer, hts_idle_cb, CONN_LINGER_MS, 0);
}
