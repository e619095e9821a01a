/*
 * The websocket opening handshake of both roles.  See wsup.h.
 */

#include <stdio.h>
#include <string.h>

#include <openssl/evp.h>

#include "err.h"
#include "http.h"
#include "wsup.h"

#define WSUP_GUID	"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
#define WSUP_KEY_LEN	24		/* base64 of 16 bytes */
#define WSUP_ACCEPT_LEN	28		/* base64 of a SHA-1 digest */

int
wsup_accept_key(const char *key, char out[29])
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
	    EVP_DigestUpdate(ctx, WSUP_GUID, sizeof(WSUP_GUID) - 1) == 1 &&
	    EVP_DigestFinal_ex(ctx, md, &mdlen) == 1 && mdlen == 20;
	EVP_MD_CTX_free(ctx);
	if (!ok)
		return -1;
	if (EVP_EncodeBlock((unsigned char *)out, md, 20) != WSUP_ACCEPT_LEN)
		return -1;
	return 0;
}

/* Header injection guard: a CR or LF would end the line early. */
static int
wsup_has_crlf(const char *s)
{
	return s != NULL && strpbrk(s, "\r\n") != NULL;
}

int
wsup_client_request(char *out, size_t cap, const char *host_port,
    const char *path_query, const char *key, const char *extra_header)
{
	int	n;

	if (host_port == NULL || path_query == NULL || key == NULL ||
	    wsup_has_crlf(host_port) || wsup_has_crlf(path_query) ||
	    wsup_has_crlf(key) || wsup_has_crlf(extra_header))
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

/* The response's header lines, once its status line said 101. */
static int
wsup_client_check_headers(const struct http_hdrs *hs, const char *key,
    char *err)
{
	const struct http_hdr *h;
	char		 accept[WSUP_ACCEPT_LEN + 1];
	int		 i;

	if ((i = http_hdr_find(hs, "upgrade", 0)) == -1 ||
	    !http_caseeq(hs->h[i].val, hs->h[i].vlen, "websocket")) {
		err_set(err, "bad or missing Upgrade header in response");
		return -1;
	}
	/* Go compares the whole value: "Upgrade, keep-alive" is refused. */
	if ((i = http_hdr_find(hs, "connection", 0)) == -1 ||
	    !http_caseeq(hs->h[i].val, hs->h[i].vlen, "upgrade")) {
		err_set(err, "bad or missing Connection header in response");
		return -1;
	}
	if (wsup_accept_key(key, accept) == -1) {
		err_set(err, "cannot compute Sec-WebSocket-Accept");
		return -1;
	}
	if ((i = http_hdr_find(hs, "sec-websocket-accept", 0)) == -1) {
		err_set(err, "missing Sec-WebSocket-Accept in response");
		return -1;
	}
	h = &hs->h[i];
	if (h->vlen != WSUP_ACCEPT_LEN ||
	    memcmp(h->val, accept, WSUP_ACCEPT_LEN) != 0) {
		err_set(err, "wrong Sec-WebSocket-Accept in response");
		return -1;
	}
	/* Nothing was offered, so nothing may be agreed. */
	if (http_hdr_find(hs, "sec-websocket-extensions", 0) != -1) {
		err_set(err, "unexpected Sec-WebSocket-Extensions in response");
		return -1;
	}
	if (http_hdr_find(hs, "sec-websocket-protocol", 0) != -1) {
		err_set(err, "unexpected Sec-WebSocket-Protocol in response");
		return -1;
	}
	return 0;
}

ssize_t
wsup_client_check_response(const char *buf, size_t len, const char *key,
    char *err)
{
	struct http_hdrs hs;
	const char	*line;
	ssize_t		 hlen, off;
	size_t		 ll;
	int		 status;

	if (key == NULL) {
		err_set(err, "no key");
		return -1;
	}
	if ((hlen = http_head_end(buf, len, &status, err)) <= 0)
		return hlen;
	if ((off = http_start_line(buf, hlen, &line, &ll, err)) == -1)
		return -1;
	if (ll == 0) {
		err_set(err, "empty status line");
		return -1;
	}
	/* Anything but a 101 is a refusal: show the server's own words. */
	if (ll < 12 || memcmp(line, "HTTP/1.1 101", 12) != 0 ||
	    (ll > 12 && line[12] != ' ')) {
		http_err_line(err, line, ll);
		return -1;
	}
	if (http_headers(buf, off, hlen, &hs, &status, err) == -1 ||
	    wsup_client_check_headers(&hs, key, err) == -1)
		return -1;
	return hlen;
}

int
wsup_client_refusal(const char *buf, size_t len, int *session_unknown)
{
	struct http_hdrs hs;
	const char	*line;
	ssize_t		 hlen, off;
	size_t		 ll, i;
	int		 status = 0, k, unused;

	*session_unknown = 0;
	if ((hlen = http_head_end(buf, len, &unused, NULL)) <= 0 ||
	    (off = http_start_line(buf, hlen, &line, &ll, NULL)) == -1)
		return -1;
	/* "HTTP/1.x DDD", then the end of the line or a reason phrase. */
	if (ll < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ' ||
	    (ll > 12 && line[12] != ' '))
		return -1;
	for (i = 9; i < 12; i++) {
		if (line[i] < '0' || line[i] > '9')
			return -1;
		status = status * 10 + (line[i] - '0');
	}
	if (status < 100)
		return -1;
	if (http_headers(buf, off, hlen, &hs, &unused, NULL) == -1)
		return -1;
	for (k = 0; (k = http_hdr_find(&hs, WSUP_SESSION_HDR, k)) != -1; k++)
		if (http_caseeq(hs.h[k].val, hs.h[k].vlen,
		    WSUP_SESSION_UNKNOWN))
			*session_unknown = 1;
	return status;
}

static int
wsup_b64char(int c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
	    (c >= '0' && c <= '9') || c == '+' || c == '/';
}

/* A key must be padded base64 of exactly 16 bytes (RFC 6455 4.2.1). */
static int
wsup_key_valid(const char *s, size_t n)
{
	size_t	i;

	if (n != WSUP_KEY_LEN || s[22] != '=' || s[23] != '=')
		return 0;
	for (i = 0; i < 22; i++)
		if (!wsup_b64char((unsigned char)s[i]))
			return 0;
	return 1;
}

static int
wsup_refuse(int *status, int code)
{
	*status = code;
	return -1;
}

int
wsup_check_headers(const struct http_hdrs *hs, int *status, char *err)
{
	int	i;

	/* Both are token lists and may be repeated; lws sends either case. */
	if (!http_hdr_has_token(hs, "upgrade", "websocket") ||
	    !http_hdr_has_token(hs, "connection", "upgrade")) {
		err_set(err, "not websocket protocol");
		return wsup_refuse(status, 400);
	}
	if ((i = http_hdr_find(hs, "sec-websocket-version", 0)) == -1) {
		err_set(err, "missing Sec-WebSocket-Version");
		return wsup_refuse(status, 426);
	}
	for (; i != -1; i = http_hdr_find(hs, "sec-websocket-version", i + 1))
		if (hs->h[i].vlen != 2 || memcmp(hs->h[i].val, "13", 2) != 0) {
			err_set(err, "unsupported websocket version");
			return wsup_refuse(status, 426);
		}
	if ((i = http_hdr_find(hs, "sec-websocket-key", 0)) == -1) {
		err_set(err, "missing Sec-WebSocket-Key");
		return wsup_refuse(status, 400);
	}
	if (http_hdr_find(hs, "sec-websocket-key", i + 1) != -1) {
		err_set(err, "duplicate Sec-WebSocket-Key");
		return wsup_refuse(status, 400);
	}
	if (!wsup_key_valid(hs->h[i].val, hs->h[i].vlen)) {
		err_set(err, "invalid Sec-WebSocket-Key");
		return wsup_refuse(status, 400);
	}
	return i;
}

/*
 * "GET <target> HTTP/1.1" in line[0..ll): copies the target into req.
 * Returns 0, or -1 with *status 400, 405 or 414.
 */
static int
wsup_request_line(const char *line, size_t ll, struct wsup_req *req,
    int *status, char *err)
{
	const char	*sp1, *sp2, *end = line + ll;

	if ((sp1 = memchr(line, ' ', ll)) == NULL || sp1 == line) {
		err_set(err, "malformed request line");
		return wsup_refuse(status, 400);
	}
	if (sp1 - line != 3 || memcmp(line, "GET", 3) != 0) {
		err_set(err, "method %.*s not allowed",
		    (int)(sp1 - line > 32 ? 32 : sp1 - line), line);
		return wsup_refuse(status, 405);
	}
	if ((sp2 = memchr(sp1 + 1, ' ', end - sp1 - 1)) == NULL ||
	    sp2 == sp1 + 1) {
		err_set(err, "malformed request line");
		return wsup_refuse(status, 400);
	}
	if ((size_t)(sp2 - sp1 - 1) >= sizeof(req->target)) {
		err_set(err, "request-target longer than %zu bytes",
		    sizeof(req->target) - 1);
		return wsup_refuse(status, 414);
	}
	if (end - sp2 - 1 != 8 || memcmp(sp2 + 1, "HTTP/1.1", 8) != 0) {
		err_set(err, "unsupported HTTP version");
		return wsup_refuse(status, 400);
	}
	memcpy(req->target, sp1 + 1, sp2 - sp1 - 1);
	req->target[sp2 - sp1 - 1] = '\0';
	return 0;
}

ssize_t
wsup_server_parse_request(const char *buf, size_t len, struct wsup_req *req,
    int *status, char *err)
{
	struct http_hdrs hs;
	const struct http_hdr *h;
	const char	*line;
	ssize_t		 hlen, off;
	size_t		 ll;
	int		 i, dummy;

	if (status == NULL)
		status = &dummy;
	*status = 0;
	memset(req, 0, sizeof(*req));

	if ((hlen = http_head_end(buf, len, status, err)) <= 0)
		return hlen;
	if ((off = http_start_line(buf, hlen, &line, &ll, err)) == -1)
		return wsup_refuse(status, 400);
	if (wsup_request_line(line, ll, req, status, err) == -1 ||
	    http_headers(buf, off, hlen, &hs, status, err) == -1 ||
	    (i = wsup_check_headers(&hs, status, err)) == -1) {
		req->target[0] = '\0';
		return -1;
	}
	h = &hs.h[i];
	memcpy(req->key, h->val, h->vlen);
	req->key[h->vlen] = '\0';
	/* Go refuses an empty Origin too (it does not parse as a URL). */
	i = http_hdr_find(&hs, "origin", 0);
	req->have_origin = i != -1 && hs.h[i].vlen > 0;
	*status = 101;
	return hlen;
}

int
wsup_server_response(char *out, size_t cap, const char *key)
{
	char	accept[WSUP_ACCEPT_LEN + 1];
	int	n;

	if (wsup_accept_key(key, accept) == -1)
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
