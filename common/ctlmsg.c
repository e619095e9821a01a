/*
 * The control-message contract (ctlmsg.h): encoders write JSON text
 * straight into the caller's buffer, so that CONFIG's secrets are copied
 * nowhere the caller cannot wipe; decoders read it with jansson and check
 * every field against the bounds of ctlmsg.h, as msg.c does for
 * kptunnel's own messages.
 */

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>

#include "crypto.h"
#include "ctl.h"
#include "ctlmsg.h"
#include "joinpt.h"

_Static_assert(CTLMSG_JOIN_NAME_LEN == JOINPT_NAME_MAX + 1,
    "a join point's name fits CTL_JOIN");

/* A JSON writer over a fixed buffer; ok drops to 0 once it overflows. */
struct jw {
	char	*buf;
	size_t	 cap, len;
	int	 ok, first;
};

static void
jw_raw(struct jw *w, const char *s, size_t n)
{
	if (!w->ok || w->len + n >= w->cap) {
		w->ok = 0;
		return;
	}
	memcpy(w->buf + w->len, s, n);
	w->len += n;
	w->buf[w->len] = '\0';
}

static void
jw_key(struct jw *w, const char *k)
{
	if (!w->first)
		jw_raw(w, ",", 1);
	w->first = 0;
	jw_raw(w, "\"", 1);
	jw_raw(w, k, strlen(k));
	jw_raw(w, "\":", 2);
}

/* A JSON string; bytes >= 0x80 go as they are (UTF-8 or refused). */
static void
jw_strval(struct jw *w, const char *s)
{
	char	u[8];
	size_t	i;

	jw_raw(w, "\"", 1);
	for (i = 0; s[i] != '\0'; i++) {
		unsigned char c = (unsigned char)s[i];

		if (c == '"' || c == '\\') {
			u[0] = '\\';
			u[1] = (char)c;
			jw_raw(w, u, 2);
		} else if (c < 0x20) {
			snprintf(u, sizeof(u), "\\u%04x", c);
			jw_raw(w, u, 6);
		} else
			jw_raw(w, s + i, 1);
	}
	jw_raw(w, "\"", 1);
}

static void
jw_str(struct jw *w, const char *k, const char *s)
{
	jw_key(w, k);
	jw_strval(w, s);
}

static void
jw_int(struct jw *w, const char *k, int64_t v)
{
	char n[32];

	jw_key(w, k);
	jw_raw(w, n, (size_t)snprintf(n, sizeof(n), "%lld", (long long)v));
}

static void
jw_bool(struct jw *w, const char *k, int v)
{
	jw_key(w, k);
	jw_raw(w, v ? "true" : "false", v ? 4 : 5);
}

/* A list of n strings, rows of len bytes. */
static void
jw_list(struct jw *w, const char *k, const char *rows, size_t len, size_t n)
{
	size_t i;

	jw_key(w, k);
	jw_raw(w, "[", 1);
	for (i = 0; i < n; i++) {
		if (i > 0)
			jw_raw(w, ",", 1);
		jw_strval(w, rows + i * len);
	}
	jw_raw(w, "]", 1);
}

/* Reading: one helper per JSON type, each checking presence and bounds. */

static int
jr_str(const json_t *o, const char *k, char *dst, size_t cap, int required,
    char *err)
{
	json_t *v = json_object_get(o, k);

	if (v == NULL) {
		if (required)
			err_set(err, "%s is required", k);
		return required ? -1 : 0;
	}
	if (!json_is_string(v)) {
		err_set(err, "%s must be a string", k);
		return -1;
	}
	if (json_string_length(v) >= cap ||
	    strlen(json_string_value(v)) != json_string_length(v)) {
		err_set(err, "%s is too long or holds a NUL", k);
		return -1;
	}
	memcpy(dst, json_string_value(v), json_string_length(v) + 1);
	return 0;
}

static int
jr_int(const json_t *o, const char *k, int64_t *dst, int64_t min,
    int64_t max, int required, char *err)
{
	json_t *v = json_object_get(o, k);

	if (v == NULL) {
		if (required)
			err_set(err, "%s is required", k);
		return required ? -1 : 0;
	}
	if (!json_is_integer(v)) {
		err_set(err, "%s must be an integer", k);
		return -1;
	}
	if (json_integer_value(v) < min || json_integer_value(v) > max) {
		err_set(err, "%s %lld is not in %lld..%lld", k,
		    (long long)json_integer_value(v), (long long)min,
		    (long long)max);
		return -1;
	}
	*dst = json_integer_value(v);
	return 0;
}

