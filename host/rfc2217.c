/*
 * rfc2217.c: rfc2217:HOST:PORT ports, a serial port behind a Telnet
 * COM-PORT-OPTION server (RFC 2217; ser2net's telnet(rfc2217) accepter).
 *
 * The port is a TCP port whose reads go through the Telnet decoder
 * (telnet.c) and whose writes double each 0xFF (port.c). Once the TCP
 * connection is up, athost offers BINARY, SUPPRESS-GO-AHEAD and
 * COM-PORT-OPTION; when the server agrees to COM-PORT-OPTION it sends the
 * line settings (baud, data bits, parity, stop bits, then DTR/RTS when
 * given), and the port reports ATH_PORT_CONNECTED to its owner when the
 * server has answered the last of them: an open that succeeds has settings the
 * server took, and a server that is no RFC 2217 server (a raw TCP port)
 * fails the open at its timeout instead of passing Telnet bytes on.
 */
#include "port.h"
#include "telnet.h"

#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct ath_rfc2217 {
    ath_telnet_t tn;
    int sent;      /* the settings went out */
    int done;      /* the set-up's end was reported (once) */
    int last_cmd;  /* the answer that ends the set-up */
    int baud, databits, parity, stopbits; /* the server's answers */
    size_t backlog; /* answers queued since the write queue was last empty */
    int flooded;    /* the backlog passed RFC_BACKLOG_MAX: the port ends */
} rfc_t;

/* Negotiation answers that may wait in the write queue for a server that
 * does not read them. Each WILL/WONT or DO/DONT that changes an option is
 * answered (3 bytes), so a server toggling one over and over while never
 * reading would grow the queue without end; past this the port ends with
 * ENOBUFS instead. A server that reads empties the queue, and the count
 * starts again. */
#define RFC_BACKLOG_MAX (64u << 10)

static void rfc_send(void *ud, const unsigned char *b, size_t n)
{
    ath_port_t *p = ud;
    rfc_t *r = p->rfc2217;
    if (p->wlen == 0)
        r->backlog = 0;
    if (r->flooded || r->backlog + n > RFC_BACKLOG_MAX) {
        r->flooded = 1;
        return;
    }
    if (ath_port_write_raw(p, (const char *)b, n) == 0 && p->wlen > 0)
        r->backlog += n;
}

int ath_rfc2217_command(ath_port_t *p, int cmd, const unsigned char *val,
                        size_t n)
{
    unsigned char b[6 + 2 * 8];
    if (p->rfc2217 == NULL || n > 8)
        return -EINVAL;
    return ath_port_write_raw(p, (char *)b,
                              ath_telnet_comport(b, cmd, val, n));
}

/* The server agreed to COM-PORT-OPTION: the settings go out. */
static void rfc_settings(ath_port_t *p)
{
    rfc_t *r = p->rfc2217;
    ath_serial_opts_t want = p->so;
    if (r->sent)
        return;
    r->sent = 1;
    /* Each differs from an impossible "current" value, so all are sent. */
    p->so.baud = p->so.databits = p->so.stopbits = -1;
    p->so.parity = '?';
    p->so.dtr = p->so.rts = -1;
    r->last_cmd = ATH_CPO_SERVER + ATH_CPO_STOPSIZE;
    (void)ath_port_settings(p, &want);
}

/* The set-up ended: err 0, or why it failed. Reported once: a server
 * that refuses COM-PORT-OPTION and then agrees to it after all, and
 * answers the settings, ended the set-up with the refusal. */
static void rfc_done(ath_port_t *p, int err)
{
    rfc_t *r = p->rfc2217;
    ath_port_ev_t ev = {ATH_PORT_CONNECTED, err, "RFC 2217 negotiation with",
                        NULL, NULL};
    if (r->done)
        return;
    r->done = 1;
    if (err == 0)
        p->negotiating = 0;
    ath_port_report(p, &ev);
}

