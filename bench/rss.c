/*
 * rss: run a command and report its peak resident set size.
 *
 *   rss CMD [ARGS...]
 *
 * Runs CMD (fork + execvp; stdin/stdout/stderr are inherited, so the child's
 * output passes straight through), waits for it with wait4() and prints the
 * child's peak RSS (ru_maxrss, KiB on Linux) on stderr as a line
 * "peak_rss_kib=NNN".  Exits with the child's exit status, or 128+SIGNAL if it
 * was killed by a signal; 127 if CMD could not be executed.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: rss CMD [ARGS...]\n");
        return 2;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid < 0) {
        fprintf(stderr, "rss: fork: %s\n", strerror(errno));
        return 127;
    }
    if (pid == 0) {
        execvp(argv[1], argv + 1);
        fprintf(stderr, "rss: %s: %s\n", argv[1], strerror(errno));
        _exit(127);
    }

    int status;
    struct rusage ru;
    pid_t w;
    do {
        w = wait4(pid, &status, 0, &ru);
    } while (w < 0 && errno == EINTR);
    if (w < 0) {
        fprintf(stderr, "rss: wait4: %s\n", strerror(errno));
        return 127;
    }
    fprintf(stderr, "peak_rss_kib=%ld\n", ru.ru_maxrss);
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 127;
}
