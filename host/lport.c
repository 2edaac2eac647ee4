/*
 * lport.c: the Lua side of ports: send, expect, cmd, read, URC handlers.
 *
 * A port's Lua-side state lives in a table in the registry (p->lref):
 *   ud   the userdata, so an open port is never collected
 *   urc  id -> { fn, spec }: the URC handlers
 *   w    what the wait in progress needs kept alive (its options)
 *   r    the result table of the command in progress
 *   data what to send at the command's prompt
 *
 * Pattern specs: a string starting with '^' is a Lua pattern; any other
 * string is a literal that a line must start with; a table
 * { "^pattern", count = n } announces a payload whose byte count is in
 * capture n.
 */
#include "lport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- the port's Lua-side table ---------------------------------------- */

static void lport_state(lua_State *L, ath_port_t *p)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->lref);
}

/* Sets field k of the port's table to the value on top (popped). */
static void lport_set(lua_State *L, ath_port_t *p, const char *k)
{
    lport_state(L, p);
    lua_insert(L, -2);
    lua_setfield(L, -2, k);
    lua_pop(L, 1);
}

static int lport_get(lua_State *L, ath_port_t *p, const char *k)
{
    int t;
    lport_state(L, p);
    t = lua_getfield(L, -1, k);
    lua_remove(L, -2);
    return t;
}

ath_port_t *ath_lport_check(lua_State *L, int i)
{
    ath_port_t **pp = luaL_checkudata(L, i, ATH_PORT_MT);
    if (*pp == NULL || (*pp)->closed)
        luaL_error(L, "port is closed");
    return *pp;
}

/* The port is freed after its handles close: its userdata must not keep
 * pointing at it. Clears the userdata's pointer and drops the state. */
static void lport_forget(lua_State *L, ath_port_t *p)
{
    ath_port_t **pp;
    if (p->lref == LUA_NOREF)
        return;
    lport_state(L, p);
    lua_getfield(L, -1, "ud");
    pp = lua_touserdata(L, -1);
    if (pp != NULL)
        *pp = NULL;
    lua_pop(L, 2);
    luaL_unref(L, LUA_REGISTRYINDEX, p->lref);
    p->lref = LUA_NOREF;
}

/* The host closes the ports still open when the run ends. */
static void lport_res_close(ath_res_t *r)
{
    ath_port_t *p = (ath_port_t *)r;
    lport_forget(p->h->L, p);
    ath_port_close(p);
}

void ath_lport_push(lua_State *L, ath_port_t *p)
{
    ath_port_t **pp = lua_newuserdatauv(L, sizeof *pp, 0);
    *pp = p;
    luaL_setmetatable(L, ATH_PORT_MT);
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, -2);
    lua_setfield(L, -2, "ud");
    lua_newtable(L);
    lua_setfield(L, -2, "urc");
    p->lref = luaL_ref(L, LUA_REGISTRYINDEX);
    p->res.close = lport_res_close;
}

/* ---- patterns ---------------------------------------------------------- */

/* Fills *pat from the spec at index i; the caller keeps it alive. */
static void lport_pat(lua_State *L, int i, ath_pat_t *pat)
{
    const char *err;
    i = lua_absindex(L, i);
    memset(pat, 0, sizeof *pat);
    if (lua_type(L, i) == LUA_TTABLE) {
        lua_getfield(L, i, "count");
        pat->count_cap = (int)luaL_optinteger(L, -1, 0);
        lua_pop(L, 1);
        lua_rawgeti(L, i, 1);
        pat->text = lua_tolstring(L, -1, &pat->len);
        lua_pop(L, 1); /* still anchored by the spec table */
        if (pat->text == NULL)
            luaL_error(L, "a pattern table needs its pattern at [1]");
    } else {
        pat->text = lua_tolstring(L, i, &pat->len);
        if (pat->text == NULL || lua_type(L, i) != LUA_TSTRING)
            luaL_error(L, "a pattern must be a string or a table, not %s",
                       luaL_typename(L, i));
    }
    pat->kind =
        pat->len > 0 && pat->text[0] == '^' ? ATH_PAT_LUA : ATH_PAT_LITERAL;
    if (pat->kind == ATH_PAT_LUA &&
        ath_pat_check(pat->text, pat->len, &err) != 0)
        luaL_error(L, "bad pattern '%s': %s", pat->text, err);
    if (pat->count_cap > 0 && pat->kind != ATH_PAT_LUA)
        luaL_error(L, "a counted pattern must be a Lua pattern ('^...')");
    if (pat->count_cap < 0 || pat->count_cap > ATH_PAT_MAXCAPTURES)
        luaL_error(L, "count must name a capture (1-%d)", ATH_PAT_MAXCAPTURES);
}

