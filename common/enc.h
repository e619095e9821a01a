#ifndef ENC_H
#define ENC_H

/*
 * kptunnel's payload cipher (wire spec 4): AES-256-CFB128, key
 * SHA-256(encPass), fixed IV 00..0f, one continuous stream per connection
 * and direction covering every NORMAL payload, with -encCount semantics:
 * negative = encrypt all, 0 = never, N > 0 = the first N + 1 payloads
 * (kptunnel's off-by-one), including zero-length ones.
 */

#include <stddef.h>
#include <stdint.h>

struct enc;

/*
 * New state for one direction of one connection; decrypt selects the
 * direction.  enc_count 0 gives a state that never transforms.
 * Returns NULL with err on failure.
 */
struct enc	*enc_new(const char *encpass, int enc_count, int decrypt,
		    char *err);
void		 enc_free(struct enc *e);

/*
 * 1 while enc_packet still transforms payloads; 0 for a state made with
 * enc_count 0, and once the first encCount + 1 payloads have passed.
 */
int		 enc_active(const struct enc *e);

/*
 * Transforms one NORMAL payload in place (call once per packet, also for
 * zero-length ones, which count but do not advance the stream).
 */
void		 enc_packet(struct enc *e, uint8_t *p, size_t n);

#endif
