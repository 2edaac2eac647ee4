/*
 * flow.c: the scheduler. Flows are Lua coroutines. A flow that waits (on a
 * port, a timer, a task) yields from C; whatever ends the wait pushes the
 * results on the flow's stack and queues it with ath_host_wake().
 * ath_host_dispatch() is the one place that resumes coroutines, and every
 * libuv callback of the host ends by calling it. A flow's task table (in
 * the host's table of flows, h->flows_ref) holds its step, its outcome and
 * whoever joins it. Here too: the host of the running thread, and the end
 * of a run (finished, canceled, interrupted), which the Lua side and the
 * dispatcher reach without calling up into host.c.
 */
#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void ath_host_wake(ath_host_t *h, lua_State *co, int nargs)
{
    if (h->nready == h->readycap) {
        size_t ncap = h->readycap ? 2 * h->readycap : 16;
        ath_ready_t *nr = malloc(ncap * sizeof *nr);
        size_t i;
        if (nr == NULL)
            abort(); /* cannot queue a wake-up: nothing sane to do */
        for (i = 0; i < h->nready; i++)
            nr[i] = h->ready[(h->readyhead + i) % h->readycap];
        free(h->ready);
        h->ready = nr;
        h->readycap = ncap;
        h->readyhead = 0;
    }
    h->ready[(h->readyhead + h->nready) % h->readycap].co = co;
    h->ready[(h->readyhead + h->nready) % h->readycap].nargs = nargs;
    h->nready++;
}

/* Pushes the task table of co (or nil). */
static int flow_task(ath_host_t *h, lua_State *L, lua_State *co)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->flows_ref);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    return lua_type(L, -1);
}

static void flow_forget(ath_host_t *h, lua_State *L, lua_State *co)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->flows_ref);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

/* A task table's field, read and written raw. The flow holds the table
 * (athost.spawn returns it) and may give it, or the tasks' shared
 * metatable, an __index or __newindex that raises: met here, between
 * resumes, that would be an error outside any protected call. */
static int task_get(lua_State *L, int t, const char *k)
{
    t = lua_absindex(L, t);
    lua_pushstring(L, k);
    return lua_rawget(L, t);
}

/* Sets field k of the task table at t to the value on top (popped). */
static void task_set(lua_State *L, int t, const char *k)
{
    t = lua_absindex(L, t);
    lua_pushstring(L, k);
    lua_insert(L, -2);
    lua_rawset(L, t);
}

void ath_host_check_flow(lua_State *L)
{
    /* Flows carry their host in the thread's extra space (set by
     * ath_host_spawn); other coroutines inherit the main thread's NULL,
     * or in a shared state their creator's host tagged ATH_XS_PLAIN. */
    if (!lua_isyieldable(L) || ATH_XS(L) == NULL ||
        ((uintptr_t)ATH_XS(L) & ATH_XS_PLAIN))
        luaL_error(L, "this call waits, so it must run in a flow (the "
                      "script itself, athost.spawn or a handler), not in a "
                      "plain coroutine");
}

void ath_host_check_open(lua_State *L, const ath_host_t *h, const char *what)
{
    if (h->closing)
        luaL_error(L, "%s: athost is closing (a finalizer cannot start "
                      "it)", what);
}

/* Ends the step in progress of task table at index t, if any. */
static void flow_end_step(ath_host_t *h, lua_State *L, int t, int ok,
                          const char *err)
{
    ath_event_t ev;
    if (task_get(L, t, "step") != LUA_TSTRING) {
        lua_pop(L, 1);
        return;
    }
    memset(&ev, 0, sizeof ev);
    ev.type = ATH_EVENT_STEP_END;
    ev.name = lua_tostring(L, -1);
    task_get(L, t, "step_t0");
    ev.ms = ath_host_now(h) - lua_tonumber(L, -1);
    ev.ok = ok;
    ev.text = err;
    ath_host_emit(h, &ev);
    lua_pop(L, 2);
    lua_pushnil(L);
    task_set(L, t, "step");
}

