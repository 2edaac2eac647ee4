/*
 * lopen.c: opening ports from Lua: athost.open (serial devices, ptys,
 * tcp:HOST:PORT, sim:NAME), athost.pty, athost.listen and accept.
 */
#include "lport.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

/* Pushes nil, "CODE: what: reason", "CODE" for a negative errno. */
static int lopen_fail(lua_State *L, int err, const char *what)
{
    const char *code = uv_err_name(err);
    lua_pushnil(L);
    lua_pushfstring(L, "%s: %s: %s", code, what, uv_strerror(err));
    lua_pushstring(L, code);
    return 3;
}

static int opt_int(lua_State *L, int o, const char *k, int def)
{
    int v = def;
    if (lua_type(L, o) == LUA_TTABLE) {
        lua_getfield(L, o, k);
        if (lua_isboolean(L, -1))
            v = lua_toboolean(L, -1);
        else if (!lua_isnil(L, -1))
            v = (int)luaL_checkinteger(L, -1);
        lua_pop(L, 1);
    }
    return v;
}

static const char *opt_str(lua_State *L, int o, const char *k, const char *def)
{
    const char *v = def;
    if (lua_type(L, o) == LUA_TTABLE) {
        lua_getfield(L, o, k);
        if (!lua_isnil(L, -1))
            v = luaL_checkstring(L, -1);
        lua_pop(L, 1); /* the string stays in the options table */
    }
    return v;
}

/* The options every port shares: timeout, eol. */
typedef struct lopen_common {
    int has_timeout, timeout_ms;
    int has_eol;
    char eol[sizeof ((ath_port_t *)0)->eol];
} lopen_common_t;

/* Reads them from the options at index o (raises on bad ones). */
static void lopen_common_read(lua_State *L, int o, lopen_common_t *c)
{
    const char *eol = opt_str(L, o, "eol", NULL);
    memset(c, 0, sizeof *c);
    if (lua_type(L, o) == LUA_TTABLE) {
        c->has_timeout = lua_getfield(L, o, "timeout") != LUA_TNIL;
        lua_pop(L, 1);
        c->timeout_ms = opt_int(L, o, "timeout", 0);
    }
    if (eol) {
        luaL_argcheck(L, strlen(eol) < sizeof c->eol, o, "eol is too long");
        strcpy(c->eol, eol);
        c->has_eol = 1;
    }
}

static void lopen_common_apply(ath_port_t *p, const lopen_common_t *c)
{
    if (c->has_timeout)
        p->timeout_ms = c->timeout_ms;
    if (c->has_eol)
        memcpy(p->eol, c->eol, sizeof p->eol);
}

/* Wraps fd in a port and pushes it; closes fd and raises on failure.
 * The options are those at index o, or (o == 0) those read before, c. */
static ath_port_t *lopen_wrap(ath_host_t *h, lua_State *L, int fd, int kind,
                              const char *name, int o,
                              const lopen_common_t *c)
{
    lopen_common_t oc;
    ath_port_t *p;
    if (h->closing) {
        ath_fd_close(fd);
        ath_host_check_open(L, h, name);
    }
    p = ath_port_new(h, fd, kind, name, NULL);
    if (p == NULL) {
        ath_fd_close(fd);
        luaL_error(L, "cannot watch %s (out of memory or not pollable)", name);
    }
    ath_lport_push(L, p);
    if (o != 0) { /* raises with the port pushed: the run closes it */
        lopen_common_read(L, o, &oc);
        c = &oc;
    }
    lopen_common_apply(p, c);
    ath_port_watch(p);
    return p;
}

