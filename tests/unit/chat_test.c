// unit: host/chat.c host/pattern.c
/*
 * chat_test.c: the chat engine (host/chat.c) alone: bytes in, one wait
 * set, events out. No Lua, no libuv, no clock.
 *
 * A dialogue is checked three ways: fed in one chunk, split in two at
 * every byte boundary, and fed one byte at a time. Each way must give the
 * same events, written as one string ("REPLY \"+CGATT: 1\"; FINAL OK
 * \"OK\"") so that a failure shows what the engine made of the bytes.
 *
 * Build and run:
 *   cc -std=c11 -D_GNU_SOURCE -Wall -Wextra -Wpedantic -Werror -g -Ihost \
 *      host/chat.c host/pattern.c tests/unit/chat_test.c -o build/chat_test
 *   build/chat_test
 */
#include "chat.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define S(lit) lit, sizeof(lit) - 1   /* a literal with its NULs */
#define LIT(s) { ATH_PAT_LITERAL, s, sizeof(s) - 1, 0, 0, NULL }
#define LUA(s, n) { ATH_PAT_LUA, s, sizeof(s) - 1, n, 0, NULL }
#define LUAMAX(s, n, max) { ATH_PAT_LUA, s, sizeof(s) - 1, n, max, NULL }
#define MAX_EVENTS 100000             /* more from one pull is a loop */

static int npass, nfail, failed_now;
static const char *test_name;

static void fail_at(int line, const char *fmt, ...)
{
    va_list ap;
    printf("FAIL %s (line %d): ", test_name, line);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    failed_now = 1;
}

#define CHECK(cond, ...)                                                     \
    do {                                                                     \
        if (!(cond))                                                         \
            fail_at(__LINE__, __VA_ARGS__);                                  \
    } while (0)

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    if (p == NULL) {
        perror("malloc");
        exit(2);
    }
    return p;
}

/* ---- event descriptions ------------------------------------------------ */

typedef struct buf {
    char *s;
    size_t len, cap;
} buf_t;

static void buf_add(buf_t *b, const char *s, size_t n)
{
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        b->s = realloc(b->s, cap);
        if (b->s == NULL) {
            perror("realloc");
            exit(2);
        }
        b->cap = cap;
    }
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

static void buf_printf(buf_t *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    int n;
    va_start(ap, fmt);
    n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    buf_add(b, tmp, (size_t)n < sizeof tmp ? (size_t)n : sizeof tmp - 1);
}

/* Appends s[0, n) as a C string literal's contents. */
static void buf_esc(buf_t *b, const char *s, size_t n)
{
    size_t i;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\r')
            buf_add(b, "\\r", 2);
        else if (c == '\n')
            buf_add(b, "\\n", 2);
        else if (c == '"' || c == '\\')
            buf_printf(b, "\\%c", c);
        else if (c < 0x20 || c >= 0x7f)
            buf_printf(b, "\\x%02x", c);
        else
            buf_add(b, (const char *)&c, 1);
    }
}

static char *buf_take(buf_t *b)
{
    if (b->s == NULL)
        buf_add(b, "", 0);
    return b->s;
}

static const char *const type_names[] = {
    "?", "URC", "MATCH", "ABORT", "FINAL", "REPLY", "PROMPT", "LINE",
    "READ", "DROP", "OUTCOME", "OUTFAIL", "ECHO", "BADCOUNT"
};

static const char *const count_names[] = {
    "?", "NAN", "NEGATIVE", "DIGITS", "MAX", "TRAILER"
};

static const char *const final_names[] = { "OK", "ERROR", "CME", "CMS" };

/* One event as text: TYPE[#index] "line" [captures] payload "...". A
 * reply line no pattern matched is "REPLY?". */
static void ev_describe(buf_t *b, const ath_chat_event_t *ev)
{
    int i;
    if (b->len > 0)
        buf_add(b, "; ", 2);
    if (ev->type < ATH_EV_URC || ev->type > ATH_EV_BADCOUNT) {
        buf_printf(b, "BADTYPE %d", ev->type);
        return;
    }
    buf_printf(b, "%s", type_names[ev->type]);
    switch (ev->type) {
    case ATH_EV_URC:
    case ATH_EV_MATCH:
    case ATH_EV_ABORT:
    case ATH_EV_PROMPT:
    case ATH_EV_OUTFAIL:
        buf_printf(b, "#%d", ev->index);
        break;
    case ATH_EV_OUTCOME:
        buf_printf(b, "#%d%s", ev->index, ev->more ? " more" : "");
        break;
    case ATH_EV_BADCOUNT:
        buf_printf(b, " %s %s#%d %lld",
                   ev->why >= 1 && ev->why <= ATH_COUNT_TRAILER
                       ? count_names[ev->why]
                       : "?",
                   ev->kind >= ATH_EV_URC && ev->kind <= ATH_EV_BADCOUNT
                       ? type_names[ev->kind]
                       : "?",
                   ev->index, ev->count);
        break;
    case ATH_EV_FINAL:
        if (ev->index >= ATH_FINAL_ALT)
            buf_printf(b, " ALT%d", ev->index - ATH_FINAL_ALT);
        else if (ev->index >= 0)
            buf_printf(b, " %s", final_names[ev->index]);
        if (ev->more)
            buf_add(b, " more", 5);
        break;
    case ATH_EV_REPLY:
        if (!ev->matched)
            buf_add(b, "?", 1);
        break;
    case ATH_EV_DROP:
        buf_printf(b, " %zu", ev->len);
        return;
    }
    buf_add(b, " \"", 2);
    buf_esc(b, ev->line, ev->len);
    buf_add(b, "\"", 1);
    if (ev->matched && ev->m.ncap > 0) {
        buf_add(b, " [", 2);
        for (i = 0; i < ev->m.ncap; i++) {
            const ath_cap_t *c = &ev->m.cap[i];
            if (i > 0)
                buf_add(b, ",", 1);
            if (c->len == ATH_CAP_POSITION) {
                buf_printf(b, "%zu", c->off + 1);
            } else {
                buf_add(b, "\"", 1);
                buf_esc(b, ev->line + c->off, (size_t)c->len);
                buf_add(b, "\"", 1);
            }
        }
        buf_add(b, "]", 1);
    }
    if (ev->payload != NULL) {
        buf_add(b, " payload \"", 10);
        buf_esc(b, ev->payload, ev->plen);
        buf_add(b, "\"", 1);
    }
}

/* Describes every event the engine has now; returns how many. */
static int pull(ath_chat_t *c, buf_t *b)
{
    ath_chat_event_t ev;
    int n = 0;
    while (ath_chat_next(c, &ev)) {
        ev_describe(b, &ev);
        if (++n >= MAX_EVENTS) {
            buf_add(b, "; (endless events)", 18);
            break;
        }
    }
    return n;
}

/* Feeds s[0, n) from an exact-size heap copy, so reads past it show. */
static void feed(ath_chat_t *c, const char *s, size_t n)
{
    char *d = xmalloc(n);
    memcpy(d, s, n);
    if (ath_chat_feed(c, d, n) != 0) {
        printf("ath_chat_feed: out of memory\n");
        exit(2);
    }
    free(d);
}

/* Pulls everything and returns the description (malloc'd). */
static char *events(ath_chat_t *c)
{
    buf_t b = { 0 };
    pull(c, &b);
    return buf_take(&b);
}

/* ---- dialogues ----------------------------------------------------------- */

typedef void (*setup_fn)(ath_chat_t *c);

/* Runs data through a fresh engine made ready by setup, fed in chunks
 * that end at each of cuts[0, ncuts) and then at n, pulling after each.
 * The description ends with " [waiting]" if a wait is still on. */
static char *run_cuts(setup_fn setup, const char *data, size_t n,
                      const size_t *cuts, size_t ncuts)
{
    ath_chat_t *c = ath_chat_new(0, 0);
    buf_t b = { 0 };
    size_t i, at = 0;
    setup(c);
    for (i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        feed(c, data + at, end - at);
        pull(c, &b);
        at = end;
    }
    if (ath_chat_waiting(c))
        buf_add(&b, " [waiting]", 10);
    ath_chat_free(c);
    return buf_take(&b);
}

static int same(int line, const char *how, const char *got, const char *want)
{
    if (strcmp(got, want) == 0)
        return 1;
    fail_at(line, "%s:\n    got  %s\n    want %s", how, got, want);
    return 0;
}

/* The dialogue data[0, n) must give want fed whole, split in two at every
 * byte boundary, and one byte at a time. */
