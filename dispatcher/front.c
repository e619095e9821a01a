/*
 * The public port: libmicrohttpd with upgrades.  Each request goes through
 * admission (path, -ip, canAccept), then either to the worker that already
 * holds its session or, for a new session, to getTunnelInfo and a freshly
 * spawned worker; the upgraded socket is handed to the worker and the
 * dispatcher forgets it.  Refusals wait kptunnel's 3 s with the connection
 * suspended, so that no handler thread sleeps.
 */

#include <sys/socket.h>

#include <netinet/in.h>

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <microhttpd.h>
#include <openssl/crypto.h>

#include "disp.h"
#include "err.h"
#include "log.h"
#include "mode.h"
#include "peerkey.h"
#include "http.h"
#include "wsup.h"

#define FRONT_MAX_HEADERS	64

enum front_metric { M_101, M_POLICY, M_400, M_404, M_5XX, M_OTHER };

struct freq {
	struct disp	*d;
	int		 counted;	/* holds a -perIp slot */
	int		 resumed;	/* back from the refusal delay */
	int		 status;
	char		 body[1024];
	struct dworker	*w;		/* hand-over target (+ref) */
	char		 remote[64];
};

static void	front_ip_release(struct disp *, struct freq *);
static int	front_rate_take(struct disp *, const struct sockaddr_storage *,
		    char *);
static void	front_head_sweep(struct disp *, uint64_t);
static void	front_rate_sweep(struct disp *, uint64_t);

struct hdrs {
	struct policy_kv kv[FRONT_MAX_HEADERS];
	char		*names[FRONT_MAX_HEADERS];
	size_t		 n;
	char		 query[2048];
	size_t		 qlen;
	int		 overflow;
	int		 reqinfo;	/* ?reqinfo, with or without a value */
};

static void
front_count(struct disp *d, int status)
{
	int i;

	if (status == 101)
		i = M_101;
	else if (status == 400)
		i = M_400;
	else if (status == 404)
		i = M_404;
	else if (status >= 500)
		i = M_5XX;
	else if (status == 403 || status == 406 || status == 401)
		i = M_POLICY;
	else
		i = M_OTHER;
	atomic_fetch_add(&d->m.admissions[i], 1);
}

