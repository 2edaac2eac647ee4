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
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char CMD[] = "AT+CGATT?\r";
static const char TAIL[] = "\r\nOK\r\n";

static void die(const char *what)
{
    fprintf(stderr, "evloop: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void round_trip(int ep, int fd, long i)
{
    size_t clen = sizeof CMD - 1;
    const char *p = CMD;
    while (clen > 0) {
        ssize_t w = write(fd, p, clen);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("write");
        }
        p += w;
        clen -= (size_t)w;
    }

    char buf[512];
    size_t len = 0;
    const size_t tlen = sizeof TAIL - 1;
    for (;;) {
        struct epoll_event ev;
        int k = epoll_wait(ep, &ev, 1, 5000);
        if (k < 0) {
            if (errno == EINTR)
                continue;
            die("epoll_wait");
        }
        if (k == 0) {
            fprintf(stderr, "evloop: round trip %ld: no reply in 5 s\n", i);
            exit(1);
        }
        if (len >= sizeof buf - 1) {
            fprintf(stderr, "evloop: round trip %ld: reply too long\n", i);
            exit(1);
        }
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r < 0) {
            if (errno == EINTR || errno == EAGAIN)
                continue;
            die("read");
        }
        if (r == 0) {
            fprintf(stderr, "evloop: round trip %ld: end of file\n", i);
            exit(1);
        }
        len += (size_t)r;
        buf[len] = '\0';
        if (len >= tlen && memcmp(buf + len - tlen, TAIL, tlen) == 0)
            break;
        if (strstr(buf, "ERROR\r\n")) {
            fprintf(stderr, "evloop: round trip %ld: modem replied ERROR\n", i);
            exit(1);
        }
    }
    if (!strstr(buf, "+CGATT: 1")) {
        fprintf(stderr, "evloop: round trip %ld: no \"+CGATT: 1\" in reply\n", i);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: evloop PATH N\n");
        return 2;
    }
    char *end;
    errno = 0;
    long n = strtol(argv[2], &end, 10);
    if (errno || *end || n <= 0) {
        fprintf(stderr, "evloop: bad N: %s\n", argv[2]);
        return 2;
    }

    int fd = open(argv[1], O_RDWR | O_NOCTTY | O_NONBLOCK);
    if (fd < 0)
        die(argv[1]);
    struct termios tio;
    if (tcgetattr(fd, &tio) < 0)
        die("tcgetattr");
    cfmakeraw(&tio);
    cfsetispeed(&tio, B115200);
    cfsetospeed(&tio, B115200);
    if (tcsetattr(fd, TCSANOW, &tio) < 0)
        die("tcsetattr");
    tcflush(fd, TCIOFLUSH);

    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    struct epoll_event ev = {.events = EPOLLIN, .data.fd = fd};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
        die("epoll_ctl");

    round_trip(ep, fd, 0); /* warm-up */

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 1; i <= n; i++)
        round_trip(ep, fd, i);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("evloop: %.1f round trips/s\n", (double)n / secs);
    close(ep);
    close(fd);
    return 0;
}
