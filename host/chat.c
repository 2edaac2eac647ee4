/*
 * chat.c: the AT chat engine (see chat.h for the contract).
 *
 * Buffer layout, as offsets into b:
 *
 *   0 ... head ......... ls ....... scan ....... len ... cap
 *         | backlog      | line being found       |
 *
 * [head, ls) holds complete lines kept with no wait in progress; ls is the
 * start of the next line to classify; [ls, scan) is known to hold no line
 * end, so each byte is searched once. With a wait in progress head == ls:
 * what the wait looked at is consumed.
 */
#include "chat.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define PROMPT_MAX 256        /* longest unterminated line tried as prompt */
#define HEADER_MAX 1024       /* longest unterminated line tried as the
                                 header of a counted payload */
#define COUNT_MAX (64u << 20) /* largest payload a count may announce */
#define CHAT_EXACT (64u << 10) /* a payload above this gets its room at once */
#define CHAT_SHRINK (4u << 20) /* an empty buffer above this is given back:
                                  above what lines and backlog need, so
                                  only a big payload's room goes */
#define CHAT_KEEP (64u << 10)  /* what it shrinks to */
#define COUNT_SLACK 4096      /* room after an announced payload: its
                                 trailer and what follows in the read */

typedef struct urc {
    ath_pat_t p;
    int id;
} urc_t;

/* A counted match whose payload is still arriving, or a header whose
 * count is wrong (ev.type ATH_EV_BADCOUNT), to be reported. */
typedef struct pending {
    int on;
    ath_chat_event_t ev; /* type, index, matched, m; pointers set on emit */
    size_t hdr_end;      /* end of the matched header (offset in b) */
    size_t pstart;       /* payload start (offset in b) */
    size_t plen;
    size_t line_end;     /* BADCOUNT: the end of the header's line */
    const char *trailer; /* what must follow the payload ("" nothing) */
} pending_t;

struct ath_chat {
    char *b;
    size_t cap, len, head, ls, scan;
    size_t max_line, max_backlog;
    ath_wait_t w;
    urc_t *urc;
    int nurc, urccap;
    pending_t cnt;
    size_t cut_a, cut_b; /* a claimed backlog line to remove, if cut_b */
    int raw;             /* the last wait was a READ: with no wait, line
                            ends at head are kept for the next read */
    int due;             /* CMD: OK came, the outcome is awaited */
    int outseen;         /* CMD: an outcome came before the final */
    int answered;        /* CMD: a reply or prompt came (echo is past) */
    size_t work;         /* bytes given to pattern matching, in all */
    size_t hdr_tried;    /* ls + 1 of an unterminated line longer than
                            the header bound already tried as a header */
};

ath_chat_t *ath_chat_new(size_t max_line, size_t max_backlog)
{
    ath_chat_t *c = calloc(1, sizeof *c);
    if (c == NULL)
        return NULL;
    c->cap = 4096;
    c->b = malloc(c->cap);
    if (c->b == NULL) {
        free(c);
        return NULL;
    }
    c->max_line = max_line ? max_line : ATH_CHAT_MAX_LINE;
    c->max_backlog = max_backlog ? max_backlog : ATH_CHAT_BACKLOG;
    return c;
}

void ath_chat_free(ath_chat_t *c)
{
    if (c == NULL)
        return;
    free(c->b);
    free(c->urc);
    free(c);
}

/* Applies a deferred cut of a URC line claimed from inside the backlog. */
static void chat_apply_cut(ath_chat_t *c)
{
    size_t d = c->cut_b - c->cut_a;
    if (c->cut_b == 0)
        return;
    memmove(c->b + c->cut_a, c->b + c->cut_b, c->len - c->cut_b);
    c->len -= d;
    c->ls -= d;
    c->scan -= d;
    c->hdr_tried = 0;
    c->cut_a = c->cut_b = 0;
}

/* Moves unconsumed bytes to the front when that frees enough room. */
static void chat_compact(ath_chat_t *c)
{
    size_t h = c->head;
    if (h == 0 || (h < c->len - h && h < 65536))
        return;
    memmove(c->b, c->b + h, c->len - h);
    c->len -= h;
    c->ls -= h;
    c->scan -= h;
    c->head = 0;
    c->hdr_tried = c->hdr_tried > h ? c->hdr_tried - h : 0;
    if (c->cnt.on) {
        c->cnt.hdr_end -= h;
        c->cnt.pstart -= h;
        if (c->cnt.line_end)
            c->cnt.line_end -= h;
    }
}

