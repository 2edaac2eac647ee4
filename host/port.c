/*
 * port.c: the operating-system side of ports: termios, ptys, sockets, and
 * the non-blocking read and write paths.
 */
#include "port.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <termios.h>
#include <unistd.h>

static const struct {
    int baud;
    speed_t speed;
} bauds[] = {{1200, B1200},
             {2400, B2400},
             {4800, B4800},
             {9600, B9600},
             {19200, B19200},
             {38400, B38400},
             {57600, B57600},
             {115200, B115200},
             {230400, B230400},
             {460800, B460800},
             {500000, B500000},
             {576000, B576000},
             {921600, B921600},
             {1000000, B1000000},
             {1500000, B1500000},
             {2000000, B2000000},
             {3000000, B3000000},
             {4000000, B4000000},
             {0, 0}};

/* Applies raw mode and the line settings to fd. 0 or a negative errno. */
static int serial_termios(int fd, const ath_serial_opts_t *o)
{
    struct termios tio;
    speed_t speed = 0;
    int i;
    if (tcgetattr(fd, &tio) != 0)
        return -errno;
    cfmakeraw(&tio);
    for (i = 0; bauds[i].baud; i++)
        if (bauds[i].baud == o->baud)
            speed = bauds[i].speed;
    if (speed == 0)
        return -EINVAL;
    cfsetispeed(&tio, speed);
    cfsetospeed(&tio, speed);
    tio.c_cflag &= ~(tcflag_t)(CSIZE | PARENB | PARODD | CSTOPB | CRTSCTS);
    tio.c_cflag |= CLOCAL | CREAD;
    switch (o->databits) {
    case 5: tio.c_cflag |= CS5; break;
    case 6: tio.c_cflag |= CS6; break;
    case 7: tio.c_cflag |= CS7; break;
    default: tio.c_cflag |= CS8; break;
    }
    if (o->parity == 'e')
        tio.c_cflag |= PARENB;
    else if (o->parity == 'o')
        tio.c_cflag |= PARENB | PARODD;
    if (o->stopbits == 2)
        tio.c_cflag |= CSTOPB;
    if (o->rtscts)
        tio.c_cflag |= CRTSCTS;
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    if (tcsetattr(fd, TCSANOW, &tio) != 0)
        return -errno;
    return 0;
}

int ath_serial_lines(int fd, int dtr, int rts)
{
    int set = 0, clr = 0;
    if (dtr == 1)
        set |= TIOCM_DTR;
    if (dtr == 0)
        clr |= TIOCM_DTR;
    if (rts == 1)
        set |= TIOCM_RTS;
    if (rts == 0)
        clr |= TIOCM_RTS;
    /* A pty has no modem lines: that is not an error for a script. */
    if (set && ioctl(fd, TIOCMBIS, &set) != 0 && errno != ENOTTY &&
        errno != EINVAL)
        return -errno;
    if (clr && ioctl(fd, TIOCMBIC, &clr) != 0 && errno != ENOTTY &&
        errno != EINVAL)
        return -errno;
    return 0;
}

/* The fds in exclusive mode (TIOCEXCL). The mode belongs to the tty, not
 * to the fd: left set, it outlives the process, and for a user without
 * CAP_SYS_ADMIN every later open of the device fails with EBUSY until
 * the device itself goes away (for a pty: until its master closes). So
 * it is cleared before the fd closes (ath_fd_close), and at exit for
 * whatever is still open (exit() from os.exit or an embedder). */
static pthread_mutex_t excl_mu = PTHREAD_MUTEX_INITIALIZER;
static int *excl_fds;
static size_t excl_n, excl_cap;

static void excl_atexit(void)
{
    size_t i;
    pthread_mutex_lock(&excl_mu);
    for (i = 0; i < excl_n; i++)
        (void)ioctl(excl_fds[i], TIOCNXCL);
    excl_n = 0;
    pthread_mutex_unlock(&excl_mu);
}

/* Sets exclusive mode on fd and remembers it. 0 or -1 (no memory). */
static int excl_set(int fd)
{
    static int registered;
    int r = 0;
    pthread_mutex_lock(&excl_mu);
    if (!registered)
        registered = atexit(excl_atexit) == 0;
    if (excl_n == excl_cap) {
        size_t cap = excl_cap ? excl_cap * 2 : 8;
        int *nf = realloc(excl_fds, cap * sizeof *nf);
        if (nf == NULL)
            r = -1;
        else {
            excl_fds = nf;
            excl_cap = cap;
        }
    }
    if (r == 0 && ioctl(fd, TIOCEXCL) == 0)
        excl_fds[excl_n++] = fd;
    pthread_mutex_unlock(&excl_mu);
    return r;
}

