/*
 * The AEAD mode between two tunneld peers (docs/protocol.md, "AEAD
 * extension").  kptunnel's CFB repeats one keystream in both directions
 * and on every connection and authenticates nothing; here every transport
 * and direction has its own key from HKDF over both peers' fresh
 * handshake bytes, and every payload is sealed with AES-256-GCM under the
 * count of payloads sent before it.  GCM packets are independent, and
 * EVP's AES-NI/CLMUL code runs at several GB/s on one core.
 */

#include <stdio.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>

#include "aead.h"
#include "crypto.h"
#include "err.h"

#define AEAD_LABEL	"tunneld-aead-v1"
#define AEAD_RAW_LEN	(AEAD_RAND_LEN + AEAD_MARK_LEN)

struct aead {
	EVP_CIPHER_CTX	*ctx;
	uint64_t	 ctr;		/* payloads sealed / opened so far */
	int		 spent;		/* the counter wrapped: no more */
};

/* "reason" from EVP's error queue, cleared. */
static void
aead_evp_err(char *err, const char *what)
{
	unsigned long	e = ERR_get_error();
	char		buf[128];

	ERR_error_string_n(e, buf, sizeof(buf));
	ERR_clear_error();
	err_set(err, "%s: %s", what, e ? buf : "failed");
}

/* HKDF-SHA256 (RFC 5869) of ikm into out[0..outlen). */
static int
aead_hkdf(const uint8_t *ikm, size_t ikmlen, const void *salt,
    size_t saltlen, const char *info, uint8_t *out, size_t outlen,
    char *err)
{
	EVP_KDF		*kdf;
	EVP_KDF_CTX	*kctx = NULL;
	OSSL_PARAM	 params[5], *p = params;
	int		 rc = -1;

	if ((kdf = EVP_KDF_fetch(NULL, "HKDF", NULL)) == NULL ||
	    (kctx = EVP_KDF_CTX_new(kdf)) == NULL) {
		aead_evp_err(err, "HKDF");
		goto done;
	}
	*p++ = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY,
	    (void *)ikm, ikmlen);
	/* An empty salt is RFC 5869's default; OpenSSL wants it absent. */
	if (saltlen > 0)
		*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT,
		    (void *)salt, saltlen);
	*p++ = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO,
	    (void *)info, strlen(info));
	*p = OSSL_PARAM_construct_end();
	if (EVP_KDF_derive(kctx, out, outlen, params) != 1) {
		aead_evp_err(err, "HKDF");
		goto done;
	}
	rc = 0;
done:
	EVP_KDF_CTX_free(kctx);
	EVP_KDF_free(kdf);
	return rc;
}

/*
 * IKM = pass || 0x00 || encPass, malloc'd (cleansed and freed by the
 * caller with *len): both secrets, so that knowing one is not enough.
 */
static uint8_t *
aead_ikm(const char *pass, const char *encpass, size_t *len)
{
	size_t	 lp, le;
	uint8_t	*b;

	pass = pass != NULL ? pass : "";
	encpass = encpass != NULL ? encpass : "";
	lp = strlen(pass);
	le = strlen(encpass);
	if ((b = OPENSSL_malloc(lp + 1 + le + 1)) == NULL)
		return NULL;
	memcpy(b, pass, lp);
	b[lp] = 0;
	memcpy(b + lp + 1, encpass, le);
	*len = lp + 1 + le;
	return b;
}

