/*
 * Unit tests for common/aead.c and common/xcipher.c: the key schedule and
 * the marks against values computed independently (Python's cryptography
 * package, from docs/protocol.md), seal/open round trips, forgeries
 * refused, and the nonce counter.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "aead.h"
#include "err.h"
#include "xcipher.h"

#define CH	"bVtCyE5sdXiHA321L84+r9n+S2ydtAeiZbir/f/HIVA="
#define HINT	"t5ZJ/A4/g4lwEpQFO2BaNOGtPlR7nfkCZHQ1JfP7Y90="

static void
unhex(const char *h, uint8_t *out, size_t n)
{
	size_t		i;
	unsigned int	v;

	assert_int_equal(strlen(h), 2 * n);
	for (i = 0; i < n; i++) {
		assert_int_equal(sscanf(h + 2 * i, "%2x", &v), 1);
		out[i] = (uint8_t)v;
	}
}

static void
test_keys(void **state)
{
	uint8_t		c2s[32], s2c[32], want[32];
	char		err[ERR_LEN];
	const uint32_t	win[2] = { 256, 59 }, win2[2] = { 256, 60 };

	(void)state;
	/* Python's cryptography, HKDF as docs/protocol.md writes it. */
	assert_int_equal(aead_keys("p", "e", CH, HINT, win, c2s, s2c, err), 0);
	unhex("b1f37e15137b9558ecb46b5620cab8e4f58bda561905e6c5c5301c06443e40c5",
	    want, 32);
	assert_memory_equal(c2s, want, 32);
	unhex("900be1d2c68d816a8a4cd09d6af569764b95bd6d738dde8628af1409b8f64be2",
	    want, 32);
	assert_memory_equal(s2c, want, 32);
	/* Another Hint, another pass, another window: other keys. */
	assert_int_equal(aead_keys("p", "e", CH, CH, win, c2s, s2c, err), 0);
	assert_memory_not_equal(c2s, want, 32);
	assert_int_equal(aead_keys("q", "e", CH, HINT, win, c2s, s2c, err), 0);
	assert_memory_not_equal(s2c, want, 32);
	assert_int_equal(aead_keys("p", "e", CH, HINT, win2, c2s, s2c, err), 0);
	assert_memory_not_equal(s2c, want, 32);
}

static void
test_seal_vector(void **state)
{
	uint8_t		 key[32], p[64], want[29];
	struct aead	*a;
	char		 err[ERR_LEN];

	(void)state;
	unhex("d7c06f182950da3fb1f4cab38c3d550f96f8222695061de86807e7dfdee281c8",
	    key, 32);
	assert_non_null(a = aead_new(key, err));
	memcpy(p, "hello, tunnel", 13);
	assert_int_equal(aead_seal(a, NULL, 0, p, 13), 0);
	unhex("f338d349728daec095aeb0272e5f84f58e2d8f6427d7dcc52207e24d55",
	    want, 29);
	assert_memory_equal(p, want, 29);
	/* The second packet: nonce 1. */
	memcpy(p, "hello, tunnel", 13);
	assert_int_equal(aead_seal(a, NULL, 0, p, 13), 0);
	unhex("29d277e417092eb640c6b0bdc3b05fcedad1ebac95273442cc8441263b",
	    want, 29);
	assert_memory_equal(p, want, 29);
	aead_free(a);
}

