/*
 * The HTTP transport's wire: requests and answers, built and parsed.  See
 * httpt.h and docs/protocol.md, "HTTP transport".
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "crypto.h"
#include "err.h"
#include "http.h"
#include "httpt.h"
#include "text.h"
#include "wsup.h"

/* The size line of a chunk, extensions included, at most. */
#define HTTPT_CHUNK_LINE_MAX	1024
/* A trailer line at most, and trailer bytes in all. */
#define HTTPT_TRAILER_MAX	4096

enum {
	HC_SIZE,		/* hex digits of a chunk's size */
	HC_EXT,			/* ";ext" up to CR */
	HC_SIZE_LF,
	HC_DATA,
	HC_DATA_CR,
	HC_DATA_LF,
	HC_TRAILER,		/* a trailer line, or the final CRLF */
	HC_TRAILER_LF,
	HC_END_LF,
	HC_DONE
};

static const char *const httpt_kinds[] = {
	[HTTPT_NONE] = "none",
	[HTTPT_OPEN] = "open",
	[HTTPT_POLL] = "poll",
	[HTTPT_PUSH] = "push",
	[HTTPT_CLOSE] = "close",
	[HTTPT_BAD] = "bad",
};

const char *
httpt_kind_name(enum httpt_kind kind)
{
	if ((unsigned)kind > HTTPT_BAD)
		return "?";
	return httpt_kinds[kind];
}

int
httpt_id_valid(const char *s, size_t n)
{
	size_t i;

	if (n != HTTPT_ID_LEN)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' &&
		    s[i] <= 'f')))
			return 0;
	return 1;
}

int
httpt_new_id(char out[HTTPT_ID_LEN + 1], char *err)
{
	uint8_t	b[HTTPT_ID_BYTES];
	size_t	i;

	if (crypto_random(b, sizeof(b), err) == -1)
		return -1;
	for (i = 0; i < sizeof(b); i++) {
		out[2 * i] = text_hexdigit(b[i] >> 4, 0);
		out[2 * i + 1] = text_hexdigit(b[i], 0);
	}
	out[HTTPT_ID_LEN] = '\0';
	return 0;
}

/* The query of a request-target (origin- or absolute-form), or NULL. */
static const char *
httpt_query(const char *target, size_t n, size_t *qlen)
{
	const char *q = memchr(target, '?', n);

	if (q == NULL)
		return NULL;
	*qlen = n - (q + 1 - target);
	return q + 1;
}

/*
 * The value of the query parameter key in q[0..qn): 1 with it in *v, *vn,
 * 0 if absent, -1 if it is there more than once.
 */
static int
httpt_param(const char *q, size_t qn, const char *key, const char **v,
    size_t *vn)
{
	size_t	i, e, kl = strlen(key);
	int	found = 0;

	for (i = 0; i <= qn; i = e + 1) {
		for (e = i; e < qn && q[e] != '&'; e++)
			;
		if (e - i > kl && memcmp(q + i, key, kl) == 0 &&
		    q[i + kl] == '=') {
			if (found)
				return -1;
			found = 1;
			*v = q + i + kl + 1;
			*vn = e - i - kl - 1;
		}
		if (e >= qn)
			break;
	}
	return found;
}

/* A decimal number below HTTPT_OFF_MAX: 0, or -1. */
static int
httpt_number(const char *s, size_t n, uint64_t *out)
{
	uint64_t	v = 0;
	size_t		i;

	if (n == 0 || n > 19)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	if (v >= HTTPT_OFF_MAX)
		return -1;
	*out = v;
	return 0;
}

const char *
httpt_method(enum httpt_kind kind)
{
	/*
	 * The open is a GET as a websocket upgrade is, so that a policy
	 * that admits only GETs admits it too; a poll is a GET (no body);
	 * what carries bytes or ends the transport is a POST, which no cache
	 * answers and no proxy repeats on its own.
	 */
	return kind == HTTPT_OPEN || kind == HTTPT_POLL ? "GET" : "POST";
}