/* Number of specs at index i: nil 0, a string or counted table 1, else
 * the list's length. */
static int lport_npats(lua_State *L, int i)
{
    int n;
    i = lua_absindex(L, i);
    switch (lua_type(L, i)) {
    case LUA_TNIL:
    case LUA_TNONE: return 0;
    case LUA_TSTRING: return 1;
    case LUA_TTABLE:
        lua_getfield(L, i, "count");
        n = lua_isnil(L, -1) ? (int)lua_rawlen(L, i) : 1;
        lua_pop(L, 1);
        return n;
    default:
        return luaL_error(L, "patterns must be a string or a list, not %s",
                          luaL_typename(L, i));
    }
}

/* Converts the specs at index i into pats[0, n). */
static void lport_fill(lua_State *L, int i, ath_pat_t *pats, int n)
{
    int k;
    if (n == 1 && (lua_type(L, i) == LUA_TSTRING ||
                   lua_getfield(L, i, "count") != LUA_TNIL)) {
        if (lua_type(L, i) != LUA_TSTRING)
            lua_pop(L, 1);
        lport_pat(L, i, pats);
        return;
    }
    if (lua_type(L, i) == LUA_TTABLE && n == 1)
        lua_pop(L, 1);
    for (k = 0; k < n; k++) {
        lua_rawgeti(L, i, k + 1);
        lport_pat(L, -1, &pats[k]);
        lua_pop(L, 1);
    }
}

/* Room for n patterns for the wait being set up. */
static ath_pat_t *lport_room(lua_State *L, ath_port_t *p, int n)
{
    ath_pat_t *np;
    if (n <= ATH_PORT_PATS)
        return p->pats;
    np = realloc(p->xpats, (size_t)n * sizeof *np);
    if (np == NULL)
        luaL_error(L, "out of memory");
    return p->xpats = np;
}

/* Sets up p->w's alts, aborts and prompts from fields of the options at
 * index o (the alternatives themselves at index a, if a != 0). */
static void lport_wait_pats(lua_State *L, ath_port_t *p, int a, int o,
                            int prompt_alts)
{
    int na, nb, np;
    ath_pat_t *room;
    o = lua_absindex(L, o);
    if (lua_istable(L, o)) {
        lua_getfield(L, o, "abort");
        lua_getfield(L, o, prompt_alts ? "__none" : "prompt");
    } else {
        lua_pushnil(L); /* no options: no aborts, no prompts */
        lua_pushnil(L);
    }
    na = a ? lport_npats(L, a) : 0;
    nb = lport_npats(L, -2);
    np = prompt_alts ? na : lport_npats(L, -1);
    room = lport_room(L, p, na + nb + np);
    if (a)
        lport_fill(L, a, room, na);
    lport_fill(L, lua_gettop(L) - 1, room + na, nb);
    if (prompt_alts)
        memcpy(room + na + nb, room, (size_t)na * sizeof *room);
    else
        lport_fill(L, lua_gettop(L), room + na + nb, np);
    lua_pop(L, 2);
    p->w.alts = room;
    p->w.nalts = na;
    p->w.aborts = room + na;
    p->w.naborts = nb;
    p->w.prompts = room + na + nb;
    p->w.nprompts = np;
}

/* ---- results ----------------------------------------------------------- */

/* Pushes a match table: line, index, captures, payload. */
static void lport_push_match(lua_State *L, const ath_chat_event_t *ev)
{
    int i;
    lua_createtable(L, ev->matched ? ev->m.ncap : 0, 3);
    lua_pushlstring(L, ev->line, ev->len);
    lua_setfield(L, -2, "line");
    lua_pushinteger(L, ev->index + 1);
    lua_setfield(L, -2, "index");
    for (i = 0; ev->matched && i < ev->m.ncap; i++) {
        const ath_cap_t *c = &ev->m.cap[i];
        if (c->len == ATH_CAP_POSITION)
            lua_pushinteger(L, (lua_Integer)c->off + 1);
        else
            lua_pushlstring(L, ev->line + c->off, (size_t)c->len);
        lua_rawseti(L, -2, i + 1);
    }
    if (ev->payload) {
        lua_pushlstring(L, ev->payload, ev->plen);
        lua_setfield(L, -2, "payload");
    }
}

/* Pushes a one-line account of what the port last said. */
static void lport_push_last(lua_State *L, ath_port_t *p)
{
    char *esc, ago[32];
    size_t n;
    if (p->lastlen == 0) {
        lua_pushfstring(L, "%s said nothing", p->name);
        return;
    }
    esc = ath_escape(p->last, p->lastlen);
    n = esc ? strlen(esc) : 0;
    snprintf(ago, sizeof ago, "%.1f", (ath_host_now(p->h) - p->last_t) / 1e3);
    lua_pushfstring(L, "%s last said \"%s%s\" %s s ago", p->name,
                    n > 120 ? "..." : "",
                    n > 120 ? esc + n - 120
                    : esc   ? esc
                            : "",
                    ago);
    free(esc);
}

