/*
 * A -socks listener's connections: the SOCKS5 handshake (RFC 1928
 * CONNECT; RFC 1929 username/password when -socksAuthFile or
 * TUNNELD_SOCKS_AUTH gave credentials), then a CITI to the destination
 * the client asked for.  Names are not resolved here: the tunnel's server
 * resolves them and decides (its destination patterns), and its answer
 * becomes the client's reply (socks5_rep_for).
 *
 * What a local client can make us hold is bounded: SOCKS_MAX_PENDING
 * handshakes per session (more are closed at once), each at most
 * -handshakeTimeout seconds and SOCKS_BUF bytes (a message larger than
 * the protocol allows is refused).  Replies are a few bytes into a socket
 * we have not written to yet, so they are written at once
 * (uv_try_write); a socket that does not take them is closed.
 */

#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "log.h"
#include "mux_int.h"
#include "socks5.h"
#include "tunneld.h"

/* Handshakes in progress per session, past which connections close. */
#define SOCKS_MAX_PENDING	64
/* A greeting, a sub-negotiation and a request, with room to spare. */
#define SOCKS_BUF		1024

enum socks_phase {
	SOCKS_GREETING,		/* waiting for VER NMETHODS METHODS */
	SOCKS_AUTH,		/* waiting for the username/password */
	SOCKS_REQUEST,		/* waiting for the request */
	SOCKS_DONE		/* handed over, or failed: closing */
};

struct socks_hs {
	TAILQ_ENTRY(socks_hs) link;
	struct sess	*s;
	uv_tcp_t	 tcp;
	enum socks_phase phase;
	uint64_t	 deadline;
	size_t		 len;
	uint8_t		 buf[SOCKS_BUF];
};

static void
socks_closed(uv_handle_t *h)
{
	struct socks_hs	*hs = h->data;
	struct sess	*s = hs->s;

	OPENSSL_cleanse(hs->buf, sizeof(hs->buf));	/* the password */
	free(hs);
	sess_unref(s);
}

/* Leaves the session's list and closes; the memory goes in the callback. */
static void
socks_close(struct socks_hs *hs)
{
	if (hs->phase == SOCKS_DONE)
		return;
	hs->phase = SOCKS_DONE;
	TAILQ_REMOVE(&hs->s->socks_hs, hs, link);
	hs->s->nsocks_hs--;
	uv_close((uv_handle_t *)&hs->tcp, socks_closed);
}

/* Writes a short answer now: 0, or -1 if the socket did not take it. */
static int
socks_write(uv_tcp_t *tcp, const uint8_t *p, size_t n)
{
	uv_buf_t b = uv_buf_init((char *)p, n);

	return uv_try_write((uv_stream_t *)tcp, &b, 1) == (int)n ? 0 : -1;
}

/* A failed handshake: the reply (none if rep < 0), a log line, the end. */
static void
socks_fail(struct socks_hs *hs, int rep, const char *why)
{
	uint8_t r[SOCKS5_REPLY_LEN];

	if (rep >= 0) {
		socks5_reply(r, rep);
		(void)socks_write(&hs->tcp, r, sizeof(r));
	}
	mux_peer_warn(hs->s, "socks: %s: connection closed", why);
	socks_close(hs);
}

/* Compares in a time that does not depend on where they differ. */
static int
socks_cred_ok(const char *want, const char *user, const char *pass)
{
	const char	*colon = strchr(want, ':');
	size_t		 ulen = (size_t)(colon - want), plen = strlen(colon + 1);
	int		 ok;

	ok = strlen(user) == ulen && strlen(pass) == plen;
	ok &= CRYPTO_memcmp(want, user, ok ? ulen : 0) == 0;
	ok &= CRYPTO_memcmp(colon + 1, pass, ok ? plen : 0) == 0;
	return ok;
}

/*
 * The request parsed: a CITI takes the client's socket (a duplicate of
 * its descriptor; this handle then closes) and the bytes it sent past the
 * request, and the peer is asked to open it.  The reply waits for the
 * peer's answer (socks_answered).
 */