enum httpt_kind
httpt_kind_of(const char *target, size_t n)
{
	static const enum httpt_kind kinds[] = {
		HTTPT_OPEN, HTTPT_POLL, HTTPT_PUSH, HTTPT_CLOSE
	};
	const char	*q, *v;
	size_t		 qn, vn, i;

	if ((q = httpt_query(target, n, &qn)) == NULL)
		return HTTPT_NONE;
	switch (httpt_param(q, qn, "ht", &v, &vn)) {
	case 0:
		return HTTPT_NONE;
	case -1:
		return HTTPT_BAD;
	}
	for (i = 0; i < sizeof(kinds) / sizeof(kinds[0]); i++)
		if (strlen(httpt_kinds[kinds[i]]) == vn &&
		    memcmp(httpt_kinds[kinds[i]], v, vn) == 0)
			return kinds[i];
	return HTTPT_BAD;
}

static int
httpt_refuse(int *status, int code)
{
	*status = code;
	return -1;
}

/* "METHOD target HTTP/1.x": the method checked against the kind. */
static int
httpt_request_line(const char *line, size_t ll, struct httpt_req *r,
    int *status, char *err)
{
	const char	*sp1, *sp2, *end = line + ll, *want;
	size_t		 tl;

	if ((sp1 = memchr(line, ' ', ll)) == NULL || sp1 == line ||
	    (sp2 = memchr(sp1 + 1, ' ', end - sp1 - 1)) == NULL ||
	    sp2 == sp1 + 1) {
		err_set(err, "malformed request line");
		return httpt_refuse(status, 400);
	}
	if (end - sp2 - 1 != 8 || (memcmp(sp2 + 1, "HTTP/1.1", 8) != 0 &&
	    memcmp(sp2 + 1, "HTTP/1.0", 8) != 0)) {
		err_set(err, "unsupported HTTP version");
		return httpt_refuse(status, 400);
	}
	tl = sp2 - sp1 - 1;
	if (tl >= sizeof(r->target)) {
		err_set(err, "request-target longer than %zu bytes",
		    sizeof(r->target) - 1);
		return httpt_refuse(status, 414);
	}
	memcpy(r->target, sp1 + 1, tl);
	r->target[tl] = '\0';
	r->kind = httpt_kind_of(r->target, tl);
	if (r->kind == HTTPT_NONE || r->kind == HTTPT_BAD) {
		err_set(err, "not a request of the HTTP transport");
		return httpt_refuse(status, 400);
	}
	want = httpt_method(r->kind);
	if ((size_t)(sp1 - line) != strlen(want) ||
	    memcmp(line, want, sp1 - line) != 0) {
		err_set(err, "ht=%s wants %s", httpt_kind_name(r->kind), want);
		return httpt_refuse(status, 405);
	}
	return 0;
}

/* The parameters of the kind: off= of a push, ack= of a poll. */
static int
httpt_request_params(struct httpt_req *r, int *status, char *err)
{
	const char	*q, *v;
	size_t		 qn, vn;
	const char	*key;

	uint64_t	 hold;

	r->hold_ms = HTTPT_HOLD_MS;
	if (r->kind != HTTPT_PUSH && r->kind != HTTPT_POLL)
		return 0;
	key = r->kind == HTTPT_PUSH ? "off" : "ack";
	q = httpt_query(r->target, strlen(r->target), &qn);
	if (q == NULL || httpt_param(q, qn, key, &v, &vn) != 1 ||
	    httpt_number(v, vn, &r->off) == -1) {
		err_set(err, "ht=%s needs one %s= below 2^62",
		    httpt_kind_name(r->kind), key);
		return httpt_refuse(status, 400);
	}
	if (r->kind != HTTPT_POLL)
		return 0;
	switch (httpt_param(q, qn, "hold", &v, &vn)) {
	case 0:
		return 0;
	case 1:
		if (httpt_number(v, vn, &hold) == 0)
			break;
		/* FALLTHROUGH */
	default:
		err_set(err, "hold= is one number of milliseconds");
		return httpt_refuse(status, 400);
	}
	/* Clamped, not refused: what the server holds is its own bound. */
	r->hold_ms = hold < HTTPT_HOLD_MIN_MS ? HTTPT_HOLD_MIN_MS :
	    hold > HTTPT_HOLD_MS ? HTTPT_HOLD_MS : (unsigned)hold;
	return 0;
}