static void dialogue(int line, setup_fn setup, const char *data, size_t n,
                     const char *want)
{
    size_t k, *cuts = xmalloc(n * sizeof *cuts);
    char *got, how[64];
    got = run_cuts(setup, data, n, NULL, 0);
    same(line, "in one chunk", got, want);
    free(got);
    for (k = 1; k < n; k++) {
        cuts[0] = k;
        got = run_cuts(setup, data, n, cuts, 1);
        snprintf(how, sizeof how, "split at byte %zu", k);
        k = same(line, how, got, want) ? k : n;
        free(got);
    }
    for (k = 0; k + 1 < n; k++)
        cuts[k] = k + 1;
    got = run_cuts(setup, data, n, cuts, n ? n - 1 : 0);
    same(line, "one byte at a time", got, want);
    free(got);
    free(cuts);
}

#define DIALOGUE(setup, lit, want) dialogue(__LINE__, setup, S(lit), want)

/* ---- patterns and waits -------------------------------------------------- */

static const ath_pat_t P_CGATT = LIT("+CGATT:");
static const ath_pat_t P_CGATT_LUA = LUA("^%+CGATT: (%d)", 0);
static const ath_pat_t P_CGREG = LIT("+CGREG:");
static const ath_pat_t P_CREG = LIT("+CREG:");
static const ath_pat_t P_PROMPT = LIT(">");
static const ath_pat_t P_DOWNLOAD = LIT("DOWNLOAD");
static const ath_pat_t P_MSUB = LUA("^%+MSUB: \"([^\"]*)\",(%d+) byte,", 2);
static const ath_pat_t P_HTTPREAD = LUA("^%+HTTPREAD: (%d+)", 1);
static const ath_pat_t P_SEND[] = { LIT("SEND OK"), LUA("^SEND FAIL", 0) };
static const ath_pat_t P_NOCARRIER = LIT("NO CARRIER");
static const ath_pat_t P_CONNECT[] = { LIT("CONNECT OK"),
                                       LIT("ALREADY CONNECT") };
static const ath_pat_t P_CONNECT_FAIL = LIT("CONNECT FAIL");

#define URC_CREG 7
#define URC_CGREG 3
#define URC_MSUB 5

static ath_wait_t cmd_wait(const char *echo, const ath_pat_t *reply)
{
    ath_wait_t w;
    memset(&w, 0, sizeof w);
    w.mode = ATH_WAIT_CMD;
    w.echo = echo;
    w.echolen = strlen(echo);
    w.reply = reply;
    return w;
}

static void start(ath_chat_t *c, const ath_wait_t *w)
{
    if (ath_chat_wait(c, w) != 0) {
        printf("ath_chat_wait refused a wait on an idle engine\n");
        exit(2);
    }
}

static void urc(ath_chat_t *c, const ath_pat_t *p, int id)
{
    if (ath_chat_urc_add(c, p, id) != 0) {
        printf("ath_chat_urc_add: out of memory\n");
        exit(2);
    }
}

static void setup_cgatt(ath_chat_t *c)
{
    ath_wait_t w = cmd_wait("AT+CGATT?", &P_CGATT);
    start(c, &w);
}

static void setup_cgatt_lua(ath_chat_t *c)
{
    ath_wait_t w = cmd_wait("AT+CGATT?", &P_CGATT_LUA);
    start(c, &w);
}

static void setup_cgmr(ath_chat_t *c)
{
    ath_wait_t w = cmd_wait("AT+CGMR", NULL);
    start(c, &w);
}

static void setup_creg_cgatt(ath_chat_t *c)
{
    urc(c, &P_CREG, URC_CREG);
    setup_cgatt(c);
}

static void setup_cgreg_cmd(ath_chat_t *c)
{
    ath_wait_t w = cmd_wait("AT+CGREG?", &P_CGREG);
    urc(c, &P_CGREG, URC_CGREG);
    start(c, &w);
}

static void setup_cgreg_other(ath_chat_t *c)
{
    urc(c, &P_CGREG, URC_CGREG);
    setup_cgatt(c);
}

static void setup_cgreg_idle(ath_chat_t *c)
{
    urc(c, &P_CGREG, URC_CGREG);
}

static void setup_fswrite(ath_chat_t *c)
{
    ath_wait_t w = cmd_wait("AT+FSWRITE=\"ca.crt\",0,10,15", NULL);
    w.prompts = &P_PROMPT;
    w.nprompts = 1;
    start(c, &w);
}

static void setup_expect_prompt(ath_chat_t *c)
{
    ath_wait_t w;
    memset(&w, 0, sizeof w);
    w.mode = ATH_WAIT_EXPECT;
    w.alts = &P_PROMPT;     /* as port:prompt(">") sets it up */
    w.nalts = 1;
    w.prompts = &P_PROMPT;
    w.nprompts = 1;
    start(c, &w);
}

static void setup_httpdata(ath_chat_t *c)
{
    ath_wait_t w = cmd_wait("AT+HTTPDATA=10,10000", NULL);
    w.prompts = &P_DOWNLOAD;
    w.nprompts = 1;
    start(c, &w);
}

static void setup_cipsend(ath_chat_t *c)
{
    ath_wait_t w = cmd_wait("AT+CIPSEND=5", NULL);
    w.alts = P_SEND;
    w.nalts = 2;
    w.aborts = &P_NOCARRIER;
    w.naborts = 1;
    start(c, &w);
}

static void setup_mipstart(ath_chat_t *c)
{
    ath_wait_t w;
    memset(&w, 0, sizeof w);
    w.mode = ATH_WAIT_EXPECT;
    w.alts = P_CONNECT;
    w.nalts = 2;
    w.aborts = &P_CONNECT_FAIL;
    w.naborts = 1;
    start(c, &w);
}

static void setup_msub_idle(ath_chat_t *c)
{
    urc(c, &P_MSUB, URC_MSUB);
}

static void setup_msub_cgatt(ath_chat_t *c)
{
    urc(c, &P_MSUB, URC_MSUB);
    setup_cgatt(c);
}

static void setup_httpread(ath_chat_t *c)
{
    ath_wait_t w = cmd_wait("AT+HTTPREAD", &P_HTTPREAD);
    start(c, &w);
}

static void setup_line(ath_chat_t *c)
{
    ath_wait_t w;
    memset(&w, 0, sizeof w);
    w.mode = ATH_WAIT_LINE;
    start(c, &w);
}

/* A LINE wait on c must give exactly want. */
static void line_is(int line, ath_chat_t *c, const char *how, const char *want)
{
    char *got;
    setup_line(c);
    got = events(c);
    same(line, how, got, want);
    free(got);
}

static ath_wait_t read_wait(size_t n, int some)
{
    ath_wait_t w;
    memset(&w, 0, sizeof w);
    w.mode = ATH_WAIT_READ;
    w.nbytes = n;
    w.some = some;
    return w;
}

/* ---- the tests ------------------------------------------------------------ */

static void test_reply_ok(void)
{
    DIALOGUE(setup_cgatt, "\r\n+CGATT: 1\r\n\r\nOK\r\n",
             "REPLY \"+CGATT: 1\"; FINAL OK \"OK\"");
    DIALOGUE(setup_cgatt_lua, "\r\n+CGATT: 1\r\n\r\nOK\r\n",
             "REPLY \"+CGATT: 1\" [\"1\"]; FINAL OK \"OK\"");
    /* lines other than the command's own prefix are still its reply */
    DIALOGUE(setup_cgmr, "\r\nAir720_V123\r\n\r\nOK\r\n",
             "REPLY? \"Air720_V123\"; FINAL OK \"OK\"");
    /* LF-only and CR-only line ends */
    DIALOGUE(setup_cgatt, "\n+CGATT: 0\n\nOK\n",
             "REPLY \"+CGATT: 0\"; FINAL OK \"OK\"");
    DIALOGUE(setup_cgatt, "\r+CGATT: 0\rOK\r",
             "REPLY \"+CGATT: 0\"; FINAL OK \"OK\"");
    /* a final result code is the whole line: OKAY is none */
    DIALOGUE(setup_cgmr, "\r\nOKAY\r\nOK \r\n",
             "REPLY? \"OKAY\"; FINAL OK \"OK \"");
    /* what follows the final result is not the command's */
    DIALOGUE(setup_cgatt, "\r\n+CGATT: 1\r\n\r\nOK\r\n\r\n+CGATT: 0\r\n",
             "REPLY \"+CGATT: 1\"; FINAL OK \"OK\"");
}

static void test_byte_at_a_time(void)
{
    ath_chat_t *c = ath_chat_new(0, 0);
    const char *line = "\r\n+CGATT: 1";
    size_t i;
    char *got;
    setup_cgatt(c);
    for (i = 0; line[i]; i++) {
        feed(c, line + i, 1);
        got = events(c);
        CHECK(strcmp(got, "") == 0, "event before the line end (byte %zu): %s",
              i, got);
        free(got);
    }
    feed(c, S("\r"));
    got = events(c);
    same(__LINE__, "at the line end", got, "REPLY \"+CGATT: 1\"");
    free(got);
    CHECK(ath_chat_waiting(c), "the command ended without a final result");
    feed(c, S("\n\r\nO"));
    got = events(c);
    same(__LINE__, "half an OK", got, "");
    free(got);
    feed(c, S("K"));
    got = events(c);
    same(__LINE__, "OK without its line end", got, "");
    free(got);
    feed(c, S("\r"));
    got = events(c);
    same(__LINE__, "OK with its line end", got, "FINAL OK \"OK\"");
    free(got);
    CHECK(!ath_chat_waiting(c), "the command did not end on OK");
    ath_chat_free(c);
}

