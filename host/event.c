/*
 * event.c: what a host reports: events to the embedder's callback, as
 * JSON lines, or printed for a person on stderr; the secrets masked in
 * all of them; and the progress lines of long waits.
 */
#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- secrets ---------------------------------------------------------- */

/* Registers one spelling of a secret. */
static void secret_add_one(ath_host_t *h, const char *value)
{
    size_t i, n = strlen(value);
    char **ns;
    if (n < 3)
        return; /* masking "" or "1" would mask everything */
    for (i = 0; i < h->nsecrets; i++)
        if (strcmp(h->secrets[i], value) == 0)
            return;
    ns = realloc(h->secrets, (h->nsecrets + 1) * sizeof *ns);
    if (ns == NULL)
        return;
    h->secrets = ns;
    if ((ns[h->nsecrets] = strdup(value)) == NULL)
        return;
    h->nsecrets++;
    h->ac_dirty = 1;
    if (n > h->secret_max)
        h->secret_max = n;
}

/* The encodings athost itself puts a secret in on its way out: hex (both
 * cases, HEX-mode payloads), base64, URL encoding (form bodies) and the
 * \HH escapes of an AT string (at.mpub_escape). out holds 4n + 1. */
/* Two hex digits of u at o (upper case when upper). */
static char *hex2(char *o, unsigned u, int upper)
{
    const char *d = upper ? "0123456789ABCDEF" : "0123456789abcdef";
    *o++ = d[(u >> 4) & 15];
    *o++ = d[u & 15];
    return o;
}

static void secret_encode(const char *v, size_t n, int how, char *out)
{
    static const char *b64 =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *u = (const unsigned char *)v;
    size_t i;
    char *o = out;
    switch (how) {
    case 0:
    case 1:
        for (i = 0; i < n; i++)
            o = hex2(o, u[i], how);
        break;
    case 2:
        for (i = 0; i < n; i += 3) {
            unsigned a = u[i], b = i + 1 < n ? u[i + 1] : 0,
                     c = i + 2 < n ? u[i + 2] : 0;
            *o++ = b64[a >> 2];
            *o++ = b64[((a & 3) << 4) | (b >> 4)];
            *o++ = i + 1 < n ? b64[((b & 15) << 2) | (c >> 6)] : '=';
            *o++ = i + 2 < n ? b64[c & 63] : '=';
        }
        break;
    case 3:
        for (i = 0; i < n; i++) {
            if ((u[i] >= 'a' && u[i] <= 'z') || (u[i] >= 'A' && u[i] <= 'Z') ||
                (u[i] >= '0' && u[i] <= '9') || strchr("-._~", u[i]) != NULL)
                *o++ = (char)u[i];
            else
                *o++ = '%', o = hex2(o, u[i], 1);
        }
        break;
    default:
        for (i = 0; i < n; i++) {
            if (u[i] == '"' || u[i] == '\r' || u[i] == '\n' || u[i] == '\\')
                *o++ = '\\', o = hex2(o, u[i], 1);
            else
                *o++ = (char)u[i];
        }
    }
    *o = '\0';
}

void ath_host_add_secret(ath_host_t *h, const char *value)
{
    size_t n = strlen(value);
    char *enc;
    int how;
    secret_add_one(h, value);
    if (n < 3 || (enc = malloc(4 * n + 8)) == NULL)
        return;
    for (how = 0; how < 5; how++) {
        secret_encode(value, n, how, enc);
        secret_add_one(h, enc); /* a spelling already known is kept once */
    }
    free(enc);
}

int ath_secret_name(const char *key, size_t n)
{
    /* credentialsvalue: ThingsBoard's provisioning reply carries the
     * device's access token in "credentialsValue". */
    static const char *words[] = {"secret",      "password",         "passwd",
                                  "token",       "psk",              "privatekey",
                                  "private_key", "credentialsvalue", NULL};
    size_t i, k, wl;
    int w;
    for (w = 0; words[w]; w++) {
        wl = strlen(words[w]);
        for (i = 0; i + wl <= n; i++) {
            for (k = 0; k < wl; k++) {
                char c = key[i + k];
                if (c >= 'A' && c <= 'Z')
                    c = (char)(c - 'A' + 'a');
                if (c != words[w][k])
                    break;
            }
            if (k == wl)
                return 1;
        }
    }
    return 0;
}

