/*  =========================================================================
    jwt_test - keys and tokens for the tests of the gateway's authentication
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "jwt_test.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

//  Run a shell command in the keys directory; fails the test unless it exits 0.
static void
s_run (const jwt_test_keys_t *keys, const char *command)
{
    char line[1024];
    snprintf (line, sizeof line, "cd '%s' && { %s; } >/dev/null 2>&1", keys->dir, command);
    cr_assert_eq (system (line), 0, "failed: %s", command);
}

//  --------------------------------------------------------------------------
//  Make every key.
void
jwt_test_keys_make (jwt_test_keys_t *keys)
{
    memset (keys, 0, sizeof *keys);
    snprintf (keys->dir, sizeof keys->dir, "/tmp/jwt-test-XXXXXX");
    cr_assert_not_null (mkdtemp (keys->dir));
    struct {
        char *path;
        const char *name;
    } files[] = {
        {keys->hs_secret, "hs.secret"},  {keys->hs_other, "other.secret"},
        {keys->rsa_private, "rsa.pem"},  {keys->rsa_public, "rsa.pub.pem"},
        {keys->ec_private, "ec.pem"},    {keys->ec_public, "ec.pub.pem"},
        {keys->ed_public, "ed.pub.pem"}, {keys->tls_cert, "tls.crt"},
        {keys->tls_key, "tls.key"},
    };
    for (size_t index = 0; index < sizeof files / sizeof files[0]; index++)
        snprintf (files[index].path, 128, "%s/%s", keys->dir, files[index].name);
    s_run (keys, "openssl rand -hex 24 > hs.secret && openssl rand -hex 24 > other.secret");
    s_run (keys, "openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out rsa.pem"
                 " && openssl pkey -in rsa.pem -pubout -out rsa.pub.pem");
    s_run (keys, "openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ec.pem"
                 " && openssl pkey -in ec.pem -pubout -out ec.pub.pem");
    s_run (keys, "openssl genpkey -algorithm ED25519 -out ed.pem"
                 " && openssl pkey -in ed.pem -pubout -out ed.pub.pem");
    s_run (keys, "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes"
                 " -keyout tls.key -out tls.crt -days 1 -subj /CN=127.0.0.1"
                 " -addext subjectAltName=IP:127.0.0.1,DNS:localhost");
}

//  --------------------------------------------------------------------------
//  The signers of `keys`.
void
jwt_test_signers (const jwt_test_keys_t *keys, jwt_test_signer_t *signers)
{
    signers[0] = (jwt_test_signer_t){JWT_ALG_HS256, keys->hs_secret};
    signers[1] = (jwt_test_signer_t){JWT_ALG_RS256, keys->rsa_private};
    signers[2] = (jwt_test_signer_t){JWT_ALG_ES256, keys->ec_private};
}

//  --------------------------------------------------------------------------
//  Remove the directory and its files.
void
jwt_test_keys_remove (jwt_test_keys_t *keys)
{
    if (!keys->dir[0])
        return;
    char command[128];
    snprintf (command, sizeof command, "rm -rf '%s'", keys->dir);
    if (system (command) != 0)
        fprintf (stderr, "jwt_test: cannot remove %s\n", keys->dir);
    keys->dir[0] = '\0';
}

//  --------------------------------------------------------------------------
//  A token signed with `alg` by the key in `key_path`.
char *
jwt_test_token (jwt_alg_t alg, const char *key_path, const char *claims)
{
    unsigned char key[8192];
    size_t len = 0;
    if (key_path) {
        FILE *file = fopen (key_path, "rb");
        cr_assert_not_null (file, "cannot open %s", key_path);
        len = fread (key, 1, sizeof key - 1, file);
        fclose (file);
        //  A secret file's trailing newline is not part of the secret
        if (alg == JWT_ALG_HS256 && len && key[len - 1] == '\n' &&
            strstr ((const char *)key, "-----BEGIN") == NULL)
            len--;
        key[len] = '\0';
    }
    jwt_t *jwt = NULL;
    cr_assert_eq (jwt_new (&jwt), 0);
    cr_assert_eq (jwt_set_alg (jwt, alg, key_path ? key : NULL, (int)len), 0, "jwt_set_alg");
    cr_assert_eq (jwt_add_grants_json (jwt, claims), 0, "claims: %s", claims);
    char *token = jwt_encode_str (jwt);
    cr_assert_not_null (token, "jwt_encode_str");
    jwt_free (jwt);
    return token;
}

//  --------------------------------------------------------------------------
//  Claims with sub, exp (from now) and scope, plus `extra`.
const char *
jwt_test_claims (char *out, size_t size, const char *sub, int64_t exp_in_s, const char *scope,
                 const char *extra)
{
    snprintf (out, size, "{\"sub\":\"%s\",\"exp\":%lld,\"scope\":\"%s\"%s}", sub,
              (long long)time (NULL) + (long long)exp_in_s, scope, extra ? extra : "");
    return out;
}
