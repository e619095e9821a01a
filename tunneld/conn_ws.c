/*
 * The websocket side of a conn (RFC 6455): frames out (masking as a
 * client), frames in through common/ws.c's decoder, pings and close frames
 * answered here, and the HTTP/1.1 upgrade of either role.  See conn.h.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/rand.h>

#include "conn.h"
#include "conn_int.h"
#include "crypto.h"
#include "err.h"
#include "http.h"
#include "ws.h"
#include "wsup.h"

/* A websocket client's key and upgrade request.  Returns 0 or -1. */
int
conn_ws_client_init(struct conn *c, const struct conn_client_params *cp,
    char *err)
{
	uint8_t nonce[16];

	ws_dec_init(&c->dec, WS_ROLE_CLIENT, WS_DEFAULT_MAX_FRAME);
	if (crypto_random(nonce, sizeof(nonce), err) == -1)
		return -1;
	crypto_b64(nonce, sizeof(nonce), c->key);
	if ((c->request = malloc(WSUP_HEAD_MAX)) == NULL ||
	    wsup_client_request(c->request, WSUP_HEAD_MAX, cp->host_port,
	    cp->path_query, c->key, cp->extra_header) < 0) {
		err_set(err, "websocket request too long");
		return -1;
	}
	return 0;
}

/*
 * Masking keys must be unpredictable (RFC 6455 10.3): they come from the
 * CSPRNG, drawn a few KiB at a time rather than per frame.
 */
static int
conn_ws_mask_key(uint8_t mask[4])
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

