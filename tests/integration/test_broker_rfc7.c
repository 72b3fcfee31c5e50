/*  =========================================================================
    test_broker_rfc7 - plain MDP/0.1 (RFC 7) peers against mesh-broker
    Clients and workers here are written the way a peer in another language
    would write them: raw ZeroMQ sockets and hand-built frames, MessagePack
    packed by hand. Nothing from libmesh's client, worker, envelope or mdp
    modules is used on the peer side, so these tests hold the broker to the
    RFC, not to our own helpers.
    SPDX-License-Identifier: MPL-2.0
    =========================================================================  */
#include "mesh_test.h"
#include "mesh/mesh_time.h"

#include <criterion/criterion.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#define S_HEARTBEAT_MS 500      //  Broker heartbeat in this file (liveness 3)
#define S_WAIT_MS 5000          //  Bound on every reply we wait for
#define S_MAX_FRAMES 32

static mesh_test_broker_t s_broker;
static mesh_test_sockets_t *s_sockets;  //  Every socket a test opened; teardown closes them

static void
s_setup (void)
{
    memset (&s_broker, 0, sizeof s_broker);
    cr_assert (mesh_test_broker_start (&s_broker, S_HEARTBEAT_MS, NULL), "broker did not start");
    s_sockets = mesh_test_sockets_new (S_WAIT_MS);
    cr_assert_not_null (s_sockets);
}

static void
s_teardown (void)
{
    mesh_test_sockets_destroy (&s_sockets);
    mesh_test_broker_stop (&s_broker);
}

TestSuite (broker_rfc7, .init = s_setup, .fini = s_teardown, .timeout = 60.);

//  One received multipart message, copied out.
typedef struct {
    int count;
    size_t size[S_MAX_FRAMES];
    char data[S_MAX_FRAMES][512];
} s_message_t;

//  Send `count` frames as one message.
static void
s_send (void *socket, int count, const void *const *data, const size_t *sizes)
{
    for (int index = 0; index < count; index++)
        cr_assert_geq (zmq_send (socket, data[index], sizes[index],
                                 index + 1 < count? ZMQ_SNDMORE: 0),
                       0, "send frame %d: %s", index, zmq_strerror (zmq_errno ()));
}

//  Send NUL-terminated strings as one message (NULL-terminated list).
static void
s_send_strings (void *socket, const char *first, ...)
{
    const void *data[S_MAX_FRAMES];
    size_t sizes[S_MAX_FRAMES];
    int count = 0;
    va_list args;
    va_start (args, first);
    for (const char *text = first; text && count < S_MAX_FRAMES;
         text = va_arg (args, const char *)) {
        data[count] = text;
        sizes[count++] = strlen (text);
    }
    va_end (args);
    s_send (socket, count, data, sizes);
}

//  Wait up to timeout_ms for one message. Returns false on timeout.
static bool
s_recv (void *socket, s_message_t *message, int timeout_ms)
{
    zmq_pollitem_t item = { socket, 0, ZMQ_POLLIN, 0 };
    if (zmq_poll (&item, 1, timeout_ms) != 1)
        return false;
    message->count = 0;
    int more = 1;
    while (more) {
        zmq_msg_t frame;
        zmq_msg_init (&frame);
        cr_assert_geq (zmq_msg_recv (&frame, socket, 0), 0);
        cr_assert_lt (message->count, S_MAX_FRAMES);
        cr_assert_leq (zmq_msg_size (&frame), sizeof message->data[0]);
        message->size[message->count] = zmq_msg_size (&frame);
        memcpy (message->data[message->count], zmq_msg_data (&frame), zmq_msg_size (&frame));
        message->count++;
        more = zmq_msg_more (&frame);
        zmq_msg_close (&frame);
    }
    return true;
}

//  True when frame `index` of `message` holds exactly `text`.
static bool
s_frame_is (const s_message_t *message, int index, const char *text)
{
    return index < message->count && message->size[index] == strlen (text)
        && memcmp (message->data[index], text, strlen (text)) == 0;
}

