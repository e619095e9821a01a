/*
 * Unit tests for common/ws.c: RFC 6455 examples, length forms, round trips,
 * input split at every byte boundary, protocol errors and the handshake of
 * both roles against wire spec 2.2 / 2.3.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "ws.h"
#include "wsup.h"

#define MAX_CTL	64

/* What a decoder run produced, to compare runs fed in different pieces. */
struct ctl_ev {
	int	type;
	size_t	at;		/* data bytes delivered before it */
	uint8_t	payload[WS_CTL_MAX];
	size_t	len;
	int	code;
};

struct rec {
	uint8_t		*data;
	size_t		 dlen;
	struct ctl_ev	 ctl[MAX_CTL];
	int		 nctl;
	int		 rv;		/* 0: ran out of input, -1: error */
	int		 close_code;
	size_t		 consumed;
	char		 err[ERR_LEN];
};

static uint64_t	rng_state = 0x9e3779b97f4a7c15ULL;

static uint32_t
rnd(void)
{
	/* xorshift64*: reproducible, no libc state. */
	rng_state ^= rng_state >> 12;
	rng_state ^= rng_state << 25;
	rng_state ^= rng_state >> 27;
	return (rng_state * 0x2545f4914f6cdd1dULL) >> 32;
}

static void
rnd_bytes(uint8_t *p, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		p[i] = rnd();
}

/* Appends one frame to out, masking the payload if mask is set. */
static size_t
put_frame(uint8_t *out, int op, int fin, const uint8_t *p, size_t n,
    const uint8_t *mask)
{
	size_t	h;

	h = ws_frame_header(out, op, fin, n, mask);
	if (n > 0)
		memcpy(out + h, p, n);
	if (mask != NULL)
		ws_mask(out + h, n, mask, 0);
	return h + n;
}

static void
rec_init(struct rec *r, size_t cap)
{
	memset(r, 0, sizeof(*r));
	r->data = malloc(cap + 1);
	assert_non_null(r->data);
}

static void
rec_free(struct rec *r)
{
	free(r->data);
	r->data = NULL;
}

/*
 * Decodes a copy of stream[0..total) as a reader would see it: the bytes
 * available grow to each of cuts[0..ncuts) in turn (the last must be total)
 * and unconsumed bytes stay in place.  Checks the decoder's invariants on
 * every call.
 */
static void
feed(enum ws_role role, uint64_t max_frame, const uint8_t *stream,
    size_t total, const size_t *cuts, size_t ncuts, struct rec *r)
{
	struct ws_dec	 d;
	struct ws_event	 ev;
	uint8_t		*buf, before[WS_HDR_MAX + WS_CTL_MAX];
	size_t		 pos = 0, avail, c = 0;
	ssize_t		 n;
	int		 code;

	buf = malloc(total + 1);
	assert_non_null(buf);
	if (total > 0)
		memcpy(buf, stream, total);
	rec_init(r, total);
	ws_dec_init(&d, role, max_frame);
	avail = ncuts > 0 ? cuts[0] : total;
	for (;;) {
		if (avail - pos < sizeof(before))
			memcpy(before, buf + pos, avail - pos);
		code = -7;
		n = ws_dec_next(&d, buf + pos, avail - pos, &ev, &code,
		    r->err);
		if (n == -1) {
			assert_int_not_equal(code, -7);
			r->rv = -1;
			r->close_code = code;
			break;
		}
		assert_true(n >= 0 && (size_t)n <= avail - pos);
		if (n == 0) {
			/* Nothing consumed means nothing touched. */
			assert_int_equal(ev.type, WS_EV_NONE);
			assert_true(avail - pos < sizeof(before));
			assert_memory_equal(before, buf + pos, avail - pos);
			if (++c >= ncuts)
				break;
			avail = cuts[c];
			continue;
		}
		if (ev.type != WS_EV_NONE) {
			assert_true(ev.data >= buf + pos);
			assert_true(ev.data + ev.len <= buf + pos + n);
		}
		if (ev.type == WS_EV_DATA) {
			assert_true(ev.len > 0);
			memcpy(r->data + r->dlen, ev.data, ev.len);
			r->dlen += ev.len;
		} else if (ev.type != WS_EV_NONE) {
			assert_true(r->nctl < MAX_CTL);
			assert_true(ev.len <= WS_CTL_MAX);
			r->ctl[r->nctl].type = ev.type;
			r->ctl[r->nctl].at = r->dlen;
			memcpy(r->ctl[r->nctl].payload, ev.data, ev.len);
			r->ctl[r->nctl].len = ev.len;
			r->ctl[r->nctl].code = ev.close_code;
			r->nctl++;
		}
		pos += n;
	}
	r->consumed = pos;
	free(buf);
}

static void
feed_whole(enum ws_role role, uint64_t max_frame, const uint8_t *stream,
    size_t total, struct rec *r)
{
	feed(role, max_frame, stream, total, &total, 1, r);
}

static void
rec_assert_same(const struct rec *a, const struct rec *b)
{
	int	i;

	assert_int_equal(a->rv, b->rv);
	assert_int_equal(a->close_code, b->close_code);
	assert_int_equal(a->consumed, b->consumed);
	assert_int_equal(a->dlen, b->dlen);
	if (a->dlen > 0)
		assert_memory_equal(a->data, b->data, a->dlen);
	assert_int_equal(a->nctl, b->nctl);
	for (i = 0; i < a->nctl; i++) {
		assert_int_equal(a->ctl[i].type, b->ctl[i].type);
		assert_int_equal(a->ctl[i].at, b->ctl[i].at);
		assert_int_equal(a->ctl[i].len, b->ctl[i].len);
		assert_int_equal(a->ctl[i].code, b->ctl[i].code);
		assert_memory_equal(a->ctl[i].payload, b->ctl[i].payload,
		    a->ctl[i].len);
	}
}

/* One call on a buffer; returns the result and fills ev. */
static ssize_t
dec1(enum ws_role role, uint8_t *in, size_t len, struct ws_event *ev,
    int *code, char *err)
{
	struct ws_dec	d;

	ws_dec_init(&d, role, 0);
	return ws_dec_next(&d, in, len, ev, code, err);
}

/* RFC 6455 5.7 examples. */

