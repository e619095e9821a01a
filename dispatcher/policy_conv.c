/*
 * The policy's data crossing between C and Lua: the req table built from
 * a struct policy_req, and the scripts' answers checked into C structs.
 * Anything a script returns is untrusted in shape: every field is type-
 * and range-checked and an unknown field is an error, so a typo such as
 * "encpass" fails loudly instead of starting an unencrypted worker.
 */

#include <limits.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "ctlmsg.h"
#include "destpat.h"
#include "err.h"
#include "mode.h"
#include "policy.h"
#include "policy_conv.h"
#include "text.h"

/* The contract's bounds (kptunnel forces -int below 2 to 2). */
#define CONV_IDLE_MAX	CTLMSG_IDLE_MAX		/* 30 days */
#define CONV_KA_MIN	CTLMSG_KEEPALIVE_MIN
#define CONV_KA_MAX	CTLMSG_KEEPALIVE_MAX
/* Bytes of a script-chosen name quoted in an error message. */
#define CONV_QUOTE_MAX	40

static const char *const conv_connect_modes[] = {
	"CanReconnect", "OneShot", NULL
};

static const char *const conv_fields[] = {
	"id", "tenant", "mode", "pass", "encPass", "encCount", "forwards",
	"connectMode", "idleTimeout", "keepalive", "maxStreams", "rateUp",
	"rateDown", "maxBytes", "maxConnectRate", "sessionTimeout",
	"destinations", NULL
};

_Static_assert(POLICY_MAX_DESTS <= DESTPAT_MAX &&
    POLICY_DEST_LEN <= DESTPAT_LEN, "a policy's patterns fit a worker's");

static int
conv_in(const char *s, const char *const *set)
{
	for (; *set != NULL; set++)
		if (strcmp(s, *set) == 0)
			return 1;
	return 0;
}

/* t[k] = v, NULL read as "". */
static void
conv_setstr(lua_State *L, int t, const char *k, const char *v)
{
	lua_pushstring(L, v != NULL ? v : "");
	lua_setfield(L, t, k);
}

/* t[k] = the string in v[cap], which need not be terminated. */
static void
conv_setbuf(lua_State *L, int t, const char *k, const char *v, size_t cap)
{
	lua_pushlstring(L, v, strnlen(v, cap));
	lua_setfield(L, t, k);
}

/* Pushes s[0..n) URL-decoded: '+' is a space, a bad escape stays as is. */
static void
conv_push_decoded(lua_State *L, const char *s, size_t n)
{
	luaL_Buffer	 b;
	char		*p;
	ssize_t		 len;

	/* Most names and values have nothing to decode. */
	if (memchr(s, '%', n) == NULL && memchr(s, '+', n) == NULL) {
		lua_pushlstring(L, s, n);
		return;
	}
	/* Decoding never lengthens the text. */
	p = luaL_buffinitsize(L, &b, n);
	len = text_pct_decode(s, n, p, n, TEXT_PCT_FORM | TEXT_PCT_LENIENT);
	luaL_pushresultsize(&b, len < 0 ? 0 : (size_t)len);
}

/* Appends s to q, escaping what conv_push_decoded() would read. */
static int
conv_escape(char *q, size_t cap, size_t *len, const char *s)
{
	unsigned char		 c;

	for (; *s != '\0'; s++) {
		c = (unsigned char)*s;
		if (c == '%' || c == '&' || c == '=' || c == '+') {
			if (cap - *len < 4)
				return -1;
			q[(*len)++] = '%';
			q[(*len)++] = text_hexdigit(c >> 4, 1);
			q[(*len)++] = text_hexdigit(c, 1);
		} else {
			if (cap - *len < 2)
				return -1;
			q[(*len)++] = (char)c;
		}
	}
	q[*len] = '\0';
	return 0;
}

int
policy_query_append(char *q, size_t cap, size_t *len, const char *name,
    const char *value)
{
	size_t	 n = *len;

	if (n >= cap)
		return -1;
	if (n > 0) {
		if (cap - n < 2)
			goto fail;
		q[n++] = '&';
	}
	if (conv_escape(q, cap, &n, name) == -1)
		goto fail;
	if (value != NULL) {
		if (cap - n < 2)
			goto fail;
		q[n++] = '=';
		if (conv_escape(q, cap, &n, value) == -1)
			goto fail;
	}
	q[n] = '\0';
	*len = n;
	return 0;
 fail:
	q[*len] = '\0';
	return -1;
}

