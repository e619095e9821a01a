#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "addr.h"
#include "crypto.h"
#include "err.h"
#include "proxy.h"
#include "text.h"

/* Percent-decodes in[0..n) into out, NUL-terminated; -1 on a bad escape
 * or overflow. */
static int
proxy_unescape(const char *in, size_t n, char *out, size_t cap)
{
	ssize_t	o;

	if ((o = text_pct_decode(in, n, out, cap - 1, 0)) < 0)
		return -1;
	out[o] = '\0';
	return (int)o;
}

/*
 * The URL as error messages show it: any user:password before an '@' of
 * the authority becomes "***", since errors end up in logs.
 */
static void
proxy_redact(const char *url, char *out, size_t cap)
{
	const char	*auth, *end, *at = NULL, *q;

	auth = strstr(url, "://");
	auth = auth != NULL ? auth + 3 : url;
	end = auth + strcspn(auth, "/?#");
	for (q = auth; q < end; q++)
		if (*q == '@')
			at = q;
	if (at == NULL)
		snprintf(out, cap, "%.100s", url);
	else
		snprintf(out, cap, "%.*s***%.100s", (int)(auth - url < 16 ?
		    auth - url : 16), url, at);
}

/*
 * "user:pass" in s[0..n), percent-escaped, into p->auth as base64.  shown
 * is the redacted URL for messages.  Returns 0, or -1 with err.
 */
static int
proxy_creds(const char *s, size_t n, struct proxy *p, const char *shown,
    char *err)
{
	char		 user[PROXY_CRED_MAX + 1], pass[PROXY_CRED_MAX + 1];
	char		 cred[sizeof(user) + sizeof(pass)];
	const char	*colon;
	size_t		 cl;
	int		 ul, pl, rc = -1;

	if ((colon = memchr(s, ':', n)) == NULL) {
		err_set(err, "proxy '%s': credentials need user:pass", shown);
		return -1;
	}
	ul = proxy_unescape(s, colon - s, user, sizeof(user));
	pl = proxy_unescape(colon + 1, s + n - colon - 1, pass, sizeof(pass));
	if (ul < 0 || pl < 0) {
		err_set(err, "proxy '%s': bad or too long credentials "
		    "(user:password at most %d bytes)", shown, PROXY_CRED_MAX);
		goto done;
	}
	/*
	 * base64 makes 4 bytes of every 3: "user:pass" must leave room for
	 * that and the NUL in auth, whatever user and pass could each hold.
	 */
	cl = (size_t)ul + 1 + (size_t)pl;
	if (PROXY_B64_LEN(cl) >= sizeof(p->auth) ||
	    memchr(user, '\0', ul) != NULL || memchr(pass, '\0', pl) != NULL) {
		err_set(err, "proxy credentials too long or invalid "
		    "(user:password at most %d bytes)", PROXY_CRED_MAX);
		goto done;
	}
	memcpy(cred, user, ul);
	cred[ul] = ':';
	memcpy(cred + ul + 1, pass, pl);
	crypto_b64(cred, cl, p->auth);
	rc = 0;
done:
	OPENSSL_cleanse(user, sizeof(user));
	OPENSSL_cleanse(pass, sizeof(pass));
	OPENSSL_cleanse(cred, sizeof(cred));
	return rc;
}

/* "host:port" or "[v6]:port" in s[0..n) into p.  0, or -1 with err. */
static int
proxy_hostport(const char *s, size_t n, struct proxy *p, const char *shown,
    char *err)
{
	struct addr_span host, port;
	char		*ep;
	long		 v;

	switch (addr_split(s, n, &host, &port)) {
	case ADDR_SPLIT_BRACKET:
		err_set(err, "proxy '%s': bad address", shown);
		return -1;
	case ADDR_SPLIT_NO_PORT:
		err_set(err, "proxy '%s': %s", shown, *s == '[' ?
		    "bad address" : "missing port");
		return -1;
	default:
		break;
	}
	if (host.n >= sizeof(p->host)) {
		err_set(err, "proxy '%s': host name too long", shown);
		return -1;
	}
	memcpy(p->host, host.p, host.n);
	p->host[host.n] = '\0';
	if (p->host[0] == '\0') {
		err_set(err, "proxy '%s': missing host", shown);
		return -1;
	}
	/* A second ':' (ADDR_SPLIT_COLONS) ends the number early. */
	v = strtol(port.p, &ep, 10);
	if (ep != s + n || port.n == 0 || ep == port.p || v <= 0 ||
	    v > 65535) {
		err_set(err, "proxy '%s': bad port", shown);
		return -1;
	}
	p->port = (int)v;
	return 0;
}

int
proxy_parse_url(const char *url, struct proxy *p, char *err)
{
	const char	*s, *end, *at, *host;
	char		 shown[ERR_LEN];

	memset(p, 0, sizeof(*p));
	proxy_redact(url, shown, sizeof(shown));
	if (strncmp(url, "http://", 7) != 0) {
		err_set(err, "proxy '%s': only http:// proxies are supported",
		    shown);
		return -1;
	}
	s = url + 7;
	end = s + strcspn(s, "/?#");
	if (*end != '\0' && strcmp(end, "/") != 0) {
		err_set(err, "proxy '%s': unexpected path", shown);
		return -1;
	}
	host = s;
	if ((at = memchr(s, '@', end - s)) != NULL) {
		if (proxy_creds(s, at - s, p, shown, err) == -1)
			return -1;
		host = at + 1;
	}
	return proxy_hostport(host, end - host, p, shown, err);
}

int
proxy_request(char *out, size_t cap, const struct proxy *p,
    const char *target, const char *user_agent)
{
	int n;

	n = snprintf(out, cap, "CONNECT %s HTTP/1.1\r\nHost: %s\r\n"
	    "User-Agent: %s\r\n%s%s%s\r\n", target, target, user_agent,
	    p->auth[0] ? "Proxy-Authorization: Basic " : "", p->auth,
	    p->auth[0] ? "\r\n" : "");
	if (n < 0 || (size_t)n >= cap)
		return -1;
	return n;
}

ssize_t
proxy_response(const char *buf, size_t len, char *err)
{
	const char	*end = NULL, *eol;
	size_t		 i, l;
	int		 status;

	for (i = 0; i + 3 < len; i++)
		if (memcmp(buf + i, "\r\n\r\n", 4) == 0) {
			end = buf + i + 4;
			break;
		}
	if (end == NULL) {
		if (len >= PROXY_HEAD_MAX) {
			err_set(err, "proxy answer too long");
			return -1;
		}
		return 0;
	}
	eol = memchr(buf, '\r', end - buf);
	l = eol - buf;
	if (l < 12 || strncmp(buf, "HTTP/1.", 7) != 0 || buf[8] != ' ' ||
	    !isdigit((unsigned char)buf[9]) ||
	    !isdigit((unsigned char)buf[10]) ||
	    !isdigit((unsigned char)buf[11]) ||
	    (l > 12 && buf[12] != ' ')) {
		err_set(err, "proxy sent a malformed answer");
		return -1;
	}
	status = (buf[9] - '0') * 100 + (buf[10] - '0') * 10 + buf[11] - '0';
	if (status != 200) {
		for (i = 0; i < l; i++)
			if (!isprint((unsigned char)buf[i]))
				break;
		err_set(err, "proxy refused: %.*s", (int)(i < 200 ? i : 200),
		    buf);
		return -1;
	}
	return end - buf;
}
