/*  =========================================================================
    test_curve_mesh - the whole mesh with CURVE on
    Broker, mesh-user, mesh-audit and mesh-gateway, each holding its own key
    with the grants docs/security.md gives it, on a real PostgreSQL, and the
    gateway verifying JWTs, as scripts/run starts them: a user created over
    HTTP with a token reaches the user service (gateway client), its event
    goes out through the outbox relay's PUB and the broker to the audit
    service's SUB, and /v1/audit (gateway to audit) shows it with the
    token's subject as its actor (the broker let the gateway delegate).
    Every socket of every process must carry its key for that to work.
    Skipped when DATABASE_URL is not set.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "jwt_test.h"
#include "mesh/mesh_time.h"
#include "mesh_test_curve.h"
#include "mesh_test_http.h"
#include "user_test.h"

#include <criterion/criterion.h>
#include <jansson.h>
#include <libpq-fe.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_WAIT_MS 20000

static mesh_test_keys_t s_keys;
static mesh_test_pg_schema_t s_pg;
static char s_audit_schema[96];
static mesh_test_broker_t s_broker;
static mesh_proc_t *s_user;
static mesh_proc_t *s_audit;
static mesh_proc_t *s_gateway;
static char s_base[64]; //  http://127.0.0.1:port
static jwt_test_keys_t s_jwt_keys;
static char *s_token;            //  Bearer token of subject s_subject
static char s_auth_header[2048]; //  "Authorization: Bearer ..."
static char s_subject[64];

//  Stop `proc` with SIGTERM and expect exit status 0.
static void
s_stop (mesh_proc_t **proc_p, const char *what)
{
    if (!*proc_p)
        return;
    mesh_proc_signal (*proc_p, SIGTERM);
    int status = -1;
    bool exited = mesh_proc_wait_exit (*proc_p, 15000, &status);
    cr_expect (exited && WIFEXITED (status) && WEXITSTATUS (status) == 0, "%s exit status %d", what,
               status);
    mesh_proc_destroy (proc_p);
}

//  Start `binary` with `args` (NULL-terminated) and the CURVE flags of key `name`.
static mesh_proc_t *
s_start (const char *binary, const char *const *args, const char *name)
{
    char bin[512], secret[256];
    const char *argv[32] = {mesh_test_bin (binary, bin, sizeof bin)};
    size_t count = 1;
    for (size_t index = 0; args[index]; index++)
        argv[count++] = args[index];
    mesh_test_keys_flags (&s_keys, name, &argv[count], secret, sizeof secret);
    argv[count + 4] = NULL;
    mesh_proc_t *proc = mesh_proc_start (argv, NULL);
    cr_assert_not_null (proc, "cannot start %s", binary);
    return proc;
}

static void
s_setup (void)
{
    if (!mesh_test_pg_schema_new (&s_pg, "test_curve_mesh"))
        return;
    snprintf (s_audit_schema, sizeof s_audit_schema, "%s_log", s_pg.name);
    mesh_test_keys_new (&s_keys);
    mesh_test_keys_add (&s_keys, "user", (mesh_test_grants_t){.serve = "user", .publish = "user."},
                        true);
    mesh_test_keys_add (
        &s_keys, "audit",
        (mesh_test_grants_t){.serve = "audit", .call = "user", .subscribe = "user."}, true);
    mesh_test_keys_add (
        &s_keys, "gateway",
        (mesh_test_grants_t){.call = "user,audit", .subscribe = "user.", .delegate = true}, true);
    memset (&s_broker, 0, sizeof s_broker);
    cr_assert (mesh_test_curve_broker_start (&s_broker, &s_keys, 200), "broker did not start");

    char secret[256];
    const char *user_keys[5] = {NULL};
    mesh_test_keys_flags (&s_keys, "user", user_keys, secret, sizeof secret);
    s_user = user_test_start (&s_broker, s_pg.conninfo, 2, NULL, user_keys);
    cr_assert_not_null (s_user);

    const char *audit_args[] = {"--broker", s_broker.endpoint, "--events-sub", s_broker.xpub,
                                "--database-url", s_pg.conninfo, "--schema", s_audit_schema,
                                "--admin", "127.0.0.1:0", "--heartbeat-ms", "200",
                                //  Catch-up only at start: the event must come over SUB
                                "--catchup-ms", "3600000", NULL};
    s_audit = s_start ("mesh-audit", audit_args, "audit");

    jwt_test_keys_make (&s_jwt_keys);
    snprintf (s_subject, sizeof s_subject, "ops-ada-%d", (int)getpid ());
    char claims[256];
    jwt_test_claims (claims, sizeof claims, s_subject, 600, "users:read users:write audit:read",
                     ",\"iss\":\"zmesh-test\",\"aud\":\"zmesh\"");
    s_token = jwt_test_token (JWT_ALG_HS256, s_jwt_keys.hs_secret, claims);
    snprintf (s_auth_header, sizeof s_auth_header, "Authorization: Bearer %s", s_token);

    char http[64];
    int port = mesh_test_free_port ();
    snprintf (http, sizeof http, "127.0.0.1:%d", port);
    snprintf (s_base, sizeof s_base, "http://127.0.0.1:%d", port);
    const char *gateway_args[] = {"--http",
                                  http,
                                  "--broker",
                                  s_broker.endpoint,
                                  "--events-sub",
                                  s_broker.xpub,
                                  "--probe-ms",
                                  "50",
                                  "--heartbeat-ms",
                                  "200",
                                  "--jwt-hs256-secret-files",
                                  s_jwt_keys.hs_secret,
                                  "--jwt-issuer",
                                  "zmesh-test",
                                  "--jwt-audience",
                                  "zmesh",
                                  NULL};
    s_gateway = s_start ("mesh-gateway", gateway_args, "gateway");
    //  /ready is 200 once the gateway's probe (a CURVE DEALER) sees a user worker
    cr_assert (mesh_test_wait_ready (s_base, 200, S_WAIT_MS), "gateway not ready");
}

static void
s_teardown (void)
{
    s_stop (&s_gateway, "mesh-gateway");
    s_stop (&s_audit, "mesh-audit");
    user_test_stop (&s_user);
    mesh_test_broker_stop (&s_broker);
    mesh_test_pg_drop (s_pg.admin, s_audit_schema);
    mesh_test_pg_schema_drop (&s_pg);
    mesh_test_keys_destroy (&s_keys);
    jwt_test_keys_remove (&s_jwt_keys);
    free (s_token);
    s_token = NULL;
}

TestSuite (curve_mesh, .init = s_setup, .fini = s_teardown, .timeout = 120.);

Test (curve_mesh, a_user_created_over_http_reaches_the_audit_log_with_its_actor)
{
    if (!s_pg.admin)
        cr_skip_test ("DATABASE_URL is not set");
    char url[128], body[160], email[64];
    snprintf (email, sizeof email, "ada-%d@example.com", (int)getpid ());
    snprintf (body, sizeof body, "{\"name\":\"Ada\",\"email\":\"%s\"}", email);
    snprintf (url, sizeof url, "%s/v1/users", s_base);
    const char *const auth[] = {s_auth_header, NULL};

    //  No token: refused at the gateway, nothing reaches the mesh
    mesh_test_http_response_t response = mesh_test_http_do ("POST", url, body, NULL);
    cr_assert_eq (response.status, 401, "POST without a token: %ld %s", response.status,
                  response.body);
    mesh_test_http_response_free (&response);

    response = mesh_test_http_do ("POST", url, body, auth);
    cr_assert_eq (response.status, 201, "POST /v1/users: %ld %s", response.status, response.body);
    mesh_test_http_response_free (&response);

    //  The event travels relay PUB -> broker XSUB/XPUB -> audit SUB, with
    //  the token's subject as its actor
    snprintf (url, sizeof url, "%s/v1/audit?limit=10", s_base);
    int64_t until = mesh_mono_ms () + S_WAIT_MS;
    json_t *entry = NULL;
    while (!entry && mesh_mono_ms () < until) {
        response = mesh_test_http_do ("GET", url, NULL, auth);
        json_t *page = response.status == 200 ? json_loads (response.body, 0, NULL) : NULL;
        size_t index;
        json_t *item;
        json_array_foreach (json_object_get (page, "items"), index, item)
        {
            const char *seen =
                json_string_value (json_object_get (json_object_get (item, "data"), "email"));
            if (seen && strcmp (seen, email) == 0)
                entry = json_incref (item);
        }
        json_decref (page);
        mesh_test_http_response_free (&response);
        if (!entry)
            usleep (50 * 1000); //  Polls the audit log, bounded by until
    }
    cr_assert_not_null (entry, "the user's event never reached the audit log");
    cr_assert_str_eq (json_string_value (json_object_get (entry, "actor")), s_subject,
                      "the audit log names the token's subject");
    json_decref (entry);
    char *metrics = mesh_test_broker_metrics (&s_broker);
    cr_assert_not_null (metrics);
    cr_assert_eq (mesh_test_metric (metrics, "mesh_broker_refusals_total", NULL), 0.0,
                  "the documented grants suffice: no refusal");
    cr_assert_geq (mesh_test_metric (metrics, "mesh_broker_events_forwarded_total", NULL), 1.0);
    free (metrics);
}
