/*
 * Unit tests for tunneld/pkt.c: packet layouts (wire spec 3), incremental
 * parsing over arbitrary input splits, and the lack-offset reader (5.1).
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "pkt.h"

/* One expected packet of a test stream. */
struct exp {
	int		kind;
	uint32_t	citi;
	uint16_t	len;
	int64_t		packno;
	size_t		off;		/* of the packet in the stream */
};

/* A caller's view of what pkt_parse returned, payload copied. */
struct got {
	int		 kind;
	uint32_t	 citi;
	uint16_t	 len;
	int64_t		 packno;
	uint8_t		*payload;
};

#define MAXPKTS		32
#define CALLER_CAP	(PKT_NORMAL_HDR + PKT_MAX_PAYLOAD)

struct stream {
	uint8_t		*b;
	size_t		 len;
	struct exp	 e[MAXPKTS];
	size_t		 n;
};

static void
fill(uint8_t *b, size_t n, uint32_t seed)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		seed = seed * 1103515245 + 12345;
		b[i] = seed >> 16;
	}
}

static void
add_normal(struct stream *s, uint32_t citi, uint16_t len)
{
	struct exp	*e = &s->e[s->n++];

	e->kind = PKT_NORMAL;
	e->citi = citi;
	e->len = len;
	e->off = s->len;
	pkt_put_normal_hdr(s->b + s->len, citi, len);
	fill(s->b + s->len + PKT_NORMAL_HDR, len, citi ^ len);
	s->len += PKT_NORMAL_HDR + len;
}

static void
add_dummy(struct stream *s)
{
	struct exp	*e = &s->e[s->n++];

	e->kind = PKT_DUMMY;
	e->off = s->len;
	s->b[s->len++] = PKT_DUMMY;
}

static void
add_sync(struct stream *s, uint32_t citi, int64_t packno)
{
	struct exp	*e = &s->e[s->n++];

	e->kind = PKT_SYNC;
	e->citi = citi;
	e->packno = packno;
	e->off = s->len;
	pkt_put_sync(s->b + s->len, citi, packno);
	s->len += PKT_SYNC_LEN;
}

/* NORMAL of sizes 0, 1 and 65535, DUMMY and SYNC, mixed and adjacent. */
static void
stream_build(struct stream *s)
{
	memset(s, 0, sizeof(*s));
	s->b = malloc(4 * CALLER_CAP);
	assert_non_null(s->b);
	add_normal(s, 0, 0);
	add_dummy(s);
	add_normal(s, 1, 1);
	add_sync(s, 1, 29);
	add_normal(s, 0x80000001, PKT_MAX_PAYLOAD);
	add_dummy(s);
	add_dummy(s);
	add_normal(s, 2, 15);
	add_sync(s, 0xffffffff, -1);
	add_normal(s, 3, 0);
	add_normal(s, 0xffffffff, 300);
	add_sync(s, 0, INT64_MIN);
	add_normal(s, 4, PKT_MAX_PAYLOAD);
	add_sync(s, 7, INT64_MAX);
	add_dummy(s);
	assert_true(s->n <= MAXPKTS);
}

static void
assert_fields(const struct pkt *p, const struct exp *e)
{
	assert_int_equal(p->kind, e->kind);
	switch (e->kind) {
	case PKT_NORMAL:
		assert_int_equal(p->citi, e->citi);
		assert_int_equal(p->len, e->len);
		break;
	case PKT_SYNC:
		assert_int_equal(p->citi, e->citi);
		assert_true(p->packno == e->packno);
		break;
	}
}

/*
 * A caller that appends into one large buffer: the input seen so far is
 * the stream's first `have` bytes.  Parses what it can from *off on and
 * checks each packet, payload pointer included.
 */
static void
view_parse(const struct stream *s, size_t have, size_t *off, size_t *idx)
{
	struct pkt	p;
	char		err[ERR_LEN];
	ssize_t		r;

	for (;;) {
		r = pkt_parse(s->b + *off, have - *off, &p, err);
		assert_true(r >= 0);
		if (r == 0)
			return;
		assert_true(*idx < s->n);
		assert_int_equal(*off, s->e[*idx].off);
		assert_fields(&p, &s->e[*idx]);
		if (p.kind == PKT_NORMAL)
			assert_ptr_equal(p.payload,
			    s->b + *off + PKT_NORMAL_HDR);
		*off += r;
		(*idx)++;
	}
}

