/*
 * addr_*, fwd_* and cidr_*: kptunnel's address and forward grammar (wire
 * spec 8.2) with IPv6 literals, and the -ip ranges of 8.4.
 */

#include <sys/types.h>
#include <sys/socket.h>
#include <netinet/in.h>
#include <arpa/inet.h>

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "addr.h"
#include "err.h"
#include "joinpt.h"

static void
expect_addr(const char *s, const char *name, int port, const char *path,
    const char *query)
{
	struct hostinfo	 h;
	char		 err[ERR_LEN];

	err[0] = '\0';
	if (addr_parse(s, &h, err) != 0)
		fail_msg("'%s': %s", s, err);
	assert_string_equal(h.name, name);
	assert_int_equal(h.port, port);
	assert_string_equal(h.path, path);
	assert_string_equal(h.query, query);
}

static void
expect_addr_fails(const char *s, const char *why)
{
	struct hostinfo	 h;
	char		 err[ERR_LEN];

	err[0] = '\0';
	memset(&h, 0xa5, sizeof(h));
	if (addr_parse(s, &h, err) != -1)
		fail_msg("'%s' accepted", s);
	if (why != NULL && strstr(err, why) == NULL)
		fail_msg("'%s': error '%s' lacks '%s'", s, err, why);
	/* Nothing half parsed is left behind. */
	assert_string_equal(h.name, "");
	assert_int_equal(h.port, 0);
}

static void
test_addr_parse(void **state)
{
	expect_addr("localhost:17001", "localhost", 17001, "", "");
	expect_addr(":8000", "", 8000, "", "");
	expect_addr("127.0.0.1:0", "127.0.0.1", 0, "", "");
	expect_addr("host:65535", "host", 65535, "", "");
	expect_addr("host:00080", "host", 80, "", "");
	expect_addr("my-host.example_1.com:1", "my-host.example_1.com", 1, "",
	    "");
	/* IPv6 in brackets, stored without them. */
	expect_addr("[::1]:80", "::1", 80, "", "");
	expect_addr("[2001:db8::1]:22", "2001:db8::1", 22, "", "");
	expect_addr("[::ffff:10.0.0.1]:22", "::ffff:10.0.0.1", 22, "", "");
	expect_addr("[fe80::1%eth0]:22", "fe80::1%eth0", 22, "", "");
	/* Scheme dropped, path and query kept, fragment dropped. */
	expect_addr("http://example.com:80", "example.com", 80, "", "");
	expect_addr("ws://example.com:80/tunnel?x=1&y=2", "example.com", 80,
	    "/tunnel", "x=1&y=2");
	expect_addr("h:1/a/b", "h", 1, "/a/b", "");
	expect_addr("h:1?q", "h", 1, "", "q");
	expect_addr("h:1/p#frag", "h", 1, "/p", "");
	expect_addr("wss+x.y-z://[::1]:443/", "::1", 443, "/", "");
}

static void
test_addr_errors(void **state)
{
	char	 big[ADDR_NAME_MAX + 16];

	expect_addr_fails("", "host:port");
	expect_addr_fails("localhost", "host:port");
	expect_addr_fails("localhost:", "missing port");
	expect_addr_fails(":", "missing port");
	expect_addr_fails("host:http", "not a number");
	expect_addr_fails("host:-1", "not a number");
	expect_addr_fails("host:+80", "not a number");
	expect_addr_fails("host:65536", "out of range");
	expect_addr_fails("host:99999999999999999999", "out of range");
	expect_addr_fails("a:b:c", "host:port");
	/* Bare IPv6 splits into more than two parts, as in kptunnel. */
	expect_addr_fails("::1:80", "host:port");
	expect_addr_fails("[::1]", "host:port");
	expect_addr_fails("[::1]80", "host:port");
	expect_addr_fails("[::1:80", "IPv6");
	expect_addr_fails("[]:80", "IPv6");
	expect_addr_fails("[1.2.3.4]:80", "IPv6");
	expect_addr_fails("[::1%]:80", "IPv6");
	expect_addr_fails("[::1%a b]:80", "IPv6");
	expect_addr_fails("ho st:80", "invalid character");
	expect_addr_fails("user@host:80", "invalid character");
	expect_addr_fails("h\n:80", "invalid character");
	expect_addr_fails("h:80/a b", "path");
	expect_addr_fails("h:80?a\tb", "query");
	expect_addr_fails("://h:80", "scheme");
	expect_addr_fails("1http://h:80", "scheme");
	expect_addr_fails("h:80/x://y", "scheme");
	memset(big, 'a', sizeof(big));
	strcpy(big + ADDR_NAME_MAX, ":80");
	expect_addr_fails(big, "too long");
	memset(big, 'a', sizeof(big));
	memcpy(big, "h:1/", 4);
	big[sizeof(big) - 1] = '\0';
	expect_addr_fails(big, "path too long");
	/* 255 bytes of name still fit. */
	memset(big, 'a', sizeof(big));
	strcpy(big + ADDR_NAME_MAX - 1, ":80");
	{
		struct hostinfo h;

		assert_int_equal(addr_parse(big, &h, NULL), 0);
		assert_int_equal(strlen(h.name), ADDR_NAME_MAX - 1);
	}
	assert_int_equal(addr_parse(NULL, &(struct hostinfo){ 0 }, NULL), -1);
}