/* Room for `need` bytes in b: exactly (a size announced: a counted
 * payload, a read of n bytes) or by doubling (bytes as they come).
 * 0 or -1 (no memory). */
static int chat_room(ath_chat_t *c, size_t need, int exact)
{
    size_t cap = c->cap;
    char *nb;
    if (need <= cap)
        return 0;
    if (exact)
        cap = need;
    else
        while (cap < need)
            cap *= 2;
    nb = realloc(c->b, cap);
    if (nb == NULL)
        return -1;
    c->b = nb;
    c->cap = cap;
    return 0;
}

/* Gives a big buffer back once it is empty (a big payload is past). */
static void chat_shrink(ath_chat_t *c)
{
    char *nb;
    if (c->head != c->len || c->cap <= CHAT_SHRINK || c->cnt.on)
        return;
    if ((nb = malloc(CHAT_KEEP)) == NULL)
        return;
    free(c->b);
    c->b = nb;
    c->cap = CHAT_KEEP;
    c->len = c->head = c->ls = c->scan = 0;
}

char *ath_chat_space(ath_chat_t *c, size_t *room)
{
    chat_apply_cut(c);
    chat_shrink(c);
    chat_compact(c);
    if (c->cap - c->len < 4096 && chat_room(c, c->len + 4096, 0) != 0)
        return NULL;
    *room = c->cap - c->len;
    return c->b + c->len;
}

void ath_chat_commit(ath_chat_t *c, size_t n)
{
    c->len += n;
}

int ath_chat_feed(ath_chat_t *c, const char *data, size_t n)
{
    chat_apply_cut(c);
    chat_shrink(c);
    chat_compact(c);
    if (chat_room(c, c->len + n, 0) != 0)
        return -1;
    memcpy(c->b + c->len, data, n);
    c->len += n;
    return 0;
}

int ath_chat_wait(ath_chat_t *c, const ath_wait_t *w)
{
    if (c->w.mode != ATH_WAIT_NONE)
        return -1;
    chat_apply_cut(c);
    c->w = *w;
    c->due = c->outseen = c->answered = 0;
    c->raw = w->mode == ATH_WAIT_READ;
    if (c->raw && !w->some && w->nbytes > CHAT_EXACT)
        /* read(n): room for the n bytes at once */
        (void)chat_room(c, c->head + w->nbytes + COUNT_SLACK, 1);
    /* Revisit the backlog under the new wait's rules. */
    c->ls = c->scan = c->head;
    c->cnt.on = 0;
    return 0;
}

int ath_chat_waiting(const ath_chat_t *c)
{
    return c->w.mode != ATH_WAIT_NONE;
}

void ath_chat_cancel(ath_chat_t *c)
{
    memset(&c->w, 0, sizeof c->w);
    c->cnt.on = 0;
    c->due = 0;
}

size_t ath_chat_work(const ath_chat_t *c)
{
    return c->work;
}

int ath_chat_outcome_due(const ath_chat_t *c)
{
    return c->w.mode == ATH_WAIT_CMD && c->due;
}

int ath_chat_counting(const ath_chat_t *c, size_t *want, size_t *have)
{
    if (!c->cnt.on || c->cnt.ev.type == ATH_EV_BADCOUNT)
        return 0;
    *want = c->cnt.plen;
    *have = c->len > c->cnt.pstart ? c->len - c->cnt.pstart : 0;
    if (*have > *want)
        *have = *want;
    return 1;
}

size_t ath_chat_expecting(const ath_chat_t *c)
{
    size_t have;
    if (c->cnt.on) {
        if (c->cnt.ev.type == ATH_EV_BADCOUNT)
            return 0;
        have = c->len > c->cnt.pstart ? c->len - c->cnt.pstart : 0;
        return have < c->cnt.plen ? c->cnt.plen - have : 0;
    }
    if (c->w.mode == ATH_WAIT_READ && (!c->w.some || c->w.sure)) {
        have = ath_chat_pending(c);
        return have < c->w.nbytes ? c->w.nbytes - have : 0;
    }
    return 0;
}

void ath_chat_flush(ath_chat_t *c)
{
    chat_apply_cut(c);
    c->head = c->ls;
}

