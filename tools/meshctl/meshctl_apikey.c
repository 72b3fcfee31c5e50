/*  =========================================================================
    meshctl_apikey - `meshctl apikey NAME --scopes SCOPE,...`: a new API key
    for mesh-gateway. The key is 32 random bytes from the kernel, written as
    "zmk_" and 64 hex digits; it is printed once, on the first line, and
    never stored. The second line is what the gateway's keys file
    (MESH_GATEWAY_API_KEYS_FILE) holds for it: NAME, the key's SHA-256 in
    hex (OpenSSL's EVP), its scopes. The gateway rereads that file when it
    changes, so `sed -n 2p >> keys-file` makes the key valid without a restart.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "meshctl.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>

//  The scopes the gateway knows (docs/security.md).
static const char *const s_scopes[] = {"users:read", "users:write", "audit:read", "events:read"};

//  True when every comma-separated item of `scopes` is a known scope.
static bool
s_scopes_valid (const char *scopes)
{
    if (!scopes || !*scopes)
        return false;
    while (*scopes) {
        size_t len = strcspn (scopes, ",");
        bool known = false;
        for (size_t index = 0; index < sizeof s_scopes / sizeof s_scopes[0]; index++)
            known |= len == strlen (s_scopes[index]) && memcmp (scopes, s_scopes[index], len) == 0;
        if (!known)
            return false;
        scopes += len;
        if (*scopes && !*++scopes)
            return false; //  A trailing comma
    }
    return true;
}

//  True when `name` is 1..64 of [A-Za-z0-9._@:-] (what the keys file takes).
static bool
s_name_valid (const char *name)
{
    size_t len = strlen (name);
    return len > 0 && len <= 64 &&
           strspn (name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@:-") ==
               len;
}

//  `len` bytes as lower-case hex into `out` (2 * len + 1 bytes).
static void
s_hex (const unsigned char *bytes, size_t len, char *out)
{
    for (size_t index = 0; index < len; index++)
        snprintf (out + 2 * index, 3, "%02x", bytes[index]);
}

//  --------------------------------------------------------------------------
//  `apikey NAME --scopes ...`: print a new key and its keys-file line.
int
meshctl_apikey (const char *name, const char *scopes)
{
    if (!s_name_valid (name)) {
        fprintf (stderr, "meshctl: apikey NAME must be 1 to 64 of A-Z a-z 0-9 . _ @ : -\n");
        return MESHCTL_EXIT_USAGE;
    }
    if (!s_scopes_valid (scopes)) {
        fprintf (stderr, "meshctl: --scopes must be a comma list of users:read, users:write, "
                         "audit:read, events:read\n");
        return MESHCTL_EXIT_USAGE;
    }
    unsigned char secret[32];
    if (getrandom (secret, sizeof secret, 0) != (ssize_t)sizeof secret) {
        fprintf (stderr, "meshctl: no randomness from the kernel\n");
        return MESHCTL_EXIT_FAILURE;
    }
    char key[4 + 64 + 1] = "zmk_";
    s_hex (secret, sizeof secret, key + 4);
    OPENSSL_cleanse (secret, sizeof secret);
    unsigned char digest[32];
    unsigned int size = sizeof digest;
    char hash[65];
    if (!EVP_Digest (key, strlen (key), digest, &size, EVP_sha256 (), NULL)) {
        fprintf (stderr, "meshctl: SHA-256 is not available\n");
        return MESHCTL_EXIT_FAILURE;
    }
    s_hex (digest, sizeof digest, hash);
    int rc = printf ("%s\n%s %s %s\n", key, name, hash, scopes) < 0 || fflush (stdout) != 0
                 ? MESHCTL_EXIT_FAILURE
                 : MESHCTL_EXIT_OK;
    OPENSSL_cleanse (key, sizeof key);
    return rc;
}
