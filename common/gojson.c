/*
 * JSON as Go's encoding/json writes and reads it, over jansson.
 *
 * Writing: jansson's compact output already matches Go's for the values the
 * kptunnel messages use (objects, strings, integers, booleans, null); a
 * post-pass adds the escapes Go makes that jansson does not ('<' '>' '&'
 * U+2028 U+2029) and lower-cases the hex digits of \u escapes.  Reals are
 * never written by the protocol and are formatted jansson's way.
 *
 * Reading: only the first value is parsed (Go's json.Decoder), member names
 * are matched case-insensitively (Go's field matching) and a JSON null
 * member is treated as absent (Go leaves the field untouched).  Unlike Go,
 * jansson rejects invalid UTF-8 and \u0000 in the input; Go peers never
 * produce either.
 */

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "err.h"
#include "gojson.h"
#include "text.h"

/* Larger than any kptunnel message; bounds jansson's work on peer input. */
#define GOJSON_MAX_INPUT	65535

/*
 * The escape sequence at t[0..n) (t[0] is '\\', n >= 2) in Go's form into
 * out (6 or 2 bytes) unless out is NULL; *used is set to the input
 * bytes it spans.  Returns the output length.
 */
static size_t
gojson_escape(const char *t, size_t n, char *out, size_t *used)
{
	size_t		k;
	unsigned char	c;

	if (t[1] != 'u' || n < 6) {
		if (out != NULL) {
			out[0] = '\\';
			out[1] = t[1];
		}
		*used = 2;
		return 2;
	}
	/* Go: \u001f, jansson: \u001F. */
	if (out != NULL) {
		out[0] = '\\';
		out[1] = 'u';
		for (k = 2; k < 6; k++) {
			c = (unsigned char)t[k];
			if (c >= 'A' && c <= 'F')
				c = c - 'A' + 'a';
			out[k] = (char)c;
		}
	}
	*used = 6;
	return 6;
}

/*
 * Whether t[0..n) starts with U+2028 or U+2029, which Go escapes for
 * JavaScript: 0 if not, else the last hex digit ('8' or '9').
 */
static char
gojson_linesep(const char *t, size_t n)
{
	if (n < 3 || (unsigned char)t[0] != 0xe2 ||
	    (unsigned char)t[1] != 0x80)
		return 0;
	if ((unsigned char)t[2] == 0xa8)
		return '8';
	if ((unsigned char)t[2] == 0xa9)
		return '9';
	return 0;
}

/*
 * Bytes the Go form of the jansson text t[0..n) needs, or writes it to out
 * when out is not NULL.  Only string contents can hold the characters
 * rewritten here, so a scan that skips over escape sequences is enough.
 */
static size_t
gojson_rewrite(const char *t, size_t n, char *out)
{
	size_t		i, o = 0, used;
	unsigned char	c;
	char		sep;

	for (i = 0; i < n; i++) {
		c = (unsigned char)t[i];
		if (c == '\\' && i + 1 < n) {
			o += gojson_escape(t + i, n - i,
			    out != NULL ? out + o : NULL, &used);
			i += used - 1;
		} else if (c == '<' || c == '>' || c == '&') {
			if (out != NULL) {
				memcpy(out + o, "\\u00", 4);
				out[o + 4] = text_hexdigit(c >> 4, 0);
				out[o + 5] = text_hexdigit(c, 0);
			}
			o += 6;
		} else if ((sep = gojson_linesep(t + i, n - i)) != 0) {
			if (out != NULL) {
				memcpy(out + o, "\\u202", 5);
				out[o + 5] = sep;
			}
			o += 6;
			i += 2;
		} else {
			if (out != NULL)
				out[o] = (char)c;
			o++;
		}
	}
	return o;
}

char *
gojson_dump(const json_t *v, size_t *len)
{
	char	*t, *out;
	size_t	 n, need;

	if (v == NULL)
		return NULL;
	t = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER |
	    JSON_ENCODE_ANY);
	if (t == NULL)
		return NULL;
	n = strlen(t);
	need = gojson_rewrite(t, n, NULL);
	if ((out = malloc(need + 1)) == NULL) {
		free(t);
		return NULL;
	}
	gojson_rewrite(t, n, out);
	out[need] = '\0';
	free(t);
	if (len != NULL)
		*len = need;
	return out;
}

