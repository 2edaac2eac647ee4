/*
 * chat_ops.c: the chat engine driven by a little operations language.
 *
 * Each input byte picks an operation, the next bytes are its operands:
 * feed a chunk, start a wait (EXPECT, CMD with echo, reply, outcomes and
 * prompts, LINE, READ of n bytes or of what is there), cancel, flush the
 * backlog, add or remove a URC handler; every other payload or READ is
 * taken out of the engine (ath_chat_take) as the host does with big ones.
 * After every operation all events are pulled and checked:
 *   - every event is well formed (chat_common.h) and its bytes readable;
 *   - an event that ends a wait comes only while one is in progress, and
 *     the engine is idle after it; a URC never ends one;
 *   - a READ delivers exactly n bytes (1..n for "what is there");
 *   - what the engine holds stays bounded: max_line, the backlog bound,
 *     one payload and one chunk (no unbounded pending buffer).
 */
#include "chat_common.h"

#define MAX_LINE 300
#define BACKLOG 2000
#define CHUNK_MAX 255

static const ath_pat_t alts[] = {
    LIT("OK"),     LUAP("^%+CSQ: (%d+),(%d+)"), LIT("CONNECT"),
    LUAP("^(.-)$"), COUNTED("^%+HTTPREAD: (%d+)$", 1, FZ_COUNT_MAX, NULL),
};
static const ath_pat_t aborts[] = {LIT("NO CARRIER"), LUAP("^%+CME ERROR")};
static const ath_pat_t prompts[] = {LUAP("^>"), LIT("DOWNLOAD")};
static const ath_pat_t replies[] = {
    LUAP("^%+CGATT: (%d)"),
    COUNTED("^%+HTTPREAD: ?(%-?%d+)", 1, FZ_COUNT_MAX, NULL),
    LIT("+"),
};
static const ath_pat_t outs[] = {LIT("CONNECT OK"), LUAP("^%+MCONNECT: 0")};
static const ath_pat_t ofails[] = {LIT("CONNECT FAIL"), LIT("ERROR")};
static const char *echoes[] = {"AT+CGATT?", "AT+HTTPREAD", "AT"};

/* Events that end the wait they answer. */
static int ends_wait(const ath_chat_event_t *ev)
{
    switch (ev->type) {
    case ATH_EV_MATCH:
    case ATH_EV_ABORT:
    case ATH_EV_LINE:
    case ATH_EV_READ:
    case ATH_EV_OUTFAIL:
    case ATH_EV_ECHO:
        return 1;
    case ATH_EV_FINAL:
    case ATH_EV_OUTCOME:
        return !ev->more;
    default:
        return 0;
    }
}

static unsigned ntaken; /* payloads and reads seen in this input */

