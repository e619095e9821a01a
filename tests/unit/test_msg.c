/*
 * msg_* and gojson_*: the encoders must reproduce the bytes the Go
 * kptunnel sends (wire spec 5.3-5.5, 6.3, 10 and the captures); the
 * decoders must read what Go reads and refuse what cannot fit.
 */

#include <limits.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>

#include "err.h"
#include "gojson.h"
#include "msg.h"

#define S(x)	((const uint8_t *)(x))
/* A string literal as bytes and length (it may hold NUL bytes). */
#define L(x)	S(x), (sizeof(x) - 1)

/* Wire spec 5.4: the verified AuthResponse, 386 bytes on the wire. */
static const char resp_54[] =
    "{\"Response\":\"0IRc5tuGExdpesvvmX/Dv9jVZFzII7dVY6/53S5C/0pwleOMTRPA3nuJ"
    "uoVhWMmJam1dPxDgBLCPtzAbLl9xRw==\",\"Hint\":\"t5ZJ/A4/g4lwEpQFO2BaNOGtPl"
    "R7nfkCZHQ1JfP7Y90=\",\"SessionToken\":\"\",\"WriteNo\":0,\"ReadNo\":0,"
    "\"Ctrl\":0,\"ForwardList\":[{\"IsReverseTunnel\":false,\"Src\":{\"Scheme"
    "\":\"\",\"Name\":\"\",\"Port\":17002,\"Path\":\"\",\"Query\":\"\"},"
    "\"Dst\":{\"Scheme\":\"\",\"Name\":\"localhost\",\"Port\":17001,"
    "\"Path\":\"\",\"Query\":\"\"}}]}";

/* captures/kptunnel-rws-plain.json: the r-wsserver's AuthResult. */
static const char result_rws[] =
    "{\"Result\":\"ok\",\"SessionId\":1,\"SessionToken\":\"KP15j7cV6g6G\","
    "\"WriteNo\":0,\"ReadNo\":0,\"ForwardList\":[{\"IsReverseTunnel\":true,"
    "\"Src\":{\"Scheme\":\"\",\"Name\":\"127.0.0.1\",\"Port\":40007,\"Path\":"
    "\"\",\"Query\":\"\"},\"Dst\":{\"Scheme\":\"\",\"Name\":\"127.0.0.1\","
    "\"Port\":44779,\"Path\":\"\",\"Query\":\"\"}}]}";

/* captures/kptunnel-ws-reconnect.json: the resuming AuthResponse. */
static const char resp_reconnect[] =
    "{\"Response\":\"sq/U2JX+ufCCRDrCgd2IRnT69FzYTrGxhELLDmvNEHcya4rbpVTX2WcU"
    "0JIPi1wcDTZckWgQpM+Z5QfFt8lZ/g==\",\"Hint\":\"9pORQcglQgz/n1WizlihWilxGE"
    "2aw2alqSDZlD/dVQ8=\",\"SessionToken\":\"MiqzWQgeqw2Y\",\"WriteNo\":6,"
    "\"ReadNo\":2,\"Ctrl\":0,\"ForwardList\":[{\"IsReverseTunnel\":false,"
    "\"Src\":{\"Scheme\":\"\",\"Name\":\"127.0.0.1\",\"Port\":44655,\"Path\":"
    "\"\",\"Query\":\"\"},\"Dst\":{\"Scheme\":\"\",\"Name\":\"127.0.0.1\","
    "\"Port\":44341,\"Path\":\"\",\"Query\":\"\"}}]}";

static void
host_set(struct hostinfo *h, const char *name, int port)
{
	memset(h, 0, sizeof(*h));
	snprintf(h->name, sizeof(h->name), "%s", name);
	h->port = port;
}

/*
 * got is an encoder's result and *lenp the length it stored (a pointer,
 * since the encoder runs while the arguments are evaluated).
 */
static void
expect_bytes(char *got, const size_t *lenp, const char *want, size_t wantlen)
{
	size_t	 gotlen;

	assert_non_null(got);
	gotlen = *lenp;
	if (gotlen != wantlen || memcmp(got, want, wantlen) != 0)
		fail_msg("got %zu bytes:\n%.*s\nwant %zu bytes:\n%.*s", gotlen,
		    (int)gotlen, got, wantlen, (int)wantlen, want);
	assert_int_equal(got[gotlen], '\0');
	free(got);
}

static void
test_challenge_encode(void **state)
{
	static const char want[] = "{\"Ver\":\"1.00\",\"Challenge\":"
	    "\"bVtCyE5sdXiHA321L84+r9n+S2ydtAeiZbir/f/HIVA=\",\"Mode\":"
	    "\"wsserver\"}";
	struct msg_challenge m, d;
	char	 err[ERR_LEN];
	size_t	 n;
	char	*s;

	memset(&m, 0, sizeof(m));
	strcpy(m.ver, "1.00");
	strcpy(m.challenge, "bVtCyE5sdXiHA321L84+r9n+S2ydtAeiZbir/f/HIVA=");
	strcpy(m.mode, "wsserver");
	s = msg_challenge_encode(&m, &n);
	assert_int_equal(n, 0x5b);	/* the packet length in section 10 */
	expect_bytes(s, &n, want, sizeof(want) - 1);

	assert_int_equal(msg_challenge_decode(S(want), sizeof(want) - 1, &d,
	    err), 0);
	assert_memory_equal(&m, &d, sizeof(m));
}

