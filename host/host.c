/*
 * host.c: a host: one Lua state (or a share of one), one loop. Creating,
 * configuring, loading, starting, running and freeing it; where Lua finds
 * the modules. It is the top of host/'s calls: nothing below calls back
 * into it. The flows are scheduled and a run ended in flow.c, the events
 * reported in event.c; what the byte path needs of a host (loop, clock,
 * transcript, the resources closed when a run ends) is core.c.
 */
#include "host.h"

#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <lualib.h>
#include <pthread.h>

#ifndef ATHOST_LIBDIR
#define ATHOST_LIBDIR "/usr/local/share/athost/lib"
#endif
#ifndef ATHOST_DATADIR
#define ATHOST_DATADIR "/usr/local/share/athost"
#endif

/* registry: path key -> factory of the main flow (shared hosts) */
static const char FLOW_CACHE_KEY = 'f';
/* registry: the metatable of shared hosts' globals, { __index = _G } */
static const char ENV_MT_KEY = 'e';




/* ---- set-up ----------------------------------------------------------- */

/* The installed data directory (flows, scripts, lib/): the build tree
 * when the binary runs from it, an install under any prefix next to the
 * binary, else the configured one. */
static void host_datadir(char *dir, size_t n)
{
    char exe[PATH_MAX], probe[PATH_MAX + 64];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash;
    if (len > 0) {
        exe[len] = '\0';
        if ((slash = strrchr(exe, '/')) != NULL)
            *slash = '\0';
        snprintf(probe, sizeof probe, "%s/lib/athost", exe);
        if (access(probe, R_OK) == 0) {
            snprintf(dir, n, "%s", exe);
            return;
        }
        snprintf(probe, sizeof probe, "%s/../share/athost/lib/athost", exe);
        if (access(probe, R_OK) == 0) {
            size_t len = strlen(probe) - strlen("/lib/athost");
            if (len < n) {
                memcpy(dir, probe, len);
                dir[len] = '\0';
                return;
            }
        }
    }
    snprintf(dir, n, "%s", ATHOST_DATADIR);
}

/* The roots a script name is looked up in after the current directory:
 * each ATHOST_PATH entry, then the data directory. Calls fn(root, ud)
 * until it returns non-zero; returns that. */
static int host_roots(int (*fn)(const char *root, void *ud), void *ud)
{
    const char *list = getenv("ATHOST_PATH");
    char root[PATH_MAX];
    int r;
    while (list && *list) {
        const char *end = strchr(list, ':');
        size_t len = end ? (size_t)(end - list) : strlen(list);
        if (len > 0 && len < sizeof root) {
            memcpy(root, list, len);
            root[len] = '\0';
            if ((r = fn(root, ud)) != 0)
                return r;
        }
        list = end ? end + 1 : NULL;
    }
    host_datadir(root, sizeof root);
    return fn(root, ud);
}

typedef struct find_ctx {
    const char *name;
    char *out;
    size_t n;
} find_ctx_t;

