/*
 * tls.c: TLS over a connected TCP port (OpenSSL): the context, PEM
 * certificates and keys, the handshake while a flow waits, reading and
 * writing. The Lua binding (port:tls, port:tls_info) is ltls.c.
 *
 * After the handshake SSL_read and SSL_write are the port's io_read and
 * io_write, so the chat engine, send and the transcript see plaintext as
 * on any other port. OpenSSL reaches the fd through a BIO of ours that
 * uses recv/send with MSG_NOSIGNAL: a peer that went away is an error,
 * never a SIGPIPE. OpenSSL's errors never reach stderr: the first one on
 * its queue becomes the message, and the queue is cleared.
 *
 * One SSL_CTX per port: no session cache, no shared state.
 */
#include "port.h"

#include <arpa/inet.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

enum { TLS_HANDSHAKE, TLS_OPEN, TLS_FAILED };

typedef struct ath_tls {
    SSL_CTX *ctx;
    SSL *ssl;
    int fd;
    int in_eof;        /* recv() returned 0 */
    int sys_errno;     /* errno of the last failed recv/send */
    uv_timer_t *timer; /* the handshake's timeout, while it runs */
    int timeout_ms;
    int state;
    int want;             /* handshake: the poll events it waits for */
    int read_wants_write; /* SSL_read waits for the fd to be writable */
    int write_wants_read; /* SSL_write waits for it to be readable */
    int fatal;            /* failed: no close_notify on close */
    int has_rerr;         /* SSL_read ended after returning bytes; */
    ssize_t rerr;         /* the next read returns this */
    void (*next_close)(ath_port_t *p);
} ath_tls_t;

/* ---- the fd as a BIO ----------------------------------------------------- */

static int tls_bio_write(BIO *b, const char *buf, int n)
{
    ath_tls_t *t = BIO_get_data(b);
    ssize_t r = send(t->fd, buf, (size_t)n, MSG_NOSIGNAL);
    BIO_clear_retry_flags(b);
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            BIO_set_retry_write(b);
        else
            t->sys_errno = errno;
    }
    return (int)r;
}

static int tls_bio_read(BIO *b, char *buf, int n)
{
    ath_tls_t *t = BIO_get_data(b);
    ssize_t r = recv(t->fd, buf, (size_t)n, 0);
    BIO_clear_retry_flags(b);
    if (r == 0)
        t->in_eof = 1;
    if (r < 0) {
        if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
            BIO_set_retry_read(b);
        else
            t->sys_errno = errno;
    }
    return (int)r;
}

static long tls_bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    ath_tls_t *t = BIO_get_data(b);
    (void)num;
    (void)ptr;
    switch (cmd) {
    case BIO_CTRL_FLUSH: return 1;
    case BIO_CTRL_EOF: /* a TCP EOF counts as close_notify */ return t->in_eof;
    default: return 0;
    }
}

static BIO_METHOD *tls_bm; /* one for the process, never freed */
static CRYPTO_ONCE tls_bm_once = CRYPTO_ONCE_STATIC_INIT;

static void tls_bio_init(void)
{
    BIO_METHOD *m =
        BIO_meth_new(BIO_TYPE_SOURCE_SINK | BIO_get_new_index(), "athost port");
    if (m && BIO_meth_set_write(m, tls_bio_write) &&
        BIO_meth_set_read(m, tls_bio_read) &&
        BIO_meth_set_ctrl(m, tls_bio_ctrl))
        tls_bm = m;
    else
        BIO_meth_free(m);
}

/* A BIO on t->fd. NULL if memory ran out. */
static BIO *tls_bio_new(ath_tls_t *t)
{
    BIO *b;
    if (!CRYPTO_THREAD_run_once(&tls_bm_once, tls_bio_init) || tls_bm == NULL ||
        (b = BIO_new(tls_bm)) == NULL)
        return NULL;
    BIO_set_data(b, t);
    BIO_set_init(b, 1);
    return b;
}

/* ---- messages ------------------------------------------------------------ */

/* Writes into buf why the last OpenSSL call failed (e is its SSL_get_error
 * code, or 0): the first error on the queue, with the verify result when
 * that error is a failed verification; then clears the queue. */
