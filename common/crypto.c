/*
 * Hashes, base64 and randomness for the kptunnel handshake (wire spec 4,
 * 5.3-5.5), all through OpenSSL.
 */

#include <limits.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "crypto.h"
#include "err.h"

#define CRYPTO_NONCE_RAW	32
#define CRYPTO_MAX_PARTS	3

/*
 * Largest chunk handed to an int-sized OpenSSL length: a multiple of 3 so
 * that base64 chunks concatenate without padding in the middle.
 */
#define CRYPTO_CHUNK		(3 * (INT_MAX / 4 / 3))

struct crypto_part {
	const void	*p;
	size_t		 n;
};

/*
 * Digest of the concatenation of parts into out (md_len bytes).  The API
 * promises no failure, yet EVP can fail on allocation: then out is filled
 * from the CSPRNG so that a failed computation never yields a value a peer
 * could predict and match (a magic or an auth response compared against it
 * just fails).
 */
static void
crypto_digest(const EVP_MD *md, const struct crypto_part *parts,
    size_t nparts, uint8_t *out, size_t md_len)
{
	EVP_MD_CTX	*ctx;
	unsigned int	 len = 0;
	size_t		 i;
	int		 ok = 0;

	if ((ctx = EVP_MD_CTX_new()) == NULL)
		goto done;
	if (EVP_DigestInit_ex(ctx, md, NULL) != 1)
		goto done;
	for (i = 0; i < nparts; i++)
		if (EVP_DigestUpdate(ctx, parts[i].p, parts[i].n) != 1)
			goto done;
	if (EVP_DigestFinal_ex(ctx, out, &len) != 1 || len != md_len)
		goto done;
	ok = 1;
done:
	EVP_MD_CTX_free(ctx);
	if (!ok) {
		ERR_clear_error();
		if (crypto_random(out, md_len, NULL) == -1)
			memset(out, 0xa5, md_len);
	}
}

void
crypto_sha256(const void *p, size_t n, uint8_t out[32])
{
	struct crypto_part part = { p, n };

	crypto_digest(EVP_sha256(), &part, 1, out, CRYPTO_SHA256_LEN);
}

void
crypto_b64(const void *p, size_t n, char *out)
{
	const unsigned char	*in = p;
	size_t			 chunk;
	int			 w;

	/* EVP_EncodeBlock takes an int and NUL-terminates: feed it chunks. */
	out[0] = '\0';
	while (n > 0) {
		chunk = n > CRYPTO_CHUNK ? CRYPTO_CHUNK : n;
		w = EVP_EncodeBlock((unsigned char *)out, in, (int)chunk);
		out += w;
		in += chunk;
		n -= chunk;
	}
}

int
crypto_unb64(const char *in, size_t len, uint8_t *out, size_t *n)
{
	size_t	i, pad;
	int	w;

	*n = 0;
	if (len == 0)
		return 0;
	/* Whole groups of four, up to two '=' at the very end only. */
	if (len % 4 != 0 || len > INT32_MAX)
		return -1;
	pad = (in[len - 1] == '=') + (in[len - 1] == '=' && in[len - 2] == '=');
	for (i = 0; i < len - pad; i++)
		if (!(in[i] >= 'A' && in[i] <= 'Z') &&
		    !(in[i] >= 'a' && in[i] <= 'z') &&
		    !(in[i] >= '0' && in[i] <= '9') &&
		    in[i] != '+' && in[i] != '/')
			return -1;
	if ((w = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len)) <
	    0)
		return -1;
	/* EVP_DecodeBlock counts the padding as data. */
	w -= (int)pad;
	*n = (size_t)w;
	return 0;
}

int
crypto_random(void *p, size_t n, char *err)
{
	unsigned char	*b = p;
	unsigned long	 e;
	size_t		 chunk;
	char		 buf[128];

	while (n > 0) {
		chunk = n > INT_MAX ? INT_MAX : n;
		if (RAND_bytes(b, (int)chunk) != 1) {
			e = ERR_get_error();
			ERR_error_string_n(e, buf, sizeof(buf));
			ERR_clear_error();
			err_set(err, "RAND_bytes: %s", e ? buf : "failed");
			return -1;
		}
		b += chunk;
		n -= chunk;
	}
	return 0;
}

void
crypto_magic(const char *pass, const char *encpass, uint8_t out[32])
{
	struct crypto_part parts[2] = {
		{ pass, strlen(pass) },
		{ encpass, strlen(encpass) },
	};

	crypto_digest(EVP_sha256(), parts, 2, out, CRYPTO_SHA256_LEN);
}

void
crypto_auth_response(const char *challenge, const char *pass,
    const char *hint, char out[89])
{
	uint8_t			md[CRYPTO_SHA512_LEN];
	struct crypto_part	parts[CRYPTO_MAX_PARTS] = {
		{ challenge, strlen(challenge) },
		{ pass, strlen(pass) },
		{ hint, strlen(hint) },
	};

	crypto_digest(EVP_sha512(), parts, CRYPTO_MAX_PARTS, md,
	    sizeof(md));
	crypto_b64(md, sizeof(md), out);
	/* The digest is the response itself, but it is derived from pass. */
	OPENSSL_cleanse(md, sizeof(md));
}

int
crypto_nonce(char out[45], char *err)
{
	uint8_t	raw[CRYPTO_NONCE_RAW];

	if (crypto_random(raw, sizeof(raw), err) == -1) {
		out[0] = '\0';
		return -1;
	}
	crypto_b64(raw, sizeof(raw), out);
	OPENSSL_cleanse(raw, sizeof(raw));
	return 0;
}

/*
 * Only the contents are compared in constant time: the lengths of a
 * response or token are public, so a length mismatch returns at once.
 */
int
crypto_streq(const char *a, const char *b)
{
	size_t	la, lb;

	la = strlen(a);
	lb = strlen(b);
	if (la != lb)
		return 0;
	return CRYPTO_memcmp(a, b, la) == 0;
}