/* out = the mark of fresh for (which, ctx); 0 or -1 with err. */
static int
aead_mark(const char *pass, const char *encpass, int which, const char *ctx,
    const uint8_t fresh[AEAD_RAND_LEN], uint8_t out[AEAD_MARK_LEN],
    char *err)
{
	uint8_t		 kmark[32], mac[EVP_MAX_MD_SIZE], *ikm, *msg = NULL;
	const char	*label;
	unsigned int	 maclen;
	size_t		 ikmlen = 0, ll, lc, mlen;
	int		 rc = -1;

	if ((ikm = aead_ikm(pass, encpass, &ikmlen)) == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	if (aead_hkdf(ikm, ikmlen, NULL, 0, AEAD_LABEL " mark", kmark,
	    sizeof(kmark), err) == -1)
		goto done;
	label = which == AEAD_MARK_HINT ? AEAD_LABEL " hint" :
	    AEAD_LABEL " challenge";
	ll = strlen(label) + 1;		/* with its NUL: a separator */
	lc = strlen(ctx);
	mlen = ll + lc + AEAD_RAND_LEN;
	if ((msg = OPENSSL_malloc(mlen)) == NULL) {
		err_set(err, "out of memory");
		goto done;
	}
	memcpy(msg, label, ll);
	memcpy(msg + ll, ctx, lc);
	memcpy(msg + ll + lc, fresh, AEAD_RAND_LEN);
	if (HMAC(EVP_sha256(), kmark, sizeof(kmark), msg, mlen, mac,
	    &maclen) == NULL) {
		aead_evp_err(err, "HMAC");
		goto done;
	}
	memcpy(out, mac, AEAD_MARK_LEN);
	rc = 0;
done:
	OPENSSL_free(msg);
	OPENSSL_clear_free(ikm, ikmlen + 1);
	OPENSSL_cleanse(kmark, sizeof(kmark));
	return rc;
}

int
aead_mark_new(const char *pass, const char *encpass, int which,
    const char *ctx, char out[45], char *err)
{
	uint8_t raw[AEAD_RAW_LEN];

	out[0] = '\0';
	if (crypto_random(raw, AEAD_RAND_LEN, err) == -1 ||
	    aead_mark(pass, encpass, which, ctx, raw, raw + AEAD_RAND_LEN,
	    err) == -1)
		return -1;
	crypto_b64(raw, sizeof(raw), out);
	return 0;
}

int
aead_mark_check(const char *pass, const char *encpass, int which,
    const char *ctx, const char *s)
{
	uint8_t	raw[AEAD_RAW_LEN + 3], want[AEAD_MARK_LEN];
	char	canon[45];
	size_t	n, len = strlen(s);

	/* 44 chars decode to at most 33 bytes: raw has room. */
	if (len != 44 || crypto_unb64(s, len, raw, &n) == -1 ||
	    n != AEAD_RAW_LEN)
		return 0;
	/* Only the canonical spelling: one string, one meaning. */
	crypto_b64(raw, AEAD_RAW_LEN, canon);
	if (strcmp(canon, s) != 0)
		return 0;
	if (aead_mark(pass, encpass, which, ctx, raw, want, NULL) == -1)
		return 0;
	return CRYPTO_memcmp(want, raw + AEAD_RAND_LEN, AEAD_MARK_LEN) == 0;
}

int
aead_keys(const char *pass, const char *encpass, const char *challenge,
    const char *hint, const uint32_t win[2], uint8_t c2s[AEAD_KEY_LEN],
    uint8_t s2c[AEAD_KEY_LEN], char *err)
{
	uint8_t	*ikm, *salt = NULL;
	size_t	 ikmlen = 0, lc, lh, n, i;
	int	 rc = -1;

	lc = strlen(challenge);
	lh = strlen(hint);
	n = lc + lh + 8;
	if ((ikm = aead_ikm(pass, encpass, &ikmlen)) == NULL ||
	    (salt = OPENSSL_malloc(n)) == NULL) {
		err_set(err, "out of memory");
		goto done;
	}
	memcpy(salt, challenge, lc);
	memcpy(salt + lc, hint, lh);
	for (i = 0; i < 4; i++) {
		salt[lc + lh + i] = (uint8_t)(win[0] >> (24 - 8 * i));
		salt[lc + lh + 4 + i] = (uint8_t)(win[1] >> (24 - 8 * i));
	}
	if (aead_hkdf(ikm, ikmlen, salt, n, AEAD_LABEL " c2s", c2s,
	    AEAD_KEY_LEN, err) == -1 ||
	    aead_hkdf(ikm, ikmlen, salt, n, AEAD_LABEL " s2c", s2c,
	    AEAD_KEY_LEN, err) == -1)
		goto done;
	rc = 0;
done:
	OPENSSL_free(salt);
	if (ikm != NULL)
		OPENSSL_clear_free(ikm, ikmlen + 1);
	return rc;
}

struct aead *
aead_new(const uint8_t key[AEAD_KEY_LEN], char *err)
{
	struct aead *a;

	if ((a = OPENSSL_zalloc(sizeof(*a))) == NULL) {
		err_set(err, "out of memory");
		return NULL;
	}
	/* The key is set once; each packet only sets its nonce. */
	if ((a->ctx = EVP_CIPHER_CTX_new()) == NULL ||
	    EVP_CipherInit_ex(a->ctx, EVP_aes_256_gcm(), NULL, key, NULL,
	    -1) != 1) {
		aead_evp_err(err, "AES-256-GCM");
		aead_free(a);
		return NULL;
	}
	return a;
}

void
aead_free(struct aead *a)
{
	if (a == NULL)
		return;
	EVP_CIPHER_CTX_free(a->ctx);
	OPENSSL_clear_free(a, sizeof(*a));
}

/* The next nonce: 32 zero bits, then the counter big-endian. */
static int
aead_nonce(struct aead *a, uint8_t iv[AEAD_NONCE_LEN])
{
	uint64_t	c = a->ctr;
	int		i;

	if (a->spent)
		return -1;
	memset(iv, 0, 4);
	for (i = 11; i >= 4; i--) {
		iv[i] = c & 0xff;
		c >>= 8;
	}
	if (++a->ctr == 0)
		a->spent = 1;
	return 0;
}

int
aead_seal_to(struct aead *a, const uint8_t *aad, size_t aadlen,
    const uint8_t *in, uint8_t *out, size_t n)
{
	uint8_t	iv[AEAD_NONCE_LEN];
	int	outl;

	if (n > INT32_MAX || aadlen > INT32_MAX || aead_nonce(a, iv) == -1)
		return -1;
	if (EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, iv, 1) != 1 ||
	    (aadlen > 0 && EVP_CipherUpdate(a->ctx, NULL, &outl, aad,
	    (int)aadlen) != 1) ||
	    (n > 0 && EVP_CipherUpdate(a->ctx, out, &outl, in, (int)n) != 1) ||
	    EVP_CipherFinal_ex(a->ctx, out + n, &outl) != 1 ||
	    EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_GET_TAG, AEAD_TAG_LEN,
	    out + n) != 1) {
		ERR_clear_error();
		return -1;
	}
	return 0;
}