static void
test_split_every_boundary(void **state)
{
	struct stream	s;
	size_t		k, off, idx;

	stream_build(&s);
	for (k = 0; k <= s.len; k++) {
		off = idx = 0;
		view_parse(&s, k, &off, &idx);
		/* Nothing complete is held back, nothing partial returned. */
		assert_true(idx == s.n || s.e[idx].off == off);
		assert_true(idx == s.n || k < s.len);
		view_parse(&s, s.len, &off, &idx);
		assert_int_equal(idx, s.n);
		assert_int_equal(off, s.len);
	}
	free(s.b);
}

/*
 * A caller with a buffer of only PKT_NORMAL_HDR + PKT_MAX_PAYLOAD bytes
 * that compacts after each parse, fed in chunks; payloads are copied and
 * compared afterwards.  The header promises that buffer always suffices.
 */
static size_t
caller_feed(const struct stream *s, const size_t *chunks, size_t nchunks,
    struct got *got)
{
	uint8_t		*buf;
	struct pkt	 p;
	char		 err[ERR_LEN];
	size_t		 have = 0, in = 0, n = 0, c = 0, k, used;
	ssize_t		 r;

	buf = malloc(CALLER_CAP);
	assert_non_null(buf);
	while (in < s->len) {
		k = nchunks > 0 ? chunks[c++ % nchunks] : 1;
		if (k > s->len - in)
			k = s->len - in;
		if (k > CALLER_CAP - have)
			k = CALLER_CAP - have;
		/* A full buffer with no packet in it would be a deadlock. */
		assert_true(k > 0);
		memcpy(buf + have, s->b + in, k);
		have += k;
		in += k;
		used = 0;
		while ((r = pkt_parse(buf + used, have - used, &p,
		    err)) > 0) {
			assert_true(n < MAXPKTS);
			got[n].kind = p.kind;
			got[n].citi = p.citi;
			got[n].len = p.len;
			got[n].packno = p.packno;
			got[n].payload = NULL;
			if (p.kind == PKT_NORMAL) {
				assert_ptr_equal(p.payload,
				    buf + used + PKT_NORMAL_HDR);
				got[n].payload = malloc(p.len + 1);
				assert_non_null(got[n].payload);
				memcpy(got[n].payload, p.payload, p.len);
			}
			n++;
			used += r;
		}
		assert_int_equal(r, 0);
		memmove(buf, buf + used, have - used);
		have -= used;
	}
	assert_int_equal(have, 0);
	free(buf);
	return n;
}

static void
assert_got(const struct stream *s, struct got *got, size_t n)
{
	struct pkt	 p;
	size_t		 i;

	assert_int_equal(n, s->n);
	for (i = 0; i < n; i++) {
		memset(&p, 0, sizeof(p));
		p.kind = got[i].kind;
		p.citi = got[i].citi;
		p.len = got[i].len;
		p.packno = got[i].packno;
		assert_fields(&p, &s->e[i]);
		if (got[i].kind == PKT_NORMAL)
			assert_memory_equal(got[i].payload,
			    s->b + s->e[i].off + PKT_NORMAL_HDR, got[i].len);
		free(got[i].payload);
	}
}

static void
test_byte_by_byte(void **state)
{
	struct stream	s;
	struct got	got[MAXPKTS];
	size_t		n, one = 1;

	stream_build(&s);
	n = caller_feed(&s, &one, 1, got);
	assert_got(&s, got, n);
	free(s.b);
}

static void
test_chunked(void **state)
{
	static const size_t	 patterns[][4] = {
		{ 2, 2, 2, 2 }, { 7, 7, 7, 7 }, { 13, 1, 6, 100 },
		{ 65542, 1, 65542, 1 }, { 4096, 4096, 4096, 4096 },
		{ 65535, 3, 20, 5 }, { 70000, 70000, 70000, 70000 },
	};
	struct stream		 s;
	struct got		 got[MAXPKTS];
	size_t			 i, n;

	stream_build(&s);
	for (i = 0; i < sizeof(patterns) / sizeof(patterns[0]); i++) {
		n = caller_feed(&s, patterns[i], 4, got);
		assert_got(&s, got, n);
	}
	free(s.b);
}

