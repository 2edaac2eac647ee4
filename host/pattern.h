/*
 * pattern.h: Lua 5.4 string patterns (reference manual, section 6.4.1) in
 * plain C, so the chat engine can match reply lines without entering Lua.
 *
 * ath_pat_find() behaves like string.find(s, p, init + 1): same matches,
 * same captures, same errors with the same messages, raised at the same
 * moment. Like Lua, it reports a malformed pattern only when matching
 * reaches the malformed part (string.find("abc", "x(") is nil, not an
 * error), and, like string.find, it searches a pattern with none of the
 * characters ^$*+?.([%- as a plain string (so "a)" is no error there).
 * Callers that want every error up front validate the pattern once with
 * ath_pat_check(), which is stricter: a pattern it accepts never makes
 * ath_pat_find() report a malformed pattern.
 *
 * Classes use the C library's <ctype.h> in the current locale, as Lua does;
 * the undocumented %z (the NUL byte) that Lua 5.4 still accepts is kept.
 *
 * Subjects and patterns are byte strings with a length: they may contain
 * NUL bytes and need no terminator. Nothing is allocated.
 */
#ifndef ATH_PATTERN_H
#define ATH_PATTERN_H

#include <stddef.h>

/* Lua allows 32 captures; a pattern opening more than this many fails
 * with "too many captures". */
#define ATH_PAT_MAXCAPTURES 16

/* ath_cap_t.len of a position capture "()"; off is then the 0-based
 * position (Lua reports off + 1). */
#define ATH_CAP_POSITION (-2)

typedef struct {
    size_t off;    /* byte offset in the subject */
    ptrdiff_t len; /* length, or ATH_CAP_POSITION */
} ath_cap_t;

typedef struct {
    size_t start, end; /* the match is subject[start, end) */
    int ncap;          /* number of captures (0 if the pattern has none) */
    ath_cap_t cap[ATH_PAT_MAXCAPTURES];
} ath_match_t;

/*
 * Validates the pattern p[0, lp) as ath_pat_find() would read it (a leading
 * '^' is the anchor) by walking all of it: a missing ']', a trailing '%',
 * '%b' without two characters, '%f' without a set, an unbalanced '(' or
 * ')', more than ATH_PAT_MAXCAPTURES captures, or a back-reference %0-%9 to
 * a capture not yet closed at that point. Returns 0 if the pattern is
 * valid; else -1 with *err (if err is not NULL) set to a static message
 * worded as Lua's, e.g. "malformed pattern (missing ']')".
 */
int ath_pat_check(const char *p, size_t lp, const char **err);

/*
 * Searches s[0, ls) for the pattern p[0, lp), starting at byte offset init,
 * like string.find(s, p, init + 1). A leading '^' anchors the match at
 * init. Returns 1 and fills *m (if m is not NULL) on a match; 0 if there is
 * none or init > ls; -1 with *err (if err is not NULL) set to a static
 * message where Lua would raise: a malformed pattern met while matching,
 * a successful match that leaves a capture open ("unfinished capture"),
 * or a recursion deeper than Lua's limit of 200 ("pattern too complex").
 * Never reads outside s[0, ls) or p[0, lp).
 */
int ath_pat_find(const char *s, size_t ls, const char *p, size_t lp,
                 size_t init, ath_match_t *m, const char **err);

#endif
