/*
 * lport.h: the Lua binding of ports. lchat.c is the one dispatcher: it
 * owns each port's Lua side (ath_lport_t, the port's registry table), is
 * the callback every port reports to (ath_lport_event), and turns what
 * the chat engine and the port report into results and Lua resumes.
 * lport.c (the methods), lopen.c (opening ports) and ltls.c (TLS) call
 * down into it; it calls none of them.
 *
 *   lport.c  lopen.c  ltls.c     Lua methods
 *          \    |    /
 *           lchat.c              events -> results, resumes
 *              |
 *   port.c  tls.c  rfc2217.c     bytes (no Lua)  -> chat.c, transcript.c
 */
#ifndef ATH_LPORT_H
#define ATH_LPORT_H

#include <stdio.h>

#include "host.h"
#include "port.h"

#define ATH_PORT_MT "athost.port"

/* A port's Lua side, p->data of every port the binding opened. */
typedef struct ath_lport {
    /* the flows waiting: on the chat engine, on the write queue, on a
     * connect or handshake */
    lua_State *waiter;
    lua_State *drainer;
    lua_State *connector;
    int sync_n;        /* values a wait completed with, in place */
    int processing;    /* inside ath_lport_process */
    lua_State *woken;  /* a waiter to wake when processing ends */
    int woken_n;
    int lref;          /* registry: the port's Lua-side table */
    ath_wait_t w;
    ath_pat_t pats[8];
    ath_pat_t *xpats;  /* more patterns than pats holds */
    ath_pat_t reply;
    char replybuf[40];
    char cmdname[40];
    double t_wait;     /* when the wait started */
    int outcome_ms;    /* CMD: the wait for its outcome after OK */
    int has_data;      /* CMD: it has data to send at its prompt */
    int data_sent;     /* CMD: its data went out at the prompt */
    int urc_next;
} ath_lport_t;

#define ATH_PORT_PATS 8

/* p's Lua side. */
#define LP(p) ((ath_lport_t *)(p)->data)

/* lchat.c: the callback of every port the binding opens. */
void ath_lport_event(ath_port_t *p, const ath_port_ev_t *ev);
/* The open port at index i; raises if it is not one or is closed. */
ath_port_t *ath_lport_check(lua_State *L, int i);
/* Pushes a new userdata for p and creates its Lua side. */
void ath_lport_push(lua_State *L, ath_port_t *p);
/* Fails whoever waits on p, then closes it. */
void ath_lport_close(ath_port_t *p, lua_State *L);
/* Sets field k of p's Lua-side table to the value on top (popped). */
void ath_lport_set(lua_State *L, ath_port_t *p, const char *k);
/* Pushes field k of p's Lua-side table; returns its type. */
int ath_lport_get(lua_State *L, ath_port_t *p, const char *k);

/* lchat.c: starts the wait set up in LP(p)->w for the running flow L,
 * whose strings the value at index anchor (0: none) keeps alive. Returns
 * its results at once when the buffer holds them, else yields. */
int ath_lport_wait(lua_State *L, ath_port_t *p, int anchor, int timeout);
/* lchat.c: fails the wait with (nil, "CODE: what", CODE[, r]). */
void ath_lport_fail(ath_port_t *p, lua_State *L, const char *code,
                    const char *what, int with_r);
/* lchat.c: hands what the engine made of the bytes to Lua (L: the
 * running thread, or the host's main thread from a callback). */
void ath_lport_process(ath_port_t *p, lua_State *L);
/* lchat.c: a connect or handshake the flow in LP(p)->connector waits for
 * ended (err 0) or failed; what names the step. */
void ath_lport_connected(ath_port_t *p, lua_State *L, int err,
                         const char *what);
/* lchat.c: pushes the result of tls(): true (code NULL), or nil,
 * "CODE: why", CODE. Returns how many values. */
int ath_lport_tls_result(lua_State *L, ath_port_t *p, const char *code,
                         const char *why);

/* lport.c: fills *pat from the pattern spec at index i, which the caller
 * keeps alive; raises on a bad spec. */
void ath_lport_pat(lua_State *L, int i, ath_pat_t *pat);

/* lopen.c: athost.open, athost.pty, athost.listen, athost.connect. */
void ath_lopen_open(lua_State *L);

#endif
