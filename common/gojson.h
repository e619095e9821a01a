#ifndef GOJSON_H
#define GOJSON_H

/*
 * JSON as Go's encoding/json writes and reads it: compact, keys in insertion
 * order, '<' '>' '&' escaped as \u003c \u003e \u0026; object keys matched
 * case-insensitively; only the first value of the input read.
 */

#include <stddef.h>

#include <jansson.h>

/* Serialises v; returns a malloc'd NUL-terminated string and its length. */
char	*gojson_dump(const json_t *v, size_t *len);

/*
 * Parses the first JSON value of p[0..n) (trailing bytes ignored, as Go's
 * decoder does).  Returns a new reference, or NULL with err.
 */
json_t	*gojson_load(const void *p, size_t n, char *err);

/* Member of obj whose key equals key ignoring case, or NULL. */
json_t	*gojson_get(const json_t *obj, const char *key);

/*
 * Typed getters: 0 if the member is absent (*out unchanged) or has the
 * type, -1 with err otherwise.  gojson_str copies into out[cap] and fails
 * when it does not fit.
 */
int	gojson_str(const json_t *obj, const char *key, char *out, size_t cap,
	    char *err);
int	gojson_int(const json_t *obj, const char *key, long long *out,
	    char *err);
int	gojson_bool(const json_t *obj, const char *key, int *out, char *err);

#endif
