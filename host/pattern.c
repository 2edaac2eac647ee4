/*
 * pattern.c: Lua 5.4 string patterns in C; see pattern.h.
 *
 * The matcher has the shape of Lua's own: a recursive match() that walks
 * the pattern one item at a time and loops, instead of recursing, where the
 * rest of the pattern is a tail call. Recursing in exactly the same places
 * gives the same depth, so "pattern too complex" strikes exactly where Lua
 * strikes. Errors do not unwind with longjmp: the first one is recorded in
 * the state, reads as a failed match, and every caller that would try an
 * alternative gives up as soon as it is set.
 *
 * Lua's patterns end with a NUL that its matcher reads in a few places;
 * ours are not terminated, so those reads go through pat_byte().
 */
#include "pattern.h"

#include <ctype.h>
#include <string.h>

#define ESC '%'
#define SPECIALS "^$*+?.([%-"
#define MAXDEPTH 200 /* Lua's MAXCCALLS */
#define CAP_UNFINISHED (-1)

typedef struct {
    const char *src, *src_end; /* the whole subject, for %f and results */
    const char *pat_end;
    int depth;       /* match() calls still allowed */
    int level;       /* captures opened on the current path */
    const char *err; /* the first error, or NULL */
    struct {
        const char *init;
        ptrdiff_t len; /* or CAP_UNFINISHED, ATH_CAP_POSITION */
    } cap[ATH_PAT_MAXCAPTURES];
} mstate;

static const char *const bad_index[10] = {
    "invalid capture index %0", "invalid capture index %1",
    "invalid capture index %2", "invalid capture index %3",
    "invalid capture index %4", "invalid capture index %5",
    "invalid capture index %6", "invalid capture index %7",
    "invalid capture index %8", "invalid capture index %9"};

static const char *match(mstate *ms, const char *s, const char *p);

/* The pattern byte at p, or 0 (what Lua reads there) at the end pe. */
static int pat_byte(const char *p, const char *pe)
{
    return p < pe ? (unsigned char)*p : 0;
}

/* Records msg unless an error is already recorded; returns NULL, the
 * failed-match value, so callers can return it directly. */
static const char *fail(mstate *ms, const char *msg)
{
    if (ms->err == NULL)
        ms->err = msg;
    return NULL;
}

/*
 * Returns one past the single-character class that starts at p (< pe): a
 * byte, an escape "%x" or a set "[...]" (whose first member may be ']').
 * Returns NULL with *err set if the class is malformed.
 */
static const char *class_end(const char *p, const char *pe, const char **err)
{
    int c = (unsigned char)*p++;

    if (c == ESC) {
        if (p == pe) {
            *err = "malformed pattern (ends with '%')";
            return NULL;
        }
        return p + 1;
    }
    if (c != '[')
        return p;
    if (pat_byte(p, pe) == '^')
        p++;
    do {
        if (p == pe) {
            *err = "malformed pattern (missing ']')";
            return NULL;
        }
        c = (unsigned char)*p++;
        if (c == ESC && p < pe)
            p++; /* an escaped byte never closes the set: "[%]]" */
    } while (pat_byte(p, pe) != ']');
    return p + 1;
}

/* Whether byte c belongs to the class %cl (or is cl itself when cl is not a
 * class letter). Upper-case class letters complement, as in Lua. */
static int class_match(int c, int cl)
{
    int res;

    switch (tolower(cl)) {
    case 'a': res = isalpha(c); break;
    case 'c': res = iscntrl(c); break;
    case 'd': res = isdigit(c); break;
    case 'g': res = isgraph(c); break;
    case 'l': res = islower(c); break;
    case 'p': res = ispunct(c); break;
    case 's': res = isspace(c); break;
    case 'u': res = isupper(c); break;
    case 'w': res = isalnum(c); break;
    case 'x': res = isxdigit(c); break;
    case 'z': res = c == 0; break; /* undocumented since 5.2, still in 5.4 */
    default: return cl == c;
    }
    return isupper(cl) ? !res : res != 0;
}

/*
 * Whether byte c belongs to the set whose '[' is at p and whose closing ']'
 * is at ec (as found by class_end). Members are escapes, ranges "x-y" and
 * single bytes; a leading '^' complements.
 */
static int set_match(int c, const char *p, const char *ec)
{
    int in = 1; /* the answer when c is a member */

    if (*++p == '^') {
        in = 0;
        p++;
    }
    for (; p < ec; p++) {
        if (*p == ESC) {
            p++;
            if (class_match(c, (unsigned char)*p))
                return in;
        } else if (p[1] == '-' && p + 2 < ec) {
            if ((unsigned char)p[0] <= c && c <= (unsigned char)p[2])
                return in;
            p += 2;
        } else if ((unsigned char)*p == c) {
            return in;
        }
    }
    return !in;
}

