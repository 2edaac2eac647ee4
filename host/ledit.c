/*
 * ledit.c: athost.editor(), line editing and history on a terminal for
 * athost -i, with libedit (BSD licence) through its readline-compatible
 * callback interface, driven by the loop: a uv_poll on standard input
 * feeds the keys to rl_callback_read_char(), so the module's lines are
 * printed while a line is being typed without breaking it (the prompt
 * line is cleared, the text printed, the prompt and the half-typed line
 * drawn again).
 *
 *   local ed = athost.editor{ prompt = "AT> ", history = path, escape = 0x1d }
 *   local kind, v = ed:read()  -- "line", text | "escape", key | "eof"
 *   ed:print(text)             -- above the line being typed
 *   ed:clear()                 -- drops the line being typed (Ctrl-C)
 *   local text = ed:take()     -- takes the line being typed (Ctrl-] z)
 *   ed:close()
 *
 * The escape key (default Ctrl-]) is not given to the editor: the key
 * after it is returned as an "escape" event. libedit's readline interface
 * keeps one state, so there is one editor at a time.
 */
#include "host.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <editline/readline.h>

#define EDITOR_MT "athost.editor"

typedef struct ledit {
    ath_res_t res;
    ath_host_t *h;
    uv_poll_t poll;
    int closed;
    lua_State *reader; /* the flow waiting in read() */
    int qref;          /* registry: the queue of events, { {kind, v}, ... } */
    unsigned char in[512];
    size_t inlen, inpos;
    int escape_key;
    int escaped; /* the escape key came: the next key is a command */
    char *prompt;
    char *history;
    char *last; /* the last line added to the history */
    int line_done; /* a line (or EOF) came: the handler is installed anew */
    /* No key since the handler was installed: the line is empty, though
     * libedit's rl_line_buffer and rl_end still show the last one (they
     * follow its line only as keys come; rl_replace_line("") changes
     * nothing). */
    int fresh;
    struct ledit **box;
} ledit_t;

static ledit_t *current;

/* ---- events -------------------------------------------------------------- */

/* Queues {kind, value} (value: s[0, n), or none when s is NULL) and hands
 * the oldest event to a waiting reader. */
static void ed_push(ledit_t *e, const char *kind, const char *s, size_t n)
{
    lua_State *L = e->h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->qref);
    lua_createtable(L, 2, 0);
    lua_pushstring(L, kind);
    lua_rawseti(L, -2, 1);
    if (s) {
        lua_pushlstring(L, s, n);
        lua_rawseti(L, -2, 2);
    }
    lua_rawseti(L, -2, (lua_Integer)lua_rawlen(L, -2) + 1);
    lua_pop(L, 1);
}

/* Moves the oldest event onto L's stack (kind, value); 0 if none. */
static int ed_pop(ledit_t *e, lua_State *L)
{
    lua_Integer i, n;
    lua_rawgeti(L, LUA_REGISTRYINDEX, e->qref);
    n = (lua_Integer)lua_rawlen(L, -1);
    if (n == 0) {
        lua_pop(L, 1);
        return 0;
    }
    lua_rawgeti(L, -1, 1);
    for (i = 1; i < n; i++) {
        lua_rawgeti(L, -2, i + 1);
        lua_rawseti(L, -3, i);
    }
    lua_pushnil(L);
    lua_rawseti(L, -3, n);
    lua_remove(L, -2);
    lua_rawgeti(L, -1, 1);
    lua_rawgeti(L, -2, 2);
    lua_remove(L, -3);
    return 2;
}

static void ed_wake(ledit_t *e)
{
    lua_State *co = e->reader;
    if (co == NULL)
        return;
    if (ed_pop(e, e->h->L)) {
        e->reader = NULL;
        lua_xmove(e->h->L, co, 2);
        ath_host_wake(e->h, co, 2);
    }
}

/* ---- libedit's side ------------------------------------------------------ */

/* Keys come from what the poll read; the rest of a key sequence that was
 * split between reads (an arrow key's ESC [ A) is waited for. */
static int ed_getc(FILE *f)
{
    unsigned char c;
    (void)f;
    if (current && current->inpos < current->inlen)
        return current->in[current->inpos++];
    for (;;) {
        ssize_t n = read(0, &c, 1);
        if (n == 1)
            return c;
        if (n < 0 && errno == EINTR)
            continue;
        return EOF;
    }
}

