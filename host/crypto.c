/*
 * athost.hmac / digest / random / hex / unhex / base64 / unbase64 / cipher /
 * x509.
 *
 * Misuse (wrong types, unknown algorithm) raises. Input that comes from the
 * world (hex, base64, PEM text) fails with nil, "EINVAL: <why>", "EINVAL".
 * OpenSSL's error queue is cleared after every failure and never printed.
 */
#include "crypto.h"

#include <limits.h>
#include <stdarg.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define ATH_CRYPTO_RANDOM_MAX (1024 * 1024)
#define ATH_CRYPTO_SCRATCH "athost.crypto.scratch"

/* Subject and issuer as "CN=IOT, OU=CN, O=Huawei": RFC 2253 order and
 * escaping, with ", " between the parts for readability. */
#define ATH_CRYPTO_NAME_FLAGS                                                  \
    ((XN_FLAG_RFC2253 & ~XN_FLAG_SEP_MASK) | XN_FLAG_SEP_CPLUS_SPC)

static const char pem_begin[] = "-----BEGIN CERTIFICATE-----";
static const char pem_end[] = "-----END CERTIFICATE-----";

static const char b64_alphabet[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

static const char *const out_forms[] = {"hex", "raw", NULL};
static const char *const random_forms[] = {"raw", "hex", NULL};

/* Lower-case names scripts use, and the names OpenSSL fetches by. */
static const struct {
    const char *name;
    const char *ossl;
} crypto_algs[] = {
    {"md5", "MD5"},
    {"sha1", "SHA1"},
    {"sha256", "SHA256"},
    {"sha512", "SHA512"},
};

/* Owns the OpenSSL objects of one x509 call, so that a Lua error raised
 * while the result table is built cannot leak them. */
typedef struct {
    X509 *cert;
    BIO *bio;
} ath_crypto_scratch_t;

static int lower(int c)
{
    return (c >= 'A' && c <= 'Z') ? c - 'A' + 'a' : c;
}

static int ci_equal(const char *a, const char *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (lower((unsigned char)a[i]) != lower((unsigned char)b[i]))
            return 0;
    return 1;
}

/*
 * Returns the OpenSSL digest name for the algorithm named by argument `arg`,
 * compared case-insensitively; with `strip_hmac`, a leading "hmac" is
 * ignored ("HmacSHA1"). Raises an argument error for any other name.
 */
static const char *check_alg(lua_State *L, int arg, int strip_hmac)
{
    size_t len;
    const char *given = luaL_checklstring(L, arg, &len);
    const char *name = given;

    if (strip_hmac && len >= 4 && ci_equal(name, "hmac", 4)) {
        name += 4;
        len -= 4;
    }
    for (size_t i = 0; i < sizeof crypto_algs / sizeof crypto_algs[0]; i++)
        if (strlen(crypto_algs[i].name) == len &&
            ci_equal(name, crypto_algs[i].name, len))
            return crypto_algs[i].ossl;
    luaL_argerror(L, arg,
                  lua_pushfstring(
                      L,
                      "unknown algorithm '%s'; use md5, sha1, sha256 or sha512",
                      given));
    return NULL;
}

static void push_hex(lua_State *L, const unsigned char *s, size_t len)
{
    static const char digits[] = "0123456789abcdef";
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, 2 * len);

    for (size_t i = 0; i < len; i++) {
        out[2 * i] = digits[s[i] >> 4];
        out[2 * i + 1] = digits[s[i] & 0x0f];
    }
    luaL_pushresultsize(&b, 2 * len);
}

static void push_bytes(lua_State *L, const unsigned char *s, size_t len,
                       int raw)
{
    if (raw)
        lua_pushlstring(L, (const char *)s, len);
    else
        push_hex(L, s, len);
}

/* Pushes nil, "<code>: <formatted message>", code; returns 3. */
static int push_fail(lua_State *L, const char *code, const char *fmt, ...)
{
    va_list ap;

    lua_pushnil(L);
    va_start(ap, fmt);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_pushfstring(L, "%s: %s", code, lua_tostring(L, -1));
    lua_remove(L, -2);
    lua_pushstring(L, code);
    return 3;
}

/*
 * Computes HMAC-<md>(key, msg) into out (EVP_MAX_MD_SIZE bytes).
 * Returns 1 on success, 0 when OpenSSL fails; frees everything either way.
 */