static void test_urc_between(void)
{
    DIALOGUE(setup_creg_cgatt,
             "\r\n+CREG: 1,\"1A2B\",\"0C3D\"\r\n\r\n+CGATT: 1\r\n\r\nOK\r\n",
             "URC#7 \"+CREG: 1,\\\"1A2B\\\",\\\"0C3D\\\"\"; "
             "REPLY \"+CGATT: 1\"; FINAL OK \"OK\"");
    /* between the reply and its OK too */
    DIALOGUE(setup_creg_cgatt,
             "\r\n+CGATT: 1\r\n\r\n+CREG: 5\r\n\r\nOK\r\n",
             "REPLY \"+CGATT: 1\"; URC#7 \"+CREG: 5\"; FINAL OK \"OK\"");
}

static void test_shared_prefix(void)
{
    /* +CGREG: answering AT+CGREG? is its reply, though a handler exists;
     * after the OK the same prefix is the URC's */
    DIALOGUE(setup_cgreg_cmd,
             "AT+CGREG?\r\r\n+CGREG: 0,1\r\n\r\nOK\r\n\r\n+CGREG: 5\r\n",
             "REPLY \"+CGREG: 0,1\"; FINAL OK \"OK\"; URC#3 \"+CGREG: 5\"");
    /* while another command is in flight it is the URC's */
    DIALOGUE(setup_cgreg_other,
             "\r\n+CGREG: 2\r\n\r\n+CGATT: 1\r\n\r\nOK\r\n",
             "URC#3 \"+CGREG: 2\"; REPLY \"+CGATT: 1\"; FINAL OK \"OK\"");
    /* with no command at all it is the URC's */
    DIALOGUE(setup_cgreg_idle, "\r\n+CGREG: 1\r\n",
             "URC#3 \"+CGREG: 1\"");
}

static void test_echo(void)
{
    /* ATE1: the command comes back first and is no reply line */
    DIALOGUE(setup_cgatt, "AT+CGATT?\r\r\n+CGATT: 1\r\n\r\nOK\r\n",
             "REPLY \"+CGATT: 1\"; FINAL OK \"OK\"");
    DIALOGUE(setup_cgmr, "AT+CGMR\r\r\nAir720_V123\r\n\r\nOK\r\n",
             "REPLY? \"Air720_V123\"; FINAL OK \"OK\"");
    DIALOGUE(setup_cgmr, "AT+CGMR\rAir720_V123\rOK\r",
             "REPLY? \"Air720_V123\"; FINAL OK \"OK\"");
}

static void test_prompts(void)
{
    ath_chat_t *c;
    char *got;
    DIALOGUE(setup_fswrite,
             "AT+FSWRITE=\"ca.crt\",0,10,15\r\r\n> \r\nOK\r\n",
             "PROMPT#0 \">\"; FINAL OK \"OK\"");
    DIALOGUE(setup_fswrite,
             "AT+FSWRITE=\"ca.crt\",0,10,15\r\r\n>\r\nOK\r\n",
             "PROMPT#0 \">\"; FINAL OK \"OK\"");
    DIALOGUE(setup_expect_prompt, "\r\n> ", "PROMPT#0 \">\"");
    DIALOGUE(setup_expect_prompt, "\r\n>", "PROMPT#0 \">\"");
    DIALOGUE(setup_httpdata,
             "AT+HTTPDATA=10,10000\r\r\nDOWNLOAD\r\n\r\nOK\r\n",
             "PROMPT#0 \"DOWNLOAD\"; FINAL OK \"OK\"");

    /* the prompt is seen at once, with no line end after it */
    c = ath_chat_new(0, 0);
    setup_fswrite(c);
    feed(c, S("AT+FSWRITE=\"ca.crt\",0,10,15\r\r\n> "));
    got = events(c);
    same(__LINE__, "CMD, \"> \" alone", got, "PROMPT#0 \">\"");
    free(got);
    CHECK(ath_chat_waiting(c), "the command ended at its prompt");
    CHECK(ath_chat_pending(c) == 0, "the prompt is not consumed (%zu left)",
          ath_chat_pending(c));
    feed(c, S("\r\nOK\r\n"));
    got = events(c);
    same(__LINE__, "after the data", got, "FINAL OK \"OK\"");
    free(got);
    ath_chat_free(c);

    c = ath_chat_new(0, 0);
    setup_fswrite(c);
    feed(c, S("\r\n>"));
    got = events(c);
    same(__LINE__, "CMD, \">\" alone", got, "PROMPT#0 \">\"");
    free(got);
    ath_chat_free(c);

    c = ath_chat_new(0, 0);
    setup_expect_prompt(c);
    feed(c, S("\r\n> "));
    got = events(c);
    same(__LINE__, "EXPECT, \"> \" alone", got, "PROMPT#0 \">\"");
    free(got);
    CHECK(!ath_chat_waiting(c), "the prompt did not end the expect");
    ath_chat_free(c);

    c = ath_chat_new(0, 0);
    setup_httpdata(c);
    feed(c, S("AT+HTTPDATA=10,10000\r\r\nDOWNLOAD"));
    got = events(c);
    same(__LINE__, "DOWNLOAD without its line end", got,
         "PROMPT#0 \"DOWNLOAD\"");
    free(got);
    ath_chat_free(c);
}

static void test_finals(void)
{
    DIALOGUE(setup_cgatt, "\r\nERROR\r\n", "FINAL ERROR \"ERROR\"");
    DIALOGUE(setup_cgatt, "AT+CGATT?\r\r\n+CME ERROR: 767\r\n",
             "FINAL CME \"+CME ERROR: 767\"");
    DIALOGUE(setup_cgmr, "\r\n+CMS ERROR: 500\r\n",
             "FINAL CMS \"+CMS ERROR: 500\"");
    DIALOGUE(setup_cgatt, "\r\n+CME ERROR: SIM not inserted\r\n",
             "FINAL CME \"+CME ERROR: SIM not inserted\"");
    /* extra final result codes; OK is still one */
    DIALOGUE(setup_cipsend, "\r\nSEND OK\r\n", "FINAL ALT0 \"SEND OK\"");
    DIALOGUE(setup_cipsend, "\r\nSEND FAIL\r\n", "FINAL ALT1 \"SEND FAIL\"");
    DIALOGUE(setup_cipsend, "\r\nOK\r\n", "FINAL OK \"OK\"");
    /* aborts, in CMD and EXPECT */
    DIALOGUE(setup_cipsend, "\r\nNO CARRIER\r\n\r\nOK\r\n",
             "ABORT#0 \"NO CARRIER\"");
    DIALOGUE(setup_mipstart, "\r\nOK\r\n\r\nCONNECT FAIL\r\n",
             "ABORT#0 \"CONNECT FAIL\"");
    DIALOGUE(setup_mipstart, "\r\nOK\r\n\r\nALREADY CONNECT\r\n",
             "MATCH#1 \"ALREADY CONNECT\"");
    DIALOGUE(setup_mipstart, "\r\nCONNECT OK\r\n", "MATCH#0 \"CONNECT OK\"");
}

/* 12 bytes with line ends and a final result code inside */
#define MSUB_PAYLOAD "ab\r\nOK\r\nxyzw"

static void test_counted_inline(void)
{
    DIALOGUE(setup_msub_idle,
             "\r\n+MSUB: \"t\",12 byte," MSUB_PAYLOAD "\r\n",
             "URC#5 \"+MSUB: \\\"t\\\",12 byte,\" [\"t\",\"12\"] "
             "payload \"ab\\r\\nOK\\r\\nxyzw\"");
    /* two in a row, one of them empty */
    DIALOGUE(setup_msub_idle,
             "\r\n+MSUB: \"a/b\",0 byte,\r\n+MSUB: \"t\",3 byte,a\r\n\r\n",
             "URC#5 \"+MSUB: \\\"a/b\\\",0 byte,\" [\"a/b\",\"0\"] payload \"\"; "
             "URC#5 \"+MSUB: \\\"t\\\",3 byte,\" [\"t\",\"3\"] "
             "payload \"a\\r\\n\"");
    /* in the middle of a command: the payload's OK does not end it */
    DIALOGUE(setup_msub_cgatt,
             "AT+CGATT?\r\r\n+MSUB: \"t\",12 byte," MSUB_PAYLOAD
             "\r\n\r\n+CGATT: 1\r\n\r\nOK\r\n",
             "URC#5 \"+MSUB: \\\"t\\\",12 byte,\" [\"t\",\"12\"] "
             "payload \"ab\\r\\nOK\\r\\nxyzw\"; "
             "REPLY \"+CGATT: 1\"; FINAL OK \"OK\"");
}