static int
jr_int32(const json_t *o, const char *k, int *dst, int min, int max,
    char *err)
{
	int64_t v = *dst;

	if (jr_int(o, k, &v, min, max, 0, err) == -1)
		return -1;
	*dst = (int)v;
	return 0;
}

static int
jr_bool(const json_t *o, const char *k, int *dst, char *err)
{
	json_t *v = json_object_get(o, k);

	if (v == NULL)
		return 0;
	if (!json_is_boolean(v)) {
		err_set(err, "%s must be true or false", k);
		return -1;
	}
	*dst = json_is_true(v);
	return 0;
}

/* A list of at most max strings of rows of len bytes, into rows. */
static int
jr_list(const json_t *o, const char *k, char *rows, size_t len, size_t max,
    size_t *n, char *err)
{
	json_t	*a = json_object_get(o, k), *v;
	size_t	 i;

	*n = 0;
	if (a == NULL)
		return 0;
	if (!json_is_array(a) || json_array_size(a) > max) {
		err_set(err, "%s must be a list of at most %zu", k, max);
		return -1;
	}
	json_array_foreach(a, i, v) {
		if (!json_is_string(v) || json_string_length(v) >= len ||
		    strlen(json_string_value(v)) != json_string_length(v)) {
			err_set(err, "%s[%zu] is not a string that fits", k,
			    i);
			return -1;
		}
		memcpy(rows + i * len, json_string_value(v),
		    json_string_length(v) + 1);
	}
	*n = json_array_size(a);
	return 0;
}

/* The limits, flat in CONFIG and in STATS, named as getTunnelInfo's. */
static void
limits_enc(struct jw *w, const struct ctlmsg_limits *l)
{
	jw_int(w, "maxStreams", l->max_streams);
	jw_int(w, "rateUp", l->rate_up);
	jw_int(w, "rateDown", l->rate_down);
	jw_int(w, "maxBytes", l->max_bytes);
	jw_int(w, "maxConnectRate", l->max_connect_rate);
	jw_int(w, "sessionTimeout", l->session_timeout);
}

static int
limits_dec(const json_t *o, struct ctlmsg_limits *l, char *err)
{
	if (jr_int32(o, "maxStreams", &l->max_streams, 0, CTLMSG_STREAMS_MAX,
	    err) == -1 ||
	    jr_int(o, "rateUp", &l->rate_up, 0, CTLMSG_RATE_MAX, 0,
	    err) == -1 ||
	    jr_int(o, "rateDown", &l->rate_down, 0, CTLMSG_RATE_MAX, 0,
	    err) == -1 ||
	    jr_int(o, "maxBytes", &l->max_bytes, 0, CTLMSG_BYTES_MAX, 0,
	    err) == -1 ||
	    jr_int32(o, "maxConnectRate", &l->max_connect_rate, 0,
	    CTLMSG_CONNRATE_MAX, err) == -1 ||
	    jr_int32(o, "sessionTimeout", &l->session_timeout,
	    CTLMSG_SESSTO_MIN, CTLMSG_SESSTO_MAX, err) == -1)
		return -1;
	return 0;
}

/* Out of bounds: the encoder refuses, as the decoder would. */
static int
limits_ok(const struct ctlmsg_limits *l)
{
	return l->max_streams >= 0 && l->max_streams <= CTLMSG_STREAMS_MAX &&
	    l->rate_up >= 0 && l->rate_up <= CTLMSG_RATE_MAX &&
	    l->rate_down >= 0 && l->rate_down <= CTLMSG_RATE_MAX &&
	    l->max_bytes >= 0 && l->max_bytes <= CTLMSG_BYTES_MAX &&
	    l->max_connect_rate >= 0 &&
	    l->max_connect_rate <= CTLMSG_CONNRATE_MAX &&
	    l->session_timeout >= CTLMSG_SESSTO_MIN &&
	    l->session_timeout <= CTLMSG_SESSTO_MAX;
}

