/*
 * lport.c: the port userdata and its methods: send, expect, cmd, read,
 * URC handlers, settings, close. A method that waits sets the wait up and
 * hands it to lchat.c, which runs it and turns what the chat engine makes
 * of the bytes into its results.
 *
 * A port's Lua-side state lives in a table in the registry (LP(p)->lref):
 *   ud   the userdata, so an open port is never collected
 *   urc  id -> { fn, spec }: the URC handlers
 *   w    what the wait in progress needs kept alive (its options)
 *   data what to send at the command's prompt
 * and, in registry slots of their own, the result table of the command
 * in progress and its lines (LP(p)->r_ref, lines_ref).
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
        return LP(p)->pats;
    np = realloc(LP(p)->xpats, (size_t)n * sizeof *np);
    if (np == NULL)
        luaL_error(L, "out of memory");
    return LP(p)->xpats = np;
}

/* Sets up LP(p)->w's alts, aborts and prompts from fields of the options at
 * index o (the alternatives themselves at index a, if a != 0). */
static void lport_wait_pats(lua_State *L, ath_port_t *p, int a, int o,
                            int prompt_alts)
{
    int na, nb, np, no, nf, top;
    ath_pat_t *room;
    int cmd = LP(p)->w.mode == ATH_WAIT_CMD;
    o = lua_absindex(L, o);
    if (!lua_istable(L, o) && (a == 0 || lua_isnil(L, a))) {
        /* no options, no alternatives: a plain command (the round trip
         * of a benchmark, and most of a flow's) */
        LP(p)->w.nalts = LP(p)->w.naborts = LP(p)->w.nprompts = 0;
        LP(p)->w.nouts = LP(p)->w.nofails = 0;
        return;
    }
    top = lua_gettop(L);
    if (lua_istable(L, o)) {
        lua_getfield(L, o, "abort");
        lua_getfield(L, o, prompt_alts ? "__none" : "prompt");
        lua_getfield(L, o, cmd ? "outcome" : "__none");
        lua_getfield(L, o, cmd ? "outcome_fail" : "__none");
    } else {
        lua_settop(L, top + 4); /* no options: no patterns of theirs */
    }
    na = a ? lport_npats(L, a) : 0;
    nb = lport_npats(L, top + 1);
    np = prompt_alts ? na : lport_npats(L, top + 2);
    no = lport_npats(L, top + 3);
    nf = lport_npats(L, top + 4);
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
    LP(p)->w.alts = room;
    LP(p)->w.nalts = na;
    LP(p)->w.aborts = room + na;
    LP(p)->w.naborts = nb;
    LP(p)->w.prompts = room + na + nb;
    LP(p)->w.nprompts = np;
    LP(p)->w.outs = room + na + nb + np;
    LP(p)->w.nouts = no;
    LP(p)->w.ofails = room + na + nb + np + no;
    LP(p)->w.nofails = nf;
}

/* ---- methods that wait ------------------------------------------------ */

/* Common checks of a call that waits on p; returns the timeout. */
static int lport_begin(lua_State *L, ath_port_t *p, int o)
{
    int timeout = p->timeout_ms, t;
    ath_host_check_flow(L);
    if (LP(p)->waiter)
        luaL_error(L, "%s is busy: another flow is waiting on it", p->name);
    LP(p)->no_progress = 0;
    if ((t = lua_type(L, o)) == LUA_TTABLE) {
        lua_getfield(L, o, "timeout");
        timeout = (int)luaL_optinteger(L, -1, timeout);
        lua_pop(L, 1);
        /* progress = false: a wait that is the point (listening for
         * messages), not a module keeping the flow waiting. */
        lua_getfield(L, o, "progress");
        LP(p)->no_progress = lua_type(L, -1) == LUA_TBOOLEAN && !lua_toboolean(L, -1);
        lua_pop(L, 1);
    } else if (t != LUA_TNIL && t != LUA_TNONE) {
        luaL_checktype(L, o, LUA_TTABLE);
    }
    memset(&LP(p)->w, 0, sizeof LP(p)->w);
    LP(p)->cmdname[0] = '\0';
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
    LP(p)->w.mode = ATH_WAIT_EXPECT;
    lport_wait_pats(L, p, 2, 3, prompt);
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, 2);
    lua_rawseti(L, -2, 1);
    lua_pushvalue(L, 3);
    lua_rawseti(L, -2, 2);
    return ath_lport_wait(L, p, lua_gettop(L), timeout);
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
    LP(p)->w.mode = ATH_WAIT_LINE;
    return ath_lport_wait(L, p, 0, timeout);
}