//  A printable copy of frame `index` for failure messages.
static const char *
s_frame_text (const s_message_t *message, int index)
{
    static char text[600];
    if (index >= message->count)
        return "(missing)";
    snprintf (text, sizeof text, "%.*s", (int) message->size[index], message->data[index]);
    return text;
}

//  Pack a NUL-terminated string.
static void
s_pack_str (msgpack_packer *packer, const char *text)
{
    msgpack_pack_str (packer, strlen (text));
    msgpack_pack_str_body (packer, text, strlen (text));
}

//  The value of string key `key` in map `map`, or NULL.
static const msgpack_object *
s_map_get (const msgpack_object *map, const char *key)
{
    if (map->type != MSGPACK_OBJECT_MAP)
        return NULL;
    for (uint32_t index = 0; index < map->via.map.size; index++) {
        const msgpack_object *name = &map->via.map.ptr[index].key;
        if (name->type == MSGPACK_OBJECT_STR && name->via.str.size == strlen (key)
            && memcmp (name->via.str.ptr, key, strlen (key)) == 0)
            return &map->via.map.ptr[index].val;
    }
    return NULL;
}

//  True when `object` is the string `text`.
static bool
s_is_str (const msgpack_object *object, const char *text)
{
    return object && object->type == MSGPACK_OBJECT_STR && object->via.str.size == strlen (text)
        && memcmp (object->via.str.ptr, text, strlen (text)) == 0;
}

//  Wait until mmi.service says `want` about `service`, or fail.
static void
s_wait_service (const char *service, const char *want, int timeout_ms)
{
    char answer[16];
    cr_assert (mesh_test_wait_service (s_broker.endpoint, service, want, answer, sizeof answer,
                                       timeout_ms),
               "mmi.service %s: want %s, last answer '%s'", service, want, answer);
}

//  ---------------------------------------------------------- plain client

//  Start the echo worker (credit 1) for "echo"; fails unless it registers.
static mesh_proc_t *
s_echo_worker (void)
{
    mesh_proc_t *worker =
        mesh_test_echo_worker (s_broker.endpoint, "echo", 1, S_HEARTBEAT_MS, NULL);
    cr_assert_not_null (worker);
    cr_assert (mesh_test_wait_workers (s_broker.endpoint, "echo", 1, 10000));
    return worker;
}

