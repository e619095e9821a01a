/*
 * cli_*: kptunnel's command line (wire spec 8.1-8.3) with Go flag syntax,
 * tunneld's added options, defaults, usage errors, --help and --version.
 */

#include <sys/stat.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "cli.h"
#include "err.h"

#define ARGV(...)	((char *[]){ "tunneld", __VA_ARGS__, NULL })

static char	out[16384];	/* as main.c's */
static char	err[ERR_LEN];

static int
parse(struct cli_opts *o, char **argv)
{
	int	 argc = 0;

	while (argv[argc] != NULL)
		argc++;
	out[0] = '\0';
	err[0] = '\0';
	return cli_parse(argc, argv, o, out, sizeof(out), err);
}

static void
expect_ok(struct cli_opts *o, char **argv)
{
	if (parse(o, argv) != 0)
		fail_msg("rejected: %s", err);
}

static void
expect_usage_error(char **argv, const char *why)
{
	struct cli_opts	 o;

	if (parse(&o, argv) != -1)
		fail_msg("accepted, wanted '%s'", why);
	if (strstr(err, why) == NULL)
		fail_msg("error '%s' lacks '%s'", err, why);
	/* Nothing is left allocated after a usage error. */
	assert_null(o.pass);
	assert_null(o.encpass);
	cli_free(&o);
}

static int
is_uuid4(const char *s)
{
	size_t	 i;

	if (strlen(s) != 36)
		return 0;
	for (i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23) {
			if (s[i] != '-')
				return 0;
		} else if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	}
	return s[14] == '4' && strchr("89ab", s[19]) != NULL;
}

static void
test_defaults(void **state)
{
	struct cli_opts	 o, p;

	expect_ok(&o, ARGV("wsserver", ":8000"));
	assert_int_equal(o.mode, MODE_WSSERVER);
	assert_string_equal(o.server.name, "");
	assert_int_equal(o.server.port, 8000);
	assert_int_equal(o.fwds.n, 0);
	assert_non_null(o.pass);
	assert_string_equal(o.pass, "");
	assert_non_null(o.encpass);
	assert_string_equal(o.encpass, "");
	assert_int_equal(o.enc_count, -1);
	assert_int_equal(o.ncidr, 0);
	assert_int_equal(o.interval, 20);
	assert_string_equal(o.header, "");
	assert_string_equal(o.wspath, "/");
	assert_true(is_uuid4(o.session));
	assert_string_equal(o.ua, "Go Http Client");
	assert_string_equal(o.ctrl, "");
	assert_int_equal(o.omit, 0);
	assert_int_equal(o.verbose, 0);
	assert_int_equal(o.handshake_timeout, 10);
	assert_int_equal(o.open_timeout, 30);
	assert_int_equal(o.session_timeout, 600);
	assert_string_equal(o.proxy, "");
	assert_int_equal(o.tls, 0);
	assert_string_equal(o.cafile, "");
	assert_int_equal(o.insecure, 0);
	assert_int_equal(o.renew, 0);

	/* A fresh session id per run. */
	expect_ok(&p, ARGV("wsserver", ":8000"));
	assert_true(is_uuid4(p.session));
	assert_string_not_equal(o.session, p.session);
	cli_free(&o);
	cli_free(&p);
	assert_null(o.pass);
	assert_null(o.encpass);
	cli_free(&o);		/* twice is harmless */
	cli_free(NULL);
}

static void
test_spellings(void **state)
{
	struct cli_opts	 o;

	expect_ok(&o, ARGV("wsserver", ":1", "-pass", "a"));
	assert_string_equal(o.pass, "a");
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "--pass", "b"));
	assert_string_equal(o.pass, "b");
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "-pass=c=d"));
	assert_string_equal(o.pass, "c=d");
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "--pass=", "--encPass=e"));
	assert_string_equal(o.pass, "");
	assert_string_equal(o.encpass, "e");
	cli_free(&o);
	/* A value is taken even when it looks like an option. */
	expect_ok(&o, ARGV("wsserver", ":1", "-pass", "-verbose"));
	assert_string_equal(o.pass, "-verbose");
	assert_int_equal(o.verbose, 0);
	cli_free(&o);

	/* Booleans: bare, =value in Go's ParseBool spellings. */
	expect_ok(&o, ARGV("wsserver", ":1", "-omit", "--verbose"));
	assert_int_equal(o.omit, 1);
	assert_int_equal(o.verbose, 1);
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "-omit=true", "--tls=1",
	    "-insecure=T"));
	assert_int_equal(o.omit, 1);
	assert_int_equal(o.tls, 1);
	assert_int_equal(o.insecure, 1);
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "-omit", "-omit=false",
	    "--verbose=FALSE", "-tls=0", "-insecure=f", "-debug=False"));
	assert_int_equal(o.omit, 0);
	assert_int_equal(o.verbose, 0);
	assert_int_equal(o.tls, 0);
	assert_int_equal(o.insecure, 0);
	cli_free(&o);
	expect_ok(&o, ARGV("wsclient", "h:1", ":2,h:3", "-renew"));
	assert_int_equal(o.renew, 1);
	cli_free(&o);
	/* -debug is -verbose. */
	expect_ok(&o, ARGV("wsserver", ":1", "-debug"));
	assert_int_equal(o.verbose, 1);
	cli_free(&o);
	/* A bare boolean does not eat the next argument. */
	expect_ok(&o, ARGV("-omit", "wsclient", "h:1"));
	assert_int_equal(o.omit, 1);
	assert_int_equal(o.mode, MODE_WSCLIENT);
	cli_free(&o);
}

