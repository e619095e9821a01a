/*
 * Dispatcher state shared by its threads: the current policy and the clock.
 */

#include <pthread.h>
#include <time.h>

#include "disp.h"
#include "err.h"

uint64_t
disp_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct policy *
disp_policy(struct disp *d)
{
	struct policy *p;

	pthread_mutex_lock(&d->lock);
	if ((p = d->policy) != NULL)
		policy_ref(p);
	pthread_mutex_unlock(&d->lock);
	return p;
}

/* Swaps the policy only once the new scripts loaded and passed. */
int
disp_reload(struct disp *d, char *err)
{
	struct policy_limits	 lim = { 0 };
	struct policy		*np, *old;

	if (policy_load(d->handler_lua, d->canaccept_lua, &lim, &np, err) == -1)
		return -1;
	pthread_mutex_lock(&d->lock);
	old = d->policy;
	d->policy = np;
	pthread_mutex_unlock(&d->lock);
	if (old != NULL)
		policy_unref(old);
	return 0;
}
