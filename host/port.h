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
#include "host.h"

enum { ATH_PORT_SERIAL, ATH_PORT_PTY, ATH_PORT_TCP, ATH_PORT_LISTEN };

typedef struct ath_port ath_port_t;

/* Reads or writes up to n bytes: > 0 done, 0 end of file (read only), or
 * a negative errno (-EAGAIN: try when the fd is ready). */
typedef ssize_t (*ath_io_fn)(ath_port_t *p, char *buf, size_t n);

#define ATH_PORT_PATS 8

typedef struct ath_serial_opts {
    int baud, databits, stopbits, rtscts;
    char parity;  /* 'n', 'e' or 'o' */
    int dtr, rts; /* -1: leave as is */
    int exclusive;
} ath_serial_opts_t;

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
    uv_timer_t timer; /* the wait's timeout */
    int handles;      /* of poll and timer, still to close */
    ath_chat_t *chat;
    ath_io_fn io_read, io_write;
    void *tls; /* tls.c's state, or NULL */
    struct ath_rfc2217 *rfc2217; /* rfc2217.c's state, or NULL */
    int negotiating;  /* connected; the protocol's own set-up still runs */
    ath_serial_opts_t so; /* serial ports, rfc2217: the line settings */
    /* bytes accepted by send() but not yet written */
    char *wq;
    size_t wlen, woff, wcap;
    /* the flows waiting: on the chat engine, on the write queue */
    lua_State *waiter;
    lua_State *drainer;
    lua_State *connecting; /* TCP connect or TLS handshake */
    int sync_n;            /* values a wait completed with, in place */
    int processing;        /* inside ath_lport_process */
    lua_State *woken;      /* a waiter to wake when processing ends */
    int woken_n;
    int lref;              /* registry: the port's Lua-side table */
    ath_wait_t w;
    ath_pat_t pats[ATH_PORT_PATS];
    ath_pat_t *xpats; /* more patterns than pats holds */
    ath_pat_t reply;
    char replybuf[40];
    char cmdname[40];
    double t_wait;  /* when the wait started */
    int timeout_ms; /* default wait timeout */
    int outcome_ms; /* CMD: the wait for its outcome after OK */
    int untraced;   /* its bytes stay out of the transcript */
    int no_progress; /* this wait prints no progress lines (progress=false) */
    int has_data;   /* CMD: it has data to send at its prompt */
    int data_sent;  /* CMD: its data went out at the prompt */
    char eol[4];
    /* the last bytes received, for error messages */
    char last[96];
    size_t lastlen;
    ath_rs_t lastrs; /* secrets masked in what last holds (port_last) */
    double last_t;
    int urc_next;
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
/* Starts (on 1) or ends (on 0) a break. */
int ath_port_break(ath_port_t *p, int on);
/* Discards what the device holds: 1 received, 2 to send, 3 both. */
int ath_port_purge(ath_port_t *p, int which);

/* rfc2217.c: makes a TCP port (not yet connected) speak RFC 2217, with
 * the line settings o. 0 or -ENOMEM. */
int ath_rfc2217_attach(ath_port_t *p, const ath_serial_opts_t *o);
/* rfc2217.c: the TCP connection is up: negotiation starts; the port's
 * connecting flow wakes when the server has taken the settings. */
void ath_rfc2217_start(ath_port_t *p);
/* rfc2217.c: sends a COM-PORT-OPTION command. 0 or a negative errno. */
int ath_rfc2217_command(ath_port_t *p, int cmd, const unsigned char *val,
                        size_t n);
/* rfc2217.c: what the server answered: baud, data bits, parity ('n',
 * 'o', 'e', 'm', 's'), stop bits; 0 where it has not said. */
void ath_rfc2217_remote(ath_port_t *p, int *baud, int *databits,
                        int *parity, int *stopbits);
void ath_rfc2217_free(ath_port_t *p);
/* port.c: writes bytes as they are, past any escaping (for protocol
 * bytes) and the transcript. 0 or a negative errno. */
int ath_port_write_raw(ath_port_t *p, const char *s, size_t n);

/* Wraps an fd in a port; the port owns it. NULL if memory ran out. */
ath_port_t *ath_port_new(ath_host_t *h, int fd, int kind, const char *name);
/* Starts watching the fd for the events the port needs now. */
void ath_port_watch(ath_port_t *p);
/* Queues bytes for writing and writes what the fd takes now. 0 or a
 * negative errno. */
int ath_port_write(ath_port_t *p, const char *s, size_t n);
/* Closes the fd and the handles; frees p once they are closed. Wakes no
 * one: the binding fails its waiters first. */
void ath_port_close(ath_port_t *p);

/* lchat.c: hands what the engine made of new bytes to Lua. L is the
 * running thread (the host's main thread from a callback). */
void ath_lport_process(ath_port_t *p, lua_State *L);
/* lchat.c: the port failed or hit EOF: fails its waiters. */
void ath_lport_broken(ath_port_t *p, lua_State *L);
/* lchat.c: the write queue drained (err 0) or failed. */
void ath_lport_drained(ath_port_t *p, lua_State *L, int err);
/* lopen.c: a TCP connect or TLS handshake finished (err 0) or failed. */
void ath_lport_connected(ath_port_t *p, lua_State *L, int err,
                         const char *what);

/* lopen.c: a listener has a connection to accept. */
void ath_lport_accept(ath_port_t *p, lua_State *L);

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
 * ath_tls_step goes on when the fd is ready, waking p->connecting. */
int ath_tls_handshake(ath_port_t *p, char *err, size_t n);
/* Pushes the result of tls(): true (code NULL), or nil, "CODE: why",
 * CODE. Returns how many values. */
int ath_tls_push_result(lua_State *L, ath_port_t *p, const char *code,
                        const char *why);
/* The OpenSSL SSL of p once its handshake is done, else NULL. */
struct ssl_st *ath_tls_session(ath_port_t *p);
/* Takes the poll events while a handshake runs; 1 if it took them. After
 * the handshake it adds to *events what a TLS read or write that waits
 * for the other direction needs (a read that must write, a write that
 * must read) and returns 0. */
int ath_tls_step(ath_port_t *p, lua_State *L, int *events);
/* The poll events the TLS state wants. */
int ath_tls_events(ath_port_t *p);
/* 1 if a read would return something without the fd becoming readable:
 * bytes OpenSSL has decrypted already, or an end it has seen. */
int ath_tls_pending(ath_port_t *p);
void ath_tls_free(ath_port_t *p);

#endif