int ath_fd_close(int fd)
{
    size_t i;
    if (fd < 0)
        return 0;
    pthread_mutex_lock(&excl_mu);
    for (i = 0; i < excl_n; i++) {
        if (excl_fds[i] == fd) {
            (void)ioctl(fd, TIOCNXCL);
            excl_fds[i] = excl_fds[--excl_n];
            break;
        }
    }
    pthread_mutex_unlock(&excl_mu);
    return close(fd);
}

int ath_serial_open(const char *path, const ath_serial_opts_t *o,
                    const char **why)
{
    int fd, r;
    *why = "open";
    fd = open(path, O_RDWR | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        /* A tty in exclusive mode (TIOCEXCL) refuses the open itself. */
        if (errno == EBUSY)
            *why = "port busy (another program has it open exclusively)";
        return -errno;
    }
    if (!isatty(fd)) {
        close(fd);
        *why = "not a serial device or pty";
        return -ENOTTY;
    }
    if (o->exclusive) {
        int excl = 0;
        /* Root opens a tty in exclusive mode all the same: another
         * program's TIOCEXCL still means "mine". */
#ifdef TIOCGEXCL
        if (ioctl(fd, TIOCGEXCL, &excl) == 0 && excl) {
            close(fd);
            *why = "port busy (another program has it open exclusively)";
            return -EBUSY;
        }
#endif
        (void)excl;
        /* flock() for other athosts (and most serial tools): "port busy"
         * while this one runs, gone with the fd. TIOCEXCL for everyone
         * else but root, cleared again before the fd closes. */
        if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
            r = -errno;
            close(fd);
            *why = "port busy (another program has it open)";
            return r == -EWOULDBLOCK ? -EBUSY : r;
        }
        if (excl_set(fd) != 0) {
            close(fd);
            *why = "out of memory";
            return -ENOMEM;
        }
    }
    if ((r = serial_termios(fd, o)) != 0) {
        ath_fd_close(fd);
        *why = r == -EINVAL ? "unsupported baud rate" : "termios";
        return r;
    }
    if ((r = ath_serial_lines(fd, o->dtr, o->rts)) != 0) {
        ath_fd_close(fd);
        *why = "modem control lines";
        return r;
    }
    tcflush(fd, TCIOFLUSH);
    return fd;
}

