/*
 * ltls.c: the Lua binding of TLS (tls.c does the work): port:tls(opts)
 * checks its options and the port, starts the handshake and makes the
 * calling flow wait for it; port:tls_info() describes the session.
 */
#include "lport.h"

#include <limits.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

/* as athost.x509 prints names: "CN=localhost, O=athost" */
#define TLS_NAME_FLAGS                                                         \
    ((XN_FLAG_RFC2253 & ~XN_FLAG_SEP_MASK) | XN_FLAG_SEP_CPLUS_SPC)

static const char *const tls_keys[] = {
    "server",   "ca",     "cert",     "key",     "ca_file", "cert_file",
    "key_file", "verify", "hostname", "timeout", NULL};

static const char *tls_opt_str(lua_State *L, int o, const char *k, size_t *len)
{
    const char *s = NULL;
    if (lua_getfield(L, o, k) != LUA_TNIL) {
        if (lua_type(L, -1) != LUA_TSTRING)
            luaL_error(L, "TLS option %s must be a string, not %s", k,
                       luaL_typename(L, -1));
        s = lua_tolstring(L, -1, len);
        if (*len > INT_MAX)
            luaL_error(L, "TLS option %s is too long", k);
    }
    lua_pop(L, 1); /* the string stays in the options */
    return s;
}

static int tls_opt_bool(lua_State *L, int o, const char *k, int def)
{
    int t = lua_getfield(L, o, k);
    if (t != LUA_TNIL && t != LUA_TBOOLEAN)
        luaL_error(L, "TLS option %s must be a boolean, not %s", k,
                   luaL_typename(L, -1));
    if (t != LUA_TNIL)
        def = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return def;
}

/* Fills *pem from option k (PEM text) or k_file (a path). */
static void tls_opt_pem(lua_State *L, int o, const char *k, const char *kfile,
                        ath_tls_pem_t *pem)
{
    size_t n = 0;
    pem->text = tls_opt_str(L, o, k, &pem->len);
    pem->file = tls_opt_str(L, o, kfile, &n);
    if (pem->text && pem->file)
        luaL_error(L, "TLS options %s and %s exclude each other", k, kfile);
    pem->name = pem->file ? kfile : k;
}

/* Reads and checks the options at index o (a table); raises on misuse. */
static void tls_opts(lua_State *L, int o, ath_port_t *p, ath_tls_opts_t *opts)
{
    int has_ca, has_cert, has_key, i;
    lua_pushnil(L);
    while (lua_next(L, o) != 0) {
        const char *k =
            lua_type(L, -2) == LUA_TSTRING ? lua_tostring(L, -2) : "";
        for (i = 0; tls_keys[i] && strcmp(tls_keys[i], k) != 0; i++)
            ;
        if (tls_keys[i] == NULL)
            luaL_error(L, "unknown TLS option '%s'",
                       luaL_tolstring(L, -2, NULL));
        lua_pop(L, 1);
    }
    memset(opts, 0, sizeof *opts);
    opts->server = tls_opt_bool(L, o, "server", 0);
    tls_opt_pem(L, o, "ca", "ca_file", &opts->ca);
    tls_opt_pem(L, o, "cert", "cert_file", &opts->cert);
    tls_opt_pem(L, o, "key", "key_file", &opts->key);
    has_ca = opts->ca.text || opts->ca.file;
    has_cert = opts->cert.text || opts->cert.file;
    has_key = opts->key.text || opts->key.file;
    opts->verify = tls_opt_bool(L, o, "verify", has_ca && !opts->server);
    {
        size_t n;
        opts->hostname = tls_opt_str(L, o, "hostname", &n);
    }
    lua_getfield(L, o, "timeout");
    opts->timeout = (int)luaL_optinteger(L, -1, p->timeout_ms);
    lua_pop(L, 1);
    if (has_cert != has_key)
        luaL_error(L, "TLS options cert and key go together");
    if (opts->server && !has_cert)
        luaL_error(L, "a TLS server needs cert and key");
    if (opts->server && opts->verify && !has_ca)
        luaL_error(L, "a TLS server that verifies clients needs ca");
}