static void tls_why(ath_tls_t *t, int e, char *buf, size_t n)
{
    unsigned long code = ERR_get_error();
    if (code != 0) {
        const char *r = ERR_reason_error_string(code);
        char tmp[256];
        if (r == NULL) {
            ERR_error_string_n(code, tmp, sizeof tmp);
            r = tmp;
        }
        if (t && t->ssl && ERR_GET_LIB(code) == ERR_LIB_SSL &&
            ERR_GET_REASON(code) == SSL_R_CERTIFICATE_VERIFY_FAILED)
            snprintf(
                buf, n, "%s: %s", r,
                X509_verify_cert_error_string(SSL_get_verify_result(t->ssl)));
        else
            snprintf(buf, n, "%s", r);
    } else if (e == SSL_ERROR_SYSCALL && t && t->sys_errno) {
        snprintf(buf, n, "%s", strerror(t->sys_errno));
    } else if (e == SSL_ERROR_SYSCALL || e == SSL_ERROR_ZERO_RETURN) {
        snprintf(buf, n, "connection closed by the peer");
    } else {
        snprintf(buf, n, "unknown error");
    }
    ERR_clear_error();
}

/* ---- certificates and keys ----------------------------------------------- */

static int tls_nopass(char *buf, int size, int rw, void *u)
{
    (void)buf;
    (void)size;
    (void)rw;
    (void)u;
    return 0; /* never prompt on a terminal */
}

/* Opens a BIO on a PEM source; NULL with the reason in err. */
static BIO *tls_pem_bio(const ath_tls_pem_t *pem, char *err, size_t n)
{
    BIO *b;
    if (pem->text)
        b = BIO_new_mem_buf(pem->text, (int)pem->len);
    else
        b = BIO_new_file(pem->file, "r");
    if (b == NULL) {
        int e = errno;
        if (pem->file)
            snprintf(err, n, "%s %s: %s", pem->name, pem->file, strerror(e));
        else
            tls_why(NULL, 0, err, n);
    }
    ERR_clear_error();
    return b;
}

/* Reads the certificates of a PEM source: first into *leaf (when leaf is
 * not NULL) and the rest, or all of them, into the stack. Returns how
 * many, or -1 with the reason in err. */
static int tls_read_certs(const ath_tls_pem_t *pem, X509 **leaf,
                          STACK_OF(X509) * rest, char *err, size_t n)
{
    BIO *b = tls_pem_bio(pem, err, n);
    X509 *x;
    int count = 0;
    unsigned long last;
    if (b == NULL)
        return -1;
    while ((x = PEM_read_bio_X509(b, NULL, tls_nopass, NULL)) != NULL) {
        if (leaf && count == 0)
            *leaf = x;
        else if (!sk_X509_push(rest, x))
            X509_free(x);
        count++;
    }
    BIO_free(b);
    last = ERR_peek_last_error();
    if (count > 0 && ERR_GET_LIB(last) == ERR_LIB_PEM &&
        ERR_GET_REASON(last) == PEM_R_NO_START_LINE) {
        ERR_clear_error(); /* the end of the text */
        return count;
    }
    if (count == 0 && ERR_GET_REASON(last) == PEM_R_NO_START_LINE) {
        ERR_clear_error();
        snprintf(err, n, "%s: no PEM certificate in it", pem->name);
        return -1;
    }
    {
        char why[256];
        tls_why(NULL, 0, why, sizeof why);
        snprintf(err, n, "%s: not a PEM certificate: %s", pem->name, why);
    }
    return -1;
}

/* Trusts the certificates of the ca source. 0 or -1 (reason in err). */
static int tls_load_ca(SSL_CTX *ctx, const ath_tls_pem_t *pem, char *err,
                       size_t n)
{
    STACK_OF(X509) *certs = sk_X509_new_null();
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    int i, r = -1;
    if (certs == NULL) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    if (tls_read_certs(pem, NULL, certs, err, n) > 0) {
        r = 0;
        for (i = 0; r == 0 && i < sk_X509_num(certs); i++)
            if (!X509_STORE_add_cert(store, sk_X509_value(certs, i))) {
                char why[256];
                tls_why(NULL, 0, why, sizeof why);
                snprintf(err, n, "%s: %s", pem->name, why);
                r = -1;
            }
    }
    sk_X509_pop_free(certs, X509_free);
    return r;
}

/* Loads our certificate (and the chain after it) and private key, and
 * checks that they belong together. 0 or -1 (reason in err). */
