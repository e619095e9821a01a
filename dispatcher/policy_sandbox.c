/*
 * Restricted Lua states for the policy scripts: a capped allocator, an
 * instruction budget that a script can not catch, a whitelisted set of
 * globals and log().  DESIGN "script safety".
 */

#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "err.h"
#include "policy.h"
#include "policy_sandbox.h"

/*
 * Instructions between two count hooks: the budget is overshot by less
 * than this, and the hook costs one C call per step.
 */
#define SANDBOX_STEP		1000

/* Compiling needs memory in proportion to the source, not the policy. */
#define SANDBOX_COMPILE_MEM	(64UL * 1024 * 1024)

struct sandbox_dump {
	char	*buf;
	size_t	 len;
	size_t	 cap;
};

struct sandbox_compile_args {
	const char		*path;
	struct sandbox_dump	 dump;
};

static _Atomic(policy_log_fn) sandbox_logger;

/*
 * The base library functions a script keeps; pcall, xpcall and
 * setmetatable are ours.
 */
static const char *const sandbox_base_kept[] = {
	"_VERSION", "assert", "error", "getmetatable", "ipairs",
	"next", "pairs", "rawequal", "rawget", "rawlen", "rawset", "select",
	"tonumber", "tostring", "type", NULL
};

static struct sandbox *
sandbox_of(lua_State *L)
{
	void	*ud;

	lua_getallocf(L, &ud);
	return ud;
}

/*
 * lua_Alloc with a cap.  Refusing does not fail the call by itself: Lua
 * retries after an emergency collection, and some growths (the string
 * table) tolerate a refusal.  Only a memory error that reaches a pcall is
 * final, so that is where mem_hit is set.
 */
static void *
sandbox_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
	struct sandbox	*sb = ud;
	size_t		 old = ptr != NULL ? osize : 0;
	void		*np;

	if (nsize == 0) {
		free(ptr);
		sb->mem_used -= old;
		return NULL;
	}
	if (nsize > old && nsize - old > sb->mem_limit - sb->mem_used)
		return NULL;
	if ((np = realloc(ptr, nsize)) == NULL) {
		if (nsize > old)
			return NULL;
		/* Lua assumes a shrink never fails: keep the old block. */
		np = ptr;
	}
	sb->mem_used = sb->mem_used - old + nsize;
	return np;
}

/*
 * Count hook.  Once the budget is gone it raises again at every step:
 * code that still runs after the first error (a __close handler while it
 * unwinds) stops too.
 */
static void
sandbox_hook(lua_State *L, lua_Debug *ar)
{
	struct sandbox	*sb = sandbox_of(L);

	sb->insn_used += (unsigned long)sb->insn_step;
	if (!sb->budget_hit) {
		if (sb->insn_used <= sb->insn_limit)
			return;
		sb->budget_hit = 1;
		if (lua_getinfo(L, "Sl", ar) != 0)
			snprintf(sb->where, sizeof(sb->where), "%s:%d",
			    ar->short_src, ar->currentline);
	}
	luaL_error(L, "instruction budget exceeded");
}

/* 1 if the error of status must not be caught by a script. */
static int
sandbox_fatal(lua_State *L, int status)
{
	struct sandbox	*sb = sandbox_of(L);

	if (status == LUA_ERRMEM)
		sb->mem_hit = 1;
	return sb->mem_hit || sb->budget_hit;
}

/* pcall(f, ...) as in lbaselib.c, except for budget and memory errors. */
static int
sandbox_pcall(lua_State *L)
{
	int	 status;

	luaL_checkany(L, 1);
	lua_pushboolean(L, 1);
	lua_insert(L, 1);
	status = lua_pcall(L, lua_gettop(L) - 2, LUA_MULTRET, 0);
	if (status != LUA_OK) {
		if (sandbox_fatal(L, status))
			return lua_error(L);
		lua_pushboolean(L, 0);
		lua_pushvalue(L, -2);
		return 2;
	}
	return lua_gettop(L);
}

/*
 * The message handler of a script's xpcall, called through this.  An
 * error raised in the count hook runs the handler with hooks disabled
 * (ldo.c luaD_hook), where nothing could stop a loop in it: once a cap is
 * hit the error goes on as it is, and our xpcall re-raises it anyway.
 */
static int
sandbox_xpcall_msgh(lua_State *L)
{
	struct sandbox	*sb = sandbox_of(L);

	if (sb->budget_hit || sb->mem_hit)
		return 1;
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, 1);
	return 1;
}

