/*
 * tunneld worker: one tenant's tunnel server, started by the dispatcher.
 * It gets its parameters over the control socket on fd 3 (never argv or the
 * environment), then upgraded client sockets with CTL_CONN, on fd 3 or on a
 * unix socket in the dispatcher's state directory through which a restarted
 * dispatcher finds it again.  Unlike relayd's children, a worker outlives
 * its dispatcher: it ends when its session does, or on CTL_STOP.
 *
 * This file: start-up and the tunnel's hooks (struct tun_hooks).  The
 * control channels are worker_chan.c, their messages worker_ctl.c, the
 * listener hand-over worker_lsn.c, the idle timer worker_idle.c.
 */

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "confine.h"
#include "ctl.h"
#include "ctlmsg.h"
#include "err.h"
#include "log.h"
#include "worker_int.h"

/* The worker whose tunnel calls a hook: set by worker_main (hooks.arg). */
struct worker *
worker_of(const struct tun *t)
{
	return t->hooks->arg;
}

/* The tunnel is over: tell every dispatcher listening, then go. */
static void
worker_session_ended(struct tun *t, const char *why)
{
	struct worker *w = worker_of(t);

	w->had_session = 1;
	if (TAILQ_EMPTY(&t->sessions)) {
		snprintf(w->end_reason, sizeof(w->end_reason), "%s", why);
		tun_stop(t, 0);
	}
}

/*
 * A client passed the challenge: tell every dispatcher listening, once.
 * Until then the dispatcher counts this worker as pending, not as a
 * tunnel (it may be an attacker's, who never knew the password).
 */
static void
worker_session_authed(struct tun *t)
{
	struct worker	*w = worker_of(t);
	char		 err[ERR_LEN];
	size_t		 i;

	if (w->authed)
		return;
	w->authed = 1;
	for (i = 0; i < WORKER_MAX_CHANNELS; i++)
		if (w->ch[i] != NULL && w->ch[i]->configured &&
		    ctlmsg_send_type(w->ch[i]->fd, CTL_AUTHED, 200, err) == -1)
			/* Short-lived channels may be gone already. */
			log_debug("control: %s", err);
}

static int
worker_is_oneshot(const struct tun *t)
{
	return worker_of(t)->cfg.oneshot;
}

/* tun_stop began: every dispatcher listening learns why, then we go. */
static void
worker_stop(struct tun *t)
{
	struct worker	*w = worker_of(t);
	struct ctlmsg	 end;
	char		 err[ERR_LEN];
	size_t		 i;

	/* A signal names itself in tun_signal. */
	if (t->stop_reason[0] != '\0')
		snprintf(w->end_reason, sizeof(w->end_reason), "%s",
		    t->stop_reason);
	ctlmsg_init(&end, CTL_END);
	snprintf(end.u.end.text, sizeof(end.u.end.text), "%s",
	    w->end_reason[0] ? w->end_reason : "stopped");
	for (i = 0; i < WORKER_MAX_CHANNELS; i++)
		if (w->ch[i] != NULL) {
			ctlmsg_send(w->ch[i]->fd, &end, -1, 200, err);
			worker_channel_close(w->ch[i]);
		}
	/* Its socket's name is the dispatcher's to remove: we may not
	 * write its directory. */
	if (w->lfd != -1) {
		uv_poll_stop(&w->lpoll);
		uv_close((uv_handle_t *)&w->lpoll, NULL);
	}
	uv_close((uv_handle_t *)&w->idle, NULL);
	worker_join_close(w);
}

/* A worker before its CONFIG: the options of a command line without
 * any, and the hooks that make its tunnel a worker's. */