/* Content-Length (one value; repeats must agree) and no other coding. */
static int
httpt_request_length(const struct http_hdrs *hs, struct httpt_req *r,
    int *status, char *err)
{
	uint64_t	v;
	int		i, seen = 0;

	if (http_hdr_find(hs, "transfer-encoding", 0) != -1) {
		err_set(err, "a body must have a Content-Length");
		return httpt_refuse(status, 411);
	}
	r->clen = 0;
	for (i = 0; (i = http_hdr_find(hs, "content-length", i)) != -1; i++) {
		if (httpt_number(hs->h[i].val, hs->h[i].vlen, &v) == -1 ||
		    (seen && v != r->clen)) {
			err_set(err, "bad Content-Length");
			return httpt_refuse(status, 400);
		}
		seen = 1;
		if (v > HTTPT_BODY_MAX) {
			err_set(err, "a body of %" PRIu64 " bytes (at most %d)",
			    v, HTTPT_BODY_MAX);
			return httpt_refuse(status, 413);
		}
		r->clen = (size_t)v;
	}
	if (r->kind == HTTPT_PUSH && !seen) {
		err_set(err, "a push must have a Content-Length");
		return httpt_refuse(status, 411);
	}
	if (r->kind != HTTPT_PUSH && r->clen != 0) {
		err_set(err, "ht=%s takes no body", httpt_kind_name(r->kind));
		return httpt_refuse(status, 400);
	}
	return 0;
}

int
httpt_parse_request(const char *buf, size_t hlen, struct httpt_req *r,
    int *status, char *err)
{
	struct http_hdrs hs;
	const char	*line;
	ssize_t		 off;
	size_t		 ll;
	int		 i;

	memset(r, 0, sizeof(*r));
	if ((off = http_start_line(buf, hlen, &line, &ll, err)) == -1)
		return httpt_refuse(status, 400);
	if (httpt_request_line(line, ll, r, status, err) == -1 ||
	    httpt_request_params(r, status, err) == -1 ||
	    http_headers(buf, off, hlen, &hs, status, err) == -1 ||
	    httpt_request_length(&hs, r, status, err) == -1)
		return -1;
	if (r->kind == HTTPT_OPEN)
		return 0;
	if ((i = http_hdr_find(&hs, "tunnel-transport", 0)) == -1 ||
	    http_hdr_find(&hs, "tunnel-transport", i + 1) != -1 ||
	    !httpt_id_valid(hs.h[i].val, hs.h[i].vlen)) {
		err_set(err, "ht=%s needs one well-formed %s header",
		    httpt_kind_name(r->kind), HTTPT_HDR_ID);
		return httpt_refuse(status, 400);
	}
	memcpy(r->id, hs.h[i].val, HTTPT_ID_LEN);
	r->id[HTTPT_ID_LEN] = '\0';
	return 0;
}

/* Header injection guard: a CR or LF would end the line early. */
static int
httpt_has_crlf(const char *s)
{
	return s != NULL && strpbrk(s, "\r\n") != NULL;
}

