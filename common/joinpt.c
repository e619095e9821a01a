/*
 * Join points as forwards write them (joinpt.h).  No I/O: the dispatcher
 * turns a NAME into a socket of its own, a worker only asks for it.
 */

#include <string.h>
#include <strings.h>

#include "err.h"
#include "joinpt.h"

static int
joinpt_digit(int c)
{
	return c >= '0' && c <= '9';
}

/* "join:80" stays kptunnel's host "join", port 80. */
int
joinpt_is(const char *s, size_t n)
{
	return n >= JOINPT_PREFIX_LEN &&
	    strncasecmp(s, JOINPT_PREFIX, JOINPT_PREFIX_LEN) == 0 &&
	    (n == JOINPT_PREFIX_LEN || !joinpt_digit(s[JOINPT_PREFIX_LEN]));
}

/* No dot, no slash: a NAME is used as a file name without escaping. */
int
joinpt_name_ok(const char *name, size_t n)
{
	size_t i;

	if (n == 0 || n > JOINPT_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)name[i];

		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    c == '_' || (i > 0 && (joinpt_digit(c) || c == '-'))))
			return 0;
	}
	return 1;
}

int
joinpt_parse(const char *s, size_t n, struct hostinfo *h, char *err)
{
	memset(h, 0, sizeof(*h));
	if (n < JOINPT_PREFIX_LEN ||
	    memcmp(s, JOINPT_PREFIX, JOINPT_PREFIX_LEN) != 0) {
		err_set(err, "a join point is written join:NAME");
		return -1;
	}
	if (!joinpt_name_ok(s + JOINPT_PREFIX_LEN, n - JOINPT_PREFIX_LEN)) {
		err_set(err, "join point NAME: 1 to %d of A-Z a-z 0-9 _ -, "
		    "a letter or _ first", JOINPT_NAME_MAX);
		return -1;
	}
	memcpy(h->name, s, n);
	h->name[n] = '\0';
	return 0;
}

const char *
joinpt_name(const struct hostinfo *h)
{
	size_t n = strnlen(h->name, sizeof(h->name));

	if (h->port != 0 || h->path[0] != '\0' || h->query[0] != '\0' ||
	    n <= JOINPT_PREFIX_LEN || n == sizeof(h->name) ||
	    memcmp(h->name, JOINPT_PREFIX, JOINPT_PREFIX_LEN) != 0 ||
	    !joinpt_name_ok(h->name + JOINPT_PREFIX_LEN,
	    n - JOINPT_PREFIX_LEN))
		return NULL;
	return h->name + JOINPT_PREFIX_LEN;
}
