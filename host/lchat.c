/*
 * lchat.c: the dispatcher between ports and Lua. Every port the binding
 * opens reports here (ath_lport_event): new bytes, an end, a drained
 * queue, a connect or handshake that finished, an accepted connection.
 * What the chat engine makes of the bytes becomes Lua values: match
 * tables, command results, reply lines, prompts, URC handlers run as
 * flows; and the ends of a wait that are failures: abort, EOF, timeout, a
 * write that failed. Flows whose wait ended are queued with
 * ath_host_wake and resumed when the port's callback settles.
 *
 * It also owns each port's Lua side (ath_lport_t and the registry table
 * LP(p)->lref):
 *   ud   the userdata, so an open port is never collected
 *   urc  id -> { fn, spec }: the URC handlers
 *   w    what the wait in progress needs kept alive (its options)
 *   data what to send at the command's prompt
 * and, in registry slots of their own (LP(p)->r_ref, lines_ref), the
 * result table of the command in progress and its lines.
 * lport.c, lopen.c and ltls.c call into it; it calls none of them.
 */
#include "lport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static void lport_drained(ath_port_t *p, lua_State *L, int err);

/* ---- the port's Lua-side table ---------------------------------------- */

static void lport_state(lua_State *L, ath_port_t *p)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, LP(p)->lref);
}

void ath_lport_set(lua_State *L, ath_port_t *p, int k)
{
    lport_state(L, p);
    lua_insert(L, -2);
    lua_rawseti(L, -2, k);
    lua_pop(L, 1);
}

int ath_lport_get(lua_State *L, ath_port_t *p, int k)
{
    int t;
    lport_state(L, p);
    t = lua_rawgeti(L, -1, k);
    lua_remove(L, -2);
    return t;
}

void ath_lport_setk(lua_State *L, ath_port_t *p, int t, int k)
{
    t = lua_absindex(L, t);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->h->port_keys[k]);
    lua_insert(L, -2);
    lua_rawset(L, t);
}

void ath_lport_key(lua_State *L, ath_port_t *p, int k)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->h->port_keys[k]);
}

/* Pushes the result table of the command in progress. */
static void lport_r(lua_State *L, ath_port_t *p)
{
    lua_rawgeti(L, LUA_REGISTRYINDEX, LP(p)->r_ref);
}

int ath_lport_getk(lua_State *L, ath_port_t *p, int t, int k)
{
    t = lua_absindex(L, t);
    lua_rawgeti(L, LUA_REGISTRYINDEX, p->h->port_keys[k]);
    return lua_rawget(L, t);
}

/* Interns the keys of result tables and remembers the port metatable
 * (on top) for this Lua state. */
