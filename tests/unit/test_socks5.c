/*
 * socks5_*: the SOCKS5 messages of a local listener (RFC 1928, RFC 1929)
 * byte by byte, partial input, hostile input, and the reply codes for a
 * tunnel's refusals.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "socks5.h"

/* Every proper prefix of a message needs more; the whole is consumed. */
static void
prefixes(const uint8_t *m, size_t n,
    int (*parse)(const uint8_t *, size_t, void *, char *), void *arg)
{
	char	err[ERR_LEN];
	size_t	i;

	for (i = 0; i < n; i++)
		if (parse(m, i, arg, err) != 0)
			fail_msg("prefix of %zu of %zu bytes: not 0", i, n);
	assert_int_equal(parse(m, n, arg, err), (int)n);
}

static int
greeting(const uint8_t *p, size_t n, void *arg, char *err)
{
	return socks5_greeting(p, n, arg, err);
}

static int
request(const uint8_t *p, size_t n, void *arg, char *err)
{
	int rep;

	return socks5_request(p, n, arg, &rep, err);
}

static void
test_greeting(void **state)
{
	static const uint8_t g[] = { 5, 3, 0, 2, 0x80 }, extra[] = { 5, 1, 0,
	    5, 1, 0, 1 };
	unsigned	offered;
	char		err[ERR_LEN];
	uint8_t		r[2];

	prefixes(g, sizeof(g), greeting, &offered);
	assert_int_equal(offered, SOCKS5_OFFERS(0) | SOCKS5_OFFERS(2));
	/* A pipelined request is left for the next parser. */
	assert_int_equal(socks5_greeting(extra, sizeof(extra), &offered, err),
	    3);
	assert_int_equal(socks5_greeting((const uint8_t *)"\x04\x01", 2,
	    &offered, err), -1);
	assert_non_null(strstr(err, "not SOCKS5"));
	assert_int_equal(socks5_greeting((const uint8_t *)"GET / HTTP/1.1",
	    14, &offered, err), -1);
	assert_int_equal(socks5_greeting((const uint8_t *)"\x05\x00", 2,
	    &offered, err), -1);
	socks5_method_reply(r, SOCKS5_M_REFUSED);
	assert_memory_equal(r, "\x05\xff", 2);
}

static void
test_auth(void **state)
{
	static const uint8_t a[] = { 1, 5, 'a', 'l', 'i', 'c', 'e', 3, 'p',
	    ':', 'w' };
	char	user[SOCKS5_CRED_MAX + 1], pass[SOCKS5_CRED_MAX + 1];
	char	err[ERR_LEN];
	uint8_t	m[3 + 2 * 255], r[2];
	size_t	i;

	for (i = 0; i < sizeof(a); i++)
		assert_int_equal(socks5_auth(a, i, user, pass, err), 0);
	assert_int_equal(socks5_auth(a, sizeof(a), user, pass, err),
	    (int)sizeof(a));
	assert_string_equal(user, "alice");
	assert_string_equal(pass, "p:w");
	/* The longest: 255 and 255. */
	m[0] = 1;
	m[1] = 255;
	memset(m + 2, 'u', 255);
	m[257] = 255;
	memset(m + 258, 'p', 255);
	assert_int_equal(socks5_auth(m, sizeof(m), user, pass, err),
	    (int)sizeof(m));
	assert_int_equal(strlen(user), 255);
	assert_int_equal(strlen(pass), 255);
	/* An empty password parses (it never matches: the file's is not). */
	assert_int_equal(socks5_auth((const uint8_t *)"\x01\x01u\x00", 4,
	    user, pass, err), 4);
	assert_string_equal(pass, "");
	assert_int_equal(socks5_auth((const uint8_t *)"\x05\x01u\x01p", 5,
	    user, pass, err), -1);
	assert_int_equal(socks5_auth((const uint8_t *)"\x01\x02u\x00\x01p",
	    6, user, pass, err), -1);
	assert_non_null(strstr(err, "NUL"));
	socks5_auth_reply(r, 0);
	assert_memory_equal(r, "\x01\x01", 2);
	socks5_auth_reply(r, 1);
	assert_memory_equal(r, "\x01\x00", 2);
}

