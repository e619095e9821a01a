/*
 * The shared text helpers of common/: text_* (hex, percent-decoding),
 * mode_* (kptunnel's modes), http_* (tokens and header lists),
 * wsup_check_headers (the one RFC 6455 upgrade rule), addr_split and
 * opt_parse (the option-table walker).
 */

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"
#include "err.h"
#include "http.h"
#include "mode.h"
#include "opt.h"
#include "text.h"
#include "wsup.h"

static void
test_hex(void **state)
{
	assert_int_equal(text_hexval('0'), 0);
	assert_int_equal(text_hexval('a'), 10);
	assert_int_equal(text_hexval('F'), 15);
	assert_int_equal(text_hexval('g'), -1);
	assert_int_equal(text_hexval('\0'), -1);
	assert_int_equal(text_hexdigit(0xab, 0), 'b');
	assert_int_equal(text_hexdigit(0xab, 1), 'B');
	assert_int_equal(text_hexdigit(9, 1), '9');
}

static ssize_t
dec(const char *in, char *out, size_t cap, int flags)
{
	ssize_t	n = text_pct_decode(in, strlen(in), out, cap, flags);

	if (n >= 0)
		out[n] = '\0';
	return n;
}

static void
test_pct_decode(void **state)
{
	char	out[64];

	assert_int_equal(dec("a%41b%2f", out, 63, 0), 4);
	assert_string_equal(out, "aAb/");
	/* Strict: a bad or cut escape fails; '+' is itself. */
	assert_int_equal(dec("a%4", out, 63, 0), -1);
	assert_int_equal(dec("a%zz", out, 63, 0), -1);
	assert_int_equal(dec("a+b", out, 63, 0), 3);
	assert_string_equal(out, "a+b");
	/* Form and lenient, as query strings are read. */
	assert_int_equal(dec("a+b%zz%4", out, 63,
	    TEXT_PCT_FORM | TEXT_PCT_LENIENT), 8);
	assert_string_equal(out, "a b%zz%4");
	assert_int_equal(dec("%00", out, 63, 0), 1);
	assert_int_equal(out[0], '\0');
	/* The output bound counts decoded bytes. */
	assert_int_equal(dec("%41%42", out, 2, 0), 2);
	assert_int_equal(dec("%41%42c", out, 2, 0), -1);
	assert_int_equal(dec("", out, 0, 0), 0);
}

static void
test_modes(void **state)
{
	assert_int_equal(mode_lookup("wsserver"), 0);
	assert_int_equal(mode_lookup("r-client"), MODE_COUNT - 1);
	assert_int_equal(mode_lookup("WSSERVER"), -1);
	assert_int_equal(mode_lookup(NULL), -1);
	assert_string_equal(mode_name(mode_lookup("r-wsclient")),
	    "r-wsclient");
	assert_string_equal(mode_name(MODE_COUNT), "unknown");
	assert_int_equal(mode_flags(mode_lookup("r-wsserver")),
	    MODE_F_SERVER | MODE_F_WS | MODE_F_REVERSE);
	assert_int_equal(mode_flags(mode_lookup("client")), 0);
	assert_true(mode_name_is_server("server"));
	assert_true(mode_name_is_server("r-wsserver"));
	assert_false(mode_name_is_server("wsclient"));
	assert_false(mode_name_is_server("x"));
	assert_true(mode_name_is_reverse_server("r-server"));
	assert_false(mode_name_is_reverse_server("wsserver"));
	assert_false(mode_name_is_reverse_server("r-client"));
}

static void
test_tokens(void **state)
{
	assert_true(http_tchar('a') && http_tchar('~') && http_tchar('!'));
	assert_false(http_tchar(':') || http_tchar(' ') || http_tchar('\0'));
	assert_true(http_has_token("keep-alive, Upgrade", 19, "upgrade"));
	assert_true(http_has_token(" upgrade ", 9, "upgrade"));
	assert_false(http_has_token("upgrades", 8, "upgrade"));
	assert_false(http_has_token("", 0, "upgrade"));
	assert_true(http_has_token("a,,upgrade", 10, "upgrade"));
	assert_true(http_caseeq("WebSocket", 9, "websocket"));
	assert_false(http_caseeq("websocket", 8, "websocket"));
}

