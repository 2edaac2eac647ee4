/*
 * tls.c: TLS over a connected TCP port (OpenSSL). Not yet wired.
 */
#include "lport.h"

int ath_tls_step(ath_port_t *p, lua_State *L, int events)
{
    (void)p;
    (void)L;
    (void)events;
    return 0;
}

int ath_tls_events(ath_port_t *p)
{
    int ev = p->eof ? 0 : UV_READABLE;
    if (p->wlen > 0 || p->connecting)
        ev |= UV_WRITABLE;
    return ev;
}

void ath_tls_free(ath_port_t *p)
{
    (void)p;
}

void ath_tls_open(lua_State *L)
{
    (void)L;
}
