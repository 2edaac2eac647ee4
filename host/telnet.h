/*
 * telnet.h: the Telnet side of rfc2217:HOST:PORT ports (RFC 854 framing,
 * RFC 1143-style option negotiation, the COM-PORT-OPTION of RFC 2217).
 * Pure byte transformations with no fd, loop or Lua: the port (port.c)
 * feeds what the socket gave and sends what the callbacks hand it.
 */
#ifndef ATH_TELNET_H
#define ATH_TELNET_H

#include <stddef.h>

enum {
    ATH_TN_SE = 240, ATH_TN_NOP = 241, ATH_TN_BRK = 243, ATH_TN_SB = 250,
    ATH_TN_WILL = 251, ATH_TN_WONT = 252, ATH_TN_DO = 253, ATH_TN_DONT = 254,
    ATH_TN_IAC = 255
};
enum { ATH_TN_BINARY = 0, ATH_TN_ECHO = 1, ATH_TN_SGA = 3, ATH_TN_COMPORT = 44 };
/* COM-PORT-OPTION commands, client to server; the server answers +100. */
enum {
    ATH_CPO_SIGNATURE = 0, ATH_CPO_BAUDRATE = 1, ATH_CPO_DATASIZE = 2,
    ATH_CPO_PARITY = 3, ATH_CPO_STOPSIZE = 4, ATH_CPO_CONTROL = 5,
    ATH_CPO_PURGE = 12, ATH_CPO_SERVER = 100
};
/* SET-CONTROL values */
enum {
    ATH_CPO_FLOW_NONE = 1, ATH_CPO_FLOW_HW = 3, ATH_CPO_BREAK_ON = 5,
    ATH_CPO_BREAK_OFF = 6, ATH_CPO_DTR_ON = 8, ATH_CPO_DTR_OFF = 9,
    ATH_CPO_RTS_ON = 11, ATH_CPO_RTS_OFF = 12
};

#define ATH_TN_SB_MAX 64 /* longer subnegotiations are cut (and flagged) */

typedef struct ath_telnet ath_telnet_t;

struct ath_telnet {
    int st;                 /* decoder state */
    unsigned char verb;     /* WILL/WONT/DO/DONT being read */
    unsigned char sb[ATH_TN_SB_MAX];
    size_t sblen;
    int sbover;             /* the subnegotiation was longer than sb */
    /* Option states: 0 off, 1 on, 2 asked (our request not yet answered).
     * us: we perform the option (WILL/WONT from us, DO/DONT from him);
     * him: he performs it. */
    unsigned char us[256], him[256];
    /* Bytes to send to the peer: negotiation answers. */
    void (*send)(void *ud, const unsigned char *b, size_t n);
    /* An option changed state ('u' us, 'h' him; on 0 or 1). */
    void (*on_opt)(void *ud, int who, int opt, int on);
    /* A complete subnegotiation: IAC SB opt data IAC SE, data unescaped. */
    void (*on_sb)(void *ud, int opt, const unsigned char *data, size_t n,
                  int truncated);
    void *ud;
};

/* A decoder with the callbacks (any may be NULL). */
void ath_telnet_init(ath_telnet_t *t, void *ud);
/* Asks for an option: who 'u' sends WILL opt, 'h' sends DO opt (once). */
void ath_telnet_ask(ath_telnet_t *t, int who, int opt);
/* Takes n bytes from the peer; writes the data bytes among them to out
 * (which may be in itself: never longer than the input) and returns how
 * many. Commands and subnegotiations go to the callbacks; IAC IAC is one
 * 0xFF; a CR NUL is a CR while the peer sends in non-binary mode. Any
 * split of the stream into calls gives the same result. */
size_t ath_telnet_decode(ath_telnet_t *t, const unsigned char *in, size_t n,
                         unsigned char *out);
/* Escapes data for sending: each 0xFF doubled. out holds 2n. Returns the
 * length. */
size_t ath_telnet_escape(const unsigned char *in, size_t n,
                         unsigned char *out);
/* Builds IAC SB COM-PORT-OPTION cmd value IAC SE (value escaped) in out,
 * which holds 6 + 2n bytes. Returns the length. */
size_t ath_telnet_comport(unsigned char *out, int cmd,
                          const unsigned char *val, size_t n);

#endif