/* Ends the wait: moves the nvals values on top of L to the waiter and
 * wakes it, or leaves them in place when the waiter is L itself. */
static void lport_finish(ath_port_t *p, lua_State *L, int nvals)
{
    lua_State *co = p->waiter;
    p->waiter = NULL;
    if (p->h->tr)
        ath_tr_hold(p->h->tr, p->name, 0);
    ath_chat_cancel(p->chat);
    uv_timer_stop(&p->timer);
    lua_pushnil(L);
    lport_set(L, p, "w");
    if (co == L) {
        p->sync_n = nvals;
        return;
    }
    lua_xmove(L, co, nvals);
    ath_host_wake(p->h, co, nvals);
}

/* Fails the wait with (nil, "CODE: what", CODE[, r]). */
static void lport_fail(ath_port_t *p, lua_State *L, const char *code,
                       const char *what, int with_r)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", code, what);
    lua_pushstring(L, code);
    if (with_r)
        lport_get(L, p, "r");
    lport_finish(p, L, with_r ? 4 : 3);
}

/* Pushes what the wait in progress was waiting for. */
static void lport_push_waited(lua_State *L, ath_port_t *p)
{
    if (p->cmdname[0] && p->w.mode == ATH_WAIT_CMD)
        lua_pushfstring(L, "no final result to %s", p->cmdname);
    else if (p->w.mode == ATH_WAIT_READ)
        lua_pushfstring(L, "%d of %d bytes", (int)ath_chat_pending(p->chat),
                        (int)p->w.nbytes);
    else if (p->w.mode == ATH_WAIT_LINE)
        lua_pushliteral(L, "no line");
    else if (p->w.nalts > 0 || p->w.nprompts > 0) {
        const ath_pat_t *a = p->w.nalts ? p->w.alts : p->w.prompts;
        lua_pushfstring(L, "no \"%s\"", a->text);
    } else
        lua_pushliteral(L, "nothing");
    if (p->cmdname[0] && p->w.mode != ATH_WAIT_CMD)
        lua_pushfstring(L, " after %s", p->cmdname);
    else
        lua_pushliteral(L, "");
    lua_concat(L, 2);
}

static void lport_timeout_cb(uv_timer_t *t)
{
    ath_port_t *p = t->data;
    lua_State *L = p->h->L;
    if (p->waiter == NULL)
        return;
    lport_push_waited(L, p);
    lport_push_last(L, p);
    lua_pushfstring(L, "%s in %d ms; %s", lua_tostring(L, -2),
                    (int)(ath_host_now(p->h) - p->t_wait + 0.5),
                    lua_tostring(L, -1));
    lport_fail(p, L, "ETIMEDOUT", lua_tostring(L, -1), 0);
    lua_pop(L, 3);
    ath_host_dispatch(p->h);
}

/* The final result of a command: r on OK, else nil, msg, code, r. */
static void lport_final(ath_port_t *p, lua_State *L, const ath_chat_event_t *ev)
{
    static const char *codes[] = {"OK", "ERROR", "CME", "CMS"};
    int r;
    lport_get(L, p, "r");
    r = lua_gettop(L);
    lua_pushlstring(L, ev->line, ev->len);
    lua_setfield(L, r, "final");
    lua_pushnumber(L, ath_host_now(p->h) - p->t_wait);
    lua_setfield(L, r, "ms");
    if (ev->index == ATH_FINAL_OK || ev->index >= ATH_FINAL_ALT) {
        lport_finish(p, L, 1);
        return;
    }
    if (ev->index == ATH_FINAL_CME || ev->index == ATH_FINAL_CMS) {
        /* +CME ERROR: 767 (CMEE=1), or a text with CMEE=2 */
        const char *num = ev->line + 11, *end = ev->line + ev->len;
        while (num < end && *num == ' ')
            num++;
        if (num < end && *num >= '0' && *num <= '9')
            lua_pushinteger(L, atoi(num));
        else
            lua_pushlstring(L, num, (size_t)(end - num));
        lua_setfield(L, r, ev->index == ATH_FINAL_CME ? "cme" : "cms");
    }
    lua_pushstring(L, codes[ev->index]);
    lua_setfield(L, r, "error");
    lua_pushnil(L);
    lua_pushlstring(L, ev->line, ev->len);
    lua_pushfstring(L, "%s at %s", lua_tostring(L, -1),
                    p->cmdname[0] ? p->cmdname : "the command");
    lua_remove(L, -2);
    lua_pushstring(L, codes[ev->index]);
    lua_pushvalue(L, r);
    lua_remove(L, r);
    lport_finish(p, L, 4);
}

