/*
 * The client side of the HTTP transport (docs/protocol.md, "HTTP
 * transport"): a conn that is no socket but a series of requests, each on
 * a connection of its own (through the proxy and TLS as conn.c makes
 * them: a raw client conn carries one request and its answer).
 *
 * One poll is in flight while the transport is open and the owner reads;
 * one push while we hold bytes the server has not acknowledged.  A request
 * that fails (a connection refused or cut, a proxy's error, its deadline)
 * is made again, with the same offsets, after a backoff: the server drops
 * what it had and resends what we did not acknowledge, so nothing is lost
 * or doubled.  HTC_FAILS_MAX failures in a row lose the transport (the
 * session above then resumes on a new one), as does an answer saying the
 * server no longer knows it.
 */

#include <sys/socket.h>

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "conn.h"
#include "conn_int.h"
#include "err.h"
#include "http.h"
#include "httpt.h"
#include "proxy.h"

#define HTC_OPEN_MS	20000
#define HTC_PUSH_MS	30000
#define HTC_POLL_MARGIN	15000	/* a poll's answer after its hold */
#define HTC_CLOSE_MS	2000
#define HTC_BACKOFF_MS	250	/* doubled per failure, up to the cap */
#define HTC_BACKOFF_CAP	4000
#define HTC_FAILS_MAX	4	/* requests failed in a row: lost */
#define HTC_DELIVER	65536	/* bytes given to the owner at once */
#define HTC_REQ_HEAD	4096	/* a request's head, at most */
/* What the owner may queue: the session stops far below (TUN_COALESCE). */
#define HTC_UP_MAX	(8u * 1024 * 1024)

struct htc;

/* One request in flight on its own connection. */
struct htc_req {
	struct htc	*hc;		/* NULL once abandoned */
	enum httpt_kind	 kind;
	uv_tcp_t	*tcp;		/* while connecting */
	uv_connect_t	 connect;
	struct conn	*sub;		/* once connected */
	uv_timer_t	 timer;		/* its deadline */
	int		 handles;	/* timer, socket or sub conn */
	uint8_t		*out;		/* the request: head and body */
	size_t		 outlen;
	struct buf	 in;		/* the answer's head, then raw body */
	struct httpt_resp resp;
	size_t		 hlen;		/* the head's, once parsed */
	struct httpt_chunked ch;
	uint8_t		*body;		/* the answer's body, decoded */
	size_t		 blen;
	uint64_t	 off;		/* push: its offset; poll: its ack */
	size_t		 len;		/* push: its bytes */
	uint64_t	 t0;		/* made at, ms (loop time) */
	int		 done;
};

/* A client transport: c->htc. */
struct htc {
	struct conn	*c;
	uv_loop_t	*loop;
	struct sockaddr_storage sa;	/* where requests go (or the proxy) */
	char		 host_port[300];
	char		 prefix[320];	/* "http://host:port": forward proxy */
	char		 path_query[2400];
	char		 extra[1024];
	char		 ua[256];
	char		 proxy_auth[512];
	struct proxy	 proxy;		/* with TLS: CONNECT through it */
	int		 connect;
	void		*ssl_ctx;
	char		 tls_host[256];
	int		 tls_verify;
	char		 id[HTTPT_ID_LEN + 1];
	uint64_t	 n;		/* requests made */
	struct buf	 up;		/* ours from up_base, unacknowledged */
	uint64_t	 up_base;
	uint64_t	 down;		/* the server's bytes received */
	struct buf	 held;		/* received, for the owner */
	struct htc_req	*open, *poll, *push, *close;
	uv_timer_t	*timer;		/* the conn's handle: backoff, close */
	int		 fails;
	int		 backoff;	/* waiting before the next request */
	unsigned	 hold_ms;	/* what polls ask the server to hold */
	int		 finished;
	char		 last_err[ERR_LEN];
};

