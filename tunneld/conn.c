/*
 * Transport connection: TCP, for clients optionally through an HTTP
 * CONNECT proxy and TLS, then raw or websocket (RFC 6455) after an
 * HTTP/1.1 upgrade.  See conn.h.
 *
 * Every byte the owner sends is framed (ws, conn_ws.c), then goes through
 * conn_put(), which encrypts it (TLS, tls.c) and writes it; every byte
 * read goes through conn_process(), after TLS decryption, which runs the
 * proxy and upgrade handshakes and then the websocket decoder.  This file
 * holds the socket, the proxy's CONNECT, the TLS glue and closing.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conn.h"
#include "conn_int.h"
#include "err.h"
#include "tls.h"
#include "ws.h"
#include "wsup.h"

static void	conn_read_cb(uv_stream_t *, ssize_t, const uv_buf_t *);
static void	conn_write_cb(uv_write_t *, int);
static int	conn_tls_pump(struct conn *);

struct obuf *
conn_obuf(size_t n)
{
	struct obuf *b;

	if ((b = malloc(sizeof(*b) + CONN_HEADROOM + n)) == NULL)
		return NULL;
	b->conn = NULL;
	b->len = 0;
	b->cap = n;
	return b;
}

static void
conn_peer_name(struct conn *c, uv_tcp_t *tcp, char *out, size_t cap)
{
	struct sockaddr_storage	ss;
	int			len = sizeof(ss);
	char			host[INET6_ADDRSTRLEN] = "?";
	int			port = 0;

	if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0) {
		c->peer_ss = ss;
		c->peer_ss_ok = 1;
		if (ss.ss_family == AF_INET) {
			struct sockaddr_in *in = (struct sockaddr_in *)&ss;

			uv_ip4_name(in, host, sizeof(host));
			port = ntohs(in->sin_port);
		} else if (ss.ss_family == AF_INET6) {
			struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

			uv_ip6_name(in6, host, sizeof(host));
			port = ntohs(in6->sin6_port);
		}
	}
	if (strchr(host, ':') != NULL)
		snprintf(out, cap, "[%s]:%d", host, port);
	else
		snprintf(out, cap, "%s:%d", host, port);
}

static void
conn_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct conn *c = h->data;

	if (c->tls != NULL) {
		if (c->tbuf == NULL)
			c->tbuf = malloc(CONN_TBUF);
		*buf = uv_buf_init((char *)c->tbuf, c->tbuf ? CONN_TBUF : 0);
		return;
	}
	if (c->rbuf == NULL && (c->rbuf = malloc(CONN_RBUF)) == NULL) {
		*buf = uv_buf_init(NULL, 0);
		return;
	}
	*buf = uv_buf_init((char *)c->rbuf + c->rlen, CONN_RBUF - c->rlen);
}

/* Input is held back: by the owner (conn_pause) or by our output bound. */
int
conn_held(const struct conn *c)
{
	return c->paused || c->throttled;
}

static void
conn_start_reading(struct conn *c)
{
	if (c->reading || conn_held(c) || c->state == CONN_CLOSING ||
	    c->tcp == NULL)
		return;
	if (uv_read_start((uv_stream_t *)c->tcp, conn_alloc_cb,
	    conn_read_cb) == 0)
		c->reading = 1;
}

size_t
conn_pending(const struct conn *c)
{
	if (c->hts != NULL)
		return conn_hts_pending(c);
	if (c->htc != NULL)
		return conn_htc_pending(c);
	if (c->tcp == NULL)
		return 0;
	return uv_stream_get_write_queue_size((const uv_stream_t *)c->tcp);
}

/* Stops reading a peer that does not read what we queued for it. */
static void
conn_check_output(struct conn *c)
{
	if (c->throttled || conn_pending(c) <= CONN_WQ_HIGH)
		return;
	c->throttled = 1;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)c->tcp);
		c->reading = 0;
	}
}

static int	conn_unhold(struct conn *);