static void rfc_on_opt(void *ud, int who, int opt, int on)
{
    ath_port_t *p = ud;
    /* Closed (the owner's answer to a failed set-up) while the rest of
     * the read is decoded: nothing more of it is acted on. */
    if (p->closed || who != 'u' || opt != ATH_TN_COMPORT || !p->negotiating)
        return;
    if (on)
        rfc_settings(p);
    else
        rfc_done(p, EPROTONOSUPPORT); /* DONT COM-PORT-OPTION */
}

static unsigned long get_be(const unsigned char *d, size_t n)
{
    unsigned long v = 0;
    size_t i;
    for (i = 0; i < n; i++)
        v = (v << 8) | d[i];
    return v;
}

static void rfc_on_sb(void *ud, int opt, const unsigned char *d, size_t n,
                      int truncated)
{
    ath_port_t *p = ud;
    rfc_t *r = p->rfc2217;
    int cmd;
    if (p->closed || opt != ATH_TN_COMPORT || n < 1 || truncated)
        return;
    cmd = d[0];
    switch (cmd - ATH_CPO_SERVER) {
    case ATH_CPO_BAUDRATE:
        /* 4 bytes, unsigned: a rate past INT_MAX (0xFFFFFFFF from a
         * broken server) is no rate, not a negative one. */
        if (n == 5 && get_be(d + 1, 4) <= INT_MAX)
            r->baud = (int)get_be(d + 1, 4);
        break;
    case ATH_CPO_DATASIZE:
        if (n == 2)
            r->databits = d[1];
        break;
    case ATH_CPO_PARITY:
        if (n == 2 && d[1] >= 1 && d[1] <= 5)
            r->parity = "noems"[d[1] - 1];
        break;
    case ATH_CPO_STOPSIZE:
        if (n == 2)
            r->stopbits = d[1];
        break;
    default:
        break;
    }
    if (p->negotiating && r->sent && cmd == r->last_cmd)
        rfc_done(p, 0);
}

/* Reads that held only Telnet commands, read on in one call. */
#define RFC_READS 16

/* Reads Telnet from the socket and returns the data in it; a read that
 * held only Telnet commands reads on, up to RFC_READS reads: a server
 * that sends commands alone (an endless subnegotiation, a flood of NOPs
 * or of DO/DONT) as fast as they are read would otherwise hold the loop
 * in here for good, every other port and timer starved. -EAGAIN then,
 * with bytes still there: the poll is level-triggered, the loop comes
 * back for them on its next turn. */
static ssize_t rfc_read(ath_port_t *p, char *buf, size_t n)
{
    rfc_t *r = p->rfc2217;
    int k;
    for (k = 0; k < RFC_READS; k++) {
        ssize_t got;
        size_t m;
        if (r->flooded)
            return -ENOBUFS; /* after the data that came before it */
        got = read(p->fd, buf, n);
        if (got < 0)
            return errno == EINTR ? -EAGAIN : -errno;
        if (got == 0)
            return 0;
        m = ath_telnet_decode(&r->tn, (unsigned char *)buf, (size_t)got,
                              (unsigned char *)buf);
        if (m > 0)
            return (ssize_t)m;
        if (p->closed || p->fd < 0)
            return -EAGAIN; /* the negotiation failed and closed it */
    }
    return -EAGAIN;
}

/* The TCP connection is up: negotiation starts. */
static void rfc_up(ath_port_t *p)
{
    rfc_t *r = p->rfc2217;
    p->negotiating = 1;
    ath_telnet_ask(&r->tn, 'u', ATH_TN_BINARY);
    ath_telnet_ask(&r->tn, 'h', ATH_TN_BINARY);
    ath_telnet_ask(&r->tn, 'u', ATH_TN_SGA);
    ath_telnet_ask(&r->tn, 'h', ATH_TN_SGA);
    ath_telnet_ask(&r->tn, 'u', ATH_TN_COMPORT);
    ath_port_watch(p);
}

/* Data: each 0xFF is sent twice. */
static int rfc_write(ath_port_t *p, const char *s, size_t n)
{
    unsigned char *esc;
    int r;
    if (memchr(s, 0xff, n) == NULL)
        return ath_port_write_raw(p, s, n);
    if ((esc = malloc(2 * n)) == NULL)
        return -ENOMEM;
    r = ath_port_write_raw(p, (char *)esc,
                           ath_telnet_escape((const unsigned char *)s, n, esc));
    free(esc);
    return r;
}