static void	htc_pump(struct htc *);
static void	htc_req_done(struct htc_req *);
static void	htc_finish(struct htc *);
static struct htc_req *htc_req_new(struct htc *, enum httpt_kind,
		    uv_tcp_t *);

static void
htc_req_unref(struct htc_req *q)
{
	if (--q->handles > 0)
		return;
	free(q->out);
	buf_free(&q->in);
	free(q->body);
	free(q);
}

static void
htc_req_handle_closed(uv_handle_t *h)
{
	struct htc_req *q = h->data;

	if (h != (uv_handle_t *)&q->timer)
		free(h);
	htc_req_unref(q);
}

static void
htc_sub_closed(struct conn *c, void *arg, const char *reason)
{
	struct htc_req *q = arg;

	q->sub = NULL;
	if (q->hc != NULL && !q->done) {
		snprintf(q->hc->last_err, sizeof(q->hc->last_err), "%s",
		    reason);
		q->done = 1;
		htc_req_done(q);
	}
	htc_req_unref(q);
}

/* Lets q go: its connection closes, its memory goes with its handles. */
static void
htc_req_drop(struct htc_req *q)
{
	struct htc *hc = q->hc;

	if (hc != NULL) {
		if (hc->open == q)
			hc->open = NULL;
		if (hc->poll == q)
			hc->poll = NULL;
		if (hc->push == q)
			hc->push = NULL;
		if (hc->close == q)
			hc->close = NULL;
	}
	q->hc = NULL;
	q->done = 1;
	uv_timer_stop(&q->timer);
	if (!uv_is_closing((uv_handle_t *)&q->timer))
		uv_close((uv_handle_t *)&q->timer, htc_req_handle_closed);
	if (q->sub != NULL)
		conn_close(q->sub, "request done");
}

static void
htc_req_fail_cb(uv_timer_t *t)
{
	struct htc_req *q = t->data;

	if (q->hc != NULL)
		htc_req_done(q);
}

/*
 * q failed (why for the log): it is over at the loop's next turn, never
 * within the call that made it.
 */
static void
htc_req_fail(struct htc_req *q, const char *why)
{
	if (q->hc == NULL || q->done)
		return;
	snprintf(q->hc->last_err, sizeof(q->hc->last_err), "%s request: "
	    "%.200s", httpt_kind_name(q->kind), why);
	q->done = 1;
	uv_timer_start(&q->timer, htc_req_fail_cb, 0, 0);
}

static void
htc_req_timeout(uv_timer_t *t)
{
	struct htc_req *q = t->data;

	if (q->hc == NULL || q->done)
		return;
	snprintf(q->hc->last_err, sizeof(q->hc->last_err), "%s request: no "
	    "answer in time", httpt_kind_name(q->kind));
	q->done = 1;
	htc_req_done(q);
}

/* Parses what the answer brought so far: 1 once it is complete. */
static int
htc_req_parse(struct htc_req *q, int eof, char *err)
{
	ssize_t	n;
	size_t	raw;

	if (q->hlen == 0) {
		n = httpt_parse_response((char *)buf_head(&q->in),
		    buf_unread(&q->in), &q->resp, err);
		if (n < 0)
			return -1;
		if (n == 0) {
			if (eof) {
				err_set(err, "connection closed before an "
				    "answer");
				return -1;
			}
			return 0;
		}
		q->hlen = n;
		buf_consume(&q->in, n);
		if (q->resp.clen > HTTPT_BODY_MAX) {
			err_set(err, "an answer of %" PRId64 " bytes",
			    q->resp.clen);
			return -1;
		}
		if ((q->body = malloc(HTTPT_BODY_MAX)) == NULL) {
			err_set(err, "out of memory");
			return -1;
		}
	}
	raw = buf_unread(&q->in);
	if (q->resp.chunked) {
		n = httpt_dechunk(&q->ch, buf_head(&q->in), raw, q->body,
		    HTTPT_BODY_MAX, &q->blen, err);
		if (n < 0)
			return -1;
		buf_consume(&q->in, n);
		if (q->ch.done)
			return 1;
	} else {
		if (q->resp.clen >= 0 && raw > (size_t)q->resp.clen - q->blen)
			raw = (size_t)q->resp.clen - q->blen;
		if (raw > HTTPT_BODY_MAX - q->blen) {
			err_set(err, "an answer longer than %d bytes",
			    HTTPT_BODY_MAX);
			return -1;
		}
		memcpy(q->body + q->blen, buf_head(&q->in), raw);
		q->blen += raw;
		buf_consume(&q->in, buf_unread(&q->in));
		if (q->resp.clen >= 0 && q->blen == (size_t)q->resp.clen)
			return 1;
		/* Without a length the body ends with the connection. */
		if (q->resp.clen < 0 && eof)
			return 1;
	}
	if (eof) {
		err_set(err, "connection closed within the answer");
		return -1;
	}
	return 0;
}