static void test_counted_after_line(void)
{
    char body[149], data[400], want[1200];
    size_t i, n;
    buf_t w = { 0 };
    static const char text[] = "{\"code\":200}\r\nOK\r\nERROR\r\n\0>";
    for (i = 0; i < sizeof body; i++)
        body[i] = text[i % sizeof text];
    n = (size_t)sprintf(data, "AT+HTTPREAD\r\r\n+HTTPREAD: 149\r\n");
    memcpy(data + n, body, sizeof body);
    n += sizeof body;
    memcpy(data + n, "\r\nOK\r\n", 6);
    n += 6;
    buf_add(&w, "REPLY \"+HTTPREAD: 149\" [\"149\"] payload \"", 40);
    buf_esc(&w, body, sizeof body);
    buf_add(&w, "\"; FINAL OK \"OK\"", 16);
    snprintf(want, sizeof want, "%s", w.s);
    dialogue(__LINE__, setup_httpread, data, n, want);
    free(w.s);
    /* CR alone before the body, and a body of 0 bytes */
    DIALOGUE(setup_httpread, "\r\n+HTTPREAD: 3\rabc\r\nOK\r\n",
             "REPLY \"+HTTPREAD: 3\" [\"3\"] payload \"abc\"; FINAL OK \"OK\"");
    DIALOGUE(setup_httpread, "\r\n+HTTPREAD: 0\r\n\r\nOK\r\n",
             "REPLY \"+HTTPREAD: 0\" [\"0\"] payload \"\"; FINAL OK \"OK\"");
}

static void test_read_1mib(void)
{
    static const size_t sizes[] = { 1, 7, 4093, 65537, 333, 2, 100003 };
    size_t total = 1u << 20, at = 0, k = 0, nev = 0;
    char *data = xmalloc(total + 6);
    ath_chat_t *c = ath_chat_new(0, 0);
    ath_chat_event_t ev;
    ath_wait_t w = read_wait(total, 0);
    size_t i;
    for (i = 0; i < total; i++)
        data[i] = (char)(i * 131 + (i >> 9));
    memcpy(data + total, "\r\nOK\r\n", 6);
    start(c, &w);
    while (at < total + 6) {
        size_t n = sizes[k++ % (sizeof sizes / sizeof sizes[0])];
        if (n > total + 6 - at)
            n = total + 6 - at;
        feed(c, data + at, n);
        at += n;
        while (ath_chat_next(c, &ev)) {
            nev++;
            CHECK(ev.type == ATH_EV_READ, "event %d during the read",
                  ev.type);
            CHECK(at >= total, "READ after %zu of %zu bytes", at, total);
            CHECK(ev.len == total, "READ of %zu bytes", ev.len);
            CHECK(ev.len == total && memcmp(ev.line, data, total) == 0,
                  "the bytes read differ from the bytes sent");
        }
    }
    CHECK(nev == 1, "%zu events for one read", nev);
    CHECK(!ath_chat_waiting(c), "the read goes on");
    CHECK(ath_chat_pending(c) == 6, "%zu bytes pending after the read, "
          "want the 6 that followed", ath_chat_pending(c));
    ath_chat_free(c);
    free(data);
}

/* Takes the payload (or READ bytes) of the next event that has one, with
 * front bytes before it; checks the block; returns how many events came
 * before it. */
static int take_next(int line, ath_chat_t *c, const char *want, size_t n,
                     size_t front)
{
    ath_chat_event_t ev;
    int k = 0;
    while (ath_chat_next(c, &ev)) {
        const char *d = ev.payload ? ev.payload
                        : ev.type == ATH_EV_READ ? ev.line : NULL;
        size_t dn = ev.payload ? ev.plen : ev.len;
        size_t pending = ath_chat_pending(c);
        char *blk;
        if (d == NULL) {
            k++;
            continue;
        }
        if (dn != n) {
            fail_at(line, "%zu bytes, want %zu", dn, n);
            return k;
        }
        blk = ath_chat_take(c, d, dn, front);
        if (blk == NULL) {
            fail_at(line, "ath_chat_take gave NULL");
            return k;
        }
        if (memcmp(blk + front, want, n) != 0)
            fail_at(line, "the taken block differs from the bytes");
        if (ath_chat_pending(c) != pending)
            fail_at(line, "take changed what is pending: %zu, was %zu",
                    ath_chat_pending(c), pending);
        free(blk);
        return k;
    }
    fail_at(line, "no event with bytes");
    return k;
}

static void test_take(void)
{
    size_t total = 1u << 20, i;
    char *data = xmalloc(total + 6), *got;
    ath_chat_t *c = ath_chat_new(0, 0);
    ath_chat_event_t ev;
    ath_wait_t w = read_wait(total, 0);
    /* a read: the block is the engine's, what followed stays */
    for (i = 0; i < total; i++)
        data[i] = (char)(i * 131 + (i >> 9));
    memcpy(data + total, "\r\nOK\r\n", 6);
    start(c, &w);
    feed(c, data, 4093);
    feed(c, data + 4093, total + 6 - 4093);
    take_next(__LINE__, c, data, total, 24);
    line_is(__LINE__, c, "after a taken read", "LINE \"OK\"");
    ath_chat_free(c);

    /* a counted URC claimed from the backlog: the lines around it stay */
    c = ath_chat_new(0, 0);
    urc(c, &P_MSUB, URC_MSUB);
    urc(c, &P_CREG, URC_CREG);
    feed(c, S("\r\nfirst\r\n+MSUB: \"t\",12 byte," MSUB_PAYLOAD
              "\r\nsecond\r\n+CREG: 1\r\nthi"));
    CHECK(take_next(__LINE__, c, MSUB_PAYLOAD, 12, 3) == 0,
          "events before the URC");
    feed(c, S("rd\r\n"));
    got = events(c);
    same(__LINE__, "the URC after the payload", got, "URC#7 \"+CREG: 1\"");
    free(got);
    line_is(__LINE__, c, "the line before", "LINE \"first\"");
    line_is(__LINE__, c, "the line after", "LINE \"second\"");
    line_is(__LINE__, c, "the line cut by a read", "LINE \"third\"");
    ath_chat_free(c);

    /* during a command, the payload before the front it is given */
    c = ath_chat_new(0, 0);
    setup_msub_cgatt(c);
    feed(c, S("AT+CGATT?\r\r\n+MSUB: \"t\",12 byte," MSUB_PAYLOAD
              "\r\n\r\n+CGATT: 1\r\n\r\nOK\r\n"));
    take_next(__LINE__, c, MSUB_PAYLOAD, 12, 4000);
    got = events(c);
    same(__LINE__, "the command goes on", got,
         "REPLY \"+CGATT: 1\"; FINAL OK \"OK\"");
    free(got);
    /* bytes not the engine's, or not consumed: refused, nothing changed */
    CHECK(ath_chat_take(c, data, 4, 24) == NULL, "took foreign bytes");
    feed(c, S("\r\n+MSUB: \"t\",12 byte,ab"));
    CHECK(!ath_chat_next(c, &ev), "an event before the payload is in");
    CHECK(ath_chat_pending(c) > 0 &&
          ath_chat_take(c, "x", 1, 24) == NULL,
          "took bytes with a payload still arriving");
    feed(c, S("\r\nOK\r\nxyzw\r\n"));
    take_next(__LINE__, c, MSUB_PAYLOAD, 12, 24);
    ath_chat_free(c);
    free(data);
}

static void test_read_keeps_bytes(void)
{
    ath_chat_t *c = ath_chat_new(0, 0);
    ath_wait_t w = read_wait(2, 0);
    char *got;
    /* what follows a read is kept raw for the next one, line ends too */
    start(c, &w);
    feed(c, S("AB\r\nCD\0\n"));
    got = events(c);
    same(__LINE__, "first read", got, "READ \"AB\"");
    free(got);
    got = events(c);
    same(__LINE__, "nothing waits", got, "");
    free(got);
    w = read_wait(6, 0);
    start(c, &w);
    got = events(c);
    same(__LINE__, "second read", got, "READ \"\\r\\nCD\\x00\\n\"");
    free(got);
    /* a read takes what was kept with no wait, line ends and all */
    feed(c, S("\r\nRING\r\n"));
    got = events(c);
    same(__LINE__, "kept", got, "");
    free(got);
    w = read_wait(8, 0);
    start(c, &w);
    got = events(c);
    same(__LINE__, "read of kept lines", got, "READ \"\\r\\nRING\\r\\n\"");
    free(got);
    ath_chat_free(c);
}