static enum MHD_Result
front_reply(struct MHD_Connection *c, struct disp *d, int status,
    const char *body)
{
	struct MHD_Response	*resp;
	enum MHD_Result		 rc;

	front_count(d, status);
	resp = MHD_create_response_from_buffer(strlen(body), (void *)body,
	    MHD_RESPMEM_MUST_COPY);
	if (resp == NULL)
		return MHD_NO;
	MHD_add_response_header(resp, "Content-Type",
	    "text/plain; charset=utf-8");
	/* One request per connection: a second head would escape the
	 * -headTimeout deadline, which only the first one has. */
	MHD_add_response_header(resp, MHD_HTTP_HEADER_CONNECTION, "close");
	rc = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

/* Answers after the refusal delay, with the connection suspended. */
static enum MHD_Result
front_refuse_later(struct MHD_Connection *c, struct freq *r, int status,
    const char *body)
{
	struct disp	*d = r->d;
	struct delayed	*dl;

	if (d->refuse_delay_ms == 0 || (dl = calloc(1, sizeof(*dl))) == NULL)
		return front_reply(c, d, status, body);
	r->status = status;
	snprintf(r->body, sizeof(r->body), "%s", body);
	dl->conn = c;
	dl->due = disp_now_ms() + d->refuse_delay_ms;
	pthread_mutex_lock(&d->lock);
	TAILQ_INSERT_TAIL(&d->delayed, dl, link);
	MHD_suspend_connection(c);
	pthread_mutex_unlock(&d->lock);
	return MHD_YES;
}

/* Loop thread: resume the refused requests whose delay is over. */
void
front_delay_tick(struct disp *d)
{
	static uint64_t	 swept;
	struct delayed	*dl;
	uint64_t	 now = disp_now_ms();

	front_head_sweep(d, now);
	if (now - swept >= 1000) {
		front_rate_sweep(d, now);
		swept = now;
	}

	pthread_mutex_lock(&d->lock);
	while ((dl = TAILQ_FIRST(&d->delayed)) != NULL && dl->due <= now) {
		TAILQ_REMOVE(&d->delayed, dl, link);
		MHD_resume_connection(dl->conn);
		free(dl);
	}
	pthread_mutex_unlock(&d->lock);
}

static enum MHD_Result
front_header_it(void *cls, enum MHD_ValueKind kind, const char *key,
    const char *value)
{
	struct hdrs	*h = cls;
	char		*name;
	size_t		 i;

	if (h->n == FRONT_MAX_HEADERS) {
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
front_query_it(void *cls, enum MHD_ValueKind kind, const char *key,
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
front_hdrs_free(struct hdrs *h)
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
front_ws_check(const char *method, const struct hdrs *h, int *status,
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

static void
front_remote(struct MHD_Connection *c, char *out, size_t cap,
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
front_upgraded(void *cls, struct MHD_Connection *c, void *req_cls,
    const char *extra_in, size_t extra_in_size, MHD_socket sock,
    struct MHD_UpgradeResponseHandle *urh)
{
	struct freq	*r = req_cls;
	char		 err[ERR_LEN];

	snprintf(r->w->remote, sizeof(r->w->remote), "%s", r->remote);
	if (wrpc_handover(r->w, sock, extra_in, extra_in_size, err) == -1)
		log_warnx("%s: hand-over to worker %d failed: %s", r->remote,
		    (int)r->w->pid, err);
	else
		log_debug("%s: handed to worker %d (session %s)", r->remote,
		    (int)r->w->pid, r->w->key);
	front_ip_release(r->d, r);
	/* Closes our copy only: the worker keeps the connection. */
	MHD_upgrade_action(urh, MHD_UPGRADE_ACTION_CLOSE);
}

static enum MHD_Result
front_upgrade(struct MHD_Connection *c, struct freq *r, const char *key)
{
	struct MHD_Response	*resp;
	char			 accept[29];
	enum MHD_Result		 rc;

	if (wsup_accept_key(key, accept) == -1)
		return front_reply(c, r->d, 400, "bad Sec-WebSocket-Key");
	resp = MHD_create_response_for_upgrade(front_upgraded, r);
	if (resp == NULL)
		return MHD_NO;
	/* MHD adds "Connection: Upgrade" itself (a second one would make
	 * "Upgrade, Upgrade", which Go clients refuse). */
	MHD_add_response_header(resp, "Upgrade", "websocket");
	MHD_add_response_header(resp, "Sec-WebSocket-Accept", accept);
	front_count(r->d, 101);
	rc = MHD_queue_response(c, MHD_HTTP_SWITCHING_PROTOCOLS, resp);
	MHD_destroy_response(resp);
	return rc;
}

/* Checks a policy's answer before anything is started with it. */
static int
front_check_tunnel(const struct policy_tunnel *ti, char *err)
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
 * front_request().  Each step returns 0 to go on, or 1 once it has
 * answered the request (fr->res holds what to give MHD).
 */
struct front_req {
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
	enum MHD_Result		 res;
};

static int
front_req_answer(struct front_req *fr, enum MHD_Result res)
{
	fr->res = res;
	return 1;
}

/* The path and -ip, before anything of the request is read. */
static int
front_req_path(struct front_req *fr)
{
	struct disp	*d = fr->d;
	size_t		 i;
	int		 ok;

	if (strcmp(fr->url, d->path) != 0)
		return front_req_answer(fr, front_refuse_later(fr->c, fr->r,
		    406, ""));
	if (d->ncidr == 0)
		return 0;
	for (i = 0, ok = 0; i < d->ncidr && !ok; i++)
		ok = cidr_match(&d->cidrs[i], (struct sockaddr *)&fr->ss);
	if (ok)
		return 0;
	log_info("%s: refused by -ip", fr->r->remote);
	return front_req_answer(fr, front_refuse_later(fr->c, fr->r, 406, ""));
}

/* Headers and query into fr->h, and the request the policy sees. */
static int
front_req_headers(struct front_req *fr)
{
	struct MHD_Connection	*c = fr->c;
	struct policy_req	*q = &fr->preq;

	MHD_get_connection_values(c, MHD_HEADER_KIND, front_header_it, &fr->h);
	MHD_get_connection_values(c, MHD_GET_ARGUMENT_KIND, front_query_it,
	    &fr->h);
	if (fr->h.overflow)
		return front_req_answer(fr, front_reply(c, fr->d, 431,
		    "too many header fields"));
	fr->session = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
	    "session");
	fr->mode = MHD_lookup_connection_value(c, MHD_GET_ARGUMENT_KIND,
	    "mode");
	fr->session = fr->session ? fr->session : "";
	fr->mode = fr->mode ? fr->mode : "";
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
front_req_policy(struct front_req *fr)
{
	struct disp		*d = fr->d;
	struct policy_verdict	 v;
	char			 err[ERR_LEN], info[64];
	uint64_t		 t0;
	int			 rc;

	if ((fr->p = disp_policy(d)) == NULL)
		return front_req_answer(fr, front_reply(fr->c, d, 500,
		    "no policy loaded"));
	t0 = disp_now_ms();
	rc = policy_can_accept(fr->p, &fr->preq, &v, err);
	atomic_fetch_add(&d->m.policy_calls, 1);
	atomic_fetch_add(&d->m.policy_usec, (disp_now_ms() - t0) * 1000);
	if (rc == -1) {
		atomic_fetch_add(&d->m.policy_errors, 1);
		log_err("%s: canAccept failed: %s", fr->r->remote, err);
		return front_req_answer(fr, front_reply(fr->c, d, 500,
		    "policy error"));
	}
	if (!v.accept) {
		log_info("%s: refused by canAccept: %d", fr->r->remote,
		    v.status);
		return front_req_answer(fr, front_refuse_later(fr->c, fr->r,
		    v.status, v.body));
	}
	if (!fr->h.reqinfo)
		return 0;
	if (!d->reqinfo)
		return front_req_answer(fr, front_refuse_later(fr->c, fr->r,
		    400, "deny reqInfo"));
	snprintf(info, sizeof(info), "{\"Count\":%d}", wreg_count(d));
	return front_req_answer(fr, front_reply(fr->c, d, 200, info));
}

/* The RFC 6455 upgrade, checked as tunneld checks it. */
static int
front_req_websocket(struct front_req *fr)
{
	const char	*body;
	int		 status;

	if ((fr->key = front_ws_check(fr->method, &fr->h, &status,
	    &body)) == NULL)
		return front_req_answer(fr, front_reply(fr->c, fr->d, status,
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
front_req_route(struct front_req *fr)
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
		return front_req_answer(fr, front_upgrade(fr->c, fr->r,
		    fr->key));
	}
	if (strcmp(fr->mode, "Reconnect") == 0 ||
	    strcmp(fr->mode, "Disconnect") == 0) {
		log_info("%s: %s for unknown session", fr->r->remote, fr->mode);
		return front_req_answer(fr, front_refuse_later(fr->c, fr->r,
		    404, "unknown session"));
	}
	return 0;
}

/*
 * -spawnRate, a reserved place and getTunnelInfo for a new session.  On 0
 * the caller owns the reservation, counted for ti's tenant, and ti.
 */
static int
front_req_tunnel_info(struct front_req *fr, struct policy_tunnel *ti)
{
	struct disp	*d = fr->d;
	char		 err[ERR_LEN];
	uint64_t	 t0;
	int		 rc;

	/* Before getTunnelInfo, which a policy may count by. */
	if (!front_rate_take(d, &fr->ss, fr->rkey)) {
		log_warnx("%s: refused: more than %d new tunnels a second "
		    "from this address (-spawnRate)", fr->r->remote,
		    d->spawn_rate);
		return front_req_answer(fr, front_reply(fr->c, d, 429,
		    "too many new tunnels from this address"));
	}
	if (wreg_reserve(d, &rc, err) == -1) {
		log_warnx("%s: refused: %s", fr->r->remote, err);
		return front_req_answer(fr, front_refuse_later(fr->c, fr->r,
		    rc, "too many tunnels"));
	}
	memset(ti, 0, sizeof(*ti));
	t0 = disp_now_ms();
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
	atomic_fetch_add(&d->m.policy_calls, 1);
	atomic_fetch_add(&d->m.policy_usec, (disp_now_ms() - t0) * 1000);
	if (rc == 0)
		return 0;
	wreg_unreserve(d);
	front_rate_refund(d, fr->rkey);
	if (rc == 1) {
		log_info("%s: no tunnel: %s", fr->r->remote, err);
		return front_req_answer(fr, front_refuse_later(fr->c, fr->r,
		    403, err));
	}
	atomic_fetch_add(&d->m.policy_errors, 1);
	log_err("%s: getTunnelInfo failed: %s", fr->r->remote, err);
	return front_req_answer(fr, front_reply(fr->c, d, 500,
	    "policy error"));
}

/* Starts the worker of a new session on the place reserved, and upgrades. */
static int
front_req_spawn(struct front_req *fr, struct policy_tunnel *ti)
{
	struct disp	*d = fr->d;
	struct dworker	*w = NULL;
	char		 err[ERR_LEN], e2[ERR_LEN];
	int		 rc;

	if (front_check_tunnel(ti, err) == -1) {
		wreg_unreserve(d);
		rc = -1;
	} else	/* takes the place reserved over */
		rc = wspawn_start(d, fr->p, ti, fr->session, &w, err);
	pthread_mutex_lock(&d->lock);
	disp_tenant_add(d, ti->tenant, -1);	/* the reservation */
	pthread_mutex_unlock(&d->lock);
	if (rc == -1) {
		/* The policy counted a tunnel that never starts. */
		if (policy_end_tunnel(fr->p, ti, "not started", e2) == -1)
			log_warnx("onEndTunnel: %s", e2);
		front_rate_refund(d, fr->rkey);
		policy_tunnel_cleanse(ti);
		log_err("%s: cannot start a worker: %s", fr->r->remote, err);
		return front_req_answer(fr, front_reply(fr->c, d, 500,
		    "cannot start the tunnel"));
	}
	policy_tunnel_cleanse(ti);
	snprintf(w->spawn_ip, sizeof(w->spawn_ip), "%s", fr->rkey);
	log_info("%s: tenant '%s' session %s: worker %d started",
	    fr->r->remote, w->tenant, w->key, (int)w->pid);
	fr->r->w = w;
	return front_req_answer(fr, front_upgrade(fr->c, fr->r, fr->key));
}

/*
 * A request whose head is complete: path and -ip, headers, canAccept (and
 * ?reqinfo), the websocket checks, then the worker of a known session or,
 * for a new one, getTunnelInfo and a new worker.
 */
static enum MHD_Result
front_request(struct MHD_Connection *c, struct freq *r, const char *url,
    const char *method)
{
	struct front_req	 fr;
	struct policy_tunnel	 ti;

	memset(&fr, 0, sizeof(fr));
	fr.c = c;
	fr.r = r;
	fr.d = r->d;
	fr.url = url;
	fr.method = method;
	front_remote(c, r->remote, sizeof(r->remote), &fr.ss);
	if (!r->counted)	/* refused at the first call */
		return MHD_NO;
	if (front_req_path(&fr) == 0 && front_req_headers(&fr) == 0 &&
	    front_req_policy(&fr) == 0 && front_req_websocket(&fr) == 0 &&
	    front_req_route(&fr) == 0 &&
	    front_req_tunnel_info(&fr, &ti) == 0)
		front_req_spawn(&fr, &ti);
	if (fr.p != NULL)
		policy_unref(fr.p);
	front_hdrs_free(&fr.h);
	return fr.res;
}

/* Under d->lock: the slot of ip in tab, created when create. */
static struct ipslot *
front_slot(struct ipslot **tab, const char *ip, int create)
{
	struct ipslot **pp = &tab[disp_hash(ip, DISP_IPSLOTS)], *sl;

	for (sl = *pp; sl != NULL && strcmp(sl->ip, ip) != 0; sl = sl->next)
		;
	if (sl == NULL && create && (sl = calloc(1, sizeof(*sl))) != NULL) {
		snprintf(sl->ip, sizeof(sl->ip), "%s", ip);
		sl->next = *pp;
		*pp = sl;
	}
	return sl;
}

/* Under d->lock: one less for ip in tab; empty slots go. */
static void
front_slot_put(struct ipslot **tab, const char *ip)
{
	struct ipslot **pp, *sl;

	for (pp = &tab[disp_hash(ip, DISP_IPSLOTS)]; (sl = *pp) != NULL; pp = &sl->next)
		if (strcmp(sl->ip, ip) == 0) {
			if (--sl->n <= 0) {
				*pp = sl->next;
				free(sl);
			}
			return;
		}
}

/*
 * Counts a request in progress for its address; 0 if the address already
 * has -perIp of them.  libmicrohttpd's own per-address limit counts
 * connections, which stay counted for a while after their hand-over.
 */
static int
front_ip_take(struct disp *d, const char *ip)
{
	struct ipslot	*sl;
	int		 ok = 0;

	pthread_mutex_lock(&d->lock);
	if ((sl = front_slot(d->ipslots, ip, 1)) != NULL &&
	    sl->n < d->per_ip) {
		sl->n++;
		ok = 1;
	}
	pthread_mutex_unlock(&d->lock);
	return ok;
}

static void
front_ip_release(struct disp *d, struct freq *r)
{
	if (!r->counted)
		return;
	r->counted = 0;
	pthread_mutex_lock(&d->lock);
	front_slot_put(d->ipslots, r->remote);
	pthread_mutex_unlock(&d->lock);
}

/*
 * The unit of the per-address limits (-headPerIp, -spawnRate), as text:
 * see peerkey.h.
 */
static void
front_addr_key(const struct sockaddr *sa, char *out, size_t cap)
{
	struct peerkey k;

	peerkey_from(&k, sa);
	peerkey_format(&k, out, cap);
}

/*
 * libmicrohttpd's accept policy: an address with -headPerIp connections
 * whose request head is incomplete gets no more (closed at once), so a
 * few addresses dribbling heads (slowloris) can not fill the
 * -maxPending connections.  Counted in front_notify(); two pool threads
 * may each let one more through.
 */
static enum MHD_Result
front_accept_policy(void *cls, const struct sockaddr *sa, socklen_t len)
{
	struct disp	*d = cls;
	struct ipslot	*sl;
	char		 ip[64];
	int		 ok;

	front_addr_key(sa, ip, sizeof(ip));
	pthread_mutex_lock(&d->lock);
	sl = front_slot(d->headslots, ip, 0);
	ok = sl == NULL || sl->n < d->head_per_ip;
	pthread_mutex_unlock(&d->lock);
	if (!ok)
		log_debug("%s: refused: %d incomplete requests (-headPerIp)",
		    ip, d->head_per_ip);
	return ok ? MHD_YES : MHD_NO;
}

/* Under d->lock: fc's head is complete, or it is closing. */
static void
front_head_done_locked(struct disp *d, struct fconn *fc)
{
	if (fc->listed)
		TAILQ_REMOVE(&d->heads, fc, link);
	fc->listed = 0;
	if (fc->counted)
		front_slot_put(d->headslots, fc->ip);
	fc->counted = 0;
	if (fc->fd != -1)
		close(fc->fd);
	fc->fd = -1;
}

/*
 * Every connection of the public port, from its start: counted for its
 * address and given an absolute deadline for its request head
 * (-headTimeout), which libmicrohttpd's idle timeout is not.
 */
static void
front_notify(void *cls, struct MHD_Connection *c, void **socket_context,
    enum MHD_ConnectionNotificationCode toe)
{
	const union MHD_ConnectionInfo	*ci;
	struct disp			*d = cls;
	struct fconn			*fc = *socket_context;
	struct ipslot			*sl;

	if (toe == MHD_CONNECTION_NOTIFY_CLOSED) {
		if (fc == NULL)
			return;
		pthread_mutex_lock(&d->lock);
		front_head_done_locked(d, fc);
		pthread_mutex_unlock(&d->lock);
		free(fc);
		*socket_context = NULL;
		return;
	}
	if ((fc = calloc(1, sizeof(*fc))) == NULL)
		return;
	fc->fd = -1;
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
	front_addr_key(ci != NULL ? ci->client_addr : NULL, fc->ip,
	    sizeof(fc->ip));
	/* A descriptor of our own: shutting the socket down at the deadline
	 * never touches a number libmicrohttpd may have closed and reused. */
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci != NULL)
		fc->fd = fcntl(ci->connect_fd, F_DUPFD_CLOEXEC, 0);
	fc->deadline = disp_now_ms() + (uint64_t)d->head_timeout * 1000;
	pthread_mutex_lock(&d->lock);
	if ((sl = front_slot(d->headslots, fc->ip, 1)) != NULL) {
		sl->n++;
		fc->counted = 1;
	}
	if (fc->fd != -1) {
		TAILQ_INSERT_TAIL(&d->heads, fc, link);
		fc->listed = 1;
	}
	pthread_mutex_unlock(&d->lock);
	*socket_context = fc;
}

/* The request head of c is all here: off the -headPerIp count. */
static void
front_head_done(struct disp *d, struct MHD_Connection *c)
{
	const union MHD_ConnectionInfo *ci;

	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_SOCKET_CONTEXT);
	if (ci == NULL || ci->socket_context == NULL)
		return;
	pthread_mutex_lock(&d->lock);
	front_head_done_locked(d, ci->socket_context);
	pthread_mutex_unlock(&d->lock);
}

/* Loop thread: connections past their head deadline are shut down. */
static void
front_head_sweep(struct disp *d, uint64_t now)
{
	struct fconn *fc;

	pthread_mutex_lock(&d->lock);
	while ((fc = TAILQ_FIRST(&d->heads)) != NULL && fc->deadline <= now) {
		TAILQ_REMOVE(&d->heads, fc, link);
		fc->listed = 0;
		log_info("%s: request head not complete in %d s "
		    "(-headTimeout): closed", fc->ip, d->head_timeout);
		/* libmicrohttpd reads the end and closes the connection;
		 * it stays counted for its address until then. */
		shutdown(fc->fd, SHUT_RDWR);
		close(fc->fd);
		fc->fd = -1;
	}
	pthread_mutex_unlock(&d->lock);
}

/*
 * Takes one new worker's token from the address's bucket (-spawnRate a
 * second, -spawnBurst at most); 0 if it has none left, or if too many
 * addresses are being tracked.  ip (64 bytes) gets the bucket's key.
 */
static int
front_rate_take(struct disp *d, const struct sockaddr_storage *ss, char *ip)
{
	struct rateslot	**pp, *sl;
	uint64_t	  now = disp_now_ms(), full;
	int		  ok = 0;

	front_addr_key((const struct sockaddr *)ss, ip, 64);
	full = (uint64_t)d->spawn_burst * 1000;
	pthread_mutex_lock(&d->lock);
	pp = &d->rateslots[disp_hash(ip, DISP_IPSLOTS)];
	for (sl = *pp; sl != NULL && strcmp(sl->ip, ip) != 0; sl = sl->next)
		;
	if (sl == NULL && d->nrateslots < DISP_RATE_SLOTS &&
	    (sl = calloc(1, sizeof(*sl))) != NULL) {
		snprintf(sl->ip, sizeof(sl->ip), "%s", ip);
		sl->mtokens = full;
		sl->at = now;
		sl->next = *pp;
		*pp = sl;
		d->nrateslots++;
	}
	if (sl != NULL) {
		/* rate a second is rate thousandths a millisecond */
		sl->mtokens += (now - sl->at) * (uint64_t)d->spawn_rate;
		if (sl->mtokens > full)
			sl->mtokens = full;
		sl->at = now;
		if (sl->mtokens >= 1000) {
			sl->mtokens -= 1000;
			ok = 1;
		}
	}
	pthread_mutex_unlock(&d->lock);
	return ok;
}

/*
 * Gives a token back: no worker was started, or its client authenticated.
 * The limit is on workers nobody authenticated to, so that one address
 * may still start many tunnels that work.
 */
void
front_rate_refund(struct disp *d, const char *ip)
{
	struct rateslot	*sl;
	uint64_t	 full = (uint64_t)d->spawn_burst * 1000;

	if (ip == NULL || ip[0] == '\0')
		return;
	pthread_mutex_lock(&d->lock);
	for (sl = d->rateslots[disp_hash(ip, DISP_IPSLOTS)]; sl != NULL; sl = sl->next)
		if (strcmp(sl->ip, ip) == 0) {
			sl->mtokens += 1000;
			if (sl->mtokens > full)
				sl->mtokens = full;
			break;
		}
	pthread_mutex_unlock(&d->lock);
}

/* Loop thread: forget addresses whose bucket is full again. */
static void
front_rate_sweep(struct disp *d, uint64_t now)
{
	struct rateslot	**pp, *sl;
	uint64_t	  full = (uint64_t)d->spawn_burst * 1000;
	size_t		  i;

	pthread_mutex_lock(&d->lock);
	for (i = 0; i < DISP_IPSLOTS; i++)
		for (pp = &d->rateslots[i]; (sl = *pp) != NULL;) {
			if (sl->mtokens + (now - sl->at) *
			    (uint64_t)d->spawn_rate >= full) {
				*pp = sl->next;
				free(sl);
				d->nrateslots--;
			} else
				pp = &sl->next;
		}
	pthread_mutex_unlock(&d->lock);
}

static enum MHD_Result
front_access(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **req_cls)
{
	struct disp *d = cls;
	struct freq *r = *req_cls;

	if (r == NULL) {
		struct sockaddr_storage ss;

		if ((r = calloc(1, sizeof(*r))) == NULL)
			return MHD_NO;
		r->d = d;
		*req_cls = r;
		front_head_done(d, c);
		front_remote(c, r->remote, sizeof(r->remote), &ss);
		if (!front_ip_take(d, r->remote)) {
			log_warnx("%s: too many requests in progress (-perIp %d)",
			    r->remote, d->per_ip);
			return front_reply(c, d, 503,
			    "too many requests from this address");
		}
		r->counted = 1;
		return MHD_YES;		/* headers are all here next call */
	}
	if (r->status != 0)		/* back from the refusal delay */
		return front_reply(c, d, r->status, r->body);
	if (*upload_data_size != 0) {
		*upload_data_size = 0;	/* a body is not expected: drop it */
		return MHD_YES;
	}
	return front_request(c, r, url, method);
}

static void
front_completed(void *cls, struct MHD_Connection *c, void **req_cls,
    enum MHD_RequestTerminationCode toe)
{
	struct freq *r = *req_cls;

	if (r == NULL)
		return;
	front_ip_release(r->d, r);
	if (r->w != NULL)
		wreg_unref(r->d, r->w);
	free(r);
	*req_cls = NULL;
}

static struct MHD_Daemon *
front_daemon(struct disp *d, unsigned flags, const struct sockaddr *sa)
{
	TAILQ_INIT(&d->heads);
	return MHD_start_daemon(flags | MHD_ALLOW_UPGRADE |
	    MHD_ALLOW_SUSPEND_RESUME, 0, front_accept_policy, d, front_access,
	    d, MHD_OPTION_SOCK_ADDR, sa,
	    MHD_OPTION_CONNECTION_LIMIT, (unsigned)d->max_pending,
	    /* A bound on idle connections; requests are counted above. */
	    MHD_OPTION_PER_IP_CONNECTION_LIMIT,
	    (unsigned)(d->per_ip < 64 ? 256 : 4 * d->per_ip),
	    MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)d->request_timeout,
	    MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)32768,
	    MHD_OPTION_NOTIFY_COMPLETED, front_completed, d,
	    MHD_OPTION_NOTIFY_CONNECTION, front_notify, d,
	    sa != NULL ? MHD_OPTION_THREAD_POOL_SIZE : MHD_OPTION_END, 2u,
	    MHD_OPTION_LISTEN_BACKLOG_SIZE, 511u,
	    MHD_OPTION_END);
}

int
front_start(struct disp *d, char *err)
{
	struct addrinfo	 hints, *res = NULL;
	char		 port[16];
	int		 rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", d->listen.port);
	rc = getaddrinfo(d->listen.name[0] ? d->listen.name : NULL, port,
	    &hints, &res);
	if (rc != 0) {
		err_set(err, "%s: %s", d->listen.name, gai_strerror(rc));
		return -1;
	}
	d->front = front_daemon(d, MHD_USE_EPOLL_INTERNAL_THREAD |
	    (res->ai_family == AF_INET6 ? MHD_USE_DUAL_STACK : 0),
	    res->ai_addr);
	freeaddrinfo(res);
	if (d->front == NULL) {
		err_set(err, "cannot listen on %s:%d", d->listen.name,
		    d->listen.port);
		return -1;
	}
	return 0;
}

int
front_start_unlisted(struct disp *d, char *err)
{
	d->front = front_daemon(d, MHD_USE_INTERNAL_POLLING_THREAD |
	    MHD_USE_NO_LISTEN_SOCKET, NULL);
	if (d->front == NULL) {
		err_set(err, "cannot start libmicrohttpd");
		return -1;
	}
	return 0;
}

int
front_add_connection(struct disp *d, int fd, const struct sockaddr *sa,
    socklen_t len)
{
	return MHD_add_connection(d->front, fd, sa, len) == MHD_YES ? 0 : -1;
}

void
front_stop(struct disp *d)
{
	struct delayed	*dl;
	struct ipslot	*sl;
	struct rateslot	*rs;
	size_t		 i;

	if (d->front == NULL)
		return;
	/* Suspended connections must be resumed before the daemon stops. */
	pthread_mutex_lock(&d->lock);
	while ((dl = TAILQ_FIRST(&d->delayed)) != NULL) {
		TAILQ_REMOVE(&d->delayed, dl, link);
		MHD_resume_connection(dl->conn);
		free(dl);
	}
	pthread_mutex_unlock(&d->lock);
	MHD_stop_daemon(d->front);
	d->front = NULL;
	for (i = 0; i < DISP_IPSLOTS; i++) {
		while ((sl = d->ipslots[i]) != NULL) {
			d->ipslots[i] = sl->next;
			free(sl);
		}
		while ((rs = d->rateslots[i]) != NULL) {
			d->rateslots[i] = rs->next;
			free(rs);
		}
	}
	d->nrateslots = 0;
}