/* Whether the subject byte at s matches the class p[0, ep); false at the
 * end of the subject. */
static int single_match(const mstate *ms, const char *s, const char *p,
                        const char *ep)
{
    int c;

    if (s >= ms->src_end)
        return 0;
    c = (unsigned char)*s;
    switch (*p) {
    case '.': return 1;
    case ESC: return class_match(c, (unsigned char)p[1]);
    case '[': return set_match(c, p, ep - 1);
    default: return (unsigned char)*p == c;
    }
}

/* "%bxy" with p at "xy": returns the end of a balanced x...y run starting
 * at s, or NULL. Lua checks the closing byte first, so "%bxx" ends at the
 * next x. */
static const char *match_balance(mstate *ms, const char *s, const char *p)
{
    int open, close, depth = 1;

    if (ms->pat_end - p < 2)
        return fail(ms, "malformed pattern (missing arguments to '%b')");
    if (s >= ms->src_end || *s != *p)
        return NULL;
    open = *p;
    close = p[1];
    while (++s < ms->src_end) {
        if (*s == close) {
            if (--depth == 0)
                return s + 1;
        } else if (*s == open) {
            depth++;
        }
    }
    return NULL;
}

/* "%N" with digit the byte N: matches a copy of closed capture N at s.
 * A position capture never matches; a capture that does not exist or is
 * still open is an error. */
static const char *match_backref(mstate *ms, const char *s, int digit)
{
    int l = digit - '1';
    size_t len;

    if (l < 0 || l >= ms->level || ms->cap[l].len == CAP_UNFINISHED)
        return fail(ms, bad_index[digit - '0']);
    if (ms->cap[l].len < 0)
        return NULL;
    len = (size_t)ms->cap[l].len;
    if ((size_t)(ms->src_end - s) < len)
        return NULL;
    if (len > 0 && memcmp(ms->cap[l].init, s, len) != 0)
        return NULL;
    return s + len;
}

/* Opens a capture at s (what is CAP_UNFINISHED, or ATH_CAP_POSITION for
 * "()") and matches the rest p; the capture is dropped if that fails. */
static const char *start_capture(mstate *ms, const char *s, const char *p,
                                 ptrdiff_t what)
{
    const char *res;

    if (ms->level >= ATH_PAT_MAXCAPTURES)
        return fail(ms, "too many captures");
    ms->cap[ms->level].init = s;
    ms->cap[ms->level].len = what;
    ms->level++;
    res = match(ms, s, p);
    if (res == NULL)
        ms->level--;
    return res;
}

/* Closes the innermost open capture at s and matches the rest p; the
 * capture is reopened if that fails. */
static const char *end_capture(mstate *ms, const char *s, const char *p)
{
    const char *res;
    int l = ms->level - 1;

    while (l >= 0 && ms->cap[l].len != CAP_UNFINISHED)
        l--;
    if (l < 0)
        return fail(ms, "invalid pattern capture");
    ms->cap[l].len = s - ms->cap[l].init;
    res = match(ms, s, p);
    if (res == NULL)
        ms->cap[l].len = CAP_UNFINISHED;
    return res;
}

/* Class p[0, ep) with '*' (or '+' once s is past the first byte): the
 * longest run that lets the rest of the pattern match. */
static const char *max_expand(mstate *ms, const char *s, const char *p,
                              const char *ep)
{
    size_t n = 0;

    while (single_match(ms, s + n, p, ep))
        n++;
    for (;;) {
        const char *res = match(ms, s + n, ep + 1);
        if (res != NULL || ms->err != NULL)
            return res;
        if (n-- == 0)
            return NULL;
    }
}

/* Class p[0, ep) with '-': the shortest run that lets the rest match. */
static const char *min_expand(mstate *ms, const char *s, const char *p,
                              const char *ep)
{
    for (;;) {
        const char *res = match(ms, s, ep + 1);
        if (res != NULL || ms->err != NULL)
            return res;
        if (!single_match(ms, s, p, ep))
            return NULL;
        s++;
    }
}

/*
 * The steps below match the pattern item at *pp against the subject at
 * *sp. A step returns 1 when matching goes on at the updated *sp, *pp (a
 * tail call), or 0 when *sp holds the final answer: the end of the match,
 * or NULL for no match or an error.
 */

/* "%f[set]" with *pp at the '%': the byte before s (NUL at the subject's
 * start) is outside the set and the byte at s (NUL at its end) inside. */
static int step_frontier(mstate *ms, const char **sp, const char **pp)
{
    const char *s = *sp, *p = *pp + 2, *ep, *msg;
    int prev, cur;

    if (pat_byte(p, ms->pat_end) != '[') {
        *sp = fail(ms, "missing '[' after '%f' in pattern");
        return 0;
    }
    ep = class_end(p, ms->pat_end, &msg);
    if (ep == NULL) {
        *sp = fail(ms, msg);
        return 0;
    }
    prev = s == ms->src ? 0 : (unsigned char)s[-1];
    cur = s < ms->src_end ? (unsigned char)*s : 0;
    if (!set_match(prev, p, ep - 1) && set_match(cur, p, ep - 1)) {
        *pp = ep;
        return 1;
    }
    *sp = NULL;
    return 0;
}

