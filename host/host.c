/*
 * host.c: a host: one Lua state, one loop, the flows and their events.
 *
 * Flows are Lua coroutines. A flow that waits (on a port, a timer, a task)
 * yields from C; whatever ends the wait pushes the results on the flow's
 * stack and queues it with ath_host_wake(). ath_host_dispatch() is the one
 * place that resumes coroutines, and every libuv callback of the host ends
 * by calling it.
 */
#include "host.h"

#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <lualib.h>

#ifndef ATHOST_LIBDIR
#define ATHOST_LIBDIR "/usr/local/share/athost/lib"
#endif

static const char HOST_KEY = 'h'; /* registry: light userdata host */
#define FLOWS "athost.flows"      /* registry: thread -> task table */
#define PARAMS "athost.params"

ath_host_t *ath_host_from(lua_State *L)
{
    ath_host_t *h;
    lua_rawgetp(L, LUA_REGISTRYINDEX, &HOST_KEY);
    h = lua_touserdata(L, -1);
    lua_pop(L, 1);
    return h;
}

double ath_host_now(ath_host_t *h)
{
    return (double)uv_hrtime() / 1e6 - h->t0;
}

/* ---- secrets ---------------------------------------------------------- */

void ath_host_add_secret(ath_host_t *h, const char *value)
{
    size_t i, n = strlen(value);
    char **ns;
    if (n < 3)
        return; /* masking "" or "1" would mask everything */
    for (i = 0; i < h->nsecrets; i++)
        if (strcmp(h->secrets[i], value) == 0)
            return;
    ns = realloc(h->secrets, (h->nsecrets + 1) * sizeof *ns);
    if (ns == NULL)
        return;
    h->secrets = ns;
    if ((ns[h->nsecrets] = strdup(value)) == NULL)
        return;
    h->nsecrets++;
    if (n > h->secret_max)
        h->secret_max = n;
}

char *ath_host_redact(ath_host_t *h, const char *s, size_t n, size_t *outn)
{
    size_t i, o = 0, k;
    char *out = malloc(n + 1); /* "***" is never longer than a secret */
    if (out == NULL)
        return NULL;
    for (i = 0; i < n;) {
        int hit = 0;
        for (k = 0; k < h->nsecrets; k++) {
            size_t sl = strlen(h->secrets[k]);
            if (sl <= n - i && memcmp(s + i, h->secrets[k], sl) == 0) {
                memcpy(out + o, "***", 3);
                o += 3;
                i += sl;
                hit = 1;
                break;
            }
        }
        if (!hit)
            out[o++] = s[i++];
    }
    out[o] = '\0';
    if (outn)
        *outn = o;
    return out;
}

/* ---- events ----------------------------------------------------------- */

static void json_str(luaL_Buffer *b, const char *s)
{
    luaL_addchar(b, '"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            luaL_addchar(b, '\\');
            luaL_addchar(b, (char)c);
        } else if (c < 0x20 || c == 0x7f) {
            char tmp[8];
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            luaL_addstring(b, tmp);
        } else {
            luaL_addchar(b, (char)c);
        }
    }
    luaL_addchar(b, '"');
}

static const char *event_names[] = {"",    "step",       "step", "log",
                                    "urc", "transcript", "data", "result"};

/* Builds the event's JSON line unless it has one; leaves it on L's stack. */
static void event_json(ath_host_t *h, ath_event_t *ev)
{
    lua_State *L = h->L;
    luaL_Buffer b;
    char num[64];
    luaL_buffinit(L, &b);
    snprintf(num, sizeof num, "{\"t\":%.3f,\"event\":", ath_host_now(h) / 1e3);
    luaL_addstring(&b, num);
    json_str(&b, event_names[ev->type]);
    if (h->name) {
        luaL_addstring(&b, ",\"host\":");
        json_str(&b, h->name);
    }
    if (ev->type == ATH_EVENT_STEP_START)
        luaL_addstring(&b, ",\"state\":\"start\"");
    if (ev->type == ATH_EVENT_STEP_END)
        luaL_addstring(&b, ",\"state\":\"end\"");
    if (ev->name) {
        luaL_addstring(&b, ",\"name\":");
        json_str(&b, ev->name);
    }
    if (ev->port) {
        luaL_addstring(&b, ",\"port\":");
        json_str(&b, ev->port);
    }
    if (ev->type == ATH_EVENT_STEP_END || ev->type == ATH_EVENT_RESULT) {
        snprintf(num, sizeof num, ",\"ok\":%s,\"ms\":%.1f",
                 ev->ok ? "true" : "false", ev->ms);
        luaL_addstring(&b, num);
    }
    if (ev->type == ATH_EVENT_RESULT) {
        snprintf(num, sizeof num, ",\"code\":%d", ev->code);
        luaL_addstring(&b, num);
    }
    if (ev->text) {
        luaL_addstring(&b, ev->type == ATH_EVENT_STEP_END ||
                                   ev->type == ATH_EVENT_RESULT
                               ? ",\"error\":"
                               : ",\"text\":");
        json_str(&b, ev->text);
    }
    if (ev->json) {
        luaL_addstring(&b, ",\"data\":");
        luaL_addstring(&b, ev->json);
    }
    luaL_addchar(&b, '}');
    luaL_pushresult(&b);
}

