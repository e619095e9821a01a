#ifndef DESTPAT_H
#define DESTPAT_H

/*
 * Destination patterns: which host:port a server dials for a stream whose
 * target is not one of the agreed forwards (a SOCKS5 or transparent
 * client's request).  A list of rules, the first that matches decides,
 * nothing matched is refused:
 *
 *	[!]HOST:PORTS
 *	HOST	*			any host, name or address
 *		name glob		letters, digits, - . _ and the
 *					wildcards * and ?; case-insensitive;
 *					matches names only, never an address
 *		a.b.c.d[/n]		IPv4 CIDR (no mask: /32; /0: all)
 *		[v6[/n]]		IPv6 CIDR (no mask: /128)
 *	PORTS	*  N  N-M		1..65535
 *	!			a match refuses instead of allowing
 *
 * A name is matched by globs before it is resolved, and each address it
 * resolves to by the CIDRs, so "!127.0.0.0/8:*" before "*:*" refuses a
 * name that resolves to loopback.  Pure: no I/O.
 */

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "addr.h"

#define DESTPAT_MAX	64	/* rules in a list */
#define DESTPAT_LEN	272	/* the text of one, NUL included */

enum destpat_kind {
	DESTPAT_ANY,		/* "*" */
	DESTPAT_GLOB,		/* a name glob */
	DESTPAT_CIDR		/* an address range */
};

struct destpat {
	int		 deny;
	enum destpat_kind kind;
	char		 glob[ADDR_NAME_MAX];	/* lower case */
	struct cidr	 cidr;
	int		 port_lo, port_hi;
};

/* Allocated as it grows: a worker's options hold one, mostly empty. */
struct destpat_list {
	size_t		 n;
	struct destpat	*p;		/* n of them; NULL when n is 0 */
};

/* What a list says of a destination. */
enum destpat_verdict {
	DESTPAT_REFUSE,
	DESTPAT_ALLOW,
	DESTPAT_RESOLVE		/* a name: decided by its addresses */
};

/* One pattern.  Returns 0, or -1 with err. */
int	destpat_parse(const char *s, struct destpat *p, char *err);

/*
 * Appends the comma-separated patterns of s to l (a zeroed list to start
 * with).  Returns 0, or -1 with err (a bad pattern, more than DESTPAT_MAX
 * in all, out of memory); l keeps what came before.
 */
int	destpat_list_add(struct destpat_list *l, const char *s, char *err);

/* Appends the one pattern s (commas are no separators), as above. */
int	destpat_list_add1(struct destpat_list *l, const char *s, char *err);

/* Frees what l holds; l is then an empty list. */
void	destpat_list_free(struct destpat_list *l);

/*
 * The verdict on host:port before any resolving: host is a name or an
 * address literal (IPv4 dotted quad, IPv6 without brackets).  A literal
 * is decided at once; a name is ALLOW or REFUSE when no CIDR rule could
 * change that, else RESOLVE.  An invalid host name is refused.
 */
enum destpat_verdict destpat_check_name(const struct destpat_list *l,
	    const char *host, int port);

/*
 * The verdict on host:port once host resolved to sa (IPv4, IPv6 or
 * v4-mapped IPv6): ALLOW or REFUSE.
 */
enum destpat_verdict destpat_check_addr(const struct destpat_list *l,
	    const char *host, const struct sockaddr *sa, int port);

/* 1 if the glob g (lower case) matches name (any case). */
int	destpat_glob(const char *g, const char *name);

#endif
