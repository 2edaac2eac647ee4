/*
 * evloop: the event-loop floor of the `make bench` harness (bench/run.sh).
 *
 *   evloop PATH N
 *
 * What bench/bare.c does, but the way any host that serves several ports
 * and timers must wait: the port is non-blocking and each reply is awaited
 * in epoll_wait (with a timeout, as a command has one) before it is read.
 * A round trip then costs three system calls (write, epoll_wait, read)
 * where the blocking loop needs two; nothing else is added: no parsing,
 * no allocation. Prints "evloop: <rate> round trips/s". athost waits the
 * same way, so athost / evloop is what its own work costs, and evloop /
 * bare what waiting in an event loop costs on this machine.
 */
#include "rt.h"

#include <sys/epoll.h>

static int ep = -1;

static void setup(int fd)
{
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if ((ep = epoll_create1(EPOLL_CLOEXEC)) < 0)
        rt_die("epoll_create1");
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        rt_die("epoll_ctl");
}

/* Waits in epoll_wait, then reads what is there. */
static ssize_t rt_read(int fd, char *buf, size_t n, long i)
{
    for (;;) {
        struct epoll_event ev;
        ssize_t r;
        int k = epoll_wait(ep, &ev, 1, 5000);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0)
            rt_die("epoll_wait");
        if (k == 0) {
            fprintf(stderr, "evloop: round trip %ld: no reply in 5 s\n", i);
            exit(1);
        }
        r = read(fd, buf, n);
        if (r > 0)
            return r;
        if (r < 0 && (errno == EINTR || errno == EAGAIN))
            continue;
        if (r < 0)
            rt_die("read");
        fprintf(stderr, "evloop: round trip %ld: end of file\n", i);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    return rt_main(argc, argv, "evloop", O_NONBLOCK, setup);
}
