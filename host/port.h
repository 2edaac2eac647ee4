/*
 * port.h: ports, the byte pipes the chat engine reads: serial devices and
 * ptys (termios), pty pairs made by the host, TCP connections and
 * listeners. Every port is a non-blocking fd watched with uv_poll; TLS (tls.c)
 * plugs in as a different pair of read/write functions.
 */
#ifndef ATH_PORT_H
#define ATH_PORT_H

#include <stddef.h>
#include <sys/types.h>

#include "chat.h"
#include "core.h"

enum { ATH_PORT_SERIAL, ATH_PORT_PTY, ATH_PORT_TCP, ATH_PORT_LISTEN };

typedef struct ath_port ath_port_t;

/* Reads or writes up to n bytes: > 0 done, 0 end of file (read only), or
 * a negative errno (-EAGAIN: try when the fd is ready). */
typedef ssize_t (*ath_io_fn)(ath_port_t *p, char *buf, size_t n);

/*
 * What a port tells its owner, through the one callback it was given
 * (as libuv's uv_read_cb): the port never knows who owns it or what the
 * owner makes of it. Each libuv callback of the port ends with
 * ATH_PORT_SETTLED, after which the owner runs whatever it queued.
 */
enum {
    ATH_PORT_DATA = 1, /* new bytes are in p->chat */
    ATH_PORT_END,      /* EOF (err 0) or a failure (err): p->eof is set */
    ATH_PORT_DRAINED,  /* the write queue drained (err 0) or failed */
    ATH_PORT_CONNECTED,/* a TCP connect or RFC 2217 negotiation finished
                          (err 0) or failed; what names the step */
    ATH_PORT_TLS_DONE, /* the TLS handshake ended: code NULL (done) or
                          "ETLS"/"ETIMEDOUT" with why */
    ATH_PORT_ACCEPTED, /* a listener took a connection (conn), or err */
    ATH_PORT_SETTLED,  /* the end of one libuv callback of the port */
    ATH_PORT_FREE      /* the port's memory goes: the owner's with it */
};

typedef struct ath_port_ev {
    int type;
    int err;          /* an errno, 0 for success */
    const char *what; /* CONNECTED: the step; TLS_DONE: why */
    const char *code; /* TLS_DONE */
    ath_port_t *conn; /* ACCEPTED */
} ath_port_ev_t;

typedef void (*ath_port_cb)(ath_port_t *p, const ath_port_ev_t *ev);

typedef struct ath_serial_opts {
    int baud, databits, stopbits, rtscts;
    char parity;  /* 'n', 'e' or 'o' */
    int dtr, rts; /* -1: leave as is */
    int exclusive;
} ath_serial_opts_t;

/*
 * A transport over the fd (TLS, RFC 2217): what differs from a plain fd,
 * called by port.c through these pointers (any may be NULL), so port.c
 * names no transport.
 */
typedef struct ath_xport {
    /* 1 if a read would return something without the fd becoming
     * readable (bytes decrypted already, an end seen). */
    int (*pending)(ath_port_t *p);
    /* Takes the poll events (1) or adds to *events what it needs (0). */
    int (*step)(ath_port_t *p, int *events);
    /* The poll events it wants, instead of the plain ones. */
    int (*events)(ath_port_t *p);
    /* The TCP connection is up: the transport's own set-up starts. */
    void (*up)(ath_port_t *p);
    /* Writes s[0, n) in the transport's framing (escaping). */
    int (*write)(ath_port_t *p, const char *s, size_t n);
    /* Line settings, break, purge (see ath_port_settings). */
    int (*settings)(ath_port_t *p, const ath_serial_opts_t *o);
    int (*brk)(ath_port_t *p, int on);
    int (*purge)(ath_port_t *p, int which);
    void (*free)(ath_port_t *p);
} ath_xport_t;

struct ath_port {
    ath_res_t res;
    ath_host_t *h;
    int kind;
    int fd;
    int slave_fd; /* pty master: the slave, kept open */
    int closed;   /* close() was called */
    int eof;      /* the peer closed, or the fd failed */
    int eof_err;  /* errno of the failure, 0 for a clean EOF */
    char *name;   /* for transcripts and messages */
    char *path;   /* device path; pty: the slave's path */
    char *link;   /* pty: a symlink to the slave, removed on close */
    uv_poll_t poll;
    int poll_events;
    uv_timer_t timer; /* the owner's: a wait's timeout */
    int handles;      /* of poll and timer, still to close */
    ath_chat_t *chat;
    ath_io_fn io_read, io_write;
    const ath_xport_t *xp; /* the transport, or NULL for the plain fd */
    void *tls; /* tls.c's state, or NULL */
    struct ath_rfc2217 *rfc2217; /* rfc2217.c's state, or NULL */
    int negotiating;  /* connected; the protocol's own set-up still runs */
    int connecting;   /* a TCP connect or TLS handshake is in flight */
    int accepting;    /* a listener: someone waits for a connection */
    ath_serial_opts_t so; /* serial ports, rfc2217: the line settings */
    /* bytes accepted by send() but not yet written */
    char *wq;
    size_t wlen, woff, wcap;
    ath_port_cb cb; /* the owner's */
    void *data;     /* the owner's */
    int timeout_ms; /* default wait timeout */
    int untraced;   /* its bytes stay out of the transcript */
    char eol[4];
    /* the last bytes received, for error messages */
    char last[96];
    size_t lastlen;
    ath_rs_t lastrs; /* secrets masked in what last holds (port_last) */
    double last_t;
    void (*on_close)(ath_port_t *p);
};

