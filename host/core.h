/*
 * core.h: what a host offers the byte path (port.c, tls.c, rfc2217.c),
 * without Lua: its loop, its clock, its transcript, its secrets, and the
 * list of objects it closes when a run ends. host.h adds the Lua side.
 * Not installed.
 */
#ifndef ATH_CORE_H
#define ATH_CORE_H

#include <stddef.h>
#include <uv.h>

#include "athost.h"
#include "redact.h"

typedef struct ath_tr ath_tr_t;

/* Something of the host's that owns libuv handles: closed when the run
 * ends. close() must unlink it (ath_host_res_del) and start closing its
 * handles; each handle's close callback gives them back
 * (ath_host_handles(h, -1)). */
struct lua_State; /* opaque here: the byte path knows no Lua */

typedef struct ath_res {
    struct ath_res *prev, *next;
    void (*close)(struct ath_res *r);
    /* Optional: forget the waits of flow co (NULL: of every flow) without
     * waking it; the flow is abandoned (a cancel's cleanup, a cleanup
     * function that overran its time). */
    void (*abandon)(struct ath_res *r, struct lua_State *co);
} ath_res_t;

/* host.c */
void ath_host_res_add(ath_host_t *h, ath_res_t *r);
void ath_host_res_del(ath_host_t *h, ath_res_t *r);
double ath_host_now(ath_host_t *h);
/* The run's transcript, or NULL. */
ath_tr_t *ath_host_tr(ath_host_t *h);
/* Counts libuv handles the host's objects hold open (+1 per init, -1
 * per close callback). */
void ath_host_handles(ath_host_t *h, int delta);
/* 1 if any secret is registered. */
int ath_host_has_secrets(ath_host_t *h);

/* event.c */
/* The automaton of the host's secrets as they are now (never NULL unless
 * memory ran out for the first one). */
const ath_ac_t *ath_host_ac(ath_host_t *h);
/* Masks registered secrets: returns a malloc'd copy of s[0,n) with each
 * secret replaced by ***, length in *outn. */
char *ath_host_redact(ath_host_t *h, const char *s, size_t n, size_t *outn);

/* transcript.c */
/* Opens a transcript at path ("-": stderr); max > 0 rotates the file to
 * path.1 before a record would take it over max bytes. NULL with a
 * message naming the path in err. */
ath_tr_t *ath_tr_open(ath_host_t *h, const char *path, size_t max, char *err,
                      size_t errlen);
/* Records bytes sent ('>') or received ('<') on a port. Received bytes are
 * held until a line end and written by ath_tr_flush(), so that a secret
 * the flow registers on reading it never reaches the file. */
void ath_tr_data(ath_tr_t *t, const char *port, int dir, const char *s,
                 size_t n);
void ath_tr_note(ath_tr_t *t, const char *port, const char *text);
/* Holds (hold 1) what a port received back from ath_tr_flush(t, 0) while
 * a flow is in the middle of a command whose reply lines it has not seen
 * yet; hold 0 lets it go. */
void ath_tr_hold(ath_tr_t *t, const char *port, int hold);
void ath_tr_flush(ath_tr_t *t, int all);
void ath_tr_close(ath_tr_t *t);
/* Escapes s[0, n) for a one-line record: \r \n \t \\ \xNN. Returns a
 * malloc'd string. */
char *ath_escape(const char *s, size_t n);

#endif
