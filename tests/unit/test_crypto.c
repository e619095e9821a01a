/*
 * Unit tests for common/crypto.c and common/enc.c against the wire spec's
 * test vectors (sections 4 and 5.4), NIST SP 800-38A and the Go captures.
 */

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>

#include "crypto.h"
#include "enc.h"
#include "err.h"

/*
 * The NORMAL payloads of tests/data/captures/kptunnel-ws-encrypted.json
 * (Go wsserver/wsclient, -pass p -encPass e, default encCount), in order
 * per direction, de-framed; "" is a zero-length payload.
 */
static const char *const cap_s2c[] = {
	"0068aa279aba4f8b888ed85e8ab7e0aebe42cadcf1bceefb87742ac2eda5f390",
	"82eb22098380ce378d2c9cb4573e9ac3142fe5029b89dcca82d1e3058c60497d"
	"aee3bbd9f704e4975668caecb26e794ce6ab29546c23e972030a2ff52bc9ad46"
	"300db1cb3b27d0458cb1b105317457ca385f8daf3f553abb60d75f",
	"86d017ccbdecc83c69c00dbd5089406ac0d6ad5d9445ef25f413017546c95205"
	"fb742e1840bcff575d87eb205c9d9f209d59e724c0c2cbe0fe20afd138ad7478"
	"8e8911bdf3ff20cfc03c9b28ff49f9e05da578b976cbc57c570b2b2696a2a3d5"
	"998e0e",
	"56c83cde8b95eae22ffcbb3c99f3a281aec5848df9cdf359861bfc35f4e26b4b"
	"2b8252eb8db5a605ebb119713ac1d0a48dde695c",
	"",
	"1b547a8ceda867745f6dbe6a3632ffec64d4ec7b23678afa6ab5bb30de5e75f7"
	"ceb844625697d42f61a53ea7ced45baf9fe489c1",
	"4c8967ea2ebc04cb6650015b40f03d",
	"",
};
static const char *const cap_c2s[] = {
	"b6bc63674dddc2b2a837f20cb13d793ad4e731084b0171a5898810c33cfad664"
	"f838d6962d86f88970b43dc8b0c5c5fdceddf76171491eeb59e957e5b3112bb4"
	"fa9124952d07581f4130c63adfbd27baf41dc86e12be4145407e2567db6d29a4"
	"b9306c810fb8684be66a0f3a2404f061aaf89b65e0d39f9efca7c3af9f928958"
	"3d7ac6610bb69ceec612e1d0b2b177fddba8e34de8ca759c38c6cebc91385002"
	"56bb278841636d9c1099cf443729c7e895050eeeab0f87dad7ced93deb20b942"
	"69173bc7410d666f66675a8f3318047077d41858059465f25dd6cd2e4d1cb078"
	"0b50699618416ae98df1196b486297b9bb0c19dfefbd697b9c436c0a7f44bdc6"
	"4900c46ce8a631b80d2423dc8f4cafba3d4887614afe1a19a1e396bb15301e13"
	"9cd45b3764380afe5dcf6ed65f14281a4d016ba1ff248e9231df2d9e4f271b62"
	"1cbcce8c636aad89b5985fb09e413778011e6f693eb5817cb401c19519b10f4d"
	"41f4c88421b1aafd3e4e752738eda89c7e2769db2c0e214b376e0fe22426d5f8"
	"77a5c1c442d0e73ce740ca",
	"aae6704407f5836b918611688c6c3911dfb7475c5ac793be9defaffa4b225e15"
	"79a811cfab736a2e477a570c8886cad5d319f0e5f2d419222feb19442a5de259"
	"4afeec30d68a34d4dd17a7aac06aa8519c4b6c8013f130ad23eb2f",
	"",
	"c0035e7df800969d1b230226a75c0e566402c56d725a4961d4fe436f07db18b3"
	"2d2d8cb978a950df21d9acd710d3c210d76a920b31b27de7c5b2ebea9a3dc8f8"
	"9566461336db98362992d6cd815f55cd8e8315ba361323486177d3",
	"0bfe9ba684916aa7efbca80b0aa19b",
	"",
};

