/*
 * lua_target.c: a harness for code written in Lua (the HTTP/1.1 and MQTT
 * 3.1.1 codecs, the virtual modems' AT parser). Built once per target
 * with -DFUZZ_TARGET='"name"': fuzz/name.lua returns a function that takes
 * the input bytes, drives the Lua code and raises when an invariant
 * breaks; a clean parse error is for the script to accept. Any Lua error
 * that reaches this file is a crash.
 *
 * The Lua interpreter is the system's, not instrumented, so libFuzzer
 * would see no coverage of the Lua code: a line hook feeds it instead,
 * one counter per (previous line, line) pair of the Lua sources, in the
 * extra-counters section libFuzzer reads.
 */
#include <lauxlib.h>
#include <lualib.h>
#include <string.h>

#include "fuzz.h"

#ifndef FUZZ_TARGET
#error "build with -DFUZZ_TARGET='\"name\"'"
#endif
#ifndef FUZZ_ROOT
#error "build with -DFUZZ_ROOT='\"/path/to/athost\"'"
#endif

#define NCOUNTERS (1u << 16)

__attribute__((used, section("__libfuzzer_extra_counters")))
static uint8_t lua_edges[NCOUNTERS];

static lua_State *L;
static int fn_ref = LUA_NOREF;
static uintptr_t prev_loc;

static void line_hook(lua_State *H, lua_Debug *ar)
{
    uintptr_t loc;
    if (!lua_getinfo(H, "S", ar))
        return;
    loc = ((uintptr_t)ar->source * 2654435761u) ^ (uintptr_t)ar->currentline;
    loc = (loc ^ (loc >> 16)) & (NCOUNTERS - 1);
    lua_edges[(loc ^ prev_loc) & (NCOUNTERS - 1)]++;
    prev_loc = loc >> 1;
}

static int traceback(lua_State *H)
{
    const char *msg = lua_tostring(H, 1);
    luaL_traceback(H, H, msg ? msg : "(error object is not a string)", 1);
    return 1;
}

static void setup(void)
{
    L = luaL_newstate();
    FZ_CHECK(L != NULL, "no Lua state");
    luaL_openlibs(L);
    lua_getglobal(L, "package");
    lua_pushstring(L, FUZZ_ROOT "/fuzz/?.lua;" FUZZ_ROOT "/lib/?.lua");
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    lua_pushcfunction(L, traceback);
    if (luaL_loadfile(L, FUZZ_ROOT "/fuzz/" FUZZ_TARGET ".lua") != LUA_OK ||
        lua_pcall(L, 0, 1, 1) != LUA_OK || !lua_isfunction(L, -1))
        FZ_CHECK(0, "fuzz/%s.lua: %s", FUZZ_TARGET,
                 lua_isstring(L, -1) ? lua_tostring(L, -1)
                                     : "does not return a function");
    fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (getenv("FUZZ_NOHOOK") == NULL)
        lua_sethook(L, line_hook, LUA_MASKLINE, 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int top;
    if (L == NULL)
        setup();
    top = lua_gettop(L); /* the traceback function */
    prev_loc = 0;
    lua_rawgeti(L, LUA_REGISTRYINDEX, fn_ref);
    lua_pushlstring(L, (const char *)data, size);
    if (lua_pcall(L, 1, 0, top) != LUA_OK)
        FZ_CHECK(0, "fuzz/%s.lua: %s", FUZZ_TARGET, lua_tostring(L, -1));
    lua_settop(L, top);
    return 0;
}