void ath_lport_keys(lua_State *L)
{
    static const char *const names[ATH_K_N] = {
        "lines", "command", "final", "ms", "line", "index",
        "payload", "prompt", "outcome", "error", "cme", "cms", "OK"};
    ath_host_t *h = ath_host_from(L);
    int i;
    for (i = 0; i < ATH_K_N; i++) {
        lua_pushstring(L, names[i]);
        h->port_keys[i] = luaL_ref(L, LUA_REGISTRYINDEX);
    }
    h->port_mt = lua_topointer(L, -1);
    lua_pushvalue(L, -1);
    h->port_mt_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

ath_port_t *ath_lport_check(lua_State *L, int i)
{
    ath_port_t **pp = lua_touserdata(L, i);
    int ok = 0;
    /* The metatable compared by address: no lookup by name. */
    if (pp != NULL && lua_getmetatable(L, i)) {
        /* a flow carries its host (ath_host_spawn); the metatable is the
         * state's, the same for every host in it */
        ok = lua_topointer(L, -1) == ath_host_from(L)->port_mt;
        lua_pop(L, 1);
    }
    if (!ok)
        pp = luaL_checkudata(L, i, ATH_PORT_MT); /* raises */
    if (*pp == NULL || (*pp)->closed)
        luaL_error(L, "port is closed");
    return *pp;
}

/* The port is freed after its handles close: its userdata must not keep
 * pointing at it. Clears the userdata's pointer and drops the state. */
static void lport_forget(lua_State *L, ath_port_t *p)
{
    ath_port_t **pp;
    if (LP(p)->lref == LUA_NOREF)
        return;
    lport_state(L, p);
    lua_rawgeti(L, -1, ATH_LS_UD);
    pp = lua_touserdata(L, -1);
    if (pp != NULL)
        *pp = NULL;
    lua_pop(L, 2);
    luaL_unref(L, LUA_REGISTRYINDEX, LP(p)->lref);
    luaL_unref(L, LUA_REGISTRYINDEX, LP(p)->r_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, LP(p)->lines_ref);
    luaL_unref(L, LUA_REGISTRYINDEX, LP(p)->line_ref);
    LP(p)->lref = LP(p)->r_ref = LP(p)->lines_ref = LUA_NOREF;
    LP(p)->line_ref = LUA_NOREF;
    LP(p)->has_line = 0;
}

/* The host closes the ports still open when the run ends. */
static void lport_res_close(ath_res_t *r)
{
    ath_port_t *p = (ath_port_t *)r;
    lport_forget(p->h->L, p);
    ath_port_close(p);
}

static void lport_res_abandon(ath_res_t *r, lua_State *co)
{
    ath_lport_abandon((ath_port_t *)r, co);
}

void ath_lport_push(lua_State *L, ath_port_t *p)
{
    ath_port_t **pp;
    if (p->data == NULL && (p->data = calloc(1, sizeof(ath_lport_t))) == NULL) {
        ath_port_close(p);
        luaL_error(L, "out of memory");
    }
    LP(p)->lref = LP(p)->r_ref = LP(p)->lines_ref = LUA_NOREF;
    LP(p)->line_ref = LUA_NOREF;
    p->cb = ath_lport_event;
    pp = lua_newuserdatauv(L, sizeof *pp, 0);
    *pp = p;
    luaL_setmetatable(L, ATH_PORT_MT);
    lua_createtable(L, ATH_LS_N, 0);
    lua_pushvalue(L, -2);
    lua_rawseti(L, -2, ATH_LS_UD);
    lua_newtable(L);
    lua_rawseti(L, -2, ATH_LS_URC);
    LP(p)->lref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushboolean(L, 0); /* a placeholder: a nil gets no ref */
    LP(p)->r_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushboolean(L, 0);
    LP(p)->lines_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_pushboolean(L, 0);
    LP(p)->line_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    p->res.close = lport_res_close;
    p->res.abandon = lport_res_abandon;
}

/* ---- results ----------------------------------------------------------- */

/* Payloads and reads of at least this many bytes become strings in the
 * block they arrived in: never two copies of them at once. */
#define LPORT_TAKE_MIN (1u << 20)

/* Pushes an event's payload or READ bytes data[0, n) as a string; a big
 * one is taken from the engine (ath_chat_take), so this must be the
 * event's last use: its pointers go stale. */
static void lport_push_bytes(lua_State *L, ath_port_t *p, const char *data,
                             size_t n)
{
    size_t front;
    char *blk;
    if (n >= LPORT_TAKE_MIN && (front = ath_lua_front(L)) != 0 &&
        (blk = ath_chat_take(p->chat, data, n, front)) != NULL) {
        ath_lua_pushtaken(L, blk, n);
        return;
    }
    lua_pushlstring(L, data, n);
}

/* Pushes a match table: line, index, captures, payload (last: see
 * lport_push_bytes). */
static void lport_push_match(lua_State *L, ath_port_t *p,
                             const ath_chat_event_t *ev)
{
    int i;
    lua_createtable(L, ev->matched ? ev->m.ncap : 0, 3);
    lua_pushlstring(L, ev->line, ev->len);
    ath_lport_setk(L, p, -2, ATH_K_LINE);
    lua_pushinteger(L, ev->index + 1);
    ath_lport_setk(L, p, -2, ATH_K_INDEX);
    for (i = 0; ev->matched && i < ev->m.ncap; i++) {
        const ath_cap_t *c = &ev->m.cap[i];
        if (c->len == ATH_CAP_POSITION)
            lua_pushinteger(L, (lua_Integer)c->off + 1);
        else
            lua_pushlstring(L, ev->line + c->off, (size_t)c->len);
        lua_rawseti(L, -2, i + 1);
    }
    if (ev->payload) {
        lport_push_bytes(L, p, ev->payload, ev->plen);
        ath_lport_setk(L, p, -2, ATH_K_PAYLOAD);
    }
}

/* Pushes s[0, n) for a message, in quotes: secrets masked, control
 * characters escaped, its last 120 characters when it is longer. */
static void lport_push_quoted(lua_State *L, ath_port_t *p, const char *s,
                              size_t n)
{
    size_t rn = 0, en;
    char *red = ath_host_redact(p->h, s, n, &rn);
    char *esc = red ? ath_escape(red, rn) : NULL;
    free(red);
    en = esc ? strlen(esc) : 0;
    lua_pushfstring(L, "\"%s%s\"", en > 120 ? "..." : "",
                    esc ? esc + (en > 120 ? en - 120 : 0) : "");
    free(esc);
}

/* Pushes a one-line account of what the port last said. */
static void lport_push_last(lua_State *L, ath_port_t *p)
{
    char ago[32];
    ath_buf_t said = {NULL, 0, 0};
    if (p->lastlen == 0 && ath_rs_held(&p->lastrs) == 0) {
        lua_pushfstring(L, "%s said nothing", p->name);
        return;
    }
    snprintf(ago, sizeof ago, "%.1f", (ath_host_now(p->h) - p->last_t) / 1e3);
    /* and what the stream holds back: a secret's start shows as *** */
    if (ath_buf_add(&said, p->last, p->lastlen) == 0)
        ath_rs_peek(&p->lastrs, &said, 1);
    lport_push_quoted(L, p, said.b ? said.b : "", said.len);
    free(said.b);
    lua_pushfstring(L, "%s last said %s %s s ago", p->name, lua_tostring(L, -1),
                    ago);
    lua_remove(L, -2);
}

/* Notes in the transcript why a wait failed (the message on top). */
static void lport_note(ath_port_t *p, lua_State *L)
{
    if (p->h->tr && !p->untraced)
        ath_tr_note(p->h->tr, p->name, lua_tostring(L, -1));
}

/* The wait in progress is over: the engine, its timer, its progress
 * line, its sink and its anchored strings let go. */
static void lport_unwait(ath_port_t *p, lua_State *L)
{
    LP(p)->waiter = NULL;
    if (p->h->tr)
        ath_tr_hold(p->h->tr, p->name, 0);
    ath_chat_cancel(p->chat);
    uv_timer_stop(&p->timer);
    if (p->h->notes)
        ath_host_wait_end(p->h, p);
    if (LP(p)->sink_n) {
        LP(p)->sink_n = 0;
        lua_pushnil(L);
        ath_lport_set(L, p, ATH_LS_SINK);
    }
    if (LP(p)->anchored) {
        LP(p)->anchored = 0;
        lua_pushnil(L);
        ath_lport_set(L, p, ATH_LS_W);
    }
}

/* Ends the wait: moves the nvals values on top of L to the waiter and
 * wakes it, or leaves them in place when the waiter is L itself. */
static void lport_finish(ath_port_t *p, lua_State *L, int nvals)
{
    lua_State *co = LP(p)->waiter;
    lport_unwait(p, L);
    if (co == L) {
        LP(p)->sync_n = nvals;
        return;
    }
    lua_xmove(L, co, nvals);
    if (LP(p)->processing) {
        /* Woken at the end of this pass, after the URC handlers of the
         * same bytes: a CLOSED that came with the OK is seen first. */
        LP(p)->woken = co;
        LP(p)->woken_n = nvals;
        return;
    }
    ath_host_wake(p->h, co, nvals);
}

/* The flow co (NULL: any) is abandoned: its wait on p ends without waking
 * it, so that the cleanup's commands may use the port. */
void ath_lport_abandon(ath_port_t *p, lua_State *co)
{
    if (LP(p)->waiter && (co == NULL || LP(p)->waiter == co))
        lport_unwait(p, p->h->L);
    if (LP(p)->woken && (co == NULL || LP(p)->woken == co))
        LP(p)->woken = NULL;
    if (LP(p)->drainer && (co == NULL || LP(p)->drainer == co))
        LP(p)->drainer = NULL; /* its bytes still go out */
}

/* Fails the wait with (nil, "CODE: what", CODE[, r]). */
void ath_lport_fail(ath_port_t *p, lua_State *L, const char *code,
                    const char *what, int with_r)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", code, what);
    lua_pushstring(L, code);
    if (with_r)
        lport_r(L, p);
    lport_finish(p, L, with_r ? 4 : 3);
}

