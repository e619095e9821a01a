/*
 * libFuzzer target for the policy's data paths (dispatcher/policy*.c):
 *
 *  - a request built from the input (fields split at NUL bytes: method,
 *    path, query, remote_addr, session, mode, then header name/value
 *    pairs) goes through canAccept, getTunnelInfo and onEndTunnel of a
 *    fixed script that echoes parts of it back as results;
 *  - tables and values built from the input by a small byte program go
 *    through the result converters directly.
 *
 *  - the bounded library (policy_lib.c): the input's fields are a
 *    subject, a pattern and a replacement for string.find, match, gmatch
 *    and gsub under a small budget; and name/value pairs joined with
 *    policy_query_append() must read back unchanged from req.query.
 *
 * The first byte selects the paths (bit 0: request, bit 1: tunnel
 * table, bit 2: canAccept values, bit 3: library and query).  Whatever the input, nothing may
 * crash, and whatever is accepted must satisfy policy.h's promises.
 */

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lua.h>
#include <lauxlib.h>

#include "err.h"
#include "policy.h"
#include "policy_conv.h"
#include "policy_sandbox.h"

int	LLVMFuzzerInitialize(int *argc, char ***argv);
int	LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(c)	do { if (!(c)) __builtin_trap(); } while (0)
#define MAX_HEADERS	32

static const char fuzz_canaccept[] =
    "function canAccept(req)\n"
    "  local q = req.query\n"
    "  if q.accept then return true end\n"
    "  if q.none then return end\n"
    "  local parts = {}\n"
    "  for k, v in pairs(req.headers) do parts[#parts + 1] = k .. '=' .. v "
    "end\n"
    "  table.sort(parts)\n"
    "  parts[#parts + 1] = req.method .. ' ' .. req.path .. ' ' ..\n"
    "    req.remote_addr .. ' ' .. req.session .. ' ' .. req.mode\n"
    "  for k, v in pairs(q) do parts[#parts + 1] = k .. ':' .. v end\n"
    "  return false, math.tointeger(tonumber(q.status)) or 403,\n"
    "    table.concat(parts, '\\n')\n"
    "end\n";

static const char fuzz_handler[] =
    "local count = 0\n"
    "function getTunnelInfo(req)\n"
    "  count = count + 1\n"
    "  local q, h = req.query, req.headers\n"
    "  if q.refuse then return nil, q.refuse end\n"
    "  if req.session == '' and not q.id then return nil, 'no session' end\n"
    "  local fw\n"
    "  if h['x-forwards'] then\n"
    "    fw = {}\n"
    "    for f in h['x-forwards']:gmatch('[^;]+') do fw[#fw + 1] = f end\n"
    "  end\n"
    "  return { id = q.id or req.session, tenant = q.tenant,\n"
    "    mode = q.mode or req.mode, pass = h['x-pass'],\n"
    "    encPass = h['x-encpass'], encCount = tonumber(q.enc),\n"
    "    forwards = fw, connectMode = q.cm,\n"
    "    idleTimeout = tonumber(q.idle), keepalive = tonumber(q.ka),\n"
    "    maxStreams = tonumber(q.ms), rateUp = tonumber(q.ru),\n"
    "    rateDown = tonumber(q.rd), maxBytes = tonumber(q.mb),\n"
    "    maxConnectRate = tonumber(q.cr), sessionTimeout = tonumber(q.st) }\n"
    "end\n"
    "function onEndTunnel(info, reason)\n"
    "  last = info.id .. ' ' .. reason .. ' ' .. #info.forwards\n"
    "end\n";

/*
 * A policy is loaded for every input (which also fuzzes policy_load's dry
 * calls with nothing): handler.lua's state would otherwise carry memory
 * from one input to the next, and libFuzzer runs a full leak scan after
 * every input whose mallocs and frees do not balance.
 */
static char		 fuzz_dir[] = "/tmp/fuzz_policy.XXXXXX";
static char		 fuzz_hp[256], fuzz_cp[256];
static struct policy	*fuzz_p;
static const struct policy_limits fuzz_lim = { 200000, 2 * 1024 * 1024, 0 };

