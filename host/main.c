/*
 * main.c: the athost command, a small user of the host library.
 *
 *   athost [options] SCRIPT [key=value ...]
 *   athost [options] -e CHUNK [key=value ...]
 */
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "athost.h"
#include "station.h"

static const char usage[] =
    "usage: athost [options] SCRIPT [key=value ...]\n"
    "       (SCRIPT: a path, or a name such as clouds/aliyun.lua looked up\n"
    "       in ATHOST_PATH and the installed flows)\n"
    "       athost [options] -e CHUNK [key=value ...]\n"
    "       athost -i -p PORT\n"
    "\n"
    "Runs a Lua script that talks AT commands to a cellular module.\n"
    "\n"
    "options:\n"
    "  -p, --port SPEC     the script's port (athost.port()): a device such\n"
    "                      as /dev/ttyUSB0, tcp:HOST:PORT (raw),\n"
    "                      rfc2217:HOST:PORT (ser2net), or sim:air720 /\n"
    "                      sim:me3630 for a virtual modem\n"
    "  -b, --baud N        baud rate of the port (default 115200)\n"
    "  -l, --log FILE      write a transcript of every byte ('-': stderr),\n"
    "                      mode 0600; a symlink at FILE is refused\n"
    "      --log-max SIZE  rotate a transcript to FILE.1 before it grows\n"
    "                      over SIZE bytes (suffix k, M or G: 10M)\n"
    "      --config FILE   JSON object of parameters (key=value wins)\n"
    "      --json          print events as JSON lines on stdout\n"
    "  -q, --quiet         print only the result\n"
    "  -e CHUNK            run CHUNK instead of a script file\n"
    "  -i                  interactive session on the port\n"
    "      --ports A,B,... run the script once per port, concurrently\n"
    "      --ports-file F  the same, one port spec a line\n"
    "      --table FILE    per-port parameters (.csv or .json), by port or row\n"
    "      --junit FILE    with --ports: a JUnit XML report\n"
    "      --logdir DIR    with --ports: one transcript per port\n"
    "      --list          the flows and scripts athost finds by name\n"
    "      --params SCRIPT the parameters a flow takes (for completion)\n"
    "      --scan          list serial ports, probe each with AT (model,\n"
    "                      firmware, IMEI); busy ports are left alone\n"
    "  -h, --help          this help\n"
    "      --version       the version\n"
    "\n"
    "exit codes: 0 success, 1 the script or a step failed, 2 usage error\n"
    "            (or a transcript that cannot be created),\n"
    "            3 the port could not be opened, 4 canceled\n";

static ath_host_t *running;

/* SIGINT, SIGTERM and SIGHUP (a closed terminal) cancel the run: the
 * flow's cleanups (athost.defer: close its MQTT sessions, end an HTTP
 * request) run for a bounded time, then it ends through the normal path,
 * which writes the rest of the transcript and releases the ports (their
 * exclusive mode cleared). A second signal ends it at once. */
static void on_signal(uv_signal_t *s, int signum)
{
    (void)s;
    if (running)
        ath_host_interrupt(running, signum == SIGINT    ? "SIGINT"
                                    : signum == SIGTERM ? "SIGTERM"
                                                        : "SIGHUP");
}

/* "10M" and the like: bytes, 1024-based suffixes k, M, G. 0 if bad. */
static size_t parse_size(const char *s)
{
    char *end;
    unsigned long long v;
    if (*s < '0' || *s > '9')
        return 0;
    v = strtoull(s, &end, 10);
    switch (*end) {
    case 'k': case 'K': v *= 1024ULL; end++; break;
    case 'm': case 'M': v *= 1024ULL * 1024; end++; break;
    case 'g': case 'G': v *= 1024ULL * 1024 * 1024; end++; break;
    default: break;
    }
    if (*end == 'B' || *end == 'b')
        end++;
    if (*end != '\0' || v == 0 || v > (unsigned long long)SIZE_MAX / 2 ||
        v > 1024ULL * 1024 * 1024 * 1024)
        return 0;
    return (size_t)v;
}