void ath_host_flow_failed(ath_host_t *h, lua_State *co, const char *msg)
{
    lua_State *L = h->L;
    int t;
    luaL_Buffer b;
    flow_task(h, L, co);
    t = lua_gettop(L);
    luaL_buffinit(L, &b);
    if (lua_type(L, t) == LUA_TTABLE &&
        task_get(L, t, "step") == LUA_TSTRING) {
        const char *step = lua_tostring(L, -1);
        lua_pop(L, 1);
        luaL_addstring(&b, "step \"");
        luaL_addstring(&b, step);
        luaL_addstring(&b, "\" failed: ");
    } else if (lua_type(L, t) == LUA_TTABLE) {
        lua_pop(L, 1);
    }
    luaL_addstring(&b, msg);
    luaL_pushresult(&b);
    if (lua_type(L, t) == LUA_TTABLE) {
        flow_end_step(h, L, t, 0, msg);
        lua_pushvalue(L, t + 1);
        task_set(L, t, "error");
    }
    if (co == h->main_co || lua_type(L, t) != LUA_TTABLE ||
        task_get(L, t, "joiners") == LUA_TNIL) {
        /* No one will see this error but the run. */
        ath_host_end(h, h->port_failed    ? ATH_EXIT_PORT
                        : h->usage_failed ? ATH_EXIT_USAGE
                                          : ATH_EXIT_FAIL,
                     lua_tostring(L, t + 1), "failed");
    }
    lua_settop(L, t - 1);
}

void ath_host_wake_joiners(ath_host_t *h, lua_State *L, int t)
{
    int i, n;
    if (task_get(L, t, "joiners") == LUA_TTABLE) {
        n = (int)lua_rawlen(L, -1);
        for (i = 1; i <= n; i++) {
            lua_State *j;
            lua_rawgeti(L, -1, i);
            j = lua_tothread(L, -1);
            lua_pop(L, 1);
            /* task:join() puts the flows that wait here; the flow may
             * have replaced the list (task.joiners = {1}): only flows of
             * this host are woken. */
            if (j == NULL || ATH_XS(j) != (void *)h)
                continue;
            lua_pushvalue(L, t);
            lua_xmove(L, j, 1);
            ath_host_wake(h, j, 1);
        }
    }
    lua_pop(L, 1);
}

/* Stores a finished task's outcome and wakes those who join it. The
 * results are the nres values on top of co's stack, or the error. */