static int is_file(const char *path)
{
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

/* name, or name.lua, under root. */
static int find_in(const char *root, void *ud)
{
    find_ctx_t *c = ud;
    snprintf(c->out, c->n, "%s%s%s", root, *root ? "/" : "", c->name);
    if (is_file(c->out))
        return 1;
    snprintf(c->out, c->n, "%s%s%s.lua", root, *root ? "/" : "", c->name);
    return is_file(c->out);
}

const char *ath_script_find(const char *name, char *buf, size_t n)
{
    find_ctx_t c;
    c.name = name;
    c.out = buf;
    c.n = n;
    if (find_in("", &c))
        return buf;
    if (name[0] == '/' || strncmp(name, "./", 2) == 0 ||
        strncmp(name, "../", 3) == 0)
        return NULL; /* a path meant as one */
    return host_roots(find_in, &c) ? buf : NULL;
}

/* The first comment line of a Lua file, without "-- ". */
static void first_comment(const char *path, char *out, size_t n)
{
    FILE *f = fopen(path, "r");
    char line[512];
    out[0] = '\0';
    if (f == NULL)
        return;
    while (fgets(line, sizeof line, f)) {
        char *s = line;
        size_t len;
        if (line[0] == '#')
            continue; /* #! */
        if (strncmp(s, "--", 2) != 0)
            break;
        s += 2;
        while (*s == ' ' || *s == '-')
            s++;
        len = strcspn(s, "\r\n");
        if (len == 0)
            continue;
        snprintf(out, n, "%.*s", (int)len, s);
        break;
    }
    fclose(f);
}

typedef struct list_ctx {
    FILE *out;
    char **seen;
    size_t nseen, cap;
} list_ctx_t;

static int cmp_str(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int list_in(const char *root, void *ud)
{
    static const char *const dirs[] = {"clouds", "scripts", "scripts/sim"};
    list_ctx_t *c = ud;
    size_t d;
    for (d = 0; d < sizeof dirs / sizeof dirs[0]; d++) {
        char path[PATH_MAX + 300], *names[512];
        size_t nn = 0, i, k;
        struct dirent *e;
        DIR *dp;
        snprintf(path, sizeof path, "%s/%s", root, dirs[d]);
        if ((dp = opendir(path)) == NULL)
            continue;
        while ((e = readdir(dp)) != NULL && nn < 512) {
            size_t len = strlen(e->d_name);
            if (len > 4 && strcmp(e->d_name + len - 4, ".lua") == 0)
                names[nn++] = strdup(e->d_name);
        }
        closedir(dp);
        qsort(names, nn, sizeof names[0], cmp_str);
        for (i = 0; i < nn; i++) {
            char rel[600], desc[300];
            int dup = 0;
            if (names[i] == NULL)
                continue;
            snprintf(rel, sizeof rel, "%s/%s", dirs[d], names[i]);
            for (k = 0; k < c->nseen; k++)
                dup |= strcmp(c->seen[k], rel) == 0;
            if (!dup) { /* the first root wins, as in a lookup */
                snprintf(path, sizeof path, "%s/%s", root, rel);
                first_comment(path, desc, sizeof desc);
                fprintf(c->out, "%-28s %s\n", rel, desc);
                if (c->nseen == c->cap) {
                    size_t cap = c->cap ? c->cap * 2 : 32;
                    char **ns = realloc(c->seen, cap * sizeof *ns);
                    if (ns != NULL) {
                        c->seen = ns;
                        c->cap = cap;
                    }
                }
                if (c->nseen < c->cap)
                    c->seen[c->nseen++] = strdup(rel);
            }
            free(names[i]);
        }
    }
    return 0;
}

int ath_script_list(FILE *out)
{
    list_ctx_t c;
    size_t i;
    memset(&c, 0, sizeof c);
    c.out = out;
    host_roots(list_in, &c);
    for (i = 0; i < c.nseen; i++)
        free(c.seen[i]);
    free(c.seen);
    return 0;
}

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

/* ---- Lua modules, compiled once per process ------------------------------
 *
 * Every host is a Lua state of its own, and a station runs hundreds: each
 * compiling the same library from source was most of a DUT's CPU. The
 * searcher below replaces Lua's own for package.path: the first host
 * that requires a module compiles it and keeps its bytecode (lua_dump,
 * debug information kept: messages and tracebacks are the same); the
 * others load that (luaL_loadbufferx, binary only), as long as the file
 * is the same (device, inode, size, modification time). Process-wide,
 * under a mutex: hosts may live in several threads.
 */
typedef struct bc_entry {
    char *path;
    dev_t dev;
    ino_t ino;
    off_t size;
    struct timespec mtime;
    char *bc;
    size_t n;
    struct bc_entry *next;
} bc_entry_t;

static pthread_mutex_t bc_mu = PTHREAD_MUTEX_INITIALIZER;
static bc_entry_t *bc_list;

typedef struct bc_buf {
    char *b;
    size_t n, cap;
    int failed;
} bc_buf_t;

static int bc_writer(lua_State *L, const void *p, size_t sz, void *ud)
{
    bc_buf_t *w = ud;
    (void)L;
    if (w->n + sz > w->cap) {
        size_t cap = w->cap ? w->cap : 4096;
        char *nb;
        while (cap < w->n + sz)
            cap *= 2;
        if ((nb = realloc(w->b, cap)) == NULL) {
            w->failed = 1;
            return 1;
        }
        w->b = nb;
        w->cap = cap;
    }
    memcpy(w->b + w->n, p, sz);
    w->n += sz;
    return 0;
}

static int bc_same(const bc_entry_t *e, const struct stat *st)
{
    return e->dev == st->st_dev && e->ino == st->st_ino &&
           e->size == st->st_size && e->mtime.tv_sec == st->st_mtim.tv_sec &&
           e->mtime.tv_nsec == st->st_mtim.tv_nsec;
}

/* Loads the Lua file at path as luaL_loadfilex(L, path, "bt") does,
 * from the process's bytecode when it has the same file. */
static int bc_load(lua_State *L, const char *path)
{
    struct stat st;
    bc_entry_t *e;
    bc_buf_t w = {NULL, 0, 0, 0};
    int r;
    if (stat(path, &st) != 0)
        return luaL_loadfilex(L, path, "bt"); /* its message */
    pthread_mutex_lock(&bc_mu);
    for (e = bc_list; e; e = e->next)
        if (strcmp(e->path, path) == 0 && bc_same(e, &st))
            break;
    if (e != NULL) {
        r = luaL_loadbufferx(L, e->bc, e->n, path, "b");
        pthread_mutex_unlock(&bc_mu);
        return r;
    }
    pthread_mutex_unlock(&bc_mu);
    if ((r = luaL_loadfilex(L, path, "bt")) != LUA_OK)
        return r;
    if (lua_dump(L, bc_writer, &w, 0) != 0 || w.failed ||
        (e = calloc(1, sizeof *e)) == NULL || (e->path = strdup(path)) == NULL) {
        free(e);
        free(w.b);
        return LUA_OK; /* loaded all the same, just not kept */
    }
    e->dev = st.st_dev;
    e->ino = st.st_ino;
    e->size = st.st_size;
    e->mtime = st.st_mtim;
    e->bc = w.b;
    e->n = w.n;
    pthread_mutex_lock(&bc_mu);
    e->next = bc_list;
    bc_list = e;
    pthread_mutex_unlock(&bc_mu);
    return LUA_OK;
}

/* package.searchers[2]: Lua's own searcher for package.path, loading
 * through bc_load. */
static int host_searcher(lua_State *L)
{
    const char *name = luaL_checkstring(L, 1), *path;
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchpath");
    lua_pushvalue(L, 1);
    lua_getfield(L, -3, "path");
    if (lua_type(L, -1) != LUA_TSTRING)
        return luaL_error(L, "'package.path' must be a string");
    lua_call(L, 2, 2);
    if (lua_isnil(L, -2))
        return 1; /* the message of the paths tried */
    lua_pop(L, 1);
    path = lua_tostring(L, -1);
    if (bc_load(L, path) != LUA_OK)
        return luaL_error(L, "error loading module '%s' from file '%s':\n\t%s",
                          name, path, lua_tostring(L, -1));
    lua_insert(L, -2);
    return 2; /* the loader, and the file, as Lua's searcher */
}

/* The host's own tables in the state: its flows, parameters, cleanups. */
static void host_refs(lua_State *L, ath_host_t *h)
{
    lua_newtable(L);
    h->flows_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    h->params_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    lua_newtable(L);
    h->defers_ref = luaL_ref(L, LUA_REGISTRYINDEX);
}

static int host_openlibs(lua_State *L)
{
    ath_host_t *h = lua_touserdata(L, 1);
    luaL_openlibs(L);
    lua_pushlightuserdata(L, h);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &ath_host_key);
    host_refs(L, h);
    luaL_getsubtable(L, LUA_REGISTRYINDEX, LUA_PRELOAD_TABLE);
    lua_pushcfunction(L, luaopen_athost);
    lua_setfield(L, -2, "athost");
    lua_pushcfunction(L, luaopen_cjson);
    lua_setfield(L, -2, "cjson");
    lua_pop(L, 1);
    host_paths(h);
    lua_getglobal(L, "package");
    lua_getfield(L, -1, "searchers");
    lua_pushcfunction(L, host_searcher);
    lua_rawseti(L, -2, 2);
    lua_pop(L, 2);
    /* Load the module now so that its metatables exist for spawned tasks;
     * it is also the global athost, for -e chunks and -i lines. */
    luaL_requiref(L, "athost", luaopen_athost, 1);
    return 0;
}

static void host_norefs(ath_host_t *h)
{
    h->main_ref = h->port_ref = LUA_NOREF;
    h->flows_ref = h->params_ref = h->defers_ref = LUA_NOREF;
    h->onint_ref = h->env_ref = h->main_co_ref = LUA_NOREF;
}

/* The last step of making a host: its transcript, when asked for. Returns
 * h, or NULL (h freed) when the file cannot be opened. */
static ath_host_t *host_transcript(ath_host_t *h)
{
    char err[1200];
    if (h->opts.transcript == NULL)
        return h;
    h->tr = ath_tr_open(h, h->opts.transcript, h->opts.transcript_max, err,
                        sizeof err);
    if (h->tr == NULL) {
        h->error = strdup(err);
        fprintf(stderr, "athost: %s\n", h->error);
        ath_host_free(h);
        return NULL;
    }
    return h;
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
    host_norefs(h);
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
    h->L = ath_lua_newstate(); /* pools; big payloads become strings uncopied */
    if (h->L == NULL) {
        ath_host_free(h);
        return NULL;
    }
    /* Lua leaves the main thread's extra space uninitialised; new threads
     * copy it, and only flows may carry a non-NULL marker there. */
    *(void **)lua_getextraspace(h->L) = NULL;
    lua_pushcfunction(h->L, host_openlibs);
    lua_pushlightuserdata(h->L, h);
    if (lua_pcall(h->L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "athost: %s\n", lua_tostring(h->L, -1));
        ath_host_free(h);
        return NULL;
    }
    return host_transcript(h);
}

int ath_host_set_param(ath_host_t *h, const char *key, const char *value)
{
    /* raw: the flow may have given its parameters an __newindex, and
     * this runs outside any protected call */
    lua_rawgeti(h->L, LUA_REGISTRYINDEX, h->params_ref);
    lua_pushstring(h->L, key);
    lua_pushstring(h->L, value);
    lua_rawset(h->L, -3);
    lua_pop(h->L, 1);
    /* Arguments named like secrets are masked without the script asking. */
    if (ath_secret_name(key, strlen(key)))
        ath_host_add_secret(h, value);
    return 0;
}

/* key=value from a command line: "@FILE" reads the value from FILE (one
 * final line end dropped), "@@..." is a value starting with "@". Keeps
 * secrets out of `ps` and shell history. -1 when FILE cannot be read
 * (ath_host_error says which parameter and why). */
int ath_host_set_param_arg(ath_host_t *h, const char *key, const char *value)
{
    FILE *f;
    char *buf = NULL;
    size_t len = 0, cap = 0, n;
    int rc;
    if (value[0] != '@')
        return ath_host_set_param(h, key, value);
    if (value[1] == '@')
        return ath_host_set_param(h, key, value + 1);
    f = fopen(value + 1, "rb");
    if (f == NULL) {
        char err[512];
        snprintf(err, sizeof err, "parameter %s=@%s: cannot read %s: %s", key,
                 value + 1, value + 1, strerror(errno));
        free(h->error);
        h->error = strdup(err);
        return -1;
    }
    for (;;) {
        if (len + 4096 + 1 > cap) {
            char *nb = realloc(buf, cap = (cap ? cap * 2 : 8192));
            if (nb == NULL) {
                free(buf);
                fclose(f);
                free(h->error);
                h->error = strdup("out of memory");
                return -1;
            }
            buf = nb;
        }
        n = fread(buf + len, 1, 4096, f);
        if (n == 0)
            break;
        len += n;
    }
    fclose(f);
    if (buf == NULL)
        buf = calloc(1, 1);
    if (buf == NULL)
        return -1;
    if (len > 0 && buf[len - 1] == '\n')
        len--;
    if (len > 0 && buf[len - 1] == '\r')
        len--;
    buf[len] = '\0';
    rc = ath_host_set_param(h, key, buf);
    memset(buf, 0, len);
    free(buf);
    return rc;
}

/* ATHOST_PARAM_<NAME>=value in the environment: parameter <name> (lower
 * case), below the command line's key=value and above --config. */
void ath_host_params_from_env(ath_host_t *h)
{
    extern char **environ;
    char **e;
    for (e = environ; e && *e; e++) {
        const char *eq;
        char key[128];
        size_t i, n;
        if (strncmp(*e, "ATHOST_PARAM_", 13) != 0)
            continue;
        eq = strchr(*e, '=');
        n = eq ? (size_t)(eq - *e) - 13 : 0;
        if (n == 0 || n >= sizeof key)
            continue;
        for (i = 0; i < n; i++)
            key[i] = (char)tolower((unsigned char)(*e)[13 + i]);
        key[n] = '\0';
        ath_host_set_param(h, key, eq + 1);
    }
}

static int host_config(lua_State *L)
{
    const char *path = lua_tostring(L, 1);
    ath_host_t *h = lua_touserdata(L, 2);
    FILE *f = fopen(path, "rb");
    luaL_Buffer b;
    char buf[4096];
    size_t n;
    struct stat st;
    unsigned mode = 0;
    int warned = 0;
    if (f == NULL)
        return luaL_error(L, "cannot open config %s: %s", path,
                          strerror(errno));
    if (fstat(fileno(f), &st) == 0)
        mode = (unsigned)st.st_mode;
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
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->params_ref);
    lua_pushnil(L);
    while (lua_next(L, -3)) {
        if (lua_type(L, -2) == LUA_TSTRING) {
            size_t kn;
            const char *k = lua_tolstring(L, -2, &kn);
            /* A secret from a file is masked like one from the command
             * line; a file others may read is worth a warning. */
            if (ath_secret_name(k, kn) && lua_type(L, -1) == LUA_TSTRING) {
                ath_host_add_secret(h, lua_tostring(L, -1));
                if (!warned && (mode & 077)) {
                    fprintf(stderr, "athost: warning: %s holds %s and others "
                            "may read it (mode %04o): chmod 600 %s\n", path, k,
                            (unsigned)(mode & 07777), path);
                    warned = 1;
                }
            }
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -4);
        } else {
            lua_pop(L, 1);
        }
    }
    return 0;
}