/* xpcall(f, msgh, ...) likewise. */
static int
sandbox_xpcall(lua_State *L)
{
	int	 n = lua_gettop(L), status;

	luaL_checktype(L, 2, LUA_TFUNCTION);
	lua_pushvalue(L, 2);
	lua_pushcclosure(L, sandbox_xpcall_msgh, 1);
	lua_replace(L, 2);
	lua_pushboolean(L, 1);
	lua_pushvalue(L, 1);
	lua_rotate(L, 3, 2);
	status = lua_pcall(L, n - 2, LUA_MULTRET, 2);
	if (status != LUA_OK) {
		if (sandbox_fatal(L, status))
			return lua_error(L);
		lua_pushboolean(L, 0);
		lua_pushvalue(L, -2);
		return 2;
	}
	return lua_gettop(L) - 2;
}

/*
 * setmetatable(t, mt) as in lbaselib.c, but without finalizers: Lua runs
 * __gc with hooks disabled (lgc.c GCTM), out of the budget's reach.
 * Lua only honours a __gc present when the metatable is set, so checking
 * here is enough.
 */
static int
sandbox_setmetatable(lua_State *L)
{
	int	 t = lua_type(L, 2);

	luaL_checktype(L, 1, LUA_TTABLE);
	luaL_argexpected(L, t == LUA_TNIL || t == LUA_TTABLE, 2,
	    "nil or table");
	if (t == LUA_TTABLE) {
		lua_pushliteral(L, "__gc");
		if (lua_rawget(L, 2) != LUA_TNIL)
			return luaL_error(L, "__gc metamethods are not "
			    "allowed");
		lua_pop(L, 1);
	}
	if (luaL_getmetafield(L, 1, "__metatable") != LUA_TNIL)
		return luaL_error(L, "cannot change a protected metatable");
	lua_settop(L, 2);
	lua_setmetatable(L, 1);
	return 1;
}

/* log([level,] msg): the caller's logger, one sanitised line. */
static int
sandbox_log(lua_State *L)
{
	static const char *const levels[] = {
		"error", "warn", "info", "debug", NULL
	};
	char		 buf[POLICY_LOG_LEN];
	policy_log_fn	 fn;
	const char	*s;
	size_t		 len, i;
	int		 level = POLICY_LOG_INFO, mi = 1;

	if (lua_gettop(L) >= 2) {
		level = luaL_checkoption(L, 1, NULL, levels);
		mi = 2;
	}
	luaL_checkany(L, mi);
	s = luaL_tolstring(L, mi, &len);
	fn = atomic_load(&sandbox_logger);
	if (fn == NULL || sandbox_of(L)->quiet)
		return 0;
	if (len > sizeof(buf) - 1)
		len = sizeof(buf) - 1;
	/* A script's text must not forge or split log lines. */
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];

		buf[i] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
	}
	buf[len] = '\0';
	fn(level, buf);
	return 0;
}

static int
sandbox_readonly(lua_State *L)
{
	return luaL_error(L, "os is read-only");
}

static int
sandbox_msgh(lua_State *L)
{
	struct sandbox	*sb = sandbox_of(L);
	const char	*msg = lua_tostring(L, 1);

	if (msg == NULL) {
		/* Hooks may be off here (see sandbox_xpcall_msgh). */
		if (!sb->budget_hit && !sb->mem_hit &&
		    luaL_callmeta(L, 1, "__tostring") &&
		    lua_type(L, -1) == LUA_TSTRING)
			msg = lua_tostring(L, -1);
		else
			msg = lua_pushfstring(L, "(error object is a %s value)",
			    luaL_typename(L, 1));
	}
	luaL_traceback(L, L, msg, 1);
	return 1;
}

void
policy_set_logger(policy_log_fn fn)
{
	atomic_store(&sandbox_logger, fn);
}

lua_State *
sandbox_new(struct sandbox *sb, size_t mem, unsigned long insn)
{
	lua_State	*L;

	memset(sb, 0, sizeof(*sb));
	sb->mem_limit = mem;
	sb->insn_limit = insn;
	sb->insn_step = insn < SANDBOX_STEP ? (int)insn : SANDBOX_STEP;
	if ((L = lua_newstate(sandbox_alloc, sb)) == NULL)
		return NULL;
	if (insn > 0)
		lua_sethook(L, sandbox_hook, LUA_MASKCOUNT, sb->insn_step);
	return L;
}

