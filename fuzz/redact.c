/*
 * redact.c: host/redact.c, secrets masked in a stream, against the plain
 * definition (redact_ref.h). Input: a byte giving 1 to 4 patterns and
 * their lengths (1 to 16 bytes, taken from the input), a byte per cut,
 * then the text over a small alphabet so that patterns recur. The text
 * fed whole and fed in pieces must give exactly the reference's output; with a pattern registered
 * after the first piece, or a forced flush (the transcript's timer)
 * after every piece, no pattern may show.
 */
#include "fuzz.h"
#include "redact.h"
#include "redact_ref.h"

static void text(const char *raw, size_t n, char *out)
{
    size_t i;
    for (i = 0; i < n; i++)
        out[i] = "abcAB\n*\0"[(unsigned char)raw[i] % 8];
}

/* No pattern of at least min bytes and without a '*' (which *** could
 * spell) shows in out. */
static void no_pattern(const char *const *pats, size_t np,
                       const ath_buf_t *out, size_t min)
{
    size_t i, k;
    for (i = 0; i < np; i++) {
        size_t pl = strlen(pats[i]);
        if (memchr(pats[i], '*', pl) || pl < min)
            continue;
        for (k = 0; k + pl <= out->len; k++)
            FZ_CHECK(memcmp(out->b + k, pats[i], pl) != 0,
                     "pattern %zu shows", i);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in_t in = {data, size};
    char pbuf[4][17], *s, *ref, *whole;
    const char *pats[4];
    size_t np = 1 + fz_byte(&in) % 4, i, n, refn, wn, got;
    unsigned cut;
    ath_ac_t *ac, *ac1;
    ath_rs_t rs;
    ath_buf_t out = {NULL, 0, 0};
    const char *raw;
    for (i = 0; i < np; i++) {
        size_t len = 1 + fz_byte(&in) % 16;
        raw = fz_take(&in, len, &got);
        text(raw, got, pbuf[i]);
        pbuf[i][got] = '\0';
        if (strlen(pbuf[i]) == 0)
            strcpy(pbuf[i], "ab");
        pats[i] = pbuf[i];
    }
    cut = fz_byte(&in);
    raw = fz_take(&in, in.n > 2000 ? 2000 : in.n, &n);
    s = malloc(n + 1);
    text(raw, n, s);
    ref = redact_ref(pats, np, s, n, &refn);
    ac = ath_ac_new(pats, np);
    FZ_CHECK(ac != NULL, "out of memory");
    whole = ath_ac_mask(ac, s, n, &wn);
    FZ_CHECK(wn == refn && memcmp(whole, ref, wn) == 0,
             "whole: %zu bytes, the reference %zu", wn, refn);
    /* in pieces of 1 + cut % 37 bytes: the same */
    ath_rs_init(&rs);
    for (i = 0; i < n;) {
        size_t step = 1 + (cut + i) % 37;
        if (step > n - i)
            step = n - i;
        ath_rs_feed(&rs, ac, s + i, step, &out);
        i += step;
    }
    ath_rs_flush(&rs, &out, 0);
    FZ_CHECK(out.len == refn && (refn == 0 || memcmp(out.b, ref, refn) == 0),
             "in pieces: %zu bytes, the reference %zu", out.len, refn);
    ath_rs_free(&rs);
    /* the last pattern registered after the first piece (the held bytes
     * are read again): the others still never show */
    out.len = 0;
    ac1 = ath_ac_new(pats, np - 1);
    FZ_CHECK(ac1 != NULL, "out of memory");
    for (i = 0; i < n;) {
        size_t step = 1 + (cut + i) % 37;
        if (step > n - i)
            step = n - i;
        ath_rs_feed(&rs, i == 0 ? ac1 : ac, s + i, step, &out);
        i += step;
    }
    ath_rs_flush(&rs, &out, 0);
    no_pattern(pats, np - 1, &out, 1);
    ath_rs_free(&rs);
    /* with a partial flush (the transcript's timer) after every piece:
     * no pattern without a '*' shows */
    ath_rs_free(&rs);
    out.len = 0;
    for (i = 0; i < n;) {
        size_t step = 1 + (cut + i) % 37;
        if (step > n - i)
            step = n - i;
        ath_rs_feed(&rs, ac, s + i, step, &out);
        ath_rs_flush(&rs, &out, 1);
        i += step;
    }
    no_pattern(pats, np, &out, ATH_RS_PARTIAL_MIN + 1);
    ath_rs_free(&rs);
    ath_ac_free(ac);
    ath_ac_free(ac1);
    free(out.b);
    free(whole);
    free(ref);
    free(s);
    return 0;
}
