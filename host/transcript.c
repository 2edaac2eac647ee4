/*
 * transcript.c: every byte sent and received, with a millisecond
 * timestamp, the direction and the port, control characters escaped:
 *
 *        0.012 pts/3 > AT+CGATT?\r
 *        0.015 pts/3 < \r\n+CGATT: 1\r\n\r\nOK\r\n
 *
 * Received bytes are held per port until a line end and written once the
 * flows have seen them (ath_tr_flush at the end of each dispatch), so a
 * secret a flow registers on reading it is already masked. Sending on a
 * port first writes what it received, to keep the order.
 *
 * Secrets are masked as a property of each port's stream in each
 * direction (redact.h), not of a record: a secret split over two sends,
 * two reads or 1 KiB pieces of a key is masked all the same. A stream
 * holds back only what may still become a secret; a timer writes what is
 * held after TR_LINGER_MS, so the transcript stays live (held bytes at
 * least ATH_RS_PARTIAL_MIN bytes into a secret are written as ***, and
 * the rest of that secret is still masked when it comes), and so does
 * closing the transcript.
 */
#include "host.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define HOLD_MAX 4096
#define TR_LINGER_MS 200

typedef struct tr_rx {
    char *port;
    char *buf;
    size_t len, cap;
    double t; /* when the first held byte arrived */
    int hold; /* a flow has not seen what was received yet */
    ath_rs_t rs[2]; /* the secrets masked in what was sent, received */
} tr_rx_t;

struct ath_tr {
    ath_host_t *h;
    FILE *f;
    int owns;
    char *path;   /* the file's path, for rotation */
    size_t max;   /* rotate before a record takes the file over this; 0 */
    size_t size;  /* bytes in the current file */
    int rot_warned;
    tr_rx_t *rx;
    size_t nrx;
    struct tr_timer *timer; /* writes what the streams hold back */
    int timer_on;
};

/* The timer is a resource of the host: closed with its other handles
 * when the run ends (what is held is written then). */
typedef struct tr_timer {
    ath_res_t res;
    uv_timer_t tm;
    ath_host_t *h;
    ath_tr_t *t; /* NULL once the transcript is closed */
} tr_timer_t;

static void tr_let_go(ath_tr_t *t);

char *ath_escape(const char *s, size_t n)
{
    char *out = malloc(4 * n + 1), *o = out;
    size_t i;
    if (out == NULL)
        return NULL;
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        switch (c) {
        case '\r':
            *o++ = '\\';
            *o++ = 'r';
            break;
        case '\n':
            *o++ = '\\';
            *o++ = 'n';
            break;
        case '\t':
            *o++ = '\\';
            *o++ = 't';
            break;
        case '\\':
            *o++ = '\\';
            *o++ = '\\';
            break;
        default:
            if (c < 0x20 || c >= 0x7f)
                o += sprintf(o, "\\x%02x", c);
            else
                *o++ = (char)c;
        }
    }
    *o = '\0';
    return out;
}

static void tr_timer_closed(uv_handle_t *hd)
{
    tr_timer_t *x = hd->data;
    ath_host_t *h = x->h;
    free(x);
    ath_host_handles(h, -1);
}

static void tr_timer_res_close(ath_res_t *r)
{
    tr_timer_t *x = (tr_timer_t *)r;
    ath_host_res_del(x->h, r);
    if (x->t) {
        x->t->timer = NULL;
        tr_let_go(x->t);
        x->t = NULL;
    }
    uv_close((uv_handle_t *)&x->tm, tr_timer_closed);
}

static void tr_timer_cb(uv_timer_t *tm)
{
    tr_timer_t *x = tm->data;
    if (x->t) {
        x->t->timer_on = 0;
        tr_let_go(x->t);
    }
}

static void tr_timer_open(ath_tr_t *t)
{
    tr_timer_t *x = calloc(1, sizeof *x);
    if (x == NULL)
        return; /* held bytes then wait for the next record or the end */
    x->h = t->h;
    x->t = t;
    uv_timer_init(t->h->loop, &x->tm);
    x->tm.data = x;
    uv_unref((uv_handle_t *)&x->tm); /* it keeps no run alive */
    t->h->handles++;
    x->res.close = tr_timer_res_close;
    ath_host_res_add(t->h, &x->res);
    t->timer = x;
}

static void tr_timer_close(ath_tr_t *t)
{
    if (t->timer)
        tr_timer_res_close(&t->timer->res);
}