/* Pushes what the wait in progress was waiting for. */
static void lport_push_waited(lua_State *L, ath_port_t *p)
{
    size_t want, have;
    if (ath_chat_outcome_due(p->chat) && LP(p)->w.nouts > 0)
        lua_pushfstring(L, "no \"%s\" after %s's OK", LP(p)->w.outs[0].text,
                        LP(p)->cmdname[0] ? LP(p)->cmdname : "the command");
    else if (LP(p)->cmdname[0] && LP(p)->w.mode == ATH_WAIT_CMD)
        lua_pushfstring(L, "no final result to %s", LP(p)->cmdname);
    else if (LP(p)->w.mode == ATH_WAIT_READ && LP(p)->sink_n)
        lua_pushfstring(L, "%d of %d bytes",
                        (int)(LP(p)->sunk + ath_chat_pending(p->chat)),
                        (int)LP(p)->sink_n);
    else if (LP(p)->w.mode == ATH_WAIT_READ)
        lua_pushfstring(L, "%d of %d bytes", (int)ath_chat_pending(p->chat),
                        (int)LP(p)->w.nbytes);
    else if (LP(p)->w.mode == ATH_WAIT_LINE)
        lua_pushliteral(L, "no line");
    else if (LP(p)->w.nalts > 0 || LP(p)->w.nprompts > 0) {
        const ath_pat_t *a = LP(p)->w.nalts ? LP(p)->w.alts : LP(p)->w.prompts;
        lua_pushfstring(L, "no \"%s\"", a->text);
    } else
        lua_pushliteral(L, "nothing");
    if (LP(p)->cmdname[0] && LP(p)->w.mode != ATH_WAIT_CMD)
        lua_pushfstring(L, " after %s", LP(p)->cmdname);
    else
        lua_pushliteral(L, "");
    if (ath_chat_counting(p->chat, &want, &have))
        lua_pushfstring(L, " (a counted payload: %d of the %d bytes "
                        "announced came)", (int)have, (int)want);
    else
        lua_pushliteral(L, "");
    lua_concat(L, 3);
}

/* A pattern as a person reads it: no anchor, no Lua escapes. */
static void lport_plain(char *out, size_t n, const ath_pat_t *pat)
{
    size_t i = 0, k = 0;
    if (pat->kind == ATH_PAT_LUA && pat->len > 0 && pat->text[0] == '^')
        i = 1;
    for (; i < pat->len && k + 1 < n; i++) {
        if (pat->kind == ATH_PAT_LUA && pat->text[i] == '%' && i + 1 < pat->len)
            i++;
        out[k++] = pat->text[i];
    }
    out[k] = '\0';
}

/* What a long wait waits for, for its progress lines: "CONNACK OK after
 * AT+MCONNECT", "the final result to AT+CGATT". */
