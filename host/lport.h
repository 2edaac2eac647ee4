/*
 * lport.h: the Lua binding of ports, shared by lport.c (the userdata and
 * its methods), lchat.c (waits and what ends them), lopen.c (opening
 * ports), tls.c and ltls.c (TLS).
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
/* Sets field k of p's Lua-side table to the value on top (popped). */
void ath_lport_set(lua_State *L, ath_port_t *p, const char *k);
/* Pushes field k of p's Lua-side table; returns its type. */
int ath_lport_get(lua_State *L, ath_port_t *p, const char *k);

/* lchat.c: fills *pat from the pattern spec at index i, which the caller
 * keeps alive; raises on a bad spec. */
void ath_lport_pat(lua_State *L, int i, ath_pat_t *pat);
/* lchat.c: the number of specs at index i: nil 0, a string or counted
 * table 1, else the list's length. */
int ath_lport_npats(lua_State *L, int i);
/* lchat.c: sets up p->w's alts (the specs at index a, unless a is 0),
 * aborts and prompts (fields of the options at index o); prompt_alts:
 * the alts are the prompts too. */
void ath_lport_wait_pats(lua_State *L, ath_port_t *p, int a, int o,
                         int prompt_alts);
/* lchat.c: starts the wait set up in p->w for the running flow L, whose
 * strings the value at index anchor (0: none) keeps alive. Returns its
 * results at once when the buffer holds them, else yields. */
int ath_lport_wait(lua_State *L, ath_port_t *p, int anchor, int timeout);
/* lchat.c: fails the wait with (nil, "CODE: what", CODE[, r]). */
void ath_lport_fail(ath_port_t *p, lua_State *L, const char *code,
                    const char *what, int with_r);

/* lchat.c: forgets the waits of flow co (NULL: any) without waking it. */
void ath_lport_abandon(ath_port_t *p, lua_State *co);

/* lopen.c: athost.open, athost.pty, athost.listen, athost.connect. */
void ath_lopen_open(lua_State *L);

#endif