/* name -> first value, as Go's url.Query().Get() would answer. */
static void
conv_push_query(lua_State *L, const char *q)
{
	const char	*p = q, *amp, *eq, *end;
	int		 t;

	lua_newtable(L);
	t = lua_gettop(L);
	while (*p != '\0') {
		amp = strchr(p, '&');
		end = amp != NULL ? amp : p + strlen(p);
		if (end > p) {
			eq = memchr(p, '=', (size_t)(end - p));
			conv_push_decoded(L, p,
			    (size_t)((eq != NULL ? eq : end) - p));
			if (eq != NULL)
				conv_push_decoded(L, eq + 1,
				    (size_t)(end - eq - 1));
			else
				lua_pushliteral(L, "");
			lua_pushvalue(L, -2);
			if (lua_rawget(L, t) == LUA_TNIL) {
				lua_pop(L, 1);
				lua_rawset(L, t);
			} else
				lua_pop(L, 3);
		}
		p = amp != NULL ? amp + 1 : end;
	}
}

/* Pushes name lower-cased (ASCII), as HTTP names are case-insensitive. */
static void
conv_push_lower(lua_State *L, const char *name)
{
	char		 small[64];
	luaL_Buffer	 b;
	size_t		 i, len = strlen(name);
	char		*d;

	if (len <= sizeof(small))
		d = small;
	else
		d = luaL_buffinitsize(L, &b, len);
	for (i = 0; i < len; i++)
		d[i] = name[i] >= 'A' && name[i] <= 'Z' ?
		    (char)(name[i] - 'A' + 'a') : name[i];
	if (d == small)
		lua_pushlstring(L, small, len);
	else
		luaL_pushresultsize(&b, len);
}

static void
conv_push_headers(lua_State *L, const struct policy_req *req)
{
	const struct policy_kv	*h;
	size_t			 i, n;
	int			 t;

	n = req->headers != NULL ? req->nheaders : 0;
	lua_createtable(L, 0, n < 64 ? (int)n : 64);
	t = lua_gettop(L);
	for (i = 0; i < n; i++) {
		h = &req->headers[i];
		if (h->name == NULL)
			continue;
		/* Again: the scripts rely on it. */
		conv_push_lower(L, h->name);
		lua_pushvalue(L, -1);
		if (lua_rawget(L, t) == LUA_TNIL) {
			lua_pop(L, 1);
			lua_pushstring(L, h->value != NULL ? h->value : "");
		} else {
			/* RFC 9110 5.3: repeated fields join with commas. */
			lua_pushliteral(L, ", ");
			lua_pushstring(L, h->value != NULL ? h->value : "");
			lua_concat(L, 3);
		}
		lua_rawset(L, t);
	}
}

/* __index of req.tunnels: the dispatcher's count of a tenant's tunnels. */
static int
conv_tunnels_index(lua_State *L)
{
	const struct policy_counter	*pc;
	const char			*name;
	int				 n = 0;

	pc = lua_touserdata(L, lua_upvalueindex(1));
	if ((name = lua_tostring(L, 2)) != NULL && pc != NULL &&
	    pc->count != NULL && (n = pc->count(pc->arg, name)) < 0)
		n = 0;
	lua_pushinteger(L, n);
	return 1;
}

static int
conv_tunnels_newindex(lua_State *L)
{
	return luaL_error(L, "req.tunnels is read-only");
}

/*
 * req.tunnels: an empty table whose metatable answers each lookup by
 * tenant name with the dispatcher's live count (0 for none), read at the
 * time of the lookup.  It can not be written or iterated, and its
 * metatable is hidden.
 */
static void
conv_push_tunnels(lua_State *L, const struct policy_counter *pc)
{
	lua_createtable(L, 0, 0);
	lua_createtable(L, 0, 3);
	lua_pushlightuserdata(L, (void *)pc);
	lua_pushcclosure(L, conv_tunnels_index, 1);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, conv_tunnels_newindex);
	lua_setfield(L, -2, "__newindex");
	lua_pushliteral(L, "read-only");
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);
}

void
conv_push_req(lua_State *L, const struct policy_req *req)
{
	int	 t;

	luaL_checkstack(L, 8, NULL);
	lua_createtable(L, 0, 9);
	t = lua_gettop(L);
	conv_setstr(L, t, "method", req->method);
	conv_setstr(L, t, "path", req->path);
	conv_push_query(L, req->query != NULL ? req->query : "");
	lua_setfield(L, t, "query");
	conv_push_headers(L, req);
	lua_setfield(L, t, "headers");
	conv_setstr(L, t, "remote_addr", req->remote_addr);
	conv_setstr(L, t, "session", req->session);
	conv_setstr(L, t, "mode", req->mode);
	conv_push_tunnels(L, req->tunnels);
	lua_setfield(L, t, "tunnels");
}