static void
test_request(void **state)
{
	static const uint8_t v4[] = { 5, 1, 0, 1, 127, 0, 0, 1, 0x1f, 0x90 };
	static const uint8_t v6[] = { 5, 1, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	    0, 0, 0, 0, 0, 0, 1, 0, 80 };
	static const uint8_t nm[] = { 5, 1, 0, 3, 11, 'e', 'x', 'a', 'm',
	    'p', 'l', 'e', '.', 'c', 'o', 'm', 1, 187 };
	struct hostinfo	h;
	char		err[ERR_LEN];
	uint8_t		m[300], r[SOCKS5_REPLY_LEN];
	int		rep;

	prefixes(v4, sizeof(v4), request, &h);
	assert_string_equal(h.name, "127.0.0.1");
	assert_int_equal(h.port, 8080);
	prefixes(v6, sizeof(v6), request, &h);
	assert_string_equal(h.name, "::1");
	assert_int_equal(h.port, 80);
	prefixes(nm, sizeof(nm), request, &h);
	assert_string_equal(h.name, "example.com");
	assert_int_equal(h.port, 443);
	/* The longest name. */
	memcpy(m, "\x05\x01\x00\x03\xff", 5);
	memset(m + 5, 'a', 255);
	m[260] = 0;
	m[261] = 1;
	assert_int_equal(socks5_request(m, 262, &h, &rep, err), 262);
	assert_int_equal(strlen(h.name), 255);
	/* An IPv6 literal sent as a name is one; other colons are not. */
	memcpy(m, "\x05\x01\x00\x03\x03::1\x00\x50", 10);
	assert_int_equal(socks5_request(m, 10, &h, &rep, err), 10);
	assert_string_equal(h.name, "::1");
	assert_int_equal(h.port, 80);
	/* BIND and UDP ASSOCIATE: "command not supported". */
	assert_int_equal(socks5_request((const uint8_t *)"\x05\x02", 2, &h,
	    &rep, err), -1);
	assert_int_equal(rep, SOCKS5_REP_COMMAND);
	assert_int_equal(socks5_request((const uint8_t *)"\x05\x03\x00\x01",
	    4, &h, &rep, err), -1);
	assert_int_equal(rep, SOCKS5_REP_COMMAND);
	assert_int_equal(socks5_request((const uint8_t *)"\x05\x01\x00\x07",
	    4, &h, &rep, err), -1);
	assert_int_equal(rep, SOCKS5_REP_ATYP);
	assert_int_equal(socks5_request((const uint8_t *)"\x04\x01", 2, &h,
	    &rep, err), -1);
	assert_int_equal(rep, SOCKS5_REP_FAILURE);
	/* Names that are no DNS names never reach the tunnel. */
	assert_int_equal(socks5_request(
	    (const uint8_t *)"\x05\x01\x00\x03\x03" "a\x00" "b\x00\x50", 10,
	    &h, &rep, err), -1);
	assert_int_equal(rep, SOCKS5_REP_HOST_UNREACH);
	assert_int_equal(socks5_request(
	    (const uint8_t *)"\x05\x01\x00\x03\x03" "a:b\x00\x50", 10, &h,
	    &rep, err), -1);
	assert_int_equal(socks5_request(
	    (const uint8_t *)"\x05\x01\x00\x03\x00\x00\x50", 7, &h, &rep,
	    err), -1);
	assert_int_equal(rep, SOCKS5_REP_HOST_UNREACH);
	socks5_reply(r, SOCKS5_REP_NOT_ALLOWED);
	assert_memory_equal(r, "\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00",
	    SOCKS5_REPLY_LEN);
}

static void
test_reply_codes(void **state)
{
	assert_int_equal(socks5_rep_for("refused: destination not allowed"),
	    SOCKS5_REP_NOT_ALLOWED);
	assert_int_equal(socks5_rep_for("refused: not in the forward list"),
	    SOCKS5_REP_NOT_ALLOWED);
	/* tunneld's dial errors (libuv's words) */
	assert_int_equal(socks5_rep_for("dial tcp 127.0.0.1:1: connection "
	    "refused"), SOCKS5_REP_REFUSED);
	assert_int_equal(socks5_rep_for("dial tcp x:1: unknown node or "
	    "service"), SOCKS5_REP_HOST_UNREACH);
	assert_int_equal(socks5_rep_for("dial tcp 10.0.0.1:1: host is "
	    "unreachable"), SOCKS5_REP_HOST_UNREACH);
	assert_int_equal(socks5_rep_for("dial tcp 10.0.0.1:1: network is "
	    "unreachable"), SOCKS5_REP_NET_UNREACH);
	assert_int_equal(socks5_rep_for("dial tcp 10.0.0.1:1: connection "
	    "timed out"), SOCKS5_REP_TTL);
	/* Go kptunnel's */
	assert_int_equal(socks5_rep_for("dial tcp 127.0.0.1:1: connect: "
	    "connection refused"), SOCKS5_REP_REFUSED);
	assert_int_equal(socks5_rep_for("dial tcp: lookup nx.invalid: no such "
	    "host"), SOCKS5_REP_HOST_UNREACH);
	assert_int_equal(socks5_rep_for("dial tcp 10.0.0.1:1: connect: no "
	    "route to host"), SOCKS5_REP_HOST_UNREACH);
	assert_int_equal(socks5_rep_for("dial tcp 10.0.0.1:1: i/o timeout"),
	    SOCKS5_REP_TTL);
	/* ours: no answer in -openTimeout */
	assert_int_equal(socks5_rep_for("timed out"), SOCKS5_REP_TTL);
	/* limits and the rest */
	assert_int_equal(socks5_rep_for("too many streams"),
	    SOCKS5_REP_FAILURE);
	assert_int_equal(socks5_rep_for(""), SOCKS5_REP_FAILURE);
	assert_int_equal(socks5_rep_for(NULL), SOCKS5_REP_FAILURE);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_greeting),
		cmocka_unit_test(test_auth),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_reply_codes),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
