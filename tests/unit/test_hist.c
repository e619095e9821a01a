/*
 * hist_*: the latency histograms of /metrics.  A bound belongs to its own
 * bucket (Prometheus' "le"), buckets read back cumulative, and the count
 * (the +Inf bucket) is every observation.
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "hist.h"

static void
test_hist_bounds_rise(void **state)
{
	size_t i;

	for (i = 1; i < HIST_NBOUNDS; i++)
		assert_true(hist_bounds_us[i] > hist_bounds_us[i - 1]);
	assert_int_equal(hist_bounds_us[0], 25);
	assert_int_equal(hist_bounds_us[HIST_NBOUNDS - 1], 2500000);
}

static void
test_hist_le_and_cumulative(void **state)
{
	struct hist		h;
	struct hist_view	v;
	size_t			i;

	memset(&h, 0, sizeof(h));
	hist_observe(&h, 0);
	hist_observe(&h, 25);		/* on the first bound: le="0.000025" */
	hist_observe(&h, 26);
	hist_observe(&h, 1000);		/* le="0.001" */
	hist_observe(&h, 2500000);	/* the last bound */
	hist_observe(&h, 2500001);	/* +Inf only */
	hist_observe(&h, UINT64_C(1) << 40);
	hist_read(&h, &v);
	assert_int_equal(v.cum[0], 2);
	assert_int_equal(v.cum[1], 3);
	assert_int_equal(v.cum[5], 4);		/* 1000 us */
	assert_int_equal(v.cum[HIST_NBOUNDS - 1], 5);
	assert_int_equal(v.cum[HIST_NBOUNDS], 7);
	for (i = 1; i <= HIST_NBOUNDS; i++)
		assert_true(v.cum[i] >= v.cum[i - 1]);
	assert_true(v.sum > 1.0995e6 && v.sum < 1.0996e6);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hist_bounds_rise),
		cmocka_unit_test(test_hist_le_and_cumulative),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
