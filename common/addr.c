/*
 * Addresses, forwards and CIDR ranges of kptunnel's command line (wire spec
 * 8.2, 8.4).  kptunnel parses an address as a URL ("http://" prepended
 * unless the text has "://") and splits the authority on ':'; this parser
 * accepts the same texts, plus bracketed IPv6 literals, and is stricter
 * about characters that have no business in a host name.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <string.h>

#include "addr.h"
#include "err.h"
#include "joinpt.h"

/* Longest text inside brackets: an IPv6 address plus a zone. */
#define ADDR_V6_MAX	(INET6_ADDRSTRLEN + 64)

static int
addr_is_alpha(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static int
addr_is_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* URL scheme syntax (RFC 3986): ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
static int
addr_scheme_ok(const char *s, size_t n)
{
	size_t	 i;

	if (n == 0 || !addr_is_alpha((unsigned char)s[0]))
		return 0;
	for (i = 1; i < n; i++)
		if (!addr_is_alpha((unsigned char)s[i]) &&
		    !addr_is_digit((unsigned char)s[i]) &&
		    s[i] != '+' && s[i] != '-' && s[i] != '.')
			return 0;
	return 1;
}

/* Characters of a DNS name or IPv4 address (plus '_' and '~' as URLs allow). */
static int
addr_host_char(int c)
{
	return addr_is_alpha(c) || addr_is_digit(c) || c == '-' ||
	    c == '.' || c == '_' || c == '~';
}

/* Path, query and fragment keep their text but controls and spaces. */
static int
addr_text_ok(const char *what, const char *s, size_t n, char *err)
{
	size_t	 i;

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c <= 0x20 || c == 0x7f) {
			err_set(err, "invalid character in %s", what);
			return 0;
		}
	}
	return 1;
}

static int
addr_copy_part(const char *what, const char *s, size_t n, char *out,
    size_t cap, char *err)
{
	if (n >= cap) {
		err_set(err, "%s too long", what);
		return -1;
	}
	if (!addr_text_ok(what, s, n, err))
		return -1;
	memcpy(out, s, n);
	out[n] = '\0';
	return 0;
}

/* An IPv6 literal with an optional %zone, as found between brackets. */
static int
addr_v6_ok(const char *s, size_t n)
{
	char		 buf[ADDR_V6_MAX];
	struct in6_addr	 a;
	const char	*pct;
	size_t		 alen, i;

	if (n == 0 || n >= sizeof(buf))
		return 0;
	memcpy(buf, s, n);
	buf[n] = '\0';
	alen = n;
	if ((pct = memchr(buf, '%', n)) != NULL) {
		alen = (size_t)(pct - buf);
		if (alen + 1 == n)
			return 0;
		for (i = alen + 1; i < n; i++)
			if (!addr_host_char((unsigned char)buf[i]))
				return 0;
		buf[alen] = '\0';
	}
	return inet_pton(AF_INET6, buf, &a) == 1;
}

int
addr_split(const char *s, size_t n, struct addr_span *host,
    struct addr_span *port)
{
	const char	*end = s + n, *rb, *colon;

	host->p = port->p = s;
	host->n = port->n = 0;
	if (n > 0 && *s == '[') {
		if ((rb = memchr(s, ']', n)) == NULL)
			return ADDR_SPLIT_BRACKET;
		host->p = s + 1;
		host->n = (size_t)(rb - s - 1);
		if (rb + 1 >= end || rb[1] != ':')
			return ADDR_SPLIT_NO_PORT;
		port->p = rb + 2;
		port->n = (size_t)(end - rb - 2);
		return ADDR_SPLIT_OK;
	}
	if ((colon = memchr(s, ':', n)) == NULL)
		return ADDR_SPLIT_NO_PORT;
	host->n = (size_t)(colon - s);
	port->p = colon + 1;
	port->n = (size_t)(end - colon - 1);
	if (memchr(port->p, ':', port->n) != NULL)
		return ADDR_SPLIT_COLONS;
	return ADDR_SPLIT_OK;
}

