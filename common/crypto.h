#ifndef CRYPTO_H
#define CRYPTO_H

/* Hashes, base64 and randomness over OpenSSL, for the kptunnel handshake. */

#include <stddef.h>
#include <stdint.h>

#define CRYPTO_SHA256_LEN	32
#define CRYPTO_SHA512_LEN	64

void	crypto_sha256(const void *p, size_t n, uint8_t out[32]);

/* Standard padded base64 of p[0..n) into out (4 * ceil(n / 3) + 1 bytes). */
void	crypto_b64(const void *p, size_t n, char *out);

/*
 * Decodes in[0..len) of standard padded base64 (no white space) into
 * out, which holds 3 * len / 4 bytes; *n gets their number.  Returns
 * 0, or -1 if in is not base64.
 */
int	crypto_unb64(const char *in, size_t len, uint8_t *out, size_t *n);

/* Fills p with n bytes from the CSPRNG; -1 with err on failure. */
int	crypto_random(void *p, size_t n, char *err);

/* magic = SHA-256(pass || encPass), sent by the server (wire spec 4). */
void	crypto_magic(const char *pass, const char *encpass, uint8_t out[32]);

/*
 * Response = base64(SHA-512(challenge || pass || hint)), 88 chars + NUL
 * (wire spec 5.4).
 */
void	crypto_auth_response(const char *challenge, const char *pass,
	    const char *hint, char out[89]);

/* A fresh 44-char challenge or hint: base64 of 32 CSPRNG bytes. */
int	crypto_nonce(char out[45], char *err);

/* Constant-time comparison of two strings; 1 if equal. */
int	crypto_streq(const char *a, const char *b);

#endif