static void ed_history_save(ledit_t *e)
{
    int fd;
    if (e->history == NULL)
        return;
    /* Created 0600 and never through a symbolic link: typed lines may
     * hold secrets. write_history() then rewrites it in place. */
    fd = open(e->history, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return;
    fchmod(fd, 0600);
    close(fd);
    write_history(e->history);
}

static void ed_line(char *line)
{
    ledit_t *e = current;
    if (e == NULL) {
        free(line);
        return;
    }
    e->line_done = 1;
    if (line == NULL) {
        ed_push(e, "eof", NULL, 0);
    } else {
        if (line[0] && (e->last == NULL || strcmp(e->last, line) != 0)) {
            add_history(line);
            free(e->last);
            e->last = strdup(line);
            ed_history_save(e);
        }
        ed_push(e, "line", line, strlen(line));
    }
    free(line);
}

static void ed_install(ledit_t *e)
{
    e->fresh = 1;
    rl_callback_handler_install(e->prompt, (rl_vcpfunc_t *)ed_line);
}

/* ---- the loop's side ------------------------------------------------------ */

static void ed_poll_cb(uv_poll_t *handle, int status, int events)
{
    ledit_t *e = handle->data;
    ssize_t n;
    (void)events;
    if (e->closed)
        return;
    n = status < 0 ? -1 : read(0, e->in, sizeof e->in);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        uv_poll_stop(&e->poll);
        ed_push(e, "eof", NULL, 0);
    } else {
        e->inlen = (size_t)n;
        e->inpos = 0;
        while (!e->closed && e->inpos < e->inlen) {
            unsigned char c = e->in[e->inpos];
            size_t before = e->inpos;
            if (e->escaped) {
                char k = (char)c;
                e->inpos++;
                e->escaped = 0;
                ed_push(e, "escape", &k, 1);
            } else if (c == e->escape_key) {
                e->inpos++;
                e->escaped = 1;
            } else if (c == 0x03) {
                /* Ctrl-C as a key: a terminal without ISIG (raw mode)
                 * sends it instead of SIGINT; it means the same. */
                e->inpos++;
                ath_host_interrupt(e->h, "SIGINT");
            } else {
                rl_callback_read_char();
                if (current == e)
                    e->fresh = 0;
                if (current == e && e->inpos == before)
                    e->inpos++; /* nothing taken: never loop */
                if (current == e && e->line_done) {
                    /* libedit leaves its one-key-at-a-time mode after a
                     * line; installing the handler again restores it
                     * (and draws the prompt). */
                    e->line_done = 0;
                    rl_callback_handler_remove();
                    ed_install(e);
                }
            }
        }
        e->inlen = e->inpos = 0;
    }
    ed_wake(e);
    ath_host_dispatch(e->h);
}

static void ed_closed(uv_handle_t *handle)
{
    ledit_t *e = handle->data;
    ath_host_t *h = e->h;
    if (e->box)
        *e->box = NULL;
    free(e->prompt);
    free(e->history);
    free(e->last);
    free(e);
    ath_host_handles(h, -1);
}

static void ed_close(ledit_t *e)
{
    if (e->closed)
        return;
    e->closed = 1;
    ath_host_res_del(e->h, &e->res);
    if (current == e) {
        rl_callback_handler_remove();
        current = NULL;
    }
    ed_history_save(e);
    luaL_unref(e->h->L, LUA_REGISTRYINDEX, e->qref);
    e->qref = LUA_NOREF;
    uv_poll_stop(&e->poll);
    uv_close((uv_handle_t *)&e->poll, ed_closed);
}

static void ed_res_close(ath_res_t *r)
{
    ed_close((ledit_t *)r);
}

/* ---- Lua ---------------------------------------------------------------- */

/* mkdir -p of path's directory, mode 0700 for what it creates. */
static void ed_mkdirs(const char *path)
{
    char *d = strdup(path), *p;
    if (d == NULL)
        return;
    for (p = d + 1; *p; p++)
        if (*p == '/') {
            *p = '\0';
            mkdir(d, 0700);
            *p = '/';
        }
    free(d);
}

static ledit_t *ed_check(lua_State *L)
{
    ledit_t **box = luaL_checkudata(L, 1, EDITOR_MT);
    if (*box == NULL || (*box)->closed)
        luaL_error(L, "the editor is closed");
    return *box;
}

/* athost.editor(opts): nil, "ENOTTY: ...", "ENOTTY" when standard input is
 * not a terminal (a pipe: read lines instead). */
static int l_editor(lua_State *L)
{
    ath_host_t *h = ath_host_from(L);
    ledit_t *e, **box;
    const char *prompt = "", *hist = NULL;
    int key = 0x1d;
    if (lua_istable(L, 1)) {
        lua_getfield(L, 1, "prompt");
        prompt = luaL_optstring(L, -1, prompt);
        lua_getfield(L, 1, "history");
        hist = luaL_optstring(L, -1, NULL);
        lua_getfield(L, 1, "escape");
        key = (int)luaL_optinteger(L, -1, key);
        lua_pop(L, 3); /* the strings live on in opts */
    }
    if (!isatty(0)) {
        lua_pushnil(L);
        lua_pushliteral(L, "ENOTTY: standard input is not a terminal");
        lua_pushliteral(L, "ENOTTY");
        return 3;
    }
    if (current != NULL)
        return luaL_error(L, "an editor is open already");
    e = calloc(1, sizeof *e);
    if (e == NULL)
        return luaL_error(L, "out of memory");
    e->h = h;
    e->escape_key = key;
    e->prompt = strdup(prompt);
    e->history = hist ? strdup(hist) : NULL;
    lua_newtable(L);
    e->qref = luaL_ref(L, LUA_REGISTRYINDEX);
    if (uv_poll_init(h->loop, &e->poll, 0) != 0) {
        luaL_unref(L, LUA_REGISTRYINDEX, e->qref);
        free(e->prompt);
        free(e->history);
        free(e);
        return luaL_error(L, "cannot watch standard input");
    }
    e->poll.data = e;
    h->handles++;
    e->res.close = ed_res_close;
    ath_host_res_add(h, &e->res);
    current = e;
    rl_instream = stdin;
    rl_outstream = stdout;
    rl_catch_signals = 0; /* Ctrl-C is the loop's SIGINT */
    rl_getc_function = ed_getc;
    using_history();
    stifle_history(1000);
    if (e->history) {
        ed_mkdirs(e->history);
        read_history(e->history);
    }
    ed_install(e);
    uv_poll_start(&e->poll, UV_READABLE, ed_poll_cb);
    box = lua_newuserdatauv(L, sizeof *box, 0);
    *box = e;
    e->box = box;
    luaL_setmetatable(L, EDITOR_MT);
    return 1;
}

