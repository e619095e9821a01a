/* The HTTP transport's wire: requests, answers, the chunked coding. */

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "err.h"
#include "http.h"
#include "httpt.h"

#define ID	"0123456789abcdef0123456789abcdef"

static int
build(char *out, size_t cap, enum httpt_kind kind, uint64_t off,
    size_t blen)
{
	struct httpt_spec s;

	memset(&s, 0, sizeof(s));
	s.kind = kind;
	s.host_port = "gw.example:8080";
	s.prefix = "";
	s.path_query = "/t?session=abc";
	s.id = kind == HTTPT_OPEN ? NULL : ID;
	s.off = off;
	s.n = 7;
	s.blen = blen;
	s.user_agent = "UA/1";
	return httpt_request(out, cap, &s);
}

/* parse(head) as the server does: its status on refusal, 0 if taken. */
static int
parse(const char *head, struct httpt_req *r)
{
	char	err[ERR_LEN];
	ssize_t	hlen;
	int	status = 0;

	hlen = http_head_end(head, strlen(head), &status, err);
	if (hlen <= 0)
		return hlen == 0 ? -1 : status;
	if (httpt_parse_request(head, hlen, r, &status, err) == -1)
		return status;
	return 0;
}

static void
test_round_trip(void **state)
{
	static const struct {
		enum httpt_kind	kind;
		const char	*method;
		uint64_t	off;
		size_t		blen;
	} cases[] = {
		{ HTTPT_OPEN, "GET", 0, 0 },
		{ HTTPT_POLL, "GET", 12345, 0 },
		{ HTTPT_PUSH, "POST", 99, 1000 },
		{ HTTPT_CLOSE, "POST", 0, 0 },
	};
	struct httpt_req r;
	char		 buf[2048];
	size_t		 i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_true(build(buf, sizeof(buf), cases[i].kind,
		    cases[i].off, cases[i].blen) > 0);
		assert_memory_equal(buf, cases[i].method,
		    strlen(cases[i].method));
		assert_int_equal(parse(buf, &r), 0);
		assert_int_equal(r.kind, cases[i].kind);
		assert_int_equal(r.clen, cases[i].blen);
		if (cases[i].kind == HTTPT_PUSH || cases[i].kind == HTTPT_POLL)
			assert_int_equal(r.off, cases[i].off);
		assert_string_equal(r.id, cases[i].kind == HTTPT_OPEN ? "" :
		    ID);
		assert_non_null(strstr(r.target, "session=abc&ht="));
	}
	/* Through a forward proxy: absolute-form, with its credentials. */
	{
		struct httpt_spec s;

		memset(&s, 0, sizeof(s));
		s.kind = HTTPT_POLL;
		s.host_port = "gw:80";
		s.prefix = "http://gw:80";
		s.path_query = "/";
		s.id = ID;
		s.proxy_auth = "dTpw";
		assert_true(httpt_request(buf, sizeof(buf), &s) > 0);
		assert_non_null(strstr(buf, "GET http://gw:80/?ht=poll&ack=0"));
		assert_non_null(strstr(buf,
		    "\r\nProxy-Authorization: Basic dTpw\r\n"));
		assert_int_equal(parse(buf, &r), 0);
		assert_int_equal(r.kind, HTTPT_POLL);
	}
}

static void
test_request_injection(void **state)
{
	struct httpt_spec s;
	char		 buf[2048];

	memset(&s, 0, sizeof(s));
	s.kind = HTTPT_OPEN;
	s.host_port = "h:1";
	s.prefix = "";
	s.path_query = "/";
	s.extra_header = "X-A: 1\r\nX-B: 2";
	assert_int_equal(httpt_request(buf, sizeof(buf), &s), -1);
	s.extra_header = NULL;
	s.path_query = "/\n";
	assert_int_equal(httpt_request(buf, sizeof(buf), &s), -1);
	s.path_query = "/";
	assert_true(httpt_request(buf, 40, &s) == -1);	/* too short */
}

