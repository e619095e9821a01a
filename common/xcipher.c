/*
 * One interface over the two payload ciphers (xcipher.h), so that the
 * handshake and the session seal and open packets without knowing which
 * mode their transport runs.
 */

#include <stdlib.h>
#include <string.h>

#include "enc.h"
#include "err.h"
#include "xcipher.h"

struct xcipher {
	struct enc	*cfb;		/* exactly one of the two is set */
	struct aead	*aead;
};

struct xcipher *
xc_cfb_new(const char *encpass, int enc_count, int decrypt, char *err)
{
	struct xcipher *x;

	if ((x = calloc(1, sizeof(*x))) == NULL) {
		err_set(err, "out of memory");
		return NULL;
	}
	if ((x->cfb = enc_new(encpass, enc_count, decrypt, err)) == NULL) {
		free(x);
		return NULL;
	}
	return x;
}

struct xcipher *
xc_aead_new(const uint8_t key[AEAD_KEY_LEN], char *err)
{
	struct xcipher *x;

	if ((x = calloc(1, sizeof(*x))) == NULL) {
		err_set(err, "out of memory");
		return NULL;
	}
	if ((x->aead = aead_new(key, err)) == NULL) {
		free(x);
		return NULL;
	}
	return x;
}

void
xc_free(struct xcipher *x)
{
	if (x == NULL)
		return;
	enc_free(x->cfb);
	aead_free(x->aead);
	free(x);
}

size_t
xc_overhead(const struct xcipher *x)
{
	return x->aead != NULL ? AEAD_TAG_LEN : 0;
}

int
xc_slow(const struct xcipher *x)
{
	return x->aead == NULL && enc_active(x->cfb);
}

int
xc_seal_to(struct xcipher *x, const uint8_t *hdr, size_t hlen,
    const uint8_t *in, uint8_t *out, size_t n)
{
	if (x->aead != NULL)
		return aead_seal_to(x->aead, hdr, hlen, in, out, n);
	if (in != out)
		memcpy(out, in, n);
	enc_packet(x->cfb, out, n);
	return 0;
}

int
xc_seal(struct xcipher *x, const uint8_t *hdr, size_t hlen, uint8_t *p,
    size_t n)
{
	return xc_seal_to(x, hdr, hlen, p, p, n);
}

int
xc_open(struct xcipher *x, const uint8_t *hdr, size_t hlen, uint8_t *p,
    size_t n, size_t *len)
{
	if (x->aead != NULL)
		return aead_open(x->aead, hdr, hlen, p, n, len);
	/* CFB decryption is its encryption's twin: same call, in place. */
	enc_packet(x->cfb, p, n);
	*len = n;
	return 0;
}