static void test_recv_some(void)
{
    ath_chat_t *c = ath_chat_new(0, 0);
    ath_wait_t w = read_wait(100, 1);
    char big[300];
    char *got;
    start(c, &w);
    got = events(c);
    same(__LINE__, "nothing there", got, "");
    free(got);
    CHECK(ath_chat_waiting(c), "recv ended with nothing received");
    feed(c, S("0123456789"));
    got = events(c);
    same(__LINE__, "10 bytes there", got, "READ \"0123456789\"");
    free(got);
    memset(big, 'z', sizeof big);
    feed(c, big, sizeof big);
    w = read_wait(100, 1);
    start(c, &w);
    CHECK(ath_chat_next(c, &(ath_chat_event_t){ 0 }), "no event");
    CHECK(ath_chat_pending(c) == 200, "%zu pending after a recv of 100 "
          "from 300", ath_chat_pending(c));
    ath_chat_free(c);
}

static void test_garbage(void)
{
    DIALOGUE(setup_cgatt,
             "AT+CGATT?\r\r\n\0\0\0\r\n\x01\x02\x1b[0m\r\n"
             "\r\n+CGATT: 1\r\n\0\r\n\x7f\r\n\r\nOK\r\n",
             "REPLY \"+CGATT: 1\"; FINAL OK \"OK\"");
    DIALOGUE(setup_cgmr,
             "\r\n\xff\xfe\xfd\xf8\r\nAir720_V123\r\n\0\0\r\nOK\r\n",
             "REPLY? \"Air720_V123\"; FINAL OK \"OK\"");
}

static void test_long_line(void)
{
    size_t n = 100 * 1024, at, chunk = 1000;
    char *line = xmalloc(n + 2);
    ath_chat_t *c = ath_chat_new(0, 0);
    ath_chat_event_t ev;
    int nev = 0;
    size_t i;
    for (i = 0; i < n; i++)
        line[i] = (char)('A' + i % 26);
    memcpy(line + n, "\r\n", 2);
    setup_line(c);
    for (at = 0; at < n + 2; at += chunk) {
        feed(c, line + at, at + chunk > n + 2 ? n + 2 - at : chunk);
        while (ath_chat_next(c, &ev)) {
            nev++;
            CHECK(ev.type == ATH_EV_LINE, "event %d", ev.type);
            CHECK(ev.len == n, "a line of %zu bytes, want %zu", ev.len, n);
            CHECK(ev.len == n && memcmp(ev.line, line, n) == 0,
                  "the line's bytes differ");
        }
    }
    CHECK(nev == 1, "%d events for one 100 KiB line", nev);
    ath_chat_free(c);

    /* the same as a command's reply */
    c = ath_chat_new(0, 0);
    setup_cgmr(c);
    nev = 0;
    feed(c, line, n + 2);
    feed(c, S("OK\r\n"));
    while (ath_chat_next(c, &ev)) {
        nev++;
        if (nev == 1)
            CHECK(ev.type == ATH_EV_REPLY && ev.len == n &&
                  memcmp(ev.line, line, n) == 0,
                  "event %d of %zu bytes, want the whole line", ev.type,
                  ev.len);
        else
            CHECK(ev.type == ATH_EV_FINAL && ev.index == ATH_FINAL_OK,
                  "event %d after the line", ev.type);
    }
    CHECK(nev == 2, "%d events", nev);
    ath_chat_free(c);
    free(line);
}

static void test_overlong_line(void)
{
    size_t n = 2500, got_n = 0, i;
    char *line = xmalloc(n + 2), *back = xmalloc(n);
    ath_chat_t *c = ath_chat_new(1000, 0);
    ath_chat_event_t ev;
    size_t lens[8];
    int nev = 0;
    for (i = 0; i < n; i++)
        line[i] = (char)('a' + (i * 7) % 26);
    memcpy(line + n, "\r\n", 2);
    for (i = 0; i + 1 < n + 2; i += 333)
        feed(c, line + i, i + 333 > n + 2 ? n + 2 - i : 333);
    /* one readline per piece */
    for (;;) {
        int r;
        setup_line(c);
        r = ath_chat_next(c, &ev);
        if (!r)
            break;
        CHECK(ev.type == ATH_EV_LINE, "event %d", ev.type);
        if (nev < 8)
            lens[nev] = ev.len;
        nev++;
        if (got_n + ev.len <= n)
            memcpy(back + got_n, ev.line, ev.len);
        got_n += ev.len;
    }
    ath_chat_cancel(c);
    CHECK(nev == 3 && lens[0] == 1000 && lens[1] == 1000 && lens[2] == 500,
          "%d pieces (want 1000, 1000, 500)", nev);
    CHECK(got_n == n && memcmp(back, line, n) == 0,
          "the pieces (%zu bytes) are not the line (%zu bytes)", got_n, n);
    ath_chat_free(c);

    /* the same as a command's reply: pieces, then the final result */
    c = ath_chat_new(1000, 0);
    setup_cgmr(c);
    feed(c, line, n + 2);
    feed(c, S("OK\r\n"));
    nev = 0;
    got_n = 0;
    while (ath_chat_next(c, &ev)) {
        if (ev.type == ATH_EV_REPLY) {
            if (got_n + ev.len <= n)
                memcpy(back + got_n, ev.line, ev.len);
            got_n += ev.len;
            CHECK(ev.len <= 1000, "a piece of %zu bytes", ev.len);
        } else {
            CHECK(ev.type == ATH_EV_FINAL && got_n == n,
                  "event %d after %zu bytes", ev.type, got_n);
        }
        nev++;
    }
    CHECK(nev == 4, "%d events, want 3 pieces and OK", nev);
    CHECK(got_n == n && memcmp(back, line, n) == 0, "bytes lost");
    ath_chat_free(c);
    free(line);
    free(back);
}

static void test_backlog_expect(void)
{
    ath_chat_t *c = ath_chat_new(0, 0);
    ath_wait_t w;
    char *got;
    feed(c, S("\r\nOK\r\n\r\nCONNECT OK\r\n"));
    got = events(c);
    same(__LINE__, "no wait", got, "");
    free(got);
    CHECK(ath_chat_pending(c) > 0, "the lines were not kept");
    setup_mipstart(c);
    got = events(c);
    same(__LINE__, "expect on kept lines", got, "MATCH#0 \"CONNECT OK\"");
    free(got);
    ath_chat_free(c);

    /* kept lines come back in order to readline */
    c = ath_chat_new(0, 0);
    feed(c, S("\r\none\r\n\r\ntwo\r\nthr"));
    free(events(c));
    line_is(__LINE__, c, "first kept line", "LINE \"one\"");
    line_is(__LINE__, c, "second kept line", "LINE \"two\"");
    line_is(__LINE__, c, "an unterminated line", "");
    feed(c, S("ee\r\n"));
    got = events(c);
    same(__LINE__, "third line", got, "LINE \"three\"");
    free(got);
    ath_chat_free(c);

    /* a second wait is refused; a cancelled one keeps what follows */
    c = ath_chat_new(0, 0);
    setup_cgatt(c);
    w = cmd_wait("AT", NULL);
    CHECK(ath_chat_wait(c, &w) == -1, "a second wait was accepted");
    ath_chat_cancel(c);
    CHECK(!ath_chat_waiting(c), "cancel left a wait");
    feed(c, S("\r\n+CGATT: 1\r\n"));
    got = events(c);
    same(__LINE__, "after cancel", got, "");
    free(got);
    line_is(__LINE__, c, "kept after cancel", "LINE \"+CGATT: 1\"");
    ath_chat_free(c);
}

static void test_flush(void)
{
    ath_chat_t *c = ath_chat_new(0, 0);
    char *got;
    feed(c, S("\r\n+CGATT: 0\r\n\r\nstale\r\n\r\nOK\r\n"));
    free(events(c));
    ath_chat_flush(c);
    CHECK(ath_chat_pending(c) == 0, "%zu bytes left after flush",
          ath_chat_pending(c));
    setup_cgatt(c);
    got = events(c);
    same(__LINE__, "the stale lines", got, "");
    free(got);
    feed(c, S("AT+CGATT?\r\r\n+CGATT: 1\r\n\r\nOK\r\n"));
    got = events(c);
    same(__LINE__, "the new command", got,
         "REPLY \"+CGATT: 1\"; FINAL OK \"OK\"");
    free(got);
    ath_chat_free(c);
}

