/*
 * Unit tests for tunneld/sealq.c: sealing a run of our own packets gives
 * what sealing each payload in order gives (DUMMY and SYNC left as they
 * are), and the queue on a real loop hands buffers back sealed and in
 * order, keeps the cipher's order across jobs, reports a failure, and
 * stops calling back once closed (ASan checks what a close frees).
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <uv.h>

#include "aead.h"
#include "conn.h"
#include "err.h"
#include "pkt.h"
#include "sealq.h"
#include "xcipher.h"

#define NBUF	12

/* A buffer of packets: DUMMY, SYNC, then NORMAL payloads of n bytes. */
static struct obuf *
mkbuf(size_t npkt, size_t n, size_t ov, uint8_t fill)
{
	struct obuf	*b;
	uint8_t		*w;
	size_t		 i, len = 0;

	b = malloc(sizeof(*b) + CONN_HEADROOM + 1 + PKT_SYNC_LEN +
	    npkt * (PKT_NORMAL_HDR + n + ov));
	assert_non_null(b);
	w = b->mem + CONN_HEADROOM;
	w[len++] = PKT_DUMMY;
	pkt_put_sync(w + len, 0x80000001u, 29);
	len += PKT_SYNC_LEN;
	for (i = 0; i < npkt; i++) {
		pkt_put_normal_hdr(w + len, 0x80000001u + i, n + ov);
		len += PKT_NORMAL_HDR;
		memset(w + len, fill + i, n);
		len += n + ov;
	}
	b->len = len;
	return b;
}

/* What b's packets must be: each payload sealed in order with ref. */
static void
check_sealed(struct xcipher *ref, const struct obuf *b, size_t npkt,
    size_t n, size_t ov, uint8_t fill)
{
	struct obuf	*want = mkbuf(npkt, n, ov, fill);
	uint8_t		*w = want->mem + CONN_HEADROOM;
	size_t		 i, off = 1 + PKT_SYNC_LEN;

	for (i = 0; i < npkt; i++) {
		assert_int_equal(xc_seal(ref, w + off, PKT_NORMAL_HDR,
		    w + off + PKT_NORMAL_HDR, n), 0);
		off += PKT_NORMAL_HDR + n + ov;
	}
	assert_int_equal(b->len, want->len);
	assert_memory_equal(b->mem + CONN_HEADROOM, w, b->len);
	free(want);
}

static struct xcipher *
mkaead(void)
{
	uint8_t		key[AEAD_KEY_LEN];
	char		err[ERR_LEN];
	struct xcipher	*x;

	memset(key, 5, sizeof(key));
	assert_non_null(x = xc_aead_new(key, err));
	return x;
}

static void
test_seal_run(void **state)
{
	struct xcipher	*x, *ref;
	struct obuf	*b;
	char		 err[ERR_LEN];

	(void)state;
	x = mkaead();
	ref = mkaead();
	/* Zero-length payloads carry a tag too. */
	b = mkbuf(3, 0, AEAD_TAG_LEN, 1);
	assert_int_equal(sealq_seal(x, b->mem + CONN_HEADROOM, b->len), 0);
	check_sealed(ref, b, 3, 0, AEAD_TAG_LEN, 1);
	free(b);
	b = mkbuf(4, 1000, AEAD_TAG_LEN, 7);
	assert_int_equal(sealq_seal(x, b->mem + CONN_HEADROOM, b->len), 0);
	check_sealed(ref, b, 4, 1000, AEAD_TAG_LEN, 7);
	free(b);
	xc_free(x);
	xc_free(ref);

	/* CFB: one stream over every payload, nothing added. */
	assert_non_null(x = xc_cfb_new("e", -1, 0, err));
	assert_non_null(ref = xc_cfb_new("e", -1, 0, err));
	b = mkbuf(5, 333, 0, 3);
	assert_int_equal(sealq_seal(x, b->mem + CONN_HEADROOM, b->len), 0);
	check_sealed(ref, b, 5, 333, 0, 3);
	free(b);
	/* A length field shorter than the tag is not ours: refused. */
	b = mkbuf(1, 0, 0, 0);
	xc_free(x);
	x = mkaead();
	assert_int_equal(sealq_seal(x, b->mem + CONN_HEADROOM, b->len), -1);
	free(b);
	xc_free(x);
	xc_free(ref);
}

struct ctx {
	struct sealq	*q;
	struct xcipher	*ref;
	uv_loop_t	*loop;
	size_t		 got;		/* buffers back */
	size_t		 rooms;		/* b NULL, rc 0 */
	size_t		 fails;
	size_t		 close_at;	/* close the queue at this buffer */
	size_t		 push_more;	/* buffers to queue from the callback */
	size_t		 pushed;
};

#define QN	(SEALQ_INLINE_MAX + 1000)	/* bulk payload */

static void
on_sealed(void *arg, struct obuf *b, int rc)
{
	struct ctx *c = arg;

	if (b == NULL) {
		if (rc == 0)
			c->rooms++;
		else
			c->fails++;
		/* Room: the owner queues more, behind the next job. */
		while (c->push_more > 0 && !sealq_full(c->q)) {
			c->push_more--;
			assert_int_equal(sealq_push(c->q,
			    mkbuf(1, QN, AEAD_TAG_LEN, c->pushed++)), 0);
		}
		return;
	}
	if (rc == -1) {
		c->fails++;
		free(b);
		return;
	}
	check_sealed(c->ref, b, 1, QN, AEAD_TAG_LEN, c->got);
	free(b);
	c->got++;
	if (c->got == c->close_at) {
		sealq_close(c->q);
		c->q = NULL;
	}
}