static int need(int i, int argc, char **argv)
{
    if (i + 1 >= argc) {
        fprintf(stderr, "athost: %s needs a value\n%s", argv[i], usage);
        exit(ATH_EXIT_USAGE);
    }
    return i + 1;
}

int main(int argc, char **argv)
{
    ath_host_opts_t o;
    ath_station_opts_t so;
    const char *script = NULL, *chunk = NULL, *config = NULL;
    const char *port = NULL;
    int baud = 0, interactive = 0, i, nkv = 0, rc;
    static char *kv[256];
    ath_host_t *h;
    uv_signal_t sigint, sigterm, sighup;

    /* A peer that went away is a write error (EPIPE) for the flow, not a
     * signal that kills the run. */
    signal(SIGPIPE, SIG_IGN);
    memset(&o, 0, sizeof o);
    memset(&so, 0, sizeof so);
    for (i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            fputs(usage, stdout);
            return 0;
        } else if (strcmp(a, "--list") == 0) {
            ath_script_list(stdout);
            return 0;
        } else if (strcmp(a, "--version") == 0) {
            printf("athost %s\n", ATHOST_VERSION);
            return 0;
        } else if (strcmp(a, "-p") == 0 || strcmp(a, "--port") == 0) {
            port = argv[i = need(i, argc, argv)];
        } else if (strcmp(a, "-b") == 0 || strcmp(a, "--baud") == 0) {
            baud = atoi(argv[i = need(i, argc, argv)]);
            if (baud <= 0) {
                fprintf(stderr, "athost: bad baud rate '%s'\n", argv[i]);
                return ATH_EXIT_USAGE;
            }
        } else if (strcmp(a, "-l") == 0 || strcmp(a, "--log") == 0) {
            o.transcript = argv[i = need(i, argc, argv)];
        } else if (strcmp(a, "--log-max") == 0) {
            o.transcript_max = parse_size(argv[i = need(i, argc, argv)]);
            if (o.transcript_max == 0) {
                fprintf(stderr, "athost: bad --log-max size '%s' (bytes, "
                                "or with k, M, G: 10M)\n", argv[i]);
                return ATH_EXIT_USAGE;
            }
        } else if (strcmp(a, "--config") == 0) {
            config = argv[i = need(i, argc, argv)];
        } else if (strcmp(a, "--json") == 0) {
            o.json = 1;
        } else if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
            o.quiet = 1;
        } else if (strcmp(a, "-e") == 0) {
            chunk = argv[i = need(i, argc, argv)];
        } else if (strcmp(a, "-i") == 0) {
            interactive = 1;
        } else if (strcmp(a, "--params") == 0) {
            /* For shell completion: the parameters of a flow, read from
             * its source (athost.complete). */
            static char found[4096], kvs[4200];
            const char *name = argv[i = need(i, argc, argv)];
            if (ath_script_find(name, found, sizeof found) == NULL) {
                fprintf(stderr, "athost: cannot find %s\n", name);
                return ATH_EXIT_USAGE;
            }
            snprintf(kvs, sizeof kvs, "script=%s", found);
            if (nkv == (int)(sizeof kv / sizeof kv[0])) {
                fprintf(stderr, "athost: too many key=value arguments\n");
                return ATH_EXIT_USAGE;
            }
            kv[nkv++] = kvs;
            chunk = "require('athost.complete').params(...)";
        } else if (strcmp(a, "--scan") == 0) {
            chunk = "require('athost.scan').run(...)";
        } else if (strcmp(a, "--ports") == 0) {
            so.ports = argv[i = need(i, argc, argv)];
        } else if (strcmp(a, "--ports-file") == 0) {
            so.ports_file = argv[i = need(i, argc, argv)];
        } else if (strcmp(a, "--table") == 0) {
            so.table = argv[i = need(i, argc, argv)];
        } else if (strcmp(a, "--junit") == 0) {
            so.junit = argv[i = need(i, argc, argv)];
        } else if (strcmp(a, "--logdir") == 0) {
            so.logdir = argv[i = need(i, argc, argv)];
        } else if (a[0] == '-' && a[1] != '\0') {
            fprintf(stderr, "athost: unknown option %s\n%s", a, usage);
            return ATH_EXIT_USAGE;
        } else if (strchr(a, '=') != NULL && a[0] != '=') {
            if (nkv == (int)(sizeof kv / sizeof kv[0])) {
                fprintf(stderr, "athost: too many key=value arguments\n");
                return ATH_EXIT_USAGE;
            }
            kv[nkv++] = argv[i];    /* options may come after the script */
        } else if (!script && !chunk) {
            script = a;
        } else {
            fprintf(stderr, "athost: argument '%s' is not key=value\n", a);
            return ATH_EXIT_USAGE;
        }
    }
    if (interactive && !port && !so.ports && !so.ports_file) {
        fprintf(stderr, "athost: -i needs a port: -p PORT (a device, "
                        "tcp:HOST:PORT, sim:MODEL)\n%s", usage);
        return ATH_EXIT_USAGE;
    }
    if (interactive && !script && !chunk)
        chunk = "require('athost.interactive').run(...)";
    if (!script && !chunk) {
        fprintf(stderr, "athost: no script\n%s", usage);
        return ATH_EXIT_USAGE;
    }
    if (script) {
        /* A flow by name (clouds/aliyun.lua) from any directory. */
        static char found[4096];
        const char *f = ath_script_find(script, found, sizeof found);
        if (f == NULL) {
            fprintf(stderr, "athost: cannot find %s (not in the current "
                            "directory, ATHOST_PATH or the installed flows; "
                            "athost --list shows them)\n", script);
            return ATH_EXIT_USAGE;
        }
        script = f;
    }
    if (o.transcript_max &&
        !(so.logdir || (o.transcript && strcmp(o.transcript, "-") != 0))) {
        fprintf(stderr, "athost: --log-max needs a transcript file "
                        "(-l FILE or --logdir DIR)\n");
        return ATH_EXIT_USAGE;
    }
    if (so.ports || so.ports_file) {
        so.log_max = o.transcript_max;
        so.script = script;
        so.chunk = chunk;
        so.config = config;
        so.baud = baud;
        so.argc = nkv;
        so.argv = kv;
        so.json = o.json;
        so.quiet = o.quiet;
        return ath_station_main(&so);
    }

    h = ath_host_new(NULL, &o);
    if (h == NULL)
        return ATH_EXIT_USAGE;
    if (config && ath_host_load_config(h, config) != 0) {
        fprintf(stderr, "athost: %s\n", ath_host_error(h));
        ath_host_free(h);
        return ATH_EXIT_USAGE;
    }
    ath_host_params_from_env(h);
    for (i = 0; i < nkv; i++) {
        char *eq = strchr(kv[i], '=');
        *eq = '\0';
        rc = ath_host_set_param_arg(h, kv[i], eq + 1);
        *eq = '=';
        if (rc != 0) {
            fprintf(stderr, "athost: %s\n", ath_host_error(h));
            ath_host_free(h);
            return ATH_EXIT_USAGE;
        }
    }
    if (port)
        ath_host_set_port(h, port, baud);
    rc = script ? ath_host_load_file(h, script)
                : ath_host_load_string(h, chunk, "=(command line)");
    if (rc != 0) {
        fprintf(stderr, "athost: %s\n", ath_host_error(h));
        ath_host_free(h);
        return rc;
    }
    ath_host_set_argv(h, script ? script : "-e", nkv, kv);
    running = h;
    uv_signal_init(ath_host_loop(h), &sigint);
    uv_signal_init(ath_host_loop(h), &sigterm);
    uv_signal_init(ath_host_loop(h), &sighup);
    uv_signal_start(&sigint, on_signal, SIGINT);
    uv_signal_start(&sigterm, on_signal, SIGTERM);
    uv_signal_start(&sighup, on_signal, SIGHUP);
    uv_unref((uv_handle_t *)&sigint);
    uv_unref((uv_handle_t *)&sigterm);
    uv_unref((uv_handle_t *)&sighup);
    rc = ath_host_run(h);
    uv_close((uv_handle_t *)&sigint, NULL);
    uv_close((uv_handle_t *)&sigterm, NULL);
    uv_close((uv_handle_t *)&sighup, NULL);
    running = NULL;
    ath_host_free(h);
    return rc;
}