Test (broker_rfc7, req_client_with_a_hand_packed_envelope_gets_the_echo)
{
    mesh_proc_t *worker = s_echo_worker ();

    //  {"v":1, "id":"rfc7-1", "method":"echo", "body":{"text":"hi", "n":[1,2,3]}}
    msgpack_sbuffer request;
    msgpack_sbuffer_init (&request);
    msgpack_packer packer;
    msgpack_packer_init (&packer, &request, msgpack_sbuffer_write);
    msgpack_pack_map (&packer, 4);
    s_pack_str (&packer, "v");
    msgpack_pack_uint8 (&packer, 1);
    s_pack_str (&packer, "id");
    s_pack_str (&packer, "rfc7-1");
    s_pack_str (&packer, "method");
    s_pack_str (&packer, "echo");
    s_pack_str (&packer, "body");
    msgpack_pack_map (&packer, 2);
    s_pack_str (&packer, "text");
    s_pack_str (&packer, "hi");
    s_pack_str (&packer, "n");
    msgpack_pack_array (&packer, 3);
    for (int item = 1; item <= 3; item++)
        msgpack_pack_int (&packer, item);

    //  REQ adds the empty delimiter; RFC 7 client frames follow it
    void *client = mesh_test_sockets_open (s_sockets, ZMQ_REQ, s_broker.endpoint);
    const void *data[] = { "MDPC01", "echo", request.data };
    size_t sizes[] = { 6, 4, request.size };
    s_send (client, 3, data, sizes);
    s_message_t reply;
    cr_assert (s_recv (client, &reply, S_WAIT_MS), "no reply within %d ms", S_WAIT_MS);
    cr_assert_eq (reply.count, 3, "reply has %d frames", reply.count);
    cr_assert (s_frame_is (&reply, 0, "MDPC01"), "header '%s'", s_frame_text (&reply, 0));
    cr_assert (s_frame_is (&reply, 1, "echo"), "service '%s'", s_frame_text (&reply, 1));

    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    size_t offset = 0;
    cr_assert_eq (msgpack_unpack_next (&unpacked, reply.data[2], reply.size[2], &offset),
                  MSGPACK_UNPACK_SUCCESS);
    cr_assert_eq (offset, reply.size[2], "trailing bytes after the reply envelope");
    const msgpack_object *root = &unpacked.data;
    cr_assert_eq (root->type, MSGPACK_OBJECT_MAP);
    const msgpack_object *version = s_map_get (root, "v");
    cr_assert (version && version->type == MSGPACK_OBJECT_POSITIVE_INTEGER
               && version->via.u64 == 1);
    cr_assert (s_is_str (s_map_get (root, "id"), "rfc7-1"));
    cr_assert_null (s_map_get (root, "error"));
    const msgpack_object *body = s_map_get (root, "body");
    cr_assert_not_null (body);
    cr_assert (s_is_str (s_map_get (body, "text"), "hi"));
    const msgpack_object *list = s_map_get (body, "n");
    cr_assert (list && list->type == MSGPACK_OBJECT_ARRAY && list->via.array.size == 3);
    cr_assert_eq (list->via.array.ptr[2].via.u64, 3);
    msgpack_unpacked_destroy (&unpacked);

    //  The REQ socket is back in its send state: a second round trip works
    s_send (client, 3, data, sizes);
    cr_assert (s_recv (client, &reply, S_WAIT_MS));
    cr_assert_eq (reply.count, 3);

    msgpack_sbuffer_destroy (&request);
    mesh_proc_destroy (&worker);
}

//  Decode an error envelope in `frame` and check its code; returns the id.
static void
s_expect_error_envelope (const s_message_t *reply, int index, const char *code)
{
    msgpack_unpacked unpacked;
    msgpack_unpacked_init (&unpacked);
    cr_assert_eq (msgpack_unpack_next (&unpacked, reply->data[index], reply->size[index], NULL),
                  MSGPACK_UNPACK_SUCCESS, "reply body is not MessagePack");
    const msgpack_object *error = s_map_get (&unpacked.data, "error");
    cr_assert_not_null (error, "reply has no error");
    const msgpack_object *got = s_map_get (error, "code");
    cr_assert (s_is_str (got, code), "error code is not %s", code);
    const msgpack_object *message = s_map_get (error, "message");
    cr_assert (message && message->type == MSGPACK_OBJECT_STR && message->via.str.size > 0,
               "error has no message");
    cr_assert_null (s_map_get (&unpacked.data, "body"));
    msgpack_unpacked_destroy (&unpacked);
}

Test (broker_rfc7, opaque_bodies_pass_through_to_the_worker_untouched)
{
    mesh_proc_t *worker = s_echo_worker ();
    void *client = mesh_test_sockets_open (s_sockets, ZMQ_REQ, s_broker.endpoint);

    //  "hello" is no envelope: the broker must not answer for the worker;
    //  the echo worker itself says invalid_argument
    s_send_strings (client, "MDPC01", "echo", "hello", NULL);
    s_message_t reply;
    cr_assert (s_recv (client, &reply, S_WAIT_MS), "no reply within %d ms", S_WAIT_MS);
    cr_assert_eq (reply.count, 3);
    cr_assert (s_frame_is (&reply, 0, "MDPC01"));
    cr_assert (s_frame_is (&reply, 1, "echo"));
    s_expect_error_envelope (&reply, 2, "invalid_argument");

    //  A multi-frame body reaches the worker as several frames too (the
    //  worker says so: a mesh request has exactly one body frame)
    s_send_strings (client, "MDPC01", "echo", "part-1", "part-2", NULL);
    cr_assert (s_recv (client, &reply, S_WAIT_MS));
    cr_assert_eq (reply.count, 3);
    s_expect_error_envelope (&reply, 2, "invalid_argument");

    mesh_proc_destroy (&worker);
}

