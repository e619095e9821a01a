/*
 * The library functions a policy can make loop in C, bounded
 * (docs/lua-api.md "Limits").  The count hook only runs between VM
 * instructions, so a C loop over a count, a range or a pattern the
 * script chose (string.rep("", 2^62), table.move({}, 1,
 * math.maxinteger - 1, 2), a backtracking pattern) would never meet it.
 *
 * string.rep is ours.  The other functions are wrappers: each checks
 * its arguments, charges an upper bound of the loop's work to the call's
 * instruction budget (sandbox_charge(), which also stops a call the
 * watchdog expired) before the loop starts, refuses work past a fixed
 * cap, and then calls Lua's own function, kept as its upvalue.  The
 * bound has to hold for whatever the original then does, hence:
 *  - the table functions refuse a table whose metatable has __len,
 *    __index or __newindex: the length checked here (lua_rawlen) is then
 *    the one the original's loop uses (a stateful __len can not answer
 *    the check and the loop differently), and no element access runs
 *    code of its own;
 *  - the pattern functions charge a worst-case estimate computed from
 *    the pattern's structure alone (plib_cost()).
 */

#include <ctype.h>
#include <limits.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <lua.h>
#include <lauxlib.h>

#include "policy_lib.h"
#include "policy_sandbox.h"

/* Elements one table function may loop over, whatever the budget. */
#define PLIB_MAX_ELEMS	1000000
/* Estimated matcher steps one pattern call may take, whatever the budget. */
#define PLIB_MAX_STEPS	100000000ULL
/* string.rep: copies per instruction charged (a copy is a memcpy). */
#define PLIB_REP_PER	64
/* Plain search: bytes compared per instruction charged. */
#define PLIB_CMP_PER	64
/* gsub: replacement bytes scanned per instruction charged, per match. */
#define PLIB_REPL_PER	8
/* A [set] longer than this is taken as matching any byte (sound). */
#define PLIB_SET_MAX	256

static uint64_t
plib_add(uint64_t a, uint64_t b)
{
	return a > UINT64_MAX - b ? UINT64_MAX : a + b;
}

static uint64_t
plib_mul(uint64_t a, uint64_t b)
{
	return b != 0 && a > UINT64_MAX / b ? UINT64_MAX : a * b;
}

/* Calls the original (upvalue 1) with this call's arguments. */
static int
plib_orig(lua_State *L)
{
	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
	return lua_gettop(L);
}

/*
 * Charges work instructions (raises the budget's error when they do not
 * fit), then refuses a loop over more than PLIB_MAX_ELEMS elements.
 */
static void
plib_elems(lua_State *L, uint64_t count, uint64_t work)
{
	sandbox_charge(L, work > ULONG_MAX ? ULONG_MAX : (unsigned long)work);
	if (count > PLIB_MAX_ELEMS)
		luaL_error(L, "too many elements (%I, at most %d)",
		    (lua_Integer)(count > (uint64_t)LUA_MAXINTEGER ?
		    (uint64_t)LUA_MAXINTEGER : count), PLIB_MAX_ELEMS);
}

/* Number of integers in [i, j], saturated. */
static uint64_t
plib_span(lua_Integer i, lua_Integer j)
{
	uint64_t	 d;

	if (i > j)
		return 0;
	d = (uint64_t)j - (uint64_t)i;
	return plib_add(d, 1);
}

/*
 * string.rep(s, n [, sep]).  Lua's loops n times, even for an empty
 * result; this one fills the result by doubling, O(log n) memcpy calls,
 * after allocating it (so the memory cap bounds it).  The repetitions
 * are charged, one instruction per PLIB_REP_PER, an empty result's too:
 * the charge is the same whatever the strings.
 */