/* At s[i] == '"': a JSON field named like a secret, "deviceSecret": "v".
 * Returns the offset of its value's first byte and sets *end to the
 * offset of its closing quote (n when the text ends first), or returns 0. */
static size_t redact_field(const char *s, size_t n, size_t i, size_t *end)
{
    size_t k = i + 1, key, v;
    while (k < n && k - i <= 64 && s[k] != '"' && s[k] != '\\' &&
           (unsigned char)s[k] >= 0x20)
        k++;
    if (k >= n || s[k] != '"' || !ath_secret_name(s + i + 1, k - i - 1))
        return 0;
    key = k + 1;
    while (key < n && (s[key] == ' ' || s[key] == '\t'))
        key++;
    if (key >= n || s[key] != ':')
        return 0;
    key++;
    while (key < n && (s[key] == ' ' || s[key] == '\t'))
        key++;
    if (key >= n || s[key] != '"')
        return 0;
    v = key + 1;
    for (k = v; k < n && s[k] != '"'; k++)
        if (s[k] == '\\' && k + 1 < n)
            k++;
    *end = k < n ? k : n;
    return v;
}

const ath_ac_t *ath_host_ac(ath_host_t *h)
{
    if (h->ac == NULL || h->ac_dirty) {
        ath_ac_t *ac = ath_ac_new((const char *const *)h->secrets,
                                  h->nsecrets);
        if (ac == NULL)
            return h->ac; /* the old one masks all but the newest */
        ath_ac_free(h->ac);
        h->ac = ac;
        h->ac_dirty = 0;
    }
    return h->ac;
}

char *ath_host_redact_fields(const char *s, size_t n, size_t *outn)
{
    size_t i, o = 0, v, end;
    /* "***" for a value of 1 or 2 bytes grows the text by at most 2 bytes
     * a field, and a field takes at least 9 ("psk":"a") */
    char *out = malloc(n + n / 4 + 4);
    if (out == NULL)
        return NULL;
    for (i = 0; i < n;) {
        if (s[i] == '"' && (v = redact_field(s, n, i, &end)) != 0) {
            /* A value named a secret is one whether or not the flow
             * registered it (a reply it never got to parse). */
            memcpy(out + o, s + i, v - i);
            o += v - i;
            if (end > v) {
                memcpy(out + o, "***", 3);
                o += 3;
            }
            i = end;
            continue;
        }
        out[o++] = s[i++];
    }
    out[o] = '\0';
    if (outn)
        *outn = o;
    return out;
}

char *ath_host_redact(ath_host_t *h, const char *s, size_t n, size_t *outn)
{
    const ath_ac_t *ac = ath_host_ac(h);
    size_t mn;
    char *masked, *out;
    if (ac == NULL)
        return NULL;
    if ((masked = ath_ac_mask(ac, s, n, &mn)) == NULL)
        return NULL;
    out = ath_host_redact_fields(masked, mn, outn);
    free(masked);
    return out;
}

/* ---- text that must survive C and JSON ---------------------------------- */

size_t ath_utf8_seq(const char *str, size_t n)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned char lo = 0x80, hi = 0xbf;
    size_t len, i;
    if (n == 0)
        return 0;
    if (s[0] < 0x80)
        return 1;
    /* RFC 3629 table 3.7: the second byte's range rules out overlong
     * forms (E0, F0), surrogates (ED) and code points above U+10FFFF (F4). */
    if (s[0] >= 0xc2 && s[0] <= 0xdf)
        len = 2;
    else if (s[0] >= 0xe0 && s[0] <= 0xef)
        len = 3;
    else if (s[0] >= 0xf0 && s[0] <= 0xf4)
        len = 4;
    else
        return 0;
    if (s[0] == 0xe0)
        lo = 0xa0;
    else if (s[0] == 0xed)
        hi = 0x9f;
    else if (s[0] == 0xf0)
        lo = 0x90;
    else if (s[0] == 0xf4)
        hi = 0x8f;
    if (len > n || s[1] < lo || s[1] > hi)
        return 0;
    for (i = 2; i < len; i++)
        if (s[i] < 0x80 || s[i] > 0xbf)
            return 0;
    return len;
}

