/*
 * redact.h: secrets masked in a byte stream, wherever the stream is cut.
 *
 * An automaton (Aho-Corasick) over every registered spelling of every
 * secret reads each byte once. A stream (one per port and direction) holds
 * back only what may still become a secret: the longest suffix of what it
 * has read that is a prefix of some spelling (at most the longest one
 * less a byte); everything before that is final and goes out, each run of
 * secret bytes as one "***". The bytes of every match are masked, so
 * overlapping spellings mask their union. Nothing here knows of hosts,
 * files or Lua: host/event.c keeps the automaton of a host's secrets,
 * host/transcript.c and host/port.c keep streams.
 */
#ifndef ATH_REDACT_H
#define ATH_REDACT_H

#include <stddef.h>

/* A growing output buffer: b[0, len), not NUL-terminated. */
typedef struct ath_buf {
    char *b;
    size_t len, cap;
} ath_buf_t;

/* Appends s[0, n); -1 if memory ran out (the buffer is unchanged). */
int ath_buf_add(ath_buf_t *b, const char *s, size_t n);

typedef struct ath_ac ath_ac_t;

/* Held bytes at least this many bytes into a secret are written as ***
 * when a stream must let them go before it knows (ath_rs_flush). */
#define ATH_RS_PARTIAL_MIN 4

/* The automaton of pats[0, npats) (NUL-terminated, each at least one
 * byte); NULL if memory ran out. No patterns is fine: nothing matches. */
ath_ac_t *ath_ac_new(const char *const *pats, size_t npats);
void ath_ac_free(ath_ac_t *ac);
/* The number of states (a measure of its size) and the longest pattern. */
size_t ath_ac_states(const ath_ac_t *ac);
size_t ath_ac_longest(const ath_ac_t *ac);

/* A stream's state; zero-initialised (or ath_rs_init) before use. */
typedef struct ath_rs {
    unsigned long gen;      /* the automaton it read with */
    int node;               /* its state: depth = bytes that may be a secret */
    char *buf;              /* held bytes buf[start, start + len) */
    unsigned char *mask;    /* 1 for a held byte known to be secret */
    size_t start, len, cap;
    size_t depth;           /* the state's depth */
    unsigned long long pos; /* bytes read in all */
    int star;               /* the last thing written was *** */
} ath_rs_t;

void ath_rs_init(ath_rs_t *rs);
void ath_rs_free(ath_rs_t *rs);
/* Reads s[0, n) after what the stream read before and appends to out what
 * is final. A stream that read with another automaton (secrets added
 * since) reads its held bytes again with ac first. -1 if memory ran out
 * (then s is written to out masked as a whole: never in clear). */
int ath_rs_feed(ath_rs_t *rs, const ath_ac_t *ac, const char *s, size_t n,
                ath_buf_t *out);
/* Appends the held bytes and lets them go: as *** when partial is set and
 * they are at least ATH_RS_PARTIAL_MIN bytes into a possible secret,
 * else as they are. The stream keeps its state, so the rest of a secret
 * that arrives later is still masked. */
int ath_rs_flush(ath_rs_t *rs, ath_buf_t *out, int partial);
/* The same without letting them go (what an error message shows). */
int ath_rs_peek(const ath_rs_t *rs, ath_buf_t *out, int partial);
/* How many bytes the stream holds back. */
size_t ath_rs_held(const ath_rs_t *rs);

/* s[0, n) with every match masked, as one stream read to its end (what
 * is held at the end is no secret and stays). A malloc'd NUL-terminated
 * string, its length in *outn; NULL if memory ran out. */
char *ath_ac_mask(const ath_ac_t *ac, const char *s, size_t n, size_t *outn);

#endif