/* Opens a serial device or pty slave. Returns the fd, or a negative errno
 * with *why naming the step ("open", "port busy", "termios"). */
int ath_serial_open(const char *path, const ath_serial_opts_t *o,
                    const char **why);
/* Closes fd, first clearing the exclusive mode ath_serial_open set on it
 * (which would outlive the process). Every port fd closes through it. */
int ath_fd_close(int fd);
/* Makes a raw pty pair; returns the master fd, slave fd and slave path. */
int ath_pty_open(int *slave_fd, char *path, size_t pathlen);
/* Sets DTR/RTS (-1 leaves a line as is). */
int ath_serial_lines(int fd, int dtr, int rts);

/* Changes the line settings (baud, data bits, parity, stop bits, DTR,
 * RTS) of a serial port or an rfc2217: port to o's, where they differ.
 * 0 or a negative errno (-ENOTSUP: a port without lines, TCP). */
int ath_port_settings(ath_port_t *p, const ath_serial_opts_t *o);
/* What ath_port_settings records once the port took o: o, except that a
 * line o leaves as is (-1) keeps its state. */
static inline void ath_port_took(ath_port_t *p, const ath_serial_opts_t *o)
{
    int dtr = p->so.dtr, rts = p->so.rts;
    p->so = *o;
    if (o->dtr < 0)
        p->so.dtr = dtr;
    if (o->rts < 0)
        p->so.rts = rts;
}
/* Starts (on 1) or ends (on 0) a break. */
int ath_port_break(ath_port_t *p, int on);
/* Discards what the device holds: 1 received, 2 to send, 3 both. */
int ath_port_purge(ath_port_t *p, int which);

/* rfc2217.c: makes a TCP port (not yet connected) speak RFC 2217, with
 * the line settings o. 0 or -ENOMEM. */
int ath_rfc2217_attach(ath_port_t *p, const ath_serial_opts_t *o);
/* rfc2217.c: sends a COM-PORT-OPTION command. 0 or a negative errno. */
int ath_rfc2217_command(ath_port_t *p, int cmd, const unsigned char *val,
                        size_t n);
/* rfc2217.c: what the server answered: baud, data bits, parity ('n',
 * 'o', 'e', 'm', 's'), stop bits; 0 where it has not said. */
void ath_rfc2217_remote(ath_port_t *p, int *baud, int *databits,
                        int *parity, int *stopbits);
/* port.c: writes bytes as they are, past any escaping (for protocol
 * bytes) and the transcript. 0 or a negative errno. */
int ath_port_write_raw(ath_port_t *p, const char *s, size_t n);

/* Wraps an fd in a port; the port owns it and reports to cb. NULL if
 * memory ran out. */
ath_port_t *ath_port_new(ath_host_t *h, int fd, int kind, const char *name,
                         ath_port_cb cb);
/* Tells the port's owner ev (for the transports). */
void ath_port_report(ath_port_t *p, const ath_port_ev_t *ev);
/* Starts watching the fd for the events the port needs now. */
void ath_port_watch(ath_port_t *p);
/* Queues bytes for writing and writes what the fd takes now. 0 or a
 * negative errno. */
int ath_port_write(ath_port_t *p, const char *s, size_t n);
/* Closes the fd and the handles; frees p once they are closed (the owner
 * hears ATH_PORT_FREE then). Wakes no one: the owner fails its waiters
 * first. */
void ath_port_close(ath_port_t *p);

/* tls.c: TLS over a connected TCP port. */
/* A PEM source: text, or a file to read it from. */
typedef struct ath_tls_pem {
    const char *name; /* the option, for messages */
    const char *text, *file;
    size_t len;
} ath_tls_pem_t;

/* What port:tls() asks for (ltls.c reads it from the options). */
typedef struct ath_tls_opts {
    int server, verify, timeout;
    ath_tls_pem_t ca, cert, key;
    const char *hostname;
} ath_tls_opts_t;

/* Makes p speak TLS as o says: from now on its reads and writes go
 * through OpenSSL, and the handshake is ready to start. 0, or -1 with the
 * reason in err and p as it was (the options did not load). */
int ath_tls_attach(ath_port_t *p, const ath_tls_opts_t *o, char *err, size_t n);
/* Runs the handshake as far as the fd allows: 1 done, -1 failed with the
 * reason in err, 0 waiting: its timeout (the options' timeout ms) runs and
 * the handshake goes on when the fd is ready; its end is reported as
 * ATH_PORT_TLS_DONE (while p->connecting is set). */
int ath_tls_handshake(ath_port_t *p, char *err, size_t n);
/* The OpenSSL SSL of p once its handshake is done, else NULL. */
struct ssl_st *ath_tls_session(ath_port_t *p);

#endif