static void flow_done(ath_host_t *h, lua_State *co, int ok, int nres)
{
    lua_State *L = h->L;
    int t, i, n;
    if (flow_task(h, L, co) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    t = lua_gettop(L);
    if (ok)
        flow_end_step(h, L, t, 1, NULL);
    lua_pushboolean(L, 1);
    task_set(L, t, "done");
    lua_pushboolean(L, ok);
    task_set(L, t, "ok");
    lua_createtable(L, nres, 1);
    n = lua_gettop(L);
    lua_xmove(co, L, nres);
    for (i = nres; i >= 1; i--)
        lua_rawseti(L, n, i);
    lua_pushinteger(L, nres);
    lua_setfield(L, -2, "n");
    task_set(L, t, "results");
    ath_host_wake_joiners(h, L, t);
    lua_settop(L, t - 1);
    flow_forget(h, L, co);
}

void ath_host_step(ath_host_t *h, lua_State *co, const char *name)
{
    lua_State *L = h->L;
    ath_event_t ev;
    int t;
    if (flow_task(h, L, co) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    t = lua_gettop(L);
    flow_end_step(h, L, t, 1, NULL);
    lua_pushstring(L, name);
    task_set(L, t, "step");
    lua_pushnumber(L, ath_host_now(h));
    task_set(L, t, "step_t0");
    memset(&ev, 0, sizeof ev);
    ev.type = ATH_EVENT_STEP_START;
    ev.name = name;
    ath_host_emit(h, &ev);
    lua_settop(L, t - 1);
}

/* ---- cleanup: athost.defer -------------------------------------------- */

static int flow_abandoned(ath_host_t *h, lua_State *co)
{
    lua_State *L = h->L;
    int a = 0;
    if (flow_task(h, L, co) == LUA_TTABLE) {
        task_get(L, -1, "abandoned");
        a = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    return a;
}

void ath_host_abandon(ath_host_t *h, lua_State *co)
{
    lua_State *L = h->L;
    ath_res_t *r, *next;
    h->abandoned++;
    if (co) {
        if (flow_task(h, L, co) == LUA_TTABLE) {
            lua_pushboolean(L, 1);
            task_set(L, -2, "abandoned");
        }
        lua_pop(L, 1);
    } else {
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->flows_ref);
        lua_pushnil(L);
        while (lua_next(L, -2)) {
            if (lua_istable(L, -1)) {
                lua_pushboolean(L, 1);
                task_set(L, -2, "abandoned");
            }
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    for (r = h->res.next; r && r != &h->res; r = next) {
        next = r->next;
        if (r->abandon)
            r->abandon(r, co);
    }
}

/* The cleanup flow: runs the deferred functions newest first, each in a
 * flow of its own (so one that hangs can be left behind: a timer cancels
 * it) for at most its time, then ends the run. Errors and overruns are
 * logged, not raised: the run's outcome is the one that started the
 * cleanup. */
static const char cleanup_chunk[] =
    "local defers, why, finish = ...\n"
    "local athost = require('athost')\n"
    "while true do\n"
    "  local d = table.remove(defers)\n"
    "  if not d then break end\n"
    "  local task = athost.spawn(function() return pcall(d.fn, why) end)\n"
    "  local late = false\n"
    "  local timer = athost.timer(d.ms, function()\n"
    "    if not task.done then late = true task:cancel() end\n"
    "  end)\n"
    "  local ok, err = task:join()\n"
    "  timer:stop()\n"
    "  if late then\n"
    "    athost.log(string.format('cleanup: %s did not end within %d ms',\n"
    "      d.name, d.ms))\n"
    "  elseif not ok then\n"
    "    athost.log('cleanup: ' .. d.name .. ': ' .. tostring(err))\n"
    "  end\n"
    "end\n"
    "finish()\n";

static int cleanup_finish(lua_State *L)
{
    ath_host_t *h = ath_host_from(L);
    ath_host_finish(h, h->end_status, h->end_msg);
    return 0;
}

void ath_host_end(ath_host_t *h, int status, const char *msg, const char *why)
{
    lua_State *L = h->L;
    int pending;
    if (h->done)
        return;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->defers_ref);
    pending = lua_istable(L, -1) && lua_rawlen(L, -1) > 0;
    lua_pop(L, 1);
    if (h->cleaning || !pending) {
        ath_host_finish(h, status, msg);
        return;
    }
    h->cleaning = 1;
    h->end_status = status;
    free(h->end_msg);
    h->end_msg = msg ? strdup(msg) : NULL;
    /* The main flow stops where it is. Other flows go on: a virtual
     * modem's, URC handlers, the cleanup's own. */
    if (h->main_co && status == ATH_EXIT_CANCELED)
        ath_host_abandon(h, h->main_co);
    /* Compiled once per state: every host of a station ends this way. */
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, cleanup_chunk) != LUA_TFUNCTION) {
        lua_pop(L, 1);
        if (luaL_loadbufferx(L, cleanup_chunk, sizeof cleanup_chunk - 1,
                             "=(cleanup)", "t") != LUA_OK) {
            lua_pop(L, 1);
            ath_host_finish(h, status, msg);
            return;
        }
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, cleanup_chunk);
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->defers_ref);
    lua_pushstring(L, why);
    lua_pushcfunction(L, cleanup_finish);
    ath_host_spawn(h, L, 3);
    lua_pop(L, 1);
}

/* How a resume of co ended (status st, nres results on co's stack):
 * the flow's outcome recorded, the run ended when it was the main flow.
 * Protected (args: host, co, st, nres): copying a message, building a
 * step's failure or the result's line may run out of memory, as with a
 * huge error message. */
