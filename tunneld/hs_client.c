/*
 * The client's side of the handshake (wire spec 5.2-5.5): it answers the
 * server's lack pattern with its own, checks the magic, answers the
 * challenge with its session's token and counters, and the result creates
 * or resumes its one session, or ends the client.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "crypto.h"
#include "err.h"
#include "hs.h"
#include "log.h"
#include "mode.h"

const char *
hs_client_mode_mismatch(enum cli_mode mine, const char *theirs)
{
	int f = mode_flags(mode_lookup(theirs));

	/* A client mode or an unknown name: nothing to compare. */
	if (!(f & MODE_F_SERVER))
		return NULL;
	if (cli_mode_is_reverse(mine) == !!(f & MODE_F_REVERSE))
		return NULL;
	return cli_mode_is_reverse(mine) ?
	    "a forward client needs a forward server" :
	    "a reverse server needs a reverse client";
}

/* Phase HS_LACK: the server spoke first; we answer with our pattern. */
enum hs_verdict
hs_client_lack(struct hs *h, const uint8_t *p, size_t n, char *err)
{
	if (hs_send_lack(h) == -1) {
		err_set(err, "cannot send");
		return HS_FAIL;
	}
	return HS_NEXT;
}

/* Phase HS_MAGIC: the server must derive the same magic from our secrets. */
enum hs_verdict
hs_client_magic(struct hs *h, const uint8_t *p, size_t n, char *err)
{
	struct cli_opts	*o = h->tun->o;
	uint8_t		 magic[32];

	crypto_magic(o->pass, o->encpass, magic);
	if (n == 32 && CRYPTO_memcmp(magic, p, 32) == 0)
		return HS_NEXT;
	err_set(err, "the server does not know our -pass/-encPass (or "
	    "-encCount differs)");
	if (h->tun->csess != NULL)
		return HS_FAIL;
	/* Retrying cannot help a new tunnel. */
	client_fatal(h->tun, "authentication failed: %s", err);
	hs_fail(h, err);
	return HS_HELD;
}

/*
 * Phase HS_CHALLENGE: answers with the response, our session's token and
 * counters (to resume it), and our forward list.  A server of the other
 * direction ends the client (HS_HELD: the handshake waits for the stop).
 */
enum hs_verdict
hs_client_response(struct hs *h, const uint8_t *p, size_t n, char *err)
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

	if (msg_challenge_decode(p, n, &ch, err) == -1)
		return HS_FAIL;
	if ((why = hs_client_mode_mismatch(o->mode, ch.mode)) != NULL) {
		client_fatal(t, "server mode %s does not match %s: %s",
		    ch.mode, cli_mode_name(o->mode), why);
		return HS_HELD;
	}
	memset(&m, 0, sizeof(m));
	/* A marked Challenge offers the AEAD mode; a marked Hint takes it. */
	snprintf(h->challenge, sizeof(h->challenge), "%s", ch.challenge);
	h->aead = hs_aead_wanted(o) && aead_mark_check(o->pass, o->encpass,
	    AEAD_MARK_CHALLENGE, "", ch.challenge);
	if (h->aead) {
		if (aead_mark_new(o->pass, o->encpass, AEAD_MARK_HINT,
		    ch.challenge, m.hint, err) == -1)
			return HS_FAIL;
		m.window = o->window;	/* the window extension rides along */
	} else if (crypto_nonce(m.hint, err) == -1)
		return HS_FAIL;
	/* UDP forwards travel only in the AEAD mode (docs/protocol.md). */
	if (!h->aead && msg_fwdlist_udp(&o->fwds) > 0) {
		client_fatal(t, "UDP forwards need a tunneld server in the AEAD "
		    "mode: this one did not offer it (a kptunnel server, or "
		    "-noAead or -encCount 0 there, or another -encPass)");
		hs_fail(h, "UDP forwards not carried");
		return HS_HELD;
	}
	m.udp = h->aead;
	snprintf(h->hint, sizeof(h->hint), "%s", m.hint);
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
		return HS_FAIL;
	}
	rc = hs_send(h, json, len);
	free(json);
	return rc == -1 ? HS_FAIL : HS_NEXT;
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
		err_set(err, "the server's forward list names %s%s,%s,%s, "
		    "which was not given here: refused (give the forwards on "
		    "the command line, or -acceptServerForwards to obey the "
		    "server)", f->udp ? "u" : "", f->reverse ? "r" : "t", src,
		    dst);
		return -1;
	}
	return 0;
}

/*
 * A result other than "ok": retried later (busy), a session gone (the end
 * of the client, or a new session with -renew), or the end of the client.
 */