/* A reply line of the command in flight: kept in r.lines; the first line
 * the reply pattern matched gives r's captures and r.line. */
static void lport_reply(ath_port_t *p, lua_State *L, const ath_chat_event_t *ev)
{
    int r, i;
    if (p->h->tr) /* a secret in it is masked once the flow has it */
        ath_tr_hold(p->h->tr, p->name, 1);
    lport_get(L, p, "r");
    r = lua_gettop(L);
    lua_getfield(L, r, "lines");
    lua_pushlstring(L, ev->line, ev->len);
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 1);
    if (ev->matched && lua_getfield(L, r, "line") == LUA_TNIL) {
        lua_pushlstring(L, ev->line, ev->len);
        lua_setfield(L, r, "line");
        for (i = 0; i < ev->m.ncap; i++) {
            const ath_cap_t *c = &ev->m.cap[i];
            if (c->len == ATH_CAP_POSITION)
                lua_pushinteger(L, (lua_Integer)c->off + 1);
            else
                lua_pushlstring(L, ev->line + c->off, (size_t)c->len);
            lua_rawseti(L, r, i + 1);
        }
        if (ev->payload) {
            lua_pushlstring(L, ev->payload, ev->plen);
            lua_setfield(L, r, "payload");
        }
    }
    lua_settop(L, r - 1);
}

/* A prompt during a command: send its data, or end the command here. */
static void lport_prompt(ath_port_t *p, lua_State *L,
                         const ath_chat_event_t *ev)
{
    size_t n;
    const char *data;
    if (lport_get(L, p, "data") == LUA_TSTRING) {
        int r;
        data = lua_tolstring(L, -1, &n);
        r = ath_port_write(p, data, n);
        lua_pop(L, 1); /* before the results a failure leaves */
        if (r != 0)
            lport_fail(p, L, "EIO", "cannot send the data", 0);
        return;
    }
    lua_pop(L, 1);
    lport_get(L, p, "r");
    lua_pushlstring(L, ev->line, ev->len);
    lua_setfield(L, -2, "prompt");
    lport_finish(p, L, 1);
}

static void lport_urc(ath_port_t *p, lua_State *L, const ath_chat_event_t *ev)
{
    ath_event_t e;
    int top = lua_gettop(L);
    lport_get(L, p, "urc");
    if (lua_rawgeti(L, -1, ev->index) == LUA_TTABLE) {
        memset(&e, 0, sizeof e);
        e.type = ATH_EVENT_URC;
        e.port = p->name;
        lua_pushlstring(L, ev->line, ev->len);
        e.text = lua_tostring(L, -1);
        ath_host_emit(p->h, &e);
        lua_pop(L, 1);
        lua_getfield(L, -1, "fn");
        lport_push_match(L, ev);
        lua_pushnil(L); /* the index of a URC means nothing */
        lua_setfield(L, -2, "index");
        ath_host_spawn(p->h, L, 1);
    }
    lua_settop(L, top);
}

void ath_lport_process(ath_port_t *p, lua_State *L)
{
    ath_chat_event_t ev;
    while (!p->closed && ath_chat_next(p->chat, &ev)) {
        switch (ev.type) {
        case ATH_EV_URC: lport_urc(p, L, &ev); break;
        case ATH_EV_MATCH:
            lport_push_match(L, &ev);
            lport_finish(p, L, 1);
            break;
        case ATH_EV_PROMPT:
            if (p->w.mode == ATH_WAIT_CMD) {
                lport_prompt(p, L, &ev);
            } else {
                lport_push_match(L, &ev);
                lua_pushboolean(L, 1);
                lua_setfield(L, -2, "prompt");
                lport_finish(p, L, 1);
            }
            break;
        case ATH_EV_ABORT: {
            /* The results stay on L's stack when L itself waited: remove
             * the message under them, not what is on top. */
            int msg;
            lua_pushlstring(L, ev.line, ev.len);
            lua_pushfstring(L, "%s aborted on \"%s\"",
                            p->cmdname[0] ? p->cmdname : "the wait",
                            lua_tostring(L, -1));
            lua_remove(L, -2);
            msg = lua_gettop(L);
            lport_fail(p, L, "EABORT", lua_tostring(L, msg),
                       p->cmdname[0] != 0);
            lua_remove(L, msg);
            break;
        }
        case ATH_EV_FINAL: lport_final(p, L, &ev); break;
        case ATH_EV_REPLY: lport_reply(p, L, &ev); break;
        case ATH_EV_LINE:
        case ATH_EV_READ:
            lua_pushlstring(L, ev.line, ev.len);
            lport_finish(p, L, 1);
            break;
        case ATH_EV_DROP:
            if (p->h->tr) {
                char note[96];
                snprintf(note, sizeof note,
                         "(dropped %zu bytes nobody "
                         "waited for)",
                         ev.len);
                ath_tr_note(p->h->tr, p->name, note);
            }
            break;
        }
    }
}

