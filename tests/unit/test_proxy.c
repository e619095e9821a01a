/* HTTP CONNECT proxy: URL, request and answer. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
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
		cmocka_unit_test(test_request),
		cmocka_unit_test(test_response),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
