/*
 * The admin console: a JSON API to list and stop tunnels and reload the
 * policy, and Prometheus metrics.  Loopback by default, which a web page
 * in the operator's browser reaches too: so every request needs the bearer
 * token (main.c always has one), a Host that names the console itself (DNS
 * rebinding), no cross-site Origin or Sec-Fetch-Site, and a POST must say
 * it carries JSON (a form or text/plain POST is sent without a preflight).
 */

#include <sys/socket.h>

#include <netinet/in.h>
#include <arpa/inet.h>

#include <stddef.h>
#include <stdio.h>
#include <strings.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <microhttpd.h>
#include <openssl/crypto.h>

#include "crypto.h"
#include "ctl.h"
#include "ctlmsg.h"
#include "disp.h"
#include "err.h"
#include "log.h"

static enum MHD_Result
console_send(struct MHD_Connection *c, int status, const char *type,
    char *body)
{
	struct MHD_Response	*resp;
	enum MHD_Result		 rc;

	resp = MHD_create_response_from_buffer(strlen(body), body,
	    MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", type);
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	rc = MHD_queue_response(c, status, resp);
	MHD_destroy_response(resp);
	return rc;
}

static enum MHD_Result
console_json(struct MHD_Connection *c, int status, json_t *v)
{
	char *s = json_dumps(v, JSON_COMPACT);

	json_decref(v);
	if (s == NULL)
		return MHD_NO;
	return console_send(c, status, "application/json", s);
}

static enum MHD_Result
console_error(struct MHD_Connection *c, int status, const char *msg)
{
	return console_json(c, status, json_pack("{ss}", "error", msg));
}

static enum MHD_Result
console_unauthorized(struct MHD_Connection *c, const char *msg)
{
	struct MHD_Response	*resp;
	enum MHD_Result		 rc;
	json_t			*v = json_pack("{ss}", "error", msg);
	char			*body = json_dumps(v, JSON_COMPACT);

	json_decref(v);
	if (body == NULL)
		return MHD_NO;
	resp = MHD_create_response_from_buffer(strlen(body), body,
	    MHD_RESPMEM_MUST_FREE);
	if (resp == NULL) {
		free(body);
		return MHD_NO;
	}
	MHD_add_response_header(resp, "Content-Type", "application/json");
	MHD_add_response_header(resp, "Cache-Control", "no-store");
	MHD_add_response_header(resp, "WWW-Authenticate",
	    "Bearer realm=\"tunneld console\"");
	rc = MHD_queue_response(c, 401, resp);
	MHD_destroy_response(resp);
	return rc;
}

/* A snapshot of the registry, each entry referenced. */
static size_t
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

static void
console_release(struct disp *d, struct dworker **v, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		wreg_unref(d, v[i]);
	free(v);
}

static json_t *
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
	if (wrpc_stats(w->sock, w->uid, &st, err) == -1) {
		json_object_set_new(o, "state",
		    json_string(wreg_state_name(w, 0)));
		json_object_set_new(o, "error", json_string(err));
		return o;
	}
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

static enum MHD_Result
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

static enum MHD_Result
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

static void
console_metric(char **buf, size_t *len, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
console_metric(char **buf, size_t *len, const char *fmt, ...)
{
	va_list	 ap;
	char	 line[512], *nb;
	int	 n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) ||
	    (nb = realloc(*buf, *len + n + 1)) == NULL)
		return;
	memcpy(nb + *len, line, n + 1);
	*buf = nb;
	*len += n;
}

/* One tenant's sums (-metricsPerTenant). */
struct console_tenant {
	char		 name[CTLMSG_ID_LEN];
	long long	 tunnels, in, out, streams, refused;
};

/* The live tunnels and the sums of their figures. */
struct console_totals {
	size_t		 tunnels;
	long long	 in, out, streams;
	struct console_tenant *ten;	/* one per tunnel answering, sorted */
	size_t		 nten;
};

static int
console_tenant_cmp(const void *a, const void *b)
{
	return strcmp(((const struct console_tenant *)a)->name,
	    ((const struct console_tenant *)b)->name);
}

