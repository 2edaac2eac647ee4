/*
 * rt.h: what bench/bare.c and bench/evloop.c share: the command, the
 * reply's end, opening the pty raw, and the timed loop. Each program only
 * says how it waits for the modem's bytes (rt_read).
 */
#ifndef BENCH_RT_H
#define BENCH_RT_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char RT_CMD[] = "AT+CGATT?\r";
static const char RT_TAIL[] = "\r\nOK\r\n";
static const char *rt_name;

static void rt_die(const char *what)
{
    fprintf(stderr, "%s: %s: %s\n", rt_name, what, strerror(errno));
    exit(1);
}

/* The program's own wait: reads up to n bytes into buf once some are
 * there; > 0, or exits with a message (round trip i). */
static ssize_t rt_read(int fd, char *buf, size_t n, long i);

static void rt_round_trip(int fd, long i)
{
    size_t clen = sizeof RT_CMD - 1;
    const char *p = RT_CMD;
    char buf[512];
    size_t len = 0;
    const size_t tlen = sizeof RT_TAIL - 1;
    while (clen > 0) {
        ssize_t w = write(fd, p, clen);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            rt_die("write");
        }
        p += w;
        clen -= (size_t)w;
    }
    for (;;) {
        if (len >= sizeof buf - 1) {
            fprintf(stderr, "%s: round trip %ld: reply too long\n", rt_name, i);
            exit(1);
        }
        len += (size_t)rt_read(fd, buf + len, sizeof buf - 1 - len, i);
        buf[len] = '\0';
        if (len >= tlen && memcmp(buf + len - tlen, RT_TAIL, tlen) == 0)
            break;
        if (strstr(buf, "ERROR\r\n")) {
            fprintf(stderr, "%s: round trip %ld: modem replied ERROR\n", rt_name, i);
            exit(1);
        }
    }
    if (!strstr(buf, "+CGATT: 1")) {
        fprintf(stderr, "%s: round trip %ld: no \"+CGATT: 1\" in reply\n", rt_name, i);
        exit(1);
    }
}

/* argv: PATH N. Opens PATH raw with flags, calls setup(fd), then times N
 * round trips after one warm-up and prints "NAME: <rate> round trips/s,
 * <cpu> us CPU a round trip" (the process's own CPU time, user and system,
 * over the timed loop). */
static int rt_main(int argc, char **argv, const char *name, int flags,
                   void (*setup)(int fd))
{
    struct termios tio;
    struct timespec t0, t1, c0, c1;
    char *end;
    long n, i;
    int fd;
    double secs, cpu;
    rt_name = name;
    if (argc != 3) {
        fprintf(stderr, "usage: %s PATH N\n", name);
        return 2;
    }
    errno = 0;
    n = strtol(argv[2], &end, 10);
    if (errno || *end || n <= 0) {
        fprintf(stderr, "%s: bad N: %s\n", name, argv[2]);
        return 2;
    }
    if ((fd = open(argv[1], O_RDWR | O_NOCTTY | flags)) < 0)
        rt_die(argv[1]);
    if (tcgetattr(fd, &tio) < 0)
        rt_die("tcgetattr");
    cfmakeraw(&tio);
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    cfsetispeed(&tio, B115200);
    cfsetospeed(&tio, B115200);
    if (tcsetattr(fd, TCSANOW, &tio) < 0)
        rt_die("tcsetattr");
    tcflush(fd, TCIOFLUSH);
    if (setup)
        setup(fd);
    rt_round_trip(fd, 0); /* warm-up */
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    for (i = 1; i <= n; i++)
        rt_round_trip(fd, i);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    cpu = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) / 1e9;
    printf("%s: %.1f round trips/s, %.2f us CPU a round trip\n", name, (double)n / secs,
           cpu / (double)n * 1e6);
    close(fd);
    return 0;
}

#endif
