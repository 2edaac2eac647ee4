/*
 * telnet.c: the Telnet decoder (host/telnet.c) and the RFC 2217 reply
 * handling of rfc2217: ports (host/rfc2217.c) on what a broken or hostile
 * server may send.
 *
 * The peer's bytes are decoded whole and in the pieces the input's cut
 * list gives (each piece a heap block of exactly its length, decoded in
 * place as rfc2217.c does or into a block of exactly its length): both
 * ways must give the same data bytes, the same negotiation answers and
 * the same events, in the same order. Along the way: a call never gives
 * more data than it took, the decoder's state stays in its bounds (the
 * subnegotiation buffer whatever the input: IAC SB without SE, a flood
 * of DO/WILL), every answer is one IAC verb option triple, answers never
 * outnumber the commands that asked for them (no negotiation loop, no
 * amplification), and the callbacks run at most once per input byte
 * (linear work). Escaping and COM-PORT commands built by the encoder
 * decode back to what was encoded.
 *
 * Then, when the setup asks, the same bytes come from a socket through
 * the rfc2217: port's own read function (rfc2217.c, port.c's calls
 * stubbed below): after athost's offers, read whole and read in the
 * cut list's sizes, the data, what the port wrote and what it reported
 * must agree, and the data must be what the bare decoder gave.
 *
 * Input: one byte of setup, one byte n, n cut lengths, then the stream.
 * setup bit 0: athost's requests first (as rfc2217.c sends them);
 * bit 1: the peer already sends in BINARY; bit 2: the split run decodes
 * into a separate block; bit 3: the rfc2217: port too; bit 4: with DTR
 * and RTS in its settings.
 */
#include "fuzz.h"
#include "port.h"
#include "telnet.h"

#include <errno.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static void put_int(fz_buf_t *b, long v)
{
    fz_put(b, &v, sizeof v);
}

/* What one run saw. */
typedef struct rec {
    fz_buf_t data;  /* the data bytes, in order */
    fz_buf_t sent;  /* what went to the peer */
    fz_buf_t ev;    /* callbacks and reports, in order, answers among them */
    size_t calls; /* callbacks (answers, option changes, subnegotiations) */
    int closed;   /* the port's owner closed it (a failed set-up) */
} rec_t;

static void rec_free(rec_t *r)
{
    free(r->data.b);
    free(r->sent.b);
    free(r->ev.b);
}

static void tn_send(void *ud, const unsigned char *b, size_t n)
{
    rec_t *r = ud;
    FZ_CHECK(n == 3 && b[0] == ATH_TN_IAC && b[1] >= ATH_TN_WILL &&
                 b[1] <= ATH_TN_DONT,
             "an answer that is no IAC verb option (%zu bytes)", n);
    r->calls++;
    fz_put(&r->sent, b, n);
    fz_put(&r->ev, "w", 1);
    fz_put(&r->ev, b, n);
}

static void tn_opt(void *ud, int who, int opt, int on)
{
    rec_t *r = ud;
    FZ_CHECK((who == 'u' || who == 'h') && opt >= 0 && opt <= 255 &&
                 (on == 0 || on == 1),
             "option event %d %d %d", who, opt, on);
    r->calls++;
    fz_put(&r->ev, "o", 1);
    put_int(&r->ev, who);
    put_int(&r->ev, opt);
    put_int(&r->ev, on);
}

static void tn_sb(void *ud, int opt, const unsigned char *d, size_t n,
                  int truncated)
{
    rec_t *r = ud;
    FZ_CHECK(opt >= 0 && opt <= 255, "subnegotiation of option %d", opt);
    FZ_CHECK(n <= ATH_TN_SB_MAX, "subnegotiation of %zu bytes", n);
    FZ_CHECK(!truncated || n == ATH_TN_SB_MAX,
             "cut at %zu, short of the buffer", n);
    r->calls++;
    fz_put(&r->ev, "s", 1);
    put_int(&r->ev, opt);
    put_int(&r->ev, truncated);
    put_int(&r->ev, (long)n);
    fz_put(&r->ev, d, n);
}

static void tn_setup(ath_telnet_t *t, rec_t *r, unsigned setup)
{
    ath_telnet_init(t, r);
    t->send = tn_send;
    t->on_opt = tn_opt;
    t->on_sb = tn_sb;
    if (setup & 1) { /* rfc2217.c's rfc_up */
        ath_telnet_ask(t, 'u', ATH_TN_BINARY);
        ath_telnet_ask(t, 'h', ATH_TN_BINARY);
        ath_telnet_ask(t, 'u', ATH_TN_SGA);
        ath_telnet_ask(t, 'h', ATH_TN_SGA);
        ath_telnet_ask(t, 'u', ATH_TN_COMPORT);
    }
    if (setup & 2)
        t->him[ATH_TN_BINARY] = 1;
}

static void tn_state_check(const ath_telnet_t *t)
{
    int k;
    FZ_CHECK(t->sblen <= sizeof t->sb, "sblen %zu", t->sblen);
    FZ_CHECK(t->st >= 0 && t->st <= 6, "decoder state %d", t->st);
    for (k = 0; k < 256; k++)
        FZ_CHECK(t->us[k] <= 2 && t->him[k] <= 2, "option %d state %d/%d",
                 k, t->us[k], t->him[k]);
}

