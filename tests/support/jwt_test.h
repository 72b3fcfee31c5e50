/*  =========================================================================
    jwt_test - keys and tokens for the tests of the gateway's authentication
    Keys are made by the openssl command line tool in a fresh directory
    under /tmp: an HS256 secret, RSA and EC P-256 key pairs, an Ed25519
    public key, and a self-signed certificate for HTTPS. Tokens are signed
    by libjwt (the library the gateway verifies with), including the
    forgeries a gateway must refuse (alg none, a public key used as an HMAC
    secret).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef JWT_TEST_H_INCLUDED
#define JWT_TEST_H_INCLUDED

#include <jwt.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct {
    char dir[64];          //  The directory, "" when none
    char hs_secret[128];   //  Path of a 48-byte HS256 secret (with a newline)
    char hs_other[128];    //  Another secret (tokens signed with it must fail)
    char rsa_private[128]; //  PEM paths
    char rsa_public[128];
    char ec_private[128];
    char ec_public[128];
    char ed_public[128]; //  Ed25519: libjwt 1.10 cannot verify it
    char tls_cert[128];  //  Self-signed for 127.0.0.1 and localhost
    char tls_key[128];
} jwt_test_keys_t;

//  A way to sign: an algorithm and the file of its signing key.
typedef struct {
    jwt_alg_t alg;
    const char *key; //  Borrowed from the keys
} jwt_test_signer_t;

#define JWT_TEST_SIGNERS 3 //  HS256, RS256, ES256: what the gateway verifies

//  The signers of `keys` into `signers` (JWT_TEST_SIGNERS of them).
void jwt_test_signers (const jwt_test_keys_t *keys, jwt_test_signer_t *signers);

//  Make every key. Fails the test (cr_assert) when openssl cannot.
void jwt_test_keys_make (jwt_test_keys_t *keys);

//  Remove the directory and its files. Safe on an empty *keys.
void jwt_test_keys_remove (jwt_test_keys_t *keys);

//  A token signed with `alg` by the key in file `key_path` (a secret or a
//  private PEM; its text is the HMAC secret for HS256, whatever it holds;
//  NULL with JWT_ALG_NONE), with the claims of the JSON object `claims`.
//  Fresh string; caller frees. Fails the test when libjwt cannot sign.
char *jwt_test_token (jwt_alg_t alg, const char *key_path, const char *claims);

//  Claims {"sub": sub, "exp": now + exp_in_s, "scope": scope} plus `extra`
//  members ("" or `,"iss":"x"`) into `out` (size bytes). Returns out.
const char *jwt_test_claims (char *out, size_t size, const char *sub, int64_t exp_in_s,
                             const char *scope, const char *extra);

#endif