static int l_port_read(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    lua_Integer n = luaL_checkinteger(L, 2);
    int timeout = lport_begin(L, p, 3);
    luaL_argcheck(L, n >= 0 && n <= (1 << 30), 2, "byte count out of range");
    LP(p)->w.mode = ATH_WAIT_READ;
    LP(p)->w.nbytes = (size_t)n;
    if (lua_istable(L, 3) && lua_getfield(L, 3, "into") != LUA_TNIL) {
        /* Streamed: the bytes go to a file or function as they come,
         * never held whole; the result is the count. */
        luaL_Stream *f = luaL_testudata(L, -1, LUA_FILEHANDLE);
        luaL_argcheck(L, lua_isfunction(L, -1) || (f && f->closef), 3,
                      "into must be an open file or a function");
        if (n == 0) {
            lua_pushinteger(L, 0);
            return 1;
        }
        ath_lport_set(L, p, ATH_LS_SINK);
        LP(p)->sink_n = (size_t)n;
        LP(p)->sunk = 0;
        LP(p)->w.some = 1; /* what has come, each time */
        LP(p)->w.sure = 1; /* and all n will come */
    }
    return ath_lport_wait(L, p, 0, timeout);
}

/* port:recv([max]): what has arrived, 1 to max bytes (default 64 KiB),
 * for binary protocols. */
static int l_port_recv(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    lua_Integer n = luaL_optinteger(L, 2, 65536);
    int timeout = lport_begin(L, p, 3);
    luaL_argcheck(L, n >= 1 && n <= (1 << 30), 2, "byte count out of range");
    LP(p)->w.mode = ATH_WAIT_READ;
    LP(p)->w.nbytes = (size_t)n;
    LP(p)->w.some = 1;
    return ath_lport_wait(L, p, 0, timeout);
}

/* Derives the reply prefix of a command: AT+CGATT? -> "+CGATT:". */
static void lport_reply_prefix(ath_port_t *p, const char *cmd, size_t n)
{
    size_t i = 2, k = 0;
    LP(p)->w.reply = NULL;
    if (n < 4 || (cmd[0] != 'A' && cmd[0] != 'a') ||
        (cmd[1] != 'T' && cmd[1] != 't') ||
        (cmd[2] != '+' && cmd[2] != '^' && cmd[2] != '$' && cmd[2] != '%'))
        return;
    while (i < n && k < sizeof LP(p)->replybuf - 2 && cmd[i] != '=' &&
           cmd[i] != '?' && cmd[i] != ' ' && cmd[i] != ';')
        LP(p)->replybuf[k++] = cmd[i++];
    LP(p)->replybuf[k++] = ':';
    LP(p)->replybuf[k] = '\0';
    LP(p)->reply.kind = ATH_PAT_LITERAL;
    LP(p)->reply.text = LP(p)->replybuf;
    LP(p)->reply.len = k;
    LP(p)->reply.count_cap = 0;
    LP(p)->w.reply = &LP(p)->reply;
}

/* The command's name for messages: up to '=' or '?'. */
static void lport_cmdname(ath_port_t *p, const char *cmd, size_t n)
{
    size_t k = 0;
    while (k < n && k < sizeof LP(p)->cmdname - 1 && cmd[k] != '=' &&
           cmd[k] != '\r' && cmd[k] != '\n')
        k++;
    memcpy(LP(p)->cmdname, cmd, k);
    LP(p)->cmdname[k] = '\0';
}

/* The command's result table (its lines and, unless cmd is NULL, the
 * command at index 2) and what to send at its prompt (option data of the
 * options at index o) go into the port's table. */
