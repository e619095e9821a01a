#ifndef PROXY_H
#define PROXY_H

/*
 * HTTP CONNECT proxies (wire spec 2.4): the -proxy URL, the request, and
 * the proxy's answer.  No I/O.
 */

#include <stddef.h>
#include <sys/types.h>

#define PROXY_HEAD_MAX	8192

/* base64's length for n bytes, without the NUL. */
#define PROXY_B64_LEN(n)	(((n) + 2) / 3 * 4)
/* The longest "user:password" (decoded) whose base64 fits in auth. */
#define PROXY_CRED_MAX	381

struct proxy {
	char	host[256];
	int	port;
	char	auth[512];	/* base64("user:pass"), or "" */
};

/*
 * http://[user:pass@]host:port[/] with percent-escapes in user and pass.
 * "user:pass" once decoded is at most PROXY_CRED_MAX bytes and holds no
 * NUL.  Returns 0, or -1 with err.
 */
int	proxy_parse_url(const char *url, struct proxy *p, char *err);

/*
 * CONNECT target HTTP/1.1, Host, User-Agent and, with credentials,
 * Proxy-Authorization: Basic.  Returns the length, or -1 if cap is short.
 */
int	proxy_request(char *out, size_t cap, const struct proxy *p,
	    const char *target, const char *user_agent);

/*
 * Reads the proxy's answer from buf[0..len): the head's length once it is
 * complete and the status is 200, 0 if incomplete, -1 otherwise with the
 * status line (or the reason) in err.
 */
ssize_t	proxy_response(const char *buf, size_t len, char *err);

#endif
