/*
 * tbucket_*: the token bucket of the per-tenant rate limits.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "tbucket.h"

static void
test_tbucket_unlimited(void **state)
{
	struct tbucket b;

	tbucket_init(&b, 0, 0, 0);
	assert_int_equal(tbucket_limited(&b), 0);
	tbucket_spend(&b, 1LL << 40);
	assert_true(tbucket_avail(&b, 0) > 0);
	assert_int_equal(tbucket_take(&b, 0, 1000000), 1);
	assert_int_equal(tbucket_wait_ms(&b, 0), 0);
}

static void
test_tbucket_starts_full_and_caps(void **state)
{
	struct tbucket b;

	tbucket_init(&b, 1000, 0, 5000);	/* burst: one second */
	assert_int_equal(tbucket_limited(&b), 1);
	assert_int_equal(tbucket_avail(&b, 5000), 1000);
	/* Idle time never saves more than the burst. */
	assert_int_equal(tbucket_avail(&b, 900000), 1000);
	tbucket_init(&b, 1000, 10, 0);
	assert_int_equal(tbucket_avail(&b, 60000), 10);
}

/* Spending into debt waits until the debt is paid at the rate. */
static void
test_tbucket_debt_and_wait(void **state)
{
	struct tbucket b;

	tbucket_init(&b, 1000, 100, 0);		/* 1 token a ms */
	tbucket_spend(&b, 600);			/* 100 - 600 = -500 */
	assert_int_equal(tbucket_avail(&b, 0), -500);
	assert_int_equal(tbucket_wait_ms(&b, 0), 501);
	assert_int_equal(tbucket_avail(&b, 250), -250);
	assert_int_equal(tbucket_wait_ms(&b, 250), 251);
	assert_int_equal(tbucket_avail(&b, 501), 1);
	assert_int_equal(tbucket_wait_ms(&b, 501), 0);
}

/* Refills every ms earn what one refill a second does (no rounding loss). */
static void
test_tbucket_fractions(void **state)
{
	struct tbucket	b;
	uint64_t	t;

	tbucket_init(&b, 333, 1000000, 0);
	tbucket_spend(&b, 1000000);
	for (t = 1; t <= 3000; t++)
		tbucket_refill(&b, t);
	assert_int_equal(b.tokens, 999);
	/* Time going back earns nothing and takes nothing. */
	tbucket_refill(&b, 10);
	assert_int_equal(b.tokens, 999);
}

/* A long run spends at the rate, whatever the size of each spend. */
static void
test_tbucket_long_run_rate(void **state)
{
	struct tbucket	b;
	uint64_t	now = 0;
	int64_t		spent = 0;

	tbucket_init(&b, 10 * 1000 * 1000, 500 * 1000, 0);
	while (now < 10000) {
		if (tbucket_avail(&b, now) > 0) {
			tbucket_spend(&b, 65536);
			spent += 65536;
		} else
			now += tbucket_wait_ms(&b, now);
	}
	/* 10 s at 10 MB/s, plus the burst and one spend of debt. */
	assert_true(spent >= 100LL * 1000 * 1000);
	assert_true(spent <= 100LL * 1000 * 1000 + 500 * 1000 + 65536);
}

/* Events: take refuses what does not fit and takes nothing then. */
static void
test_tbucket_take_events(void **state)
{
	struct tbucket	b;
	int		i, ok = 0;

	tbucket_init(&b, 5, 5, 0);
	for (i = 0; i < 20; i++)
		ok += tbucket_take(&b, 0, 1);
	assert_int_equal(ok, 5);
	assert_int_equal(tbucket_take(&b, 199, 1), 0);
	assert_int_equal(tbucket_take(&b, 200, 1), 1);
	assert_int_equal(tbucket_take(&b, 200, 1), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_tbucket_unlimited),
		cmocka_unit_test(test_tbucket_starts_full_and_caps),
		cmocka_unit_test(test_tbucket_debt_and_wait),
		cmocka_unit_test(test_tbucket_fractions),
		cmocka_unit_test(test_tbucket_long_run_rate),
		cmocka_unit_test(test_tbucket_take_events),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