/* One encoder and one decoder per body. */

static void
config_enc(struct jw *w, const struct ctlmsg *m)
{
	const struct ctlmsg_config *c = &m->u.config;

	jw_str(w, "mode", c->mode);
	jw_str(w, "pass", c->pass);
	jw_str(w, "encPass", c->encpass);
	jw_int(w, "encCount", c->enc_count);
	jw_list(w, "forwards", c->forwards[0], CTLMSG_FWD_LEN,
	    c->nfwd > CTLMSG_MAX_FWDS ? (w->ok = 0) : c->nfwd);
	jw_str(w, "connectMode", c->oneshot ? "OneShot" : "CanReconnect");
	jw_int(w, "idleTimeout", c->idle_timeout);
	jw_int(w, "keepalive", c->keepalive);
	jw_str(w, "tenant", c->tenant);
	jw_str(w, "id", c->id);
	jw_str(w, "session", c->session);
	jw_str(w, "sock", c->sock);
	jw_bool(w, "verbose", c->verbose);
	jw_int(w, "handshakeTimeout", c->handshake_timeout);
	if (!limits_ok(&c->limits))
		w->ok = 0;
	limits_enc(w, &c->limits);
	jw_list(w, "destinations", c->dests[0], CTLMSG_DEST_LEN,
	    c->ndest > CTLMSG_MAX_DESTS ? (w->ok = 0) : c->ndest);
}

static int
config_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	struct ctlmsg_config	*c = &m->u.config;
	char			 cm[16] = "CanReconnect";

	if (jr_str(o, "mode", c->mode, sizeof(c->mode), 1, err) == -1 ||
	    jr_str(o, "pass", c->pass, sizeof(c->pass), 1, err) == -1 ||
	    jr_str(o, "encPass", c->encpass, sizeof(c->encpass), 1,
	    err) == -1 ||
	    jr_int32(o, "encCount", &c->enc_count, CTLMSG_ENC_MIN,
	    CTLMSG_ENC_MAX, err) == -1 ||
	    jr_list(o, "forwards", c->forwards[0], CTLMSG_FWD_LEN,
	    CTLMSG_MAX_FWDS, &c->nfwd, err) == -1 ||
	    jr_str(o, "connectMode", cm, sizeof(cm), 0, err) == -1 ||
	    jr_int32(o, "idleTimeout", &c->idle_timeout, CTLMSG_IDLE_MIN,
	    CTLMSG_IDLE_MAX, err) == -1 ||
	    jr_int32(o, "keepalive", &c->keepalive, CTLMSG_KEEPALIVE_MIN,
	    CTLMSG_KEEPALIVE_MAX, err) == -1 ||
	    jr_str(o, "tenant", c->tenant, sizeof(c->tenant), 0, err) == -1 ||
	    jr_str(o, "id", c->id, sizeof(c->id), 0, err) == -1 ||
	    jr_str(o, "session", c->session, sizeof(c->session), 0,
	    err) == -1 ||
	    jr_str(o, "sock", c->sock, sizeof(c->sock), 1, err) == -1 ||
	    jr_bool(o, "verbose", &c->verbose, err) == -1 ||
	    jr_int32(o, "handshakeTimeout", &c->handshake_timeout,
	    CTLMSG_HS_MIN, CTLMSG_HS_MAX, err) == -1 ||
	    limits_dec(o, &c->limits, err) == -1 ||
	    jr_list(o, "destinations", c->dests[0], CTLMSG_DEST_LEN,
	    CTLMSG_MAX_DESTS, &c->ndest, err) == -1)
		return -1;
	if (strcmp(cm, "OneShot") != 0 && strcmp(cm, "CanReconnect") != 0) {
		err_set(err, "connectMode '%s' is not OneShot or CanReconnect",
		    cm);
		return -1;
	}
	c->oneshot = strcmp(cm, "OneShot") == 0;
	if (c->sock[0] == '\0') {
		err_set(err, "sock is required");
		return -1;
	}
	return 0;
}

static void
ready_enc(struct jw *w, const struct ctlmsg *m)
{
	jw_int(w, "pid", m->u.ready.pid);
	jw_str(w, "sock", m->u.ready.sock);
}

