/*
 * Address keys for per-address limits.  See peerkey.h.
 */

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
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

void
peerkey_format(const struct peerkey *k, char *out, size_t cap)
{
	struct in6_addr	a6;
	char		txt[INET6_ADDRSTRLEN];

	snprintf(out, cap, "?");
	if (k->len == 4 && inet_ntop(AF_INET, k->b, txt, sizeof(txt)) != NULL)
		snprintf(out, cap, "%s", txt);
	else if (k->len == 8) {
		memset(&a6, 0, sizeof(a6));
		memcpy(a6.s6_addr, k->b, 8);
		if (inet_ntop(AF_INET6, &a6, txt, sizeof(txt)) != NULL)
			snprintf(out, cap, "%s/64", txt);
	}
}
