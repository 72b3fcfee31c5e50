/*  =========================================================================
    gateway_auth - who is calling the HTTP API, and what they may do
    A request carries `Authorization: Bearer CREDENTIAL`. A credential with
    dots is a JWT, verified with libjwt against the configured keys: HS256
    secrets, RS256 and ES256 public keys (PEM; the key's type says which).
    Each key pins its algorithm: a token whose header `alg` is not the
    key's is never verified with it, which refuses `alg: none` and the
    RS256-to-HS256 confusion (a public key used as an HMAC secret). Then
    `exp` (required), `nbf`, `iss` and `aud` (string or array) are checked
    with a small clock skew, `sub` is the identity and `scope` (space
    separated, OAuth 2) the scopes. A credential without dots is an API
    key: its SHA-256 is compared, in constant time, with the hashes of a
    keys file (`NAME SHA256-HEX SCOPE,SCOPE`), which is read again when it
    changes (its mtime, size or inode, looked at once a second at most).
    Verified tokens are cached (bounded, keyed by the SHA-256 of the token,
    still checked against exp and nbf on every hit): an RS256 verification
    costs far more than a request. One thread.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef GATEWAY_AUTH_H_INCLUDED
#define GATEWAY_AUTH_H_INCLUDED

#include "mesh/mesh_envelope.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

//  Scopes as bits.
typedef enum {
    GATEWAY_SCOPE_USERS_READ = 1 << 0,  //  "users:read": GET users
    GATEWAY_SCOPE_USERS_WRITE = 1 << 1, //  "users:write": POST, PATCH, DELETE users
    GATEWAY_SCOPE_AUDIT_READ = 1 << 2,  //  "audit:read": GET /v1/audit
    GATEWAY_SCOPE_EVENTS_READ = 1 << 3, //  "events:read": GET /v1/events
} gateway_scope_t;

#define GATEWAY_AUTH_MAX_TOKEN 8192 //  Bytes of a credential at most
#define GATEWAY_AUTH_MAX_KEYS 8     //  JWT keys of each kind at most

typedef struct {
    const char *hs256_secret_files; //  Comma list of files, each one HS256 secret; NULL/"": none
    const char *public_key_files;   //  Comma list of PEM public keys (RSA: RS256, P-256: ES256)
    const char *issuer;             //  Required `iss`; NULL/"": not checked
    const char *audience;           //  Required in `aud`; NULL/"": not checked
    int leeway_s;                   //  Clock skew allowed on exp and nbf
    const char *api_keys_file;      //  API keys (hashes); NULL/"": none
    size_t cache_entries;           //  Verified tokens remembered (0: no cache)
} gateway_auth_cfg_t;

typedef struct gateway_auth_s gateway_auth_t;

//  What a credential proved.
typedef struct {
    char actor[MESH_ENVELOPE_MAX_ACTOR + 1]; //  Token `sub` or key name
    unsigned int scopes;                     //  gateway_scope_t bits
    bool api_key;                            //  From the keys file, not a JWT
} gateway_identity_t;

typedef enum {
    GATEWAY_AUTH_OK,      //  *identity filled
    GATEWAY_AUTH_MISSING, //  No credential (no header, or another scheme)
    GATEWAY_AUTH_INVALID, //  A credential that does not prove anything
} gateway_auth_outcome_t;

//  Read the keys and the keys file. Returns NULL with `error` (size bytes)
//  telling why when a file cannot be read or holds no valid key. Strings
//  in `cfg` are copied.
gateway_auth_t *gateway_auth_new (const gateway_auth_cfg_t *cfg, char *error, size_t size);

//  Destroy; nulls the caller's pointer.
void gateway_auth_destroy (gateway_auth_t **self_p);

//  Check the value of an Authorization header (NULL: none) at unix time
//  `now_s`. Returns GATEWAY_AUTH_OK with *identity filled, or MISSING or
//  INVALID with `why` (size bytes) saying what is wrong, fit for the
//  client (it never holds key material).
gateway_auth_outcome_t gateway_auth_check (gateway_auth_t *self, const char *authorization,
                                           int64_t now_s, gateway_identity_t *identity, char *why,
                                           size_t size);

//  Bits of the scopes named in `list`, separated by any of `separators`;
//  unknown names are ignored.
unsigned int gateway_scopes_parse (const char *list, const char *separators);

//  The name of one scope bit ("users:read"). Static.
const char *gateway_scope_name (unsigned int scope);

//  The SHA-256 of `key` as 64 lower-case hex digits into `hex` (65 bytes):
//  the form the keys file stores.
void gateway_auth_key_hash (const char *key, char *hex);

#endif
