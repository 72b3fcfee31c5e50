/*  =========================================================================
    test_mesh_admin - unit tests of the admin HTTP endpoint
    A real server on 127.0.0.1 with a kernel-chosen port, spoken to with
    libcurl (every request bounded by a timeout): routes, status codes,
    content types, the Allow header on 405, readiness flips, rejected
    addresses, and mesh_parse_host_port.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_admin.h"
#include "mesh/mesh_err.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static mesh_metrics_t *s_metrics;   //  Criterion forks per test: one of each per test
static mesh_admin_t *s_admin;

//  What one HTTP exchange returned.
typedef struct {
    long status;                    //  HTTP status, 0 when the request failed
    char body[8192];                //  Body, NUL-terminated (truncated if longer)
    size_t body_len;                //  Bytes of body kept
    char content_type[128];         //  Content-Type, or ""
    char allow[128];                //  Allow header, or ""
} s_reply_t;

static void
s_setup (void)
{
    cr_assert_eq (curl_global_init (CURL_GLOBAL_DEFAULT), CURLE_OK);
    s_metrics = mesh_metrics_new ();
    mesh_counter_add (mesh_metrics_counter (s_metrics, "mesh_test_total", "Test counter.", "k",
                                            "v", NULL),
                      5);
    int err = 1;
    s_admin = mesh_admin_new ("127.0.0.1:0", s_metrics, &err);
    cr_assert_not_null (s_admin, "%s", mesh_strerror (err));
    cr_assert_eq (err, 0);
}

static void
s_teardown (void)
{
    mesh_admin_destroy (&s_admin);
    mesh_metrics_destroy (&s_metrics);
    curl_global_cleanup ();
}

TestSuite (mesh_admin, .init = s_setup, .fini = s_teardown, .timeout = 30.);

//  libcurl body sink.
static size_t
s_on_body (char *data, size_t size, size_t count, void *args)
{
    s_reply_t *reply = (s_reply_t *) args;
    size_t len = size * count;
    size_t room = sizeof reply->body - 1 - reply->body_len;
    size_t kept = len < room? len: room;
    memcpy (reply->body + reply->body_len, data, kept);
    reply->body_len += kept;
    reply->body[reply->body_len] = '\0';
    return len;
}

//  libcurl header sink: keeps the Allow header.
static size_t
s_on_header (char *data, size_t size, size_t count, void *args)
{
    s_reply_t *reply = (s_reply_t *) args;
    size_t len = size * count;
    if (len > 6 && strncasecmp (data, "Allow:", 6) == 0) {
        size_t start = 6;
        while (start < len && data[start] == ' ')
            start++;
        size_t end = len;
        while (end > start && (data[end - 1] == '\r' || data[end - 1] == '\n'))
            end--;
        snprintf (reply->allow, sizeof reply->allow, "%.*s", (int) (end - start), data + start);
    }
    return len;
}

//  Send `method` `path` to http://`host`:`port` (host bracketed for IPv6)
//  and fill *reply. Bounded: 2 s to connect, 5 s in all.
static void
s_request_to (const char *host, int port, const char *method, const char *path,
              s_reply_t *reply)
{
    memset (reply, 0, sizeof (*reply));
    char url[256];
    snprintf (url, sizeof url, "http://%s:%d%s", host, port, path);
    CURL *curl = curl_easy_init ();
    cr_assert_not_null (curl);
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_NOPROXY, "*");  //  Ignore http_proxy of the environment
    curl_easy_setopt (curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, 5000L);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_on_body);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, reply);
    curl_easy_setopt (curl, CURLOPT_HEADERFUNCTION, s_on_header);
    curl_easy_setopt (curl, CURLOPT_HEADERDATA, reply);
    if (strcmp (method, "HEAD") == 0)
        curl_easy_setopt (curl, CURLOPT_NOBODY, 1L);
    else
    if (strcmp (method, "POST") == 0)
        curl_easy_setopt (curl, CURLOPT_POSTFIELDS, "x=1");
    else
    if (strcmp (method, "GET") != 0)
        curl_easy_setopt (curl, CURLOPT_CUSTOMREQUEST, method);
    CURLcode rc = curl_easy_perform (curl);
    cr_assert_eq (rc, CURLE_OK, "%s %s: %s", method, url, curl_easy_strerror (rc));
    curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &reply->status);
    const char *type = NULL;
    curl_easy_getinfo (curl, CURLINFO_CONTENT_TYPE, &type);
    if (type)
        snprintf (reply->content_type, sizeof reply->content_type, "%s", type);
    curl_easy_cleanup (curl);
}

//  Send `method` `path` to the test server.
static void
s_request (const char *method, const char *path, s_reply_t *reply)
{
    s_request_to ("127.0.0.1", mesh_admin_port (s_admin), method, path, reply);
}

Test (mesh_admin, binds_a_real_port)
{
    int port = mesh_admin_port (s_admin);
    cr_assert_gt (port, 0);
    cr_assert_leq (port, 65535);
}

Test (mesh_admin, healthz_answers_ok)
{
    s_reply_t reply;
    s_request ("GET", "/healthz", &reply);
    cr_assert_eq (reply.status, 200);
    cr_assert_str_eq (reply.body, "ok\n");
    cr_assert_str_eq (reply.content_type, "text/plain; charset=utf-8");
    s_request ("HEAD", "/healthz", &reply);
    cr_assert_eq (reply.status, 200);
    cr_assert_eq (reply.body_len, 0);
}

Test (mesh_admin, ready_follows_set_ready)
{
    s_reply_t reply;
    s_request ("GET", "/ready", &reply);
    cr_assert_eq (reply.status, 503, "readiness starts false");
    cr_assert_str_eq (reply.body, "not ready\n");
    mesh_admin_set_ready (s_admin, true);
    s_request ("GET", "/ready", &reply);
    cr_assert_eq (reply.status, 200);
    cr_assert_str_eq (reply.body, "ready\n");
    mesh_admin_set_ready (s_admin, false);
    s_request ("GET", "/ready", &reply);
    cr_assert_eq (reply.status, 503);
    //  Liveness never depends on readiness
    s_request ("GET", "/healthz", &reply);
    cr_assert_eq (reply.status, 200);
}

Test (mesh_admin, metrics_serves_the_registry)
{
    s_reply_t reply;
    s_request ("GET", "/metrics", &reply);
    cr_assert_eq (reply.status, 200);
    cr_assert_str_eq (reply.content_type, "text/plain; version=0.0.4; charset=utf-8");
    char *expected = mesh_metrics_render (s_metrics, NULL);
    cr_assert_str_eq (reply.body, expected);
    cr_assert (strstr (reply.body, "mesh_test_total{k=\"v\"} 5\n"), "%s", reply.body);
    free (expected);

    //  Updates show on the next scrape; a query string does not change the route
    mesh_counter_inc (mesh_metrics_counter (s_metrics, "mesh_test_total", NULL, "k", "v", NULL));
    s_request ("GET", "/metrics?debug=1", &reply);
    cr_assert_eq (reply.status, 200);
    cr_assert (strstr (reply.body, "mesh_test_total{k=\"v\"} 6\n"), "%s", reply.body);

    s_request ("HEAD", "/metrics", &reply);
    cr_assert_eq (reply.status, 200);
    cr_assert_str_eq (reply.content_type, "text/plain; version=0.0.4; charset=utf-8");
    cr_assert_eq (reply.body_len, 0);
}

Test (mesh_admin, unknown_paths_get_404)
{
    const char *paths[] = { "/", "/nope", "/healthz/", "/metricsx", "/READY", "/healthz/x" };
    for (size_t index = 0; index < sizeof paths / sizeof paths[0]; index++) {
        s_reply_t reply;
        s_request ("GET", paths[index], &reply);
        cr_assert_eq (reply.status, 404, "GET %s: %ld", paths[index], reply.status);
    }
    s_reply_t reply;
    s_request ("POST", "/nope", &reply);
    cr_assert_eq (reply.status, 404, "an unknown path is 404 whatever the method");
}

Test (mesh_admin, other_methods_get_405_with_allow)
{
    const struct {
        const char *method;
        const char *path;
    } cases[] = {
        { "POST", "/healthz" }, { "PUT", "/ready" }, { "DELETE", "/metrics" },
        { "PATCH", "/metrics" }, { "OPTIONS", "/healthz" },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        s_reply_t reply;
        s_request (cases[index].method, cases[index].path, &reply);
        cr_assert_eq (reply.status, 405, "%s %s: %ld", cases[index].method, cases[index].path,
                      reply.status);
        cr_assert_str_eq (reply.allow, "GET, HEAD", "%s %s", cases[index].method,
                          cases[index].path);
    }
    //  The server keeps serving afterwards
    s_reply_t reply;
    s_request ("GET", "/healthz", &reply);
    cr_assert_eq (reply.status, 200);
}

Test (mesh_admin, rejects_bad_addresses)
{
    const char *addresses[] = {
        "", "nonsense", "127.0.0.1", "127.0.0.1:", ":9100", "127.0.0.1:70000",
        "127.0.0.1:-1", "127.0.0.1:http", "999.0.0.1:0", "example.invalid:0", "::1:0",
        "[::1", "[::1]", "[::1]0", "[]:0", "[127.0.0.1:0", "127.0.0.1 :0", " 127.0.0.1:0",
    };
    for (size_t index = 0; index < sizeof addresses / sizeof addresses[0]; index++) {
        int err = 0;
        mesh_admin_t *admin = mesh_admin_new (addresses[index], s_metrics, &err);
        cr_assert_null (admin, "'%s' accepted", addresses[index]);
        cr_assert_eq (err, MESH_EINVAL, "'%s': %s", addresses[index], mesh_strerror (err));
    }
}

Test (mesh_admin, port_in_use_is_an_io_error)
{
    char addr[64];
    snprintf (addr, sizeof addr, "127.0.0.1:%d", mesh_admin_port (s_admin));
    int err = 0;
    mesh_admin_t *admin = mesh_admin_new (addr, s_metrics, &err);
    cr_assert_null (admin);
    cr_assert_eq (err, MESH_EIO, "%s", mesh_strerror (err));
    //  The first server is untouched
    s_reply_t reply;
    s_request ("GET", "/healthz", &reply);
    cr_assert_eq (reply.status, 200);
}

Test (mesh_admin, localhost_binds_loopback)
{
    int err = 0;
    mesh_admin_t *admin = mesh_admin_new ("localhost:0", s_metrics, &err);
    cr_assert_not_null (admin, "%s", mesh_strerror (err));
    s_reply_t reply;
    s_request_to ("127.0.0.1", mesh_admin_port (admin), "GET", "/healthz", &reply);
    cr_assert_eq (reply.status, 200);
    mesh_admin_destroy (&admin);
    cr_assert_null (admin);
    mesh_admin_destroy (&admin);    //  Accepts NULL
}

Test (mesh_admin, ipv6_loopback_serves)
{
    int err = 0;
    mesh_admin_t *admin = mesh_admin_new ("[::1]:0", s_metrics, &err);
    if (!admin && err == MESH_EIO)
        cr_skip_test ("no IPv6 loopback on this host");
    cr_assert_not_null (admin, "%s", mesh_strerror (err));
    s_reply_t reply;
    s_request_to ("[::1]", mesh_admin_port (admin), "GET", "/healthz", &reply);
    cr_assert_eq (reply.status, 200);
    cr_assert_str_eq (reply.body, "ok\n");
    mesh_admin_destroy (&admin);
}

Test (mesh_admin, parse_host_port_accepts_good_addresses)
{
    const struct {
        const char *addr;
        const char *host;
        int port;
    } cases[] = {
        { "127.0.0.1:9100", "127.0.0.1", 9100 },
        { "0.0.0.0:0", "0.0.0.0", 0 },
        { "localhost:65535", "localhost", 65535 },
        { "[::1]:8080", "::1", 8080 },
        { "[::]:1", "::", 1 },
        { "[fe80::1%eth0]:80", "fe80::1%eth0", 80 },
        { "gateway:00080", "gateway", 80 },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        char host[64];
        int port = -1;
        int rc = mesh_parse_host_port (cases[index].addr, host, sizeof host, &port);
        cr_assert_eq (rc, 0, "'%s': %s", cases[index].addr, mesh_strerror (rc));
        cr_assert_str_eq (host, cases[index].host);
        cr_assert_eq (port, cases[index].port, "'%s'", cases[index].addr);
    }
}

Test (mesh_admin, parse_host_port_rejects_garbage)
{
    const char *addresses[] = {
        "", ":", ":80", "host", "host:", "host:65536", "host:99999", "host:123456", "host:-1",
        "host:+1", "host: 1", "host:1 ", "host:0x10", "a:b:c", "::1:80", "[::1]", "[::1]:",
        "[::1]80", "[::1]x:80", "[]:80", "[::1:80", "::1]:80", "[a]b]:80", "host:80:",
    };
    for (size_t index = 0; index < sizeof addresses / sizeof addresses[0]; index++) {
        char host[64];
        int port = -1;
        int rc = mesh_parse_host_port (addresses[index], host, sizeof host, &port);
        cr_assert_eq (rc, MESH_EINVAL, "'%s' accepted as '%s' port %d", addresses[index], host,
                      port);
        cr_assert_eq (port, -1, "'%s': port written on failure", addresses[index]);
    }
}

Test (mesh_admin, parse_host_port_respects_host_size)
{
    char host[10];
    int port = 0;
    cr_assert_eq (mesh_parse_host_port ("123456789:1", host, sizeof host, &port), 0);
    cr_assert_str_eq (host, "123456789");
    cr_assert_eq (mesh_parse_host_port ("1234567890:1", host, sizeof host, &port), MESH_EINVAL);
    cr_assert_eq (mesh_parse_host_port ("[1234567890]:1", host, sizeof host, &port), MESH_EINVAL);
}

//  Updater thread of the scrape scenario: counts and flips readiness until told.
typedef struct {
    mesh_counter_t *counter;
    atomic_bool done;
} s_updater_args_t;

static void *
s_updater (void *args)
{
    s_updater_args_t *updater = (s_updater_args_t *) args;
    for (unsigned count = 0; !atomic_load (&updater->done); count++) {
        mesh_counter_inc (updater->counter);
        if (count % 1024 == 0)
            mesh_admin_set_ready (s_admin, (count / 1024) % 2 == 0);
    }
    return NULL;
}

//  Scrape /metrics and /ready `rounds` times while another thread updates the
//  registry and readiness. Returns NULL or what went wrong (caller frees).
//  Plain C, no Criterion, so that the TSAN build below can run it too.
static char *
s_run_scrapes (int rounds)
{
    s_updater_args_t updater;
    updater.counter = mesh_metrics_counter (s_metrics, "mesh_test_total", NULL, "k", "v", NULL);
    atomic_init (&updater.done, false);
    pthread_t thread;
    if (pthread_create (&thread, NULL, s_updater, &updater) != 0)
        return strdup ("cannot start the updater");
    char *problem = NULL;
    char url[64];
    for (int round = 0; round < rounds && !problem; round++) {
        s_reply_t reply;
        memset (&reply, 0, sizeof reply);
        snprintf (url, sizeof url, "http://127.0.0.1:%d%s", mesh_admin_port (s_admin),
                  round % 2? "/ready": "/metrics");
        CURL *curl = curl_easy_init ();
        if (!curl) {
            problem = strdup ("curl_easy_init failed");
            break;
        }
        curl_easy_setopt (curl, CURLOPT_URL, url);
        curl_easy_setopt (curl, CURLOPT_NOPROXY, "*");
        curl_easy_setopt (curl, CURLOPT_CONNECTTIMEOUT_MS, 2000L);
        curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, 5000L);
        curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_on_body);
        curl_easy_setopt (curl, CURLOPT_WRITEDATA, &reply);
        CURLcode rc = curl_easy_perform (curl);
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &reply.status);
        curl_easy_cleanup (curl);
        bool good = rc == CURLE_OK
                    && (round % 2? reply.status == 200 || reply.status == 503
                                 : reply.status == 200
                                       && strstr (reply.body, "mesh_test_total{k=\"v\"} "));
        if (!good && asprintf (&problem, "%s: curl %d, status %ld, body:\n%s", url, (int) rc,
                               reply.status, reply.body) < 0)
            problem = strdup ("scrape failed");
    }
    atomic_store (&updater.done, true);
    pthread_join (thread, NULL);
    return problem;
}

Test (mesh_admin, scrapes_while_the_owner_updates)
{
    char *problem = s_run_scrapes (40);
    cr_assert_null (problem, "%s", problem);
}

//  Criterion cannot start under ThreadSanitizer (Snaipe/Criterion#274, see
//  test_mesh_metrics.c): a TSAN build of this file is a plain program that
//  runs the scrape scenario, failing on any race report or failed scrape.
#if defined (__SANITIZE_THREAD__)
#define S_TSAN_MAIN
#elif defined (__has_feature)
#if __has_feature (thread_sanitizer)
#define S_TSAN_MAIN
#endif
#endif

#ifdef S_TSAN_MAIN
int
main (void)
{
    curl_global_init (CURL_GLOBAL_DEFAULT);
    s_metrics = mesh_metrics_new ();
    int err = 0;
    s_admin = mesh_admin_new ("127.0.0.1:0", s_metrics, &err);
    char *problem = s_admin? s_run_scrapes (200): strdup (mesh_strerror (err));
    mesh_admin_destroy (&s_admin);
    mesh_metrics_destroy (&s_metrics);
    curl_global_cleanup ();
    fprintf (stderr, "test_mesh_admin (TSAN, no Criterion): scrape scenario %s%s\n",
             problem? "FAILED: ": "passed", problem? problem: "");
    int rc = problem? 1: 0;
    free (problem);
    return rc;
}
#endif