static int
ready_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	struct ctlmsg_ready *r = &m->u.ready;

	if (jr_int(o, "pid", &r->pid, 1, INT32_MAX, 1, err) == -1 ||
	    jr_str(o, "sock", r->sock, sizeof(r->sock), 0, err) == -1)
		return -1;
	return 0;
}

static void
conn_enc(struct jw *w, const struct ctlmsg *m)
{
	const struct ctlmsg_conn	*c = &m->u.conn;
	char				*b64;

	if (c->nextra > CTLMSG_EXTRA_MAX ||
	    (b64 = malloc(4 * ((c->nextra + 2) / 3) + 1)) == NULL) {
		w->ok = 0;
		return;
	}
	crypto_b64(c->extra, c->nextra, b64);
	jw_str(w, "extra", b64);
	free(b64);
	/* Only then: a hand-over's message stays what it was. */
	if (c->http) {
		jw_bool(w, "http", 1);
		jw_str(w, "remote", c->remote);
	}
}

static int
conn_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	struct ctlmsg_conn	*c = &m->u.conn;
	json_t			*v = json_object_get(o, "extra");
	size_t			 len;

	if (jr_bool(o, "http", &c->http, err) == -1 ||
	    jr_str(o, "remote", c->remote, sizeof(c->remote), 0, err) == -1)
		return -1;
	if (v == NULL)
		return 0;
	if (!json_is_string(v) ||
	    (len = json_string_length(v)) > 4 * ((CTLMSG_EXTRA_MAX + 2) / 3)) {
		err_set(err, "extra must be a string of at most %d bytes",
		    CTLMSG_EXTRA_MAX);
		return -1;
	}
	if (len == 0)
		return 0;
	if ((c->extra = malloc(len)) == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	if (crypto_unb64(json_string_value(v), len, c->extra, &c->nextra) ==
	    -1) {
		err_set(err, "extra is not base64");
		return -1;
	}
	return 0;
}

static void
stats_enc(struct jw *w, const struct ctlmsg *m)
{
	const struct ctlmsg_stats *s = &m->u.stats;

	jw_int(w, "pid", s->pid);
	jw_str(w, "tenant", s->tenant);
	jw_str(w, "id", s->id);
	jw_str(w, "session", s->session);
	jw_str(w, "mode", s->mode);
	jw_int(w, "started", s->started);
	jw_int(w, "bytes_in", s->bytes_in);
	jw_int(w, "bytes_out", s->bytes_out);
	jw_int(w, "streams", s->streams);
	jw_int(w, "reconnects", s->reconnects);
	jw_bool(w, "connected", s->connected);
	jw_int(w, "sessions", s->sessions);
	jw_bool(w, "authed", s->authed);
	if (!limits_ok(&s->limits))
		w->ok = 0;
	limits_enc(w, &s->limits);
	jw_int(w, "rateUpNow", s->rate_up_now);
	jw_int(w, "rateDownNow", s->rate_down_now);
	jw_int(w, "refusedStreams", s->refused_streams);
	jw_int(w, "payloadBytes", s->payload);
}

static int
stats_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	struct ctlmsg_stats *s = &m->u.stats;

	if (jr_int(o, "pid", &s->pid, 1, INT32_MAX, 1, err) == -1 ||
	    jr_str(o, "tenant", s->tenant, sizeof(s->tenant), 0, err) == -1 ||
	    jr_str(o, "id", s->id, sizeof(s->id), 0, err) == -1 ||
	    jr_str(o, "session", s->session, sizeof(s->session), 0,
	    err) == -1 ||
	    jr_str(o, "mode", s->mode, sizeof(s->mode), 0, err) == -1 ||
	    jr_int(o, "started", &s->started, 0, INT64_MAX, 0, err) == -1 ||
	    jr_int(o, "bytes_in", &s->bytes_in, 0, INT64_MAX, 0, err) == -1 ||
	    jr_int(o, "bytes_out", &s->bytes_out, 0, INT64_MAX, 0,
	    err) == -1 ||
	    jr_int(o, "streams", &s->streams, 0, INT64_MAX, 0, err) == -1 ||
	    jr_int(o, "reconnects", &s->reconnects, 0, INT64_MAX, 0,
	    err) == -1 ||
	    jr_bool(o, "connected", &s->connected, err) == -1 ||
	    jr_int(o, "sessions", &s->sessions, 0, INT64_MAX, 0, err) == -1 ||
	    jr_bool(o, "authed", &s->authed, err) == -1 ||
	    limits_dec(o, &s->limits, err) == -1 ||
	    jr_int(o, "rateUpNow", &s->rate_up_now, 0, INT64_MAX, 0,
	    err) == -1 ||
	    jr_int(o, "rateDownNow", &s->rate_down_now, 0, INT64_MAX, 0,
	    err) == -1 ||
	    jr_int(o, "refusedStreams", &s->refused_streams, 0, INT64_MAX, 0,
	    err) == -1 ||
	    jr_int(o, "payloadBytes", &s->payload, 0, INT64_MAX, 0,
	    err) == -1)
		return -1;
	return 0;
}

