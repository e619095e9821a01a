/*
 * Destination patterns (destpat.h): the rules a server applies to the
 * targets of dynamic streams.  The request is a peer's, so a host is
 * checked before anything is matched: a name must be a plain DNS name
 * (a trailing dot and letter case do not let it slip past a rule), and
 * only inet_pton's spellings count as addresses (the resolver's others,
 * such as "127.1", are names whose addresses the CIDR rules then see).
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "destpat.h"
#include "err.h"

/* Longest DNS name, without its trailing dot (RFC 1035 3.1). */
#define DESTPAT_NAME_MAX	253

/* What destpat_host() found. */
#define DESTPAT_H_BAD		-1
#define DESTPAT_H_NAME		0
#define DESTPAT_H_ADDR		1

static int
destpat_lower(int c)
{
	return c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c;
}

static int
destpat_name_char(int c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_';
}

/*
 * host as a rule sees it: an address (into ss) or a name (lower case,
 * one trailing dot dropped, into name[ADDR_NAME_MAX]).  Returns
 * DESTPAT_H_ADDR, DESTPAT_H_NAME or DESTPAT_H_BAD.
 */
static int
destpat_host(const char *host, char *name, struct sockaddr_storage *ss)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)ss;
	size_t			 i, n = strlen(host);

	memset(ss, 0, sizeof(*ss));
	if (inet_pton(AF_INET, host, &sin->sin_addr) == 1) {
		sin->sin_family = AF_INET;
		return DESTPAT_H_ADDR;
	}
	if (inet_pton(AF_INET6, host, &sin6->sin6_addr) == 1) {
		sin6->sin6_family = AF_INET6;
		return DESTPAT_H_ADDR;
	}
	if (n > 0 && host[n - 1] == '.')
		n--;
	if (n == 0 || n > DESTPAT_NAME_MAX)
		return DESTPAT_H_BAD;
	for (i = 0; i < n; i++) {
		if (!destpat_name_char((unsigned char)host[i]))
			return DESTPAT_H_BAD;
		/* "a..b" and ".a" are no names a resolver would take as such. */
		if (host[i] == '.' && (i == 0 || host[i - 1] == '.'))
			return DESTPAT_H_BAD;
		name[i] = (char)destpat_lower((unsigned char)host[i]);
	}
	name[n] = '\0';
	return DESTPAT_H_NAME;
}

int
destpat_glob(const char *g, const char *name)
{
	const char	*star = NULL, *resume = NULL;

	/* Greedy with one back-track point: O(len(g) * len(name)). */
	while (*name != '\0') {
		if (*g == '?' || (*g != '*' && *g != '\0' &&
		    *g == destpat_lower((unsigned char)*name))) {
			g++;
			name++;
		} else if (*g == '*') {
			star = g++;
			resume = name;
		} else if (star != NULL) {
			g = star + 1;
			name = ++resume;
		} else
			return 0;
	}
	while (*g == '*')
		g++;
	return *g == '\0';
}

/* A port of s[0..n): 1..65535.  0, or -1. */
static int
destpat_port(const char *s, size_t n, int *port)
{
	size_t	i;
	int	v = 0;

	if (n == 0 || n > 5)
		return -1;
	for (i = 0; i < n; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		v = v * 10 + (s[i] - '0');
	}
	if (v < 1 || v > 65535)
		return -1;
	*port = v;
	return 0;
}

static int
destpat_ports(const char *s, struct destpat *p, char *err)
{
	const char *dash;

	if (strcmp(s, "*") == 0) {
		p->port_lo = 1;
		p->port_hi = 65535;
		return 0;
	}
	if ((dash = strchr(s, '-')) == NULL) {
		if (destpat_port(s, strlen(s), &p->port_lo) == -1)
			goto bad;
		p->port_hi = p->port_lo;
		return 0;
	}
	if (destpat_port(s, (size_t)(dash - s), &p->port_lo) == -1 ||
	    destpat_port(dash + 1, strlen(dash + 1), &p->port_hi) == -1 ||
	    p->port_lo > p->port_hi)
		goto bad;
	return 0;
 bad:
	err_set(err, "ports must be *, N or N-M within 1..65535");
	return -1;
}

