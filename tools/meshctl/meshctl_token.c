/*  =========================================================================
    meshctl_token - `meshctl token SUBJECT --scopes S,S --key-file FILE`: a JWT
    for mesh-gateway, signed by libjwt: HS256 when FILE is a secret (the
    same file the gateway's MESH_GATEWAY_JWT_HS256_SECRET_FILES names; one
    trailing newline is not part of it), RS256 or ES256 when FILE is a PEM
    private key (RSA or EC P-256), the gateway holding its public half.
    Claims: sub, iat, exp (now + --ttl seconds), scope (space-separated),
    and iss and aud when --issuer and --audience are given. For development
    and tests (scripts/run prints a curl with one); production tokens come
    from an identity provider.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "meshctl.h"
#include "mesh/mesh_file.h"

#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

//  The algorithm for the key in `key` (len bytes): HS256 for a secret, RS256
//  or ES256 for a PEM private key; JWT_ALG_INVAL for another PEM.
static jwt_alg_t
s_alg_of (const unsigned char *key, size_t len)
{
    if (!strstr ((const char *)key, "-----BEGIN"))
        return JWT_ALG_HS256;
    BIO *bio = BIO_new_mem_buf (key, (int)len);
    EVP_PKEY *pkey = bio ? PEM_read_bio_PrivateKey (bio, NULL, NULL, NULL) : NULL;
    BIO_free (bio);
    jwt_alg_t alg = JWT_ALG_INVAL;
    if (pkey && EVP_PKEY_get_base_id (pkey) == EVP_PKEY_RSA)
        alg = JWT_ALG_RS256;
    else if (pkey && EVP_PKEY_get_base_id (pkey) == EVP_PKEY_EC)
        alg = JWT_ALG_ES256;
    EVP_PKEY_free (pkey);
    return alg;
}

//  --------------------------------------------------------------------------
//  `token SUBJECT`: print a signed JWT.
int
meshctl_token (const char *subject, const char *scopes, const char *key_file, long ttl_s,
               const char *issuer, const char *audience)
{
    if (!subject || !*subject || !key_file || !*key_file) {
        fprintf (stderr, "meshctl: usage: meshctl token SUBJECT --key-file FILE "
                         "[--scopes S,S] [--ttl SECONDS] [--issuer I] [--audience A]\n");
        return MESHCTL_EXIT_USAGE;
    }
    char error[512];
    size_t len = 0;
    char *key = mesh_file_read (key_file, 16383, &len, error, sizeof error);
    if (!key || len == 0) {
        fprintf (stderr, "meshctl: %s\n", key ? "the key file is empty" : error);
        free (key);
        return MESHCTL_EXIT_USAGE;
    }
    jwt_alg_t alg = s_alg_of ((const unsigned char *)key, len);
    if (alg == JWT_ALG_HS256)
        mesh_secret_trim (key, &len);
    if (alg == JWT_ALG_INVAL) {
        fprintf (stderr, "meshctl: '%s' is neither a secret nor an RSA or EC private key\n",
                 key_file);
        OPENSSL_cleanse (key, len);
        free (key);
        return MESHCTL_EXIT_USAGE;
    }
    //  The gateway wants scopes space-separated (OAuth 2); the flag takes commas
    char scope[512];
    snprintf (scope, sizeof scope, "%s", scopes ? scopes : "");
    for (char *at = scope; *at; at++)
        if (*at == ',')
            *at = ' ';
    long now = (long)time (NULL);
    jwt_t *jwt = NULL;
    char *token = NULL;
    if (jwt_new (&jwt) == 0 && jwt_set_alg (jwt, alg, (const unsigned char *)key, (int)len) == 0 &&
        jwt_add_grant (jwt, "sub", subject) == 0 && jwt_add_grant_int (jwt, "iat", now) == 0 &&
        jwt_add_grant_int (jwt, "exp", now + ttl_s) == 0 &&
        (!scope[0] || jwt_add_grant (jwt, "scope", scope) == 0) &&
        (!issuer || jwt_add_grant (jwt, "iss", issuer) == 0) &&
        (!audience || jwt_add_grant (jwt, "aud", audience) == 0))
        token = jwt_encode_str (jwt);
    jwt_free (jwt);
    OPENSSL_cleanse (key, len);
    free (key);
    if (!token) {
        fprintf (stderr, "meshctl: libjwt cannot sign the token\n");
        return MESHCTL_EXIT_FAILURE;
    }
    int rc =
        printf ("%s\n", token) < 0 || fflush (stdout) != 0 ? MESHCTL_EXIT_FAILURE : MESHCTL_EXIT_OK;
    free (token);
    return rc;
}