static void
end_enc(struct jw *w, const struct ctlmsg *m)
{
	jw_str(w, "reason", m->u.end.text);
}

static int
end_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	return jr_str(o, "reason", m->u.end.text, sizeof(m->u.end.text), 0,
	    err);
}

static void
spawn_enc(struct jw *w, const struct ctlmsg *m)
{
	const struct ctlmsg_spawn *s = &m->u.spawn;

	jw_int(w, "uid", s->uid);
	jw_int(w, "gid", s->gid);
	jw_int(w, "maxFiles", s->max_files);
	jw_bool(w, "sandbox", s->sandbox);
	jw_bool(w, "nproc", s->nproc);
}

static int
spawn_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	struct ctlmsg_spawn *s = &m->u.spawn;

	/* uid_t (uint32_t) without (uid_t)-1, which setuid reads as "keep". */
	if (jr_int(o, "uid", &s->uid, -1, (int64_t)UINT32_MAX - 1, 0,
	    err) == -1 ||
	    jr_int(o, "gid", &s->gid, -1, (int64_t)UINT32_MAX - 1, 0,
	    err) == -1 ||
	    jr_int32(o, "maxFiles", &s->max_files, CTLMSG_NOFILE_MIN,
	    CTLMSG_NOFILE_MAX, err) == -1 ||
	    jr_bool(o, "sandbox", &s->sandbox, err) == -1 ||
	    jr_bool(o, "nproc", &s->nproc, err) == -1)
		return -1;
	return 0;
}

static void
spawned_enc(struct jw *w, const struct ctlmsg *m)
{
	jw_int(w, "pid", m->u.spawned.pid);
}

static int
spawned_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	return jr_int(o, "pid", &m->u.spawned.pid, -1, INT32_MAX, 1, err);
}

static void
exited_enc(struct jw *w, const struct ctlmsg *m)
{
	jw_int(w, "pid", m->u.exited.pid);
	jw_int(w, "code", m->u.exited.code);
	jw_int(w, "signal", m->u.exited.signal);
}

static int
exited_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	struct ctlmsg_exited *e = &m->u.exited;

	if (jr_int(o, "pid", &e->pid, 1, INT32_MAX, 1, err) == -1 ||
	    jr_int32(o, "code", &e->code, -1, 255, err) == -1 ||
	    jr_int32(o, "signal", &e->signal, 0, 127, err) == -1)
		return -1;
	return 0;
}

static void
kill_enc(struct jw *w, const struct ctlmsg *m)
{
	jw_int(w, "pid", m->u.kill.pid);
	jw_int(w, "signal", m->u.kill.signal);
}

static int
kill_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	struct ctlmsg_kill *k = &m->u.kill;

	/* Never 1 (init), 0 or negative (a process group, every process). */
	if (jr_int(o, "pid", &k->pid, 2, INT32_MAX, 1, err) == -1 ||
	    jr_int32(o, "signal", &k->signal, 1, 64, err) == -1)
		return -1;
	if (k->signal != SIGKILL && k->signal != SIGTERM) {
		err_set(err, "signal %d: only SIGKILL or SIGTERM", k->signal);
		return -1;
	}
	return 0;
}

static void
srcs_enc(struct jw *w, const struct ctlmsg *m)
{
	jw_list(w, "srcs", m->u.takeover.src[0], CTLMSG_SRC_LEN,
	    m->u.takeover.n > CTLMSG_MAX_SRCS ? (w->ok = 0) :
	    m->u.takeover.n);
}