static void event_print(ath_host_t *h, const ath_event_t *ev)
{
    double t = ath_host_now(h) / 1e3;
    const char *who = h->name ? h->name : "";
    const char *sep = h->name ? " " : "";
    if (h->opts.quiet && ev->type != ATH_EVENT_RESULT)
        return;
    switch (ev->type) {
    case ATH_EVENT_STEP_START:
        fprintf(stderr, "[%7.3f]%s%s %s\n", t, sep, who, ev->name);
        break;
    case ATH_EVENT_STEP_END:
        if (!ev->ok)
            fprintf(stderr, "[%7.3f]%s%s %s failed after %.0f ms\n", t, sep,
                    who, ev->name, ev->ms);
        break;
    case ATH_EVENT_LOG:
        fprintf(stderr, "[%7.3f]%s%s   %s\n", t, sep, who, ev->text);
        break;
    case ATH_EVENT_RESULT:
        if (!ev->ok && ev->text)
            fprintf(stderr, "athost:%s%s %s\n", sep, who, ev->text);
        break;
    default: break;
    }
    fflush(stderr);
}

void ath_host_emit(ath_host_t *h, ath_event_t *ev)
{
    lua_State *L = h->L;
    int top = lua_gettop(L);
    char *red = NULL;
    if (ev->text && h->nsecrets) {
        red = ath_host_redact(h, ev->text, strlen(ev->text), NULL);
        if (red)
            ev->text = red;
    }
    if (h->on_event || h->opts.json) {
        event_json(h, ev);
        ev->json = lua_tostring(L, -1);
        if (h->on_event) {
            h->on_event(h, ev, h->ud);
        } else if (ev->type != ATH_EVENT_TRANSCRIPT) {
            fputs(ev->json, stdout);
            fputc('\n', stdout);
            fflush(stdout);
        }
    } else {
        event_print(h, ev);
    }
    lua_settop(L, top);
    free(red);
}

void ath_host_log(ath_host_t *h, const char *fmt, ...)
{
    char buf[1024];
    ath_event_t ev;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, sizeof buf, fmt, ap);
    va_end(ap);
    memset(&ev, 0, sizeof ev);
    ev.type = ATH_EVENT_LOG;
    ev.text = buf;
    ath_host_emit(h, &ev);
}

/* ---- flows ------------------------------------------------------------ */

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
static int flow_task(lua_State *L, lua_State *co)
{
    lua_getfield(L, LUA_REGISTRYINDEX, FLOWS);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_rawget(L, -2);
    lua_remove(L, -2);
    return lua_type(L, -1);
}

static void flow_forget(lua_State *L, lua_State *co)
{
    lua_getfield(L, LUA_REGISTRYINDEX, FLOWS);
    lua_pushthread(co);
    lua_xmove(co, L, 1);
    lua_pushnil(L);
    lua_rawset(L, -3);
    lua_pop(L, 1);
}

void ath_host_check_flow(lua_State *L)
{
    /* Flows carry their host in the thread's extra space (set by
     * ath_host_spawn); other coroutines inherit the main thread's NULL. */
    if (!lua_isyieldable(L) || *(void **)lua_getextraspace(L) == NULL)
        luaL_error(L, "this call waits, so it must run in a flow (the "
                      "script itself, athost.spawn or a handler), not in a "
                      "plain coroutine");
}

static void host_finish(ath_host_t *h, int status, const char *msg)
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