static void
test_rfc_unmasked_hello(void **state)
{
	uint8_t		 in[] = { 0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
	struct ws_event	 ev;
	int		 code = 0;

	assert_int_equal(dec1(WS_ROLE_CLIENT, in, sizeof(in), &ev, &code,
	    NULL), 7);
	assert_int_equal(ev.type, WS_EV_DATA);
	assert_ptr_equal(ev.data, in + 2);
	assert_int_equal(ev.len, 5);
	assert_memory_equal(ev.data, "Hello", 5);

	/* A server must refuse it: clients mask. */
	assert_int_equal(dec1(WS_ROLE_SERVER, in, sizeof(in), &ev, &code,
	    NULL), -1);
	assert_int_equal(code, WS_CLOSE_PROTOCOL);
}

static void
test_rfc_masked_hello(void **state)
{
	uint8_t		 in[] = { 0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f,
			    0x9f, 0x4d, 0x51, 0x58 };
	uint8_t		 copy[sizeof(in)];
	struct ws_event	 ev;
	char		 err[ERR_LEN];
	int		 code = 0;

	memcpy(copy, in, sizeof(in));
	assert_int_equal(dec1(WS_ROLE_SERVER, in, sizeof(in), &ev, &code,
	    err), 11);
	assert_int_equal(ev.type, WS_EV_DATA);
	assert_ptr_equal(ev.data, in + 6);
	assert_int_equal(ev.len, 5);
	assert_memory_equal(ev.data, "Hello", 5);

	assert_int_equal(dec1(WS_ROLE_CLIENT, copy, sizeof(copy), &ev, &code,
	    err), -1);
	assert_int_equal(code, WS_CLOSE_PROTOCOL);
	assert_non_null(strstr(err, "masked"));
}

static void
test_rfc_fragmented(void **state)
{
	uint8_t		 in[] = { 0x01, 0x03, 0x48, 0x65, 0x6c,
			    0x80, 0x02, 0x6c, 0x6f };
	struct ws_dec	 d;
	struct ws_event	 ev;
	int		 code = 0;

	ws_dec_init(&d, WS_ROLE_CLIENT, 0);
	assert_int_equal(ws_dec_next(&d, in, sizeof(in), &ev, &code, NULL),
	    5);
	assert_int_equal(ev.type, WS_EV_DATA);
	assert_memory_equal(ev.data, "Hel", 3);
	assert_int_equal(ev.len, 3);
	assert_true(d.frag_open);
	assert_int_equal(ws_dec_next(&d, in + 5, sizeof(in) - 5, &ev, &code,
	    NULL), 4);
	assert_int_equal(ev.type, WS_EV_DATA);
	assert_memory_equal(ev.data, "lo", 2);
	assert_int_equal(ev.len, 2);
	assert_false(d.frag_open);
	assert_false(d.in_payload);
	assert_int_equal(ws_dec_next(&d, in + 9, 0, &ev, &code, NULL), 0);
}

static void
test_rfc_ping_unmasked(void **state)
{
	uint8_t		 in[] = { 0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f };
	struct ws_event	 ev;
	int		 code = 0;

	assert_int_equal(dec1(WS_ROLE_CLIENT, in, sizeof(in), &ev, &code,
	    NULL), 7);
	assert_int_equal(ev.type, WS_EV_PING);
	assert_int_equal(ev.len, 5);
	assert_memory_equal(ev.data, "Hello", 5);
}

static void
test_rfc_pong_masked(void **state)
{
	uint8_t		 in[] = { 0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f,
			    0x9f, 0x4d, 0x51, 0x58 };
	struct ws_event	 ev;
	int		 code = 0;

	assert_int_equal(dec1(WS_ROLE_SERVER, in, sizeof(in), &ev, &code,
	    NULL), 11);
	assert_int_equal(ev.type, WS_EV_PONG);
	assert_int_equal(ev.len, 5);
	assert_memory_equal(ev.data, "Hello", 5);
}

static void
test_rfc_256_binary(void **state)
{
	uint8_t		 in[4 + 256], hdr[WS_HDR_MAX];
	struct ws_event	 ev;
	int		 code = 0, i;

	in[0] = 0x82;
	in[1] = 0x7e;
	in[2] = 0x01;
	in[3] = 0x00;
	for (i = 0; i < 256; i++)
		in[4 + i] = i;
	assert_int_equal(ws_frame_header(hdr, WS_OP_BINARY, 1, 256, NULL), 4);
	assert_memory_equal(hdr, in, 4);
	assert_int_equal(dec1(WS_ROLE_CLIENT, in, sizeof(in), &ev, &code,
	    NULL), sizeof(in));
	assert_int_equal(ev.type, WS_EV_DATA);
	assert_int_equal(ev.len, 256);
	for (i = 0; i < 256; i++)
		assert_int_equal(ev.data[i], i);
}

static void
test_rfc_64k_binary(void **state)
{
	static uint8_t	 in[10 + 65536];
	uint8_t		 want[10] = { 0x82, 0x7f, 0, 0, 0, 0, 0, 0x01, 0, 0 };
	uint8_t		 hdr[WS_HDR_MAX];
	struct ws_event	 ev;
	int		 code = 0;
	size_t		 i;

	memcpy(in, want, 10);
	for (i = 0; i < 65536; i++)
		in[10 + i] = i * 7;
	assert_int_equal(ws_frame_header(hdr, WS_OP_BINARY, 1, 65536, NULL),
	    10);
	assert_memory_equal(hdr, want, 10);
	assert_int_equal(dec1(WS_ROLE_CLIENT, in, sizeof(in), &ev, &code,
	    NULL), sizeof(in));
	assert_int_equal(ev.type, WS_EV_DATA);
	assert_int_equal(ev.len, 65536);
	for (i = 0; i < 65536; i++)
		assert_int_equal(ev.data[i], (uint8_t)(i * 7));
}

/* Every length form at its boundaries, both roles, through the decoder. */
static void
test_length_boundaries(void **state)
{
	static const struct {
		size_t	len;
		size_t	hlen;
		uint8_t	b1;
	} t[] = {
		{ 0, 2, 0 }, { 1, 2, 1 }, { 125, 2, 125 }, { 126, 4, 126 },
		{ 127, 4, 126 }, { 65535, 4, 126 }, { 65536, 10, 127 },
		{ 65537, 10, 127 },
	};
	uint8_t		*frame, *payload, hdr[WS_HDR_MAX], mask[4];
	struct rec	 r;
	size_t		 i, n, k;
	int		 role;

	payload = malloc(65537);
	frame = malloc(65537 + WS_HDR_MAX);
	assert_non_null(payload);
	assert_non_null(frame);
	rnd_bytes(payload, 65537);
	for (i = 0; i < sizeof(t) / sizeof(t[0]); i++) {
		n = ws_frame_header(hdr, WS_OP_BINARY, 1, t[i].len, NULL);
		assert_int_equal(n, t[i].hlen);
		assert_int_equal(hdr[0], 0x82);
		assert_int_equal(hdr[1], t[i].b1);
		if (n == 4)
			assert_int_equal(hdr[2] << 8 | hdr[3], t[i].len);
		if (n == 10) {
			uint64_t v = 0;

			for (k = 2; k < 10; k++)
				v = v << 8 | hdr[k];
			assert_int_equal(v, t[i].len);
		}
		rnd_bytes(mask, 4);
		n = ws_frame_header(hdr, WS_OP_BINARY, 1, t[i].len, mask);
		assert_int_equal(n, t[i].hlen + 4);
		assert_int_equal(hdr[1], 0x80 | t[i].b1);
		assert_memory_equal(hdr + n - 4, mask, 4);

		for (role = 0; role < 2; role++) {
			n = put_frame(frame, WS_OP_BINARY, 1, payload,
			    t[i].len, role == WS_ROLE_SERVER ? mask : NULL);
			assert_int_equal(n, t[i].hlen + t[i].len +
			    (role == WS_ROLE_SERVER ? 4 : 0));
			feed_whole(role, 0, frame, n, &r);
			assert_int_equal(r.rv, 0);
			assert_int_equal(r.consumed, n);
			assert_int_equal(r.dlen, t[i].len);
			if (t[i].len > 0)
				assert_memory_equal(r.data, payload, t[i].len);
			rec_free(&r);
		}
	}
	free(payload);
	free(frame);
}

/* Non-minimal length encodings are accepted (Go does not check either). */
static void
test_nonminimal_lengths(void **state)
{
	uint8_t		 in16[] = { 0x82, 0x7e, 0x00, 0x03, 'a', 'b', 'c' };
	uint8_t		 in64[] = { 0x82, 0x7f, 0, 0, 0, 0, 0, 0, 0, 0x03,
			    'a', 'b', 'c' };
	uint8_t		 ping16[] = { 0x89, 0x7e, 0x00, 0x02, 'h', 'i' };
	struct ws_event	 ev;
	int		 code = 0;

	assert_int_equal(dec1(WS_ROLE_CLIENT, in16, sizeof(in16), &ev, &code,
	    NULL), sizeof(in16));
	assert_int_equal(ev.len, 3);
	assert_memory_equal(ev.data, "abc", 3);
	assert_int_equal(dec1(WS_ROLE_CLIENT, in64, sizeof(in64), &ev, &code,
	    NULL), sizeof(in64));
	assert_int_equal(ev.len, 3);
	assert_memory_equal(ev.data, "abc", 3);
	assert_int_equal(dec1(WS_ROLE_CLIENT, ping16, sizeof(ping16), &ev,
	    &code, NULL), sizeof(ping16));
	assert_int_equal(ev.type, WS_EV_PING);
	assert_int_equal(ev.len, 2);
}

/*
 * Builds a stream of random frames: fragmented messages (text and binary
 * first frames), pings and pongs between fragments, empty frames, every
 * length form.  Returns its length; the expected data goes to want.
 */
static size_t
build_stream(uint8_t *out, uint8_t *want, size_t *wlen, int masked,
    int nframes, size_t maxlen)
{
	uint8_t		 mask[4], p[WS_CTL_MAX];
	size_t		 o = 0, n;
	int		 i, open = 0, op, fin, kind;

	*wlen = 0;
	for (i = 0; i < nframes; i++) {
		rnd_bytes(mask, 4);
		kind = rnd() % 8;
		if (kind == 0) {
			n = rnd() % (WS_CTL_MAX + 1);
			rnd_bytes(p, n);
			o += put_frame(out + o, rnd() % 2 ? WS_OP_PING :
			    WS_OP_PONG, 1, p, n, masked ? mask : NULL);
			continue;
		}
		switch (rnd() % 4) {
		case 0:
			n = 0;
			break;
		case 1:
			n = rnd() % 126;
			break;
		default:
			n = rnd() % (maxlen + 1);
			break;
		}
		op = open ? WS_OP_CONT : (rnd() % 2 ? WS_OP_TEXT :
		    WS_OP_BINARY);
		fin = rnd() % 3 != 0 || i == nframes - 1;
		rnd_bytes(want + *wlen, n);
		o += put_frame(out + o, op, fin, want + *wlen, n,
		    masked ? mask : NULL);
		*wlen += n;
		open = !fin;
	}
	return o;
}

static void
test_roundtrip_random(void **state)
{
	uint8_t		*stream, *want;
	struct rec	 r;
	size_t		 n, wlen;
	int		 round, role;

	stream = malloc(64 * (70000 + WS_HDR_MAX));
	want = malloc(64 * 70000);
	assert_non_null(stream);
	assert_non_null(want);
	for (round = 0; round < 40; round++) {
		for (role = 0; role < 2; role++) {
			n = build_stream(stream, want, &wlen,
			    role == WS_ROLE_SERVER, 32,
			    round % 4 == 0 ? 70000 : 300);
			feed_whole(role, 0, stream, n, &r);
			assert_int_equal(r.rv, 0);
			assert_int_equal(r.consumed, n);
			assert_int_equal(r.dlen, wlen);
			if (wlen > 0)
				assert_memory_equal(r.data, want, wlen);
			rec_free(&r);
		}
	}
	free(stream);
	free(want);
}

/* A fixed multi-frame stream, every way of splitting it in two, bytewise. */
static void
test_split_every_boundary(void **state)
{
	uint8_t		 stream[4096], want[4096], p[300], mask[4];
	size_t		 n, wlen = 0, s, cuts[4096], i;
	struct rec	 whole, part;
	int		 role, m;

	for (role = 0; role < 2; role++) {
		m = role == WS_ROLE_SERVER;
		n = 0;
		wlen = 0;
#define ADD(op, fin, len) do {						\
	rnd_bytes(p, (len));						\
	rnd_bytes(mask, 4);						\
	n += put_frame(stream + n, (op), (fin), p, (len),		\
	    m ? mask : NULL);						\
	if ((op) < WS_OP_CLOSE) {					\
		memcpy(want + wlen, p, (len));				\
		wlen += (len);						\
	}								\
} while (0)
		ADD(WS_OP_BINARY, 1, 1);
		ADD(WS_OP_TEXT, 0, 3);
		ADD(WS_OP_PING, 1, 5);
		ADD(WS_OP_CONT, 0, 0);
		ADD(WS_OP_CONT, 1, 37);
		ADD(WS_OP_BINARY, 1, 0);
		ADD(WS_OP_PONG, 1, 0);
		ADD(WS_OP_BINARY, 1, 126);
		ADD(WS_OP_BINARY, 1, 7);
		ADD(WS_OP_PING, 1, 125);
		ADD(WS_OP_BINARY, 1, 200);
#undef ADD
		/* A close with code 1000 and a reason ends the stream. */
		p[0] = 0x03;
		p[1] = 0xe8;
		memcpy(p + 2, "bye", 3);
		rnd_bytes(mask, 4);
		n += put_frame(stream + n, WS_OP_CLOSE, 1, p, 5,
		    m ? mask : NULL);

		feed_whole(role, 0, stream, n, &whole);
		assert_int_equal(whole.rv, 0);
		assert_int_equal(whole.consumed, n);
		assert_int_equal(whole.dlen, wlen);
		assert_memory_equal(whole.data, want, wlen);
		assert_int_equal(whole.nctl, 4);
		assert_int_equal(whole.ctl[0].type, WS_EV_PING);
		assert_int_equal(whole.ctl[0].at, 4);
		assert_int_equal(whole.ctl[3].type, WS_EV_CLOSE);
		assert_int_equal(whole.ctl[3].code, 1000);
		assert_int_equal(whole.ctl[3].len, 3);
		assert_memory_equal(whole.ctl[3].payload, "bye", 3);

		for (s = 0; s <= n; s++) {
			cuts[0] = s;
			cuts[1] = n;
			feed(role, 0, stream, n, cuts, 2, &part);
			rec_assert_same(&whole, &part);
			rec_free(&part);
		}
		for (i = 0; i < n; i++)
			cuts[i] = i + 1;
		feed(role, 0, stream, n, cuts, n, &part);
		rec_assert_same(&whole, &part);
		rec_free(&part);
		/* Irregular pieces, as TCP delivers them. */
		for (i = 0, s = 0; s < n; i++) {
			s += 1 + rnd() % 23;
			cuts[i] = s < n ? s : n;
		}
		feed(role, 0, stream, n, cuts, i, &part);
		rec_assert_same(&whole, &part);
		rec_free(&part);
		rec_free(&whole);
	}
}