static int
srcs_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	return jr_list(o, "srcs", m->u.takeover.src[0], CTLMSG_SRC_LEN,
	    CTLMSG_MAX_SRCS, &m->u.takeover.n, err);
}

static void
tdone_enc(struct jw *w, const struct ctlmsg *m)
{
	if (m->u.takeover_done.text[0] != '\0')
		jw_str(w, "busy", m->u.takeover_done.text);
}

static int
tdone_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	if (jr_str(o, "busy", m->u.takeover_done.text,
	    sizeof(m->u.takeover_done.text), 0, err) == -1)
		return -1;
	if (json_object_get(o, "busy") != NULL &&
	    m->u.takeover_done.text[0] == '\0') {
		err_set(err, "busy must say why");
		return -1;
	}
	return 0;
}

static void
released_enc(struct jw *w, const struct ctlmsg *m)
{
	const struct ctlmsg_released *r = &m->u.released;

	jw_bool(w, "ended", r->ended);
	if (r->busy[0] != '\0')
		jw_str(w, "busy", r->busy);
	jw_int(w, "listeners", r->listeners);
}

static int
released_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	struct ctlmsg_released *r = &m->u.released;

	if (jr_bool(o, "ended", &r->ended, err) == -1 ||
	    jr_str(o, "busy", r->busy, sizeof(r->busy), 0, err) == -1 ||
	    jr_int32(o, "listeners", &r->listeners, 0, CTLMSG_MAX_SRCS,
	    err) == -1)
		return -1;
	if (json_object_get(o, "busy") != NULL && r->busy[0] == '\0') {
		err_set(err, "busy must say why");
		return -1;
	}
	return 0;
}

static void
listener_enc(struct jw *w, const struct ctlmsg *m)
{
	jw_str(w, "src", m->u.listener.src);
}

static int
listener_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	if (jr_str(o, "src", m->u.listener.src, sizeof(m->u.listener.src), 1,
	    err) == -1)
		return -1;
	if (m->u.listener.src[0] == '\0') {
		err_set(err, "src is required");
		return -1;
	}
	return 0;
}

static void
join_enc(struct jw *w, const struct ctlmsg *m)
{
	jw_str(w, "name", m->u.join.name);
	jw_int(w, "ref", m->u.join.ref);
}

static int
join_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	struct ctlmsg_join *j = &m->u.join;

	if (jr_str(o, "name", j->name, sizeof(j->name), 1, err) == -1 ||
	    jr_int(o, "ref", &j->ref, 1, INT64_MAX, 1, err) == -1)
		return -1;
	if (!joinpt_name_ok(j->name, strlen(j->name))) {
		err_set(err, "name is not a join point's");
		return -1;
	}
	return 0;
}

static void
joined_enc(struct jw *w, const struct ctlmsg *m)
{
	jw_int(w, "ref", m->u.joined.ref);
	if (m->u.joined.error[0] != '\0')
		jw_str(w, "error", m->u.joined.error);
}

static int
joined_dec(const json_t *o, struct ctlmsg *m, char *err)
{
	struct ctlmsg_joined *j = &m->u.joined;

	if (jr_int(o, "ref", &j->ref, 1, INT64_MAX, 1, err) == -1 ||
	    jr_str(o, "error", j->error, sizeof(j->error), 0, err) == -1)
		return -1;
	if (json_object_get(o, "error") != NULL && j->error[0] == '\0') {
		err_set(err, "error must say why");
		return -1;
	}
	return 0;
}

