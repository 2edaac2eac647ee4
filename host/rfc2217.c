/*
 * rfc2217.c: rfc2217:HOST:PORT ports, a serial port behind a Telnet
 * COM-PORT-OPTION server (RFC 2217; ser2net's telnet(rfc2217) accepter).
 *
 * The port is a TCP port whose reads go through the Telnet decoder
 * (telnet.c) and whose writes double each 0xFF (port.c). Once the TCP
 * connection is up, athost offers BINARY, SUPPRESS-GO-AHEAD and
 * COM-PORT-OPTION; when the server agrees to COM-PORT-OPTION it sends the
 * line settings (baud, data bits, parity, stop bits, then DTR/RTS when
 * given), and the flow that opened the port wakes when the server has
 * answered the last of them: an open that succeeds has settings the
 * server took, and a server that is no RFC 2217 server (a raw TCP port)
 * fails the open at its timeout instead of passing Telnet bytes on.
 */
#include "lport.h"
#include "telnet.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct ath_rfc2217 {
    ath_telnet_t tn;
    int sent;      /* the settings went out */
    int last_cmd;  /* the answer that ends the set-up */
    int baud, databits, parity, stopbits; /* the server's answers */
} rfc_t;

static void rfc_send(void *ud, const unsigned char *b, size_t n)
{
    ath_port_t *p = ud;
    (void)ath_port_write_raw(p, (const char *)b, n);
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

static void rfc_fail(ath_port_t *p, int err)
{
    ath_lport_connected(p, p->h->L, err, "RFC 2217 negotiation with");
}

static void rfc_on_opt(void *ud, int who, int opt, int on)
{
    ath_port_t *p = ud;
    if (who != 'u' || opt != ATH_TN_COMPORT || !p->negotiating)
        return;
    if (on)
        rfc_settings(p);
    else
        rfc_fail(p, EPROTONOSUPPORT); /* DONT COM-PORT-OPTION */
}

static int get_be(const unsigned char *d, size_t n)
{
    unsigned v = 0;
    size_t i;
    for (i = 0; i < n; i++)
        v = (v << 8) | d[i];
    return (int)v;
}

static void rfc_on_sb(void *ud, int opt, const unsigned char *d, size_t n,
                      int truncated)
{
    ath_port_t *p = ud;
    rfc_t *r = p->rfc2217;
    int cmd;
    if (opt != ATH_TN_COMPORT || n < 1 || truncated)
        return;
    cmd = d[0];
    switch (cmd - ATH_CPO_SERVER) {
    case ATH_CPO_BAUDRATE:
        if (n == 5)
            r->baud = get_be(d + 1, 4);
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
    if (p->negotiating && r->sent && cmd == r->last_cmd) {
        p->negotiating = 0;
        ath_lport_connected(p, p->h->L, 0, "RFC 2217 negotiation with");
    }
}

/* Reads Telnet from the socket and returns the data in it; a read that
 * held only Telnet commands reads on, so that -EAGAIN still means the
 * socket has nothing more. */
static ssize_t rfc_read(ath_port_t *p, char *buf, size_t n)
{
    rfc_t *r = p->rfc2217;
    for (;;) {
        ssize_t got = read(p->fd, buf, n);
        size_t m;
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
}

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
    p->so = *o;
    p->io_read = rfc_read;
    return 0;
}

void ath_rfc2217_start(ath_port_t *p)
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

void ath_rfc2217_remote(ath_port_t *p, int *baud, int *databits, int *parity,
                        int *stopbits)
{
    rfc_t *r = p->rfc2217;
    *baud = r ? r->baud : 0;
    *databits = r ? r->databits : 0;
    *parity = r ? r->parity : 0;
    *stopbits = r ? r->stopbits : 0;
}

void ath_rfc2217_free(ath_port_t *p)
{
    free(p->rfc2217);
    p->rfc2217 = NULL;
}
