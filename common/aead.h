#ifndef AEAD_H
#define AEAD_H

/*
 * The AEAD mode between two tunneld peers (docs/protocol.md, "AEAD
 * extension"): the marks that negotiate it inside kptunnel's Challenge and
 * Hint strings, the HKDF-SHA256 key schedule, and AES-256-GCM per packet
 * payload with the packet counter as nonce.
 */

#include <stddef.h>
#include <stdint.h>

#define AEAD_KEY_LEN	32
#define AEAD_TAG_LEN	16
#define AEAD_RAND_LEN	16	/* fresh bytes in a marked Challenge / Hint */
#define AEAD_MARK_LEN	16	/* HMAC bytes that follow them */
#define AEAD_NONCE_LEN	12

/* Which string a mark is made for: the server's Challenge or the Hint. */
#define AEAD_MARK_CHALLENGE	0
#define AEAD_MARK_HINT		1

struct aead;

/*
 * A 44-char marked string (kptunnel's nonce shape: base64 of 32 bytes)
 * into out[45]: 16 fresh bytes, then the first 16 bytes of
 * HMAC-SHA256(Kmark, label || ctx || fresh), Kmark derived from pass and
 * encPass.  ctx is "" for the Challenge and the Challenge for the Hint.
 * Returns 0, or -1 with err.
 */
int	aead_mark_new(const char *pass, const char *encpass, int which,
	    const char *ctx, char out[45], char *err);

/* 1 if s is a string aead_mark_new would make for (which, ctx), else 0. */
int	aead_mark_check(const char *pass, const char *encpass, int which,
	    const char *ctx, const char *s);

/*
 * The keys of one transport: HKDF-SHA256 with IKM = pass || 0x00 ||
 * encPass, salt = Challenge || Hint || win[0] || win[1] (the marked
 * strings as sent, then the client's and the server's announced windows
 * as 32-bit big-endian numbers, so that a window changed on the way fails
 * the first packet), info = "tunneld-aead-v1 c2s" / "tunneld-aead-v1
 * s2c".  Returns 0 or -1 with err.
 */
int	aead_keys(const char *pass, const char *encpass, const char *challenge,
	    const char *hint, const uint32_t win[2],
	    uint8_t c2s[AEAD_KEY_LEN], uint8_t s2c[AEAD_KEY_LEN], char *err);

/* One direction of one transport; the key is copied.  NULL with err. */
struct aead	*aead_new(const uint8_t key[AEAD_KEY_LEN], char *err);
void		 aead_free(struct aead *a);

/*
 * Encrypts in[0..n) into out[0..n) and appends the tag at out + n (the
 * caller has AEAD_TAG_LEN bytes there); in == out seals in place, any
 * other overlap is not allowed.  Sealing from the caller's copy straight
 * into its output buffer saves a pass over the payload.  The tag also
 * covers aad[0..aadlen) (the packet's header).  The nonce is the count of
 * payloads sealed so far (96-bit big-endian), so no nonce repeats under a
 * key.  Returns 0, or -1 (the counter is exhausted or EVP failed): the
 * transport must end.
 */
int		 aead_seal_to(struct aead *a, const uint8_t *aad,
		    size_t aadlen, const uint8_t *in, uint8_t *out, size_t n);

/* aead_seal_to in place: p[0..n) becomes ciphertext, the tag at p + n. */
int		 aead_seal(struct aead *a, const uint8_t *aad, size_t aadlen,
		    uint8_t *p, size_t n);

/*
 * Verifies and decrypts p[0..n) (ciphertext then tag, with aad) in place
 * under the next receive counter, which every call takes; *len gets the plaintext length.  Returns 0, or -1
 * when the payload is short or forged: nothing of it may be used.
 */
int		 aead_open(struct aead *a, const uint8_t *aad, size_t aadlen,
		    uint8_t *p, size_t n, size_t *len);

#endif
