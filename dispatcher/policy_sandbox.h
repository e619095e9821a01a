#ifndef POLICY_SANDBOX_H
#define POLICY_SANDBOX_H

/*
 * Internal to the policy module: restricted lua_States with a capped
 * allocator and an instruction budget (DESIGN "script safety").
 *
 * Every function that may raise a Lua error says so; those run only
 * inside a lua_pcall'ed C function, because an error outside one would
 * end in Lua's panic, i.e. abort().
 */

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

#include <lua.h>

struct sandbox {
	size_t		 mem_used;
	size_t		 mem_limit;
	unsigned long	 insn_used;	/* per call, in hook steps */
	unsigned long	 insn_limit;
	int		 insn_step;	/* instructions between two hooks */
	int		 budget_hit;	/* sticky until sandbox_reset() */
	int		 mem_hit;	/* sticky until sandbox_reset() */
	int		 quiet;		/* dry runs: log() discards */
	int		 time_hit;	/* sticky until sandbox_reset() */
	unsigned long	 time_ms;	/* wall-clock budget per call */
	uint64_t	 deadline;	/* CLOCK_MONOTONIC ns, while armed */
	atomic_int	 expired;	/* set by the watchdog thread */
	lua_State	*L;
	struct sandbox	*wd_next;	/* the watchdog's list, while armed */
	struct sandbox	*wd_prev;
	char		 where[96];	/* "file:line" the budget ran out at */
};

/*
 * A state allocating through sb (limit mem bytes), with a count hook
 * enforcing insn instructions per call when insn > 0, and time_ms
 * milliseconds of wall-clock time per armed call when time_ms > 0.  NULL
 * if even the state did not fit.  Close it with lua_close(); sb must
 * outlive it.
 */
lua_State	*sandbox_new(struct sandbox *sb, size_t mem,
		    unsigned long insn, unsigned long time_ms);

/* Clears the budget and the sticky flags before a call. */
void	sandbox_reset(struct sandbox *sb);

/*
 * Starts the wall-clock budget of one call on L: from now, the count
 * hook and sandbox_charge() raise once it is past, and the watchdog
 * thread (started at the first call) forces a hook on every instruction,
 * call and return of a call still running then.  Pair with
 * sandbox_disarm() before L is used by another call or closed.
 */
void	sandbox_arm(lua_State *L);
void	sandbox_disarm(lua_State *L);

/*
 * Charges n instructions' worth of work done in C to the running call
 * (policy_lib.c): raises "instruction budget exceeded" when it does not
 * fit, or "time budget exceeded" once the watchdog expired the call,
 * both uncatchable by the script like the hook's (raises).
 */
void	sandbox_charge(lua_State *L, unsigned long n);

/* Instructions left in the running call's budget; ULONG_MAX: no budget. */
unsigned long	sandbox_insn_left(lua_State *L);

/* Bytes the state may still allocate under its cap. */
size_t	sandbox_mem_left(lua_State *L);

/* Installs the restricted globals in L (raises). */
void	sandbox_openlibs(lua_State *L);

/*
 * Loads a chunk compiled by sandbox_compile() and leaves its function on
 * the stack (raises).
 */
void	sandbox_loadcode(lua_State *L, const char *code, size_t len);

/*
 * Like lua_call(L, nargs, nresults), but an error gets a traceback from
 * the message handler and memory errors are noted in the sandbox before
 * the error goes on (raises).
 */
void	sandbox_call(lua_State *L, int nargs, int nresults);

/*
 * After the outer lua_pcall() of one call: 0 if it succeeded and neither
 * cap was hit, else -1 with a one-line reason in err; pops an error
 * message.
 */
int	sandbox_result(lua_State *L, int status, char *err);

/*
 * Compiles the Lua source file at path (text only) to bytecode with
 * debug information, so errors still name the file and line.  Returns 0
 * with *code (malloc'ed) and *len, or -1 with err.
 */
int	sandbox_compile(const char *path, char **code, size_t *len,
	    char *err);

/* Copies a Lua message to err on one line: newlines, tabs become text. */
void	sandbox_errcpy(char *err, const char *msg);

#endif
