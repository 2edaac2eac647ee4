// unit: host/telnet.c host/rfc2217.c
/*
 * telnet_test.c: the Telnet decoder and encoder of rfc2217: ports.
 *
 * A tricky stream (escaped 0xFF in data and inside a subnegotiation,
 * negotiation the decoder must answer, refuse or take silently, a command
 * with no data, CR NUL in non-binary mode, a subnegotiation cut short by
 * another command) is decoded whole, then cut into two and three pieces
 * at every pair of positions and into single bytes; every way must give
 * the data, the answers sent and the events expected. Each piece is a
 * heap block of exactly its length, so the sanitizers catch a read past
 * it.
 *
 * Then rfc2217.c's port over a socket pair (port.c's calls stubbed
 * below): the set-up ends once whatever the server sends after, and a
 * server sending Telnet commands alone cannot keep one read going.
 */
#include "port.h"
#include "telnet.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

static int npass, nfail;

typedef struct rec {
    unsigned char sent[256];
    size_t nsent;
    char ev[512]; /* "u44+ h1- sb44:65,ff;" */
    size_t nev;
} rec_t;

static void on_send(void *ud, const unsigned char *b, size_t n)
{
    rec_t *r = ud;
    if (r->nsent + n <= sizeof r->sent) {
        memcpy(r->sent + r->nsent, b, n);
        r->nsent += n;
    }
}

static void on_opt(void *ud, int who, int opt, int on)
{
    rec_t *r = ud;
    r->nev += (size_t)snprintf(r->ev + r->nev, sizeof r->ev - r->nev,
                               "%c%d%c ", who, opt, on ? '+' : '-');
}

static void on_sb(void *ud, int opt, const unsigned char *d, size_t n,
                  int truncated)
{
    rec_t *r = ud;
    size_t i;
    r->nev += (size_t)snprintf(r->ev + r->nev, sizeof r->ev - r->nev,
                               "sb%d%s:", opt, truncated ? "!" : "");
    for (i = 0; i < n; i++)
        r->nev += (size_t)snprintf(r->ev + r->nev, sizeof r->ev - r->nev,
                                   "%02x%s", d[i], i + 1 < n ? "," : "");
    r->nev += (size_t)snprintf(r->ev + r->nev, sizeof r->ev - r->nev, "; ");
}

static void setup(ath_telnet_t *t, rec_t *r)
{
    memset(r, 0, sizeof *r);
    ath_telnet_init(t, r);
    t->send = on_send;
    t->on_opt = on_opt;
    t->on_sb = on_sb;
}

static void check(int cond, const char *what, const char *how)
{
    if (cond) {
        npass++;
    } else {
        nfail++;
        printf("FAIL %s (%s)\n", what, how);
    }
}

/* Decodes in as pieces cut at cuts[0..ncuts) and compares. */
static void run(const unsigned char *in, size_t n, const size_t *cuts,
                int ncuts, const unsigned char *want, size_t wantn,
                const unsigned char *wsent, size_t wsentn, const char *wev,
                const char *what, int ask)
{
    ath_telnet_t t;
    rec_t r;
    unsigned char out[512];
    size_t o = 0, start = 0;
    char how[128];
    int k, ok;
    setup(&t, &r);
    if (ask) {
        ath_telnet_ask(&t, 'u', ATH_TN_COMPORT);
        r.nsent = 0; /* the request itself is checked elsewhere */
    }
    for (k = 0; k <= ncuts; k++) {
        size_t end = k < ncuts ? cuts[k] : n;
        unsigned char *piece = malloc(end - start ? end - start : 1);
        memcpy(piece, in + start, end - start);
        o += ath_telnet_decode(&t, piece, end - start, out + o);
        free(piece);
        start = end;
    }
    if (ncuts == 0)
        snprintf(how, sizeof how, "whole");
    else if (ncuts == 1)
        snprintf(how, sizeof how, "cut at %zu", cuts[0]);
    else
        snprintf(how, sizeof how, "cut at %zu and %zu", cuts[0], cuts[1]);
    ok = o == wantn && memcmp(out, want, o) == 0 && r.nsent == wsentn &&
         (wsentn == 0 || memcmp(r.sent, wsent, wsentn) == 0) &&
         strcmp(r.ev, wev) == 0;
    if (!ok) {
        size_t i;
        printf("  data %zu bytes:", o);
        for (i = 0; i < o; i++)
            printf(" %02x", out[i]);
        printf("\n  sent:");
        for (i = 0; i < r.nsent; i++)
            printf(" %d", r.sent[i]);
        printf("\n  events: %s\n", r.ev);
    }
    check(ok, what, how);
}

