/*
 * Streams to join points (joinpt.h), the worker's half: each is a
 * CTL_JOIN to the dispatcher, answered by a CTL_JOINED that carries the
 * connected socket.  Only the dispatcher knows which tenant we serve and
 * where the tenant's points are; we only name one, and a worker that
 * named another tenant's could not say so.
 *
 * Dials wait in a queue, oldest first, each with a deadline: at most
 * WORKER_JOIN_WINDOW are asked at a time, which the control socket holds
 * both ways, so a burst of streams is neither refused for being a burst
 * nor able to make the dispatcher drop answers; a dispatcher that does
 * not answer costs refused streams, never ones that hang.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ctlmsg.h"
#include "err.h"
#include "log.h"
#include "worker_int.h"

static void	worker_join_timer_cb(uv_timer_t *);

void
worker_join_init(struct worker *w)
{
	uv_timer_init(w->tun.loop, &w->join_timer);
	w->join_timer.data = w;
}

void
worker_join_close(struct worker *w)
{
	free(w->joins);
	w->joins = NULL;
	w->njoins = w->joins_cap = w->joins_asked = 0;
	uv_close((uv_handle_t *)&w->join_timer, NULL);
}

/* Room for one more dial: 0, or -1 with err. */
static int
worker_join_room(struct worker *w, char *err)
{
	struct worker_join	*n;
	size_t			 cap;

	if (w->njoins < w->joins_cap)
		return 0;
	if (w->joins_cap == WORKER_JOIN_MAX) {
		err_set(err, "%d join dials wait already", WORKER_JOIN_MAX);
		return -1;
	}
	cap = w->joins_cap == 0 ? 16 : w->joins_cap * 2;
	if (cap > WORKER_JOIN_MAX)
		cap = WORKER_JOIN_MAX;
	if ((n = realloc(w->joins, cap * sizeof(*n))) == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	w->joins = n;
	w->joins_cap = cap;
	return 0;
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

/* Takes dial i off the queue (keeping its order) into *out. */
static void
worker_join_remove(struct worker *w, size_t i, struct worker_join *out)
{
	*out = w->joins[i];
	if (out->asked)
		w->joins_asked--;
	memmove(&w->joins[i], &w->joins[i + 1],
	    (w->njoins - i - 1) * sizeof(w->joins[0]));
	w->njoins--;
}

/* Fails dial i with why (its CITI learns it). */
static void
worker_join_fail(struct worker *w, size_t i, const char *why)
{
	struct worker_join j;

	worker_join_remove(w, i, &j);
	mux_join_done(&w->tun, j.sid, j.citi, j.ref, -1, why);
}

/* Sends dial i's CTL_JOIN: 0, or -1 with err. */
static int
worker_join_send(struct worker *w, size_t i, char *err)
{
	struct channel	*c;
	struct ctlmsg	 m;

	if ((c = worker_join_channel(w)) == NULL) {
		err_set(err, "no dispatcher to reach join points through");
		return -1;
	}
	ctlmsg_init(&m, CTL_JOIN);
	snprintf(m.u.join.name, sizeof(m.u.join.name), "%s",
	    w->joins[i].name);
	m.u.join.ref = w->joins[i].ref;
	/* The window fits the socket's buffer: no wait, but for a
	 * dispatcher that stopped reading. */
	if (ctlmsg_send(c->fd, &m, -1, 100, err) == -1)
		return -1;
	w->joins[i].asked = 1;
	w->joins_asked++;
	return 0;
}

/* Asks for the oldest dials not asked yet, while the window has room. */
static void
worker_join_ask(struct worker *w)
{
	char	err[ERR_LEN];
	size_t	i;

	for (i = 0; i < w->njoins && w->joins_asked < WORKER_JOIN_WINDOW;) {
		if (w->joins[i].asked)
			i++;
		else if (worker_join_send(w, i, err) == -1)
			worker_join_fail(w, i, err);
		else
			i++;
	}
}

/* Fails the dials past their deadline; runs again for the rest. */
static void
worker_join_timer_cb(uv_timer_t *timer)
{
	struct worker	*w = timer->data;
	uint64_t	 now = uv_now(w->tun.loop), next = 0;
	size_t		 i;

	for (i = 0; i < w->njoins;) {
		if (w->joins[i].deadline <= now) {
			worker_join_fail(w, i, "the dispatcher did not answer "
			    "in time");
			continue;
		}
		if (next == 0 || w->joins[i].deadline < next)
			next = w->joins[i].deadline;
		i++;
	}
	worker_join_ask(w);
	if (next != 0)
		uv_timer_start(&w->join_timer, worker_join_timer_cb,
		    next - now, 0);
}

int64_t
worker_join_dial(struct tun *t, int64_t sid, uint32_t citi, const char *name,
    char *err)
{
	struct worker		*w = worker_of(t);
	struct worker_join	*j, gone;

	if (worker_join_room(w, err) == -1)
		return -1;
	j = &w->joins[w->njoins++];
	memset(j, 0, sizeof(*j));
	j->ref = ++w->join_next;
	j->sid = sid;
	j->citi = citi;
	j->deadline = uv_now(t->loop) + WORKER_JOIN_MS;
	snprintf(j->name, sizeof(j->name), "%s", name);
	if (!uv_is_active((uv_handle_t *)&w->join_timer))
		uv_timer_start(&w->join_timer, worker_join_timer_cb,
		    WORKER_JOIN_MS, 0);
	/* Older dials go first: with some waiting, the window is full. */
	if (w->joins_asked < WORKER_JOIN_WINDOW &&
	    worker_join_send(w, w->njoins - 1, err) == -1) {
		worker_join_remove(w, w->njoins - 1, &gone);
		return -1;
	}
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
	size_t			 i;

	for (i = 0; i < w->njoins && w->joins[i].ref != m->u.joined.ref; i++)
		;
	if (i == w->njoins || !w->joins[i].asked) {
		log_debug("join answer %" PRId64 " came too late",
		    m->u.joined.ref);
		return CTLMSG_OK;	/* ctlmsg_dispatch closes the fd */
	}
	worker_join_remove(w, i, &j);
	if (*fdp == -1 && why[0] == '\0')
		why = "the dispatcher sent no socket";
	else if (*fdp != -1 && why[0] != '\0') {
		close(*fdp);
		*fdp = -1;
	}
	mux_join_done(&w->tun, j.sid, j.citi, j.ref, *fdp, why);
	*fdp = -1;
	worker_join_ask(w);
	return CTLMSG_OK;
}