static void
htc_sub_data(struct conn *c, void *arg, uint8_t *p, size_t n)
{
	struct htc_req	*q = arg;
	char		 err[ERR_LEN];
	int		 rc;

	if (q->hc == NULL || q->done)
		return;
	if (buf_append(&q->in, p, n, 2 * HTTPT_BODY_MAX) == -1) {
		err_set(err, "answer too long");
		rc = -1;
	} else
		rc = htc_req_parse(q, 0, err);
	if (rc == 0)
		return;
	if (rc < 0)
		snprintf(q->hc->last_err, sizeof(q->hc->last_err),
		    "%s request: %.200s", httpt_kind_name(q->kind), err);
	q->done = rc > 0 ? 2 : 1;
	htc_req_done(q);
}

static void
htc_sub_open(struct conn *c, void *arg)
{
	struct htc_req	*q = arg;
	struct obuf	*b;

	if (q->hc == NULL || q->done)
		return;
	if ((b = conn_obuf(q->outlen)) == NULL) {
		conn_close(c, "out of memory");
		return;
	}
	memcpy(b->mem + CONN_HEADROOM, q->out, q->outlen);
	b->len = q->outlen;
	conn_send(c, b);
}

/* The peer's EOF ends an answer without a length: see on_close. */
static void
htc_sub_close_peek(struct conn *c, void *arg, const char *reason)
{
	struct htc_req	*q = arg;
	char		 err[ERR_LEN];
	int		 rc;

	if (q->hc != NULL && !q->done && q->hlen > 0 &&
	    conn_why(c) == CONN_WHY_PEER_EOF) {
		rc = htc_req_parse(q, 1, err);
		if (rc > 0) {
			q->done = 2;
			q->sub = NULL;
			htc_req_done(q);
			htc_req_unref(q);
			return;
		}
	}
	htc_sub_closed(c, arg, reason);
}

static const struct conn_cbs htc_sub_cbs = {
	.on_open = htc_sub_open,
	.on_data = htc_sub_data,
	.on_close = htc_sub_close_peek,
};

/* q's socket is connected: through the proxy and TLS to the request. */
static void
htc_req_connected(uv_connect_t *cr, int status)
{
	struct htc_req			*q = cr->data;
	struct htc			*hc = q->hc;
	struct conn_client_params	 cp;
	char				 err[ERR_LEN];
	uv_tcp_t			*tcp = q->tcp;

	q->tcp = NULL;
	if (status < 0 || hc == NULL || q->done) {
		if (status < 0) {
			snprintf(err, sizeof(err), "connect: %s",
			    uv_strerror(status));
			htc_req_fail(q, err);
		}
		tcp->data = q;
		uv_close((uv_handle_t *)tcp, htc_req_handle_closed);
		return;
	}
	memset(&cp, 0, sizeof(cp));
	cp.host_port = hc->host_port;
	cp.path_query = hc->path_query;
	cp.proxy = hc->connect ? &hc->proxy : NULL;
	cp.user_agent = hc->ua;
	cp.ssl_ctx = hc->ssl_ctx;
	cp.tls_host = hc->tls_host;
	cp.tls_verify_name = hc->tls_verify;
	q->sub = conn_new(hc->loop, tcp, CONN_RAW_CLIENT, &cp, &htc_sub_cbs, q,
	    err);
	if (q->sub == NULL) {
		q->handles--;		/* conn_new closed the socket */
		htc_req_fail(q, err);
		return;
	}
	/* Without proxy or TLS it is open already (no on_open). */
	if (conn_is_open(q->sub))
		htc_sub_open(q->sub, q);
}