/* Takes the error message on top of the stack as the host's error: a C
 * string, so a NUL in it is written \x00 (what follows is not lost). */
static void host_error(ath_host_t *h)
{
    size_t n;
    const char *msg = lua_tolstring(h->L, -1, &n);
    free(h->error);
    h->error = NULL;
    if (msg) {
        msg = ath_pushcstr(h->L, msg, n);
        h->error = ath_host_redact(h, msg, strlen(msg), NULL);
        lua_pop(h->L, 1);
    }
    lua_pop(h->L, 1);
}

int ath_host_load_config(ath_host_t *h, const char *path)
{
    lua_pushcfunction(h->L, host_config);
    lua_pushstring(h->L, path);
    lua_pushlightuserdata(h->L, h);
    if (lua_pcall(h->L, 2, 0, 0) != LUA_OK) {
        host_error(h);
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
    if (h->env_ref != LUA_NOREF) { /* a shared host: its own globals */
        lua_rawgeti(h->L, LUA_REGISTRYINDEX, h->env_ref);
        lua_insert(h->L, -2);
        lua_setfield(h->L, -2, "arg");
        lua_pop(h->L, 1);
        return;
    }
    lua_setglobal(h->L, "arg");
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
        host_error(h);
        return ATH_EXIT_USAGE;
    }
    luaL_unref(h->L, LUA_REGISTRYINDEX, h->main_ref);
    h->main_ref = luaL_ref(h->L, LUA_REGISTRYINDEX);
    return 0;
}