/* The line settings among the options at index o (raises on bad ones). */
static void lopen_line_opts(lua_State *L, int o, ath_serial_opts_t *so)
{
    const char *parity = opt_str(L, o, "parity", "none");
    so->baud = opt_int(L, o, "baud", 115200);
    so->databits = opt_int(L, o, "databits", 8);
    so->stopbits = opt_int(L, o, "stopbits", 1);
    so->rtscts = opt_int(L, o, "rtscts", 0);
    so->dtr = opt_int(L, o, "dtr", -1);
    so->rts = opt_int(L, o, "rts", -1);
    so->exclusive = opt_int(L, o, "exclusive", 1);
    so->parity = parity[0];
    if (strchr("neo", so->parity) == NULL)
        luaL_argerror(L, 2, "parity must be none, even or odd");
    if (so->databits < 5 || so->databits > 8 ||
        (so->stopbits != 1 && so->stopbits != 2))
        luaL_argerror(L, 2, "databits must be 5-8 and stopbits 1 or 2");
    if (so->baud <= 0)
        luaL_argerror(L, 2, "baud must be positive");
}

static int lopen_serial(lua_State *L, const char *path, int o)
{
    ath_serial_opts_t so;
    const char *why, *name;
    ath_port_t *p;
    int fd;
    lopen_line_opts(L, o, &so);
    fd = ath_serial_open(path, &so, &why);
    if (fd < 0) {
        lua_pushfstring(L, "cannot open %s: %s", path, why);
        return lopen_fail(L, fd, lua_tostring(L, -1));
    }
    name =
        opt_str(L, o, "name", strncmp(path, "/dev/", 5) == 0 ? path + 5 : path);
    p = lopen_wrap(ath_host_from(L), L, fd, ATH_PORT_SERIAL, name, o, NULL);
    p->path = strdup(path);
    p->so = so;
    return 1;
}

/* ---- TCP -------------------------------------------------------------- */

typedef struct lopen_dns {
    uv_getaddrinfo_t req;
    ath_host_t *h;
    lua_State *co;
    /* The options, read before a name lookup: its callback runs outside
     * any flow, where a bad option could not be raised. */
    lopen_common_t c;
    int rfc2217; /* an rfc2217: port, with these line settings */
    ath_serial_opts_t so;
    char name[300];
} lopen_dns_t;

static void connect_timeout_cb(uv_timer_t *t)
{
    ath_port_t *p = t->data;
    if (LP(p)->connector == NULL)
        return;
    /* Connected but no RFC 2217 answer: a raw TCP server (tcp: then),
     * or a Telnet server without COM-PORT-OPTION. */
    ath_lport_connected(p, p->h->L, ETIMEDOUT,
                        p->negotiating ? "RFC 2217 negotiation (no "
                                         "COM-PORT-OPTION answer) with"
                                       : "connect");
    ath_host_dispatch(p->h);
}

/* A socket of the first of res's addresses that connects or is
 * connecting: its fd, or -1 with *err the last error. */
static int tcp_socket(struct addrinfo *res, int *err)
{
    struct addrinfo *ai;
    int fd;
    for (ai = res; ai; ai = ai->ai_next) {
        fd = socket(ai->ai_family,
                    ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            *err = -errno;
            continue;
        }
        if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 ||
            errno == EINPROGRESS)
            return fd;
        *err = -errno;
        close(fd);
    }
    return -1;
}

/* The port on the connecting socket fd (named d->name, options d->c);
 * co, the flow that opens it, is woken once it is connected (or not).
 * 0, or -1 when out of memory: the port is closed, and nil, the message
 * and its code are on L's stack. */
static int tcp_port(ath_host_t *h, lua_State *L, int fd, lopen_dns_t *d,
                    lua_State *co)
{
    int one = 1;
    ath_port_t *p;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    p = lopen_wrap(h, L, fd, ATH_PORT_TCP, d->name, 0, &d->c);
    lua_pop(L, 1);
    if (d->rfc2217 && ath_rfc2217_attach(p, &d->so) != 0) {
        ath_lport_close(p, L);
        lua_pushnil(L);
        lua_pushliteral(L, "ENOMEM: out of memory");
        lua_pushliteral(L, "ENOMEM");
        return -1;
    }
    p->connecting = 1;
    LP(p)->connector = co;
    ath_port_watch(p);
    if (p->timeout_ms > 0) {
        uv_update_time(h->loop);
        uv_timer_start(&p->timer, connect_timeout_cb,
                       (uint64_t)p->timeout_ms, 0);
    }
    return 0;
}

