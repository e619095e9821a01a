/*
 * SOCKS5 messages (socks5.h).  Every length is checked against the bytes
 * at hand before it is used; a message never needs more than
 * SOCKS5_MSG_MAX bytes, so a caller's buffer of that size bounds what a
 * client can make us hold.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stdio.h>
#include <string.h>

#include "err.h"
#include "socks5.h"

int
socks5_greeting(const uint8_t *p, size_t n, unsigned *offered, char *err)
{
	size_t	i, nm;

	*offered = 0;
	if (n < 1)
		return 0;
	if (p[0] != SOCKS5_VERSION) {
		err_set(err, "not SOCKS5 (version byte %u)", p[0]);
		return -1;
	}
	if (n < 2)
		return 0;
	if ((nm = p[1]) == 0) {
		err_set(err, "a greeting offering no method");
		return -1;
	}
	if (n < 2 + nm)
		return 0;
	for (i = 0; i < nm; i++)
		if (p[2 + i] < 32)
			*offered |= SOCKS5_OFFERS(p[2 + i]);
	return (int)(2 + nm);
}

void
socks5_method_reply(uint8_t out[2], int method)
{
	out[0] = SOCKS5_VERSION;
	out[1] = (uint8_t)method;
}

int
socks5_auth(const uint8_t *p, size_t n, char *user, char *pass, char *err)
{
	size_t	ulen, plen;

	user[0] = pass[0] = '\0';
	if (n < 1)
		return 0;
	if (p[0] != SOCKS5_AUTH_VERSION) {
		err_set(err, "username/password version %u, not 1", p[0]);
		return -1;
	}
	if (n < 2)
		return 0;
	ulen = p[1];
	if (n < 2 + ulen + 1)
		return 0;
	plen = p[2 + ulen];
	if (n < 3 + ulen + plen)
		return 0;
	if (memchr(p + 2, '\0', ulen) != NULL ||
	    memchr(p + 3 + ulen, '\0', plen) != NULL) {
		err_set(err, "a NUL in the username or password");
		return -1;
	}
	memcpy(user, p + 2, ulen);
	user[ulen] = '\0';
	memcpy(pass, p + 3 + ulen, plen);
	pass[plen] = '\0';
	return (int)(3 + ulen + plen);
}

void
socks5_auth_reply(uint8_t out[2], int ok)
{
	out[0] = SOCKS5_AUTH_VERSION;
	out[1] = ok ? 0x00 : 0x01;
}

/* A domain name a resolver takes as a name: letters, digits, - . _. */
static int
socks5_name_ok(const uint8_t *s, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		uint8_t c = s[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' ||
		    c == '_'))
			return 0;
	}
	return n > 0;
}

int
socks5_request(const uint8_t *p, size_t n, struct hostinfo *dst, int *rep,
    char *err)
{
	struct in6_addr	a6;
	size_t		alen, need;

	memset(dst, 0, sizeof(*dst));
	*rep = SOCKS5_REP_FAILURE;
	if (n < 1)
		return 0;
	if (p[0] != SOCKS5_VERSION) {
		err_set(err, "request of version %u", p[0]);
		return -1;
	}
	if (n < 2)
		return 0;
	if (p[1] != SOCKS5_CMD_CONNECT) {
		*rep = SOCKS5_REP_COMMAND;
		err_set(err, "command %u: only CONNECT is served", p[1]);
		return -1;
	}
	if (n < 4)
		return 0;
	switch (p[3]) {
	case SOCKS5_ATYP_IPV4:
		alen = 4;
		need = 4 + 4 + 2;
		break;
	case SOCKS5_ATYP_IPV6:
		alen = 16;
		need = 4 + 16 + 2;
		break;
	case SOCKS5_ATYP_NAME:
		if (n < 5)
			return 0;
		alen = p[4];
		need = 5 + alen + 2;
		break;
	default:
		*rep = SOCKS5_REP_ATYP;
		err_set(err, "address type %u", p[3]);
		return -1;
	}
	if (n < need)
		return 0;
	if (p[3] == SOCKS5_ATYP_IPV4)
		inet_ntop(AF_INET, p + 4, dst->name, sizeof(dst->name));
	else if (p[3] == SOCKS5_ATYP_IPV6)
		inet_ntop(AF_INET6, p + 4, dst->name, sizeof(dst->name));
	else {
		/*
		 * Never resolved here: the tunnel's server does it.  Some
		 * clients send an IPv6 literal as a name: taken as one.
		 */
		memcpy(dst->name, p + 5, alen);
		dst->name[alen] = '\0';
		if (memchr(p + 5, ':', alen) != NULL && memchr(p + 5, '\0',
		    alen) == NULL && inet_pton(AF_INET6, dst->name, &a6) == 1)
			goto port;
		if (!socks5_name_ok(p + 5, alen)) {
			*rep = SOCKS5_REP_HOST_UNREACH;
			memset(dst, 0, sizeof(*dst));
			err_set(err, "a host name that is not a DNS name");
			return -1;
		}
	}
 port:
	dst->port = (p[need - 2] << 8) | p[need - 1];
	return (int)need;
}

void
socks5_reply(uint8_t out[SOCKS5_REPLY_LEN], int rep)
{
	memset(out, 0, SOCKS5_REPLY_LEN);
	out[0] = SOCKS5_VERSION;
	out[1] = (uint8_t)rep;
	out[3] = SOCKS5_ATYP_IPV4;
}

int
socks5_rep_for(const char *m)
{
	static const struct {
		const char	*text;
		int		 rep;
	} map[] = {
		/* Dial errors as libuv (tunneld) and Go (kptunnel) word
		 * them; the first match wins. */
		{ "connection refused",		SOCKS5_REP_REFUSED },
		{ "network is unreachable",	SOCKS5_REP_NET_UNREACH },
		{ "host is unreachable",	SOCKS5_REP_HOST_UNREACH },
		{ "no route to host",		SOCKS5_REP_HOST_UNREACH },
		{ "unknown node or service",	SOCKS5_REP_HOST_UNREACH },
		{ "no such host",		SOCKS5_REP_HOST_UNREACH },
		{ "name or service not known",	SOCKS5_REP_HOST_UNREACH },
		{ "temporary failure",		SOCKS5_REP_HOST_UNREACH },
		{ "no address",			SOCKS5_REP_HOST_UNREACH },
		{ "timed out",			SOCKS5_REP_TTL },
		{ "timeout",			SOCKS5_REP_TTL },
	};
	size_t i;

	if (m == NULL)
		return SOCKS5_REP_FAILURE;
	for (i = 0; i < sizeof(map) / sizeof(map[0]); i++)
		if (strcasestr(m, map[i].text) != NULL)
			return map[i].rep;
	/* A tunneld server's refusal of the destination itself. */
	if (strncmp(m, "refused", 7) == 0)
		return SOCKS5_REP_NOT_ALLOWED;
	return SOCKS5_REP_FAILURE;
}
