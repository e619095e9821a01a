/*
 * Transport connection: TCP, optionally websocket (RFC 6455) after an
 * HTTP/1.1 upgrade.  See conn.h.
 */

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "conn.h"
#include "crypto.h"
#include "err.h"
#include "ws.h"

#define CONN_RBUF	(256 * 1024)

enum conn_state {
	CONN_HANDSHAKE,		/* HTTP head being read */
	CONN_OPEN,
	CONN_CLOSING
};

struct conn {
	uv_tcp_t		*tcp;
	enum conn_kind		 kind;
	enum conn_state		 state;
	const struct conn_cbs	*cbs;
	void			*arg;
	struct ws_dec		 dec;
	char			 key[32];	/* ws client: our key */
	struct conn_http	 http;
	char			 peer[64];
	char			 reason[ERR_LEN];
	uint8_t			*rbuf;		/* unparsed input at the front */
	size_t			 rlen;
	int			 reading;
	int			 paused;
	uv_shutdown_t		 shutdown;
};

static void	conn_read_cb(uv_stream_t *, ssize_t, const uv_buf_t *);
static void	conn_close_cb(uv_handle_t *);
static void	conn_write_cb(uv_write_t *, int);

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
conn_peer_name(uv_tcp_t *tcp, char *out, size_t cap)
{
	struct sockaddr_storage	ss;
	int			len = sizeof(ss);
	char			host[INET6_ADDRSTRLEN] = "?";
	int			port = 0;

	if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) == 0) {
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

	if (c->rbuf == NULL && (c->rbuf = malloc(CONN_RBUF)) == NULL) {
		*buf = uv_buf_init(NULL, 0);
		return;
	}
	*buf = uv_buf_init((char *)c->rbuf + c->rlen, CONN_RBUF - c->rlen);
}

static void
conn_start_reading(struct conn *c)
{
	if (c->reading || c->paused || c->state == CONN_CLOSING)
		return;
	if (uv_read_start((uv_stream_t *)c->tcp, conn_alloc_cb,
	    conn_read_cb) == 0)
		c->reading = 1;
}

struct conn *
conn_new(uv_loop_t *loop, uv_tcp_t *tcp, enum conn_kind kind,
    const struct conn_client_params *cp, const struct conn_cbs *cbs,
    void *arg, char *err)
{
	struct conn	*c;
	uint8_t		 nonce[16];
	struct obuf	*b = NULL;
	int		 n;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		err_set(err, "out of memory");
		goto fail;
	}
	c->tcp = tcp;
	c->shutdown.data = c;
	c->kind = kind;
	c->cbs = cbs;
	c->arg = arg;
	tcp->data = c;
	uv_tcp_nodelay(tcp, 1);
	conn_peer_name(tcp, c->peer, sizeof(c->peer));

	switch (kind) {
	case CONN_RAW_SERVER:
	case CONN_RAW_CLIENT:
		c->state = CONN_OPEN;
		break;
	case CONN_WS_SERVER:
		ws_dec_init(&c->dec, WS_ROLE_SERVER, WS_DEFAULT_MAX_FRAME);
		c->state = CONN_HANDSHAKE;
		break;
	case CONN_WS_CLIENT:
		ws_dec_init(&c->dec, WS_ROLE_CLIENT, WS_DEFAULT_MAX_FRAME);
		c->state = CONN_HANDSHAKE;
		if (crypto_random(nonce, sizeof(nonce), err) == -1)
			goto fail;
		crypto_b64(nonce, sizeof(nonce), c->key);
		if ((b = conn_obuf(WS_HTTP_MAX)) == NULL) {
			err_set(err, "out of memory");
			goto fail;
		}
		n = ws_client_request((char *)b->mem + CONN_HEADROOM,
		    WS_HTTP_MAX, cp->host_port, cp->path_query, c->key,
		    cp->extra_header);
		if (n < 0) {
			err_set(err, "websocket request too long");
			goto fail;
		}
		b->len = n;
		b->conn = c;
		if (uv_write(&b->req, (uv_stream_t *)tcp, &(uv_buf_t){
		    .base = (char *)b->mem + CONN_HEADROOM, .len = b->len }, 1,
		    conn_write_cb) != 0) {
			err_set(err, "cannot send the websocket request");
			goto fail;
		}
		b = NULL;
		break;
	}
	conn_start_reading(c);
	return c;
fail:
	free(b);
	if (c != NULL) {
		c->state = CONN_CLOSING;
		uv_close((uv_handle_t *)tcp, conn_close_cb);
		c->cbs = NULL;
	} else
		uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
	return NULL;
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

size_t
conn_pending(const struct conn *c)
{
	return uv_stream_get_write_queue_size((const uv_stream_t *)c->tcp);
}