static void lport_cmd_result(lua_State *L, ath_port_t *p, const char *cmd,
                             int o, int has_o)
{
    /* lines, command, line, final, ms: room for them all at once (a
     * table that grows is rehashed) */
    lua_createtable(L, 0, 5);
    ath_lport_key(L, p, ATH_K_LINES);
    lua_createtable(L, 2, 0);
    lua_pushvalue(L, -1);
    lua_rawseti(L, LUA_REGISTRYINDEX, LP(p)->lines_ref);
    lua_rawset(L, -3);
    LP(p)->nlines = 0;
    if (cmd) {
        ath_lport_key(L, p, ATH_K_COMMAND);
        lua_pushvalue(L, 2);
        lua_rawset(L, -3);
    }
    lua_rawseti(L, LUA_REGISTRYINDEX, LP(p)->r_ref);
    LP(p)->replied = 0;
    LP(p)->data_sent = 0;
    if (has_o && lua_getfield(L, o, "data") != LUA_TNIL) {
        luaL_checktype(L, -1, LUA_TSTRING);
        LP(p)->has_data = 1;
        ath_lport_set(L, p, ATH_LS_DATA);
    } else {
        if (has_o)
            lua_pop(L, 1);
        if (LP(p)->has_data) { /* the slot is nil unless has_data */
            lua_pushnil(L);
            ath_lport_set(L, p, ATH_LS_DATA);
        }
        LP(p)->has_data = 0;
    }
}

/* Writes cmd[0, n) and the line end (option eol of the options at index
 * o, else the port's): 0 or a negative errno. */
static int lport_cmd_send(lua_State *L, ath_port_t *p, const char *cmd,
                          size_t n, int o, int has_o)
{
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
    return r;
}

/* Whether the options at index o hold nothing but timeout, progress and
 * a boolean reply (what athost.modem gives most commands): then none of
 * them is a pattern, data or a line end, and lport_cmd reads no more of
 * them than lport_begin did (a dozen lookups of absent keys less).
 * *noreply: reply is there (a boolean: no reply prefix). */
static int lport_opts_plain(lua_State *L, int o, int *noreply)
{
    size_t n;
    const char *k;
    *noreply = 0;
    lua_pushnil(L);
    while (lua_next(L, o) != 0) {
        int known = 0;
        if (lua_type(L, -2) == LUA_TSTRING) {
            k = lua_tolstring(L, -2, &n);
            known = (n == 7 && memcmp(k, "timeout", 7) == 0) ||
                    (n == 8 && memcmp(k, "progress", 8) == 0);
            if (n == 5 && memcmp(k, "reply", 5) == 0 &&
                lua_type(L, -1) == LUA_TBOOLEAN)
                known = *noreply = 1;
        }
        lua_pop(L, 1);
        if (!known) {
            lua_pop(L, 1);
            return 0;
        }
    }
    return 1;
}

/* cmd and final share this: wait for a final result code. cmd is NULL
 * for final (nothing is sent). */
