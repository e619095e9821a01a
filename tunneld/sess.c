/*
 * The session: what survives a transport connection.  It numbers every
 * counted packet (NORMAL and SYNC, wire spec 6.1), keeps those the peer may
 * not have read yet so that a resumed connection can resend them from the
 * peer's ReadNo (wire spec 7.3), parses the peer's packet stream and hands
 * CITI traffic to mux.c.
 *
 * History is trimmed on proof of receipt only: a SYNC for a CITI's packet,
 * or a reply to our CTRL_HEADER / CTRL_RESP_HEADER, proves that the peer
 * read every packet up to it, because it reads in order.
 */

#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "crypto.h"
#include "err.h"
#include "log.h"
#include "tunneld.h"

static const struct conn_cbs sess_cbs;

static void	sess_tick(uv_timer_t *);
static void	sess_take_leftover(struct sess *, struct xport *);

void
xport_free(struct xport *x)
{
	/* A seal queue owns the sending cipher: it goes with the queue. */
	if (x->sq != NULL)
		sealq_close(x->sq);
	else
		xc_free(x->enc);
	xc_free(x->dec);
	x->sq = NULL;
	x->enc = x->dec = NULL;
	buf_free(&x->in);
}

struct opkt *
sess_opkt_new(size_t cap)
{
	struct opkt *p;

	if ((p = malloc(sizeof(*p) + cap)) == NULL)
		return NULL;
	memset(p, 0, sizeof(*p));
	p->kind = PKT_NORMAL;
	p->cap = cap;
	return p;
}

struct sess *
sess_new(struct tun *t, int server)
{
	struct sess	*s;
	uint8_t		 raw[9];

	if ((s = calloc(1, sizeof(*s))) == NULL)
		return NULL;
	s->tun = t;
	s->server = server;
	s->win_own = s->win_peer = TUN_WINDOW;	/* until a handshake says */
	TAILQ_INIT(&s->out);
	if (server) {
		s->id = ++t->next_session_id;
		/* 12 characters, as kptunnel's tokens (wire spec 5.5). */
		if (crypto_random(raw, sizeof(raw), NULL) == -1) {
			free(s);
			return NULL;
		}
		crypto_b64(raw, sizeof(raw), s->token);
		TAILQ_INSERT_TAIL(&t->sessions, s, link);
	}
	mux_init(s);
	uv_timer_init(t->loop, &s->tick);
	s->tick.data = s;
	s->handles = 1;
	sess_lim_init(s);
	s->detached_at = uv_now(t->loop);
	uv_timer_start(&s->tick, sess_tick, 1000, 1000);
	return s;
}

static void
sess_release(struct sess *s)
{
	struct opkt *p;

	while ((p = TAILQ_FIRST(&s->out)) != NULL) {
		TAILQ_REMOVE(&s->out, p, link);
		free(p);
	}
	free(s->tab);
	free(s);
}

void
sess_unref(struct sess *s)
{
	if (--s->handles == 0)
		sess_release(s);
}

static void
sess_handle_closed(uv_handle_t *h)
{
	sess_unref(h->data);
}

/* Closes the transport, if any; the session stays. */
static void
sess_drop_xport(struct sess *s, const char *why)
{
	struct xport *x = s->x;

	if (x == NULL)
		return;
	s->x = NULL;
	if (x->conn != NULL) {
		conn_set_owner(x->conn, &sess_cbs, NULL);
		/* A limit's end is told to the client. */
		if (s->lim.end[0] != '\0')
			conn_close_telling(x->conn, why);
		else
			conn_close(x->conn, why);
	}
	xport_free(x);
	free(x);
	s->detached_at = uv_now(s->tun->loop);
}