/* Ends the step in progress of task table at index t, if any. */
static void flow_end_step(ath_host_t *h, lua_State *L, int t, int ok,
                          const char *err)
{
    ath_event_t ev;
    if (lua_getfield(L, t, "step") != LUA_TSTRING) {
        lua_pop(L, 1);
        return;
    }
    memset(&ev, 0, sizeof ev);
    ev.type = ATH_EVENT_STEP_END;
    ev.name = lua_tostring(L, -1);
    lua_getfield(L, t, "step_t0");
    ev.ms = ath_host_now(h) - lua_tonumber(L, -1);
    ev.ok = ok;
    ev.text = err;
    ath_host_emit(h, &ev);
    lua_pop(L, 2);
    lua_pushnil(L);
    lua_setfield(L, t, "step");
}

void ath_host_flow_failed(ath_host_t *h, lua_State *co, const char *msg)
{
    lua_State *L = h->L;
    int t;
    luaL_Buffer b;
    flow_task(L, co);
    t = lua_gettop(L);
    luaL_buffinit(L, &b);
    if (lua_type(L, t) == LUA_TTABLE &&
        lua_getfield(L, t, "step") == LUA_TSTRING) {
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
        lua_setfield(L, t, "error");
    }
    if (co == h->main_co || lua_type(L, t) != LUA_TTABLE ||
        lua_getfield(L, t, "joiners") == LUA_TNIL) {
        /* No one will see this error but the run. */
        host_finish(h, h->port_failed ? ATH_EXIT_PORT : ATH_EXIT_FAIL,
                    lua_tostring(L, t + 1));
    }
    lua_settop(L, t - 1);
}

/* Stores a finished task's outcome and wakes those who join it. The
 * results are the nres values on top of co's stack, or the error. */
static void flow_done(ath_host_t *h, lua_State *co, int ok, int nres)
{
    lua_State *L = h->L;
    int t, i, n;
    if (flow_task(L, co) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    t = lua_gettop(L);
    if (ok)
        flow_end_step(h, L, t, 1, NULL);
    lua_pushboolean(L, 1);
    lua_setfield(L, t, "done");
    lua_pushboolean(L, ok);
    lua_setfield(L, t, "ok");
    lua_createtable(L, nres, 1);
    n = lua_gettop(L);
    lua_xmove(co, L, nres);
    for (i = nres; i >= 1; i--)
        lua_rawseti(L, n, i);
    lua_pushinteger(L, nres);
    lua_setfield(L, -2, "n");
    lua_setfield(L, t, "results");
    if (lua_getfield(L, t, "joiners") == LUA_TTABLE) {
        n = (int)lua_rawlen(L, -1);
        for (i = 1; i <= n; i++) {
            lua_State *j;
            lua_rawgeti(L, -1, i);
            j = lua_tothread(L, -1);
            lua_pop(L, 1);
            lua_pushvalue(L, t);
            lua_xmove(L, j, 1);
            ath_host_wake(h, j, 1);
        }
    }
    lua_settop(L, t - 1);
    flow_forget(L, co);
}

void ath_host_step(ath_host_t *h, lua_State *co, const char *name)
{
    lua_State *L = h->L;
    ath_event_t ev;
    int t;
    if (flow_task(L, co) != LUA_TTABLE) {
        lua_pop(L, 1);
        return;
    }
    t = lua_gettop(L);
    flow_end_step(h, L, t, 1, NULL);
    lua_pushstring(L, name);
    lua_setfield(L, t, "step");
    lua_pushnumber(L, ath_host_now(h));
    lua_setfield(L, t, "step_t0");
    memset(&ev, 0, sizeof ev);
    ev.type = ATH_EVENT_STEP_START;
    ev.name = name;
    ath_host_emit(h, &ev);
    lua_settop(L, t - 1);
}

/* Resumes one coroutine and deals with how it stopped. */
static void host_resume(ath_host_t *h, lua_State *co, int nargs)
{
    int nres, st;
    if (lua_status(co) != LUA_YIELD && lua_status(co) != LUA_OK) {
        lua_pop(co, nargs);
        return; /* died meanwhile */
    }
    if (lua_status(co) == LUA_OK && lua_gettop(co) == 0)
        return; /* finished meanwhile */
    st = lua_resume(co, h->L, nargs, &nres);
    if (st == LUA_YIELD) {
        lua_pop(co, nres);
        return;
    }
    if (st == LUA_OK) {
        if (co == h->main_co) {
            int fail = nres >= 1 && lua_type(co, -nres) == LUA_TBOOLEAN &&
                       !lua_toboolean(co, -nres);
            const char *why = nres >= 2 ? lua_tostring(co, -nres + 1) : NULL;
            flow_done(h, co, 1, 0);
            host_finish(h, fail ? ATH_EXIT_FAIL : ATH_EXIT_OK,
                        fail ? (why ? why : "the script returned false")
                             : NULL);
            return;
        }
        flow_done(h, co, 1, nres);
        return;
    }
    {
        const char *msg = lua_tostring(co, -1);
        if (msg == NULL)
            msg = "(error object is not a string)";
        if (getenv("ATHOST_TRACE")) {
            luaL_traceback(h->L, co, msg, 0);
            fprintf(stderr, "%s\n", lua_tostring(h->L, -1));
            lua_pop(h->L, 1);
        }
        lua_pushstring(h->L, msg);
        ath_host_flow_failed(h, co, lua_tostring(h->L, -1));
        lua_pop(h->L, 1);
        flow_done(h, co, 0, 0);
        lua_resetthread(co);
    }
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
    lua_insert(L, -(nargs + 2));      /* co fn args... */
    lua_xmove(L, co, nargs + 1);
    lua_getfield(L, LUA_REGISTRYINDEX, FLOWS);
    lua_pushvalue(L, -2); /* co flows co */
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, -3);
    lua_setfield(L, -2, "co");
    luaL_setmetatable(L, "athost.task");
    lua_rawset(L, -3);
    lua_pop(L, 1);
    ath_host_wake(h, co, nargs);
    return co;
}