/* Decodes s[0, n) in one piece (cuts NULL) or in the cut list's pieces. */
static void run_tn(const unsigned char *s, size_t n, const uint8_t *cuts,
                   size_t ncuts, unsigned setup, rec_t *r)
{
    ath_telnet_t t;
    size_t at = 0, i = 0, asked, answers;
    tn_setup(&t, r, setup);
    asked = r->sent.len;
    r->calls = 0;
    while (at < n || i == 0) {
        size_t step = i < ncuts ? 1 + cuts[i] : n - at, o, calls = r->calls;
        unsigned char *piece, *out;
        int inplace = cuts == NULL || !(setup & 4);
        if (step > n - at)
            step = n - at;
        piece = malloc(step ? step : 1);
        FZ_CHECK(piece != NULL, "out of memory");
        if (step)
            memcpy(piece, s + at, step);
        out = inplace ? piece : malloc(step ? step : 1);
        FZ_CHECK(out != NULL, "out of memory");
        o = ath_telnet_decode(&t, piece, step, out);
        FZ_CHECK(o <= step, "%zu data bytes out of %zu in", o, step);
        /* the byte that ends a command: an answer and an option change */
        FZ_CHECK(r->calls - calls <= 2 * step, "%zu callbacks for %zu bytes",
                 r->calls - calls, step);
        fz_put(&r->data, out, o);
        if (out != piece)
            free(out);
        free(piece);
        tn_state_check(&t);
        at += step;
        i++;
    }
    /* An answer takes a command of 3 bytes: never more out than in. */
    answers = r->sent.len - asked;
    FZ_CHECK(answers <= n, "%zu bytes of answers to %zu bytes", answers, n);
    FZ_CHECK(r->calls <= n, "%zu callbacks for %zu bytes", r->calls, n);
}

/* What the encoder builds decodes back to what it was given. */
static void roundtrip(const unsigned char *s, size_t n)
{
    ath_telnet_t t;
    rec_t r = {0};
    unsigned char *esc = malloc(2 * n + 1), *out = malloc(n + 1);
    unsigned char cp[6 + 2 * 100], *cout = malloc(sizeof cp);
    size_t m, o, vn = n < 100 ? n : 100;
    int cmd = n ? s[0] % 13 : 0; /* RFC 2217's commands: 0 to 12 */
    FZ_CHECK(esc && out && cout, "out of memory");
    tn_setup(&t, &r, 2); /* BINARY: every byte is data */
    m = ath_telnet_escape(s, n, esc);
    FZ_CHECK(m >= n && m <= 2 * n, "escaped %zu into %zu", n, m);
    o = ath_telnet_decode(&t, esc, m, out);
    FZ_CHECK(o == n && memcmp(out, s, n) == 0 && r.ev.len == 0,
             "escaped data decodes to %zu bytes of %zu", o, n);
    /* A COM-PORT command: one subnegotiation of the command and value
     * (the value escaped, the command is one of RFC 2217's). */
    m = ath_telnet_comport(cp, cmd, s, vn);
    FZ_CHECK(m <= 6 + 2 * vn, "COM-PORT command of %zu bytes", m);
    o = ath_telnet_decode(&t, cp, m, cout);
    {
        size_t want = 1 + vn < ATH_TN_SB_MAX ? 1 + vn : ATH_TN_SB_MAX;
        const unsigned char *e = r.ev.b;
        long v[3];
        FZ_CHECK(o == 0 && r.ev.len == 1 + sizeof v + want && e[0] == 's',
                 "COM-PORT command gave %zu data, %zu bytes of events", o,
                 r.ev.len);
        memcpy(v, e + 1, sizeof v);
        FZ_CHECK(v[0] == ATH_TN_COMPORT &&
                     v[1] == (1 + vn > ATH_TN_SB_MAX) && v[2] == (long)want &&
                     e[1 + sizeof v] == cmd &&
                     memcmp(e + 2 + sizeof v, s, want - 1) == 0,
                 "COM-PORT command decodes to another");
    }
    free(esc);
    free(out);
    free(cout);
    rec_free(&r);
}

/* ---- the rfc2217: port, port.c stubbed ---------------------------------- */

int ath_port_write_raw(ath_port_t *p, const char *s, size_t n)
{
    rec_t *r = p->data;
    if (p->closed)
        return -EPIPE;
    fz_put(&r->sent, s, n);
    fz_put(&r->ev, "W", 1);
    put_int(&r->ev, (long)n);
    fz_put(&r->ev, s, n);
    return 0;
}

int ath_port_settings(ath_port_t *p, const ath_serial_opts_t *o)
{
    int r = p->xp->settings(p, o);
    if (r == 0)
        ath_port_took(p, o);
    return r;
}

