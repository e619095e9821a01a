/*
 * A -transparent listener's connections: a firewall redirected them here
 * (iptables -t nat ... -j REDIRECT), and netfilter remembers where each
 * was going (SO_ORIGINAL_DST, IP6T_SO_ORIGINAL_DST).  Each becomes a CITI
 * to that address; the tunnel's server decides whether it dials it (its
 * destination patterns).  A connection that was not redirected (its
 * original destination is this listener) is closed: it names no target.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "mux_int.h"
#include "tunneld.h"

/* <linux/netfilter_ipv4.h>, <linux/netfilter_ipv6/ip6_tables.h> */
#ifndef SO_ORIGINAL_DST
#define SO_ORIGINAL_DST		80
#endif
#ifndef IP6T_SO_ORIGINAL_DST
#define IP6T_SO_ORIGINAL_DST	80
#endif

/* ss as an IPv6 address (IPv4 v4-mapped) and a port, for comparing. */
static void
tproxy_key(const struct sockaddr_storage *ss, uint8_t a[16], uint16_t *port)
{
	const struct sockaddr_in	*sin = (const struct sockaddr_in *)ss;
	const struct sockaddr_in6	*sin6 =
	    (const struct sockaddr_in6 *)ss;

	memset(a, 0, 16);
	*port = 0;
	if (ss->ss_family == AF_INET) {
		a[10] = a[11] = 0xff;
		memcpy(a + 12, &sin->sin_addr, 4);
		*port = sin->sin_port;
	} else if (ss->ss_family == AF_INET6) {
		memcpy(a, &sin6->sin6_addr, 16);
		*port = sin6->sin6_port;
	}
}

/*
 * The original destination of the connection on fd into dst (its address
 * as text).  Returns 0, or -1 with why.
 */
static int
tproxy_original_dst(int fd, struct hostinfo *dst, char *why, size_t len)
{
	struct sockaddr_storage	 local, orig;
	socklen_t		 sl = sizeof(local), ol = sizeof(orig);
	uint8_t			 la[16], oa[16];
	uint16_t		 lp, op;
	int			 rc;

	memset(dst, 0, sizeof(*dst));
	memset(&orig, 0, sizeof(orig));
	if (getsockname(fd, (struct sockaddr *)&local, &sl) == -1) {
		snprintf(why, len, "getsockname: %s", strerror(errno));
		return -1;
	}
	tproxy_key(&local, la, &lp);
	/* An IPv4 connection on a dual-stack socket is netfilter's IPv4. */
	if (IN6_IS_ADDR_V4MAPPED((struct in6_addr *)la))
		rc = getsockopt(fd, SOL_IP, SO_ORIGINAL_DST, &orig, &ol);
	else
		rc = getsockopt(fd, SOL_IPV6, IP6T_SO_ORIGINAL_DST, &orig,
		    &ol);
	if (rc == -1) {
		snprintf(why, len, "no original destination (%s): not "
		    "redirected to this port", strerror(errno));
		return -1;
	}
	tproxy_key(&orig, oa, &op);
	if (orig.ss_family != AF_INET && orig.ss_family != AF_INET6) {
		snprintf(why, len, "original destination of family %d",
		    orig.ss_family);
		return -1;
	}
	if (memcmp(la, oa, 16) == 0 && lp == op) {
		snprintf(why, len, "a connection to the listener itself, not "
		    "redirected");
		return -1;
	}
	if (orig.ss_family == AF_INET)
		inet_ntop(AF_INET, oa + 12, dst->name, sizeof(dst->name));
	else
		inet_ntop(AF_INET6, oa, dst->name, sizeof(dst->name));
	dst->port = ntohs(op);
	return 0;
}

void
tproxy_accept(struct sess *s, uv_stream_t *server)
{
	struct citi	*ci;
	uv_os_fd_t	 fd;
	struct hostinfo	 dst;
	char		 why[160], host[ADDR_NAME_MAX + 16];

	if (s->nciti >= TUN_MAX_CITIS) {
		mux_accept_refuse(s, server, "too many open streams");
		return;
	}
	if (sess_lim_open(s, why, sizeof(why)) == -1) {
		mux_accept_refuse(s, server, why);
		return;
	}
	if ((ci = mux_citi_new(s, mux_next_id(s), CITI_OPENING)) == NULL)
		return;
	if (uv_accept(server, (uv_stream_t *)&ci->tcp) < 0) {
		mux_citi_event(ci, CITI_EV_ABORT);
		return;
	}
	if (uv_fileno((uv_handle_t *)&ci->tcp, &fd) != 0 ||
	    tproxy_original_dst(fd, &dst, why, sizeof(why)) == -1) {
		mux_peer_warn(s, "transparent: %s: connection closed", why);
		mux_citi_event(ci, CITI_EV_ABORT);
		return;
	}
	uv_tcp_nodelay(&ci->tcp, 1);
	if (mux_announce(ci, &dst, 0) == -1) {
		mux_citi_event(ci, CITI_EV_ABORT);
		return;
	}
	addr_format(&dst, host, sizeof(host));
	log_debug("session %" PRId64 ": citi %08" PRIx32 ": transparent: "
	    "to %s", s->id, ci->id, host);
}
