/*
 * lalloc.c: the Lua state's allocator, and big payloads handed to Lua
 * without a second copy.
 *
 * Lua 5.4 makes a string only by copying bytes into an object it
 * allocates, so a 64 MiB payload held as a string would exist twice for
 * a moment: in the port's buffer and in the string. The manual documents
 * what makes that avoidable: a lua_Alloc is told, by osize == LUA_TSTRING
 * with a NULL ptr, that Lua is creating a new string object of nsize
 * bytes. When a payload is pushed, the allocator answers that one request
 * with the block the payload already sits in (ath_chat_take put it at the
 * offset Lua gives a string's bytes); Lua's copy of the bytes onto
 * themselves then moves nothing. The offset is not guessed: it is measured
 * once per state, with a string of a known length (0 when the probe does
 * not add up: then payloads are copied as before), and a block Lua did
 * not take (a request of another size) is copied from and freed.
 *
 * Small blocks (at most POOL_MAX bytes: strings, tables and their parts,
 * closures) come from a pool: per 16-byte size class a list of freed
 * blocks, else carved from 32 KiB chunks. Lua tells the allocator a
 * block's size on every call, so the class needs no header, and a round
 * trip's result table, its lines and strings cost a few instructions
 * each instead of a malloc and a free. The state is created with this
 * allocator (ath_lua_newstate), so every block is the pool's or malloc's
 * by its size alone: a block is the pool's while its size is at most
 * POOL_MAX. Chunks go back with the state (ath_lua_close). Under
 * AddressSanitizer the pool is off, so that it still sees every block.
 */
#include "host.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__SANITIZE_ADDRESS__)
#define POOL_MAX 0 /* every block malloc's, for the sanitizer to watch */
#else
#define POOL_MAX 256
#endif
#define POOL_CHUNK (32u << 10)
#define POOL_CLASS(n) (((n) + 15) >> 4)

/* A chunk's header: chunks are listed to be freed with the state; 16
 * bytes, so that the blocks after it keep malloc's alignment. */
typedef union chunk {
    union chunk *next;
    char align[16];
} chunk_t;

typedef struct adopt {
    char *blk;    /* the block for the next new string of size bytes */
    size_t size;
    size_t front; /* where a string's bytes begin in its object; 0: unknown */
    char *seen;   /* the probe: the last new string object and its size */
    size_t seen_size;
    int probing;
    void *freed[POOL_CLASS(256) + 1]; /* per class: freed blocks, linked
                                         through their first word */
    char *bump, *bump_end;            /* the chunk being carved */
    chunk_t *chunks;
} adopt_t;

/* A block of class c (c * 16 bytes), or NULL when memory ran out. */
static void *pool_get(adopt_t *a, size_t c)
{
    void *b = a->freed[c];
    size_t size = c << 4;
    if (b != NULL) {
        a->freed[c] = *(void **)b;
        return b;
    }
    if ((size_t)(a->bump_end - a->bump) < size) {
        chunk_t *ch = malloc(POOL_CHUNK);
        if (ch == NULL)
            return NULL;
        ch->next = a->chunks;
        a->chunks = ch;
        a->bump = (char *)(ch + 1);
        a->bump_end = (char *)ch + POOL_CHUNK; /* the old tail: unused */
    }
    b = a->bump;
    a->bump += size;
    return b;
}

static void pool_put(adopt_t *a, void *b, size_t n)
{
    size_t c = POOL_CLASS(n);
    *(void **)b = a->freed[c];
    a->freed[c] = b;
}

