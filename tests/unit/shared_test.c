// unit: host/host.c host/flow.c host/event.c host/lhost.c host/chat.c host/pattern.c host/port.c host/lport.c host/lchat.c host/lopen.c host/transcript.c host/redact.c host/crypto.c host/tls.c host/ltls.c host/lfile.c host/telnet.c host/rfc2217.c host/ledit.c host/lalloc.c host/core.c -llua5.4-cjson -ledit -luv -lssl -lcrypto -lm
/*
 * shared_test.c: hosts sharing one Lua state (ath_host_new_shared), as an
 * embedder sees them: each has its own globals, parameters, secrets and
 * result; one failing leaves the others passing; one freed while the
 * others run stops reporting and takes nothing of theirs with it; a flow
 * file loads once per state yet runs with each host's own globals, and a
 * file that does not load fails as it does for a host of its own.
 */
#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

typedef struct seen {
    char logs[2048];
    int results, ok, freed, after_free;
    char error[256];
} seen_t;

static void on_event(ath_host_t *h, const ath_event_t *ev, void *ud)
{
    seen_t *s = ud;
    (void)h;
    if (s->freed)
        s->after_free++;
    if (ev->type == ATH_EVENT_LOG) {
        strncat(s->logs, ev->text, sizeof s->logs - strlen(s->logs) - 2);
        strcat(s->logs, "\n");
    } else if (ev->type == ATH_EVENT_RESULT) {
        s->results++;
        s->ok = ev->ok;
        snprintf(s->error, sizeof s->error, "%s", ev->text ? ev->text : "");
    }
}

static ath_host_t *child(ath_host_t *parent, seen_t *s, const char *name)
{
    ath_host_opts_t o;
    memset(&o, 0, sizeof o);
    o.on_event = on_event;
    o.ud = s;
    o.name = name;
    return ath_host_new_shared(parent, &o);
}

/* Frees host C from a timer of the loop, while the others run. */
static ath_host_t *victim;
static seen_t *victim_seen;
static void free_victim(uv_timer_t *t)
{
    ath_host_free(victim);
    victim_seen->freed = 1;
    victim = NULL;
    uv_close((uv_handle_t *)t, NULL);
}

static const char chunk[] =
    "local args = ...\n"
    "local athost = require('athost')\n"
    "g = args.v\n"
    "local co = coroutine.wrap(function()\n"
    "  athost.log('wrapped ' .. args.v .. ' ' .. (args.token or '-'))\n"
    "  return athost.params().v\n"
    "end)\n"
    "athost.log('co ' .. co())\n"
    "athost.sleep(tonumber(args.ms))\n"
    "athost.log('g=' .. tostring(g) .. ' w=' .. tostring(athost.params().w))\n"
    "if args.fail then error('boom in ' .. args.v, 0) end\n";

static void test_shared(void)
{
    seen_t sa, sb, sc, sd;
    ath_host_t *parent, *a, *b, *d;
    uv_timer_t t;
    uv_loop_t *loop;
    memset(&sa, 0, sizeof sa);
    memset(&sb, 0, sizeof sb);
    memset(&sc, 0, sizeof sc);
    memset(&sd, 0, sizeof sd);
    parent = ath_host_new(NULL, NULL);
    CHECK(parent != NULL, "the parent host");
    if (parent == NULL)
        return;
    loop = ath_host_loop(parent);
    a = child(parent, &sa, "A");
    b = child(parent, &sb, "B");
    victim = child(parent, &sc, "C");
    victim_seen = &sc;
    d = child(parent, &sd, "D");
    CHECK(a && b && victim && d, "four shared hosts");
    CHECK(child(a, &sa, "x") == NULL, "a shared host cannot be a parent");
    ath_host_set_param(a, "v", "1");
    ath_host_set_param(a, "ms", "40");
    ath_host_set_param(a, "token", "tokA-123");
    ath_host_set_param(b, "v", "2");
    ath_host_set_param(b, "ms", "40");
    ath_host_set_param(b, "w", "bee");
    ath_host_set_param(victim, "v", "3");
    ath_host_set_param(victim, "ms", "60000");
    ath_host_set_param(d, "v", "4");
    ath_host_set_param(d, "ms", "5");
    ath_host_set_param(d, "fail", "yes");
    CHECK(ath_host_load_string(a, chunk, "=(a)") == 0, "A loads");
    CHECK(ath_host_load_string(b, chunk, "=(b)") == 0, "B loads");
    CHECK(ath_host_load_string(victim, chunk, "=(c)") == 0, "C loads");
    CHECK(ath_host_load_string(d, chunk, "=(d)") == 0, "D loads");
    CHECK(ath_host_start(a) == 0 && ath_host_start(b) == 0 &&
              ath_host_start(victim) == 0 && ath_host_start(d) == 0,
          "all four start");
    uv_timer_init(loop, &t);
    uv_timer_start(&t, free_victim, 10, 0);
    while (!ath_host_done(a) || !ath_host_done(b) || !ath_host_done(d))
        uv_run(loop, UV_RUN_ONCE);
    CHECK(victim == NULL, "C was freed while the others ran");
    CHECK(sa.results == 1 && sa.ok, "A passed");
    CHECK(sb.results == 1 && sb.ok, "B passed");
    CHECK(sd.results == 1 && !sd.ok && strcmp(sd.error, "boom in 4") == 0,
          "D failed with its own error");
    CHECK(ath_host_status(a) == ATH_EXIT_OK &&
              ath_host_status(d) == ATH_EXIT_FAIL,
          "statuses");
    CHECK(strstr(sa.logs, "g=1 w=nil\n") != NULL,
          "A's global and parameters are its own");
    CHECK(strstr(sb.logs, "g=2 w=bee\n") != NULL,
          "B's global and parameters are its own");
    CHECK(strstr(sa.logs, "co 1\n") && strstr(sb.logs, "co 2\n"),
          "coroutine.wrap reads its own host's parameters");
    CHECK(strstr(sa.logs, "wrapped 1 ***\n") != NULL,
          "A's secret parameter is masked in a log from its coroutine");
    CHECK(strstr(sb.logs, "wrapped 2 -\n") != NULL,
          "B has no token");
    CHECK(strstr(sc.logs, "co 3\n") != NULL && sc.results == 0 &&
              sc.after_free == 0,
          "C ran, then after its free reported nothing");
    ath_host_free(a);
    ath_host_free(b);
    ath_host_free(d);
    ath_host_free(parent);
}

