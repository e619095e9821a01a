/*
 * libFuzzer target for the websocket frame decoder, both roles.
 *
 * Input: byte 0 selects the role (bit 0) and max_frame (bits 1-3), byte 1
 * the piece size of a second, streamed run; the rest is the frame stream.
 * The stream is decoded once whole and once as a reader receiving it in
 * pieces would, and both runs must agree on the data, the control events
 * and the outcome.  Invariants are checked with abort(): a failure is a bug
 * in the decoder, never a property of the input.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"
#include "ws.h"

#define CHECK(x)	do { if (!(x)) abort(); } while (0)

struct ctl_ev {
	int	type;
	size_t	at;
	size_t	len;
	int	code;
	uint8_t	payload[WS_CTL_MAX];
};

struct run {
	uint8_t		*data;
	size_t		 dlen;
	struct ctl_ev	*ctl;
	size_t		 nctl;
	int		 rv;
	int		 close_code;
	size_t		 consumed;
};

static const uint64_t max_frames[8] = {
	0, 1, 7, 125, 126, 1000, 65536, UINT64_MAX
};

static void
run_stream(enum ws_role role, uint64_t max_frame, uint8_t *buf, size_t len,
    size_t piece, struct run *r)
{
	struct ws_dec	 d;
	struct ws_event	 ev;
	uint8_t		 before[WS_HDR_MAX + WS_CTL_MAX];
	char		 err[ERR_LEN];
	size_t		 pos = 0, avail;
	ssize_t		 n;
	int		 code;

	ws_dec_init(&d, role, max_frame);
	avail = piece < len ? piece : len;
	for (;;) {
		if (avail - pos < sizeof(before))
			memcpy(before, buf + pos, avail - pos);
		code = -1;
		err[0] = '\0';
		n = ws_dec_next(&d, buf + pos, avail - pos, &ev, &code, err);
		if (n == -1) {
			CHECK(code == WS_CLOSE_PROTOCOL ||
			    code == WS_CLOSE_TOO_BIG);
			CHECK(err[0] != '\0' && memchr(err, '\0', ERR_LEN));
			r->rv = -1;
			r->close_code = code;
			break;
		}
		CHECK(n >= 0 && (size_t)n <= avail - pos);
		if (n == 0) {
			/*
			 * Only an incomplete header or control frame makes
			 * the decoder wait, and it must not have touched it.
			 */
			CHECK(ev.type == WS_EV_NONE);
			CHECK(avail - pos < sizeof(before));
			CHECK(memcmp(before, buf + pos, avail - pos) == 0);
			if (avail == len)
				break;
			avail = len - avail < piece ? len : avail + piece;
			continue;
		}
		if (ev.type != WS_EV_NONE) {
			CHECK(ev.data >= buf + pos);
			CHECK(ev.len <= (size_t)n);
			CHECK(ev.data + ev.len <= buf + pos + n);
		}
		switch (ev.type) {
		case WS_EV_NONE:
			break;
		case WS_EV_DATA:
			CHECK(ev.len > 0);
			CHECK(d.remaining <= d.max_frame);
			memcpy(r->data + r->dlen, ev.data, ev.len);
			r->dlen += ev.len;
			break;
		case WS_EV_PING:
		case WS_EV_PONG:
		case WS_EV_CLOSE:
			CHECK(ev.len <= WS_CTL_MAX);
			/* A control frame takes at least 2 bytes. */
			CHECK(r->nctl < len / 2);
			r->ctl[r->nctl].type = ev.type;
			r->ctl[r->nctl].at = r->dlen;
			r->ctl[r->nctl].len = ev.len;
			r->ctl[r->nctl].code = ev.close_code;
			memcpy(r->ctl[r->nctl].payload, ev.data, ev.len);
			r->nctl++;
			CHECK(ev.type == WS_EV_CLOSE || ev.close_code == 0);
			CHECK(ev.close_code >= 0 && ev.close_code <= 0xffff);
			break;
		default:
			CHECK(0);
		}
		pos += n;
		if (avail < pos + 1 && avail < len)
			avail = len - avail < piece ? len : avail + piece;
	}
	r->consumed = pos;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct run	 a, b;
	uint8_t		*buf;
	uint64_t	 max_frame;
	enum ws_role	 role;
	size_t		 len, piece, i;

	if (size < 2)
		return 0;
	role = data[0] & 1 ? WS_ROLE_CLIENT : WS_ROLE_SERVER;
	max_frame = max_frames[(data[0] >> 1) & 7];
	piece = 1 + data[1] % 32;
	data += 2;
	len = size - 2;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	/* The decoder writes in place; exact size so ASan sees overreads. */
	buf = malloc(len ? len : 1);
	a.data = malloc(len + 1);
	b.data = malloc(len + 1);
	a.ctl = calloc(len / 2 + 1, sizeof(*a.ctl));
	b.ctl = calloc(len / 2 + 1, sizeof(*b.ctl));
	CHECK(buf && a.data && b.data && a.ctl && b.ctl);

	memcpy(buf, data, len);
	run_stream(role, max_frame, buf, len, len ? len : 1, &a);
	memcpy(buf, data, len);
	run_stream(role, max_frame, buf, len, piece, &b);

	CHECK(a.rv == b.rv);
	CHECK(a.close_code == b.close_code);
	CHECK(a.consumed == b.consumed);
	CHECK(a.dlen == b.dlen);
	CHECK(memcmp(a.data, b.data, a.dlen) == 0);
	CHECK(a.nctl == b.nctl);
	for (i = 0; i < a.nctl; i++) {
		CHECK(a.ctl[i].type == b.ctl[i].type);
		CHECK(a.ctl[i].at == b.ctl[i].at);
		CHECK(a.ctl[i].len == b.ctl[i].len);
		CHECK(a.ctl[i].code == b.ctl[i].code);
		CHECK(memcmp(a.ctl[i].payload, b.ctl[i].payload,
		    a.ctl[i].len) == 0);
	}

	free(buf);
	free(a.data);
	free(b.data);
	free(a.ctl);
	free(b.ctl);
	return 0;
}
