/*
 * policy_*: the Lua policy (dispatcher/policy.h, docs/lua-api.md).
 *
 * Scripts are written to a temporary directory; the lua/ examples are
 * read relative to $TOP, or to the current directory (the repository
 * root when run by make).
 */

#include <sys/stat.h>

#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include <lauxlib.h>
#include <lualib.h>

#include "err.h"
#include "policy.h"

#define CA_TRUE		"function canAccept(req) return true end\n"
#define GT_NO		"function getTunnelInfo(req) return nil, 'no' end\n"

static char		 tmpdir[] = "/tmp/test_policy.XXXXXX";
static int		 nscripts;

static pthread_mutex_t	 log_lock = PTHREAD_MUTEX_INITIALIZER;
static char		 log_last[POLICY_LOG_LEN];
static int		 log_level = -1, log_count;

static void
test_logger(int level, const char *msg)
{
	pthread_mutex_lock(&log_lock);
	snprintf(log_last, sizeof(log_last), "%s", msg);
	log_level = level;
	log_count++;
	pthread_mutex_unlock(&log_lock);
}

static const char *
top(void)
{
	const char	*t = getenv("TOP");

	return t != NULL && *t != '\0' ? t : ".";
}

/* Writes src to a new file; its path in out[256]. */
static void
script(char *out, const char *src)
{
	FILE	*f;

	snprintf(out, 256, "%s/s%d.lua", tmpdir, nscripts++);
	assert_non_null(f = fopen(out, "w"));
	assert_int_equal(fputs(src, f) >= 0, 1);
	assert_int_equal(fclose(f), 0);
}

static int
load(const char *handler, const char *ca, const struct policy_limits *lim,
    struct policy **p, char *err)
{
	char	 hp[256], cp[256];

	script(hp, handler);
	if (ca != NULL)
		script(cp, ca);
	err[0] = '\0';
	return policy_load(hp, ca != NULL ? cp : NULL, lim, p, err);
}

static struct policy *
load_ok(const char *handler, const char *ca)
{
	struct policy	*p;
	char		 err[ERR_LEN];

	if (load(handler, ca, NULL, &p, err) != 0)
		fail_msg("policy_load: %s", err);
	return p;
}

static void
load_fails(const char *handler, const char *ca, const char *why)
{
	struct policy	*p = (struct policy *)&p;	/* must become NULL */
	char		 err[ERR_LEN];

	if (load(handler, ca, NULL, &p, err) == 0)
		fail_msg("policy_load accepted a broken script");
	assert_null(p);
	if (strstr(err, why) == NULL)
		fail_msg("error '%s' lacks '%s'", err, why);
}

static const struct policy_kv test_headers[] = {
	{ "host", "example.org" },
	{ "X-Multi", "one" },
	{ "x-multi", "two" },
	{ "upgrade", "websocket" },
};

static struct policy_req
req_default(void)
{
	struct policy_req	 r;

	memset(&r, 0, sizeof(r));
	r.method = "GET";
	r.path = "/ws";
	r.query = "a=1&a=2&b+c=%41%2x&d&=e&&session=t.1";
	r.headers = test_headers;
	r.nheaders = sizeof(test_headers) / sizeof(test_headers[0]);
	r.remote_addr = "192.0.2.7";
	r.session = "t.1";
	r.mode = "";
	return r;
}

/*
 * canAccept of src on req_default(): expect rc, and the verdict.  The
 * dry call (no session) is admitted before src runs, so that src may
 * fail on purpose.
 */
static void
ca_expect(const char *src, int rc, int accept, int status, const char *body,
    const char *why)
{
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_verdict	 v;
	char			 ca[8192], err[ERR_LEN];

	snprintf(ca, sizeof(ca), "%s\n"
	    "local real = canAccept\n"
	    "function canAccept(req)\n"
	    "  if req.session == '' then return true end\n"
	    "  return real(req)\n"
	    "end\n", src);
	p = load_ok(GT_NO, ca);
	err[0] = '\0';
	if (policy_can_accept(p, &r, &v, err) != rc)
		fail_msg("rc != %d (err '%s') for %s", rc, err, src);
	if (rc == 0) {
		assert_int_equal(v.accept, accept);
		assert_int_equal(v.status, status);
		assert_string_equal(v.body, body);
	} else {
		assert_int_equal(v.accept, 0);
		assert_int_equal(v.status, 500);
		if (strstr(err, why) == NULL)
			fail_msg("error '%s' lacks '%s'", err, why);
	}
	policy_unref(p);
}

static void
test_can_accept(void **state)
{
	char	 big[POLICY_BODY_LEN];

	ca_expect(CA_TRUE, 0, 1, 0, "", NULL);
	/* req.tunnels without a counter: 0 for any key; read-only. */
	ca_expect("function canAccept(req) return req.tunnels.x == 0 and "
	    "req.tunnels[1] == 0 and next(req.tunnels) == nil and "
	    "getmetatable(req.tunnels) == 'read-only' end", 0, 1, 0, "", NULL);
	ca_expect("function canAccept(req) req.tunnels.x = 1 return true end",
	    -1, 0, 0, "", "req.tunnels is read-only");
	ca_expect("function canAccept(req) return false, 429, 'slow down' "
	    "end", 0, 0, 429, "slow down", NULL);
	ca_expect("function canAccept(req) return false end", 0, 0, 403, "",
	    NULL);
	ca_expect("function canAccept(req) return false, nil, 'x' end", 0, 0,
	    403, "x", NULL);
	ca_expect("function canAccept(req) end", 0, 0, 403, "", NULL);
	ca_expect("function canAccept(req) return nil end", 0, 0, 403, "",
	    NULL);
	ca_expect("function canAccept(req) return false, 503.0 end", 0, 0,
	    503, "", NULL);
	/* Bodies are cut to fit. */
	memset(big, 'b', sizeof(big) - 1);
	big[sizeof(big) - 1] = '\0';
	ca_expect("function canAccept(req) return false, 403, "
	    "string.rep('b', 5000) end", 0, 0, 403, big, NULL);
	/* Anything else fails closed, with a reason. */
	ca_expect("function canAccept(req) return 'yes' end", -1, 0, 0, NULL,
	    "returned a string, expected a boolean");
	ca_expect("function canAccept(req) return 200 end", -1, 0, 0, NULL,
	    "returned a number");
	ca_expect("function canAccept(req) return false, 'denied' end", -1,
	    0, 0, NULL, "status must be an integer 400..599, got a string");
	ca_expect("function canAccept(req) return false, 200 end", -1, 0, 0,
	    NULL, "status 200 is not in 400..599");
	ca_expect("function canAccept(req) return false, 403.5 end", -1, 0,
	    0, NULL, "status must be an integer");
	ca_expect("function canAccept(req) return false, 403, {} end", -1, 0,
	    0, NULL, "body must be a string, got a table");
}

static void
test_req_table(void **state)
{
	/* Every field, joined into the body. */
	ca_expect(
	    "function canAccept(req)\n"
	    "  local q = req.query\n"
	    "  return false, 400, table.concat({ req.method, req.path,\n"
	    "    q.a, q['b c'], q.d, q[''], q.session, tostring(q.x),\n"
	    "    req.headers['x-multi'], req.headers.host,\n"
	    "    tostring(req.headers['X-Multi']), req.remote_addr,\n"
	    "    req.session, '[' .. req.mode .. ']' }, '|')\n"
	    "end\n", 0, 0, 400,
	    "GET|/ws|1|A%2x||e|t.1|nil|one, two|example.org|nil|192.0.2.7|"
	    "t.1|[]", NULL);
}

static void
test_req_nulls(void **state)
{
	struct policy		*p;
	struct policy_req	 r;
	struct policy_verdict	 v;
	struct policy_kv	 h[2] = { { NULL, "x" }, { "a", NULL } };
	char			 err[ERR_LEN];

	p = load_ok(GT_NO,
	    "function canAccept(req)\n"
	    "  if req.method == '' then\n"
	    "    local n = 0 for k in pairs(req.query) do n = n + 1 end\n"
	    "    return false, 400, req.path .. req.session .. req.mode ..\n"
	    "      req.remote_addr .. n .. '/' .. req.headers.a\n"
	    "  end\n"
	    "  return true\n"
	    "end\n");
	memset(&r, 0, sizeof(r));
	r.headers = h;
	r.nheaders = 2;
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(v.status, 400);
	assert_string_equal(v.body, "0/");
	policy_unref(p);
}

#define GT_FULL \
	"function getTunnelInfo(req)\n" \
	"  if req.session == '' then return nil, 'dry' end\n" \
	"  return { id = 'alpha-1', tenant = 'alpha', mode = 'r-wsserver',\n" \
	"    pass = 'p', encPass = 'e', encCount = 5,\n" \
	"    forwards = { 'r,:8001,localhost:22', ':8002,localhost:80' },\n" \
	"    connectMode = 'OneShot', idleTimeout = 0, keepalive = 30,\n" \
	"    maxStreams = 4, rateUp = 10000000, rateDown = 1 << 40,\n" \
	"    maxBytes = 5 << 30, maxConnectRate = 7, sessionTimeout = 30,\n" \
	"    destinations = { '!127.0.0.0/8:*', '*.example.com:443' } }\n" \
	"end\n"