void
sandbox_reset(struct sandbox *sb)
{
	sb->insn_used = 0;
	sb->budget_hit = 0;
	sb->mem_hit = 0;
	sb->where[0] = '\0';
}

void
sandbox_openlibs(lua_State *L)
{
	static const struct {
		const char	*name;
		lua_CFunction	 open;
	} libs[] = {
		{ LUA_STRLIBNAME,	luaopen_string },
		{ LUA_TABLIBNAME,	luaopen_table },
		{ LUA_MATHLIBNAME,	luaopen_math },
		{ LUA_UTF8LIBNAME,	luaopen_utf8 },
	};
	static const char *const os_kept[] = { "time", "clock", "date" };
	const char *const	*k;
	size_t			 i;
	int			 g;

	/*
	 * A whitelist, so that a newer Lua's additions stay out too: the
	 * kept functions move to a new globals table (cheaper than pruning
	 * the old one) before any chunk is loaded with it as _ENV.
	 */
	lua_pushcfunction(L, luaopen_base);
	lua_call(L, 0, 1);
	lua_createtable(L, 0, 32);
	g = lua_gettop(L);
	for (k = sandbox_base_kept; *k != NULL; k++) {
		lua_getfield(L, g - 1, *k);
		lua_setfield(L, g, *k);
	}
	lua_pushvalue(L, g);
	lua_setfield(L, g, LUA_GNAME);
	lua_pushvalue(L, g);
	lua_rawseti(L, LUA_REGISTRYINDEX, LUA_RIDX_GLOBALS);
	lua_remove(L, g - 1);
	g--;
	/* So that tracebacks name global functions (lauxlib.c). */
	luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
	lua_pushvalue(L, g);
	lua_setfield(L, -2, LUA_GNAME);
	lua_pop(L, 1);
	lua_pushcfunction(L, sandbox_pcall);
	lua_setfield(L, g, "pcall");
	lua_pushcfunction(L, sandbox_xpcall);
	lua_setfield(L, g, "xpcall");
	lua_pushcfunction(L, sandbox_setmetatable);
	lua_setfield(L, g, "setmetatable");
	lua_pushcfunction(L, sandbox_log);
	lua_setfield(L, g, "log");

	/*
	 * Called directly rather than through luaL_requiref: nothing needs
	 * package.loaded, and a fresh state per request pays for every table.
	 */
	for (i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		lua_pushcfunction(L, libs[i].open);
		lua_call(L, 0, 1);
		lua_setfield(L, g, libs[i].name);
	}
	/* The string metatable's __index is this same table. */
	lua_getfield(L, g, LUA_STRLIBNAME);
	lua_pushnil(L);
	lua_setfield(L, -2, "dump");
	lua_pop(L, 1);

	/* os: time, clock and date behind a read-only proxy. */
	lua_pushcfunction(L, luaopen_os);
	lua_call(L, 0, 1);
	lua_createtable(L, 0, 3);
	for (i = 0; i < sizeof(os_kept) / sizeof(os_kept[0]); i++) {
		lua_getfield(L, -2, os_kept[i]);
		lua_setfield(L, -2, os_kept[i]);
	}
	lua_newtable(L);
	lua_createtable(L, 0, 3);
	lua_pushvalue(L, -3);
	lua_setfield(L, -2, "__index");
	lua_pushcfunction(L, sandbox_readonly);
	lua_setfield(L, -2, "__newindex");
	lua_pushboolean(L, 0);
	lua_setfield(L, -2, "__metatable");
	lua_setmetatable(L, -2);
	lua_setfield(L, g, LUA_OSLIBNAME);
	lua_pop(L, 3);
}

void
sandbox_loadcode(lua_State *L, const char *code, size_t len)
{
	/* The source name inside the bytecode is what messages show. */
	if (luaL_loadbufferx(L, code, len, "=policy", "b") != LUA_OK)
		lua_error(L);
}

void
sandbox_call(lua_State *L, int nargs, int nresults)
{
	int	 base = lua_gettop(L) - nargs, status;

	luaL_checkstack(L, 1, NULL);
	lua_pushcfunction(L, sandbox_msgh);
	lua_insert(L, base);
	status = lua_pcall(L, nargs, nresults, base);
	lua_remove(L, base);
	if (status != LUA_OK) {
		(void)sandbox_fatal(L, status);
		lua_error(L);
	}
}

