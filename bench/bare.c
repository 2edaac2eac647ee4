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
#include "rt.h"

/* A blocking read: the call itself waits for the modem. */
static ssize_t rt_read(int fd, char *buf, size_t n, long i)
{
    for (;;) {
        ssize_t r = read(fd, buf, n);
        if (r > 0)
            return r;
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            rt_die("read");
        fprintf(stderr, "bare: round trip %ld: end of file\n", i);
        exit(1);
    }
}

int main(int argc, char **argv)
{
    return rt_main(argc, argv, "bare", 0, NULL);
}
