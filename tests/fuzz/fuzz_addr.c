/*
 * libFuzzer target for the command-line grammars: addr_parse, fwd_parse
 * (join points included) and cidr_parse on the input as a C string, with invariants on what they
 * accept (formatted addresses and ranges parse back to the same value).
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "err.h"
#include "joinpt.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)	do { if (!(c)) __builtin_trap(); } while (0)

static void
fuzz_host(const struct hostinfo *h)
{
	struct hostinfo	 h2;
	char		 buf[ADDR_NAME_MAX + 16], err[ERR_LEN];

	CHECK(h->port >= 0 && h->port <= 65535);
	CHECK(strlen(h->name) < sizeof(h->name));
	CHECK(strlen(h->path) < sizeof(h->path));
	CHECK(strlen(h->query) < sizeof(h->query));
	CHECK(h->path[0] == '\0' || h->path[0] == '/');
	addr_format(h, buf, sizeof(buf));
	/* A join point (a forward's end, never an address) prints as it
	 * was written, and with nothing a path could use. */
	if (joinpt_name(h) != NULL) {
		CHECK(joinpt_parse(buf, strlen(buf), &h2, err) == 0);
		CHECK(strcmp(h->name, h2.name) == 0 && h2.port == 0);
		CHECK(strpbrk(joinpt_name(h), "/.") == NULL);
		return;
	}
	CHECK(addr_parse(buf, &h2, err) == 0);
	CHECK(strcmp(h->name, h2.name) == 0 && h->port == h2.port);
}

static void
fuzz_cidr(const char *s)
{
	static const uint8_t mapped[12] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff
	};
	struct sockaddr_in	 sin;
	struct sockaddr_in6	 sin6;
	struct cidr		 c, c2;
	char			 buf[INET6_ADDRSTRLEN + 8], err[ERR_LEN];
	size_t			 len;

	if (cidr_parse(s, &c, err) == -1)
		return;
	CHECK(c.family == AF_INET || c.family == AF_INET6);
	CHECK(c.bits > 0 && c.bits <= (c.family == AF_INET ? 32 : 128));

	/* The normalised range prints and parses back to itself. */
	CHECK(inet_ntop(c.family, c.addr, buf, sizeof(buf)) != NULL);
	len = strlen(buf);
	snprintf(buf + len, sizeof(buf) - len, "/%d", c.bits);
	CHECK(cidr_parse(buf, &c2, err) == 0);
	CHECK(memcmp(&c, &c2, sizeof(c)) == 0);

	/* An IPv4 peer and its v4-mapped form get the same answer. */
	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(0x0a010203);
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	memcpy(sin6.sin6_addr.s6_addr, mapped, 12);
	memcpy(sin6.sin6_addr.s6_addr + 12, &sin.sin_addr, 4);
	CHECK(cidr_match(&c, (struct sockaddr *)&sin) ==
	    cidr_match(&c, (struct sockaddr *)&sin6));
	/* A range always contains its own address. */
	if (c.family == AF_INET)
		memcpy(&sin.sin_addr, c.addr, 4);
	CHECK(c.family != AF_INET ||
	    cidr_match(&c, (struct sockaddr *)&sin));
	memcpy(sin6.sin6_addr.s6_addr, c.addr, 16);
	CHECK(c.family != AF_INET6 ||
	    cidr_match(&c, (struct sockaddr *)&sin6));
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct hostinfo	 h;
	struct fwd	 f;
	char		*s, err[ERR_LEN];
	int		 rev;

	if ((s = malloc(size + 1)) == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	if (addr_parse(s, &h, err) == 0)
		fuzz_host(&h);
	for (rev = 0; rev < 2; rev++) {
		if (fwd_parse(s, rev, &f, err) == -1)
			continue;
		CHECK(f.reverse == 0 || f.reverse == 1);
		CHECK(fwd_equal(&f, &f));
		fuzz_host(&f.src);
		fuzz_host(&f.dst);
	}
	fuzz_cidr(s);
	free(s);
	return 0;
}
