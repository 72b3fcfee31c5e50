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