/* lua_Integer of a number with an integral value; strings do not count. */
static int
conv_integer(lua_State *L, int idx, lua_Integer *out)
{
	int	 isnum;

	if (lua_type(L, idx) != LUA_TNUMBER)
		return 0;
	*out = lua_tointegerx(L, idx, &isnum);
	return isnum;
}

void
conv_verdict(lua_State *L, int first, struct policy_verdict *v)
{
	lua_Integer	 status = 403;
	const char	*body;
	size_t		 len;
	int		 n = lua_gettop(L) - first + 1;

	memset(v, 0, sizeof(*v));
	v->status = 403;
	if (n <= 0)
		return;
	if (lua_type(L, first) == LUA_TBOOLEAN) {
		if (lua_toboolean(L, first)) {
			v->accept = 1;
			v->status = 0;
			return;
		}
	} else if (lua_type(L, first) != LUA_TNIL)
		luaL_error(L, "canAccept returned a %s, expected a boolean",
		    luaL_typename(L, first));
	if (n >= 2 && !lua_isnil(L, first + 1)) {
		if (!conv_integer(L, first + 1, &status))
			luaL_error(L, "canAccept: status must be an integer "
			    "400..599, got a %s", luaL_typename(L, first + 1));
		if (status < 400 || status > 599)
			luaL_error(L, "canAccept: status %I is not in 400..599",
			    status);
		v->status = (int)status;
	}
	if (n >= 3 && !lua_isnil(L, first + 2)) {
		if (lua_type(L, first + 2) != LUA_TSTRING)
			luaL_error(L, "canAccept: body must be a string, got "
			    "a %s", luaL_typename(L, first + 2));
		body = lua_tolstring(L, first + 2, &len);
		if (len > sizeof(v->body) - 1)
			len = sizeof(v->body) - 1;
		memcpy(v->body, body, len);
		v->body[len] = '\0';
	}
}

/* Pushes t[k] without metamethods; returns its type. */
static int
conv_field(lua_State *L, int t, const char *k)
{
	lua_pushstring(L, k);
	return lua_rawget(L, t);
}

/*
 * Copies the string field k into dst[cap].  Returns 0 if absent (dst is
 * "") unless required.  Messages never quote the value: it may be secret.
 */
static int
conv_str(lua_State *L, int t, const char *k, char *dst, size_t cap,
    int required)
{
	const char	*s;
	size_t		 len;
	int		 type = conv_field(L, t, k);

	dst[0] = '\0';
	if (type == LUA_TNIL) {
		lua_pop(L, 1);
		if (required)
			luaL_error(L, "getTunnelInfo: %s is required", k);
		return 0;
	}
	if (type != LUA_TSTRING)
		luaL_error(L, "getTunnelInfo: %s must be a string, got a %s", k,
		    luaL_typename(L, -1));
	s = lua_tolstring(L, -1, &len);
	if (strlen(s) != len)
		luaL_error(L, "getTunnelInfo: %s contains a NUL byte", k);
	if (len >= cap)
		luaL_error(L, "getTunnelInfo: %s is longer than %d bytes", k,
		    (int)cap - 1);
	memcpy(dst, s, len + 1);
	lua_pop(L, 1);
	return 1;
}

static lua_Integer
conv_int(lua_State *L, int t, const char *k, lua_Integer def,
    lua_Integer min, lua_Integer max)
{
	lua_Integer	 v = def;
	int		 type = conv_field(L, t, k);

	if (type != LUA_TNIL) {
		if (!conv_integer(L, -1, &v))
			luaL_error(L, "getTunnelInfo: %s must be an integer, "
			    "got a %s", k, type == LUA_TNUMBER ?
			    "fraction" : luaL_typename(L, -1));
		if (v < min || v > max)
			luaL_error(L, "getTunnelInfo: %s %I is not in %I..%I",
			    k, v, min, max);
	}
	lua_pop(L, 1);
	return v;
}

