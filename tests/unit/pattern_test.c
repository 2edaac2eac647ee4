// unit: host/pattern.c tests/unit/pattern_lua.c
/*
 * pattern_test.c: host/pattern.c against the real string.find of Lua 5.4.
 *
 * Every case runs ath_pat_find() and string.find(s, p, init + 1) on the
 * same bytes and requires the same answer: no match, or the same start,
 * end and captures, or, where Lua raises a pattern error, -1 with Lua's
 * message (and ath_pat_check() rejecting the pattern with it too). Subject
 * and pattern are copied into heap blocks of exactly their length, so the
 * sanitizers catch any read past either.
 *
 * Build and run:
 *   gcc -std=c11 -Wall -Wextra -Wpedantic -Werror -g \
 *       -fsanitize=address,undefined -Ihost host/pattern.c \
 *       tests/unit/pattern_lua.c tests/unit/pattern_test.c \
 *       $(pkg-config --cflags --libs lua5.4) \
 *       -o /tmp/pattern_test && /tmp/pattern_test
 */
#include "pattern_lua.h"

#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S(lit) lit, sizeof(lit) - 1   /* a literal with its NULs */
#define FUZZ_CASES 60000

enum { PASS = PL_PASS, FAIL = PL_FAIL, SKIP = PL_SKIP };

static lua_State *L;
static int npass, nfail;
static int last_answer;   /* Lua's in the last run_case(): 1, 0 or -1 */

/* Prints b[0, n) as a Lua string literal. */
static void put_bytes(const char *b, size_t n)
{
    size_t i;

    putchar('"');
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)b[i];
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c >= 32 && c < 127)
            putchar(c);
        else
            printf("\\%03u", c);
    }
    putchar('"');
}

static void put_case(const char *tag, const char *s, size_t ls,
                     const char *p, size_t lp, size_t init)
{
    printf("FAIL %s: string.find(", tag);
    put_bytes(s, ls);
    printf(", ");
    put_bytes(p, lp);
    printf(", %zu): ", init + 1);
}

enum { ANY = 2 };   /* a case's want when any agreed answer will do */

static void tally(int res)
{
    if (res == PASS)
        npass++;
    else if (res == FAIL)
        nfail++;
}

/*
 * Runs one case on both sides (string.find is at stack index 1). want is
 * what string.find must answer: 1 a match, 0 none, -1 a pattern error, or
 * ANY. Prints a line for a failure if loud. Returns PASS, FAIL or SKIP.
 */
static int run_case(const char *tag, const char *s, size_t ls,
                    const char *p, size_t lp, size_t init, int want,
                    int loud)
{
    char why[512];
    int res = pl_versus(L, 1, s, ls, p, lp, init, &last_answer, why,
                        sizeof why);

    if (res == SKIP && want != ANY)
        res = FAIL;
    if (res == PASS && want != ANY && last_answer != want) {
        snprintf(why, sizeof why, "both answer %d, expected %d", last_answer,
                 want);
        res = FAIL;
    }
    if (res == FAIL && loud) {
        put_case(tag, s, ls, p, lp, init);
        printf("%s\n", why);
    }
    return res;
}

struct hcase {
    const char *s;
    size_t ls;
    const char *p;
    size_t lp;
    size_t init;
    int want;
};

#define C(s, p, init, want) { S(s), S(p), init, want }

