/*
 * Crypto and encoding functions of the athost Lua module: hmac, digest,
 * random, hex/unhex, base64/unbase64, cipher (AES-CBC) and x509, on OpenSSL 3.
 */
#ifndef ATH_CRYPTO_H
#define ATH_CRYPTO_H

#include <lua.h>

/*
 * Adds the crypto functions as fields of the table on top of the stack (the
 * athost module table). Leaves the stack as it found it.
 */
void ath_crypto_open(lua_State *L);

#endif
