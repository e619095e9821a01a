/*
 * What a worker does with its dispatcher's messages (worker_rules): the
 * configuration, handed-over clients, statistics and the stop.  The
 * listener hand-over's handlers are in worker_lsn.c.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "crypto.h"
#include "ctlmsg.h"
#include "destpat.h"
#include "err.h"
#include "log.h"
#include "mode.h"
#include "worker_int.h"

static void
worker_stats(struct worker *w, struct ctlmsg_stats *st)
{
	struct sess *s;

	st->pid = getpid();
	snprintf(st->tenant, sizeof(st->tenant), "%s", w->cfg.tenant);
	snprintf(st->id, sizeof(st->id), "%s", w->cfg.id);
	snprintf(st->session, sizeof(st->session), "%s", w->cfg.session);
	snprintf(st->mode, sizeof(st->mode), "%s",
	    cli_mode_name(w->opts.mode));
	st->started = w->started;
	st->authed = w->authed;
	TAILQ_FOREACH(s, &w->tun.sessions, link) {
		st->bytes_in += s->bytes_in;
		st->bytes_out += s->bytes_out;
		st->streams += mux_count(s);
		st->reconnects += s->reconnects;
		st->connected |= s->x != NULL;
		st->sessions++;
		st->rate_up_now += s->lim.in_now;
		st->rate_down_now += s->lim.out_now;
		st->refused_streams += (int64_t)s->lim.refused;
		st->payload += (int64_t)s->lim.bytes;
	}
	st->limits = w->opts.lim;
	st->limits.session_timeout = w->opts.session_timeout;
}

/*
 * Parameters from the dispatcher (CTL_CONFIG, already checked against the
 * contract's bounds), checked like a command line.  o must hold the
 * defaults; pass and encpass are replaced.  Returns 0, or -1 with err.
 */
int
worker_apply_config(const struct ctlmsg_config *c, struct cli_opts *o,
    struct worker_config *wc, char *err)
{
	size_t	i;
	int	m = mode_lookup(c->mode);