static void
hs_client_refused(struct hs *h, const struct msg_result *r)
{
	struct tun	*t = h->tun;

	if (strncmp(r->result, TUN_RESULT_BUSY, strlen(TUN_RESULT_BUSY)) == 0) {
		/* Transient: retried with backoff, or fatal in time. */
		client_refused_busy(t, r->result);
		hs_fail(h, "refused for now");
		return;
	}
	if (strncmp(r->result, "ng: not found session", 21) == 0) {
		/* The server that ran our handshake is the one to know. */
		hs_fail(h, "session not found");
		client_session_gone(t, "the server no longer knows it (it "
		    "restarted or timed the session out)");
		return;
	}
	if (strcmp(r->result, HS_NG_FWDS) == 0)
		client_fatal(t, "the server names no forwards and refused ours "
		    "(%s)", r->result);
	else
		client_fatal(t, "authentication refused by the server (%s): "
		    "check -pass", r->result);
	hs_fail(h, "refused");
}

/* Our first "ok": the session, with the forward list in force. */
static struct sess *
hs_client_new_session(struct hs *h, const struct msg_result *r)
{
	struct tun	*t = h->tun;
	struct cli_opts	*o = t->o;
	struct sess	*s;
	char		 err[ERR_LEN];
	size_t		 i;
	int		 same;

	if (hs_client_refuses_fwds(t, &r->fwds, err) == -1) {
		client_fatal(t, "%s", err);
		hs_fail(h, "forward list refused");
		return NULL;
	}
	/* A server that does not write the member does not carry UDP (its
	 * list, if any, has none: only the member brings them). */
	if (!r->udp && msg_fwdlist_udp(&o->fwds) > 0) {
		client_fatal(t, "the server does not carry UDP forwards (a "
		    "tunneld without them?)");
		hs_fail(h, "UDP forwards not carried");
		return NULL;
	}
	if ((s = sess_new(t, 0)) == NULL) {
		hs_fail(h, "out of memory");
		return NULL;
	}
	s->id = r->session_id;
	snprintf(s->token, sizeof(s->token), "%s", r->token);
	s->eff = o->fwds;
	if (!r->fwds.null && r->fwds.n > 0) {
		same = r->fwds.n == o->fwds.n;
		for (i = 0; same && i < r->fwds.n; i++)
			same = fwd_equal(&r->fwds.fwds[i], &o->fwds.fwds[i]);
		if (!same)
			log_info("the server's forward list overrides ours");
		s->eff = r->fwds;
	}
	s->eff.null = 0;
	t->csess = s;
	log_info("session %" PRId64 " established with %s", s->id,
	    conn_peer(h->x.conn));
	return s;
}

/* An "ok" to a resume: 0, or -1 when h was ended with the client. */
static int
hs_client_resume(struct hs *h, const struct msg_result *r)
{
	struct tun	*t = h->tun;
	struct sess	*s = t->csess;
	char		 err[ERR_LEN];

	if (r->session_id != s->id) {
		client_fatal(t, "server answered session id %" PRId64
		    " while resuming %" PRId64, r->session_id, s->id);
		hs_fail(h, "session id mismatch");
		return -1;
	}
	if (sess_can_resume(s, r->read_no, r->write_no, err) == -1) {
		client_fatal(t, "cannot resume session %" PRId64 ": %s",
		    s->id, err);
		hs_fail(h, err);
		return -1;
	}
	log_info("session %" PRId64 " resumed (server WriteNo %" PRId64
	    " ReadNo %" PRId64 ")", s->id, r->write_no, r->read_no);
	return 0;
}

/*
 * Phase HS_RESULT: every outcome is final (HS_HELD); an unreadable result
 * ends this connection only, and the client retries.
 */
enum hs_verdict
hs_client_result(struct hs *h, const uint8_t *p, size_t n, char *err)
{
	struct tun		*t = h->tun;
	struct msg_result	 r;
	struct sess		*s;

	if (msg_result_decode(p, n, &r, err) == -1) {
		hs_fail(h, err);
		return HS_HELD;
	}
	if (strcmp(r.result, "ok") != 0) {
		hs_client_refused(h, &r);
		return HS_HELD;
	}
	if (h->aead && hs_windows(h, r.window, err) == -1) {
		hs_fail(h, err);
		return HS_HELD;
	}
	if (strcmp(t->o->ctrl, "stop") == 0) {
		log_info("stop request accepted by the server");
		hs_fail(h, "stopped");
		tun_stop(t, 0);
		return HS_HELD;
	}
	if ((s = t->csess) != NULL) {
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
		if (hs_client_resume(h, &r) == 0)
			hs_attach(h, s, r.read_no);
		return HS_HELD;
	}
	if ((s = hs_client_new_session(h, &r)) == NULL)
		return HS_HELD;
	client_session_started(t, s);
	hs_attach(h, s, r.read_no);
	return HS_HELD;
}
