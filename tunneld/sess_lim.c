/*
 * The per-tenant limits of a session (cli_opts.lim; the policy's in a
 * worker, docs/lua-api.md):
 *
 * - rateUp / rateDown: a token bucket per direction, applied by not
 *   reading, never by dropping: the transport is paused for what the
 *   client sends (TCP then holds the client back), local sockets stop
 *   being read for what it receives (TCP holds the targets back).  Tokens
 *   are spent after each read, into debt; once in debt the direction
 *   waits until the bucket holds a token again.  Local reads are capped
 *   so that one stream cannot take a whole refill, and when tokens come
 *   back the streams are resumed in turn, starting after the one that
 *   was first the last time (libuv then reads them in that order).
 * - maxStreams, maxConnectRate: an open beyond either is refused, as a
 *   forward the list does not allow (the caller answers the peer or
 *   closes the local connection).  The connect rate has a burst of one
 *   second's worth.
 * - maxBytes: stream payload both ways together; reaching it ends the
 *   session with a reason (on the next turn of the loop, never inside
 *   the callback that counted the bytes).
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "log.h"
#include "mux_int.h"
#include "tunneld.h"

/* A byte bucket saves 50 ms of its rate, at least this much. */
#define LIM_BURST_MIN	16384
#define LIM_BURST_DIV	20

static void	lim_timer_cb(uv_timer_t *);

/* A server's "in" is the tenant's up; a client's the reverse. */
static int64_t
lim_rate_in(const struct sess *s)
{
	const struct ctlmsg_limits *l = &s->tun->o->lim;

	return s->server ? l->rate_up : l->rate_down;
}

static int64_t
lim_rate_out(const struct sess *s)
{
	const struct ctlmsg_limits *l = &s->tun->o->lim;

	return s->server ? l->rate_down : l->rate_up;
}

static int64_t
lim_burst(int64_t rate)
{
	return rate / LIM_BURST_DIV > LIM_BURST_MIN ? rate / LIM_BURST_DIV :
	    LIM_BURST_MIN;
}

void
sess_lim_init(struct sess *s)
{
	struct sess_lim	*l = &s->lim;
	uint64_t	 now = uv_now(s->tun->loop);
	int64_t		 r;

	r = lim_rate_in(s);
	tbucket_init(&l->in_tb, r, lim_burst(r), now);
	r = lim_rate_out(s);
	tbucket_init(&l->out_tb, r, lim_burst(r), now);
	tbucket_init(&l->open_tb, s->tun->o->lim.max_connect_rate, 0, now);
	uv_timer_init(s->tun->loop, &l->timer);
	l->timer.data = s;
	s->handles++;
}

static void
lim_closed(uv_handle_t *h)
{
	sess_unref(h->data);
}

void
sess_lim_close(struct sess *s)
{
	uv_timer_stop(&s->lim.timer);
	uv_close((uv_handle_t *)&s->lim.timer, lim_closed);
}

/* Wakes up when the first held direction may go on. */
static void
lim_arm(struct sess *s)
{
	struct sess_lim	*l = &s->lim;
	uint64_t	 now = uv_now(s->tun->loop), wait = UINT64_MAX, w;

	if (l->in_held && (w = tbucket_wait_ms(&l->in_tb, now)) < wait)
		wait = w;
	if (l->out_held && (w = tbucket_wait_ms(&l->out_tb, now)) < wait)
		wait = w;
	if (wait != UINT64_MAX)
		uv_timer_start(&l->timer, lim_timer_cb, wait ? wait : 1, 0);
}

/* Local sockets may read again: in turn, from where the last turn left. */
static void
lim_resume_out(struct sess *s)
{
	struct sess_lim	*l = &s->lim;
	struct citi	*ci;
	size_t		 k, i, first = SIZE_MAX;

	l->out_held = 0;
	if (s->tab == NULL)
		return;
	for (k = 0; k < s->tabsz; k++) {
		i = (l->rr + k) % s->tabsz;
		for (ci = s->tab[i]; ci != NULL; ci = ci->hnext) {
			if (first == SIZE_MAX)
				first = i;
			mux_citi_reading(ci);
		}
	}
	if (first != SIZE_MAX)
		l->rr = (first + 1) % s->tabsz;
}