Test (broker_rfc7, mmi_answers_a_plain_req_client)
{
    mesh_proc_t *worker = s_echo_worker ();
    void *client = mesh_test_sockets_open (s_sockets, ZMQ_REQ, s_broker.endpoint);
    struct {
        const char *service, *body, *answer;
    } cases[] = {
        { "mmi.service", "echo", "200" },
        { "mmi.service", "nobody", "404" },
        { "mmi.nonsense", "", "501" },
        //  The whole mmi. namespace is the broker's (RFC 8), the bare
        //  prefix included: no worker can register "mmi." either
        { "mmi.", "", "501" },
    };
    for (size_t index = 0; index < sizeof cases / sizeof cases[0]; index++) {
        s_send_strings (client, "MDPC01", cases[index].service, cases[index].body, NULL);
        s_message_t reply;
        cr_assert (s_recv (client, &reply, S_WAIT_MS), "%s: no reply", cases[index].service);
        cr_assert_eq (reply.count, 3);
        cr_assert (s_frame_is (&reply, 0, "MDPC01"));
        cr_assert (s_frame_is (&reply, 1, cases[index].service), "service '%s'",
                   s_frame_text (&reply, 1));
        cr_assert (s_frame_is (&reply, 2, cases[index].answer), "%s %s: '%s', want %s",
                   cases[index].service, cases[index].body, s_frame_text (&reply, 2),
                   cases[index].answer);
    }
    mesh_proc_destroy (&worker);
}

//  ---------------------------------------------------------- plain worker

//  A raw RFC 7 worker on a DEALER, driven step by step by the test.
typedef struct {
    void *dealer;
    int heartbeats;             //  HEARTBEATs received from the broker
    int disconnects;            //  DISCONNECTs received
    int64_t last_heartbeat_ms;  //  When the last HEARTBEAT arrived (monotonic)
    bool answer_heartbeats;     //  Reply HEARTBEAT to HEARTBEAT
} s_raw_worker_t;

static void
s_raw_worker_ready (s_raw_worker_t *self, const char *service)
{
    memset (self, 0, sizeof *self);
    self->dealer = mesh_test_sockets_open (s_sockets, ZMQ_DEALER, s_broker.endpoint);
    self->answer_heartbeats = true;
    //  READY with exactly the four frames of RFC 7: "", MDPW01, 0x01, service
    const void *data[] = { "", "MDPW01", "\x01", service };
    size_t sizes[] = { 0, 6, 1, strlen (service) };
    s_send (self->dealer, 4, data, sizes);
}

//  When s_raw_worker_serve returns.
typedef enum {
    S_UNTIL_TIMEOUT,            //  Serve the whole time
    S_UNTIL_REQUEST,            //  Return after answering one REQUEST
    S_UNTIL_HEARTBEAT,          //  Return after one HEARTBEAT arrived
} s_until_t;

