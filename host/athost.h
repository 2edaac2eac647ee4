/*
 * athost.h: the embeddable athost host.
 *
 * A host is one Lua state driven by one libuv loop. It runs a script (or a
 * flow from lib/) as its main flow; the flow opens ports, waits on replies
 * and timers, and reports steps and results through the event callback.
 * Several hosts may share one loop and live in one process. Many hosts
 * may also share one Lua state (ath_host_new_shared): the library is then
 * loaded and compiled once for all of them, each costing a few KiB (the
 * factory station runs every DUT this way).
 *
 *   ath_host_t *h = ath_host_new(NULL, NULL);
 *   ath_host_set_param(h, "port", "/dev/ttyUSB0");
 *   ath_host_load_file(h, "clouds/aliyun.lua");
 *   int rc = ath_host_run(h);          // ATH_EXIT_*
 *   ath_host_free(h);
 */
#ifndef ATHOST_H
#define ATHOST_H

#include <stddef.h>
#include <stdio.h>
#include <uv.h>

#ifdef __cplusplus
extern "C" {
#endif

#define ATHOST_VERSION "0.1.0"

/* Exit codes of the command, and results of a run. */
enum {
    ATH_EXIT_OK = 0,      /* the flow finished */
    ATH_EXIT_FAIL = 1,    /* the flow or one of its steps failed */
    ATH_EXIT_USAGE = 2,   /* bad arguments or a script that does not load */
    ATH_EXIT_PORT = 3,    /* the port could not be opened */
    ATH_EXIT_CANCELED = 4 /* ath_host_cancel() or a signal stopped it */
};

typedef enum ath_event_type {
    ATH_EVENT_STEP_START = 1, /* name: the step */
    ATH_EVENT_STEP_END,       /* name, ms, ok, text: the error if !ok */
    ATH_EVENT_LOG,            /* text */
    ATH_EVENT_URC,            /* port: the port, text: the line */
    ATH_EVENT_TRANSCRIPT,     /* port, text: one escaped transcript record */
    ATH_EVENT_DATA,           /* name, json: what the flow emitted */
    ATH_EVENT_RESULT,         /* ok, text: the error if !ok, ms, code */
    ATH_EVENT_WAIT            /* name: what a long wait waits for, ms: how
                                 long so far, total_ms: its limit (0: none),
                                 text: the line printed */
} ath_event_type_t;

typedef struct ath_event {
    ath_event_type_t type;
    const char *name; /* step or event name, or NULL */
    const char *port; /* port name, or NULL */
    const char *text; /* secrets already masked as ***; may hold NUL bytes
                         (a log line, a URC): its length is text_len */
    const char *json; /* the event as one JSON object (valid UTF-8: bytes
                         that are not are written \u00XX) */
    double ms;        /* duration (STEP_END, RESULT) or time since start */
    int ok;
    int code; /* RESULT: ATH_EXIT_* */
    /* Added last, so that code built against the older struct still reads
     * the fields above where they were. The callback always gets the
     * length of text (text[text_len] is '\0'); inside the host, an event
     * built with text_len 0 holds a C string, measured by strlen. Errors
     * (STEP_END, RESULT, ath_host_error()) are C strings: a NUL in one is
     * written \x00. */
    size_t text_len;
    double total_ms; /* WAIT: how long the wait may take (0: no limit) */
} ath_event_t;

typedef struct ath_host ath_host_t;
typedef void (*ath_event_cb)(ath_host_t *h, const ath_event_t *ev, void *ud);

typedef struct ath_host_opts {
    ath_event_cb on_event; /* NULL: print events to stderr (or stdout as
                              JSON lines when json is set) */
    void *ud;
    int json;               /* default printer: JSON lines on stdout */
    int quiet;              /* default printer: steps and logs off */
    const char *transcript; /* file path, "-" for stderr, or NULL; a file
                               is created 0600, never through a symlink */
    size_t transcript_max;  /* bytes, 0: no cap; over it the file is
                               renamed to FILE.1 and a new FILE begun */
    const char *lib_path;   /* extra Lua search directories, ':'-separated */
    const char *name;       /* a label for this host's events (a DUT id) */
} ath_host_opts_t;

/* Creates a host on loop (NULL: a loop of its own). Returns NULL when it
 * cannot (out of memory, a transcript file that cannot be opened); the
 * reason is printed on stderr. */
ath_host_t *ath_host_new(uv_loop_t *loop, const ath_host_opts_t *opts);

/* Creates a host that runs in parent's Lua state and on parent's loop
 * (parent: a host made by ath_host_new, which need never load a flow of
 * its own). The shared host has its own parameters, secrets, transcript,
 * events, cleanups (athost.defer), flows and result; its main flow has
 * globals of its own (those it sets; the rest are the state's); the
 * library's modules (require) are the state's, loaded once. A flow file
 * is compiled once per state and path. opts->lib_path is ignored (the
 * parent's applies). Every function below works on it as on any host.
 * Coroutines a flow creates with coroutine.create/wrap act on its host.
 * ath_host_free(child) closes its ports and timers and abandons its flows
 * (their memory goes with the state's next collections); call it outside
 * the child's own event callback. Children must be freed before parent:
 * the state is closed with parent. On a loop of the embedder's, run it
 * until ath_host_close(child) returns 1 before freeing the child, or the
 * child's memory is kept until its last handle has closed. NULL when
 * memory runs out, the transcript cannot be opened, or parent is itself
 * a shared host. */
ath_host_t *ath_host_new_shared(ath_host_t *parent,
                                const ath_host_opts_t *opts);

/* Parameters reach the script as its first argument (a table). */
int ath_host_set_param(ath_host_t *h, const char *key, const char *value);
/* A command-line value: "@FILE" is FILE's contents (final line end
 * dropped), "@@x" is "@x". 0, or -1 when FILE cannot be read (see error). */
int ath_host_set_param_arg(ath_host_t *h, const char *key, const char *value);
/* Parameters from ATHOST_PARAM_<NAME> environment variables. */
void ath_host_params_from_env(ath_host_t *h);
/* Merges a JSON object file into the parameters (secret-named ones are
 * masked; a warning when others may read such a file). 0 or -1. */
int ath_host_load_config(ath_host_t *h, const char *path);
/* The default port of athost.port(): a spec and its baud rate (0: default). */
int ath_host_set_port(ath_host_t *h, const char *spec, int baud);
/* Registers a value that transcripts, logs and errors print as ***. */
void ath_host_add_secret(ath_host_t *h, const char *value);
/* With lazy set, on_event gets events without their JSON line: ev->json
 * is NULL, except in an ATH_EVENT_DATA event, where it is the flow's
 * value as JSON; the callback that wants an event's line calls
 * ath_event_json(). For a callback that reads few of them (a station of
 * many hosts): the line is not built for nothing. */
void ath_host_lazy_events(ath_host_t *h, int lazy);
/* In on_event: the event as one JSON object (as ev->json without lazy);
 * valid until the callback returns. */
const char *ath_event_json(ath_host_t *h, const ath_event_t *ev);

/* Sets the script's global arg table as lua.c does: arg[0] = script,
 * arg[1..n] = argv. */
void ath_host_set_argv(ath_host_t *h, const char *script, int n, char **argv);
/* The loop the host runs on. */
uv_loop_t *ath_host_loop(ath_host_t *h);

/* Finds a script by name: as a path from the current directory, else
 * under each ATHOST_PATH entry, then the installed data directory (the
 * flows clouds/, the tools scripts/), with or without ".lua". The path in
 * buf, or NULL when there is none. */
const char *ath_script_find(const char *name, char *buf, size_t n);
/* Prints the flows and scripts those places hold (clouds/, scripts/,
 * scripts/sim/), each with its first comment line. */
int ath_script_list(FILE *out);

/* Loads the main flow. Returns 0, or ATH_EXIT_USAGE (see error). */
int ath_host_load_file(ath_host_t *h, const char *path);
int ath_host_load_string(ath_host_t *h, const char *chunk, const char *name);

/* Starts the main flow; the result arrives as ATH_EVENT_RESULT. Use with
 * an embedder's loop. */
int ath_host_start(ath_host_t *h);
/* Starts the main flow and runs the loop until it ends; ATH_EXIT_*. */
int ath_host_run(ath_host_t *h);
/* Stops the main flow: its waits fail with ECANCELED; the run ends. */
void ath_host_cancel(ath_host_t *h);
/* Asks the run to stop, as SIGINT or SIGTERM do (why: "SIGINT", or
 * NULL): the flows running are abandoned, the cleanups registered with
 * athost.defer run (newest first, each for at most its time), then the run
 * ends with ATH_EXIT_CANCELED and a message naming the step the main flow
 * was in. Called again during the cleanup, it ends the run at once. */
void ath_host_interrupt(ath_host_t *h, const char *why);
/* 1 once the main flow ended (result known). */
int ath_host_done(const ath_host_t *h);
/* ATH_EXIT_* of a finished run. */
int ath_host_status(const ath_host_t *h);
/* The last error message (secrets masked, a NUL written \x00), or "". */
const char *ath_host_error(const ath_host_t *h);
/* Closes every handle (running the loop if it is the host's own), then
 * frees the host. An embedder's loop must be run until the host's handles
 * are closed: see ath_host_close(). */
void ath_host_free(ath_host_t *h);
/* Starts closing the host's handles; 1 when all are closed. */
int ath_host_close(ath_host_t *h);

#ifdef __cplusplus
}
#endif

#endif
