/*
 * HTTP/1.1 head parsing shared by the websocket upgrade of both roles and
 * by every place that reads header text.  See http.h.
 */

#include <string.h>

#include "err.h"
#include "http.h"

static int
http_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

/* Optional whitespace around header values and list elements. */
static int
http_ows(int c)
{
	return c == ' ' || c == '\t';
}

/* Field and start-line octets: HTAB, visible ASCII, SP, obs-text. */
static int
http_fchar(int c)
{
	return c == '\t' || (c >= 0x20 && c != 0x7f);
}

int
http_tchar(int c)
{
	if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9'))
		return 1;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

int
http_caseeq(const char *s, size_t n, const char *lit)
{
	size_t	i;

	for (i = 0; i < n; i++)
		if (lit[i] == '\0' || http_lower((unsigned char)s[i]) !=
		    http_lower((unsigned char)lit[i]))
			return 0;
	return lit[n] == '\0';
}

int
http_has_token(const char *s, size_t n, const char *tok)
{
	size_t	i, b, e, t;

	for (i = 0;; i = e + 1) {
		for (e = i; e < n && s[e] != ','; e++)
			;
		for (b = i; b < e && http_ows(s[b]); b++)
			;
		for (t = e; t > b && http_ows(s[t - 1]); t--)
			;
		if (http_caseeq(s + b, t - b, tok))
			return 1;
		if (e == n)
			return 0;
	}
}

ssize_t
http_head_end(const char *buf, size_t len, int *status, char *err)
{
	size_t	i, lim;

	lim = len < HTTP_HEAD_MAX ? len : HTTP_HEAD_MAX;
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
	if (len >= HTTP_HEAD_MAX) {
		err_set(err, "HTTP head longer than %d bytes", HTTP_HEAD_MAX);
		*status = 431;
		return -1;
	}
	return 0;
}

ssize_t
http_start_line(const char *buf, size_t hlen, const char **line,
    size_t *ll, char *err)
{
	const char	*nl;
	size_t		 i;

	/* http_head_end() guarantees a LF, preceded by CR, in the head. */
	nl = memchr(buf, '\n', hlen);
	*line = buf;
	*ll = nl - buf - 1;
	for (i = 0; i < *ll; i++)
		if (!http_fchar((unsigned char)buf[i]) || buf[i] == '\t') {
			err_set(err, "control character in start line");
			return -1;
		}
	return nl - buf + 1;
}

static int
http_fail(int *status, int code)
{
	*status = code;
	return -1;
}

/*
 * One header line s[0..ll) (not empty, CRLF excluded) into hs.  Returns 0,
 * or -1 with *status.
 */
static int
http_header_line(const char *s, size_t ll, struct http_hdrs *hs,
    int *status, char *err)
{
	size_t	i, b, e;

	if (hs->n == HTTP_HDR_LINES_MAX) {
		err_set(err, "more than %d header lines", HTTP_HDR_LINES_MAX);
		return http_fail(status, 431);
	}
	if (http_ows(s[0])) {
		err_set(err, "obsolete header line folding");
		return http_fail(status, 400);
	}
	for (i = 0; i < ll && http_tchar((unsigned char)s[i]); i++)
		;
	if (i == 0 || i == ll || s[i] != ':') {
		err_set(err, "malformed header line");
		return http_fail(status, 400);
	}
	for (b = i + 1; b < ll; b++)
		if (!http_fchar((unsigned char)s[b])) {
			err_set(err, "control character in header %.*s",
			    (int)i, s);
			return http_fail(status, 400);
		}
	for (b = i + 1; b < ll && http_ows(s[b]); b++)
		;
	for (e = ll; e > b && http_ows(s[e - 1]); e--)
		;
	return http_hdr_add(hs, s, i, s + b, e - b);
}

int
http_headers(const char *buf, size_t off, size_t hlen, struct http_hdrs *hs,
    int *status, char *err)
{
	const char	*s, *nl;
	size_t		 ll;

	hs->n = 0;
	while (off < hlen) {
		s = buf + off;
		nl = memchr(s, '\n', hlen - off);
		ll = nl - s - 1;
		off += ll + 2;
		if (ll == 0)
			return 0;
		if (http_header_line(s, ll, hs, status, err) == -1)
			return -1;
	}
	/* NOTREACHED: a complete head ends with an empty line. */
	err_set(err, "unterminated HTTP head");
	return http_fail(status, 400);
}

int
http_hdr_add(struct http_hdrs *hs, const char *name, size_t nlen,
    const char *val, size_t vlen)
{
	struct http_hdr	*h;

	if (hs->n >= HTTP_HDR_LINES_MAX)
		return -1;
	h = &hs->h[hs->n++];
	h->name = name;
	h->nlen = nlen;
	h->val = val;
	h->vlen = vlen;
	return 0;
}

int
http_hdr_find(const struct http_hdrs *hs, const char *name, int from)
{
	int	i;

	for (i = from; i < hs->n; i++)
		if (http_caseeq(hs->h[i].name, hs->h[i].nlen, name))
			return i;
	return -1;
}

int
http_hdr_has_token(const struct http_hdrs *hs, const char *name,
    const char *tok)
{
	int	i;

	for (i = 0; (i = http_hdr_find(hs, name, i)) != -1; i++)
		if (http_has_token(hs->h[i].val, hs->h[i].vlen, tok))
			return 1;
	return 0;
}

void
http_err_line(char *err, const char *s, size_t n)
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
