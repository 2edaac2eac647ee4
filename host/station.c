/*
 * station.c: many ports at once (athost --ports). One host per port, all
 * on one libuv loop: a failing DUT never stops the others. Each DUT gets
 * its own parameters, transcript and result; results go out as JSON lines
 * and, with --junit, as one JUnit XML report.
 *
 * The hosts share one Lua state (ath_host_new_shared under a parent host
 * that runs no flow): the library is compiled once, not once per DUT, and
 * a DUT costs its flows, ports and globals. ATHOST_STATION_ISOLATE=1 gives
 * each DUT a state of its own instead (a flow that changes what the
 * library's modules hold then cannot reach another DUT; it costs ~3x the
 * CPU and ~7x the memory per DUT).
 */
#include "station.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <lauxlib.h>
#include <lualib.h>

#include "athost.h"
#include "host.h"

int luaopen_cjson(lua_State *L);

typedef struct dut_step {
    char *name;
    double ms;
    int ok;
    char *error;
} dut_step_t;

typedef struct dut {
    char *spec;
    char label[64];
    char name[96];    /* the DUT's name: the table's dut or device_name,
                       * else the IMEI, else the port; unique */
    char rowname[80]; /* from the table */
    char imei[24];    /* what the flow's modem reported */
    ath_host_t *h;
    int done, status;
    char *error;
    double ms;
    dut_step_t *steps;
    int nsteps;
    const ath_station_opts_t *o;
} dut_t;

static int npassed, nfailed;

typedef struct station_sig {
    dut_t *duts;
    int n;
    int canceled;
} station_sig_t;

/* SIGINT, SIGTERM, SIGHUP: the DUTs still running are interrupted as a
 * single run is: their cleanups (athost.defer: MQTT disconnect, HTTP
 * terminate) run for a bounded time, their results come as exit 4, the
 * report is still written, and the station exits 4. A second signal cuts
 * the cleanups short. */
static void station_signal(uv_signal_t *sig, int signum)
{
    station_sig_t *st = sig->data;
    const char *why = signum == SIGINT    ? "SIGINT"
                      : signum == SIGTERM ? "SIGTERM"
                                          : "SIGHUP";
    int i;
    st->canceled = 1;
    for (i = 0; i < st->n; i++)
        if (st->duts[i].h && !st->duts[i].done)
            ath_host_interrupt(st->duts[i].h, why);
}

/* Reads the per-port table: a list of { port = spec?, params = {...} }
 * and an index of its rows by port (the first row naming a port).
 * CSV: a header row naming the columns ("port" optional); JSON: an array
 * of objects, or an object of objects keyed by port. Linear in the file:
 * cells are trimmed by a scan, quoted cells built from their pieces. */
