/*
 * The dialing side of a stream to a join point (joinpt.h): a worker
 * reaches one only through its embedder (tun_hooks.join_dial), which asks
 * the dispatcher; the dispatcher connects the tenant's socket and hands
 * it over.  The answer comes later and may find the CITI gone, or another
 * CITI under the same id (the peer picks ids): it is matched by the
 * request's ref, never by the id alone.  See mux.c.
 */

#include <inttypes.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "err.h"
#include "joinpt.h"
#include "log.h"
#include "mux_int.h"
#include "tunneld.h"

int
mux_join_allowed(const struct sess *s, const struct hostinfo *h)
{
	const struct fwd	*f;
	size_t			 i;

	if (joinpt_name(h) == NULL)
		return 0;
	for (i = 0; i < s->eff.n; i++) {
		f = &s->eff.fwds[i];
		if (f->reverse == !s->server && joinpt_name(&f->dst) != NULL &&
		    strcmp(f->dst.name, h->name) == 0)
			return 1;
	}
	return 0;
}

void
mux_join_dial(struct citi *ci)
{
	char	err[ERR_LEN];
	int64_t	ref;

	ref = tun_join_dial(ci->s->tun, ci->s->id, ci->id,
	    joinpt_name(&ci->dst), err);
	if (ref < 1) {
		mux_dial_failed(ci, err);
		return;
	}
	ci->join_ref = ref;
	log_debug("session %" PRId64 ": citi %08" PRIx32 ": asking for %s",
	    ci->s->id, ci->id, ci->dst.name);
}

void
mux_join_done(struct tun *t, int64_t sid, uint32_t id, int64_t ref, int fd,
    const char *why)
{
	struct sess	*s;
	struct citi	*ci = NULL;
	int		 rc;

	TAILQ_FOREACH(s, &t->sessions, link)
		if (s->id == sid && !s->closing)
			break;
	if (s != NULL)
		ci = mux_find(s, id);
	if (ci == NULL || ci->join_ref != ref ||
	    (ci->state != CITI_DIALING && ci->state != CITI_DIAL_ABANDONED)) {
		if (fd != -1)
			close(fd);
		return;
	}
	ci->join_ref = 0;
	if (fd == -1) {
		mux_dial_failed(ci, why);
		return;
	}
	/* libuv's TCP handle carries any stream socket: the CITI's code
	 * stays one for both kinds. */
	if ((rc = uv_tcp_open(&ci->tcp, fd)) < 0) {
		close(fd);
		mux_dial_failed(ci, uv_strerror(rc));
		return;
	}
	mux_dial_connected(ci);
}
