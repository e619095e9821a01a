/*
 * The process as a whole: orderly stop.
 */

#include "tunneld.h"

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
	if (t->worker)
		worker_stop(t);
	if (cli_mode_is_server(t->o->mode)) {
		uv_close((uv_handle_t *)&t->listener, NULL);
		hs_close_all(t);
		while ((s = TAILQ_FIRST(&t->sessions)) != NULL)
			sess_free(s, "shutting down");
	} else {
		uv_timer_stop(&t->retry_timer);
		uv_close((uv_handle_t *)&t->retry_timer, NULL);
		if (t->csess != NULL)
			sess_free(t->csess, "shutting down");
	}
}
