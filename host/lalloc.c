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
 */
#include "host.h"

#include <stdlib.h>
#include <string.h>

typedef struct adopt {
    char *blk;    /* the block for the next new string of size bytes */
    size_t size;
    size_t front; /* where a string's bytes begin in its object; 0: unknown */
    char *seen;   /* the probe: the last new string object and its size */
    size_t seen_size;
    int probing;
} adopt_t;

static void *adopt_alloc(void *ud, void *ptr, size_t osize, size_t nsize)
{
    adopt_t *a = ud;
    if (nsize == 0) {
        free(ptr);
        return NULL;
    }
    if (ptr == NULL && osize == LUA_TSTRING) {
        if (a->blk != NULL && nsize == a->size) {
            char *b = a->blk;
            a->blk = NULL;
            return b;
        }
        if (a->probing) {
            a->seen = malloc(nsize);
            a->seen_size = nsize;
            return a->seen;
        }
    }
    return realloc(ptr, nsize);
}

int ath_lua_adopting(lua_State *L)
{
    char probe[100]; /* longer than a short (interned) string */
    const char *s;
    void *old;
    adopt_t *a;
    if (lua_getallocf(L, &old) == adopt_alloc)
        return 0;
    if ((a = calloc(1, sizeof *a)) == NULL)
        return -1;
    /* The default allocator is realloc and free too: blocks made before
     * the switch are freed alike. */
    lua_setallocf(L, adopt_alloc, a);
    memset(probe, 'x', sizeof probe);
    a->probing = 1;
    lua_pushlstring(L, probe, sizeof probe);
    a->probing = 0;
    s = lua_tostring(L, -1);
    if (a->seen != NULL && s > a->seen && (size_t)(s - a->seen) <= 64 &&
        a->seen_size == (size_t)(s - a->seen) + sizeof probe + 1)
        a->front = (size_t)(s - a->seen);
    lua_pop(L, 1);
    return 0;
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
    if (f == adopt_alloc)
        free(ud);
}