/* A request of kind: made (head and body), sent on tcp (connected) or
 * on a new connection.  NULL when it cannot be made. */
static struct htc_req *
htc_req_new(struct htc *hc, enum httpt_kind kind, uv_tcp_t *tcp)
{
	struct httpt_spec	 s;
	struct htc_req		*q;
	char			 head[HTC_REQ_HEAD];
	size_t			 blen = 0;
	int			 n, rc;

	if ((q = calloc(1, sizeof(*q))) == NULL)
		goto fail;
	q->hc = hc;
	q->kind = kind;
	memset(&s, 0, sizeof(s));
	s.kind = kind;
	s.host_port = hc->host_port;
	s.prefix = hc->prefix;
	s.path_query = hc->path_query;
	s.id = kind == HTTPT_OPEN ? NULL : hc->id;
	s.n = ++hc->n;
	s.user_agent = hc->ua;
	s.proxy_auth = hc->prefix[0] && hc->proxy_auth[0] ? hc->proxy_auth :
	    NULL;
	s.extra_header = hc->extra[0] ? hc->extra : NULL;
	if (kind == HTTPT_PUSH) {
		blen = buf_unread(&hc->up);
		if (blen > HTTPT_BODY_MAX)
			blen = HTTPT_BODY_MAX;
		s.off = q->off = hc->up_base;
		s.blen = q->len = blen;
	} else if (kind == HTTPT_POLL) {
		s.off = q->off = hc->down;
		s.hold_ms = hc->hold_ms;
	}
	q->t0 = uv_now(hc->loop);
	if ((n = httpt_request(head, sizeof(head), &s)) < 0 ||
	    (q->out = malloc(n + blen)) == NULL) {
		free(q);
		goto fail;
	}
	memcpy(q->out, head, n);
	if (blen > 0)
		memcpy(q->out + n, buf_head(&hc->up), blen);
	q->outlen = n + blen;
	uv_timer_init(hc->loop, &q->timer);
	q->timer.data = q;
	q->handles = 2;
	uv_timer_start(&q->timer, htc_req_timeout, kind == HTTPT_OPEN ?
	    HTC_OPEN_MS : kind == HTTPT_POLL ? hc->hold_ms + HTC_POLL_MARGIN :
	    kind == HTTPT_CLOSE ? HTC_CLOSE_MS : HTC_PUSH_MS, 0);
	q->connect.data = q;
	if (tcp != NULL) {
		q->tcp = tcp;
		htc_req_connected(&q->connect, 0);
		return q;
	}
	if ((q->tcp = malloc(sizeof(*q->tcp))) == NULL) {
		q->handles--;
		htc_req_drop(q);
		return NULL;
	}
	uv_tcp_init(hc->loop, q->tcp);
	rc = uv_tcp_connect(&q->connect, q->tcp, (struct sockaddr *)&hc->sa,
	    htc_req_connected);
	if (rc < 0) {
		snprintf(hc->last_err, sizeof(hc->last_err), "connect: %s",
		    uv_strerror(rc));
		q->tcp->data = q;
		uv_close((uv_handle_t *)q->tcp, htc_req_handle_closed);
		q->tcp = NULL;
		htc_req_drop(q);
		return NULL;
	}
	return q;
fail:
	if (tcp != NULL)
		uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
	return NULL;
}