int
aead_seal(struct aead *a, const uint8_t *aad, size_t aadlen, uint8_t *p,
    size_t n)
{
	return aead_seal_to(a, aad, aadlen, p, p, n);
}

int
aead_open(struct aead *a, const uint8_t *aad, size_t aadlen, uint8_t *p,
    size_t n, size_t *len)
{
	uint8_t	iv[AEAD_NONCE_LEN];
	size_t	m;
	int	outl;

	*len = 0;
	/* Every payload received takes a counter value, even a bad one. */
	if (aead_nonce(a, iv) == -1 || n < AEAD_TAG_LEN || n > INT32_MAX ||
	    aadlen > INT32_MAX)
		return -1;
	m = n - AEAD_TAG_LEN;
	if (EVP_CipherInit_ex(a->ctx, NULL, NULL, NULL, iv, 0) != 1 ||
	    EVP_CIPHER_CTX_ctrl(a->ctx, EVP_CTRL_AEAD_SET_TAG, AEAD_TAG_LEN,
	    p + m) != 1 ||
	    (aadlen > 0 && EVP_CipherUpdate(a->ctx, NULL, &outl, aad,
	    (int)aadlen) != 1) ||
	    (m > 0 && EVP_CipherUpdate(a->ctx, p, &outl, p, (int)m) != 1) ||
	    EVP_CipherFinal_ex(a->ctx, p + m, &outl) != 1) {
		ERR_clear_error();
		/*
		 * The plaintext was written in place: wipe it, so a caller
		 * that ignored the failure would still see nothing forged.
		 */
		OPENSSL_cleanse(p, m);
		return -1;
	}
	*len = m;
	return 0;
}