/* A masked payload delivered in pieces unmasks like one piece. */
static void
test_mask_offset_continuity(void **state)
{
	uint8_t		 frame[WS_HDR_MAX + 101], work[sizeof(frame)];
	uint8_t		 payload[101], mask[4] = { 0x01, 0x23, 0x45, 0x67 };
	uint8_t		 out[101];
	struct ws_dec	 d;
	struct ws_event	 ev;
	size_t		 n, h, pos, piece, olen;
	ssize_t		 r;
	int		 code;

	rnd_bytes(payload, sizeof(payload));
	n = put_frame(frame, WS_OP_BINARY, 1, payload, sizeof(payload), mask);
	h = n - sizeof(payload);
	for (piece = 1; piece <= 13; piece++) {
		memcpy(work, frame, n);
		ws_dec_init(&d, WS_ROLE_SERVER, 0);
		/* The header alone: consumed, nothing reported. */
		r = ws_dec_next(&d, work, h, &ev, &code, NULL);
		assert_int_equal(r, h);
		assert_int_equal(ev.type, WS_EV_NONE);
		assert_true(d.in_payload);
		for (pos = h, olen = 0; pos < n; pos += r) {
			r = ws_dec_next(&d, work + pos,
			    n - pos < piece ? n - pos : piece, &ev, &code,
			    NULL);
			assert_true(r > 0);
			assert_int_equal(ev.type, WS_EV_DATA);
			assert_int_equal(d.mask_off, (olen + r) % 4);
			memcpy(out + olen, ev.data, ev.len);
			olen += ev.len;
		}
		assert_int_equal(olen, sizeof(payload));
		assert_memory_equal(out, payload, sizeof(payload));
		assert_false(d.in_payload);
	}
}

