/*
 * lhost.c: the athost module's flow functions: tasks, sleep, timers,
 * steps, logs, events, secrets, parameters and the default port.
 */
#include "lport.h"

#include <stdlib.h>
#include <string.h>

#define TASK_MT "athost.task"
#define TIMER_MT "athost.timer"

/* ---- tasks ------------------------------------------------------------- */

/* athost.spawn(fn, ...): runs fn(...) as a new flow; returns its task. */
static int l_spawn(lua_State *L)
{
    ath_host_t *h = ath_host_from(L);
    int n = lua_gettop(L);
    luaL_checktype(L, 1, LUA_TFUNCTION);
    ath_host_spawn(h, L, n - 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->flows_ref);
    lua_insert(L, -2);
    lua_rawget(L, -2);
    return 1;
}

/* The results of a finished task at index t: its values, or nil, error,
 * "ETASK". */
static int task_results(lua_State *L, int t)
{
    int i, n;
    lua_getfield(L, t, "ok");
    if (!lua_toboolean(L, -1)) {
        lua_pushnil(L);
        lua_getfield(L, t, "error");
        lua_pushliteral(L, "ETASK");
        return 3;
    }
    lua_getfield(L, t, "results");
    lua_getfield(L, -1, "n");
    n = (int)lua_tointeger(L, -1);
    lua_pop(L, 1);
    luaL_checkstack(L, n, "too many results");
    for (i = 1; i <= n; i++)
        lua_rawgeti(L, -i, i);
    return n;
}

static int task_join_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    return task_results(L, lua_gettop(L));
}

/* task:join(): waits for the task; returns what it returned, or nil,
 * its error, "ETASK". */
static int l_task_join(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (lua_getfield(L, 1, "done") == LUA_TBOOLEAN) {
        lua_pop(L, 1);
        return task_results(L, 1);
    }
    lua_pop(L, 1);
    ath_host_check_flow(L);
    if (lua_getfield(L, 1, "joiners") == LUA_TNIL) {
        lua_pop(L, 1);
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_setfield(L, 1, "joiners");
    }
    lua_pushthread(L);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_settop(L, 0);
    return lua_yieldk(L, 0, 0, task_join_k);
}

/* task:cancel(): stops the task where it waits (its port waits end, it is
 * never resumed); whoever joins it gets nil, "canceled", "ETASK". For a
 * command typed at athost -i that Ctrl-C aborts. */
static int l_task_cancel(lua_State *L)
{
    ath_host_t *h = ath_host_from(L);
    lua_State *co;
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_settop(L, 1);
    if (lua_getfield(L, 1, "done") == LUA_TBOOLEAN ||
        lua_getfield(L, 1, "co") != LUA_TTHREAD)
        return 0;
    co = lua_tothread(L, -1);
    if (co == L)
        return luaL_error(L, "a task cannot cancel itself");
    ath_host_abandon(h, co);
    lua_pushboolean(L, 1);
    lua_setfield(L, 1, "done");
    lua_pushboolean(L, 0);
    lua_setfield(L, 1, "ok");
    lua_pushliteral(L, "canceled");
    lua_setfield(L, 1, "error");
    ath_host_wake_joiners(h, L, 1);
    return 0;
}

/* athost.on_interrupt(fn): SIGINT (Ctrl-C) runs fn as a flow instead of
 * canceling the run (athost -i: it aborts the command waiting); nil
 * restores the default. */
