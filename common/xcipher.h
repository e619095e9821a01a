#ifndef XCIPHER_H
#define XCIPHER_H

/*
 * The payload cipher of one direction of one transport, whichever mode the
 * handshake chose: kptunnel's CFB (enc.c: in place, no overhead, never
 * fails) or the AEAD mode between tunneld peers (aead.c: a tag follows
 * the payload, and a forged payload is refused).  Callers seal or open
 * every NORMAL payload through it (and, when it has an overhead, every
 * SYNC: an empty payload), so the mode is decided in one place.
 */

#include <stddef.h>
#include <stdint.h>

#include "aead.h"

struct xcipher;

/* kptunnel's cipher (enc_new's arguments); NULL with err. */
struct xcipher	*xc_cfb_new(const char *encpass, int enc_count, int decrypt,
		    char *err);
/* The AEAD mode under key; NULL with err. */
struct xcipher	*xc_aead_new(const uint8_t key[AEAD_KEY_LEN], char *err);
void		 xc_free(struct xcipher *x);

/* Bytes a sealed payload adds: 0 for CFB, AEAD_TAG_LEN for the AEAD. */
size_t		 xc_overhead(const struct xcipher *x);

/*
 * 1 when sealing is slow enough to be worth a thread: kptunnel's CFB
 * while it transforms, serial at about 0.8 GB/s a core.  0 for the AEAD
 * (AES-NI GCM runs several GB/s a core: measured, handing its packets to
 * a thread and back cost more than sealing them) and for plain.
 */
int		 xc_slow(const struct xcipher *x);

/*
 * Seals in[0..n) into out[0..n + xc_overhead()); in == out seals in
 * place, any other overlap is not allowed.  The AEAD's tag covers
 * hdr[0..hlen) too (the packet's header, its length field counting the
 * overhead); CFB ignores it.  Sealing from a packet's copy straight into
 * the output buffer spares the AEAD a pass over the payload (CFB copies,
 * then transforms in place).
 * Returns 0, or -1 when the transport must end.
 */
int		 xc_seal_to(struct xcipher *x, const uint8_t *hdr,
		    size_t hlen, const uint8_t *in, uint8_t *out, size_t n);

/* xc_seal_to in place: p has xc_overhead() more bytes after n. */
int		 xc_seal(struct xcipher *x, const uint8_t *hdr, size_t hlen,
		    uint8_t *p, size_t n);

/*
 * Opens p[0..n), received with header hdr[0..hlen), in place into
 * p[0..*len).  Returns 0, or -1 when the
 * payload is not authentic: the transport must end and nothing of it be
 * used.
 */
int		 xc_open(struct xcipher *x, const uint8_t *hdr, size_t hlen,
		    uint8_t *p, size_t n, size_t *len);

#endif