static void
htc_backoff_cb(uv_timer_t *t)
{
	struct htc *hc = t->data;

	hc->backoff = 0;
	htc_pump(hc);
}

/* A request failed: made again after a while, or the transport is lost. */
static void
htc_failed(struct htc *hc)
{
	unsigned delay;

	if (++hc->fails >= HTC_FAILS_MAX) {
		char why[ERR_LEN + 64];

		snprintf(why, sizeof(why), "HTTP transport: %d requests "
		    "failed in a row, the last: %s", hc->fails, hc->last_err);
		conn_end(hc->c, CONN_WHY_IO, why);
		return;
	}
	delay = HTC_BACKOFF_MS << (hc->fails - 1);
	if (delay > HTC_BACKOFF_CAP)
		delay = HTC_BACKOFF_CAP;
	hc->backoff = 1;
	uv_timer_start(hc->timer, htc_backoff_cb, delay, 0);
}

/* Gives the owner what it takes of the bytes received. */
static void
htc_deliver(struct htc *hc)
{
	struct conn	*c = hc->c;
	uint8_t		*p;
	size_t		 n;

	while (c->state == CONN_OPEN && !conn_held(c) &&
	    (n = buf_unread(&hc->held)) > 0) {
		if (n > HTC_DELIVER)
			n = HTC_DELIVER;
		p = buf_head(&hc->held);
		buf_consume(&hc->held, n);
		c->cbs->on_data(c, c->arg, p, n);
	}
	if (hc->c->state == CONN_OPEN && buf_unread(&hc->held) == 0)
		buf_free(&hc->held);
}

/* The server's words on a refusal, for the log. */
static void
htc_why(struct htc_req *q, char *out, size_t cap, const char *what)
{
	size_t	i, n = q->blen > 120 ? 120 : q->blen;
	char	text[128];

	for (i = 0; i < n; i++)
		text[i] = q->body[i] >= 0x20 && q->body[i] < 0x7f ?
		    (char)q->body[i] : '?';
	text[n] = '\0';
	snprintf(out, cap, "%s: HTTP %d%s%s", what, q->resp.status,
	    n > 0 ? ": " : "", text);
}

/* The answers of ours that end the transport; 1 if q's did. */
static int
htc_ended(struct htc *hc, struct htc_req *q)
{
	char why[ERR_LEN];

	if (q->resp.status == 404 && q->resp.unknown) {
		conn_end(hc->c, CONN_WHY_PEER_EOF, "the server does not know "
		    "the HTTP transport (any more)");
		return 1;
	}
	if (q->resp.status == 410) {
		char text[HTTPT_CLOSED_MAX + 1];

		http_err_line(text, (const char *)q->body, q->blen >
		    HTTPT_CLOSED_MAX ? HTTPT_CLOSED_MAX : q->blen);
		snprintf(why, sizeof(why), "the server closed the HTTP "
		    "transport: %s", text);
		conn_end(hc->c, CONN_WHY_PEER_CLOSE, why);
		return 1;
	}
	if (q->resp.status == 409 && q->resp.off < 0) {
		htc_why(q, why, sizeof(why), "HTTP transport out of step");
		conn_end(hc->c, CONN_WHY_PROTOCOL, why);
		return 1;
	}
	return 0;
}

static void
htc_open_done(struct htc *hc, struct htc_req *q, int ok)
{
	struct conn	*c = hc->c;
	char		 why[ERR_LEN];

	if (!ok) {
		conn_end(c, CONN_WHY_IO, hc->last_err);
		return;
	}
	if (q->resp.status != 200 || q->resp.id[0] == '\0') {
		/* As a refused upgrade: the client's policy decides. */
		c->refused_status = q->resp.status != 200 ? q->resp.status :
		    502;
		c->session_unknown = q->resp.session_unknown;
		htc_why(q, why, sizeof(why), "HTTP transport refused");
		conn_end(c, CONN_WHY_PROTOCOL, why);
		return;
	}
	memcpy(hc->id, q->resp.id, sizeof(hc->id));
	hc->fails = 0;
	c->state = CONN_OPEN;
	if (c->cbs != NULL && c->cbs->on_open != NULL)
		c->cbs->on_open(c, c->arg);
}