static int
plib_rep(lua_State *L)
{
	luaL_Buffer	 b;
	const char	*s, *sep;
	size_t		 l, lsep, u, total, filled, k;
	lua_Integer	 n;
	char		*p;

	s = luaL_checklstring(L, 1, &l);
	n = luaL_checkinteger(L, 2);
	sep = luaL_optlstring(L, 3, "", &lsep);
	if (n <= 0) {
		lua_pushliteral(L, "");
		return 1;
	}
	u = l + lsep;
	if (u < l || u > (size_t)INT_MAX / (lua_Unsigned)n)
		return luaL_error(L, "resulting string too large");
	/* A result over the memory cap fails with the memory error. */
	if (u <= sandbox_mem_left(L) / (lua_Unsigned)n)
		sandbox_charge(L, (unsigned long)((lua_Unsigned)n /
		    PLIB_REP_PER));
	if (u == 0) {
		lua_pushliteral(L, "");
		return 1;
	}
	total = (size_t)n * l + (size_t)(n - 1) * lsep;
	p = luaL_buffinitsize(L, &b, total);
	/* The result is the first total bytes of (s .. sep) repeated. */
	memcpy(p, s, l);
	filled = l;
	if (n > 1) {
		memcpy(p + l, sep, lsep);
		filled = u;
	}
	while (filled < total) {
		k = filled < total - filled ? filled : total - filled;
		memcpy(p + filled, p, k);
		filled += k;
	}
	luaL_pushresultsize(&b, total);
	return 1;
}

/*
 * Functions that return one value per element: Lua's stack limit bounds
 * their loop; charge it afterwards, so the work counts.
 */
static int
plib_charged_results(lua_State *L)
{
	int	 n;

	lua_pushvalue(L, lua_upvalueindex(1));
	lua_insert(L, 1);
	lua_call(L, lua_gettop(L) - 1, LUA_MULTRET);
	n = lua_gettop(L);
	sandbox_charge(L, (unsigned long)n);
	return n;
}

/*
 * {==== table functions ====
 * Each loops over a range of the table's elements; the wrappers charge
 * one instruction per element (sort: per comparison), as the VM would
 * for the same loop in Lua.
 */

/* Raises unless arg is a table without __len, __index, __newindex. */
static void
plib_plain_table(lua_State *L, int arg)
{
	static const char *const mm[] = { "__len", "__index", "__newindex" };
	size_t	 i;

	luaL_checktype(L, arg, LUA_TTABLE);
	if (!lua_getmetatable(L, arg))
		return;
	for (i = 0; i < sizeof(mm) / sizeof(mm[0]); i++) {
		lua_pushstring(L, mm[i]);
		if (lua_rawget(L, -2) != LUA_TNIL)
			luaL_argerror(L, arg, lua_pushfstring(L,
			    "table with a %s metamethod not allowed", mm[i]));
		lua_pop(L, 1);
	}
	lua_pop(L, 1);
}

static uint64_t
plib_len(lua_State *L, int arg)
{
	return (uint64_t)lua_rawlen(L, arg);
}

static int
plib_concat(lua_State *L)
{
	lua_Integer	 i, j;
	uint64_t	 n;

	plib_plain_table(L, 1);
	(void)luaL_optlstring(L, 2, "", NULL);
	i = luaL_optinteger(L, 3, 1);
	j = lua_isnoneornil(L, 4) ? (lua_Integer)plib_len(L, 1) :
	    luaL_checkinteger(L, 4);
	n = plib_span(i, j);
	plib_elems(L, n, n);
	return plib_orig(L);
}

static int
plib_insert(lua_State *L)
{
	uint64_t	 size, pos, n = 1;

	plib_plain_table(L, 1);
	size = plib_len(L, 1);
	if (lua_gettop(L) == 3) {
		/* Lua shifts t[pos..#t] up by one. */
		pos = (uint64_t)luaL_checkinteger(L, 2);
		luaL_argcheck(L, pos - 1u < size + 1u, 2,
		    "position out of bounds");
		n = size - pos + 2;
	}
	plib_elems(L, n, n);
	return plib_orig(L);
}

static int
plib_remove(lua_State *L)
{
	uint64_t	 size, pos, n = 1;

	plib_plain_table(L, 1);
	size = plib_len(L, 1);
	pos = (uint64_t)luaL_optinteger(L, 2, (lua_Integer)size);
	if (pos != size)
		luaL_argcheck(L, pos - 1u <= size, 2,
		    "position out of bounds");
	/* Lua shifts t[pos + 1..#t] down by one. */
	if (pos >= 1 && pos <= size)
		n = size - pos + 1;
	plib_elems(L, n, n);
	return plib_orig(L);
}

