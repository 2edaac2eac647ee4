/*
 * host.h: what the host's C files share. Not installed.
 */
#ifndef ATH_HOST_H
#define ATH_HOST_H

#include <lua.h>
#include <lauxlib.h>

#include "core.h"

typedef struct ath_ready {
    lua_State *co;
    int nargs;
} ath_ready_t;

struct ath_host {
    uv_loop_t *loop;
    uv_loop_t own_loop;
    int owns_loop;
    lua_State *L;
    ath_host_opts_t opts;
    char *name;
    ath_event_cb on_event;
    void *ud;
    ath_tr_t *tr;
    /* Coroutines to resume, FIFO; only ath_host_dispatch resumes. */
    ath_ready_t *ready;
    size_t nready, readycap, readyhead;
    int dispatching;
    int main_ref; /* the main flow's function, until started */
    lua_State *main_co;
    int started, done, status, canceled;
    char *error;
    char **secrets; /* every spelling of every registered secret */
    size_t nsecrets;
    size_t secret_max;
    ath_ac_t *ac; /* the automaton of secrets[], rebuilt when they change */
    int ac_dirty;
    double t0;
    int handles;     /* open handles owned by the host's objects */
    ath_res_t res;   /* list head of those objects */
    int port_failed; /* athost.port() could not open the port */
    int usage_failed; /* athost.usage(): the script was called wrongly */
    char *port_spec;
    int port_baud;
    int port_ref; /* the default port once opened */
    int port_keys[16]; /* lchat.c: registry refs of result tables' keys */
    int port_mt_ref;   /* lchat.c: registry ref of the port metatable */
};

/* registry: thread -> task table of each flow */
#define ATH_HOST_FLOWS "athost.flows"

/* host.c */
ath_host_t *ath_host_from(lua_State *L);
/* Ends the run (the first call only) with status and msg (masked):
 * emits the result, then closes what the host holds. */
void ath_host_finish(ath_host_t *h, int status, const char *msg);

/* flow.c */
/* Queues co (suspended, with nargs values pushed on its stack). */
void ath_host_wake(ath_host_t *h, lua_State *co, int nargs);
/* Resumes queued coroutines until none is left. */
void ath_host_dispatch(ath_host_t *h);
/* Starts a new flow running the function on top of L's stack with nargs
 * arguments below... (fn, args...); pops them. Returns the thread, which
 * stays on L's stack. */
lua_State *ath_host_spawn(ath_host_t *h, lua_State *L, int nargs);
/* Raises unless the running coroutine is a flow that may wait. */
void ath_host_check_flow(lua_State *L);
/* Starts step name of flow co, ending the one in progress. */
void ath_host_step(ath_host_t *h, lua_State *co, const char *name);
void ath_host_flow_failed(ath_host_t *h, lua_State *co, const char *msg);

/* event.c */
/* Emits an event to the embedder or the default printer. */
void ath_host_emit(ath_host_t *h, ath_event_t *ev);
/* Masks the values of JSON fields named like secrets only (what a stream
 * of records needs on top of ath_rs_feed); the same contract. */
char *ath_host_redact_fields(const char *s, size_t n, size_t *outn);
/* The length of the valid UTF-8 sequence (RFC 3629: no overlong form,
 * surrogate or code point above U+10FFFF) that starts s[0, n), or 0. */
size_t ath_utf8_seq(const char *s, size_t n);
/* Pushes s[0, n) with each NUL byte written as \x00, so that nothing after
 * one is lost when the text becomes a C string (an error message);
 * returns the pushed string. */
const char *ath_pushcstr(lua_State *L, const char *s, size_t n);
/* Whether key[0, n) is named like a secret: it contains secret, password,
 * passwd, token or psk, in any case. Such parameters are registered as
 * secrets, and such JSON fields' values are masked wherever they appear. */
int ath_secret_name(const char *key, size_t n);

/* The Lua modules, each adding its functions to the table on top. */
void ath_lhost_open(lua_State *L);  /* lhost.c: flows, timers, steps */
void ath_lport_open(lua_State *L);  /* lport.c: ports and chat */
void ath_crypto_open(lua_State *L); /* crypto.c */
void ath_tls_open(lua_State *L);    /* ltls.c */
void ath_lfile_open(lua_State *L);  /* lfile.c: private files, stat */
int luaopen_athost(lua_State *L);
int luaopen_cjson(lua_State *L);

/* lfile.c: creates path for writing, mode 0600, never through a symbolic
 * link at path (ELOOP); truncates an existing file, or with excl fails
 * with EEXIST. Returns the fd or a negative errno. */
int ath_file_create(const char *path, int excl);
/* What a negative errno of ath_file_create means, for a message. */
const char *ath_file_why(int err);

#endif
