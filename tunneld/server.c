/*
 * Server modes: accept transport connections (raw TCP or websocket),
 * admit them (-ip), run their handshake, and keep the sessions, which wait
 * detached for their client to resume until -sessionTimeout.
 */

#include <netdb.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "err.h"
#include "log.h"
#include "peerkey.h"
#include "tunneld.h"

#define SERVER_ACCEPTS_PER_CALL	32
#define SERVER_MAX_HANDSHAKES	512
/*
 * Refused peers held open for kptunnel's delay (TUN_REFUSE_DELAY_MS), in
 * all and per address: each holds a descriptor, so beyond these a refused
 * connection is closed at once, without the delay or an answer.
 */
#define SERVER_MAX_REFUSALS		64
#define SERVER_MAX_REFUSALS_PER_ADDR	4

/* A refused peer, answered after kptunnel's delay. */
struct refusal {
	TAILQ_ENTRY(refusal) link;
	uv_timer_t	 timer;
	struct conn	*conn;		/* NULL once closed */
	struct peerkey	 key;
	int		 ws;
};

static TAILQ_HEAD(, refusal) server_refusals =
    TAILQ_HEAD_INITIALIZER(server_refusals);
static int		server_nrefusals;
static struct ratelog	server_refuse_log;	/* a flood is one address's */

static int	server_nhandshakes(struct tun *);

static void
server_refusal_closed(uv_handle_t *h)
{
	free(h->data);
}

static void
server_refusal_fire(uv_timer_t *timer)
{
	struct refusal *r = timer->data;

	TAILQ_REMOVE(&server_refusals, r, link);
	server_nrefusals--;
	if (r->conn != NULL) {
		conn_set_owner(r->conn, NULL, NULL);
		if (r->ws)
			conn_http_refuse(r->conn, 406, "");
		else
			conn_close(r->conn, "address not allowed");
	}
	uv_close((uv_handle_t *)&r->timer, server_refusal_closed);
}

static void
server_refusal_conn_closed(struct conn *c, void *arg, const char *reason)
{
	struct refusal *r = arg;

	if (r != NULL)
		r->conn = NULL;
}

static void
server_refusal_data(struct conn *c, void *arg, uint8_t *p, size_t n)
{
}

static void
server_refusal_open(struct conn *c, void *arg)
{
}

static const struct conn_cbs server_refusal_cbs = {
	.on_open = server_refusal_open,
	.on_data = server_refusal_data,
	.on_close = server_refusal_conn_closed,
};

static int
server_admit(struct tun *t, const struct sockaddr *sa)
{
	size_t i;

	if (t->o->ncidr == 0)
		return 1;
	for (i = 0; i < t->o->ncidr; i++)
		if (cidr_match(&t->o->cidrs[i], sa))
			return 1;
	return 0;
}

/* Connections of this address in their handshake (refused ones too). */
static int
server_handshakes_of(struct tun *t, const struct peerkey *k)
{
	struct sockaddr_storage	 ss;
	struct peerkey		 hk;
	struct hs		*h;
	int			 n = 0;

	TAILQ_FOREACH(h, &t->handshakes, link) {
		if (h->x.conn == NULL ||
		    conn_peer_addr(h->x.conn, &ss) == -1 ||
		    peerkey_from(&hk, (struct sockaddr *)&ss) == -1)
			continue;
		if (peerkey_eq(&hk, k))
			n++;
	}
	return n;
}

static int
server_refusals_of(const struct peerkey *k)
{
	struct refusal	*r;
	int		 n = 0;

	TAILQ_FOREACH(r, &server_refusals, link)
		if (peerkey_eq(&r->key, k))
			n++;
	return n;
}

/*
 * Refuses an accepted connection: after kptunnel's delay with its answer
 * while the refusals held are within bounds, at once otherwise.
 */
