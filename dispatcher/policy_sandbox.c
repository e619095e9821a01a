/*
 * Restricted Lua states for the policy scripts: a capped allocator, an
 * instruction budget that a script can not catch, a whitelisted set of
 * globals and log().  DESIGN "script safety".
 */

#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

#include "err.h"
#include "policy.h"
#include "policy_lib.h"
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
 * The watchdog: armed sandboxes in a list, and one thread that wakes at
 * the earliest deadline.  wd_wake is when it will wake next, so that
 * arming a call signals it only when the new deadline comes sooner.
 */
static pthread_once_t	 wd_once = PTHREAD_ONCE_INIT;
static pthread_mutex_t	 wd_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t	 wd_cond;
static struct sandbox	*wd_head;
static uint64_t		 wd_wake;
static int		 wd_ok;

static void	sandbox_hook(lua_State *, lua_Debug *);

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

static uint64_t
sandbox_now(void)
{
	struct timespec	 ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* Raises the error of whichever cap was hit first, noting where. */
static void
sandbox_raise(lua_State *L, struct sandbox *sb, int insn, lua_Debug *ar)
{
	lua_Debug	 d;

	if (!sb->budget_hit && !sb->time_hit) {
		if (insn)
			sb->budget_hit = 1;
		else
			sb->time_hit = 1;
		if (ar == NULL && lua_getstack(L, 1, &d))
			ar = &d;
		if (ar != NULL && lua_getinfo(L, "Sl", ar) != 0)
			snprintf(sb->where, sizeof(sb->where), "%s:%d",
			    ar->short_src, ar->currentline);
	}
	if (sb->time_hit)
		luaL_error(L, "time budget exceeded");
	luaL_error(L, "instruction budget exceeded");
}

/*
 * Count hook, and after the watchdog expired the call, also call and
 * return hook.  Once a budget is gone it raises again at every hook:
 * code that still runs after the first error (a __close handler while it
 * unwinds) stops too.
 */
static void
sandbox_hook(lua_State *L, lua_Debug *ar)
{
	struct sandbox	*sb = sandbox_of(L);

	if (ar->event == LUA_HOOKCOUNT)
		sb->insn_used += (unsigned long)sb->insn_step;
	if (sb->budget_hit || sb->time_hit)
		sandbox_raise(L, sb, 0, ar);
	/* A clock read per step of 1000 instructions costs nothing. */
	if (atomic_load_explicit(&sb->expired, memory_order_relaxed) ||
	    (sb->deadline != 0 && sandbox_now() >= sb->deadline))
		sandbox_raise(L, sb, 0, ar);
	if (sb->insn_limit != 0 && sb->insn_used > sb->insn_limit)
		sandbox_raise(L, sb, 1, ar);
}

void
sandbox_charge(lua_State *L, unsigned long n)
{
	struct sandbox	*sb = sandbox_of(L);

	if (sb->budget_hit || sb->time_hit ||
	    atomic_load_explicit(&sb->expired, memory_order_relaxed))
		sandbox_raise(L, sb, 0, NULL);
	if (sb->insn_limit == 0)
		return;
	if (sb->insn_used > sb->insn_limit ||
	    n > sb->insn_limit - sb->insn_used)
		sandbox_raise(L, sb, 1, NULL);
	sb->insn_used += n;
}

unsigned long
sandbox_insn_left(lua_State *L)
{
	struct sandbox	*sb = sandbox_of(L);

	if (sb->insn_limit == 0)
		return ULONG_MAX;
	return sb->insn_used < sb->insn_limit ?
	    sb->insn_limit - sb->insn_used : 0;
}

size_t
sandbox_mem_left(lua_State *L)
{
	struct sandbox	*sb = sandbox_of(L);

	return sb->mem_used < sb->mem_limit ? sb->mem_limit - sb->mem_used :
	    0;
}

static void *
sandbox_wd_main(void *arg)
{
	struct sandbox	*sb;
	struct timespec	 ts;
	uint64_t	 now, next;

	(void)arg;
	pthread_mutex_lock(&wd_lock);
	for (;;) {
		now = sandbox_now();
		next = now + 3600 * 1000000000ull;
		for (sb = wd_head; sb != NULL; sb = sb->wd_next) {
			if (sb->deadline > now) {
				if (sb->deadline < next)
					next = sb->deadline;
				continue;
			}
			if (atomic_exchange(&sb->expired, 1))
				continue;
			/*
			 * A C function the budget does not reach (one
			 * calling others without a VM instruction) meets a
			 * hook at its next call.  lua_sethook may be called
			 * asynchronously (ldebug.c); the call holds its
			 * state until sandbox_disarm(), which takes wd_lock.
			 */
			lua_sethook(sb->L, sandbox_hook, LUA_MASKCOUNT |
			    LUA_MASKCALL | LUA_MASKRET, 1);
		}
		wd_wake = next;
		ts.tv_sec = (time_t)(next / 1000000000u);
		ts.tv_nsec = (long)(next % 1000000000u);
		pthread_cond_timedwait(&wd_cond, &wd_lock, &ts);
	}
	return NULL;
}

static void
sandbox_wd_start(void)
{
	pthread_condattr_t	 ca;
	pthread_attr_t		 ta;
	pthread_t		 t;

	if (pthread_condattr_init(&ca) != 0)
		return;
	if (pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0 ||
	    pthread_cond_init(&wd_cond, &ca) != 0) {
		pthread_condattr_destroy(&ca);
		return;
	}
	pthread_condattr_destroy(&ca);
	if (pthread_attr_init(&ta) != 0)
		return;
	pthread_attr_setdetachstate(&ta, PTHREAD_CREATE_DETACHED);
	/* Without it the hook's clock check still bounds VM code. */
	if (pthread_create(&t, &ta, sandbox_wd_main, NULL) == 0)
		wd_ok = 1;
	pthread_attr_destroy(&ta);
}

void
sandbox_arm(lua_State *L)
{
	struct sandbox	*sb = sandbox_of(L);

	/* The watchdog may have left a hook on every instruction. */
	if (sb->insn_limit > 0 || sb->time_ms > 0)
		lua_sethook(L, sandbox_hook, LUA_MASKCOUNT, sb->insn_step);
	if (sb->time_ms == 0)
		return;
	sb->L = L;
	sb->deadline = sandbox_now() + (uint64_t)sb->time_ms * 1000000u;
	pthread_once(&wd_once, sandbox_wd_start);
	if (!wd_ok)
		return;
	pthread_mutex_lock(&wd_lock);
	sb->wd_prev = NULL;
	sb->wd_next = wd_head;
	if (wd_head != NULL)
		wd_head->wd_prev = sb;
	wd_head = sb;
	if (sb->deadline < wd_wake || wd_wake == 0)
		pthread_cond_signal(&wd_cond);
	pthread_mutex_unlock(&wd_lock);
}

void
sandbox_disarm(lua_State *L)
{
	struct sandbox	*sb = sandbox_of(L);

	if (sb->deadline == 0)
		return;
	if (wd_ok) {
		pthread_mutex_lock(&wd_lock);
		if (sb->wd_prev != NULL)
			sb->wd_prev->wd_next = sb->wd_next;
		else
			wd_head = sb->wd_next;
		if (sb->wd_next != NULL)
			sb->wd_next->wd_prev = sb->wd_prev;
		sb->wd_next = sb->wd_prev = NULL;
		pthread_mutex_unlock(&wd_lock);
	}
	sb->deadline = 0;
}

/* 1 if the error of status must not be caught by a script. */
static int
sandbox_fatal(lua_State *L, int status)
{
	struct sandbox	*sb = sandbox_of(L);

	if (status == LUA_ERRMEM)
		sb->mem_hit = 1;
	if (!sb->budget_hit &&
	    atomic_load_explicit(&sb->expired, memory_order_relaxed))
		sb->time_hit = 1;
	return sb->mem_hit || sb->budget_hit || sb->time_hit;
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

	if (sb->budget_hit || sb->mem_hit || sb->time_hit)
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
		if (!sb->budget_hit && !sb->mem_hit && !sb->time_hit &&
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
sandbox_new(struct sandbox *sb, size_t mem, unsigned long insn,
    unsigned long time_ms)
{
	lua_State	*L;

	memset(sb, 0, sizeof(*sb));
	atomic_init(&sb->expired, 0);
	sb->mem_limit = mem;
	sb->insn_limit = insn;
	sb->time_ms = time_ms;
	sb->insn_step = insn > 0 && insn < SANDBOX_STEP ? (int)insn :
	    SANDBOX_STEP;
	if ((L = lua_newstate(sandbox_alloc, sb)) == NULL)
		return NULL;
	if (insn > 0 || time_ms > 0)
		lua_sethook(L, sandbox_hook, LUA_MASKCOUNT, sb->insn_step);
	return L;
}

void
sandbox_reset(struct sandbox *sb)
{
	sb->insn_used = 0;
	sb->budget_hit = 0;
	sb->mem_hit = 0;
	sb->time_hit = 0;
	atomic_store(&sb->expired, 0);
	sb->where[0] = '\0';
}

/*
 * The kept base functions in a new globals table, which becomes the
 * registry's globals and _G: its stack index (pushed).
 *
 * A whitelist, so that a newer Lua's additions stay out too: the kept
 * functions move to a new globals table (cheaper than pruning the old
 * one) before any chunk is loaded with it as _ENV.
 */
static int
sandbox_open_globals(lua_State *L)
{
	const char *const	*k;
	int			 g;

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
	return g;
}

/* Ours in place of the base library's, and log(). */
static void
sandbox_open_overrides(lua_State *L, int g)
{
	static const luaL_Reg fns[] = {
		{ "pcall",		sandbox_pcall },
		{ "xpcall",		sandbox_xpcall },
		{ "setmetatable",	sandbox_setmetatable },
		{ "log",		sandbox_log },
	};
	size_t i;

	for (i = 0; i < sizeof(fns) / sizeof(fns[0]); i++) {
		lua_pushcfunction(L, fns[i].func);
		lua_setfield(L, g, fns[i].name);
	}
}

/* string (without dump), table, math, utf8 and plib's bounded ones. */
static void
sandbox_open_safe_libs(lua_State *L, int g)
{
	static const luaL_Reg libs[] = {
		{ LUA_STRLIBNAME,	luaopen_string },
		{ LUA_TABLIBNAME,	luaopen_table },
		{ LUA_MATHLIBNAME,	luaopen_math },
		{ LUA_UTF8LIBNAME,	luaopen_utf8 },
	};
	size_t i;

	/*
	 * Called directly rather than through luaL_requiref: nothing needs
	 * package.loaded, and a fresh state per request pays for every table.
	 */
	for (i = 0; i < sizeof(libs) / sizeof(libs[0]); i++) {
		lua_pushcfunction(L, libs[i].func);
		lua_call(L, 0, 1);
		lua_setfield(L, g, libs[i].name);
	}
	/* The string metatable's __index is this same table. */
	lua_getfield(L, g, LUA_STRLIBNAME);
	lua_pushnil(L);
	lua_setfield(L, -2, "dump");
	lua_pop(L, 1);
	/* Functions that loop in C, bounded (docs/lua-api.md "Limits"). */
	plib_install(L, g);
}

/* os: time, clock and date behind a read-only proxy. */
static void
sandbox_open_os(lua_State *L, int g)
{
	static const char *const os_kept[] = { "time", "clock", "date" };
	size_t i;

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
	lua_pop(L, 2);
}

void
sandbox_openlibs(lua_State *L)
{
	int g;

	g = sandbox_open_globals(L);
	sandbox_open_overrides(L, g);
	sandbox_open_safe_libs(L, g);
	sandbox_open_os(L, g);
	lua_pop(L, 1);	/* g */
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
	if (status != LUA_OK && !sb->budget_hit &&
	    atomic_load(&sb->expired))
		sb->time_hit = 1;
	if (sb->budget_hit) {
		err_set(err, "instruction budget of %lu exceeded%s%s",
		    sb->insn_limit, sb->where[0] != '\0' ? " at " : "",
		    sb->where);
		rc = -1;
	} else if (sb->time_hit) {
		err_set(err, "time budget of %lu ms exceeded%s%s",
		    sb->time_ms, sb->where[0] != '\0' ? " at " : "",
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
	if ((L = sandbox_new(&sb, SANDBOX_COMPILE_MEM, 0, 0)) == NULL) {
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