static void lopen_dns_cb(uv_getaddrinfo_t *req, int status,
                         struct addrinfo *res)
{
    lopen_dns_t *d = req->data;
    ath_host_t *h = d->h;
    lua_State *L = h->L;
    int fd = -1, err = status;
    if (status == 0)
        fd = tcp_socket(res, &err);
    uv_freeaddrinfo(res);
    if (h->done) {
        if (fd >= 0)
            close(fd);
    } else if (fd < 0) {
        lua_pushfstring(L, "cannot connect to %s", d->name);
        lopen_fail(L, err, lua_tostring(L, -1));
        lua_remove(L, -4);
        lua_xmove(L, d->co, 3);
        ath_host_wake(h, d->co, 3);
    } else {
        if (tcp_port(h, L, fd, d, d->co) != 0) {
            lua_xmove(L, d->co, 3);
            ath_host_wake(h, d->co, 3);
        }
    }
    free(d);
    ath_host_dispatch(h);
    ath_host_handles(h, -1); /* last: it may free a freed host */
}

/* Splits "HOST:PORT" (HOST may be [v6]) into host and port buffers. */
static int split_hostport(const char *s, char *host, size_t hl, char *port,
                          size_t pl)
{
    const char *colon = strrchr(s, ':');
    size_t n;
    if (colon == NULL || colon[1] == '\0' || strlen(colon + 1) >= pl)
        return -1;
    n = (size_t)(colon - s);
    if (n > 1 && s[0] == '[' && s[n - 1] == ']') {
        s++;
        n -= 2;
    }
    if (n == 0 || n >= hl)
        return -1;
    memcpy(host, s, n);
    host[n] = '\0';
    strcpy(port, colon + 1);
    return 0;
}

static int lopen_tcp(lua_State *L, const char *hostport, int o, int rfc2217)
{
    ath_host_t *h = ath_host_from(L);
    struct addrinfo hints, *res = NULL;
    char host[256], port[16];
    lopen_dns_t *d;
    int r;
    ath_serial_opts_t so;
    lopen_common_t c;
    memset(&so, 0, sizeof so);
    if (split_hostport(hostport, host, sizeof host, port, sizeof port) != 0)
        return luaL_error(L, "bad address '%s' (want HOST:PORT)", hostport);
    if (rfc2217)
        lopen_line_opts(L, o, &so); /* raises on bad options */
    lopen_common_read(L, o, &c);    /* the same, before any lookup */
    ath_host_check_flow(L);
    d = calloc(1, sizeof *d);
    if (d == NULL)
        return luaL_error(L, "out of memory");
    d->h = h;
    d->co = L;
    d->req.data = d;
    d->rfc2217 = rfc2217;
    d->so = so;
    d->c = c;
    snprintf(d->name, sizeof d->name, "%s:%s:%s",
             rfc2217 ? "rfc2217" : "tcp", host, port);
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    /* An address in numbers (127.0.0.1:1883, [::1]:80) needs no lookup:
     * connect now, without a round trip through libuv's thread pool. */
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &res) == 0) {
        int err = UV_EAI_FAIL, fd = tcp_socket(res, &err);
        freeaddrinfo(res);
        if (fd < 0) {
            lua_pushfstring(L, "cannot connect to %s", d->name);
            free(d);
            lopen_fail(L, err, lua_tostring(L, -1));
            lua_remove(L, -4);
            return 3;
        }
        r = tcp_port(h, L, fd, d, L);
        free(d);
        return r != 0 ? 3 : lua_yield(L, 0);
    }
    hints.ai_flags = 0;
    r = uv_getaddrinfo(h->loop, &d->req, lopen_dns_cb, host, port, &hints);
    if (r != 0) {
        free(d);
        return lopen_fail(L, r, "cannot resolve address");
    }
    h->handles++;
    return lua_yield(L, 0);
}

