// unit: host/lalloc.c
/*
 * lalloc_test.c: the state's allocator (host/lalloc.c): objects that grow
 * and shrink across the pools' size classes and out of them keep their
 * contents through collections; a payload block still becomes its
 * string uncopied; warnings and their "@on"/"@off" as luaL_newstate's.
 */
#include "host.h"

#include <lauxlib.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* Strings of every length from 1 to 700 bytes, tables grown to 400
 * entries and shrunk by collections, kept and dropped in turns: each one
 * is checked against what it was made of. */
static const char *workload =
    "local function mk(i) return string.rep(string.char(65 + i % 26), i) end\n"
    "local keep = {}\n"
    "for round = 1, 4 do\n"
    "  for i = 1, 700 do keep[i] = mk(i + round) end\n"
    "  local t = {}\n"
    "  for i = 1, 400 do t[i] = i * round; t['k' .. i] = mk(i % 50 + 1) end\n"
    "  collectgarbage()\n"
    "  for i = 1, 700 do assert(keep[i] == mk(i + round), 'string ' .. i) end\n"
    "  for i = 1, 400 do\n"
    "    assert(t[i] == i * round, 'array ' .. i)\n"
    "    assert(t['k' .. i] == mk(i % 50 + 1), 'hash ' .. i)\n"
    "  end\n"
    "  for i = 1, 700, 2 do keep[i] = nil end\n"
    "  for i = 400, 1, -1 do t[i] = nil; t['k' .. i] = nil end\n"
    "  collectgarbage()\n"
    "  for i = 2, 700, 2 do assert(keep[i] == mk(i + round), 'kept ' .. i) end\n"
    "end\n"
    "local big = {}\n"
    "for i = 1, 5000 do big[i] = {i} end\n"
    "big = nil\n"
    "collectgarbage()\n"
    "return 'ok'\n";

static void test_workload(void)
{
    lua_State *L = ath_lua_newstate();
    CHECK(L != NULL, "ath_lua_newstate");
    if (L == NULL)
        return;
    luaL_openlibs(L);
    if (luaL_dostring(L, workload) != LUA_OK)
        fprintf(stderr, "workload: %s\n", lua_tostring(L, -1));
    CHECK(lua_isstring(L, -1) && strcmp(lua_tostring(L, -1), "ok") == 0,
          "objects across the size classes keep their contents");
    ath_lua_close(L);
}

static void test_taken(void)
{
    lua_State *L = ath_lua_newstate();
    size_t front, n = (size_t)2 << 20, len = 0;
    char *blk;
    const char *s;
    if (L == NULL)
        return;
    front = ath_lua_front(L);
    CHECK(front > 0 && front <= 64, "the probe finds where a string's bytes begin");
    blk = malloc(front + n + 1);
    if (blk == NULL) {
        ath_lua_close(L);
        return;
    }
    memset(blk + front, 'p', n);
    ath_lua_pushtaken(L, blk, n);
    s = lua_tolstring(L, -1, &len);
    CHECK(len == n && s == blk + front && s[0] == 'p' && s[n - 1] == 'p',
          "a 2 MiB block becomes its string without a copy");
    lua_pop(L, 1);
    lua_gc(L, LUA_GCCOLLECT);
    ath_lua_close(L);
}

/* Lua's warnings on stderr, as a file: what `chunk` printed. */
static char *warned(const char *chunk)
{
    static char out[256];
    FILE *f = tmpfile();
    int saved = dup(2);
    size_t n;
    lua_State *L = ath_lua_newstate();
    out[0] = '\0';
    if (f == NULL || saved < 0 || L == NULL) {
        if (f)
            fclose(f);
        if (saved >= 0)
            close(saved);
        if (L)
            ath_lua_close(L);
        return out;
    }
    luaL_openlibs(L);
    fflush(stderr);
    dup2(fileno(f), 2);
    (void)luaL_dostring(L, chunk);
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    rewind(f);
    n = fread(out, 1, sizeof out - 1, f);
    out[n] = '\0';
    fclose(f);
    ath_lua_close(L);
    return out;
}

static void test_warnings(void)
{
    CHECK(strcmp(warned("warn('unheard')"), "") == 0,
          "warnings are off by default");
    CHECK(strcmp(warned("warn('@on') warn('a', 'b') warn('@off') warn('c')"),
                 "Lua warning: ab\n") == 0,
          "@on, a warning in pieces, @off");
}

int main(void)
{
    test_workload();
    test_taken();
    test_warnings();
    printf("lalloc_test: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
