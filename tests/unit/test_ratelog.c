/*
 * ratelog_*: the rate limiter of peer-caused log lines, and peerkey_*:
 * the address a per-address limit counts (IPv4, or an IPv6 /64).
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "peerkey.h"
#include "ratelog.h"

static void
test_ratelog_burst_then_suppress(void **state)
{
	struct ratelog	r;
	unsigned long	n = 99;
	int		i;

	ratelog_init(&r, 3, 1000);
	for (i = 0; i < 3; i++) {
		assert_int_equal(ratelog_allow(&r, 100, &n), 1);
		assert_int_equal(n, 0);
	}
	for (i = 0; i < 1000; i++)
		assert_int_equal(ratelog_allow(&r, 100 + i, &n), 0);
	/* The next window: allowed, with the count of what was dropped. */
	assert_int_equal(ratelog_allow(&r, 1100, &n), 1);
	assert_int_equal(n, 1000);
	assert_int_equal(ratelog_allow(&r, 1101, &n), 1);
	assert_int_equal(n, 0);
}

static void
test_ratelog_take(void **state)
{
	struct ratelog r;

	ratelog_init(&r, 1, 1000);
	assert_int_equal(ratelog_allow(&r, 0, NULL), 1);
	assert_int_equal(ratelog_allow(&r, 1, NULL), 0);
	assert_int_equal(ratelog_allow(&r, 2, NULL), 0);
	assert_int_equal(ratelog_take(&r), 2);
	assert_int_equal(ratelog_take(&r), 0);
}

static void
test_ratelog_defaults_and_clock(void **state)
{
	struct ratelog	r;
	unsigned long	n;
	unsigned	i;

	ratelog_init(&r, 0, 0);
	assert_int_equal(r.burst, RATELOG_BURST);
	assert_int_equal(r.window_ms, RATELOG_WINDOW_MS);
	for (i = 0; i < RATELOG_BURST; i++)
		assert_int_equal(ratelog_allow(&r, 5000, NULL), 1);
	assert_int_equal(ratelog_allow(&r, 5001, NULL), 0);
	/* A clock that goes back starts a new window rather than stalling. */
	assert_int_equal(ratelog_allow(&r, 10, &n), 1);
	assert_int_equal(n, 1);
}

static void
key_of(struct peerkey *k, const char *ip)
{
	struct sockaddr_in	in;
	struct sockaddr_in6	in6;

	memset(&in, 0, sizeof(in));
	memset(&in6, 0, sizeof(in6));
	if (inet_pton(AF_INET, ip, &in.sin_addr) == 1) {
		in.sin_family = AF_INET;
		assert_int_equal(peerkey_from(k, (struct sockaddr *)&in), 0);
		return;
	}
	assert_int_equal(inet_pton(AF_INET6, ip, &in6.sin6_addr), 1);
	in6.sin6_family = AF_INET6;
	assert_int_equal(peerkey_from(k, (struct sockaddr *)&in6), 0);
}

static void
test_peerkey(void **state)
{
	struct peerkey		a, b;
	struct sockaddr_storage	ss;

	key_of(&a, "127.0.0.1");
	key_of(&b, "::ffff:127.0.0.1");
	assert_true(peerkey_eq(&a, &b));	/* dual-stack view of IPv4 */
	key_of(&b, "127.0.0.2");
	assert_false(peerkey_eq(&a, &b));
	key_of(&b, "::ffff:127.0.0.2");
	assert_false(peerkey_eq(&a, &b));
	/* One /64 is one address. */
	key_of(&a, "2001:db8:1:2::1");
	key_of(&b, "2001:db8:1:2:ffff:eeee:dddd:cccc");
	assert_true(peerkey_eq(&a, &b));
	key_of(&b, "2001:db8:1:3::1");
	assert_false(peerkey_eq(&a, &b));
	/* IPv4 0.0.0.0 and the IPv6 prefix :: do not meet. */
	key_of(&a, "0.0.0.0");
	key_of(&b, "::1");
	assert_false(peerkey_eq(&a, &b));
	/* Unknown families never compare equal, not even to each other. */
	memset(&ss, 0, sizeof(ss));
	ss.ss_family = AF_UNIX;
	assert_int_equal(peerkey_from(&a, (struct sockaddr *)&ss), -1);
	assert_int_equal(peerkey_from(&b, NULL), -1);
	assert_false(peerkey_eq(&a, &b));
}

/* The text form the dispatcher's per-address tables are keyed on. */
static void
test_peerkey_format(void **state)
{
	struct peerkey	k;
	char		out[64];

	key_of(&k, "::ffff:192.0.2.7");
	peerkey_format(&k, out, sizeof(out));
	assert_string_equal(out, "192.0.2.7");
	key_of(&k, "2001:db8:1:2:ffff:eeee:dddd:cccc");
	peerkey_format(&k, out, sizeof(out));
	assert_string_equal(out, "2001:db8:1:2::/64");
	assert_int_equal(peerkey_from(&k, NULL), -1);
	peerkey_format(&k, out, sizeof(out));
	assert_string_equal(out, "?");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ratelog_burst_then_suppress),
		cmocka_unit_test(test_ratelog_take),
		cmocka_unit_test(test_ratelog_defaults_and_clock),
		cmocka_unit_test(test_peerkey),
		cmocka_unit_test(test_peerkey_format),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
