/*
 * The operator's Lua policy: loading and reloading the scripts, and the
 * three calls the dispatcher makes (policy.h, docs/lua-api.md).
 *
 * canAccept gets a fresh state per request, so that requests are isolated
 * and run concurrently without a lock; its source is compiled once and
 * each state loads the bytecode (DESIGN: 16 us per request against 47 us
 * from source).  handler.lua has one state for the policy's life, so its
 * globals can count tunnels; a mutex serialises it.
 *
 * Every Lua call goes through policy_run(): one lua_pcall() of a C
 * function that does the whole job, so a memory error anywhere (building
 * the request table included) is caught instead of ending in Lua's panic.
 */

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "err.h"
#include "policy.h"
#include "policy_conv.h"
#include "policy_sandbox.h"

struct policy {
	atomic_int		 refs;
	unsigned long		 insn;
	unsigned long		 time_ms;
	size_t			 mem;
	char			*ca_code;	/* NULL: admit everything */
	size_t			 ca_len;
	int			 lock_ok;
	pthread_mutex_t		 lock;		/* for L and sb */
	struct sandbox		 sb;
	lua_State		*L;		/* handler.lua's shared state */
};

/* What one policy_run() works on; members unused by a call are NULL. */
struct policy_call {
	const char			*code;
	size_t				 len;
	const struct policy_req		*req;
	struct policy_verdict		*verdict;
	struct policy_tunnel		*tunnel;
	const struct policy_tunnel	*info;
	const char			*reason;
	int				 rc;
	char				 msg[ERR_LEN];
};

/* The dry calls' request: what a plain kptunnel wsclient sends. */
static const struct policy_kv policy_dry_headers[] = {
	{ "host",			"localhost" },
	{ "upgrade",			"websocket" },
	{ "connection",			"Upgrade" },
	{ "sec-websocket-version",	"13" },
};

static const struct policy_req policy_dry_req = {
	"GET", "/", "", policy_dry_headers,
	sizeof(policy_dry_headers) / sizeof(policy_dry_headers[0]),
	"127.0.0.1", "", "", NULL
};

static void
policy_getfunc(lua_State *L, const char *name)
{
	if (lua_getglobal(L, name) != LUA_TFUNCTION)
		luaL_error(L, "the script defines no global function %s "
		    "(found a %s)", name, luaL_typename(L, -1));
}

/* Loads a chunk and runs its top level. */
static int
policy_init_main(lua_State *L)
{
	struct policy_call	*c = lua_touserdata(L, 1);

	sandbox_openlibs(L);
	sandbox_loadcode(L, c->code, c->len);
	sandbox_call(L, 0, 0);
	policy_getfunc(L, "getTunnelInfo");
	return 0;
}

static int
policy_ca_main(lua_State *L)
{
	struct policy_call	*c = lua_touserdata(L, 1);
	int			 first;

	sandbox_openlibs(L);
	sandbox_loadcode(L, c->code, c->len);
	sandbox_call(L, 0, 0);
	policy_getfunc(L, "canAccept");
	conv_push_req(L, c->req);
	first = lua_gettop(L) - 1;
	sandbox_call(L, 1, LUA_MULTRET);
	conv_verdict(L, first, c->verdict);
	return 0;
}

static int
policy_gt_main(lua_State *L)
{
	struct policy_call	*c = lua_touserdata(L, 1);
	int			 first;

	policy_getfunc(L, "getTunnelInfo");
	conv_push_req(L, c->req);
	first = lua_gettop(L) - 1;
	sandbox_call(L, 1, LUA_MULTRET);
	c->rc = conv_tunnel_result(L, first, c->tunnel, c->msg,
	    sizeof(c->msg));
	return 0;
}

static int
policy_end_main(lua_State *L)
{
	struct policy_call	*c = lua_touserdata(L, 1);
	int			 type = lua_getglobal(L, "onEndTunnel");

	/* Optional: a script with no bookkeeping need not define it. */
	if (type == LUA_TNIL)
		return 0;
	if (type != LUA_TFUNCTION)
		return luaL_error(L, "onEndTunnel is a %s, not a function",
		    luaL_typename(L, -1));
	conv_push_info(L, c->info);
	lua_pushstring(L, c->reason != NULL ? c->reason : "");
	sandbox_call(L, 2, 0);
	return 0;
}