/*
 * -metricsPerTenant: the figures of each tenant, a label each (tenant
 * names are [A-Za-z0-9._:@+-], nothing to escape).  Off by default: one
 * series per tenant is what a metrics store pays for.
 */
static void
console_metrics_tenants(char **buf, size_t *len, struct console_totals *t)
{
	struct console_tenant	*v = t->ten, sum;
	size_t			 i, j;

	if (v == NULL)
		return;
	qsort(v, t->nten, sizeof(*v), console_tenant_cmp);
	console_metric(buf, len, "# HELP tunneld_tenant_tunnels Live tunnels "
	    "per tenant.\n# TYPE tunneld_tenant_tunnels gauge\n"
	    "# HELP tunneld_tenant_streams Open streams per tenant.\n"
	    "# TYPE tunneld_tenant_streams gauge\n"
	    "# HELP tunneld_tenant_bytes_total Transport bytes of a tenant's "
	    "live tunnels.\n# TYPE tunneld_tenant_bytes_total counter\n"
	    "# HELP tunneld_tenant_refused_streams_total Streams refused by a "
	    "tenant's limits in its live tunnels.\n"
	    "# TYPE tunneld_tenant_refused_streams_total counter\n");
	for (i = 0; i < t->nten; i = j) {
		sum = v[i];
		for (j = i + 1; j < t->nten &&
		    strcmp(v[j].name, sum.name) == 0; j++) {
			sum.tunnels += v[j].tunnels;
			sum.in += v[j].in;
			sum.out += v[j].out;
			sum.streams += v[j].streams;
			sum.refused += v[j].refused;
		}
		console_metric(buf, len,
		    "tunneld_tenant_tunnels{tenant=\"%s\"} %lld\n"
		    "tunneld_tenant_streams{tenant=\"%s\"} %lld\n"
		    "tunneld_tenant_bytes_total{tenant=\"%s\",direction=\"in\"} "
		    "%lld\n"
		    "tunneld_tenant_bytes_total{tenant=\"%s\",direction=\"out\"} "
		    "%lld\n"
		    "tunneld_tenant_refused_streams_total{tenant=\"%s\"} %lld\n",
		    sum.name, sum.tunnels, sum.name, sum.streams, sum.name,
		    sum.in, sum.name, sum.out, sum.name, sum.refused);
	}
}

/* Asks every live worker for its figures; one that does not answer
 * counts as a tunnel with none. */
static void
console_totals(struct disp *d, struct console_totals *t)
{
	struct dworker		**v;
	struct ctlmsg_stats	  st;
	char			  err[ERR_LEN];
	size_t			  i;

	memset(t, 0, sizeof(*t));
	t->tunnels = console_snapshot(d, &v);
	if (d->metrics_per_tenant && t->tunnels > 0)
		t->ten = calloc(t->tunnels, sizeof(*t->ten));
	for (i = 0; i < t->tunnels; i++) {
		if (wrpc_stats(v[i]->sock, v[i]->uid, &st, err) == -1)
			continue;
		t->in += st.bytes_in;
		t->out += st.bytes_out;
		t->streams += st.streams;
		if (t->ten != NULL) {
			snprintf(t->ten[t->nten].name, sizeof(t->ten->name),
			    "%s", v[i]->tenant);
			t->ten[t->nten].tunnels = 1;
			t->ten[t->nten].in = st.bytes_in;
			t->ten[t->nten].out = st.bytes_out;
			t->ten[t->nten].streams = st.streams;
			t->ten[t->nten].refused = st.refused_streams;
			t->nten++;
		}
	}
	console_release(d, v, t->tunnels);
}

