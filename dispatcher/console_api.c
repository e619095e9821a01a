/*
 * The console's JSON answers: the tunnels and their figures, stopping
 * one, reloading the policy, and the dispatcher's status (its counters
 * and its policy) that the page shows.
 */

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"
#include "ctlmsg.h"
#include "err.h"
#include "log.h"

size_t
console_snapshot(struct disp *d, struct dworker ***out)
{
	struct dworker	 *w, **v;
	size_t		  n = 0, i = 0;

	pthread_mutex_lock(&d->lock);
	LIST_FOREACH(w, &d->workers, link)
		n++;
	if ((v = calloc(n + 1, sizeof(*v))) != NULL)
		LIST_FOREACH(w, &d->workers, link) {
			w->refs++;
			v[i++] = w;
		}
	pthread_mutex_unlock(&d->lock);
	*out = v;
	return v ? i : 0;
}

void
console_release(struct disp *d, struct dworker **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		wreg_unref(d, v[i]);
	free(v);
}

void
console_remember(struct dworker *w, const struct ctlmsg_stats *st)
{
	/* Never backwards: a counter only grows. */
	if (st->bytes_in > __atomic_load_n(&w->last_in, __ATOMIC_RELAXED))
		__atomic_store_n(&w->last_in, st->bytes_in, __ATOMIC_RELAXED);
	if (st->bytes_out > __atomic_load_n(&w->last_out, __ATOMIC_RELAXED))
		__atomic_store_n(&w->last_out, st->bytes_out,
		    __ATOMIC_RELAXED);
}

json_t *
console_tunnel(struct dworker *w)
{
	struct ctlmsg_stats	 st;
	json_t			*o;
	char			 err[ERR_LEN];

	o = json_pack("{ss ss ss ss ss ss si sI sI}", "id", w->key,
	    "tenant", w->tenant, "tunnel", w->id, "session", w->session,
	    "client", w->remote, "mode", w->mode, "pid", (int)w->pid,
	    "started", (json_int_t)w->started,
	    "handovers", (json_int_t)w->handovers);
	if (o == NULL)
		return NULL;
	if (wrpc_stats(w->sock, w->uid, &st, err) == -1) {
		json_object_set_new(o, "state",
		    json_string(wreg_state_name(w, 0)));
		json_object_set_new(o, "error", json_string(err));
		return o;
	}
	console_remember(w, &st);
	/* pending (no client authenticated yet), connected or detached */
	json_object_set_new(o, "state",
	    json_string(wreg_state_name(w, st.connected)));
	json_object_set_new(o, "bytes_in", json_integer(st.bytes_in));
	json_object_set_new(o, "bytes_out", json_integer(st.bytes_out));
	json_object_set_new(o, "streams", json_integer(st.streams));
	json_object_set_new(o, "reconnects", json_integer(st.reconnects));
	json_object_set_new(o, "connected", json_boolean(st.connected));
	/* The policy's limits (0: none) and what the tunnel uses of them. */
	json_object_set_new(o, "limits", json_pack("{sI sI sI sI sI sI}",
	    "maxStreams", (json_int_t)st.limits.max_streams,
	    "rateUp", (json_int_t)st.limits.rate_up,
	    "rateDown", (json_int_t)st.limits.rate_down,
	    "maxBytes", (json_int_t)st.limits.max_bytes,
	    "maxConnectRate", (json_int_t)st.limits.max_connect_rate,
	    "sessionTimeout", (json_int_t)st.limits.session_timeout));
	json_object_set_new(o, "usage", json_pack("{sI sI sI sI sI}",
	    "streams", (json_int_t)st.streams,
	    "rateUp", (json_int_t)st.rate_up_now,
	    "rateDown", (json_int_t)st.rate_down_now,
	    "bytes", (json_int_t)st.payload,
	    "refusedStreams", (json_int_t)st.refused_streams));
	return o;
}

enum MHD_Result
console_tunnels(struct MHD_Connection *c, struct disp *d)
{
	struct dworker	**v;
	json_t		 *a = json_array();
	size_t		  n, i;

	n = console_snapshot(d, &v);
	for (i = 0; i < n; i++)
		json_array_append_new(a, console_tunnel(v[i]));
	console_release(d, v, n);
	return console_json(c, 200, a);
}

/* The admissions by outcome, named as tunneld_admissions_total's status. */
static json_t *
console_admissions(struct disp *d)
{
	static const char *const labels[] = { "101", "policy_refusal",
	    "400", "404", "5xx", "other" };
	json_t	*o = json_object();
	size_t	 i;

	for (i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
		json_object_set_new(o, labels[i],
		    json_integer((json_int_t)atomic_load(&d->m.admissions[i])));
	return o;
}

static json_t *
console_exits(struct disp *d)
{
	json_t	*o = json_object();
	size_t	 i;

	for (i = 0; i < DWE_COUNT; i++)
		json_object_set_new(o, wmon_end_name(i),
		    json_integer((json_int_t)atomic_load(&d->m.exits[i])));
	return o;
}

json_t *
console_status(struct disp *d)
{
	struct disp_reload	 r;
	json_t			*o, *p;

	pthread_mutex_lock(&d->lock);
	r = d->reload;
	pthread_mutex_unlock(&d->lock);
	console_printable(r.error, sizeof(r.error), r.error);
	p = json_pack("{ss ss sI}", "handler", d->handler_lua, "canAccept",
	    d->canaccept_lua, "loaded", (json_int_t)r.loaded);
	if (p != NULL && r.at != 0)
		json_object_set_new(p, "lastReload", json_pack("{sI sb ss}",
		    "at", (json_int_t)r.at, "ok", r.ok, "error", r.error));
	o = json_pack("{ss so so sI sI sI so}", "version", TUNNELD_VERSION,
	    "admissions", console_admissions(d), "exits", console_exits(d),
	    "policyErrors", (json_int_t)atomic_load(&d->m.policy_errors),
	    "workersStarted", (json_int_t)atomic_load(&d->m.spawned),
	    "workersEnded", (json_int_t)atomic_load(&d->m.ended),
	    "policy", p ? p : json_null());
	return o;
}

enum MHD_Result
console_status_answer(struct MHD_Connection *c, struct disp *d)
{
	return console_json(c, 200, console_status(d));
}

enum MHD_Result
console_stop_tunnel(struct MHD_Connection *c, struct disp *d, const char *id)
{
	struct dworker	**v;
	size_t		  n, i;
	char		  err[ERR_LEN];
	int		  found = 0, rc = 0;

	n = console_snapshot(d, &v);
	for (i = 0; i < n; i++)
		if (strcmp(v[i]->key, id) == 0) {
			found = 1;
			rc = wrpc_stop(v[i], err);
		}
	console_release(d, v, n);
	if (!found)
		return console_error(c, 404, "no such tunnel");
	if (rc == -1)
		return console_error(c, 502, err);
	log_info("console: tunnel %s stopped", id);
	return console_json(c, 200, json_pack("{ss}", "stopped", id));
}

enum MHD_Result
console_reload(struct MHD_Connection *c, struct disp *d)
{
	char err[ERR_LEN];

	if (disp_reload(d, err) == -1) {
		log_err("console: reload failed: %s", err);
		return console_error(c, 500, err);
	}
	log_info("console: policy reloaded");
	return console_json(c, 200, json_pack("{sb}", "reloaded", 1));
}