static int tls_load_cert(SSL_CTX *ctx, const ath_tls_opts_t *o, char *err,
                         size_t n)
{
    STACK_OF(X509) *chain = sk_X509_new_null();
    X509 *leaf = NULL;
    EVP_PKEY *pkey = NULL;
    BIO *b;
    int r = -1;
    if (chain == NULL || tls_read_certs(&o->cert, &leaf, chain, err, n) < 0)
        goto done;
    if ((b = tls_pem_bio(&o->key, err, n)) == NULL)
        goto done;
    pkey = PEM_read_bio_PrivateKey(b, NULL, tls_nopass, NULL);
    BIO_free(b);
    if (pkey == NULL) {
        char why[256];
        tls_why(NULL, 0, why, sizeof why);
        snprintf(err, n, "%s: not a PEM private key: %s", o->key.name, why);
    } else if (!X509_check_private_key(leaf, pkey)) {
        ERR_clear_error();
        snprintf(err, n, "%s does not match %s", o->key.name, o->cert.name);
    } else if (!SSL_CTX_use_certificate(ctx, leaf) ||
               !SSL_CTX_use_PrivateKey(ctx, pkey) ||
               !SSL_CTX_set1_chain(ctx, chain)) {
        char why[256];
        tls_why(NULL, 0, why, sizeof why);
        snprintf(err, n, "%s: %s", o->cert.name, why);
    } else {
        r = 0;
    }
done:
    EVP_PKEY_free(pkey);
    X509_free(leaf);
    sk_X509_pop_free(chain, X509_free);
    return r;
}

/* A context for one port: TLS 1.2 or later, our certificate, whom we
 * trust and whether we check the peer. NULL with the reason in err. */
static SSL_CTX *tls_ctx_new(const ath_tls_opts_t *o, char *err, size_t n)
{
    SSL_CTX *ctx = SSL_CTX_new(TLS_method());
    int mode = SSL_VERIFY_NONE;
    if (ctx == NULL) {
        tls_why(NULL, 0, err, n);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    /* A peer that closes TCP without close_notify ends the stream as
     * a plain port's EOF does; no renegotiation mid-stream. */
    SSL_CTX_set_options(ctx,
                        SSL_OP_IGNORE_UNEXPECTED_EOF | SSL_OP_NO_RENEGOTIATION);
    /* port_flush retries from a queue that may move and grow. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE |
                              SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
    if (o->server)
        SSL_CTX_set_num_tickets(ctx, 0); /* nothing could resume them */
    if ((o->ca.text || o->ca.file) && tls_load_ca(ctx, &o->ca, err, n) != 0)
        goto fail;
    if ((o->cert.text || o->cert.file) && tls_load_cert(ctx, o, err, n) != 0)
        goto fail;
    if (o->verify) {
        mode = SSL_VERIFY_PEER;
        if (o->server)
            mode |= SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
        else if (!o->ca.text && !o->ca.file &&
                 !SSL_CTX_set_default_verify_paths(ctx)) {
            tls_why(NULL, 0, err, n);
            goto fail;
        }
    }
    SSL_CTX_set_verify(ctx, mode, NULL);
    return ctx;
fail:
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---- the TLS state of a port --------------------------------------------- */

static void tls_free(ath_tls_t *t)
{
    SSL_free(t->ssl); /* and its BIO */
    SSL_CTX_free(t->ctx);
    free(t);
}

/* Sets SNI and, when verifying, the name or address the peer's
 * certificate must carry. 0 or -1 (reason in err). */
static int tls_hostname(ath_tls_t *t, const ath_tls_opts_t *o, char *err,
                        size_t n)
{
    unsigned char addr[16];
    int ip = inet_pton(AF_INET, o->hostname, addr) == 1 ||
             inet_pton(AF_INET6, o->hostname, addr) == 1;
    X509_VERIFY_PARAM *vp = SSL_get0_param(t->ssl);
    /* SNI names hosts, never addresses (RFC 6066). */
    if (!ip && !SSL_set_tlsext_host_name(t->ssl, o->hostname))
        goto fail;
    if (!o->verify)
        return 0;
    X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
    if (ip ? X509_VERIFY_PARAM_set1_ip_asc(vp, o->hostname)
           : X509_VERIFY_PARAM_set1_host(vp, o->hostname, 0))
        return 0;
fail:
    ERR_clear_error();
    snprintf(err, n, "bad hostname '%s'", o->hostname);
    return -1;
}

/* The TLS state for p, ready to shake hands. NULL with the reason in
 * err. */
static ath_tls_t *tls_new(ath_port_t *p, const ath_tls_opts_t *o, char *err,
                          size_t n)
{
    ath_tls_t *t = calloc(1, sizeof *t);
    BIO *b = NULL;
    if (t == NULL) {
        snprintf(err, n, "out of memory");
        return NULL;
    }
    t->fd = p->fd;
    if ((t->ctx = tls_ctx_new(o, err, n)) == NULL)
        goto fail;
    if ((t->ssl = SSL_new(t->ctx)) == NULL || (b = tls_bio_new(t)) == NULL) {
        tls_why(NULL, 0, err, n);
        goto fail;
    }
    SSL_set_bio(t->ssl, b, b);
    if (o->server)
        SSL_set_accept_state(t->ssl);
    else
        SSL_set_connect_state(t->ssl);
    if (!o->server && o->hostname && tls_hostname(t, o, err, n) != 0)
        goto fail;
    return t;
fail:
    tls_free(t);
    return NULL;
}

static void tls_timer_closed(uv_handle_t *handle)
{
    ath_host_t *h = handle->data;
    ath_host_handles(h, -1);
    free(handle);
}

/* The timer outlives the port's memory until its close callback: it is
 * an allocation of its own, freed there. */
static void tls_timer_close(ath_tls_t *t, ath_host_t *h)
{
    if (t->timer == NULL)
        return;
    t->timer->data = h;
    uv_close((uv_handle_t *)t->timer, tls_timer_closed);
    t->timer = NULL;
}

/* Sends close_notify (best effort: the fd is non-blocking) before the
 * port closes the fd. */
static void tls_on_close(ath_port_t *p)
{
    ath_tls_t *t = p->tls;
    tls_timer_close(t, p->h);
    if (t->state == TLS_OPEN && !t->fatal) {
        ERR_clear_error();
        (void)SSL_shutdown(t->ssl);
        ERR_clear_error();
    }
    if (t->next_close)
        t->next_close(p);
}

static void tls_xfree(ath_port_t *p)
{
    ath_tls_t *t = p->tls;
    if (t == NULL)
        return;
    p->tls = NULL;
    tls_timer_close(t, p->h); /* only if the port never closed */
    tls_free(t);
}

/* ---- reading and writing ------------------------------------------------- */

/* Before each OpenSSL call: SSL_get_error reads the queue, and the BIO's
 * errno must be this call's. */
static void tls_begin(ath_tls_t *t)
{
    ERR_clear_error();
    t->sys_errno = 0;
}

/* Maps a failed SSL_read/SSL_write (e from SSL_get_error): -EAGAIN, with
 * *other set when it waits for the other direction of the fd; 0 for the
 * end of the stream; else a negative errno, noted in the transcript. */
static ssize_t tls_io_error(ath_port_t *p, int e, int want_other, int *other)
{
    ath_tls_t *t = p->tls;
    char why[300], note[340];
    ssize_t r;
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        *other = e == want_other;
        ERR_clear_error();
        return -EAGAIN;
    }
    if (e == SSL_ERROR_ZERO_RETURN) {
        ERR_clear_error();
        return 0;
    }
    t->fatal = 1;
    if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0) {
        ERR_clear_error();
        return t->sys_errno ? -t->sys_errno : 0;
    }
    r = e == SSL_ERROR_SYSCALL && t->sys_errno ? -t->sys_errno : -EPROTO;
    tls_why(t, e, why, sizeof why);
    if (ath_host_tr(p->h) && !p->untraced) {
        snprintf(note, sizeof note, "(TLS: %s)", why);
        ath_tr_note(ath_host_tr(p->h), p->name, note);
    }
    return r;
}