static const struct hcase cases[] = {
    /* modem lines */
    C("+CGATT: 1", "^%+CGATT: (%d)", 0, 1),
    C("+CGATT: x", "^%+CGATT: (%d)", 0, 0),
    C("+MSUB: \"dev/cmd\",5 byte,hello", "^%+MSUB: \"([^\"]*)\",(%d+) byte,",
      0, 1),
    C("+MSUB: \"a\0b\",3 byte,\0\1\2", "^%+MSUB: \"([^\"]*)\",(%d+) byte,",
      0, 1),
    C("+HTTPACTION: 0,200,1234", "^%+HTTPACTION: (%d+),(%d+),(%d+)$", 0, 1),
    C("+HTTPACTION: 0,200,1234\r", "^%+HTTPACTION: (%d+),(%d+),(%d+)$", 0, 0),
    C("+HTTPACTION: 0,200,", "^%+HTTPACTION: (%d+),(%d+),(%d+)$", 0, 0),
    C("+CME ERROR: 10", "^%+CME ERROR: (%d+)$", 0, 1),
    C("+CSQ: 23,99", "^%+CSQ: (%d+),(%d+)", 0, 1),
    C("+CPIN: READY", "^%+CPIN: (%u+)$", 0, 1),
    C("+COPS: 0,0,\"Vodafone DE\",7", "^%+COPS: (%d),(%d),\"([^\"]*)\",(%d)",
      0, 1),
    C("+CIPRXGET: 2,0,5,0", "^%+CIPRXGET: 2,(%d+),(%d+),(%d+)", 0, 1),
    C("+QIRD: 4\0ab\0", "^%+QIRD: (%d+)(.*)$", 0, 1),
    C("> ", "^> ?$", 0, 1),
    C("OK", "^OK$", 0, 1),
    C("OK\r", "^OK$", 0, 0),
    C("NO CARRIER", "^NO CARRIER$", 0, 1),
    C("AT+CGATT?", "^AT", 0, 1),
    C("+CREG: 0,5", "^%+C[GE]?REG: %d,([15])", 0, 1),
    C("+CEREG: 2,1,\"1A2B\",\"01A2B3C4\",7", "\"(%x+)\",\"(%x+)\"", 0, 1),
    /* NUL bytes and empty strings */
    C("a\0b\0c", "\0", 0, 1),
    C("a\0b\0c", "%z", 0, 1),
    C("\0\0a", "%Z+", 0, 1),
    C("a\0b\0c", "b(%c)(.)", 0, 1),
    C("a\0b\0c", "[\0]+", 2, 1),
    C("a\0b\0c", "[^\0]+$", 0, 1),
    C("\0\0", "^\0*$", 0, 1),
    C("", "", 0, 1),
    C("", "^", 0, 1),
    C("", "^$", 0, 1),
    C("", "$", 0, 1),
    C("", "a*", 0, 1),
    C("", "a", 0, 0),
    C("", "()", 0, 1),
    C("abc", "", 0, 1),
    C("abc", "", 3, 1),
    C("abc", "", 4, 0),
    C("abc", "()", 2, 1),
    /* anchors and init offsets */
    C("ba", "^a", 0, 0),
    C("ba", "^a", 1, 1),
    C("aaa", "a$", 0, 1),
    C("a$b", "a$b", 0, 1),
    C("x^y", "x^y", 0, 1),
    C("^x", "^^x", 0, 1),
    C("abcabc", "abc", 1, 1),
    C("abcabc", "b()", 2, 1),
    C("abcabc", "c$", 5, 1),
    C("abcabc", "^c$", 5, 1),
    C("abcabc", "$", 6, 1),
    C("abc", "c", 3, 0),
    /* dot, escapes, plain text */
    C("a.b", "%.", 0, 1),
    C("100%", "%d+%%", 0, 1),
    C("f(x)", "%((.)%)", 0, 1),
    C("a[1]", "%[(%d)%]", 0, 1),
    C("a-b", "%-", 0, 1),
    C("a)b", "a)", 0, 1),
    C("a]b", "]b", 0, 1),
    C("a\nb", ".", 1, 1),
    /* sets */
    C("xyz-abc", "[a-c]+", 0, 1),
    C("123abc", "[^%d]+", 0, 1),
    C("  _id9 x", "[%a_][%w_]*", 0, 1),
    C("a]b", "[]]", 0, 1),
    C("]]a", "[^]]", 0, 1),
    C("-a", "[a-]+", 0, 1),
    C("-a", "[-a]+", 0, 1),
    C("a]", "[%]]", 0, 1),
    C("a^", "[b^]", 0, 1),
    C("\x80\xff", "[\x80-\xff]+", 0, 1),
    C("z-a", "[z-a]", 0, 0),     /* a reversed range is empty */
    C("b%", "[%%b]+", 0, 1),
    C("x", "[a-%]]", 0, 0),
    C("]", "[a-%]]", 0, 1),
    /* quantifiers */
    C("aaab", "a*", 0, 1),
    C("aaab", "a+b", 0, 1),
    C("aaab", "a-b", 0, 1),
    C("aaab", "a-", 0, 1),
    C("b", "a?b", 0, 1),
    C("ab", "a?b", 0, 1),
    C("<a><b>", "<(.-)>", 0, 1),
    C("<a><b>", "<(.*)>", 0, 1),
    C("xy", ".-$", 0, 1),
    C("key = value", "^(%w+)%s*=%s*(%w+)$", 0, 1),
    C("+++", "%++", 0, 1),
    C("a*", "a**", 0, 1),
    /* captures */
    C("hello world", "(h(el)(lo)) ()(w)", 0, 1),
    C("hello", "()ll()", 0, 1),
    C("hello", "()", 5, 1),
    C("abab", "(ab)%1", 0, 1),
    C("say \"hi\" 'x'", "([\"'])(.-)%1", 0, 1),
    C("aa", "()a%1", 0, 0),
    C("abcabd", "(ab)(.)%1%2", 0, 0),
    C("xx", "(x*)%1", 0, 1),
    /* %b and %f */
    C("f(a(b)c)d", "%b()", 0, 1),
    C("f(a(b)c", "%b()", 0, 1),
    C("((", "%b()", 0, 0),
    C("xaxbx", "%bxx", 0, 1),
    C("if [[x]] then", "%b[]", 0, 1),
    C("THE (quick) fox", "%f[%a]%a+", 4, 1),
    C("THE (quick) fox", "%f[%a]%a+%f[%A]", 0, 1),
    C("abc", "%f[^%w]", 0, 1),
    C("abc", "%f[%w]", 0, 1),
    C("a\0b", "%f[\0]", 0, 1),
    C("ab", "%f[%z]", 0, 1),
    C("word", "%f[%l]%l+$", 0, 1),
    C("THE END", "%f[%u]E", 0, 1),
    /* errors Lua raises once matching reaches them */
    C("a", "%", 0, -1),
    C("a", "a%", 0, -1),
    C("a", "[a", 0, -1),
    C("a", "[", 0, -1),
    C("a", "[^", 0, -1),
    C("a", "[%", 0, -1),
    C("a", "[]", 0, -1),
    C("a", "a(", 0, -1),
    C("a", "(", 0, -1),
    C("a", "(()", 0, -1),
    C("a)", "a)", 0, 1),       /* plain text for string.find */
    C("a", "a)", 0, 0),
    C("a", "a.)", 0, 0),
    C("ab", "a.)", 0, -1),
    C("a", "%b", 0, -1),
    C("a", "%ba", 0, -1),
    C("a", "%f", 0, -1),
    C("a", "%fa", 0, -1),
    C("a", "%f[a", 0, -1),
    C("a", "%1", 0, -1),
    C("a", "%0", 0, -1),
    C("a", "(a%1)", 0, -1),
    C("a", "(a)%2", 0, -1),
    C("abc", "x(", 0, 0),      /* never reached: no error, as in Lua */
    C("abc", "x%", 0, 0),
    C("abc", "c(", 0, -1),
    C("a", "(a", 0, -1),
    C("a", "^(a", 0, -1),
    C("a", "(a)(b", 0, 0),
    C("a", "[^\0]*(", 0, -1),
};

