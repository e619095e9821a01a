#ifndef POLICY_H
#define POLICY_H

/*
 * The operator's Lua 5.4 policy (DESIGN "policy", docs/lua-api.md).
 *
 * canAccept.lua decides whether a websocket upgrade request is admitted.
 * It runs in a fresh lua_State for every request, built from bytecode
 * compiled once, so requests never see each other and calls may run
 * concurrently from any number of threads.
 *
 * handler.lua lives in one shared lua_State whose globals persist:
 * getTunnelInfo chooses the worker of a new session and onEndTunnel hears
 * of its end.  Calls on it are serialised by a mutex.
 *
 * Scripts run restricted (no io, os.execute, require, load, debug...), each
 * call within an instruction budget (library functions that loop in C
 * charge their loops to it) and a wall-clock budget enforced by a
 * watchdog thread, and each state within a memory cap; a script can not
 * catch running out of any.  Every failure is returned,
 * never logged: the functions below write a one-line reason (a Lua error
 * comes with its traceback) into the caller's err of ERR_LEN bytes.
 *
 * The caller answers (kptunnel-wire.md 9.9, refined):
 *	policy_can_accept   -1: 500          verdict refused: its status, body
 *	policy_get_tunnel   -1: 500          1: 403 with err as the body
 * and logs err in both -1 cases.
 */

#include <stddef.h>

#include "ctlmsg.h"

#define POLICY_MAX_FWDS		64
#define POLICY_FWD_LEN		512
#define POLICY_BODY_LEN		1024
#define POLICY_ID_LEN		128
#define POLICY_SECRET_LEN	256
#define POLICY_MAX_DESTS	64	/* destinations (destpat.h) */
#define POLICY_DEST_LEN		272

/* Per-call defaults when struct policy_limits is NULL or a field 0. */
#define POLICY_DEF_INSTRUCTIONS	1000000UL
#define POLICY_DEF_MEMORY	(8UL * 1024 * 1024)
/* Wall-clock milliseconds per call: the watchdog's budget. */
#define POLICY_DEF_TIME_MS	1000UL
/* Below this a state could not even open its libraries. */
#define POLICY_MIN_MEMORY	(256UL * 1024)

/* log() levels, the values of enum log_level in common/log.h. */
#define POLICY_LOG_ERR		0
#define POLICY_LOG_WARN		1
#define POLICY_LOG_INFO		2
#define POLICY_LOG_DEBUG	3
/* A log() message is cut to this many bytes (including the NUL). */
#define POLICY_LOG_LEN		1024

struct policy;				/* compiled scripts + shared state */

struct policy_kv {
	const char	*name;
	const char	*value;
};

/*
 * Live tunnels per tenant, counted by the caller (the dispatcher), so that
 * no reload of the scripts can reset a quota.  count(arg, tenant) returns
 * the number, >= 0; it may be called from any thread running a script.
 * The counter must outlive every policy whose scripts saw it.
 */
struct policy_counter {
	int	(*count)(void *arg, const char *tenant);
	void	*arg;
};

/*
 * One upgrade request.  Every string may be NULL, read as "".  The
 * scripts see it as the table `req` (docs/lua-api.md): query is parsed
 * there into name -> first value, URL-decoded; header names are
 * lower-cased again and repeated headers joined with ", ".
 *
 * A caller whose HTTP layer already decoded the arguments builds query
 * with policy_query_append(), so that the script sees each name and
 * value exactly as decoded once (the same session the caller routes
 * on), never decoded twice nor split at a decoded '&'.
 */
struct policy_req {
	const char		*method;
	const char		*path;
	const char		*query;		/* no '?', may be "" */
	const struct policy_kv	*headers;	/* names lower-cased */
	size_t			 nheaders;
	const char		*remote_addr;	/* "1.2.3.4" or "::1" */
	const char		*session;	/* session= value or "" */
	const char		*mode;	/* "", "Reconnect", "Disconnect" */
	/* req.tunnels[tenant]; NULL: every tenant reads 0 */
	const struct policy_counter *tunnels;
};

/*
 * canAccept's answer.  status and body mean something only when accept
 * is 0: status is 400..599 (403 unless the script chose), body the
 * script's message cut at POLICY_BODY_LEN - 1 bytes (or a NUL in it).
 */
struct policy_verdict {
	int	accept;
	int	status;
	char	body[POLICY_BODY_LEN];
};

/*
 * A new session's worker as getTunnelInfo returned it, checked: every
 * string is NUL-terminated and within its array.  pass and encpass are
 * secrets: policy_tunnel_cleanse() them when done.  forwards are only
 * checked for length; their grammar is the caller's (fwd_parse).
 */
