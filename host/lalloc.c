/*
 * lalloc.c: the Lua state's allocator: small objects from pools, and big
 * payloads handed to Lua without a second copy.
 *
 * Small objects. A flow's every step makes and drops small objects
 * (strings, tables, closures, a command's result), and malloc/free cost
 * a tenth of a station's instructions. Lua tells its allocator the size
 * of every block it frees or resizes (osize), so objects of up to
 * POOL_MAX bytes come from per-size free lists without a header: a size
 * class of POOL_STEP bytes, refilled from slabs of SLAB_SIZE bytes
 * carved on demand. A freed object goes back on its class's list; slabs
 * are returned when the state closes. Bigger blocks are malloc's. Under
 * AddressSanitizer every object is malloc's, so that it sees each one.
 *
 * Big payloads. Lua 5.4 makes a string only by copying bytes into an
 * object it allocates, so a 64 MiB payload held as a string would exist
 * twice for a moment: in the port's buffer and in the string. The manual
 * documents what makes that avoidable: a lua_Alloc is told, by osize ==
 * LUA_TSTRING with a NULL ptr, that Lua is creating a new string object
 * of nsize bytes. When a payload is pushed, the allocator answers that
 * one request with the block the payload already sits in (ath_chat_take
 * put it at the offset Lua gives a string's bytes); Lua's copy of the
 * bytes onto themselves then moves nothing. The offset is not guessed: it
 * is measured once per state, with a string of a known length (0 when
 * the probe does not add up: then payloads are copied as before), and a
 * block Lua did not take (a request of another size) is copied from and
 * freed. Such a block is far bigger than POOL_MAX: it is malloc's, as a
 * big string's must be.
 */
#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define POOL_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define POOL_MAX 0
#endif
#endif
#ifndef POOL_MAX
#define POOL_MAX 256 /* bytes: the biggest pooled object */
#endif
#define POOL_STEP 16                     /* bytes between size classes */
#define POOL_CLASSES (256 / POOL_STEP)   /* classes 16, 32, ... 256 */
#define SLAB_SIZE (16 * 1024)            /* bytes carved into one class */

typedef struct slab {
    struct slab *next;
} slab_t;

typedef struct lalloc {
    /* the pools */
    void *free[POOL_CLASSES]; /* each object's first word: the next one */
    char *bump[POOL_CLASSES]; /* the uncarved rest of the class's slab */
    char *end[POOL_CLASSES];
    slab_t *slabs;
    /* adoption */
    char *blk; /* the block for the next new string of size bytes */
    size_t size;
    size_t front; /* where a string's bytes begin in its object; 0: unknown */
    char *seen;   /* the probe: the last new string object and its size */
    size_t seen_size;
    int probing;
} lalloc_t;

static int pooled(size_t n)
{
    return n != 0 && n <= POOL_MAX;
}

static size_t pool_class(size_t n)
{
    return (n - 1) / POOL_STEP;
}

static void *pool_get(lalloc_t *a, size_t n)
{
    size_t c = pool_class(n), sz = (c + 1) * POOL_STEP;
    void *p = a->free[c];
    slab_t *s;
    if (p != NULL) {
        memcpy(&a->free[c], p, sizeof p);
        return p;
    }
    if (a->bump[c] == NULL || (size_t)(a->end[c] - a->bump[c]) < sz) {
        /* a new slab; the old one's rest (< sz bytes) is left unused */
        if ((s = malloc(SLAB_SIZE)) == NULL)
            return NULL;
        s->next = a->slabs;
        a->slabs = s;
        a->bump[c] = (char *)s + POOL_STEP; /* objects stay 16-aligned */
        a->end[c] = (char *)s + SLAB_SIZE;
    }
    p = a->bump[c];
    a->bump[c] += sz;
    return p;
}

static void pool_put(lalloc_t *a, void *p, size_t n)
{
    size_t c = pool_class(n);
    memcpy(p, &a->free[c], sizeof p);
    a->free[c] = p;
}

/* A new block of n bytes (n > 0). */
static void *block_new(lalloc_t *a, size_t n)
{
    return pooled(n) ? pool_get(a, n) : malloc(n);
}

static void block_free(lalloc_t *a, void *p, size_t n)
{
    if (pooled(n))
        pool_put(a, p, n);
    else
        free(p);
}