static void
fill_resp_54(struct msg_response *m)
{
	memset(m, 0, sizeof(*m));
	strcpy(m->response, "0IRc5tuGExdpesvvmX/Dv9jVZFzII7dVY6/53S5C/0pwleOMT"
	    "RPA3nuJuoVhWMmJam1dPxDgBLCPtzAbLl9xRw==");
	strcpy(m->hint, "t5ZJ/A4/g4lwEpQFO2BaNOGtPlR7nfkCZHQ1JfP7Y90=");
	m->fwds.n = 1;
	host_set(&m->fwds.fwds[0].src, "", 17002);
	host_set(&m->fwds.fwds[0].dst, "localhost", 17001);
}

static void
test_response_encode(void **state)
{
	struct msg_response m, d;
	char	 err[ERR_LEN];
	size_t	 n;

	fill_resp_54(&m);
	assert_int_equal(sizeof(resp_54) - 1, 386);
	expect_bytes(msg_response_encode(&m, &n), &n, resp_54,
	    sizeof(resp_54) - 1);
	assert_int_equal(msg_response_decode(S(resp_54), sizeof(resp_54) - 1,
	    &d, err), 0);
	assert_memory_equal(&m, &d, sizeof(m));

	/* Resume: token and counters (captures/kptunnel-ws-reconnect). */
	memset(&m, 0, sizeof(m));
	strcpy(m.response, "sq/U2JX+ufCCRDrCgd2IRnT69FzYTrGxhELLDmvNEHcya4rbpV"
	    "TX2WcU0JIPi1wcDTZckWgQpM+Z5QfFt8lZ/g==");
	strcpy(m.hint, "9pORQcglQgz/n1WizlihWilxGE2aw2alqSDZlD/dVQ8=");
	strcpy(m.token, "MiqzWQgeqw2Y");
	m.write_no = 6;
	m.read_no = 2;
	m.fwds.n = 1;
	host_set(&m.fwds.fwds[0].src, "127.0.0.1", 44655);
	host_set(&m.fwds.fwds[0].dst, "127.0.0.1", 44341);
	expect_bytes(msg_response_encode(&m, &n), &n, resp_reconnect,
	    sizeof(resp_reconnect) - 1);
	assert_int_equal(msg_response_decode(S(resp_reconnect),
	    sizeof(resp_reconnect) - 1, &d, err), 0);
	assert_memory_equal(&m, &d, sizeof(m));
}

static void
test_response_null_list(void **state)
{
	static const char want[] = "{\"Response\":\"r\",\"Hint\":\"h\","
	    "\"SessionToken\":\"t\",\"WriteNo\":9223372036854775807,"
	    "\"ReadNo\":-1,\"Ctrl\":2,\"ForwardList\":null}";
	static const char empty[] = "{\"Response\":\"\",\"Hint\":\"\","
	    "\"SessionToken\":\"\",\"WriteNo\":0,\"ReadNo\":0,\"Ctrl\":0,"
	    "\"ForwardList\":[]}";
	struct msg_response m, d;
	char	 err[ERR_LEN];
	size_t	 n;

	memset(&m, 0, sizeof(m));
	strcpy(m.response, "r");
	strcpy(m.hint, "h");
	strcpy(m.token, "t");
	m.write_no = INT64_MAX;
	m.read_no = -1;
	m.ctrl = MSG_CTRL_STOP;
	m.fwds.null = 1;
	expect_bytes(msg_response_encode(&m, &n), &n, want, sizeof(want) - 1);
	assert_int_equal(msg_response_decode(S(want), sizeof(want) - 1, &d,
	    err), 0);
	assert_memory_equal(&m, &d, sizeof(m));
	assert_int_equal(d.fwds.null, 1);

	memset(&m, 0, sizeof(m));
	expect_bytes(msg_response_encode(&m, &n), &n, empty,
	    sizeof(empty) - 1);
	assert_int_equal(msg_response_decode(S(empty), sizeof(empty) - 1, &d,
	    err), 0);
	assert_int_equal(d.fwds.null, 0);
	assert_int_equal(d.fwds.n, 0);
}

