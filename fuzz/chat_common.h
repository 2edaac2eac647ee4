/*
 * chat_common.h: the patterns the chat-engine harnesses register (the
 * shapes the shipped profiles use: plain and counted URCs, inline and
 * after-the-line payloads, trailers) and an event check shared by both.
 */
#ifndef ATH_FUZZ_CHAT_COMMON_H
#define ATH_FUZZ_CHAT_COMMON_H

#include <string.h>

#include "chat.h"
#include "fuzz.h"

#define LIT(s) {ATH_PAT_LITERAL, s, sizeof(s) - 1, 0, 0, NULL}
#define LUAP(s) {ATH_PAT_LUA, s, sizeof(s) - 1, 0, 0, NULL}
#define COUNTED(s, cap, max, tr) {ATH_PAT_LUA, s, sizeof(s) - 1, cap, max, tr}

/* The largest count a harness pattern accepts: payloads stay small. */
#define FZ_COUNT_MAX 600

static const ath_pat_t fz_urcs[] = {
    COUNTED("^%+MSUB: \"([^\"]*)\",(%-?%d+) byte,", 2, FZ_COUNT_MAX, NULL),
    COUNTED("^%+HTTPREAD: (%-?%d+)$", 1, FZ_COUNT_MAX, NULL),
    COUNTED("^%+QIRD: (%d+)", 1, 40, ""),
    COUNTED("^%+RECV: (%d+),(%d+)$", 2, FZ_COUNT_MAX, "\r"),
    LUAP("^%+CGREG: (%d),?(%d*)"),
    LIT("RING"),
    LUAP("^%+MSUB: (%d+)$"),
    LUAP("^CLOSED$"),
};
#define FZ_NURCS ((int)(sizeof fz_urcs / sizeof fz_urcs[0]))

/* Checks what any event must satisfy, touching every byte it points at
 * (so the sanitizers see a stale or short pointer). Returns a hash. */
static inline unsigned fz_event_check(const ath_chat_event_t *ev)
{
    unsigned h = (unsigned)ev->type * 31u + (unsigned)ev->index;
    size_t i;
    FZ_CHECK(ev->type >= ATH_EV_URC && ev->type <= ATH_EV_BADCOUNT,
             "event type %d", ev->type);
    FZ_CHECK(ev->len == 0 || ev->line != NULL, "a length without a line");
    for (i = 0; i < ev->len; i++)
        h = h * 33u + (unsigned char)ev->line[i];
    if (ev->matched) {
        int k;
        FZ_CHECK(ev->m.ncap >= 0 && ev->m.ncap <= ATH_PAT_MAXCAPTURES,
                 "%d captures", ev->m.ncap);
        FZ_CHECK(ev->m.start <= ev->m.end && ev->m.end <= ev->len,
                 "match [%zu, %zu) outside a line of %zu", ev->m.start,
                 ev->m.end, ev->len);
        for (k = 0; k < ev->m.ncap; k++) {
            const ath_cap_t *c = &ev->m.cap[k];
            if (c->len == ATH_CAP_POSITION)
                FZ_CHECK(c->off <= ev->len, "position capture %zu", c->off);
            else
                FZ_CHECK(c->len >= 0 && c->off + (size_t)c->len <= ev->len,
                         "capture %d [%zu, +%td) outside a line of %zu", k,
                         c->off, c->len, ev->len);
        }
    }
    if (ev->payload) {
        FZ_CHECK(ev->plen <= FZ_COUNT_MAX, "a payload of %zu", ev->plen);
        for (i = 0; i < ev->plen; i++)
            h = h * 33u + (unsigned char)ev->payload[i];
    }
    if (ev->type == ATH_EV_BADCOUNT)
        FZ_CHECK(ev->why >= ATH_COUNT_NAN && ev->why <= ATH_COUNT_TRAILER,
                 "BADCOUNT why %d", ev->why);
    return h;
}

/* Takes data[0, n), the bytes of the event just pulled, out of the engine
 * as the host does with big payloads (ath_chat_take, front bytes before
 * them): the block must hold the bytes and what is pending must not
 * change. */
static inline void fz_take_out(ath_chat_t *c, const char *data, size_t n,
                               size_t front)
{
    size_t pending = ath_chat_pending(c);
    char *copy = (char *)malloc(n ? n : 1), *blk;
    FZ_CHECK(copy != NULL, "out of memory");
    memcpy(copy, data, n);
    blk = ath_chat_take(c, data, n, front);
    FZ_CHECK(blk != NULL, "ath_chat_take refused the event's bytes");
    FZ_CHECK(memcmp(blk + front, copy, n) == 0, "the taken block differs");
    FZ_CHECK(ath_chat_pending(c) == pending, "take changed what is pending");
    free(blk);
    free(copy);
}

#endif