static int
plib_move(lua_State *L)
{
	lua_Integer	 f, e;
	uint64_t	 n;

	plib_plain_table(L, 1);
	f = luaL_checkinteger(L, 2);
	e = luaL_checkinteger(L, 3);
	(void)luaL_checkinteger(L, 4);
	if (!lua_isnoneornil(L, 5))
		plib_plain_table(L, 5);
	n = plib_span(f, e);
	plib_elems(L, n, n);
	return plib_orig(L);
}

static int
plib_unpack(lua_State *L)
{
	lua_Integer	 i, j;
	uint64_t	 n;

	plib_plain_table(L, 1);
	i = luaL_optinteger(L, 2, 1);
	j = lua_isnoneornil(L, 3) ? (lua_Integer)plib_len(L, 1) :
	    luaL_checkinteger(L, 3);
	/* Lua's stack limit refuses more than about 10^6 results too. */
	n = plib_span(i, j);
	plib_elems(L, n, n);
	return plib_orig(L);
}

static int
plib_sort(lua_State *L)
{
	uint64_t	 n, k, bits = 1;

	plib_plain_table(L, 1);
	if (!lua_isnoneornil(L, 2))
		luaL_checktype(L, 2, LUA_TFUNCTION);
	n = plib_len(L, 1);
	/*
	 * Lua's quicksort picks random pivots once partitions go lopsided:
	 * n log2 n comparisons, a comp in Lua being counted besides.
	 */
	for (k = n; k > 1; k >>= 1)
		bits++;
	plib_elems(L, n, plib_mul(n, bits));
	return plib_orig(L);
}
/* }==== */

/*
 * {==== pattern functions ====
 * Lua's matcher backtracks.  From one subject position, an item costs
 * its own test and then what the rest of the pattern costs: once for a
 * plain item, capture or %f, twice for x?, and up to n + 1 times for
 * x*, x+, x- (one try of the rest per length), so k such quantifiers
 * cost O(n^k) per position, and an unanchored search tries n + 1
 * positions.  plib_cost() composes those bounds item by item, with
 * saturating arithmetic, and sharpens two common cases that are linear:
 *  - x*, x+, x- followed (after captures) by an item y that must consume
 *    a byte of a set disjoint from x's: a try of the rest at a length
 *    short of the longest fails at y at once, and only the last try
 *    runs the whole rest;
 *  - x*, x+, x- followed by nothing but captures: the first try
 *    succeeds.
 * plib_search_cost() adds the positions, and amortises the first
 * quantifier over them when what precedes it has a fixed length and
 * either ends in a set disjoint from x's (the runs of x the positions
 * scan can then not overlap) or nothing but captures follows it (a
 * search resumes past the run it matched).
 */

enum { PK_CLASS, PK_CAP, PK_END, PK_BAL, PK_FRONT, PK_BACKREF };

struct plib_item {
	const char	*p;	/* the item, its quantifier not included */
	size_t		 len;
	int		 kind;
	int		 quant;	/* '*', '+', '-', '?' or 0 */
	int		 open;	/* a [set] without its ']' */
};

typedef unsigned char	plib_bits[32];

/* Past the ']' closing the [set] at p, or NULL when there is none. */
static const char *
plib_set_end(const char *p, const char *e)
{
	int	 first = 1;

	p++;
	if (p < e && *p == '^')
		p++;
	/* A ']' right after '[' or '[^' is a member. */
	for (; p < e; first = 0) {
		if (*p == ']' && !first)
			return p + 1;
		p += *p == '%' && p + 1 < e ? 2 : 1;
	}
	return NULL;
}