static void
test_parse_normal(void **state)
{
	uint8_t		b[40];
	struct pkt	p;
	char		err[ERR_LEN];
	size_t		k;

	memcpy(b, "\x00\x00\x00\x00\x01\x00\x0fhello kptunnel\n\x01", 23);
	for (k = 0; k < 22; k++)
		assert_int_equal(pkt_parse(b, k, &p, err), 0);
	assert_int_equal(pkt_parse(b, 22, &p, err), 22);
	/* Trailing bytes belong to the next packet. */
	assert_int_equal(pkt_parse(b, 23, &p, err), 22);
	assert_int_equal(p.kind, PKT_NORMAL);
	assert_int_equal(p.citi, 1);
	assert_int_equal(p.len, 15);
	assert_ptr_equal(p.payload, b + PKT_NORMAL_HDR);
	assert_memory_equal(p.payload, "hello kptunnel\n", 15);

	/* Zero length: a CITI close, complete with the header alone. */
	memcpy(b, "\x00\x80\x00\x00\x01\x00\x00", 7);
	assert_int_equal(pkt_parse(b, 6, &p, err), 0);
	assert_int_equal(pkt_parse(b, 7, &p, err), 7);
	assert_int_equal(p.citi, 0x80000001);
	assert_int_equal(p.len, 0);

	/* The capture's first server packet header: citi 0, len 32. */
	memcpy(b, "\x00\x00\x00\x00\x00\x00\x20", 7);
	assert_int_equal(pkt_parse(b, 7, &p, err), 0);
	memset(b + 7, 0xcd, 32);
	assert_int_equal(pkt_parse(b, 38, &p, err), 0);
	assert_int_equal(pkt_parse(b, 39, &p, err), 39);
	assert_int_equal(p.citi, PKT_CITI_CTRL);
	assert_int_equal(p.len, 32);
}

static void
test_parse_normal_max(void **state)
{
	uint8_t		*b;
	struct pkt	 p;
	char		 err[ERR_LEN];
	size_t		 n = PKT_NORMAL_HDR + PKT_MAX_PAYLOAD;

	b = malloc(n);
	assert_non_null(b);
	memset(b, 0x5a, n);
	pkt_put_normal_hdr(b, 0xffffffff, PKT_MAX_PAYLOAD);
	assert_memory_equal(b, "\x00\xff\xff\xff\xff\xff\xff", 7);
	assert_int_equal(pkt_parse(b, n - 1, &p, err), 0);
	assert_int_equal(pkt_parse(b, n, &p, err), n);
	assert_int_equal(p.citi, 0xffffffff);
	assert_int_equal(p.len, PKT_MAX_PAYLOAD);
	free(b);
}

static void
test_parse_dummy(void **state)
{
	uint8_t		b[2] = { 0x01, 0x01 };
	struct pkt	p;
	char		err[ERR_LEN];

	assert_int_equal(pkt_parse(b, 0, &p, err), 0);
	assert_int_equal(pkt_parse(b, 1, &p, err), 1);
	assert_int_equal(p.kind, PKT_DUMMY);
	assert_int_equal(pkt_parse(b, 2, &p, err), 1);
	assert_null(p.payload);
}