const char *ath_pushcstr(lua_State *L, const char *s, size_t n)
{
    luaL_Buffer b;
    const char *nul;
    if (memchr(s, '\0', n) == NULL)
        return lua_pushlstring(L, s, n);
    luaL_buffinit(L, &b);
    while ((nul = memchr(s, '\0', n)) != NULL) {
        luaL_addlstring(&b, s, (size_t)(nul - s));
        luaL_addstring(&b, "\\x00");
        n -= (size_t)(nul - s) + 1;
        s = nul + 1;
    }
    luaL_addlstring(&b, s, n);
    luaL_pushresult(&b);
    return lua_tostring(L, -1);
}

/* Adds s[0, n) as JSON text: valid UTF-8 as it is, each byte that is not
 * part of a valid sequence as \u00XX (the character of the byte's value),
 * so that whatever a module or a script produced, the line is valid JSON.
 * With quote set it is a JSON string (quotes, escapes, control characters
 * escaped); without, s is JSON already (cjson's encoding, where bytes of
 * 0x80 and above only occur inside strings) and only invalid bytes are
 * escaped. */
static void json_text(luaL_Buffer *b, const char *s, size_t n, int quote)
{
    size_t i = 0, k;
    char tmp[8];
    if (quote)
        luaL_addchar(b, '"');
    while (s && i < n) {
        unsigned char c = (unsigned char)s[i];
        if (quote && (c == '"' || c == '\\')) {
            luaL_addchar(b, '\\');
            luaL_addchar(b, (char)c);
            i++;
        } else if (quote && (c < 0x20 || c == 0x7f)) {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            luaL_addstring(b, tmp);
            i++;
        } else if (c < 0x80) {
            luaL_addchar(b, (char)c);
            i++;
        } else if ((k = ath_utf8_seq(s + i, n - i)) != 0) {
            luaL_addlstring(b, s + i, k);
            i += k;
        } else {
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            luaL_addstring(b, tmp);
            i++;
        }
    }
    if (quote)
        luaL_addchar(b, '"');
}

static void json_str(luaL_Buffer *b, const char *s)
{
    json_text(b, s, s ? strlen(s) : 0, 1);
}

/* Writes s[0, n) for a person: a NUL as \x00, the rest as it is. */
static void print_text(FILE *f, const char *s, size_t n)
{
    const char *nul;
    while ((nul = memchr(s, '\0', n)) != NULL) {
        fwrite(s, 1, (size_t)(nul - s), f);
        fputs("\\x00", f);
        n -= (size_t)(nul - s) + 1;
        s = nul + 1;
    }
    fwrite(s, 1, n, f);
}

/* ---- events ----------------------------------------------------------- */

static const char *event_names[] = {"",     "step",       "step",
                                    "log",  "urc",        "transcript",
                                    "data", "result",     "wait"};

