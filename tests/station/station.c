/*
 * station.c: an example factory test station built on libathost.
 *
 *   station [--junit FILE] [--logdir DIR] FLOW DUTS_FILE [key=value ...]
 *
 * DUTS_FILE has one device under test a line: a port spec, then its own
 * key=value parameters. Every DUT runs FLOW concurrently on one libuv loop,
 * each in its own host with its own transcript; a failing DUT does not
 * stop the others. At the end the station prints a pass/fail table and
 * writes a JUnit report. Build it against an installed athost:
 *
 *   cc station.c $(pkg-config --cflags --libs athost) -o station
 */
#define _POSIX_C_SOURCE 200809L
#include <athost.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_DUTS 1024

typedef struct dut {
    char line[1024];
    char *spec;
    char *rest;             /* this DUT's key=value parameters */
    char name[64];
    ath_host_t *host;
    int done, ok, steps, failed_steps;
    double ms;
    char error[512];
    char step[128];         /* the step in progress, or the one that failed */
} dut_t;

static dut_t duts[MAX_DUTS];
static int nduts;

/* The embedder's view of a run: steps and the result arrive as events. */
static void on_event(ath_host_t *h, const ath_event_t *ev, void *ud)
{
    dut_t *d = ud;
    (void)h;
    switch (ev->type) {
    case ATH_EVENT_STEP_START:
        snprintf(d->step, sizeof d->step, "%s", ev->name);
        break;
    case ATH_EVENT_STEP_END:
        d->steps++;
        if (!ev->ok)
            d->failed_steps++;
        break;
    case ATH_EVENT_RESULT:
        d->done = 1;
        d->ok = ev->ok;
        d->ms = ev->ms;
        snprintf(d->error, sizeof d->error, "%s", ev->text ? ev->text : "");
        break;
    default:
        break;
    }
}

static void xml_escaped(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '<') fputs("&lt;", f);
        else if (*s == '>') fputs("&gt;", f);
        else if (*s == '&') fputs("&amp;", f);
        else if (*s == '"') fputs("&quot;", f);
        else if ((unsigned char)*s >= 0x20 || *s == '\t') fputc(*s, f);
    }
}

static int write_junit(const char *path, const char *flow, int failures,
                       double total_ms)
{
    FILE *f = fopen(path, "w");
    int i;
    if (f == NULL)
        return -1;
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
               "<testsuites tests=\"%d\" failures=\"%d\" time=\"%.3f\">\n"
               "  <testsuite name=\"station\" tests=\"%d\" failures=\"%d\" "
               "errors=\"0\" time=\"%.3f\">\n",
            nduts, failures, total_ms / 1e3, nduts, failures, total_ms / 1e3);
    for (i = 0; i < nduts; i++) {
        dut_t *d = &duts[i];
        fprintf(f, "    <testcase classname=\"station.");
        xml_escaped(f, flow);
        fprintf(f, "\" name=\"");
        xml_escaped(f, d->name);
        fprintf(f, "\" time=\"%.3f\">\n", d->ms / 1e3);
        if (!d->ok) {
            fprintf(f, "      <failure type=\"step\" message=\"");
            xml_escaped(f, d->error);
            fprintf(f, "\">failed in step ");
            xml_escaped(f, d->step);
            fprintf(f, "</failure>\n");
        }
        fprintf(f, "      <system-out>%d steps, port ", d->steps);
        xml_escaped(f, d->spec);
        fprintf(f, "</system-out>\n    </testcase>\n");
    }
    fprintf(f, "  </testsuite>\n</testsuites>\n");
    return fclose(f);
}

/* Reads the DUT list: "SPEC [key=value ...]" a line, '#' comments. */
static int read_duts(const char *path)
{
    FILE *f = fopen(path, "r");
    char buf[1024];
    if (f == NULL)
        return -1;
    while (nduts < MAX_DUTS && fgets(buf, sizeof buf, f)) {
        dut_t *d = &duts[nduts];
        buf[strcspn(buf, "\r\n")] = '\0';
        if (buf[0] == '\0' || buf[0] == '#')
            continue;
        snprintf(d->line, sizeof d->line, "%s", buf);
        d->spec = strtok_r(d->line, " \t", &d->rest);
        snprintf(d->name, sizeof d->name, "dut%02d", nduts + 1);
        nduts++;
    }
    fclose(f);
    return 0;
}