static void
test_parse_sync(void **state)
{
	/* Wire spec 10: SYNC for CITI 1 after its 30th and 60th packet. */
	static const uint8_t	s29[] = {
		0x03, 0x00, 0x00, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1d,
	};
	static const uint8_t	s59[] = {
		0x03, 0x00, 0x00, 0x00, 0x01,
		0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x3b,
	};
	uint8_t			b[PKT_SYNC_LEN + 16];
	struct pkt		p;
	char			err[ERR_LEN];
	size_t			k;

	for (k = 0; k < PKT_SYNC_LEN; k++)
		assert_int_equal(pkt_parse((uint8_t *)s29, k, &p, err), 0);
	assert_int_equal(pkt_parse((uint8_t *)s29, sizeof(s29), &p, err),
	    PKT_SYNC_LEN);
	assert_int_equal(p.kind, PKT_SYNC);
	assert_int_equal(p.citi, 1);
	assert_true(p.packno == 29);
	assert_int_equal(pkt_parse((uint8_t *)s59, sizeof(s59), &p, err),
	    PKT_SYNC_LEN);
	assert_true(p.packno == 59);

	pkt_put_sync(b, 1, 29);
	assert_memory_equal(b, s29, sizeof(s29));

	/* packNo is an i64: the sign survives the round trip. */
	pkt_put_sync(b, 0x01020304, -2);
	assert_memory_equal(b, "\x03\x01\x02\x03\x04"
	    "\xff\xff\xff\xff\xff\xff\xff\xfe", PKT_SYNC_LEN);
	b[PKT_SYNC_LEN] = 0x01;
	assert_int_equal(pkt_parse(b, sizeof(b), &p, err), PKT_SYNC_LEN);
	assert_int_equal(p.citi, 0x01020304);
	assert_true(p.packno == -2);
	pkt_put_sync(b, 0, INT64_MIN);
	assert_int_equal(pkt_parse(b, PKT_SYNC_LEN, &p, err), PKT_SYNC_LEN);
	assert_true(p.packno == INT64_MIN);
	pkt_put_sync(b, 0, INT64_MAX);
	assert_int_equal(pkt_parse(b, PKT_SYNC_LEN, &p, err), PKT_SYNC_LEN);
	assert_true(p.packno == INT64_MAX);
	/* The AEAD mode's SYNC: whole only with its tag. */
	memset(b + PKT_SYNC_LEN, 0xaa, 16);
	assert_int_equal(pkt_parse_tagged(b, PKT_SYNC_LEN + 15, 16, &p, err),
	    0);
	assert_int_equal(pkt_parse_tagged(b, PKT_SYNC_LEN + 16, 16, &p, err),
	    PKT_SYNC_LEN + 16);
	assert_true(p.packno == INT64_MAX);
	assert_int_equal(p.len, 16);
	assert_ptr_equal(p.payload, b + PKT_SYNC_LEN);
}

static void
test_put_normal_hdr(void **state)
{
	uint8_t	b[PKT_NORMAL_HDR];

	pkt_put_normal_hdr(b, PKT_CITI_CTRL, 0x5b);
	assert_memory_equal(b, "\x00\x00\x00\x00\x00\x00\x5b", 7);
	pkt_put_normal_hdr(b, 0x80000001, 0x0102);
	assert_memory_equal(b, "\x00\x80\x00\x00\x01\x01\x02", 7);
}

static void
test_illegal_kind(void **state)
{
	static const uint8_t	kinds[] = { 0x02, 0x04, 0x05, 0x7f, 0x80,
	    0xff };
	uint8_t			b[PKT_SYNC_LEN + 8];
	struct pkt		p;
	char			err[ERR_LEN];
	size_t			i;

	for (i = 0; i < sizeof(kinds); i++) {
		memset(b, 0, sizeof(b));
		b[0] = kinds[i];
		err[0] = '\0';
		/* Known from the first byte: no need to wait for more. */
		assert_int_equal(pkt_parse(b, 1, &p, err), -1);
		assert_non_null(strstr(err, "illegal kind"));
		assert_int_equal(pkt_parse(b, sizeof(b), &p, err), -1);
		assert_int_equal(pkt_parse(b, sizeof(b), &p, NULL), -1);
	}
	b[0] = 0x02;
	pkt_parse(b, 1, &p, err);
	assert_string_equal(err, "illegal kind 0x02");
	b[0] = 0xff;
	pkt_parse(b, 1, &p, err);
	assert_string_equal(err, "illegal kind 0xff");
}

static void
test_lack_pattern(void **state)
{
	size_t	i;

	for (i = 0; i < PKT_LACK_LEN; i++)
		assert_int_equal(pkt_lack_pattern[i], i % 10);
}

/*
 * With offset bytes lost in front the reader sees pattern + offset: the
 * first 10 bytes give the offset, then 10 - offset more must continue.
 */
static void
test_lack_parse_offsets(void **state)
{
	uint8_t	b[PKT_LACK_LEN + 4];
	char	err[ERR_LEN];
	size_t	off, n, k;

	for (off = 0; off < 10; off++) {
		n = PKT_LACK_LEN - off;
		memcpy(b, pkt_lack_pattern + off, n);
		memcpy(b + n, "\x00\x00\x00\x00", 4);
		for (k = 0; k < n; k++)
			assert_int_equal(pkt_lack_parse(b, k, err), 0);
		assert_int_equal(pkt_lack_parse(b, n, err), n);
		/* What follows is the packet stream, not consumed. */
		assert_int_equal(pkt_lack_parse(b, n + 4, err), n);
	}

	/* Spelled out: offset 0 consumes 20, offset 3 consumes 17. */
	assert_int_equal(pkt_lack_parse(pkt_lack_pattern, PKT_LACK_LEN, err),
	    20);
	memcpy(b, "\x03\x04\x05\x06\x07\x08\x09\x00\x01\x02"
	    "\x03\x04\x05\x06\x07\x08\x09", 17);
	assert_int_equal(pkt_lack_parse(b, 16, err), 0);
	assert_int_equal(pkt_lack_parse(b, 17, err), 17);
	assert_int_equal(pkt_lack_parse(b, 20, err), 17);
}