/* The byte program's reader. */
struct fuzz_in {
	const uint8_t	*p;
	size_t		 n;
};

static int
fuzz_byte(struct fuzz_in *in)
{
	if (in->n == 0)
		return 0;
	in->n--;
	return *in->p++;
}

static void
fuzz_write(const char *dir, const char *name, const char *src, char *out,
    size_t cap)
{
	FILE	*f;

	snprintf(out, cap, "%s/%s", dir, name);
	if ((f = fopen(out, "w")) == NULL || fputs(src, f) < 0 ||
	    fclose(f) != 0)
		abort();
}

static void
fuzz_cleanup(void)
{
	unlink(fuzz_hp);
	unlink(fuzz_cp);
	rmdir(fuzz_dir);
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	if (mkdtemp(fuzz_dir) == NULL)
		abort();
	fuzz_write(fuzz_dir, "handler.lua", fuzz_handler, fuzz_hp,
	    sizeof(fuzz_hp));
	fuzz_write(fuzz_dir, "canAccept.lua", fuzz_canaccept, fuzz_cp,
	    sizeof(fuzz_cp));
	atexit(fuzz_cleanup);
	return 0;
}

static int
fuzz_terminated(const char *s, size_t cap)
{
	return strnlen(s, cap) < cap;
}

static int
fuzz_ident(const char *s)
{
	if (*s == '\0')
		return 0;
	for (; *s != '\0'; s++)
		if (strchr("abcdefghijklmnopqrstuvwxyz"
		    "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:@+-", *s) == NULL)
			return 0;
	return 1;
}

/* policy.h's promises about an accepted tunnel. */
static void
fuzz_check_tunnel(const struct policy_tunnel *t)
{
	size_t	 i;

	CHECK(fuzz_terminated(t->id, sizeof(t->id)) && fuzz_ident(t->id));
	CHECK(fuzz_terminated(t->tenant, sizeof(t->tenant)) &&
	    fuzz_ident(t->tenant));
	CHECK(strcmp(t->mode, "server") == 0 ||
	    strcmp(t->mode, "r-server") == 0 ||
	    strcmp(t->mode, "wsserver") == 0 ||
	    strcmp(t->mode, "r-wsserver") == 0);
	CHECK(fuzz_terminated(t->pass, sizeof(t->pass)) && t->pass[0] != '\0');
	CHECK(fuzz_terminated(t->encpass, sizeof(t->encpass)));
	CHECK(t->enc_count >= -1);
	CHECK(t->encpass[0] != '\0' || t->enc_count == 0);
	CHECK(t->nfwd <= POLICY_MAX_FWDS);
	CHECK(t->nfwd > 0 || t->mode[0] != 'r');
	for (i = 0; i < t->nfwd; i++)
		CHECK(fuzz_terminated(t->forwards[i], POLICY_FWD_LEN) &&
		    t->forwards[i][0] != '\0');
	CHECK(strcmp(t->connect_mode, "CanReconnect") == 0 ||
	    strcmp(t->connect_mode, "OneShot") == 0);
	CHECK(t->idle_timeout >= 0 && t->idle_timeout <= 2592000);
	CHECK(t->keepalive >= 2 && t->keepalive <= 3600);
	CHECK(t->limits.max_streams >= 0 &&
	    t->limits.max_streams <= CTLMSG_STREAMS_MAX);
	CHECK(t->limits.rate_up >= 0 && t->limits.rate_up <= CTLMSG_RATE_MAX);
	CHECK(t->limits.rate_down >= 0 &&
	    t->limits.rate_down <= CTLMSG_RATE_MAX);
	CHECK(t->limits.max_bytes >= 0 &&
	    t->limits.max_bytes <= CTLMSG_BYTES_MAX);
	CHECK(t->limits.max_connect_rate >= 0 &&
	    t->limits.max_connect_rate <= CTLMSG_CONNRATE_MAX);
	CHECK(t->limits.session_timeout >= CTLMSG_SESSTO_MIN &&
	    t->limits.session_timeout <= CTLMSG_SESSTO_MAX);
}

