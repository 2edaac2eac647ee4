/*
 * chat_split.c: the split-equivalence property of the chat engine. The
 * same bytes fed whole and fed in the pieces the input's cut list gives
 * produce the same events, byte for byte, with the URC handlers of the
 * shipped profiles on and either no wait or a LINE / EXPECT wait started
 * again after each line it takes (a module read in a loop).
 *
 * The split run also takes every payload out of the engine as the host
 * does with big ones (ath_chat_take): the block must hold the payload,
 * and nothing after it may change.
 *
 * Input: one byte of setup (which handlers, which wait), one byte n, n
 * cut lengths, then the stream.
 */
#include "chat_common.h"

/* Appends an event's every field (pointers as the bytes they point at). */
static void put_event(fz_buf_t *b, const ath_chat_event_t *ev)
{
    int k;
    long long v[8] = {ev->type, ev->index, ev->matched, (long long)ev->len,
                      ev->more, ev->kind, ev->why, ev->count};
    fz_event_check(ev);
    fz_put(b, v, sizeof v);
    fz_put(b, ev->line, ev->len);
    if (ev->matched) {
        fz_put(b, &ev->m.start, sizeof ev->m.start);
        fz_put(b, &ev->m.end, sizeof ev->m.end);
        for (k = 0; k < ev->m.ncap; k++)
            fz_put(b, &ev->m.cap[k], sizeof ev->m.cap[k]);
    }
    if (ev->payload) {
        fz_put(b, &ev->plen, sizeof ev->plen);
        fz_put(b, ev->payload, ev->plen);
    }
    fz_put(b, "|", 1);
}

static const ath_pat_t expect_alts[] = {LIT("OK"), LUAP("^%+CSQ: (%d+)")};

static void rearm(ath_chat_t *c, unsigned setup)
{
    ath_wait_t w;
    memset(&w, 0, sizeof w);
    switch ((setup >> 4) % 3) {
    case 1:
        w.mode = ATH_WAIT_LINE;
        break;
    case 2:
        w.mode = ATH_WAIT_EXPECT;
        w.alts = expect_alts;
        w.nalts = 2;
        break;
    default:
        return;
    }
    if (!ath_chat_waiting(c))
        ath_chat_wait(c, &w);
}

static void run(const char *s, size_t n, const uint8_t *cuts, size_t ncuts,
                unsigned setup, fz_buf_t *out)
{
    ath_chat_t *c = ath_chat_new(256, 4096);
    ath_chat_event_t ev;
    size_t at = 0, i = 0;
    int k;
    FZ_CHECK(c != NULL, "out of memory");
    for (k = 0; k < FZ_NURCS; k++)
        if ((setup >> (k % 4)) & 1 || k >= 4)
            ath_chat_urc_add(c, &fz_urcs[k], k);
    rearm(c, setup);
    while (at < n || i == 0) {
        size_t step = i < ncuts ? 1 + cuts[i] : n - at;
        if (step > n - at)
            step = n - at;
        ath_chat_feed(c, s + at, step);
        at += step;
        i++;
        while (ath_chat_next(c, &ev)) {
            put_event(out, &ev);
            if (cuts != NULL && ev.payload != NULL)
                fz_take_out(c, ev.payload, ev.plen, (setup & 7) * 9);
            rearm(c, setup);
        }
        if (at == n)
            break;
    }
    ath_chat_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in_t in = {data, size};
    unsigned setup = fz_byte(&in);
    size_t ncuts = fz_byte(&in), n;
    const uint8_t *cuts = (const uint8_t *)fz_take(&in, ncuts, &ncuts);
    const char *s;
    fz_buf_t whole = {0}, split = {0};
    s = fz_take(&in, in.n, &n);
    run(s, n, NULL, 0, setup, &whole);
    run(s, n, cuts, ncuts, setup, &split);
    if (whole.len != split.len ||
        (whole.len > 0 && memcmp(whole.b, split.b, whole.len) != 0)) {
        size_t d = 0;
        while (d < whole.len && d < split.len && whole.b[d] == split.b[d])
            d++;
        FZ_CHECK(0, "events differ at byte %zu of %zu / %zu", d, whole.len,
                 split.len);
    }
    free(whole.b);
    free(split.b);
    return 0;
}
