/*  =========================================================================
    test_gateway_api - every route and status of DESIGN.md's HTTP table
    Through the real mesh: a schema of DATABASE_URL, a broker, mesh-user
    and mesh-gateway (mesh_test_http). Checks successes (201 + Location,
    200, 204), mesh errors mapped to statuses with their problem+json
    bodies, request ids and trace context, the admin routes and the
    OpenAPI description. Skipped when DATABASE_URL is not set.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh_test_http.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mesh/mesh_time.h"

static mesh_test_mesh_t s_mesh;
//  The worker logs each request's id at debug level, the gateway at info
static const char *const s_user_flags[] = { "--log-level", "debug", NULL };
static const char *const s_gateway_flags[] = { "--log-level", "info", NULL };

static void
s_setup (void)
{
    mesh_test_mesh_start (&s_mesh, "test_gateway_api", 0, 1, s_user_flags, s_gateway_flags);
}

static void
s_teardown (void)
{
    mesh_test_mesh_stop (&s_mesh);
}

TestSuite (gateway_api, .init = s_setup, .fini = s_teardown, .timeout = 120.);

//  Skip when the mesh did not start for lack of DATABASE_URL.
static void
s_need_mesh (void)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
}

//  base + path into a static buffer.
static const char *
s_url (const char *path)
{
    static char url[512];
    snprintf (url, sizeof url, "%s%s", s_mesh.base, path);
    return url;
}

//  POST /v1/users; returns the new user (caller decrefs); fails unless 201.
static json_t *
s_create (const char *name, const char *email)
{
    char body[256];
    snprintf (body, sizeof body, "{\"name\":\"%s\",\"email\":\"%s\"}", name, email);
    mesh_test_http_response_t response = mesh_test_http_do ("POST", s_url ("/v1/users"), body,
                                                            NULL);
    cr_assert_eq (response.status, 201, "%s", response.body);
    json_t *user = mesh_test_http_json (&response);
    char location[128], want[128];
    cr_assert (mesh_test_http_header (&response, "Location", location, sizeof location));
    snprintf (want, sizeof want, "/v1/users/%s", mesh_test_json_str (user, "id"));
    cr_assert_str_eq (location, want);
    mesh_test_http_response_free (&response);
    return user;
}

Test (gateway_api, create_get_list_update_delete)
{
    s_need_mesh ();
    json_t *user = s_create ("Ann", "  Ann@Example.COM ");
    cr_assert_str_eq (mesh_test_json_str (user, "email"), "ann@example.com");
    cr_assert_str_eq (mesh_test_json_str (user, "name"), "Ann");
    cr_assert_not_null (mesh_test_json_str (user, "created_at"));
    cr_assert_not_null (mesh_test_json_str (user, "updated_at"));
    char path[128];
    snprintf (path, sizeof path, "/v1/users/%s", mesh_test_json_str (user, "id"));

    mesh_test_http_response_t response = mesh_test_http_do ("GET", s_url (path), NULL, NULL);
    cr_assert_eq (response.status, 200);
    char type[64];
    cr_assert (mesh_test_http_header (&response, "Content-Type", type, sizeof type));
    cr_assert_str_eq (type, "application/json");
    json_t *got = mesh_test_http_json (&response);
    cr_assert (json_equal (got, user));
    json_decref (got);
    mesh_test_http_response_free (&response);

    response = mesh_test_http_do ("PATCH", s_url (path), "{\"name\":\"Annie\"}", NULL);
    cr_assert_eq (response.status, 200, "%s", response.body);
    got = mesh_test_http_json (&response);
    cr_assert_str_eq (mesh_test_json_str (got, "name"), "Annie");
    cr_assert_str_eq (mesh_test_json_str (got, "email"), "ann@example.com");
    json_decref (got);
    mesh_test_http_response_free (&response);

    response = mesh_test_http_do ("DELETE", s_url (path), NULL, NULL);
    cr_assert_eq (response.status, 204);
    cr_assert_eq (response.body_len, 0);
    mesh_test_http_response_free (&response);

    response = mesh_test_http_do ("GET", s_url (path), NULL, NULL);
    json_decref (mesh_test_expect_problem (&response, 404, "urn:zmesh:problem:not-found"));
    mesh_test_http_response_free (&response);
    response = mesh_test_http_do ("DELETE", s_url (path), NULL, NULL);
    json_decref (mesh_test_expect_problem (&response, 404, "urn:zmesh:problem:not-found"));
    mesh_test_http_response_free (&response);
    json_decref (user);
}

Test (gateway_api, list_pages_with_limit_and_after)
{
    s_need_mesh ();
    for (int index = 0; index < 3; index++) {
        char email[64];
        snprintf (email, sizeof email, "page%d@example.com", index);
        json_decref (s_create ("Page", email));
    }
    size_t seen = 0;
    char path[256] = "/v1/users?limit=2";
    for (int page = 0; page < 5; page++) {
        mesh_test_http_response_t response = mesh_test_http_do ("GET", s_url (path), NULL, NULL);
        cr_assert_eq (response.status, 200, "%s", response.body);
        json_t *list = mesh_test_http_json (&response);
        json_t *items = json_object_get (list, "items");
        cr_assert (json_is_array (items));
        cr_assert_leq (json_array_size (items), 2);
        seen += json_array_size (items);
        json_t *next = json_object_get (list, "next");
        cr_assert (json_is_null (next) || json_is_string (next));
        bool done = json_is_null (next);
        if (!done) {
            char *escaped = curl_easy_escape (NULL, json_string_value (next), 0);
            snprintf (path, sizeof path, "/v1/users?limit=2&after=%s", escaped);
            curl_free (escaped);
        }
        json_decref (list);
        mesh_test_http_response_free (&response);
        if (done)
            break;
    }
    cr_assert_eq (seen, 3);
}

Test (gateway_api, mesh_errors_map_to_statuses)
{
    s_need_mesh ();
    json_decref (s_create ("Dup", "dup@example.com"));
    mesh_test_http_response_t response = mesh_test_http_do (
        "POST", s_url ("/v1/users"), "{\"name\":\"Dup\",\"email\":\"DUP@example.com\"}", NULL);
    json_decref (mesh_test_expect_problem (&response, 409, "urn:zmesh:problem:already-exists"));
    mesh_test_http_response_free (&response);

    response = mesh_test_http_do ("POST", s_url ("/v1/users"),
                                  "{\"name\":\"X\",\"email\":\"no-at-sign\"}", NULL);
    json_t *problem = mesh_test_expect_problem (&response, 422,
                                                "urn:zmesh:problem:invalid-argument");
    cr_assert_str_eq (mesh_test_json_str (problem, "field"), "email");
    json_decref (problem);
    mesh_test_http_response_free (&response);

    response = mesh_test_http_do ("POST", s_url ("/v1/users"), "{\"email\":\"a@example.com\"}",
                                  NULL);
    problem = mesh_test_expect_problem (&response, 422, "urn:zmesh:problem:invalid-argument");
    cr_assert_str_eq (mesh_test_json_str (problem, "field"), "name");
    json_decref (problem);
    mesh_test_http_response_free (&response);

    //  Well-formed JSON that is not an object breaks a rule: 422, not 400
    response = mesh_test_http_do ("POST", s_url ("/v1/users"), "[1,2]", NULL);
    json_decref (mesh_test_expect_problem (&response, 422, "urn:zmesh:problem:invalid-argument"));
    mesh_test_http_response_free (&response);

    response = mesh_test_http_do ("PATCH", s_url ("/v1/users/00000000-0000-4000-8000-000000000000"),
                                  "{\"name\":\"Nobody\"}", NULL);
    json_decref (mesh_test_expect_problem (&response, 404, "urn:zmesh:problem:not-found"));
    mesh_test_http_response_free (&response);
}

Test (gateway_api, bad_requests_get_precise_problems)
{
    s_need_mesh ();
    static const struct {
        const char *method;
        const char *path;
        const char *json;
        long status;
        const char *type;
    } cases[] = {
        { "GET", "/v1/users/not-a-uuid", NULL, 400, "urn:zmesh:problem:bad-parameter" },
        { "PATCH", "/v1/users/1234", "{}", 400, "urn:zmesh:problem:bad-parameter" },
        { "DELETE", "/v1/users/zzzzzzzz-0000-4000-8000-000000000000", NULL, 400,
          "urn:zmesh:problem:bad-parameter" },
        { "GET", "/v1/users?limit=0", NULL, 400, "urn:zmesh:problem:bad-parameter" },
        { "GET", "/v1/users?limit=501", NULL, 400, "urn:zmesh:problem:bad-parameter" },
        { "GET", "/v1/users?limit=ten", NULL, 400, "urn:zmesh:problem:bad-parameter" },
        { "GET", "/v1/users?after=", NULL, 400, "urn:zmesh:problem:bad-parameter" },
        { "GET", "/v1/users?colour=blue", NULL, 400, "urn:zmesh:problem:bad-parameter" },
        { "GET", "/v1/users?limit=1&limit=2", NULL, 400, "urn:zmesh:problem:bad-parameter" },
        { "GET", "/v1/audit?user_id=nope", NULL, 400, "urn:zmesh:problem:bad-parameter" },
        { "GET", "/v1/users?after=%ff%fe", NULL, 400, "urn:zmesh:problem:bad-parameter" },
        { "POST", "/v1/users", "{\"name\":", 400, "urn:zmesh:problem:malformed-json" },
        { "POST", "/v1/users", "{\"name\":\"a\",\"name\":\"b\"}", 400,
          "urn:zmesh:problem:malformed-json" },
        { "POST", "/v1/users", "", 400, "urn:zmesh:problem:malformed-json" },
        { "GET", "/v2/users", NULL, 404, "urn:zmesh:problem:no-route" },
        { "GET", "/v1/users/", NULL, 404, "urn:zmesh:problem:no-route" },
        { "GET", "/", NULL, 404, "urn:zmesh:problem:no-route" },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        mesh_test_http_response_t response = mesh_test_http_do (
            cases[index].method, s_url (cases[index].path), cases[index].json, NULL);
        json_decref (mesh_test_expect_problem (&response, cases[index].status,
                                               cases[index].type));
        mesh_test_http_response_free (&response);
    }
}

Test (gateway_api, wrong_method_gets_405_with_allow)
{
    s_need_mesh ();
    static const struct {
        const char *method;
        const char *path;
        const char *allow;
    } cases[] = {
        { "PUT", "/v1/users", "GET, HEAD, POST" },
        { "DELETE", "/v1/users", "GET, HEAD, POST" },
        { "POST", "/v1/users/00000000-0000-4000-8000-000000000000", "GET, HEAD, PATCH, DELETE" },
        { "POST", "/v1/audit", "GET, HEAD" },
        { "POST", "/v1/events", "GET" },
        { "DELETE", "/healthz", "GET, HEAD" },
        { "OPTIONS", "/metrics", "GET, HEAD" },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        mesh_test_http_response_t response = mesh_test_http_do (
            cases[index].method, s_url (cases[index].path), NULL, NULL);
        json_decref (mesh_test_expect_problem (&response, 405,
                                               "urn:zmesh:problem:method-not-allowed"));
        char allow[64];
        cr_assert (mesh_test_http_header (&response, "Allow", allow, sizeof allow));
        cr_assert_str_eq (allow, cases[index].allow);
        mesh_test_http_response_free (&response);
    }
}

Test (gateway_api, content_type_and_size_limits)
{
    s_need_mesh ();
    static const char *const text_plain[] = { "Content-Type: text/plain", NULL };
    mesh_test_http_request_t request = {
        .method = "POST", .url = s_url ("/v1/users"), .headers = text_plain,
        .body = "{\"name\":\"a\",\"email\":\"a@b.c\"}",
    };
    mesh_test_http_response_t response;
    cr_assert (mesh_test_http (&request, &response));
    json_decref (mesh_test_expect_problem (&response, 415,
                                           "urn:zmesh:problem:unsupported-media-type"));
    mesh_test_http_response_free (&response);

    //  No Content-Type at all is just as wrong
    static const char *const none[] = { "Content-Type:", NULL };
    request.headers = none;
    cr_assert (mesh_test_http (&request, &response));
    json_decref (mesh_test_expect_problem (&response, 415,
                                           "urn:zmesh:problem:unsupported-media-type"));
    mesh_test_http_response_free (&response);

    //  charset parameter allowed
    static const char *const charset[] = { "Content-Type: application/json; charset=utf-8",
                                           NULL };
    request.headers = charset;
    request.body = "{\"name\":\"Cs\",\"email\":\"charset@example.com\"}";
    cr_assert (mesh_test_http (&request, &response));
    cr_assert_eq (response.status, 201, "%s", response.body);
    mesh_test_http_response_free (&response);

    //  64 KiB is the limit: one byte more is 413 (a valid JSON string)
    size_t size = 64 * 1024 + 1;
    char *big = malloc (size + 1);
    memset (big, ' ', size);
    big[0] = '{';
    big[size - 1] = '}';
    big[size] = '\0';
    response = mesh_test_http_do ("POST", s_url ("/v1/users"), big, NULL);
    json_decref (mesh_test_expect_problem (&response, 413, "urn:zmesh:problem:body-too-large"));
    mesh_test_http_response_free (&response);
    //  Exactly the limit is read and judged on its content
    big[size - 2] = '}';
    big[size - 1] = '\0';
    response = mesh_test_http_do ("POST", s_url ("/v1/users"), big, NULL);
    json_decref (mesh_test_expect_problem (&response, 422, "urn:zmesh:problem:invalid-argument"));
    mesh_test_http_response_free (&response);
    free (big);
}

Test (gateway_api, request_id_and_traceparent)
{
    s_need_mesh ();
    static const char *const given[] = {
        "X-Request-ID: test-rid-42",
        "traceparent: 00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        NULL,
    };
    mesh_test_http_response_t response = mesh_test_http_do (
        "GET", s_url ("/v1/users/00000000-0000-4000-8000-000000000001"), NULL, given);
    cr_assert_eq (response.status, 404);
    char value[128];
    cr_assert (mesh_test_http_header (&response, "X-Request-ID", value, sizeof value));
    cr_assert_str_eq (value, "test-rid-42");
    cr_assert (mesh_test_http_header (&response, "traceparent", value, sizeof value));
    cr_assert_eq (strncmp (value, "00-4bf92f3577b34da6a3ce929d0e0e4736-", 36), 0, "%s", value);
    json_t *problem = mesh_test_http_json (&response);
    cr_assert_str_eq (mesh_test_json_str (problem, "request_id"), "test-rid-42");
    json_decref (problem);
    mesh_test_http_response_free (&response);
    //  The gateway and the worker that served it both log the id
    cr_assert (mesh_proc_wait_log (s_mesh.gateway, "\"request_id\":\"test-rid-42\"", 5000),
               "gateway log lacks the request id");
    cr_assert (mesh_proc_wait_log (s_mesh.users[0], "\"request_id\":\"test-rid-42\"", 5000),
               "worker log lacks the request id");
    cr_assert (mesh_proc_wait_log (s_mesh.gateway,
                                   "\"trace_id\":\"4bf92f3577b34da6a3ce929d0e0e4736\"", 5000));

    //  Without one the gateway makes a UUID; a bad one is replaced
    static const char *const bad[] = { "X-Request-ID: has space", NULL };
    response = mesh_test_http_do ("GET", s_url ("/healthz"), NULL, bad);
    cr_assert (mesh_test_http_header (&response, "X-Request-ID", value, sizeof value));
    cr_assert_eq (strlen (value), 36, "%s", value);
    cr_assert (mesh_test_http_header (&response, "traceparent", value, sizeof value));
    cr_assert_eq (strlen (value), 55);
    mesh_test_http_response_free (&response);

    //  Request-Timeout must be a positive number of seconds
    static const char *const timeout[] = { "Request-Timeout: soon", NULL };
    response = mesh_test_http_do ("GET", s_url ("/v1/users"), NULL, timeout);
    json_decref (mesh_test_expect_problem (&response, 400, "urn:zmesh:problem:bad-parameter"));
    mesh_test_http_response_free (&response);
    static const char *const short_timeout[] = { "Request-Timeout: 2.5", NULL };
    response = mesh_test_http_do ("GET", s_url ("/v1/users"), NULL, short_timeout);
    cr_assert_eq (response.status, 200);
    mesh_test_http_response_free (&response);
}

Test (gateway_api, audit_without_worker_is_503_then_501_from_a_stub)
{
    s_need_mesh ();
    mesh_test_http_response_t response = mesh_test_http_do ("GET", s_url ("/v1/audit"), NULL,
                                                            NULL);
    json_decref (mesh_test_expect_problem (&response, 503, "urn:zmesh:problem:unavailable"));
    char retry[16];
    cr_assert (mesh_test_http_header (&response, "Retry-After", retry, sizeof retry));
    cr_assert_str_eq (retry, "1");
    mesh_test_http_response_free (&response);

    //  A worker of service audit that knows no audit.list: 501
    mesh_proc_t *stub = mesh_test_echo_worker (s_mesh.broker.endpoint, "audit", 1, 200, NULL);
    cr_assert (mesh_test_wait_workers (s_mesh.broker.endpoint, "audit", 1, 10000));
    long status = 0;
    int64_t until = mesh_mono_ms () + 10000;
    while (status != 501 && mesh_mono_ms () < until) {
        //  Until the gateway's probe has seen the worker it answers 503
        response = mesh_test_http_do ("GET", s_url ("/v1/audit?limit=5"), NULL, NULL);
        status = response.status;
        if (status == 501)
            json_decref (mesh_test_expect_problem (&response, 501,
                                                   "urn:zmesh:problem:unimplemented"));
        else {
            cr_assert_eq (status, 503);
            usleep (10 * 1000);     //  Polled, as a client retrying after 503 would
        }
        mesh_test_http_response_free (&response);
    }
    cr_assert_eq (status, 501);
    mesh_proc_destroy (&stub);
}

Test (gateway_api, admin_routes_and_openapi)
{
    s_need_mesh ();
    mesh_test_http_response_t response = mesh_test_http_do ("GET", s_url ("/healthz"), NULL,
                                                            NULL);
    cr_assert_eq (response.status, 200);
    mesh_test_http_response_free (&response);
    response = mesh_test_http_do ("GET", s_url ("/ready"), NULL, NULL);
    cr_assert_eq (response.status, 200);
    mesh_test_http_response_free (&response);
    response = mesh_test_http_do ("HEAD", s_url ("/ready"), NULL, NULL);
    cr_assert_eq (response.status, 200);
    mesh_test_http_response_free (&response);
    response = mesh_test_http_do ("GET", s_url ("/openapi.yaml"), NULL, NULL);
    cr_assert_eq (response.status, 200);
    cr_assert_eq (strncmp (response.body, "openapi: 3.1", 12), 0, "%.40s", response.body);
    for (const char *path = "/v1/users"; path; path = NULL)
        cr_assert_not_null (strstr (response.body, path));
    cr_assert_not_null (strstr (response.body, "/v1/users/{id}:"));
    cr_assert_not_null (strstr (response.body, "/v1/events:"));
    cr_assert_not_null (strstr (response.body, "/v1/audit:"));
    mesh_test_http_response_free (&response);
}

Test (gateway_api, idempotency_key_replays_the_first_answer)
{
    s_need_mesh ();
    static const char *const key[] = { "Idempotency-Key: idem-test-1", NULL };
    const char *body = "{\"name\":\"Idem\",\"email\":\"idem@example.com\"}";
    mesh_test_http_response_t first = mesh_test_http_do ("POST", s_url ("/v1/users"), body, key);
    cr_assert_eq (first.status, 201, "%s", first.body);
    mesh_test_http_response_t again = mesh_test_http_do ("POST", s_url ("/v1/users"), body, key);
    cr_assert_eq (again.status, 201, "a repeat is answered like the first: %s", again.body);
    json_t *one = mesh_test_http_json (&first), *two = mesh_test_http_json (&again);
    cr_assert_str_eq (mesh_test_json_str (one, "id"), mesh_test_json_str (two, "id"));
    json_decref (one);
    json_decref (two);
    mesh_test_http_response_free (&first);
    mesh_test_http_response_free (&again);
    //  The same key with another request
    mesh_test_http_response_t other = mesh_test_http_do (
        "POST", s_url ("/v1/users"), "{\"name\":\"Other\",\"email\":\"other@example.com\"}", key);
    json_decref (mesh_test_expect_problem (&other, 422, "urn:zmesh:problem:failed-precondition"));
    mesh_test_http_response_free (&other);
    //  A malformed key is refused before the service sees it
    static const char *const bad[] = { "Idempotency-Key: has spaces in it", NULL };
    other = mesh_test_http_do ("POST", s_url ("/v1/users"), body, bad);
    json_decref (mesh_test_expect_problem (&other, 400, "urn:zmesh:problem:bad-parameter"));
    mesh_test_http_response_free (&other);
}

Test (gateway_api, served_openapi_is_valid_openapi_3_1)
{
    s_need_mesh ();
    if (system ("python3 -c 'import openapi_spec_validator' >/dev/null 2>&1") != 0)
        cr_skip_test ("python3 openapi-spec-validator is not installed");
    mesh_test_http_response_t response = mesh_test_http_do ("GET", s_url ("/openapi.yaml"),
                                                            NULL, NULL);
    cr_assert_eq (response.status, 200);
    char path[] = "/tmp/gateway-openapi-XXXXXX";
    int fd = mkstemp (path);
    cr_assert_geq (fd, 0);
    cr_assert_eq (write (fd, response.body, response.body_len), (ssize_t) response.body_len);
    close (fd);
    mesh_test_http_response_free (&response);
    char command[512];
    snprintf (command, sizeof command,
              "python3 -c 'import sys; from openapi_spec_validator import validate; "
              "from openapi_spec_validator.readers import read_from_filename; "
              "validate (read_from_filename (sys.argv[1])[0])' %s", path);
    int status = system (command);
    unlink (path);
    cr_assert_eq (status, 0, "the served description is not valid OpenAPI");
}