static void
fuzz_check_verdict(const struct policy_verdict *v)
{
	CHECK(fuzz_terminated(v->body, sizeof(v->body)));
	if (v->accept)
		CHECK(v->status == 0 && v->body[0] == '\0');
	else
		CHECK(v->status >= 400 && v->status <= 599);
}

static void
fuzz_request(const uint8_t *data, size_t size)
{
	struct policy_kv	 h[MAX_HEADERS];
	struct policy_req	 r;
	struct policy_verdict	 v;
	struct policy_tunnel	 t;
	const char		*f[6 + 2 * MAX_HEADERS];
	char			*buf, err[ERR_LEN];
	size_t			 i, nf = 0;
	int			 rc;

	/* NUL-separated fields; the copy ends in a NUL of its own. */
	if ((buf = malloc(size + 1)) == NULL)
		return;
	memcpy(buf, data, size);
	buf[size] = '\0';
	f[nf++] = buf;
	for (i = 0; i < size && nf < sizeof(f) / sizeof(f[0]); i++)
		if (buf[i] == '\0')
			f[nf++] = buf + i + 1;
	memset(&r, 0, sizeof(r));
	r.method = nf > 0 ? f[0] : NULL;
	r.path = nf > 1 ? f[1] : NULL;
	r.query = nf > 2 ? f[2] : NULL;
	r.remote_addr = nf > 3 ? f[3] : NULL;
	r.session = nf > 4 ? f[4] : NULL;
	r.mode = nf > 5 ? f[5] : NULL;
	for (i = 6; i + 1 < nf; i += 2) {
		h[r.nheaders].name = f[i];
		h[r.nheaders].value = f[i + 1];
		r.nheaders++;
	}
	r.headers = h;

	if (policy_load(fuzz_hp, fuzz_cp, &fuzz_lim, &fuzz_p, err) != 0) {
		fprintf(stderr, "fuzz_policy: %s\n", err);
		abort();
	}
	err[0] = '\0';
	rc = policy_can_accept(fuzz_p, &r, &v, err);
	CHECK(rc == 0 || rc == -1);
	CHECK(fuzz_terminated(err, sizeof(err)));
	if (rc == 0)
		fuzz_check_verdict(&v);
	else
		CHECK(!v.accept && v.status == 500);

	rc = policy_get_tunnel(fuzz_p, &r, &t, err);
	CHECK(rc == 0 || rc == 1 || rc == -1);
	CHECK(fuzz_terminated(err, sizeof(err)));
	if (rc == 0) {
		fuzz_check_tunnel(&t);
		CHECK(policy_end_tunnel(fuzz_p, &t, r.mode, err) == 0);
	} else
		CHECK(t.pass[0] == '\0' && t.encpass[0] == '\0');
	policy_tunnel_cleanse(&t);
	policy_unref(fuzz_p);
	fuzz_p = NULL;
	free(buf);
}

