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

#include "crypto.h"
#include "err.h"
#include "log.h"
#include "tunneld.h"

enum hs_phase {
	HS_LACK,		/* reading the peer's lack-offset pattern */
	HS_MAGIC,		/* client: reading the magic */
	HS_CHALLENGE,		/* client: reading the challenge */
	HS_RESULT,		/* client: reading the result */
	HS_RESPONSE		/* server: reading the response */
};

/* AuthResult of a server that takes no forward list from its client. */
#define HS_NG_FWDS	"ng: the server takes no forward list from the client"

static const struct conn_cbs hs_cbs;

static void
hs_timer_closed(uv_handle_t *h)
{
	free(h->data);
}

/* Frees the handshake; the conn, if any is left, has been dealt with. */
static void
hs_free(struct hs *h)
{
	if (h->tun->o != NULL && cli_mode_is_server(h->tun->o->mode))
		TAILQ_REMOVE(&h->tun->handshakes, h, link);
	xport_free(&h->x);
	uv_timer_stop(&h->timer);
	h->timer.data = h;
	uv_close((uv_handle_t *)&h->timer, hs_timer_closed);
}

static void
hs_fail(struct hs *h, const char *why)
{
	struct conn *c = h->x.conn;

	if (h->done)
		return;
	h->done = 1;
	h->x.conn = NULL;
	if (c != NULL) {
		conn_set_owner(c, &hs_cbs, NULL);
		conn_close(c, why);
	}
	if (!cli_mode_is_server(h->tun->o->mode))
		client_connection_lost(h->tun, why);
	hs_free(h);
}

/* Sends one NORMAL packet on CITI 0 outside the session counters. */
static int
hs_send(struct hs *h, const void *payload, size_t len)
{
	struct obuf	*b;
	uint8_t		*p;

	if ((b = conn_obuf(PKT_NORMAL_HDR + len)) == NULL)
		return -1;
	p = b->mem + CONN_HEADROOM;
	pkt_put_normal_hdr(p, PKT_CITI_CTRL, len);
	memcpy(p + PKT_NORMAL_HDR, payload, len);
	enc_packet(h->x.enc, p + PKT_NORMAL_HDR, len);
	b->len = PKT_NORMAL_HDR + len;
	return conn_send(h->x.conn, b);
}

static int
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

	n = pkt_parse(buf_head(&h->x.in), buf_unread(&h->x.in), p, err);
	if (n <= 0)
		return n;
	buf_consume(&h->x.in, n);
	if (p->kind != PKT_NORMAL || p->citi != PKT_CITI_CTRL) {
		err_set(err, "unexpected packet kind %d citi %" PRIu32
		    " during authentication", p->kind, p->citi);
		return -1;
	}
	enc_packet(h->x.dec, p->payload, p->len);
	return 1;
}

static int
hs_new_xport(struct hs *h, struct conn *c, char *err)
{
	struct cli_opts *o = h->tun->o;

	h->x.conn = c;
	if ((h->x.enc = enc_new(o->encpass, o->enc_count, 0, err)) == NULL ||
	    (h->x.dec = enc_new(o->encpass, o->enc_count, 1, err)) == NULL)
		return -1;
	return 0;
}