static void
test_result_encode(void **state)
{
	static const char ok[] = "{\"Result\":\"ok\",\"SessionId\":1,"
	    "\"SessionToken\":\"lcto9nRtTkNV\",\"WriteNo\":0,\"ReadNo\":0,"
	    "\"ForwardList\":[]}";
	static const char ng[] = "{\"Result\":\"ng\",\"SessionId\":0,"
	    "\"SessionToken\":\"\",\"WriteNo\":0,\"ReadNo\":0,"
	    "\"ForwardList\":null}";
	static const char notfound[] = "{\"Result\":\"ng: not found session -- "
	    "%!d(string=E/lvttK2ZJr9)\",\"SessionId\":0,\"SessionToken\":\"\","
	    "\"WriteNo\":0,\"ReadNo\":0,\"ForwardList\":null}";
	static const char resumed[] = "{\"Result\":\"ok\",\"SessionId\":1,"
	    "\"SessionToken\":\"MiqzWQgeqw2Y\",\"WriteNo\":4,\"ReadNo\":4,"
	    "\"ForwardList\":[]}";
	struct msg_result m, d;
	char	 err[ERR_LEN];
	size_t	 n;

	memset(&m, 0, sizeof(m));
	strcpy(m.result, "ok");
	m.session_id = 1;
	strcpy(m.token, "lcto9nRtTkNV");
	expect_bytes(msg_result_encode(&m, &n), &n, ok, sizeof(ok) - 1);
	assert_int_equal(n, 0x63);	/* the packet length in section 10 */
	assert_int_equal(msg_result_decode(S(ok), sizeof(ok) - 1, &d, err), 0);
	assert_memory_equal(&m, &d, sizeof(m));

	memset(&m, 0, sizeof(m));
	strcpy(m.result, "ng");
	m.fwds.null = 1;
	expect_bytes(msg_result_encode(&m, &n), &n, ng, sizeof(ng) - 1);
	assert_int_equal(msg_result_decode(S(ng), sizeof(ng) - 1, &d, err), 0);
	assert_memory_equal(&m, &d, sizeof(m));

	strcpy(m.result, "ng: not found session -- %!d(string=E/lvttK2ZJr9)");
	expect_bytes(msg_result_encode(&m, &n), &n, notfound,
	    sizeof(notfound) - 1);

	memset(&m, 0, sizeof(m));
	strcpy(m.result, "ok");
	m.session_id = 1;
	strcpy(m.token, "MiqzWQgeqw2Y");
	m.write_no = 4;
	m.read_no = 4;
	expect_bytes(msg_result_encode(&m, &n), &n, resumed,
	    sizeof(resumed) - 1);

	memset(&m, 0, sizeof(m));
	strcpy(m.result, "ok");
	m.session_id = 1;
	strcpy(m.token, "KP15j7cV6g6G");
	m.fwds.n = 1;
	m.fwds.fwds[0].reverse = 1;
	host_set(&m.fwds.fwds[0].src, "127.0.0.1", 40007);
	host_set(&m.fwds.fwds[0].dst, "127.0.0.1", 44779);
	expect_bytes(msg_result_encode(&m, &n), &n, result_rws,
	    sizeof(result_rws) - 1);
	assert_int_equal(msg_result_decode(S(result_rws),
	    sizeof(result_rws) - 1, &d, err), 0);
	assert_memory_equal(&m, &d, sizeof(m));
}

static void
test_ctrl_encode(void **state)
{
	static const char hdr[] = "\x00{\"HostInfo\":{\"Scheme\":\"\",\"Name\":"
	    "\"localhost\",\"Port\":17001,\"Path\":\"\",\"Query\":\"\"},"
	    "\"CitiId\":1}";
	static const char ok[] = "\x01{\"Result\":true,\"Mess\":"
	    "\"\\u003cnil\\u003e\",\"CitiId\":1}";
	static const char refused[] = "\x01{\"Result\":false,\"Mess\":"
	    "\"dial tcp 127.0.0.1:17009: connect: connection refused\","
	    "\"CitiId\":1}";
	static const char big[] = "\x00{\"HostInfo\":{\"Scheme\":\"\",\"Name\":"
	    "\"::1\",\"Port\":65535,\"Path\":\"/p\",\"Query\":"
	    "\"a=1\\u0026b=2\"},"
	    "\"CitiId\":4294967295}";
	struct msg_header h, dh;
	struct msg_resp_header r, dr;
	char	 err[ERR_LEN];
	size_t	 n;

	memset(&h, 0, sizeof(h));
	host_set(&h.host, "localhost", 17001);
	h.citi = 1;
	expect_bytes(msg_header_encode(&h, &n), &n, hdr, sizeof(hdr) - 1);
	assert_int_equal(n, 0x5b);	/* the packet length in section 10 */
	assert_int_equal(msg_ctrl_decode(S(hdr), sizeof(hdr) - 1, &dh, &dr,
	    err), MSG_CTRL_HEADER);
	assert_memory_equal(&h, &dh, sizeof(h));

	memset(&r, 0, sizeof(r));
	r.result = 1;
	strcpy(r.mess, "<nil>");
	r.citi = 1;
	expect_bytes(msg_resp_header_encode(&r, &n), &n, ok, sizeof(ok) - 1);
	assert_int_equal(n, 0x34);	/* the packet length in section 10 */
	assert_int_equal(msg_ctrl_decode(S(ok), sizeof(ok) - 1, &dh, &dr,
	    err), MSG_CTRL_RESP_HEADER);
	assert_memory_equal(&r, &dr, sizeof(r));

	r.result = 0;
	strcpy(r.mess, "dial tcp 127.0.0.1:17009: connect: connection refused");
	expect_bytes(msg_resp_header_encode(&r, &n), &n, refused,
	    sizeof(refused) - 1);
	assert_int_equal(msg_ctrl_decode(S(refused), sizeof(refused) - 1, NULL,
	    &dr, err), MSG_CTRL_RESP_HEADER);
	assert_memory_equal(&r, &dr, sizeof(r));

	memset(&h, 0, sizeof(h));
	host_set(&h.host, "::1", 65535);
	strcpy(h.host.path, "/p");
	strcpy(h.host.query, "a=1&b=2");
	h.citi = UINT32_MAX;
	expect_bytes(msg_header_encode(&h, &n), &n, big, sizeof(big) - 1);
	assert_int_equal(msg_ctrl_decode(S(big), sizeof(big) - 1, &dh, NULL,
	    err), MSG_CTRL_HEADER);
	assert_memory_equal(&h, &dh, sizeof(h));
}