static void
test_get_tunnel(void **state)
{
	struct policy		*p = load_ok(GT_FULL, CA_TRUE);
	struct policy_req	 r = req_default();
	struct policy_tunnel	 t;
	char			 err[ERR_LEN];

	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 0);
	assert_string_equal(t.id, "alpha-1");
	assert_string_equal(t.tenant, "alpha");
	assert_string_equal(t.mode, "r-wsserver");
	assert_string_equal(t.pass, "p");
	assert_string_equal(t.encpass, "e");
	assert_int_equal(t.enc_count, 5);
	assert_int_equal(t.nfwd, 2);
	assert_string_equal(t.forwards[0], "r,:8001,localhost:22");
	assert_string_equal(t.forwards[1], ":8002,localhost:80");
	assert_string_equal(t.connect_mode, "OneShot");
	assert_int_equal(t.idle_timeout, 0);
	assert_int_equal(t.keepalive, 30);
	assert_int_equal(t.limits.max_streams, 4);
	assert_int_equal(t.limits.rate_up, 10000000);
	assert_int_equal(t.limits.rate_down, 1LL << 40);
	assert_int_equal(t.limits.max_bytes, 5LL << 30);
	assert_int_equal(t.limits.max_connect_rate, 7);
	assert_int_equal(t.limits.session_timeout, 30);
	assert_int_equal(t.ndest, 2);
	assert_string_equal(t.dests[0], "!127.0.0.0/8:*");
	assert_string_equal(t.dests[1], "*.example.com:443");
	policy_tunnel_cleanse(&t);
	assert_string_equal(t.pass, "");
	assert_string_equal(t.encpass, "");

	/* The refusal of the dry call's request. */
	r.session = "";
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "dry");
	policy_unref(p);
}

static void
test_get_tunnel_defaults(void **state)
{
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_tunnel	 t;
	char			 err[ERR_LEN];

	p = load_ok("function getTunnelInfo(req)\n"
	    "  return { id = 'x', mode = 'wsserver', pass = 'p',\n"
	    "    encPass = 'e', encCount = -7 }\n"
	    "end\n", CA_TRUE);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 0);
	assert_string_equal(t.id, "x");
	assert_string_equal(t.tenant, "x");
	assert_string_equal(t.mode, "wsserver");
	assert_int_equal(t.enc_count, -1);
	assert_int_equal(t.nfwd, 0);
	assert_string_equal(t.connect_mode, "CanReconnect");
	assert_int_equal(t.idle_timeout, 600);
	assert_int_equal(t.keepalive, 20);
	/* No limits unless the policy sets them. */
	assert_int_equal(t.limits.max_streams, 0);
	assert_int_equal(t.limits.rate_up, 0);
	assert_int_equal(t.limits.rate_down, 0);
	assert_int_equal(t.limits.max_bytes, 0);
	assert_int_equal(t.limits.max_connect_rate, 0);
	assert_int_equal(t.limits.session_timeout, 600);
	policy_tunnel_cleanse(&t);
	policy_unref(p);

	/* encCount 0 (plaintext) is the one case without encPass. */
	p = load_ok("function getTunnelInfo(req)\n"
	    "  return { id = 'x', mode = 'server', pass = 'p', encCount = 0 }\n"
	    "end\n", CA_TRUE);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 0);
	assert_int_equal(t.enc_count, 0);
	assert_string_equal(t.encpass, "");
	policy_unref(p);
}

static void
test_get_tunnel_refused(void **state)
{
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_tunnel	 t;
	char			 err[ERR_LEN];

	p = load_ok("function getTunnelInfo(req)\n"
	    "  if req.query.a then return nil, 'no such tenant' end\n"
	    "  if req.mode == 'x' then return false end\n"
	    "  if req.mode == 'nl' then return nil, 'one\\r\\ntwo\\0' end\n"
	    "end\n", CA_TRUE);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "no such tenant");
	r.query = "";
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "refused by getTunnelInfo");
	r.mode = "x";
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "refused by getTunnelInfo");
	/* err is one line, whatever the script says. */
	r.mode = "nl";
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "one  two ");
	assert_string_equal(t.pass, "");
	policy_unref(p);
}

/* The fields of a valid table, to break one at a time. */
#define GT_OK_FIELDS \
	"id = 'x', mode = 'wsserver', pass = 'secret1', encPass = 'secret2'"

static void
gt_bad(struct policy *p, const char *fields, const char *why)
{
	struct policy_req	 r = req_default();
	struct policy_tunnel	 t;
	char			 src[2048], hp[256], err[ERR_LEN];
	struct policy		*q;

	snprintf(src, sizeof(src),
	    "function getTunnelInfo(req)\n"
	    "  if req.session == '' then return nil end\n"
	    "  return { %s }\n"
	    "end\n", fields);
	script(hp, src);
	err[0] = '\0';
	if (policy_load(hp, NULL, NULL, &q, err) != 0)
		fail_msg("policy_load: %s", err);
	err[0] = '\0';
	if (policy_get_tunnel(q, &r, &t, err) != -1)
		fail_msg("accepted { %s }", fields);
	if (strstr(err, why) == NULL)
		fail_msg("{ %s }: error '%s' lacks '%s'", fields, err, why);
	/* Secrets never reach a message, and are gone from t. */
	assert_null(strstr(err, "secret"));
	assert_string_equal(t.pass, "");
	assert_string_equal(t.encpass, "");
	policy_unref(q);

	/* The shared state goes on working after a bad answer. */
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 0);
	policy_tunnel_cleanse(&t);
}

static void
test_get_tunnel_types(void **state)
{
	struct policy	*p = load_ok(GT_FULL, NULL);

	gt_bad(p, GT_OK_FIELDS ", forwards = 'r,:1,h:2'",
	    "forwards must be a list of strings, got a string");
	gt_bad(p, GT_OK_FIELDS ", encCount = '5'",
	    "encCount must be an integer, got a string");
	gt_bad(p, GT_OK_FIELDS ", encCount = 1.5",
	    "encCount must be an integer, got a fraction");
	gt_bad(p, "id = 'x', mode = 'client', pass = 'p', encPass = 'e'",
	    "mode must be server, r-server, wsserver or r-wsserver");
	gt_bad(p, "id = 'x', pass = 'p', encPass = 'e'", "mode is required");
	gt_bad(p, "mode = 'server', pass = 'p', encPass = 'e'",
	    "id is required");
	gt_bad(p, "id = 'x y', mode = 'server', pass = 'p', encPass = 'e'",
	    "id must match");
	gt_bad(p, GT_OK_FIELDS ", tenant = ''", "tenant must match");
	gt_bad(p, "id = 'x', mode = 'server', encPass = 'e'",
	    "pass is required");
	gt_bad(p, "id = 'x', mode = 'server', pass = '', encPass = 'e'",
	    "pass must not be empty");
	gt_bad(p, "id = 'x', mode = 'server', pass = 42, encPass = 'e'",
	    "pass must be a string, got a number");
	gt_bad(p, "id = 'x', mode = 'server', pass = 'secret1'",
	    "encPass is required unless encCount is 0");
	gt_bad(p, GT_OK_FIELDS ", pass = 'a\\0b'", "pass contains a NUL");
	gt_bad(p, GT_OK_FIELDS ", pass = string.rep('s', 256)",
	    "pass is longer than 255 bytes");
	gt_bad(p, GT_OK_FIELDS ", encpass = 'typo'", "unknown field 'encpass'");
	gt_bad(p, GT_OK_FIELDS ", [1] = 'x'", "has a number key");
	gt_bad(p, GT_OK_FIELDS ", [string.rep('k', 100)] = 1",
	    "unknown field 'kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk...'");
	gt_bad(p, "", "id is required");
	gt_bad(p, "id = 'x', mode = 'r-server', pass = 'p', encPass = 'e'",
	    "mode r-server needs at least one forward");
	gt_bad(p, GT_OK_FIELDS ", forwards = { 'a', 2 }",
	    "forwards[2] must be a string, got a number");
	gt_bad(p, GT_OK_FIELDS ", forwards = { 'a', '' }",
	    "forwards[2] must be 1 to 511 bytes");
	gt_bad(p, GT_OK_FIELDS ", forwards = { string.rep('f', 512) }",
	    "forwards[1] must be 1 to 511 bytes");
	gt_bad(p, GT_OK_FIELDS ", forwards = { 'a', x = 'b' }",
	    "forwards must be a list");
	gt_bad(p, GT_OK_FIELDS ", forwards = { [1] = 'a', [3] = 'c' }",
	    "forwards must be a list");
	gt_bad(p, GT_OK_FIELDS ", forwards = (function() local t = {} "
	    "for i = 1, 65 do t[i] = 'f' end return t end)()",
	    "65 forwards, at most 64");
	gt_bad(p, GT_OK_FIELDS ", destinations = '*:*'",
	    "destinations must be a list of strings, got a string");
	gt_bad(p, GT_OK_FIELDS ", destinations = { '*:*', 443 }",
	    "destinations[2] must be a string, got a number");
	gt_bad(p, GT_OK_FIELDS ", destinations = { '*.example.com' }",
	    "destinations[1]: destination pattern '*.example.com': need "
	    "HOST:PORTS");
	gt_bad(p, GT_OK_FIELDS ", destinations = { 'a:1,b:2' }",
	    "destinations[1]: destination pattern 'a:1,b:2'");
	gt_bad(p, GT_OK_FIELDS ", destinations = { string.rep('d', 272) }",
	    "destinations[1] must be shorter than 272 bytes");
	gt_bad(p, GT_OK_FIELDS ", destinations = { '*:1', x = '*:2' }",
	    "destinations must be a list");
	gt_bad(p, GT_OK_FIELDS ", destinations = (function() local t = {} "
	    "for i = 1, 65 do t[i] = '*:' .. i end return t end)()",
	    "65 destinations, at most 64");
	gt_bad(p, GT_OK_FIELDS ", connectMode = 'Client'",
	    "connectMode must be CanReconnect or OneShot");
	gt_bad(p, GT_OK_FIELDS ", idleTimeout = -1",
	    "idleTimeout -1 is not in 0..2592000");
	gt_bad(p, GT_OK_FIELDS ", keepalive = 1",
	    "keepalive 1 is not in 2..3600");
	gt_bad(p, GT_OK_FIELDS ", maxStreams = 8193",
	    "maxStreams 8193 is not in 0..8192");
	gt_bad(p, GT_OK_FIELDS ", rateUp = -1", "rateUp -1 is not in");
	gt_bad(p, GT_OK_FIELDS ", rateDown = 1.5",
	    "rateDown must be an integer, got a fraction");
	gt_bad(p, GT_OK_FIELDS ", maxBytes = 1 << 61", "maxBytes");
	gt_bad(p, GT_OK_FIELDS ", maxConnectRate = '5'",
	    "maxConnectRate must be an integer");
	gt_bad(p, GT_OK_FIELDS ", sessionTimeout = 0",
	    "sessionTimeout 0 is not in 1..2592000");
	gt_bad(p, GT_OK_FIELDS ", encCount = 2^40",
	    "encCount 1099511627776 is not in -2147483648..2147483647");
	gt_bad(p, GT_OK_FIELDS ", encCount = -(1 << 40)",
	    "encCount -1099511627776 is not in");
	policy_unref(p);
}