/* ---- resources -------------------------------------------------------- */

void ath_host_res_add(ath_host_t *h, ath_res_t *r)
{
    if (h->res.next == NULL)
        h->res.next = h->res.prev = &h->res;
    r->next = h->res.next;
    r->prev = &h->res;
    h->res.next->prev = r;
    h->res.next = r;
}

void ath_host_res_del(ath_host_t *h, ath_res_t *r)
{
    (void)h;
    if (r->next == NULL)
        return;
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

int ath_host_close(ath_host_t *h)
{
    while (h->res.next != NULL && h->res.next != &h->res)
        h->res.next->close(h->res.next);
    return h->handles == 0;
}

/* ---- set-up ----------------------------------------------------------- */

static void host_paths(ath_host_t *h)
{
    lua_State *L = h->L;
    char exe[PATH_MAX], dir[PATH_MAX + 32];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    const char *env = getenv("ATHOST_PATH");
    luaL_Buffer b;
    char *slash;
    luaL_buffinit(L, &b);
    /* Search order: ATHOST_PATH, the embedder's, next to the binary, the
     * installed library, then Lua's own defaults. */
    for (int pass = 0; pass < 2; pass++) {
        const char *list = pass == 0 ? env : h->opts.lib_path;
        while (list && *list) {
            const char *end = strchr(list, ':');
            size_t len = end ? (size_t)(end - list) : strlen(list);
            if (len > 0) {
                luaL_addlstring(&b, list, len);
                luaL_addstring(&b, "/?.lua;");
                luaL_addlstring(&b, list, len);
                luaL_addstring(&b, "/?/init.lua;");
            }
            list = end ? end + 1 : NULL;
        }
    }
    dir[0] = '\0';
    if (n > 0) {
        exe[n] = '\0';
        if ((slash = strrchr(exe, '/')) != NULL)
            *slash = '\0';
        /* The build tree, then an install under any prefix. */
        snprintf(dir, sizeof dir, "%s/lib/athost", exe);
        if (access(dir, R_OK) == 0) {
            snprintf(dir, sizeof dir, "%s/lib", exe);
        } else {
            snprintf(dir, sizeof dir, "%s/../share/athost/lib/athost", exe);
            if (access(dir, R_OK) == 0)
                snprintf(dir, sizeof dir, "%s/../share/athost/lib", exe);
            else
                dir[0] = '\0';
        }
    }
    if (dir[0] == '\0')
        snprintf(dir, sizeof dir, "%s", ATHOST_LIBDIR);
    luaL_addstring(&b, dir);
    luaL_addstring(&b, "/?.lua;");
    luaL_addstring(&b, dir);
    luaL_addstring(&b, "/?/init.lua;");
    luaL_pushresult(&b);
    lua_getglobal(L, "package");
    lua_insert(L, -2);
    lua_getfield(L, -2, "path");
    lua_concat(L, 2);
    lua_setfield(L, -2, "path");
    lua_pop(L, 1);
    lua_pushstring(L, dir);
    lua_setfield(L, LUA_REGISTRYINDEX, "athost.libdir");
    lua_pop(L, 1);
}

static int host_openlibs(lua_State *L)
{
    ath_host_t *h = lua_touserdata(L, 1);
    luaL_openlibs(L);
    lua_pushlightuserdata(L, h);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &HOST_KEY);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, FLOWS);
    lua_newtable(L);
    lua_setfield(L, LUA_REGISTRYINDEX, PARAMS);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_athost);
    lua_setfield(L, -2, "athost");
    lua_pushcfunction(L, luaopen_cjson);
    lua_setfield(L, -2, "cjson");
    lua_pop(L, 1);
    host_paths(h);
    /* Load the module now so that its metatables exist for spawned tasks;
     * it is also the global athost, for -e chunks and -i lines. */
    luaL_requiref(L, "athost", luaopen_athost, 1);
    return 0;
}