/* Go's string escaping: <>& U+2028 U+2029, lower-case \u00xx, no '/'. */
static void
test_escapes(void **state)
{
	static const char want[] =
	    "{\"Ver\":\"\\u003c\\u003e\\u0026/\\\\\\\"\","
	    "\"Challenge\":\"\\u0001\\u001f\\n\\t\\r\x7f"
	    "\\u2028\\u2029\xc3\xa9\","
	    "\"Mode\":\"a\xef\xbf\xbd" "b\xef\xbf\xbd(\"}";
	struct msg_challenge m, d;
	char	 err[ERR_LEN];
	size_t	 n;

	memset(&m, 0, sizeof(m));
	strcpy(m.ver, "<>&/\\\"");
	strcpy(m.challenge,
	    "\x01\x1f\n\t\r\x7f\xe2\x80\xa8\xe2\x80\xa9\xc3\xa9");
	/*
	 * Invalid UTF-8: each bad byte becomes U+FFFD as in Go (which writes
	 * it as the escape \ufffd; the decoded text is the same).
	 */
	strcpy(m.mode, "a\xff" "b\xc3\x28");
	expect_bytes(msg_challenge_encode(&m, &n), &n, want, sizeof(want) - 1);
	assert_int_equal(msg_challenge_decode(S(want), sizeof(want) - 1, &d,
	    err), 0);
	assert_string_equal(d.ver, m.ver);
	assert_string_equal(d.challenge, m.challenge);
	assert_string_equal(d.mode, "a\xef\xbf\xbd" "b\xef\xbf\xbd(");
}

static void
test_gojson(void **state)
{
	json_t	*v;
	char	 err[ERR_LEN], s[8];
	long long i = 7;
	int	 b = 7;
	char	*t;
	size_t	 n;

	/* First value only, as Go's json.Decoder reads it. */
	v = gojson_load(L("{\"a\":1} {\"a\":2}"), err);
	assert_non_null(v);
	assert_int_equal(gojson_int(v, "A", &i, err), 0);
	assert_int_equal(i, 1);
	json_decref(v);

	/* Exact match preferred; otherwise any case; null is absent. */
	v = gojson_load(L("{\"mode\":\"x\",\"Mode\":\"y\",\"MODE2\":\"z\","
	    "\"n\":null,\"f\":1.5,\"big\":1e3}"), err);
	assert_non_null(v);
	assert_int_equal(gojson_str(v, "Mode", s, sizeof(s), err), 0);
	assert_string_equal(s, "y");
	assert_int_equal(gojson_str(v, "mOdE2", s, sizeof(s), err), 0);
	assert_string_equal(s, "z");
	strcpy(s, "keep");
	assert_int_equal(gojson_str(v, "n", s, sizeof(s), err), 0);
	assert_string_equal(s, "keep");
	assert_int_equal(gojson_str(v, "absent", s, sizeof(s), err), 0);
	assert_string_equal(s, "keep");
	assert_int_equal(gojson_bool(v, "n", &b, err), 0);
	assert_int_equal(b, 7);
	assert_int_equal(gojson_int(v, "f", &i, err), -1);
	assert_non_null(strstr(err, "f"));
	assert_int_equal(gojson_int(v, "big", &i, err), -1);
	assert_int_equal(gojson_bool(v, "mode", &b, err), -1);
	assert_int_equal(gojson_str(v, "f", s, sizeof(s), err), -1);
	assert_int_equal(gojson_str(v, "Mode", s, 1, err), -1);
	assert_null(gojson_get(v, "mod"));
	assert_null(gojson_get(NULL, "mod"));
	json_decref(v);

	/* Go folds U+017F (long s) to s and U+212A (Kelvin) to k. */
	v = gojson_load(L("{\"\xc5\xbf" "ession\":\"s\",\"\xe2\x84\xaa"
	    "ey\":\"k\"}"), err);
	assert_non_null(v);
	assert_int_equal(gojson_str(v, "Session", s, sizeof(s), err), 0);
	assert_string_equal(s, "s");
	assert_int_equal(gojson_str(v, "KEY", s, sizeof(s), err), 0);
	assert_string_equal(s, "k");
	assert_null(gojson_get(v, "ession"));
	json_decref(v);

	assert_null(gojson_load(L(""), err));
	assert_null(gojson_load(L("{\"a\":"), err));
	assert_null(gojson_load(L("\xff"), err));
	assert_null(gojson_load(NULL, 3, err));

	v = json_pack("{s:s,s:i,s:b,s:n,s:[]}", "k<", "\xe2\x80\xa8&",
	    "i", -5, "b", 1, "n", "l");
	assert_non_null(v);
	t = gojson_dump(v, &n);
	assert_string_equal(t, "{\"k\\u003c\":\"\\u2028\\u0026\",\"i\":-5,"
	    "\"b\":true,\"n\":null,\"l\":[]}");
	assert_int_equal(n, strlen(t));
	free(t);
	json_decref(v);
	assert_null(gojson_dump(NULL, &n));
}

static void
test_gojson_size(void **state)
{
	char	*p, err[ERR_LEN];
	json_t	*v;
	size_t	 n = 65536;

	p = malloc(n);
	assert_non_null(p);
	memset(p, ' ', n);
	p[0] = '{';
	p[n - 2] = '}';
	v = gojson_load(p, n, err);
	assert_null(v);
	assert_non_null(strstr(err, "too long"));
	/* 65535 bytes is still accepted. */
	p[n - 3] = '}';
	p[n - 2] = ' ';
	v = gojson_load(p, n - 1, err);
	assert_non_null(v);
	json_decref(v);
	free(p);
}