/* Past "scheme://", which kptunnel drops (it is always "" on the wire). */
static int
addr_skip_scheme(const char *s, size_t n, const char **p, char *err)
{
	size_t	i;

	*p = s;
	for (i = 0; i + 3 <= n; i++) {
		if (memcmp(s + i, "://", 3) != 0)
			continue;
		if (!addr_scheme_ok(s, i)) {
			err_set(err, "invalid scheme in '%.*s'",
			    (int)(n > 64 ? 64 : n), s);
			return -1;
		}
		*p = s + i + 3;
		break;
	}
	return 0;
}

/* The decimal port of s[0..n), 0..65535.  0, or -1 with err. */
static int
addr_port(const char *s, size_t n, int *port, char *err)
{
	size_t	i;
	long	v;

	if (n == 0) {
		err_set(err, "missing port");
		return -1;
	}
	for (i = 0, v = 0; i < n; i++) {
		if (!addr_is_digit((unsigned char)s[i])) {
			err_set(err, "port is not a number");
			return -1;
		}
		v = v * 10 + (s[i] - '0');
		if (v > 65535) {
			err_set(err, "port out of range");
			return -1;
		}
	}
	*port = (int)v;
	return 0;
}

/* The authority s[0..n): host (checked) and port into h. */
static int
addr_authority(const char *s, size_t n, struct hostinfo *h, char *err)
{
	struct addr_span host, port;
	size_t		 i;
	int		 rc;

	rc = addr_split(s, n, &host, &port);
	if (rc == ADDR_SPLIT_BRACKET || (n > 0 && *s == '[' &&
	    !addr_v6_ok(host.p, host.n))) {
		err_set(err, "invalid IPv6 address");
		return -1;
	}
	/* Exactly one ':' (kptunnel splits the authority on it). */
	if (rc != ADDR_SPLIT_OK) {
		err_set(err, "illegal pattern, need host:port");
		return -1;
	}
	for (i = 0; *s != '[' && i < host.n; i++)
		if (!addr_host_char((unsigned char)host.p[i])) {
			err_set(err, "invalid character in host name");
			return -1;
		}
	if (host.n >= sizeof(h->name)) {
		err_set(err, "host name too long");
		return -1;
	}
	memcpy(h->name, host.p, host.n);
	h->name[host.n] = '\0';
	return addr_port(port.p, port.n, &h->port, err);
}

/* "/path?query#fragment" after the authority: a URL parser drops the
 * fragment too. */
static int
addr_tail(const char *sep, const char *end, struct hostinfo *h, char *err)
{
	const char	*p;

	if (sep < end && *sep == '/') {
		for (p = sep; p < end && *p != '?' && *p != '#'; p++)
			;
		if (addr_copy_part("path", sep, (size_t)(p - sep), h->path,
		    sizeof(h->path), err) == -1)
			return -1;
		sep = p;
	}
	if (sep < end && *sep == '?') {
		for (p = sep + 1; p < end && *p != '#'; p++)
			;
		if (addr_copy_part("query", sep + 1, (size_t)(p - sep - 1),
		    h->query, sizeof(h->query), err) == -1)
			return -1;
		sep = p;
	}
	if (sep < end && !addr_text_ok("fragment", sep, (size_t)(end - sep),
	    err))
		return -1;
	return 0;
}

static int
addr_parse1(const char *s, size_t n, struct hostinfo *h, char *err)
{
	const char	*p, *sep, *end = s + n;

	memset(h, 0, sizeof(*h));
	if (memchr(s, '\0', n) != NULL) {
		err_set(err, "invalid address");
		return -1;
	}
	if (addr_skip_scheme(s, n, &p, err) == -1)
		return -1;
	/* Authority up to the path, query or fragment. */
	for (sep = p; sep < end && *sep != '/' && *sep != '?' && *sep != '#';
	    sep++)
		;
	if (addr_authority(p, (size_t)(sep - p), h, err) == -1)
		return -1;
	return addr_tail(sep, end, h, err);
}

static int
addr_parsen(const char *s, size_t n, struct hostinfo *h, char *err)
{
	if (addr_parse1(s, n, h, err) == -1) {
		memset(h, 0, sizeof(*h));
		return -1;
	}
	return 0;
}