static int hmac_compute(const char *md, const char *key, size_t klen,
                        const char *msg, size_t mlen, unsigned char *out,
                        size_t *outlen)
{
    EVP_MAC *mac = EVP_MAC_fetch(NULL, "HMAC", NULL);
    EVP_MAC_CTX *ctx = mac != NULL ? EVP_MAC_CTX_new(mac) : NULL;
    OSSL_PARAM params[2];
    int ok;

    params[0] =
        OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, (char *)md, 0);
    params[1] = OSSL_PARAM_construct_end();
    ok = ctx != NULL &&
         EVP_MAC_init(ctx, (const unsigned char *)key, klen, params) &&
         EVP_MAC_update(ctx, (const unsigned char *)msg, mlen) &&
         EVP_MAC_final(ctx, out, outlen, EVP_MAX_MD_SIZE);
    EVP_MAC_CTX_free(ctx);
    EVP_MAC_free(mac);
    return ok;
}

/*
 * athost.hmac(alg, key, msg [, "hex" | "raw"]) -> lowercase hex or raw MAC.
 * Key and message are byte strings and may hold NUL.
 */
static int l_crypto_hmac(lua_State *L)
{
    const char *md = check_alg(L, 1, 1);
    size_t klen, mlen, outlen = 0;
    const char *key = luaL_checklstring(L, 2, &klen);
    const char *msg = luaL_checklstring(L, 3, &mlen);
    int raw = luaL_checkoption(L, 4, "hex", out_forms);
    unsigned char out[EVP_MAX_MD_SIZE];

    if (!hmac_compute(md, key, klen, msg, mlen, out, &outlen)) {
        ERR_clear_error();
        return luaL_error(L, "hmac: OpenSSL cannot compute HMAC-%s", md);
    }
    push_bytes(L, out, outlen, raw);
    return 1;
}

/* athost.digest(alg, msg [, "hex" | "raw"]) -> lowercase hex or raw hash. */
static int l_crypto_digest(lua_State *L)
{
    const char *name = check_alg(L, 1, 0);
    size_t mlen;
    const char *msg = luaL_checklstring(L, 2, &mlen);
    int raw = luaL_checkoption(L, 3, "hex", out_forms);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int outlen = 0;
    EVP_MD *md = EVP_MD_fetch(NULL, name, NULL);
    int ok = md != NULL && EVP_Digest(msg, mlen, out, &outlen, md, NULL);

    EVP_MD_free(md);
    if (!ok) {
        ERR_clear_error();
        return luaL_error(L, "digest: OpenSSL cannot compute %s", name);
    }
    push_bytes(L, out, outlen, raw);
    return 1;
}

/*
 * athost.random(n [, "raw" | "hex"]) -> n bytes from RAND_bytes, or 2n hex
 * digits. n must be an integer from 0 to 1 MiB.
 */
static int l_crypto_random(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    int hex;
    luaL_Buffer b;
    unsigned char *p;

    luaL_argcheck(L, n >= 0 && n <= ATH_CRYPTO_RANDOM_MAX, 1,
                  "must be from 0 to 1048576");
    hex = luaL_checkoption(L, 2, "raw", random_forms);
    p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
    if (n > 0 && RAND_bytes(p, (int)n) != 1) {
        ERR_clear_error();
        return luaL_error(L, "random: RAND_bytes failed");
    }
    luaL_pushresultsize(&b, (size_t)n);
    if (hex) {
        size_t len;
        const char *s = lua_tolstring(L, -1, &len);
        push_hex(L, (const unsigned char *)s, len);
    }
    return 1;
}

/* athost.hex(s) -> lowercase hex of the bytes of s. */
static int l_crypto_hex(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);

    push_hex(L, (const unsigned char *)s, len);
    return 1;
}

static int hex_value(int c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    c = lower(c);
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    return -1;
}

/*
 * athost.unhex(s) -> bytes. Either case is accepted; odd length or a non-hex
 * character fails with nil, "EINVAL: not hex: <why>", "EINVAL".
 */
