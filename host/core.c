/*
 * core.c: what a host is to the byte path and to everything above it:
 * its loop and clock, its transcript, whether it has secrets, the objects
 * it closes when a run ends and the handles they hold, its result, and
 * the freeing of the struct. It calls nothing of Lua and nothing above it:
 * port.c, tls.c and transcript.c call down to it, as do the Lua side and
 * host.c.
 */
#include "host.h"

#include <stdlib.h>

double ath_host_now(ath_host_t *h)
{
    return (double)uv_hrtime() / 1e6 - h->t0;
}

ath_tr_t *ath_host_tr(ath_host_t *h)
{
    return h->tr;
}

void ath_host_handles(ath_host_t *h, int delta)
{
    h->handles += delta;
    if (h->zombie && h->handles == 0)
        ath_host_release(h); /* a freed shared host's last handle closed */
}

int ath_host_has_secrets(ath_host_t *h)
{
    return h->nsecrets > 0;
}

/* ---- resources -------------------------------------------------------- */

void ath_host_res_add(ath_host_t *h, ath_res_t *r)
{
    if (h->res.next == NULL)
        h->res.next = h->res.prev = &h->res;
    r->next = h->res.next;
    r->prev = &h->res;
    h->res.next->prev = r;
    h->res.next = r;
}

void ath_host_res_del(ath_host_t *h, ath_res_t *r)
{
    (void)h;
    if (r->next == NULL)
        return;
    r->prev->next = r->next;
    r->next->prev = r->prev;
    r->next = r->prev = NULL;
}

int ath_host_close(ath_host_t *h)
{
    while (h->res.next != NULL && h->res.next != &h->res)
        h->res.next->close(h->res.next);
    return h->handles == 0;
}

uv_loop_t *ath_host_loop(ath_host_t *h)
{
    return h->loop;
}

int ath_host_done(const ath_host_t *h)
{
    return h->done;
}

int ath_host_status(const ath_host_t *h)
{
    return h->status;
}

const char *ath_host_error(const ath_host_t *h)
{
    return h->error ? h->error : "";
}

/* Frees what the struct holds, and the struct. */
void ath_host_release(ath_host_t *h)
{
    size_t i;
    for (i = 0; i < h->nsecrets; i++)
        free(h->secrets[i]);
    free(h->secrets);
    ath_ac_free(h->ac);
    free(h->ready);
    free(h->error);
    free(h->end_msg);
    free(h->name);
    free(h->port_spec);
    free(h);
}