static void
conn_write_cb(uv_write_t *req, int status)
{
	struct obuf	*b = (struct obuf *)req;
	struct conn	*c = b->conn;

	free(b);
	if (c == NULL || c->state == CONN_CLOSING)
		return;
	if (status < 0) {
		conn_close(c, uv_strerror(status));
		return;
	}
	if (c->cbs != NULL && c->cbs->on_drain != NULL)
		c->cbs->on_drain(c, c->arg);
}

/* Writes raw bytes (HTTP heads, control frames) without framing. */
static int
conn_send_raw(struct conn *c, const void *p, size_t n)
{
	struct obuf *b;

	if ((b = conn_obuf(n)) == NULL)
		return -1;
	memcpy(b->mem + CONN_HEADROOM, p, n);
	b->len = n;
	b->conn = c;
	if (uv_write(&b->req, (uv_stream_t *)c->tcp, &(uv_buf_t){
	    .base = (char *)b->mem + CONN_HEADROOM, .len = n }, 1,
	    conn_write_cb) != 0) {
		free(b);
		return -1;
	}
	return 0;
}

static int
conn_send_frame(struct conn *c, int opcode, struct obuf *b)
{
	uint8_t		 hdr[WS_HDR_MAX];
	uint8_t		 mask[4];
	uint8_t		*payload = b->mem + CONN_HEADROOM;
	size_t		 hlen;
	uv_buf_t	 buf;

	if (c->kind == CONN_WS_CLIENT) {
		if (RAND_bytes(mask, sizeof(mask)) != 1)
			return -1;
		hlen = ws_frame_header(hdr, opcode, 1, b->len, mask);
		ws_mask(payload, b->len, mask, 0);
	} else if (c->kind == CONN_WS_SERVER)
		hlen = ws_frame_header(hdr, opcode, 1, b->len, NULL);
	else
		hlen = 0;
	memcpy(payload - hlen, hdr, hlen);
	buf = uv_buf_init((char *)payload - hlen, hlen + b->len);
	b->conn = c;
	if (uv_write(&b->req, (uv_stream_t *)c->tcp, &buf, 1,
	    conn_write_cb) != 0)
		return -1;
	return 0;
}

int
conn_send(struct conn *c, struct obuf *b)
{
	if (c->state != CONN_OPEN || conn_send_frame(c, WS_OP_BINARY, b) == -1) {
		free(b);
		return -1;
	}
	return 0;
}

