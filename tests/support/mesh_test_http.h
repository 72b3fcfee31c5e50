/*  =========================================================================
    mesh_test_http - helpers for gateway tests: a whole mesh, HTTP calls
    A mesh here is what scripts/run starts, on free loopback ports: a fresh
    schema of the DATABASE_URL database, a broker, mesh-user processes and
    mesh-gateway. HTTP requests go through libcurl with every option a test
    needs (method, headers, body) and a bounded time; responses keep status,
    headers and body for the assertions.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#ifndef MESH_TEST_HTTP_H_INCLUDED
#define MESH_TEST_HTTP_H_INCLUDED

#include "mesh_test.h"

#include <curl/curl.h>
#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#define MESH_TEST_MAX_USERS 4

typedef struct {
    mesh_test_pg_schema_t pg;   //  This test's schema
    mesh_test_broker_t broker;
    mesh_proc_t *users[MESH_TEST_MAX_USERS];    //  NULL when stopped
    mesh_proc_t *gateway;
    mesh_proc_t *audit;         //  NULL unless started
    char audit_schema[96];      //  The audit log's schema, "" when none
    int http_port;
    char base[64];              //  http://127.0.0.1:port
    const char *const *user_extra;  //  Extra mesh-user flags (borrowed)
    char heartbeat[16];         //  Of broker and users, in ms
} mesh_test_mesh_t;

//  Start a schema named after `prefix`, a broker (heartbeat `heartbeat_ms`,
//  0: 200 ms; the users and the gateway use the same), `users`
//  mesh-user processes of 2 workers each with `user_extra` flags (may be
//  NULL; borrowed for restarts) and the gateway with `gateway_extra` flags
//  (may be NULL), then wait until /ready answers 200. Returns false when
//  DATABASE_URL is unset (the test then skips); fails the test when
//  anything does not start.
bool
    mesh_test_mesh_start (mesh_test_mesh_t *mesh, const char *prefix, int heartbeat_ms,
                          size_t users, const char *const *user_extra,
                          const char *const *gateway_extra);

//  Start mesh-user number `index` (0-based) again, or for the first time.
void
    mesh_test_mesh_user_start (mesh_test_mesh_t *mesh, size_t index);

//  Start mesh-audit (its log in schema "<pg schema>_audit") and wait until
//  it has workers.
void
    mesh_test_mesh_audit_start (mesh_test_mesh_t *mesh);

//  Start the gateway (as mesh_test_mesh_start did) on a fresh port.
void
    mesh_test_mesh_gateway_start (mesh_test_mesh_t *mesh, const char *const *gateway_extra);

//  Stop everything: the gateway with SIGTERM (expects exit 0 within 15 s),
//  mesh-audit and the users with SIGTERM (each must exit 0), the broker;
//  drop the schemas.
//  Safe on a mesh half started.
void
    mesh_test_mesh_stop (mesh_test_mesh_t *mesh);

//  mesh->base + path, in a static buffer (valid until the next call).
const char *
    mesh_test_mesh_url (const mesh_test_mesh_t *mesh, const char *path);

//  Poll GET base/ready until it answers `want`. True when it did within
//  timeout_ms.
bool
    mesh_test_wait_ready (const char *base, long want, int timeout_ms);

//  One HTTP request.
typedef struct {
    const char *method;         //  NULL: GET
    const char *url;
    const char *const *headers; //  "Name: value" lines, NULL-terminated; may be NULL
    const char *body;           //  NULL: no body
    size_t body_len;            //  0 with body: strlen (body)
    long timeout_ms;            //  0: 10000
} mesh_test_http_request_t;

//  One HTTP response.
typedef struct {
    long status;                //  0 when none came
    char *headers;              //  Raw header lines (fresh string)
    char *body;                 //  NUL-terminated (fresh string)
    size_t body_len;
} mesh_test_http_response_t;

//  Perform `request` on a new connection. Returns true when a response came
//  (any status).
bool
    mesh_test_http (const mesh_test_http_request_t *request, mesh_test_http_response_t *response);

//  Shorthands: method, url, optional JSON body (Content-Type application/json
//  when not NULL), extra header lines (may be NULL). Fail the test when no
//  response comes.
mesh_test_http_response_t
    mesh_test_http_do (const char *method, const char *url, const char *json,
                       const char *const *headers);

//  Free a response's strings (safe twice).
void
    mesh_test_http_response_free (mesh_test_http_response_t *response);

//  Value of header `name` (case-insensitive) into `out`; false when absent.
bool
    mesh_test_http_header (const mesh_test_http_response_t *response, const char *name,
                           char *out, size_t size);

//  The body parsed as JSON (caller decrefs); fails the test when it is not.
json_t *
    mesh_test_http_json (const mesh_test_http_response_t *response);

//  Assert that `response` is problem+json with `status`, type `type`, a
//  title, a non-empty detail and request_id equal to its X-Request-ID
//  header. Returns the problem (caller decrefs).
json_t *
    mesh_test_expect_problem (const mesh_test_http_response_t *response, long status,
                              const char *type);

//  A libcurl easy handle for loopback tests: `url`, no proxy, no signals,
//  `timeout_ms` in all, the body discarded. Caller cleans it up.
CURL *
    mesh_test_curl_new (const char *url, long timeout_ms);

//  POST base/v1/users {name, email}; fails the test unless 201. The new
//  user's URL (base + Location) goes into `url`.
void
    mesh_test_create_user (const char *base, const char *name, const char *email, char *url,
                           size_t size);

//  String member `name` of object `json`, or NULL.
const char *
    mesh_test_json_str (const json_t *json, const char *name);

#endif