/* ---- shared hosts: many in one state ------------------------------------
 *
 * A shared host (ath_host_new_shared) runs in its parent's Lua state: the
 * library is loaded and compiled once for all of them. What is a host's
 * own lives in its C struct and in registry refs (flows, parameters,
 * cleanups, its main flow); its main flow gets globals of its own (a
 * table whose misses fall through to the state's _G, with _G naming
 * itself), and the flow file is compiled once per state: wrapped as
 * `return function(_ENV) return function(...) <flow> end end`, whose
 * factory makes each host's main function with that host's globals as
 * _ENV. The wrapper sits on the flow's first line, so line numbers hold. */

/* coroutine.create and coroutine.wrap of a shared state: as Lua's, but
 * the new thread carries its creator's host (tagged ATH_XS_PLAIN: athost
 * functions act on that host, waits still need a flow). Lua copies the
 * main thread's extra space into a new thread, which would lose it. */
static lua_State *co_new(lua_State *L)
{
    lua_State *co;
    uintptr_t x = (uintptr_t)ATH_XS(L) & ~ATH_XS_PLAIN;
    luaL_checktype(L, 1, LUA_TFUNCTION);
    co = lua_newthread(L);
    ATH_XS(co) = x ? (void *)(x | ATH_XS_PLAIN) : NULL;
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    return co;
}

