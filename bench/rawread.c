/*
 * rawread: the raw C reader of bench/payload.sh (`make bench`): the floor
 * the payload is read against.
 *
 *   rawread PATH SIZE
 *
 * Sends "AT+READ\r", reads the header line "+READ: SIZE", then the SIZE
 * bytes into one buffer allocated once, then the final OK, with blocking
 * reads of up to 1 MiB; prints "rawread: <MiB/s> MiB/s".
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

static void die(const char *what)
{
    fprintf(stderr, "rawread: %s: %s\n", what, strerror(errno));
    exit(1);
}

int main(int argc, char **argv)
{
    size_t size, have = 0, hl = 0, got;
    char hdr[128], *buf, *nl;
    int fd;
    struct termios tio;
    struct timespec t0, t1;
    double secs;
    if (argc != 3 || (size = strtoul(argv[2], NULL, 10)) == 0) {
        fprintf(stderr, "usage: rawread PATH SIZE\n");
        return 2;
    }
    if ((fd = open(argv[1], O_RDWR | O_NOCTTY)) < 0 || tcgetattr(fd, &tio))
        die(argv[1]);
    cfmakeraw(&tio);
    tcsetattr(fd, TCSANOW, &tio);
    if ((buf = malloc(size + 16)) == NULL)
        die("malloc");
    clock_gettime(CLOCK_MONOTONIC, &t0);
    if (write(fd, "AT+READ\r", 8) != 8)
        die("write");
    /* the header: "\r\n+READ: SIZE\r\n"; what follows it is payload */
    for (;;) {
        ssize_t r = read(fd, hdr + hl, sizeof hdr - 1 - hl);
        if (r <= 0)
            die("read");
        hl += (size_t)r;
        hdr[hl] = '\0';
        if ((nl = strstr(hdr + 2, "\r\n")) != NULL)
            break;
        if (hl >= sizeof hdr - 1) {
            fprintf(stderr, "rawread: no header\n");
            return 1;
        }
    }
    if (strtoul(strstr(hdr, "+READ: ") + 7, NULL, 10) != size) {
        fprintf(stderr, "rawread: wrong size announced\n");
        return 1;
    }
    got = hl - (size_t)(nl + 2 - hdr);
    memcpy(buf, nl + 2, got);
    have = got;
    while (have < size + 6) { /* the payload, then "\r\nOK\r\n" */
        size_t want = size + 16 - have;
        ssize_t r = read(fd, buf + have, want < (1u << 20) ? want : (1u << 20));
        if (r <= 0)
            die("read");
        have += (size_t)r;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    if (memcmp(buf + size, "\r\nOK\r\n", 6) != 0) {
        fprintf(stderr, "rawread: no OK after the payload\n");
        return 1;
    }
    secs = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    printf("rawread: %.1f MiB/s\n", (double)size / (1 << 20) / secs);
    return 0;
}