void ath_lport_broken(ath_port_t *p, lua_State *L)
{
    if (p->waiter) {
        ath_lport_process(p, L); /* what came before the end counts */
    }
    if (p->waiter) {
        lport_push_waited(L, p);
        lport_push_last(L, p);
        if (p->eof_err)
            lua_pushfstring(L, "%s failed (%s) with %s; %s", p->name,
                            strerror(p->eof_err), lua_tostring(L, -2),
                            lua_tostring(L, -1));
        else
            lua_pushfstring(L, "%s closed by the other side with %s; %s",
                            p->name, lua_tostring(L, -2), lua_tostring(L, -1));
        lport_fail(p, L, "EOF", lua_tostring(L, -1), 0);
        lua_pop(L, 3);
    }
    if (p->drainer)
        ath_lport_drained(p, L, p->eof_err ? p->eof_err : EPIPE);
}

void ath_lport_drained(ath_port_t *p, lua_State *L, int err)
{
    lua_State *co = p->drainer;
    if (co == NULL)
        return;
    p->drainer = NULL;
    if (err == 0) {
        lua_pushboolean(L, 1);
        lua_xmove(L, co, 1);
        ath_host_wake(p->h, co, 1);
        return;
    }
    lua_pushnil(L);
    lua_pushfstring(L, "EIO: cannot write to %s: %s", p->name, strerror(err));
    lua_pushliteral(L, "EIO");
    lua_xmove(L, co, 3);
    ath_host_wake(p->h, co, 3);
}

/* ---- waits ------------------------------------------------------------- */

/* Starts the wait set up in p->w for the running flow L; returns its
 * results at once when the buffer already holds them, else yields. The
 * options (or whatever anchors the wait's strings) are at index anchor. */
static int lport_wait(lua_State *L, ath_port_t *p, int anchor, int timeout)
{
    int top;
    if (anchor) {
        lua_pushvalue(L, anchor);
        lport_set(L, p, "w");
    }
    p->waiter = L;
    p->sync_n = -1;
    p->t_wait = ath_host_now(p->h);
    ath_chat_wait(p->chat, &p->w);
    top = lua_gettop(L);
    ath_lport_process(p, L);
    if (p->sync_n >= 0)
        return p->sync_n;
    lua_settop(L, top);
    if (p->eof) {
        /* What arrived before the end was served above; now the end. */
        lport_push_waited(L, p);
        lport_push_last(L, p);
        lua_pushfstring(L, "%s is closed, with %s; %s", p->name,
                        lua_tostring(L, -2), lua_tostring(L, -1));
        lport_fail(p, L, "EOF", lua_tostring(L, -1), 0);
        return p->sync_n;
    }
    if (timeout > 0) {
        uv_update_time(p->h->loop); /* the flow may have run a while */
        uv_timer_start(&p->timer, lport_timeout_cb, (uint64_t)timeout, 0);
    }
    return lua_yield(L, 0);
}

/* Common checks of a call that waits on p; returns the timeout. */
static int lport_begin(lua_State *L, ath_port_t *p, int o)
{
    int timeout = p->timeout_ms;
    ath_host_check_flow(L);
    if (p->waiter)
        luaL_error(L, "%s is busy: another flow is waiting on it", p->name);
    if (lua_type(L, o) == LUA_TTABLE) {
        lua_getfield(L, o, "timeout");
        timeout = (int)luaL_optinteger(L, -1, timeout);
        lua_pop(L, 1);
    } else if (!lua_isnoneornil(L, o)) {
        luaL_checktype(L, o, LUA_TTABLE);
    }
    memset(&p->w, 0, sizeof p->w);
    p->cmdname[0] = '\0';
    return timeout;
}

static int l_port_expect(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    int timeout, prompt = 0;
    if (lua_isnoneornil(L, 3))
        lua_settop(L, 2), lua_newtable(L);
    timeout = lport_begin(L, p, 3);
    if (lua_getfield(L, 3, "prompt") != LUA_TNIL)
        prompt = lua_toboolean(L, -1);
    lua_pop(L, 1);
    if (lport_npats(L, 2) == 0)
        luaL_argerror(L, 2, "expect needs at least one pattern");
    p->w.mode = ATH_WAIT_EXPECT;
    lport_wait_pats(L, p, 2, 3, prompt);
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, 3);
    lua_rawseti(L, -2, 2);
    return lport_wait(L, p, lua_gettop(L), timeout);
}