static void
conn_write_cb(uv_write_t *req, int status)
{
	struct obuf	*b = (struct obuf *)req;
	struct conn	*c = b->conn;

	free(b);
	if (c == NULL || c->state == CONN_CLOSING)
		return;
	if (status < 0) {
		conn_end(c, CONN_WHY_IO, uv_strerror(status));
		return;
	}
	if (conn_pending(c) == 0)
		c->ctrl_backlog = 0;
	if (c->throttled && conn_pending(c) < CONN_WQ_LOW) {
		c->throttled = 0;
		if (!c->paused && conn_unhold(c) == -1)
			return;
	}
	if (c->state != CONN_CLOSING && c->cbs != NULL &&
	    c->cbs->on_drain != NULL)
		c->cbs->on_drain(c, c->arg);
}

/*
 * Writes b's payload to the socket as is; takes b.  What the kernel takes
 * at once is written without a request: uv_write would also switch
 * POLLOUT on and off, an epoll_ctl per message on the latency path.
 */
static int
conn_write(struct conn *c, struct obuf *b, size_t hlen)
{
	uv_buf_t	buf;
	int		n;

	buf = uv_buf_init((char *)b->mem + CONN_HEADROOM - hlen, hlen + b->len);
	if (conn_pending(c) == 0) {
		n = uv_try_write((uv_stream_t *)c->tcp, &buf, 1);
		if (n == (int)buf.len) {
			free(b);
			return 0;
		}
		if (n > 0) {
			buf.base += n;
			buf.len -= n;
		}
	}
	b->conn = c;
	if (uv_write(&b->req, (uv_stream_t *)c->tcp, &buf, 1,
	    conn_write_cb) != 0) {
		free(b);
		return -1;
	}
	conn_check_output(c);
	return 0;
}

/* Writes out the TLS records waiting in c->tls. */
static int
conn_tls_flush(struct conn *c)
{
	struct obuf	*b;
	size_t		 n;
	ssize_t		 got;

	while ((n = tls_pending(c->tls)) > 0) {
		if ((b = conn_obuf(n)) == NULL)
			return -1;
		got = tls_take(c->tls, b->mem + CONN_HEADROOM, n);
		if (got <= 0) {
			free(b);
			return -1;
		}
		b->len = got;
		if (conn_write(c, b, 0) == -1)
			return -1;
	}
	return 0;
}

/* Sends b with hlen header bytes in front of it, through TLS if any. */
int
conn_put(struct conn *c, struct obuf *b, size_t hlen)
{
	uint8_t	*p = b->mem + CONN_HEADROOM - hlen;
	int	 rc;

	if (c->tls == NULL)
		return conn_write(c, b, hlen);
	rc = tls_write(c->tls, p, hlen + b->len);
	free(b);
	if (rc == -1)
		return -1;
	return conn_tls_flush(c);
}

/* A copy of n bytes in a new buffer, or NULL. */
struct obuf *
conn_obuf_copy(const void *p, size_t n)
{
	struct obuf *b;

	if ((b = conn_obuf(n)) == NULL)
		return NULL;
	memcpy(b->mem + CONN_HEADROOM, p, n);
	b->len = n;
	return b;
}

/* Sends raw bytes (HTTP heads) without framing. */
int
conn_send_raw(struct conn *c, const void *p, size_t n)
{
	struct obuf *b;

	if ((b = conn_obuf_copy(p, n)) == NULL)
		return -1;
	return conn_put(c, b, 0);
}

int
conn_send(struct conn *c, struct obuf *b)
{
	if (c->hts != NULL)
		return conn_hts_send(c, b);
	if (c->htc != NULL)
		return conn_htc_send(c, b);
	if (c->state != CONN_OPEN) {
		free(b);
		return -1;
	}
	return conn_ws_frame(c, WS_OP_BINARY, b);
}

/* Past the proxy and TLS: upgrade to websocket, or open a raw conn. */
static int
conn_transport_ready(struct conn *c)
{
	if (c->kind == CONN_WS_CLIENT) {
		c->state = CONN_HANDSHAKE;
		if (conn_send_raw(c, c->request, strlen(c->request)) == -1) {
			conn_end(c, CONN_WHY_RESOURCE,
			    "cannot send the websocket request");
			return -1;
		}
		return 0;
	}
	c->state = CONN_OPEN;
	if (c->cbs != NULL && c->cbs->on_open != NULL)
		c->cbs->on_open(c, c->arg);
	return c->state == CONN_CLOSING ? -1 : 0;
}

/*
 * Sends the CONNECT request, in clear: it is for the proxy itself, TLS
 * (if any) starts once the proxy answered.  Returns 0 or -1.
 */