static int l_crypto_unhex(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    char *out;

    if (len % 2 != 0)
        return push_fail(L, "EINVAL", "not hex: odd length %I",
                         (lua_Integer)len);
    for (size_t i = 0; i < len; i++)
        if (hex_value((unsigned char)s[i]) < 0)
            return push_fail(L, "EINVAL", "not hex: bad character at %I",
                             (lua_Integer)i + 1);
    out = luaL_buffinitsize(L, &b, len / 2);
    for (size_t i = 0; i < len; i += 2)
        out[i / 2] = (char)(hex_value((unsigned char)s[i]) << 4 |
                            hex_value((unsigned char)s[i + 1]));
    luaL_pushresultsize(&b, len / 2);
    return 1;
}

/* athost.base64(s) -> standard alphabet, '=' padding, no line breaks. */
static int l_crypto_base64(lua_State *L)
{
    size_t len, i, j = 0;
    const unsigned char *s =
        (const unsigned char *)luaL_checklstring(L, 1, &len);
    size_t olen = (len / 3 + (len % 3 != 0)) * 4;
    luaL_Buffer b;
    char *out = luaL_buffinitsize(L, &b, olen);

    for (i = 0; i + 2 < len; i += 3) {
        unsigned long v = (unsigned long)s[i] << 16 | s[i + 1] << 8 | s[i + 2];
        out[j++] = b64_alphabet[v >> 18];
        out[j++] = b64_alphabet[(v >> 12) & 0x3f];
        out[j++] = b64_alphabet[(v >> 6) & 0x3f];
        out[j++] = b64_alphabet[v & 0x3f];
    }
    if (i < len) {
        unsigned long v = (unsigned long)s[i] << 16 |
                          (i + 1 < len ? (unsigned long)s[i + 1] << 8 : 0);
        out[j++] = b64_alphabet[v >> 18];
        out[j++] = b64_alphabet[(v >> 12) & 0x3f];
        out[j++] = i + 1 < len ? b64_alphabet[(v >> 6) & 0x3f] : '=';
        out[j++] = '=';
    }
    luaL_pushresultsize(&b, olen);
    return 1;
}

static int b64_value(int c)
{
    const char *p = c != '\0' ? strchr(b64_alphabet, c) : NULL;
    return p != NULL ? (int)(p - b64_alphabet) : -1;
}

static int is_space(int c)
{
    return c == ' ' || c == '\t' || c == '\r' || c == '\n' || c == '\v' ||
           c == '\f';
}

/*
 * athost.unbase64(s) -> bytes. White space anywhere is skipped and padding
 * may be missing, but padding that is present must complete the last group.
 * Anything else fails with nil, "EINVAL: not base64: <why>", "EINVAL".
 */
static int l_crypto_unbase64(lua_State *L)
{
    size_t len, digits = 0, pad = 0, j = 0;
    const char *s = luaL_checklstring(L, 1, &len);
    unsigned long acc = 0;
    int bits = 0;
    luaL_Buffer b;
    char *out;

    for (size_t i = 0; i < len; i++) {
        int c = (unsigned char)s[i];
        if (is_space(c))
            continue;
        if (c == '=')
            pad++;
        else if (b64_value(c) < 0 || pad > 0)
            return push_fail(L, "EINVAL", "not base64: bad character at %I",
                             (lua_Integer)i + 1);
        else
            digits++;
    }
    if (digits % 4 == 1 || pad > 2 || (pad > 0 && (digits + pad) % 4 != 0))
        return push_fail(L, "EINVAL", "not base64: bad length or padding");
    out = luaL_buffinitsize(L, &b, digits / 4 * 3 + 2);
    for (size_t i = 0; i < len; i++) {
        int v = b64_value((unsigned char)s[i]);
        if (v < 0)
            continue;
        acc = (acc << 6 | (unsigned long)v) & 0xffffff;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[j++] = (char)((acc >> bits) & 0xff);
        }
    }
    luaL_pushresultsize(&b, j);
    return 1;
}

/* memmem: Lua strings may hold NUL, so strstr will not do. */
static const char *find_bytes(const char *hay, size_t len, const char *needle)
{
    size_t n = strlen(needle);

    for (size_t i = 0; n <= len && i <= len - n; i++)
        if (hay[i] == needle[0] && memcmp(hay + i, needle, n) == 0)
            return hay + i;
    return NULL;
}

/*
 * Finds the first BEGIN..END CERTIFICATE block in s[0..len). Returns its
 * start and sets *blen to its length through the END marker; returns NULL
 * and sets *why when there is no complete block.
 */