static const char table_lua[] =
    "local path = ...\n"
    "local f = assert(io.open(path, 'rb'))\n"
    "local s = f:read('a') f:close()\n"
    "local rows = {}\n"
    "local function row(r, what)\n"
    "  if type(r) ~= 'table' then error(what .. ' is not an object', 0) end\n"
    "  return r\n"
    "end\n"
    "if path:match('%.json$') then\n"
    "  local ok, t = pcall(require('cjson').decode, s)\n"
    "  if not ok then error((tostring(t):gsub('^table:%d+: ', '')), 0) end\n"
    "  if type(t) ~= 'table' then error('not a JSON array or object', 0) end\n"
    "  if #t > 0 then for i, r in ipairs(t) do rows[#rows+1] = row(r, 'row ' .. i) end\n"
    "  else for k, r in pairs(t) do\n"
    "    row(r, 'row ' .. tostring(k)).port = r.port or k rows[#rows+1] = r end end\n"
    "else\n"
    "  local byte = string.byte\n"
    "  local function blank(c) return c == 32 or (c >= 9 and c <= 13) end\n"
    "  local function trim(line, i, j)\n"
    "    while i <= j and blank(byte(line, i)) do i = i + 1 end\n"
    "    while j >= i and blank(byte(line, j)) do j = j - 1 end\n"
    "    return line:sub(i, j)\n"
    "  end\n"
    "  local function split(line)\n"
    "    local out, i = {}, 1\n"
    "    while i <= #line + 1 do\n"
    "      if line:sub(i, i) == '\"' then\n"
    "        local j, v = i + 1, {}\n"
    "        while true do\n"
    "          local q = line:find('\"', j, true)\n"
    "          if not q then error('unterminated quote in ' .. path) end\n"
    "          v[#v+1] = line:sub(j, q - 1)\n"
    "          if line:sub(q + 1, q + 1) == '\"' then v[#v+1] = '\"' j = q + 2\n"
    "          else i = q + 2 break end\n"
    "        end\n"
    "        out[#out+1] = table.concat(v)\n"
    "      else\n"
    "        local c = line:find(',', i, true) or #line + 1\n"
    "        out[#out+1] = trim(line, i, c - 1)\n"
    "        i = c + 1\n"
    "      end\n"
    "    end\n"
    "    return out\n"
    "  end\n"
    "  local header\n"
    "  for line in s:gmatch('[^\\r\\n]+') do\n"
    "    if not line:find('^%s*#') then\n"
    "      local cells = split(line)\n"
    "      if not header then header = cells else\n"
    "        local r = {}\n"
    "        for i, k in ipairs(header) do r[k] = cells[i] end\n"
    "        rows[#rows+1] = r\n"
    "      end\n"
    "    end\n"
    "  end\n"
    "end\n"
    "local index = {}\n"
    "for _, r in ipairs(rows) do\n"
    "  local p = type(r) == 'table' and r.port\n"
    "  if type(p) == 'string' and p ~= '' and index[p] == nil then index[p] = r end\n"
    "end\n"
    "return rows, index\n";

/* Loads the table into L (at the top: its rows, then their index by
 * port); NULL or an error. */
static const char *station_table(lua_State *L, const char *path)
{
    luaL_requiref(L, "cjson", luaopen_cjson, 0);
    lua_pop(L, 1);
    if (luaL_loadbuffer(L, table_lua, sizeof table_lua - 1, "=table") != LUA_OK)
        return lua_tostring(L, -1);
    lua_pushstring(L, path);
    if (lua_pcall(L, 1, 2, 0) != LUA_OK)
        return lua_tostring(L, -1);
    return NULL;
}

/* Pushes the table row for port spec (by its "port" column: one lookup
 * in the index at table + 1, not a scan of the rows per DUT), or row i. */
static void station_row(lua_State *L, int table, const char *spec, int i)
{
    if (lua_getfield(L, table + 1, spec) == LUA_TTABLE)
        return;
    lua_pop(L, 1);
    /* More ports than rows: this one has none (no parameters), as when
     * its row names another port. */
    if (lua_rawgeti(L, table, i) != LUA_TTABLE)
        return;
    lua_getfield(L, -1, "port");
    if (lua_type(L, -1) == LUA_TSTRING && lua_rawlen(L, -1) > 0) {
        lua_pop(L, 2);          /* that row names another port */
        lua_pushnil(L);
        return;
    }
    lua_pop(L, 1);
}

static void xml_text(FILE *f, const char *s)
{
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        switch (c) {
        case '<': fputs("&lt;", f); break;
        case '>': fputs("&gt;", f); break;
        case '&': fputs("&amp;", f); break;
        case '"': fputs("&quot;", f); break;
        default:
            if (c < 0x20 && c != '\n' && c != '\t')
                fprintf(f, "\\x%02x", c);
            else
                fputc(c, f);
        }
    }
}