/* "addr[/n]" of family af into p->cidr.  0, or -1 with err. */
static int
destpat_cidr(const char *s, int af, struct destpat *p, char *err)
{
	char		 buf[INET6_ADDRSTRLEN];
	const char	*slash = strchr(s, '/'), *m;
	size_t		 alen = slash != NULL ? (size_t)(slash - s) : strlen(s);
	int		 max = af == AF_INET6 ? 128 : 32, bits = 0;

	if (alen == 0 || alen >= sizeof(buf)) {
		err_set(err, "invalid address");
		return -1;
	}
	memcpy(buf, s, alen);
	buf[alen] = '\0';
	if (inet_pton(af, buf, p->cidr.addr) != 1) {
		err_set(err, "invalid %s address", af == AF_INET6 ? "IPv6" :
		    "IPv4");
		return -1;
	}
	p->cidr.family = af;
	p->cidr.bits = max;
	if (slash == NULL)
		return 0;
	m = slash + 1;
	if (*m == '\0' || strlen(m) > 3)
		goto bad;
	for (; *m != '\0'; m++) {
		if (*m < '0' || *m > '9')
			goto bad;
		bits = bits * 10 + (*m - '0');
	}
	if (bits > max)
		goto bad;
	/* Unlike -ip's kptunnel reading, /0 is every address. */
	p->cidr.bits = bits;
	return 0;
 bad:
	err_set(err, "invalid mask length");
	return -1;
}

static int
destpat_glob_parse(const char *s, struct destpat *p, char *err)
{
	size_t	i, n = strlen(s);

	if (n == 0 || n > DESTPAT_NAME_MAX) {
		err_set(err, "host must be 1 to %d characters",
		    DESTPAT_NAME_MAX);
		return -1;
	}
	for (i = 0; i < n; i++) {
		if (!destpat_name_char((unsigned char)s[i]) && s[i] != '*' &&
		    s[i] != '?') {
			err_set(err, "invalid character in host (a name glob "
			    "has letters, digits, - . _ * ?)");
			return -1;
		}
		p->glob[i] = (char)destpat_lower((unsigned char)s[i]);
	}
	p->glob[n] = '\0';
	/* Names are matched without their trailing dot. */
	if (n > 1 && p->glob[n - 1] == '.')
		p->glob[n - 1] = '\0';
	p->kind = DESTPAT_GLOB;
	return 0;
}

static int
destpat_parse1(const char *s, struct destpat *p, char *err)
{
	char		 host[DESTPAT_LEN];
	const char	*ports, *rb;
	size_t		 n;
	struct in_addr	 a4;

	memset(p, 0, sizeof(*p));
	if (strlen(s) >= DESTPAT_LEN) {
		err_set(err, "longer than %d bytes", DESTPAT_LEN - 1);
		return -1;
	}
	if (*s == '!') {
		p->deny = 1;
		s++;
	}
	if (*s == '[') {
		if ((rb = strchr(s, ']')) == NULL || rb[1] != ':') {
			err_set(err, "need [IPv6[/n]]:PORTS");
			return -1;
		}
		n = (size_t)(rb - s - 1);
		memcpy(host, s + 1, n);
		host[n] = '\0';
		if (destpat_ports(rb + 2, p, err) == -1)
			return -1;
		p->kind = DESTPAT_CIDR;
		return destpat_cidr(host, AF_INET6, p, err);
	}
	if ((ports = strrchr(s, ':')) == NULL) {
		err_set(err, "need HOST:PORTS");
		return -1;
	}
	n = (size_t)(ports - s);
	memcpy(host, s, n);
	host[n] = '\0';
	if (strchr(host, ':') != NULL) {
		err_set(err, "an IPv6 range goes in brackets: [v6/n]:PORTS");
		return -1;
	}
	if (destpat_ports(ports + 1, p, err) == -1)
		return -1;
	if (strcmp(host, "*") == 0) {
		p->kind = DESTPAT_ANY;
		return 0;
	}
	if (strchr(host, '/') != NULL || inet_pton(AF_INET, host, &a4) == 1) {
		p->kind = DESTPAT_CIDR;
		return destpat_cidr(host, AF_INET, p, err);
	}
	return destpat_glob_parse(host, p, err);
}