static void test_backlog_bound(void)
{
    ath_chat_t *c = ath_chat_new(0, 1024);
    ath_chat_event_t ev;
    char line[128];
    size_t fed = 0, dropped = 0;
    int i, n, ndrop = 0;
    for (i = 0; i < 100; i++) {
        n = snprintf(line, sizeof line, "LINE%03d %s\r\n", i,
                     "................................................"
                     "........................................");
        feed(c, line, (size_t)n);
        fed += (size_t)n;
        while (ath_chat_next(c, &ev)) {
            CHECK(ev.type == ATH_EV_DROP, "event %d with no wait", ev.type);
            dropped += ev.len;
            ndrop++;
        }
        CHECK(ath_chat_pending(c) <= 1024 + sizeof line,
              "%zu bytes kept, bound 1024", ath_chat_pending(c));
    }
    CHECK(ndrop > 0, "nothing dropped from %zu bytes", fed);
    CHECK(dropped + ath_chat_pending(c) == fed,
          "dropped %zu + kept %zu != fed %zu", dropped, ath_chat_pending(c),
          fed);
    /* what is left starts at a line start and ends with the newest line */
    setup_line(c);
    CHECK(ath_chat_next(c, &ev) && ev.type == ATH_EV_LINE &&
          ev.len > 7 && memcmp(ev.line, "LINE0", 5) == 0 &&
          ev.line[5] >= '8',
          "the oldest kept line is \"%.*s\"", (int)ev.len, ev.line);
    ath_chat_free(c);

    c = ath_chat_new(0, 1024);
    for (i = 0; i < 100; i++) {
        n = snprintf(line, sizeof line, "\r\nLINE%03d\r\n", i);
        feed(c, line, (size_t)n);
        while (ath_chat_next(c, &ev))
            ;
    }
    {
        ath_wait_t w;
        static const ath_pat_t last = LIT("LINE099");
        memset(&w, 0, sizeof w);
        w.mode = ATH_WAIT_EXPECT;
        w.alts = &last;
        w.nalts = 1;
        start(c, &w);
        CHECK(ath_chat_next(c, &ev) && ev.type == ATH_EV_MATCH,
              "the newest line was not kept");
    }
    ath_chat_free(c);
}

/* Resident memory in bytes, or 0 if unknown. */
static size_t rss(void)
{
    FILE *f = fopen("/proc/self/statm", "r");
    unsigned long size, res;
    int n;
    if (f == NULL)
        return 0;
    n = fscanf(f, "%lu %lu", &size, &res);
    fclose(f);
    return n == 2 ? res * (size_t)sysconf(_SC_PAGESIZE) : 0;
}

static void test_memory_bounded(void)
{
    size_t chunk = 64 * 1024, total = 64u << 20, fed, maxpend = 0;
    size_t before, after, i;
    char *data = xmalloc(chunk);
    ath_chat_t *c = ath_chat_new(0, 0);
    ath_chat_event_t ev;
    /* lines nobody waits for */
    for (i = 0; i < chunk; i++)
        data[i] = (i % 64 == 62) ? '\r' : (i % 64 == 63) ? '\n' : 'x';
    before = rss();
    for (fed = 0; fed < total; fed += chunk) {
        if (ath_chat_feed(c, data, chunk) != 0)   /* no copy: RSS counts */
            break;
        while (ath_chat_next(c, &ev))
            CHECK(ev.type == ATH_EV_DROP, "event %d with no wait", ev.type);
        if (ath_chat_pending(c) > maxpend)
            maxpend = ath_chat_pending(c);
    }
    CHECK(maxpend <= ATH_CHAT_BACKLOG + chunk, "%zu bytes kept", maxpend);
    /* one line end-less stream nobody waits for */
    memset(data, 'y', chunk);
    maxpend = 0;
    for (fed = 0; fed < total; fed += chunk) {
        if (ath_chat_feed(c, data, chunk) != 0)   /* no copy: RSS counts */
            break;
        while (ath_chat_next(c, &ev))
            CHECK(ev.type == ATH_EV_DROP, "event %d with no wait", ev.type);
        if (ath_chat_pending(c) > maxpend)
            maxpend = ath_chat_pending(c);
    }
    CHECK(maxpend <= ATH_CHAT_MAX_LINE + ATH_CHAT_BACKLOG + chunk,
          "%zu bytes kept of a stream with no line end", maxpend);
    after = rss();
    CHECK(before == 0 || after < before + (32u << 20),
          "resident memory grew by %zu KiB over 128 MiB fed",
          (after - before) / 1024);
    ath_chat_free(c);
    free(data);
}

static void test_urc_mid_backlog(void)
{
    ath_chat_t *c = ath_chat_new(0, 0);
    char *got;
    urc(c, &P_CREG, URC_CREG);
    feed(c, S("\r\nfirst\r\n\r\n+CREG: 1\r\n\r\nsecond\r\n\r\n+CREG: 2\r\n"
              "third\r\n"));
    got = events(c);
    same(__LINE__, "URCs from the backlog", got,
         "URC#7 \"+CREG: 1\"; URC#7 \"+CREG: 2\"");
    free(got);
    line_is(__LINE__, c, "first kept", "LINE \"first\"");
    line_is(__LINE__, c, "second kept", "LINE \"second\"");
    line_is(__LINE__, c, "third kept", "LINE \"third\"");
    CHECK(ath_chat_pending(c) <= 1, "%zu bytes left", ath_chat_pending(c));
    ath_chat_free(c);

    /* a counted URC inside the backlog: its payload goes, the rest stays */
    c = ath_chat_new(0, 0);
    urc(c, &P_MSUB, URC_MSUB);
    feed(c, S("\r\nfirst\r\n+MSUB: \"t\",12 byte," MSUB_PAYLOAD "\r\nsecond\r\n"));
    got = events(c);
    same(__LINE__, "counted URC from the backlog", got,
         "URC#5 \"+MSUB: \\\"t\\\",12 byte,\" [\"t\",\"12\"] "
         "payload \"ab\\r\\nOK\\r\\nxyzw\"");
    free(got);
    setup_cgmr(c);      /* revisits the backlog, as a command would not */
    ath_chat_cancel(c);
    line_is(__LINE__, c, "first kept", "LINE \"first\"");
    line_is(__LINE__, c, "second kept", "LINE \"second\"");
    ath_chat_free(c);

    /* a handler removed no longer claims */
    c = ath_chat_new(0, 0);
    urc(c, &P_CREG, URC_CREG);
    ath_chat_urc_remove(c, URC_CREG);
    feed(c, S("\r\n+CREG: 1\r\n"));
    got = events(c);
    same(__LINE__, "removed handler", got, "");
    free(got);
    ath_chat_free(c);
}

static void test_urc_added_later(void)
{
    ath_chat_t *c = ath_chat_new(0, 0);
    char *got;
    /* lines kept before a handler exists are its when it comes */
    feed(c, S("\r\nfirst\r\n\r\n+CREG: 1\r\n\r\nsecond\r\n"));
    free(events(c));
    urc(c, &P_CREG, URC_CREG);
    got = events(c);
    same(__LINE__, "handler added after its line", got, "URC#7 \"+CREG: 1\"");
    free(got);
    line_is(__LINE__, c, "first kept", "LINE \"first\"");
    line_is(__LINE__, c, "second kept", "LINE \"second\"");
    ath_chat_free(c);
}

/* ---- outcomes, echo, counts ---------------------------------------------- */

static const ath_pat_t P_CONNACK = LIT("CONNACK OK");
static const ath_pat_t P_CONNACK_FAIL[] = { LIT("CONNACK FAIL"),
                                            LIT("+CME ERROR"), LIT("ERROR") };
static const ath_pat_t P_CLOUDSUB = LIT("+CLOUDSUB:");
static const ath_pat_t P_SUBACK = LUA("^%+CLOUDSUBACK: ?<?(%w+)>?", 0);
static const ath_pat_t P_HTTPREAD_SIGNED = LUA("^%+HTTPREAD: ?(%-?%d+)", 1);
static const ath_pat_t P_MSUB_MAX = LUAMAX("^%+MSUB: \"([^\"]*)\",(%d+) byte,",
                                           2, 10);

static void setup_mconnect(ath_chat_t *c)
{
    ath_wait_t w = cmd_wait("AT+MCONNECT=1,60", NULL);
    w.echo_check = 1;
    w.outs = &P_CONNACK;
    w.nouts = 1;
    w.ofails = P_CONNACK_FAIL;
    w.nofails = 3;
    urc(c, &P_CGREG, URC_CGREG);
    start(c, &w);
}

static void setup_cloudsub(ath_chat_t *c)
{
    ath_wait_t w = cmd_wait("AT+CLOUDSUB=/t,0", &P_CLOUDSUB);
    w.outs = &P_SUBACK;
    w.nouts = 1;
    start(c, &w);
}