static void
test_kind_of(void **state)
{
	static const struct {
		const char	*target;
		enum httpt_kind	 kind;
	} cases[] = {
		{ "/", HTTPT_NONE },
		{ "/?session=x", HTTPT_NONE },
		{ "/?session=x&ht=open", HTTPT_OPEN },
		{ "/?ht=poll&ack=1", HTTPT_POLL },
		{ "/?xht=poll", HTTPT_NONE },
		{ "/?ht=push", HTTPT_PUSH },
		{ "/?ht=close", HTTPT_CLOSE },
		{ "/?ht=", HTTPT_BAD },
		{ "/?ht=opened", HTTPT_BAD },
		{ "/?ht=open&ht=poll", HTTPT_BAD },
		{ "http://h:1/p?ht=poll", HTTPT_POLL },
	};
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		assert_int_equal(httpt_kind_of(cases[i].target,
		    strlen(cases[i].target)), cases[i].kind);
}

static void
test_request_refusals(void **state)
{
	static const struct {
		const char	*head;
		int		 status;
	} cases[] = {
		{ "POST /?ht=poll&ack=0 HTTP/1.1\r\nTunnel-Transport: " ID
		  "\r\n\r\n", 405 },
		{ "GET /?ht=push&off=0 HTTP/1.1\r\nTunnel-Transport: " ID
		  "\r\n\r\n", 405 },
		{ "GET /?ht=poll HTTP/1.1\r\nTunnel-Transport: " ID
		  "\r\n\r\n", 400 },
		{ "GET /?ht=poll&ack=x HTTP/1.1\r\nTunnel-Transport: " ID
		  "\r\n\r\n", 400 },
		{ "GET /?ht=poll&ack=4611686018427387904 HTTP/1.1\r\n"
		  "Tunnel-Transport: " ID "\r\n\r\n", 400 },
		{ "GET /?ht=poll&ack=1&ack=2 HTTP/1.1\r\nTunnel-Transport: " ID
		  "\r\n\r\n", 400 },
		{ "GET /?ht=poll&ack=0 HTTP/1.1\r\n\r\n", 400 },
		{ "GET /?ht=poll&ack=0 HTTP/1.1\r\nTunnel-Transport: "
		  "0123456789ABCDEF0123456789ABCDEF\r\n\r\n", 400 },
		{ "GET /?ht=poll&ack=0 HTTP/1.1\r\nTunnel-Transport: " ID
		  "\r\nTunnel-Transport: " ID "\r\n\r\n", 400 },
		{ "GET /?ht=poll&ack=0 HTTP/1.1\r\nTunnel-Transport: " ID
		  "\r\nContent-Length: 1\r\n\r\n", 400 },
		{ "POST /?ht=push&off=0 HTTP/1.1\r\nTunnel-Transport: " ID
		  "\r\n\r\n", 411 },
		{ "POST /?ht=push&off=0 HTTP/1.1\r\nTunnel-Transport: " ID
		  "\r\nTransfer-Encoding: chunked\r\n\r\n", 411 },
		{ "POST /?ht=push&off=0 HTTP/1.1\r\nTunnel-Transport: " ID
		  "\r\nContent-Length: 262145\r\n\r\n", 413 },
		{ "POST /?ht=push&off=0 HTTP/1.1\r\nTunnel-Transport: " ID
		  "\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", 400 },
		{ "POST /?ht=push&off=0 HTTP/1.1\r\nTunnel-Transport: " ID
		  "\r\nContent-Length: -5\r\n\r\n", 400 },
		{ "GET /?ht=open HTTP/2\r\n\r\n", 400 },
		{ "GET /?ht=poll&ack=0&hold=x HTTP/1.1\r\nTunnel-Transport: "
		  ID "\r\n\r\n", 400 },
		{ "GET /?ht=poll&ack=0&hold=1&hold=2 HTTP/1.1\r\n"
		  "Tunnel-Transport: " ID "\r\n\r\n", 400 },
		{ "GET /?ht=bogus HTTP/1.1\r\n\r\n", 400 },
	};
	struct httpt_req r;
	size_t		 i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		assert_int_equal(parse(cases[i].head, &r), cases[i].status);
	}
	/* The bound itself is a body. */
	assert_int_equal(parse("POST /?ht=push&off=0 HTTP/1.1\r\n"
	    "Tunnel-Transport: " ID "\r\nContent-Length: 262144\r\n\r\n", &r),
	    0);
	assert_int_equal(r.clen, HTTPT_BODY_MAX);
	assert_int_equal(parse("GET /?ht=open HTTP/1.0\r\n\r\n", &r), 0);
	/* A poll's hold: asked for, clamped to the server's bounds. */
	assert_int_equal(parse("GET /?ht=poll&ack=0 HTTP/1.1\r\n"
	    "Tunnel-Transport: " ID "\r\n\r\n", &r), 0);
	assert_int_equal(r.hold_ms, HTTPT_HOLD_MS);
	assert_int_equal(parse("GET /?ht=poll&ack=0&hold=2500 HTTP/1.1\r\n"
	    "Tunnel-Transport: " ID "\r\n\r\n", &r), 0);
	assert_int_equal(r.hold_ms, 2500);
	assert_int_equal(parse("GET /?ht=poll&ack=0&hold=1 HTTP/1.1\r\n"
	    "Tunnel-Transport: " ID "\r\n\r\n", &r), 0);
	assert_int_equal(r.hold_ms, HTTPT_HOLD_MIN_MS);
	assert_int_equal(parse("GET /?ht=poll&ack=0&hold=99999999 HTTP/1.1\r\n"
	    "Tunnel-Transport: " ID "\r\n\r\n", &r), 0);
	assert_int_equal(r.hold_ms, HTTPT_HOLD_MS);
}