static void
test_decode_go_semantics(void **state)
{
	static const char ci[] = "{\"result\":\"ok\",\"SESSIONID\":7,"
	    "\"sessiontoken\":\"tok\",\"writeNo\":3,\"READNO\":4,"
	    "\"forwardlist\":[{\"isreversetunnel\":true,\"src\":{\"port\":1,"
	    "\"NAME\":\"a\"},\"DST\":{\"Port\":2,\"name\":\"b\","
	    "\"path\":\"/x\","
	    "\"query\":\"q\",\"scheme\":\"http://\"}}]}";
	static const char unknown[] = "{\"Ver\":\"1.00\",\"Extra\":{\"deep\":"
	    "[1,2,{\"x\":null}]},\"Mode\":\"r-server\",\"Other\":1.5e300,"
	    "\"Challenge\":\"c\"} trailing garbage {";
	static const char missing[] = "{\"Response\":\"x\"}";
	static const char nulls[] = "{\"Response\":null,\"WriteNo\":null,"
	    "\"ForwardList\":[null,{\"Src\":null,\"Dst\":{\"Port\":null}}]}";
	struct msg_result r;
	struct msg_challenge c;
	struct msg_response m;
	char	 err[ERR_LEN];

	assert_int_equal(msg_result_decode(S(ci), sizeof(ci) - 1, &r, err), 0);
	assert_string_equal(r.result, "ok");
	assert_int_equal(r.session_id, 7);
	assert_string_equal(r.token, "tok");
	assert_int_equal(r.write_no, 3);
	assert_int_equal(r.read_no, 4);
	assert_int_equal(r.fwds.null, 0);
	assert_int_equal(r.fwds.n, 1);
	assert_int_equal(r.fwds.fwds[0].reverse, 1);
	assert_string_equal(r.fwds.fwds[0].src.name, "a");
	assert_int_equal(r.fwds.fwds[0].src.port, 1);
	assert_string_equal(r.fwds.fwds[0].dst.name, "b");
	assert_int_equal(r.fwds.fwds[0].dst.port, 2);
	assert_string_equal(r.fwds.fwds[0].dst.path, "/x");
	assert_string_equal(r.fwds.fwds[0].dst.query, "q");

	assert_int_equal(msg_challenge_decode(S(unknown), sizeof(unknown) - 1,
	    &c, err), 0);
	assert_string_equal(c.ver, "1.00");
	assert_string_equal(c.mode, "r-server");
	assert_string_equal(c.challenge, "c");

	/* Absent members keep Go's zero values; absent list is nil. */
	memset(&m, 0xa5, sizeof(m));
	assert_int_equal(msg_response_decode(S(missing), sizeof(missing) - 1,
	    &m, err), 0);
	assert_string_equal(m.response, "x");
	assert_string_equal(m.hint, "");
	assert_string_equal(m.token, "");
	assert_int_equal(m.write_no, 0);
	assert_int_equal(m.read_no, 0);
	assert_int_equal(m.ctrl, 0);
	assert_int_equal(m.fwds.null, 1);
	assert_int_equal(m.fwds.n, 0);

	/* null members and elements decode to zero values, as in Go. */
	assert_int_equal(msg_response_decode(S(nulls), sizeof(nulls) - 1, &m,
	    err), 0);
	assert_string_equal(m.response, "");
	assert_int_equal(m.fwds.null, 0);
	assert_int_equal(m.fwds.n, 2);
	assert_int_equal(m.fwds.fwds[0].src.port, 0);
	assert_int_equal(m.fwds.fwds[1].dst.port, 0);
}

static void
expect_response_fails(const char *json, const char *why)
{
	struct msg_response m;
	char	 err[ERR_LEN];

	err[0] = '\0';
	if (msg_response_decode(S(json), strlen(json), &m, err) != -1)
		fail_msg("accepted: %s", json);
	if (why != NULL && strstr(err, why) == NULL)
		fail_msg("%s: error '%s' lacks '%s'", json, err, why);
}

static void
test_decode_rejects(void **state)
{
	char	*big, *p;
	size_t	 i;

	expect_response_fails("{\"Response\":1}", "Response");
	expect_response_fails("{\"Hint\":true}", "Hint");
	expect_response_fails("{\"WriteNo\":\"1\"}", "WriteNo");
	expect_response_fails("{\"WriteNo\":1.0}", "WriteNo");
	expect_response_fails("{\"ReadNo\":1e2}", "ReadNo");
	expect_response_fails("{\"ReadNo\":99999999999999999999}", NULL);
	expect_response_fails("{\"Ctrl\":2147483648}", "Ctrl");
	expect_response_fails("{\"Ctrl\":false}", "Ctrl");
	expect_response_fails("{\"ForwardList\":{}}", "ForwardList");
	expect_response_fails("{\"ForwardList\":\"\"}", "ForwardList");
	expect_response_fails("{\"ForwardList\":[1]}", "ForwardList[0]");
	expect_response_fails("{\"ForwardList\":[{\"IsReverseTunnel\":1}]}",
	    "IsReverseTunnel");
	expect_response_fails("{\"ForwardList\":[{\"Src\":[]}]}", "Src");
	expect_response_fails("{\"ForwardList\":[{},{\"Dst\":{\"Port\":"
	    "65536}}]}", "ForwardList[1].Dst.Port");
	expect_response_fails("{\"ForwardList\":[{\"Dst\":{\"Port\":-1}}]}",
	    "Port");
	expect_response_fails("{\"ForwardList\":[{\"Dst\":{\"Port\":\"80\"}}]}",
	    "Port");
	expect_response_fails("{\"ForwardList\":[{\"Dst\":{\"Scheme\":1}}]}",
	    "Scheme");
	expect_response_fails("{\"ForwardList\":[{\"Dst\":{\"Name\":[]}}]}",
	    "Name");
	/* Not an object, truncated, empty. */
	expect_response_fails("[]", "object");
	expect_response_fails("\"Response\"", "object");
	expect_response_fails("null", "object");
	expect_response_fails("42", "object");
	expect_response_fails("{\"Response\":\"abc", NULL);
	expect_response_fails("{\"Response\":\"abc\"", NULL);
	expect_response_fails("", NULL);
	expect_response_fails("   ", NULL);

	/* Strings longer than the fields. */
	big = malloc(1024);
	assert_non_null(big);
	p = big + sprintf(big, "{\"Hint\":\"");
	for (i = 0; i < MSG_STR_MAX; i++)
		*p++ = 'h';
	strcpy(p, "\"}");
	expect_response_fails(big, "Hint");
	p = big + sprintf(big, "{\"ForwardList\":[{\"Src\":{\"Path\":\"");
	for (i = 0; i < ADDR_NAME_MAX; i++)
		*p++ = '/';
	strcpy(p, "\"}}]}");
	expect_response_fails(big, "Path");
	free(big);

	/* MSG_MAX_FWDS forwards fit, one more does not. */
	big = malloc(16 * (MSG_MAX_FWDS + 1) + 64);
	assert_non_null(big);
	p = big + sprintf(big, "{\"ForwardList\":[");
	for (i = 0; i < MSG_MAX_FWDS; i++)
		p += sprintf(p, "%s{}", i ? "," : "");
	strcpy(p, "]}");
	{
		struct msg_response m;
		char	 err[ERR_LEN];

		assert_int_equal(msg_response_decode(S(big), strlen(big), &m,
		    err), 0);
		assert_int_equal(m.fwds.n, MSG_MAX_FWDS);
	}
	strcpy(p, ",{}]}");
	expect_response_fails(big, "too many");
	free(big);
}