static void
htc_poll_done(struct htc *hc, struct htc_req *q, int ok)
{
	uint64_t skip, held;

	if (!ok || htc_ended(hc, q))
		goto failed;
	if (q->resp.status != 200 || q->resp.off < 0 ||
	    (uint64_t)q->resp.off > hc->down) {
		htc_why(q, hc->last_err, sizeof(hc->last_err), "poll");
		goto failed;
	}
	skip = hc->down - (uint64_t)q->resp.off;
	if (skip < q->blen) {
		if (buf_append(&hc->held, q->body + skip, q->blen - skip,
		    2 * HTTPT_BODY_MAX) == -1) {
			conn_end(hc->c, CONN_WHY_RESOURCE, "out of memory");
			return;
		}
		hc->down += q->blen - skip;
	}
	hc->fails = 0;
	htc_deliver(hc);
	if (q->resp.closed && hc->c->state == CONN_OPEN) {
		char why[ERR_LEN];

		snprintf(why, sizeof(why), "the server closed the HTTP "
		    "transport: %s", q->resp.why);
		conn_end(hc->c, CONN_WHY_PEER_CLOSE, why);
	}
	return;
failed:
	/*
	 * A poll that failed after it was held a while met something on the
	 * way that cuts requests idle that long (a proxy's timeout): later
	 * polls ask the server to hold them at most half as long, and this
	 * one is no failure of the transport.
	 */
	held = uv_now(hc->loop) - q->t0;
	if (hc->c->state == CONN_OPEN && hc->hold_ms > HTTPT_HOLD_MIN_MS &&
	    held >= HTTPT_HOLD_MIN_MS) {
		held /= 2;
		hc->hold_ms = held < HTTPT_HOLD_MIN_MS ? HTTPT_HOLD_MIN_MS :
		    held < hc->hold_ms / 2 ? (unsigned)held : hc->hold_ms / 2;
		return;
	}
	if (hc->c->state == CONN_OPEN)
		htc_failed(hc);
}

/* A push's answer: what the server acknowledged goes.  0, or -1 when
 * the push failed (made again while open). */
static int
htc_push_done(struct htc *hc, struct htc_req *q, int ok)
{
	struct conn	*c = hc->c;
	uint64_t	 acked;

	if (!ok || htc_ended(hc, q))
		goto failed;
	if (q->resp.status != 200 || q->resp.off < 0 ||
	    (uint64_t)q->resp.off < hc->up_base ||
	    (uint64_t)q->resp.off > hc->up_base + buf_unread(&hc->up)) {
		htc_why(q, hc->last_err, sizeof(hc->last_err), "push");
		goto failed;
	}
	acked = (uint64_t)q->resp.off - hc->up_base;
	buf_consume(&hc->up, (size_t)acked);
	hc->up_base += acked;
	if (buf_unread(&hc->up) == 0)
		buf_free(&hc->up);
	hc->fails = 0;
	if (acked > 0 && c->state == CONN_OPEN && c->cbs != NULL &&
	    c->cbs->on_drain != NULL)
		c->cbs->on_drain(c, c->arg);
	return 0;
failed:
	if (c->state == CONN_OPEN)
		htc_failed(hc);
	return -1;
}