/* Raises unless p is a TCP connection that may start TLS now. */
static void tls_check_port(lua_State *L, ath_port_t *p)
{
    if (p->kind != ATH_PORT_TCP)
        luaL_error(L, "%s is not a TCP connection", p->name);
    if (p->tls)
        luaL_error(L, "%s already speaks TLS", p->name);
    if (LP(p)->connector)
        luaL_error(L, "%s is still connecting", p->name);
    if (LP(p)->waiter || LP(p)->drainer || p->wlen > p->woff)
        luaL_error(L, "%s is busy: tls() wants no read or send in progress",
                   p->name);
}

/* port:tls([opts]): TLS over a connected TCP port, client or server (see
 * the README). Waits for the handshake; returns true, or nil, "ETLS:
 * why", "ETLS" (a failed handshake closes the port; options that do not
 * load leave it as it was), or ETIMEDOUT after opts.timeout ms. */
static int l_port_tls(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    ath_tls_opts_t o;
    char why[400];
    int r;
    if (lua_isnoneornil(L, 2)) {
        lua_settop(L, 1);
        lua_newtable(L);
    }
    luaL_checktype(L, 2, LUA_TTABLE);
    lua_settop(L, 2);
    tls_check_port(L, p);
    tls_opts(L, 2, p, &o);
    ath_host_check_flow(L);
    if (ath_chat_pending(p->chat) > 0) {
        lua_pushnil(L);
        lua_pushfstring(L,
                        "ETLS: %d bytes arrived on %s before tls() (call "
                        "it right after connect or accept)",
                        (int)ath_chat_pending(p->chat), p->name);
        lua_pushliteral(L, "ETLS");
        return 3;
    }
    if (ath_tls_attach(p, &o, why, sizeof why) != 0) {
        lua_pushnil(L);
        lua_pushfstring(L, "ETLS: %s", why);
        lua_pushliteral(L, "ETLS");
        return 3;
    }
    if ((r = ath_tls_handshake(p, why, sizeof why)) != 0) {
        r = ath_lport_tls_result(L, p, r > 0 ? NULL : "ETLS", why);
        if (r > 1)
            ath_lport_close(p, L);
        else
            ath_port_watch(p);
        return r;
    }
    p->connecting = 1;
    LP(p)->connector = L;
    ath_port_watch(p);
    return lua_yield(L, 0);
}

/* port:tls_info(): { version, cipher, peer_subject } of the session, or
 * nil when the port does not speak TLS. */
static int l_port_tls_info(lua_State *L)
{
    ath_port_t *p = ath_lport_check(L, 1);
    SSL *ssl = ath_tls_session(p);
    X509 *peer;
    char name[512];
    int n = 0;
    if (ssl == NULL) {
        lua_pushnil(L);
        return 1;
    }
    if ((peer = SSL_get0_peer_certificate(ssl)) != NULL) {
        BIO *b = BIO_new(BIO_s_mem());
        if (b && X509_NAME_print_ex(b, X509_get_subject_name(peer), 0,
                                    TLS_NAME_FLAGS) >= 0)
            n = BIO_read(b, name, sizeof name);
        BIO_free(b);
        ERR_clear_error();
    }
    lua_createtable(L, 0, 3);
    lua_pushstring(L, SSL_get_version(ssl));
    lua_setfield(L, -2, "version");
    lua_pushstring(L, SSL_get_cipher_name(ssl));
    lua_setfield(L, -2, "cipher");
    if (peer) {
        lua_pushlstring(L, name, n > 0 ? (size_t)n : 0);
        lua_setfield(L, -2, "peer_subject");
    }
    return 1;
}

static const luaL_Reg tls_methods[] = {
    {"tls", l_port_tls}, {"tls_info", l_port_tls_info}, {NULL, NULL}};

void ath_tls_open(lua_State *L)
{
    /* port methods, next to those of lport.c */
    luaL_getmetatable(L, ATH_PORT_MT);
    lua_getfield(L, -1, "__index");
    lua_getupvalue(L, -1, 1);
    luaL_setfuncs(L, tls_methods, 0);
    lua_pop(L, 3);
}
