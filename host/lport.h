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
    int r_ref;         /* registry: the result table of the command in
                          progress (its own slot: one lua_rawgeti away) */
    int lines_ref;     /* registry: its lines (r.lines) */
    int nlines;        /* how many r.lines holds */
    int line_ref;      /* registry: the last reply line (short), */
    int has_line;      /* and its bytes: the same line again (a module
                          polled says the same) is that string again */
    size_t linelen;
    char line[40];
    ath_wait_t w;
    ath_pat_t pats[8];
    ath_pat_t *xpats;  /* more patterns than pats holds */
    ath_pat_t reply;
    char replybuf[40];
    char cmdname[40];
    char lastname[40]; /* cmdname of the last command sent, for final() */
    double t_wait;     /* when the wait started */
    int outcome_ms;    /* CMD: the wait for its outcome after OK */
    int has_data;      /* CMD: it has data to send at its prompt */
    int data_sent;     /* CMD: its data went out at the prompt */
    int urc_next;
    int no_progress;   /* this wait prints no progress lines (progress=false) */
    int replied;       /* CMD: a line matched the reply pattern */
    int anchored;      /* slot ATH_LS_W holds the wait's anchor */
    size_t sink_n;     /* read(n, {into = sink}): n, while it runs */
    size_t sunk;       /* the bytes the sink has had */
} ath_lport_t;

/* Slots of a port's Lua-side table: integer keys, so the round trip
 * makes no string lookups. */
enum {
    ATH_LS_UD = 1, /* the userdata, so an open port is never collected */
    ATH_LS_URC,    /* id -> { fn, spec }: the URC handlers */
    ATH_LS_W,      /* what the wait in progress keeps alive (options) */
    ATH_LS_DATA,   /* what to send at the command's prompt (has_data) */
    ATH_LS_PORTNUM,
    ATH_LS_SINK,   /* read(n, {into = sink}): the file or function */
    ATH_LS_N = ATH_LS_SINK
};

/* Keys of result and match tables, interned once per Lua state
 * (ath_lport_open) and pushed from registry refs. */
enum {
    ATH_K_LINES, ATH_K_COMMAND, ATH_K_FINAL, ATH_K_MS, ATH_K_LINE,
    ATH_K_INDEX, ATH_K_PAYLOAD, ATH_K_PROMPT, ATH_K_OUTCOME, ATH_K_ERROR,
    ATH_K_CME, ATH_K_CMS,
    ATH_K_OK, /* not a key: the final result "OK", pushed without hashing */
    ATH_K_N
};

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
/* Sets slot k (ATH_LS_*) of p's Lua-side table to the value on top
 * (popped). */
void ath_lport_set(lua_State *L, ath_port_t *p, int k);
/* Pushes slot k of p's Lua-side table; returns its type. */
int ath_lport_get(lua_State *L, ath_port_t *p, int k);
/* Sets field k (ATH_K_*) of the table at index t to the value on top
 * (popped). */
void ath_lport_setk(lua_State *L, ath_port_t *p, int t, int k);
/* Pushes field k (ATH_K_*) of the table at index t; returns its type. */
int ath_lport_getk(lua_State *L, ath_port_t *p, int t, int k);
/* Pushes key k (ATH_K_*): push the value next, then lua_rawset. */
void ath_lport_key(lua_State *L, ath_port_t *p, int k);

/* lchat.c: interns the result keys, notes the metatable on top. */
void ath_lport_keys(lua_State *L);
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

/* lchat.c: forgets the waits of flow co (NULL: any) without waking it. */
void ath_lport_abandon(ath_port_t *p, lua_State *co);

/* lopen.c: athost.open, athost.pty, athost.listen, athost.connect. */
void ath_lopen_open(lua_State *L);

#endif