ath_tr_t *ath_tr_open(ath_host_t *h, const char *path, size_t max, char *err,
                      size_t errlen)
{
    ath_tr_t *t = calloc(1, sizeof *t);
    int fd;
    if (t == NULL) {
        snprintf(err, errlen, "transcript %s: out of memory", path);
        return NULL;
    }
    t->h = h;
    if (strcmp(path, "-") == 0) {
        t->f = stderr;
        tr_timer_open(t);
        return t;
    }
    fd = ath_file_create(path, 0);
    if (fd < 0 || (t->f = fdopen(fd, "w")) == NULL ||
        (t->path = strdup(path)) == NULL) {
        int e = fd < 0 ? -fd : errno;
        snprintf(err, errlen, "cannot create the transcript %s: %s", path,
                 ath_file_why(e));
        if (t->f)
            fclose(t->f);
        else if (fd >= 0)
            close(fd);
        free(t);
        return NULL;
    }
    t->owns = 1;
    t->max = max;
    tr_timer_open(t);
    return t;
}

/* Renames the full file to path.1 and starts a new one. On failure the
 * old file stays in place and takes the record: over the cap, but
 * nothing is lost; the reason is printed once. */
static void tr_rotate(ath_tr_t *t)
{
    size_t n = strlen(t->path);
    char *old = malloc(n + 3);
    const char *why = NULL;
    int fd = -1, e = 0;
    FILE *nf = NULL;
    if (old == NULL)
        return;
    memcpy(old, t->path, n);
    memcpy(old + n, ".1", 3);
    if (rename(t->path, old) != 0) {
        e = errno;
        why = "cannot rename it";
    } else if ((fd = ath_file_create(t->path, 1)) < 0 ||
               (nf = fdopen(fd, "w")) == NULL) {
        e = fd < 0 ? -fd : errno;
        why = "cannot create a new one";
        if (fd >= 0) {
            close(fd);
            unlink(t->path);
        }
        (void)rename(old, t->path);
    }
    if (why == NULL) {
        fclose(t->f);
        t->f = nf;
        t->size = 0;
    } else if (!t->rot_warned) {
        t->rot_warned = 1;
        fprintf(stderr, "athost: transcript %s over --log-max: %s: %s\n",
                t->path, why, ath_file_why(e));
    }
    free(old);
}

/* Writes one line to the file, rotating first if it would go over max. */
static void tr_line(ath_tr_t *t, const char *fmt, ...)
{
    va_list ap;
    char stackbuf[512], *line = stackbuf;
    int n;
    if (t->f == NULL)
        return;
    va_start(ap, fmt);
    n = vsnprintf(stackbuf, sizeof stackbuf, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n >= sizeof stackbuf) {
        if ((line = malloc((size_t)n + 1)) == NULL)
            return;
        va_start(ap, fmt);
        vsnprintf(line, (size_t)n + 1, fmt, ap);
        va_end(ap);
    }
    if (t->max > 0 && t->size > 0 && t->size + (size_t)n > t->max)
        tr_rotate(t);
    fwrite(line, 1, (size_t)n, t->f);
    fflush(t->f);
    t->size += (size_t)n;
    if (line != stackbuf)
        free(line);
}

/* Writes one record of what a stream let go: masks the values of JSON
 * fields named like secrets, escapes, stamps. */
static void tr_write(ath_tr_t *t, double ms, const char *port, int dir,
                     const char *s, size_t n)
{
    size_t rn;
    char *red, *esc;
    if (n == 0)
        return;
    if ((red = ath_host_redact_fields(s, n, &rn)) == NULL)
        return;
    esc = ath_escape(red, rn);
    free(red);
    if (esc == NULL)
        return;
    tr_line(t, "%10.3f %s %c %s\n", ms / 1e3, port, dir, esc);
    if (t->h->on_event) {
        ath_event_t ev;
        char dirs[2] = {(char)dir, '\0'};
        memset(&ev, 0, sizeof ev);
        ev.type = ATH_EVENT_TRANSCRIPT;
        ev.port = port;
        ev.name = dirs;
        ev.text = esc;
        ev.ms = ms;
        ath_host_emit(t->h, &ev);
    }
    free(esc);
}

/* Writes what the streams hold back (partial secrets as ***). */
static void tr_let_go(ath_tr_t *t)
{
    size_t i;
    int d;
    for (i = 0; i < t->nrx; i++) {
        for (d = 0; d < 2; d++) {
            ath_buf_t out = {NULL, 0, 0};
            if (ath_rs_held(&t->rx[i].rs[d]) == 0)
                continue;
            ath_rs_flush(&t->rx[i].rs[d], &out, 1);
            tr_write(t, ath_host_now(t->h), t->rx[i].port, d ? '<' : '>',
                     out.b, out.len);
            free(out.b);
        }
    }
}

