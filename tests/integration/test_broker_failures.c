/*  =========================================================================
    test_broker_failures - the broker answers for the mesh when things break
    Real processes on loopback: a mesh-broker, echo workers, libmesh clients
    and raw DEALER sockets. Covers a worker killed while it holds a request,
    a broker killed and restarted on the same ports, requests in flight when
    the broker dies (answered unavailable at once), MMI answers, the queue
    bound, requests that expire in the queue, and services without workers.
    Where the libmesh client would report an outcome itself (it expires
    requests locally at their deadline), a raw DEALER with a hand-packed
    envelope proves the broker sent the answer. Every wait is bounded.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mdp.h"
#include "mesh/mesh_client.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_time.h"
#include "mesh_test.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define S_HEARTBEAT_MS 250
#define S_LIVENESS 3                //  The broker's default
//  The acceptance bound for "a request held by a dead worker is answered"
#define S_DEAD_WORKER_BOUND_MS (S_HEARTBEAT_MS * S_LIVENESS + 1000)

//  Criterion runs each test in its own process: these are per test, and
//  the suite's fini cleans up whatever a failed test left behind.
static mesh_test_broker_t s_broker;
static mesh_client_t *s_client;
static mesh_proc_t *s_workers[3];
static pid_t s_holder;              //  Forked raw worker, or 0
static mesh_test_sockets_t *s_sockets;  //  For raw sockets
static void *s_dealer;              //  A raw client socket

static void
s_setup (void)
{
    memset (&s_broker, 0, sizeof s_broker);
    s_client = NULL;
    memset (s_workers, 0, sizeof s_workers);
    s_holder = 0;
    s_sockets = NULL;
    s_dealer = NULL;
}

static void
s_teardown (void)
{
    if (s_holder > 0) {
        kill (s_holder, SIGKILL);
        waitpid (s_holder, NULL, 0);
        s_holder = 0;
    }
    mesh_test_sockets_destroy (&s_sockets);
    mesh_client_destroy (&s_client);
    for (int index = 0; index < 3; index++)
        mesh_proc_destroy (&s_workers[index]);
    mesh_test_broker_stop (&s_broker);
}

TestSuite (broker_failures, .init = s_setup, .fini = s_teardown, .timeout = 120.);

//  --------------------------------------------------------------------------
//  Helpers

//  Start s_broker on fresh ports.
static bool
s_broker_start (int heartbeat_ms, const char *const *extra)
{
    memset (&s_broker, 0, sizeof s_broker);
    return mesh_test_broker_start (&s_broker, heartbeat_ms, extra);
}

//  Wait until `service` shows exactly `workers` workers and `in_flight`
//  requests held (-1: any). Returns true when it did within timeout_ms.
static bool
s_wait_state (const char *service, int workers, int in_flight, int queued, int timeout_ms,
              mesh_test_service_stats_t *last)
{
    int64_t until_ms = mesh_mono_ms () + timeout_ms;
    while (true) {
        mesh_test_service_stats_t state;
        if (mesh_test_service_stats (s_broker.endpoint, service, &state, 500) && state.listed
            && (workers < 0 || state.workers == (size_t) workers)
            && (in_flight < 0 || state.in_flight == (size_t) in_flight)
            && (queued < 0 || state.queued == (size_t) queued)) {
            if (last)
                *last = state;
            return true;
        }
        if (last)
            *last = state;
        if (mesh_mono_ms () >= until_ms)
            return false;
        //  Between bounded queries; the deadline above bounds the loop
        zmq_poll (NULL, 0, 10);
    }
}

//  A raw DEALER client to the broker.
static void *
s_raw_client (void)
{
    s_sockets = mesh_test_sockets_new (5000);
    cr_assert_not_null (s_sockets);
    return mesh_test_sockets_open (s_sockets, ZMQ_DEALER, s_broker.endpoint);
}

//  Wait until `client` has seen its connection to the broker close.
static bool
s_wait_close_seen (mesh_client_t *client, int timeout_ms)
{
    int64_t until_ms = mesh_mono_ms () + timeout_ms;
    while (mesh_mono_ms () < until_ms) {
        zmq_pollitem_t item = { mesh_client_monitor_socket (client), 0, ZMQ_POLLIN, 0 };
        zmq_poll (&item, 1, 50);
        if (mesh_client_watch (client) > 0)
            return true;
    }
    return false;
}

//  "PID/0" of the echo worker `proc` (what whoami answers).
static void
s_whoami_of (mesh_proc_t *proc, char *who, size_t size)
{
    snprintf (who, size, "%d/0", (int) mesh_proc_pid (proc));
}

//  Call whoami and assert it succeeded on the worker `who`.
static void
s_assert_whoami (const char *who, int attempt)
{
    mesh_call_t call = { .service = "echo", .method = "whoami", .timeout_ms = 5000 };
    mesh_reply_t reply;
    cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
    cr_assert_eq (reply.code, MESH_CODE_OK, "request %d after the kill: %s %.*s", attempt,
                  mesh_code_name (reply.code), (int) reply.message.len, reply.message.ptr);
    cr_assert_eq (reply.body->type, MSGPACK_OBJECT_STR);
    cr_assert (reply.body->via.str.size == strlen (who)
                   && memcmp (reply.body->via.str.ptr, who, strlen (who)) == 0,
               "request %d served by %.*s, want the survivor %s", attempt,
               (int) reply.body->via.str.size, reply.body->via.str.ptr, who);
}

//  --------------------------------------------------------------------------
//  a. A worker dies while it holds a request

//  The holder is a heartbeating raw worker in a child process, so the
//  broker has no reason to give up on it but its death: first the test
//  shows the request staying held past heartbeat x liveness, then SIGKILL.
Test (broker_failures, sigkilled_worker_holding_a_request_is_answered_unavailable)
{
    cr_assert (s_broker_start (S_HEARTBEAT_MS, NULL), "broker did not start");
    s_holder = mesh_test_holder_start (s_broker.endpoint, "echo", S_HEARTBEAT_MS);
    cr_assert (s_wait_state ("echo", 1, 0, -1, 10000, NULL), "holder did not register");

    //  Client made after the fork: the child never shares its context
    s_client = mesh_client_new (NULL, s_broker.endpoint, NULL);
    cr_assert_not_null (s_client);
    msgpack_sbuffer body;
    mesh_test_pack_sleep (&body, 30000);
    mesh_call_t call = { .service = "echo", .method = "sleep", .body = body.data,
                         .body_len = body.size, .timeout_ms = 20000 };
    char held_id[MESH_ENVELOPE_MAX_ID + 1];
    cr_assert_eq (mesh_client_send (s_client, &call, held_id), 0);
    msgpack_sbuffer_destroy (&body);
    cr_assert (s_wait_state ("echo", 1, 1, 0, 10000, NULL), "the holder never got the request");
    int64_t held_ms = mesh_mono_ms ();

    //  The survivor
    s_workers[0] = mesh_test_echo_worker (s_broker.endpoint, "echo", 1, S_HEARTBEAT_MS, NULL);
    cr_assert (s_wait_state ("echo", 2, 1, 0, 10000, NULL), "survivor did not register");

    //  Control: the request stays held (no reply) well past heartbeat x
    //  liveness while the holder lives.
    int64_t until_ms = held_ms + S_HEARTBEAT_MS * S_LIVENESS + 2 * S_HEARTBEAT_MS;
    mesh_reply_t reply;
    memset (&reply, 0, sizeof reply);
    int64_t left_ms = until_ms - mesh_mono_ms ();
    if (left_ms > 0)
        cr_assert_eq (mesh_client_recv (s_client, &reply, (int) left_ms), MESH_ETIMEDOUT,
                      "got %s for a request on a live worker", mesh_code_name (reply.code));
    mesh_test_service_stats_t state;
    cr_assert (s_wait_state ("echo", 2, 1, 0, 2000, &state),
               "holder dropped before the kill: workers %zu in_flight %zu",
               state.workers, state.in_flight);

    int64_t kill_ms = mesh_mono_ms ();
    kill (s_holder, SIGKILL);
    waitpid (s_holder, NULL, 0);
    s_holder = 0;
    cr_assert_eq (mesh_client_recv (s_client, &reply, 20000), 0, "no outcome at all");
    int64_t elapsed_ms = mesh_mono_ms () - kill_ms;
    cr_assert_str_eq (reply.id, held_id);
    cr_assert_eq (reply.code, MESH_CODE_UNAVAILABLE, "got %s: %.*s", mesh_code_name (reply.code),
                  (int) reply.message.len, reply.message.ptr);
    cr_assert_leq (elapsed_ms, S_DEAD_WORKER_BOUND_MS,
                   "unavailable took %" PRId64 " ms after the kill (bound %d)", elapsed_ms,
                   S_DEAD_WORKER_BOUND_MS);

    char who[32];
    s_whoami_of (s_workers[0], who, sizeof who);
    for (int attempt = 0; attempt < 20; attempt++)
        s_assert_whoami (who, attempt);
    cr_assert (s_wait_state ("echo", 1, 0, 0, 2000, NULL), "the dead holder is still listed");
}

//  The same with two echo worker processes, as operators see it. Note: a
//  libmesh worker does not heartbeat while its handler runs, so with a
//  30 s sleep the broker would also drop it after heartbeat x liveness
//  without the kill; the test above is the one that isolates the kill.
Test (broker_failures, sigkilled_echo_worker_mid_request_then_survivor_serves_20)
{
    cr_assert (s_broker_start (S_HEARTBEAT_MS, NULL), "broker did not start");
    s_workers[0] = mesh_test_echo_worker (s_broker.endpoint, "echo", 1, S_HEARTBEAT_MS, NULL);
    cr_assert (s_wait_state ("echo", 1, 0, -1, 10000, NULL), "worker A did not register");
    s_client = mesh_client_new (NULL, s_broker.endpoint, NULL);
    cr_assert_not_null (s_client);

    msgpack_sbuffer body;
    mesh_test_pack_sleep (&body, 30000);
    mesh_call_t call = { .service = "echo", .method = "sleep", .body = body.data,
                         .body_len = body.size, .timeout_ms = 20000 };
    char held_id[MESH_ENVELOPE_MAX_ID + 1];
    cr_assert_eq (mesh_client_send (s_client, &call, held_id), 0);
    msgpack_sbuffer_destroy (&body);
    cr_assert (s_wait_state ("echo", 1, 1, 0, 10000, NULL), "worker A never got the request");

    s_workers[1] = mesh_test_echo_worker (s_broker.endpoint, "echo", 1, S_HEARTBEAT_MS, NULL);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 2, 10000),
               "worker B did not register");

    int64_t kill_ms = mesh_mono_ms ();
    mesh_proc_signal (s_workers[0], SIGKILL);
    cr_assert (mesh_proc_wait_exit (s_workers[0], 5000, NULL));
    mesh_reply_t reply;
    cr_assert_eq (mesh_client_recv (s_client, &reply, 20000), 0, "no outcome at all");
    int64_t elapsed_ms = mesh_mono_ms () - kill_ms;
    cr_assert_str_eq (reply.id, held_id);
    cr_assert_eq (reply.code, MESH_CODE_UNAVAILABLE, "got %s", mesh_code_name (reply.code));
    cr_assert_leq (elapsed_ms, S_DEAD_WORKER_BOUND_MS,
                   "unavailable took %" PRId64 " ms after the kill", elapsed_ms);

    char who[32];
    s_whoami_of (s_workers[1], who, sizeof who);
    for (int attempt = 0; attempt < 20; attempt++)
        s_assert_whoami (who, attempt);
}

//  --------------------------------------------------------------------------
//  b. The broker dies and comes back on the same ports

Test (broker_failures, workers_reregister_after_broker_restart)
{
    cr_assert (s_broker_start (S_HEARTBEAT_MS, NULL), "broker did not start");
    for (int index = 0; index < 2; index++)
        s_workers[index] =
            mesh_test_echo_worker (s_broker.endpoint, "echo", 1, S_HEARTBEAT_MS, NULL);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 2, 10000));
    s_client = mesh_client_new (NULL, s_broker.endpoint, NULL);
    cr_assert_not_null (s_client);
    mesh_call_t call = { .service = "echo", .method = "echo", .timeout_ms = 5000 };
    mesh_reply_t reply;
    cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
    cr_assert_eq (reply.code, MESH_CODE_OK);

    mesh_proc_signal (s_broker.proc, SIGKILL);
    cr_assert (mesh_proc_wait_exit (s_broker.proc, 5000, NULL), "broker did not die");
    mesh_proc_destroy (&s_broker.proc);
    cr_assert (s_wait_close_seen (s_client, 10000), "the client never saw the broker go");

    //  No broker: a call waits in the queue (it was never sent on the
    //  closed connection, so it is not lost) and ends at its deadline
    call.timeout_ms = 1000;
    int64_t start_ms = mesh_mono_ms ();
    cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
    int64_t elapsed_ms = mesh_mono_ms () - start_ms;
    cr_assert_eq (reply.code, MESH_CODE_DEADLINE_EXCEEDED, "got %s", mesh_code_name (reply.code));
    cr_assert_geq (elapsed_ms, 990, "gave up after %" PRId64 " ms, before its deadline",
                   elapsed_ms);
    cr_assert_lt (elapsed_ms, 1000 + 500, "took %" PRId64 " ms", elapsed_ms);
    //  One more that the next broker must serve
    mesh_call_t queued = { .service = "echo", .method = "echo", .timeout_ms = 20000 };
    char queued_id[MESH_ENVELOPE_MAX_ID + 1];
    cr_assert_eq (mesh_client_send (s_client, &queued, queued_id), 0);

    //  Same ports (s_broker.port is set); workers find it by themselves
    int64_t restart_ms = mesh_mono_ms ();
    cr_assert (mesh_test_broker_start (&s_broker, S_HEARTBEAT_MS, NULL), "restart failed");
    cr_assert_eq (mesh_client_recv (s_client, &reply, 20000), 0, "no outcome for the queued call");
    cr_assert_str_eq (reply.id, queued_id);
    cr_assert_eq (reply.code, MESH_CODE_OK, "the queued call: %s %.*s",
                  mesh_code_name (reply.code), (int) reply.message.len, reply.message.ptr);
    int64_t until_ms = restart_ms + 5000;
    call.timeout_ms = 300;
    bool served = false;
    int attempts = 0;
    while (!served && mesh_mono_ms () < until_ms) {
        cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
        served = reply.code == MESH_CODE_OK;
        attempts++;
    }
    cr_assert (served, "no call succeeded within 5 s of the restart (%d attempts, last %s)",
               attempts, mesh_code_name (reply.code));
    int64_t left_ms = until_ms - mesh_mono_ms ();
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 2,
                                       left_ms > 0? (int) left_ms: 0),
               "both workers did not re-register within 5 s of the restart");

    //  And the mesh is whole again: both workers serve
    char who[2][32];
    s_whoami_of (s_workers[0], who[0], sizeof who[0]);
    s_whoami_of (s_workers[1], who[1], sizeof who[1]);
    bool seen[2] = { false, false };
    call.method = "whoami";
    call.timeout_ms = 5000;
    for (int attempt = 0; attempt < 20 && !(seen[0] && seen[1]); attempt++) {
        cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
        cr_assert_eq (reply.code, MESH_CODE_OK, "got %s", mesh_code_name (reply.code));
        for (int index = 0; index < 2; index++)
            if (reply.body->via.str.size == strlen (who[index])
                && memcmp (reply.body->via.str.ptr, who[index], strlen (who[index])) == 0)
                seen[index] = true;
    }
    cr_assert (seen[0] && seen[1], "not both workers served after the restart");
}

//  Workers see the broker's connection close and register again as soon as
//  the next broker listens, not at their next heartbeat: with a heartbeat
//  of 5 s, they are back well within one.
Test (broker_failures, workers_reregister_at_once_not_at_their_next_heartbeat)
{
    const int heartbeat_ms = 5000;
    cr_assert (s_broker_start (heartbeat_ms, NULL), "broker did not start");
    for (int index = 0; index < 2; index++)
        s_workers[index] = mesh_test_echo_worker (s_broker.endpoint, "echo", 1, heartbeat_ms, NULL);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 2, 10000));
    mesh_proc_signal (s_broker.proc, SIGKILL);
    cr_assert (mesh_proc_wait_exit (s_broker.proc, 5000, NULL), "broker did not die");
    mesh_proc_destroy (&s_broker.proc);
    cr_assert (mesh_test_broker_start (&s_broker, heartbeat_ms, NULL), "restart failed");
    //  From the moment the new broker serves (its start is not the workers')
    int64_t serving_ms = mesh_mono_ms ();
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 2, 10000),
               "the workers did not register again");
    int64_t took_ms = mesh_mono_ms () - serving_ms;
    cr_assert_lt (took_ms, heartbeat_ms / 2,
                  "registered again %" PRId64 " ms after the new broker served", took_ms);
}

//  A request a worker holds when the broker dies cannot be answered any
//  more: the client says so as soon as the connection closes, not at the
//  request's deadline 30 s later.
Test (broker_failures, request_in_flight_when_the_broker_dies_is_unavailable_at_once)
{
    cr_assert (s_broker_start (S_HEARTBEAT_MS, NULL), "broker did not start");
    s_holder = mesh_test_holder_start (s_broker.endpoint, "hold", S_HEARTBEAT_MS);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "hold", 1, 10000));
    s_client = mesh_client_new (NULL, s_broker.endpoint, NULL);
    cr_assert_not_null (s_client);
    mesh_call_t call = { .service = "hold", .method = "hold", .timeout_ms = 30000 };
    char held_id[MESH_ENVELOPE_MAX_ID + 1];
    cr_assert_eq (mesh_client_send (s_client, &call, held_id), 0);
    cr_assert (s_wait_state ("hold", 1, 1, -1, 10000, NULL), "the holder never got the request");

    int64_t kill_ms = mesh_mono_ms ();
    mesh_proc_signal (s_broker.proc, SIGKILL);
    mesh_reply_t reply;
    cr_assert_eq (mesh_client_recv (s_client, &reply, 20000), 0, "no outcome at all");
    int64_t elapsed_ms = mesh_mono_ms () - kill_ms;
    cr_assert_str_eq (reply.id, held_id);
    cr_assert_eq (reply.code, MESH_CODE_UNAVAILABLE, "got %s %.*s", mesh_code_name (reply.code),
                  (int) reply.message.len, reply.message.ptr);
    cr_assert_lt (elapsed_ms, 10000, "unavailable took %" PRId64 " ms after the kill",
                  elapsed_ms);
    cr_assert_eq (mesh_client_pending (s_client), 0);
    cr_assert (mesh_proc_wait_exit (s_broker.proc, 5000, NULL), "broker did not die");
    mesh_proc_destroy (&s_broker.proc);
}

//  The close is seen after the replies that came before it: a stand-in
//  broker (a bare ROUTER) answers one of two requests, then closes.
Test (broker_failures, replies_that_arrived_before_the_close_are_kept)
{
    void *context = zmq_ctx_new ();
    void *router = zmq_socket (context, ZMQ_ROUTER);
    int linger = 10000;             //  zmq_ctx_term sends the reply, then closes
    zmq_setsockopt (router, ZMQ_LINGER, &linger, sizeof linger);
    cr_assert_eq (zmq_bind (router, "tcp://127.0.0.1:*"), 0);
    char endpoint[64];
    size_t endpoint_size = sizeof endpoint;
    cr_assert_eq (zmq_getsockopt (router, ZMQ_LAST_ENDPOINT, endpoint, &endpoint_size), 0);
    s_client = mesh_client_new (NULL, endpoint, NULL);
    cr_assert_not_null (s_client);
    char ids[2][MESH_ENVELOPE_MAX_ID + 1];
    mesh_call_t call = { .service = "echo", .method = "echo", .timeout_ms = 30000 };
    for (int index = 0; index < 2; index++)
        cr_assert_eq (mesh_client_send (s_client, &call, ids[index]), 0);

    //  Identity, "", MDPC01, service, envelope: answer the first
    mdp_frames_t first, second;
    zmq_pollitem_t item = { router, 0, ZMQ_POLLIN, 0 };
    cr_assert_eq (zmq_poll (&item, 1, 10000), 1, "the stand-in broker got nothing");
    cr_assert_eq (mdp_frames_recv (&first, router, 0), 0);
    cr_assert_eq (mdp_frames_recv (&second, router, 0), 0);
    cr_assert_eq (first.count, 5);
    mesh_slice_t id;
    uint64_t deadline_ms;
    cr_assert_eq (mesh_envelope_peek (zmq_msg_data (&first.frame[4]), zmq_msg_size (&first.frame[4]),
                                      &id, &deadline_ms, NULL),
                  0);
    cr_assert (mesh_slice_eq (id, ids[0]), "the first request is not the first sent");
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    mesh_envelope_pack_reply_head (&packer, id.ptr, id.len);
    msgpack_pack_map (&packer, 0);
    const void *parts[] = { zmq_msg_data (&first.frame[0]), "", MDP_CLIENT, "echo", buffer.data };
    size_t sizes[] = { zmq_msg_size (&first.frame[0]), 0, strlen (MDP_CLIENT), 4, buffer.size };
    cr_assert_eq (mdp_send_parts (router, 0, 5, parts, sizes), 0);
    msgpack_sbuffer_destroy (&buffer);
    mdp_frames_close (&first);
    mdp_frames_close (&second);
    int64_t close_ms = mesh_mono_ms ();
    zmq_close (router);
    zmq_ctx_term (context);

    bool answered[2] = { false, false };
    for (int outcome = 0; outcome < 2; outcome++) {
        mesh_reply_t reply;
        cr_assert_eq (mesh_client_recv (s_client, &reply, 20000), 0, "outcome %d missing",
                      outcome);
        int index = strcmp (reply.id, ids[0]) == 0? 0: 1;
        cr_assert_str_eq (reply.id, ids[index]);
        cr_assert_not (answered[index], "request %d reported twice", index);
        answered[index] = true;
        mesh_code_t want = index == 0? MESH_CODE_OK: MESH_CODE_UNAVAILABLE;
        cr_assert_eq (reply.code, want, "request %d: %s %.*s", index, mesh_code_name (reply.code),
                      (int) reply.message.len, reply.message.ptr);
    }
    int64_t elapsed_ms = mesh_mono_ms () - close_ms;
    cr_assert_lt (elapsed_ms, 10000, "the outcomes took %" PRId64 " ms after the close",
                  elapsed_ms);
}

//  --------------------------------------------------------------------------
//  c. MMI (RFC 8)

Test (broker_failures, mmi_service_and_unknown_mmi)
{
    cr_assert (s_broker_start (S_HEARTBEAT_MS, NULL), "broker did not start");
    s_workers[0] = mesh_test_echo_worker (s_broker.endpoint, "echo", 1, S_HEARTBEAT_MS, NULL);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 1, 10000));
    char answer[16];
    cr_assert (mesh_test_mmi (s_broker.endpoint, "mmi.service", "echo", answer, sizeof answer,
                              2000));
    cr_assert_str_eq (answer, "200");
    cr_assert (mesh_test_mmi (s_broker.endpoint, "mmi.service", "nobody", answer, sizeof answer,
                              2000));
    cr_assert_str_eq (answer, "404");
    cr_assert (mesh_test_mmi (s_broker.endpoint, "mmi.foo", "", answer, sizeof answer, 2000));
    cr_assert_str_eq (answer, "501");
    cr_assert (mesh_test_mmi (s_broker.endpoint, "mmi.foo", "echo", answer, sizeof answer, 2000));
    cr_assert_str_eq (answer, "501");

    //  A service whose last worker left is 404 again
    mesh_proc_signal (s_workers[0], SIGTERM);
    cr_assert (mesh_proc_wait_exit (s_workers[0], 5000, NULL));
    int64_t until_ms = mesh_mono_ms () + 5000;
    do
        cr_assert (mesh_test_mmi (s_broker.endpoint, "mmi.service", "echo", answer,
                                  sizeof answer, 2000));
    while (strcmp (answer, "404") != 0 && mesh_mono_ms () < until_ms);
    cr_assert_str_eq (answer, "404");
}

//  --------------------------------------------------------------------------
//  d. Queue bound

//  Heartbeat 1000 ms, liveness 5: the worker stays silent for its 2 s
//  sleep (libmesh does not heartbeat inside a handler) yet stays alive,
//  so the queued requests are served afterwards.
Test (broker_failures, full_queue_answers_resource_exhausted_at_once)
{
    const char *flags[] = { "--queue-max", "2", "--liveness", "5", NULL };
    cr_assert (s_broker_start (1000, flags), "broker did not start");
    s_workers[0] = mesh_test_echo_worker (s_broker.endpoint, "echo", 1, 1000, NULL);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 1, 10000));
    s_client = mesh_client_new (NULL, s_broker.endpoint, NULL);
    cr_assert_not_null (s_client);

    //  One DEALER keeps order: the sleep holds the worker, two wait, the
    //  fourth finds the queue full.
    msgpack_sbuffer body;
    mesh_test_pack_sleep (&body, 2000);
    mesh_call_t hold = { .service = "echo", .method = "sleep", .body = body.data,
                         .body_len = body.size, .timeout_ms = 20000 };
    mesh_call_t echo = { .service = "echo", .method = "echo", .timeout_ms = 20000 };
    char ids[4][MESH_ENVELOPE_MAX_ID + 1];
    cr_assert_eq (mesh_client_send (s_client, &hold, ids[0]), 0);
    cr_assert_eq (mesh_client_send (s_client, &echo, ids[1]), 0);
    cr_assert_eq (mesh_client_send (s_client, &echo, ids[2]), 0);
    int64_t start_ms = mesh_mono_ms ();
    cr_assert_eq (mesh_client_send (s_client, &echo, ids[3]), 0);
    msgpack_sbuffer_destroy (&body);

    mesh_reply_t reply;
    cr_assert_eq (mesh_client_recv (s_client, &reply, 1000), 0, "no prompt answer");
    int64_t elapsed_ms = mesh_mono_ms () - start_ms;
    cr_assert_str_eq (reply.id, ids[3], "first outcome is not the fourth request's");
    cr_assert_eq (reply.code, MESH_CODE_RESOURCE_EXHAUSTED, "got %s",
                  mesh_code_name (reply.code));
    cr_assert_lt (elapsed_ms, 1000, "resource_exhausted took %" PRId64 " ms", elapsed_ms);
    mesh_test_service_stats_t state;
    cr_assert (s_wait_state ("echo", 1, 1, 2, 1000, &state),
               "want 1 held and 2 queued, have %zu and %zu", state.in_flight,
               state.queued);

    //  The queue drains in order once the worker frees up
    for (int index = 0; index < 3; index++) {
        cr_assert_eq (mesh_client_recv (s_client, &reply, 10000), 0);
        cr_assert_str_eq (reply.id, ids[index]);
        cr_assert_eq (reply.code, MESH_CODE_OK, "request %d: %s", index,
                      mesh_code_name (reply.code));
    }
}

//  --------------------------------------------------------------------------
//  e. A request that expires in the queue

Test (broker_failures, request_expiring_in_queue_gets_deadline_exceeded_from_broker)
{
    const char *flags[] = { "--liveness", "5", NULL };
    cr_assert (s_broker_start (1000, flags), "broker did not start");
    s_workers[0] = mesh_test_echo_worker (s_broker.endpoint, "echo", 1, 1000, NULL);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 1, 10000));
    s_client = mesh_client_new (NULL, s_broker.endpoint, NULL);
    cr_assert_not_null (s_client);
    msgpack_sbuffer body;
    mesh_test_pack_sleep (&body, 2000);
    mesh_call_t hold = { .service = "echo", .method = "sleep", .body = body.data,
                         .body_len = body.size, .timeout_ms = 20000 };
    cr_assert_eq (mesh_client_send (s_client, &hold, NULL), 0);
    msgpack_sbuffer_destroy (&body);
    cr_assert (s_wait_state ("echo", 1, 1, 0, 5000, NULL), "the worker is not busy");

    //  Raw DEALER: deadline 300 ms in the envelope, but we wait 3 s
    s_dealer = s_raw_client ();
    uint64_t deadline_ms = mesh_wall_ms () + 300;
    int64_t start_ms = mesh_mono_ms ();
    mesh_test_send_request (s_dealer, "echo", "expire-me-1", "echo", deadline_ms);
    mesh_test_reply_t outcome;
    cr_assert (mesh_test_recv_reply (s_dealer, 3000, &outcome), "the broker never answered");
    int64_t elapsed_ms = outcome.at_mono_ms - start_ms;
    cr_assert_str_eq (outcome.service, "echo");
    cr_assert_str_eq (outcome.id, "expire-me-1");
    cr_assert (outcome.is_error);
    cr_assert_eq (outcome.code, MESH_CODE_DEADLINE_EXCEEDED, "got %s",
                  mesh_code_name (outcome.code));
    cr_assert_geq (outcome.at_wall_ms, deadline_ms, "answered %" PRIu64 " ms before the deadline",
                   deadline_ms - outcome.at_wall_ms);
    cr_assert_lt (elapsed_ms, 300 + 1000, "answered after %" PRId64 " ms", elapsed_ms);

    //  The worker is still there and busy: this was the queue, not it
    mesh_test_service_stats_t state;
    cr_assert (mesh_test_service_stats (s_broker.endpoint, "echo", &state, 2000));
    cr_assert_eq (state.workers, 1);

    char *metrics = mesh_test_broker_metrics (&s_broker);
    cr_assert_not_null (metrics, "GET /metrics failed");
    double expired = mesh_test_metric (metrics, "mesh_broker_requests_total",
                                       "service=\"echo\",outcome=\"expired\"");
    cr_assert_geq (expired, 1.0, "mesh_broker_requests_total{service=\"echo\","
                                 "outcome=\"expired\"} is %g", expired);
    free (metrics);

    //  The request that held the worker still completes
    mesh_reply_t reply;
    cr_assert_eq (mesh_client_recv (s_client, &reply, 10000), 0);
    cr_assert_eq (reply.code, MESH_CODE_OK, "got %s", mesh_code_name (reply.code));
}

//  --------------------------------------------------------------------------
//  f. No worker at all

Test (broker_failures, no_worker_unavailable_at_the_envelope_deadline)
{
    const char *flags[] = { "--default-wait-ms", "700", NULL };
    cr_assert (s_broker_start (S_HEARTBEAT_MS, flags), "broker did not start");
    s_dealer = s_raw_client ();
    uint64_t deadline_ms = mesh_wall_ms () + 500;
    int64_t start_ms = mesh_mono_ms ();
    mesh_test_send_request (s_dealer, "nobody", "nobody-1", "anything", deadline_ms);
    mesh_test_reply_t outcome;
    cr_assert (mesh_test_recv_reply (s_dealer, 3000, &outcome), "the broker never answered");
    int64_t elapsed_ms = outcome.at_mono_ms - start_ms;
    cr_assert_str_eq (outcome.service, "nobody");
    cr_assert_str_eq (outcome.id, "nobody-1");
    cr_assert_eq (outcome.code, MESH_CODE_UNAVAILABLE, "got %s", mesh_code_name (outcome.code));
    cr_assert_geq (outcome.at_wall_ms, deadline_ms, "answered %" PRIu64 " ms before the deadline",
                   deadline_ms - outcome.at_wall_ms);
    cr_assert_leq (elapsed_ms, 500 + 1000, "answered after %" PRId64 " ms", elapsed_ms);
}

Test (broker_failures, no_worker_and_no_deadline_waits_the_default)
{
    const char *flags[] = { "--default-wait-ms", "700", NULL };
    cr_assert (s_broker_start (S_HEARTBEAT_MS, flags), "broker did not start");
    s_dealer = s_raw_client ();
    uint64_t sent_wall_ms = mesh_wall_ms ();
    int64_t start_ms = mesh_mono_ms ();
    mesh_test_send_request (s_dealer, "nobody", "nobody-2", "anything", 0);
    mesh_test_reply_t outcome;
    cr_assert (mesh_test_recv_reply (s_dealer, 3000, &outcome), "the broker never answered");
    int64_t elapsed_ms = outcome.at_mono_ms - start_ms;
    cr_assert_str_eq (outcome.id, "nobody-2");
    cr_assert_eq (outcome.code, MESH_CODE_UNAVAILABLE, "got %s", mesh_code_name (outcome.code));
    //  The broker starts its 700 ms when the request arrives, after we sent
    cr_assert_geq (outcome.at_wall_ms, sent_wall_ms + 700, "answered after only %" PRIu64 " ms",
                   outcome.at_wall_ms - sent_wall_ms);
    cr_assert_leq (elapsed_ms, 700 + 1000, "answered after %" PRId64 " ms", elapsed_ms);
}
