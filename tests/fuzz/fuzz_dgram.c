/*
 * libFuzzer target for tunneld/dgram.c, the framing of UDP streams.  The
 * input is what a peer sends on a UDP stream.  Fed whole and in two
 * pieces (cut where the first byte says), the parser must give the same
 * datagrams, never one longer than DGRAM_MAX, and fail the same way;
 * the datagrams, queued and taken in pieces, must frame back into the
 * bytes they came from.  Any input is acceptable; only a bug aborts.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "dgram.h"
#include "err.h"

int	LLVMFuzzerTestOneInput(const uint8_t *, size_t);

#define FUZZ_CHECK(c)	do { if (!(c)) abort(); } while (0)

/* The datagrams of one run, framed again, in order. */
struct fuzz_out {
	uint8_t	*b;
	size_t	 len;
	size_t	 cap;
	size_t	 n;
};

static void
fuzz_cb(void *arg, const uint8_t *p, size_t n)
{
	struct fuzz_out	*o = arg;
	uint8_t		*nb;

	FUZZ_CHECK(n <= DGRAM_MAX);
	if (o->len + DGRAM_HDR + n > o->cap) {
		o->cap = (o->len + DGRAM_HDR + n) * 2;
		nb = realloc(o->b, o->cap);
		FUZZ_CHECK(nb != NULL);
		o->b = nb;
	}
	dgram_frame(o->b + o->len, p, n);
	o->len += DGRAM_HDR + n;
	o->n++;
}

/* Feeds data[0..size) in two pieces cut at cut; 0 or -1. */
static int
fuzz_run(const uint8_t *data, size_t size, size_t cut, struct fuzz_out *o,
    size_t *pending)
{
	struct dgram_rx	 rx;
	char		 err[ERR_LEN];
	int		 rc;

	memset(&rx, 0, sizeof(rx));
	rc = dgram_feed(&rx, data, cut, fuzz_cb, o, err);
	if (rc == 0)
		rc = dgram_feed(&rx, data + cut, size - cut, fuzz_cb, o, err);
	*pending = dgram_rx_pending(&rx);
	if (rc == -1)
		FUZZ_CHECK(*pending == 0);
	dgram_rx_free(&rx);
	return rc;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct fuzz_out	 a, b;
	struct dgram_q	 q;
	uint8_t		*back;
	size_t		 cut, pa, pb, off, k, taken;
	int		 ra, rb;

	memset(&a, 0, sizeof(a));
	memset(&b, 0, sizeof(b));
	cut = size > 0 ? data[0] % (size + 1) : 0;
	ra = fuzz_run(data, size, size, &a, &pa);
	rb = fuzz_run(data, size, cut, &b, &pb);
	FUZZ_CHECK(ra == rb && pa == pb && a.n == b.n && a.len == b.len);
	FUZZ_CHECK(a.len == 0 || memcmp(a.b, b.b, a.len) == 0);
	/* What parsed is the input's prefix, framed the same way. */
	FUZZ_CHECK(a.len <= size && (a.len == 0 || memcmp(a.b, data,
	    a.len) == 0));
	if (ra == 0)
		FUZZ_CHECK(a.len + pa == size);
	/* Queued and taken in pieces, the datagrams frame back the same. */
	dgram_q_init(&q, (size_t)1 << 30);
	for (off = 0; off < a.len; off += DGRAM_HDR + k) {
		k = (size_t)a.b[off] << 8 | a.b[off + 1];
		FUZZ_CHECK(dgram_q_push(&q, a.b + off + DGRAM_HDR, k) == 0);
	}
	FUZZ_CHECK(dgram_q_bytes(&q) == a.len);
	back = malloc(a.len + 1);
	FUZZ_CHECK(back != NULL);
	for (taken = 0; dgram_q_bytes(&q) > 0; )
		taken += dgram_q_take(&q, back + taken, 1 + cut % 977);
	FUZZ_CHECK(taken == a.len);
	FUZZ_CHECK(a.len == 0 || memcmp(back, a.b, a.len) == 0);
	dgram_q_free(&q);
	free(back);
	free(a.b);
	free(b.b);
	return 0;
}
