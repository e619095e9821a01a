/*
 * -spawnRate: a token bucket per address for the new workers it starts.
 * A token comes back when no worker was started or once its client
 * authenticated: the limit is on workers nobody authenticated to, so that
 * one address may still start many tunnels that work.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front.h"

/* Under d->lock: ip's bucket, created full (if fewer than
 * DISP_RATE_SLOTS are tracked); NULL if none. */
static struct rateslot *
srate_bucket(struct disp *d, const char *ip, uint64_t now)
{
	struct rateslot	**pp, *sl;

	pp = &d->rateslots[disp_hash(ip, DISP_IPSLOTS)];
	for (sl = *pp; sl != NULL && strcmp(sl->ip, ip) != 0; sl = sl->next)
		;
	if (sl != NULL || d->nrateslots >= DISP_RATE_SLOTS ||
	    (sl = calloc(1, sizeof(*sl))) == NULL)
		return sl;
	snprintf(sl->ip, sizeof(sl->ip), "%s", ip);
	sl->mtokens = (uint64_t)d->spawn_burst * 1000;
	sl->at = now;
	sl->next = *pp;
	*pp = sl;
	d->nrateslots++;
	return sl;
}

int
srate_take(struct disp *d, const struct sockaddr_storage *ss, char *ip)
{
	struct rateslot	*sl;
	uint64_t	 now = disp_now_ms();
	uint64_t	 full = (uint64_t)d->spawn_burst * 1000;
	int		 ok = 0;

	iplimit_key((const struct sockaddr *)ss, ip, 64);
	pthread_mutex_lock(&d->lock);
	if ((sl = srate_bucket(d, ip, now)) != NULL) {
		/* rate a second is rate thousandths a millisecond */
		sl->mtokens += (now - sl->at) * (uint64_t)d->spawn_rate;
		if (sl->mtokens > full)
			sl->mtokens = full;
		sl->at = now;
		if (sl->mtokens >= 1000) {
			sl->mtokens -= 1000;
			ok = 1;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return ok;
}

void
srate_refund(struct disp *d, const char *ip)
{
	struct rateslot	*sl;
	uint64_t	 full = (uint64_t)d->spawn_burst * 1000;

	if (ip == NULL || ip[0] == '\0')
		return;
	pthread_mutex_lock(&d->lock);
	for (sl = d->rateslots[disp_hash(ip, DISP_IPSLOTS)]; sl != NULL;
	    sl = sl->next)
		if (strcmp(sl->ip, ip) == 0) {
			sl->mtokens += 1000;
			if (sl->mtokens > full)
				sl->mtokens = full;
			break;
		}
	pthread_mutex_unlock(&d->lock);
}

void
srate_sweep(struct disp *d, uint64_t now)
{
	struct rateslot	**pp, *sl;
	uint64_t	  full = (uint64_t)d->spawn_burst * 1000;
	size_t		  i;

	pthread_mutex_lock(&d->lock);
	for (i = 0; i < DISP_IPSLOTS; i++)
		for (pp = &d->rateslots[i]; (sl = *pp) != NULL;) {
			if (sl->mtokens + (now - sl->at) *
			    (uint64_t)d->spawn_rate >= full) {
				*pp = sl->next;
				free(sl);
				d->nrateslots--;
			} else
				pp = &sl->next;
		}
	pthread_mutex_unlock(&d->lock);
}

void
srate_free(struct disp *d)
{
	struct rateslot	*rs;
	size_t		 i;

	for (i = 0; i < DISP_IPSLOTS; i++)
		while ((rs = d->rateslots[i]) != NULL) {
			d->rateslots[i] = rs->next;
			free(rs);
		}
	d->nrateslots = 0;
}