/* ws_mask against a byte-wise reference, any offset, any split. */
static void
test_ws_mask(void **state)
{
	uint8_t		 a[200], b[200], mask[4];
	size_t		 n, off, i, s;

	for (n = 0; n < 100; n++) {
		for (off = 0; off < 9; off++) {
			rnd_bytes(a, n);
			rnd_bytes(mask, 4);
			memcpy(b, a, n);
			ws_mask(a, n, mask, off);
			for (i = 0; i < n; i++)
				b[i] ^= mask[(off + i) % 4];
			assert_memory_equal(a, b, n);
			/* Masking twice restores; split masking matches. */
			s = n / 3;
			ws_mask(a, s, mask, off);
			ws_mask(a + s, n - s, mask, off + s);
			for (i = 0; i < n; i++)
				b[i] ^= mask[(off + i) % 4];
			assert_memory_equal(a, b, n);
		}
	}
	/* Unaligned start. */
	for (i = 0; i < sizeof(a); i++)
		a[i] = b[i] = i;
	ws_mask(a + 3, 150, mask, 1);
	for (i = 0; i < 150; i++)
		b[3 + i] ^= mask[(1 + i) % 4];
	assert_memory_equal(a, b, sizeof(a));
}

/* Expects in[0..len) to fail with close code want and err mentioning sub. */
static void
expect_error(enum ws_role role, uint64_t max_frame, const uint8_t *in,
    size_t len, int want, const char *sub)
{
	struct rec	r;

	feed_whole(role, max_frame, in, len, &r);
	assert_int_equal(r.rv, -1);
	assert_int_equal(r.close_code, want);
	if (sub != NULL && strstr(r.err, sub) == NULL)
		fail_msg("err \"%s\" lacks \"%s\"", r.err, sub);
	rec_free(&r);
}

static void
test_protocol_errors(void **state)
{
	uint8_t		 b[16];
	int		 op, rsv;

	/* RSV1, RSV2, RSV3. */
	for (rsv = 0x10; rsv <= 0x40; rsv <<= 1) {
		b[0] = 0x82 | rsv;
		b[1] = 0x00;
		expect_error(WS_ROLE_CLIENT, 0, b, 2, WS_CLOSE_PROTOCOL,
		    "reserved");
	}
	/* Reserved opcodes. */
	for (op = 3; op < 16; op++) {
		if (op >= 8 && op <= 10)
			continue;
		b[0] = 0x80 | op;
		b[1] = 0x00;
		expect_error(WS_ROLE_CLIENT, 0, b, 2, WS_CLOSE_PROTOCOL,
		    "opcode");
	}
	/* Control frames without FIN. */
	for (op = 8; op <= 10; op++) {
		b[0] = op;
		b[1] = 0x00;
		expect_error(WS_ROLE_CLIENT, 0, b, 2, WS_CLOSE_PROTOCOL,
		    "control");
	}
	/* Control frame payload of 126 (16-bit form). */
	b[0] = 0x89;
	b[1] = 0x7e;
	b[2] = 0x00;
	b[3] = 0x7e;
	expect_error(WS_ROLE_CLIENT, 0, b, 4, WS_CLOSE_PROTOCOL, "control");
	/* Masking by role. */
	b[0] = 0x82;
	b[1] = 0x01;
	b[2] = 'x';
	expect_error(WS_ROLE_SERVER, 0, b, 3, WS_CLOSE_PROTOCOL, "unmasked");
	b[1] = 0x81;
	expect_error(WS_ROLE_CLIENT, 0, b, 7, WS_CLOSE_PROTOCOL, "masked");
	/* Continuation without an open message. */
	b[0] = 0x80;
	b[1] = 0x00;
	expect_error(WS_ROLE_CLIENT, 0, b, 2, WS_CLOSE_PROTOCOL,
	    "continuation");
	/* New text or binary frame inside a fragmented message. */
	b[0] = 0x02;
	b[1] = 0x01;
	b[2] = 'a';
	b[3] = 0x81;
	b[4] = 0x01;
	b[5] = 'b';
	expect_error(WS_ROLE_CLIENT, 0, b, 6, WS_CLOSE_PROTOCOL, "fragmented");
	b[3] = 0x82;
	expect_error(WS_ROLE_CLIENT, 0, b, 6, WS_CLOSE_PROTOCOL, "fragmented");
	/* Close with a 1-byte payload. */
	b[0] = 0x88;
	b[1] = 0x01;
	b[2] = 0x03;
	expect_error(WS_ROLE_CLIENT, 0, b, 3, WS_CLOSE_PROTOCOL, "close");
	/* 64-bit length with the top bit set. */
	memset(b, 0, sizeof(b));
	b[0] = 0x82;
	b[1] = 0x7f;
	b[2] = 0x80;
	expect_error(WS_ROLE_CLIENT, 0, b, 10, WS_CLOSE_PROTOCOL, "64-bit");
	b[2] = 0xff;
	expect_error(WS_ROLE_CLIENT, UINT64_MAX, b, 10, WS_CLOSE_PROTOCOL,
	    "64-bit");
}

/* The error comes out the same whatever the split (first bytes first). */
static void
test_error_needs_only_its_bytes(void **state)
{
	uint8_t		 b[2] = { 0xc2, 0x05 };	/* RSV1, payload absent */
	struct ws_event	 ev;
	int		 code = 0;

	assert_int_equal(dec1(WS_ROLE_CLIENT, b, 1, &ev, &code, NULL), 0);
	assert_int_equal(dec1(WS_ROLE_CLIENT, b, 2, &ev, &code, NULL), -1);
	assert_int_equal(code, WS_CLOSE_PROTOCOL);
}