static void set_params(ath_host_t *h, char *kv)
{
    char *eq = strchr(kv, '=');
    if (eq == NULL)
        return;
    *eq = '\0';
    ath_host_set_param(h, kv, eq + 1);
    *eq = '=';
}

int main(int argc, char **argv)
{
    const char *junit = "station.xml", *logdir = ".", *flow, *list;
    uv_loop_t loop;
    uint64_t t0;
    int i, a = 1, failures = 0;
    char *tok;

    while (a + 1 < argc && argv[a][0] == '-') {
        if (strcmp(argv[a], "--junit") == 0)
            junit = argv[a + 1];
        else if (strcmp(argv[a], "--logdir") == 0)
            logdir = argv[a + 1];
        else
            break;
        a += 2;
    }
    if (argc - a < 2) {
        fprintf(stderr, "usage: station [--junit FILE] [--logdir DIR] FLOW "
                        "DUTS_FILE [key=value ...]\n");
        return 2;
    }
    flow = argv[a];
    list = argv[a + 1];
    if (read_duts(list) != 0 || nduts == 0) {
        fprintf(stderr, "station: no DUTs in %s\n", list);
        return 2;
    }
    if (mkdir(logdir, 0777) != 0 && errno != EEXIST) {
        fprintf(stderr, "station: cannot make %s: %s\n", logdir, strerror(errno));
        return 2;
    }
    uv_loop_init(&loop);
    t0 = uv_hrtime();
    for (i = 0; i < nduts; i++) {
        dut_t *d = &duts[i];
        char log[600];
        ath_host_opts_t o;
        int k;
        snprintf(log, sizeof log, "%s/%s.log", logdir, d->name);
        memset(&o, 0, sizeof o);
        o.on_event = on_event;
        o.ud = d;
        o.transcript = log;
        o.name = d->name;
#ifdef ATHOST_LUADIR
        o.lib_path = ATHOST_LUADIR;
#endif
        d->host = ath_host_new(&loop, &o);
        if (d->host == NULL) {
            fprintf(stderr, "station: cannot create a host for %s\n", d->spec);
            return 1;
        }
        for (k = a + 2; k < argc; k++)
            set_params(d->host, argv[k]);
        while ((tok = strtok_r(NULL, " \t", &d->rest)) != NULL)
            set_params(d->host, tok);       /* this DUT's own parameters */
        ath_host_set_port(d->host, d->spec, 0);
        if (ath_host_load_file(d->host, flow) != 0) {
            fprintf(stderr, "station: %s\n", ath_host_error(d->host));
            return 2;
        }
        ath_host_start(d->host);
    }
    uv_run(&loop, UV_RUN_DEFAULT);

    printf("%-6s %-6s %9s  %s\n", "DUT", "result", "time", "detail");
    for (i = 0; i < nduts; i++) {
        dut_t *d = &duts[i];
        if (!d->done) {
            d->ok = 0;
            snprintf(d->error, sizeof d->error, "did not finish");
        }
        failures += !d->ok;
        printf("%-6s %-6s %7.0fms  %s\n", d->name, d->ok ? "PASS" : "FAIL",
               d->ms, d->ok ? d->spec : d->error);
    }
    printf("%d passed, %d failed\n", nduts - failures, failures);
    if (write_junit(junit, flow, failures, (double)(uv_hrtime() - t0) / 1e6))
        fprintf(stderr, "station: cannot write %s\n", junit);
    for (i = 0; i < nduts; i++)
        ath_host_close(duts[i].host);
    uv_run(&loop, UV_RUN_DEFAULT);
    for (i = 0; i < nduts; i++)
        ath_host_free(duts[i].host);
    uv_loop_close(&loop);
    return failures ? 1 : 0;
}
