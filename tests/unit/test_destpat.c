/*
 * destpat_*: destination patterns, their syntax and their verdicts, with
 * the tricks a tenant would try (case, a trailing dot, numeric spellings
 * of loopback, a name resolving to a refused address).
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "destpat.h"
#include "err.h"

static struct destpat_list l;

static void
list(const char *s)
{
	char err[ERR_LEN];

	destpat_list_free(&l);
	if (destpat_list_add(&l, s, err) == -1)
		fail_msg("%s: %s", s, err);
}

static struct sockaddr_storage ss;

static const struct sockaddr *
sa(const char *a)
{
	struct sockaddr_in	*sin = (struct sockaddr_in *)&ss;
	struct sockaddr_in6	*sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, a, &sin->sin_addr) == 1)
		sin->sin_family = AF_INET;
	else {
		assert_int_equal(inet_pton(AF_INET6, a, &sin6->sin6_addr), 1);
		sin6->sin6_family = AF_INET6;
	}
	return (struct sockaddr *)&ss;
}

static void
test_parse(void **state)
{
	struct destpat	p;
	char		err[ERR_LEN];

	assert_int_equal(destpat_parse("*:*", &p, err), 0);
	assert_int_equal(p.kind, DESTPAT_ANY);
	assert_int_equal(p.port_lo, 1);
	assert_int_equal(p.port_hi, 65535);
	assert_int_equal(destpat_parse("!*.Example.COM.:443", &p, err), 0);
	assert_int_equal(p.deny, 1);
	assert_int_equal(p.kind, DESTPAT_GLOB);
	assert_string_equal(p.glob, "*.example.com");
	assert_int_equal(p.port_lo, 443);
	assert_int_equal(p.port_hi, 443);
	assert_int_equal(destpat_parse("10.0.0.0/8:1000-2000", &p, err), 0);
	assert_int_equal(p.kind, DESTPAT_CIDR);
	assert_int_equal(p.cidr.bits, 8);
	assert_int_equal(p.port_lo, 1000);
	assert_int_equal(p.port_hi, 2000);
	assert_int_equal(destpat_parse("10.1.2.3:80", &p, err), 0);
	assert_int_equal(p.cidr.bits, 32);
	/* Unlike -ip, /0 is everything. */
	assert_int_equal(destpat_parse("0.0.0.0/0:80", &p, err), 0);
	assert_int_equal(p.cidr.bits, 0);
	assert_int_equal(destpat_parse("[::1]:22", &p, err), 0);
	assert_int_equal(p.kind, DESTPAT_CIDR);
	assert_int_equal(p.cidr.family, AF_INET6);
	assert_int_equal(p.cidr.bits, 128);
	assert_int_equal(destpat_parse("[fd00::/8]:*", &p, err), 0);
	assert_int_equal(p.cidr.bits, 8);
	assert_int_equal(destpat_parse("db?.internal:5432", &p, err), 0);
}

static void
bad(const char *s, const char *why)
{
	struct destpat	p;
	char		err[ERR_LEN] = "";

	if (destpat_parse(s, &p, err) != -1)
		fail_msg("accepted: %s", s);
	if (strstr(err, why) == NULL)
		fail_msg("%s: '%s' lacks '%s'", s, err, why);
}