/* Fills buf with as much plaintext as OpenSSL gives without blocking. An
 * end or error after some bytes is kept for the next call
 * (tls_pending says so, and port.c reads again). */
static ssize_t tls_read(ath_port_t *p, char *buf, size_t n)
{
    ath_tls_t *t = p->tls;
    size_t off = 0, got;
    ssize_t r;
    if (t->has_rerr) {
        t->has_rerr = 0;
        return t->rerr;
    }
    t->read_wants_write = 0;
    while (off < n) {
        tls_begin(t);
        if (SSL_read_ex(t->ssl, buf + off, n - off, &got) == 1) {
            off += got;
            continue;
        }
        r = tls_io_error(p, SSL_get_error(t->ssl, 0), SSL_ERROR_WANT_WRITE,
                         &t->read_wants_write);
        if (r == -EAGAIN)
            break;
        if (off == 0)
            return r;
        t->has_rerr = 1;
        t->rerr = r;
        break;
    }
    return off > 0 ? (ssize_t)off : -EAGAIN;
}

static ssize_t tls_write(ath_port_t *p, char *buf, size_t n)
{
    ath_tls_t *t = p->tls;
    size_t done;
    ssize_t r;
    t->write_wants_read = 0;
    tls_begin(t);
    if (SSL_write_ex(t->ssl, buf, n, &done) == 1)
        return (ssize_t)done;
    r = tls_io_error(p, SSL_get_error(t->ssl, 0), SSL_ERROR_WANT_READ,
                     &t->write_wants_read);
    return r == 0 ? -EPIPE : r;
}