/* Pushes one value chosen by the program (raises on memory errors). */
static void
fuzz_push_value(lua_State *L, struct fuzz_in *in, int kind, int depth)
{
	static const char *const strs[] = {
		"server", "r-server", "wsserver", "r-wsserver", "client",
		"CanReconnect", "OneShot", "alpha-1", "p", "", "r,:1,h:2",
	};
	char		 s[256];
	lua_Integer	 iv;
	double		 dv;
	size_t		 i, n;

	switch (kind) {
	case 0:
		lua_pushnil(L);
		break;
	case 1:
		n = (size_t)fuzz_byte(in);
		for (i = 0; i < n && in->n > 0; i++)
			s[i] = (char)fuzz_byte(in);
		lua_pushlstring(L, s, i);
		break;
	case 2:
		iv = 0;
		for (i = 0; i < 8; i++)
			iv = (lua_Integer)((lua_Unsigned)iv << 8 |
			    (lua_Unsigned)fuzz_byte(in));
		lua_pushinteger(L, iv);
		break;
	case 3:
		iv = 0;
		for (i = 0; i < 8; i++)
			iv = (lua_Integer)((lua_Unsigned)iv << 8 |
			    (lua_Unsigned)fuzz_byte(in));
		memcpy(&dv, &iv, sizeof(dv));
		lua_pushnumber(L, dv);
		break;
	case 4:
		lua_pushboolean(L, fuzz_byte(in) & 1);
		break;
	case 5:
	case 6:
		/* A list (5) or a table with holes and odd keys (6). */
		n = (size_t)fuzz_byte(in) % 80;
		lua_createtable(L, (int)n, 0);
		for (i = 0; i < n && in->n > 0; i++) {
			if (depth < 2 && kind == 6)
				fuzz_push_value(L, in, fuzz_byte(in) % 12,
				    depth + 1);
			else
				fuzz_push_value(L, in, 1, depth + 1);
			lua_rawseti(L, -2, kind == 5 ? (lua_Integer)i + 1 :
			    (lua_Integer)fuzz_byte(in) - 8);
		}
		break;
	case 7:
		lua_pushstring(L, strs[fuzz_byte(in) % 11]);
		break;
	case 8:
		lua_pushinteger(L, (int8_t)fuzz_byte(in));
		break;
	case 9:
		lua_pushinteger(L, fuzz_byte(in) << 4);
		break;
	case 10:
		/* Values behind __index must be ignored: raw access. */
		lua_newtable(L);
		lua_newtable(L);
		lua_newtable(L);
		lua_pushliteral(L, "hidden");
		lua_setfield(L, -2, "pass");
		lua_setfield(L, -2, "__index");
		lua_setmetatable(L, -2);
		break;
	default:
		lua_pushinteger(L, 400 + fuzz_byte(in) % 200);
		break;
	}
}

static int
fuzz_tunnel_main(lua_State *L)
{
	static const char *const keys[] = {
		"id", "tenant", "mode", "pass", "encPass", "encCount",
		"forwards", "connectMode", "idleTimeout", "keepalive", "junk",
		"encpass", "maxStreams", "rateUp", "rateDown", "maxBytes",
		"maxConnectRate", "sessionTimeout",
	};
	struct fuzz_in		*in = lua_touserdata(L, 1);
	struct policy_tunnel	 t;
	char			 msg[ERR_LEN];
	int			 op, first, count = 0, rc;

	first = lua_gettop(L) + 1;
	if (fuzz_byte(in) & 1) {
		/* nil [, message] */
		lua_pushnil(L);
		fuzz_push_value(L, in, fuzz_byte(in) % 12, 0);
	} else {
		lua_newtable(L);
		while (in->n > 0 && count++ < 64) {
			op = fuzz_byte(in);
			if ((op & 0x0f) < 12)
				lua_pushstring(L, keys[op & 0x0f]);
			else
				lua_pushinteger(L, op & 0x0f);
			fuzz_push_value(L, in, op >> 4, 0);
			lua_rawset(L, first);
		}
	}
	memset(&t, 0xa5, sizeof(t));
	rc = conv_tunnel_result(L, first, &t, msg, sizeof(msg));
	if (rc == 0)
		fuzz_check_tunnel(&t);
	else
		CHECK(rc == 1 && fuzz_terminated(msg, sizeof(msg)));
	return 0;
}

static int
fuzz_verdict_main(lua_State *L)
{
	struct fuzz_in		*in = lua_touserdata(L, 1);
	struct policy_verdict	 v;
	int			 i, n = fuzz_byte(in) % 4, first;

	first = lua_gettop(L) + 1;
	for (i = 0; i < n; i++)
		fuzz_push_value(L, in, fuzz_byte(in) % 12, 0);
	conv_verdict(L, first, &v);
	fuzz_check_verdict(&v);
	return 0;
}