static int co_create(lua_State *L)
{
    co_new(L);
    return 1;
}

/* lcorolib.c's auxresume and auxwrap (Lua 5.4), unchanged in effect: an
 * error that is a string gets the caller's position prepended. */
static int co_auxresume(lua_State *L, lua_State *co, int narg)
{
    int status, nres;
    if (!lua_checkstack(co, narg)) {
        lua_pushliteral(L, "too many arguments to resume");
        return -1;
    }
    lua_xmove(L, co, narg);
    status = lua_resume(co, L, narg, &nres);
    if (status == LUA_OK || status == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            lua_pushliteral(L, "too many results to resume");
            return -1;
        }
        lua_xmove(co, L, nres);
        return nres;
    }
    lua_xmove(co, L, 1);
    return -1;
}

static int co_auxwrap(lua_State *L)
{
    lua_State *co = lua_tothread(L, lua_upvalueindex(1));
    int r = co_auxresume(L, co, lua_gettop(L));
    if (r < 0) {
        int stat = lua_status(co);
        if (stat != LUA_OK && stat != LUA_YIELD) {
#if LUA_VERSION_RELEASE_NUM >= 50406
            stat = lua_closethread(co, L);
#else
            stat = lua_resetthread(co);
#endif
            lua_xmove(co, L, 1);
        }
        if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
            luaL_where(L, 1);
            lua_insert(L, -2);
            lua_concat(L, 2);
        }
        return lua_error(L);
    }
    return r;
}