int
addr_parse(const char *s, struct hostinfo *h, char *err)
{
	if (s == NULL) {
		memset(h, 0, sizeof(*h));
		err_set(err, "missing address");
		return -1;
	}
	return addr_parsen(s, strlen(s), h, err);
}

void
addr_format(const struct hostinfo *h, char *out, size_t cap)
{
	if (out == NULL || cap == 0)
		return;
	if (joinpt_name(h) != NULL)
		snprintf(out, cap, "%s", h->name);
	else if (strchr(h->name, ':') != NULL)
		snprintf(out, cap, "[%s]:%d", h->name, h->port);
	else
		snprintf(out, cap, "%s:%d", h->name, h->port);
}

/*
 * strings.Split(s, ","): the number of parts; the first three (at most)
 * into part[] and len[].
 */
static size_t
fwd_split(const char *s, const char *part[3], size_t len[3])
{
	const char	*c;
	size_t		 np = 0;

	part[0] = s;
	for (c = s; ; c++) {
		if (*c == ',' || *c == '\0') {
			if (np < 3) {
				len[np] = (size_t)(c - part[np]);
				if (np + 1 < 3 && *c == ',')
					part[np + 1] = c + 1;
			}
			np++;
			if (*c == '\0')
				break;
		}
	}
	return np;
}

/* One end of a forward: an address, or a join point (joinpt.h). */
static int
fwd_parse_end(const char *s, size_t n, struct hostinfo *h, char *err)
{
	if (joinpt_is(s, n))
		return joinpt_parse(s, n, h, err);
	return addr_parsen(s, n, h, err);
}

/*
 * The type before the first comma: "r", "t", or UDP's "u" (the mode's
 * direction, as no prefix), "ut", "ur".  0, or -1 if it is none of them.
 */
static int
fwd_type(const char *p, size_t n, struct fwd *f)
{
	if (n > 0 && p[0] == 'u') {
		f->udp = 1;
		p++;
		n--;
		if (n == 0)
			return 0;
	}
	if (n == 1 && p[0] == 'r')
		f->reverse = 1;
	else if (n == 1 && p[0] == 't')
		f->reverse = 0;
	else
		return -1;
	return 0;
}

int
fwd_parse(const char *s, int default_reverse, struct fwd *f, char *err)
{
	const char	*part[3];
	size_t		 len[3], np, i = 0;
	char		 why[ERR_LEN];

	memset(f, 0, sizeof(*f));
	if (s == NULL) {
		err_set(err, "missing forward");
		return -1;
	}
	np = fwd_split(s, part, len);
	f->reverse = default_reverse ? 1 : 0;
	if (np == 3) {
		if (fwd_type(part[0], len[0], f) == -1) {
			err_set(err, "illegal forward type");
			return -1;
		}
		i = 1;
	}
	if (np - i != 2) {
		err_set(err, "illegal forward. need ','");
		return -1;
	}
	if (fwd_parse_end(part[i], len[i], &f->src, why) == -1) {
		err_set(err, "src: %s", why);
		return -1;
	}
	if (fwd_parse_end(part[i + 1], len[i + 1], &f->dst, why) == -1) {
		err_set(err, "dst: %s", why);
		return -1;
	}
	/* Only the worker (the server's end) meets a join point. */
	if ((!f->reverse && joinpt_name(&f->src) != NULL) ||
	    (f->reverse && joinpt_name(&f->dst) != NULL)) {
		err_set(err, "a join point can only be the Src of an r forward "
		    "or the Dst of a t forward");
		return -1;
	}
	if (f->udp && (joinpt_name(&f->src) != NULL ||
	    joinpt_name(&f->dst) != NULL)) {
		err_set(err, "a join point carries TCP streams only");
		return -1;
	}
	return 0;
}

static int
addr_host_equal(const struct hostinfo *a, const struct hostinfo *b)
{
	return a->port == b->port && strcmp(a->name, b->name) == 0 &&
	    strcmp(a->path, b->path) == 0 && strcmp(a->query, b->query) == 0;
}

int
fwd_equal(const struct fwd *a, const struct fwd *b)
{
	return (a->reverse != 0) == (b->reverse != 0) &&
	    (a->udp != 0) == (b->udp != 0) &&
	    addr_host_equal(&a->src, &b->src) &&
	    addr_host_equal(&a->dst, &b->dst);
}