static void
test_get_tunnel_results(void **state)
{
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_tunnel	 t;
	char			 err[ERR_LEN];

	p = load_ok("function getTunnelInfo(req)\n"
	    "  if req.session == '' then return nil end\n"
	    "  if req.mode == 's' then return 'tenant' end\n"
	    "  return nil, 42\n"
	    "end\n", NULL);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), -1);
	assert_non_null(strstr(err, "message after nil must be a string"));
	r.mode = "s";
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), -1);
	assert_non_null(strstr(err, "returned a string, expected a table"));
	policy_unref(p);
}

static void
test_load_errors(void **state)
{
	struct policy		*p = (struct policy *)&p;
	struct policy_limits	 lim = { 0, 1024, 0 };
	char			 err[ERR_LEN];

	load_fails("function getTunnelInfo(req)\n  return {\nend\n", CA_TRUE,
	    ".lua:3: unexpected symbol near 'end'");
	load_fails(GT_NO, "function canAccept(req) return true\n",
	    ".lua:2: 'end' expected (to close 'function' at line 1) near "
	    "<eof>");
	load_fails("x = 1\n", CA_TRUE,
	    "no global function getTunnelInfo (found a nil)");
	load_fails(GT_NO, "function canaccept(req) return true end\n",
	    "no global function canAccept (found a nil)");
	load_fails(GT_NO, "canAccept = 1\n",
	    "no global function canAccept (found a number)");
	/* The top level runs: its errors count. */
	load_fails("error('no config')\n" GT_NO, CA_TRUE, ".lua:1: no config");
	/* The dry calls. */
	load_fails(GT_NO, "function canAccept(req)\n  return req.x.y\nend\n",
	    "canAccept dry call: ");
	load_fails(GT_NO, "function canAccept(req)\n  return req.x.y\nend\n",
	    ".lua:2: attempt to index a nil value (field 'x')");
	load_fails("function getTunnelInfo(req) return { id = 1 } end\n",
	    CA_TRUE, "getTunnelInfo dry call: getTunnelInfo: id must be");
	load_fails("function getTunnelInfo(req) while true do end end\n",
	    CA_TRUE, "instruction budget of 1000000 exceeded");
	/* Source only: bytecode could break the VM. */
	load_fails("\033Lua garbage", CA_TRUE, "attempt to load a binary "
	    "chunk");

	assert_int_equal(policy_load("/nonexistent/h.lua", NULL, NULL, &p,
	    err), -1);
	assert_non_null(strstr(err, "cannot open /nonexistent/h.lua"));
	assert_null(p);

	assert_int_equal(load(GT_NO, NULL, &lim, &p, err), -1);
	assert_non_null(strstr(err, "memory limit of 1024 bytes is below"));
}

static void
test_runtime_error(void **state)
{
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_verdict	 v;
	struct policy_tunnel	 t;
	char			 err[ERR_LEN];

	p = load_ok(
	    "function getTunnelInfo(req)\n"
	    "  if req.session == '' then return nil end\n"
	    "  local cfg = nil\n"
	    "  return cfg.tenant\n"
	    "end\n",
	    "local function check(req)\n"
	    "  if req.session ~= '' then\n"
	    "    error('bad session ' .. req.session)\n"
	    "  end\n"
	    "end\n"
	    "function canAccept(req)\n"
	    "  check(req)\n"
	    "  return true\n"
	    "end\n");
	assert_int_equal(policy_can_accept(p, &r, &v, err), -1);
	assert_non_null(strstr(err, ".lua:3: bad session t.1; traceback: "
	    "[C]: in function 'error' | "));
	assert_non_null(strstr(err, ".lua:3: in upvalue 'check' | "));
	assert_non_null(strstr(err, ".lua:7: in function 'canAccept'"));
	assert_null(strchr(err, '\n'));
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), -1);
	assert_non_null(strstr(err, ".lua:4: attempt to index a nil value "
	    "(local 'cfg'); traceback: "));
	/* Non-string error objects. */
	policy_unref(p);
	p = load_ok(GT_NO, "function canAccept(req)\n"
	    "  if req.session ~= '' then error({}) end return true\nend\n");
	assert_int_equal(policy_can_accept(p, &r, &v, err), -1);
	assert_non_null(strstr(err, "(error object is a table value)"));
	policy_unref(p);
	p = load_ok(GT_NO, "function canAccept(req)\n"
	    "  if req.session ~= '' then error(setmetatable({}, { __tostring ="
	    " function() return 'custom' end })) end return true\nend\n");
	assert_int_equal(policy_can_accept(p, &r, &v, err), -1);
	assert_non_null(strstr(err, "custom; traceback"));
	policy_unref(p);
}

static double
now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

/*
 * body runs in canAccept and in getTunnelInfo (on the shared state) for
 * requests with a session; both must fail with why, quickly, and the
 * next call must work.
 */
static void
runaway(const char *body, const char *why)
{
	struct policy		*p;
	struct policy_req	 r = req_default(), ok = req_default();
	struct policy_verdict	 v;
	struct policy_tunnel	 t;
	char			 h[1024], c[1024], err[ERR_LEN];
	double			 t0;
	int			 i;

	/* body is on line 3 of both scripts. */
	snprintf(h, sizeof(h),
	    "n = 0\n"
	    "function getTunnelInfo(req) n = n + 1\n"
	    "  if req.session ~= '' then %s end\n"
	    "  return { id = 'x' .. n, mode = 'server', pass = 'p',\n"
	    "    encCount = 0 }\n"
	    "end\n", body);
	snprintf(c, sizeof(c),
	    "-- canAccept\n"
	    "function canAccept(req)\n"
	    "  if req.session ~= '' then %s end\n"
	    "  return true\n"
	    "end\n", body);
	p = load_ok(h, c);
	ok.session = "";
	for (i = 0; i < 2; i++) {
		t0 = now();
		err[0] = '\0';
		if (policy_can_accept(p, &r, &v, err) != -1)
			fail_msg("canAccept '%s' did not fail", body);
		if (strstr(err, why) == NULL)
			fail_msg("canAccept '%s': '%s' lacks '%s'", body, err,
			    why);
		assert_true(now() - t0 < 2.0);
		assert_int_equal(policy_can_accept(p, &ok, &v, err), 0);
		assert_int_equal(v.accept, 1);

		t0 = now();
		err[0] = '\0';
		assert_int_equal(policy_get_tunnel(p, &r, &t, err), -1);
		if (strstr(err, why) == NULL)
			fail_msg("getTunnelInfo '%s': '%s' lacks '%s'", body,
			    err, why);
		assert_true(now() - t0 < 2.0);
		assert_int_equal(policy_get_tunnel(p, &ok, &t, err), 0);
		/* The counter went on: x2 after the failed first call. */
		assert_string_equal(t.id, i == 0 ? "x2" : "x4");
	}
	policy_unref(p);
}

