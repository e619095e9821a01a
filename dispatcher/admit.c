/*
 * Admission of a request of the public port (path, -ip, canAccept), then
 * either the worker that already holds its session or, for a new
 * session, getTunnelInfo and a freshly spawned worker; the upgraded
 * socket is handed to the worker and the dispatcher forgets it.
 */

#include <sys/socket.h>

#include <netinet/in.h>

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <microhttpd.h>

#include "err.h"
#include "front.h"
#include "http.h"
#include "log.h"
#include "mode.h"
#include "wsup.h"

#define ADMIT_MAX_HEADERS	64

struct hdrs {
	struct policy_kv kv[ADMIT_MAX_HEADERS];
	char		*names[ADMIT_MAX_HEADERS];
	size_t		 n;
	char		 query[2048];
	size_t		 qlen;
	int		 overflow;
	int		 reqinfo;	/* ?reqinfo, with or without a value */
};

static enum MHD_Result
admit_header_it(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	struct hdrs	*h = cls;
	char		*name;
	size_t		 i;

	if (h->n == ADMIT_MAX_HEADERS) {
		h->overflow = 1;
		return MHD_NO;
	}
	if ((name = strdup(key)) == NULL)
		return MHD_NO;
	for (i = 0; name[i]; i++)
		name[i] = tolower((unsigned char)name[i]);
	h->names[h->n] = name;
	h->kv[h->n].name = name;
	h->kv[h->n].value = value ? value : "";
	h->n++;
	return MHD_YES;
}

static enum MHD_Result
admit_query_it(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	struct hdrs	*h = cls;

	if (strcmp(key, "reqinfo") == 0)
		h->reqinfo = 1;
	/* MHD decoded them: escaped, so that the policy decodes only that. */
	if (policy_query_append(h->query, sizeof(h->query), &h->qlen, key,
	    value) == -1) {
		h->overflow = 1;
		return MHD_NO;
	}
	return MHD_YES;
}

static void
admit_hdrs_free(struct hdrs *h)
{
	size_t i;

	for (i = 0; i < h->n; i++)
		free(h->names[i]);
}

/*
 * The RFC 6455 check of an upgrade, the rule tunneld's server applies too
 * (wsup_check_headers); Origin is not required.  Returns the key, or NULL
 * with *status and *body the answer.
 */
static const char *
admit_ws_check(const char *method, const struct hdrs *h, int *status,
    const char **body)
{
	struct http_hdrs hs;
	size_t		 i;
	int		 k;

	*status = 400;
	*body = "not websocket protocol";
	if (strcmp(method, "GET") != 0)
		return NULL;
	hs.n = 0;
	for (i = 0; i < h->n; i++)
		if (http_hdr_add(&hs, h->kv[i].name, strlen(h->kv[i].name),
		    h->kv[i].value, strlen(h->kv[i].value)) == -1)
			return NULL;
	if ((k = wsup_check_headers(&hs, status, NULL)) == -1) {
		if (*status == 426)
			*body = "websocket version 13 only";
		return NULL;
	}
	return hs.h[k].val;
}

void
admit_remote(struct MHD_Connection *c, char *out, size_t cap,
    struct sockaddr_storage *ss)
{
	const union MHD_ConnectionInfo	*ci;
	const struct sockaddr		*sa;

	memset(ss, 0, sizeof(*ss));
	snprintf(out, cap, "?");
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	if (ci == NULL || (sa = ci->client_addr) == NULL)
		return;
	if (sa->sa_family == AF_INET) {
		memcpy(ss, sa, sizeof(struct sockaddr_in));
		uv_ip4_name((const struct sockaddr_in *)sa, out, cap);
	} else if (sa->sa_family == AF_INET6) {
		memcpy(ss, sa, sizeof(struct sockaddr_in6));
		uv_ip6_name((const struct sockaddr_in6 *)sa, out, cap);
	}
}

