/*
 * Hex digits and percent-decoding.  See text.h.
 */

#include "text.h"

int
text_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

char
text_hexdigit(unsigned v, int upper)
{
	return (upper ? "0123456789ABCDEF" : "0123456789abcdef")[v & 15];
}

ssize_t
text_pct_decode(const char *in, size_t n, char *out, size_t cap, int flags)
{
	size_t	i, o = 0;
	int	hi, lo;

	for (i = 0; i < n; i++) {
		if (o >= cap)
			return -1;
		if (in[i] == '+' && (flags & TEXT_PCT_FORM))
			out[o++] = ' ';
		else if (in[i] != '%')
			out[o++] = in[i];
		else if (n - i > 2 &&
		    (hi = text_hexval((unsigned char)in[i + 1])) >= 0 &&
		    (lo = text_hexval((unsigned char)in[i + 2])) >= 0) {
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else if (flags & TEXT_PCT_LENIENT)
			out[o++] = in[i];
		else
			return -1;
	}
	return (ssize_t)o;
}