static void
test_interleave(void **state)
{
	struct cli_opts	 o;

	expect_ok(&o, ARGV("-pass", "p", "wsclient", "-int", "5",
	    "localhost:80", "-verbose", ":1,h:2", "--encCount=3",
	    "r,:3,h:4", "-encPass", "e"));
	assert_int_equal(o.mode, MODE_WSCLIENT);
	assert_string_equal(o.server.name, "localhost");
	assert_int_equal(o.server.port, 80);
	assert_int_equal(o.fwds.n, 2);
	assert_int_equal(o.fwds.fwds[0].reverse, 0);
	assert_int_equal(o.fwds.fwds[0].src.port, 1);
	assert_int_equal(o.fwds.fwds[1].reverse, 1);
	assert_int_equal(o.fwds.fwds[1].dst.port, 4);
	assert_string_equal(o.pass, "p");
	assert_string_equal(o.encpass, "e");
	assert_int_equal(o.interval, 5);
	assert_int_equal(o.enc_count, 3);
	assert_int_equal(o.verbose, 1);
	assert_int_equal(o.fwds.null, 0);
	cli_free(&o);

	/* "--" ends the options; "-" alone is a positional. */
	expect_ok(&o, ARGV("-omit", "--", "wsclient", "h:1"));
	assert_int_equal(o.mode, MODE_WSCLIENT);
	cli_free(&o);
	expect_usage_error(ARGV("wsserver", ":1", "--", "-pass", "x"),
	    "forward '-pass'");
	expect_usage_error(ARGV("-"), "unknown mode '-'");
}

static void
test_modes_and_forwards(void **state)
{
	static const struct {
		const char	*name;
		enum cli_mode	 mode;
		int		 server, ws, reverse, needs;
	} m[] = {
		{ "wsserver",	MODE_WSSERVER,		1, 1, 0, 0 },
		{ "r-wsserver",	MODE_R_WSSERVER,	1, 1, 1, 1 },
		{ "server",	MODE_SERVER,		1, 0, 0, 0 },
		{ "r-server",	MODE_R_SERVER,		1, 0, 1, 1 },
		{ "wsclient",	MODE_WSCLIENT,		0, 1, 0, 1 },
		{ "r-wsclient",	MODE_R_WSCLIENT,	0, 1, 1, 0 },
		{ "client",	MODE_CLIENT,		0, 0, 0, 1 },
		{ "r-client",	MODE_R_CLIENT,		0, 0, 1, 0 },
	};
	struct cli_opts	 o;
	char		 why[64];
	size_t		 i;

	for (i = 0; i < sizeof(m) / sizeof(m[0]); i++) {
		assert_string_equal(cli_mode_name(m[i].mode), m[i].name);
		assert_int_equal(cli_mode_is_server(m[i].mode), m[i].server);
		assert_int_equal(cli_mode_is_ws(m[i].mode), m[i].ws);
		assert_int_equal(cli_mode_is_reverse(m[i].mode), m[i].reverse);

		expect_ok(&o, ARGV((char *)m[i].name, "h:1", ":2,h:3",
		    "t,:4,h:5", "r,:6,h:7"));
		assert_int_equal(o.mode, m[i].mode);
		assert_int_equal(o.fwds.n, 3);
		/* Unprefixed forwards take the mode's direction. */
		assert_int_equal(o.fwds.fwds[0].reverse, m[i].reverse);
		assert_int_equal(o.fwds.fwds[1].reverse, 0);
		assert_int_equal(o.fwds.fwds[2].reverse, 1);
		cli_free(&o);

		if (m[i].needs) {
			snprintf(why, sizeof(why),
			    "mode %s needs at least one forward", m[i].name);
			expect_usage_error(ARGV((char *)m[i].name, "h:1"), why);
			/* -omit or any -ctrl lifts the requirement. */
			expect_ok(&o, ARGV((char *)m[i].name, "h:1", "-omit"));
			cli_free(&o);
			expect_ok(&o, ARGV((char *)m[i].name, "h:1", "-ctrl",
			    "stop"));
			assert_string_equal(o.ctrl, "stop");
			cli_free(&o);
			expect_ok(&o, ARGV((char *)m[i].name, "h:1", "-ctrl",
			    "whatever"));
			cli_free(&o);
		} else {
			expect_ok(&o, ARGV((char *)m[i].name, "h:1"));
			assert_int_equal(o.fwds.n, 0);
			cli_free(&o);
		}
	}

	expect_ok(&o, ARGV("wsclient", "[::1]:80", "t,[::1]:8080,"
	    "[2001:db8::1]:22"));
	assert_string_equal(o.server.name, "::1");
	assert_string_equal(o.fwds.fwds[0].src.name, "::1");
	assert_string_equal(o.fwds.fwds[0].dst.name, "2001:db8::1");
	assert_int_equal(o.fwds.fwds[0].dst.port, 22);
	cli_free(&o);
}

