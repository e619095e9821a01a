/*
 * Latency histograms (hist.h).  Each observation adds to one bucket; the
 * cumulative counts Prometheus wants are made when a scrape reads them.
 */

#include <stddef.h>

#include "hist.h"

const uint64_t hist_bounds_us[HIST_NBOUNDS] = {
	25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
	100000, 250000, 500000, 1000000, 2500000
};

void
hist_observe(struct hist *h, uint64_t us)
{
	size_t i;

	for (i = 0; i < HIST_NBOUNDS && us > hist_bounds_us[i]; i++)
		;
	atomic_fetch_add(&h->bucket[i], 1);
	atomic_fetch_add(&h->sum_us, us);
}

void
hist_read(struct hist *h, struct hist_view *v)
{
	unsigned long	c = 0;
	size_t		i;

	for (i = 0; i <= HIST_NBOUNDS; i++) {
		c += atomic_load(&h->bucket[i]);
		v->cum[i] = c;
	}
	v->sum = atomic_load(&h->sum_us) / 1e6;
}