static void
server_refuse(struct tun *t, uv_tcp_t *tcp, const struct sockaddr *sa,
    const struct peerkey *k, const char *why)
{
	struct refusal	*r;
	struct conn	*c;
	char		 err[ERR_LEN], peer[64];
	unsigned long	 dropped;
	int		 ws = cli_mode_is_ws(t->o->mode), held;

	held = server_nrefusals < SERVER_MAX_REFUSALS &&
	    server_refusals_of(k) < SERVER_MAX_REFUSALS_PER_ADDR;
	if (!held || (r = calloc(1, sizeof(*r))) == NULL) {
		uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
		c = NULL;
	} else if ((c = conn_new(t->loop, tcp, ws ? CONN_WS_SERVER :
	    CONN_RAW_SERVER, NULL, &server_refusal_cbs, r, err)) == NULL) {
		free(r);
		return;
	}
	if (ratelog_allow(&server_refuse_log, uv_now(t->loop), &dropped)) {
		if (getnameinfo(sa, sa->sa_family == AF_INET6 ?
		    sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in),
		    peer, sizeof(peer), NULL, 0, NI_NUMERICHOST) != 0)
			snprintf(peer, sizeof(peer), "?");
		if (dropped > 0)
			log_warnx("%s: connection refused (%s)%s (%lu more "
			    "suppressed)", peer, why, held ? "" : ", closed at "
			    "once", dropped);
		else
			log_warnx("%s: connection refused (%s)%s", peer, why,
			    held ? "" : ", closed at once");
	}
	if (c == NULL)
		return;
	conn_pause(c);
	r->conn = c;
	r->key = *k;
	r->ws = ws;
	TAILQ_INSERT_TAIL(&server_refusals, r, link);
	server_nrefusals++;
	uv_timer_init(t->loop, &r->timer);
	r->timer.data = r;
	uv_timer_start(&r->timer, server_refusal_fire, TUN_REFUSE_DELAY_MS, 0);
}

/*
 * Why a client from sa (key k) may not start a handshake now, or NULL if
 * it may: -ip, and the bounds on handshakes in all and per address.
 */
static const char *
server_refusal_reason(struct tun *t, const struct sockaddr *sa,
    const struct peerkey *k)
{
	int per_addr = t->o->max_hs_per_addr > 0 ? t->o->max_hs_per_addr :
	    CLI_MAX_HS_PER_ADDR;

	if (!server_admit(t, sa))
		return "not in -ip";
	if (server_nhandshakes(t) >= SERVER_MAX_HANDSHAKES)
		return "too many handshakes";
	if (server_handshakes_of(t, k) >= per_addr)
		return "too many handshakes from this address, "
		    "-maxHandshakesPerAddr";
	return NULL;
}

/*
 * Accepts one client from lst and starts its handshake, or refuses it.
 * Returns -1 when nothing more can be accepted in this call, 0 otherwise.
 */
static int
server_accept_one(struct tun *t, uv_stream_t *lst)
{
	struct sockaddr_storage	 ss;
	struct peerkey		 k;
	uv_tcp_t		*tcp;
	struct conn		*c;
	const char		*why;
	char			 err[ERR_LEN];
	int			 len;

	if ((tcp = malloc(sizeof(*tcp))) == NULL)
		return -1;
	uv_tcp_init(t->loop, tcp);
	if (uv_accept(lst, (uv_stream_t *)tcp) != 0) {
		uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
		return -1;
	}
	len = sizeof(ss);
	if (uv_tcp_getpeername(tcp, (struct sockaddr *)&ss, &len) != 0) {
		uv_close((uv_handle_t *)tcp, (uv_close_cb)free);
		return 0;
	}
	peerkey_from(&k, (struct sockaddr *)&ss);
	if ((why = server_refusal_reason(t, (struct sockaddr *)&ss, &k)) !=
	    NULL) {
		server_refuse(t, tcp, (struct sockaddr *)&ss, &k, why);
		return 0;
	}
	c = conn_new(t->loop, tcp, cli_mode_is_ws(t->o->mode) ?
	    CONN_WS_SERVER : CONN_RAW_SERVER, NULL, NULL, NULL, err);
	if (c == NULL) {
		log_warnx("accept: %s", err);
		return 0;
	}
	log_debug("%s: connected", conn_peer(c));
	hs_start(t, c);
	return 0;
}

static void
server_accept_cb(uv_stream_t *lst, int status)
{
	struct tun	*t = lst->data;
	int		 i;

	if (status < 0) {
		log_warnx("accept: %s", uv_strerror(status));
		return;
	}
	for (i = 0; i < SERVER_ACCEPTS_PER_CALL; i++)
		if (server_accept_one(t, lst) == -1)
			return;
}

static int
server_nhandshakes(struct tun *t)
{
	struct hs	*h;
	int		 n = 0;

	TAILQ_FOREACH(h, &t->handshakes, link)
		n++;
	return n;
}