/* Reads the item at p (p < e) into *it; returns where the next starts. */
static const char *
plib_item(const char *p, const char *e, struct plib_item *it)
{
	const char	*q = p + 1;

	memset(it, 0, sizeof(*it));
	it->p = p;
	it->kind = PK_CLASS;
	if (*p == '(' || *p == ')')
		it->kind = PK_CAP;
	else if (*p == '$' && q == e)
		it->kind = PK_END;
	else if (*p == '%' && q < e && *q == 'b') {
		it->kind = PK_BAL;
		q = e - q > 3 ? q + 3 : e;
	} else if (*p == '%' && q < e && *q == 'f') {
		it->kind = PK_FRONT;
		q++;
		if (q < e && *q == '[' && (q = plib_set_end(q, e)) == NULL)
			q = e;
		else if (q < e && *q != '[')
			q++;
	} else if (*p == '%' && q < e && isdigit((unsigned char)*q)) {
		it->kind = PK_BACKREF;
		q++;
	} else if (*p == '%')
		q = q < e ? q + 1 : e;
	else if (*p == '[' && (q = plib_set_end(p, e)) == NULL) {
		q = e;
		it->open = 1;
	}
	it->len = (size_t)(q - p);
	if (it->kind == PK_CLASS && q < e && *q != '\0' &&
	    strchr("*+-?", *q) != NULL)
		it->quant = *q++;
	return q;
}

/* Whether byte c is in the class %cl. */
static int
plib_class_has(int cl, int c)
{
	int	 r;

	switch (tolower(cl)) {
	case 'a': r = isalpha(c); break;
	case 'c': r = iscntrl(c); break;
	case 'd': r = isdigit(c); break;
	case 'g': r = isgraph(c); break;
	case 'l': r = islower(c); break;
	case 'p': r = ispunct(c); break;
	case 's': r = isspace(c); break;
	case 'u': r = isupper(c); break;
	case 'w': r = isalnum(c); break;
	case 'x': r = isxdigit(c); break;
	default: return cl == c;
	}
	return isupper(cl) ? r == 0 : r != 0;
}

static void
plib_set_add(plib_bits s, int lo, int hi, int cl)
{
	int	 c;

	for (c = lo; c <= hi; c++)
		if (cl == 0 || plib_class_has(cl, c))
			s[c >> 3] |= (unsigned char)(1u << (c & 7));
}

/* The bytes a single-byte class item may match (a superset is sound). */
static void
plib_item_set(const struct plib_item *it, plib_bits s)
{
	const unsigned char	*p = (const unsigned char *)it->p;
	const unsigned char	*ec = p + it->len - 1;	/* a set's ']' */
	int			 i, neg = 0;

	memset(s, 0, sizeof(plib_bits));
	if (*p == '.' || it->open || it->len > PLIB_SET_MAX ||
	    (*p == '%' && it->len < 2)) {
		memset(s, 0xff, sizeof(plib_bits));
		return;
	}
	if (*p == '%') {
		plib_set_add(s, 0, 255, p[1]);
		return;
	}
	if (*p != '[') {
		plib_set_add(s, *p, *p, 0);
		return;
	}
	if (*++p == '^') {
		neg = 1;
		p++;
	}
	while (p < ec) {
		if (*p == '%') {
			plib_set_add(s, 0, 255, p[1]);
			p += 2;
		} else if (p + 2 < ec && p[1] == '-') {
			plib_set_add(s, p[0], p[2], 0);
			p += 3;
		} else {
			plib_set_add(s, *p, *p, 0);
			p++;
		}
	}
	if (neg)
		for (i = 0; i < (int)sizeof(plib_bits); i++)
			s[i] = (unsigned char)~s[i];
}

static int
plib_disjoint(const struct plib_item *a, const struct plib_item *b)
{
	plib_bits	 sa, sb;
	size_t		 i;

	plib_item_set(a, sa);
	plib_item_set(b, sb);
	for (i = 0; i < sizeof(sa); i++)
		if (sa[i] & sb[i])
			return 0;
	return 1;
}

/*
 * What follows the quantified item x, the rest starting at p: 1 if only
 * captures (the first try of the rest succeeds), 2 if an item that must
 * consume a byte outside x's set (*t: the cost of failing there), else 0.
 */
static int
plib_next(const struct plib_item *x, const char *p, const char *e,
    uint64_t *t)
{
	struct plib_item	 y;

	for (*t = 0; p < e; *t = plib_add(*t, y.len)) {
		p = plib_item(p, e, &y);
		if (y.kind == PK_CAP)
			continue;
		if (y.kind == PK_BAL && y.len == 4) {
			/* %bxy fails at once on a byte other than x. */
			y.kind = PK_CLASS;
			y.p += 2;
			y.len = 1;
		}
		if (y.kind != PK_CLASS || (y.quant != 0 && y.quant != '+'))
			return 0;
		*t = plib_add(*t, y.len);
		return plib_disjoint(x, &y) ? 2 : 0;
	}
	return 1;
}