static int co_wrap(lua_State *L)
{
    co_new(L);
    lua_pushcclosure(L, co_auxwrap, 1);
    return 1;
}

/* Makes h a shared host of its parent's state (protected: arg 1 is h). */
static int shared_init(lua_State *L)
{
    ath_host_t *h = lua_touserdata(L, 1);
    if (!h->parent->shared_state) {
        lua_getglobal(L, "coroutine");
        lua_pushcfunction(L, co_create);
        lua_setfield(L, -2, "create");
        lua_pushcfunction(L, co_wrap);
        lua_setfield(L, -2, "wrap");
        lua_pop(L, 1);
        lua_createtable(L, 0, 1);
        lua_pushglobaltable(L);
        lua_setfield(L, -2, "__index");
        lua_rawsetp(L, LUA_REGISTRYINDEX, &ENV_MT_KEY);
        lua_newtable(L);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &FLOW_CACHE_KEY);
        h->parent->shared_state = 1;
    }
    host_refs(L, h);
    lua_createtable(L, 0, 4);
    lua_pushvalue(L, -1);
    lua_setfield(L, -2, "_G");
    lua_rawgetp(L, LUA_REGISTRYINDEX, &ENV_MT_KEY);
    lua_setmetatable(L, -2);
    h->env_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    return 0;
}

ath_host_t *ath_host_new_shared(ath_host_t *parent, const ath_host_opts_t *opts)
{
    ath_host_t *h;
    if (parent == NULL || parent->parent != NULL || parent->L == NULL)
        return NULL; /* a parent is a host of its own state */
    if ((h = calloc(1, sizeof *h)) == NULL)
        return NULL;
    if (opts)
        h->opts = *opts;
    h->opts.lib_path = NULL; /* the state's search path is the parent's */
    h->on_event = h->opts.on_event;
    h->ud = h->opts.ud;
    h->name = h->opts.name ? strdup(h->opts.name) : NULL;
    host_norefs(h);
    h->parent = parent;
    h->loop = parent->loop;
    h->L = parent->L;
    h->t0 = (double)uv_hrtime() / 1e6;
    memcpy(h->port_keys, parent->port_keys, sizeof h->port_keys);
    h->port_mt_ref = parent->port_mt_ref;
    h->port_mt = parent->port_mt;
    lua_pushcfunction(h->L, shared_init);
    lua_pushlightuserdata(h->L, h);
    if (lua_pcall(h->L, 1, 0, 0) != LUA_OK) {
        fprintf(stderr, "athost: %s\n", lua_tostring(h->L, -1));
        lua_pop(h->L, 1);
        free(h->name);
        free(h);
        return NULL;
    }
    parent->children++;
    return host_transcript(h);
}

