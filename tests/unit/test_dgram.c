/*
 * Unit tests for tunneld/dgram.c: datagram framing of UDP streams
 * (docs/protocol.md, "UDP extension"): frames cut at every offset,
 * several in one piece, the length bound, the truncated end, and the
 * queue's bound and cutting.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "dgram.h"
#include "err.h"

#define MAXGOT	64

/* What the callback received. */
struct got {
	size_t	 n;
	size_t	 len[MAXGOT];
	uint8_t	*p[MAXGOT];
};

static void
got_cb(void *arg, const uint8_t *p, size_t n)
{
	struct got *g = arg;

	assert_true(g->n < MAXGOT);
	g->len[g->n] = n;
	g->p[g->n] = malloc(n + 1);
	assert_non_null(g->p[g->n]);
	memcpy(g->p[g->n], p, n);
	g->n++;
}

static void
got_free(struct got *g)
{
	size_t i;

	for (i = 0; i < g->n; i++)
		free(g->p[i]);
	memset(g, 0, sizeof(*g));
}

/* Datagram i of the test stream: i * 37 bytes of a pattern (0 for i 0). */
static size_t
sample(size_t i, uint8_t *out)
{
	size_t n = i * 37, k;

	for (k = 0; k < n; k++)
		out[k] = (uint8_t)(i + k * 7);
	return n;
}

/* The stream of datagrams 0..count-1; its length. */
static size_t
stream(size_t count, uint8_t *out)
{
	uint8_t	 d[2048];
	size_t	 i, n, off = 0;

	for (i = 0; i < count; i++) {
		n = sample(i, d);
		dgram_frame(out + off, d, n);
		off += DGRAM_HDR + n;
	}
	return off;
}

static void
check(const struct got *g, size_t count)
{
	uint8_t	 d[2048];
	size_t	 i, n;

	assert_int_equal(g->n, count);
	for (i = 0; i < count; i++) {
		n = sample(i, d);
		assert_int_equal(g->len[i], n);
		assert_memory_equal(g->p[i], d, n);
	}
}

/* One piece, then every split in two, then byte by byte. */
static void
test_feed_splits(void **state)
{
	uint8_t		 s[16384];
	struct dgram_rx	 rx;
	struct got	 g;
	char		 err[ERR_LEN];
	size_t		 len, cut, i;

	memset(&rx, 0, sizeof(rx));
	memset(&g, 0, sizeof(g));
	len = stream(12, s);
	assert_int_equal(dgram_feed(&rx, s, len, got_cb, &g, err), 0);
	check(&g, 12);
	assert_int_equal(dgram_rx_pending(&rx), 0);
	got_free(&g);
	for (cut = 0; cut <= len; cut++) {
		assert_int_equal(dgram_feed(&rx, s, cut, got_cb, &g, err), 0);
		assert_int_equal(dgram_feed(&rx, s + cut, len - cut, got_cb,
		    &g, err), 0);
		check(&g, 12);
		assert_int_equal(dgram_rx_pending(&rx), 0);
		got_free(&g);
	}
	for (i = 0; i < len; i++)
		assert_int_equal(dgram_feed(&rx, s + i, 1, got_cb, &g, err),
		    0);
	check(&g, 12);
	got_free(&g);
	dgram_rx_free(&rx);
}

/* A length past DGRAM_MAX ends the stream; DGRAM_MAX itself is fine. */
static void
test_feed_oversized(void **state)
{
	static uint8_t	 big[DGRAM_HDR + DGRAM_MAX];
	struct dgram_rx	 rx;
	struct got	 g;
	char		 err[ERR_LEN];
	uint8_t		 bad[] = { 0xff, 0xff, 1, 2, 3 };
	uint8_t		 bad2[] = { (DGRAM_MAX + 1) >> 8, (DGRAM_MAX + 1) & 0xff };

	memset(&rx, 0, sizeof(rx));
	memset(&g, 0, sizeof(g));
	assert_int_equal(dgram_feed(&rx, bad, sizeof(bad), got_cb, &g, err),
	    -1);
	assert_non_null(strstr(err, "65535 bytes"));
	assert_int_equal(g.n, 0);
	assert_int_equal(dgram_rx_pending(&rx), 0);
	assert_int_equal(dgram_feed(&rx, bad2, sizeof(bad2), got_cb, &g,
	    err), -1);
	memset(big + DGRAM_HDR, 'x', DGRAM_MAX);
	dgram_frame(big, big + DGRAM_HDR, DGRAM_MAX);
	/* In pieces: kept, grown as the bytes come. */
	assert_int_equal(dgram_feed(&rx, big, 1000, got_cb, &g, err), 0);
	assert_int_equal(dgram_rx_pending(&rx), 1000);
	assert_true(rx.cap <= 2048);
	assert_int_equal(dgram_feed(&rx, big + 1000, sizeof(big) - 1000,
	    got_cb, &g, err), 0);
	assert_int_equal(g.n, 1);
	assert_int_equal(g.len[0], DGRAM_MAX);
	got_free(&g);
	dgram_rx_free(&rx);
}

