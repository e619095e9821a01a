/*
 * Per-address counts of the public port: the tables of struct ipslot that
 * -perIp (requests in progress) and -headPerIp (incomplete heads) share,
 * the text key of an address, and -perIp itself.  libmicrohttpd's own
 * per-address limit counts connections, which stay counted for a while
 * after their hand-over; requests are what -perIp bounds.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "front.h"
#include "log.h"
#include "peerkey.h"

struct ipslot *
iplimit_slot(struct ipslot **tab, const char *ip, int create)
{
	struct ipslot **pp = &tab[disp_hash(ip, DISP_IPSLOTS)], *sl;

	for (sl = *pp; sl != NULL && strcmp(sl->ip, ip) != 0; sl = sl->next)
		;
	if (sl == NULL && create && (sl = calloc(1, sizeof(*sl))) != NULL) {
		snprintf(sl->ip, sizeof(sl->ip), "%s", ip);
		sl->next = *pp;
		*pp = sl;
	}
	return sl;
}

void
iplimit_slot_put(struct ipslot **tab, const char *ip)
{
	struct ipslot **pp, *sl;

	for (pp = &tab[disp_hash(ip, DISP_IPSLOTS)]; (sl = *pp) != NULL;
	    pp = &sl->next)
		if (strcmp(sl->ip, ip) == 0) {
			if (--sl->n <= 0) {
				*pp = sl->next;
				free(sl);
			}
			return;
		}
}

void
iplimit_slots_free(struct ipslot **tab)
{
	struct ipslot	*sl;
	size_t		 i;

	for (i = 0; i < DISP_IPSLOTS; i++)
		while ((sl = tab[i]) != NULL) {
			tab[i] = sl->next;
			free(sl);
		}
}

void
iplimit_key(const struct sockaddr *sa, char *out, size_t cap)
{
	struct peerkey k;

	peerkey_from(&k, sa);
	peerkey_format(&k, out, cap);
}

int
iplimit_take(struct disp *d, struct freq *r)
{
	struct ipslot	*sl;

	pthread_mutex_lock(&d->lock);
	if ((sl = iplimit_slot(d->ipslots, r->remote, 1)) != NULL &&
	    sl->n < d->per_ip) {
		sl->n++;
		r->counted = 1;
	}
	pthread_mutex_unlock(&d->lock);
	if (!r->counted)
		log_warnx("%s: too many requests in progress (-perIp %d)",
		    r->remote, d->per_ip);
	return r->counted;
}

void
iplimit_release(struct disp *d, struct freq *r)
{
	if (!r->counted)
		return;
	r->counted = 0;
	pthread_mutex_lock(&d->lock);
	iplimit_slot_put(d->ipslots, r->remote);
	pthread_mutex_unlock(&d->lock);
}
