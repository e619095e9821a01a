/*
 * The per-connection handshake (wire spec 5): lack-offset pattern, magic,
 * challenge / response, result.  A connection that completes it is
 * attached to a session; one that fails is closed, and nothing else is
 * touched.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "err.h"
#include "log.h"
#include "hs.h"

static const struct conn_cbs hs_cbs;

enum hs_role
hs_role(const struct hs *h)
{
	return cli_mode_is_server(h->tun->o->mode) ? HS_ROLE_SERVER :
	    HS_ROLE_CLIENT;
}

static void
hs_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Frees the handshake; the conn, if any is left, has been dealt with. */
static void
hs_free(struct hs *h)
{
	TAILQ_REMOVE(&h->tun->handshakes, h, link);
	xport_free(&h->x);
	uv_timer_stop(&h->timer);
	h->timer.data = h;
	uv_close((uv_handle_t *)&h->timer, hs_timer_closed);
}

void
hs_fail(struct hs *h, const char *why)
{
	struct conn *c = h->x.conn;

	if (h->phase == HS_DONE)
		return;
	h->phase = HS_DONE;
	h->x.conn = NULL;
	if (c != NULL) {
		conn_set_owner(c, &hs_cbs, NULL);
		conn_close(c, why);
	}
	if (hs_role(h) == HS_ROLE_CLIENT)
		client_connection_lost(h->tun, why);
	hs_free(h);
}

/* Sends one NORMAL packet on CITI 0 outside the session counters. */
int
hs_send(struct hs *h, const void *payload, size_t len)
{
	struct obuf	*b;
	uint8_t		*p;

	if ((b = conn_obuf(PKT_NORMAL_HDR + len)) == NULL)
		return -1;
	p = b->mem + CONN_HEADROOM;
	pkt_put_normal_hdr(p, PKT_CITI_CTRL, len);
	memcpy(p + PKT_NORMAL_HDR, payload, len);
	/* Handshake messages are always CFB: nothing is added. */
	if (xc_seal(h->x.enc, p, PKT_NORMAL_HDR, p + PKT_NORMAL_HDR, len) == -1) {
		free(b);
		return -1;
	}
	b->len = PKT_NORMAL_HDR + len;
	return conn_send(h->x.conn, b);
}

int
hs_send_lack(struct hs *h)
{
	struct obuf *b;

	if ((b = conn_obuf(PKT_LACK_LEN)) == NULL)
		return -1;
	memcpy(b->mem + CONN_HEADROOM, pkt_lack_pattern, PKT_LACK_LEN);
	b->len = PKT_LACK_LEN;
	return conn_send(h->x.conn, b);
}

/*
 * Takes the next auth-phase packet: it must be NORMAL on CITI 0.
 * Returns 1 with the decrypted payload, 0 if incomplete, -1 on error.
 */
static int
hs_next(struct hs *h, struct pkt *p, char *err)
{
	ssize_t n;
	size_t	len;

	n = pkt_parse(buf_head(&h->x.in), buf_unread(&h->x.in), p, err);
	if (n <= 0)
		return n;
	buf_consume(&h->x.in, n);
	if (p->kind != PKT_NORMAL || p->citi != PKT_CITI_CTRL) {
		err_set(err, "unexpected packet kind %d citi %" PRIu32
		    " during authentication", p->kind, p->citi);
		return -1;
	}
	if (xc_open(h->x.dec, p->payload - PKT_NORMAL_HDR, PKT_NORMAL_HDR,
	    p->payload, p->len, &len) == -1) {
		err_set(err, "a handshake message failed to decrypt");
		return -1;
	}
	p->len = len;
	return 1;
}

static int
hs_new_xport(struct hs *h, struct conn *c, char *err)
{
	struct cli_opts *o = h->tun->o;

	h->x.conn = c;
	if ((h->x.enc = xc_cfb_new(o->encpass, o->enc_count, 0, err)) == NULL ||
	    (h->x.dec = xc_cfb_new(o->encpass, o->enc_count, 1, err)) == NULL)
		return -1;
	return 0;
}

