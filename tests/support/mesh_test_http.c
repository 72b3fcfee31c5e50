/*  =========================================================================
    mesh_test_http - helpers for gateway tests: a whole mesh, HTTP calls
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh_test_http.h"
#include "user_test.h"

#include "mesh/mesh_alloc.h"
#include "mesh/mesh_time.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/wait.h>

#define S_START_MS 15000            //  Bound on a process becoming ready

//  Growing text buffer for libcurl's callbacks.
typedef struct {
    char *data;
    size_t len;
} s_text_t;

static size_t
s_on_data (char *data, size_t size, size_t count, void *arg)
{
    s_text_t *text = (s_text_t *) arg;
    size_t bytes = size * count;
    text->data = mesh_realloc (text->data, text->len + bytes + 1);
    memcpy (text->data + text->len, data, bytes);
    text->len += bytes;
    text->data[text->len] = '\0';
    return bytes;
}

//  --------------------------------------------------------------------------
bool
mesh_test_http (const mesh_test_http_request_t *request, mesh_test_http_response_t *response)
{
    memset (response, 0, sizeof *response);
    s_text_t body = { mesh_strndup ("", 0), 0 };
    s_text_t headers = { mesh_strndup ("", 0), 0 };
    CURL *curl = curl_easy_init ();
    cr_assert_not_null (curl);
    struct curl_slist *list = NULL;
    for (size_t index = 0; request->headers && request->headers[index]; index++)
        list = curl_slist_append (list, request->headers[index]);
    curl_easy_setopt (curl, CURLOPT_URL, request->url);
    curl_easy_setopt (curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, request->timeout_ms? request->timeout_ms: 10000L);
    const char *method = request->method? request->method: "GET";
    if (strcmp (method, "HEAD") == 0)
        curl_easy_setopt (curl, CURLOPT_NOBODY, 1L);
    else if (strcmp (method, "GET") != 0)
        curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, method);
    if (request->body) {
        size_t len = request->body_len? request->body_len: strlen (request->body);
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, request->body);
        curl_easy_setopt (curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) len);
        if (strcmp (method, "POST") == 0)
            curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, NULL);
    }
    curl_easy_setopt (curl, CURLOPT_HTTPHEADER, list);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_on_data);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, &body);
    curl_easy_setopt (curl, CURLOPT_HEADERFUNCTION, s_on_data);
    curl_easy_setopt (curl, CURLOPT_HEADERDATA, &headers);
    CURLcode rc = curl_easy_perform (curl);
    long status = 0;
    curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup (curl);
    curl_slist_free_all (list);
    response->status = rc == CURLE_OK? status: 0;
    response->body = body.data;
    response->body_len = body.len;
    response->headers = headers.data;
    return response->status != 0;
}

//  --------------------------------------------------------------------------
mesh_test_http_response_t
mesh_test_http_do (const char *method, const char *url, const char *json,
                   const char *const *headers)
{
    const char *lines[16];
    size_t count = 0;
    if (json)
        lines[count++] = "Content-Type: application/json";
    for (size_t index = 0; headers && headers[index]; index++) {
        cr_assert_lt (count, 15);
        lines[count++] = headers[index];
    }
    lines[count] = NULL;
    mesh_test_http_request_t request = {
        .method = method, .url = url, .headers = lines, .body = json,
    };
    mesh_test_http_response_t response;
    cr_assert (mesh_test_http (&request, &response), "no response to %s %s", method, url);
    return response;
}

//  --------------------------------------------------------------------------
void
mesh_test_http_response_free (mesh_test_http_response_t *response)
{
    free (response->body);
    free (response->headers);
    response->body = response->headers = NULL;
}

//  --------------------------------------------------------------------------
bool
mesh_test_http_header (const mesh_test_http_response_t *response, const char *name, char *out,
                       size_t size)
{
    size_t name_len = strlen (name);
    for (const char *line = response->headers; line && *line;) {
        const char *end = strstr (line, "\r\n");
        size_t len = end? (size_t) (end - line): strlen (line);
        if (len > name_len && line[name_len] == ':' && strncasecmp (line, name, name_len) == 0) {
            const char *value = line + name_len + 1;
            while (*value == ' ')
                value++;
            size_t value_len = (size_t) (line + len - value);
            if (value_len >= size)
                value_len = size - 1;
            memcpy (out, value, value_len);
            out[value_len] = '\0';
            return true;
        }
        line = end? end + 2: line + len;
    }
    return false;
}

//  --------------------------------------------------------------------------
json_t *
mesh_test_http_json (const mesh_test_http_response_t *response)
{
    json_error_t error;
    json_t *json = json_loadb (response->body, response->body_len, 0, &error);
    cr_assert_not_null (json, "body is not JSON (%s): %s", error.text, response->body);
    return json;
}

static size_t
s_discard (char *data, size_t size, size_t count, void *arg)
{
    (void) data;
    (void) arg;
    return size * count;
}

//  --------------------------------------------------------------------------
CURL *
mesh_test_curl_new (const char *url, long timeout_ms)
{
    CURL *curl = curl_easy_init ();
    cr_assert_not_null (curl);
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_NOPROXY, "*");
    curl_easy_setopt (curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, timeout_ms);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_discard);
    return curl;
}

//  --------------------------------------------------------------------------
void
mesh_test_create_user (const char *base, const char *name, const char *email, char *url,
                       size_t size)
{
    char create[128], body[256];
    snprintf (create, sizeof create, "%s/v1/users", base);
    snprintf (body, sizeof body, "{\"name\":\"%s\",\"email\":\"%s\"}", name, email);
    mesh_test_http_response_t response = mesh_test_http_do ("POST", create, body, NULL);
    cr_assert_eq (response.status, 201, "%s", response.body);
    char location[96];
    cr_assert (mesh_test_http_header (&response, "Location", location, sizeof location));
    snprintf (url, size, "%s%s", base, location);
    mesh_test_http_response_free (&response);
}

//  --------------------------------------------------------------------------
const char *
mesh_test_json_str (const json_t *json, const char *name)
{
    return json_string_value (json_object_get (json, name));
}

//  --------------------------------------------------------------------------
json_t *
mesh_test_expect_problem (const mesh_test_http_response_t *response, long status,
                          const char *type)
{
    cr_assert_eq (response->status, status, "want %ld, got %ld: %s", status, response->status,
                  response->body);
    char content_type[128], request_id[160];
    cr_assert (mesh_test_http_header (response, "Content-Type", content_type,
                                      sizeof content_type));
    cr_assert_str_eq (content_type, "application/problem+json");
    cr_assert (mesh_test_http_header (response, "X-Request-ID", request_id, sizeof request_id));
    json_t *problem = mesh_test_http_json (response);
    cr_assert_str_eq (mesh_test_json_str (problem, "type"), type, "%s", response->body);
    cr_assert_not_null (mesh_test_json_str (problem, "title"));
    cr_assert_eq (json_integer_value (json_object_get (problem, "status")), status);
    const char *detail = mesh_test_json_str (problem, "detail");
    cr_assert (detail && *detail, "problem without detail: %s", response->body);
    cr_assert_str_eq (mesh_test_json_str (problem, "request_id"), request_id);
    return problem;
}

//  --------------------------------------------------------------------------
const char *
mesh_test_mesh_url (const mesh_test_mesh_t *mesh, const char *path)
{
    static char url[512];
    snprintf (url, sizeof url, "%s%s", mesh->base, path);
    return url;
}

//  --------------------------------------------------------------------------
bool
mesh_test_wait_ready (const char *base, long want, int timeout_ms)
{
    char url[128];
    snprintf (url, sizeof url, "%s/ready", base);
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (true) {
        mesh_test_http_request_t request = { .url = url, .timeout_ms = 2000 };
        mesh_test_http_response_t response;
        mesh_test_http (&request, &response);
        mesh_test_http_response_free (&response);
        if (response.status == want)
            return true;
        if (mesh_mono_ms () >= until)
            return false;
        usleep (20 * 1000);     //  Readiness is polled, as a probe would
    }
}

//  --------------------------------------------------------------------------
void
mesh_test_mesh_user_start (mesh_test_mesh_t *mesh, size_t index)
{
    cr_assert_lt (index, MESH_TEST_MAX_USERS);
    cr_assert_null (mesh->users[index], "mesh-user %zu is running", index);
    //  The mesh's heartbeat (flags: the last one wins), then the test's flags
    const char *extra[32] = { "--heartbeat-ms", mesh->heartbeat };
    size_t count = 2;
    for (size_t more = 0; mesh->user_extra && mesh->user_extra[more]; more++) {
        cr_assert_lt (count, 31);
        extra[count++] = mesh->user_extra[more];
    }
    extra[count] = NULL;
    mesh->users[index] = user_test_start (&mesh->broker, mesh->pg.conninfo, 2, NULL, extra);
}

//  SIGTERM `*proc_p` and expect exit status 0 within 15 s; destroys it.
static void
s_stop_expect_zero (mesh_proc_t **proc_p, const char *name)
{
    if (!*proc_p)
        return;
    mesh_proc_signal (*proc_p, SIGTERM);
    int status = -1;
    bool exited = mesh_proc_wait_exit (*proc_p, 15000, &status);
    cr_expect (exited && WIFEXITED (status) && WEXITSTATUS (status) == 0,
               "%s did not exit 0 on SIGTERM (status %d)", name, status);
    mesh_proc_destroy (proc_p);
}

//  --------------------------------------------------------------------------
void
mesh_test_mesh_audit_start (mesh_test_mesh_t *mesh)
{
    snprintf (mesh->audit_schema, sizeof mesh->audit_schema, "%s_audit", mesh->pg.name);
    char bin[1024], admin[64];
    snprintf (admin, sizeof admin, "127.0.0.1:%d", mesh_test_free_port ());
    const char *argv[] = {
        mesh_test_bin ("mesh-audit", bin, sizeof bin),
        "--broker", mesh->broker.endpoint,
        "--events-sub", mesh->broker.xpub,
        "--database-url", mesh->pg.conninfo,
        "--schema", mesh->audit_schema,
        "--admin", admin,
        "--heartbeat-ms", mesh->heartbeat,
        "--catchup-ms", "500",
        NULL,
    };
    mesh->audit = mesh_proc_start (argv, NULL);
    cr_assert_not_null (mesh->audit, "cannot start %s", bin);
    cr_assert (mesh_test_wait_workers (mesh->broker.endpoint, "audit", 1, S_START_MS),
               "mesh-audit did not register");
}

//  Start the gateway once on a fresh port: true when it logs that it serves.
static bool
s_gateway_start_once (mesh_test_mesh_t *mesh, const char *const *extra)
{
    mesh->http_port = mesh_test_free_port ();
    char bin[1024], http[64];
    snprintf (http, sizeof http, "127.0.0.1:%d", mesh->http_port);
    snprintf (mesh->base, sizeof mesh->base, "http://127.0.0.1:%d", mesh->http_port);
    const char *argv[32] = {
        mesh_test_bin ("mesh-gateway", bin, sizeof bin),
        "--http", http,
        "--broker", mesh->broker.endpoint,
        "--events-sub", mesh->broker.xpub,
        "--probe-ms", "50",
        "--idle-timeout-s", "3",
        "--heartbeat-ms", mesh->heartbeat,
    };
    size_t count = 13;
    for (size_t index = 0; extra && extra[index]; index++) {
        cr_assert_lt (count, 31);
        argv[count++] = extra[index];
    }
    argv[count] = NULL;
    mesh->gateway = mesh_proc_start (argv, NULL);
    cr_assert_not_null (mesh->gateway, "cannot start %s", bin);
    //  Serving = /healthz answers (the log level of tests may hide info lines)
    char url[128];
    snprintf (url, sizeof url, "%s/healthz", mesh->base);
    int64_t until = mesh_mono_ms () + S_START_MS;
    while (mesh_mono_ms () < until) {
        mesh_test_http_request_t request = { .url = url, .timeout_ms = 1000 };
        mesh_test_http_response_t response;
        mesh_test_http (&request, &response);
        mesh_test_http_response_free (&response);
        if (response.status == 200)
            return true;
        if (mesh_proc_wait_exit (mesh->gateway, 20, NULL))
            break;              //  Exited: the port was taken meanwhile
    }
    mesh_proc_destroy (&mesh->gateway);
    return false;
}

//  --------------------------------------------------------------------------
void
mesh_test_mesh_gateway_start (mesh_test_mesh_t *mesh, const char *const *gateway_extra)
{
    for (int attempt = 0; attempt < 3; attempt++)
        if (s_gateway_start_once (mesh, gateway_extra))
            return;
    cr_assert_fail ("mesh-gateway did not start");
}

//  --------------------------------------------------------------------------
bool
mesh_test_mesh_start (mesh_test_mesh_t *mesh, const char *prefix, int heartbeat_ms,
                      size_t users, const char *const *user_extra,
                      const char *const *gateway_extra)
{
    memset (mesh, 0, sizeof *mesh);
    if (heartbeat_ms <= 0)
        heartbeat_ms = 200;
    snprintf (mesh->heartbeat, sizeof mesh->heartbeat, "%d", heartbeat_ms);
    if (!mesh_test_pg_schema_new (&mesh->pg, prefix))
        return false;
    cr_assert (mesh_test_broker_start (&mesh->broker, heartbeat_ms, NULL),
               "broker did not start");
    mesh->user_extra = user_extra;
    for (size_t index = 0; index < users; index++)
        mesh_test_mesh_user_start (mesh, index);
    cr_assert (mesh_test_wait_workers (mesh->broker.endpoint, "user", 2 * users, S_START_MS),
               "mesh-user did not register its workers");
    mesh_test_mesh_gateway_start (mesh, gateway_extra);
    cr_assert (mesh_test_wait_ready (mesh->base, 200, S_START_MS), "gateway not ready");
    return true;
}

//  --------------------------------------------------------------------------
void
mesh_test_mesh_stop (mesh_test_mesh_t *mesh)
{
    s_stop_expect_zero (&mesh->gateway, "mesh-gateway");
    s_stop_expect_zero (&mesh->audit, "mesh-audit");
    for (size_t index = 0; index < MESH_TEST_MAX_USERS; index++)
        user_test_stop (&mesh->users[index]);
    mesh_test_broker_stop (&mesh->broker);
    if (mesh->pg.admin && mesh->audit_schema[0]) {
        char sql[160];
        snprintf (sql, sizeof sql, "DROP SCHEMA IF EXISTS %s CASCADE", mesh->audit_schema);
        PQclear (PQexec (mesh->pg.admin, sql));
    }
    mesh_test_pg_schema_drop (&mesh->pg);
}