static void
test_lack_parse_first_half_unchecked(void **state)
{
	uint8_t	b[PKT_LACK_LEN];
	char	err[ERR_LEN];

	/* Go looks only at the first byte of its first 10-byte read. */
	memcpy(b, pkt_lack_pattern, PKT_LACK_LEN);
	memset(b + 1, 0xee, 9);
	assert_int_equal(pkt_lack_parse(b, PKT_LACK_LEN, err), 20);
	b[0] = 5;
	memcpy(b + 10, "\x05\x06\x07\x08\x09", 5);
	assert_int_equal(pkt_lack_parse(b, 15, err), 15);
}

static void
test_lack_parse_bad(void **state)
{
	static const uint8_t	bad[] = { 10, 11, 0x10, 0x80, 0xff };
	uint8_t			b[PKT_LACK_LEN];
	char			err[ERR_LEN];
	size_t			i, j, k;

	/* Offset >= 10: judged once the first 10 bytes are in, as in Go. */
	for (i = 0; i < sizeof(bad); i++) {
		memcpy(b, pkt_lack_pattern, PKT_LACK_LEN);
		b[0] = bad[i];
		for (k = 0; k < 10; k++)
			assert_int_equal(pkt_lack_parse(b, k, err), 0);
		err[0] = '\0';
		assert_int_equal(pkt_lack_parse(b, 10, err), -1);
		assert_non_null(strstr(err, "offset"));
		assert_int_equal(pkt_lack_parse(b, PKT_LACK_LEN, NULL), -1);
	}

	/* A wrong byte anywhere in the second read. */
	for (j = 10; j < PKT_LACK_LEN; j++) {
		memcpy(b, pkt_lack_pattern, PKT_LACK_LEN);
		b[j] ^= 0x40;
		for (k = 0; k < PKT_LACK_LEN; k++)
			assert_int_equal(pkt_lack_parse(b, k, err), 0);
		err[0] = '\0';
		assert_int_equal(pkt_lack_parse(b, PKT_LACK_LEN, err), -1);
		assert_true(err[0] != '\0');
	}

	/* Offset 3 but the continuation restarts at 0. */
	memcpy(b, "\x03\x04\x05\x06\x07\x08\x09\x00\x01\x02"
	    "\x00\x01\x02\x03\x04\x05\x06", 17);
	assert_int_equal(pkt_lack_parse(b, 17, err), -1);
	/* Offset 3 with the last byte wrong. */
	memcpy(b, "\x03\x04\x05\x06\x07\x08\x09\x00\x01\x02"
	    "\x03\x04\x05\x06\x07\x08\x08", 17);
	assert_int_equal(pkt_lack_parse(b, 16, err), 0);
	assert_int_equal(pkt_lack_parse(b, 17, err), -1);
	/* A NORMAL packet where the pattern should be. */
	memcpy(b, "\x00\x00\x00\x00\x00\x00\x20\xcd\xf6\x9b"
	    "\x25\xa4\x17\xe2\x57\x53\xdc\x08\x68\x19", 20);
	assert_int_equal(pkt_lack_parse(b, 20, err), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_parse_normal),
		cmocka_unit_test(test_parse_normal_max),
		cmocka_unit_test(test_parse_dummy),
		cmocka_unit_test(test_parse_sync),
		cmocka_unit_test(test_put_normal_hdr),
		cmocka_unit_test(test_illegal_kind),
		cmocka_unit_test(test_split_every_boundary),
		cmocka_unit_test(test_byte_by_byte),
		cmocka_unit_test(test_chunked),
		cmocka_unit_test(test_lack_pattern),
		cmocka_unit_test(test_lack_parse_offsets),
		cmocka_unit_test(test_lack_parse_first_half_unchecked),
		cmocka_unit_test(test_lack_parse_bad),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
