/*  =========================================================================
    test_trace_dead_collector - a collector that is down costs no request
    The mesh traces every request (always_on) to a loopback port where
    nothing listens: every request still succeeds, and the gateway counts
    the spans it could not export in mesh_trace_spans_total. Skipped
    without DATABASE_URL.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_time.h"
#include "mesh_test_http.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static mesh_test_mesh_t s_mesh;
static bool s_up;

static void
s_setup (void)
{
    static char endpoint[64];
    snprintf (endpoint, sizeof endpoint, "http://127.0.0.1:%d", mesh_test_free_port ());
    setenv ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint, 1);
    setenv ("OTEL_TRACES_SAMPLER", "always_on", 1);
    setenv ("OTEL_BSP_SCHEDULE_DELAY", "50", 1);
    setenv ("OTEL_EXPORTER_OTLP_TIMEOUT", "500", 1);
    s_up = mesh_test_mesh_start (&s_mesh, "test_trace_dead", 0, 1, NULL, NULL);
}

static void
s_teardown (void)
{
    mesh_test_mesh_stop (&s_mesh);
}

TestSuite (trace_dead_collector, .init = s_setup, .fini = s_teardown, .timeout = 120.);

//  The gateway's count of spans with `outcome` (-1: no such series yet).
static double
s_spans (const char *outcome)
{
    long status = 0;
    char *text = mesh_test_http_get (mesh_test_mesh_url (&s_mesh, "/metrics"), &status);
    cr_assert_eq (status, 200);
    char labels[64];
    snprintf (labels, sizeof labels, "outcome=\"%s\"", outcome);
    double value = mesh_test_metric (text, "mesh_trace_spans_total", labels);
    free (text);
    return value;
}

Test (trace_dead_collector, requests_succeed_and_drops_are_counted)
{
    if (!s_up)
        cr_skip_test ("DATABASE_URL is not set");
    for (int index = 0; index < 20; index++) {
        char body[128];
        snprintf (body, sizeof body, "{\"name\":\"Dead\",\"email\":\"dead%d@example.com\"}", index);
        mesh_test_http_response_t response =
            mesh_test_http_do ("POST", mesh_test_mesh_url (&s_mesh, "/v1/users"), body, NULL);
        cr_assert_eq (response.status, 201, "%ld %s", response.status, response.body);
        mesh_test_http_response_free (&response);
    }
    //  Two spans per request (server, client); all dropped in the end
    int64_t until = mesh_mono_ms () + 20000;
    while (s_spans ("dropped_export") < 40 && mesh_mono_ms () < until)
        usleep (50 * 1000);
    cr_assert_geq (s_spans ("dropped_export"), 40);
    cr_assert_eq (s_spans ("exported"), 0);
}
