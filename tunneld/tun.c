/*
 * The process as a whole: one start-up path for a standalone tunneld and a
 * worker (tun_init, tun_run, tun_free), orderly stop, and the hooks through
 * which a worker learns what its tunnel does.  The core (hs, sess, server,
 * mux) calls the tun_* wrappers below and never worker mode itself.
 */

#include <signal.h>
#include <stdio.h>
#include <string.h>
#ifdef __GLIBC__	/* defined by the headers above */
#include <malloc.h>
#endif

#include "crypto.h"
#include "log.h"
#include "tunneld.h"

static void
tun_signal(uv_signal_t *sig, int signum)
{
	struct tun *t = sig->data;

	log_info("signal %d: stopping", signum);
	snprintf(t->stop_reason, sizeof(t->stop_reason), "signal %d", signum);
	tun_stop(t, 0);
}

/*
 * A busy transport allocates and frees 64-128 KiB buffers at a high rate,
 * and every SYNC from the peer frees a group of 30 packets (up to 2 MiB)
 * of history at once.  glibc's default trim threshold (twice its dynamic
 * mmap threshold: about 256 KiB here) hands each such group back to the
 * kernel, and the next packets fault the pages in again: about 75 000
 * page faults a second in the sending tunneld at 8 Gbit/s, measured with
 * perf stat.  The heap keeps up to TUN_TRIM_KEEP free while traffic flows;
 * the session's tick trims it all once the tunnel is idle (sess_tick).
 */
static void
tun_malloc_tune(void)
{
#ifdef __GLIBC__
	mallopt(M_MMAP_THRESHOLD, TUN_MMAP_MIN);
	mallopt(M_TRIM_THRESHOLD, TUN_TRIM_KEEP);
#endif
}

void
tun_init(struct tun *t, uv_loop_t *loop, struct cli_opts *o,
    const struct tun_hooks *hooks)
{
	memset(t, 0, sizeof(*t));
	tun_malloc_tune();
	t->loop = loop;
	t->o = o;
	t->hooks = hooks;
	t->worker = hooks != NULL;
	TAILQ_INIT(&t->sessions);
	TAILQ_INIT(&t->handshakes);
	crypto_magic(o->pass, o->encpass, t->magic);
	uv_signal_init(loop, &t->sigint);
	uv_signal_init(loop, &t->sigterm);
	t->sigint.data = t->sigterm.data = t;
	uv_signal_start(&t->sigint, tun_signal, SIGINT);
	uv_signal_start(&t->sigterm, tun_signal, SIGTERM);
	/* Initialised here so that tun_stop may close them whatever failed. */
	if (cli_mode_is_server(o->mode)) {
		uv_tcp_init(loop, &t->listener);
		t->listener.data = t;
	} else {
		uv_timer_init(loop, &t->retry_timer);
		t->retry_timer.data = t;
	}
}

int
tun_start(struct tun *t, char *err)
{
	if (cli_mode_is_server(t->o->mode))
		return server_start(t, err);
	return client_start(t, err);
}

int
tun_run(struct tun *t)
{
	uv_run(t->loop, UV_RUN_DEFAULT);
	uv_loop_close(t->loop);
	return t->exit_code;
}

void
tun_free(struct tun *t)
{
	client_free(t);
}

/* Ends the process cleanly: every handle closes, then uv_run returns. */
void
tun_stop(struct tun *t, int code)
{
	struct sess *s;

	if (t->stopping)
		return;
	t->stopping = 1;
	t->exit_code = code;
	uv_close((uv_handle_t *)&t->sigint, NULL);
	uv_close((uv_handle_t *)&t->sigterm, NULL);
	if (t->hooks != NULL && t->hooks->stopping != NULL)
		t->hooks->stopping(t);
	if (cli_mode_is_server(t->o->mode)) {
		uv_close((uv_handle_t *)&t->listener, NULL);
		hs_close_all(t);
		while ((s = TAILQ_FIRST(&t->sessions)) != NULL)
			sess_free(s, "shutting down");
	} else {
		/* Not one in progress either: it would start a session. */
		hs_close_all(t);
		uv_timer_stop(&t->retry_timer);
		uv_close((uv_handle_t *)&t->retry_timer, NULL);
		if (t->csess != NULL)
			sess_free(t->csess, "shutting down");
	}
}

void
tun_session_ended(struct tun *t, const char *why)
{
	if (t->hooks != NULL && t->hooks->session_ended != NULL)
		t->hooks->session_ended(t, why);
}

void
tun_authed(struct tun *t)
{
	if (t->hooks != NULL && t->hooks->authed != NULL)
		t->hooks->authed(t);
}

int
tun_is_oneshot(const struct tun *t)
{
	return t->hooks != NULL && t->hooks->is_oneshot != NULL &&
	    t->hooks->is_oneshot(t);
}

int
tun_takeover(struct tun *t, const struct msg_fwdlist *eff, char *err)
{
	if (t->hooks == NULL || t->hooks->takeover == NULL)
		return 0;
	return t->hooks->takeover(t, eff, err);
}

int
tun_listener_take(struct tun *t, const char *src)
{
	if (t->hooks == NULL || t->hooks->listener_take == NULL)
		return -1;
	return t->hooks->listener_take(t, src);
}

void
tun_listeners_drop(struct tun *t)
{
	if (t->hooks != NULL && t->hooks->listeners_drop != NULL)
		t->hooks->listeners_drop(t);
}