static void
test_numbers(void **state)
{
	struct cli_opts	 o;

	/* kptunnel forces keepalive intervals below 2 s up to 2 s. */
	expect_ok(&o, ARGV("wsserver", ":1", "-int", "1"));
	assert_int_equal(o.interval, 2);
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "-int=-7"));
	assert_int_equal(o.interval, 2);
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "-int", "3"));
	assert_int_equal(o.interval, 3);
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "-encCount", "0"));
	assert_int_equal(o.enc_count, 0);
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "-encCount", "+7"));
	assert_int_equal(o.enc_count, 7);
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "-encCount=-2147483648"));
	assert_int_equal(o.enc_count, -2147483647 - 1);
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "-handshakeTimeout", "5",
	    "-openTimeout=7", "--sessionTimeout", "60"));
	assert_int_equal(o.handshake_timeout, 5);
	assert_int_equal(o.open_timeout, 7);
	assert_int_equal(o.session_timeout, 60);
	cli_free(&o);

	expect_usage_error(ARGV("wsserver", ":1", "-encCount", "x"),
	    "-encCount: not a number: x");
	expect_usage_error(ARGV("wsserver", ":1", "-encCount", ""),
	    "-encCount: not a number: ");
	expect_usage_error(ARGV("wsserver", ":1", "-encCount", "-"),
	    "-encCount: not a number: -");
	expect_usage_error(ARGV("wsserver", ":1", "-encCount", "1.5"),
	    "-encCount: not a number: 1.5");
	expect_usage_error(ARGV("wsserver", ":1", "-encCount",
	    "2147483648"), "-encCount: out of range");
	expect_usage_error(ARGV("wsserver", ":1", "-encCount",
	    "99999999999999999999999"), "-encCount: out of range");
	expect_usage_error(ARGV("wsserver", ":1", "-int", "2s"),
	    "-int: not a number: 2s");
	expect_usage_error(ARGV("wsserver", ":1", "-int", "99999999"),
	    "-int: out of range");
	expect_usage_error(ARGV("wsserver", ":1", "-handshakeTimeout", "0"),
	    "-handshakeTimeout: out of range");
	expect_usage_error(ARGV("wsserver", ":1", "-openTimeout", "-1"),
	    "-openTimeout: out of range");
	expect_usage_error(ARGV("wsserver", ":1", "-sessionTimeout", "x"),
	    "-sessionTimeout: not a number");
}

static void
test_ip(void **state)
{
	struct cli_opts	 o;

	expect_ok(&o, ARGV("wsserver", ":1", "-ip", "10.0.0.0/8", "-ip=::1",
	    "--ip", "192.168.0.0/16,2001:db8::/32"));
	assert_int_equal(o.ncidr, 4);
	assert_int_equal(o.cidrs[0].bits, 8);
	assert_int_equal(o.cidrs[1].bits, 128);
	assert_int_equal(o.cidrs[2].bits, 16);
	assert_int_equal(o.cidrs[3].bits, 32);
	cli_free(&o);

	expect_usage_error(ARGV("wsserver", ":1", "-ip", "10.0.0.0/33"),
	    "-ip: 10.0.0.0/33");
	expect_usage_error(ARGV("wsserver", ":1", "-ip", "localhost"),
	    "-ip: localhost");
	expect_usage_error(ARGV("wsserver", ":1", "-ip", "1.2.3.4,"),
	    "-ip");
	expect_usage_error(ARGV("wsserver", ":1", "-ip",
	    "1::1,1::2,1::3,1::4,1::5,1::6,1::7,1::8,1::9,1::10,1::11,1::12,"
	    "1::13,1::14,1::15,1::16,1::17,1::18,1::19,1::20,1::21,1::22,"
	    "1::23,1::24,1::25,1::26,1::27,1::28,1::29,1::30,1::31,1::32,"
	    "1::33"), "too many");
}