static void
test_addr_format(void **state)
{
	struct hostinfo	 h;
	char		 out[ADDR_NAME_MAX + 16], small[6];

	assert_int_equal(addr_parse("[2001:db8::1]:22", &h, NULL), 0);
	addr_format(&h, out, sizeof(out));
	assert_string_equal(out, "[2001:db8::1]:22");
	assert_int_equal(addr_parse("localhost:80/p?q", &h, NULL), 0);
	addr_format(&h, out, sizeof(out));
	assert_string_equal(out, "localhost:80");
	assert_int_equal(addr_parse(":8000", &h, NULL), 0);
	addr_format(&h, out, sizeof(out));
	assert_string_equal(out, ":8000");
	assert_int_equal(addr_parse("[::1]:8000", &h, NULL), 0);
	addr_format(&h, small, sizeof(small));
	assert_string_equal(small, "[::1]");
	addr_format(&h, NULL, 0);
}

static void
test_fwd_parse(void **state)
{
	struct fwd	 f, g;
	char		 err[ERR_LEN];

	assert_int_equal(fwd_parse(":17002,localhost:17001", 0, &f, err), 0);
	assert_int_equal(f.reverse, 0);
	assert_string_equal(f.src.name, "");
	assert_int_equal(f.src.port, 17002);
	assert_string_equal(f.dst.name, "localhost");
	assert_int_equal(f.dst.port, 17001);

	/* Default direction from the mode, overridden by the prefix. */
	assert_int_equal(fwd_parse(":1,h:2", 1, &f, err), 0);
	assert_int_equal(f.reverse, 1);
	assert_int_equal(fwd_parse("t,:1,h:2", 1, &f, err), 0);
	assert_int_equal(f.reverse, 0);
	assert_int_equal(fwd_parse("r,:1,h:2", 0, &f, err), 0);
	assert_int_equal(f.reverse, 1);

	assert_int_equal(fwd_parse("t,[::1]:8080,[2001:db8::1]:22", 1, &f,
	    err), 0);
	assert_int_equal(f.reverse, 0);
	assert_string_equal(f.src.name, "::1");
	assert_int_equal(f.src.port, 8080);
	assert_string_equal(f.dst.name, "2001:db8::1");
	assert_int_equal(f.dst.port, 22);

	/* Empty Dst host: Go dials the local host. */
	assert_int_equal(fwd_parse("127.0.0.1:1,:2", 0, &f, err), 0);
	assert_string_equal(f.dst.name, "");

	assert_int_equal(fwd_parse("r,:1,h:2/p?q", 0, &g, err), 0);
	assert_string_equal(g.dst.path, "/p");
	assert_string_equal(g.dst.query, "q");

	/* fwd_equal compares every field. */
	assert_int_equal(fwd_parse("r,:1,h:2/p?q", 0, &f, err), 0);
	assert_true(fwd_equal(&f, &g));
	f.dst.query[0] = '\0';
	assert_false(fwd_equal(&f, &g));
	assert_int_equal(fwd_parse("r,:1,h:2/p?q", 0, &f, err), 0);
	f.reverse = 0;
	assert_false(fwd_equal(&f, &g));
	assert_int_equal(fwd_parse("r,:1,h:2/p?q", 0, &f, err), 0);
	f.src.port = 3;
	assert_false(fwd_equal(&f, &g));
	assert_int_equal(fwd_parse("r,:1,h:2/p?q", 0, &f, err), 0);
	strcpy(f.src.name, "x");
	assert_false(fwd_equal(&f, &g));
	assert_int_equal(fwd_parse("r,:1,h:2/p?q", 0, &f, err), 0);
	strcpy(f.dst.path, "/q");
	assert_false(fwd_equal(&f, &g));
	assert_int_equal(fwd_parse("r,:1,h:2/p?q", 0, &f, err), 0);
	f.reverse = 5;		/* any true value */
	assert_true(fwd_equal(&f, &g));
}