static int
conn_proxy_start(struct conn *c, const struct conn_client_params *cp,
    char *err)
{
	struct obuf	*b;
	char		 connect[1024];
	int		 n;

	n = proxy_request(connect, sizeof(connect), cp->proxy, cp->host_port,
	    cp->user_agent);
	if (n < 0) {
		err_set(err, "proxy request too long");
		return -1;
	}
	c->state = CONN_PROXY;
	if ((b = conn_obuf_copy(connect, n)) == NULL ||
	    conn_write(c, b, 0) == -1) {
		err_set(err, "cannot send to the proxy");
		return -1;
	}
	return 0;
}

/*
 * A client's first step, by what lies between it and the websocket or
 * raw stream: the proxy, TLS, or nothing.  Returns 0 or -1.
 */
static int
conn_client_start(struct conn *c, const struct conn_client_params *cp,
    char *err)
{
	if (cp->ssl_ctx != NULL && (c->tls = tls_new(cp->ssl_ctx,
	    cp->tls_host, cp->tls_verify_name, err)) == NULL)
		return -1;
	if (cp->proxy != NULL)
		return conn_proxy_start(c, cp, err);
	if (c->tls != NULL) {
		c->state = CONN_TLS;
		if (conn_tls_pump(c) == -1) {
			err_set(err, "TLS: %s", c->reason);
			return -1;
		}
		return 0;
	}
	if (c->kind == CONN_WS_CLIENT && conn_transport_ready(c) == -1) {
		err_set(err, "cannot send the websocket request");
		return -1;
	}
	return 0;
}

struct conn *
conn_new(uv_loop_t *loop, uv_tcp_t *tcp, enum conn_kind kind,
    const struct conn_client_params *cp, const struct conn_cbs *cbs,
    void *arg, char *err)
{
	struct conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		err_set(err, "out of memory");
		uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
		return NULL;
	}
	c->loop = loop;
	c->tcp = tcp;
	c->shutdown.data = c;
	c->kind = kind;
	c->cbs = cbs;
	c->arg = arg;
	tcp->data = c;
	uv_tcp_nodelay(tcp, 1);
	conn_peer_name(c, tcp, c->peer, sizeof(c->peer));
	c->state = CONN_OPEN;
	if (kind == CONN_WS_SERVER) {
		ws_dec_init(&c->dec, WS_ROLE_SERVER, WS_DEFAULT_MAX_FRAME);
		c->state = CONN_HANDSHAKE;
	}
	if (kind == CONN_WS_CLIENT && conn_ws_client_init(c, cp, err) == -1)
		goto fail;
	if (cp != NULL && conn_client_start(c, cp, err) == -1)
		goto fail;
	conn_start_reading(c);
	return c;
fail:
	c->cbs = NULL;
	if (c->state != CONN_CLOSING) {
		c->state = CONN_CLOSING;
		uv_close((uv_handle_t *)tcp, conn_close_cb);
	}
	return NULL;
}

struct conn *
conn_adopt(uv_loop_t *loop, uv_tcp_t *tcp, const uint8_t *pre, size_t npre,
    char *err)
{
	struct conn *c;

	if (npre > CONN_RBUF) {
		err_set(err, "too many bytes read ahead");
		uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
		return NULL;
	}
	if ((c = conn_new(loop, tcp, CONN_WS_SERVER, NULL, NULL, NULL,
	    err)) == NULL)
		return NULL;
	c->state = CONN_OPEN;
	conn_pause(c);		/* until the owner is in place: conn_kick */
	if (npre > 0) {
		if ((c->rbuf = malloc(CONN_RBUF)) == NULL) {
			err_set(err, "out of memory");
			conn_end(c, CONN_WHY_RESOURCE, "out of memory");
			return NULL;
		}
		memcpy(c->rbuf, pre, npre);
		c->rlen = npre;
	}
	return c;
}

void
conn_kick(struct conn *c)
{
	conn_resume(c);
}

int
conn_is_open(const struct conn *c)
{
	return c->state == CONN_OPEN;
}

void
conn_set_owner(struct conn *c, const struct conn_cbs *cbs, void *arg)
{
	c->cbs = cbs;
	c->arg = arg;
}

const struct conn_http *
conn_http(const struct conn *c)
{
	return &c->http;
}

int
conn_peer_addr(const struct conn *c, struct sockaddr_storage *ss)
{
	if (!c->peer_ss_ok)
		return -1;
	*ss = c->peer_ss;
	return 0;
}

