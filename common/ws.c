/*
 * RFC 6455 websocket frame codec: the decoder and the encoder helpers (the
 * opening handshake is wsup.c's).  No I/O, no logging: every function works
 * on caller buffers and reports failures through err.
 */

#include <limits.h>
#include <string.h>

#include "err.h"
#include "ws.h"

void
ws_dec_init(struct ws_dec *d, enum ws_role role, uint64_t max_frame)
{
	memset(d, 0, sizeof(*d));
	d->role = role;
	/* 0 would refuse every non-empty frame; take it as "the default". */
	d->max_frame = max_frame ? max_frame : WS_DEFAULT_MAX_FRAME;
}

static ssize_t
ws_dec_fail(int *close_code, int code)
{
	if (close_code != NULL)
		*close_code = code;
	return -1;
}

/*
 * Reports up to len bytes of the current data frame's payload, unmasked in
 * place.  The mask offset is kept so that a payload split across calls is
 * unmasked exactly as if it had arrived at once.
 */
static size_t
ws_dec_payload(struct ws_dec *d, uint8_t *in, size_t len, struct ws_event *ev)
{
	size_t	n;

	n = d->remaining < len ? (size_t)d->remaining : len;
	if (d->masked) {
		ws_mask(in, n, d->mask, d->mask_off);
		d->mask_off = (d->mask_off + n) & 3;
	}
	d->remaining -= n;
	if (d->remaining == 0)
		d->in_payload = 0;
	ev->type = WS_EV_DATA;
	ev->data = in;
	ev->len = n;
	return n;
}

/*
 * The checks that depend only on a header's first two bytes: reserved
 * bits, opcode, masking for the role, fragmentation rules.  0, or -1 with
 * err.
 */
static int
ws_dec_check_first(const struct ws_dec *d, const uint8_t *in, char *err)
{
	int	fin = (in[0] & 0x80) != 0, op = in[0] & 0x0f;
	int	masked = (in[1] & 0x80) != 0;

	if (in[0] & 0x70)
		err_set(err, "reserved bits set (0x%02x)", in[0]);
	else if (op > WS_OP_BINARY && (op < WS_OP_CLOSE || op > WS_OP_PONG))
		err_set(err, "unknown opcode 0x%x", op);
	else if (d->role == WS_ROLE_SERVER && !masked)
		err_set(err, "unmasked frame from client");
	else if (d->role == WS_ROLE_CLIENT && masked)
		err_set(err, "masked frame from server");
	else if ((op & 0x8) && !fin)
		err_set(err, "fragmented control frame (opcode 0x%x)", op);
	else if (op == WS_OP_CONT && !d->frag_open)
		err_set(err, "continuation frame without a fragmented message");
	else if ((op == WS_OP_TEXT || op == WS_OP_BINARY) && d->frag_open)
		err_set(err, "new message inside a fragmented message");
	else
		return 0;
	return -1;
}

/*
 * The header's length from its first two bytes, and once that many bytes
 * are in (len >= *hlen) the payload length in *plen.  Returns 0 when the
 * header is complete, 1 when more input is needed, -1 with err.
 */
static int
ws_dec_length(const uint8_t *in, size_t len, size_t *hlen, uint64_t *plen,
    char *err)
{
	size_t	i;

	*plen = in[1] & 0x7f;
	*hlen = 2 + (*plen == 126 ? 2 : *plen == 127 ? 8 : 0) +
	    ((in[1] & 0x80) ? 4 : 0);
	if (len < *hlen)
		return 1;
	/* Non-minimal length encodings are accepted, as Go does. */
	if (*plen == 126)
		*plen = (uint64_t)in[2] << 8 | in[3];
	else if (*plen == 127) {
		if (in[2] & 0x80) {
			err_set(err, "64-bit payload length with the top bit "
			    "set");
			return -1;
		}
		for (*plen = 0, i = 2; i < 10; i++)
			*plen = *plen << 8 | in[i];
	}
	return 0;
}

/*
 * A control frame of plen bytes after a header of hlen, reported whole:
 * returns the bytes consumed, 0 (nothing consumed, nothing unmasked) until
 * all of it is in, or -1 with err.
 */
static ssize_t
ws_dec_control(uint8_t *in, size_t len, size_t hlen, uint64_t plen,
    struct ws_event *ev, char *err)
{
	int	 op = in[0] & 0x0f;
	uint8_t	*pl = in + hlen;

	if (plen > WS_CTL_MAX) {
		err_set(err, "control frame payload of %llu bytes",
		    (unsigned long long)plen);
		return -1;
	}
	if (op == WS_OP_CLOSE && plen == 1) {
		err_set(err, "close frame with a 1-byte payload");
		return -1;
	}
	if (len - hlen < plen)
		return 0;
	if (in[1] & 0x80)
		ws_mask(pl, plen, in + hlen - 4, 0);
	ev->data = pl;
	ev->len = plen;
	if (op == WS_OP_PING)
		ev->type = WS_EV_PING;
	else if (op == WS_OP_PONG)
		ev->type = WS_EV_PONG;
	else {
		ev->type = WS_EV_CLOSE;
		if (plen >= 2) {
			ev->close_code = pl[0] << 8 | pl[1];
			ev->data = pl + 2;
			ev->len = plen - 2;
		}
	}
	return hlen + plen;
}

