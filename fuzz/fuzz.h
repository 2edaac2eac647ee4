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

#endif