static void
test_queue_order(void **state)
{
	struct ctx	 c;
	uv_loop_t	 loop;
	size_t		 i;

	(void)state;
	memset(&c, 0, sizeof(c));
	uv_loop_init(&loop);
	c.loop = &loop;
	c.ref = mkaead();
	assert_non_null(c.q = sealq_new(&loop, mkaead(), on_sealed, &c));
	assert_int_equal(sealq_wants(c.q, 10), 0);
	assert_int_equal(sealq_wants(c.q, QN), 1);
	c.push_more = NBUF;
	for (i = 0; i < 4; i++) {
		assert_int_equal(sealq_push(c.q, mkbuf(1, QN, AEAD_TAG_LEN,
		    c.pushed++)), 0);
		/* Queued behind the first: small ones wait their turn. */
		assert_int_equal(sealq_wants(c.q, 10), 1);
	}
	assert_true(sealq_bytes(c.q) > 4 * QN);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(c.got, 4 + NBUF);
	assert_int_equal(c.fails, 0);
	assert_true(c.rooms >= 1);
	assert_int_equal(sealq_bytes(c.q), 0);
	assert_int_equal(sealq_wants(c.q, 10), 0);
	sealq_close(c.q);
	uv_run(&loop, UV_RUN_DEFAULT);
	xc_free(c.ref);
	assert_int_equal(uv_loop_close(&loop), 0);
}

static void
test_queue_close(void **state)
{
	struct ctx	 c;
	uv_loop_t	 loop;
	size_t		 i;

	(void)state;
	/* Closed from its own callback: nothing more is handed back. */
	memset(&c, 0, sizeof(c));
	uv_loop_init(&loop);
	c.ref = mkaead();
	c.close_at = 2;
	assert_non_null(c.q = sealq_new(&loop, mkaead(), on_sealed, &c));
	for (i = 0; i < 6; i++)
		assert_int_equal(sealq_push(c.q, mkbuf(1, QN, AEAD_TAG_LEN,
		    c.pushed++)), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(c.got, 2);
	xc_free(c.ref);

	/* Closed while its job runs: the job's end frees it all. */
	memset(&c, 0, sizeof(c));
	c.ref = mkaead();
	assert_non_null(c.q = sealq_new(&loop, mkaead(), on_sealed, &c));
	for (i = 0; i < 3; i++)
		assert_int_equal(sealq_push(c.q, mkbuf(1, QN, AEAD_TAG_LEN,
		    c.pushed++)), 0);
	sealq_close(c.q);
	uv_run(&loop, UV_RUN_DEFAULT);
	assert_int_equal(c.got, 0);
	assert_int_equal(c.rooms, 0);
	xc_free(c.ref);

	/* Full: the ring refuses, the buffer is freed. */
	memset(&c, 0, sizeof(c));
	c.ref = mkaead();
	assert_non_null(c.q = sealq_new(&loop, mkaead(), on_sealed, &c));
	for (i = 0; i < SEALQ_SLOTS; i++)
		assert_int_equal(sealq_push(c.q, mkbuf(1, 10, AEAD_TAG_LEN,
		    0)), 0);
	assert_true(sealq_full(c.q));
	assert_int_equal(sealq_push(c.q, mkbuf(1, 10, AEAD_TAG_LEN, 0)), -1);
	sealq_close(c.q);
	uv_run(&loop, UV_RUN_DEFAULT);
	xc_free(c.ref);
	assert_int_equal(uv_loop_close(&loop), 0);
}

/* A payload the cipher refuses: it and those after it never come back. */
static void
test_queue_fail(void **state)
{
	struct ctx	 c;
	uv_loop_t	 loop;
	struct obuf	*b;

	(void)state;
	memset(&c, 0, sizeof(c));
	uv_loop_init(&loop);
	c.ref = mkaead();
	assert_non_null(c.q = sealq_new(&loop, mkaead(), on_sealed, &c));
	assert_int_equal(sealq_push(c.q, mkbuf(1, QN, AEAD_TAG_LEN, 0)), 0);
	c.pushed = 1;
	/* Not ours: a length field shorter than the tag. */
	b = mkbuf(1, 0, 0, 0);
	assert_int_equal(sealq_push(c.q, b), 0);
	assert_int_equal(sealq_push(c.q, mkbuf(1, QN, AEAD_TAG_LEN, 2)), 0);
	uv_run(&loop, UV_RUN_DEFAULT);
	/* The first is handed back, the failure told once, no more. */
	assert_int_equal(c.got, 1);
	assert_int_equal(c.fails, 1);
	sealq_close(c.q);
	uv_run(&loop, UV_RUN_DEFAULT);
	xc_free(c.ref);
	assert_int_equal(uv_loop_close(&loop), 0);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_seal_run),
		cmocka_unit_test(test_queue_order),
		cmocka_unit_test(test_queue_close),
		cmocka_unit_test(test_queue_fail),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