/*
 * Checks that depend only on the first two bytes run as soon as these are
 * present and the others only once the whole header is, so the outcome does
 * not depend on how the input was split.
 *
 * A data frame's header is consumed on its own (WS_EV_NONE) only when no
 * payload byte follows it in the input; otherwise the header and the first
 * piece of payload are consumed together and reported as one WS_EV_DATA
 * whose ev->data points past the header.  This halves the calls for the
 * many small frames kptunnel sends.  Callers must use ev->data, not in.
 *
 * After -1 the decoder state is unspecified; the caller sends the close code
 * and drops the connection.
 */
ssize_t
ws_dec_next(struct ws_dec *d, uint8_t *in, size_t len, struct ws_event *ev,
    int *close_code, char *err)
{
	uint64_t	 plen;
	size_t		 hlen;
	ssize_t		 n;
	int		 rc;

	memset(ev, 0, sizeof(*ev));
	ev->type = WS_EV_NONE;
	/* Keeps every byte count representable in the return value. */
	if (len > SSIZE_MAX - WS_HDR_MAX)
		len = SSIZE_MAX - WS_HDR_MAX;
	if (d->in_payload)
		return len == 0 ? 0 : (ssize_t)ws_dec_payload(d, in, len, ev);
	if (len < 2)
		return 0;
	if (ws_dec_check_first(d, in, err) == -1 ||
	    (rc = ws_dec_length(in, len, &hlen, &plen, err)) == -1)
		return ws_dec_fail(close_code, WS_CLOSE_PROTOCOL);
	if (rc == 1)
		return 0;
	if (in[0] & 0x8) {
		if ((n = ws_dec_control(in, len, hlen, plen, ev, err)) == -1)
			return ws_dec_fail(close_code, WS_CLOSE_PROTOCOL);
		return n;
	}
	if (plen > d->max_frame) {
		err_set(err, "frame of %llu bytes exceeds the limit of %llu",
		    (unsigned long long)plen,
		    (unsigned long long)d->max_frame);
		return ws_dec_fail(close_code, WS_CLOSE_TOO_BIG);
	}
	/* Text is binary here: the dispatcher sends binary in text frames. */
	d->frag_open = !(in[0] & 0x80);
	if (plen == 0)
		return hlen;
	d->in_payload = 1;
	d->remaining = plen;
	d->masked = (in[1] & 0x80) != 0;
	if (d->masked)
		memcpy(d->mask, in + hlen - 4, 4);
	d->mask_off = 0;
	if (len == hlen)
		return hlen;
	return hlen + ws_dec_payload(d, in + hlen, len - hlen, ev);
}

size_t
ws_frame_header(uint8_t *out, int opcode, int fin, uint64_t len,
    const uint8_t mask[4])
{
	size_t	n, i;

	out[0] = (fin ? 0x80 : 0) | (opcode & 0x0f);
	out[1] = mask != NULL ? 0x80 : 0;
	if (len < 126) {
		out[1] |= len;
		n = 2;
	} else if (len <= 0xffff) {
		out[1] |= 126;
		out[2] = len >> 8;
		out[3] = len;
		n = 4;
	} else {
		out[1] |= 127;
		for (i = 0; i < 8; i++)
			out[2 + i] = len >> (56 - 8 * i);
		n = 10;
	}
	if (mask != NULL) {
		memcpy(out + n, mask, 4);
		n += 4;
	}
	return n;
}

/*
 * The key is laid out in memory in byte order and applied through memcpy, so
 * the loop is endian-neutral and alignment-safe; compilers turn it into
 * plain (often vector) loads and stores.
 */
void
ws_mask(uint8_t *p, size_t n, const uint8_t mask[4], size_t off)
{
	uint8_t		m[8];
	uint64_t	k, w0, w1, w2, w3;
	size_t		i;

	for (i = 0; i < 8; i++)
		m[i] = mask[(off + i) & 3];
	memcpy(&k, m, 8);
	for (i = 0; i + 32 <= n; i += 32) {
		memcpy(&w0, p + i, 8);
		memcpy(&w1, p + i + 8, 8);
		memcpy(&w2, p + i + 16, 8);
		memcpy(&w3, p + i + 24, 8);
		w0 ^= k;
		w1 ^= k;
		w2 ^= k;
		w3 ^= k;
		memcpy(p + i, &w0, 8);
		memcpy(p + i + 8, &w1, 8);
		memcpy(p + i + 16, &w2, 8);
		memcpy(p + i + 24, &w3, 8);
	}
	for (; i + 8 <= n; i += 8) {
		memcpy(&w0, p + i, 8);
		w0 ^= k;
		memcpy(p + i, &w0, 8);
	}
	/* i is a multiple of 8 here, so m[i & 7] continues the pattern. */
	for (; i < n; i++)
		p[i] ^= m[i & 7];
}