void
sess_free(struct sess *s, const char *why)
{
	if (s->closing)
		return;
	s->closing = 1;
	log_info("session %" PRId64 ": closed: %s (in %" PRIu64 " bytes, out %"
	    PRIu64 " bytes, %d reconnects)", s->id, why, s->bytes_in,
	    s->bytes_out, s->reconnects);
	sess_drop_xport(s, why);
	mux_stop(s);
	uv_timer_stop(&s->tick);
	uv_close((uv_handle_t *)&s->tick, sess_handle_closed);
	sess_lim_close(s);
	if (s->server)
		server_session_ended(s->tun, s, why);
	else
		client_session_ended(s->tun, s);
}

void
sess_detach(struct sess *s, const char *why)
{
	if (s->x == NULL || s->closing)
		return;
	log_warnx("session %" PRId64 ": transport lost: %s", s->id, why);
	if (tun_is_oneshot(s->tun)) {
		sess_free(s, why);	/* a OneShot tunnel ends with its link */
		return;
	}
	if (!s->server && !s->x->proven && s->reconnects > 0)
		log_info("session %" PRId64 ": lost before the server sent a "
		    "packet; the resume counts as a failed attempt", s->id);
	sess_drop_xport(s, why);
	if (!s->server)
		client_connection_lost(s->tun, why);
}

int
sess_can_resume(const struct sess *s, uint64_t peer_read_no,
    uint64_t peer_write_no, char *err)
{
	if (peer_read_no > s->write_no) {
		err_set(err, "peer read %" PRIu64 " packets but only %" PRIu64
		    " were sent", peer_read_no, s->write_no);
		return -1;
	}
	if (peer_read_no < s->hist_floor) {
		err_set(err, "packets from %" PRIu64 " are needed but history "
		    "starts at %" PRIu64, peer_read_no, s->hist_floor);
		return -1;
	}
	if (peer_write_no < s->read_no) {
		err_set(err, "peer wrote %" PRIu64 " packets but %" PRIu64
		    " were read", peer_write_no, s->read_no);
		return -1;
	}
	return 0;
}

void
sess_rx_hold(struct sess *s)
{
	if (s->x == NULL || s->x->conn == NULL)
		return;
	if (s->lim.in_held || s->rxq_held)
		conn_pause(s->x->conn);
	else
		conn_resume(s->x->conn);
}

void
sess_rxq(struct sess *s, ssize_t delta)
{
	int was = s->rxq_held;

	s->rxq_bytes += (size_t)delta;
	if (s->rxq_bytes > TUN_RXQ_MAX)
		s->rxq_held = 1;
	else if (s->rxq_bytes < TUN_RXQ_MAX / 2)
		s->rxq_held = 0;
	if (was == s->rxq_held)
		return;
	if (s->rxq_held)
		log_info("session %" PRId64 ": %zu bytes wait for slow local "
		    "sockets: not reading the peer until half are written",
		    s->id, s->rxq_bytes);
	sess_rx_hold(s);
}

/* Frees the history up to and including seq (already sent packets only). */
void
sess_acked(struct sess *s, uint64_t seq)
{
	struct opkt *p;

	while ((p = TAILQ_FIRST(&s->out)) != NULL && p != s->cursor &&
	    p->seq <= seq) {
		TAILQ_REMOVE(&s->out, p, link);
		s->hist_bytes -= p->len;
		if (p->reply)
			s->hist_replies--;
		free(p);
	}
	s->hist_floor = p ? p->seq : s->next_seq;
	if (s->congested)
		sess_flush(s);
}