/* q is over (done 2: answered, 1: failed, see last_err). */
static void
htc_req_done(struct htc_req *q)
{
	struct htc	*hc = q->hc;
	enum httpt_kind	 kind = q->kind;
	int		 ok = q->done == 2;

	htc_req_drop(q);
	switch (kind) {
	case HTTPT_OPEN:
		htc_open_done(hc, q, ok);
		break;
	case HTTPT_POLL:
		if (hc->c->state == CONN_OPEN)
			htc_poll_done(hc, q, ok);
		break;
	case HTTPT_PUSH:
		/* Closing, one try: what it did not carry is given up. */
		if (htc_push_done(hc, q, ok) == -1 &&
		    hc->c->state != CONN_OPEN)
			buf_consume(&hc->up, buf_unread(&hc->up));
		break;
	case HTTPT_CLOSE:
		htc_finish(hc);
		return;
	default:
		break;
	}
	if (!hc->finished)
		htc_pump(hc);
}

/* Starts what is missing: the poll, the push, or (closing) the close. */
static void
htc_pump(struct htc *hc)
{
	struct conn *c = hc->c;

	if (hc->finished || hc->backoff || hc->open != NULL)
		return;
	if (c->state == CONN_CLOSING) {
		/* What we still hold goes first, then the close. */
		if (hc->push == NULL && buf_unread(&hc->up) > 0 &&
		    hc->id[0] != '\0')
			hc->push = htc_req_new(hc, HTTPT_PUSH, NULL);
		if (hc->push == NULL && hc->close == NULL)
			if ((hc->close = htc_req_new(hc, HTTPT_CLOSE,
			    NULL)) == NULL)
				htc_finish(hc);
		return;
	}
	if (c->state != CONN_OPEN)
		return;
	if (hc->poll == NULL && buf_unread(&hc->held) == 0 && !c->paused &&
	    (hc->poll = htc_req_new(hc, HTTPT_POLL, NULL)) == NULL) {
		snprintf(hc->last_err, sizeof(hc->last_err), "cannot make a "
		    "poll");
		htc_failed(hc);
		return;
	}
	if (hc->push == NULL && buf_unread(&hc->up) > 0 &&
	    (hc->push = htc_req_new(hc, HTTPT_PUSH, NULL)) == NULL) {
		snprintf(hc->last_err, sizeof(hc->last_err), "cannot make a "
		    "push");
		htc_failed(hc);
	}
}

static void
htc_close_timeout(uv_timer_t *t)
{
	htc_finish(t->data);
}

/* Every request let go, the conn's handle closed (then on_close). */
static void
htc_finish(struct htc *hc)
{
	struct conn *c = hc->c;

	if (hc->finished)
		return;
	hc->finished = 1;
	if (hc->open != NULL)
		htc_req_drop(hc->open);
	if (hc->poll != NULL)
		htc_req_drop(hc->poll);
	if (hc->push != NULL)
		htc_req_drop(hc->push);
	if (hc->close != NULL)
		htc_req_drop(hc->close);
	uv_timer_stop(hc->timer);
	hc->timer->data = c;
	uv_close((uv_handle_t *)hc->timer, conn_close_cb);
}

/*
 * conn_end's part (c is CLOSING, why and reason set): the owner's close
 * sends what we hold and tells the server (HTC_CLOSE_MS at most); any
 * other end is at once.
 */
void
conn_htc_end(struct conn *c)
{
	struct htc *hc = c->htc;

	if (hc->poll != NULL)
		htc_req_drop(hc->poll);
	if (c->why != CONN_WHY_OWNER || hc->id[0] == '\0') {
		htc_finish(hc);
		return;
	}
	hc->backoff = 0;
	uv_timer_start(hc->timer, htc_close_timeout, 2 * HTC_CLOSE_MS, 0);
	htc_pump(hc);
}

int
conn_htc_send(struct conn *c, struct obuf *b)
{
	struct htc *hc = c->htc;

	if (c->state != CONN_OPEN || buf_append(&hc->up, b->mem +
	    CONN_HEADROOM, b->len, HTC_UP_MAX) == -1) {
		free(b);
		return -1;
	}
	free(b);
	htc_pump(hc);
	return 0;
}