/* Builds the event's JSON line; leaves it on L's stack. */
static void event_json(ath_host_t *h, const ath_event_t *ev)
{
    lua_State *L = h->L;
    luaL_Buffer b;
    char num[64];
    luaL_buffinit(L, &b);
    snprintf(num, sizeof num, "{\"t\":%.3f,\"event\":", ath_host_now(h) / 1e3);
    luaL_addstring(&b, num);
    json_str(&b, event_names[ev->type]);
    if (h->name) {
        luaL_addstring(&b, ",\"host\":");
        json_str(&b, h->name);
    }
    if (ev->type == ATH_EVENT_STEP_START)
        luaL_addstring(&b, ",\"state\":\"start\"");
    if (ev->type == ATH_EVENT_STEP_END)
        luaL_addstring(&b, ",\"state\":\"end\"");
    if (ev->name) {
        luaL_addstring(&b, ",\"name\":");
        json_str(&b, ev->name);
    }
    if (ev->port) {
        luaL_addstring(&b, ",\"port\":");
        json_str(&b, ev->port);
    }
    if (ev->type == ATH_EVENT_STEP_END || ev->type == ATH_EVENT_RESULT) {
        snprintf(num, sizeof num, ",\"ok\":%s,\"ms\":%.1f",
                 ev->ok ? "true" : "false", ev->ms);
        luaL_addstring(&b, num);
    }
    if (ev->type == ATH_EVENT_RESULT) {
        snprintf(num, sizeof num, ",\"code\":%d", ev->code);
        luaL_addstring(&b, num);
    }
    if (ev->type == ATH_EVENT_WAIT) {
        snprintf(num, sizeof num, ",\"ms\":%.0f,\"total_ms\":%.0f", ev->ms,
                 ev->total_ms);
        luaL_addstring(&b, num);
    }
    if (ev->text) {
        luaL_addstring(&b, ev->type == ATH_EVENT_STEP_END ||
                                   ev->type == ATH_EVENT_RESULT
                               ? ",\"error\":"
                               : ",\"text\":");
        json_text(&b, ev->text, ev->text_len, 1);
    }
    if (ev->json) {
        luaL_addstring(&b, ",\"data\":");
        json_text(&b, ev->json, strlen(ev->json), 0);
    }
    luaL_addchar(&b, '}');
    luaL_pushresult(&b);
}

static void event_print(ath_host_t *h, const ath_event_t *ev)
{
    double t = ath_host_now(h) / 1e3;
    const char *who = h->name ? h->name : "";
    const char *sep = h->name ? " " : "";
    if (h->opts.quiet && ev->type != ATH_EVENT_RESULT)
        return;
    switch (ev->type) {
    case ATH_EVENT_STEP_START:
        fprintf(stderr, "[%7.3f]%s%s %s\n", t, sep, who, ev->name);
        break;
    case ATH_EVENT_STEP_END:
        if (!ev->ok)
            fprintf(stderr, "[%7.3f]%s%s %s failed after %.0f ms\n", t, sep,
                    who, ev->name, ev->ms);
        break;
    case ATH_EVENT_WAIT:
    case ATH_EVENT_LOG:
        fprintf(stderr, "[%7.3f]%s%s   ", t, sep, who);
        print_text(stderr, ev->text, ev->text_len);
        fputc('\n', stderr);
        break;
    case ATH_EVENT_RESULT:
        if (!ev->ok && ev->text) {
            fprintf(stderr, "athost:%s%s ", sep, who);
            print_text(stderr, ev->text, ev->text_len);
            fputc('\n', stderr);
        }
        break;
    default: break;
    }
    fflush(stderr);
}

void ath_host_emit(ath_host_t *h, ath_event_t *ev)
{
    lua_State *L = h->L;
    int top = lua_gettop(L);
    char *red = NULL;
    /* An event built without a length (text_len 0) holds a C string. */
    if (ev->text && ev->text_len == 0)
        ev->text_len = strlen(ev->text);
    if (ev->type == ATH_EVENT_WAIT && h->opts.quiet && !h->on_event)
        return; /* -q: progress lines are not the result */
    if (ev->text && h->nsecrets) {
        size_t rn;
        red = ath_host_redact(h, ev->text, ev->text_len, &rn);
        if (red) {
            ev->text = red;
            ev->text_len = rn;
        }
    }
    if (h->on_event && h->lazy_json) {
        h->on_event(h, ev, h->ud);
    } else if (h->on_event || h->opts.json) {
        event_json(h, ev);
        ev->json = lua_tostring(L, -1);
        if (h->on_event) {
            h->on_event(h, ev, h->ud);
        } else if (ev->type != ATH_EVENT_TRANSCRIPT) {
            fputs(ev->json, stdout);
            fputc('\n', stdout);
            fflush(stdout);
        }
    } else {
        event_print(h, ev);
    }
    lua_settop(L, top);
    free(red);
}

void ath_host_lazy_events(ath_host_t *h, int lazy)
{
    h->lazy_json = lazy != 0;
}

/* Called inside ath_host_emit's callback: the line stays on the stack,
 * which ath_host_emit restores when the callback returns. */
const char *ath_event_json(ath_host_t *h, const ath_event_t *ev)
{
    if (!h->lazy_json)
        return ev->json;
    event_json(h, ev);
    return lua_tostring(h->L, -1);
}

