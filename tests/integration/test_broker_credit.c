/*  =========================================================================
    test_broker_credit - worker credit, the zmesh extension to MDP/0.1
    A hand-built worker on a raw libzmq DEALER registers with READY and a
    fifth frame "8", so the test sees exactly what the broker sends it:
    never more than 8 requests in flight, one more per REPLY. When it dies,
    every client whose request it held hears unavailable within heartbeat x
    liveness + 1 s, and the requests still queued wait for their deadline
    and then hear unavailable (no worker). READY with a credit outside
    1..1000 gets a DISCONNECT. Clients are 20 raw DEALERs (one request
    each) so every reply is checked for its own envelope id.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh/mdp.h"
#include "mesh/mesh_envelope.h"
#include "mesh/mesh_time.h"
#include "mesh_test.h"

#include <criterion/criterion.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define S_HEARTBEAT_MS 250
#define S_LIVENESS 3                //  The broker's default
#define S_DEAD_WORKER_BOUND_MS (S_HEARTBEAT_MS * S_LIVENESS + 1000)
#define S_CLIENTS 20
#define S_CREDIT 8
#define S_SERVICE "credit"

//  One request as the raw worker received it.
typedef struct {
    uint8_t client[255];        //  Client routing id (frame 3)
    size_t client_len;
    char id[MESH_ENVELOPE_MAX_ID + 1];  //  Envelope id
} s_held_t;

//  The hand-built worker.
typedef struct {
    void *socket;               //  DEALER, or NULL once "killed"
    int64_t heartbeat_at_ms;    //  Next HEARTBEAT to send
    int received;               //  REQUESTs received
    int disconnects;            //  DISCONNECTs received
    s_held_t held[S_CLIENTS];   //  Requests in arrival order
} s_raw_worker_t;

//  One reply as a raw client saw it.
typedef struct {
    bool got;
    char id[MESH_ENVELOPE_MAX_ID + 1];
    mesh_code_t code;
    int64_t at_mono_ms;
    uint64_t at_wall_ms;
} s_outcome_t;

static mesh_test_broker_t s_broker;
static void *s_context;
static s_raw_worker_t s_worker;
static void *s_clients[S_CLIENTS];
static void *s_spare[3];            //  Workers with a bad credit

static void
s_setup (void)
{
    memset (&s_worker, 0, sizeof s_worker);
    memset (s_clients, 0, sizeof s_clients);
    memset (s_spare, 0, sizeof s_spare);
    memset (&s_broker, 0, sizeof s_broker);
    cr_assert (mesh_test_broker_start (&s_broker, S_HEARTBEAT_MS, NULL), "broker did not start");
    s_context = zmq_ctx_new ();
    cr_assert_not_null (s_context);
}

static void
s_teardown (void)
{
    //  Every socket closes before the context, or zmq_ctx_term blocks
    for (int index = 0; index < S_CLIENTS; index++)
        if (s_clients[index])
            zmq_close (s_clients[index]);
    for (int index = 0; index < 3; index++)
        if (s_spare[index])
            zmq_close (s_spare[index]);
    if (s_worker.socket)
        zmq_close (s_worker.socket);
    if (s_context)
        zmq_ctx_term (s_context);
    s_context = NULL;
    mesh_test_broker_stop (&s_broker);
}

TestSuite (broker_credit, .init = s_setup, .fini = s_teardown, .timeout = 120.);

//  --------------------------------------------------------------------------
//  Helpers

//  A DEALER connected to the broker.
static void *
s_dealer (void)
{
    void *dealer = zmq_socket (s_context, ZMQ_DEALER);
    cr_assert_not_null (dealer);
    int linger = 0;
    zmq_setsockopt (dealer, ZMQ_LINGER, &linger, sizeof linger);
    //  A bad endpoint fails the test at the first send; no socket leaks here
    zmq_connect (dealer, s_broker.endpoint);
    return dealer;
}

//  Send READY for `service`, with `credit` as the fifth frame (NULL: none).
static void
s_send_ready (void *dealer, const char *service, const char *credit)
{
    unsigned char command = MDP_READY;
    const void *parts[] = { "", MDP_WORKER, &command, service, credit };
    size_t sizes[] = { 0, strlen (MDP_WORKER), 1, strlen (service), credit? strlen (credit): 0 };
    cr_assert_eq (mdp_send_parts (dealer, 0, credit? 5: 4, parts, sizes), 0);
}

//  Send a bare worker command.
static void
s_send_command (void *dealer, mdp_command_t command)
{
    unsigned char byte = (unsigned char) command;
    const void *parts[] = { "", MDP_WORKER, &byte };
    size_t sizes[] = { 0, strlen (MDP_WORKER), 1 };
    cr_assert_eq (mdp_send_parts (dealer, ZMQ_DONTWAIT, 3, parts, sizes), 0);
}

//  Connect the raw worker and register with credit `credit`.
static void
s_worker_start (const char *service, const char *credit)
{
    s_worker.socket = s_dealer ();
    s_send_ready (s_worker.socket, service, credit);
    s_worker.heartbeat_at_ms = mesh_mono_ms () + S_HEARTBEAT_MS;
}

//  Take one message off the raw worker's socket (it is readable).
static void
s_worker_take (void)
{
    mdp_frames_t frames;
    if (mdp_frames_recv (&frames, s_worker.socket, ZMQ_DONTWAIT) != 0)
        return;
    cr_assert_geq (frames.count, 3, "broker sent %d frames to a worker", frames.count);
    cr_assert (mdp_frame_empty (&frames.frame[0]));
    cr_assert (mdp_frame_eq (&frames.frame[1], MDP_WORKER));
    int command = mdp_frame_command (&frames.frame[2]);
    if (command == MDP_REQUEST) {
        //  "", MDPW01, 0x02, client, "", body
        cr_assert_eq (frames.count, 6, "REQUEST has %d frames", frames.count);
        cr_assert (mdp_frame_empty (&frames.frame[4]));
        cr_assert_lt (s_worker.received, S_CLIENTS, "more REQUESTs than requests sent");
        s_held_t *held = &s_worker.held[s_worker.received++];
        held->client_len = zmq_msg_size (&frames.frame[3]);
        cr_assert (held->client_len > 0 && held->client_len <= sizeof held->client);
        memcpy (held->client, zmq_msg_data (&frames.frame[3]), held->client_len);
        mesh_envelope_decoder_t *decoder = mesh_envelope_decoder_new (0);
        mesh_envelope_t envelope;
        cr_assert_eq (mesh_envelope_decode (decoder, zmq_msg_data (&frames.frame[5]),
                                            zmq_msg_size (&frames.frame[5]),
                                            MESH_ENVELOPE_REQUEST, &envelope),
                      0, "the broker changed the body");
        snprintf (held->id, sizeof held->id, "%.*s", (int) envelope.id.len, envelope.id.ptr);
        mesh_envelope_decoder_destroy (&decoder);
    }
    else
    if (command == MDP_DISCONNECT)
        s_worker.disconnects++;
    else
        cr_assert_eq (command, MDP_HEARTBEAT, "unexpected worker command %d", command);
    mdp_frames_close (&frames);
}

//  Run the raw worker (take messages, heartbeat on time) for `duration_ms`,
//  or until it has received `requests` REQUESTs (-1: run the full time).
static void
s_worker_pump (int duration_ms, int requests)
{
    int64_t until_ms = mesh_mono_ms () + duration_ms;
    while (requests < 0 || s_worker.received < requests) {
        int64_t now_ms = mesh_mono_ms ();
        if (now_ms >= s_worker.heartbeat_at_ms) {
            s_send_command (s_worker.socket, MDP_HEARTBEAT);
            s_worker.heartbeat_at_ms = now_ms + S_HEARTBEAT_MS;
        }
        if (now_ms >= until_ms)
            break;
        int64_t wait_ms = s_worker.heartbeat_at_ms < until_ms? s_worker.heartbeat_at_ms: until_ms;
        wait_ms -= now_ms;
        zmq_pollitem_t item = { s_worker.socket, 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (&item, 1, (long) (wait_ms > 0? wait_ms: 0)) == 1)
            s_worker_take ();
    }
}

//  Wait (bounded) until the broker lists the raw worker, heartbeating
//  meanwhile so it cannot expire while we ask.
static void
s_worker_wait_registered (void)
{
    int64_t until_ms = mesh_mono_ms () + 10000;
    char answer[16] = "";
    while (mesh_mono_ms () < until_ms) {
        if (mesh_test_mmi (s_broker.endpoint, "mmi.service", S_SERVICE, answer, sizeof answer,
                           200)
            && strcmp (answer, "200") == 0)
            return;
        s_worker_pump (20, -1);
    }
    cr_assert_fail ("raw worker did not register (mmi.service says \"%s\")", answer);
}

//  The raw worker answers held request `index` with an empty-map body.
static void
s_worker_reply (int index)
{
    const s_held_t *held = &s_worker.held[index];
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    mesh_envelope_pack_reply_head (&packer, held->id, strlen (held->id));
    msgpack_pack_map (&packer, 0);
    unsigned char command = MDP_REPLY;
    const void *parts[] = { "", MDP_WORKER, &command, held->client, "", buffer.data };
    size_t sizes[] = { 0, strlen (MDP_WORKER), 1, held->client_len, 0, buffer.size };
    cr_assert_eq (mdp_send_parts (s_worker.socket, 0, 6, parts, sizes), 0);
    msgpack_sbuffer_destroy (&buffer);
}

//  Client `index` sends one request, id "client-NN", deadline `deadline_ms`.
static void
s_client_send (int index, uint64_t deadline_ms)
{
    char id[32];
    snprintf (id, sizeof id, "client-%02d", index);
    mesh_test_send_request (s_clients[index], S_SERVICE, id, "echo", deadline_ms);
}

//  Read one reply waiting on client `index` into *outcome.
static void
s_client_take (int index, s_outcome_t *outcome)
{
    cr_assert_not (outcome->got, "client %d got a second reply", index);
    mesh_test_reply_t reply;
    cr_assert (mesh_test_recv_reply (s_clients[index], 0, &reply));
    cr_assert_str_eq (reply.service, S_SERVICE);
    outcome->got = true;
    outcome->at_mono_ms = reply.at_mono_ms;
    outcome->at_wall_ms = reply.at_wall_ms;
    snprintf (outcome->id, sizeof outcome->id, "%s", reply.id);
    outcome->code = reply.code;
}

//  Collect client replies until every client has one or `until_ms`
//  (monotonic) passes. While the raw worker lives it keeps heartbeating.
static void
s_clients_collect (s_outcome_t *outcomes, int64_t until_ms)
{
    while (true) {
        int missing = 0;
        for (int index = 0; index < S_CLIENTS; index++)
            missing += !outcomes[index].got;
        int64_t now_ms = mesh_mono_ms ();
        if (missing == 0 || now_ms >= until_ms)
            return;
        if (s_worker.socket && now_ms >= s_worker.heartbeat_at_ms) {
            s_send_command (s_worker.socket, MDP_HEARTBEAT);
            s_worker.heartbeat_at_ms = now_ms + S_HEARTBEAT_MS;
        }
        int64_t wait_ms = until_ms - now_ms;
        if (s_worker.socket && s_worker.heartbeat_at_ms - now_ms < wait_ms)
            wait_ms = s_worker.heartbeat_at_ms - now_ms;
        zmq_pollitem_t items[S_CLIENTS];
        for (int index = 0; index < S_CLIENTS; index++)
            items[index] = (zmq_pollitem_t) { s_clients[index], 0, ZMQ_POLLIN, 0 };
        if (zmq_poll (items, S_CLIENTS, (long) (wait_ms > 0? wait_ms: 0)) > 0)
            for (int index = 0; index < S_CLIENTS; index++)
                if (items[index].revents & ZMQ_POLLIN)
                    s_client_take (index, &outcomes[index]);
    }
}

//  Client index of envelope id "client-NN".
static int
s_client_of (const char *id)
{
    int index = -1;
    cr_assert_eq (sscanf (id, "client-%d", &index), 1, "odd id %s", id);
    cr_assert (index >= 0 && index < S_CLIENTS);
    return index;
}

//  Register a credit-8 raw worker, then 20 clients each send one request
//  with a deadline `timeout_ms` from now; the worker takes what the broker
//  gives. Returns the deadline (unix ms).
static uint64_t
s_fill (int timeout_ms)
{
    s_worker_start (S_SERVICE, "8");
    s_worker_wait_registered ();
    for (int index = 0; index < S_CLIENTS; index++)
        s_clients[index] = s_dealer ();
    uint64_t deadline_ms = mesh_wall_ms () + (uint64_t) timeout_ms;
    for (int index = 0; index < S_CLIENTS; index++)
        s_client_send (index, deadline_ms);
    s_worker_pump (5000, S_CREDIT);
    cr_assert_eq (s_worker.received, S_CREDIT, "worker received %d of its credit %d",
                  s_worker.received, S_CREDIT);
    return deadline_ms;
}

//  --------------------------------------------------------------------------

Test (broker_credit, credit_8_worker_gets_8_requests_then_one_per_reply)
{
    s_fill (30000);
    //  Bounded negative check: the other 12 stay with the broker
    s_worker_pump (1000, -1);
    cr_assert_eq (s_worker.received, S_CREDIT, "worker got %d requests with credit %d",
                  s_worker.received, S_CREDIT);
    char answer[16];
    cr_assert (mesh_test_mmi (s_broker.endpoint, "mmi.service", S_SERVICE, answer, sizeof answer,
                              2000));
    cr_assert_str_eq (answer, "200");

    //  One REPLY returns one credit: exactly one more request comes
    s_worker_reply (0);
    s_worker_pump (5000, S_CREDIT + 1);
    cr_assert_eq (s_worker.received, S_CREDIT + 1, "no request after a REPLY");
    s_worker_pump (500, -1);
    cr_assert_eq (s_worker.received, S_CREDIT + 1, "one REPLY bought %d requests",
                  s_worker.received - S_CREDIT);

    //  The answered client got its own reply
    s_outcome_t outcomes[S_CLIENTS];
    memset (outcomes, 0, sizeof outcomes);
    int answered = s_client_of (s_worker.held[0].id);
    zmq_pollitem_t item = { s_clients[answered], 0, ZMQ_POLLIN, 0 };
    cr_assert_eq (zmq_poll (&item, 1, 5000), 1, "the reply never reached its client");
    s_client_take (answered, &outcomes[answered]);
    cr_assert_str_eq (outcomes[answered].id, s_worker.held[0].id);
    cr_assert_eq (outcomes[answered].code, MESH_CODE_OK);

    //  Nine distinct requests from nine distinct clients: none delivered twice
    bool seen[S_CLIENTS] = { false };
    for (int index = 0; index < s_worker.received; index++) {
        int client = s_client_of (s_worker.held[index].id);
        cr_assert_not (seen[client], "request of client %d delivered twice", client);
        seen[client] = true;
    }
}

Test (broker_credit, dead_credit_worker_fails_held_requests_and_queued_ones_wait)
{
    uint64_t deadline_ms = s_fill (4000);

    //  "Killed": no more heartbeats, socket gone
    int64_t kill_ms = mesh_mono_ms ();
    zmq_close (s_worker.socket);
    s_worker.socket = NULL;

    bool held[S_CLIENTS] = { false };
    for (int index = 0; index < S_CREDIT; index++)
        held[s_client_of (s_worker.held[index].id)] = true;
    s_outcome_t outcomes[S_CLIENTS];
    memset (outcomes, 0, sizeof outcomes);

    //  Everything the worker held comes back within the bound...
    s_clients_collect (outcomes, kill_ms + S_DEAD_WORKER_BOUND_MS + 200);
    int held_answered = 0;
    for (int index = 0; index < S_CLIENTS; index++) {
        if (!held[index]) {
            cr_assert_not (outcomes[index].got, "queued client %d answered %s before its deadline",
                           index, mesh_code_name (outcomes[index].code));
            continue;
        }
        cr_assert (outcomes[index].got, "held client %d got no answer", index);
        char id[32];
        snprintf (id, sizeof id, "client-%02d", index);
        cr_assert_str_eq (outcomes[index].id, id);
        cr_assert_eq (outcomes[index].code, MESH_CODE_UNAVAILABLE, "client %d: %s", index,
                      mesh_code_name (outcomes[index].code));
        int64_t elapsed_ms = outcomes[index].at_mono_ms - kill_ms;
        cr_assert_leq (elapsed_ms, S_DEAD_WORKER_BOUND_MS,
                       "client %d answered %" PRId64 " ms after the death", index, elapsed_ms);
        held_answered++;
    }
    cr_assert_eq (held_answered, S_CREDIT);

    //  ... while the rest stay queued at the broker, with no worker
    char reply[16];
    cr_assert (mesh_test_mmi (s_broker.endpoint, "mmi.service", S_SERVICE, reply, sizeof reply,
                              2000));
    cr_assert_str_eq (reply, "404");

    //  At their deadline they hear unavailable (no worker came)
    int64_t deadline_mono_ms = mesh_mono_ms () + (int64_t) (deadline_ms - mesh_wall_ms ());
    s_clients_collect (outcomes, deadline_mono_ms + 1000);
    for (int index = 0; index < S_CLIENTS; index++) {
        if (held[index])
            continue;
        cr_assert (outcomes[index].got, "queued client %d never answered", index);
        char id[32];
        snprintf (id, sizeof id, "client-%02d", index);
        cr_assert_str_eq (outcomes[index].id, id);
        cr_assert_eq (outcomes[index].code, MESH_CODE_UNAVAILABLE, "client %d: %s", index,
                      mesh_code_name (outcomes[index].code));
        cr_assert_geq (outcomes[index].at_wall_ms, deadline_ms,
                       "queued client %d answered before its deadline", index);
        cr_assert_leq (outcomes[index].at_wall_ms, deadline_ms + 1000,
                       "queued client %d answered %" PRIu64 " ms after its deadline", index,
                       outcomes[index].at_wall_ms - deadline_ms);
    }
}

Test (broker_credit, ready_with_bad_credit_gets_disconnect_and_broker_keeps_serving)
{
    const char *bad[] = { "0", "1001", "abc" };
    for (int index = 0; index < 3; index++) {
        s_spare[index] = s_dealer ();
        void *dealer = s_spare[index];
        s_send_ready (dealer, S_SERVICE, bad[index]);
        zmq_pollitem_t item = { dealer, 0, ZMQ_POLLIN, 0 };
        cr_assert_eq (zmq_poll (&item, 1, 5000), 1, "no answer to READY credit \"%s\"",
                      bad[index]);
        mdp_frames_t frames;
        cr_assert_eq (mdp_frames_recv (&frames, dealer, 0), 0);
        cr_assert_eq (frames.count, 3);
        cr_assert (mdp_frame_empty (&frames.frame[0]));
        cr_assert (mdp_frame_eq (&frames.frame[1], MDP_WORKER));
        cr_assert_eq (mdp_frame_command (&frames.frame[2]), MDP_DISCONNECT,
                      "READY credit \"%s\" got command %d", bad[index],
                      mdp_frame_command (&frames.frame[2]));
        mdp_frames_close (&frames);
        char answer[16];
        cr_assert (mesh_test_mmi (s_broker.endpoint, "mmi.service", S_SERVICE, answer,
                                  sizeof answer, 2000));
        cr_assert_str_eq (answer, "404", "credit \"%s\" registered a worker", bad[index]);
    }

    //  The broker still serves: a good worker registers and answers
    s_worker_start (S_SERVICE, "8");
    s_worker_wait_registered ();
    s_clients[0] = s_dealer ();
    s_client_send (0, mesh_wall_ms () + 10000);
    s_worker_pump (5000, 1);
    cr_assert_eq (s_worker.received, 1);
    s_worker_reply (0);
    s_outcome_t outcome = { 0 };
    zmq_pollitem_t item = { s_clients[0], 0, ZMQ_POLLIN, 0 };
    cr_assert_eq (zmq_poll (&item, 1, 5000), 1, "no reply");
    s_client_take (0, &outcome);
    cr_assert_str_eq (outcome.id, "client-00");
    cr_assert_eq (outcome.code, MESH_CODE_OK);

    //  And counted each refusal
    char *metrics = mesh_test_broker_metrics (&s_broker);
    cr_assert_not_null (metrics, "GET /metrics failed");
    double count = mesh_test_metric (metrics, "mesh_broker_malformed_total", "reason=\"credit\"");
    cr_assert_geq (count, 3.0, "counted %g credit refusals", count);
    free (metrics);
}