static void
test_header(void **state)
{
	struct cli_opts	 o;

	expect_ok(&o, ARGV("wsserver", ":1", "-header", "x-test: val "));
	assert_string_equal(o.header, "X-Test: val");
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "-header=X-FOO-bar:v:w"));
	assert_string_equal(o.header, "X-Foo-Bar: v:w");
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "-header",
	    " content-type \t:  a  b\t "));
	assert_string_equal(o.header, "Content-Type: a  b");
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "-header", "authorization:"));
	assert_string_equal(o.header, "Authorization: ");
	cli_free(&o);
	/* Only the last -header counts, as in kptunnel. */
	expect_ok(&o, ARGV("wsserver", ":1", "-header", "a: 1", "--header",
	    "b-c: 2"));
	assert_string_equal(o.header, "B-C: 2");
	cli_free(&o);

	expect_usage_error(ARGV("wsserver", ":1", "-header", "nocolon"),
	    "-header: 'nocolon'");
	expect_usage_error(ARGV("wsserver", ":1", "-header", ": v"),
	    "-header: invalid header name");
	expect_usage_error(ARGV("wsserver", ":1", "-header", "a b: v"),
	    "-header: invalid header name");
	expect_usage_error(ARGV("wsserver", ":1", "-header", "a: v\r\nX: y"),
	    "-header: invalid character");
}

