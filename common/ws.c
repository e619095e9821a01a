/*
 * RFC 6455 websocket codec: frame decoder and encoder helpers, and the
 * HTTP/1.1 upgrade handshake of both roles, as golang.org/x/net/websocket
 * speaks it (wire spec 2.2, 2.3).  No I/O, no logging: every function works
 * on caller buffers and reports failures through err.
 */

#include <limits.h>
#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "err.h"
#include "ws.h"

#define WS_GUID		"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WS_HDR_LINES_MAX	100	/* header lines accepted in a head */
#define WS_KEY_LEN	24		/* base64 of 16 bytes */
#define WS_ACCEPT_LEN	28		/* base64 of a SHA-1 digest */

/* One "Name: value" line of a head, pointing into the caller's buffer. */
struct ws_hdr {
	const char	*name;
	size_t		 nlen;
	const char	*val;		/* surrounding blanks trimmed */
	size_t		 vlen;
};

struct ws_hdrs {
	struct ws_hdr	 h[WS_HDR_LINES_MAX];
	int		 n;
};

void
ws_dec_init(struct ws_dec *d, enum ws_role role, uint64_t max_frame)
{
	memset(d, 0, sizeof(*d));
	d->role = role;
	/* 0 would refuse every non-empty frame; take it as "the default". */
	d->max_frame = max_frame ? max_frame : WS_DEFAULT_MAX_FRAME;
}

static ssize_t
ws_dec_fail(int *close_code, int code)
{
	if (close_code != NULL)
		*close_code = code;
	return -1;
}

/*
 * Reports up to len bytes of the current data frame's payload, unmasked in
 * place.  The mask offset is kept so that a payload split across calls is
 * unmasked exactly as if it had arrived at once.
 */
static size_t
ws_dec_payload(struct ws_dec *d, uint8_t *in, size_t len, struct ws_event *ev)
{
	size_t	n;

	n = d->remaining < len ? (size_t)d->remaining : len;
	if (d->masked) {
		ws_mask(in, n, d->mask, d->mask_off);
		d->mask_off = (d->mask_off + n) & 3;
	}
	d->remaining -= n;
	if (d->remaining == 0)
		d->in_payload = 0;
	ev->type = WS_EV_DATA;
	ev->data = in;
	ev->len = n;
	return n;
}

/*
 * Checks that depend only on the first two bytes run as soon as these are
 * present and the others only once the whole header is, so the outcome does
 * not depend on how the input was split.
 *
 * A data frame's header is consumed on its own (WS_EV_NONE) only when no
 * payload byte follows it in the input; otherwise the header and the first
 * piece of payload are consumed together and reported as one WS_EV_DATA
 * whose ev->data points past the header.  This halves the calls for the
 * many small frames kptunnel sends.  Callers must use ev->data, not in.
 *
 * After -1 the decoder state is unspecified; the caller sends the close code
 * and drops the connection.
 */