static void
test_parse_errors(void **state)
{
	struct destpat_list	big;
	char			err[ERR_LEN], s[DESTPAT_MAX * 8 + 16];
	size_t			i, n = 0;

	bad("", "need HOST:PORTS");
	bad("example.com", "need HOST:PORTS");
	bad("example.com:", "ports must be");
	bad("example.com:0", "ports must be");
	bad("example.com:65536", "ports must be");
	bad("example.com:90-80", "ports must be");
	bad("example.com:-80", "ports must be");
	bad("example.com:8x", "ports must be");
	bad("exa mple.com:80", "invalid character");
	bad("exa/mple.com:80", "invalid IPv4");
	bad("10.0.0.0/33:80", "mask length");
	bad("10.0.0.0/:80", "mask length");
	bad("10.0.0.0/1a:80", "mask length");
	bad("::1:80", "in brackets");
	bad("[::1:80", "need [IPv6");
	bad("[::1]80", "need [IPv6");
	bad("[10.0.0.1]:80", "invalid IPv6");
	bad("[::/129]:80", "mask length");
	bad(":80", "host must be");
	bad("!!*:80", "invalid character");
	/* A list is all or nothing, and bounded. */
	memset(&big, 0, sizeof(big));
	assert_int_equal(destpat_list_add(&big, "*:1,*:x", err), -1);
	assert_int_equal(big.n, 0);
	for (i = 0; i <= DESTPAT_MAX; i++)
		n += (size_t)snprintf(s + n, sizeof(s) - n, "%s*:%zu",
		    i ? "," : "", i + 1);
	assert_int_equal(destpat_list_add(&big, s, err), -1);
	assert_non_null(strstr(err, "more than"));
	assert_int_equal(big.n, 0);
	/* One pattern: a comma is no separator, so no pattern at all. */
	assert_int_equal(destpat_list_add1(&big, "*:1,*:2", err), -1);
	assert_int_equal(destpat_list_add1(&big, "*:1", err), 0);
	assert_int_equal(big.n, 1);
	destpat_list_free(&big);
}

static void
test_glob(void **state)
{
	assert_true(destpat_glob("*.example.com", "www.example.com"));
	assert_true(destpat_glob("*.example.com", "a.b.EXAMPLE.com"));
	assert_false(destpat_glob("*.example.com", "example.com"));
	assert_false(destpat_glob("*.example.com", "evil-example.com"));
	assert_false(destpat_glob("*.example.com", "www.example.com.evil"));
	assert_true(destpat_glob("db?", "db1"));
	assert_false(destpat_glob("db?", "db"));
	assert_true(destpat_glob("a*b*c", "aXXbYYc"));
	assert_false(destpat_glob("a*b*c", "aXXbYY"));
	assert_true(destpat_glob("**", ""));
	assert_true(destpat_glob("x", "X"));
}

static void
test_names(void **state)
{
	list("!secret.example.com:*,*.example.com:443,example.org:80-81");
	assert_int_equal(destpat_check_name(&l, "www.example.com", 443),
	    DESTPAT_ALLOW);
	assert_int_equal(destpat_check_name(&l, "WWW.Example.Com.", 443),
	    DESTPAT_ALLOW);
	assert_int_equal(destpat_check_name(&l, "www.example.com", 80),
	    DESTPAT_REFUSE);
	assert_int_equal(destpat_check_name(&l, "secret.example.com", 443),
	    DESTPAT_REFUSE);
	/* Case and the trailing dot do not get past a refusal. */
	assert_int_equal(destpat_check_name(&l, "SECRET.example.com.", 443),
	    DESTPAT_REFUSE);
	assert_int_equal(destpat_check_name(&l, "example.org", 81),
	    DESTPAT_ALLOW);
	assert_int_equal(destpat_check_name(&l, "example.org", 82),
	    DESTPAT_REFUSE);
	/* Not names: refused whatever the rules. */
	list("*:*");
	assert_int_equal(destpat_check_name(&l, "", 80), DESTPAT_REFUSE);
	assert_int_equal(destpat_check_name(&l, "a b", 80), DESTPAT_REFUSE);
	assert_int_equal(destpat_check_name(&l, "a..b", 80), DESTPAT_REFUSE);
	assert_int_equal(destpat_check_name(&l, ".a", 80), DESTPAT_REFUSE);
	assert_int_equal(destpat_check_name(&l, "fe80::1%eth0", 80),
	    DESTPAT_REFUSE);
	assert_int_equal(destpat_check_name(&l, "a/b", 80), DESTPAT_REFUSE);
	assert_int_equal(destpat_check_name(&l, "ok.example", 80),
	    DESTPAT_ALLOW);
	/* An empty list refuses everything. */
	destpat_list_free(&l);
	assert_int_equal(destpat_check_name(&l, "ok.example", 80),
	    DESTPAT_REFUSE);
	assert_int_equal(destpat_check_addr(&l, "10.0.0.1", sa("10.0.0.1"),
	    80), DESTPAT_REFUSE);
}