static void
test_max_frame(void **state)
{
	uint8_t		 b[WS_HDR_MAX + 200], p[200];
	struct rec	 r;
	size_t		 n;

	memset(p, 'x', sizeof(p));
	n = put_frame(b, WS_OP_BINARY, 1, p, 100, NULL);
	feed_whole(WS_ROLE_CLIENT, 100, b, n, &r);
	assert_int_equal(r.rv, 0);
	assert_int_equal(r.dlen, 100);
	rec_free(&r);
	n = put_frame(b, WS_OP_BINARY, 1, p, 101, NULL);
	expect_error(WS_ROLE_CLIENT, 100, b, n, WS_CLOSE_TOO_BIG, "limit");
	/* Known from the header alone, before any payload arrives. */
	expect_error(WS_ROLE_CLIENT, 100, b, 4, WS_CLOSE_TOO_BIG, "limit");
	/* Applies per frame, to continuations too. */
	n = put_frame(b, WS_OP_TEXT, 0, p, 100, NULL);
	n += put_frame(b + n, WS_OP_CONT, 1, p, 101, NULL);
	expect_error(WS_ROLE_CLIENT, 100, b, n, WS_CLOSE_TOO_BIG, "limit");
	/* Control frames are bound by 125 only. */
	n = put_frame(b, WS_OP_PING, 1, p, 125, NULL);
	feed_whole(WS_ROLE_CLIENT, 10, b, n, &r);
	assert_int_equal(r.rv, 0);
	assert_int_equal(r.nctl, 1);
	assert_int_equal(r.ctl[0].len, 125);
	rec_free(&r);
	/* 64-bit length beyond the default limit. */
	memset(b, 0, 10);
	b[0] = 0x82;
	b[1] = 0x7f;
	b[2] = 0x7f;
	expect_error(WS_ROLE_CLIENT, 0, b, 10, WS_CLOSE_TOO_BIG, "limit");
}

/* Every proper prefix of a header returns 0 and touches nothing. */
static void
test_incomplete(void **state)
{
	uint8_t		 frames[4][WS_HDR_MAX + 130], p[130];
	uint8_t		 mask[4] = { 1, 2, 3, 4 };
	size_t		 len[4], i, k;
	struct ws_event	 ev;
	struct ws_dec	 d;
	int		 code;

	memset(p, 'q', sizeof(p));
	put_frame(frames[0], WS_OP_BINARY, 1, p, 5, mask);
	len[0] = 2 + 4;
	put_frame(frames[1], WS_OP_BINARY, 1, p, 126, mask);
	len[1] = 4 + 4;
	/* For the ping, every prefix of the whole frame. */
	len[2] = put_frame(frames[2], WS_OP_PING, 1, p, 125, mask);
	len[3] = ws_frame_header(frames[3], WS_OP_BINARY, 1, 70000, mask);
	assert_int_equal(len[3], 10 + 4);
	for (i = 0; i < 4; i++) {
		for (k = 0; k < len[i]; k++) {
			ws_dec_init(&d, WS_ROLE_SERVER, 0);
			assert_int_equal(ws_dec_next(&d, frames[i], k, &ev,
			    &code, NULL), 0);
			assert_int_equal(ev.type, WS_EV_NONE);
			assert_false(d.in_payload);
		}
		ws_dec_init(&d, WS_ROLE_SERVER, 0);
		assert_int_equal(ws_dec_next(&d, frames[i], len[i], &ev,
		    &code, NULL), len[i]);
		if (i == 2) {
			/* Unmasked once: the attempts above left it alone. */
			assert_int_equal(ev.type, WS_EV_PING);
			assert_memory_equal(ev.data, p, 125);
		}
	}
}

static void
test_close(void **state)
{
	uint8_t		 b[WS_HDR_MAX + 10], p[10] = { 0 };
	uint8_t		 mask[4] = { 0xaa, 0x55, 0x0f, 0xf0 };
	struct ws_event	 ev;
	size_t		 n;
	int		 code = 0;

	/* No payload: code 0. */
	n = put_frame(b, WS_OP_CLOSE, 1, p, 0, NULL);
	assert_int_equal(dec1(WS_ROLE_CLIENT, b, n, &ev, &code, NULL), 2);
	assert_int_equal(ev.type, WS_EV_CLOSE);
	assert_int_equal(ev.close_code, 0);
	assert_int_equal(ev.len, 0);
	/* Code only. */
	p[0] = 0x03;
	p[1] = 0xe9;
	n = put_frame(b, WS_OP_CLOSE, 1, p, 2, mask);
	assert_int_equal(dec1(WS_ROLE_SERVER, b, n, &ev, &code, NULL), n);
	assert_int_equal(ev.type, WS_EV_CLOSE);
	assert_int_equal(ev.close_code, 1001);
	assert_int_equal(ev.len, 0);
	/* Code and reason, masked. */
	p[0] = 0x03;
	p[1] = 0xe8;
	memcpy(p + 2, "gone", 4);
	n = put_frame(b, WS_OP_CLOSE, 1, p, 6, mask);
	assert_int_equal(dec1(WS_ROLE_SERVER, b, n, &ev, &code, NULL), n);
	assert_int_equal(ev.close_code, WS_CLOSE_NORMAL);
	assert_int_equal(ev.len, 4);
	assert_memory_equal(ev.data, "gone", 4);
	/* Incomplete close: nothing yet. */
	assert_int_equal(dec1(WS_ROLE_SERVER, b, n - 1, &ev, &code, NULL), 0);
}

/* Empty data frames consume their header and report nothing. */
static void
test_zero_length_data(void **state)
{
	uint8_t		 b[] = { 0x82, 0x00, 0x81, 0x00, 0x82, 0x01, 'z' };
	struct ws_dec	 d;
	struct ws_event	 ev;
	int		 code = 0;

	ws_dec_init(&d, WS_ROLE_CLIENT, 0);
	assert_int_equal(ws_dec_next(&d, b, sizeof(b), &ev, &code, NULL), 2);
	assert_int_equal(ev.type, WS_EV_NONE);
	assert_int_equal(ws_dec_next(&d, b + 2, 5, &ev, &code, NULL), 2);
	assert_int_equal(ev.type, WS_EV_NONE);
	assert_int_equal(ws_dec_next(&d, b + 4, 3, &ev, &code, NULL), 3);
	assert_int_equal(ev.type, WS_EV_DATA);
	assert_int_equal(ev.len, 1);
	assert_int_equal(ev.data[0], 'z');
}

/* Text frames carry binary for kptunnel's dispatcher: no UTF-8 check. */
static void
test_text_not_utf8(void **state)
{
	uint8_t		 b[] = { 0x81, 0x04, 0xff, 0xfe, 0x00, 0xc0 };
	struct ws_event	 ev;
	int		 code = 0;

	assert_int_equal(dec1(WS_ROLE_CLIENT, b, sizeof(b), &ev, &code, NULL),
	    6);
	assert_int_equal(ev.type, WS_EV_DATA);
	assert_int_equal(ev.len, 4);
	assert_int_equal(ev.data[0], 0xff);
}

/* Header plus partial payload come back as one WS_EV_DATA. */
static void
test_header_with_partial_payload(void **state)
{
	uint8_t		 b[WS_HDR_MAX + 300], p[300], mask[4] = { 9, 8, 7, 6 };
	struct ws_dec	 d;
	struct ws_event	 ev;
	size_t		 n;
	int		 code = 0;

	rnd_bytes(p, sizeof(p));
	n = put_frame(b, WS_OP_BINARY, 1, p, 300, mask);
	assert_int_equal(n, 8 + 300);
	ws_dec_init(&d, WS_ROLE_SERVER, 0);
	assert_int_equal(ws_dec_next(&d, b, 8 + 100, &ev, &code, NULL), 108);
	assert_int_equal(ev.type, WS_EV_DATA);
	assert_ptr_equal(ev.data, b + 8);
	assert_int_equal(ev.len, 100);
	assert_memory_equal(ev.data, p, 100);
	assert_int_equal(d.remaining, 200);
	/* More than the frame: stops at the frame's end. */
	assert_int_equal(ws_dec_next(&d, b + 108, 200, &ev, &code, NULL),
	    200);
	assert_memory_equal(ev.data, p + 100, 200);
	assert_false(d.in_payload);
}

/* Handshake. */

