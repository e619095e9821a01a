/*
 * Dispatcher state shared by its threads: the current policy, the live
 * tunnels per tenant (which the policy reads as req.tunnels, so that a
 * reload of its scripts can not reset a quota) and the clock.
 */

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "disp.h"
#include "err.h"
#include "log.h"
#include "notify.h"

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

uint64_t
disp_now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/*
 * Swaps the policy only once the new scripts loaded and passed.  The
 * outcome of a reload (not of the first load) is kept for the console,
 * whichever way it was asked (SIGHUP or the console).
 */
static int
disp_reload_policy(struct disp *d, char *err)
{
	struct policy_limits	 lim = { 0 };
	struct policy		*np = NULL, *old;
	time_t			 now = time(NULL);
	int			 rc, first;

	rc = policy_load(d->handler_lua, d->canaccept_lua, &lim, &np, err);
	pthread_mutex_lock(&d->lock);
	old = d->policy;
	first = old == NULL;
	if (!first) {
		d->reload.at = now;
		d->reload.ok = rc == 0;
		snprintf(d->reload.error, sizeof(d->reload.error), "%s",
		    rc == 0 ? "" : err);
	}
	if (rc == 0) {
		d->policy = np;
		d->reload.loaded = now;
	} else
		old = NULL;
	pthread_mutex_unlock(&d->lock);
	if (old != NULL)
		policy_unref(old);
	if (!first)
		console_note_reload(d, rc == 0, rc == 0 ? "" : err);
	return rc;
}

/*
 * The service manager hears of every reload after the start (SIGHUP and
 * the console alike), so that systemctl reload waits for its end.
 */
int
disp_reload(struct disp *d, char *err)
{
	char	why[ERR_LEN], status[ERR_LEN + 32];
	int	rc;

	if (notify_reloading(why) == -1)
		log_warnx("%s", why);
	rc = disp_reload_policy(d, err);
	snprintf(status, sizeof(status), rc == 0 ? "policy reloaded" :
	    "policy reload failed, the old one kept: %s", err);
	if (notify_reloaded(status, why) == -1)
		log_warnx("%s", why);
	return rc;
}

/* djb2 of s, in [0, n): the buckets of the dispatcher's small tables. */
unsigned
disp_hash(const char *s, unsigned n)
{
	unsigned h = 5381;

	while (*s)
		h = h * 33 + (unsigned char)*s++;
	return h % n;
}

/*
 * Counts delta more (or fewer) live tunnels for tenant; the caller holds
 * d->lock.  A tenant at 0 is forgotten, so the table holds only tenants
 * that have a tunnel (at most -maxSession of them plus admissions).
 */
void
disp_tenant_add(struct disp *d, const char *tenant, int delta)
{
	struct dtenant	**pp, *t;

	for (pp = &d->tenants[disp_hash(tenant, DISP_TENANT_BUCKETS)]; (t = *pp) != NULL;
	    pp = &t->next)
		if (strcmp(t->name, tenant) == 0)
			break;
	if (t == NULL) {
		if (delta <= 0 || (t = calloc(1, sizeof(*t))) == NULL)
			return;
		snprintf(t->name, sizeof(t->name), "%s", tenant);
		*pp = t;
	}
	t->n += delta;
	if (t->n <= 0) {
		*pp = t->next;
		free(t);
	}
}

/* struct policy_counter's count: live tunnels of tenant; takes d->lock. */
int
disp_tenant_count(void *arg, const char *tenant)
{
	struct disp	*d = arg;
	struct dtenant	*t;
	int		 n = 0;

	pthread_mutex_lock(&d->lock);
	for (t = d->tenants[disp_hash(tenant, DISP_TENANT_BUCKETS)]; t != NULL; t = t->next)
		if (strcmp(t->name, tenant) == 0) {
			n = t->n;
			break;
		}
	pthread_mutex_unlock(&d->lock);
	return n;
}

void
disp_tenant_free(struct disp *d)
{
	struct dtenant	*t;
	size_t		 i;

	for (i = 0; i < DISP_TENANT_BUCKETS; i++)
		while ((t = d->tenants[i]) != NULL) {
			d->tenants[i] = t->next;
			free(t);
		}
}
