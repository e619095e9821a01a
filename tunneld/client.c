/*
 * Client modes: dial the server (raw TCP or websocket), run the handshake,
 * and when the transport breaks, dial again with backoff and resume the
 * session (wire spec 7.2).  Definitive refusals end the process.
 */

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>

#include "err.h"
#include "log.h"
#include "tunneld.h"

/* The backoff starts again at most this often (client_transport_proven). */
#define CLIENT_RESET_MS	1000

struct dial {
	uv_getaddrinfo_t gai;
	uv_connect_t	 connect;
	uv_tcp_t	*tcp;
	struct tun	*tun;
	struct sockaddr_storage sa;	/* dialled: the HTTP transport's */
};

static void	client_attempt(uv_timer_t *);

void
client_fatal(struct tun *t, const char *fmt, ...)
{
	char	msg[ERR_LEN];
	va_list	ap;

	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_err("%s", msg);
	tun_stop(t, 1);
}

static void
client_schedule(struct tun *t)
{
	static const unsigned	backoff[] = { 0, 500, 1000, 2000, 5000 };
	unsigned		delay, jitter = 0;
	uint64_t		now = uv_now(t->loop), left;

	delay = backoff[t->attempts < 5 ? t->attempts : 4];
	if (delay > 0 && RAND_bytes((unsigned char *)&jitter,
	    sizeof(jitter)) == 1)
		delay += jitter % (delay / 4 + 1);
	/* Not past the end of an "unknown session" grace: the answer then
	 * decides, rather than one a whole backoff later. */
	if (t->unknown_since != 0 && now < t->unknown_since +
	    TUN_GONE_GRACE_MS) {
		left = t->unknown_since + TUN_GONE_GRACE_MS - now;
		if (left < delay)
			delay = left;
	}
	t->attempts++;
	uv_timer_start(&t->retry_timer, client_attempt, delay, 0);
}

void
client_connection_lost(struct tun *t, const char *why)
{
	if (t->stopping)
		return;
	if (t->csess == NULL && t->attempts == 0 && why != NULL)
		log_warnx("cannot connect: %s; retrying", why);
	client_schedule(t);
}

/*
 * The server sent a packet on the current transport: the attempt that made
 * it succeeded, and the next loss starts the backoff from the beginning;
 * but not more than once a second, or a server that answers and then
 * breaks every connection at once (a protocol error, a hostile server)
 * would have us reconnect in a tight loop.
 */
void
client_transport_proven(struct tun *t)
{
	uint64_t now = uv_now(t->loop);

	if (t->proven_at != 0 && now - t->proven_at < CLIENT_RESET_MS)
		return;
	t->proven_at = now;
	t->attempts = 0;
}

/*
 * The server refused us for now (TUN_RESULT_BUSY): the tunnel's listener
 * is held by a session whose client it still sees connected, which a dead
 * link stays for up to 3 keepalive intervals.  Retried with the usual
 * backoff (hs_fail schedules it) until that time has passed; then, as any
 * refusal, it ends the process.
 */
void
client_refused_busy(struct tun *t, const char *result)
{
	uint64_t now = uv_now(t->loop);

	if (t->busy_since == 0)
		t->busy_since = now;
	if (now - t->busy_since > (uint64_t)t->o->interval *
	    TUN_BUSY_RETRY_INTERVALS * 1000) {
		client_fatal(t, "refused by the server (%s): another client "
		    "with these credentials is connected", result);
		return;
	}
	log_warnx("refused by the server for now (%s); retrying", result);
}

void
client_session_ended(struct tun *t, struct sess *s)
{
	/* client_renew gave s up first: a new session follows. */
	if (t->csess != s)
		return;
	t->csess = NULL;
	if (!t->stopping)
		tun_stop(t, 1);
}

void
client_session_started(struct tun *t, struct sess *s)
{
	t->attempts = 0;
	t->busy_since = 0;
	t->unknown_since = 0;
	if (t->renewed_from != 0)
		log_warnx("-renew: new session %" PRId64 " replaces session %"
		    PRId64 ", which is gone", s->id, t->renewed_from);
	t->renewed_from = 0;
}

void
client_upgraded(struct tun *t)
{
	t->unknown_since = 0;
}