//  Serve for up to `timeout_ms`: answer heartbeats, reverse each REQUEST's
//  body (frame order and each frame's bytes). Returns the REQUESTs served.
static int
s_raw_worker_serve (s_raw_worker_t *self, int timeout_ms, s_until_t until_what)
{
    int requests = 0;
    int64_t until = mesh_mono_ms () + timeout_ms;
    while (true) {
        int64_t left = until - mesh_mono_ms ();
        if (left <= 0)
            return requests;
        s_message_t message;
        if (!s_recv (self->dealer, &message, (int) left))
            return requests;
        cr_assert_geq (message.count, 3, "broker sent %d frames", message.count);
        cr_assert_eq (message.size[0], 0, "no empty delimiter from the broker");
        cr_assert (s_frame_is (&message, 1, "MDPW01"), "header '%s'", s_frame_text (&message, 1));
        cr_assert_eq (message.size[2], 1);
        int command = (unsigned char) message.data[2][0];
        if (command == 0x04) {
            cr_assert_eq (message.count, 3, "HEARTBEAT has %d frames", message.count);
            self->heartbeats++;
            self->last_heartbeat_ms = mesh_mono_ms ();
            if (self->answer_heartbeats) {
                const void *data[] = { "", "MDPW01", "\x04" };
                size_t sizes[] = { 0, 6, 1 };
                s_send (self->dealer, 3, data, sizes);
            }
            if (until_what == S_UNTIL_HEARTBEAT)
                return requests;
        }
        else
        if (command == 0x05)
            self->disconnects++;
        else {
            //  REQUEST: "", MDPW01, 0x02, client, "", body...
            cr_assert_eq (command, 0x02, "unexpected command 0x%02x", command);
            cr_assert_geq (message.count, 6, "REQUEST has %d frames", message.count);
            cr_assert_gt (message.size[3], 0, "empty client address");
            cr_assert_eq (message.size[4], 0, "no empty frame after the client address");
            //  REPLY: "", MDPW01, 0x03, client, "", reversed body...
            int body_count = message.count - 5;
            const void *data[S_MAX_FRAMES];
            size_t sizes[S_MAX_FRAMES];
            static char reversed[S_MAX_FRAMES][512];
            data[0] = "";
            sizes[0] = 0;
            data[1] = "MDPW01";
            sizes[1] = 6;
            data[2] = "\x03";
            sizes[2] = 1;
            data[3] = message.data[3];
            sizes[3] = message.size[3];
            data[4] = "";
            sizes[4] = 0;
            for (int index = 0; index < body_count; index++) {
                int from = message.count - 1 - index;
                for (size_t byte = 0; byte < message.size[from]; byte++)
                    reversed[index][byte] = message.data[from][message.size[from] - 1 - byte];
                data[5 + index] = reversed[index];
                sizes[5 + index] = message.size[from];
            }
            s_send (self->dealer, 5 + body_count, data, sizes);
            requests++;
            if (until_what == S_UNTIL_REQUEST)
                return requests;
        }
    }
}

Test (broker_rfc7, plain_worker_serves_a_plain_client_opaque_bodies)
{
    s_raw_worker_t worker;
    s_raw_worker_ready (&worker, "rev");
    s_wait_service ("rev", "200", 10000);

    void *client = mesh_test_sockets_open (s_sockets, ZMQ_REQ, s_broker.endpoint);
    s_send_strings (client, "MDPC01", "rev", "ping", NULL);
    cr_assert_eq (s_raw_worker_serve (&worker, S_WAIT_MS, S_UNTIL_REQUEST), 1,
                  "no REQUEST reached the worker");
    s_message_t reply;
    cr_assert (s_recv (client, &reply, S_WAIT_MS), "no reply within %d ms", S_WAIT_MS);
    cr_assert_eq (reply.count, 3, "reply has %d frames", reply.count);
    cr_assert (s_frame_is (&reply, 0, "MDPC01"));
    cr_assert (s_frame_is (&reply, 1, "rev"));
    cr_assert (s_frame_is (&reply, 2, "gnip"), "body '%s', want the worker's 'gnip' unchanged",
               s_frame_text (&reply, 2));

    //  Several body frames, binary bytes and an empty frame, both ways
    const void *data[] = { "MDPC01", "rev", "ab", "", "\x00\xff\x01", "xyz" };
    size_t sizes[] = { 6, 3, 2, 0, 3, 3 };
    s_send (client, 6, data, sizes);
    cr_assert_eq (s_raw_worker_serve (&worker, S_WAIT_MS, S_UNTIL_REQUEST), 1);
    cr_assert (s_recv (client, &reply, S_WAIT_MS));
    cr_assert_eq (reply.count, 6, "reply has %d frames", reply.count);
    cr_assert (s_frame_is (&reply, 2, "zyx"));
    cr_assert (reply.size[3] == 3 && memcmp (reply.data[3], "\x01\xff\x00", 3) == 0);
    cr_assert_eq (reply.size[4], 0);
    cr_assert (s_frame_is (&reply, 5, "ba"));

    //  A DEALER client (no REQ envelope of its own) works the same way
    void *dealer = mesh_test_sockets_open (s_sockets, ZMQ_DEALER, s_broker.endpoint);
    s_send_strings (dealer, "", "MDPC01", "rev", "dealer", NULL);
    cr_assert_eq (s_raw_worker_serve (&worker, S_WAIT_MS, S_UNTIL_REQUEST), 1);
    cr_assert (s_recv (dealer, &reply, S_WAIT_MS));
    cr_assert_eq (reply.count, 4);
    cr_assert_eq (reply.size[0], 0);
    cr_assert (s_frame_is (&reply, 1, "MDPC01"));
    cr_assert (s_frame_is (&reply, 3, "relaed"));

}