char *ath_chat_take(ath_chat_t *c, const char *data, size_t n, size_t front)
{
    size_t s, a, b, d, keep, cap = 4096;
    char *nb, *blk;
    /* Only bytes of the buffer that are consumed: before head, or the
     * claimed range a cut will remove. */
    if (c->cnt.on || data < c->b || n > c->len ||
        (size_t)(data - c->b) > c->len - n || front > 4096)
        return NULL;
    s = (size_t)(data - c->b);
    if (c->cut_b != 0 && s >= c->cut_a && s + n <= c->cut_b) {
        a = c->cut_a; /* what stays: [head, a) and [b, len) */
        b = c->cut_b;
    } else if (s + n <= c->head) {
        a = b = c->len;
    } else {
        return NULL;
    }
    keep = (a - c->head) + (c->len - b);
    while (cap < keep)
        cap *= 2;
    if ((nb = malloc(cap)) == NULL)
        return NULL;
    if (front + n + 1 > c->cap) {
        /* Room before the payload: a big block grows by remapping its
         * pages, not by copying them. */
        if ((blk = realloc(c->b, front + n + 1)) == NULL) {
            free(nb);
            return NULL;
        }
        c->b = blk;
        c->cap = front + n + 1;
    }
    memcpy(nb, c->b + c->head, a - c->head);
    memcpy(nb + (a - c->head), c->b + b, c->len - b);
    /* The payload to its place; the bytes before it are dead. */
    blk = c->b;
    memmove(blk + front, blk + s, n);
    d = b - a; /* every offset past the cut moves down by d, all by head */
    c->ls = c->ls >= b ? c->ls - d - c->head : (c->ls > a ? a : c->ls) - c->head;
    c->scan = c->scan >= b ? c->scan - d - c->head : (c->scan > a ? a : c->scan) - c->head;
    if (c->ls > keep)
        c->ls = keep;
    if (c->scan < c->ls)
        c->scan = c->ls;
    if (c->scan > keep)
        c->scan = keep;
    c->len = keep;
    c->head = 0;
    c->cut_a = c->cut_b = 0;
    c->hdr_tried = 0;
    c->b = nb;
    c->cap = cap;
    nb = realloc(blk, front + n + 1); /* give back what is not the payload */
    return nb ? nb : blk;
}

size_t ath_chat_pending(const ath_chat_t *c)
{
    return c->len - c->head - (c->cut_b - c->cut_a);
}

int ath_chat_urc_add(ath_chat_t *c, const ath_pat_t *p, int id)
{
    if (c->nurc == c->urccap) {
        int ncap = c->urccap ? 2 * c->urccap : 8;
        urc_t *nu = realloc(c->urc, (size_t)ncap * sizeof *nu);
        if (nu == NULL)
            return -1;
        c->urc = nu;
        c->urccap = ncap;
    }
    c->urc[c->nurc].p = *p;
    c->urc[c->nurc].id = id;
    c->nurc++;
    c->cnt.on = 0;
    if (c->w.mode == ATH_WAIT_NONE) {
        /* Lines already kept may be this URC's. */
        chat_apply_cut(c);
        c->ls = c->scan = c->head;
    }
    return 0;
}

void ath_chat_urc_remove(ath_chat_t *c, int id)
{
    int i;
    for (i = 0; i < c->nurc; i++) {
        if (c->urc[i].id == id) {
            memmove(&c->urc[i], &c->urc[i + 1],
                    (size_t)(c->nurc - i - 1) * sizeof *c->urc);
            c->nurc--;
            c->cnt.on = 0;
            return;
        }
    }
}

int ath_pat_match(const ath_pat_t *p, const char *s, size_t n, ath_match_t *m)
{
    const char *err;
    if (p->kind == ATH_PAT_LITERAL) {
        if (n < p->len || memcmp(s, p->text, p->len) != 0)
            return 0;
        m->start = 0;
        m->end = p->len;
        m->ncap = 0;
        return 1;
    }
    return ath_pat_find(s, n, p->text, p->len, 0, m, &err) == 1;
}

/* Reads the decimal byte count in capture count_cap into *v: 0, or why
 * it is no count (ATH_COUNT_*; *v holds what could be read of it). */