/* What the live workers report, and the admission outcomes. */
static void
console_metrics_gauges(char **buf, size_t *len, struct disp *d,
    const struct console_totals *t)
{
	static const char *const labels[] = { "101", "policy_refusal",
	    "400", "404", "5xx", "other" };
	size_t i;

	console_metric(buf, len, "# HELP tunneld_tunnels Live tunnels "
	    "(workers).\n# TYPE tunneld_tunnels gauge\ntunneld_tunnels %zu\n",
	    t->tunnels);
	console_metric(buf, len, "# HELP tunneld_streams Open streams in "
	    "all tunnels.\n# TYPE tunneld_streams gauge\ntunneld_streams %lld\n",
	    t->streams);
	console_metric(buf, len, "# HELP tunneld_bytes_total Tunnel bytes "
	    "on the transports of live tunnels.\n# TYPE tunneld_bytes_total "
	    "counter\ntunneld_bytes_total{direction=\"in\"} %lld\n"
	    "tunneld_bytes_total{direction=\"out\"} %lld\n", t->in, t->out);
	console_metric(buf, len, "# HELP tunneld_admissions_total Upgrade "
	    "requests by outcome.\n# TYPE tunneld_admissions_total counter\n");
	for (i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
		console_metric(buf, len,
		    "tunneld_admissions_total{status=\"%s\"} %lu\n", labels[i],
		    atomic_load(&d->m.admissions[i]));
}

/* The dispatcher's own counters, one line each, and the policy's time. */
static void
console_metrics_counters(char **buf, size_t *len, struct disp *d)
{
	static const struct {
		const char	*name;
		const char	*help;
		size_t		 off;	/* in struct disp_metrics */
	} counters[] = {
		{ "tunneld_policy_errors_total",
		    "Lua errors, budget and memory overruns.",
		    offsetof(struct disp_metrics, policy_errors) },
		{ "tunneld_workers_started_total", "Workers spawned.",
		    offsetof(struct disp_metrics, spawned) },
		{ "tunneld_workers_ended_total", "Workers ended.",
		    offsetof(struct disp_metrics, ended) },
	};
	atomic_ulong	*v;
	size_t		 i;

	for (i = 0; i < sizeof(counters) / sizeof(counters[0]); i++) {
		v = (atomic_ulong *)((char *)&d->m + counters[i].off);
		console_metric(buf, len, "# HELP %s %s\n# TYPE %s counter\n"
		    "%s %lu\n", counters[i].name, counters[i].help,
		    counters[i].name, counters[i].name, atomic_load(v));
	}
	console_metric(buf, len, "# HELP tunneld_policy_seconds Time in "
	    "policy calls.\n# TYPE tunneld_policy_seconds summary\n"
	    "tunneld_policy_seconds_sum %.6f\ntunneld_policy_seconds_count "
	    "%lu\n", atomic_load(&d->m.policy_usec) / 1e6,
	    atomic_load(&d->m.policy_calls));
}

static enum MHD_Result
console_metrics(struct MHD_Connection *c, struct disp *d)
{
	struct console_totals	 t;
	char			*buf = NULL;
	size_t			 len = 0;

	console_totals(d, &t);
	console_metric(&buf, &len, "# HELP tunneld_build_info The running "
	    "version.\n# TYPE tunneld_build_info gauge\n"
	    "tunneld_build_info{version=\"%s\"} 1\n", TUNNELD_VERSION);
	console_metrics_gauges(&buf, &len, d, &t);
	console_metrics_tenants(&buf, &len, &t);
	free(t.ten);
	console_metrics_counters(&buf, &len, d);
	if (buf == NULL)
		return MHD_NO;
	return console_send(c, 200, "text/plain; version=0.0.4", buf);
}

/*
 * The bearer token, compared in constant time: both sides are hashed
 * first, so neither the token's bytes nor its length leak through timing.
 */
static int
console_authorized(struct MHD_Connection *c, struct disp *d)
{
	const char	*h;
	uint8_t		 a[32], b[32];
	int		 ok;

	h = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Authorization");
	if (h == NULL || d->console_token[0] == '\0' ||
	    strncasecmp(h, "Bearer ", 7) != 0)
		return 0;
	h += 7;
	while (*h == ' ')
		h++;
	crypto_sha256(h, strlen(h), a);
	crypto_sha256(d->console_token, strlen(d->console_token), b);
	ok = CRYPTO_memcmp(a, b, sizeof(a)) == 0;
	OPENSSL_cleanse(b, sizeof(b));
	return ok;
}

/* Whether host ("name:port", "[v6]:port") is one of the names given. */
static int
console_host_is(const char *host, const char *name, int port)
{
	char	want[300];
	int	v6 = strchr(name, ':') != NULL;

	snprintf(want, sizeof(want), v6 ? "[%s]:%d" : "%s:%d", name, port);
	if (strcasecmp(host, want) == 0)
		return 1;
	/* A browser leaves out the default port. */
	snprintf(want, sizeof(want), v6 ? "[%s]" : "%s", name);
	return port == 80 && strcasecmp(host, want) == 0;
}

/*
 * The console's own names: the -console host as given, the address the
 * connection arrived on (a console on 0.0.0.0 answers to each of the
 * host's addresses), and on loopback "localhost".  Any other Host is a
 * page that made its own name resolve to us (DNS rebinding).
 */
static int
console_host_ok(struct MHD_Connection *c, struct disp *d, const char *host)
{
	const union MHD_ConnectionInfo	*ci;
	struct sockaddr_storage		 ss;
	socklen_t			 len = sizeof(ss);
	char				 ip[INET6_ADDRSTRLEN];
	int				 port = d->console.port, loop = 0;

	if (host == NULL)
		return 0;
	if (console_host_is(host, d->console.name, port))
		return 1;
	ci = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
	if (ci == NULL || getsockname(ci->connect_fd, (struct sockaddr *)&ss,
	    &len) == -1)
		return 0;
	if (ss.ss_family == AF_INET) {
		struct sockaddr_in *in = (struct sockaddr_in *)&ss;

		inet_ntop(AF_INET, &in->sin_addr, ip, sizeof(ip));
		loop = (ntohl(in->sin_addr.s_addr) >> 24) == 127;
	} else if (ss.ss_family == AF_INET6) {
		struct sockaddr_in6 *in6 = (struct sockaddr_in6 *)&ss;

		inet_ntop(AF_INET6, &in6->sin6_addr, ip, sizeof(ip));
		loop = IN6_IS_ADDR_LOOPBACK(&in6->sin6_addr);
	} else
		return 0;
	if (console_host_is(host, ip, port))
		return 1;
	return loop && console_host_is(host, "localhost", port);
}

/*
 * 0 if the request may go on, else the status that refuses it: 403 for a
 * foreign Host, a cross-site Origin or Sec-Fetch-Site, 401 without the
 * token, 415 for a POST that is not JSON.  Checked in this order, so
 * that a page learns nothing about the token.
 */
static int
console_check(struct MHD_Connection *c, struct disp *d, int post,
    const char **why)
{
	const char	*host, *origin, *site, *ct;
	char		 want[320];
	size_t		 n;

	host = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Host");
	if (!console_host_ok(c, d, host)) {
		*why = "Host is not this console";
		return 403;
	}
	origin = MHD_lookup_connection_value(c, MHD_HEADER_KIND, "Origin");
	snprintf(want, sizeof(want), "http://%s", host);
	if (origin != NULL && strcasecmp(origin, want) != 0) {
		*why = "cross-site request";
		return 403;
	}
	site = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
	    "Sec-Fetch-Site");
	if (site != NULL && strcmp(site, "same-origin") != 0 &&
	    strcmp(site, "none") != 0) {
		*why = "cross-site request";
		return 403;
	}
	if (!console_authorized(c, d)) {
		*why = "bearer token required";
		return 401;
	}
	if (post) {
		ct = MHD_lookup_connection_value(c, MHD_HEADER_KIND,
		    "Content-Type");
		n = strlen("application/json");
		if (ct == NULL || strncasecmp(ct, "application/json", n) != 0 ||
		    (ct[n] != '\0' && ct[n] != ';' && ct[n] != ' ')) {
			*why = "Content-Type: application/json required";
			return 415;
		}
	}
	return 0;
}

