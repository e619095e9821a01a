#ifndef HTTP_H
#define HTTP_H

/*
 * HTTP/1.1 heads as the websocket upgrade and its answer use them: finding
 * the end of a head, its start line, and its header lines, plus the RFC
 * 9110 token and list helpers every parser of header text shares.  No I/O:
 * everything points into the caller's buffer.
 */

#include <stddef.h>
#include <sys/types.h>

#define HTTP_HEAD_MAX		16384	/* bytes of a head, CRLFCRLF included */
#define HTTP_HDR_LINES_MAX	100	/* header lines accepted in a head */

/* One "Name: value" line of a head, pointing into the caller's buffer. */
struct http_hdr {
	const char	*name;
	size_t		 nlen;
	const char	*val;		/* surrounding blanks trimmed */
	size_t		 vlen;
};

struct http_hdrs {
	struct http_hdr	 h[HTTP_HDR_LINES_MAX];
	int		 n;
};

/* RFC 9110 tchar: the characters of a token (a header name, a method). */
int	http_tchar(int c);

/* ASCII case-insensitive comparison of s[0..n) with a NUL-terminated lit. */
int	http_caseeq(const char *s, size_t n, const char *lit);

/*
 * True if the comma-separated list s[0..n) holds the token tok, compared
 * without case, blanks around elements ignored.
 */
int	http_has_token(const char *s, size_t n, const char *tok);

/*
 * Finds the end of a head (CRLFCRLF) in buf[0..len).  Returns its length,
 * 0 if more bytes are needed, -1 with *status 431 for a head longer than
 * HTTP_HEAD_MAX, or 400 for a bare LF (which no well-formed head contains
 * and which would otherwise make us wait for a terminator that never
 * comes).
 */
ssize_t	http_head_end(const char *buf, size_t len, int *status, char *err);

/*
 * Splits off the start line of a complete head of hlen bytes (as
 * http_head_end() found it): *line and *ll get the line without CRLF, the
 * return value is the offset of the header lines.  -1 on a control
 * character in the line.
 */
ssize_t	http_start_line(const char *buf, size_t hlen, const char **line,
	    size_t *ll, char *err);

/*
 * Parses the header lines buf[off..hlen) of a complete head into hs.
 * Returns 0, or -1 with *status 400 (malformed line) or 431 (more than
 * HTTP_HDR_LINES_MAX lines).
 */
int	http_headers(const char *buf, size_t off, size_t hlen,
	    struct http_hdrs *hs, int *status, char *err);

/*
 * Appends a header to hs (name and value not copied: they must outlive
 * hs).  Returns 0, or -1 when hs is full.
 */
int	http_hdr_add(struct http_hdrs *hs, const char *name, size_t nlen,
	    const char *val, size_t vlen);

/* The first header named name (lower case) at or after index from, or -1. */
int	http_hdr_find(const struct http_hdrs *hs, const char *name, int from);

/*
 * True if some header named name (lower case) holds the token tok in its
 * comma-separated list; the header may be repeated.
 */
int	http_hdr_has_token(const struct http_hdrs *hs, const char *name,
	    const char *tok);

/* Copies s[0..n) into err (ERR_LEN) with non-printable bytes as '?'. */
void	http_err_line(char *err, const char *s, size_t n);

#endif