static void
test_strings(void **state)
{
	struct cli_opts	 o;
	char		 big[1100];

	expect_ok(&o, ARGV("wsclient", "h:1", "-omit", "-wspath", "/ws/x",
	    "-session", "11111111-2222-3333-4444-555555555555", "-UA",
	    "My Agent/1.0", "-proxy", "http://u:p@proxy:3128/", "-tls",
	    "-cafile", "/etc/ssl/ca.pem", "-insecure", "-console", ":9000",
	    "-prof", ":6060", "-intlog", "-ctrl", "bench"));
	assert_string_equal(o.wspath, "/ws/x");
	assert_string_equal(o.session,
	    "11111111-2222-3333-4444-555555555555");
	assert_string_equal(o.ua, "My Agent/1.0");
	assert_string_equal(o.proxy, "http://u:p@proxy:3128/");
	assert_int_equal(o.tls, 1);
	assert_string_equal(o.cafile, "/etc/ssl/ca.pem");
	assert_int_equal(o.insecure, 1);
	assert_string_equal(o.ctrl, "bench");
	cli_free(&o);
	/* The proxy URL may hold a password: cli_free wipes it. */
	assert_string_equal(o.proxy, "");

	/* Repeated secrets: the last wins (and ASan sees no leak). */
	expect_ok(&o, ARGV("wsserver", ":1", "-pass", "a", "-pass", "b",
	    "-encPass", "c", "-encPass", "d"));
	assert_string_equal(o.pass, "b");
	assert_string_equal(o.encpass, "d");
	cli_free(&o);

	expect_usage_error(ARGV("wsserver", ":1", "-wspath", "ws"),
	    "-wspath: must start with '/'");
	expect_usage_error(ARGV("wsserver", ":1", "-wspath", "/a b"),
	    "-wspath: invalid character");
	expect_usage_error(ARGV("wsserver", ":1", "-session", "a&mode=x"),
	    "-session: invalid character");
	expect_usage_error(ARGV("wsserver", ":1", "-session", ""),
	    "-session: empty");
	expect_usage_error(ARGV("wsserver", ":1", "-UA", "a\nb"),
	    "-UA: invalid character");
	expect_usage_error(ARGV("wsserver", ":1", "-cafile", ""),
	    "-cafile: empty");
	expect_usage_error(ARGV("wsserver", ":1", "-ctrl",
	    "0123456789012345678901234567890123"), "-ctrl: value too long");
	memset(big, 'a', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	big[0] = '/';
	expect_usage_error(ARGV("wsserver", ":1", "-wspath", big),
	    "-wspath: value too long");
}

static void
test_usage_errors(void **state)
{
	char	*many[2 + MSG_MAX_FWDS + 3];
	size_t	 i;

	expect_usage_error(ARGV("wsserver", ":1", "-foo"),
	    "unknown option -foo");
	expect_usage_error(ARGV("wsserver", ":1", "--foo=bar"),
	    "unknown option -foo");
	expect_usage_error(ARGV("wsserver", ":1", "-Pass", "x"),
	    "unknown option -Pass");
	expect_usage_error(ARGV("wsserver", ":1", "---pass", "x"),
	    "bad option syntax: ---pass");
	expect_usage_error(ARGV("wsserver", ":1", "-=x"),
	    "bad option syntax");
	expect_usage_error(ARGV("wsserver", ":1", "-pass"),
	    "option -pass needs a value");
	expect_usage_error(ARGV("wsserver", ":1", "-omit=maybe"),
	    "-omit: not a boolean: maybe");
	expect_usage_error(ARGV("-help=maybe"), "-help: not a boolean: maybe");
	expect_usage_error(ARGV("x", ":1"), "unknown mode 'x'");
	expect_usage_error(ARGV("echo", ":1"), "unknown mode 'echo'");
	expect_usage_error(ARGV("-pass", "p"), "missing mode");
	expect_usage_error(ARGV("wsserver"), "missing server address");
	expect_usage_error(ARGV("wsserver", "-omit"),
	    "missing server address");
	expect_usage_error(ARGV("wsserver", "localhost"),
	    "server address 'localhost'");
	expect_usage_error(ARGV("wsserver", ":1", "x,:1,h:2"),
	    "forward 'x,:1,h:2': illegal forward type");
	expect_usage_error(ARGV("wsserver", ":1", ":1"),
	    "forward ':1': illegal forward. need ','");
	expect_usage_error(ARGV("wsserver", ":1", ":1,h:99999"),
	    "forward ':1,h:99999': dst: port out of range");
	expect_usage_error(ARGV("wsclient", "h:1", ":1,h:2", "-transport",
	    "tcp"), "-transport: auto, ws or http, not 'tcp'");
	expect_usage_error(ARGV("client", "h:1", ":1,h:2", "-transport",
	    "http"), "-transport: mode client has no websocket");

	/* At most MSG_MAX_FWDS forwards. */
	many[0] = "tunneld";
	many[1] = "wsclient";
	many[2] = "h:1";
	for (i = 0; i < MSG_MAX_FWDS; i++)
		many[3 + i] = ":1,h:2";
	many[3 + MSG_MAX_FWDS] = NULL;
	{
		struct cli_opts o;

		expect_ok(&o, many);
		assert_int_equal(o.fwds.n, MSG_MAX_FWDS);
		cli_free(&o);
	}
	many[3 + MSG_MAX_FWDS] = ":1,h:2";
	many[4 + MSG_MAX_FWDS] = NULL;
	expect_usage_error(many, "too many forwards");

	/* No argv at all. */
	{
		struct cli_opts o;

		assert_int_equal(cli_parse(0, NULL, &o, NULL, 0, err), -1);
		assert_non_null(strstr(err, "missing mode"));
	}
}

static void
test_help_version(void **state)
{
	struct cli_opts	 o;
	static const char *const must[] = {
		"usage: tunneld <mode> <server>", "wsserver", "r-wsserver",
		"r-server", "wsclient", "r-wsclient", "r-client", "[r,|t,]",
		"[::1]", "-pass", "-encPass", "-encCount", "-ip", "-int",
		"-header", "-wspath", "-session", "-UA", "-ctrl", "-omit",
		"-verbose", "-debug", "-intlog", "-console", "-prof",
		"-handshakeTimeout", "-openTimeout", "-sessionTimeout",
		"-proxy", "-tls", "-cafile", "-insecure", "[Go Http Client]",
		"-passFile", "-encPassFile", "-proxyFile", "TUNNELD_PASS",
		"TUNNELD_ENCPASS", "TUNNELD_PROXY", "chmod 600",
		"[10]", "[30]", "[600]", "[20]", "[-1]", "[/]",
		"0 success", "1 runtime error", "2 usage error",
		"-renew", "3 a client's session is gone",
		"-transport",
	};
	size_t	 i;

	for (i = 0; i < sizeof(must) / sizeof(must[0]); i++)
		if (strstr(cli_usage(), must[i]) == NULL)
			fail_msg("usage lacks '%s'", must[i]);

	assert_int_equal(parse(&o, ARGV("--help")), 1);
	assert_string_equal(out, cli_usage());
	assert_null(o.pass);
	assert_int_equal(parse(&o, ARGV("-help")), 1);
	assert_string_equal(out, cli_usage());
	assert_int_equal(parse(&o, ARGV("-h")), 1);
	assert_string_equal(out, cli_usage());
	/* Help wins over a bad mode or missing arguments that follow. */
	assert_int_equal(parse(&o, ARGV("bogus", "-pass", "x", "-h")), 1);
	assert_string_equal(out, cli_usage());
	assert_null(o.pass);
	/* -help=false asks for nothing. */
	expect_ok(&o, ARGV("wsserver", ":1", "-help=false"));
	cli_free(&o);

	assert_int_equal(parse(&o, ARGV("--version")), 1);
	assert_string_equal(out, "tunneld " TUNNELD_VERSION
	    " (kptunnel 0.2.0 compatible)\n");
	assert_int_equal(parse(&o, ARGV("wsserver", "-version")), 1);
	assert_string_equal(out, "tunneld " TUNNELD_VERSION
	    " (kptunnel 0.2.0 compatible)\n");

	/* A small or missing output buffer is not overrun. */
	assert_int_equal(cli_parse(2, ARGV("--version"), &o, out, 8, err), 1);
	assert_string_equal(out, "tunneld");
	assert_int_equal(cli_parse(2, ARGV("--help"), &o, NULL, 0, err), 1);
}

/*
 * Secrets from files and the environment, and their place in argv (issue
 * 10 finding 12).
 */
static void
test_secrets(void **state)
{
	struct cli_opts	 o;
	char		 dir[] = "/tmp/test_cli.XXXXXX", pf[64], ef[64], xf[64];
	char		 a1[] = "-pass=p1p1", a2[] = "e1e1", a3[] = "-proxy";
	char		 a4[] = "http://u:pw@h:1/", a5[] = "wsserver", a6[] = ":1";
	char		*argv[] = { (char *)"tunneld", a5, a6, a1, (char *)"-encPass",
			    a2, a3, a4, NULL };
	FILE		*f;

	assert_non_null(mkdtemp(dir));
	snprintf(pf, sizeof(pf), "%s/p", dir);
	snprintf(ef, sizeof(ef), "%s/e", dir);
	snprintf(xf, sizeof(xf), "%s/x", dir);
	assert_non_null(f = fopen(pf, "w"));
	fputs("from-file\n", f);
	fclose(f);
	assert_non_null(f = fopen(xf, "w"));
	fputs("http://a:b@proxy:3128\n", f);
	fclose(f);
	assert_int_equal(chmod(pf, 0600), 0);
	assert_int_equal(chmod(xf, 0600), 0);

	/* Files; the last of -pass and -passFile wins. */
	expect_ok(&o, ARGV("wsclient", "h:1", "-omit", "-passFile", pf,
	    "-encPassFile", pf, "-proxyFile", xf));
	assert_string_equal(o.pass, "from-file");
	assert_string_equal(o.encpass, "from-file");
	assert_string_equal(o.proxy, "http://a:b@proxy:3128");
	assert_int_equal(o.argv_secrets, 0);
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":1", "-passFile", pf, "-pass", "x"));
	assert_string_equal(o.pass, "x");
	cli_free(&o);
	expect_usage_error(ARGV("wsserver", ":1", "-encPassFile", ef),
	    "-encPassFile: ");
	assert_int_equal(chmod(pf, 0644), 0);
	expect_usage_error(ARGV("wsserver", ":1", "-passFile", pf),
	    "chmod 600");

	/* The environment, only for what no option gave. */
	assert_int_equal(setenv("TUNNELD_PASS", "env-pass", 1), 0);
	assert_int_equal(setenv("TUNNELD_ENCPASS", "env-enc", 1), 0);
	assert_int_equal(setenv("TUNNELD_PROXY", "http://e:f@h:2", 1), 0);
	expect_ok(&o, ARGV("wsserver", ":1", "-encPass", "opt"));
	assert_string_equal(o.pass, "env-pass");
	assert_string_equal(o.encpass, "opt");
	assert_string_equal(o.proxy, "http://e:f@h:2");
	assert_null(getenv("TUNNELD_PASS"));	/* read once, then gone */
	assert_null(getenv("TUNNELD_PROXY"));
	cli_free(&o);
	unsetenv("TUNNELD_ENCPASS");

	/* Scrubbing: the values, and only the proxy's user:password. */
	expect_ok(&o, argv);
	assert_int_equal(o.argv_secrets, CLI_ARGV_PASS | CLI_ARGV_ENCPASS |
	    CLI_ARGV_PROXY);
	cli_scrub_argv(&o);
	assert_string_equal(o.pass, "p1p1");
	assert_string_equal(o.encpass, "e1e1");
	assert_string_equal(a1, "-pass=****");
	assert_string_equal(a2, "****");
	assert_string_equal(a3, "-proxy");
	assert_string_equal(a4, "http://****@h:1/");
	assert_string_equal(a5, "wsserver");
	cli_free(&o);
	expect_ok(&o, ARGV("wsclient", "h:1", "-omit", "-proxy", "http://h:1"));
	assert_int_equal(o.argv_secrets, 0);
	assert_int_equal(o.nscrub, 0);
	cli_free(&o);
	unlink(pf);
	unlink(xf);
	rmdir(dir);
}