static struct worker *
worker_new(void)
{
	struct worker *w;

	if ((w = calloc(1, sizeof(*w))) == NULL)
		return NULL;
	w->hooks = (struct tun_hooks){
		.session_ended = worker_session_ended,
		.authed = worker_session_authed,
		.is_oneshot = worker_is_oneshot,
		.stopping = worker_stop,
		.takeover = worker_takeover,
		.listener_take = worker_listener_take,
		.listeners_drop = worker_listeners_drop,
		.join_dial = worker_join_dial,
		.arg = w,
	};
	w->lfd = -1;
	w->started = time(NULL);
	cli_defaults(&w->opts);
	w->opts.pass = strdup("");
	w->opts.encpass = strdup("");
	w->opts.mode = MODE_SERVER;
	return w;
}

static void
worker_free(struct worker *w)
{
	if (w->lfd != -1)
		close(w->lfd);
	cli_free(&w->opts);
	free(w);
}

int
worker_run(uid_t ctl_uid)
{
	struct worker	*w;
	struct tun	*t;
	int		 rc;

	if ((w = worker_new()) == NULL)
		return 1;
	w->ctl_uid = ctl_uid;
	log_init("tunneld", 0);
	log_set_prefix("worker: ");
	signal(SIGPIPE, SIG_IGN);
	t = &w->tun;
	/* Its listener stays unused (clients come over the control socket). */
	tun_init(t, uv_default_loop(), &w->opts, &w->hooks);
	uv_timer_init(t->loop, &w->idle);
	w->idle.data = w;
	worker_join_init(w);
	worker_channel_add(w, WORKER_CTL_FD, 0);
	rc = tun_run(t);
	tun_free(t);
	worker_free(w);
	return rc;
}

/*
 * "tunneld worker -confined": started with exec by a dispatcher without
 * a zygote.  Its first message (CTL_SPAWN) says which uid to become and
 * how to confine itself, done before anything else is read.
 */
static int
worker_confine_self(char *err)
{
	struct ctlmsg	m;
	int		fd = -1, rc, nolandlock;

	if (!ctl_wait(WORKER_CTL_FD, WORKER_SPAWN_MS)) {
		err_set(err, "no CTL_SPAWN in %d ms", WORKER_SPAWN_MS);
		return -1;
	}
	if ((rc = ctlmsg_recv(WORKER_CTL_FD, &m, &fd, err)) != 1 ||
	    m.type != CTL_SPAWN) {
		if (rc == 1) {
			err_set(err, "expected CTL_SPAWN, got %s",
			    ctlmsg_name(m.type));
			ctlmsg_clear(&m);
		} else if (rc != -1)
			err_set(err, "no CTL_SPAWN");
		if (fd != -1)
			close(fd);
		return -1;
	}
	if (fd != -1)
		close(fd);
	confine_warm_up();
	rc = confine_worker(&m.u.spawn, &nolandlock, err);
	if (rc == 0 && nolandlock)
		log_warnx("Landlock is not available: the worker's file "
		    "system view is not restricted");
	ctlmsg_clear(&m);
	return rc;
}

int
worker_main(int argc, char **argv)
{
	char	err[ERR_LEN];
	uid_t	uid = getuid();
	int	i, json, confined = 0;

	if (fcntl(WORKER_CTL_FD, F_GETFD) == -1) {
		fprintf(stderr, "tunneld worker: started by the dispatcher "
		    "only (no control socket on fd 3)\n");
		return 2;
	}
	log_init("tunneld", 0);
	log_set_prefix("worker: ");
	/* "-confined" (below) and "-logFormat FORMAT", the dispatcher's. */
	for (i = 2; i < argc; i++)
		if (strcmp(argv[i], "-confined") == 0)
			confined = 1;
		else if (strcmp(argv[i], "-logFormat") == 0 && i + 1 < argc &&
		    log_format_parse(argv[i + 1], &json, err) == 0) {
			log_set_json(json);
			i++;
		}
	if (!confined)
		return worker_run(uid);
	if (worker_confine_self(err) == -1) {
		log_err("%s", err);
		return 1;
	}
	/* As a forked worker does: the exit handlers (LeakSanitizer's
	 * check in the suite's builds) need calls the filter denies. */
	_exit(worker_run(uid));
}
