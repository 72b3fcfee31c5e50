/*  =========================================================================
    test_trace_mesh - one POST /v1/users is one trace across the mesh
    The whole mesh (broker, mesh-user, mesh-audit, gateway) exports to a
    stand-in OTLP collector; a sampled POST gives gateway server and client
    spans, the user service's server span under the gateway's client span,
    the relay's publish span and the audit's ingest span (linked to the
    request) under the user span. A sampled-out request exports nothing.
    Skipped without DATABASE_URL.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_time.h"
#include "mesh_test_http.h"
#include "otlp_test.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static mesh_test_mesh_t s_mesh;
static otlp_test_t s_otlp;
static bool s_up;

//  The processes inherit the test's environment: the OTEL_* settings.
static void
s_setup (void)
{
    otlp_test_start (&s_otlp, 200);
    setenv ("OTEL_EXPORTER_OTLP_ENDPOINT", s_otlp.endpoint, 1);
    setenv ("OTEL_BSP_SCHEDULE_DELAY", "100", 1);
    setenv ("OTEL_RESOURCE_ATTRIBUTES", "deployment.environment=test", 1);
    //  The request log lines of the workers and the audit ingest are debug
    setenv ("MESH_LOG_LEVEL", "debug", 1);
    s_up = mesh_test_mesh_start (&s_mesh, "test_trace_mesh", 0, 1, NULL, NULL);
    if (s_up)
        mesh_test_mesh_audit_start (&s_mesh);
}

static void
s_teardown (void)
{
    mesh_test_mesh_stop (&s_mesh);
    otlp_test_stop (&s_otlp);
}

TestSuite (trace_mesh, .init = s_setup, .fini = s_teardown, .timeout = 120.);

//  The spans of one POST /v1/users: service, name pairs.
static const char *const s_whole_trace[] = {
    "mesh-gateway", "POST /v1/users",       "mesh-gateway", "user/user.create",
    "mesh-user",    "user/user.create",     "mesh-user",    "user_insert",
    "mesh-user",    "publish user.created", "mesh-audit",   "process user.created",
    NULL,
};

//  The span of `spans` from `service` named `name`; fails the test if none.
static json_t *
s_span (json_t *spans, const char *service, const char *name)
{
    json_t *span = otlp_test_find (spans, service, name);
    cr_assert_not_null (span, "no span %s from %s", name, service);
    return span;
}

static const char *
s_field (json_t *span, const char *name)
{
    const char *value = json_string_value (json_object_get (span, name));
    return value ? value : "";
}

//  POST a user with `traceparent`; expects 201.
static void
s_post (const char *traceparent, const char *email)
{
    char header[128], body[128];
    snprintf (header, sizeof header, "traceparent: %s", traceparent);
    snprintf (body, sizeof body, "{\"name\":\"Trace\",\"email\":\"%s\"}", email);
    const char *headers[] = {header, NULL};
    mesh_test_http_response_t response =
        mesh_test_http_do ("POST", mesh_test_mesh_url (&s_mesh, "/v1/users"), body, headers);
    cr_assert_eq (response.status, 201, "%ld %s", response.status, response.body);
    mesh_test_http_response_free (&response);
}

Test (trace_mesh, one_post_is_one_trace_from_gateway_to_audit)
{
    if (!s_up)
        cr_skip_test ("DATABASE_URL is not set");
    const char *trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    s_post ("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "trace@example.com");
    json_t *spans = otlp_test_wait_spans (&s_otlp, trace_id, s_whole_trace, 20000);
    cr_assert_not_null (spans, "the trace did not arrive whole");

    json_t *server = s_span (spans, "mesh-gateway", "POST /v1/users");
    json_t *client = s_span (spans, "mesh-gateway", "user/user.create");
    json_t *worker = s_span (spans, "mesh-user", "user/user.create");
    json_t *publish = s_span (spans, "mesh-user", "publish user.created");
    json_t *ingest = s_span (spans, "mesh-audit", "process user.created");
    json_t *insert = s_span (spans, "mesh-user", "user_insert");

    //  Parent and child: the client's traceparent is the server's child
    cr_assert_str_eq (s_field (server, "parentSpanId"), "00f067aa0ba902b7");
    cr_assert_str_eq (s_field (client, "parentSpanId"), s_field (server, "spanId"));
    cr_assert_str_eq (s_field (worker, "parentSpanId"), s_field (client, "spanId"));
    cr_assert_str_eq (s_field (publish, "parentSpanId"), s_field (worker, "spanId"));
    cr_assert_str_eq (s_field (insert, "parentSpanId"), s_field (worker, "spanId"));
    cr_assert_str_eq (otlp_test_attr (insert, "db.system"), "postgresql");
    cr_assert_str_eq (otlp_test_attr (insert, "db.operation"), "INSERT");
    cr_assert_str_eq (s_field (ingest, "parentSpanId"), s_field (worker, "spanId"));
    json_t *link = json_array_get (json_object_get (ingest, "links"), 0);
    cr_assert_str_eq (s_field (link, "traceId"), trace_id);
    cr_assert_str_eq (s_field (link, "spanId"), s_field (worker, "spanId"));

    //  Kinds and semantic-convention attributes
    cr_assert_eq (json_integer_value (json_object_get (server, "kind")), 2);
    cr_assert_eq (json_integer_value (json_object_get (client, "kind")), 3);
    cr_assert_eq (json_integer_value (json_object_get (worker, "kind")), 2);
    cr_assert_eq (json_integer_value (json_object_get (publish, "kind")), 4);
    cr_assert_eq (json_integer_value (json_object_get (ingest, "kind")), 5);
    cr_assert_str_eq (otlp_test_attr (server, "http.request.method"), "POST");
    cr_assert_str_eq (otlp_test_attr (server, "http.route"), "/v1/users");
    cr_assert_str_eq (otlp_test_attr (server, "http.response.status_code"), "201");
    cr_assert_str_eq (otlp_test_attr (client, "rpc.system"), "zmesh");
    cr_assert_str_eq (otlp_test_attr (client, "rpc.service"), "user");
    cr_assert_str_eq (otlp_test_attr (client, "rpc.method"), "user.create");
    cr_assert_str_eq (otlp_test_attr (worker, "rpc.method"), "user.create");
    cr_assert_str_eq (otlp_test_attr (publish, "messaging.destination.name"), "user.created");
    cr_assert_str_eq (otlp_test_attr (ingest, "messaging.operation.type"), "process");

    //  Children lie inside their parents' time
    cr_assert_leq (strtoull (s_field (server, "startTimeUnixNano"), NULL, 10),
                   strtoull (s_field (client, "startTimeUnixNano"), NULL, 10));
    cr_assert_geq (strtoull (s_field (server, "endTimeUnixNano"), NULL, 10),
                   strtoull (s_field (client, "endTimeUnixNano"), NULL, 10));

    //  The request's log lines carry its ids: each process's its own span
    char line[128];
    snprintf (line, sizeof line, "\"trace_id\":\"%s\",\"span_id\":\"%s\"", trace_id,
              s_field (server, "spanId"));
    cr_assert (mesh_proc_wait_log (s_mesh.gateway, line, 5000), "gateway: no line with %s", line);
    snprintf (line, sizeof line, "\"trace_id\":\"%s\",\"span_id\":\"%s\"", trace_id,
              s_field (worker, "spanId"));
    cr_assert (mesh_proc_wait_log (s_mesh.users[0], line, 5000), "user: no line with %s", line);
    snprintf (line, sizeof line, "\"trace_id\":\"%s\",\"span_id\":\"%s\"", trace_id,
              s_field (ingest, "spanId"));
    cr_assert (mesh_proc_wait_log (s_mesh.audit, line, 5000), "audit: no line with %s", line);
    json_decref (spans);

    //  And the audit service's request line (audit.list), under the trace
    //  the HTTP client gave, once the gateway knows audit has a worker
    cr_assert (mesh_proc_wait_log (s_mesh.gateway,
                                   "\"msg\":\"service has workers\",\"service\":\"audit\"",
                                   10000),
               "the gateway does not see the audit worker");
    const char *headers[] = {"traceparent: 00-5bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                             NULL};
    mesh_test_http_response_t response =
        mesh_test_http_do ("GET", mesh_test_mesh_url (&s_mesh, "/v1/audit"), NULL, headers);
    cr_assert_eq (response.status, 200, "%ld %s", response.status, response.body);
    mesh_test_http_response_free (&response);
    cr_assert (mesh_proc_wait_log (s_mesh.audit,
                                   "\"trace_id\":\"5bf92f3577b34da6a3ce929d0e0e4736\",\"span_id\"",
                                   5000),
               "audit: no request line in the client's trace");
}

Test (trace_mesh, a_sampled_out_request_exports_nothing)
{
    if (!s_up)
        cr_skip_test ("DATABASE_URL is not set");
    //  Not sampled upstream (flags 00): parent-based samplers follow
    s_post ("00-11111111111111111111111111111111-00f067aa0ba902b7-00", "out@example.com");
    //  Then a sampled one: once its audit span is in, the first request's
    //  spans, ended earlier in every process, would be in too
    s_post ("00-22222222222222222222222222222222-00f067aa0ba902b7-01", "in@example.com");
    json_t *spans =
        otlp_test_wait_spans (&s_otlp, "22222222222222222222222222222222", s_whole_trace, 20000);
    cr_assert_not_null (spans, "the sampled trace did not arrive");
    json_decref (spans);
    spans = otlp_test_wait (&s_otlp, "11111111111111111111111111111111", 1, 0);
    cr_assert_null (spans, "a sampled-out request exported spans");
}

Test (trace_mesh, one_get_is_one_trace_down_to_its_statement)
{
    if (!s_up)
        cr_skip_test ("DATABASE_URL is not set");
    //  A user to read, created under a trace of its own
    mesh_test_http_response_t response =
        mesh_test_http_do ("POST", mesh_test_mesh_url (&s_mesh, "/v1/users"),
                           "{\"name\":\"Read\",\"email\":\"read@example.com\"}", NULL);
    cr_assert_eq (response.status, 201, "%ld %s", response.status, response.body);
    json_t *user = json_loads (response.body, 0, NULL);
    mesh_test_http_response_free (&response);
    cr_assert_not_null (user);
    char path[96];
    snprintf (path, sizeof path, "/v1/users/%s",
              json_string_value (json_object_get (user, "id")));
    json_decref (user);

    //  The worker serves gets in batches (one pipeline): this one's user_find
    //  span still hangs under this request's worker span
    const char *headers[] = {"traceparent: 00-6bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                             NULL};
    response = mesh_test_http_do ("GET", mesh_test_mesh_url (&s_mesh, path), NULL, headers);
    cr_assert_eq (response.status, 200, "%ld %s", response.status, response.body);
    mesh_test_http_response_free (&response);
    static const char *const wanted[] = {
        "mesh-gateway", "GET /v1/users/{id}", "mesh-gateway", "user/user.get",
        "mesh-user",    "user/user.get",      "mesh-user",    "user_find",
        NULL,
    };
    json_t *spans =
        otlp_test_wait_spans (&s_otlp, "6bf92f3577b34da6a3ce929d0e0e4736", wanted, 20000);
    cr_assert_not_null (spans, "the GET's trace did not arrive whole");
    json_t *client = s_span (spans, "mesh-gateway", "user/user.get");
    json_t *worker = s_span (spans, "mesh-user", "user/user.get");
    json_t *find = s_span (spans, "mesh-user", "user_find");
    cr_assert_str_eq (s_field (worker, "parentSpanId"), s_field (client, "spanId"));
    cr_assert_str_eq (s_field (find, "parentSpanId"), s_field (worker, "spanId"));
    cr_assert_str_eq (otlp_test_attr (find, "db.operation"), "SELECT");
    json_decref (spans);
}