static ssize_t
presp(const char *s, struct httpt_resp *r)
{
	char err[ERR_LEN];

	return httpt_parse_response(s, strlen(s), r, err);
}

static void
test_response(void **state)
{
	struct httpt_resp r;
	char		 buf[512], err[ERR_LEN];
	int		 n;

	n = httpt_response(buf, sizeof(buf), 200, ID, 42, 10, 0, NULL);
	assert_true(n > 0);
	assert_int_equal(httpt_parse_response(buf, n - 1, &r, err), 0);
	assert_int_equal(httpt_parse_response(buf, n, &r, err), n);
	assert_int_equal(r.status, 200);
	assert_int_equal(r.clen, 10);
	assert_int_equal(r.off, 42);
	assert_string_equal(r.id, ID);
	assert_false(r.unknown);
	assert_false(r.closed);
	n = httpt_response(buf, sizeof(buf), 404, HTTPT_UNKNOWN, -1, 0, 1,
	    NULL);
	assert_int_equal(httpt_parse_response(buf, n, &r, err), n);
	assert_int_equal(r.status, 404);
	assert_true(r.unknown);
	assert_int_equal(r.off, -1);
	assert_string_equal(r.id, "");
	/* The reason a transport closed: printable, bounded. */
	n = httpt_response(buf, sizeof(buf), 200, NULL, 7, 0, 0,
	    "maxBytes reached\r\nX-Injected: 1");
	assert_int_equal(httpt_parse_response(buf, n, &r, err), n);
	assert_true(r.closed);
	assert_string_equal(r.why, "maxBytes reached??X-Injected: 1");
	assert_null(strstr(buf, "\r\nX-Injected"));
	n = httpt_response(buf, sizeof(buf), 200, NULL, 7, 0, 0, "");
	assert_int_equal(httpt_parse_response(buf, n, &r, err), n);
	assert_true(r.closed);
	assert_string_equal(r.why, ".");
	/* A proxy's answers, as they come. */
	assert_true(presp("HTTP/1.0 502 Bad Gateway\r\n\r\n", &r) > 0);
	assert_int_equal(r.status, 502);
	assert_int_equal(r.clen, -1);
	assert_true(presp("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n"
	    "Content-Length: 5\r\n\r\n", &r) > 0);
	assert_true(r.chunked);
	assert_int_equal(r.clen, -1);
	assert_int_equal(presp("HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n"
	    "\r\n", &r), -1);
	assert_int_equal(presp("HTTP/1.1 200 OK\r\nContent-Length: 1\r\n"
	    "Content-Length: 2\r\n\r\n", &r), -1);
	assert_int_equal(presp("HTTP/1.1 200 OK\r\nTunnel-Offset: -1\r\n\r\n",
	    &r), -1);
	assert_int_equal(presp("HTTP/2 200\r\n\r\n", &r), -1);
	assert_true(presp("HTTP/1.1 404 x\r\nTunnel-Session: unknown\r\n\r\n",
	    &r) > 0);
	assert_true(r.session_unknown);
}