#define NCAP_S2C	(sizeof(cap_s2c) / sizeof(cap_s2c[0]))
#define NCAP_C2S	(sizeof(cap_c2s) / sizeof(cap_c2s[0]))

static const char magic_pe[] =
    "cdf69b25a417e25753dc086819d2cdfd3939f7d0e175136812e936284bebb4a4";
static const char magic_pe_enc[] =
    "0068aa279aba4f8b888ed85e8ab7e0aebe42cadcf1bceefb87742ac2eda5f390";

/* NIST SP 800-38A F.3.13, CFB128-AES256.Encrypt. */
static const char nist_key[] =
    "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4";
static const char nist_iv[] = "000102030405060708090a0b0c0d0e0f";
static const char nist_pt[] =
    "6bc1bee22e409f96e93d7e117393172a" "ae2d8a571e03ac9c9eb76fac45af8e51"
    "30c81c46a35ce411e5fbc1191a0a52ef" "f69f2445df4f9b17ad2b417be66c3710";
static const char nist_ct[] =
    "dc7e84bfda79164b7ecd8486985d3860" "39ffed143b28b1c832113c6331e5407b"
    "df10132415e54b92a13ed0a8267ae2f9" "75a385741ab9cef82031623d55b1e471";

static int
hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decodes lower-case hex into a fresh buffer (never NULL), length in *n. */
static uint8_t *
unhex(const char *s, size_t *n)
{
	size_t	 len = strlen(s), i;
	uint8_t	*b;

	assert_int_equal(len % 2, 0);
	b = malloc(len / 2 + 1);
	assert_non_null(b);
	for (i = 0; i < len / 2; i++) {
		assert_true(hexval(s[2 * i]) >= 0 && hexval(s[2 * i + 1]) >= 0);
		b[i] = hexval(s[2 * i]) << 4 | hexval(s[2 * i + 1]);
	}
	*n = len / 2;
	return b;
}

static void
assert_hex(const uint8_t *b, size_t n, const char *hex)
{
	uint8_t	*want;
	size_t	 wn;

	want = unhex(hex, &wn);
	assert_int_equal(n, wn);
	assert_memory_equal(b, want, n);
	free(want);
}

/* Deterministic filler so failures reproduce. */
static void
fill(uint8_t *b, size_t n, uint32_t seed)
{
	size_t	i;

	for (i = 0; i < n; i++) {
		seed = seed * 1103515245 + 12345;
		b[i] = seed >> 16;
	}
}

/*
 * Copies the JSON string value of "key" found in text into out.  Enough
 * for the captures, whose values contain no escapes.
 */
static void
json_str(const char *text, size_t n, const char *key, char *out,
    size_t outsz)
{
	char		 pat[64];
	const char	*p, *q, *end = text + n;
	size_t		 plen;

	snprintf(pat, sizeof(pat), "\"%s\":\"", key);
	plen = strlen(pat);
	for (p = text; p + plen <= end; p++)
		if (memcmp(p, pat, plen) == 0)
			break;
	assert_true(p + plen <= end);
	p += plen;
	for (q = p; q < end && *q != '"'; q++)
		;
	assert_true(q < end);
	assert_true((size_t)(q - p) < outsz);
	memcpy(out, p, q - p);
	out[q - p] = '\0';
}

static void
test_sha256(void **state)
{
	uint8_t	md[CRYPTO_SHA256_LEN];

	crypto_sha256("", 0, md);
	assert_hex(md, sizeof(md), "e3b0c44298fc1c149afbf4c8996fb924"
	    "27ae41e4649b934ca495991b7852b855");
	crypto_sha256("abc", 3, md);
	assert_hex(md, sizeof(md), "ba7816bf8f01cfea414140de5dae2223"
	    "b00361a396177a9cb410ff61f20015ad");
	/* Wire spec 4: the cipher key for encPass "e". */
	crypto_sha256("e", 1, md);
	assert_hex(md, 4, "3f79bb7b");
	assert_hex(md + 28, 4, "ca046dea");
}

