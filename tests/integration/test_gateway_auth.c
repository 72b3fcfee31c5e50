/*  =========================================================================
    test_gateway_auth - the HTTP API's security, through real processes
    A broker, an echo worker serving `user` that answers every method with
    what it was asked and for whom ({method, actor, id}), and mesh-gateway
    with JWT keys (HS256, RS256, ES256 made by the openssl tool), an API
    keys file and CORS origins. Checks every 401 and 403, that a valid JWT
    or API key reaches the service with its identity as the envelope's
    actor, the open routes, CORS preflight and simple responses, the rate
    limit's 429 with its headers (per identity and per address), and HTTPS
    with a self-signed certificate. No database needed.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "jwt_test.h"
#include "mesh_test_http.h"

#include "gateway_auth.h"

#include "mesh/mesh_time.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define S_START_MS 15000
#define S_USER_URL "/v1/users/0b7e7b8e-51c1-4c8f-9a39-2f6f3c1f2a11"

static mesh_test_mesh_t s_mesh;
static jwt_test_keys_t s_keys;
static char s_api_keys[160];    //  The API keys file
static char s_public_keys[300]; //  "rsa.pub.pem,ec.pub.pem"

//  Write the API keys file: ci-bot (read and write), reader (read only).
static void
s_write_api_keys (void)
{
    snprintf (s_api_keys, sizeof s_api_keys, "%s/api-keys", s_keys.dir);
    char bot[65], reader[65];
    gateway_auth_key_hash ("zmk_ci_bot_key", bot);
    gateway_auth_key_hash ("zmk_reader_key", reader);
    FILE *file = fopen (s_api_keys, "w");
    cr_assert_not_null (file);
    fprintf (file, "ci-bot %s users:read,users:write\nreader %s users:read\n", bot, reader);
    fclose (file);
}

//  Keys, a broker and an echo worker serving `user` that answers
//  {method, actor, id}.
static void
s_start_backend (void)
{
    memset (&s_mesh, 0, sizeof s_mesh);
    snprintf (s_mesh.heartbeat, sizeof s_mesh.heartbeat, "200");
    jwt_test_keys_make (&s_keys);
    s_write_api_keys ();
    snprintf (s_public_keys, sizeof s_public_keys, "%s,%s", s_keys.rsa_public, s_keys.ec_public);
    cr_assert (mesh_test_broker_start (&s_mesh.broker, 200, NULL), "broker did not start");
    const char *const worker_flags[] = {"--reply-request", "1", NULL};
    s_mesh.users[0] = mesh_test_echo_worker (s_mesh.broker.endpoint, "user", 8, 200, worker_flags);
    cr_assert_not_null (s_mesh.users[0]);
    cr_assert (mesh_test_wait_workers (s_mesh.broker.endpoint, "user", 1, S_START_MS));
}

//  Start the gateway with the API keys and `extra` flags, and wait for its
//  "gateway serving" line (for gateways whose /healthz is not plain HTTP on
//  the API port). Sets s_mesh.gateway, http_port and base (http://).
static void
s_start_gateway_raw (const char *const *extra)
{
    char bin[1024], http[40];
    s_mesh.http_port = mesh_test_free_port ();
    snprintf (http, sizeof http, "127.0.0.1:%d", s_mesh.http_port);
    snprintf (s_mesh.base, sizeof s_mesh.base, "http://%s", http);
    const char *argv[32] = {mesh_test_bin ("mesh-gateway", bin, sizeof bin),
                            "--http",
                            http,
                            "--broker",
                            s_mesh.broker.endpoint,
                            "--events-sub",
                            s_mesh.broker.xpub,
                            "--probe-ms",
                            "50",
                            "--log-level",
                            "info",
                            "--api-keys-file",
                            s_api_keys};
    size_t count = 13;
    for (size_t index = 0; extra && extra[index]; index++)
        argv[count++] = extra[index];
    argv[count] = NULL;
    s_mesh.gateway = mesh_proc_start (argv, NULL);
    cr_assert_not_null (s_mesh.gateway);
    cr_assert (mesh_proc_wait_log (s_mesh.gateway, "gateway serving", S_START_MS),
               "the gateway did not start");
}

//  Start the backend and the gateway with the auth settings plus `extra`
//  (NULL-terminated, may be NULL).
static void
s_start (const char *const *extra)
{
    s_start_backend ();
    const char *argv[32] = {
        "--log-level",
        "info",
        "--jwt-hs256-secret-files",
        s_keys.hs_secret,
        "--jwt-public-key-files",
        s_public_keys,
        "--jwt-issuer",
        "https://issuer.test",
        "--jwt-audience",
        "zmesh",
        "--api-keys-file",
        s_api_keys,
        "--cors-origins",
        "https://app.example",
    };
    size_t count = 14;
    for (size_t index = 0; extra && extra[index]; index++)
        argv[count++] = extra[index];
    argv[count] = NULL;
    mesh_test_mesh_gateway_start (&s_mesh, argv);
    cr_assert (mesh_test_wait_ready (s_mesh.base, 200, S_START_MS), "gateway not ready");
}

static void
s_setup (void)
{
    s_start (NULL);
}

static void
s_teardown (void)
{
    mesh_test_mesh_stop (&s_mesh);
    jwt_test_keys_remove (&s_keys);
}

TestSuite (gateway_auth, .init = s_setup, .fini = s_teardown, .timeout = 120.);

//  A token of `alg` by `key` for sub "user-42" with `scope`, exp in 300 s,
//  the gateway's issuer and audience plus `extra` claims.
static char *
s_token (jwt_alg_t alg, const char *key, const char *scope, const char *extra)
{
    char claims[1024], more[512];
    snprintf (more, sizeof more, ",\"iss\":\"https://issuer.test\",\"aud\":\"zmesh\"%s",
              extra ? extra : "");
    return jwt_test_token (alg, key,
                           jwt_test_claims (claims, sizeof claims, "user-42", 300, scope, more));
}

//  `method` on `path` with `Authorization: Bearer credential` (NULL: no
//  header) and an optional JSON body.
static mesh_test_http_response_t
s_call (const char *method, const char *path, const char *credential, const char *json)
{
    static char header[GATEWAY_AUTH_MAX_TOKEN + 64];
    snprintf (header, sizeof header, "Authorization: Bearer %s", credential ? credential : "");
    const char *const headers[] = {header, NULL};
    return mesh_test_http_do (method, mesh_test_mesh_url (&s_mesh, path), json,
                              credential ? headers : NULL);
}

//  Expect the gateway's /metrics to have `value` for series `name` with
//  `labels`.
static void
s_expect_metric (const char *name, const char *labels, double value)
{
    mesh_test_http_response_t response =
        mesh_test_http_do ("GET", mesh_test_mesh_url (&s_mesh, "/metrics"), NULL, NULL);
    cr_assert_eq (response.status, 200);
    cr_expect_eq (mesh_test_metric (response.body, name, labels), value, "%s{%s}", name, labels);
    mesh_test_http_response_free (&response);
}

//  Expect a 401 whose challenge is exactly `challenge` or, when it is
//  NULL, says invalid_token.
static void
s_expect_401 (mesh_test_http_response_t *response, const char *challenge)
{
    json_t *problem = mesh_test_expect_problem (response, 401, "urn:zmesh:problem:unauthenticated");
    json_decref (problem);
    char value[512];
    cr_assert (mesh_test_http_header (response, "WWW-Authenticate", value, sizeof value));
    if (challenge)
        cr_expect_str_eq (value, challenge);
    else
        cr_expect (strncmp (value, "Bearer realm=\"zmesh\", error=\"invalid_token\"", 43) == 0,
                   "%s", value);
    mesh_test_http_response_free (response);
}

//  Expect 200 from the echo worker: the service saw `method` for `actor`.
static void
s_expect_reached (mesh_test_http_response_t *response, long status, const char *method,
                  const char *actor)
{
    cr_assert_eq (response->status, status, "%s", response->body);
    json_t *body = mesh_test_http_json (response);
    cr_expect_str_eq (mesh_test_json_str (body, "method"), method);
    cr_expect_str_eq (mesh_test_json_str (body, "actor"), actor);
    json_decref (body);
    mesh_test_http_response_free (response);
}

Test (gateway_auth, no_credential_is_401_with_a_challenge)
{
    mesh_test_http_response_t response = s_call ("GET", S_USER_URL, NULL, NULL);
    s_expect_401 (&response, "Bearer realm=\"zmesh\"");
    response = s_call ("POST", "/v1/users", NULL, "{\"name\":\"a\",\"email\":\"a@b.c\"}");
    s_expect_401 (&response, "Bearer realm=\"zmesh\"");
    response = s_call ("GET", "/v1/audit", NULL, NULL);
    s_expect_401 (&response, "Bearer realm=\"zmesh\"");
    response = s_call ("GET", "/v1/events", NULL, NULL);
    s_expect_401 (&response, "Bearer realm=\"zmesh\"");
    //  Another scheme is an invalid credential
    const char *const basic[] = {"Authorization: Basic YW5uOnNlY3JldA==", NULL};
    response = mesh_test_http_do ("GET", mesh_test_mesh_url (&s_mesh, S_USER_URL), NULL, basic);
    s_expect_401 (&response, NULL);
}

Test (gateway_auth, bad_tokens_are_401_and_nothing_else)
{
    char *expired = NULL, *future = NULL, *none = NULL, *audience = NULL, *confused = NULL,
         *wrong = NULL;
    char claims[512];
    expired =
        jwt_test_token (JWT_ALG_HS256, s_keys.hs_secret,
                        jwt_test_claims (claims, sizeof claims, "a", -3600, "users:read",
                                         ",\"iss\":\"https://issuer.test\",\"aud\":\"zmesh\""));
    char nbf[64];
    snprintf (nbf, sizeof nbf, ",\"nbf\":%lld", (long long)(mesh_wall_ms () / 1000) + 3600);
    future = s_token (JWT_ALG_HS256, s_keys.hs_secret, "users:read", nbf);
    none = s_token (JWT_ALG_NONE, NULL, "users:read", NULL);
    audience = jwt_test_token (JWT_ALG_HS256, s_keys.hs_secret,
                               jwt_test_claims (claims, sizeof claims, "a", 300, "users:read",
                                                ",\"iss\":\"https://issuer.test\",\"aud\":\"x\""));
    confused = s_token (JWT_ALG_HS256, s_keys.rsa_public, "users:read", NULL);
    wrong = s_token (JWT_ALG_HS256, s_keys.hs_other, "users:read", NULL);
    char huge[GATEWAY_AUTH_MAX_TOKEN + 100];
    memset (huge, 'a', sizeof huge - 1);
    huge[sizeof huge - 1] = '\0';
    const char *const tokens[] = {
        expired,
        future,
        none,
        audience,
        confused,
        wrong,
        "not-a-token",
        "a.b",
        "a.b.c.d",
        "%%%.%%%.%%%",
        "eyJhbGciOiJIUzI1NiJ9.e30.AAAA",
        "zmk_unknown_api_key",
        huge,
    };
    for (size_t index = 0; index < sizeof tokens / sizeof tokens[0]; index++) {
        mesh_test_http_response_t response = s_call ("GET", S_USER_URL, tokens[index], NULL);
        s_expect_401 (&response, NULL);
    }
    free (expired);
    free (future);
    free (none);
    free (audience);
    free (confused);
    free (wrong);
    //  A header over the gateway's header memory: libmicrohttpd refuses the
    //  request itself (431); the gateway keeps serving
    char *giant = malloc (40000);
    snprintf (giant, 40000, "Authorization: Bearer ");
    memset (giant + strlen (giant), 'a', 39999 - strlen (giant));
    giant[39999] = '\0';
    const char *const giant_headers[] = {giant, NULL};
    mesh_test_http_response_t response =
        mesh_test_http_do ("GET", mesh_test_mesh_url (&s_mesh, S_USER_URL), NULL, giant_headers);
    cr_expect (response.status == 431 || response.status == 400 || response.status == 0,
               "status %ld", response.status);
    mesh_test_http_response_free (&response);
    free (giant);
    response = mesh_test_http_do ("GET", mesh_test_mesh_url (&s_mesh, "/healthz"), NULL, NULL);
    cr_assert_eq (response.status, 200);
    mesh_test_http_response_free (&response);
    s_expect_metric ("http_requests_refused_total", "reason=\"invalid_credential\"",
                     (double)(sizeof tokens / sizeof tokens[0]));
}

Test (gateway_auth, valid_jwts_reach_the_service_with_their_subject)
{
    jwt_test_signer_t cases[JWT_TEST_SIGNERS];
    jwt_test_signers (&s_keys, cases);
    for (size_t index = 0; index < JWT_TEST_SIGNERS; index++) {
        char *token = s_token (cases[index].alg, cases[index].key, "users:read users:write", NULL);
        mesh_test_http_response_t response = s_call ("GET", S_USER_URL, token, NULL);
        s_expect_reached (&response, 200, "user.get", "user-42");
        response = s_call ("POST", "/v1/users", token, "{\"name\":\"a\",\"email\":\"a@b.c\"}");
        s_expect_reached (&response, 201, "user.create", "user-42");
        response = s_call ("DELETE", S_USER_URL, token, NULL);
        cr_expect_eq (response.status, 204, "%s", response.body);
        mesh_test_http_response_free (&response);
        free (token);
    }
    //  The gateway logs who asked
    cr_assert (mesh_proc_wait_log (s_mesh.gateway, "\"actor\":\"user-42\"", 5000));
}

Test (gateway_auth, api_keys_reach_the_service_with_their_name)
{
    mesh_test_http_response_t response = s_call ("GET", "/v1/users", "zmk_ci_bot_key", NULL);
    s_expect_reached (&response, 200, "user.list", "ci-bot");
    response = s_call ("PATCH", S_USER_URL, "zmk_ci_bot_key", "{\"name\":\"b\"}");
    s_expect_reached (&response, 200, "user.update", "ci-bot");
    response = s_call ("GET", S_USER_URL, "zmk_reader_key", NULL);
    s_expect_reached (&response, 200, "user.get", "reader");
}

//  Expect 403 insufficient_scope naming `scope`.
static void
s_expect_403 (mesh_test_http_response_t *response, const char *scope)
{
    json_t *problem =
        mesh_test_expect_problem (response, 403, "urn:zmesh:problem:permission-denied");
    cr_expect (strstr (mesh_test_json_str (problem, "detail"), scope));
    json_decref (problem);
    char value[512], want[256];
    cr_assert (mesh_test_http_header (response, "WWW-Authenticate", value, sizeof value));
    snprintf (want, sizeof want,
              "Bearer realm=\"zmesh\", error=\"insufficient_scope\", scope=\"%s\"", scope);
    cr_expect_str_eq (value, want);
    mesh_test_http_response_free (response);
}

//  Run `meshctl ARGS`; its first output line (newline cut) into `first`
//  and its second (if any) into `second`, `size` bytes each. Fails the
//  test unless it exits 0.
static void
s_meshctl (const char *args, char *first, char *second, size_t size)
{
    char bin[1024], command[2400];
    snprintf (command, sizeof command, "%s %s", mesh_test_bin ("meshctl", bin, sizeof bin), args);
    FILE *output = popen (command, "r");
    cr_assert_not_null (output);
    first[0] = second[0] = '\0';
    cr_assert_not_null (fgets (first, (int)size, output), "%s", command);
    if (!fgets (second, (int)size, output))
        second[0] = '\0';
    cr_assert_eq (pclose (output), 0, "%s", command);
    first[strcspn (first, "\n")] = '\0';
}

Test (gateway_auth, tokens_from_meshctl_are_accepted)
{
    const char *const keys[] = {s_keys.hs_secret, s_keys.rsa_private, s_keys.ec_private};
    for (size_t index = 0; index < 3; index++) {
        char args[600], token[4096], rest[64];
        snprintf (args, sizeof args,
                  "token ops@example --key-file %s --scopes users:read,audit:read --ttl 60 "
                  "--issuer https://issuer.test --audience zmesh",
                  keys[index]);
        s_meshctl (args, token, rest, sizeof token);
        mesh_test_http_response_t response = s_call ("GET", S_USER_URL, token, NULL);
        s_expect_reached (&response, 200, "user.get", "ops@example");
        //  users:write was not granted
        response = s_call ("DELETE", S_USER_URL, token, NULL);
        s_expect_403 (&response, "users:write");
    }
}

Test (gateway_auth, a_key_from_meshctl_works_without_a_restart)
{
    char key[256] = "", line[256] = "";
    s_meshctl ("apikey new-bot --scopes users:read", key, line, sizeof key);
    cr_assert_eq (strncmp (key, "zmk_", 4), 0, "%s", key);
    mesh_test_http_response_t response = s_call ("GET", S_USER_URL, key, NULL);
    s_expect_401 (&response, NULL);
    FILE *file = fopen (s_api_keys, "a");
    cr_assert_not_null (file);
    fputs (line, file);
    fclose (file);
    //  The gateway looks at the file once a second: poll, bounded
    int64_t until = mesh_mono_ms () + 10000;
    long status = 0;
    while (status != 200 && mesh_mono_ms () < until) {
        response = s_call ("GET", S_USER_URL, key, NULL);
        status = response.status;
        if (status != 200)
            mesh_test_http_response_free (&response);
        else
            s_expect_reached (&response, 200, "user.get", "new-bot");
        if (status != 200)
            mesh_proc_wait_exit (s_mesh.gateway, 100, NULL);
    }
    cr_assert_eq (status, 200, "the new key was not accepted");
    cr_assert (mesh_proc_wait_log (s_mesh.gateway, "API keys reloaded", 1000));
}

Test (gateway_auth, missing_scopes_are_403)
{
    mesh_test_http_response_t response =
        s_call ("POST", "/v1/users", "zmk_reader_key", "{\"name\":\"a\",\"email\":\"a@b.c\"}");
    s_expect_403 (&response, "users:write");
    response = s_call ("DELETE", S_USER_URL, "zmk_reader_key", NULL);
    s_expect_403 (&response, "users:write");
    response = s_call ("GET", "/v1/audit", "zmk_ci_bot_key", NULL);
    s_expect_403 (&response, "audit:read");
    char *token = s_token (JWT_ALG_RS256, s_keys.rsa_private, "audit:read", NULL);
    response = s_call ("GET", S_USER_URL, token, NULL);
    s_expect_403 (&response, "users:read");
    response = s_call ("GET", "/v1/events", token, NULL);
    s_expect_403 (&response, "events:read");
    free (token);
    s_expect_metric ("http_requests_refused_total", "reason=\"insufficient_scope\"", 5);
    s_expect_metric ("http_requests_authenticated_total", "credential=\"api_key\"", 3);
    s_expect_metric ("http_requests_authenticated_total", "credential=\"jwt\"", 2);
}

Test (gateway_auth, admin_routes_stay_open)
{
    const char *const paths[] = {"/healthz", "/ready", "/metrics", "/openapi.yaml"};
    for (size_t index = 0; index < 4; index++) {
        mesh_test_http_response_t response =
            mesh_test_http_do ("GET", mesh_test_mesh_url (&s_mesh, paths[index]), NULL, NULL);
        cr_expect_eq (response.status, 200, "%s: %ld", paths[index], response.status);
        mesh_test_http_response_free (&response);
    }
}

Test (gateway_auth, cors_preflight_and_simple_responses)
{
    const char *const preflight[] = {
        "Origin: https://app.example", "Access-Control-Request-Method: POST",
        "Access-Control-Request-Headers: authorization, content-type", NULL};
    mesh_test_http_response_t response =
        mesh_test_http_do ("OPTIONS", mesh_test_mesh_url (&s_mesh, "/v1/users"), NULL, preflight);
    cr_assert_eq (response.status, 204, "%s", response.body);
    char value[512];
    cr_assert (
        mesh_test_http_header (&response, "Access-Control-Allow-Origin", value, sizeof value));
    cr_expect_str_eq (value, "https://app.example");
    cr_assert (
        mesh_test_http_header (&response, "Access-Control-Allow-Methods", value, sizeof value));
    cr_expect (strstr (value, "POST"), "%s", value);
    cr_assert (
        mesh_test_http_header (&response, "Access-Control-Allow-Headers", value, sizeof value));
    cr_expect (strstr (value, "Authorization") && strstr (value, "Idempotency-Key"), "%s", value);
    cr_expect (mesh_test_http_header (&response, "Access-Control-Max-Age", value, sizeof value));
    cr_expect (mesh_test_http_header (&response, "Vary", value, sizeof value));
    mesh_test_http_response_free (&response);

    //  Another origin: refused, and nothing that would let a browser go on
    const char *const evil[] = {"Origin: https://evil.example",
                                "Access-Control-Request-Method: DELETE", NULL};
    response = mesh_test_http_do ("OPTIONS", mesh_test_mesh_url (&s_mesh, S_USER_URL), NULL, evil);
    json_decref (mesh_test_expect_problem (&response, 403, "urn:zmesh:problem:origin-not-allowed"));
    cr_expect_not (
        mesh_test_http_header (&response, "Access-Control-Allow-Origin", value, sizeof value));
    mesh_test_http_response_free (&response);

    //  Simple responses: the allowed origin may read them (even a 401)
    const char *const simple[] = {"Origin: https://app.example", NULL};
    response = mesh_test_http_do ("GET", mesh_test_mesh_url (&s_mesh, S_USER_URL), NULL, simple);
    cr_assert_eq (response.status, 401);
    cr_assert (
        mesh_test_http_header (&response, "Access-Control-Allow-Origin", value, sizeof value));
    cr_expect_str_eq (value, "https://app.example");
    cr_assert (
        mesh_test_http_header (&response, "Access-Control-Expose-Headers", value, sizeof value));
    cr_expect (strstr (value, "X-Request-ID") && strstr (value, "RateLimit"), "%s", value);
    cr_assert (mesh_test_http_header (&response, "Vary", value, sizeof value));
    cr_expect_str_eq (value, "Origin");
    mesh_test_http_response_free (&response);
    const char *const other[] = {"Origin: https://evil.example", NULL};
    response = mesh_test_http_do ("GET", mesh_test_mesh_url (&s_mesh, "/healthz"), NULL, other);
    cr_assert_eq (response.status, 200);
    cr_expect_not (
        mesh_test_http_header (&response, "Access-Control-Allow-Origin", value, sizeof value));
    mesh_test_http_response_free (&response);
}

//  The rate limit: its own gateway, 3 requests per caller then none for
//  100 s (0.01/s), so no token comes back while the test runs.
TestSuite (gateway_ratelimit, .fini = s_teardown, .timeout = 120.);

//  Expect a 429 from the rate limit with Retry-After and RateLimit headers.
static void
s_expect_429 (mesh_test_http_response_t *response)
{
    json_decref (mesh_test_expect_problem (response, 429, "urn:zmesh:problem:rate-limited"));
    char value[128];
    cr_assert (mesh_test_http_header (response, "Retry-After", value, sizeof value));
    cr_expect_gt (atol (value), 1, "Retry-After %s", value);
    cr_assert (mesh_test_http_header (response, "RateLimit-Policy", value, sizeof value));
    cr_expect_str_eq (value, "\"gateway\";q=3;w=300");
    cr_assert (mesh_test_http_header (response, "RateLimit", value, sizeof value));
    cr_expect (strncmp (value, "\"gateway\";r=0;t=", 16) == 0, "%s", value);
    mesh_test_http_response_free (response);
}

Test (gateway_ratelimit, per_identity_and_per_address)
{
    const char *const extra[] = {"--rate-limit", "0.01", "--rate-burst", "3", NULL};
    s_start (extra);
    for (int index = 0; index < 3; index++) {
        mesh_test_http_response_t response = s_call ("GET", S_USER_URL, "zmk_reader_key", NULL);
        cr_assert_eq (response.status, 200, "request %d: %s", index, response.body);
        char value[128], want[64];
        cr_assert (mesh_test_http_header (&response, "RateLimit", value, sizeof value));
        snprintf (want, sizeof want, "\"gateway\";r=%d;", 2 - index);
        cr_expect (strncmp (value, want, strlen (want)) == 0, "%s, want %s", value, want);
        mesh_test_http_response_free (&response);
    }
    mesh_test_http_response_t response = s_call ("GET", S_USER_URL, "zmk_reader_key", NULL);
    s_expect_429 (&response);
    //  Another identity from the same address has its own bucket
    response = s_call ("GET", S_USER_URL, "zmk_ci_bot_key", NULL);
    s_expect_reached (&response, 200, "user.get", "ci-bot");
    //  Without a credential the address is the caller: 401 thrice, then 429
    for (int index = 0; index < 3; index++) {
        response = s_call ("GET", S_USER_URL, NULL, NULL);
        s_expect_401 (&response, "Bearer realm=\"zmesh\"");
    }
    response = s_call ("GET", S_USER_URL, "zmk_guessed_key", NULL);
    s_expect_429 (&response);
    //  Open routes are never limited
    response = mesh_test_http_do ("GET", mesh_test_mesh_url (&s_mesh, "/healthz"), NULL, NULL);
    cr_expect_eq (response.status, 200);
    mesh_test_http_response_free (&response);
}

//  HTTPS: its own gateway with the self-signed certificate; curl trusts it
//  as its CA.
TestSuite (gateway_https, .fini = s_teardown, .timeout = 120.);

//  GET `url` over HTTPS trusting `ca`, with `authorization` (may be NULL).
//  Returns the status (0 when the TLS handshake or request failed).
static long
s_https_get (const char *url, const char *ca, const char *authorization)
{
    CURL *curl = mesh_test_curl_new (url, 10000);
    curl_easy_setopt (curl, CURLOPT_CAINFO, ca);
    struct curl_slist *headers = NULL;
    if (authorization)
        headers = curl_slist_append (headers, authorization);
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, headers);
    long status = 0;
    if (curl_easy_perform (curl) == CURLE_OK)
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all (headers);
    curl_easy_cleanup (curl);
    return status;
}

Test (gateway_https, serves_tls_with_the_configured_certificate)
{
    s_start_backend ();
    const char *const tls[] = {"--tls-cert-file", s_keys.tls_cert, "--tls-key-file", s_keys.tls_key,
                               NULL};
    s_start_gateway_raw (tls);
    cr_assert (mesh_proc_wait_log (s_mesh.gateway, "\"scheme\":\"https\"", 1000));
    int port = s_mesh.http_port;
    char url[128];
    snprintf (url, sizeof url, "https://127.0.0.1:%d/ready", port);
    long status = 0;
    int64_t until = mesh_mono_ms () + S_START_MS;
    while ((status = s_https_get (url, s_keys.tls_cert, NULL)) != 200 && mesh_mono_ms () < until)
        mesh_proc_wait_exit (s_mesh.gateway, 50, NULL);
    cr_assert_eq (status, 200, "GET /ready over HTTPS");
    snprintf (url, sizeof url, "https://127.0.0.1:%d" S_USER_URL, port);
    cr_expect_eq (s_https_get (url, s_keys.tls_cert, "Authorization: Bearer zmk_reader_key"), 200);
    cr_expect_eq (s_https_get (url, s_keys.tls_cert, NULL), 401);
    //  Without trusting the certificate, or in plain HTTP: no answer
    cr_expect_eq (s_https_get (url, "/etc/ssl/certs/ca-certificates.crt", NULL), 0);
    snprintf (url, sizeof url, "http://127.0.0.1:%d/healthz", port);
    mesh_test_http_response_t response;
    mesh_test_http_request_t request = {.url = url, .timeout_ms = 3000};
    mesh_test_http (&request, &response);
    cr_expect_neq (response.status, 200);
    mesh_test_http_response_free (&response);
}

//  A separate admin address: /healthz, /ready and /metrics there only, the
//  API on the HTTP port only.
TestSuite (gateway_admin, .fini = s_teardown, .timeout = 120.);

Test (gateway_admin, admin_routes_move_to_their_own_address)
{
    s_start_backend ();
    char admin[64], admin_base[96];
    snprintf (admin, sizeof admin, "127.0.0.1:%d", mesh_test_free_port ());
    snprintf (admin_base, sizeof admin_base, "http://%s", admin);
    const char *const extra[] = {"--admin", admin, NULL};
    s_start_gateway_raw (extra);
    char url[160];
    snprintf (url, sizeof url, "%s/ready", admin_base);
    cr_assert (mesh_test_wait_ready (admin_base, 200, S_START_MS), "/ready on the admin address");
    const char *const admin_paths[] = {"/healthz", "/ready", "/metrics"};
    for (size_t index = 0; index < 3; index++) {
        snprintf (url, sizeof url, "%s%s", admin_base, admin_paths[index]);
        mesh_test_http_response_t response = mesh_test_http_do ("GET", url, NULL, NULL);
        cr_expect_eq (response.status, 200, "admin %s", admin_paths[index]);
        mesh_test_http_response_free (&response);
        response =
            mesh_test_http_do ("GET", mesh_test_mesh_url (&s_mesh, admin_paths[index]), NULL, NULL);
        json_decref (mesh_test_expect_problem (&response, 404, "urn:zmesh:problem:no-route"));
        mesh_test_http_response_free (&response);
    }
    //  The API stays on the HTTP port, and only there
    mesh_test_http_response_t response = s_call ("GET", S_USER_URL, "zmk_reader_key", NULL);
    s_expect_reached (&response, 200, "user.get", "reader");
    snprintf (url, sizeof url, "%s" S_USER_URL, admin_base);
    response = mesh_test_http_do ("GET", url, NULL, NULL);
    cr_expect_eq (response.status, 404);
    mesh_test_http_response_free (&response);
    response = mesh_test_http_do ("GET", mesh_test_mesh_url (&s_mesh, "/openapi.yaml"), NULL, NULL);
    cr_expect_eq (response.status, 200);
    mesh_test_http_response_free (&response);
}
