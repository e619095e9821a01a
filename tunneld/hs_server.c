/*
 * The server's side of the handshake (wire spec 5.2-5.5): after the
 * client's lack pattern it sends the magic and a challenge; the client's
 * response creates a session, resumes one, or stops one.
 */

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "crypto.h"
#include "err.h"
#include "log.h"
#include "hs.h"

/* Phase HS_LACK: the magic, then the challenge (kept to check the answer). */
enum hs_verdict
hs_server_challenge(struct hs *h, const uint8_t *p, size_t n, char *err)
{
	struct msg_challenge	 ch;
	char			*json;
	size_t			 len;
	int			 rc;

	memset(&ch, 0, sizeof(ch));
	snprintf(ch.ver, sizeof(ch.ver), "1.00");
	snprintf(ch.mode, sizeof(ch.mode), "%s", cli_mode_name(h->tun->o->mode));
	/*
	 * The offer of the AEAD mode is the Challenge itself: its shape is
	 * Go's, and only a peer that knows both secrets sees the mark.
	 */
	if (hs_aead_wanted(h->tun->o)) {
		if (aead_mark_new(h->tun->o->pass, h->tun->o->encpass,
		    AEAD_MARK_CHALLENGE, "", ch.challenge, err) == -1)
			return HS_FAIL;
	} else if (crypto_nonce(ch.challenge, err) == -1)
		return HS_FAIL;
	memcpy(h->challenge, ch.challenge, sizeof(h->challenge));
	if ((json = msg_challenge_encode(&ch, &len)) == NULL) {
		err_set(err, "cannot send the challenge");
		return HS_FAIL;
	}
	rc = hs_send(h, h->tun->magic, 32) == -1 || hs_send(h, json, len) == -1;
	free(json);
	if (rc) {
		err_set(err, "cannot send the challenge");
		return HS_FAIL;
	}
	return HS_NEXT;
}