static void lport_describe(void *owner, char *buf, size_t n)
{
    ath_port_t *p = owner;
    char pat[80];
    const char *cmd = LP(p)->cmdname[0] ? LP(p)->cmdname : NULL;
    if (LP(p)->w.mode == ATH_WAIT_CMD && LP(p)->w.nouts > 0) {
        lport_plain(pat, sizeof pat, &LP(p)->w.outs[0]);
        snprintf(buf, n, "%s after %s", pat, cmd ? cmd : "the command");
    } else if (LP(p)->w.mode == ATH_WAIT_CMD) {
        snprintf(buf, n, "the final result to %s", cmd ? cmd : "the command");
    } else if (LP(p)->w.mode == ATH_WAIT_READ) {
        snprintf(buf, n, "%d bytes on %s (%d came)", (int)LP(p)->w.nbytes, p->name,
                 (int)ath_chat_pending(p->chat));
    } else if (LP(p)->w.nalts > 0 || LP(p)->w.nprompts > 0) {
        lport_plain(pat, sizeof pat, LP(p)->w.nalts ? LP(p)->w.alts : LP(p)->w.prompts);
        snprintf(buf, n, "%s%s%s", pat, cmd ? " after " : "", cmd ? cmd : "");
    } else {
        snprintf(buf, n, "a line from %s", p->name);
    }
}

static void lport_timeout_cb(uv_timer_t *t)
{
    ath_port_t *p = t->data;
    lua_State *L = p->h->L;
    if (LP(p)->waiter == NULL)
        return;
    lport_push_waited(L, p);
    lport_push_last(L, p);
    lua_pushfstring(L, "%s in %d ms; %s", lua_tostring(L, -2),
                    (int)(ath_host_now(p->h) - LP(p)->t_wait + 0.5),
                    lua_tostring(L, -1));
    ath_lport_fail(p, L, "ETIMEDOUT", lua_tostring(L, -1), 0);
    lua_pop(L, 3);
    ath_host_dispatch(p->h);
}

/* The final result of a command: r on OK, else nil, msg, code, r. */
static void lport_final(ath_port_t *p, lua_State *L, const ath_chat_event_t *ev)
{
    static const char *codes[] = {"OK", "ERROR", "CME", "CMS"};
    int r;
    lport_r(L, p);
    r = lua_gettop(L);
    ath_lport_key(L, p, ATH_K_FINAL);
    if (ev->len == 2 && ev->index == ATH_FINAL_OK)
        ath_lport_key(L, p, ATH_K_OK); /* the line is "OK" */
    else
        lua_pushlstring(L, ev->line, ev->len);
    lua_rawset(L, r);
    ath_lport_key(L, p, ATH_K_MS);
    lua_pushnumber(L, ath_host_now(p->h) - LP(p)->t_wait);
    lua_rawset(L, r);
    if ((ev->index == ATH_FINAL_OK || ev->index >= ATH_FINAL_ALT) &&
        LP(p)->has_data && !LP(p)->data_sent) {
        /* A success to a command whose data never went: nothing was done
         * with the data, whatever the final result says. */
        int msg;
        size_t n;
        ath_lport_get(L, p, ATH_LS_DATA);
        n = lua_rawlen(L, -1);
        lua_pop(L, 1);
        lport_push_quoted(L, p, ev->line, ev->len);
        lua_pushfstring(L, "%s answered %s before the prompt its %d bytes "
                        "wait for: they were not sent",
                        LP(p)->cmdname[0] ? LP(p)->cmdname : "the command",
                        lua_tostring(L, -1), (int)n);
        lua_remove(L, -2);
        msg = lua_gettop(L);
        lport_note(p, L);
        ath_lport_fail(p, L, "EPROMPT", lua_tostring(L, msg), 1);
        lua_remove(L, msg);
        lua_remove(L, r);
        return;
    }
    if (ev->more) {
        /* OK came first: now the outcome, in its own time. */
        lua_pop(L, 1);
        uv_timer_stop(&p->timer);
        if (LP(p)->outcome_ms > 0) {
            uv_update_time(p->h->loop);
            uv_timer_start(&p->timer, lport_timeout_cb,
                           (uint64_t)LP(p)->outcome_ms, 0);
        }
        if (LP(p)->outcome_ms > ATH_PROGRESS_MS && !LP(p)->no_progress)
            ath_host_wait_begin(p->h, p, lport_describe, NULL, LP(p)->outcome_ms);
        else if (p->h->notes)
            ath_host_wait_end(p->h, p);
        return;
    }
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
        ath_lport_setk(L, p, r,
                       ev->index == ATH_FINAL_CME ? ATH_K_CME : ATH_K_CMS);
    }
    lua_pushstring(L, codes[ev->index]);
    ath_lport_setk(L, p, r, ATH_K_ERROR);
    lua_pushnil(L);
    lua_pushlstring(L, ev->line, ev->len);
    lua_pushfstring(L, "%s at %s", lua_tostring(L, -1),
                    LP(p)->cmdname[0] ? LP(p)->cmdname : "the command");
    lua_remove(L, -2);
    lua_pushstring(L, codes[ev->index]);
    lua_pushvalue(L, r);
    lua_remove(L, r);
    lport_finish(p, L, 4);
}

/* Pushes a reply line. The same short line as the last one is the same
 * string (Lua interns short strings): it is pushed from its registry
 * slot, not hashed and looked up again. */
