// unit: host/host.c host/flow.c host/event.c host/lhost.c host/chat.c host/pattern.c host/port.c host/lport.c host/lchat.c host/lopen.c host/transcript.c host/redact.c host/crypto.c host/tls.c host/ltls.c host/lfile.c host/telnet.c host/rfc2217.c host/ledit.c host/lalloc.c host/core.c -llua5.4-cjson -ledit -luv -lssl -lcrypto -lm
/*
 * event_test.c: what an embedder's event callback gets (host/event.c):
 * text with its length (text_len) so that a NUL in a log line cuts
 * nothing, errors with a NUL written \x00, JSON that is valid UTF-8 with
 * invalid bytes as \u00XX, and secrets masked in all of them; and
 * ath_utf8_seq() against the RFC 3629 table.
 */
#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define S(lit) lit, sizeof(lit) - 1 /* a literal with its NULs */

/* ---- ath_utf8_seq ----------------------------------------------------- */

static void test_utf8_seq(void)
{
    static const struct {
        const char *s;
        size_t n, want;
        const char *what;
    } cases[] = {
        {S("A"), 1, "ASCII"},
        {S("\xc3\xa9"), 2, "e acute"},
        {S("\xe4\xb8\xad"), 3, "a CJK character"},
        {S("\xf0\x9f\x98\x80"), 4, "an emoji"},
        {S("\xf4\x8f\xbf\xbf"), 4, "U+10FFFF"},
        {S("\xef\xbf\xbf"), 3, "U+FFFF"},
        {S("\xed\x9f\xbf"), 3, "U+D7FF, below the surrogates"},
        {S("\xff"), 0, "0xff"},
        {S("\xfe"), 0, "0xfe"},
        {S("\x80"), 0, "a lone continuation byte"},
        {S("\xbf"), 0, "a lone continuation byte (0xbf)"},
        {S("\xc0\xaf"), 0, "an overlong '/'"},
        {S("\xc1\xbf"), 0, "an overlong 2-byte form"},
        {S("\xe0\x80\xaf"), 0, "an overlong 3-byte form"},
        {S("\xf0\x80\x80\xaf"), 0, "an overlong 4-byte form"},
        {S("\xed\xa0\x80"), 0, "a surrogate"},
        {S("\xf4\x90\x80\x80"), 0, "above U+10FFFF"},
        {S("\xf5\x80\x80\x80"), 0, "a lead byte above 0xf4"},
        {S("\xe4\xb8"), 0, "a truncated 3-byte sequence"},
        {S("\xe4\xb8" "A"), 0, "a 3-byte sequence cut by ASCII"},
        {S("\xf0\x9f\x98"), 0, "a truncated 4-byte sequence"},
        {S("\xc3"), 0, "a lead byte alone"},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char what[128];
        snprintf(what, sizeof what, "ath_utf8_seq: %s", cases[i].what);
        CHECK(ath_utf8_seq(cases[i].s, cases[i].n) == cases[i].want, what);
    }
}

/* ---- the callback ----------------------------------------------------- */

typedef struct seen {
    char *log[4];
    size_t loglen[4];
    int nlog;
    char *result;
    size_t resultlen;
    int json_bad;
    char *json_log0;
} seen_t;

static char *memdup(const char *s, size_t n)
{
    char *d = malloc(n + 1);
    if (d) {
        memcpy(d, s, n);
        d[n] = '\0';
    }
    return d;
}

/* Whether s is valid UTF-8 with no control character (a JSON line). */
static int json_line_ok(const char *s)
{
    size_t n = strlen(s), i = 0, k;
    while (i < n) {
        if ((unsigned char)s[i] < 0x20)
            return 0;
        if ((k = ath_utf8_seq(s + i, n - i)) == 0)
            return 0;
        i += k;
    }
    return 1;
}

static void on_event(ath_host_t *h, const ath_event_t *ev, void *ud)
{
    seen_t *s = ud;
    (void)h;
    if (ev->json && !json_line_ok(ev->json))
        s->json_bad++;
    if (ev->type == ATH_EVENT_LOG && s->nlog < 4) {
        s->log[s->nlog] = memdup(ev->text, ev->text_len);
        s->loglen[s->nlog] = ev->text_len;
        if (s->nlog == 0)
            s->json_log0 = strdup(ev->json);
        s->nlog++;
    } else if (ev->type == ATH_EVENT_RESULT && ev->text) {
        s->result = memdup(ev->text, ev->text_len);
        s->resultlen = ev->text_len;
    }
}