static const struct ctlmsg_kind {
	int		 type;
	const char	*name;
	void		(*enc)(struct jw *, const struct ctlmsg *);
	int		(*dec)(const json_t *, struct ctlmsg *, char *);
} ctlmsg_kinds[] = {
	{ CTL_CONFIG,		"config",	 config_enc,	config_dec },
	{ CTL_READY,		"ready",	 ready_enc,	ready_dec },
	{ CTL_CONN,		"conn",		 conn_enc,	conn_dec },
	{ CTL_CONN_OK,		"conn-ok",	 NULL,		NULL },
	{ CTL_STATS_REQ,	"stats-req",	 NULL,		NULL },
	{ CTL_STATS,		"stats",	 stats_enc,	stats_dec },
	{ CTL_STOP,		"stop",		 NULL,		NULL },
	{ CTL_END,		"end",		 end_enc,	end_dec },
	{ CTL_SPAWN,		"spawn",	 spawn_enc,	spawn_dec },
	{ CTL_SPAWNED,		"spawned",	 spawned_enc,	spawned_dec },
	{ CTL_EXITED,		"exited",	 exited_enc,	exited_dec },
	{ CTL_TAKEOVER,		"takeover",	 srcs_enc,	srcs_dec },
	{ CTL_TAKEOVER_DONE,	"takeover-done", tdone_enc,	tdone_dec },
	{ CTL_RELEASE,		"release",	 srcs_enc,	srcs_dec },
	{ CTL_RELEASED,		"released",	 released_enc,	released_dec },
	{ CTL_LISTENER,		"listener",	 listener_enc,	listener_dec },
	{ CTL_AUTHED,		"authed",	 NULL,		NULL },
	{ CTL_KILL,		"kill",		 kill_enc,	kill_dec },
	{ CTL_JOIN,		"join",		 join_enc,	join_dec },
	{ CTL_JOINED,		"joined",	 joined_enc,	joined_dec },
};
#define CTLMSG_NKINDS	(sizeof(ctlmsg_kinds) / sizeof(ctlmsg_kinds[0]))

static const struct ctlmsg_kind *
ctlmsg_kind(int type)
{
	size_t i;

	for (i = 0; i < CTLMSG_NKINDS; i++)
		if (ctlmsg_kinds[i].type == type)
			return &ctlmsg_kinds[i];
	return NULL;
}

const char *
ctlmsg_name(int type)
{
	const struct ctlmsg_kind *k = ctlmsg_kind(type);

	return k != NULL ? k->name : "unknown";
}

int
ctlmsg_init(struct ctlmsg *m, int type)
{
	memset(m, 0, sizeof(*m));
	if (ctlmsg_kind(type) == NULL)
		return -1;
	m->type = type;
	switch (type) {
	case CTL_CONFIG:
		m->u.config.enc_count = CTLMSG_ENC_DEF;
		m->u.config.idle_timeout = CTLMSG_IDLE_DEF;
		m->u.config.keepalive = CTLMSG_KEEPALIVE_DEF;
		m->u.config.handshake_timeout = CTLMSG_HS_DEF;
		m->u.config.limits.session_timeout = CTLMSG_SESSTO_DEF;
		break;
	case CTL_END:
		snprintf(m->u.end.text, sizeof(m->u.end.text), "ended");
		break;
	case CTL_STATS:
		m->u.stats.authed = 1;
		m->u.stats.limits.session_timeout = CTLMSG_SESSTO_DEF;
		break;
	case CTL_EXITED:
		m->u.exited.code = -1;
		break;
	case CTL_KILL:
		m->u.kill.signal = CTLMSG_KILL_SIG_DEF;
		break;
	case CTL_SPAWN:
		m->u.spawn.uid = m->u.spawn.gid = -1;
		m->u.spawn.max_files = CTLMSG_NOFILE_DEF;
		m->u.spawn.sandbox = 1;
		break;
	}
	return 0;
}

void
ctlmsg_clear(struct ctlmsg *m)
{
	if (m->type == CTL_CONN && m->u.conn.extra != NULL)
		free(m->u.conn.extra);
	/* The bytes of CONFIG are secrets; the rest are cheap to wipe. */
	OPENSSL_cleanse(m, sizeof(*m));
}

int
ctlmsg_encode(const struct ctlmsg *m, char *buf, size_t cap, char *err)
{
	const struct ctlmsg_kind	*k = ctlmsg_kind(m->type);
	struct jw			 w = { buf, cap, 0, 1, 1 };

	if (k == NULL) {
		err_set(err, "no control message of type %d", m->type);
		return -1;
	}
	jw_raw(&w, "{", 1);
	jw_int(&w, "type", m->type);
	if (k->enc != NULL)
		k->enc(&w, m);
	jw_raw(&w, "}", 1);
	if (!w.ok) {
		err_set(err, "control message %s too long", k->name);
		return -1;
	}
	return (int)w.len;
}

