/*  =========================================================================
    test_gateway_load - concurrency and failures behind the gateway
    100 concurrent keep-alive clients (libcurl multi) are all served, over
    at most one connection each, and the request ids they send show up in
    the gateway's and the worker's logs. A user process killed during load
    costs no failed GET (the broker answers unavailable, the gateway retries
    once on the other process); with every user process gone GETs get 503 +
    Retry-After before their deadline; started again, 200. The broker
    killed with a GET in flight: the GET does not wait out its deadline.
    Skipped without DATABASE_URL.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh_test_http.h"

#include "mesh/mesh_time.h"

#include <criterion/criterion.h>
#include <curl/curl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define S_MAX_CLIENTS 100

static mesh_test_mesh_t s_mesh;
static int s_round;             //  Round of creates: part of their keys and emails
static pid_t s_holder;          //  A worker that holds requests, or 0
static mesh_proc_t *s_echo;     //  An echo worker, or NULL
static const char *const s_user_flags[] = { "--log-level", "debug", NULL };
static const char *const s_gateway_flags[] = { "--log-level", "info", NULL };

static void
s_setup (void)
{
    mesh_test_mesh_start (&s_mesh, "test_gateway_load", 0, 2, s_user_flags, s_gateway_flags);
}

static void
s_teardown (void)
{
    if (s_holder > 0) {
        kill (s_holder, SIGKILL);
        waitpid (s_holder, NULL, 0);
        s_holder = 0;
    }
    mesh_proc_destroy (&s_echo);
    mesh_test_mesh_stop (&s_mesh);
}

TestSuite (gateway_load, .init = s_setup, .fini = s_teardown, .timeout = 180.);

//  One client of the load: its own easy handle, so its own connection.
typedef struct {
    CURL *easy;
    struct curl_slist *headers;
    int index;
    int done;                   //  Requests answered
    const char *fixed_id;       //  X-Request-ID for every request, or NULL
    bool create;                //  POST new users (with Idempotency-Key), not GET
    char body[128];             //  The POST body (libcurl borrows it)
} s_client_t;

//  What a load run saw.
typedef struct {
    int ok;                     //  200s (201s when creating)
    int failed;                 //  Anything else (status or transport)
    long connects;              //  New connections opened, all clients
    long last_status;           //  Of the last failure
} s_outcome_t;

//  Point the client's next request at `url` with X-Request-ID load-C-N
//  (or the fixed one).
static void
s_client_prepare (s_client_t *client, const char *url)
{
    char header[64];
    if (client->fixed_id)
        snprintf (header, sizeof header, "X-Request-ID: %s", client->fixed_id);
    else
        snprintf (header, sizeof header, "X-Request-ID: load-%d-%d", client->index,
                  client->done);
    curl_slist_free_all (client->headers);
    client->headers = curl_slist_append (NULL, header);
    if (client->create) {
        snprintf (header, sizeof header, "Idempotency-Key: key-%d-%d-%d", s_round, client->index,
                  client->done);
        client->headers = curl_slist_append (client->headers, header);
        client->headers = curl_slist_append (client->headers, "Content-Type: application/json");
        snprintf (client->body, sizeof client->body,
                  "{\"name\":\"Load\",\"email\":\"c%d-%d-%d@example.com\"}", s_round,
                  client->index, client->done);
        curl_easy_setopt (client->easy, CURLOPT_POSTFIELDS, client->body);
    }
    curl_easy_setopt (client->easy, CURLOPT_URL, url);
    curl_easy_setopt (client->easy, CURLOPT_HTTPHEADER, client->headers);
}

//  Run `count` clients doing `each` GETs of `url` (with `create`: POSTs of
//  new users) one after another, all at once, with X-Request-ID `fixed_id`
//  (NULL: a unique one each).
//  `on_progress` (may be NULL) runs after every answer with the number
//  answered so far. Bounded at 60 s.
static s_outcome_t
s_load (int count, int each, const char *url, const char *fixed_id, bool create,
        void (*on_progress) (int answered))
{
    cr_assert_leq (count, S_MAX_CLIENTS);
    s_client_t clients[S_MAX_CLIENTS];
    CURLM *multi = curl_multi_init ();
    curl_multi_setopt (multi, CURLMOPT_MAXCONNECTS, (long) count);
    for (int index = 0; index < count; index++) {
        s_client_t *client = &clients[index];
        memset (client, 0, sizeof *client);
        client->index = index;
        client->fixed_id = fixed_id;
        client->create = create;
        client->easy = mesh_test_curl_new (url, 10000L);
        curl_easy_setopt (client->easy, CURLOPT_PRIVATE, client);
        s_client_prepare (client, url);
        curl_multi_add_handle (multi, client->easy);
    }
    s_outcome_t outcome = { 0 };
    int running = count, answered = 0;
    int64_t until = mesh_mono_ms () + 60000;
    while (answered < count * each && mesh_mono_ms () < until) {
        curl_multi_perform (multi, &running);
        CURLMsg *message;
        int left = 0;
        while ((message = curl_multi_info_read (multi, &left))) {
            if (message->msg != CURLMSG_DONE)
                continue;
            s_client_t *client = NULL;
            curl_easy_getinfo (message->easy_handle, CURLINFO_PRIVATE, (char **) &client);
            long status = 0, connects = 0;
            curl_easy_getinfo (client->easy, CURLINFO_RESPONSE_CODE, &status);
            curl_easy_getinfo (client->easy, CURLINFO_NUM_CONNECTS, &connects);
            outcome.connects += connects;
            if (message->data.result == CURLE_OK && status == (create? 201: 200))
                outcome.ok++;
            else {
                outcome.failed++;
                outcome.last_status = status;
            }
            answered++;
            client->done++;
            curl_multi_remove_handle (multi, client->easy);
            if (client->done < each) {
                s_client_prepare (client, url);
                curl_multi_add_handle (multi, client->easy);
            }
            if (on_progress)
                on_progress (answered);
        }
        curl_multi_poll (multi, NULL, 0, 100, NULL);
    }
    for (int index = 0; index < count; index++) {
        curl_multi_remove_handle (multi, clients[index].easy);
        curl_easy_cleanup (clients[index].easy);
        curl_slist_free_all (clients[index].headers);
    }
    curl_multi_cleanup (multi);
    cr_assert_eq (answered, count * each, "load did not finish in time");
    return outcome;
}

//  True when a running user process has logged `text`.
static bool
s_user_logged (const char *text)
{
    bool seen = false;
    for (size_t index = 0; index < MESH_TEST_MAX_USERS && !seen; index++)
        if (s_mesh.users[index]) {
            char *log = mesh_proc_log (s_mesh.users[index]);
            seen = strstr (log, text) != NULL;
            free (log);
        }
    return seen;
}

Test (gateway_load, hundred_keepalive_clients)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    char url[160];
    mesh_test_create_user (s_mesh.base, "Load", "hundred@example.com", url, sizeof url);
    s_outcome_t outcome = s_load (100, 10, url, NULL, false, NULL);
    cr_assert_eq (outcome.ok, 1000, "%d failed, last status %ld", outcome.failed,
                  outcome.last_status);
    cr_assert_leq (outcome.connects, 100, "keep-alive: %ld connections", outcome.connects);
    //  Each process that touched a request logs its X-Request-ID
    cr_assert (mesh_proc_wait_log (s_mesh.gateway, "\"request_id\":\"load-42-7\"", 5000));
    cr_assert (s_user_logged ("\"request_id\":\"load-42-7\""),
               "no worker logged request id load-42-7");
}

//  Stop the first user process once the GETs are under way, so that it
//  holds requests it will never answer (the broker keeps routing to it until
//  it misses its heartbeats), then kill it. GETs are quick enough that a
//  plain kill often finds none in flight.
static void
s_stop_then_kill_first_user (int answered)
{
    if (answered == 50)
        mesh_proc_signal (s_mesh.users[0], SIGSTOP);
    if (answered == 150)
        mesh_proc_signal (s_mesh.users[0], SIGKILL);
}

//  Kill the first user process in the middle of the POSTs. Not stopped
//  first: a stopped process would keep its database locks (an idempotency
//  key being written) and hold up the retry.
static void
s_kill_first_user (int answered)
{
    if (answered == 100)
        mesh_proc_signal (s_mesh.users[0], SIGKILL);
}

Test (gateway_load, worker_killed_all_stopped_started_again)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    char url[160];
    mesh_test_create_user (s_mesh.base, "Load", "killed@example.com", url, sizeof url);
    s_outcome_t outcome = s_load (20, 25, url, NULL, false, s_stop_then_kill_first_user);
    cr_assert_eq (outcome.ok, 500, "%d GETs failed while a worker died (last status %ld)",
                  outcome.failed, outcome.last_status);
    mesh_proc_destroy (&s_mesh.users[0]);
    //  The stopped worker held requests, and they were retried
    char metrics_url[128];
    snprintf (metrics_url, sizeof metrics_url, "%s/metrics", s_mesh.base);
    mesh_test_http_response_t metrics = mesh_test_http_do ("GET", metrics_url, NULL, NULL);
    cr_assert_geq (mesh_test_metric (metrics.body, "mesh_calls_total",
                                     "service=\"user\",method=\"user.get\",outcome=\"unavailable\""),
                   1.0, "no call met the dead worker:\n%s", metrics.body);
    mesh_test_http_response_free (&metrics);

    //  POSTs with an Idempotency-Key are retried too: all created once. A
    //  plain kill (see s_kill_first_user) holds creates only when the LRU
    //  happened to give the new process some at that moment, which a loaded
    //  machine can make unlikely: up to three rounds, each of which must
    //  lose nothing, until one create met the dead worker.
    char create[128];
    snprintf (create, sizeof create, "%s/v1/users", s_mesh.base);
    double met = 0.0;
    for (int round = 0; round < 3 && met < 1.0; round++) {
        s_round = round;
        mesh_test_mesh_user_start (&s_mesh, 0);
        cr_assert (mesh_test_wait_workers (s_mesh.broker.endpoint, "user", 4, 15000));
        outcome = s_load (20, 10, create, NULL, true, s_kill_first_user);
        cr_assert_eq (outcome.ok, 200, "%d POSTs failed while a worker died (last status %ld)",
                      outcome.failed, outcome.last_status);
        mesh_proc_destroy (&s_mesh.users[0]);
        metrics = mesh_test_http_do ("GET", metrics_url, NULL, NULL);
        met = mesh_test_metric (metrics.body, "mesh_calls_total",
                                "service=\"user\",method=\"user.create\",outcome=\"unavailable\"");
        if (met < 1.0 && round == 2)
            cr_assert_fail ("no create met the dead worker in three rounds:\n%s", metrics.body);
        mesh_test_http_response_free (&metrics);
    }

    //  Every user process gone: 503 + Retry-After, well before the 5 s deadline
    mesh_proc_signal (s_mesh.users[1], SIGKILL);
    int64_t started = mesh_mono_ms ();
    mesh_test_http_response_t response = mesh_test_http_do ("GET", url, NULL, NULL);
    int64_t elapsed = mesh_mono_ms () - started;
    json_decref (mesh_test_expect_problem (&response, 503, "urn:zmesh:problem:unavailable"));
    char retry[16];
    cr_assert (mesh_test_http_header (&response, "Retry-After", retry, sizeof retry));
    cr_assert_lt (elapsed, 4500, "503 took %ld ms", (long) elapsed);
    mesh_test_http_response_free (&response);
    mesh_proc_destroy (&s_mesh.users[1]);
    cr_assert (mesh_test_wait_ready (s_mesh.base, 503, 5000));
    started = mesh_mono_ms ();
    response = mesh_test_http_do ("GET", url, NULL, NULL);
    json_decref (mesh_test_expect_problem (&response, 503, "urn:zmesh:problem:unavailable"));
    cr_assert_lt (mesh_mono_ms () - started, 1000, "a known outage answers at once");
    mesh_test_http_response_free (&response);

    //  Started again: 200 as soon as the gateway has seen the worker
    mesh_test_mesh_user_start (&s_mesh, 0);
    cr_assert (mesh_test_wait_ready (s_mesh.base, 200, 15000));
    response = mesh_test_http_do ("GET", url, NULL, NULL);
    cr_assert_eq (response.status, 200, "%s", response.body);
    mesh_test_http_response_free (&response);
}

Test (gateway_load, one_request_id_on_many_concurrent_requests)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    char url[160];
    mesh_test_create_user (s_mesh.base, "Load", "same-id@example.com", url, sizeof url);
    //  Clients may reuse an id; requests in flight together must not clash
    s_outcome_t outcome = s_load (50, 4, url, "same-id", false, NULL);
    cr_assert_eq (outcome.ok, 200, "%d failed, last status %ld", outcome.failed,
                  outcome.last_status);
    //  Those that overlapped went out as "same-id~N": still the client's id
    //  first, in the worker's log
    cr_assert (s_user_logged ("\"request_id\":\"same-id~"),
               "no concurrent duplicate reached a worker");
}

//  A GET the broker holds when it is killed and started again at once: the
//  first `audit` worker holds every request, a second one (an echo worker
//  answering any method) registers after it and serves the retry on the new
//  broker. The probe is slowed to once a minute so that only the closed
//  connection can tell the gateway; without it the GET would wait out its
//  5 s deadline and end 504.
Test (gateway_load, request_held_when_the_broker_restarts_is_retried_at_once)
{
    if (!s_mesh.gateway)
        cr_skip_test ("DATABASE_URL is not set");
    mesh_proc_signal (s_mesh.gateway, SIGTERM);
    cr_assert (mesh_proc_wait_exit (s_mesh.gateway, 15000, NULL), "the gateway did not stop");
    mesh_proc_destroy (&s_mesh.gateway);
    static const char *const slow_probe[] = { "--log-level", "info", "--probe-ms", "60000", NULL };
    mesh_test_mesh_gateway_start (&s_mesh, slow_probe);
    cr_assert (mesh_test_wait_ready (s_mesh.base, 200, 15000), "gateway not ready");
    int heartbeat_ms = atoi (s_mesh.heartbeat);
    s_holder = mesh_test_holder_start (s_mesh.broker.endpoint, "audit", heartbeat_ms);
    cr_assert (mesh_test_wait_workers (s_mesh.broker.endpoint, "audit", 1, 10000));

    CURLM *multi = curl_multi_init ();
    CURL *easy = mesh_test_curl_new (mesh_test_mesh_url (&s_mesh, "/v1/audit"), 20000L);
    curl_multi_add_handle (multi, easy);
    int running = 1;
    curl_multi_perform (multi, &running);
    mesh_test_service_stats_t stats = { 0 };
    int64_t until_ms = mesh_mono_ms () + 10000;
    while (mesh_mono_ms () < until_ms && running
           && !(mesh_test_service_stats (s_mesh.broker.endpoint, "audit", &stats, 500)
                && stats.in_flight == 1)) {
        curl_multi_poll (multi, NULL, 0, 20, NULL);
        curl_multi_perform (multi, &running);
    }
    cr_assert (running && stats.in_flight == 1, "the holder never got the GET");
    static const char *const answer_all[] = { "--reply-request", "1", NULL };
    s_echo = mesh_test_echo_worker (s_mesh.broker.endpoint, "audit", 1, heartbeat_ms, answer_all);
    cr_assert (mesh_test_wait_workers (s_mesh.broker.endpoint, "audit", 2, 10000));

    int64_t kill_ms = mesh_mono_ms ();
    mesh_proc_signal (s_mesh.broker.proc, SIGKILL);
    cr_assert (mesh_proc_wait_exit (s_mesh.broker.proc, 5000, NULL), "broker did not die");
    mesh_proc_destroy (&s_mesh.broker.proc);
    cr_assert (mesh_test_broker_start (&s_mesh.broker, heartbeat_ms, NULL),
               "broker did not start again");
    int64_t serving_ms = mesh_mono_ms ();
    until_ms = mesh_mono_ms () + 20000;
    while (running && mesh_mono_ms () < until_ms) {
        curl_multi_poll (multi, NULL, 0, 50, NULL);
        curl_multi_perform (multi, &running);
    }
    int64_t elapsed_ms = mesh_mono_ms () - kill_ms;
    int64_t after_serving_ms = mesh_mono_ms () - serving_ms;
    long status = 0;
    curl_easy_getinfo (easy, CURLINFO_RESPONSE_CODE, &status);
    curl_multi_remove_handle (multi, easy);
    curl_easy_cleanup (easy);
    curl_multi_cleanup (multi);
    cr_assert_not (running, "no answer");
    cr_assert_eq (status, 200, "the held GET ended %ld after %" PRId64 " ms", status, elapsed_ms);
    //  The 5 s deadline runs from the GET; the new broker's start is not
    //  the gateway's doing, so the bound counts from when it served
    cr_assert_lt (after_serving_ms, 2500,
                  "answered %" PRId64 " ms after the new broker served (%" PRId64
                  " ms after the kill; deadline 5000)",
                  after_serving_ms, elapsed_ms);
    cr_assert (mesh_proc_wait_log (s_mesh.gateway, "the connection to the broker closed", 1000));
}