/* Join points: the server's end of a forward only, kptunnel's texts
 * unchanged. */
static void
test_fwd_join(void **state)
{
	struct fwd	 f, g;
	char		 err[ERR_LEN], buf[64];

	assert_int_equal(fwd_parse("t,127.0.0.1:18080,join:web", 0, &f, err),
	    0);
	assert_int_equal(f.reverse, 0);
	assert_string_equal(f.dst.name, "join:web");
	assert_int_equal(f.dst.port, 0);
	assert_string_equal(joinpt_name(&f.dst), "web");
	assert_null(joinpt_name(&f.src));
	addr_format(&f.dst, buf, sizeof(buf));
	assert_string_equal(buf, "join:web");
	/* An r forward offers it; r-* modes need no prefix. */
	assert_int_equal(fwd_parse("join:_a-1,127.0.0.1:8080", 1, &g, err), 0);
	assert_int_equal(g.reverse, 1);
	assert_string_equal(joinpt_name(&g.src), "_a-1");
	assert_false(fwd_equal(&f, &g));
	assert_int_equal(fwd_parse("r,join:_a-1,127.0.0.1:8080", 0, &f, err),
	    0);
	assert_true(fwd_equal(&f, &g));
	/* A host named "join" and a port stay kptunnel's. */
	assert_int_equal(fwd_parse("t,:1,join:80", 0, &f, err), 0);
	assert_string_equal(f.dst.name, "join");
	assert_int_equal(f.dst.port, 80);
	assert_null(joinpt_name(&f.dst));
	/* The name is 32 characters at most. */
	assert_int_equal(fwd_parse("t,:1,join:"
	    "abcdefghijklmnopqrstuvwxyz012345", 0, &f, err), 0);
	/* Only the exact form is one: port 0, the lower-case prefix. */
	strcpy(f.dst.name, "join:web");
	f.dst.port = 1;
	assert_null(joinpt_name(&f.dst));
	f.dst.port = 0;
	strcpy(f.dst.name, "JOIN:web");
	assert_null(joinpt_name(&f.dst));
	strcpy(f.dst.name, "join:../x");
	assert_null(joinpt_name(&f.dst));
	/* A join point carries TCP streams only. */
	assert_int_equal(fwd_parse("ur,join:web,127.0.0.1:53", 0, &f, err),
	    -1);
	assert_int_equal(fwd_parse("ut,:1,join:web", 0, &f, err), -1);
}

/* UDP forwards: "u" takes the mode's direction, "ut" and "ur" say it. */
static void
test_fwd_udp(void **state)
{
	struct fwd	 f, g;
	char		 err[ERR_LEN];

	assert_int_equal(fwd_parse("u,127.0.0.1:5353,ns:53", 0, &f, err), 0);
	assert_int_equal(f.udp, 1);
	assert_int_equal(f.reverse, 0);
	assert_string_equal(f.src.name, "127.0.0.1");
	assert_int_equal(f.dst.port, 53);
	assert_int_equal(fwd_parse("u,:1,h:2", 1, &f, err), 0);
	assert_true(f.udp && f.reverse);
	assert_int_equal(fwd_parse("ut,:1,h:2", 1, &f, err), 0);
	assert_true(f.udp && !f.reverse);
	assert_int_equal(fwd_parse("ur,:1,h:2", 0, &f, err), 0);
	assert_true(f.udp && f.reverse);
	/* TCP forwards stay TCP. */
	assert_int_equal(fwd_parse("r,:1,h:2", 0, &g, err), 0);
	assert_int_equal(g.udp, 0);
	assert_int_equal(fwd_parse(":1,h:2", 0, &g, err), 0);
	assert_int_equal(g.udp, 0);
	/* The same addresses over UDP and TCP are different forwards. */
	assert_int_equal(fwd_parse("r,:1,h:2", 0, &g, err), 0);
	assert_false(fwd_equal(&f, &g));
	g.udp = 1;
	assert_true(fwd_equal(&f, &g));
}

static void
expect_fwd_fails(const char *s, const char *why)
{
	struct fwd	 f;
	char		 err[ERR_LEN];

	err[0] = '\0';
	if (fwd_parse(s, 0, &f, err) != -1)
		fail_msg("'%s' accepted", s);
	if (strstr(err, why) == NULL)
		fail_msg("'%s': error '%s' lacks '%s'", s, err, why);
}