static void
test_addresses(void **state)
{
	list("!127.0.0.0/8:*,![::1]:*,10.0.0.0/8:80,[fd00::/8]:80,*:443");
	/* Literals are decided at once. */
	assert_int_equal(destpat_check_name(&l, "10.1.2.3", 80),
	    DESTPAT_ALLOW);
	assert_int_equal(destpat_check_name(&l, "10.1.2.3", 81),
	    DESTPAT_REFUSE);
	assert_int_equal(destpat_check_name(&l, "127.0.0.1", 443),
	    DESTPAT_REFUSE);
	assert_int_equal(destpat_check_name(&l, "::1", 443), DESTPAT_REFUSE);
	assert_int_equal(destpat_check_name(&l, "fd12::5", 80),
	    DESTPAT_ALLOW);
	assert_int_equal(destpat_check_name(&l, "8.8.8.8", 443),
	    DESTPAT_ALLOW);
	/* A name: the addresses decide. */
	assert_int_equal(destpat_check_name(&l, "example.com", 443),
	    DESTPAT_RESOLVE);
	assert_int_equal(destpat_check_addr(&l, "example.com",
	    sa("127.0.0.1"), 443), DESTPAT_REFUSE);
	assert_int_equal(destpat_check_addr(&l, "example.com",
	    sa("93.184.216.34"), 443), DESTPAT_ALLOW);
	/* "127.1" is a name to the rules, loopback to the resolver: its
	 * address is refused; so is a v4-mapped spelling. */
	assert_int_equal(destpat_check_addr(&l, "127.1", sa("127.0.0.1"),
	    443), DESTPAT_REFUSE);
	assert_int_equal(destpat_check_addr(&l, "x", sa("::ffff:127.0.0.1"),
	    443), DESTPAT_REFUSE);
	assert_int_equal(destpat_check_addr(&l, "::ffff:127.0.0.1",
	    sa("::ffff:127.0.0.1"), 443), DESTPAT_REFUSE);
	/* A name on a port only CIDRs allow: resolved, then decided. */
	assert_int_equal(destpat_check_name(&l, "intranet", 80),
	    DESTPAT_RESOLVE);
	assert_int_equal(destpat_check_addr(&l, "intranet", sa("10.9.9.9"),
	    80), DESTPAT_ALLOW);
	assert_int_equal(destpat_check_addr(&l, "intranet", sa("11.0.0.1"),
	    80), DESTPAT_REFUSE);
	/* A port no rule names: refused before resolving. */
	assert_int_equal(destpat_check_name(&l, "intranet", 22),
	    DESTPAT_REFUSE);
	/* Globs never match addresses. */
	list("10.*:80");
	assert_int_equal(destpat_check_name(&l, "10.0.0.1", 80),
	    DESTPAT_REFUSE);
	/* First match wins: an allow before a refusal. */
	list("*.example.com:443,!127.0.0.0/8:*");
	assert_int_equal(destpat_check_addr(&l, "a.example.com",
	    sa("127.0.0.1"), 443), DESTPAT_ALLOW);
	/* /0 of either family is every address. */
	list("0.0.0.0/0:80");
	assert_int_equal(destpat_check_name(&l, "1.2.3.4", 80),
	    DESTPAT_ALLOW);
	assert_int_equal(destpat_check_name(&l, "::1", 80), DESTPAT_REFUSE);
	list("[::/0]:80");
	assert_int_equal(destpat_check_name(&l, "::1", 80), DESTPAT_ALLOW);
	destpat_list_free(&l);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse),
		cmocka_unit_test(test_parse_errors),
		cmocka_unit_test(test_glob),
		cmocka_unit_test(test_names),
		cmocka_unit_test(test_addresses),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