static int chat_count(const ath_pat_t *p, const char *line,
                      const ath_match_t *m, long long *v)
{
    const ath_cap_t *cap;
    const char *s;
    long long n = 0;
    ptrdiff_t i = 0, len;
    size_t max = p->max ? p->max : COUNT_MAX;
    *v = 0;
    if (p->count_cap < 1 || p->count_cap > m->ncap)
        return ATH_COUNT_NAN;
    cap = &m->cap[p->count_cap - 1];
    if (cap->len <= 0)
        return ATH_COUNT_NAN;
    s = line + cap->off;
    len = cap->len;
    if (s[0] == '-' || s[0] == '+')
        i = 1;
    if (i == len)
        return ATH_COUNT_NAN;
    for (; i < len; i++) {
        if (s[i] < '0' || s[i] > '9')
            return ATH_COUNT_NAN;
        if (n < 100000000000000000LL)
            n = n * 10 + (s[i] - '0');
    }
    *v = s[0] == '-' ? -n : n;
    if (s[0] == '-')
        return ATH_COUNT_NEGATIVE;
    if (len - (s[0] == '+') > 9)
        return ATH_COUNT_DIGITS;
    return (size_t)n > max ? ATH_COUNT_MAX : 0;
}

/* Sets up c->cnt to report a counted header whose count is wrong; the
 * header's line [ls, line_end) is what it consumes. */
static void chat_bad_count(ath_chat_t *c, const ath_pat_t *p, int why,
                           long long n, size_t line_end)
{
    c->cnt.ev.type = ATH_EV_BADCOUNT;
    c->cnt.ev.why = why;
    c->cnt.ev.count = n;
    c->cnt.ev.max = p->max ? p->max : COUNT_MAX;
    c->cnt.line_end = line_end;
}

/*
 * Tries one counted pattern on the line at ls, which ends at t (t == len
 * when no line end has arrived). On a match whose payload position is
 * known, fills c->cnt and returns 1; returns 0 for no match and -1 when
 * the match is there but more bytes are needed to place the payload.
 */
static int chat_try_count(ath_chat_t *c, const ath_pat_t *p, size_t t, int cut,
                          int type, int index)
{
    ath_match_t m;
    const char *line = c->b + c->ls;
    long long n;
    size_t end, ps = 0;
    int why;
    if (p == NULL || p->count_cap < 1)
        return 0;
    c->work += t - c->ls;
    if (!ath_pat_match(p, line, t - c->ls, &m))
        return 0;
    end = c->ls + m.end;
    /* [ls, t) is the first bytes of a longer line (cut): a header that
     * reaches its end is none, as when the line arrives byte by byte and
     * is cut into pieces. */
    if (cut && end >= t)
        return 0;
    if (end == c->len)
        return -1; /* more digits, or the line end, may come */
    why = chat_count(p, line, &m, &n);
    /* A bad count on a partial line is reported once max_line bytes are
     * in, while headers are still looked for (max_line <= HEADER_MAX);
     * on a longer line cut short here, the same, else it is none. */
    if (why != 0 && cut && t - c->ls < c->max_line)
        return 0;
    if (why != 0) {
        if (t == c->len && t - c->ls < c->max_line)
            return -1; /* reported with its whole line */
    } else if (end < t) {
        ps = end; /* inline payload */
    } else if (c->b[t] == '\r') {
        if (t + 1 == c->len)
            return -1;
        ps = t + 1 + (c->b[t + 1] == '\n');
    } else {
        ps = t + 1;
    }
    c->cnt.on = 1;
    memset(&c->cnt.ev, 0, sizeof c->cnt.ev);
    c->cnt.ev.type = type;
    c->cnt.ev.kind = type;
    c->cnt.ev.index = index;
    c->cnt.ev.matched = 1;
    c->cnt.ev.m = m;
    c->cnt.hdr_end = end;
    c->cnt.trailer = p->trailer ? p->trailer : "\r\n";
    if (n == 0 && end >= t)
        c->cnt.trailer = ""; /* nothing read after the line: no check */
    c->cnt.pstart = ps;
    c->cnt.plen = why ? 0 : (size_t)n;
    c->cnt.line_end = 0;
    if (why != 0)
        chat_bad_count(c, p, why, n, t);
    else if (c->cnt.plen > CHAT_EXACT)
        /* the payload's room at once, sized from its count: no doubling
         * and copying as it arrives (no memory: it grows as it comes) */
        (void)chat_room(c, ps + c->cnt.plen + COUNT_SLACK, 1);
    return 1;
}

/* Looks for a counted match at ls under the current wait, then the URCs.
 * Returns as chat_try_count. */
