/*
 * chat.h: the AT chat engine.
 *
 * One engine per port. Received bytes are appended to a persistent buffer
 * and scanned incrementally: every byte is looked at for a line end once;
 * what is matched against patterns is one line at a time. The engine knows
 * nothing of Lua or libuv: the port feeds it bytes, sets at most one wait,
 * and pulls events with ath_chat_next() until it returns 0.
 *
 * Lines end at CR or LF; empty lines are skipped. A line is classified, in
 * this order, by the wait in progress (command echo, abort patterns, final
 * result codes, the command's reply prefix, awaited alternatives), then by
 * the always-on URC handlers. With no wait in progress, a line no URC
 * handler claims stays in the buffer (the backlog) for the next wait or
 * read, as in Expect; a new command discards the backlog. After a READ
 * the line ends are kept too, so the next READ gets the bytes as sent.
 *
 * A pattern may announce a byte count: count_cap names the capture that
 * holds it, and the payload of that many bytes follows right after the
 * match (inline, as in `+MSUB: "t",5 byte,hello`) or, when the match ends
 * at the end of its line, after the line end (as in `+HTTPREAD: 5\r\nhello`).
 * Payload bytes are never split into lines. A count is checked: it must
 * be a number of at most 9 digits, not negative and not above the
 * pattern's max, and the payload must be followed by one of the trailer
 * bytes (a line end by default); otherwise the header line produces
 * ATH_EV_BADCOUNT instead of a payload, never a part of one. Counted
 * patterns are tried on an unterminated line only while it is at most
 * 1 KiB (a header still arriving), then once on the complete line, and
 * never on a line longer than max_line, so the events do not depend on how
 * the bytes were split; a counted pattern should match its header one way
 * only (no greedy ".*" before the count).
 *
 * A command whose result is a URC (AT+MIPSTART -> CONNECT OK) names its
 * outcome patterns in the CMD wait: a line matching one is taken whether
 * it comes before the final result code, between echo and final, or
 * after it; after an OK the wait goes on until an outcome, a failure
 * outcome or an abort. Before the final, final result codes win over
 * failure outcomes ("ERROR" as a failure outcome means one after OK);
 * outcomes win over the reply prefix (+CLOUDSUBACK is no reply to
 * AT+CLOUDSUB).
 */
#ifndef ATH_CHAT_H
#define ATH_CHAT_H

#include <stddef.h>
#include "pattern.h"

enum { ATH_PAT_LITERAL, ATH_PAT_LUA };

typedef struct ath_pat {
    int kind;         /* ATH_PAT_LITERAL: the line starts with text */
    const char *text; /* not owned; must outlive its use by the engine */
    size_t len;
    int count_cap; /* > 0: capture number holding a payload byte count */
    size_t max;    /* counted: the largest count accepted (0: 64 MiB) */
    const char *trailer; /* counted: one of these bytes must follow the
                            payload (NULL: CR or LF; "": no check) */
} ath_pat_t;

enum {
    ATH_WAIT_NONE,
    ATH_WAIT_EXPECT, /* one of alts, or a prompt in the partial line */
    ATH_WAIT_CMD,    /* a final result code; reply lines along the way */
    ATH_WAIT_LINE,   /* the next line no URC handler claims */
    ATH_WAIT_READ    /* exactly nbytes raw bytes */
};

typedef struct ath_wait {
    int mode;
    const ath_pat_t *alts; /* EXPECT: awaited; CMD: extra final codes */
    int nalts;
    const ath_pat_t *aborts;
    int naborts;
    const ath_pat_t *prompts; /* also matched against an unterminated line */
    int nprompts;
    const ath_pat_t *reply; /* CMD: pattern of the lines that answer */
    const char *echo;       /* CMD: the command as sent, to skip its echo */
    size_t echolen;
    int echo_check;              /* CMD: another command's echo is an error */
    const ath_pat_t *outs;       /* CMD: the outcome URCs */
    int nouts;
    const ath_pat_t *ofails;     /* CMD: failure outcomes */
    int nofails;
    size_t nbytes; /* READ: exactly this many bytes */
    int some;      /* READ: 1 to nbytes bytes, what is there */
    int sure;      /* READ with some: all nbytes are announced (a streamed
                      read of n bytes), not only a limit */
} ath_wait_t;

enum {
    ATH_EV_URC = 1, /* index = URC id; the wait (if any) goes on */
    ATH_EV_MATCH,   /* EXPECT: index = alternative (0-based); wait ends */
    ATH_EV_ABORT,   /* index = abort pattern; wait ends */
    ATH_EV_FINAL,   /* CMD: index = ATH_FINAL_* or ATH_FINAL_ALT + alt; ends */
    ATH_EV_REPLY,   /* CMD: a reply line; m holds reply-pattern captures */
    ATH_EV_PROMPT,  /* CMD or EXPECT: prompt index seen; CMD goes on */
    ATH_EV_LINE,    /* LINE: the line; wait ends */
    ATH_EV_READ,    /* READ: line/len are the bytes; wait ends */
    ATH_EV_DROP,    /* len bytes were dropped (overlong line or backlog) */
    ATH_EV_OUTCOME, /* CMD: outcome index; ends the wait unless more */
    ATH_EV_OUTFAIL, /* CMD: failure outcome index; wait ends */
    ATH_EV_ECHO,    /* CMD: the line echoes another command; wait ends */
    ATH_EV_BADCOUNT /* a counted header whose count is wrong (why, count);
                       kind says whose pattern: an ATH_EV_* of the match */
};

