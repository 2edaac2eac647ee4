/*
 * fakemodem: a minimal fake cellular modem on a pseudo-terminal, for the
 * `make bench` harness (bench/run.sh).
 *
 *   fakemodem [-n COUNT]
 *
 * Opens a pty pair, puts it in raw mode (no echo, no CR/LF translation),
 * prints the slave path on stdout (one line, flushed) and then serves AT
 * commands written to the slave:
 *
 *   "AT+CGATT?"  -> "\r\n+CGATT: 1\r\n\r\nOK\r\n"
 *   "AT"         -> "\r\nOK\r\n"
 *   anything else -> "\r\nERROR\r\n"
 *
 * Commands are terminated by '\r'; '\n' is ignored; empty commands (a bare
 * "\r") are ignored, as a real modem does.  Matching is case-insensitive.
 *
 * It keeps its own fd to the slave open for its whole life: on Linux a read()
 * on the master fails with EIO whenever no process has the slave open, so
 * holding the slave lets clients connect and disconnect one after another
 * (and lets the harness start it before the client has opened the slave).
 *
 * It runs until killed (SIGTERM/SIGINT/SIGHUP, default action) or, on Linux,
 * until its parent dies.  With -n COUNT it stops answering after COUNT
 * commands, drops its own slave fd and exits once the client has closed the
 * slave too (so the last reply is never lost).  The harness does not use -n:
 * it starts one fakemodem per contender and kills it afterwards.
 *
 * Speed matters (it must not be the bottleneck of the benchmark): each
 * read() of the master is parsed in one go and all replies produced by it are
 * sent with a single write().
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <termios.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#define CMD_MAX 4096
#define IN_MAX 4096

static const char REPLY_CGATT[] = "\r\n+CGATT: 1\r\n\r\nOK\r\n";
static const char REPLY_OK[] = "\r\nOK\r\n";
static const char REPLY_ERROR[] = "\r\nERROR\r\n";

static void die(const char *what)
{
    fprintf(stderr, "fakemodem: %s: %s\n", what, strerror(errno));
    exit(1);
}

static void write_all(int fd, const char *buf, size_t len)
{
    while (len > 0) {
        ssize_t w = write(fd, buf, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            die("write(master)");
        }
        buf += w;
        len -= (size_t)w;
    }
}

static void usage(void)
{
    fprintf(stderr, "usage: fakemodem [-n COUNT]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    long long limit = -1; /* commands to answer before exiting; -1 = forever */
    int opt;
    while ((opt = getopt(argc, argv, "n:")) != -1) {
        switch (opt) {
        case 'n': {
            char *end;
            errno = 0;
            limit = strtoll(optarg, &end, 10);
            if (errno || *end || limit <= 0)
                usage();
            break;
        }
        default:
            usage();
        }
    }
    if (optind != argc)
        usage();

#ifdef __linux__
    /* Do not outlive the harness if it is killed without cleaning up. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    if (getppid() == 1)
        return 0;
#endif

    int master = posix_openpt(O_RDWR | O_NOCTTY);
    if (master < 0)
        die("posix_openpt");
    if (grantpt(master) < 0)
        die("grantpt");
    if (unlockpt(master) < 0)
        die("unlockpt");
    const char *name = ptsname(master);
    if (!name)
        die("ptsname");
    char path[256];
    if (strlen(name) >= sizeof path) {
        errno = ENAMETOOLONG;
        die("ptsname");
    }
    strcpy(path, name);

    /* Keep the slave open ourselves (see above), and make it raw. */
    int slave = open(path, O_RDWR | O_NOCTTY);
    if (slave < 0)
        die("open(slave)");
    struct termios tio;
    if (tcgetattr(slave, &tio) < 0)
        die("tcgetattr");
    cfmakeraw(&tio);
    cfsetispeed(&tio, B115200);
    cfsetospeed(&tio, B115200);
    if (tcsetattr(slave, TCSANOW, &tio) < 0)
        die("tcsetattr");

    if (printf("%s\n", path) < 0 || fflush(stdout) != 0)
        die("stdout");

    char in[IN_MAX];
    char cmd[CMD_MAX];
    size_t cmdlen = 0;
    int overflow = 0;
    /* Worst case output per input byte is one ERROR reply per '\r'. */
    static char out[IN_MAX * (sizeof REPLY_CGATT)];

    for (;;) {
        ssize_t r = read(master, in, sizeof in);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            die("read(master)");
        }
        if (r == 0)
            return 0;
        size_t outlen = 0;
        int done = 0;
        for (ssize_t i = 0; i < r && !done; i++) {
            char c = in[i];
            if (c == '\n')
                continue;
            if (c != '\r') {
                if (cmdlen < CMD_MAX)
                    cmd[cmdlen++] = c;
                else
                    overflow = 1;
                continue;
            }
            if (cmdlen == 0 && !overflow)
                continue; /* empty line */
            const char *reply;
            size_t rlen;
            if (!overflow && cmdlen == 9 && strncasecmp(cmd, "AT+CGATT?", 9) == 0) {
                reply = REPLY_CGATT;
                rlen = sizeof REPLY_CGATT - 1;
            } else if (!overflow && cmdlen == 2 && strncasecmp(cmd, "AT", 2) == 0) {
                reply = REPLY_OK;
                rlen = sizeof REPLY_OK - 1;
            } else {
                reply = REPLY_ERROR;
                rlen = sizeof REPLY_ERROR - 1;
            }
            memcpy(out + outlen, reply, rlen);
            outlen += rlen;
            cmdlen = 0;
            overflow = 0;
            if (limit > 0 && --limit == 0)
                done = 1;
        }
        if (outlen)
            write_all(master, out, outlen);
        if (done)
            break;
    }

    /* -n reached: wait until nobody has the slave open (read() -> EIO or 0),
     * discarding anything else that is sent, then exit. */
    close(slave);
    for (;;) {
        ssize_t r = read(master, in, sizeof in);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            return 0;
    }
}