#define WIRE_KEY	"ecINxQSP66/0zMhpGwMZYg=="
#define WIRE_ACCEPT	"191XeSY7cniL9OPkiDXaMb5jlb0="
#define WIRE_REQUEST							\
	"GET /?session=11111111-2222-3333-4444-555555555555 HTTP/1.1\r\n" \
	"Host: localhost:17100\r\n"					\
	"Upgrade: websocket\r\n"					\
	"Connection: Upgrade\r\n"					\
	"Sec-WebSocket-Key: " WIRE_KEY "\r\n"				\
	"Origin: http://localhost\r\n"					\
	"Sec-WebSocket-Version: 13\r\n"					\
	"\r\n"
#define WIRE_RESPONSE							\
	"HTTP/1.1 101 Switching Protocols\r\n"				\
	"Upgrade: websocket\r\n"					\
	"Connection: Upgrade\r\n"					\
	"Sec-WebSocket-Accept: " WIRE_ACCEPT "\r\n"			\
	"\r\n"

static void
test_accept_key(void **state)
{
	char	out[29];

	assert_int_equal(wsup_accept_key("dGhlIHNhbXBsZSBub25jZQ==", out), 0);
	assert_string_equal(out, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=");
	assert_int_equal(wsup_accept_key(WIRE_KEY, out), 0);
	assert_string_equal(out, WIRE_ACCEPT);
}

static void
test_client_request(void **state)
{
	char	out[1024];
	int	n;

	n = wsup_client_request(out, sizeof(out), "localhost:17100",
	    "/?session=11111111-2222-3333-4444-555555555555", WIRE_KEY, NULL);
	assert_int_equal(n, strlen(WIRE_REQUEST));
	assert_string_equal(out, WIRE_REQUEST);

	n = wsup_client_request(out, sizeof(out), "h:1", "/", WIRE_KEY,
	    "X-Test: a b");
	assert_true(n > 0);
	assert_string_equal(out,
	    "GET / HTTP/1.1\r\n"
	    "Host: h:1\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: " WIRE_KEY "\r\n"
	    "Origin: http://localhost\r\n"
	    "Sec-WebSocket-Version: 13\r\n"
	    "X-Test: a b\r\n"
	    "\r\n");

	/* Exactly enough room needs one more byte for the NUL. */
	n = strlen(WIRE_REQUEST);
	assert_int_equal(wsup_client_request(out, n, "localhost:17100",
	    "/?session=11111111-2222-3333-4444-555555555555", WIRE_KEY, NULL),
	    -1);
	assert_int_equal(wsup_client_request(out, n + 1, "localhost:17100",
	    "/?session=11111111-2222-3333-4444-555555555555", WIRE_KEY, NULL),
	    n);
	/* No header injection. */
	assert_int_equal(wsup_client_request(out, sizeof(out), "h:1",
	    "/\r\nX: y", WIRE_KEY, NULL), -1);
	assert_int_equal(wsup_client_request(out, sizeof(out), "h:1", "/",
	    WIRE_KEY, "A: b\r\nC: d"), -1);
}

static void
test_server_response(void **state)
{
	char	out[256];
	int	n;

	n = wsup_server_response(out, sizeof(out), WIRE_KEY);
	assert_int_equal(n, strlen(WIRE_RESPONSE));
	assert_string_equal(out, WIRE_RESPONSE);
	assert_int_equal(wsup_server_response(out, n, WIRE_KEY), -1);
	assert_int_equal(wsup_server_response(out, n + 1, WIRE_KEY), n);
}

static ssize_t
check_resp(const char *s, char *err)
{
	return wsup_client_check_response(s, strlen(s), WIRE_KEY, err);
}

static void
test_client_check_response(void **state)
{
	char	 buf[WSUP_HEAD_MAX + 100], err[ERR_LEN];
	size_t	 n, i;

	/* Good, with frame bytes after the head. */
	n = strlen(WIRE_RESPONSE);
	assert_int_equal(check_resp(WIRE_RESPONSE, err), n);
	snprintf(buf, sizeof(buf), "%s\x82\x01", WIRE_RESPONSE);
	assert_int_equal(check_resp(buf, err), n);
	/* Names in any case, values of Upgrade/Connection in any case. */
	assert_true(check_resp("HTTP/1.1 101 Switching Protocols\r\n"
	    "upgrade: WebSocket\r\nCONNECTION:upgrade  \r\n"
	    "sec-websocket-accept: " WIRE_ACCEPT "\r\nServer: x\r\n\r\n",
	    err) > 0);
	/* Incomplete at every length. */
	for (i = 0; i < n; i++)
		assert_int_equal(wsup_client_check_response(WIRE_RESPONSE, i,
		    WIRE_KEY, err), 0);

	/* Wrong accept. */
	assert_int_equal(check_resp("HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
	    err), -1);
	assert_non_null(strstr(err, "Accept"));
	/* Missing accept. */
	assert_int_equal(check_resp("HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n", err), -1);
	/* Go wants Connection exactly "upgrade". */
	assert_int_equal(check_resp("HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade, keep-alive\r\n"
	    "Sec-WebSocket-Accept: " WIRE_ACCEPT "\r\n\r\n", err), -1);
	assert_non_null(strstr(err, "Connection"));
	assert_int_equal(check_resp("HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: h2c\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: " WIRE_ACCEPT "\r\n\r\n", err), -1);
	assert_non_null(strstr(err, "Upgrade"));
	/* Refused: err is the status line. */
	assert_int_equal(check_resp("HTTP/1.1 403 Forbidden\r\n"
	    "Content-Length: 0\r\n\r\n", err), -1);
	assert_string_equal(err, "HTTP/1.1 403 Forbidden");
	assert_int_equal(check_resp("HTTP/1.1 406 Not Acceptable\r\n\r\n",
	    err), -1);
	assert_string_equal(err, "HTTP/1.1 406 Not Acceptable");
	assert_int_equal(check_resp("HTTP/1.1 1010 Switching\r\n\r\n", err),
	    -1);
	assert_int_equal(check_resp("HTTP/1.0 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: " WIRE_ACCEPT "\r\n\r\n", err), -1);
	/* Extensions or a subprotocol nobody asked for. */
	assert_int_equal(check_resp("HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: " WIRE_ACCEPT "\r\n"
	    "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n", err), -1);
	assert_int_equal(check_resp("HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade: websocket\r\nConnection: Upgrade\r\n"
	    "Sec-WebSocket-Accept: " WIRE_ACCEPT "\r\n"
	    "Sec-WebSocket-Protocol: chat\r\n\r\n", err), -1);
	/* Malformed header line. */
	assert_int_equal(check_resp("HTTP/1.1 101 Switching Protocols\r\n"
	    "Upgrade websocket\r\n\r\n", err), -1);

	/* Too long: no end of head within WSUP_HEAD_MAX. */
	memcpy(buf, "HTTP/1.1 101 Switching Protocols\r\n", 34);
	for (i = 34; i < WSUP_HEAD_MAX + 10; i++)
		buf[i] = 'a';
	assert_int_equal(wsup_client_check_response(buf, WSUP_HEAD_MAX - 1,
	    WIRE_KEY, err), 0);
	assert_int_equal(wsup_client_check_response(buf, WSUP_HEAD_MAX, WIRE_KEY,
	    err), -1);
	assert_int_equal(wsup_client_check_response(buf, WSUP_HEAD_MAX + 10,
	    WIRE_KEY, err), -1);
}

static int
refusal(const char *s, int *unknown)
{
	*unknown = -1;
	return wsup_client_refusal(s, strlen(s), unknown);
}

/* The status of a refused upgrade, and the dispatcher's session mark. */
static void
test_client_refusal(void **state)
{
	static const char dispatcher404[] = "HTTP/1.1 404 Not Found\r\n"
	    "Connection: close\r\nContent-Length: 15\r\n"
	    "Tunnel-Session: unknown\r\n"
	    "Content-Type: text/plain; charset=utf-8\r\n\r\nunknown session";
	int unknown;

	assert_int_equal(refusal(dispatcher404, &unknown), 404);
	assert_int_equal(unknown, 1);
	/* Case does not matter in the name or the value; HTTP/1.0 too. */
	assert_int_equal(refusal("HTTP/1.0 404 Not Found\r\n"
	    "tunnel-session:  UNKNOWN \r\n\r\n", &unknown), 404);
	assert_int_equal(unknown, 1);
	/* A 404 of someone else (a proxy, a policy) is not the mark. */
	assert_int_equal(refusal("HTTP/1.1 404 Not Found\r\n"
	    "Content-Length: 0\r\n\r\n", &unknown), 404);
	assert_int_equal(unknown, 0);
	assert_int_equal(refusal("HTTP/1.1 404 Not Found\r\n"
	    "Tunnel-Session: known\r\n\r\n", &unknown), 404);
	assert_int_equal(unknown, 0);
	/* Another status, the mark read all the same; no reason phrase. */
	assert_int_equal(refusal("HTTP/1.1 503\r\n"
	    "Tunnel-Session: unknown\r\n\r\n", &unknown), 503);
	assert_int_equal(unknown, 1);
	assert_int_equal(refusal(WIRE_RESPONSE, &unknown), 101);
	assert_int_equal(unknown, 0);
	/* No complete head, or no status line to read. */
	assert_int_equal(refusal("HTTP/1.1 404 Not Found\r\n", &unknown), -1);
	assert_int_equal(unknown, 0);
	assert_int_equal(refusal("HTTP/1.1 4x4 Odd\r\n\r\n", &unknown), -1);
	assert_int_equal(refusal("HTTP/1.1 099 Low\r\n\r\n", &unknown), -1);
	assert_int_equal(refusal("HTTP/1.1 4044 Long\r\n\r\n", &unknown),
	    -1);
	assert_int_equal(refusal("HTTP/2 404 Not Found\r\n\r\n", &unknown),
	    -1);
	assert_int_equal(refusal("ICY 404 Not Found\r\n\r\n", &unknown), -1);
	assert_int_equal(refusal("HTTP/1.1 404 Not Found\r\n"
	    "bad header line\r\n\r\n", &unknown), -1);
	assert_int_equal(unknown, 0);
}

static ssize_t
parse_req(const char *s, struct wsup_req *req, int *status, char *err)
{
	*status = -1;
	return wsup_server_parse_request(s, strlen(s), req, status, err);
}

static void
expect_refused(const char *s, int want, const char *sub)
{
	struct wsup_req	req;
	char			err[ERR_LEN];
	int			status;

	assert_int_equal(parse_req(s, &req, &status, err), -1);
	assert_int_equal(status, want);
	if (sub != NULL && strstr(err, sub) == NULL)
		fail_msg("err \"%s\" lacks \"%s\"", err, sub);
}

static void
test_server_parse_request(void **state)
{
	struct wsup_req	 req;
	char			 err[ERR_LEN];
	size_t			 n, i;
	int			 status;

	n = strlen(WIRE_REQUEST);
	assert_int_equal(parse_req(WIRE_REQUEST, &req, &status, err), n);
	assert_string_equal(req.target,
	    "/?session=11111111-2222-3333-4444-555555555555");
	assert_string_equal(req.key, WIRE_KEY);
	assert_int_equal(req.have_origin, 1);
	for (i = 0; i < n; i++) {
		status = -1;
		assert_int_equal(wsup_server_parse_request(WIRE_REQUEST, i,
		    &req, &status, err), 0);
	}

	/* Missing or malformed key. */
	expect_refused("GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n", 400,
	    "Key");
	expect_refused("GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Key: abc\r\n\r\n", 400, "Key");
	expect_refused("GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Key: ecINxQSP66/0zMhpGwMZY*==\r\n\r\n", 400, "Key");
	expect_refused("GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Key: " WIRE_KEY "\r\n"
	    "Sec-WebSocket-Key: " WIRE_KEY "\r\n\r\n", 400, "Key");
	/* Version. */
	expect_refused("GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Version: 8\r\n"
	    "Sec-WebSocket-Key: " WIRE_KEY "\r\n\r\n", 426, "version");
	expect_refused("GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: " WIRE_KEY "\r\n\r\n", 426, "Version");
	/* Method, HTTP version, target. */
	expect_refused("POST / HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Key: " WIRE_KEY "\r\n\r\n", 405, "POST");
	expect_refused("get / HTTP/1.1\r\n\r\n", 405, NULL);
	expect_refused("GET / HTTP/1.0\r\nUpgrade: websocket\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Key: " WIRE_KEY "\r\n\r\n", 400, "version");
	expect_refused("GET /\r\n\r\n", 400, "request line");
	expect_refused("GET  / HTTP/1.1\r\n\r\n", 400, "request line");
	expect_refused("GET / HTTP/1.1 x\r\n\r\n", 400, NULL);
	expect_refused("\r\n\r\n", 400, NULL);
	/* Not an upgrade. */
	expect_refused("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 400,
	    "not websocket protocol");
	expect_refused("GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
	    "Connection: keep-alive\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Key: " WIRE_KEY "\r\n\r\n", 400,
	    "not websocket protocol");
	expect_refused("GET / HTTP/1.1\r\nUpgrade: websockets\r\n"
	    "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
	    "Sec-WebSocket-Key: " WIRE_KEY "\r\n\r\n", 400,
	    "not websocket protocol");
	/* Malformed header lines. */
	expect_refused("GET / HTTP/1.1\r\nUpgrade: websocket\r\n"
	    " folded\r\n\r\n", 400, "folding");
	expect_refused("GET / HTTP/1.1\r\nUpgrade: websocket\n\r\n", 400,
	    "LF");
	expect_refused("GET / HTTP/1.1\nHost: x\n", 400, "LF");
	expect_refused("GET / HTTP/1.1\r\nX: a\x01b\r\n\r\n", 400, "control");
	expect_refused("GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400, "control");
	expect_refused("GET /\x7f HTTP/1.1\r\n\r\n", 400, "control");
	expect_refused("GET / HTTP/1.1\r\nNoColon\r\n\r\n", 400, "malformed");
	expect_refused("GET / HTTP/1.1\r\nX : y\r\n\r\n", 400, "malformed");
	expect_refused("GET / HTTP/1.1\r\n: y\r\n\r\n", 400, "malformed");
}

static void
test_server_limits(void **state)
{
	static char		 buf[WSUP_HEAD_MAX + 4096];
	struct wsup_req	 req;
	char			 err[ERR_LEN];
	size_t			 n;
	int			 status, i;

	/* Oversize: no end of head within WSUP_HEAD_MAX. */
	n = snprintf(buf, sizeof(buf), "GET / HTTP/1.1\r\nX: ");
	memset(buf + n, 'a', sizeof(buf) - n);
	status = 0;
	assert_int_equal(wsup_server_parse_request(buf, WSUP_HEAD_MAX - 1, &req,
	    &status, err), 0);
	assert_int_equal(wsup_server_parse_request(buf, WSUP_HEAD_MAX, &req,
	    &status, err), -1);
	assert_int_equal(status, 431);
	status = 0;
	assert_int_equal(wsup_server_parse_request(buf, sizeof(buf), &req,
	    &status, err), -1);
	assert_int_equal(status, 431);

	/* A head of exactly WSUP_HEAD_MAX bytes is fine. */
	n = snprintf(buf, sizeof(buf), "%.*s", (int)strlen(WIRE_REQUEST) - 2,
	    WIRE_REQUEST);
	n += snprintf(buf + n, sizeof(buf) - n, "X: ");
	memset(buf + n, 'b', WSUP_HEAD_MAX - n - 4);
	memcpy(buf + WSUP_HEAD_MAX - 4, "\r\n\r\n", 4);
	assert_int_equal(wsup_server_parse_request(buf, WSUP_HEAD_MAX, &req,
	    &status, err), WSUP_HEAD_MAX);

	/* 100 header lines pass, 101 do not. */
	n = snprintf(buf, sizeof(buf), "%.*s", (int)strlen(WIRE_REQUEST) - 2,
	    WIRE_REQUEST);
	/* WIRE_REQUEST has 6 header lines. */
	for (i = 0; i < 100 - 6; i++)
		n += snprintf(buf + n, sizeof(buf) - n, "X-%d: y\r\n", i);
	n += snprintf(buf + n, sizeof(buf) - n, "\r\n");
	assert_int_equal(wsup_server_parse_request(buf, n, &req, &status, err),
	    n);
	n = snprintf(buf, sizeof(buf), "%.*s", (int)strlen(WIRE_REQUEST) - 2,
	    WIRE_REQUEST);
	for (i = 0; i < 100 - 6 + 1; i++)
		n += snprintf(buf + n, sizeof(buf) - n, "X-%d: y\r\n", i);
	n += snprintf(buf + n, sizeof(buf) - n, "\r\n");
	assert_int_equal(wsup_server_parse_request(buf, n, &req, &status, err),
	    -1);
	assert_int_equal(status, 431);

	/* Target: 2047 bytes fit, 2048 get 414. */
	n = snprintf(buf, sizeof(buf), "GET /");
	memset(buf + n, 't', 2046);
	n += 2046;
	n += snprintf(buf + n, sizeof(buf) - n, "%s",
	    strstr(WIRE_REQUEST, " HTTP/1.1"));
	assert_int_equal(wsup_server_parse_request(buf, n, &req, &status, err),
	    n);
	assert_int_equal(strlen(req.target), 2047);
	n = snprintf(buf, sizeof(buf), "GET /");
	memset(buf + n, 't', 2047);
	n += 2047;
	n += snprintf(buf + n, sizeof(buf) - n, "%s",
	    strstr(WIRE_REQUEST, " HTTP/1.1"));
	assert_int_equal(wsup_server_parse_request(buf, n, &req, &status, err),
	    -1);
	assert_int_equal(status, 414);
}

/* Requests as libwebsockets and browsers write them are accepted. */
static void
test_server_lws_request(void **state)
{
	struct wsup_req	 req;
	char			 err[ERR_LEN];
	int			 status;
	const char		*lws1 =
	    "GET /tunnel?session=abc&mode=Reconnect HTTP/1.1\r\n"
	    "Pragma: no-cache\r\n"
	    "Cache-Control: no-cache\r\n"
	    "Host: 127.0.0.1:8080\r\n"
	    "Origin: http://127.0.0.1\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Extensions: permessage-deflate; "
	    "client_max_window_bits\r\n"
	    "Sec-WebSocket-Version: 13\r\n"
	    "User-Agent: libwebsockets\r\n"
	    "\r\n";
	const char		*lws2 =
	    "GET / HTTP/1.1\r\n"
	    "host: localhost\r\n"
	    "upgrade: WebSocket\r\n"
	    "connection: keep-alive, Upgrade\r\n"
	    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "sec-websocket-version: 13\r\n"
	    "sec-websocket-protocol: kptunnel\r\n"
	    "user-agent:\tMozilla/5.0 (X11)\t\r\n"
	    "\r\n";
	const char		*lws3 =
	    "GET / HTTP/1.1\r\n"
	    "Upgrade: websocket\r\n"
	    "Connection: keep-alive\r\n"
	    "Connection: Upgrade\r\n"
	    "Sec-WebSocket-Key:dGhlIHNhbXBsZSBub25jZQ==\r\n"
	    "Sec-WebSocket-Version: 13\r\n"
	    "Origin:\r\n"
	    "\r\n";

	assert_int_equal(parse_req(lws1, &req, &status, err), strlen(lws1));
	assert_string_equal(req.target, "/tunnel?session=abc&mode=Reconnect");
	assert_string_equal(req.key, "dGhlIHNhbXBsZSBub25jZQ==");
	assert_int_equal(req.have_origin, 1);
	assert_int_equal(parse_req(lws2, &req, &status, err), strlen(lws2));
	assert_string_equal(req.target, "/");
	assert_int_equal(req.have_origin, 0);
	assert_int_equal(parse_req(lws3, &req, &status, err), strlen(lws3));
	assert_int_equal(req.have_origin, 0);
}

/* The whole handshake, our client against our server. */
static void
test_handshake_roundtrip(void **state)
{
	struct wsup_req	 req;
	char			 rq[512], rs[256], err[ERR_LEN];
	int			 n, m, status;

	n = wsup_client_request(rq, sizeof(rq), "example.org:443",
	    "/ws?session=s1", WIRE_KEY, "X-Auth: t");
	assert_true(n > 0);
	assert_int_equal(wsup_server_parse_request(rq, n, &req, &status, err),
	    n);
	assert_string_equal(req.target, "/ws?session=s1");
	assert_int_equal(req.have_origin, 1);
	m = wsup_server_response(rs, sizeof(rs), req.key);
	assert_true(m > 0);
	assert_int_equal(wsup_client_check_response(rs, m, WIRE_KEY, err), m);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rfc_unmasked_hello),
		cmocka_unit_test(test_rfc_masked_hello),
		cmocka_unit_test(test_rfc_fragmented),
		cmocka_unit_test(test_rfc_ping_unmasked),
		cmocka_unit_test(test_rfc_pong_masked),
		cmocka_unit_test(test_rfc_256_binary),
		cmocka_unit_test(test_rfc_64k_binary),
		cmocka_unit_test(test_length_boundaries),
		cmocka_unit_test(test_nonminimal_lengths),
		cmocka_unit_test(test_roundtrip_random),
		cmocka_unit_test(test_split_every_boundary),
		cmocka_unit_test(test_mask_offset_continuity),
		cmocka_unit_test(test_ws_mask),
		cmocka_unit_test(test_protocol_errors),
		cmocka_unit_test(test_error_needs_only_its_bytes),
		cmocka_unit_test(test_max_frame),
		cmocka_unit_test(test_incomplete),
		cmocka_unit_test(test_close),
		cmocka_unit_test(test_zero_length_data),
		cmocka_unit_test(test_text_not_utf8),
		cmocka_unit_test(test_header_with_partial_payload),
		cmocka_unit_test(test_accept_key),
		cmocka_unit_test(test_client_request),
		cmocka_unit_test(test_server_response),
		cmocka_unit_test(test_client_check_response),
		cmocka_unit_test(test_client_refusal),
		cmocka_unit_test(test_server_parse_request),
		cmocka_unit_test(test_server_limits),
		cmocka_unit_test(test_server_lws_request),
		cmocka_unit_test(test_handshake_roundtrip),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