static void
test_window(void **state)
{
	struct cli_opts	 o;

	(void)state;
	expect_ok(&o, ARGV("wsserver", ":8000"));
	assert_int_equal(o.window, 256);		/* 16 MiB */
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":8000", "-window", "3776k"));
	assert_int_equal(o.window, 59);		/* kptunnel's */
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":8000", "-window", "64M"));
	assert_int_equal(o.window, 1024);
	cli_free(&o);
	expect_ok(&o, ARGV("wsserver", ":8000", "-window=20000000"));
	assert_int_equal(o.window, 306);	/* rounded up */
	cli_free(&o);
	expect_usage_error(ARGV("wsserver", ":8000", "-window", "3712k"),
	    "out of range");
	expect_usage_error(ARGV("wsserver", ":8000", "-window", "65M"),
	    "out of range");
	expect_usage_error(ARGV("wsserver", ":8000", "-window",
	    "99999999999999999999"), "out of range");
	expect_usage_error(ARGV("wsserver", ":8000", "-window", "16MB"),
	    "not a size");
	expect_usage_error(ARGV("wsserver", ":8000", "-window", "-1"),
	    "not a size");
	expect_usage_error(ARGV("wsserver", ":8000", "-window", ""),
	    "not a size");
}

/* UDP forwards, -udpTimeout and -udpFlows; no UDP without the AEAD mode. */
static void
test_udp(void **state)
{
	struct cli_opts	 o;

	(void)state;
	expect_ok(&o, ARGV("wsclient", "h:1", "u,127.0.0.1:5353,ns:53"));
	assert_int_equal(o.udp_timeout, 60);
	assert_int_equal(o.udp_flows, 256);
	assert_int_equal(o.fwds.n, 1);
	assert_true(o.fwds.fwds[0].udp && !o.fwds.fwds[0].reverse);
	cli_free(&o);
	expect_ok(&o, ARGV("r-wsclient", "h:1", "u,:1,h:2", "ut,:3,h:4",
	    ":5,h:6", "-udpTimeout", "5", "-udpFlows=8192"));
	assert_int_equal(o.udp_timeout, 5);
	assert_int_equal(o.udp_flows, 8192);
	assert_true(o.fwds.fwds[0].udp && o.fwds.fwds[0].reverse);
	assert_true(o.fwds.fwds[1].udp && !o.fwds.fwds[1].reverse);
	assert_true(!o.fwds.fwds[2].udp && o.fwds.fwds[2].reverse);
	cli_free(&o);
	/* Forwards only: a UDP one satisfies a mode that needs one. */
	expect_ok(&o, ARGV("wsclient", "h:1", "ur,:1,h:2", "-encCount", "3"));
	cli_free(&o);
	expect_usage_error(ARGV("wsclient", "h:1", "u,:1,h:2", "-noAead"),
	    "not with -noAead");
	expect_usage_error(ARGV("wsserver", ":1", "ur,:1,h:2", "-encCount",
	    "0"), "not with -encCount 0");
	expect_usage_error(ARGV("wsserver", ":1", "-udpTimeout", "0"),
	    "udpTimeout");
	expect_usage_error(ARGV("wsserver", ":1", "-udpFlows", "8193"),
	    "udpFlows");
	expect_usage_error(ARGV("wsserver", ":1", "uu,:1,h:2"),
	    "illegal forward type");
	/* Without UDP forwards, -noAead is as before. */
	expect_ok(&o, ARGV("wsclient", "h:1", ":1,h:2", "-noAead"));
	cli_free(&o);
}