void
sess_attach(struct sess *s, struct xport *x, uint64_t peer_read_no)
{
	struct opkt	*p;

	if (s->x != NULL) {
		/* A resume pre-empts a connection we still thought alive. */
		log_warnx("session %" PRId64 ": replacing its connection",
		    s->id);
		sess_drop_xport(s, "replaced by a new connection");
	}
	if (s->started)
		s->reconnects++;
	s->x = x;
	conn_set_owner(x->conn, &sess_cbs, s);
	sess_rx_hold(s);
	/* Resend from the peer's ReadNo (checked by sess_can_resume). */
	s->cursor = NULL;	/* everything is resendable until proven read */
	if (peer_read_no > 0)
		sess_acked(s, peer_read_no - 1);
	s->unsent_bytes = 0;
	s->cursor = NULL;
	TAILQ_FOREACH(p, &s->out, link) {
		if (p->seq >= peer_read_no) {
			if (s->cursor == NULL)
				s->cursor = p;
			s->unsent_bytes += p->len;
		}
	}
	s->write_no = peer_read_no;
	s->last_rx = s->last_ka = uv_now(s->tun->loop);
	if (!s->started) {
		s->started = 1;
		if (mux_start(s) == -1) {
			sess_free(s, "cannot open the forward listeners");
			return;
		}
	}
	sess_flush(s);
	if (s->x == x && buf_unread(&x->in) > 0)
		sess_take_leftover(s, x);
}

static void
sess_enqueue_common(struct sess *s, struct opkt *p)
{
	p->seq = s->next_seq++;
	TAILQ_INSERT_TAIL(&s->out, p, link);
	if (s->cursor == NULL)
		s->cursor = p;
	s->unsent_bytes += p->len;
	s->hist_bytes += p->len;
}

void
sess_enqueue(struct sess *s, struct opkt *p)
{
	sess_enqueue_common(s, p);
	sess_flush(s);
}

int
sess_send_ctrl(struct sess *s, const char *msg, size_t n)
{
	struct opkt *p;

	if ((p = sess_opkt_new(n)) == NULL)
		return -1;
	p->citi = PKT_CITI_CTRL;
	p->len = n;
	memcpy(p->data, msg, n);
	sess_enqueue(s, p);
	return 0;
}

/*
 * Queues an answer to a request of the peer (CTRL_RESP_HEADER).  Answers
 * count as data for back-pressure, and at most TUN_REPLY_BACKLOG of them
 * stay in the history unproven: past that the peer is flooding requests
 * whose answers nothing will trim, and its connection is dropped (a
 * resume's ReadNo trims what it read).  Returns 0, or -1 if the answer
 * was not queued (the connection may be gone: check s->x).
 */
int
sess_send_reply(struct sess *s, const char *msg, size_t n)
{
	struct opkt *p;

	if (s->hist_replies >= TUN_REPLY_BACKLOG) {
		log_warnx("session %" PRId64 ": %zu answers to stream requests "
		    "unread by the peer", s->id, s->hist_replies);
		sess_detach(s, "too many stream requests");
		return -1;
	}
	if ((p = sess_opkt_new(n)) == NULL)
		return -1;
	p->citi = PKT_CITI_CTRL;
	p->len = n;
	p->reply = 1;
	memcpy(p->data, msg, n);
	s->hist_replies++;
	sess_enqueue(s, p);
	return 0;
}

void
sess_send_sync(struct sess *s, uint32_t citi, int64_t packno)
{
	struct opkt *p;

	if ((p = sess_opkt_new(0)) == NULL)
		return;
	p->kind = PKT_SYNC;
	p->citi = citi;
	p->packno = packno;
	sess_enqueue(s, p);
}

static void
sess_update_congestion(struct sess *s)
{
	size_t	pending = s->x ? conn_pending(s->x->conn) +
		    sealq_bytes(s->x->sq) : 0;
	int	was = s->congested;

	if (s->unsent_bytes + pending > TUN_CONGEST_HIGH ||
	    s->hist_bytes > TUN_HISTORY_MAX)
		s->congested = 1;
	else if (s->unsent_bytes + pending < TUN_CONGEST_LOW &&
	    s->hist_bytes < TUN_HISTORY_MAX / 2)
		s->congested = 0;
	if (was != s->congested)
		mux_congestion(s, s->congested);
}

