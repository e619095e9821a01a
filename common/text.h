#ifndef TEXT_H
#define TEXT_H

/*
 * Small text helpers every parser shares: hex digits and percent-decoding
 * (RFC 3986 2.1; with TEXT_PCT_FORM, the form encoding of query strings).
 * No allocation, no I/O.
 */

#include <stddef.h>
#include <sys/types.h>

/* text_pct_decode() flags. */
#define TEXT_PCT_FORM		0x1	/* '+' is a space (query strings) */
#define TEXT_PCT_LENIENT	0x2	/* a bad escape is kept as it is */

/* The value of a hex digit of either case, or -1. */
int	text_hexval(int c);

/* The hex digit of v & 15, lower case or, with upper, upper case. */
char	text_hexdigit(unsigned v, int upper);

/*
 * Percent-decodes in[0..n) into out[0..cap); no NUL is written.  Returns
 * the decoded length (at most n), or -1 if out is too small or, without
 * TEXT_PCT_LENIENT, on a '%' not followed by two hex digits.
 */
ssize_t	text_pct_decode(const char *in, size_t n, char *out, size_t cap,
	    int flags);

#endif