static void
test_budget(void **state)
{
	runaway("while true do end", "instruction budget of 1000000 "
	    "exceeded at ");
	runaway("while true do end", ".lua:3");
	runaway("pcall(function() while true do end end)",
	    "instruction budget");
	runaway("while true do pcall(function() while true do end end) end",
	    "instruction budget");
	runaway("xpcall(function() while true do end end, "
	    "function() while true do end end)", "instruction budget");
	runaway("while true do pcall(error, 'x') end", "instruction budget");
	/* A __close handler runs while the error unwinds: still stopped. */
	runaway("do local x <close> = setmetatable({}, { __close = "
	    "function() while true do end end }) while true do end end",
	    "instruction budget");
	/* Hooks are off in a message handler called for the hook's error. */
	runaway("error(setmetatable({}, { __tostring = function() "
	    "while true do end end }))", "instruction budget");
	/* Finalizers run without hooks: refused. */
	runaway("setmetatable({}, { __gc = function() while true do end "
	    "end })", ".lua:3: __gc metamethods are not allowed");
	/* Lua stack growth is memory: 1e6 slots do not fit in 8 MiB. */
	runaway("local function f() return 1 + f() end f()", "memory limit");
	runaway("local t = setmetatable({}, {}) getmetatable(t).__index = "
	    "function(t, k) return t[k] end local x = t.x", "stack overflow");
	/* Table functions that call back into Lua are counted too. */
	runaway("local t = {} for i = 1, 100 do t[i] = i end "
	    "table.sort(t, function(a, b) while true do end end)",
	    "instruction budget");
}

/*
 * Library functions that loop in C over a count, a range or a pattern
 * the script chose: no VM instruction runs in the loop, so only the
 * charge to the budget stops them (docs/lua-api.md "Limits").
 */
static void
test_c_loops(void **state)
{
	static const struct {
		const char	*body;
		const char	*why;
	} loops[] = {
		{ "local s = string.rep('', 2^62)", "instruction budget" },
		{ "table.move({}, 1, math.maxinteger - 1, 2)",
		    "instruction budget" },
		{ "table.move({}, -(1 << 62), (1 << 62) - 2, 1)",
		    "instruction budget" },
		/*
		 * __index a C function: no VM instruction per element; a
		 * stateful __len could answer a check and the loop
		 * differently.  The wrappers refuse such tables.
		 */
		{ "table.concat(setmetatable({}, { __index = table.concat }), "
		    "'', 1, 2^62)", "table with a __index metamethod" },
		{ "table.insert(setmetatable({}, { __len = function() "
		    "return 2^62 end }), 1, 0)", "table with a __len metamethod" },
		{ "table.remove(setmetatable({}, { __len = function() "
		    "return 2^62 end }), 1)", "table with a __len metamethod" },
		{ "table.sort(setmetatable({}, { __len = function() "
		    "return 2^30 end, __index = rawlen }))",
		    "table with a __len metamethod" },
		{ "table.move({ 1 }, 1, 1, 1, setmetatable({}, "
		    "{ __newindex = rawset }))", "table with a __newindex" },
		/* Backtracking: O(n^6) steps in C, refused before. */
		{ "string.find(string.rep('a', 5000), '.-.-.-.-.-b')",
		    "pattern too complex for a subject of 5000 bytes" },
		{ "string.match(string.rep('a', 5000), '(.-)(.-)(.-)(.-)b')",
		    "pattern too complex" },
		{ "string.gsub(string.rep('a', 5000), 'a*a*a*a*b', '')",
		    "pattern too complex" },
		{ "for x in string.gmatch(string.rep('a', 5000), '.-.-.-.-b') "
		    "do end", "pattern too complex" },
		{ "string.find(string.rep('(', 200000), '%b()')",
		    "pattern too complex" },
		{ "string.find(string.rep('a', 4000), '[' .. "
		    "string.rep('b', 100000) .. 'a]*c')", "pattern too complex" },
		{ "local c = string.rep('a', 100000) "
		    "string.find(c .. c, '(' .. c .. ')%1b')",
		    "pattern too complex" },
		/* gsub scans a string replacement once per match. */
		{ "string.gsub(string.rep('a', 100000), '', "
		    "string.rep('%%0', 10000))", "pattern too complex" },
		/* A plain find compares up to #p bytes per candidate. */
		{ "local s = string.rep('a', 400000) "
		    "string.find(s, s:sub(1, 200000) .. 'b', 1, true)",
		    "instruction budget" },
	};
	size_t	 i;

	for (i = 0; i < sizeof(loops) / sizeof(loops[0]); i++)
		runaway(loops[i].body, loops[i].why);
}

/*
 * Each refusal on its own: a catchable error naming the reason, raised
 * before any work; and what policies do (an anchored or amortised
 * pattern on an 8 KiB header) still works.
 */
static void
test_c_loops_refusals(void **state)
{
	static struct policy_kv	 hs[3];
	static char		 auth[8200], cookie[8200], ws[8200];
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_verdict	 v;
	char			 err[ERR_LEN];

	ca_expect("function canAccept(req)\n"
	    "  local ok, e = pcall(function() return table.concat(\n"
	    "    setmetatable({ 'a' }, { __len = function() return 1 end }))\n"
	    "  end)\n"
	    "  assert(not ok)\n"
	    "  return false, 403, e:match(': (bad argument.*)$')\n"
	    "end\n", 0, 0, 403, "bad argument #1 to 'concat' "
	    "(table with a "
	    "__len metamethod not allowed)", NULL);
	ca_expect("function canAccept(req)\n"
	    "  table.concat(setmetatable({ 'a' }, { __len = function() "
	    "return 1 end }))\n"
	    "end\n", -1, 0, 500, NULL, "table with a __len metamethod");
	ca_expect("function canAccept(req)\n"
	    "  local ok, e = pcall(string.find, string.rep('a', 8192), "
	    "'(.-)=(.-);(.-)$')\n"
	    "  assert(not ok)\n"
	    "  return false, 403, e\n"
	    "end\n", 0, 0, 403,
	    "pattern too complex for a subject of 8192 bytes", NULL);

	/* 8 KiB headers, the worst case for these patterns' bounds. */
	memcpy(auth, "Bearer ", 7);
	memset(auth + 7, 'a', 8185);
	auth[8192] = '\0';
	memset(cookie, '=', 8192);
	memcpy(cookie + 8000, "session=abc123;", 15);
	cookie[8192] = '\0';
	memset(ws, ' ', 8192);
	ws[8191] = 'x';
	ws[8192] = '\0';
	hs[0].name = "authorization";
	hs[0].value = auth;
	hs[1].name = "cookie";
	hs[1].value = cookie;
	hs[2].name = "x-spaces";
	hs[2].value = ws;
	r.headers = hs;
	r.nheaders = 3;
	p = load_ok(GT_NO, "function canAccept(req)\n"
	    "  if req.session == '' then return true end\n"
	    "  local h = req.headers\n"
	    "  local tok = h.authorization:match('^Bearer%s+(%S+)$')\n"
	    "  assert(#tok == 8185)\n"
	    "  assert(h.cookie:match('session=(%w+)') == 'abc123')\n"
	    "  assert(h['x-spaces']:gsub('%s+', '') == 'x')\n"
	    "  assert(h['x-spaces']:find('x', 1, true) == 8192)\n"
	    "  return true\n"
	    "end\n");
	err[0] = '\0';
	if (policy_can_accept(p, &r, &v, err) != 0)
		fail_msg("8 KiB headers: %s", err);
	assert_int_equal(v.accept, 1);
	policy_unref(p);
}

/*
 * Normal uses of the wrapped functions, each a chunk returning values:
 * test_c_loops_semantics runs them in a policy and in a plain Lua state
 * with the real library, and wants the same results.
 */