/* What athost.sim.open returned, below which sit spec, opts, module. */
static int lopen_sim_k(lua_State *L, int status, lua_KContext ctx)
{
    (void)status;
    (void)ctx;
    return lua_gettop(L) - 3;
}

static int l_open(lua_State *L)
{
    const char *spec = luaL_checkstring(L, 1);
    if (!lua_isnoneornil(L, 2))
        luaL_checktype(L, 2, LUA_TTABLE);
    if (strncmp(spec, "tcp:", 4) == 0)
        return lopen_tcp(L, spec + 4, 2, 0);
    if (strncmp(spec, "rfc2217:", 8) == 0)
        return lopen_tcp(L, spec + 8, 2, 1);
    if (strncmp(spec, "sim:", 4) == 0) {
        /* Virtual modems are Lua: athost.sim opens one on a pty. */
        lua_settop(L, 2);
        lua_getglobal(L, "require");
        lua_pushliteral(L, "athost.sim");
        lua_call(L, 1, 1);
        lua_getfield(L, -1, "open");
        lua_pushstring(L, spec + 4);
        lua_pushvalue(L, 2);
        lua_callk(L, 2, LUA_MULTRET, 0, lopen_sim_k);
        return lopen_sim_k(L, LUA_OK, 0);
    }
    return lopen_serial(L, spec, 2);
}

static void pty_unlink(ath_port_t *p)
{
    if (p->link)
        unlink(p->link);
}

/* athost.pty([opts]): a raw pty pair; returns the master as a port and
 * the slave's path. opts.link makes a symlink to the slave. */
static int l_pty(lua_State *L)
{
    char path[128];
    ath_host_t *h = ath_host_from(L);
    /* The options first: nothing raises once the pair exists, before
     * the port holds both ends. */
    const char *name = opt_str(L, 1, "name", "pty");
    const char *link = opt_str(L, 1, "link", NULL);
    lopen_common_t oc;
    int sfd, fd;
    ath_port_t *p;
    lopen_common_read(L, 1, &oc);
    ath_host_check_open(L, h, name);
    if ((fd = ath_pty_open(&sfd, path, sizeof path)) < 0)
        return lopen_fail(L, fd, "cannot make a pty");
    p = lopen_wrap(h, L, fd, ATH_PORT_PTY, name, 0, &oc);
    p->slave_fd = sfd;
    p->path = strdup(path);
    if (link) {
        unlink(link);
        if (symlink(path, link) != 0) {
            int err = -errno;
            ath_lport_close(p, L);
            lua_pushfstring(L, "cannot link %s to %s", link, path);
            return lopen_fail(L, err, lua_tostring(L, -1));
        }
        p->link = strdup(link);
        p->on_close = pty_unlink;
    }
    lua_pushstring(L, path);
    return 2;
}

/* athost.listen(host, port[, opts]): a TCP listener; port 0 picks one,
 * read back as listener.port. */
static int l_listen(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    int portnum = (int)luaL_checkinteger(L, 2);
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    int fd, one = 1, r;
    ath_port_t *p;
    char name[300];
    if (uv_ip4_addr(host, portnum, (struct sockaddr_in *)&ss) != 0 &&
        uv_ip6_addr(host, portnum, (struct sockaddr_in6 *)&ss) != 0)
        return luaL_error(L, "listen needs a numeric address, not '%s'", host);
    fd = socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return lopen_fail(L, -errno, "cannot make a socket");
    setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&ss,
             ss.ss_family == AF_INET ? sizeof(struct sockaddr_in)
                                     : sizeof(struct sockaddr_in6)) != 0 ||
        listen(fd, 128) != 0 ||
        getsockname(fd, (struct sockaddr *)&ss, &sl) != 0) {
        r = -errno;
        close(fd);
        lua_pushfstring(L, "cannot listen on %s:%d", host, portnum);
        return lopen_fail(L, r, lua_tostring(L, -1));
    }
    portnum = ntohs(ss.ss_family == AF_INET
                        ? ((struct sockaddr_in *)&ss)->sin_port
                        : ((struct sockaddr_in6 *)&ss)->sin6_port);
    snprintf(name, sizeof name, "listen:%s:%d", host, portnum);
    p = lopen_wrap(ath_host_from(L), L, fd, ATH_PORT_LISTEN, name, 3, NULL);
    lua_pushinteger(L, portnum);
    ath_lport_set(L, p, ATH_LS_PORTNUM);
    return 1;
}