static void
fuzz_convert(lua_CFunction fn, const uint8_t *data, size_t size)
{
	struct fuzz_in	 in = { data, size };
	struct sandbox	 sb;
	lua_State	*L;
	char		 err[ERR_LEN] = "";

	if ((L = sandbox_new(&sb, 2 * 1024 * 1024, 0, 0)) == NULL)
		return;
	lua_pushcfunction(L, fn);
	lua_pushlightuserdata(L, &in);
	/* A conversion error is an answer, not a failure. */
	(void)sandbox_result(L, lua_pcall(L, 1, 0, 0), err);
	CHECK(fuzz_terminated(err, sizeof(err)));
	lua_close(L);
}

struct fuzz_lib {
	const char	*f[16];
	size_t		 len[16];
	size_t		 nf;
	char		 q[2048];
};

static int
fuzz_lib_main(lua_State *L)
{
	static const char *const fns[] = { "find", "match", "gsub" };
	struct fuzz_lib		*a = lua_touserdata(L, 1);
	struct policy_req	 r;
	size_t			 i, j, len = 0;
	int			 first;

	sandbox_openlibs(L);
	/* Patterns: errors are fine, running away is not. */
	for (i = 0; i < 3 && a->nf >= 2; i++) {
		lua_getglobal(L, "string");
		lua_getfield(L, -1, fns[i]);
		lua_pushlstring(L, a->f[0], a->len[0]);
		lua_pushlstring(L, a->f[1], a->len[1]);
		if (i == 2)
			lua_pushlstring(L, a->nf > 2 ? a->f[2] : "", a->nf > 2 ?
			    a->len[2] : 0);
		(void)lua_pcall(L, i == 2 ? 3 : 2, 0, 0);
		lua_settop(L, 1);
	}
	/* Query: pairs (f[i], f[i + 1]) read back as the first value. */
	for (i = 0; i + 1 < a->nf; i += 2)
		if (policy_query_append(a->q, sizeof(a->q), &len, a->f[i],
		    a->f[i + 1]) == -1)
			break;
	CHECK(strlen(a->q) == len);
	memset(&r, 0, sizeof(r));
	r.query = a->q;
	conv_push_req(L, &r);
	lua_getfield(L, -1, "query");
	first = lua_gettop(L);
	for (j = 0; j < i; j += 2) {
		size_t		 n;
		const char	*v;

		if (a->f[j][0] == '\0')
			continue;	/* empty names are skipped */
		lua_getfield(L, first, a->f[j]);
		v = lua_tolstring(L, -1, &n);
		CHECK(v != NULL);
		/* The first pair of that name wins. */
		for (n = 0; n < j; n += 2)
			if (strcmp(a->f[n], a->f[j]) == 0)
				break;
		if (n == j)
			CHECK(strcmp(v, a->f[j + 1]) == 0);
		lua_pop(L, 1);
	}
	return 0;
}

/* The library and query path: NUL-separated fields. */
static void
fuzz_lib(const uint8_t *data, size_t size)
{
	struct fuzz_lib	 a;
	struct sandbox	 sb;
	lua_State	*L;
	char		*buf, err[ERR_LEN];
	size_t		 i, start = 0;

	if ((buf = malloc(size + 1)) == NULL)
		return;
	memcpy(buf, data, size);
	buf[size] = '\0';
	memset(&a, 0, sizeof(a));
	for (i = 0; i <= size && a.nf < 16; i++)
		if (buf[i] == '\0') {
			a.f[a.nf] = buf + start;
			a.len[a.nf++] = i - start;
			start = i + 1;
		}
	if ((L = sandbox_new(&sb, 2 * 1024 * 1024, 200000, 0)) != NULL) {
		lua_pushcfunction(L, fuzz_lib_main);
		lua_pushlightuserdata(L, &a);
		(void)sandbox_result(L, lua_pcall(L, 1, 0, 0), err);
		lua_close(L);
	}
	free(buf);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	int	 sel;

	if (size == 0)
		return 0;
	sel = data[0];
	data++;
	size--;
	if (sel & 1)
		fuzz_request(data, size);
	if (sel & 2)
		fuzz_convert(fuzz_tunnel_main, data, size);
	if (sel & 4)
		fuzz_convert(fuzz_verdict_main, data, size);
	if (sel & 8)
		fuzz_lib(data, size);
	return 0;
}