static int l_port_prompt(lua_State *L)
{
    lua_settop(L, 3);
    if (lua_isnil(L, 3)) {
        lua_newtable(L);
        lua_replace(L, 3);
    }
    luaL_checktype(L, 3, LUA_TTABLE);
    lua_pushboolean(L, 1);
    lua_setfield(L, 3, "prompt");
    return l_port_expect(L);
}

static int l_port_readline(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    int timeout = lport_begin(L, p, 2);
    p->w.mode = ATH_WAIT_LINE;
    return lport_wait(L, p, 0, timeout);
}

static int l_port_read(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    int timeout = lport_begin(L, p, 3);
    luaL_argcheck(L, n >= 0 && n <= (1 << 30), 2, "byte count out of range");
    p->w.mode = ATH_WAIT_READ;
    p->w.nbytes = (size_t)n;
    return lport_wait(L, p, 0, timeout);
}

/* port:recv([max]): what has arrived, 1 to max bytes (default 64 KiB),
 * for binary protocols. */
static int l_port_recv(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    lua_Integer n = luaL_optinteger(L, 2, 65536);
    int timeout = lport_begin(L, p, 3);
    luaL_argcheck(L, n >= 1 && n <= (1 << 30), 2, "byte count out of range");
    p->w.mode = ATH_WAIT_READ;
    p->w.nbytes = (size_t)n;
    p->w.some = 1;
    return lport_wait(L, p, 0, timeout);
}

/* Derives the reply prefix of a command: AT+CGATT? -> "+CGATT:". */
static void lport_reply_prefix(ath_port_t *p, const char *cmd, size_t n)
{
    size_t i = 2, k = 0;
    p->w.reply = NULL;
    if (n < 4 || (cmd[0] != 'A' && cmd[0] != 'a') ||
        (cmd[1] != 'T' && cmd[1] != 't') ||
        (cmd[2] != '+' && cmd[2] != '^' && cmd[2] != '$' && cmd[2] != '%'))
        return;
    while (i < n && k < sizeof p->replybuf - 2 && cmd[i] != '=' &&
           cmd[i] != '?' && cmd[i] != ' ' && cmd[i] != ';')
        p->replybuf[k++] = cmd[i++];
    p->replybuf[k++] = ':';
    p->replybuf[k] = '\0';
    p->reply.kind = ATH_PAT_LITERAL;
    p->reply.text = p->replybuf;
    p->reply.len = k;
    p->reply.count_cap = 0;
    p->w.reply = &p->reply;
}

/* The command's name for messages: up to '=' or '?'. */
static void lport_cmdname(ath_port_t *p, const char *cmd, size_t n)
{
    size_t k = 0;
    while (k < n && k < sizeof p->cmdname - 1 && cmd[k] != '=' &&
           cmd[k] != '\r' && cmd[k] != '\n')
        k++;
    memcpy(p->cmdname, cmd, k);
    p->cmdname[k] = '\0';
}

/* cmd and final share this: wait for a final result code. cmd is NULL
 * for final (nothing is sent). */