/* A buffer back from the transport's seal queue (sealq_cb). */
static void
sess_sealed(void *arg, struct obuf *b, int rc)
{
	struct sess	*s = arg;
	struct xport	*x = s->x;

	if (rc == -1) {
		free(b);
		sess_detach(s, "cannot seal a packet");
		return;
	}
	if (b == NULL) {
		sess_flush(s);
		return;
	}
	if (x == NULL || x->conn == NULL)
		free(b);
	else
		(void)conn_send(x->conn, b);	/* a failure closes the conn */
}

/*
 * Seals and writes a filled buffer of a slow cipher holding payload bytes
 * to seal: on the loop when they are few and nothing waits before them,
 * else through the transport's seal queue, whose callback writes it.
 * Returns 0, 1 when the conn is no longer open (b is freed), or -1 when
 * sealing failed (the transport must end).
 */
static int
sess_xmit(struct sess *s, struct xport *x, struct obuf *b, size_t payload)
{
	if (x->sq == NULL && payload > SEALQ_INLINE_MAX)
		x->sq = sealq_new(s->tun->loop, x->enc, sess_sealed, s);
	if (x->sq != NULL && sealq_wants(x->sq, payload))
		return sealq_push(x->sq, b);
	/* Nothing queued: no job uses the cipher now. */
	if (sealq_seal(x->enc, b->mem + CONN_HEADROOM, b->len) == -1) {
		free(b);
		return -1;
	}
	return conn_send(x->conn, b) == -1 ? 1 : 0;
}

/* Writes queued packets while the kernel takes them, coalesced. */
void
sess_flush(struct sess *s)
{
	struct xport	*x = s->x;
	struct obuf	*b;
	struct opkt	*p;
	uint8_t		*w;
	size_t		 len, ov, payload;
	int		 rc = 0, direct;

	ov = x != NULL ? xc_overhead(x->enc) : 0;
	while (x != NULL && !s->closing && (s->cursor != NULL ||
	    s->dummy_due) && conn_pending(x->conn) < TUN_COALESCE &&
	    !sealq_full(x->sq)) {
		if ((b = conn_obuf(TUN_COALESCE)) == NULL)
			break;
		w = b->mem + CONN_HEADROOM;
		len = payload = 0;
		/*
		 * A slow cipher seals the whole buffer, off the loop when it
		 * is large (sess_xmit); the others seal each packet straight
		 * from the history into the buffer.
		 */
		direct = x->sq == NULL && !xc_slow(x->enc);
		if (s->dummy_due) {
			w[len++] = PKT_DUMMY;
			s->dummy_due = 0;
		}
		while ((p = s->cursor) != NULL) {
			if (p->kind == PKT_SYNC) {
				if (len + PKT_SYNC_LEN + ov > TUN_COALESCE)
					break;
				pkt_put_sync(w + len, p->citi, p->packno);
				/* The AEAD mode seals it too: a tag, no text. */
				if (ov > 0 && xc_seal(x->enc, w + len,
				    PKT_SYNC_LEN, w + len + PKT_SYNC_LEN, 0) == -1) {
					rc = -1;
					break;
				}
				len += PKT_SYNC_LEN + ov;
			} else {
				if (len + PKT_NORMAL_HDR + p->len + ov >
				    TUN_COALESCE)
					break;
				/* s->aead kept p->len + ov within a u16. */
				pkt_put_normal_hdr(w + len, p->citi,
				    (uint16_t)(p->len + ov));
				len += PKT_NORMAL_HDR;
				/* Sealed in the buffer: history keeps plain. */
				if (direct) {
					if (xc_seal_to(x->enc, w + len -
					    PKT_NORMAL_HDR, PKT_NORMAL_HDR,
					    p->data, w + len, p->len) == -1) {
						rc = -1;
						break;
					}
				} else
					memcpy(w + len, p->data, p->len);
				len += p->len + ov;
				payload += p->len;
			}
			s->unsent_bytes -= p->len;
			s->write_no++;
			s->cursor = TAILQ_NEXT(p, link);
		}
		if (rc == -1) {
			free(b);
			break;
		}
		b->len = len;
		s->bytes_out += len;
		if (direct) {
			if (conn_send(x->conn, b) == -1)
				break;
		} else if ((rc = sess_xmit(s, x, b, payload)) != 0)
			break;
	}
	if (rc == -1) {
		/* Unsent packets stay in the history for the next transport. */
		sess_detach(s, "cannot seal a packet (nonce counter spent)");
		return;
	}
	sess_update_congestion(s);
}

