/*  =========================================================================
    test_gateway_malformed - hostile and broken HTTP requests
    Invalid JSON, JSON nested 10,000 deep, a 10 MiB body (declared and
    chunked), a wrong Content-Type, a bad UUID, an unknown route, a wrong
    method, oversized headers, and a client that sends half a request and
    stalls: each gets its precise status or a bounded close, and a
    keep-alive client is served after each one and during the stall.
    Skipped without DATABASE_URL.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh_test_http.h"

#include "mesh/mesh_time.h"

#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

static mesh_test_mesh_t s_mesh;
static CURL *s_keepalive;           //  The well-behaved client, one connection
//  The gateway closes idle or stalled connections after 2 s in these tests,
//  and has at most 16 open (more wait in the kernel's backlog)
#define S_MAX_CONNECTIONS 16
static const char *const s_gateway_flags[] = { "--idle-timeout-s", "2", "--max-connections",
                                               "16", NULL };

static void
s_setup (void)
{
    if (!mesh_test_mesh_start (&s_mesh, "test_gateway_malformed", 0, 1, NULL, s_gateway_flags))
        return;
    char url[128];
    snprintf (url, sizeof url, "%s/v1/users?limit=1", s_mesh.base);
    s_keepalive = mesh_test_curl_new (url, 5000L);
}

static void
s_teardown (void)
{
    if (s_keepalive)
        curl_easy_cleanup (s_keepalive);
    mesh_test_mesh_stop (&s_mesh);
}

TestSuite (gateway_malformed, .init = s_setup, .fini = s_teardown, .timeout = 120.);

//  The well-behaved client gets /v1/users (200) on its keep-alive connection.
static void
s_others_served (void)
{
    cr_assert_eq (curl_easy_perform (s_keepalive), CURLE_OK);
    long status = 0;
    curl_easy_getinfo (s_keepalive, CURLINFO_RESPONSE_CODE, &status);
    cr_assert_eq (status, 200);
}

static void
s_need_mesh (void)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    s_others_served ();
}

//  POST `size` bytes of `body` to /v1/users with extra headers; returns the
//  status, 0 when the gateway closed the connection instead.
static long
s_post (const char *body, size_t size, const char *const *headers)
{
    const char *lines[8] = { "Content-Type: application/json" };
    size_t count = 1;
    for (size_t index = 0; headers && headers[index]; index++)
        lines[count++] = headers[index];
    lines[count] = NULL;
    char url[128];
    snprintf (url, sizeof url, "%s/v1/users", s_mesh.base);
    mesh_test_http_request_t request = {
        .method = "POST", .url = url, .headers = lines, .body = body, .body_len = size,
    };
    mesh_test_http_response_t response;
    mesh_test_http (&request, &response);
    long status = response.status;
    if (status == 400 || status == 413)
        json_decref (mesh_test_expect_problem (&response, status,
                                               status == 400? "urn:zmesh:problem:malformed-json"
                                                            : "urn:zmesh:problem:body-too-large"));
    mesh_test_http_response_free (&response);
    return status;
}

Test (gateway_malformed, invalid_and_deep_json)
{
    s_need_mesh ();
    cr_assert_eq (s_post ("{\"name\": nope}", 14, NULL), 400);
    cr_assert_eq (s_post ("\xff\xfe{}", 4, NULL), 400);
    s_others_served ();
    size_t depth = 10000;
    char *deep = malloc (2 * depth + 1);
    memset (deep, '[', depth);
    memset (deep + depth, ']', depth);
    deep[2 * depth] = '\0';
    cr_assert_eq (s_post (deep, 2 * depth, NULL), 400);
    s_others_served ();
    //  33 levels: parsed by jansson, refused by the gateway's limit of 32
    char object[128] = "{\"name\":";
    size_t len = strlen (object);
    for (int level = 0; level < 32; level++)
        object[len++] = '[';
    for (int level = 0; level < 32; level++)
        object[len++] = ']';
    object[len++] = '}';
    object[len] = '\0';
    cr_assert_eq (s_post (object, len, NULL), 400);
    free (deep);
    s_others_served ();
}

Test (gateway_malformed, ten_mebibytes)
{
    s_need_mesh ();
    size_t size = 10 * 1024 * 1024;
    char *body = malloc (size);
    memset (body, 'a', size);
    int64_t started = mesh_mono_ms ();
    //  Declared length: 413 before a byte of the body is read (or, if curl
    //  is still sending when the gateway closes, a closed connection)
    long status = s_post (body, size, NULL);
    cr_assert (status == 413 || status == 0, "status %ld", status);
    s_others_served ();
    //  Chunked: the gateway stops reading past 64 KiB and closes
    static const char *const chunked[] = { "Transfer-Encoding: chunked", NULL };
    status = s_post (body, size, chunked);
    cr_assert (status == 413 || status == 0, "status %ld", status);
    cr_assert_lt (mesh_mono_ms () - started, 10000);
    free (body);
    s_others_served ();
}

Test (gateway_malformed, wrong_type_uuid_route_method)
{
    s_need_mesh ();
    char url[256];
    static const char *const xml[] = { "Content-Type: application/xml", NULL };
    snprintf (url, sizeof url, "%s/v1/users", s_mesh.base);
    mesh_test_http_request_t request = { .method = "POST", .url = url, .headers = xml,
                                         .body = "<user/>" };
    mesh_test_http_response_t response;
    cr_assert (mesh_test_http (&request, &response));
    json_decref (mesh_test_expect_problem (&response, 415,
                                           "urn:zmesh:problem:unsupported-media-type"));
    mesh_test_http_response_free (&response);
    s_others_served ();
    snprintf (url, sizeof url, "%s/v1/users/12345678-1234-1234-1234-1234567890ZZ", s_mesh.base);
    response = mesh_test_http_do ("GET", url, NULL, NULL);
    json_decref (mesh_test_expect_problem (&response, 400, "urn:zmesh:problem:bad-parameter"));
    mesh_test_http_response_free (&response);
    snprintf (url, sizeof url, "%s/v1/../etc/passwd", s_mesh.base);
    response = mesh_test_http_do ("GET", url, NULL, NULL);
    cr_assert_eq (response.status, 404);
    mesh_test_http_response_free (&response);
    snprintf (url, sizeof url, "%s/v1/users", s_mesh.base);
    response = mesh_test_http_do ("TRACE", url, NULL, NULL);
    json_decref (mesh_test_expect_problem (&response, 405, "urn:zmesh:problem:method-not-allowed"));
    char allow[64];
    cr_assert (mesh_test_http_header (&response, "Allow", allow, sizeof allow));
    mesh_test_http_response_free (&response);
    s_others_served ();
}

Test (gateway_malformed, oversized_headers)
{
    s_need_mesh ();
    size_t size = 64 * 1024;
    char *header = malloc (size + 16);
    strcpy (header, "X-Filler: ");
    memset (header + 10, 'x', size);
    header[10 + size] = '\0';
    const char *const headers[] = { header, NULL };
    char url[128];
    snprintf (url, sizeof url, "%s/healthz", s_mesh.base);
    mesh_test_http_request_t request = { .url = url, .headers = headers };
    mesh_test_http_response_t response;
    mesh_test_http (&request, &response);
    //  The HTTP server answers 431 (or closes): it never buffers without bound
    cr_assert (response.status == 431 || response.status == 0, "status %ld", response.status);
    mesh_test_http_response_free (&response);
    free (header);
    s_others_served ();
}

//  A raw TCP connection to the gateway.
static int
s_connect (void)
{
    int fd = socket (AF_INET, SOCK_STREAM, 0);
    cr_assert_geq (fd, 0);
    struct sockaddr_in addr = { .sin_family = AF_INET, .sin_port = htons ((uint16_t) s_mesh.http_port) };
    addr.sin_addr.s_addr = htonl (INADDR_LOOPBACK);
    cr_assert_eq (connect (fd, (struct sockaddr *) &addr, sizeof addr), 0);
    return fd;
}

//  Wait up to timeout_ms for the peer to close `fd` (reading and dropping
//  whatever it sends). True when it closed.
static bool
s_wait_closed (int fd, int timeout_ms)
{
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (true) {
        int64_t left = until - mesh_mono_ms ();
        if (left <= 0)
            return false;
        struct pollfd item = { .fd = fd, .events = POLLIN };
        if (poll (&item, 1, (int) left) <= 0)
            continue;
        char buffer[4096];
        ssize_t got = recv (fd, buffer, sizeof buffer, 0);
        if (got <= 0)
            return true;
    }
}

Test (gateway_malformed, half_request_is_closed_by_timeout)
{
    s_need_mesh ();
    int64_t started = mesh_mono_ms ();
    int stalled = s_connect ();
    static const char half[] = "POST /v1/users HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                               "application/json\r\nContent-Length: 100\r\n\r\n{\"na";
    cr_assert_eq (send (stalled, half, sizeof half - 1, 0), (ssize_t) (sizeof half - 1));
    int headers_only = s_connect ();
    static const char head[] = "GET /v1/users HTTP/1.1\r\nHost: 127";
    cr_assert_eq (send (headers_only, head, sizeof head - 1, 0), (ssize_t) (sizeof head - 1));
    //  Others are served while both stall
    for (int index = 0; index < 20; index++)
        s_others_served ();
    cr_assert (s_wait_closed (stalled, 8000), "stalled body not closed");
    cr_assert (s_wait_closed (headers_only, 8000), "stalled headers not closed");
    int64_t elapsed = mesh_mono_ms () - started;
    cr_assert_geq (elapsed, 1500, "closed before the idle timeout (%ld ms)", (long) elapsed);
    cr_assert_lt (elapsed, 8000);
    close (stalled);
    close (headers_only);
    //  The keep-alive client's own connection was idle as long: it may have
    //  been closed too; curl reconnects
    s_others_served ();
}

//  Wait up to timeout_ms for bytes on `fd`. True when some arrived.
static bool
s_wait_data (int fd, int timeout_ms)
{
    struct pollfd item = { .fd = fd, .events = POLLIN };
    char buffer[256];
    return poll (&item, 1, timeout_ms) == 1 && recv (fd, buffer, sizeof buffer, 0) > 0;
}

Test (gateway_malformed, connections_over_the_limit_wait)
{
    s_need_mesh ();
    //  The limit's worth of idle connections (the keep-alive client may hold
    //  one more): the gateway accepts no other until one goes
    int sockets[S_MAX_CONNECTIONS];
    for (int index = 0; index < S_MAX_CONNECTIONS; index++)
        sockets[index] = s_connect ();
    int extra = s_connect ();
    static const char request[] = "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n";
    cr_assert_eq (send (extra, request, sizeof request - 1, 0), (ssize_t) (sizeof request - 1));
    cr_assert_not (s_wait_data (extra, 500), "a connection over the limit was served");
    for (int index = 0; index < S_MAX_CONNECTIONS; index++)
        close (sockets[index]);
    cr_assert (s_wait_data (extra, 2000), "not served once the others had gone");
    close (extra);
    s_others_served ();
}