static int station_junit(const char *path, dut_t *duts, int n,
                         const char *script, double total_ms)
{
    /* The report carries what the modules said: private, like a
     * transcript. */
    int fd = ath_file_create(path, 0), i, k;
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (f == NULL) {
        fprintf(stderr, "athost: cannot write %s: %s\n", path,
                ath_file_why(fd < 0 ? -fd : errno));
        if (fd >= 0)
            close(fd);
        return -1;
    }
    fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    fprintf(f, "<testsuites tests=\"%d\" failures=\"%d\" time=\"%.3f\">\n",
            n, nfailed, total_ms / 1e3);
    fprintf(f, "  <testsuite name=\"");
    xml_text(f, script);
    fprintf(f, "\" tests=\"%d\" failures=\"%d\" errors=\"0\" time=\"%.3f\">\n",
            n, nfailed, total_ms / 1e3);
    for (i = 0; i < n; i++) {
        dut_t *d = &duts[i];
        fprintf(f, "    <testcase classname=\"athost.");
        xml_text(f, script);
        fprintf(f, "\" name=\"");
        xml_text(f, d->name);
        fprintf(f, "\" time=\"%.3f\">\n", d->ms / 1e3);
        if (d->status != ATH_EXIT_OK) {
            fprintf(f, "      <failure type=\"exit %d\" message=\"", d->status);
            xml_text(f, d->error ? d->error : "failed");
            fprintf(f, "\">");
            xml_text(f, d->error ? d->error : "failed");
            fprintf(f, "</failure>\n");
        }
        fprintf(f, "      <system-out>port ");
        xml_text(f, d->spec);
        if (d->imei[0])
            fprintf(f, " imei %s", d->imei);
        fprintf(f, "\n");
        for (k = 0; k < d->nsteps; k++) {
            fprintf(f, "%s %s %.1f ms", d->steps[k].ok ? "ok  " : "FAIL",
                    "", d->steps[k].ms);
            fprintf(f, " ");
            xml_text(f, d->steps[k].name);
            if (d->steps[k].error) {
                fprintf(f, ": ");
                xml_text(f, d->steps[k].error);
            }
            fprintf(f, "\n");
        }
        fprintf(f, "</system-out>\n    </testcase>\n");
    }
    fprintf(f, "  </testsuite>\n</testsuites>\n");
    return fclose(f) == 0 ? 0 : -1;
}

static char *xstrdup(const char *s)
{
    return s ? strdup(s) : NULL;
}

static void station_event(ath_host_t *h, const ath_event_t *ev, void *ud)
{
    dut_t *d = ud;
    if (d->o->json && ev->type != ATH_EVENT_TRANSCRIPT) {
        fputs(ath_event_json(h, ev), stdout);
        fputc('\n', stdout);
        fflush(stdout);
    }
    if (ev->type == ATH_EVENT_DATA && ev->name &&
        strcmp(ev->name, "dut") == 0 && ev->json) {
        /* athost.modem's identification: {"imei":"<digits>",...} */
        const char *at = strstr(ev->json, "\"imei\":\"");
        size_t k = 0;
        if (at)
            for (at += 8; k + 1 < sizeof d->imei && *at >= '0' && *at <= '9';)
                d->imei[k++] = *at++;
        if (k > 0)
            d->imei[k] = '\0';
    } else if (ev->type == ATH_EVENT_STEP_END) {
        dut_step_t *ns = realloc(d->steps, (size_t)(d->nsteps + 1) * sizeof *ns);
        if (ns == NULL)
            return;
        d->steps = ns;
        ns[d->nsteps].name = xstrdup(ev->name);
        ns[d->nsteps].ms = ev->ms;
        ns[d->nsteps].ok = ev->ok;
        ns[d->nsteps].error = xstrdup(ev->text);
        d->nsteps++;
    } else if (ev->type == ATH_EVENT_RESULT) {
        d->done = 1;
        d->status = ev->code;
        d->ms = ev->ms;
        d->error = xstrdup(ev->text);
        if (ev->ok)
            npassed++;
        else
            nfailed++;
        if (!d->o->json && !d->o->quiet) {
            if (ev->ok)
                fprintf(stderr, "PASS %-24s %8.0f ms\n", d->spec, ev->ms);
            else
                fprintf(stderr, "FAIL %-24s %8.0f ms  %s\n", d->spec, ev->ms,
                        ev->text ? ev->text : "");
            fflush(stderr);
        }
    }
}