static enum MHD_Result
console_access(void *cls, struct MHD_Connection *c, const char *url,
    const char *method, const char *version, const char *upload_data,
    size_t *upload_data_size, void **req_cls)
{
	struct disp	*d = cls;
	char		 err[ERR_LEN], id[DISP_KEY_LEN + 1];
	const char	*why;
	int		 status;
	int		 get = strcmp(method, "GET") == 0;
	int		 post = strcmp(method, "POST") == 0;

	if (*req_cls == NULL) {
		*req_cls = (void *)1;
		return MHD_YES;
	}
	if (*upload_data_size != 0) {
		*upload_data_size = 0;
		return MHD_YES;
	}
	if ((status = console_check(c, d, post, &why)) != 0) {
		if (status == 401)
			return console_unauthorized(c, why);
		return console_error(c, status, why);
	}
	if (get && strcmp(url, "/api") == 0)
		return console_json(c, 200, json_pack("{ssss}", "program",
		    "dispatcher", "version", TUNNELD_VERSION));
	if (get && strcmp(url, "/api/tunnels") == 0)
		return console_tunnels(c, d);
	if (get && strcmp(url, "/metrics") == 0)
		return console_metrics(c, d);
	if (post && strcmp(url, "/api/reload") == 0) {
		if (disp_reload(d, err) == -1) {
			log_err("console: reload failed: %s", err);
			return console_error(c, 500, err);
		}
		log_info("console: policy reloaded");
		return console_json(c, 200, json_pack("{sb}", "reloaded", 1));
	}
	if (post && strncmp(url, "/api/tunnels/", 13) == 0 &&
	    strlen(url) == 13 + DISP_KEY_LEN + 5 &&
	    strcmp(url + 13 + DISP_KEY_LEN, "/stop") == 0) {
		memcpy(id, url + 13, DISP_KEY_LEN);
		id[DISP_KEY_LEN] = '\0';
		return console_stop_tunnel(c, d, id);
	}
	if (get || post)
		return console_error(c, 404, "not found");
	return console_error(c, 405, "method not allowed");
}

