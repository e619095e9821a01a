#ifndef JOINPT_H
#define JOINPT_H

/*
 * Join points: a tenant's named meeting places on a dispatcher's host
 * (docs/operations.md, "Joining two clients").  A forward names one as
 * "join:NAME" where its server's end would name a host and port: the Src
 * of an r forward (the worker offers the point: a client's service behind
 * it) or the Dst of a t forward (the worker reaches the point).  Each
 * tenant has its own names; the dispatcher resolves them, never a client.
 *
 * In memory and on the wire (kptunnel's HostInfo) a join point is the
 * name "join:NAME" with port 0: no host name or IP literal has that
 * shape, so a Go peer carries it through untouched.
 */

#include <stddef.h>

#include "addr.h"

#define JOINPT_PREFIX		"join:"
#define JOINPT_PREFIX_LEN	5
/*
 * NAME: 1..JOINPT_NAME_MAX of [A-Za-z0-9_-], a letter or '_' first (a
 * digit first is kptunnel's host "join" and a port).  A file name as it
 * is.
 */
#define JOINPT_NAME_MAX		32

/* Whether s[0..n) is written as a join point ("join:" first, any case,
 * and no digit after it: the caller parses it with joinpt_parse, which
 * refuses a bad one). */
int		 joinpt_is(const char *s, size_t n);

/* Whether name[0..n) is a valid NAME. */
int		 joinpt_name_ok(const char *name, size_t n);

/*
 * "join:NAME" (s[0..n), lower-case prefix) into h: name "join:NAME",
 * port 0, no path or query.  Returns 0, or -1 with err.
 */
int		 joinpt_parse(const char *s, size_t n, struct hostinfo *h,
		    char *err);

/* The NAME of h if h is a join point (as joinpt_parse makes one), else
 * NULL. */
const char	*joinpt_name(const struct hostinfo *h);

#endif