/* Splits the port list (commas, or lines of a file; '#' comments). */
static char **station_ports(const ath_station_opts_t *o, int *n)
{
    char *text = NULL, *tok, *save = NULL, **list = NULL;
    const char *seps = ",";
    *n = 0;
    if (o->ports_file) {
        FILE *f = fopen(o->ports_file, "rb");
        long len;
        if (f == NULL) {
            fprintf(stderr, "athost: cannot read %s: %s\n", o->ports_file,
                    strerror(errno));
            return NULL;
        }
        fseek(f, 0, SEEK_END);
        len = ftell(f);
        rewind(f);
        text = calloc(1, (size_t)len + 1);
        if (text == NULL || fread(text, 1, (size_t)len, f) != (size_t)len) {
            fclose(f);
            free(text);
            return NULL;
        }
        fclose(f);
        seps = "\r\n";
    } else {
        text = strdup(o->ports);
    }
    for (tok = strtok_r(text, seps, &save); tok; tok = strtok_r(NULL, seps, &save)) {
        char **nl;
        while (*tok == ' ' || *tok == '\t')
            tok++;
        if (*tok == '\0' || *tok == '#')
            continue;
        nl = realloc(list, (size_t)(*n + 1) * sizeof *nl);
        if (nl == NULL)
            break;
        list = nl;
        list[(*n)++] = strdup(tok);
    }
    free(text);
    return list;
}

/* Creates, configures and starts the host of one DUT. 0 or an exit code. */
static int station_start(dut_t *d, uv_loop_t *loop, ath_host_t *parent,
                         lua_State *T, int table, int i)
{
    const ath_station_opts_t *o = d->o;
    ath_host_opts_t ho;
    char logpath[1024], *c;
    int k, rc;
    memset(&ho, 0, sizeof ho);
    ho.on_event = station_event;
    ho.ud = d;
    ho.name = d->label;
    if (o->logdir) {
        snprintf(logpath, sizeof logpath, "%s/%s.log", o->logdir, d->label);
        ho.transcript = logpath;
        ho.transcript_max = o->log_max;
    }
    d->h = parent ? ath_host_new_shared(parent, &ho) : ath_host_new(loop, &ho);
    if (d->h == NULL)
        return ATH_EXIT_USAGE;
    ath_host_lazy_events(d->h, 1); /* the JSON of -j's lines only */
    if (o->config && ath_host_load_config(d->h, o->config) != 0) {
        fprintf(stderr, "athost: %s\n", ath_host_error(d->h));
        return ATH_EXIT_USAGE;
    }
    if (T) {
        station_row(T, table, d->spec, i + 1);
        if (lua_istable(T, -1)) {
            lua_pushnil(T);
            while (lua_next(T, -2)) {
                /* the port column selects the row and the dut column
                 * names the DUT; neither is a parameter. device_name
                 * (Aliyun's) is both. */
                if (lua_type(T, -2) == LUA_TSTRING && lua_isstring(T, -1)) {
                    const char *k = lua_tostring(T, -2);
                    const char *v = lua_tostring(T, -1);
                    if ((strcmp(k, "dut") == 0 ||
                         (strcmp(k, "device_name") == 0 &&
                          !d->rowname[0])) && *v)
                        snprintf(d->rowname, sizeof d->rowname, "%s", v);
                    if (strcmp(k, "port") != 0 && strcmp(k, "dut") != 0)
                        ath_host_set_param(d->h, k, v);
                }
                lua_pop(T, 1);
            }
        }
        lua_pop(T, 1);
    }
    ath_host_params_from_env(d->h);
    for (k = 0; k < o->argc; k++) {
        c = strchr(o->argv[k], '=');
        *c = '\0';
        rc = ath_host_set_param_arg(d->h, o->argv[k], c + 1);
        *c = '=';
        if (rc != 0) {
            fprintf(stderr, "athost: %s\n", ath_host_error(d->h));
            return ATH_EXIT_USAGE;
        }
    }
    ath_host_set_port(d->h, d->spec, o->baud);
    rc = o->script ? ath_host_load_file(d->h, o->script)
                   : ath_host_load_string(d->h, o->chunk, "=(command line)");
    if (rc != 0) {
        fprintf(stderr, "athost: %s\n", ath_host_error(d->h));
        return rc;
    }
    ath_host_set_argv(d->h, o->script ? o->script : "-e", o->argc, o->argv);
    return ath_host_start(d->h) == 0 ? 0 : ATH_EXIT_USAGE;
}