ssize_t
ws_dec_next(struct ws_dec *d, uint8_t *in, size_t len, struct ws_event *ev,
    int *close_code, char *err)
{
	uint64_t	 plen;
	uint8_t		*pl;
	size_t		 hlen, i;
	int		 fin, op, masked;

	ev->type = WS_EV_NONE;
	ev->data = NULL;
	ev->len = 0;
	ev->close_code = 0;

	/* Keeps every byte count representable in the return value. */
	if (len > SSIZE_MAX - WS_HDR_MAX)
		len = SSIZE_MAX - WS_HDR_MAX;

	if (d->in_payload) {
		if (len == 0)
			return 0;
		return ws_dec_payload(d, in, len, ev);
	}

	if (len < 2)
		return 0;
	fin = (in[0] & 0x80) != 0;
	op = in[0] & 0x0f;
	masked = (in[1] & 0x80) != 0;
	if (in[0] & 0x70) {
		err_set(err, "reserved bits set (0x%02x)", in[0]);
		return ws_dec_fail(close_code, WS_CLOSE_PROTOCOL);
	}
	switch (op) {
	case WS_OP_CONT:
	case WS_OP_TEXT:
	case WS_OP_BINARY:
	case WS_OP_CLOSE:
	case WS_OP_PING:
	case WS_OP_PONG:
		break;
	default:
		err_set(err, "unknown opcode 0x%x", op);
		return ws_dec_fail(close_code, WS_CLOSE_PROTOCOL);
	}
	if (d->role == WS_ROLE_SERVER && !masked) {
		err_set(err, "unmasked frame from client");
		return ws_dec_fail(close_code, WS_CLOSE_PROTOCOL);
	}
	if (d->role == WS_ROLE_CLIENT && masked) {
		err_set(err, "masked frame from server");
		return ws_dec_fail(close_code, WS_CLOSE_PROTOCOL);
	}
	if ((op & 0x8) && !fin) {
		err_set(err, "fragmented control frame (opcode 0x%x)", op);
		return ws_dec_fail(close_code, WS_CLOSE_PROTOCOL);
	}
	if (op == WS_OP_CONT && !d->frag_open) {
		err_set(err, "continuation frame without a fragmented message");
		return ws_dec_fail(close_code, WS_CLOSE_PROTOCOL);
	}
	if ((op == WS_OP_TEXT || op == WS_OP_BINARY) && d->frag_open) {
		err_set(err, "new message inside a fragmented message");
		return ws_dec_fail(close_code, WS_CLOSE_PROTOCOL);
	}

	plen = in[1] & 0x7f;
	hlen = 2;
	if (plen == 126)
		hlen += 2;
	else if (plen == 127)
		hlen += 8;
	if (masked)
		hlen += 4;
	if (len < hlen)
		return 0;
	/* Non-minimal length encodings are accepted, as Go does. */
	if (plen == 126)
		plen = (uint64_t)in[2] << 8 | in[3];
	else if (plen == 127) {
		if (in[2] & 0x80) {
			err_set(err, "64-bit payload length with the top bit "
			    "set");
			return ws_dec_fail(close_code, WS_CLOSE_PROTOCOL);
		}
		for (plen = 0, i = 2; i < 10; i++)
			plen = plen << 8 | in[i];
	}

	if (op & 0x8) {
		if (plen > WS_CTL_MAX) {
			err_set(err, "control frame payload of %llu bytes",
			    (unsigned long long)plen);
			return ws_dec_fail(close_code, WS_CLOSE_PROTOCOL);
		}
		if (op == WS_OP_CLOSE && plen == 1) {
			err_set(err, "close frame with a 1-byte payload");
			return ws_dec_fail(close_code, WS_CLOSE_PROTOCOL);
		}
		/* Reported whole: nothing consumed, nothing unmasked yet. */
		if (len - hlen < plen)
			return 0;
		pl = in + hlen;
		if (masked)
			ws_mask(pl, plen, in + hlen - 4, 0);
		ev->data = pl;
		ev->len = plen;
		switch (op) {
		case WS_OP_PING:
			ev->type = WS_EV_PING;
			break;
		case WS_OP_PONG:
			ev->type = WS_EV_PONG;
			break;
		default:
			ev->type = WS_EV_CLOSE;
			if (plen >= 2) {
				ev->close_code = pl[0] << 8 | pl[1];
				ev->data = pl + 2;
				ev->len = plen - 2;
			}
			break;
		}
		return hlen + plen;
	}

	if (plen > d->max_frame) {
		err_set(err, "frame of %llu bytes exceeds the limit of %llu",
		    (unsigned long long)plen,
		    (unsigned long long)d->max_frame);
		return ws_dec_fail(close_code, WS_CLOSE_TOO_BIG);
	}
	/* Text is binary here: the dispatcher sends binary in text frames. */
	d->frag_open = !fin;
	if (plen == 0)
		return hlen;
	d->in_payload = 1;
	d->remaining = plen;
	d->masked = masked;
	if (masked)
		memcpy(d->mask, in + hlen - 4, 4);
	d->mask_off = 0;
	if (len == hlen)
		return hlen;
	return hlen + ws_dec_payload(d, in + hlen, len - hlen, ev);
}

