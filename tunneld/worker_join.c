/*
 * Streams to join points (joinpt.h), the worker's half: each is a
 * CTL_JOIN to the dispatcher, answered by a CTL_JOINED that carries the
 * connected socket.  Only the dispatcher knows which tenant we serve and
 * where the tenant's points are; we only name one, and a worker that
 * named another tenant's could not say so.  Requests wait in a small
 * table with a deadline: a dispatcher that does not answer costs a
 * refused stream, never one that hangs.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "ctlmsg.h"
#include "err.h"
#include "log.h"
#include "worker_int.h"

void
worker_join_init(struct worker *w)
{
	uv_timer_init(w->tun.loop, &w->join_timer);
	w->join_timer.data = w;
}

void
worker_join_close(struct worker *w)
{
	w->njoins = 0;
	uv_close((uv_handle_t *)&w->join_timer, NULL);
}

/*
 * The channel the dispatcher watches: fd 3 of the one that started us;
 * after its restart, the first connection of the one that adopted us
 * (its later ones are short exchanges).  NULL: none.
 */
static struct channel *
worker_join_channel(struct worker *w)
{
	struct channel	*c, *best = NULL;
	size_t		 i;

	for (i = 0; i < WORKER_MAX_CHANNELS; i++) {
		if ((c = w->ch[i]) == NULL || !c->configured)
			continue;
		if (c->fd == WORKER_CTL_FD)
			return c;
		if (best == NULL || c->seq < best->seq)
			best = c;
	}
	return best;
}

/* Takes the entry of ref off the table into *out: 1, or 0 if none. */
static int
worker_join_take(struct worker *w, int64_t ref, struct worker_join *out)
{
	size_t i;

	for (i = 0; i < w->njoins; i++)
		if (w->joins[i].ref == ref) {
			*out = w->joins[i];
			w->joins[i] = w->joins[--w->njoins];
			return 1;
		}
	return 0;
}

/* Fails the requests past their deadline; runs again for the rest. */
static void
worker_join_timer_cb(uv_timer_t *timer)
{
	struct worker		*w = timer->data;
	struct worker_join	 j;
	uint64_t		 now = uv_now(w->tun.loop), next = 0;
	size_t			 i;

	for (i = 0; i < w->njoins;) {
		if (w->joins[i].deadline > now) {
			if (next == 0 || w->joins[i].deadline < next)
				next = w->joins[i].deadline;
			i++;
			continue;
		}
		j = w->joins[i];
		w->joins[i] = w->joins[--w->njoins];
		mux_join_done(&w->tun, j.sid, j.citi, j.ref, -1,
		    "the dispatcher did not answer in time");
	}
	if (next != 0)
		uv_timer_start(&w->join_timer, worker_join_timer_cb,
		    next - now, 0);
}

int64_t
worker_join_dial(struct tun *t, int64_t sid, uint32_t citi, const char *name,
    char *err)
{
	struct worker		*w = worker_of(t);
	struct worker_join	*j;
	struct channel		*c;
	struct ctlmsg		 m;

	if (w->njoins == WORKER_JOIN_MAX) {
		err_set(err, "%d join dials wait for the dispatcher already",
		    WORKER_JOIN_MAX);
		return -1;
	}
	if ((c = worker_join_channel(w)) == NULL) {
		err_set(err, "no dispatcher to reach join points through");
		return -1;
	}
	ctlmsg_init(&m, CTL_JOIN);
	snprintf(m.u.join.name, sizeof(m.u.join.name), "%s", name);
	m.u.join.ref = ++w->join_next;
	/* Short: the dispatcher's loop reads its channels at once. */
	if (ctlmsg_send(c->fd, &m, -1, 100, err) == -1)
		return -1;
	j = &w->joins[w->njoins++];
	j->ref = m.u.join.ref;
	j->sid = sid;
	j->citi = citi;
	j->deadline = uv_now(t->loop) + WORKER_JOIN_MS;
	if (!uv_is_active((uv_handle_t *)&w->join_timer))
		uv_timer_start(&w->join_timer, worker_join_timer_cb,
		    WORKER_JOIN_MS, 0);
	return j->ref;
}

/* CTL_JOINED: the socket goes to its CITI; a late answer is dropped. */
int
worker_on_joined(void *ctx, struct ctlmsg *m, int *fdp, char *err)
{
	struct channel		*c = ctx;
	struct worker		*w = c->w;
	struct worker_join	 j;
	const char		*why = m->u.joined.error;

	if (!worker_join_take(w, m->u.joined.ref, &j)) {
		log_debug("join answer %" PRId64 " came too late",
		    m->u.joined.ref);
		return CTLMSG_OK;	/* ctlmsg_dispatch closes the fd */
	}
	if (*fdp == -1 && why[0] == '\0')
		why = "the dispatcher sent no socket";
	else if (*fdp != -1 && why[0] != '\0') {
		close(*fdp);
		*fdp = -1;
	}
	mux_join_done(&w->tun, j.sid, j.citi, j.ref, *fdp, why);
	*fdp = -1;
	return CTLMSG_OK;
}
