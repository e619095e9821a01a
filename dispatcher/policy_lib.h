#ifndef POLICY_LIB_H
#define POLICY_LIB_H

/*
 * Internal to the policy module: the standard library functions that
 * loop in C over a count, a range or a pattern the script chose, with
 * each loop charged to the call's instruction budget (docs/lua-api.md
 * "Limits").
 */

#include <lua.h>

/*
 * Replaces, in the string, table and utf8 tables of the globals at
 * index g, the functions that loop in C by bounded ones (raises).  The
 * string metatable's __index is the string table, so s:rep() is bounded
 * too.  Needs a state made by sandbox_new().
 */
void	plib_install(lua_State *L, int g);

#endif
