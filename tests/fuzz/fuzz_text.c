/*
 * libFuzzer target: text_pct_decode() in every mode, against a plain
 * reference decoder, with output bounds of every size.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"

/* Decodes as RFC 3986 says, one byte at a time; -1 on a bad escape. */
static ssize_t
fz_ref(const uint8_t *in, size_t n, uint8_t *out, int flags)
{
	size_t	i, o = 0;

	for (i = 0; i < n; i++) {
		if (in[i] == '+' && (flags & TEXT_PCT_FORM))
			out[o++] = ' ';
		else if (in[i] == '%' && i + 2 < n &&
		    text_hexval(in[i + 1]) >= 0 && text_hexval(in[i + 2]) >= 0) {
			out[o++] = text_hexval(in[i + 1]) << 4 |
			    text_hexval(in[i + 2]);
			i += 2;
		} else if (in[i] == '%' && !(flags & TEXT_PCT_LENIENT))
			return -1;
		else
			out[o++] = in[i];
	}
	return (ssize_t)o;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	uint8_t	*ref, *out;
	ssize_t	 want, got;
	size_t	 cap;
	int	 flags;

	if ((ref = malloc(size + 1)) == NULL || (out = malloc(size + 1)) == NULL) {
		free(ref);
		return 0;
	}
	for (flags = 0; flags < 4; flags++) {
		want = fz_ref(data, size, ref, flags);
		got = text_pct_decode((const char *)data, size, (char *)out,
		    size, flags);
		if (got != want || (got > 0 && memcmp(out, ref, got) != 0))
			abort();
		/* A short buffer fails, never overflows (ASan watches). */
		if (want > 0) {
			cap = (size_t)want - 1;
			if (text_pct_decode((const char *)data, size,
			    (char *)out, cap, flags) != -1)
				abort();
		}
	}
	free(ref);
	free(out);
	return 0;
}