/* The hand-written table. */
static void test_cases(void)
{
    size_t i;
    char tag[32];

    for (i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const struct hcase *c = &cases[i];
        snprintf(tag, sizeof tag, "case %zu", i + 1);
        tally(run_case(tag, c->s, c->ls, c->p, c->lp, c->init, c->want, 1));
    }
}

/* Every class, its complement, inside and outside sets, on every byte:
 * one case per pattern. */
static void test_classes(void)
{
    static const char letters[] = "acdglpsuwxzACDGLPSUWXZ";
    char pat[3][8], tag[32], sub[1];
    size_t i, k;
    int j;

    for (i = 0; letters[i] != '\0'; i++) {
        snprintf(pat[0], sizeof pat[0], "%%%c", letters[i]);
        snprintf(pat[1], sizeof pat[1], "[%%%c]", letters[i]);
        snprintf(pat[2], sizeof pat[2], "[^%%%c]", letters[i]);
        for (k = 0; k < 3; k++) {
            int res = PASS;
            snprintf(tag, sizeof tag, "class %s", pat[k]);
            for (j = 0; j < 256 && res != FAIL; j++) {
                sub[0] = (char)j;
                res = run_case(tag, sub, 1, pat[k], strlen(pat[k]), 0, ANY,
                               1);
            }
            tally(res);
        }
    }
}