/* The owner: lopen.c's, which closes the port when the set-up failed. */
void ath_port_report(ath_port_t *p, const ath_port_ev_t *ev)
{
    rec_t *r = p->data;
    FZ_CHECK(ev->type == ATH_PORT_CONNECTED, "report %d", ev->type);
    if (p->closed)
        return;
    fz_put(&r->ev, "C", 1);
    put_int(&r->ev, ev->err);
    if (ev->err != 0)
        p->closed = 1;
}

void ath_port_watch(ath_port_t *p)
{
    (void)p;
}

/* The peer sends s[0, n) and closes; the port reads it in the cut list's
 * sizes (whole: one size that takes everything). */
static void run_rfc(const unsigned char *s, size_t n, const uint8_t *cuts,
                    size_t ncuts, unsigned setup, rec_t *r)
{
    ath_serial_opts_t o = {115200, 8, 1, 0, 'n', -1, -1, 0};
    ath_port_t *p = calloc(1, sizeof *p);
    int sv[2], baud, databits, parity, stopbits;
    size_t at = 0, i = 0, guard = 0;
    FZ_CHECK(p != NULL, "out of memory");
    FZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) == 0,
             "socketpair: %s", strerror(errno));
    while (at < n) {
        ssize_t w = write(sv[1], s + at, n - at);
        FZ_CHECK(w > 0, "write to the socket: %s", strerror(errno));
        at += (size_t)w;
    }
    shutdown(sv[1], SHUT_WR);
    if (setup & 16)
        o.dtr = o.rts = 1;
    p->fd = sv[0];
    p->kind = ATH_PORT_TCP;
    p->data = r;
    FZ_CHECK(ath_rfc2217_attach(p, &o) == 0, "attach");
    p->xp->up(p);
    while (!p->closed) {
        size_t size = ncuts ? 1 + cuts[i++ % ncuts] : n + 1;
        char *buf = malloc(size);
        ssize_t got;
        FZ_CHECK(buf != NULL, "out of memory");
        got = p->io_read(p, buf, size);
        FZ_CHECK(got == -EAGAIN || (got >= 0 && (size_t)got <= size),
                 "read gave %zd of %zu", got, size);
        if (got > 0 && !p->closed)
            fz_put(&r->data, buf, (size_t)got);
        free(buf);
        if (got == 0)
            break;
        /* -EAGAIN with bytes left: the port reads on at the next turn of
         * the loop (level-triggered poll). */
        FZ_CHECK(++guard <= 2 * n + 16, "%zu reads for %zu bytes", guard, n);
    }
    ath_rfc2217_remote(p, &baud, &databits, &parity, &stopbits);
    FZ_CHECK(baud >= 0 && databits >= 0 && stopbits >= 0 &&
                 (parity == 0 || strchr("noems", parity) != NULL),
             "the server's settings read as %d %d %d %d", baud, databits,
             parity, stopbits);
    fz_put(&r->ev, "R", 1);
    put_int(&r->ev, baud);
    put_int(&r->ev, databits);
    put_int(&r->ev, parity);
    put_int(&r->ev, stopbits);
    put_int(&r->ev, p->closed);
    r->closed = p->closed;
    p->xp->free(p);
    close(sv[0]);
    close(sv[1]);
    free(p);
}

static void same(const fz_buf_t *a, const fz_buf_t *b, const char *what)
{
    if (a->len != b->len || (a->len > 0 && memcmp(a->b, b->b, a->len) != 0)) {
        size_t d = 0;
        while (d < a->len && d < b->len && a->b[d] == b->b[d])
            d++;
        FZ_CHECK(0, "%s differ at byte %zu of %zu / %zu", what, d, a->len,
                 b->len);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_in_t in = {data, size};
    unsigned setup = fz_byte(&in);
    size_t ncuts = fz_byte(&in), n;
    const uint8_t *cuts = (const uint8_t *)fz_take(&in, ncuts, &ncuts);
    const unsigned char *s;
    rec_t whole = {0}, split = {0};
    s = (const unsigned char *)fz_take(&in, in.n, &n);
    if (setup & 8)
        setup = (setup | 1) & ~2u; /* what the port's decoder starts as */
    run_tn(s, n, NULL, 0, setup, &whole);
    run_tn(s, n, cuts, ncuts, setup, &split);
    same(&whole.data, &split.data, "data bytes");
    same(&whole.sent, &split.sent, "answers");
    same(&whole.ev, &split.ev, "events");
    roundtrip(s, n);
    if (setup & 8) {
        rec_t pw = {0}, ps = {0};
        run_rfc(s, n, NULL, 0, setup, &pw);
        run_rfc(s, n, cuts, ncuts, setup, &ps);
        same(&pw.sent, &ps.sent, "port writes");
        same(&pw.ev, &ps.ev, "port events");
        /* Unless the owner closed it (then what came before the close
         * depends on where the reads ended), the port passes what the
         * decoder gives. */
        if (!pw.closed) {
            same(&pw.data, &ps.data, "port data");
            same(&pw.data, &whole.data, "port and decoder data");
        }
        rec_free(&pw);
        rec_free(&ps);
    }
    rec_free(&whole);
    rec_free(&split);
    return 0;
}
