/*
 * kptunnel's JSON messages (wire spec 5.3-5.5, 6.3), byte-identical to what
 * Go's encoding/json writes for kptunnel's structs: fields in declaration
 * order, HostInfo.Scheme always "", a nil ForwardList as null.
 *
 * Decoders follow Go's json.Decoder into a fresh struct: absent or null
 * members keep their zero value, unknown members are ignored, names match
 * case-insensitively, bytes after the first value are ignored.  On top of
 * Go's checks they bound every string, port, id and list so that the fixed
 * size structs can hold them.
 */

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "gojson.h"
#include "msg.h"

#define MSG_ERR_CTX	64

/*
 * The length of the valid UTF-8 sequence at p[0..n) (n >= 1): 1 to 4, or
 * 0 when p[0] starts none (a stray, overlong or surrogate encoding).
 */
static size_t
msg_utf8_len(const unsigned char *p, size_t n)
{
	uint32_t cp;

	if (p[0] < 0x80)
		return 1;
	if (p[0] >= 0xc2 && p[0] <= 0xdf && n > 1 && (p[1] & 0xc0) == 0x80)
		return 2;
	if (p[0] >= 0xe0 && p[0] <= 0xef && n > 2 &&
	    (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80) {
		cp = ((uint32_t)(p[0] & 0x0f) << 12) |
		    ((uint32_t)(p[1] & 0x3f) << 6) | (p[2] & 0x3f);
		return cp >= 0x800 && (cp < 0xd800 || cp > 0xdfff) ? 3 : 0;
	}
	if (p[0] >= 0xf0 && p[0] <= 0xf4 && n > 3 &&
	    (p[1] & 0xc0) == 0x80 && (p[2] & 0xc0) == 0x80 &&
	    (p[3] & 0xc0) == 0x80) {
		cp = ((uint32_t)(p[0] & 0x07) << 18) |
		    ((uint32_t)(p[1] & 0x3f) << 12) |
		    ((uint32_t)(p[2] & 0x3f) << 6) | (p[3] & 0x3f);
		return cp >= 0x10000 && cp <= 0x10ffff ? 4 : 0;
	}
	return 0;
}

/*
 * A JSON string for s.  Go writes each byte that is not part of valid UTF-8
 * as U+FFFD; jansson refuses such strings, so they are repaired here and
 * the encoders never fail on odd bytes from the command line.
 */
static json_t *
msg_jstr(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	json_t	*v;
	char	*fix;
	size_t	 n, i, o, len;

	n = strlen(s);
	if ((v = json_stringn(s, n)) != NULL)
		return v;
	/* Each bad byte grows to 3 bytes at most. */
	if (n > (SIZE_MAX - 1) / 3 || (fix = malloc(n * 3 + 1)) == NULL)
		return NULL;
	for (i = 0, o = 0; i < n; ) {
		if ((len = msg_utf8_len(p + i, n - i)) == 0) {
			memcpy(fix + o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
		} else {
			memcpy(fix + o, p + i, len);
			o += len;
			i += len;
		}
	}
	v = json_stringn(fix, o);
	free(fix);
	return v;
}

/*
 * Appends key: value to obj in order, taking the reference to value; the
 * first failure sticks in *ok so that builders can check once at the end.
 */
static void
msg_set(json_t *obj, const char *key, json_t *value, int *ok)
{
	if (value == NULL) {
		*ok = 0;
		return;
	}
	if (!*ok) {
		json_decref(value);
		return;
	}
	/* json_object_set_new() drops the reference on failure too. */
	if (json_object_set_new(obj, key, value) == -1)
		*ok = 0;
}

static json_t *
msg_hostinfo_json(const struct hostinfo *h)
{
	json_t	*o;
	int	 ok = 1;

	if ((o = json_object()) == NULL)
		return NULL;
	msg_set(o, "Scheme", json_string(""), &ok);
	msg_set(o, "Name", msg_jstr(h->name), &ok);
	msg_set(o, "Port", json_integer(h->port), &ok);
	msg_set(o, "Path", msg_jstr(h->path), &ok);
	msg_set(o, "Query", msg_jstr(h->query), &ok);
	if (!ok) {
		json_decref(o);
		return NULL;
	}
	return o;
}

/* The forwards of l whose kind is udp (0: TCP, "ForwardList"). */
static json_t *
msg_fwdlist_json(const struct msg_fwdlist *l, int udp)
{
	json_t	*a, *o;
	size_t	 i;
	int	 ok = 1;

	if (l->null && !udp)
		return json_null();
	if (l->n > MSG_MAX_FWDS || (a = json_array()) == NULL)
		return NULL;
	for (i = 0; i < l->n && ok; i++) {
		if ((l->fwds[i].udp != 0) != udp)
			continue;
		if ((o = json_object()) == NULL) {
			ok = 0;
			break;
		}
		msg_set(o, "IsReverseTunnel", json_boolean(l->fwds[i].reverse),
		    &ok);
		msg_set(o, "Src", msg_hostinfo_json(&l->fwds[i].src), &ok);
		msg_set(o, "Dst", msg_hostinfo_json(&l->fwds[i].dst), &ok);
		if (json_array_append_new(a, o) == -1)
			ok = 0;
	}
	if (!ok) {
		json_decref(a);
		return NULL;
	}
	return a;
}

/*
 * Serialises obj (consuming the reference) behind an optional type byte
 * (-1 for none).  NULL when obj is NULL or on allocation failure.
 */
static char *
msg_finish(json_t *obj, int ok, int type, size_t *len)
{
	char	*s, *out;
	size_t	 n, off;

	if (obj == NULL)
		return NULL;
	s = ok ? gojson_dump(obj, &n) : NULL;
	json_decref(obj);
	if (s == NULL)
		return NULL;
	if (type < 0) {
		out = s;
	} else {
		off = 1;
		if ((out = malloc(n + off + 1)) == NULL) {
			free(s);
			return NULL;
		}
		out[0] = (char)type;
		memcpy(out + off, s, n + 1);
		free(s);
		n += off;
	}
	if (len != NULL)
		*len = n;
	return out;
}

char *
msg_challenge_encode(const struct msg_challenge *m, size_t *len)
{
	json_t	*o;
	int	 ok = 1;

	if ((o = json_object()) == NULL)
		return NULL;
	msg_set(o, "Ver", msg_jstr(m->ver), &ok);
	msg_set(o, "Challenge", msg_jstr(m->challenge), &ok);
	msg_set(o, "Mode", msg_jstr(m->mode), &ok);
	return msg_finish(o, ok, -1, len);
}

char *
msg_response_encode(const struct msg_response *m, size_t *len)
{
	json_t	*o;
	int	 ok = 1;

	if ((o = json_object()) == NULL)
		return NULL;
	msg_set(o, "Response", msg_jstr(m->response), &ok);
	msg_set(o, "Hint", msg_jstr(m->hint), &ok);
	msg_set(o, "SessionToken", msg_jstr(m->token), &ok);
	msg_set(o, "WriteNo", json_integer(m->write_no), &ok);
	msg_set(o, "ReadNo", json_integer(m->read_no), &ok);
	msg_set(o, "Ctrl", json_integer(m->ctrl), &ok);
	msg_set(o, "ForwardList", msg_fwdlist_json(&m->fwds, 0), &ok);
	if (m->window > 0)
		msg_set(o, MSG_WINDOW_KEY, json_integer(m->window), &ok);
	if (m->udp)
		msg_set(o, MSG_UDP_KEY, msg_fwdlist_json(&m->fwds, 1), &ok);
	return msg_finish(o, ok, -1, len);
}

char *
msg_result_encode(const struct msg_result *m, size_t *len)
{
	json_t	*o;
	int	 ok = 1;

	if ((o = json_object()) == NULL)
		return NULL;
	msg_set(o, "Result", msg_jstr(m->result), &ok);
	msg_set(o, "SessionId", json_integer(m->session_id), &ok);
	msg_set(o, "SessionToken", msg_jstr(m->token), &ok);
	msg_set(o, "WriteNo", json_integer(m->write_no), &ok);
	msg_set(o, "ReadNo", json_integer(m->read_no), &ok);
	msg_set(o, "ForwardList", msg_fwdlist_json(&m->fwds, 0), &ok);
	if (m->window > 0)
		msg_set(o, MSG_WINDOW_KEY, json_integer(m->window), &ok);
	if (m->udp)
		msg_set(o, MSG_UDP_KEY, msg_fwdlist_json(&m->fwds, 1), &ok);
	return msg_finish(o, ok, -1, len);
}

char *
msg_header_encode(const struct msg_header *m, size_t *len)
{
	json_t	*o;
	int	 ok = 1;

	if ((o = json_object()) == NULL)
		return NULL;
	msg_set(o, "HostInfo", msg_hostinfo_json(&m->host), &ok);
	msg_set(o, "CitiId", json_integer(m->citi), &ok);
	return msg_finish(o, ok, m->udp ? MSG_CTRL_UDP_HEADER :
	    MSG_CTRL_HEADER, len);
}

char *
msg_resp_header_encode(const struct msg_resp_header *m, size_t *len)
{
	json_t	*o;
	int	 ok = 1;

	if ((o = json_object()) == NULL)
		return NULL;
	msg_set(o, "Result", json_boolean(m->result), &ok);
	msg_set(o, "Mess", msg_jstr(m->mess), &ok);
	msg_set(o, "CitiId", json_integer(m->citi), &ok);
	return msg_finish(o, ok, MSG_CTRL_RESP_HEADER, len);
}

size_t
msg_fwdlist_udp(const struct msg_fwdlist *l)
{
	size_t i, n = 0;

	for (i = 0; i < l->n; i++)
		if (l->fwds[i].udp)
			n++;
	return n;
}

size_t
msg_fwdlist_strip_udp(struct msg_fwdlist *l)
{
	size_t i, k = 0;

	for (i = 0; i < l->n; i++)
		if (!l->fwds[i].udp)
			l->fwds[k++] = l->fwds[i];
	i = l->n - k;
	l->n = k;
	return i;
}

/* Decoding. */

/* Prefixes err with the member path ctx ("ForwardList[3].Src"). */
static int
msg_fail(char *err, const char *ctx, const char *why)
{
	char	 tmp[ERR_LEN];

	if (err == NULL)
		return -1;
	snprintf(tmp, sizeof(tmp), "%s", why);
	if (ctx != NULL && *ctx != '\0')
		err_set(err, "%s.%s", ctx, tmp);
	else
		err_set(err, "%s", tmp);
	return -1;
}

static int
msg_get_str(const json_t *o, const char *ctx, const char *key, char *out,
    size_t cap, char *err)
{
	char	 why[ERR_LEN];

	if (gojson_str(o, key, out, cap, why) == -1)
		return msg_fail(err, ctx, why);
	return 0;
}

static int
msg_get_int(const json_t *o, const char *ctx, const char *key,
    long long min, long long max, long long *out, char *err)
{
	char		 why[ERR_LEN];
	long long	 v = 0;

	if (gojson_int(o, key, &v, why) == -1)
		return msg_fail(err, ctx, why);
	if (v < min || v > max) {
		snprintf(why, sizeof(why), "%s: out of range (%lld)", key, v);
		return msg_fail(err, ctx, why);
	}
	*out = v;
	return 0;
}

static int
msg_get_bool(const json_t *o, const char *ctx, const char *key, int *out,
    char *err)
{
	char	 why[ERR_LEN];

	if (gojson_bool(o, key, out, why) == -1)
		return msg_fail(err, ctx, why);
	return 0;
}

/*
 * The member key of o as an object, NULL when absent or null (the struct
 * keeps its zero value), or -1 through *bad when it has another type.
 */
static json_t *
msg_get_obj(const json_t *o, const char *ctx, const char *key, int *bad,
    char *err)
{
	json_t	*v;
	char	 why[ERR_LEN];

	*bad = 0;
	v = gojson_get(o, key);
	if (v == NULL || json_is_null(v))
		return NULL;
	if (!json_is_object(v)) {
		snprintf(why, sizeof(why), "%s: not an object", key);
		*bad = 1;
		msg_fail(err, ctx, why);
		return NULL;
	}
	return v;
}

static int
msg_hostinfo_parse(const json_t *o, const char *ctx, struct hostinfo *h,
    char *err)
{
	json_t		*v;
	long long	 port = 0;

	memset(h, 0, sizeof(*h));
	if (o == NULL)
		return 0;
	/* Scheme is always "" from Go and never used; only its type counts. */
	v = gojson_get(o, "Scheme");
	if (v != NULL && !json_is_null(v) && !json_is_string(v))
		return msg_fail(err, ctx, "Scheme: not a string");
	if (msg_get_str(o, ctx, "Name", h->name, sizeof(h->name), err) == -1 ||
	    msg_get_int(o, ctx, "Port", 0, 65535, &port, err) == -1 ||
	    msg_get_str(o, ctx, "Path", h->path, sizeof(h->path), err) == -1 ||
	    msg_get_str(o, ctx, "Query", h->query, sizeof(h->query),
	    err) == -1)
		return -1;
	h->port = (int)port;
	return 0;
}

static int
msg_fwd_parse(const json_t *o, const char *ctx, struct fwd *f, char *err)
{
	json_t	*v;
	char	 sub[MSG_ERR_CTX + 8];
	int	 bad;

	memset(f, 0, sizeof(*f));
	if (o == NULL)
		return 0;
	if (msg_get_bool(o, ctx, "IsReverseTunnel", &f->reverse, err) == -1)
		return -1;
	v = msg_get_obj(o, ctx, "Src", &bad, err);
	snprintf(sub, sizeof(sub), "%s.Src", ctx);
	if (bad || msg_hostinfo_parse(v, sub, &f->src, err) == -1)
		return -1;
	v = msg_get_obj(o, ctx, "Dst", &bad, err);
	snprintf(sub, sizeof(sub), "%s.Dst", ctx);
	if (bad || msg_hostinfo_parse(v, sub, &f->dst, err) == -1)
		return -1;
	return 0;
}

/* Absent and null both mean Go's nil slice, which is written back as null. */
static int
msg_fwdlist_parse(const json_t *o, struct msg_fwdlist *l, char *err)
{
	json_t	*a, *e;
	char	 ctx[MSG_ERR_CTX];
	size_t	 i;

	memset(l, 0, sizeof(*l));
	a = gojson_get(o, "ForwardList");
	if (a == NULL || json_is_null(a)) {
		l->null = 1;
		return 0;
	}
	if (!json_is_array(a)) {
		err_set(err, "ForwardList: not an array");
		return -1;
	}
	if (json_array_size(a) > MSG_MAX_FWDS) {
		err_set(err, "ForwardList: too many forwards (%zu > %d)",
		    json_array_size(a), MSG_MAX_FWDS);
		return -1;
	}
	json_array_foreach(a, i, e) {
		snprintf(ctx, sizeof(ctx), "ForwardList[%zu]", i);
		/* A null element decodes to a zero ForwardInfo in Go. */
		if (!json_is_null(e) && !json_is_object(e))
			return msg_fail(err, ctx, "not an object");
		if (msg_fwd_parse(json_is_null(e) ? NULL : e, ctx,
		    &l->fwds[i], err) == -1)
			return -1;
	}
	l->n = json_array_size(a);
	return 0;
}

/*
 * "TunneldUdp": UDP forwards appended to l (at most MSG_MAX_FWDS in all);
 * *present says whether the member was there (absent and null: not).
 */
static int
msg_udplist_parse(const json_t *o, struct msg_fwdlist *l, int *present,
    char *err)
{
	json_t	*a, *e;
	char	 ctx[MSG_ERR_CTX];
	size_t	 i;

	*present = 0;
	a = gojson_get(o, MSG_UDP_KEY);
	if (a == NULL || json_is_null(a))
		return 0;
	if (!json_is_array(a)) {
		err_set(err, "%s: not an array", MSG_UDP_KEY);
		return -1;
	}
	if (json_array_size(a) > MSG_MAX_FWDS - l->n) {
		err_set(err, "%s: too many forwards (%zu with %zu TCP > %d)",
		    MSG_UDP_KEY, json_array_size(a), l->n, MSG_MAX_FWDS);
		return -1;
	}
	json_array_foreach(a, i, e) {
		snprintf(ctx, sizeof(ctx), "%s[%zu]", MSG_UDP_KEY, i);
		if (!json_is_object(e))
			return msg_fail(err, ctx, "not an object");
		if (msg_fwd_parse(e, ctx, &l->fwds[l->n + i], err) == -1)
			return -1;
		l->fwds[l->n + i].udp = 1;
	}
	l->n += json_array_size(a);
	if (l->n > 0)
		l->null = 0;
	*present = 1;
	return 0;
}

/* Parses p[0..n) and requires the first value to be an object. */
static json_t *
msg_load(const uint8_t *p, size_t n, char *err)
{
	json_t	*o;

	if ((o = gojson_load(p, n, err)) == NULL)
		return NULL;
	if (!json_is_object(o)) {
		json_decref(o);
		err_set(err, "message is not a JSON object");
		return NULL;
	}
	return o;
}

int
msg_challenge_decode(const uint8_t *p, size_t n, struct msg_challenge *m,
    char *err)
{
	json_t	*o;
	int	 rv = -1;

	memset(m, 0, sizeof(*m));
	if ((o = msg_load(p, n, err)) == NULL)
		return -1;
	if (msg_get_str(o, NULL, "Ver", m->ver, sizeof(m->ver), err) == -1 ||
	    msg_get_str(o, NULL, "Challenge", m->challenge,
	    sizeof(m->challenge), err) == -1 ||
	    msg_get_str(o, NULL, "Mode", m->mode, sizeof(m->mode), err) == -1)
		goto done;
	rv = 0;
done:
	json_decref(o);
	if (rv == -1)
		memset(m, 0, sizeof(*m));
	return rv;
}

int
msg_response_decode(const uint8_t *p, size_t n, struct msg_response *m,
    char *err)
{
	json_t		*o;
	long long	 wn = 0, rn = 0, ctrl = 0, win = 0;
	int		 rv = -1;

	memset(m, 0, sizeof(*m));
	if ((o = msg_load(p, n, err)) == NULL)
		return -1;
	if (msg_get_str(o, NULL, "Response", m->response,
	    sizeof(m->response), err) == -1 ||
	    msg_get_str(o, NULL, "Hint", m->hint, sizeof(m->hint),
	    err) == -1 ||
	    msg_get_str(o, NULL, "SessionToken", m->token, sizeof(m->token),
	    err) == -1 ||
	    msg_get_int(o, NULL, "WriteNo", INT64_MIN, INT64_MAX, &wn,
	    err) == -1 ||
	    msg_get_int(o, NULL, "ReadNo", INT64_MIN, INT64_MAX, &rn,
	    err) == -1 ||
	    msg_get_int(o, NULL, "Ctrl", INT_MIN, INT_MAX, &ctrl, err) == -1 ||
	    msg_fwdlist_parse(o, &m->fwds, err) == -1 ||
	    msg_udplist_parse(o, &m->fwds, &m->udp, err) == -1 ||
	    msg_get_int(o, NULL, MSG_WINDOW_KEY, 0, UINT32_MAX, &win,
	    err) == -1)
		goto done;
	m->window = win;
	m->write_no = wn;
	m->read_no = rn;
	m->ctrl = (int)ctrl;
	rv = 0;
done:
	json_decref(o);
	if (rv == -1)
		memset(m, 0, sizeof(*m));
	return rv;
}

int
msg_result_decode(const uint8_t *p, size_t n, struct msg_result *m,
    char *err)
{
	json_t		*o;
	long long	 sid = 0, wn = 0, rn = 0, win = 0;
	int		 rv = -1;

	memset(m, 0, sizeof(*m));
	if ((o = msg_load(p, n, err)) == NULL)
		return -1;
	if (msg_get_str(o, NULL, "Result", m->result, sizeof(m->result),
	    err) == -1 ||
	    msg_get_int(o, NULL, "SessionId", INT64_MIN, INT64_MAX, &sid,
	    err) == -1 ||
	    msg_get_str(o, NULL, "SessionToken", m->token, sizeof(m->token),
	    err) == -1 ||
	    msg_get_int(o, NULL, "WriteNo", INT64_MIN, INT64_MAX, &wn,
	    err) == -1 ||
	    msg_get_int(o, NULL, "ReadNo", INT64_MIN, INT64_MAX, &rn,
	    err) == -1 ||
	    msg_fwdlist_parse(o, &m->fwds, err) == -1 ||
	    msg_udplist_parse(o, &m->fwds, &m->udp, err) == -1 ||
	    msg_get_int(o, NULL, MSG_WINDOW_KEY, 0, UINT32_MAX, &win,
	    err) == -1)
		goto done;
	m->window = win;
	m->session_id = sid;
	m->write_no = wn;
	m->read_no = rn;
	rv = 0;
done:
	json_decref(o);
	if (rv == -1)
		memset(m, 0, sizeof(*m));
	return rv;
}

static int
msg_header_parse(const json_t *o, struct msg_header *h, char *err)
{
	json_t		*v;
	long long	 citi = 0;
	int		 bad;

	v = msg_get_obj(o, NULL, "HostInfo", &bad, err);
	if (bad || msg_hostinfo_parse(v, "HostInfo", &h->host, err) == -1)
		return -1;
	if (msg_get_int(o, NULL, "CitiId", 0, UINT32_MAX, &citi, err) == -1)
		return -1;
	h->citi = (uint32_t)citi;
	return 0;
}

static int
msg_resp_header_parse(const json_t *o, struct msg_resp_header *r,
    char *err)
{
	long long	 citi = 0;

	if (msg_get_bool(o, NULL, "Result", &r->result, err) == -1 ||
	    msg_get_str(o, NULL, "Mess", r->mess, sizeof(r->mess),
	    err) == -1 ||
	    msg_get_int(o, NULL, "CitiId", 0, UINT32_MAX, &citi, err) == -1)
		return -1;
	r->citi = (uint32_t)citi;
	return 0;
}

/*
 * p[0] is the message type.  MSG_CTRL_HEADER and MSG_CTRL_UDP_HEADER fill
 * h, MSG_CTRL_RESP_HEADER fills r (either may be NULL when the caller does not want that type; the
 * JSON is still checked).  Any other type byte is returned as is without
 * looking at the rest, because Go ignores unknown control messages; the
 * caller drops them.  An empty payload has no type and is an error.
 */
int
msg_ctrl_decode(const uint8_t *p, size_t n, struct msg_header *h,
    struct msg_resp_header *r, char *err)
{
	struct msg_header	 hh;
	struct msg_resp_header	 rr;
	json_t			*o;
	int			 type, rv;

	if (p == NULL || n == 0) {
		err_set(err, "empty control message");
		return -1;
	}
	type = p[0];
	if (type != MSG_CTRL_HEADER && type != MSG_CTRL_RESP_HEADER &&
	    type != MSG_CTRL_UDP_HEADER)
		return type;
	if ((o = msg_load(p + 1, n - 1, err)) == NULL)
		return -1;
	memset(&hh, 0, sizeof(hh));
	memset(&rr, 0, sizeof(rr));
	if (type != MSG_CTRL_RESP_HEADER) {
		rv = msg_header_parse(o, &hh, err);
		hh.udp = type == MSG_CTRL_UDP_HEADER;
		if (rv == 0 && h != NULL)
			*h = hh;
	} else {
		rv = msg_resp_header_parse(o, &rr, err);
		if (rv == 0 && r != NULL)
			*r = rr;
	}
	json_decref(o);
	return rv == -1 ? -1 : type;
}
