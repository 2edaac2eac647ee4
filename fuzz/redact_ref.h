/*
 * redact_ref.h: the plain definition of what host/redact.c computes, to
 * check it against: every byte inside any occurrence of any pattern is
 * masked, each maximal run of masked bytes written as one "***".
 * Quadratic, for short inputs only.
 */
#ifndef ATH_REDACT_REF_H
#define ATH_REDACT_REF_H

#include <stdlib.h>
#include <string.h>

static char *redact_ref(const char *const *pats, size_t npats, const char *s,
                        size_t n, size_t *outn)
{
    unsigned char *mask = calloc(n + 1, 1);
    char *out = malloc(3 * n + 1);
    size_t i, k, o = 0;
    for (k = 0; k < npats; k++) {
        size_t pl = strlen(pats[k]);
        for (i = 0; pl > 0 && i + pl <= n; i++)
            if (memcmp(s + i, pats[k], pl) == 0)
                memset(mask + i, 1, pl);
    }
    for (i = 0; i < n; i++) {
        if (!mask[i])
            out[o++] = s[i];
        else if (i == 0 || !mask[i - 1]) {
            memcpy(out + o, "***", 3);
            o += 3;
        }
    }
    out[o] = '\0';
    *outn = o;
    free(mask);
    return out;
}

#endif