static void
test_fwd_errors(void **state)
{
	expect_fwd_fails("x,:1,h:2", "illegal forward type");
	expect_fwd_fails("R,:1,h:2", "illegal forward type");
	expect_fwd_fails("rr,:1,h:2", "illegal forward type");
	expect_fwd_fails(",:1,h:2", "illegal forward type");
	expect_fwd_fails("uu,:1,h:2", "illegal forward type");
	expect_fwd_fails("tu,:1,h:2", "illegal forward type");
	expect_fwd_fails("U,:1,h:2", "illegal forward type");
	expect_fwd_fails("utr,:1,h:2", "illegal forward type");
	expect_fwd_fails(":1", "illegal forward. need ','");
	expect_fwd_fails("", "illegal forward. need ','");
	/* Two parts are src and dst even when the first looks like "r". */
	expect_fwd_fails("r,:1", "src: ");
	expect_fwd_fails("r,:1,h:2,h:3", "illegal forward. need ','");
	expect_fwd_fails(",,,", "illegal forward. need ','");
	expect_fwd_fails("h,:2", "src: ");
	expect_fwd_fails(":1,h", "dst: ");
	expect_fwd_fails("t,:1,h:99999", "dst: port out of range");
	expect_fwd_fails("t,::1:80,h:1", "src: illegal pattern");
	/* A join point is the worker's end, with a name a file can have. */
	expect_fwd_fails("t,join:web,h:1", "only be the Src of an r");
	expect_fwd_fails("r,:1,join:web", "only be the Src of an r");
	expect_fwd_fails("t,:1,join:", "dst: join point NAME");
	expect_fwd_fails("t,:1,join:a.b", "dst: join point NAME");
	expect_fwd_fails("t,:1,join:a/b", "dst: join point NAME");
	expect_fwd_fails("t,:1,join:-a", "dst: join point NAME");
	expect_fwd_fails("t,:1,join:..", "dst: join point NAME");
	expect_fwd_fails("t,:1,join:abcdefghijklmnopqrstuvwxyz0123456",
	    "dst: join point NAME");
	expect_fwd_fails("t,:1,JOIN:web", "dst: a join point is written");
	expect_fwd_fails("t,:1,join:web:1", "dst: join point NAME");
	expect_fwd_fails("t,:1,join:1x", "dst: port is not a number");
	assert_int_equal(fwd_parse(NULL, 0, &(struct fwd){ 0 }, NULL), -1);
}

static struct sockaddr_storage ss;

static const struct sockaddr *
sa4(const char *ip)
{
	struct sockaddr_in *sin = (struct sockaddr_in *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin->sin_family = AF_INET;
	assert_int_equal(inet_pton(AF_INET, ip, &sin->sin_addr), 1);
	return (const struct sockaddr *)&ss;
}

static const struct sockaddr *
sa6(const char *ip)
{
	struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)&ss;

	memset(&ss, 0, sizeof(ss));
	sin6->sin6_family = AF_INET6;
	assert_int_equal(inet_pton(AF_INET6, ip, &sin6->sin6_addr), 1);
	return (const struct sockaddr *)&ss;
}

static struct cidr
cidr(const char *s)
{
	struct cidr	 c;
	char		 err[ERR_LEN];

	if (cidr_parse(s, &c, err) != 0)
		fail_msg("'%s': %s", s, err);
	return c;
}