/* Every split of in into 1, 2 and 3 pieces, and into single bytes. */
static void every_split(const unsigned char *in, size_t n,
                        const unsigned char *want, size_t wantn,
                        const unsigned char *wsent, size_t wsentn,
                        const char *wev, const char *what, int ask)
{
    size_t cuts[512] = {0}, i, j;
    int before = nfail, pass_before = npass;
    run(in, n, cuts, 0, want, wantn, wsent, wsentn, wev, what, ask);
    for (i = 1; i < n; i++) {
        cuts[0] = i;
        run(in, n, cuts, 1, want, wantn, wsent, wsentn, wev, what, ask);
        for (j = i + 1; j < n; j++) {
            cuts[1] = j;
            run(in, n, cuts, 2, want, wantn, wsent, wsentn, wev, what, ask);
        }
    }
    for (i = 1; i < n; i++)
        cuts[i - 1] = i;
    run(in, n, cuts, (int)n - 1, want, wantn, wsent, wsentn, wev, what, ask);
    if (nfail == before)
        printf("ok   %s (%zu splits)\n", what, 2 + (n - 1) * n / 2);
    /* Every split of one input is one behaviour: one test, passed or
     * failed, however many splits it tried. */
    npass = pass_before + (nfail == before);
    nfail = before + (nfail != before);
}

/* ---- rfc2217.c with port.c stubbed ----------------------------------- */

typedef struct owner {
    int reports, err;   /* CONNECTED reports, the first one's error */
    size_t writes;      /* bytes written to the server */
    int closes;         /* closes the port when the set-up fails */
    int stuck;          /* the server reads nothing: writes stay queued */
} owner_t;

int ath_port_write_raw(ath_port_t *p, const char *s, size_t n)
{
    owner_t *o = p->data;
    (void)s;
    if (p->closed)
        return -EPIPE;
    o->writes += n;
    if (o->stuck)
        p->wlen += n; /* port.c's write queue, never drained */
    return 0;
}

int ath_port_settings(ath_port_t *p, const ath_serial_opts_t *o)
{
    int r = p->xp->settings(p, o);
    if (r == 0)
        p->so = *o;
    return r;
}

void ath_port_report(ath_port_t *p, const ath_port_ev_t *ev)
{
    owner_t *o = p->data;
    if (ev->type != ATH_PORT_CONNECTED)
        return;
    if (o->reports++ == 0)
        o->err = ev->err;
    if (ev->err != 0 && o->closes)
        p->closed = 1; /* lopen.c's owner: ath_lport_connected */
}

void ath_port_watch(ath_port_t *p)
{
    (void)p;
}

/* An rfc2217: port on one end of a socket pair (sv[1] the server's),
 * its set-up started. */
static ath_port_t *rfc_port(int sv[2], owner_t *o)
{
    ath_serial_opts_t so = {115200, 8, 1, 0, 'n', -1, -1, 0};
    ath_port_t *p = calloc(1, sizeof *p);
    if (p == NULL ||
        socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv) != 0 ||
        ath_rfc2217_attach(p, &so) != 0) {
        perror("rfc_port");
        exit(2);
    }
    p->fd = sv[0];
    p->kind = ATH_PORT_TCP;
    p->data = o;
    p->xp->up(p);
    return p;
}

static void rfc_port_free(ath_port_t *p, int sv[2])
{
    p->xp->free(p);
    close(sv[0]);
    close(sv[1]);
    free(p);
}

/* The server refuses COM-PORT-OPTION, then agrees and answers the
 * settings, all in one read: the refusal ended the set-up, it is
 * reported once, and (the owner closed the port) nothing after it is
 * acted on. */