int
httpt_request(char *out, size_t cap, const struct httpt_spec *s)
{
	char	params[96], hdrs[1536] = "", clen[48] = "";
	int	n, h = 0;

	if (s->host_port == NULL || s->path_query == NULL ||
	    s->prefix == NULL || httpt_has_crlf(s->host_port) ||
	    httpt_has_crlf(s->path_query) || httpt_has_crlf(s->prefix) ||
	    httpt_has_crlf(s->id) || httpt_has_crlf(s->user_agent) ||
	    httpt_has_crlf(s->proxy_auth) || httpt_has_crlf(s->extra_header) ||
	    s->kind < HTTPT_OPEN || s->kind > HTTPT_CLOSE)
		return -1;
	if (s->kind == HTTPT_POLL && s->hold_ms != 0)
		snprintf(params, sizeof(params), "&ack=%" PRIu64 "&hold=%u"
		    "&n=%" PRIu64, s->off, s->hold_ms, s->n);
	else if (s->kind == HTTPT_PUSH || s->kind == HTTPT_POLL)
		snprintf(params, sizeof(params), "&%s=%" PRIu64 "&n=%" PRIu64,
		    s->kind == HTTPT_PUSH ? "off" : "ack", s->off, s->n);
	else
		snprintf(params, sizeof(params), "&n=%" PRIu64, s->n);
	/* GETs have no body; POSTs a length, 0 included. */
	if (strcmp(httpt_method(s->kind), "POST") == 0)
		snprintf(clen, sizeof(clen), "Content-Length: %zu\r\n",
		    s->kind == HTTPT_PUSH ? s->blen : 0);
	if (s->id != NULL)
		h += snprintf(hdrs + h, sizeof(hdrs) - h, "%s: %s\r\n",
		    HTTPT_HDR_ID, s->id);
	if (s->user_agent != NULL)
		h += snprintf(hdrs + h, sizeof(hdrs) - h,
		    "User-Agent: %s\r\n", s->user_agent);
	if (s->proxy_auth != NULL && (size_t)h < sizeof(hdrs))
		h += snprintf(hdrs + h, sizeof(hdrs) - h,
		    "Proxy-Authorization: Basic %s\r\n", s->proxy_auth);
	if (s->extra_header != NULL && (size_t)h < sizeof(hdrs))
		h += snprintf(hdrs + h, sizeof(hdrs) - h, "%s\r\n",
		    s->extra_header);
	if (h < 0 || (size_t)h >= sizeof(hdrs))
		return -1;
	n = snprintf(out, cap,
	    "%s %s%s%cht=%s%s HTTP/1.1\r\n"
	    "Host: %s\r\n"
	    "%s"
	    "Cache-Control: no-cache, no-store\r\n"
	    "%s"
	    "Connection: close\r\n"
	    "\r\n",
	    httpt_method(s->kind), s->prefix, s->path_query,
	    strchr(s->path_query, '?') != NULL ? '&' : '?',
	    httpt_kind_name(s->kind), params, s->host_port, hdrs, clen);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return n;
}

static const char *
httpt_reason(int status)
{
	switch (status) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 406: return "Not Acceptable";
	case 409: return "Conflict";
	case 410: return "Gone";
	case 411: return "Length Required";
	case 413: return "Content Too Large";
	case 414: return "URI Too Long";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	default: return "Error";
	}
}

int
httpt_response(char *out, size_t cap, int status, const char *id,
    int64_t off, size_t blen, int text, const char *closed)
{
	char	idh[HTTPT_ID_LEN + 32] = "", offh[48] = "";
	char	clh[HTTPT_CLOSED_MAX + 32] = "";
	size_t	i, k;
	int	n;

	if (httpt_has_crlf(id) || status < 100 || status > 999)
		return -1;
	if (closed != NULL) {
		k = (size_t)snprintf(clh, sizeof(clh), "%s: ",
		    HTTPT_HDR_CLOSED);
		for (i = 0; closed[i] != '\0' && i < HTTPT_CLOSED_MAX; i++)
			clh[k++] = closed[i] >= 0x20 && closed[i] < 0x7f ?
			    closed[i] : '?';
		/* A value is not blank at its ends. */
		if (i == 0 || clh[k - 1] == ' ')
			clh[k++] = '.';
		clh[k++] = '\r';
		clh[k++] = '\n';
		clh[k] = '\0';
	}
	if (id != NULL)
		snprintf(idh, sizeof(idh), "%s: %.*s\r\n", HTTPT_HDR_ID,
		    HTTPT_ID_LEN, id);
	if (off >= 0)
		snprintf(offh, sizeof(offh), "%s: %" PRId64 "\r\n",
		    HTTPT_HDR_OFFSET, off);
	n = snprintf(out, cap,
	    "HTTP/1.1 %d %s\r\n"
	    "Content-Type: %s\r\n"
	    "Cache-Control: no-store\r\n"
	    "%s%s%s"
	    "Content-Length: %zu\r\n"
	    "Connection: close\r\n"
	    "\r\n",
	    status, httpt_reason(status),
	    text ? "text/plain; charset=utf-8" : "application/octet-stream",
	    idh, offh, clh, blen);
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return n;
}

