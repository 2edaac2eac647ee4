/*
 * redact.c: secrets masked in a byte stream (see redact.h).
 *
 * The automaton is a trie of the patterns with failure links. The root's
 * transitions are a table, so a byte that starts no pattern costs one
 * lookup, and a stream at the root with nothing held copies such bytes
 * in runs; other states keep their children in a list (the tries of a
 * few secrets hardly branch below the root). A step follows failure links
 * at most as often as it went deeper before: linear in the input.
 */
#include "redact.h"

#include <stdlib.h>
#include <string.h>

struct ath_ac {
    unsigned long gen;
    size_t nstates, longest;
    int root[256];     /* the root's child for each byte, 0: none */
    unsigned char *ch; /* the byte that leads into each state */
    int *first, *next; /* children of a state, as a list */
    int *fail;         /* the longest proper suffix that is a trie state */
    int *depth;
    int *out;          /* the longest pattern ending in the state, 0 none */
};

static unsigned long ac_generation;

int ath_buf_add(ath_buf_t *b, const char *s, size_t n)
{
    if (n == 0)
        return 0;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        char *nb;
        while (cap < b->len + n)
            cap *= 2;
        if ((nb = realloc(b->b, cap)) == NULL)
            return -1;
        b->b = nb;
        b->cap = cap;
    }
    memcpy(b->b + b->len, s, n);
    b->len += n;
    return 0;
}

static int ac_child(const ath_ac_t *ac, int n, unsigned char c)
{
    int m;
    if (n == 0)
        return ac->root[c];
    for (m = ac->first[n]; m; m = ac->next[m])
        if (ac->ch[m] == c)
            return m;
    return 0;
}

static int ac_step(const ath_ac_t *ac, int n, unsigned char c)
{
    for (;;) {
        int m = ac_child(ac, n, c);
        if (m || n == 0)
            return m;
        n = ac->fail[n];
    }
}

ath_ac_t *ath_ac_new(const char *const *pats, size_t npats)
{
    ath_ac_t *ac = calloc(1, sizeof *ac);
    size_t i, total = 1, head = 0, tail = 0;
    int *queue = NULL;
    if (ac == NULL)
        return NULL;
    for (i = 0; i < npats; i++)
        total += strlen(pats[i]);
    ac->ch = malloc(total);
    ac->first = calloc(total, sizeof *ac->first);
    ac->next = calloc(total, sizeof *ac->next);
    ac->fail = calloc(total, sizeof *ac->fail);
    ac->depth = calloc(total, sizeof *ac->depth);
    ac->out = calloc(total, sizeof *ac->out);
    queue = malloc(total * sizeof *queue);
    if (!ac->ch || !ac->first || !ac->next || !ac->fail || !ac->depth ||
        !ac->out || !queue) {
        free(queue);
        ath_ac_free(ac);
        return NULL;
    }
    ac->nstates = 1;
    for (i = 0; i < npats; i++) {
        const unsigned char *p = (const unsigned char *)pats[i];
        size_t k, len = strlen(pats[i]);
        int n = 0;
        for (k = 0; k < len; k++) {
            int m = ac_child(ac, n, p[k]);
            if (m == 0) {
                m = (int)ac->nstates++;
                ac->ch[m] = p[k];
                ac->depth[m] = ac->depth[n] + 1;
                if (n == 0) {
                    ac->root[p[k]] = m;
                } else {
                    ac->next[m] = ac->first[n];
                    ac->first[n] = m;
                }
            }
            n = m;
        }
        if (len > 0 && (size_t)ac->out[n] < len)
            ac->out[n] = (int)len;
        if (len > ac->longest)
            ac->longest = len;
    }
    /* Failure links breadth first: a state's link is shallower, so it is
     * complete when the state is reached. */
    for (i = 0; i < 256; i++)
        if (ac->root[i])
            queue[tail++] = ac->root[i];
    while (head < tail) {
        int u = queue[head++], v;
        for (v = ac->first[u]; v; v = ac->next[v]) {
            int f = ac_step(ac, ac->fail[u], ac->ch[v]);
            ac->fail[v] = f;
            if (ac->out[f] > ac->out[v])
                ac->out[v] = ac->out[f];
            queue[tail++] = v;
        }
    }
    free(queue);
    ac->gen = ++ac_generation;
    return ac;
}

void ath_ac_free(ath_ac_t *ac)
{
    if (ac == NULL)
        return;
    free(ac->ch);
    free(ac->first);
    free(ac->next);
    free(ac->fail);
    free(ac->depth);
    free(ac->out);
    free(ac);
}

size_t ath_ac_states(const ath_ac_t *ac)
{
    return ac ? ac->nstates : 0;
}

size_t ath_ac_longest(const ath_ac_t *ac)
{
    return ac ? ac->longest : 0;
}

/* ---- streams ------------------------------------------------------------ */

void ath_rs_init(ath_rs_t *rs)
{
    memset(rs, 0, sizeof *rs);
}

void ath_rs_free(ath_rs_t *rs)
{
    free(rs->buf);
    free(rs->mask);
    ath_rs_init(rs);
}

size_t ath_rs_held(const ath_rs_t *rs)
{
    return rs->len;
}

/* Room for one more held byte. */
static int rs_reserve(ath_rs_t *rs)
{
    if (rs->start + rs->len < rs->cap)
        return 0;
    if (rs->start > 0) {
        memmove(rs->buf, rs->buf + rs->start, rs->len);
        memmove(rs->mask, rs->mask + rs->start, rs->len);
        rs->start = 0;
    }
    if (rs->len == rs->cap) {
        size_t cap = rs->cap ? 2 * rs->cap : 64;
        char *nb = realloc(rs->buf, cap);
        unsigned char *nm;
        if (nb == NULL)
            return -1;
        rs->buf = nb;
        if ((nm = realloc(rs->mask, cap)) == NULL)
            return -1;
        rs->mask = nm;
        rs->cap = cap;
    }
    return 0;
}