static void
test_cidr_parse(void **state)
{
	struct cidr	 c;
	char		 err[ERR_LEN];
	static const uint8_t v4[4] = { 10, 0, 0, 0 };
	static const uint8_t v6[16] = { 0x20, 0x01, 0x0d, 0xb8 };

	c = cidr("10.1.2.3/8");
	assert_int_equal(c.family, AF_INET);
	assert_int_equal(c.bits, 8);
	assert_memory_equal(c.addr, v4, 4);	/* host bits cleared */
	c = cidr("10.1.2.3");
	assert_int_equal(c.bits, 32);
	/* kptunnel compatibility: /0 is a full-length mask, not "any". */
	c = cidr("10.1.2.3/0");
	assert_int_equal(c.bits, 32);
	c = cidr("10.1.2.3/32");
	assert_int_equal(c.bits, 32);
	c = cidr("2001:db8:ffff::1/32");
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.bits, 32);
	assert_memory_equal(c.addr, v6, 16);
	c = cidr("::1");
	assert_int_equal(c.bits, 128);
	c = cidr("::/0");
	assert_int_equal(c.bits, 128);
	c = cidr("::ffff:1.2.3.4/100");
	assert_int_equal(c.family, AF_INET6);
	assert_int_equal(c.bits, 100);
	c = cidr("10.1.2.3/31");
	assert_int_equal(c.addr[3], 2);
	c = cidr("1.2.3.4/012");	/* leading zero: still decimal */
	assert_int_equal(c.bits, 12);

	assert_int_equal(cidr_parse("", &c, err), -1);
	assert_int_equal(cidr_parse(NULL, &c, err), -1);
	assert_int_equal(cidr_parse("10.0.0.1/33", &c, err), -1);
	assert_non_null(strstr(err, "mask"));
	assert_int_equal(cidr_parse("::1/129", &c, err), -1);
	assert_int_equal(cidr_parse("10.0.0.1/", &c, err), -1);
	assert_int_equal(cidr_parse("10.0.0.1/-1", &c, err), -1);
	assert_int_equal(cidr_parse("10.0.0.1/+8", &c, err), -1);
	assert_int_equal(cidr_parse("10.0.0.1/8x", &c, err), -1);
	assert_int_equal(cidr_parse("10.0.0.1/8/8", &c, err), -1);
	assert_int_equal(cidr_parse("10.0.0.1/99999999999", &c, err), -1);
	assert_int_equal(cidr_parse("10.0.0/8", &c, err), -1);
	assert_int_equal(cidr_parse("10.0.0.256", &c, err), -1);
	assert_int_equal(cidr_parse("/8", &c, err), -1);
	assert_int_equal(cidr_parse("localhost", &c, err), -1);
	assert_int_equal(cidr_parse("[::1]/8", &c, err), -1);
	assert_int_equal(cidr_parse(":::1", &c, err), -1);
	assert_int_equal(cidr_parse(" 10.0.0.1", &c, err), -1);
	assert_int_equal(cidr_parse("1111:2222:3333:4444:5555:6666:7777:8888:9",
	    &c, err), -1);
	assert_int_equal(c.family, 0);
}

static void
test_cidr_match(void **state)
{
	struct cidr	 c;
	struct sockaddr	 unix_sa;

	c = cidr("10.0.0.0/8");
	assert_true(cidr_match(&c, sa4("10.255.1.2")));
	assert_false(cidr_match(&c, sa4("11.0.0.1")));
	/* A dual-stack listener sees IPv4 peers as v4-mapped. */
	assert_true(cidr_match(&c, sa6("::ffff:10.1.2.3")));
	assert_false(cidr_match(&c, sa6("::ffff:11.1.2.3")));
	assert_false(cidr_match(&c, sa6("::10.1.2.3")));
	assert_false(cidr_match(&c, sa6("2001:db8::1")));

	c = cidr("192.168.1.7/0");
	assert_true(cidr_match(&c, sa4("192.168.1.7")));
	assert_false(cidr_match(&c, sa4("192.168.1.8")));

	c = cidr("172.16.0.0/12");
	assert_true(cidr_match(&c, sa4("172.31.255.255")));
	assert_false(cidr_match(&c, sa4("172.32.0.0")));

	c = cidr("2001:db8::/32");
	assert_true(cidr_match(&c, sa6("2001:db8:1::5")));
	assert_false(cidr_match(&c, sa6("2001:db9::5")));
	assert_false(cidr_match(&c, sa4("32.1.13.184")));

	c = cidr("::1");
	assert_true(cidr_match(&c, sa6("::1")));
	assert_false(cidr_match(&c, sa6("::2")));

	/* A v4-mapped range matches IPv4 peers too. */
	c = cidr("::ffff:10.0.0.0/104");
	assert_true(cidr_match(&c, sa4("10.9.9.9")));
	assert_false(cidr_match(&c, sa4("11.9.9.9")));

	c = cidr("2001:db8::1/127");
	assert_true(cidr_match(&c, sa6("2001:db8::")));
	assert_false(cidr_match(&c, sa6("2001:db8::2")));

	memset(&unix_sa, 0, sizeof(unix_sa));
	unix_sa.sa_family = AF_UNIX;
	assert_false(cidr_match(&c, &unix_sa));
	assert_false(cidr_match(&c, NULL));
	assert_false(cidr_match(NULL, sa4("10.0.0.1")));
	memset(&c, 0, sizeof(c));
	assert_false(cidr_match(&c, sa4("0.0.0.0")));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_addr_parse),
		cmocka_unit_test(test_addr_errors),
		cmocka_unit_test(test_addr_format),
		cmocka_unit_test(test_fwd_parse),
		cmocka_unit_test(test_fwd_join),
		cmocka_unit_test(test_fwd_errors),
		cmocka_unit_test(test_fwd_udp),
		cmocka_unit_test(test_cidr_parse),
		cmocka_unit_test(test_cidr_match),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