static void test_outcome_orders(void)
{
    DIALOGUE(setup_mconnect, "\r\nOK\r\n\r\nCONNACK OK\r\n",
             "FINAL OK more \"OK\"; OUTCOME#0 \"CONNACK OK\"");
    DIALOGUE(setup_mconnect, "\r\nCONNACK OK\r\n\r\nOK\r\n",
             "OUTCOME#0 more \"CONNACK OK\"; FINAL OK \"OK\"");
    DIALOGUE(setup_mconnect,
             "AT+MCONNECT=1,60\r\r\nCONNACK OK\r\n\r\nOK\r\n",
             "OUTCOME#0 more \"CONNACK OK\"; FINAL OK \"OK\"");
    /* After OK, other text is passed over and URCs still run. */
    DIALOGUE(setup_mconnect,
             "\r\nOK\r\n\r\n+CGREG: 1\r\n\r\nhello\r\n\r\nCONNACK OK\r\n",
             "FINAL OK more \"OK\"; URC#3 \"+CGREG: 1\"; "
             "OUTCOME#0 \"CONNACK OK\"");
    /* Still waiting after OK alone. */
    DIALOGUE(setup_mconnect, "\r\nOK\r\n", "FINAL OK more \"OK\" [waiting]");
}

static void test_outcome_failures(void)
{
    /* ERROR as a failure outcome means one after OK ... */
    DIALOGUE(setup_mconnect, "\r\nOK\r\n\r\n+CME ERROR: 767\r\n",
             "FINAL OK more \"OK\"; OUTFAIL#1 \"+CME ERROR: 767\"");
    /* ... before OK it is the command's own final result. */
    DIALOGUE(setup_mconnect, "\r\n+CME ERROR: 3\r\n", "FINAL CME \"+CME ERROR: 3\"");
    DIALOGUE(setup_mconnect, "\r\nCONNACK FAIL\r\n", "OUTFAIL#0 \"CONNACK FAIL\"");
    DIALOGUE(setup_mconnect, "\r\nCONNACK OK\r\n\r\nERROR\r\n",
             "OUTCOME#0 more \"CONNACK OK\"; FINAL ERROR \"ERROR\"");
}

static void test_outcome_shared_prefix(void)
{
    /* +CLOUDSUBACK is the outcome, not a reply of AT+CLOUDSUB. */
    DIALOGUE(setup_cloudsub,
             "AT+CLOUDSUB=/t,0\r\r\n+CLOUDSUBACK: <OK>\r\n\r\nOK\r\n",
             "OUTCOME#0 more \"+CLOUDSUBACK: <OK>\" [\"OK\"]; FINAL OK \"OK\"");
    DIALOGUE(setup_cloudsub, "\r\nOK\r\n\r\n+CLOUDSUBACK: OK\r\n",
             "FINAL OK more \"OK\"; OUTCOME#0 \"+CLOUDSUBACK: OK\" [\"OK\"]");
}

static void setup_at(ath_chat_t *c)
{
    ath_wait_t w = cmd_wait("AT", NULL);
    w.echo_check = 1;
    start(c, &w);
}

static void test_wrong_echo(void)
{
    DIALOGUE(setup_at, "AT\r\r\nOK\r\n", "FINAL OK \"OK\"");
    DIALOGUE(setup_at, "AT+CFUN=0\r\r\nOK\r\n", "ECHO \"AT+CFUN=0\"");
    DIALOGUE(setup_mconnect, "AT+MCONNECT=1,30\r\r\nOK\r\n",
             "ECHO \"AT+MCONNECT=1,30\"");
    /* Once the module answered, a line starting with AT is text. */
    DIALOGUE(setup_cgmr, "\r\nAirM2M\r\nATTACHED\r\n\r\nOK\r\n",
             "REPLY? \"AirM2M\"; REPLY? \"ATTACHED\"; FINAL OK \"OK\"");
}

static void setup_httpread_signed(ath_chat_t *c)
{
    ath_wait_t w = cmd_wait("AT+HTTPREAD", &P_HTTPREAD_SIGNED);
    start(c, &w);
}

static void setup_msub_max(ath_chat_t *c)
{
    urc(c, &P_MSUB_MAX, URC_MSUB);
}

static void test_bad_counts(void)
{
    DIALOGUE(setup_httpread_signed,
             "\r\n+HTTPREAD: 2147483648\r\nabc\r\nOK\r\n",
             "BADCOUNT DIGITS REPLY#0 2147483648 \"+HTTPREAD: 2147483648\" "
             "[\"2147483648\"]");
    DIALOGUE(setup_httpread_signed, "\r\n+HTTPREAD: -5\r\nOK\r\n",
             "BADCOUNT NEGATIVE REPLY#0 -5 \"+HTTPREAD: -5\" [\"-5\"]");
    DIALOGUE(setup_httpread_signed, "\r\n+HTTPREAD: 5\r\nhello\r\nOK\r\n",
             "REPLY \"+HTTPREAD: 5\" [\"5\"] payload \"hello\"; FINAL OK \"OK\"");
    /* Too short a count: the line does not end after it. */
    DIALOGUE(setup_httpread_signed, "\r\n+HTTPREAD: 3\r\nhello\r\nOK\r\n",
             "BADCOUNT TRAILER REPLY#0 3 \"+HTTPREAD: 3\" [\"3\"]");
    /* URCs: above max, and a mismatch; the lines after are read again. */
    DIALOGUE(setup_msub_max,
             "\r\n+MSUB: \"t\",11 byte,hello world\r\n"
             "\r\n+MSUB: \"t\",3 byte,hello\r\n"
             "\r\n+MSUB: \"t\",5 byte,hello\r\n",
             "BADCOUNT MAX URC#5 11 \"+MSUB: \\\"t\\\",11 byte,hello world\" "
             "[\"t\",\"11\"]; "
             "BADCOUNT TRAILER URC#5 3 \"+MSUB: \\\"t\\\",3 byte,hello\" "
             "[\"t\",\"3\"]; "
             "URC#5 \"+MSUB: \\\"t\\\",5 byte,\" [\"t\",\"5\"] payload \"hello\"");
    /* Too long a count swallows no line: the next line is a line. */
    DIALOGUE(setup_msub_max,
             "\r\n+MSUB: \"t\",9 byte,hello\r\n+CGREG: 1\r\n",
             "BADCOUNT TRAILER URC#5 9 \"+MSUB: \\\"t\\\",9 byte,hello\" "
             "[\"t\",\"9\"]");
}

static void test_pat_match(void)
{
    static const ath_pat_t lit = LIT("+CSQ:"), lua = LUA("^%+CSQ: (%d+),(%d+)", 0);
    ath_match_t m;
    CHECK(ath_pat_match(&lit, S("+CSQ: 31,99"), &m) && m.end == 5,
          "literal prefix");
    CHECK(!ath_pat_match(&lit, S(" +CSQ: 31,99"), &m), "literal not at start");
    CHECK(!ath_pat_match(&lit, S("+CSQ"), &m), "literal longer than line");
    CHECK(ath_pat_match(&lua, S("+CSQ: 31,99"), &m) && m.ncap == 2 &&
          m.cap[0].off == 6 && m.cap[0].len == 2 && m.cap[1].off == 9,
          "Lua pattern captures");
    CHECK(!ath_pat_match(&lua, S("x+CSQ: 31,99"), &m), "anchored");
}

/* ---- main ------------------------------------------------------------------ */

/* ---- linear work, max_line, chunking ------------------------------------ */

/* Feeds data[0, n) in chunks of `chunk` bytes, pulling everything after
 * each; returns the engine's work. */
static size_t feed_work(ath_chat_t *c, const char *data, size_t n, size_t chunk)
{
    size_t at;
    ath_chat_event_t ev;
    for (at = 0; at < n; at += chunk) {
        feed(c, data + at, n - at < chunk ? n - at : chunk);
        while (ath_chat_next(c, &ev))
            ;
    }
    return ath_chat_work(c);
}

static void test_partial_line_linear(void)
{
    size_t n = 1u << 20, i, as_lines, partial;
    char *data = xmalloc(n), *lines = xmalloc(n);
    ath_chat_t *c;
    memcpy(data, "+MSUB: \"", 8);
    memset(data + 8, 'a', n - 8);
    /* the same bytes as lines of 1 KiB */
    memcpy(lines, data, n);
    for (i = 1022; i + 1 < n; i += 1024) {
        lines[i] = '\r';
        lines[i + 1] = '\n';
    }
    c = ath_chat_new(0, 0);
    urc(c, &P_MSUB, URC_MSUB);
    as_lines = feed_work(c, lines, n, 1024);
    ath_chat_free(c);
    c = ath_chat_new(0, 0);
    urc(c, &P_MSUB, URC_MSUB);
    partial = feed_work(c, data, n, 1024);
    ath_chat_free(c);
    CHECK(partial <= 3 * as_lines,
          "1 MiB unterminated +MSUB in 1 KiB writes: %zu bytes matched, "
          "as lines %zu", partial, as_lines);
    free(data);
    free(lines);
}

/* A counted pattern that matches to the end of what arrived. */
static const ath_pat_t P_GREEDY = LUA("^%+X: (%d+) (.*)", 1);

