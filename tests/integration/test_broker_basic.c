/*  =========================================================================
    test_broker_basic - round trips and load balancing through mesh-broker
    Real processes on loopback: one broker, echo workers, a libmesh client.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_client.h"
#include "mesh_test.h"

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static mesh_test_broker_t s_broker;
static mesh_client_t *s_client;

static void
s_setup (void)
{
    memset (&s_broker, 0, sizeof s_broker);
    cr_assert (mesh_test_broker_start (&s_broker, 250, NULL), "broker did not start");
    s_client = mesh_client_new (NULL, s_broker.endpoint, NULL);
    cr_assert_not_null (s_client);
}

static void
s_teardown (void)
{
    mesh_client_destroy (&s_client);
    mesh_test_broker_stop (&s_broker);
}

TestSuite (broker_basic, .init = s_setup, .fini = s_teardown, .timeout = 60.);

//  Pack {"text": text} into a fresh buffer.
static void
s_pack_text (msgpack_sbuffer *buffer, const char *text)
{
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 1);
    mesh_pack_cstr (&packer, "text");
    mesh_pack_cstr (&packer, text);
}

Test (broker_basic, echo_round_trip)
{
    mesh_proc_t *worker = mesh_test_echo_worker (s_broker.endpoint, "echo", 1, 250, NULL);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 1, 10000));
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    s_pack_text (&body, "hello mesh");
    mesh_call_t call = { .service = "echo", .method = "echo", .body = body.data,
                         .body_len = body.size, .timeout_ms = 5000 };
    mesh_reply_t reply;
    cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
    cr_assert_eq (reply.code, MESH_CODE_OK, "code %s: %.*s", mesh_code_name (reply.code),
                  (int) reply.message.len, reply.message.ptr);
    cr_assert_not_null (reply.body);
    cr_assert_eq (reply.body->type, MSGPACK_OBJECT_MAP);
    const msgpack_object *text = &reply.body->via.map.ptr[0].val;
    cr_assert_eq (text->type, MSGPACK_OBJECT_STR);
    cr_assert_eq (text->via.str.size, strlen ("hello mesh"));
    cr_assert (memcmp (text->via.str.ptr, "hello mesh", text->via.str.size) == 0);

    //  An error from the handler comes back as that code
    call.method = "no.such.method";
    cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
    cr_assert_eq (reply.code, MESH_CODE_UNIMPLEMENTED);
    msgpack_sbuffer_destroy (&body);
    mesh_proc_destroy (&worker);
}

//  --bind takes a list: one broker on TCP and on a Unix socket, a worker
//  on one, a client on the other.
Test (broker_basic, one_broker_on_tcp_and_ipc_at_once)
{
    mesh_test_broker_t both;
    memset (&both, 0, sizeof both);
    both.port = mesh_test_free_port ();
    both.xsub_port = mesh_test_free_port ();
    both.xpub_port = mesh_test_free_port ();
    both.admin_port = mesh_test_free_port ();
    char ipc[128], bind[256];
    snprintf (ipc, sizeof ipc, "ipc:///tmp/mesh-test-broker-%d.sock", (int) getpid ());
    snprintf (bind, sizeof bind, "tcp://127.0.0.1:%d,%s", both.port, ipc);
    const char *const extra[] = { "--bind", bind, NULL };
    cr_assert (mesh_test_broker_start (&both, 250, extra), "broker did not start");
    mesh_proc_t *worker = mesh_test_echo_worker (ipc, "echo", 1, 250, NULL);
    cr_assert (mesh_test_wait_workers (both.endpoint, "echo", 1, 10000),
               "the worker on %s did not register", ipc);
    mesh_client_t *client = mesh_client_new (NULL, both.endpoint, NULL);
    cr_assert_not_null (client);
    mesh_call_t call = { .service = "echo", .method = "whoami", .timeout_ms = 5000 };
    mesh_reply_t reply;
    cr_assert_eq (mesh_client_call (client, &call, &reply), 0);
    cr_assert_eq (reply.code, MESH_CODE_OK, "over tcp: %s", mesh_code_name (reply.code));
    mesh_client_destroy (&client);
    client = mesh_client_new (NULL, ipc, NULL);
    cr_assert_not_null (client);
    cr_assert_eq (mesh_client_call (client, &call, &reply), 0);
    cr_assert_eq (reply.code, MESH_CODE_OK, "over ipc: %s", mesh_code_name (reply.code));
    mesh_client_destroy (&client);
    mesh_proc_destroy (&worker);
    mesh_test_broker_stop (&both);
    unlink (ipc + strlen ("ipc://"));
}

//  An empty endpoint in the list is refused at start, not half bound.
Test (broker_basic, a_bind_list_with_an_empty_endpoint_is_refused)
{
    char path[512];
    char bind[64];
    snprintf (bind, sizeof bind, "tcp://127.0.0.1:%d,", mesh_test_free_port ());
    const char *argv[] = { mesh_test_bin ("mesh-broker", path, sizeof path), "--bind", bind,
                           "--events-xsub", "", "--events-xpub", "", "--admin", "127.0.0.1:0",
                           NULL };
    mesh_proc_t *broker = mesh_proc_start (argv, NULL);
    cr_assert_not_null (broker);
    int status = 0;
    cr_assert (mesh_proc_wait_exit (broker, 10000, &status), "the broker did not exit");
    cr_assert (WIFEXITED (status) && WEXITSTATUS (status) != 0, "status %d", status);
    cr_assert (mesh_proc_wait_log (broker, "empty or too long endpoint", 1000));
    mesh_proc_destroy (&broker);
}

Test (broker_basic, three_workers_share_3000_requests_evenly)
{
    mesh_proc_t *workers[3];
    for (int index = 0; index < 3; index++)
        workers[index] = mesh_test_echo_worker (s_broker.endpoint, "echo", 1, 250, NULL);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 3, 10000));

    //  One request at a time: then the share depends only on the broker's
    //  choice (least recently used), not on how fast each process happens to
    //  run on a loaded machine (with many in flight a faster worker frees up
    //  more often and rightly gets more).
    char who[3][32] = { "", "", "" };
    int counts[3] = { 0, 0, 0 };
    int sent = 0, done = 0;
    mesh_call_t call = { .service = "echo", .method = "whoami", .timeout_ms = 10000 };
    while (done < 3000) {
        while (sent < 3000 && sent - done < 1) {
            cr_assert_eq (mesh_client_send (s_client, &call, NULL), 0);
            sent++;
        }
        mesh_reply_t reply;
        cr_assert_eq (mesh_client_recv (s_client, &reply, 10000), 0, "reply %d missing", done);
        cr_assert_eq (reply.code, MESH_CODE_OK, "%s", mesh_code_name (reply.code));
        cr_assert_eq (reply.body->type, MSGPACK_OBJECT_STR);
        char name[32];
        snprintf (name, sizeof name, "%.*s", (int) reply.body->via.str.size,
                  reply.body->via.str.ptr);
        int slot = 0;
        while (slot < 3 && who[slot][0] && strcmp (who[slot], name) != 0)
            slot++;
        cr_assert_lt (slot, 3, "more than three workers answered");
        if (!who[slot][0])
            strcpy (who[slot], name);
        counts[slot]++;
        done++;
    }
    for (int index = 0; index < 3; index++)
        cr_assert (counts[index] >= 800 && counts[index] <= 1200,
                   "worker %d served %d of 3000 (want 1000 +- 20%%): %d %d %d", index,
                   counts[index], counts[0], counts[1], counts[2]);
    for (int index = 0; index < 3; index++)
        mesh_proc_destroy (&workers[index]);
}

Test (broker_basic, slow_handler_keeps_its_worker_alive)
{
    //  A handler that runs for 8 x heartbeat x liveness: the worker's
    //  companion thread heartbeats meanwhile, so the broker keeps the
    //  request on it and the reply arrives (no "worker died").
    mesh_proc_t *worker = mesh_test_echo_worker (s_broker.endpoint, "echo", 1, 250, NULL);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 1, 10000));
    msgpack_sbuffer body;
    msgpack_sbuffer_init (&body);
    mesh_test_pack_sleep (&body, 6000);
    mesh_call_t call = { .service = "echo", .method = "sleep", .body = body.data,
                         .body_len = body.size, .timeout_ms = 20000 };
    mesh_reply_t reply;
    cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
    cr_assert_eq (reply.code, MESH_CODE_OK, "got %s: %.*s", mesh_code_name (reply.code),
                  (int) reply.message.len, reply.message.ptr);
    msgpack_sbuffer_destroy (&body);
    mesh_proc_destroy (&worker);
}

Test (broker_basic, metrics_count_requests_and_pass_promtool)
{
    mesh_proc_t *worker = mesh_test_echo_worker (s_broker.endpoint, "echo", 4, 250, NULL);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 1, 10000));
    mesh_call_t call = { .service = "echo", .method = "echo", .timeout_ms = 5000 };
    mesh_reply_t reply;
    for (int index = 0; index < 5; index++) {
        cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
        cr_assert_eq (reply.code, MESH_CODE_OK);
    }
    char *text = mesh_test_broker_metrics (&s_broker);
    cr_assert_not_null (text, "no /metrics from the broker");
    cr_assert_geq (mesh_test_metric (text, "mesh_broker_requests_total",
                                     "service=\"echo\",outcome=\"replied\""), 5.0);
    cr_assert_eq (mesh_test_metric (text, "mesh_broker_workers", "service=\"echo\""), 1.0);
    cr_assert_geq (mesh_test_metric (text, "mesh_broker_time_in_broker_seconds_count",
                                     "service=\"echo\""), 5.0);
    //  The exposition must satisfy Prometheus' own checker when it is here
    char output[4096];
    cr_assert (mesh_test_promtool_check (text, output, sizeof output),
               "promtool check metrics failed:\n%s", output);
    free (text);
    mesh_proc_destroy (&worker);
}
