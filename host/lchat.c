/*
 * lchat.c: between a port's Lua side and its chat engine. Pattern specs
 * become the engine's patterns and a wait starts; what the engine makes of
 * new bytes becomes Lua values: match tables, command results, reply
 * lines, prompts, URC handlers run as flows; and the ends of a wait that
 * are failures: abort, EOF, timeout, a write that failed.
 *
 * Pattern specs: a string starting with '^' is a Lua pattern; any other
 * string is a literal that a line must start with; a table
 * { "^pattern", count = n, max = N, trailer = s } announces a payload
 * whose byte count is in capture n (at most N bytes; one of the bytes of
 * s, by default CR or LF, must follow it; trailer = false: no check).
 */
#include "lport.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* ---- patterns ---------------------------------------------------------- */

/* Fills *pat from the spec at index i; the caller keeps it alive. */
void ath_lport_pat(lua_State *L, int i, ath_pat_t *pat)
{
    const char *err;
    i = lua_absindex(L, i);
    memset(pat, 0, sizeof *pat);
    if (lua_type(L, i) == LUA_TTABLE) {
        lua_Integer max;
        lua_getfield(L, i, "count");
        pat->count_cap = (int)luaL_optinteger(L, -1, 0);
        lua_getfield(L, i, "max");
        max = luaL_optinteger(L, -1, 0);
        if (max < 0)
            luaL_error(L, "a pattern's max must not be negative");
        pat->max = (size_t)max;
        if (lua_getfield(L, i, "trailer") == LUA_TBOOLEAN)
            pat->trailer = lua_toboolean(L, -1) ? NULL : "";
        else if (!lua_isnil(L, -1))
            pat->trailer = luaL_checkstring(L, -1); /* kept by the spec */
        lua_pop(L, 3);
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
int ath_lport_npats(lua_State *L, int i)
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
        ath_lport_pat(L, i, pats);
        return;
    }
    if (lua_type(L, i) == LUA_TTABLE && n == 1)
        lua_pop(L, 1);
    for (k = 0; k < n; k++) {
        lua_rawgeti(L, i, k + 1);
        ath_lport_pat(L, -1, &pats[k]);
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
void ath_lport_wait_pats(lua_State *L, ath_port_t *p, int a, int o,
                         int prompt_alts)
{
    int na, nb, np, no, nf, top;
    ath_pat_t *room;
    int cmd = p->w.mode == ATH_WAIT_CMD;
    o = lua_absindex(L, o);
    top = lua_gettop(L);
    if (lua_istable(L, o)) {
        lua_getfield(L, o, "abort");
        lua_getfield(L, o, prompt_alts ? "__none" : "prompt");
        lua_getfield(L, o, cmd ? "outcome" : "__none");
        lua_getfield(L, o, cmd ? "outcome_fail" : "__none");
    } else {
        lua_settop(L, top + 4); /* no options: no patterns of theirs */
    }
    na = a ? ath_lport_npats(L, a) : 0;
    nb = ath_lport_npats(L, top + 1);
    np = prompt_alts ? na : ath_lport_npats(L, top + 2);
    no = ath_lport_npats(L, top + 3);
    nf = ath_lport_npats(L, top + 4);
    room = lport_room(L, p, na + nb + np + no + nf);
    if (a)
        lport_fill(L, a, room, na);
    lport_fill(L, top + 1, room + na, nb);
    if (prompt_alts)
        memcpy(room + na + nb, room, (size_t)na * sizeof *room);
    else
        lport_fill(L, top + 2, room + na + nb, np);
    lport_fill(L, top + 3, room + na + nb + np, no);
    lport_fill(L, top + 4, room + na + nb + np + no, nf);
    lua_settop(L, top);
    p->w.alts = room;
    p->w.nalts = na;
    p->w.aborts = room + na;
    p->w.naborts = nb;
    p->w.prompts = room + na + nb;
    p->w.nprompts = np;
    p->w.outs = room + na + nb + np;
    p->w.nouts = no;
    p->w.ofails = room + na + nb + np + no;
    p->w.nofails = nf;
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

/* Ends the wait: moves the nvals values on top of L to the waiter and
 * wakes it, or leaves them in place when the waiter is L itself. */
/* The wait in progress is over: the engine, its timer, its progress
 * line and its anchored strings let go. */
static void lport_unwait(ath_port_t *p, lua_State *L)
{
    p->waiter = NULL;
    if (p->h->tr)
        ath_tr_hold(p->h->tr, p->name, 0);
    ath_chat_cancel(p->chat);
    uv_timer_stop(&p->timer);
    if (p->h->notes)
        ath_host_wait_end(p->h, p);
    lua_pushnil(L);
    ath_lport_set(L, p, "w");
}

static void lport_finish(ath_port_t *p, lua_State *L, int nvals)
{
    lua_State *co = p->waiter;
    lport_unwait(p, L);
    if (co == L) {
        p->sync_n = nvals;
        return;
    }
    lua_xmove(L, co, nvals);
    if (p->processing) {
        /* Woken at the end of this pass, after the URC handlers of the
         * same bytes: a CLOSED that came with the OK is seen first. */
        p->woken = co;
        p->woken_n = nvals;
        return;
    }
    ath_host_wake(p->h, co, nvals);
}

/* The flow co (NULL: any) is abandoned: its wait on p ends without waking
 * it, so that the cleanup's commands may use the port. */
void ath_lport_abandon(ath_port_t *p, lua_State *co)
{
    if (p->waiter && (co == NULL || p->waiter == co))
        lport_unwait(p, p->h->L);
    if (p->woken && (co == NULL || p->woken == co))
        p->woken = NULL;
    if (p->drainer && (co == NULL || p->drainer == co))
        p->drainer = NULL; /* its bytes still go out */
}

/* Fails the wait with (nil, "CODE: what", CODE[, r]). */
void ath_lport_fail(ath_port_t *p, lua_State *L, const char *code,
                    const char *what, int with_r)
{
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s", code, what);
    lua_pushstring(L, code);
    if (with_r)
        ath_lport_get(L, p, "r");
    lport_finish(p, L, with_r ? 4 : 3);
}

/* Pushes what the wait in progress was waiting for. */
static void lport_push_waited(lua_State *L, ath_port_t *p)
{
    size_t want, have;
    if (ath_chat_outcome_due(p->chat) && p->w.nouts > 0)
        lua_pushfstring(L, "no \"%s\" after %s's OK", p->w.outs[0].text,
                        p->cmdname[0] ? p->cmdname : "the command");
    else if (p->cmdname[0] && p->w.mode == ATH_WAIT_CMD)
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
    const char *cmd = p->cmdname[0] ? p->cmdname : NULL;
    if (p->w.mode == ATH_WAIT_CMD && p->w.nouts > 0) {
        lport_plain(pat, sizeof pat, &p->w.outs[0]);
        snprintf(buf, n, "%s after %s", pat, cmd ? cmd : "the command");
    } else if (p->w.mode == ATH_WAIT_CMD) {
        snprintf(buf, n, "the final result to %s", cmd ? cmd : "the command");
    } else if (p->w.mode == ATH_WAIT_READ) {
        snprintf(buf, n, "%d bytes on %s (%d came)", (int)p->w.nbytes, p->name,
                 (int)ath_chat_pending(p->chat));
    } else if (p->w.nalts > 0 || p->w.nprompts > 0) {
        lport_plain(pat, sizeof pat, p->w.nalts ? p->w.alts : p->w.prompts);
        snprintf(buf, n, "%s%s%s", pat, cmd ? " after " : "", cmd ? cmd : "");
    } else {
        snprintf(buf, n, "a line from %s", p->name);
    }
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
    ath_lport_fail(p, L, "ETIMEDOUT", lua_tostring(L, -1), 0);
    lua_pop(L, 3);
    ath_host_dispatch(p->h);
}

/* The final result of a command: r on OK, else nil, msg, code, r. */
static void lport_final(ath_port_t *p, lua_State *L, const ath_chat_event_t *ev)
{
    static const char *codes[] = {"OK", "ERROR", "CME", "CMS"};
    int r;
    ath_lport_get(L, p, "r");
    r = lua_gettop(L);
    lua_pushlstring(L, ev->line, ev->len);
    lua_setfield(L, r, "final");
    lua_pushnumber(L, ath_host_now(p->h) - p->t_wait);
    lua_setfield(L, r, "ms");
    if ((ev->index == ATH_FINAL_OK || ev->index >= ATH_FINAL_ALT) &&
        p->has_data && !p->data_sent) {
        /* A success to a command whose data never went: nothing was done
         * with the data, whatever the final result says. */
        int msg;
        size_t n;
        ath_lport_get(L, p, "data");
        n = lua_rawlen(L, -1);
        lua_pop(L, 1);
        lport_push_quoted(L, p, ev->line, ev->len);
        lua_pushfstring(L, "%s answered %s before the prompt its %d bytes "
                        "wait for: they were not sent",
                        p->cmdname[0] ? p->cmdname : "the command",
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
        if (p->outcome_ms > 0) {
            uv_update_time(p->h->loop);
            uv_timer_start(&p->timer, lport_timeout_cb,
                           (uint64_t)p->outcome_ms, 0);
        }
        if (p->outcome_ms > ATH_PROGRESS_MS && !p->no_progress)
            ath_host_wait_begin(p->h, p, lport_describe, NULL, p->outcome_ms);
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
    ath_lport_get(L, p, "r");
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
    if (ath_lport_get(L, p, "data") == LUA_TSTRING) {
        int r;
        data = lua_tolstring(L, -1, &n);
        p->data_sent = 1;
        r = ath_port_write(p, data, n);
        lua_pop(L, 1); /* before the results a failure leaves */
        if (r != 0)
            ath_lport_fail(p, L, "EIO", "cannot send the data", 0);
        return;
    }
    lua_pop(L, 1);
    ath_lport_get(L, p, "r");
    lua_pushlstring(L, ev->line, ev->len);
    lua_setfield(L, -2, "prompt");
    lport_finish(p, L, 1);
}

/* The outcome of the command in flight: r.outcome (the first one); the
 * command ends with r unless its final result is still to come. */
static void lport_outcome(ath_port_t *p, lua_State *L,
                          const ath_chat_event_t *ev)
{
    if (p->h->tr) /* a secret in it is masked once the flow has it */
        ath_tr_hold(p->h->tr, p->name, 1);
    ath_lport_get(L, p, "r");
    if (lua_getfield(L, -1, "outcome") == LUA_TNIL) {
        lport_push_match(L, ev);
        lua_setfield(L, -3, "outcome");
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
    if (p->cmdname[0] && ev->kind != ATH_EV_URC)
        lua_pushfstring(L, "%s: %s", p->cmdname, lua_tostring(L, -1));
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
    ath_lport_get(L, p, "urc");
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
        lport_push_match(L, ev);
        lua_pushnil(L); /* the index of a URC means nothing */
        lua_setfield(L, -2, "index");
        if (msg) { /* a wrong count: the handler is told, not given bytes */
            lua_pushvalue(L, msg);
            lua_setfield(L, -2, "error");
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
    const char *cmd = p->cmdname[0] ? p->cmdname : "the command";
    lport_push_quoted(L, p, ev->line, ev->len);
    if (ev->type == ATH_EV_ECHO) {
        lua_pushfstring(L, "sent %s, the module echoed %s", cmd,
                        lua_tostring(L, -1));
    } else {
        ath_lport_get(L, p, "r");
        lport_push_match(L, ev);
        lua_setfield(L, -2, "outcome");
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
                   p->w.mode == ATH_WAIT_CMD);
    lua_remove(L, msg);
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
    int outer = !p->processing;
    p->processing = 1;
    lport_process(p, L);
    if (outer) {
        p->processing = 0;
        if (p->woken) {
            lua_State *co = p->woken;
            p->woken = NULL;
            ath_host_wake(p->h, co, p->woken_n);
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
            ath_lport_fail(p, L, "EABORT", lua_tostring(L, msg),
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
        ath_lport_fail(p, L, "EOF", lua_tostring(L, -1), 0);
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
int ath_lport_wait(lua_State *L, ath_port_t *p, int anchor, int timeout)
{
    int top;
    if (anchor) {
        lua_pushvalue(L, anchor);
        ath_lport_set(L, p, "w");
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
        ath_lport_fail(p, L, "EOF", lua_tostring(L, -1), 0);
        return p->sync_n;
    }
    if (timeout > 0) {
        uv_update_time(p->h->loop); /* the flow may have run a while */
        uv_timer_start(&p->timer, lport_timeout_cb, (uint64_t)timeout, 0);
    }
    /* A wait that may last long tells how long it has waited, every
     * ATH_PROGRESS_MS, so a silent module is no silent athost. */
    if (timeout > ATH_PROGRESS_MS && !p->no_progress)
        ath_host_wait_begin(p->h, p, lport_describe, NULL, timeout);
    return lua_yield(L, 0);
}