/* ---- progress of long waits -------------------------------------------- */

typedef struct ath_waitnote {
    ath_res_t res;
    uv_timer_t t;
    ath_host_t *h;
    void *owner;
    ath_describe_fn describe;
    char what[200];
    double t0, total;
    int closing;
    struct ath_waitnote *next;
} ath_waitnote_t;

static void note_closed(uv_handle_t *handle)
{
    ath_waitnote_t *n = handle->data;
    ath_host_t *h = n->h;
    free(n);
    ath_host_handles(h, -1);
}

static void note_close(ath_waitnote_t *n)
{
    ath_waitnote_t **pp;
    if (n->closing)
        return;
    n->closing = 1;
    /* athost.waiting's handle (no describe) forgets its host: collected
     * later, perhaps after the host was freed, it must not reach it. */
    if (n->describe == NULL)
        *(ath_host_t **)n->owner = NULL;
    for (pp = &n->h->notes; *pp; pp = &(*pp)->next)
        if (*pp == n) {
            *pp = n->next;
            break;
        }
    ath_host_res_del(n->h, &n->res);
    uv_timer_stop(&n->t);
    uv_close((uv_handle_t *)&n->t, note_closed);
}

static void note_res_close(ath_res_t *r)
{
    note_close((ath_waitnote_t *)r);
}

/* One line: "waiting for CONNACK OK after AT+MCONNECT: 10 s of 30 s". */
static void note_report(uv_timer_t *t)
{
    ath_waitnote_t *n = t->data;
    ath_event_t ev;
    char what[200], line[300];
    double ms = ath_host_now(n->h) - n->t0;
    if (n->describe)
        n->describe(n->owner, what, sizeof what);
    else
        snprintf(what, sizeof what, "%s", n->what);
    if (n->total > 0)
        snprintf(line, sizeof line, "waiting for %s: %.0f s of %.0f s", what,
                 ms / 1e3, n->total / 1e3);
    else
        snprintf(line, sizeof line, "waiting for %s: %.0f s", what, ms / 1e3);
    memset(&ev, 0, sizeof ev);
    ev.type = ATH_EVENT_WAIT;
    ev.name = what;
    ev.text = line;
    ev.ms = ms;
    ev.total_ms = n->total;
    ath_host_emit(n->h, &ev);
}

static ath_waitnote_t *note_find(ath_host_t *h, void *owner)
{
    ath_waitnote_t *n;
    for (n = h->notes; n; n = n->next)
        if (n->owner == owner)
            return n;
    return NULL;
}

int ath_host_wait_begin(ath_host_t *h, void *owner, ath_describe_fn describe,
                        const char *what, double total_ms)
{
    ath_waitnote_t *n;
    if (h->done)
        return 0;
    ath_host_wait_end(h, owner);
    if ((n = calloc(1, sizeof *n)) == NULL)
        return 0; /* progress lines are a nicety: none then */
    n->h = h;
    n->owner = owner;
    n->describe = describe;
    snprintf(n->what, sizeof n->what, "%s", what ? what : "");
    n->total = total_ms;
    uv_update_time(h->loop);
    n->t0 = ath_host_now(h);
    uv_timer_init(h->loop, &n->t);
    n->t.data = n;
    h->handles++;
    n->res.close = note_res_close;
    ath_host_res_add(h, &n->res);
    n->next = h->notes;
    h->notes = n;
    uv_timer_start(&n->t, note_report, ATH_PROGRESS_MS, ATH_PROGRESS_MS);
    return 1;
}

void ath_host_wait_restart(ath_host_t *h, void *owner, double total_ms)
{
    ath_waitnote_t *n = note_find(h, owner);
    if (n == NULL)
        return;
    uv_update_time(h->loop);
    n->t0 = ath_host_now(h);
    n->total = total_ms;
    uv_timer_start(&n->t, note_report, ATH_PROGRESS_MS, ATH_PROGRESS_MS);
}

void ath_host_wait_end(ath_host_t *h, void *owner)
{
    ath_waitnote_t *n = note_find(h, owner);
    if (n)
        note_close(n);
}
