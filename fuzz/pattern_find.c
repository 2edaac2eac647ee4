/*
 * pattern_find.c: host/pattern.c against Lua's own string.find. Input: a
 * byte giving the pattern's length (at most 40) and the start offset, the
 * pattern, then the subject (at most 200 bytes, so that a backtracking
 * pattern cannot take the fuzzer's time on either side). Both must give
 * the same answer (tests/unit/pattern_lua.c says what that means); an
 * error of Lua's that is no pattern error ("C stack overflow") is no
 * verdict. Lua allows 32 captures and pattern.c 16 (pattern.h): a
 * pattern with more than 16 '(' is left out, and so is one with more than
 * three quantifiers: both sides backtrack as Lua does, exponentially in
 * them ("a*a*a*a*a*b"), which says nothing of either.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

#include "fuzz.h"
#include "pattern_lua.h"

static lua_State *L;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in_t in = {data, size};
    unsigned head = fz_byte(&in);
    size_t lp, ls, init, i, opens, quants;
    const char *p, *s;
    char why[512];
    int answer, res;
    if (L == NULL) {
        L = luaL_newstate();
        FZ_CHECK(L != NULL, "no Lua state");
        luaL_openlibs(L);
        lua_getglobal(L, "string");
        lua_getfield(L, -1, "find");
        lua_remove(L, -2); /* string.find at index 1 */
    }
    p = fz_take(&in, head % 41, &lp);
    s = fz_take(&in, in.n < 200 ? in.n : 200, &ls);
    init = (head / 41) % 4 == 3 ? ls / 2 : 0;
    for (i = 0, opens = 0, quants = 0; i < lp; i++) {
        opens += p[i] == '(';
        quants += p[i] == '*' || p[i] == '+' || p[i] == '-' || p[i] == '?';
    }
    if (opens > ATH_PAT_MAXCAPTURES || quants > 3)
        return 0;
    res = pl_versus(L, 1, s, ls, p, lp, init, &answer, why, sizeof why);
    if (res == PL_FAIL) {
        fprintf(stderr, "pattern [%.*s] (%zu bytes) subject of %zu bytes, "
                "init %zu\n", (int)lp, p, lp, ls, init);
        FZ_CHECK(0, "differs from string.find: %s", why);
    }
    return 0;
}