static void
admit_upgraded(void *cls, struct MHD_Connection *c, void *req_cls,
    const char *extra_in, size_t extra_in_size, MHD_socket sock,
    struct MHD_UpgradeResponseHandle *urh)
{
	struct freq	*r = req_cls;
	char		 err[ERR_LEN];

	snprintf(r->w->remote, sizeof(r->w->remote), "%s", r->remote);
	if (wrpc_handover(r->w, sock, extra_in, extra_in_size, err) == -1)
		log_warnx("%s: hand-over to worker %d failed: %s", r->remote,
		    (int)r->w->pid, err);
	else {
		hist_observe(&r->d->m.admission[r->route],
		    disp_now_us() - r->t0_us);
		log_debug("%s: handed to worker %d (session %s)", r->remote,
		    (int)r->w->pid, r->w->key);
	}
	iplimit_release(r->d, r);
	/* Closes our copy only: the worker keeps the connection. */
	MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

static enum MHD_Result
admit_upgrade(struct MHD_Connection *c, struct freq *r, const char *key)
{
	struct MHD_Response	*resp;
	char			 accept[29];
	enum MHD_Result		 rc;

	if (wsup_accept_key(key, accept) == -1)
		return reply_now(c, r->d, 400, "bad Sec-WebSocket-Key");
	resp = MHD_create_response_for_upgrade(admit_upgraded, r);
	if (resp == NULL)
		return MHD_NO;
	/* MHD adds "Connection: Upgrade" itself (a second one would make
	 * "Upgrade, Upgrade", which Go clients refuse). */
	MHD_add_response_header(resp, "Upgrade", "websocket");
	MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
	reply_count(r->d, 101);
	rc = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
	MHD_destroy_response(resp);
	return rc;
}

/* Checks a policy's answer before anything is started with it. */
static int
admit_check_tunnel(const struct policy_tunnel *ti, char *err)
{
	struct fwd	f;
	size_t		i;

	if (!mode_name_is_server(ti->mode)) {
		err_set(err, "getTunnelInfo: mode '%s' is not a server mode",
		    ti->mode);
		return -1;
	}
	for (i = 0; i < ti->nfwd; i++)
		if (fwd_parse(ti->forwards[i],
		    mode_name_is_reverse_server(ti->mode), &f, err) == -1)
			return -1;
	return 0;
}

/*
 * One request on its way through admission, carried through the steps of
 * admit_request().  Each step returns 0 to go on, or 1 once it has
 * answered the request (fr->res holds what to give MHD).
 */
struct admit {
	struct MHD_Connection	*c;
	struct freq		*r;
	struct disp		*d;
	const char		*url, *method;
	struct sockaddr_storage	 ss;
	struct hdrs		 h;
	struct policy_req	 preq;
	struct policy		*p;		/* +ref, once loaded */
	const char		*session, *mode, *key;
	char			 rkey[64];	/* -spawnRate bucket */
	enum httpt_kind		 ht;		/* the HTTP transport's ht= */
	enum MHD_Result		 res;
};

static int
admit_answer(struct admit *fr, enum MHD_Result res)
{
	fr->res = res;
	return 1;
}

/* The HTTP transport's open, to the worker r->w: timed as a hand-over. */
static enum MHD_Result
admit_relay_open(struct admit *fr)
{
	enum MHD_Result rc;

	rc = hrelay_start(fr->c, fr->r, fr->method);
	if (hrelay_started(fr->r))
		hist_observe(&fr->d->m.admission[fr->r->route],
		    disp_now_us() - fr->r->t0_us);
	return rc;
}

/* The path and -ip, before anything of the request is read. */
static int
admit_path(struct admit *fr)
{
	struct disp	*d = fr->d;
	size_t		 i;
	int		 ok;

	if (strcmp(fr->url, d->path) != 0)
		return admit_answer(fr, reply_later(fr->c, fr->r,
		    406, ""));
	if (d->ncidr == 0)
		return 0;
	for (i = 0, ok = 0; i < d->ncidr && !ok; i++)
		ok = cidr_match(&d->cidrs[i], (struct sockaddr *)&fr->ss);
	if (ok)
		return 0;
	log_info("%s: refused by -ip", fr->r->remote);
	return admit_answer(fr, reply_later(fr->c, fr->r, 406, ""));
}

/* Headers and query into fr->h, and the request the policy sees. */
static int
admit_headers(struct admit *fr)
{
	struct MHD_Connection	*c = fr->c;
	struct policy_req	*q = &fr->preq;

	MHD_get_connection_values(c, MHD_HEADER_KIND, admit_header_it, &fr->h);
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, admit_query_it,
	    &fr->h);
	if (fr->h.overflow)
		return admit_answer(fr, reply_now(c, fr->d, 431,
		    "too many header fields"));
	fr->session = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
	    "session");
	fr->mode = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
	    "mode");
	fr->session = fr->session ? fr->session : "";
	fr->mode = fr->mode ? fr->mode : "";
	fr->ht = hrelay_kind(c);
	memset(q, 0, sizeof(*q));
	q->method = fr->method;
	q->path = fr->url;
	q->query = fr->h.query;
	q->headers = fr->h.kv;
	q->nheaders = fr->h.n;
	q->remote_addr = fr->r->remote;
	q->session = fr->session;
	q->mode = fr->mode;
	q->tunnels = &fr->d->counter;
	return 0;
}

