/*  =========================================================================
    test_broker_failures - the broker answers for the mesh when things break
    Real processes on loopback: a mesh-broker, echo workers, libmesh clients
    and raw DEALER sockets. Covers a worker killed while it holds a request,
    a broker killed and restarted on the same ports, MMI answers, the queue
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
#include <curl/curl.h>
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
static void *s_context;             //  For raw sockets
static void *s_dealer;              //  A raw client socket

static void
s_setup (void)
{
    memset (&s_broker, 0, sizeof s_broker);
    s_client = NULL;
    memset (s_workers, 0, sizeof s_workers);
    s_holder = 0;
    s_context = NULL;
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
    if (s_dealer)
        zmq_close (s_dealer);
    s_dealer = NULL;
    if (s_context)
        zmq_ctx_term (s_context);
    s_context = NULL;
    mesh_client_destroy (&s_client);
    for (int index = 0; index < 3; index++)
        mesh_proc_destroy (&s_workers[index]);
    mesh_test_broker_stop (&s_broker);
}

TestSuite (broker_failures, .init = s_setup, .fini = s_teardown, .timeout = 120.);

//  --------------------------------------------------------------------------
//  Helpers

//  Start s_broker on fresh ports. A port mesh_test_free_port found free a
//  moment ago can be taken by another process before the broker binds it
//  (seen with test binaries running concurrently), so try again then.
static bool
s_broker_start (int heartbeat_ms, const char *const *extra)
{
    for (int attempt = 0; attempt < 3; attempt++) {
        memset (&s_broker, 0, sizeof s_broker);
        if (mesh_test_broker_start (&s_broker, heartbeat_ms, extra))
            return true;
        mesh_proc_destroy (&s_broker.proc);     //  Not _stop: it expects exit 0
    }
    return false;
}

//  Pack {"ms": ms} (the echo worker's sleep body) into *buffer.
static void
s_pack_ms (msgpack_sbuffer *buffer, uint32_t ms)
{
    msgpack_sbuffer_init (buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, buffer, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 1);
    mesh_pack_cstr (&packer, "ms");
    msgpack_pack_uint32 (&packer, ms);
}

//  What mmi.services says about one service.
typedef struct {
    bool found;
    uint64_t workers;
    uint64_t queued;
    uint64_t in_flight;
} s_state_t;

//  Unsigned field `name` of msgpack map `map`, or 0.
static uint64_t
s_map_u64 (const msgpack_object *map, const char *name)
{
    for (uint32_t index = 0; map->type == MSGPACK_OBJECT_MAP && index < map->via.map.size;
         index++) {
        const msgpack_object_kv *pair = &map->via.map.ptr[index];
        if (pair->key.type == MSGPACK_OBJECT_STR && pair->key.via.str.size == strlen (name)
            && memcmp (pair->key.via.str.ptr, name, strlen (name)) == 0
            && pair->val.type == MSGPACK_OBJECT_POSITIVE_INTEGER)
            return pair->val.via.u64;
    }
    return 0;
}

//  Ask mmi.services (bounded by timeout_ms) for `service`'s counters.
//  Returns false when the broker did not answer.
static bool
s_service_state (const char *endpoint, const char *service, s_state_t *state, int timeout_ms)
{
    memset (state, 0, sizeof *state);
    void *context = zmq_ctx_new ();
    void *dealer = zmq_socket (context, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt (dealer, ZMQ_LINGER, &linger, sizeof linger);
    bool answered = false;
    if (zmq_connect (dealer, endpoint) == 0) {
        const void *parts[] = { "", MDP_CLIENT, "mmi.services", "" };
        size_t sizes[] = { 0, strlen (MDP_CLIENT), strlen ("mmi.services"), 0 };
        mdp_send_parts (dealer, 0, 4, parts, sizes);
        zmq_pollitem_t item = { dealer, 0, ZMQ_POLLIN, 0 };
        mdp_frames_t frames;
        if (zmq_poll (&item, 1, timeout_ms) == 1 && mdp_frames_recv (&frames, dealer, 0) == 0) {
            msgpack_unpacked unpacked;
            msgpack_unpacked_init (&unpacked);
            if (frames.count == 4
                && msgpack_unpack_next (&unpacked, zmq_msg_data (&frames.frame[3]),
                                        zmq_msg_size (&frames.frame[3]), NULL)
                       == MSGPACK_UNPACK_SUCCESS
                && unpacked.data.type == MSGPACK_OBJECT_MAP && unpacked.data.via.map.size == 1) {
                answered = true;
                msgpack_object list = unpacked.data.via.map.ptr[0].val;
                for (uint32_t index = 0;
                     list.type == MSGPACK_OBJECT_ARRAY && index < list.via.array.size; index++) {
                    const msgpack_object *entry = &list.via.array.ptr[index];
                    for (uint32_t field = 0;
                         entry->type == MSGPACK_OBJECT_MAP && field < entry->via.map.size;
                         field++) {
                        const msgpack_object_kv *pair = &entry->via.map.ptr[field];
                        if (pair->key.type == MSGPACK_OBJECT_STR && pair->key.via.str.size == 4
                            && memcmp (pair->key.via.str.ptr, "name", 4) == 0
                            && pair->val.type == MSGPACK_OBJECT_STR
                            && pair->val.via.str.size == strlen (service)
                            && memcmp (pair->val.via.str.ptr, service, strlen (service)) == 0) {
                            state->found = true;
                            state->workers = s_map_u64 (entry, "workers");
                            state->queued = s_map_u64 (entry, "queued");
                            state->in_flight = s_map_u64 (entry, "in_flight");
                        }
                    }
                }
            }
            msgpack_unpacked_destroy (&unpacked);
            mdp_frames_close (&frames);
        }
    }
    zmq_close (dealer);
    zmq_ctx_term (context);
    return answered;
}

//  Wait until `service` shows exactly `workers` workers and `in_flight`
//  requests held (-1: any). Returns true when it did within timeout_ms.
static bool
s_wait_state (const char *service, int workers, int in_flight, int queued, int timeout_ms,
              s_state_t *last)
{
    int64_t until_ms = mesh_mono_ms () + timeout_ms;
    while (true) {
        s_state_t state;
        if (s_service_state (s_broker.endpoint, service, &state, 500) && state.found
            && (workers < 0 || state.workers == (uint64_t) workers)
            && (in_flight < 0 || state.in_flight == (uint64_t) in_flight)
            && (queued < 0 || state.queued == (uint64_t) queued)) {
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

//  A raw DEALER client to the broker (on s_context).
static void *
s_raw_client (void)
{
    if (!s_context)
        s_context = zmq_ctx_new ();
    void *dealer = zmq_socket (s_context, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt (dealer, ZMQ_LINGER, &linger, sizeof linger);
    zmq_connect (dealer, s_broker.endpoint);   //  Failure shows at the first send
    return dealer;
}

//  Send "", MDPC01, service, envelope{id, method, deadline_ms (0: none),
//  body: nil} on a raw DEALER.
static void
s_raw_send (void *dealer, const char *service, const char *id, const char *method,
            uint64_t deadline_ms)
{
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &buffer, msgpack_sbuffer_write);
    mesh_request_head_t head = { .id = id, .method = method, .deadline_ms = deadline_ms };
    mesh_envelope_pack_request_head (&packer, &head);
    msgpack_pack_nil (&packer);
    const void *parts[] = { "", MDP_CLIENT, service, buffer.data };
    size_t sizes[] = { 0, strlen (MDP_CLIENT), strlen (service), buffer.size };
    cr_assert_eq (mdp_send_parts (dealer, 0, 4, parts, sizes), 0);
    msgpack_sbuffer_destroy (&buffer);
}

//  One reply as a raw client saw it.
typedef struct {
    char service[64];           //  Service frame of the reply
    char id[MESH_ENVELOPE_MAX_ID + 1];
    bool is_error;
    mesh_code_t code;           //  MESH_CODE_OK on success
    int64_t at_mono_ms;         //  When it arrived
    uint64_t at_wall_ms;
} s_outcome_t;

//  Wait up to timeout_ms for one reply on a raw DEALER and decode its
//  envelope. Returns false on timeout; asserts the reply is well formed.
static bool
s_raw_recv (void *dealer, int timeout_ms, s_outcome_t *outcome)
{
    memset (outcome, 0, sizeof *outcome);
    zmq_pollitem_t item = { dealer, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&item, 1, timeout_ms) != 1)
        return false;
    outcome->at_mono_ms = mesh_mono_ms ();
    outcome->at_wall_ms = mesh_wall_ms ();
    mdp_frames_t frames;
    cr_assert_eq (mdp_frames_recv (&frames, dealer, 0), 0);
    cr_assert_eq (frames.count, 4, "reply has %d frames, want 4", frames.count);
    cr_assert (mdp_frame_empty (&frames.frame[0]));
    cr_assert (mdp_frame_eq (&frames.frame[1], MDP_CLIENT));
    snprintf (outcome->service, sizeof outcome->service, "%.*s",
              (int) zmq_msg_size (&frames.frame[2]), (const char *) zmq_msg_data (&frames.frame[2]));
    mesh_envelope_decoder_t *decoder = mesh_envelope_decoder_new (0);
    mesh_envelope_t envelope;
    int rc = mesh_envelope_decode (decoder, zmq_msg_data (&frames.frame[3]),
                                   zmq_msg_size (&frames.frame[3]), MESH_ENVELOPE_REPLY, &envelope);
    cr_assert_eq (rc, 0, "reply is not an envelope: %s", mesh_envelope_decoder_error (decoder));
    snprintf (outcome->id, sizeof outcome->id, "%.*s", (int) envelope.id.len, envelope.id.ptr);
    outcome->is_error = envelope.is_error;
    outcome->code = envelope.code;
    mesh_envelope_decoder_destroy (&decoder);
    mdp_frames_close (&frames);
    return true;
}

//  A worker in a child process on a raw DEALER: READY, then heartbeats
//  every heartbeat_ms and never answers a request. It stays alive in the
//  broker's eyes for as long as it runs, so a request it holds can only
//  come back through its death. It dies with the test process and gives
//  up by itself after two minutes.
static pid_t
s_holder_start (const char *endpoint, const char *service, int heartbeat_ms)
{
    fflush (NULL);
    pid_t pid = fork ();
    cr_assert_geq (pid, 0, "fork failed");
    if (pid > 0)
        return pid;
    prctl (PR_SET_PDEATHSIG, SIGKILL);
    void *context = zmq_ctx_new ();
    void *dealer = zmq_socket (context, ZMQ_DEALER);
    int linger = 0;
    zmq_setsockopt (dealer, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect (dealer, endpoint) != 0)
        _exit (1);
    unsigned char command = MDP_READY;
    const void *ready[] = { "", MDP_WORKER, &command, service };
    size_t ready_sizes[] = { 0, strlen (MDP_WORKER), 1, strlen (service) };
    mdp_send_parts (dealer, 0, 4, ready, ready_sizes);
    int64_t give_up_ms = mesh_mono_ms () + 120000;
    int64_t heartbeat_at_ms = mesh_mono_ms () + heartbeat_ms;
    while (mesh_mono_ms () < give_up_ms) {
        int64_t wait_ms = heartbeat_at_ms - mesh_mono_ms ();
        zmq_pollitem_t item = { dealer, 0, ZMQ_POLLIN, 0 };
        zmq_poll (&item, 1, (long) (wait_ms > 0? wait_ms: 0));
        mdp_frames_t frames;
        while (mdp_frames_recv (&frames, dealer, ZMQ_DONTWAIT) == 0)
            mdp_frames_close (&frames);     //  Requests are held forever
        if (mesh_mono_ms () >= heartbeat_at_ms) {
            command = MDP_HEARTBEAT;
            const void *beat[] = { "", MDP_WORKER, &command };
            size_t beat_sizes[] = { 0, strlen (MDP_WORKER), 1 };
            mdp_send_parts (dealer, ZMQ_DONTWAIT, 3, beat, beat_sizes);
            heartbeat_at_ms = mesh_mono_ms () + heartbeat_ms;
        }
    }
    _exit (0);
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

//  GET http://admin/metrics into a fresh string (caller frees), or NULL.
static size_t
s_curl_write (char *data, size_t size, size_t count, void *arg)
{
    msgpack_sbuffer *buffer = arg;
    msgpack_sbuffer_write (buffer, data, size * count);
    return size * count;
}

static char *
s_get_metrics (const char *admin)
{
    char url[128];
    snprintf (url, sizeof url, "http://%s/metrics", admin);
    msgpack_sbuffer buffer;
    msgpack_sbuffer_init (&buffer);
    CURL *curl = curl_easy_init ();
    curl_easy_setopt (curl, CURLOPT_URL, url);
    curl_easy_setopt (curl, CURLOPT_WRITEFUNCTION, s_curl_write);
    curl_easy_setopt (curl, CURLOPT_WRITEDATA, &buffer);
    curl_easy_setopt (curl, CURLOPT_TIMEOUT_MS, 5000L);
    long status = 0;
    CURLcode rc = curl_easy_perform (curl);
    curl_easy_getinfo (curl, CURLINFO_RESPONSE_CODE, &status);
    curl_easy_cleanup (curl);
    char *text = NULL;
    if (rc == CURLE_OK && status == 200) {
        text = malloc (buffer.size + 1);
        memcpy (text, buffer.data, buffer.size);
        text[buffer.size] = '\0';
    }
    msgpack_sbuffer_destroy (&buffer);
    return text;
}

//  Value of the sample `name{...}` whose labels include every one of
//  `labels` (e.g. "service=\"echo\""), or -1 when there is none.
static double
s_metric_value (const char *text, const char *name, const char *const *labels)
{
    size_t name_len = strlen (name);
    for (const char *line = text; line && *line;) {
        const char *end = strchr (line, '\n');
        size_t len = end? (size_t) (end - line): strlen (line);
        if (len > name_len && strncmp (line, name, name_len) == 0 && line[name_len] == '{') {
            const char *close = memchr (line, '}', len);
            bool match = close != NULL;
            for (int index = 0; match && labels[index]; index++) {
                size_t label_len = strlen (labels[index]);
                const char *at = line + name_len;
                match = false;
                for (; at + label_len <= close; at++)
                    if (strncmp (at, labels[index], label_len) == 0) {
                        match = true;
                        break;
                    }
            }
            if (match)
                return strtod (close + 1, NULL);
        }
        line = end? end + 1: NULL;
    }
    return -1;
}

//  --------------------------------------------------------------------------
//  a. A worker dies while it holds a request

//  The holder is a heartbeating raw worker in a child process, so the
//  broker has no reason to give up on it but its death: first the test
//  shows the request staying held past heartbeat x liveness, then SIGKILL.
Test (broker_failures, sigkilled_worker_holding_a_request_is_answered_unavailable)
{
    cr_assert (s_broker_start (S_HEARTBEAT_MS, NULL), "broker did not start");
    s_holder = s_holder_start (s_broker.endpoint, "echo", S_HEARTBEAT_MS);
    cr_assert (s_wait_state ("echo", 1, 0, -1, 10000, NULL), "holder did not register");

    //  Client made after the fork: the child never shares its context
    s_client = mesh_client_new (NULL, s_broker.endpoint, NULL);
    cr_assert_not_null (s_client);
    msgpack_sbuffer body;
    s_pack_ms (&body, 30000);
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
    s_state_t state;
    cr_assert (s_wait_state ("echo", 2, 1, 0, 2000, &state),
               "holder dropped before the kill: workers %" PRIu64 " in_flight %" PRIu64,
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
    s_pack_ms (&body, 30000);
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

    //  No broker: the call ends at its deadline, never later
    call.timeout_ms = 1000;
    int64_t start_ms = mesh_mono_ms ();
    cr_assert_eq (mesh_client_call (s_client, &call, &reply), 0);
    int64_t elapsed_ms = mesh_mono_ms () - start_ms;
    cr_assert_eq (reply.code, MESH_CODE_DEADLINE_EXCEEDED, "got %s", mesh_code_name (reply.code));
    cr_assert_geq (elapsed_ms, 990, "gave up after %" PRId64 " ms, before its deadline",
                   elapsed_ms);
    cr_assert_lt (elapsed_ms, 1000 + 500, "took %" PRId64 " ms", elapsed_ms);

    //  Same ports (s_broker.port is set); workers find it by themselves
    int64_t restart_ms = mesh_mono_ms ();
    cr_assert (mesh_test_broker_start (&s_broker, S_HEARTBEAT_MS, NULL), "restart failed");
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
    s_pack_ms (&body, 2000);
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
    s_state_t state;
    cr_assert (s_wait_state ("echo", 1, 1, 2, 1000, &state),
               "want 1 held and 2 queued, have %" PRIu64 " and %" PRIu64, state.in_flight,
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
    s_pack_ms (&body, 2000);
    mesh_call_t hold = { .service = "echo", .method = "sleep", .body = body.data,
                         .body_len = body.size, .timeout_ms = 20000 };
    cr_assert_eq (mesh_client_send (s_client, &hold, NULL), 0);
    msgpack_sbuffer_destroy (&body);
    cr_assert (s_wait_state ("echo", 1, 1, 0, 5000, NULL), "the worker is not busy");

    //  Raw DEALER: deadline 300 ms in the envelope, but we wait 3 s
    s_dealer = s_raw_client ();
    uint64_t deadline_ms = mesh_wall_ms () + 300;
    int64_t start_ms = mesh_mono_ms ();
    s_raw_send (s_dealer, "echo", "expire-me-1", "echo", deadline_ms);
    s_outcome_t outcome;
    cr_assert (s_raw_recv (s_dealer, 3000, &outcome), "the broker never answered");
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
    s_state_t state;
    cr_assert (s_service_state (s_broker.endpoint, "echo", &state, 2000));
    cr_assert_eq (state.workers, 1);

    curl_global_init (CURL_GLOBAL_DEFAULT);
    char *metrics = s_get_metrics (s_broker.admin);
    cr_assert_not_null (metrics, "GET /metrics failed");
    const char *labels[] = { "service=\"echo\"", "outcome=\"expired\"", NULL };
    double expired = s_metric_value (metrics, "mesh_broker_requests_total", labels);
    cr_assert_geq (expired, 1.0, "mesh_broker_requests_total{service=\"echo\","
                                 "outcome=\"expired\"} is %g", expired);
    free (metrics);
    curl_global_cleanup ();

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
    s_raw_send (s_dealer, "nobody", "nobody-1", "anything", deadline_ms);
    s_outcome_t outcome;
    cr_assert (s_raw_recv (s_dealer, 3000, &outcome), "the broker never answered");
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
    s_raw_send (s_dealer, "nobody", "nobody-2", "anything", 0);
    s_outcome_t outcome;
    cr_assert (s_raw_recv (s_dealer, 3000, &outcome), "the broker never answered");
    int64_t elapsed_ms = outcome.at_mono_ms - start_ms;
    cr_assert_str_eq (outcome.id, "nobody-2");
    cr_assert_eq (outcome.code, MESH_CODE_UNAVAILABLE, "got %s", mesh_code_name (outcome.code));
    //  The broker starts its 700 ms when the request arrives, after we sent
    cr_assert_geq (outcome.at_wall_ms, sent_wall_ms + 700, "answered after only %" PRIu64 " ms",
                   outcome.at_wall_ms - sent_wall_ms);
    cr_assert_leq (elapsed_ms, 700 + 1000, "answered after %" PRId64 " ms", elapsed_ms);
}