/* The settings that differ from the port's, as COM-PORT-OPTION
 * commands. */
static int rfc_set(ath_port_t *p, const ath_serial_opts_t *o)
{
    unsigned char v[4];
    ath_serial_opts_t *c = &p->so;
    int r = 0;
    if (o->baud != c->baud) {
        v[0] = (unsigned char)((unsigned)o->baud >> 24);
        v[1] = (unsigned char)((unsigned)o->baud >> 16);
        v[2] = (unsigned char)((unsigned)o->baud >> 8);
        v[3] = (unsigned char)o->baud;
        r = ath_rfc2217_command(p, ATH_CPO_BAUDRATE, v, 4);
    }
    if (r == 0 && o->databits != c->databits) {
        v[0] = (unsigned char)o->databits;
        r = ath_rfc2217_command(p, ATH_CPO_DATASIZE, v, 1);
    }
    if (r == 0 && o->parity != c->parity) {
        v[0] = o->parity == 'o' ? 2 : o->parity == 'e' ? 3 : 1;
        r = ath_rfc2217_command(p, ATH_CPO_PARITY, v, 1);
    }
    if (r == 0 && o->stopbits != c->stopbits) {
        v[0] = (unsigned char)(o->stopbits == 2 ? 2 : 1);
        r = ath_rfc2217_command(p, ATH_CPO_STOPSIZE, v, 1);
    }
    if (r == 0 && o->dtr >= 0 && o->dtr != c->dtr) {
        v[0] = o->dtr ? ATH_CPO_DTR_ON : ATH_CPO_DTR_OFF;
        r = ath_rfc2217_command(p, ATH_CPO_CONTROL, v, 1);
    }
    if (r == 0 && o->rts >= 0 && o->rts != c->rts) {
        v[0] = o->rts ? ATH_CPO_RTS_ON : ATH_CPO_RTS_OFF;
        r = ath_rfc2217_command(p, ATH_CPO_CONTROL, v, 1);
    }
    return r;
}

static int rfc_brk(ath_port_t *p, int on)
{
    unsigned char v = on ? ATH_CPO_BREAK_ON : ATH_CPO_BREAK_OFF;
    return ath_rfc2217_command(p, ATH_CPO_CONTROL, &v, 1);
}

static int rfc_purge(ath_port_t *p, int which)
{
    unsigned char v = (unsigned char)which;
    return ath_rfc2217_command(p, ATH_CPO_PURGE, &v, 1);
}

static void rfc_free(ath_port_t *p)
{
    free(p->rfc2217);
    p->rfc2217 = NULL;
}

/* The backlog ended the port: the next read says so, whether or not
 * the server sends more. */
static int rfc_pending(ath_port_t *p)
{
    rfc_t *r = p->rfc2217;
    return r != NULL && r->flooded;
}

static const ath_xport_t rfc_xport = {
    rfc_pending, NULL, NULL, rfc_up, rfc_write, rfc_set, rfc_brk, rfc_purge,
    rfc_free};

int ath_rfc2217_attach(ath_port_t *p, const ath_serial_opts_t *o)
{
    rfc_t *r = calloc(1, sizeof *r);
    if (r == NULL)
        return -ENOMEM;
    ath_telnet_init(&r->tn, p);
    r->tn.send = rfc_send;
    r->tn.on_opt = rfc_on_opt;
    r->tn.on_sb = rfc_on_sb;
    p->rfc2217 = r;
    p->xp = &rfc_xport;
    p->so = *o;
    p->io_read = rfc_read;
    return 0;
}

void ath_rfc2217_remote(ath_port_t *p, int *baud, int *databits, int *parity,
                        int *stopbits)
{
    rfc_t *r = p->rfc2217;
    *baud = r ? r->baud : 0;
    *databits = r ? r->databits : 0;
    *parity = r ? r->parity : 0;
    *stopbits = r ? r->stopbits : 0;
}