static int chat_find_count(ath_chat_t *c, size_t t, int cut)
{
    const ath_wait_t *w = &c->w;
    int i, r;
    if (w->mode == ATH_WAIT_CMD) {
        for (i = 0; i < w->nouts; i++)
            if ((r = chat_try_count(c, &w->outs[i], t, cut, ATH_EV_OUTCOME, i)) != 0)
                return r;
        if (!c->due &&
            (r = chat_try_count(c, w->reply, t, cut, ATH_EV_REPLY, 0)) != 0)
            return r;
    } else if (w->mode == ATH_WAIT_EXPECT) {
        for (i = 0; i < w->nalts; i++)
            if ((r = chat_try_count(c, &w->alts[i], t, cut, ATH_EV_MATCH, i)) != 0)
                return r;
    } else if (w->mode == ATH_WAIT_READ) {
        return 0;
    }
    for (i = 0; i < c->nurc; i++)
        if ((r = chat_try_count(c, &c->urc[i].p, t, cut, ATH_EV_URC,
                                c->urc[i].id)) != 0)
            return r;
    return 0;
}

/* Marks [from, to) as consumed: under a wait, or by a URC with no wait. */
static void chat_consume(ath_chat_t *c, size_t from, size_t to)
{
    if (c->w.mode != ATH_WAIT_NONE || c->head == from) {
        c->head = to;
    } else {
        c->cut_a = from;
        c->cut_b = to;
    }
    c->ls = c->scan = to;
}

static void chat_end_wait(ath_chat_t *c)
{
    memset(&c->w, 0, sizeof c->w);
    c->due = 0;
}

static int chat_first(const ath_pat_t *ps, int n, const char *s, size_t len,
                      ath_match_t *m)
{
    int i;
    for (i = 0; i < n; i++)
        if (ath_pat_match(&ps[i], s, len, m))
            return i;
    return -1;
}

/* Whether a line is text: no control characters, no bytes that never
 * occur in UTF-8 (line noise is mostly 0x00 and 0xff), not only blanks. */
static int chat_printable(const char *s, size_t n)
{
    size_t i;
    int blank = 1;
    for (i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)s[i];
        if ((ch < 0x20 && ch != '\t') || ch == 0x7f || ch == 0xc0 ||
            ch == 0xc1 || ch >= 0xf5)
            return 0;
        if (ch != ' ' && ch != '\t')
            blank = 0;
    }
    return !blank;
}

/* Classifies a final result code; -1 if the line is none. */
static int chat_final(const ath_wait_t *w, const char *s, size_t n,
                      ath_match_t *m)
{
    int i;
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if ((i = chat_first(w->alts, w->nalts, s, n, m)) >= 0)
        return ATH_FINAL_ALT + i;
    if (n == 2 && memcmp(s, "OK", 2) == 0)
        return ATH_FINAL_OK;
    if (n == 5 && memcmp(s, "ERROR", 5) == 0)
        return ATH_FINAL_ERROR;
    if (n >= 11 && memcmp(s, "+CME ERROR:", 11) == 0)
        return ATH_FINAL_CME;
    if (n >= 11 && memcmp(s, "+CMS ERROR:", 11) == 0)
        return ATH_FINAL_CMS;
    return -1;
}

static int chat_urc(const ath_chat_t *c, const char *s, size_t n,
                    ath_match_t *m)
{
    int i;
    for (i = 0; i < c->nurc; i++)
        if (c->urc[i].p.count_cap < 1 && ath_pat_match(&c->urc[i].p, s, n, m))
            return i;
    return -1;
}

/* Fills ev as an event of type and index for the line [from, next),
 * consumed; ends the wait when end. Returns 1. */
static int chat_take(ath_chat_t *c, ath_chat_event_t *ev, int type, int index,
                     size_t from, size_t next, int end)
{
    ev->type = type;
    ev->index = index;
    chat_consume(c, from, next);
    if (end)
        chat_end_wait(c);
    return 1;
}

/* Whether a line is the echo of a command other than the one sent: it
 * starts with "AT" (either case) as every command line does. */
