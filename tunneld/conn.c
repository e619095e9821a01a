/*
 * Transport connection: TCP, for clients optionally through an HTTP
 * CONNECT proxy and TLS, then raw or websocket (RFC 6455) after an
 * HTTP/1.1 upgrade.  See conn.h.
 *
 * Every byte the owner sends goes through conn_put(), which frames it (ws),
 * encrypts it (TLS) and writes it; every byte read goes through
 * conn_process(), after TLS decryption, which runs the proxy and upgrade
 * handshakes and then the websocket decoder.
 */

#include <arpa/inet.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "conn.h"
#include "crypto.h"
#include "err.h"
#include "ws.h"
#include "wsup.h"

#define CONN_RBUF	(256 * 1024)
#define CONN_TBUF	(64 * 1024)

enum conn_state {
	CONN_PROXY,		/* client: CONNECT answer being read */
	CONN_TLS,		/* client: TLS handshake */
	CONN_HANDSHAKE,		/* HTTP upgrade head being read */
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
	char			*request;	/* ws client: upgrade request */
	struct conn_http	 http;
	char			 peer[64];
	struct sockaddr_storage	 peer_ss;
	int			 peer_ss_ok;
	char			 reason[ERR_LEN];
	uint8_t			*rbuf;		/* unparsed input at the front */
	size_t			 rlen;
	int			 reading;
	int			 paused;
	int			 throttled;	/* peer not reading: see conn.h */
	size_t			 ctrl_backlog;	/* pong bytes queued */
	uv_shutdown_t		 shutdown;
	SSL			*ssl;
	BIO			*rbio;		/* TLS records read */
	BIO			*wbio;		/* TLS records to write */
	uint8_t			*tbuf;
};