static const char *const same_as_lua[] = {
	"return string.find('Basic  dXNlcg==', '^(%S+)%s+(.-)$')",
	"return string.find('a.b', '.', 1, true)",
	"return string.find('hello world', 'o w')",
	"return string.find('hello', 'l+', 1)",
	"return string.find('hello', 'xyz')",
	"return string.find('abcb', 'b', -1)",
	"return string.find('abc', '', 10)",
	"return string.find('THE (quick) fox', '%f[%a]%a+', 5)",
	"return string.match('t1.abc', '^(%w+)%.')",
	"return string.match('f(a(b)c)', '%b()')",
	"return string.match('key = value', '(%w+)%s*=%s*(%w+)')",
	"return string.match('  trim me  ', '^%s*(.-)%s*$')",
	"return string.match('2024-01-02', '(%d+)-(%d+)-(%d+)')",
	"return string.match('hello', '()ll()')",
	"return string.match('a[x]b', '[%[%]]x?')",
	"return string.match('abab', '(ab)%1')",
	"return string.match('x-y', '[^%w]')",
	"return string.match('hello', '.-l', 2)",
	"return string.gsub('hello world', 'o', '0')",
	"return string.gsub('abc', '%w', '%0%0')",
	"return string.gsub('abc', '', '-')",
	"return string.gsub('hello world', '(%w+)', '<%1>', 1)",
	"return string.gsub('$a is $b', '%$(%w+)', { a = 'x', b = 3 })",
	"return string.gsub('abc', '.', function(c) return c:upper() end)",
	"return string.gsub('x^2 x', '^x', 'y')",
	"return string.gsub('  a  b  ', '%s+', ' ')",
	"local o = {} for k, v in string.gmatch('a=1, b=2', '(%w+)=(%w+)') "
	    "do o[#o + 1] = k .. v end return table.concat(o, ',')",
	"local o = {} for k in string.gmatch('abcabc', 'b', 3) "
	    "do o[#o + 1] = k end return #o",
	"local o = {} for k in string.gmatch('^a^a', '^a') "
	    "do o[#o + 1] = k end return #o",
	"return ('x'):rep(3, ','), string.rep('ab', 0)",
	"return string.byte('abc', 1, -1)",
	"return utf8.codepoint('\\u{48}\\u{49}', 1, -1)",
	"return table.concat({ 1, 2, 3 }, ', ', 2, 3), table.concat({}, 'x')",
	"return table.concat({ 1, 'a', 2.5 })",
	"local t = { 5, 3, 9, 1 } table.sort(t) return table.concat(t, ',')",
	"local t = { 'b', 'c', 'a' } table.sort(t, function(a, b) "
	    "return a > b end) return table.concat(t, ',')",
	"local t = { 1, 2 } table.insert(t, 1, 0) table.insert(t, 9) "
	    "table.insert(t, 5, 8) return table.concat(t, ',')",
	"local t = { 1, 2, 3 } return table.remove(t, 1), table.remove(t), "
	    "table.remove(t, #t + 1), table.remove({}), table.concat(t, ',')",
	"return table.concat(table.move({ 1, 2, 3 }, 1, 3, 2), ',')",
	"return table.concat(table.move({ 1, 2, 3 }, 2, 3, 1, { 7 }), ',')",
	"return table.concat(table.move({ 1, 2, 3 }, 3, 1, 1), ',')",
	"return table.unpack({ 1, 2, 3 })",
	"return table.unpack({ 1, 2, 3 }, 2)",
	"return select('#', table.unpack({ 1, 2, 3 }, -1, 1))",
	"return table.unpack({ 1, 2, 3 }, 3, 2)",
	"local t = setmetatable({ 2, 1 }, { __tostring = tostring }) "
	    "table.sort(t) return t[1], t[2]",
};

/* The results of chunk, called in a function, as one string. */
static const char same_fmt[] =
    "local function f() %s end\n"
    "function canAccept(req)\n"
    "  if req.session == '' then return true end\n"
    "  local r = table.pack(pcall(f))\n"
    "  for i = 1, r.n do r[i] = type(r[i]) .. ':' .. tostring(r[i]) end\n"
    "  return false, 403, table.concat(r, '|', 1, r.n)\n"
    "end\n";

/* What the plain Lua library answers, in out of len bytes. */
static void
plain_lua(const char *src, char *out, size_t len)
{
	lua_State	*L;
	const char	*s;

	if ((L = luaL_newstate()) == NULL)
		fail_msg("luaL_newstate");
	luaL_openlibs(L);
	if (luaL_loadbuffer(L, src, strlen(src), "=canAccept") != LUA_OK ||
	    lua_pcall(L, 0, 0, 0) != LUA_OK)
		fail_msg("plain Lua: %s", lua_tostring(L, -1));
	lua_getglobal(L, "canAccept");
	lua_createtable(L, 0, 1);
	lua_pushliteral(L, "x");
	lua_setfield(L, -2, "session");
	if (lua_pcall(L, 1, 3, 0) != LUA_OK ||
	    (s = lua_tostring(L, -1)) == NULL)
		fail_msg("plain Lua: %s", lua_tostring(L, -1));
	snprintf(out, len, "%s", s);
	lua_close(L);
}

/* The bounded functions still answer as Lua's own. */
static void
test_c_loops_semantics(void **state)
{
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_verdict	 v;
	char			 src[2048], want[POLICY_BODY_LEN];
	char			 err[ERR_LEN];
	size_t			 i;

	ca_expect("function canAccept(req)\n"
	    "  assert(string.rep('ab', 3, ',') == 'ab,ab,ab')\n"
	    "  assert(('x'):rep(0) == '' and string.rep('', 5) == '')\n"
	    "  assert(#string.rep('y', 100000) == 100000)\n"
	    "  assert(string.rep('abc', 2, '') == 'abcabc')\n"
	    "  assert(string.rep('', 3, '-') == '--')\n"
	    "  assert(string.rep('a', 1, '-') == 'a')\n"
	    "  local r = string.rep('xy', 1000, '+')\n"
	    "  assert(#r == 2999 and r:sub(-5) == 'xy+xy' and "
	    "not r:find('yx'))\n"
	    "  local a, b, c = string.find('Basic  dXNlcg==', "
	    "'^(%S+)%s+(.-)$')\n"
	    "  assert(a == 1 and b == 15 and c == 'Basic')\n"
	    "  assert(select(4, string.find('Basic  dXNlcg==', "
	    "'^(%S+)%s+(.-)$')) == 'dXNlcg==')\n"
	    "  assert(string.find('a.b', '.', 1, true) == 2)\n"
	    "  assert(string.match('t1.abc', '^(%w+)%.') == 't1')\n"
	    "  assert(string.match('f(a(b)c)', '%b()') == '(a(b)c)')\n"
	    "  assert(select(2, string.gsub('hello world', 'o', '0')) == 2)\n"
	    "  assert(string.gsub('abc', '%w', '%0%0') == 'aabbcc')\n"
	    "  assert(string.gsub('abc', '', '-') == '-a-b-c-')\n"
	    "  local n = 0 for k, v in string.gmatch('a=1, b=2', "
	    "'(%w+)=(%w+)') do n = n + 1 end assert(n == 2)\n"
	    "  assert(string.find('THE (quick) fox', '%f[%a]%a+', 5) == 6)\n"
	    "  assert(select(2, ('x'):byte(1, -1)) == nil)\n"
	    "  assert(utf8.codepoint('\\u{48}\\u{49}', 1, -1) == 72)\n"
	    "  local t = { 5, 3, 9, 1 } table.sort(t)\n"
	    "  assert(table.concat(t, ',') == '1,3,5,9')\n"
	    "  table.sort(t, function(a, b) return a > b end)\n"
	    "  assert(table.concat(t, ',', 2, 3) == '5,3')\n"
	    "  table.insert(t, 1, 0) table.insert(t, 7)\n"
	    "  assert(table.concat(t, ',') == '0,9,5,3,1,7')\n"
	    "  assert(table.remove(t, 1) == 0 and table.remove(t) == 7)\n"
	    "  assert(table.concat(table.move(t, 1, 2, 3), ',') == "
	    "'9,5,9,5')\n"
	    "  assert(select('#', table.unpack({ 1, 2, 3 })) == 3)\n"
	    "  return true\n"
	    "end\n", 0, 1, 0, "", NULL);

	/* Exactly what Lua's own functions answer. */
	for (i = 0; i < sizeof(same_as_lua) / sizeof(same_as_lua[0]); i++) {
		snprintf(src, sizeof(src), same_fmt, same_as_lua[i]);
		plain_lua(src, want, sizeof(want));
		if (strncmp(want, "boolean:true", 12) != 0)
			fail_msg("'%s' failed in plain Lua: %s", same_as_lua[i],
			    want);
		p = load_ok(GT_NO, src);
		err[0] = '\0';
		if (policy_can_accept(p, &r, &v, err) != 0)
			fail_msg("'%s': %s", same_as_lua[i], err);
		if (strcmp(v.body, want) != 0)
			fail_msg("'%s': policy '%s', Lua '%s'", same_as_lua[i],
			    v.body, want);
		policy_unref(p);
	}
}

/*
 * The wall-clock watchdog: with an instruction budget too large to
 * matter, a call stops after time_ms, in VM code (the hook reads the
 * clock) and in a C loop that calls C functions without a VM
 * instruction (only the watchdog thread's lua_sethook reaches it); a
 * script can not catch it, and the shared state works afterwards.
 */