Test (broker_rfc7, broker_heartbeats_a_plain_worker_and_keeps_it_while_it_answers)
{
    s_raw_worker_t worker;
    int64_t ready_ms = mesh_mono_ms ();
    s_raw_worker_ready (&worker, "beat");

    //  The first HEARTBEAT comes within two intervals of READY, and each
    //  next one within two intervals of the one before
    for (int beat = 1; beat <= 4; beat++) {
        int before = worker.heartbeats;
        s_raw_worker_serve (&worker, 2 * S_HEARTBEAT_MS, S_UNTIL_HEARTBEAT);
        cr_assert_gt (worker.heartbeats, before, "HEARTBEAT %d did not come within %d ms", beat,
                      2 * S_HEARTBEAT_MS);
    }
    //  More than liveness x heartbeat has passed; answering kept it alive
    cr_assert_gt (mesh_mono_ms () - ready_ms, 3 * S_HEARTBEAT_MS);
    cr_assert_eq (worker.disconnects, 0);
    s_wait_service ("beat", "200", 1000);

    //  Silent from now on: the broker must drop it after liveness x
    //  heartbeat (3 x 500 ms), well within 10 intervals
    worker.answer_heartbeats = false;
    int64_t silent_ms = mesh_mono_ms ();
    int64_t until = silent_ms + 10 * S_HEARTBEAT_MS;
    char answer[16] = "";
    while (mesh_mono_ms () < until) {
        s_raw_worker_serve (&worker, 100, S_UNTIL_TIMEOUT);       //  Drain, do not answer
        if (mesh_test_mmi (s_broker.endpoint, "mmi.service", "beat", answer, sizeof answer, 500)
            && strcmp (answer, "404") == 0)
            break;
    }
    cr_assert_str_eq (answer, "404", "a silent worker was still registered after %lld ms",
                      (long long) (mesh_mono_ms () - silent_ms));
    cr_assert_geq (mesh_mono_ms () - silent_ms, 2 * S_HEARTBEAT_MS,
                   "worker dropped after only %lld ms of silence",
                   (long long) (mesh_mono_ms () - silent_ms));
}

Test (broker_rfc7, plain_worker_disconnect_unregisters_it)
{
    s_raw_worker_t worker;
    s_raw_worker_ready (&worker, "bye");
    s_wait_service ("bye", "200", 10000);
    const void *data[] = { "", "MDPW01", "\x05" };
    size_t sizes[] = { 0, 6, 1 };
    s_send (worker.dealer, 3, data, sizes);
    s_wait_service ("bye", "404", 5000);
}