static void rfc_refused_then_agreed(int closes)
{
    static const unsigned char in[] = {
        255, ATH_TN_DONT, 44, 255, ATH_TN_DO, 44,
        255, ATH_TN_SB, 44, 104, 1, 255, ATH_TN_SE, 'x'};
    owner_t o = {0, 0, 0, closes, 0};
    int sv[2], baud, databits, parity, stopbits;
    ath_port_t *p = rfc_port(sv, &o);
    char buf[64];
    size_t before;
    ssize_t got;
    char what[100];
    before = o.writes;
    if (write(sv[1], in, sizeof in) != (ssize_t)sizeof in) {
        perror("write");
        exit(2);
    }
    got = p->io_read(p, buf, sizeof buf);
    ath_rfc2217_remote(p, &baud, &databits, &parity, &stopbits);
    snprintf(what, sizeof what,
             "refused, then agreed to COM-PORT-OPTION: one report (%s)",
             closes ? "the owner closes" : "the owner keeps the port");
    if (o.reports != 1 || o.err != EPROTONOSUPPORT ||
        (closes && (o.writes != before || stopbits != 0)))
        printf("  read %zd, %d reports, first error %d, %zu bytes "
               "written after the refusal, stop bits %d\n",
               got, o.reports, o.err, o.writes - before, stopbits);
    check(o.reports == 1 && o.err == EPROTONOSUPPORT &&
              (!closes || (o.writes == before && stopbits == 0)),
          what, "one read");
    rfc_port_free(p, sv);
}

/* The server's SET-BAUDRATE answers: a rate, then 0xFFFFFFFF (past
 * INT_MAX: no rate, the one before stays; it was -1). */
static void rfc_baud_answers(void)
{
    static const unsigned char in[] = {
        255, ATH_TN_SB, 44, 101, 0x00, 0x01, 0xC2, 0x00, 255, ATH_TN_SE,
        255, ATH_TN_SB, 44, 101, 255, 255, 255, 255, 255, 255, 255, 255,
        255, ATH_TN_SE, 'x'};
    owner_t o = {0, 0, 0, 1, 0};
    int sv[2], baud, databits, parity, stopbits;
    ath_port_t *p = rfc_port(sv, &o);
    char buf[64];
    if (write(sv[1], in, sizeof in) != (ssize_t)sizeof in) {
        perror("write");
        exit(2);
    }
    (void)p->io_read(p, buf, sizeof buf);
    ath_rfc2217_remote(p, &baud, &databits, &parity, &stopbits);
    if (baud != 115200)
        printf("  remote baud %d\n", baud);
    check(baud == 115200, "SET-BAUDRATE answer past INT_MAX ignored",
          "one read");
    rfc_port_free(p, sv);
}

/* A server sending nothing but Telnet commands (here NOPs; an endless
 * subnegotiation is the same) as fast as they are read: one read of the
 * port takes a bounded part of them and returns -EAGAIN, the loop
 * coming back for the rest (the poll is level-triggered); the data
 * after them still arrives. */
static void rfc_command_flood(void)
{
    enum { FLOOD = 1 << 16 };
    unsigned char *in = malloc(FLOOD + 1);
    owner_t o = {0, 0, 0, 1, 0};
    int sv[2], left = 0, calls = 0, seen;
    ath_port_t *p = rfc_port(sv, &o);
    char buf[64];
    ssize_t got;
    size_t k, taken;
    for (k = 0; k < FLOOD; k += 2) {
        in[k] = 255;
        in[k + 1] = ATH_TN_NOP;
    }
    in[FLOOD] = 'x';
    if (write(sv[1], in, FLOOD + 1) != FLOOD + 1) {
        perror("write");
        exit(2);
    }
    got = p->io_read(p, buf, sizeof buf);
    seen = got == 1 && buf[0] == 'x';
    ioctl(sv[0], FIONREAD, &left);
    taken = FLOOD + 1 - (size_t)left;
    if (got != -EAGAIN || taken > 64 * sizeof buf)
        printf("  the first read returned %zd, took %zu bytes of %d\n", got,
               taken, FLOOD + 1);
    check(got == -EAGAIN && taken <= 64 * sizeof buf,
          "a flood of commands alone: one read takes a bounded part",
          "64-byte reads");
    while (!seen && got == -EAGAIN && ++calls < FLOOD) {
        got = p->io_read(p, buf, sizeof buf);
        seen = got == 1 && buf[0] == 'x';
    }
    check(seen,
          "a flood of commands alone: the data after it arrives",
          "64-byte reads");
    rfc_port_free(p, sv);
    free(in);
}

