/*
 * pattern_lua.c: host/pattern.c and the real string.find of Lua 5.4 on the
 * same bytes, compared: what tests/unit/pattern_test.c and the fuzz
 * harness fuzz/pattern_find.c share.
 */
#include "pattern_lua.h"

#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Whether msg is an error string.find raises for the pattern itself. */
static int is_pattern_error(const char *msg)
{
    static const char *const prefix[] = {
        "malformed pattern", "missing '[' after '%f'",
        "invalid capture index", "invalid pattern capture",
        "unfinished capture", "too many captures", "pattern too complex"
    };
    size_t i;

    for (i = 0; i < sizeof prefix / sizeof prefix[0]; i++)
        if (strncmp(msg, prefix[i], strlen(prefix[i])) == 0)
            return 1;
    return 0;
}

/* A heap copy of b[0, n) of exactly n bytes (1 if n is 0). */
char *pl_dup_exact(const char *b, size_t n)
{
    char *d = malloc(n ? n : 1);

    if (d == NULL) {
        perror("malloc");
        exit(2);
    }
    if (n > 0)
        memcpy(d, b, n);
    return d;
}

/* Lua raised msg: ours must fail with the same message, and so must
 * ath_pat_check() unless the error is the recursion limit. */
static int compare_error(const char *p, size_t lp, int rc, const char *err,
                         const char *msg, char *why, size_t nwhy)
{
    const char *cerr = NULL;
    int crc = ath_pat_check(p, lp, &cerr);

    if (!is_pattern_error(msg))
        return PL_SKIP;
    if (rc != -1 || strcmp(err, msg) != 0) {
        snprintf(why, nwhy, "Lua raised \"%s\", ours rc %d (%s)", msg, rc,
                 rc == -1 ? err : "-");
        return PL_FAIL;
    }
    if (strcmp(msg, "pattern too complex") != 0
        && (crc != -1 || strcmp(cerr, msg) != 0)) {
        snprintf(why, nwhy, "Lua raised \"%s\", ath_pat_check: %s", msg,
                 crc == 0 ? "valid" : cerr);
        return PL_FAIL;
    }
    return PL_PASS;
}

/* Lua returned the captures at stack indices first, first + 1, ...: ours
 * must be the same number, the same positions, the same bytes. */
static int compare_captures(lua_State *L, const char *s, size_t ls, const ath_match_t *m,
                            int first,
                            int ncap, char *why, size_t nwhy)
{
    int i;

    if (m->ncap != ncap) {
        snprintf(why, nwhy, "Lua %d captures, ours %d", ncap, m->ncap);
        return PL_FAIL;
    }
    for (i = 0; i < ncap; i++) {
        const ath_cap_t *c = &m->cap[i];
        size_t len;
        const char *str;
        if (lua_type(L, first + i) == LUA_TNUMBER) {
            if (c->len == ATH_CAP_POSITION
                && (lua_Integer)c->off + 1 == lua_tointeger(L, first + i))
                continue;
            snprintf(why, nwhy, "capture %d: Lua position %lld", i + 1,
                     (long long)lua_tointeger(L, first + i));
            return PL_FAIL;
        }
        str = lua_tolstring(L, first + i, &len);
        if (c->len < 0 || c->off + (size_t)c->len > ls
            || (size_t)c->len != len || memcmp(s + c->off, str, len) != 0) {
            snprintf(why, nwhy, "capture %d differs (ours off %zu len %td)",
                     i + 1, c->off, c->len);
            return PL_FAIL;
        }
    }
    return PL_PASS;
}

/*
 * Compares ours (rc, m, err) with string.find's results, which are on the
 * Lua stack above base (status is lua_pcall's). Writes why they differ into
 * why and returns PL_FAIL, or returns PL_PASS or PL_SKIP.
 */
static int compare(lua_State *L, const char *s, size_t ls, const char *p, size_t lp,
                   int rc, const ath_match_t *m, const char *err,
                   int status, int base, char *why, size_t nwhy)
{
    if (status != LUA_OK) {
        const char *msg = lua_tostring(L, -1);
        if (msg == NULL)
            return PL_SKIP;
        return compare_error(p, lp, rc, err, msg, why, nwhy);
    }
    if (rc == -1) {
        snprintf(why, nwhy, "Lua succeeded, ours raised \"%s\"", err);
        return PL_FAIL;
    }
    if (lua_isnil(L, base + 1)) {
        if (rc == 0)
            return PL_PASS;
        snprintf(why, nwhy, "Lua: no match, ours [%zu,%zu]", m->start + 1,
                 m->end);
        return PL_FAIL;
    }
    if (rc != 1) {
        snprintf(why, nwhy, "Lua matched at %lld, ours none",
                 (long long)lua_tointeger(L, base + 1));
        return PL_FAIL;
    }
    if ((lua_Integer)m->start + 1 != lua_tointeger(L, base + 1)
        || (lua_Integer)m->end != lua_tointeger(L, base + 2)) {
        snprintf(why, nwhy, "Lua [%lld,%lld], ours [%zu,%zu]",
                 (long long)lua_tointeger(L, base + 1),
                 (long long)lua_tointeger(L, base + 2), m->start + 1, m->end);
        return PL_FAIL;
    }
    return compare_captures(L, s, ls, m, base + 3, lua_gettop(L) - base - 2,
                            why, nwhy);
}

int pl_versus(lua_State *L, int find, const char *s0, size_t ls,
              const char *p0, size_t lp, size_t init, int *answer, char *why,
              size_t nwhy)
{
    char *s = pl_dup_exact(s0, ls), *p = pl_dup_exact(p0, lp);
    ath_match_t m;
    const char *err = NULL;
    int rc, base, status, res;

    memset(&m, 0, sizeof m);
    rc = ath_pat_find(s, ls, p, lp, init, &m, &err);
    base = lua_gettop(L);
    lua_pushvalue(L, find);
    lua_pushlstring(L, s, ls);
    lua_pushlstring(L, p, lp);
    lua_pushinteger(L, (lua_Integer)init + 1);
    status = lua_pcall(L, 3, LUA_MULTRET, 0);
    res = compare(L, s, ls, p, lp, rc, &m, err, status, base, why, nwhy);
    if (res == PL_SKIP)
        snprintf(why, nwhy, "Lua raised \"%s\"", lua_tostring(L, -1));
    *answer = status != LUA_OK ? -1 : !lua_isnil(L, base + 1);
    lua_settop(L, base);
    free(s);
    free(p);
    return res;
}