/* "a?" n times on n a's needs n + 1 nested match() calls: Lua allows 200. */
static void test_depth(void)
{
    char s[300], p[600], tag[32];
    int n, i;

    for (n = 195; n <= 205; n++) {
        for (i = 0; i < n; i++) {
            s[i] = 'a';
            p[2 * i] = 'a';
            p[2 * i + 1] = '?';
        }
        snprintf(tag, sizeof tag, "depth %d", n);
        tally(run_case(tag, s, (size_t)n, p, 2 * (size_t)n, 0,
                       n < 200 ? 1 : -1, 1));
    }
    for (i = 0; i < 250; i++) {
        p[2 * i] = 'a';
        p[2 * i + 1] = '-';
    }
    tally(run_case("depth a-", "a", 1, p, 500, 0, -1, 1));
}

struct ccase {
    const char *p;
    size_t lp;
    const char *msg;   /* NULL: valid */
};

#define V(p, msg) { S(p), msg }

static const struct ccase checks[] = {
    V("", NULL),
    V("^", NULL),
    V("^^", NULL),
    V("$", NULL),
    V("a$b$", NULL),
    V("^%+CGATT: (%d)", NULL),
    V("^%+MSUB: \"([^\"]*)\",(%d+) byte,", NULL),
    V("(a)%1", NULL),
    V("()%1", NULL),
    V("(a(b)%2)%1", NULL),
    V("[]]", NULL),
    V("[^]]", NULL),
    V("[%]]", NULL),
    V("%b()", NULL),
    V("%f[%w]", NULL),
    V("%\0", NULL),
    V("()()()()()()()()()()()()()()()()", NULL),
    V("%", "malformed pattern (ends with '%')"),
    V("a%", "malformed pattern (ends with '%')"),
    V("[%", "malformed pattern (missing ']')"),
    V("[a", "malformed pattern (missing ']')"),
    V("[]", "malformed pattern (missing ']')"),
    V("[^]", "malformed pattern (missing ']')"),
    V("%f[", "malformed pattern (missing ']')"),
    V("%b", "malformed pattern (missing arguments to '%b')"),
    V("%bx", "malformed pattern (missing arguments to '%b')"),
    V("%f", "missing '[' after '%f' in pattern"),
    V("%fx", "missing '[' after '%f' in pattern"),
    V("(", "unfinished capture"),
    V("x(", "unfinished capture"),
    V("(()", "unfinished capture"),
    V(")", "invalid pattern capture"),
    V("a)", "invalid pattern capture"),
    V("())", "invalid pattern capture"),
    V("%1", "invalid capture index %1"),
    V("%0", "invalid capture index %0"),
    V("(%1)", "invalid capture index %1"),
    V("(a)%2", "invalid capture index %2"),
    V("(a(b%2))", "invalid capture index %2"),
    V("()()()()()()()()()()()()()()()()()", "too many captures"),
    V("[a%", "malformed pattern (missing ']')"),
    V("%1(", "invalid capture index %1"),
};

/* ath_pat_check() alone, where the answer is not Lua's to give. */
static void test_checks(void)
{
    size_t i;

    for (i = 0; i < sizeof checks / sizeof checks[0]; i++) {
        const struct ccase *c = &checks[i];
        char *p = pl_dup_exact(c->p, c->lp);
        const char *err = NULL;
        int rc = ath_pat_check(p, c->lp, &err);
        if (c->msg == NULL ? rc == 0
                           : rc == -1 && strcmp(err, c->msg) == 0) {
            npass++;
        } else {
            printf("FAIL check %zu: ath_pat_check(", i + 1);
            put_bytes(c->p, c->lp);
            printf(") = %d (%s), expected %s\n", rc, rc ? err : "valid",
                   c->msg ? c->msg : "valid");
            nfail++;
        }
        free(p);
    }
}

/* Lua allows 32 captures, we 16: the one difference kept on purpose. */
static void test_capture_limit(void)
{
    static const char p17[] = "()()()()()()()()()()()()()()()()()";
    const char *err = NULL;
    ath_match_t m;
    int rc = ath_pat_find("x", 1, p17, sizeof p17 - 1, 0, &m, &err);
    int base = lua_gettop(L), status, nres;

    lua_pushvalue(L, 1);
    lua_pushliteral(L, "x");
    lua_pushstring(L, p17);
    status = lua_pcall(L, 2, LUA_MULTRET, 0);
    nres = lua_gettop(L) - base;
    if (rc == -1 && strcmp(err, "too many captures") == 0
        && status == LUA_OK && nres == 2 + 17) {
        npass++;
    } else {
        printf("FAIL capture limit: rc %d, Lua status %d with %d results\n",
               rc, status, nres);
        nfail++;
    }
    lua_settop(L, base);
}

