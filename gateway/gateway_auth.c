/*  =========================================================================
    gateway_auth - who is calling the HTTP API, and what they may do
    libjwt parses and verifies tokens, jansson reads their claims, OpenSSL's
    libcrypto hashes API keys (EVP SHA-256), compares hashes in constant
    time (CRYPTO_memcmp) and tells a public key's type. Nothing here parses
    base64 or checks a signature by itself.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_auth.h"

#include "mesh/mesh_alloc.h"
#include "mesh/mesh_file.h"
#include "mesh/mesh_log.h"
#include "mesh/mesh_time.h"

#include <assert.h>
#include <errno.h>
#include <jansson.h>
#include <jwt.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#define S_MAX_KEY_FILE (64 * 1024)    //  Bytes of a key or secret file at most
#define S_MAX_KEYS_FILE (1024 * 1024) //  Bytes of the API keys file at most
#define S_MIN_SECRET 32               //  HS256 secret bytes at least (RFC 7518 3.2)
#define S_NAME_MAX 64                 //  API key name bytes at most
#define S_RELOAD_CHECK_MS 1000        //  stat() the keys file this often at most

typedef struct {
    jwt_alg_t alg;      //  Pinned: the only algorithm verified with it
    unsigned char *key; //  Secret bytes or PEM text, owned
    size_t len;
} s_jwt_key_t;

typedef struct {
    char name[S_NAME_MAX + 1]; //  The actor
    unsigned char digest[32];  //  SHA-256 of the key
    unsigned int scopes;
} s_api_key_t;

typedef struct {
    bool used;
    unsigned char digest[32]; //  SHA-256 of the token
    int64_t exp;              //  Unix s
    int64_t nbf;              //  Unix s; 0 none
    gateway_identity_t identity;
} s_cache_entry_t;

struct gateway_auth_s {
    s_jwt_key_t keys[2 * GATEWAY_AUTH_MAX_KEYS];
    size_t key_count;
    char *issuer;   //  NULL: not checked
    char *audience; //  NULL: not checked
    int leeway_s;
    char *api_keys_file;   //  NULL: no API keys
    s_api_key_t *api_keys; //  Owned array
    size_t api_key_count;
    struct stat api_keys_stat;   //  Of the file as last read
    int64_t api_keys_checked_ms; //  Monotonic: last stat()
    s_cache_entry_t *cache;      //  Direct-mapped by digest; owned
    size_t cache_entries;
};

static const char *const s_scope_names[] = {"users:read", "users:write", "audit:read",
                                            "events:read"};
#define S_SCOPE_COUNT (sizeof s_scope_names / sizeof s_scope_names[0])

//  --------------------------------------------------------------------------
//  Bits of the scopes named in `list`.
unsigned int
gateway_scopes_parse (const char *list, const char *separators)
{
    unsigned int scopes = 0;
    if (!list)
        return 0;
    while (*list) {
        size_t len = strcspn (list, separators);
        for (size_t index = 0; index < S_SCOPE_COUNT; index++)
            if (len == strlen (s_scope_names[index]) &&
                memcmp (list, s_scope_names[index], len) == 0)
                scopes |= 1u << index;
        list += len;
        if (*list)
            list++;
    }
    return scopes;
}

//  --------------------------------------------------------------------------
//  The name of one scope bit.
const char *
gateway_scope_name (unsigned int scope)
{
    for (size_t index = 0; index < S_SCOPE_COUNT; index++)
        if (scope == 1u << index)
            return s_scope_names[index];
    return "unknown";
}

//  SHA-256 of `len` bytes into `digest` (32 bytes).
static void
s_sha256 (const void *data, size_t len, unsigned char *digest)
{
    unsigned int size = 32;
    //  EVP_Digest fails only without memory or a SHA-256 provider: no
    //  credential may then match anything
    if (!EVP_Digest (data, len, digest, &size, EVP_sha256 (), NULL))
        memset (digest, 0, 32);
}

//  --------------------------------------------------------------------------
//  The SHA-256 of `key` as hex.
void
gateway_auth_key_hash (const char *key, char *hex)
{
    assert (key);
    assert (hex);
    unsigned char digest[32];
    s_sha256 (key, strlen (key), digest);
    for (size_t index = 0; index < 32; index++)
        snprintf (hex + 2 * index, 3, "%02x", digest[index]);
}

//  The algorithm a PEM public key is for (RSA: RS256, EC P-256: ES256), or
//  JWT_ALG_INVAL with `error` set.
static jwt_alg_t
s_public_key_alg (const char *path, const char *pem, size_t len, char *error, size_t size)
{
    BIO *bio = BIO_new_mem_buf (pem, (int)len);
    EVP_PKEY *key = bio ? PEM_read_bio_PUBKEY (bio, NULL, NULL, NULL) : NULL;
    BIO_free (bio);
    jwt_alg_t alg = JWT_ALG_INVAL;
    if (!key)
        snprintf (error, size, "'%s' is not a PEM public key", path);
    else if (EVP_PKEY_get_base_id (key) == EVP_PKEY_RSA)
        alg = JWT_ALG_RS256;
    else if (EVP_PKEY_get_base_id (key) == EVP_PKEY_EC) {
        char group[64] = "";
        size_t group_len = 0;
        EVP_PKEY_get_utf8_string_param (key, "group", group, sizeof group, &group_len);
        if (strcmp (group, "prime256v1") == 0 || strcmp (group, "P-256") == 0)
            alg = JWT_ALG_ES256;
        else
            snprintf (error, size, "'%s': EC keys must be on P-256 (ES256), not '%s'", path, group);
    }
    else if (EVP_PKEY_get_base_id (key) == EVP_PKEY_ED25519)
        snprintf (error, size, "'%s': EdDSA needs libjwt 1.11 or later (Debian 12 has 1.10)", path);
    else
        snprintf (error, size, "'%s': only RSA (RS256) and P-256 (ES256) keys are supported", path);
    EVP_PKEY_free (key);
    return alg;
}

//  Read the keys of one comma list of files. Returns 0 or -1 with `error`.
static int
s_load_jwt_keys (gateway_auth_t *self, const char *files, bool secrets, char *error, size_t size)
{
    size_t loaded = 0;
    while (files && *files) {
        size_t len = strcspn (files, ",");
        char path[4096];
        snprintf (path, sizeof path, "%.*s", (int)len, files);
        files += len + (files[len] ? 1 : 0);
        if (!path[0])
            continue;
        if (loaded == GATEWAY_AUTH_MAX_KEYS) {
            snprintf (error, size, "at most %d keys of each kind", GATEWAY_AUTH_MAX_KEYS);
            return -1;
        }
        size_t key_len = 0;
        char *key = mesh_file_read (path, S_MAX_KEY_FILE, &key_len, error, size);
        if (!key)
            return -1;
        jwt_alg_t alg = JWT_ALG_HS256;
        if (secrets) {
            mesh_secret_trim (key, &key_len);
            if (key_len < S_MIN_SECRET) {
                snprintf (error, size, "'%s': an HS256 secret needs %d bytes at least", path,
                          S_MIN_SECRET);
                free (key);
                return -1;
            }
        }
        else
            alg = s_public_key_alg (path, key, key_len, error, size);
        if (alg == JWT_ALG_INVAL) {
            free (key);
            return -1;
        }
        s_jwt_key_t *entry = &self->keys[self->key_count++];
        entry->alg = alg;
        entry->key = (unsigned char *)key;
        entry->len = key_len;
        loaded++;
    }
    return 0;
}

//  True when `name` is a sane key name: 1..64 of [A-Za-z0-9._@:-].
static bool
s_name_valid (const char *name, size_t len)
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789._@:-";
    if (len == 0 || len > S_NAME_MAX)
        return false;
    for (size_t index = 0; index < len; index++)
        if (!name[index] || !strchr (allowed, name[index]))
            return false;
    return true;
}

//  Parse one line of the keys file into *key. Returns 1 for a key, 0 for a
//  blank or comment line, -1 for a malformed line.
static int
s_parse_key_line (char *line, s_api_key_t *key)
{
    static const char blanks[] = " \t\r";
    char *fields[4] = {NULL};
    size_t count = 0;
    char *save = NULL;
    for (char *field = strtok_r (line, blanks, &save); field;
         field = strtok_r (NULL, blanks, &save)) {
        if (count == 0 && field[0] == '#')
            return 0;
        if (count == 3)
            return -1;
        fields[count++] = field;
    }
    if (count == 0)
        return 0;
    if (count != 3 || !s_name_valid (fields[0], strlen (fields[0])) || strlen (fields[1]) != 64 ||
        strspn (fields[1], "0123456789abcdefABCDEF") != 64)
        return -1;
    snprintf (key->name, sizeof key->name, "%s", fields[0]);
    for (size_t index = 0; index < 32; index++) {
        char byte[3] = {fields[1][2 * index], fields[1][2 * index + 1], '\0'};
        key->digest[index] = (unsigned char)strtoul (byte, NULL, 16);
    }
    key->scopes = gateway_scopes_parse (fields[2], ",");
    return 1;
}

//  Read the API keys file. On success the new keys replace the old ones;
//  on failure nothing changes. Returns 0 or -1 with `error`.
static int
s_load_api_keys (gateway_auth_t *self, char *error, size_t size)
{
    struct stat info;
    if (stat (self->api_keys_file, &info) != 0) {
        snprintf (error, size, "cannot read '%s': %s", self->api_keys_file, strerror (errno));
        return -1;
    }
    size_t len = 0;
    char *text = mesh_file_read (self->api_keys_file, S_MAX_KEYS_FILE, &len, error, size);
    if (!text)
        return -1;
    size_t capacity = 16, count = 0;
    s_api_key_t *keys = mesh_alloc (capacity * sizeof (s_api_key_t));
    size_t line_no = 0;
    int rc = 0;
    for (char *line = text; line && *line;) {
        char *end = strchr (line, '\n');
        if (end)
            *end = '\0';
        line_no++;
        if (count == capacity) {
            capacity *= 2;
            keys = mesh_realloc (keys, capacity * sizeof (s_api_key_t));
        }
        int parsed = s_parse_key_line (line, &keys[count]);
        if (parsed < 0) {
            snprintf (error, size, "'%s' line %zu: want NAME SHA256-HEX SCOPE[,SCOPE...]",
                      self->api_keys_file, line_no);
            rc = -1;
            break;
        }
        count += (size_t)parsed;
        line = end ? end + 1 : NULL;
    }
    free (text);
    if (rc) {
        free (keys);
        return -1;
    }
    free (self->api_keys);
    self->api_keys = keys;
    self->api_key_count = count;
    self->api_keys_stat = info;
    return 0;
}

//  Read the keys file again when it has changed since it was read (looked
//  at once a second at most). A file that is now broken keeps the keys in
//  force, and says so in the log.
static void
s_maybe_reload (gateway_auth_t *self)
{
    int64_t now_ms = mesh_mono_ms ();
    if (now_ms - self->api_keys_checked_ms < S_RELOAD_CHECK_MS)
        return;
    self->api_keys_checked_ms = now_ms;
    struct stat info;
    const struct stat *old = &self->api_keys_stat;
    if (stat (self->api_keys_file, &info) != 0)
        memset (&info, 0, sizeof info);
    if (info.st_ino == old->st_ino && info.st_size == old->st_size &&
        info.st_mtim.tv_sec == old->st_mtim.tv_sec && info.st_mtim.tv_nsec == old->st_mtim.tv_nsec)
        return;
    char error[512];
    if (s_load_api_keys (self, error, sizeof error) == 0) {
        char count[16];
        snprintf (count, sizeof count, "%zu", self->api_key_count);
        mesh_log_kv (MESH_LOG_INFO, "API keys reloaded", "file", self->api_keys_file, "keys", count,
                     NULL);
    }
    else {
        //  Do not look again until it changes once more
        self->api_keys_stat = info;
        mesh_log_kv (MESH_LOG_WARN, "API keys file not reloaded, the old keys stay", "error", error,
                     NULL);
    }
}

//  A copy of `text`, or NULL when it is NULL or empty.
static char *
s_strdup_or_null (const char *text)
{
    return text && *text ? mesh_strndup (text, strlen (text)) : NULL;
}

//  --------------------------------------------------------------------------
//  Read the keys and the keys file.
gateway_auth_t *
gateway_auth_new (const gateway_auth_cfg_t *cfg, char *error, size_t size)
{
    assert (cfg);
    assert (error);
    gateway_auth_t *self = mesh_alloc (sizeof (gateway_auth_t));
    self->issuer = s_strdup_or_null (cfg->issuer);
    self->audience = s_strdup_or_null (cfg->audience);
    self->leeway_s = cfg->leeway_s;
    self->api_keys_file = s_strdup_or_null (cfg->api_keys_file);
    if (s_load_jwt_keys (self, cfg->hs256_secret_files, true, error, size) ||
        s_load_jwt_keys (self, cfg->public_key_files, false, error, size))
        goto fail;
    if (self->api_keys_file) {
        if (s_load_api_keys (self, error, size))
            goto fail;
        self->api_keys_checked_ms = mesh_mono_ms ();
    }
    self->cache_entries = cfg->cache_entries;
    if (self->cache_entries)
        self->cache = mesh_alloc (self->cache_entries * sizeof (s_cache_entry_t));
    return self;
fail:
    gateway_auth_destroy (&self);
    return NULL;
}

//  --------------------------------------------------------------------------
//  Destroy; nulls the caller's pointer.
void
gateway_auth_destroy (gateway_auth_t **self_p)
{
    assert (self_p);
    if (*self_p) {
        gateway_auth_t *self = *self_p;
        for (size_t index = 0; index < self->key_count; index++) {
            OPENSSL_cleanse (self->keys[index].key, self->keys[index].len);
            free (self->keys[index].key);
        }
        free (self->issuer);
        free (self->audience);
        free (self->api_keys_file);
        free (self->api_keys);
        free (self->cache);
        free (self);
        *self_p = NULL;
    }
}

//  The credential of a `Bearer` Authorization header (RFC 6750 2.1), or
//  NULL when the header is absent or of another scheme. *len is its length;
//  it may still be malformed (checked by the caller).
static const char *
s_bearer (const char *header, size_t *len)
{
    if (!header || strncasecmp (header, "Bearer", 6) != 0 || (header[6] != ' '))
        return NULL;
    const char *token = header + 6;
    token += strspn (token, " ");
    *len = strcspn (token, " \t");
    return token;
}

//  True when `token` is all b64token characters (RFC 6750 2.1).
static bool
s_token68 (const char *token, size_t len)
{
    static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                  "0123456789-._~+/=";
    for (size_t index = 0; index < len; index++)
        if (!strchr (allowed, token[index]) || !token[index])
            return false;
    return len > 0;
}

//  Compare the key's digest with every API key's, in constant time (all of
//  them, whatever matches).
static gateway_auth_outcome_t
s_check_api_key (gateway_auth_t *self, const unsigned char *digest, gateway_identity_t *identity,
                 char *why, size_t size)
{
    if (!self->api_keys_file) {
        snprintf (why, size, "the token is not a JWT (no API keys are configured)");
        return GATEWAY_AUTH_INVALID;
    }
    s_maybe_reload (self);
    const s_api_key_t *found = NULL;
    for (size_t index = 0; index < self->api_key_count; index++)
        if (CRYPTO_memcmp (digest, self->api_keys[index].digest, 32) == 0)
            found = &self->api_keys[index];
    if (!found) {
        snprintf (why, size, "unknown API key");
        return GATEWAY_AUTH_INVALID;
    }
    snprintf (identity->actor, sizeof identity->actor, "%s", found->name);
    identity->scopes = found->scopes;
    identity->api_key = true;
    return GATEWAY_AUTH_OK;
}

//  An integer time claim (NumericDate: a JSON number, fraction dropped).
//  Returns false when present and not a number in range.
static bool
s_time_claim (const json_t *claims, const char *name, int64_t *value, bool *present)
{
    const json_t *claim = json_object_get (claims, name);
    *present = claim != NULL;
    *value = 0;
    if (!claim)
        return true;
    if (!json_is_number (claim))
        return false;
    double number = json_number_value (claim);
    if (!(number >= 0 && number < 1e15))
        return false;
    *value = (int64_t)number;
    return true;
}

//  True when `aud` (a string or an array of strings) holds `audience`.
static bool
s_audience_has (const json_t *aud, const char *audience)
{
    if (json_is_string (aud))
        return strcmp (json_string_value (aud), audience) == 0;
    size_t index;
    const json_t *item;
    json_array_foreach (aud, index,
                        item) if (json_is_string (item) &&
                                  strcmp (json_string_value (item), audience) == 0) return true;
    return false;
}

//  True when `sub` can be an actor: 1..MESH_ENVELOPE_MAX_ACTOR bytes with
//  no control characters (it is logged and stored).
static bool
s_subject_valid (const char *sub)
{
    size_t len = strlen (sub);
    if (len == 0 || len > MESH_ENVELOPE_MAX_ACTOR)
        return false;
    for (size_t index = 0; index < len; index++)
        if ((unsigned char)sub[index] < 0x20 || sub[index] == 0x7f)
            return false;
    return true;
}

//  Check the claims of a verified token at `now_s`. Fills the cache entry
//  (identity, exp, nbf) and returns OK, or INVALID with `why`.
static gateway_auth_outcome_t
s_check_claims (gateway_auth_t *self, const json_t *claims, int64_t now_s, s_cache_entry_t *entry,
                char *why, size_t size)
{
    bool has_exp = false, has_nbf = false;
    if (!s_time_claim (claims, "exp", &entry->exp, &has_exp) || !has_exp) {
        snprintf (why, size, "the token has no valid 'exp' claim");
        return GATEWAY_AUTH_INVALID;
    }
    if (!s_time_claim (claims, "nbf", &entry->nbf, &has_nbf)) {
        snprintf (why, size, "the token's 'nbf' claim is not a time");
        return GATEWAY_AUTH_INVALID;
    }
    if (now_s > entry->exp + self->leeway_s) {
        snprintf (why, size, "the token has expired");
        return GATEWAY_AUTH_INVALID;
    }
    if (has_nbf && now_s + self->leeway_s < entry->nbf) {
        snprintf (why, size, "the token is not valid yet (nbf)");
        return GATEWAY_AUTH_INVALID;
    }
    const char *iss = json_string_value (json_object_get (claims, "iss"));
    if (self->issuer && (!iss || strcmp (iss, self->issuer) != 0)) {
        snprintf (why, size, "the token is from another issuer");
        return GATEWAY_AUTH_INVALID;
    }
    if (self->audience && !s_audience_has (json_object_get (claims, "aud"), self->audience)) {
        snprintf (why, size, "the token is for another audience");
        return GATEWAY_AUTH_INVALID;
    }
    const char *sub = json_string_value (json_object_get (claims, "sub"));
    if (!sub || !s_subject_valid (sub)) {
        snprintf (why, size, "the token has no valid 'sub' claim");
        return GATEWAY_AUTH_INVALID;
    }
    snprintf (entry->identity.actor, sizeof entry->identity.actor, "%s", sub);
    entry->identity.scopes =
        gateway_scopes_parse (json_string_value (json_object_get (claims, "scope")), " ");
    entry->identity.api_key = false;
    return GATEWAY_AUTH_OK;
}

//  Verify `token` with the keys pinned to its header's algorithm. Returns
//  the verified token (caller frees) or NULL with `why`.
static jwt_t *
s_verify (gateway_auth_t *self, const char *token, char *why, size_t size)
{
    //  Parsing without a key verifies nothing; it only tells which key
    //  may verify the token. Nothing else is read from this parse.
    jwt_t *unverified = NULL;
    if (jwt_decode (&unverified, token, NULL, 0) != 0 || !unverified) {
        snprintf (why, size, "the token is malformed");
        return NULL;
    }
    const char *alg_name = jwt_get_header (unverified, "alg");
    jwt_alg_t alg = alg_name ? jwt_str_alg (alg_name) : JWT_ALG_INVAL;
    char shown[16];
    snprintf (shown, sizeof shown, "%s", alg_name ? alg_name : "");
    jwt_free (unverified);
    bool any_key = false;
    for (size_t index = 0; index < self->key_count; index++) {
        const s_jwt_key_t *key = &self->keys[index];
        if (key->alg != alg || alg == JWT_ALG_NONE)
            continue;
        any_key = true;
        jwt_t *verified = NULL;
        if (jwt_decode (&verified, token, key->key, (int)key->len) == 0 && verified) {
            if (jwt_get_alg (verified) == key->alg)
                return verified;
            jwt_free (verified);
        }
    }
    if (any_key)
        snprintf (why, size, "the token's signature does not verify");
    else
        snprintf (why, size, "the token's algorithm '%s' is not accepted", shown);
    return NULL;
}

//  A JWT: from the cache, or verified and checked (and then cached).
static gateway_auth_outcome_t
s_check_jwt (gateway_auth_t *self, const char *token, const unsigned char *digest, int64_t now_s,
             gateway_identity_t *identity, char *why, size_t size)
{
    s_cache_entry_t *cached = NULL;
    if (self->cache_entries) {
        uint64_t slot = 0;
        memcpy (&slot, digest, sizeof slot);
        cached = &self->cache[slot % self->cache_entries];
        if (cached->used && CRYPTO_memcmp (cached->digest, digest, 32) == 0) {
            //  The signature and the other claims cannot have changed
            if (now_s > cached->exp + self->leeway_s) {
                cached->used = false;
                snprintf (why, size, "the token has expired");
                return GATEWAY_AUTH_INVALID;
            }
            if (cached->nbf && now_s + self->leeway_s < cached->nbf) {
                snprintf (why, size, "the token is not valid yet (nbf)");
                return GATEWAY_AUTH_INVALID;
            }
            *identity = cached->identity;
            return GATEWAY_AUTH_OK;
        }
    }
    if (self->key_count == 0) {
        snprintf (why, size, "JWTs are not accepted (no JWT keys are configured)");
        return GATEWAY_AUTH_INVALID;
    }
    jwt_t *jwt = s_verify (self, token, why, size);
    if (!jwt)
        return GATEWAY_AUTH_INVALID;
    char *text = jwt_get_grants_json (jwt, NULL);
    jwt_free (jwt);
    json_t *claims = text ? json_loads (text, JSON_REJECT_DUPLICATES, NULL) : NULL;
    free (text);
    s_cache_entry_t entry = {.used = true};
    gateway_auth_outcome_t outcome = GATEWAY_AUTH_INVALID;
    if (!json_is_object (claims))
        snprintf (why, size, "the token's claims are not a JSON object");
    else
        outcome = s_check_claims (self, claims, now_s, &entry, why, size);
    json_decref (claims);
    if (outcome != GATEWAY_AUTH_OK)
        return outcome;
    *identity = entry.identity;
    if (cached) {
        memcpy (entry.digest, digest, 32);
        *cached = entry;
    }
    return GATEWAY_AUTH_OK;
}

//  --------------------------------------------------------------------------
//  Check the value of an Authorization header.
gateway_auth_outcome_t
gateway_auth_check (gateway_auth_t *self, const char *authorization, int64_t now_s,
                    gateway_identity_t *identity, char *why, size_t size)
{
    assert (self);
    assert (identity);
    assert (why);
    memset (identity, 0, sizeof *identity);
    size_t len = 0;
    const char *token = s_bearer (authorization, &len);
    if (!token) {
        snprintf (why, size,
                  authorization ? "the Authorization header is not a Bearer token"
                                : "no credential: send Authorization: Bearer TOKEN");
        return authorization ? GATEWAY_AUTH_INVALID : GATEWAY_AUTH_MISSING;
    }
    if (len > GATEWAY_AUTH_MAX_TOKEN) {
        snprintf (why, size, "the token is longer than %d bytes", GATEWAY_AUTH_MAX_TOKEN);
        return GATEWAY_AUTH_INVALID;
    }
    if (!s_token68 (token, len) || token[len + strspn (token + len, " \t")]) {
        snprintf (why, size, "the token has characters a bearer token cannot have");
        return GATEWAY_AUTH_INVALID;
    }
    char copy[GATEWAY_AUTH_MAX_TOKEN + 1];
    memcpy (copy, token, len);
    copy[len] = '\0';
    unsigned char digest[32];
    s_sha256 (copy, len, digest);
    gateway_auth_outcome_t outcome =
        memchr (copy, '.', len) ? s_check_jwt (self, copy, digest, now_s, identity, why, size)
                                : s_check_api_key (self, digest, identity, why, size);
    OPENSSL_cleanse (copy, len);
    return outcome;
}
