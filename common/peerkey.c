/*
 * Address keys for per-address limits.  See peerkey.h.
 */

#include <netinet/in.h>
#include <string.h>

#include "peerkey.h"

int
peerkey_from(struct peerkey *k, const struct sockaddr *sa)
{
	static const uint8_t mapped[12] = { 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0xff, 0xff };
	const uint8_t	*a6;

	memset(k, 0, sizeof(*k));
	if (sa == NULL)
		return -1;
	if (sa->sa_family == AF_INET) {
		memcpy(k->b, &((const struct sockaddr_in *)sa)->sin_addr, 4);
		k->len = 4;
		return 0;
	}
	if (sa->sa_family != AF_INET6)
		return -1;
	a6 = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
	if (memcmp(a6, mapped, sizeof(mapped)) == 0) {
		memcpy(k->b, a6 + 12, 4);
		k->len = 4;
		return 0;
	}
	memcpy(k->b, a6, 8);
	k->len = 8;
	return 0;
}

int
peerkey_eq(const struct peerkey *a, const struct peerkey *b)
{
	return a->len != 0 && a->len == b->len &&
	    memcmp(a->b, b->b, a->len) == 0;
}