static void lport_push_line(lua_State *L, ath_port_t *p, const char *s,
                            size_t n)
{
    ath_lport_t *lp = LP(p);
    if (lp->has_line && n == lp->linelen && memcmp(s, lp->line, n) == 0) {
        lua_rawgeti(L, LUA_REGISTRYINDEX, lp->line_ref);
        return;
    }
    lua_pushlstring(L, s, n);
    if (n <= sizeof lp->line) {
        memcpy(lp->line, s, n);
        lp->linelen = n;
        lp->has_line = 1;
        lua_pushvalue(L, -1);
        lua_rawseti(L, LUA_REGISTRYINDEX, lp->line_ref);
    }
}

/* A reply line of the command in flight: kept in r.lines; the first line
 * the reply pattern matched gives r's captures and r.line. */
static void lport_reply(ath_port_t *p, lua_State *L, const ath_chat_event_t *ev)
{
    int r, i;
    if (p->h->tr) /* a secret in it is masked once the flow has it */
        ath_tr_hold(p->h->tr, p->name, 1);
    lua_rawgeti(L, LUA_REGISTRYINDEX, LP(p)->lines_ref);
    lport_push_line(L, p, ev->line, ev->len);
    if (ev->matched && !LP(p)->replied) {
        /* the same string is r.line: made once */
        LP(p)->replied = 1;
        lport_r(L, p);
        r = lua_gettop(L);
        ath_lport_key(L, p, ATH_K_LINE);
        lua_pushvalue(L, r - 1);
        lua_rawset(L, r);
        for (i = 0; i < ev->m.ncap; i++) {
            const ath_cap_t *c = &ev->m.cap[i];
            if (c->len == ATH_CAP_POSITION)
                lua_pushinteger(L, (lua_Integer)c->off + 1);
            else
                lua_pushlstring(L, ev->line + c->off, (size_t)c->len);
            lua_rawseti(L, r, i + 1);
        }
        if (ev->payload) {
            lport_push_bytes(L, p, ev->payload, ev->plen);
            ath_lport_setk(L, p, r, ATH_K_PAYLOAD);
        }
        lua_settop(L, r - 1);
    }
    /* r.lines is the engine's alone while the command runs: its length
     * is counted here, not asked of it */
    lua_rawseti(L, -2, ++LP(p)->nlines);
    lua_pop(L, 1);
}

/* A prompt during a command: send its data, or end the command here. */
static void lport_prompt(ath_port_t *p, lua_State *L,
                         const ath_chat_event_t *ev)
{
    size_t n;
    const char *data;
    if (LP(p)->has_data) {
        int r;
        ath_lport_get(L, p, ATH_LS_DATA); /* a string: lport_cmd_result */
        data = lua_tolstring(L, -1, &n);
        LP(p)->data_sent = 1;
        r = ath_port_write(p, data, n);
        lua_pop(L, 1); /* before the results a failure leaves */
        if (r != 0)
            ath_lport_fail(p, L, "EIO", "cannot send the data", 0);
        return;
    }
    lport_r(L, p);
    lua_pushlstring(L, ev->line, ev->len);
    ath_lport_setk(L, p, -2, ATH_K_PROMPT);
    lport_finish(p, L, 1);
}

/* The outcome of the command in flight: r.outcome (the first one); the
 * command ends with r unless its final result is still to come. */
static void lport_outcome(ath_port_t *p, lua_State *L,
                          const ath_chat_event_t *ev)
{
    if (p->h->tr) /* a secret in it is masked once the flow has it */
        ath_tr_hold(p->h->tr, p->name, 1);
    lport_r(L, p);
    if (ath_lport_getk(L, p, -1, ATH_K_OUTCOME) == LUA_TNIL) {
        lport_push_match(L, p, ev);
        ath_lport_setk(L, p, -3, ATH_K_OUTCOME);
    }
    lua_pop(L, 1);
    if (ev->more) {
        lua_pop(L, 1);
        return;
    }
    lport_finish(p, L, 1);
}

/* Pushes the message for a counted header whose count is wrong. */
static void lport_push_badcount(lua_State *L, ath_port_t *p,
                                const ath_chat_event_t *ev)
{
    char n[24];
    snprintf(n, sizeof n, "%lld", ev->count);
    lport_push_quoted(L, p, ev->line, ev->len);
    switch (ev->why) {
    case ATH_COUNT_NEGATIVE:
        lua_pushfstring(L, "%s announced a negative byte count (%s)",
                        lua_tostring(L, -1), n);
        break;
    case ATH_COUNT_DIGITS:
        lua_pushfstring(L, "%s announced a byte count of 10 digits or more",
                        lua_tostring(L, -1));
        break;
    case ATH_COUNT_MAX:
        lua_pushfstring(L, "%s announced %s bytes, more than the %d "
                        "expected at most", lua_tostring(L, -1), n,
                        (int)(ev->max > 0x7fffffff ? 0x7fffffff : ev->max));
        break;
    case ATH_COUNT_TRAILER:
        lua_pushfstring(L, "%s announced %s bytes, but what came does not "
                        "end after %s bytes", lua_tostring(L, -1), n, n);
        break;
    default:
        lua_pushfstring(L, "%s announced no byte count",
                        lua_tostring(L, -1));
    }
    lua_remove(L, -2);
    if (LP(p)->cmdname[0] && ev->kind != ATH_EV_URC)
        lua_pushfstring(L, "%s: %s", LP(p)->cmdname, lua_tostring(L, -1));
    else
        lua_pushvalue(L, -1);
    lua_remove(L, -2);
}

/* A URC: emitted as an event, and its handler runs as a new flow with
 * the match table (without an index). */