static void
test_watchdog(void **state)
{
	static const char *const bodies[] = {
		"while true do end",
		"pcall(function() while true do end end)",
		"string.gsub(string.rep('x', 4000000), 'x', string.upper)",
		"string.gsub(string.rep('x', 4000000), '', tostring)",
	};
	struct policy_limits	 lim = { 1UL << 62, 0, 200 };
	struct policy		*p;
	struct policy_req	 r = req_default(), ok = req_default();
	struct policy_verdict	 v;
	struct policy_tunnel	 t;
	char			 h[1024], c[1024], err[ERR_LEN];
	size_t			 i;
	double			 t0;

	ok.session = "";
	for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
		snprintf(h, sizeof(h),
		    "function getTunnelInfo(req)\n"
		    "  if req.session ~= '' then %s end\n"
		    "  return { id = 'x', mode = 'server', pass = 'p',\n"
		    "    encCount = 0 }\n"
		    "end\n", bodies[i]);
		snprintf(c, sizeof(c),
		    "function canAccept(req)\n"
		    "  if req.session ~= '' then %s end\n"
		    "  return true\n"
		    "end\n", bodies[i]);
		assert_int_equal(load(h, c, &lim, &p, err), 0);
		t0 = now();
		assert_int_equal(policy_can_accept(p, &r, &v, err), -1);
		if (strstr(err, "time budget of 200 ms exceeded") == NULL)
			fail_msg("canAccept '%s': '%s'", bodies[i], err);
		assert_true(now() - t0 < 20.0);
		assert_int_equal(policy_get_tunnel(p, &r, &t, err), -1);
		if (strstr(err, "time budget of 200 ms exceeded") == NULL)
			fail_msg("getTunnelInfo '%s': '%s'", bodies[i], err);
		/* The watchdog's hook is gone: the next calls run. */
		assert_int_equal(policy_get_tunnel(p, &ok, &t, err), 0);
		assert_int_equal(policy_can_accept(p, &ok, &v, err), 0);
		assert_int_equal(v.accept, 1);
		policy_unref(p);
	}
}

/*
 * The dispatcher's HTTP layer decodes the query once; policy_query_append
 * keeps what it decoded byte for byte, so req.query.session is the
 * session routed on, and a decoded '&session=' stays inside its value.
 */
static void
test_query_once(void **state)
{
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_verdict	 v;
	char			 q[64], err[ERR_LEN];
	size_t			 len = 0;

	assert_int_equal(policy_query_append(q, sizeof(q), &len, "x",
	    "&session=evil"), 0);
	assert_int_equal(policy_query_append(q, sizeof(q), &len, "session",
	    "alpha%2Ebob"), 0);
	assert_int_equal(policy_query_append(q, sizeof(q), &len, "p",
	    "a+b c"), 0);
	assert_int_equal(policy_query_append(q, sizeof(q), &len, "flag",
	    NULL), 0);
	assert_string_equal(q, "x=%26session%3Devil&session=alpha%252Ebob"
	    "&p=a%2Bb c&flag");
	assert_int_equal(len, strlen(q));
	/* Too long: -1, q still terminated where it was. */
	assert_int_equal(policy_query_append(q, sizeof(q), &len, "y",
	    "%%%%%%%%"), -1);
	assert_int_equal(len, strlen(q));
	assert_string_equal(q + len - 5, "&flag");

	r.query = q;
	r.session = "alpha%2Ebob";
	p = load_ok(GT_NO, "function canAccept(req)\n"
	    "  if req.session == '' then return true end\n"
	    "  local q = req.query\n"
	    "  assert(q.session == req.session, q.session)\n"
	    "  assert(q.session == 'alpha%2Ebob', q.session)\n"
	    "  assert(q.x == '&session=evil', q.x)\n"
	    "  assert(q.p == 'a+b c', q.p)\n"
	    "  assert(q.flag == '')\n"
	    "  return true\n"
	    "end\n");
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(v.accept, 1);
	policy_unref(p);
}

static void
test_memory(void **state)
{
	runaway("local t = {} for i = 1, 1e9 do "
	    "t[i] = string.rep('x', 1000) end",
	    "memory limit of 8388608 bytes exceeded");
	runaway("pcall(function() local t = {} for i = 1, 1e9 do "
	    "t[i] = string.rep('x', 1000) end end)", "memory limit");
	runaway("local ok = pcall(string.rep, 'x', 1e9) "
	    "error('caught: ' .. tostring(ok))", "memory limit");
	runaway("local s = 'x' while true do s = s .. s end",
	    "memory limit");
	runaway("xpcall(string.rep, function(m) return m end, 'x', 1e9)",
	    "memory limit");
}

/* Garbage is not a leak: churning well past the cap is fine. */
static void
test_memory_churn(void **state)
{
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_verdict	 v;
	struct policy_tunnel	 t;
	char			 err[ERR_LEN];

	p = load_ok("function getTunnelInfo(req)\n"
	    "  for i = 1, 200 do local s = string.rep('y', 100000) end\n"
	    "  return nil, 'churned'\n"
	    "end\n",
	    "function canAccept(req)\n"
	    "  for i = 1, 200 do local s = string.rep('x', 100000) end\n"
	    "  return true\n"
	    "end\n");
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(v.accept, 1);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	policy_unref(p);
}

static void
test_globals(void **state)
{
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_verdict	 v;
	struct policy_tunnel	 t;
	char			 err[ERR_LEN], id[32];
	int			 i;

	p = load_ok("local n = 0\n"
	    "function getTunnelInfo(req)\n"
	    "  n = n + 1\n"
	    "  total = (total or 0) + 1\n"
	    "  return { id = 't' .. n .. '-' .. total, mode = 'server',\n"
	    "    pass = 'p', encPass = 'e' }\n"
	    "end\n",
	    "function canAccept(req)\n"
	    "  seen = (seen or 0) + 1\n"
	    "  return false, 403, tostring(seen)\n"
	    "end\n");
	for (i = 1; i <= 3; i++) {
		assert_int_equal(policy_get_tunnel(p, &r, &t, err), 0);
		snprintf(id, sizeof(id), "t%d-%d", i, i);
		assert_string_equal(t.id, id);
		assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
		assert_string_equal(v.body, "1");
	}
	policy_unref(p);
}

static void
test_sandbox(void **state)
{
	static const char *const src =
	    "local names = { 'io', 'require', 'load', 'loadstring',\n"
	    "  'dofile', 'loadfile', 'collectgarbage', 'debug', 'print',\n"
	    "  'package', 'coroutine', 'module', 'warn', 'os.execute',\n"
	    "  'os.getenv', 'os.exit', 'os.remove', 'os.rename',\n"
	    "  'os.tmpname', 'os.setlocale', 'string.dump', 'os.time',\n"
	    "  'os.clock', 'os.date', 'string.rep', 'table.concat',\n"
	    "  'math.floor', 'utf8.char', 'pcall', 'xpcall', 'log',\n"
	    "  'setmetatable', 'rawlen', 'select', 'next' }\n"
	    "local function get(n)\n"
	    "  local v = _G\n"
	    "  for part in n:gmatch('[^.]+') do\n"
	    "    v = v[part]\n"
	    "    if v == nil then return nil end\n"
	    "  end\n"
	    "  return v\n"
	    "end\n"
	    "local function report()\n"
	    "  local out = {}\n"
	    "  for i, n in ipairs(names) do out[i] = type(get(n)) end\n"
	    "  out[#out + 1] = type(('').dump)\n"
	    "  out[#out + 1] = tostring(pcall(function() os.time = nil end))\n"
	    "  out[#out + 1] = tostring(getmetatable(os))\n"
	    "  return table.concat(out, ',')\n"
	    "end\n";
	static const char *const expect =
	    "nil,nil,nil,nil,nil,nil,nil,nil,nil,nil,nil,nil,nil,nil,nil,"
	    "nil,nil,nil,nil,nil,nil,function,function,function,function,"
	    "function,function,function,function,function,function,function,"
	    "function,function,function,nil,false,false";
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_verdict	 v;
	struct policy_tunnel	 t;
	char			 h[4096], c[4096], err[ERR_LEN];

	snprintf(h, sizeof(h), "%s\nfunction getTunnelInfo(req)\n"
	    "  return nil, report()\nend\n", src);
	snprintf(c, sizeof(c), "%s\nfunction canAccept(req)\n"
	    "  return false, 403, report()\nend\n", src);
	p = load_ok(h, c);
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_string_equal(v.body, expect);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, expect);
	policy_unref(p);
}

static void
test_log(void **state)
{
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_verdict	 v;
	char			 err[ERR_LEN];
	int			 before;

	policy_set_logger(test_logger);
	pthread_mutex_lock(&log_lock);
	log_count = 0;
	pthread_mutex_unlock(&log_lock);
	/* The dry calls are silent; the handler's top level is not. */
	p = load_ok("log('debug', 'loaded')\n" GT_NO,
	    "log('top')\n"
	    "function canAccept(req)\n"
	    "  if req.mode == 'bad' then log('loud', 'x') end\n"
	    "  if req.mode == 'none' then log() end\n"
	    "  log('warn', 'from ' .. req.remote_addr .. '\\n\\tforged')\n"
	    "  return true\n"
	    "end\n");
	assert_int_equal(log_count, 1);
	assert_int_equal(log_level, POLICY_LOG_DEBUG);
	assert_string_equal(log_last, "loaded");
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(log_count, 3);
	assert_int_equal(log_level, POLICY_LOG_WARN);
	assert_string_equal(log_last, "from 192.0.2.7  forged");
	before = log_count;
	r.mode = "bad";
	assert_int_equal(policy_can_accept(p, &r, &v, err), -1);
	assert_non_null(strstr(err, "bad argument #1 to 'log' (invalid "
	    "option 'loud')"));
	r.mode = "none";
	assert_int_equal(policy_can_accept(p, &r, &v, err), -1);
	assert_non_null(strstr(err, "bad argument #1 to 'log'"));
	assert_int_equal(log_count, before + 2);
	policy_unref(p);

	/* Long messages are cut. */
	p = load_ok(GT_NO, "function canAccept(req)\n"
	    "  log(string.rep('m', 5000)) return true\nend\n");
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(strlen(log_last), POLICY_LOG_LEN - 1);
	assert_int_equal(log_level, POLICY_LOG_INFO);
	policy_unref(p);
	policy_set_logger(NULL);
}