/* canAccept, and the ?reqinfo it lets through. */
static int
admit_policy(struct admit *fr)
{
	struct disp		*d = fr->d;
	struct policy_verdict	 v;
	char			 err[ERR_LEN], info[64];
	uint64_t		 t0;
	int			 rc;

	if ((fr->p = disp_policy(d)) == NULL)
		return admit_answer(fr, reply_now(fr->c, d, 500,
		    "no policy loaded"));
	t0 = disp_now_us();
	rc = policy_can_accept(fr->p, &fr->preq, &v, err);
	hist_observe(&d->m.policy[DPC_CAN_ACCEPT], disp_now_us() - t0);
	if (rc == -1) {
		atomic_fetch_add(&d->m.policy_errors, 1);
		log_err("%s: canAccept failed: %s", fr->r->remote, err);
		return admit_answer(fr, reply_now(fr->c, d, 500,
		    "policy error"));
	}
	if (!v.accept) {
		log_info("%s: refused by canAccept: %d", fr->r->remote,
		    v.status);
		return admit_answer(fr, reply_later(fr->c, fr->r,
		    v.status, v.body));
	}
	if (!fr->h.reqinfo)
		return 0;
	if (!d->reqinfo)
		return admit_answer(fr, reply_later(fr->c, fr->r,
		    400, "deny reqInfo"));
	snprintf(info, sizeof(info), "{\"Count\":%d}", wreg_count(d));
	return admit_answer(fr, reply_now(fr->c, d, 200, info));
}

/*
 * A request of the HTTP transport other than its open goes to the worker
 * of its session, as a transport it already has: no policy call (the
 * open had them), no log line (a client makes several a second).  An
 * unknown session is refused as an unknown transport, after the delay.
 */
static int
admit_ht(struct admit *fr)
{
	struct dworker	*w = NULL;
	char		 wkey[DISP_KEY_LEN + 1];

	if (fr->ht == HTTPT_NONE || fr->ht == HTTPT_OPEN)
		return 0;
	if (fr->ht == HTTPT_BAD)
		return admit_answer(fr, reply_now(fr->c, fr->d, 400,
		    "ht= is open, poll, push or close"));
	if (fr->session[0] != '\0') {
		wreg_key(fr->session, wkey);
		w = wreg_find(fr->d, wkey);
	}
	if (w == NULL) {
		fr->r->ht_unknown = 1;
		return admit_answer(fr, reply_later(fr->c, fr->r, 404,
		    "unknown transport"));
	}
	fr->r->w = w;
	fr->r->route = DRT_SESSION;
	return admit_answer(fr, hrelay_start(fr->c, fr->r, fr->method));
}