/* ed:read(): waits for the next event: "line", text; "escape", key;
 * "eof". */
static int l_editor_read(lua_State *L)
{
    ledit_t *e = ed_check(L);
    if (ed_pop(e, L))
        return 2;
    if (e->reader)
        return luaL_error(L, "another flow reads the editor");
    ath_host_check_flow(L);
    e->reader = L;
    return lua_yield(L, 0);
}

/* ed:print(text): text above the line being typed, which is then drawn
 * again as it was. */
static int l_editor_print(lua_State *L)
{
    size_t n;
    const char *s;
    ledit_t *e = ed_check(L);
    s = luaL_checklstring(L, 2, &n);
    (void)e;
    fputs("\r\033[K", stdout);
    fwrite(s, 1, n, stdout);
    fflush(stdout);
    rl_forced_update_display();
    fflush(stdout);
    return 0;
}

/* ed:clear(): the line being typed is dropped (Ctrl-C at the prompt). */
static int l_editor_clear(lua_State *L)
{
    ledit_t *e = ed_check(L);
    rl_replace_line("", 0);
    fputs("^C\n", stdout);
    fflush(stdout);
    rl_callback_handler_remove();
    ed_install(e);
    return 0;
}

/* ed:take(): the line being typed, taken out of the editor as it is (no
 * line end, not in the history): the text at a data prompt that Ctrl-Z
 * sends or ESC cancels. It stays on the screen as typed, a new prompt
 * below it. */
static int l_editor_take(lua_State *L)
{
    ledit_t *e = ed_check(L);
    size_t n = 0;
    if (!e->fresh && rl_line_buffer != NULL && rl_end > 0)
        n = (size_t)rl_end;
    lua_pushlstring(L, n ? rl_line_buffer : "", n);
    if (n == 0)
        return 1;
    fputs("\r\033[K", stdout);
    fputs(e->prompt, stdout);
    fwrite(lua_tostring(L, -1), 1, n, stdout);
    fputs("\n", stdout);
    /* Installing the handler anew starts an empty line. */
    rl_callback_handler_remove();
    ed_install(e);
    fflush(stdout);
    return 1;
}

/* ed:prompt(p): a new prompt, drawn at once. */
static int l_editor_prompt(lua_State *L)
{
    ledit_t *e = ed_check(L);
    char *p = strdup(luaL_checkstring(L, 2));
    if (p == NULL)
        return luaL_error(L, "out of memory");
    free(e->prompt);
    e->prompt = p;
    rl_set_prompt(p);
    fputs("\r\033[K", stdout);
    rl_forced_update_display();
    fflush(stdout);
    return 0;
}

static int l_editor_close(lua_State *L)
{
    ledit_t **box = luaL_checkudata(L, 1, EDITOR_MT);
    if (*box && !(*box)->closed) {
        fputs("\n", stdout);
        fflush(stdout);
        ed_close(*box);
    }
    return 0;
}

static int l_editor_gc(lua_State *L)
{
    ledit_t **box = luaL_checkudata(L, 1, EDITOR_MT);
    if (*box)
        (*box)->box = NULL;
    *box = NULL;
    return 0;
}

static const luaL_Reg editor_methods[] = {
    {"read", l_editor_read},     {"print", l_editor_print},
    {"clear", l_editor_clear},   {"take", l_editor_take},
    {"prompt", l_editor_prompt},
    {"close", l_editor_close},   {NULL, NULL}};

/* athost.isatty(fd): whether fd (0, 1, 2) is a terminal, for colour. */
static int l_isatty(lua_State *L)
{
    lua_pushboolean(L, isatty((int)luaL_checkinteger(L, 1)));
    return 1;
}

void ath_ledit_open(lua_State *L)
{
    lua_pushcfunction(L, l_editor);
    lua_setfield(L, -2, "editor");
    lua_pushcfunction(L, l_isatty);
    lua_setfield(L, -2, "isatty");
    if (luaL_newmetatable(L, EDITOR_MT)) {
        lua_pushcfunction(L, l_editor_gc);
        lua_setfield(L, -2, "__gc");
        luaL_newlib(L, editor_methods);
        lua_setfield(L, -2, "__index");
    }
    lua_pop(L, 1);
}
