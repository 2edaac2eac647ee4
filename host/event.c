/*
 * event.c: what a host reports: events to the embedder's callback, as
 * JSON lines, or printed for a person on stderr; and the secrets masked in
 * all of them.
 */
#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- secrets ---------------------------------------------------------- */

void ath_host_add_secret(ath_host_t *h, const char *value)
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
    if (n > h->secret_max)
        h->secret_max = n;
}

int ath_secret_name(const char *key, size_t n)
{
    static const char *words[] = {"secret", "password", "passwd", "token",
                                  "psk", NULL};
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

char *ath_host_redact(ath_host_t *h, const char *s, size_t n, size_t *outn)
{
    size_t i, o = 0, k, v, end;
    /* "***" for a value of 1 or 2 bytes grows the text by at most 2 bytes
     * a field, and a field takes at least 9 ("psk":"a") */
    char *out = malloc(n + n / 4 + 4);
    if (out == NULL)
        return NULL;
    for (i = 0; i < n;) {
        int hit = 0;
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
        for (k = 0; k < h->nsecrets; k++) {
            size_t sl = strlen(h->secrets[k]);
            if (sl <= n - i && memcmp(s + i, h->secrets[k], sl) == 0) {
                memcpy(out + o, "***", 3);
                o += 3;
                i += sl;
                hit = 1;
                break;
            }
        }
        if (!hit)
            out[o++] = s[i++];
    }
    out[o] = '\0';
    if (outn)
        *outn = o;
    return out;
}

/* ---- events ----------------------------------------------------------- */

static void json_str(luaL_Buffer *b, const char *s)
{
    luaL_addchar(b, '"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            luaL_addchar(b, '\\');
            luaL_addchar(b, (char)c);
        } else if (c < 0x20 || c == 0x7f) {
            char tmp[8];
            snprintf(tmp, sizeof tmp, "\\u%04x", c);
            luaL_addstring(b, tmp);
        } else {
            luaL_addchar(b, (char)c);
        }
    }
    luaL_addchar(b, '"');
}

static const char *event_names[] = {"",    "step",       "step", "log",
                                    "urc", "transcript", "data", "result"};

/* Builds the event's JSON line unless it has one; leaves it on L's stack. */
static void event_json(ath_host_t *h, ath_event_t *ev)
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
    if (ev->text) {
        luaL_addstring(&b, ev->type == ATH_EVENT_STEP_END ||
                                   ev->type == ATH_EVENT_RESULT
                               ? ",\"error\":"
                               : ",\"text\":");
        json_str(&b, ev->text);
    }
    if (ev->json) {
        luaL_addstring(&b, ",\"data\":");
        luaL_addstring(&b, ev->json);
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
    case ATH_EVENT_LOG:
        fprintf(stderr, "[%7.3f]%s%s   %s\n", t, sep, who, ev->text);
        break;
    case ATH_EVENT_RESULT:
        if (!ev->ok && ev->text)
            fprintf(stderr, "athost:%s%s %s\n", sep, who, ev->text);
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
    if (ev->text && h->nsecrets) {
        red = ath_host_redact(h, ev->text, strlen(ev->text), NULL);
        if (red)
            ev->text = red;
    }
    if (h->on_event || h->opts.json) {
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
