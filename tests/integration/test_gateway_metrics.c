/*  =========================================================================
    test_gateway_metrics - the gateway's /metrics
    Series are labelled by route template, never by raw path: requests to
    1000 different user ids add no series. The text passes promtool check
    metrics (Debian's prometheus package). Skipped without DATABASE_URL.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh_test_http.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static mesh_test_mesh_t s_mesh;

static void
s_setup (void)
{
    mesh_test_mesh_start (&s_mesh, "test_gateway_metrics", 0, 1, NULL, NULL);
}

static void
s_teardown (void)
{
    mesh_test_mesh_stop (&s_mesh);
}

TestSuite (gateway_metrics, .init = s_setup, .fini = s_teardown, .timeout = 120.);

//  GET /metrics (fresh string; caller frees).
static char *
s_metrics (void)
{
    char url[128];
    snprintf (url, sizeof url, "%s/metrics", s_mesh.base);
    mesh_test_http_response_t response = mesh_test_http_do ("GET", url, NULL, NULL);
    cr_assert_eq (response.status, 200);
    free (response.headers);
    return response.body;
}

//  Sample lines (not comments) in Prometheus text.
static size_t
s_series_count (const char *text)
{
    size_t count = 0;
    for (const char *line = text; *line;) {
        if (*line != '#' && *line != '\n')
            count++;
        const char *end = strchr (line, '\n');
        if (!end)
            break;
        line = end + 1;
    }
    return count;
}

Test (gateway_metrics, route_templates_bound_the_series)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    //  One request per route and status first, so every series exists
    char url[256];
    snprintf (url, sizeof url, "%s/v1/users/00000000-0000-4000-8000-000000000000", s_mesh.base);
    mesh_test_http_response_t response = mesh_test_http_do ("GET", url, NULL, NULL);
    cr_assert_eq (response.status, 404);
    mesh_test_http_response_free (&response);
    //  /metrics counts itself once it has answered: read it twice
    free (s_metrics ());
    char *before = s_metrics ();
    size_t series_before = s_series_count (before);

    //  1000 different ids over one keep-alive connection
    CURL *curl = mesh_test_curl_new (url, 10000L);
    for (int index = 0; index < 1000; index++) {
        snprintf (url, sizeof url, "%s/v1/users/00000000-0000-4000-8000-%012d", s_mesh.base,
                  index);
        curl_easy_setopt (curl, CURLOPT_URL, url);
        cr_assert_eq (curl_easy_perform (curl), CURLE_OK);
        long status = 0;
        curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
        cr_assert_eq (status, 404);
    }
    long connects = 0;
    curl_easy_getinfo (curl, CURLINFO_NUM_CONNECTS, &connects);
    curl_easy_cleanup (curl);

    char *after = s_metrics ();
    cr_assert_eq (s_series_count (after), series_before, "new series appeared:\n%s", after);
    cr_assert_null (strstr (after, "00000000-0000-4000-8000"), "a raw path became a label");
    double count = mesh_test_metric (
        after, "http_requests_total", "method=\"GET\",route=\"/v1/users/{id}\",code=\"404\"");
    cr_assert_geq (count, 1001.0, "%s", after);
    cr_assert_gt (mesh_test_metric (after, "http_request_duration_seconds_count",
                                    "route=\"/v1/users/{id}\""), 1000.0);
    cr_assert_gt (mesh_test_metric (after, "mesh_calls_total",
                                    "service=\"user\",method=\"user.get\",outcome=\"not_found\""),
                  1000.0);
    cr_assert_geq (mesh_test_metric (after, "http_requests_in_flight", NULL), 1.0,
                   "the /metrics request itself is in flight");
    free (before);
    free (after);
}

Test (gateway_metrics, promtool_accepts_the_text)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    if (access ("/usr/bin/promtool", X_OK) != 0)
        cr_skip_test ("promtool is not installed (Debian package prometheus)");
    char url[256];
    snprintf (url, sizeof url, "%s/v1/users?limit=1", s_mesh.base);
    mesh_test_http_response_t response = mesh_test_http_do ("GET", url, NULL, NULL);
    mesh_test_http_response_free (&response);
    snprintf (url, sizeof url, "%s/nowhere", s_mesh.base);
    response = mesh_test_http_do ("GET", url, NULL, NULL);
    mesh_test_http_response_free (&response);
    char *text = s_metrics ();
    char path[] = "/tmp/gateway-metrics-XXXXXX";
    int fd = mkstemp (path);
    cr_assert_geq (fd, 0);
    cr_assert_eq (write (fd, text, strlen (text)), (ssize_t) strlen (text));
    close (fd);
    char command[256];
    snprintf (command, sizeof command, "promtool check metrics < %s > %s.out 2>&1", path, path);
    int status = system (command);
    char out_path[64];
    snprintf (out_path, sizeof out_path, "%s.out", path);
    FILE *out = fopen (out_path, "r");
    char report[4096] = "";
    if (out) {
        size_t got = fread (report, 1, sizeof report - 1, out);
        report[got] = '\0';
        fclose (out);
    }
    unlink (path);
    unlink (out_path);
    cr_assert_eq (status, 0, "promtool check metrics failed:\n%s\n--- text:\n%s", report, text);
    cr_assert_not_null (strstr (text, "route=\"unmatched\""));
    free (text);
}