static void
hs_timeout(uv_timer_t *timer)
{
	struct hs *h = timer->data;

	if (h->phase == HS_REFUSED) {
		hs_fail(h, "authentication refused");
		return;
	}
	log_warnx("%s: handshake timed out", conn_peer(h->x.conn));
	hs_fail(h, "handshake timeout");
}

static struct hs *
hs_new(struct tun *t, struct conn *c)
{
	struct hs	*h;
	char		 err[ERR_LEN];

	if ((h = calloc(1, sizeof(*h))) == NULL) {
		conn_close(c, "out of memory");
		return NULL;
	}
	h->tun = t;
	h->win[0] = h->win[1] = TUN_WINDOW;
	uv_timer_init(t->loop, &h->timer);
	h->timer.data = h;
	TAILQ_INSERT_TAIL(&t->handshakes, h, link);
	conn_set_owner(c, &hs_cbs, h);
	if (hs_new_xport(h, c, err) == -1) {
		hs_fail(h, err);
		return NULL;
	}
	uv_timer_start(&h->timer, hs_timeout,
	    (uint64_t)t->o->handshake_timeout * 1000, 0);
	return h;
}

/*
 * Both peers offered the AEAD mode (docs/protocol.md): the payloads after
 * the AuthResult are sealed under this transport's own keys.  Returns 0,
 * or -1 with err.
 */
static int
hs_aead_switch(struct hs *h, char *err)
{
	struct cli_opts	*o = h->tun->o;
	struct xcipher	*enc = NULL, *dec = NULL;
	uint8_t		 c2s[AEAD_KEY_LEN], s2c[AEAD_KEY_LEN];
	int		 server = hs_role(h) == HS_ROLE_SERVER, rc = -1;

	if (aead_keys(o->pass, o->encpass, h->challenge, h->hint, h->win,
	    c2s, s2c, err) == -1)
		goto done;
	if ((enc = xc_aead_new(server ? s2c : c2s, err)) == NULL ||
	    (dec = xc_aead_new(server ? c2s : s2c, err)) == NULL)
		goto done;
	xc_free(h->x.enc);
	xc_free(h->x.dec);
	h->x.enc = enc;
	h->x.dec = dec;
	enc = dec = NULL;
	rc = 0;
done:
	xc_free(enc);
	xc_free(dec);
	OPENSSL_cleanse(c2s, sizeof(c2s));
	OPENSSL_cleanse(s2c, sizeof(s2c));
	return rc;
}

int
hs_windows(struct hs *h, int64_t announced, char *err)
{
	int own = hs_role(h) == HS_ROLE_SERVER;

	if (announced != 0 && (announced < TUN_WINDOW ||
	    announced > TUN_WINDOW_MAX)) {
		err_set(err, "the peer announces a window of %" PRId64
		    " packets (%d to %d allowed)", announced, TUN_WINDOW,
		    TUN_WINDOW_MAX);
		return -1;
	}
	h->win[own] = (uint32_t)h->tun->o->window;
	h->win[!own] = announced != 0 ? (uint32_t)announced : TUN_WINDOW;
	return 0;
}

