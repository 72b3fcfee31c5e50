/*  =========================================================================
    fuzz_gateway_auth - libFuzzer harness for the gateway's Authorization path
    Each input is tried three ways against one gateway_auth (an HS256
    secret, RSA and P-256 public keys, an API keys file): as the whole
    Authorization header, as the credential after "Bearer ", and as the
    claims of a token that the harness signs with the right HS256 secret, so
    the fuzzer also reaches the claim checks behind a valid signature. The
    keys are the fuzz-only ones of tests/fuzz/keys (FUZZ_KEYS_DIR), whose
    private halves signed the seed tokens (make_seeds.py). Whatever comes
    in, the outcome is one of the three, a refusal says why, and an accepted
    credential names an actor.
    Build (clang only): CC=clang cmake -S . -B build/fuzz -DMESH_FUZZ=ON
    Run: build/fuzz/bin/fuzz_gateway_auth -max_len=4096 [corpus-dir]
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_auth.h"

#include <assert.h>
#include <jwt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput (const uint8_t *data, size_t size);

static gateway_auth_t *s_auth;
static char s_secret[128]; //  tests/fuzz/keys/hs256.secret, trimmed

//  Write `text` to a fresh file under /tmp; its path into `path`.
static void
s_write_temp (char *path, const char *text)
{
    strcpy (path, "/tmp/fuzz-auth-XXXXXX");
    int fd = mkstemp (path);
    assert (fd >= 0);
    FILE *file = fdopen (fd, "w");
    fputs (text, file);
    fclose (file);
}

//  One gateway_auth for the whole run, with the keys the seeds are signed
//  with (the API keys file is removed at once: it has been read).
static void
s_init (void)
{
    FILE *file = fopen (FUZZ_KEYS_DIR "/hs256.secret", "r");
    assert (file && fgets (s_secret, sizeof s_secret, file));
    fclose (file);
    s_secret[strcspn (s_secret, "\r\n")] = '\0';
    char keys_path[64], line[256], hash[65];
    gateway_auth_key_hash ("zmk_fuzz", hash);
    snprintf (line, sizeof line, "fuzzer %s users:read\n", hash);
    s_write_temp (keys_path, line);
    gateway_auth_cfg_t cfg = {
        .hs256_secret_files = FUZZ_KEYS_DIR "/hs256.secret",
        .public_key_files = FUZZ_KEYS_DIR "/rsa.pub.pem," FUZZ_KEYS_DIR "/ec.pub.pem",
        .issuer = "iss",
        .audience = "aud",
        .leeway_s = 30,
        .api_keys_file = keys_path,
        .cache_entries = 16,
    };
    char error[512];
    s_auth = gateway_auth_new (&cfg, error, sizeof error);
    if (!s_auth)
        fprintf (stderr, "fuzz_gateway_auth: %s\n", error);
    assert (s_auth);
    unlink (keys_path);
}

//  Check `header` and the shape of the outcome.
static void
s_check (const char *header)
{
    gateway_identity_t identity;
    char why[192];
    why[0] = '\0';
    gateway_auth_outcome_t outcome =
        gateway_auth_check (s_auth, header, (int64_t)time (NULL), &identity, why, sizeof why);
    if (outcome == GATEWAY_AUTH_OK)
        assert (identity.actor[0] && strlen (identity.actor) <= MESH_ENVELOPE_MAX_ACTOR);
    else {
        assert (outcome == GATEWAY_AUTH_MISSING || outcome == GATEWAY_AUTH_INVALID);
        assert (why[0] && !identity.actor[0]);
    }
}

int
LLVMFuzzerTestOneInput (const uint8_t *data, size_t size)
{
    if (!s_auth)
        s_init ();
    char *text = malloc (size + 8);
    memcpy (text, data, size);
    text[size] = '\0';
    s_check (text);

    char *bearer = malloc (size + 8);
    snprintf (bearer, size + 8, "Bearer %s", text);
    s_check (bearer);

    //  The input as the claims of a properly signed token
    jwt_t *jwt = NULL;
    if (jwt_new (&jwt) == 0 && jwt_add_grants_json (jwt, text) == 0 &&
        jwt_set_alg (jwt, JWT_ALG_HS256, (const unsigned char *)s_secret, (int)strlen (s_secret)) ==
            0) {
        char *token = jwt_encode_str (jwt);
        if (token && strlen (token) < GATEWAY_AUTH_MAX_TOKEN) {
            char *header = malloc (strlen (token) + 8);
            sprintf (header, "Bearer %s", token);
            s_check (header);
            free (header);
        }
        free (token);
    }
    jwt_free (jwt);
    free (bearer);
    free (text);
    return 0;
}
