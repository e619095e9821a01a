#ifndef POLICY_CONV_H
#define POLICY_CONV_H

/*
 * Internal to the policy module: requests to Lua tables and the scripts'
 * results back to C, checked.  Every function raises its errors (the
 * message says which field and why), so all of them run inside a
 * lua_pcall'ed C function.  Results are read with raw access: converting
 * never runs script code.
 */

#include <lua.h>

#include "policy.h"

/* Pushes the req table of docs/lua-api.md. */
void	conv_push_req(lua_State *L, const struct policy_req *req);

/*
 * canAccept's results are the values from stack index first to the top
 * (none when first > top).
 */
void	conv_verdict(lua_State *L, int first, struct policy_verdict *v);

/*
 * getTunnelInfo's results, from first to the top: 0 with *t filled
 * from a table, or 1 with the refusal message (cut to msglen - 1 bytes)
 * in msg for nil/false.  *t may hold secrets after an error: cleanse it.
 */
int	conv_tunnel_result(lua_State *L, int first, struct policy_tunnel *t,
	    char *msg, size_t msglen);

/* Pushes onEndTunnel's info table: t without its secrets. */
void	conv_push_info(lua_State *L, const struct policy_tunnel *t);

#endif