/* The RFC 6455 upgrade, checked as tunneld checks it. */
static int
admit_websocket(struct admit *fr)
{
	const char	*body;
	int		 status;

	/* The HTTP transport's open is no upgrade: its worker checks it. */
	if (fr->ht == HTTPT_OPEN)
		return 0;
	if ((fr->key = admit_ws_check(fr->method, &fr->h, &status,
	    &body)) == NULL)
		return admit_answer(fr, reply_now(fr->c, fr->d, status,
		    body));
	return 0;
}

/*
 * A known session goes to the worker that holds it: Reconnect,
 * Disconnect (the worker checks the password and ends the session) and a
 * request without mode= alike.  Reconnect and Disconnect of an unknown
 * session are refused.
 */
static int
admit_route(struct admit *fr)
{
	struct dworker	*w = NULL;
	char		 wkey[DISP_KEY_LEN + 1];

	if (fr->session[0] != '\0') {
		wreg_key(fr->session, wkey);
		w = wreg_find(fr->d, wkey);
	}
	if (w != NULL) {
		log_info("%s: session %s (%s) to worker %d", fr->r->remote,
		    wkey, fr->mode[0] ? fr->mode : "no mode", (int)w->pid);
		fr->r->w = w;
		fr->r->route = DRT_SESSION;
		return admit_answer(fr, fr->ht == HTTPT_OPEN ?
		    admit_relay_open(fr) : admit_upgrade(fr->c, fr->r,
		    fr->key));
	}
	if (strcmp(fr->mode, "Reconnect") == 0 ||
	    strcmp(fr->mode, "Disconnect") == 0) {
		log_info("%s: %s for unknown session", fr->r->remote, fr->mode);
		return admit_answer(fr, reply_unknown_session(fr->c, fr->r));
	}
	return 0;
}

/*
 * getTunnelInfo, timed: 0 with ti, counted for its tenant (the
 * reservation), 1 if the policy gives no tunnel, -1 on its error; the
 * reason in err.
 */
static int
admit_get_tunnel(struct admit *fr, struct policy_tunnel *ti, char *err)
{
	struct disp	*d = fr->d;
	uint64_t	 t0;
	int		 rc;

	memset(ti, 0, sizeof(*ti));
	t0 = disp_now_us();
	/* The tunnel counts from here (reserved) until its worker is
	 * started, so a concurrent getTunnelInfo sees it in req.tunnels;
	 * then it counts again once its client authenticates. */
	pthread_mutex_lock(&d->admit);
	rc = policy_get_tunnel(fr->p, &fr->preq, ti, err);
	if (rc == 0) {
		pthread_mutex_lock(&d->lock);
		disp_tenant_add(d, ti->tenant, 1);
		pthread_mutex_unlock(&d->lock);
	}
	pthread_mutex_unlock(&d->admit);
	/* The wait for d->admit included: what admission pays for it. */
	hist_observe(&d->m.policy[DPC_GET_TUNNEL], disp_now_us() - t0);
	return rc;
}

/*
 * -spawnRate, a reserved place and getTunnelInfo for a new session.  On 0
 * the caller owns the reservation, counted for ti's tenant, and ti.
 */