enum {
    ATH_COUNT_NAN = 1, /* not a count: empty, a sign, not digits */
    ATH_COUNT_NEGATIVE,
    ATH_COUNT_DIGITS,  /* 10 digits or more */
    ATH_COUNT_MAX,     /* above the pattern's max */
    ATH_COUNT_TRAILER  /* the payload is not followed by its trailer */
};

enum {
    ATH_FINAL_OK,
    ATH_FINAL_ERROR,
    ATH_FINAL_CME,
    ATH_FINAL_CMS,
    ATH_FINAL_ALT
};

typedef struct ath_chat_event {
    int type;
    int index;
    int matched;      /* m is valid (a pattern matched this line) */
    const char *line; /* valid until the next call into the engine */
    size_t len;
    ath_match_t m;       /* offsets relative to line */
    const char *payload; /* counted payload, or NULL */
    size_t plen;
    int more;         /* FINAL, OUTCOME: the wait goes on (outcome due) */
    int kind;         /* BADCOUNT: ATH_EV_REPLY, _MATCH, _URC or _OUTCOME */
    int why;          /* BADCOUNT: ATH_COUNT_* */
    long long count;  /* BADCOUNT: the count (if it is a number) */
    size_t max;       /* BADCOUNT: the pattern's max */
} ath_chat_event_t;

typedef struct ath_chat ath_chat_t;

#define ATH_CHAT_MAX_LINE (1u << 20) /* default bound of one line */
#define ATH_CHAT_BACKLOG (1u << 20)  /* default bound of the backlog */

/* Creates an engine (0 for either bound: its default). max_line bounds one line
 * (longer ones are cut into pieces of that size and an ATH_EV_DROP-free split
 * is reported as lines); max_backlog bounds what is kept with no wait in
 * progress. */
ath_chat_t *ath_chat_new(size_t max_line, size_t max_backlog);
void ath_chat_free(ath_chat_t *c);

/* Appends received bytes. Returns 0, or -1 if memory ran out. */
int ath_chat_feed(ath_chat_t *c, const char *data, size_t n);
/* The free room at the end of the buffer (*room bytes, at least 4 KiB),
 * for a read straight into it; ath_chat_commit(c, n) then appends the n
 * bytes read there. NULL if memory ran out. A counted payload or a READ
 * of n bytes makes the room for all of it at once, sized from the count
 * (no doubling); an empty buffer above 4 MiB is given back. */
char *ath_chat_space(ath_chat_t *c, size_t *room);
void ath_chat_commit(ath_chat_t *c, size_t n);

/* Starts a wait; the patterns must stay valid until it ends. Returns -1
 * if a wait is already in progress. */
int ath_chat_wait(ath_chat_t *c, const ath_wait_t *w);
int ath_chat_waiting(const ath_chat_t *c);
void ath_chat_cancel(ath_chat_t *c);

/* Discards the backlog (complete lines kept with no wait in progress). */
void ath_chat_flush(ath_chat_t *c);

/* Always-on URC handlers, tried in the order added. The pattern must stay
 * valid until removed. Returns 0, or -1 if memory ran out. */
int ath_chat_urc_add(ath_chat_t *c, const ath_pat_t *p, int id);
void ath_chat_urc_remove(ath_chat_t *c, int id);

/* Produces the next event from what is buffered. Returns 1 with *ev
 * filled, 0 when more bytes are needed. */
int ath_chat_next(ath_chat_t *c, ath_chat_event_t *ev);

/* Bytes received but not yet consumed. */
size_t ath_chat_pending(const ath_chat_t *c);

/* Bytes given to pattern matching so far (lines classified, headers
 * tried): a measure of the engine's work that does not depend on the
 * machine, linear in what was fed for any chunking. */
size_t ath_chat_work(const ath_chat_t *c);

/* 1 when the CMD wait had its OK and waits for its outcome. */
int ath_chat_outcome_due(const ath_chat_t *c);

/* 1 when a counted payload is arriving: *want bytes announced, *have in. */
int ath_chat_counting(const ath_chat_t *c, size_t *want, size_t *have);

/* Bytes the wait in progress is sure to take beyond what has come: the
 * rest of a counted payload, or of a read of exactly n bytes; 0 when
 * nothing more is certain. While it is not 0 a port reads on after a
 * short read instead of waiting in the loop to hear the fd is readable. */
size_t ath_chat_expecting(const ath_chat_t *c);

/* Right after an event, before the next call: hands over the engine's
 * buffer holding data[0, n) (the event's payload or READ bytes, which the
 * event consumed) with those bytes moved to offset front, so that a big
 * payload can become its owner's without a second copy of it existing
 * at once. The block is malloc'd, front + n + 1 bytes (the caller frees
 * it); the engine goes on with a buffer of its own holding what it had
 * not consumed, and the event's pointers are no longer valid. NULL (and
 * nothing changed) when data is not such bytes or memory ran out. */
char *ath_chat_take(ath_chat_t *c, const char *data, size_t n, size_t front);

/* Matches one pattern against s[0, n). Returns 1 on a match. */
int ath_pat_match(const ath_pat_t *p, const char *s, size_t n, ath_match_t *m);

#endif
