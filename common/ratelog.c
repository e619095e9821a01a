/*
 * Rate limiting of peer-caused log lines: a fixed window with a burst.
 * See ratelog.h.
 */

#include <stddef.h>

#include "ratelog.h"

void
ratelog_init(struct ratelog *r, unsigned burst, uint64_t window_ms)
{
	r->burst = burst ? burst : RATELOG_BURST;
	r->window_ms = window_ms ? window_ms : RATELOG_WINDOW_MS;
	r->start = 0;
	r->used = 0;
	r->suppressed = 0;
	r->started = 0;
}

int
ratelog_allow(struct ratelog *r, uint64_t now_ms, unsigned long *suppressed)
{
	/* A clock that went back (or a first call) opens a new window. */
	if (!r->started || now_ms < r->start ||
	    now_ms - r->start >= r->window_ms) {
		r->started = 1;
		r->start = now_ms;
		r->used = 0;
	}
	if (r->used >= r->burst) {
		if (r->suppressed < (unsigned long)-1)
			r->suppressed++;
		return 0;
	}
	r->used++;
	if (suppressed != NULL)
		*suppressed = r->suppressed;
	r->suppressed = 0;
	return 1;
}

unsigned long
ratelog_take(struct ratelog *r)
{
	unsigned long n = r->suppressed;

	r->suppressed = 0;
	return n;
}