static void	conn_read_cb(uv_stream_t *, ssize_t, const uv_buf_t *);
static void	conn_close_cb(uv_handle_t *);
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

	if (c->ssl != NULL) {
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
static int
conn_held(const struct conn *c)
{
	return c->paused || c->throttled;
}

static void
conn_start_reading(struct conn *c)
{
	if (c->reading || conn_held(c) || c->state == CONN_CLOSING)
		return;
	if (uv_read_start((uv_stream_t *)c->tcp, conn_alloc_cb,
	    conn_read_cb) == 0)
		c->reading = 1;
}

size_t
conn_pending(const struct conn *c)
{
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
		conn_close(c, uv_strerror(status));
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

/* Writes out the TLS records OpenSSL produced. */
static int
conn_tls_flush(struct conn *c)
{
	struct obuf	*b;
	size_t		 n;
	int		 got;

	while ((n = BIO_ctrl_pending(c->wbio)) > 0) {
		if ((b = conn_obuf(n)) == NULL)
			return -1;
		got = BIO_read(c->wbio, b->mem + CONN_HEADROOM, (int)n);
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
static int
conn_put(struct conn *c, struct obuf *b, size_t hlen)
{
	uint8_t	*p = b->mem + CONN_HEADROOM - hlen;
	int	 rc;

	if (c->ssl == NULL)
		return conn_write(c, b, hlen);
	rc = SSL_write(c->ssl, p, (int)(hlen + b->len));
	free(b);
	if (rc <= 0)
		return -1;
	return conn_tls_flush(c);
}

/* Sends raw bytes (HTTP heads) without framing. */
static int
conn_send_raw(struct conn *c, const void *p, size_t n)
{
	struct obuf *b;

	if ((b = conn_obuf(n)) == NULL)
		return -1;
	memcpy(b->mem + CONN_HEADROOM, p, n);
	b->len = n;
	return conn_put(c, b, 0);
}

/*
 * Masking keys must be unpredictable (RFC 6455 10.3): they come from the
 * CSPRNG, drawn a few KiB at a time rather than per frame.
 */
static int
conn_mask_key(uint8_t mask[4])
{
	static uint8_t	pool[4096];
	static size_t	left;

	if (left < 4) {
		if (RAND_bytes(pool, sizeof(pool)) != 1)
			return -1;
		left = sizeof(pool);
	}
	left -= 4;
	memcpy(mask, pool + left, 4);
	OPENSSL_cleanse(pool + left, 4);
	return 0;
}

static int
conn_send_frame(struct conn *c, int opcode, struct obuf *b)
{
	uint8_t		 mask[4];
	uint8_t		*payload = b->mem + CONN_HEADROOM;
	uint8_t		 hdr[WS_HDR_MAX];
	size_t		 hlen = 0;

	if (c->kind == CONN_WS_CLIENT) {
		if (conn_mask_key(mask) == -1) {
			free(b);
			return -1;
		}
		hlen = ws_frame_header(hdr, opcode, 1, b->len, mask);
		ws_mask(payload, b->len, mask, 0);
	} else if (c->kind == CONN_WS_SERVER)
		hlen = ws_frame_header(hdr, opcode, 1, b->len, NULL);
	memcpy(payload - hlen, hdr, hlen);
	return conn_put(c, b, hlen);
}

int
conn_send(struct conn *c, struct obuf *b)
{
	if (c->state != CONN_OPEN) {
		free(b);
		return -1;
	}
	return conn_send_frame(c, WS_OP_BINARY, b);
}

static void
conn_send_control(struct conn *c, int opcode, const void *p, size_t n)
{
	struct obuf *b;

	if ((b = conn_obuf(n)) == NULL)
		return;
	memcpy(b->mem + CONN_HEADROOM, p, n);
	b->len = n;
	conn_send_frame(c, opcode, b);
}

/*
 * Answers a ping.  Pongs cost us memory at the peer's pace, not ours: a
 * peer that keeps pinging without reading the answers is closed once they
 * pass CONN_CTRL_BACKLOG_MAX.  Returns -1 if the conn closed.
 */
static int
conn_pong(struct conn *c, const void *p, size_t n)
{
	conn_send_control(c, WS_OP_PONG, p, n);
	if (conn_pending(c) == 0)
		return 0;
	c->ctrl_backlog += WS_HDR_MAX + n;
	if (c->ctrl_backlog > CONN_CTRL_BACKLOG_MAX) {
		conn_close(c, "peer does not read the answers to its pings");
		return -1;
	}
	return 0;
}

/* Past the proxy and TLS: upgrade to websocket, or open a raw conn. */
static int
conn_transport_ready(struct conn *c)
{
	if (c->kind == CONN_WS_CLIENT) {
		c->state = CONN_HANDSHAKE;
		if (conn_send_raw(c, c->request, strlen(c->request)) == -1) {
			conn_close(c, "cannot send the websocket request");
			return -1;
		}
		return 0;
	}
	c->state = CONN_OPEN;
	if (c->cbs != NULL && c->cbs->on_open != NULL)
		c->cbs->on_open(c, c->arg);
	return c->state == CONN_CLOSING ? -1 : 0;
}

static int
conn_tls_start(struct conn *c, const struct conn_client_params *cp,
    char *err)
{
	struct in6_addr	a6;
	struct in_addr	a4;
	int		is_ip;

	if ((c->ssl = SSL_new(cp->ssl_ctx)) == NULL ||
	    (c->rbio = BIO_new(BIO_s_mem())) == NULL ||
	    (c->wbio = BIO_new(BIO_s_mem())) == NULL) {
		err_set(err, "cannot set up TLS");
		return -1;
	}
	BIO_set_mem_eof_return(c->rbio, -1);
	SSL_set_bio(c->ssl, c->rbio, c->wbio);
	SSL_set_connect_state(c->ssl);
	is_ip = inet_pton(AF_INET, cp->tls_host, &a4) == 1 ||
	    inet_pton(AF_INET6, cp->tls_host, &a6) == 1;
	/* SNI is sent through a proxy too, unlike kptunnel. */
	if (!is_ip)
		SSL_set_tlsext_host_name(c->ssl, cp->tls_host);
	if (cp->tls_verify_name) {
		if (is_ip)
			X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(c->ssl),
			    cp->tls_host);
		else
			SSL_set1_host(c->ssl, cp->tls_host);
	}
	return 0;
}

struct conn *
conn_new(uv_loop_t *loop, uv_tcp_t *tcp, enum conn_kind kind,
    const struct conn_client_params *cp, const struct conn_cbs *cbs,
    void *arg, char *err)
{
	struct conn	*c;
	uint8_t		 nonce[16];
	char		 connect[1024];
	int		 n;

	if ((c = calloc(1, sizeof(*c))) == NULL) {
		err_set(err, "out of memory");
		uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
		return NULL;
	}
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
	if (kind == CONN_WS_CLIENT) {
		ws_dec_init(&c->dec, WS_ROLE_CLIENT, WS_DEFAULT_MAX_FRAME);
		if (crypto_random(nonce, sizeof(nonce), err) == -1)
			goto fail;
		crypto_b64(nonce, sizeof(nonce), c->key);
		if ((c->request = malloc(WSUP_HEAD_MAX)) == NULL ||
		    wsup_client_request(c->request, WSUP_HEAD_MAX, cp->host_port,
		    cp->path_query, c->key, cp->extra_header) < 0) {
			err_set(err, "websocket request too long");
			goto fail;
		}
	}
	if (cp != NULL && cp->ssl_ctx != NULL &&
	    conn_tls_start(c, cp, err) == -1)
		goto fail;
	if (cp != NULL && cp->proxy != NULL) {
		n = proxy_request(connect, sizeof(connect), cp->proxy,
		    cp->host_port, cp->user_agent);
		if (n < 0) {
			err_set(err, "proxy request too long");
			goto fail;
		}
		c->state = CONN_PROXY;
		/* Not through TLS: it goes to the proxy itself. */
		{
			SSL *ssl = c->ssl;

			c->ssl = NULL;
			n = conn_send_raw(c, connect, n);
			c->ssl = ssl;
		}
		if (n == -1) {
			err_set(err, "cannot send to the proxy");
			goto fail;
		}
	} else if (c->ssl != NULL) {
		c->state = CONN_TLS;
		if (conn_tls_pump(c) == -1) {
			err_set(err, "TLS: %s", c->reason);
			goto fail;
		}
	} else if (kind == CONN_WS_CLIENT && conn_transport_ready(c) == -1) {
		err_set(err, "cannot send the websocket request");
		goto fail;
	}
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
			conn_close(c, "out of memory");
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

void
conn_pause(struct conn *c)
{
	c->paused = 1;
	if (c->reading) {
		uv_read_stop((uv_stream_t *)c->tcp);
		c->reading = 0;
	}
}

static void
conn_http_reply(struct conn *c, int status, const char *extra,
    const char *body)
{
	char		 head[1024];
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

/* The upgrade head of either side; -1 if the conn closed. */
static int
conn_upgrade(struct conn *c)
{
	char			 err[ERR_LEN], out[512];
	struct wsup_req	 req;
	ssize_t			 n;
	int			 status, len;

	if (c->kind == CONN_WS_SERVER) {
		n = wsup_server_parse_request((char *)c->rbuf, c->rlen, &req,
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
		len = wsup_server_response(out, sizeof(out), req.key);
		if (len < 0 || conn_send_raw(c, out, len) == -1) {
			conn_close(c, "cannot answer the upgrade");
			return -1;
		}
	} else {
		n = wsup_client_check_response((char *)c->rbuf, c->rlen, c->key,
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
	if (c->cbs != NULL && c->cbs->on_open != NULL)
		c->cbs->on_open(c, c->arg);
	return c->state == CONN_CLOSING ? -1 : 0;
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
		conn_close(c, err);
		return -1;
	}
	memmove(c->rbuf, c->rbuf + n, c->rlen - n);
	c->rlen -= n;
	if (c->ssl != NULL) {
		/* Whatever followed the answer is TLS already. */
		if (c->rlen > 0)
			BIO_write(c->rbio, c->rbuf, (int)c->rlen);
		c->rlen = 0;
		c->state = CONN_TLS;
		return conn_tls_pump(c);
	}
	return conn_transport_ready(c);
}

/*
 * Runs the handshakes and feeds the buffered input through the websocket
 * decoder to the owner.  Returns -1 if the conn closed.
 */
static int
conn_process(struct conn *c)
{
	struct ws_event	ev;
	char		err[ERR_LEN];
	size_t		off = 0;
	ssize_t		n;
	int		code;

	if (c->state == CONN_PROXY && conn_proxy_answer(c) == -1)
		return -1;
	if (c->state == CONN_HANDSHAKE && conn_upgrade(c) == -1)
		return -1;
	if (c->state != CONN_OPEN) {
		if (c->rlen >= WSUP_HEAD_MAX && c->state != CONN_TLS) {
			conn_close(c, "HTTP head too long");
			return -1;
		}
		return 0;
	}
	if (!conn_is_ws(c)) {
		if (c->rlen > 0 && !conn_held(c))
			c->cbs->on_data(c, c->arg, c->rbuf, c->rlen);
		if (c->state == CONN_CLOSING)
			return -1;
		if (!conn_held(c))
			c->rlen = 0;
		return 0;
	}
	while (c->state == CONN_OPEN && !conn_held(c) && off < c->rlen) {
		n = ws_dec_next(&c->dec, c->rbuf + off, c->rlen - off, &ev,
		    &code, err);
		if (n == 0)
			break;
		if (n < 0) {
			uint8_t cl[2] = { code >> 8, code & 0xff };

			conn_send_control(c, WS_OP_CLOSE, cl, sizeof(cl));
			conn_close(c, err);
			return -1;
		}
		off += n;
		switch (ev.type) {
		case WS_EV_DATA:
			c->cbs->on_data(c, c->arg, ev.data, ev.len);
			break;
		case WS_EV_PING:
			if (conn_pong(c, ev.data, ev.len) == -1)
				return -1;
			break;
		case WS_EV_CLOSE:
			snprintf(c->reason, sizeof(c->reason),
			    "peer sent websocket close %d", ev.close_code);
			conn_send_control(c, WS_OP_CLOSE, ev.data,
			    ev.len >= 2 ? 2 : 0);
			conn_close(c, c->reason);
			return -1;
		default:
			break;
		}
	}
	if (c->state == CONN_CLOSING)
		return -1;
	if (off > 0) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
	/* Nothing legitimate stays buffered long enough to fill it. */
	if (c->rlen == CONN_RBUF && !conn_held(c)) {
		conn_close(c, "input buffer overflow");
		return -1;
	}
	return 0;
}

static const char *
conn_tls_error(struct conn *c)
{
	static char	msg[ERR_LEN];
	long		vr = SSL_get_verify_result(c->ssl);
	unsigned long	e = ERR_get_error();

	if (vr != X509_V_OK)
		snprintf(msg, sizeof(msg), "TLS: certificate verification "
		    "failed: %s", X509_verify_cert_error_string(vr));
	else if (e != 0)
		snprintf(msg, sizeof(msg), "TLS: %s",
		    ERR_reason_error_string(e));
	else
		snprintf(msg, sizeof(msg), "TLS: connection closed");
	ERR_clear_error();
	return msg;
}

/*
 * Moves TLS forward: the handshake, then decrypted bytes into rbuf for
 * conn_process().  Returns -1 if the conn closed.
 */
static int
conn_tls_pump(struct conn *c)
{
	int rc, e;

	if (c->state == CONN_TLS) {
		rc = SSL_do_handshake(c->ssl);
		if (conn_tls_flush(c) == -1) {
			conn_close(c, "TLS: cannot write");
			return -1;
		}
		if (rc != 1) {
			e = SSL_get_error(c->ssl, rc);
			if (e == SSL_ERROR_WANT_READ)
				return 0;
			conn_close(c, conn_tls_error(c));
			return -1;
		}
		if (conn_transport_ready(c) == -1)
			return -1;
	}
	if (c->rbuf == NULL && (c->rbuf = malloc(CONN_RBUF)) == NULL) {
		conn_close(c, "out of memory");
		return -1;
	}
	while (!conn_held(c) && c->state != CONN_CLOSING && c->rlen < CONN_RBUF) {
		rc = SSL_read(c->ssl, c->rbuf + c->rlen,
		    (int)(CONN_RBUF - c->rlen));
		if (rc <= 0) {
			e = SSL_get_error(c->ssl, rc);
			if (e == SSL_ERROR_WANT_READ)
				break;
			conn_close(c, e == SSL_ERROR_ZERO_RETURN ?
			    "TLS closed by peer" : conn_tls_error(c));
			return -1;
		}
		c->rlen += rc;
		if (conn_process(c) == -1)
			return -1;
	}
	if (conn_tls_flush(c) == -1) {
		conn_close(c, "TLS: cannot write");
		return -1;
	}
	return 0;
}

/* Goes on with buffered input, then reads; -1 if the conn closed. */
static int
conn_unhold(struct conn *c)
{
	if (c->ssl != NULL ? conn_tls_pump(c) == -1 : conn_process(c) == -1)
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
		conn_close(c, nread == UV_EOF ? "connection closed by peer" :
		    uv_strerror(nread));
		return;
	}
	if (c->ssl != NULL && c->state != CONN_PROXY) {
		BIO_write(c->rbio, buf->base, (int)nread);
		conn_tls_pump(c);
		return;
	}
	if (c->ssl != NULL) {
		/* Proxy answer read into tbuf: move it to rbuf. */
		if (c->rbuf == NULL && (c->rbuf = malloc(CONN_RBUF)) == NULL) {
			conn_close(c, "out of memory");
			return;
		}
		if ((size_t)nread > CONN_RBUF - c->rlen) {
			conn_close(c, "proxy answer too long");
			return;
		}
		memcpy(c->rbuf + c->rlen, buf->base, nread);
	}
	c->rlen += nread;
	conn_process(c);
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
	SSL_free(c->ssl);	/* frees the BIOs */
	free(c->tbuf);
	free(c->request);
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
	static const uint8_t normal[2] = { 0x03, 0xe8 };

	if (c->state == CONN_CLOSING)
		return;
	if (c->state == CONN_OPEN && conn_is_ws(c) &&
	    strncmp(reason, "peer sent websocket close", 25) != 0)
		conn_send_control(c, WS_OP_CLOSE, normal, sizeof(normal));
	if (c->state == CONN_OPEN && c->ssl != NULL) {
		SSL_shutdown(c->ssl);
		conn_tls_flush(c);
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
