/*
 * The registry of workers: one struct dworker per tunneld process, listed
 * in d->workers under d->lock with a reference count, and the counts the
 * admission limits read (-maxSession, -maxPendingWorkers, the tenants'
 * quotas).  The filesystem (the workers' sockets in the state directory)
 * is the registry that survives a dispatcher restart: see wmon_adopt.
 */

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "crypto.h"
#include "disp.h"
#include "err.h"
#include "text.h"

void
wreg_key(const char *session, char *key)
{
	uint8_t	h[32];
	int	i;

	crypto_sha256(session, strlen(session), h);
	for (i = 0; i < DISP_KEY_LEN / 2; i++) {
		key[2 * i] = text_hexdigit(h[i] >> 4, 0);
		key[2 * i + 1] = text_hexdigit(h[i], 0);
	}
	key[DISP_KEY_LEN] = '\0';
}

struct dworker *
wreg_find(struct disp *d, const char *key)
{
	struct dworker *w;

	pthread_mutex_lock(&d->lock);
	LIST_FOREACH(w, &d->workers, link)
		if (!w->ended && strcmp(w->key, key) == 0) {
			w->refs++;
			break;
		}
	pthread_mutex_unlock(&d->lock);
	return w;
}

int
wreg_count(struct disp *d)
{
	int n;

	pthread_mutex_lock(&d->lock);
	n = d->nworkers;
	pthread_mutex_unlock(&d->lock);
	return n;
}

int
wreg_reserve(struct disp *d, int *status, char *err)
{
	int rc = -1;

	pthread_mutex_lock(&d->lock);
	if (d->nauthed >= d->max_session) {
		*status = 503;
		err_set(err, "%d tunnels already (-maxSession)", d->nauthed);
	} else if (d->npending >= d->max_pending_workers) {
		*status = 503;
		err_set(err, "%d workers wait for authentication "
		    "(-maxPendingWorkers)", d->npending);
	} else {
		d->npending++;
		rc = 0;
	}
	pthread_mutex_unlock(&d->lock);
	return rc;
}

void
wreg_unreserve(struct disp *d)
{
	pthread_mutex_lock(&d->lock);
	d->npending--;
	pthread_mutex_unlock(&d->lock);
}

const char *
wreg_state_name(const struct dworker *w, int connected)
{
	/* Written under disp.lock by the loop thread; one word read. */
	if (__atomic_load_n(&w->state, __ATOMIC_RELAXED) == DW_PENDING)
		return "pending";
	return connected ? "connected" : "detached";
}

void
wreg_free(struct dworker *w)
{
	OPENSSL_cleanse(&w->info, sizeof(w->info));
	policy_unref(w->policy);
	free(w);
}

void
wreg_unref(struct disp *d, struct dworker *w)
{
	int last;

	pthread_mutex_lock(&d->lock);
	last = --w->refs == 0;
	pthread_mutex_unlock(&d->lock);
	if (last)
		wreg_free(w);
}

void
wreg_add(struct disp *d, struct dworker *w, int reserved)
{
	pthread_mutex_lock(&d->lock);
	w->refs++;		/* the registry's */
	LIST_INSERT_HEAD(&d->workers, w, link);
	d->nworkers++;
	/* Only tunnels count against the tenants' quotas (req.tunnels). */
	if (w->state == DW_AUTHED) {
		d->nauthed++;
		disp_tenant_add(d, w->tenant, 1);
	} else if (!reserved)
		d->npending++;
	pthread_mutex_unlock(&d->lock);
	uv_async_send(&d->wake);
}

int
wreg_remove(struct disp *d, struct dworker *w)
{
	pthread_mutex_lock(&d->lock);
	if (w->ended) {
		pthread_mutex_unlock(&d->lock);
		return 0;
	}
	w->ended = 1;
	LIST_REMOVE(w, link);
	d->nworkers--;
	if (w->state == DW_AUTHED) {
		d->nauthed--;
		disp_tenant_add(d, w->tenant, -1);
	} else
		d->npending--;
	pthread_mutex_unlock(&d->lock);
	return 1;
}

int
wreg_set_authed(struct disp *d, struct dworker *w)
{
	int over;

	pthread_mutex_lock(&d->lock);
	if (w->ended || w->state != DW_PENDING) {
		pthread_mutex_unlock(&d->lock);
		return -1;
	}
	w->state = DW_AUTHED;
	d->npending--;
	d->nauthed++;
	disp_tenant_add(d, w->tenant, 1);
	over = d->nauthed > d->max_session;
	pthread_mutex_unlock(&d->lock);
	return over;
}

struct dworker *
wreg_find_pid(struct disp *d, pid_t pid)
{
	struct dworker *w;

	pthread_mutex_lock(&d->lock);
	LIST_FOREACH(w, &d->workers, link)
		if (w->pid == pid && !w->adopted)
			break;
	if (w != NULL)
		w->refs++;
	pthread_mutex_unlock(&d->lock);
	return w;
}

size_t
wreg_same_tunnel(struct disp *d, struct dworker *w, struct dworker **out,
    size_t max)
{
	struct dworker	*o;
	size_t		 n = 0;

	pthread_mutex_lock(&d->lock);
	LIST_FOREACH(o, &d->workers, link)
		if (o != w && !o->ended && w->id[0] != '\0' &&
		    strcmp(o->id, w->id) == 0 && n < max) {
			o->refs++;
			out[n++] = o;
		}
	pthread_mutex_unlock(&d->lock);
	return n;
}

void
wreg_free_all(struct disp *d)
{
	struct dworker *w;

	/* Workers outlive us: only our side of their channels closes. */
	while ((w = LIST_FIRST(&d->workers)) != NULL) {
		LIST_REMOVE(w, link);
		if (w->ctl_fd != -1)
			close(w->ctl_fd);
		wreg_free(w);
	}
}