static const char *pem_find(const char *s, size_t len, size_t *blen,
                            const char **why)
{
    const char *begin = find_bytes(s, len, pem_begin);
    const char *end;

    if (begin == NULL) {
        *why = find_bytes(s, len, "-----BEGIN ") != NULL
                   ? "PEM block is not a CERTIFICATE"
                   : "no PEM certificate block";
        return NULL;
    }
    end = find_bytes(begin, len - (size_t)(begin - s), pem_end);
    if (end == NULL) {
        *why = "truncated PEM, no END CERTIFICATE line";
        return NULL;
    }
    *blen = (size_t)(end - begin) + sizeof pem_end - 1;
    return begin;
}

static const char *const cipher_ops[] = {"encrypt", "decrypt", NULL};

/* The block ciphers scripts may name, all CBC: a cloud's provisioning reply
 * (Tencent's dynamic registration) is AES-CBC with a padding of its own. */
static const struct {
    const char *name;
    const char *ossl;
    size_t key;
} cipher_algs[] = {
    {"aes-128-cbc", "AES-128-CBC", 16},
    {"aes-192-cbc", "AES-192-CBC", 24},
    {"aes-256-cbc", "AES-256-CBC", 32},
};

/*
 * athost.cipher(name, "encrypt" | "decrypt", key, iv, data) -> bytes.
 * No padding is added or removed: data must be whole 16-byte blocks and
 * the caller pads and unpads as its protocol says. A wrong name, key or IV
 * length raises (misuse); data that is not whole blocks fails with nil,
 * "EINVAL: ...", "EINVAL" (it comes from the world).
 */
static int l_crypto_cipher(lua_State *L)
{
    size_t nlen, klen, ivlen, dlen;
    const char *name = luaL_checklstring(L, 1, &nlen);
    int decrypt = luaL_checkoption(L, 2, NULL, cipher_ops);
    const char *key = luaL_checklstring(L, 3, &klen);
    const char *iv = luaL_checklstring(L, 4, &ivlen);
    const char *data = luaL_checklstring(L, 5, &dlen);
    const char *ossl = NULL;
    size_t want_key = 0;
    luaL_Buffer b;
    unsigned char *out;
    EVP_CIPHER *cipher;
    EVP_CIPHER_CTX *ctx;
    int n = 0, fin = 0, ok;

    for (size_t i = 0; i < sizeof cipher_algs / sizeof cipher_algs[0]; i++)
        if (strlen(cipher_algs[i].name) == nlen &&
            ci_equal(name, cipher_algs[i].name, nlen)) {
            ossl = cipher_algs[i].ossl;
            want_key = cipher_algs[i].key;
        }
    if (ossl == NULL)
        return luaL_argerror(L, 1,
                             lua_pushfstring(L,
                                             "unknown cipher '%s'; use "
                                             "aes-128-cbc, aes-192-cbc or "
                                             "aes-256-cbc",
                                             name));
    if (klen != want_key)
        return luaL_argerror(
            L, 3,
            lua_pushfstring(L, "%s needs a %d-byte key, not %d", ossl,
                            (int)want_key, (int)klen));
    luaL_argcheck(L, ivlen == 16, 4, "the IV must be 16 bytes");
    luaL_argcheck(L, dlen <= INT_MAX - 16, 5, "too long");
    if (dlen % 16 != 0)
        return push_fail(L, "EINVAL",
                         "%s: %d bytes are not whole 16-byte blocks", ossl,
                         (int)dlen);
    /* The buffer first: nothing may raise while OpenSSL objects are held. */
    out = (unsigned char *)luaL_buffinitsize(L, &b, dlen + 16);
    cipher = EVP_CIPHER_fetch(NULL, ossl, NULL);
    ctx = cipher != NULL ? EVP_CIPHER_CTX_new() : NULL;
    ok = ctx != NULL &&
         EVP_CipherInit_ex2(ctx, cipher, (const unsigned char *)key,
                            (const unsigned char *)iv, !decrypt, NULL) &&
         EVP_CIPHER_CTX_set_padding(ctx, 0) &&
         EVP_CipherUpdate(ctx, out, &n, (const unsigned char *)data,
                          (int)dlen) &&
         EVP_CipherFinal_ex(ctx, out + n, &fin);
    EVP_CIPHER_CTX_free(ctx);
    EVP_CIPHER_free(cipher);
    if (!ok) {
        ERR_clear_error();
        return luaL_error(L, "cipher: OpenSSL cannot run %s", ossl);
    }
    luaL_pushresultsize(&b, (size_t)n + (size_t)fin);
    return 1;
}