/* Hands the connection over to its session, with what is left to parse. */
void
hs_attach(struct hs *h, struct sess *s, uint64_t peer_read_no)
{
	struct xport	*x;
	char		 err[ERR_LEN];
	int		 own = hs_role(h) == HS_ROLE_SERVER;

	/*
	 * Its history was cut to fit one mode's packets, and a session that
	 * ran the AEAD mode must not be resumed without it.
	 */
	if (s->started && s->aead != h->aead) {
		log_warnx("%s: session %" PRId64 " ran %s, this connection "
		    "offers %s: refused", conn_peer(h->x.conn), s->id,
		    s->aead ? "the AEAD mode" : "CFB",
		    h->aead ? "the AEAD mode" : "CFB");
		hs_fail(h, "cipher mode changed on resume");
		return;
	}
	/* Streams in flight were sent under the session's windows. */
	if (s->started && (s->win_own != h->win[own] ||
	    s->win_peer != h->win[!own])) {
		log_warnx("%s: session %" PRId64 " ran windows of %u/%u "
		    "packets, this connection announces %u/%u: refused",
		    conn_peer(h->x.conn), s->id, s->win_own, s->win_peer,
		    h->win[own], h->win[!own]);
		hs_fail(h, "windows changed on resume");
		return;
	}
	if (h->aead && hs_aead_switch(h, err) == -1) {
		hs_fail(h, err);
		return;
	}
	s->aead = h->aead;
	s->win_own = h->win[own];
	s->win_peer = h->win[!own];
	if (h->aead)
		log_info("%s: session %" PRId64 ": AEAD mode (AES-256-GCM) on "
		    "this connection; windows: %u packets in, %u out",
		    conn_peer(h->x.conn), s->id, s->win_own, s->win_peer);
	if ((x = malloc(sizeof(*x))) == NULL) {
		hs_fail(h, "out of memory");
		return;
	}
	*x = h->x;
	memset(&h->x, 0, sizeof(h->x));
	h->phase = HS_DONE;
	hs_free(h);
	sess_attach(s, x, peer_read_no);
}

/* Server: a refused peer gets the answer, then the 3 s delay, then close. */
void
hs_refuse(struct hs *h, const char *result, const char *why)
{
	struct msg_result	 r;
	char			*json;
	size_t			 len;

	log_warnx("%s: authentication failed: %s", conn_peer(h->x.conn), why);
	memset(&r, 0, sizeof(r));
	snprintf(r.result, sizeof(r.result), "%s", result);
	r.fwds.null = 1;
	if ((json = msg_result_encode(&r, &len)) != NULL) {
		hs_send(h, json, len);
		free(json);
	}
	h->phase = HS_REFUSED;
	conn_pause(h->x.conn);
	uv_timer_start(&h->timer, hs_timeout, TUN_REFUSE_DELAY_MS, 0);
}

/*
 * The phases of each role, in order; hs_step follows them.  The message
 * a phase expects is read before its handler runs, so a handler never
 * sees a half message or one of another phase's kind.
 */
static const struct hs_rule hs_server_rules[] = {
	{ HS_LACK,	HS_MSG_LACK,		hs_server_challenge,	HS_RESPONSE },
	{ HS_RESPONSE,	HS_MSG_RESPONSE,	hs_server_response,	HS_DONE },
};

static const struct hs_rule hs_client_rules[] = {
	{ HS_LACK,	HS_MSG_LACK,		hs_client_lack,		HS_MAGIC },
	{ HS_MAGIC,	HS_MSG_MAGIC,		hs_client_magic,	HS_CHALLENGE },
	{ HS_CHALLENGE,	HS_MSG_CHALLENGE,	hs_client_response,	HS_RESULT },
	{ HS_RESULT,	HS_MSG_RESULT,		hs_client_result,	HS_DONE },
};

const struct hs_rule *
hs_rule_find(enum hs_role role, enum hs_phase phase)
{
	const struct hs_rule	*rules;
	size_t			 i, n;

	if (role == HS_ROLE_SERVER) {
		rules = hs_server_rules;
		n = sizeof(hs_server_rules) / sizeof(hs_server_rules[0]);
	} else {
		rules = hs_client_rules;
		n = sizeof(hs_client_rules) / sizeof(hs_client_rules[0]);
	}
	for (i = 0; i < n; i++)
		if (rules[i].phase == phase)
			return &rules[i];
	return NULL;
}

/*
 * Reads the message rule r expects from the buffered input: 1 with its
 * payload in p and n (none for the lack pattern), 0 when more input is
 * needed, -1 with err.
 */
