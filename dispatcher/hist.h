#ifndef HIST_H
#define HIST_H

/*
 * Latency histograms for /metrics: fixed bucket bounds (one set for every
 * histogram, from 25 us to 2.5 s), counted with atomics so that any thread
 * observes without a lock.  Prometheus wants cumulative buckets and a
 * count equal to the +Inf bucket; hist_read gives both from one pass over
 * the counters, so a scrape never shows a count its buckets disagree with.
 */

#include <stdatomic.h>
#include <stdint.h>

#define HIST_NBOUNDS	16

/* The upper bounds of the buckets, in microseconds (le="..." in seconds). */
extern const uint64_t hist_bounds_us[HIST_NBOUNDS];

struct hist {
	atomic_ulong	 bucket[HIST_NBOUNDS + 1];	/* the last: +Inf */
	atomic_ulong	 sum_us;
};

/* What a scrape reports: cumulative counts, the +Inf one last. */
struct hist_view {
	unsigned long	 cum[HIST_NBOUNDS + 1];
	double		 sum;		/* seconds */
};

/* Counts one observation of us microseconds.  Any thread. */
void	 hist_observe(struct hist *h, uint64_t us);
/* h's cumulative buckets and sum into v.  Any thread. */
void	 hist_read(struct hist *h, struct hist_view *v);

#endif