/*
 * -renew: gives the gone session up (its streams end, its listeners
 * close) and dials for a new one, with the same -session value so that
 * the balancer and the policy see the same client.  Renewals back off,
 * TUN_RENEW_FIRST_MS doubled each time up to TUN_RENEW_MAX_MS, so that a
 * server whose sessions keep vanishing is not hammered.
 */
static void
client_renew(struct tun *t, const char *why)
{
	struct sess	*s = t->csess;
	uint64_t	 now = uv_now(t->loop), delay;
	int		 shift;

	if (t->renewed_at != 0 && now - t->renewed_at > TUN_RENEW_QUIET_MS)
		t->renewals = 0;
	shift = t->renewals < 6 ? t->renewals : 6;
	delay = (uint64_t)TUN_RENEW_FIRST_MS << shift;
	if (delay > TUN_RENEW_MAX_MS)
		delay = TUN_RENEW_MAX_MS;
	t->renewals++;
	t->renewed_at = now;
	t->renewed_from = s->id;
	log_warnx("session %" PRId64 " is gone: %s; -renew: starting a new "
	    "session in %" PRIu64 " ms (renewal %d)", s->id, why, delay,
	    t->renewals);
	t->csess = NULL;
	sess_free(s, "gone (renewing)");
	t->unknown_since = 0;
	t->attempts = 0;
	uv_timer_start(&t->retry_timer, client_attempt, delay, 0);
}

void
client_session_gone(struct tun *t, const char *why)
{
	struct cli_opts *o = t->o;

	if (t->stopping)
		return;
	if (strcmp(o->ctrl, "stop") == 0) {
		log_err("nothing to stop: session %s is gone: %s", o->session,
		    why);
		tun_stop(t, TUN_EXIT_GONE);
		return;
	}
	if (t->csess == NULL)
		return;
	if (o->renew) {
		client_renew(t, why);
		return;
	}
	log_err("session %" PRId64 " is gone: %s; exiting (-renew would "
	    "start a new session)", t->csess->id, why);
	tun_stop(t, TUN_EXIT_GONE);
}

void
client_session_unknown(struct tun *t, const char *why)
{
	uint64_t	now = uv_now(t->loop);
	char		gone[ERR_LEN];

	/* Only a resume (or a stop) names a session the server must know. */
	if (t->stopping || (t->csess == NULL && strcmp(t->o->ctrl,
	    "stop") != 0))
		return;
	if (t->unknown_since == 0)
		t->unknown_since = now;
	if (now - t->unknown_since < TUN_GONE_GRACE_MS) {
		log_warnx("the dispatcher does not know session %s (%s); "
		    "retrying: it is gone if that lasts %d s", t->o->session,
		    why, TUN_GONE_GRACE_MS / 1000);
		return;
	}
	snprintf(gone, sizeof(gone), "the dispatcher has not known it for "
	    "%" PRIu64 " s (%s)", (now - t->unknown_since) / 1000, why);
	client_session_gone(t, gone);
}

static void
client_dial_failed(struct dial *d, const char *why)
{
	struct tun *t = d->tun;

	log_warnx("connect to %s:%d: %s", t->o->server.name,
	    t->o->server.port, why);
	if (d->tcp != NULL)
		uv_close((uv_handle_t *)d->tcp, (uv_close_cb)free);
	free(d);
	client_connection_lost(t, why);
}