ath_host_t *ath_host_new(uv_loop_t *loop, const ath_host_opts_t *opts)
{
    ath_host_t *h = calloc(1, sizeof *h);
    if (h == NULL)
        return NULL;
    if (opts)
        h->opts = *opts;
    h->on_event = h->opts.on_event;
    h->ud = h->opts.ud;
    h->name = h->opts.name ? strdup(h->opts.name) : NULL;
    h->main_ref = LUA_NOREF;
    h->port_ref = LUA_NOREF;
    if (loop == NULL) {
        if (uv_loop_init(&h->own_loop) != 0) {
            free(h);
            return NULL;
        }
        loop = &h->own_loop;
        h->owns_loop = 1;
    }
    h->loop = loop;
    h->t0 = (double)uv_hrtime() / 1e6;
    h->L = luaL_newstate();
    if (h->L == NULL) {
        ath_host_free(h);
        return NULL;
    }
    lua_pushcfunction(h->L, host_openlibs);
    lua_pushlightuserdata(h->L, h);
    if (lua_pcall(h->L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "athost: %s\n", lua_tostring(h->L, -1));
        ath_host_free(h);
        return NULL;
    }
    if (h->opts.transcript) {
        const char *err = NULL;
        h->tr = ath_tr_open(h, h->opts.transcript, &err);
        if (h->tr == NULL) {
            h->error = strdup(err ? err : "cannot open the transcript");
            fprintf(stderr, "athost: %s\n", h->error);
            ath_host_free(h);
            return NULL;
        }
    }
    return h;
}

/* Arguments named like secrets are masked without the script asking. */
static int param_is_secret(const char *key)
{
    static const char *words[] = {"secret", "password", "passwd",
                                  "token",  "psk",      NULL};
    int i;
    for (i = 0; words[i]; i++)
        if (strstr(key, words[i]))
            return 1;
    return 0;
}

int ath_host_set_param(ath_host_t *h, const char *key, const char *value)
{
    lua_getfield(h->L, LUA_REGISTRYINDEX, PARAMS);
    lua_pushstring(h->L, value);
    lua_setfield(h->L, -2, key);
    lua_pop(h->L, 1);
    if (param_is_secret(key))
        ath_host_add_secret(h, value);
    return 0;
}

static int host_config(lua_State *L)
{
    const char *path = lua_tostring(L, 1);
    FILE *f = fopen(path, "rb");
    luaL_Buffer b;
    char buf[4096];
    size_t n;
    if (f == NULL)
        return luaL_error(L, "cannot open config %s: %s", path,
                          strerror(errno));
    luaL_buffinit(L, &b);
    while ((n = fread(buf, 1, sizeof buf, f)) > 0)
        luaL_addlstring(&b, buf, n);
    fclose(f);
    luaL_pushresult(&b);
    lua_getglobal(L, "require");
    lua_pushliteral(L, "cjson");
    lua_call(L, 1, 1);
    lua_getfield(L, -1, "decode");
    lua_pushvalue(L, -3);
    if (lua_pcall(L, 1, 1, 0) != LUA_OK)
        return luaL_error(L, "config %s is not valid JSON: %s", path,
                          lua_tostring(L, -1));
    if (!lua_istable(L, -1))
        return luaL_error(L, "config %s must hold a JSON object", path);
    lua_getfield(L, LUA_REGISTRYINDEX, PARAMS);
    lua_pushnil(L);
    while (lua_next(L, -3)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -4);
        } else {
            lua_pop(L, 1);
        }
    }
    return 0;
}