/* A server toggling SUPPRESS-GO-AHEAD (WILL, WONT, WILL, ...) 12,000
 * times, each toggle answered with 3 bytes, then data. One that reads
 * its answers gets them all and the data arrives; one that reads none
 * (stuck) gets at most 64 KiB of them queued and the port ends with
 * ENOBUFS, after the data that came before. */
static void rfc_option_flood(int stuck)
{
    enum { PAIRS = 12000, LEN = PAIRS * 6 + 1 };
    unsigned char *in = malloc(LEN);
    owner_t o = {0, 0, 0, 1, stuck};
    int sv[2], seen = 0;
    ath_port_t *p = rfc_port(sv, &o);
    char buf[4096];
    ssize_t got = 0;
    size_t k, off = 0, before = o.writes;
    const size_t answers = (2 * (size_t)PAIRS - 1) * 3; /* the first WILL
                                                           * answers our DO */
    for (k = 0; k < PAIRS; k++) {
        unsigned char *q = in + 6 * k;
        q[0] = q[3] = 255;
        q[1] = ATH_TN_WILL;
        q[4] = ATH_TN_WONT;
        q[2] = q[5] = ATH_TN_SGA;
    }
    in[LEN - 1] = 'x';
    /* What the socket takes, then what the port reads, until the data,
     * an end or an error. */
    for (;;) {
        int left = 0;
        ssize_t w = off < LEN ? write(sv[1], in + off, LEN - off) : 0;
        if (w > 0)
            off += (size_t)w;
        got = p->io_read(p, buf, sizeof buf);
        if (got > 0 && memchr(buf, 'x', (size_t)got) != NULL)
            seen = 1;
        if (seen || (got <= 0 && got != -EAGAIN))
            break;
        if (off == LEN && got == -EAGAIN &&
            ioctl(sv[0], FIONREAD, &left) == 0 && left == 0)
            break;
    }
    if (stuck) {
        if (got != -ENOBUFS || o.writes > (64u << 10))
            printf("  read returned %zd, %zu bytes queued\n", got, o.writes);
        check(got == -ENOBUFS && o.writes <= (64u << 10) &&
                  o.writes > (60u << 10),
              "a server that reads no answers: the port ends, 64 KiB of "
              "them queued",
              "12,000 toggles");
    } else {
        if (!seen || o.writes - before != answers)
            printf("  read returned %zd, data %s, %zu bytes answered\n", got,
                   seen ? "seen" : "not seen", o.writes - before);
        check(seen && o.writes - before == answers,
              "a server that reads its answers: all sent, the data arrives",
              "12,000 toggles");
    }
    rfc_port_free(p, sv);
    free(in);
}