static int lport_cmd(lua_State *L, ath_port_t *p, const char *cmd, size_t n,
                     int o)
{
    int timeout = lport_begin(L, p, o);
    int t, noreply = 0, has_o = lua_istable(L, o);
    if (has_o && lport_opts_plain(L, o, &noreply))
        has_o = 0; /* read as no options, but for reply */
    LP(p)->w.mode = ATH_WAIT_CMD;
    if (has_o) {
        lua_getfield(L, o, "final");
        lport_wait_pats(L, p, lua_gettop(L), o, 0);
        lua_pop(L, 1);
    } /* else no patterns: lport_begin cleared them */
    LP(p)->outcome_ms = timeout;
    if (has_o) {
        lua_getfield(L, o, "outcome_timeout");
        LP(p)->outcome_ms = (int)luaL_optinteger(L, -1, timeout);
        lua_getfield(L, o, "echo_check");
        LP(p)->w.echo_check = lua_isnil(L, -1) || lua_toboolean(L, -1);
        lua_pop(L, 2);
    } else {
        LP(p)->w.echo_check = 1;
    }
    if (cmd) {
        lport_cmdname(p, cmd, n);
        memcpy(LP(p)->lastname, LP(p)->cmdname, sizeof LP(p)->lastname);
        LP(p)->w.echo = cmd;
        LP(p)->w.echolen = n;
        ath_chat_flush(p->chat); /* a new command, a new dialogue */
    } else {
        /* final(): the name of the last command sent */
        memcpy(LP(p)->cmdname, LP(p)->lastname, sizeof LP(p)->cmdname);
    }
    t = has_o ? lua_getfield(L, o, "reply") : noreply ? LUA_TBOOLEAN : LUA_TNIL;
    if (t == LUA_TNIL && cmd) {
        lport_reply_prefix(p, cmd, n);
    } else if (t != LUA_TNIL && t != LUA_TBOOLEAN) {
        ath_lport_pat(L, -1, &LP(p)->reply);
        LP(p)->w.reply = &LP(p)->reply;
    }
    if (has_o)
        lua_pop(L, 1);
    lport_cmd_result(L, p, cmd, o, has_o);
    /* anchor: what the wait points into (the options, the command) */
    if (has_o) {
        lua_createtable(L, 2, 0);
        lua_pushvalue(L, o);
        lua_rawseti(L, -2, 1);
        if (cmd) {
            lua_pushvalue(L, 2);
            lua_rawseti(L, -2, 2);
        }
    }
    if (cmd) {
        int r = lport_cmd_send(L, p, cmd, n, o, has_o);
        if (r != 0) {
            lua_pushnil(L);
            lua_pushfstring(L, "EIO: cannot send %s to %s: %s", LP(p)->cmdname,
                            p->name, strerror(-r));
            lua_pushliteral(L, "EIO");
            return 3;
        }
    }
    /* Without options the wait points into the command only, which the
     * waiting flow's stack holds: nothing to anchor. */
    return ath_lport_wait(L, p, has_o ? lua_gettop(L) : 0, timeout);
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

/* ---- the other methods ---------------------------------------------- */

/* port:send(s[, {wait = false}]): writes s; waits while the port drains,
 * unless wait = false: then what the fd does not take now is queued after
 * what is already queued, in order, and sent as the port drains (no
 * flow waits, so any flow may send so at any time). */
static int l_port_send(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    size_t n;
    const char *s = luaL_checklstring(L, 2, &n);
    int r, nowait = lua_istable(L, 3) &&
                    lua_getfield(L, 3, "wait") == LUA_TBOOLEAN &&
                    !lua_toboolean(L, -1);
    if (LP(p)->drainer && !nowait)
        luaL_error(L, "%s is busy: another flow is sending", p->name);
    r = ath_port_write(p, s, n);
    if (r != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "EIO: cannot write to %s: %s", p->name,
                        strerror(-r));
        lua_pushliteral(L, "EIO");
        return 3;
    }
    if (p->wlen == 0 || nowait || !lua_isyieldable(L)) {
        lua_pushboolean(L, 1);
        return 1;
    }
    ath_host_check_flow(L);
    LP(p)->drainer = L;
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
    ath_lport_pat(L, 2, &pat);
    id = ++LP(p)->urc_next;
    ath_lport_get(L, p, ATH_LS_URC);
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
    ath_lport_get(L, p, ATH_LS_URC);
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

/* p:set{} failed: nil, "CODE: name: what: reason", CODE. */
static int lport_set_fail(lua_State *L, ath_port_t *p, int r, const char *what)
{
    const char *code = r == -ENOTSUP ? "ENOTSUP" : "EIO";
    lua_pushnil(L);
    if (r == -ENOTSUP)
        lua_pushfstring(L, "%s: %s: %s: not a serial port", code, p->name,
                        what);
    else
        lua_pushfstring(L, "%s: %s: %s: %s", code, p->name, what,
                        strerror(-r));
    lua_pushstring(L, code);
    return 3;
}

/* baud, databits, parity, stopbits of p:set{} (at index 2); 0, or 3
 * with the failure pushed. */
static int lport_set_line(lua_State *L, ath_port_t *p)
{
    ath_serial_opts_t o = p->so;
    int given = 0, r;
    if (o.baud <= 0) { /* opened without settings: the usual ones */
        o.baud = 115200;
        o.databits = 8;
        o.stopbits = 1;
        o.parity = 'n';
        o.dtr = o.rts = -1;
    }
    if (lua_getfield(L, 2, "baud") != LUA_TNIL) {
        o.baud = (int)luaL_checkinteger(L, -1);
        luaL_argcheck(L, o.baud > 0, 2, "baud must be positive");
        given = 1;
    }
    if (lua_getfield(L, 2, "databits") != LUA_TNIL) {
        o.databits = (int)luaL_checkinteger(L, -1);
        luaL_argcheck(L, o.databits >= 5 && o.databits <= 8, 2,
                      "databits must be 5-8");
        given = 1;
    }
    if (lua_getfield(L, 2, "stopbits") != LUA_TNIL) {
        o.stopbits = (int)luaL_checkinteger(L, -1);
        luaL_argcheck(L, o.stopbits == 1 || o.stopbits == 2, 2,
                      "stopbits must be 1 or 2");
        given = 1;
    }
    if (lua_getfield(L, 2, "parity") != LUA_TNIL) {
        o.parity = luaL_checkstring(L, -1)[0];
        luaL_argcheck(L, strchr("neo", o.parity) != NULL && o.parity, 2,
                      "parity must be none, even or odd");
        given = 1;
    }
    lua_pop(L, 4);
    if (!given)
        return 0;
    o.dtr = o.rts = -1; /* the lines as they are */
    r = ath_port_settings(p, &o);
    if (r != 0) {
        lport_set_fail(L, p, r,
                       r == -EINVAL ? "unsupported line settings"
                                    : "line settings");
        return 3;
    }
    return 0;
}

static int l_port_set(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    luaL_checktype(L, 2, LUA_TTABLE);
    if (lua_getfield(L, 2, "timeout") != LUA_TNIL)
        p->timeout_ms = (int)luaL_checkinteger(L, -1);
    if (lua_getfield(L, 2, "transcript") != LUA_TNIL)
        p->untraced = !lua_toboolean(L, -1);
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
        int r;
        if (p->rfc2217) {
            ath_serial_opts_t o = p->so;
            o.dtr = dtr;
            o.rts = rts;
            r = ath_port_settings(p, &o);
        } else {
            r = ath_serial_lines(p->fd, dtr, rts);
        }
        if (r != 0)
            return lport_set_fail(L, p, r, "modem lines");
    }
    if (lport_set_line(L, p) != 0)
        return 3;
    if (lua_getfield(L, 2, "brk") != LUA_TNIL) {
        int r = ath_port_break(p, lua_toboolean(L, -1));
        if (r != 0)
            return lport_set_fail(L, p, r, "break");
    }
    if (lua_getfield(L, 2, "purge") != LUA_TNIL) {
        static const char *const which[] = {"rx", "tx", "both", NULL};
        int w = luaL_checkoption(L, -1, NULL, which) + 1, r;
        r = ath_port_purge(p, w);
        if (r != 0)
            return lport_set_fail(L, p, r, "purge");
    }
    lua_pushboolean(L, 1);
    return 1;
}