static void
test_string_limits(void **state)
{
	struct msg_challenge c;
	char	 json[MSG_STR_MAX + 32], err[ERR_LEN];
	int	 n;

	/* MSG_STR_MAX - 1 bytes fit (with the NUL). */
	n = snprintf(json, sizeof(json), "{\"Mode\":\"%0*d\"}", MSG_STR_MAX - 1,
	    0);
	assert_int_equal(msg_challenge_decode(S(json), (size_t)n, &c, err), 0);
	assert_int_equal(strlen(c.mode), MSG_STR_MAX - 1);
	n = snprintf(json, sizeof(json), "{\"Mode\":\"%0*d\"}", MSG_STR_MAX, 0);
	assert_int_equal(msg_challenge_decode(S(json), (size_t)n, &c, err), -1);
	/* Escaped \u0000 cannot be held by a C string. */
	assert_int_equal(msg_challenge_decode(L("{\"Mode\":\"a\\u0000\"}"),
	    &c, err), -1);
}

static void
test_ctrl_decode(void **state)
{
	struct msg_header h;
	struct msg_resp_header r;
	char	 err[ERR_LEN];

	/* Unknown types are returned for the caller to ignore. */
	assert_int_equal(msg_ctrl_decode(L("\x02{}"), &h, &r, err), 2);
	assert_int_equal(msg_ctrl_decode(L("\xff"), &h, &r, err), 0xff);
	/* Empty payload: no type. */
	assert_int_equal(msg_ctrl_decode(L(""), &h, &r, err), -1);
	assert_int_equal(msg_ctrl_decode(NULL, 0, &h, &r, err), -1);
	/* Known type without (valid) JSON. */
	assert_int_equal(msg_ctrl_decode(L("\x00"), &h, &r, err), -1);
	assert_int_equal(msg_ctrl_decode(L("\x01{\"Result\":tru"), &h, &r,
	    err), -1);
	assert_int_equal(msg_ctrl_decode(L("\x01[]"), &h, &r, err), -1);
	assert_int_equal(msg_ctrl_decode(L("\x01{\"Result\":\"true\"}"), &h,
	    &r, err), -1);
	assert_int_equal(msg_ctrl_decode(L("\x00{\"HostInfo\":\"x\"}"), &h,
	    &r, err), -1);
	assert_int_equal(msg_ctrl_decode(L("\x00{\"CitiId\":-1}"), &h, &r,
	    err), -1);
	assert_non_null(strstr(err, "CitiId"));
	assert_int_equal(msg_ctrl_decode(L("\x00{\"CitiId\":4294967296}"),
	    &h, &r, err), -1);
	assert_int_equal(msg_ctrl_decode(L("\x01{\"CitiId\":1.5}"), &h, &r,
	    err), -1);
	assert_int_equal(msg_ctrl_decode(L("\x00{\"HostInfo\":{\"Port\":"
	    "70000}}"), &h, &r, err), -1);
	assert_non_null(strstr(err, "HostInfo.Port"));

	/* Case-insensitive, unknown members, trailing bytes. */
	memset(&r, 0xa5, sizeof(r));
	assert_int_equal(msg_ctrl_decode(L("\x01{\"citiid\":4294967295,"
	    "\"RESULT\":true,\"x\":[]}garbage"), &h, &r, err), 1);
	assert_int_equal(r.citi, UINT32_MAX);
	assert_int_equal(r.result, 1);
	assert_string_equal(r.mess, "");
	memset(&h, 0xa5, sizeof(h));
	assert_int_equal(msg_ctrl_decode(L("\x00{}"), &h, &r, err), 0);
	assert_int_equal(h.citi, 0);
	assert_string_equal(h.host.name, "");
}

/*
 * The UDP extension: UDP forwards travel only in "TunneldUdp", written
 * when asked for; ForwardList keeps the TCP ones, as a Go peer sees them.
 */