/*
 * The mask length after a range's '/' (m), at most max.  Returns it, or
 * -1 with err.
 */
static int
cidr_mask_bits(const char *m, int max, char *err)
{
	int bits = 0;

	if (*m == '\0') {
		err_set(err, "missing mask length");
		return -1;
	}
	for (; *m != '\0'; m++) {
		if (!addr_is_digit((unsigned char)*m) ||
		    (bits = bits * 10 + (*m - '0')) > max) {
			err_set(err, "invalid mask length");
			return -1;
		}
	}
	return bits;
}

/* Clears c's host bits so that a range has one representation. */
static void
cidr_clear_host(struct cidr *c, int max)
{
	int i;

	for (i = 0; i < max / 8; i++) {
		if (c->bits >= (i + 1) * 8)
			continue;
		if (c->bits > i * 8)
			c->addr[i] &= (uint8_t)(0xff << (8 - (c->bits - i * 8)));
		else
			c->addr[i] = 0;
	}
}

int
cidr_parse(const char *s, struct cidr *c, char *err)
{
	char		 buf[INET6_ADDRSTRLEN];
	const char	*slash;
	size_t		 alen;
	int		 max, bits = 0;

	memset(c, 0, sizeof(*c));
	if (s == NULL || *s == '\0') {
		err_set(err, "empty address range");
		return -1;
	}
	slash = strchr(s, '/');
	alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	if (alen == 0 || alen >= sizeof(buf)) {
		err_set(err, "invalid address range");
		return -1;
	}
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	c->family = memchr(buf, ':', alen) != NULL ? AF_INET6 : AF_INET;
	max = c->family == AF_INET6 ? 128 : 32;
	if (inet_pton(c->family, buf, c->addr) != 1) {
		memset(c, 0, sizeof(*c));
		err_set(err, "invalid address '%s'", buf);
		return -1;
	}
	if (slash != NULL && (bits = cidr_mask_bits(slash + 1, max, err)) ==
	    -1) {
		memset(c, 0, sizeof(*c));
		return -1;
	}
	/*
	 * kptunnel reads a missing mask and /0 as a full-length mask: "-ip
	 * 10.0.0.1/0" admits 10.0.0.1 only, never everybody.  Kept for
	 * compatibility with existing command lines.
	 */
	c->bits = bits == 0 ? max : bits;
	cidr_clear_host(c, max);
	return 0;
}

/* The first bits bits of a and b are equal. */
static int
cidr_prefix_eq(const uint8_t *a, const uint8_t *b, int bits)
{
	int	 full = bits / 8, rest = bits % 8;
	uint8_t	 mask;

	if (memcmp(a, b, (size_t)full) != 0)
		return 0;
	if (rest == 0)
		return 1;
	mask = (uint8_t)(0xff << (8 - rest));
	return (a[full] & mask) == (b[full] & mask);
}

/*
 * Both sides are compared as IPv6: IPv4 peers and ranges as v4-mapped
 * addresses (::ffff:a.b.c.d, /n + 96), so that a dual-stack listener's
 * mapped peers match IPv4 ranges and mapped ranges match IPv4 peers.
 */
int
cidr_match(const struct cidr *c, const struct sockaddr *sa)
{
	static const uint8_t mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};
	uint8_t	 peer[16], range[16];
	int	 bits;

	if (c == NULL || sa == NULL)
		return 0;
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)sa;

		memcpy(peer, mapped, 12);
		memcpy(peer + 12, &sin->sin_addr, 4);
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 =
		    (const struct sockaddr_in6 *)sa;

		memcpy(peer, &sin6->sin6_addr, 16);
	} else
		return 0;

	if (c->family == AF_INET) {
		if (c->bits < 0 || c->bits > 32)
			return 0;
		memcpy(range, mapped, 12);
		memcpy(range + 12, c->addr, 4);
		bits = c->bits + 96;
	} else if (c->family == AF_INET6) {
		if (c->bits < 0 || c->bits > 128)
			return 0;
		memcpy(range, c->addr, 16);
		bits = c->bits;
	} else
		return 0;
	return cidr_prefix_eq(peer, range, bits);
}
