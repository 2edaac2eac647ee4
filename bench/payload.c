/*
 * payload: a modem on a pty that answers AT+READ with a counted payload,
 * for bench/payload.sh (`make bench`).
 *
 *   payload SIZE
 *
 * Prints the slave path (one line), then serves: "AT+READ\r" ->
 * "\r\n+READ: SIZE\r\n" SIZE bytes "\r\nOK\r\n", the bytes a fixed
 * pseudo-random pattern, written with blocking writes as fast as the pty
 * takes them. It keeps its own slave fd open (as bench/fakemodem.c) and
 * runs until killed or its parent dies.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#include <signal.h>
#endif

static void die(const char *what)
{
    fprintf(stderr, "payload: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void write_all(int fd, const char *b, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, b, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("write");
        }
        b += w;
        n -= (size_t)w;
    }
}

int main(int argc, char **argv)
{
    static char chunk[1 << 16];
    char path[128], in[256], hdr[64];
    size_t size, len = 0, i;
    unsigned x = 12345;
    int m, s;
    struct termios tio;
    if (argc != 2 || (size = strtoul(argv[1], NULL, 10)) == 0) {
        fprintf(stderr, "usage: payload SIZE\n");
        return 2;
    }
#ifdef __linux__
    prctl(PR_SET_PDEATHSIG, SIGTERM);
#endif
    for (i = 0; i < sizeof chunk; i++) {
        x = x * 1103515245u + 12345u;
        chunk[i] = (char)(x >> 16);
    }
    if ((m = posix_openpt(O_RDWR | O_NOCTTY)) < 0 || grantpt(m) || unlockpt(m) ||
        ptsname_r(m, path, sizeof path))
        die("pty");
    if ((s = open(path, O_RDWR | O_NOCTTY)) < 0 || tcgetattr(s, &tio))
        die(path);
    cfmakeraw(&tio);
    tcsetattr(s, TCSANOW, &tio);
    printf("%s\n", path);
    fflush(stdout);
    for (;;) {
        ssize_t r = read(m, in + len, sizeof in - 1 - len);
        char *cr;
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("read");
        }
        len += (size_t)r;
        in[len] = '\0';
        while ((cr = memchr(in, '\r', len)) != NULL) {
            *cr = '\0';
            if (strcmp(in, "AT+READ") == 0) {
                size_t left = size;
                int h = snprintf(hdr, sizeof hdr, "\r\n+READ: %zu\r\n", size);
                write_all(m, hdr, (size_t)h);
                while (left > 0) {
                    size_t k = left < sizeof chunk ? left : sizeof chunk;
                    write_all(m, chunk, k);
                    left -= k;
                }
                write_all(m, "\r\nOK\r\n", 6);
            } else if (in[0] != '\0') {
                write_all(m, "\r\nOK\r\n", 6);
            }
            len -= (size_t)(cr + 1 - in);
            memmove(in, cr + 1, len);
        }
        if (len >= sizeof in - 1)
            len = 0;
    }
}