static int chat_other_echo(const ath_wait_t *w, const char *s, size_t n)
{
    if (!w->echo_check || w->echo == NULL || n < 2)
        return 0;
    if ((s[0] != 'A' && s[0] != 'a') || (s[1] != 'T' && s[1] != 't'))
        return 0;
    while (n > w->echolen && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--; /* trailing blanks are no difference */
    return !(n == w->echolen && memcmp(s, w->echo, n) == 0);
}

/* An outcome, success or failure, of the command in flight: before its
 * final result the wait goes on (success) or ends (failure), after it
 * the wait ends either way. */
static void chat_outcome(ath_chat_t *c, ath_chat_event_t *ev)
{
    if (ev->type == ATH_EV_OUTCOME && !c->due) {
        c->outseen = 1;
        ev->more = 1;
        return;
    }
    chat_end_wait(c);
}

/*
 * Classifies the complete line [ls, t) under a CMD wait. Before the final
 * result: the echo, aborts, finals, outcomes, failure outcomes, the
 * prompt, replies, URCs, any other text as a reply. After an OK whose
 * outcome is due: aborts, outcomes, failure outcomes, URCs; the rest is
 * passed over as in an expect.
 */
static int chat_cmd_line(ath_chat_t *c, size_t t, size_t next,
                         ath_chat_event_t *ev)
{
    ath_wait_t *w = &c->w;
    const char *s = c->b + c->ls;
    size_t n = t - c->ls, from = c->ls;
    int i;

    if (!c->due && w->echo != NULL && n == w->echolen &&
        memcmp(s, w->echo, n) == 0) {
        chat_consume(c, from, next);
        return 0;
    }
    if (!c->due && !c->answered && chat_other_echo(w, s, n)) {
        ev->matched = 0;
        return chat_take(c, ev, ATH_EV_ECHO, 0, from, next, 1);
    }
    if ((i = chat_first(w->aborts, w->naborts, s, n, &ev->m)) >= 0)
        return chat_take(c, ev, ATH_EV_ABORT, i, from, next, 1);
    if (!c->due && (i = chat_final(w, s, n, &ev->m)) >= 0) {
        ev->type = ATH_EV_FINAL;
        ev->index = i;
        ev->matched = i >= ATH_FINAL_ALT;
        chat_consume(c, from, next);
        if ((i == ATH_FINAL_OK || i >= ATH_FINAL_ALT) && w->nouts > 0 &&
            !c->outseen) {
            c->due = 1;
            w->nprompts = 0;
            ev->more = 1;
        } else {
            chat_end_wait(c);
        }
        return 1;
    }
    if ((i = chat_first(w->outs, w->nouts, s, n, &ev->m)) >= 0)
        ev->type = ATH_EV_OUTCOME;
    else if ((i = chat_first(w->ofails, w->nofails, s, n, &ev->m)) >= 0)
        ev->type = ATH_EV_OUTFAIL;
    if (i >= 0) {
        ev->index = i;
        chat_consume(c, from, next);
        chat_outcome(c, ev);
        return 1;
    }
    if (!c->due) {
        if ((i = chat_first(w->prompts, w->nprompts, s, n, &ev->m)) >= 0) {
            ev->type = ATH_EV_PROMPT;
            ev->index = i;
            ev->len = ev->m.end; /* as when it comes without a line end */
            chat_consume(c, from, next);
            w->nprompts = 0;
            c->answered = 1;
            return 1;
        }
        if (w->reply != NULL && ath_pat_match(w->reply, s, n, &ev->m)) {
            c->answered = 1;
            return chat_take(c, ev, ATH_EV_REPLY, 0, from, next, 0);
        }
    }
    if ((i = chat_urc(c, s, n, &ev->m)) >= 0)
        return chat_take(c, ev, ATH_EV_URC, c->urc[i].id, from, next, 0);
    ev->matched = 0;
    chat_consume(c, from, next);
    if (c->due || !chat_printable(s, n))
        return 0; /* noise between lines, or text while the outcome is due */
    ev->type = ATH_EV_REPLY;
    c->answered = 1;
    return 1;
}

/* Clears an event for a line: every field but the captures past m.ncap
 * (0), which nothing reads; a memset of all of them is most of the cost
 * of a short line. */
static void chat_clear(ath_chat_event_t *ev)
{
    ev->type = ev->index = ev->matched = 0;
    ev->line = NULL;
    ev->len = 0;
    ev->m.start = ev->m.end = 0;
    ev->m.ncap = 0;
    ev->payload = NULL;
    ev->plen = 0;
    ev->more = ev->kind = ev->why = 0;
    ev->count = 0;
    ev->max = 0;
}

/*
 * Classifies the complete line [ls, t), whose terminator ends at next.
 * Returns 1 with *ev filled, or 0 when the line produced no event.
 */
static int chat_line(ath_chat_t *c, size_t t, size_t next, ath_chat_event_t *ev)
{
    ath_wait_t *w = &c->w;
    const char *s = c->b + c->ls;
    size_t n = t - c->ls, from = c->ls;
    int i;

    chat_clear(ev);
    ev->line = s;
    ev->len = n;
    ev->matched = 1;
    c->work += n;
    if (w->mode == ATH_WAIT_CMD)
        return chat_cmd_line(c, t, next, ev);
    if (w->mode == ATH_WAIT_EXPECT) {
        if ((i = chat_first(w->aborts, w->naborts, s, n, &ev->m)) >= 0)
            return chat_take(c, ev, ATH_EV_ABORT, i, from, next, 1);
        if ((i = chat_first(w->alts, w->nalts, s, n, &ev->m)) >= 0)
            return chat_take(c, ev, ATH_EV_MATCH, i, from, next, 1);
    }
    if ((i = chat_first(w->prompts, w->nprompts, s, n, &ev->m)) >= 0) {
        ev->len = ev->m.end; /* as when it comes without a line end */
        return chat_take(c, ev, ATH_EV_PROMPT, i, from, next, 1);
    }
    if ((i = chat_urc(c, s, n, &ev->m)) >= 0)
        return chat_take(c, ev, ATH_EV_URC, c->urc[i].id, from, next, 0);
    ev->matched = 0;
    switch (w->mode) {
    case ATH_WAIT_LINE:
        ev->type = ATH_EV_LINE;
        chat_consume(c, from, next);
        chat_end_wait(c);
        return 1;
    case ATH_WAIT_EXPECT: chat_consume(c, from, next); return 0;
    default:
        c->ls = c->scan = next; /* kept in the backlog */
        return 0;
    }
}

/* Ends the wait a counted event belongs to, as its line would. */
static void chat_count_done(ath_chat_t *c, ath_chat_event_t *ev)
{
    if (ev->type == ATH_EV_OUTCOME)
        chat_outcome(c, ev);
    else if (ev->type == ATH_EV_MATCH ||
             (ev->type == ATH_EV_BADCOUNT && ev->kind != ATH_EV_URC))
        chat_end_wait(c);
    else if (ev->type == ATH_EV_REPLY)
        c->answered = 1;
}

/* Emits the counted match in c->cnt if its payload is complete and
 * followed by its trailer; a wrong count or trailer is reported with the
 * header's line as ATH_EV_BADCOUNT, and the bytes after that line are
 * read as lines again. */
static int chat_emit_count(ath_chat_t *c, ath_chat_event_t *ev)
{
    pending_t *p = &c->cnt;
    size_t from = c->ls, end = p->pstart + p->plen, cut;
    int check = p->trailer[0] != '\0';
    if (p->ev.type != ATH_EV_BADCOUNT) {
        if (c->len < end + (size_t)check)
            return 0;
        if (check && memchr(p->trailer, c->b[end], strlen(p->trailer)) == NULL) {
            /* The count disagrees with what came: report the line, once
             * all of it is in. */
            /* The line ends at its terminator or after max_line bytes,
             * whichever is first, however the bytes were cut into reads:
             * what is reported is the same for every chunking. */
            size_t limit = from + c->max_line;
            if (limit > c->len)
                limit = c->len;
            cut = p->line_end ? p->line_end : p->hdr_end;
            for (; cut < limit; cut++)
                if (c->b[cut] == '\r' || c->b[cut] == '\n')
                    break;
            if (cut == c->len && cut - from < c->max_line) {
                p->line_end = cut; /* each byte is looked at once */
                return 0;
            }
            p->ev.kind = p->ev.type;
            p->ev.type = ATH_EV_BADCOUNT;
            p->ev.why = ATH_COUNT_TRAILER;
            p->ev.count = (long long)p->plen;
            p->line_end = cut;
        }
    }
    *ev = p->ev;
    ev->line = c->b + from;
    p->on = 0;
    if (ev->type == ATH_EV_BADCOUNT) {
        ev->len = p->line_end - from;
        chat_consume(c, from, p->line_end);
    } else {
        ev->len = p->hdr_end - from;
        ev->payload = c->b + p->pstart;
        ev->plen = p->plen;
        chat_consume(c, from, end);
    }
    chat_count_done(c, ev);
    return 1;
}

/* Drops the oldest backlog lines while the backlog is over its bound. */
static int chat_trim_backlog(ath_chat_t *c, ath_chat_event_t *ev)
{
    size_t over, cut;
    if (c->w.mode != ATH_WAIT_NONE || c->ls - c->head <= c->max_backlog)
        return 0;
    over = (c->ls - c->head) - c->max_backlog;
    cut = c->head + over;
    while (cut < c->ls && c->b[cut] != '\n' && c->b[cut] != '\r')
        cut++;
    memset(ev, 0, sizeof *ev);
    ev->type = ATH_EV_DROP;
    ev->line = c->b + c->head;
    ev->len = cut - c->head;
    c->head = cut;
    return 1;
}

/* Serves a raw read from head. */
static int chat_read(ath_chat_t *c, ath_chat_event_t *ev)
{
    size_t n = c->w.nbytes, avail = c->len - c->head;
    if (c->w.some && avail > 0 && avail < n)
        n = avail;
    if (avail < n || (c->w.some && avail == 0))
        return 0;
    memset(ev, 0, sizeof *ev);
    ev->type = ATH_EV_READ;
    ev->line = c->b + c->head;
    ev->len = n;
    c->head += n;
    if (c->ls < c->head)
        c->ls = c->scan = c->head;
    chat_end_wait(c);
    return 1;
}

/* Tries the prompts on the unterminated line [ls, len). */
static int chat_prompt(ath_chat_t *c, ath_chat_event_t *ev)
{
    ath_wait_t *w = &c->w;
    size_t n = c->len - c->ls, end;
    int i;
    if (w->nprompts == 0 || n == 0 || n > PROMPT_MAX)
        return 0;
    memset(ev, 0, sizeof *ev);
    if ((i = chat_first(w->prompts, w->nprompts, c->b + c->ls, n, &ev->m)) < 0)
        return 0;
    ev->type = ATH_EV_PROMPT;
    ev->index = i;
    ev->matched = 1;
    ev->line = c->b + c->ls;
    ev->len = ev->m.end;
    end = c->ls + ev->m.end;
    while (end < c->len && c->b[end] == ' ')
        end++;
    chat_consume(c, c->ls, end);
    if (w->mode == ATH_WAIT_CMD) {
        w->nprompts = 0;
        c->answered = 1;
    } else {
        chat_end_wait(c);
    }
    return 1;
}

int ath_chat_next(ath_chat_t *c, ath_chat_event_t *ev)
{
    chat_apply_cut(c);
    for (;;) {
        size_t t, next, hb;
        int r;
        if (c->w.mode == ATH_WAIT_READ)
            return chat_read(c, ev);
        if (c->cnt.on)
            return chat_emit_count(c, ev);
        if (chat_trim_backlog(c, ev))
            return 1;
        /* Skip the line ends that separate lines. */
        while (c->ls < c->len && (c->b[c->ls] == '\r' || c->b[c->ls] == '\n')) {
            if (c->head == c->ls && (c->w.mode != ATH_WAIT_NONE || !c->raw))
                c->head++;
            c->ls++;
        }
        if (c->scan < c->ls)
            c->scan = c->ls;
        if (c->ls == c->len)
            return 0;
        for (t = c->scan; t < c->len; t++)
            if (c->b[t] == '\n' || c->b[t] == '\r')
                break;
        c->scan = t;
        /* Counted patterns: on a complete line of at most max_line once;
         * on an unterminated line while it may be a header still
         * arriving (at most hb bytes, each read looks at them again);
         * on a longer line, arrived whole or not, once on its first hb
         * bytes, as a header that arrived byte by byte was seen. The
         * same bytes give the same events however they are cut. */
        hb = HEADER_MAX < c->max_line ? HEADER_MAX : c->max_line;
        if (t < c->len && t - c->ls <= c->max_line)
            r = chat_find_count(c, t, 0);
        else if (t == c->len && c->len - c->ls <= hb)
            r = chat_find_count(c, t, 0);
        else if (c->hdr_tried != c->ls + 1) {
            c->hdr_tried = c->ls + 1;
            r = chat_find_count(c, c->ls + hb, 1);
        } else
            r = 0;
        if (r > 0)
            return chat_emit_count(c, ev);
        if (r < 0)
            return 0;
        if (t == c->len) {
            if (chat_prompt(c, ev))
                return 1;
            if (c->len - c->ls < c->max_line)
                return 0;
            t = next = c->ls + c->max_line; /* an overlong line, in pieces */
        } else if (t - c->ls > c->max_line) {
            t = next = c->ls + c->max_line; /* the same, arrived whole */
        } else {
            next = t + 1;
        }
        if (chat_line(c, t, next, ev))
            return 1;
    }
}
