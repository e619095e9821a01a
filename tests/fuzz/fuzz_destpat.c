/*
 * libFuzzer target: destination patterns (the policy's and
 * -destinations' text) and their verdicts on hosts a peer names.  The
 * input is split at its first newline: a pattern list, then a host:port
 * to check against it.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "destpat.h"
#include "err.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)	do { if (!(c)) __builtin_trap(); } while (0)

static struct destpat_list l;

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct sockaddr_in	 sin;
	char			 err[ERR_LEN], *s, *host, *colon;
	size_t			 i;
	int			 port = 80, v;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';
	if ((host = strchr(s, '\n')) != NULL)
		*host++ = '\0';
	else
		host = s;
	destpat_list_free(&l);
	if (destpat_list_add(&l, s, err) == 0) {
		CHECK(l.n >= 1 && l.n <= DESTPAT_MAX);
		for (i = 0; i < l.n; i++) {
			CHECK(l.p[i].port_lo >= 1);
			CHECK(l.p[i].port_lo <= l.p[i].port_hi);
			CHECK(l.p[i].port_hi <= 65535);
			CHECK(strlen(l.p[i].glob) < sizeof(l.p[i].glob));
		}
	} else
		CHECK(l.n == 0);
	if ((colon = strrchr(host, ':')) != NULL) {
		*colon = '\0';
		port = atoi(colon + 1) & 0xffff;
	}
	v = destpat_check_name(&l, host, port);
	CHECK(v == DESTPAT_REFUSE || v == DESTPAT_ALLOW ||
	    v == DESTPAT_RESOLVE);
	/* An empty list refuses everything. */
	CHECK(l.n > 0 || v == DESTPAT_REFUSE);
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(0x7f000001);
	v = destpat_check_addr(&l, host, (struct sockaddr *)&sin, port);
	CHECK(v == DESTPAT_REFUSE || v == DESTPAT_ALLOW);
	free(s);
	return 0;
}
