#ifndef ADDR_H
#define ADDR_H

/*
 * Addresses, forwards and CIDR ranges as kptunnel's command line writes them
 * (wire spec 8.2, 8.4), with IPv6 literals in brackets added.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#define ADDR_NAME_MAX	256

/* kptunnel's HostInfo; Scheme is always "" on the wire. */
struct hostinfo {
	char	name[ADDR_NAME_MAX];	/* may be "" (all interfaces/local) */
	int	port;			/* 0..65535 */
	char	path[ADDR_NAME_MAX];
	char	query[ADDR_NAME_MAX];
};

struct fwd {
	int		reverse;	/* IsReverseTunnel: "r" */
	/*
	 * Datagrams ("u", "ut", "ur"): a tunneld extension that a Go peer
	 * never sees (tunneld's docs/protocol.md, "UDP extension").
	 */
	int		udp;
	struct hostinfo	src;		/* where the listening side listens */
	struct hostinfo	dst;		/* what the dialing side dials */
};

struct cidr {
	int	family;			/* AF_INET or AF_INET6 */
	uint8_t	addr[16];
	int	bits;
};

/*
 * "[host]:port" with host a name, an IPv4 address, "[v6]" or empty; an
 * optional "http://" style scheme and a "/path?query" tail are accepted as
 * kptunnel does.  Returns 0, or -1 with err.
 */
int	addr_parse(const char *s, struct hostinfo *h, char *err);

/* A piece of a caller's text. */
struct addr_span {
	const char	*p;
	size_t		 n;
};

/* addr_split() results. */
#define ADDR_SPLIT_OK		0
#define ADDR_SPLIT_BRACKET	-1	/* '[' without ']' */
#define ADDR_SPLIT_NO_PORT	-2	/* no ':' after the host */
#define ADDR_SPLIT_COLONS	-3	/* a second ':' outside brackets */

/*
 * Splits an authority s[0..n), "host:port" or "[v6]:port", at the colon
 * (the brackets are not part of host).  Nothing is checked but the
 * punctuation.  Returns ADDR_SPLIT_OK; otherwise the reason, with host set
 * when it was found (ADDR_SPLIT_NO_PORT, ADDR_SPLIT_COLONS) and, for
 * ADDR_SPLIT_COLONS, port from the first colon.
 */
int	addr_split(const char *s, size_t n, struct addr_span *host,
	    struct addr_span *port);

/* host:port for display and dialing, IPv6 names bracketed. */
void	addr_format(const struct hostinfo *h, char *out, size_t cap);

/*
 * "[r|t|u|ut|ur,]src,dst".  Without a prefix, and with "u", the forward is
 * reverse when default_reverse is set (the r-* modes); "u", "ut" and "ur"
 * forward UDP datagrams.  Returns 0, or -1 with err.
 */
int	fwd_parse(const char *s, int default_reverse, struct fwd *f, char *err);

/* True when two forwards are the same (for the override log). */
int	fwd_equal(const struct fwd *a, const struct fwd *b);

/*
 * "a.b.c.d[/n]" or "v6[/n]".  kptunnel reads /0 or no mask as a full-length
 * mask; so do we, for compatibility.  Returns 0, or -1 with err.
 */
int	cidr_parse(const char *s, struct cidr *c, char *err);

/* 1 if the socket address (v4, v6 or v4-mapped v6) is in the range. */
int	cidr_match(const struct cidr *c, const struct sockaddr *sa);

#endif