struct policy_tunnel {
	/* [A-Za-z0-9._:@+-]{1,127}; tenant defaults to id */
	char	id[POLICY_ID_LEN];
	char	tenant[POLICY_ID_LEN];
	/* server, r-server, wsserver or r-wsserver */
	char	mode[16];
	/* pass never empty; encpass empty only if enc_count is 0 */
	char	pass[POLICY_SECRET_LEN];
	char	encpass[POLICY_SECRET_LEN];
	/* -1 (all; any negative becomes -1), 0 (none), N (wire spec 4) */
	int	enc_count;
	/* nfwd >= 1 for r-server and r-wsserver */
	char	forwards[POLICY_MAX_FWDS][POLICY_FWD_LEN];
	size_t	nfwd;
	/* "CanReconnect" (the default) or "OneShot" */
	char	connect_mode[16];
	/* seconds without traffic, 0..2592000, default 600; 0: never */
	int	idle_timeout;
	/* seconds (kptunnel -int), 2..3600, default 20 */
	int	keepalive;
	/* maxStreams, rateUp, rateDown, maxBytes, maxConnectRate (0, the
	 * default: none) and sessionTimeout (default 600), in the bounds
	 * of ctlmsg.h */
	struct ctlmsg_limits limits;
	/* destination patterns for clients' dynamic forwards, each one
	 * destpat_parse accepts; none: such streams are refused */
	char	dests[POLICY_MAX_DESTS][POLICY_DEST_LEN];
	size_t	ndest;
};

/*
 * Appends name (and "=value" unless value is NULL) to the query q of
 * length *len, '&'-separated, with '%', '&', '=' and '+' %-escaped: the
 * req table then holds name and value byte for byte.  Returns 0, or -1
 * when it does not fit in cap bytes (q and *len unchanged but for bytes
 * past the old end, and still terminated at *len).
 */
int	policy_query_append(char *q, size_t cap, size_t *len,
	    const char *name, const char *value);

/* Per call; a 0 field means its POLICY_DEF_* default. */
struct policy_limits {
	unsigned long	instructions;	/* VM instructions per call */
	size_t		memory;		/* bytes per lua_State */
	unsigned long	time_ms;	/* wall-clock ms per call */
};

typedef void	(*policy_log_fn)(int level, const char *msg);

/*
 * Where the scripts' log(level, msg) goes; NULL (the default) discards.
 * Global to the process; fn is called from whichever thread runs the
 * script, concurrently for canAccept, so it must be thread-safe.  msg
 * has control characters replaced and is at most POLICY_LOG_LEN - 1 bytes.
 */
void	policy_set_logger(policy_log_fn fn);

/*
 * Compiles handler_path and canaccept_path (Lua source only, never
 * bytecode) once, creates the shared state and runs handler.lua's top
 * level in it, and requires the global functions getTunnelInfo and (if
 * canaccept_path is not NULL) canAccept.  Then dry-calls both with a
 * synthetic request (GET / from 127.0.0.1, no query, no session) -
 * getTunnelInfo in a throwaway state, so the shared one does not count
 * it, log() silenced - so that a broken script fails here, on load or
 * reload, and not on the first client.  The dry calls may refuse; they
 * may not raise an error or return something invalid.
 *
 * canaccept_path NULL admits every request without running Lua (as
 * kptunnel without -u).  lim may be NULL for the defaults.
 *
 * Returns 0 with *out holding one reference, or -1 with err (the Lua
 * message names the file and line).  An existing policy is untouched
 * either way: a reload swaps only after this succeeded.
 */
int	policy_load(const char *handler_path, const char *canaccept_path,
	    const struct policy_limits *lim, struct policy **out, char *err);

/*
 * Reference counting, thread-safe.  The last policy_unref() closes the
 * shared state and frees everything.  policy_unref(NULL) does nothing.
 */
void	policy_ref(struct policy *p);
void	policy_unref(struct policy *p);

/*
 * Runs canAccept(req) in a fresh state.  Callable concurrently.  The
 * script returns true (accept), false [, status [, body]] (refuse; the
 * status defaults to 403 and must be 400..599, the body a string), or
 * nothing / nil (refuse, 403).  Returns 0 with *v filled, or -1 with err:
 * a Lua error (with traceback), a budget or the memory cap (even if the
 * script caught it), or anything else returned - the caller answers 500
 * (*v then refuses with status 500 too, failing closed).
 */
int	policy_can_accept(struct policy *p, const struct policy_req *req,
	    struct policy_verdict *v, char *err);

/*
 * Runs getTunnelInfo(req) on the shared state.  Returns
 *	 0  *t filled and checked (the caller owns the secrets in it),
 *	 1  the script refused: it returned nil (or false) [, message];
 *	    err holds the message (default "refused by getTunnelInfo",
 *	    control characters made spaces, cut at ERR_LEN - 1 bytes),
 *	    which the caller sends as the body of a 403,
 *	-1  a Lua error, budget, memory cap, or a table that is not a valid
 *	    tunnel (err names the field): the caller answers 500.
 * On 1 and -1 *t holds no secrets and nothing else to read.
 */
int	policy_get_tunnel(struct policy *p, const struct policy_req *req,
	    struct policy_tunnel *t, char *err);

/*
 * Calls onEndTunnel(info, reason) on the shared state if the script
 * defines it: info is t as a table without pass and encPass, reason a
 * string (NULL reads as "").  Call it on the policy whose
 * policy_get_tunnel() produced t (hold a reference for the tunnel's
 * life), so the script's bookkeeping stays in the state that counted
 * the tunnel.  Returns 0 (also when undefined), or -1 with err for the
 * caller to log.
 */
int	policy_end_tunnel(struct policy *p, const struct policy_tunnel *t,
	    const char *reason, char *err);

/* Wipes pass and encpass in a way the compiler keeps. */
void	policy_tunnel_cleanse(struct policy_tunnel *t);

#endif