static int
admit_tunnel_info(struct admit *fr, struct policy_tunnel *ti)
{
	struct disp	*d = fr->d;
	char		 err[ERR_LEN];
	int		 rc;

	/* Before getTunnelInfo, which a policy may count by. */
	if (!srate_take(d, &fr->ss, fr->rkey)) {
		log_warnx("%s: refused: more than %d new tunnels a second "
		    "from this address (-spawnRate)", fr->r->remote,
		    d->spawn_rate);
		return admit_answer(fr, reply_now(fr->c, d, 429,
		    "too many new tunnels from this address"));
	}
	if (wreg_reserve(d, &rc, err) == -1) {
		log_warnx("%s: refused: %s", fr->r->remote, err);
		return admit_answer(fr, reply_later(fr->c, fr->r,
		    rc, "too many tunnels"));
	}
	if ((rc = admit_get_tunnel(fr, ti, err)) == 0)
		return 0;
	wreg_unreserve(d);
	srate_refund(d, fr->rkey);
	if (rc == 1) {
		log_info("%s: no tunnel: %s", fr->r->remote, err);
		return admit_answer(fr, reply_later(fr->c, fr->r,
		    403, err));
	}
	atomic_fetch_add(&d->m.policy_errors, 1);
	log_err("%s: getTunnelInfo failed: %s", fr->r->remote, err);
	return admit_answer(fr, reply_now(fr->c, d, 500,
	    "policy error"));
}

/* Starts the worker of a new session on the place reserved, and upgrades. */
static int
admit_spawn(struct admit *fr, struct policy_tunnel *ti)
{
	struct disp	*d = fr->d;
	struct dworker	*w = NULL;
	char		 err[ERR_LEN], e2[ERR_LEN];
	int		 rc;

	if (admit_check_tunnel(ti, err) == -1) {
		wreg_unreserve(d);
		rc = -1;
	} else	/* takes the place reserved over */
		rc = wspawn_start(d, fr->p, ti, fr->session, &w, err);
	pthread_mutex_lock(&d->lock);
	disp_tenant_add(d, ti->tenant, -1);	/* the reservation */
	pthread_mutex_unlock(&d->lock);
	if (rc < 0) {
		/* The policy counted a tunnel that never starts. */
		if (policy_end_tunnel(fr->p, ti, "not started", e2) == -1)
			log_warnx("onEndTunnel: %s", e2);
		srate_refund(d, fr->rkey);
		policy_tunnel_cleanse(ti);
		log_err("%s: cannot start a worker: %s", fr->r->remote, err);
		/* -2: every worker uid is taken, a capacity limit as
		 * -maxPendingWorkers is. */
		return admit_answer(fr, reply_now(fr->c, d, rc == -2 ? 503 :
		    500, "cannot start the tunnel"));
	}
	policy_tunnel_cleanse(ti);
	snprintf(w->spawn_ip, sizeof(w->spawn_ip), "%s", fr->rkey);
	log_info("%s: tenant '%s' session %s: worker %d started",
	    fr->r->remote, w->tenant, w->key, (int)w->pid);
	fr->r->w = w;
	fr->r->route = DRT_NEW;
	return admit_answer(fr, fr->ht == HTTPT_OPEN ? admit_relay_open(fr) :
	    admit_upgrade(fr->c, fr->r, fr->key));
}

/* The steps in their order; see front.h. */
enum MHD_Result
admit_request(struct MHD_Connection *c, struct freq *r, const char *url,
    const char *method)
{
	struct admit		 fr;
	struct policy_tunnel	 ti;

	memset(&fr, 0, sizeof(fr));
	r->t0_us = disp_now_us();	/* the head is complete */
	fr.c = c;
	fr.r = r;
	fr.d = r->d;
	fr.url = url;
	fr.method = method;
	admit_remote(c, r->remote, sizeof(r->remote), &fr.ss);
	if (admit_path(&fr) == 0 && admit_headers(&fr) == 0 &&
	    admit_ht(&fr) == 0 &&
	    admit_policy(&fr) == 0 && admit_websocket(&fr) == 0 &&
	    admit_route(&fr) == 0 &&
	    admit_tunnel_info(&fr, &ti) == 0)
		admit_spawn(&fr, &ti);
	if (fr.p != NULL)
		policy_unref(fr.p);
	admit_hdrs_free(&fr.h);
	return fr.res;
}

/* Under d->lock: the slot of ip in tab, created when create. */