/* A single-character class with an optional quantifier * + - ?. */
static int step_single(mstate *ms, const char **sp, const char **pp)
{
    const char *s = *sp, *p = *pp, *ep, *res, *msg;
    int q;

    ep = class_end(p, ms->pat_end, &msg);
    if (ep == NULL) {
        *sp = fail(ms, msg);
        return 0;
    }
    q = pat_byte(ep, ms->pat_end);
    if (!single_match(ms, s, p, ep)) {
        if (q == '*' || q == '?' || q == '-') {
            *pp = ep + 1; /* zero repetitions are fine */
            return 1;
        }
        *sp = NULL;
        return 0;
    }
    switch (q) {
    case '?':
        res = match(ms, s + 1, ep + 1);
        if (res != NULL || ms->err != NULL) {
            *sp = res;
            return 0;
        }
        *pp = ep + 1;
        return 1;
    case '+': *sp = max_expand(ms, s + 1, p, ep); return 0;
    case '*': *sp = max_expand(ms, s, p, ep); return 0;
    case '-': *sp = min_expand(ms, s, p, ep); return 0;
    default:
        *sp = s + 1;
        *pp = ep;
        return 1;
    }
}

/* Any pattern item; *pp is before the pattern's end. */
static int step(mstate *ms, const char **sp, const char **pp)
{
    const char *s = *sp, *p = *pp, *pe = ms->pat_end;

    switch (*p) {
    case '(':
        if (pat_byte(p + 1, pe) == ')')
            *sp = start_capture(ms, s, p + 2, ATH_CAP_POSITION);
        else
            *sp = start_capture(ms, s, p + 1, CAP_UNFINISHED);
        return 0;
    case ')': *sp = end_capture(ms, s, p + 1); return 0;
    case '$':
        if (p + 1 != pe)
            break; /* a '$' elsewhere is an ordinary byte */
        *sp = s == ms->src_end ? s : NULL;
        return 0;
    case ESC:
        switch (pat_byte(p + 1, pe)) {
        case 'b':
            *sp = match_balance(ms, s, p + 2);
            if (*sp == NULL)
                return 0;
            *pp = p + 4;
            return 1;
        case 'f': return step_frontier(ms, sp, pp);
        case '0':
        case '1':
        case '2':
        case '3':
        case '4':
        case '5':
        case '6':
        case '7':
        case '8':
        case '9':
            *sp = match_backref(ms, s, (unsigned char)p[1]);
            if (*sp == NULL)
                return 0;
            *pp = p + 2;
            return 1;
        }
        break;
    }
    return step_single(ms, sp, pp);
}

/* Matches the pattern from p on against the subject from s on. Returns the
 * end of the match, or NULL if there is none or an error is recorded. */
static const char *match(mstate *ms, const char *s, const char *p)
{
    if (ms->depth-- == 0)
        return fail(ms, "pattern too complex");
    while (p != ms->pat_end && step(ms, &s, &p))
        ;
    ms->depth++;
    return s;
}

/* Whether p[0, lp) has a byte that makes string.find treat it as a
 * pattern rather than as plain text. */
static int has_specials(const char *p, size_t lp)
{
    size_t i;

    for (i = 0; i < lp; i++)
        if (memchr(SPECIALS, p[i], sizeof SPECIALS - 1) != NULL)
            return 1;
    return 0;
}

/* The first occurrence of p[0, lp) in s[0, ls), or NULL. */
static const char *find_plain(const char *s, size_t ls, const char *p,
                              size_t lp)
{
    const char *last;

    if (lp == 0)
        return s;
    if (lp > ls)
        return NULL;
    last = s + (ls - lp);
    while (s <= last) {
        const char *hit = memchr(s, *p, (size_t)(last - s) + 1);
        if (hit == NULL)
            return NULL;
        if (memcmp(hit + 1, p + 1, lp - 1) == 0)
            return hit;
        s = hit + 1;
    }
    return NULL;
}

/* Stores msg in *err if err is not NULL; returns -1. */
static int report(const char **err, const char *msg)
{
    if (err != NULL)
        *err = msg;
    return -1;
}

/* Fills *m (if not NULL) from a successful match of s[start, e) that left
 * the captures in ms. Returns 1, or -1 if a capture is still open. */