static void
test_udp_members(void **state)
{
	struct msg_response	 m, d;
	struct msg_result	 r, rd;
	struct msg_header	 h, hd;
	char			 err[ERR_LEN], *s, *big;
	size_t			 n, i, off;

	fill_resp_54(&m);
	m.fwds.n = 3;
	m.fwds.fwds[1].udp = 1;
	host_set(&m.fwds.fwds[1].src, "127.0.0.1", 5353);
	host_set(&m.fwds.fwds[1].dst, "ns", 53);
	m.fwds.fwds[2].udp = 1;
	m.fwds.fwds[2].reverse = 1;
	host_set(&m.fwds.fwds[2].src, "", 9000);
	host_set(&m.fwds.fwds[2].dst, "::1", 9001);
	/* Not asked for: exactly kptunnel's message, UDP left out. */
	s = msg_response_encode(&m, &n);
	assert_non_null(s);
	assert_int_equal(n, sizeof(resp_54) - 1);
	assert_memory_equal(s, resp_54, n);
	free(s);
	m.window = 256;
	m.udp = 1;
	s = msg_response_encode(&m, &n);
	assert_non_null(s);
	assert_non_null(strstr(s, "}}],\"TunneldWindow\":256,\"TunneldUdp\":"
	    "[{\"IsReverseTunnel\":false,\"Src\":{\"Scheme\":\"\",\"Name\":"
	    "\"127.0.0.1\",\"Port\":5353,"));
	assert_int_equal(msg_response_decode(S(s), n, &d, err), 0);
	free(s);
	assert_memory_equal(&m, &d, sizeof(m));
	/* An empty member still says "UDP understood". */
	memset(&r, 0, sizeof(r));
	strcpy(r.result, "ok");
	r.udp = 1;
	s = msg_result_encode(&r, &n);
	assert_non_null(s);
	assert_non_null(strstr(s, "\"ForwardList\":[],\"TunneldUdp\":[]}"));
	assert_int_equal(msg_result_decode(S(s), n, &rd, err), 0);
	free(s);
	assert_int_equal(rd.udp, 1);
	assert_int_equal(rd.fwds.n, 0);
	assert_int_equal(msg_result_decode(L("{\"Result\":\"ok\"}"), &rd,
	    err), 0);
	assert_int_equal(rd.udp, 0);
	assert_int_equal(msg_result_decode(L("{\"TunneldUdp\":null}"), &rd,
	    err), 0);
	assert_int_equal(rd.udp, 0);
	/* A null ForwardList with UDP forwards is a list. */
	assert_int_equal(msg_result_decode(L("{\"ForwardList\":null,"
	    "\"TunneldUdp\":[{\"Src\":{\"Port\":1}}]}"), &rd, err), 0);
	assert_true(rd.udp && rd.fwds.n == 1 && !rd.fwds.null &&
	    rd.fwds.fwds[0].udp && rd.fwds.fwds[0].src.port == 1);
	/* Refusals. */
	assert_int_equal(msg_result_decode(L("{\"TunneldUdp\":{}}"), &rd,
	    err), -1);
	assert_non_null(strstr(err, "TunneldUdp: not an array"));
	assert_int_equal(msg_result_decode(L("{\"TunneldUdp\":[1]}"), &rd,
	    err), -1);
	assert_non_null(strstr(err, "TunneldUdp[0]"));
	assert_int_equal(msg_response_decode(L("{\"TunneldUdp\":[{\"Dst\":"
	    "{\"Port\":65536}}]}"), &d, err), -1);
	assert_non_null(strstr(err, "TunneldUdp[0].Dst"));
	/* At most MSG_MAX_FWDS of both kinds together. */
	big = malloc(64 * 1024);
	assert_non_null(big);
	off = (size_t)sprintf(big, "{\"ForwardList\":[{}],\"TunneldUdp\":[");
	for (i = 0; i < MSG_MAX_FWDS; i++)
		off += (size_t)sprintf(big + off, "%s{}", i ? "," : "");
	off += (size_t)sprintf(big + off, "]}");
	assert_int_equal(msg_result_decode(S(big), off, &rd, err), -1);
	assert_non_null(strstr(err, "too many forwards"));
	free(big);

	/* The UDP stream's header: its own type byte, the same body. */
	memset(&h, 0, sizeof(h));
	host_set(&h.host, "ns", 53);
	h.citi = 0x80000002;
	h.udp = 1;
	s = msg_header_encode(&h, &n);
	assert_non_null(s);
	assert_int_equal((uint8_t)s[0], MSG_CTRL_UDP_HEADER);
	assert_int_equal(msg_ctrl_decode(S(s), n, &hd, NULL, err),
	    MSG_CTRL_UDP_HEADER);
	free(s);
	assert_memory_equal(&h, &hd, sizeof(h));
	h.udp = 0;
	s = msg_header_encode(&h, &n);
	assert_int_equal(msg_ctrl_decode(S(s), n, &hd, NULL, err),
	    MSG_CTRL_HEADER);
	free(s);
	assert_int_equal(hd.udp, 0);
	assert_int_equal(msg_ctrl_decode(L("\x80{\"CitiId\":-1}"), &hd, NULL,
	    err), -1);
}

