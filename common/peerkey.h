#ifndef PEERKEY_H
#define PEERKEY_H

/*
 * The "address" a per-address limit counts: an IPv4 address, or the /64
 * of an IPv6 address (one host usually holds a whole /64, so counting
 * single IPv6 addresses would be no limit at all).  IPv4-mapped IPv6
 * addresses (a dual-stack listener's view of IPv4 peers) count as the
 * IPv4 address.
 */

#include <sys/socket.h>
#include <stddef.h>
#include <stdint.h>

struct peerkey {
	uint8_t	len;		/* 0: unknown family, 4, or 8 */
	uint8_t	b[8];
};

/* Fills k from sa; returns 0, or -1 (k zeroed) for another family. */
int	peerkey_from(struct peerkey *k, const struct sockaddr *sa);
int	peerkey_eq(const struct peerkey *a, const struct peerkey *b);
/*
 * Writes k as text into out (cap bytes): "a.b.c.d", "x:x:x:x::/64", or
 * "?" for an unknown family.
 */
void	peerkey_format(const struct peerkey *k, char *out, size_t cap);

#endif