static void
lim_timer_cb(uv_timer_t *timer)
{
	struct sess	*s = timer->data;
	struct sess_lim	*l = &s->lim;
	uint64_t	 now = uv_now(s->tun->loop);

	if (s->closing)
		return;
	if (l->end[0] != '\0') {
		sess_free(s, l->end);
		return;
	}
	if (l->in_held && tbucket_avail(&l->in_tb, now) > 0) {
		l->in_held = 0;
		sess_rx_hold(s);
	}
	if (l->out_held && tbucket_avail(&l->out_tb, now) > 0)
		lim_resume_out(s);
	lim_arm(s);
}

void
sess_lim_in(struct sess *s, size_t n)
{
	struct sess_lim *l = &s->lim;

	if (!tbucket_limited(&l->in_tb) || l->end[0] != '\0')
		return;
	tbucket_spend(&l->in_tb, (int64_t)n);
	if (l->in_held ||
	    tbucket_avail(&l->in_tb, uv_now(s->tun->loop)) > 0)
		return;
	l->in_held = 1;
	sess_rx_hold(s);
	lim_arm(s);
}

void
sess_lim_out(struct sess *s, size_t n)
{
	struct sess_lim *l = &s->lim;

	if (!tbucket_limited(&l->out_tb) || l->end[0] != '\0')
		return;
	tbucket_spend(&l->out_tb, (int64_t)n);
	if (l->out_held ||
	    tbucket_avail(&l->out_tb, uv_now(s->tun->loop)) > 0)
		return;
	l->out_held = 1;	/* each stream stops at its next check */
	mux_congestion(s, s->congested);
	lim_arm(s);
}

void
sess_lim_bytes(struct sess *s, size_t n)
{
	struct sess_lim	*l = &s->lim;
	uint64_t	 max = (uint64_t)s->tun->o->lim.max_bytes;

	l->bytes += n;
	if (max == 0 || l->bytes < max || l->end[0] != '\0')
		return;
	snprintf(l->end, sizeof(l->end), "maxBytes reached (%" PRIu64
	    " bytes)", max);
	log_info("session %" PRId64 ": %s", s->id, l->end);
	/* Nothing more moves; the end comes on the next turn of the loop. */
	l->in_held = l->out_held = 1;
	sess_rx_hold(s);
	mux_congestion(s, s->congested);
	uv_timer_start(&l->timer, lim_timer_cb, 0, 0);
}

int
sess_lim_open(struct sess *s, char *why, size_t len)
{
	const struct ctlmsg_limits	*o = &s->tun->o->lim;
	struct sess_lim			*l = &s->lim;

	if (o->max_streams > 0 && s->nciti >= (size_t)o->max_streams) {
		snprintf(why, len, "too many streams (maxStreams %d)",
		    o->max_streams);
		goto refused;
	}
	if (!tbucket_take(&l->open_tb, uv_now(s->tun->loop), 1)) {
		snprintf(why, len, "too many new streams (maxConnectRate "
		    "%d/s)", o->max_connect_rate);
		goto refused;
	}
	return 0;
 refused:
	l->refused++;
	return -1;
}

int
sess_lim_out_ok(const struct sess *s)
{
	return !s->lim.out_held;
}

size_t
sess_lim_read_cap(const struct sess *s)
{
	const struct tbucket *b = &s->lim.out_tb;

	if (!tbucket_limited(b) || b->burst >= PKT_MAX_PAYLOAD)
		return PKT_MAX_PAYLOAD;
	return (size_t)b->burst;
}


void
sess_lim_tick(struct sess *s)
{
	struct sess_lim *l = &s->lim;

	l->in_now = (int64_t)(s->bytes_in - l->mark_in);
	l->out_now = (int64_t)(s->bytes_out - l->mark_out);
	l->mark_in = s->bytes_in;
	l->mark_out = s->bytes_out;
}
