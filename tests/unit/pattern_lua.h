/*
 * pattern_lua.h: ath_pat_find() against Lua's string.find (pattern_lua.c).
 */
#ifndef ATH_PATTERN_LUA_H
#define ATH_PATTERN_LUA_H

#include <lua.h>
#include <stddef.h>

#include "pattern.h"

enum { PL_PASS, PL_FAIL, PL_SKIP };

/* A heap copy of b[0, n) of exactly n bytes (1 if n is 0), so the
 * sanitizers catch a read past either end. */
char *pl_dup_exact(const char *b, size_t n);

/*
 * Runs ath_pat_find() and string.find(s, p, init + 1) (the function at
 * stack index find) on copies of exactly the subject's and the pattern's
 * length and compares them: no match, or the same start, end and
 * captures, or, where Lua raises a pattern error, -1 with Lua's message
 * (and ath_pat_check() rejecting the pattern with it too). Returns
 * PL_PASS, PL_FAIL with the difference in why, or PL_SKIP (Lua raised
 * something that is no pattern error, named in why). *answer is Lua's:
 * 1 a match, 0 none, -1 an error. Leaves L's stack as it was.
 */
int pl_versus(lua_State *L, int find, const char *s, size_t ls,
              const char *p, size_t lp, size_t init, int *answer, char *why,
              size_t nwhy);

#endif