static void
test_round_trip_and_flip(void **state)
{
	uint8_t		 key[32], p[1000 + AEAD_TAG_LEN], orig[1000];
	struct aead	*s, *o;
	char		 err[ERR_LEN];
	size_t		 n, len, bit;

	(void)state;
	memset(key, 7, sizeof(key));
	for (n = 0; n < sizeof(orig); n++)
		orig[n] = (uint8_t)(n * 31);
	/* Every bit of a sealed payload and its tag is covered. */
	for (bit = 0; bit < 8 * (100 + AEAD_TAG_LEN); bit += 7) {
		assert_non_null(s = aead_new(key, err));
		assert_non_null(o = aead_new(key, err));
		memcpy(p, orig, 100);
		assert_int_equal(aead_seal(s, NULL, 0, p, 100), 0);
		p[bit / 8] ^= 1 << (bit % 8);
		assert_int_equal(aead_open(o, NULL, 0, p, 100 + AEAD_TAG_LEN, &len), -1);
		aead_free(s);
		aead_free(o);
	}
	/* Round trips of several sizes, zero included, in order. */
	assert_non_null(s = aead_new(key, err));
	assert_non_null(o = aead_new(key, err));
	for (n = 0; n <= sizeof(orig); n += 111) {
		memcpy(p, orig, n);
		assert_int_equal(aead_seal(s, NULL, 0, p, n), 0);
		assert_int_equal(aead_open(o, NULL, 0, p, n + AEAD_TAG_LEN, &len), 0);
		assert_int_equal(len, n);
		assert_memory_equal(p, orig, n);
	}
	/* The header is covered: another CITI id is refused. */
	memcpy(p, orig, 10);
	assert_int_equal(aead_seal(s, (const uint8_t *)"\0\0\0\0\1", 5, p,
	    10), 0);
	assert_int_equal(aead_open(o, (const uint8_t *)"\0\0\0\0\2", 5, p,
	    10 + AEAD_TAG_LEN, &len), -1);
	memcpy(p, orig, 10);
	assert_int_equal(aead_seal(s, (const uint8_t *)"\0\0\0\0\1", 5, p,
	    10), 0);
	assert_int_equal(aead_open(o, (const uint8_t *)"\0\0\0\0\1", 5, p,
	    10 + AEAD_TAG_LEN, &len), 0);
	/* A replayed packet (its nonce is spent), and a short one. */
	memcpy(p, orig, 10);
	assert_int_equal(aead_seal(s, NULL, 0, p, 10), 0);
	memcpy(orig + 500, p, 10 + AEAD_TAG_LEN);
	assert_int_equal(aead_open(o, NULL, 0, p, 10 + AEAD_TAG_LEN, &len), 0);
	memcpy(p, orig + 500, 10 + AEAD_TAG_LEN);
	assert_int_equal(aead_open(o, NULL, 0, p, 10 + AEAD_TAG_LEN, &len), -1);
	assert_int_equal(aead_open(o, NULL, 0, p, AEAD_TAG_LEN - 1, &len), -1);
	aead_free(s);
	aead_free(o);
}

/* Same plaintext, same key: no two sealed payloads are alike. */
static void
test_nonce_unique(void **state)
{
	enum { N = 4096 };
	uint8_t		 key[32], *all, p[16 + AEAD_TAG_LEN];
	struct aead	*a;
	char		 err[ERR_LEN];
	size_t		 i, j;

	(void)state;
	memset(key, 9, sizeof(key));
	assert_non_null(all = malloc((size_t)N * 16));
	assert_non_null(a = aead_new(key, err));
	for (i = 0; i < N; i++) {
		memset(p, 0, 16);
		assert_int_equal(aead_seal(a, NULL, 0, p, 16), 0);
		memcpy(all + i * 16, p, 16);
	}
	/* A repeated nonce would repeat the keystream of a zero block. */
	for (i = 0; i < N; i++)
		for (j = i + 1; j < N; j++)
			assert_memory_not_equal(all + i * 16, all + j * 16, 16);
	aead_free(a);
	free(all);
}

static void
test_marks(void **state)
{
	char	m[45], err[ERR_LEN];

	(void)state;
	/* Values made by the independent implementation. */
	assert_true(aead_mark_check("p", "e", AEAD_MARK_CHALLENGE, "",
	    "AAECAwQFBgcICQoLDA0OD1xnyaGPwG3leztkG1WrQR8="));
	assert_true(aead_mark_check("p", "e", AEAD_MARK_HINT, CH,
	    "AAECAwQFBgcICQoLDA0OD1qD6Bnw+WC9jaOOylUdzSk="));
	/* The other label, context, secret, or one character changed. */
	assert_false(aead_mark_check("p", "e", AEAD_MARK_HINT, "",
	    "AAECAwQFBgcICQoLDA0OD1xnyaGPwG3leztkG1WrQR8="));
	assert_false(aead_mark_check("p", "e", AEAD_MARK_HINT, HINT,
	    "AAECAwQFBgcICQoLDA0OD1qD6Bnw+WC9jaOOylUdzSk="));
	assert_false(aead_mark_check("p", "f", AEAD_MARK_CHALLENGE, "",
	    "AAECAwQFBgcICQoLDA0OD1xnyaGPwG3leztkG1WrQR8="));
	assert_false(aead_mark_check("p", "e", AEAD_MARK_CHALLENGE, "",
	    "AAECAwQFBgcICQoLDA0OD1xnyaGPwG3leztkG1WrQS8="));
	/* Unused low bits set: the same bytes, but not canonical. */
	assert_false(aead_mark_check("p", "e", AEAD_MARK_CHALLENGE, "",
	    "AAECAwQFBgcICQoLDA0OD1xnyaGPwG3leztkG1WrQR9="));
	/* Go's unmarked nonces, and other shapes. */
	assert_false(aead_mark_check("p", "e", AEAD_MARK_CHALLENGE, "", CH));
	assert_false(aead_mark_check("p", "e", AEAD_MARK_CHALLENGE, "", ""));
	assert_false(aead_mark_check("p", "e", AEAD_MARK_CHALLENGE, "",
	    "not base64 at all, but forty-four chars long"));
	/* Fresh ones: Go's shape, and they check. */
	assert_int_equal(aead_mark_new("p", "e", AEAD_MARK_HINT, CH, m, err), 0);
	assert_int_equal(strlen(m), 44);
	assert_int_equal(m[43], '=');
	assert_true(aead_mark_check("p", "e", AEAD_MARK_HINT, CH, m));
}