static int lport_cmd(lua_State *L, ath_port_t *p, const char *cmd, size_t n,
                     int o)
{
    int timeout = lport_begin(L, p, o);
    int t, has_o = lua_istable(L, o);
    p->w.mode = ATH_WAIT_CMD;
    if (has_o)
        lua_getfield(L, o, "final");
    else
        lua_pushnil(L);
    lport_wait_pats(L, p, lua_gettop(L), o, 0);
    lua_pop(L, 1);
    if (cmd) {
        lport_cmdname(p, cmd, n);
        p->w.echo = cmd;
        p->w.echolen = n;
        ath_chat_flush(p->chat); /* a new command, a new dialogue */
    } else {
        lport_get(L, p, "lastcmd");
        if (lua_isstring(L, -1))
            lport_cmdname(p, lua_tostring(L, -1), lua_rawlen(L, -1));
        lua_pop(L, 1);
    }
    t = has_o ? lua_getfield(L, o, "reply") : (lua_pushnil(L), LUA_TNIL);
    if (t == LUA_TNIL && cmd) {
        lport_reply_prefix(p, cmd, n);
    } else if (t != LUA_TNIL && t != LUA_TBOOLEAN) {
        lport_pat(L, -1, &p->reply);
        p->w.reply = &p->reply;
    }
    lua_pop(L, 1);
    /* the result table, and what to send at the prompt */
    lua_createtable(L, 0, 4);
    lua_createtable(L, 2, 0);
    lua_setfield(L, -2, "lines");
    if (cmd) {
        lua_pushvalue(L, 2);
        lua_setfield(L, -2, "command");
        lua_pushvalue(L, 2);
        lport_set(L, p, "lastcmd");
    }
    lport_set(L, p, "r");
    if (has_o && lua_getfield(L, o, "data") != LUA_TNIL) {
        luaL_checktype(L, -1, LUA_TSTRING);
        lport_set(L, p, "data");
    } else {
        if (has_o)
            lua_pop(L, 1);
        lua_pushnil(L);
        lport_set(L, p, "data");
    }
    /* anchor: what the wait points into (the options, the command) */
    if (has_o) {
        lua_createtable(L, 2, 0);
        lua_pushvalue(L, o);
        lua_rawseti(L, -2, 1);
        if (cmd) {
            lua_pushvalue(L, 2);
            lua_rawseti(L, -2, 2);
        }
    } else {
        lua_pushvalue(L, cmd ? 2 : 1);
    }
    if (cmd) {
        size_t el;
        const char *eol = p->eol;
        char buf[256];
        int r;
        if (has_o && lua_getfield(L, o, "eol") != LUA_TNIL)
            eol = luaL_checkstring(L, -1); /* anchored by the options */
        if (has_o)
            lua_pop(L, 1);
        el = strlen(eol);
        if (n + el <= sizeof buf) {
            memcpy(buf, cmd, n);
            memcpy(buf + n, eol, el);
            r = ath_port_write(p, buf, n + el);
        } else {
            lua_pushlstring(L, cmd, n);
            lua_pushstring(L, eol);
            lua_concat(L, 2);
            r = ath_port_write(p, lua_tostring(L, -1), n + el);
            lua_pop(L, 1);
        }
        if (r != 0) {
            lua_pushnil(L);
            lua_pushfstring(L, "EIO: cannot send %s to %s: %s", p->cmdname,
                            p->name, strerror(-r));
            lua_pushliteral(L, "EIO");
            return 3;
        }
    }
    return lport_wait(L, p, lua_gettop(L), timeout);
}

static int l_port_cmd(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    size_t n;
    const char *cmd = luaL_checklstring(L, 2, &n);
    lua_settop(L, 3);
    return lport_cmd(L, p, cmd, n, 3);
}

static int l_port_final(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    lua_settop(L, 2);
    return lport_cmd(L, p, NULL, 0, 2);
}

static int l_port_send(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    int r;
    if (p->drainer)
        luaL_error(L, "%s is busy: another flow is sending", p->name);
    r = ath_port_write(p, s, n);
    if (r != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "EIO: cannot write to %s: %s", p->name,
                        strerror(-r));
        lua_pushliteral(L, "EIO");
        return 3;
    }
    if (p->wlen == 0 || !lua_isyieldable(L)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    ath_host_check_flow(L);
    p->drainer = L;
    return lua_yield(L, 0);
}

static int l_port_sendline(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    luaL_checkstring(L, 2);
    lua_settop(L, 2);
    lua_pushstring(L, p->eol);
    lua_concat(L, 2);
    return l_port_send(L);
}

static int l_port_on(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    ath_pat_t pat;
    int id;
    luaL_checkany(L, 2);
    luaL_checktype(L, 3, LUA_TFUNCTION);
    lport_pat(L, 2, &pat);
    id = ++p->urc_next;
    lport_get(L, p, "urc");
    lua_createtable(L, 0, 2);
    lua_pushvalue(L, 2);
    lua_setfield(L, -2, "spec");
    lua_pushvalue(L, 3);
    lua_setfield(L, -2, "fn");
    lua_rawseti(L, -2, id);
    lua_pop(L, 1);
    if (ath_chat_urc_add(p->chat, &pat, id) != 0)
        return luaL_error(L, "out of memory");
    /* Lines already kept may be this URC's. */
    ath_lport_process(p, L);
    lua_pushinteger(L, id);
    return 1;
}

static int l_port_off(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    lua_Integer id = luaL_checkinteger(L, 2);
    ath_chat_urc_remove(p->chat, (int)id);
    lport_get(L, p, "urc");
    lua_pushnil(L);
    lua_rawseti(L, -2, id);
    return 0;
}

static int l_port_flush(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    ath_chat_flush(p->chat);
    return 0;
}

static int l_port_set(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "timeout") != LUA_TNIL)
        p->timeout_ms = (int)luaL_checkinteger(L, -1);
    if (lua_getfield(L, 2, "eol") != LUA_TNIL) {
        size_t n;
        const char *e = luaL_checklstring(L, -1, &n);
        luaL_argcheck(L, n < sizeof p->eol, 2, "eol is too long");
        memcpy(p->eol, e, n + 1);
    }
    lua_getfield(L, 2, "dtr");
    lua_getfield(L, 2, "rts");
    if (!lua_isnil(L, -1) || !lua_isnil(L, -2)) {
        int dtr = lua_isnil(L, -2) ? -1 : lua_toboolean(L, -2);
        int rts = lua_isnil(L, -1) ? -1 : lua_toboolean(L, -1);
        int r = ath_serial_lines(p->fd, dtr, rts);
        if (r != 0) {
            lua_pushnil(L);
            lua_pushfstring(L, "EIO: %s: %s", p->name, strerror(-r));
            lua_pushliteral(L, "EIO");
            return 3;
        }
    }
    lua_pushboolean(L, 1);
    return 1;
}

