/*
 * The worker's idle timer: a worker without clients, or whose tunnel
 * carried no traffic for the policy's idleTimeout, ends.
 */

#include <stdint.h>
#include <stdio.h>

#include "log.h"
#include "worker_int.h"

/* Counted packets of every session, both ways: payload and stream
 * openings and closings, not keepalives. */
static uint64_t
worker_traffic(struct worker *w)
{
	struct sess	*s;
	uint64_t	 n = 0;

	TAILQ_FOREACH(s, &w->tun.sessions, link)
		n += s->next_seq + s->read_no;
	return n;
}

/*
 * The policy's idleTimeout: a tunnel that carried no traffic (see
 * worker_traffic) for that many seconds ends; 0 is never.  Returns 1 if
 * it ended.
 */
static int
worker_idle_traffic(struct worker *w, uint64_t now)
{
	uint64_t mark = worker_traffic(w);

	if (mark != w->traffic_mark || !w->authed) {
		w->traffic_mark = mark;
		w->traffic_at = now;
		return 0;
	}
	if (w->cfg.idle_timeout == 0 ||
	    now - w->traffic_at < (uint64_t)w->cfg.idle_timeout * 1000)
		return 0;
	snprintf(w->end_reason, sizeof(w->end_reason), "no traffic for %d s "
	    "(idleTimeout)", w->cfg.idle_timeout);
	log_info("%s", w->end_reason);
	tun_stop(&w->tun, 0);
	return 1;
}

/*
 * A worker whose client never authenticated (wrong password, a dead
 * client) has nothing to wait for: sessions time out by themselves, this
 * covers the time before there is one.  Before any authentication the
 * wait is the handshake timeout, so that password-less upgrades do not
 * keep workers around: a handshake lasts -handshakeTimeout at most, and
 * the worker goes -handshakeTimeout after the last connection (a client
 * that lost its first one may come back in that time).
 */
static void
worker_idle_cb(uv_timer_t *timer)
{
	struct worker	*w = timer->data;
	struct tun	*t = &w->tun;
	uint64_t	 now = uv_now(t->loop), wait;

	if (worker_idle_traffic(w, now))
		return;
	if (!TAILQ_EMPTY(&t->sessions) || !TAILQ_EMPTY(&t->handshakes)) {
		w->idle_since = now;
		return;
	}
	/* A OneShot tunnel whose one connection is gone has nothing left. */
	if (w->cfg.oneshot)
		wait = 1000;
	else if (!w->authed)
		wait = (uint64_t)w->opts.handshake_timeout * 1000;
	else
		wait = WORKER_IDLE_MS;
	if (now - w->idle_since >= wait) {
		snprintf(w->end_reason, sizeof(w->end_reason),
		    "%s for %d s", w->authed ? "no client" :
		    "no authenticated client", (int)(wait / 1000));
		log_info("%s", w->end_reason);
		tun_stop(t, 0);
	}
}

void
worker_idle_start(struct worker *w)
{
	w->idle_since = w->traffic_at = uv_now(w->tun.loop);
	uv_timer_start(&w->idle, worker_idle_cb, 1000, 1000);
}