/* Headers from "name", "value" pairs, ended by NULL. */
static void
hdrs(struct http_hdrs *hs, ...)
{
	va_list		 ap;
	const char	*n, *v;

	hs->n = 0;
	va_start(ap, hs);
	while ((n = va_arg(ap, const char *)) != NULL) {
		v = va_arg(ap, const char *);
		assert_int_equal(http_hdr_add(hs, n, strlen(n), v, strlen(v)),
		    0);
	}
	va_end(ap);
}

#define KEY	"dGhlIHNhbXBsZSBub25jZQ=="

static void
check(struct http_hdrs *hs, int want_status, const char *why)
{
	char	err[ERR_LEN];
	int	status = 0;

	err[0] = '\0';
	assert_int_equal(wsup_check_headers(hs, &status, err), -1);
	assert_int_equal(status, want_status);
	assert_string_equal(err, why);
}

static void
test_upgrade_check(void **state)
{
	struct http_hdrs hs;
	int		 status = 0;

	hdrs(&hs, "Upgrade", "websocket", "connection", "keep-alive, Upgrade",
	    "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", KEY, NULL);
	assert_int_equal(wsup_check_headers(&hs, &status, NULL), 3);
	hdrs(&hs, "Upgrade", "h2c", "Connection", "upgrade", NULL);
	check(&hs, 400, "not websocket protocol");
	hdrs(&hs, "Upgrade", "websocket", "Connection", "upgrade", NULL);
	check(&hs, 426, "missing Sec-WebSocket-Version");
	hdrs(&hs, "Upgrade", "websocket", "Connection", "upgrade",
	    "Sec-WebSocket-Version", "13", "Sec-WebSocket-Version", "8",
	    NULL);
	check(&hs, 426, "unsupported websocket version");
	hdrs(&hs, "Upgrade", "websocket", "Connection", "upgrade",
	    "Sec-WebSocket-Version", "13", NULL);
	check(&hs, 400, "missing Sec-WebSocket-Key");
	hdrs(&hs, "Upgrade", "websocket", "Connection", "upgrade",
	    "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key", KEY,
	    "sec-websocket-key", KEY, NULL);
	check(&hs, 400, "duplicate Sec-WebSocket-Key");
	/* 24 bytes, but not base64 of 16: the front let this through once. */
	hdrs(&hs, "Upgrade", "websocket", "Connection", "upgrade",
	    "Sec-WebSocket-Version", "13", "Sec-WebSocket-Key",
	    "!!!!!!!!!!!!!!!!!!!!!!==", NULL);
	check(&hs, 400, "invalid Sec-WebSocket-Key");
}

static void
split(const char *s, int want, const char *host, const char *port)
{
	struct addr_span h, p;

	assert_int_equal(addr_split(s, strlen(s), &h, &p), want);
	if (host != NULL) {
		assert_int_equal(h.n, strlen(host));
		assert_memory_equal(h.p, host, h.n);
	}
	if (port != NULL) {
		assert_int_equal(p.n, strlen(port));
		assert_memory_equal(p.p, port, p.n);
	}
}

static void
test_addr_split(void **state)
{
	split("h:80", ADDR_SPLIT_OK, "h", "80");
	split(":80", ADDR_SPLIT_OK, "", "80");
	split("h:", ADDR_SPLIT_OK, "h", "");
	split("[::1]:80", ADDR_SPLIT_OK, "::1", "80");
	split("[::1]:80:9", ADDR_SPLIT_OK, "::1", "80:9");
	split("[::1", ADDR_SPLIT_BRACKET, NULL, NULL);
	split("[::1]", ADDR_SPLIT_NO_PORT, "::1", NULL);
	split("[::1]x80", ADDR_SPLIT_NO_PORT, "::1", NULL);
	split("h", ADDR_SPLIT_NO_PORT, NULL, NULL);
	split("", ADDR_SPLIT_NO_PORT, NULL, NULL);
	split("h:1:2", ADDR_SPLIT_COLONS, "h", "1:2");
}