int
conn_ws_frame(struct conn *c, int opcode, struct obuf *b)
{
	uint8_t		 mask[4];
	uint8_t		*payload = b->mem + CONN_HEADROOM;
	uint8_t		 hdr[WS_HDR_MAX];
	size_t		 hlen = 0;

	if (c->kind == CONN_WS_CLIENT) {
		if (conn_ws_mask_key(mask) == -1) {
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

void
conn_ws_control(struct conn *c, int opcode, const void *p, size_t n)
{
	struct obuf *b;

	if ((b = conn_obuf(n)) == NULL)
		return;
	memcpy(b->mem + CONN_HEADROOM, p, n);
	b->len = n;
	conn_ws_frame(c, opcode, b);
}

/*
 * Answers a ping.  Pongs cost us memory at the peer's pace, not ours: a
 * peer that keeps pinging without reading the answers is closed once they
 * pass CONN_CTRL_BACKLOG_MAX.  Returns -1 if the conn closed.
 */
static int
conn_ws_pong(struct conn *c, const void *p, size_t n)
{
	conn_ws_control(c, WS_OP_PONG, p, n);
	if (conn_pending(c) == 0)
		return 0;
	c->ctrl_backlog += WS_HDR_MAX + n;
	if (c->ctrl_backlog > CONN_CTRL_BACKLOG_MAX) {
		conn_end(c, CONN_WHY_BACKLOG,
		    "peer does not read the answers to its pings");
		return -1;
	}
	return 0;
}

static void
conn_ws_http_reply(struct conn *c, int status, const char *extra,
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

	conn_ws_http_reply(c, status, NULL, body);
	snprintf(reason, sizeof(reason), "refused with HTTP %d", status);
	conn_end(c, CONN_WHY_REFUSED, reason);
}

/* The upgrade head of either side; -1 if the conn closed. */
int
conn_ws_upgrade(struct conn *c)
{
	char			 err[ERR_LEN], out[512];
	struct wsup_req	 req;
	ssize_t			 n;
	int			 status, len;

	if (c->kind == CONN_WS_SERVER) {
		/* A request of the HTTP transport is not an upgrade. */
		if ((n = http_head_end((char *)c->rbuf, c->rlen, &status,
		    NULL)) > 0 && (len = conn_hts_take(c, n)) != 0)
			return len;
		if (c->state != CONN_HANDSHAKE)
			return 0;
		n = wsup_server_parse_request((char *)c->rbuf, c->rlen, &req,
		    &status, err);
		if (n == 0)
			return 0;
		if (n < 0) {
			conn_ws_http_reply(c, status, status == 426 ?
			    "Sec-WebSocket-Version: 13\r\n" : NULL, err);
			conn_end(c, CONN_WHY_PROTOCOL, err);
			return -1;
		}
		snprintf(c->http.target, sizeof(c->http.target), "%s",
		    req.target);
		len = wsup_server_response(out, sizeof(out), req.key);
		if (len < 0 || conn_send_raw(c, out, len) == -1) {
			conn_end(c, CONN_WHY_RESOURCE,
			    "cannot answer the upgrade");
			return -1;
		}
	} else {
		n = wsup_client_check_response((char *)c->rbuf, c->rlen,
		    c->key, err);
		if (n == 0)
			return 0;
		if (n < 0) {
			status = wsup_client_refusal((char *)c->rbuf,
			    c->rlen, &c->session_unknown);
			/* A 101 refused for its headers is no refusal. */
			c->refused_status = status > 0 && status != 101 ?
			    status : 0;
			conn_end(c, CONN_WHY_PROTOCOL, err);
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

int
conn_upgrade_refusal(const struct conn *c, int *session_unknown)
{
	*session_unknown = c->refused_status != 0 && c->session_unknown;
	return c->refused_status;
}

/* Whether a close frame's reason may go into a log line as it is. */
static int
conn_ws_printable(const struct ws_event *ev)
{
	size_t i;

	for (i = 0; i < ev->len; i++)
		if (ev->data[i] < 0x20 || ev->data[i] >= 0x7f)
			return 0;
	return 1;
}

/* Acts on one decoded websocket event.  Returns -1 if the conn closed. */
static int
conn_ws_event(struct conn *c, const struct ws_event *ev)
{
	uint8_t code[2];

	switch (ev->type) {
	case WS_EV_DATA:
		c->cbs->on_data(c, c->arg, ev->data, ev->len);
		break;
	case WS_EV_PING:
		return conn_ws_pong(c, ev->data, ev->len);
	case WS_EV_CLOSE:
		snprintf(c->reason, sizeof(c->reason),
		    "peer sent websocket close %d%s%.*s", ev->close_code,
		    ev->len > 0 ? ": " : "", conn_ws_printable(ev) ?
		    (int)(ev->len > 123 ? 123 : ev->len) : 0,
		    (const char *)ev->data);
		/*
		 * Echo the peer's code (RFC 6455 5.5.1); the decoder hands
		 * it apart from the payload, which is the reason text.
		 */
		code[0] = ev->close_code >> 8;
		code[1] = ev->close_code & 0xff;
		conn_ws_control(c, WS_OP_CLOSE, code,
		    ev->close_code != 0 ? 2 : 0);
		conn_end(c, CONN_WHY_PEER_CLOSE, c->reason);
		return -1;
	default:
		break;
	}
	return 0;
}

/*
 * Decodes the buffered frames, while the owner takes them.  Returns -1
 * if the conn closed.
 */
int
conn_ws_deliver(struct conn *c)
{
	struct ws_event	ev;
	char		err[ERR_LEN];
	size_t		off = 0;
	ssize_t		n;
	int		code;

	while (c->state == CONN_OPEN && !conn_held(c) && off < c->rlen) {
		n = ws_dec_next(&c->dec, c->rbuf + off, c->rlen - off, &ev,
		    &code, err);
		if (n == 0)
			break;
		if (n < 0) {
			uint8_t cl[2] = { code >> 8, code & 0xff };

			conn_ws_control(c, WS_OP_CLOSE, cl, sizeof(cl));
			conn_end(c, CONN_WHY_PROTOCOL, err);
			return -1;
		}
		off += n;
		if (conn_ws_event(c, &ev) == -1)
			return -1;
	}
	if (c->state == CONN_CLOSING)
		return -1;
	if (off > 0) {
		memmove(c->rbuf, c->rbuf + off, c->rlen - off);
		c->rlen -= off;
	}
	/* Nothing legitimate stays buffered long enough to fill it. */
	if (c->rlen == CONN_RBUF && !conn_held(c)) {
		conn_end(c, CONN_WHY_PROTOCOL, "input buffer overflow");
		return -1;
	}
	return 0;
}
