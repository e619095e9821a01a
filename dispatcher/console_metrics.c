/*
 * /metrics: Prometheus text (exposition format 0.0.4).  Counters end in
 * _total, times are histograms in seconds, bytes in bytes; one HELP and
 * TYPE per family; label values are fixed words, except the tenant names
 * of -metricsPerTenant ([A-Za-z0-9._:@+-], nothing to escape).
 * tests/e2e/test_console_metrics.py runs promtool's checks on it.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "console.h"
#include "ctlmsg.h"
#include "err.h"

/* The text being made; on ENOMEM it stays short (the scrape fails). */
struct console_text {
	char	*p;
	size_t	 len, cap;
	int	 broken;
};

static void
console_put(struct console_text *m, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

static void
console_put(struct console_text *m, const char *fmt, ...)
{
	va_list	 ap;
	char	*np;
	size_t	 cap;
	int	 n;

	if (m->broken)
		return;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		goto fail;
	if (m->len + n + 1 > m->cap) {
		cap = m->cap ? m->cap : 4096;
		while (cap < m->len + n + 1)
			cap *= 2;
		if ((np = realloc(m->p, cap)) == NULL)
			goto fail;
		m->p = np;
		m->cap = cap;
	}
	va_start(ap, fmt);
	vsnprintf(m->p + m->len, m->cap - m->len, fmt, ap);
	va_end(ap);
	m->len += n;
	return;
fail:
	m->broken = 1;
}

/* A family's HELP and TYPE lines. */
static void
console_family(struct console_text *m, const char *name, const char *type,
    const char *help)
{
	console_put(m, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* One histogram series: label ("" or `name="value"`). */
static void
console_hist(struct console_text *m, const char *name, const char *label,
    struct hist *h)
{
	struct hist_view	v;
	size_t			i, n;
	const char		*sep = label[0] ? "," : "";
	char			le[32];

	hist_read(h, &v);
	for (i = 0; i < HIST_NBOUNDS; i++) {
		/* Seconds in plain decimals ("0.000025", "2.5"). */
		snprintf(le, sizeof(le), "%.6f", hist_bounds_us[i] / 1e6);
		for (n = strlen(le); le[n - 1] == '0'; n--)
			le[n - 1] = '\0';
		if (le[n - 1] == '.')
			le[n - 1] = '\0';
		console_put(m, "%s_bucket{%s%sle=\"%s\"} %lu\n", name, label,
		    sep, le, v.cum[i]);
	}
	console_put(m, "%s_bucket{%s%sle=\"+Inf\"} %lu\n", name, label, sep,
	    v.cum[HIST_NBOUNDS]);
	console_put(m, "%s_sum%s%s%s %.6f\n%s_count%s%s%s %lu\n", name,
	    label[0] ? "{" : "", label, label[0] ? "}" : "", v.sum, name,
	    label[0] ? "{" : "", label, label[0] ? "}" : "",
	    v.cum[HIST_NBOUNDS]);
}

/* One tenant's sums (-metricsPerTenant). */
struct console_tsum {
	char		 name[CTLMSG_ID_LEN];
	long long	 tunnels, in, out, streams, refused;
};

/* The live tunnels and the sums of their figures. */
struct console_totals {
	size_t		 tunnels;
	long long	 in, out, streams;
	struct console_tsum *ten;	/* one per tunnel answering, sorted */
	size_t		 nten;
};

static int
console_tsum_cmp(const void *a, const void *b)
{
	return strcmp(((const struct console_tsum *)a)->name,
	    ((const struct console_tsum *)b)->name);
}

/*
 * Asks every live worker for its figures.  The bytes of one that does not
 * answer are the ones it gave last (so the counters do not go back);
 * ended tunnels' bytes are added by console_gauges.
 */
static void
console_collect(struct disp *d, struct console_totals *t)
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
		if (wrpc_stats(v[i]->sock, v[i]->uid, &st, err) == -1) {
			t->in += __atomic_load_n(&v[i]->last_in,
			    __ATOMIC_RELAXED);
			t->out += __atomic_load_n(&v[i]->last_out,
			    __ATOMIC_RELAXED);
			continue;
		}
		console_remember(v[i], &st);
		t->in += __atomic_load_n(&v[i]->last_in, __ATOMIC_RELAXED);
		t->out += __atomic_load_n(&v[i]->last_out, __ATOMIC_RELAXED);
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

/*
 * -metricsPerTenant: the figures of each tenant's live tunnels, a label
 * each.  Off by default: one series per tenant is what a metrics store
 * pays for.
 */
static void
console_tenants(struct console_text *m, struct console_totals *t)
{
	struct console_tsum	*v = t->ten, sum;
	size_t			 i, j;

	if (v == NULL)
		return;
	qsort(v, t->nten, sizeof(*v), console_tsum_cmp);
	console_family(m, "tunneld_tenant_tunnels", "gauge",
	    "Live tunnels per tenant.");
	console_family(m, "tunneld_tenant_streams", "gauge",
	    "Open streams per tenant.");
	console_family(m, "tunneld_tenant_bytes_total", "counter",
	    "Transport bytes of a tenant's live tunnels.");
	console_family(m, "tunneld_tenant_refused_streams_total", "counter",
	    "Streams refused by a tenant's limits in its live tunnels.");
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
		console_put(m, "tunneld_tenant_tunnels{tenant=\"%s\"} %lld\n"
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

/* What the live workers report, and the admission outcomes. */
static void
console_gauges(struct console_text *m, struct disp *d,
    const struct console_totals *t)
{
	static const char *const labels[] = { "101", "policy_refusal",
	    "400", "404", "5xx", "other" };
	size_t i;

	console_family(m, "tunneld_build_info", "gauge",
	    "The running version.");
	console_put(m, "tunneld_build_info{version=\"%s\"} 1\n",
	    TUNNELD_VERSION);
	console_family(m, "tunneld_tunnels", "gauge",
	    "Live tunnels (workers).");
	console_put(m, "tunneld_tunnels %zu\n", t->tunnels);
	console_family(m, "tunneld_streams", "gauge",
	    "Open streams in all tunnels.");
	console_put(m, "tunneld_streams %lld\n", t->streams);
	console_family(m, "tunneld_bytes_total", "counter",
	    "Transport bytes of "
	    "tunnels, live and ended since the dispatcher started.");
	console_put(m, "tunneld_bytes_total{direction=\"in\"} %llu\n"
	    "tunneld_bytes_total{direction=\"out\"} %llu\n",
	    (unsigned long long)t->in + atomic_load(&d->m.ended_in),
	    (unsigned long long)t->out + atomic_load(&d->m.ended_out));
	console_family(m, "tunneld_admissions_total", "counter",
	    "Upgrade requests by outcome.");
	for (i = 0; i < sizeof(labels) / sizeof(labels[0]); i++)
		console_put(m, "tunneld_admissions_total{status=\"%s\"} %lu\n",
		    labels[i], atomic_load(&d->m.admissions[i]));
}

/* The dispatcher's own counters and histograms. */
static void
console_counters(struct console_text *m, struct disp *d)
{
	static const char *const calls[DPC_COUNT] = { "canAccept",
	    "getTunnelInfo", "onEndTunnel" };
	static const char *const routes[DRT_COUNT] = { "new", "session" };
	char	label[64];
	size_t	i;

	console_family(m, "tunneld_admission_seconds", "histogram", "Upgrade "
	    "request (head complete) to its socket handed to the worker: "
	    "route new (a worker started) or session (its worker).");
	for (i = 0; i < DRT_COUNT; i++) {
		snprintf(label, sizeof(label), "route=\"%s\"", routes[i]);
		console_hist(m, "tunneld_admission_seconds", label,
		    &d->m.admission[i]);
	}
	console_family(m, "tunneld_policy_errors_total", "counter",
	    "Lua errors, budget and memory overruns.");
	console_put(m, "tunneld_policy_errors_total %lu\n",
	    atomic_load(&d->m.policy_errors));
	console_family(m, "tunneld_policy_seconds", "histogram",
	    "Time in the policy's calls.");
	for (i = 0; i < DPC_COUNT; i++) {
		snprintf(label, sizeof(label), "call=\"%s\"", calls[i]);
		console_hist(m, "tunneld_policy_seconds", label,
		    &d->m.policy[i]);
	}
	console_family(m, "tunneld_workers_started_total", "counter",
	    "Workers spawned.");
	console_put(m, "tunneld_workers_started_total %lu\n",
	    atomic_load(&d->m.spawned));
	console_family(m, "tunneld_workers_ended_total", "counter",
	    "Workers ended.");
	console_put(m, "tunneld_workers_ended_total %lu\n",
	    atomic_load(&d->m.ended));
	console_family(m, "tunneld_worker_exits_total", "counter",
	    "Workers ended, "
	    "by reason: ended (it said so), stopped (by the dispatcher), "
	    "replaced, exited (no word: its status), killed (a signal), "
	    "seccomp, protocol_error, lost (an adopted worker's channel).");
	for (i = 0; i < DWE_COUNT; i++)
		console_put(m,
		    "tunneld_worker_exits_total{reason=\"%s\"} %lu\n",
		    wmon_end_name(i), atomic_load(&d->m.exits[i]));
}

enum MHD_Result
console_metrics(struct MHD_Connection *c, struct disp *d)
{
	struct console_totals	 t;
	struct console_text		 m = { 0 };

	console_collect(d, &t);
	console_gauges(&m, d, &t);
	console_tenants(&m, &t);
	free(t.ten);
	console_counters(&m, d);
	if (m.broken || m.p == NULL) {
		free(m.p);
		return MHD_NO;
	}
	return console_send(c, 200, "text/plain; version=0.0.4", m.p);
}