/* Acts on one packet of the peer; -1 with err on a protocol error. */
static int
sess_packet(struct sess *s, struct xport *x, struct pkt *p, char *err)
{
	size_t	len;

	switch (p->kind) {
	case PKT_SYNC:
		/*
		 * It counts in ReadNo as a NORMAL packet does, so in the AEAD
		 * mode a dropped or forged one must fail here, not shift the
		 * resume point.
		 */
		if (p->len > 0 && xc_open(x->dec, p->payload - PKT_SYNC_LEN,
		    PKT_SYNC_LEN, p->payload, p->len, &len) == -1) {
			err_set(err, "a SYNC failed authentication (citi %08"
			    PRIx32 "): closing the connection", p->citi);
			return -1;
		}
		s->read_no++;
		return mux_sync(s, p->citi, p->packno, err);
	case PKT_NORMAL:
		/*
		 * Before it is counted: a forged packet must not count as
		 * read, or the resume would not ask for the real one again.
		 */
		/* The header lies just before the payload (pkt_parse). */
		if (xc_open(x->dec, p->payload - PKT_NORMAL_HDR, PKT_NORMAL_HDR,
		    p->payload, p->len, &len) == -1) {
			err_set(err, "a packet failed authentication (citi %08"
			    PRIx32 ", %u bytes): closing the connection",
			    p->citi, (unsigned)p->len);
			return -1;
		}
		p->len = (uint16_t)len;
		s->read_no++;
		if (p->citi != PKT_CITI_CTRL)
			return mux_data(s, p->citi, p->payload, p->len, err);
		if (p->len > 0)
			return mux_ctrl(s, p->payload, p->len, err);
		return 0;
	}
	return 0;		/* DUMMY */
}

/*
 * Dispatches the complete packets at the start of in[0..n), decrypting
 * them in place.  Returns the bytes they took, or -1 with err.  Stops
 * early if the packets cost the session its transport.
 */
static ssize_t
sess_parse(struct sess *s, struct xport *x, uint8_t *in, size_t n, char *err)
{
	struct pkt	p;
	size_t		off = 0;
	ssize_t		used;

	while (off < n && s->x == x && !s->closing) {
		used = pkt_parse_tagged(in + off, n - off,
		    xc_overhead(x->dec), &p, err);
		if (used == 0)
			break;
		if (used < 0)
			return -1;
		/* Before dispatch: the packet may cost x its life. */
		if (!x->proven) {
			x->proven = 1;
			if (!s->server)
				client_transport_proven(s->tun);
		}
		if (sess_packet(s, x, &p, err) == -1)
			return -1;
		off += used;
	}
	return off;
}

/* How many more bytes the packet split across reads needs. */
static size_t
sess_need(const struct xport *x)
{
	const uint8_t	*h = buf_head(&x->in);
	size_t		 have = buf_unread(&x->in);

	switch (h[0]) {
	case PKT_NORMAL:
		if (have < PKT_NORMAL_HDR)
			return PKT_NORMAL_HDR - have;
		return PKT_NORMAL_HDR + ((size_t)h[5] << 8 | h[6]) - have;
	case PKT_SYNC:
		return PKT_SYNC_LEN + xc_overhead(x->dec) - have;
	}
	return 1;		/* pkt_parse judges the kind */
}

/*
 * Takes the peer's bytes.  Packets are parsed where they lie (the conn's
 * read buffer); only a packet split across reads is copied, to be
 * completed by the next ones.
 */