const char *
conn_peer(const struct conn *c)
{
	return c->peer;
}

int
conn_is_ws(const struct conn *c)
{
	return c->kind == CONN_WS_SERVER || c->kind == CONN_WS_CLIENT;
}

int
conn_is_http(const struct conn *c)
{
	return c->kind == CONN_HTTP_SERVER || c->kind == CONN_HTTP_CLIENT;
}

void
conn_set_peer_name(struct conn *c, const char *name)
{
	snprintf(c->peer, sizeof(c->peer), "%s", name);
}

int
conn_proxy_refusal(const struct conn *c)
{
	return c->proxy_status;
}

void
conn_pause(struct conn *c)
{
	c->paused = 1;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)c->tcp);
		c->reading = 0;
	}
}

static int
conn_proxy_answer(struct conn *c)
{
	char	err[ERR_LEN];
	ssize_t	n;

	n = proxy_response((char *)c->rbuf, c->rlen, err);
	if (n == 0)
		return 0;
	if (n < 0) {
		int unused;

		/* Its status tells the client what the proxy allows. */
		if ((c->proxy_status = wsup_client_refusal((char *)c->rbuf,
		    c->rlen, &unused)) < 0)
			c->proxy_status = 0;
		conn_end(c, CONN_WHY_PROTOCOL, err);
		return -1;
	}
	memmove(c->rbuf, c->rbuf + n, c->rlen - n);
	c->rlen -= n;
	if (c->tls != NULL) {
		/* Whatever followed the answer is TLS already. */
		if (c->rlen > 0 && tls_feed(c->tls, c->rbuf, c->rlen) == -1) {
			conn_end(c, CONN_WHY_RESOURCE, "out of memory");
			return -1;
		}
		c->rlen = 0;
		c->state = CONN_TLS;
		return conn_tls_pump(c);
	}
	return conn_transport_ready(c);
}

/*
 * Runs the proxy and upgrade handshakes on the buffered input.  Returns 1
 * once the conn is open, 0 while a head is incomplete, -1 if it closed.
 */
static int
conn_heads(struct conn *c)
{
	if (c->state == CONN_PROXY && conn_proxy_answer(c) == -1)
		return -1;
	if (c->state == CONN_HANDSHAKE && conn_ws_upgrade(c) == -1)
		return -1;
	if (c->state == CONN_OPEN)
		return 1;
	if (c->rlen >= WSUP_HEAD_MAX && c->state != CONN_TLS) {
		conn_end(c, CONN_WHY_PROTOCOL, "HTTP head too long");
		return -1;
	}
	return 0;
}

/* A raw conn hands all it has over at once.  Returns -1 if it closed. */
static int
conn_deliver_raw(struct conn *c)
{
	if (c->rlen > 0 && !conn_held(c))
		c->cbs->on_data(c, c->arg, c->rbuf, c->rlen);
	if (c->state == CONN_CLOSING)
		return -1;
	if (!conn_held(c))
		c->rlen = 0;
	return 0;
}

/*
 * Runs the handshakes and feeds the buffered input through the websocket
 * decoder to the owner.  Returns -1 if the conn closed.
 */
static int
conn_process(struct conn *c)
{
	int rc;

	if ((rc = conn_heads(c)) <= 0)
		return rc;
	return conn_is_ws(c) ? conn_ws_deliver(c) : conn_deliver_raw(c);
}

/*
 * Moves TLS forward: the handshake, then decrypted bytes into rbuf for
 * conn_process().  Returns -1 if the conn closed.
 */
static int
conn_tls_pump(struct conn *c)
{
	char	err[ERR_LEN];
	ssize_t	n;
	int	rc;

	if (c->state == CONN_TLS) {
		rc = tls_handshake(c->tls, err);
		if (conn_tls_flush(c) == -1) {
			conn_end(c, CONN_WHY_TLS, "TLS: cannot write");
			return -1;
		}
		if (rc == 0)
			return 0;
		if (rc == -1) {
			conn_end(c, CONN_WHY_TLS, err);
			return -1;
		}
		if (conn_transport_ready(c) == -1)
			return -1;
	}
	if (c->rbuf == NULL && (c->rbuf = malloc(CONN_RBUF)) == NULL) {
		conn_end(c, CONN_WHY_RESOURCE, "out of memory");
		return -1;
	}
	while (!conn_held(c) && c->state != CONN_CLOSING &&
	    c->rlen < CONN_RBUF) {
		n = tls_read(c->tls, c->rbuf + c->rlen, CONN_RBUF - c->rlen,
		    err);
		if (n == 0)
			break;
		if (n < 0) {
			conn_end(c, CONN_WHY_TLS, err);
			return -1;
		}
		c->rlen += n;
		if (conn_process(c) == -1)
			return -1;
	}
	if (conn_tls_flush(c) == -1) {
		conn_end(c, CONN_WHY_TLS, "TLS: cannot write");
		return -1;
	}
	return 0;
}