json_t *
gojson_load(const void *p, size_t n, char *err)
{
	json_error_t	 jerr;
	json_t		*v;

	if (p == NULL || n == 0) {
		err_set(err, "empty JSON input");
		return NULL;
	}
	if (n > GOJSON_MAX_INPUT) {
		err_set(err, "JSON input too long (%zu bytes)", n);
		return NULL;
	}
	v = json_loadb(p, n, JSON_DISABLE_EOF_CHECK | JSON_DECODE_ANY, &jerr);
	if (v == NULL) {
		err_set(err, "bad JSON at byte %d: %s", jerr.position,
		    jerr.text);
		return NULL;
	}
	return v;
}

/*
 * Go's field matching (bytes.EqualFold with simple Unicode folding) for an
 * ASCII key: besides ASCII case, U+017F (long s) folds to 's' and U+212A
 * (Kelvin sign) to 'k'; no other non-ASCII rune folds onto ASCII.
 */
static int
gojson_foldeq(const char *name, size_t nlen, const char *key)
{
	const unsigned char *s = (const unsigned char *)name;
	size_t	 i = 0;
	unsigned char k;

	for (; *key != '\0'; key++) {
		if (i >= nlen)
			return 0;
		k = (unsigned char)*key;
		if (k >= 'A' && k <= 'Z')
			k = k - 'A' + 'a';
		if (s[i] < 0x80) {
			unsigned char c = s[i];

			if (c >= 'A' && c <= 'Z')
				c = c - 'A' + 'a';
			if (c != k)
				return 0;
			i++;
		} else if (k == 's' && i + 1 < nlen && s[i] == 0xc5 &&
		    s[i + 1] == 0xbf)
			i += 2;
		else if (k == 'k' && i + 2 < nlen && s[i] == 0xe2 &&
		    s[i + 1] == 0x84 && s[i + 2] == 0xaa)
			i += 3;
		else
			return 0;
	}
	return i == nlen;
}

/*
 * An exact match wins; otherwise the first member matching ignoring case.
 * (Go assigns every matching member in document order, so the last one
 * wins there; the two differ only for objects that spell one name twice.)
 */
json_t *
gojson_get(const json_t *obj, const char *key)
{
	const char	*k;
	json_t		*v, *fold = NULL;
	size_t		 klen;

	if (obj == NULL || key == NULL || !json_is_object(obj))
		return NULL;
	if ((v = json_object_get(obj, key)) != NULL)
		return v;
	/* jansson's iterators take a non-const object but do not modify it. */
	json_object_keylen_foreach((json_t *)obj, k, klen, v) {
		if (gojson_foldeq(k, klen, key)) {
			fold = v;
			break;
		}
	}
	return fold;
}

/* The member, or NULL when absent or null (Go leaves the field as is). */
static json_t *
gojson_member(const json_t *obj, const char *key)
{
	json_t	*v;

	v = gojson_get(obj, key);
	if (v == NULL || json_is_null(v))
		return NULL;
	return v;
}

int
gojson_str(const json_t *obj, const char *key, char *out, size_t cap,
    char *err)
{
	json_t	*v;
	size_t	 n;

	if ((v = gojson_member(obj, key)) == NULL)
		return 0;
	if (!json_is_string(v)) {
		err_set(err, "%s: not a string", key);
		return -1;
	}
	n = json_string_length(v);
	if (n >= cap || memchr(json_string_value(v), '\0', n) != NULL) {
		err_set(err, "%s: string too long (%zu bytes)", key, n);
		return -1;
	}
	memcpy(out, json_string_value(v), n);
	out[n] = '\0';
	return 0;
}

int
gojson_int(const json_t *obj, const char *key, long long *out, char *err)
{
	json_t	*v;

	if ((v = gojson_member(obj, key)) == NULL)
		return 0;
	/*
	 * jansson reads 1.0 and 1e3 as reals and refuses integers outside
	 * json_int_t, which is what Go does for an int64 field.
	 */
	if (!json_is_integer(v)) {
		err_set(err, "%s: not an integer", key);
		return -1;
	}
	*out = (long long)json_integer_value(v);
	return 0;
}

int
gojson_bool(const json_t *obj, const char *key, int *out, char *err)
{
	json_t	*v;

	if ((v = gojson_member(obj, key)) == NULL)
		return 0;
	if (!json_is_boolean(v)) {
		err_set(err, "%s: not a boolean", key);
		return -1;
	}
	*out = json_is_true(v) ? 1 : 0;
	return 0;
}