static void
conn_send_control(struct conn *c, int opcode, const void *p, size_t n)
{
	struct obuf *b;

	if ((b = conn_obuf(n)) == NULL)
		return;
	memcpy(b->mem + CONN_HEADROOM, p, n);
	b->len = n;
	if (conn_send_frame(c, opcode, b) == -1)
		free(b);
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

/* Feeds buffered input through the websocket decoder to the owner. */
static void
conn_deliver(struct conn *c)
{
	struct ws_event	ev;
	char		err[ERR_LEN];
	size_t		off = 0;
	ssize_t		n;
	int		code;

	if (!conn_is_ws(c)) {
		if (c->rlen > 0)
			c->cbs->on_data(c, c->arg, c->rbuf, c->rlen);
		c->rlen = 0;
		return;
	}
	while (c->state == CONN_OPEN && !c->paused && off < c->rlen) {
		n = ws_dec_next(&c->dec, c->rbuf + off, c->rlen - off, &ev,
		    &code, err);
		if (n == 0)
			break;
		if (n < 0) {
			uint8_t cl[2] = { code >> 8, code & 0xff };

			conn_send_control(c, WS_OP_CLOSE, cl, sizeof(cl));
			conn_close(c, err);
			return;
		}
		off += n;
		switch (ev.type) {
		case WS_EV_DATA:
			c->cbs->on_data(c, c->arg, ev.data, ev.len);
			break;
		case WS_EV_PING:
			conn_send_control(c, WS_OP_PONG, ev.data, ev.len);
			break;
		case WS_EV_CLOSE:
			snprintf(c->reason, sizeof(c->reason),
			    "peer sent websocket close %d", ev.close_code);
			conn_send_control(c, WS_OP_CLOSE, ev.data,
			    ev.len >= 2 ? 2 : 0);
			conn_close(c, c->reason);
			return;
		default:
			break;
		}
	}
	if (c->state == CONN_CLOSING)
		return;
	memmove(c->rbuf, c->rbuf + off, c->rlen - off);
	c->rlen -= off;
}

void
conn_resume(struct conn *c)
{
	if (!c->paused)
		return;
	c->paused = 0;
	conn_deliver(c);
	conn_start_reading(c);
}

static void
conn_http_reply(struct conn *c, int status, const char *extra,
    const char *body)
{
	char		 head[512];
	const char	*text;
	int		 n;

	switch (status) {
	case 400: text = "Bad Request"; break;
	case 403: text = "Forbidden"; break;
	case 405: text = "Method Not Allowed"; break;
	case 406: text = "Not Acceptable"; break;
	case 414: text = "URI Too Long"; break;
	case 426: text = "Upgrade Required"; break;
	case 431: text = "Request Header Fields Too Large"; break;
	case 503: text = "Service Unavailable"; break;
	default: text = "Error"; break;
	}
	n = snprintf(head, sizeof(head), "HTTP/1.1 %d %s\r\n%s"
	    "Content-Type: text/plain; charset=utf-8\r\n"
	    "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
	    status, text, extra ? extra : "", strlen(body), body);
	if (n > 0 && (size_t)n < sizeof(head))
		conn_send_raw(c, head, n);
}

void
conn_http_refuse(struct conn *c, int status, const char *body)
{
	char reason[64];

	conn_http_reply(c, status, NULL, body);
	snprintf(reason, sizeof(reason), "refused with HTTP %d", status);
	conn_close(c, reason);
}

/* Handles the HTTP head of either side; returns -1 if the conn closed. */
static int
conn_handshake(struct conn *c)
{
	char			 err[ERR_LEN], out[512];
	struct ws_http_req	 req;
	ssize_t			 n;
	int			 status, len;

	if (c->kind == CONN_WS_SERVER) {
		n = ws_server_parse_request((char *)c->rbuf, c->rlen, &req,
		    &status, err);
		if (n == 0)
			return 0;
		if (n < 0) {
			conn_http_reply(c, status, status == 426 ?
			    "Sec-WebSocket-Version: 13\r\n" : NULL, err);
			conn_close(c, err);
			return -1;
		}
		snprintf(c->http.target, sizeof(c->http.target), "%s",
		    req.target);
		len = ws_server_response(out, sizeof(out), req.key);
		if (len < 0 || conn_send_raw(c, out, len) == -1) {
			conn_close(c, "cannot answer the upgrade");
			return -1;
		}
	} else {
		n = ws_client_check_response((char *)c->rbuf, c->rlen, c->key,
		    err);
		if (n == 0)
			return 0;
		if (n < 0) {
			conn_close(c, err);
			return -1;
		}
	}
	memmove(c->rbuf, c->rbuf + n, c->rlen - n);
	c->rlen -= n;
	c->state = CONN_OPEN;
	c->cbs->on_open(c, c->arg);
	return c->state == CONN_CLOSING ? -1 : 0;
}

static void
conn_read_cb(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
	struct conn *c = s->data;

	if (nread == 0 || c->state == CONN_CLOSING)
		return;
	if (nread < 0) {
		conn_close(c, nread == UV_EOF ? "connection closed by peer" :
		    uv_strerror(nread));
		return;
	}
	c->rlen += nread;
	if (c->state == CONN_HANDSHAKE) {
		if (conn_handshake(c) == -1)
			return;
		if (c->state == CONN_HANDSHAKE) {
			if (c->rlen >= WS_HTTP_MAX)
				conn_close(c, "HTTP head too long");
			return;
		}
	}
	conn_deliver(c);
	/* A partial control frame can never fill the buffer; data can't
	 * stay buffered either, so a full buffer means a broken peer. */
	if (c->state == CONN_OPEN && c->rlen == CONN_RBUF)
		conn_close(c, "input buffer overflow");
}

static void
conn_close_cb(uv_handle_t *h)
{
	struct conn *c = h->data;

	free(h);
	if (c == NULL)
		return;
	if (c->cbs != NULL && c->cbs->on_close != NULL)
		c->cbs->on_close(c, c->arg, c->reason);
	free(c->rbuf);
	free(c);
}

static void
conn_shutdown_cb(uv_shutdown_t *req, int status)
{
	struct conn *c = req->data;

	uv_close((uv_handle_t *)c->tcp, conn_close_cb);
}

void
conn_close(struct conn *c, const char *reason)
{
	if (c->state == CONN_CLOSING)
		return;
	if (c->state == CONN_OPEN && conn_is_ws(c)) {
		static const uint8_t normal[2] = { 0x03, 0xe8 };

		if (strncmp(reason, "peer sent websocket close", 25) != 0)
			conn_send_control(c, WS_OP_CLOSE, normal,
			    sizeof(normal));
	}
	c->state = CONN_CLOSING;
	if (c->reason != reason)
		snprintf(c->reason, sizeof(c->reason), "%s", reason);
	if (c->reading)
		uv_read_stop((uv_stream_t *)c->tcp);
	c->reading = 0;
	/*
	 * Let a final reply or close frame reach the kernel first; a peer
	 * that does not even read those gets its connection simply closed.
	 */
	if (conn_pending(c) == 0 && uv_shutdown(&c->shutdown,
	    (uv_stream_t *)c->tcp, conn_shutdown_cb) == 0)
		return;
	uv_close((uv_handle_t *)c->tcp, conn_close_cb);
}