/* Goes on with buffered input, then reads; -1 if the conn closed. */
static int
conn_unhold(struct conn *c)
{
	if (c->tls != NULL ? conn_tls_pump(c) == -1 : conn_process(c) == -1)
		return -1;
	conn_start_reading(c);
	return 0;
}

void
conn_resume(struct conn *c)
{
	if (!c->paused)
		return;
	c->paused = 0;
	if (c->hts != NULL || c->htc != NULL) {
		if (c->hts != NULL)
			conn_hts_resume(c);
		else
			conn_htc_resume(c);
		return;
	}
	if (!c->throttled)
		conn_unhold(c);
}

static void
conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;

	if (nread == 0 || c->state == CONN_CLOSING)
		return;
	if (nread < 0) {
		conn_end(c, nread == UV_EOF ? CONN_WHY_PEER_EOF : CONN_WHY_IO,
		    nread == UV_EOF ? "connection closed by peer" :
		    uv_strerror(nread));
		return;
	}
	if (c->tls != NULL && c->state != CONN_PROXY) {
		if (tls_feed(c->tls, buf->base, nread) == -1) {
			conn_end(c, CONN_WHY_RESOURCE, "out of memory");
			return;
		}
		conn_tls_pump(c);
		return;
	}
	if (c->tls != NULL) {
		/* Proxy answer read into tbuf: move it to rbuf. */
		if (c->rbuf == NULL && (c->rbuf = malloc(CONN_RBUF)) == NULL) {
			conn_end(c, CONN_WHY_RESOURCE, "out of memory");
			return;
		}
		if ((size_t)nread > CONN_RBUF - c->rlen) {
			conn_end(c, CONN_WHY_PROTOCOL, "proxy answer too long");
			return;
		}
		memcpy(c->rbuf + c->rlen, buf->base, nread);
	}
	c->rlen += nread;
	conn_process(c);
}

void
conn_close_cb(uv_handle_t *h)
{
	struct conn *c = h->data;

	free(h);
	if (c == NULL)
		return;
	if (c->cbs != NULL && c->cbs->on_close != NULL)
		c->cbs->on_close(c, c->arg, c->reason);
	conn_hts_free(c);
	conn_htc_free(c);
	tls_free(c->tls);
	free(c->tbuf);
	free(c->request);
	free(c->rbuf);
	free(c);
}

/* The end of a lingering close: by the peer's EOF, an error or time. */
static void
conn_linger_end(struct conn *c)
{
	if (c->linger == NULL)
		return;
	uv_read_stop((uv_stream_t *)c->tcp);
	uv_close((uv_handle_t *)c->linger, (uv_close_cb)free);
	c->linger = NULL;
	uv_close((uv_handle_t *)c->tcp, conn_close_cb);
}

static void
conn_linger_timeout(uv_timer_t *t)
{
	conn_linger_end(t->data);
}

static void
conn_linger_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	static char discard[65536];

	*buf = uv_buf_init(discard, sizeof(discard));
}

static void
conn_linger_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	if (nread < 0)
		conn_linger_end(s->data);
}

static void
conn_shutdown_cb(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;

	/*
	 * A close that tells the peer why: what the peer still sends is read
	 * and dropped until it closes too (or CONN_LINGER_MS), because
	 * closing with unread bytes resets the connection, and a peer busy
	 * sending would see the reset before it reads our close frame.
	 */
	if (c->tell && status == 0 &&
	    (c->linger = malloc(sizeof(*c->linger))) != NULL) {
		uv_timer_init(c->tcp->loop, c->linger);
		c->linger->data = c;
		uv_timer_start(c->linger, conn_linger_timeout, CONN_LINGER_MS,
		    0);
		if (uv_read_start((uv_stream_t *)c->tcp, conn_linger_alloc,
		    conn_linger_read) == 0)
			return;
		conn_linger_end(c);
		return;
	}
	uv_close((uv_handle_t *)c->tcp, conn_close_cb);
}