/* "HTTP/1.x DDD[ reason]": the status, or -1. */
static int
httpt_status_line(const char *line, size_t ll)
{
	int	status = 0;
	size_t	i;

	if (ll < 12 || memcmp(line, "HTTP/1.", 7) != 0 ||
	    (line[7] != '0' && line[7] != '1') || line[8] != ' ' ||
	    (ll > 12 && line[12] != ' '))
		return -1;
	for (i = 9; i < 12; i++) {
		if (line[i] < '0' || line[i] > '9')
			return -1;
		status = status * 10 + (line[i] - '0');
	}
	return status >= 100 ? status : -1;
}

/* The framing headers of an answer into r: -1 with err if they clash. */
static int
httpt_response_length(const struct http_hdrs *hs, struct httpt_resp *r,
    char *err)
{
	uint64_t	v;
	int		i;

	for (i = 0; (i = http_hdr_find(hs, "transfer-encoding", i)) != -1;
	    i++) {
		/* chunked is the one coding an answer of ours may get. */
		if (!http_caseeq(hs->h[i].val, hs->h[i].vlen, "chunked") ||
		    r->chunked) {
			err_set(err, "unsupported Transfer-Encoding");
			return -1;
		}
		r->chunked = 1;
	}
	for (i = 0; (i = http_hdr_find(hs, "content-length", i)) != -1; i++) {
		if (httpt_number(hs->h[i].val, hs->h[i].vlen, &v) == -1 ||
		    (r->clen >= 0 && (uint64_t)r->clen != v)) {
			err_set(err, "bad Content-Length in answer");
			return -1;
		}
		r->clen = (int64_t)v;
	}
	/* RFC 9112 6.3: the coding wins; a length beside it is dropped. */
	if (r->chunked)
		r->clen = -1;
	return 0;
}

ssize_t
httpt_parse_response(const char *buf, size_t len, struct httpt_resp *r,
    char *err)
{
	struct http_hdrs hs;
	const char	*line;
	ssize_t		 hlen, off;
	uint64_t	 v;
	size_t		 ll;
	int		 status, i;

	memset(r, 0, sizeof(*r));
	r->clen = -1;
	r->off = -1;
	if ((hlen = http_head_end(buf, len, &status, err)) <= 0)
		return hlen;
	if ((off = http_start_line(buf, hlen, &line, &ll, err)) == -1)
		return -1;
	if ((r->status = httpt_status_line(line, ll)) == -1) {
		http_err_line(err, line, ll);
		return -1;
	}
	if (http_headers(buf, off, hlen, &hs, &status, err) == -1 ||
	    httpt_response_length(&hs, r, err) == -1)
		return -1;
	if ((i = http_hdr_find(&hs, "tunnel-transport", 0)) != -1) {
		if (http_caseeq(hs.h[i].val, hs.h[i].vlen, HTTPT_UNKNOWN))
			r->unknown = 1;
		else if (httpt_id_valid(hs.h[i].val, hs.h[i].vlen)) {
			memcpy(r->id, hs.h[i].val, HTTPT_ID_LEN);
			r->id[HTTPT_ID_LEN] = '\0';
		}
	}
	if ((i = http_hdr_find(&hs, "tunnel-offset", 0)) != -1) {
		if (httpt_number(hs.h[i].val, hs.h[i].vlen, &v) == -1) {
			err_set(err, "bad %s", HTTPT_HDR_OFFSET);
			return -1;
		}
		r->off = (int64_t)v;
	}
	if ((i = http_hdr_find(&hs, "tunnel-closed", 0)) != -1) {
		r->closed = 1;
		http_err_line(r->why, hs.h[i].val, hs.h[i].vlen >
		    HTTPT_CLOSED_MAX ? HTTPT_CLOSED_MAX : hs.h[i].vlen);
	}
	for (i = 0; (i = http_hdr_find(&hs, "tunnel-session", i)) != -1; i++)
		if (http_caseeq(hs.h[i].val, hs.h[i].vlen,
		    WSUP_SESSION_UNKNOWN))
			r->session_unknown = 1;
	return hlen;
}