/* Refuses to prompt for a pass phrase; a certificate never needs one. */
static int pem_no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static X509 *pem_parse(const char *block, size_t blen)
{
    BIO *bio = blen <= INT_MAX ? BIO_new_mem_buf(block, (int)blen) : NULL;
    X509 *cert = bio != NULL
                     ? PEM_read_bio_X509(bio, NULL, pem_no_password, NULL)
                     : NULL;

    BIO_free(bio);
    return cert;
}

/* Number of BEGIN..END CERTIFICATE blocks in s that parse. */
static lua_Integer pem_count(const char *s, size_t len)
{
    lua_Integer count = 0;
    const char *block, *why;
    size_t blen;

    while ((block = pem_find(s, len, &blen, &why)) != NULL) {
        X509 *cert = pem_parse(block, blen);
        count += cert != NULL;
        X509_free(cert);
        len -= (size_t)(block + blen - s);
        s = block + blen;
    }
    ERR_clear_error();
    return count;
}

static int l_crypto_scratch_close(lua_State *L)
{
    ath_crypto_scratch_t *sc = luaL_checkudata(L, 1, ATH_CRYPTO_SCRATCH);

    X509_free(sc->cert);
    sc->cert = NULL;
    BIO_free(sc->bio);
    sc->bio = NULL;
    return 0;
}

static int l_crypto_scratch_tostring(lua_State *L)
{
    ath_crypto_scratch_t *sc = luaL_checkudata(L, 1, ATH_CRYPTO_SCRATCH);

    lua_pushfstring(L, "athost.crypto.scratch (%s)",
                    sc->cert != NULL || sc->bio != NULL ? "open" : "closed");
    return 1;
}

/* Pushes a to-be-closed scratch box; it is freed when the caller returns
 * or raises. */
static ath_crypto_scratch_t *scratch_push(lua_State *L)
{
    ath_crypto_scratch_t *sc = lua_newuserdatauv(L, sizeof *sc, 0);

    sc->cert = NULL;
    sc->bio = NULL;
    luaL_setmetatable(L, ATH_CRYPTO_SCRATCH);
    lua_toclose(L, -1);
    return sc;
}

/* Sets field `key` of the table on top to the one-line form of `name`. */
static int set_name(lua_State *L, ath_crypto_scratch_t *sc,
                    const X509_NAME *name, const char *key)
{
    char *text;
    long n;

    (void)BIO_reset(sc->bio);
    if (X509_NAME_print_ex(sc->bio, name, 0, ATH_CRYPTO_NAME_FLAGS) < 0)
        return 0;
    n = BIO_get_mem_data(sc->bio, &text);
    lua_pushlstring(L, n > 0 ? text : "", n > 0 ? (size_t)n : 0);
    lua_setfield(L, -2, key);
    return 1;
}

/* Sets field `key` to t as "YYYY-MM-DDTHH:MM:SSZ"; 0 if t is unreadable. */
static int set_time(lua_State *L, const ASN1_TIME *t, const char *key)
{
    struct tm tm;
    char buf[32];

    if (!ASN1_TIME_to_tm(t, &tm) ||
        strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm) == 0)
        return 0;
    lua_pushstring(L, buf);
    lua_setfield(L, -2, key);
    return 1;
}

/* Sign of (t - now): -1 before now, 0 now, 1 after; 2 if unreadable. */
static int time_vs_now(const ASN1_TIME *t)
{
    int days, secs;

    if (!ASN1_TIME_diff(&days, &secs, NULL, t))
        return 2;
    return (days > 0 || secs > 0) - (days < 0 || secs < 0);
}

static void set_bool(lua_State *L, int v, const char *key)
{
    lua_pushboolean(L, v);
    lua_setfield(L, -2, key);
}

/* Sets serial (hex, "-" in front if negative) and fingerprint (SHA-256). */
static int set_ids(lua_State *L, X509 *cert)
{
    const ASN1_INTEGER *serial = X509_get0_serialNumber(cert);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;

    if (!X509_digest(cert, EVP_sha256(), md, &mdlen))
        return 0;
    if (ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER)
        lua_pushliteral(L, "-");
    else
        lua_pushliteral(L, "");
    push_hex(L, ASN1_STRING_get0_data(serial),
             (size_t)ASN1_STRING_length(serial));
    lua_concat(L, 2);
    lua_setfield(L, -2, "serial");
    push_hex(L, md, mdlen);
    lua_setfield(L, -2, "fingerprint");
    return 1;
}