int
ctlmsg_decode(const void *buf, size_t n, struct ctlmsg *m, char *err)
{
	const struct ctlmsg_kind	*k;
	json_error_t			 jerr;
	json_t				*o;
	int64_t				 type;
	char				 why[ERR_LEN];

	memset(m, 0, sizeof(*m));
	o = json_loadb(buf, n, JSON_REJECT_DUPLICATES, &jerr);
	if (o == NULL || !json_is_object(o)) {
		err_set(err, "malformed control message: %s",
		    o == NULL ? jerr.text : "not an object");
		json_decref(o);
		return -1;
	}
	if (jr_int(o, "type", &type, 0, 1000, 1, why) == -1 ||
	    (k = ctlmsg_kind((int)type)) == NULL) {
		err_set(err, "malformed control message: %s",
		    json_object_get(o, "type") == NULL ? "no type" :
		    "unknown type");
		json_decref(o);
		return -1;
	}
	ctlmsg_init(m, (int)type);
	if (k->dec != NULL && k->dec(o, m, why) == -1) {
		err_set(err, "control message %s: %s", k->name, why);
		ctlmsg_clear(m);
		json_decref(o);
		return -1;
	}
	json_decref(o);
	return 0;
}

int
ctlmsg_send(int sock, const struct ctlmsg *m, int fd, int timeout_ms,
    char *err)
{
	char	*buf;
	int	 n, rc = -1;

	if ((buf = malloc(CTL_MSG_MAX)) == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	if ((n = ctlmsg_encode(m, buf, CTL_MSG_MAX, err)) >= 0)
		rc = ctl_send(sock, buf, (size_t)n, fd, timeout_ms, err);
	OPENSSL_cleanse(buf, n > 0 ? (size_t)n : 0);
	free(buf);
	return rc;
}

int
ctlmsg_send_type(int sock, int type, int timeout_ms, char *err)
{
	struct ctlmsg	m;
	int		rc;

	if (ctlmsg_init(&m, type) == -1) {
		err_set(err, "no control message of type %d", type);
		return -1;
	}
	rc = ctlmsg_send(sock, &m, -1, timeout_ms, err);
	ctlmsg_clear(&m);
	return rc;
}

int
ctlmsg_recv(int sock, struct ctlmsg *m, int *fd, char *err)
{
	char	*buf;
	size_t	 n = 0;
	int	 rc;

	memset(m, 0, sizeof(*m));
	*fd = -1;
	if ((buf = malloc(CTL_MSG_MAX)) == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	rc = ctl_recv(sock, buf, CTL_MSG_MAX, &n, fd, err);
	if (rc == 1 && ctlmsg_decode(buf, n, m, err) == -1) {
		if (*fd != -1)
			close(*fd);
		*fd = -1;
		rc = -1;
	}
	OPENSSL_cleanse(buf, n);
	free(buf);
	return rc;
}

int
ctlmsg_dispatch(const struct ctlmsg_rule *tab, size_t n, unsigned state,
    void *ctx, struct ctlmsg *m, int fd, char *err)
{
	size_t	i;
	int	rc;

	for (i = 0; i < n && tab[i].type != m->type; i++)
		;
	if (i == n) {
		err_set(err, "unexpected control message %s",
		    ctlmsg_name(m->type));
		rc = CTLMSG_REFUSED;
	} else if ((tab[i].states & state) == 0) {
		err_set(err, "control message %s not permitted now (state "
		    "%#x)", ctlmsg_name(m->type), state);
		rc = CTLMSG_REFUSED;
	} else
		rc = tab[i].fn(ctx, m, &fd, err);
	if (fd != -1)
		close(fd);
	return rc;
}

/* Refusals of all receivers without a limiter of their own. */
int
ctlmsg_serve(int sock, const struct ctlmsg_rule *tab, size_t n,
    unsigned state, void *ctx, char *err)
{
	struct ctlmsg	*m;
	int		 fd, rc;

	if ((m = malloc(sizeof(*m))) == NULL)
		return -2;	/* read again on the next wake-up */
	rc = ctlmsg_recv(sock, m, &fd, err);
	if (rc == 1)
		rc = ctlmsg_dispatch(tab, n, state, ctx, m, fd, err);
	ctlmsg_clear(m);
	free(m);
	return rc;
}