/* opt_parse with a small table; the callbacks log what they see. */
struct log {
	char	text[256];
	int	stop_at;
};

static const struct opt_def defs[] = {
	{ "name", 1, 0 },
	{ "flag", 2, 1 },
	{ "stop", 3, 1 },
};

static int
log_option(void *arg, const struct opt_def *def, const char *val, char *err)
{
	struct log	*l = arg;
	size_t		 n = strlen(l->text);

	snprintf(l->text + n, sizeof(l->text) - n, "%s=%s;", def->name,
	    val != NULL ? val : "(null)");
	return def->id == 3 ? 1 : 0;
}

static int
log_positional(void *arg, const char *s, char *err)
{
	struct log	*l = arg;
	size_t		 n = strlen(l->text);

	if (strcmp(s, "bad") == 0) {
		err_set(err, "bad positional");
		return -1;
	}
	snprintf(l->text + n, sizeof(l->text) - n, "[%s]", s);
	return 0;
}

static int
walk(int flags, struct log *l, char *err, ...)
{
	struct opt_parser p = { defs, 3, flags, log_option, log_positional,
	    NULL };
	char		*argv[16];
	va_list		 ap;
	int		 argc = 1;

	memset(l, 0, sizeof(*l));
	p.arg = l;
	argv[0] = "prog";
	va_start(ap, err);
	while ((argv[argc] = va_arg(ap, char *)) != NULL)
		argc++;
	va_end(ap);
	err[0] = '\0';
	return opt_parse(&p, argc, argv, err);
}

static void
test_opt_parse(void **state)
{
	struct log	l;
	char		err[ERR_LEN];

	assert_int_equal(walk(0, &l, err, "a", "-name", "v", "--flag", "b",
	    "-name=x=y", "-", "--flag=0", NULL), 0);
	assert_string_equal(l.text,
	    "[a]name=v;flag=(null);[b]name=x=y;[-]flag=0;");
	/* A callback stops the walk: what follows is not read. */
	assert_int_equal(walk(0, &l, err, "-stop", "-nosuch", NULL), 1);
	assert_int_equal(walk(0, &l, err, "-nosuch", "v", NULL), -1);
	assert_string_equal(err, "unknown option -nosuch");
	assert_int_equal(walk(0, &l, err, "--nosuch=v", NULL), -1);
	assert_string_equal(err, "unknown option -nosuch");
	assert_int_equal(walk(0, &l, err, "-name", NULL), -1);
	assert_string_equal(err, "option -name needs a value");
	assert_int_equal(walk(0, &l, err, "bad", NULL), -1);
	assert_string_equal(err, "bad positional");
	/* Without Go syntax "--" is an option named "". */
	assert_int_equal(walk(0, &l, err, "--", "a", NULL), -1);
	assert_string_equal(err, "unknown option -");
	/* With it, "--" ends the options and odd names are refused. */
	assert_int_equal(walk(OPT_GO_SYNTAX, &l, err, "--", "-name", NULL), 0);
	assert_string_equal(l.text, "[-name]");
	assert_int_equal(walk(OPT_GO_SYNTAX, &l, err, "---name", "v", NULL),
	    -1);
	assert_string_equal(err, "bad option syntax: ---name");
	assert_int_equal(walk(OPT_GO_SYNTAX, &l, err, "-=v", NULL), -1);
	assert_string_equal(err, "bad option syntax: -=v");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_hex),
		cmocka_unit_test(test_pct_decode),
		cmocka_unit_test(test_modes),
		cmocka_unit_test(test_tokens),
		cmocka_unit_test(test_upgrade_check),
		cmocka_unit_test(test_addr_split),
		cmocka_unit_test(test_opt_parse),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