static void
socks_connect(struct socks_hs *hs, const struct hostinfo *dst)
{
	struct sess	*s = hs->s;
	struct citi	*ci;
	uv_os_fd_t	 fd;
	char		 why[96], host[ADDR_NAME_MAX + 16];
	int		 nfd;

	addr_format(dst, host, sizeof(host));
	if (s->nciti >= TUN_MAX_CITIS) {
		socks_fail(hs, SOCKS5_REP_FAILURE, "too many open streams");
		return;
	}
	if (sess_lim_open(s, why, sizeof(why)) == -1) {
		socks_fail(hs, SOCKS5_REP_FAILURE, why);
		return;
	}
	if (uv_fileno((uv_handle_t *)&hs->tcp, &fd) != 0 ||
	    (nfd = fcntl(fd, F_DUPFD_CLOEXEC, 0)) == -1) {
		socks_fail(hs, SOCKS5_REP_FAILURE, "out of descriptors");
		return;
	}
	if ((ci = mux_citi_new(s, mux_next_id(s), CITI_OPENING)) == NULL) {
		close(nfd);
		socks_fail(hs, SOCKS5_REP_FAILURE, "out of memory");
		return;
	}
	if (uv_tcp_open(&ci->tcp, nfd) != 0) {
		close(nfd);
		mux_citi_event(ci, CITI_EV_ABORT);
		socks_fail(hs, SOCKS5_REP_FAILURE, "cannot take the socket");
		return;
	}
	uv_tcp_nodelay(&ci->tcp, 1);
	ci->socks_reply = 1;
	if (hs->len > 0) {
		if ((ci->early = sess_opkt_new(hs->len)) == NULL) {
			mux_citi_event(ci, CITI_EV_ABORT);
			socks_fail(hs, SOCKS5_REP_FAILURE, "out of memory");
			return;
		}
		memcpy(ci->early->data, hs->buf, hs->len);
		ci->early->len = (uint32_t)hs->len;
	}
	if (mux_announce(ci, dst, 0) == -1) {
		mux_citi_event(ci, CITI_EV_ABORT);
		socks_fail(hs, SOCKS5_REP_FAILURE, "out of memory");
		return;
	}
	log_debug("session %" PRId64 ": citi %08" PRIx32 ": socks: "
	    "CONNECT %s", s->id, ci->id, host);
	socks_close(hs);
}

/* Drops the first n bytes of the buffer: the message just handled. */
static void
socks_consume(struct socks_hs *hs, size_t n)
{
	memmove(hs->buf, hs->buf + n, hs->len - n);
	hs->len -= n;
}

/*
 * Handles the complete messages in the buffer.  Returns 0 to read on,
 * -1 once hs was ended or handed over.
 */
static int
socks_step(struct socks_hs *hs)
{
	const char	*auth = hs->s->tun->o->socks_auth;
	char		 user[SOCKS5_CRED_MAX + 1], pass[SOCKS5_CRED_MAX + 1];
	char		 err[ERR_LEN];
	struct hostinfo	 dst;
	unsigned	 offered;
	uint8_t		 r[2];
	int		 n = 0, rep, method, ok;

	for (;;) {
		switch (hs->phase) {
		case SOCKS_GREETING:
			n = socks5_greeting(hs->buf, hs->len, &offered, err);
			if (n <= 0)
				break;
			method = auth != NULL ? SOCKS5_M_USERPASS :
			    SOCKS5_M_NONE;
			if (!(offered & SOCKS5_OFFERS(method)))
				method = SOCKS5_M_REFUSED;
			socks5_method_reply(r, method);
			socks_consume(hs, (size_t)n);
			if (socks_write(&hs->tcp, r, sizeof(r)) == -1) {
				socks_fail(hs, -1, "the client does not read");
				return -1;
			}
			if (method == SOCKS5_M_REFUSED) {
				socks_fail(hs, -1, auth != NULL ?
				    "the client offers no username/password" :
				    "the client wants authentication");
				return -1;
			}
			hs->phase = auth != NULL ? SOCKS_AUTH : SOCKS_REQUEST;
			continue;
		case SOCKS_AUTH:
			n = socks5_auth(hs->buf, hs->len, user, pass, err);
			if (n <= 0)
				break;
			ok = socks_cred_ok(auth, user, pass);
			OPENSSL_cleanse(pass, sizeof(pass));
			OPENSSL_cleanse(hs->buf, (size_t)n);
			socks_consume(hs, (size_t)n);
			socks5_auth_reply(r, ok);
			if (socks_write(&hs->tcp, r, sizeof(r)) == -1 || !ok) {
				socks_fail(hs, -1, ok ? "the client does not "
				    "read" : "wrong username or password");
				return -1;
			}
			hs->phase = SOCKS_REQUEST;
			continue;
		case SOCKS_REQUEST:
			n = socks5_request(hs->buf, hs->len, &dst, &rep, err);
			if (n == -1) {
				socks_fail(hs, rep, err);
				return -1;
			}
			if (n == 0)
				break;
			socks_consume(hs, (size_t)n);
			socks_connect(hs, &dst);
			return -1;
		case SOCKS_DONE:
			return -1;
		}
		if (n == -1) {
			socks_fail(hs, -1, err);
			return -1;
		}
		if (hs->len == sizeof(hs->buf)) {
			socks_fail(hs, SOCKS5_REP_FAILURE, "request too large");
			return -1;
		}
		return 0;
	}
}