/* id and tenant end up in logs, the console and file names. */
static void
conv_ident(lua_State *L, const char *k, const char *s)
{
	const char	*p;

	for (p = s; *p != '\0'; p++)
		if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') ||
		    (*p >= '0' && *p <= '9') || strchr("._:@+-", *p) != NULL))
			break;
	if (p == s || *p != '\0')
		luaL_error(L, "getTunnelInfo: %s must match "
		    "[A-Za-z0-9._:@+-]{1,%d}", k, POLICY_ID_LEN - 1);
}

/* Keys are the script's: quote a bounded, printable part of one. */
static void
conv_unknown(lua_State *L, int t)
{
	char		 q[CONV_QUOTE_MAX + 4];
	const char	*s;
	size_t		 len, i;

	lua_pushnil(L);
	while (lua_next(L, t) != 0) {
		lua_pop(L, 1);
		if (lua_type(L, -1) != LUA_TSTRING)
			luaL_error(L, "getTunnelInfo: the table has a %s key, "
			    "fields are names", luaL_typename(L, -1));
		s = lua_tolstring(L, -1, &len);
		if (strlen(s) == len && conv_in(s, conv_fields))
			continue;
		for (i = 0; i < len && i < CONV_QUOTE_MAX; i++)
			q[i] = s[i] > 0x20 && s[i] < 0x7f ? s[i] : '?';
		strcpy(q + i, len > CONV_QUOTE_MAX ? "..." : "");
		luaL_error(L, "getTunnelInfo: unknown field '%s'", q);
	}
}

