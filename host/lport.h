/*
 * lport.h: the Lua binding of ports, shared by lport.c (methods and
 * waits), lopen.c (opening ports) and tls.c.
 */
#ifndef ATH_LPORT_H
#define ATH_LPORT_H

#include <stdio.h>

#include "port.h"

#define ATH_PORT_MT "athost.port"

/* The open port at index i; raises if it is not one or is closed. */
ath_port_t *ath_lport_check(lua_State *L, int i);
/* Pushes a new userdata for p and creates its Lua-side table. */
void ath_lport_push(lua_State *L, ath_port_t *p);
/* Fails whoever waits on p, then closes it. */
void ath_lport_close(ath_port_t *p, lua_State *L);
/* lopen.c: athost.open, athost.pty, athost.listen, athost.connect. */
void ath_lopen_open(lua_State *L);

#endif
