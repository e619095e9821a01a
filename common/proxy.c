#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

int
proxy_parse_url(const char *url, struct proxy *p, char *err)
{
	const char	*s, *end, *at, *colon, *host;
	char		 user[256], pass[256], cred[520];
	char		*ep;
	long		 port;
	int		 ul, pl;

	memset(p, 0, sizeof(*p));
	if (strncmp(url, "http://", 7) != 0) {
		err_set(err, "proxy '%s': only http:// proxies are supported",
		    url);
		return -1;
	}
	s = url + 7;
	end = s + strcspn(s, "/?#");
	if (*end != '\0' && strcmp(end, "/") != 0) {
		err_set(err, "proxy '%s': unexpected path", url);
		return -1;
	}
	host = s;
	at = memchr(s, '@', end - s);
	if (at != NULL) {
		colon = memchr(s, ':', at - s);
		if (colon == NULL) {
			err_set(err, "proxy '%s': credentials need user:pass",
			    url);
			return -1;
		}
		ul = proxy_unescape(s, colon - s, user, sizeof(user));
		pl = proxy_unescape(colon + 1, at - colon - 1, pass,
		    sizeof(pass));
		if (ul < 0 || pl < 0) {
			err_set(err, "proxy '%s': bad credentials", url);
			return -1;
		}
		snprintf(cred, sizeof(cred), "%s:%s", user, pass);
		crypto_b64(cred, strlen(cred), p->auth);
		memset(pass, 0, sizeof(pass));
		memset(cred, 0, sizeof(cred));
		host = at + 1;
	}
	if (*host == '[') {
		const char *rb = memchr(host, ']', end - host);

		if (rb == NULL || rb[1] != ':') {
			err_set(err, "proxy '%s': bad address", url);
			return -1;
		}
		if ((size_t)(rb - host - 1) >= sizeof(p->host))
			goto toolong;
		memcpy(p->host, host + 1, rb - host - 1);
		colon = rb + 1;
	} else {
		colon = memchr(host, ':', end - host);
		if (colon == NULL) {
			err_set(err, "proxy '%s': missing port", url);
			return -1;
		}
		if ((size_t)(colon - host) >= sizeof(p->host))
			goto toolong;
		memcpy(p->host, host, colon - host);
	}
	if (p->host[0] == '\0') {
		err_set(err, "proxy '%s': missing host", url);
		return -1;
	}
	port = strtol(colon + 1, &ep, 10);
	if (ep != end || ep == colon + 1 || port <= 0 || port > 65535) {
		err_set(err, "proxy '%s': bad port", url);
		return -1;
	}
	p->port = (int)port;
	return 0;
toolong:
	err_set(err, "proxy '%s': host name too long", url);
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