/*
 * Sealing from a separate copy gives the bytes sealing in place gives,
 * with the header as additional data, and leaves the copy as it was; for
 * CFB too (copy, then the stream).
 */
static void
test_seal_to(void **state)
{
	static const uint8_t hdr[7] = { 0, 0x80, 0, 0, 1, 0x01, 0x10 };
	uint8_t		 key[32], src[256], in[256 + AEAD_TAG_LEN];
	uint8_t		 out[256 + AEAD_TAG_LEN];
	struct xcipher	*a, *b, *c, *d;
	char		 err[ERR_LEN];
	size_t		 i, n;

	(void)state;
	memset(key, 9, sizeof(key));
	for (i = 0; i < sizeof(src); i++)
		src[i] = (uint8_t)(i * 7 + 1);
	assert_non_null(a = xc_aead_new(key, err));
	assert_non_null(b = xc_aead_new(key, err));
	assert_non_null(c = xc_cfb_new("e", -1, 0, err));
	assert_non_null(d = xc_cfb_new("e", -1, 0, err));
	/* Odd lengths too: GCM's and CFB's partial blocks. */
	for (n = 0; n <= sizeof(src); n += 37) {
		memcpy(in, src, n);
		assert_int_equal(xc_seal(a, hdr, sizeof(hdr), in, n), 0);
		memset(out, 0xee, sizeof(out));
		assert_int_equal(xc_seal_to(b, hdr, sizeof(hdr), src, out, n),
		    0);
		assert_memory_equal(in, out, n + AEAD_TAG_LEN);
		memcpy(in, src, n);
		assert_int_equal(xc_seal(c, hdr, sizeof(hdr), in, n), 0);
		assert_int_equal(xc_seal_to(d, hdr, sizeof(hdr), src, out, n),
		    0);
		if (n > 0)
			assert_memory_equal(in, out, n);
	}
	for (i = 0; i < sizeof(src); i++)
		assert_int_equal(src[i], (uint8_t)(i * 7 + 1));
	xc_free(a);
	xc_free(b);
	xc_free(c);
	xc_free(d);
}

static void
test_xcipher(void **state)
{
	uint8_t		 key[32], p[32 + AEAD_TAG_LEN];
	struct xcipher	*s, *o, *c;
	char		 err[ERR_LEN];
	size_t		 len;

	(void)state;
	memset(key, 3, sizeof(key));
	assert_non_null(s = xc_aead_new(key, err));
	assert_non_null(o = xc_aead_new(key, err));
	assert_non_null(c = xc_cfb_new("e", -1, 0, err));
	assert_int_equal(xc_overhead(s), AEAD_TAG_LEN);
	assert_int_equal(xc_overhead(c), 0);
	memcpy(p, "0123456789abcdef0123456789abcdef", 32);
	assert_int_equal(xc_seal(s, NULL, 0, p, 32), 0);
	assert_int_equal(xc_open(o, NULL, 0, p, 32 + AEAD_TAG_LEN, &len), 0);
	assert_int_equal(len, 32);
	assert_memory_equal(p, "0123456789abcdef0123456789abcdef", 32);
	assert_int_equal(xc_seal(c, NULL, 0, p, 32), 0);
	assert_memory_not_equal(p, "0123456789abcdef0123456789abcdef", 32);
	xc_free(s);
	xc_free(o);
	xc_free(c);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keys),
		cmocka_unit_test(test_seal_vector),
		cmocka_unit_test(test_round_trip_and_flip),
		cmocka_unit_test(test_nonce_unique),
		cmocka_unit_test(test_marks),
		cmocka_unit_test(test_xcipher),
		cmocka_unit_test(test_seal_to),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