int ath_pty_open(int *slave_fd, char *path, size_t pathlen)
{
    int m, s, r;
    struct termios tio;
    m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (m < 0)
        return -errno;
    if (grantpt(m) != 0 || unlockpt(m) != 0 ||
        ptsname_r(m, path, pathlen) != 0) {
        r = -errno;
        close(m);
        return r;
    }
    /* The host keeps the slave open: a master whose slave is closed
     * reports EIO, and a virtual modem must outlive its clients. */
    s = open(path, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (s < 0 || tcgetattr(s, &tio) != 0) {
        r = -errno;
        if (s >= 0)
            close(s);
        close(m);
        return r;
    }
    cfmakeraw(&tio);
    tcsetattr(s, TCSANOW, &tio);
    fcntl(m, F_SETFL, fcntl(m, F_GETFL) | O_NONBLOCK);
    *slave_fd = s;
    return m;
}

static ssize_t fd_read(ath_port_t *p, char *buf, size_t n)
{
    ssize_t r = read(p->fd, buf, n);
    if (r < 0)
        return errno == EINTR ? -EAGAIN : -errno;
    return r;
}

static ssize_t fd_write(ath_port_t *p, char *buf, size_t n)
{
    /* A socket whose peer is gone must fail with EPIPE, not kill the
     * process (an embedder's too) with SIGPIPE. */
    ssize_t r = p->kind == ATH_PORT_TCP ? send(p->fd, buf, n, MSG_NOSIGNAL)
                                        : write(p->fd, buf, n);
    if (r < 0)
        return errno == EINTR ? -EAGAIN : -errno;
    return r;
}

void ath_port_report(ath_port_t *p, const ath_port_ev_t *ev)
{
    if (p->cb)
        p->cb(p, ev);
}

static void port_tell(ath_port_t *p, int type, int err)
{
    ath_port_ev_t ev = {type, err, NULL, NULL, NULL};
    ath_port_report(p, &ev);
}

static void port_freed(ath_port_t *p)
{
    port_tell(p, ATH_PORT_FREE, 0);
    if (p->xp && p->xp->free)
        p->xp->free(p);
    ath_chat_free(p->chat);
    free(p->wq);
    free(p->name);
    ath_rs_free(&p->lastrs);
    free(p->path);
    free(p->link);
    free(p);
}

static void port_handle_closed(uv_handle_t *handle)
{
    ath_port_t *p = handle->data;
    ath_host_t *h = p->h;
    if (--p->handles == 0)
        port_freed(p);
    ath_host_handles(h, -1); /* last: it may free a freed host */
}

static void port_res_close(ath_res_t *r)
{
    ath_port_close((ath_port_t *)r);
}

/* Writes queued bytes until the fd pushes back. 0 or a negative errno. */
static int port_flush(ath_port_t *p)
{
    while (p->woff < p->wlen) {
        ssize_t n = p->io_write(p, p->wq + p->woff, p->wlen - p->woff);
        if (n == -EAGAIN)
            return 0;
        if (n < 0)
            return (int)n;
        p->woff += (size_t)n;
    }
    p->woff = p->wlen = 0;
    return 0;
}


/* Keeps the last bytes received for error messages, with the port's own
 * stream masking secrets in them (a secret split over reads, or one whose
 * middle is all the window holds, never shows). */
static void port_last_add(ath_port_t *p, const char *s, size_t n)
{
    if (n == 0)
        return;
    if (n >= sizeof p->last) {
        memcpy(p->last, s + n - sizeof p->last, sizeof p->last);
        p->lastlen = sizeof p->last;
    } else {
        size_t keep = sizeof p->last - n;
        if (p->lastlen > keep) {
            memmove(p->last, p->last + (p->lastlen - keep), keep);
            p->lastlen = keep;
        }
        memcpy(p->last + p->lastlen, s, n);
        p->lastlen += n;
    }
}

static void port_last(ath_port_t *p, const char *s, size_t n)
{
    ath_buf_t out = {NULL, 0, 0};
    const ath_ac_t *ac;
    if (!ath_host_has_secrets(p->h)) {
        port_last_add(p, s, n);
        return;
    }
    if ((ac = ath_host_ac(p->h)) == NULL)
        ath_buf_add(&out, "***", 3);
    else
        ath_rs_feed(&p->lastrs, ac, s, n, &out);
    port_last_add(p, out.b, out.len);
    free(out.b);
}

/* The most one read asks for (a read straight into a payload's room may
 * take more than the old 64 KiB at once). */
#define PORT_READ_MAX (1u << 20)

/* 1 if the transport holds bytes the fd will not announce. */
static int port_pending(ath_port_t *p)
{
    return p->xp && p->xp->pending && p->xp->pending(p);
}

/* Reads what the fd has straight into the chat engine's buffer (no
 * copy), up to 8 reads a callback (more while TLS holds decrypted
 * bytes), and tells the owner after each. */
static void port_read(ath_port_t *p)
{
    int i;
    for (i = 0; !p->eof && !p->closed; i++) {
        ssize_t n;
        size_t room;
        char *buf;
        ath_tr_t *tr;
        /* What TLS has decrypted already, the fd will not announce. */
        if (i >= 8 && !port_pending(p))
            break;
        if ((buf = ath_chat_space(p->chat, &room)) == NULL) {
            p->eof = 1;
            p->eof_err = ENOMEM;
            port_tell(p, ATH_PORT_END, p->eof_err);
            break;
        }
        if (room > PORT_READ_MAX)
            room = PORT_READ_MAX;
        n = p->io_read(p, buf, room);
        if (n == -EAGAIN)
            break;
        if (n <= 0) {
            p->eof = 1;
            p->eof_err = (int)-n;
            port_tell(p, ATH_PORT_END, p->eof_err);
            break;
        }
        if ((tr = ath_host_tr(p->h)) != NULL && !p->untraced)
            ath_tr_data(tr, p->name, '<', buf, (size_t)n);
        port_last(p, buf, (size_t)n);
        p->last_t = ath_host_now(p->h);
        ath_chat_commit(p->chat, (size_t)n);
        port_tell(p, ATH_PORT_DATA, 0);
        /* A short read usually means the fd is empty: back to the loop.
         * While a counted payload is arriving more is almost always there
         * by now, and reading on saves an epoll_wait a chunk. */
        if ((size_t)n < room && !port_pending(p) &&
            (p->closed || ath_chat_expecting(p->chat) == 0))
            break;
    }
}

/* A listener is readable and someone waits: takes the connection. */
static void port_accept(ath_port_t *p)
{
    struct sockaddr_storage ss;
    socklen_t sl = sizeof ss;
    char addr[64], name[100];
    ath_port_ev_t ev = {ATH_PORT_ACCEPTED, 0, NULL, NULL, NULL};
    int fd, one = 1;
    if (!p->accepting)
        return;
    fd = accept4(p->fd, (struct sockaddr *)&ss, &sl,
                 SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0)
        return; /* EAGAIN, or the client went away */
    p->accepting = 0;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (ss.ss_family == AF_INET6)
        uv_ip6_name((struct sockaddr_in6 *)&ss, addr, sizeof addr);
    else
        uv_ip4_name((struct sockaddr_in *)&ss, addr, sizeof addr);
    snprintf(name, sizeof name, "tcp:%s:%d", addr,
             ntohs(((struct sockaddr_in *)&ss)->sin_port));
    ev.conn = ath_port_new(p->h, fd, ATH_PORT_TCP, name, p->cb);
    if (ev.conn == NULL) {
        close(fd);
        ev.err = ENOMEM;
    } else {
        ev.conn->timeout_ms = p->timeout_ms;
    }
    ath_port_report(p, &ev);
}

static void port_poll_cb(uv_poll_t *w, int status, int events)
{
    ath_port_t *p = w->data;
    if (status < 0)
        events = UV_READABLE | UV_WRITABLE; /* let read/write say why */
    if (p->connecting && p->tls == NULL && !p->negotiating &&
        (events & UV_WRITABLE)) {
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(p->fd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err == 0 && p->xp && p->xp->up) {
            p->xp->up(p); /* the owner hears when it is done */
        } else {
            ath_port_ev_t ev = {ATH_PORT_CONNECTED, err, "connect", NULL,
                                NULL};
            ath_port_report(p, &ev);
        }
    } else if (p->xp && p->xp->step && p->xp->step(p, &events)) {
        /* the transport's set-up took the events */
    } else if (p->kind == ATH_PORT_LISTEN) {
        port_accept(p);
    } else {
        if ((events & UV_WRITABLE) && p->wlen > 0 && !p->closed) {
            int r = port_flush(p);
            if (r != 0 || p->wlen == 0)
                port_tell(p, ATH_PORT_DRAINED, -r);
        }
        if (events & UV_READABLE)
            port_read(p);
    }
    if (!p->closed)
        ath_port_watch(p);
    port_tell(p, ATH_PORT_SETTLED, 0);
}

ath_port_t *ath_port_new(ath_host_t *h, int fd, int kind, const char *name,
                         ath_port_cb cb)
{
    ath_port_t *p = calloc(1, sizeof *p);
    if (p == NULL)
        return NULL;
    p->h = h;
    p->fd = fd;
    p->slave_fd = -1;
    p->kind = kind;
    p->name = strdup(name);
    p->chat = ath_chat_new(0, 0);
    p->cb = cb;
    p->io_read = fd_read;
    p->io_write = fd_write;
    p->timeout_ms = 5000;
    strcpy(p->eol, "\r");
    if (p->name == NULL || p->chat == NULL ||
        uv_poll_init(ath_host_loop(h), &p->poll, fd) != 0) {
        ath_chat_free(p->chat);
        free(p->name);
        free(p);
        return NULL;
    }
    uv_timer_init(ath_host_loop(h), &p->timer);
    p->poll.data = p->timer.data = p;
    p->handles = 2;
    ath_host_handles(h, 2);
    p->res.close = port_res_close;
    ath_host_res_add(h, &p->res);
    return p;
}

void ath_port_watch(ath_port_t *p)
{
    int ev = 0;
    if (p->closed)
        return;
    if (!p->eof)
        ev |= UV_READABLE;
    if (p->wlen > 0 || (p->connecting && !p->negotiating))
        ev |= UV_WRITABLE;
    if (p->kind == ATH_PORT_LISTEN && !p->accepting)
        ev = 0; /* level-triggered: accept only on demand */
    if (p->xp && p->xp->events)
        ev = p->xp->events(p);
    if (ev == p->poll_events)
        return;
    p->poll_events = ev;
    if (ev)
        uv_poll_start(&p->poll, ev, port_poll_cb);
    else
        uv_poll_stop(&p->poll);
}

int ath_port_write(ath_port_t *p, const char *s, size_t n)
{
    ath_tr_t *tr;
    if (p->closed || (p->eof && p->eof_err))
        return -EPIPE;
    if ((tr = ath_host_tr(p->h)) != NULL && !p->untraced)
        ath_tr_data(tr, p->name, '>', s, n);
    if (p->xp && p->xp->write)
        return p->xp->write(p, s, n);
    return ath_port_write_raw(p, s, n);
}

int ath_port_write_raw(ath_port_t *p, const char *s, size_t n)
{
    if (p->closed || (p->eof && p->eof_err))
        return -EPIPE;
    if (p->wlen == 0 && !p->connecting) {
        /* The common case: the fd takes it all now. */
        while (n > 0) {
            ssize_t w = p->io_write(p, (char *)s, n);
            if (w == -EAGAIN)
                break;
            if (w < 0)
                return (int)w;
            s += w;
            n -= (size_t)w;
        }
        if (n == 0)
            return 0;
    }
    if (p->wlen + n > p->wcap) {
        size_t cap = p->wcap ? p->wcap : 4096;
        char *nq;
        if (p->woff > 0) {
            memmove(p->wq, p->wq + p->woff, p->wlen - p->woff);
            p->wlen -= p->woff;
            p->woff = 0;
        }
        while (cap < p->wlen + n)
            cap *= 2;
        if (cap != p->wcap) {
            if ((nq = realloc(p->wq, cap)) == NULL)
                return -ENOMEM;
            p->wq = nq;
            p->wcap = cap;
        }
    }
    memcpy(p->wq + p->wlen, s, n);
    p->wlen += n;
    ath_port_watch(p);
    return 0;
}

void ath_port_close(ath_port_t *p)
{
    if (p->closed)
        return;
    p->closed = 1;
    ath_host_res_del(p->h, &p->res);
    uv_poll_stop(&p->poll);
    uv_timer_stop(&p->timer);
    uv_close((uv_handle_t *)&p->poll, port_handle_closed);
    uv_close((uv_handle_t *)&p->timer, port_handle_closed);
    if (p->on_close)
        p->on_close(p);
    if (p->fd >= 0)
        ath_fd_close(p->fd);
    if (p->slave_fd >= 0)
        close(p->slave_fd);
    p->fd = p->slave_fd = -1;
}

int ath_port_settings(ath_port_t *p, const ath_serial_opts_t *o)
{
    int r;
    if (p->xp && p->xp->settings) {
        r = p->xp->settings(p, o);
    } else if (p->kind == ATH_PORT_SERIAL || p->kind == ATH_PORT_PTY) {
        r = serial_termios(p->fd, o);
        if (r == 0)
            r = ath_serial_lines(p->fd, o->dtr, o->rts);
    } else {
        return -ENOTSUP;
    }
    if (r == 0)
        ath_port_took(p, o);
    return r;
}

int ath_port_break(ath_port_t *p, int on)
{
    if (p->xp && p->xp->brk)
        return p->xp->brk(p, on);
    if (p->kind != ATH_PORT_SERIAL && p->kind != ATH_PORT_PTY)
        return -ENOTSUP;
    if (ioctl(p->fd, on ? TIOCSBRK : TIOCCBRK) != 0 && errno != ENOTTY &&
        errno != EINVAL)
        return -errno;
    return 0;
}

int ath_port_purge(ath_port_t *p, int which)
{
    if (p->xp && p->xp->purge)
        return p->xp->purge(p, which);
    if (p->kind != ATH_PORT_SERIAL && p->kind != ATH_PORT_PTY)
        return -ENOTSUP;
    if (tcflush(p->fd, which == 1 ? TCIFLUSH : which == 2 ? TCOFLUSH
                                                          : TCIOFLUSH) != 0)
        return -errno;
    return 0;
}