int ath_host_load_config(ath_host_t *h, const char *path)
{
    lua_pushcfunction(h->L, host_config);
    lua_pushstring(h->L, path);
    if (lua_pcall(h->L, 1, 0, 0) != LUA_OK) {
        free(h->error);
        h->error = strdup(lua_tostring(h->L, -1));
        lua_pop(h->L, 1);
        return -1;
    }
    return 0;
}

void ath_host_set_argv(ath_host_t *h, const char *script, int n, char **argv)
{
    int i;
    lua_createtable(h->L, n, 1);
    lua_pushstring(h->L, script);
    lua_rawseti(h->L, -2, 0);
    for (i = 0; i < n; i++) {
        lua_pushstring(h->L, argv[i]);
        lua_rawseti(h->L, -2, i + 1);
    }
    lua_setglobal(h->L, "arg");
}

uv_loop_t *ath_host_loop(ath_host_t *h)
{
    return h->loop;
}

int ath_host_set_port(ath_host_t *h, const char *spec, int baud)
{
    free(h->port_spec);
    h->port_spec = spec ? strdup(spec) : NULL;
    h->port_baud = baud;
    return 0;
}

static int host_loaded(ath_host_t *h, int st)
{
    if (st != LUA_OK) {
        free(h->error);
        h->error = strdup(lua_tostring(h->L, -1));
        lua_pop(h->L, 1);
        return ATH_EXIT_USAGE;
    }
    luaL_unref(h->L, LUA_REGISTRYINDEX, h->main_ref);
    h->main_ref = luaL_ref(h->L, LUA_REGISTRYINDEX);
    return 0;
}

int ath_host_load_file(ath_host_t *h, const char *path)
{
    return host_loaded(h, luaL_loadfilex(h->L, path, "t"));
}

int ath_host_load_string(ath_host_t *h, const char *chunk, const char *name)
{
    return host_loaded(h,
                       luaL_loadbufferx(h->L, chunk, strlen(chunk),
                                        name ? name : "=(command line)", "t"));
}

int ath_host_start(ath_host_t *h)
{
    lua_State *L = h->L;
    if (h->started || h->main_ref == LUA_NOREF)
        return -1;
    h->started = 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->main_ref);
    lua_getfield(L, LUA_REGISTRYINDEX, PARAMS);
    h->main_co = ath_host_spawn(h, L, 1);
    lua_pop(L, 1);
    ath_host_dispatch(h);
    return 0;
}

int ath_host_run(ath_host_t *h)
{
    if (!h->started && ath_host_start(h) != 0)
        return ATH_EXIT_USAGE;
    while (!h->done || h->handles > 0)
        if (uv_run(h->loop, UV_RUN_ONCE) == 0 && !h->done) {
            host_finish(h, ATH_EXIT_FAIL,
                        "the flow is waiting for nothing "
                        "(no port, timer or task can wake it)");
        }
    return h->status;
}

void ath_host_cancel(ath_host_t *h)
{
    if (!h->done)
        host_finish(h, ATH_EXIT_CANCELED, "canceled");
}

int ath_host_done(const ath_host_t *h)
{
    return h->done;
}

int ath_host_status(const ath_host_t *h)
{
    return h->status;
}

const char *ath_host_error(const ath_host_t *h)
{
    return h->error ? h->error : "";
}

void ath_host_free(ath_host_t *h)
{
    size_t i;
    if (h == NULL)
        return;
    if (h->L) {
        ath_host_close(h);
        if (h->owns_loop)
            while (h->handles > 0)
                uv_run(h->loop, UV_RUN_ONCE);
        if (h->tr)
            ath_tr_close(h->tr);
        lua_close(h->L);
    }
    if (h->owns_loop) {
        uv_run(&h->own_loop, UV_RUN_NOWAIT);
        uv_loop_close(&h->own_loop);
    }
    for (i = 0; i < h->nsecrets; i++)
        free(h->secrets[i]);
    free(h->secrets);
    free(h->ready);
    free(h->error);
    free(h->name);
    free(h->port_spec);
    free(h);
}