/* A flow file, loaded into two shared hosts and a host of its own. */
static void test_files(void)
{
    char dir[] = "/tmp/athost-shared-XXXXXX", good[128], bad[128];
    seen_t s1, s2, s3;
    ath_host_t *parent, *h1, *h2, *own;
    FILE *f;
    char err_own[512];
    if (mkdtemp(dir) == NULL) {
        CHECK(0, "mkdtemp");
        return;
    }
    snprintf(good, sizeof good, "%s/good.lua", dir);
    snprintf(bad, sizeof bad, "%s/bad.lua", dir);
    f = fopen(good, "w");
    fputs("#!/usr/bin/env athost\n"
          "local athost = require('athost')\n"
          "n = (n or 0) + 1\n"
          "athost.sleep(5)\n"
          "n = n + 1\n"
          "athost.log('n=' .. n .. ' arg0=' .. tostring(arg and arg[1]))\n"
          "error('line 7')\n",
          f);
    fclose(f);
    f = fopen(bad, "w");
    fputs("local x = \nfunction(\n", f);
    fclose(f);
    memset(&s1, 0, sizeof s1);
    memset(&s2, 0, sizeof s2);
    memset(&s3, 0, sizeof s3);
    parent = ath_host_new(NULL, NULL);
    h1 = child(parent, &s1, "one");
    h2 = child(parent, &s2, "two");
    CHECK(ath_host_load_file(h1, good) == 0, "the file loads in one");
    CHECK(ath_host_load_file(h2, good) == 0, "the file loads in two");
    {
        char *argv1[] = {"first"}, *argv2[] = {"second"};
        ath_host_set_argv(h1, good, 1, argv1);
        ath_host_set_argv(h2, good, 1, argv2);
    }
    ath_host_start(h1);
    ath_host_start(h2);
    while (!ath_host_done(h1) || !ath_host_done(h2))
        uv_run(ath_host_loop(parent), UV_RUN_ONCE);
    CHECK(strstr(s1.logs, "n=2 arg0=first\n") != NULL,
          "one counted its own global and sees its own arg");
    CHECK(strstr(s2.logs, "n=2 arg0=second\n") != NULL,
          "two counted its own global and sees its own arg");
    CHECK(strstr(s1.error, "good.lua:7: line 7") != NULL,
          "an error names the file's own line (after a #! line)");
    CHECK(ath_host_load_file(h1, bad) == ATH_EXIT_USAGE,
          "a file that does not compile: a usage error");
    own = ath_host_new(NULL, NULL);
    CHECK(ath_host_load_file(own, bad) == ATH_EXIT_USAGE, "and in a host of its own");
    snprintf(err_own, sizeof err_own, "%s", ath_host_error(own));
    CHECK(strcmp(ath_host_error(h1), err_own) == 0 && strstr(err_own, "bad.lua:3"),
          "with the same message");
    ath_host_free(own);
    ath_host_free(h1);
    ath_host_free(h2);
    ath_host_free(parent);
    unlink(good);
    unlink(bad);
    rmdir(dir);
}

/* A parameter set while the flow runs, after the flow gave its
 * parameter table an __newindex that raises: set raw, no abort. */
static void test_param_after_start(void)
{
    seen_t s;
    ath_host_t *h;
    ath_host_opts_t o;
    memset(&s, 0, sizeof s);
    memset(&o, 0, sizeof o);
    o.on_event = on_event;
    o.ud = &s;
    h = ath_host_new(NULL, &o);
    CHECK(ath_host_load_string(h,
              "local a = ... local athost = require('athost')\n"
              "setmetatable(a, { __newindex = function() error('read-only', 0) end })\n"
              "athost.sleep(5)\n"
              "athost.log('late=' .. tostring(rawget(a, 'late')))\n",
              "=(params)") == 0,
          "the flow loads");
    CHECK(ath_host_start(h) == 0, "the flow starts");
    CHECK(ath_host_set_param(h, "late", "yes") == 0, "a parameter set while it runs");
    while (!ath_host_done(h))
        uv_run(ath_host_loop(h), UV_RUN_ONCE);
    CHECK(strstr(s.logs, "late=yes\n") != NULL, "the flow sees it");
    CHECK(s.results == 1 && s.ok, "and passes");
    ath_host_free(h);
}

int main(void)
{
    test_shared();
    test_files();
    test_param_after_start();
    printf("shared_test: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