/* in split at every point: the same body, whole. */
static void
test_dechunk(void **state)
{
	static const char in[] = "5;ext=1\r\nhello\r\n1\r\n \r\n6\r\nworld!\r\n"
	    "0\r\nTrailer: x\r\n\r\nNEXT";
	struct httpt_chunked d;
	uint8_t		 out[64];
	size_t		 n, cut, outn;
	ssize_t		 a, b;
	char		 err[ERR_LEN];

	n = strlen(in);
	for (cut = 0; cut <= n; cut++) {
		memset(&d, 0, sizeof(d));
		outn = 0;
		a = httpt_dechunk(&d, (const uint8_t *)in, cut, out, sizeof(out),
		    &outn, err);
		assert_true(a >= 0);
		b = httpt_dechunk(&d, (const uint8_t *)in + a, n - a, out,
		    sizeof(out), &outn, err);
		assert_true(b >= 0);
		assert_true(d.done);
		assert_int_equal(a + b, n - 4);		/* NEXT is not the body's */
		assert_int_equal(outn, 12);
		assert_memory_equal(out, "hello world!", 12);
	}
}

static void
test_dechunk_errors(void **state)
{
	static const char *const bad[] = {
		"x\r\n",			/* no size */
		"5\nhello",			/* bare LF */
		"5\r\nhelloX\r\n",		/* no CRLF after the data */
		"1000000000000000\r\n",		/* too large */
		"0\r\nTrailer\n",		/* bare LF in a trailer */
	};
	struct httpt_chunked d;
	uint8_t		 out[16], *big;
	size_t		 i, outn;
	char		 err[ERR_LEN];

	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		memset(&d, 0, sizeof(d));
		outn = 0;
		assert_int_equal(httpt_dechunk(&d, (const uint8_t *)bad[i],
		    strlen(bad[i]), out, sizeof(out), &outn, err), -1);
	}
	/* More than the caller holds. */
	memset(&d, 0, sizeof(d));
	outn = 0;
	assert_int_equal(httpt_dechunk(&d, (const uint8_t *)"20\r\n"
	    "0123456789abcdef0123456789abcdef", 36, out, sizeof(out), &outn,
	    err), -1);
	/* An endless size line or trailer is refused, not waited for. */
	big = malloc(8192);
	memset(big, ';', 8192);
	big[0] = '1';
	memset(&d, 0, sizeof(d));
	outn = 0;
	assert_int_equal(httpt_dechunk(&d, big, 8192, out, sizeof(out), &outn,
	    err), -1);
	memcpy(big, "0\r\n", 3);
	memset(big + 3, 'a', 8189);
	memset(&d, 0, sizeof(d));
	assert_int_equal(httpt_dechunk(&d, big, 8192, out, sizeof(out), &outn,
	    err), -1);
	free(big);
}

static void
test_ids(void **state)
{
	char	a[HTTPT_ID_LEN + 1], b[HTTPT_ID_LEN + 1], err[ERR_LEN];

	assert_int_equal(httpt_new_id(a, err), 0);
	assert_int_equal(httpt_new_id(b, err), 0);
	assert_int_equal(strlen(a), HTTPT_ID_LEN);
	assert_true(httpt_id_valid(a, strlen(a)));
	assert_string_not_equal(a, b);
	assert_false(httpt_id_valid(ID, HTTPT_ID_LEN - 1));
	assert_false(httpt_id_valid("g123456789abcdef0123456789abcdef",
	    HTTPT_ID_LEN));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_round_trip),
		cmocka_unit_test(test_request_injection),
		cmocka_unit_test(test_kind_of),
		cmocka_unit_test(test_request_refusals),
		cmocka_unit_test(test_response),
		cmocka_unit_test(test_dechunk),
		cmocka_unit_test(test_dechunk_errors),
		cmocka_unit_test(test_ids),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