static int resume_ended(lua_State *L)
{
    ath_host_t *h = lua_touserdata(L, 1);
    lua_State *co = lua_tothread(L, 2);
    int st = (int)lua_tointeger(L, 3), nres = (int)lua_tointeger(L, 4);
    if (st == LUA_OK) {
        if (co == h->main_co) {
            int fail = nres >= 1 && lua_type(co, -nres) == LUA_TBOOLEAN &&
                       !lua_toboolean(co, -nres);
            size_t wn;
            const char *why =
                nres >= 2 ? lua_tolstring(co, -nres + 1, &wn) : NULL;
            /* The reason becomes a C string: a NUL in it is written \x00
             * rather than cutting off what follows. */
            if (why)
                why = ath_pushcstr(h->L, why, wn);
            flow_done(h, co, 1, 0);
            ath_host_end(h, fail ? ATH_EXIT_FAIL : ATH_EXIT_OK,
                         fail ? (why ? why : "the script returned false")
                              : NULL,
                         fail ? "failed" : "ended");
            return 0;
        }
        flow_done(h, co, 1, nres);
        return 0;
    }
    {
        size_t n;
        const char *msg = lua_tolstring(co, -1, &n);
        if (msg == NULL) {
            msg = "(error object is not a string)";
            n = strlen(msg);
        }
        /* Steps, results and ath_host_error() carry C strings: a NUL in
         * the message is written \x00 rather than cutting it short. */
        msg = ath_pushcstr(h->L, msg, n);
        if (getenv("ATHOST_TRACE")) {
            luaL_traceback(h->L, co, msg, 0);
            fprintf(stderr, "%s\n", lua_tostring(h->L, -1));
            lua_pop(h->L, 1);
        }
        ath_host_flow_failed(h, co, msg);
        lua_pop(h->L, 1);
        flow_done(h, co, 0, 0);
    }
    return 0;
}

/* Resumes one coroutine and deals with how it stopped. */
static void host_resume(ath_host_t *h, lua_State *co, int nargs)
{
    int nres, st;
    lua_State *L = h->L;
    if (lua_status(co) != LUA_YIELD && lua_status(co) != LUA_OK) {
        lua_pop(co, nargs);
        return; /* died meanwhile */
    }
    if (lua_status(co) == LUA_OK && lua_gettop(co) == 0)
        return; /* finished meanwhile */
    if (h->abandoned && flow_abandoned(h, co)) {
        lua_pop(co, nargs);
        return; /* stopped for a cleanup: it goes on no more */
    }
    st = lua_resume(co, L, nargs, &nres);
    if (st == LUA_YIELD) {
        lua_pop(co, nres);
        return;
    }
    lua_pushcfunction(L, resume_ended);
    lua_pushlightuserdata(L, h);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_pushinteger(L, st);
    lua_pushinteger(L, st == LUA_OK ? nres : 0);
    if (lua_pcall(L, 4, 0, 0) != LUA_OK) {
        /* Out of memory on the way: the run ends, saying so. */
        lua_pop(L, 1);
        lua_settop(co, 0);
        flow_forget(h, L, co);
        ath_host_finish(h, ATH_EXIT_FAIL, "not enough memory");
    }
    if (st != LUA_OK)
        lua_resetthread(co);
}

void ath_host_dispatch(ath_host_t *h)
{
    if (h->dispatching)
        return;
    h->dispatching = 1;
    while (h->nready > 0) {
        ath_ready_t r = h->ready[h->readyhead];
        h->readyhead = (h->readyhead + 1) % h->readycap;
        h->nready--;
        if (h->done)
            continue; /* the run is over: no flow goes on */
        host_resume(h, r.co, r.nargs);
    }
    h->dispatching = 0;
    if (h->tr)
        ath_tr_flush(h->tr, 0);
}

lua_State *ath_host_spawn(ath_host_t *h, lua_State *L, int nargs)
{
    lua_State *co = lua_newthread(L); /* fn args... co */
    *(void **)lua_getextraspace(co) = h;
    lua_insert(L, -(nargs + 2)); /* co fn args... */
    lua_xmove(L, co, nargs + 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->flows_ref);
    lua_pushvalue(L, -2); /* co flows co */
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "co");
    luaL_setmetatable(L, "athost.task");
    lua_rawset(L, -3);
    lua_pop(L, 1);
    ath_host_wake(h, co, nargs);
    return co;
}