int main(void)
{
    /* 1. Data with escaped 0xFF, a NOP, CR NUL (the peer has not agreed
     * to BINARY), and a CR LF that stays. */
    static const unsigned char in1[] = {
        'A', 'T', 255, 255, 'x', 255, ATH_TN_NOP, '\r', 0, 'y', '\r', '\n',
        255, 255, 255, 255, 'z'};
    static const unsigned char want1[] = {'A', 'T', 255, 'x', '\r', 'y',
                                          '\r', '\n', 255, 255, 'z'};
    /* 2. Negotiation: the server agrees to our COM-PORT-OPTION (DO 44,
     * taken silently), asks for BINARY both ways (agreed), offers ECHO
     * (refused with DONT), asks us for TERMINAL-TYPE (refused with WONT),
     * then sends SET-BAUDRATE's answer 115200 with an escaped 0xFF in
     * the value (0x0001C2FF is no real rate, it tests the escape), then
     * data, a subnegotiation cut short by WILL SGA, then DONT BINARY. */
    static const unsigned char in2[] = {
        255, ATH_TN_DO, 44, 255, ATH_TN_DO, 0, 255, ATH_TN_WILL, 0,
        255, ATH_TN_WILL, 1, 255, ATH_TN_DO, 24,
        255, ATH_TN_SB, 44, 101, 0x00, 0x01, 0xC2, 255, 255, 255, ATH_TN_SE,
        'O', 'K', '\r', 0,
        255, ATH_TN_SB, 44, 106, 1, 255, ATH_TN_WILL, 3,
        255, ATH_TN_DONT, 0, '!'};
    /* BINARY from the peer is on: its CR NUL is two data bytes. */
    static const unsigned char want2[] = {'O', 'K', '\r', 0, '!'};
    static const unsigned char sent2[] = {
        255, ATH_TN_WILL, 0, 255, ATH_TN_DO, 0, 255, ATH_TN_DONT, 1,
        255, ATH_TN_WONT, 24, 255, ATH_TN_DO, 3, 255, ATH_TN_WONT, 0};
    static const char ev2[] =
        "u44+ u0+ h0+ sb44:65,00,01,c2,ff; sb44:6a,01; h3+ u0- ";
    /* 3. A subnegotiation longer than the decoder keeps is cut, flagged,
     * and the data after it intact. */
    unsigned char in3[3 + 70 + 3];
    char ev3[600];
    size_t k, n3 = 0;
    in3[n3++] = 255;
    in3[n3++] = ATH_TN_SB;
    in3[n3++] = 44;
    for (k = 0; k < 70; k++)
        in3[n3++] = (unsigned char)(k + 1);
    in3[n3++] = 255;
    in3[n3++] = ATH_TN_SE;
    in3[n3++] = 'Q';
    {
        size_t e = (size_t)snprintf(ev3, sizeof ev3, "sb44!:");
        for (k = 0; k < ATH_TN_SB_MAX; k++)
            e += (size_t)snprintf(ev3 + e, sizeof ev3 - e, "%02x%s",
                                  (unsigned)(k + 1),
                                  k + 1 < ATH_TN_SB_MAX ? "," : "");
        snprintf(ev3 + e, sizeof ev3 - e, "; ");
    }

    every_split(in1, sizeof in1, want1, sizeof want1, NULL, 0, "",
                "data: IAC IAC, NOP, CR NUL", 0);
    every_split(in2, sizeof in2, want2, sizeof want2, sent2, sizeof sent2,
                ev2, "negotiation and COM-PORT answers", 1);
    every_split(in3, n3, (const unsigned char *)"Q", 1, NULL, 0, ev3,
                "an overlong subnegotiation", 0);

    /* Requests: asked once, never twice. */
    {
        ath_telnet_t t;
        rec_t r;
        static const unsigned char want[] = {255, ATH_TN_WILL, 44,
                                             255, ATH_TN_DO, 3};
        setup(&t, &r);
        ath_telnet_ask(&t, 'u', 44);
        ath_telnet_ask(&t, 'u', 44);
        ath_telnet_ask(&t, 'h', 3);
        check(r.nsent == sizeof want && memcmp(r.sent, want, r.nsent) == 0,
              "WILL/DO requests sent once", "ask twice");
        /* The server refuses COM-PORT-OPTION: reported, not answered. */
        {
            static const unsigned char no[] = {255, ATH_TN_DONT, 44};
            r.nsent = 0;
            ath_telnet_decode(&t, no, 3, (unsigned char *)r.ev + 400);
            check(r.nsent == 0 && strstr(r.ev, "u44-") != NULL,
                  "DONT COM-PORT-OPTION after our WILL", "refusal");
        }
    }
    /* The encoder: 0xFF doubled, nothing else touched. */
    {
        static const unsigned char in[] = {'a', 255, 0, 255, 255, '\r'};
        static const unsigned char want[] = {'a', 255, 255, 0, 255,
                                             255, 255, 255, '\r'};
        unsigned char out[12];
        size_t n = ath_telnet_escape(in, sizeof in, out);
        check(n == sizeof want && memcmp(out, want, n) == 0,
              "escape doubles 0xFF", "escape");
    }
    /* SET-BAUDRATE 0x0001C2FF: the value's 0xFF doubled inside SB. */
    {
        static const unsigned char val[] = {0x00, 0x01, 0xC2, 0xFF};
        static const unsigned char want[] = {255, ATH_TN_SB, 44, 1, 0x00,
                                             0x01, 0xC2, 255, 255, 255,
                                             ATH_TN_SE};
        unsigned char out[32];
        size_t n = ath_telnet_comport(out, 1, val, 4);
        check(n == sizeof want && memcmp(out, want, n) == 0,
              "COM-PORT command with an escaped value", "comport");
    }
    rfc_refused_then_agreed(1);
    rfc_refused_then_agreed(0);
    rfc_baud_answers();
    rfc_command_flood();
    rfc_option_flood(0);
    rfc_option_flood(1);
    printf("%d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