/* One protected call of fn(c); 0, or -1 with err. */
static int
policy_run(lua_State *L, lua_CFunction fn, struct policy_call *c,
    char *err)
{
	int	 status;

	lua_settop(L, 0);
	lua_pushcfunction(L, fn);
	lua_pushlightuserdata(L, c);
	sandbox_arm(L);
	status = lua_pcall(L, 1, 0, 0);
	sandbox_disarm(L);
	return sandbox_result(L, status, err);
}

static int
policy_ca_run(const struct policy *p, const struct policy_req *req,
    struct policy_verdict *v, int quiet, char *err)
{
	struct policy_call	 c;
	struct sandbox		 sb;
	lua_State		*L;
	int			 rc = -1;

	memset(v, 0, sizeof(*v));
	if (p->ca_code == NULL) {
		v->accept = 1;
		return 0;
	}
	memset(&c, 0, sizeof(c));
	c.code = p->ca_code;
	c.len = p->ca_len;
	c.req = req;
	c.verdict = v;
	if ((L = sandbox_new(&sb, p->mem, p->insn, p->time_ms)) == NULL) {
		err_set(err, "canAccept: out of memory");
		goto fail;
	}
	sb.quiet = quiet;
	rc = policy_run(L, policy_ca_main, &c, err);
	lua_close(L);
 fail:
	if (rc == -1) {
		/* Fail closed even for a caller that ignores rc. */
		memset(v, 0, sizeof(*v));
		v->status = 500;
	}
	return rc;
}

/*
 * getTunnelInfo's dry call, in a throwaway state: the shared one must not
 * count a tunnel that never starts.
 */
static int
policy_dry_tunnel(const struct policy *p, const char *code, size_t len,
    char *err)
{
	struct policy_call	 c;
	struct policy_tunnel	 t;
	struct sandbox		 sb;
	lua_State		*L;
	int			 rc = -1;

	memset(&c, 0, sizeof(c));
	c.code = code;
	c.len = len;
	c.req = &policy_dry_req;
	c.tunnel = &t;
	if ((L = sandbox_new(&sb, p->mem, p->insn, p->time_ms)) == NULL) {
		err_set(err, "out of memory");
		return -1;
	}
	sb.quiet = 1;
	if (policy_run(L, policy_init_main, &c, err) == 0) {
		sandbox_reset(&sb);
		rc = policy_run(L, policy_gt_main, &c, err);
	}
	lua_close(L);
	policy_tunnel_cleanse(&t);
	return rc;
}

static void
policy_free(struct policy *p)
{
	if (p == NULL)
		return;
	if (p->L != NULL) {
		/* __gc finalizers run now: give them a budget of their own. */
		sandbox_reset(&p->sb);
		lua_close(p->L);
	}
	if (p->lock_ok)
		pthread_mutex_destroy(&p->lock);
	free(p->ca_code);
	free(p);
}

/*
 * A policy with no scripts yet, its limits from lim (NULL or 0 fields:
 * the defaults) and one reference: NULL with err on a limit below
 * POLICY_MIN_MEMORY or without memory.
 */
static struct policy *
policy_alloc(const struct policy_limits *lim, char *err)
{
	struct policy *p;

	if ((p = calloc(1, sizeof(*p))) == NULL) {
		err_set(err, "out of memory");
		return NULL;
	}
	atomic_init(&p->refs, 1);
	p->insn = lim != NULL && lim->instructions != 0 ?
	    lim->instructions : POLICY_DEF_INSTRUCTIONS;
	p->time_ms = lim != NULL && lim->time_ms != 0 ?
	    lim->time_ms : POLICY_DEF_TIME_MS;
	p->mem = lim != NULL && lim->memory != 0 ?
	    lim->memory : POLICY_DEF_MEMORY;
	if (p->mem < POLICY_MIN_MEMORY) {
		err_set(err, "memory limit of %zu bytes is below %lu", p->mem,
		    POLICY_MIN_MEMORY);
		goto fail;
	}
	if (pthread_mutex_init(&p->lock, NULL) != 0) {
		err_set(err, "pthread_mutex_init failed");
		goto fail;
	}
	p->lock_ok = 1;
	return p;
fail:
	policy_free(p);
	return NULL;
}