static void *adopt_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    adopt_t *a = ud;
    void *nb;
    if (ptr == NULL) { /* osize is the kind of object, not a size */
        if (nsize == 0)
            return NULL;
        if (osize == LUA_TSTRING && a->blk != NULL && nsize == a->size &&
            nsize > POOL_MAX) {
            char *b = a->blk;
            a->blk = NULL;
            return b;
        }
        nb = nsize <= POOL_MAX ? pool_get(a, POOL_CLASS(nsize)) : malloc(nsize);
        if (a->probing && osize == LUA_TSTRING) {
            a->seen = nb;
            a->seen_size = nsize;
        }
        return nb;
    }
    if (nsize == 0) {
        if (osize <= POOL_MAX)
            pool_put(a, ptr, osize);
        else
            free(ptr);
        return NULL;
    }
    if (osize > POOL_MAX && nsize > POOL_MAX)
        return realloc(ptr, nsize);
    if (osize <= POOL_MAX && nsize <= POOL_MAX &&
        POOL_CLASS(osize) == POOL_CLASS(nsize))
        return ptr;
    /* From the pool to malloc, back, or to another class: moved. */
    nb = nsize <= POOL_MAX ? pool_get(a, POOL_CLASS(nsize)) : malloc(nsize);
    if (nb == NULL) {
        /* Lua counts on a block that shrinks staying put: a malloc'd
         * block becomes the pool's (it is bigger than its class; it is
         * never freed, which only happens once memory ran out). */
        if (nsize < osize)
            return ptr;
        return NULL;
    }
    memcpy(nb, ptr, osize < nsize ? osize : nsize);
    if (osize <= POOL_MAX)
        pool_put(a, ptr, osize);
    else
        free(ptr);
    return nb;
}

/* lauxlib's panic and warning functions, as luaL_newstate sets them
 * (they are not exported): the state is made with lua_newstate, to have
 * this allocator from its first block. */
static int lalloc_panic(lua_State *L)
{
    const char *msg = lua_tostring(L, -1);
    if (msg == NULL)
        msg = "error object is not a string";
    lua_writestringerror("PANIC: unprotected error in call to Lua API (%s)\n",
                         msg);
    return 0; /* Lua aborts */
}

static void warn_on(void *ud, const char *msg, int tocont);
static void warn_off(void *ud, const char *msg, int tocont);

static int warn_control(lua_State *L, const char *msg, int tocont)
{
    if (tocont || *(msg++) != '@')
        return 0;
    if (strcmp(msg, "off") == 0)
        lua_setwarnf(L, warn_off, L);
    else if (strcmp(msg, "on") == 0)
        lua_setwarnf(L, warn_on, L);
    return 1;
}
static void warn_off(void *ud, const char *msg, int tocont)
{
    warn_control((lua_State *)ud, msg, tocont);
}

static void warn_cont(void *ud, const char *msg, int tocont)
{
    lua_State *L = ud;
    lua_writestringerror("%s", msg);
    if (tocont) {
        lua_setwarnf(L, warn_cont, L);
    } else {
        lua_writestringerror("%s", "\n");
        lua_setwarnf(L, warn_on, L);
    }
}

static void warn_on(void *ud, const char *msg, int tocont)
{
    if (warn_control((lua_State *)ud, msg, tocont))
        return;
    lua_writestringerror("%s", "Lua warning: ");
    warn_cont(ud, msg, tocont);
}

lua_State *ath_lua_newstate(void)
{
    char probe[100]; /* longer than a short (interned) string */
    const char *s;
    lua_State *L;
    adopt_t *a = calloc(1, sizeof *a);
    if (a == NULL)
        return NULL;
    a->bump = a->bump_end = NULL;
    if ((L = lua_newstate(adopt_alloc, a)) == NULL) {
        free(a);
        return NULL;
    }
    lua_atpanic(L, lalloc_panic);
    lua_setwarnf(L, warn_off, L); /* warnings off, as luaL_newstate */
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
    if (lua_getallocf(L, &ud) != adopt_alloc)
        return 0;
    return ((adopt_t *)ud)->front;
}

void ath_lua_pushtaken(lua_State *L, char *blk, size_t n)
{
    void *ud;
    adopt_t *a = NULL;
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
    if (f == adopt_alloc) {
        adopt_t *a = ud;
        while (a->chunks != NULL) {
            chunk_t *next = a->chunks->next;
            free(a->chunks);
            a->chunks = next;
        }
        free(a);
    }
}