static int l_on_interrupt(lua_State *L)
{
    ath_host_t *h = ath_host_from(L);
    if (!lua_isnil(L, 1))
        luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_settop(L, 1);
    luaL_unref(L, LUA_REGISTRYINDEX, h->onint_ref);
    h->onint_ref = lua_isnil(L, 1) ? LUA_NOREF : luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

/* ---- sleep and timers --------------------------------------------------- */

typedef struct lhost_timer {
    ath_res_t res;
    uv_timer_t t;
    ath_host_t *h;
    lua_State *co; /* sleep: the flow to wake */
    int fn_ref;    /* timer: the function to run */
    int stopped;
    struct lhost_timer **box; /* timer: its userdata, cleared on free */
} lhost_timer_t;

static void timer_closed(uv_handle_t *handle)
{
    lhost_timer_t *t = handle->data;
    ath_host_t *h = t->h;
    if (t->box)
        *t->box = NULL;
    free(t);
    ath_host_handles(h, -1);
}

static void timer_stop(lhost_timer_t *t)
{
    if (t->stopped)
        return;
    t->stopped = 1;
    ath_host_res_del(t->h, &t->res);
    /* The state outlives the host's resources (ath_host_free closes them
     * first), and in a shared state a ref left behind would be a leak. */
    if (t->fn_ref != LUA_NOREF)
        luaL_unref(t->h->L, LUA_REGISTRYINDEX, t->fn_ref);
    t->fn_ref = LUA_NOREF;
    uv_close((uv_handle_t *)&t->t, timer_closed);
}

static void timer_res_close(ath_res_t *r)
{
    timer_stop((lhost_timer_t *)r);
}

static lhost_timer_t *timer_new(lua_State *L)
{
    ath_host_t *h = ath_host_from(L);
    lhost_timer_t *t;
    ath_host_check_open(L, h, "timer");
    t = calloc(1, sizeof *t);
    if (t == NULL)
        luaL_error(L, "out of memory");
    t->h = h;
    t->fn_ref = LUA_NOREF;
    uv_timer_init(h->loop, &t->t);
    t->t.data = t;
    h->handles++;
    t->res.close = timer_res_close;
    ath_host_res_add(h, &t->res);
    return t;
}

static void sleep_cb(uv_timer_t *handle)
{
    lhost_timer_t *t = handle->data;
    ath_host_t *h = t->h;
    ath_host_wake(h, t->co, 0);
    timer_stop(t);
    ath_host_dispatch(h);
}

/* athost.sleep(ms) */
static int l_sleep(lua_State *L)
{
    lua_Number ms = luaL_checknumber(L, 1);
    lhost_timer_t *t;
    ath_host_check_flow(L);
    t = timer_new(L);
    t->co = L;
    uv_update_time(t->h->loop); /* the flow may have run for a while */
    uv_timer_start(&t->t, sleep_cb, ms > 0 ? (uint64_t)ms : 0, 0);
    return lua_yield(L, 0);
}

static void timer_cb(uv_timer_t *handle)
{
    lhost_timer_t *t = handle->data;
    ath_host_t *h = t->h;
    lua_State *L = h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, t->fn_ref);
    ath_host_spawn(h, L, 0);
    lua_pop(L, 1);
    if (uv_timer_get_repeat(&t->t) == 0)
        timer_stop(t);
    ath_host_dispatch(h);
}

/* athost.timer(ms, fn[, repeat_ms]): runs fn as a flow after ms, then
 * every repeat_ms; returns a timer with :stop(). */
static int l_timer(lua_State *L)
{
    lua_Number ms = luaL_checknumber(L, 1);
    lua_Number rep = luaL_optnumber(L, 3, 0);
    lhost_timer_t *t, **box;
    luaL_checktype(L, 2, LUA_TFUNCTION);
    t = timer_new(L);
    lua_pushvalue(L, 2);
    t->fn_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    uv_update_time(t->h->loop);
    uv_timer_start(&t->t, timer_cb, ms > 0 ? (uint64_t)ms : 0,
                   rep > 0 ? (uint64_t)rep : 0);
    box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = t;
    t->box = box;
    luaL_setmetatable(L, TIMER_MT);
    return 1;
}

static int l_timer_stop(lua_State *L)
{
    lhost_timer_t **box = luaL_checkudata(L, 1, TIMER_MT);
    /* A fired one-shot timer is already gone: *box is NULL then. */
    if (*box && !(*box)->stopped)
        timer_stop(*box);
    return 0;
}

/* The userdata goes; the timer runs on until stopped or the run ends. */
static int l_timer_gc(lua_State *L)
{
    lhost_timer_t **box = luaL_checkudata(L, 1, TIMER_MT);
    if (*box)
        (*box)->box = NULL;
    *box = NULL;
    return 0;
}

#define WAITING_MT "athost.waiting"

/* athost.waiting(what, total_ms): a wait of the flow's own (a poll loop)
 * reports its progress like a port's long wait, every 10 s, until
 * :done() (or the handle is closed: local w <close> = athost.waiting(..)). */
static int l_waiting(lua_State *L)
{
    ath_host_t *h = ath_host_from(L);
    const char *what = luaL_checkstring(L, 1);
    lua_Number total = luaL_optnumber(L, 2, 0);
    ath_host_t **box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = h; /* until the wait ends */
    luaL_setmetatable(L, WAITING_MT);
    if (!ath_host_wait_begin(h, box, NULL, what, total > 0 ? total : 0))
        *box = NULL; /* no note (the run is over): nothing to end */
    return 1;
}

static int l_waiting_done(lua_State *L)
{
    ath_host_t **box = luaL_checkudata(L, 1, WAITING_MT);
    /* Its own host, not the running flow's: __gc runs in whatever thread
     * the collector happens to. */
    ath_host_t *h = *box;
    if (h) /* the note is still open: *box is cleared when it closes */
        ath_host_wait_end(h, box);
    *box = NULL;
    return 0;
}

/* ---- cleanup ------------------------------------------------------------ */

#define DEFER_MT "athost.defer"