static int fill_match(const mstate *ms, size_t start, const char *e,
                      ath_match_t *m, const char **err)
{
    int i;

    for (i = 0; i < ms->level; i++)
        if (ms->cap[i].len == CAP_UNFINISHED)
            return report(err, "unfinished capture");
    if (m == NULL)
        return 1;
    m->start = start;
    m->end = (size_t)(e - ms->src);
    m->ncap = ms->level;
    for (i = 0; i < ms->level; i++) {
        m->cap[i].off = (size_t)(ms->cap[i].init - ms->src);
        m->cap[i].len = ms->cap[i].len;
    }
    return 1;
}

int ath_pat_find(const char *s, size_t ls, const char *p, size_t lp,
                 size_t init, ath_match_t *m, const char **err)
{
    mstate ms;
    size_t i;
    int anchor;

    if (s == NULL)
        s = ""; /* only with ls == 0: no arithmetic on a null pointer */
    if (p == NULL)
        p = "";
    if (init > ls)
        return 0;
    if (!has_specials(p, lp)) {
        const char *hit = find_plain(s + init, ls - init, p, lp);
        if (hit == NULL)
            return 0;
        if (m != NULL) {
            m->start = (size_t)(hit - s);
            m->end = m->start + lp;
            m->ncap = 0;
        }
        return 1;
    }
    anchor = *p == '^';
    if (anchor) {
        p++;
        lp--;
    }
    ms.src = s;
    ms.src_end = s + ls;
    ms.pat_end = p + lp;
    ms.err = NULL;
    for (i = init;; i++) {
        const char *e;
        ms.depth = MAXDEPTH;
        ms.level = 0;
        e = match(&ms, s + i, p);
        if (ms.err != NULL)
            return report(err, ms.err);
        if (e != NULL)
            return fill_match(&ms, i, e, m, err);
        if (anchor || i == ls)
            return 0;
    }
}

/*
 * What ath_pat_check() tracks while walking a pattern. The capture state at
 * each point of a pattern does not depend on the subject (items are matched
 * strictly in order), so every error Lua could raise while matching can be
 * found by one walk over the pattern.
 */
typedef struct {
    int level;                     /* captures opened so far */
    int open[ATH_PAT_MAXCAPTURES]; /* whether capture i is still open */
    const char *err;
} cstate;

/* Checks the "%b", "%f" or "%0"-"%9" item at p (p + 1 < pe). Returns the
 * position after it, or NULL with cs->err set. */
static const char *check_escape(cstate *cs, const char *p, const char *pe)
{
    int l;

    switch (p[1]) {
    case 'b':
        if (pe - (p + 2) < 2) {
            cs->err = "malformed pattern (missing arguments to '%b')";
            return NULL;
        }
        return p + 4;
    case 'f':
        if (pat_byte(p + 2, pe) != '[') {
            cs->err = "missing '[' after '%f' in pattern";
            return NULL;
        }
        return class_end(p + 2, pe, &cs->err);
    default:
        l = p[1] - '1';
        if (l < 0 || l >= cs->level || cs->open[l]) {
            cs->err = bad_index[p[1] - '0'];
            return NULL;
        }
        return p + 2;
    }
}

/* Checks the pattern item at p (< pe). Returns the position after it, or
 * NULL with cs->err set. */
static const char *check_item(cstate *cs, const char *p, const char *pe)
{
    const char *ep;
    int l;

    switch (*p) {
    case '(':
        if (cs->level >= ATH_PAT_MAXCAPTURES) {
            cs->err = "too many captures";
            return NULL;
        }
        if (pat_byte(p + 1, pe) == ')') {
            cs->open[cs->level++] = 0; /* a position capture never opens */
            return p + 2;
        }
        cs->open[cs->level++] = 1;
        return p + 1;
    case ')':
        for (l = cs->level - 1; l >= 0 && !cs->open[l]; l--)
            ;
        if (l < 0) {
            cs->err = "invalid pattern capture";
            return NULL;
        }
        cs->open[l] = 0;
        return p + 1;
    case ESC:
        l = pat_byte(p + 1, pe);
        if (l == 'b' || l == 'f' || (l >= '0' && l <= '9'))
            return check_escape(cs, p, pe);
        break;
    }
    ep = class_end(p, pe, &cs->err);
    if (ep == NULL)
        return NULL;
    l = pat_byte(ep, pe);
    return (l == '*' || l == '+' || l == '-' || l == '?') ? ep + 1 : ep;
}

int ath_pat_check(const char *p, size_t lp, const char **err)
{
    cstate cs;
    const char *pe;
    int l;

    if (p == NULL)
        p = "";
    pe = p + lp;
    cs.level = 0;
    cs.err = NULL;
    if (p < pe && *p == '^')
        p++;
    while (p < pe) {
        p = check_item(&cs, p, pe);
        if (p == NULL)
            return report(err, cs.err);
    }
    for (l = 0; l < cs.level; l++)
        if (cs.open[l])
            return report(err, "unfinished capture");
    return 0;
}