/* Gives the function on top of h->L the host's globals as its _ENV (its
 * first upvalue, as of any main chunk). */
static void shared_env(ath_host_t *h)
{
    lua_State *L = h->L;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->env_ref);
    if (lua_setupvalue(L, -2, 1) == NULL)
        lua_pop(L, 1);
}

/* Pushes the factory of the main flow at path for a shared state, from
 * the state's cache or compiled now (protected: arg 1 is the path, arg 2
 * the cache key). Raises the message luaL_loadfilex gives for a file that
 * does not load; returns false when the wrapped text does not compile
 * (the caller then loads the file as it is). */
static int shared_factory(lua_State *L)
{
    const char *path = lua_tostring(L, 1);
    FILE *f;
    luaL_Buffer b;
    char buf[4096];
    size_t n, len;
    const char *src;
    if (luaL_loadfilex(L, path, "t") != LUA_OK)
        return lua_error(L);
    lua_pop(L, 1);
    if ((f = fopen(path, "rb")) == NULL)
        return luaL_error(L, "cannot open %s", path);
    luaL_buffinit(L, &b);
    luaL_addstring(&b, "return function(_ENV) return function(...) ");
    len = 0;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        const char *p = buf;
        if (len == 0) {
            /* as luaL_loadfilex: a UTF-8 BOM, then a first line starting
             * with '#' (kept as an empty line) */
            if (n >= 3 && memcmp(p, "\xEF\xBB\xBF", 3) == 0)
                p += 3;
            if (p < buf + n && *p == '#') {
                const char *nl = memchr(p, '\n', (size_t)(buf + n - p));
                if (nl == NULL) { /* a long first line: give up wrapping */
                    fclose(f);
                    lua_pushboolean(L, 0);
                    return 1;
                }
                p = nl;
            }
        }
        len += n;
        luaL_addlstring(&b, p, (size_t)(buf + n - p));
    }
    fclose(f);
    luaL_addstring(&b, "\nend end");
    luaL_pushresult(&b);
    src = lua_tolstring(L, -1, &n);
    lua_pushfstring(L, "@%s", path);
    if (luaL_loadbufferx(L, src, n, lua_tostring(L, -1), "t") != LUA_OK) {
        lua_pushboolean(L, 0);
        return 1;
    }
    lua_call(L, 0, 1); /* the factory */
    lua_rawgetp(L, LUA_REGISTRYINDEX, &FLOW_CACHE_KEY);
    lua_pushvalue(L, 2);
    lua_pushvalue(L, -3);
    lua_rawset(L, -3);
    lua_pop(L, 1);
    return 1;
}

static int shared_load_file(ath_host_t *h, const char *path)
{
    lua_State *L = h->L;
    struct stat st;
    if (stat(path, &st) != 0)
        return host_loaded(h, luaL_loadfilex(L, path, "t")); /* its error */
    lua_pushfstring(L, "%s\n%I\n%I\n%I.%I", path, (lua_Integer)st.st_ino,
                    (lua_Integer)st.st_size, (lua_Integer)st.st_mtim.tv_sec,
                    (lua_Integer)st.st_mtim.tv_nsec);
    lua_rawgetp(L, LUA_REGISTRYINDEX, &FLOW_CACHE_KEY);
    lua_pushvalue(L, -2);
    if (lua_rawget(L, -2) != LUA_TFUNCTION) {
        int rc;
        lua_pop(L, 2);
        lua_pushcfunction(L, shared_factory);
        lua_pushstring(L, path);
        lua_pushvalue(L, -3);
        rc = lua_pcall(L, 2, 1, 0);
        lua_remove(L, -2); /* the key */
        if (rc != LUA_OK)
            return host_loaded(h, rc);
        if (!lua_isfunction(L, -1)) { /* the file as it is, globals set */
            int r;
            lua_pop(L, 1);
            r = luaL_loadfilex(L, path, "t");
            if (r == LUA_OK)
                shared_env(h);
            return host_loaded(h, r);
        }
    } else {
        lua_remove(L, -2); /* the cache */
        lua_remove(L, -2); /* the key */
    }
    /* factory(env): the main function with this host's globals */
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->env_ref);
    return host_loaded(h, lua_pcall(L, 1, 1, 0));
}