size_t
ws_frame_header(uint8_t *out, int opcode, int fin, uint64_t len,
    const uint8_t mask[4])
{
	size_t	n, i;

	out[0] = (fin ? 0x80 : 0) | (opcode & 0x0f);
	out[1] = mask != NULL ? 0x80 : 0;
	if (len < 126) {
		out[1] |= len;
		n = 2;
	} else if (len <= 0xffff) {
		out[1] |= 126;
		out[2] = len >> 8;
		out[3] = len;
		n = 4;
	} else {
		out[1] |= 127;
		for (i = 0; i < 8; i++)
			out[2 + i] = len >> (56 - 8 * i);
		n = 10;
	}
	if (mask != NULL) {
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

/*
 * The key is laid out in memory in byte order and applied through memcpy, so
 * the loop is endian-neutral and alignment-safe; compilers turn it into
 * plain (often vector) loads and stores.
 */
void
ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t off)
{
	uint8_t		m[8];
	uint64_t	k, w0, w1, w2, w3;
	size_t		i;

	for (i = 0; i < 8; i++)
		m[i] = mask[(off + i) & 3];
	memcpy(&k, m, 8);
	for (i = 0; i + 32 <= n; i += 32) {
		memcpy(&w0, p + i, 8);
		memcpy(&w1, p + i + 8, 8);
		memcpy(&w2, p + i + 16, 8);
		memcpy(&w3, p + i + 24, 8);
		w0 ^= k;
		w1 ^= k;
		w2 ^= k;
		w3 ^= k;
		memcpy(p + i, &w0, 8);
		memcpy(p + i + 8, &w1, 8);
		memcpy(p + i + 16, &w2, 8);
		memcpy(p + i + 24, &w3, 8);
	}
	for (; i + 8 <= n; i += 8) {
		memcpy(&w0, p + i, 8);
		w0 ^= k;
		memcpy(p + i, &w0, 8);
	}
	/* i is a multiple of 8 here, so m[i & 7] continues the pattern. */
	for (; i < n; i++)
		p[i] ^= m[i & 7];
}

int
ws_accept_key(const char *key, char out[29])
{
	EVP_MD_CTX	*ctx;
	unsigned char	 md[EVP_MAX_MD_SIZE];
	unsigned int	 mdlen = 0;
	int		 ok;

	if (key == NULL)
		return -1;
	if ((ctx = EVP_MD_CTX_new()) == NULL)
		return -1;
	ok = EVP_DigestInit_ex(ctx, EVP_sha1(), NULL) == 1 &&
	    EVP_DigestUpdate(ctx, key, strlen(key)) == 1 &&
	    EVP_DigestUpdate(ctx, WS_GUID, sizeof(WS_GUID) - 1) == 1 &&
	    EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 20;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	if (EVP_EncodeBlock((unsigned char *)out, md, 20) != WS_ACCEPT_LEN)
		return -1;
	return 0;
}

/* Header injection guard: a CR or LF would end the line early. */
static int
ws_has_crlf(const char *s)
{
	return s != NULL && strpbrk(s, "\r\n") != NULL;
}

/*
 * Also returns -1 if an argument is missing or contains CR or LF, which
 * would let it inject header lines.
 */
int
ws_client_request(char *out, size_t cap, const char *host_port,
    const char *path_query, const char *key, const char *extra_header)
{
	int	n;

	if (host_port == NULL || path_query == NULL || key == NULL ||
	    ws_has_crlf(host_port) || ws_has_crlf(path_query) ||
	    ws_has_crlf(key) || ws_has_crlf(extra_header))
		return -1;
	n = snprintf(out, cap,
	    "GET %s HTTP/1.1\r\n"
	    "Host: %s\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: %s\r\n"
	    "Origin: http://localhost\r\n"
	    "Sec-WebSocket-Version: 13\r\n"
	    "%s%s"
	    "\r\n",
	    path_query, host_port, key,
	    extra_header != NULL ? extra_header : "",
	    extra_header != NULL ? "\r\n" : "");
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return n;
}

static int
ws_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* ASCII case-insensitive comparison of s[0..n) with a NUL-terminated lit. */
static int
ws_caseeq(const char *s, size_t n, const char *lit)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (lit[i] == '\0' || ws_lower((unsigned char)s[i]) !=
		    ws_lower((unsigned char)lit[i]))
			return 0;
	return lit[n] == '\0';
}

/* Optional whitespace around header values and list elements. */
static int
ws_ows(int c)
{
	return c == ' ' || c == '\t';
}