/* Masks bytes sent or received on r's port, writes what is final. */
static void tr_record(ath_tr_t *t, double ms, tr_rx_t *r, int dir,
                      const char *s, size_t n)
{
    ath_buf_t out = {NULL, 0, 0};
    const ath_ac_t *ac = ath_host_ac(t->h);
    ath_rs_t *rs = &r->rs[dir == '<'];
    if (ac == NULL)
        ath_buf_add(&out, "***", 3); /* no memory to look: nothing shown */
    else
        ath_rs_feed(rs, ac, s, n, &out);
    /* A record's last byte or three that begin some spelling (a hex digit
     * does) go with it, as the timer would let them go: only a longer
     * start of a secret waits for the rest. */
    if (ath_rs_held(rs) > 0 && rs->depth < ATH_RS_PARTIAL_MIN)
        ath_rs_flush(rs, &out, 1);
    tr_write(t, ms, r->port, dir, out.b, out.len);
    free(out.b);
    if (ath_rs_held(rs) > 0 && t->timer && !t->timer_on) {
        uv_timer_start(&t->timer->tm, tr_timer_cb, TR_LINGER_MS, 0);
        t->timer_on = 1;
    }
}

static tr_rx_t *tr_rx(ath_tr_t *t, const char *port)
{
    size_t i;
    tr_rx_t *nr;
    for (i = 0; i < t->nrx; i++)
        if (strcmp(t->rx[i].port, port) == 0)
            return &t->rx[i];
    nr = realloc(t->rx, (t->nrx + 1) * sizeof *nr);
    if (nr == NULL)
        return NULL;
    t->rx = nr;
    memset(&nr[t->nrx], 0, sizeof *nr);
    if ((nr[t->nrx].port = strdup(port)) == NULL)
        return NULL;
    return &t->rx[t->nrx++];
}

/* Writes the held bytes of r: all, or through the last line end (or all
 * that is over the hold limit: its stream keeps back what may be a
 * secret). */
static void tr_rx_flush(ath_tr_t *t, tr_rx_t *r, int all)
{
    size_t n = r->len;
    if (n == 0)
        return;
    if (!all) {
        while (n > 0 && r->buf[n - 1] != '\n')
            n--;
        if (n == 0 && r->len > HOLD_MAX)
            n = r->len;
        if (n == 0)
            return;
    }
    tr_record(t, r->t, r, '<', r->buf, n);
    memmove(r->buf, r->buf + n, r->len - n);
    r->len -= n;
    r->t = ath_host_now(t->h);
}

void ath_tr_data(ath_tr_t *t, const char *port, int dir, const char *s,
                 size_t n)
{
    tr_rx_t *r = tr_rx(t, port);
    if (r == NULL)
        return;
    if (dir == '>') {
        tr_rx_flush(t, r, 1);
        tr_record(t, ath_host_now(t->h), r, '>', s, n);
        return;
    }
    if (r->len + n > r->cap) {
        size_t cap = r->cap ? r->cap : 256;
        char *nb;
        while (cap < r->len + n)
            cap *= 2;
        if ((nb = realloc(r->buf, cap)) == NULL)
            return;
        r->buf = nb;
        r->cap = cap;
    }
    if (r->len == 0)
        r->t = ath_host_now(t->h);
    memcpy(r->buf + r->len, s, n);
    r->len += n;
}

void ath_tr_note(ath_tr_t *t, const char *port, const char *text)
{
    tr_line(t, "%10.3f %s # %s\n", ath_host_now(t->h) / 1e3, port, text);
}

void ath_tr_hold(ath_tr_t *t, const char *port, int hold)
{
    tr_rx_t *r = tr_rx(t, port);
    if (r)
        r->hold = hold;
}

void ath_tr_flush(ath_tr_t *t, int all)
{
    size_t i;
    for (i = 0; i < t->nrx; i++)
        if (all || !t->rx[i].hold)
            tr_rx_flush(t, &t->rx[i], all);
}

void ath_tr_close(ath_tr_t *t)
{
    size_t i;
    ath_tr_flush(t, 1);
    tr_let_go(t);
    tr_timer_close(t);
    for (i = 0; i < t->nrx; i++) {
        free(t->rx[i].port);
        free(t->rx[i].buf);
        ath_rs_free(&t->rx[i].rs[0]);
        ath_rs_free(&t->rx[i].rs[1]);
    }
    free(t->rx);
    if (t->owns && t->f)
        fclose(t->f);
    free(t->path);
    free(t);
}