static int l_port_close(lua_State *L)
{
    ath_port_t **pp = luaL_checkudata(L, 1, ATH_PORT_MT);
    if (*pp && !(*pp)->closed) {
        ath_host_t *h = (*pp)->h; /* the port's, not the running flow's */
        ath_lport_close(*pp, L);
        ath_host_dispatch(h);
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
    ath_port_t **pp;
    const char *k;
    ath_port_t *p;
    /* A method, the common case, first: a raw lookup of the key as it
     * is, no string made from C. */
    lua_settop(L, 2);
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL)
        return 1;
    lua_pop(L, 1);
    pp = luaL_checkudata(L, 1, ATH_PORT_MT);
    k = luaL_checkstring(L, 2);
    p = *pp;
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
        if (strcmp(k, "remote") == 0 && p->rfc2217) {
            /* What the RFC 2217 server says it set. */
            int baud, databits, parity, stopbits;
            ath_rfc2217_remote(p, &baud, &databits, &parity, &stopbits);
            lua_createtable(L, 0, 4);
            if (baud) {
                lua_pushinteger(L, baud);
                lua_setfield(L, -2, "baud");
            }
            if (databits) {
                lua_pushinteger(L, databits);
                lua_setfield(L, -2, "databits");
            }
            if (parity) {
                lua_pushstring(L, parity == 'n'   ? "none"
                                  : parity == 'o' ? "odd"
                                  : parity == 'e' ? "even"
                                  : parity == 'm' ? "mark"
                                                  : "space");
                lua_setfield(L, -2, "parity");
            }
            if (stopbits) {
                lua_pushinteger(L, stopbits);
                lua_setfield(L, -2, "stopbits");
            }
            return 1;
        }
        if (strcmp(k, "eof") == 0) {
            lua_pushboolean(L, p->eof);
            return 1;
        }
        if (strcmp(k, "port") == 0 && p->kind == ATH_PORT_LISTEN) {
            ath_lport_get(L, p, ATH_LS_PORTNUM);
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
    ath_lport_keys(L);
    lua_pop(L, 1);
}