/*
 * Dynamic forwards: -socks and -transparent on clients (an empty host is
 * loopback; forwards become optional), credentials from a file or
 * TUNNELD_SOCKS_AUTH only, -destinations on servers.
 */
static void
test_dynamic(void **state)
{
	struct cli_opts	 o;
	char		 dir[] = "/tmp/test_cli.XXXXXX", af[64], bf[64];
	FILE		*f;

	assert_non_null(mkdtemp(dir));
	snprintf(af, sizeof(af), "%s/a", dir);
	snprintf(bf, sizeof(bf), "%s/b", dir);
	assert_non_null(f = fopen(af, "w"));
	fputs("alice:pa:ss\n", f);
	fclose(f);
	assert_non_null(f = fopen(bf, "w"));
	fputs("no-colon\n", f);
	fclose(f);
	assert_int_equal(chmod(af, 0600), 0);
	assert_int_equal(chmod(bf, 0600), 0);

	expect_ok(&o, ARGV("wsclient", "h:1", "-socks", ":1080",
	    "-transparent", "[::1]:1081", "-socks", "0.0.0.0:1082"));
	assert_int_equal(o.ndyn, 3);
	assert_int_equal(o.dyn[0].kind, CLI_DYN_SOCKS);
	assert_string_equal(o.dyn[0].host, "127.0.0.1");
	assert_int_equal(o.dyn[0].port, 1080);
	assert_int_equal(o.dyn[1].kind, CLI_DYN_TRANSPARENT);
	assert_string_equal(o.dyn[1].host, "::1");
	assert_string_equal(o.dyn[2].host, "0.0.0.0");
	assert_null(o.socks_auth);
	cli_free(&o);

	expect_ok(&o, ARGV("client", "h:1", "-socks", ":1",
	    "-socksAuthFile", af));
	assert_string_equal(o.socks_auth, "alice:pa:ss");
	cli_free(&o);
	assert_null(o.socks_auth);
	assert_int_equal(setenv("TUNNELD_SOCKS_AUTH", "bob:pw", 1), 0);
	expect_ok(&o, ARGV("wsclient", "h:1", "-socks", ":1"));
	assert_string_equal(o.socks_auth, "bob:pw");
	assert_null(getenv("TUNNELD_SOCKS_AUTH"));	/* wiped */
	cli_free(&o);
	/* Without a -socks listener the variable is wiped and unused. */
	assert_int_equal(setenv("TUNNELD_SOCKS_AUTH", "bob:pw", 1), 0);
	expect_ok(&o, ARGV("wsclient", "h:1", ":2,h:3"));
	assert_null(o.socks_auth);
	assert_null(getenv("TUNNELD_SOCKS_AUTH"));
	cli_free(&o);

	expect_ok(&o, ARGV("wsserver", ":1", "-destinations",
	    "!127.0.0.0/8:*,*.example.com:443", "-destinations",
	    "[2001:db8::/32]:80-90"));
	assert_int_equal(o.dests.n, 3);
	assert_int_equal(o.dests.p[0].deny, 1);
	assert_int_equal(o.dests.p[2].port_hi, 90);
	cli_free(&o);
	assert_int_equal(o.dests.n, 0);
	assert_null(o.dests.p);

	expect_usage_error(ARGV("wsclient", "h:1"), "needs at least one");
	expect_usage_error(ARGV("wsserver", ":1", "-socks", ":1"),
	    "client options");
	expect_usage_error(ARGV("wsclient", "h:1", "-socks", ":1",
	    "-destinations", "*:*"), "server option");
	expect_usage_error(ARGV("wsclient", "h:1", ":2,h:3",
	    "-socksAuthFile", af), "without a -socks");
	expect_usage_error(ARGV("wsclient", "h:1", "-socks", ":1",
	    "-socksAuthFile", bf), "not user:password");
	expect_usage_error(ARGV("wsclient", "h:1", "-socks", "h"),
	    "need host:port");
	expect_usage_error(ARGV("wsclient", "h:1", "-socks", "h:1/x"),
	    "no path");
	expect_usage_error(ARGV("wsserver", ":1", "-destinations", "*:0"),
	    "ports must be");
	expect_usage_error(ARGV("wsclient", "h:1", "-socks", ":1", "-socks",
	    ":2", "-socks", ":3", "-socks", ":4", "-socks", ":5", "-socks",
	    ":6", "-socks", ":7", "-socks", ":8", "-socks", ":9"), "at most 8");
	assert_int_equal(chmod(af, 0644), 0);
	expect_usage_error(ARGV("wsclient", "h:1", "-socks", ":1",
	    "-socksAuthFile", af), "chmod 600");
	unlink(af);
	unlink(bf);
	rmdir(dir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_defaults),
		cmocka_unit_test(test_spellings),
		cmocka_unit_test(test_interleave),
		cmocka_unit_test(test_modes_and_forwards),
		cmocka_unit_test(test_numbers),
		cmocka_unit_test(test_ip),
		cmocka_unit_test(test_header),
		cmocka_unit_test(test_strings),
		cmocka_unit_test(test_usage_errors),
		cmocka_unit_test(test_help_version),
		cmocka_unit_test(test_secrets),
		cmocka_unit_test(test_window),
		cmocka_unit_test(test_udp),
		cmocka_unit_test(test_dynamic),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