static void test_callback(void)
{
    seen_t s;
    ath_host_opts_t o;
    ath_host_t *h;
    int i, rc;
    memset(&s, 0, sizeof s);
    memset(&o, 0, sizeof o);
    o.on_event = on_event;
    o.ud = &s;
    h = ath_host_new(NULL, &o);
    CHECK(h != NULL, "ath_host_new");
    if (h == NULL)
        return;
    rc = ath_host_load_string(h,
                              "local athost = require('athost')\n"
                              "athost.log('a\\0b\\255\\228\\184\\173')\n"
                              "athost.secret('S3cr3tXY')\n"
                              "athost.log('S3cr3tXY\\0S3cr3tXY')\n"
                              "error('x\\0y S3cr3tXY', 0)\n",
                              "=(test)");
    CHECK(rc == 0, "the chunk loads");
    rc = ath_host_run(h);
    CHECK(rc == ATH_EXIT_FAIL, "the run fails");
    CHECK(s.nlog == 2, "two log events");
    CHECK(s.loglen[0] == 7 && s.log[0] &&
              memcmp(s.log[0], S("a\0b\xff\xe4\xb8\xad")) == 0,
          "a log line with a NUL reaches the callback whole (text_len)");
    CHECK(s.json_log0 &&
              strstr(s.json_log0, "\"text\":\"a\\u0000b\\u00ff\xe4\xb8\xad\"") != NULL,
          "its JSON: NUL as \\u0000, an invalid byte as \\u00ff, UTF-8 as is");
    CHECK(s.loglen[1] == 7 && s.log[1] && memcmp(s.log[1], S("***\0***")) == 0,
          "secrets on both sides of a NUL are masked");
    CHECK(s.result && strcmp(s.result, "x\\x00y ***") == 0 &&
              s.resultlen == strlen(s.result),
          "the result's error: NUL written \\x00, the secret masked");
    CHECK(strcmp(ath_host_error(h), "x\\x00y ***") == 0,
          "ath_host_error(): NUL written \\x00, the secret masked");
    CHECK(s.json_bad == 0, "every event's JSON is valid UTF-8");
    ath_host_free(h);
    for (i = 0; i < s.nlog; i++)
        free(s.log[i]);
    free(s.json_log0);
    free(s.result);
}

/* ath_host_lazy_events(): no line unless the callback asks for it; the
 * line it asks for is the one a host without lazy gives. */
typedef struct lazy_seen {
    int with_json;  /* events that came with ev->json set */
    int data_json;  /* a data event whose ev->json is the flow's value */
    char *built[8]; /* ath_event_json() of each event */
    int n;
} lazy_seen_t;

static void on_lazy(ath_host_t *h, const ath_event_t *ev, void *ud)
{
    lazy_seen_t *s = ud;
    if (ev->type == ATH_EVENT_DATA)
        s->data_json += ev->json && strcmp(ev->json, "{\"imei\":\"1\"}") == 0;
    else if (ev->json)
        s->with_json++;
    if (s->n < 8)
        s->built[s->n++] = strdup(ath_event_json(h, ev));
}

static void lazy_run(int lazy, lazy_seen_t *s)
{
    ath_host_opts_t o;
    ath_host_t *h;
    memset(s, 0, sizeof *s);
    memset(&o, 0, sizeof o);
    o.on_event = on_lazy;
    o.ud = s;
    o.name = "dut1";
    h = ath_host_new(NULL, &o);
    if (h == NULL)
        return;
    ath_host_lazy_events(h, lazy);
    if (ath_host_load_string(h,
                             "local athost = require('athost')\n"
                             "athost.log('one')\n"
                             "athost.emit('dut', { imei = '1' })\n"
                             "athost.step('two', function() end)\n",
                             "=(lazy)") == 0)
        ath_host_run(h);
    ath_host_free(h);
}

static void test_lazy(void)
{
    lazy_seen_t a, b;
    int i, same = 1;
    lazy_run(1, &a);
    lazy_run(0, &b);
    CHECK(a.n >= 4 && a.with_json == 0,
          "lazy: the callback gets events without a JSON line");
    CHECK(a.data_json == 1, "lazy: a data event's json is the flow's value");
    CHECK(b.n >= 4 && b.with_json == b.n - 1,
          "not lazy: every event has its line");
    for (i = 0; i < a.n && i < b.n; i++) {
        /* the lines differ in their times only (t, ms) */
        const char *x = a.built[i] ? strstr(a.built[i], ",\"event\"") : NULL;
        const char *y = b.built[i] ? strstr(b.built[i], ",\"event\"") : NULL;
        const char *xm = x ? strstr(x, ",\"ms\":") : NULL;
        const char *ym = y ? strstr(y, ",\"ms\":") : NULL;
        size_t xn = x ? (xm ? (size_t)(xm - x) : strlen(x)) : 0;
        size_t yn = y ? (ym ? (size_t)(ym - y) : strlen(y)) : 0;
        if (!x || !y || xn != yn || memcmp(x, y, xn) != 0)
            same = 0;
    }
    CHECK(a.n == b.n && same,
          "ath_event_json() builds the line a host without lazy gives");
    for (i = 0; i < a.n; i++)
        free(a.built[i]);
    for (i = 0; i < b.n; i++)
        free(b.built[i]);
}

/* A secret is masked in each spelling athost puts one in on its way
 * out: as is, hex in both cases, base64, URL encoding, \HH escapes. */
static void test_spellings(void)
{
    const char *forms[] = {"k\"y z/1", "6b2279207a2f31", "6B2279207A2F31",
                           "ayJ5IHovMQ==", "k%22y%20z%2F1", "k\\22y z/1"};
    ath_host_opts_t o;
    ath_host_t *h;
    size_t i, n;
    int all = 1;
    memset(&o, 0, sizeof o);
    o.quiet = 1;
    h = ath_host_new(NULL, &o);
    if (h == NULL)
        return;
    ath_host_add_secret(h, "k\"y z/1");
    for (i = 0; i < sizeof forms / sizeof *forms; i++) {
        char line[128], *red;
        snprintf(line, sizeof line, "<%s>", forms[i]);
        red = ath_host_redact(h, line, strlen(line), &n);
        if (red == NULL || strcmp(red, "<***>") != 0) {
            fprintf(stderr, "spelling %s: %s\n", forms[i], red ? red : "(not masked)");
            all = 0;
        }
        free(red);
    }
    CHECK(all, "a secret is masked as is, in hex, HEX, base64, URL encoding and \\HH");
    ath_host_free(h);
}

int main(void)
{
    test_utf8_seq();
    test_callback();
    test_lazy();
    test_spellings();
    printf("event_test: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