/* NULL m and err are allowed; so is a NULL subject of length 0. */
static void test_api(void)
{
    ath_match_t m;
    const char *err = NULL;
    int ok = ath_pat_find("abc", 3, "(b)", 3, 0, NULL, NULL) == 1
             && ath_pat_find("abc", 3, "b", 1, 0, NULL, NULL) == 1
             && ath_pat_find("abc", 3, "(b", 2, 0, NULL, NULL) == -1
             && ath_pat_check("(b", 2, NULL) == -1
             && ath_pat_find(NULL, 0, "^$", 2, 0, &m, &err) == 1
             && m.start == 0 && m.end == 0 && m.ncap == 0;

    if (ok) {
        npass++;
    } else {
        printf("FAIL api: NULL arguments\n");
        nfail++;
    }
}

struct tok {
    const char *b;
    size_t n;
};

#define T(lit) { S(lit) }

static const struct tok ptoks[] = {
    T("a"), T("b"), T("c"), T("1"), T("."), T("%a"), T("%d"), T("%s"),
    T("%w"), T("%p"), T("%x"), T("%l"), T("%u"), T("%c"), T("%g"), T("%A"),
    T("%D"), T("%S"), T("%W"), T("%"), T("["), T("]"), T("^"), T("$"),
    T("-"), T("*"), T("+"), T("?"), T("("), T(")"), T("()"), T("%1"),
    T("%2"), T("%0"), T("%b()"), T("%bab"), T("%baa"), T("%b"), T("%f"),
    T("%f[%w]"), T("%f[a]"), T("%f[^a]"), T("[a-c]"), T("[^a]"), T("[%d]"),
    T("[]]"), T("[^]]"), T("[a-]"), T("[%a_]"), T("\xff"), T("%("), T("%%"),
    T("%."), T(","), T(":"), T("\""), T(" "), T("(.-)"), T("(%d+)"),
    T("a*"), T("a+"), T("a-"), T("a?"), T(".*"), T(".-"), T("[a"), T("%z"),
    T("\0"), T("[\0-a]"), T("%\0"),
};

static const char sbytes[] = "abc12()[]% \0\xff\x80" "AZ,\"-+\n\r:";

static unsigned long long rng_state = 0x9e3779b97f4a7c15ULL;

/* xorshift64: the same sequence on every platform. */
static unsigned rnd(unsigned n)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (unsigned)(rng_state % n);
}

/* Random short patterns on random short subjects: one test, passed when
 * every case agrees with string.find; on failure the first counterexample
 * is printed. At most 8 tokens keep patterns under the 16-capture limit. */
static void test_fuzz(void)
{
    char p[128], s[16], tag[32];
    int i, skipped = 0, failed = 0, answers[3] = { 0, 0, 0 };

    for (i = 0; i < FUZZ_CASES; i++) {
        size_t lp = 0, ls = rnd(13), init = 0, k;
        unsigned ntok = rnd(9);
        int res;

        if (rnd(6) == 0)
            p[lp++] = '^';
        while (ntok-- > 0) {
            const struct tok *t = &ptoks[rnd(sizeof ptoks / sizeof ptoks[0])];
            memcpy(p + lp, t->b, t->n);
            lp += t->n;
        }
        for (k = 0; k < ls; k++)
            s[k] = sbytes[rnd(sizeof sbytes - 1)];
        if (rnd(3) == 0)
            init = rnd((unsigned)ls + 2);
        snprintf(tag, sizeof tag, "fuzz %d", i + 1);
        res = run_case(tag, s, ls, p, lp, init, ANY, failed == 0);
        if (res == SKIP)
            skipped++;
        else
            answers[last_answer + 1]++;
        if (res == FAIL)
            failed++;
    }
    printf("fuzz: %d cases (%d matches, %d misses, %d errors), %d failed, "
           "%d skipped\n", FUZZ_CASES, answers[2], answers[1], answers[0],
           failed, skipped);
    tally(failed > 0 ? FAIL : PASS);
}

int main(void)
{
    L = luaL_newstate();
    if (L == NULL)
        return 2;
    luaL_openlibs(L);
    lua_getglobal(L, "string");
    lua_getfield(L, -1, "find");
    lua_remove(L, -2);   /* string.find stays at index 1 */
    test_cases();
    test_classes();
    test_depth();
    test_checks();
    test_capture_limit();
    test_api();
    test_fuzz();
    lua_close(L);
    printf("%d passed, %d failed\n", npass, nfail);
    return nfail > 0;
}