int
policy_load(const char *handler_path, const char *canaccept_path,
    const struct policy_limits *lim, struct policy **out, char *err)
{
	struct policy		*p;
	struct policy_call	 c;
	struct policy_verdict	 v;
	char			*h_code = NULL, msg[ERR_LEN];
	size_t			 h_len = 0;

	*out = NULL;
	if ((p = policy_alloc(lim, err)) == NULL)
		return -1;
	if (sandbox_compile(handler_path, &h_code, &h_len, err) == -1)
		goto fail;
	if (canaccept_path != NULL && sandbox_compile(canaccept_path,
	    &p->ca_code, &p->ca_len, err) == -1)
		goto fail;

	if ((p->L = sandbox_new(&p->sb, p->mem, p->insn, p->time_ms)) == NULL) {
		err_set(err, "out of memory");
		goto fail;
	}
	memset(&c, 0, sizeof(c));
	c.code = h_code;
	c.len = h_len;
	if (policy_run(p->L, policy_init_main, &c, err) == -1)
		goto fail;

	if (policy_ca_run(p, &policy_dry_req, &v, 1, msg) == -1) {
		err_set(err, "canAccept dry call: %s", msg);
		goto fail;
	}
	if (policy_dry_tunnel(p, h_code, h_len, msg) == -1) {
		err_set(err, "getTunnelInfo dry call: %s", msg);
		goto fail;
	}
	free(h_code);
	*out = p;
	return 0;
 fail:
	free(h_code);
	policy_free(p);
	return -1;
}

void
policy_ref(struct policy *p)
{
	atomic_fetch_add_explicit(&p->refs, 1, memory_order_relaxed);
}

void
policy_unref(struct policy *p)
{
	if (p == NULL)
		return;
	if (atomic_fetch_sub_explicit(&p->refs, 1, memory_order_acq_rel) == 1)
		policy_free(p);
}

int
policy_can_accept(struct policy *p, const struct policy_req *req,
    struct policy_verdict *v, char *err)
{
	return policy_ca_run(p, req, v, 0, err);
}

int
policy_get_tunnel(struct policy *p, const struct policy_req *req,
    struct policy_tunnel *t, char *err)
{
	struct policy_call	 c;
	int			 rc;

	/* Only *t's secrets are promised on failure (no 32 KiB memset). */
	t->nfwd = 0;
	t->id[0] = '\0';
	memset(&c, 0, sizeof(c));
	c.req = req;
	c.tunnel = t;
	pthread_mutex_lock(&p->lock);
	sandbox_reset(&p->sb);
	rc = policy_run(p->L, policy_gt_main, &c, err);
	pthread_mutex_unlock(&p->lock);
	if (rc == 0 && c.rc == 1) {
		err_set(err, "%s", c.msg);
		rc = 1;
	}
	if (rc != 0)
		policy_tunnel_cleanse(t);
	return rc;
}

int
policy_end_tunnel(struct policy *p, const struct policy_tunnel *t,
    const char *reason, char *err)
{
	struct policy_call	 c;
	int			 rc;

	memset(&c, 0, sizeof(c));
	c.info = t;
	c.reason = reason;
	pthread_mutex_lock(&p->lock);
	sandbox_reset(&p->sb);
	rc = policy_run(p->L, policy_end_main, &c, err);
	pthread_mutex_unlock(&p->lock);
	return rc;
}

void
policy_tunnel_cleanse(struct policy_tunnel *t)
{
	/* explicit_bzero: a memset before going out of scope can be elided. */
	explicit_bzero(t->pass, sizeof(t->pass));
	explicit_bzero(t->encpass, sizeof(t->encpass));
}