static void lport_urc(ath_port_t *p, lua_State *L, const ath_chat_event_t *ev,
                      int msg)
{
    ath_event_t e;
    int top = lua_gettop(L);
    ath_lport_get(L, p, ATH_LS_URC);
    if (lua_rawgeti(L, -1, ev->index) == LUA_TTABLE) {
        memset(&e, 0, sizeof e);
        e.type = ATH_EVENT_URC;
        e.port = p->name;
        lua_pushlstring(L, ev->line, ev->len);
        e.text = lua_tostring(L, -1);
        e.text_len = ev->len; /* a NUL in the line does not cut it */
        ath_host_emit(p->h, &e);
        lua_pop(L, 1);
        lua_getfield(L, -1, "fn");
        lport_push_match(L, p, ev);
        lua_pushnil(L); /* the index of a URC means nothing */
        ath_lport_setk(L, p, -2, ATH_K_INDEX);
        if (msg) { /* a wrong count: the handler is told, not given bytes */
            lua_pushvalue(L, msg);
            ath_lport_setk(L, p, -2, ATH_K_ERROR);
        }
        ath_host_spawn(p->h, L, 1);
    }
    lua_settop(L, top);
}

/* A failure outcome, or another command's echo: the command fails,
 * naming what came. */
static void lport_refused(ath_port_t *p, lua_State *L,
                          const ath_chat_event_t *ev)
{
    int msg;
    const char *cmd = LP(p)->cmdname[0] ? LP(p)->cmdname : "the command";
    lport_push_quoted(L, p, ev->line, ev->len);
    if (ev->type == ATH_EV_ECHO) {
        lua_pushfstring(L, "sent %s, the module echoed %s", cmd,
                        lua_tostring(L, -1));
    } else {
        lport_r(L, p);
        lport_push_match(L, p, ev);
        ath_lport_setk(L, p, -2, ATH_K_OUTCOME);
        lua_pop(L, 1);
        lua_pushfstring(L, "%s failed: the module said %s", cmd,
                        lua_tostring(L, -1));
    }
    lua_remove(L, -2);
    msg = lua_gettop(L);
    lport_note(p, L);
    ath_lport_fail(p, L, ev->type == ATH_EV_ECHO ? "EECHO" : "EOUTCOME",
                   lua_tostring(L, msg), 1);
    lua_remove(L, msg);
}

/* A counted header whose count is wrong: the wait it answers fails; a
 * URC handler is run with m.error and no payload. */
static void lport_badcount(ath_port_t *p, lua_State *L,
                           const ath_chat_event_t *ev)
{
    int msg;
    lport_push_badcount(L, p, ev);
    msg = lua_gettop(L);
    lport_note(p, L);
    if (ev->kind == ATH_EV_URC) {
        ath_chat_event_t u = *ev;
        u.type = ATH_EV_URC;
        lport_urc(p, L, &u, msg);
        lua_remove(L, msg);
        return;
    }
    ath_lport_fail(p, L, "ECOUNT", lua_tostring(L, msg),
                   LP(p)->w.mode == ATH_WAIT_CMD);
    lua_remove(L, msg);
}

/* Bytes of a streamed read(n, {into = sink}): to the file or function;
 * the read ends with the count once all n went, or fails naming the
 * sink's error; else it waits for the rest. */
static void lport_sink(ath_port_t *p, lua_State *L, const ath_chat_event_t *ev)
{
    ath_lport_t *lp = LP(p);
    int top = lua_gettop(L);
    luaL_Stream *f;
    ath_lport_get(L, p, ATH_LS_SINK);
    f = luaL_testudata(L, -1, LUA_FILEHANDLE);
    if (f != NULL) {
        if (f->closef == NULL)
            lua_pushliteral(L, "the file was closed");
        else if (fwrite(ev->line, 1, ev->len, f->f) != ev->len)
            lua_pushstring(L, strerror(errno));
        else
            lua_pushnil(L);
    } else {
        lua_pushlstring(L, ev->line, ev->len);
        if (lua_pcall(L, 1, 0, 0) == LUA_OK)
            lua_pushnil(L);
        else if (lua_type(L, -1) != LUA_TSTRING)
            lua_pushliteral(L, "(error object is not a string)");
    }
    if (lp->sink_n == 0 || lp->waiter == NULL || p->closed) {
        lua_settop(L, top); /* the sink ended the read (closed the port) */
        return;
    }
    lp->sunk += ev->len;
    if (!lua_isnil(L, -1)) {
        lua_pushfstring(L, "read into a sink failed after %d of %d bytes: %s",
                        (int)lp->sunk, (int)lp->sink_n, lua_tostring(L, -1));
        lua_replace(L, top + 1);
        lua_settop(L, top + 1);
        ath_lport_fail(p, L, "EIO", lua_tostring(L, top + 1), 0);
        lua_remove(L, top + 1); /* the results stay when L waited itself */
        return;
    }
    lua_settop(L, top);
    if (lp->sunk >= lp->sink_n) {
        lua_pushinteger(L, (lua_Integer)lp->sunk);
        lport_finish(p, L, 1);
        return;
    }
    lp->w.nbytes = lp->sink_n - lp->sunk;
    ath_chat_wait(p->chat, &lp->w); /* the rest, as it comes */
}

/* The body of ath_lport_process: one pass over what the engine has. */
static void lport_process(ath_port_t *p, lua_State *L);