static void
client_connected(uv_connect_t *req, int status)
{
	struct dial			*d = req->data;
	struct tun			*t = d->tun;
	struct cli_opts			*o = t->o;
	struct conn_client_params	 cp;
	struct conn			*c;
	char				 host[ADDR_NAME_MAX + 16];
	char				 target[2048], err[ERR_LEN];
	const char			*mode = "";

	if (status < 0) {
		client_dial_failed(d, uv_strerror(status));
		return;
	}
	if (t->stopping) {
		client_dial_failed(d, "stopping");
		return;
	}
	addr_format(&o->server, host, sizeof(host));
	if (strcmp(o->ctrl, "stop") == 0)
		mode = "&mode=Disconnect";
	else if (t->csess != NULL)
		mode = "&mode=Reconnect";
	snprintf(target, sizeof(target), "%s?session=%s%s", o->wspath,
	    o->session, mode);
	memset(&cp, 0, sizeof(cp));
	cp.host_port = host;
	cp.path_query = target;
	cp.extra_header = o->header[0] ? o->header : NULL;
	cp.proxy = t->use_proxy ? &t->proxy : NULL;
	cp.user_agent = o->ua;
	cp.ssl_ctx = t->ssl_ctx;
	cp.tls_host = o->server.name[0] ? o->server.name : "localhost";
	cp.tls_verify_name = !o->insecure;
	if (cli_mode_is_ws(o->mode) && client_use_http(t))
		c = conn_new_http(t->loop, d->tcp, (struct sockaddr *)&d->sa,
		    &cp, NULL, NULL, err);
	else
		c = conn_new(t->loop, d->tcp, cli_mode_is_ws(o->mode) ?
		    CONN_WS_CLIENT : CONN_RAW_CLIENT, &cp, NULL, NULL, err);
	d->tcp = NULL;
	free(d);
	if (c == NULL) {
		client_connection_lost(t, err);
		return;
	}
	hs_client(t, c);
}

static void
client_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
	struct dial	*d = req->data;
	int		 rc;

	if (status < 0) {
		client_dial_failed(d, uv_strerror(status));
		return;
	}
	if ((d->tcp = malloc(sizeof(*d->tcp))) == NULL) {
		uv_freeaddrinfo(res);
		client_dial_failed(d, "out of memory");
		return;
	}
	uv_tcp_init(d->tun->loop, d->tcp);
	memcpy(&d->sa, res->ai_addr, res->ai_addrlen <= sizeof(d->sa) ?
	    res->ai_addrlen : sizeof(d->sa));
	d->connect.data = d;
	rc = uv_tcp_connect(&d->connect, d->tcp, res->ai_addr,
	    client_connected);
	uv_freeaddrinfo(res);
	if (rc < 0)
		client_dial_failed(d, uv_strerror(rc));
}

static void
client_attempt(uv_timer_t *timer)
{
	struct tun	*t = timer->data;
	struct dial	*d;
	struct addrinfo	 hints;
	char		 port[16];
	int		 rc;

	if (t->stopping)
		return;
	if ((d = calloc(1, sizeof(*d))) == NULL) {
		client_schedule(t);
		return;
	}
	d->tun = t;
	d->gai.data = d;
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	if (t->use_proxy) {
		snprintf(port, sizeof(port), "%d", t->proxy.port);
		rc = uv_getaddrinfo(t->loop, &d->gai, client_resolved,
		    t->proxy.host, port, &hints);
	} else {
		snprintf(port, sizeof(port), "%d", t->o->server.port);
		rc = uv_getaddrinfo(t->loop, &d->gai, client_resolved,
		    t->o->server.name[0] ? t->o->server.name : "localhost",
		    port, &hints);
	}
	if (rc < 0)
		client_dial_failed(d, uv_strerror(rc));
}

static int
client_tls_init(struct tun *t, char *err)
{
	struct cli_opts	*o = t->o;
	SSL_CTX		*ctx;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		err_set(err, "TLS: cannot create a context");
		return -1;
	}
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (!o->insecure) {
		if (SSL_CTX_set_default_verify_paths(ctx) != 1 ||
		    (o->cafile[0] != '\0' &&
		    SSL_CTX_load_verify_locations(ctx, o->cafile, NULL) != 1)) {
			err_set(err, "TLS: cannot load CA certificates%s%s: %s",
			    o->cafile[0] ? " from " : "", o->cafile,
			    ERR_reason_error_string(ERR_get_error()));
			SSL_CTX_free(ctx);
			return -1;
		}
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	} else
		SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	t->ssl_ctx = ctx;
	return 0;
}

void
client_free(struct tun *t)
{
	SSL_CTX_free(t->ssl_ctx);
	t->ssl_ctx = NULL;
}

int
client_start(struct tun *t, char *err)
{
	if (t->o->proxy[0] != '\0') {
		if (proxy_parse_url(t->o->proxy, &t->proxy, err) == -1)
			return -1;
		t->use_proxy = 1;
	}
	if (t->o->tls && client_tls_init(t, err) == -1)
		return -1;
	client_schedule(t);
	return 0;
}