/* Writes held bytes [from, from + n) (offsets into buf): runs of secret
 * bytes as one ***, or all of them as *** with all set. */
static int rs_write(const ath_rs_t *rs, size_t from, size_t n, int all,
                    int *star, ath_buf_t *out)
{
    size_t i = from, end = from + n, j;
    while (i < end) {
        if (all || rs->mask[i]) {
            if (!*star && ath_buf_add(out, "***", 3) < 0)
                return -1;
            *star = 1;
            i++;
            continue;
        }
        for (j = i; j < end && !rs->mask[j]; j++)
            ;
        if (ath_buf_add(out, rs->buf + i, j - i) < 0)
            return -1;
        *star = 0;
        i = j;
    }
    return 0;
}

/* Lets the first n held bytes go to out. */
static int rs_emit(ath_rs_t *rs, size_t n, ath_buf_t *out)
{
    if (rs_write(rs, rs->start, n, 0, &rs->star, out) < 0)
        return -1;
    rs->start += n;
    rs->len -= n;
    if (rs->len == 0)
        rs->start = 0;
    return 0;
}

/* Holds byte c (secret already if known), steps, masks what a match
 * covers, and lets go what can no longer be part of one. */
static int rs_byte(ath_rs_t *rs, const ath_ac_t *ac, char c, int known,
                   ath_buf_t *out)
{
    size_t k, L;
    if (rs_reserve(rs) < 0)
        return -1;
    k = rs->start + rs->len;
    rs->buf[k] = c;
    rs->mask[k] = (unsigned char)known;
    rs->len++;
    rs->pos++;
    rs->node = ac_step(ac, rs->node, (unsigned char)c);
    rs->depth = (size_t)ac->depth[rs->node];
    L = (size_t)ac->out[rs->node];
    if (L > rs->len)
        L = rs->len; /* the rest went out already (ath_rs_flush) */
    while (L > 0)
        rs->mask[k + 1 - L--] = 1;
    /* What no match can start in goes; so do secret bytes in front of
     * the rest (a later match only masks more). */
    L = rs->len > rs->depth ? rs->len - rs->depth : 0;
    while (L < rs->len && rs->mask[rs->start + L])
        L++;
    return L > 0 ? rs_emit(rs, L, out) : 0;
}

/* Reads the held bytes again with a new automaton (more secrets). */
static int rs_resync(ath_rs_t *rs, const ath_ac_t *ac, ath_buf_t *out)
{
    size_t n = rs->len, i;
    ath_rs_t fresh;
    int r = 0;
    if (n == 0) { /* nothing held: only the state starts again */
        rs->gen = ac->gen;
        rs->node = 0;
        rs->depth = 0;
        return 0;
    }
    ath_rs_init(&fresh);
    fresh.gen = ac->gen;
    fresh.pos = rs->pos - n;
    fresh.star = rs->star;
    for (i = 0; i < n && r == 0; i++)
        r = rs_byte(&fresh, ac, rs->buf[rs->start + i],
                    rs->mask[rs->start + i], out);
    ath_rs_free(rs);
    *rs = fresh;
    return r;
}

int ath_rs_feed(ath_rs_t *rs, const ath_ac_t *ac, const char *s, size_t n,
                ath_buf_t *out)
{
    size_t i = 0, j;
    if (rs->gen != ac->gen && rs_resync(rs, ac, out) < 0)
        goto oom;
    while (i < n) {
        if (rs->node == 0 && rs->len == 0) {
            /* nothing held: copy the bytes that start no secret */
            for (j = i; j < n && ac->root[(unsigned char)s[j]] == 0; j++)
                ;
            if (j > i) {
                if (ath_buf_add(out, s + i, j - i) < 0)
                    goto oom;
                rs->star = 0;
                rs->pos += j - i;
                i = j;
                continue;
            }
        }
        if (rs_byte(rs, ac, s[i++], 0, out) < 0)
            goto oom;
    }
    return 0;
oom:
    /* Never in clear: what could not be looked at is one ***. */
    if (!rs->star)
        (void)ath_buf_add(out, "***", 3);
    rs->star = 1;
    rs->start = rs->len = 0;
    rs->node = 0;
    rs->depth = 0;
    return -1;
}

int ath_rs_peek(const ath_rs_t *rs, ath_buf_t *out, int partial)
{
    int star = rs->star;
    return rs_write(rs, rs->start, rs->len,
                    partial && rs->depth >= ATH_RS_PARTIAL_MIN, &star, out);
}

int ath_rs_flush(ath_rs_t *rs, ath_buf_t *out, int partial)
{
    int r = rs_write(rs, rs->start, rs->len,
                     partial && rs->depth >= ATH_RS_PARTIAL_MIN, &rs->star,
                     out);
    rs->start = rs->len = 0;
    return r;
}

char *ath_ac_mask(const ath_ac_t *ac, const char *s, size_t n, size_t *outn)
{
    ath_rs_t rs;
    ath_buf_t out = {NULL, 0, 0};
    int r;
    ath_rs_init(&rs);
    rs.gen = ac->gen;
    r = ath_rs_feed(&rs, ac, s, n, &out);
    if (r == 0)
        r = ath_rs_flush(&rs, &out, 0);
    ath_rs_free(&rs);
    if (r < 0 || ath_buf_add(&out, "", 1) < 0) {
        free(out.b);
        return NULL;
    }
    if (outn)
        *outn = out.len - 1;
    return out.b;
}