struct worker {
	struct policy	*p;
	int		 id;
	int		 failures;
};

static void *
ca_thread(void *arg)
{
	struct worker		*w = arg;
	struct policy_req	 r = req_default();
	struct policy_verdict	 v;
	struct policy_kv	 h[1];
	char			 err[ERR_LEN], n[16], want[64];
	int			 i;

	r.headers = h;
	r.nheaders = 1;
	h[0].name = "x-n";
	h[0].value = n;
	for (i = 0; i < 1000; i++) {
		snprintf(n, sizeof(n), "%d.%d", w->id, i);
		snprintf(want, sizeof(want), "%s:%d", n, 1);
		if (policy_can_accept(w->p, &r, &v, err) != 0 || v.accept ||
		    strcmp(v.body, want) != 0)
			w->failures++;
	}
	return NULL;
}

static void *
gt_thread(void *arg)
{
	struct worker		*w = arg;
	struct policy_req	 r = req_default();
	struct policy_tunnel	 t;
	char			 err[ERR_LEN], want[16];
	int			 i;

	for (i = 1; i <= 1000; i++) {
		snprintf(want, sizeof(want), "t%d", i);
		if (policy_get_tunnel(w->p, &r, &t, err) != 0 ||
		    strcmp(t.id, want) != 0)
			w->failures++;
		if (i % 10 == 0 && policy_end_tunnel(w->p, &t, "done",
		    err) != 0)
			w->failures++;
		policy_tunnel_cleanse(&t);
	}
	return NULL;
}

static void
test_concurrent(void **state)
{
	struct policy	*p;
	struct worker	 w[5];
	pthread_t	 th[5];
	int		 i;

	policy_set_logger(test_logger);
	p = load_ok("local n = 0\n"
	    "function getTunnelInfo(req)\n"
	    "  n = n + 1\n"
	    "  return { id = 't' .. n, mode = 'server', pass = 'p',\n"
	    "    encPass = 'e' }\n"
	    "end\n"
	    "function onEndTunnel(info, reason) log(info.id) end\n",
	    "function canAccept(req)\n"
	    "  calls = (calls or 0) + 1\n"
	    "  log('debug', req.headers['x-n'] or '')\n"
	    "  return false, 403, (req.headers['x-n'] or '') .. ':' .. calls\n"
	    "end\n");
	for (i = 0; i < 5; i++) {
		w[i].p = p;
		w[i].id = i;
		w[i].failures = 0;
		policy_ref(p);
		assert_int_equal(pthread_create(&th[i], NULL,
		    i < 4 ? ca_thread : gt_thread, &w[i]), 0);
	}
	/* The threads' references keep it alive. */
	policy_unref(p);
	for (i = 0; i < 5; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_int_equal(w[i].failures, 0);
		policy_unref(w[i].p);
	}
	policy_set_logger(NULL);
}

static void
test_end_tunnel(void **state)
{
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_tunnel	 t;
	char			 err[ERR_LEN];

	p = load_ok("local last = 'none'\n"
	    "function getTunnelInfo(req)\n"
	    "  if req.mode == 'last' then return nil, last end\n"
	    "  return { id = 'a-1', tenant = 'a', mode = 'r-server',\n"
	    "    pass = 'p', encPass = 'e', encCount = 3,\n"
	    "    forwards = { 'r,:1,h:2', 't,:3,h:4' }, keepalive = 9,\n"
	    "    maxStreams = 2, rateDown = 1000,\n"
	    "    destinations = { '10.0.0.0/8:80' } }\n"
	    "end\n"
	    "function onEndTunnel(info, reason)\n"
	    "  if reason == 'boom' then error('end failed') end\n"
	    "  last = table.concat({ info.id, info.tenant, info.mode,\n"
	    "    info.encCount, #info.forwards, info.forwards[2],\n"
	    "    info.destinations[1],\n"
	    "    info.connectMode, info.idleTimeout, info.keepalive,\n"
	    "    info.maxStreams, info.rateUp, info.rateDown, info.maxBytes,\n"
	    "    info.maxConnectRate, info.sessionTimeout,\n"
	    "    tostring(info.pass), tostring(info.encPass), reason }, '|')\n"
	    "end\n", NULL);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 0);
	assert_int_equal(policy_end_tunnel(p, &t, "idle", err), 0);
	r.mode = "last";
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "a-1|a|r-server|3|2|t,:3,h:4|10.0.0.0/8:80|"
	    "CanReconnect|600|9|2|0|1000|0|0|600|nil|nil|idle");
	r.mode = "";
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 0);
	assert_int_equal(policy_end_tunnel(p, &t, NULL, err), 0);
	assert_int_equal(policy_end_tunnel(p, &t, "boom", err), -1);
	assert_non_null(strstr(err, ".lua:11: end failed; traceback"));
	r.mode = "last";
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "a-1|a|r-server|3|2|t,:3,h:4|10.0.0.0/8:80|"
	    "CanReconnect|600|9|2|0|1000|0|0|600|nil|nil|");
	policy_unref(p);

	/* Undefined: nothing to do.  Not a function: an error. */
	p = load_ok(GT_NO, NULL);
	assert_int_equal(policy_end_tunnel(p, &t, "x", err), 0);
	policy_unref(p);
	p = load_ok(GT_NO "onEndTunnel = {}\n", NULL);
	assert_int_equal(policy_end_tunnel(p, &t, "x", err), -1);
	assert_non_null(strstr(err, "onEndTunnel is a table, not a function"));
	policy_unref(p);
}

static void
test_reload(void **state)
{
	struct policy		*old, *p = (struct policy *)&p;
	struct policy_req	 r = req_default();
	struct policy_tunnel	 t;
	struct policy_verdict	 v;
	char			 err[ERR_LEN];

	old = load_ok("local n = 0\n"
	    "function getTunnelInfo(req)\n"
	    "  n = n + 1 return nil, 'v1 ' .. n\n"
	    "end\n",
	    CA_TRUE);
	assert_int_equal(policy_get_tunnel(old, &r, &t, err), 1);
	assert_string_equal(err, "v1 1");
	/* A broken reload leaves the running policy alone. */
	assert_int_equal(load("function getTunnelInfo(req) return nil end\n",
	    "function canAccept(req) return true\n", NULL, &p, err), -1);
	assert_null(p);
	assert_int_equal(load("function getTunnel(req) end\n", CA_TRUE, NULL,
	    &p, err), -1);
	assert_int_equal(policy_get_tunnel(old, &r, &t, err), 1);
	assert_string_equal(err, "v1 2");
	assert_int_equal(policy_can_accept(old, &r, &v, err), 0);
	/* A good one runs beside it, with fresh state. */
	p = load_ok("local n = 0\n"
	    "function getTunnelInfo(req)\n"
	    "  n = n + 1 return nil, 'v2 ' .. n\n"
	    "end\n",
	    NULL);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "v2 1");
	assert_int_equal(policy_get_tunnel(old, &r, &t, err), 1);
	assert_string_equal(err, "v1 3");
	policy_unref(old);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "v2 2");
	/* canAccept.lua NULL: everything is admitted. */
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(v.accept, 1);
	policy_unref(p);
	policy_unref(NULL);
}

static struct policy *
load_example(const char *handler, const char *ca)
{
	struct policy	*p;
	char		 hp[512], cp[512], err[ERR_LEN];

	snprintf(hp, sizeof(hp), "%s/%s", top(), handler);
	snprintf(cp, sizeof(cp), "%s/%s", top(), ca);
	if (policy_load(hp, cp, NULL, &p, err) != 0)
		fail_msg("%s: %s", handler, err);
	return p;
}

/* A copy of the file at path with from replaced; its path in out[256]. */
static void
example_edit(char *out, const char *path, const char *from, const char *to)
{
	char	 buf[16384], *at;
	FILE	*f;
	size_t	 n;

	assert_non_null(f = fopen(path, "r"));
	n = fread(buf, 1, sizeof(buf) - 1, f);
	fclose(f);
	buf[n] = '\0';
	assert_non_null(at = strstr(buf, from));
	snprintf(out, 256, "%s/s%d.lua", tmpdir, nscripts++);
	assert_non_null(f = fopen(out, "w"));
	fwrite(buf, 1, (size_t)(at - buf), f);
	fputs(to, f);
	fputs(at + strlen(from), f);
	fclose(f);
}