static int is_ca(X509 *cert)
{
    BASIC_CONSTRAINTS *bc =
        X509_get_ext_d2i(cert, NID_basic_constraints, NULL, NULL);
    int ca = bc != NULL && bc->ca;

    BASIC_CONSTRAINTS_free(bc);
    return ca;
}

static int is_self_signed(X509 *cert)
{
    EVP_PKEY *key = X509_get0_pubkey(cert);

    return X509_NAME_cmp(X509_get_issuer_name(cert),
                         X509_get_subject_name(cert)) == 0 &&
           key != NULL && X509_verify(cert, key) == 1;
}

static int x509_fail(lua_State *L, const char *why)
{
    ERR_clear_error();
    return push_fail(L, "EINVAL", "not an X.509 certificate: %s", why);
}

/*
 * athost.x509(pem) -> table describing the first PEM certificate in pem:
 * subject, issuer, not_before, not_after, expired, not_yet_valid,
 * self_signed, is_ca, serial, fingerprint, pem (the block as it appears in
 * the input) and count (certificates in the input). Text without a readable
 * certificate fails with nil, "EINVAL: not an X.509 certificate: <why>",
 * "EINVAL".
 */
static int l_crypto_x509(lua_State *L)
{
    size_t len, blen = 0;
    const char *s = luaL_checklstring(L, 1, &len);
    const char *why = NULL;
    const char *block = len > 0 ? pem_find(s, len, &blen, &why) : NULL;
    ath_crypto_scratch_t *sc;
    int after, before;

    if (block == NULL)
        return x509_fail(L, len > 0 ? why : "empty input");
    sc = scratch_push(L);
    sc->cert = pem_parse(block, blen);
    if (sc->cert == NULL)
        return x509_fail(L, "cannot decode the PEM block");
    sc->bio = BIO_new(BIO_s_mem());
    after = time_vs_now(X509_get0_notAfter(sc->cert));
    before = time_vs_now(X509_get0_notBefore(sc->cert));
    if (sc->bio == NULL || after == 2 || before == 2)
        return x509_fail(L, "unreadable name or validity");
    lua_createtable(L, 0, 12);
    if (!set_name(L, sc, X509_get_subject_name(sc->cert), "subject") ||
        !set_name(L, sc, X509_get_issuer_name(sc->cert), "issuer") ||
        !set_time(L, X509_get0_notBefore(sc->cert), "not_before") ||
        !set_time(L, X509_get0_notAfter(sc->cert), "not_after") ||
        !set_ids(L, sc->cert))
        return x509_fail(L, "unreadable name or validity");
    set_bool(L, after < 0, "expired");
    set_bool(L, before > 0, "not_yet_valid");
    set_bool(L, is_self_signed(sc->cert), "self_signed");
    set_bool(L, is_ca(sc->cert), "is_ca");
    lua_pushlstring(L, block, blen);
    lua_setfield(L, -2, "pem");
    lua_pushinteger(L, pem_count(s, len));
    lua_setfield(L, -2, "count");
    ERR_clear_error();
    return 1;
}

void ath_crypto_open(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        {"hmac", l_crypto_hmac},
        {"digest", l_crypto_digest},
        {"random", l_crypto_random},
        {"hex", l_crypto_hex},
        {"unhex", l_crypto_unhex},
        {"base64", l_crypto_base64},
        {"unbase64", l_crypto_unbase64},
        {"cipher", l_crypto_cipher},
        {"x509", l_crypto_x509},
        {NULL, NULL},
    };
    static const luaL_Reg scratch_meta[] = {
        {"__gc", l_crypto_scratch_close},
        {"__close", l_crypto_scratch_close},
        {"__tostring", l_crypto_scratch_tostring},
        {NULL, NULL},
    };

    if (luaL_newmetatable(L, ATH_CRYPTO_SCRATCH))
        luaL_setfuncs(L, scratch_meta, 0);
    lua_pop(L, 1);
    luaL_setfuncs(L, funcs, 0);
}
