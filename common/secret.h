#ifndef SECRET_H
#define SECRET_H

/*
 * Passwords outside the command line: read from a file that only its
 * owner may read, or taken from an environment variable whose bytes are
 * then wiped; and a rough strength estimate for the warnings of
 * docs/security.md ("What stays inherent to the kptunnel protocol").
 */

#include <stddef.h>

/* A secret file holds at most this many bytes. */
#define SECRET_FILE_MAX		4096
/* Below either bound a secret is reported as weak. */
#define SECRET_MIN_LEN		16
#define SECRET_MIN_BITS		64

/*
 * Reads the secret in path into a malloc'd string (*out, the caller
 * cleanses and frees it).  One trailing "\n" or "\r\n" is removed; every
 * other byte counts.  Refused, -1 with err: a file that is not regular,
 * that its group or others may read or write (mode & 077), that is empty,
 * longer than SECRET_FILE_MAX or holds a NUL.  Returns 0.
 */
int	secret_read_file(const char *path, char **out, char *err);

/*
 * The secret in the environment variable name, in a malloc'd string, or
 * NULL in *out when it is not set.  The variable's bytes are overwritten
 * and the variable removed, so /proc/PID/environ and children no longer
 * have it.  Returns 0, or -1 (out of memory) with err.
 */
int	secret_from_env(const char *name, char **out, char *err);

/*
 * A rough upper bound of the entropy of s in bits: per byte, log2 of the
 * size of the character classes s uses (lower, upper, digits, other
 * printable ASCII, other bytes), but 1 bit for a byte that repeats or
 * continues (+1/-1) the previous one.  It can not see dictionary words:
 * "correcthorsebattery" scores high.  Pure.
 */
double	secret_entropy_bits(const char *s);

/*
 * 1 when s is non-empty and weak (shorter than SECRET_MIN_LEN or
 * estimated below SECRET_MIN_BITS), with the reason in why (ERR_LEN);
 * 0 otherwise.  Empty secrets are the caller's business.  Pure.
 */
int	secret_weak(const char *s, char *why);

#endif