static void
socks_alloc_cb(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
	struct socks_hs *hs = h->data;

	*buf = uv_buf_init((char *)hs->buf + hs->len,
	    sizeof(hs->buf) - hs->len);
}

static void
socks_read_cb(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf)
{
	struct socks_hs *hs = st->data;

	if (nread == 0 || hs->phase == SOCKS_DONE)
		return;
	if (nread < 0) {
		log_debug("socks: the client %s during its handshake",
		    nread == UV_EOF ? "left" : uv_strerror(nread));
		socks_close(hs);
		return;
	}
	hs->len += (size_t)nread;
	if (socks_step(hs) == -1)
		return;
}

void
socks_accept(struct sess *s, uv_stream_t *server)
{
	struct socks_hs	*hs;

	if (s->nsocks_hs >= SOCKS_MAX_PENDING) {
		mux_accept_refuse(s, server, "socks: too many handshakes in "
		    "progress");
		return;
	}
	if ((hs = calloc(1, sizeof(*hs))) == NULL) {
		mux_accept_refuse(s, server, "socks: out of memory");
		return;
	}
	hs->s = s;
	hs->phase = SOCKS_GREETING;
	hs->deadline = uv_now(s->tun->loop) +
	    (uint64_t)s->tun->o->handshake_timeout * 1000;
	uv_tcp_init(s->tun->loop, &hs->tcp);
	hs->tcp.data = hs;
	s->handles++;
	TAILQ_INSERT_TAIL(&s->socks_hs, hs, link);
	s->nsocks_hs++;
	if (uv_accept(server, (uv_stream_t *)&hs->tcp) != 0 ||
	    uv_read_start((uv_stream_t *)&hs->tcp, socks_alloc_cb,
	    socks_read_cb) != 0)
		socks_close(hs);
}

void
socks_tick(struct sess *s, uint64_t now)
{
	struct socks_hs *hs;

	/* One timeout for all: the list is in deadline order. */
	while ((hs = TAILQ_FIRST(&s->socks_hs)) != NULL &&
	    now >= hs->deadline)
		socks_fail(hs, hs->phase == SOCKS_REQUEST ? SOCKS5_REP_TTL :
		    -1, "handshake timed out");
}

void
socks_stop(struct sess *s)
{
	struct socks_hs *hs;

	while ((hs = TAILQ_FIRST(&s->socks_hs)) != NULL)
		socks_close(hs);
}

void
socks_answered(struct citi *ci, int ok, const char *mess)
{
	uint8_t		r[SOCKS5_REPLY_LEN];
	uv_buf_t	b;
	int		rep = ok ? SOCKS5_REP_OK : socks5_rep_for(mess);

	ci->socks_reply = 0;
	socks5_reply(r, rep);
	b = uv_buf_init((char *)r, sizeof(r));
	/*
	 * The socket has had nothing written to it: the kernel takes ten
	 * bytes.  If not, the client is gone, and its stream ends too.
	 */
	if (uv_try_write((uv_stream_t *)&ci->tcp, &b, 1) != (int)sizeof(r))
		log_debug("citi %08" PRIx32 ": socks: the reply was not "
		    "taken", ci->id);
	if (!ok)
		log_debug("citi %08" PRIx32 ": socks: reply %d for \"%s\"",
		    ci->id, rep, mess);
}