static const struct {
	const char	*name;
	int		 close_frame;
} conn_whys[CONN_NWHY] = {
	[CONN_WHY_OWNER] =	{ "owner", 1 },
	[CONN_WHY_PEER_EOF] =	{ "peer-eof", 1 },
	[CONN_WHY_PEER_CLOSE] =	{ "peer-close", 0 },	/* answered */
	[CONN_WHY_IO] =		{ "io", 1 },
	/*
	 * A websocket protocol error sent its own close frame (with the
	 * code) already; the normal one after it is what the code always
	 * did, kept so that peers see the same bytes.
	 */
	[CONN_WHY_PROTOCOL] =	{ "protocol", 1 },
	[CONN_WHY_TLS] =	{ "tls", 1 },
	[CONN_WHY_REFUSED] =	{ "refused", 1 },
	[CONN_WHY_BACKLOG] =	{ "backlog", 1 },
	[CONN_WHY_RESOURCE] =	{ "resource", 1 },
	[CONN_WHY_HANDED] =	{ "handed", 0 },
};

const char *
conn_why_name(enum conn_why why)
{
	if ((unsigned)why >= CONN_NWHY)
		return "?";
	return conn_whys[why].name;
}

int
conn_why_sends_close(enum conn_why why)
{
	return (unsigned)why < CONN_NWHY && conn_whys[why].close_frame;
}

enum conn_why
conn_why(const struct conn *c)
{
	return c->why;
}

/*
 * Closes c for why; detail is the text on_close gets.  A websocket that
 * is open gets a close frame first unless why says otherwise, TLS its
 * close_notify; both are given to the kernel before the socket closes.
 */
void
conn_end(struct conn *c, enum conn_why why, const char *detail)
{
	uint8_t	 frame[125] = { 0x03, 0xe8 };	/* 1000, normal */
	size_t	 len = 2;

	if (c->state == CONN_CLOSING)
		return;
	if (c->hts != NULL || c->htc != NULL) {
		c->state = CONN_CLOSING;
		c->why = why;
		if (c->reason != detail)
			snprintf(c->reason, sizeof(c->reason), "%s", detail);
		if (c->hts != NULL)
			conn_hts_end(c);
		else
			conn_htc_end(c);
		return;
	}
	/*
	 * The owner's reason, when it asked, goes in the close frame
	 * (printable ASCII, so valid UTF-8): the client logs why its tunnel
	 * ended, e.g. at a limit.
	 */
	if (why == CONN_WHY_OWNER && c->tell && detail != NULL)
		for (; detail[len - 2] != '\0' && len < sizeof(frame); len++)
			frame[len] = detail[len - 2] >= 0x20 &&
			    detail[len - 2] < 0x7f ? detail[len - 2] : '?';
	if (c->state == CONN_OPEN && conn_is_ws(c) &&
	    conn_why_sends_close(why))
		conn_ws_control(c, WS_OP_CLOSE, frame, len);
	if (c->state == CONN_OPEN && c->tls != NULL) {
		tls_shutdown(c->tls);
		conn_tls_flush(c);
	}
	c->state = CONN_CLOSING;
	c->why = why;
	if (c->reason != detail)
		snprintf(c->reason, sizeof(c->reason), "%s", detail);
	if (c->reading)
		uv_read_stop((uv_stream_t *)c->tcp);
	c->reading = 0;
	/*
	 * Let a final reply or close frame reach the kernel first; a peer
	 * that does not even read those gets its connection simply closed.
	 */
	if ((conn_pending(c) == 0 || c->tell) && uv_shutdown(&c->shutdown,
	    (uv_stream_t *)c->tcp, conn_shutdown_cb) == 0)
		return;
	uv_close((uv_handle_t *)c->tcp, conn_close_cb);
}

void
conn_close(struct conn *c, const char *reason)
{
	conn_end(c, CONN_WHY_OWNER, reason);
}

void
conn_close_telling(struct conn *c, const char *reason)
{
	c->tell = 1;
	conn_end(c, CONN_WHY_OWNER, reason);
}