static void
test_roundtrip_many(void **state)
{
	struct msg_result m, d;
	char	 err[ERR_LEN], *s;
	size_t	 n, i;

	memset(&m, 0, sizeof(m));
	strcpy(m.result, "ok");
	m.session_id = INT64_MIN;
	m.write_no = INT64_MAX;
	m.read_no = 12345;
	strcpy(m.token, "a+b/c=");
	m.fwds.n = MSG_MAX_FWDS;
	for (i = 0; i < MSG_MAX_FWDS; i++) {
		m.fwds.fwds[i].reverse = (int)(i & 1);
		host_set(&m.fwds.fwds[i].src, i % 3 ? "" : "2001:db8::1",
		    (int)i);
		host_set(&m.fwds.fwds[i].dst, "h\xc3\xa9<>", 65535 - (int)i);
		snprintf(m.fwds.fwds[i].dst.path,
		    sizeof(m.fwds.fwds[i].dst.path), "/p%zu", i);
		strcpy(m.fwds.fwds[i].dst.query, "x=1&y=2");
	}
	s = msg_result_encode(&m, &n);
	assert_non_null(s);
	assert_int_equal(strlen(s), n);
	assert_null(strchr(s, '<'));
	assert_null(strchr(s, '&'));
	assert_int_equal(msg_result_decode(S(s), n, &d, err), 0);
	assert_memory_equal(&m, &d, sizeof(m));
	free(s);

	/* More forwards than the struct holds cannot be encoded. */
	m.fwds.n = MSG_MAX_FWDS + 1;
	assert_null(msg_result_encode(&m, &n));
}

/* Go's bytes decode and encode back to exactly the same bytes. */
static void
test_go_bytes_identity(void **state)
{
	static const char *const chal[] = {
		"{\"Ver\":\"1.00\",\"Challenge\":"
		"\"ORemj2aCYExdYNwfhZaoV8HPqygjAkeMMGEKPavz27c=\","
		"\"Mode\":\"wsserver\"}",
		"{\"Ver\":\"1.00\",\"Challenge\":"
		"\"DDPib5P3lbgsP8LGO2gFJq7qaWPFHJfA6L3iMumWU/k=\","
		"\"Mode\":\"r-wsserver\"}",
	};
	static const char *const resp[] = {
		resp_54, resp_reconnect,
		"{\"Response\":\"OGj48JGfMWJYFIilyBfRbuU4ayKIU/urOxmZ6xSLVpP"
		"ZxR5cBNKd81IaPmsAcMbJJB0L3bFuRPY7fBw0NUcR9g==\",\"Hint\":"
		"\"b4aPkROQffACTZpjUPVqRF1/mOnRxqzLwr9bKxdLPs8=\","
		"\"SessionToken\":\"\",\"WriteNo\":0,\"ReadNo\":0,"
		"\"Ctrl\":0,\"ForwardList\":[]}",
	};
	static const char *const res[] = {
		result_rws,
		"{\"Result\":\"ok\",\"SessionId\":1,\"SessionToken\":"
		"\"54docndSIOoM\",\"WriteNo\":0,\"ReadNo\":0,"
		"\"ForwardList\":[]}",
	};
	static const char hdr[] = "\x00{\"HostInfo\":{\"Scheme\":\"\",\"Name\":"
	    "\"127.0.0.1\",\"Port\":44779,\"Path\":\"\",\"Query\":\"\"},"
	    "\"CitiId\":1}";
	static const char rh[] = "\x01{\"Result\":true,\"Mess\":"
	    "\"\\u003cnil\\u003e\",\"CitiId\":2}";
	struct msg_challenge c;
	struct msg_response m;
	struct msg_result r;
	struct msg_header h;
	struct msg_resp_header rr;
	char	 err[ERR_LEN];
	size_t	 i, n;

	for (i = 0; i < sizeof(chal) / sizeof(chal[0]); i++) {
		assert_int_equal(msg_challenge_decode(S(chal[i]),
		    strlen(chal[i]), &c, err), 0);
		expect_bytes(msg_challenge_encode(&c, &n), &n, chal[i],
		    strlen(chal[i]));
	}
	for (i = 0; i < sizeof(resp) / sizeof(resp[0]); i++) {
		assert_int_equal(msg_response_decode(S(resp[i]),
		    strlen(resp[i]), &m, err), 0);
		expect_bytes(msg_response_encode(&m, &n), &n, resp[i],
		    strlen(resp[i]));
	}
	for (i = 0; i < sizeof(res) / sizeof(res[0]); i++) {
		assert_int_equal(msg_result_decode(S(res[i]), strlen(res[i]),
		    &r, err), 0);
		expect_bytes(msg_result_encode(&r, &n), &n, res[i],
		    strlen(res[i]));
	}
	assert_int_equal(msg_ctrl_decode(L(hdr), &h, &rr, err), 0);
	expect_bytes(msg_header_encode(&h, &n), &n, hdr, sizeof(hdr) - 1);
	assert_int_equal(msg_ctrl_decode(L(rh), &h, &rr, err), 1);
	expect_bytes(msg_resp_header_encode(&rr, &n), &n, rh, sizeof(rh) - 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_challenge_encode),
		cmocka_unit_test(test_response_encode),
		cmocka_unit_test(test_response_null_list),
		cmocka_unit_test(test_result_encode),
		cmocka_unit_test(test_ctrl_encode),
		cmocka_unit_test(test_escapes),
		cmocka_unit_test(test_gojson),
		cmocka_unit_test(test_gojson_size),
		cmocka_unit_test(test_decode_go_semantics),
		cmocka_unit_test(test_decode_rejects),
		cmocka_unit_test(test_string_limits),
		cmocka_unit_test(test_ctrl_decode),
		cmocka_unit_test(test_roundtrip_many),
		cmocka_unit_test(test_udp_members),
		cmocka_unit_test(test_go_bytes_identity),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