/* True if the comma-separated list s[0..n) holds the token tok. */
static int
ws_has_token(const char *s, size_t n, const char *tok)
{
	size_t	i, b, e, t;

	for (i = 0;; i = e + 1) {
		for (e = i; e < n && s[e] != ','; e++)
			;
		for (b = i; b < e && ws_ows(s[b]); b++)
			;
		for (t = e; t > b && ws_ows(s[t - 1]); t--)
			;
		if (ws_caseeq(s + b, t - b, tok))
			return 1;
		if (e == n)
			return 0;
	}
}

static int
ws_tchar(int c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* Field and start-line octets: HTAB, visible ASCII, SP, obs-text. */
static int
ws_fchar(int c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

/*
 * Finds the end of a head (CRLFCRLF) in buf[0..len).  Returns its length,
 * 0 if more bytes are needed, -1 (with *status) for a head longer than
 * WS_HTTP_MAX or a bare LF, which no well-formed head contains and which
 * would otherwise make us wait for a terminator that never comes.
 */
static ssize_t
ws_http_head_end(const char *buf, size_t len, int *status, char *err)
{
	size_t	i, lim;

	lim = len < WS_HTTP_MAX ? len : WS_HTTP_MAX;
	for (i = 0; i < lim; i++) {
		if (buf[i] != '\n')
			continue;
		if (i == 0 || buf[i - 1] != '\r') {
			err_set(err, "bare LF in HTTP head");
			*status = 400;
			return -1;
		}
		if (i >= 3 && buf[i - 2] == '\n' && buf[i - 3] == '\r')
			return i + 1;
	}
	if (len >= WS_HTTP_MAX) {
		err_set(err, "HTTP head longer than %d bytes", WS_HTTP_MAX);
		*status = 431;
		return -1;
	}
	return 0;
}

/*
 * Splits off the start line of a complete head of hlen bytes: *line and *ll
 * get the line without CRLF, the return value is the offset of the header
 * lines.  -1 on a control character.
 */
static ssize_t
ws_http_start_line(const char *buf, size_t hlen, const char **line,
    size_t *ll, char *err)
{
	const char	*nl;
	size_t		 i;

	/* ws_http_head_end() guarantees a LF, preceded by CR, in the head. */
	nl = memchr(buf, '\n', hlen);
	*line = buf;
	*ll = nl - buf - 1;
	for (i = 0; i < *ll; i++)
		if (!ws_fchar((unsigned char)buf[i]) || buf[i] == '\t') {
			err_set(err, "control character in start line");
			return -1;
		}
	return nl - buf + 1;
}

/*
 * Parses the header lines buf[off..hlen) of a complete head into hs.
 * Returns 0, or -1 with *status 400 (malformed line) or 431 (too many).
 */
static int
ws_http_headers(const char *buf, size_t off, size_t hlen, struct ws_hdrs *hs,
    int *status, char *err)
{
	struct ws_hdr	*h;
	const char	*s, *nl;
	size_t		 ll, i, b, e;

	hs->n = 0;
	while (off < hlen) {
		s = buf + off;
		nl = memchr(s, '\n', hlen - off);
		ll = nl - s - 1;
		off += ll + 2;
		if (ll == 0)
			return 0;
		if (hs->n == WS_HDR_LINES_MAX) {
			err_set(err, "more than %d header lines",
			    WS_HDR_LINES_MAX);
			*status = 431;
			return -1;
		}
		if (ws_ows(s[0])) {
			err_set(err, "obsolete header line folding");
			*status = 400;
			return -1;
		}
		for (i = 0; i < ll && ws_tchar((unsigned char)s[i]); i++)
			;
		if (i == 0 || i == ll || s[i] != ':') {
			err_set(err, "malformed header line");
			*status = 400;
			return -1;
		}
		for (b = i + 1; b < ll; b++)
			if (!ws_fchar((unsigned char)s[b])) {
				err_set(err, "control character in header "
				    "%.*s", (int)i, s);
				*status = 400;
				return -1;
			}
		for (b = i + 1; b < ll && ws_ows(s[b]); b++)
			;
		for (e = ll; e > b && ws_ows(s[e - 1]); e--)
			;
		h = &hs->h[hs->n++];
		h->name = s;
		h->nlen = i;
		h->val = s + b;
		h->vlen = e - b;
	}
	/* NOTREACHED: a complete head ends with an empty line. */
	err_set(err, "unterminated HTTP head");
	*status = 400;
	return -1;
}

/* The first header named name (lower case) at or after index from, or -1. */
static int
ws_hdr_find(const struct ws_hdrs *hs, const char *name, int from)
{
	int	i;

	for (i = from; i < hs->n; i++)
		if (ws_caseeq(hs->h[i].name, hs->h[i].nlen, name))
			return i;
	return -1;
}

/* Copies s[0..n) into err with non-printable bytes shown as '?'. */
static void
ws_err_line(char *err, const char *s, size_t n)
{
	size_t	i;

	if (err == NULL)
		return;
	if (n > ERR_LEN - 1)
		n = ERR_LEN - 1;
	for (i = 0; i < n; i++)
		err[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
	err[n] = '\0';
}

ssize_t
ws_client_check_response(const char *buf, size_t len, const char *key,
    char *err)
{
	struct ws_hdrs	 hs;
	const struct ws_hdr *h;
	const char	*line;
	char		 accept[WS_ACCEPT_LEN + 1];
	ssize_t		 hlen, off;
	size_t		 ll;
	int		 i, status;

	if (key == NULL) {
		err_set(err, "no key");
		return -1;
	}
	if ((hlen = ws_http_head_end(buf, len, &status, err)) <= 0)
		return hlen;
	if ((off = ws_http_start_line(buf, hlen, &line, &ll, err)) == -1)
		return -1;
	if (ll == 0) {
		err_set(err, "empty status line");
		return -1;
	}
	/* Anything but a 101 is a refusal: show the server's own words. */
	if (ll < 12 || memcmp(line, "HTTP/1.1 101", 12) != 0 ||
	    (ll > 12 && line[12] != ' ')) {
		ws_err_line(err, line, ll);
		return -1;
	}
	if (ws_http_headers(buf, off, hlen, &hs, &status, err) == -1)
		return -1;

	if ((i = ws_hdr_find(&hs, "upgrade", 0)) == -1 ||
	    !ws_caseeq(hs.h[i].val, hs.h[i].vlen, "websocket")) {
		err_set(err, "bad or missing Upgrade header in response");
		return -1;
	}
	/* Go compares the whole value: "Upgrade, keep-alive" is refused. */
	if ((i = ws_hdr_find(&hs, "connection", 0)) == -1 ||
	    !ws_caseeq(hs.h[i].val, hs.h[i].vlen, "upgrade")) {
		err_set(err, "bad or missing Connection header in response");
		return -1;
	}
	if (ws_accept_key(key, accept) == -1) {
		err_set(err, "cannot compute Sec-WebSocket-Accept");
		return -1;
	}
	if ((i = ws_hdr_find(&hs, "sec-websocket-accept", 0)) == -1) {
		err_set(err, "missing Sec-WebSocket-Accept in response");
		return -1;
	}
	h = &hs.h[i];
	if (h->vlen != WS_ACCEPT_LEN ||
	    memcmp(h->val, accept, WS_ACCEPT_LEN) != 0) {
		err_set(err, "wrong Sec-WebSocket-Accept in response");
		return -1;
	}
	/* Nothing was offered, so nothing may be agreed. */
	if (ws_hdr_find(&hs, "sec-websocket-extensions", 0) != -1) {
		err_set(err, "unexpected Sec-WebSocket-Extensions in response");
		return -1;
	}
	if (ws_hdr_find(&hs, "sec-websocket-protocol", 0) != -1) {
		err_set(err, "unexpected Sec-WebSocket-Protocol in response");
		return -1;
	}
	return hlen;
}

static int
ws_b64char(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* A key must be padded base64 of exactly 16 bytes (RFC 6455 4.2.1). */
static int
ws_key_valid(const char *s, size_t n)
{
	size_t	i;

	if (n != WS_KEY_LEN || s[22] != '=' || s[23] != '=')
		return 0;
	for (i = 0; i < 22; i++)
		if (!ws_b64char((unsigned char)s[i]))
			return 0;
	return 1;
}

static ssize_t
ws_refuse(int *status, int code)
{
	*status = code;
	return -1;
}

ssize_t
ws_server_parse_request(const char *buf, size_t len, struct ws_http_req *req,
    int *status, char *err)
{
	struct ws_hdrs	 hs;
	const struct ws_hdr *h;
	const char	*line, *sp1, *sp2, *end;
	ssize_t		 hlen, off;
	size_t		 ll;
	int		 i, ok, dummy;

	if (status == NULL)
		status = &dummy;
	*status = 0;
	req->target[0] = '\0';
	req->key[0] = '\0';
	req->have_origin = 0;

	if ((hlen = ws_http_head_end(buf, len, status, err)) <= 0)
		return hlen;
	if ((off = ws_http_start_line(buf, hlen, &line, &ll, err)) == -1)
		return ws_refuse(status, 400);
	end = line + ll;

	if ((sp1 = memchr(line, ' ', ll)) == NULL || sp1 == line) {
		err_set(err, "malformed request line");
		return ws_refuse(status, 400);
	}
	if (sp1 - line != 3 || memcmp(line, "GET", 3) != 0) {
		err_set(err, "method %.*s not allowed",
		    (int)(sp1 - line > 32 ? 32 : sp1 - line), line);
		return ws_refuse(status, 405);
	}
	if ((sp2 = memchr(sp1 + 1, ' ', end - sp1 - 1)) == NULL ||
	    sp2 == sp1 + 1) {
		err_set(err, "malformed request line");
		return ws_refuse(status, 400);
	}
	if ((size_t)(sp2 - sp1 - 1) >= sizeof(req->target)) {
		err_set(err, "request-target longer than %zu bytes",
		    sizeof(req->target) - 1);
		return ws_refuse(status, 414);
	}
	if (end - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.1", 8) != 0) {
		err_set(err, "unsupported HTTP version");
		return ws_refuse(status, 400);
	}

	if (ws_http_headers(buf, off, hlen, &hs, status, err) == -1)
		return -1;

	/* Both are token lists and may be repeated; lws sends either case. */
	ok = 0;
	for (i = 0; !ok && (i = ws_hdr_find(&hs, "upgrade", i)) != -1; i++)
		ok = ws_has_token(hs.h[i].val, hs.h[i].vlen, "websocket");
	if (ok) {
		ok = 0;
		for (i = 0; !ok &&
		    (i = ws_hdr_find(&hs, "connection", i)) != -1; i++)
			ok = ws_has_token(hs.h[i].val, hs.h[i].vlen,
			    "upgrade");
	}
	if (!ok) {
		err_set(err, "not websocket protocol");
		return ws_refuse(status, 400);
	}

	/* 426 lets the caller name the version it speaks (RFC 6455 4.4). */
	if ((i = ws_hdr_find(&hs, "sec-websocket-version", 0)) == -1) {
		err_set(err, "missing Sec-WebSocket-Version");
		return ws_refuse(status, 426);
	}
	for (; i != -1; i = ws_hdr_find(&hs, "sec-websocket-version", i + 1))
		if (hs.h[i].vlen != 2 || memcmp(hs.h[i].val, "13", 2) != 0) {
			err_set(err, "unsupported websocket version");
			return ws_refuse(status, 426);
		}

	if ((i = ws_hdr_find(&hs, "sec-websocket-key", 0)) == -1) {
		err_set(err, "missing Sec-WebSocket-Key");
		return ws_refuse(status, 400);
	}
	if (ws_hdr_find(&hs, "sec-websocket-key", i + 1) != -1) {
		err_set(err, "duplicate Sec-WebSocket-Key");
		return ws_refuse(status, 400);
	}
	h = &hs.h[i];
	if (!ws_key_valid(h->val, h->vlen)) {
		err_set(err, "invalid Sec-WebSocket-Key");
		return ws_refuse(status, 400);
	}

	memcpy(req->target, sp1 + 1, sp2 - sp1 - 1);
	req->target[sp2 - sp1 - 1] = '\0';
	memcpy(req->key, h->val, h->vlen);
	req->key[h->vlen] = '\0';
	/* Go refuses an empty Origin too (it does not parse as a URL). */
	i = ws_hdr_find(&hs, "origin", 0);
	req->have_origin = i != -1 && hs.h[i].vlen > 0;
	*status = 101;
	return hlen;
}

int
ws_server_response(char *out, size_t cap, const char *key)
{
	char	accept[WS_ACCEPT_LEN + 1];
	int	n;

	if (ws_accept_key(key, accept) == -1)
		return -1;
	n = snprintf(out, cap,
	    "HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: %s\r\n"
	    "\r\n", accept);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return n;
}