static int
hs_server_send_result(struct hs *h, struct sess *s)
{
	struct msg_result	 r;
	char			*json;
	size_t			 len;
	int			 rc;

	memset(&r, 0, sizeof(r));
	snprintf(r.result, sizeof(r.result), "ok");
	r.session_id = s->id;
	snprintf(r.token, sizeof(r.token), "%s", s->token);
	r.write_no = s->write_no;
	r.read_no = s->read_no;
	r.fwds = h->tun->o->fwds;	/* our own list, [] if empty */
	r.fwds.null = 0;
	if (h->aead) {
		r.window = h->win[1];
		r.udp = 1;	/* UDP forwards carried, if any */
	}
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

/* "stop" without a session: the whole server stops (kptunnel's -ctrl). */
static void
hs_server_stop(struct hs *h)
{
	struct sess dummy;

	log_info("%s: stop requested", conn_peer(h->x.conn));
	memset(&dummy, 0, sizeof(dummy));
	hs_server_send_result(h, &dummy);
	tun_stop(h->tun, 0);
}

/* A response without a token: a new session, or NULL when h was refused. */
static struct sess *
hs_server_new_session(struct hs *h, const struct msg_response *m)
{
	struct tun			*t = h->tun;
	struct cli_opts			*o = t->o;
	const struct msg_fwdlist	*eff;
	struct msg_fwdlist		*tcp = NULL;
	struct sess			*s = NULL;
	char				 err[ERR_LEN], ng[MSG_STR_MAX + 64];

	if (hs_server_refuses_fwds(h, m))
		return NULL;
	/*
	 * Our own list wins (wire spec 5.5.4).  The client's is used only by
	 * a standalone server told so: a worker's list is its policy's, and
	 * an empty one means no forwards.
	 */
	eff = o->fwds.n > 0 || t->worker || !o->allow_client_fwds ?
	    &o->fwds : &m->fwds;
	/* UDP forwards go only to a client that carries them. */
	if (msg_fwdlist_udp(eff) > 0 && !(h->aead && m->udp)) {
		if ((tcp = malloc(sizeof(*tcp))) == NULL) {
			hs_refuse(h, "ng", "out of memory");
			return NULL;
		}
		*tcp = *eff;
		log_warnx("%s: %zu UDP forwards left out: the client %s",
		    conn_peer(h->x.conn), msg_fwdlist_strip_udp(tcp),
		    h->aead ? "does not carry them (an older tunneld?)" :
		    "runs kptunnel's protocol (kptunnel, -noAead or "
		    "-encCount 0)");
		eff = tcp;
	}
	if (server_claim_listeners(t, eff, err) == -1) {
		snprintf(ng, sizeof(ng), "%s%s", TUN_RESULT_BUSY, err);
		hs_refuse(h, ng, err);
		goto done;
	}
	if ((s = sess_new(t, 1)) == NULL) {
		hs_refuse(h, "ng", "out of memory");
		goto done;
	}
	s->eff = *eff;
	s->eff.null = 0;
	server_take_listeners(t, s);
	log_info("%s: session %" PRId64 " created", conn_peer(h->x.conn),
	    s->id);
done:
	free(tcp);
	return s;
}

/*
 * A response with a token: the session to resume, or NULL when h was
 * refused or ended (a stop request ends the session too).
 */
static struct sess *
hs_server_resume(struct hs *h, const struct msg_response *m)
{
	struct sess	*s;
	char		 err[ERR_LEN], ng[MSG_STR_MAX + 64];

	if ((s = server_find(h->tun, m->token)) == NULL) {
		/* Go's text, format bug included (wire spec 5.5). */
		snprintf(ng, sizeof(ng),
		    "ng: not found session -- %%!d(string=%s)", m->token);
		hs_refuse(h, ng, "unknown session token");
		return NULL;
	}
	if (m->ctrl == MSG_CTRL_STOP) {
		hs_server_send_result(h, s);
		sess_free(s, "stop requested by the client");
		hs_fail(h, "session stopped");
		return NULL;
	}
	if (sess_can_resume(s, m->read_no, m->write_no, err) == -1) {
		hs_refuse(h, "ng", err);
		return NULL;
	}
	log_info("%s: session %" PRId64 " resumed (client WriteNo %" PRId64
	    " ReadNo %" PRId64 ")", conn_peer(h->x.conn), s->id, m->write_no,
	    m->read_no);
	return s;
}

/*
 * Phase HS_RESPONSE: a wrong or unreadable response is refused with "ng";
 * a right one creates, resumes or stops a session and is answered "ok".
 * Every outcome is final (HS_HELD).
 */
enum hs_verdict
hs_server_response(struct hs *h, const uint8_t *p, size_t n, char *err)
{
	struct msg_response	 m;
	struct sess		*s;
	char			 expect[89];

	if (msg_response_decode(p, n, &m, err) == -1) {
		hs_refuse(h, "ng", err);
		return HS_HELD;
	}
	crypto_auth_response(h->challenge, h->tun->o->pass, m.hint, expect);
	if (!crypto_streq(expect, m.response)) {
		hs_refuse(h, "ng", "wrong response: the client has another -pass");
		return HS_HELD;
	}
	/*
	 * The Response covers Challenge and Hint: the answer to our offer
	 * is authentic, and a man in the middle cannot strip it.
	 */
	snprintf(h->hint, sizeof(h->hint), "%s", m.hint);
	h->aead = hs_aead_wanted(h->tun->o) && aead_mark_check(h->tun->o->pass,
	    h->tun->o->encpass, AEAD_MARK_HINT, h->challenge, m.hint);
	if (h->aead && hs_windows(h, m.window, err) == -1) {
		hs_refuse(h, "ng", err);
		return HS_HELD;
	}
	if (m.token[0] == '\0' && m.ctrl == MSG_CTRL_STOP) {
		hs_server_stop(h);
		return HS_HELD;
	}
	s = m.token[0] == '\0' ? hs_server_new_session(h, &m) :
	    hs_server_resume(h, &m);
	if (s == NULL)
		return HS_HELD;
	if (hs_server_send_result(h, s) == -1) {
		hs_fail(h, "cannot send the result");
		if (m.token[0] == '\0')
			sess_free(s, "handshake failed");
		return HS_HELD;
	}
	tun_authed(h->tun);
	hs_attach(h, s, m.read_no);
	return HS_HELD;
}