int ath_host_load_file(ath_host_t *h, const char *path)
{
    if (h->parent)
        return shared_load_file(h, path);
    return host_loaded(h, luaL_loadfilex(h->L, path, "t"));
}

int ath_host_load_string(ath_host_t *h, const char *chunk, const char *name)
{
    int st = luaL_loadbufferx(h->L, chunk, strlen(chunk),
                              name ? name : "=(command line)", "t");
    if (st == LUA_OK && h->parent)
        shared_env(h);
    return host_loaded(h, st);
}

/* ---- running ---------------------------------------------------------- */

int ath_host_start(ath_host_t *h)
{
    lua_State *L = h->L;
    if (h->started || h->main_ref == LUA_NOREF)
        return -1;
    h->started = 1;
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->main_ref);
    lua_rawgeti(L, LUA_REGISTRYINDEX, h->params_ref);
    h->main_co = ath_host_spawn(h, L, 1);
    /* Anchored for the host's life: once the main flow is done nothing
     * else holds it, and a new flow's thread could take its address and
     * pass for it (co == h->main_co). */
    h->main_co_ref = luaL_ref(L, LUA_REGISTRYINDEX);
    ath_host_dispatch(h);
    return 0;
}

int ath_host_run(ath_host_t *h)
{
    if (!h->started && ath_host_start(h) != 0)
        return ATH_EXIT_USAGE;
    while (!h->done || h->handles > 0)
        if (uv_run(h->loop, UV_RUN_ONCE) == 0 && !h->done) {
            ath_host_finish(h, ATH_EXIT_FAIL,
                            "the flow is waiting for nothing "
                            "(no port, timer or task can wake it)");
        }
    return h->status;
}

/* A shared host: closes what it holds, lets go of its tables in the
 * state (its flows, never resumed again, are collected with them), and
 * frees the struct now or, when handles are still closing, with the last
 * one's close callback. */
static void shared_free(ath_host_t *h)
{
    lua_State *L = h->L;
    int *refs[] = {&h->flows_ref, &h->params_ref, &h->defers_ref,
                   &h->onint_ref, &h->env_ref, &h->main_ref,
                   &h->main_co_ref, &h->port_ref};
    size_t i;
    h->done = 1; /* callbacks still to come do nothing more */
    h->nready = 0;
    ath_host_close(h);
    if (h->tr)
        ath_tr_close(h->tr);
    h->tr = NULL;
    for (i = 0; i < sizeof refs / sizeof refs[0]; i++) {
        luaL_unref(L, LUA_REGISTRYINDEX, *refs[i]);
        *refs[i] = LUA_NOREF;
    }
    h->main_co = NULL;
    h->parent->children--;
    if (h->handles > 0)
        h->zombie = 1;
    else
        ath_host_release(h);
}

void ath_host_free(ath_host_t *h)
{
    if (h == NULL)
        return;
    if (h->parent) {
        shared_free(h);
        return;
    }
    if (h->children > 0)
        fprintf(stderr, "athost: freeing a host whose state %d shared "
                "host%s still use%s\n", h->children,
                h->children > 1 ? "s" : "", h->children > 1 ? "" : "s");
    if (h->L) {
        h->closing = 1; /* the state's finalizers start nothing more */
        ath_host_close(h);
        if (h->owns_loop)
            while (h->handles > 0)
                uv_run(h->loop, UV_RUN_ONCE);
        if (h->tr)
            ath_tr_close(h->tr);
        ath_lua_close(h->L);
    }
    if (h->owns_loop) {
        uv_run(&h->own_loop, UV_RUN_NOWAIT);
        uv_loop_close(&h->own_loop);
    }
    ath_host_release(h);
}
