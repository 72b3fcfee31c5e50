/*  =========================================================================
    test_gateway_shutdown - SIGTERM drains the gateway
    A GET waits on a worker (its process is stopped with SIGSTOP, so the
    request stays in flight; heartbeats are slow enough that the broker
    does not give up on it meanwhile). SIGTERM: /ready turns 503 at once
    while the gateway still serves, the waiting GET is answered 200 when
    the worker resumes, and the gateway exits 0. Skipped without
    DATABASE_URL.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh_test_http.h"

#include "mesh/mesh_time.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

static mesh_test_mesh_t s_mesh;

static void
s_setup (void)
{
    //  Heartbeat 2 s: a stopped worker is declared dead only after 6 s
    mesh_test_mesh_start (&s_mesh, "test_gateway_shutdown", 2000, 1, NULL, NULL);
}

static void
s_teardown (void)
{
    if (s_mesh.users[0])
        mesh_proc_signal (s_mesh.users[0], SIGCONT);
    mesh_test_mesh_stop (&s_mesh);
}

TestSuite (gateway_shutdown, .init = s_setup, .fini = s_teardown, .timeout = 120.);

Test (gateway_shutdown, sigterm_turns_ready_503_and_finishes_in_flight)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    char url[160];
    mesh_test_create_user (s_mesh.base, "Drain", "drain@example.com", url, sizeof url);

    //  The GET goes out and waits on the stopped worker
    mesh_proc_signal (s_mesh.users[0], SIGSTOP);
    CURLM *multi = curl_multi_init ();
    CURL *easy = mesh_test_curl_new (url, 10000L);
    curl_multi_add_handle (multi, easy);
    int running = 1;
    int64_t until = mesh_mono_ms () + 5000;
    bool in_flight = false;
    while (!in_flight && mesh_mono_ms () < until) {
        curl_multi_perform (multi, &running);
        mesh_test_service_stats_t stats;
        in_flight = mesh_test_service_stats (s_mesh.broker.endpoint, "user", &stats, 1000)
                 && stats.in_flight >= 1;
    }
    cr_assert (in_flight, "the GET did not reach the worker");

    mesh_proc_signal (s_mesh.gateway, SIGTERM);
    //  Draining: /ready says 503 (the gateway still answers), from the start
    cr_assert (mesh_test_wait_ready (s_mesh.base, 503, 2000), "/ready did not turn 503");
    cr_assert_eq (running, 1);

    //  The worker wakes up; the GET it holds is answered 200
    mesh_proc_signal (s_mesh.users[0], SIGCONT);
    until = mesh_mono_ms () + 8000;
    while (running && mesh_mono_ms () < until) {
        curl_multi_perform (multi, &running);
        curl_multi_poll (multi, NULL, 0, 100, NULL);
    }
    cr_assert_eq (running, 0, "the in-flight GET was not answered");
    long status = 0;
    curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &status);
    cr_assert_eq (status, 200);
    curl_multi_remove_handle (multi, easy);
    curl_easy_cleanup (easy);
    curl_multi_cleanup (multi);

    int exit_status = -1;
    cr_assert (mesh_proc_wait_exit (s_mesh.gateway, 5000, &exit_status),
               "the gateway did not exit after draining");
    cr_assert (WIFEXITED (exit_status) && WEXITSTATUS (exit_status) == 0, "status %d",
               exit_status);
    mesh_proc_destroy (&s_mesh.gateway);
}

Test (gateway_shutdown, request_timeout_shortens_the_deadline_to_504)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    char url[160];
    mesh_test_create_user (s_mesh.base, "Slow", "slow@example.com", url, sizeof url);
    //  The worker holds the request and never answers in time
    mesh_proc_signal (s_mesh.users[0], SIGSTOP);
    static const char *const timeout[] = { "Request-Timeout: 0.5", NULL };
    int64_t started = mesh_mono_ms ();
    mesh_test_http_response_t response = mesh_test_http_do ("GET", url, NULL, timeout);
    int64_t elapsed = mesh_mono_ms () - started;
    json_decref (mesh_test_expect_problem (&response, 504, "urn:zmesh:problem:deadline-exceeded"));
    mesh_test_http_response_free (&response);
    cr_assert_geq (elapsed, 450, "answered before the deadline (%ld ms)", (long) elapsed);
    cr_assert_lt (elapsed, 1500, "the 0.5 s deadline was not kept (%ld ms)", (long) elapsed);
    mesh_proc_signal (s_mesh.users[0], SIGCONT);
}
