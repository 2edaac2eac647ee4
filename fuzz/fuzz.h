/*
 * fuzz.h: what the libFuzzer harnesses in fuzz/ share: reading the
 * fuzzer's bytes as a little program, and failing loudly.
 */
#ifndef ATH_FUZZ_H
#define ATH_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The fuzzer's input, consumed from the front. Reading past its end
 * gives zeros (a byte) or nothing (a run of bytes). */
typedef struct fz_in {
    const uint8_t *p;
    size_t n;
} fz_in_t;

static inline unsigned fz_byte(fz_in_t *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

/* Up to want bytes; *got says how many. */
static inline const char *fz_take(fz_in_t *in, size_t want, size_t *got)
{
    const char *s = (const char *)in->p;
    if (want > in->n)
        want = in->n;
    in->p += want;
    in->n -= want;
    *got = want;
    return s;
}

/* An invariant: abort() (which libFuzzer records as a crash) with the
 * reason on stderr. */
#define FZ_CHECK(cond, ...)                                                  \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: invariant broken: ", __FILE__, __LINE__); \
            fprintf(stderr, __VA_ARGS__);                                    \
            fputc('\n', stderr);                                             \
            abort();                                                         \
        }                                                                    \
    } while (0)

/* A growing byte record of what one run produced (data, answers,
 * events), to compare with another run's record of the same input. */
typedef struct fz_buf {
    unsigned char *b;
    size_t len, cap;
} fz_buf_t;

static inline void fz_put(fz_buf_t *b, const void *s, size_t n)
{
    if (n == 0)
        return;
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < b->len + n)
            cap *= 2;
        b->b = realloc(b->b, cap);
        FZ_CHECK(b->b != NULL, "out of memory");
        b->cap = cap;
    }
    memcpy(b->b + b->len, s, n);
    b->len += n;
}

#endif