static void accept_timeout_cb(uv_timer_t *t)
{
    ath_port_t *p = t->data;
    lua_State *L = p->h->L, *co = LP(p)->waiter;
    if (co == NULL)
        return;
    LP(p)->waiter = NULL;
    p->accepting = 0;
    ath_port_watch(p);
    lua_pushnil(L);
    lua_pushfstring(L, "ETIMEDOUT: no connection to %s", p->name);
    lua_pushliteral(L, "ETIMEDOUT");
    lua_xmove(L, co, 3);
    ath_host_wake(p->h, co, 3);
    ath_host_dispatch(p->h);
}

/* listener:accept([opts]): waits for a connection; opts.timeout in ms
 * (default: no limit). */
static int l_accept(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    int timeout = opt_int(L, 2, "timeout", 0);
    if (p->kind != ATH_PORT_LISTEN)
        return luaL_error(L, "%s is not a listener", p->name);
    ath_host_check_flow(L);
    if (LP(p)->waiter)
        return luaL_error(L, "%s is busy: another flow is accepting", p->name);
    LP(p)->waiter = L;
    p->accepting = 1;
    if (timeout > 0)
        uv_timer_start(&p->timer, accept_timeout_cb, (uint64_t)timeout, 0);
    ath_port_watch(p);
    return lua_yield(L, 0);
}

static int l_connect(lua_State *L)
{
    const char *host = luaL_checkstring(L, 1);
    lua_Integer port = luaL_checkinteger(L, 2);
    lua_settop(L, 3);
    lua_pushfstring(L, strchr(host, ':') ? "[%s]:%d" : "%s:%d", host,
                    (int)port);
    lua_replace(L, 1);
    return lopen_tcp(L, lua_tostring(L, 1), 3, 0);
}

static int stdin_flags = -1;

static void stdin_restore(ath_port_t *p)
{
    (void)p;
    if (stdin_flags >= 0)
        fcntl(0, F_SETFL, stdin_flags);
    p->fd = -1; /* fd 0 stays open for the process */
}

/* athost.stdin(): standard input as a port (readline, recv), for
 * interactive tools. */
static int l_stdin(lua_State *L)
{
    int fd = dup(0);
    ath_port_t *p;
    struct stat st;
    if (fd < 0)
        return lopen_fail(L, -errno, "cannot use standard input");
    close(fd);
    if (fstat(0, &st) == 0 && S_ISREG(st.st_mode))
        return lopen_fail(L, -ENOTSUP, "standard input is a file (read it "
                                       "with io.read)");
    if (stdin_flags < 0)
        stdin_flags = fcntl(0, F_GETFL);
    fcntl(0, F_SETFL, stdin_flags | O_NONBLOCK);
    p = lopen_wrap(ath_host_from(L), L, 0, ATH_PORT_SERIAL, "stdin", 1, NULL);
    p->on_close = stdin_restore;
    return 1;
}

static const luaL_Reg lopen_funcs[] = {
    {"stdin", l_stdin},   {"open", l_open},       {"pty", l_pty},
    {"listen", l_listen}, {"connect", l_connect}, {NULL, NULL}};

void ath_lopen_open(lua_State *L)
{
    luaL_setfuncs(L, lopen_funcs, 0);
    /* accept is a port method, for listeners */
    luaL_getmetatable(L, ATH_PORT_MT);
    lua_getfield(L, -1, "__index");
    lua_getupvalue(L, -1, 1);
    lua_pushcfunction(L, l_accept);
    lua_setfield(L, -2, "accept");
    lua_pop(L, 3);
}