/* A stream that ends inside a frame leaves it pending. */
static void
test_feed_truncated(void **state)
{
	uint8_t		 s[] = { 0, 3, 'a', 'b', 'c', 0, 10, 'x', 'y' };
	struct dgram_rx	 rx;
	struct got	 g;
	char		 err[ERR_LEN];

	memset(&rx, 0, sizeof(rx));
	memset(&g, 0, sizeof(g));
	assert_int_equal(dgram_feed(&rx, s, sizeof(s), got_cb, &g, err), 0);
	assert_int_equal(g.n, 1);
	assert_memory_equal(g.p[0], "abc", 3);
	assert_int_equal(dgram_rx_pending(&rx), 4);
	got_free(&g);
	dgram_rx_free(&rx);
	assert_int_equal(dgram_rx_pending(&rx), 0);
	/* Half a header is pending too. */
	assert_int_equal(dgram_feed(&rx, s, 1, got_cb, &g, err), 0);
	assert_int_equal(dgram_rx_pending(&rx), 1);
	dgram_rx_free(&rx);
}

/* The queue gives back the stream, cut anywhere, and keeps its bound. */
static void
test_queue(void **state)
{
	uint8_t		 d[2048], want[16384], out[16384];
	struct dgram_q	 q;
	size_t		 i, n, len, got, cap;

	len = stream(12, want);
	for (cap = 1; cap < 700; cap += 33) {
		dgram_q_init(&q, 1 << 20);
		for (i = 0; i < 12; i++) {
			n = sample(i, d);
			assert_int_equal(dgram_q_push(&q, d, n), 0);
		}
		assert_int_equal(dgram_q_bytes(&q), len);
		assert_int_equal(dgram_q_count(&q), 12);
		got = 0;
		while (dgram_q_bytes(&q) > 0)
			got += dgram_q_take(&q, out + got, cap);
		assert_int_equal(got, len);
		assert_memory_equal(out, want, len);
		assert_int_equal(q.cost, 0);
		assert_int_equal(dgram_q_count(&q), 0);
		dgram_q_free(&q);
	}
	/* The bound: framed bytes plus the cost of each entry. */
	dgram_q_init(&q, 3 * (DGRAM_HDR + 100 + DGRAM_QE_COST));
	memset(d, 1, sizeof(d));
	for (i = 0; i < 3; i++)
		assert_int_equal(dgram_q_push(&q, d, 100), 0);
	assert_int_equal(dgram_q_push(&q, d, 0), -1);
	/* Taken in part: the entry still counts until it is whole. */
	assert_int_equal(dgram_q_take(&q, out, 50), 50);
	assert_int_equal(dgram_q_push(&q, d, 0), -1);
	assert_int_equal(dgram_q_count(&q), 3);
	assert_int_equal(dgram_q_take(&q, out, 52), 52);
	assert_int_equal(dgram_q_push(&q, d, 100), 0);
	dgram_q_free(&q);
	assert_int_equal(dgram_q_bytes(&q), 0);
	/* Longer than a UDP payload can be: refused. */
	dgram_q_init(&q, 1 << 20);
	assert_int_equal(dgram_q_push(&q, d, DGRAM_MAX + 1), -1);
	dgram_q_free(&q);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_feed_splits),
		cmocka_unit_test(test_feed_oversized),
		cmocka_unit_test(test_feed_truncated),
		cmocka_unit_test(test_queue),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
