/*
 * bare: the floor of the `make bench` harness (bench/run.sh).
 *
 *   bare PATH N
 *
 * A bare blocking C loop over a raw serial port: after one warm-up command,
 * N times write "AT+CGATT?\r" and read until the buffer ends with
 * "\r\nOK\r\n" (checking that it contains "+CGATT: 1"), then print
 * "bare: <rate> round trips/s".  No parsing, no event loop, no allocation:
 * nothing talking to the same modem through the same pty can be much faster.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

static const char CMD[] = "AT+CGATT?\r";
static const char TAIL[] = "\r\nOK\r\n";

static void die(const char *what)
{
    fprintf(stderr, "bare: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void round_trip(int fd, long i)
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
        if (len >= sizeof buf - 1) {
            fprintf(stderr, "bare: round trip %ld: reply too long\n", i);
            exit(1);
        }
        ssize_t r = read(fd, buf + len, sizeof buf - 1 - len);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("read");
        }
        if (r == 0) {
            fprintf(stderr, "bare: round trip %ld: end of file\n", i);
            exit(1);
        }
        len += (size_t)r;
        buf[len] = '\0';
        if (len >= tlen && memcmp(buf + len - tlen, TAIL, tlen) == 0)
            break;
        if (strstr(buf, "ERROR\r\n")) {
            fprintf(stderr, "bare: round trip %ld: modem replied ERROR\n", i);
            exit(1);
        }
    }
    if (!strstr(buf, "+CGATT: 1")) {
        fprintf(stderr, "bare: round trip %ld: no \"+CGATT: 1\" in reply\n", i);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: bare PATH N\n");
        return 2;
    }
    char *end;
    errno = 0;
    long n = strtol(argv[2], &end, 10);
    if (errno || *end || n <= 0) {
        fprintf(stderr, "bare: bad N: %s\n", argv[2]);
        return 2;
    }

    int fd = open(argv[1], O_RDWR | O_NOCTTY);
    if (fd < 0)
        die(argv[1]);
    struct termios tio;
    if (tcgetattr(fd, &tio) < 0)
        die("tcgetattr");
    cfmakeraw(&tio);
    tio.c_cc[VMIN] = 1;
    tio.c_cc[VTIME] = 0;
    cfsetispeed(&tio, B115200);
    cfsetospeed(&tio, B115200);
    if (tcsetattr(fd, TCSANOW, &tio) < 0)
        die("tcsetattr");
    tcflush(fd, TCIOFLUSH);

    round_trip(fd, 0); /* warm-up */

    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (long i = 1; i <= n; i++)
        round_trip(fd, i);
    clock_gettime(CLOCK_MONOTONIC, &t1);

    double secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("bare: %.1f round trips/s\n", (double)n / secs);
    close(fd);
    return 0;
}