/* Fails whoever waits on p, then closes it. */
void ath_lport_close(ath_port_t *p, lua_State *L)
{
    if (p->closed)
        return;
    if (p->waiter) {
        if (p->waiter == L) {
            p->waiter = NULL;
        } else {
            lua_pushfstring(L, "%s was closed while a flow waited on it",
                            p->name);
            lport_fail(p, L, "ECLOSED", lua_tostring(L, -1), 0);
            lua_pop(L, 1);
        }
    }
    if (p->drainer && p->drainer != L)
        ath_lport_drained(p, L, EPIPE);
    if (p->connecting && p->connecting != L)
        ath_lport_connected(p, L, ECANCELED, "close");
    ath_port_close(p);
    lport_forget(L, p);
}

static int l_port_close(lua_State *L)
{
    ath_port_t **pp = luaL_checkudata(L, 1, ATH_PORT_MT);
    if (*pp && !(*pp)->closed) {
        ath_lport_close(*pp, L);
        ath_host_dispatch(ath_host_from(L));
    }
    return 0;
}

static int l_port_gc(lua_State *L)
{
    ath_port_t **pp = luaL_checkudata(L, 1, ATH_PORT_MT);
    if (*pp && !(*pp)->closed)
        ath_port_close(*pp);
    *pp = NULL;
    return 0;
}

static int l_port_tostring(lua_State *L)
{
    ath_port_t **pp = luaL_checkudata(L, 1, ATH_PORT_MT);
    if (*pp == NULL || (*pp)->closed)
        lua_pushliteral(L, "athost.port (closed)");
    else
        lua_pushfstring(L, "athost.port (%s)", (*pp)->name);
    return 1;
}

static const luaL_Reg port_methods[] = {{"send", l_port_send},
                                        {"sendline", l_port_sendline},
                                        {"expect", l_port_expect},
                                        {"prompt", l_port_prompt},
                                        {"readline", l_port_readline},
                                        {"read", l_port_read},
                                        {"recv", l_port_recv},
                                        {"cmd", l_port_cmd},
                                        {"final", l_port_final},
                                        {"on", l_port_on},
                                        {"off", l_port_off},
                                        {"flush", l_port_flush},
                                        {"set", l_port_set},
                                        {"close", l_port_close},
                                        {NULL, NULL}};

/* Methods, then the fields name, path, port, pending, eof, closed. */
static int l_port_index(lua_State *L)
{
    ath_port_t **pp = luaL_checkudata(L, 1, ATH_PORT_MT);
    const char *k = luaL_checkstring(L, 2);
    ath_port_t *p = *pp;
    if (lua_getfield(L, lua_upvalueindex(1), k) != LUA_TNIL)
        return 1; /* a method: the common case first */
    lua_pop(L, 1);
    if (strcmp(k, "closed") == 0) {
        lua_pushboolean(L, p == NULL || p->closed);
        return 1;
    }
    if (p != NULL && !p->closed) {
        if (strcmp(k, "name") == 0) {
            lua_pushstring(L, p->name);
            return 1;
        }
        if (strcmp(k, "path") == 0) {
            lua_pushstring(L, p->path ? p->path : p->name);
            return 1;
        }
        if (strcmp(k, "pending") == 0) {
            lua_pushinteger(L, (lua_Integer)ath_chat_pending(p->chat));
            return 1;
        }
        if (strcmp(k, "eof") == 0) {
            lua_pushboolean(L, p->eof);
            return 1;
        }
        if (strcmp(k, "port") == 0 && p->kind == ATH_PORT_LISTEN) {
            lport_get(L, p, "portnum");
            return 1;
        }
    }
    lua_pushnil(L);
    return 1;
}

static const luaL_Reg port_meta[] = {{"__gc", l_port_gc},
                                     {"__close", l_port_close},
                                     {"__tostring", l_port_tostring},
                                     {NULL, NULL}};

void ath_lport_open(lua_State *L)
{
    luaL_newmetatable(L, ATH_PORT_MT);
    luaL_setfuncs(L, port_meta, 0);
    luaL_newlib(L, port_methods);
    lua_pushcclosure(L, l_port_index, 1);
    lua_setfield(L, -2, "__index");
    lua_pop(L, 1);
    ath_lopen_open(L);
}
