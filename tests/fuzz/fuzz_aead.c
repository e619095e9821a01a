/*
 * libFuzzer target for what the AEAD mode reads from a peer: a Challenge
 * or Hint checked for its mark (aead_mark_check), and a sealed payload
 * (aead_open).  A fuzzer cannot forge a mark or a GCM tag, so both must
 * refuse; a payload sealed here must open back to itself.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "aead.h"
#include "err.h"

int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)	do { if (!(c)) __builtin_trap(); } while (0)

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const uint8_t	 key[AEAD_KEY_LEN] = { 1, 2, 3 };
	char			 s[65], err[ERR_LEN];
	struct aead		*a, *b;
	uint8_t			*p;
	size_t			 n, len;

	n = size < sizeof(s) - 1 ? size : sizeof(s) - 1;
	memcpy(s, data, n);
	s[n] = '\0';
	CHECK(!aead_mark_check("fuzz-p", "fuzz-e", AEAD_MARK_CHALLENGE, "", s));
	CHECK(!aead_mark_check("fuzz-p", "fuzz-e", AEAD_MARK_HINT, "ctx", s));

	if ((p = malloc(size + AEAD_TAG_LEN)) == NULL)
		return 0;
	a = aead_new(key, err);
	b = aead_new(key, err);
	CHECK(a != NULL && b != NULL);
	memcpy(p, data, size);
	CHECK(aead_open(b, data, size < 7 ? size : 7, p, size, &len) == -1);
	/* b's first nonce is spent: seal twice, open the second. */
	memcpy(p, data, size);
	CHECK(aead_seal(a, data, size < 7 ? size : 7, p, size) == 0);
	memcpy(p, data, size);
	CHECK(aead_seal(a, data, size < 7 ? size : 7, p, size) == 0);
	CHECK(aead_open(b, data, size < 7 ? size : 7, p, size + AEAD_TAG_LEN,
	    &len) == 0);
	CHECK(len == size && memcmp(p, data, size) == 0);
	aead_free(a);
	aead_free(b);
	free(p);
	return 0;
}