static int
hs_read(struct hs *h, const struct hs_rule *r, struct pkt *pk,
    const uint8_t **p, size_t *n, char *err)
{
	ssize_t	len;
	int	rc;

	*p = NULL;
	*n = 0;
	if (r->expect == HS_MSG_LACK) {
		len = pkt_lack_parse(buf_head(&h->x.in), buf_unread(&h->x.in),
		    err);
		if (len <= 0)
			return len < 0 ? -1 : 0;
		buf_consume(&h->x.in, len);
		return 1;
	}
	if ((rc = hs_next(h, pk, err)) <= 0)
		return rc;
	*p = pk->payload;
	*n = pk->len;
	return 1;
}

/* Runs the handshake as far as the buffered input allows. */
static void
hs_step(struct hs *h)
{
	const struct hs_rule	*r;
	const uint8_t		*p;
	struct pkt		 pk;
	char			 err[ERR_LEN];
	size_t			 n;
	int			 rc;

	while (h->phase != HS_DONE && h->phase != HS_REFUSED) {
		if ((r = hs_rule_find(hs_role(h), h->phase)) == NULL) {
			err_set(err, "no handshake phase %d", h->phase);
			goto fail;
		}
		if ((rc = hs_read(h, r, &pk, &p, &n, err)) == 0)
			return;
		if (rc < 0)
			goto fail;
		switch (r->handler(h, p, n, err)) {
		case HS_NEXT:
			h->phase = r->next;
			break;
		case HS_HELD:
			return;
		case HS_FAIL:
			goto fail;
		}
	}
	return;
fail:
	log_warnx("%s: handshake failed: %s", h->x.conn ?
	    conn_peer(h->x.conn) : "?", err);
	hs_fail(h, err);
}

static void
hs_on_open(struct conn *c, void *arg)
{
	struct hs *h = arg;

	if (hs_role(h) == HS_ROLE_CLIENT) {
		client_upgraded(h->tun);
		client_transport_opened(h->tun, c);
	}
	/* The server speaks first (wire spec 5). */
	else if (hs_send_lack(h) == -1)
		hs_fail(h, "cannot send");
}

static void
hs_on_data(struct conn *c, void *arg, uint8_t *p, size_t n)
{
	struct hs *h = arg;

	if (h == NULL || h->phase == HS_DONE)
		return;
	if (buf_append(&h->x.in, p, n, TUN_INBUF_MAX) == -1) {
		hs_fail(h, "handshake input too large");
		return;
	}
	hs_step(h);
}

static void
hs_on_close(struct conn *c, void *arg, const char *reason)
{
	struct hs	*h = arg;
	struct tun	*t;
	int		 unknown = 0;

	if (h == NULL || h->phase == HS_DONE)
		return;
	t = h->tun;
	h->x.conn = NULL;
	/* Its request went to an HTTP transport: no handshake of its own. */
	if (conn_why(c) != CONN_WHY_HANDED)
		log_info("%s: closed during handshake: %s", conn_peer(c),
		    reason);
	if (hs_role(h) == HS_ROLE_CLIENT) {
		conn_upgrade_refusal(c, &unknown);
		client_transport_refused(t, c);
	}
	hs_fail(h, reason);
	/* After hs_fail scheduled the retry, which this may replace. */
	if (unknown)
		client_session_unknown(t, reason);
}

static const struct conn_cbs hs_cbs = {
	.on_open = hs_on_open,
	.on_data = hs_on_data,
	.on_close = hs_on_close,
};

void
hs_start(struct tun *t, struct conn *c)
{
	struct hs *h;

	if ((h = hs_new(t, c)) == NULL)
		return;
	/* Raw and adopted (already upgraded) conns are open from the start. */
	if (conn_is_open(c))
		hs_on_open(c, h);
	conn_kick(c);
}

void
hs_client(struct tun *t, struct conn *c)
{
	hs_new(t, c);
}

void
hs_close_all(struct tun *t)
{
	struct hs *h;

	while ((h = TAILQ_FIRST(&t->handshakes)) != NULL)
		hs_fail(h, "shutting down");
}