/* ---- the host of a thread; the end of a run ------------------------------ */

const char ath_host_key = 'h'; /* registry: light userdata host */

ath_host_t *ath_host_from(lua_State *L)
{
    ath_host_t *h;
    void *x = ATH_XS(L);
    if (x != NULL)
        return (ath_host_t *)((uintptr_t)x & ~ATH_XS_PLAIN);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ath_host_key);
    h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h;
}

/* Ends the run (the first call only): status, the message (masked) and
 * the result event; then closes what the host holds. */
void ath_host_finish(ath_host_t *h, int status, const char *msg)
{
    ath_event_t ev;
    if (h->done)
        return;
    h->done = 1;
    h->status = status;
    free(h->error);
    h->error = msg ? ath_host_redact(h, msg, strlen(msg), NULL) : NULL;
    memset(&ev, 0, sizeof ev);
    ev.type = ATH_EVENT_RESULT;
    ev.ok = status == ATH_EXIT_OK;
    ev.code = status;
    ev.text = h->error;
    ev.ms = ath_host_now(h);
    ath_host_emit(h, &ev);
    ath_host_close(h);
}

void ath_host_cancel(ath_host_t *h)
{
    if (!h->done)
        ath_host_finish(h, ATH_EXIT_CANCELED, "canceled");
}

void ath_host_interrupt(ath_host_t *h, const char *why)
{
    lua_State *L = h->L;
    ath_event_t ev;
    luaL_Buffer b;
    int t;
    if (h->done)
        return;
    if (h->cleaning) {
        /* Again: the cleanup is cut short, the run ends now. */
        lua_pushfstring(L, "%s; %s again: the cleanup was cut short",
                        h->end_msg ? h->end_msg : "canceled",
                        why ? why : "canceled");
        ath_host_finish(h, ATH_EXIT_CANCELED, lua_tostring(L, -1));
        lua_pop(L, 1);
        return;
    }
    /* Ctrl-C where the script takes it itself (athost -i). */
    if (why && strcmp(why, "SIGINT") == 0) {
        if (lua_rawgeti(L, LUA_REGISTRYINDEX, h->onint_ref) ==
            LUA_TFUNCTION) {
            ath_host_spawn(h, L, 0);
            lua_pop(L, 1);
            ath_host_dispatch(h);
            return;
        }
        lua_pop(L, 1);
    }
    /* The message names the step the main flow was in. */
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "canceled");
    if (why) {
        luaL_addstring(&b, " (");
        luaL_addstring(&b, why);
        luaL_addstring(&b, ")");
    }
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->flows_ref);
    t = lua_gettop(L);
    if (h->main_co) {
        lua_pushthread(h->main_co);
        lua_xmove(h->main_co, L, 1);
        lua_rawget(L, t);
        if (lua_istable(L, -1) && task_get(L, -1, "step") == LUA_TSTRING) {
            luaL_addstring(&b, " during step \"");
            luaL_addvalue(&b);
            luaL_addstring(&b, "\"");
        } else if (lua_istable(L, -1)) {
            lua_pop(L, 1);
        }
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    luaL_pushresult(&b);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->defers_ref);
    if (lua_istable(L, -1) && lua_rawlen(L, -1) > 0) {
        lua_pushfstring(L, "%s: closing what the flow opened (%s again to "
                        "quit at once)", lua_tostring(L, -2),
                        why ? why : "cancel");
        memset(&ev, 0, sizeof ev);
        ev.type = ATH_EVENT_LOG;
        ev.text = lua_tostring(L, -1);
        ath_host_emit(h, &ev);
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
    ath_host_end(h, ATH_EXIT_CANCELED, lua_tostring(L, -1), "canceled");
    lua_pop(L, 1);
    ath_host_dispatch(h);
}