size_t
conn_htc_pending(const struct conn *c)
{
	return buf_unread(&c->htc->up);
}

void
conn_htc_resume(struct conn *c)
{
	htc_deliver(c->htc);
	htc_pump(c->htc);
}

/* The buffers go with the conn: an owner up the stack may still read
 * what it was given. */
void
conn_htc_free(struct conn *c)
{
	if (c->htc == NULL)
		return;
	buf_free(&c->htc->up);
	buf_free(&c->htc->held);
	free(c->htc);
	c->htc = NULL;
}

/* What a client transport needs of cp: its own copies. */
static int
htc_params(struct htc *hc, const struct conn_client_params *cp,
    char *err)
{
	snprintf(hc->host_port, sizeof(hc->host_port), "%s", cp->host_port);
	snprintf(hc->path_query, sizeof(hc->path_query), "%s",
	    cp->path_query);
	snprintf(hc->extra, sizeof(hc->extra), "%s", cp->extra_header ?
	    cp->extra_header : "");
	snprintf(hc->ua, sizeof(hc->ua), "%s", cp->user_agent ?
	    cp->user_agent : "");
	hc->ssl_ctx = cp->ssl_ctx;
	snprintf(hc->tls_host, sizeof(hc->tls_host), "%s", cp->tls_host ?
	    cp->tls_host : "");
	hc->tls_verify = cp->tls_verify_name;
	if (cp->proxy != NULL) {
		/*
		 * Plain HTTP goes to the proxy as a forward proxy's request
		 * (absolute-form), the one use every proxy allows; with TLS
		 * the requests must be ours end to end: CONNECT.
		 */
		if (cp->ssl_ctx != NULL) {
			hc->proxy = *cp->proxy;
			hc->connect = 1;
		} else {
			snprintf(hc->prefix, sizeof(hc->prefix), "http://%s",
			    cp->host_port);
			snprintf(hc->proxy_auth, sizeof(hc->proxy_auth), "%s",
			    cp->proxy->auth);
		}
	}
	if (strlen(cp->path_query) >= sizeof(hc->path_query)) {
		err_set(err, "request path too long");
		return -1;
	}
	return 0;
}

struct conn *
conn_new_http(uv_loop_t *loop, uv_tcp_t *tcp, const struct sockaddr *sa,
    const struct conn_client_params *cp, const struct conn_cbs *cbs,
    void *arg, char *err)
{
	struct conn	*c;
	struct htc	*hc = NULL;

	if ((c = calloc(1, sizeof(*c))) == NULL ||
	    (hc = calloc(1, sizeof(*hc))) == NULL ||
	    (hc->timer = malloc(sizeof(*hc->timer))) == NULL) {
		err_set(err, "out of memory");
		goto fail;
	}
	if (htc_params(hc, cp, err) == -1) {
		free(hc->timer);
		goto fail;
	}
	memcpy(&hc->sa, sa, sa->sa_family == AF_INET6 ?
	    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in));
	hc->c = c;
	hc->loop = loop;
	hc->hold_ms = HTTPT_HOLD_MS;
	uv_timer_init(loop, hc->timer);
	hc->timer->data = hc;
	c->loop = loop;
	c->kind = CONN_HTTP_CLIENT;
	c->htc = hc;
	c->cbs = cbs;
	c->arg = arg;
	c->state = CONN_HANDSHAKE;
	snprintf(c->peer, sizeof(c->peer), "%.63s", hc->host_port);
	if ((hc->open = htc_req_new(hc, HTTPT_OPEN, tcp)) == NULL) {
		err_set(err, "cannot make the HTTP transport's open request");
		hc->finished = 1;
		c->cbs = NULL;
		c->state = CONN_CLOSING;
		hc->timer->data = c;
		uv_close((uv_handle_t *)hc->timer, conn_close_cb);
		return NULL;
	}
	return c;
fail:
	if (hc != NULL)
		free(hc);
	free(c);
	uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
	return NULL;
}
