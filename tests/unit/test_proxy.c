/* HTTP CONNECT proxy: URL, request and answer. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "proxy.h"

static void
test_url(void **state)
{
	struct proxy	p;
	char		err[ERR_LEN];

	assert_int_equal(proxy_parse_url("http://127.0.0.1:3128/", &p, err), 0);
	assert_string_equal(p.host, "127.0.0.1");
	assert_int_equal(p.port, 3128);
	assert_string_equal(p.auth, "");
	/* Wire spec 2.4: us%40r:pa:ss -> base64("us@r:pa:ss"). */
	assert_int_equal(proxy_parse_url("http://us%40r:pa:ss@proxy:8080",
	    &p, err), 0);
	assert_string_equal(p.host, "proxy");
	assert_string_equal(p.auth, "dXNAcjpwYTpzcw==");
	assert_int_equal(proxy_parse_url("http://[::1]:3128/", &p, err), 0);
	assert_string_equal(p.host, "::1");
}

static void
test_url_errors(void **state)
{
	struct proxy	p;
	char		err[ERR_LEN];

	assert_int_equal(proxy_parse_url("socks5://h:1", &p, err), -1);
	assert_non_null(strstr(err, "http://"));
	assert_int_equal(proxy_parse_url("http://h", &p, err), -1);
	assert_int_equal(proxy_parse_url("http://h:0", &p, err), -1);
	assert_int_equal(proxy_parse_url("http://h:99999", &p, err), -1);
	assert_int_equal(proxy_parse_url("http://:80", &p, err), -1);
	assert_int_equal(proxy_parse_url("http://u@h:80", &p, err), -1);
	assert_int_equal(proxy_parse_url("http://u:%zz@h:80", &p, err), -1);
	assert_int_equal(proxy_parse_url("http://u:%4@h:80", &p, err), -1);
	assert_int_equal(proxy_parse_url("http://h:80/x", &p, err), -1);
}

/*
 * "user:pass" of more than 381 bytes overflowed the
 * 512-byte auth buffer once base64-encoded.  The limit is exact, longer
 * credentials (however they are escaped) are refused, and no error shows
 * the password.
 */
static void
test_url_long_credentials(void **state)
{
	struct proxy	 p;
	char		 url[8192], err[ERR_LEN];
	size_t		 n;

	/* user "u" + ':' + 379 bytes of password = 381: fits exactly. */
	n = (size_t)snprintf(url, sizeof(url), "http://u:");
	memset(url + n, 's', 379);
	snprintf(url + n + 379, sizeof(url) - n - 379, "@h:1");
	assert_int_equal(proxy_parse_url(url, &p, err), 0);
	assert_int_equal(strlen(p.auth), PROXY_B64_LEN(PROXY_CRED_MAX));
	assert_true(strlen(p.auth) < sizeof(p.auth));
	/* One more byte: refused. */
	memset(url + n, 's', 380);
	snprintf(url + n + 380, sizeof(url) - n - 380, "@h:1");
	assert_int_equal(proxy_parse_url(url, &p, err), -1);
	assert_non_null(strstr(err, "at most 381"));
	assert_null(strstr(err, "sss"));
	assert_string_equal(p.auth, "");
	/* 255 + ':' + 255 (the old parser's part sizes): too long together. */
	n = (size_t)snprintf(url, sizeof(url), "http://");
	memset(url + n, 'u', 255);
	url[n + 255] = ':';
	memset(url + n + 256, 'p', 255);
	snprintf(url + n + 511, sizeof(url) - n - 511, "@h:1");
	assert_int_equal(proxy_parse_url(url, &p, err), -1);
	/* 2000 bytes, and 2000 escaped bytes. */
	n = (size_t)snprintf(url, sizeof(url), "http://u:");
	memset(url + n, 'x', 2000);
	snprintf(url + n + 2000, sizeof(url) - n - 2000, "@h:1");
	assert_int_equal(proxy_parse_url(url, &p, err), -1);
	assert_null(strstr(err, "xxx"));
	n = (size_t)snprintf(url, sizeof(url), "http://u:");
	for (size_t i = 0; i < 2000; i++)
		memcpy(url + n + 3 * i, "%41", 3);
	snprintf(url + n + 6000, sizeof(url) - n - 6000, "@h:1");
	assert_int_equal(proxy_parse_url(url, &p, err), -1);
	/* A NUL inside would cut the credentials short: refused. */
	assert_int_equal(proxy_parse_url("http://u:a%00b@h:1", &p, err), -1);
	/* Errors never carry the password. */
	assert_int_equal(proxy_parse_url("http://u:hunter2@h", &p, err), -1);
	assert_null(strstr(err, "hunter2"));
	assert_non_null(strstr(err, "***@h"));
	assert_int_equal(proxy_parse_url("socks5://u:hunter2@h:1", &p, err),
	    -1);
	assert_null(strstr(err, "hunter2"));
}

static void
test_request(void **state)
{
	struct proxy	p;
	char		out[512], err[ERR_LEN];

	assert_int_equal(proxy_parse_url("http://us%40r:pa:ss@h:1/", &p, err),
	    0);
	assert_true(proxy_request(out, sizeof(out), &p, "127.0.0.1:17000",
	    "MyAgent/1.0") > 0);
	assert_string_equal(out, "CONNECT 127.0.0.1:17000 HTTP/1.1\r\n"
	    "Host: 127.0.0.1:17000\r\nUser-Agent: MyAgent/1.0\r\n"
	    "Proxy-Authorization: Basic dXNAcjpwYTpzcw==\r\n\r\n");
	assert_int_equal(proxy_request(out, 20, &p, "x:1", "ua"), -1);
}

static void
test_response(void **state)
{
	const char	*ok = "HTTP/1.1 200 Connection established\r\n\r\nX";
	char		 err[ERR_LEN];
	size_t		 i;

	assert_int_equal(proxy_response(ok, strlen(ok), err),
	    (ssize_t)strlen(ok) - 1);
	for (i = 0; i < strlen(ok) - 1; i++)
		assert_int_equal(proxy_response(ok, i, err), 0);
	assert_int_equal(proxy_response("HTTP/1.0 200\r\n\r\n", 16, err), 16);
	assert_int_equal(proxy_response(
	    "HTTP/1.1 407 Proxy Authentication Required\r\n\r\n", 47, err), -1);
	assert_string_equal(err,
	    "proxy refused: HTTP/1.1 407 Proxy Authentication Required");
	assert_int_equal(proxy_response("SSH-2.0-x\r\n\r\n", 13, err), -1);
	assert_int_equal(proxy_response("HTTP/1.1 2000\r\n\r\n", 17, err), -1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_url),
		cmocka_unit_test(test_url_errors),
		cmocka_unit_test(test_url_long_credentials),
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_response),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
