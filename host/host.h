/*
 * host.h: what the host's C files share. Not installed.
 */
#ifndef ATH_HOST_H
#define ATH_HOST_H

#include <lua.h>
#include <lauxlib.h>
#include <stdint.h>

#include "core.h"

typedef struct ath_ready {
    lua_State *co;
    int nargs;
} ath_ready_t;

struct ath_host {
    uv_loop_t *loop;
    uv_loop_t own_loop;
    int owns_loop;
    /* The Lua state's main thread: the host's own, or for a shared host
     * (ath_host_new_shared) its parent's. Used as a scratch stack by C
     * code; the flows running are found through ath_host_from(). */
    lua_State *L;
    ath_host_t *parent;  /* shared: whose state and loop it runs in */
    int children;        /* shared hosts not yet freed on this state */
    int zombie;          /* freed with handles still closing: the last
                            close callback frees the struct */
    int shared_state;    /* the state holds shared hosts (coroutine.create
                            and wrap replaced, flows cached) */
    /* Registry refs of what is the host's own in the state: the task
     * table of each flow (thread -> task), the parameters, the list of
     * athost.defer entries { fn, ms, name }, athost.on_interrupt's
     * function, the main flow's globals (shared hosts only) and its
     * thread. */
    int flows_ref, params_ref, defers_ref, onint_ref, env_ref, main_co_ref;
    ath_host_opts_t opts;
    char *name;
    ath_event_cb on_event;
    void *ud;
    int lazy_json; /* ath_host_lazy_events(): on_event builds ev->json
                      itself, through ath_event_json() */
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
    const void *port_mt; /* lchat.c: that metatable, to compare with */
    struct ath_waitnote *notes; /* long waits in progress (lhost.c) */
    /* The cleanup (athost.defer) in progress: a canceled main flow is
     * abandoned; the run then ends with end_status. */
    int cleaning;
    int abandoned; /* flows were abandoned: the scheduler checks */
    int end_status;
    char *end_msg;
    /* ath_host_free is closing the state: what a __gc would start now
     * (a timer, a port) would outlive the loop, so it is refused. */
    int closing;
};

/* core.c (see core.h for the rest) */
/* Frees what the struct holds, and the struct. */
void ath_host_release(ath_host_t *h);

/* flow.c: the host of the running thread; the end of a run */
/* registry key (by its address) of a state's own host, light userdata */
extern const char ath_host_key;
/* The host of the flow running L: the one in the thread's extra space
 * (flows: ath_host_spawn; coroutines a flow creates in a shared state:
 * coroutine.create/wrap), else the state's own host. */
ath_host_t *ath_host_from(lua_State *L);
/* The thread's extra space: a flow's host, or (tagged with
 * ATH_XS_PLAIN) the host of a plain coroutine a flow created, which may
 * call athost functions but not wait. */
#define ATH_XS_PLAIN ((uintptr_t)1)
#define ATH_XS(L) (*(void **)lua_getextraspace(L))
/* Ends the run (the first call only) with status and msg (masked):
 * emits the result, then closes what the host holds. */
void ath_host_finish(ath_host_t *h, int status, const char *msg);

/* flow.c */
/* The main flow ended, failed or was canceled: runs the functions given
 * to athost.defer (newest first, each bounded) in a flow of their own,
 * then ends the run with status and msg; ends it at once when there are
 * none or a cleanup is already running. why: "ended", "failed",
 * "canceled". */
void ath_host_end(ath_host_t *h, int status, const char *msg, const char *why);
/* Wakes the flows joining the task table at index t of L, each with the
 * table. */
void ath_host_wake_joiners(ath_host_t *h, lua_State *L, int t);
/* Abandons flow co (NULL: every flow running): it is never resumed, and
 * the ports forget its waits. */
void ath_host_abandon(ath_host_t *h, lua_State *co);
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
/* Raises "WHAT: athost is closing" once ath_host_free closes the state
 * (a __gc starting a timer or opening a port then). */
void ath_host_check_open(lua_State *L, const ath_host_t *h, const char *what);
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

/* event.c: progress of long waits. A wait that may last longer than
 * ATH_PROGRESS_MS reports every ATH_PROGRESS_MS what it waits for and for
 * how long of how long (an ATH_EVENT_WAIT). owner identifies the wait (a
 * port, a Lua handle); describe(owner, buf, n) says what it waits for at
 * the time of each report, or what (copied) does when describe is NULL.
 * ath_host_wait_begin returns 1 when it noted the wait, 0 when it did not
 * (the run is over, or no memory: no progress lines then). */
#define ATH_PROGRESS_MS 10000
typedef void (*ath_describe_fn)(void *owner, char *buf, size_t n);
int ath_host_wait_begin(ath_host_t *h, void *owner, ath_describe_fn describe,
                        const char *what, double total_ms);
/* The same wait goes on with a new limit from now (an outcome after OK). */
void ath_host_wait_restart(ath_host_t *h, void *owner, double total_ms);
void ath_host_wait_end(ath_host_t *h, void *owner);

/* lalloc.c: the state's allocator. ath_lua_newstate() makes a state as
 * luaL_newstate() does (its panic and warning functions), but with small
 * objects from pools and big payloads adopted; NULL when out of memory.
 * ath_lua_close(L) closes it. ath_lua_front(L) is where a string's bytes
 * begin in the block Lua allocates for it, 0 when the state cannot take
 * blocks. ath_lua_pushtaken(L, blk, n) pushes the n bytes at blk +
 * ath_lua_front(L) as a string, making the malloc'd block of front + n +
 * 1 bytes (ath_chat_take) the string itself when Lua asks for exactly
 * that, else copying them; blk is the state's or freed either way. */
lua_State *ath_lua_newstate(void);
size_t ath_lua_front(lua_State *L);
void ath_lua_pushtaken(lua_State *L, char *blk, size_t n);
void ath_lua_close(lua_State *L);

/* The Lua modules, each adding its functions to the table on top. */
void ath_lhost_open(lua_State *L);  /* lhost.c: flows, timers, steps */
void ath_lport_open(lua_State *L);  /* lport.c: ports and chat */
void ath_crypto_open(lua_State *L); /* crypto.c */
void ath_tls_open(lua_State *L);    /* ltls.c */
void ath_lfile_open(lua_State *L);  /* lfile.c: private files, stat */
void ath_ledit_open(lua_State *L);  /* ledit.c: athost.editor */
int luaopen_athost(lua_State *L);
int luaopen_cjson(lua_State *L);

/* lfile.c: creates path for writing, mode 0600, never through a symbolic
 * link at path (ELOOP); truncates an existing file, or with excl fails
 * with EEXIST. Returns the fd or a negative errno. */
int ath_file_create(const char *path, int excl);
/* What a negative errno of ath_file_create means, for a message. */
const char *ath_file_why(int err);

#endif