int
sandbox_result(lua_State *L, int status, char *err)
{
	struct sandbox	*sb = sandbox_of(L);
	const char	*msg;
	int		 rc = status == LUA_OK ? 0 : -1;

	if (status == LUA_ERRMEM)
		sb->mem_hit = 1;
	if (sb->budget_hit) {
		err_set(err, "instruction budget of %lu exceeded%s%s",
		    sb->insn_limit, sb->where[0] != '\0' ? " at " : "",
		    sb->where);
		rc = -1;
	} else if (sb->mem_hit) {
		err_set(err, "memory limit of %zu bytes exceeded",
		    sb->mem_limit);
		rc = -1;
	} else if (status != LUA_OK) {
		msg = lua_tostring(L, -1);
		sandbox_errcpy(err, msg != NULL ? msg :
		    "(error object is not a string)");
	}
	if (status != LUA_OK)
		lua_pop(L, 1);
	return rc;
}

static int
sandbox_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
	struct sandbox_dump	*d = ud;
	size_t			 ncap;
	char			*nb;

	if (sz > d->cap - d->len) {
		ncap = d->cap != 0 ? d->cap : 4096;
		while (ncap - d->len < sz) {
			if (ncap > SIZE_MAX / 2)
				return 1;
			ncap *= 2;
		}
		if ((nb = realloc(d->buf, ncap)) == NULL)
			return 1;
		d->buf = nb;
		d->cap = ncap;
	}
	memcpy(d->buf + d->len, p, sz);
	d->len += sz;
	return 0;
}

static int
sandbox_compile_main(lua_State *L)
{
	struct sandbox_compile_args	*a = lua_touserdata(L, 1);

	/* "t": a binary chunk could crash the VM; only source is trusted. */
	if (luaL_loadfilex(L, a->path, "t") != LUA_OK)
		return lua_error(L);
	if (lua_dump(L, sandbox_writer, &a->dump, 0) != 0)
		return luaL_error(L, "%s: out of memory for the bytecode",
		    a->path);
	return 0;
}

int
sandbox_compile(const char *path, char **code, size_t *len, char *err)
{
	struct sandbox_compile_args	 a;
	struct sandbox			 sb;
	lua_State			*L;
	int				 rc = -1;

	memset(&a, 0, sizeof(a));
	a.path = path;
	if ((L = sandbox_new(&sb, SANDBOX_COMPILE_MEM, 0)) == NULL) {
		err_set(err, "%s: out of memory", path);
		goto fail;
	}
	lua_pushcfunction(L, sandbox_compile_main);
	lua_pushlightuserdata(L, &a);
	if (sandbox_result(L, lua_pcall(L, 1, 0, 0), err) == -1)
		goto fail;
	*code = a.dump.buf;
	*len = a.dump.len;
	a.dump.buf = NULL;
	rc = 0;
 fail:
	if (L != NULL)
		lua_close(L);
	free(a.dump.buf);
	return rc;
}

static void
sandbox_append(char *err, size_t *o, const char *s)
{
	while (*s != '\0' && *o < ERR_LEN - 1)
		err[(*o)++] = *s++;
}

void
sandbox_errcpy(char *err, const char *msg)
{
	static const char	 tb[] = "\nstack traceback:\n\t";
	static const char	 ours[] = "\n\t[C]: in ?";
	const char		*p, *end;
	size_t			 o = 0, n;

	if (err == NULL)
		return;
	n = strlen(msg);
	end = msg + n;
	/* The bottom frame is always the policy's own C function. */
	if (n >= sizeof(ours) - 1 &&
	    strcmp(end - (sizeof(ours) - 1), ours) == 0)
		end -= sizeof(ours) - 1;
	for (p = msg; p < end && o < ERR_LEN - 1;) {
		if ((size_t)(end - p) >= sizeof(tb) - 1 &&
		    strncmp(p, tb, sizeof(tb) - 1) == 0) {
			sandbox_append(err, &o, "; traceback: ");
			p += sizeof(tb) - 1;
		} else if (p[0] == '\n' && p + 1 < end && p[1] == '\t') {
			sandbox_append(err, &o, " | ");
			p += 2;
		} else {
			unsigned char c = (unsigned char)*p++;

			err[o++] = c < 0x20 || c == 0x7f ? ' ' : (char)c;
		}
	}
	err[o] = '\0';
}