/*
 * Hands the engine's events to Lua. A flow whose wait ends is woken after
 * the URC handlers started by the same bytes, so the handlers' effects
 * (a lost link, a queued message) are there when the flow goes on.
 */
void ath_lport_process(ath_port_t *p, lua_State *L)
{
    int outer = !LP(p)->processing;
    LP(p)->processing = 1;
    lport_process(p, L);
    if (outer) {
        LP(p)->processing = 0;
        if (LP(p)->woken) {
            lua_State *co = LP(p)->woken;
            LP(p)->woken = NULL;
            ath_host_wake(p->h, co, LP(p)->woken_n);
        }
    }
}

static void lport_process(ath_port_t *p, lua_State *L)
{
    ath_chat_event_t ev;
    while (!p->closed && ath_chat_next(p->chat, &ev)) {
        switch (ev.type) {
        case ATH_EV_URC: lport_urc(p, L, &ev, 0); break;
        case ATH_EV_OUTCOME: lport_outcome(p, L, &ev); break;
        case ATH_EV_OUTFAIL:
        case ATH_EV_ECHO: lport_refused(p, L, &ev); break;
        case ATH_EV_BADCOUNT: lport_badcount(p, L, &ev); break;
        case ATH_EV_MATCH:
            lport_push_match(L, p, &ev);
            lport_finish(p, L, 1);
            break;
        case ATH_EV_PROMPT:
            if (LP(p)->w.mode == ATH_WAIT_CMD) {
                lport_prompt(p, L, &ev);
            } else {
                lport_push_match(L, p, &ev);
                lua_pushboolean(L, 1);
                ath_lport_setk(L, p, -2, ATH_K_PROMPT);
                lport_finish(p, L, 1);
            }
            break;
        case ATH_EV_ABORT: {
            /* The results stay on L's stack when L itself waited: remove
             * the message under them, not what is on top. */
            int msg;
            lua_pushlstring(L, ev.line, ev.len);
            lua_pushfstring(L, "%s aborted on \"%s\"",
                            LP(p)->cmdname[0] ? LP(p)->cmdname : "the wait",
                            lua_tostring(L, -1));
            lua_remove(L, -2);
            msg = lua_gettop(L);
            ath_lport_fail(p, L, "EABORT", lua_tostring(L, msg),
                           LP(p)->cmdname[0] != 0);
            lua_remove(L, msg);
            break;
        }
        case ATH_EV_FINAL: lport_final(p, L, &ev); break;
        case ATH_EV_REPLY: lport_reply(p, L, &ev); break;
        case ATH_EV_READ:
            if (LP(p)->sink_n) {
                lport_sink(p, L, &ev);
                break;
            }
            lport_push_bytes(L, p, ev.line, ev.len);
            lport_finish(p, L, 1);
            break;
        case ATH_EV_LINE:
            lua_pushlstring(L, ev.line, ev.len);
            lport_finish(p, L, 1);
            break;
        case ATH_EV_DROP:
            if (p->h->tr && !p->untraced) {
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

static void lport_broken(ath_port_t *p, lua_State *L)
{
    if (LP(p)->waiter) {
        ath_lport_process(p, L); /* what came before the end counts */
    }
    if (LP(p)->waiter) {
        lport_push_waited(L, p);
        lport_push_last(L, p);
        if (p->eof_err)
            lua_pushfstring(L, "%s failed (%s) with %s; %s", p->name,
                            strerror(p->eof_err), lua_tostring(L, -2),
                            lua_tostring(L, -1));
        else
            lua_pushfstring(L, "%s closed by the other side with %s; %s",
                            p->name, lua_tostring(L, -2), lua_tostring(L, -1));
        ath_lport_fail(p, L, "EOF", lua_tostring(L, -1), 0);
        lua_pop(L, 3);
    }
    if (LP(p)->drainer)
        lport_drained(p, L, p->eof_err ? p->eof_err : EPIPE);
}

static void lport_drained(ath_port_t *p, lua_State *L, int err)
{
    lua_State *co = LP(p)->drainer;
    if (co == NULL)
        return;
    LP(p)->drainer = NULL;
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

/* Starts the wait set up in LP(p)->w for the running flow L; returns its
 * results at once when the buffer already holds them, else yields. The
 * options (or whatever anchors the wait's strings) are at index anchor. */
int ath_lport_wait(lua_State *L, ath_port_t *p, int anchor, int timeout)
{
    int top;
    if (anchor) {
        lua_pushvalue(L, anchor);
        ath_lport_set(L, p, ATH_LS_W);
        LP(p)->anchored = 1;
    }
    LP(p)->waiter = L;
    LP(p)->sync_n = -1;
    LP(p)->t_wait = ath_host_now(p->h);
    ath_chat_wait(p->chat, &LP(p)->w);
    top = lua_gettop(L);
    ath_lport_process(p, L);
    if (LP(p)->sync_n >= 0)
        return LP(p)->sync_n;
    lua_settop(L, top);
    if (p->eof) {
        /* What arrived before the end was served above; now the end. */
        lport_push_waited(L, p);
        lport_push_last(L, p);
        lua_pushfstring(L, "%s is closed, with %s; %s", p->name,
                        lua_tostring(L, -2), lua_tostring(L, -1));
        ath_lport_fail(p, L, "EOF", lua_tostring(L, -1), 0);
        return LP(p)->sync_n;
    }
    if (timeout > 0) {
        uv_update_time(p->h->loop); /* the flow may have run a while */
        uv_timer_start(&p->timer, lport_timeout_cb, (uint64_t)timeout, 0);
    }
    /* A wait that may last long tells how long it has waited, every
     * ATH_PROGRESS_MS, so a silent module is no silent athost. */
    if (timeout > ATH_PROGRESS_MS && !LP(p)->no_progress)
        ath_host_wait_begin(p->h, p, lport_describe, NULL, timeout);
    return lua_yield(L, 0);
}

/* ---- connections and closing ------------------------------------------ */

void ath_lport_connected(ath_port_t *p, lua_State *L, int err, const char *what)
{
    lua_State *co = LP(p)->connector;
    const char *code;
    if (co == NULL)
        return;
    LP(p)->connector = NULL;
    p->connecting = 0;
    if (p->tls == NULL)
        uv_timer_stop(&p->timer);
    if (err == 0) {
        ath_lport_get(L, p, ATH_LS_UD);
        lua_xmove(L, co, 1);
        ath_host_wake(p->h, co, 1);
        ath_port_watch(p);
        return;
    }
    code = uv_err_name(-err);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s %s failed: %s", code, what, p->name,
                    uv_strerror(-err));
    lua_pushstring(L, code);
    lua_xmove(L, co, 3);
    ath_host_wake(p->h, co, 3);
    ath_lport_close(p, L);
}

int ath_lport_tls_result(lua_State *L, ath_port_t *p, const char *code,
                         const char *why)
{
    if (code == NULL) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushnil(L);
    if (strcmp(code, "ETLS") == 0)
        lua_pushfstring(L, "ETLS: TLS handshake with %s failed: %s", p->name,
                        why);
    else
        lua_pushfstring(L, "%s: %s", code, why);
    lua_pushstring(L, code);
    return 3;
}

/* The handshake the flow in LP(p)->connector waits for ended: it wakes
 * with true, or with the failure and a closed port. */
static void lport_tls_done(ath_port_t *p, lua_State *L, const char *code,
                           const char *why)
{
    lua_State *co = LP(p)->connector;
    int n;
    if (co == NULL)
        return;
    LP(p)->connector = NULL;
    n = ath_lport_tls_result(L, p, code, why);
    lua_xmove(L, co, n);
    ath_host_wake(p->h, co, n);
    if (code == NULL)
        ath_port_watch(p);
    else
        ath_lport_close(p, L);
}

/* A listener took a connection (c), or could not (err): the flow in
 * accept() wakes with the new port or the failure. */
static void lport_accepted(ath_port_t *p, lua_State *L, ath_port_t *c,
                           int err)
{
    lua_State *co = LP(p)->waiter;
    if (co == NULL) {
        if (c)
            ath_port_close(c);
        return;
    }
    LP(p)->waiter = NULL;
    uv_timer_stop(&p->timer);
    if (c == NULL) {
        (void)err;
        lua_pushnil(L);
        lua_pushliteral(L, "ENOMEM: cannot accept");
        lua_pushliteral(L, "ENOMEM");
        lua_xmove(L, co, 3);
        ath_host_wake(p->h, co, 3);
        return;
    }
    ath_lport_push(L, c);
    ath_port_watch(c);
    lua_xmove(L, co, 1);
    ath_host_wake(p->h, co, 1);
}

/* Fails whoever waits on p, then closes it. */
void ath_lport_close(ath_port_t *p, lua_State *L)
{
    if (p->closed)
        return;
    if (LP(p)->waiter) {
        if (LP(p)->waiter == L) {
            LP(p)->waiter = NULL;
        } else {
            lua_pushfstring(L, "%s was closed while a flow waited on it",
                            p->name);
            ath_lport_fail(p, L, "ECLOSED", lua_tostring(L, -1), 0);
            lua_pop(L, 1);
        }
    }
    if (LP(p)->drainer && LP(p)->drainer != L)
        lport_drained(p, L, EPIPE);
    if (LP(p)->connector && LP(p)->connector != L)
        ath_lport_connected(p, L, ECANCELED, "close");
    ath_port_close(p);
    lport_forget(L, p);
}

/* ---- the dispatcher ---------------------------------------------------- */

/* What a port reports, on the host's main thread. */
void ath_lport_event(ath_port_t *p, const ath_port_ev_t *ev)
{
    lua_State *L;
    if (ev->type == ATH_PORT_FREE) {
        if (p->data)
            free(LP(p)->xpats);
        free(p->data);
        p->data = NULL;
        return;
    }
    if (p->data == NULL)
        return;
    L = p->h->L;
    switch (ev->type) {
    case ATH_PORT_DATA: ath_lport_process(p, L); break;
    case ATH_PORT_END: lport_broken(p, L); break;
    case ATH_PORT_DRAINED: lport_drained(p, L, ev->err); break;
    case ATH_PORT_CONNECTED: ath_lport_connected(p, L, ev->err, ev->what); break;
    case ATH_PORT_TLS_DONE: lport_tls_done(p, L, ev->code, ev->what); break;
    case ATH_PORT_ACCEPTED: lport_accepted(p, L, ev->conn, ev->err); break;
    case ATH_PORT_SETTLED: ath_host_dispatch(p->h); break;
    default: break;
    }
}
