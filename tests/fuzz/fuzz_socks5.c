/*
 * libFuzzer target: a SOCKS5 client's bytes (greeting, RFC 1929
 * sub-negotiation, request) as the -socks listener reads them, from every
 * offset, with invariants on what is accepted; and the reply code for a
 * refusal's text.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "addr.h"
#include "err.h"
#include "socks5.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)	do { if (!(c)) __builtin_trap(); } while (0)

/* A parser's result: within the input, and never more than a message. */
static void
check_len(int n, size_t size)
{
	CHECK(n >= -1);
	CHECK(n <= (int)size);
	CHECK(n <= SOCKS5_MSG_MAX);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char		 user[SOCKS5_CRED_MAX + 1], pass[SOCKS5_CRED_MAX + 1];
	char		 err[ERR_LEN], *text;
	struct hostinfo	 h;
	unsigned	 offered;
	size_t		 off = 0, i;
	int		 n, rep;

	/* The listener's order: greeting, maybe auth, request. */
	n = socks5_greeting(data, size, &offered, err);
	check_len(n, size);
	if (n > 0) {
		off = (size_t)n;
		n = socks5_auth(data + off, size - off, user, pass, err);
		check_len(n, size - off);
		if (n > 0) {
			CHECK(strlen(user) <= SOCKS5_CRED_MAX);
			CHECK(strlen(pass) <= SOCKS5_CRED_MAX);
			off += (size_t)n;
		}
	}
	n = socks5_request(data + off, size - off, &h, &rep, err);
	check_len(n, size - off);
	if (n > 0) {
		CHECK(h.port >= 0 && h.port <= 65535);
		CHECK(strlen(h.name) > 0 && strlen(h.name) < sizeof(h.name));
		for (i = 0; h.name[i] != '\0'; i++)
			CHECK(h.name[i] > 0x20 && h.name[i] < 0x7f);
	} else if (n == -1)
		CHECK(rep >= SOCKS5_REP_FAILURE && rep <= SOCKS5_REP_ATYP);
	if ((text = malloc(size + 1)) != NULL) {
		memcpy(text, data, size);
		text[size] = '\0';
		rep = socks5_rep_for(text);
		CHECK(rep >= SOCKS5_REP_FAILURE && rep <= SOCKS5_REP_TTL);
		free(text);
	}
	return 0;
}