	if (!(mode_flags(m) & MODE_F_SERVER)) {
		err_set(err, "config: mode '%s' is not a server mode",
		    c->mode);
		return -1;
	}
	o->mode = (enum cli_mode)m;
	free(o->pass);
	free(o->encpass);
	if ((o->pass = strdup(c->pass)) == NULL ||
	    (o->encpass = strdup(c->encpass)) == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	o->enc_count = c->enc_count;
	o->interval = c->keepalive;
	o->handshake_timeout = c->handshake_timeout;
	o->lim = c->limits;
	o->session_timeout = c->limits.session_timeout;
	o->verbose |= c->verbose;
	wc->oneshot = c->oneshot;
	wc->idle_timeout = c->idle_timeout;
	snprintf(wc->tenant, sizeof(wc->tenant), "%s", c->tenant);
	snprintf(wc->id, sizeof(wc->id), "%s", c->id);
	snprintf(wc->session, sizeof(wc->session), "%s", c->session);
	snprintf(wc->sock_path, sizeof(wc->sock_path), "%s", c->sock);
	o->fwds.n = 0;
	for (i = 0; i < c->nfwd && i < MSG_MAX_FWDS; i++) {
		if (fwd_parse(c->forwards[i], cli_mode_is_reverse(o->mode),
		    &o->fwds.fwds[o->fwds.n], err) == -1)
			return -1;
		o->fwds.n++;
	}
	destpat_list_free(&o->dests);
	for (i = 0; i < c->ndest; i++)
		if (destpat_list_add1(&o->dests, c->dests[i], err) == -1)
			return -1;
	return 0;
}

static void
worker_take_conn(struct worker *w, struct channel *c,
    const struct ctlmsg_conn *m, int fd)
{
	uv_tcp_t	*tcp;
	struct conn	*conn;
	char		 err[ERR_LEN];

	if ((tcp = malloc(sizeof(*tcp))) == NULL) {
		close(fd);
		return;
	}
	uv_tcp_init(w->tun.loop, tcp);
	if (uv_tcp_open(tcp, fd) != 0) {
		close(fd);
		uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
		return;
	}
	/* A relayed request of the HTTP transport is read as a standalone
	 * server reads one it accepted. */
	if (m->http)
		conn = conn_new(w->tun.loop, tcp, CONN_WS_SERVER, NULL, NULL,
		    NULL, err);
	else
		conn = conn_adopt(w->tun.loop, tcp, m->extra, m->nextra, err);
	worker_reply_type(c, CTL_CONN_OK);
	if (conn == NULL) {
		log_warnx("control: %s", err);
		return;
	}
	if (m->http)
		conn_set_peer_name(conn, m->remote[0] ? m->remote : "relay");
	else
		log_info("%s: connection handed over", conn_peer(conn));
	hs_start(&w->tun, conn);
}

/* CONFIG went wrong: say why (CTL_END) and go. */
static int
worker_config_failed(struct worker *w, struct channel *c, const char *why)
{
	struct ctlmsg m;

	log_err("%s", why);
	ctlmsg_init(&m, CTL_END);
	snprintf(m.u.end.text, sizeof(m.u.end.text), "%s", why);
	worker_reply(c, &m);
	tun_stop(&w->tun, 1);
	return CTLMSG_STOP;
}

static int
worker_on_config(void *ctx, struct ctlmsg *m, int *fdp, char *e)
{
	struct channel	*c = ctx;
	struct worker	*w = c->w;
	struct ctlmsg	 r;
	char		 err[ERR_LEN];

	c->configured = 1;
	if (worker_apply_config(&m->u.config, &w->opts, &w->cfg, err) == -1 ||
	    worker_listen(w, *fdp, err) == -1)
		return worker_config_failed(w, c, err);
	*fdp = -1;	/* w->lfd now, or closed */
	log_init("tunneld", w->opts.verbose);
	/* The policy's secrets: weak ones are named in the log. */
	cli_check_secrets(&w->opts);
	crypto_magic(w->opts.pass, w->opts.encpass, w->tun.magic);
	ctlmsg_init(&r, CTL_READY);
	r.u.ready.pid = getpid();
	snprintf(r.u.ready.sock, sizeof(r.u.ready.sock), "%s",
	    w->cfg.sock_path);
	worker_reply(c, &r);
	/* A pooled worker may have waited long for its config. */
	worker_idle_start(w);
	log_info("worker ready for tenant '%s' (%s), %zu forwards",
	    w->cfg.tenant, cli_mode_name(w->opts.mode), w->opts.fwds.n);
	return CTLMSG_OK;
}

static int
worker_on_conn(void *ctx, struct ctlmsg *m, int *fdp, char *err)
{
	struct channel *c = ctx;

	if (*fdp < 0 || c->w->lfd == -1) {
		err_set(err, "a connection without its socket");
		return CTLMSG_REFUSED;
	}
#ifdef TUNNELD_TEST_HOOKS
	/*
	 * Test builds only (the Makefile defines it for sanitizer builds,
	 * never for a release): a worker that tries a system call outside
	 * its filter, once it serves a client, to show it is killed.
	 */
	if (getenv("TUNNELD_TEST_EXECVE") != NULL) {
		char *av[] = { "/bin/true", NULL };

		execve(av[0], av, av + 1);
	}
	/* ... and one that breaks the control contract (a reply nobody
	 * asked for) and then hangs on, as a compromised worker would not
	 * end when its channel closes: only a kill ends it. */
	if (getenv("TUNNELD_TEST_ROGUE") != NULL) {
		ctlmsg_send_type(WORKER_CTL_FD, CTL_CONN_OK, 200, err);
		for (;;)
			sleep(1);
	}
#endif
	worker_take_conn(c->w, c, &m->u.conn, *fdp);
	*fdp = -1;
	return CTLMSG_OK;
}

static int
worker_on_stats_req(void *ctx, struct ctlmsg *m, int *fdp, char *err)
{
	struct channel	*c = ctx;
	struct ctlmsg	*r;

	if ((r = malloc(sizeof(*r))) == NULL)
		return CTLMSG_OK;
	ctlmsg_init(r, CTL_STATS);
	worker_stats(c->w, &r->u.stats);
	worker_reply(c, r);
	free(r);
	return CTLMSG_OK;
}

static int
worker_on_stop(void *ctx, struct ctlmsg *m, int *fdp, char *err)
{
	struct channel *c = ctx;

	log_info("stop requested by the dispatcher");
	snprintf(c->w->end_reason, sizeof(c->w->end_reason), "stopped");
	tun_stop(&c->w->tun, 0);
	return CTLMSG_STOP;
}

/* What a worker accepts, from the dispatcher on fd 3 or its socket. */
const struct ctlmsg_rule worker_rules[WORKER_NRULES] = {
	{ CTL_CONFIG,		WS_IDLE,	worker_on_config },
	{ CTL_CONN,		WS_READY,	worker_on_conn },
	{ CTL_STATS_REQ,	WS_READY,	worker_on_stats_req },
	{ CTL_RELEASE,		WS_READY,	worker_on_release },
	{ CTL_LISTENER,		WS_READY | WS_TAKEOVER, worker_on_listener },
	{ CTL_TAKEOVER_DONE,	WS_READY | WS_TAKEOVER,
	    worker_on_takeover_done },
	{ CTL_STOP,		WS_READY,	worker_on_stop },
	/* A join's answer may come while a takeover waits. */
	{ CTL_JOINED,		WS_READY | WS_TAKEOVER,	worker_on_joined },
};
const size_t worker_nrules = WORKER_NRULES;