/*
 * Upper bound of the matcher's steps for the items [p, e) from one
 * subject position, n the subject's length.  Item i costs a_i + b_i *
 * (the rest), composed as A + B * (the rest); the end costs 1.
 */
static uint64_t
plib_cost(const char *p, const char *e, uint64_t n)
{
	struct plib_item	 it;
	uint64_t		 A = 0, B = 1, a, b, t, np1 = n + 1;
	const char		*q;

	for (; p < e; p = q) {
		q = plib_item(p, e, &it);
		a = it.len;
		b = 1;
		switch (it.kind) {
		case PK_CAP:
		case PK_END:
			a = 1;
			break;
		case PK_BAL:
			a = np1;
			break;
		case PK_FRONT:
			a = plib_mul(2, it.len);
			break;
		case PK_BACKREF:
			a = n / 16 + 1;
			break;
		default:
			if (it.quant == '?')
				b = 2;
			else if (it.quant != 0) {
				switch (plib_next(&it, q, e, &t)) {
				case 2:
					a = plib_mul(np1, plib_add(it.len, t));
					break;
				case 1:
					a = plib_mul(np1, it.len);
					break;
				default:
					a = plib_mul(np1, it.len);
					b = np1;
				}
			}
		}
		A = plib_add(A, plib_mul(B, a));
		B = plib_mul(B, b);
	}
	return plib_add(A, B);
}

/* The bound over every start position of an unanchored search. */
static uint64_t
plib_search_cost(const char *p, const char *e, uint64_t n)
{
	struct plib_item	 it, z;
	uint64_t		 np1 = n + 1, fix = 0, t, alt, best;
	const char		*q;
	int			 have_z = 0, next;

	best = plib_mul(np1, plib_cost(p, e, n));
	for (; p < e; p = q) {
		q = plib_item(p, e, &it);
		if (it.kind == PK_CAP) {
			fix = plib_add(fix, 1);
			continue;
		}
		if (it.kind != PK_CLASS || it.quant == '?')
			break;
		if (it.quant == 0) {
			fix = plib_add(fix, it.len);
			z = it;
			have_z = 1;
			continue;
		}
		/*
		 * The scans of x's runs add up to n + 1 tests, their tries of
		 * the rest to 2(n + 1) (one per length, one per position).
		 */
		next = plib_next(&it, q, e, &t);
		if (next == 1 || (have_z && plib_disjoint(&z, &it))) {
			alt = plib_add(plib_mul(np1, plib_add(fix,
			    plib_mul(2, it.len))), plib_mul(plib_mul(2, np1),
			    plib_cost(q, e, n)));
			if (alt < best)
				best = alt;
		}
		break;
	}
	return best;
}

/* A pattern with none of Lua's special characters: a plain search. */
static int
plib_plain(const char *p, size_t lp)
{
	static const char	 specials[] = "^$*+?.([%-";
	size_t			 i;

	for (i = 0; i < lp; i++)
		if (memchr(specials, p[i], sizeof(specials) - 1) != NULL)
			return 0;
	return 1;
}

/*
 * Charges the bound of matching p against a subject of ls bytes, plus
 * extra, or raises "pattern too complex" (catchable: nothing ran yet).
 */
static void
plib_pat_charge(lua_State *L, const char *p, size_t lp, size_t ls,
    int anchor, uint64_t extra)
{
	uint64_t	 est;

	if (anchor && lp > 0 && *p == '^')
		est = plib_cost(p + 1, p + lp, ls);
	else
		est = plib_search_cost(p, p + lp, ls);
	est = plib_add(plib_add(est, extra), lp / 16 + 1);
	if (est > PLIB_MAX_STEPS || est > sandbox_insn_left(L))
		luaL_error(L, "pattern too complex for a subject of %I bytes",
		    (lua_Integer)ls);
	sandbox_charge(L, (unsigned long)est);
}