int
console_start(struct disp *d, char *err)
{
	struct addrinfo	 hints, *res = NULL;
	char		 port[16];
	int		 rc, v6;
	struct MHD_OptionItem lo[] = {
		{ MHD_OPTION_LISTEN_SOCKET, d->console_lfd, NULL },
		{ MHD_OPTION_END, 0, NULL }
	};

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	snprintf(port, sizeof(port), "%d", d->console.port);
	/* Bound before we gave up root (dpriv_listen): served now. */
	if (d->console_lfd != -1)
		v6 = dpriv_family(d->console_lfd) == AF_INET6;
	else if ((rc = getaddrinfo(d->console.name, port, &hints, &res)) != 0) {
		err_set(err, "-console %s: %s", d->console.name,
		    gai_strerror(rc));
		return -1;
	} else {
		v6 = res->ai_family == AF_INET6;
		lo[0].option = MHD_OPTION_SOCK_ADDR;
		lo[0].value = 0;
		lo[0].ptr_value = res->ai_addr;
	}
	d->admin = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD |
	    MHD_USE_THREAD_PER_CONNECTION |
	    (v6 ? MHD_USE_IPv6 : 0), 0, NULL, NULL,
	    console_access, d, MHD_OPTION_ARRAY, lo,
	    MHD_OPTION_CONNECTION_LIMIT, 64u,
	    MHD_OPTION_CONNECTION_TIMEOUT, 30u, MHD_OPTION_END);
	if (res != NULL)
		freeaddrinfo(res);
	d->console_lfd = -1;	/* libmicrohttpd's now, or closed by it */
	if (d->admin == NULL) {
		err_set(err, "cannot listen on console %s:%d", d->console.name,
		    d->console.port);
		return -1;
	}
	return 0;
}

void
console_stop(struct disp *d)
{
	if (d->admin != NULL)
		MHD_stop_daemon(d->admin);
	d->admin = NULL;
}