static void *lalloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    lalloc_t *a = ud;
    void *q;
    if (ptr == NULL) {
        /* osize is the type of the new object */
        if (nsize == 0)
            return NULL;
        if (osize == LUA_TSTRING) {
            if (a->blk != NULL && nsize == a->size) {
                char *b = a->blk;
                a->blk = NULL;
                return b;
            }
            if (a->probing) {
                a->seen = block_new(a, nsize);
                a->seen_size = nsize;
                return a->seen;
            }
        }
        return block_new(a, nsize);
    }
    if (nsize == 0) {
        block_free(a, ptr, osize);
        return NULL;
    }
    if (!pooled(osize) && !pooled(nsize))
        return realloc(ptr, nsize);
    if (pooled(osize) && pooled(nsize) &&
        pool_class(osize) == pool_class(nsize))
        return ptr;
    if ((q = block_new(a, nsize)) == NULL) {
        /* A block that shrinks can stay where it is: it is big enough.
         * (One of malloc's that shrinks into a class goes, when freed,
         * on the class's list like the others: out of memory only.) */
        return nsize <= osize ? ptr : NULL;
    }
    memcpy(q, ptr, osize < nsize ? osize : nsize);
    block_free(a, ptr, osize);
    return q;
}

/* lauxlib's panic and warning functions, which luaL_newstate installs:
 * the same messages, warnings off until "@on". */
static int lalloc_panic(lua_State *L)
{
    const char *msg = lua_type(L, -1) == LUA_TSTRING
                          ? lua_tostring(L, -1)
                          : "error object is not a string";
    fprintf(stderr, "PANIC: unprotected error in call to Lua API (%s)\n", msg);
    fflush(stderr);
    return 0; /* Lua aborts */
}

static void warn_off(void *ud, const char *msg, int tocont);
static void warn_on(void *ud, const char *msg, int tocont);

static int warn_control(lua_State *L, const char *msg, int tocont)
{
    if (tocont || *msg++ != '@')
        return 0;
    if (strcmp(msg, "off") == 0)
        lua_setwarnf(L, warn_off, L);
    else if (strcmp(msg, "on") == 0)
        lua_setwarnf(L, warn_on, L);
    return 1;
}

static void warn_off(void *ud, const char *msg, int tocont)
{
    warn_control(ud, msg, tocont);
}

static void warn_cont(void *ud, const char *msg, int tocont)
{
    fputs(msg, stderr);
    if (tocont) {
        lua_setwarnf(ud, warn_cont, ud);
    } else {
        fputc('\n', stderr);
        fflush(stderr);
        lua_setwarnf(ud, warn_on, ud);
    }
}

static void warn_on(void *ud, const char *msg, int tocont)
{
    if (warn_control(ud, msg, tocont))
        return;
    fputs("Lua warning: ", stderr);
    warn_cont(ud, msg, tocont);
}

lua_State *ath_lua_newstate(void)
{
    char probe[100]; /* longer than a short (interned) string */
    const char *s;
    lalloc_t *a = calloc(1, sizeof *a);
    lua_State *L;
    if (a == NULL)
        return NULL;
    if ((L = lua_newstate(lalloc, a)) == NULL) {
        free(a);
        return NULL;
    }
    lua_atpanic(L, lalloc_panic);
    lua_setwarnf(L, warn_off, L);
    memset(probe, 'x', sizeof probe);
    a->probing = 1;
    lua_pushlstring(L, probe, sizeof probe);
    a->probing = 0;
    s = lua_tostring(L, -1);
    if (a->seen != NULL && s > a->seen && (size_t)(s - a->seen) <= 64 &&
        a->seen_size == (size_t)(s - a->seen) + sizeof probe + 1)
        a->front = (size_t)(s - a->seen);
    lua_pop(L, 1);
    return L;
}

size_t ath_lua_front(lua_State *L)
{
    void *ud;
    if (lua_getallocf(L, &ud) != lalloc)
        return 0;
    return ((lalloc_t *)ud)->front;
}

void ath_lua_pushtaken(lua_State *L, char *blk, size_t n)
{
    void *ud;
    lalloc_t *a = NULL;
    size_t front = ath_lua_front(L);
    if (front != 0) {
        lua_getallocf(L, &ud);
        a = ud;
        a->blk = blk;
        a->size = front + n + 1;
    }
    lua_pushlstring(L, blk + front, n);
    if (a != NULL && a->blk == NULL)
        return; /* the string is the block now: Lua frees it */
    if (a != NULL)
        a->blk = NULL;
    free(blk);
}

void ath_lua_close(lua_State *L)
{
    void *ud;
    lua_Alloc f = lua_getallocf(L, &ud);
    lua_close(L);
    if (f == lalloc) {
        lalloc_t *a = ud;
        while (a->slabs != NULL) {
            slab_t *s = a->slabs;
            a->slabs = s->next;
            free(s);
        }
        free(a);
    }
}
