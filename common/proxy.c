#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "crypto.h"
#include "err.h"
#include "proxy.h"

static int
proxy_hexval(int c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	c = tolower((unsigned char)c);
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Percent-decodes in[0..n) into out; -1 on a bad escape or overflow. */
static int
proxy_unescape(const char *in, size_t n, char *out, size_t cap)
{
	size_t	i, o = 0;
	int	hi, lo;

	for (i = 0; i < n; i++) {
		if (o + 1 >= cap)
			return -1;
		if (in[i] == '%') {
			if (i + 2 >= n)
				return -1;
			hi = proxy_hexval(in[i + 1]);
			lo = proxy_hexval(in[i + 2]);
			if (hi < 0 || lo < 0)
				return -1;
			out[o++] = (char)(hi << 4 | lo);
			i += 2;
		} else
			out[o++] = in[i];
	}
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

int
proxy_parse_url(const char *url, struct proxy *p, char *err)
{
	const char	*s, *end, *at, *colon, *host;
	char		 user[PROXY_CRED_MAX + 1], pass[PROXY_CRED_MAX + 1];
	char		 cred[sizeof(user) + sizeof(pass)];
	char		*ep;
	long		 port;
	size_t		 cl;
	int		 ul, pl;
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
	at = memchr(s, '@', end - s);
	if (at != NULL) {
		colon = memchr(s, ':', at - s);
		if (colon == NULL) {
			err_set(err, "proxy '%s': credentials need user:pass",
			    shown);
			return -1;
		}
		ul = proxy_unescape(s, colon - s, user, sizeof(user));
		pl = proxy_unescape(colon + 1, at - colon - 1, pass,
		    sizeof(pass));
		if (ul < 0 || pl < 0) {
			OPENSSL_cleanse(user, sizeof(user));
			OPENSSL_cleanse(pass, sizeof(pass));
			err_set(err, "proxy '%s': bad or too long credentials "
			    "(user:password at most %d bytes)", shown,
			    PROXY_CRED_MAX);
			return -1;
		}
		/*
		 * base64 makes 4 bytes of every 3: "user:pass" must leave
		 * room for that and the NUL in auth, whatever user and pass
		 * could each hold.
		 */
		cl = (size_t)ul + 1 + (size_t)pl;
		if (PROXY_B64_LEN(cl) >= sizeof(p->auth) ||
		    memchr(user, '\0', ul) != NULL ||
		    memchr(pass, '\0', pl) != NULL) {
			OPENSSL_cleanse(user, sizeof(user));
			OPENSSL_cleanse(pass, sizeof(pass));
			err_set(err, "proxy credentials too long or invalid "
			    "(user:password at most %d bytes)",
			    PROXY_CRED_MAX);
			return -1;
		}
		memcpy(cred, user, ul);
		cred[ul] = ':';
		memcpy(cred + ul + 1, pass, pl);
		crypto_b64(cred, cl, p->auth);
		OPENSSL_cleanse(user, sizeof(user));
		OPENSSL_cleanse(pass, sizeof(pass));
		OPENSSL_cleanse(cred, sizeof(cred));
		host = at + 1;
	}
	if (*host == '[') {
		const char *rb = memchr(host, ']', end - host);

		if (rb == NULL || rb[1] != ':') {
			err_set(err, "proxy '%s': bad address", shown);
			return -1;
		}
		if ((size_t)(rb - host - 1) >= sizeof(p->host))
			goto toolong;
		memcpy(p->host, host + 1, rb - host - 1);
		colon = rb + 1;
	} else {
		colon = memchr(host, ':', end - host);
		if (colon == NULL) {
			err_set(err, "proxy '%s': missing port", shown);
			return -1;
		}
		if ((size_t)(colon - host) >= sizeof(p->host))
			goto toolong;
		memcpy(p->host, host, colon - host);
	}
	if (p->host[0] == '\0') {
		err_set(err, "proxy '%s': missing host", shown);
		return -1;
	}
	port = strtol(colon + 1, &ep, 10);
	if (ep != end || ep == colon + 1 || port <= 0 || port > 65535) {
		err_set(err, "proxy '%s': bad port", shown);
		return -1;
	}
	p->port = (int)port;
	return 0;
toolong:
	err_set(err, "proxy '%s': host name too long", shown);
	return -1;
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
