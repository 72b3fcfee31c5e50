/*  =========================================================================
    test_curve_mesh - the whole mesh with CURVE on
    Broker, mesh-user, mesh-audit and mesh-gateway, each holding its own key
    with the grants docs/security.md gives it, on a real PostgreSQL: a user
    created over HTTP reaches the user service (gateway client), its event
    goes out through the outbox relay's PUB and the broker to the audit
    service's SUB, and /v1/audit (gateway to audit) shows it. Every socket of
    every process must carry its key for that to work. Skipped when
    DATABASE_URL is not set.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
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

    char http[64];
    int port = mesh_test_free_port ();
    snprintf (http, sizeof http, "127.0.0.1:%d", port);
    snprintf (s_base, sizeof s_base, "http://127.0.0.1:%d", port);
    const char *gateway_args[] = {"--http",         http,          "--broker",   s_broker.endpoint,
                                  "--events-sub",   s_broker.xpub, "--probe-ms", "50",
                                  "--heartbeat-ms", "200",         NULL};
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
}

TestSuite (curve_mesh, .init = s_setup, .fini = s_teardown, .timeout = 120.);

Test (curve_mesh, a_user_created_over_http_reaches_the_audit_log)
{
    if (!s_pg.admin)
        cr_skip_test ("DATABASE_URL is not set");
    char url[128], body[160], email[64];
    snprintf (email, sizeof email, "ada-%d@example.com", (int)getpid ());
    snprintf (body, sizeof body, "{\"name\":\"Ada\",\"email\":\"%s\"}", email);
    snprintf (url, sizeof url, "%s/v1/users", s_base);
    mesh_test_http_response_t response = mesh_test_http_do ("POST", url, body, NULL);
    cr_assert_eq (response.status, 201, "POST /v1/users: %ld %s", response.status, response.body);
    mesh_test_http_response_free (&response);

    //  The event travels relay PUB -> broker XSUB/XPUB -> audit SUB
    snprintf (url, sizeof url, "%s/v1/audit?limit=10", s_base);
    int64_t until = mesh_mono_ms () + S_WAIT_MS;
    bool seen = false;
    while (!seen && mesh_mono_ms () < until) {
        response = mesh_test_http_do ("GET", url, NULL, NULL);
        seen = response.status == 200 && strstr (response.body, email) != NULL;
        mesh_test_http_response_free (&response);
        if (!seen)
            usleep (50 * 1000); //  Polls the audit log, bounded by until
    }
    cr_assert (seen, "the user's event never reached the audit log");
    char *metrics = mesh_test_broker_metrics (&s_broker);
    cr_assert_not_null (metrics);
    cr_assert_eq (mesh_test_metric (metrics, "mesh_broker_refusals_total", NULL), 0.0,
                  "the documented grants suffice: no refusal");
    cr_assert_geq (mesh_test_metric (metrics, "mesh_broker_events_forwarded_total", NULL), 1.0);
    free (metrics);
}