/* A label safe for file names: the spec with '/' and ':' replaced. */
static void station_label(dut_t *d, int i)
{
    const char *s = d->spec;
    size_t k = 0;
    if (strncmp(s, "/dev/", 5) == 0)
        s += 5;
    for (; *s && k < sizeof d->label - 8; s++)
        d->label[k++] = (strchr("/:?&= ", *s) ? '_' : *s);
    d->label[k] = '\0';
    if (strncmp(d->spec, "sim:", 4) == 0)
        snprintf(d->label + k, sizeof d->label - k, "_%d", i + 1);
}

/* Names every DUT: the table's name, else its IMEI, else its port; the
 * second and later of a name get "#2", "#3"... in port order. */
static void station_names(dut_t *duts, int n)
{
    int i, j;
    for (i = 0; i < n; i++) {
        dut_t *d = &duts[i];
        const char *base = d->rowname[0] ? d->rowname
                           : d->imei[0]  ? d->imei
                                         : d->spec;
        snprintf(d->name, sizeof d->name, "%s", base);
    }
    for (i = 0; i < n; i++) {
        int seen = 1;
        char base[96];
        snprintf(base, sizeof base, "%s", duts[i].name);
        for (j = i + 1; j < n; j++) {
            if (strcmp(duts[j].name, base) == 0) {
                char *nm = duts[j].name;
                size_t len = strlen(nm);
                if (len > sizeof duts[j].name - 8)
                    len = sizeof duts[j].name - 8;
                snprintf(nm + len, sizeof duts[j].name - len, "#%d", ++seen);
            }
        }
    }
}

/* The operators' table: one row a DUT, in port order. */
static void station_table_print(FILE *f, dut_t *duts, int n)
{
    int i, wp = 4, wn = 3;
    for (i = 0; i < n; i++) {
        int lp = (int)strlen(duts[i].spec), ln = (int)strlen(duts[i].name);
        wp = lp > wp ? (lp > 40 ? 40 : lp) : wp;
        wn = ln > wn ? (ln > 40 ? 40 : ln) : wn;
    }
    fprintf(f, "%-*s  %-*s  %-17s %-6s %9s  %s\n", wp, "PORT", wn, "DUT",
            "IMEI", "RESULT", "TIME", "ERROR");
    for (i = 0; i < n; i++) {
        dut_t *d = &duts[i];
        fprintf(f, "%-*s  %-*s  %-17s %-6s %6.0f ms  %s\n", wp, d->spec, wn,
                d->name, d->imei[0] ? d->imei : "-",
                !d->done ? "-" : d->status == ATH_EXIT_OK ? "PASS" : "FAIL",
                d->ms, d->status != ATH_EXIT_OK && d->error ? d->error : "");
    }
}

static void station_free_specs(char **specs, int n)
{
    int i;
    for (i = 0; i < n; i++)
        free(specs[i]);
    free(specs);
}