static void
test_b64(void **state)
{
	static const struct {
		const char	*in, *out;
	} v[] = {
		{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" },
		{ "foo", "Zm9v" }, { "foob", "Zm9vYg==" },
		{ "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
	};
	static const uint8_t	hi[] = { 0xfb, 0xff, 0xfe };
	char			out[16];
	size_t			i;

	for (i = 0; i < sizeof(v) / sizeof(v[0]); i++) {
		memset(out, 'x', sizeof(out));
		crypto_b64(v[i].in, strlen(v[i].in), out);
		assert_string_equal(out, v[i].out);
	}
	/* Standard alphabet: '+' and '/', not the URL-safe one. */
	crypto_b64(hi, sizeof(hi), out);
	assert_string_equal(out, "+//+");
}

static void
test_magic(void **state)
{
	uint8_t	 m[CRYPTO_SHA256_LEN];

	crypto_magic("p", "e", m);
	assert_hex(m, sizeof(m), magic_pe);
	/* No separator: the split between pass and encPass does not matter. */
	crypto_magic("pe", "", m);
	assert_hex(m, sizeof(m), magic_pe);
}

static void
test_magic_encrypted(void **state)
{
	struct enc	*e;
	uint8_t		 m[CRYPTO_SHA256_LEN];
	char		 err[ERR_LEN];

	crypto_magic("p", "e", m);
	e = enc_new("e", -1, 0, err);
	assert_non_null(e);
	enc_packet(e, m, sizeof(m));
	assert_hex(m, sizeof(m), magic_pe_enc);
	enc_free(e);

	e = enc_new("e", -1, 1, err);
	assert_non_null(e);
	enc_packet(e, m, sizeof(m));
	assert_hex(m, sizeof(m), magic_pe);
	enc_free(e);
}

static void
test_auth_response(void **state)
{
	char	out[89];

	memset(out, 'x', sizeof(out));
	crypto_auth_response("bVtCyE5sdXiHA321L84+r9n+S2ydtAeiZbir/f/HIVA=",
	    "p", "t5ZJ/A4/g4lwEpQFO2BaNOGtPlR7nfkCZHQ1JfP7Y90=", out);
	assert_string_equal(out, "0IRc5tuGExdpesvvmX/Dv9jVZFzII7dVY6/53S5C/0pw"
	    "leOMTRPA3nuJuoVhWMmJam1dPxDgBLCPtzAbLl9xRw==");
	assert_int_equal(strlen(out), 88);
}

static void
test_nonce(void **state)
{
	char	a[45], b[45], err[ERR_LEN];
	size_t	i;

	assert_int_equal(crypto_nonce(a, err), 0);
	assert_int_equal(crypto_nonce(b, err), 0);
	assert_int_equal(strlen(a), 44);
	assert_int_equal(a[43], '=');
	for (i = 0; i < 43; i++)
		assert_non_null(strchr("ABCDEFGHIJKLMNOPQRSTUVWXYZ"
		    "abcdefghijklmnopqrstuvwxyz0123456789+/", a[i]));
	assert_string_not_equal(a, b);
}

static void
test_random(void **state)
{
	uint8_t	a[64], b[64];
	char	err[ERR_LEN];

	memset(a, 0, sizeof(a));
	memset(b, 0, sizeof(b));
	assert_int_equal(crypto_random(a, sizeof(a), err), 0);
	assert_int_equal(crypto_random(b, sizeof(b), err), 0);
	assert_memory_not_equal(a, b, sizeof(a));
	assert_int_equal(crypto_random(a, 0, err), 0);
}

static void
test_streq(void **state)
{
	assert_true(crypto_streq("", ""));
	assert_true(crypto_streq("abc", "abc"));
	assert_false(crypto_streq("abc", "abd"));
	assert_false(crypto_streq("abc", "ab"));
	assert_false(crypto_streq("ab", "abc"));
	assert_false(crypto_streq("", "a"));
	assert_false(crypto_streq("xbc", "abc"));
}

/*
 * encCount 3 transforms the first 4 payloads (kptunnel's off-by-one), a
 * zero-length one among them counting; the 5th and later pass as they are.
 */
static void
test_enc_count_off_by_one(void **state)
{
	static const size_t	 sizes[] = { 5, 0, 17, 3, 20, 9, 0, 4 };
	const size_t		 np = sizeof(sizes) / sizeof(sizes[0]);
	struct enc		*e, *ref, *d;
	uint8_t			 pt[32], ct[32], want[32];
	char			 err[ERR_LEN];
	size_t			 i;

	e = enc_new("e", 3, 0, err);
	ref = enc_new("e", -1, 0, err);
	d = enc_new("e", 3, 1, err);
	assert_non_null(e);
	assert_non_null(ref);
	assert_non_null(d);
	for (i = 0; i < np; i++) {
		fill(pt, sizes[i], i + 1);
		memcpy(ct, pt, sizes[i]);
		memcpy(want, pt, sizes[i]);
		enc_packet(e, ct, sizes[i]);
		if (i < 4) {
			enc_packet(ref, want, sizes[i]);
			if (sizes[i] > 0)
				assert_memory_not_equal(ct, pt, sizes[i]);
		}
		assert_memory_equal(ct, want, sizes[i]);
		/* The receiver mirrors the count. */
		enc_packet(d, ct, sizes[i]);
		assert_memory_equal(ct, pt, sizes[i]);
	}
	enc_free(e);
	enc_free(ref);
	enc_free(d);

	/* encCount 1: two payloads. */
	e = enc_new("e", 1, 0, err);
	assert_non_null(e);
	for (i = 0; i < 4; i++) {
		fill(pt, 16, 100 + i);
		memcpy(ct, pt, 16);
		enc_packet(e, ct, 16);
		if (i < 2)
			assert_memory_not_equal(ct, pt, 16);
		else
			assert_memory_equal(ct, pt, 16);
	}
	enc_free(e);
}

/* The first payload after enc_new with encCount 3 still starts at the IV. */
static void
test_enc_count_magic(void **state)
{
	struct enc	*e;
	uint8_t		 m[CRYPTO_SHA256_LEN];
	char		 err[ERR_LEN];

	e = enc_new("e", 3, 0, err);
	assert_non_null(e);
	crypto_magic("p", "e", m);
	enc_packet(e, m, sizeof(m));
	assert_hex(m, sizeof(m), magic_pe_enc);
	enc_free(e);
}

static void
test_enc_count_zero(void **state)
{
	struct enc	*e;
	uint8_t		 pt[100], b[100];
	char		 err[ERR_LEN];
	int		 i, dir;

	for (dir = 0; dir < 2; dir++) {
		e = enc_new("e", 0, dir, err);
		assert_non_null(e);
		for (i = 0; i < 50; i++) {
			fill(pt, sizeof(pt), i);
			memcpy(b, pt, sizeof(pt));
			enc_packet(e, b, i % 3 == 0 ? 0 : sizeof(b));
			assert_memory_equal(b, pt, sizeof(pt));
		}
		enc_free(e);
	}
	enc_free(NULL);
}

/*
 * One CFB stream across packets: any split of a message gives the bytes of
 * the message encrypted at once, including splits inside a block.
 */
static void
test_enc_stream_continuity(void **state)
{
	static const size_t	 split1[] = {
		1, 15, 16, 17, 0, 31, 32, 33, 2, 3, 64, 0, 5, 127, 128, 129,
		255, 256, 257, 1, 1, 1, 13, 100
	};
	static const size_t	 split2[] = { 7, 500, 1, 1000 };
	enum { MSGLEN = 2048 };
	struct enc		*e, *d;
	uint8_t			*msg, *whole, *parts;
	char			 err[ERR_LEN];
	size_t			 i, off, n;

	msg = malloc(MSGLEN);
	whole = malloc(MSGLEN);
	parts = malloc(MSGLEN);
	assert_non_null(msg);
	assert_non_null(whole);
	assert_non_null(parts);
	fill(msg, MSGLEN, 42);

	memcpy(whole, msg, MSGLEN);
	e = enc_new("secret", -1, 0, err);
	assert_non_null(e);
	enc_packet(e, whole, MSGLEN);
	enc_free(e);

	memcpy(parts, msg, MSGLEN);
	e = enc_new("secret", -1, 0, err);
	assert_non_null(e);
	for (off = 0, i = 0; off < MSGLEN; i++) {
		n = i < sizeof(split1) / sizeof(split1[0]) ? split1[i] : 77;
		if (n > MSGLEN - off)
			n = MSGLEN - off;
		enc_packet(e, parts + off, n);
		off += n;
	}
	enc_free(e);
	assert_memory_equal(parts, whole, MSGLEN);
	assert_memory_not_equal(parts, msg, MSGLEN);

	/* Decrypt with another split. */
	d = enc_new("secret", -1, 1, err);
	assert_non_null(d);
	for (off = 0, i = 0; off < MSGLEN; i++) {
		n = i < sizeof(split2) / sizeof(split2[0]) ? split2[i] : 1;
		if (n > MSGLEN - off)
			n = MSGLEN - off;
		enc_packet(d, parts + off, n);
		off += n;
	}
	enc_free(d);
	assert_memory_equal(parts, msg, MSGLEN);

	/* Another encPass gives another stream. */
	memcpy(parts, msg, MSGLEN);
	e = enc_new("secreT", -1, 0, err);
	assert_non_null(e);
	enc_packet(e, parts, MSGLEN);
	enc_free(e);
	assert_memory_not_equal(parts, whole, MSGLEN);

	free(msg);
	free(whole);
	free(parts);
}

/* Raw EVP AES-256-CFB128 over in[0..n) in pieces of step bytes. */
static void
evp_cfb(const uint8_t *key, const uint8_t *iv, int enc, uint8_t *b,
    size_t n, size_t step)
{
	EVP_CIPHER_CTX	*ctx;
	size_t		 off, k;
	int		 outl;

	ctx = EVP_CIPHER_CTX_new();
	assert_non_null(ctx);
	assert_int_equal(EVP_CipherInit_ex(ctx, EVP_aes_256_cfb128(), NULL,
	    key, iv, enc), 1);
	for (off = 0; off < n; off += k) {
		k = n - off < step ? n - off : step;
		assert_int_equal(EVP_CipherUpdate(ctx, b + off, &outl, b + off,
		    (int)k), 1);
		assert_int_equal((size_t)outl, k);
	}
	EVP_CIPHER_CTX_free(ctx);
}

/*
 * NIST SP 800-38A F.3.13/F.3.14, whose IV happens to be kptunnel's; also
 * incrementally, since enc relies on EVP carrying partial blocks over.
 */
static void
test_nist_cfb128_aes256(void **state)
{
	uint8_t	*key, *iv, *pt, *b;
	size_t	 kn, ivn, n, step;

	key = unhex(nist_key, &kn);
	iv = unhex(nist_iv, &ivn);
	pt = unhex(nist_pt, &n);
	assert_int_equal(kn, 32);
	assert_int_equal(ivn, 16);
	b = malloc(n);
	assert_non_null(b);
	for (step = 1; step <= n; step++) {
		memcpy(b, pt, n);
		evp_cfb(key, iv, 1, b, n, step);
		assert_hex(b, n, nist_ct);
		evp_cfb(key, iv, 0, b, n, 64 - step + 1);
		assert_memory_equal(b, pt, n);
	}
	free(key);
	free(iv);
	free(pt);
	free(b);
}

/*
 * enc derives its key as SHA-256(encPass) with IV 00..0f: check it against
 * raw EVP with that key, the link between the wire vector and NIST's.
 */
static void
test_enc_matches_evp(void **state)
{
	struct enc	*e;
	uint8_t		 key[CRYPTO_SHA256_LEN], a[300], b[300];
	uint8_t		*iv;
	size_t		 ivn;
	char		 err[ERR_LEN];

	crypto_sha256("e", 1, key);
	iv = unhex(nist_iv, &ivn);
	fill(a, sizeof(a), 7);
	memcpy(b, a, sizeof(a));
	evp_cfb(key, iv, 1, a, sizeof(a), sizeof(a));
	e = enc_new("e", -1, 0, err);
	assert_non_null(e);
	enc_packet(e, b, 100);
	enc_packet(e, b + 100, 0);
	enc_packet(e, b + 100, 200);
	enc_free(e);
	assert_memory_equal(a, b, sizeof(a));
	free(iv);
}

/*
 * Both directions against raw EVP CFB over a long stream cut into random
 * packets, from 0 bytes to more than the 64 KiB maximum: decryption builds
 * its keystream in runs of blocks, so every alignment and run length of a
 * packet against the block grid has to give EVP's stream.
 */
static void
test_enc_random_splits(void **state)
{
	enum { LEN = 600000 };
	struct enc	*d, *e;
	uint8_t		 key[CRYPTO_SHA256_LEN], *msg, *ct, *b, *iv;
	char		 err[ERR_LEN];
	uint32_t	 seed = 1;
	size_t		 off, n, ivn, round;

	msg = malloc(LEN);
	ct = malloc(LEN);
	b = malloc(LEN);
	assert_non_null(msg);
	assert_non_null(ct);
	assert_non_null(b);
	fill(msg, LEN, 99);
	crypto_sha256("x", 1, key);
	iv = unhex(nist_iv, &ivn);
	memcpy(ct, msg, LEN);
	evp_cfb(key, iv, 1, ct, LEN, LEN);

	for (round = 0; round < 4; round++) {
		d = enc_new("x", -1, 1, err);
		e = enc_new("x", -1, 0, err);
		assert_non_null(d);
		assert_non_null(e);
		memcpy(b, ct, LEN);
		for (off = 0; off < LEN; off += n) {
			seed = seed * 1103515245 + 12345;
			switch ((seed >> 16) % 4) {
			case 0:
				n = (seed >> 8) % 17;
				break;
			case 1:
				n = (seed >> 8) % 300;
				break;
			case 2:
				n = (seed >> 4) % 9000;
				break;
			default:
				n = (seed >> 4) % 70000;
				break;
			}
			if (n > LEN - off)
				n = LEN - off;
			enc_packet(d, b + off, n);
			assert_memory_equal(b + off, msg + off, n);
			enc_packet(e, b + off, n);
			assert_memory_equal(b + off, ct + off, n);
			/* Empty payloads in between change nothing. */
			enc_packet(d, b + off, 0);
			enc_packet(e, b + off, 0);
		}
		enc_free(d);
		enc_free(e);
	}
	free(iv);
	free(msg);
	free(ct);
	free(b);
}

/*
 * Decrypts one direction of the capture with a single state and returns
 * the NUL-terminated plaintexts; re-encrypting each must give Go's bytes.
 */
static uint8_t **
cap_decrypt(const char *const *cap, size_t ncap, size_t *lens)
{
	struct enc	*d, *e;
	uint8_t		**pt, *ct;
	char		 err[ERR_LEN];
	size_t		 i;

	pt = calloc(ncap, sizeof(*pt));
	assert_non_null(pt);
	d = enc_new("e", -1, 1, err);
	e = enc_new("e", -1, 0, err);
	assert_non_null(d);
	assert_non_null(e);
	for (i = 0; i < ncap; i++) {
		pt[i] = unhex(cap[i], &lens[i]);
		enc_packet(d, pt[i], lens[i]);
		ct = malloc(lens[i] + 1);
		assert_non_null(ct);
		memcpy(ct, pt[i], lens[i]);
		enc_packet(e, ct, lens[i]);
		assert_hex(ct, lens[i], cap[i]);
		free(ct);
		pt[i][lens[i]] = '\0';	/* unhex leaves room for it */
	}
	enc_free(d);
	enc_free(e);
	return pt;
}

static void
cap_free(uint8_t **pt, size_t n)
{
	size_t	i;

	for (i = 0; i < n; i++)
		free(pt[i]);
	free(pt);
}

/* Prefix given with its length: it may start with a NUL byte. */
static int
has_prefix_n(const uint8_t *b, size_t n, const char *prefix, size_t pl)
{
	return n >= pl && memcmp(b, prefix, pl) == 0;
}

#define has_prefix(b, n, lit)	has_prefix_n(b, n, lit, sizeof(lit) - 1)

#define CTRL_RESP \
	"\x01{\"Result\":true,\"Mess\":\"\\u003cnil\\u003e\",\"CitiId\":"

static void
test_capture_encrypted(void **state)
{
	uint8_t			**s2c, **c2s, magic[CRYPTO_SHA256_LEN];
	size_t			 sl[NCAP_S2C], cl[NCAP_C2S];
	char			 challenge[128], response[128], hint[128];
	char			 want[89];

	s2c = cap_decrypt(cap_s2c, NCAP_S2C, sl);
	c2s = cap_decrypt(cap_c2s, NCAP_C2S, cl);

	/* Server: magic, AuthChallenge, AuthResult, then CITI traffic. */
	crypto_magic("p", "e", magic);
	assert_int_equal(sl[0], sizeof(magic));
	assert_memory_equal(s2c[0], magic, sizeof(magic));
	assert_true(has_prefix(s2c[1], sl[1], "{\"Ver\":\"1.00\""));
	json_str((char *)s2c[1], sl[1], "Challenge", challenge,
	    sizeof(challenge));
	assert_int_equal(strlen(challenge), 44);
	assert_true(has_prefix(s2c[2], sl[2], "{\"Result\":\"ok\""));
	assert_true(has_prefix(s2c[3], sl[3], CTRL_RESP));
	assert_int_equal(sl[4], 0);
	assert_true(has_prefix(s2c[5], sl[5], CTRL_RESP));
	assert_int_equal(sl[6], 15);
	assert_memory_equal(s2c[6], "hello kptunnel\n", 15);
	assert_int_equal(sl[7], 0);

	/* Client: AuthResponse answering that challenge with pass "p". */
	assert_true(has_prefix(c2s[0], cl[0], "{\"Response\":\""));
	json_str((char *)c2s[0], cl[0], "Response", response,
	    sizeof(response));
	json_str((char *)c2s[0], cl[0], "Hint", hint, sizeof(hint));
	crypto_auth_response(challenge, "p", hint, want);
	assert_string_equal(response, want);
	assert_true(crypto_streq(response, want));
	crypto_auth_response(challenge, "q", hint, want);
	assert_false(crypto_streq(response, want));
	/* CTRL_HEADER for CITI 1, its close, CTRL_HEADER for CITI 2. */
	assert_true(has_prefix(c2s[1], cl[1], "\x00{\"HostInfo\":"));
	assert_int_equal(cl[2], 0);
	assert_true(has_prefix(c2s[3], cl[3], "\x00{\"HostInfo\":"));
	assert_int_equal(cl[4], 15);
	assert_memory_equal(c2s[4], "hello kptunnel\n", 15);

	cap_free(s2c, NCAP_S2C);
	cap_free(c2s, NCAP_C2S);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_sha256),
		cmocka_unit_test(test_b64),
		cmocka_unit_test(test_magic),
		cmocka_unit_test(test_magic_encrypted),
		cmocka_unit_test(test_auth_response),
		cmocka_unit_test(test_nonce),
		cmocka_unit_test(test_random),
		cmocka_unit_test(test_streq),
		cmocka_unit_test(test_enc_count_off_by_one),
		cmocka_unit_test(test_enc_count_magic),
		cmocka_unit_test(test_enc_count_zero),
		cmocka_unit_test(test_enc_stream_continuity),
		cmocka_unit_test(test_nist_cfb128_aes256),
		cmocka_unit_test(test_enc_matches_evp),
		cmocka_unit_test(test_enc_random_splits),
		cmocka_unit_test(test_capture_encrypted),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