static void pull(ath_chat_t *c)
{
    ath_chat_event_t ev;
    int guard = 0;
    while (ath_chat_next(c, &ev)) {
        int waiting = ath_chat_waiting(c);
        fz_event_check(&ev);
        FZ_CHECK(++guard < 100000, "ath_chat_next never returns 0");
        if (ends_wait(&ev))
            FZ_CHECK(!waiting, "event %d ended no wait", ev.type);
        if (ev.type == ATH_EV_URC)
            FZ_CHECK(ev.index >= 0 && ev.index < FZ_NURCS, "URC id %d",
                     ev.index);
        /* every other payload or read is taken out, as big ones are */
        if (ev.payload != NULL && (++ntaken & 1))
            fz_take_out(c, ev.payload, ev.plen, ntaken % 40);
        else if (ev.type == ATH_EV_READ && (++ntaken & 1))
            fz_take_out(c, ev.line, ev.len, ntaken % 40);
    }
    FZ_CHECK(ath_chat_pending(c) <= MAX_LINE + BACKLOG + FZ_COUNT_MAX +
                                        2 * CHUNK_MAX + 16,
             "%zu bytes pending", ath_chat_pending(c));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in_t in = {data, size};
    ath_chat_t *c = ath_chat_new(MAX_LINE, BACKLOG);
    ath_wait_t w;
    int have_urc[FZ_NURCS] = {0};
    size_t read_n = 0;
    int read_some = 0, ops = 0;
    ntaken = 0;
    if (c == NULL)
        return 0;
    while (in.n > 0 && ops++ < 4000) {
        unsigned op = fz_byte(&in), a, i;
        size_t n;
        const char *s;
        memset(&w, 0, sizeof w);
        switch (op % 10) {
        case 0:
        case 1:
        case 2: /* feed a chunk: most of what a run does */
            s = fz_take(&in, fz_byte(&in), &n);
            FZ_CHECK(ath_chat_feed(c, s, n) == 0, "feed failed");
            if (ath_chat_waiting(c) && read_n) {
                /* a READ ends exactly when its bytes are there */
                size_t before = ath_chat_pending(c);
                ath_chat_event_t ev;
                if (ath_chat_next(c, &ev)) {
                    fz_event_check(&ev);
                    FZ_CHECK(ev.type == ATH_EV_READ, "READ got event %d",
                             ev.type);
                    FZ_CHECK(read_some ? ev.len >= 1 && ev.len <= read_n
                                       : ev.len == read_n,
                             "READ of %zu%s gave %zu", read_n,
                             read_some ? " (some)" : "", ev.len);
                    FZ_CHECK(ath_chat_pending(c) == before - ev.len,
                             "a READ consumed other than it gave");
                    if (++ntaken & 1)
                        fz_take_out(c, ev.line, ev.len, ntaken % 40);
                    read_n = 0;
                } else {
                    FZ_CHECK(read_some ? before == 0 : before < read_n,
                             "READ of %zu not served with %zu there",
                             read_n, before);
                }
            }
            break;
        case 3: /* EXPECT */
            a = fz_byte(&in);
            w.mode = ATH_WAIT_EXPECT;
            w.alts = alts + a % 5;
            w.nalts = 1 + (int)((a >> 3) % (5 - a % 5));
            if (a & 0x40) {
                w.aborts = aborts;
                w.naborts = 2;
            }
            if (a & 0x80) {
                w.prompts = prompts;
                w.nprompts = 2;
            }
            read_n = 0;
            ath_chat_wait(c, &w);
            break;
        case 4: /* CMD */
            a = fz_byte(&in);
            w.mode = ATH_WAIT_CMD;
            w.echo = echoes[a % 3];
            w.echolen = strlen(w.echo);
            w.echo_check = (a >> 2) & 1;
            w.reply = replies + (a >> 3) % 3;
            if (a & 0x20) {
                w.outs = outs;
                w.nouts = 2;
                w.ofails = ofails;
                w.nofails = 2;
            }
            if (a & 0x40) {
                w.prompts = prompts;
                w.nprompts = 1;
            }
            if (a & 0x80) {
                w.aborts = aborts;
                w.naborts = 1;
            }
            read_n = 0;
            ath_chat_wait(c, &w);
            break;
        case 5: /* LINE */
            w.mode = ATH_WAIT_LINE;
            read_n = 0;
            ath_chat_wait(c, &w);
            break;
        case 6: /* READ */
            a = fz_byte(&in);
            w.mode = ATH_WAIT_READ;
            w.nbytes = 1 + a % 200;
            w.some = (a & 1) != 0;
            if (ath_chat_wait(c, &w) == 0) {
                read_n = w.nbytes;
                read_some = w.some;
            }
            break;
        case 7:
            ath_chat_cancel(c);
            read_n = 0;
            break;
        case 8:
            ath_chat_flush(c);
            break;
        default: /* a URC handler on or off */
            i = fz_byte(&in) % FZ_NURCS;
            if (have_urc[i])
                ath_chat_urc_remove(c, (int)i);
            else
                FZ_CHECK(ath_chat_urc_add(c, &fz_urcs[i], (int)i) == 0,
                         "urc_add failed");
            have_urc[i] = !have_urc[i];
        }
        if (read_n && ath_chat_waiting(c))
            continue; /* checked at the next feed */
        read_n = 0;
        pull(c);
    }
    ath_chat_free(c);
    return 0;
}