static void test_greedy_count_max_line(void)
{
    size_t n = 200000, maxpend = 0, at;
    char *data = xmalloc(n);
    ath_chat_event_t ev;
    ath_chat_t *c = ath_chat_new(4096, 8192);
    memcpy(data, "+X: 5 ", 6);
    memset(data + 6, 'a', n - 6);
    urc(c, &P_GREEDY, 1);
    for (at = 0; at < n; at += 100) {
        feed(c, data + at, 100);
        while (ath_chat_next(c, &ev))
            ;
        if (ath_chat_pending(c) > maxpend)
            maxpend = ath_chat_pending(c);
    }
    CHECK(maxpend <= 4096 + 8192 + 100, "%zu bytes pending (max_line 4096, "
          "backlog 8192)", maxpend);
    ath_chat_free(c);
    free(data);
}

static uint32_t prop_rand(uint32_t *x)
{
    *x ^= *x << 13;
    *x ^= *x >> 17;
    *x ^= *x << 5;
    return *x;
}

/* A random stream: lines, counted messages inline and after the line end
 * (some with wrong counts), noise, over-long lines. */
static size_t prop_stream(uint32_t *x, char *out, size_t cap)
{
    size_t n = 0;
    while (n + 3000 < cap) {
        uint32_t k = prop_rand(x) % 10;
        char tmp[64];
        size_t i, len;
        switch (k) {
        case 0: n += (size_t)sprintf(out + n, "\r\n+CGREG: 0,%u\r\n", prop_rand(x) % 6); break;
        case 1: n += (size_t)sprintf(out + n, "\r\nOK\r\n"); break;
        case 2: /* inline payload with line ends and a fake OK in it */
            len = prop_rand(x) % 40;
            n += (size_t)sprintf(out + n, "\r\n+MSUB: \"t/%u\",%zu byte,", prop_rand(x) % 9, len);
            for (i = 0; i < len; i++)
                out[n++] = "ab\r\nOK\"+,"[prop_rand(x) % 9];
            n += (size_t)sprintf(out + n, "\r\n");
            break;
        case 3: /* a count that does not fit what follows */
            n += (size_t)sprintf(out + n, "\r\n+MSUB: \"t\",%u byte,hello\r\n", prop_rand(x) % 12);
            break;
        case 4: /* payload after the line end */
            len = prop_rand(x) % 30;
            n += (size_t)sprintf(out + n, "\r\n+HTTPREAD: %zu\r\n", len);
            for (i = 0; i < len; i++)
                out[n++] = "{}\"x\r\n"[prop_rand(x) % 6];
            n += (size_t)sprintf(out + n, "\r\nOK\r\n");
            break;
        case 5: /* noise */
            for (i = prop_rand(x) % 8; i > 0; i--)
                out[n++] = (char)(prop_rand(x) % 256);
            break;
        case 6: /* an over-long line, a counted one too */
            len = 2000 + prop_rand(x) % 900;
            n += (size_t)sprintf(out + n, "\r\n%s", prop_rand(x) % 2 ? "+MSUB: \"" : "");
            for (i = 0; i < len; i++)
                out[n++] = 'z';
            n += (size_t)sprintf(out + n, "\r\n");
            break;
        case 7: /* a counted header longer than 1 KiB, or than max_line */
            len = prop_rand(x) % 2 ? 1500 : 2100;
            n += (size_t)sprintf(out + n, "\r\n+MSUB: \"");
            for (i = 0; i < len; i++)
                out[n++] = 'q';
            n += (size_t)sprintf(out + n, "\",5 byte,hello\r\n+MSUB: %u\r\n",
                                 prop_rand(x) % 4);
            break;
        case 8: /* a count whose payload is not followed by a line end,
                 * in a line longer than max_line: the line reported is
                 * the same however the bytes are cut */
            len = 2100 + prop_rand(x) % 600;
            n += (size_t)sprintf(out + n, "\r\n+MSUB: \"t\",5 byte,hello");
            for (i = 0; i < len; i++)
                out[n++] = "o\xff\x03"[prop_rand(x) % 3];
            n += (size_t)sprintf(out + n, "\r\n");
            break;
        default:
            snprintf(tmp, sizeof tmp, "\r\n+HTTPREAD: -%u\r\n", prop_rand(x) % 9);
            memcpy(out + n, tmp, strlen(tmp));
            n += strlen(tmp);
        }
    }
    return n;
}

static const ath_pat_t P_MSUB_SIGNED = LUA("^%+MSUB: \"([^\"]*)\",(%-?%d+) byte,", 2);
static const ath_pat_t P_HTTPREAD_URC = LUA("^%+HTTPREAD: (%-?%d+)$", 1);
static const ath_pat_t P_SLOT = LUA("^%+MSUB: (%d+)$", 0);

/* Events of one stream fed in the chunks cuts gives (NULL: whole). */
static char *prop_events(const char *data, size_t n, const size_t *cuts,
                         size_t ncuts)
{
    ath_chat_t *c = ath_chat_new(2048, 1u << 20);
    buf_t b = { 0 };
    size_t i, at = 0;
    urc(c, &P_MSUB_SIGNED, 1);
    urc(c, &P_HTTPREAD_URC, 2);
    urc(c, &P_SLOT, 3);
    urc(c, &P_CGREG, 4);
    for (i = 0; i <= ncuts; i++) {
        size_t end = i < ncuts ? cuts[i] : n;
        feed(c, data + at, end - at);
        pull(c, &b);
        at = end;
    }
    ath_chat_free(c);
    return buf_take(&b);
}

static void test_chunking_property(void)
{
    size_t cap = 12 * 1024, n, ncuts, i, *cuts = xmalloc(cap * sizeof *cuts);
    char *data = xmalloc(cap);
    uint32_t seed;
    for (seed = 1; seed <= 200 && !failed_now; seed++) {
        uint32_t x = seed * 2654435761u;
        char *whole, *split;
        int way;
        n = prop_stream(&x, data, cap);
        whole = prop_events(data, n, NULL, 0);
        for (way = 0; way < 3 && !failed_now; way++) {
            size_t at = 0;
            ncuts = 0;
            while (at < n) {
                size_t step = way == 0 ? 1 : way == 1 ? 1 + prop_rand(&x) % 7
                                                      : 1 + prop_rand(&x) % 1500;
                at += step;
                if (at < n)
                    cuts[ncuts++] = at;
            }
            split = prop_events(data, n, cuts, ncuts);
            if (strcmp(whole, split) != 0) {
                size_t d = 0;
                while (whole[d] && whole[d] == split[d])
                    d++;
                fail_at(__LINE__, "seed %u, chunking %d: events differ at %zu:\n"
                        "    whole  ...%.160s\n    split  ...%.160s", seed, way, d,
                        whole + (d > 40 ? d - 40 : 0), split + (d > 40 ? d - 40 : 0));
            }
            free(split);
        }
        free(whole);
    }
    (void)i;
    free(cuts);
    free(data);
}

static void run(const char *name, void (*fn)(void))
{
    test_name = name;
    failed_now = 0;
    fn();
    if (failed_now)
        nfail++;
    else
        npass++;
    fflush(stdout);
}

int main(void)
{
    run("reply and OK", test_reply_ok);
    run("a reply one byte at a time", test_byte_at_a_time);
    run("a URC between command and reply", test_urc_between);
    run("a reply sharing a URC's prefix", test_shared_prefix);
    run("echo skipped", test_echo);
    run("prompts without CR/LF, DOWNLOAD", test_prompts);
    run("final result codes and aborts", test_finals);
    run("counted payload inline", test_counted_inline);
    run("counted payload after the line end", test_counted_after_line);
    run("exact read of 1 MiB in odd chunks", test_read_1mib);
    run("a payload or read taken from the engine", test_take);
    run("a read keeps raw bytes for the next", test_read_keeps_bytes);
    run("recv: what is there", test_recv_some);
    run("garbage and NUL bytes between lines", test_garbage);
    run("a 100 KiB line", test_long_line);
    run("a line over max_line in pieces", test_overlong_line);
    run("backlog matched by a later wait", test_backlog_expect);
    run("flush discards stale lines", test_flush);
    run("backlog bound drops oldest lines", test_backlog_bound);
    run("memory bounded with nobody waiting", test_memory_bounded);
    run("a URC claimed from the middle of the backlog",
        test_urc_mid_backlog);
    run("a URC handler added after its line", test_urc_added_later);
    run("ath_pat_match", test_pat_match);
    run("an outcome URC before or after OK", test_outcome_orders);
    run("failure outcomes and final results", test_outcome_failures);
    run("an outcome sharing the reply prefix", test_outcome_shared_prefix);
    run("another command's echo", test_wrong_echo);
    run("wrong payload counts", test_bad_counts);
    run("an unterminated counted line costs no more than lines",
        test_partial_line_linear);
    run("a counted pattern matching to the end keeps max_line",
        test_greedy_count_max_line);
    run("property: the same events for any chunking (200 streams)",
        test_chunking_property);
    printf("%d passed, %d failed\n", npass, nfail);
    return nfail > 0;
}