/* athost.defer(fn[, opts]): fn(why) runs when the run ends — why is
 * "ended", "failed" or "canceled" (SIGINT, SIGTERM) — newest first, each
 * in a flow of its own for at most opts.timeout ms (default 5000; a number
 * is the timeout), named opts.name in messages. Returns a handle whose
 * :cancel() takes fn back (the work was undone the normal way). */
static int l_defer(lua_State *L)
{
    lua_Number ms = 5000;
    const char *name = "a deferred cleanup";
    luaL_checktype(L, 1, LUA_TFUNCTION);
    if (lua_type(L, 2) == LUA_TNUMBER) {
        ms = lua_tonumber(L, 2);
    } else if (lua_type(L, 2) == LUA_TTABLE) {
        lua_getfield(L, 2, "timeout");
        ms = luaL_optnumber(L, -1, ms);
        lua_getfield(L, 2, "name");
        name = luaL_optstring(L, -1, name);
        lua_pop(L, 1); /* name stays alive in opts */
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, 2)) {
        luaL_argerror(L, 2, "a timeout (ms) or { timeout =, name = }");
    }
    lua_createtable(L, 0, 3);
    lua_pushvalue(L, 1);
    lua_setfield(L, -2, "fn");
    lua_pushinteger(L, ms > 0 ? (lua_Integer)ms : 0);
    lua_setfield(L, -2, "ms");
    lua_pushstring(L, name);
    lua_setfield(L, -2, "name");
    luaL_setmetatable(L, DEFER_MT);
    lua_rawgeti(L, LUA_REGISTRYINDEX, ath_host_from(L)->defers_ref);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 1);
    return 1;
}

/* handle:cancel(): fn will not run (it may already be running). */
static int l_defer_cancel(lua_State *L)
{
    lua_Integer i, n;
    luaL_checktype(L, 1, LUA_TTABLE); /* a handle from athost.defer */
    if (lua_rawgeti(L, LUA_REGISTRYINDEX, ath_host_from(L)->defers_ref) !=
        LUA_TTABLE)
        return 0;
    n = (lua_Integer)lua_rawlen(L, -1);
    for (i = 1; i <= n; i++) {
        lua_rawgeti(L, -1, i);
        if (lua_rawequal(L, -1, 1)) {
            lua_pop(L, 1);
            for (; i < n; i++) {
                lua_rawgeti(L, -1, i + 1);
                lua_rawseti(L, -2, i);
            }
            lua_pushnil(L);
            lua_rawseti(L, -2, n);
            break;
        }
        lua_pop(L, 1);
    }
    return 0;
}

/* ---- steps, logs, events ------------------------------------------------ */

/* athost.step(name): the flow's next step starts (the previous ends). */
static int l_step(lua_State *L)
{
    size_t n;
    const char *name = luaL_checklstring(L, 1, &n);
    ath_host_step(ath_host_from(L), L, ath_pushcstr(L, name, n));
    return 0;
}

/* Pushes the arguments from index first on, tostring'ed, space-joined. */
static void lhost_join(lua_State *L, int first)
{
    int i, n = lua_gettop(L);
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    for (i = first; i <= n; i++) {
        if (i > first)
            luaL_addchar(&b, ' ');
        luaL_tolstring(L, i, NULL);
        luaL_addvalue(&b);
    }
    luaL_pushresult(&b);
}

/* athost.log(...): one line of progress. */
static int l_log(lua_State *L)
{
    ath_event_t ev;
    lhost_join(L, 1);
    memset(&ev, 0, sizeof ev);
    ev.type = ATH_EVENT_LOG;
    ev.text = lua_tolstring(L, -1, &ev.text_len); /* NULs and all */
    ath_host_emit(ath_host_from(L), &ev);
    return 0;
}

/* athost.emit(name, value): a machine-readable event; value is encoded
 * as JSON. */
static int l_emit(lua_State *L)
{
    ath_host_t *h = ath_host_from(L);
    ath_event_t ev;
    size_t n;
    char *red;
    const char *name = luaL_checklstring(L, 1, &n), *json;
    lua_settop(L, 2);
    name = ath_pushcstr(L, name, n); /* the event's name is a C string */
    lua_replace(L, 1);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "cjson");
    lua_getfield(L, -1, "encode");
    lua_pushvalue(L, 2);
    lua_call(L, 1, 1);
    memset(&ev, 0, sizeof ev);
    ev.type = ATH_EVENT_DATA;
    ev.name = name;
    json = lua_tolstring(L, -1, &n); /* n is set before it is passed */
    red = ath_host_redact(h, json, n, NULL);
    ev.json = red;
    ath_host_emit(h, &ev);
    free(red);
    return 0;
}