static void
hs_timeout(uv_timer_t *timer)
{
	struct hs *h = timer->data;

	if (h->refused) {
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
	uv_timer_init(t->loop, &h->timer);
	h->timer.data = h;
	if (cli_mode_is_server(t->o->mode))
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

/* Hands the connection over to its session, with what is left to parse. */
static void
hs_attach(struct hs *h, struct sess *s, uint64_t peer_read_no)
{
	struct xport *x;

	if ((x = malloc(sizeof(*x))) == NULL) {
		hs_fail(h, "out of memory");
		return;
	}
	*x = h->x;
	memset(&h->x, 0, sizeof(h->x));
	h->done = 1;
	hs_free(h);
	sess_attach(s, x, peer_read_no);
}

/* Server: a refused peer gets the answer, then the 3 s delay, then close. */
static void
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
	h->refused = 1;
	conn_pause(h->x.conn);
	uv_timer_start(&h->timer, hs_timeout, TUN_REFUSE_DELAY_MS, 0);
}

static int
hs_server_send_result(struct hs *h, struct sess *s, int ok)
{
	struct msg_result	 r;
	struct cli_opts		*o = h->tun->o;
	char			*json;
	size_t			 len;
	int			 rc;

	memset(&r, 0, sizeof(r));
	snprintf(r.result, sizeof(r.result), "%s", ok ? "ok" : "ng");
	r.session_id = s->id;
	snprintf(r.token, sizeof(r.token), "%s", s->token);
	r.write_no = s->write_no;
	r.read_no = s->read_no;
	r.fwds = o->fwds;	/* our own list, [] if empty */
	r.fwds.null = 0;
	if ((json = msg_result_encode(&r, &len)) == NULL)
		return -1;
	rc = hs_send(h, json, len);
	free(json);
	return rc;
}

/*
 * A server with no forward list of its own refuses a client that brings
 * one, unless it is a standalone server run with -allowClientForwards:
 * the client's list would make this host dial what the client names and
 * listen where it says.  Refusing with an explicit AuthResult tells a
 * kptunnel client why (it prints "failed to auth -- <Result>" and stops)
 * instead of leaving it with listeners whose every stream is refused.
 * Returns 1 when h was refused.
 */
static int
hs_server_refuses_fwds(struct hs *h, const struct msg_response *m)
{
	struct tun	*t = h->tun;
	struct cli_opts	*o = t->o;
	char		 why[ERR_LEN];

	if (o->fwds.n > 0 || m->fwds.null || m->fwds.n == 0 ||
	    (!t->worker && o->allow_client_fwds))
		return 0;
	if (t->worker)
		snprintf(why, sizeof(why), "the client brought %zu forwards "
		    "and the policy names none: refused", m->fwds.n);
	else
		snprintf(why, sizeof(why), "the client brought %zu forwards "
		    "and this server has none: refused (-allowClientForwards "
		    "would accept them)", m->fwds.n);
	hs_refuse(h, HS_NG_FWDS, why);
	return 1;
}

static void
hs_server_response(struct hs *h, struct pkt *p)
{
	struct tun		*t = h->tun;
	struct cli_opts		*o = t->o;
	struct msg_response	 m;
	const struct msg_fwdlist	*eff;
	struct sess		*s;
	char			 err[ERR_LEN], expect[89], ng[MSG_STR_MAX + 64];

	if (msg_response_decode(p->payload, p->len, &m, err) == -1) {
		hs_refuse(h, "ng", err);
		return;
	}
	crypto_auth_response(h->challenge, o->pass, m.hint, expect);
	if (!crypto_streq(expect, m.response)) {
		hs_refuse(h, "ng", "wrong response: the client has another -pass");
		return;
	}
	if (m.token[0] == '\0') {
		if (m.ctrl == MSG_CTRL_STOP) {
			log_info("%s: stop requested", conn_peer(h->x.conn));
			struct sess dummy = { .id = 0 };
			hs_server_send_result(h, &dummy, 1);
			tun_stop(t, 0);
			return;
		}
		if (hs_server_refuses_fwds(h, &m))
			return;
		/*
		 * Our own list wins (wire spec 5.5.4).  The client's is used
		 * only by a standalone server told so: a worker's list is its
		 * policy's, and an empty one means no forwards.
		 */
		eff = o->fwds.n > 0 || t->worker || !o->allow_client_fwds ?
		    &o->fwds : &m.fwds;
		if (server_claim_listeners(t, eff, err) == -1) {
			snprintf(ng, sizeof(ng), "%s%s", TUN_RESULT_BUSY, err);
			hs_refuse(h, ng, err);
			return;
		}
		if ((s = sess_new(t, 1)) == NULL) {
			hs_refuse(h, "ng", "out of memory");
			return;
		}
		s->eff = *eff;
		s->eff.null = 0;
		server_take_listeners(t, s);
		log_info("%s: session %" PRId64 " created",
		    conn_peer(h->x.conn), s->id);
	} else {
		if ((s = server_find(t, m.token)) == NULL) {
			/* Go's text, format bug included (wire spec 5.5). */
			snprintf(ng, sizeof(ng),
			    "ng: not found session -- %%!d(string=%s)", m.token);
			hs_refuse(h, ng, "unknown session token");
			return;
		}
		if (m.ctrl == MSG_CTRL_STOP) {
			hs_server_send_result(h, s, 1);
			sess_free(s, "stop requested by the client");
			hs_fail(h, "session stopped");
			return;
		}
		if (sess_can_resume(s, m.read_no, m.write_no, err) == -1) {
			hs_refuse(h, "ng", err);
			return;
		}
		log_info("%s: session %" PRId64 " resumed (client WriteNo %"
		    PRId64 " ReadNo %" PRId64 ")", conn_peer(h->x.conn),
		    s->id, m.write_no, m.read_no);
	}
	if (hs_server_send_result(h, s, 1) == -1) {
		hs_fail(h, "cannot send the result");
		if (m.token[0] == '\0')
			sess_free(s, "handshake failed");
		return;
	}
	tun_authed(t);
	hs_attach(h, s, m.read_no);
}

static const char *
hs_mode_ok(enum cli_mode mine, const char *theirs)
{
	int rev = cli_mode_is_reverse(mine);

	if (strcmp(theirs, "server") == 0 || strcmp(theirs, "wsserver") == 0)
		return rev ? "a forward client needs a forward server" : NULL;
	if (strcmp(theirs, "r-server") == 0 ||
	    strcmp(theirs, "r-wsserver") == 0)
		return rev ? NULL : "a reverse server needs a reverse client";
	return NULL;
}

static int
hs_client_response(struct hs *h, struct pkt *p, char *err)
{
	struct tun		*t = h->tun;
	struct cli_opts		*o = t->o;
	struct sess		*s = t->csess;
	struct msg_challenge	 ch;
	struct msg_response	 m;
	const char		*why;
	char			*json;
	size_t			 len;
	int			 rc;

	if (msg_challenge_decode(p->payload, p->len, &ch, err) == -1)
		return -1;
	if ((why = hs_mode_ok(o->mode, ch.mode)) != NULL) {
		client_fatal(t, "server mode %s does not match %s: %s",
		    ch.mode, cli_mode_name(o->mode), why);
		return -2;
	}
	memset(&m, 0, sizeof(m));
	if (crypto_nonce(m.hint, err) == -1)
		return -1;
	crypto_auth_response(ch.challenge, o->pass, m.hint, m.response);
	if (s != NULL) {
		snprintf(m.token, sizeof(m.token), "%s", s->token);
		m.write_no = s->write_no;
		m.read_no = s->read_no;
	}
	if (strcmp(o->ctrl, "stop") == 0)
		m.ctrl = MSG_CTRL_STOP;
	m.fwds = o->fwds;
	m.fwds.null = o->mode == MODE_R_CLIENT ||
	    (o->mode == MODE_R_WSCLIENT && s != NULL);
	if (m.fwds.null)
		m.fwds.n = 0;
	json = msg_response_encode(&m, &len);
	OPENSSL_cleanse(m.response, sizeof(m.response));
	if (json == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	rc = hs_send(h, json, len);
	free(json);
	return rc;
}

/*
 * The server's list replaces ours (wire spec 5.5), so a server would
 * choose what this host dials (r) and where it listens (t).  It is obeyed
 * only when each of its forwards is one the user gave, or with
 * -acceptServerForwards.  Returns 0 when the list may be used, -1 with
 * err naming the first forward the user did not give.
 */
static int
hs_client_refuses_fwds(struct tun *t, const struct msg_fwdlist *l,
    char *err)
{
	struct cli_opts	*o = t->o;
	const struct fwd *f;
	char		 src[ADDR_NAME_MAX + 8], dst[ADDR_NAME_MAX + 8];
	size_t		 i, j;

	if (l->null || o->accept_server_fwds)
		return 0;
	for (i = 0; i < l->n; i++) {
		f = &l->fwds[i];
		for (j = 0; j < o->fwds.n; j++)
			if (fwd_equal(f, &o->fwds.fwds[j]))
				break;
		if (j < o->fwds.n)
			continue;
		addr_format(&f->src, src, sizeof(src));
		addr_format(&f->dst, dst, sizeof(dst));
		err_set(err, "the server's forward list names %s,%s,%s, which "
		    "was not given here: refused (give the forwards on the "
		    "command line, or -acceptServerForwards to obey the "
		    "server)", f->reverse ? "r" : "t", src, dst);
		return -1;
	}
	return 0;
}

static void
hs_client_result(struct hs *h, struct pkt *p)
{
	struct tun		*t = h->tun;
	struct cli_opts		*o = t->o;
	struct msg_result	 r;
	struct sess		*s = t->csess;
	char			 err[ERR_LEN];
	size_t			 i;

	if (msg_result_decode(p->payload, p->len, &r, err) == -1) {
		hs_fail(h, err);
		return;
	}
	if (strcmp(r.result, "ok") != 0) {
		if (strncmp(r.result, TUN_RESULT_BUSY,
		    strlen(TUN_RESULT_BUSY)) == 0) {
			/* Transient: retried with backoff, or fatal in time. */
			client_refused_busy(t, r.result);
			hs_fail(h, "refused for now");
			return;
		}
		if (strncmp(r.result, "ng: not found session", 21) == 0)
			client_fatal(t, "the server no longer knows session %s"
			    " (it restarted or timed the session out)",
			    s ? s->token : "?");
		else if (strcmp(r.result, HS_NG_FWDS) == 0)
			client_fatal(t, "the server names no forwards and "
			    "refused ours (%s)", r.result);
		else
			client_fatal(t, "authentication refused by the server "
			    "(%s): check -pass", r.result);
		hs_fail(h, "refused");
		return;
	}
	if (strcmp(o->ctrl, "stop") == 0) {
		log_info("stop request accepted by the server");
		hs_fail(h, "stopped");
		tun_stop(t, 0);
		return;
	}
	if (s == NULL) {
		if (hs_client_refuses_fwds(t, &r.fwds, err) == -1) {
			client_fatal(t, "%s", err);
			hs_fail(h, "forward list refused");
			return;
		}
		if ((s = sess_new(t, 0)) == NULL) {
			hs_fail(h, "out of memory");
			return;
		}
		s->id = r.session_id;
		snprintf(s->token, sizeof(s->token), "%s", r.token);
		s->eff = o->fwds;
		if (!r.fwds.null && r.fwds.n > 0) {
			int same = r.fwds.n == o->fwds.n;

			for (i = 0; same && i < r.fwds.n; i++)
				same = fwd_equal(&r.fwds.fwds[i],
				    &o->fwds.fwds[i]);
			if (!same)
				log_info("the server's forward list overrides "
				    "ours");
			s->eff = r.fwds;
		}
		s->eff.null = 0;
		t->csess = s;
		log_info("session %" PRId64 " established with %s",
		    s->id, conn_peer(h->x.conn));
	} else {
		if (r.session_id != s->id) {
			client_fatal(t, "server answered session id %" PRId64
			    " while resuming %" PRId64, r.session_id, s->id);
			hs_fail(h, "session id mismatch");
			return;
		}
		if (sess_can_resume(s, r.read_no, r.write_no, err) == -1) {
			client_fatal(t, "cannot resume session %" PRId64
			    ": %s", s->id, err);
			hs_fail(h, err);
			return;
		}
		log_info("session %" PRId64 " resumed (server WriteNo %"
		    PRId64 " ReadNo %" PRId64 ")", s->id, r.write_no,
		    r.read_no);
		/*
		 * NOTE: a resume is a successful attempt only once the server
		 * sends a packet on it (client_transport_proven()).  A Go
		 * server may answer "ok" and close at once: while it tears
		 * the old connection down it hands a nil header to every
		 * connection handler that waits within 100 ms, which ends
		 * that handler and its connection (docs/protocol.md).
		 * Reconnecting at once would land in that window again and
		 * again; counted as a failure, the next try waits 500 ms.
		 */
		hs_attach(h, s, r.read_no);
		return;
	}
	t->attempts = 0;
	t->busy_since = 0;
	hs_attach(h, s, r.read_no);
}

/* Runs the handshake as far as the buffered input allows. */
static void
hs_step(struct hs *h)
{
	struct cli_opts	*o = h->tun->o;
	struct pkt	 p;
	char		 err[ERR_LEN];
	uint8_t		 magic[32];
	ssize_t		 n;
	int		 rc;

	while (!h->done && !h->refused) {
		if (h->phase == HS_LACK) {
			n = pkt_lack_parse(buf_head(&h->x.in),
			    buf_unread(&h->x.in), err);
			if (n == 0)
				return;
			if (n < 0)
				goto fail;
			buf_consume(&h->x.in, n);
			if (cli_mode_is_server(o->mode)) {
				struct msg_challenge	 ch;
				char			*json;
				size_t			 len;

				memset(&ch, 0, sizeof(ch));
				snprintf(ch.ver, sizeof(ch.ver), "1.00");
				snprintf(ch.mode, sizeof(ch.mode), "%s",
				    cli_mode_name(o->mode));
				if (crypto_nonce(ch.challenge, err) == -1)
					goto fail;
				memcpy(h->challenge, ch.challenge,
				    sizeof(h->challenge));
				if ((json = msg_challenge_encode(&ch, &len)) ==
				    NULL || hs_send(h, h->tun->magic, 32) == -1 ||
				    hs_send(h, json, len) == -1) {
					free(json);
					err_set(err, "cannot send the challenge");
					goto fail;
				}
				free(json);
				h->phase = HS_RESPONSE;
			} else {
				if (hs_send_lack(h) == -1) {
					err_set(err, "cannot send");
					goto fail;
				}
				h->phase = HS_MAGIC;
			}
			continue;
		}
		if ((rc = hs_next(h, &p, err)) == 0)
			return;
		if (rc < 0)
			goto fail;
		switch (h->phase) {
		case HS_MAGIC:
			crypto_magic(o->pass, o->encpass, magic);
			if (p.len != 32 || CRYPTO_memcmp(magic, p.payload,
			    32) != 0) {
				err_set(err, "the server does not know our "
				    "-pass/-encPass (or -encCount differs)");
				/* Retrying cannot help a new tunnel. */
				if (h->tun->csess == NULL) {
					client_fatal(h->tun, "authentication "
					    "failed: %s", err);
					hs_fail(h, err);
					return;
				}
				goto fail;
			}
			h->phase = HS_CHALLENGE;
			break;
		case HS_CHALLENGE:
			if ((rc = hs_client_response(h, &p, err)) == -2)
				return;
			if (rc < 0)
				goto fail;
			h->phase = HS_RESULT;
			break;
		case HS_RESULT:
			hs_client_result(h, &p);
			return;
		case HS_RESPONSE:
			hs_server_response(h, &p);
			return;
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

	/* The server speaks first (wire spec 5). */
	if (cli_mode_is_server(h->tun->o->mode) && hs_send_lack(h) == -1)
		hs_fail(h, "cannot send");
}

static void
hs_on_data(struct conn *c, void *arg, uint8_t *p, size_t n)
{
	struct hs *h = arg;

	if (h == NULL || h->done)
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
	struct hs *h = arg;

	if (h == NULL || h->done)
		return;
	h->x.conn = NULL;
	log_info("%s: closed during handshake: %s", conn_peer(c), reason);
	hs_fail(h, reason);
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