static int tls_pending(ath_port_t *p)
{
    ath_tls_t *t = p->tls;
    return t != NULL && t->state == TLS_OPEN &&
           (t->has_rerr || SSL_pending(t->ssl) > 0);
}

static int tls_events(ath_port_t *p)
{
    ath_tls_t *t = p->tls;
    int ev = 0;
    if (t->state == TLS_HANDSHAKE)
        return t->want;
    if (t->state != TLS_OPEN)
        return 0;
    if (!p->eof)
        ev |= UV_READABLE;
    if ((p->wlen > 0 && (!t->write_wants_read || p->eof)) ||
        t->read_wants_write)
        ev |= UV_WRITABLE;
    return ev;
}

/* ---- the handshake ------------------------------------------------------- */

/* Runs the handshake as far as the fd allows: 1 done, 0 waiting for
 * t->want, -1 failed with the reason in err. */
static int tls_shake(ath_port_t *p, char *err, size_t n)
{
    ath_tls_t *t = p->tls;
    int r, e;
    tls_begin(t);
    r = SSL_do_handshake(t->ssl);
    if (r == 1) {
        t->state = TLS_OPEN;
        return 1;
    }
    e = SSL_get_error(t->ssl, r);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
        t->want = e == SSL_ERROR_WANT_READ ? UV_READABLE : UV_WRITABLE;
        ERR_clear_error();
        return 0;
    }
    t->state = TLS_FAILED;
    t->fatal = 1;
    tls_why(t, e, err, n);
    return -1;
}

/* Ends the handshake the owner waits for (p->connecting): reports
 * ATH_PORT_TLS_DONE with code NULL (done) or the failure. */
static void tls_done(ath_port_t *p, const char *code, const char *why)
{
    ath_port_ev_t ev = {ATH_PORT_TLS_DONE, 0, why, code, NULL};
    p->connecting = 0;
    tls_timer_close(p->tls, p->h);
    ath_port_report(p, &ev);
}

static void tls_timeout_cb(uv_timer_t *tm)
{
    ath_port_t *p = tm->data;
    ath_tls_t *t = p->tls;
    char why[200];
    if (!p->connecting || t->state != TLS_HANDSHAKE)
        return;
    t->state = TLS_FAILED;
    t->fatal = 1;
    snprintf(why, sizeof why, "TLS handshake with %s not done in %d ms",
             p->name, t->timeout_ms);
    tls_done(p, "ETIMEDOUT", why);
    ath_port_report(p, &(ath_port_ev_t){ATH_PORT_SETTLED, 0, NULL, NULL,
                                        NULL});
}

static int tls_step(ath_port_t *p, int *events)
{
    ath_tls_t *t = p->tls;
    char why[400];
    int r;
    if (t->state == TLS_HANDSHAKE) {
        if ((r = tls_shake(p, why, sizeof why)) != 0 && p->connecting)
            tls_done(p, r > 0 ? NULL : "ETLS", why);
        return 1;
    }
    if (t->state != TLS_OPEN)
        return 1;
    if (t->read_wants_write && (*events & UV_WRITABLE))
        *events |= UV_READABLE;
    if (t->write_wants_read && (*events & UV_READABLE))
        *events |= UV_WRITABLE;
    return 0;
}

static const ath_xport_t tls_xport = {tls_pending, tls_step, tls_events,
                                      NULL, NULL, NULL, NULL, NULL,
                                      tls_xfree};

int ath_tls_attach(ath_port_t *p, const ath_tls_opts_t *o, char *err, size_t n)
{
    ath_tls_t *t = tls_new(p, o, err, n);
    if (t == NULL)
        return -1;
    p->tls = t;
    p->xp = &tls_xport;
    p->io_read = tls_read;
    p->io_write = tls_write;
    t->next_close = p->on_close;
    p->on_close = tls_on_close;
    t->timeout_ms = o->timeout;
    return 0;
}

int ath_tls_handshake(ath_port_t *p, char *err, size_t n)
{
    ath_tls_t *t = p->tls;
    int r = tls_shake(p, err, n);
    if (r == 0 && t->timeout_ms > 0 &&
        (t->timer = malloc(sizeof *t->timer)) != NULL) {
        uv_timer_init(ath_host_loop(p->h), t->timer);
        ath_host_handles(p->h, 1);
        t->timer->data = p;
        uv_timer_start(t->timer, tls_timeout_cb, (uint64_t)t->timeout_ms, 0);
    }
    return r;
}

struct ssl_st *ath_tls_session(ath_port_t *p)
{
    ath_tls_t *t = p->tls;
    return t != NULL && t->state == TLS_OPEN ? t->ssl : NULL;
}