static ssize_t
httpt_chunk_fail(char *err, const char *why)
{
	err_set(err, "chunked answer: %s", why);
	return -1;
}

/*
 * One byte of a size line, a CRLF or a trailer line (everything but the
 * data): 0, or -1 with err.
 */
static int
httpt_chunk_byte(struct httpt_chunked *d, uint8_t c, char *err)
{
	int	v;

	switch (d->state) {
	case HC_SIZE:
		if (++d->line > HTTPT_CHUNK_LINE_MAX)
			return httpt_chunk_fail(err, "size line too long");
		if ((v = text_hexval(c)) != -1) {
			if (++d->digits > 15)
				return httpt_chunk_fail(err, "chunk too large");
			d->left = d->left * 16 + (uint64_t)v;
		} else if (d->digits == 0)
			return httpt_chunk_fail(err, "no chunk size");
		else if (c == ';' || c == ' ' || c == '\t')
			d->state = HC_EXT;
		else if (c == '\r')
			d->state = HC_SIZE_LF;
		else
			return httpt_chunk_fail(err, "bad chunk size");
		return 0;
	case HC_EXT:
		if (++d->line > HTTPT_CHUNK_LINE_MAX)
			return httpt_chunk_fail(err, "size line too long");
		if (c == '\r')
			d->state = HC_SIZE_LF;
		else if (c < 0x20 && c != '\t')
			return httpt_chunk_fail(err, "bad chunk extension");
		return 0;
	case HC_SIZE_LF:
		if (c != '\n')
			return httpt_chunk_fail(err, "bare CR");
		d->line = 0;
		d->digits = 0;
		d->state = d->left == 0 ? HC_TRAILER : HC_DATA;
		return 0;
	case HC_DATA_CR:
		if (c != '\r')
			return httpt_chunk_fail(err, "no CRLF after data");
		d->state = HC_DATA_LF;
		return 0;
	case HC_DATA_LF:
		if (c != '\n')
			return httpt_chunk_fail(err, "no CRLF after data");
		d->state = HC_SIZE;
		return 0;
	case HC_TRAILER:
		/* A trailer line; the empty one ends the body. */
		if (++d->trailer > HTTPT_TRAILER_MAX)
			return httpt_chunk_fail(err, "trailers too long");
		if (c == '\r')
			d->state = d->line == 0 ? HC_END_LF : HC_TRAILER_LF;
		else if (c < 0x20 && c != '\t')
			return httpt_chunk_fail(err, "bad trailer");
		else
			d->line++;
		return 0;
	case HC_TRAILER_LF:
	case HC_END_LF:
		if (c != '\n')
			return httpt_chunk_fail(err, "bare CR");
		d->line = 0;
		d->state = d->state == HC_END_LF ? HC_DONE : HC_TRAILER;
		d->done = d->state == HC_DONE;
		return 0;
	default:
		return httpt_chunk_fail(err, "past the end");
	}
}

ssize_t
httpt_dechunk(struct httpt_chunked *d, const uint8_t *in, size_t n,
    uint8_t *out, size_t cap, size_t *outn, char *err)
{
	size_t	i = 0, take;

	while (i < n && d->state != HC_DONE) {
		if (d->state != HC_DATA) {
			if (httpt_chunk_byte(d, in[i], err) == -1)
				return -1;
			i++;
			continue;
		}
		take = n - i;
		if (take > d->left)
			take = (size_t)d->left;
		if (take > cap - *outn)
			return httpt_chunk_fail(err, "body too long");
		memcpy(out + *outn, in + i, take);
		*outn += take;
		d->left -= take;
		i += take;
		if (d->left == 0)
			d->state = HC_DATA_CR;
	}
	return (ssize_t)i;
}