/* athost.secret(value): masked as *** from now on; returns value. */
static int l_secret(lua_State *L)
{
    if (!lua_isnil(L, 1))
        ath_host_add_secret(ath_host_from(L), luaL_checkstring(L, 1));
    lua_settop(L, 1);
    return 1;
}

static int l_now(lua_State *L)
{
    lua_pushnumber(L, ath_host_now(ath_host_from(L)));
    return 1;
}

static int l_params(lua_State *L)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, ath_host_from(L)->params_ref);
    return 1;
}

static int port_k(lua_State *L, int status, lua_KContext ctx);

/* athost.port(): the port given with -p (opened on first use). A port
 * that cannot be opened ends the run with exit code 3. */
static int l_port(lua_State *L)
{
    ath_host_t *h = ath_host_from(L);
    if (h->port_ref != LUA_NOREF) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, h->port_ref);
        ath_port_t **pp = lua_touserdata(L, -1);
        if (pp && *pp && !(*pp)->closed)
            return 1;
        lua_pop(L, 1);
    }
    if (h->port_spec == NULL)
        return luaL_error(L, "no port: give one with -p/--port (or "
                             "--ports for many)");
    lua_settop(L, 0);
    lua_getfield(L, LUA_REGISTRYINDEX, LUA_LOADED_TABLE);
    lua_getfield(L, -1, "athost");
    lua_getfield(L, -1, "open");
    lua_pushstring(L, h->port_spec);
    lua_createtable(L, 0, 1);
    if (h->port_baud > 0) {
        lua_pushinteger(L, h->port_baud);
        lua_setfield(L, -2, "baud");
    }
    lua_callk(L, 2, 3, 0, port_k);
    return port_k(L, LUA_OK, 0);
}

static int port_k(lua_State *L, int status, lua_KContext ctx)
{
    ath_host_t *h = ath_host_from(L);
    (void)status;
    (void)ctx;
    if (lua_isnil(L, -3)) {
        h->port_failed = 1;
        lua_pushvalue(L, -2);
        return lua_error(L);
    }
    lua_pop(L, 2);
    lua_pushvalue(L, -1);
    h->port_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 1;
}

/* athost.usage(msg): the script was called wrongly (a missing or unknown
 * parameter): raises msg and makes the run exit 2 like any usage error. */
static int l_usage(lua_State *L)
{
    ath_host_t *h = ath_host_from(L);
    luaL_checkstring(L, 1);
    h->usage_failed = 1;
    lua_settop(L, 1);
    return lua_error(L);
}

static const luaL_Reg lhost_funcs[] = {
    {"usage", l_usage},
    {"spawn", l_spawn}, {"sleep", l_sleep},   {"timer", l_timer},
    {"now", l_now},     {"step", l_step},     {"log", l_log},
    {"emit", l_emit},   {"secret", l_secret}, {"params", l_params},
    {"port", l_port},   {"waiting", l_waiting}, {"defer", l_defer},
    {"on_interrupt", l_on_interrupt}, {NULL, NULL}};

void ath_lhost_open(lua_State *L)
{
    luaL_setfuncs(L, lhost_funcs, 0);
    if (luaL_newmetatable(L, TASK_MT)) {
        lua_newtable(L);
        lua_pushcfunction(L, l_task_join);
        lua_setfield(L, -2, "join");
        lua_pushcfunction(L, l_task_cancel);
        lua_setfield(L, -2, "cancel");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, DEFER_MT)) {
        lua_newtable(L);
        lua_pushcfunction(L, l_defer_cancel);
        lua_setfield(L, -2, "cancel");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, WAITING_MT)) {
        lua_pushcfunction(L, l_waiting_done);
        lua_setfield(L, -2, "__gc");
        lua_pushcfunction(L, l_waiting_done);
        lua_setfield(L, -2, "__close");
        lua_newtable(L);
        lua_pushcfunction(L, l_waiting_done);
        lua_setfield(L, -2, "done");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
    if (luaL_newmetatable(L, TIMER_MT)) {
        lua_pushcfunction(L, l_timer_gc);
        lua_setfield(L, -2, "__gc");
        lua_newtable(L);
        lua_pushcfunction(L, l_timer_stop);
        lua_setfield(L, -2, "stop");
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}

int luaopen_athost(lua_State *L)
{
    lua_newtable(L);
    ath_lhost_open(L);
    ath_lport_open(L);
    ath_lopen_open(L);
    ath_crypto_open(L);
    ath_tls_open(L);
    ath_lfile_open(L);
    ath_ledit_open(L);
    lua_pushliteral(L, ATHOST_VERSION);
    lua_setfield(L, -2, "version");
    lua_getfield(L, LUA_REGISTRYINDEX, "athost.libdir");
    lua_setfield(L, -2, "libdir");
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_setfield(L, -2, "json");
    return 1;
}
