/*  =========================================================================
    test_gateway_auth - the gateway's authentication, without a network
    JWTs signed by libjwt with keys the openssl tool makes (HS256, RS256,
    ES256), and every way a token can be wrong: expired, not yet valid,
    another issuer or audience, a wrong signature, `alg: none`, a public key
    used as an HMAC secret, malformed, huge. API keys from a file, by
    hash, reread when the file changes. Settings that must be refused.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "gateway_auth.h"
#include "jwt_test.h"

#include "mesh/mesh_time.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static jwt_test_keys_t s_keys;

static void
s_setup (void)
{
    jwt_test_keys_make (&s_keys);
}

static void
s_teardown (void)
{
    jwt_test_keys_remove (&s_keys);
}

TestSuite (gateway_auth, .init = s_setup, .fini = s_teardown, .timeout = 30.);

//  An auth over the HS256 secret and both public keys, iss and aud set.
static gateway_auth_t *
s_auth_all (void)
{
    char public_keys[300];
    snprintf (public_keys, sizeof public_keys, "%s,%s", s_keys.rsa_public, s_keys.ec_public);
    gateway_auth_cfg_t cfg = {
        .hs256_secret_files = s_keys.hs_secret,
        .public_key_files = public_keys,
        .issuer = "https://issuer.test",
        .audience = "zmesh",
        .leeway_s = 30,
        .cache_entries = 64,
    };
    char error[512] = "";
    gateway_auth_t *auth = gateway_auth_new (&cfg, error, sizeof error);
    cr_assert_not_null (auth, "%s", error);
    return auth;
}

//  Check `Bearer token` now; returns the outcome, *identity and why.
static gateway_auth_outcome_t
s_check (gateway_auth_t *auth, const char *token, gateway_identity_t *identity, char *why)
{
    char header[GATEWAY_AUTH_MAX_TOKEN + 64];
    snprintf (header, sizeof header, "Bearer %s", token);
    return gateway_auth_check (auth, header, (int64_t)time (NULL), identity, why, 192);
}

//  A token of `alg` signed by `key` for the standard issuer and audience.
static char *
s_token (jwt_alg_t alg, const char *key, int64_t exp_in_s, const char *extra)
{
    char claims[512], more[256];
    snprintf (more, sizeof more, ",\"iss\":\"https://issuer.test\",\"aud\":\"zmesh\"%s",
              extra ? extra : "");
    return jwt_test_token (alg, key,
                           jwt_test_claims (claims, sizeof claims, "user-42", exp_in_s,
                                            "users:read audit:read", more));
}

//  Expect `token` to be refused with a `why` containing `want`.
static void
s_expect_refused (gateway_auth_t *auth, const char *token, const char *want)
{
    gateway_identity_t identity;
    char why[192] = "";
    cr_expect_eq (s_check (auth, token, &identity, why), GATEWAY_AUTH_INVALID, "accepted: %s",
                  token);
    cr_expect (strstr (why, want), "why: '%s', want '%s'", why, want);
    cr_expect_str_eq (identity.actor, "");
}

//  Expect an HS256 token with `claims` to be refused with `want` in why.
static void
s_expect_claims_refused (gateway_auth_t *auth, const char *claims, const char *want)
{
    char *token = jwt_test_token (JWT_ALG_HS256, s_keys.hs_secret, claims);
    s_expect_refused (auth, token, want);
    free (token);
}

Test (gateway_auth, valid_tokens_of_each_algorithm)
{
    gateway_auth_t *auth = s_auth_all ();
    jwt_test_signer_t cases[JWT_TEST_SIGNERS];
    jwt_test_signers (&s_keys, cases);
    for (size_t index = 0; index < JWT_TEST_SIGNERS; index++) {
        char *token = s_token (cases[index].alg, cases[index].key, 300, NULL);
        gateway_identity_t identity;
        char why[192] = "";
        cr_assert_eq (s_check (auth, token, &identity, why), GATEWAY_AUTH_OK, "%s: %s",
                      jwt_alg_str (cases[index].alg), why);
        cr_expect_str_eq (identity.actor, "user-42");
        cr_expect_eq (identity.scopes, GATEWAY_SCOPE_USERS_READ | GATEWAY_SCOPE_AUDIT_READ);
        cr_expect_not (identity.api_key);
        //  Again: from the cache, same answer
        cr_assert_eq (s_check (auth, token, &identity, why), GATEWAY_AUTH_OK);
        cr_expect_str_eq (identity.actor, "user-42");
        free (token);
    }
    gateway_auth_destroy (&auth);
    cr_assert_null (auth);
}

Test (gateway_auth, missing_and_other_schemes)
{
    gateway_auth_t *auth = s_auth_all ();
    gateway_identity_t identity;
    char why[192];
    cr_assert_eq (gateway_auth_check (auth, NULL, time (NULL), &identity, why, sizeof why),
                  GATEWAY_AUTH_MISSING);
    cr_assert_eq (gateway_auth_check (auth, "Basic YW5uOnNlY3JldA==", time (NULL), &identity, why,
                                      sizeof why),
                  GATEWAY_AUTH_INVALID);
    cr_assert_eq (gateway_auth_check (auth, "Bearer", time (NULL), &identity, why, sizeof why),
                  GATEWAY_AUTH_INVALID);
    cr_assert_eq (gateway_auth_check (auth, "Bearer ", time (NULL), &identity, why, sizeof why),
                  GATEWAY_AUTH_INVALID);
    //  The scheme is case-insensitive (RFC 7235)
    char *token = s_token (JWT_ALG_HS256, s_keys.hs_secret, 300, NULL);
    char header[2048];
    snprintf (header, sizeof header, "bearer %s", token);
    cr_assert_eq (gateway_auth_check (auth, header, time (NULL), &identity, why, sizeof why),
                  GATEWAY_AUTH_OK, "%s", why);
    snprintf (header, sizeof header, "Bearer %s extra", token);
    cr_assert_eq (gateway_auth_check (auth, header, time (NULL), &identity, why, sizeof why),
                  GATEWAY_AUTH_INVALID);
    free (token);
    gateway_auth_destroy (&auth);
}

Test (gateway_auth, time_claims_with_leeway)
{
    gateway_auth_t *auth = s_auth_all ();
    char *token = s_token (JWT_ALG_HS256, s_keys.hs_secret, -120, NULL);
    s_expect_refused (auth, token, "expired");
    free (token);
    //  Expired 10 s ago: inside the 30 s leeway
    token = s_token (JWT_ALG_HS256, s_keys.hs_secret, -10, NULL);
    gateway_identity_t identity;
    char why[192] = "";
    cr_expect_eq (s_check (auth, token, &identity, why), GATEWAY_AUTH_OK, "%s", why);
    free (token);
    char nbf[64];
    snprintf (nbf, sizeof nbf, ",\"nbf\":%lld", (long long)time (NULL) + 600);
    token = s_token (JWT_ALG_HS256, s_keys.hs_secret, 900, nbf);
    s_expect_refused (auth, token, "not valid yet");
    free (token);
    snprintf (nbf, sizeof nbf, ",\"nbf\":%lld", (long long)time (NULL) + 10);
    token = s_token (JWT_ALG_HS256, s_keys.hs_secret, 900, nbf);
    cr_expect_eq (s_check (auth, token, &identity, why), GATEWAY_AUTH_OK, "%s", why);
    free (token);
    //  No exp at all, or one that is not a number
    s_expect_claims_refused (
        auth, "{\"sub\":\"a\",\"iss\":\"https://issuer.test\",\"aud\":\"zmesh\"}", "'exp'");
    s_expect_claims_refused (auth,
                             "{\"sub\":\"a\",\"exp\":\"tomorrow\",\"iss\":\"https://issuer.test\","
                             "\"aud\":\"zmesh\"}",
                             "'exp'");
    gateway_auth_destroy (&auth);
}

Test (gateway_auth, a_cached_token_still_expires)
{
    gateway_auth_t *auth = s_auth_all ();
    char *token = s_token (JWT_ALG_RS256, s_keys.rsa_private, 60, NULL);
    char header[2048];
    snprintf (header, sizeof header, "Bearer %s", token);
    gateway_identity_t identity;
    char why[192];
    int64_t now = time (NULL);
    cr_assert_eq (gateway_auth_check (auth, header, now, &identity, why, sizeof why),
                  GATEWAY_AUTH_OK, "%s", why);
    cr_assert_eq (gateway_auth_check (auth, header, now + 60 + 31, &identity, why, sizeof why),
                  GATEWAY_AUTH_INVALID);
    cr_expect (strstr (why, "expired"), "%s", why);
    free (token);
    gateway_auth_destroy (&auth);
}

Test (gateway_auth, issuer_and_audience)
{
    gateway_auth_t *auth = s_auth_all ();
    char claims[512];
    s_expect_claims_refused (auth,
                             jwt_test_claims (claims, sizeof claims, "a", 300, "users:read",
                                              ",\"iss\":\"https://evil.test\",\"aud\":\"zmesh\""),
                             "issuer");
    s_expect_claims_refused (auth,
                             jwt_test_claims (claims, sizeof claims, "a", 300, "users:read",
                                              ",\"iss\":\"https://issuer.test\",\"aud\":\"other\""),
                             "audience");
    s_expect_claims_refused (auth,
                             jwt_test_claims (claims, sizeof claims, "a", 300, "users:read",
                                              ",\"iss\":\"https://issuer.test\""),
                             "audience");
    //  An array of audiences that holds ours
    char *token = jwt_test_token (JWT_ALG_HS256, s_keys.hs_secret,
                                  jwt_test_claims (claims, sizeof claims, "a", 300, "users:read",
                                                   ",\"iss\":\"https://issuer.test\","
                                                   "\"aud\":[\"other\",\"zmesh\"]"));
    gateway_identity_t identity;
    char why[192] = "";
    cr_expect_eq (s_check (auth, token, &identity, why), GATEWAY_AUTH_OK, "%s", why);
    free (token);
    //  No sub: no identity
    s_expect_claims_refused (
        auth, "{\"exp\":9999999999,\"iss\":\"https://issuer.test\",\"aud\":\"zmesh\"}", "'sub'");
    gateway_auth_destroy (&auth);
}

Test (gateway_auth, forged_tokens)
{
    gateway_auth_t *auth = s_auth_all ();
    //  Signed with another secret
    char *token = s_token (JWT_ALG_HS256, s_keys.hs_other, 300, NULL);
    s_expect_refused (auth, token, "signature");
    free (token);
    //  alg none: no signature at all
    token = s_token (JWT_ALG_NONE, NULL, 300, NULL);
    s_expect_refused (auth, token, "'none' is not accepted");
    free (token);
    //  The confusion attack: HS256 with the RSA public key (which the
    //  attacker knows) as the HMAC secret
    token = s_token (JWT_ALG_HS256, s_keys.rsa_public, 300, NULL);
    s_expect_refused (auth, token, "signature");
    free (token);
    //  A good RS256 token whose signature is from the EC key
    token = s_token (JWT_ALG_RS256, s_keys.rsa_private, 300, NULL);
    char *other = s_token (JWT_ALG_ES256, s_keys.ec_private, 300, NULL);
    char spliced[4096];
    snprintf (spliced, sizeof spliced, "%.*s%s", (int)(strrchr (token, '.') - token), token,
              strrchr (other, '.'));
    s_expect_refused (auth, spliced, "signature");
    //  A changed payload under a good signature
    char *dot = strchr (token, '.');
    dot[3] = dot[3] == 'A' ? 'B' : 'A';
    s_expect_refused (auth, token, "");
    free (token);
    free (other);
    gateway_auth_destroy (&auth);

    //  Only the public key configured: the confusion attack still fails
    gateway_auth_cfg_t cfg = {.public_key_files = s_keys.rsa_public, .leeway_s = 30};
    char error[512] = "";
    auth = gateway_auth_new (&cfg, error, sizeof error);
    cr_assert_not_null (auth, "%s", error);
    token = s_token (JWT_ALG_HS256, s_keys.rsa_public, 300, NULL);
    s_expect_refused (auth, token, "'HS256' is not accepted");
    free (token);
    gateway_auth_destroy (&auth);
}

Test (gateway_auth, malformed_tokens)
{
    gateway_auth_t *auth = s_auth_all ();
    const char *const tokens[] = {
        "a.b",
        "a.b.c",
        "a.b.c.d",
        "...",
        "eyJhbGciOiJIUzI1NiJ9.%%%%.sig",
        "eyJhbGciOiJIUzI1NiJ9.bm90IGpzb24.c2ln", //  Payload "not json"
        "bm90IGpzb24.e30.c2ln",                  //  Header "not json"
        "eyJhbGciOjF9.e30.c2ln",                 //  alg is a number
        "eyJ0eXAiOiJKV1QifQ.e30.c2ln",           //  No alg
        "e30.e30.",
    };
    for (size_t index = 0; index < sizeof tokens / sizeof tokens[0]; index++)
        s_expect_refused (auth, tokens[index], "");
    //  Huge
    char *huge = malloc (GATEWAY_AUTH_MAX_TOKEN + 100);
    memset (huge, 'a', GATEWAY_AUTH_MAX_TOKEN + 99);
    huge[GATEWAY_AUTH_MAX_TOKEN + 99] = '\0';
    huge[10] = '.';
    huge[20] = '.';
    s_expect_refused (auth, huge, "longer than");
    free (huge);
    gateway_auth_destroy (&auth);
}

//  Write `text` to `path`.
static void
s_write (const char *path, const char *text)
{
    FILE *file = fopen (path, "w");
    cr_assert_not_null (file);
    fputs (text, file);
    fclose (file);
}

Test (gateway_auth, api_keys_by_hash_and_reloaded)
{
    char path[160], hash[65], line[512];
    snprintf (path, sizeof path, "%s/api-keys", s_keys.dir);
    gateway_auth_key_hash ("zmk_first", hash);
    snprintf (line, sizeof line, "# name hash scopes\n\nci-bot %s users:read,users:write\n", hash);
    s_write (path, line);
    gateway_auth_cfg_t cfg = {.api_keys_file = path};
    char error[512] = "";
    gateway_auth_t *auth = gateway_auth_new (&cfg, error, sizeof error);
    cr_assert_not_null (auth, "%s", error);
    gateway_identity_t identity;
    char why[192] = "";
    cr_assert_eq (s_check (auth, "zmk_first", &identity, why), GATEWAY_AUTH_OK, "%s", why);
    cr_expect_str_eq (identity.actor, "ci-bot");
    cr_expect_eq (identity.scopes, GATEWAY_SCOPE_USERS_READ | GATEWAY_SCOPE_USERS_WRITE);
    cr_expect (identity.api_key);
    s_expect_refused (auth, "zmk_second", "unknown API key");
    //  JWTs are not accepted without JWT keys
    char *token = s_token (JWT_ALG_HS256, s_keys.hs_secret, 300, NULL);
    s_expect_refused (auth, token, "no JWT keys");
    free (token);

    //  Rotate: the file now holds only the second key. The file is looked
    //  at once a second: poll, bounded
    char hash2[65];
    gateway_auth_key_hash ("zmk_second", hash2);
    snprintf (line, sizeof line, "reader %s users:read\n", hash2);
    s_write (path, line);
    int64_t until = mesh_mono_ms () + 5000;
    while (s_check (auth, "zmk_second", &identity, why) != GATEWAY_AUTH_OK &&
           mesh_mono_ms () < until)
        nanosleep (&(struct timespec){0, 50 * 1000000L}, NULL);
    cr_assert_eq (s_check (auth, "zmk_second", &identity, why), GATEWAY_AUTH_OK, "%s", why);
    cr_expect_str_eq (identity.actor, "reader");
    s_expect_refused (auth, "zmk_first", "unknown API key");

    //  A broken file keeps the keys in force
    s_write (path, "this is not a key line\n");
    until = mesh_mono_ms () + 1500;
    while (mesh_mono_ms () < until) {
        cr_assert_eq (s_check (auth, "zmk_second", &identity, why), GATEWAY_AUTH_OK);
        nanosleep (&(struct timespec){0, 100 * 1000000L}, NULL);
    }
    gateway_auth_destroy (&auth);

    //  ... and a broken file at start is an error
    auth = gateway_auth_new (&cfg, error, sizeof error);
    cr_assert_null (auth);
    cr_expect (strstr (error, "line 1"), "%s", error);
}

Test (gateway_auth, bad_settings_are_refused)
{
    char path[160];
    snprintf (path, sizeof path, "%s/short.secret", s_keys.dir);
    s_write (path, "too short\n");
    const struct {
        gateway_auth_cfg_t cfg;
        const char *want;
    } cases[] = {
        {{.hs256_secret_files = path}, "32 bytes"},
        {{.hs256_secret_files = "/nonexistent/secret"}, "cannot read"},
        {{.public_key_files = s_keys.hs_secret}, "not a PEM public key"},
        {{.public_key_files = s_keys.rsa_private}, "not a PEM public key"},
        {{.public_key_files = s_keys.ed_public}, "EdDSA"},
        {{.api_keys_file = "/nonexistent/keys"}, "cannot read"},
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        char error[512] = "";
        gateway_auth_t *auth = gateway_auth_new (&cases[index].cfg, error, sizeof error);
        cr_expect_null (auth, "case %zu accepted", index);
        cr_expect (strstr (error, cases[index].want), "case %zu: '%s'", index, error);
        gateway_auth_destroy (&auth);
    }
}

Test (gateway_auth, scopes)
{
    cr_assert_eq (gateway_scopes_parse ("users:read events:read nonsense", " "),
                  GATEWAY_SCOPE_USERS_READ | GATEWAY_SCOPE_EVENTS_READ);
    cr_assert_eq (gateway_scopes_parse ("users:write,audit:read", ","),
                  GATEWAY_SCOPE_USERS_WRITE | GATEWAY_SCOPE_AUDIT_READ);
    cr_assert_eq (gateway_scopes_parse ("users:readx users:rea", " "), 0);
    cr_assert_eq (gateway_scopes_parse (NULL, " "), 0);
    cr_assert_str_eq (gateway_scope_name (GATEWAY_SCOPE_AUDIT_READ), "audit:read");
    char hash[65];
    gateway_auth_key_hash ("abc", hash);
    cr_assert_str_eq (hash, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}