int ath_station_main(const ath_station_opts_t *o)
{
    uv_loop_t loop;
    lua_State *T = NULL;
    ath_host_t *parent = NULL;
    const char *isolate = getenv("ATHOST_STATION_ISOLATE");
    dut_t *duts;
    char **specs;
    int n, i, rc = ATH_EXIT_OK, table = 0;
    uint64_t t0 = uv_hrtime();
    uv_signal_t sigs[3];
    static const int signums[3] = {SIGINT, SIGTERM, SIGHUP};
    station_sig_t st;

    specs = station_ports(o, &n);
    if (specs == NULL || n == 0) {
        fprintf(stderr, "athost: no ports given\n");
        station_free_specs(specs, n);
        return ATH_EXIT_USAGE;
    }
    if (o->logdir && mkdir(o->logdir, 0700) != 0 && errno != EEXIST) {
        fprintf(stderr, "athost: cannot make %s: %s\n", o->logdir,
                strerror(errno));
        station_free_specs(specs, n);
        return ATH_EXIT_USAGE;
    }
    if (o->table) {
        const char *err;
        T = luaL_newstate();
        luaL_openlibs(T);
        if ((err = station_table(T, o->table)) != NULL) {
            fprintf(stderr, "athost: table %s: %s\n", o->table, err);
            lua_close(T);
            station_free_specs(specs, n);
            return ATH_EXIT_USAGE;
        }
        table = lua_gettop(T) - 1; /* the rows; their index above them */
    }
    uv_loop_init(&loop);
    duts = calloc((size_t)n, sizeof *duts);
    if (!(isolate && *isolate && strcmp(isolate, "0") != 0)) {
        ath_host_opts_t po;
        memset(&po, 0, sizeof po);
        po.quiet = 1;
        if ((parent = ath_host_new(&loop, &po)) == NULL)
            rc = ATH_EXIT_USAGE;
    }
    for (i = 0; i < n && rc == ATH_EXIT_OK; i++) {
        duts[i].spec = specs[i];
        duts[i].o = o;
        station_label(&duts[i], i);
        rc = station_start(&duts[i], &loop, parent, T, table, i);
    }
    if (T)
        lua_close(T);
    st.duts = duts;
    st.n = n;
    st.canceled = 0;
    for (i = 0; i < 3; i++) {
        uv_signal_init(&loop, &sigs[i]);
        sigs[i].data = &st;
        uv_signal_start(&sigs[i], station_signal, signums[i]);
        uv_unref((uv_handle_t *)&sigs[i]);
    }
    if (rc == ATH_EXIT_OK) {
        uv_run(&loop, UV_RUN_DEFAULT);
        for (i = 0; i < n; i++) {
            if (!duts[i].done) {
                ath_host_cancel(duts[i].h);
                uv_run(&loop, UV_RUN_DEFAULT);
            }
        }
    }
    for (i = 0; i < n; i++)
        if (duts[i].h)
            ath_host_close(duts[i].h);
    for (i = 0; i < 3; i++)
        uv_close((uv_handle_t *)&sigs[i], NULL);
    uv_run(&loop, UV_RUN_DEFAULT);
    if (rc == ATH_EXIT_OK) {
        double total = (double)(uv_hrtime() - t0) / 1e6;
        station_names(duts, n);
        if (!o->quiet && !o->json) {
            station_table_print(stderr, duts, n);
            fprintf(stderr, "%d passed, %d failed (%d ports, %.1f s)\n",
                    npassed, nfailed, n, total / 1e3);
        }
        if (o->junit && station_junit(o->junit, duts, n,
                                      o->script ? o->script : "-e",
                                      total) != 0)
            rc = ATH_EXIT_FAIL;
        if (nfailed > 0)
            rc = ATH_EXIT_FAIL;
        if (st.canceled)
            rc = ATH_EXIT_CANCELED;
    }
    for (i = 0; i < n; i++) {
        int k;
        ath_host_free(duts[i].h);
        for (k = 0; k < duts[i].nsteps; k++) {
            free(duts[i].steps[k].name);
            free(duts[i].steps[k].error);
        }
        free(duts[i].steps);
        free(duts[i].error);
        free(specs[i]);
    }
    ath_host_free(parent); /* the state, after every DUT's host */
    free(duts);
    free(specs);
    uv_loop_close(&loop);
    return rc;
}