/* string.find and string.match. */
static int
plib_find_aux(lua_State *L, int find)
{
	const char	*p;
	size_t		 ls, lp;
	uint64_t	 w;

	(void)luaL_checklstring(L, 1, &ls);
	p = luaL_checklstring(L, 2, &lp);
	(void)luaL_optinteger(L, 3, 1);
	if (find && (lua_toboolean(L, 4) || plib_plain(p, lp))) {
		/* Each candidate position compares up to lp bytes. */
		w = plib_add(plib_mul(ls, lp) / PLIB_CMP_PER, 1);
		plib_elems(L, 0, w);
	} else
		plib_pat_charge(L, p, lp, ls, 1, 0);
	return plib_orig(L);
}

static int
plib_find(lua_State *L)
{
	return plib_find_aux(L, 1);
}

static int
plib_match(lua_State *L)
{
	return plib_find_aux(L, 0);
}

/*
 * string.gmatch: the whole iteration is charged when the iterator is
 * made (its positions are those of one unanchored search; '^' is no
 * anchor there).
 */
static int
plib_gmatch(lua_State *L)
{
	const char	*p;
	size_t		 ls, lp;

	(void)luaL_checklstring(L, 1, &ls);
	p = luaL_checklstring(L, 2, &lp);
	(void)luaL_optinteger(L, 3, 1);
	plib_pat_charge(L, p, lp, ls, 0, 0);
	return plib_orig(L);
}

/* string.gsub: a string replacement is scanned once per match. */
static int
plib_gsub(lua_State *L)
{
	const char	*p;
	size_t		 ls, lp, lr = 0;
	int		 tr;

	(void)luaL_checklstring(L, 1, &ls);
	p = luaL_checklstring(L, 2, &lp);
	tr = lua_type(L, 3);
	luaL_argexpected(L, tr == LUA_TNUMBER || tr == LUA_TSTRING ||
	    tr == LUA_TFUNCTION || tr == LUA_TTABLE, 3,
	    "string/function/table");
	if (tr == LUA_TSTRING)
		(void)lua_tolstring(L, 3, &lr);
	(void)luaL_optinteger(L, 4, 0);
	plib_pat_charge(L, p, lp, ls, 1,
	    plib_mul((uint64_t)ls + 1, lr / PLIB_REPL_PER + 1));
	return plib_orig(L);
}
/* }==== */

/* Sets t[name] = f, f a closure over the previous t[name] if wrap. */
static void
plib_set(lua_State *L, int t, const char *name, lua_CFunction f, int wrap)
{
	t = lua_absindex(L, t);
	if (wrap) {
		lua_getfield(L, t, name);
		lua_pushcclosure(L, f, 1);
	} else
		lua_pushcfunction(L, f);
	lua_setfield(L, t, name);
}

void
plib_install(lua_State *L, int g)
{
	g = lua_absindex(L, g);
	luaL_checkstack(L, 4, NULL);
	if (lua_getfield(L, g, "string") == LUA_TTABLE) {
		plib_set(L, -1, "rep", plib_rep, 0);
		plib_set(L, -1, "byte", plib_charged_results, 1);
		plib_set(L, -1, "find", plib_find, 1);
		plib_set(L, -1, "match", plib_match, 1);
		plib_set(L, -1, "gmatch", plib_gmatch, 1);
		plib_set(L, -1, "gsub", plib_gsub, 1);
	}
	lua_pop(L, 1);
	if (lua_getfield(L, g, "table") == LUA_TTABLE) {
		plib_set(L, -1, "concat", plib_concat, 1);
		plib_set(L, -1, "insert", plib_insert, 1);
		plib_set(L, -1, "remove", plib_remove, 1);
		plib_set(L, -1, "move", plib_move, 1);
		plib_set(L, -1, "unpack", plib_unpack, 1);
		plib_set(L, -1, "sort", plib_sort, 1);
	}
	lua_pop(L, 1);
	if (lua_getfield(L, g, "utf8") == LUA_TTABLE)
		plib_set(L, -1, "codepoint", plib_charged_results, 1);
	lua_pop(L, 1);
}
