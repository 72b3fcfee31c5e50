/*  =========================================================================
    test_broker_shutdown - graceful stops on both sides of the broker
    SIGTERM to the broker: workers get DISCONNECT, waiting clients get an
    answer, exit 0. SIGTERM to a worker: it says DISCONNECT and the broker
    forgets it at once (no wait for heartbeat expiry).
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_client.h"
#include "mesh/mesh_time.h"
#include "mesh_test.h"

#include <criterion/criterion.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>

TestSuite (broker_shutdown, .timeout = 60.);

Test (broker_shutdown, sigterm_disconnects_workers_and_answers_waiting_clients)
{
    mesh_test_broker_t broker = { 0 };
    cr_assert (mesh_test_broker_start (&broker, 1000, NULL));
    const char *info[] = { "--log-level", "info", NULL };
    mesh_proc_t *worker = mesh_test_echo_worker (broker.endpoint, "echo", 1, 1000, info);
    cr_assert (mesh_test_wait_workers (broker.endpoint, "echo", 1, 10000));

    //  One request holds the worker, one waits in the queue
    mesh_client_t *client = mesh_client_new (NULL, broker.endpoint, NULL);
    msgpack_sbuffer body;
    mesh_test_pack_sleep (&body, 1500);     //  Handler busy: DISCONNECT waits for it
    mesh_call_t hold = { .service = "echo", .method = "sleep", .body = body.data,
                         .body_len = body.size, .timeout_ms = 30000 };
    cr_assert_eq (mesh_client_send (client, &hold, NULL), 0);
    mesh_call_t waiting = { .service = "echo", .method = "echo", .timeout_ms = 30000 };
    cr_assert_eq (mesh_client_send (client, &waiting, NULL), 0);
    cr_assert (mesh_test_wait_load (broker.endpoint, "echo", 1, 1, 10000),
               "broker never held both requests");

    int64_t start = mesh_mono_ms ();
    mesh_proc_signal (broker.proc, SIGTERM);
    int status = -1;
    cr_assert (mesh_proc_wait_exit (broker.proc, 10000, &status), "broker did not exit");
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0, "exit status %d", status);
    cr_assert_lt (mesh_mono_ms () - start, 5000, "shutdown took too long");

    //  Both requests are answered unavailable, long before their deadline
    for (int index = 0; index < 2; index++) {
        mesh_reply_t reply;
        cr_assert_eq (mesh_client_recv (client, &reply, 5000), 0);
        cr_assert_eq (reply.code, MESH_CODE_UNAVAILABLE, "got %s", mesh_code_name (reply.code));
    }
    cr_assert (mesh_proc_wait_log (worker, "broker said DISCONNECT", 10000),
               "worker never saw DISCONNECT");
    msgpack_sbuffer_destroy (&body);
    mesh_client_destroy (&client);
    mesh_proc_destroy (&worker);
    mesh_proc_destroy (&broker.proc);
}

Test (broker_shutdown, worker_sigterm_unregisters_at_once)
{
    mesh_test_broker_t broker = { 0 };
    //  Long heartbeat: only the worker's DISCONNECT can explain a quick 404
    cr_assert (mesh_test_broker_start (&broker, 10000, NULL));
    //  Four threads: the graceful stop of a threaded worker process is also
    //  what the TSan stage checks (a race makes the exit status non-zero)
    const char *threads[] = { "--threads", "4", NULL };
    mesh_proc_t *worker = mesh_test_echo_worker (broker.endpoint, "echo", 4, 10000, threads);
    cr_assert (mesh_test_wait_workers (broker.endpoint, "echo", 4, 10000));
    char answer[16];
    cr_assert (mesh_test_mmi (broker.endpoint, "mmi.service", "echo", answer, sizeof answer, 2000));
    cr_assert_str_eq (answer, "200");

    mesh_proc_signal (worker, SIGTERM);
    int status = -1;
    cr_assert (mesh_proc_wait_exit (worker, 10000, &status));
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0, "worker exit status %d", status);
    cr_assert (mesh_test_wait_service (broker.endpoint, "echo", "404", answer, sizeof answer, 5000),
               "broker still lists the worker after its DISCONNECT");
    mesh_proc_destroy (&worker);
    mesh_test_broker_stop (&broker);
}

//  A rolling restart: SIGTERM to a worker under steady load. It says it is
//  leaving, answers what it holds and what was already on its way, and the
//  broker says DISCONNECT once it holds nothing: no request fails.
Test (broker_shutdown, worker_sigterm_under_load_answers_everything_it_was_sent)
{
    enum { S_TOTAL = 600, S_WINDOW = 32, S_STOP_AFTER = 150 };
    mesh_test_broker_t broker = { 0 };
    const char *info[] = { "--log-level", "info", NULL };
    cr_assert (mesh_test_broker_start (&broker, 1000, info));
    mesh_proc_t *leaving = mesh_test_echo_worker (broker.endpoint, "echo", 8, 1000, info);
    mesh_proc_t *staying = mesh_test_echo_worker (broker.endpoint, "echo", 8, 1000, NULL);
    cr_assert (mesh_test_wait_workers (broker.endpoint, "echo", 2, 10000));

    //  Each request takes 5 ms and the window is twice the workers' credit:
    //  both always hold some, the broker queues the rest, and it sends more
    //  to the worker the moment its replies come back, also when the
    //  signal comes
    mesh_client_t *client = mesh_client_new (NULL, broker.endpoint, NULL);
    msgpack_sbuffer body;
    mesh_test_pack_sleep (&body, 5);
    mesh_call_t call = { .service = "echo", .method = "sleep", .body = body.data,
                         .body_len = body.size, .timeout_ms = 20000 };
    int sent = 0, answered = 0, failed = 0;
    mesh_code_t first_failure = MESH_CODE_OK;
    int64_t give_up_ms = mesh_mono_ms () + 40000;
    while (answered < S_TOTAL && mesh_mono_ms () < give_up_ms) {
        while (sent < S_TOTAL && sent - answered < S_WINDOW) {
            cr_assert_eq (mesh_client_send (client, &call, NULL), 0);
            sent++;
        }
        mesh_reply_t reply;
        if (mesh_client_recv (client, &reply, 1000))
            continue;
        answered++;
        if (reply.code != MESH_CODE_OK && failed++ == 0)
            first_failure = reply.code;
        if (answered == S_STOP_AFTER)
            mesh_proc_signal (leaving, SIGTERM);
    }
    cr_assert_eq (answered, S_TOTAL, "only %d of %d requests answered", answered, S_TOTAL);
    cr_assert_eq (failed, 0, "%d requests failed during the worker's stop, the first with %s",
                  failed, mesh_code_name (first_failure));
    int status = -1;
    cr_assert (mesh_proc_wait_exit (leaving, 10000, &status), "the leaving worker did not exit");
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) == 0, "worker exit status %d", status);
    cr_assert (mesh_proc_wait_log (leaving, "worker left", 5000),
               "the worker did not wait for the broker's DISCONNECT");
    cr_assert (mesh_proc_wait_log (broker.proc, "worker leaving", 5000));
    msgpack_sbuffer_destroy (&body);
    mesh_client_destroy (&client);
    mesh_proc_destroy (&staying);
    mesh_proc_destroy (&leaving);
    mesh_test_broker_stop (&broker);
}