static void
test_example_default(void **state)
{
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_verdict	 v;
	struct policy_tunnel	 t;
	char			 hp[256], e1[256], path[512], err[ERR_LEN];

	p = load_example("lua/handler.lua", "lua/canAccept.lua");
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(v.accept, 1);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "no tenant configured");
	policy_unref(p);

	/* Configured as its comment says. */
	snprintf(path, sizeof(path), "%s/lua/handler.lua", top());
	example_edit(e1, path, "local PASS = \"\"", "local PASS = \"p\"");
	example_edit(hp, e1, "local ENCPASS = \"\"",
	    "local ENCPASS = \"e\"");
	if (policy_load(hp, NULL, NULL, &p, err) != 0)
		fail_msg("configured handler.lua: %s", err);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 0);
	assert_string_equal(t.id, "default-1");
	assert_string_equal(t.tenant, "default");
	assert_string_equal(t.mode, "wsserver");
	assert_string_equal(t.pass, "p");
	assert_string_equal(t.encpass, "e");
	assert_int_equal(t.enc_count, -1);
	assert_int_equal(t.nfwd, 0);
	assert_string_equal(t.connect_mode, "CanReconnect");
	assert_int_equal(policy_end_tunnel(p, &t, "idle", err), 0);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 0);
	assert_string_equal(t.id, "default-2");
	policy_tunnel_cleanse(&t);
	policy_unref(p);
}

/* req.tunnels of the example test: beta's count is *arg, others 0. */
static int
test_count(void *arg, const char *tenant)
{
	return strcmp(tenant, "beta") == 0 ? *(int *)arg : 0;
}

static void
test_example_multitenant(void **state)
{
	struct policy		*p;
	struct policy_req	 r = req_default();
	struct policy_verdict	 v;
	struct policy_tunnel	 a, b, t;
	struct policy_kv	 h[1] = { { "x-tenant", "alpha" } };
	struct policy_kv	 hr[1] = { { "x-role", "reach" } };
	char			 err[ERR_LEN], path[512], hp[256], cp[512];
	int			 nbeta = 0;
	struct policy_counter	 pc = { test_count, &nbeta };

	/* As shipped it has no secrets: every tenant is refused. */
	p = load_example("lua/multitenant/handler.lua",
	    "lua/multitenant/canAccept.lua");
	r.tunnels = &pc;
	r.headers = h;
	r.nheaders = 1;
	r.session = "3f2c0a8e-5b1d-4c47-9f3a-1d2e3f4a5b6c";
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "tenant alpha has no secrets configured");
	policy_unref(p);
	/* With TENANT_SECRETS appended, as scripts/run-dispatcher does. */
	snprintf(path, sizeof(path), "%s/lua/multitenant/handler.lua", top());
	example_edit(hp, path, "\nfunction onEndTunnel(", "\nTENANT_SECRETS = "
	    "{ alpha = { pass = \"ap\", encPass = \"ae\" },"
	    " beta = { pass = \"bp\", encPass = \"be\" },"
	    " gamma = { pass = \"gp\", encPass = \"ge\" } }\n"
	    "function onEndTunnel(");
	snprintf(cp, sizeof(cp), "%s/lua/multitenant/canAccept.lua", top());
	if (policy_load(hp, cp, NULL, &p, err) != 0)
		fail_msg("multitenant with secrets: %s", err);

	/* alpha by header: a forward tunnel, from anywhere. */
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(v.accept, 1);
	assert_int_equal(policy_get_tunnel(p, &r, &a, err), 0);
	assert_true(strncmp(a.id, "alpha-", 6) == 0);
	assert_true(strlen(a.id) > 8 && strcmp(a.id + strlen(a.id) - 2,
	    "-1") == 0);
	assert_string_equal(a.tenant, "alpha");
	assert_string_equal(a.mode, "server");
	assert_string_equal(a.pass, "ap");
	assert_string_equal(a.encpass, "ae");
	assert_int_equal(a.nfwd, 2);
	assert_string_equal(a.forwards[0], "t,127.0.0.1:10022,127.0.0.1:22");
	assert_int_equal(a.idle_timeout, 600);

	/* beta by session prefix: reverse, one at a time, local only. */
	r.headers = NULL;
	r.nheaders = 0;
	r.session = "beta.42";
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(v.accept, 0);
	assert_int_equal(v.status, 403);
	assert_string_equal(v.body, "address not allowed for this tenant");
	r.remote_addr = "::1";
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(v.accept, 1);
	assert_int_equal(policy_get_tunnel(p, &r, &b, err), 0);
	assert_true(strncmp(b.id, "beta-", 5) == 0);
	assert_string_equal(b.mode, "r-server");
	assert_int_equal(b.nfwd, 1);
	assert_string_equal(b.forwards[0], "r,127.0.0.1:20022,127.0.0.1:22");
	assert_int_equal(b.idle_timeout, 3600);
	/* The quota is the dispatcher's count (req.tunnels), not a Lua
	 * global: onEndTunnel alone frees nothing, the count does. */
	nbeta = 1;
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "tenant beta is at its tunnel limit");
	assert_int_equal(policy_end_tunnel(p, &b, "client gone", err), 0);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	nbeta = 0;
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 0);
	assert_true(strncmp(t.id, "beta-", 5) == 0 && strcmp(t.id, b.id) != 0);

	/* Header and session must agree; a tenant must be named. */
	r.headers = h;
	r.nheaders = 1;
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(v.status, 400);
	assert_string_equal(v.body, "x-tenant and session disagree");
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "x-tenant and session disagree");
	r.headers = NULL;
	r.nheaders = 0;
	r.session = "";
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(v.status, 400);
	assert_string_equal(v.body, "no tenant named");
	r.session = "delta.1";
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(v.status, 403);
	assert_string_equal(v.body, "unknown tenant");
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "unknown tenant");

	/* gamma: two roles of one tenant, which meet at join:web. */
	r.session = "gamma.expose.3f2c";
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(v.accept, 1);
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 0);
	assert_true(strncmp(t.id, "gamma-expose-", 13) == 0);
	assert_string_equal(t.tenant, "gamma");
	assert_string_equal(t.mode, "r-server");
	assert_int_equal(t.nfwd, 1);
	assert_string_equal(t.forwards[0], "r,join:web,127.0.0.1:8080");
	assert_int_equal(t.limits.max_streams, 64);
	r.session = "gamma.reach.3f2c";
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 0);
	assert_true(strncmp(t.id, "gamma-reach-", 12) == 0);
	assert_string_equal(t.tenant, "gamma");
	assert_string_equal(t.mode, "server");
	assert_string_equal(t.forwards[0], "t,127.0.0.1:18080,join:web");
	/* A role must be named, one way or both in agreement. */
	r.session = "gamma.3f2c";
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_true(strncmp(err, "name a role", 11) == 0);
	r.headers = hr;
	r.nheaders = 1;
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 0);
	assert_string_equal(t.mode, "server");
	r.session = "gamma.expose.3f2c";
	assert_int_equal(policy_get_tunnel(p, &r, &t, err), 1);
	assert_string_equal(err, "x-role and session disagree");
	r.headers = NULL;
	r.nheaders = 0;
	r.method = "POST";
	r.session = "alpha.1";
	assert_int_equal(policy_can_accept(p, &r, &v, err), 0);
	assert_int_equal(v.status, 405);
	policy_tunnel_cleanse(&a);
	policy_tunnel_cleanse(&b);
	policy_tunnel_cleanse(&t);
	policy_unref(p);
}

static int
setup(void **state)
{
	return mkdtemp(tmpdir) == NULL ? -1 : 0;
}

static int
teardown(void **state)
{
	char	 path[256];
	int	 i;

	for (i = 0; i < nscripts; i++) {
		snprintf(path, sizeof(path), "%s/s%d.lua", tmpdir, i);
		unlink(path);
	}
	return rmdir(tmpdir);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_can_accept),
		cmocka_unit_test(test_req_table),
		cmocka_unit_test(test_req_nulls),
		cmocka_unit_test(test_get_tunnel),
		cmocka_unit_test(test_get_tunnel_defaults),
		cmocka_unit_test(test_get_tunnel_refused),
		cmocka_unit_test(test_get_tunnel_types),
		cmocka_unit_test(test_get_tunnel_results),
		cmocka_unit_test(test_load_errors),
		cmocka_unit_test(test_runtime_error),
		cmocka_unit_test(test_budget),
		cmocka_unit_test(test_c_loops),
		cmocka_unit_test(test_c_loops_semantics),
		cmocka_unit_test(test_c_loops_refusals),
		cmocka_unit_test(test_watchdog),
		cmocka_unit_test(test_query_once),
		cmocka_unit_test(test_memory),
		cmocka_unit_test(test_memory_churn),
		cmocka_unit_test(test_globals),
		cmocka_unit_test(test_sandbox),
		cmocka_unit_test(test_log),
		cmocka_unit_test(test_concurrent),
		cmocka_unit_test(test_end_tunnel),
		cmocka_unit_test(test_reload),
		cmocka_unit_test(test_example_default),
		cmocka_unit_test(test_example_multitenant),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
