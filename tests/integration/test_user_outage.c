/*  =========================================================================
    test_user_outage - PostgreSQL stopped and started under mesh-user
    The test runs its own PostgreSQL cluster (scripts/pg, in a temp folder),
    so it can stop it: requests during the outage end with `unavailable`
    from the worker before their deadline (no crash, no hang); once the
    server is back, requests succeed without restarting mesh-user, and every
    committed change has its event, once, in events.list and on the live
    stream.
    Runs only when PostgreSQL 15 is installed (scripts/pg needs it), which
    scripts/test ensures; skipped when DATABASE_URL is not set, like the
    other database tests.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mesh_client.h"
#include "mesh/mesh_err.h"
#include "mesh/mesh_time.h"
#include "mesh_test.h"
#include "user_test.h"

#include <criterion/criterion.h>
#include <msgpack.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zmq.h>

#define S_BEFORE 20             //  Creates before the outage
#define S_DURING 10             //  Requests during it
#define S_AFTER 20              //  Creates after it

static char s_dir[256];         //  The cluster's folder ("" when none)
static mesh_test_broker_t s_broker;
static mesh_proc_t *s_user;
static mesh_client_t *s_client;
static mesh_test_sockets_t *s_sockets;

static void
s_setup (void)
{
    const char *url = getenv ("DATABASE_URL");
    if (!url || !*url)
        return;
    snprintf (s_dir, sizeof s_dir, "/tmp/mesh-outage-XXXXXX");
    cr_assert_not_null (mkdtemp (s_dir));
    cr_assert (mesh_test_broker_start (&s_broker, 200, NULL), "broker did not start");
    s_sockets = mesh_test_sockets_new (1000);
    s_client = mesh_client_new (NULL, s_broker.endpoint, NULL);
    cr_assert_not_null (s_client);
}

static void
s_teardown (void)
{
    mesh_client_destroy (&s_client);
    mesh_test_sockets_destroy (&s_sockets);
    mesh_proc_destroy (&s_user);
    mesh_test_broker_stop (&s_broker);
    if (*s_dir) {
        user_test_cluster_stop (s_dir);
        char command[1024];
        snprintf (command, sizeof command, "rm -rf '%s' '%s.log'", s_dir, s_dir);
        cr_expect_eq (system (command), 0);
    }
}

TestSuite (user_outage, .init = s_setup, .fini = s_teardown, .timeout = 240.);

//  Create a user numbered `index`; returns the reply (borrowed).
static mesh_reply_t
s_create (size_t index, int timeout_ms)
{
    char email[64];
    snprintf (email, sizeof email, "outage%zu@example.com", index);
    msgpack_sbuffer body;
    user_test_pack_strings (&body, (const char *const[]) {"name", "Outage", "email", email, NULL});
    mesh_reply_t reply = user_test_call (s_client, "user.create", &body, NULL, timeout_ms);
    msgpack_sbuffer_destroy (&body);
    return reply;
}

Test (user_outage, database_stopped_and_started)
{
    if (!*s_dir)
        cr_skip_test ("DATABASE_URL is not set");
    char url[1024];
    user_test_cluster_start (s_dir, url, sizeof url);
    void *sub = mesh_test_sockets_open (s_sockets, ZMQ_SUB, s_broker.xpub);
    int unlimited = 0;
    zmq_setsockopt (sub, ZMQ_RCVHWM, &unlimited, sizeof unlimited);
    cr_assert_eq (zmq_setsockopt (sub, ZMQ_SUBSCRIBE, "user.", 5), 0);
    s_user = user_test_start (&s_broker, url, 2, NULL, NULL);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "user", 2, 30000),
               "workers did not register; log:\n%s", mesh_proc_log (s_user));

    static char created[S_BEFORE + S_DURING + S_AFTER][40];
    size_t count = 0;
    for (size_t index = 0; index < S_BEFORE; index++) {
        mesh_reply_t reply = s_create (index, 0);
        user_test_expect_code (&reply, MESH_CODE_OK);
        user_test_str (reply.body, "id", created[count++], sizeof created[0]);
    }

    //  Outage: each request is answered unavailable by the worker, well
    //  before its deadline (the client's own timer would say
    //  deadline_exceeded)
    user_test_cluster_stop (s_dir);
    for (size_t index = 0; index < S_DURING; index++) {
        int64_t started = mesh_mono_ms ();
        mesh_reply_t reply = index % 2 ? s_create (S_BEFORE + index, 3000)
                                       : user_test_call_strings (
                                             s_client, "user.get",
                                             (const char *const[]) {"id", created[0], NULL},
                                             NULL);
        int64_t took = mesh_mono_ms () - started;
        user_test_expect_code (&reply, MESH_CODE_UNAVAILABLE);
        cr_expect_lt (took, 3000, "answered after %ld ms", (long) took);
    }
    int status = 0;
    cr_assert_not (mesh_proc_wait_exit (s_user, 0, &status), "mesh-user exited: %d", status);

    //  Back: the same process serves again (bounded retries while the
    //  workers reconnect)
    user_test_cluster_start (s_dir, url, sizeof url);
    int64_t until = mesh_mono_ms () + 30000;
    mesh_reply_t reply;
    do
        reply = user_test_call_strings (s_client, "user.get",
                                        (const char *const[]) {"id", created[0], NULL}, NULL);
    while (reply.code == MESH_CODE_UNAVAILABLE && mesh_mono_ms () < until);
    user_test_expect_code (&reply, MESH_CODE_OK);
    for (size_t index = 0; index < S_AFTER; index++) {
        reply = s_create (S_BEFORE + S_DURING + index, 0);
        user_test_expect_code (&reply, MESH_CODE_OK);
        user_test_str (reply.body, "id", created[count++], sizeof created[0]);
    }

    //  No event lost: events.list holds exactly the committed creates, in
    //  order, seq 1..count; the live stream has each of them
    user_test_events_t *listed = user_test_events_new (count + 50);
    until = mesh_mono_ms () + 30000;
    do {
        user_test_events_destroy (&listed);
        listed = user_test_events_new (count + 50);
        user_test_events_fetch_all (listed, s_client, 7);
    } while (user_test_events_distinct (listed) < count && mesh_mono_ms () < until);
    size_t once, missing, repeated;
    user_test_events_tally (listed, count, &once, &missing, &repeated);
    cr_expect_eq (once, count, "events.list: once %zu, missing %zu, repeated %zu", once, missing,
                  repeated);
    cr_expect_eq (listed->beyond, 0, "no events beyond the %zu creates", count);
    for (size_t seq = 1; seq <= count; seq++)
        cr_expect_str_eq (listed->subject[seq], created[seq - 1], "seq %zu", seq);

    user_test_events_t *live = user_test_events_new (count + 50);
    user_test_events_receive (live, sub, count, 30000);
    user_test_events_tally (live, count, &once, &missing, &repeated);
    //  A relay that lost its connection republishes from its last recorded
    //  seq: a repeat is allowed on the live stream (subscribers are
    //  idempotent on event id), a loss is not
    cr_expect_eq (missing, 0, "live stream: missing %zu (repeated %zu)", missing, repeated);
    user_test_events_destroy (&listed);
    user_test_events_destroy (&live);

    mesh_proc_signal (s_user, SIGTERM);
    cr_assert (mesh_proc_wait_exit (s_user, 10000, &status), "mesh-user did not exit");
    cr_expect (WIFEXITED (status) && WEXITSTATUS (status) == 0, "exit status %d", status);
}