static void
conv_forwards(lua_State *L, int t, struct policy_tunnel *tun)
{
	const char	*s;
	size_t		 len, i, n, count = 0;
	int		 f, type = conv_field(L, t, "forwards");

	if (type == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	if (type != LUA_TTABLE)
		luaL_error(L, "getTunnelInfo: forwards must be a list of "
		    "strings, got a %s", luaL_typename(L, -1));
	f = lua_gettop(L);
	n = (size_t)lua_rawlen(L, f);
	if (n > POLICY_MAX_FWDS)
		luaL_error(L, "getTunnelInfo: %d forwards, at most %d",
		    n > INT_MAX ? INT_MAX : (int)n, POLICY_MAX_FWDS);
	for (i = 0; i < n; i++) {
		if (lua_rawgeti(L, f, (lua_Integer)i + 1) != LUA_TSTRING)
			luaL_error(L, "getTunnelInfo: forwards[%d] must be a "
			    "string, got a %s", (int)i + 1,
			    luaL_typename(L, -1));
		s = lua_tolstring(L, -1, &len);
		if (len == 0 || len >= POLICY_FWD_LEN || strlen(s) != len)
			luaL_error(L, "getTunnelInfo: forwards[%d] must be 1 "
			    "to %d bytes without NUL", (int)i + 1,
			    POLICY_FWD_LEN - 1);
		memcpy(tun->forwards[i], s, len + 1);
		lua_pop(L, 1);
	}
	tun->nfwd = n;
	/* A list has the keys 1..n and no others (no holes, no names). */
	lua_pushnil(L);
	while (lua_next(L, f) != 0) {
		lua_pop(L, 1);
		if (++count > n) {
			lua_pop(L, 1);
			break;
		}
	}
	if (count != n)
		luaL_error(L, "getTunnelInfo: forwards must be a list, "
		    "without holes or named keys");
	lua_pop(L, 1);
}

/*
 * destinations: a list of destination patterns, each checked here so
 * that a typo fails getTunnelInfo rather than the worker.
 */
static void
conv_destinations(lua_State *L, int t, struct policy_tunnel *tun)
{
	struct destpat	 p;
	const char	*s;
	char		 why[ERR_LEN];
	size_t		 len, i, n, count = 0;
	int		 f, type = conv_field(L, t, "destinations");

	if (type == LUA_TNIL) {
		lua_pop(L, 1);
		return;
	}
	if (type != LUA_TTABLE)
		luaL_error(L, "getTunnelInfo: destinations must be a list of "
		    "strings, got a %s", luaL_typename(L, -1));
	f = lua_gettop(L);
	n = (size_t)lua_rawlen(L, f);
	if (n > POLICY_MAX_DESTS)
		luaL_error(L, "getTunnelInfo: %d destinations, at most %d",
		    n > INT_MAX ? INT_MAX : (int)n, POLICY_MAX_DESTS);
	for (i = 0; i < n; i++) {
		if (lua_rawgeti(L, f, (lua_Integer)i + 1) != LUA_TSTRING)
			luaL_error(L, "getTunnelInfo: destinations[%d] must be "
			    "a string, got a %s", (int)i + 1,
			    luaL_typename(L, -1));
		s = lua_tolstring(L, -1, &len);
		if (len >= POLICY_DEST_LEN || strlen(s) != len)
			luaL_error(L, "getTunnelInfo: destinations[%d] must be "
			    "shorter than %d bytes, without NUL", (int)i + 1,
			    POLICY_DEST_LEN);
		if (destpat_parse(s, &p, why) == -1)
			luaL_error(L, "getTunnelInfo: destinations[%d]: %s",
			    (int)i + 1, why);
		memcpy(tun->dests[i], s, len + 1);
		lua_pop(L, 1);
	}
	tun->ndest = n;
	lua_pushnil(L);
	while (lua_next(L, f) != 0) {
		lua_pop(L, 1);
		if (++count > n) {
			lua_pop(L, 1);
			break;
		}
	}
	if (count != n)
		luaL_error(L, "getTunnelInfo: destinations must be a list, "
		    "without holes or named keys");
	lua_pop(L, 1);
}

/* pass, encPass and encCount of the table at t; raises a Lua error on
 * a value kptunnel would not take safely. */
static void
conv_secrets(lua_State *L, int t, struct policy_tunnel *tun)
{
	lua_Integer enc;

	conv_str(L, t, "pass", tun->pass, sizeof(tun->pass), 1);
	if (tun->pass[0] == '\0')
		luaL_error(L, "getTunnelInfo: pass must not be empty");
	conv_str(L, t, "encPass", tun->encpass, sizeof(tun->encpass), 0);
	enc = conv_int(L, t, "encCount", -1, INT_MIN, INT_MAX);
	/* kptunnel: any negative count encrypts everything. */
	tun->enc_count = enc < 0 ? -1 : (int)enc;
	/* An empty encPass is a published key: say 0 to mean plaintext. */
	if (tun->encpass[0] == '\0' && tun->enc_count != 0)
		luaL_error(L, "getTunnelInfo: encPass is required unless "
		    "encCount is 0");
}

/* The per-tenant limits: absent or 0 is unlimited (docs/lua-api.md). */
static void
conv_limits(lua_State *L, int t, struct ctlmsg_limits *l)
{
	l->max_streams = (int)conv_int(L, t, "maxStreams", 0, 0,
	    CTLMSG_STREAMS_MAX);
	l->rate_up = conv_int(L, t, "rateUp", 0, 0, CTLMSG_RATE_MAX);
	l->rate_down = conv_int(L, t, "rateDown", 0, 0, CTLMSG_RATE_MAX);
	l->max_bytes = conv_int(L, t, "maxBytes", 0, 0, CTLMSG_BYTES_MAX);
	l->max_connect_rate = (int)conv_int(L, t, "maxConnectRate", 0, 0,
	    CTLMSG_CONNRATE_MAX);
	l->session_timeout = (int)conv_int(L, t, "sessionTimeout",
	    CTLMSG_SESSTO_DEF, CTLMSG_SESSTO_MIN, CTLMSG_SESSTO_MAX);
}

static void
conv_tunnel(lua_State *L, int t, struct policy_tunnel *tun)
{
	/*
	 * Not memset(): forwards alone is 32 KiB per call, and entries past
	 * nfwd are never read.  Every other field is set below.
	 */
	tun->nfwd = 0;
	tun->ndest = 0;
	tun->pass[0] = tun->encpass[0] = '\0';
	conv_unknown(L, t);

	conv_str(L, t, "id", tun->id, sizeof(tun->id), 1);
	conv_ident(L, "id", tun->id);
	if (conv_str(L, t, "tenant", tun->tenant, sizeof(tun->tenant), 0))
		conv_ident(L, "tenant", tun->tenant);
	else
		strcpy(tun->tenant, tun->id);

	conv_str(L, t, "mode", tun->mode, sizeof(tun->mode), 1);
	if (!mode_name_is_server(tun->mode))
		luaL_error(L, "getTunnelInfo: mode must be server, r-server, "
		    "wsserver or r-wsserver");

	conv_secrets(L, t, tun);

	conv_forwards(L, t, tun);
	if (tun->nfwd == 0 && tun->mode[0] == 'r')
		luaL_error(L, "getTunnelInfo: mode %s needs at least one "
		    "forward", tun->mode);

	if (!conv_str(L, t, "connectMode", tun->connect_mode,
	    sizeof(tun->connect_mode), 0))
		strcpy(tun->connect_mode, "CanReconnect");
	else if (!conv_in(tun->connect_mode, conv_connect_modes))
		luaL_error(L, "getTunnelInfo: connectMode must be "
		    "CanReconnect or OneShot");

	tun->idle_timeout = (int)conv_int(L, t, "idleTimeout",
	    CTLMSG_IDLE_DEF, CTLMSG_IDLE_MIN, CONV_IDLE_MAX);
	tun->keepalive = (int)conv_int(L, t, "keepalive",
	    CTLMSG_KEEPALIVE_DEF, CONV_KA_MIN, CONV_KA_MAX);
	conv_limits(L, t, &tun->limits);
	conv_destinations(L, t, tun);
}

int
conv_tunnel_result(lua_State *L, int first, struct policy_tunnel *t,
    char *msg, size_t msglen)
{
	const char	*s = "refused by getTunnelInfo";
	size_t		 len, i;
	int		 n = lua_gettop(L) - first + 1;
	int		 type = n > 0 ? lua_type(L, first) : LUA_TNIL;

	if (type == LUA_TTABLE) {
		conv_tunnel(L, first, t);
		return 0;
	}
	if (type != LUA_TNIL &&
	    !(type == LUA_TBOOLEAN && !lua_toboolean(L, first)))
		luaL_error(L, "getTunnelInfo returned a %s, expected a table "
		    "or nil", luaL_typename(L, first));
	len = strlen(s);
	if (n >= 2 && !lua_isnil(L, first + 1)) {
		if (lua_type(L, first + 1) != LUA_TSTRING)
			luaL_error(L, "getTunnelInfo: the message after nil "
			    "must be a string, got a %s",
			    luaL_typename(L, first + 1));
		s = lua_tolstring(L, first + 1, &len);
	}
	if (msglen > 0) {
		if (len > msglen - 1)
			len = msglen - 1;
		/* One line, like every reason in an err buffer. */
		for (i = 0; i < len; i++)
			msg[i] = (unsigned char)s[i] < 0x20 || s[i] == 0x7f ?
			    ' ' : s[i];
		msg[len] = '\0';
	}
	return 1;
}

void
conv_push_info(lua_State *L, const struct policy_tunnel *t)
{
	size_t	 i, n = t->nfwd < POLICY_MAX_FWDS ? t->nfwd : POLICY_MAX_FWDS;
	int	 i_t;

	luaL_checkstack(L, 4, NULL);
	lua_createtable(L, 0, 15);
	i_t = lua_gettop(L);
	conv_setbuf(L, i_t, "id", t->id, sizeof(t->id));
	conv_setbuf(L, i_t, "tenant", t->tenant, sizeof(t->tenant));
	conv_setbuf(L, i_t, "mode", t->mode, sizeof(t->mode));
	conv_setbuf(L, i_t, "connectMode", t->connect_mode,
	    sizeof(t->connect_mode));
	lua_pushinteger(L, t->enc_count);
	lua_setfield(L, i_t, "encCount");
	lua_pushinteger(L, t->idle_timeout);
	lua_setfield(L, i_t, "idleTimeout");
	lua_pushinteger(L, t->keepalive);
	lua_setfield(L, i_t, "keepalive");
	lua_pushinteger(L, t->limits.max_streams);
	lua_setfield(L, i_t, "maxStreams");
	lua_pushinteger(L, t->limits.rate_up);
	lua_setfield(L, i_t, "rateUp");
	lua_pushinteger(L, t->limits.rate_down);
	lua_setfield(L, i_t, "rateDown");
	lua_pushinteger(L, t->limits.max_bytes);
	lua_setfield(L, i_t, "maxBytes");
	lua_pushinteger(L, t->limits.max_connect_rate);
	lua_setfield(L, i_t, "maxConnectRate");
	lua_pushinteger(L, t->limits.session_timeout);
	lua_setfield(L, i_t, "sessionTimeout");
	lua_createtable(L, (int)n, 0);
	for (i = 0; i < n; i++) {
		lua_pushlstring(L, t->forwards[i],
		    strnlen(t->forwards[i], sizeof(t->forwards[i])));
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, i_t, "forwards");
	n = t->ndest < POLICY_MAX_DESTS ? t->ndest : POLICY_MAX_DESTS;
	lua_createtable(L, (int)n, 0);
	for (i = 0; i < n; i++) {
		lua_pushlstring(L, t->dests[i],
		    strnlen(t->dests[i], sizeof(t->dests[i])));
		lua_rawseti(L, -2, (lua_Integer)i + 1);
	}
	lua_setfield(L, i_t, "destinations");
}