void
sess_on_data(struct sess *s, uint8_t *in, size_t n)
{
	struct xport	*x = s->x;
	char		 err[ERR_LEN];
	ssize_t		 used;
	size_t		 take;

	if (x == NULL)
		return;
	s->bytes_in += n;
	s->last_rx = uv_now(s->tun->loop);
	sess_lim_in(s, n);
	while (n > 0 && s->x == x && !s->closing) {
		if (buf_unread(&x->in) > 0) {
			take = sess_need(x);
			if (take > n)
				take = n;
			if (buf_append(&x->in, in, take, TUN_INBUF_MAX) == -1) {
				err_set(err, "out of memory");
				goto fail;
			}
			in += take;
			n -= take;
			used = sess_parse(s, x, buf_head(&x->in),
			    buf_unread(&x->in), err);
			if (used < 0)
				goto fail;
			if (s->x == x)
				buf_consume(&x->in, used);
			continue;
		}
		if ((used = sess_parse(s, x, in, n, err)) < 0)
			goto fail;
		in += used;
		n -= used;
		if (n > 0 && s->x == x && !s->closing) {
			if (buf_append(&x->in, in, n, TUN_INBUF_MAX) == -1) {
				err_set(err, "out of memory");
				goto fail;
			}
			n = 0;
		}
	}
	return;
fail:
	log_warnx("session %" PRId64 ": %s", s->id, err);
	sess_detach(s, err);
}

/* Packets that arrived with the handshake's last read. */
static void
sess_take_leftover(struct sess *s, struct xport *x)
{
	char	err[ERR_LEN];
	ssize_t	used;

	used = sess_parse(s, x, buf_head(&x->in), buf_unread(&x->in), err);
	if (used < 0) {
		log_warnx("session %" PRId64 ": %s", s->id, err);
		sess_detach(s, err);
		return;
	}
	if (s->x == x)
		buf_consume(&x->in, used);
}

static void
sess_tick(uv_timer_t *timer)
{
	struct sess	*s = timer->data;
	struct cli_opts	*o = s->tun->o;
	uint64_t	 now = uv_now(s->tun->loop);
	uint64_t	 ival = (uint64_t)o->interval * 1000;

	if (s->x != NULL) {
		if (now - s->last_ka >= ival) {
			s->last_ka = now;
			s->dummy_due = 1;
			sess_flush(s);
		}
		/* Held by us, the peer is not the one that is silent. */
		if (s->rxq_held || s->lim.in_held)
			s->last_rx = now;
		if (now - s->last_rx > 3 * ival) {
			sess_detach(s, "no traffic for 3 keepalive intervals");
			return;
		}
	} else if (s->server && now - s->detached_at >
	    (uint64_t)o->session_timeout * 1000) {
		sess_free(s, "not resumed within -sessionTimeout");
		return;
	}
	mux_tick(s, now);
	sess_lim_tick(s);
	/*
	 * After a burst, give the freed buffers back to the system: an idle
	 * tunnel should cost what an idle tunnel needs.
	 */
	if (s->bytes_in + s->bytes_out != s->bytes_at_tick) {
		s->bytes_at_tick = s->bytes_in + s->bytes_out;
		s->trimmed = 0;
	} else if (!s->trimmed) {
		s->trimmed = 1;
#ifdef __GLIBC__
		malloc_trim(0);
#endif
	}
}

static void
sess_on_conn_data(struct conn *c, void *arg, uint8_t *p, size_t n)
{
	if (arg != NULL)
		sess_on_data(arg, p, n);
}

static void
sess_on_drain(struct conn *c, void *arg)
{
	if (arg != NULL)
		sess_flush(arg);
}

static void
sess_on_close(struct conn *c, void *arg, const char *reason)
{
	struct sess *s = arg;

	if (s == NULL || s->x == NULL || s->x->conn != c)
		return;
	s->x->conn = NULL;
	sess_detach(s, reason);
}

static const struct conn_cbs sess_cbs = {
	.on_data = sess_on_conn_data,
	.on_drain = sess_on_drain,
	.on_close = sess_on_close,
};
