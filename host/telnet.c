/*
 * telnet.c: Telnet framing and option negotiation for rfc2217: ports.
 *
 * The decoder is one state machine over bytes, so a command, an escaped
 * 0xFF or a subnegotiation split across reads anywhere decodes exactly as
 * if it came in one read. Negotiation follows RFC 1143's rule of never
 * answering a request that changes nothing, which is what keeps two
 * Telnet ends from looping; the options athost takes are BINARY (every
 * byte passes as is), SUPPRESS-GO-AHEAD and COM-PORT-OPTION (RFC 2217).
 */
#include "telnet.h"

#include <string.h>

enum { S_DATA, S_CR, S_IAC, S_VERB, S_SBOPT, S_SB, S_SBIAC };

void ath_telnet_init(ath_telnet_t *t, void *ud)
{
    memset(t, 0, sizeof *t);
    t->ud = ud;
}

static void tn_send3(ath_telnet_t *t, int verb, int opt)
{
    unsigned char b[3];
    b[0] = ATH_TN_IAC;
    b[1] = (unsigned char)verb;
    b[2] = (unsigned char)opt;
    if (t->send)
        t->send(t->ud, b, 3);
}

void ath_telnet_ask(ath_telnet_t *t, int who, int opt)
{
    unsigned char *st = who == 'u' ? t->us : t->him;
    if (st[opt] != 0)
        return;
    st[opt] = 2;
    tn_send3(t, who == 'u' ? ATH_TN_WILL : ATH_TN_DO, opt);
}

/* The options this end performs, and those it lets the peer perform. */
static int tn_ok_us(int opt)
{
    return opt == ATH_TN_BINARY || opt == ATH_TN_SGA || opt == ATH_TN_COMPORT;
}

static int tn_ok_him(int opt)
{
    return opt == ATH_TN_BINARY || opt == ATH_TN_SGA || opt == ATH_TN_COMPORT;
}

static void tn_changed(ath_telnet_t *t, int who, int opt, int on)
{
    if (t->on_opt)
        t->on_opt(t->ud, who, opt, on);
}

/* WILL/WONT/DO/DONT opt from the peer. */
static void tn_verb(ath_telnet_t *t, int verb, int opt)
{
    int positive = verb == ATH_TN_WILL || verb == ATH_TN_DO;
    int who = (verb == ATH_TN_WILL || verb == ATH_TN_WONT) ? 'h' : 'u';
    unsigned char *st = who == 'u' ? t->us : t->him;
    int ok = who == 'u' ? tn_ok_us(opt) : tn_ok_him(opt);
    int yes = who == 'u' ? ATH_TN_WILL : ATH_TN_DO;
    int no = who == 'u' ? ATH_TN_WONT : ATH_TN_DONT;
    if (positive) {
        if (st[opt] == 1)
            return;
        if (!ok) {
            tn_send3(t, no, opt); /* refused: its state stays off */
            return;
        }
        if (st[opt] == 0)
            tn_send3(t, yes, opt); /* his request: agree */
        st[opt] = 1;               /* else the answer to ours */
        tn_changed(t, who, opt, 1);
    } else {
        if (st[opt] == 0)
            return;
        if (st[opt] == 1)
            tn_send3(t, no, opt); /* acknowledge the change */
        st[opt] = 0;              /* else a refusal of our request */
        tn_changed(t, who, opt, 0);
    }
}

/* The byte after an IAC that is not IAC: a command. */
static void tn_command(ath_telnet_t *t, unsigned char c)
{
    if (c >= ATH_TN_WILL) {
        t->verb = c;
        t->st = S_VERB;
    } else if (c == ATH_TN_SB) {
        t->st = S_SBOPT;
    } else {
        t->st = S_DATA; /* NOP, GA, DM, BRK, AYT...: no data */
    }
}

size_t ath_telnet_decode(ath_telnet_t *t, const unsigned char *in, size_t n,
                         unsigned char *out)
{
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        unsigned char c = in[i];
        switch (t->st) {
        case S_CR:
            t->st = S_DATA;
            if (c == 0)
                break; /* CR NUL is a CR in non-binary mode */
            /* fall through */
        case S_DATA:
            if (c == ATH_TN_IAC) {
                t->st = S_IAC;
            } else {
                out[o++] = c;
                if (c == '\r' && t->him[ATH_TN_BINARY] != 1)
                    t->st = S_CR;
            }
            break;
        case S_IAC:
            if (c == ATH_TN_IAC) {
                out[o++] = c;
                t->st = S_DATA;
            } else {
                tn_command(t, c);
            }
            break;
        case S_VERB:
            t->st = S_DATA;
            tn_verb(t, t->verb, c);
            break;
        case S_SBOPT:
            t->verb = c; /* the option the subnegotiation is about */
            t->sblen = 0;
            t->sbover = 0;
            t->st = S_SB;
            break;
        case S_SB:
            if (c == ATH_TN_IAC) {
                t->st = S_SBIAC;
                break;
            }
        sb_byte:
            if (t->sblen < sizeof t->sb)
                t->sb[t->sblen++] = c;
            else
                t->sbover = 1;
            break;
        case S_SBIAC:
            if (c == ATH_TN_IAC) {
                t->st = S_SB;
                goto sb_byte;
            }
            /* IAC SE ends it; any other command ends it too (a peer that
             * forgot SE) and is then taken as a command. */
            if (t->on_sb)
                t->on_sb(t->ud, t->verb, t->sb, t->sblen, t->sbover);
            t->st = S_DATA;
            if (c != ATH_TN_SE)
                tn_command(t, c);
            break;
        }
    }
    return o;
}

size_t ath_telnet_escape(const unsigned char *in, size_t n, unsigned char *out)
{
    size_t i, o = 0;
    for (i = 0; i < n; i++) {
        out[o++] = in[i];
        if (in[i] == ATH_TN_IAC)
            out[o++] = ATH_TN_IAC;
    }
    return o;
}

size_t ath_telnet_comport(unsigned char *out, int cmd, const unsigned char *val,
                          size_t n)
{
    size_t o = 0;
    out[o++] = ATH_TN_IAC;
    out[o++] = ATH_TN_SB;
    out[o++] = ATH_TN_COMPORT;
    out[o++] = (unsigned char)cmd;
    o += ath_telnet_escape(val, n, out + o);
    out[o++] = ATH_TN_IAC;
    out[o++] = ATH_TN_SE;
    return o;
}