int
destpat_parse(const char *s, struct destpat *p, char *err)
{
	char why[ERR_LEN];

	if (s == NULL || destpat_parse1(s, p, why) == -1) {
		memset(p, 0, sizeof(*p));
		err_set(err, "destination pattern '%.64s%s': %s",
		    s != NULL ? s : "", s != NULL && strlen(s) > 64 ? "..." :
		    "", s != NULL ? why : "missing");
		return -1;
	}
	return 0;
}

/* Room for one more pattern: 0, or -1 with err. */
static int
destpat_list_grow(struct destpat_list *l, char *err)
{
	struct destpat *np;

	if (l->n == DESTPAT_MAX) {
		err_set(err, "more than %d destination patterns", DESTPAT_MAX);
		return -1;
	}
	if ((np = realloc(l->p, (l->n + 1) * sizeof(*np))) == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	l->p = np;
	return 0;
}

int
destpat_list_add1(struct destpat_list *l, const char *s, char *err)
{
	if (destpat_list_grow(l, err) == -1 ||
	    destpat_parse(s, &l->p[l->n], err) == -1)
		return -1;
	l->n++;
	return 0;
}

int
destpat_list_add(struct destpat_list *l, const char *s, char *err)
{
	char		 one[DESTPAT_LEN];
	const char	*p = s, *comma;
	size_t		 n, start = l->n;

	for (;;) {
		comma = strchr(p, ',');
		n = comma != NULL ? (size_t)(comma - p) : strlen(p);
		if (n >= sizeof(one)) {
			err_set(err, "destination pattern '%.64s...': longer "
			    "than %d bytes", p, DESTPAT_LEN - 1);
			goto fail;
		}
		memcpy(one, p, n);
		one[n] = '\0';
		if (destpat_list_add1(l, one, err) == -1)
			goto fail;
		if (comma == NULL)
			return 0;
		p = comma + 1;
	}
 fail:
	l->n = start;
	return -1;
}

void
destpat_list_free(struct destpat_list *l)
{
	free(l->p);
	l->p = NULL;
	l->n = 0;
}

static int
destpat_port_in(const struct destpat *p, int port)
{
	return port >= p->port_lo && port <= p->port_hi;
}

enum destpat_verdict
destpat_check_name(const struct destpat_list *l, const char *host, int port)
{
	char			 name[ADDR_NAME_MAX];
	struct sockaddr_storage	 ss;
	const struct destpat	*p;
	size_t			 i;
	int			 kind, cidr_seen = 0, cidr_allows = 0;

	kind = destpat_host(host, name, &ss);
	if (kind == DESTPAT_H_BAD)
		return DESTPAT_REFUSE;
	if (kind == DESTPAT_H_ADDR)
		return destpat_check_addr(l, host, (struct sockaddr *)&ss,
		    port);
	for (i = 0; i < l->n; i++) {
		p = &l->p[i];
		if (!destpat_port_in(p, port))
			continue;
		if (p->kind == DESTPAT_CIDR) {
			/* Its addresses may match: decided once resolved. */
			cidr_seen = 1;
			cidr_allows |= !p->deny;
			continue;
		}
		if (p->kind == DESTPAT_GLOB && !destpat_glob(p->glob, name))
			continue;
		if (!p->deny)
			return cidr_seen ? DESTPAT_RESOLVE : DESTPAT_ALLOW;
		return cidr_allows ? DESTPAT_RESOLVE : DESTPAT_REFUSE;
	}
	return cidr_allows ? DESTPAT_RESOLVE : DESTPAT_REFUSE;
}

enum destpat_verdict
destpat_check_addr(const struct destpat_list *l, const char *host,
    const struct sockaddr *sa, int port)
{
	char			 name[ADDR_NAME_MAX];
	struct sockaddr_storage	 ss;
	const struct destpat	*p;
	size_t			 i;
	int			 kind;

	if ((kind = destpat_host(host, name, &ss)) == DESTPAT_H_BAD)
		return DESTPAT_REFUSE;
	for (i = 0; i < l->n; i++) {
		p = &l->p[i];
		if (!destpat_port_in(p, port))
			continue;
		if ((p->kind == DESTPAT_GLOB && (kind != DESTPAT_H_NAME ||
		    !destpat_glob(p->glob, name))) ||
		    (p->kind == DESTPAT_CIDR && !cidr_match(&p->cidr, sa)))
			continue;
		return p->deny ? DESTPAT_REFUSE : DESTPAT_ALLOW;
	}
	return DESTPAT_REFUSE;
}