int
server_start(struct tun *t, char *err)
{
	struct cli_opts		*o = t->o;
	struct addrinfo		 hints;
	uv_getaddrinfo_t	 req;
	char			 port[16], host[ADDR_NAME_MAX + 16];
	const char		*ready;
	int			 rc;

	ratelog_init(&server_refuse_log, 0, 0);
	conn_hts_allow(o->transport != CLI_TRANSPORT_WS);
	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_PASSIVE;
	snprintf(port, sizeof(port), "%d", o->server.port);
	addr_format(&o->server, host, sizeof(host));
	rc = uv_getaddrinfo(t->loop, &req, NULL,
	    o->server.name[0] ? o->server.name : "::", port, &hints);
	if (rc < 0) {
		err_set(err, "%s: %s", host, uv_strerror(rc));
		return -1;
	}
	rc = uv_tcp_bind(&t->listener, req.addrinfo->ai_addr, 0);
	uv_freeaddrinfo(req.addrinfo);
	if (rc == 0)
		rc = uv_listen((uv_stream_t *)&t->listener, 511,
		    server_accept_cb);
	if (rc < 0) {
		err_set(err, "listen on %s: %s", host, uv_strerror(rc));
		return -1;
	}
	/* The readiness lines kptunnel's dispatcher waits for (8.6). */
	switch (o->mode) {
	case MODE_WSSERVER:	ready = "start websocket -- "; break;
	case MODE_R_WSSERVER:	ready = "start reverse websocket -- "; break;
	case MODE_R_SERVER:	ready = "waiting reverse --- "; break;
	default:		ready = "waiting --- "; break;
	}
	log_info("%s%s (%s)", ready, host, cli_mode_name(o->mode));
	return 0;
}

struct sess *
server_find(struct tun *t, const char *token)
{
	struct sess *s;

	TAILQ_FOREACH(s, &t->sessions, link)
		if (!s->closing && crypto_streq(s->token, token))
			return s;
	return NULL;
}

void
server_session_ended(struct tun *t, struct sess *s, const char *why)
{
	TAILQ_REMOVE(&t->sessions, s, link);
	tun_session_ended(t, why);
}

/*
 * May a new session open the listeners of eff?  One held by a session whose
 * client is connected stays with it: -1 with err (the client is refused
 * with TUN_RESULT_BUSY and retries).  One held by a detached session passes
 * to the new session (server_take_listeners, once it exists); a worker
 * first has the dispatcher hand it those of its tunnel's previous worker.
 * Returns 0 otherwise.
 */
int
server_claim_listeners(struct tun *t, const struct msg_fwdlist *eff,
    char *err)
{
	struct sess	*s;
	size_t		 i;
	char		 host[ADDR_NAME_MAX + 16];

	for (i = 0; i < eff->n; i++) {
		if (!eff->fwds[i].reverse)
			continue;
		TAILQ_FOREACH(s, &t->sessions, link) {
			if (s->closing || s->x == NULL ||
			    mux_lsn_find(s, &eff->fwds[i]) == NULL)
				continue;
			addr_format(&eff->fwds[i].src, host, sizeof(host));
			err_set(err, "forward %s is held by session %" PRId64
			    " whose client is still connected", host, s->id);
			return -1;
		}
	}
	return tun_takeover(t, eff, err);
}

/*
 * Moves to the new session s the listeners it needs from detached
 * sessions, and ends those: a restarted client takes its tunnel over at
 * once instead of waiting -sessionTimeout, and the port never closes.
 */
void
server_take_listeners(struct tun *t, struct sess *s)
{
	struct sess	*o, *next;
	struct lsn	*l;
	size_t		 i;
	int		 moved;
	char		 why[64];

	for (o = TAILQ_FIRST(&t->sessions); o != NULL; o = next) {
		next = TAILQ_NEXT(o, link);
		if (o == s || o->closing || o->x != NULL)
			continue;
		moved = 0;
		for (i = 0; i < s->eff.n; i++) {
			if (!s->eff.fwds[i].reverse ||
			    mux_lsn_find(s, &s->eff.fwds[i]) != NULL ||
			    (l = mux_lsn_find(o, &s->eff.fwds[i])) == NULL)
				continue;
			mux_lsn_move(l, s);
			moved++;
		}
		if (moved == 0)
			continue;
		log_info("session %" PRId64 ": %d forward listener%s taken over "
		    "by session %" PRId64, o->id, moved, moved > 1 ? "s" : "",
		    s->id);
		snprintf(why, sizeof(why), "replaced by session %" PRId64,
		    s->id);
		sess_free(o, why);
	}
}
